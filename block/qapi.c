/*
 * Queries of the block graph for QMP: query-named-block-nodes,
 * query-block, query-blockstats and block-latency-histogram-set.  Main
 * thread; the graph changes only in the main thread, so walking it here
 * needs no lock.  Statistics are read with relaxed atomic loads straight
 * from the counters of nodes and backends, whichever thread owns them
 * (block/accounting.h): no lock, no hop into an iothread.
 */
#include <string.h>
#include <sys/stat.h>

#include "block/block-backend.h"
#include "block/block_int.h"
#include "qapi/qapi-commands.h"
#include "qapi/qapi-visit.h"

BlockDeviceInfo *bdrv_block_device_info(BlockDriverState *bs)
{
    BlockDeviceInfo *info = g_new0(BlockDeviceInfo, 1);
    ImageInfo *image = g_new0(ImageInfo, 1);
    int64_t size = bdrv_getlength(bs);
    int64_t actual = bdrv_get_allocated_file_size(bs);

    info->file = g_strdup(bdrv_get_filename(bs));
    info->node_name = g_strdup(bdrv_get_node_name(bs));
    info->ro = bdrv_is_read_only(bs);
    info->drv = g_strdup(bdrv_get_format_name(bs));
    info->backing_file_depth = bdrv_backing_chain_depth(bs);
    info->encrypted = false;
    info->detect_zeroes = bdrv_get_detect_zeroes(bs);
    /* bps..iops_wr and write_threshold: no throttling, no threshold. */
    info->cache = g_new0(BlockdevCacheInfo, 1);
    info->cache->writeback = true;
    info->cache->direct = bdrv_get_cache_direct(bs);
    info->cache->no_flush = bdrv_get_cache_no_flush(bs);
    info->virtual_size = size < 0 ? 0 : size;

    image->filename = g_strdup(info->file);
    image->format = g_strdup(info->drv);
    image->virtual_size = info->virtual_size;
    if (actual >= 0) {
        image->has_actual_size = true;
        image->actual_size = actual;
    }
    info->image = image;
    return info;
}

BlockDeviceInfoList *qmp_query_named_block_nodes(bool has_flat, bool flat,
                                                 Error **errp)
{
    BlockDeviceInfoList *head = NULL, **tail = &head;

    for (BlockDriverState *bs = bdrv_next_node(NULL); bs;
         bs = bdrv_next_node(bs)) {
        BlockDeviceInfoList *e = g_new0(BlockDeviceInfoList, 1);

        e->value = bdrv_block_device_info(bs);
        *tail = e;
        tail = &e->next;
    }
    return head;
}

BlockInfoList *qmp_query_block(Error **errp)
{
    BlockInfoList *head = NULL, **tail = &head;

    for (BlockBackend *blk = blk_next(NULL); blk; blk = blk_next(blk)) {
        BlockInfoList *e = g_new0(BlockInfoList, 1);
        BlockInfo *info = g_new0(BlockInfo, 1);
        BlockDriverState *bs = blk_bs(blk);

        info->device = g_strdup(blk_name(blk));
        info->locked = false;
        info->removable = false;
        if (bs) {
            info->inserted = bdrv_block_device_info(bs);
        }
        e->value = info;
        *tail = e;
        tail = &e->next;
    }
    return head;
}

/* ---- query-blockstats ---- */

static BlockLatencyHistogramInfo *histogram_info(const BlockAcctHistogram *h)
{
    BlockLatencyHistogramInfo *info;
    uint64List **bt, **nt;

    if (!h) {
        return NULL;
    }
    info = g_new0(BlockLatencyHistogramInfo, 1);
    bt = &info->boundaries;
    nt = &info->bins;
    for (unsigned i = 0; i <= h->nbounds; i++) {
        uint64List *n = g_new0(uint64List, 1);

        n->value = __atomic_load_n(&h->bins[i], __ATOMIC_RELAXED);
        *nt = n;
        nt = &n->next;
        if (i < h->nbounds) {
            uint64List *b = g_new0(uint64List, 1);

            b->value = h->bounds[i];
            *bt = b;
            bt = &b->next;
        }
    }
    return info;
}

