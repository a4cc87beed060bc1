/*
 * The OpenMetrics (Prometheus) endpoint: a minimal HTTP/1.x server in the
 * main context.  One request per connection: the client sends a request
 * head, gets one response with "Connection: close", and is closed.
 *
 *   GET /metrics (or HEAD)          200, application/openmetrics-text
 *   any other well-formed request   404
 *   a malformed or oversized head   400
 *
 * At most max_conn clients are served at once: while that many are
 * connected the listening socket is not watched, so further clients wait
 * in the kernel's listen queue instead of costing memory here.
 *
 * Metric conventions: counters are families whose samples end in _total,
 * times are in seconds, sizes in bytes (with # UNIT lines), allocation /
 * capacity / physical / in-flight requests are gauges; labels device,
 * node_name, driver and (per kind of request) op.  Device samples carry
 * the device's own counters, node samples the node's.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "block/block-backend.h"
#include "block/block.h"
#include "monitor/metrics-server.h"
#include "qapi/qapi-commands.h"
#include "util/aio.h"

/* A request head longer than this is refused with 400. */
#define METRICS_MAX_HEAD 8192
/* Input discarded after a response before the connection is dropped. */
#define METRICS_MAX_DRAIN (1024 * 1024)

typedef struct MetricsServer MetricsServer;

/* One client; owned by its server's list.  Main thread. */
typedef struct MetricsClient {
    MetricsServer *server;
    int fd;
    char head[METRICS_MAX_HEAD];
    size_t head_len;
    GString *out;               /* the response head, once composed */
    GString *body;              /* and its body (NULL for none) */
    size_t out_sent;            /* bytes of out, then of body, sent */
    bool head_done;             /* out is sent; sending body */
    size_t drained;             /* input discarded after the response */
} MetricsClient;

/* Owned by the global list; lives until metrics_server_cleanup_all. */
struct MetricsServer {
    char *id;
    int listen_fd;
    char *unix_path;            /* to unlink at exit, or NULL */
    unsigned max_conn;
    GPtrArray *clients;         /* MetricsClient * */
};

static GPtrArray *servers;

/* ---- Rendering ---- */

static const char *const op_names[BLOCK_ACCT__MAX] = {
    [BLOCK_ACCT_READ] = "read",
    [BLOCK_ACCT_WRITE] = "write",
    [BLOCK_ACCT_FLUSH] = "flush",
    [BLOCK_ACCT_UNMAP] = "unmap",
};

/* Appends s as an OpenMetrics label value (\\, \" and \n escaped). */
static void append_label_value(GString *out, const char *s)
{
    g_string_append_c(out, '"');
    if (!strpbrk(s, "\\\"\n")) {
        /* The common case (validated names): nothing to escape. */
        g_string_append(out, s);
        g_string_append_c(out, '"');
        return;
    }
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') {
            g_string_append_c(out, '\\');
            g_string_append_c(out, *s);
        } else if (*s == '\n') {
            g_string_append(out, "\\n");
        } else {
            g_string_append_c(out, *s);
        }
    }
    g_string_append_c(out, '"');
}

/* One entry of the exposition: a device (device set) or a node. */
typedef struct MetricsEntry {
    const char *device;         /* NULL for a node */
    const char *node_name;
    const char *driver;
    BlockAcctStats snap;
    BlockDriverState *bs;       /* the node (of a device: its root) */
} MetricsEntry;

static void append_labels(GString *out, const MetricsEntry *e,
                          const char *op)
{
    g_string_append_c(out, '{');
    if (e->device) {
        g_string_append(out, "device=");
        append_label_value(out, e->device);
        g_string_append_c(out, ',');
    }
    g_string_append(out, "node_name=");
    append_label_value(out, e->node_name);
    g_string_append(out, ",driver=");
    append_label_value(out, e->driver);
    if (op) {
        g_string_append(out, ",op=");
        append_label_value(out, op);
    }
    g_string_append_c(out, '}');
}

static void family_head(GString *out, const char *name, const char *type,
                        const char *unit, const char *help)
{
    g_string_append_printf(out, "# TYPE %s %s\n", name, type);
    if (unit) {
        g_string_append_printf(out, "# UNIT %s %s\n", name, unit);
    }
    g_string_append_printf(out, "# HELP %s %s\n", name, help);
}

/* The per-kind counter families: the field of BlockAcctStats, the name,
 * the unit and the help text. */
typedef enum CounterField {
    F_BYTES, F_OPS, F_MERGED, F_FAILED, F_INVALID, F_TIME, F_IN_FLIGHT,
} CounterField;

