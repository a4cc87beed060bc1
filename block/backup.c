/*
 * The backup job: a point-in-time copy of a source node to a target node
 * while the source stays in use.  At creation it inserts a
 * copy-before-write filter above the source (guest writes copy old data
 * first); at activation every cluster becomes "to copy"; run() then copies
 * what is left with block-copy's parallel workers, honouring speed,
 * pause, cancel and the error policies.  clean() takes the filter out
 * again, leaving the graph as it was, however the job ended.
 */
#include <errno.h>

#include "block/backup.h"
#include "block/block_int.h"
#include "block/copy-before-write.h"

/* The job; fields written at creation (main thread) and then only by
 * run() in the job's context, except filter and the target's move (main
 * thread: activate, clean, free).  The job, its filter, the source and
 * the target all run in the source's AioContext. */
typedef struct BackupJob {
    BlockJob common;
    BlockDriverState *filter;        /* own reference until clean */
    BlockCopyState *bcs;             /* the filter's */
    BlockDriverState *target;        /* no own reference (the filter's) */
    /* The target's context before the job moved it into the source's,
     * or NULL if it was there already: clean moves it back. */
    AioContext *target_old_ctx;
    MirrorSyncMode sync;
    BlockdevOnError on_source_error;
    BlockdevOnError on_target_error;
} BackupJob;

/* Progress from block-copy (job's context): with sync=none nothing is
 * known in advance, so each copied range also grows the total. */
static void backup_progress(void *opaque, int64_t bytes)
{
    BackupJob *s = opaque;

    if (s->sync == MIRROR_SYNC_MODE_NONE) {
        job_progress_increase_remaining(&s->common.job, bytes);
    }
    job_progress_update(&s->common.job, bytes);
}

/*
 * Applies the error policy to the first error of the workers, if any.
 * Returns 0 to go on (ignored, or stopped and resumed: the failed range
 * is dirty again and will be retried) or the -errno that fails the job.
 */
static int coroutine_fn backup_check_error(BackupJob *s)
{
    int64_t offset;
    bool is_read;
    int err = block_copy_take_error(s->bcs, &offset, &is_read);
    BlockErrorAction action;

    if (!err) {
        return 0;
    }
    if (block_copy_is_broken(s->bcs)) {
        return err;
    }
    action = block_job_error_action(&s->common,
                                    is_read ? s->on_source_error
                                            : s->on_target_error,
                                    is_read, -err);
    switch (action) {
    case BLOCK_ERROR_ACTION_REPORT:
        return err;
    case BLOCK_ERROR_ACTION_STOP:
        /* Let the other workers end, forget their errors (their ranges
         * are dirty again), then park until the user resumes. */
        block_copy_wait_all(s->bcs);
        block_copy_take_error(s->bcs, &offset, &is_read);
        job_pause_point(&s->common.job);
        return 0;
    default:
        /* ignore: the range is retried; not in a tight loop, since a
         * target that fails at once would never let the loop yield. */
        block_copy_wait_all(s->bcs);
        job_sleep_ns(&s->common.job, 10 * 1000 * 1000);
        return 0;
    }
}

/* The background loop for full and top: start workers on dirty runs
 * until the bitmap is empty. */
static int coroutine_fn backup_loop(BackupJob *s)
{
    Job *job = &s->common.job;
    int64_t pos = 0;
    int ret = 0;

    while (!job_is_cancelled(job)) {
        int64_t n;

        ret = backup_check_error(s);
        if (ret < 0 || job_is_cancelled(job)) {
            break;
        }
        n = block_copy_start_next(s->bcs, &pos);
        if (n == 0) {
            /* Nothing left to claim: the end once the workers in flight
             * finished without handing ranges back. */
            block_copy_wait_all(s->bcs);
            if (block_copy_dirty_bytes(s->bcs) == 0 &&
                !block_copy_is_broken(s->bcs)) {
                ret = backup_check_error(s);
                if (ret < 0 || block_copy_dirty_bytes(s->bcs) == 0) {
                    break;
                }
            }
            continue;
        }
        block_job_ratelimit_processed_bytes(&s->common, n);
        block_job_ratelimit_sleep(&s->common);
        job_pause_point(job);
    }
    return ret;
}