static BlockDeviceTimedStatsList *timed_stats_info(const BlockAcctStats *s)
{
    BlockDeviceTimedStatsList *head = NULL, **tail = &head;

    for (const BlockAcctInterval *iv = s->intervals; iv; iv = iv->next) {
        BlockDeviceTimedStatsList *e = g_new0(BlockDeviceTimedStatsList, 1);
        BlockDeviceTimedStats *t = g_new0(BlockDeviceTimedStats, 1);
        BlockAcctIntervalInfo ii;

        block_acct_interval_info(iv, &ii);
        t->interval_length = ii.interval_s;
        t->min_rd_latency_ns = ii.min_ns[BLOCK_ACCT_READ];
        t->max_rd_latency_ns = ii.max_ns[BLOCK_ACCT_READ];
        t->avg_rd_latency_ns = ii.avg_ns[BLOCK_ACCT_READ];
        t->min_wr_latency_ns = ii.min_ns[BLOCK_ACCT_WRITE];
        t->max_wr_latency_ns = ii.max_ns[BLOCK_ACCT_WRITE];
        t->avg_wr_latency_ns = ii.avg_ns[BLOCK_ACCT_WRITE];
        t->min_flush_latency_ns = ii.min_ns[BLOCK_ACCT_FLUSH];
        t->max_flush_latency_ns = ii.max_ns[BLOCK_ACCT_FLUSH];
        t->avg_flush_latency_ns = ii.avg_ns[BLOCK_ACCT_FLUSH];
        t->avg_rd_queue_depth = ii.avg_queue_depth[0];
        t->avg_wr_queue_depth = ii.avg_queue_depth[1];
        e->value = t;
        *tail = e;
        tail = &e->next;
    }
    return head;
}

/* Fills d from the counters of s (relaxed loads; no lock). */
void bdrv_fill_device_stats(const BlockAcctStats *s, BlockDeviceStats *d)
{
    BlockAcctStats c;
    int64_t idle = block_acct_idle_time_ns(s);

    block_acct_snapshot(s, &c);
    d->rd_bytes = c.nr_bytes[BLOCK_ACCT_READ];
    d->wr_bytes = c.nr_bytes[BLOCK_ACCT_WRITE];
    d->unmap_bytes = c.nr_bytes[BLOCK_ACCT_UNMAP];
    d->rd_operations = c.nr_ops[BLOCK_ACCT_READ];
    d->wr_operations = c.nr_ops[BLOCK_ACCT_WRITE];
    d->flush_operations = c.nr_ops[BLOCK_ACCT_FLUSH];
    d->unmap_operations = c.nr_ops[BLOCK_ACCT_UNMAP];
    d->rd_total_time_ns = c.total_time_ns[BLOCK_ACCT_READ];
    d->wr_total_time_ns = c.total_time_ns[BLOCK_ACCT_WRITE];
    d->flush_total_time_ns = c.total_time_ns[BLOCK_ACCT_FLUSH];
    d->unmap_total_time_ns = c.total_time_ns[BLOCK_ACCT_UNMAP];
    d->wr_highest_offset = c.wr_highest_offset;
    d->rd_merged = c.merged[BLOCK_ACCT_READ];
    d->wr_merged = c.merged[BLOCK_ACCT_WRITE];
    d->unmap_merged = c.merged[BLOCK_ACCT_UNMAP];
    d->has_idle_time_ns = idle >= 0;
    d->idle_time_ns = idle >= 0 ? idle : 0;
    d->failed_rd_operations = c.failed_ops[BLOCK_ACCT_READ];
    d->failed_wr_operations = c.failed_ops[BLOCK_ACCT_WRITE];
    d->failed_flush_operations = c.failed_ops[BLOCK_ACCT_FLUSH];
    d->failed_unmap_operations = c.failed_ops[BLOCK_ACCT_UNMAP];
    d->invalid_rd_operations = c.invalid_ops[BLOCK_ACCT_READ];
    d->invalid_wr_operations = c.invalid_ops[BLOCK_ACCT_WRITE];
    d->invalid_flush_operations = c.invalid_ops[BLOCK_ACCT_FLUSH];
    d->invalid_unmap_operations = c.invalid_ops[BLOCK_ACCT_UNMAP];
    d->account_invalid = !s->ignore_invalid;
    d->account_failed = !s->ignore_failed;
}

