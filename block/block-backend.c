/*
 * BlockBackend: a named (device) or anonymous user of a node, attached as
 * a ROOT child so that the graph knows about it (busy checks, drain,
 * filter insertion below it).  Requests wait here while the node is
 * drained, are counted in the backend's own statistics, then go down the
 * request path of io.c.
 */
#include <errno.h>
#include <string.h>

#include "block/block-backend.h"
#include "block/block_int.h"

/*
 * Owned by its references; named backends are also listed (not
 * referenced) in the global list until freed.  Main thread, except the
 * request counters and queue, which belong to the node's context.
 */
struct BlockBackend {
    char *name;                  /* "" when anonymous */
    char *user_desc;             /* for busy errors, or NULL */
    int refcnt;
    BdrvChild *root;
    /* Permissions asked by blk_set_perm() before a node was attached
     * (has_perm), used by blk_insert_bs(); once attached they live in
     * root.  Main thread. */
    bool has_perm;
    uint64_t perm, shared;
    BlockAcctStats stats;
    /* Node's context (blk_drained_begin/end hop there). */
    int quiesce_counter;         /* > 0: new requests wait in queued */
    CoQueue queued;
    unsigned in_flight;
    BlockBackend *next;          /* named backends, creation order */
};

static BlockBackend *named_head;
/* name -> backend for the list above (stats: O(1) lookups keep adding
 * nodes fast beside thousands of devices). */
static GHashTable *named_by_name;

static void named_list_remove(BlockBackend *blk)
{
    if (named_by_name &&
        g_hash_table_lookup(named_by_name, blk->name) == blk) {
        g_hash_table_remove(named_by_name, blk->name);
    }
    for (BlockBackend **p = &named_head; *p; p = &(*p)->next) {
        if (*p == blk) {
            *p = blk->next;
            return;
        }
    }
}

BlockBackend *blk_new(const char *name, Error **errp)
{
    BlockBackend *blk;

    if (name && !bdrv_node_name_valid(name)) {
        error_setg(errp, "Invalid device name '%s'", name);
        return NULL;
    }
    if (name && blk_by_name(name)) {
        error_setg(errp, "Device with id '%s' already exists", name);
        return NULL;
    }
    if (name && bdrv_find_node(name)) {
        error_setg(errp, "Device name '%s' conflicts with an existing node "
                   "name", name);
        return NULL;
    }
    blk = g_new0(BlockBackend, 1);
    blk->name = g_strdup(name ? name : "");
    blk->refcnt = 1;
    co_queue_init(&blk->queued);
    if (name) {
        BlockBackend **p = &named_head;

        while (*p) {
            p = &(*p)->next;
        }
        *p = blk;
        if (!named_by_name) {
            named_by_name = g_hash_table_new(g_str_hash, g_str_equal);
        }
        g_hash_table_insert(named_by_name, blk->name, blk);
    }
    return blk;
}

void blk_ref(BlockBackend *blk)
{
    blk->refcnt++;
}

void blk_unref(BlockBackend *blk)
{
    if (!blk) {
        return;
    }
    g_assert(blk->refcnt > 0);
    if (--blk->refcnt > 0) {
        return;
    }
    blk_remove_bs(blk);
    named_list_remove(blk);
    block_acct_cleanup(&blk->stats);
    g_free(blk->name);
    g_free(blk->user_desc);
    g_free(blk);
}

static char *blk_parent_desc(BdrvChild *c)
{
    BlockBackend *blk = bdrv_child_get_opaque(c);

    if (blk->user_desc) {
        return g_strdup(blk->user_desc);
    }
    if (blk->name[0]) {
        return g_strdup_printf("used by device '%s'", blk->name);
    }
    return g_strdup("used by an anonymous block device");
}

