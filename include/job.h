/*
 * Jobs: long-running background operations (backup today) with QEMU's
 * state machine, verbs, transactions and events.  The generic part lives
 * here (job.c); block jobs (include/block/blockjob.h) build on it.
 *
 * Life of a job:
 *
 *   job_create()  -> created     (JOB_STATUS_CHANGE for every transition)
 *   job_start()   -> running     the driver's run() coroutine runs in the
 *                                job's AioContext; it calls
 *                                job_pause_point() / job_sleep_ns() and
 *                                checks job_is_cancelled() cooperatively
 *       paused / ready / standby  while running
 *   run() returns -> waiting     until every job of its transaction is done
 *                 -> pending     (BLOCK_JOB_PENDING if !auto_finalize)
 *   finalize      -> prepare(), then commit() or abort(), clean(),
 *                    BLOCK_JOB_COMPLETED or BLOCK_JOB_CANCELLED
 *                 -> concluded   (query-jobs still shows it)
 *   dismiss       -> null        gone (automatic with auto_dismiss)
 *   a failure or cancel: -> aborting -> (abort, clean, event) -> concluded.
 *
 * Verbs a user may apply depend on the state (job_apply_verb()): refused
 * ones fail with "Job 'ID' in state 'S' cannot accept command verb 'V'".
 *
 * Transactions (JobTxn): every job belongs to one.  A job created with
 * txn NULL gets a transaction of its own.  Jobs of one transaction leave
 * 'waiting' together; when one of them fails or is cancelled, all others
 * are cancelled and every job of the group aborts (completion-mode
 * "grouped").  All-or-nothing *start* is the transaction command's part:
 * create every job (state created, in one JobTxn for "grouped", with
 * txn NULL for "individual"), then job_start() each; on failure,
 * job_early_fail() each one created (created -> null, nothing else of
 * the group is touched), then job_txn_unref().
 *
 * Threads: the job list, creation, the verbs, completion, finalization
 * and every event run in the main thread.  The run() coroutine runs in
 * the job's AioContext (that of its main node).  The few fields both
 * sides touch (pause_count, busy, paused, cancelled, status while
 * running) are protected by one global job lock held only for short,
 * non-blocking sections inside job.c; callers never take it.
 */
#ifndef JOB_H
#define JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "qapi/qapi-types.h"
#include "util/aio.h"
#include "util/coroutine.h"
#include "util/error.h"

typedef struct Job Job;
typedef struct JobDriver JobDriver;
typedef struct JobTxn JobTxn;

/* Flags of job_create(). */
typedef enum JobCreateFlags {
    JOB_DEFAULT = 0x00,
    /* Hidden from the user: no id, no events, not in query-jobs. */
    JOB_INTERNAL = 0x01,
    /* Stop in 'pending' until job-finalize. */
    JOB_MANUAL_FINALIZE = 0x02,
    /* Stay 'concluded' until job-dismiss. */
    JOB_MANUAL_DISMISS = 0x04,
} JobCreateFlags;

/* ---- Events ---- */

/* JOB_STATUS_CHANGE is sent on every transition of a non-internal job.
 * A layer above (block jobs) may observe transitions to add its own
 * events: hooks run in the main thread, after the generic event. */
typedef struct JobEventHooks {
    void (*on_ready)(Job *job);         /* BLOCK_JOB_READY */
    void (*on_pending)(Job *job);       /* BLOCK_JOB_PENDING */
    void (*on_completed)(Job *job);     /* BLOCK_JOB_COMPLETED */
    void (*on_cancelled)(Job *job);     /* BLOCK_JOB_CANCELLED */
    /* Not events, but the same layering: a user resume (after the
     * driver's user_resume; block jobs reset their I/O status), and the
     * last reference (before the driver's free; block jobs release their
     * nodes). */
    void (*on_user_resume)(Job *job);
    void (*on_free)(Job *job);
} JobEventHooks;

/*
 * What a kind of job provides.  One const instance per job type; a
 * driver for block jobs is a BlockJobDriver whose first member is this.
 * Unless said otherwise, callbacks run in the main thread.
 */
struct JobDriver {
    /* Size of the job's struct (>= sizeof(Job), Job first). */
    size_t instance_size;
    JobType job_type;

    /*
     * The job's work, in a coroutine in the job's AioContext.  Returns 0
     * or -errno; on failure it may set *errp (else the message is
     * strerror).  It must call job_pause_point() (or job_sleep_ns()) often
     * and return soon after job_is_cancelled() becomes true.  Required.
     */
    int coroutine_fn (*run)(Job *job, Error **errp);

    /* Optional: the job is about to pause / has resumed, in its
     * coroutine (job's context). */
    void coroutine_fn (*pause)(Job *job);
    void coroutine_fn (*resume)(Job *job);
    /* Optional: a user resume (job-resume, block-job-resume, or a cancel
     * of a user-paused job) before the job is woken. */
    void (*user_resume)(Job *job);

