/*
 * The NBD server: a listening socket (nbd-server-start, --nbd-server),
 * the NBD export type of block/export.c, and one connection object per
 * client that speaks the fixed-newstyle protocol (include/block/nbd.h).
 *
 * Life of a connection:
 *   1. accepted in the main context; the handshake runs there in a
 *      coroutine (it needs the export list, which is main-thread data);
 *   2. after NBD_OPT_GO / NBD_OPT_EXPORT_NAME the coroutine moves itself
 *      into the export's AioContext (its iothread, if any) and becomes the
 *      reader: it receives the socket in large pieces, parses every
 *      complete request in them and starts one coroutine per request
 *      before it goes back to the event loop (so their I/O is submitted
 *      together).  Each request queues its reply when it finishes (out of
 *      order); the replies queued in one loop iteration leave with one
 *      sendmsg, straight from the request buffers, which are then reused;
 *      a client that takes longer than handshake-max-seconds to get
 *      here is dropped;
 *   3. on EOF, NBD_CMD_DISC, a protocol error or shutdown(2) from the
 *      main thread (block-export-del mode=hard, nbd-server-stop), the
 *      reader waits for the requests in flight, removes its fd handler
 *      and hands the connection back to the main thread, which closes
 *      the fd and frees it.
 *
 * Bounds per connection: NBD_MAX_IN_FLIGHT requests and
 * NBD_MAX_BYTES_IN_FLIGHT payload bytes in flight (a request counts until
 * its reply is written); NBD_CACHE_BYTES of idle buffers kept for reuse;
 * option payloads of at most NBD_MAX_OPTION_SIZE; requests of at most
 * NBD_MAX_BUFFER_SIZE.
 * A write longer than that cannot be skipped safely, so it ends the
 * connection; everything else malformed gets the protocol's error.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "block/export.h"
#include "block/nbd.h"
#include "qapi/qapi-commands.h"

#define NBD_MAX_IN_FLIGHT        32
#define NBD_MAX_BYTES_IN_FLIGHT  (64 * 1024 * 1024)
#define NBD_RBUF_SIZE            (128 * 1024)
/* Reads at least this long are answered sparsely (OFFSET_HOLE chunks for
 * each all-zero NBD_SPARSE_GRAIN piece); shorter ones are not worth the
 * scan. */
#define NBD_SPARSE_READ_MIN      (64 * 1024)
#define NBD_SPARSE_GRAIN         (64 * 1024)
/* Most chunks of one sparse read reply / extents of one block status. */
#define NBD_MAX_READ_CHUNKS      64
#define NBD_MAX_EXTENTS          (128 * 1024)
#define NBD_META_ID_BASE_ALLOCATION 1

typedef struct NBDClient NBDClient;
typedef struct NBDRequestData NBDRequestData;

/* The NBD part of an export; main thread. */
typedef struct NBDExport {
    BlockExport common;
    char *name;
    char *description;            /* NULL if none */
    unsigned nclients;            /* connections past NBD_OPT_GO */
} NBDExport;

/* The listening server; main thread. */
typedef struct NBDServer {
    int fd;
    char *unix_path;              /* unlinked when the server stops */
    uint32_t max_connections;     /* 0: unlimited */
    uint32_t handshake_max_secs;  /* 0: unlimited */
    unsigned nclients;
    NBDClient *clients;           /* every connection, newest first */
} NBDServer;

static NBDServer *nbd_server;

/*
 * One connection.  The list link, fd lifetime and exp pointer are main
 * thread data; everything else belongs to the thread of ctx (the main
 * context during the handshake, then the export's).
 */
struct NBDClient {
    int fd;                       /* closed by the main thread at the end */
    AioContext *ctx;
    NBDExport *exp;               /* set at NBD_OPT_GO; counted there */
    NBDClient *next;              /* in nbd_server->clients */
    /* Drops a client that has not selected an export in time (main
     * thread; NULL without a limit or once the handshake is over). */
    QEMUTimer *handshake_timer;

    bool fixed;                   /* client set NBD_FLAG_C_FIXED_NEWSTYLE */
    bool no_zeroes;
    bool structured;
    bool base_allocation;         /* meta context negotiated */
    bool closing;                 /* no new requests; tear down */

    Coroutine *recv_waiter;       /* coroutine waiting for readable */
    Coroutine *send_waiter;       /* handshake: waiting for writable */
    bool read_watched, write_watched;
    /* False once a recv came back short or with EAGAIN: the socket is
     * drained, so the next read waits for readable instead of making a
     * recv that would fail. */
    bool may_read;

    uint8_t *rbuf;                /* received, not yet consumed bytes */
    size_t rstart, rend;

    /*
     * Transmission replies, in the order they were finished, each still
     * referencing its request's buffers (no copy).  nbd_flush() writes
     * all of them with one sendmsg, from flush_bh at the end of the loop
     * iteration in which they were queued, or from the writable handler
     * when the socket was full.
     */
    NBDRequestData *sendq_head, *sendq_tail;
    QEMUBH *flush_bh;             /* in the export's context */
    bool send_blocked;            /* socket full: wait for writable */
    bool send_failed;             /* socket broken: replies are dropped */

    /* Requests whose reply is gone, kept with their payload buffers for
     * the next ones (at most the most requests ever in flight; buffers
     * of at most NBD_CACHE_BYTES in all). */
    NBDRequestData *free_reqs;
    size_t cached_bytes;

    CoQueue slot_wait;            /* reader waiting for in_flight to drop */
    unsigned in_flight;           /* parsed, reply not yet written */
    uint64_t bytes_in_flight;     /* their payload buffers */
};

/*
 * One request, from its header to the last byte of its reply.  Owned by
 * its coroutine until the reply is queued, then by the client's send
 * queue until written (or dropped), then kept in free_reqs for reuse.
 */
struct NBDRequestData {
    NBDClient *c;
    NBDRequest req;
    uint32_t nbd_err;             /* validation error, replied as is */
    uint64_t payload;             /* bytes counted in bytes_in_flight */
    uint8_t *buf;                 /* payload buffer (bdrv_blockalign) */
    size_t buf_size;              /* its size (>= payload) */
    /* The reply; iov[pos..niov) is not written yet. */
    struct iovec *iov;            /* iov_inline, or g_new for many */
    int niov, pos;
    struct iovec iov_inline[2];
    uint8_t hdr[32];              /* header of a one-chunk reply */
    void *extra;                  /* g_malloc'd headers or payload */
    NBDRequestData *next;         /* in sendq or free_reqs */
};

/* ---- Socket I/O in the client's context ---- */

static void nbd_client_update_watch(NBDClient *c);

/* Wakes the coroutine waiting in *waiter for the socket, if any. */
static void nbd_client_wake(NBDClient *c, Coroutine **waiter)
{
    Coroutine *co = *waiter;

    if (!co) {
        /* Lazy removal: nobody waits any more. */
        nbd_client_update_watch(c);
        return;
    }
    *waiter = NULL;
    aio_co_wake(co);
}

static void nbd_client_readable(void *opaque)
{
    NBDClient *c = opaque;

    nbd_client_wake(c, &c->recv_waiter);
}