/* QEMU's names for a backend in permission conflicts. */
static char *blk_user_desc(BdrvChild *c)
{
    BlockBackend *blk = bdrv_child_get_opaque(c);

    if (blk->user_desc) {
        return g_strdup(blk->user_desc);
    }
    if (blk->name[0]) {
        return g_strdup_printf("block device '%s'", blk->name);
    }
    return g_strdup("an unnamed block device");
}

/*
 * The quiesce counter and the queue of waiting requests belong to the
 * context of the backend's node: its request coroutines read the one and
 * append to the other without a lock.  Drain begins and ends in the main
 * thread, so the change runs in that context while we wait (directly
 * when we already are there).
 */
static void blk_run_in_owner(BlockBackend *blk, CoroutineEntry *fn)
{
    BlockDriverState *bs = blk_bs(blk);
    AioContext *ctx = bs ? bdrv_get_aio_context(bs) : aio_main_context();

    if (ctx == current_aio_context()) {
        fn(blk);
        return;
    }
    aio_run_in_context(ctx, fn, blk);
}

static void coroutine_fn blk_quiesce_co(void *opaque)
{
    BlockBackend *blk = opaque;

    blk->quiesce_counter++;
}

static void coroutine_fn blk_unquiesce_co(void *opaque)
{
    BlockBackend *blk = opaque;

    g_assert(blk->quiesce_counter > 0);
    if (--blk->quiesce_counter == 0) {
        co_queue_restart_all(&blk->queued);
    }
}

static void blk_drained_begin(BdrvChild *c)
{
    blk_run_in_owner(bdrv_child_get_opaque(c), blk_quiesce_co);
}

static void blk_drained_end(BdrvChild *c)
{
    blk_run_in_owner(bdrv_child_get_opaque(c), blk_unquiesce_co);
}

static const BdrvChildClass blk_child_class = {
    .get_parent_desc = blk_parent_desc,
    .get_user_desc = blk_user_desc,
    .drained_begin = blk_drained_begin,
    .drained_end = blk_drained_end,
};

bool blk_insert_bs(BlockBackend *blk, BlockDriverState *bs, Error **errp)
{
    uint64_t perm = BLK_PERM_CONSISTENT_READ, shared = BLK_PERM_ALL;

    g_assert(!blk->root);
    if (blk->has_perm) {
        perm = blk->perm;
        shared = blk->shared;
    } else if (!bdrv_is_read_only(bs)) {
        perm |= BLK_PERM_WRITE;
    }
    blk->root = bdrv_root_attach_child(bs, "root", &blk_child_class, blk,
                                       perm, shared, errp);
    return blk->root != NULL;
}

bool blk_set_perm(BlockBackend *blk, uint64_t perm, uint64_t shared,
                  Error **errp)
{
    if (blk->root && !bdrv_child_set_perm(blk->root, perm, shared, errp)) {
        return false;
    }
    blk->has_perm = true;
    blk->perm = perm;
    blk->shared = shared;
    return true;
}

void blk_get_perm(BlockBackend *blk, uint64_t *perm, uint64_t *shared)
{
    if (blk->root) {
        *perm = bdrv_child_perm(blk->root);
        *shared = bdrv_child_shared(blk->root);
    } else {
        *perm = blk->has_perm ? blk->perm : 0;
        *shared = blk->has_perm ? blk->shared : BLK_PERM_ALL;
    }
}

void blk_remove_bs(BlockBackend *blk)
{
    if (!blk->root) {
        return;
    }
    blk_drain(blk);
    bdrv_unref_child(blk->root);
    blk->root = NULL;
}

BlockDriverState *blk_bs(BlockBackend *blk)
{
    return blk->root ? bdrv_child_bs(blk->root) : NULL;
}

const char *blk_name(const BlockBackend *blk)
{
    return blk->name;
}

void blk_set_user_desc(BlockBackend *blk, const char *desc)
{
    g_free(blk->user_desc);
    blk->user_desc = g_strdup(desc);
}

