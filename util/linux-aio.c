/*
 * linux-aio engine (include/util/linux-aio.h): native asynchronous I/O for
 * file-posix with aio=native, so reads and writes on O_DIRECT files need no
 * thread hop.
 *
 * One engine per AioContext, kept in the context's AIO_SLOT_LINUX_AIO slot
 * so that it dies with its context.  Coroutines queue requests; a BH
 * submits everything queued so far with one io_submit() before the context
 * next waits, so requests issued during one loop iteration (an NBD server
 * parsing several, block-copy starting its workers, blockd-io running a
 * script) share a system call; a queue of LAIO_MAX_BATCH goes out at once.
 * The kernel signals completions on an eventfd watched by the context; the
 * handler reaps them with a non-blocking io_getevents() and wakes each
 * waiting coroutine.
 * Everything runs in the engine's context thread, so there is no lock.
 */
#include <errno.h>
#include <libaio.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <glib.h>

#include "util/linux-aio.h"

/* Requests the kernel holds at most (io_setup's nr_events). */
#define LAIO_MAX_EVENTS 256

typedef struct LaioRequest LaioRequest;

/* A FIFO of requests linked through LaioRequest.next. */
typedef struct LaioList {
    LaioRequest *head, *tail;
} LaioList;

/*
 * One request.  Lives on the stack of the coroutine in laio_co_submit(),
 * which does not return before the request has completed.
 */
struct LaioRequest {
    LinuxAioState *s;
    Coroutine *co;
    struct iocb iocb;
    int fd;
    LaioType type;
    int64_t offset;
    QIOVector *qiov;        /* caller's; untouched except on zero-fill */
    size_t done;            /* bytes written by earlier short rounds */
    QIOVector rest;         /* the tail still to write after a short one */
    int64_t ret;            /* -EINPROGRESS until complete */
    LaioRequest *next;      /* in the pending or a finished list */
};

/*
 * The engine of one context.  All fields are used only in ctx's thread,
 * except the statistics, which others may read (relaxed atomics).  Owned
 * by the context's slot: freed by laio_cleanup() or when ctx is freed.
 */
struct LinuxAioState {
    AioContext *ctx;        /* not referenced: the context owns us */
    io_context_t io_ctx;
    int efd;                /* completion eventfd, watched in ctx */
    QEMUBH *submit_bh;
    LaioList pending;       /* queued, not yet submitted */
    int n_pending;          /* length of pending */
    int in_flight;          /* submitted, not yet reaped */
    uint64_t stat_submits;  /* io_submit() calls */
    uint64_t stat_requests; /* iocbs the kernel accepted */
};

static void stat_add(uint64_t *counter, uint64_t n)
{
    /* Only the owner thread writes, so a plain read is exact. */
    __atomic_store_n(counter, *counter + n, __ATOMIC_RELAXED);
}

static void list_push_tail(LaioList *l, LaioRequest *req)
{
    req->next = NULL;
    if (l->tail) {
        l->tail->next = req;
    } else {
        l->head = req;
    }
    l->tail = req;
}

static void list_push_head(LaioList *l, LaioRequest *req)
{
    req->next = l->head;
    l->head = req;
    if (!l->tail) {
        l->tail = req;
    }
}

static LaioRequest *list_pop_head(LaioList *l)
{
    LaioRequest *req = l->head;

    l->head = req->next;
    if (!l->head) {
        l->tail = NULL;
    }
    req->next = NULL;
    return req;
}

/* Fills req->iocb for the part of the request not yet transferred. */
static void laio_prep(LaioRequest *req)
{
    const struct iovec *iov = req->qiov->iov;
    int niov = req->qiov->niov;
    int64_t offset = req->offset + req->done;

    if (req->done > 0) {
        qiov_reset(&req->rest);
        qiov_concat(&req->rest, req->qiov, req->done,
                    req->qiov->size - req->done);
        iov = req->rest.iov;
        niov = req->rest.niov;
    }
    switch (req->type) {
    case LAIO_READ:
        /* One buffer: plain pread is a little cheaper in the kernel. */
        if (niov == 1) {
            io_prep_pread(&req->iocb, req->fd, iov[0].iov_base,
                          iov[0].iov_len, offset);
        } else {
            io_prep_preadv(&req->iocb, req->fd, iov, niov, offset);
        }
        break;
    case LAIO_WRITE:
        if (niov == 1) {
            io_prep_pwrite(&req->iocb, req->fd, iov[0].iov_base,
                           iov[0].iov_len, offset);
        } else {
            io_prep_pwritev(&req->iocb, req->fd, iov, niov, offset);
        }
        break;
    case LAIO_FDSYNC:
        io_prep_fdsync(&req->iocb, req->fd);
        break;
    default:
        g_assert_not_reached();
    }
    io_set_eventfd(&req->iocb, req->s->efd);
    req->iocb.data = req;
}

