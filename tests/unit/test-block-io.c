/*
 * Unit tests of the request path (block/io.c) with the real null-co,
 * null-aio and raw drivers: validation errors, read-modify-write padding
 * for a node with a request alignment, max_transfer splitting, tracked
 * request serialisation, write hooks, detect-zeroes, block status,
 * accounting, flush/discard policies, the null driver's options and the
 * synchronous / asynchronous wrappers.
 *
 * What reaches a node's driver is observed with a write hook on the node
 * below (it sees every write-like request of that node) and with the
 * node's counters.
 */
#include <errno.h>
#include <glib.h>
#include <string.h>
#include <unistd.h>

#include "block/block-backend.h"
#include "block/block_int.h"
#include "qapi/qapi-visit.h"
#include "tests/unit/block-test-helpers.h"

/* Opens a node from single-quoted JSON options; aborts on failure. */
static BlockDriverState *open_json(const char *text)
{
    return test_open_json(text, &error_abort);
}

static BlockAcctStats stats_of(BlockDriverState *bs)
{
    BlockAcctStats s;

    block_acct_snapshot(bdrv_get_stats(bs), &s);
    return s;
}

/* ---- A recording write hook ---- */

typedef struct Seen {
    int64_t offset, bytes;
    BdrvTrackedReqType type;
    BdrvRequestFlags flags;
    uint8_t *data;               /* copy of the write data, or NULL */
} Seen;

typedef struct Recorder {
    BdrvWriteHook hook;
    GArray *seen;                /* of Seen */
    GString *log;                /* tags of hooks in call order */
    const char *tag;
    int fail_with;               /* return this instead of 0 */
    int64_t sleep_offset;        /* requests at this offset sleep... */
    int64_t sleep_ns;            /* ...this long inside the hook */
} Recorder;

static int coroutine_fn record_hook(BdrvWriteHook *hook,
                                    BdrvTrackedRequest *req)
{
    Recorder *r = hook->opaque;
    QIOVector *qiov = bdrv_req_qiov(req);
    Seen s = {
        .offset = bdrv_req_offset(req),
        .bytes = bdrv_req_bytes(req),
        .type = bdrv_req_type(req),
        .flags = bdrv_req_flags(req),
    };

    if (qiov) {
        s.data = g_malloc(s.bytes);
        qiov_to_buf(qiov, 0, s.data, s.bytes);
    }
    g_array_append_val(r->seen, s);
    if (r->sleep_ns && s.offset == r->sleep_offset) {
        g_string_append_printf(r->log, "%" G_GINT64_FORMAT "+ ", s.offset);
        co_sleep_ns(r->sleep_ns);
        g_string_append_printf(r->log, "%" G_GINT64_FORMAT "- ", s.offset);
    } else if (r->sleep_ns) {
        g_string_append_printf(r->log, "%" G_GINT64_FORMAT " ", s.offset);
    } else {
        g_string_append(r->log, r->tag ? r->tag : "");
    }
    return r->fail_with;
}

static void recorder_attach(Recorder *r, BlockDriverState *bs)
{
    memset(r, 0, sizeof(*r));
    r->seen = g_array_new(false, true, sizeof(Seen));
    r->log = g_string_new("");
    r->hook.fn = record_hook;
    r->hook.opaque = r;
    bdrv_add_write_hook(bs, &r->hook);
}

static void recorder_detach(Recorder *r, BlockDriverState *bs)
{
    bdrv_remove_write_hook(bs, &r->hook);
    for (guint i = 0; i < r->seen->len; i++) {
        g_free(g_array_index(r->seen, Seen, i).data);
    }
    g_array_free(r->seen, true);
    g_string_free(r->log, true);
}

static Seen *seen_at(Recorder *r, guint i)
{
    g_assert_cmpuint(i, <, r->seen->len);
    return &g_array_index(r->seen, Seen, i);
}

static bool all_bytes(const uint8_t *p, int64_t len, uint8_t v)
{
    for (int64_t i = 0; i < len; i++) {
        if (p[i] != v) {
            return false;
        }
    }
    return true;
}

/* ---- Basic I/O and validation ---- */

static void test_null_read_zeroes(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co','read-zeroes':true,"
                                     " 'size':65536}");
    uint8_t buf[4096];

    memset(buf, 0xaa, sizeof(buf));
    g_assert_cmpint(bdrv_pread(bs, 4096, sizeof(buf), buf, 0), ==, 0);
    g_assert_true(all_bytes(buf, sizeof(buf), 0));
    g_assert_cmpint(bdrv_pwrite(bs, 0, sizeof(buf), buf, 0), ==, 0);
    bdrv_unref(bs);
}

