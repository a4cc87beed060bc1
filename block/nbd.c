/*
 * The "nbd" protocol driver: a node whose data is an export of an NBD
 * server (qemu-nbd, nbdkit, another blockd), reached over a UNIX or TCP
 * socket.
 *
 * Shape:
 *   - open() connects and negotiates synchronously (fixed newstyle:
 *     STRUCTURED_REPLY, SET_META_CONTEXT base:allocation, GO with
 *     INFO_BLOCK_SIZE; EXPORT_NAME for servers without GO) and sets the
 *     node's limits from the server's block sizes;
 *   - then one "connection coroutine" owns the socket: it reads every
 *     reply and hands it to the request it belongs to (by handle), so
 *     any number of requests (up to NBD_CLIENT_MAX_REQS) are in flight on
 *     the one connection and complete in any order.  READ data is read
 *     straight into the waiting request's buffers;
 *   - request coroutines send their header and payload under send_lock
 *     and sleep until the connection coroutine marks their slot done;
 *   - when the connection breaks, the connection coroutine fails every
 *     request in flight with -EIO and, with reconnect-delay, reconnects
 *     in the background; new requests wait for it up to reconnect-delay
 *     seconds, then fail with -EIO until the connection is back.
 *
 * Threads: everything after open runs in the node's AioContext thread
 * (fd handlers, timers, coroutines); open and close run in the main
 * thread with the node drained.  open may run in a coroutine (QMP
 * blockdev-add): then the handshake yields to the event loop, else it
 * polls the socket.  The state has no lock: the single owner thread is
 * the rule, send_lock only orders coroutines.  The node may move to
 * another context (an export with iothread=): the core, with the node
 * drained, has the old context's thread let go of the fd handler and
 * timers (nbd_detach_aio_context) and the new one's install them again
 * (nbd_attach_aio_context).
 *
 * Block status: one query asks for the rest of the export and the
 * extents that come back answer later calls (NBDStatusCache); callers
 * wait for a query already in flight rather than sending their own.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "block/block_int.h"
#include "block/nbd-client.h"
#include "block/nbd.h"

/* Requests in flight on one connection (a power of two: the low bits of
 * a handle are the slot index). */
#define NBD_CLIENT_MAX_REQS 64
/* A handshake step (connect, one option and its reply) that takes longer
 * than this fails, so blockdev-add or a reconnection cannot hang on a
 * mute server. */
#define NBD_CLIENT_HANDSHAKE_TIMEOUT_MS 10000
/* Reconnect backoff: from the first to the last value, doubling. */
#define NBD_CLIENT_RECONNECT_MIN_NS (50 * 1000 * 1000LL)
#define NBD_CLIENT_RECONNECT_MAX_NS (1000 * 1000 * 1000LL)
/* How long the last block status answer may be reused for later queries
 * inside the same extent (see NBDStatusCache). */
#define NBD_CLIENT_STATUS_CACHE_NS (200 * 1000 * 1000LL)
/* Size of the receive buffer that batches small reads (reply headers). */
#define NBD_CLIENT_RBUF_SIZE 16384
/* Extents kept from one block status reply (more are read and dropped). */
#define NBD_CLIENT_STATUS_MAX_EXTENTS 256
/* Largest chunk payloads accepted other than read data (whose length
 * the request bounds): the length of a block status chunk is otherwise
 * up to the server, and a hostile one could make us read gigabytes; an
 * error chunk carries at most a 4096-byte message. */
#define NBD_CLIENT_MAX_STATUS_CHUNK NBD_MAX_BUFFER_SIZE
#define NBD_CLIENT_MAX_ERROR_CHUNK (6 + NBD_MAX_STRING_SIZE + 8)

typedef enum NBDClientState {
    NBD_CLIENT_CONNECTED,
    /* Connection lost, reconnecting: new requests wait (until
     * reconnect-delay expires). */
    NBD_CLIENT_CONNECTING_WAIT,
    /* Connection lost: new requests fail at once (reconnect-delay has
     * expired, or there is none).  Reconnection may go on. */
    NBD_CLIENT_CONNECTING_NOWAIT,
    /* Closed or never to reconnect. */
    NBD_CLIENT_QUIT,
} NBDClientState;

/* What the server told us about the export (per connection). */
typedef struct NBDExportInfo {
    uint64_t size;
    uint16_t flags;              /* NBD_FLAG_* transmission flags */
    uint32_t min_block;          /* 1 when the server sent none */
    uint32_t pref_block;
    uint32_t max_block;          /* 0: none sent */
    bool structured_reply;
    bool base_allocation;        /* meta context negotiated */
    uint32_t context_id;         /* of base:allocation */
} NBDExportInfo;

/* One request in flight; lives in BDRVNBDState.reqs.  The request
 * coroutine owns it from slot allocation to release; the connection
 * coroutine fills the reply fields while the request waits. */
typedef struct NBDClientReq {
    bool in_use;
    bool done;                   /* reply complete (or failed) */
    Coroutine *waiter;           /* set while the request sleeps */
    uint64_t handle;
    uint16_t type;               /* NBD_CMD_* */
    uint64_t offset;
    uint32_t length;
    QIOVector *qiov;             /* READ destination */
    int ret;                     /* first error, -errno */
    /* BLOCK_STATUS result: extents of our context from offset on, in
     * the querying coroutine's array (n_ext of at most max_ext). */
    struct NBDExtent *ext;
    unsigned n_ext, max_ext;
    bool have_status;            /* a chunk of our context came */
} NBDClientReq;

/* One extent: up to (not including) the absolute offset end. */
typedef struct NBDExtent {
    int64_t end;
    uint32_t flags;              /* NBD_STATE_* */
} NBDExtent;

/*
 * The extents of the last block status reply.  A caller walking an image
 * in small steps (convert asks one chunk at a time, from several
 * coroutines) would otherwise pay a round trip per step; we ask for the
 * rest of the export once (without REQ_ONE) and answer the following
 * steps from here.  Any write-like request of ours drops it (status_gen
 * tells a query that a write overlapped it), and it expires quickly:
 * another client of the export may change the allocation at any time, so
 * status is always a snapshot, and this keeps the snapshot young.
 */
typedef struct NBDStatusCache {
    bool valid;
    int64_t offset;              /* start of ext[0] */
    unsigned n;
    NBDExtent ext[NBD_CLIENT_STATUS_MAX_EXTENTS];
    int64_t expires_ns;
} NBDStatusCache;

typedef struct BDRVNBDState BDRVNBDState;

/*
 * A timer of the connection.  The QEMUTimer belongs to s->ctx; expire_ns
 * remembers when it is due, so that it can be re-armed in another
 * context when the node moves (see nbd_attach_aio_context).
 */
typedef struct NBDTimer {
    QEMUTimer *timer;            /* in s->ctx; NULL while detached */
    int64_t expire_ns;           /* 0: not armed */
    void (*cb)(BDRVNBDState *s);
    BDRVNBDState *s;
} NBDTimer;

struct BDRVNBDState {
    /* Options (set in open, read-only afterwards). */
    SocketAddress *saddr;        /* owned */
    char *export;                /* owned */
    uint32_t reconnect_delay;    /* seconds; 0: no reconnection */

    /*
     * The context the connection (fd handlers, timers, connection
     * coroutine) lives in: the node's.  Only nbd_attach_aio_context
     * changes it, in the new context, after the old one let go.
     */
    AioContext *ctx;

    /* The connection (ctx thread). */
    int fd;                      /* -1 while disconnected */
    NBDExportInfo info;
    NBDClientState state;
    bool closing;                /* close() has begun */
    bool rx_active;              /* read handler installed for the loop */
    uint8_t *rbuf;               /* received, not yet consumed bytes */
    size_t rpos, rlen;

    /* Coroutines waiting for the socket / a timer (ctx thread). */
    Coroutine *conn_co;          /* the connection coroutine, while alive */
    Coroutine *recv_waiter;
    Coroutine *send_waiter;
    Coroutine *sleep_waiter;
    NBDTimer sleep_timer;
    NBDTimer io_timer;           /* handshake step timeout */
    bool io_timed_out;
    NBDTimer delay_timer;        /* ends the reconnect-delay window */

    CoMutex send_lock;           /* one request on the wire at a time */
    CoQueue free_slots;          /* requests waiting for a slot */
    CoQueue connect_waiters;     /* requests waiting for reconnection */
    unsigned in_flight;
    uint64_t next_seq;
    NBDStatusCache *status_cache; /* owned */
    uint64_t status_gen;         /* bumped by write-like requests */
    bool status_busy;            /* a block status query is in flight */
    int64_t status_busy_offset;  /* its offset */
    CoQueue status_waiters;      /* queries waiting for it */
    NBDClientReq reqs[NBD_CLIENT_MAX_REQS];
};

