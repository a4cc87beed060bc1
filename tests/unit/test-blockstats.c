/*
 * Unit tests of block accounting (block/accounting.c) and of the two
 * query-blockstats writers in block/qapi.c: the counters' semantics
 * (failed / invalid with and without account-failed / account-invalid,
 * in-flight, merged), histogram bins at and around the boundaries, the
 * boundary checks, timed-interval values, and that the hand-written JSON
 * writer produces exactly the text of the generated serialiser.
 */
#include <glib.h>
#include <string.h>

#include "block/block-backend.h"
#include "block/block_int.h"
#include "qapi/qapi-visit.h"

/* Completes a request whose latency is at least latency_ns. */
static void account(BlockAcctStats *s, BlockAcctType type, int64_t bytes,
                    int64_t latency_ns, bool failed)
{
    BlockAcctCookie c;

    block_acct_start(s, &c, bytes, type);
    c.start_ns -= latency_ns;
    if (failed) {
        block_acct_failed(s, &c);
    } else {
        block_acct_done(s, &c);
    }
}

static void test_counters(void)
{
    BlockAcctStats s = { 0 }, c;
    BlockAcctCookie ck;

    g_assert_cmpint(block_acct_idle_time_ns(&s), ==, -1);
    account(&s, BLOCK_ACCT_READ, 4096, 1000, false);
    account(&s, BLOCK_ACCT_WRITE, 512, 1000, false);
    account(&s, BLOCK_ACCT_WRITE, 512, 1000, true);
    block_acct_invalid(&s, BLOCK_ACCT_UNMAP);
    block_acct_merge_done(&s, BLOCK_ACCT_WRITE, 3);
    block_acct_highest_offset(&s, 8192);
    block_acct_highest_offset(&s, 4096);
    block_acct_start(&s, &ck, 100, BLOCK_ACCT_FLUSH);

    block_acct_snapshot(&s, &c);
    g_assert_cmpuint(c.nr_bytes[BLOCK_ACCT_READ], ==, 4096);
    g_assert_cmpuint(c.nr_ops[BLOCK_ACCT_READ], ==, 1);
    g_assert_cmpuint(c.nr_bytes[BLOCK_ACCT_WRITE], ==, 512);
    g_assert_cmpuint(c.nr_ops[BLOCK_ACCT_WRITE], ==, 1);
    g_assert_cmpuint(c.failed_ops[BLOCK_ACCT_WRITE], ==, 1);
    g_assert_cmpuint(c.invalid_ops[BLOCK_ACCT_UNMAP], ==, 1);
    g_assert_cmpuint(c.merged[BLOCK_ACCT_WRITE], ==, 3);
    g_assert_cmpuint(c.wr_highest_offset, ==, 8192);
    g_assert_cmpuint(c.in_flight[BLOCK_ACCT_FLUSH], ==, 1);
    /* The failed write's latency counts (account-failed defaults on). */
    g_assert_cmpuint(c.total_time_ns[BLOCK_ACCT_WRITE], >=, 2000);
    g_assert_cmpint(block_acct_idle_time_ns(&s), >=, 0);

    block_acct_done(&s, &ck);
    block_acct_snapshot(&s, &c);
    g_assert_cmpuint(c.in_flight[BLOCK_ACCT_FLUSH], ==, 0);
    g_assert_cmpuint(c.nr_ops[BLOCK_ACCT_FLUSH], ==, 1);
    block_acct_cleanup(&s);
}

static void test_account_flags_off(void)
{
    BlockAcctStats s = { 0 }, c;

    block_acct_setup(&s, false, false);
    block_acct_invalid(&s, BLOCK_ACCT_READ);
    /* Invalid requests do not end the idle period without the flag. */
    g_assert_cmpint(block_acct_idle_time_ns(&s), ==, -1);
    account(&s, BLOCK_ACCT_READ, 512, 5000, true);
    block_acct_snapshot(&s, &c);
    g_assert_cmpuint(c.failed_ops[BLOCK_ACCT_READ], ==, 1);
    g_assert_cmpuint(c.invalid_ops[BLOCK_ACCT_READ], ==, 1);
    g_assert_cmpuint(c.total_time_ns[BLOCK_ACCT_READ], ==, 0);
    g_assert_cmpint(block_acct_idle_time_ns(&s), ==, -1);
    account(&s, BLOCK_ACCT_READ, 512, 5000, false);
    g_assert_cmpint(block_acct_idle_time_ns(&s), >=, 0);
    block_acct_cleanup(&s);
}

