/*
 * Block I/O accounting: counters, timed statistics (stats-intervals) and
 * latency histograms of nodes and backends.  The concurrency rules are in
 * include/block/accounting.h: one writer (the owner's thread, relaxed
 * atomic stores), lock-free readers (relaxed atomic loads), configuration
 * changed only by the main thread while the owner is idle.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "block/accounting.h"
#include "util/aio.h"

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

static inline void acct_add(uint64_t *p, uint64_t v)
{
    /* Single writer: a relaxed load + store is enough, and readers never
     * see a torn value.  No read-modify-write instruction needed. */
    STORE(p, LOAD(p) + v);
}

/* ---- Configuration (main thread) ---- */

void block_acct_setup(BlockAcctStats *s, bool account_invalid,
                      bool account_failed)
{
    s->ignore_invalid = !account_invalid;
    s->ignore_failed = !account_failed;
}

static void window_reset(BlockAcctWindow *w)
{
    for (int k = 0; k < BLOCK_ACCT_LATENCY_KINDS; k++) {
        STORE(&w->count[k], 0);
        STORE(&w->sum_ns[k], 0);
        STORE(&w->min_ns[k], UINT64_MAX);
        STORE(&w->max_ns[k], 0);
    }
}

bool block_acct_add_interval(BlockAcctStats *s, uint64_t interval_s,
                             Error **errp)
{
    BlockAcctInterval *iv, **tail = &s->intervals;

    /* Bounded so that interval_ns cannot overflow. */
    if (interval_s == 0 || interval_s > UINT32_MAX) {
        error_setg(errp, "Invalid interval length: %" PRIu64
                   " (must be between 1 and %u seconds)", interval_s,
                   UINT32_MAX);
        return false;
    }
    iv = g_new0(BlockAcctInterval, 1);
    iv->interval_ns = interval_s * 1000000000ull;
    iv->cur_start_ns = clock_ns();
    window_reset(&iv->windows[0]);
    window_reset(&iv->windows[1]);
    while (*tail) {
        tail = &(*tail)->next;
    }
    *tail = iv;
    return true;
}

bool block_acct_check_boundaries(const uint64_t *bounds, unsigned n,
                                 const char *param, Error **errp)
{
    uint64_t prev = 0;

    for (unsigned i = 0; i < n; i++) {
        if (bounds[i] <= prev) {
            error_setg(errp, "Parameter '%s' must be a list of strictly "
                       "ascending non-zero boundaries (element %u: %" PRIu64
                       ")", param, i, bounds[i]);
            return false;
        }
        prev = bounds[i];
    }
    return true;
}

void block_acct_histogram_free(BlockAcctHistogram *h)
{
    if (h) {
        g_free(h->bounds);
        g_free(h->bins);
        g_free(h);
    }
}

BlockAcctHistogram *block_acct_histogram_new(const uint64_t *bounds,
                                             unsigned n, const char *param,
                                             Error **errp)
{
    BlockAcctHistogram *h;

    if (!block_acct_check_boundaries(bounds, n, param, errp)) {
        return NULL;
    }
    h = g_new0(BlockAcctHistogram, 1);
    h->nbounds = n;
    h->bounds = g_memdup2(bounds, n * sizeof(uint64_t));
    h->bins = g_new0(uint64_t, n + 1);
    return h;
}

BlockAcctHistogram *block_acct_histogram_swap(BlockAcctStats *s,
                                              BlockAcctType kind,
                                              BlockAcctHistogram *h)
{
    BlockAcctHistogram *old = s->histogram[kind];

    g_assert(kind < BLOCK_ACCT_LATENCY_KINDS);
    /* Release: a reader that sees h sees its initialised contents. */
    __atomic_store_n(&s->histogram[kind], h, __ATOMIC_RELEASE);
    return old;
}

void block_acct_cleanup(BlockAcctStats *s)
{
    while (s->intervals) {
        BlockAcctInterval *iv = s->intervals;

        s->intervals = iv->next;
        g_free(iv);
    }
    for (int k = 0; k < BLOCK_ACCT_LATENCY_KINDS; k++) {
        block_acct_histogram_free(s->histogram[k]);
        s->histogram[k] = NULL;
    }
}

/* ---- The request hooks (owner thread) ---- */

void block_acct_start(BlockAcctStats *s, BlockAcctCookie *cookie,
                      int64_t bytes, BlockAcctType type)
{
    cookie->bytes = bytes;
    cookie->type = type;
    cookie->start_ns = clock_ns();
    acct_add(&s->in_flight[type], 1);
}

/* Binary search for the bin of latency: the number of boundaries <= it. */
static void histogram_account(BlockAcctHistogram *h, uint64_t latency)
{
    unsigned lo = 0, hi = h->nbounds;

    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;

        if (h->bounds[mid] <= latency) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    acct_add(&h->bins[lo], 1);
}

static void window_account(BlockAcctWindow *w, int kind, uint64_t latency)
{
    acct_add(&w->count[kind], 1);
    acct_add(&w->sum_ns[kind], latency);
    if (latency < LOAD(&w->min_ns[kind])) {
        STORE(&w->min_ns[kind], latency);
    }
    if (latency > LOAD(&w->max_ns[kind])) {
        STORE(&w->max_ns[kind], latency);
    }
}

/* Moves the interval's current window forward so that it contains now;
 * the window it leaves becomes the complete one only if it ended no more
 * than one interval ago (an older one says nothing about "recently"). */
