/*
 * The block layer as drivers see it: the BlockDriver callback table and
 * its contract, the node (BlockDriverState), the child edge (BdrvChild)
 * and the per-node limits.  Users of the block layer include block.h
 * only; this header is for block/ (drivers, the core, filters, jobs that
 * need node internals).
 *
 * The contract in one sentence: the core (block/io.c) validates and
 * shapes every request once, so a driver callback may assert what its
 * comment below guarantees and must not re-check it.
 */
#ifndef BLOCK_BLOCK_INT_H
#define BLOCK_BLOCK_INT_H

#include "block/block.h"

/*
 * Limits of a node, set by the driver in open() (or refresh_limits()).
 * All in bytes; 0 means "no limit" / "no preference" where noted.
 */
typedef struct BlockLimits {
    /* Reads and writes reach the driver aligned to this (offset and
     * length, except a last piece ending at the end of the node).  A
     * power of two, >= 1; the core pads smaller or unaligned requests with
     * read-modify-write. */
    uint32_t request_alignment;
    /* Longest read/write the driver takes at once (0: no limit, else a
     * multiple of request_alignment); the core splits longer ones. */
    int64_t max_transfer;
    /* Longest write-zeroes / discard at once (0: BDRV_REQUEST_MAX_BYTES). */
    int64_t max_pwrite_zeroes;
    int64_t max_pdiscard;
    /* Preferred granularity of discard (0: request_alignment); discard
     * pieces not aligned to it are dropped (discard is advisory). */
    uint32_t pdiscard_alignment;
    /* Alignment of memory buffers for this node (O_DIRECT), >= 1. */
    size_t min_mem_alignment;
} BlockLimits;

/*
 * A node.  Owned by its references (refcnt): bdrv_open_options() returns
 * one, each BdrvChild pointing at it holds one, the monitor holds one for
 * blockdev-add'ed nodes.  Thread rules: the graph fields (children,
 * parents, name, refcnt, drv, opaque) change only in the main thread with
 * the node drained; the request fields (tracked, in_flight, stats) belong
 * to the node's AioContext (ctx) thread.  ctx is the main context today;
 * the NBD/iothread issue moves a whole subtree at once (all nodes below
 * and the parents above change ctx together, drained).
 */
struct BlockDriverState {
    const BlockDriver *drv;
    void *opaque;                /* driver state, drv->instance_size bytes */
    char node_name[BDRV_NODE_NAME_MAX + 1];
    char *filename;              /* protocol drivers set it in open (or NULL) */
    AioContext *ctx;
    int refcnt;
    bool monitor_owned;          /* holds the blockdev-add reference */

    /* Open options, from BlockdevOptionsBase. */
    bool read_only;
    bool cache_direct;
    bool cache_no_flush;
    bool discard_unmap;          /* discard=unmap: discard reaches the driver */
    bool force_share;
    BlockdevDetectZeroesOptions detect_zeroes;

    BlockLimits bl;
    /* Flags the driver honours natively; the core emulates the rest
     * (FUA by a flush afterwards; MAY_UNMAP is just dropped). */
    BdrvRequestFlags supported_write_flags;
    BdrvRequestFlags supported_zero_flags;

    int64_t total_bytes;         /* cached drv->getlength(); -errno if failed */

    /* Graph: the edges to children (in attach order) and from parents. */
    BdrvChild *children;
    BdrvChild *parents;
    BdrvChild *file;             /* shortcut: the child in role FILE */
    BdrvChild *backing;          /* shortcut: the child in role BACKING */

    /* Request path state (ctx thread only). */
    BdrvTrackedRequest *tracked;     /* requests in flight, newest first */
    unsigned in_flight;              /* requests inside io.c on this node */
    unsigned serialising_in_flight;  /* tracked requests marked serialising */
    int quiesce_counter;             /* > 0 while drained */
    BdrvWriteHook *write_hooks;      /* called in list order */
    BlockAcctStats stats;

    BlockDriverState *next_all;      /* all nodes, creation order */
};

