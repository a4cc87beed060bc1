/*
 * The block layer as its users see it: blockdev.c, block jobs, exports
 * and the tools (blockd-img, blockd-io).  Drivers include block_int.h
 * instead, which adds the driver contract and the node internals.
 *
 * The model (see docs ARCHITECTURE.md, "Block layer"):
 *   - a node (BlockDriverState) is one driver instance with a node-name;
 *     nodes form a graph through BdrvChild edges that carry a role
 *     (file, backing, target) and link both ways, so that a filter can be
 *     inserted above a node and all of its parents re-pointed at once;
 *   - every request is byte-based and goes through one path, block/io.c,
 *     which validates, pads, tracks, runs write hooks, accounts and only
 *     then calls the driver;
 *   - nodes are reference counted; a BlockBackend (block-backend.h) is a
 *     named user of a node;
 *   - every edge says what its parent needs of the child and lets the
 *     child's other parents do (BLK_PERM_*); graph changes that would
 *     break that are refused (docs/permissions.md).
 *
 * Threads: every node belongs to one AioContext (bdrv_get_aio_context());
 * today that is always the main context.  Its requests run only in that
 * context's thread.  Graph changes (open, attach, replace, unref to zero)
 * happen only in the main thread with no request in flight on the
 * affected nodes (they wait for that first).
 *
 * Errors: control-plane functions take Error **errp last; data-path
 * functions (bdrv_co_*, bdrv_p*) return a negative errno:
 *   -EIO     request beyond the end of the node (QEMU's choice);
 *   -EINVAL  negative offset/length, or length overflowing INT64_MAX;
 *   -EPERM   write-like request on a read-only node;
 *   -ENOMEDIUM  the node has no driver (closed);
 *   anything else: what the driver reported.
 */
#ifndef BLOCK_BLOCK_H
#define BLOCK_BLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "block/accounting.h"
#include "qapi/qapi-types.h"
#include "util/aio.h"
#include "util/coroutine.h"
#include "util/error.h"
#include "util/iov.h"

typedef struct BlockDriver BlockDriver;
typedef struct BlockDriverState BlockDriverState;
typedef struct BdrvChild BdrvChild;
typedef struct BdrvChildClass BdrvChildClass;
typedef struct BdrvTrackedRequest BdrvTrackedRequest;
typedef struct BdrvWriteHook BdrvWriteHook;

/* Longest node-name, not counting the terminating NUL (as QEMU). */
#define BDRV_NODE_NAME_MAX 31

/* Largest length of a single request (as QEMU: fits in an int, aligned). */
#define BDRV_REQUEST_MAX_BYTES (INT32_MAX & ~(int64_t)511)

/* Flags of a request (bdrv_co_pwritev, bdrv_co_pwrite_zeroes...). */
typedef enum BdrvRequestFlags {
    /* The data is all zeroes: the write is a write-zeroes request. */
    BDRV_REQ_ZERO_WRITE = 0x1,
    /* Write-zeroes may deallocate (punch a hole) if reads stay zero. */
    BDRV_REQ_MAY_UNMAP = 0x2,
    /* Force unit access: the data is stable when the request completes. */
    BDRV_REQ_FUA = 0x4,
    /* Serialise against every overlapping request (RMW, copy-on-read,
     * block-copy): waits for them and makes them wait for this one. */
    BDRV_REQ_SERIALISING = 0x8,
    /* Write-zeroes must not fall back to writing a zero buffer: fail
     * with -ENOTSUP instead (used to probe for cheap zeroing). */
    BDRV_REQ_NO_FALLBACK = 0x10,
    /* The write skips the node's write hooks: for a job or filter that
     * writes data which must not be intercepted again (e.g. block-copy
     * restoring what it copied). */
    BDRV_REQ_NO_HOOKS = 0x20,
    /* A read that does not wait for serialising requests: for a write
     * hook that reads the data its own write is about to overwrite (the
     * write may be serialising, e.g. padded, and waits for the hook). */
    BDRV_REQ_NO_SERIALISING = 0x40,
} BdrvRequestFlags;

/*
 * Block status bits (bdrv_co_block_status):
 *   DATA          reads return data from this layer or below (not a hole);
 *   ZERO          reads return zeroes;
 *   OFFSET_VALID  *map is the offset of the range in *file;
 *   ALLOCATED     the range is allocated at this layer (set by io.c from
 *                 DATA/ZERO; drivers do not set it);
 *   EOF           the range reaches the end of the node;
 *   RAW           (drivers only) "ask *file at *map": io.c follows it
 *                 and never returns it to users.
 */
