/*
 * Unit tests of the block-copy engine and the copy-before-write filter
 * with real raw/file nodes (images in a fresh directory under /var/tmp)
 * and null-co nodes for errors: the background copy makes the target
 * equal to the source and keeps it sparse, a write through the filter
 * copies old data first (once per cluster), a write racing the
 * background workers still leaves the point-in-time content, sync=top
 * skips unallocated areas, a failing target hands its ranges back,
 * truncate is refused while the filter is on, and the activation gate
 * gives an exact point in time with writes in flight.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block-copy.h"
#include "block/block_int.h"
#include "block/copy-before-write.h"
#include "qapi/qapi-visit.h"
#include "tests/unit/block-test-helpers.h"

#define MiB (1024 * 1024)
#define IMG_SIZE (8 * MiB + 4096)     /* a partial last cluster */

static char *test_dir;

/* Opens a node from single-quoted JSON options; aborts on failure. */
static BlockDriverState *open_json(const char *text)
{
    return test_open_json(text, &error_abort);
}

/* A raw node named name over a file of IMG_SIZE; data: fill the image
 * with a per-MiB pattern except MiB 2-3 (a hole) and MiB 5 (written
 * zeroes). */
static BlockDriverState *make_image(const char *name, bool data)
{
    g_autofree char *path = g_strdup_printf("%s/%s.raw", test_dir, name);
    g_autofree char *json = NULL;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, IMG_SIZE), ==, 0);
    if (data) {
        g_autofree uint8_t *buf = g_malloc(MiB);

        for (int64_t off = 0; off < IMG_SIZE; off += MiB) {
            int64_t len = MIN((int64_t)MiB, IMG_SIZE - off);

            if (off == 2 * MiB || off == 3 * MiB) {
                continue;
            }
            memset(buf, off == 5 * MiB ? 0 : 0x10 + off / MiB, len);
            g_assert_cmpint(pwrite(fd, buf, len, off), ==, len);
        }
    }
    close(fd);
    json = g_strdup_printf("{'driver': 'raw', 'node-name': '%s', "
                           "'file': {'driver': 'file', 'filename': '%s'}}",
                           name, path);
    return open_json(json);
}

static uint8_t *read_all(BlockDriverState *bs)
{
    uint8_t *buf = g_malloc(IMG_SIZE);

    g_assert_cmpint(bdrv_pread(bs, 0, IMG_SIZE, buf, 0), ==, 0);
    return buf;
}

static int64_t allocated_bytes(const char *name)
{
    g_autofree char *path = g_strdup_printf("%s/%s.raw", test_dir, name);
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return (int64_t)st.st_blocks * 512;
}

/* ---- Running coroutines from the test ---- */

typedef struct Run {
    BlockCopyState *bcs;
    BlockDriverState *bs;
    int64_t offset, bytes;
    int ret;
    bool done;
} Run;

static void coroutine_fn background_entry(void *opaque)
{
    Run *r = opaque;
    int64_t pos = 0;

    while (block_copy_start_next(r->bcs, &pos) > 0) {
        /* keep the workers busy */
    }
    block_copy_wait_all(r->bcs);
    r->done = true;
}

static void run_background(BlockCopyState *bcs)
{
    Run r = { .bcs = bcs };

    coroutine_enter(coroutine_create(background_entry, &r));
    AIO_WAIT_WHILE(aio_main_context(), !r.done);
}

static void progress_count(void *opaque, int64_t bytes)
{
    *(int64_t *)opaque += bytes;
}

/* ---- Tests ---- */

