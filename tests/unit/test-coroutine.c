/*
 * Unit tests for coroutines (util/coroutine.h): switching, nesting, the
 * stack pool and guard page, misuse aborts, and the coroutine locks
 * (CoQueue, CoMutex, CoRwlock, co_sleep_ns).
 */
#include <glib.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

#include "util/aio.h"
#include "util/coroutine.h"

/* Runs the main context until *flag becomes true. */
static void wait_for(bool *flag)
{
    AIO_WAIT_WHILE(aio_main_context(), !*flag);
}

/* ---- enter / yield / terminate ---- */

static void coroutine_fn set_flag_entry(void *opaque)
{
    *(bool *)opaque = true;
}

static void test_enter_terminate(void)
{
    bool done = false;
    Coroutine *co = coroutine_create(set_flag_entry, &done);

    coroutine_enter(co);
    g_assert_true(done);
}

static void coroutine_fn yield_twice_entry(void *opaque)
{
    int *step = opaque;

    *step = 1;
    coroutine_yield();
    *step = 2;
    coroutine_yield();
    *step = 3;
}

static void test_yield(void)
{
    int step = 0;
    Coroutine *co = coroutine_create(yield_twice_entry, &step);

    coroutine_enter(co);
    g_assert_cmpint(step, ==, 1);
    g_assert_false(coroutine_entered(co));
    coroutine_enter(co);
    g_assert_cmpint(step, ==, 2);
    coroutine_enter(co);
    g_assert_cmpint(step, ==, 3);
}

/* The caller and the coroutine exchange values through a shared slot. */
typedef struct Exchange {
    int in;
    int out;
} Exchange;

static void coroutine_fn doubler_entry(void *opaque)
{
    Exchange *x = opaque;

    for (;;) {
        if (x->in < 0) {
            return;
        }
        x->out = x->in * 2;
        coroutine_yield();
    }
}

static void test_values_across_yields(void)
{
    Exchange x = { 0 };
    Coroutine *co = coroutine_create(doubler_entry, &x);
    int i;

    for (i = 1; i <= 5; i++) {
        x.in = i;
        coroutine_enter(co);
        g_assert_cmpint(x.out, ==, 2 * i);
    }
    x.in = -1;
    coroutine_enter(co);
}

/* A coroutine's locals survive a yield (they live on its own stack). */
static void coroutine_fn locals_entry(void *opaque)
{
    volatile int local[64];
    int *sum = opaque;
    int i;

    for (i = 0; i < 64; i++) {
        local[i] = i;
    }
    coroutine_yield();
    for (i = 0; i < 64; i++) {
        *sum += local[i];
    }
}

static void test_locals_survive(void)
{
    int sum = 0;
    Coroutine *a = coroutine_create(locals_entry, &sum);
    Coroutine *b = coroutine_create(locals_entry, &sum);

    coroutine_enter(a);
    coroutine_enter(b);
    coroutine_enter(a);
    coroutine_enter(b);
    g_assert_cmpint(sum, ==, 2 * (63 * 64 / 2));
}

/* ---- nesting ---- */

typedef struct Nest {
    GString *log;
    Coroutine *inner;
} Nest;

static void coroutine_fn inner_entry(void *opaque)
{
    Nest *n = opaque;

    g_string_append(n->log, "i1 ");
    coroutine_yield();
    g_string_append(n->log, "i2 ");
}

static void coroutine_fn outer_entry(void *opaque)
{
    Nest *n = opaque;
    Coroutine *self = coroutine_self();

    g_string_append(n->log, "o1 ");
    n->inner = coroutine_create(inner_entry, n);
    coroutine_enter(n->inner);
    /* The inner yield came back here, not to the test. */
    g_assert_true(coroutine_self() == self);
    g_assert_true(coroutine_entered(self));
    g_string_append(n->log, "o2 ");
    coroutine_yield();
    g_string_append(n->log, "o3 ");
}

