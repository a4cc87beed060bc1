/*
 * block-copy: copies clusters of a source node to a target node for the
 * copy-before-write filter and the backup job (see block/block-copy.h for
 * the model).  One file because the filter's synchronous path and the
 * job's parallel workers must share one bitmap and one task list: a
 * cluster is copied exactly once, by whoever claims it first.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/block-copy.h"
#include "block/block_int.h"
#include "util/hbitmap.h"

/*
 * A claimed range being copied.  Lives on the heap from the claim until
 * task_end(); in s->tasks meanwhile.  A guest write that touches the range
 * waits in waiters.  Buffered (captured) tasks leave the list as soon as
 * the old data is in memory; the write to the target then goes on in the
 * background.
 */
typedef struct BlockCopyTask {
    BlockCopyState *s;
    int64_t offset;
    int64_t bytes;
    int64_t start_ns;            /* clock_ns() at the claim */
    bool background;             /* a job worker (counted in s->workers) */
    bool listed;                 /* still in s->tasks */
    void *buf;                   /* captured old data (buffered cbw) */
    CoQueue waiters;
    struct BlockCopyTask *next;
} BlockCopyTask;

/* Owned by its creator (the backup job); all fields are touched only in
 * the source's AioContext. */
struct BlockCopyState {
    BlockDriverState *source;
    BlockDriverState *target;
    int64_t len;
    int64_t cluster_size;
    int64_t zero_granularity;    /* zero detection unit (<= cluster) */
    size_t mem_align;
    HBitmap *bitmap;             /* one bit per cluster still to copy */
    BlockCopyTask *tasks;        /* claimed ranges in flight */

    int max_workers;
    int64_t max_chunk;           /* multiple of cluster_size */
    bool skip_unallocated;
    /* Copy offload: asked for, and not refused yet by the pair (the
     * first -ENOTSUP clears it).  The edges are the filter's, found on
     * first use (see copy_edges). */
    bool use_copy_range;
    BdrvChild *src_edge;
    BdrvChild *dst_edge;
    bool target_zero;            /* the target reads as zeroes where we
                                  * have not written */

    /* The activation gate (block_copy_gate_writes): while closed, guest
     * writes wait at the start of block_copy_before_write. */
    bool gated;
    int gate_waiters;
    CoQueue gate;

    int workers;                 /* background tasks in flight */
    /* Until when the guest counts as writing (clock_ns): a guest write
     * that has to wait for a copy waits behind whatever the background
     * loop has queued on the same disks, so while the guest writes the
     * loop keeps only GUEST_WORKERS small chunks in flight. */
    int64_t guest_active_until;
    /* While the guest writes, the loop starts no chunk before this
     * (clock_ns): after each chunk it leaves GUEST_IDLE_FACTOR times the
     * chunk's duration to the guest (see block_copy_start_next). */
    int64_t background_resume_ns;
    CoQueue worker_free;         /* start_next waits for a free worker */
    int64_t cbw_buffer_size;
    int64_t cbw_buffer_used;
    int buffered_writes;         /* captured tasks still writing */
    CoQueue idle;                /* wait_all */

    int err;                     /* first unreported background error */
    int64_t err_offset;
    bool err_read;
    bool broken;                 /* a captured write failed */

    BlockCopyProgressFn *progress;
    void *progress_opaque;

    /* Reused max_chunk-sized buffers: a fresh buffer per task would
     * cost a page fault per 4 KiB on every copy. */
    GSList *free_bufs;
    int nr_free_bufs;

    /* The last block status answer of the source, reused by the next
     * tasks: asking again at every chunk makes the kernel rescan the
     * same extent (SEEK_HOLE walks it to its end).  Valid while the
     * clusters it covers are dirty or claimed, because a cluster changes
     * on the source only after it was copied (see status_lookup). */
    int64_t status_start;
    int64_t status_end;
    int status_ret;
};

/*
 * Background limits while the guest writes (see guest_active_until).
 * Two workers of 512 KiB rather than one of 256 KiB: make demo's 1 GiB
 * backup under a guest writer went from 26-29 to 34-39 MiB/s on disk
 * while the guest kept 92-96% of its rate, and bench/backup's fio guest
 * case did not move (disk 38-44% vs 39-41%, tmpfs within its noise).
 */