BlockBackend *blk_by_name(const char *name)
{
    return named_by_name ? g_hash_table_lookup(named_by_name, name) : NULL;
}

BlockBackend *blk_next(BlockBackend *prev)
{
    return prev ? prev->next : named_head;
}

BlockDriverState *bdrv_lookup_bs(const char *device, const char *node_name,
                                 Error **errp)
{
    if (device) {
        BlockBackend *blk = blk_by_name(device);

        if (blk) {
            BlockDriverState *bs = blk_bs(blk);

            if (!bs) {
                error_setg(errp, "Device '%s' has no medium", device);
            }
            return bs;
        }
    }
    if (node_name) {
        BlockDriverState *bs = bdrv_find_node(node_name);

        if (bs) {
            return bs;
        }
    }
    error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
               device ? device : "", node_name ? node_name : "");
    return NULL;
}

BlockAcctStats *blk_get_stats(BlockBackend *blk)
{
    return &blk->stats;
}

AioContext *blk_get_aio_context(BlockBackend *blk)
{
    BlockDriverState *bs = blk_bs(blk);

    return bs ? bdrv_get_aio_context(bs) : aio_main_context();
}

int64_t blk_getlength(BlockBackend *blk)
{
    BlockDriverState *bs = blk_bs(blk);

    return bs ? bdrv_getlength(bs) : -ENOMEDIUM;
}

bool blk_is_read_only(BlockBackend *blk)
{
    BlockDriverState *bs = blk_bs(blk);

    return bs && bdrv_is_read_only(bs);
}

void blk_drain(BlockBackend *blk)
{
    BlockDriverState *bs = blk_bs(blk);

    AIO_WAIT_WHILE(blk_get_aio_context(blk), blk->in_flight > 0);
    if (bs) {
        bdrv_drain(bs);
    }
}

/* ---- Requests ---- */

typedef enum BlkOp {
    BLK_READ, BLK_WRITE, BLK_ZEROES, BLK_DISCARD, BLK_FLUSH,
} BlkOp;

static BlockAcctType blk_acct_type(BlkOp op, BdrvRequestFlags flags)
{
    switch (op) {
    case BLK_READ:
        return BLOCK_ACCT_READ;
    case BLK_FLUSH:
        return BLOCK_ACCT_FLUSH;
    case BLK_DISCARD:
        return BLOCK_ACCT_UNMAP;
    case BLK_ZEROES:
        return (flags & BDRV_REQ_MAY_UNMAP) ? BLOCK_ACCT_UNMAP
                                            : BLOCK_ACCT_WRITE;
    default:
        return BLOCK_ACCT_WRITE;
    }
}

/* The backend's part of every request: medium and range checks, waiting
 * while drained, accounting. */
static int coroutine_fn blk_co_do(BlockBackend *blk, BlkOp op, int64_t offset,
                                  int64_t bytes, QIOVector *qiov,
                                  BdrvRequestFlags flags)
{
    BlockAcctType type = blk_acct_type(op, flags);
    BlockDriverState *bs;
    BlockAcctCookie cookie;
    int ret;

    blk->in_flight++;
    while (blk->quiesce_counter > 0) {
        co_queue_wait(&blk->queued, NULL);
    }
    bs = blk_bs(blk);
    if (!bs) {
        blk->in_flight--;
        return -ENOMEDIUM;
    }
    if (op != BLK_FLUSH &&
        (offset < 0 || bytes < 0 || bytes > INT64_MAX - offset ||
         offset + bytes > bdrv_getlength(bs))) {
        block_acct_invalid(&blk->stats, type);
        blk->in_flight--;
        return offset < 0 || bytes < 0 ? -EINVAL : -EIO;
    }
    block_acct_start(&blk->stats, &cookie, bytes, type);
    switch (op) {
    case BLK_READ:
        ret = bdrv_co_preadv(bs, offset, bytes, qiov, flags);
        break;
    case BLK_WRITE:
        ret = bdrv_co_pwritev(bs, offset, bytes, qiov, flags);
        break;
    case BLK_ZEROES:
        ret = bdrv_co_pwrite_zeroes(bs, offset, bytes, flags);
        break;
    case BLK_DISCARD:
        ret = bdrv_co_pdiscard(bs, offset, bytes);
        break;
    default:
        ret = bdrv_co_flush(bs);
        break;
    }
    if (ret < 0) {
        block_acct_failed(&blk->stats, &cookie);
    } else {
        if (op == BLK_WRITE || op == BLK_ZEROES) {
            block_acct_highest_offset(&blk->stats, offset + bytes);
        }
        block_acct_done(&blk->stats, &cookie);
    }
    blk->in_flight--;
    return ret;
}

