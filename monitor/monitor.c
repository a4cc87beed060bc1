/*
 * QMP servers and client connections: accept, framing of input into
 * requests, the per-client dispatcher coroutine, buffered non-blocking
 * output, events and the shutdown request.  Owner: monitor work.
 *
 * Data flow per client: read() -> JsonStreamer -> request queue ->
 * dispatcher coroutine (one per client, created when work arrives, gone
 * when the queue is empty) -> qmp_dispatch() -> reply line -> output
 * buffer -> send().  Requests of one client run strictly in order; a
 * handler that yields lets the main loop serve other clients.
 *
 * Speed: a reply is composed in place in a reused per-client buffer (the
 * marshaller appends the return value right after "{"return": "), which
 * then becomes the output buffer by a swap when no older output waits, so
 * a reply of megabytes is never copied in user space.  It is written with
 * a single send() when the socket accepts it (the send buffer is enlarged
 * for that); only when the kernel buffer is full does the client get a
 * write handler.
 *
 * Everything here runs in the main thread (main AioContext).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "monitor/monitor-internal.h"
#include "qapi/qapi-runtime.h"
#include "util/aio.h"

/* Requests queued per client before reading from it pauses. */
#define MONITOR_MAX_QUEUED 8

/* Every live client (refcnt > 0), connected or not, and every server. */
static GList *monitors;
static GPtrArray *servers;

static bool shutdown_pending;
static ShutdownCause shutdown_cause;

static void monitor_read(void *opaque);
static void monitor_write(void *opaque);

/* ---- shutdown request ---- */

void shutdown_request(ShutdownCause cause)
{
    if (!shutdown_pending) {
        shutdown_pending = true;
        shutdown_cause = cause;
    }
    aio_notify(aio_main_context());
}

bool shutdown_requested(ShutdownCause *cause)
{
    if (shutdown_pending && cause) {
        *cause = shutdown_cause;
    }
    return shutdown_pending;
}

/* ---- client lifetime ---- */

static void monitor_ref(Monitor *mon)
{
    mon->refcnt++;
}

static void qmp_request_free(QmpRequest *req)
{
    json_decref(req->value);
    if (req->err) {
        error_free(req->err);
    }
    g_free(req);
}

static void monitor_unref(Monitor *mon)
{
    g_assert(mon->refcnt > 0);
    if (--mon->refcnt > 0) {
        return;
    }
    g_assert(mon->fd < 0 && !mon->dispatch_co);
    monitors = g_list_remove(monitors, mon);
    g_queue_clear_full(&mon->requests, (GDestroyNotify)qmp_request_free);
    json_streamer_free(mon->streamer);
    g_string_free(mon->out, TRUE);
    g_string_free(mon->ret, TRUE);
    g_string_free(mon->reply, TRUE);
    g_free(mon);
}

/* Sets the fd handlers to match what the client is waiting for. */
static void monitor_update_handlers(Monitor *mon)
{
    aio_set_fd_handler(aio_main_context(), mon->fd,
                       mon->read_suspended ? NULL : monitor_read,
                       mon->write_pending ? monitor_write : NULL, mon);
}

/*
 * Closes the connection (idempotent).  Queued requests are dropped; a
 * running command finishes and its reply is discarded.
 */
static void monitor_disconnect(Monitor *mon)
{
    if (mon->fd < 0) {
        return;
    }
    aio_set_fd_handler(aio_main_context(), mon->fd, NULL, NULL, NULL);
    close(mon->fd);
    mon->fd = -1;
    mon->write_pending = false;
    g_string_truncate(mon->out, 0);
    mon->out_sent = 0;
    g_queue_clear_full(&mon->requests, (GDestroyNotify)qmp_request_free);
    monitor_unref(mon);
}

/* ---- output ---- */

/* Bytes of mon's output not yet sent. */
static size_t monitor_unsent(const Monitor *mon)
{
    return mon->out->len - mon->out_sent;
}