#define GUEST_WORKERS 2
#define GUEST_CHUNK (512 * 1024)
#define GUEST_ACTIVE_NS (50 * 1000 * 1000)
#define GUEST_IDLE_FACTOR 2
#define GUEST_MAX_PAUSE_NS (10 * 1000 * 1000)

static int64_t align_down64(int64_t x, int64_t a)
{
    return x / a * a;
}

static int64_t align_up64(int64_t x, int64_t a)
{
    return (x + a - 1) / a * a;
}

BlockCopyState *block_copy_state_new(BlockDriverState *source,
                                     BlockDriverState *target,
                                     const BlockCopyOptions *opts,
                                     Error **errp)
{
    BlockCopyState *s;
    int64_t len = bdrv_getlength(source);
    int64_t tlen = bdrv_getlength(target);
    int64_t cs = BLOCK_COPY_MIN_CLUSTER;

    if (len < 0 || tlen < 0) {
        error_setg_errno(errp, (int)-(len < 0 ? len : tlen),
                         "Cannot get the size of node '%s'",
                         bdrv_get_node_name(len < 0 ? source : target));
        return NULL;
    }
    if (len != tlen) {
        error_setg(errp, "Source and target image have different sizes");
        return NULL;
    }
    if (bdrv_get_aio_context(source) != bdrv_get_aio_context(target)) {
        error_setg(errp, "Source '%s' and target '%s' are in different I/O "
                   "threads", bdrv_get_node_name(source),
                   bdrv_get_node_name(target));
        return NULL;
    }
    cs = MAX(cs, (int64_t)bdrv_get_request_alignment(target));
    cs = MAX(cs, (int64_t)bdrv_get_request_alignment(source));

    s = g_new0(BlockCopyState, 1);
    s->source = source;
    s->target = target;
    s->len = len;
    s->cluster_size = cs;
    /* Finer than a cluster, so that a 4 KiB write into a hole of the
     * source costs 4 KiB, not a cluster, in the target. */
    s->zero_granularity = MAX((int64_t)4096,
                              (int64_t)bdrv_get_request_alignment(target));
    s->mem_align = MAX(MAX(bdrv_get_mem_alignment(source),
                           bdrv_get_mem_alignment(target)), (size_t)4096);
    s->bitmap = hbitmap_new(align_up64(len, cs) / cs);
    s->max_workers = opts->max_workers > 0 ? opts->max_workers
                                           : BLOCK_COPY_DEFAULT_WORKERS;
    s->max_chunk = opts->max_chunk > 0 ? opts->max_chunk
                                       : BLOCK_COPY_DEFAULT_CHUNK;
    if (bdrv_get_max_transfer(target) > 0) {
        s->max_chunk = MIN(s->max_chunk, bdrv_get_max_transfer(target));
    }
    s->max_chunk = MAX(align_down64(s->max_chunk, cs), cs);
    s->skip_unallocated = opts->skip_unallocated;
    s->use_copy_range = opts->use_copy_range;
    s->cbw_buffer_size = MAX(opts->cbw_buffer_size, (int64_t)0);
    co_queue_init(&s->worker_free);
    co_queue_init(&s->idle);
    co_queue_init(&s->gate);
    return s;
}

void block_copy_state_free(BlockCopyState *s)
{
    if (!s) {
        return;
    }
    g_assert(!s->tasks && !s->workers && !s->buffered_writes);
    g_slist_free_full(s->free_bufs, free);
    hbitmap_free(s->bitmap);
    g_free(s);
}

void block_copy_set_progress(BlockCopyState *s, BlockCopyProgressFn *fn,
                             void *opaque)
{
    s->progress = fn;
    s->progress_opaque = opaque;
}

int64_t block_copy_cluster_size(const BlockCopyState *s)
{
    return s->cluster_size;
}

int64_t block_copy_len(const BlockCopyState *s)
{
    return s->len;
}

void block_copy_set_dirty(BlockCopyState *s, int64_t offset, int64_t bytes)
{
    int64_t first = offset / s->cluster_size;
    int64_t last = align_up64(offset + bytes, s->cluster_size) /
                   s->cluster_size;

    hbitmap_set(s->bitmap, first, last - first);
}

int64_t block_copy_dirty_bytes(const BlockCopyState *s)
{
    int64_t bytes = hbitmap_count(s->bitmap) * s->cluster_size;
    int64_t last = hbitmap_size(s->bitmap) - 1;

    /* The last cluster may be partial. */
    if (last >= 0 && hbitmap_get(s->bitmap, last)) {
        bytes -= align_up64(s->len, s->cluster_size) - s->len;
    }
    return bytes;
}

