/*
 * BlockBackend: a user of a node — a device (--drive id=..., named) or an
 * anonymous user such as a tool, an export or a job.  It is the root
 * parent of its node in the graph (a BdrvChild of role ROOT), so the node
 * cannot be deleted or lose its data while the backend uses it, and a
 * filter inserted above the node is inserted below the backend.
 *
 * The blk_* request functions wrap the bdrv_* ones of block.h: same
 * arguments, same errors (plus -ENOMEDIUM when no node is attached), and
 * they wait while the node is drained before starting.  Each backend also
 * keeps its own BlockAcctStats.
 *
 * Threads: created, named, attached and freed in the main thread; requests
 * run in the node's AioContext.
 */
#ifndef BLOCK_BLOCK_BACKEND_H
#define BLOCK_BLOCK_BACKEND_H

#include "block/block.h"

typedef struct BlockBackend BlockBackend;

/* Completion of an asynchronous request: ret is 0 or -errno.  Runs in the
 * backend's context, never before blk_aio_*() returned. */
typedef void BlockCompletionFunc(void *opaque, int ret);

/*
 * A new backend with one reference owned by the caller.  name may be NULL
 * (anonymous); otherwise it must be a valid id (as node-names: a letter
 * first, then letters, digits, '-', '_', '.') not used by another backend
 * nor by a node.  Returns NULL with errp set.
 */
BlockBackend *blk_new(const char *name, Error **errp);
void blk_ref(BlockBackend *blk);
/* Drops a reference; the last one detaches the node and frees the
 * backend.  NULL is ignored. */
void blk_unref(BlockBackend *blk);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(BlockBackend, blk_unref)

/*
 * Attaches bs (taking a reference).  The backend must have no node.  The
 * backend's root edge asks for what blk_set_perm() set, else for
 * consistent read, plus write unless bs is read-only, and shares all
 * (docs/permissions.md).  Refused (errp set, nothing attached) on a
 * permission conflict with another user of bs or of a node below it.
 */
bool blk_insert_bs(BlockBackend *blk, BlockDriverState *bs, Error **errp);
/*
 * Sets the permissions (BLK_PERM_*) the backend needs of its node and
 * shares with the node's other users: for the next blk_insert_bs(), or at
 * once when a node is attached (checked like a graph change: refused with
 * errp set and nothing changed on a conflict).  Main thread.
 */
bool blk_set_perm(BlockBackend *blk, uint64_t perm, uint64_t shared,
                  Error **errp);
/* What the backend has (attached) or will ask for (perm 0 and shared
 * BLK_PERM_ALL when it is not attached and nothing was set). */
void blk_get_perm(BlockBackend *blk, uint64_t *perm, uint64_t *shared);
/* Detaches the node (drains first).  No-op without one. */
void blk_remove_bs(BlockBackend *blk);
/* The attached node or NULL (no reference taken). */
BlockDriverState *blk_bs(BlockBackend *blk);
/* "" for an anonymous backend. */
const char *blk_name(const BlockBackend *blk);
/* Description used in "busy" errors: "device 'drive0'" or an anonymous
 * user's, set by blk_set_user_desc ("export 'e0'"). */
void blk_set_user_desc(BlockBackend *blk, const char *desc);

/* The named backend, or NULL. */
BlockBackend *blk_by_name(const char *name);
/* Iterates over named backends in creation order (NULL starts). */
BlockBackend *blk_next(BlockBackend *prev);

/*
 * Finds the node a QMP "device" / "node-name" argument means, as QEMU
 * does: device is a backend name (its node is returned), node_name a
 * node-name; either may be NULL.  When neither matches:
 * "Cannot find device='X' nor node-name='Y'" (GenericError).  When the
 * backend exists but has no node: "Device 'X' has no medium".
 */
BlockDriverState *bdrv_lookup_bs(const char *device, const char *node_name,
                                 Error **errp);
/* The usual shape: one name that may be either. */
static inline BlockDriverState *bdrv_lookup_device(const char *name,
                                                   Error **errp)
{
    return bdrv_lookup_bs(name, name, errp);
}

/* The backend's own counters. */
BlockAcctStats *blk_get_stats(BlockBackend *blk);
AioContext *blk_get_aio_context(BlockBackend *blk);
int64_t blk_getlength(BlockBackend *blk);
bool blk_is_read_only(BlockBackend *blk);

/* Requests (coroutine_fn: backend's context). */
int coroutine_fn blk_co_preadv(BlockBackend *blk, int64_t offset,
                               int64_t bytes, QIOVector *qiov,
                               BdrvRequestFlags flags);
int coroutine_fn blk_co_pwritev(BlockBackend *blk, int64_t offset,
                                int64_t bytes, QIOVector *qiov,
                                BdrvRequestFlags flags);
int coroutine_fn blk_co_pwrite_zeroes(BlockBackend *blk, int64_t offset,
                                      int64_t bytes, BdrvRequestFlags flags);
int coroutine_fn blk_co_pdiscard(BlockBackend *blk, int64_t offset,
                                 int64_t bytes);
int coroutine_fn blk_co_flush(BlockBackend *blk);
/* bdrv_co_copy_range() between the nodes of two backends, accounted on
 * both backends too (a read on blk_in, a write on blk_out). */
int coroutine_fn blk_co_copy_range(BlockBackend *blk_in, int64_t off_in,
                                   BlockBackend *blk_out, int64_t off_out,
                                   int64_t bytes, BdrvRequestFlags read_flags,
                                   BdrvRequestFlags write_flags);

/* Synchronous forms (see block.h's sync wrappers). */
int blk_pread(BlockBackend *blk, int64_t offset, int64_t bytes, void *buf,
              BdrvRequestFlags flags);
int blk_pwrite(BlockBackend *blk, int64_t offset, int64_t bytes,
               const void *buf, BdrvRequestFlags flags);
int blk_pwrite_zeroes(BlockBackend *blk, int64_t offset, int64_t bytes,
                      BdrvRequestFlags flags);
int blk_pdiscard(BlockBackend *blk, int64_t offset, int64_t bytes);
int blk_flush(BlockBackend *blk);
int blk_truncate(BlockBackend *blk, int64_t offset, bool exact,
                 PreallocMode prealloc, Error **errp);

/*
 * Asynchronous forms (blockd-io's aio_* commands, exports): start the
 * request in a coroutine and return; cb(opaque, ret) runs in the
 * backend's context when it completes, never from inside the call.
 * qiov must stay valid until then.
 */
void blk_aio_preadv(BlockBackend *blk, int64_t offset, QIOVector *qiov,
                    BdrvRequestFlags flags, BlockCompletionFunc *cb,
                    void *opaque);
void blk_aio_pwritev(BlockBackend *blk, int64_t offset, QIOVector *qiov,
                     BdrvRequestFlags flags, BlockCompletionFunc *cb,
                     void *opaque);
void blk_aio_flush(BlockBackend *blk, BlockCompletionFunc *cb, void *opaque);
void blk_aio_pdiscard(BlockBackend *blk, int64_t offset, int64_t bytes,
                      BlockCompletionFunc *cb, void *opaque);
void blk_aio_pwrite_zeroes(BlockBackend *blk, int64_t offset, int64_t bytes,
                           BdrvRequestFlags flags, BlockCompletionFunc *cb,
                           void *opaque);

/* Waits until no request of this backend is in flight (main thread).
 * Not inside a drained section of its node: requests held back by the
 * section count as in flight. */
void blk_drain(BlockBackend *blk);

#endif
