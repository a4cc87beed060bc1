/*
 * Unit tests of the job state machine (job.c) and block jobs
 * (block/blockjob.c): ids, verbs and the states that refuse them,
 * pause/resume counts, cancellation, manual finalize/dismiss,
 * transactions, progress, the rate limiter, jobs in an iothread, error
 * policies, nodes held by block jobs and drain.
 *
 * The jobs are real: a test driver whose run() works in steps, sleeping
 * between them through job_sleep_ns() and counting progress.  Events go
 * through the real generated emitters into the recorder below, registered
 * as the event sink (the monitor's part in the daemon).
 */
#include <errno.h>
#include <glib.h>
#include <jansson.h>
#include <string.h>

#include "block/block-backend.h"
#include "block/blockjob.h"
#include "job.h"
#include "qapi/qapi-commands.h"
#include "qapi/qapi-visit.h"

/* ---- Event recorder ---- */

static GPtrArray *events;

static void record_event(const char *event, const char *data_json)
{
    g_assert(current_aio_context() == aio_main_context());
    g_ptr_array_add(events, g_strdup_printf("%s %s", event,
                                            data_json ? data_json : ""));
}

static void events_reset(void)
{
    g_ptr_array_set_size(events, 0);
}

/* The statuses of JOB_STATUS_CHANGE events for id, comma-separated. */
static char *status_trail(const char *id)
{
    GString *s = g_string_new("");
    g_autofree char *needle = g_strdup_printf("\"id\": \"%s\"", id);

    for (guint i = 0; i < events->len; i++) {
        const char *ev = g_ptr_array_index(events, i);
        const char *st;

        if (!g_str_has_prefix(ev, "JOB_STATUS_CHANGE ") ||
            !strstr(ev, needle)) {
            continue;
        }
        st = strstr(ev, "\"status\": \"");
        g_assert_nonnull(st);
        st += strlen("\"status\": \"");
        if (s->len) {
            g_string_append_c(s, ',');
        }
        g_string_append_len(s, st, strchr(st, '"') - st);
    }
    return g_string_free(s, false);
}

/* Every event other than JOB_STATUS_CHANGE, one per line. */
static char *other_events(void)
{
    GString *s = g_string_new("");

    for (guint i = 0; i < events->len; i++) {
        const char *ev = g_ptr_array_index(events, i);

        if (!g_str_has_prefix(ev, "JOB_STATUS_CHANGE ")) {
            g_string_append_printf(s, "%s\n", ev);
        }
    }
    return g_string_free(s, false);
}

/* ---- The test job ---- */

typedef struct TestLog {
    int commits, aborts, cleans, prepares;
    int cb_ret;
    int cb_calls;
} TestLog;

typedef struct TestJob {
    Job job;
    int steps;
    int64_t step_ns;
    int fail_at;            /* step that fails with -EIO, -1 for none */
    int prepare_ret;
    TestLog *log;
} TestJob;

static int coroutine_fn test_job_run(Job *job, Error **errp)
{
    TestJob *t = (TestJob *)job;

    job_progress_set_remaining(job, (uint64_t)t->steps);
    for (int i = 0; i < t->steps; i++) {
        if (i == t->fail_at) {
            error_setg(errp, "step %d failed", i);
            return -EIO;
        }
        job_sleep_ns(job, t->step_ns);
        if (job_is_cancelled(job)) {
            return 0;
        }
        job_progress_update(job, 1);
    }
    return 0;
}

static int test_job_prepare(Job *job)
{
    TestJob *t = (TestJob *)job;

    t->log->prepares++;
    return t->prepare_ret;
}

static void test_job_commit(Job *job)
{
    ((TestJob *)job)->log->commits++;
}

static void test_job_abort(Job *job)
{
    ((TestJob *)job)->log->aborts++;
}

static void test_job_clean(Job *job)
{
    ((TestJob *)job)->log->cleans++;
}

static const JobDriver test_job_driver = {
    .instance_size = sizeof(TestJob),
    .job_type = JOB_TYPE_BACKUP,
    .run = test_job_run,
    .prepare = test_job_prepare,
    .commit = test_job_commit,
    .abort = test_job_abort,
    .clean = test_job_clean,
};

static void test_cb(void *opaque, int ret)
{
    TestLog *log = opaque;

    log->cb_ret = ret;
    log->cb_calls++;
}

/* Creates a test job (with an extra reference for the test) or fails. */
static TestJob *test_job_new(const char *id, JobTxn *txn, int flags,
                             int steps, int64_t step_ns, TestLog *log)
{
    TestJob *t = job_create(id, &test_job_driver, txn, aio_main_context(),
                            flags, test_cb, log, &error_abort);

    t->steps = steps;
    t->step_ns = step_ns;
    t->fail_at = -1;
    t->log = log;
    job_ref(&t->job);
    return t;
}

static void poll_until_status(Job *job, JobStatus status)
{
    while (__atomic_load_n(&job->status, __ATOMIC_ACQUIRE) != status) {
        aio_poll(aio_main_context(), true);
    }
}

/* Lets the job run for a few loop iterations. */
static void poll_some(int n)
{
    for (int i = 0; i < n; i++) {
        aio_poll(aio_main_context(), false);
    }
}

static char *error_msg(Error *err)
{
    char *msg;

    g_assert_nonnull(err);
    msg = g_strdup(error_get_pretty(err));
    error_free(err);
    return msg;
}

/* ---- Generic jobs ---- */

