/*
 * Unit tests for the thread pool (include/util/thread-pool.h): work runs in
 * worker threads, completions come back in the submitting context's
 * thread (main context and iothreads), the coroutine variant returns the
 * function's result, the worker count is capped and idle workers exit.
 */
#include <errno.h>

#include <glib.h>

#include "util/aio.h"
#include "util/thread-pool.h"

static GThread *main_thread;

/* Records where a piece of work and its completion ran. */
typedef struct Job {
    int value;
    GThread *worker;
    GThread *completed_in;
    int ret;
    bool done;
} Job;

static int job_func(void *arg)
{
    Job *job = arg;

    job->worker = g_thread_self();
    return job->value * 2;
}

static void job_cb(void *opaque, int ret)
{
    Job *job = opaque;

    job->completed_in = g_thread_self();
    job->ret = ret;
    job->done = true;
}

static void test_submit_completes_in_main(void)
{
    AioContext *ctx = aio_main_context();
    Job job = { .value = 21 };

    thread_pool_submit(ctx, job_func, &job, job_cb, &job);
    AIO_WAIT_WHILE(ctx, !job.done);
    g_assert_cmpint(job.ret, ==, 42);
    g_assert_true(job.worker != main_thread);
    g_assert_true(job.completed_in == main_thread);
    g_assert_cmpint(thread_pool_num_workers(), >=, 1);
}

/* The completion never runs before the submitter returns to its loop. */
static void test_submit_completion_is_deferred(void)
{
    AioContext *ctx = aio_main_context();
    Job job = { .value = 1 };

    thread_pool_submit(ctx, job_func, &job, job_cb, &job);
    g_usleep(20 * 1000);    /* ample time for the worker to finish */
    g_assert_false(job.done);
    AIO_WAIT_WHILE(ctx, !job.done);
    g_assert_cmpint(job.ret, ==, 2);
}

#define MANY 2000

static void test_submit_many(void)
{
    AioContext *ctx = aio_main_context();
    Job *jobs = g_new0(Job, MANY);
    int i, completed;

    for (i = 0; i < MANY; i++) {
        jobs[i].value = i;
        thread_pool_submit(ctx, job_func, &jobs[i], job_cb, &jobs[i]);
    }
    do {
        aio_poll(ctx, true);
        completed = 0;
        for (i = 0; i < MANY; i++) {
            completed += jobs[i].done;
        }
    } while (completed < MANY);
    for (i = 0; i < MANY; i++) {
        g_assert_cmpint(jobs[i].ret, ==, 2 * i);
        g_assert_true(jobs[i].completed_in == main_thread);
    }
    g_assert_cmpint(thread_pool_num_workers(), <=, THREAD_POOL_MAX_WORKERS);
    g_free(jobs);
}

static int errno_func(void *arg)
{
    return -ENOSPC;
}

typedef struct CoJob {
    Job job;
    int co_ret;
    AioContext *resumed_ctx;
    GThread *resumed_in;
    bool finished;
} CoJob;

static void coroutine_fn co_job_entry(void *opaque)
{
    CoJob *cj = opaque;

    cj->co_ret = thread_pool_submit_co(job_func, &cj->job);
    cj->resumed_ctx = current_aio_context();
    cj->resumed_in = g_thread_self();
    cj->finished = true;
}

static void test_co_returns_result(void)
{
    AioContext *ctx = aio_main_context();
    CoJob cj = { .job.value = 50 };

    coroutine_enter(coroutine_create(co_job_entry, &cj));
    g_assert_false(cj.finished);
    AIO_WAIT_WHILE(ctx, !cj.finished);
    g_assert_cmpint(cj.co_ret, ==, 100);
    g_assert_true(cj.job.worker != main_thread);
    g_assert_true(cj.resumed_in == main_thread);
    g_assert_true(cj.resumed_ctx == ctx);
}

static void coroutine_fn co_errno_entry(void *opaque)
{
    CoJob *cj = opaque;

    cj->co_ret = thread_pool_submit_co(errno_func, NULL);
    cj->finished = true;
}

static void test_co_returns_errno(void)
{
    CoJob cj = { 0 };

    coroutine_enter(coroutine_create(co_errno_entry, &cj));
    AIO_WAIT_WHILE(aio_main_context(), !cj.finished);
    g_assert_cmpint(cj.co_ret, ==, -ENOSPC);
}

#define NCO 100