int coroutine_fn blk_co_preadv(BlockBackend *blk, int64_t offset,
                               int64_t bytes, QIOVector *qiov,
                               BdrvRequestFlags flags)
{
    return blk_co_do(blk, BLK_READ, offset, bytes, qiov, flags);
}

int coroutine_fn blk_co_pwritev(BlockBackend *blk, int64_t offset,
                                int64_t bytes, QIOVector *qiov,
                                BdrvRequestFlags flags)
{
    return blk_co_do(blk, BLK_WRITE, offset, bytes, qiov, flags);
}

int coroutine_fn blk_co_pwrite_zeroes(BlockBackend *blk, int64_t offset,
                                      int64_t bytes, BdrvRequestFlags flags)
{
    return blk_co_do(blk, BLK_ZEROES, offset, bytes, NULL, flags);
}

int coroutine_fn blk_co_pdiscard(BlockBackend *blk, int64_t offset,
                                 int64_t bytes)
{
    return blk_co_do(blk, BLK_DISCARD, offset, bytes, NULL, 0);
}

int coroutine_fn blk_co_flush(BlockBackend *blk)
{
    return blk_co_do(blk, BLK_FLUSH, 0, 0, NULL, 0);
}

/* ---- Synchronous and asynchronous forms ---- */

/* One request run outside the caller's stack frame. */
typedef struct BlkReq {
    BlockBackend *blk;
    BlkOp op;
    int64_t offset, bytes;
    QIOVector *qiov;
    BdrvRequestFlags flags;
    BlockCompletionFunc *cb;     /* async: completion, else NULL */
    void *opaque;
    bool in_submit;              /* async: still inside blk_aio_*() */
    int ret;
    bool done;
} BlkReq;

static void blk_aio_complete_bh(void *opaque)
{
    BlkReq *r = opaque;

    r->cb(r->opaque, r->ret);
    g_free(r);
}

static void coroutine_fn blk_req_entry(void *opaque)
{
    BlkReq *r = opaque;

    r->ret = blk_co_do(r->blk, r->op, r->offset, r->bytes, r->qiov, r->flags);
    r->done = true;
    if (!r->cb) {
        return;
    }
    if (r->in_submit) {
        /* Never call back from inside blk_aio_*(). */
        aio_bh_schedule_oneshot(blk_get_aio_context(r->blk),
                                blk_aio_complete_bh, r);
    } else {
        blk_aio_complete_bh(r);
    }
}

static int blk_sync(BlockBackend *blk, BlkOp op, int64_t offset,
                    int64_t bytes, QIOVector *qiov, BdrvRequestFlags flags)
{
    BlkReq r = { .blk = blk, .op = op, .offset = offset, .bytes = bytes,
                 .qiov = qiov, .flags = flags };

    if (in_coroutine()) {
        blk_req_entry(&r);
    } else {
        coroutine_enter(coroutine_create(blk_req_entry, &r));
        AIO_WAIT_WHILE(current_aio_context(), !r.done);
    }
    return r.ret;
}