static void test_ids(void)
{
    Error *err = NULL;
    g_autofree char *m1 = NULL, *m2 = NULL, *m3 = NULL, *m4 = NULL;
    TestLog log = { 0 };
    TestJob *t;

    events_reset();
    g_assert_null(job_create("9bad", &test_job_driver, NULL,
                             aio_main_context(), 0, NULL, NULL, &err));
    m1 = error_msg(err);
    g_assert_cmpstr(m1, ==, "Invalid job ID '9bad'");
    err = NULL;
    g_assert_null(job_create(NULL, &test_job_driver, NULL,
                             aio_main_context(), 0, NULL, NULL, &err));
    m2 = error_msg(err);
    g_assert_cmpstr(m2, ==, "An explicit job ID is required");
    err = NULL;
    g_assert_null(job_create("x", &test_job_driver, NULL,
                             aio_main_context(), JOB_INTERNAL, NULL, NULL,
                             &err));
    m3 = error_msg(err);
    g_assert_cmpstr(m3, ==, "Cannot specify job ID for internal job");

    t = test_job_new("j-1.a_b", NULL, 0, 1, 0, &log);
    err = NULL;
    g_assert_null(job_create("j-1.a_b", &test_job_driver, NULL,
                             aio_main_context(), 0, NULL, NULL, &err));
    m4 = error_msg(err);
    g_assert_cmpstr(m4, ==, "Job ID 'j-1.a_b' already in use");
    g_assert_true(job_get("j-1.a_b") == &t->job);
    g_assert_cmpint(t->job.status, ==, JOB_STATUS_CREATED);
    job_early_fail(&t->job);
    g_assert_null(job_get("j-1.a_b"));
    g_assert_cmpint(t->job.status, ==, JOB_STATUS_NULL);
    job_unref(&t->job);
    g_autofree char *trail = status_trail("j-1.a_b");
    g_assert_cmpstr(trail, ==, "created,null");
}

static void test_run_to_completion(void)
{
    TestLog log = { 0 };
    TestJob *t;
    g_autofree char *trail = NULL;

    events_reset();
    t = test_job_new("j1", NULL, 0, 5, 1000, &log);
    job_start(&t->job);
    poll_until_status(&t->job, JOB_STATUS_NULL);
    trail = status_trail("j1");
    g_assert_cmpstr(trail, ==,
                    "created,running,waiting,pending,concluded,null");
    g_assert_cmpint(t->job.ret, ==, 0);
    g_assert_cmpuint(t->job.progress_current, ==, 5);
    g_assert_cmpuint(t->job.progress_total, ==, 5);
    g_assert_cmpint(log.prepares, ==, 1);
    g_assert_cmpint(log.commits, ==, 1);
    g_assert_cmpint(log.aborts, ==, 0);
    g_assert_cmpint(log.cleans, ==, 1);
    g_assert_cmpint(log.cb_calls, ==, 1);
    g_assert_cmpint(log.cb_ret, ==, 0);
    g_assert_null(job_get("j1"));
    job_unref(&t->job);
}

static void test_failure(void)
{
    TestLog log = { 0 };
    TestJob *t;
    g_autofree char *trail = NULL;

    events_reset();
    t = test_job_new("jf", NULL, JOB_MANUAL_DISMISS, 5, 1000, &log);
    t->fail_at = 2;
    job_start(&t->job);
    poll_until_status(&t->job, JOB_STATUS_CONCLUDED);
    trail = status_trail("jf");
    g_assert_cmpstr(trail, ==, "created,running,aborting,concluded");
    g_assert_cmpint(t->job.ret, ==, -EIO);
    g_assert_cmpuint(t->job.progress_current, ==, 2);
    g_assert_cmpint(log.prepares, ==, 0);
    g_assert_cmpint(log.commits, ==, 0);
    g_assert_cmpint(log.aborts, ==, 1);
    g_assert_cmpint(log.cleans, ==, 1);
    g_assert_cmpint(log.cb_ret, ==, -EIO);

    /* query-jobs shows the concluded job with its error. */
    JobInfoList *list = qmp_query_jobs(&error_abort);
    g_assert_nonnull(list);
    g_assert_cmpstr(list->value->id, ==, "jf");
    g_assert_cmpint(list->value->status, ==, JOB_STATUS_CONCLUDED);
    g_assert_cmpstr(list->value->error, ==, "step 2 failed");
    g_assert_cmpint(list->value->current_progress, ==, 2);
    g_assert_cmpint(list->value->total_progress, ==, 5);
    g_assert_null(list->next);
    qapi_free_JobInfoList(list);

    qmp_job_dismiss("jf", &error_abort);
    g_assert_cmpint(t->job.status, ==, JOB_STATUS_NULL);
    job_unref(&t->job);
}