/*
 * An edge of the graph: parent --(name, role)--> bs.  The parent is a node
 * (parent_bs) or, for role ROOT, another object (klass + opaque).  The edge
 * holds one reference to bs.  Main thread only.
 *
 * Permissions (docs/permissions.md): perm is what the parent needs of bs,
 * shared what it lets bs's other parents do (BLK_PERM_* bits).  block.c
 * owns both fields: for a node parent they are recomputed from the
 * parent's driver (child_perm) whenever the parent's own parent edges
 * change; for a root parent they are what its owner asked for
 * (bdrv_root_attach_child, bdrv_child_set_perm).  They change only in the
 * main thread, during a graph change (attach, detach, replace, insert or
 * remove a filter) or a root edge's perm change, with no yield between the
 * check and the commit, so the request path never sees a half-changed
 * state.  Invariant between graph changes: for every node, each parent
 * edge's perm is within the shared of every other parent edge, and a
 * read-only node has no parent with write or resize.  The request path
 * does not look at them: the check costs nothing per request.
 */
struct BdrvChild {
    BlockDriverState *bs;            /* the child node */
    char *name;                      /* "file", "backing", "target", "root" */
    BdrvChildRole role;
    BlockDriverState *parent_bs;     /* NULL for a root parent */
    const BdrvChildClass *klass;     /* root parents only */
    void *opaque;                    /* root parent object */
    uint64_t perm;                   /* BLK_PERM_* the parent needs */
    uint64_t shared;                 /* BLK_PERM_* others may have */
    BdrvChild *next;                 /* in parent_bs->children */
    BdrvChild *next_parent;          /* in bs->parents */
};

/*
 * A request in flight on a node, on the request coroutine's stack.  Lives
 * from the start of the request (after validation and alignment) until
 * its end; in bs->tracked meanwhile.  ctx thread only.
 */
struct BdrvTrackedRequest {
    BlockDriverState *bs;
    int64_t offset;                  /* as asked by the caller */
    int64_t bytes;
    BdrvTrackedReqType type;
    BdrvRequestFlags flags;
    QIOVector *qiov;                 /* write data, or NULL */
    bool serialising;
    int64_t overlap_offset;          /* the range others must not overlap */
    int64_t overlap_bytes;
    Coroutine *co;
    CoQueue wait_queue;              /* requests waiting for this one */
    BdrvTrackedRequest *waiting_for; /* the request this one waits for */
    BdrvTrackedRequest *prev, *next;
};

/*
 * A driver: one "const BlockDriver bdrv_<name> = { ... }" per driver file
 * (not static: block/drivers.c lists it).  Every coroutine_fn callback
 * runs in the node's AioContext, in coroutine context, with bs->drv set
 * and the node open.
 * For reads and writes the core guarantees:
 *   - offset >= 0, bytes > 0, offset + bytes <= the node's size;
 *   - offset and bytes aligned to bl.request_alignment (bytes may stop at
 *     the end of the node instead);
 *   - bytes <= bl.max_transfer when that is set;
 *   - qiov->size == bytes;
 *   - writes, write-zeroes, discard, truncate only on a node that is
 *     not read-only, after the write hooks ran;
 *   - flags only from supported_write_flags / supported_zero_flags.
 * Callbacks return 0 (or what is documented) or -errno.
 */
struct BlockDriver {
    /* The schema name: "file", "raw", "null-co"... */
    const char *format_name;
    /* Which branch of BlockdevOptions this driver takes. */
    BlockdevDriver driver;
    size_t instance_size;
    /* Protocol drivers talk to storage; format/filter drivers have a
     * "file" child opened by the core from their options first. */
    bool is_protocol;
    bool is_filter;

    /*
     * Opens the node from its options (the whole BlockdevOptions; the
     * driver reads opts->u.<branch>).  The core has already set the base
     * options (read_only, cache, detect_zeroes...) and default limits
     * (alignment 1, no max transfer) in bs.  Format/filter drivers open
     * their children with bdrv_open_child().  The driver sets bs->bl, the
     * supported flags and, for protocols, bs->filename.  On failure it
     * frees what it allocated and sets errp; close() is then not called
     * and the core detaches the children already attached.  Main thread,
     * not in a coroutine.
     */
    int (*open)(BlockDriverState *bs, const BlockdevOptions *opts,
                Error **errp);
    /* Releases the driver state; the node is drained.  Children are
     * detached by the core after it returns.  Optional. */
    void (*close)(BlockDriverState *bs);

    /* Size in bytes or -errno.  Called at open and after truncate only
     * (the core caches it). */
    int64_t (*getlength)(BlockDriverState *bs);
    /* Host bytes used (query-block "actual-size"); optional. */
    int64_t (*get_allocated_file_size)(BlockDriverState *bs);