/* ---- Waiting for the socket ---- */

/*
 * Resumes a coroutine waiting for the connection, in s->ctx.  Not
 * aio_co_wake: the connection coroutine remembers the context it last
 * ran in, which is the old one right after the node moved.  Called in
 * s->ctx's thread, never from inside co.
 */
static void nbd_resume(BDRVNBDState *s, Coroutine *co)
{
    aio_co_enter(s->ctx, co);
}

static void nbd_fd_read_ready(void *opaque)
{
    BDRVNBDState *s = opaque;

    if (s->recv_waiter) {
        nbd_resume(s, s->recv_waiter);
    }
}

static void nbd_fd_write_ready(void *opaque)
{
    BDRVNBDState *s = opaque;

    if (s->send_waiter) {
        nbd_resume(s, s->send_waiter);
    }
}

/* ---- Timers ---- */

static void nbd_timer_fire(void *opaque)
{
    NBDTimer *t = opaque;

    t->expire_ns = 0;
    t->cb(t->s);
}

/* Creates t's QEMUTimer in ctx, armed again if it was (ctx's thread). */
static void nbd_timer_attach(NBDTimer *t, AioContext *ctx)
{
    t->timer = aio_timer_new(ctx, nbd_timer_fire, t);
    if (t->expire_ns) {
        timer_mod_ns(t->timer, t->expire_ns);
    }
}

/* Frees t's QEMUTimer; expire_ns stays for nbd_timer_attach (the
 * timer's old context's thread). */
static void nbd_timer_detach(NBDTimer *t)
{
    timer_free(t->timer);
    t->timer = NULL;
}

static void nbd_timer_init(NBDTimer *t, BDRVNBDState *s,
                           void (*cb)(BDRVNBDState *s))
{
    t->cb = cb;
    t->s = s;
    t->expire_ns = 0;
    nbd_timer_attach(t, s->ctx);
}

/* Arms t to fire ns from now. */
static void nbd_timer_arm(NBDTimer *t, int64_t ns)
{
    t->expire_ns = clock_ns() + ns;
    timer_mod_ns(t->timer, t->expire_ns);
}

static void nbd_timer_stop(NBDTimer *t)
{
    t->expire_ns = 0;
    timer_del(t->timer);
}

/* Installs the handlers the current waiters need.  While the receive
 * loop runs, the read handler stays installed (level-triggered: the
 * loop always waits for data when it is not running). */
static void nbd_update_fd_handlers(BDRVNBDState *s)
{
    bool rd = s->rx_active || s->recv_waiter;

    aio_set_fd_handler(s->ctx, s->fd, rd ? nbd_fd_read_ready : NULL,
                       s->send_waiter ? nbd_fd_write_ready : NULL, s);
}

/*
 * Waits until the socket is readable (write false) or writable.  In a
 * coroutine it yields to the event loop; outside (open) it polls with
 * the handshake timeout.  Returns 0, -ECONNABORTED when the connection
 * is being torn down or the node closed meanwhile, -ETIMEDOUT.
 */
static int nbd_wait_fd(BDRVNBDState *s, bool write)
{
    if (!in_coroutine()) {
        struct pollfd pfd = { .fd = s->fd, .events = write ? POLLOUT : POLLIN };
        int r;

        do {
            r = poll(&pfd, 1, NBD_CLIENT_HANDSHAKE_TIMEOUT_MS);
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            return -errno;
        }
        return r == 0 ? -ETIMEDOUT : 0;
    }
    if (s->rx_active && !write) {
        /* The receive loop: the read handler is always installed. */
        s->recv_waiter = coroutine_self();
        coroutine_yield();
        s->recv_waiter = NULL;
        return s->closing ? -ECONNABORTED : 0;
    }
    /* Negotiating (a mute server must not hold us forever), or a send
     * that found the socket full. */
    if (!s->rx_active) {
        s->io_timed_out = false;
        nbd_timer_arm(&s->io_timer,
                      NBD_CLIENT_HANDSHAKE_TIMEOUT_MS * 1000000LL);
    }
    if (write) {
        s->send_waiter = coroutine_self();
    } else {
        s->recv_waiter = coroutine_self();
    }
    nbd_update_fd_handlers(s);
    coroutine_yield();
    if (write) {
        s->send_waiter = NULL;
    } else {
        s->recv_waiter = NULL;
    }
    nbd_update_fd_handlers(s);
    nbd_timer_stop(&s->io_timer);
    if (s->io_timed_out) {
        s->io_timed_out = false;
        return -ETIMEDOUT;
    }
    return s->closing ? -ECONNABORTED : 0;
}

static void nbd_io_timer_cb(BDRVNBDState *s)
{
    Coroutine *co = s->recv_waiter ? s->recv_waiter : s->send_waiter;

    if (co) {
        s->io_timed_out = true;
        nbd_resume(s, co);
    }
}

/* Wakes whatever the connection coroutine waits for (close, teardown). */
static void nbd_kick_waiters(BDRVNBDState *s)
{
    if (s->recv_waiter) {
        nbd_resume(s, s->recv_waiter);
    }
    if (s->send_waiter) {
        nbd_resume(s, s->send_waiter);
    }
    if (s->sleep_waiter) {
        nbd_timer_stop(&s->sleep_timer);
        nbd_resume(s, s->sleep_waiter);
    }
}

/* ---- Raw socket I/O ---- */