static void test_full_copy_sparse(void)
{
    BlockDriverState *src = make_image("full-src", true);
    BlockDriverState *dst = make_image("full-dst", false);
    BlockCopyOptions o = { .max_workers = 4, .max_chunk = 3 * MiB };
    BlockCopyState *bcs = block_copy_state_new(src, dst, &o, &error_abort);
    g_autofree uint8_t *a = NULL, *b = NULL;
    int64_t progress = 0;

    g_assert_cmpint(block_copy_cluster_size(bcs), ==, 4096);
    g_assert_true(block_copy_probe_target_zero(bcs));
    block_copy_set_target_zero(bcs, true);
    block_copy_set_progress(bcs, progress_count, &progress);
    block_copy_set_dirty(bcs, 0, IMG_SIZE);
    g_assert_cmpint(block_copy_dirty_bytes(bcs), ==, IMG_SIZE);
    run_background(bcs);
    g_assert_cmpint(block_copy_dirty_bytes(bcs), ==, 0);
    g_assert_cmpint(progress, ==, IMG_SIZE);
    a = read_all(src);
    b = read_all(dst);
    g_assert_true(memcmp(a, b, IMG_SIZE) == 0);
    /* The hole and the zero MiB were not written: 3 MiB less. */
    g_assert_cmpint(allocated_bytes("full-dst"), <=, IMG_SIZE - 3 * MiB);
    g_assert_false(block_copy_probe_target_zero(bcs));
    block_copy_state_free(bcs);
    bdrv_unref(src);
    bdrv_unref(dst);
}