static void nbd_flush(NBDClient *c);

static void nbd_client_writable(void *opaque)
{
    NBDClient *c = opaque;

    if (c->send_blocked) {
        nbd_flush(c);
    } else {
        nbd_client_wake(c, &c->send_waiter);
    }
}

/* Watches exactly what waiters need, plus keeps a read watch that is
 * already set while a waiter may come back soon (avoids an epoll_ctl per
 * request; a spurious wake-up just removes it). */
static void nbd_client_update_watch(NBDClient *c)
{
    bool want_r = c->recv_waiter != NULL;
    bool want_w = c->send_waiter != NULL || c->send_blocked;

    if (want_r == c->read_watched && want_w == c->write_watched) {
        return;
    }
    c->read_watched = want_r;
    c->write_watched = want_w;
    aio_set_fd_handler(c->ctx, c->fd,
                       want_r ? nbd_client_readable : NULL,
                       want_w ? nbd_client_writable : NULL, c);
}

static void coroutine_fn nbd_co_wait_readable(NBDClient *c)
{
    c->recv_waiter = coroutine_self();
    if (!c->read_watched) {
        nbd_client_update_watch(c);
    }
    coroutine_yield();
}

static void coroutine_fn nbd_co_wait_writable(NBDClient *c)
{
    c->send_waiter = coroutine_self();
    nbd_client_update_watch(c);
    coroutine_yield();
}

/* Receives at most len (> 0) bytes, waiting for the socket as needed.
 * Returns the count, -EPIPE at EOF or -errno. */
static ssize_t coroutine_fn nbd_co_recv_some(NBDClient *c, void *buf,
                                             size_t len)
{
    for (;;) {
        ssize_t n;

        if (!c->may_read) {
            nbd_co_wait_readable(c);
            c->may_read = true;
        }
        n = recv(c->fd, buf, len, 0);
        if (n > 0) {
            /* Short: the socket is empty now (see may_read). */
            c->may_read = (size_t)n == len;
            return n;
        }
        if (n == 0) {
            return -EPIPE;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->may_read = false;
        } else if (errno != EINTR) {
            return -errno;
        }
    }
}

/* Makes at least need bytes available in rbuf, receiving as much as fits
 * (so one recv usually brings many requests).  0 or -errno (-EPIPE at
 * EOF). */
static int coroutine_fn nbd_co_fill(NBDClient *c, size_t need)
{
    g_assert(need <= NBD_RBUF_SIZE);
    if (c->rstart == c->rend) {
        c->rstart = c->rend = 0;
    }
    while (c->rend - c->rstart < need) {
        ssize_t n;

        if (c->rstart > 0 && NBD_RBUF_SIZE - c->rstart < need) {
            memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
            c->rend -= c->rstart;
            c->rstart = 0;
        }
        n = nbd_co_recv_some(c, c->rbuf + c->rend, NBD_RBUF_SIZE - c->rend);
        if (n < 0) {
            return n;
        }
        c->rend += n;
    }
    return 0;
}

/* Reads exactly len bytes into buf.  Short payloads come through rbuf
 * (the same recv also brings the requests behind them); long ones go
 * straight from the socket into buf after what rbuf already holds. */
static int coroutine_fn nbd_co_read(NBDClient *c, void *buf, size_t len)
{
    size_t have, done;

    if (len <= NBD_RBUF_SIZE / 2) {
        int ret = nbd_co_fill(c, len);

        if (ret < 0) {
            return ret;
        }
    }
    have = MIN(len, c->rend - c->rstart);
    if (have) {
        /* buf may be NULL when len is 0 (an empty option payload). */
        memcpy(buf, c->rbuf + c->rstart, have);
        c->rstart += have;
    }
    for (done = have; done < len; ) {
        ssize_t n = nbd_co_recv_some(c, (uint8_t *)buf + done, len - done);

        if (n < 0) {
            return n;
        }
        done += n;
    }
    return 0;
}

/* Discards len bytes of input (an option payload we do not want). */
static int coroutine_fn nbd_co_skip(NBDClient *c, size_t len)
{
    uint8_t tmp[4096];

    while (len > 0) {
        size_t n = MIN(len, sizeof(tmp));
        int ret = nbd_co_read(c, tmp, n);

        if (ret < 0) {
            return ret;
        }
        len -= n;
    }
    return 0;
}

/* Writes the whole vector (modified in place); handshake only (replies
 * in transmission go through the send queue, nbd_flush()). */
static int coroutine_fn nbd_co_writev(NBDClient *c, struct iovec *iov,
                                      int niov)
{
    while (niov > 0) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = niov };
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                nbd_co_wait_writable(c);
                continue;
            }
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        while (niov > 0 && (size_t)n >= iov->iov_len) {
            n -= iov->iov_len;
            iov++;
            niov--;
        }
        if (niov > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= n;
        }
    }
    return 0;
}

static int coroutine_fn nbd_co_write(NBDClient *c, const void *buf,
                                     size_t len)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

    return nbd_co_writev(c, &iov, 1);
}

/* ---- Exports ---- */

static NBDExport *nbd_find_export(const char *name)
{
    NBDExport *only = NULL;
    unsigned n = 0;

    for (BlockExport *e = blk_exp_next(NULL); e; e = blk_exp_next(e)) {
        NBDExport *ne = (NBDExport *)e;

        if (e->drv != &blk_exp_nbd || e->shutting_down) {
            continue;
        }
        if (!strcmp(ne->name, name)) {
            return ne;
        }
        only = ne;
        n++;
    }
    /* The empty name is the "default export": the only one, if so. */
    return (!*name && n == 1) ? only : NULL;
}

static uint16_t nbd_export_tflags(NBDExport *exp, bool structured)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
                 NBD_FLAG_CAN_MULTI_CONN;

    if (exp->common.writable) {
        f |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
             NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
    } else {
        f |= NBD_FLAG_READ_ONLY;
    }
    if (structured) {
        f |= NBD_FLAG_SEND_DF;
    }
    return f;
}

static int64_t nbd_export_size(NBDExport *exp)
{
    return blk_getlength(exp->common.blk);
}

static bool nbd_export_create(BlockExport *be, const BlockExportOptions *opts,
                              Error **errp)
{
    NBDExport *exp = (NBDExport *)be;
    const char *name = opts->u.nbd.name ? opts->u.nbd.name : opts->node_name;

    if (!nbd_server) {
        error_setg(errp, "NBD server not running");
        return false;
    }
    if (strlen(name) > NBD_MAX_STRING_SIZE) {
        error_setg(errp, "export name '%s' too long", name);
        return false;
    }
    if (opts->u.nbd.description &&
        strlen(opts->u.nbd.description) > NBD_MAX_STRING_SIZE) {
        error_setg(errp, "description '%s' too long",
                   opts->u.nbd.description);
        return false;
    }
    for (BlockExport *e = blk_exp_next(NULL); e; e = blk_exp_next(e)) {
        if (e->drv == &blk_exp_nbd && !strcmp(((NBDExport *)e)->name, name)) {
            error_setg(errp, "NBD server already has export named '%s'",
                       name);
            return false;
        }
    }
    if (nbd_export_size(exp) < 0) {
        error_setg(errp, "Cannot get the size of node '%s'",
                   opts->node_name);
        return false;
    }
    exp->name = g_strdup(name);
    exp->description = g_strdup(opts->u.nbd.description);
    return true;
}

