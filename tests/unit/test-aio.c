/*
 * Unit tests for the event loop (util/aio.h): timers, bottom halves, fd
 * handlers, cross-thread notification and coroutine scheduling, and
 * iothreads.  Each test uses its own context unless it is about the main
 * context, so tests cannot leak events into each other.
 */
#include <glib.h>
#include <pthread.h>
#include <unistd.h>

#include "util/aio.h"

#define MS (1000 * 1000LL)

static AioContext *new_ctx(void)
{
    return aio_context_new(&error_abort);
}

/* ---- timers ---- */

typedef struct TimerRec {
    int64_t deadline;
    int64_t fired_at;
    int index;
    GArray *order;
} TimerRec;

static void timer_rec_cb(void *opaque)
{
    TimerRec *r = opaque;

    r->fired_at = clock_ns();
    g_array_append_val(r->order, r->index);
}

/*
 * Arms timers with deadlines out of order, some only fractions of a
 * millisecond apart, and checks they fire in deadline order, never early.
 * Returns whether every one also fired within 5 ms of its deadline.
 */
static bool timers_order_run(AioContext *ctx)
{
    static const int64_t offs[] = {
        3 * MS, 1 * MS, 1 * MS + 300 * 1000, 2 * MS, 1 * MS + 600 * 1000,
    };
    static const int expected[] = { 1, 2, 4, 3, 0 };
    enum { N = G_N_ELEMENTS(offs) };
    GArray *order = g_array_new(FALSE, FALSE, sizeof(int));
    TimerRec rec[N];
    QEMUTimer *t[N];
    int64_t now = clock_ns();
    bool punctual = true;
    int i;

    for (i = 0; i < N; i++) {
        rec[i] = (TimerRec){ .deadline = now + offs[i], .index = i,
                             .order = order };
        t[i] = aio_timer_new(ctx, timer_rec_cb, &rec[i]);
        timer_mod_ns(t[i], rec[i].deadline);
        g_assert_true(timer_pending(t[i]));
    }
    while (order->len < N) {
        aio_poll(ctx, true);
    }
    for (i = 0; i < N; i++) {
        g_assert_cmpint(g_array_index(order, int, i), ==, expected[i]);
        g_assert_cmpint(rec[i].fired_at, >=, rec[i].deadline);
        punctual &= rec[i].fired_at < rec[i].deadline + 5 * MS;
        g_assert_false(timer_pending(t[i]));
        timer_free(t[i]);
    }
    g_array_free(order, TRUE);
    return punctual;
}

static void test_timers_order(void)
{
    AioContext *ctx = new_ctx();
    int tries = 0;

    /*
     * Lateness has a cause outside the loop when the machine is loaded
     * (the test thread is preempted), so one punctual run of three is
     * required; order and "never early" are checked on every run.
     */
    while (!timers_order_run(ctx)) {
        g_assert_cmpint(++tries, <, 3);
    }
    aio_context_unref(ctx);
}

/* The same, with the kernel's epoll_pwait2 hidden (timerfd fallback). */
static void test_timers_order_timerfd(void)
{
    if (g_test_subprocess()) {
        test_timers_order();
        return;
    }
    g_setenv("BLOCKD_AIO_TIMERFD", "1", TRUE);
    g_test_trap_subprocess("/aio/timer/order", 0, G_TEST_SUBPROCESS_DEFAULT);
    g_unsetenv("BLOCKD_AIO_TIMERFD");
    g_test_trap_assert_passed();
}

static void test_timer_del(void)
{
    AioContext *ctx = new_ctx();
    GArray *order = g_array_new(FALSE, FALSE, sizeof(int));
    TimerRec deleted = { .index = 0, .order = order };
    TimerRec kept = { .index = 1, .order = order };
    QEMUTimer *td = aio_timer_new(ctx, timer_rec_cb, &deleted);
    QEMUTimer *tk = aio_timer_new(ctx, timer_rec_cb, &kept);
    int64_t now = clock_ns();

    timer_mod_ns(td, now + 1 * MS);
    timer_mod_ns(tk, now + 2 * MS);
    timer_del(td);
    g_assert_false(timer_pending(td));
    while (order->len < 1) {
        aio_poll(ctx, true);
    }
    /* Only the kept one fired, although the deleted one was due first. */
    g_assert_cmpint(g_array_index(order, int, 0), ==, 1);
    g_assert_cmpint(deleted.fired_at, ==, 0);
    g_assert_false(aio_poll(ctx, false));
    timer_free(td);
    timer_free(tk);
    g_array_free(order, TRUE);
    aio_context_unref(ctx);
}

