/*
 * AioContext: the per-thread event loop (epoll) with fd handlers, bottom
 * halves, CLOCK_MONOTONIC timers, cross-thread wake-ups and coroutine
 * scheduling.  See util/aio.h for the model and the thread rules.
 *
 * Cost model (the QMP round trip budget is a few tens of microseconds):
 *   - aio_poll allocates nothing and, when idle, makes one system call
 *     (epoll_pwait2, or epoll_wait plus a rare timerfd_settime when the
 *     kernel lacks epoll_pwait2);
 *   - scheduling a BH or a coroutine from another thread is a lock-free
 *     push; the eventfd is written only when the loop announced that it is
 *     about to sleep ("notify_me"), and at most once per sleep ("notified").
 * Nested aio_poll on the same context (AIO_WAIT_WHILE inside a callback) is
 * allowed: pending BHs live in the context, not on the outer poll's stack,
 * and fd handlers removed during a poll are freed when the outermost poll
 * returns.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "util/aio.h"
#include "util/coroutine-int.h"

/* Events fetched per epoll call; more stay queued for the next call. */
#define AIO_MAX_EVENTS 64

/* Flags of a BH (atomic: any thread schedules). */
enum {
    BH_SCHEDULED = 1 << 0,   /* should run at the next drain */
    BH_QUEUED    = 1 << 1,   /* is in the context's push list or run list */
    BH_DELETED   = 1 << 2,   /* bh_delete'd while queued: free on drain */
    BH_ONESHOT   = 1 << 3,   /* free after running once */
};

/*
 * A bottom half.  cb/opaque/ctx are fixed at creation; flags and next are
 * shared with scheduling threads (atomics; next is written by whoever
 * clears-then-sets BH_QUEUED, so by one thread at a time).  Freed by the
 * owner thread.
 */
struct QEMUBH {
    AioContext *ctx;
    BHFunc *cb;
    void *opaque;
    int flags;
    QEMUBH *next;
};

/* A timer; owner thread only.  Linked in ctx->timers, sorted by expiry. */
struct QEMUTimer {
    AioContext *ctx;
    TimerCb *cb;
    void *opaque;
    int64_t expire_ns;
    bool pending;
    QEMUTimer *next;
};

/* An fd's handlers; owner thread only.  epoll's data.ptr points here. */
typedef struct AioHandler {
    int fd;
    IOHandler *io_read;
    IOHandler *io_write;
    void *opaque;
    /* Removed while a poll may still hold it in its event array. */
    bool deleted;
    struct AioHandler *next_deleted;
} AioHandler;

/*
 * The loop.  Fields marked (owner) are touched only by the thread running
 * the context; (atomic) ones by any thread.
 */
struct AioContext {
    int refcnt;                 /* (atomic) */
    int epfd;
    int event_fd;
    AioHandler *event_handler;
    /* timerfd fallback when epoll_pwait2 is missing; -1 otherwise. */
    int timer_fd;
    AioHandler *timer_handler;
    int64_t timer_fd_armed;     /* (owner) deadline timerfd is set to */

    GHashTable *handlers;       /* (owner) fd -> AioHandler */
    AioHandler *deleted;        /* (owner) freed when poll_depth is 0 */
    int poll_depth;             /* (owner) nesting of aio_poll */

    QEMUBH *bh_pushed;          /* (atomic) LIFO of newly scheduled BHs */
    QEMUBH *bh_run_head;        /* (owner) FIFO being drained */
    QEMUBH *bh_run_tail;

    QEMUTimer *timers;          /* (owner) sorted by expire_ns */

    int notify_me;              /* (atomic) loop may sleep: write eventfd */
    int kicked;                 /* (atomic) aio_notify since last poll */
    int notified;               /* (atomic) eventfd written, not yet read */

    CoSchedLink *co_pushed;     /* (atomic) LIFO of aio_co_schedule'd */
    QEMUBH *co_bh;              /* drains co_pushed */

    /* Engines living beside the loop (see aio_context_set_slot). */
    void *slots[AIO_SLOT__MAX];
    GDestroyNotify slot_destroy[AIO_SLOT__MAX];
};

static __thread AioContext *tls_current_ctx;

/* -1 unknown, 0 missing, 1 usable.  Probed once per process. */
static int have_epoll_pwait2 = -1;

static void G_NORETURN aio_panic(const char *what, int err)
{
    fprintf(stderr, "aio: %s: %s\n", what, g_strerror(err));
    abort();
}

int64_t clock_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* fd handlers */