static BlockDeviceStats *device_stats(const BlockAcctStats *s)
{
    BlockDeviceStats *d = g_new0(BlockDeviceStats, 1);

    bdrv_fill_device_stats(s, d);
    d->timed_stats = timed_stats_info(s);
    d->rd_latency_histogram =
        histogram_info(block_acct_histogram(s, BLOCK_ACCT_READ));
    d->wr_latency_histogram =
        histogram_info(block_acct_histogram(s, BLOCK_ACCT_WRITE));
    d->flush_latency_histogram =
        histogram_info(block_acct_histogram(s, BLOCK_ACCT_FLUSH));
    return d;
}

/* The node that holds bs's data on the host: bs itself or the first
 * node down its chain of file children. */
static BlockDriverState *host_node(BlockDriverState *bs)
{
    while (strcmp(bdrv_get_format_name(bs), "file") != 0) {
        bs = bdrv_file_bs(bs);
        if (!bs) {
            return NULL;
        }
    }
    return bs;
}

void bdrv_query_allocation(BlockDriverState *bs, BdrvAllocationInfo *out)
{
    BlockDriverState *host = host_node(bs);
    struct stat st;
    int64_t len = bdrv_getlength(bs);

    memset(out, 0, sizeof(*out));
    out->capacity = len < 0 ? 0 : len;
    if (!host || stat(bdrv_get_filename(host), &st) < 0) {
        return;
    }
    if (S_ISBLK(st.st_mode)) {
        /* A block device has no allocation of its own: report how far
         * the image has been written (what libvirt does). */
        BlockAcctStats c;
        int64_t dev = bdrv_getlength(host);

        block_acct_snapshot(bdrv_get_stats(host), &c);
        out->allocation = c.wr_highest_offset;
        out->physical = dev < 0 ? 0 : dev;
        out->valid = true;
        return;
    }
    out->allocation = bdrv_get_allocated_file_size(bs);
    if (out->allocation < 0) {
        out->allocation = (int64_t)st.st_blocks * 512;
    }
    out->physical = st.st_size;
    out->valid = true;
}

/* One entry for bs (node-level counters) with its file child in parent
 * and its backing image in backing, recursively. */
static BlockStats *node_stats(BlockDriverState *bs, bool allocation)
{
    BlockStats *e = g_new0(BlockStats, 1);
    BlockDriverState *file = bdrv_file_bs(bs);
    BlockDriverState *backing = bdrv_backing_bs(bs);
    int64_t len = bdrv_getlength(bs);

    e->node_name = g_strdup(bdrv_get_node_name(bs));
    e->stats = device_stats(bdrv_get_stats(bs));
    e->virtual_size = len < 0 ? 0 : len;
    if (file) {
        e->parent = node_stats(file, allocation);
    }
    if (backing) {
        e->backing = node_stats(backing, allocation);
    }
    if (allocation) {
        BdrvAllocationInfo a;

        bdrv_query_allocation(bs, &a);
        e->has_capacity = true;
        e->capacity = a.capacity;
        e->has_allocation = e->has_physical = a.valid;
        e->allocation = a.allocation;
        e->physical = a.physical;
    }
    return e;
}

/* A device entry: the backend's counters, the rest from its node. */
static BlockStats *device_entry(BlockBackend *blk, bool allocation)
{
    BlockDriverState *bs = blk_bs(blk);
    BlockStats *e;

    if (bs) {
        e = node_stats(bs, allocation);
        qapi_free_BlockDeviceStats(e->stats);
    } else {
        e = g_new0(BlockStats, 1);
    }
    e->device = g_strdup(blk_name(blk));
    e->stats = device_stats(blk_get_stats(blk));
    return e;
}

/* The filter as a set, after checking that every name exists; NULL for
 * no filter. */
