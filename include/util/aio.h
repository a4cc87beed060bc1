/*
 * AioContext: the event loop of one thread.
 *
 * Each thread that does I/O runs exactly one AioContext: an epoll set of fd
 * handlers, bottom halves (BHs), timers on CLOCK_MONOTONIC and an eventfd
 * used to wake the loop from other threads.  The main thread runs
 * aio_main_context(), which hosts the monitor and all control-plane work;
 * each "--object iothread" runs another one in its own thread.
 *
 * Thread rules:
 *   - aio_set_fd_handler, timers, aio_poll: only in the context's own thread
 *     (or before the context's thread starts running it);
 *   - bh_schedule, aio_bh_schedule_oneshot, aio_notify, aio_co_schedule,
 *     aio_co_wake: from any thread;
 *   - a BH/timer/fd callback runs in the context's thread.
 * Lifetime: contexts are reference counted; the main context lives for the
 * whole process.
 */
#ifndef UTIL_AIO_H
#define UTIL_AIO_H

#include <stdbool.h>
#include <stdint.h>

#include "util/coroutine.h"
#include "util/error.h"

typedef struct AioContext AioContext;
typedef struct QEMUBH QEMUBH;
typedef struct QEMUTimer QEMUTimer;

typedef void IOHandler(void *opaque);
typedef void BHFunc(void *opaque);
typedef void TimerCb(void *opaque);

AioContext *aio_context_new(Error **errp);
void aio_context_ref(AioContext *ctx);
void aio_context_unref(AioContext *ctx);

/* The main thread's context (created on first use). */
AioContext *aio_main_context(void);
/* The context the calling thread runs (main context for the main thread
 * and for threads that run none). */
AioContext *current_aio_context(void);
/* Declares that the calling thread runs ctx (used by iothreads). */
void aio_context_set_current(AioContext *ctx);

/*
 * Registers (or with both handlers NULL, removes) handlers for fd.  The fd
 * is watched with level-triggered epoll for readability when io_read is set
 * and writability when io_write is set.  Calling it again for the same fd
 * replaces the handlers.
 */
void aio_set_fd_handler(AioContext *ctx, int fd, IOHandler *io_read,
                        IOHandler *io_write, void *opaque);

/*
 * Runs one iteration: expired timers, pending BHs, and ready fd handlers.
 * If blocking, waits for at least one event when nothing was ready.
 * Returns true if any callback made progress.
 */
bool aio_poll(AioContext *ctx, bool blocking);
/*
 * Wakes the context's thread out of a blocking aio_poll (any thread).  A
 * notify that arrives while the loop is not blocked is remembered: the next
 * blocking aio_poll returns without sleeping.  So "set a flag, then
 * aio_notify(ctx)" is enough to end an AIO_WAIT_WHILE on that flag.
 */
void aio_notify(AioContext *ctx);

/* Waits, running ctx's loop, until cond is false.  Main thread or the
 * context's own thread only.  Another thread that makes cond false must
 * call aio_notify(ctx) afterwards (or do it from a BH/coroutine in ctx). */
#define AIO_WAIT_WHILE(ctx, cond) \
    do { while (cond) { aio_poll((ctx), true); } } while (0)

/* Bottom halves: callbacks run by the context at its next iteration. */
QEMUBH *aio_bh_new(AioContext *ctx, BHFunc *cb, void *opaque);
void bh_schedule(QEMUBH *bh);                 /* any thread, idempotent */
void bh_cancel(QEMUBH *bh);                   /* owner thread */
void bh_delete(QEMUBH *bh);                   /* owner thread */
void aio_bh_schedule_oneshot(AioContext *ctx, BHFunc *cb, void *opaque);

/* Timers on CLOCK_MONOTONIC, in nanoseconds. */
int64_t clock_ns(void);
QEMUTimer *aio_timer_new(AioContext *ctx, TimerCb *cb, void *opaque);
/* Arms (or re-arms) the timer to fire at absolute time expire_ns. */
void timer_mod_ns(QEMUTimer *t, int64_t expire_ns);
void timer_del(QEMUTimer *t);
bool timer_pending(QEMUTimer *t);
void timer_free(QEMUTimer *t);

/* Enters co in ctx's thread at ctx's next iteration (any thread).  A
 * coroutine may schedule itself elsewhere and then yield at once: that is
 * how it moves to another context (the target waits for the switch away to
 * finish before entering it). */
void aio_co_schedule(AioContext *ctx, Coroutine *co);
/*
 * Resumes co in its own context: entered directly if the caller runs in
 * that context and is not itself inside co's chain, else scheduled.
 */
void aio_co_wake(Coroutine *co);
/* Enters co in ctx: directly if ctx is the caller's context, else
 * schedules it there. */
void aio_co_enter(AioContext *ctx, Coroutine *co);

/*
 * Runs entry(opaque) in a new coroutine inside ctx and waits (driving the
 * caller's own loop) until it returns.  For control-plane code in the main
 * thread that must act on a node owned by an iothread.  Called from a
 * coroutine, it yields instead of polling and resumes in its own context.
 */
void aio_run_in_context(AioContext *ctx, CoroutineEntry *entry, void *opaque);

/*
 * Per-context slots for engines that live beside the loop (one linux-aio
 * state, one thread-pool state per context).  Owner thread only.  When the
 * context is freed, destroy(data) runs for every set slot, before the
 * context's fds and BHs are released, in the thread that drops the last
 * reference (for an iothread: the iothread itself, as it exits).
 */
typedef enum AioSlot {
    AIO_SLOT_LINUX_AIO,
    AIO_SLOT_THREAD_POOL,
    AIO_SLOT__MAX,
} AioSlot;

void *aio_context_get_slot(AioContext *ctx, AioSlot slot);
/* Sets (or with data NULL, clears) a slot; destroy may be NULL. */
void aio_context_set_slot(AioContext *ctx, AioSlot slot, void *data,
                          void (*destroy)(void *data));

/* IOThreads: a thread running its own AioContext until destroyed. */
typedef struct IOThread IOThread;

IOThread *iothread_create(const char *id, Error **errp);
IOThread *iothread_find(const char *id);
AioContext *iothread_get_aio_context(IOThread *t);
const char *iothread_get_id(IOThread *t);
/* Thread id (gettid) of the iothread, for query-iothreads. */
int iothread_get_thread_id(IOThread *t);
/* Stops the thread (after callbacks already scheduled there have run),
 * joins it and frees it.  Not from the iothread itself. */
void iothread_destroy(IOThread *t);
/* Iterates over all iothreads in creation order. */
IOThread *iothread_next(IOThread *prev);

#endif