static void aio_handler_free_deleted(AioContext *ctx)
{
    AioHandler *h;

    while ((h = ctx->deleted) != NULL) {
        ctx->deleted = h->next_deleted;
        g_free(h);
    }
}

static void aio_handler_remove(AioContext *ctx, AioHandler *h)
{
    if (epoll_ctl(ctx->epfd, EPOLL_CTL_DEL, h->fd, NULL) != 0 &&
        errno != EBADF && errno != ENOENT) {
        aio_panic("epoll_ctl(DEL)", errno);
    }
    g_hash_table_remove(ctx->handlers, GINT_TO_POINTER(h->fd));
    h->deleted = true;
    h->next_deleted = ctx->deleted;
    ctx->deleted = h;
    if (ctx->poll_depth == 0) {
        aio_handler_free_deleted(ctx);
    }
}

void aio_set_fd_handler(AioContext *ctx, int fd, IOHandler *io_read,
                        IOHandler *io_write, void *opaque)
{
    AioHandler *h = g_hash_table_lookup(ctx->handlers, GINT_TO_POINTER(fd));
    struct epoll_event ev = { 0 };
    int op = EPOLL_CTL_MOD;

    if (io_read == NULL && io_write == NULL) {
        if (h != NULL) {
            aio_handler_remove(ctx, h);
        }
        return;
    }
    if (h == NULL) {
        h = g_new0(AioHandler, 1);
        h->fd = fd;
        g_hash_table_insert(ctx->handlers, GINT_TO_POINTER(fd), h);
        op = EPOLL_CTL_ADD;
    }
    h->io_read = io_read;
    h->io_write = io_write;
    h->opaque = opaque;
    ev.events = (io_read ? EPOLLIN : 0) | (io_write ? EPOLLOUT : 0);
    ev.data.ptr = h;
    if (epoll_ctl(ctx->epfd, op, fd, &ev) != 0) {
        aio_panic("epoll_ctl", errno);
    }
}