static const struct {
    CounterField field;
    const char *name, *type, *unit, *help;
} op_families[] = {
    { F_BYTES, "blockd_bytes", "counter", "bytes",
      "Bytes transferred by completed requests." },
    { F_OPS, "blockd_operations", "counter", NULL,
      "Completed requests." },
    { F_MERGED, "blockd_merged_operations", "counter", NULL,
      "Requests merged into others." },
    { F_FAILED, "blockd_failed_operations", "counter", NULL,
      "Requests that failed." },
    { F_INVALID, "blockd_invalid_operations", "counter", NULL,
      "Requests refused as invalid." },
    { F_TIME, "blockd_time_seconds", "counter", "seconds",
      "Time spent on requests." },
    { F_IN_FLIGHT, "blockd_in_flight_requests", "gauge", NULL,
      "Requests being processed." },
};

static uint64_t field_value(const BlockAcctStats *s, CounterField f, int op)
{
    switch (f) {
    case F_BYTES:
        return s->nr_bytes[op];
    case F_OPS:
        return s->nr_ops[op];
    case F_MERGED:
        return s->merged[op];
    case F_FAILED:
        return s->failed_ops[op];
    case F_INVALID:
        return s->invalid_ops[op];
    case F_TIME:
        return s->total_time_ns[op];
    default:
        return s->in_flight[op];
    }
}

/* Decimal digits without printf: a scrape of thousands of nodes writes
 * hundreds of thousands of numbers. */
static void append_u64(GString *out, uint64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof(tmp);

    do {
        *--p = '0' + v % 10;
        v /= 10;
    } while (v);
    g_string_append_len(out, p, tmp + sizeof(tmp) - p);
}

static void append_i64(GString *out, int64_t v)
{
    if (v < 0) {
        g_string_append_c(out, '-');
        append_u64(out, 0 - (uint64_t)v);
    } else {
        append_u64(out, v);
    }
}

/* ns as seconds with nine decimals. */
static void append_seconds(GString *out, uint64_t ns)
{
    char frac[10];
    uint64_t f = ns % 1000000000u;

    append_u64(out, ns / 1000000000u);
    for (int i = 8; i >= 0; i--) {
        frac[i] = '0' + f % 10;
        f /= 10;
    }
    frac[9] = '\0';
    g_string_append_c(out, '.');
    g_string_append_len(out, frac, 9);
}

static void render_op_families(GString *out, const MetricsEntry *e,
                               size_t n)
{
    for (size_t f = 0; f < G_N_ELEMENTS(op_families); f++) {
        bool counter = op_families[f].type[0] == 'c';

        family_head(out, op_families[f].name, op_families[f].type,
                    op_families[f].unit, op_families[f].help);
        for (size_t i = 0; i < n; i++) {
            for (int op = 0; op < BLOCK_ACCT__MAX; op++) {
                uint64_t v = field_value(&e[i].snap, op_families[f].field,
                                         op);

                g_string_append(out, op_families[f].name);
                if (counter) {
                    g_string_append(out, "_total");
                }
                append_labels(out, &e[i], op_names[op]);
                g_string_append_c(out, ' ');
                if (op_families[f].field == F_TIME) {
                    append_seconds(out, v);
                } else {
                    append_u64(out, v);
                }
                g_string_append_c(out, '\n');
            }
        }
    }
}

/* Gauges that exist once per entry.  Allocation numbers are per node
 * (device entries would repeat their root node's). */
static void render_gauges(GString *out, const MetricsEntry *e, size_t n,
                          const BdrvAllocationInfo *alloc)
{
    static const struct {
        const char *name, *unit, *help;
    } g[] = {
        { "blockd_write_highest_offset_bytes", "bytes",
          "End of the highest byte written." },
        { "blockd_idle_seconds", "seconds",
          "Time since the last request (absent before the first)." },
        { "blockd_capacity_bytes", "bytes", "Virtual size." },
        { "blockd_allocation_bytes", "bytes",
          "Host bytes allocated to the image." },
        { "blockd_physical_bytes", "bytes",
          "Size of the host file or device." },
    };

    for (size_t k = 0; k < G_N_ELEMENTS(g); k++) {
        family_head(out, g[k].name, "gauge", g[k].unit, g[k].help);
        for (size_t i = 0; i < n; i++) {
            int64_t idle = 0;

            if (k >= 2 && (e[i].device || (k > 2 && !alloc[i].valid))) {
                continue;
            }
            if (k == 1) {
                idle = block_acct_idle_time_ns(&e[i].snap);
                if (idle < 0) {
                    continue;
                }
            }
            g_string_append(out, g[k].name);
            append_labels(out, &e[i], NULL);
            g_string_append_c(out, ' ');
            switch (k) {
            case 0:
                append_u64(out, e[i].snap.wr_highest_offset);
                break;
            case 1:
                append_seconds(out, idle);
                break;
            case 2:
                append_i64(out, alloc[i].capacity);
                break;
            case 3:
                append_i64(out, alloc[i].allocation);
                break;
            default:
                append_i64(out, alloc[i].physical);
                break;
            }
            g_string_append_c(out, '\n');
        }
    }
}