    int coroutine_fn (*co_preadv)(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes, QIOVector *qiov,
                                  BdrvRequestFlags flags);
    int coroutine_fn (*co_pwritev)(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, QIOVector *qiov,
                                   BdrvRequestFlags flags);
    /* Makes the range read as zeroes; may deallocate with MAY_UNMAP.
     * Same range guarantees as writes except alignment (only aligned to
     * request_alignment when possible) and bytes <= max_pwrite_zeroes.
     * -ENOTSUP: the core falls back to writing a zero buffer (unless
     * NO_FALLBACK).  Optional (absent: the fallback). */
    int coroutine_fn (*co_pwrite_zeroes)(BlockDriverState *bs,
                                         int64_t offset, int64_t bytes,
                                         BdrvRequestFlags flags);
    /* Deallocates the range if it can (advisory: -ENOTSUP is treated as
     * success).  Called only with discard=unmap, aligned to
     * pdiscard_alignment, bytes <= max_pdiscard.  Optional. */
    int coroutine_fn (*co_pdiscard)(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes);
    /* Makes completed writes stable on this node (the core then flushes
     * the children).  Not called with cache.no-flush.  Optional. */
    int coroutine_fn (*co_flush)(BlockDriverState *bs);
    /*
     * Status of the range [offset, offset+bytes) (in range, bytes > 0):
     * returns BDRV_BLOCK_* (DATA, ZERO, OFFSET_VALID, RAW; never
     * ALLOCATED or EOF) for the first *pnum bytes (0 < *pnum <= bytes;
     * *pnum may exceed bytes only up to the end of the node when that is
     * cheaper to report), *map and *file when OFFSET_VALID or RAW.  With
     * want_zero false a driver should answer without probing (e.g. a
     * protocol driver: DATA|OFFSET_VALID for the whole range).  Optional:
     * absent means DATA (protocols) or RAW to the file child (filters).
     */
    int coroutine_fn (*co_block_status)(BlockDriverState *bs, bool want_zero,
                                        int64_t offset, int64_t bytes,
                                        int64_t *pnum, int64_t *map,
                                        BlockDriverState **file);
    /* Resizes to offset bytes (not read-only; drained of other writes by
     * a serialising tracked request).  exact=false allows a larger size.
     * Optional (-ENOTSUP). */
    int coroutine_fn (*co_truncate)(BlockDriverState *bs, int64_t offset,
                                    bool exact, PreallocMode prealloc,
                                    Error **errp);
    /*
     * Copy offload (bdrv_co_copy_range), in two legs so that each node is
     * tracked and accounted once.  from: bs is the source, already
     * validated, tracked and accounted as a read of [offset, +bytes); a
     * format/filter driver passes the copy on with
     * bdrv_co_copy_range_from(its child, ...), a protocol driver hands it
     * to the destination with bdrv_co_copy_range_to(bs, ...).  to: bs is
     * the destination, already tracked as a write of [offset, +bytes)
     * whose write hooks ran; a format/filter driver passes it on with
     * bdrv_co_copy_range_to(src, ..., its child, ...), a protocol driver
     * copies from the protocol node src (e.g. copy_file_range).  Ranges
     * are in range on both nodes, bytes > 0.  Returns 0, -ENOTSUP when
     * the pair cannot offload (the caller copies with read + write) or
     * -errno.  Optional (absent: -ENOTSUP before anything is accounted).
     */
    int coroutine_fn (*co_copy_range_from)(BlockDriverState *bs,
                                           int64_t offset,
                                           BlockDriverState *dst,
                                           int64_t dst_offset, int64_t bytes,
                                           BdrvRequestFlags read_flags,
                                           BdrvRequestFlags write_flags);
    int coroutine_fn (*co_copy_range_to)(BlockDriverState *bs,
                                         BlockDriverState *src,
                                         int64_t src_offset, int64_t offset,
                                         int64_t bytes,
                                         BdrvRequestFlags read_flags,
                                         BdrvRequestFlags write_flags);
    /* Creates an image file of size bytes (blockd-img create).  Main
     * thread, outside coroutines.  Optional. */
    int (*create)(const char *filename, int64_t size, PreallocMode prealloc,
                  Error **errp);
    /* Recomputes bs->bl after a child changed (e.g. a format node whose
     * file child was replaced).  Optional. */
    void (*refresh_limits)(BlockDriverState *bs);
    /*
     * Asked before the node's tree moves to another AioContext (an
     * iothread): a driver whose state is bound to its context (fd
     * handlers, timers, a reader coroutine) and cannot follow returns
     * false with errp set, and nothing moves.  Main thread, not drained
     * yet.  Optional: absent means the driver looks its context up per
     * request and may move.
     */
    bool (*can_change_aio_context)(BlockDriverState *bs, AioContext *ctx,
                                   Error **errp);
    /*
     * Told when the node's tree moves to another AioContext, with the
     * tree drained.  detach_aio_context runs first, in the old context's
     * thread (bs still names the old context): the driver removes its fd
     * handlers and timers there.  attach_aio_context runs after the
     * switch, in new_ctx's thread: the driver installs them again.  Both
     * optional; a driver with no per-context state needs neither.
     */
    void (*detach_aio_context)(BlockDriverState *bs);
    void (*attach_aio_context)(BlockDriverState *bs, AioContext *new_ctx);
    /*
     * The permissions bs needs on its child c (in role) and shares with
     * c's other parents, given what bs's own parents need of bs (perm,
     * the union of their edges' perm) and let others do (shared, the
     * intersection).  Must be monotone: less perm / more shared from
     * above never gives more *nperm / less *nshared.  Main thread, during
     * a graph change; no I/O.  Optional: absent means
     * bdrv_default_child_perm().
     */
    void (*child_perm)(BlockDriverState *bs, BdrvChild *c,
                       BdrvChildRole role, uint64_t perm, uint64_t shared,
                       uint64_t *nperm, uint64_t *nshared);
};

