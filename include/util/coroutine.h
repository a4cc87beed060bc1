/*
 * Coroutines: cooperative user-space threads that carry every I/O-path
 * operation so that request code reads as straight-line code.
 *
 * Model:
 *   - coroutine_create() takes a stack from a per-thread pool (stacks are
 *     mmap'd with a guard page below them and reused after termination);
 *   - coroutine_enter() switches into the coroutine; it runs until it
 *     yields or its entry function returns (then it terminates and goes
 *     back to the pool), and coroutine_enter() returns to the caller;
 *   - coroutine_yield() switches back to whoever entered the coroutine.
 * A coroutine may enter another one (nesting): the inner one's yield returns
 * to the outer one.  Entering a coroutine that is running, or that is
 * already scheduled to be entered, is a bug and aborts.
 *
 * Threads and contexts: a coroutine belongs to the AioContext it was last
 * entered in (coroutine_get_ctx()).  To resume a coroutine from another
 * thread, or from a callback, use aio_co_wake() / aio_co_schedule()
 * (util/aio.h): they enter it in its own context.  Only one thread runs a
 * given coroutine at a time.
 *
 * Sanitizers: every switch is announced to ASan
 * (__sanitizer_start/finish_switch_fiber) so the ASan build understands the
 * stacks.
 *
 * Functions marked coroutine_fn may only be called from coroutine context.
 */
#ifndef UTIL_COROUTINE_H
#define UTIL_COROUTINE_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

/* Marker for functions that must run in coroutine context (no effect). */
#define coroutine_fn

typedef struct Coroutine Coroutine;
typedef struct AioContext AioContext;
typedef void coroutine_fn CoroutineEntry(void *opaque);

/* Stack size of every coroutine (plus one guard page). */
#define COROUTINE_STACK_SIZE (1 << 20)

Coroutine *coroutine_create(CoroutineEntry *entry, void *opaque);
/* Enters co in the current thread (and makes the current AioContext its
 * context).  Returns when co yields or terminates. */
void coroutine_enter(Coroutine *co);
/* Enters co only if it is not running and not scheduled. */
void coroutine_enter_if_inactive(Coroutine *co);
void coroutine_fn coroutine_yield(void);

/* The running coroutine, or NULL outside coroutine context. */
Coroutine *coroutine_self(void);
bool in_coroutine(void);
/* True when co is currently entered (running or has entered a nested one). */
bool coroutine_entered(Coroutine *co);
AioContext *coroutine_get_ctx(Coroutine *co);

/* Counters for tests: terminated coroutines kept for reuse in this
 * thread's pool (bounded), and stacks this thread has mapped so far (only
 * grows when the pool was empty). */
size_t coroutine_pool_size(void);
uint64_t coroutine_stacks_allocated(void);

/*
 * Locks for coroutines.  They are not thread-safe: all users of one lock
 * must run in the same AioContext (the owner model).  Waiters are woken in
 * FIFO order through aio_co_wake().
 */
typedef struct CoWaiter CoWaiter;

typedef struct CoQueue {
    CoWaiter *head, *tail;
} CoQueue;

void co_queue_init(CoQueue *q);
/* Waits until woken; if mutex is non-NULL it is released while waiting and
 * re-acquired before returning. */
typedef struct CoMutex CoMutex;
void coroutine_fn co_queue_wait(CoQueue *q, CoMutex *mutex);
/* Wakes the first waiter; returns false if there was none. */
bool co_queue_next(CoQueue *q);
void co_queue_restart_all(CoQueue *q);
bool co_queue_empty(const CoQueue *q);

struct CoMutex {
    bool locked;
    Coroutine *holder;
    CoQueue waiters;
};

void co_mutex_init(CoMutex *m);
void coroutine_fn co_mutex_lock(CoMutex *m);
void coroutine_fn co_mutex_unlock(CoMutex *m);

/* Readers-writer lock; FIFO, so a waiting writer blocks later readers. */
typedef struct CoRwlock {
    int readers;
    bool writer;
    CoWaiter *head, *tail;
} CoRwlock;

void co_rwlock_init(CoRwlock *l);
void coroutine_fn co_rwlock_rdlock(CoRwlock *l);
void coroutine_fn co_rwlock_wrlock(CoRwlock *l);
void coroutine_fn co_rwlock_unlock(CoRwlock *l);

/* Sleeps ns nanoseconds on the current AioContext's monotonic timer. */
void coroutine_fn co_sleep_ns(int64_t ns);

#endif