static void test_timer_rearm(void)
{
    AioContext *ctx = new_ctx();
    GArray *order = g_array_new(FALSE, FALSE, sizeof(int));
    TimerRec rec = { .index = 7, .order = order };
    QEMUTimer *t = aio_timer_new(ctx, timer_rec_cb, &rec);
    int64_t now = clock_ns();

    timer_mod_ns(t, now + 60 * 1000 * MS);
    /* Moving a pending timer earlier must take effect. */
    rec.deadline = now + 1 * MS;
    timer_mod_ns(t, rec.deadline);
    while (order->len < 1) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(order->len, ==, 1);
    g_assert_cmpint(rec.fired_at, >=, rec.deadline);
    timer_free(t);
    g_array_free(order, TRUE);
    aio_context_unref(ctx);
}

/* ---- bottom halves ---- */

static void count_cb(void *opaque)
{
    (*(int *)opaque)++;
}

static void test_bh_run(void)
{
    AioContext *ctx = new_ctx();
    int count = 0;
    QEMUBH *bh = aio_bh_new(ctx, count_cb, &count);

    g_assert_false(aio_poll(ctx, false));
    bh_schedule(bh);
    g_assert_cmpint(count, ==, 0);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(count, ==, 1);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(count, ==, 1);
    bh_delete(bh);
    aio_context_unref(ctx);
}

static void test_bh_idempotent(void)
{
    AioContext *ctx = new_ctx();
    int count = 0;
    QEMUBH *bh = aio_bh_new(ctx, count_cb, &count);

    bh_schedule(bh);
    bh_schedule(bh);
    bh_schedule(bh);
    aio_poll(ctx, false);
    aio_poll(ctx, false);
    g_assert_cmpint(count, ==, 1);
    bh_delete(bh);
    aio_context_unref(ctx);
}

static void test_bh_cancel(void)
{
    AioContext *ctx = new_ctx();
    int count = 0;
    QEMUBH *bh = aio_bh_new(ctx, count_cb, &count);

    bh_schedule(bh);
    bh_cancel(bh);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(count, ==, 0);
    /* Still usable after a cancel. */
    bh_schedule(bh);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(count, ==, 1);
    bh_delete(bh);
    aio_context_unref(ctx);
}

static void test_bh_delete_scheduled(void)
{
    AioContext *ctx = new_ctx();
    int count = 0;
    QEMUBH *bh = aio_bh_new(ctx, count_cb, &count);

    bh_schedule(bh);
    bh_delete(bh);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(count, ==, 0);
    aio_context_unref(ctx);
}

static void test_bh_oneshot(void)
{
    AioContext *ctx = new_ctx();
    int count = 0;

    aio_bh_schedule_oneshot(ctx, count_cb, &count);
    aio_bh_schedule_oneshot(ctx, count_cb, &count);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(count, ==, 2);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(count, ==, 2);
    aio_context_unref(ctx);
}

typedef struct OrderBH {
    GString *log;
    char name;
} OrderBH;

static void order_bh_cb(void *opaque)
{
    OrderBH *o = opaque;

    g_string_append_c(o->log, o->name);
}

static void test_bh_order(void)
{
    AioContext *ctx = new_ctx();
    GString *log = g_string_new(NULL);
    OrderBH o[3];
    int i;

    for (i = 0; i < 3; i++) {
        o[i] = (OrderBH){ .log = log, .name = 'a' + i };
        aio_bh_schedule_oneshot(ctx, order_bh_cb, &o[i]);
    }
    aio_poll(ctx, false);
    g_assert_cmpstr(log->str, ==, "abc");
    g_string_free(log, TRUE);
    aio_context_unref(ctx);
}