static GHashTable *filter_set(strList *names, bool nodes, Error **errp)
{
    GHashTable *set;

    if (!names) {
        return NULL;
    }
    set = g_hash_table_new(g_str_hash, g_str_equal);
    for (strList *l = names; l; l = l->next) {
        g_hash_table_add(set, l->value);
    }
    /* One walk of everything instead of one lookup per name. */
    if (nodes) {
        for (BlockDriverState *bs = bdrv_next_node(NULL); bs;
             bs = bdrv_next_node(bs)) {
            g_hash_table_remove(set, bdrv_get_node_name(bs));
        }
    } else {
        for (BlockBackend *blk = blk_next(NULL); blk; blk = blk_next(blk)) {
            g_hash_table_remove(set, blk_name(blk));
        }
    }
    for (strList *l = names; l; l = l->next) {
        if (g_hash_table_contains(set, l->value)) {
            error_setg(errp, nodes ? "Cannot find node-name '%s'"
                                   : "Cannot find device '%s'", l->value);
            g_hash_table_destroy(set);
            return NULL;
        }
    }
    for (strList *l = names; l; l = l->next) {
        g_hash_table_add(set, l->value);
    }
    return set;
}

/* Checks the arguments; the filter set (or NULL) in *set. */
static bool blockstats_args(bool query_nodes, strList *devices,
                            strList *node_names, GHashTable **set,
                            Error **errp)
{
    if (query_nodes ? devices != NULL : node_names != NULL) {
        error_setg(errp, query_nodes
                   ? "Parameter 'devices' requires query-nodes=false"
                   : "Parameter 'node-names' requires query-nodes=true");
        return false;
    }
    *set = filter_set(query_nodes ? node_names : devices, query_nodes, errp);
    return *set || !(devices || node_names);
}

BlockStatsList *bdrv_query_blockstats(bool query_nodes, bool allocation,
                                      strList *devices, strList *node_names,
                                      Error **errp)
{
    BlockStatsList *head = NULL, **tail = &head;
    GHashTable *set;

    if (!blockstats_args(query_nodes, devices, node_names, &set, errp)) {
        return NULL;
    }
    if (query_nodes) {
        for (BlockDriverState *bs = bdrv_next_node(NULL); bs;
             bs = bdrv_next_node(bs)) {
            if (set && !g_hash_table_contains(set, bdrv_get_node_name(bs))) {
                continue;
            }
            *tail = g_new0(BlockStatsList, 1);
            (*tail)->value = node_stats(bs, allocation);
            tail = &(*tail)->next;
        }
    } else {
        for (BlockBackend *blk = blk_next(NULL); blk; blk = blk_next(blk)) {
            if (set && !g_hash_table_contains(set, blk_name(blk))) {
                continue;
            }
            *tail = g_new0(BlockStatsList, 1);
            (*tail)->value = device_entry(blk, allocation);
            tail = &(*tail)->next;
        }
    }
    if (set) {
        g_hash_table_destroy(set);
    }
    return head;
}

/*
 * ---- query-blockstats, the fast way ----
 *
 * The same JSON text as bdrv_query_blockstats() + qapi_out_BlockStatsList()
 * (tests/unit/test-blockstats.c compares the two), written straight from
 * the counters: no allocation per entry beyond the output buffer, numbers
 * and member names copied with memcpy into space reserved once per entry.
 * The generated serialisers cost ~4 us per entry on appends of a few
 * bytes each; pollers of thousands of devices call this every few seconds.
 * The rare parts (timed stats, histograms, names that need escaping) go
 * through the generated code.
 */

/* Reserves n bytes at the end of buf; returns where to write. */
static char *out_reserve(GString *buf, size_t n)
{
    size_t len = buf->len;

    g_string_set_size(buf, len + n);
    return buf->str + len;
}

/* Ends a reserved region at p (which is within it). */
static void out_commit(GString *buf, char *p)
{
    g_string_truncate(buf, p - buf->str);
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;

    /* Most counters of most devices are 0. */
    if (v < 10) {
        *p = '0' + v;
        return p + 1;
    }
    /* The schema's members are 'int' (int64), as the generated code
     * prints them: a counter past INT64_MAX wraps to negative. */
    if (v > INT64_MAX) {
        *p++ = '-';
        v = -v;
    }

    do {
        tmp[n++] = '0' + v % 10;
        v /= 10;
    } while (v);
    while (n) {
        *p++ = tmp[--n];
    }
    return p;
}

static char *put_lit(char *p, const char *lit, size_t len)
{
    memcpy(p, lit, len);
    return p + len;
}

#define PUT(p, lit) ((p) = put_lit((p), (lit), sizeof(lit) - 1))

/* A name is written raw when it needs no escaping (node and device names
 * are validated to [A-Za-z0-9_.#-]); anything else goes through
 * qapi_out_str. */