static void test_nesting(void)
{
    Nest n = { .log = g_string_new(NULL) };
    Coroutine *outer = coroutine_create(outer_entry, &n);

    coroutine_enter(outer);
    g_assert_cmpstr(n.log->str, ==, "o1 i1 o2 ");
    coroutine_enter(n.inner);
    g_assert_cmpstr(n.log->str, ==, "o1 i1 o2 i2 ");
    coroutine_enter(outer);
    g_assert_cmpstr(n.log->str, ==, "o1 i1 o2 i2 o3 ");
    g_string_free(n.log, TRUE);
}

/* ---- self / in_coroutine ---- */

static void coroutine_fn self_entry(void *opaque)
{
    Coroutine **seen = opaque;

    g_assert_true(in_coroutine());
    *seen = coroutine_self();
}

static void test_self(void)
{
    Coroutine *seen = NULL;
    Coroutine *co = coroutine_create(self_entry, &seen);

    g_assert_false(in_coroutine());
    g_assert_null(coroutine_self());
    coroutine_enter(co);
    g_assert_true(seen == co);
    g_assert_false(in_coroutine());
}

static void coroutine_fn ctx_entry(void *opaque)
{
    *(AioContext **)opaque = coroutine_get_ctx(coroutine_self());
}

static void test_get_ctx(void)
{
    AioContext *seen = NULL;

    coroutine_enter(coroutine_create(ctx_entry, &seen));
    g_assert_true(seen == current_aio_context());
}

/* ---- pool ---- */

static void coroutine_fn nop_entry(void *opaque)
{
}

static void test_pool_reuse(void)
{
    uint64_t before;
    int i;

    /* Warm the pool so that at least one stack is available. */
    coroutine_enter(coroutine_create(nop_entry, NULL));
    before = coroutine_stacks_allocated();
    for (i = 0; i < 1000; i++) {
        coroutine_enter(coroutine_create(nop_entry, NULL));
    }
    g_assert_cmpuint(coroutine_stacks_allocated(), ==, before);
    g_assert_cmpuint(coroutine_pool_size(), >=, 1);
}

static void test_pool_bounded(void)
{
    enum { N = 200 };
    Coroutine *cos[N];
    int step[N];
    int i;

    /* Many live at once need many stacks... */
    for (i = 0; i < N; i++) {
        step[i] = 0;
        cos[i] = coroutine_create(yield_twice_entry, &step[i]);
        coroutine_enter(cos[i]);
    }
    for (i = 0; i < N; i++) {
        coroutine_enter(cos[i]);
        coroutine_enter(cos[i]);
        g_assert_cmpint(step[i], ==, 3);
    }
    /* ...but the pool keeps only a bounded number of them afterwards. */
    g_assert_cmpuint(coroutine_pool_size(), <, N);
    g_assert_cmpuint(coroutine_pool_size(), >, 0);
}

/* ---- misuse (subprocesses) ---- */

/* Top of the overflowing coroutine's stack, for the SIGSEGV handler. */
static uintptr_t overflow_top;

static void guard_segv_handler(int sig, siginfo_t *si, void *uc)
{
    static const char msg[] = "fault in guard page\n";
    uintptr_t addr = (uintptr_t)si->si_addr;
    uintptr_t dist = overflow_top - addr;

    /*
     * The first fault must hit the page right below the usable stack.
     * overflow_top is a few hundred bytes under the stack's top, and the
     * walk moves in 256-byte steps; without a guard page the fault would
     * come at least a page further down.
     */
    if (addr < overflow_top && dist > COROUTINE_STACK_SIZE - 65536 &&
        dist <= COROUTINE_STACK_SIZE + 2048) {
        if (write(2, msg, sizeof(msg) - 1) < 0) {
            _exit(2);
        }
    }
    _exit(1);
}

/* Uninstrumented: we want the page fault, not an ASan report. */
static void __attribute__((no_sanitize_address, noinline))
overflow_walk(volatile char *p)
{
    for (;;) {
        p -= 256;
        *p = 1;
    }
}