static void test_verbs_refused(void)
{
    TestLog log = { 0 };
    TestJob *t;
    Error *err = NULL;
    g_autofree char *m1 = NULL, *m2 = NULL, *m3 = NULL, *m4 = NULL;
    g_autofree char *m5 = NULL;

    events_reset();
    t = test_job_new("jv", NULL, 0, 1000000, 1000000, &log);
    job_start(&t->job);
    qmp_job_complete("jv", &err);
    m1 = error_msg(err);
    g_assert_cmpstr(m1, ==, "Job 'jv' in state 'running' cannot accept "
                    "command verb 'complete'");
    err = NULL;
    qmp_job_finalize("jv", &err);
    m2 = error_msg(err);
    g_assert_cmpstr(m2, ==, "Job 'jv' in state 'running' cannot accept "
                    "command verb 'finalize'");
    err = NULL;
    qmp_job_dismiss("jv", &err);
    m3 = error_msg(err);
    g_assert_cmpstr(m3, ==, "Job 'jv' in state 'running' cannot accept "
                    "command verb 'dismiss'");
    err = NULL;
    qmp_job_pause("nope", &err);
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_GENERIC_ERROR);
    m4 = error_msg(err);
    g_assert_cmpstr(m4, ==, "Job not found");
    err = NULL;
    qmp_block_job_pause("jv", &err);
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_DEVICE_NOT_ACTIVE);
    m5 = error_msg(err);
    g_assert_cmpstr(m5, ==, "Block job 'jv' not found");

    /* Every verb against every state, through the table. */
    t->job.status = JOB_STATUS_CONCLUDED;
    g_assert_cmpint(job_apply_verb(&t->job, JOB_VERB_DISMISS, NULL), ==, 0);
    g_assert_cmpint(job_apply_verb(&t->job, JOB_VERB_CANCEL, NULL), ==,
                    -EPERM);
    t->job.status = JOB_STATUS_PENDING;
    g_assert_cmpint(job_apply_verb(&t->job, JOB_VERB_FINALIZE, NULL), ==, 0);
    g_assert_cmpint(job_apply_verb(&t->job, JOB_VERB_CANCEL, NULL), ==, 0);
    g_assert_cmpint(job_apply_verb(&t->job, JOB_VERB_PAUSE, NULL), ==,
                    -EPERM);
    t->job.status = JOB_STATUS_READY;
    g_assert_cmpint(job_apply_verb(&t->job, JOB_VERB_COMPLETE, NULL), ==, 0);
    g_assert_cmpint(job_apply_verb(&t->job, JOB_VERB_CHANGE, NULL), ==, 0);
    t->job.status = JOB_STATUS_PAUSED;
    g_assert_cmpint(job_apply_verb(&t->job, JOB_VERB_CHANGE, NULL), ==,
                    -EPERM);
    g_assert_cmpint(job_apply_verb(&t->job, JOB_VERB_SET_SPEED, NULL), ==, 0);
    t->job.status = JOB_STATUS_RUNNING;

    qmp_job_cancel("jv", &error_abort);
    poll_until_status(&t->job, JOB_STATUS_NULL);
    job_unref(&t->job);
}

static void test_pause_resume(void)
{
    TestLog log = { 0 };
    TestJob *t;
    Error *err = NULL;
    g_autofree char *m1 = NULL, *m2 = NULL, *trail = NULL;

    events_reset();
    t = test_job_new("jp", NULL, 0, 50, 100000, &log);
    qmp_job_resume("jp", &err);
    m1 = error_msg(err);
    g_assert_cmpstr(m1, ==, "Can't resume a job that was not paused");
    job_start(&t->job);
    qmp_job_pause("jp", &error_abort);
    err = NULL;
    qmp_job_pause("jp", &err);
    m2 = error_msg(err);
    g_assert_cmpstr(m2, ==, "Job is already paused");
    poll_until_status(&t->job, JOB_STATUS_PAUSED);
    g_assert_true(t->job.paused);
    g_assert_false(t->job.busy);

    /* An internal pause on top: one user resume is not enough. */
    job_pause(&t->job);
    qmp_job_resume("jp", &error_abort);
    poll_some(20);
    g_assert_cmpint(t->job.status, ==, JOB_STATUS_PAUSED);
    g_assert_cmpint(t->job.pause_count, ==, 1);
    job_resume(&t->job);
    poll_until_status(&t->job, JOB_STATUS_NULL);
    trail = status_trail("jp");
    g_assert_cmpstr(trail, ==, "created,running,paused,running,waiting,"
                    "pending,concluded,null");
    g_assert_cmpuint(t->job.progress_current, ==, 50);
    job_unref(&t->job);
}

static void test_pause_before_start(void)
{
    TestLog log = { 0 };
    TestJob *t;
    g_autofree char *trail = NULL;

    events_reset();
    t = test_job_new("jb", NULL, 0, 3, 1000, &log);
    qmp_job_pause("jb", &error_abort);
    job_start(&t->job);
    poll_until_status(&t->job, JOB_STATUS_PAUSED);
    g_assert_cmpuint(t->job.progress_current, ==, 0);
    qmp_job_resume("jb", &error_abort);
    poll_until_status(&t->job, JOB_STATUS_NULL);
    trail = status_trail("jb");
    g_assert_cmpstr(trail, ==, "created,running,paused,running,waiting,"
                    "pending,concluded,null");
    job_unref(&t->job);
}

static void test_cancel_sleeping(void)
{
    TestLog log = { 0 };
    TestJob *t;
    g_autofree char *trail = NULL;

    events_reset();
    /* Sleeps an hour per step: only the cancel's wake-up ends it. */
    t = test_job_new("jc", NULL, 0, 10, 3600LL * 1000000000LL, &log);
    job_start(&t->job);
    poll_some(5);
    g_assert_false(t->job.busy);
    g_assert_cmpint(job_cancel_sync(&t->job, true), ==, -ECANCELED);
    g_assert_cmpint(t->job.status, ==, JOB_STATUS_NULL);
    trail = status_trail("jc");
    g_assert_cmpstr(trail, ==, "created,running,aborting,concluded,null");
    g_assert_cmpint(log.aborts, ==, 1);
    g_assert_cmpint(log.commits, ==, 0);
    g_assert_cmpint(log.cb_ret, ==, -ECANCELED);
    job_unref(&t->job);
}

static void test_cancel_paused(void)
{
    TestLog log = { 0 };
    TestJob *t;

    events_reset();
    t = test_job_new("jcp", NULL, 0, 10, 1000000, &log);
    job_start(&t->job);
    qmp_job_pause("jcp", &error_abort);
    poll_until_status(&t->job, JOB_STATUS_PAUSED);
    /* job-cancel of a user-paused job also lifts the user pause. */
    qmp_job_cancel("jcp", &error_abort);
    g_assert_false(t->job.user_paused);
    poll_until_status(&t->job, JOB_STATUS_NULL);
    g_assert_cmpint(t->job.ret, ==, -ECANCELED);
    job_unref(&t->job);
}

static void test_cancel_not_started(void)
{
    TestLog log = { 0 };
    TestJob *t;
    g_autofree char *trail = NULL;

    events_reset();
    t = test_job_new("jn", NULL, 0, 10, 1000, &log);
    job_cancel(&t->job, true);
    g_assert_cmpint(t->job.status, ==, JOB_STATUS_NULL);
    trail = status_trail("jn");
    g_assert_cmpstr(trail, ==, "created,aborting,concluded,null");
    g_assert_cmpint(log.aborts, ==, 1);
    g_assert_cmpint(log.cleans, ==, 1);
    job_unref(&t->job);
}