static void out_name(GString *buf, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < n; i++) {
        if (name[i] < 0x20 || name[i] == '"' || name[i] == '\\' ||
            (unsigned char)name[i] >= 0x7f) {
            qapi_out_str(buf, name);
            return;
        }
    }
    g_string_append_c(buf, '"');
    g_string_append_len(buf, name, n);
    g_string_append_c(buf, '"');
}

/* The counters of BlockDeviceStats in schema order, up to wr_merged ...
 * as (member text with its separator, index into a value array). */
static const struct {
    const char *key;
    unsigned len;
} stats_keys1[] = {
#define K(s) { s, sizeof(s) - 1 }
    K("{\"rd_bytes\": "), K(", \"wr_bytes\": "), K(", \"unmap_bytes\": "),
    K(", \"rd_operations\": "), K(", \"wr_operations\": "),
    K(", \"flush_operations\": "), K(", \"unmap_operations\": "),
    K(", \"rd_total_time_ns\": "), K(", \"wr_total_time_ns\": "),
    K(", \"flush_total_time_ns\": "), K(", \"unmap_total_time_ns\": "),
    K(", \"wr_highest_offset\": "), K(", \"rd_merged\": "),
    K(", \"wr_merged\": "), K(", \"unmap_merged\": "),
}, stats_keys2[] = {
    K(", \"failed_rd_operations\": "), K(", \"failed_wr_operations\": "),
    K(", \"failed_flush_operations\": "),
    K(", \"failed_unmap_operations\": "),
    K(", \"invalid_rd_operations\": "), K(", \"invalid_wr_operations\": "),
    K(", \"invalid_flush_operations\": "),
    K(", \"invalid_unmap_operations\": "),
#undef K
};

/* Room for one BlockDeviceStats without timed stats and histograms. */
#define STATS_JSON_MAX 1400

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

static void out_device_stats(GString *buf, const BlockAcctStats *s)
{
    int64_t idle = block_acct_idle_time_ns(s);
    uint64_t v1[G_N_ELEMENTS(stats_keys1)], v2[G_N_ELEMENTS(stats_keys2)];
    char *p;

    /* Loaded straight into schema order: no intermediate snapshot, one
     * pass over the counters' cache lines. */
    v1[0] = LOAD(&s->nr_bytes[BLOCK_ACCT_READ]);
    v1[1] = LOAD(&s->nr_bytes[BLOCK_ACCT_WRITE]);
    v1[2] = LOAD(&s->nr_bytes[BLOCK_ACCT_UNMAP]);
    for (int t = 0; t < BLOCK_ACCT__MAX; t++) {
        v1[3 + t] = LOAD(&s->nr_ops[t]);
        v1[7 + t] = LOAD(&s->total_time_ns[t]);
        v2[t] = LOAD(&s->failed_ops[t]);
        v2[4 + t] = LOAD(&s->invalid_ops[t]);
    }
    v1[11] = LOAD(&s->wr_highest_offset);
    v1[12] = LOAD(&s->merged[BLOCK_ACCT_READ]);
    v1[13] = LOAD(&s->merged[BLOCK_ACCT_WRITE]);
    v1[14] = LOAD(&s->merged[BLOCK_ACCT_UNMAP]);

    p = out_reserve(buf, STATS_JSON_MAX);
    for (size_t i = 0; i < G_N_ELEMENTS(stats_keys1); i++) {
        p = put_lit(p, stats_keys1[i].key, stats_keys1[i].len);
        p = put_u64(p, v1[i]);
    }
    if (idle >= 0) {
        PUT(p, ", \"idle_time_ns\": ");
        p = put_u64(p, idle);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(stats_keys2); i++) {
        p = put_lit(p, stats_keys2[i].key, stats_keys2[i].len);
        p = put_u64(p, v2[i]);
    }
    PUT(p, ", \"account_invalid\": ");
    p = s->ignore_invalid ? put_lit(p, "false", 5) : put_lit(p, "true", 4);
    PUT(p, ", \"account_failed\": ");
    p = s->ignore_failed ? put_lit(p, "false", 5) : put_lit(p, "true", 4);
    PUT(p, ", \"timed_stats\": ");
    if (!s->intervals) {
        PUT(p, "[]");
    }
    out_commit(buf, p);
    if (s->intervals) {
        g_autoptr(BlockDeviceTimedStatsList) l = timed_stats_info(s);

        qapi_out_BlockDeviceTimedStatsList(buf, l);
    }
    for (int k = 0; k < BLOCK_ACCT_LATENCY_KINDS; k++) {
        static const char *const names[] = {
            ", \"rd_latency_histogram\": ", ", \"wr_latency_histogram\": ",
            ", \"flush_latency_histogram\": ",
        };

        if (block_acct_histogram(s, k)) {
            g_autoptr(BlockLatencyHistogramInfo) h =
                histogram_info(block_acct_histogram(s, k));

            g_string_append(buf, names[k]);
            qapi_out_BlockLatencyHistogramInfo(buf, h);
        }
    }
    g_string_append_c(buf, '}');
}