#define BDRV_BLOCK_DATA         0x01
#define BDRV_BLOCK_ZERO         0x02
#define BDRV_BLOCK_OFFSET_VALID 0x04
#define BDRV_BLOCK_RAW          0x08
#define BDRV_BLOCK_ALLOCATED    0x10
#define BDRV_BLOCK_EOF          0x20

/* The role of a child edge.  Filters have exactly one filtered child, in
 * role FILE, named "file". */
typedef enum BdrvChildRole {
    BDRV_CHILD_FILE,      /* the data of a format/filter node */
    BDRV_CHILD_BACKING,   /* the backing image of a format node */
    BDRV_CHILD_TARGET,    /* the target of a filter (copy-before-write) */
    BDRV_CHILD_ROOT,      /* a non-node user: BlockBackend, job, export */
} BdrvChildRole;

/*
 * Permissions on a node (docs/permissions.md), QEMU's bits, which are
 * also the lock byte numbers of docs/locking.md.  Every edge (BdrvChild)
 * carries "perm", what its parent needs of the child, and "shared", what
 * the parent lets the other parents of that child do.  A graph change
 * that would leave a node with one parent needing what another does not
 * share is refused, and so is write or resize on a read-only node.
 */
enum {
    /* Reads return what was written (no one changes the data in a way
     * the readers do not know of). */
    BLK_PERM_CONSISTENT_READ = 0x01,
    /* Writes that may change the visible data. */
    BLK_PERM_WRITE = 0x02,
    /* Writes that leave the visible data as it was (copy-on-read). */
    BLK_PERM_WRITE_UNCHANGED = 0x04,
    /* Changing the size. */
    BLK_PERM_RESIZE = 0x08,
    BLK_PERM_ALL = 0x0f,
};

/* "consistent read, write" for perm (caller frees; "" for 0). */
char *bdrv_perm_names(uint64_t perm);

/* Per-node (and per-backend) I/O counters: BlockAcctStats and the
 * block_acct_* hooks live in block/accounting.h. */

/* ---- Opening and the graph (main thread) ---- */

/*
 * Opens the node described by opts (the schema's BlockdevOptions, e.g.
 * from blockdev-add or --blockdev), opening inline child definitions
 * first and looking up referenced ones.  Validates the node-name (or
 * generates "#blockNNN") and refuses a name already in use.  Returns a
 * new node with one reference owned by the caller, or NULL with errp set.
 * opts is only read; the node keeps what it needs.
 */
BlockDriverState *bdrv_open_options(const BlockdevOptions *opts,
                                    Error **errp);

/* Options of bdrv_open_image(), the short way tools and --drive open an
 * image file: a "file" protocol node with a format node above it. */
typedef struct BdrvImageOpts {
    const char *filename;
    const char *format;      /* "raw" (default when NULL) */
    const char *node_name;   /* of the top node; NULL for auto */
    bool read_only;
    bool direct;             /* cache.direct: O_DIRECT */
    bool no_flush;           /* cache.no-flush */
    bool aio_native;         /* aio=native (linux-aio) instead of threads */
    bool discard_unmap;      /* discard=unmap */
    BlockdevDetectZeroesOptions detect_zeroes;
} BdrvImageOpts;

/* Opens o->format over a file node on o->filename; returns the top node
 * (one reference owned by the caller) or NULL with errp set. */
BlockDriverState *bdrv_open_image(const BdrvImageOpts *o, Error **errp);

/* Creates an image file of size bytes in format (NULL: "raw") through the
 * driver's create callback (blockd-img create).  Main thread, outside
 * coroutines.  Returns 0 or -errno with errp set. */
int bdrv_create_image(const char *format, const char *filename, int64_t size,
                      PreallocMode prealloc, Error **errp);

void bdrv_ref(BlockDriverState *bs);
/* Drops a reference; the last one drains the node, closes the driver,
 * detaches its children (dropping their references) and frees it.  NULL
 * is ignored. */
void bdrv_unref(BlockDriverState *bs);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(BlockDriverState, bdrv_unref)

/* True if name is a valid user-given node-name: starts with a letter;
 * letters, digits, '-', '_', '.'; at most BDRV_NODE_NAME_MAX chars. */