void metrics_render(GString *out)
{
    g_autoptr(GArray) entries = g_array_new(FALSE, TRUE,
                                            sizeof(MetricsEntry));
    g_autoptr(GArray) alloc = g_array_new(FALSE, TRUE,
                                          sizeof(BdrvAllocationInfo));

    for (BlockBackend *blk = blk_next(NULL); blk; blk = blk_next(blk)) {
        MetricsEntry e = { .device = blk_name(blk), .bs = blk_bs(blk) };
        BdrvAllocationInfo a = { 0 };

        e.node_name = e.bs ? bdrv_get_node_name(e.bs) : "";
        e.driver = e.bs ? bdrv_get_format_name(e.bs) : "";
        block_acct_snapshot(blk_get_stats(blk), &e.snap);
        g_array_append_val(entries, e);
        g_array_append_val(alloc, a);
    }
    for (BlockDriverState *bs = bdrv_next_node(NULL); bs;
         bs = bdrv_next_node(bs)) {
        MetricsEntry e = { .node_name = bdrv_get_node_name(bs),
                           .driver = bdrv_get_format_name(bs), .bs = bs };
        BdrvAllocationInfo a;

        block_acct_snapshot(bdrv_get_stats(bs), &e.snap);
        bdrv_query_allocation(bs, &a);
        g_array_append_val(entries, e);
        g_array_append_val(alloc, a);
    }
    render_op_families(out, (MetricsEntry *)(void *)entries->data,
                       entries->len);
    render_gauges(out, (MetricsEntry *)(void *)entries->data, entries->len,
                  (BdrvAllocationInfo *)(void *)alloc->data);
    g_string_append(out, "# EOF\n");
}

/* ---- HTTP ---- */

static void server_watch_listen(MetricsServer *s);

static void client_free(MetricsClient *c)
{
    MetricsServer *s = c->server;

    aio_set_fd_handler(aio_main_context(), c->fd, NULL, NULL, NULL);
    close(c->fd);
    if (c->out) {
        g_string_free(c->out, TRUE);
    }
    if (c->body) {
        g_string_free(c->body, TRUE);
    }
    g_ptr_array_remove_fast(s->clients, c);
    g_free(c);
    /* A slot is free again: accept the next waiting client. */
    server_watch_listen(s);
}

/* Discards input after the response, until EOF (or a bound). */
static void client_drain(void *opaque)
{
    MetricsClient *c = opaque;
    ssize_t n = recv(c->fd, c->head, sizeof(c->head), 0);

    if (n < 0 && (errno == EINTR || errno == EAGAIN ||
                  errno == EWOULDBLOCK)) {
        return;
    }
    c->drained += n > 0 ? n : 0;
    if (n <= 0 || c->drained > METRICS_MAX_DRAIN) {
        client_free(c);
    }
}

static void client_write(void *opaque)
{
    MetricsClient *c = opaque;

    for (;;) {
        GString *buf = c->head_done ? c->body : c->out;
        ssize_t n;

        if (!buf || c->out_sent == buf->len) {
            if (c->head_done || !c->body) {
                break;
            }
            c->head_done = true;
            c->out_sent = 0;
            continue;
        }
        n = send(c->fd, buf->str + c->out_sent, buf->len - c->out_sent,
                 MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n < 0) {
            client_free(c);       /* the peer is gone */
            return;
        }
        c->out_sent += n;
    }
    /* Lingering close: closing with unread input (the rest of an
     * oversized request) would reset the connection and could destroy
     * the response before the client reads it.  So: half-close, then
     * discard input until the client closes its side. */
    shutdown(c->fd, SHUT_WR);
    aio_set_fd_handler(aio_main_context(), c->fd, client_drain, NULL, c);
}

