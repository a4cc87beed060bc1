/*
 * Block jobs: the block layer's side of jobs (include/block/blockjob.h).
 * A block job holds its nodes through root edges (so blockdev-del and a
 * second job on them get "busy" errors, and draining them pauses the
 * job), keeps a speed limit and an I/O status, applies error policies,
 * sends the BLOCK_JOB_* events and implements the block-job-* commands
 * and query-block-jobs.
 *
 * Threads: main thread, except the ratelimit functions and
 * block_job_error_action(), which run in the job's coroutine, and the
 * limiter state (job->limit), which belongs to the job's context:
 * block-job-set-speed updates it there (block_job_apply_speed).
 */
#include <errno.h>
#include <string.h>

#include "block/block-backend.h"
#include "block/blockjob.h"
#include "qapi/qapi-commands.h"
#include "qapi/qapi-events.h"

/* Block jobs are recognised by their event hooks (set at creation). */
static const JobEventHooks block_job_hooks;
static void block_job_free(Job *job);
static void block_job_user_resume(Job *job);

BlockJob *block_job_from_job(Job *job)
{
    return job && job->event_hooks == &block_job_hooks ? (BlockJob *)job
                                                       : NULL;
}

static const BlockJobDriver *block_job_driver(BlockJob *bjob)
{
    return (const BlockJobDriver *)bjob->job.driver;
}

/* ---- Events ---- */

static void block_job_event_completed(Job *job)
{
    BlockJob *bjob = block_job_from_job(job);
    const char *msg = NULL;

    if (job->ret && job->err) {
        msg = error_get_pretty(job->err);
    }
    qapi_event_send_block_job_completed(job->driver->job_type, job->id,
                                        (int64_t)job->progress_total,
                                        (int64_t)job->progress_current,
                                        bjob->speed, msg);
}

static void block_job_event_cancelled(Job *job)
{
    BlockJob *bjob = block_job_from_job(job);

    qapi_event_send_block_job_cancelled(job->driver->job_type, job->id,
                                        (int64_t)job->progress_total,
                                        (int64_t)job->progress_current,
                                        bjob->speed);
}

static void block_job_event_ready(Job *job)
{
    BlockJob *bjob = block_job_from_job(job);

    qapi_event_send_block_job_ready(job->driver->job_type, job->id,
                                    (int64_t)job->progress_total,
                                    (int64_t)job->progress_current,
                                    bjob->speed);
}

static void block_job_event_pending(Job *job)
{
    qapi_event_send_block_job_pending(job->driver->job_type, job->id);
}

static const JobEventHooks block_job_hooks = {
    .on_ready = block_job_event_ready,
    .on_pending = block_job_event_pending,
    .on_completed = block_job_event_completed,
    .on_cancelled = block_job_event_cancelled,
    .on_user_resume = block_job_user_resume,
    .on_free = block_job_free,
};

/* ---- Nodes ---- */

static char *block_job_parent_desc(BdrvChild *c)
{
    BlockJob *bjob = bdrv_child_get_opaque(c);

    return g_strdup_printf("used by block job '%s'",
                           bjob->job.id ? bjob->job.id : "(internal)");
}

/* QEMU's name for a job in permission conflicts: "backup job 'job0'". */
static char *block_job_user_desc(BdrvChild *c)
{
    BlockJob *bjob = bdrv_child_get_opaque(c);

    return g_strdup_printf("%s job '%s'", job_type_str(&bjob->job),
                           bjob->job.id ? bjob->job.id : "(internal)");
}

/* Draining a node of the job pauses the job (one pause per edge). */
static void block_job_drained_begin(BdrvChild *c)
{
    BlockJob *bjob = bdrv_child_get_opaque(c);

    job_pause(&bjob->job);
}

static void block_job_drained_end(BdrvChild *c)
{
    BlockJob *bjob = bdrv_child_get_opaque(c);

    job_resume(&bjob->job);
}

static const BdrvChildClass block_job_child_class = {
    .get_parent_desc = block_job_parent_desc,
    .get_user_desc = block_job_user_desc,
    .drained_begin = block_job_drained_begin,
    .drained_end = block_job_drained_end,
};