bool bdrv_node_name_valid(const char *name);
/* The node named name, or NULL (no reference taken). */
BlockDriverState *bdrv_find_node(const char *name);
/* Iterates over all nodes in creation order: bdrv_next_node(NULL) is the
 * first.  No reference is taken; do not change the graph meanwhile. */
BlockDriverState *bdrv_next_node(BlockDriverState *prev);

/* Nodes added by blockdev-add / --blockdev hold a "monitor" reference
 * that blockdev-del drops. */
void bdrv_set_monitor_owned(BlockDriverState *bs, bool owned);
bool bdrv_is_monitor_owned(const BlockDriverState *bs);

/*
 * Attaches child_bs as a child of parent_bs under name with role, taking
 * a new reference to child_bs.  The edge's permissions come from parent's
 * driver (BlockDriver.child_perm, or the default for role).  Returns the
 * edge, or NULL with errp set (name already used, a loop, different
 * AioContexts, a permission conflict: then nothing changed).  A parent
 * with no edges yet (being opened) adopts child_bs's context.
 */
BdrvChild *bdrv_attach_child(BlockDriverState *parent_bs,
                             BlockDriverState *child_bs, const char *name,
                             BdrvChildRole role, Error **errp);

/* How a non-node parent (backend, job, export) appears in the graph. */
struct BdrvChildClass {
    /* "used by device 'drive0'", "used by block job 'backup0'",
     * "export 'e0'" (caller frees): ends "Node 'x' is busy: ..." errors. */
    char *(*get_parent_desc)(BdrvChild *c);
    /* Optional: the parent as the subject of a permission conflict, as
     * QEMU names it: "block device 'drive0'", "an unnamed block device",
     * "backup job 'job0'", "export 'e0'" (caller frees).  Absent:
     * get_parent_desc's text. */
    char *(*get_user_desc)(BdrvChild *c);
    /* Optional: the parent stops / restarts issuing new requests
     * (bdrv_drained_begin/end on the child). */
    void (*drained_begin)(BdrvChild *c);
    void (*drained_end)(BdrvChild *c);
};

/*
 * Attaches a non-node parent (role ROOT) to bs, taking a reference.
 * opaque is the parent object, given back by bdrv_child_get_opaque().
 * perm / shared (BLK_PERM_*) are what the parent needs of bs and lets
 * others do; refused (errp set, graph and permissions unchanged) when
 * they conflict with another parent of bs or of a node below it, or
 * when perm has write or resize and bs is read-only.
 */
BdrvChild *bdrv_root_attach_child(BlockDriverState *bs, const char *name,
                                  const BdrvChildClass *klass, void *opaque,
                                  uint64_t perm, uint64_t shared,
                                  Error **errp);
/* Changes the perm / shared of a root edge, checked like an attach
 * (nothing changes on failure).  Main thread. */
bool bdrv_child_set_perm(BdrvChild *c, uint64_t perm, uint64_t shared,
                         Error **errp);
/* The edge's current perm / shared (BLK_PERM_*). */
uint64_t bdrv_child_perm(const BdrvChild *c);
uint64_t bdrv_child_shared(const BdrvChild *c);
/* The union of the perm and the intersection of the shared of bs's
 * parent edges (BLK_PERM_ALL shared when it has none). */
void bdrv_get_cumulative_perm(const BlockDriverState *bs, uint64_t *perm,
                              uint64_t *shared);
/* Detaches the edge (node or root parent) and drops its reference to the
 * child node.  NULL is ignored. */
void bdrv_unref_child(BdrvChild *child);

BlockDriverState *bdrv_child_bs(const BdrvChild *c);
const char *bdrv_child_name(const BdrvChild *c);
BdrvChildRole bdrv_child_role(const BdrvChild *c);
void *bdrv_child_get_opaque(const BdrvChild *c);
/* The parent node of a node edge, NULL for a root edge. */
BlockDriverState *bdrv_child_parent_bs(const BdrvChild *c);
/* Description of the parent for messages (caller frees):
 * "node 'raw0'" for node edges, the class's text for root edges. */
char *bdrv_child_parent_desc(BdrvChild *c);

/* Iterate over a node's children / over the edges pointing at it.  No
 * reference is taken; do not change the graph while iterating. */