static int coroutine_fn backup_run(Job *job, Error **errp)
{
    BackupJob *s = (BackupJob *)job;
    int ret = 0;

    if (s->sync == MIRROR_SYNC_MODE_NONE) {
        /* Only the filter copies; the job lives until cancelled. */
        while (!job_is_cancelled(job) && !block_copy_is_broken(s->bcs)) {
            job_sleep_ns(job, 100 * 1000 * 1000);
        }
    } else {
        ret = backup_loop(s);
    }
    block_copy_wait_all(s->bcs);
    if (ret == 0 && block_copy_is_broken(s->bcs)) {
        int64_t offset;
        bool is_read;

        ret = block_copy_take_error(s->bcs, &offset, &is_read);
        ret = ret ? ret : -EIO;
        error_setg_errno(errp, -ret, "Copy-before-write buffer could not "
                         "be written to the target");
    }
    if (ret == 0 && !job_is_cancelled(job)) {
        ret = bdrv_co_flush(bdrv_child_bs(bdrv_find_child(s->filter,
                                                          "target")));
    }
    return ret;
}

/* Moves target back into old_ctx after a backup that moved it (best
 * effort: the backup itself is over, so a refusal is only reported). */
static void backup_restore_target_ctx(BlockDriverState *target,
                                      AioContext *old_ctx)
{
    Error *err = NULL;

    if (!bdrv_try_change_aio_context(target, old_ctx, NULL, &err)) {
        error_report_err(err);
    }
}

/* Takes the filter out (idempotent): clean() on every ending, free() for
 * a job that never started.  Then the target goes back to its own
 * context, if the job moved it. */
static void backup_drop_filter(BackupJob *s)
{
    if (s->filter) {
        BlockDriverState *filter = s->filter;
        BlockDriverState *target = s->target;

        s->filter = NULL;
        s->bcs = NULL;
        s->target = NULL;
        /* The filter may hold the last reference to the target
         * (drive-backup). */
        bdrv_ref(target);
        block_job_remove_all_bdrv(&s->common);
        bdrv_cbw_drop(filter);
        if (s->target_old_ctx) {
            backup_restore_target_ctx(target, s->target_old_ctx);
            s->target_old_ctx = NULL;
        }
        bdrv_unref(target);
    }
}

static void backup_clean(Job *job)
{
    backup_drop_filter((BackupJob *)job);
}

static void backup_free(Job *job)
{
    backup_drop_filter((BackupJob *)job);
}

static const BlockJobDriver backup_job_driver = {
    .job_driver = {
        .instance_size = sizeof(BackupJob),
        .job_type = JOB_TYPE_BACKUP,
        .run = backup_run,
        .clean = backup_clean,
        .free = backup_free,
    },
};

/* The unfinished block job holding bs, or NULL. */
static BlockJob *job_holding(BlockDriverState *bs)
{
    for (BlockJob *j = block_job_next(NULL); j; j = block_job_next(j)) {
        if (!job_is_completed(&j->job) && block_job_has_bdrv(j, bs)) {
            return j;
        }
    }
    return NULL;
}

/* "Node 'X' is busy: used by block job 'ID'" when a job holds bs or a
 * node right above it (a backup's filter); X is name (as the user gave
 * it) or the node's name. */
static bool backup_node_busy(BlockDriverState *bs, const char *name,
                             Error **errp)
{
    BlockJob *j = job_holding(bs);

    for (BdrvChild *c = bdrv_next_parent(bs, NULL); c && !j;
         c = bdrv_next_parent(bs, c)) {
        if (bdrv_child_parent_bs(c)) {
            j = job_holding(bdrv_child_parent_bs(c));
        }
    }
    if (j) {
        error_setg(errp, "Node '%s' is busy: used by block job '%s'",
                   name ? name : bdrv_get_node_name(bs), j->job.id);
        return true;
    }
    return false;
}

static bool backup_check_params(const BackupParams *p, Error **errp)
{
    if (p->source == p->target) {
        error_setg(errp, "Source and target cannot be the same");
        return false;
    }
    if (p->speed < 0) {
        error_setg(errp, "Parameter 'speed' expects a non-negative value");
        return false;
    }
    if (p->copy.max_workers < 0 || p->copy.max_workers > 1024) {
        error_setg(errp, "max-workers must be between 1 and 1024");
        return false;
    }
    if (p->copy.max_chunk < 0 || p->copy.max_chunk > 1024 * 1024 * 1024) {
        error_setg(errp, "max-chunk must be between 0 and 1 GiB");
        return false;
    }
    if (p->copy.cbw_buffer_size < 0) {
        error_setg(errp, "cbw-buffer-size cannot be negative");
        return false;
    }
    if (bdrv_is_read_only(p->target)) {
        error_setg(errp, "Target node '%s' is read-only",
                   bdrv_get_node_name(p->target));
        return false;
    }
    return !backup_node_busy(p->source, p->device, errp) &&
           !backup_node_busy(p->target, NULL, errp);
}