static void test_null_no_read_zeroes_leaves_buffer(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co','size':65536}");
    uint8_t buf[512];

    memset(buf, 0xaa, sizeof(buf));
    g_assert_cmpint(bdrv_pread(bs, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_true(all_bytes(buf, sizeof(buf), 0xaa));
    bdrv_unref(bs);
}

static void test_beyond_end_is_eio(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co','size':65536}");
    uint8_t buf[1024] = { 0 };

    g_assert_cmpint(bdrv_pread(bs, 65536 - 512, 1024, buf, 0), ==, -EIO);
    g_assert_cmpint(bdrv_pwrite(bs, 65536, 1, buf, 0), ==, -EIO);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 0, 65537, 0), ==, -EIO);
    g_assert_cmpuint(stats_of(bs).invalid_ops[BLOCK_ACCT_READ], ==, 1);
    g_assert_cmpuint(stats_of(bs).invalid_ops[BLOCK_ACCT_WRITE], ==, 2);
    g_assert_cmpuint(stats_of(bs).nr_ops[BLOCK_ACCT_READ], ==, 0);
    /* Up to the last byte is fine, and so is an empty request at the end. */
    g_assert_cmpint(bdrv_pread(bs, 65536 - 1024, 1024, buf, 0), ==, 0);
    g_assert_cmpint(bdrv_pread(bs, 65536, 0, buf, 0), ==, 0);
    bdrv_unref(bs);
}

static void test_negative_is_einval(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co','size':65536}");
    uint8_t buf[512] = { 0 };

    g_assert_cmpint(bdrv_pread(bs, -512, 512, buf, 0), ==, -EINVAL);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 0, -1, 0), ==, -EINVAL);
    g_assert_cmpint(bdrv_pdiscard(bs, INT64_MAX, 2), ==, -EINVAL);
    bdrv_unref(bs);
}

static void test_read_only_refuses_writes(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co','read-only':true,"
                                     " 'discard':'unmap'}");
    uint8_t buf[512] = { 0 };
    Error *err = NULL;

    g_assert_cmpint(bdrv_pwrite(bs, 0, 512, buf, 0), ==, -EPERM);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 0, 512, 0), ==, -EPERM);
    g_assert_cmpint(bdrv_pdiscard(bs, 0, 512), ==, -EPERM);
    g_assert_cmpint(bdrv_truncate(bs, 4096, true, PREALLOC_MODE_OFF, &err),
                    ==, -EACCES);
    g_assert_cmpstr(error_get_pretty(err), ==, "Image is read-only");
    error_free(err);
    g_assert_cmpint(bdrv_pread(bs, 0, 512, buf, 0), ==, 0);
    bdrv_unref(bs);
}

static void test_raw_window(void)
{
    BlockDriverState *raw = open_json(
        "{'driver':'raw','offset':4096,'size':8192,"
        " 'file':{'driver':'null-co','size':65536}}");
    BlockDriverState *null = bdrv_file_bs(raw);
    uint8_t buf[4096] = { 0 };

    g_assert_cmpint(bdrv_getlength(raw), ==, 8192);
    g_assert_cmpint(bdrv_pwrite(raw, 4096, 4096, buf, 0), ==, 0);
    /* The window starts at 4096 in the file. */
    g_assert_cmpuint(stats_of(null).wr_highest_offset, ==, 12288);
    g_assert_cmpuint(stats_of(raw).wr_highest_offset, ==, 8192);
    g_assert_cmpint(bdrv_pread(raw, 8192, 512, buf, 0), ==, -EIO);
    bdrv_unref(raw);
}

static void test_raw_truncate_unsupported(void)
{
    BlockDriverState *raw = open_json(
        "{'driver':'raw','file':{'driver':'null-co'}}");
    Error *err = NULL;

    g_assert_cmpint(bdrv_truncate(raw, 4096, true, PREALLOC_MODE_OFF, &err),
                    ==, -ENOTSUP);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Image format driver does not support resize");
    error_free(err);
    bdrv_unref(raw);
}

/* ---- Alignment: read-modify-write ---- */

#define ALIGNED_RAW \
    "{'driver':'raw','file':{'driver':'null-co','read-zeroes':true," \
    " 'size':65536,'x-request-alignment':4096}}"

static void test_align_inherited(void)
{
    BlockDriverState *raw = open_json(ALIGNED_RAW);

    g_assert_cmpuint(bdrv_get_request_alignment(raw), ==, 4096);
    bdrv_unref(raw);
}

static void test_rmw_write(void)
{
    BlockDriverState *raw = open_json(ALIGNED_RAW);
    BlockDriverState *null = bdrv_file_bs(raw);
    uint8_t buf[512];
    Recorder below, above;
    Seen *s;

    recorder_attach(&below, null);
    recorder_attach(&above, raw);
    memset(buf, 0xab, sizeof(buf));
    g_assert_cmpint(bdrv_pwrite(raw, 100, sizeof(buf), buf, 0), ==, 0);

    /* The hook of the node written to sees the caller's request... */
    g_assert_cmpuint(above.seen->len, ==, 1);
    g_assert_cmpint(seen_at(&above, 0)->offset, ==, 100);
    g_assert_cmpint(seen_at(&above, 0)->bytes, ==, 512);
    /* ...the node below gets one aligned block: old data around new. */
    g_assert_cmpuint(below.seen->len, ==, 1);
    s = seen_at(&below, 0);
    g_assert_cmpint(s->offset, ==, 0);
    g_assert_cmpint(s->bytes, ==, 4096);
    g_assert_true(all_bytes(s->data, 100, 0));
    g_assert_true(all_bytes(s->data + 100, 512, 0xab));
    g_assert_true(all_bytes(s->data + 612, 4096 - 612, 0));
    g_assert_cmpuint(stats_of(null).nr_bytes[BLOCK_ACCT_READ], ==, 4096);
    g_assert_cmpuint(stats_of(null).nr_bytes[BLOCK_ACCT_WRITE], ==, 4096);
    g_assert_cmpuint(stats_of(raw).nr_bytes[BLOCK_ACCT_WRITE], ==, 512);
    recorder_detach(&above, raw);
    recorder_detach(&below, null);
    bdrv_unref(raw);
}