/* The rest of a BlockStats after "stats" (members in schema order). */
static void out_node_tail(GString *buf, BlockDriverState *bs,
                          bool allocation);

/* A node entry: {"node-name": ..., "stats": ..., parent, backing, ...}. */
static void out_node_entry(GString *buf, BlockDriverState *bs,
                           bool allocation)
{
    g_string_append_len(buf, "{\"node-name\": ", 14);
    out_name(buf, bdrv_get_node_name(bs));
    g_string_append_len(buf, ", \"stats\": ", 11);
    out_device_stats(buf, bdrv_get_stats(bs));
    out_node_tail(buf, bs, allocation);
}

static void out_node_tail(GString *buf, BlockDriverState *bs,
                          bool allocation)
{
    BlockDriverState *file = bdrv_file_bs(bs);
    BlockDriverState *backing = bdrv_backing_bs(bs);
    int64_t len = bdrv_getlength(bs);
    char *p;

    if (file) {
        g_string_append_len(buf, ", \"parent\": ", 12);
        out_node_entry(buf, file, allocation);
    }
    if (backing) {
        g_string_append_len(buf, ", \"backing\": ", 13);
        out_node_entry(buf, backing, allocation);
    }
    p = out_reserve(buf, 128);
    PUT(p, ", \"virtual-size\": ");
    p = put_u64(p, len < 0 ? 0 : len);
    if (allocation) {
        BdrvAllocationInfo a;

        bdrv_query_allocation(bs, &a);
        PUT(p, ", \"capacity\": ");
        p = put_u64(p, a.capacity);
        if (a.valid) {
            PUT(p, ", \"allocation\": ");
            p = put_u64(p, a.allocation);
            PUT(p, ", \"physical\": ");
            p = put_u64(p, a.physical);
        }
    }
    *p++ = '}';
    out_commit(buf, p);
}

static void out_device_entry(GString *buf, BlockBackend *blk,
                             bool allocation)
{
    BlockDriverState *bs = blk_bs(blk);

    g_string_append_len(buf, "{\"device\": ", 11);
    out_name(buf, blk_name(blk));
    if (bs) {
        g_string_append_len(buf, ", \"node-name\": ", 15);
        out_name(buf, bdrv_get_node_name(bs));
    }
    g_string_append_len(buf, ", \"stats\": ", 11);
    out_device_stats(buf, blk_get_stats(blk));
    if (bs) {
        out_node_tail(buf, bs, allocation);
    } else {
        g_string_append_len(buf, ", \"virtual-size\": 0}", 20);
    }
}

bool bdrv_query_blockstats_json(GString *buf, bool query_nodes,
                                bool allocation, strList *devices,
                                strList *node_names, Error **errp)
{
    GHashTable *set;
    bool first = true;

    if (!blockstats_args(query_nodes, devices, node_names, &set, errp)) {
        return false;
    }
    g_string_append_c(buf, '[');
    if (query_nodes) {
        for (BlockDriverState *bs = bdrv_next_node(NULL); bs;
             bs = bdrv_next_node(bs)) {
            if (set && !g_hash_table_contains(set, bdrv_get_node_name(bs))) {
                continue;
            }
            if (!first) {
                g_string_append_len(buf, ", ", 2);
            }
            first = false;
            out_node_entry(buf, bs, allocation);
        }
    } else {
        for (BlockBackend *blk = blk_next(NULL); blk; blk = blk_next(blk)) {
            if (set && !g_hash_table_contains(set, blk_name(blk))) {
                continue;
            }
            if (!first) {
                g_string_append_len(buf, ", ", 2);
            }
            first = false;
            out_device_entry(buf, blk, allocation);
        }
    }
    g_string_append_c(buf, ']');
    if (set) {
        g_hash_table_destroy(set);
    }
    return true;
}

