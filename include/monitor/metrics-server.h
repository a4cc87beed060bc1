/*
 * The OpenMetrics endpoint: an HTTP server in the main context answering
 * "GET /metrics" with the I/O statistics of every device and node in the
 * OpenMetrics text format (what Prometheus scrapes).  Created by
 * --object metrics-server or QMP metrics-server-start; lives until exit.
 *
 * Threads: main thread only.  Statistics are read with relaxed atomic
 * loads (block/accounting.h), so a scrape never waits for I/O threads.
 */
#ifndef MONITOR_METRICS_SERVER_H
#define MONITOR_METRICS_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "qapi/qapi-types.h"
#include "util/error.h"

/* Default and upper bound of the number of clients served at once. */
#define METRICS_SERVER_DEFAULT_CONNECTIONS 16
#define METRICS_SERVER_MAX_CONNECTIONS 1024

/*
 * Starts the server id listening on addr, serving up to max_conn clients
 * at once (further ones wait in the listen queue).  False with errp set
 * if id is taken, max_conn is out of range or the socket cannot be bound.
 */
bool metrics_server_start(const char *id, const SocketAddress *addr,
                          int64_t max_conn, Error **errp);

/* Renders the OpenMetrics text of all devices and nodes into out
 * (appended; ends with "# EOF\n"). */
void metrics_render(GString *out);

/* Closes every server and client (at exit). */
void metrics_server_cleanup_all(void);

#endif /* MONITOR_METRICS_SERVER_H */