static void test_rmw_write_two_blocks(void)
{
    BlockDriverState *raw = open_json(ALIGNED_RAW);
    BlockDriverState *null = bdrv_file_bs(raw);
    g_autofree uint8_t *buf = g_malloc(6000);
    Recorder below;
    Seen *s;

    recorder_attach(&below, null);
    memset(buf, 0x5a, 6000);
    g_assert_cmpint(bdrv_pwrite(raw, 3000, 6000, buf, 0), ==, 0);
    g_assert_cmpuint(below.seen->len, ==, 1);
    s = seen_at(&below, 0);
    g_assert_cmpint(s->offset, ==, 0);
    g_assert_cmpint(s->bytes, ==, 12288);
    g_assert_true(all_bytes(s->data, 3000, 0));
    g_assert_true(all_bytes(s->data + 3000, 6000, 0x5a));
    g_assert_true(all_bytes(s->data + 9000, 12288 - 9000, 0));
    /* Head and tail blocks were read separately. */
    g_assert_cmpuint(stats_of(null).nr_ops[BLOCK_ACCT_READ], ==, 2);
    recorder_detach(&below, null);
    bdrv_unref(raw);
}

static void test_rmw_read(void)
{
    BlockDriverState *raw = open_json(ALIGNED_RAW);
    BlockDriverState *null = bdrv_file_bs(raw);
    uint8_t buf[5000];

    memset(buf, 0xaa, sizeof(buf));
    g_assert_cmpint(bdrv_pread(raw, 3000, sizeof(buf), buf, 0), ==, 0);
    g_assert_true(all_bytes(buf, sizeof(buf), 0));
    g_assert_cmpuint(stats_of(null).nr_ops[BLOCK_ACCT_READ], ==, 1);
    g_assert_cmpuint(stats_of(null).nr_bytes[BLOCK_ACCT_READ], ==, 8192);
    bdrv_unref(raw);
}