/*
 * Sends as much pending output as the socket takes without blocking.  Sent
 * bytes are dropped from the buffer only once they are the larger part of
 * it, so a slow reader does not cost a memmove per partial send.
 */
static void monitor_flush(Monitor *mon)
{
    while (monitor_unsent(mon) > 0) {
        ssize_t n = send(mon->fd, mon->out->str + mon->out_sent,
                         monitor_unsent(mon), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (n < 0) {
            /* The peer is gone; reading will see EOF or the same error. */
            monitor_disconnect(mon);
            return;
        }
        mon->out_sent += n;
    }
    if (mon->out_sent == mon->out->len) {
        g_string_truncate(mon->out, 0);
        mon->out_sent = 0;
    } else if (mon->out_sent > mon->out->len / 2) {
        g_string_erase(mon->out, 0, mon->out_sent);
        mon->out_sent = 0;
    }
    if (monitor_unsent(mon) > MONITOR_MAX_OUTPUT) {
        monitor_disconnect(mon);
        return;
    }
    if (mon->write_pending != (monitor_unsent(mon) > 0)) {
        mon->write_pending = monitor_unsent(mon) > 0;
        monitor_update_handlers(mon);
    }
}

static void monitor_write(void *opaque)
{
    Monitor *mon = opaque;

    monitor_ref(mon);
    monitor_flush(mon);
    monitor_unref(mon);
}

/* Terminates the line just appended to the output and starts sending. */
static void monitor_end_line(Monitor *mon)
{
    g_string_append(mon->out, "\r\n");
    if (!mon->write_pending) {
        monitor_flush(mon);
    } else if (monitor_unsent(mon) > MONITOR_MAX_OUTPUT) {
        monitor_disconnect(mon);
    }
}

/* Appends the JSON text line (in compact form) and "\r\n", indented if the
 * server is pretty (and the line parses), and starts sending it. */
static void monitor_send_line(Monitor *mon, const char *line, size_t len)
{
    json_t *v;

    if (mon->fd < 0) {
        return;
    }
    v = mon->server->pretty ? json_loadb(line, len, 0, NULL) : NULL;

    if (v) {
        char *text = json_dumps(v, JSON_INDENT(4) | JSON_PRESERVE_ORDER);

        g_string_append(mon->out, text);
        free(text);
        json_decref(v);
    } else {
        g_string_append_len(mon->out, line, len);
    }
    monitor_end_line(mon);
}

/*
 * A success reply is composed in mon->ret: the envelope's opening goes in
 * first and the marshaller appends the return value after it, so the value
 * is never copied to be wrapped.
 */
#define RETURN_OPEN "{\"return\": "
#define RETURN_OPEN_LEN (sizeof(RETURN_OPEN) - 1)

/* Appends an error reply line (without "\r\n") for err and id to r. */
static void monitor_build_error(GString *r, const json_t *id,
                                const Error *err)
{
    g_string_append_printf(r, "{\"error\": {\"class\": \"%s\", \"desc\": ",
                           error_class_name(error_get_class(err)));
    qapi_out_str(r, error_get_pretty(err));
    g_string_append_c(r, '}');
    if (id) {
        g_string_append(r, ", \"id\": ");
        qapi_out_any(r, id);
    }
    g_string_append_c(r, '}');
}

static void monitor_reply_error(Monitor *mon, const json_t *id,
                                const Error *err)
{
    if (mon->fd < 0) {
        return;
    }
    if (mon->server->pretty) {
        g_string_truncate(mon->reply, 0);
        monitor_build_error(mon->reply, id, err);
        monitor_send_line(mon, mon->reply->str, mon->reply->len);
        return;
    }
    monitor_build_error(mon->out, id, err);
    monitor_end_line(mon);
}

/*
 * Closes the success reply in mon->ret (RETURN_OPEN and the value) and
 * sends it.  When no older output is waiting, which is the rule, the
 * finished line becomes the output buffer by a swap of the two buffers:
 * a reply of megabytes (query-blockstats of thousands of nodes) is then
 * written once, by the marshaller, and never copied in user space.
 */
static void monitor_reply_return(Monitor *mon, const json_t *id)
{
    GString *r = mon->ret;

    if (mon->fd < 0) {
        return;
    }
    if (r->len == RETURN_OPEN_LEN) {
        g_string_append_len(r, "{}", 2);
    }
    if (id) {
        g_string_append(r, ", \"id\": ");
        qapi_out_any(r, id);
    }
    g_string_append_c(r, '}');
    if (mon->server->pretty) {
        monitor_send_line(mon, r->str, r->len);
    } else if (monitor_unsent(mon) == 0) {
        mon->ret = mon->out;
        mon->out = r;
        mon->out_sent = 0;
        monitor_end_line(mon);
    } else {
        g_string_append_len(mon->out, r->str, r->len);
        monitor_end_line(mon);
    }
}

/* ---- dispatch ---- */

static void coroutine_fn monitor_handle_request(Monitor *mon,
                                                QmpRequest *req)
{
    const json_t *id = NULL;
    Error *err = NULL;

    g_string_truncate(mon->ret, 0);
    g_string_append_len(mon->ret, RETURN_OPEN, RETURN_OPEN_LEN);
    if (req->err) {
        err = g_steal_pointer(&req->err);
    } else {
        qmp_dispatch(mon, req->value, mon->ret, &id, &err);
    }
    if (err) {
        monitor_reply_error(mon, id, err);
        error_free(err);
    } else {
        monitor_reply_return(mon, id);
    }
}

static void coroutine_fn monitor_dispatch_co(void *opaque)
{
    Monitor *mon = opaque;
    QmpRequest *req;

    while (!shutdown_requested(NULL) &&
           (req = g_queue_pop_head(&mon->requests))) {
        if (mon->read_suspended && mon->fd >= 0 &&
            g_queue_get_length(&mon->requests) < MONITOR_MAX_QUEUED / 2) {
            mon->read_suspended = false;
            monitor_update_handlers(mon);
        }
        monitor_handle_request(mon, req);
        qmp_request_free(req);
    }
    mon->dispatch_co = NULL;
    monitor_unref(mon);
}

/* Starts the dispatcher if requests wait and none is running. */
static void monitor_kick_dispatcher(Monitor *mon)
{
    if (mon->dispatch_co || g_queue_is_empty(&mon->requests) ||
        shutdown_requested(NULL)) {
        return;
    }
    monitor_ref(mon);
    mon->dispatch_co = coroutine_create(monitor_dispatch_co, mon);
    coroutine_enter(mon->dispatch_co);
}

Monitor *monitor_cur(void)
{
    Coroutine *self = coroutine_self();

    if (!self) {
        return NULL;
    }
    for (GList *l = monitors; l; l = l->next) {
        Monitor *mon = l->data;

        if (mon->dispatch_co == self) {
            return mon;
        }
    }
    return NULL;
}

bool monitor_is_negotiated(const Monitor *mon)
{
    return mon->negotiated;
}

void monitor_set_negotiated(Monitor *mon)
{
    mon->negotiated = true;
}

/* ---- input ---- */

static void monitor_enqueue(void *opaque, json_t *value, Error *err)
{
    Monitor *mon = opaque;
    QmpRequest *req = g_new(QmpRequest, 1);

    req->value = value;
    req->err = err;
    g_queue_push_tail(&mon->requests, req);
}

static void monitor_read(void *opaque)
{
    Monitor *mon = opaque;
    char buf[65536];
    ssize_t n;

    n = recv(mon->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    monitor_ref(mon);
    if (n <= 0) {
        monitor_disconnect(mon);
    } else {
        json_streamer_feed(mon->streamer, buf, n);
        if (g_queue_get_length(&mon->requests) >= MONITOR_MAX_QUEUED) {
            mon->read_suspended = true;
            monitor_update_handlers(mon);
        }
        monitor_kick_dispatcher(mon);
    }
    monitor_unref(mon);
}

/* ---- greeting, events ---- */

/* The greeting line, built once from BLOCKD_VERSION. */
static const char *monitor_greeting(void)
{
    static char *greeting;

    if (!greeting) {
        g_auto(GStrv) parts = g_strsplit(BLOCKD_VERSION, ".", 3);
        guint64 v[3] = { 0, 0, 0 };

        for (int i = 0; i < 3 && parts[i]; i++) {
            v[i] = g_ascii_strtoull(parts[i], NULL, 10);
        }
        greeting = g_strdup_printf(
            "{\"QMP\": {\"version\": {\"qemu\": {\"major\": %" G_GUINT64_FORMAT
            ", \"minor\": %" G_GUINT64_FORMAT ", \"micro\": %"
            G_GUINT64_FORMAT "}, \"package\": \"blockd " BLOCKD_VERSION
            "\"}, \"capabilities\": []}}", v[0], v[1], v[2]);
    }
    return greeting;
}

/* The event sink: one timestamped line to every negotiated client. */
static void monitor_emit_event(const char *event, const char *data_json)
{
    g_autoptr(GString) line = g_string_sized_new(128);
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    g_string_append_printf(line,
                           "{\"timestamp\": {\"seconds\": %lld, "
                           "\"microseconds\": %ld}, \"event\": ",
                           (long long)ts.tv_sec, ts.tv_nsec / 1000);
    qapi_out_str(line, event);
    if (data_json) {
        g_string_append(line, ", \"data\": ");
        g_string_append(line, data_json);
    }
    g_string_append_c(line, '}');

    /* Sending may disconnect (and free) mon: step before sending. */
    for (GList *l = monitors, *next; l; l = next) {
        Monitor *mon = l->data;

        next = l->next;
        if (mon->negotiated && mon->fd >= 0) {
            monitor_send_line(mon, line->str, line->len);
        }
    }
}

/* ---- servers ---- */

/*
 * The socket send buffer asked for: room for a whole large reply (a
 * query-blockstats of a thousand nodes is about 1.3 MB), so that it leaves
 * in one send() and the client wakes up once to read it, instead of both
 * sides taking turns in the default buffer (about 200 KB), a context
 * switch pair per turn.  The kernel caps it at net.core.wmem_max and
 * charges only the bytes queued, so an idle client costs nothing.
 */
#define MONITOR_SNDBUF (4 * 1024 * 1024)

static void monitor_new_client(QmpServer *srv, int fd)
{
    Monitor *mon = g_new0(Monitor, 1);
    const char *greeting = monitor_greeting();
    int sndbuf = MONITOR_SNDBUF;

    /* Best effort: a smaller buffer only means more turns. */
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    mon->server = srv;
    mon->fd = fd;
    mon->refcnt = 1;
    mon->streamer = json_streamer_new(monitor_enqueue, mon);
    g_queue_init(&mon->requests);
    mon->out = g_string_sized_new(4096);
    mon->ret = g_string_sized_new(1024);
    mon->reply = g_string_sized_new(1024);
    monitors = g_list_prepend(monitors, mon);
    monitor_update_handlers(mon);
    monitor_send_line(mon, greeting, strlen(greeting));
}

static void monitor_accept(void *opaque);

/* Resumes accepting after a pause for lack of file descriptors. */
static void monitor_accept_retry(void *opaque)
{
    QmpServer *srv = opaque;

    aio_set_fd_handler(aio_main_context(), srv->chr->fd, monitor_accept,
                       NULL, srv);
}

/*
 * Out of fds or memory: the pending connection stays in the backlog, so a
 * level-triggered handler would spin.  Stop watching the socket for a
 * while instead.
 */
static void monitor_accept_pause(QmpServer *srv)
{
    aio_set_fd_handler(aio_main_context(), srv->chr->fd, NULL, NULL, NULL);
    srv->accept_paused = true;
    if (!srv->accept_retry) {
        srv->accept_retry = aio_timer_new(aio_main_context(),
                                          monitor_accept_retry, srv);
    }
    timer_mod_ns(srv->accept_retry, clock_ns() + 100 * 1000 * 1000);
}

static void monitor_accept(void *opaque)
{
    QmpServer *srv = opaque;

    for (;;) {
        int fd = accept4(srv->chr->fd, NULL, NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                /* Reported once per episode, not at every retry. */
                if (!srv->accept_paused) {
                    error_report("QMP server: accept failed: %s",
                                 g_strerror(errno));
                }
                monitor_accept_pause(srv);
            }
            return;
        }
        srv->accept_paused = false;
        monitor_new_client(srv, fd);
    }
}

static QmpServer *monitor_find_server(const char *id)
{
    for (guint i = 0; servers && i < servers->len; i++) {
        QmpServer *srv = g_ptr_array_index(servers, i);

        if (srv->id && !strcmp(srv->id, id)) {
            return srv;
        }
    }
    return NULL;
}

bool monitor_new_qmp(const MonitorOptions *opts, Error **errp)
{
    Chardev *chr = chardev_find(opts->chardev);
    QmpServer *srv;

    qapi_event_set_sink(monitor_emit_event);
    if (!chr) {
        error_setg(errp, "chardev '%s' not found", opts->chardev);
        return false;
    }
    if (chr->in_use) {
        error_setg(errp, "chardev '%s' is already used by a monitor",
                   opts->chardev);
        return false;
    }
    if (opts->id && monitor_find_server(opts->id)) {
        error_setg(errp, "Duplicate ID '%s' for monitor", opts->id);
        return false;
    }
    srv = g_new0(QmpServer, 1);
    srv->id = g_strdup(opts->id);
    srv->chr = chr;
    srv->pretty = opts->has_pretty && opts->pretty;
    chr->in_use = true;
    if (!servers) {
        servers = g_ptr_array_new();
    }
    g_ptr_array_add(servers, srv);
    aio_set_fd_handler(aio_main_context(), chr->fd, monitor_accept, NULL,
                       srv);
    return true;
}

/* ---- exit path ---- */

/* Blocking send of the rest of mon's output, giving up after a timeout. */
static void monitor_flush_blocking(Monitor *mon)
{
    struct timeval tv = { .tv_sec = 2 };
    int flags;

    if (mon->fd < 0 || monitor_unsent(mon) == 0) {
        return;
    }
    flags = fcntl(mon->fd, F_GETFL);
    fcntl(mon->fd, F_SETFL, flags & ~O_NONBLOCK);
    setsockopt(mon->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    while (monitor_unsent(mon) > 0) {
        ssize_t n = send(mon->fd, mon->out->str + mon->out_sent,
                         monitor_unsent(mon), MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        mon->out_sent += n;
    }
    fcntl(mon->fd, F_SETFL, flags);
}

void monitor_flush_all(void)
{
    for (GList *l = monitors; l; l = l->next) {
        monitor_flush_blocking(l->data);
    }
}

void monitor_cleanup_all(void)
{
    GList *copy = g_list_copy(monitors);

    /* Clients whose command is still suspended stay allocated: their
     * coroutine may still touch them.  The process is exiting anyway. */
    for (GList *l = copy; l; l = l->next) {
        monitor_disconnect(l->data);
    }
    g_list_free(copy);
    for (guint i = 0; servers && i < servers->len; i++) {
        QmpServer *srv = g_ptr_array_index(servers, i);

        aio_set_fd_handler(aio_main_context(), srv->chr->fd, NULL, NULL,
                           NULL);
        srv->chr->in_use = false;
        if (srv->accept_retry) {
            timer_free(srv->accept_retry);
        }
        g_free(srv->id);
        g_free(srv);
    }
    if (servers) {
        g_ptr_array_free(servers, TRUE);
        servers = NULL;
    }
}