BdrvChild *bdrv_next_child(BlockDriverState *bs, BdrvChild *prev);
BdrvChild *bdrv_next_parent(BlockDriverState *bs, BdrvChild *prev);
/* The child edge of bs with that name, or NULL. */
BdrvChild *bdrv_find_child(BlockDriverState *bs, const char *name);
/* The child in role FILE / BACKING (first one), or NULL. */
BlockDriverState *bdrv_file_bs(BlockDriverState *bs);
BlockDriverState *bdrv_backing_bs(BlockDriverState *bs);

/*
 * Re-points every parent edge of from to to, except edges whose parent
 * is to itself (so a filter that already has from as its child can take
 * its place).  Waits first for the requests in flight on both nodes, so
 * every request after the call takes the new path.  Main thread, outside
 * any drained section of from or to.  Fails (errp, nothing
 * changed) if the nodes are in different AioContexts, if a parent is
 * read-write and to is read-only, if it would create a loop, or if the
 * permissions of the new graph conflict (then the edges and all
 * permissions are as before).
 */
bool bdrv_replace_node(BlockDriverState *from, BlockDriverState *to,
                       Error **errp);
/*
 * Inserts filter above bs: filter must already have bs as its FILE
 * child; every other parent of bs is re-pointed to filter.  The inverse,
 * bdrv_remove_filter(), re-points filter's parents back to its FILE
 * child.  Used by copy-before-write.  Both fail like bdrv_replace_node().
 */
bool bdrv_insert_above(BlockDriverState *filter, BlockDriverState *bs,
                       Error **errp);
bool bdrv_remove_filter(BlockDriverState *filter, Error **errp);

/*
 * Busy check for deletion: true (errp set, "Node 'X' is busy: used as
 * file of node 'raw0'" / "...: used by device 'drive0'") if bs has any
 * parent.
 */
bool bdrv_is_busy(BlockDriverState *bs, Error **errp);

/* Drain: waits (polling bs's context) until no request is in flight on
 * bs, any node below it or any node above it, after telling the parents
 * above to stop issuing new ones.  Nested calls count; the matching _end
 * resumes.  The parents of bs must not change inside the section (the end
 * is told to the parents the begin was told to).  Main thread, outside
 * coroutines. */
void bdrv_drained_begin(BlockDriverState *bs);
void bdrv_drained_end(BlockDriverState *bs);
/* Waits for in-flight requests only (no quiescing), e.g. before close. */
void bdrv_drain(BlockDriverState *bs);
/* Requests in flight on bs (not counting children). */
unsigned bdrv_in_flight(const BlockDriverState *bs);

/* ---- Properties (any code in the main thread or the node's context) ---- */

AioContext *bdrv_get_aio_context(const BlockDriverState *bs);
/*
 * Moves bs and every node reachable from it (children and node parents,
 * transitively) into ctx, together, with the nodes drained; their
 * BlockBackends follow (they use their node's context).  Each driver's
 * detach_aio_context runs in the old context's thread before the switch
 * and attach_aio_context in ctx's thread after it.  Main thread.
 * Refused (errp set, nothing changed) when another root parent than the
 * one whose opaque is ignore_parent (e.g. the caller's own backend) uses
 * one of the nodes, or when moving between two iothreads: a node has one
 * owner (ARCHITECTURE.md) and only control-plane moves from/to the main
 * context are supported.
 */
bool bdrv_try_change_aio_context(BlockDriverState *bs, AioContext *ctx,
                                 void *ignore_parent, Error **errp);
const char *bdrv_get_node_name(const BlockDriverState *bs);
/* The driver's name as in the schema: "raw", "file", "null-co"... */
const char *bdrv_get_format_name(const BlockDriverState *bs);
/* The image file name shown by query-block ("" if none); format and
 * filter nodes show their file child's. */
const char *bdrv_get_filename(const BlockDriverState *bs);
bool bdrv_is_read_only(const BlockDriverState *bs);
BlockdevDetectZeroesOptions bdrv_get_detect_zeroes(const BlockDriverState *bs);
bool bdrv_get_cache_direct(const BlockDriverState *bs);
bool bdrv_get_cache_no_flush(const BlockDriverState *bs);
bool bdrv_get_discard_unmap(const BlockDriverState *bs);
/* The size in bytes (cached; refreshed after open and truncate), or
 * -errno. */
