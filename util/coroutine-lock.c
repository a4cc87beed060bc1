/*
 * Coroutine locks: CoQueue, CoMutex, CoRwlock and co_sleep_ns.
 *
 * All of them are for coroutines of one AioContext (the owner model), so
 * they need no atomics: a waiter puts a CoWaiter on its own stack, links it
 * into the lock's FIFO and yields; whoever releases pops waiters in order
 * and resumes them with aio_co_wake().  Ownership is handed over before the
 * wake-up (CoMutex, CoRwlock), so a woken waiter never has to re-check and
 * no later arrival can overtake it: that is what makes them fair.
 */
#include <glib.h>

#include "util/aio.h"
#include "util/coroutine.h"
#include "util/coroutine-int.h"

/* A waiting coroutine; lives on that coroutine's stack while it waits. */
struct CoWaiter {
    Coroutine *co;
    bool writer;            /* CoRwlock only: waiting for the write lock */
    CoWaiter *next;
};

static void co_waiter_append(CoWaiter **head, CoWaiter **tail, CoWaiter *w)
{
    w->next = NULL;
    if (*tail != NULL) {
        (*tail)->next = w;
    } else {
        *head = w;
    }
    *tail = w;
}

static CoWaiter *co_waiter_pop(CoWaiter **head, CoWaiter **tail)
{
    CoWaiter *w = *head;

    if (w != NULL) {
        *head = w->next;
        if (*head == NULL) {
            *tail = NULL;
        }
        w->next = NULL;
    }
    return w;
}

static Coroutine *co_self_or_die(const char *what)
{
    Coroutine *self = coroutine_self();

    if (self == NULL) {
        coroutine_panic(what, "called outside coroutine context");
    }
    return self;
}

/* ------------------------------------------------------------------ */
/* CoQueue */

void co_queue_init(CoQueue *q)
{
    q->head = NULL;
    q->tail = NULL;
}

void coroutine_fn co_queue_wait(CoQueue *q, CoMutex *mutex)
{
    CoWaiter w = { .co = co_self_or_die("co_queue_wait") };

    co_waiter_append(&q->head, &q->tail, &w);
    if (mutex != NULL) {
        co_mutex_unlock(mutex);
    }
    coroutine_yield();
    if (mutex != NULL) {
        co_mutex_lock(mutex);
    }
}

bool co_queue_next(CoQueue *q)
{
    CoWaiter *w = co_waiter_pop(&q->head, &q->tail);

    if (w == NULL) {
        return false;
    }
    aio_co_wake(w->co);
    return true;
}

void co_queue_restart_all(CoQueue *q)
{
    /* Detach first: a woken waiter may queue itself again. */
    CoWaiter *w = q->head;

    q->head = NULL;
    q->tail = NULL;
    while (w != NULL) {
        /* w lives on the waiter's stack: read next before waking it. */
        CoWaiter *next = w->next;

        aio_co_wake(w->co);
        w = next;
    }
}

bool co_queue_empty(const CoQueue *q)
{
    return q->head == NULL;
}

/* ------------------------------------------------------------------ */
/* CoMutex */

void co_mutex_init(CoMutex *m)
{
    m->locked = false;
    m->holder = NULL;
    co_queue_init(&m->waiters);
}

void coroutine_fn co_mutex_lock(CoMutex *m)
{
    Coroutine *self = co_self_or_die("co_mutex_lock");
    CoWaiter w = { .co = self };

    if (!m->locked) {
        m->locked = true;
        m->holder = self;
        return;
    }
    if (m->holder == self) {
        coroutine_panic("co_mutex_lock", "mutex locked twice by its holder");
    }
    co_waiter_append(&m->waiters.head, &m->waiters.tail, &w);
    coroutine_yield();
    /* co_mutex_unlock made us the holder before waking us. */
}

void coroutine_fn co_mutex_unlock(CoMutex *m)
{
    CoWaiter *w;

    if (!m->locked || m->holder != coroutine_self()) {
        coroutine_panic("co_mutex_unlock", "mutex not held by the caller");
    }
    w = co_waiter_pop(&m->waiters.head, &m->waiters.tail);
    if (w == NULL) {
        m->locked = false;
        m->holder = NULL;
        return;
    }
    /* Hand-off: the lock never becomes free, so nobody can overtake. */
    m->holder = w->co;
    aio_co_wake(w->co);
}

/* ------------------------------------------------------------------ */
/* CoRwlock */

void co_rwlock_init(CoRwlock *l)
{
    l->readers = 0;
    l->writer = false;
    l->head = NULL;
    l->tail = NULL;
}

void coroutine_fn co_rwlock_rdlock(CoRwlock *l)
{
    CoWaiter w = { .co = co_self_or_die("co_rwlock_rdlock") };

    /* Queue behind anyone already waiting: a waiting writer goes first. */
    if (!l->writer && l->head == NULL) {
        l->readers++;
        return;
    }
    co_waiter_append(&l->head, &l->tail, &w);
    coroutine_yield();
    /* The waker counted us in l->readers. */
}

void coroutine_fn co_rwlock_wrlock(CoRwlock *l)
{
    CoWaiter w = { .co = co_self_or_die("co_rwlock_wrlock"), .writer = true };

    if (!l->writer && l->readers == 0 && l->head == NULL) {
        l->writer = true;
        return;
    }
    co_waiter_append(&l->head, &l->tail, &w);
    coroutine_yield();
    /* The waker set l->writer for us. */
}

/*
 * Grants the lock to the waiters at the head of the queue that can have it
 * now (one writer, or a run of readers) and wakes them after the state is
 * final, because a woken coroutine may run (and unlock) immediately.
 */
static void co_rwlock_grant(CoRwlock *l)
{
    CoWaiter *granted = NULL, *granted_tail = NULL, *w;

    while ((w = l->head) != NULL) {
        if (w->writer) {
            if (l->writer || l->readers > 0) {
                break;
            }
            l->writer = true;
        } else {
            if (l->writer) {
                break;
            }
            l->readers++;
        }
        co_waiter_pop(&l->head, &l->tail);
        co_waiter_append(&granted, &granted_tail, w);
        if (w->writer) {
            break;
        }
    }
    while ((w = granted) != NULL) {
        granted = w->next;
        aio_co_wake(w->co);
    }
}

void coroutine_fn co_rwlock_unlock(CoRwlock *l)
{
    if (l->writer) {
        l->writer = false;
    } else if (l->readers > 0) {
        l->readers--;
    } else {
        coroutine_panic("co_rwlock_unlock", "lock not held");
    }
    co_rwlock_grant(l);
}

/* ------------------------------------------------------------------ */
/* co_sleep_ns */

static void co_sleep_cb(void *opaque)
{
    aio_co_wake(opaque);
}

void coroutine_fn co_sleep_ns(int64_t ns)
{
    Coroutine *self = co_self_or_die("co_sleep_ns");
    /* The context that runs us, which may not be this thread's default. */
    AioContext *ctx = coroutine_get_ctx(self);
    QEMUTimer *t = aio_timer_new(ctx ? ctx : current_aio_context(),
                                 co_sleep_cb, self);

    timer_mod_ns(t, clock_ns() + ns);
    coroutine_yield();
    timer_free(t);
}