static void test_manual_finalize_dismiss(void)
{
    TestLog log = { 0 };
    TestJob *t;
    Error *err = NULL;
    g_autofree char *m1 = NULL, *trail = NULL;

    events_reset();
    t = test_job_new("jm", NULL, JOB_MANUAL_FINALIZE | JOB_MANUAL_DISMISS,
                     2, 1000, &log);
    job_start(&t->job);
    poll_until_status(&t->job, JOB_STATUS_PENDING);
    poll_some(5);
    g_assert_cmpint(t->job.status, ==, JOB_STATUS_PENDING);
    g_assert_cmpint(log.commits, ==, 0);
    qmp_job_dismiss("jm", &err);
    m1 = error_msg(err);
    g_assert_cmpstr(m1, ==, "Job 'jm' in state 'pending' cannot accept "
                    "command verb 'dismiss'");
    qmp_job_finalize("jm", &error_abort);
    g_assert_cmpint(t->job.status, ==, JOB_STATUS_CONCLUDED);
    g_assert_cmpint(log.commits, ==, 1);
    qmp_job_dismiss("jm", &error_abort);
    g_assert_cmpint(t->job.status, ==, JOB_STATUS_NULL);
    trail = status_trail("jm");
    g_assert_cmpstr(trail, ==,
                    "created,running,waiting,pending,concluded,null");
    job_unref(&t->job);
}

static void test_prepare_fails(void)
{
    TestLog log = { 0 };
    TestJob *t;
    g_autofree char *trail = NULL;

    events_reset();
    t = test_job_new("jpf", NULL, 0, 1, 1000, &log);
    t->prepare_ret = -ENOSPC;
    job_start(&t->job);
    poll_until_status(&t->job, JOB_STATUS_NULL);
    trail = status_trail("jpf");
    g_assert_cmpstr(trail, ==,
                    "created,running,waiting,pending,aborting,concluded,null");
    g_assert_cmpint(log.aborts, ==, 1);
    g_assert_cmpint(log.commits, ==, 0);
    g_assert_cmpint(log.cb_ret, ==, -ENOSPC);
    job_unref(&t->job);
}

static void test_txn_success_waits(void)
{
    TestLog la = { 0 }, lb = { 0 };
    JobTxn *txn = job_txn_new();
    TestJob *a, *b;
    g_autofree char *ta = NULL, *tb = NULL;

    events_reset();
    a = test_job_new("ta", txn, 0, 1, 0, &la);
    b = test_job_new("tb", txn, 0, 1, 3600LL * 1000000000LL, &lb);
    g_assert_cmpuint(job_txn_size(txn), ==, 2);
    job_start(&a->job);
    job_start(&b->job);
    poll_until_status(&a->job, JOB_STATUS_WAITING);
    poll_some(5);
    /* a waits for b, which sleeps: wake b up without cancelling it. */
    g_assert_cmpint(a->job.status, ==, JOB_STATUS_WAITING);
    g_assert_cmpint(la.commits, ==, 0);
    job_enter(&b->job);
    poll_until_status(&a->job, JOB_STATUS_NULL);
    poll_until_status(&b->job, JOB_STATUS_NULL);
    ta = status_trail("ta");
    tb = status_trail("tb");
    g_assert_cmpstr(ta, ==,
                    "created,running,waiting,pending,concluded,null");
    g_assert_cmpstr(tb, ==,
                    "created,running,waiting,pending,concluded,null");
    g_assert_cmpint(la.commits, ==, 1);
    g_assert_cmpint(lb.commits, ==, 1);
    job_txn_unref(txn);
    job_unref(&a->job);
    job_unref(&b->job);
}

static void test_txn_failure_cancels_group(void)
{
    TestLog la = { 0 }, lb = { 0 }, lc = { 0 };
    JobTxn *txn = job_txn_new();
    TestJob *a, *b, *c;
    g_autofree char *ta = NULL, *tb = NULL, *tc = NULL;

    events_reset();
    a = test_job_new("fa", txn, 0, 3, 1000, &la);
    b = test_job_new("fb", txn, 0, 100, 3600LL * 1000000000LL, &lb);
    c = test_job_new("fc", txn, 0, 1, 0, &lc);
    a->fail_at = 1;
    /* c is done (waiting for the group) before a fails. */
    job_start(&c->job);
    poll_until_status(&c->job, JOB_STATUS_WAITING);
    job_start(&a->job);
    job_start(&b->job);
    poll_until_status(&a->job, JOB_STATUS_NULL);
    poll_until_status(&b->job, JOB_STATUS_NULL);
    poll_until_status(&c->job, JOB_STATUS_NULL);
    ta = status_trail("fa");
    tb = status_trail("fb");
    tc = status_trail("fc");
    g_assert_cmpstr(ta, ==, "created,running,aborting,concluded,null");
    g_assert_cmpstr(tb, ==, "created,running,aborting,concluded,null");
    /* c finished first and waited; the group's failure aborts it too. */
    g_assert_cmpstr(tc, ==,
                    "created,running,waiting,aborting,concluded,null");
    g_assert_cmpint(a->job.ret, ==, -EIO);
    g_assert_cmpint(b->job.ret, ==, -ECANCELED);
    g_assert_cmpint(c->job.ret, ==, -ECANCELED);
    g_assert_cmpint(la.aborts + lb.aborts + lc.aborts, ==, 3);
    g_assert_cmpint(la.commits + lb.commits + lc.commits, ==, 0);
    g_assert_cmpuint(job_txn_size(txn), ==, 0);
    job_txn_unref(txn);
    job_unref(&a->job);
    job_unref(&b->job);
    job_unref(&c->job);
}

