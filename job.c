/*
 * The generic job state machine: ids, states and the verbs they accept,
 * pausing with pause counts, cooperative cancellation, completion of
 * transactions, progress, rate limiting, JOB_STATUS_CHANGE, and the
 * job-* QMP commands.  See include/job.h for the model; block jobs
 * (block/blockjob.c) add their events through JobEventHooks.
 *
 * Threads: the job list, the transactions and completion belong to the
 * main thread.  The run() coroutine runs in the job's AioContext; it and
 * the main thread share the fields named in job.h, under job_mutex.  The
 * mutex is never held across a yield, a coroutine entry or a callback
 * into a driver.  Events from the job's coroutine in another thread are
 * handed to the main thread (the monitor is main-thread only).
 */
#include <errno.h>
#include <glib.h>

#include "job.h"
#include "qapi/qapi-commands.h"
#include "qapi/qapi-events.h"

struct JobTxn {
    Job *jobs;          /* linked through Job.txn_next; each holds a ref */
    int refcnt;
    bool aborting;      /* an abort of the group is under way */
};

static GMutex job_mutex;
/* All jobs in creation order (main thread); the list holds a reference. */
static Job *job_list;
/* Main-thread coroutines waiting in job_finish_sync(): woken whenever a
 * job completes or concludes. */
static CoQueue job_waiters;
static bool job_waiters_init;

static void job_lock(void)
{
    g_mutex_lock(&job_mutex);
}

static void job_unlock(void)
{
    g_mutex_unlock(&job_mutex);
}

/*
 * Allowed transitions, [from][to].  Order of JobStatus:
 * undefined created running paused ready standby waiting pending
 * aborting concluded null.
 */
static const bool job_transitions[JOB_STATUS__MAX][JOB_STATUS__MAX] = {
    /*                       U  C  R  P  Y  S  W  D  X  E  N */
    [JOB_STATUS_UNDEFINED] = {0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    [JOB_STATUS_CREATED]   = {0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1},
    [JOB_STATUS_RUNNING]   = {0, 0, 0, 1, 1, 0, 1, 0, 1, 0, 0},
    [JOB_STATUS_PAUSED]    = {0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0},
    [JOB_STATUS_READY]     = {0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0},
    [JOB_STATUS_STANDBY]   = {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0},
    [JOB_STATUS_WAITING]   = {0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0},
    [JOB_STATUS_PENDING]   = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0},
    [JOB_STATUS_ABORTING]  = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0},
    [JOB_STATUS_CONCLUDED] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
    [JOB_STATUS_NULL]      = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
};