    /* Optional: job-complete for a job in 'ready'.  Without it, complete
     * is refused. */
    void (*complete)(Job *job, Error **errp);

    /* Optional: called for every job of the transaction once all are
     * done, before commit; a negative return aborts the transaction. */
    int (*prepare)(Job *job);
    /* Optional: exactly one of commit (success) / abort (failure or
     * cancel) runs, then clean always. */
    void (*commit)(Job *job);
    void (*abort)(Job *job);
    void (*clean)(Job *job);

    /*
     * Optional: a cancel request arrives (force as given by the user).
     * Returns whether the cancel is to be treated as forced (jobs
     * without this are always force-cancelled).
     */
    bool (*cancel)(Job *job, bool force);

    /* Optional: frees what the driver added to the struct (the job
     * layer frees the struct itself).  Last reference dropped. */
    void (*free)(Job *job);
};

/*
 * A job.  Owned by the global job list from creation until dismissed;
 * job_ref()/job_unref() keep it alive meanwhile.  Fields are read-only
 * outside job.c unless noted; read them through the accessors.
 */
struct Job {
    char *id;                   /* NULL for internal jobs */
    const JobDriver *driver;
    int refcnt;                 /* main thread */
    JobStatus status;           /* job lock */
    AioContext *aio_context;    /* where run() runs; set at creation */
    Coroutine *co;              /* run()'s coroutine, NULL before start */
    QEMUTimer *sleep_timer;     /* job_sleep_ns(), in aio_context */

    /* Pausing (job lock).  pause_count counts reasons to pause: the
     * creation itself until job_start(), a user pause (at most one,
     * user_paused), drained nodes, an error with policy 'stop'. */
    int pause_count;
    bool user_paused;
    bool paused;                /* parked in job_pause_point() */
    bool busy;                  /* running, not yielded in a pause point
                                 * or sleep */
    bool sleeping;              /* yielded with sleep_timer armed */

    bool cancelled;             /* a cancel was requested */
    bool force_cancel;          /* ... and it was a forced one */
    bool deferred_to_main_loop; /* run() has returned */

    bool auto_finalize;
    bool auto_dismiss;

    /* Progress, written by the job's coroutine (relaxed reads in
     * queries are fine). */
    uint64_t progress_current;
    uint64_t progress_total;

    int ret;                    /* run()'s result; then the final one */
    Error *err;                 /* the failure's message, if any */

    /* Completion callback (optional), before the completion event. */
    void (*cb)(void *opaque, int ret);
    void *opaque;

    JobTxn *txn;                /* main thread */
    const JobEventHooks *event_hooks;   /* NULL: only JOB_STATUS_CHANGE */

    /* Membership of the job list and of txn (job.c). */
    Job *list_next;
    Job *txn_next;
};

/* ---- Creation and start (main thread) ---- */

/*
 * Creates a job of driver->instance_size bytes in state 'created' with
 * one reference (held by the job list; dismissing drops it).  job_id:
 * required unless JOB_INTERNAL; must be well formed (a letter, then
 * letters, digits, '-', '.', '_') — "Invalid job ID 'x'" — and unused —
 * "Job ID 'x' already in use".  txn: the transaction to join, or NULL for
 * a new one of its own.  ctx: where run() will run.  cb/opaque: optional,
 * called at completion with the final result.  Returns NULL with errp set.
 */
void *job_create(const char *job_id, const JobDriver *driver, JobTxn *txn,
                 AioContext *ctx, int flags,
                 void (*cb)(void *opaque, int ret), void *opaque,
                 Error **errp);
/* Starts run() in the job's context: created -> running. */
void job_start(Job *job);
/*
 * Disposes of a job that was created but never started (a failed
 * transaction, a setup error after creation): it leaves its
 * transaction, goes to 'null' and the job list's reference is dropped
 * (the job is freed unless the caller holds another one).
 */
void job_early_fail(Job *job);

void job_ref(Job *job);
/* The last reference frees the job (driver->free first). */
void job_unref(Job *job);

/* ---- Lookup and properties (main thread) ---- */

/* The job with that id, or NULL. */
Job *job_get(const char *id);
/* Iterates over all jobs (internal ones too) in creation order. */
Job *job_next(Job *prev);
const char *job_type_str(const Job *job);
bool job_is_internal(const Job *job);
/* The job has been started (its coroutine exists). */
bool job_started(const Job *job);
/* concluded or null, or aborting / waiting / pending (run() returned). */
bool job_is_completed(const Job *job);
bool job_is_ready(const Job *job);
bool job_user_paused(const Job *job);
/* The query-jobs entry (caller frees with qapi_free_JobInfo). */
JobInfo *job_query_single(Job *job);

/* ---- Inside the job (run()'s coroutine, job's context) ---- */

/* A forced cancel (or any cancel of a job that is not ready) was
 * requested: run() should stop and return.  Any thread. */
bool job_is_cancelled(Job *job);
/* Any cancel was requested (also a soft one of a ready job). */
bool job_cancel_requested(Job *job);
/*
 * Parks the job while it should pause (pause_count > 0 and not
 * cancelled): running -> paused (ready -> standby), back on resume.
 * Calls driver->pause/resume around it.
 */