static bool nbd_export_has_clients(BlockExport *be)
{
    return ((NBDExport *)be)->nclients > 0;
}

static void nbd_export_request_shutdown(BlockExport *be)
{
    NBDExport *exp = (NBDExport *)be;

    if (exp->nclients == 0) {
        blk_exp_clients_gone(be);
        return;
    }
    for (NBDClient *c = nbd_server ? nbd_server->clients : NULL; c;
         c = c->next) {
        if (c->exp == exp) {
            /* The fd stays open until the main thread frees c, so this
             * is safe from here; the client's thread sees EOF/EPIPE. */
            shutdown(c->fd, SHUT_RDWR);
        }
    }
}

static void nbd_export_destroy(BlockExport *be)
{
    NBDExport *exp = (NBDExport *)be;

    g_free(exp->name);
    g_free(exp->description);
}

const BlockExportDriver blk_exp_nbd = {
    .type = BLOCK_EXPORT_TYPE_NBD,
    .instance_size = sizeof(NBDExport),
    .create = nbd_export_create,
    .has_clients = nbd_export_has_clients,
    .request_shutdown = nbd_export_request_shutdown,
    .destroy = nbd_export_destroy,
};

/* ---- Handshake (main context) ---- */

static int coroutine_fn nbd_send_rep(NBDClient *c, uint32_t opt,
                                     uint32_t type, const void *data,
                                     size_t len)
{
    uint8_t hdr[NBD_OPTION_REPLY_HEADER_SIZE];
    struct iovec iov[2] = {
        { .iov_base = hdr, .iov_len = sizeof(hdr) },
        { .iov_base = (void *)data, .iov_len = len },
    };

    nbd_encode_option_reply(hdr, opt, type, len);
    return nbd_co_writev(c, iov, len ? 2 : 1);
}

/* An error reply with a human-readable message (allowed by the spec). */
static int coroutine_fn G_GNUC_PRINTF(4, 5)
nbd_send_rep_err(NBDClient *c, uint32_t opt, uint32_t type,
                 const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return nbd_send_rep(c, opt, type, msg, strlen(msg));
}

