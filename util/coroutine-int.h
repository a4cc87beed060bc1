/*
 * Private interface between util/coroutine.c, util/coroutine-lock.c and
 * util/aio.c.  Nothing outside util/ includes this file.
 *
 * aio.c needs two things the public header does not offer: a link field so
 * that aio_co_schedule() can chain coroutines into a lock-free list without
 * allocating, and a way to enter a coroutine while naming the context it
 * runs in (a scheduled coroutine belongs to the context whose loop ran it,
 * even if that thread's "current" context is a different one).
 */
#ifndef UTIL_COROUTINE_INT_H
#define UTIL_COROUTINE_INT_H

#include "util/aio.h"
#include "util/coroutine.h"

/*
 * Scheduling state of a coroutine, kept in Coroutine and touched only with
 * atomics: any thread may schedule, the target context's thread clears it
 * right before entering.
 */
typedef struct CoSchedLink {
    /* Non-zero while the coroutine sits in some context's schedule list. */
    int scheduled;
    /* Next link in that list; written by the pusher before the CAS. */
    struct CoSchedLink *next;
} CoSchedLink;

/* The schedule link embedded in co (co lives as long as it is scheduled). */
CoSchedLink *coroutine_sched_link(Coroutine *co);
/* Recovers the coroutine from its link. */
Coroutine *coroutine_from_sched_link(CoSchedLink *link);

/*
 * Like coroutine_enter(), but records ctx as the coroutine's context
 * instead of current_aio_context().  Calling thread must be running ctx.
 */
void coroutine_enter_ctx(Coroutine *co, AioContext *ctx);

/* Aborts with "<what>: <message>" on stderr; for contract violations. */
void G_NORETURN coroutine_panic(const char *what, const char *msg);

#endif