bool block_job_add_bdrv(BlockJob *job, const char *name,
                        BlockDriverState *bs, Error **errp)
{
    /* The job reaches its nodes through the graph (a filter, block-copy)
     * whose edges carry its real needs; its own edges only keep the size
     * fixed while it works. */
    BdrvChild *c = bdrv_root_attach_child(bs, name, &block_job_child_class,
                                          job, 0,
                                          BLK_PERM_ALL & ~BLK_PERM_RESIZE,
                                          errp);

    if (!c) {
        return false;
    }
    job->nodes = g_slist_append(job->nodes, c);
    return true;
}

void block_job_remove_all_bdrv(BlockJob *job)
{
    GSList *nodes = job->nodes;

    job->nodes = NULL;
    for (GSList *l = nodes; l; l = l->next) {
        bdrv_unref_child(l->data);
    }
    g_slist_free(nodes);
}

bool block_job_has_bdrv(BlockJob *job, BlockDriverState *bs)
{
    for (GSList *l = job->nodes; l; l = l->next) {
        if (bdrv_child_bs(l->data) == bs) {
            return true;
        }
    }
    return false;
}

bool block_job_node_in_use(BlockDriverState *bs, Error **errp)
{
    for (BlockJob *bjob = block_job_next(NULL); bjob;
         bjob = block_job_next(bjob)) {
        if (!job_is_completed(&bjob->job) && block_job_has_bdrv(bjob, bs)) {
            error_setg(errp, "Node '%s' is busy: used by block job '%s'",
                       bdrv_get_node_name(bs),
                       bjob->job.id ? bjob->job.id : "(internal)");
            return true;
        }
    }
    return false;
}

/* ---- Creation and lifetime ---- */

static void block_job_free(Job *job)
{
    block_job_remove_all_bdrv((BlockJob *)job);
}

/* The name of the device (BlockBackend) whose node is bs, or NULL. */
static const char *block_job_device_name(BlockDriverState *bs)
{
    for (BlockBackend *blk = blk_next(NULL); blk; blk = blk_next(blk)) {
        if (blk_bs(blk) == bs && blk_name(blk)[0]) {
            return blk_name(blk);
        }
    }
    return NULL;
}

static void block_job_user_resume(Job *job)
{
    BlockJob *bjob = block_job_from_job(job);

    bjob->iostatus = BLOCK_DEVICE_IO_STATUS_OK;
}

void *block_job_create(const char *job_id, const BlockJobDriver *driver,
                       JobTxn *txn, BlockDriverState *bs, int64_t speed,
                       int flags, void (*cb)(void *opaque, int ret),
                       void *opaque, Error **errp)
{
    BlockJob *bjob;

    if (speed < 0) {
        error_setg(errp, "Parameter 'speed' expects a non-negative value");
        return NULL;
    }
    if (!job_id && !(flags & JOB_INTERNAL)) {
        job_id = block_job_device_name(bs);
        if (!job_id) {
            error_setg(errp, "An explicit job ID is required for this node");
            return NULL;
        }
    }
    bjob = job_create(job_id, &driver->job_driver, txn,
                      bdrv_get_aio_context(bs), flags, cb, opaque, errp);
    if (!bjob) {
        return NULL;
    }
    job_set_event_hooks(&bjob->job, &block_job_hooks);
    bjob->bs = bs;
    bjob->iostatus = BLOCK_DEVICE_IO_STATUS_OK;
    bjob->speed = speed;
    ratelimit_set_speed(&bjob->limit, (uint64_t)speed);
    if (!block_job_add_bdrv(bjob, "main node", bs, errp)) {
        job_early_fail(&bjob->job);
        return NULL;
    }
    if (speed && driver->set_speed) {
        driver->set_speed(bjob, speed);
    }
    return bjob;
}

/* ---- Speed ---- */

/* Runs in the job's context: the limiter (and the driver's own, e.g.
 * block-copy's) is updated there by the job coroutine without a lock. */
