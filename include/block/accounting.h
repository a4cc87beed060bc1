/*
 * Block I/O accounting: the counters behind query-blockstats and the
 * metrics endpoint.  Every node (BlockDriverState) and every BlockBackend
 * embeds one BlockAcctStats; block/io.c and block/block-backend.c account
 * each request exactly once with a cookie (start, then done or failed;
 * invalid for requests refused by validation).
 *
 * Concurrency rules (the reason this file exists):
 *   - Single writer.  Every counter is written only by the thread of the
 *     owning node's AioContext, with relaxed atomic stores.  No lock.
 *   - Lock-free readers.  The monitor (main thread) and the metrics server
 *     read with relaxed atomic loads (block_acct_snapshot and the
 *     block_acct_*_info helpers), so a poll never waits for I/O and I/O
 *     never waits for a poll.  A snapshot's fields may come from slightly
 *     different instants (a read counted in nr_ops but not yet in
 *     total_time_ns); each 64-bit field on its own is never torn.
 *   - Configuration.  The account flags and stats intervals are set by the
 *     main thread before the first request.  Histograms are replaced at any
 *     time, by a swap that runs in the owner's thread (so never in the
 *     middle of a completion); the main thread allocates the new one before
 *     and frees the old one after, so main-thread readers never see freed
 *     memory.
 */
#ifndef BLOCK_ACCOUNTING_H
#define BLOCK_ACCOUNTING_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

typedef enum BlockAcctType {
    BLOCK_ACCT_READ,
    BLOCK_ACCT_WRITE,
    BLOCK_ACCT_FLUSH,
    BLOCK_ACCT_UNMAP,     /* discard and write-zeroes with MAY_UNMAP */
    BLOCK_ACCT__MAX,
} BlockAcctType;

/* The kinds that have timed statistics and latency histograms (QEMU's
 * set: no unmap). */
#define BLOCK_ACCT_LATENCY_KINDS 3

/* One window of a timed interval: latencies of completed requests.
 * Written by the owner thread; min is UINT64_MAX while count is 0. */
typedef struct BlockAcctWindow {
    uint64_t count[BLOCK_ACCT_LATENCY_KINDS];
    uint64_t sum_ns[BLOCK_ACCT_LATENCY_KINDS];
    uint64_t min_ns[BLOCK_ACCT_LATENCY_KINDS];
    uint64_t max_ns[BLOCK_ACCT_LATENCY_KINDS];
} BlockAcctWindow;

/*
 * A stats-intervals entry: two windows of interval_ns each; "cur" is
 * being filled, the other one holds the last complete window.  The owner
 * rotates them when a completion falls past cur's end.  Readers report the
 * last complete window, or the current one before any is complete.
 * Allocated in the main thread at configuration; freed by
 * block_acct_cleanup.
 */
typedef struct BlockAcctInterval {
    uint64_t interval_ns;
    int64_t cur_start_ns;        /* start of windows[cur] */
    unsigned cur;                /* 0 or 1 */
    bool have_complete;          /* windows[!cur] is a complete window */
    BlockAcctWindow windows[2];
    struct BlockAcctInterval *next;
} BlockAcctInterval;

/* A latency histogram: nbounds ascending boundaries (ns) and nbounds + 1
 * bins, bin i counting latencies in [bounds[i-1], bounds[i]).  Owner
 * writes bins; main thread allocates, replaces and frees (see above). */
typedef struct BlockAcctHistogram {
    unsigned nbounds;
    uint64_t *bounds;
    uint64_t *bins;
} BlockAcctHistogram;

/*
 * The counters of one node or backend.  Counter fields: owner writes
 * (relaxed atomic), anyone reads (relaxed atomic).  Configuration fields
 * (account_*, intervals, histogram): main thread, under the rules above.
 */
typedef struct BlockAcctStats {
    uint64_t nr_bytes[BLOCK_ACCT__MAX];
    uint64_t nr_ops[BLOCK_ACCT__MAX];
    uint64_t merged[BLOCK_ACCT__MAX];
    uint64_t failed_ops[BLOCK_ACCT__MAX];
    uint64_t invalid_ops[BLOCK_ACCT__MAX];
    uint64_t total_time_ns[BLOCK_ACCT__MAX];
    uint64_t in_flight[BLOCK_ACCT__MAX];   /* started, not yet finished */
    uint64_t wr_highest_offset;   /* end of the highest byte written */
    int64_t last_access_ns;       /* clock_ns() of the last accounted
                                   * access; 0 before the first */
    /* Configuration.  QEMU's semantics: invalid requests always count in
     * invalid_ops, but update the idle time only with account-invalid;
     * failed requests always count in failed_ops, but their latency goes
     * into the time, timed stats and histograms (and updates the idle
     * time) only with account-failed.  Both default to on, so the flags
     * are stored inverted and a zero-filled struct has the defaults. */
    bool ignore_invalid;
    bool ignore_failed;
    BlockAcctInterval *intervals;
    BlockAcctHistogram *histogram[BLOCK_ACCT_LATENCY_KINDS];
} BlockAcctStats;

/* One accounted request in flight (lives on the request's stack). */
typedef struct BlockAcctCookie {
    int64_t bytes;
    int64_t start_ns;
    BlockAcctType type;
} BlockAcctCookie;