void block_copy_set_target_zero(BlockCopyState *s, bool zero)
{
    s->target_zero = zero;
}

bool block_copy_probe_target_zero(BlockCopyState *s)
{
    int64_t offset = 0;

    while (offset < s->len) {
        int64_t pnum;
        int ret = bdrv_block_status(s->target, true, offset,
                                    s->len - offset, &pnum, NULL, NULL);

        if (ret < 0 || !(ret & BDRV_BLOCK_ZERO) || pnum <= 0) {
            return false;
        }
        offset += pnum;
    }
    return true;
}

bool block_copy_uses_copy_range(const BlockCopyState *s)
{
    return s->use_copy_range;
}

void block_copy_set_max_workers(BlockCopyState *s, int n)
{
    s->max_workers = MAX(n, 1);
    co_queue_restart_all(&s->worker_free);
}

bool block_copy_is_broken(const BlockCopyState *s)
{
    return s->broken;
}

int block_copy_take_error(BlockCopyState *s, int64_t *offset, bool *is_read)
{
    int err = s->err;

    if (err) {
        *offset = s->err_offset;
        *is_read = s->err_read;
        s->err = 0;
    }
    return err;
}

static void record_error(BlockCopyState *s, int ret, int64_t offset,
                         bool is_read)
{
    if (!s->err) {
        s->err = ret;
        s->err_offset = offset;
        s->err_read = is_read;
    }
}

/* ---- Tasks ---- */

/*
 * The first dirty run in [start, end) (granule numbers), at most max_len
 * granules: *rs, *rl.  False if none.  Scans only max_len bits past the
 * run's start, not up to the next clean bit: with 4 KiB granules a fully
 * dirty 16 GiB disk has 4 Mi bits, and every task would walk them all.
 */
static bool next_dirty_run(BlockCopyState *s, int64_t start, int64_t end,
                           int64_t max_len, int64_t *rs, int64_t *rl)
{
    int64_t first = hbitmap_next_set(s->bitmap, start);
    int64_t stop, limit;

    end = MIN(end, hbitmap_size(s->bitmap));
    if (first < 0 || first >= end) {
        return false;
    }
    limit = MIN(end, first + MAX(max_len, (int64_t)1));
    for (stop = first + 1; stop < limit && hbitmap_get(s->bitmap, stop);
         stop++) {
        /* extend the run */
    }
    *rs = first;
    *rl = stop - first;
    return true;
}

/* Claims [offset, offset+bytes) (cluster aligned, clipped to len): clears
 * its bits and lists a task. */
static BlockCopyTask *task_claim(BlockCopyState *s, int64_t offset,
                                 int64_t bytes, bool background)
{
    BlockCopyTask *t = g_new0(BlockCopyTask, 1);

    t->s = s;
    t->start_ns = clock_ns();
    t->offset = offset;
    t->bytes = MIN(bytes, s->len - offset);
    t->background = background;
    t->listed = true;
    co_queue_init(&t->waiters);
    hbitmap_reset(s->bitmap, offset / s->cluster_size,
                  align_up64(t->bytes, s->cluster_size) / s->cluster_size);
    t->next = s->tasks;
    s->tasks = t;
    return t;
}