typedef struct SelfBH {
    QEMUBH *bh;
    int count;
} SelfBH;

static void self_resched_cb(void *opaque)
{
    SelfBH *s = opaque;

    s->count++;
    bh_schedule(s->bh);
}

static void test_bh_reschedule_self(void)
{
    AioContext *ctx = new_ctx();
    SelfBH s = { 0 };

    s.bh = aio_bh_new(ctx, self_resched_cb, &s);
    bh_schedule(s.bh);
    /* One iteration runs it once, even though it schedules itself. */
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(s.count, ==, 1);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(s.count, ==, 2);
    bh_delete(s.bh);
    aio_context_unref(ctx);
}

/* A BH that waits (nested aio_poll) for a BH scheduled after it. */
typedef struct NestedBH {
    AioContext *ctx;
    int later_ran;
} NestedBH;

static void nested_waiter_cb(void *opaque)
{
    NestedBH *n = opaque;

    AIO_WAIT_WHILE(n->ctx, !n->later_ran);
}

static void test_bh_nested_poll(void)
{
    AioContext *ctx = new_ctx();
    NestedBH n = { .ctx = ctx };

    aio_bh_schedule_oneshot(ctx, nested_waiter_cb, &n);
    aio_bh_schedule_oneshot(ctx, count_cb, &n.later_ran);
    aio_poll(ctx, false);
    g_assert_cmpint(n.later_ran, ==, 1);
    aio_context_unref(ctx);
}

/* ---- fd handlers ---- */

typedef struct PipeTest {
    int fds[2];
    int reads;
    int writes;
    char last;
} PipeTest;

static void pipe_read_cb(void *opaque)
{
    PipeTest *p = opaque;

    g_assert_cmpint(read(p->fds[0], &p->last, 1), ==, 1);
    p->reads++;
}

static void pipe_write_cb(void *opaque)
{
    PipeTest *p = opaque;

    p->writes++;
}

static void test_fd_read(void)
{
    AioContext *ctx = new_ctx();
    PipeTest p = { 0 };

    g_assert_cmpint(pipe(p.fds), ==, 0);
    aio_set_fd_handler(ctx, p.fds[0], pipe_read_cb, NULL, &p);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(write(p.fds[1], "x", 1), ==, 1);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(p.reads, ==, 1);
    g_assert_cmpint(p.last, ==, 'x');
    /* Level-triggered: two bytes, two callbacks (one byte per read). */
    g_assert_cmpint(write(p.fds[1], "yz", 2), ==, 2);
    aio_poll(ctx, true);
    aio_poll(ctx, true);
    g_assert_cmpint(p.reads, ==, 3);
    g_assert_cmpint(p.last, ==, 'z');
    aio_set_fd_handler(ctx, p.fds[0], NULL, NULL, NULL);
    close(p.fds[0]);
    close(p.fds[1]);
    aio_context_unref(ctx);
}

static void test_fd_remove(void)
{
    AioContext *ctx = new_ctx();
    PipeTest p = { 0 };

    g_assert_cmpint(pipe(p.fds), ==, 0);
    aio_set_fd_handler(ctx, p.fds[0], pipe_read_cb, NULL, &p);
    aio_set_fd_handler(ctx, p.fds[0], NULL, NULL, NULL);
    g_assert_cmpint(write(p.fds[1], "x", 1), ==, 1);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(p.reads, ==, 0);
    close(p.fds[0]);
    close(p.fds[1]);
    aio_context_unref(ctx);
}

static void test_fd_write(void)
{
    AioContext *ctx = new_ctx();
    PipeTest p = { 0 };

    g_assert_cmpint(pipe(p.fds), ==, 0);
    aio_set_fd_handler(ctx, p.fds[1], NULL, pipe_write_cb, &p);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(p.writes, ==, 1);
    /* Replacing the handlers switches the watched events. */
    aio_set_fd_handler(ctx, p.fds[1], pipe_read_cb, NULL, &p);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(p.writes, ==, 1);
    aio_set_fd_handler(ctx, p.fds[1], NULL, NULL, NULL);
    close(p.fds[0]);
    close(p.fds[1]);
    aio_context_unref(ctx);
}