/* 'gen': false: the marshaller parses the arguments with the generated
 * visitor, then writes the answer itself. */
bool qmp_marshal_query_blockstats(const json_t *args, GString *ret,
                                  Error **errp)
{
    QapiPath root = QAPI_PATH_ROOT(false);
    g_autoptr(q_obj_query_blockstats_arg) arg = NULL;

    if (!visit_in_q_obj_query_blockstats_arg(args, &root, &arg, errp)) {
        return false;
    }
    return bdrv_query_blockstats_json(ret, arg->query_nodes,
                                      arg->allocation, arg->devices,
                                      arg->node_names, errp);
}

/* ---- block-latency-histogram-set ---- */

/* The list as an array (caller frees); *n its length. */
static uint64_t *list_to_array(uint64List *l, unsigned *n)
{
    GArray *a = g_array_new(FALSE, FALSE, sizeof(uint64_t));

    for (; l; l = l->next) {
        g_array_append_val(a, l->value);
    }
    *n = a->len;
    return (uint64_t *)(void *)g_array_free(a, FALSE);
}

/* The swap of block-latency-histogram-set, run in the owner's thread. */
typedef struct HistogramSwap {
    BlockAcctStats *stats;
    BlockAcctHistogram *h[BLOCK_ACCT_LATENCY_KINDS];   /* in: new; out: old */
    bool set[BLOCK_ACCT_LATENCY_KINDS];
} HistogramSwap;

static void coroutine_fn histogram_swap_entry(void *opaque)
{
    HistogramSwap *hs = opaque;

    for (int i = 0; i < BLOCK_ACCT_LATENCY_KINDS; i++) {
        if (hs->set[i]) {
            hs->h[i] = block_acct_histogram_swap(hs->stats, i, hs->h[i]);
        }
    }
}

void qmp_block_latency_histogram_set(const char *id, uint64List *boundaries,
                                     uint64List *boundaries_read,
                                     uint64List *boundaries_write,
                                     uint64List *boundaries_flush,
                                     Error **errp)
{
    BlockBackend *blk = blk_by_name(id);
    BlockDriverState *bs = blk ? blk_bs(blk) : bdrv_find_node(id);
    uint64List *lists[BLOCK_ACCT_LATENCY_KINDS] = {
        boundaries_read ? boundaries_read : boundaries,
        boundaries_write ? boundaries_write : boundaries,
        boundaries_flush ? boundaries_flush : boundaries,
    };
    const char *params[BLOCK_ACCT_LATENCY_KINDS] = {
        boundaries_read ? "boundaries-read" : "boundaries",
        boundaries_write ? "boundaries-write" : "boundaries",
        boundaries_flush ? "boundaries-flush" : "boundaries",
    };
    bool clear = !boundaries && !boundaries_read && !boundaries_write &&
                 !boundaries_flush;
    HistogramSwap hs = { 0 };

    if (!blk && !bs) {
        error_setg(errp, "Device or node '%s' not found", id);
        return;
    }
    hs.stats = blk ? blk_get_stats(blk) : bdrv_get_stats(bs);
    /* Build everything first: an error changes nothing. */
    for (int i = 0; i < BLOCK_ACCT_LATENCY_KINDS; i++) {
        unsigned n;
        g_autofree uint64_t *arr = list_to_array(lists[i], &n);

        hs.set[i] = clear || lists[i];
        if (lists[i]) {
            hs.h[i] = block_acct_histogram_new(arr, n, params[i], errp);
            if (!hs.h[i]) {
                goto out;
            }
        }
    }
    aio_run_in_context(blk ? blk_get_aio_context(blk)
                           : bdrv_get_aio_context(bs),
                       histogram_swap_entry, &hs);
out:
    /* Now the old histograms (or, on error, the new ones). */
    for (int i = 0; i < BLOCK_ACCT_LATENCY_KINDS; i++) {
        block_acct_histogram_free(hs.h[i]);
    }
}