static void test_txn_individual(void)
{
    TestLog la = { 0 }, lb = { 0 };
    TestJob *a, *b;

    events_reset();
    /* No shared transaction: a's failure leaves b alone. */
    a = test_job_new("ia", NULL, 0, 3, 1000, &la);
    b = test_job_new("ib", NULL, 0, 3, 1000, &lb);
    a->fail_at = 0;
    job_start(&a->job);
    job_start(&b->job);
    poll_until_status(&a->job, JOB_STATUS_NULL);
    poll_until_status(&b->job, JOB_STATUS_NULL);
    g_assert_cmpint(a->job.ret, ==, -EIO);
    g_assert_cmpint(b->job.ret, ==, 0);
    g_assert_cmpint(lb.commits, ==, 1);
    job_unref(&a->job);
    job_unref(&b->job);
}

static void test_cancel_sync_all(void)
{
    TestLog la = { 0 }, lb = { 0 };
    TestJob *a, *b;

    events_reset();
    a = test_job_new("sa", NULL, 0, 10, 3600LL * 1000000000LL, &la);
    b = test_job_new("sb", NULL, JOB_MANUAL_DISMISS, 1, 0, &lb);
    job_start(&a->job);
    job_start(&b->job);
    poll_until_status(&b->job, JOB_STATUS_CONCLUDED);
    job_cancel_sync_all();
    g_assert_null(job_next(NULL));
    g_assert_cmpint(a->job.status, ==, JOB_STATUS_NULL);
    g_assert_cmpint(b->job.status, ==, JOB_STATUS_NULL);
    g_assert_cmpint(a->job.ret, ==, -ECANCELED);
    g_assert_cmpint(b->job.ret, ==, 0);
    job_unref(&a->job);
    job_unref(&b->job);
}

static void test_iothread(void)
{
    TestLog log = { 0 };
    IOThread *io = iothread_create("jobio", &error_abort);
    AioContext *ctx = iothread_get_aio_context(io);
    TestJob *t;
    g_autofree char *trail = NULL;

    events_reset();
    t = job_create("jio", &test_job_driver, NULL, ctx, 0, test_cb, &log,
                   &error_abort);
    t->steps = 200;
    t->step_ns = 100000;
    t->fail_at = -1;
    t->log = &log;
    job_ref(&t->job);
    job_start(&t->job);
    qmp_job_pause("jio", &error_abort);
    poll_until_status(&t->job, JOB_STATUS_PAUSED);
    qmp_job_resume("jio", &error_abort);
    poll_until_status(&t->job, JOB_STATUS_NULL);
    trail = status_trail("jio");
    g_assert_cmpstr(trail, ==, "created,running,paused,running,waiting,"
                    "pending,concluded,null");
    g_assert_cmpuint(t->job.progress_current, ==, 200);
    job_unref(&t->job);
    iothread_destroy(io);
}

/* ---- Rate limit ---- */

static void test_ratelimit(void)
{
    RateLimit rl = { 0 };
    const int64_t s = 1000000000LL;

    /* Unlimited. */
    ratelimit_consume(&rl, 1 << 30, s);
    g_assert_cmpint(ratelimit_delay_ns(&rl, s), ==, 0);

    /* 1000 B/s, starting empty: 1 s per 1000 bytes owed. */
    ratelimit_set_speed(&rl, 1000);
    rl.last_ns = 0;
    ratelimit_consume(&rl, 100, s);
    g_assert_cmpint(ratelimit_delay_ns(&rl, s), ==, s / 10 + 1);
    /* Once paid, a burst of 100 bytes may build up, no more. */
    g_assert_cmpint(ratelimit_delay_ns(&rl, 2 * s), ==, 0);
    ratelimit_consume(&rl, 1100, 2 * s);
    g_assert_cmpint(ratelimit_delay_ns(&rl, 2 * s), ==, s + 1);
    /* Half a second later half of it is paid. */
    g_assert_cmpint(ratelimit_delay_ns(&rl, 2 * s + s / 2), ==, s / 2 + 1);
    /* Faster: the rest is owed at the new rate. */
    ratelimit_set_speed(&rl, 2000);
    g_assert_cmpint(ratelimit_delay_ns(&rl, 2 * s + s / 2), ==, s / 4 + 1);
    /* Long idle time does not build up more than the burst. */
    g_assert_cmpint(ratelimit_delay_ns(&rl, 100 * s), ==, 0);
    ratelimit_consume(&rl, 200 + 2000, 100 * s);
    g_assert_cmpint(ratelimit_delay_ns(&rl, 100 * s), ==, s + 1);
    /* Back to unlimited. */
    ratelimit_set_speed(&rl, 0);
    g_assert_cmpint(ratelimit_delay_ns(&rl, 100 * s), ==, 0);
}

/* ---- Block jobs ---- */

typedef struct TestBlockJob {
    BlockJob common;
    int steps;
    int err_step;               /* step that meets an I/O error, or -1 */
    int err_errno;
    bool err_repeats;           /* fails again on the first retry */
    BlockdevOnError on_err;
    uint64_t chunk;             /* bytes per step for the rate limit */
    int speed_calls;
} TestBlockJob;

static int coroutine_fn test_block_job_run(Job *job, Error **errp)
{
    TestBlockJob *t = (TestBlockJob *)job;
    int failures = 0;

    job_progress_set_remaining(job, (uint64_t)t->steps * t->chunk);
    for (int i = 0; i < t->steps; i++) {
        if (job_is_cancelled(job)) {
            return 0;
        }
        if (i == t->err_step &&
            failures < (t->err_repeats ? 2 : 1)) {
            BlockErrorAction a;

            failures++;
            a = block_job_error_action(&t->common, t->on_err, false,
                                       t->err_errno);
            if (a == BLOCK_ERROR_ACTION_REPORT) {
                return -t->err_errno;
            }
            if (a == BLOCK_ERROR_ACTION_STOP) {
                job_pause_point(job);
                i--;
                continue;
            }
        }
        job_progress_update(job, t->chunk);
        block_job_ratelimit_processed_bytes(&t->common, t->chunk);
        block_job_ratelimit_sleep(&t->common);
    }
    return 0;
}