/* Removing another fd's handler from a callback in the same iteration. */
typedef struct RemoveOther {
    AioContext *ctx;
    PipeTest a, b;
} RemoveOther;

static void remove_other_cb(void *opaque)
{
    RemoveOther *r = opaque;
    char c;

    g_assert_cmpint(read(r->a.fds[0], &c, 1), ==, 1);
    r->a.reads++;
    aio_set_fd_handler(r->ctx, r->b.fds[0], NULL, NULL, NULL);
}

static void remove_other_b_cb(void *opaque)
{
    RemoveOther *r = opaque;

    r->b.reads++;
}

static void test_fd_remove_in_callback(void)
{
    AioContext *ctx = new_ctx();
    RemoveOther r = { .ctx = ctx };

    g_assert_cmpint(pipe(r.a.fds), ==, 0);
    g_assert_cmpint(pipe(r.b.fds), ==, 0);
    aio_set_fd_handler(ctx, r.a.fds[0], remove_other_cb, NULL, &r);
    aio_set_fd_handler(ctx, r.b.fds[0], remove_other_b_cb, NULL, &r);
    g_assert_cmpint(write(r.b.fds[1], "x", 1), ==, 1);
    g_assert_cmpint(write(r.a.fds[1], "x", 1), ==, 1);
    /* Whichever order epoll reports them, b runs at most before a. */
    aio_poll(ctx, false);
    aio_poll(ctx, false);
    g_assert_cmpint(r.a.reads, ==, 1);
    g_assert_cmpint(r.b.reads, <=, 1);
    aio_set_fd_handler(ctx, r.a.fds[0], NULL, NULL, NULL);
    close(r.a.fds[0]);
    close(r.a.fds[1]);
    close(r.b.fds[0]);
    close(r.b.fds[1]);
    aio_context_unref(ctx);
}

/* ---- cross-thread ---- */

/* Fails the test instead of hanging if a wake-up is lost. */
static void watchdog_cb(void *opaque)
{
    *(bool *)opaque = true;
}

typedef struct Notifier {
    AioContext *ctx;
    int flag;                   /* atomic */
    Coroutine *co;
} Notifier;

static void *notify_thread(void *opaque)
{
    Notifier *n = opaque;

    /* Give the main thread time to fall asleep in aio_poll. */
    g_usleep(20 * 1000);
    __atomic_store_n(&n->flag, 1, __ATOMIC_RELEASE);
    aio_notify(n->ctx);
    return NULL;
}

static void test_notify_wakes_poll(void)
{
    AioContext *ctx = new_ctx();
    Notifier n = { .ctx = ctx };
    bool timed_out = false;
    QEMUTimer *wd = aio_timer_new(ctx, watchdog_cb, &timed_out);
    pthread_t th;

    timer_mod_ns(wd, clock_ns() + 10000 * MS);
    g_assert_cmpint(pthread_create(&th, NULL, notify_thread, &n), ==, 0);
    while (!__atomic_load_n(&n.flag, __ATOMIC_ACQUIRE) && !timed_out) {
        aio_poll(ctx, true);
    }
    pthread_join(th, NULL);
    g_assert_false(timed_out);
    timer_free(wd);
    aio_context_unref(ctx);
}

/* A notify that lands before the loop blocks is not lost either. */
static void test_notify_before_poll(void)
{
    AioContext *ctx = new_ctx();
    bool timed_out = false;
    QEMUTimer *wd = aio_timer_new(ctx, watchdog_cb, &timed_out);

    timer_mod_ns(wd, clock_ns() + 10000 * MS);
    aio_notify(ctx);
    aio_poll(ctx, true);
    g_assert_false(timed_out);
    timer_free(wd);
    aio_context_unref(ctx);
}

static void *bh_thread(void *opaque)
{
    QEMUBH *bh = opaque;

    g_usleep(20 * 1000);
    bh_schedule(bh);
    return NULL;
}