/* Takes t out of the list and wakes whoever waits for its range. */
static void task_unlist(BlockCopyTask *t)
{
    BlockCopyState *s = t->s;

    for (BlockCopyTask **p = &s->tasks; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    t->listed = false;
    co_queue_restart_all(&t->waiters);
}

/* Ends a task: on failure its clusters are to be copied again; on success
 * the progress callback counts it. */
static void task_end(BlockCopyTask *t, int ret)
{
    BlockCopyState *s = t->s;

    if (ret < 0) {
        block_copy_set_dirty(s, t->offset, t->bytes);
    } else if (s->progress) {
        s->progress(s->progress_opaque, t->bytes);
    }
    if (t->listed) {
        task_unlist(t);
    }
    g_free(t);
}

static BlockCopyTask *find_task(BlockCopyState *s, int64_t offset,
                                int64_t bytes)
{
    for (BlockCopyTask *t = s->tasks; t; t = t->next) {
        if (t->offset < offset + bytes && offset < t->offset + t->bytes) {
            return t;
        }
    }
    return NULL;
}

static void wake_idle(BlockCopyState *s)
{
    if (!s->workers && !s->buffered_writes) {
        co_queue_restart_all(&s->idle);
    }
}

/* ---- Copying ---- */

/* True when a buffer for bytes comes from (and goes back to) the pool of
 * max_chunk-sized buffers; smaller ones (a guest write's few granules)
 * are allocated at their own size, so that a 4 KiB copy does not pin a
 * whole chunk of memory in the copy-before-write buffer. */
static bool copy_buf_pooled(const BlockCopyState *s, int64_t bytes)
{
    return bytes > s->max_chunk / 2 && bytes <= s->max_chunk;
}

static void *copy_buf_new(BlockCopyState *s, int64_t bytes)
{
    void *p = NULL;
    bool pooled = copy_buf_pooled(s, bytes);

    if (pooled && s->free_bufs) {
        p = s->free_bufs->data;
        s->free_bufs = g_slist_delete_link(s->free_bufs, s->free_bufs);
        s->nr_free_bufs--;
        return p;
    }
    if (posix_memalign(&p, s->mem_align,
                       pooled ? s->max_chunk
                              : align_up64(bytes, s->mem_align)) != 0) {
        g_error("block-copy: out of memory for a %" G_GINT64_FORMAT
                " byte buffer", bytes);
    }
    return p;
}

/* Returns a buffer of copy_buf_new(s, bytes) to the pool (or frees it). */
static void copy_buf_free(BlockCopyState *s, void *p, int64_t bytes)
{
    if (!p) {
        return;
    }
    if (copy_buf_pooled(s, bytes) && s->nr_free_bufs < s->max_workers + 4) {
        s->free_bufs = g_slist_prepend(s->free_bufs, p);
        s->nr_free_bufs++;
        return;
    }
    free(p);
}

/* Makes [offset, offset+bytes) of the target read as zeroes: nothing to
 * do on a target that reads as zeroes already. */
static int coroutine_fn write_zero_area(BlockCopyState *s, int64_t offset,
                                        int64_t bytes)
{
    if (s->target_zero) {
        return 0;
    }
    return bdrv_co_pwrite_zeroes(s->target, offset, bytes,
                                 BDRV_REQ_MAY_UNMAP);
}

/*
 * Writes buf (the data of [offset, offset+bytes)) to the target in runs:
 * runs of all-zero blocks (zero_granularity) become zero areas, the rest
 * plain writes, so a copy of sparse data stays sparse.
 */
static int coroutine_fn write_buffer(BlockCopyState *s, int64_t offset,
                                     int64_t bytes, uint8_t *buf)
{
    int64_t pos = 0;

    while (pos < bytes) {
        int64_t end = pos;
        bool zero = false;
        int ret;

        while (end < bytes) {
            int64_t next = MIN(align_up64(offset + end + 1,
                                          s->zero_granularity) - offset,
                               bytes);
            bool z = buffer_is_zero(buf + end, next - end);

            if (end > pos && z != zero) {
                break;
            }
            zero = z;
            end = next;
        }
        if (zero) {
            ret = write_zero_area(s, offset + pos, end - pos);
        } else {
            QIOVector qiov;

            qiov_init_buf(&qiov, buf + pos, end - pos);
            ret = bdrv_co_pwritev(s->target, offset + pos, end - pos, &qiov,
                                  0);
        }
        if (ret < 0) {
            return ret;
        }
        pos = end;
    }
    return 0;
}

/* Reads [offset, offset+bytes) of the source into buf.  No serialising:
 * a guest write to this range is itself waiting for us in its hook. */
static int coroutine_fn read_source(BlockCopyState *s, int64_t offset,
                                    int64_t bytes, uint8_t *buf)
{
    QIOVector qiov;

    qiov_init_buf(&qiov, buf, bytes);
    return bdrv_co_preadv(s->source, offset, bytes, &qiov,
                          BDRV_REQ_NO_SERIALISING);
}

/*
 * Block status of the source at offset: the allocation bit (sync=top,
 * allocation mode) or the BDRV_BLOCK_* bits (mapping mode), for *pnum
 * bytes.  Asks for everything up to the end of the node and keeps the
 * answer for the next calls.  Reusing it is safe: it is only asked for
 * clusters that are dirty or claimed by the asking task, and a cluster
 * can change on the source only once it has been copied (its first write
 * waits for the copy), after which nobody asks about it again.
 */
static int coroutine_fn status_lookup(BlockCopyState *s, int64_t offset,
                                      int64_t *pnum)
{
    int ret;

    if (offset >= s->status_start && offset < s->status_end) {
        *pnum = s->status_end - offset;
        return s->status_ret;
    }
    if (s->skip_unallocated) {
        ret = bdrv_co_is_allocated(s->source, offset, s->len - offset, pnum);
    } else {
        ret = bdrv_co_block_status(s->source, true, offset, s->len - offset,
                                   pnum, NULL, NULL);
    }
    if (ret >= 0 && *pnum > 0) {
        s->status_start = offset;
        s->status_end = offset + *pnum;
        s->status_ret = ret;
    }
    return ret;
}

/*
 * The edges bdrv_co_copy_range() needs: those of the node that has the
 * source as "file" and the target as "target" (the copy-before-write
 * filter that owns this state).  False if there is none (a state used on
 * its own): then there is no offload.
 */
static bool copy_edges(BlockCopyState *s)
{
    if (s->dst_edge) {
        return true;
    }
    for (BdrvChild *c = bdrv_next_parent(s->target, NULL); c;
         c = bdrv_next_parent(s->target, c)) {
        BlockDriverState *p = bdrv_child_parent_bs(c);
        BdrvChild *file = p ? bdrv_find_child(p, "file") : NULL;

        if (file && bdrv_child_bs(file) == s->source &&
            !strcmp(bdrv_child_name(c), "target")) {
            s->src_edge = file;
            s->dst_edge = c;
            return true;
        }
    }
    return false;
}

/*
 * Offloads the copy of a data area to the kernel.  Returns 0 or -errno,
 * or -ENOTSUP (nothing copied) when the pair cannot offload: then it
 * never tries again, and the caller reads and writes.
 */
static int coroutine_fn offload_area(BlockCopyState *s, int64_t offset,
                                     int64_t bytes)
{
    int ret;

    if (!s->use_copy_range || !copy_edges(s)) {
        s->use_copy_range = false;
        return -ENOTSUP;
    }
    ret = bdrv_co_copy_range(s->src_edge, offset, s->dst_edge, offset, bytes,
                             BDRV_REQ_NO_SERIALISING, 0);
    if (ret == -ENOTSUP) {
        s->use_copy_range = false;
    }
    return ret;
}

/*
 * Copies [offset, offset+bytes): asks block status first so that holes and
 * unallocated areas cost no read (sync=top uses allocation mode, the rest
 * mapping mode for zero areas).  *is_read tells which side failed.
 */
static int coroutine_fn copy_range(BlockCopyState *s, int64_t offset,
                                   int64_t bytes, bool *is_read)
{
    int64_t end = offset + bytes;
    uint8_t *buf = NULL;
    int64_t buf_bytes = 0;
    int ret = 0;

    while (offset < end) {
        int64_t pnum = 0;

        *is_read = true;
        ret = status_lookup(s, offset, &pnum);
        if (ret < 0) {
            break;
        }
        pnum = MIN(MAX(pnum, (int64_t)1), end - offset);
        if (s->skip_unallocated ? ret == 0 : !!(ret & BDRV_BLOCK_ZERO)) {
            *is_read = false;
            ret = s->skip_unallocated ? 0 : write_zero_area(s, offset, pnum);
        } else if (s->use_copy_range &&
                   (ret = offload_area(s, offset, pnum)) != -ENOTSUP) {
            /* Offloaded: which side failed is not known; the target's
             * is the likelier (ENOSPC). */
            *is_read = false;
        } else {
            if (!buf) {
                buf = copy_buf_new(s, bytes);
                buf_bytes = bytes;
            }
            ret = read_source(s, offset, pnum, buf);
            if (ret == 0) {
                *is_read = false;
                ret = write_buffer(s, offset, pnum, buf);
            }
        }
        if (ret < 0) {
            break;
        }
        offset += pnum;
    }
    copy_buf_free(s, buf, buf_bytes);
    return ret < 0 ? ret : 0;
}

/* ---- The copy-before-write path ---- */

/* Writes a captured task's old data to the target in the background. */
static void coroutine_fn buffered_write_entry(void *opaque)
{
    BlockCopyTask *t = opaque;
    BlockCopyState *s = t->s;
    int ret = write_buffer(s, t->offset, t->bytes, t->buf);

    if (ret < 0) {
        /* The source already holds the new data: this range can no
         * longer be copied as it was.  The job has to fail. */
        record_error(s, ret, t->offset, false);
        s->broken = true;
    } else if (s->progress) {
        s->progress(s->progress_opaque, t->bytes);
    }
    s->cbw_buffer_used -= t->bytes;
    s->buffered_writes--;
    copy_buf_free(s, t->buf, t->bytes);
    g_free(t);
    wake_idle(s);
}

/* Copies one claimed task for a guest write: through the buffer if it has
 * room (the guest write goes on as soon as the old data is read), else
 * straight to the target. */
static int coroutine_fn cbw_copy_task(BlockCopyState *s, BlockCopyTask *t)
{
    bool is_read;
    int ret;

    if (s->cbw_buffer_used + t->bytes <= s->cbw_buffer_size) {
        t->buf = copy_buf_new(s, t->bytes);
        ret = read_source(s, t->offset, t->bytes, t->buf);
        if (ret < 0) {
            copy_buf_free(s, t->buf, t->bytes);
            task_end(t, ret);
            return ret;
        }
        s->cbw_buffer_used += t->bytes;
        s->buffered_writes++;
        task_unlist(t);
        coroutine_enter(coroutine_create(buffered_write_entry, t));
        return 0;
    }
    ret = copy_range(s, t->offset, t->bytes, &is_read);
    task_end(t, ret);
    return ret;
}

int coroutine_fn block_copy_before_write(BlockCopyState *s, int64_t offset,
                                         int64_t bytes)
{
    int64_t cs = s->cluster_size;
    int64_t start, end;

    while (s->gated) {
        s->gate_waiters++;
        co_queue_wait(&s->gate, NULL);
        s->gate_waiters--;
    }
    if (offset >= s->len || bytes <= 0) {
        return 0;
    }
    if (hbitmap_count(s->bitmap) || s->tasks) {
        s->guest_active_until = clock_ns() + GUEST_ACTIVE_NS;
    }
    start = align_down64(offset, cs);
    end = MIN(align_up64(offset + bytes, cs), align_up64(s->len, cs));
    for (;;) {
        int64_t rs, rl;
        BlockCopyTask *t;

        while (next_dirty_run(s, start / cs, end / cs, s->max_chunk / cs,
                              &rs, &rl)) {
            int ret;

            t = task_claim(s, rs * cs, rl * cs, false);
            ret = cbw_copy_task(s, t);
            if (ret < 0) {
                return ret;
            }
        }
        t = find_task(s, start, end - start);
        if (!t) {
            return 0;
        }
        /* Someone else copies part of our range: wait, then look again
         * (a failed task puts its clusters back). */
        co_queue_wait(&t->waiters, NULL);
    }
}

/* ---- The background loop ---- */

/*
 * A background chunk t has ended: while the guest writes, the next one
 * waits GUEST_IDLE_FACTOR times as long as t took (at most
 * GUEST_MAX_PAUSE_NS), so that the loop keeps at most 1/(1+factor) of
 * the thread and the disks.  On tmpfs a chunk's I/O is a copy done by
 * the thread itself, and without the pause one worker in flight took
 * most of the thread from the guest's writes.  The job still advances:
 * never more than GUEST_MAX_PAUSE_NS between two chunks.
 */
static void guest_share(BlockCopyState *s, BlockCopyTask *t)
{
    int64_t now = clock_ns();

    if (now < s->guest_active_until) {
        s->background_resume_ns =
            now + MIN((now - t->start_ns) * GUEST_IDLE_FACTOR,
                      (int64_t)GUEST_MAX_PAUSE_NS);
    }
}

static void coroutine_fn worker_entry(void *opaque)
{
    BlockCopyTask *t = opaque;
    BlockCopyState *s = t->s;
    bool is_read = false;
    int64_t offset = t->offset;
    int ret = copy_range(s, t->offset, t->bytes, &is_read);

    if (ret < 0) {
        record_error(s, ret, offset, is_read);
    }
    guest_share(s, t);
    task_end(t, ret);
    s->workers--;
    co_queue_next(&s->worker_free);
    wake_idle(s);
}

/*
 * If the dirty granule rs starts an area that needs no write (a hole
 * when the target reads as zeroes, or unallocated with sync=top), clears
 * the dirty bits of that whole area (up to SKIP_MAX bytes) without a
 * worker, counts them as progress and returns the bytes skipped, with
 * *end the area's end.  Else 0.  Clearing is safe because the status
 * answer holds for every granule still dirty (see status_lookup); a
 * granule only partly in the area stays dirty.  Without this, a 16 GiB
 * disk with 1 GiB of data took 15 thousand tasks to walk its holes.
 */
#define SKIP_MAX (1024LL * 1024 * 1024)

static int64_t coroutine_fn skip_area(BlockCopyState *s, int64_t rs,
                                      int64_t *end)
{
    int64_t cs = s->cluster_size;
    int64_t offset = rs * cs;
    int64_t pnum = 0, before, skipped;
    int ret;

    if (!s->skip_unallocated && !s->target_zero) {
        return 0;
    }
    ret = status_lookup(s, offset, &pnum);
    if (ret < 0 || pnum <= 0 ||
        !(s->skip_unallocated ? ret == 0 : !!(ret & BDRV_BLOCK_ZERO))) {
        return 0;
    }
    *end = offset + pnum >= s->len ? align_up64(s->len, cs)
                                   : align_down64(offset + pnum, cs);
    *end = MIN(*end, offset + SKIP_MAX);
    if (*end <= offset) {
        return 0;
    }
    before = block_copy_dirty_bytes(s);
    hbitmap_reset(s->bitmap, rs, (*end - offset) / cs);
    skipped = before - block_copy_dirty_bytes(s);
    if (skipped > 0 && s->progress) {
        s->progress(s->progress_opaque, skipped);
    }
    return skipped;
}

int64_t coroutine_fn block_copy_start_next(BlockCopyState *s, int64_t *pos)
{
    int64_t cs = s->cluster_size;
    int64_t nclusters = hbitmap_size(s->bitmap);
    int64_t rs, rl, bytes;
    BlockCopyTask *t;
    bool guest = clock_ns() < s->guest_active_until;
    int64_t chunk = s->max_chunk;

    while (s->workers >= (guest ? MIN(GUEST_WORKERS, s->max_workers)
                                : s->max_workers)) {
        co_queue_wait(&s->worker_free, NULL);
        guest = clock_ns() < s->guest_active_until;
    }
    if (guest) {
        int64_t pause = s->background_resume_ns - clock_ns();

        if (pause > 0) {
            co_sleep_ns(pause);
        }
        chunk = MAX(MIN(chunk, (int64_t)GUEST_CHUNK), cs);
    }
    if (!next_dirty_run(s, *pos / cs, nclusters, chunk / cs, &rs, &rl) &&
        !next_dirty_run(s, 0, nclusters, chunk / cs, &rs, &rl)) {
        return 0;
    }
    bytes = skip_area(s, rs, pos);
    if (bytes > 0) {
        if (*pos >= s->len) {
            *pos = 0;
        }
        return bytes;
    }
    /* status_lookup may have yielded: look again. */
    if (!next_dirty_run(s, rs, nclusters, chunk / cs, &rs, &rl) &&
        !next_dirty_run(s, 0, nclusters, chunk / cs, &rs, &rl)) {
        return 0;
    }
    t = task_claim(s, rs * cs, rl * cs, true);
    *pos = (rs + rl) * cs;
    if (*pos >= s->len) {
        *pos = 0;
    }
    bytes = t->bytes;
    s->workers++;
    /* The worker may finish (and free t) before this returns. */
    coroutine_enter(coroutine_create(worker_entry, t));
    return bytes;
}

void coroutine_fn block_copy_wait_all(BlockCopyState *s)
{
    while (s->workers || s->buffered_writes) {
        co_queue_wait(&s->idle, NULL);
    }
}

/* ---- Activation ---- */

void coroutine_fn block_copy_gate_writes(BlockCopyState *s)
{
    s->gated = true;
    /* Every request still in flight on the source that is not waiting at
     * the gate may be a write that passed the hook before the gate
     * closed: it must land before the point in time. */
    while (bdrv_in_flight(s->source) > (unsigned)s->gate_waiters) {
        co_sleep_ns(20 * 1000);
    }
}

void block_copy_open_gate(BlockCopyState *s)
{
    s->gated = false;
    co_queue_restart_all(&s->gate);
}