static void test_histogram_bins(void)
{
    BlockAcctStats s = { 0 };
    const uint64_t bounds[] = { 1000000, 50000000 };
    BlockAcctHistogram *h = block_acct_histogram_new(bounds, 2, "b",
                                                     &error_abort);

    g_assert_null(block_acct_histogram_swap(&s, BLOCK_ACCT_READ, h));
    account(&s, BLOCK_ACCT_READ, 512, 0, false);            /* bin 0 */
    account(&s, BLOCK_ACCT_READ, 512, 1000000, false);      /* bin 1 */
    account(&s, BLOCK_ACCT_READ, 512, 2000000, false);      /* bin 1 */
    account(&s, BLOCK_ACCT_READ, 512, 60000000, false);     /* bin 2 */
    account(&s, BLOCK_ACCT_WRITE, 512, 60000000, false);    /* no histogram */
    /* Bin 0 may see the 0 ns request land in bin 0 only if it took less
     * than 1 ms; the others are lower bounds that fix their bin. */
    g_assert_cmpuint(h->bins[0] + h->bins[1], ==, 3);
    g_assert_cmpuint(h->bins[1], >=, 2);
    g_assert_cmpuint(h->bins[2], ==, 1);
    g_assert_null(s.histogram[BLOCK_ACCT_WRITE]);
    block_acct_cleanup(&s);
    g_assert_null(s.histogram[BLOCK_ACCT_READ]);
}

static void test_boundaries_checked(void)
{
    const uint64_t unsorted[] = { 10, 5 }, dup[] = { 10, 10 },
                   zero[] = { 0, 10 }, good[] = { 1, 2, 3 };
    Error *err = NULL;

    g_assert_true(block_acct_check_boundaries(good, 3, "b", &error_abort));
    g_assert_true(block_acct_check_boundaries(NULL, 0, "b", &error_abort));
    g_assert_null(block_acct_histogram_new(unsorted, 2, "boundaries",
                                           &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "'boundaries'"));
    error_free(err);
    err = NULL;
    g_assert_false(block_acct_check_boundaries(dup, 2, "b", &err));
    error_free(err);
    err = NULL;
    g_assert_false(block_acct_check_boundaries(zero, 2, "b", &err));
    error_free(err);
}

static void test_interval_values(void)
{
    BlockAcctStats s = { 0 };
    BlockAcctIntervalInfo ii;
    Error *err = NULL;

    g_assert_false(block_acct_add_interval(&s, 0, &err));
    error_free(err);
    g_assert_true(block_acct_add_interval(&s, 3600, &error_abort));
    block_acct_interval_info(s.intervals, &ii);
    g_assert_cmpuint(ii.interval_s, ==, 3600);
    g_assert_cmpuint(ii.max_ns[BLOCK_ACCT_READ], ==, 0);
    account(&s, BLOCK_ACCT_READ, 512, 1000, false);
    account(&s, BLOCK_ACCT_READ, 512, 3000, false);
    account(&s, BLOCK_ACCT_UNMAP, 512, 3000, false);       /* not timed */
    block_acct_interval_info(s.intervals, &ii);
    g_assert_cmpuint(ii.min_ns[BLOCK_ACCT_READ], >=, 1000);
    g_assert_cmpuint(ii.max_ns[BLOCK_ACCT_READ], >=, 3000);
    g_assert_cmpuint(ii.min_ns[BLOCK_ACCT_READ], <=,
                     ii.avg_ns[BLOCK_ACCT_READ]);
    g_assert_cmpuint(ii.avg_ns[BLOCK_ACCT_READ], <=,
                     ii.max_ns[BLOCK_ACCT_READ]);
    g_assert_cmpuint(ii.max_ns[BLOCK_ACCT_WRITE], ==, 0);
    g_assert_true(ii.avg_queue_depth[0] > 0);
    block_acct_cleanup(&s);
    g_assert_null(s.intervals);
}

/* Drops the members that depend on when they were read (idle time; the
 * queue depth of a window still open divides by the time so far). */
static char *without_clock(const char *json)
{
    g_autoptr(GRegex) re = g_regex_new(
        "(, \"idle_time_ns\": [0-9]+)|(\"avg_(rd|wr)_queue_depth\": "
        "[0-9.e-]+)", 0, 0, NULL);

    return g_regex_replace_literal(re, json, -1, 0, "", 0, NULL);
}

static BlockDriverState *open_null(const char *name, bool raw_above)
{
    g_autoptr(BlockdevOptions) o = g_new0(BlockdevOptions, 1);

    o->driver = BLOCKDEV_DRIVER_NULL_CO;
    o->node_name = g_strdup(name);
    o->u.null_co.has_size = true;
    o->u.null_co.size = 1 << 20;
    if (raw_above) {
        BlockdevOptions *f = g_steal_pointer(&o);

        o = g_new0(BlockdevOptions, 1);
        o->driver = BLOCKDEV_DRIVER_RAW;
        o->node_name = g_strdup_printf("%s-fmt", name);
        o->u.raw.file = g_new0(BlockdevRef, 1);
        o->u.raw.file->type = QTYPE_QDICT;
        o->u.raw.file->u.definition = f;
    }
    return bdrv_open_options(o, &error_abort);
}