/* NBD_OPT_LIST: one NBD_REP_SERVER per export, then ACK. */
static int coroutine_fn nbd_opt_list(NBDClient *c, uint32_t len)
{
    if (len) {
        return nbd_send_rep_err(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID,
                                "NBD_OPT_LIST must have no payload");
    }
    for (BlockExport *e = blk_exp_next(NULL); e; e = blk_exp_next(e)) {
        NBDExport *ne = (NBDExport *)e;
        g_autoptr(GByteArray) p = g_byte_array_new();
        uint8_t be32[4];
        int ret;

        if (e->drv != &blk_exp_nbd || e->shutting_down) {
            continue;
        }
        nbd_put_u32(be32, strlen(ne->name));
        g_byte_array_append(p, be32, 4);
        g_byte_array_append(p, (const guint8 *)ne->name, strlen(ne->name));
        if (ne->description) {
            g_byte_array_append(p, (const guint8 *)ne->description,
                                strlen(ne->description));
        }
        ret = nbd_send_rep(c, NBD_OPT_LIST, NBD_REP_SERVER, p->data, p->len);
        if (ret < 0) {
            return ret;
        }
    }
    return nbd_send_rep(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

static int coroutine_fn nbd_send_info(NBDClient *c, uint32_t opt,
                                      uint16_t type, const void *data,
                                      size_t len)
{
    g_autofree uint8_t *p = g_malloc(2 + len);

    nbd_put_u16(p, type);
    memcpy(p + 2, data, len);
    return nbd_send_rep(c, opt, NBD_REP_INFO, p, 2 + len);
}

/*
 * NBD_OPT_INFO / NBD_OPT_GO: payload u32 name length, name, u16 count,
 * count u16 info requests.  Returns 1 when GO selected an export
 * (*selected set), 0 to go on negotiating, -errno to drop the client.
 */
static int coroutine_fn nbd_opt_info_go(NBDClient *c, uint32_t opt,
                                        const uint8_t *p, uint32_t len,
                                        NBDExport **selected)
{
    uint32_t namelen;
    uint16_t nreq;
    bool want_name = false, want_desc = false;
    g_autofree char *name = NULL;
    NBDExport *exp;
    uint8_t buf[12];
    uint32_t align;
    int ret;

    if (len < 6 || (namelen = nbd_get_u32(p)) > len - 6 ||
        (nreq = nbd_get_u16(p + 4 + namelen),
         len != 6 + namelen + 2u * nreq)) {
        return nbd_send_rep_err(c, opt, NBD_REP_ERR_INVALID,
                                "%s: malformed payload", nbd_opt_name(opt));
    }
    name = g_strndup((const char *)p + 4, namelen);
    for (uint16_t i = 0; i < nreq; i++) {
        uint16_t r = nbd_get_u16(p + 6 + namelen + 2 * i);

        want_name |= r == NBD_INFO_NAME;
        want_desc |= r == NBD_INFO_DESCRIPTION;
    }
    exp = nbd_find_export(name);
    if (!exp) {
        return nbd_send_rep_err(c, opt, NBD_REP_ERR_UNKNOWN,
                                "export '%s' not present", name);
    }
    nbd_put_u64(buf, nbd_export_size(exp));
    nbd_put_u16(buf + 8, nbd_export_tflags(exp, c->structured));
    ret = nbd_send_info(c, opt, NBD_INFO_EXPORT, buf, 10);
    if (ret == 0 && want_name) {
        ret = nbd_send_info(c, opt, NBD_INFO_NAME, exp->name,
                            strlen(exp->name));
    }
    if (ret == 0 && want_desc && exp->description) {
        ret = nbd_send_info(c, opt, NBD_INFO_DESCRIPTION, exp->description,
                            strlen(exp->description));
    }
    if (ret == 0) {
        /* The request path pads unaligned requests, so 1 is a valid
         * minimum; the node's alignment is the preferred size. */
        align = bdrv_get_request_alignment(blk_bs(exp->common.blk));
        nbd_put_u32(buf, 1);
        nbd_put_u32(buf + 4, MAX(4096u, align));
        nbd_put_u32(buf + 8, NBD_MAX_BUFFER_SIZE);
        ret = nbd_send_info(c, opt, NBD_INFO_BLOCK_SIZE, buf, 12);
    }
    if (ret == 0) {
        ret = nbd_send_rep(c, opt, NBD_REP_ACK, NULL, 0);
    }
    if (ret < 0) {
        return ret;
    }
    if (opt == NBD_OPT_GO) {
        *selected = exp;
        return 1;
    }
    return 0;
}

/*
 * NBD_OPT_LIST/SET_META_CONTEXT: u32 export name length, name, u32 query
 * count, queries (u32 length, string).  Only base:allocation exists.
 */
static int coroutine_fn nbd_opt_meta(NBDClient *c, uint32_t opt,
                                     const uint8_t *p, uint32_t len)
{
    uint32_t namelen, nq, pos;
    g_autofree char *name = NULL;
    bool match = false;
    uint8_t reply[4 + sizeof(NBD_META_BASE_ALLOCATION)];
    size_t balen = strlen(NBD_META_BASE_ALLOCATION);
    int ret;

    if (opt == NBD_OPT_SET_META_CONTEXT && !c->structured) {
        return nbd_send_rep_err(c, opt, NBD_REP_ERR_INVALID,
                                "structured replies not negotiated");
    }
    if (len < 8 || (namelen = nbd_get_u32(p)) > len - 8) {
        return nbd_send_rep_err(c, opt, NBD_REP_ERR_INVALID,
                                "%s: malformed payload", nbd_opt_name(opt));
    }
    name = g_strndup((const char *)p + 4, namelen);
    nq = nbd_get_u32(p + 4 + namelen);
    pos = 8 + namelen;
    if (!nbd_find_export(name)) {
        return nbd_send_rep_err(c, opt, NBD_REP_ERR_UNKNOWN,
                                "export '%s' not present", name);
    }
    if (opt == NBD_OPT_LIST_META_CONTEXT && nq == 0) {
        match = true;
    }
    for (uint32_t i = 0; i < nq; i++) {
        uint32_t qlen;
        const char *q;

        if (len - pos < 4 || (qlen = nbd_get_u32(p + pos)) > len - pos - 4) {
            return nbd_send_rep_err(c, opt, NBD_REP_ERR_INVALID,
                                    "%s: malformed query", nbd_opt_name(opt));
        }
        q = (const char *)p + pos + 4;
        if (qlen == balen && !memcmp(q, NBD_META_BASE_ALLOCATION, balen)) {
            match = true;
        } else if (opt == NBD_OPT_LIST_META_CONTEXT &&
                   qlen == strlen(NBD_META_NS_BASE) &&
                   !memcmp(q, NBD_META_NS_BASE, qlen)) {
            match = true;
        }
        pos += 4 + qlen;
    }
    if (pos != len) {
        return nbd_send_rep_err(c, opt, NBD_REP_ERR_INVALID,
                                "%s: trailing bytes", nbd_opt_name(opt));
    }
    if (opt == NBD_OPT_SET_META_CONTEXT) {
        c->base_allocation = match;
    }
    if (match) {
        nbd_put_u32(reply, opt == NBD_OPT_SET_META_CONTEXT ?
                    NBD_META_ID_BASE_ALLOCATION : 0);
        memcpy(reply + 4, NBD_META_BASE_ALLOCATION, balen);
        ret = nbd_send_rep(c, opt, NBD_REP_META_CONTEXT, reply, 4 + balen);
        if (ret < 0) {
            return ret;
        }
    }
    return nbd_send_rep(c, opt, NBD_REP_ACK, NULL, 0);
}

/* NBD_OPT_EXPORT_NAME: no error reply exists, so an unknown name drops
 * the client.  Returns 1 with *selected set, or -errno. */
static int coroutine_fn nbd_opt_export_name(NBDClient *c, const uint8_t *p,
                                            uint32_t len,
                                            NBDExport **selected)
{
    g_autofree char *name = g_strndup((const char *)p, len);
    NBDExport *exp = nbd_find_export(name);
    uint8_t buf[10 + NBD_EXPORT_NAME_PAD] = { 0 };
    int ret;

    if (!exp) {
        return -ENOENT;
    }
    nbd_put_u64(buf, nbd_export_size(exp));
    nbd_put_u16(buf + 8, nbd_export_tflags(exp, c->structured));
    ret = nbd_co_write(c, buf, c->no_zeroes ? 10 : sizeof(buf));
    if (ret < 0) {
        return ret;
    }
    *selected = exp;
    return 1;
}

/* One option: 1 when an export was selected, 0 to continue, -errno to
 * drop the client. */
static int coroutine_fn nbd_handle_option(NBDClient *c, NBDExport **selected)
{
    uint8_t hdr[NBD_OPTION_HEADER_SIZE];
    g_autofree uint8_t *p = NULL;
    uint32_t opt, len;
    int ret = nbd_co_read(c, hdr, sizeof(hdr));

    if (ret < 0) {
        return ret;
    }
    if (nbd_get_u64(hdr) != NBD_OPTS_MAGIC) {
        return -EPROTO;
    }
    opt = nbd_get_u32(hdr + 8);
    len = nbd_get_u32(hdr + 12);
    if (len > NBD_MAX_OPTION_SIZE) {
        if (opt == NBD_OPT_EXPORT_NAME || !c->fixed) {
            return -EPROTO;
        }
        ret = nbd_co_skip(c, len);
        return ret < 0 ? ret :
            nbd_send_rep_err(c, opt, NBD_REP_ERR_TOO_BIG,
                             "option payload too long");
    }
    p = g_malloc(len + 1);
    ret = nbd_co_read(c, p, len);
    if (ret < 0) {
        return ret;
    }
    switch (opt) {
    case NBD_OPT_EXPORT_NAME:
        return nbd_opt_export_name(c, p, len, selected);
    case NBD_OPT_ABORT:
        nbd_send_rep(c, opt, NBD_REP_ACK, NULL, 0);
        return -ECONNABORTED;
    case NBD_OPT_LIST:
        return nbd_opt_list(c, len);
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        return nbd_opt_info_go(c, opt, p, len, selected);
    case NBD_OPT_STRUCTURED_REPLY:
        if (len) {
            return nbd_send_rep_err(c, opt, NBD_REP_ERR_INVALID,
                                    "NBD_OPT_STRUCTURED_REPLY must have no "
                                    "payload");
        }
        c->structured = true;
        return nbd_send_rep(c, opt, NBD_REP_ACK, NULL, 0);
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        return nbd_opt_meta(c, opt, p, len);
    default:
        if (!c->fixed) {
            return -EPROTO;
        }
        return nbd_send_rep_err(c, opt, NBD_REP_ERR_UNSUP,
                                "option %" PRIu32 " (%s) not supported", opt,
                                nbd_opt_name(opt));
    }
}

/* Greeting and option haggling.  Returns the selected export or NULL to
 * drop the client. */
static NBDExport *coroutine_fn nbd_co_handshake(NBDClient *c)
{
    uint8_t greet[18];
    uint8_t cflags[4];
    uint32_t flags;
    NBDExport *exp = NULL;
    int ret;

    nbd_put_u64(greet, NBD_INIT_MAGIC);
    nbd_put_u64(greet + 8, NBD_OPTS_MAGIC);
    nbd_put_u16(greet + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    if (nbd_co_write(c, greet, sizeof(greet)) < 0 ||
        nbd_co_read(c, cflags, 4) < 0) {
        return NULL;
    }
    flags = nbd_get_u32(cflags);
    if (flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
        return NULL;
    }
    c->fixed = flags & NBD_FLAG_C_FIXED_NEWSTYLE;
    c->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
    do {
        ret = nbd_handle_option(c, &exp);
    } while (ret == 0);
    return ret == 1 ? exp : NULL;
}

/* ---- Transmission (export's context) ---- */

/* Payload buffers a connection keeps for reuse, in bytes (enough for the
 * 1 MiB reads of a deep sequential reader; larger ones are freed). */
#define NBD_CACHE_BYTES          (8 * 1024 * 1024)
/* Most iovecs handed to one sendmsg (below IOV_MAX). */
#define NBD_FLUSH_IOV            256

/* A request slot for a request with payload bytes of buffer: a released
 * one (with its buffer) if any.  Counts it in flight. */
static NBDRequestData *nbd_request_get(NBDClient *c, uint64_t payload)
{
    NBDRequestData *d = c->free_reqs;

    if (d) {
        c->free_reqs = d->next;
        c->cached_bytes -= d->buf_size;
    } else {
        d = g_new0(NBDRequestData, 1);
        d->c = c;
        d->iov = d->iov_inline;
    }
    if (payload > d->buf_size) {
        bdrv_vfree(d->buf);
        d->buf = bdrv_blockalign(blk_bs(c->exp->common.blk), payload);
        d->buf_size = payload;
    }
    d->payload = payload;
    d->nbd_err = 0;
    d->niov = d->pos = 0;
    d->next = NULL;
    c->in_flight++;
    c->bytes_in_flight += payload;
    return d;
}

/* The reply of d is written (or dropped): back to the free list.  The
 * caller wakes the reader (slot_wait) afterwards. */
static void nbd_request_release(NBDRequestData *d)
{
    NBDClient *c = d->c;

    c->in_flight--;
    c->bytes_in_flight -= d->payload;
    g_free(d->extra);
    d->extra = NULL;
    if (d->iov != d->iov_inline) {
        g_free(d->iov);
        d->iov = d->iov_inline;
    }
    if (c->cached_bytes + d->buf_size > NBD_CACHE_BYTES) {
        bdrv_vfree(d->buf);
        d->buf = NULL;
        d->buf_size = 0;
    }
    c->cached_bytes += d->buf_size;
    d->next = c->free_reqs;
    c->free_reqs = d;
}

/* Frees the free list (main thread, at the end of the connection). */
static void nbd_free_requests(NBDClient *c)
{
    NBDRequestData *d;

    while ((d = c->free_reqs) != NULL) {
        c->free_reqs = d->next;
        bdrv_vfree(d->buf);
        g_free(d);
    }
}

/* Unlinks the head of the send queue and releases it. */
static void nbd_sendq_pop(NBDClient *c)
{
    NBDRequestData *d = c->sendq_head;

    c->sendq_head = d->next;
    if (!c->sendq_head) {
        c->sendq_tail = NULL;
    }
    nbd_request_release(d);
}

/* Accounts for len bytes written from the head of the send queue;
 * releases the requests whose reply went out completely.  True if any
 * did. */
static bool nbd_sendq_advance(NBDClient *c, size_t len)
{
    bool released = false;
    NBDRequestData *d;

    while ((d = c->sendq_head) != NULL) {
        while (d->pos < d->niov && len >= d->iov[d->pos].iov_len) {
            len -= d->iov[d->pos].iov_len;
            d->pos++;
        }
        if (d->pos < d->niov) {
            d->iov[d->pos].iov_base = (uint8_t *)d->iov[d->pos].iov_base + len;
            d->iov[d->pos].iov_len -= len;
            break;
        }
        nbd_sendq_pop(c);
        released = true;
    }
    return released;
}

/* The iovecs of the queued replies, as many as fit in iov[max]. */
static int nbd_sendq_iov(NBDClient *c, struct iovec *iov, int max)
{
    int n = 0;

    for (NBDRequestData *d = c->sendq_head; d && n < max; d = d->next) {
        for (int i = d->pos; i < d->niov && n < max; i++) {
            iov[n++] = d->iov[i];
        }
    }
    return n;
}

/*
 * Writes the queued replies, all of them in one sendmsg when they fit;
 * waits for writable (send_blocked) when the socket is full.  A broken
 * socket ends the connection: queued and later replies are dropped.
 * Waking the reader is the last thing done, because the reader may end
 * the connection and hand c to the main thread to be freed.
 */
static void nbd_flush(NBDClient *c)
{
    bool released = false;

    while (c->sendq_head) {
        struct iovec iov[NBD_FLUSH_IOV];
        struct msghdr msg = { .msg_iov = iov };
        ssize_t n;

        if (c->send_failed) {
            nbd_sendq_pop(c);
            released = true;
            continue;
        }
        msg.msg_iovlen = nbd_sendq_iov(c, iov, NBD_FLUSH_IOV);
        n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (n >= 0) {
            released |= nbd_sendq_advance(c, n);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->send_blocked = true;
            nbd_client_update_watch(c);
            break;
        } else if (errno != EINTR) {
            /* The stream is broken: stop reading too. */
            c->send_failed = true;
            c->closing = true;
            shutdown(c->fd, SHUT_RDWR);
        }
    }
    if (!c->sendq_head && c->send_blocked) {
        c->send_blocked = false;
        nbd_client_update_watch(c);
    }
    if (released) {
        co_queue_restart_all(&c->slot_wait);
    }
}

static void nbd_flush_bh(void *opaque)
{
    nbd_flush(opaque);
}

/* Queues the reply of d (d->iov[0..niov)); d belongs to the send queue
 * from now on.  The flush runs once per loop iteration for everything
 * queued in it, so replies finished together share one sendmsg. */
static void nbd_queue_reply(NBDRequestData *d)
{
    NBDClient *c = d->c;

    d->pos = 0;
    d->next = NULL;
    if (c->sendq_tail) {
        c->sendq_tail->next = d;
    } else {
        c->sendq_head = d;
    }
    c->sendq_tail = d;
    if (!c->send_blocked) {
        bh_schedule(c->flush_bh);
    }
}

/* Checks a request; returns an NBD error (0 if valid).  Sets *fatal for
 * requests that cannot be skipped (a write payload we will not read). */
static uint32_t nbd_validate_request(NBDClient *c, const NBDRequest *r,
                                     bool *fatal)
{
    NBDExport *exp = c->exp;
    uint16_t allowed = 0;
    bool write_like = false;
    int64_t size = nbd_export_size(exp);

    *fatal = false;
    switch (r->type) {
    case NBD_CMD_READ:
        allowed = c->structured ? NBD_CMD_FLAG_DF : 0;
        break;
    case NBD_CMD_WRITE:
        if (r->len > NBD_MAX_BUFFER_SIZE) {
            *fatal = true;
            return NBD_EOVERFLOW;
        }
        allowed = NBD_CMD_FLAG_FUA;
        write_like = true;
        break;
    case NBD_CMD_TRIM:
        allowed = NBD_CMD_FLAG_FUA;
        write_like = true;
        break;
    case NBD_CMD_WRITE_ZEROES:
        allowed = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE |
                  NBD_CMD_FLAG_FAST_ZERO;
        write_like = true;
        break;
    case NBD_CMD_BLOCK_STATUS:
        if (!c->base_allocation) {
            return NBD_EINVAL;
        }
        allowed = NBD_CMD_FLAG_REQ_ONE;
        break;
    case NBD_CMD_FLUSH:
        return r->flags ? NBD_EINVAL : 0;
    default:
        return NBD_EINVAL;
    }
    if (r->flags & ~allowed) {
        return NBD_EINVAL;
    }
    if (write_like && !exp->common.writable) {
        return NBD_EPERM;
    }
    if (r->type == NBD_CMD_READ && r->len > NBD_MAX_BUFFER_SIZE) {
        return NBD_EOVERFLOW;
    }
    if (r->len == 0) {
        return NBD_EINVAL;
    }
    if (size < 0 || r->offset > (uint64_t)size ||
        r->len > (uint64_t)size - r->offset) {
        return write_like ? NBD_ENOSPC : NBD_EINVAL;
    }
    return 0;
}

/* A simple reply, with len bytes of d->buf as payload. */
static void nbd_reply_simple(NBDRequestData *d, uint32_t err, size_t len)
{
    nbd_encode_simple_reply(d->hdr, err, d->req.cookie);
    d->iov[0] = (struct iovec) { d->hdr, NBD_SIMPLE_REPLY_SIZE };
    d->iov[1] = (struct iovec) { d->buf, len };
    d->niov = len ? 2 : 1;
    nbd_queue_reply(d);
}

/* A structured error chunk (final) with a short static message. */
static void nbd_reply_struct_error(NBDRequestData *d, uint32_t err,
                                   const char *msg)
{
    size_t mlen = strlen(msg);

    nbd_encode_structured_reply(d->hdr, NBD_REPLY_FLAG_DONE,
                                NBD_REPLY_TYPE_ERROR, d->req.cookie,
                                6 + mlen);
    nbd_put_u32(d->hdr + NBD_STRUCTURED_REPLY_SIZE, err);
    nbd_put_u16(d->hdr + NBD_STRUCTURED_REPLY_SIZE + 4, mlen);
    d->iov[0] = (struct iovec) { d->hdr, NBD_STRUCTURED_REPLY_SIZE + 6 };
    d->iov[1] = (struct iovec) { (void *)msg, mlen };
    d->niov = 2;
    nbd_queue_reply(d);
}

/* base:allocation flags of a block status result. */
static uint32_t nbd_status_flags(int ret)
{
    return ((ret & BDRV_BLOCK_DATA) ? 0 : NBD_STATE_HOLE) |
           ((ret & BDRV_BLOCK_ZERO) ? NBD_STATE_ZERO : 0);
}

/*
 * Extents of [offset, offset+len) as (length, flags) pairs, merged, at
 * most max of them (the rest of the range is left out, as the spec
 * allows).  Returns the count or -errno.
 */
static int coroutine_fn nbd_co_extents(NBDClient *c, uint64_t offset,
                                       uint64_t len, uint32_t *lens,
                                       uint32_t *flags, int max)
{
    BlockDriverState *bs = blk_bs(c->exp->common.blk);
    int n = 0;

    while (len > 0) {
        int64_t pnum;
        int ret = bdrv_co_block_status(bs, true, offset, len, &pnum, NULL,
                                       NULL);
        uint32_t f;

        if (ret < 0) {
            return ret;
        }
        if (pnum == 0) {
            break;
        }
        f = nbd_status_flags(ret);
        if (n > 0 && flags[n - 1] == f) {
            lens[n - 1] += pnum;
        } else if (n == max) {
            break;
        } else {
            lens[n] = pnum;
            flags[n] = f;
            n++;
        }
        offset += pnum;
        len -= pnum;
    }
    return n;
}

static void coroutine_fn nbd_do_block_status(NBDRequestData *d)
{
    NBDClient *c = d->c;
    bool one = d->req.flags & NBD_CMD_FLAG_REQ_ONE;
    int max = one ? 1 : NBD_MAX_EXTENTS;
    g_autofree uint32_t *lens = g_new(uint32_t, max);
    g_autofree uint32_t *flags = g_new(uint32_t, max);
    uint8_t *p;
    int n = nbd_co_extents(c, d->req.offset, d->req.len, lens, flags, max);
    size_t plen;

    if (n <= 0) {
        nbd_reply_struct_error(d, nbd_errno_to_wire(n < 0 ? n : -EIO),
                               "block status failed");
        return;
    }
    plen = NBD_STRUCTURED_REPLY_SIZE + 4 + 8 * (size_t)n;
    p = d->extra = g_malloc(plen);
    nbd_encode_structured_reply(p, NBD_REPLY_FLAG_DONE,
                                NBD_REPLY_TYPE_BLOCK_STATUS, d->req.cookie,
                                plen - NBD_STRUCTURED_REPLY_SIZE);
    nbd_put_u32(p + NBD_STRUCTURED_REPLY_SIZE, NBD_META_ID_BASE_ALLOCATION);
    for (int i = 0; i < n; i++) {
        nbd_put_u32(p + NBD_STRUCTURED_REPLY_SIZE + 4 + 8 * i, lens[i]);
        nbd_put_u32(p + NBD_STRUCTURED_REPLY_SIZE + 8 + 8 * i, flags[i]);
    }
    d->iov[0] = (struct iovec) { p, plen };
    d->niov = 1;
    nbd_queue_reply(d);
}

/*
 * A successful structured read: OFFSET_DATA for data, OFFSET_HOLE for
 * ranges that read as zeroes (large reads without DF only), the last
 * chunk flagged DONE.  The data goes out of d->buf without a copy.
 */
static void nbd_reply_read_chunks(NBDRequestData *d, const uint32_t *lens,
                                  const uint32_t *flags, int n)
{
    uint8_t *hdrs = d->hdr;
    uint64_t off = d->req.offset;
    size_t pos = 0;
    int niov = 0;

    if (n > 1) {
        /* Each chunk: a header (20 + 8 + 4 bytes room) and maybe data. */
        hdrs = d->extra = g_malloc(32 * (size_t)n);
        d->iov = g_new(struct iovec, 2 * (size_t)n);
    }
    for (int i = 0; i < n; i++) {
        uint8_t *h = hdrs + 32 * i;
        uint16_t fl = i == n - 1 ? NBD_REPLY_FLAG_DONE : 0;

        if (flags[i] & NBD_STATE_ZERO) {
            nbd_encode_structured_reply(h, fl, NBD_REPLY_TYPE_OFFSET_HOLE,
                                        d->req.cookie, 12);
            nbd_put_u64(h + 20, off);
            nbd_put_u32(h + 28, lens[i]);
            d->iov[niov++] = (struct iovec) { h, 32 };
        } else {
            nbd_encode_structured_reply(h, fl, NBD_REPLY_TYPE_OFFSET_DATA,
                                        d->req.cookie, 8 + lens[i]);
            nbd_put_u64(h + 20, off);
            d->iov[niov++] = (struct iovec) { h, 28 };
            d->iov[niov++] = (struct iovec) { d->buf + pos, lens[i] };
        }
        off += lens[i];
        pos += lens[i];
    }
    d->niov = niov;
    nbd_queue_reply(d);
}

/*
 * Splits a read buffer into data and zero chunks at NBD_SPARSE_GRAIN
 * granularity (aligned to the export's offsets) and merges neighbours of
 * the same kind; at most NBD_MAX_READ_CHUNKS, the last one taking the
 * rest as data.  Scanning the buffer we already have is much cheaper than
 * asking the storage for its holes (SEEK_DATA on a large tmpfs file walks
 * its pages), and it also turns written zeroes into holes on the wire.
 */
static int nbd_sparse_chunks(const uint8_t *buf, uint64_t offset,
                             uint32_t len, uint32_t *lens, uint32_t *flags)
{
    uint32_t pos = 0;
    int n = 0;

    while (pos < len) {
        uint64_t next = (offset + pos + NBD_SPARSE_GRAIN) &
                        ~(uint64_t)(NBD_SPARSE_GRAIN - 1);
        uint32_t piece = MIN(next - (offset + pos), len - pos);
        uint32_t f = buffer_is_zero(buf + pos, piece) ? NBD_STATE_ZERO : 0;

        if (n > 0 && flags[n - 1] == f) {
            lens[n - 1] += piece;
        } else if (n == NBD_MAX_READ_CHUNKS) {
            /* Out of chunks: the rest goes out as data. */
            flags[n - 1] = 0;
            lens[n - 1] += len - pos;
            break;
        } else {
            lens[n] = piece;
            flags[n] = f;
            n++;
        }
        pos += piece;
    }
    return n;
}

static void coroutine_fn nbd_do_read(NBDRequestData *d)
{
    NBDClient *c = d->c;
    BlockBackend *blk = c->exp->common.blk;
    uint32_t lens[NBD_MAX_READ_CHUNKS], flags[NBD_MAX_READ_CHUNKS];
    int n = 1, ret;
    QIOVector qiov;

    qiov_init_buf(&qiov, d->buf, d->req.len);
    ret = blk_co_preadv(blk, d->req.offset, d->req.len, &qiov, 0);
    qiov_destroy(&qiov);
    if (!c->structured) {
        nbd_reply_simple(d, nbd_errno_to_wire(ret), ret < 0 ? 0 : d->req.len);
        return;
    }
    if (ret < 0) {
        nbd_reply_struct_error(d, nbd_errno_to_wire(ret), "read failed");
        return;
    }
    lens[0] = d->req.len;
    flags[0] = 0;
    if (!(d->req.flags & NBD_CMD_FLAG_DF) &&
        d->req.len >= NBD_SPARSE_READ_MIN) {
        n = nbd_sparse_chunks(d->buf, d->req.offset, d->req.len, lens,
                              flags);
    }
    nbd_reply_read_chunks(d, lens, flags, n);
}

/* Runs a valid write-like or flush command; returns 0 or -errno. */
static int coroutine_fn nbd_do_write_like(NBDRequestData *d)
{
    NBDClient *c = d->c;
    BlockBackend *blk = c->exp->common.blk;
    bool fua = (d->req.flags & NBD_CMD_FLAG_FUA) || c->exp->common.writethrough;
    BdrvRequestFlags f = fua ? BDRV_REQ_FUA : 0;
    QIOVector qiov;
    int ret;

    switch (d->req.type) {
    case NBD_CMD_WRITE:
        qiov_init_buf(&qiov, d->buf, d->req.len);
        ret = blk_co_pwritev(blk, d->req.offset, d->req.len, &qiov, f);
        qiov_destroy(&qiov);
        return ret;
    case NBD_CMD_WRITE_ZEROES:
        if (!(d->req.flags & NBD_CMD_FLAG_NO_HOLE)) {
            f |= BDRV_REQ_MAY_UNMAP;
        }
        if (d->req.flags & NBD_CMD_FLAG_FAST_ZERO) {
            f |= BDRV_REQ_NO_FALLBACK;
        }
        return blk_co_pwrite_zeroes(blk, d->req.offset, d->req.len, f);
    case NBD_CMD_TRIM:
        ret = blk_co_pdiscard(blk, d->req.offset, d->req.len);
        return (ret == 0 && fua) ? blk_co_flush(blk) : ret;
    case NBD_CMD_FLUSH:
        return blk_co_flush(blk);
    default:
        g_assert_not_reached();
    }
}

/* Runs one request and queues its reply; d then belongs to the send
 * queue.  A reply that cannot be written ends the connection there. */
static void coroutine_fn nbd_request_co(void *opaque)
{
    NBDRequestData *d = opaque;
    NBDClient *c = d->c;

    if (d->nbd_err) {
        if ((d->req.type == NBD_CMD_READ ||
             d->req.type == NBD_CMD_BLOCK_STATUS) && c->structured) {
            nbd_reply_struct_error(d, d->nbd_err, "invalid request");
        } else {
            nbd_reply_simple(d, d->nbd_err, 0);
        }
    } else if (d->req.type == NBD_CMD_READ) {
        nbd_do_read(d);
    } else if (d->req.type == NBD_CMD_BLOCK_STATUS) {
        nbd_do_block_status(d);
    } else {
        nbd_reply_simple(d, nbd_errno_to_wire(nbd_do_write_like(d)), 0);
    }
}

/* Reads one request (and its payload) and starts its coroutine, which
 * runs until it first waits (for linux-aio: until its iocb is queued, so
 * all requests parsed in one go are submitted together).  Returns false
 * when the connection must end. */
static bool coroutine_fn nbd_co_receive_request(NBDClient *c)
{
    NBDRequestData *d;
    NBDRequest req;
    uint32_t err;
    bool fatal;
    uint64_t payload;

    if (nbd_co_fill(c, NBD_REQUEST_SIZE) < 0 ||
        !nbd_decode_request(c->rbuf + c->rstart, &req)) {
        return false;
    }
    c->rstart += NBD_REQUEST_SIZE;
    if (req.type == NBD_CMD_DISC) {
        return false;
    }
    err = nbd_validate_request(c, &req, &fatal);
    if (fatal) {
        return false;
    }
    payload = (req.type == NBD_CMD_WRITE ||
               (req.type == NBD_CMD_READ && !err)) ? req.len : 0;
    /* Bound the memory of this connection. */
    while (c->in_flight > 0 &&
           c->bytes_in_flight + payload > NBD_MAX_BYTES_IN_FLIGHT) {
        co_queue_wait(&c->slot_wait, NULL);
    }
    d = nbd_request_get(c, payload);
    d->req = req;
    d->nbd_err = err;
    if (req.type == NBD_CMD_WRITE && nbd_co_read(c, d->buf, req.len) < 0) {
        nbd_request_release(d);
        return false;
    }
    coroutine_enter(coroutine_create(nbd_request_co, d));
    return true;
}

/* The main-thread end of a connection: close and free. */
static void nbd_client_free_bh(void *opaque)
{
    NBDClient *c = opaque;
    NBDClient **p;
    NBDExport *exp = c->exp;

    for (p = &nbd_server->clients; *p != c; p = &(*p)->next) {
        /* find */
    }
    *p = c->next;
    nbd_server->nclients--;
    close(c->fd);
    g_free(c->rbuf);
    nbd_free_requests(c);
    g_free(c);
    if (exp && --exp->nclients == 0 && exp->common.shutting_down) {
        blk_exp_clients_gone(&exp->common);
    }
}

static void coroutine_fn nbd_client_co(void *opaque)
{
    NBDClient *c = opaque;
    NBDExport *exp = nbd_co_handshake(c);

    /* Still in the main context: the timer can go now. */
    timer_free(c->handshake_timer);
    c->handshake_timer = NULL;
    if (exp) {
        c->exp = exp;
        exp->nclients++;
        if (exp->common.ctx != c->ctx) {
            /* Hand the connection to the export's thread. */
            c->recv_waiter = c->send_waiter = NULL;
            nbd_client_update_watch(c);
            c->ctx = exp->common.ctx;
            aio_co_schedule(c->ctx, coroutine_self());
            coroutine_yield();
        }
        c->flush_bh = aio_bh_new(c->ctx, nbd_flush_bh, c);
        while (!c->closing) {
            while (c->in_flight >= NBD_MAX_IN_FLIGHT) {
                co_queue_wait(&c->slot_wait, NULL);
            }
            if (!nbd_co_receive_request(c)) {
                break;
            }
        }
        c->closing = true;
        /* Every reply written or dropped: nothing refers to c now. */
        while (c->in_flight > 0) {
            co_queue_wait(&c->slot_wait, NULL);
        }
        bh_delete(c->flush_bh);
    }
    c->recv_waiter = c->send_waiter = NULL;
    nbd_client_update_watch(c);
    aio_bh_schedule_oneshot(aio_main_context(), nbd_client_free_bh, c);
}

/* ---- The listening socket (main context) ---- */

/* The handshake took too long: end it.  The handshake coroutine sees EOF
 * or EPIPE at its next socket operation (or at once, if it waits for the
 * socket) and takes the normal way out. */
static void nbd_handshake_timeout(void *opaque)
{
    NBDClient *c = opaque;

    shutdown(c->fd, SHUT_RDWR);
}

static void nbd_accept(void *opaque)
{
    int fd = accept4(nbd_server->fd, NULL, NULL,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    int one = 1, sndbuf = 4 * 1024 * 1024;
    NBDClient *c;

    if (fd < 0) {
        return;
    }
    if (nbd_server->max_connections &&
        nbd_server->nclients >= nbd_server->max_connections) {
        close(fd);
        return;
    }
    /* Fails harmlessly on UNIX sockets. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* A 1 MiB read reply should not need a dozen wake-ups to leave. */
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    c = g_new0(NBDClient, 1);
    c->fd = fd;
    c->ctx = aio_main_context();
    c->rbuf = g_malloc(NBD_RBUF_SIZE);
    c->may_read = true;
    co_queue_init(&c->slot_wait);
    c->next = nbd_server->clients;
    nbd_server->clients = c;
    nbd_server->nclients++;
    if (nbd_server->handshake_max_secs) {
        c->handshake_timer = aio_timer_new(c->ctx, nbd_handshake_timeout, c);
        timer_mod_ns(c->handshake_timer, clock_ns() +
                     nbd_server->handshake_max_secs * 1000000000LL);
    }
    coroutine_enter(coroutine_create(nbd_client_co, c));
}

static int nbd_listen_unix(const char *path, Error **errp)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        error_setg(errp, "UNIX socket path '%s' is too long", path);
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Failed to create socket");
        return -1;
    }
    /* A stale socket file from an earlier run would make bind fail. */
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
        listen(fd, 128) < 0) {
        error_setg_errno(errp, errno, "Failed to bind socket to %s", path);
        close(fd);
        return -1;
    }
    return fd;
}

static int nbd_listen_inet(const InetSocketAddress *a, Error **errp)
{
    struct addrinfo hints = { .ai_flags = AI_PASSIVE,
                              .ai_socktype = SOCK_STREAM };
    struct addrinfo *res, *ai;
    int fd = -1, err = 0, one = 1;
    int rc = getaddrinfo(*a->host ? a->host : NULL, a->port, &hints, &res);

    if (rc != 0) {
        error_setg(errp, "address resolution failed for %s:%s: %s",
                   a->host, a->port, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
                    SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, 128) == 0) {
            break;
        }
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        error_setg_errno(errp, err, "Failed to bind socket to %s:%s",
                         a->host, a->port);
    }
    return fd;
}

