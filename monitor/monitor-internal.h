/*
 * Private declarations shared by the files of monitor/: the chardev, QMP
 * server and client structures and the dispatch entry point.
 */
#ifndef MONITOR_MONITOR_INTERNAL_H
#define MONITOR_MONITOR_INTERNAL_H

#include <jansson.h>

#include "monitor/monitor.h"
#include "util/aio.h"
#include "util/coroutine.h"
#include "util/json-streamer.h"

/* A listening socket.  Main thread only; freed by chardev_cleanup_all(). */
struct Chardev {
    char *id;
    int fd;             /* listening, non-blocking */
    char *unix_path;    /* removed at cleanup; NULL for TCP */
    bool in_use;        /* a QMP server accepts on it */
};

/* A --monitor: accepts clients on one chardev.  Main thread only. */
typedef struct QmpServer {
    char *id;           /* may be NULL */
    Chardev *chr;
    bool pretty;        /* indent every JSON line sent */
    QEMUTimer *accept_retry;    /* re-arms accepting after EMFILE */
    bool accept_paused;         /* accept failed for lack of resources */
} QmpServer;

/* A request waiting for the dispatcher: a parsed value or a framing or
 * parse error (exactly one is set).  Owned by the client's queue. */
typedef struct QmpRequest {
    json_t *value;
    Error *err;
} QmpRequest;

/*
 * One client connection.  Main thread only.
 * Lifetime: reference counted.  The open connection holds one reference,
 * the running dispatcher coroutine another, so a client that disconnects
 * while its command runs stays valid until the command finishes; the
 * reply is then dropped.
 */
struct Monitor {
    QmpServer *server;
    int fd;                 /* -1 once disconnected */
    unsigned refcnt;
    bool negotiated;        /* qmp_capabilities done */
    bool read_suspended;    /* too many queued requests; reading paused */
    bool write_pending;     /* output left; a write handler is set */
    JsonStreamer *streamer;
    GQueue requests;        /* of QmpRequest */
    Coroutine *dispatch_co; /* running dispatcher, or NULL */
    GString *out;           /* output; bytes from out_sent on are unsent */
    size_t out_sent;
    GString *ret;           /* the success reply being composed
                             * ({"return": value...); swapped with out
                             * when no output is pending, so it is never
                             * copied */
    GString *reply;         /* scratch: one reply line */
};

/*
 * Runs one request (value, a parsed JSON value) for mon and appends the
 * return value's JSON text to ret.  On failure returns false with errp
 * set.  *id is set to the request's "id" member (borrowed from value) as
 * soon as it is known, so that errors can echo it.  May yield.
 */
bool coroutine_fn qmp_dispatch(Monitor *mon, const json_t *value,
                               GString *ret, const json_t **id,
                               Error **errp);

#endif