/*
 * Wakes the coroutines of finished requests.  Always the last thing a
 * handler does: a woken coroutine may queue more work or even destroy the
 * engine (laio_cleanup), so nothing may touch the engine afterwards.  The
 * requests themselves live on their coroutines' stacks, not in the engine.
 */
static void laio_wake_list(LaioList *list)
{
    while (list->head) {
        aio_co_wake(list_pop_head(list)->co);
    }
}

/*
 * Submits queued requests, as many per io_submit() as the kernel has room
 * for.  A request the kernel refuses outright (bad fd, EINVAL for an
 * unsupported FDSYNC...) fails alone and is appended to *finished; the
 * others go on.  EAGAIN while requests are in flight leaves the rest queued
 * until completions make room; EAGAIN with nothing in flight cannot clear
 * by waiting and fails the request.
 */
static void laio_submit_pending(LinuxAioState *s, LaioList *finished)
{
    struct iocb *iocbs[LAIO_MAX_EVENTS];

    while (s->pending.head && s->in_flight < LAIO_MAX_EVENTS) {
        LaioRequest *req;
        int n = 0, ret, i;

        for (req = s->pending.head;
             req && n < LAIO_MAX_EVENTS - s->in_flight; req = req->next) {
            iocbs[n++] = &req->iocb;
        }
        ret = io_submit(s->io_ctx, n, iocbs);
        stat_add(&s->stat_submits, 1);
        if (ret == -EAGAIN && s->in_flight > 0) {
            break;
        }
        if (ret < 0) {
            req = list_pop_head(&s->pending);
            s->n_pending--;
            req->ret = ret;
            list_push_tail(finished, req);
            continue;
        }
        for (i = 0; i < ret; i++) {
            list_pop_head(&s->pending);
        }
        s->n_pending -= ret;
        s->in_flight += ret;
        stat_add(&s->stat_requests, ret);
    }
}

static void laio_submit_bh(void *opaque)
{
    LaioList finished = { NULL, NULL };

    laio_submit_pending(opaque, &finished);
    laio_wake_list(&finished);
}

/*
 * Accounts for one completion event.  Returns true when the request is
 * finished (req->ret set); false when a short write was queued again for
 * its remainder.
 *
 * Short reads: on regular files and block devices a read comes back short
 * only at end of file, so the rest is zero-filled and the read counts as
 * complete (re-reading at an unaligned offset would fail under O_DIRECT
 * anyway).  Short writes: the remainder is resubmitted; each round made
 * progress, and a round that writes nothing fails the request with -EIO.
 */
static bool laio_finish(LinuxAioState *s, LaioRequest *req, long res)
{
    size_t remaining;

    if (res < 0) {
        req->ret = res;
        return true;
    }
    if (req->type == LAIO_FDSYNC) {
        req->ret = 0;
        return true;
    }
    remaining = req->qiov->size - req->done;
    if ((size_t)res >= remaining) {
        req->ret = req->qiov->size;
        return true;
    }
    if (req->type == LAIO_READ) {
        iov_memset(req->qiov->iov, req->qiov->niov, req->done + res, 0,
                   remaining - res);
        req->ret = req->qiov->size;
        return true;
    }
    if (res == 0) {
        req->ret = -EIO;
        return true;
    }
    req->done += res;
    laio_prep(req);
    list_push_head(&s->pending, req);
    s->n_pending++;
    return false;
}

/* Reaps every available completion without blocking; the finished
 * requests are appended to *finished. */
static void laio_reap(LinuxAioState *s, LaioList *finished)
{
    struct io_event events[LAIO_MAX_EVENTS];
    struct timespec no_wait = { 0, 0 };
    int n, i;

    do {
        n = io_getevents(s->io_ctx, 0, LAIO_MAX_EVENTS, events, &no_wait);
        for (i = 0; i < n; i++) {
            LaioRequest *req = events[i].data;

            s->in_flight--;
            if (laio_finish(s, req, (long)events[i].res)) {
                list_push_tail(finished, req);
            }
        }
    } while (n == LAIO_MAX_EVENTS);
}