/* Sends the response; takes body (may be NULL). */
static void client_respond(MetricsClient *c, const char *status,
                           const char *ctype, GString *body, bool head_only)
{
    c->out = g_string_sized_new(256);
    g_string_append_printf(c->out, "HTTP/1.1 %s\r\n"
                           "Content-Type: %s\r\n"
                           "Content-Length: %zu\r\n"
                           "Connection: close\r\n\r\n",
                           status, ctype, body ? body->len : 0);
    if (body && head_only) {
        g_string_free(body, TRUE);
        body = NULL;
    }
    c->body = body;
    aio_set_fd_handler(aio_main_context(), c->fd, NULL, client_write, c);
    client_write(c);
}

static void client_error(MetricsClient *c, const char *status)
{
    GString *body = g_string_new(status);

    g_string_append_c(body, '\n');
    client_respond(c, status, "text/plain; charset=utf-8", body, false);
}

/* A token of the request line: visible ASCII, no spaces. */
static bool token_ok(const char *s, size_t len)
{
    if (len == 0) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] <= ' ' || s[i] > '~') {
            return false;
        }
    }
    return true;
}

/*
 * Answers the complete request head c->head (NUL-terminated, without the
 * blank line): "METHOD SP TARGET SP HTTP/1.x", then header lines of the
 * form "name: value".
 */
static void client_handle(MetricsClient *c)
{
    char *line_end = strstr(c->head, "\r\n");
    size_t line_len = line_end ? (size_t)(line_end - c->head)
                               : strlen(c->head);
    const char *sp1 = memchr(c->head, ' ', line_len);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', line_len -
                                   (sp1 + 1 - c->head)) : NULL;
    const char *version = sp2 ? sp2 + 1 : NULL;
    size_t version_len = version ? line_len - (version - c->head) : 0;
    bool get, head;

    if (!sp2 || !token_ok(c->head, sp1 - c->head) ||
        !token_ok(sp1 + 1, sp2 - sp1 - 1) ||
        version_len != 8 || strncmp(version, "HTTP/1.", 7) != 0 ||
        (version[7] != '0' && version[7] != '1')) {
        client_error(c, "400 Bad Request");
        return;
    }
    /* Every header line needs a name and a colon. */
    for (char *l = line_end; l && l[0]; ) {
        char *next = strstr(l + 2, "\r\n");
        char *colon;

        l += 2;
        if (!next) {
            next = l + strlen(l);
        }
        colon = memchr(l, ':', next - l);
        if (!colon || colon == l || !token_ok(l, colon - l)) {
            client_error(c, "400 Bad Request");
            return;
        }
        l = *next ? next : NULL;
    }
    get = (size_t)(sp1 - c->head) == 3 && !strncmp(c->head, "GET", 3);
    head = (size_t)(sp1 - c->head) == 4 && !strncmp(c->head, "HEAD", 4);
    if ((get || head) && sp2 - sp1 - 1 == 8 &&
        !strncmp(sp1 + 1, "/metrics", 8)) {
        /* Sized like the last answer: growing a buffer of megabytes by
         * doubling costs more page faults than rendering. */
        static size_t last_len = 4096;
        GString *body = g_string_sized_new(last_len + last_len / 8);

        metrics_render(body);
        last_len = body->len;
        client_respond(c, "200 OK", "application/openmetrics-text; "
                       "version=1.0.0; charset=utf-8", body, head);
        return;
    }
    client_error(c, "404 Not Found");
}

static void client_read(void *opaque)
{
    MetricsClient *c = opaque;
    size_t room = sizeof(c->head) - 1 - c->head_len;
    ssize_t n;
    char *end;

    if (room == 0) {
        client_error(c, "400 Bad Request");
        return;
    }
    n = recv(c->fd, c->head + c->head_len, room, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN ||
                  errno == EWOULDBLOCK)) {
        return;
    }
    if (n <= 0) {
        client_free(c);
        return;
    }
    c->head_len += n;
    c->head[c->head_len] = '\0';
    if (memchr(c->head, '\0', c->head_len)) {
        client_error(c, "400 Bad Request");
        return;
    }
    end = strstr(c->head, "\r\n\r\n");
    if (!end) {
        if (c->head_len == sizeof(c->head) - 1) {
            client_error(c, "400 Bad Request");
        }
        return;
    }
    *end = '\0';
    /* Stop reading: one request per connection. */
    aio_set_fd_handler(aio_main_context(), c->fd, NULL, NULL, NULL);
    client_handle(c);
}