static void interval_rotate(BlockAcctInterval *iv, int64_t now)
{
    uint64_t elapsed = now - iv->cur_start_ns;
    uint64_t windows = elapsed / iv->interval_ns;

    if (windows == 0) {
        return;
    }
    if (windows == 1) {
        STORE(&iv->cur, !iv->cur);
        STORE(&iv->have_complete, true);
    } else {
        STORE(&iv->have_complete, false);
    }
    window_reset(&iv->windows[iv->cur]);
    STORE(&iv->cur_start_ns, iv->cur_start_ns +
          (int64_t)(windows * iv->interval_ns));
}

static void acct_finish(BlockAcctStats *s, BlockAcctCookie *cookie,
                        bool failed)
{
    int64_t now = clock_ns();
    uint64_t latency = now > cookie->start_ns ? now - cookie->start_ns : 0;
    BlockAcctType type = cookie->type;

    acct_add(&s->in_flight[type], -1);
    if (failed) {
        acct_add(&s->failed_ops[type], 1);
        if (s->ignore_failed) {
            return;
        }
    } else {
        acct_add(&s->nr_bytes[type], cookie->bytes);
        acct_add(&s->nr_ops[type], 1);
    }
    acct_add(&s->total_time_ns[type], latency);
    STORE(&s->last_access_ns, now);
    if (type >= BLOCK_ACCT_LATENCY_KINDS) {
        return;
    }
    for (BlockAcctInterval *iv = s->intervals; iv; iv = iv->next) {
        interval_rotate(iv, now);
        window_account(&iv->windows[iv->cur], type, latency);
    }
    if (s->histogram[type]) {
        histogram_account(s->histogram[type], latency);
    }
}

void block_acct_done(BlockAcctStats *s, BlockAcctCookie *cookie)
{
    acct_finish(s, cookie, false);
}

void block_acct_failed(BlockAcctStats *s, BlockAcctCookie *cookie)
{
    acct_finish(s, cookie, true);
}

void block_acct_invalid(BlockAcctStats *s, BlockAcctType type)
{
    acct_add(&s->invalid_ops[type], 1);
    if (!s->ignore_invalid) {
        STORE(&s->last_access_ns, clock_ns());
    }
}

void block_acct_merge_done(BlockAcctStats *s, BlockAcctType type,
                           unsigned num)
{
    acct_add(&s->merged[type], num);
}

void block_acct_highest_offset(BlockAcctStats *s, uint64_t end)
{
    if (end > LOAD(&s->wr_highest_offset)) {
        STORE(&s->wr_highest_offset, end);
    }
}

/* ---- Readers (any thread for counters; main thread for the rest) ---- */

void block_acct_snapshot(const BlockAcctStats *s, BlockAcctStats *out)
{
    memset(out, 0, sizeof(*out));
    for (int t = 0; t < BLOCK_ACCT__MAX; t++) {
        out->nr_bytes[t] = LOAD(&s->nr_bytes[t]);
        out->nr_ops[t] = LOAD(&s->nr_ops[t]);
        out->merged[t] = LOAD(&s->merged[t]);
        out->failed_ops[t] = LOAD(&s->failed_ops[t]);
        out->invalid_ops[t] = LOAD(&s->invalid_ops[t]);
        out->total_time_ns[t] = LOAD(&s->total_time_ns[t]);
        out->in_flight[t] = LOAD(&s->in_flight[t]);
    }
    out->wr_highest_offset = LOAD(&s->wr_highest_offset);
    out->last_access_ns = LOAD(&s->last_access_ns);
    out->ignore_invalid = s->ignore_invalid;
    out->ignore_failed = s->ignore_failed;
}

int64_t block_acct_idle_time_ns(const BlockAcctStats *s)
{
    int64_t last = LOAD(&s->last_access_ns);
    int64_t now;

    if (last == 0) {
        return -1;
    }
    now = clock_ns();
    return now > last ? now - last : 0;
}

void block_acct_interval_info(const BlockAcctInterval *iv,
                              BlockAcctIntervalInfo *out)
{
    int64_t now = clock_ns();
    int64_t start = LOAD(&iv->cur_start_ns);
    uint64_t len = iv->interval_ns;
    unsigned cur = LOAD(&iv->cur);
    const BlockAcctWindow *w = NULL;
    uint64_t span = len;

    memset(out, 0, sizeof(*out));
    out->interval_s = len / 1000000000ull;
    /* The owner rotates only when it completes a request, so an idle
     * device's windows may be stale: judge them by the clock. */
    if (now < start + (int64_t)len) {
        if (LOAD(&iv->have_complete)) {
            w = &iv->windows[!cur];
        } else {
            w = &iv->windows[cur];
            span = MAX(now - start, 1);
        }
    } else if (now < start + 2 * (int64_t)len) {
        w = &iv->windows[cur];
    }
    if (!w) {
        return;
    }
    for (int k = 0; k < BLOCK_ACCT_LATENCY_KINDS; k++) {
        uint64_t n = LOAD(&w->count[k]);
        uint64_t sum = LOAD(&w->sum_ns[k]);

        if (n == 0) {
            continue;
        }
        /* A racing first completion may not have stored its min yet. */
        out->min_ns[k] = LOAD(&w->min_ns[k]) == UINT64_MAX
                         ? 0 : LOAD(&w->min_ns[k]);
        out->max_ns[k] = LOAD(&w->max_ns[k]);
        out->avg_ns[k] = sum / n;
        if (k < 2) {
            /* Little's law: the sum of the latencies over the time. */
            out->avg_queue_depth[k] = (double)sum / (double)span;
        }
    }
}
