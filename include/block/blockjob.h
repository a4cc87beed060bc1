/*
 * Block jobs: jobs (include/job.h) that work on block nodes.  They add
 * what QEMU's block-job-* commands and BLOCK_JOB_* events show: the
 * device (the job id), len/offset (the job's progress), speed with a rate
 * limit, an I/O status and error policies, and they hold their nodes so
 * that those cannot be deleted meanwhile.
 *
 * Holding nodes: block_job_add_bdrv() attaches a root edge from the job
 * to a node (BdrvChild, role ROOT).  While it exists, blockdev-del of the
 * node fails with "Node 'X' is busy: used by block job 'ID'"
 * (bdrv_is_busy()), and draining the node pauses the job (the edge's
 * drained_begin/end).  block_job_remove_all_bdrv() drops every edge (a
 * driver's clean() may call it; freeing the job does it anyway).
 *
 * Threads: as for jobs: control functions in the main thread; the
 * block_job_ratelimit_* and block_job_error_action() calls in the job's
 * coroutine (the job's AioContext).
 */
#ifndef BLOCK_BLOCKJOB_H
#define BLOCK_BLOCKJOB_H

#include "block/block.h"
#include "job.h"

typedef struct BlockJob BlockJob;
typedef struct BlockJobDriver BlockJobDriver;

/* A kind of block job.  job_driver.instance_size covers the driver's
 * struct, whose first member is a BlockJob. */
struct BlockJobDriver {
    JobDriver job_driver;
    /* Optional: the speed changed (block-job-set-speed or creation);
     * for drivers that pass the limit on (e.g. to block-copy).  Main
     * thread. */
    void (*set_speed)(BlockJob *job, int64_t speed);
};

/*
 * A block job.  Fields are owned by blockjob.c; drivers read them
 * through the functions below.
 */
struct BlockJob {
    Job job;                    /* first: a BlockJob is a Job */
    BlockDriverState *bs;       /* main node (no own reference: the
                                 * first edge in nodes holds it) */
    GSList *nodes;              /* BdrvChild * root edges, main thread */
    int64_t speed;              /* bytes/s, 0 = unlimited */
    RateLimit limit;            /* job's coroutine */
    BlockDeviceIoStatus iostatus;
};

/*
 * Creates a block job on bs (state created, not started).  job_id NULL
 * means the name of the device (BlockBackend) using bs; if there is
 * none, "An explicit job ID is required for this node".  Attaches a root
 * edge to bs named "main node" and runs in bs's AioContext.  speed < 0:
 * "Parameter 'speed' expects a non-negative value".  flags as
 * job_create() (JOB_MANUAL_FINALIZE / JOB_MANUAL_DISMISS for
 * auto-finalize / auto-dismiss false).  Returns the job
 * (driver->job_driver.instance_size bytes) or NULL with errp set.
 */
void *block_job_create(const char *job_id, const BlockJobDriver *driver,
                       JobTxn *txn, BlockDriverState *bs, int64_t speed,
                       int flags, void (*cb)(void *opaque, int ret),
                       void *opaque, Error **errp);

/* Holds bs for the job's life with a root edge named name (e.g.
 * "target").  The edge needs no permission and shares all but resize
 * (the job's I/O goes through graph edges that carry its needs, e.g. the
 * copy-before-write filter's).  Fails like bdrv_root_attach_child(). */
bool block_job_add_bdrv(BlockJob *job, const char *name,
                        BlockDriverState *bs, Error **errp);
/* Drops every edge (idempotent). */
void block_job_remove_all_bdrv(BlockJob *job);
/* True if the job holds bs. */
bool block_job_has_bdrv(BlockJob *job, BlockDriverState *bs);

/* The block job with that id (not internal), or NULL. */
BlockJob *block_job_get(const char *id);
/* The block job a generic job is, or NULL if it is not one. */
BlockJob *block_job_from_job(Job *job);
/* Iterates over block jobs (NULL starts). */
BlockJob *block_job_next(BlockJob *prev);
/* True when some non-finished block job holds bs (e.g. to refuse a
 * second backup of the same source); *errp (optional) gets
 * "Node 'X' is busy: used by block job 'ID'". */
bool block_job_node_in_use(BlockDriverState *bs, Error **errp);

/* block-job-set-speed: verb check, then the new limit applies to the
 * next ratelimit computation (a sleeping job is woken). */
bool block_job_set_speed(BlockJob *job, int64_t speed, Error **errp);

/* ---- In the job's coroutine ---- */

/* Accounts n bytes done against the speed limit. */
void block_job_ratelimit_processed_bytes(BlockJob *job, uint64_t n);
/* Sleeps as long as the limit requires (0 if unlimited) through
 * job_sleep_ns(): cancel, pause and speed changes wake it. */
void coroutine_fn block_job_ratelimit_sleep(BlockJob *job);

/*
 * Decides what an I/O error errno (positive, e.g. EIO, ENOSPC) in a
 * read (is_read) or write means under on_err, as QEMU does:
 *   report -> REPORT; ignore -> IGNORE; stop -> STOP;
 *   enospc / auto -> STOP for ENOSPC, else REPORT.
 * Sends BLOCK_JOB_ERROR {device, operation, action}.  STOP also pauses
 * the job as a user pause (status 'paused', block-job-resume / job-resume
 * continue it; the driver then retries) and sets the I/O status (failed
 * or nospace; reset on user resume).  The caller then acts on the
 * returned action: REPORT -> fail the job with -errno; IGNORE -> go on;
 * STOP -> job_pause_point() and retry.
 */
BlockErrorAction block_job_error_action(BlockJob *job, BlockdevOnError on_err,
                                        bool is_read, int error);

/* The query-block-jobs entry (caller frees). */
BlockJobInfo *block_job_query(BlockJob *job, Error **errp);

#endif