static void server_accept(void *opaque)
{
    MetricsServer *s = opaque;

    while (s->clients->len < s->max_conn) {
        int fd = accept4(s->listen_fd, NULL, NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        MetricsClient *c;

        if (fd < 0) {
            break;
        }
        c = g_new0(MetricsClient, 1);
        c->server = s;
        c->fd = fd;
        g_ptr_array_add(s->clients, c);
        aio_set_fd_handler(aio_main_context(), fd, client_read, NULL, c);
    }
    server_watch_listen(s);
}

/* Watches the listening socket only while a client slot is free. */
static void server_watch_listen(MetricsServer *s)
{
    aio_set_fd_handler(aio_main_context(), s->listen_fd,
                       s->clients->len < s->max_conn ? server_accept : NULL,
                       NULL, s);
}

/* ---- Sockets and lifetime ---- */

static int listen_inet(const InetSocketAddress *a, Error **errp)
{
    struct addrinfo hints = {
        .ai_flags = AI_PASSIVE,
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
    };
    struct addrinfo *res;
    int err = 0, fd = -1;
    int rc = getaddrinfo(a->host, a->port, &hints, &res);

    if (rc != 0) {
        error_setg(errp, "address resolution failed for %s:%s: %s",
                   a->host, a->port, gai_strerror(rc));
        return -1;
    }
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        int one = 1;

        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK |
                    SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
            listen(fd, SOMAXCONN) < 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        error_setg_errno(errp, err, "Failed to listen on %s:%s", a->host,
                         a->port);
    }
    return fd;
}

static int listen_unix(const char *path, Error **errp)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        error_setg(errp, "UNIX socket path '%s' is too long", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        unlink(path);     /* left behind by a process that died */
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Failed to create UNIX socket");
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(fd, SOMAXCONN) < 0) {
        error_setg_errno(errp, errno, "Failed to listen on %s", path);
        close(fd);
        return -1;
    }
    return fd;
}

bool metrics_server_start(const char *id, const SocketAddress *addr,
                          int64_t max_conn, Error **errp)
{
    MetricsServer *s;
    int fd;

    if (servers) {
        for (guint i = 0; i < servers->len; i++) {
            MetricsServer *o = g_ptr_array_index(servers, i);

            if (strcmp(o->id, id) == 0) {
                error_setg(errp, "Duplicate ID '%s' for metrics-server", id);
                return false;
            }
        }
    }
    if (max_conn < 1 || max_conn > METRICS_SERVER_MAX_CONNECTIONS) {
        error_setg(errp, "Parameter 'max-connections' must be between 1 "
                   "and %d", METRICS_SERVER_MAX_CONNECTIONS);
        return false;
    }
    fd = addr->type == SOCKET_ADDRESS_TYPE_UNIX
         ? listen_unix(addr->u.q_unix.path, errp)
         : listen_inet(&addr->u.inet, errp);
    if (fd < 0) {
        return false;
    }
    s = g_new0(MetricsServer, 1);
    s->id = g_strdup(id);
    s->listen_fd = fd;
    s->max_conn = max_conn;
    s->clients = g_ptr_array_new();
    if (addr->type == SOCKET_ADDRESS_TYPE_UNIX) {
        s->unix_path = g_strdup(addr->u.q_unix.path);
    }
    if (!servers) {
        servers = g_ptr_array_new();
    }
    g_ptr_array_add(servers, s);
    server_watch_listen(s);
    return true;
}

void metrics_server_cleanup_all(void)
{
    if (!servers) {
        return;
    }
    for (guint i = 0; i < servers->len; i++) {
        MetricsServer *s = g_ptr_array_index(servers, i);

        while (s->clients->len) {
            MetricsClient *c = g_ptr_array_index(s->clients, 0);

            s->max_conn = 0;       /* no re-watching of the listener */
            client_free(c);
        }
        aio_set_fd_handler(aio_main_context(), s->listen_fd, NULL, NULL,
                           NULL);
        close(s->listen_fd);
        if (s->unix_path) {
            unlink(s->unix_path);
        }
        g_ptr_array_free(s->clients, TRUE);
        g_free(s->unix_path);
        g_free(s->id);
        g_free(s);
    }
    g_ptr_array_free(servers, TRUE);
    servers = NULL;
}

void qmp_metrics_server_start(const char *id, SocketAddress *addr,
                              bool has_max_connections,
                              int64_t max_connections, Error **errp)
{
    metrics_server_start(id, addr, has_max_connections ? max_connections
                         : METRICS_SERVER_DEFAULT_CONNECTIONS, errp);
}
