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
 * Checks the arguments, inserts a copy-before-write filter above the
 * source and creates the job on it (state created).  Refuses a source or
 * target used by another job, different sizes, a read-only target.
 * Returns the job or NULL with errp set (graph unchanged).
 */
BlockJob *backup_job_create(const BackupParams *p, JobTxn *txn,
                            Error **errp);
/* Waits until no request is in flight on any of the jobs' sources, then
 * fixes their point in time together (no yield in between).  Call once,
 * before job_start(). */
void backup_jobs_activate(BlockJob **jobs, size_t n);

#endif
