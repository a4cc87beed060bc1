/*
 * Thread pool for blocking work (syscalls that may sleep: pread/pwrite
 * without linux-aio, fsync, fallocate, open...).  Workers are shared by all
 * contexts; a request's completion is delivered in the AioContext that
 * submitted it, never in the worker thread.
 */
#ifndef UTIL_THREAD_POOL_H
#define UTIL_THREAD_POOL_H

#include "util/aio.h"

/* Runs in a worker thread; returns a result (commonly 0 or -errno). */
typedef int ThreadPoolFunc(void *arg);
/* Runs in the submitting context with func's result. */
typedef void ThreadPoolCompletion(void *opaque, int ret);

/* Maximum number of worker threads. */
#define THREAD_POOL_MAX_WORKERS 64

/* Submits func(arg); cb(opaque, ret) runs later in ctx's thread. */
void thread_pool_submit(AioContext *ctx, ThreadPoolFunc *func, void *arg,
                        ThreadPoolCompletion *cb, void *opaque);
/* Runs func(arg) in a worker and yields until it is done; returns its
 * result in the calling coroutine's context. */
int coroutine_fn thread_pool_submit_co(ThreadPoolFunc *func, void *arg);

/*
 * Lets every worker finish the requests already queued, then joins them
 * all.  For process exit: main thread, after the last submission.
 */
void thread_pool_stop(void);

/* For tests: current number of worker threads. */
int thread_pool_num_workers(void);

/* For tests: how long a worker may stay idle before it exits (default
 * 10 s).  Applies to sleeping workers too. */
void thread_pool_set_idle_timeout_ms(unsigned ms);

#endif