void coroutine_fn job_pause_point(Job *job);
/*
 * Sleeps ns nanoseconds unless cancelled, or woken early by a cancel,
 * pause or speed change; then runs a pause point.  ns < 0: no timer
 * (until woken).
 */
void coroutine_fn job_sleep_ns(Job *job, int64_t ns);
/* Yields until job_enter() (for jobs waiting on their own events). */
void coroutine_fn job_yield(Job *job);
/* Wakes the job's coroutine if it is in job_yield/job_sleep_ns
 * (not in a pause point while it should pause).  Any thread. */
void job_enter(Job *job);
/* running -> ready (BLOCK_JOB_READY for block jobs via the ready hook). */
void job_transition_to_ready(Job *job);

/* Progress: current/total as shown by query-jobs (current-progress,
 * total-progress) and by block jobs (offset, len). */
void job_progress_update(Job *job, uint64_t done);
/* total = current + remaining. */
void job_progress_set_remaining(Job *job, uint64_t remaining);
void job_progress_increase_remaining(Job *job, uint64_t delta);

/* ---- Verbs (main thread; QMP and transaction code) ---- */

/* 0 if job's state allows verb, else -EPERM with "Job 'ID' in state 'S'
 * cannot accept command verb 'V'". */
int job_apply_verb(Job *job, JobVerb verb, Error **errp);
/* Internal pause/resume (pause counts): drained nodes, errors. */
void job_pause(Job *job);
void job_resume(Job *job);
/* A user-visible pause (what job-pause does, also used by a block job's
 * error policy 'stop'): false if the job already was user-paused.  Any
 * thread. */
bool job_pause_as_user(Job *job);
/* job-pause / job-resume: "Job is already paused", "Can't resume a job
 * that was not paused". */
void job_user_pause(Job *job, Error **errp);
void job_user_resume(Job *job, Error **errp);
/* Requests cancellation; a not yet started job is aborted at once, a
 * concluded one is dismissed. */
void job_cancel(Job *job, bool force);
/* job-cancel (force true) and block-job-cancel: verb check + cancel. */
void job_user_cancel(Job *job, bool force, Error **errp);
/* Cancels and waits until the job concluded (a job that had concluded
 * already is dismissed).  Waits by polling the main loop, or from a main-thread
 * coroutine by yielding.  Returns its final result (-ECANCELED when
 * cancelled).  The caller's reference, if any, stays valid. */
int job_cancel_sync(Job *job, bool force);
/* Cancels every job and waits for all (daemon shutdown). */
void job_cancel_sync_all(void);
/* Waits (as job_cancel_sync) until run() returned and the job was
 * completed (waiting, pending, aborting, concluded or null); returns its
 * result, with errp set on failure. */
int job_finish_sync(Job *job, Error **errp);
/* job-complete: only in 'ready' and with driver->complete, else "The
 * active block job 'ID' cannot be completed". */
void job_complete(Job *job, Error **errp);
/* job-finalize: a 'pending' job and the rest of its transaction are
 * prepared and committed (or aborted) and conclude. */
void job_finalize(Job *job, Error **errp);
/* Dismisses a concluded job; *jobp is set to NULL (freed). */
void job_dismiss(Job **jobp, Error **errp);

/* ---- Transactions (main thread) ---- */

/* A new empty transaction with one reference owned by the caller. */
JobTxn *job_txn_new(void);
void job_txn_unref(JobTxn *txn);
/* Number of jobs still in txn. */
unsigned job_txn_size(const JobTxn *txn);

/* ---- Rate limiting (token bucket, bytes per second) ---- */

/*
 * speed 0 means unlimited.  The bucket starts empty, fills at speed
 * bytes/s and holds at most a short burst (RATE_LIMIT_SLICE_NS worth of
 * bytes, what an idle period may save up); consuming more than it holds
 * yields a delay.  Owned by the job's coroutine; set_speed may be called
 * from the main thread between the job's accesses (the job layer wakes
 * the job so that it recomputes its delay).
 */
#define RATE_LIMIT_SLICE_NS 100000000LL   /* 100 ms */

typedef struct RateLimit {
    uint64_t speed;      /* bytes/s, 0 = unlimited */
    int64_t last_ns;     /* when tokens were last refilled */
    double tokens;       /* may go negative: bytes owed */
} RateLimit;

void ratelimit_set_speed(RateLimit *rl, uint64_t speed);
/* Accounts bytes just transferred (or about to be). */
void ratelimit_consume(RateLimit *rl, uint64_t bytes, int64_t now_ns);
/* Nanoseconds to wait before the next transfer (0: go on). */
int64_t ratelimit_delay_ns(RateLimit *rl, int64_t now_ns);

/* ---- Events ---- */

/* Installed by blockjob.c right after job_create() of a block job. */
void job_set_event_hooks(Job *job, const JobEventHooks *hooks);

#endif