static void test_co_many_concurrent(void)
{
    CoJob *cjs = g_new0(CoJob, NCO);
    int i, finished;

    for (i = 0; i < NCO; i++) {
        cjs[i].job.value = i + 1;
        coroutine_enter(coroutine_create(co_job_entry, &cjs[i]));
    }
    do {
        aio_poll(aio_main_context(), true);
        finished = 0;
        for (i = 0; i < NCO; i++) {
            finished += cjs[i].finished;
        }
    } while (finished < NCO);
    for (i = 0; i < NCO; i++) {
        g_assert_cmpint(cjs[i].co_ret, ==, 2 * (i + 1));
    }
    g_free(cjs);
}

/* Submission from a coroutine running in an iothread: both the callback
 * and the coroutine variant come back in the iothread. */
typedef struct IothreadJob {
    AioContext *ctx;
    GThread *submitter;
    Job cb_job;
    CoJob co_job;
} IothreadJob;

static void coroutine_fn iothread_job_entry(void *opaque)
{
    IothreadJob *ij = opaque;

    ij->submitter = g_thread_self();
    thread_pool_submit(ij->ctx, job_func, &ij->cb_job, job_cb, &ij->cb_job);
    co_job_entry(&ij->co_job);
    /* Callback completions of our context also ran while we waited, or
     * will: wait for it here, in the iothread, without blocking. */
    while (!ij->cb_job.done) {
        co_sleep_ns(1000 * 1000);
    }
}

static void test_iothread_delivers_there(void)
{
    IOThread *t = iothread_create("tp-io0", &error_abort);
    IothreadJob ij = {
        .ctx = iothread_get_aio_context(t),
        .cb_job.value = 3,
        .co_job.job.value = 4,
    };

    aio_run_in_context(ij.ctx, iothread_job_entry, &ij);
    g_assert_true(ij.submitter != main_thread);
    g_assert_true(ij.cb_job.done);
    g_assert_cmpint(ij.cb_job.ret, ==, 6);
    g_assert_true(ij.cb_job.completed_in == ij.submitter);
    g_assert_cmpint(ij.co_job.co_ret, ==, 8);
    g_assert_true(ij.co_job.resumed_in == ij.submitter);
    g_assert_true(ij.co_job.resumed_ctx == ij.ctx);
    iothread_destroy(t);
}

/* Main context and two iothreads submit at the same time. */
#define PER_CTX 200

typedef struct CtxBatch {
    AioContext *ctx;
    GThread *thread;
    Job jobs[PER_CTX];
    bool all_done;
} CtxBatch;

static bool batch_done(CtxBatch *b)
{
    int i;

    for (i = 0; i < PER_CTX; i++) {
        if (!b->jobs[i].done) {
            return false;
        }
    }
    return true;
}

static void coroutine_fn batch_entry(void *opaque)
{
    CtxBatch *b = opaque;
    int i;

    b->thread = g_thread_self();
    for (i = 0; i < PER_CTX; i++) {
        b->jobs[i].value = i;
        thread_pool_submit(b->ctx, job_func, &b->jobs[i], job_cb, &b->jobs[i]);
    }
    while (!batch_done(b)) {
        co_sleep_ns(500 * 1000);
    }
    /* Publishes the results to the main thread. */
    __atomic_store_n(&b->all_done, true, __ATOMIC_RELEASE);
}

static void test_concurrent_contexts(void)
{
    IOThread *t1 = iothread_create("tp-io1", &error_abort);
    IOThread *t2 = iothread_create("tp-io2", &error_abort);
    CtxBatch *b = g_new0(CtxBatch, 3);
    gint64 deadline = g_get_monotonic_time() + 30 * G_TIME_SPAN_SECOND;
    int i, k;

    b[0].ctx = aio_main_context();
    b[1].ctx = iothread_get_aio_context(t1);
    b[2].ctx = iothread_get_aio_context(t2);
    /* The iothreads start submitting while the main thread does too. */
    aio_co_schedule(b[1].ctx, coroutine_create(batch_entry, &b[1]));
    aio_co_schedule(b[2].ctx, coroutine_create(batch_entry, &b[2]));
    coroutine_enter(coroutine_create(batch_entry, &b[0]));
    AIO_WAIT_WHILE(aio_main_context(), !b[0].all_done);
    while (!(__atomic_load_n(&b[1].all_done, __ATOMIC_ACQUIRE) &&
             __atomic_load_n(&b[2].all_done, __ATOMIC_ACQUIRE))) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
    }
    for (k = 0; k < 3; k++) {
        for (i = 0; i < PER_CTX; i++) {
            g_assert_cmpint(b[k].jobs[i].ret, ==, 2 * i);
            g_assert_true(b[k].jobs[i].completed_in == b[k].thread);
        }
    }
    g_assert_true(b[0].thread == main_thread);
    g_assert_true(b[1].thread != main_thread);
    g_assert_true(b[2].thread != main_thread);
    g_assert_true(b[1].thread != b[2].thread);
    g_free(b);
    iothread_destroy(t1);
    iothread_destroy(t2);
}