static void blk_aio(BlockBackend *blk, BlkOp op, int64_t offset,
                    int64_t bytes, QIOVector *qiov, BdrvRequestFlags flags,
                    BlockCompletionFunc *cb, void *opaque)
{
    BlkReq *r = g_new0(BlkReq, 1);

    *r = (BlkReq) { .blk = blk, .op = op, .offset = offset, .bytes = bytes,
                    .qiov = qiov, .flags = flags, .cb = cb, .opaque = opaque,
                    .in_submit = true };
    coroutine_enter(coroutine_create(blk_req_entry, r));
    /* r may be gone already only if it was not in_submit; it still is. */
    if (!r->done) {
        r->in_submit = false;
    }
}

int blk_pread(BlockBackend *blk, int64_t offset, int64_t bytes, void *buf,
              BdrvRequestFlags flags)
{
    QIOVector qiov;

    if (bytes < 0) {
        return -EINVAL;
    }
    qiov_init_buf(&qiov, buf, bytes);
    return blk_sync(blk, BLK_READ, offset, bytes, &qiov, flags);
}

int blk_pwrite(BlockBackend *blk, int64_t offset, int64_t bytes,
               const void *buf, BdrvRequestFlags flags)
{
    QIOVector qiov;

    if (bytes < 0) {
        return -EINVAL;
    }
    qiov_init_buf(&qiov, (void *)buf, bytes);   /* only read from */
    return blk_sync(blk, BLK_WRITE, offset, bytes, &qiov, flags);
}

int blk_pwrite_zeroes(BlockBackend *blk, int64_t offset, int64_t bytes,
                      BdrvRequestFlags flags)
{
    return blk_sync(blk, BLK_ZEROES, offset, bytes, NULL, flags);
}

int blk_pdiscard(BlockBackend *blk, int64_t offset, int64_t bytes)
{
    return blk_sync(blk, BLK_DISCARD, offset, bytes, NULL, 0);
}

int blk_flush(BlockBackend *blk)
{
    return blk_sync(blk, BLK_FLUSH, 0, 0, NULL, 0);
}

int blk_truncate(BlockBackend *blk, int64_t offset, bool exact,
                 PreallocMode prealloc, Error **errp)
{
    BlockDriverState *bs = blk_bs(blk);

    if (!bs) {
        error_setg(errp, "No medium inserted");
        return -ENOMEDIUM;
    }
    return bdrv_truncate(bs, offset, exact, prealloc, errp);
}

void blk_aio_preadv(BlockBackend *blk, int64_t offset, QIOVector *qiov,
                    BdrvRequestFlags flags, BlockCompletionFunc *cb,
                    void *opaque)
{
    blk_aio(blk, BLK_READ, offset, (int64_t)qiov->size, qiov, flags, cb,
            opaque);
}

void blk_aio_pwritev(BlockBackend *blk, int64_t offset, QIOVector *qiov,
                     BdrvRequestFlags flags, BlockCompletionFunc *cb,
                     void *opaque)
{
    blk_aio(blk, BLK_WRITE, offset, (int64_t)qiov->size, qiov, flags, cb,
            opaque);
}

void blk_aio_flush(BlockBackend *blk, BlockCompletionFunc *cb, void *opaque)
{
    blk_aio(blk, BLK_FLUSH, 0, 0, NULL, 0, cb, opaque);
}

void blk_aio_pdiscard(BlockBackend *blk, int64_t offset, int64_t bytes,
                      BlockCompletionFunc *cb, void *opaque)
{
    blk_aio(blk, BLK_DISCARD, offset, bytes, NULL, 0, cb, opaque);
}

void blk_aio_pwrite_zeroes(BlockBackend *blk, int64_t offset, int64_t bytes,
                           BdrvRequestFlags flags, BlockCompletionFunc *cb,
                           void *opaque)
{
    blk_aio(blk, BLK_ZEROES, offset, bytes, NULL, flags, cb, opaque);
}
