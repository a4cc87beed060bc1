/*
 * copy-before-write: a filter whose writes copy the old data of the
 * affected clusters to a target first (through block-copy), so that the
 * target receives the content of the file child at the filter's instant.
 * The backup job inserts one above its source; it can also be added by
 * blockdev-add on its own (active at once, every cluster to copy).
 *
 * The copy is done in a write hook on the *file child* (the source), not
 * in the filter's own write path: every write to the source is caught,
 * also one that reaches the source without passing through the filter.
 * Reads pass through untouched and never wait.
 */
#include <errno.h>

#include "block/block_int.h"
#include "block/copy-before-write.h"

/* Driver state; main thread for setup and close, the node's context for
 * the hook. */
typedef struct BDRVCopyBeforeWriteState {
    BlockCopyState *bcs;         /* owned */
    BdrvWriteHook hook;          /* registered on the file child's node */
    BlockDriverState *hooked;    /* that node (no own reference: the file
                                  * edge holds it) */
} BDRVCopyBeforeWriteState;

static int coroutine_fn cbw_write_hook(BdrvWriteHook *hook,
                                       BdrvTrackedRequest *req)
{
    BDRVCopyBeforeWriteState *s = hook->opaque;

    if (bdrv_req_type(req) == BDRV_TRACKED_TRUNCATE) {
        /* The copy is of a fixed size; resizing would lose its end. */
        return -EPERM;
    }
    return block_copy_before_write(s->bcs, bdrv_req_offset(req),
                                   bdrv_req_bytes(req));
}

/*
 * Permissions: the target is the default's (only the filter writes it).
 * On the source the filter passes its users' needs through, but once it
 * has users (it is inserted, or a job holds it) it shares neither write
 * nor resize with the source's other parents: a write that reached the
 * source, or a node below it, beside the filter would change data the
 * copy has not saved yet.  A filter just opened by bdrv_cbw_append, not
 * yet above its source, still shares them, so the source's current
 * writers do not block the insertion that moves them above the filter.
 */
static void cbw_child_perm(BlockDriverState *bs, BdrvChild *c,
                           BdrvChildRole role, uint64_t perm,
                           uint64_t shared, uint64_t *nperm,
                           uint64_t *nshared)
{
    bdrv_default_child_perm(bs, c, role, perm, shared, nperm, nshared);
    if (role == BDRV_CHILD_FILE && bdrv_next_parent(bs, NULL)) {
        *nshared &= ~(BLK_PERM_WRITE | BLK_PERM_RESIZE);
    }
}

typedef struct CbwHookChange {
    BDRVCopyBeforeWriteState *s;
    BlockDriverState *src;       /* NULL: remove the hook */
} CbwHookChange;

static void coroutine_fn cbw_set_hook_co(void *opaque)
{
    CbwHookChange *ch = opaque;
    BDRVCopyBeforeWriteState *s = ch->s;

    if (ch->src) {
        bdrv_add_write_hook(ch->src, &s->hook);
    } else {
        bdrv_remove_write_hook(s->hooked, &s->hook);
    }
    s->hooked = ch->src;
}

/*
 * Adds (src) or removes (NULL) the filter's write hook on the source.
 * Every write walks the hook list in the source's thread, which may be an
 * iothread, so the list changes there too, never beside a walker.  Main
 * thread, in or out of a coroutine.
 */
static void cbw_set_hook(BDRVCopyBeforeWriteState *s, BlockDriverState *src)
{
    CbwHookChange ch = { .s = s, .src = src };
    AioContext *ctx = bdrv_get_aio_context(src ? src : s->hooked);

    if (ctx == current_aio_context()) {
        cbw_set_hook_co(&ch);
    } else {
        aio_run_in_context(ctx, cbw_set_hook_co, &ch);
    }
}

static void cbw_refresh_limits(BlockDriverState *bs)
{
    bdrv_inherit_limits(bs, bs->file->bs);
    bs->supported_write_flags = BDRV_REQ_FUA;
    bs->supported_zero_flags = BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP |
                               BDRV_REQ_NO_FALLBACK;
}

/* Opens the children and the engine; inactive (empty bitmap). */
static int cbw_open_common(BlockDriverState *bs,
                           const BlockdevOptionsCbw *o,
                           const BlockCopyOptions *copts, Error **errp)
{
    BDRVCopyBeforeWriteState *s = bs->opaque;

    if (!bdrv_open_child(bs, o->file, "file", BDRV_CHILD_FILE, errp)) {
        return -EINVAL;
    }
    if (!bdrv_open_child(bs, o->target, "target", BDRV_CHILD_TARGET,
                         errp)) {
        return -EINVAL;
    }
    if (bdrv_is_read_only(bdrv_child_bs(bdrv_find_child(bs, "target")))) {
        error_setg(errp, "Target node '%s' is read-only",
                   bdrv_get_node_name(
                       bdrv_child_bs(bdrv_find_child(bs, "target"))));
        return -EPERM;
    }
    s->bcs = block_copy_state_new(bs->file->bs,
                                  bdrv_child_bs(bdrv_find_child(bs, "target")),
                                  copts, errp);
    if (!s->bcs) {
        return -EINVAL;
    }
    cbw_refresh_limits(bs);
    s->hook.fn = cbw_write_hook;
    s->hook.opaque = s;
    cbw_set_hook(s, bs->file->bs);
    return 0;
}

/* Options of the job's filter: the block-copy settings travel beside the
 * schema options, which have no place for them.  Main thread only, set
 * for the duration of one bdrv_open_options() call by bdrv_cbw_append. */