int64_t bdrv_getlength(BlockDriverState *bs);
/* Host bytes the image occupies (actual-size), or -ENOTSUP/-errno. */
int64_t bdrv_get_allocated_file_size(BlockDriverState *bs);
/* Depth of the backing chain below bs (0 when none). */
int bdrv_backing_chain_depth(BlockDriverState *bs);
/* Request alignment (power of two, >= 1) and max transfer (0: none). */
uint32_t bdrv_get_request_alignment(const BlockDriverState *bs);
int64_t bdrv_get_max_transfer(const BlockDriverState *bs);
/* Memory alignment for buffers used with this node (O_DIRECT). */
size_t bdrv_get_mem_alignment(const BlockDriverState *bs);
/* A buffer of size bytes aligned for bs; free it with bdrv_vfree(). */
void *bdrv_blockalign(BlockDriverState *bs, size_t size);
void bdrv_vfree(void *p);
/* The node's counters (see BlockAcctStats). */
BlockAcctStats *bdrv_get_stats(BlockDriverState *bs);

/* ---- The request path (coroutine_fn: node's context only) ---- */

/* qiov->size must equal bytes.  flags: SERIALISING or NO_SERIALISING. */
int coroutine_fn bdrv_co_preadv(BlockDriverState *bs, int64_t offset,
                                int64_t bytes, QIOVector *qiov,
                                BdrvRequestFlags flags);
/* flags: FUA, SERIALISING, NO_HOOKS. */
int coroutine_fn bdrv_co_pwritev(BlockDriverState *bs, int64_t offset,
                                 int64_t bytes, QIOVector *qiov,
                                 BdrvRequestFlags flags);
/* flags: MAY_UNMAP, FUA, NO_FALLBACK, SERIALISING. */
int coroutine_fn bdrv_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, BdrvRequestFlags flags);
/* Discard is advisory: 0 when the node cannot or may not (discard=ignore)
 * deallocate. */
int coroutine_fn bdrv_co_pdiscard(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes);
/* Flushes bs and then its children (skipped with cache.no-flush). */
int coroutine_fn bdrv_co_flush(BlockDriverState *bs);
/* Resizes the node (the driver resizes its own file if it has one). */
int coroutine_fn bdrv_co_truncate(BlockDriverState *bs, int64_t offset,
                                  bool exact, PreallocMode prealloc,
                                  Error **errp);

/*
 * Block status of [offset, offset+bytes): returns BDRV_BLOCK_* bits for
 * the first *pnum bytes (0 < *pnum <= bytes unless offset is at the end:
 * then 0 and *pnum = 0), or -errno.  *map / *file (may be NULL) get the
 * host offset and node when OFFSET_VALID.
 *   want_zero = false, "allocation mode": cheap; the format layer answers
 *     and protocol layers are not asked (a protocol node answers DATA for
 *     everything without probing);
 *   want_zero = true, "mapping mode": also refines ZERO / holes from the
 *     protocol layer under the format node.
 */
int coroutine_fn bdrv_co_block_status(BlockDriverState *bs, bool want_zero,
                                      int64_t offset, int64_t bytes,
                                      int64_t *pnum, int64_t *map,
                                      BlockDriverState **file);
/* 1 if the first *pnum bytes are allocated at bs's layer (through
 * filters), 0 if not, -errno; allocation mode. */
int coroutine_fn bdrv_co_is_allocated(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, int64_t *pnum);
/*
 * Copies [src_offset, +bytes) of src->bs to dst_offset of dst->bs without
 * the data passing through the caller (copy_file_range between two local
 * files, through raw nodes).  Goes through the request path like a read
 * on src (read_flags: SERIALISING, NO_SERIALISING) and a write on dst
 * (write_flags: SERIALISING, NO_HOOKS): validation, tracking and
 * serialisation, dst's write hooks, accounting, wr_highest_offset.
 * Returns 0; -ENOTSUP when the pair cannot offload (no driver support,
 * different file systems, a range not aligned for O_DIRECT...), in which
 * case nothing was accounted and the caller copies with read + write;
 * else -errno as reads/writes (-EIO past the end, -EPERM on a read-only
 * dst).  Both nodes in the caller's AioContext.
 */
int coroutine_fn bdrv_co_copy_range(BdrvChild *src, int64_t src_offset,
                                    BdrvChild *dst, int64_t dst_offset,
                                    int64_t bytes, BdrvRequestFlags read_flags,
                                    BdrvRequestFlags write_flags);

/* ---- Synchronous wrappers for tools and the control plane ----
 * Each runs the bdrv_co_ function in a coroutine and polls the current
 * AioContext until it finishes (or calls it directly when already in a
 * coroutine).  Main thread / the node's own thread. */