/* Sets the account-invalid / account-failed flags (main thread, before
 * I/O or with the owner drained). */
void block_acct_setup(BlockAcctStats *s, bool account_invalid,
                      bool account_failed);

/* Adds a stats-intervals entry of interval_s seconds (> 0; main thread,
 * before I/O or drained).  False with errp set for 0. */
bool block_acct_add_interval(BlockAcctStats *s, uint64_t interval_s,
                             Error **errp);

/*
 * A new, empty histogram of the n boundaries (ns), or NULL with errp set
 * (naming param) if they are not strictly ascending and non-zero.  Main
 * thread.
 */
BlockAcctHistogram *block_acct_histogram_new(const uint64_t *bounds,
                                             unsigned n, const char *param,
                                             Error **errp);
void block_acct_histogram_free(BlockAcctHistogram *h);

/* Installs h (may be NULL) as the histogram of kind (READ, WRITE or
 * FLUSH) and returns the previous one.  In the owner's thread. */
BlockAcctHistogram *block_acct_histogram_swap(BlockAcctStats *s,
                                              BlockAcctType kind,
                                              BlockAcctHistogram *h);

/* The histogram of kind, or NULL (acquire load: any thread; main-thread
 * readers may use it until they yield, see the rules above). */
static inline BlockAcctHistogram *
block_acct_histogram(const BlockAcctStats *s, BlockAcctType kind)
{
    return __atomic_load_n(&s->histogram[kind], __ATOMIC_ACQUIRE);
}

/* Checks boundaries as block_acct_histogram_new does. */
bool block_acct_check_boundaries(const uint64_t *bounds, unsigned n,
                                 const char *param, Error **errp);

/* Frees the intervals and histograms (main thread, owner idle). */
void block_acct_cleanup(BlockAcctStats *s);

/*
 * The request hooks (owner thread only).  block/io.c and
 * block/block-backend.c call start before the request and exactly one of
 * done/failed after it; requests refused by validation call invalid.
 * merge_done counts requests that a caller merged into others.
 */
void block_acct_start(BlockAcctStats *s, BlockAcctCookie *cookie,
                      int64_t bytes, BlockAcctType type);
void block_acct_done(BlockAcctStats *s, BlockAcctCookie *cookie);
void block_acct_failed(BlockAcctStats *s, BlockAcctCookie *cookie);
void block_acct_invalid(BlockAcctStats *s, BlockAcctType type);
void block_acct_merge_done(BlockAcctStats *s, BlockAcctType type,
                           unsigned num);
/* Raises wr_highest_offset to end if it is higher. */
void block_acct_highest_offset(BlockAcctStats *s, uint64_t end);

/* A copy of the counters with relaxed loads (any thread).  The copy's
 * configuration pointers are NULL: read those with the helpers below. */
void block_acct_snapshot(const BlockAcctStats *s, BlockAcctStats *out);

/* Nanoseconds since the last accounted access, or -1 before the first. */
int64_t block_acct_idle_time_ns(const BlockAcctStats *s);

/* Values of one timed interval as reported (main thread). */
typedef struct BlockAcctIntervalInfo {
    uint64_t interval_s;
    uint64_t min_ns[BLOCK_ACCT_LATENCY_KINDS];
    uint64_t max_ns[BLOCK_ACCT_LATENCY_KINDS];
    uint64_t avg_ns[BLOCK_ACCT_LATENCY_KINDS];
    double avg_queue_depth[2];    /* read, write */
} BlockAcctIntervalInfo;

void block_acct_interval_info(const BlockAcctInterval *iv,
                              BlockAcctIntervalInfo *out);

/* ---- Reporting (block/qapi.c; main thread) ---- */

struct BlockDriverState;
struct BlockDeviceStats;

/* Fills the counters of d (not timed_stats and the histograms, which it
 * leaves alone) from s with relaxed loads. */
void bdrv_fill_device_stats(const BlockAcctStats *s,
                            struct BlockDeviceStats *d);

/* The three numbers libvirt reports per backing-chain element. */
typedef struct BdrvAllocationInfo {
    int64_t capacity;     /* virtual size */
    int64_t allocation;   /* host bytes allocated to the image data */
    int64_t physical;     /* size of the host file or device */
    bool valid;           /* false: no host storage; only capacity set */
} BdrvAllocationInfo;

/* Computes bs's allocation numbers (one stat(2) of its host file). */
void bdrv_query_allocation(struct BlockDriverState *bs,
                           BdrvAllocationInfo *out);

/*
 * query-blockstats (block/qapi.c).  bdrv_query_blockstats builds the
 * answer as generated QAPI structs (caller frees); the QMP command uses
 * bdrv_query_blockstats_json, which appends the same JSON text to buf
 * straight from the counters.  Both fail with errp set for unknown names
 * in devices / node-names or a filter that does not match query_nodes.
 */
struct BlockStatsList;
struct strList;
struct BlockStatsList *bdrv_query_blockstats(bool query_nodes,
                                             bool allocation,
                                             struct strList *devices,
                                             struct strList *node_names,
                                             Error **errp);
bool bdrv_query_blockstats_json(GString *buf, bool query_nodes,
                                bool allocation, struct strList *devices,
                                struct strList *node_names, Error **errp);

#endif /* BLOCK_ACCOUNTING_H */