/* Which verbs each state accepts, [verb][state]. */
static const bool job_verbs[JOB_VERB__MAX][JOB_STATUS__MAX] = {
    /*                       U  C  R  P  Y  S  W  D  X  E  N */
    [JOB_VERB_CANCEL]     = {0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
    [JOB_VERB_PAUSE]      = {0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    [JOB_VERB_RESUME]     = {0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    [JOB_VERB_SET_SPEED]  = {0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    [JOB_VERB_COMPLETE]   = {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0},
    [JOB_VERB_FINALIZE]   = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0},
    [JOB_VERB_DISMISS]    = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0},
    [JOB_VERB_CHANGE]     = {0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0},
};

/* ---- Events ---- */

typedef struct JobStatusEvent {
    char *id;
    JobStatus status;
} JobStatusEvent;

static void job_status_event_bh(void *opaque)
{
    JobStatusEvent *ev = opaque;

    qapi_event_send_job_status_change(ev->id, ev->status);
    g_free(ev->id);
    g_free(ev);
}

/* Sends JOB_STATUS_CHANGE from the main thread (deferred when called in
 * the job's iothread; the order among a job's events is kept because
 * one-shot BHs of the main context run in scheduling order). */
static void job_event_status(Job *job, JobStatus status)
{
    JobStatusEvent *ev;

    if (current_aio_context() == aio_main_context()) {
        qapi_event_send_job_status_change(job->id, status);
        return;
    }
    ev = g_new0(JobStatusEvent, 1);
    ev->id = g_strdup(job->id);
    ev->status = status;
    aio_bh_schedule_oneshot(aio_main_context(), job_status_event_bh, ev);
}

static void job_state_transition(Job *job, JobStatus to)
{
    JobStatus from = job->status;

    g_assert(job_transitions[from][to]);
    job->status = to;
    if (!job_is_internal(job) && from != to) {
        job_event_status(job, to);
    }
}

static void job_wake_waiters(void)
{
    if (job_waiters_init) {
        co_queue_restart_all(&job_waiters);
    }
}

/* ---- Verbs ---- */

int job_apply_verb(Job *job, JobVerb verb, Error **errp)
{
    JobStatus status = job->status;

    if (job_verbs[verb][status]) {
        return 0;
    }
    error_setg(errp, "Job '%s' in state '%s' cannot accept command verb '%s'",
               job->id, JobStatus_str(status), JobVerb_str(verb));
    return -EPERM;
}

/* ---- Creation, references, lookup ---- */

/* A letter first, then letters, digits, '-', '.', '_'. */
static bool job_id_wellformed(const char *id)
{
    if (!g_ascii_isalpha(id[0])) {
        return false;
    }
    for (const char *p = id + 1; *p; p++) {
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.' && *p != '_') {
            return false;
        }
    }
    return true;
}

static bool job_check_id(const char *job_id, int flags, Error **errp)
{
    if (job_id) {
        if (flags & JOB_INTERNAL) {
            error_setg(errp, "Cannot specify job ID for internal job");
            return false;
        }
        if (!job_id_wellformed(job_id)) {
            error_setg(errp, "Invalid job ID '%s'", job_id);
            return false;
        }
        if (job_get(job_id)) {
            error_setg(errp, "Job ID '%s' already in use", job_id);
            return false;
        }
    } else if (!(flags & JOB_INTERNAL)) {
        error_setg(errp, "An explicit job ID is required");
        return false;
    }
    return true;
}

static void job_txn_add_job(JobTxn *txn, Job *job)
{
    Job **p = &txn->jobs;

    g_assert(!job->txn);
    while (*p) {
        p = &(*p)->txn_next;
    }
    *p = job;
    job->txn = txn;
    txn->refcnt++;
    job_ref(job);
}

static void job_txn_del_job(Job *job)
{
    JobTxn *txn = job->txn;
    Job **p;

    if (!txn) {
        return;
    }
    for (p = &txn->jobs; *p != job; p = &(*p)->txn_next) {
        g_assert(*p);
    }
    *p = job->txn_next;
    job->txn_next = NULL;
    job->txn = NULL;
    job_txn_unref(txn);
    job_unref(job);
}

void *job_create(const char *job_id, const JobDriver *driver, JobTxn *txn,
                 AioContext *ctx, int flags,
                 void (*cb)(void *opaque, int ret), void *opaque,
                 Error **errp)
{
    Job *job;
    Job **tail;

    g_assert(driver->instance_size >= sizeof(Job) && driver->run);
    if (!job_check_id(job_id, flags, errp)) {
        return NULL;
    }
    if (!job_waiters_init) {
        co_queue_init(&job_waiters);
        job_waiters_init = true;
    }
    job = g_malloc0(driver->instance_size);
    job->id = g_strdup(job_id);
    job->driver = driver;
    job->refcnt = 1;
    job->aio_context = ctx;
    job->status = JOB_STATUS_UNDEFINED;
    job->paused = true;
    job->pause_count = 1;
    job->auto_finalize = !(flags & JOB_MANUAL_FINALIZE);
    job->auto_dismiss = !(flags & JOB_MANUAL_DISMISS);
    job->cb = cb;
    job->opaque = opaque;

    for (tail = &job_list; *tail; tail = &(*tail)->list_next) {
        /* append */
    }
    *tail = job;
    job_state_transition(job, JOB_STATUS_CREATED);

    if (txn) {
        job_txn_add_job(txn, job);
    } else {
        txn = job_txn_new();
        job_txn_add_job(txn, job);
        job_txn_unref(txn);
    }
    return job;
}

void job_ref(Job *job)
{
    job->refcnt++;
}

void job_unref(Job *job)
{
    g_assert(job->refcnt > 0);
    if (--job->refcnt > 0) {
        return;
    }
    g_assert(job->status == JOB_STATUS_NULL);
    g_assert(!job->txn);
    if (job->event_hooks && job->event_hooks->on_free) {
        job->event_hooks->on_free(job);
    }
    if (job->driver->free) {
        job->driver->free(job);
    }
    error_free(job->err);
    g_free(job->id);
    g_free(job);
}

Job *job_get(const char *id)
{
    for (Job *job = job_list; job; job = job->list_next) {
        if (job->id && !strcmp(job->id, id)) {
            return job;
        }
    }
    return NULL;
}

Job *job_next(Job *prev)
{
    return prev ? prev->list_next : job_list;
}

const char *job_type_str(const Job *job)
{
    return JobType_str(job->driver->job_type);
}

bool job_is_internal(const Job *job)
{
    return job->id == NULL;
}

bool job_started(const Job *job)
{
    return job->co != NULL;
}

bool job_is_completed(const Job *job)
{
    switch (job->status) {
    case JOB_STATUS_WAITING:
    case JOB_STATUS_PENDING:
    case JOB_STATUS_ABORTING:
    case JOB_STATUS_CONCLUDED:
    case JOB_STATUS_NULL:
        return true;
    default:
        return false;
    }
}

bool job_is_ready(const Job *job)
{
    return job->status == JOB_STATUS_READY ||
           job->status == JOB_STATUS_STANDBY;
}

bool job_user_paused(const Job *job)
{
    return job->user_paused;
}

void job_set_event_hooks(Job *job, const JobEventHooks *hooks)
{
    job->event_hooks = hooks;
}

JobInfo *job_query_single(Job *job)
{
    JobInfo *info = g_new0(JobInfo, 1);

    info->id = g_strdup(job->id);
    info->type = job->driver->job_type;
    info->status = job->status;
    info->current_progress = (int64_t)job->progress_current;
    info->total_progress = (int64_t)job->progress_total;
    if (job->err) {
        info->error = g_strdup(error_get_pretty(job->err));
    }
    return info;
}

/* ---- Inside the job ---- */

bool job_is_cancelled(Job *job)
{
    bool ret;

    job_lock();
    ret = job->cancelled && job->force_cancel;
    job_unlock();
    return ret;
}

bool job_cancel_requested(Job *job)
{
    bool ret;

    job_lock();
    ret = job->cancelled;
    job_unlock();
    return ret;
}

/* Wakes the job's coroutine if it is parked and fn (if given) agrees.
 * The entry is always scheduled, never direct: wakers may be in the
 * middle of a drain or a QMP handler. */
static void job_enter_cond(Job *job, bool (*fn)(Job *job))
{
    bool wake;

    job_lock();
    wake = job->co && !job->deferred_to_main_loop && !job->busy &&
           (!fn || fn(job));
    if (wake) {
        job->busy = true;
    }
    job_unlock();
    if (wake) {
        aio_co_schedule(job->aio_context, job->co);
    }
}

void job_enter(Job *job)
{
    job_enter_cond(job, NULL);
}

/* Not the timer's own pending flag: the timer belongs to the job's
 * context, whose thread clears that flag when it fires, while this runs
 * in the main thread under the job lock. */
static bool job_timer_not_pending(Job *job)
{
    return !job->sleeping;
}

/* Parks the coroutine until job_enter_cond() (or the sleep timer at
 * deadline_ns, if >= 0).  Called with the job lock held; returns with it
 * held. */
static void coroutine_fn job_do_yield_locked(Job *job, int64_t deadline_ns)
{
    if (deadline_ns >= 0) {
        timer_mod_ns(job->sleep_timer, deadline_ns);
    }
    job->sleeping = deadline_ns >= 0;
    job->busy = false;
    job_unlock();
    coroutine_yield();
    job_lock();
    g_assert(job->busy);
    job->sleeping = false;
    if (job->sleep_timer) {
        timer_del(job->sleep_timer);
    }
}

static bool job_should_pause_locked(Job *job)
{
    return job->pause_count > 0;
}

/* Status changes of the job's own coroutine take the lock so that
 * queries see them whole. */
static void job_transition_locked(Job *job, JobStatus to)
{
    job_state_transition(job, to);
}

void coroutine_fn job_pause_point(Job *job)
{
    JobStatus status;

    job_lock();
    if (!job_should_pause_locked(job) ||
        (job->cancelled && job->force_cancel)) {
        job_unlock();
        return;
    }
    job_unlock();
    if (job->driver->pause) {
        job->driver->pause(job);
    }
    job_lock();
    if (job_should_pause_locked(job) &&
        !(job->cancelled && job->force_cancel)) {
        status = job->status;
        job_transition_locked(job, status == JOB_STATUS_READY ?
                                   JOB_STATUS_STANDBY : JOB_STATUS_PAUSED);
        job->paused = true;
        /* Only a resume or a cancel ends the pause: other wake-ups (a
         * speed change, a drain) find the job still paused. */
        do {
            job_do_yield_locked(job, -1);
        } while (job_should_pause_locked(job) &&
                 !(job->cancelled && job->force_cancel));
        job->paused = false;
        job_transition_locked(job, status);
    }
    job_unlock();
    if (job->driver->resume) {
        job->driver->resume(job);
    }
}

void coroutine_fn job_sleep_ns(Job *job, int64_t ns)
{
    job_lock();
    if (job->cancelled && job->force_cancel) {
        job_unlock();
        return;
    }
    if (!job_should_pause_locked(job)) {
        job_do_yield_locked(job, ns >= 0 ? clock_ns() + ns : -1);
    }
    job_unlock();
    job_pause_point(job);
}

void coroutine_fn job_yield(Job *job)
{
    job_lock();
    if (job->cancelled && job->force_cancel) {
        job_unlock();
        return;
    }
    if (!job_should_pause_locked(job)) {
        job_do_yield_locked(job, -1);
    }
    job_unlock();
    job_pause_point(job);
}

static void job_ready_bh(void *opaque)
{
    Job *job = opaque;

    if (job->event_hooks && job->event_hooks->on_ready) {
        job->event_hooks->on_ready(job);
    }
}

void job_transition_to_ready(Job *job)
{
    job_lock();
    job_transition_locked(job, JOB_STATUS_READY);
    job_unlock();
    /* No reference needed: the job is freed only after job_exit(), a BH
     * of the main context scheduled after this one. */
    if (current_aio_context() == aio_main_context()) {
        job_ready_bh(job);
    } else {
        aio_bh_schedule_oneshot(aio_main_context(), job_ready_bh, job);
    }
}

void job_progress_update(Job *job, uint64_t done)
{
    __atomic_store_n(&job->progress_current, job->progress_current + done,
                     __ATOMIC_RELAXED);
}

void job_progress_set_remaining(Job *job, uint64_t remaining)
{
    __atomic_store_n(&job->progress_total, job->progress_current + remaining,
                     __ATOMIC_RELAXED);
}

void job_progress_increase_remaining(Job *job, uint64_t delta)
{
    __atomic_store_n(&job->progress_total, job->progress_total + delta,
                     __ATOMIC_RELAXED);
}

/* ---- Running and completing ---- */

static void job_sleep_timer_cb(void *opaque)
{
    job_enter(opaque);
}

static void job_exit(void *opaque);

static void coroutine_fn job_co_entry(void *opaque)
{
    Job *job = opaque;
    Error *err = NULL;
    QEMUTimer *timer;
    int ret;

    job->sleep_timer = aio_timer_new(job->aio_context, job_sleep_timer_cb,
                                     job);
    /* A job paused before it started stays paused. */
    job_pause_point(job);
    ret = job->driver->run(job, &err);
    job_lock();
    timer = job->sleep_timer;
    job->sleep_timer = NULL;
    job->ret = ret;
    if (ret < 0 && err) {
        job->err = err;
        err = NULL;
    }
    job->deferred_to_main_loop = true;
    job->busy = true;
    job_unlock();
    timer_free(timer);
    error_free(err);
    aio_bh_schedule_oneshot(aio_main_context(), job_exit, job);
}

void job_start(Job *job)
{
    g_assert(job->status == JOB_STATUS_CREATED && !job->co);
    job->co = coroutine_create(job_co_entry, job);
    job_lock();
    job->pause_count--;
    job->busy = true;
    job->paused = false;
    job_transition_locked(job, JOB_STATUS_RUNNING);
    job_unlock();
    aio_co_schedule(job->aio_context, job->co);
}

/* Turns a cancel request into -ECANCELED; a failed job goes aborting. */
static int job_update_rc(Job *job)
{
    if (!job->ret && job_is_cancelled(job)) {
        job->ret = -ECANCELED;
    }
    if (job->ret) {
        if (!job->err) {
            error_setg(&job->err, "%s", g_strerror(-job->ret));
        }
        job_state_transition(job, JOB_STATUS_ABORTING);
    }
    return job->ret;
}

/* Removes a job from the list and the user's view: -> null. */
static void job_do_dismiss(Job *job)
{
    Job **p;

    for (p = &job_list; *p && *p != job; p = &(*p)->list_next) {
        /* find */
    }
    g_assert(*p);
    *p = job->list_next;
    job->list_next = NULL;
    job_txn_del_job(job);
    job_state_transition(job, JOB_STATUS_NULL);
    job_wake_waiters();
    job_unref(job);
}

static void job_conclude(Job *job)
{
    job_state_transition(job, JOB_STATUS_CONCLUDED);
    job_wake_waiters();
    if (job->auto_dismiss || !job_started(job)) {
        job_do_dismiss(job);
    }
}

static void job_finalize_single(Job *job)
{
    const JobEventHooks *hooks = job->event_hooks;

    g_assert(job_is_completed(job));
    /* A late failure of another job of the transaction cancels this
     * one: abort it too. */
    job_update_rc(job);
    if (!job->ret) {
        if (job->driver->commit) {
            job->driver->commit(job);
        }
    } else if (job->driver->abort) {
        job->driver->abort(job);
    }
    if (job->driver->clean) {
        job->driver->clean(job);
    }
    if (job->cb) {
        job->cb(job->opaque, job->ret);
    }
    if (job_started(job) && hooks) {
        if (job_is_cancelled(job)) {
            if (hooks->on_cancelled) {
                hooks->on_cancelled(job);
            }
        } else if (hooks->on_completed) {
            hooks->on_completed(job);
        }
    }
    job_txn_del_job(job);
    job_conclude(job);
}

/* The jobs of txn, each with a reference the caller drops. */
static GPtrArray *job_txn_snapshot(JobTxn *txn)
{
    GPtrArray *jobs = g_ptr_array_new_with_free_func(
        (GDestroyNotify)job_unref);

    for (Job *j = txn->jobs; j; j = j->txn_next) {
        job_ref(j);
        g_ptr_array_add(jobs, j);
    }
    return jobs;
}

static void job_call_user_resume(Job *job)
{
    if (job->driver->user_resume) {
        job->driver->user_resume(job);
    }
    if (job->event_hooks && job->event_hooks->on_user_resume) {
        job->event_hooks->on_user_resume(job);
    }
}

static void job_cancel_async(Job *job, bool force)
{
    if (job->driver->cancel) {
        force = job->driver->cancel(job, force);
    } else {
        force = true;
    }
    job_lock();
    if (job->user_paused) {
        job->user_paused = false;
        g_assert(job->pause_count > 0);
        job->pause_count--;
        job_unlock();
        job_call_user_resume(job);
        job_lock();
    }
    /* A soft cancel after run() returned changes nothing: the job
     * completes as it would have. */
    if (force || !job->deferred_to_main_loop) {
        job->cancelled = true;
        job->force_cancel |= force;
    }
    job_unlock();
}

/* Polls (or, in a main-thread coroutine, waits) until cond(job). */
static void job_wait(Job *job, bool (*cond)(const Job *job))
{
    while (!cond(job)) {
        if (in_coroutine()) {
            co_queue_wait(&job_waiters, NULL);
        } else {
            aio_poll(aio_main_context(), true);
        }
    }
}

static void job_completed_txn_abort(Job *job)
{
    JobTxn *txn = job->txn;
    Job *other;

    if (!txn || txn->aborting) {
        return;
    }
    txn->aborting = true;
    txn->refcnt++;
    job_ref(job);

    /* The others are cancelled by the group; this job's own state (a
     * failure or a cancel) stays as it is. */
    for (other = txn->jobs; other; other = other->txn_next) {
        if (other != job) {
            job_cancel_async(other, false);
            job_enter(other);
        }
    }
    while (txn->jobs) {
        other = txn->jobs;
        job_ref(other);
        if (!job_started(other) && !job_is_completed(other)) {
            job_update_rc(other);
        }
        job_wait(other, job_is_completed);
        if (other->txn == txn) {
            job_finalize_single(other);
        }
        job_unref(other);
    }
    job_unref(job);
    job_txn_unref(txn);
}

static bool job_needs_finalize(const Job *job)
{
    return job->status == JOB_STATUS_PENDING && !job->auto_finalize;
}

static void job_do_finalize(Job *job)
{
    g_autoptr(GPtrArray) jobs = job_txn_snapshot(job->txn);
    int rc = 0;

    for (guint i = 0; i < jobs->len && !rc; i++) {
        Job *j = g_ptr_array_index(jobs, i);

        if (!j->ret && j->driver->prepare) {
            j->ret = j->driver->prepare(j);
        }
        rc = job_update_rc(j);
    }
    if (rc) {
        job_completed_txn_abort(job);
        return;
    }
    for (guint i = 0; i < jobs->len; i++) {
        Job *j = g_ptr_array_index(jobs, i);

        if (j->txn) {
            job_finalize_single(j);
        }
    }
}

static void job_completed_txn_success(Job *job)
{
    JobTxn *txn = job->txn;
    bool manual = false;
    Job *j;

    job_state_transition(job, JOB_STATUS_WAITING);
    job_wake_waiters();
    for (j = txn->jobs; j; j = j->txn_next) {
        if (!job_is_completed(j)) {
            return;
        }
        g_assert(j->ret == 0);
    }
    for (j = txn->jobs; j; j = j->txn_next) {
        job_state_transition(j, JOB_STATUS_PENDING);
        if (!j->auto_finalize && j->event_hooks &&
            j->event_hooks->on_pending) {
            j->event_hooks->on_pending(j);
        }
    }
    for (j = txn->jobs; j; j = j->txn_next) {
        manual |= job_needs_finalize(j);
    }
    if (!manual) {
        job_do_finalize(job);
    }
}

static void job_completed(Job *job)
{
    if (job_update_rc(job)) {
        job_completed_txn_abort(job);
    } else {
        job_completed_txn_success(job);
    }
    job_wake_waiters();
}

/* Main thread, after run() returned. */
static void job_exit(void *opaque)
{
    Job *job = opaque;

    job_ref(job);
    job_lock();
    job->busy = false;
    job_unlock();
    job_completed(job);
    job_unref(job);
}

void job_early_fail(Job *job)
{
    g_assert(job->status == JOB_STATUS_CREATED && !job_started(job));
    job_do_dismiss(job);
}

/* ---- Verbs ---- */

void job_pause(Job *job)
{
    bool paused;

    job_lock();
    job->pause_count++;
    paused = job->paused;
    job_unlock();
    if (!paused) {
        /* A sleeping job wakes up to reach its pause point. */
        job_enter(job);
    }
}

void job_resume(Job *job)
{
    job_lock();
    g_assert(job->pause_count > 0);
    job->pause_count--;
    if (job->pause_count) {
        job_unlock();
        return;
    }
    job_unlock();
    /* Only a job parked in a pause point: a sleeping one keeps its
     * timer. */
    job_enter_cond(job, job_timer_not_pending);
}

bool job_pause_as_user(Job *job)
{
    bool first;

    job_lock();
    first = !job->user_paused;
    if (first) {
        job->user_paused = true;
    }
    job_unlock();
    if (first) {
        job_pause(job);
    }
    return first;
}

void job_user_pause(Job *job, Error **errp)
{
    if (job_apply_verb(job, JOB_VERB_PAUSE, errp)) {
        return;
    }
    if (!job_pause_as_user(job)) {
        error_setg(errp, "Job is already paused");
    }
}

void job_user_resume(Job *job, Error **errp)
{
    bool paused;

    job_lock();
    paused = job->user_paused && job->pause_count > 0;
    job_unlock();
    if (!paused) {
        error_setg(errp, "Can't resume a job that was not paused");
        return;
    }
    if (job_apply_verb(job, JOB_VERB_RESUME, errp)) {
        return;
    }
    job_call_user_resume(job);
    job_lock();
    job->user_paused = false;
    job_unlock();
    job_resume(job);
}

void job_cancel(Job *job, bool force)
{
    if (job->status == JOB_STATUS_CONCLUDED) {
        job_do_dismiss(job);
        return;
    }
    if (job->status == JOB_STATUS_NULL) {
        return;
    }
    job_cancel_async(job, force);
    if (!job_started(job)) {
        job_completed(job);
    } else if (job->deferred_to_main_loop) {
        /* run() returned: unless the cancel took, the job completes as
         * it would have. */
        if (job_is_cancelled(job)) {
            job_completed_txn_abort(job);
        }
    } else {
        job_enter(job);
    }
}

void job_user_cancel(Job *job, bool force, Error **errp)
{
    if (job_apply_verb(job, JOB_VERB_CANCEL, errp)) {
        return;
    }
    job_cancel(job, force);
}

static bool job_is_done(const Job *job)
{
    return job->status == JOB_STATUS_CONCLUDED ||
           job->status == JOB_STATUS_NULL;
}

int job_cancel_sync(Job *job, bool force)
{
    int ret;

    job_ref(job);
    if (job->status == JOB_STATUS_CONCLUDED) {
        ret = job->ret;
        job_do_dismiss(job);
    } else {
        job_cancel(job, force);
        job_wait(job, job_is_done);
        ret = job->ret;
    }
    job_unref(job);
    return ret;
}

void job_cancel_sync_all(void)
{
    Job *job;

    while ((job = job_list) != NULL) {
        job_cancel_sync(job, true);
    }
}

int job_finish_sync(Job *job, Error **errp)
{
    int ret;

    job_ref(job);
    job_wait(job, job_is_completed);
    ret = (job->cancelled && job->ret == 0) ? -ECANCELED : job->ret;
    if (ret && job->err) {
        error_propagate(errp, error_copy(job->err));
    } else if (ret) {
        error_setg(errp, "%s", g_strerror(-ret));
    }
    job_unref(job);
    return ret;
}

void job_complete(Job *job, Error **errp)
{
    if (job_apply_verb(job, JOB_VERB_COMPLETE, errp)) {
        return;
    }
    if (job->cancelled || !job->driver->complete) {
        error_setg(errp, "The active block job '%s' cannot be completed",
                   job->id);
        return;
    }
    job->driver->complete(job, errp);
}

void job_finalize(Job *job, Error **errp)
{
    if (job_apply_verb(job, JOB_VERB_FINALIZE, errp)) {
        return;
    }
    job_ref(job);
    job_do_finalize(job);
    job_unref(job);
}

void job_dismiss(Job **jobp, Error **errp)
{
    Job *job = *jobp;

    if (job_apply_verb(job, JOB_VERB_DISMISS, errp)) {
        return;
    }
    job_do_dismiss(job);
    *jobp = NULL;
}

/* ---- Transactions ---- */

JobTxn *job_txn_new(void)
{
    JobTxn *txn = g_new0(JobTxn, 1);

    txn->refcnt = 1;
    return txn;
}

void job_txn_unref(JobTxn *txn)
{
    if (txn && --txn->refcnt == 0) {
        g_assert(!txn->jobs);
        g_free(txn);
    }
}

unsigned job_txn_size(const JobTxn *txn)
{
    unsigned n = 0;

    for (const Job *j = txn->jobs; j; j = j->txn_next) {
        n++;
    }
    return n;
}

/* ---- Rate limiting ---- */

static double ratelimit_burst(const RateLimit *rl)
{
    return (double)rl->speed * RATE_LIMIT_SLICE_NS / 1e9;
}

static void ratelimit_refill(RateLimit *rl, int64_t now_ns)
{
    double burst = ratelimit_burst(rl);

    if (rl->last_ns == 0) {
        /* Start empty: a free burst at the start would make short jobs
         * run faster than asked. */
        rl->tokens = 0;
    } else if (now_ns > rl->last_ns) {
        rl->tokens += (double)(now_ns - rl->last_ns) * rl->speed / 1e9;
    }
    if (rl->tokens > burst) {
        rl->tokens = burst;
    }
    rl->last_ns = now_ns;
}

void ratelimit_set_speed(RateLimit *rl, uint64_t speed)
{
    rl->speed = speed;
    if (rl->tokens > ratelimit_burst(rl)) {
        rl->tokens = ratelimit_burst(rl);
    }
}

void ratelimit_consume(RateLimit *rl, uint64_t bytes, int64_t now_ns)
{
    if (!rl->speed) {
        return;
    }
    ratelimit_refill(rl, now_ns);
    rl->tokens -= (double)bytes;
}

int64_t ratelimit_delay_ns(RateLimit *rl, int64_t now_ns)
{
    if (!rl->speed) {
        return 0;
    }
    ratelimit_refill(rl, now_ns);
    if (rl->tokens >= 0) {
        return 0;
    }
    return (int64_t)(-rl->tokens * 1e9 / (double)rl->speed) + 1;
}

/* ---- QMP: job-* ---- */

static Job *find_job(const char *id, Error **errp)
{
    Job *job = job_get(id);

    if (!job) {
        error_setg(errp, "Job not found");
    }
    return job;
}

JobInfoList *qmp_query_jobs(Error **errp)
{
    JobInfoList *head = NULL, **tail = &head;

    for (Job *job = job_list; job; job = job->list_next) {
        if (job_is_internal(job)) {
            continue;
        }
        *tail = g_new0(JobInfoList, 1);
        (*tail)->value = job_query_single(job);
        tail = &(*tail)->next;
    }
    return head;
}

void qmp_job_pause(const char *id, Error **errp)
{
    Job *job = find_job(id, errp);

    if (job) {
        job_user_pause(job, errp);
    }
}

void qmp_job_resume(const char *id, Error **errp)
{
    Job *job = find_job(id, errp);

    if (job) {
        job_user_resume(job, errp);
    }
}

void qmp_job_cancel(const char *id, Error **errp)
{
    Job *job = find_job(id, errp);

    if (job) {
        job_user_cancel(job, true, errp);
    }
}

void qmp_job_complete(const char *id, Error **errp)
{
    Job *job = find_job(id, errp);

    if (job) {
        job_complete(job, errp);
    }
}

void qmp_job_finalize(const char *id, Error **errp)
{
    Job *job = find_job(id, errp);

    if (job) {
        job_finalize(job, errp);
    }
}

void qmp_job_dismiss(const char *id, Error **errp)
{
    Job *job = find_job(id, errp);

    if (job) {
        job_dismiss(&job, errp);
    }
}
