/*
 * block-copy: the engine that copies clusters of a source node to a target
 * node, shared by the copy-before-write filter (copy a cluster before a
 * guest write overwrites it) and the backup job's background loop.
 *
 * State: a bitmap of clusters still to copy and a list of tasks (ranges
 * being copied).  A range is claimed by clearing its bits and adding a
 * task; whoever needs it (a guest write) waits for the task.  A failed task
 * sets its bits again, so the range is retried by whoever comes next.
 *
 * Cluster size (the bitmap's granule) = max(4 KiB, both nodes' request
 * alignment).  Small, because a guest write into a range not copied yet
 * has to copy that whole granule first: with 64 KiB a 4 KiB random write
 * copied 16 times its size before it could proceed.  The background loop
 * is not affected: it claims runs of up to max_chunk bytes.  The engine
 * skips what need not be written: unallocated areas for sync=top
 * (allocation-mode block status), zero areas (mapping-mode block status
 * and buffer_is_zero on what was read).  When the target reads as zeroes
 * at the start (a fresh sparse file, a fresh NBD export), zero areas are
 * not written at all; otherwise they become write-zeroes with MAY_UNMAP.
 *
 * Threads: everything runs in the source's AioContext, an iothread's or
 * the main one (the target must be in the same one: the backup job moves
 * it there); the control-plane calls (new/free/set_*) in the main thread
 * with no task in flight, or, for a source in an iothread whose guest
 * may be writing, inside that context (aio_run_in_context).
 */
#ifndef BLOCK_BLOCK_COPY_H
#define BLOCK_BLOCK_COPY_H

#include "block/block.h"

typedef struct BlockCopyState BlockCopyState;

#define BLOCK_COPY_MIN_CLUSTER (4 * 1024)
#define BLOCK_COPY_DEFAULT_WORKERS 16
/*
 * Default chunk: 512 KiB.  Against an NBD target served by qemu-nbd,
 * 1 MiB and larger requests made the server take a fresh buffer for each
 * one (a page fault per 4 KiB received: 526 thousand for 2 GiB) and it
 * used about twice the CPU; at 512 KiB it reuses its buffers and a 2 GiB
 * backup to it on tmpfs took 1.4-2.6 s instead of 2.7-5.8 s.  File
 * targets were no slower (on disk and tmpfs).  A chunk is never larger
 * than the target's max_transfer either: a longer request would be split
 * into pieces written one after another.
 */
#define BLOCK_COPY_DEFAULT_CHUNK (512 * 1024)
#define BLOCK_COPY_DEFAULT_CBW_BUFFER (32 * 1024 * 1024)

typedef struct BlockCopyOptions {
    int max_workers;          /* background tasks in flight (0: default) */
    int64_t max_chunk;        /* bytes per task (0: default), at most
                               * the target's max_transfer, rounded
                               * down to whole clusters */
    bool skip_unallocated;    /* sync=top: copy only what source allocates */
    /* Bytes of old data a guest write may leave in memory while it is
     * written to the target in the background (0: write through: the guest
     * write waits for the target write). */
    int64_t cbw_buffer_size;
    /* Copy data areas with bdrv_co_copy_range() (copy_file_range between
     * two local files) instead of reading and writing them; falls back to
     * read + write for good at the first -ENOTSUP. */
    bool use_copy_range;
} BlockCopyOptions;

/* Called after each successfully finished range (copied or skipped),
 * with its length in bytes. */
typedef void BlockCopyProgressFn(void *opaque, int64_t bytes);

/*
 * Creates the engine for source -> target (no reference taken: the caller
 * keeps both alive while the state exists).  The bitmap starts empty.
 * Fails if the target is smaller than the source or in another context.
 */
BlockCopyState *block_copy_state_new(BlockDriverState *source,
                                     BlockDriverState *target,
                                     const BlockCopyOptions *opts,
                                     Error **errp);
/* No task may be in flight (block_copy_wait_all first).  NULL ignored. */
void block_copy_state_free(BlockCopyState *s);

void block_copy_set_progress(BlockCopyState *s, BlockCopyProgressFn *fn,
                             void *opaque);
int64_t block_copy_cluster_size(const BlockCopyState *s);
int64_t block_copy_len(const BlockCopyState *s);
/* Marks [offset, offset+bytes) (widened to clusters) as to be copied. */
void block_copy_set_dirty(BlockCopyState *s, int64_t offset, int64_t bytes);
/* Bytes still to copy (not counting tasks in flight). */
int64_t block_copy_dirty_bytes(const BlockCopyState *s);
/* Tells the engine the target reads as zeroes everywhere now, so zero
 * areas need no write.  Probe with block_copy_probe_target_zero(). */
void block_copy_set_target_zero(BlockCopyState *s, bool zero);
/* True if block status says the whole target reads as zeroes (main
 * thread or the source's context, in or out of a coroutine). */
bool block_copy_probe_target_zero(BlockCopyState *s);
/* True while copy offload is on: asked for (use_copy_range) and not
 * refused by the pair yet. */
bool block_copy_uses_copy_range(const BlockCopyState *s);
/* Max tasks in flight for the background loop (>= 1). */
void block_copy_set_max_workers(BlockCopyState *s, int n);

/*
 * The copy-before-write step: makes sure every cluster touching
 * [offset, offset+bytes) is copied (or held in the buffer) before
 * returning: copies the dirty ones itself and waits for tasks in flight.
 * Returns 0 or the -errno of a failed copy (the clusters stay dirty).
 * Coroutine in the source's context; must not be called with a request
 * of the caller serialising against the range on the source.
 */
int coroutine_fn block_copy_before_write(BlockCopyState *s, int64_t offset,
                                         int64_t bytes);

/*
 * The background step: claims the first dirty run at or after *pos (at
 * most max_chunk bytes) and starts a worker coroutine copying it; *pos
 * moves past the run and wraps to 0 at the end.  A run that needs no
 * write (holes to a target that reads as zeroes, unallocated areas for
 * sync=top) is instead marked done at once, up to 1 GiB of it.  Returns
 * the bytes claimed or skipped, or 0 when nothing is dirty.  Waits first while max_workers
 * tasks are in flight.  Coroutine, source's context.
 */
int64_t coroutine_fn block_copy_start_next(BlockCopyState *s, int64_t *pos);
/*
 * The point in time, for a source that may be written to in its own
 * thread while the control plane prepares the job: closes a gate that
 * holds every new write to the source at the copy-before-write hook, then
 * waits until no request is in flight on the source except those held
 * there (reads are not held: a steady stream of them delays this).  With
 * the gates of all sources of a transaction closed, set their bitmaps
 * (bdrv_cbw_activate) and open them again: the writes held go on, each
 * copying old data first.  Coroutine in the source's context.
 */
void coroutine_fn block_copy_gate_writes(BlockCopyState *s);
/* Lets the held writes go on.  Source's context. */
void block_copy_open_gate(BlockCopyState *s);

/* Waits until no background task and no buffered write is in flight. */
void coroutine_fn block_copy_wait_all(BlockCopyState *s);

/* The first error of a background task or buffered write since the last
 * call, or 0: -errno, the failing range's offset, and whether the read
 * (source) or the write (target) failed.  Clears it. */
int block_copy_take_error(BlockCopyState *s, int64_t *offset, bool *is_read);
/* True once a buffered write failed: its old data is lost, the copy can
 * no longer be point-in-time (the job must fail). */
bool block_copy_is_broken(const BlockCopyState *s);

#endif