int bdrv_pread(BlockDriverState *bs, int64_t offset, int64_t bytes,
               void *buf, BdrvRequestFlags flags);
int bdrv_pwrite(BlockDriverState *bs, int64_t offset, int64_t bytes,
                const void *buf, BdrvRequestFlags flags);
int bdrv_preadv(BlockDriverState *bs, int64_t offset, QIOVector *qiov,
                BdrvRequestFlags flags);
int bdrv_pwritev(BlockDriverState *bs, int64_t offset, QIOVector *qiov,
                 BdrvRequestFlags flags);
int bdrv_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       BdrvRequestFlags flags);
int bdrv_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes);
int bdrv_flush(BlockDriverState *bs);
int bdrv_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                  PreallocMode prealloc, Error **errp);
int bdrv_block_status(BlockDriverState *bs, bool want_zero, int64_t offset,
                      int64_t bytes, int64_t *pnum, int64_t *map,
                      BlockDriverState **file);
int bdrv_is_allocated(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      int64_t *pnum);

/* ---- Write hooks (one hook point for backup/copy-before-write) ---- */

/*
 * Called for every write-like request on the node (write, write-zeroes,
 * discard, truncate), in registration order, after the request is
 * tracked (req) and has waited for overlapping serialising requests, and
 * before the driver runs.  A negative return fails the request with that
 * errno without calling the driver.  Runs in the node's context, in the
 * request's coroutine (it may yield, e.g. to copy old data away first).
 */
typedef int coroutine_fn BdrvWriteHookFn(BdrvWriteHook *hook,
                                         BdrvTrackedRequest *req);

struct BdrvWriteHook {
    BdrvWriteHookFn *fn;
    void *opaque;                 /* owner's data */
    BdrvWriteHook *next;          /* owned by the node's list */
};

/* Main thread, node drained or idle; the hook memory belongs to the
 * caller and must stay valid until removed. */
void bdrv_add_write_hook(BlockDriverState *bs, BdrvWriteHook *hook);
void bdrv_remove_write_hook(BlockDriverState *bs, BdrvWriteHook *hook);

/* What kind of request a tracked request is. */
typedef enum BdrvTrackedReqType {
    BDRV_TRACKED_READ,
    BDRV_TRACKED_WRITE,
    BDRV_TRACKED_DISCARD,
    BDRV_TRACKED_TRUNCATE,
} BdrvTrackedReqType;

/* Read-only view of a tracked request for hooks. */
BlockDriverState *bdrv_req_bs(const BdrvTrackedRequest *req);
int64_t bdrv_req_offset(const BdrvTrackedRequest *req);
int64_t bdrv_req_bytes(const BdrvTrackedRequest *req);
BdrvTrackedReqType bdrv_req_type(const BdrvTrackedRequest *req);
BdrvRequestFlags bdrv_req_flags(const BdrvTrackedRequest *req);
/* The data of a write (NULL for zeroes, discard, truncate). */
QIOVector *bdrv_req_qiov(const BdrvTrackedRequest *req);

/*
 * Serialising for block-copy and filters: waits (in a coroutine) until no
 * request overlapping [offset, offset+bytes) is in flight on bs, then
 * returns.  New overlapping requests may start afterwards; use a
 * BDRV_REQ_SERIALISING request to exclude them for a request's duration.
 */
void coroutine_fn bdrv_co_wait_for_overlapping(BlockDriverState *bs,
                                               int64_t offset, int64_t bytes);

/* ---- Queries (block/qapi.c, main thread) ---- */

/* The query-named-block-nodes / query-block "inserted" entry of bs
 * (caller frees with qapi_free_BlockDeviceInfo). */
BlockDeviceInfo *bdrv_block_device_info(BlockDriverState *bs);

/* ---- Command line of blockd (blockdev.c) ---- */

/* --blockdev ARG: keyval or JSON BlockdevOptions, as blockdev-add. */
bool blockdev_add_cmdline(const char *arg, Error **errp);
/* --drive id=NAME,file=PATH[,format=raw][,cache=none|writeback]
 * [,aio=native|threads][,if=none][,read-only=on|off]
 * [,discard=ignore|unmap][,detect-zeroes=off|on|unmap]: opens a file node
 * and a format node on it and a BlockBackend (device) NAME using it. */
bool drive_add_cmdline(const char *arg, Error **errp);

/* The table of drivers (block/drivers.c): lookup by schema name. */
const BlockDriver *bdrv_find_driver(const char *name);

#endif