/*
 * Moves the target into the source's context, as QEMU does: the job, the
 * filter and block-copy run there and write the target directly.
 * Returns the target's old context (NULL if no move was needed), or
 * false with errp set when the target cannot move (another user of it,
 * or it runs in another iothread already).
 */
static bool backup_move_target(const BackupParams *p, AioContext **old_ctx,
                               Error **errp)
{
    AioContext *ctx = bdrv_get_aio_context(p->source);
    AioContext *old = bdrv_get_aio_context(p->target);
    Error *err = NULL;

    *old_ctx = NULL;
    if (old == ctx) {
        return true;
    }
    if (!bdrv_try_change_aio_context(p->target, ctx, NULL, &err)) {
        error_setg(errp, "Cannot move target node '%s' into the I/O thread "
                   "of '%s': %s", bdrv_get_node_name(p->target),
                   p->device ? p->device : bdrv_get_node_name(p->source),
                   error_get_pretty(err));
        error_free(err);
        return false;
    }
    *old_ctx = old;
    return true;
}

BlockJob *backup_job_create(const BackupParams *p, JobTxn *txn,
                            Error **errp)
{
    BlockDriverState *filter;
    BackupJob *s;
    BlockCopyOptions copts = p->copy;
    AioContext *old_ctx;

    if (!backup_check_params(p, errp) ||
        !backup_move_target(p, &old_ctx, errp)) {
        return NULL;
    }
    copts.skip_unallocated = p->sync == MIRROR_SYNC_MODE_TOP;
    filter = bdrv_cbw_append(p->source, p->target, p->filter_node_name,
                             &copts, errp);
    if (!filter) {
        if (old_ctx) {
            backup_restore_target_ctx(p->target, old_ctx);
        }
        return NULL;
    }
    s = block_job_create(p->job_id, &backup_job_driver, txn, filter,
                         p->speed, p->flags, NULL, NULL, errp);
    if (!s) {
        bdrv_ref(p->target);
        bdrv_cbw_drop(filter);
        if (old_ctx) {
            backup_restore_target_ctx(p->target, old_ctx);
        }
        bdrv_unref(p->target);
        return NULL;
    }
    s->filter = filter;
    s->target = p->target;
    s->target_old_ctx = old_ctx;
    s->bcs = bdrv_cbw_get_block_copy(filter);
    s->sync = p->sync;
    s->on_source_error = p->on_source_error;
    s->on_target_error = p->on_target_error;
    if (!block_job_add_bdrv(&s->common, "target", p->target, errp)) {
        job_early_fail(&s->common.job);
        return NULL;
    }
    block_copy_set_progress(s->bcs, backup_progress, s);
    return &s->common;
}

/* ---- Activation: the point in time ----
 * Each step runs in the job's context (that of its source), from the
 * main thread through aio_run_in_context(). */

/* Decides whether zero areas need writing (before any copy lands on the
 * target), then holds the source's writes and waits for those in
 * flight. */
static void coroutine_fn backup_gate_entry(void *opaque)
{
    BackupJob *s = opaque;

    block_copy_set_target_zero(s->bcs, block_copy_probe_target_zero(s->bcs));
    block_copy_gate_writes(s->bcs);
}

static void coroutine_fn backup_activate_entry(void *opaque)
{
    BackupJob *s = opaque;

    bdrv_cbw_activate(s->filter);
    if (s->sync != MIRROR_SYNC_MODE_NONE) {
        job_progress_set_remaining(&s->common.job,
                                   block_copy_dirty_bytes(s->bcs));
    }
}

static void coroutine_fn backup_open_gate_entry(void *opaque)
{
    BackupJob *s = opaque;

    block_copy_open_gate(s->bcs);
}

void backup_jobs_activate(BlockJob **jobs, size_t n)
{
    /* Every source's writes are held before any bitmap is set and
     * released only after all are: one instant for the whole group,
     * whichever threads the sources run in. */
    for (size_t i = 0; i < n; i++) {
        aio_run_in_context(jobs[i]->job.aio_context, backup_gate_entry,
                           jobs[i]);
    }
    for (size_t i = 0; i < n; i++) {
        aio_run_in_context(jobs[i]->job.aio_context, backup_activate_entry,
                           jobs[i]);
    }
    for (size_t i = 0; i < n; i++) {
        aio_run_in_context(jobs[i]->job.aio_context, backup_open_gate_entry,
                           jobs[i]);
    }
}