static void coroutine_fn overflow_entry(void *opaque)
{
    volatile char here = 0;

    overflow_top = (uintptr_t)&here;
    overflow_walk(&here);
}

static void test_guard_page(void)
{
    if (g_test_subprocess()) {
        struct sigaction sa = { 0 };

        sa.sa_sigaction = guard_segv_handler;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, NULL);
        coroutine_enter(coroutine_create(overflow_entry, NULL));
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*fault in guard page*");
}

static void coroutine_fn reenter_entry(void *opaque)
{
    coroutine_enter(coroutine_self());
}

static void test_double_entry_running(void)
{
    if (g_test_subprocess()) {
        coroutine_enter(coroutine_create(reenter_entry, NULL));
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*re-entered while it is running*");
}

static void coroutine_fn yield_once_entry(void *opaque)
{
    coroutine_yield();
}

static void test_double_entry_scheduled(void)
{
    if (g_test_subprocess()) {
        Coroutine *co = coroutine_create(yield_once_entry, NULL);

        coroutine_enter(co);
        aio_co_schedule(aio_main_context(), co);
        coroutine_enter(co);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*entered while it is scheduled*");
}

static void test_double_schedule(void)
{
    if (g_test_subprocess()) {
        Coroutine *co = coroutine_create(yield_once_entry, NULL);

        coroutine_enter(co);
        aio_co_schedule(aio_main_context(), co);
        aio_co_schedule(aio_main_context(), co);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*already scheduled*");
}

static void test_yield_outside(void)
{
    if (g_test_subprocess()) {
        coroutine_yield();
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*outside coroutine context*");
}

static void test_enter_if_inactive(void)
{
    int step = 0;
    Coroutine *co = coroutine_create(yield_twice_entry, &step);

    coroutine_enter(co);
    aio_co_schedule(aio_main_context(), co);
    /* Scheduled: must not be entered a second time. */
    coroutine_enter_if_inactive(co);
    g_assert_cmpint(step, ==, 1);
    while (step < 2) {
        aio_poll(aio_main_context(), true);
    }
    coroutine_enter_if_inactive(co);
    g_assert_cmpint(step, ==, 3);
}

/* ---- CoMutex ---- */

typedef struct MutexTest {
    CoMutex mutex;
    GString *order;
    int inside;
    int done;
} MutexTest;

typedef struct MutexUser {
    MutexTest *t;
    char name;
} MutexUser;

static void coroutine_fn mutex_user_entry(void *opaque)
{
    MutexUser *u = opaque;
    MutexTest *t = u->t;

    co_mutex_lock(&t->mutex);
    g_assert_cmpint(t->inside, ==, 0);
    t->inside++;
    g_string_append_c(t->order, u->name);
    /* Hold the lock across a yield so the others queue up. */
    aio_co_schedule(aio_main_context(), coroutine_self());
    coroutine_yield();
    t->inside--;
    co_mutex_unlock(&t->mutex);
    t->done++;
}

static void test_mutex_fifo(void)
{
    MutexTest t = { .order = g_string_new(NULL) };
    MutexUser users[5];
    int i;

    co_mutex_init(&t.mutex);
    for (i = 0; i < 5; i++) {
        users[i] = (MutexUser){ .t = &t, .name = 'a' + i };
        coroutine_enter(coroutine_create(mutex_user_entry, &users[i]));
    }
    /* Only the first got in; the others wait in arrival order. */
    g_assert_cmpstr(t.order->str, ==, "a");
    while (t.done < 5) {
        aio_poll(aio_main_context(), true);
    }
    g_assert_cmpstr(t.order->str, ==, "abcde");
    g_assert_false(t.mutex.locked);
    g_string_free(t.order, TRUE);
}

typedef struct Handoff {
    CoMutex mutex;
    GString *order;
} Handoff;

static void coroutine_fn handoff_waiter(void *opaque)
{
    Handoff *h = opaque;

    co_mutex_lock(&h->mutex);
    g_string_append(h->order, "W");
    co_mutex_unlock(&h->mutex);
}

static void coroutine_fn handoff_holder(void *opaque)
{
    Handoff *h = opaque;

    co_mutex_lock(&h->mutex);
    coroutine_yield();
    co_mutex_unlock(&h->mutex);
    /* Trying again right away must queue behind the waiter. */
    co_mutex_lock(&h->mutex);
    g_string_append(h->order, "H");
    co_mutex_unlock(&h->mutex);
}

static void test_mutex_handoff(void)
{
    Handoff h = { .order = g_string_new(NULL) };
    Coroutine *holder = coroutine_create(handoff_holder, &h);

    co_mutex_init(&h.mutex);
    coroutine_enter(holder);
    coroutine_enter(coroutine_create(handoff_waiter, &h));
    coroutine_enter(holder);
    while (h.order->len < 2) {
        aio_poll(aio_main_context(), true);
    }
    g_assert_cmpstr(h.order->str, ==, "WH");
    g_string_free(h.order, TRUE);
}

/* ---- CoQueue ---- */

typedef struct QueueTest {
    CoQueue queue;
    GString *order;
} QueueTest;

typedef struct QueueUser {
    QueueTest *t;
    char name;
} QueueUser;

static void coroutine_fn queue_waiter_entry(void *opaque)
{
    QueueUser *u = opaque;

    co_queue_wait(&u->t->queue, NULL);
    g_string_append_c(u->t->order, u->name);
}

static void test_queue_next(void)
{
    QueueTest t = { .order = g_string_new(NULL) };
    QueueUser users[3];
    int i;

    co_queue_init(&t.queue);
    g_assert_true(co_queue_empty(&t.queue));
    g_assert_false(co_queue_next(&t.queue));
    for (i = 0; i < 3; i++) {
        users[i] = (QueueUser){ .t = &t, .name = 'a' + i };
        coroutine_enter(coroutine_create(queue_waiter_entry, &users[i]));
    }
    g_assert_false(co_queue_empty(&t.queue));
    g_assert_cmpstr(t.order->str, ==, "");
    g_assert_true(co_queue_next(&t.queue));
    g_assert_cmpstr(t.order->str, ==, "a");
    g_assert_true(co_queue_next(&t.queue));
    g_assert_true(co_queue_next(&t.queue));
    g_assert_cmpstr(t.order->str, ==, "abc");
    g_assert_true(co_queue_empty(&t.queue));
    g_string_free(t.order, TRUE);
}

static void test_queue_restart_all(void)
{
    QueueTest t = { .order = g_string_new(NULL) };
    QueueUser users[4];
    int i;

    co_queue_init(&t.queue);
    for (i = 0; i < 4; i++) {
        users[i] = (QueueUser){ .t = &t, .name = 'a' + i };
        coroutine_enter(coroutine_create(queue_waiter_entry, &users[i]));
    }
    co_queue_restart_all(&t.queue);
    g_assert_cmpstr(t.order->str, ==, "abcd");
    g_assert_true(co_queue_empty(&t.queue));
    g_string_free(t.order, TRUE);
}

typedef struct QueueMutex {
    CoQueue queue;
    CoMutex mutex;
    bool ready;
    bool holds_after_wait;
} QueueMutex;

static void coroutine_fn queue_mutex_waiter(void *opaque)
{
    QueueMutex *q = opaque;

    co_mutex_lock(&q->mutex);
    while (!q->ready) {
        co_queue_wait(&q->queue, &q->mutex);
    }
    q->holds_after_wait = q->mutex.locked &&
                          q->mutex.holder == coroutine_self();
    co_mutex_unlock(&q->mutex);
}

static void coroutine_fn queue_mutex_signaller(void *opaque)
{
    QueueMutex *q = opaque;

    /* Possible only because the waiter released the mutex to wait. */
    co_mutex_lock(&q->mutex);
    q->ready = true;
    co_queue_next(&q->queue);
    co_mutex_unlock(&q->mutex);
}

static void test_queue_wait_mutex(void)
{
    QueueMutex q = { 0 };

    co_queue_init(&q.queue);
    co_mutex_init(&q.mutex);
    coroutine_enter(coroutine_create(queue_mutex_waiter, &q));
    g_assert_false(q.mutex.locked);
    coroutine_enter(coroutine_create(queue_mutex_signaller, &q));
    while (!q.holds_after_wait) {
        aio_poll(aio_main_context(), true);
    }
    g_assert_false(q.mutex.locked);
}

/* ---- CoRwlock ---- */

typedef struct RwTest {
    CoRwlock lock;
    GString *log;
    int readers_in;
    int writers_in;
    int max_readers_in;
} RwTest;

typedef struct RwUser {
    RwTest *t;
    char name;
    bool writer;
    Coroutine *co;
    bool done;
} RwUser;

/* Takes the lock, logs, then waits to be entered again before unlocking. */
static void coroutine_fn rw_user_entry(void *opaque)
{
    RwUser *u = opaque;
    RwTest *t = u->t;

    if (u->writer) {
        co_rwlock_wrlock(&t->lock);
        g_assert_cmpint(t->readers_in + t->writers_in, ==, 0);
        t->writers_in++;
    } else {
        co_rwlock_rdlock(&t->lock);
        g_assert_cmpint(t->writers_in, ==, 0);
        t->readers_in++;
        t->max_readers_in = MAX(t->max_readers_in, t->readers_in);
    }
    g_string_append_c(t->log, u->name);
    coroutine_yield();
    if (u->writer) {
        t->writers_in--;
    } else {
        t->readers_in--;
    }
    co_rwlock_unlock(&t->lock);
    u->done = true;
}

static void rw_start(RwUser *u, RwTest *t, char name, bool writer)
{
    *u = (RwUser){ .t = t, .name = name, .writer = writer };
    u->co = coroutine_create(rw_user_entry, u);
    coroutine_enter(u->co);
}

static void rw_release(RwUser *u)
{
    coroutine_enter(u->co);
    g_assert_true(u->done);
}

static void test_rwlock_readers_share(void)
{
    RwTest t = { .log = g_string_new(NULL) };
    RwUser r[3];
    int i;

    co_rwlock_init(&t.lock);
    for (i = 0; i < 3; i++) {
        rw_start(&r[i], &t, 'a' + i, false);
    }
    g_assert_cmpstr(t.log->str, ==, "abc");
    g_assert_cmpint(t.max_readers_in, ==, 3);
    for (i = 0; i < 3; i++) {
        rw_release(&r[i]);
    }
    g_string_free(t.log, TRUE);
}

static void test_rwlock_writer_excludes(void)
{
    RwTest t = { .log = g_string_new(NULL) };
    RwUser w, r, w2;

    co_rwlock_init(&t.lock);
    rw_start(&w, &t, 'W', true);
    rw_start(&r, &t, 'r', false);
    rw_start(&w2, &t, 'X', true);
    g_assert_cmpstr(t.log->str, ==, "W");
    /* Woken directly by the unlock (same context). */
    rw_release(&w);
    g_assert_cmpstr(t.log->str, ==, "Wr");
    rw_release(&r);
    g_assert_cmpstr(t.log->str, ==, "WrX");
    rw_release(&w2);
    g_string_free(t.log, TRUE);
}

static void test_rwlock_writer_blocks_later_readers(void)
{
    RwTest t = { .log = g_string_new(NULL) };
    RwUser r1, w, r2;

    co_rwlock_init(&t.lock);
    rw_start(&r1, &t, 'a', false);
    rw_start(&w, &t, 'W', true);
    /* A reader could share with r1, but the waiting writer is first. */
    rw_start(&r2, &t, 'b', false);
    g_assert_cmpstr(t.log->str, ==, "a");
    rw_release(&r1);
    g_assert_cmpstr(t.log->str, ==, "aW");
    rw_release(&w);
    g_assert_cmpstr(t.log->str, ==, "aWb");
    rw_release(&r2);
    g_string_free(t.log, TRUE);
}

/* ---- co_sleep_ns ---- */

typedef struct SleepTest {
    int64_t ns;
    int64_t slept;
    bool done;
    int *finished;      /* shared count of sleepers that woke up */
    int rank;           /* this one's position in wake-up order */
} SleepTest;

static void coroutine_fn sleep_entry(void *opaque)
{
    SleepTest *s = opaque;
    int64_t start = clock_ns();

    co_sleep_ns(s->ns);
    s->slept = clock_ns() - start;
    s->done = true;
    if (s->finished) {
        s->rank = ++*s->finished;
    }
}

static void test_sleep(void)
{
    SleepTest s = { .ns = 3 * 1000 * 1000 };

    coroutine_enter(coroutine_create(sleep_entry, &s));
    g_assert_false(s.done);
    wait_for(&s.done);
    g_assert_cmpint(s.slept, >=, s.ns);
}

static void test_sleep_order(void)
{
    int finished = 0;
    SleepTest a = { .ns = 4 * 1000 * 1000, .finished = &finished };
    SleepTest b = { .ns = 1 * 1000 * 1000, .finished = &finished };

    coroutine_enter(coroutine_create(sleep_entry, &a));
    coroutine_enter(coroutine_create(sleep_entry, &b));
    wait_for(&a.done);
    /* The shorter sleep wakes first, even if both are due by now. */
    g_assert_cmpint(b.rank, ==, 1);
    g_assert_cmpint(a.rank, ==, 2);
    g_assert_cmpint(a.slept, >=, a.ns);
    g_assert_cmpint(b.slept, >=, b.ns);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/coroutine/enter-terminate", test_enter_terminate);
    g_test_add_func("/coroutine/yield", test_yield);
    g_test_add_func("/coroutine/values-across-yields",
                    test_values_across_yields);
    g_test_add_func("/coroutine/locals-survive", test_locals_survive);
    g_test_add_func("/coroutine/nesting", test_nesting);
    g_test_add_func("/coroutine/self", test_self);
    g_test_add_func("/coroutine/get-ctx", test_get_ctx);
    g_test_add_func("/coroutine/pool/reuse", test_pool_reuse);
    g_test_add_func("/coroutine/pool/bounded", test_pool_bounded);
    g_test_add_func("/coroutine/guard-page", test_guard_page);
    g_test_add_func("/coroutine/abort/reenter-running",
                    test_double_entry_running);
    g_test_add_func("/coroutine/abort/enter-scheduled",
                    test_double_entry_scheduled);
    g_test_add_func("/coroutine/abort/schedule-twice", test_double_schedule);
    g_test_add_func("/coroutine/abort/yield-outside", test_yield_outside);
    g_test_add_func("/coroutine/enter-if-inactive", test_enter_if_inactive);
    g_test_add_func("/coroutine/mutex/fifo", test_mutex_fifo);
    g_test_add_func("/coroutine/mutex/handoff", test_mutex_handoff);
    g_test_add_func("/coroutine/queue/next", test_queue_next);
    g_test_add_func("/coroutine/queue/restart-all", test_queue_restart_all);
    g_test_add_func("/coroutine/queue/wait-mutex", test_queue_wait_mutex);
    g_test_add_func("/coroutine/rwlock/readers-share",
                    test_rwlock_readers_share);
    g_test_add_func("/coroutine/rwlock/writer-excludes",
                    test_rwlock_writer_excludes);
    g_test_add_func("/coroutine/rwlock/writer-blocks-later-readers",
                    test_rwlock_writer_blocks_later_readers);
    g_test_add_func("/coroutine/sleep/at-least", test_sleep);
    g_test_add_func("/coroutine/sleep/order", test_sleep_order);
    return g_test_run();
}