/* Work that blocks until the test opens the gate. */
static struct {
    GMutex lock;
    GCond cond;
    bool open;
    int running;
    int max_running;
} gate;

static int gated_func(void *arg)
{
    g_mutex_lock(&gate.lock);
    gate.running++;
    gate.max_running = MAX(gate.max_running, gate.running);
    g_cond_broadcast(&gate.cond);
    while (!gate.open) {
        g_cond_wait(&gate.cond, &gate.lock);
    }
    gate.running--;
    g_mutex_unlock(&gate.lock);
    return 0;
}

static void count_cb(void *opaque, int ret)
{
    (*(int *)opaque)++;
}

#define GATED (THREAD_POOL_MAX_WORKERS * 3)

static void test_workers_capped(void)
{
    AioContext *ctx = aio_main_context();
    int completed = 0;
    int i;

    for (i = 0; i < GATED; i++) {
        thread_pool_submit(ctx, gated_func, NULL, count_cb, &completed);
    }
    g_mutex_lock(&gate.lock);
    while (gate.running < THREAD_POOL_MAX_WORKERS) {
        /* Fails rather than hangs if the pool starts too few workers. */
        g_assert_true(g_cond_wait_until(&gate.cond, &gate.lock,
                                        g_get_monotonic_time() +
                                        10 * G_TIME_SPAN_SECOND));
    }
    g_mutex_unlock(&gate.lock);
    /* All workers are busy, the rest of the work waits in the queue. */
    g_usleep(50 * 1000);
    g_assert_cmpint(thread_pool_num_workers(), ==, THREAD_POOL_MAX_WORKERS);
    g_mutex_lock(&gate.lock);
    g_assert_cmpint(gate.max_running, ==, THREAD_POOL_MAX_WORKERS);
    gate.open = true;
    g_cond_broadcast(&gate.cond);
    g_mutex_unlock(&gate.lock);
    AIO_WAIT_WHILE(ctx, completed < GATED);
    g_assert_cmpint(thread_pool_num_workers(), <=, THREAD_POOL_MAX_WORKERS);
}

/* With the default timeout (seconds), a worker outlives a short pause, so
 * bursts of work do not pay for thread creation each time. */
static void test_idle_workers_linger(void)
{
    AioContext *ctx = aio_main_context();
    Job job = { .value = 1 };

    thread_pool_submit(ctx, job_func, &job, job_cb, &job);
    AIO_WAIT_WHILE(ctx, !job.done);
    g_usleep(300 * 1000);
    g_assert_cmpint(thread_pool_num_workers(), >=, 1);
}

static void test_idle_workers_exit(void)
{
    AioContext *ctx = aio_main_context();
    gint64 deadline;
    Job job = { .value = 5 };

    thread_pool_set_idle_timeout_ms(50);
    thread_pool_submit(ctx, job_func, &job, job_cb, &job);
    AIO_WAIT_WHILE(ctx, !job.done);
    deadline = g_get_monotonic_time() + 5 * G_TIME_SPAN_SECOND;
    while (thread_pool_num_workers() > 0 &&
           g_get_monotonic_time() < deadline) {
        g_usleep(10 * 1000);
    }
    g_assert_cmpint(thread_pool_num_workers(), ==, 0);

    /* The pool starts workers again on demand. */
    job.done = false;
    thread_pool_submit(ctx, job_func, &job, job_cb, &job);
    AIO_WAIT_WHILE(ctx, !job.done);
    g_assert_cmpint(job.ret, ==, 10);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_thread = g_thread_self();
    aio_main_context();
    g_test_add_func("/thread-pool/submit/completes-in-main",
                    test_submit_completes_in_main);
    g_test_add_func("/thread-pool/submit/completion-deferred",
                    test_submit_completion_is_deferred);
    g_test_add_func("/thread-pool/submit/many", test_submit_many);
    g_test_add_func("/thread-pool/co/returns-result", test_co_returns_result);
    g_test_add_func("/thread-pool/co/returns-errno", test_co_returns_errno);
    g_test_add_func("/thread-pool/co/many-concurrent",
                    test_co_many_concurrent);
    g_test_add_func("/thread-pool/iothread/delivers-there",
                    test_iothread_delivers_there);
    g_test_add_func("/thread-pool/iothread/concurrent-contexts",
                    test_concurrent_contexts);
    g_test_add_func("/thread-pool/workers/capped", test_workers_capped);
    g_test_add_func("/thread-pool/workers/idle-linger",
                    test_idle_workers_linger);
    g_test_add_func("/thread-pool/workers/idle-exit", test_idle_workers_exit);
    return g_test_run();
}