static const BlockCopyOptions *pending_copy_opts;

/* blockdev-add: a standalone filter is active from its creation; the
 * job's filter waits for bdrv_cbw_activate(). */
static int cbw_open(BlockDriverState *bs, const BlockdevOptions *opts,
                    Error **errp)
{
    BlockCopyOptions copts = { 0 };
    const BlockCopyOptions *job_opts = pending_copy_opts;
    int ret;

    pending_copy_opts = NULL;
    ret = cbw_open_common(bs, &opts->u.copy_before_write,
                          job_opts ? job_opts : &copts, errp);
    if (ret == 0 && !job_opts) {
        bdrv_cbw_activate(bs);
    }
    return ret;
}

static void cbw_close(BlockDriverState *bs)
{
    BDRVCopyBeforeWriteState *s = bs->opaque;

    if (s->hooked) {
        cbw_set_hook(s, NULL);
    }
    block_copy_state_free(s->bcs);
    s->bcs = NULL;
}

static int64_t cbw_getlength(BlockDriverState *bs)
{
    return bdrv_getlength(bs->file->bs);
}

static int coroutine_fn cbw_co_preadv(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, QIOVector *qiov,
                                      BdrvRequestFlags flags)
{
    return bdrv_co_preadv(bs->file->bs, offset, bytes, qiov, flags);
}

static int coroutine_fn cbw_co_pwritev(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, QIOVector *qiov,
                                       BdrvRequestFlags flags)
{
    return bdrv_co_pwritev(bs->file->bs, offset, bytes, qiov, flags);
}

static int coroutine_fn cbw_co_pwrite_zeroes(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             BdrvRequestFlags flags)
{
    return bdrv_co_pwrite_zeroes(bs->file->bs, offset, bytes, flags);
}

static int coroutine_fn cbw_co_pdiscard(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes)
{
    return bdrv_co_pdiscard(bs->file->bs, offset, bytes);
}

static int coroutine_fn cbw_co_block_status(BlockDriverState *bs,
                                            bool want_zero, int64_t offset,
                                            int64_t bytes, int64_t *pnum,
                                            int64_t *map,
                                            BlockDriverState **file)
{
    *pnum = bytes;
    *file = bs->file->bs;
    *map = offset;
    return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID;
}

static int64_t cbw_get_allocated_file_size(BlockDriverState *bs)
{
    return bdrv_get_allocated_file_size(bs->file->bs);
}

const BlockDriver bdrv_copy_before_write = {
    .format_name = "copy-before-write",
    .driver = BLOCKDEV_DRIVER_COPY_BEFORE_WRITE,
    .instance_size = sizeof(BDRVCopyBeforeWriteState),
    .is_filter = true,
    .open = cbw_open,
    .close = cbw_close,
    .getlength = cbw_getlength,
    .get_allocated_file_size = cbw_get_allocated_file_size,
    .co_preadv = cbw_co_preadv,
    .co_pwritev = cbw_co_pwritev,
    .co_pwrite_zeroes = cbw_co_pwrite_zeroes,
    .co_pdiscard = cbw_co_pdiscard,
    .co_block_status = cbw_co_block_status,
    .refresh_limits = cbw_refresh_limits,
    .child_perm = cbw_child_perm,
};

/* ---- The backup job's interface ---- */

BlockDriverState *bdrv_cbw_append(BlockDriverState *source,
                                  BlockDriverState *target,
                                  const char *filter_node_name,
                                  const BlockCopyOptions *opts,
                                  Error **errp)
{
    BlockdevRef file_ref = {
        .type = QTYPE_QSTRING,
        .u.reference = (char *)bdrv_get_node_name(source),
    };
    BlockdevRef target_ref = {
        .type = QTYPE_QSTRING,
        .u.reference = (char *)bdrv_get_node_name(target),
    };
    BlockdevOptions o = {
        .driver = BLOCKDEV_DRIVER_COPY_BEFORE_WRITE,
        .node_name = (char *)filter_node_name,
        .u.copy_before_write = {
            .file = &file_ref,
            .target = &target_ref,
        },
    };
    BlockDriverState *filter;

    pending_copy_opts = opts;
    filter = bdrv_open_options(&o, errp);
    pending_copy_opts = NULL;
    if (!filter) {
        return NULL;
    }
    if (!bdrv_insert_above(filter, source, errp)) {
        bdrv_unref(filter);
        return NULL;
    }
    return filter;
}

BlockCopyState *bdrv_cbw_get_block_copy(BlockDriverState *filter)
{
    BDRVCopyBeforeWriteState *s = filter->opaque;

    g_assert(filter->drv == &bdrv_copy_before_write);
    return s->bcs;
}

void bdrv_cbw_activate(BlockDriverState *filter)
{
    BlockCopyState *bcs = bdrv_cbw_get_block_copy(filter);

    block_copy_set_dirty(bcs, 0, block_copy_len(bcs));
}

void bdrv_cbw_drop(BlockDriverState *filter)
{
    BDRVCopyBeforeWriteState *s = filter->opaque;
    Error *err = NULL;

    /* The backup is over: writes need no copy any more, even those that
     * reach the source while the filter is being taken out. */
    if (s->hooked) {
        cbw_set_hook(s, NULL);
    }
    if (!bdrv_remove_filter(filter, &err)) {
        /* Only fails for nodes in different threads, which the job
         * prevents; keep the graph working rather than abort. */
        error_report_err(err);
    }
    bdrv_unref(filter);
}