static void test_rmw_at_unaligned_end(void)
{
    BlockDriverState *raw = open_json(
        "{'driver':'raw','file':{'driver':'null-co','read-zeroes':true,"
        " 'size':10000,'x-request-alignment':4096}}");
    BlockDriverState *null = bdrv_file_bs(raw);
    uint8_t buf[1000];
    Recorder below;

    recorder_attach(&below, null);
    memset(buf, 1, sizeof(buf));
    /* Ends at the end of the node: only the head needs padding, and the
     * aligned request stops at the end. */
    g_assert_cmpint(bdrv_pwrite(raw, 9000, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(seen_at(&below, 0)->offset, ==, 8192);
    g_assert_cmpint(seen_at(&below, 0)->bytes, ==, 10000 - 8192);
    g_assert_true(all_bytes(seen_at(&below, 0)->data + 808, 1000, 1));
    recorder_detach(&below, null);
    bdrv_unref(raw);
}

static void test_rmw_write_zeroes(void)
{
    BlockDriverState *raw = open_json(ALIGNED_RAW);
    BlockDriverState *null = bdrv_file_bs(raw);
    Recorder below;

    recorder_attach(&below, null);
    g_assert_cmpint(bdrv_pwrite_zeroes(raw, 100, 8192, 0), ==, 0);
    /* [100, 8292): head block and tail block as zero-filled data, the
     * aligned middle as write-zeroes. */
    g_assert_cmpuint(below.seen->len, ==, 3);
    g_assert_cmpint(seen_at(&below, 0)->offset, ==, 0);
    g_assert_true(all_bytes(seen_at(&below, 0)->data, 4096, 0));
    g_assert_cmpint(seen_at(&below, 1)->offset, ==, 8192);
    g_assert_cmpint(seen_at(&below, 1)->bytes, ==, 4096);
    g_assert_true(all_bytes(seen_at(&below, 1)->data, 4096, 0));
    g_assert_cmpint(seen_at(&below, 2)->offset, ==, 4096);
    g_assert_cmpint(seen_at(&below, 2)->bytes, ==, 4096);
    g_assert_null(seen_at(&below, 2)->data);
    g_assert_true(seen_at(&below, 2)->flags & BDRV_REQ_ZERO_WRITE);
    recorder_detach(&below, null);
    bdrv_unref(raw);
}

/* ---- max_transfer ---- */

static void test_max_transfer_split(void)
{
    BlockDriverState *raw = open_json(
        "{'driver':'raw','file':{'driver':'null-co',"
        " 'x-max-transfer':65536}}");
    BlockDriverState *null = bdrv_file_bs(raw);
    g_autofree uint8_t *buf = g_malloc0(204800);

    g_assert_cmpint(bdrv_get_max_transfer(raw), ==, 65536);
    g_assert_cmpint(bdrv_pwrite(raw, 0, 204800, buf, 0), ==, 0);
    g_assert_cmpint(bdrv_pread(raw, 0, 204800, buf, 0), ==, 0);
    /* 3 x 64 KiB + 8 KiB below, one request above. */
    g_assert_cmpuint(stats_of(null).nr_ops[BLOCK_ACCT_WRITE], ==, 4);
    g_assert_cmpuint(stats_of(null).nr_ops[BLOCK_ACCT_READ], ==, 4);
    g_assert_cmpuint(stats_of(null).nr_bytes[BLOCK_ACCT_WRITE], ==, 204800);
    g_assert_cmpuint(stats_of(raw).nr_ops[BLOCK_ACCT_WRITE], ==, 1);
    bdrv_unref(raw);
}

static void test_max_transfer_must_be_aligned(void)
{
    g_autoptr(BlockdevOptions) opts = g_new0(BlockdevOptions, 1);
    Error *err = NULL;

    opts->driver = BLOCKDEV_DRIVER_NULL_CO;
    opts->u.null_co.has_x_request_alignment = true;
    opts->u.null_co.x_request_alignment = 4096;
    opts->u.null_co.has_x_max_transfer = true;
    opts->u.null_co.x_max_transfer = 6000;
    g_assert_null(bdrv_open_options(opts, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "'x-max-transfer' must be a "
                    "multiple of the request alignment");
    error_free(err);
}

/* ---- Serialisation of tracked requests ---- */

typedef struct CoWrite {
    BlockDriverState *bs;
    int64_t offset, bytes;
    BdrvRequestFlags flags;
    int ret;
    bool done;
} CoWrite;

static void coroutine_fn co_write_entry(void *opaque)
{
    CoWrite *w = opaque;
    g_autofree uint8_t *buf = g_malloc0(w->bytes);
    QIOVector qiov;

    qiov_init_buf(&qiov, buf, w->bytes);
    w->ret = bdrv_co_pwritev(w->bs, w->offset, w->bytes, &qiov, w->flags);
    w->done = true;
}

static void start_write(CoWrite *w)
{
    coroutine_enter(coroutine_create(co_write_entry, w));
}

/* A sleeps in the hook; B overlaps A; C does not.  Returns the log. */
static char *run_race(BdrvRequestFlags a_flags, BdrvRequestFlags b_flags)
{
    BlockDriverState *bs = open_json("{'driver':'null-co'}");
    CoWrite a = { bs, 0, 4096, a_flags }, b = { bs, 1024, 512, b_flags };
    CoWrite c = { bs, 65536, 512, 0 };
    Recorder r;
    char *log;

    recorder_attach(&r, bs);
    r.sleep_offset = 0;
    r.sleep_ns = 5 * 1000 * 1000;
    start_write(&a);
    start_write(&b);
    start_write(&c);
    while (!a.done || !b.done || !c.done) {
        aio_poll(aio_main_context(), true);
    }
    g_assert_cmpint(a.ret, ==, 0);
    g_assert_cmpint(b.ret, ==, 0);
    log = g_strdup(r.log->str);
    recorder_detach(&r, bs);
    bdrv_unref(bs);
    return log;
}

static void test_serialising_blocks_overlap(void)
{
    g_autofree char *log = run_race(BDRV_REQ_SERIALISING, 0);

    /* B waited for A; C did not. */
    g_assert_cmpstr(log, ==, "0+ 65536 0- 1024 ");
}

static void test_serialising_waits_for_overlap(void)
{
    g_autofree char *log = run_race(0, BDRV_REQ_SERIALISING);

    g_assert_cmpstr(log, ==, "0+ 65536 0- 1024 ");
}

static void test_plain_requests_do_not_serialise(void)
{
    g_autofree char *log = run_race(0, 0);

    g_assert_cmpstr(log, ==, "0+ 1024 65536 0- ");
}

static void test_rmw_serialises_overlapping_write(void)
{
    /* An unaligned write is serialising on the aligned node: a plain
     * write to the same block waits for it. */
    BlockDriverState *bs = open_json("{'driver':'null-co',"
                                     " 'x-request-alignment':4096}");
    CoWrite a = { bs, 0, 4096, 0 }, b = { bs, 1024, 512, 0 };
    Recorder r;

    recorder_attach(&r, bs);
    r.sleep_offset = 1024;
    r.sleep_ns = 5 * 1000 * 1000;
    start_write(&b);
    start_write(&a);
    while (!a.done || !b.done) {
        aio_poll(aio_main_context(), true);
    }
    g_assert_cmpstr(r.log->str, ==, "1024+ 1024- 0 ");
    recorder_detach(&r, bs);
    bdrv_unref(bs);
}

/* ---- Write hooks ---- */

static void test_hooks_order(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co','discard':'unmap'}");
    uint8_t buf[512] = { 1 };
    Recorder h1, h2;

    recorder_attach(&h1, bs);
    recorder_attach(&h2, bs);
    /* Both recorders share one log so the order is visible. */
    g_string_free(h2.log, true);
    h2.log = h1.log;
    h1.tag = "1";
    h2.tag = "2";
    g_assert_cmpint(bdrv_pwrite(bs, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 0, 512, 0), ==, 0);
    g_assert_cmpint(bdrv_pdiscard(bs, 0, 512), ==, 0);
    g_assert_cmpstr(h1.log->str, ==, "121212");
    g_assert_cmpint(seen_at(&h1, 0)->type, ==, BDRV_TRACKED_WRITE);
    g_assert_true(seen_at(&h1, 1)->flags & BDRV_REQ_ZERO_WRITE);
    g_assert_cmpint(seen_at(&h1, 2)->type, ==, BDRV_TRACKED_DISCARD);
    /* Reads run no hooks. */
    g_assert_cmpint(bdrv_pread(bs, 0, 512, buf, 0), ==, 0);
    g_assert_cmpuint(h1.seen->len, ==, 3);
    h2.log = g_string_new("");
    recorder_detach(&h2, bs);
    g_assert_cmpint(bdrv_pwrite(bs, 0, 512, buf, 0), ==, 0);
    g_assert_cmpstr(h1.log->str, ==, "1212121");
    recorder_detach(&h1, bs);
    bdrv_unref(bs);
}

static void test_hook_failure_fails_request(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co'}");
    uint8_t buf[512] = { 0 };
    Recorder h1, h2;

    recorder_attach(&h1, bs);
    recorder_attach(&h2, bs);
    h1.fail_with = -ENOSPC;
    g_assert_cmpint(bdrv_pwrite(bs, 0, 512, buf, 0), ==, -ENOSPC);
    /* The second hook and the driver were skipped. */
    g_assert_cmpuint(h2.seen->len, ==, 0);
    g_assert_cmpuint(stats_of(bs).failed_ops[BLOCK_ACCT_WRITE], ==, 1);
    g_assert_cmpuint(stats_of(bs).nr_ops[BLOCK_ACCT_WRITE], ==, 0);
    recorder_detach(&h2, bs);
    recorder_detach(&h1, bs);
    bdrv_unref(bs);
}

/* A hook that reads the range its write will overwrite, as
 * copy-before-write does. */
typedef struct ReadingHook {
    BdrvWriteHook hook;
    int ret;
    int calls;
} ReadingHook;

static int coroutine_fn reading_hook(BdrvWriteHook *hook,
                                     BdrvTrackedRequest *req)
{
    ReadingHook *h = hook->opaque;
    int64_t bytes = bdrv_req_bytes(req);
    g_autofree uint8_t *old = g_malloc(bytes);
    QIOVector qiov;

    qiov_init_buf(&qiov, old, bytes);
    h->ret = bdrv_co_preadv(bdrv_req_bs(req), bdrv_req_offset(req), bytes,
                            &qiov, BDRV_REQ_NO_SERIALISING);
    h->calls++;
    return 0;
}

static void test_hook_reads_under_serialising_write(void)
{
    /* The unaligned write is serialising; its hook's read of the same
     * range must not wait for it. */
    BlockDriverState *bs = open_json("{'driver':'null-co','read-zeroes':true,"
                                     " 'x-request-alignment':4096}");
    ReadingHook h = { .hook = { .fn = reading_hook, .opaque = &h } };
    uint8_t buf[512] = { 1 };

    bdrv_add_write_hook(bs, &h.hook);
    g_assert_cmpint(bdrv_pwrite(bs, 100, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(h.calls, ==, 1);
    g_assert_cmpint(h.ret, ==, 0);
    bdrv_remove_write_hook(bs, &h.hook);
    bdrv_unref(bs);
}

/* ---- detect-zeroes ---- */

static void test_detect_zeroes_on(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co',"
                                     " 'detect-zeroes':'on'}");
    uint8_t buf[4096] = { 0 };
    Recorder r;

    recorder_attach(&r, bs);
    g_assert_cmpint(bdrv_pwrite(bs, 0, sizeof(buf), buf, 0), ==, 0);
    buf[4095] = 1;
    g_assert_cmpint(bdrv_pwrite(bs, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_true(seen_at(&r, 0)->flags & BDRV_REQ_ZERO_WRITE);
    g_assert_false(seen_at(&r, 0)->flags & BDRV_REQ_MAY_UNMAP);
    g_assert_false(seen_at(&r, 1)->flags & BDRV_REQ_ZERO_WRITE);
    recorder_detach(&r, bs);
    bdrv_unref(bs);
}

static void test_detect_zeroes_unmap(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co','discard':'unmap',"
                                     " 'detect-zeroes':'unmap'}");
    uint8_t buf[4096] = { 0 };
    Recorder r;

    recorder_attach(&r, bs);
    g_assert_cmpint(bdrv_pwrite(bs, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_true(seen_at(&r, 0)->flags & BDRV_REQ_ZERO_WRITE);
    g_assert_true(seen_at(&r, 0)->flags & BDRV_REQ_MAY_UNMAP);
    recorder_detach(&r, bs);
    bdrv_unref(bs);
}

static void test_detect_zeroes_reaches_below_as_write_zeroes(void)
{
    BlockDriverState *raw = open_json(
        "{'driver':'raw','detect-zeroes':'on','file':{'driver':'null-co'}}");
    BlockDriverState *null = bdrv_file_bs(raw);
    uint8_t buf[4096] = { 0 };
    Recorder below;

    recorder_attach(&below, null);
    g_assert_cmpint(bdrv_pwrite(raw, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_null(seen_at(&below, 0)->data);
    g_assert_true(seen_at(&below, 0)->flags & BDRV_REQ_ZERO_WRITE);
    recorder_detach(&below, null);
    bdrv_unref(raw);
}

static void test_detect_zeroes_off(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co'}");
    uint8_t buf[4096] = { 0 };
    Recorder r;

    recorder_attach(&r, bs);
    g_assert_cmpint(bdrv_pwrite(bs, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_false(seen_at(&r, 0)->flags & BDRV_REQ_ZERO_WRITE);
    recorder_detach(&r, bs);
    bdrv_unref(bs);
}

/* ---- Block status ---- */

static void test_status_null_zero(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co','read-zeroes':true,"
                                     " 'size':1048576}");
    BlockDriverState *file = NULL;
    int64_t pnum, map;
    int ret = bdrv_block_status(bs, true, 4096, 1048576, &pnum, &map, &file);

    g_assert_cmpint(ret, ==, BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID |
                    BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_EOF);
    g_assert_cmpint(pnum, ==, 1048576 - 4096);
    g_assert_cmpint(map, ==, 4096);
    g_assert_true(file == bs);
    g_assert_cmpint(bdrv_is_allocated(bs, 0, 4096, &pnum), ==, 1);
    bdrv_unref(bs);
}

static void test_status_null_unallocated(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co','size':1048576}");
    int64_t pnum;

    g_assert_cmpint(bdrv_is_allocated(bs, 0, 4096, &pnum), ==, 0);
    g_assert_cmpint(pnum, ==, 4096);
    bdrv_unref(bs);
}

static void test_status_raw_passthrough(void)
{
    BlockDriverState *raw = open_json(
        "{'driver':'raw','offset':4096,'file':{'driver':'null-co',"
        " 'read-zeroes':true,'size':1048576}}");
    BlockDriverState *file = NULL;
    int64_t pnum, map;
    int ret;

    for (int want_zero = 0; want_zero < 2; want_zero++) {
        ret = bdrv_block_status(raw, want_zero, 0, 4096, &pnum, &map, &file);
        g_assert_cmpint(ret, ==, BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID |
                        BDRV_BLOCK_ALLOCATED);
        g_assert_cmpint(pnum, ==, 4096);
        g_assert_cmpint(map, ==, 4096);
        g_assert_true(file == bdrv_file_bs(raw));
    }
    /* The window's end is the node's end. */
    ret = bdrv_block_status(raw, false, 1048576 - 4096 - 512, 4096, &pnum,
                            &map, &file);
    g_assert_true(ret & BDRV_BLOCK_EOF);
    g_assert_cmpint(pnum, ==, 512);
    bdrv_unref(raw);
}

static void test_status_at_end(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co','size':65536}");
    int64_t pnum = -1;

    g_assert_cmpint(bdrv_block_status(bs, true, 65536, 512, &pnum, NULL,
                                      NULL), ==, BDRV_BLOCK_EOF);
    g_assert_cmpint(pnum, ==, 0);
    g_assert_cmpint(bdrv_block_status(bs, true, -1, 512, &pnum, NULL, NULL),
                    ==, -EINVAL);
    bdrv_unref(bs);
}

/* A sparse temporary file: 1 MiB with data only in its first 64 KiB. */
static char *make_sparse_file(void)
{
    g_autofree uint8_t *data = g_malloc(65536);
    char *path = NULL;
    int fd = g_file_open_tmp("test-block-io-XXXXXX", &path, NULL);

    g_assert_cmpint(fd, >=, 0);
    memset(data, 0x11, 65536);
    g_assert_cmpint(pwrite(fd, data, 65536, 0), ==, 65536);
    g_assert_cmpint(ftruncate(fd, 1048576), ==, 0);
    close(fd);
    return path;
}

static void test_status_modes(void)
{
    g_autofree char *path = NULL;
    BdrvImageOpts o = { 0 };
    BlockDriverState *raw;
    int64_t pnum;
    int ret;

    if (!bdrv_find_driver("file")) {
        g_test_skip("no file driver");
        return;
    }
    path = make_sparse_file();
    o.filename = path;
    raw = bdrv_open_image(&o, &error_abort);
    /* Allocation mode: the protocol layer is not probed, all is data. */
    ret = bdrv_block_status(raw, false, 0, 1048576, &pnum, NULL, NULL);
    g_assert_cmpint(ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO), ==,
                    BDRV_BLOCK_DATA);
    g_assert_true(ret & BDRV_BLOCK_ALLOCATED);
    g_assert_cmpint(pnum, ==, 1048576);
    g_assert_cmpint(bdrv_is_allocated(raw, 65536, 4096, &pnum), ==, 1);
    /* Mapping mode: the hole after 64 KiB reads as zeroes. */
    ret = bdrv_block_status(raw, true, 0, 1048576, &pnum, NULL, NULL);
    g_assert_true(ret & BDRV_BLOCK_DATA);
    g_assert_cmpint(pnum, ==, 65536);
    ret = bdrv_block_status(raw, true, 65536, 1048576, &pnum, NULL, NULL);
    g_assert_true(ret & BDRV_BLOCK_ZERO);
    g_assert_false(ret & BDRV_BLOCK_DATA);
    g_assert_true(ret & BDRV_BLOCK_EOF);
    g_assert_cmpint(pnum, ==, 1048576 - 65536);
    bdrv_unref(raw);
    unlink(path);
}

/* ---- Flush, discard, accounting ---- */

static void test_flush_reaches_children(void)
{
    BlockDriverState *raw = open_json(
        "{'driver':'raw','file':{'driver':'null-co'}}");

    g_assert_cmpint(bdrv_flush(raw), ==, 0);
    g_assert_cmpuint(stats_of(raw).nr_ops[BLOCK_ACCT_FLUSH], ==, 1);
    g_assert_cmpuint(stats_of(bdrv_file_bs(raw)).nr_ops[BLOCK_ACCT_FLUSH],
                     ==, 1);
    bdrv_unref(raw);
}

static void test_no_flush_skips_driver(void)
{
    /* The injected flush error shows whether the driver was called. */
    BlockDriverState *plain = open_json(
        "{'driver':'raw','file':{'driver':'null-co','x-error-errno':5,"
        " 'x-error-on':'flush'}}");
    BlockDriverState *noflush = open_json(
        "{'driver':'raw','cache':{'no-flush':true},"
        " 'file':{'driver':'null-co','x-error-errno':5,'x-error-on':'flush'}}");

    g_assert_cmpint(bdrv_flush(plain), ==, -EIO);
    g_assert_cmpint(bdrv_flush(noflush), ==, 0);
    bdrv_unref(plain);
    bdrv_unref(noflush);
}

static void test_discard_policy(void)
{
    BlockDriverState *ignore = open_json(
        "{'driver':'null-co','x-error-errno':5,'x-error-on':'write'}");
    BlockDriverState *unmap = open_json(
        "{'driver':'null-co','discard':'unmap','x-error-errno':5,"
        " 'x-error-on':'write'}");

    /* discard=ignore never reaches the driver. */
    g_assert_cmpint(bdrv_pdiscard(ignore, 0, 4096), ==, 0);
    g_assert_cmpint(bdrv_pdiscard(unmap, 0, 4096), ==, -EIO);
    g_assert_cmpuint(stats_of(unmap).failed_ops[BLOCK_ACCT_UNMAP], ==, 1);
    bdrv_unref(ignore);
    bdrv_unref(unmap);
}

static void test_accounting(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co','size':1048576}");
    uint8_t buf[8192] = { 0 };
    BlockAcctStats s;

    g_assert_cmpint(bdrv_pwrite(bs, 65536, 8192, buf, 0), ==, 0);
    g_assert_cmpint(bdrv_pwrite(bs, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(bdrv_pread(bs, 0, 4096, buf, 0), ==, 0);
    s = stats_of(bs);
    g_assert_cmpuint(s.nr_ops[BLOCK_ACCT_WRITE], ==, 2);
    g_assert_cmpuint(s.nr_bytes[BLOCK_ACCT_WRITE], ==, 8192 + 512);
    g_assert_cmpuint(s.nr_ops[BLOCK_ACCT_READ], ==, 1);
    g_assert_cmpuint(s.nr_bytes[BLOCK_ACCT_READ], ==, 4096);
    g_assert_cmpuint(s.wr_highest_offset, ==, 65536 + 8192);
    g_assert_cmpint(s.last_access_ns, >, 0);
    bdrv_unref(bs);
}

/* ---- The null driver ---- */

static void test_null_error_injection(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co','x-error-errno':28,"
                                     " 'x-error-on':'write'}");
    uint8_t buf[512] = { 0 };

    g_assert_cmpint(bdrv_pwrite(bs, 0, 512, buf, 0), ==, -ENOSPC);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 0, 512, 0), ==, -ENOSPC);
    g_assert_cmpint(bdrv_pread(bs, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(bdrv_flush(bs), ==, 0);
    g_assert_cmpuint(stats_of(bs).failed_ops[BLOCK_ACCT_WRITE], ==, 2);
    bdrv_unref(bs);
}

static void test_null_latency(void)
{
    BlockDriverState *bs = open_json("{'driver':'null-co',"
                                     " 'latency-ns':3000000}");
    uint8_t buf[512];
    int64_t start = clock_ns();

    g_assert_cmpint(bdrv_pread(bs, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(clock_ns() - start, >=, 3000000);
    bdrv_unref(bs);
}

static void set_ret(void *opaque, int ret)
{
    int *p = opaque;

    *p = ret;
}

static void test_aio_completes_later(void)
{
    const char *drivers[] = { "{'driver':'null-aio'}", "{'driver':'null-co'}" };

    for (size_t i = 0; i < G_N_ELEMENTS(drivers); i++) {
        BlockDriverState *bs = open_json(drivers[i]);
        BlockBackend *blk = blk_new(NULL, &error_abort);
        uint8_t buf[512];
        QIOVector qiov;
        int ret = 1;

        g_assert_true(blk_insert_bs(blk, bs, &error_abort));
        qiov_init_buf(&qiov, buf, sizeof(buf));
        blk_aio_preadv(blk, 0, &qiov, 0, set_ret, &ret);
        /* Never called back from inside the submission. */
        g_assert_cmpint(ret, ==, 1);
        while (ret == 1) {
            aio_poll(aio_main_context(), true);
        }
        g_assert_cmpint(ret, ==, 0);
        g_assert_cmpuint(blk_get_stats(blk)->nr_ops[BLOCK_ACCT_READ], ==, 1);
        blk_unref(blk);
        bdrv_unref(bs);
    }
}

/* ---- Backends and synchronous wrappers ---- */

static void test_blk_errors(void)
{
    BlockBackend *blk = blk_new(NULL, &error_abort);
    BlockDriverState *bs;
    uint8_t buf[512] = { 0 };

    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, -ENOMEDIUM);
    bs = open_json("{'driver':'null-co','size':4096}");
    g_assert_true(blk_insert_bs(blk, bs, &error_abort));
    g_assert_cmpint(blk_pread(blk, 4096, 512, buf, 0), ==, -EIO);
    g_assert_cmpuint(blk_get_stats(blk)->invalid_ops[BLOCK_ACCT_READ], ==, 1);
    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(blk_getlength(blk), ==, 4096);
    g_assert_cmpuint(blk_get_stats(blk)->nr_bytes[BLOCK_ACCT_WRITE], ==, 512);
    g_assert_cmpuint(blk_get_stats(blk)->wr_highest_offset, ==, 512);
    blk_unref(blk);
    bdrv_unref(bs);
}

typedef struct InCo {
    BlockDriverState *bs;
    int ret;
    bool done;
} InCo;

static void coroutine_fn sync_in_coroutine(void *opaque)
{
    InCo *c = opaque;
    uint8_t buf[512] = { 0 };

    c->ret = bdrv_pwrite(c->bs, 0, sizeof(buf), buf, 0);
    c->done = true;
}

static void test_sync_wrapper_in_coroutine(void)
{
    InCo c = { .bs = open_json("{'driver':'null-aio'}") };

    coroutine_enter(coroutine_create(sync_in_coroutine, &c));
    while (!c.done) {
        aio_poll(aio_main_context(), true);
    }
    g_assert_cmpint(c.ret, ==, 0);
    g_assert_cmpuint(stats_of(c.bs).nr_ops[BLOCK_ACCT_WRITE], ==, 1);
    bdrv_unref(c.bs);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/block-io/null/read-zeroes", test_null_read_zeroes);
    g_test_add_func("/block-io/null/no-read-zeroes",
                    test_null_no_read_zeroes_leaves_buffer);
    g_test_add_func("/block-io/null/error-injection",
                    test_null_error_injection);
    g_test_add_func("/block-io/null/latency", test_null_latency);
    g_test_add_func("/block-io/validate/beyond-end", test_beyond_end_is_eio);
    g_test_add_func("/block-io/validate/negative", test_negative_is_einval);
    g_test_add_func("/block-io/validate/read-only",
                    test_read_only_refuses_writes);
    g_test_add_func("/block-io/raw/window", test_raw_window);
    g_test_add_func("/block-io/raw/truncate-unsupported",
                    test_raw_truncate_unsupported);
    g_test_add_func("/block-io/align/inherited", test_align_inherited);
    g_test_add_func("/block-io/align/rmw-write", test_rmw_write);
    g_test_add_func("/block-io/align/rmw-write-two-blocks",
                    test_rmw_write_two_blocks);
    g_test_add_func("/block-io/align/rmw-read", test_rmw_read);
    g_test_add_func("/block-io/align/unaligned-end",
                    test_rmw_at_unaligned_end);
    g_test_add_func("/block-io/align/write-zeroes", test_rmw_write_zeroes);
    g_test_add_func("/block-io/max-transfer/split", test_max_transfer_split);
    g_test_add_func("/block-io/max-transfer/aligned",
                    test_max_transfer_must_be_aligned);
    g_test_add_func("/block-io/serialise/blocks-overlap",
                    test_serialising_blocks_overlap);
    g_test_add_func("/block-io/serialise/waits-for-overlap",
                    test_serialising_waits_for_overlap);
    g_test_add_func("/block-io/serialise/plain-requests",
                    test_plain_requests_do_not_serialise);
    g_test_add_func("/block-io/serialise/rmw",
                    test_rmw_serialises_overlapping_write);
    g_test_add_func("/block-io/hooks/order", test_hooks_order);
    g_test_add_func("/block-io/hooks/failure", test_hook_failure_fails_request);
    g_test_add_func("/block-io/hooks/read-old-data",
                    test_hook_reads_under_serialising_write);
    g_test_add_func("/block-io/detect-zeroes/on", test_detect_zeroes_on);
    g_test_add_func("/block-io/detect-zeroes/unmap", test_detect_zeroes_unmap);
    g_test_add_func("/block-io/detect-zeroes/below",
                    test_detect_zeroes_reaches_below_as_write_zeroes);
    g_test_add_func("/block-io/detect-zeroes/off", test_detect_zeroes_off);
    g_test_add_func("/block-io/status/null-zero", test_status_null_zero);
    g_test_add_func("/block-io/status/null-unallocated",
                    test_status_null_unallocated);
    g_test_add_func("/block-io/status/raw-passthrough",
                    test_status_raw_passthrough);
    g_test_add_func("/block-io/status/at-end", test_status_at_end);
    g_test_add_func("/block-io/status/modes", test_status_modes);
    g_test_add_func("/block-io/flush/children", test_flush_reaches_children);
    g_test_add_func("/block-io/flush/no-flush", test_no_flush_skips_driver);
    g_test_add_func("/block-io/discard/policy", test_discard_policy);
    g_test_add_func("/block-io/accounting", test_accounting);
    g_test_add_func("/block-io/aio/completes-later", test_aio_completes_later);
    g_test_add_func("/block-io/blk/errors", test_blk_errors);
    g_test_add_func("/block-io/sync/in-coroutine",
                    test_sync_wrapper_in_coroutine);
    return g_test_run();
}