/*
 * The default BlockDriver.child_perm, by role:
 *   FILE (the data of a format or filter node): what the parent's users
 *     need and share passes through, plus consistent read;
 *   BACKING: consistent read; shares everything but write and resize;
 *   TARGET (a job's or filter's copy target): write; shares only
 *     consistent read and write unchanged (nobody else may write it).
 */
void bdrv_default_child_perm(BlockDriverState *bs, BdrvChild *c,
                             BdrvChildRole role, uint64_t perm,
                             uint64_t shared, uint64_t *nperm,
                             uint64_t *nshared);

/*
 * Opens (inline definition) or looks up (reference) the child described
 * by ref and attaches it to parent as name/role.  An inline child
 * inherits, unless its options say otherwise, the parent's read-only and
 * cache options and discard=unmap (the parent decides what to discard), as
 * QEMU does.  Returns the edge, or NULL with errp set.  Main thread.
 */
BdrvChild *bdrv_open_child(BlockDriverState *parent, const BlockdevRef *ref,
                           const char *name, BdrvChildRole role,
                           Error **errp);

/* Refreshes bs->total_bytes from the driver (after truncate or resize).
 * Returns the new size or -errno. */
int64_t bdrv_refresh_total_bytes(BlockDriverState *bs);

/* Copies limits a format/filter node inherits from its file child
 * (alignment, max transfer, memory alignment); used by refresh_limits of
 * pass-through drivers such as raw. */
void bdrv_inherit_limits(BlockDriverState *bs, const BlockDriverState *child);

/*
 * The two legs of bdrv_co_copy_range() (see co_copy_range_from/_to), for
 * drivers passing a copy on: from validates, tracks and accounts the read
 * on src and calls its driver's co_copy_range_from; to does the same for
 * the write on dst (write hooks, wr_highest_offset) and calls
 * co_copy_range_to.  Same returns as bdrv_co_copy_range().
 */
int coroutine_fn bdrv_co_copy_range_from(BlockDriverState *src,
                                         int64_t src_offset,
                                         BlockDriverState *dst,
                                         int64_t dst_offset, int64_t bytes,
                                         BdrvRequestFlags read_flags,
                                         BdrvRequestFlags write_flags);
int coroutine_fn bdrv_co_copy_range_to(BlockDriverState *src,
                                       int64_t src_offset,
                                       BlockDriverState *dst,
                                       int64_t dst_offset, int64_t bytes,
                                       BdrvRequestFlags read_flags,
                                       BdrvRequestFlags write_flags);

/* Iteration over the driver table: bdrv_driver_at(0..) until NULL. */
const BlockDriver *bdrv_driver_at(size_t i);

#endif