static void compare_writers(bool query_nodes, bool allocation,
                            strList *devices, strList *nodes)
{
    g_autoptr(GString) fast = g_string_new(NULL);
    g_autoptr(GString) ref = g_string_new(NULL);
    BlockStatsList *l = bdrv_query_blockstats(query_nodes, allocation,
                                              devices, nodes, &error_abort);
    g_autofree char *a = NULL, *b = NULL;

    g_assert_true(bdrv_query_blockstats_json(fast, query_nodes, allocation,
                                             devices, nodes, &error_abort));
    qapi_out_BlockStatsList(ref, l);
    qapi_free_BlockStatsList(l);
    a = without_clock(fast->str);
    b = without_clock(ref->str);
    g_assert_cmpstr(a, ==, b);
    g_assert_cmpuint(strlen(a), >, 2);
}

static void test_writers_agree(void)
{
    BlockDriverState *raw = open_null("n0", true);
    BlockDriverState *bare = open_null("n1", false);
    BlockBackend *blk = blk_new("dev0", &error_abort);
    BlockAcctStats *s = blk_get_stats(blk);
    const uint64_t bounds[] = { 1000, 1000000 };
    uint8_t buf[512] = { 0 };
    strList names = { .value = (char *)"n1" };
    Error *err = NULL;

    g_assert_true(blk_insert_bs(blk, raw, &error_abort));
    block_acct_setup(s, true, false);
    g_assert_true(block_acct_add_interval(s, 60, &error_abort));
    g_assert_null(block_acct_histogram_swap(
        s, BLOCK_ACCT_WRITE,
        block_acct_histogram_new(bounds, 2, "b", &error_abort)));
    g_assert_cmpint(blk_pwrite(blk, 4096, 512, buf, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, 2 << 20, 512, buf, 0), <, 0);
    g_assert_cmpint(bdrv_pwrite(bare, 0, 512, buf, 0), ==, 0);

    compare_writers(false, false, NULL, NULL);
    compare_writers(false, true, NULL, NULL);
    compare_writers(true, false, NULL, NULL);
    compare_writers(true, true, NULL, &names);

    /* Both refuse the same bad filters. */
    names.value = (char *)"nothere";
    g_assert_null(bdrv_query_blockstats(true, false, NULL, &names, &err));
    error_free(err);
    err = NULL;
    {
        g_autoptr(GString) out = g_string_new(NULL);

        g_assert_false(bdrv_query_blockstats_json(out, false, false, NULL,
                                                  &names, &err));
        g_assert_nonnull(strstr(error_get_pretty(err), "query-nodes"));
        error_free(err);
    }
    blk_unref(blk);
    bdrv_unref(raw);
    bdrv_unref(bare);
}

/* Counter values at the edges of the fast writer's number formatting (one
 * digit, two digits, the int64 limit of the schema's 'int' members and past
 * it) print as the generated code prints them. */
static void test_writers_agree_on_numbers(void)
{
    BlockDriverState *bs = open_null("nums", false);
    BlockAcctStats *s = bdrv_get_stats(bs);
    const uint64_t values[] = { 9, 10, 99, 100, 1000000007,
                                (uint64_t)INT64_MAX * 2, UINT64_MAX };

    for (int t = 0; t < BLOCK_ACCT__MAX; t++) {
        block_acct_merge_done(s, t, 9);
        block_acct_invalid(s, t);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(values); i++) {
        BlockAcctCookie c;

        /* A single done request of values[i] bytes per kind. */
        block_acct_start(s, &c, (int64_t)(values[i] / 2), i % 4);
        block_acct_done(s, &c);
    }
    block_acct_highest_offset(s, UINT64_MAX);
    compare_writers(true, false, NULL, NULL);
    bdrv_unref(bs);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/blockstats/counters", test_counters);
    g_test_add_func("/blockstats/account-flags-off", test_account_flags_off);
    g_test_add_func("/blockstats/histogram-bins", test_histogram_bins);
    g_test_add_func("/blockstats/boundaries-checked",
                    test_boundaries_checked);
    g_test_add_func("/blockstats/interval-values", test_interval_values);
    g_test_add_func("/blockstats/writers-agree", test_writers_agree);
    g_test_add_func("/blockstats/writers-agree-on-numbers",
                    test_writers_agree_on_numbers);
    return g_test_run();
}