static void test_block_job_set_speed_cb(BlockJob *job, int64_t speed)
{
    ((TestBlockJob *)job)->speed_calls++;
}

static const BlockJobDriver test_block_job_driver = {
    .job_driver = {
        .instance_size = sizeof(TestBlockJob),
        .job_type = JOB_TYPE_BACKUP,
        .run = test_block_job_run,
    },
    .set_speed = test_block_job_set_speed_cb,
};

static BlockDriverState *open_null(const char *name)
{
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"null-co\", \"node-name\": \"%s\"}", name);
    json_t *obj = json_loads(json, 0, NULL);
    QapiPath root = QAPI_PATH_ROOT(false);
    g_autoptr(BlockdevOptions) opts = NULL;

    g_assert_true(visit_in_BlockdevOptions(obj, &root, &opts, &error_abort));
    json_decref(obj);
    return bdrv_open_options(opts, &error_abort);
}

static TestBlockJob *test_block_job_new(const char *id, BlockDriverState *bs,
                                        int flags, int steps)
{
    TestBlockJob *t = block_job_create(id, &test_block_job_driver, NULL, bs,
                                       0, flags, NULL, NULL, &error_abort);

    t->steps = steps;
    t->err_step = -1;
    t->chunk = 65536;
    job_ref(&t->common.job);
    return t;
}

static void test_block_job_ids_and_busy(void)
{
    BlockDriverState *bs = open_null("bjn0");
    BlockBackend *blk = blk_new("drive0", &error_abort);
    Error *err = NULL;
    g_autofree char *m1 = NULL, *m2 = NULL, *m3 = NULL, *m4 = NULL;
    TestBlockJob *t;

    events_reset();
    g_assert_null(block_job_create(NULL, &test_block_job_driver, NULL, bs,
                                   0, 0, NULL, NULL, &err));
    m1 = error_msg(err);
    g_assert_cmpstr(m1, ==, "An explicit job ID is required for this node");
    err = NULL;
    g_assert_null(block_job_create("x", &test_block_job_driver, NULL, bs,
                                   -1, 0, NULL, NULL, &err));
    m2 = error_msg(err);
    g_assert_cmpstr(m2, ==, "Parameter 'speed' expects a non-negative value");

    /* Held by the job: busy for deletion. */
    t = test_block_job_new("bj", bs, 0, 1);
    err = NULL;
    g_assert_true(bdrv_is_busy(bs, &err));
    m3 = error_msg(err);
    g_assert_cmpstr(m3, ==, "Node 'bjn0' is busy: used by block job 'bj'");
    err = NULL;
    g_assert_true(block_job_node_in_use(bs, &err));
    error_free(err);
    g_assert_true(block_job_from_job(&t->common.job) == &t->common);
    g_assert_true(block_job_get("bj") == &t->common);
    job_early_fail(&t->common.job);
    job_unref(&t->common.job);
    g_assert_false(bdrv_is_busy(bs, NULL));

    /* Default id: the device's name. */
    blk_insert_bs(blk, bs, &error_abort);
    t = test_block_job_new(NULL, bs, 0, 1);
    g_assert_cmpstr(t->common.job.id, ==, "drive0");
    err = NULL;
    g_assert_null(block_job_create(NULL, &test_block_job_driver, NULL, bs,
                                   0, 0, NULL, NULL, &err));
    m4 = error_msg(err);
    g_assert_cmpstr(m4, ==, "Job ID 'drive0' already in use");
    job_start(&t->common.job);
    poll_until_status(&t->common.job, JOB_STATUS_NULL);
    job_unref(&t->common.job);
    blk_unref(blk);
    bdrv_unref(bs);
}

static void test_block_job_events(void)
{
    BlockDriverState *bs = open_null("bjn1");
    TestBlockJob *t;
    g_autofree char *ev = NULL;

    events_reset();
    t = test_block_job_new("bje", bs, JOB_MANUAL_FINALIZE, 4);
    job_start(&t->common.job);
    poll_until_status(&t->common.job, JOB_STATUS_PENDING);
    qmp_block_job_finalize("bje", &error_abort);
    g_assert_cmpint(t->common.job.status, ==, JOB_STATUS_NULL);
    ev = other_events();
    g_assert_cmpstr(ev, ==,
        "BLOCK_JOB_PENDING {\"type\": \"backup\", \"id\": \"bje\"}\n"
        "BLOCK_JOB_COMPLETED {\"type\": \"backup\", \"device\": \"bje\", "
        "\"len\": 262144, \"offset\": 262144, \"speed\": 0}\n");
    job_unref(&t->common.job);
    g_assert_false(bdrv_is_busy(bs, NULL));
    bdrv_unref(bs);
}

