/*
 * IOThreads: "--object iothread,id=X" threads, each running its own
 * AioContext in a blocking aio_poll loop, plus the registry by id that
 * query-iothreads and the "iothread=" export option use.
 *
 * The registry is created and changed by the main thread (object creation
 * and deletion are control-plane operations); the mutex only makes lookups
 * from other threads safe.
 */
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <glib.h>

#include "util/aio.h"

/*
 * One iothread.  id, ctx and thread_id are fixed once iothread_create
 * returns; "stopping" is written by a BH in the thread itself.  Owned by
 * the registry; freed by iothread_destroy.
 */
struct IOThread {
    char *id;
    /* The thread's reference; dropped by the thread as it exits. */
    AioContext *ctx;
    pthread_t thread;
    int thread_id;
    bool stopping;
    /* Start-up handshake: the thread reports its tid. */
    GMutex start_lock;
    GCond start_cond;
    bool started;
};

static GMutex iothreads_lock;
/* IOThread *, in creation order (iothreads_lock). */
static GPtrArray *iothreads;

static IOThread *iothread_find_locked(const char *id);

/*
 * Names the calling thread "IO <id>" (what QEMU calls its iothreads), cut
 * to the kernel's 15 characters, so that top -H, pidstat -t, perf and
 * /proc/PID/task/TID/comm tell the data plane from the main loop.
 */
static void iothread_set_name(IOThread *t)
{
    char name[16];

    g_snprintf(name, sizeof(name), "IO %s", t->id);
    pthread_setname_np(pthread_self(), name);
}

static void *iothread_run(void *opaque)
{
    IOThread *t = opaque;

    aio_context_set_current(t->ctx);
    iothread_set_name(t);
    g_mutex_lock(&t->start_lock);
    t->thread_id = (int)syscall(SYS_gettid);
    t->started = true;
    g_cond_signal(&t->start_cond);
    g_mutex_unlock(&t->start_lock);

    while (!t->stopping) {
        aio_poll(t->ctx, true);
    }
    /* Let callbacks scheduled before the stop request finish. */
    while (aio_poll(t->ctx, false)) {
        /* drain */
    }
    /*
     * Drop the thread's reference here, so that engines kept in the
     * context's slots are torn down in the thread that owns them.
     */
    aio_context_set_current(NULL);
    aio_context_unref(t->ctx);
    return NULL;
}

IOThread *iothread_create(const char *id, Error **errp)
{
    IOThread *t;
    int err;

    g_mutex_lock(&iothreads_lock);
    if (iothread_find_locked(id) != NULL) {
        g_mutex_unlock(&iothreads_lock);
        error_setg(errp, "Duplicate ID '%s' for iothread", id);
        return NULL;
    }
    t = g_new0(IOThread, 1);
    t->ctx = aio_context_new(errp);
    if (t->ctx == NULL) {
        g_mutex_unlock(&iothreads_lock);
        g_free(t);
        return NULL;
    }
    t->id = g_strdup(id);
    g_mutex_init(&t->start_lock);
    g_cond_init(&t->start_cond);
    err = pthread_create(&t->thread, NULL, iothread_run, t);
    if (err != 0) {
        g_mutex_unlock(&iothreads_lock);
        error_setg_errno(errp, err, "Cannot start iothread '%s'", id);
        aio_context_unref(t->ctx);
        g_mutex_clear(&t->start_lock);
        g_cond_clear(&t->start_cond);
        g_free(t->id);
        g_free(t);
        return NULL;
    }
    if (iothreads == NULL) {
        iothreads = g_ptr_array_new();
    }
    g_ptr_array_add(iothreads, t);
    g_mutex_unlock(&iothreads_lock);

    g_mutex_lock(&t->start_lock);
    while (!t->started) {
        g_cond_wait(&t->start_cond, &t->start_lock);
    }
    g_mutex_unlock(&t->start_lock);
    return t;
}

static IOThread *iothread_find_locked(const char *id)
{
    guint i;

    if (iothreads == NULL) {
        return NULL;
    }
    for (i = 0; i < iothreads->len; i++) {
        IOThread *t = g_ptr_array_index(iothreads, i);

        if (g_str_equal(t->id, id)) {
            return t;
        }
    }
    return NULL;
}

IOThread *iothread_find(const char *id)
{
    IOThread *t;

    g_mutex_lock(&iothreads_lock);
    t = iothread_find_locked(id);
    g_mutex_unlock(&iothreads_lock);
    return t;
}

AioContext *iothread_get_aio_context(IOThread *t)
{
    return t->ctx;
}

const char *iothread_get_id(IOThread *t)
{
    return t->id;
}

int iothread_get_thread_id(IOThread *t)
{
    return t->thread_id;
}

/* Runs in the iothread: the loop checks the flag after this iteration. */
static void iothread_stop_bh(void *opaque)
{
    IOThread *t = opaque;

    t->stopping = true;
}

void iothread_destroy(IOThread *t)
{
    if (t == NULL) {
        return;
    }
    /* A BH, not a plain store: it is work the sleeping loop must see. */
    aio_bh_schedule_oneshot(t->ctx, iothread_stop_bh, t);
    pthread_join(t->thread, NULL);

    g_mutex_lock(&iothreads_lock);
    g_ptr_array_remove(iothreads, t);
    if (iothreads->len == 0) {
        g_ptr_array_free(iothreads, TRUE);
        iothreads = NULL;
    }
    g_mutex_unlock(&iothreads_lock);

    g_mutex_clear(&t->start_lock);
    g_cond_clear(&t->start_cond);
    g_free(t->id);
    g_free(t);
}

IOThread *iothread_next(IOThread *prev)
{
    IOThread *next = NULL;
    guint i = 0;

    g_mutex_lock(&iothreads_lock);
    if (iothreads != NULL) {
        if (prev != NULL) {
            for (i = 0; i < iothreads->len; i++) {
                if (g_ptr_array_index(iothreads, i) == prev) {
                    i++;
                    break;
                }
            }
        }
        if (i < iothreads->len) {
            next = g_ptr_array_index(iothreads, i);
        }
    }
    g_mutex_unlock(&iothreads_lock);
    return next;
}
