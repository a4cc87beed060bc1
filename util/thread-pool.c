/*
 * Thread pool (include/util/thread-pool.h): the place where blocking
 * syscalls run so that no AioContext thread ever sleeps in the kernel
 * (file-posix without linux-aio, fsync, fallocate, open...).
 *
 * One process-wide pool.  Work is queued FIFO under one mutex; workers are
 * started on demand up to THREAD_POOL_MAX_WORKERS and exit after being idle
 * for a while, so an idle daemon keeps no threads.  A worker never runs a
 * completion: it hands the finished request to the submitting context with
 * aio_bh_schedule_oneshot(), so completions run in the thread that owns the
 * caller's data, as the one-owner-per-object model requires.
 */
#include <errno.h>
#include <signal.h>
#include <pthread.h>

#include <glib.h>

#include "util/thread-pool.h"

/* Default idle time after which a worker exits, in microseconds. */
#define THREAD_POOL_IDLE_US (10 * G_TIME_SPAN_SECOND)

/*
 * One piece of work.  Owned by the pool from submit until the completion
 * BH has run in ctx; ret is written by the worker before the BH is
 * scheduled (the BH scheduling orders it for the reader).
 */
typedef struct ThreadPoolRequest {
    ThreadPoolFunc *func;
    void *arg;
    ThreadPoolCompletion *cb;
    void *opaque;
    AioContext *ctx;        /* referenced until the completion has run */
    int ret;
} ThreadPoolRequest;

/*
 * The pool.  Every field is protected by lock.  Workers are detached
 * threads; each one accounts for itself in num_workers and leaves it when
 * it exits.
 */
static struct {
    GMutex lock;
    GCond work_cond;        /* signalled when work is queued */
    GQueue queue;           /* of ThreadPoolRequest, FIFO */
    int num_workers;
    int idle_workers;       /* workers waiting on work_cond */
    gint64 idle_timeout_us;
    /* Workers are joinable so that nothing outlives thread_pool_stop():
     * one that leaves puts its GThread here for the next spawn (or the
     * stop) to join. */
    GPtrArray *exited;
    GCond exit_cond;        /* signalled when a worker leaves */
    bool stopping;          /* thread_pool_stop(): leave once idle */
} pool = {
    .queue = G_QUEUE_INIT,
    .idle_timeout_us = THREAD_POOL_IDLE_US,
};

static void thread_pool_complete_bh(void *opaque)
{
    ThreadPoolRequest *req = opaque;
    AioContext *ctx = req->ctx;

    req->cb(req->opaque, req->ret);
    g_free(req);
    aio_context_unref(ctx);
}

/* Hands a finished request back to its context (any thread). */
static void thread_pool_deliver(ThreadPoolRequest *req)
{
    aio_bh_schedule_oneshot(req->ctx, thread_pool_complete_bh, req);
}

/*
 * Takes the next request, waiting up to the idle timeout.  Returns NULL
 * when the worker should exit (then it has already left num_workers, under
 * the lock, so a concurrent submit will start a new worker if needed).
 */
/* The calling worker is about to return: count it out and leave its
 * GThread to be joined. */
static void thread_pool_leave_locked(void)
{
    if (!pool.exited) {
        pool.exited = g_ptr_array_new();
    }
    pool.num_workers--;
    g_ptr_array_add(pool.exited, g_thread_self());
    g_cond_broadcast(&pool.exit_cond);
}

static ThreadPoolRequest *thread_pool_next_locked(void)
{
    gint64 idle_since = g_get_monotonic_time();

    while (g_queue_is_empty(&pool.queue)) {
        /* Recomputed each time: the timeout may change while we sleep. */
        gint64 deadline = idle_since + pool.idle_timeout_us;
        bool woken;

        if (pool.stopping) {
            thread_pool_leave_locked();
            return NULL;
        }
        pool.idle_workers++;
        woken = g_cond_wait_until(&pool.work_cond, &pool.lock, deadline);
        pool.idle_workers--;
        if (!woken && g_queue_is_empty(&pool.queue)) {
            thread_pool_leave_locked();
            return NULL;
        }
    }
    return g_queue_pop_head(&pool.queue);
}

