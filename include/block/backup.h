/*
 * The backup job (block/backup.c) as blockdev.c's commands use it:
 * create (filter inserted, inactive), activate (the point in time), start
 * (job_start).  Splitting creation from activation lets a transaction
 * give several jobs one instant: create all, then activate all without
 * yielding, then start all; on a failure the created ones are discarded
 * with job_early_fail() and the graph is as before.  Main thread.
 */
#ifndef BLOCK_BACKUP_H
#define BLOCK_BACKUP_H

#include "block/block-copy.h"
#include "block/blockjob.h"

typedef struct BackupParams {
    const char *job_id;              /* NULL: the device's name */
    const char *device;              /* the source as the user named it
                                      * (messages) */
    BlockDriverState *source;
    BlockDriverState *target;
    MirrorSyncMode sync;
    int64_t speed;
    BlockdevOnError on_source_error;
    BlockdevOnError on_target_error;
    int flags;                       /* JOB_MANUAL_FINALIZE / _DISMISS */
    const char *filter_node_name;    /* NULL: automatic */
    BlockCopyOptions copy;
} BackupParams;

/*
 * Checks the arguments, moves the target into the source's AioContext
 * if needed (back at the job's end), inserts a copy-before-write filter
 * above the source and creates the job on it (state created; it runs in
 * the source's context).  Refuses a source or target used by another
 * job, different sizes, a read-only target, a target that cannot move.
 * Returns the job or NULL with errp set (graph unchanged).
 */
BlockJob *backup_job_create(const BackupParams *p, JobTxn *txn,
                            Error **errp);
/* Fixes the jobs' point in time together: holds new writes to every
 * source (block_copy_gate_writes, in each source's context), waits for
 * the writes in flight, sets the bitmaps, lets the writes go on.  Call
 * once, before job_start(); main thread, in or out of a coroutine. */
void backup_jobs_activate(BlockJob **jobs, size_t n);

#endif