static void test_bh_from_thread(void)
{
    AioContext *ctx = new_ctx();
    int count = 0;
    QEMUBH *bh = aio_bh_new(ctx, count_cb, &count);
    bool timed_out = false;
    QEMUTimer *wd = aio_timer_new(ctx, watchdog_cb, &timed_out);
    pthread_t th;

    timer_mod_ns(wd, clock_ns() + 10000 * MS);
    g_assert_cmpint(pthread_create(&th, NULL, bh_thread, bh), ==, 0);
    while (count == 0 && !timed_out) {
        aio_poll(ctx, true);
    }
    pthread_join(th, NULL);
    g_assert_false(timed_out);
    g_assert_cmpint(count, ==, 1);
    timer_free(wd);
    bh_delete(bh);
    aio_context_unref(ctx);
}

typedef struct SchedTest {
    AioContext *ctx;
    Coroutine *co;
    int step;
    AioContext *seen_ctx;
} SchedTest;

static void coroutine_fn sched_entry(void *opaque)
{
    SchedTest *s = opaque;

    s->step = 1;
    coroutine_yield();
    s->seen_ctx = coroutine_get_ctx(coroutine_self());
    s->step = 2;
}

static void *sched_thread(void *opaque)
{
    SchedTest *s = opaque;

    g_usleep(20 * 1000);
    aio_co_schedule(s->ctx, s->co);
    return NULL;
}

static void test_co_schedule_from_thread(void)
{
    AioContext *ctx = new_ctx();
    SchedTest s = { .ctx = ctx };
    bool timed_out = false;
    QEMUTimer *wd = aio_timer_new(ctx, watchdog_cb, &timed_out);
    pthread_t th;

    timer_mod_ns(wd, clock_ns() + 10000 * MS);
    s.co = coroutine_create(sched_entry, &s);
    coroutine_enter(s.co);
    g_assert_cmpint(s.step, ==, 1);
    g_assert_cmpint(pthread_create(&th, NULL, sched_thread, &s), ==, 0);
    while (s.step < 2 && !timed_out) {
        aio_poll(ctx, true);
    }
    pthread_join(th, NULL);
    g_assert_false(timed_out);
    /* Entered by ctx's loop, so it belongs to ctx now. */
    g_assert_true(s.seen_ctx == ctx);
    timer_free(wd);
    aio_context_unref(ctx);
}

static void coroutine_fn wake_entry(void *opaque)
{
    SchedTest *s = opaque;

    s->step = 1;
    coroutine_yield();
    s->step = 2;
}

static void test_co_wake_same_context(void)
{
    SchedTest s = { 0 };

    s.co = coroutine_create(wake_entry, &s);
    coroutine_enter(s.co);
    /* Same context, not running: entered directly. */
    aio_co_wake(s.co);
    g_assert_cmpint(s.step, ==, 2);
}

/* ---- iothreads ---- */

typedef struct InThread {
    int thread_id;
    AioContext *current;
    AioContext *co_ctx;
} InThread;

static void coroutine_fn in_thread_entry(void *opaque)
{
    InThread *r = opaque;

    r->thread_id = (int)gettid();
    r->current = current_aio_context();
    /* Sleeping proves the coroutine runs on the iothread's loop. */
    co_sleep_ns(1 * MS);
    r->co_ctx = coroutine_get_ctx(coroutine_self());
}

static void test_iothread_run(void)
{
    Error *err = NULL;
    IOThread *t = iothread_create("io0", &err);
    InThread r = { 0 };

    g_assert_null(err);
    g_assert_nonnull(t);
    g_assert_cmpstr(iothread_get_id(t), ==, "io0");
    g_assert_true(iothread_find("io0") == t);
    g_assert_true(iothread_next(NULL) == t);
    g_assert_null(iothread_next(t));
    g_assert_cmpint(iothread_get_thread_id(t), >, 0);
    g_assert_cmpint(iothread_get_thread_id(t), !=, (int)gettid());

    aio_run_in_context(iothread_get_aio_context(t), in_thread_entry, &r);
    g_assert_cmpint(r.thread_id, ==, iothread_get_thread_id(t));
    g_assert_true(r.current == iothread_get_aio_context(t));
    g_assert_true(r.co_ctx == iothread_get_aio_context(t));

    iothread_destroy(t);
    g_assert_null(iothread_find("io0"));
    g_assert_null(iothread_next(NULL));
}