static void coroutine_fn block_job_apply_speed_co(void *opaque)
{
    BlockJob *job = opaque;
    const BlockJobDriver *drv = block_job_driver(job);

    ratelimit_set_speed(&job->limit, (uint64_t)job->speed);
    if (drv->set_speed) {
        drv->set_speed(job, job->speed);
    }
}

/* Hands job->speed to the limiters, in the job's context. */
static void block_job_apply_speed(BlockJob *job)
{
    AioContext *ctx = job->job.aio_context;

    if (ctx == current_aio_context()) {
        block_job_apply_speed_co(job);
        return;
    }
    aio_run_in_context(ctx, block_job_apply_speed_co, job);
}

bool block_job_set_speed(BlockJob *job, int64_t speed, Error **errp)
{
    int64_t old = job->speed;

    if (job_apply_verb(&job->job, JOB_VERB_SET_SPEED, errp)) {
        return false;
    }
    if (speed < 0) {
        error_setg(errp, "Parameter 'speed' expects a non-negative value");
        return false;
    }
    job->speed = speed;
    block_job_apply_speed(job);
    if (speed && speed <= old) {
        return true;
    }
    /* Faster or unlimited: a job sleeping for the old limit recomputes
     * its delay now. */
    job_enter(&job->job);
    return true;
}

void block_job_ratelimit_processed_bytes(BlockJob *job, uint64_t n)
{
    ratelimit_consume(&job->limit, n, clock_ns());
}

void coroutine_fn block_job_ratelimit_sleep(BlockJob *job)
{
    int64_t delay;

    do {
        delay = ratelimit_delay_ns(&job->limit, clock_ns());
        /* Always a pause point, even when no delay is due. */
        job_sleep_ns(&job->job, delay);
    } while (delay > 0 && !job_is_cancelled(&job->job) &&
             ratelimit_delay_ns(&job->limit, clock_ns()) > 0);
}

/* ---- Errors ---- */

typedef struct BlockJobErrorEvent {
    char *id;
    IoOperationType op;
    BlockErrorAction action;
} BlockJobErrorEvent;

static void block_job_error_event_bh(void *opaque)
{
    BlockJobErrorEvent *ev = opaque;

    qapi_event_send_block_job_error(ev->id, ev->op, ev->action);
    g_free(ev->id);
    g_free(ev);
}

BlockErrorAction block_job_error_action(BlockJob *job, BlockdevOnError on_err,
                                        bool is_read, int error)
{
    BlockErrorAction action;
    IoOperationType op = is_read ? IO_OPERATION_TYPE_READ
                                 : IO_OPERATION_TYPE_WRITE;

    switch (on_err) {
    case BLOCKDEV_ON_ERROR_ENOSPC:
    case BLOCKDEV_ON_ERROR_AUTO:
        action = error == ENOSPC ? BLOCK_ERROR_ACTION_STOP
                                 : BLOCK_ERROR_ACTION_REPORT;
        break;
    case BLOCKDEV_ON_ERROR_STOP:
        action = BLOCK_ERROR_ACTION_STOP;
        break;
    case BLOCKDEV_ON_ERROR_IGNORE:
        action = BLOCK_ERROR_ACTION_IGNORE;
        break;
    case BLOCKDEV_ON_ERROR_REPORT:
    default:
        action = BLOCK_ERROR_ACTION_REPORT;
        break;
    }
    if (!job_is_internal(&job->job)) {
        if (current_aio_context() == aio_main_context()) {
            qapi_event_send_block_job_error(job->job.id, op, action);
        } else {
            BlockJobErrorEvent *ev = g_new0(BlockJobErrorEvent, 1);

            ev->id = g_strdup(job->job.id);
            ev->op = op;
            ev->action = action;
            aio_bh_schedule_oneshot(aio_main_context(),
                                    block_job_error_event_bh, ev);
        }
    }
    if (action == BLOCK_ERROR_ACTION_STOP) {
        /* A user-visible pause: block-job-resume continues. */
        job_pause_as_user(&job->job);
        if (job->iostatus == BLOCK_DEVICE_IO_STATUS_OK) {
            job->iostatus = error == ENOSPC ? BLOCK_DEVICE_IO_STATUS_NOSPACE
                                            : BLOCK_DEVICE_IO_STATUS_FAILED;
        }
    }
    return action;
}