static void test_block_job_cancel_events(void)
{
    BlockDriverState *bs = open_null("bjn2");
    TestBlockJob *t;
    Error *err = NULL;
    g_autofree char *ev = NULL, *m1 = NULL;

    events_reset();
    t = test_block_job_new("bjc", bs, 0, 1000);
    job_start(&t->common.job);
    poll_some(3);
    qmp_block_job_set_speed("bjc", 65536, &error_abort);
    g_assert_cmpint(t->speed_calls, ==, 1);
    qmp_block_job_pause("bjc", &error_abort);
    poll_until_status(&t->common.job, JOB_STATUS_PAUSED);

    BlockJobInfoList *list = qmp_query_block_jobs(&error_abort);
    g_assert_nonnull(list);
    g_assert_cmpstr(list->value->device, ==, "bjc");
    g_assert_cmpstr(list->value->type, ==, "backup");
    g_assert_true(list->value->paused);
    g_assert_false(list->value->busy);
    g_assert_cmpint(list->value->speed, ==, 65536);
    g_assert_cmpint(list->value->len, ==, 1000 * 65536);
    g_assert_cmpint(list->value->status, ==, JOB_STATUS_PAUSED);
    g_assert_cmpint(list->value->io_status, ==, BLOCK_DEVICE_IO_STATUS_OK);
    g_assert_true(list->value->auto_finalize);
    qapi_free_BlockJobInfoList(list);

    qmp_block_job_cancel("bjc", false, false, &err);
    m1 = error_msg(err);
    g_assert_cmpstr(m1, ==, "The block job for device 'bjc' is currently "
                    "paused");
    qmp_block_job_cancel("bjc", true, true, &error_abort);
    poll_until_status(&t->common.job, JOB_STATUS_NULL);
    ev = other_events();
    g_assert_true(g_str_has_prefix(ev, "BLOCK_JOB_CANCELLED {\"type\": "
                                   "\"backup\", \"device\": \"bjc\", "
                                   "\"len\": 65536000, \"offset\": "));
    g_assert_true(g_str_has_suffix(ev, ", \"speed\": 65536}\n"));
    job_unref(&t->common.job);
    bdrv_unref(bs);
}

static void test_block_job_speed_wakes(void)
{
    BlockDriverState *bs = open_null("bjn3");
    TestBlockJob *t;

    events_reset();
    t = block_job_create("bjs", &test_block_job_driver, NULL, bs, 1, 0,
                         NULL, NULL, &error_abort);
    t->steps = 3;
    t->err_step = -1;
    t->chunk = 1 << 20;
    job_ref(&t->common.job);
    job_start(&t->common.job);
    /* At 1 byte/s the job owes a million seconds after its first step;
     * lifting the limit wakes it and it finishes. */
    poll_some(5);
    g_assert_cmpint(t->common.job.status, ==, JOB_STATUS_RUNNING);
    qmp_block_job_set_speed("bjs", 0, &error_abort);
    poll_until_status(&t->common.job, JOB_STATUS_NULL);
    g_assert_cmpint(t->common.job.ret, ==, 0);
    g_assert_cmpuint(t->common.job.progress_current, ==, 3 << 20);
    job_unref(&t->common.job);
    bdrv_unref(bs);
}

/* One error policy: the action and the job's outcome. */
static void check_policy(BlockdevOnError on_err, int errnum,
                         const char *action, int expect_ret)
{
    BlockDriverState *bs = open_null("bjp");
    TestBlockJob *t;
    g_autofree char *ev = NULL, *want = NULL;

    events_reset();
    t = test_block_job_new("bjp", bs, JOB_MANUAL_DISMISS, 4);
    t->err_step = 2;
    t->err_errno = errnum;
    t->on_err = on_err;
    job_start(&t->common.job);
    if (!strcmp(action, "stop")) {
        poll_until_status(&t->common.job, JOB_STATUS_PAUSED);
        g_assert_true(job_user_paused(&t->common.job));
        g_assert_cmpint(t->common.iostatus, ==,
                        errnum == ENOSPC ? BLOCK_DEVICE_IO_STATUS_NOSPACE
                                         : BLOCK_DEVICE_IO_STATUS_FAILED);
        g_assert_cmpuint(t->common.job.progress_current, ==, 2 * 65536);
        qmp_block_job_resume("bjp", &error_abort);
        g_assert_cmpint(t->common.iostatus, ==, BLOCK_DEVICE_IO_STATUS_OK);
    }
    poll_until_status(&t->common.job, JOB_STATUS_CONCLUDED);
    g_assert_cmpint(t->common.job.ret, ==, expect_ret);
    ev = other_events();
    want = g_strdup_printf("BLOCK_JOB_ERROR {\"device\": \"bjp\", "
                           "\"operation\": \"write\", \"action\": \"%s\"}\n",
                           action);
    g_assert_true(g_str_has_prefix(ev, want));
    if (expect_ret) {
        g_assert_nonnull(strstr(ev, "\"error\": \""));
    } else {
        g_assert_null(strstr(ev, "\"error\""));
    }
    qmp_block_job_dismiss("bjp", &error_abort);
    job_unref(&t->common.job);
    bdrv_unref(bs);
}

static void test_block_job_error_policies(void)
{
    check_policy(BLOCKDEV_ON_ERROR_REPORT, EIO, "report", -EIO);
    check_policy(BLOCKDEV_ON_ERROR_IGNORE, EIO, "ignore", 0);
    check_policy(BLOCKDEV_ON_ERROR_STOP, EIO, "stop", 0);
    check_policy(BLOCKDEV_ON_ERROR_ENOSPC, EIO, "report", -EIO);
    check_policy(BLOCKDEV_ON_ERROR_ENOSPC, ENOSPC, "stop", 0);
    check_policy(BLOCKDEV_ON_ERROR_AUTO, ENOSPC, "stop", 0);
}

static void test_block_job_drain_pauses(void)
{
    BlockDriverState *bs = open_null("bjd");
    TestBlockJob *t;
    g_autofree char *trail = NULL;

    events_reset();
    t = test_block_job_new("bjd", bs, 0, 100000);
    job_start(&t->common.job);
    poll_some(3);
    bdrv_drained_begin(bs);
    poll_until_status(&t->common.job, JOB_STATUS_PAUSED);
    g_assert_false(job_user_paused(&t->common.job));
    bdrv_drained_end(bs);
    poll_until_status(&t->common.job, JOB_STATUS_RUNNING);
    job_cancel_sync(&t->common.job, true);
    trail = status_trail("bjd");
    g_assert_cmpstr(trail, ==, "created,running,paused,running,aborting,"
                    "concluded,null");
    job_unref(&t->common.job);
    bdrv_unref(bs);
}