static void test_iothread_duplicate(void)
{
    Error *err = NULL;
    IOThread *t = iothread_create("dup", &error_abort);
    IOThread *t2 = iothread_create("dup", &err);

    g_assert_null(t2);
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Duplicate ID 'dup' for iothread");
    error_free(err);
    iothread_destroy(t);
}

static void test_iothread_order(void)
{
    IOThread *a = iothread_create("a", &error_abort);
    IOThread *b = iothread_create("b", &error_abort);

    g_assert_true(iothread_next(NULL) == a);
    g_assert_true(iothread_next(a) == b);
    g_assert_null(iothread_next(b));
    iothread_destroy(a);
    g_assert_true(iothread_next(NULL) == b);
    iothread_destroy(b);
}

/* ---- context slots ---- */

typedef struct SlotRec {
    int destroyed;
    int destroy_tid;
} SlotRec;

static void slot_destroy(void *data)
{
    SlotRec *r = data;

    r->destroyed++;
    r->destroy_tid = (int)gettid();
}

static void test_slot_destroy_on_free(void)
{
    AioContext *ctx = new_ctx();
    SlotRec r = { 0 };

    g_assert_null(aio_context_get_slot(ctx, AIO_SLOT_LINUX_AIO));
    aio_context_set_slot(ctx, AIO_SLOT_LINUX_AIO, &r, slot_destroy);
    g_assert_true(aio_context_get_slot(ctx, AIO_SLOT_LINUX_AIO) == &r);
    g_assert_null(aio_context_get_slot(ctx, AIO_SLOT_THREAD_POOL));
    aio_context_ref(ctx);
    aio_context_unref(ctx);
    g_assert_cmpint(r.destroyed, ==, 0);
    aio_context_unref(ctx);
    g_assert_cmpint(r.destroyed, ==, 1);
}

static void test_slot_cleared(void)
{
    AioContext *ctx = new_ctx();
    SlotRec r = { 0 };

    aio_context_set_slot(ctx, AIO_SLOT_THREAD_POOL, &r, slot_destroy);
    aio_context_set_slot(ctx, AIO_SLOT_THREAD_POOL, NULL, NULL);
    aio_context_unref(ctx);
    g_assert_cmpint(r.destroyed, ==, 0);
}

static void coroutine_fn set_slot_entry(void *opaque)
{
    aio_context_set_slot(current_aio_context(), AIO_SLOT_LINUX_AIO, opaque,
                         slot_destroy);
}

static void test_slot_destroy_in_iothread(void)
{
    IOThread *t = iothread_create("slot", &error_abort);
    int tid = iothread_get_thread_id(t);
    SlotRec r = { 0 };

    aio_run_in_context(iothread_get_aio_context(t), set_slot_entry, &r);
    iothread_destroy(t);
    g_assert_cmpint(r.destroyed, ==, 1);
    g_assert_cmpint(r.destroy_tid, ==, tid);
}

/* From a coroutine in the main context: it yields instead of polling. */
typedef struct CoRun {
    InThread r;
    AioContext *ctx;
    bool done;
} CoRun;

static void coroutine_fn co_run_caller(void *opaque)
{
    CoRun *c = opaque;

    aio_run_in_context(c->ctx, in_thread_entry, &c->r);
    c->done = true;
}

static void test_iothread_run_from_coroutine(void)
{
    IOThread *t = iothread_create("io1", &error_abort);
    CoRun c = { .ctx = iothread_get_aio_context(t) };

    coroutine_enter(coroutine_create(co_run_caller, &c));
    AIO_WAIT_WHILE(aio_main_context(), !c.done);
    g_assert_cmpint(c.r.thread_id, ==, iothread_get_thread_id(t));
    iothread_destroy(t);
}