/* Advances iov (niov entries) past n bytes it received. */
static void nbd_iov_advance(struct iovec **iov, int *niov, size_t n)
{
    while (n > 0) {
        size_t k = MIN(n, (*iov)->iov_len);

        (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + k;
        (*iov)->iov_len -= k;
        n -= k;
        if ((*iov)->iov_len == 0) {
            (*iov)++;
            (*niov)--;
        }
    }
}

/*
 * A long read straight into the destination, with the receive buffer as
 * one more iovec behind it: what follows the payload (the next replies'
 * headers) comes in with the same syscall.  Returns what readv returns;
 * payload bytes are accounted in iov/niov/len, the rest is in rbuf.
 */
static ssize_t nbd_readv_direct(BDRVNBDState *s, struct iovec **iov,
                                int *niov, size_t *len)
{
    struct iovec local[65];
    int cnt = MIN(*niov, IOV_MAX - 1);
    ssize_t n;

    if (cnt < (int)G_N_ELEMENTS(local)) {
        memcpy(local, *iov, cnt * sizeof(*local));
        local[cnt].iov_base = s->rbuf;
        local[cnt].iov_len = NBD_CLIENT_RBUF_SIZE;
        n = readv(s->fd, local, cnt + 1);
    } else {
        n = readv(s->fd, *iov, cnt);
    }
    if (n > 0) {
        size_t payload = MIN((size_t)n, *len);

        nbd_iov_advance(iov, niov, payload);
        *len -= payload;
        s->rpos = 0;
        s->rlen = n - payload;
    }
    return n;
}

/*
 * Reads exactly len bytes into iov (consumed: iov is modified).  The
 * receive buffer is drained first; short reads are topped up into it,
 * long ones go straight into the destination (and what follows into the
 * buffer).  Returns 0, -EPIPE at end of stream, -errno.
 */
static int nbd_read_iov(BDRVNBDState *s, struct iovec *iov, int niov,
                        size_t len)
{
    while (len > 0) {
        ssize_t n;

        while (niov > 0 && iov->iov_len == 0) {
            iov++;
            niov--;
        }
        if (s->rpos < s->rlen) {
            size_t k = MIN(iov->iov_len, s->rlen - s->rpos);

            memcpy(iov->iov_base, s->rbuf + s->rpos, k);
            s->rpos += k;
            iov->iov_base = (uint8_t *)iov->iov_base + k;
            iov->iov_len -= k;
            len -= k;
            continue;
        }
        if (len < NBD_CLIENT_RBUF_SIZE) {
            n = recv(s->fd, s->rbuf, NBD_CLIENT_RBUF_SIZE, 0);
            if (n > 0) {
                s->rpos = 0;
                s->rlen = n;
                continue;
            }
        } else {
            n = nbd_readv_direct(s, &iov, &niov, &len);
            if (n > 0) {
                continue;
            }
        }
        if (n == 0) {
            return -EPIPE;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN) {
            return -errno;
        }
        int r = nbd_wait_fd(s, false);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

static int nbd_read(BDRVNBDState *s, void *buf, size_t len)
{
    struct iovec iov = { .iov_base = buf, .iov_len = len };

    return nbd_read_iov(s, &iov, 1, len);
}

/* Reads and throws away len bytes. */
static int nbd_skip(BDRVNBDState *s, size_t len)
{
    uint8_t buf[512];

    while (len > 0) {
        size_t k = MIN(len, sizeof(buf));
        int r = nbd_read(s, buf, k);

        if (r < 0) {
            return r;
        }
        len -= k;
    }
    return 0;
}

/* Reads len bytes into qiov at offset. */
static int nbd_read_qiov(BDRVNBDState *s, QIOVector *qiov, size_t offset,
                         size_t len)
{
    QIOVector part;
    int r;

    qiov_init(&part, qiov->niov);
    qiov_concat(&part, qiov, offset, len);
    r = nbd_read_iov(s, part.iov, part.niov, len);
    qiov_destroy(&part);
    return r;
}

/* Writes all of iov (consumed).  Returns 0 or -errno. */
static int nbd_write_iov(BDRVNBDState *s, struct iovec *iov, int niov)
{
    while (niov > 0) {
        struct msghdr msg = { .msg_iov = iov,
                              .msg_iovlen = MIN(niov, IOV_MAX) };
        ssize_t n = sendmsg(s->fd, &msg, MSG_NOSIGNAL);

        if (n < 0) {
            int r;

            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN) {
                return -errno;
            }
            r = nbd_wait_fd(s, true);
            if (r < 0) {
                return r;
            }
            continue;
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

static int nbd_write(BDRVNBDState *s, const void *buf, size_t len)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

    return nbd_write_iov(s, &iov, 1);
}

/* ---- Connecting ---- */

/* Connects a non-blocking socket to addr; returns the fd or -errno. */
static int nbd_connect_addr(BDRVNBDState *s, int family,
                            const struct sockaddr *addr, socklen_t addrlen)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err = 0;
    socklen_t errlen = sizeof(err);
    int r;

    if (fd < 0) {
        return -errno;
    }
    if (connect(fd, addr, addrlen) == 0) {
        return fd;
    }
    if (errno != EINPROGRESS) {
        r = -errno;
        close(fd);
        return r;
    }
    s->fd = fd;
    r = nbd_wait_fd(s, true);
    s->fd = -1;
    if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0) {
        r = -errno;
    } else if (r == 0) {
        r = -err;
    }
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

/* A printable form of the server address (caller frees). */
static char *nbd_addr_str(const SocketAddress *a)
{
    if (a->type == SOCKET_ADDRESS_TYPE_UNIX) {
        return g_strdup(a->u.q_unix.path);
    }
    return g_strdup_printf("%s:%s", a->u.inet.host, a->u.inet.port);
}

/* Opens a connected socket to the server into s->fd. */
static bool nbd_connect_socket(BDRVNBDState *s, Error **errp)
{
    const SocketAddress *a = s->saddr;
    g_autofree char *where = nbd_addr_str(a);
    int fd = -EINVAL;

    if (a->type == SOCKET_ADDRESS_TYPE_UNIX) {
        struct sockaddr_un un = { .sun_family = AF_UNIX };
        size_t len = strlen(a->u.q_unix.path);

        if (len == 0 || len >= sizeof(un.sun_path)) {
            error_setg(errp, "UNIX socket path '%s' is too long", where);
            return false;
        }
        memcpy(un.sun_path, a->u.q_unix.path, len + 1);
        fd = nbd_connect_addr(s, AF_UNIX, (struct sockaddr *)&un, sizeof(un));
    } else {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                                  .ai_flags = AI_ADDRCONFIG };
        struct addrinfo *res = NULL;
        int r = getaddrinfo(a->u.inet.host, a->u.inet.port, &hints, &res);

        if (r != 0) {
            error_setg(errp, "Address resolution failed for %s: %s", where,
                       gai_strerror(r));
            return false;
        }
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            fd = nbd_connect_addr(s, ai->ai_family, ai->ai_addr,
                                  ai->ai_addrlen);
            if (fd >= 0) {
                int one = 1;

                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                break;
            }
        }
        freeaddrinfo(res);
    }
    if (fd < 0) {
        error_setg_errno(errp, -fd, "Failed to connect to '%s'", where);
        return false;
    }
    s->fd = fd;
    return true;
}

/* ---- Handshake ---- */

static int nbd_send_option(BDRVNBDState *s, uint32_t opt, const void *data,
                           uint32_t len)
{
    uint8_t hdr[16];
    struct iovec iov[2] = {
        { .iov_base = hdr, .iov_len = sizeof(hdr) },
        { .iov_base = (void *)data, .iov_len = len },
    };

    nbd_put_u64(hdr, NBD_OPTS_MAGIC);
    nbd_put_u32(hdr + 8, opt);
    nbd_put_u32(hdr + 12, len);
    return nbd_write_iov(s, iov, len ? 2 : 1);
}

/* An option reply: its type and its payload (owned, NUL-terminated). */
typedef struct NBDOptReply {
    uint32_t type;
    uint32_t len;
    uint8_t *data;
} NBDOptReply;

static bool nbd_recv_option_reply(BDRVNBDState *s, uint32_t opt,
                                  NBDOptReply *rep, Error **errp)
{
    uint8_t hdr[20];
    int r = nbd_read(s, hdr, sizeof(hdr));

    if (r < 0) {
        error_setg_errno(errp, -r, "Failed to read option reply");
        return false;
    }
    if (nbd_get_u64(hdr) != NBD_REP_MAGIC || nbd_get_u32(hdr + 8) != opt) {
        error_setg(errp, "Bad option reply from the NBD server");
        return false;
    }
    rep->type = nbd_get_u32(hdr + 12);
    rep->len = nbd_get_u32(hdr + 16);
    if (rep->len > NBD_MAX_OPTION_SIZE) {
        error_setg(errp, "Option reply of %" PRIu32 " bytes is too long",
                   rep->len);
        return false;
    }
    rep->data = g_malloc(rep->len + 1);
    rep->data[rep->len] = 0;
    r = nbd_read(s, rep->data, rep->len);
    if (r < 0) {
        g_free(rep->data);
        rep->data = NULL;
        error_setg_errno(errp, -r, "Failed to read option reply");
        return false;
    }
    return true;
}

/* The server's message in an error reply, for error texts. */
static const char *nbd_rep_err_text(uint32_t type)
{
    switch (type) {
    case NBD_REP_ERR_UNSUP:
        return "option not supported";
    case NBD_REP_ERR_POLICY:
        return "denied by the server's policy";
    case NBD_REP_ERR_INVALID:
        return "invalid request";
    case NBD_REP_ERR_TLS_REQD:
        return "TLS required";
    case NBD_REP_ERR_UNKNOWN:
        return "export unknown";
    case NBD_REP_ERR_SHUTDOWN:
        return "server shutting down";
    default:
        return "error";
    }
}

/* Asks for structured replies; true if the server agreed. */
static bool nbd_opt_structured_reply(BDRVNBDState *s, bool *ok, Error **errp)
{
    NBDOptReply rep = { 0 };
    int r = nbd_send_option(s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);

    if (r < 0) {
        error_setg_errno(errp, -r, "Failed to send option");
        return false;
    }
    if (!nbd_recv_option_reply(s, NBD_OPT_STRUCTURED_REPLY, &rep, errp)) {
        return false;
    }
    g_free(rep.data);
    *ok = rep.type == NBD_REP_ACK;
    return true;
}

/* Selects base:allocation for the export; info->base_allocation tells
 * whether the server has it. */
static bool nbd_opt_meta_context(BDRVNBDState *s, NBDExportInfo *info,
                                 Error **errp)
{
    static const char ctx_name[] = NBD_META_BASE_ALLOCATION;
    size_t elen = strlen(s->export), clen = strlen(ctx_name);
    g_autofree uint8_t *buf = g_malloc(12 + elen + clen);
    uint8_t *p = buf;
    int r;

    nbd_put_u32(p, elen);
    memcpy(p + 4, s->export, elen);
    p += 4 + elen;
    nbd_put_u32(p, 1);
    nbd_put_u32(p + 4, clen);
    memcpy(p + 8, ctx_name, clen);
    r = nbd_send_option(s, NBD_OPT_SET_META_CONTEXT, buf, 12 + elen + clen);
    if (r < 0) {
        error_setg_errno(errp, -r, "Failed to send option");
        return false;
    }
    for (;;) {
        NBDOptReply rep = { 0 };

        if (!nbd_recv_option_reply(s, NBD_OPT_SET_META_CONTEXT, &rep, errp)) {
            return false;
        }
        if (rep.type == NBD_REP_META_CONTEXT && rep.len == 4 + clen &&
            memcmp(rep.data + 4, ctx_name, clen) == 0) {
            info->base_allocation = true;
            info->context_id = nbd_get_u32(rep.data);
        }
        g_free(rep.data);
        if (rep.type != NBD_REP_META_CONTEXT) {
            /* ACK ends the list; an error just means no context. */
            return true;
        }
    }
}

/* Parses one NBD_REP_INFO payload into info. */
static bool nbd_parse_info(const NBDOptReply *rep, NBDExportInfo *info,
                           bool *have_export, Error **errp)
{
    uint16_t type;

    if (rep->len < 2) {
        error_setg(errp, "Malformed NBD_REP_INFO from the NBD server");
        return false;
    }
    type = nbd_get_u16(rep->data);
    if (type == NBD_INFO_EXPORT) {
        if (rep->len != 12) {
            error_setg(errp, "Malformed NBD_INFO_EXPORT from the NBD server");
            return false;
        }
        info->size = nbd_get_u64(rep->data + 2);
        info->flags = nbd_get_u16(rep->data + 10);
        *have_export = true;
    } else if (type == NBD_INFO_BLOCK_SIZE) {
        uint32_t min, pref, max;

        if (rep->len != 14) {
            error_setg(errp, "Malformed NBD_INFO_BLOCK_SIZE from the server");
            return false;
        }
        min = nbd_get_u32(rep->data + 2);
        pref = nbd_get_u32(rep->data + 6);
        max = nbd_get_u32(rep->data + 10);
        if (min == 0 || (min & (min - 1)) || min > 65536 ||
            pref < min || (max != 0xffffffff && max % min)) {
            error_setg(errp, "Invalid block sizes from the NBD server: "
                       "minimum %" PRIu32 ", preferred %" PRIu32
                       ", maximum %" PRIu32, min, pref, max);
            return false;
        }
        info->min_block = min;
        info->pref_block = pref;
        info->max_block = max;
    }
    return true;
}

/* The old way into transmission, for servers without NBD_OPT_GO. */
static bool nbd_opt_export_name(BDRVNBDState *s, NBDExportInfo *info,
                                bool no_zeroes, Error **errp)
{
    uint8_t buf[10];
    int r = nbd_send_option(s, NBD_OPT_EXPORT_NAME, s->export,
                            strlen(s->export));

    if (r == 0) {
        r = nbd_read(s, buf, sizeof(buf));
    }
    if (r == 0 && !no_zeroes) {
        r = nbd_skip(s, NBD_EXPORT_NAME_PAD);
    }
    if (r < 0) {
        error_setg_errno(errp, -r, "Failed to open export '%s'", s->export);
        return false;
    }
    info->size = nbd_get_u64(buf);
    info->flags = nbd_get_u16(buf + 8);
    return true;
}

/* NBD_OPT_GO with a request for the block sizes. */
static bool nbd_opt_go(BDRVNBDState *s, NBDExportInfo *info, bool no_zeroes,
                       Error **errp)
{
    size_t elen = strlen(s->export);
    g_autofree uint8_t *buf = g_malloc(8 + elen);
    bool have_export = false;
    int r;

    nbd_put_u32(buf, elen);
    memcpy(buf + 4, s->export, elen);
    nbd_put_u16(buf + 4 + elen, 1);
    nbd_put_u16(buf + 6 + elen, NBD_INFO_BLOCK_SIZE);
    r = nbd_send_option(s, NBD_OPT_GO, buf, 8 + elen);
    if (r < 0) {
        error_setg_errno(errp, -r, "Failed to send option");
        return false;
    }
    for (;;) {
        NBDOptReply rep = { 0 };
        bool ok = true;

        if (!nbd_recv_option_reply(s, NBD_OPT_GO, &rep, errp)) {
            return false;
        }
        if (rep.type == NBD_REP_INFO) {
            ok = nbd_parse_info(&rep, info, &have_export, errp);
        } else if (rep.type == NBD_REP_ERR_UNSUP) {
            g_free(rep.data);
            return nbd_opt_export_name(s, info, no_zeroes, errp);
        } else if (rep.type & NBD_REP_FLAG_ERROR) {
            error_setg(errp, "Requested export '%s' not available: %s%s%s",
                       s->export, nbd_rep_err_text(rep.type),
                       rep.len ? ": " : "", (char *)rep.data);
            ok = false;
        } else if (rep.type == NBD_REP_ACK) {
            g_free(rep.data);
            if (!have_export) {
                error_setg(errp, "The NBD server sent no export size");
                return false;
            }
            return true;
        }
        g_free(rep.data);
        if (!ok) {
            return false;
        }
    }
}

/* Best effort: ends the negotiation politely (without waiting for the
 * server's answer) so that the server does not report a lost client. */
static void nbd_send_abort(BDRVNBDState *s)
{
    uint8_t hdr[NBD_OPTION_HEADER_SIZE];

    nbd_put_u64(hdr, NBD_OPTS_MAGIC);
    nbd_put_u32(hdr + 8, NBD_OPT_ABORT);
    nbd_put_u32(hdr + 12, 0);
    if (send(s->fd, hdr, sizeof(hdr), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* Nothing to do: we are closing anyway. */
    }
}

/*
 * Connects and negotiates into transmission (s->fd, *info).  Outside a
 * coroutine it blocks (open); in the connection coroutine it yields.  On
 * failure s->fd is -1.
 */
static bool nbd_connect(BDRVNBDState *s, NBDExportInfo *info, Error **errp)
{
    uint8_t greet[18], cflags[4];
    uint16_t hflags;
    bool no_zeroes, structured = false;
    int r;

    memset(info, 0, sizeof(*info));
    info->min_block = 1;
    s->rpos = s->rlen = 0;
    if (!nbd_connect_socket(s, errp)) {
        return false;
    }
    r = nbd_read(s, greet, sizeof(greet));
    if (r < 0) {
        error_setg_errno(errp, -r, "Failed to read the NBD greeting");
        goto fail;
    }
    if (nbd_get_u64(greet) != NBD_INIT_MAGIC ||
        nbd_get_u64(greet + 8) != NBD_OPTS_MAGIC) {
        error_setg(errp, "The server does not speak newstyle NBD");
        goto fail;
    }
    hflags = nbd_get_u16(greet + 16);
    if (!(hflags & NBD_FLAG_FIXED_NEWSTYLE)) {
        error_setg(errp, "The NBD server does not support fixed newstyle");
        goto fail;
    }
    no_zeroes = hflags & NBD_FLAG_NO_ZEROES;
    nbd_put_u32(cflags, NBD_FLAG_C_FIXED_NEWSTYLE |
                     (no_zeroes ? NBD_FLAG_C_NO_ZEROES : 0));
    r = nbd_write(s, cflags, sizeof(cflags));
    if (r < 0) {
        error_setg_errno(errp, -r, "Failed to send NBD client flags");
        goto fail;
    }
    if (!nbd_opt_structured_reply(s, &structured, errp)) {
        goto fail_abort;
    }
    info->structured_reply = structured;
    if (structured && !nbd_opt_meta_context(s, info, errp)) {
        goto fail_abort;
    }
    if (!nbd_opt_go(s, info, no_zeroes, errp)) {
        goto fail_abort;
    }
    return true;

fail_abort:
    nbd_send_abort(s);
fail:
    close(s->fd);
    s->fd = -1;
    return false;
}

/* ---- Requests ---- */

static int nbd_errno(uint32_t err)
{
    switch (err) {
    case NBD_EPERM:
        return -EPERM;
    case NBD_ENOMEM:
        return -ENOMEM;
    case NBD_EINVAL:
        return -EINVAL;
    case NBD_ENOSPC:
        return -ENOSPC;
    case NBD_EOVERFLOW:
        return -EOVERFLOW;
    case NBD_ENOTSUP:
        return -ENOTSUP;
    case NBD_ESHUTDOWN:
        return -ESHUTDOWN;
    default:
        return -EIO;
    }
}

/* Marks req finished with ret (the first error wins) and wakes it. */
static void nbd_req_complete(NBDClientReq *req, int ret)
{
    if (req->ret == 0) {
        req->ret = ret;
    }
    req->done = true;
    if (req->waiter) {
        aio_co_wake(req->waiter);
    }
}

/* The request a reply's handle names, or NULL (a protocol error). */
static NBDClientReq *nbd_find_req(BDRVNBDState *s, uint64_t handle)
{
    NBDClientReq *req = &s->reqs[handle % NBD_CLIENT_MAX_REQS];

    if (!req->in_use || req->done || req->handle != handle) {
        return NULL;
    }
    return req;
}

/* OFFSET_DATA / OFFSET_HOLE of a READ: checks the range and fills the
 * request's buffer. */
static int nbd_recv_read_chunk(BDRVNBDState *s, NBDClientReq *req,
                               uint16_t type, uint32_t len)
{
    uint8_t hdr[12];
    uint64_t off;
    uint64_t n;
    int r;

    if (req->type != NBD_CMD_READ ||
        len < (type == NBD_REPLY_TYPE_OFFSET_DATA ? 9 : 12) ||
        (type == NBD_REPLY_TYPE_OFFSET_HOLE && len != 12)) {
        return -EPROTO;
    }
    r = nbd_read(s, hdr, type == NBD_REPLY_TYPE_OFFSET_DATA ? 8 : 12);
    if (r < 0) {
        return r;
    }
    off = nbd_get_u64(hdr);
    n = type == NBD_REPLY_TYPE_OFFSET_DATA ? len - 8 : nbd_get_u32(hdr + 8);
    if (off < req->offset || n == 0 ||
        off - req->offset > req->length ||
        n > req->length - (off - req->offset)) {
        return -EPROTO;
    }
    if (type == NBD_REPLY_TYPE_OFFSET_HOLE) {
        qiov_memset(req->qiov, off - req->offset, 0, n);
        return 0;
    }
    return nbd_read_qiov(s, req->qiov, off - req->offset, n);
}

/*
 * BLOCK_STATUS chunk: keeps the extents of our context (of the first
 * such chunk) that lie in the request, clipped to it, up to the
 * request's array size; the rest is read and dropped.  An extent of
 * length zero ends the list.
 */
static int nbd_recv_status_chunk(BDRVNBDState *s, NBDClientReq *req,
                                 uint32_t len)
{
    uint8_t buf[8];
    uint32_t left = len - 4;
    int64_t pos = req->offset, end = req->offset + req->length;
    bool ours;
    int r;

    if (req->type != NBD_CMD_BLOCK_STATUS || len < 12 || (len - 4) % 8 ||
        len > NBD_CLIENT_MAX_STATUS_CHUNK) {
        return -EPROTO;
    }
    r = nbd_read(s, buf, 4);
    if (r < 0) {
        return r;
    }
    ours = nbd_get_u32(buf) == s->info.context_id && !req->have_status;
    req->have_status |= ours;
    for (; left > 0; left -= 8) {
        uint32_t n;

        r = nbd_read(s, buf, 8);
        if (r < 0) {
            return r;
        }
        n = nbd_get_u32(buf);
        if (!ours || n == 0 || pos >= end || req->n_ext == req->max_ext) {
            ours = false;
            continue;
        }
        pos = MIN(end, pos + n);
        req->ext[req->n_ext++] = (NBDExtent) {
            .end = pos, .flags = nbd_get_u32(buf + 4),
        };
    }
    return 0;
}

/* An error chunk: records the error in the request. */
static int nbd_recv_error_chunk(BDRVNBDState *s, NBDClientReq *req,
                                uint32_t len)
{
    uint8_t buf[6];
    int r;

    if (len < 6 || len > NBD_CLIENT_MAX_ERROR_CHUNK) {
        return -EPROTO;
    }
    r = nbd_read(s, buf, sizeof(buf));
    if (r < 0) {
        return r;
    }
    if (req->ret == 0) {
        req->ret = nbd_get_u32(buf) ? nbd_errno(nbd_get_u32(buf)) : -EIO;
    }
    return nbd_skip(s, len - 6);
}

/* One structured reply chunk (after its magic).  -EPROTO kills the
 * connection. */
static int nbd_recv_structured(BDRVNBDState *s)
{
    uint8_t hdr[16];
    uint16_t flags, type;
    uint32_t len;
    NBDClientReq *req;
    int r = nbd_read(s, hdr, sizeof(hdr));

    if (r < 0) {
        return r;
    }
    flags = nbd_get_u16(hdr);
    type = nbd_get_u16(hdr + 2);
    len = nbd_get_u32(hdr + 12);
    req = nbd_find_req(s, nbd_get_u64(hdr + 4));
    if (!req || !s->info.structured_reply) {
        return -EPROTO;
    }
    switch (type) {
    case NBD_REPLY_TYPE_NONE:
        r = (len == 0 && (flags & NBD_REPLY_FLAG_DONE)) ? 0 : -EPROTO;
        break;
    case NBD_REPLY_TYPE_OFFSET_DATA:
    case NBD_REPLY_TYPE_OFFSET_HOLE:
        r = nbd_recv_read_chunk(s, req, type, len);
        break;
    case NBD_REPLY_TYPE_BLOCK_STATUS:
        r = nbd_recv_status_chunk(s, req, len);
        break;
    default:
        /* Unknown error types are errors; unknown others are fatal. */
        r = NBD_REPLY_TYPE_IS_ERR(type)
            ? nbd_recv_error_chunk(s, req, len) : -EPROTO;
        break;
    }
    if (r == 0 && (flags & NBD_REPLY_FLAG_DONE)) {
        nbd_req_complete(req, 0);
    }
    return r;
}

/* A simple reply (after its magic). */
static int nbd_recv_simple(BDRVNBDState *s)
{
    uint8_t hdr[12];
    NBDClientReq *req;
    uint32_t err;
    int r = nbd_read(s, hdr, sizeof(hdr));

    if (r < 0) {
        return r;
    }
    err = nbd_get_u32(hdr);
    req = nbd_find_req(s, nbd_get_u64(hdr + 4));
    if (!req) {
        return -EPROTO;
    }
    if (req->type == NBD_CMD_READ && err == 0) {
        if (s->info.structured_reply) {
            return -EPROTO;     /* reads must use chunks then */
        }
        r = nbd_read_qiov(s, req->qiov, 0, req->length);
        if (r < 0) {
            return r;
        }
    } else if (req->type == NBD_CMD_BLOCK_STATUS && err == 0) {
        return -EPROTO;
    }
    nbd_req_complete(req, err ? nbd_errno(err) : 0);
    return 0;
}

/* Reads replies until the connection breaks or the node closes. */
static int nbd_receive_loop(BDRVNBDState *s)
{
    for (;;) {
        uint8_t magic[4];
        int r = nbd_read(s, magic, sizeof(magic));

        if (r == 0) {
            if (nbd_get_u32(magic) == NBD_SIMPLE_REPLY_MAGIC) {
                r = nbd_recv_simple(s);
            } else if (nbd_get_u32(magic) == NBD_STRUCTURED_REPLY_MAGIC) {
                r = nbd_recv_structured(s);
            } else {
                r = -EPROTO;
            }
        }
        if (r < 0) {
            return r;
        }
    }
}

/* ---- The connection coroutine ---- */

static void nbd_sleep_timer_cb(BDRVNBDState *s)
{
    if (s->sleep_waiter) {
        nbd_resume(s, s->sleep_waiter);
    }
}

/* Ends the reconnect-delay window: waiting requests fail now. */
static void nbd_delay_timer_cb(BDRVNBDState *s)
{
    if (s->state == NBD_CLIENT_CONNECTING_WAIT) {
        s->state = NBD_CLIENT_CONNECTING_NOWAIT;
        co_queue_restart_all(&s->connect_waiters);
    }
}

/* Sleeps ns unless close() wakes us first. */
static void coroutine_fn nbd_co_sleep(BDRVNBDState *s, int64_t ns)
{
    nbd_timer_arm(&s->sleep_timer, ns);
    s->sleep_waiter = coroutine_self();
    coroutine_yield();
    s->sleep_waiter = NULL;
    nbd_timer_stop(&s->sleep_timer);
}

/* Best effort: tells the server we leave (no reply is sent to DISC). */
static void nbd_send_disc(BDRVNBDState *s)
{
    uint8_t hdr[NBD_REQUEST_SIZE] = { 0 };

    nbd_put_u32(hdr, NBD_REQUEST_MAGIC);
    nbd_put_u16(hdr + 6, NBD_CMD_DISC);
    if (send(s->fd, hdr, sizeof(hdr), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* The server is gone anyway. */
    }
}

/* After the receive loop ended: closes the socket once no request is
 * mid-send, then fails every request still waiting for a reply. */
static void coroutine_fn nbd_teardown(BDRVNBDState *s)
{
    s->state = s->closing || !s->reconnect_delay ? NBD_CLIENT_QUIT
                                                 : NBD_CLIENT_CONNECTING_WAIT;
    if (s->state == NBD_CLIENT_CONNECTING_WAIT) {
        nbd_timer_arm(&s->delay_timer, s->reconnect_delay * 1000000000LL);
    }
    shutdown(s->fd, SHUT_RDWR);
    if (s->send_waiter) {
        nbd_resume(s, s->send_waiter);
    }
    co_mutex_lock(&s->send_lock);
    s->rx_active = false;
    aio_set_fd_handler(s->ctx, s->fd, NULL, NULL, NULL);
    close(s->fd);
    s->fd = -1;
    co_mutex_unlock(&s->send_lock);
    for (int i = 0; i < NBD_CLIENT_MAX_REQS; i++) {
        if (s->reqs[i].in_use && !s->reqs[i].done) {
            nbd_req_complete(&s->reqs[i], -EIO);
        }
    }
    s->status_cache->valid = false;
}

/* Tries to get the connection back, as long as the node is open. */
static void coroutine_fn nbd_reconnect(BDRVNBDState *s)
{
    int64_t backoff = NBD_CLIENT_RECONNECT_MIN_NS;

    while (!s->closing) {
        Error *err = NULL;
        NBDExportInfo info;

        nbd_co_sleep(s, backoff);
        if (s->closing) {
            return;
        }
        backoff = MIN(backoff * 2, NBD_CLIENT_RECONNECT_MAX_NS);
        if (!nbd_connect(s, &info, &err)) {
            error_free(err);
            continue;
        }
        if (s->closing) {
            close(s->fd);
            s->fd = -1;
            return;
        }
        if (info.size != s->info.size ||
            info.min_block != s->info.min_block ||
            info.max_block != s->info.max_block ||
            ((info.flags & NBD_FLAG_READ_ONLY) &&
             !(s->info.flags & NBD_FLAG_READ_ONLY))) {
            /* Not the export we had (the node's size and limits came from
             * it): keep the node failing. */
            close(s->fd);
            s->fd = -1;
            continue;
        }
        s->info = info;
        s->state = NBD_CLIENT_CONNECTED;
        /* Transmission from now on: the waiters we wake may send at once. */
        s->rx_active = true;
        nbd_update_fd_handlers(s);
        nbd_timer_stop(&s->delay_timer);
        co_queue_restart_all(&s->connect_waiters);
        return;
    }
}

static void coroutine_fn nbd_connection_entry(void *opaque)
{
    BDRVNBDState *s = opaque;

    while (!s->closing && s->state == NBD_CLIENT_CONNECTED) {
        s->rx_active = true;
        nbd_update_fd_handlers(s);
        nbd_receive_loop(s);
        if (s->closing) {
            nbd_send_disc(s);
        }
        nbd_teardown(s);
        if (s->state != NBD_CLIENT_QUIT) {
            nbd_reconnect(s);
        }
    }
    s->conn_co = NULL;
    aio_notify(s->ctx);
}

/* ---- Following the node to another context ---- */

/*
 * BlockDriver.detach_aio_context: runs in the connection's old context
 * (in its thread, so nothing of ours runs there meanwhile), the node
 * drained: removes the fd handler and frees the timers.  The connection
 * coroutine stays suspended where it was; the waiter fields and the
 * timers' due times say what it waits for.
 */
static void nbd_detach_aio_context(BlockDriverState *bs)
{
    BDRVNBDState *s = bs->opaque;

    if (s->fd >= 0) {
        aio_set_fd_handler(s->ctx, s->fd, NULL, NULL, NULL);
    }
    nbd_timer_detach(&s->sleep_timer);
    nbd_timer_detach(&s->delay_timer);
    nbd_timer_detach(&s->io_timer);
}

/*
 * BlockDriver.attach_aio_context: runs in ctx's thread after the switch:
 * installs there what nbd_detach_aio_context removed.  The connection
 * coroutine is resumed in s->ctx from now on (nbd_resume).
 */
static void nbd_attach_aio_context(BlockDriverState *bs, AioContext *ctx)
{
    BDRVNBDState *s = bs->opaque;

    s->ctx = ctx;
    nbd_timer_attach(&s->sleep_timer, ctx);
    nbd_timer_attach(&s->delay_timer, ctx);
    nbd_timer_attach(&s->io_timer, ctx);
    if (s->fd >= 0 && (s->rx_active || s->recv_waiter || s->send_waiter)) {
        nbd_update_fd_handlers(s);
    }
}

/* ---- Request coroutines ---- */

/* Waits for a connection and a free slot; returns the slot or NULL
 * (-EIO: no connection). */
static NBDClientReq *coroutine_fn nbd_get_slot(BDRVNBDState *s)
{
    for (;;) {
        while (s->state == NBD_CLIENT_CONNECTING_WAIT) {
            co_queue_wait(&s->connect_waiters, NULL);
        }
        if (s->state != NBD_CLIENT_CONNECTED) {
            return NULL;
        }
        if (s->in_flight < NBD_CLIENT_MAX_REQS) {
            break;
        }
        co_queue_wait(&s->free_slots, NULL);
    }
    for (int i = 0; i < NBD_CLIENT_MAX_REQS; i++) {
        NBDClientReq *req = &s->reqs[i];

        if (!req->in_use) {
            memset(req, 0, sizeof(*req));
            req->in_use = true;
            req->handle = s->next_seq++ * NBD_CLIENT_MAX_REQS + i;
            s->in_flight++;
            return req;
        }
    }
    g_assert_not_reached();
}

static void nbd_put_slot(BDRVNBDState *s, NBDClientReq *req)
{
    req->in_use = false;
    s->in_flight--;
    co_queue_next(&s->free_slots);
}

/* Sends the request (header and WRITE payload) under send_lock. */
static int coroutine_fn nbd_send_request(BDRVNBDState *s, NBDClientReq *req,
                                         uint16_t flags, QIOVector *payload)
{
    uint8_t hdr[NBD_REQUEST_SIZE];
    struct iovec local[17];
    struct iovec *iov = local;
    int niov = 1, r;

    nbd_put_u32(hdr, NBD_REQUEST_MAGIC);
    nbd_put_u16(hdr + 4, flags);
    nbd_put_u16(hdr + 6, req->type);
    nbd_put_u64(hdr + 8, req->handle);
    nbd_put_u64(hdr + 16, req->offset);
    nbd_put_u32(hdr + 24, req->length);
    if (payload && payload->niov >= (int)G_N_ELEMENTS(local)) {
        iov = g_new(struct iovec, payload->niov + 1);
    }
    iov[0].iov_base = hdr;
    iov[0].iov_len = sizeof(hdr);
    if (payload) {
        memcpy(iov + 1, payload->iov, payload->niov * sizeof(*iov));
        niov += payload->niov;
    }
    co_mutex_lock(&s->send_lock);
    if (s->state != NBD_CLIENT_CONNECTED) {
        r = -EIO;
    } else {
        r = nbd_write_iov(s, iov, niov);
        if (r < 0) {
            /* The connection coroutine sees the dead socket and tears
             * the connection down. */
            shutdown(s->fd, SHUT_RDWR);
            r = -EIO;
        }
    }
    co_mutex_unlock(&s->send_lock);
    if (iov != local) {
        g_free(iov);
    }
    return r;
}

/*
 * Runs one command to completion: slot, send, wait for the reply.
 * For READ, qiov receives the data; for WRITE it is the payload.  For
 * BLOCK_STATUS, status (else NULL) brings the extent array (ext,
 * max_ext) and gets n_ext and have_status back.
 */
static int coroutine_fn nbd_co_request(BlockDriverState *bs, uint16_t type,
                                       uint16_t flags, uint64_t offset,
                                       uint32_t length, QIOVector *qiov,
                                       NBDClientReq *status)
{
    BDRVNBDState *s = bs->opaque;
    NBDClientReq *req;
    bool changes_status;
    int r;

    req = nbd_get_slot(s);
    if (!req) {
        return -EIO;
    }
    req->type = type;
    req->offset = offset;
    req->length = length;
    req->qiov = type == NBD_CMD_READ ? qiov : NULL;
    if (status) {
        req->ext = status->ext;
        req->max_ext = status->max_ext;
    }
    changes_status = type == NBD_CMD_WRITE || type == NBD_CMD_WRITE_ZEROES ||
                     type == NBD_CMD_TRIM;
    if (changes_status) {
        s->status_cache->valid = false;
        s->status_gen++;
    }
    r = nbd_send_request(s, req, flags, type == NBD_CMD_WRITE ? qiov : NULL);
    if (r == 0) {
        while (!req->done) {
            req->waiter = coroutine_self();
            coroutine_yield();
            req->waiter = NULL;
        }
        r = req->ret;
    }
    if (changes_status) {
        /* A status query answered while we were writing may predate it. */
        s->status_cache->valid = false;
        s->status_gen++;
    }
    if (status) {
        status->n_ext = req->n_ext;
        status->have_status = req->have_status;
    }
    nbd_put_slot(s, req);
    return r;
}

static int coroutine_fn nbd_co_preadv(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, QIOVector *qiov,
                                      BdrvRequestFlags flags)
{
    return nbd_co_request(bs, NBD_CMD_READ, 0, offset, bytes, qiov, NULL);
}

static int coroutine_fn nbd_co_pwritev(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, QIOVector *qiov,
                                       BdrvRequestFlags flags)
{
    uint16_t f = (flags & BDRV_REQ_FUA) ? NBD_CMD_FLAG_FUA : 0;

    return nbd_co_request(bs, NBD_CMD_WRITE, f, offset, bytes, qiov, NULL);
}

static int coroutine_fn nbd_co_pwrite_zeroes(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             BdrvRequestFlags flags)
{
    BDRVNBDState *s = bs->opaque;
    uint16_t f = 0;

    if (!(s->info.flags & NBD_FLAG_SEND_WRITE_ZEROES)) {
        return -ENOTSUP;
    }
    if (flags & BDRV_REQ_FUA) {
        f |= NBD_CMD_FLAG_FUA;
    }
    if (!(flags & BDRV_REQ_MAY_UNMAP)) {
        f |= NBD_CMD_FLAG_NO_HOLE;
    }
    if (flags & BDRV_REQ_NO_FALLBACK) {
        if (!(s->info.flags & NBD_FLAG_SEND_FAST_ZERO)) {
            return -ENOTSUP;
        }
        f |= NBD_CMD_FLAG_FAST_ZERO;
    }
    return nbd_co_request(bs, NBD_CMD_WRITE_ZEROES, f, offset, bytes, NULL,
                          NULL);
}

static int coroutine_fn nbd_co_pdiscard(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes)
{
    BDRVNBDState *s = bs->opaque;

    if (!(s->info.flags & NBD_FLAG_SEND_TRIM)) {
        return -ENOTSUP;
    }
    return nbd_co_request(bs, NBD_CMD_TRIM, 0, offset, bytes, NULL, NULL);
}

static int coroutine_fn nbd_co_flush(BlockDriverState *bs)
{
    BDRVNBDState *s = bs->opaque;

    if (!(s->info.flags & NBD_FLAG_SEND_FLUSH)) {
        return 0;
    }
    return nbd_co_request(bs, NBD_CMD_FLUSH, 0, 0, 0, NULL, NULL);
}

/* The extent of c that holds offset, or NULL (not cached, expired). */
static const NBDExtent *nbd_status_lookup(const NBDStatusCache *c,
                                          int64_t offset)
{
    unsigned lo = 0, hi;

    if (!c->valid || offset < c->offset || offset >= c->ext[c->n - 1].end ||
        clock_ns() >= c->expires_ns) {
        return NULL;
    }
    hi = c->n - 1;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;

        if (c->ext[mid].end <= offset) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return &c->ext[lo];
}

/*
 * Asks the server for the extents from offset to the end of the export
 * (as far as one request reaches); *first gets the one at offset.  The
 * answer replaces the cache unless a write of ours overlapped the query.
 * While it is in flight, callers asking at or after offset wait for it
 * (status_waiters) instead of asking too.
 */
static int coroutine_fn nbd_query_status(BlockDriverState *bs,
                                         int64_t offset, NBDExtent *first)
{
    BDRVNBDState *s = bs->opaque;
    g_autofree NBDStatusCache *fresh = g_new0(NBDStatusCache, 1);
    NBDClientReq q = { .ext = fresh->ext,
                       .max_ext = NBD_CLIENT_STATUS_MAX_EXTENTS };
    int64_t len = MIN((int64_t)s->info.size - offset, BDRV_REQUEST_MAX_BYTES);
    uint64_t gen = s->status_gen;
    bool leader = !s->status_busy;
    int r;

    if (len > s->info.min_block) {
        len -= len % s->info.min_block;
    }
    if (leader) {
        s->status_busy = true;
        s->status_busy_offset = offset;
    }
    r = nbd_co_request(bs, NBD_CMD_BLOCK_STATUS, 0, offset, len, NULL, &q);
    if (r == 0 && (!q.have_status || q.n_ext == 0)) {
        r = -EIO;
    }
    if (r == 0) {
        *first = fresh->ext[0];
        if (gen == s->status_gen) {
            fresh->valid = true;
            fresh->offset = offset;
            fresh->n = q.n_ext;
            fresh->expires_ns = clock_ns() + NBD_CLIENT_STATUS_CACHE_NS;
            g_free(s->status_cache);
            s->status_cache = g_steal_pointer(&fresh);
        }
    }
    if (leader) {
        s->status_busy = false;
        co_queue_restart_all(&s->status_waiters);
    }
    return r;
}

/*
 * Mapping mode asks the server (base:allocation), through the cache;
 * allocation mode and servers without the context report data.  The
 * map is the offset itself: the node is its own storage, as for file.
 */
static int coroutine_fn nbd_co_block_status(BlockDriverState *bs,
                                            bool want_zero, int64_t offset,
                                            int64_t bytes, int64_t *pnum,
                                            int64_t *map,
                                            BlockDriverState **file)
{
    BDRVNBDState *s = bs->opaque;
    const NBDExtent *e;
    NBDExtent one;

    *map = offset;
    *file = bs;
    if (!want_zero || !s->info.base_allocation) {
        *pnum = bytes;
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    }
    for (;;) {
        e = nbd_status_lookup(s->status_cache, offset);
        if (e) {
            break;
        }
        if (s->status_busy && s->status_busy_offset <= offset) {
            co_queue_wait(&s->status_waiters, NULL);
            continue;
        }
        int r = nbd_query_status(bs, offset, &one);

        if (r < 0) {
            return r;
        }
        e = &one;
        break;
    }
    *pnum = MIN(e->end - offset, bytes);
    return BDRV_BLOCK_OFFSET_VALID |
           ((e->flags & NBD_STATE_HOLE) ? 0 : BDRV_BLOCK_DATA) |
           ((e->flags & NBD_STATE_ZERO) ? BDRV_BLOCK_ZERO : 0);
}

static int64_t nbd_getlength(BlockDriverState *bs)
{
    BDRVNBDState *s = bs->opaque;

    return s->info.size;
}

/* ---- Open and close ---- */

/* The limits of the node from the negotiated block sizes. */
static void nbd_set_limits(BlockDriverState *bs)
{
    BDRVNBDState *s = bs->opaque;
    uint32_t align = s->info.min_block;
    int64_t max = s->info.max_block ? s->info.max_block
                                    : NBD_MAX_BUFFER_SIZE;
    int64_t max_cmd = BDRV_REQUEST_MAX_BYTES - BDRV_REQUEST_MAX_BYTES % align;

    max = MIN(max, max_cmd);
    bs->bl.request_alignment = align;
    bs->bl.max_transfer = max - max % align;
    bs->bl.max_pwrite_zeroes = max_cmd;
    bs->bl.max_pdiscard = max_cmd;
    bs->supported_write_flags = 0;
    bs->supported_zero_flags = 0;
    if (s->info.flags & NBD_FLAG_SEND_FUA) {
        bs->supported_write_flags |= BDRV_REQ_FUA;
        bs->supported_zero_flags |= BDRV_REQ_FUA;
    }
    if (s->info.flags & NBD_FLAG_SEND_WRITE_ZEROES) {
        bs->supported_zero_flags |= BDRV_REQ_MAY_UNMAP;
        if (s->info.flags & NBD_FLAG_SEND_FAST_ZERO) {
            bs->supported_zero_flags |= BDRV_REQ_NO_FALLBACK;
        }
    }
}

/* The URI form of the server address and export, as filename. */
static char *nbd_filename(BDRVNBDState *s)
{
    if (s->saddr->type == SOCKET_ADDRESS_TYPE_UNIX) {
        return g_strdup_printf("nbd+unix:///%s?socket=%s", s->export,
                               s->saddr->u.q_unix.path);
    }
    if (strchr(s->saddr->u.inet.host, ':')) {
        return g_strdup_printf("nbd://[%s]:%s/%s", s->saddr->u.inet.host,
                               s->saddr->u.inet.port, s->export);
    }
    return g_strdup_printf("nbd://%s:%s/%s", s->saddr->u.inet.host,
                           s->saddr->u.inet.port, s->export);
}

/* Copies the address out of the options (the node keeps it). */
static SocketAddress *nbd_copy_addr(const SocketAddress *a)
{
    SocketAddress *c = g_new0(SocketAddress, 1);

    c->type = a->type;
    if (a->type == SOCKET_ADDRESS_TYPE_UNIX) {
        c->u.q_unix.path = g_strdup(a->u.q_unix.path);
    } else {
        c->u.inet.host = g_strdup(a->u.inet.host);
        c->u.inet.port = g_strdup(a->u.inet.port);
    }
    return c;
}

/* The first connection, retried until open-timeout expires. */
static bool nbd_open_connect(BDRVNBDState *s, uint32_t open_timeout,
                             Error **errp)
{
    int64_t deadline = clock_ns() + open_timeout * 1000000000LL;

    for (;;) {
        Error *err = NULL;

        if (nbd_connect(s, &s->info, &err)) {
            return true;
        }
        if (clock_ns() >= deadline) {
            error_propagate(errp, err);
            return false;
        }
        error_free(err);
        if (in_coroutine()) {
            co_sleep_ns(100 * 1000 * 1000);
        } else {
            g_usleep(100 * 1000);
        }
    }
}

static void nbd_free_state(BDRVNBDState *s)
{
    qapi_free_SocketAddress(s->saddr);
    g_free(s->export);
    g_free(s->rbuf);
    g_free(s->status_cache);
    timer_free(s->sleep_timer.timer);
    timer_free(s->delay_timer.timer);
    timer_free(s->io_timer.timer);
}

static int nbd_open(BlockDriverState *bs, const BlockdevOptions *opts,
                    Error **errp)
{
    BDRVNBDState *s = bs->opaque;
    const BlockdevOptionsNbd *o = &opts->u.nbd;

    s->fd = -1;
    s->ctx = bdrv_get_aio_context(bs);
    s->saddr = nbd_copy_addr(o->server);
    s->export = g_strdup(o->export ? o->export : "");
    s->reconnect_delay = o->has_reconnect_delay ? o->reconnect_delay : 0;
    s->rbuf = g_malloc(NBD_CLIENT_RBUF_SIZE);
    s->status_cache = g_new0(NBDStatusCache, 1);
    nbd_timer_init(&s->sleep_timer, s, nbd_sleep_timer_cb);
    nbd_timer_init(&s->delay_timer, s, nbd_delay_timer_cb);
    nbd_timer_init(&s->io_timer, s, nbd_io_timer_cb);
    if (strlen(s->export) > 4096) {
        error_setg(errp, "NBD export name is longer than 4096 bytes");
        nbd_free_state(s);
        return -EINVAL;
    }
    if (!nbd_open_connect(s, o->has_open_timeout ? o->open_timeout : 0,
                          errp)) {
        nbd_free_state(s);
        return -EIO;
    }
    if ((s->info.flags & NBD_FLAG_READ_ONLY) && !bs->read_only) {
        error_setg(errp, "NBD export '%s' is read-only; open the node "
                   "with read-only=on", s->export);
        close(s->fd);
        nbd_free_state(s);
        return -EACCES;
    }
    s->state = NBD_CLIENT_CONNECTED;
    co_mutex_init(&s->send_lock);
    co_queue_init(&s->free_slots);
    co_queue_init(&s->connect_waiters);
    co_queue_init(&s->status_waiters);
    nbd_set_limits(bs);
    bs->filename = nbd_filename(s);
    s->conn_co = coroutine_create(nbd_connection_entry, s);
    aio_co_enter(s->ctx, s->conn_co);
    return 0;
}

/* Stops the connection coroutine (it sends DISC if connected) and waits
 * for it to end.  The node is drained: no request is in flight. */
static void nbd_close(BlockDriverState *bs)
{
    BDRVNBDState *s = bs->opaque;

    s->closing = true;
    nbd_timer_stop(&s->delay_timer);
    co_queue_restart_all(&s->connect_waiters);
    nbd_kick_waiters(s);
    AIO_WAIT_WHILE(s->ctx, s->conn_co != NULL);
    nbd_free_state(s);
}

/* ---- URIs ---- */

bool nbd_is_uri(const char *filename)
{
    return g_str_has_prefix(filename, "nbd://") ||
           g_str_has_prefix(filename, "nbd+tcp://") ||
           g_str_has_prefix(filename, "nbd+unix://");
}

/* Percent-decodes s (caller frees); NULL if an escape is malformed or
 * decodes to NUL. */
static char *nbd_uri_decode(const char *s, size_t len)
{
    GString *out = g_string_sized_new(len);

    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < len ? g_ascii_xdigit_value(s[i + 1]) : -1;
            int lo = hi >= 0 ? g_ascii_xdigit_value(s[i + 2]) : -1;

            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                g_string_free(out, TRUE);
                return NULL;
            }
            g_string_append_c(out, (char)(hi << 4 | lo));
            i += 2;
        } else {
            g_string_append_c(out, s[i]);
        }
    }
    return g_string_free(out, FALSE);
}