/* ---- A job that becomes ready (as a mirror would) ---- */

typedef struct ReadyJob {
    BlockJob common;
    bool completed;             /* job-complete arrived */
} ReadyJob;

static int coroutine_fn ready_job_run(Job *job, Error **errp)
{
    ReadyJob *r = (ReadyJob *)job;

    job_progress_set_remaining(job, 1);
    job_progress_update(job, 1);
    job_transition_to_ready(job);
    while (!r->completed && !job_is_cancelled(job)) {
        job_sleep_ns(job, -1);
    }
    return 0;
}

static void ready_job_complete(Job *job, Error **errp)
{
    ((ReadyJob *)job)->completed = true;
    job_enter(job);
}

static const BlockJobDriver ready_job_driver = {
    .job_driver = {
        .instance_size = sizeof(ReadyJob),
        .job_type = JOB_TYPE_BACKUP,
        .run = ready_job_run,
        .complete = ready_job_complete,
    },
};

static void test_block_job_ready(void)
{
    BlockDriverState *bs = open_null("bjr");
    ReadyJob *r;
    Error *err = NULL;
    g_autofree char *trail = NULL, *ev = NULL, *m1 = NULL;

    events_reset();
    r = block_job_create("bjr", &ready_job_driver, NULL, bs, 0, 0, NULL,
                         NULL, &error_abort);
    job_ref(&r->common.job);
    qmp_block_job_complete("bjr", &err);
    m1 = error_msg(err);
    g_assert_cmpstr(m1, ==, "Job 'bjr' in state 'created' cannot accept "
                    "command verb 'complete'");
    job_start(&r->common.job);
    poll_until_status(&r->common.job, JOB_STATUS_READY);
    g_assert_true(job_is_ready(&r->common.job));

    /* Paused while ready: standby, and back to ready. */
    qmp_job_pause("bjr", &error_abort);
    poll_until_status(&r->common.job, JOB_STATUS_STANDBY);
    BlockJobInfoList *list = qmp_query_block_jobs(&error_abort);
    g_assert_true(list->value->ready);
    g_assert_true(list->value->paused);
    qapi_free_BlockJobInfoList(list);
    qmp_job_resume("bjr", &error_abort);
    poll_until_status(&r->common.job, JOB_STATUS_READY);

    qmp_job_complete("bjr", &error_abort);
    poll_until_status(&r->common.job, JOB_STATUS_NULL);
    trail = status_trail("bjr");
    g_assert_cmpstr(trail, ==, "created,running,ready,standby,ready,waiting,"
                    "pending,concluded,null");
    ev = other_events();
    g_assert_cmpstr(ev, ==,
        "BLOCK_JOB_READY {\"type\": \"backup\", \"device\": \"bjr\", "
        "\"len\": 1, \"offset\": 1, \"speed\": 0}\n"
        "BLOCK_JOB_COMPLETED {\"type\": \"backup\", \"device\": \"bjr\", "
        "\"len\": 1, \"offset\": 1, \"speed\": 0}\n");
    job_unref(&r->common.job);
    bdrv_unref(bs);
}

static void test_internal_job(void)
{
    TestLog log = { 0 };
    TestJob *t = job_create(NULL, &test_job_driver, NULL, aio_main_context(),
                            JOB_INTERNAL, test_cb, &log, &error_abort);

    events_reset();
    t->steps = 2;
    t->fail_at = -1;
    t->log = &log;
    job_ref(&t->job);
    g_assert_true(job_is_internal(&t->job));
    job_start(&t->job);
    JobInfoList *list = qmp_query_jobs(&error_abort);
    g_assert_null(list);
    poll_until_status(&t->job, JOB_STATUS_NULL);
    /* Internal jobs send no events. */
    g_assert_cmpuint(events->len, ==, 0);
    g_assert_cmpint(log.commits, ==, 1);
    job_unref(&t->job);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    events = g_ptr_array_new_with_free_func(g_free);
    qapi_event_set_sink(record_event);
    g_test_add_func("/job/ids", test_ids);
    g_test_add_func("/job/run-to-completion", test_run_to_completion);
    g_test_add_func("/job/failure", test_failure);
    g_test_add_func("/job/verbs-refused", test_verbs_refused);
    g_test_add_func("/job/pause-resume", test_pause_resume);
    g_test_add_func("/job/pause-before-start", test_pause_before_start);
    g_test_add_func("/job/cancel/sleeping", test_cancel_sleeping);
    g_test_add_func("/job/cancel/paused", test_cancel_paused);
    g_test_add_func("/job/cancel/not-started", test_cancel_not_started);
    g_test_add_func("/job/manual-finalize-dismiss",
                    test_manual_finalize_dismiss);
    g_test_add_func("/job/prepare-fails", test_prepare_fails);
    g_test_add_func("/job/txn/success-waits", test_txn_success_waits);
    g_test_add_func("/job/txn/failure-cancels-group",
                    test_txn_failure_cancels_group);
    g_test_add_func("/job/txn/individual", test_txn_individual);
    g_test_add_func("/job/cancel-sync-all", test_cancel_sync_all);
    g_test_add_func("/job/iothread", test_iothread);
    g_test_add_func("/job/ratelimit", test_ratelimit);
    g_test_add_func("/blockjob/ids-and-busy", test_block_job_ids_and_busy);
    g_test_add_func("/blockjob/events", test_block_job_events);
    g_test_add_func("/blockjob/cancel-events", test_block_job_cancel_events);
    g_test_add_func("/blockjob/speed-wakes", test_block_job_speed_wakes);
    g_test_add_func("/blockjob/error-policies",
                    test_block_job_error_policies);
    g_test_add_func("/blockjob/drain-pauses", test_block_job_drain_pauses);
    g_test_add_func("/blockjob/ready", test_block_job_ready);
    g_test_add_func("/job/internal", test_internal_job);
    return g_test_run();
}