static void laio_completion_cb(void *opaque)
{
    LinuxAioState *s = opaque;
    LaioList finished = { NULL, NULL };
    uint64_t count;

    /* Clears the level-triggered readiness; the count itself is unused
     * because io_getevents() tells exactly what finished. */
    if (read(s->efd, &count, sizeof(count)) < 0) {
        g_assert(errno == EAGAIN || errno == EINTR);
    }
    laio_reap(s, &finished);
    /* Completions made room, or short writes were queued again. */
    if (s->pending.head) {
        laio_submit_pending(s, &finished);
    }
    laio_wake_list(&finished);
}

/*
 * Submits the queue from inside the coroutine of self (one of the queued
 * requests).  Requests the kernel refused are scheduled to resume in the
 * next iteration (entering them from here would run other requests'
 * code inside this one), except self, which sees its result when it
 * checks it.
 */
static void coroutine_fn laio_submit_from_co(LinuxAioState *s,
                                             LaioRequest *self)
{
    LaioList finished = { NULL, NULL };

    laio_submit_pending(s, &finished);
    while (finished.head) {
        LaioRequest *req = list_pop_head(&finished);

        if (req != self) {
            aio_co_schedule(s->ctx, req->co);
        }
    }
}

int64_t coroutine_fn laio_co_submit(LinuxAioState *s, int fd, int64_t offset,
                                    QIOVector *qiov, LaioType type)
{
    LaioRequest req = {
        .s = s,
        .co = coroutine_self(),
        .fd = fd,
        .type = type,
        .offset = offset,
        .qiov = qiov,
        .ret = -EINPROGRESS,
    };

    g_assert(req.co && current_aio_context() == s->ctx);
    if (type != LAIO_FDSYNC && qiov->size == 0) {
        return 0;
    }
    laio_prep(&req);
    list_push_tail(&s->pending, &req);
    if (++s->n_pending >= LAIO_MAX_BATCH) {
        /* A full batch goes out at once: no point in waiting longer. */
        laio_submit_from_co(s, &req);
    } else {
        /* Submitted with everything else queued in this iteration. */
        bh_schedule(s->submit_bh);
    }
    while (req.ret == -EINPROGRESS) {
        coroutine_yield();
    }
    qiov_destroy(&req.rest);
    return req.ret;
}

static void laio_free(LinuxAioState *s)
{
    /* Requests in flight would complete into coroutines nobody wakes. */
    g_assert(s->in_flight == 0 && !s->pending.head);
    aio_set_fd_handler(s->ctx, s->efd, NULL, NULL, NULL);
    bh_delete(s->submit_bh);
    io_destroy(s->io_ctx);
    close(s->efd);
    g_free(s);
}

/* Slot destructor: the context is being freed. */
static void laio_slot_destroy(void *opaque)
{
    laio_free(opaque);
}

static LinuxAioState *laio_new(AioContext *ctx, Error **errp)
{
    LinuxAioState *s = g_new0(LinuxAioState, 1);
    int ret;

    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->efd < 0) {
        error_setg_errno(errp, errno, "linux-aio: cannot create eventfd");
        g_free(s);
        return NULL;
    }
    ret = io_setup(LAIO_MAX_EVENTS, &s->io_ctx);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "linux-aio: io_setup(%d) failed",
                         LAIO_MAX_EVENTS);
        close(s->efd);
        g_free(s);
        return NULL;
    }
    s->ctx = ctx;
    s->submit_bh = aio_bh_new(ctx, laio_submit_bh, s);
    aio_set_fd_handler(ctx, s->efd, laio_completion_cb, NULL, s);
    return s;
}

LinuxAioState *aio_get_linux_aio(AioContext *ctx, Error **errp)
{
    LinuxAioState *s = aio_context_get_slot(ctx, AIO_SLOT_LINUX_AIO);

    if (!s) {
        s = laio_new(ctx, errp);
        if (s) {
            aio_context_set_slot(ctx, AIO_SLOT_LINUX_AIO, s,
                                 laio_slot_destroy);
        }
    }
    return s;
}

LinuxAioState *aio_find_linux_aio(AioContext *ctx)
{
    return aio_context_get_slot(ctx, AIO_SLOT_LINUX_AIO);
}

void laio_cleanup(LinuxAioState *s)
{
    aio_context_set_slot(s->ctx, AIO_SLOT_LINUX_AIO, NULL, NULL);
    laio_free(s);
}

void laio_get_stats(LinuxAioState *s, uint64_t *submits, uint64_t *requests)
{
    *submits = __atomic_load_n(&s->stat_submits, __ATOMIC_RELAXED);
    *requests = __atomic_load_n(&s->stat_requests, __ATOMIC_RELAXED);
}