/* Splits "HOST[:PORT]" (HOST may be "[v6]") into the inet address. */
static bool nbd_uri_host(const char *hp, size_t len, InetSocketAddress *in)
{
    const char *end = hp + len, *colon;

    if (len > 0 && hp[0] == '[') {
        const char *close_br = memchr(hp, ']', len);

        if (!close_br || close_br == hp + 1) {
            return false;
        }
        in->host = g_strndup(hp + 1, close_br - hp - 1);
        colon = close_br + 1 < end ? close_br + 1 : NULL;
        if (colon && *colon != ':') {
            return false;
        }
    } else {
        colon = memchr(hp, ':', len);
        in->host = g_strndup(hp, colon ? (size_t)(colon - hp) : len);
    }
    if (in->host[0] == '\0') {
        return false;
    }
    if (colon) {
        for (const char *p = colon + 1; p < end; p++) {
            if (!g_ascii_isdigit(*p)) {
                return false;
            }
        }
        if (colon + 1 == end) {
            return false;
        }
        in->port = g_strndup(colon + 1, end - colon - 1);
    } else {
        in->port = g_strdup("10809");
    }
    return true;
}

bool nbd_uri_to_options(const char *uri, BlockdevOptions *opts, Error **errp)
{
    bool is_unix = g_str_has_prefix(uri, "nbd+unix://");
    const char *p = strstr(uri, "://");
    const char *auth, *path, *query;
    BlockdevOptionsNbd *o = &opts->u.nbd;

    opts->driver = BLOCKDEV_DRIVER_NBD;
    if (!nbd_is_uri(uri) || !p) {
        error_setg(errp, "Invalid NBD URI '%s': unknown scheme", uri);
        return false;
    }
    auth = p + 3;
    path = auth + strcspn(auth, "/?");
    query = strchr(path, '?');
    if (!query) {
        query = path + strlen(path);
    }
    o->server = g_new0(SocketAddress, 1);
    if (*path == '/') {
        o->export = nbd_uri_decode(path + 1, query - path - 1);
        if (!o->export) {
            error_setg(errp, "Invalid NBD URI '%s': bad escape in the "
                       "export name", uri);
            return false;
        }
    }
    if (is_unix) {
        if (path != auth) {
            error_setg(errp, "Invalid NBD URI '%s': a UNIX socket URI has "
                       "no host", uri);
            return false;
        }
        if (!g_str_has_prefix(query, "?socket=") || query[8] == '\0' ||
            strchr(query + 8, '&')) {
            error_setg(errp, "Invalid NBD URI '%s': expected "
                       "'?socket=PATH' and nothing else", uri);
            return false;
        }
        o->server->type = SOCKET_ADDRESS_TYPE_UNIX;
        o->server->u.q_unix.path = nbd_uri_decode(query + 8, strlen(query + 8));
        if (!o->server->u.q_unix.path) {
            error_setg(errp, "Invalid NBD URI '%s': bad escape in the "
                       "socket path", uri);
            return false;
        }
        return true;
    }
    o->server->type = SOCKET_ADDRESS_TYPE_INET;
    if (*query) {
        error_setg(errp, "Invalid NBD URI '%s': unexpected query", uri);
        return false;
    }
    if (!nbd_uri_host(auth, path - auth, &o->server->u.inet)) {
        error_setg(errp, "Invalid NBD URI '%s': expected HOST[:PORT]", uri);
        return false;
    }
    return true;
}

const BlockDriver bdrv_nbd = {
    .format_name = "nbd",
    .driver = BLOCKDEV_DRIVER_NBD,
    .instance_size = sizeof(BDRVNBDState),
    .is_protocol = true,
    .open = nbd_open,
    .close = nbd_close,
    .detach_aio_context = nbd_detach_aio_context,
    .attach_aio_context = nbd_attach_aio_context,
    .getlength = nbd_getlength,
    .co_preadv = nbd_co_preadv,
    .co_pwritev = nbd_co_pwritev,
    .co_pwrite_zeroes = nbd_co_pwrite_zeroes,
    .co_pdiscard = nbd_co_pdiscard,
    .co_flush = nbd_co_flush,
    .co_block_status = nbd_co_block_status,
};