static void test_size_mismatch(void)
{
    BlockDriverState *src = make_image("size-src", false);
    BlockDriverState *dst = open_json("{'driver': 'null-co', "
                                      "'size': 4096}");
    BlockCopyOptions o = { 0 };
    Error *err = NULL;

    g_assert_null(block_copy_state_new(src, dst, &o, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Source and target image have different sizes");
    error_free(err);
    bdrv_unref(src);
    bdrv_unref(dst);
}

/* A filter (blockdev-add style: active at once) above a source: a write
 * through it lands in the source, and the target gets the old data of
 * the touched clusters only. */
static void test_cbw_filter_write(void)
{
    BlockDriverState *src = make_image("cbw-src", true);
    BlockDriverState *dst = make_image("cbw-dst", false);
    BlockDriverState *f = open_json("{'driver': 'copy-before-write', "
                                    "'node-name': 'cbw0', 'file': 'cbw-src', "
                                    "'target': 'cbw-dst'}");
    g_autofree uint8_t *orig = read_all(src);
    g_autofree uint8_t *t = NULL, *s2 = NULL, *buf = g_malloc(4096);
    int64_t cs = 64 * 1024;

    g_assert_cmpint(block_copy_cluster_size(bdrv_cbw_get_block_copy(f)), ==,
                    4096);
    memset(buf, 0xee, 4096);
    /* Inside [64 KiB, 72 KiB) (two 4 KiB granules), twice: the second
     * write copies nothing more. */
    g_assert_cmpint(bdrv_pwrite(f, cs + 100, 4096, buf, 0), ==, 0);
    g_assert_cmpint(bdrv_pwrite(f, cs + 200, 4096, buf, 0), ==, 0);
    /* The partial last cluster, through the source directly: the hook
     * sits on the source, so this is caught too. */
    g_assert_cmpint(bdrv_pwrite(src, IMG_SIZE - 4096, 4096, buf, 0), ==, 0);
    t = read_all(dst);
    s2 = read_all(src);
    g_assert_true(memcmp(t + cs, orig + cs, 8192) == 0);
    g_assert_true(memcmp(t + 8 * MiB, orig + 8 * MiB, 4096) == 0);
    for (int64_t i = 0; i < cs; i++) {
        g_assert_cmpint(t[i], ==, 0);            /* untouched 0-64 KiB */
    }
    /* Only the granules the write touched were copied (the source has
     * data there): a 4 KiB write costs 8 KiB of copy here, not 64. */
    for (int64_t i = cs + 8192; i < 2 * cs; i++) {
        g_assert_cmpint(t[i], ==, 0);
    }
    g_assert_cmpint(s2[cs + 100], ==, 0xee);
    g_assert_cmpint(s2[cs + 4295], ==, 0xee);
    g_assert_cmpint(s2[IMG_SIZE - 1], ==, 0xee);
    /* Truncating the source would shorten the copy: refused. */
    g_assert_cmpint(bdrv_truncate(src, MiB, true, PREALLOC_MODE_OFF, NULL),
                    ==, -EPERM);
    bdrv_unref(f);
    /* Without the filter the source is an ordinary node again. */
    g_assert_cmpint(bdrv_pwrite(src, 0, 4096, buf, 0), ==, 0);
    bdrv_unref(src);
    bdrv_unref(dst);
}

typedef struct Writer {
    BlockDriverState *bs;
    uint8_t *buf;
    int64_t offset, bytes;
    bool done;
} Writer;

static void coroutine_fn writer_entry(void *opaque)
{
    Writer *w = opaque;
    QIOVector qiov;

    qiov_init_buf(&qiov, w->buf, w->bytes);
    g_assert_cmpint(bdrv_co_pwritev(w->bs, w->offset, w->bytes, &qiov, 0),
                    ==, 0);
    w->done = true;
}

/* Writes racing the workers (a slow file target is not needed: the
 * workers yield on every request, so the writes interleave with them):
 * the target still ends with the content of the activation instant. */
static void test_race_point_in_time(gconstpointer opaque)
{
    int64_t buffer = GPOINTER_TO_INT(opaque);
    BlockDriverState *src = make_image("race-src", true);
    BlockDriverState *dst = make_image("race-dst", false);
    BlockCopyOptions o = { .max_workers = 2, .max_chunk = 128 * 1024,
                           .cbw_buffer_size = buffer };
    BlockDriverState *f = bdrv_cbw_append(src, dst, "race-cbw", &o,
                                          &error_abort);
    BlockCopyState *bcs = bdrv_cbw_get_block_copy(f);
    g_autofree uint8_t *orig = read_all(src);
    g_autofree uint8_t *t = NULL;
    Writer w[16];
    Run r = { .bcs = bcs };

    bdrv_cbw_activate(f);
    coroutine_enter(coroutine_create(background_entry, &r));
    for (int i = 0; i < 16; i++) {
        w[i] = (Writer) {
            .bs = f,
            .offset = (int64_t)i * 517 * 1024 % (IMG_SIZE - 70000),
            .bytes = 70000,                  /* spans two clusters */
        };
        w[i].buf = g_malloc(w[i].bytes);
        memset(w[i].buf, 0xa0 + i, w[i].bytes);
        coroutine_enter(coroutine_create(writer_entry, &w[i]));
    }
    AIO_WAIT_WHILE(aio_main_context(), !r.done);
    for (int i = 0; i < 16; i++) {
        AIO_WAIT_WHILE(aio_main_context(), !w[i].done);
        g_free(w[i].buf);
    }
    run_background(bcs);       /* nothing left, but waits for buffers */
    t = read_all(dst);
    g_assert_true(memcmp(t, orig, IMG_SIZE) == 0);
    bdrv_cbw_drop(f);
    g_assert_null(bdrv_find_node("race-cbw"));
    bdrv_unref(src);
    bdrv_unref(dst);
}

static void coroutine_fn gate_entry(void *opaque)
{
    Run *r = opaque;

    block_copy_gate_writes(r->bcs);
    r->done = true;
}

/* The activation gate: closing it waits for a write that passed the hook
 * before (it belongs before the point in time), a write issued after
 * waits at the gate until the bitmap is set, then copies old data
 * first.  The target ends with the first write's data and without the
 * second's. */
static void test_gate_point_in_time(void)
{
    BlockDriverState *src = make_image("gate-src", true);
    BlockDriverState *dst = make_image("gate-dst", false);
    BlockCopyOptions o = { .max_workers = 2 };
    BlockDriverState *f = bdrv_cbw_append(src, dst, NULL, &o, &error_abort);
    BlockCopyState *bcs = bdrv_cbw_get_block_copy(f);
    g_autofree uint8_t *want = read_all(src);
    g_autofree uint8_t *t = NULL, *s2 = NULL;
    Writer w1 = { .bs = f, .offset = 0, .bytes = 64 * 1024 };
    Writer w2 = { .bs = f, .offset = 32 * 1024, .bytes = 64 * 1024 };
    Run gate = { .bcs = bcs };

    w1.buf = g_malloc(w1.bytes);
    w2.buf = g_malloc(w2.bytes);
    memset(w1.buf, 0x61, w1.bytes);
    memset(w2.buf, 0x62, w2.bytes);
    memset(want, 0x61, w1.bytes);
    /* w1 passes the (inactive) hook and waits for the file. */
    coroutine_enter(coroutine_create(writer_entry, &w1));
    g_assert_false(w1.done);
    coroutine_enter(coroutine_create(gate_entry, &gate));
    AIO_WAIT_WHILE(aio_main_context(), !gate.done);
    g_assert_true(w1.done);
    coroutine_enter(coroutine_create(writer_entry, &w2));
    for (int i = 0; i < 20; i++) {
        aio_poll(aio_main_context(), false);
    }
    g_assert_false(w2.done);                     /* held at the gate */
    bdrv_cbw_activate(f);
    block_copy_open_gate(bcs);
    AIO_WAIT_WHILE(aio_main_context(), !w2.done);
    run_background(bcs);
    t = read_all(dst);
    g_assert_true(memcmp(t, want, IMG_SIZE) == 0);
    s2 = read_all(src);
    g_assert_cmpint(s2[0], ==, 0x61);
    g_assert_cmpint(s2[32 * 1024], ==, 0x62);
    bdrv_cbw_drop(f);
    g_free(w1.buf);
    g_free(w2.buf);
    bdrv_unref(src);
    bdrv_unref(dst);
}

/* use_copy_range between two raw/file nodes: the data areas go through
 * copy_file_range (offload still on at the end), the target equals the
 * source and holes stay holes; a guest write racing it still leaves the
 * point-in-time content.  To a null-co target the first attempt is
 * refused (-ENOTSUP): offload turns off and read + write copy the rest. */
static void test_copy_range(void)
{
    BlockDriverState *src = make_image("cr-src", true);
    BlockDriverState *dst = make_image("cr-dst", false);
    BlockCopyOptions o = { .max_workers = 2, .max_chunk = MiB,
                           .use_copy_range = true };
    BlockDriverState *f = bdrv_cbw_append(src, dst, NULL, &o, &error_abort);
    BlockCopyState *bcs = bdrv_cbw_get_block_copy(f);
    g_autofree uint8_t *orig = read_all(src);
    g_autofree uint8_t *t = NULL, *buf = g_malloc(8192);
    g_autofree char *json = g_strdup_printf(
        "{'driver': 'null-co', 'node-name': 'cr-null', 'size': %d, "
        "'read-zeroes': true}", IMG_SIZE);
    BlockDriverState *null_dst;
    Writer w = { .bs = f, .offset = 7 * MiB + 512, .bytes = 8192 };

    block_copy_set_target_zero(bcs, block_copy_probe_target_zero(bcs));
    bdrv_cbw_activate(f);
    w.buf = buf;
    memset(buf, 0x77, 8192);
    coroutine_enter(coroutine_create(writer_entry, &w));
    run_background(bcs);
    AIO_WAIT_WHILE(aio_main_context(), !w.done);
    g_assert_true(block_copy_uses_copy_range(bcs));
    t = read_all(dst);
    g_assert_true(memcmp(t, orig, IMG_SIZE) == 0);
    g_assert_cmpint(allocated_bytes("cr-dst"), <=, IMG_SIZE - 2 * MiB);
    bdrv_cbw_drop(f);

    null_dst = open_json(json);
    f = bdrv_cbw_append(src, null_dst, NULL, &o, &error_abort);
    bcs = bdrv_cbw_get_block_copy(f);
    bdrv_cbw_activate(f);
    run_background(bcs);
    g_assert_false(block_copy_uses_copy_range(bcs));
    g_assert_cmpint(block_copy_dirty_bytes(bcs), ==, 0);
    bdrv_cbw_drop(f);
    bdrv_unref(null_dst);
    bdrv_unref(src);
    bdrv_unref(dst);
}

/* sync=top on raw over a sparse file: in allocation mode a raw node is
 * allocated everywhere (the protocol layer is not asked), so everything
 * is read; zero detection still keeps the holes out of the target. */
static void test_skip_unallocated(void)
{
    BlockDriverState *src = make_image("top-src", true);
    BlockDriverState *dst = make_image("top-dst", false);
    BlockCopyOptions o = { .skip_unallocated = true };
    BlockCopyState *bcs = block_copy_state_new(src, dst, &o, &error_abort);
    g_autofree uint8_t *a = NULL, *b = NULL;

    block_copy_set_target_zero(bcs, true);
    block_copy_set_dirty(bcs, 0, IMG_SIZE);
    run_background(bcs);
    a = read_all(src);
    b = read_all(dst);
    g_assert_true(memcmp(a, b, IMG_SIZE) == 0);
    g_assert_cmpint(allocated_bytes("top-dst"), <=, IMG_SIZE - 3 * MiB);
    block_copy_state_free(bcs);
    bdrv_unref(src);
    bdrv_unref(dst);
}

/* A target whose writes fail: the first error is kept (write side), the
 * ranges go back to the bitmap and a cbw write fails with the errno. */
static void coroutine_fn one_task_entry(void *opaque)
{
    Run *r = opaque;
    int64_t pos = 0;

    r->ret = (int)block_copy_start_next(r->bcs, &pos);
    block_copy_wait_all(r->bcs);
    r->done = true;
}

static void test_target_error(void)
{
    BlockDriverState *src = make_image("err-src", true);
    g_autofree char *json = g_strdup_printf(
        "{'driver': 'null-co', 'node-name': 'err-dst', 'size': %d, "
        "'x-error-errno': 28, 'x-error-on': 'write'}", IMG_SIZE);
    BlockDriverState *dst = open_json(json);
    BlockCopyOptions o = { .max_chunk = MiB };
    BlockDriverState *f = bdrv_cbw_append(src, dst, NULL, &o, &error_abort);
    BlockCopyState *bcs = bdrv_cbw_get_block_copy(f);
    Run r = { .bcs = bcs };
    g_autofree uint8_t *buf = g_malloc0(4096);
    int64_t offset = -1;
    bool is_read = true;

    bdrv_cbw_activate(f);
    coroutine_enter(coroutine_create(one_task_entry, &r));
    AIO_WAIT_WHILE(aio_main_context(), !r.done);
    g_assert_cmpint(r.ret, ==, MiB);
    g_assert_cmpint(block_copy_take_error(bcs, &offset, &is_read), ==,
                    -ENOSPC);
    g_assert_false(is_read);
    g_assert_cmpint(offset, ==, 0);
    g_assert_cmpint(block_copy_take_error(bcs, &offset, &is_read), ==, 0);
    /* Handed back: still everything to copy. */
    g_assert_cmpint(block_copy_dirty_bytes(bcs), ==, IMG_SIZE);
    /* The guest write that needs the copy fails; reads are untouched. */
    g_assert_cmpint(bdrv_pwrite(f, 0, 4096, buf, 0), ==, -ENOSPC);
    g_assert_cmpint(bdrv_pread(f, 0, 4096, buf, 0), ==, 0);
    g_assert_cmpint(buf[0], ==, 0x10);
    bdrv_cbw_drop(f);
    bdrv_unref(src);
    bdrv_unref(dst);
}

/* The size of the first chunk the background loop claims, with options o,
 * against a null-co target with max_transfer mt (0: none). */
static int64_t first_chunk(const char *name, int64_t mt,
                           const BlockCopyOptions *o)
{
    BlockDriverState *src = make_image(name, true);
    g_autofree char *dname = g_strdup_printf("%s-dst", name);
    g_autofree char *json = mt ? g_strdup_printf(
        "{'driver': 'null-co', 'node-name': '%s', 'size': %d, "
        "'x-max-transfer': %" G_GINT64_FORMAT "}", dname, IMG_SIZE, mt)
                               : g_strdup_printf(
        "{'driver': 'null-co', 'node-name': '%s', 'size': %d}", dname,
        IMG_SIZE);
    BlockDriverState *dst = open_json(json);
    BlockCopyState *bcs = block_copy_state_new(src, dst, o, &error_abort);
    Run r = { .bcs = bcs };

    block_copy_set_dirty(bcs, 0, IMG_SIZE);
    coroutine_enter(coroutine_create(one_task_entry, &r));
    AIO_WAIT_WHILE(aio_main_context(), !r.done);
    block_copy_state_free(bcs);
    bdrv_unref(src);
    bdrv_unref(dst);
    return r.ret;
}

/* Chunks: 512 KiB by default, x-perf's max_chunk when given, never more
 * than the target's max_transfer (a longer write would be split into
 * pieces written one after another), never less than a cluster. */
static void test_chunk_limits(void)
{
    BlockCopyOptions def = { 0 };
    BlockCopyOptions big = { .max_chunk = 4 * MiB };
    BlockCopyOptions odd = { .max_chunk = 4096 + 100 };

    g_assert_cmpint(first_chunk("chunk-def", 0, &def), ==,
                    BLOCK_COPY_DEFAULT_CHUNK);
    g_assert_cmpint(BLOCK_COPY_DEFAULT_CHUNK, ==, 512 * 1024);
    g_assert_cmpint(first_chunk("chunk-big", 0, &big), ==, 4 * MiB);
    g_assert_cmpint(first_chunk("chunk-def-mt", 65536, &def), ==, 65536);
    g_assert_cmpint(first_chunk("chunk-big-mt", 2 * MiB, &big), ==,
                    2 * MiB);
    /* Rounded down to whole clusters, at least one. */
    g_assert_cmpint(first_chunk("chunk-odd", 0, &odd), ==, 4096);
    g_assert_cmpint(first_chunk("chunk-odd-mt", 6144, &big), ==, 4096);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    test_dir = g_strdup("/var/tmp/blockd-test-copy-XXXXXX");
    g_assert_nonnull(g_mkdtemp(test_dir));
    g_test_add_func("/block-copy/full-copy-sparse", test_full_copy_sparse);
    g_test_add_func("/block-copy/size-mismatch", test_size_mismatch);
    g_test_add_func("/block-copy/cbw-filter-write", test_cbw_filter_write);
    g_test_add_data_func("/block-copy/race/write-through",
                         GINT_TO_POINTER(0), test_race_point_in_time);
    g_test_add_data_func("/block-copy/race/buffered",
                         GINT_TO_POINTER(4 * MiB), test_race_point_in_time);
    g_test_add_func("/block-copy/gate-point-in-time",
                    test_gate_point_in_time);
    g_test_add_func("/block-copy/copy-range", test_copy_range);
    g_test_add_func("/block-copy/skip-unallocated", test_skip_unallocated);
    g_test_add_func("/block-copy/target-error", test_target_error);
    g_test_add_func("/block-copy/chunk-limits", test_chunk_limits);
    ret = g_test_run();
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", test_dir);
    if (system(cmd) != 0) {
        ret = 1;
    }
    return ret;
}