/* Joins the workers that have left (their threads end right after). */
static void thread_pool_reap_locked(void)
{
    while (pool.exited && pool.exited->len) {
        g_thread_join(g_ptr_array_steal_index_fast(pool.exited, 0));
    }
}

static gpointer thread_pool_worker(gpointer unused)
{
    for (;;) {
        ThreadPoolRequest *req;

        g_mutex_lock(&pool.lock);
        req = thread_pool_next_locked();
        g_mutex_unlock(&pool.lock);
        if (!req) {
            return NULL;
        }
        req->ret = req->func(req->arg);
        thread_pool_deliver(req);
    }
}

/*
 * Starts one worker with every signal blocked, so that signals meant for
 * the daemon (SIGINT, SIGTERM, SIGCHLD...) go to the main thread.
 */
static bool thread_pool_spawn_locked(void)
{
    sigset_t all, old;
    GThread *t;

    thread_pool_reap_locked();
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    t = g_thread_try_new("blockd-worker", thread_pool_worker, NULL, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!t) {
        return false;
    }
    /* Our reference is dropped by the g_thread_join() that reaps it. */
    pool.num_workers++;
    return true;
}

/* Queues req; false when no worker exists and none could be started. */
static bool thread_pool_enqueue(ThreadPoolRequest *req)
{
    bool ok = true;

    g_mutex_lock(&pool.lock);
    g_queue_push_tail(&pool.queue, req);
    /* More queued work than sleeping workers to take it: add one. */
    if ((int)g_queue_get_length(&pool.queue) > pool.idle_workers &&
        pool.num_workers < THREAD_POOL_MAX_WORKERS) {
        if (!thread_pool_spawn_locked() && pool.num_workers == 0) {
            g_queue_remove(&pool.queue, req);
            ok = false;
        }
    }
    if (ok) {
        g_cond_signal(&pool.work_cond);
    }
    g_mutex_unlock(&pool.lock);
    return ok;
}

void thread_pool_submit(AioContext *ctx, ThreadPoolFunc *func, void *arg,
                        ThreadPoolCompletion *cb, void *opaque)
{
    ThreadPoolRequest *req = g_new(ThreadPoolRequest, 1);

    *req = (ThreadPoolRequest) {
        .func = func, .arg = arg, .cb = cb, .opaque = opaque, .ctx = ctx,
    };
    aio_context_ref(ctx);
    if (!thread_pool_enqueue(req)) {
        /*
         * The system refuses to start even one thread.  Running the work
         * here blocks this context once, but still completes it, and the
         * completion still arrives asynchronously as promised.
         */
        req->ret = func(arg);
        thread_pool_deliver(req);
    }
}

typedef struct ThreadPoolCo {
    Coroutine *co;
    int ret;
    bool done;
} ThreadPoolCo;

static void thread_pool_co_cb(void *opaque, int ret)
{
    ThreadPoolCo *tpc = opaque;

    tpc->ret = ret;
    tpc->done = true;
    aio_co_wake(tpc->co);
}

int coroutine_fn thread_pool_submit_co(ThreadPoolFunc *func, void *arg)
{
    ThreadPoolCo tpc = { .co = coroutine_self() };

    g_assert(tpc.co);
    thread_pool_submit(current_aio_context(), func, arg, thread_pool_co_cb,
                       &tpc);
    /* The completion runs in this context, so not before we yield. */
    while (!tpc.done) {
        coroutine_yield();
    }
    return tpc.ret;
}

int thread_pool_num_workers(void)
{
    int n;

    g_mutex_lock(&pool.lock);
    n = pool.num_workers;
    g_mutex_unlock(&pool.lock);
    return n;
}

void thread_pool_set_idle_timeout_ms(unsigned ms)
{
    g_mutex_lock(&pool.lock);
    pool.idle_timeout_us = (gint64)MAX(ms, 1) * 1000;
    /* Sleeping workers re-check their deadline against the new value. */
    g_cond_broadcast(&pool.work_cond);
    g_mutex_unlock(&pool.lock);
}

void thread_pool_stop(void)
{
    g_mutex_lock(&pool.lock);
    pool.stopping = true;
    g_cond_broadcast(&pool.work_cond);
    while (pool.num_workers > 0) {
        g_cond_wait(&pool.exit_cond, &pool.lock);
    }
    thread_pool_reap_locked();
    g_mutex_unlock(&pool.lock);
}