bool nbd_server_start(const SocketAddress *addr, uint32_t max_connections,
                      Error **errp)
{
    return nbd_server_start_with_limits(addr, max_connections,
                                        NBD_DEFAULT_HANDSHAKE_MAX_SECS, errp);
}

bool nbd_server_start_with_limits(const SocketAddress *addr,
                                  uint32_t max_connections,
                                  uint32_t handshake_max_secs, Error **errp)
{
    int fd;

    if (nbd_server) {
        error_setg(errp, "NBD server already running");
        return false;
    }
    if (addr->type == SOCKET_ADDRESS_TYPE_UNIX) {
        fd = nbd_listen_unix(addr->u.q_unix.path, errp);
    } else {
        fd = nbd_listen_inet(&addr->u.inet, errp);
    }
    if (fd < 0) {
        return false;
    }
    nbd_server = g_new0(NBDServer, 1);
    nbd_server->fd = fd;
    nbd_server->max_connections = max_connections;
    nbd_server->handshake_max_secs = handshake_max_secs;
    if (addr->type == SOCKET_ADDRESS_TYPE_UNIX) {
        nbd_server->unix_path = g_strdup(addr->u.q_unix.path);
    }
    aio_set_fd_handler(aio_main_context(), fd, nbd_accept, NULL, NULL);
    return true;
}

