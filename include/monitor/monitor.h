/*
 * The QMP monitor: listening character devices, QMP servers on them, the
 * client connections, and the daemon's shutdown request.
 *
 * Objects:
 *   - Chardev: a listening socket (--chardev socket,...), UNIX or TCP.
 *   - QMP server (--monitor chardev=ID): accepts any number of clients on
 *     one chardev; each client gets the greeting and its own session.
 *   - Monitor: one client connection.  Its requests run in order in a
 *     dispatcher coroutine in the main AioContext, so command handlers may
 *     yield; other clients keep being served meanwhile.
 *
 * Threads: everything here runs in the main thread only (the main
 * AioContext), except shutdown_request() which may also be called from
 * any coroutine in the main thread.
 */
#ifndef MONITOR_MONITOR_H
#define MONITOR_MONITOR_H

#include <stdbool.h>

#include "qapi/qapi-types.h"
#include "util/error.h"

typedef struct Chardev Chardev;
typedef struct Monitor Monitor;

/* Unsent output a client may accumulate before it is disconnected. */
#define MONITOR_MAX_OUTPUT (64 * 1024 * 1024)

/*
 * Creates a listening chardev from its options.  For a UNIX socket a stale
 * socket file at the path is removed first; the file is removed again by
 * chardev_cleanup_all().  The caller checks for duplicate ids (see
 * chardev_find()).  Errors carry no option prefix.
 */
Chardev *chardev_new(const ChardevOptions *opts, Error **errp);
/* The chardev named id, or NULL. */
Chardev *chardev_find(const char *id);
/* Closes every chardev and removes their socket files. */
void chardev_cleanup_all(void);

/*
 * Starts a QMP server on the chardev opts->chardev.  Fails if the chardev
 * does not exist or already serves a monitor, or if the id is taken.
 */
bool monitor_new_qmp(const MonitorOptions *opts, Error **errp);

/*
 * The client whose command is running in the calling coroutine, or NULL
 * outside command dispatch.  Valid across yields of the handler.
 */
Monitor *monitor_cur(void);
bool monitor_is_negotiated(const Monitor *mon);
/* Ends capabilities negotiation for mon (qmp_capabilities). */
void monitor_set_negotiated(Monitor *mon);

/*
 * Writes all pending output of every client, blocking for at most a few
 * seconds per client.  For the exit path, after the last event.
 */
void monitor_flush_all(void);
/* Disconnects every client, stops every QMP server (main thread, exit). */
void monitor_cleanup_all(void);

/*
 * Asks the daemon to shut down with the given cause; the first request
 * wins.  The main loop notices it after the current iteration, sends the
 * SHUTDOWN event and exits.  Clients stop dispatching further requests.
 */
void shutdown_request(ShutdownCause cause);
/* True once a shutdown was requested; *cause (if non-NULL) gets why. */
bool shutdown_requested(ShutdownCause *cause);

#endif