/* Runs the callbacks of one epoll event; true if one ran. */
static bool aio_dispatch_event(struct epoll_event *ev)
{
    AioHandler *h = ev->data.ptr;
    bool progress = false;

    if (!h->deleted && h->io_read &&
        (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        h->io_read(h->opaque);
        progress = true;
    }
    /* The read callback may have removed or changed the handler. */
    if (!h->deleted && h->io_write &&
        (ev->events & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
        h->io_write(h->opaque);
        progress = true;
    }
    return progress;
}

/* ------------------------------------------------------------------ */
/* notification */

void aio_notify(AioContext *ctx)
{
    uint64_t one = 1;

    /*
     * "kicked" makes the next blocking aio_poll return at once even if the
     * loop is not asleep yet: a caller waiting on a plain flag (aio_run_in_
     * context, AIO_WAIT_WHILE) re-checks it then.  The fence pairs with the
     * one in aio_poll: either the loop sees "kicked", or we see notify_me
     * and wake it.
     */
    __atomic_store_n(&ctx->kicked, 1, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&ctx->notify_me, __ATOMIC_RELAXED)) {
        return;
    }
    if (__atomic_exchange_n(&ctx->notified, 1, __ATOMIC_ACQ_REL)) {
        return;
    }
    if (write(ctx->event_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        aio_panic("eventfd write", errno);
    }
}

static void aio_event_read(void *opaque)
{
    AioContext *ctx = opaque;
    uint64_t val;

    /* Read first, then clear: clearing first lets a notifier write
     * between the two, its count is then consumed by the read and
     * "notified" stays set with an empty eventfd, so every later
     * aio_notify() skips the write and the loop sleeps forever.  A notify
     * that sees the flag still set here is harmless: the loop is awake
     * and re-checks for work before it sleeps again. */
    if (read(ctx->event_fd, &val, sizeof(val)) < 0 && errno != EAGAIN) {
        aio_panic("eventfd read", errno);
    }
    __atomic_store_n(&ctx->notified, 0, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------------ */
/* bottom halves */

QEMUBH *aio_bh_new(AioContext *ctx, BHFunc *cb, void *opaque)
{
    QEMUBH *bh = g_new0(QEMUBH, 1);

    bh->ctx = ctx;
    bh->cb = cb;
    bh->opaque = opaque;
    return bh;
}

static void aio_bh_push(QEMUBH *bh)
{
    AioContext *ctx = bh->ctx;
    QEMUBH *old = __atomic_load_n(&ctx->bh_pushed, __ATOMIC_RELAXED);

    do {
        bh->next = old;
    } while (!__atomic_compare_exchange_n(&ctx->bh_pushed, &old, bh, true,
                                          __ATOMIC_RELEASE, __ATOMIC_RELAXED));
}

static void bh_schedule_flags(QEMUBH *bh, int extra)
{
    AioContext *ctx = bh->ctx;
    int old = __atomic_fetch_or(&bh->flags,
                                BH_SCHEDULED | BH_QUEUED | extra,
                                __ATOMIC_ACQ_REL);

    if (!(old & BH_QUEUED)) {
        aio_bh_push(bh);
    }
    aio_notify(ctx);
}

void bh_schedule(QEMUBH *bh)
{
    bh_schedule_flags(bh, 0);
}

void aio_bh_schedule_oneshot(AioContext *ctx, BHFunc *cb, void *opaque)
{
    bh_schedule_flags(aio_bh_new(ctx, cb, opaque), BH_ONESHOT);
}

void bh_cancel(QEMUBH *bh)
{
    __atomic_fetch_and(&bh->flags, ~BH_SCHEDULED, __ATOMIC_ACQ_REL);
}

void bh_delete(QEMUBH *bh)
{
    int old;

    if (bh == NULL) {
        return;
    }
    old = __atomic_fetch_or(&bh->flags, BH_DELETED, __ATOMIC_ACQ_REL);
    __atomic_fetch_and(&bh->flags, ~BH_SCHEDULED, __ATOMIC_ACQ_REL);
    if (!(old & BH_QUEUED)) {
        g_free(bh);
    }
}

/* Moves newly pushed BHs, in scheduling order, to the run list. */
static void aio_bh_collect(AioContext *ctx)
{
    QEMUBH *list = __atomic_exchange_n(&ctx->bh_pushed, NULL,
                                       __ATOMIC_ACQUIRE);
    QEMUBH *rev = NULL, *first;

    if (list == NULL) {
        return;
    }
    first = list;
    while (list != NULL) {
        QEMUBH *next = list->next;

        list->next = rev;
        rev = list;
        list = next;
    }
    if (ctx->bh_run_tail != NULL) {
        ctx->bh_run_tail->next = rev;
    } else {
        ctx->bh_run_head = rev;
    }
    ctx->bh_run_tail = first;
}

/*
 * Runs the BHs scheduled before this call.  A BH that reschedules itself
 * runs again at the next call, so one call always terminates.
 */
static bool aio_bh_poll(AioContext *ctx)
{
    QEMUBH *bh;
    bool progress = false;

    aio_bh_collect(ctx);
    while ((bh = ctx->bh_run_head) != NULL) {
        int old;

        ctx->bh_run_head = bh->next;
        if (ctx->bh_run_head == NULL) {
            ctx->bh_run_tail = NULL;
        }
        old = __atomic_fetch_and(&bh->flags, ~(BH_QUEUED | BH_SCHEDULED),
                                 __ATOMIC_ACQ_REL);
        if (old & BH_DELETED) {
            g_free(bh);
            continue;
        }
        if (old & BH_SCHEDULED) {
            bh->cb(bh->opaque);
            progress = true;
        }
        if (old & BH_ONESHOT) {
            g_free(bh);
        }
    }
    return progress;
}

static bool aio_bh_pending(AioContext *ctx)
{
    return ctx->bh_run_head != NULL ||
           __atomic_load_n(&ctx->bh_pushed, __ATOMIC_RELAXED) != NULL;
}

/* ------------------------------------------------------------------ */
/* timers */

QEMUTimer *aio_timer_new(AioContext *ctx, TimerCb *cb, void *opaque)
{
    QEMUTimer *t = g_new0(QEMUTimer, 1);

    t->ctx = ctx;
    t->cb = cb;
    t->opaque = opaque;
    return t;
}

void timer_del(QEMUTimer *t)
{
    QEMUTimer **p;

    if (!t->pending) {
        return;
    }
    for (p = &t->ctx->timers; *p != t; p = &(*p)->next) {
        /* walk to t */
    }
    *p = t->next;
    t->next = NULL;
    t->pending = false;
}

void timer_mod_ns(QEMUTimer *t, int64_t expire_ns)
{
    QEMUTimer **p;

    timer_del(t);
    /* After timers with the same deadline: equal deadlines fire FIFO. */
    for (p = &t->ctx->timers; *p != NULL && (*p)->expire_ns <= expire_ns;
         p = &(*p)->next) {
        /* walk to the insertion point */
    }
    t->expire_ns = expire_ns;
    t->next = *p;
    *p = t;
    t->pending = true;
}

bool timer_pending(QEMUTimer *t)
{
    return t->pending;
}

void timer_free(QEMUTimer *t)
{
    if (t != NULL) {
        timer_del(t);
        g_free(t);
    }
}

/* Fires every timer due by now; true if one fired. */
static bool aio_timers_run(AioContext *ctx)
{
    QEMUTimer *t;
    int64_t now;
    bool progress = false;

    if (ctx->timers == NULL) {
        return false;
    }
    now = clock_ns();
    while ((t = ctx->timers) != NULL && t->expire_ns <= now) {
        ctx->timers = t->next;
        t->next = NULL;
        t->pending = false;
        t->cb(t->opaque);
        progress = true;
    }
    return progress;
}

static void aio_timerfd_read(void *opaque)
{
    AioContext *ctx = opaque;
    uint64_t val;

    if (read(ctx->timer_fd, &val, sizeof(val)) < 0 && errno != EAGAIN) {
        aio_panic("timerfd read", errno);
    }
    /* Fired: re-arm on the next blocking poll. */
    ctx->timer_fd_armed = INT64_MAX;
}

/* Points the fallback timerfd at deadline (absolute ns). */
static void aio_timerfd_arm(AioContext *ctx, int64_t deadline)
{
    struct itimerspec its = { 0 };

    if (deadline == ctx->timer_fd_armed) {
        return;
    }
    if (deadline != INT64_MAX) {
        /* 0 would disarm: an overdue deadline becomes "1 ns after boot". */
        int64_t d = deadline > 0 ? deadline : 1;

        its.it_value.tv_sec = d / 1000000000LL;
        its.it_value.tv_nsec = d % 1000000000LL;
    }
    if (timerfd_settime(ctx->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) != 0) {
        aio_panic("timerfd_settime", errno);
    }
    ctx->timer_fd_armed = deadline;
}

/* ------------------------------------------------------------------ */
/* the loop */

/* epoll wait with an absolute deadline (INT64_MAX: none; 0: don't wait). */
static int aio_epoll_wait(AioContext *ctx, struct epoll_event *events,
                          int64_t deadline)
{
    if (deadline == 0) {
        return epoll_wait(ctx->epfd, events, AIO_MAX_EVENTS, 0);
    }
    if (ctx->timer_fd < 0) {
        struct timespec ts, *tsp = NULL;

        if (deadline != INT64_MAX) {
            int64_t rel = deadline - clock_ns();

            rel = rel > 0 ? rel : 0;
            ts.tv_sec = rel / 1000000000LL;
            ts.tv_nsec = rel % 1000000000LL;
            tsp = &ts;
        }
        return epoll_pwait2(ctx->epfd, events, AIO_MAX_EVENTS, tsp, NULL);
    }
    aio_timerfd_arm(ctx, deadline);
    return epoll_wait(ctx->epfd, events, AIO_MAX_EVENTS, -1);
}

bool aio_poll(AioContext *ctx, bool blocking)
{
    struct epoll_event events[AIO_MAX_EVENTS];
    int64_t deadline = 0;
    bool progress = false;
    int n, i;

    ctx->poll_depth++;
    if (blocking) {
        /* Announce the sleep before checking for work (see aio_notify). */
        __atomic_store_n(&ctx->notify_me, 1, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (!aio_bh_pending(ctx) &&
            !__atomic_load_n(&ctx->kicked, __ATOMIC_RELAXED)) {
            deadline = ctx->timers ? ctx->timers->expire_ns : INT64_MAX;
        }
    }
    n = aio_epoll_wait(ctx, events, deadline);
    if (blocking) {
        __atomic_store_n(&ctx->notify_me, 0, __ATOMIC_RELAXED);
    }
    /* Whoever kicked us published their change before: the caller of
     * aio_poll sees it when it re-checks its condition. */
    if (__atomic_load_n(&ctx->kicked, __ATOMIC_RELAXED)) {
        __atomic_exchange_n(&ctx->kicked, 0, __ATOMIC_ACQ_REL);
    }
    if (n < 0 && errno != EINTR) {
        aio_panic("epoll_wait", errno);
    }
    for (i = 0; i < n; i++) {
        progress |= aio_dispatch_event(&events[i]);
    }
    progress |= aio_bh_poll(ctx);
    progress |= aio_timers_run(ctx);
    if (--ctx->poll_depth == 0) {
        aio_handler_free_deleted(ctx);
    }
    return progress;
}

/* ------------------------------------------------------------------ */
/* coroutines */

static void aio_co_schedule_bh(void *opaque)
{
    AioContext *ctx = opaque;
    CoSchedLink *list = __atomic_exchange_n(&ctx->co_pushed, NULL,
                                            __ATOMIC_ACQUIRE);
    CoSchedLink *rev = NULL;

    /* Pushes were LIFO; enter in scheduling order. */
    while (list != NULL) {
        CoSchedLink *next = list->next;

        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev != NULL) {
        Coroutine *co = coroutine_from_sched_link(rev);

        rev = rev->next;
        __atomic_store_n(&coroutine_sched_link(co)->scheduled, 0,
                         __ATOMIC_RELEASE);
        coroutine_enter_ctx(co, ctx);
    }
}

void aio_co_schedule(AioContext *ctx, Coroutine *co)
{
    CoSchedLink *link = coroutine_sched_link(co);
    CoSchedLink *old;

    if (__atomic_exchange_n(&link->scheduled, 1, __ATOMIC_ACQ_REL)) {
        coroutine_panic("aio_co_schedule",
                        "coroutine scheduled while already scheduled");
    }
    old = __atomic_load_n(&ctx->co_pushed, __ATOMIC_RELAXED);
    do {
        link->next = old;
    } while (!__atomic_compare_exchange_n(&ctx->co_pushed, &old, link, true,
                                          __ATOMIC_RELEASE, __ATOMIC_RELAXED));
    bh_schedule(ctx->co_bh);
}

void aio_co_enter(AioContext *ctx, Coroutine *co)
{
    if (ctx != current_aio_context()) {
        aio_co_schedule(ctx, co);
        return;
    }
    coroutine_enter_ctx(co, ctx);
}

void aio_co_wake(Coroutine *co)
{
    AioContext *ctx = coroutine_get_ctx(co);

    if (ctx == NULL) {
        ctx = current_aio_context();
    }
    if (ctx != current_aio_context() || coroutine_entered(co)) {
        aio_co_schedule(ctx, co);
        return;
    }
    coroutine_enter_ctx(co, ctx);
}

/* State shared by aio_run_in_context and its coroutine. */
typedef struct RunInContext {
    CoroutineEntry *entry;
    void *opaque;
    AioContext *waiter_ctx;
    Coroutine *waiter_co;     /* caller, when it is a coroutine */
    int done;                 /* (atomic) */
} RunInContext;

static void coroutine_fn aio_run_in_context_entry(void *opaque)
{
    RunInContext *r = opaque;
    AioContext *waiter_ctx = r->waiter_ctx;
    Coroutine *waiter_co = r->waiter_co;

    r->entry(r->opaque);
    if (waiter_co != NULL) {
        aio_co_wake(waiter_co);
        return;
    }
    /* After this store r may be gone: use the copies. */
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
    aio_notify(waiter_ctx);
}

void aio_run_in_context(AioContext *ctx, CoroutineEntry *entry, void *opaque)
{
    RunInContext r = {
        .entry = entry,
        .opaque = opaque,
        .waiter_ctx = current_aio_context(),
        .waiter_co = coroutine_self(),
    };
    Coroutine *co = coroutine_create(aio_run_in_context_entry, &r);

    if (r.waiter_co != NULL) {
        /* Woken by the entry's last action, whatever thread it runs in. */
        aio_co_schedule(ctx, co);
        coroutine_yield();
        return;
    }
    aio_co_enter(ctx, co);
    while (!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE)) {
        aio_poll(r.waiter_ctx, true);
    }
}

/* ------------------------------------------------------------------ */
/* contexts */

static AioHandler *aio_internal_handler(AioContext *ctx, int fd,
                                        IOHandler *cb)
{
    aio_set_fd_handler(ctx, fd, cb, NULL, ctx);
    return g_hash_table_lookup(ctx->handlers, GINT_TO_POINTER(fd));
}

/* Once per process: can this kernel (or valgrind) do epoll_pwait2? */
static bool aio_probe_epoll_pwait2(int epfd)
{
    int v = __atomic_load_n(&have_epoll_pwait2, __ATOMIC_RELAXED);

    if (v < 0) {
        struct epoll_event ev;
        struct timespec zero = { 0 };

        /* BLOCKD_AIO_TIMERFD=1 forces the fallback, so tests can cover it. */
        v = g_getenv("BLOCKD_AIO_TIMERFD") == NULL &&
            (epoll_pwait2(epfd, &ev, 1, &zero, NULL) >= 0 || errno != ENOSYS);
        __atomic_store_n(&have_epoll_pwait2, v, __ATOMIC_RELAXED);
    }
    return v;
}

AioContext *aio_context_new(Error **errp)
{
    AioContext *ctx = g_new0(AioContext, 1);

    ctx->refcnt = 1;
    ctx->timer_fd = -1;
    ctx->event_fd = -1;
    ctx->timer_fd_armed = INT64_MAX;
    ctx->handlers = g_hash_table_new(NULL, NULL);
    ctx->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ctx->epfd < 0) {
        error_setg_errno(errp, errno, "Cannot create epoll instance");
        goto fail;
    }
    ctx->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ctx->event_fd < 0) {
        error_setg_errno(errp, errno, "Cannot create eventfd");
        goto fail;
    }
    ctx->event_handler = aio_internal_handler(ctx, ctx->event_fd,
                                              aio_event_read);
    if (!aio_probe_epoll_pwait2(ctx->epfd)) {
        ctx->timer_fd = timerfd_create(CLOCK_MONOTONIC,
                                       TFD_NONBLOCK | TFD_CLOEXEC);
        if (ctx->timer_fd < 0) {
            error_setg_errno(errp, errno, "Cannot create timerfd");
            goto fail;
        }
        ctx->timer_handler = aio_internal_handler(ctx, ctx->timer_fd,
                                                  aio_timerfd_read);
    }
    ctx->co_bh = aio_bh_new(ctx, aio_co_schedule_bh, ctx);
    return ctx;

fail:
    aio_context_unref(ctx);
    return NULL;
}

void aio_context_ref(AioContext *ctx)
{
    __atomic_fetch_add(&ctx->refcnt, 1, __ATOMIC_RELAXED);
}

static void aio_context_free(AioContext *ctx)
{
    GHashTableIter iter;
    gpointer value;
    int i;

    for (i = 0; i < AIO_SLOT__MAX; i++) {
        if (ctx->slots[i] && ctx->slot_destroy[i]) {
            ctx->slot_destroy[i](ctx->slots[i]);
        }
    }
    /* BHs still queued belong to nobody any more. */
    aio_bh_collect(ctx);
    while (ctx->bh_run_head != NULL) {
        QEMUBH *bh = ctx->bh_run_head;
        int flags = __atomic_load_n(&bh->flags, __ATOMIC_ACQUIRE);

        ctx->bh_run_head = bh->next;
        if (flags & (BH_DELETED | BH_ONESHOT)) {
            g_free(bh);
        } else {
            __atomic_fetch_and(&bh->flags, ~(BH_QUEUED | BH_SCHEDULED),
                               __ATOMIC_ACQ_REL);
        }
    }
    ctx->bh_run_tail = NULL;
    bh_delete(ctx->co_bh);
    g_hash_table_iter_init(&iter, ctx->handlers);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        g_free(value);
    }
    g_hash_table_destroy(ctx->handlers);
    aio_handler_free_deleted(ctx);
    if (ctx->timer_fd >= 0) {
        close(ctx->timer_fd);
    }
    if (ctx->event_fd >= 0) {
        close(ctx->event_fd);
    }
    if (ctx->epfd >= 0) {
        close(ctx->epfd);
    }
    g_free(ctx);
}

void aio_context_unref(AioContext *ctx)
{
    if (ctx != NULL &&
        __atomic_sub_fetch(&ctx->refcnt, 1, __ATOMIC_ACQ_REL) == 0) {
        aio_context_free(ctx);
    }
}

static gpointer aio_main_context_init(gpointer unused)
{
    return aio_context_new(&error_abort);
}

AioContext *aio_main_context(void)
{
    static GOnce once = G_ONCE_INIT;

    return g_once(&once, aio_main_context_init, NULL);
}

AioContext *current_aio_context(void)
{
    return tls_current_ctx ? tls_current_ctx : aio_main_context();
}

void aio_context_set_current(AioContext *ctx)
{
    tls_current_ctx = ctx;
}

void *aio_context_get_slot(AioContext *ctx, AioSlot slot)
{
    return ctx->slots[slot];
}

void aio_context_set_slot(AioContext *ctx, AioSlot slot, void *data,
                          void (*destroy)(void *data))
{
    ctx->slots[slot] = data;
    ctx->slot_destroy[slot] = destroy;
}