bool nbd_server_is_running(void)
{
    return nbd_server != NULL;
}

void nbd_server_stop(void)
{
    if (!nbd_server) {
        return;
    }
    aio_set_fd_handler(aio_main_context(), nbd_server->fd, NULL, NULL, NULL);
    close(nbd_server->fd);
    if (nbd_server->unix_path) {
        unlink(nbd_server->unix_path);
    }
    blk_exp_close_all_type(BLOCK_EXPORT_TYPE_NBD);
    /* Clients still negotiating. */
    for (NBDClient *c = nbd_server->clients; c; c = c->next) {
        shutdown(c->fd, SHUT_RDWR);
    }
    while (nbd_server->nclients > 0) {
        if (in_coroutine()) {
            co_sleep_ns(1000 * 1000);
        } else {
            aio_poll(aio_main_context(), true);
        }
    }
    g_free(nbd_server->unix_path);
    g_free(nbd_server);
    nbd_server = NULL;
}

/* ---- QMP ---- */

void qmp_nbd_server_start(SocketAddress *addr, bool has_max_connections,
                          uint32_t max_connections,
                          bool has_handshake_max_seconds,
                          uint32_t handshake_max_seconds, Error **errp)
{
    nbd_server_start_with_limits(addr,
                                 has_max_connections ? max_connections : 0,
                                 has_handshake_max_seconds ?
                                 handshake_max_seconds :
                                 NBD_DEFAULT_HANDSHAKE_MAX_SECS, errp);
}

void qmp_nbd_server_stop(Error **errp)
{
    if (!nbd_server) {
        error_setg(errp, "NBD server not running");
        return;
    }
    nbd_server_stop();
}