/* ---- Queries and QMP ---- */

BlockJob *block_job_get(const char *id)
{
    return block_job_from_job(job_get(id));
}

BlockJob *block_job_next(BlockJob *prev)
{
    Job *job = prev ? job_next(&prev->job) : job_next(NULL);

    for (; job; job = job_next(job)) {
        if (block_job_from_job(job)) {
            return (BlockJob *)job;
        }
    }
    return NULL;
}

BlockJobInfo *block_job_query(BlockJob *job, Error **errp)
{
    BlockJobInfo *info;

    if (job_is_internal(&job->job)) {
        error_setg(errp, "Cannot query QEMU internal jobs");
        return NULL;
    }
    info = g_new0(BlockJobInfo, 1);
    info->type = g_strdup(job_type_str(&job->job));
    info->device = g_strdup(job->job.id);
    info->len = (int64_t)job->job.progress_total;
    info->offset = (int64_t)job->job.progress_current;
    info->busy = job->job.busy;
    info->paused = job->job.pause_count > 0;
    info->speed = job->speed;
    info->io_status = job->iostatus;
    info->ready = job_is_ready(&job->job);
    info->status = job->job.status;
    info->auto_finalize = job->job.auto_finalize;
    info->auto_dismiss = job->job.auto_dismiss;
    if (job->job.err) {
        info->error = g_strdup(error_get_pretty(job->job.err));
    }
    return info;
}

static BlockJob *find_block_job(const char *id, Error **errp)
{
    BlockJob *job = block_job_get(id);

    if (!job) {
        error_set(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE,
                  "Block job '%s' not found", id);
    }
    return job;
}

BlockJobInfoList *qmp_query_block_jobs(Error **errp)
{
    BlockJobInfoList *head = NULL, **tail = &head;

    for (BlockJob *job = block_job_next(NULL); job;
         job = block_job_next(job)) {
        BlockJobInfo *info;

        if (job_is_internal(&job->job)) {
            continue;
        }
        info = block_job_query(job, errp);
        if (!info) {
            qapi_free_BlockJobInfoList(head);
            return NULL;
        }
        *tail = g_new0(BlockJobInfoList, 1);
        (*tail)->value = info;
        tail = &(*tail)->next;
    }
    return head;
}

void qmp_block_job_set_speed(const char *device, int64_t speed, Error **errp)
{
    BlockJob *job = find_block_job(device, errp);

    if (job) {
        block_job_set_speed(job, speed, errp);
    }
}

void qmp_block_job_cancel(const char *device, bool has_force, bool force,
                          Error **errp)
{
    BlockJob *job = find_block_job(device, errp);

    if (!job) {
        return;
    }
    if (!has_force) {
        force = false;
    }
    if (job_user_paused(&job->job) && !force) {
        error_setg(errp, "The block job for device '%s' is currently paused",
                   device);
        return;
    }
    job_user_cancel(&job->job, force, errp);
}

void qmp_block_job_pause(const char *device, Error **errp)
{
    BlockJob *job = find_block_job(device, errp);

    if (job) {
        job_user_pause(&job->job, errp);
    }
}

void qmp_block_job_resume(const char *device, Error **errp)
{
    BlockJob *job = find_block_job(device, errp);

    if (job) {
        job_user_resume(&job->job, errp);
    }
}

void qmp_block_job_complete(const char *device, Error **errp)
{
    BlockJob *job = find_block_job(device, errp);

    if (job) {
        job_complete(&job->job, errp);
    }
}

void qmp_block_job_finalize(const char *id, Error **errp)
{
    BlockJob *job = find_block_job(id, errp);

    if (job) {
        job_finalize(&job->job, errp);
    }
}

void qmp_block_job_dismiss(const char *id, Error **errp)
{
    BlockJob *job = find_block_job(id, errp);
    Job *j;

    if (!job) {
        return;
    }
    j = &job->job;
    job_dismiss(&j, errp);
}