/* A coroutine that hops between two threads, resuming in each. */
typedef struct Hopper {
    AioContext *ctx[2];
    int hops;
    int bad;
    bool done;
} Hopper;

static void coroutine_fn hopper_entry(void *opaque)
{
    Hopper *h = opaque;
    int i;

    for (i = 0; i < h->hops; i++) {
        AioContext *dst = h->ctx[i % 2];
        volatile int canary = i;

        aio_co_schedule(dst, coroutine_self());
        coroutine_yield();
        /* Resumed in dst's thread, with our stack intact. */
        if (current_aio_context() != dst ||
            coroutine_get_ctx(coroutine_self()) != dst || canary != i) {
            h->bad++;
        }
    }
    __atomic_store_n(&h->done, true, __ATOMIC_RELEASE);
    aio_notify(aio_main_context());
}

static void test_co_hop_threads(void)
{
    IOThread *t = iothread_create("hop", &error_abort);
    Hopper h = {
        .ctx = { iothread_get_aio_context(t), aio_main_context() },
        .hops = 2000,
    };

    coroutine_enter(coroutine_create(hopper_entry, &h));
    while (!__atomic_load_n(&h.done, __ATOMIC_ACQUIRE)) {
        aio_poll(aio_main_context(), true);
    }
    g_assert_cmpint(h.bad, ==, 0);
    iothread_destroy(t);
}

static void test_run_in_own_context(void)
{
    InThread r = { 0 };

    aio_run_in_context(aio_main_context(), in_thread_entry, &r);
    g_assert_cmpint(r.thread_id, ==, (int)gettid());
    g_assert_true(r.co_ctx == aio_main_context());
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/aio/timer/order", test_timers_order);
    g_test_add_func("/aio/timer/order-timerfd", test_timers_order_timerfd);
    g_test_add_func("/aio/timer/del", test_timer_del);
    g_test_add_func("/aio/timer/rearm", test_timer_rearm);
    g_test_add_func("/aio/bh/run", test_bh_run);
    g_test_add_func("/aio/bh/idempotent", test_bh_idempotent);
    g_test_add_func("/aio/bh/cancel", test_bh_cancel);
    g_test_add_func("/aio/bh/delete-scheduled", test_bh_delete_scheduled);
    g_test_add_func("/aio/bh/oneshot", test_bh_oneshot);
    g_test_add_func("/aio/bh/order", test_bh_order);
    g_test_add_func("/aio/bh/reschedule-self", test_bh_reschedule_self);
    g_test_add_func("/aio/bh/nested-poll", test_bh_nested_poll);
    g_test_add_func("/aio/fd/read", test_fd_read);
    g_test_add_func("/aio/fd/remove", test_fd_remove);
    g_test_add_func("/aio/fd/write", test_fd_write);
    g_test_add_func("/aio/fd/remove-in-callback", test_fd_remove_in_callback);
    g_test_add_func("/aio/thread/notify-wakes-poll", test_notify_wakes_poll);
    g_test_add_func("/aio/thread/notify-before-poll",
                    test_notify_before_poll);
    g_test_add_func("/aio/thread/bh-schedule", test_bh_from_thread);
    g_test_add_func("/aio/thread/co-schedule", test_co_schedule_from_thread);
    g_test_add_func("/aio/co-wake/same-context", test_co_wake_same_context);
    g_test_add_func("/aio/iothread/run", test_iothread_run);
    g_test_add_func("/aio/iothread/duplicate-id", test_iothread_duplicate);
    g_test_add_func("/aio/iothread/order", test_iothread_order);
    g_test_add_func("/aio/iothread/run-from-coroutine",
                    test_iothread_run_from_coroutine);
    g_test_add_func("/aio/iothread/co-hop-threads", test_co_hop_threads);
    g_test_add_func("/aio/slot/destroy-on-free", test_slot_destroy_on_free);
    g_test_add_func("/aio/slot/cleared", test_slot_cleared);
    g_test_add_func("/aio/slot/destroy-in-iothread",
                    test_slot_destroy_in_iothread);
    g_test_add_func("/aio/run-in-own-context", test_run_in_own_context);
    return g_test_run();
}
