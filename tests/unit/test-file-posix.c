/*
 * Tests of the "file" protocol driver through the block layer's API:
 * reads and writes (thread pool and linux-aio, buffered and O_DIRECT with
 * unaligned requests), flush, block status over holes, write-zeroes and
 * discard (checked with st_blocks), truncate, create, read-only nodes,
 * copy offload (copy_file_range through raw nodes, its validation,
 * fallback, write hooks and accounting),
 * image locking between nodes and against QEMU's qemu-io when installed.
 * Images live in a fresh directory under /var/tmp (a real file system:
 * tmpfs has no O_DIRECT); the tmpfs inline path uses /dev/shm, and a
 * loop device (root only, else skipped) checks that device nodes on a
 * tmpfs /dev do not take it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "block/block-backend.h"
#include "block/block_int.h"
#include "tests/unit/block-test-helpers.h"
#include "util/linux-aio.h"
#include "util/thread-pool.h"

#define KiB 1024
#define MiB (1024 * 1024)

static char *test_dir;

/* How a test opens its node; zero is a read-write buffered node with
 * locking=auto and aio=threads. */
typedef struct OpenArgs {
    bool read_only;
    bool direct;
    bool native;
    bool force_share;
    bool discard_unmap;
    bool has_locking;
    OnOffAuto locking;
} OpenArgs;

static BlockDriverState *open_file(const char *path, const OpenArgs *a,
                                   Error **errp)
{
    g_autoptr(BlockdevOptions) o = g_new0(BlockdevOptions, 1);

    o->driver = BLOCKDEV_DRIVER_FILE;
    o->u.file.filename = g_strdup(path);
    o->u.file.has_aio = true;
    o->u.file.aio = a->native ? BLOCKDEV_AIO_OPTIONS_NATIVE
                              : BLOCKDEV_AIO_OPTIONS_THREADS;
    o->u.file.has_locking = a->has_locking;
    o->u.file.locking = a->locking;
    o->has_read_only = true;
    o->read_only = a->read_only;
    o->has_force_share = a->force_share;
    o->force_share = a->force_share;
    o->has_discard = true;
    o->discard = a->discard_unmap ? BLOCKDEV_DISCARD_OPTIONS_UNMAP
                                  : BLOCKDEV_DISCARD_OPTIONS_IGNORE;
    o->cache = g_new0(BlockdevCacheOptions, 1);
    o->cache->has_direct = true;
    o->cache->direct = a->direct;
    return bdrv_open_options(o, errp);
}

static BlockDriverState *open_ok(const char *path, const OpenArgs *a)
{
    Error *err = NULL;
    BlockDriverState *bs = open_file(path, a, &err);

    if (!bs) {
        g_error("open %s: %s", path, error_get_pretty(err));
    }
    return bs;
}

/* Opening must fail with a message containing want. */
static void open_fails(const char *path, const OpenArgs *a, const char *want)
{
    Error *err = NULL;
    BlockDriverState *bs = open_file(path, a, &err);

    g_assert_null(bs);
    g_assert_nonnull(err);
    if (!strstr(error_get_pretty(err), want)) {
        g_error("expected '%s' in '%s'", want, error_get_pretty(err));
    }
    error_free(err);
}

/* A new path in the test directory (caller frees). */
static char *new_path(const char *name)
{
    return g_build_filename(test_dir, name, NULL);
}

/* Creates path with size bytes, written with pattern (0: sparse). */
static void make_file(const char *path, int64_t size, int pattern)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    if (pattern) {
        g_autofree uint8_t *buf = g_malloc(size);
        memset(buf, pattern, size);
        g_assert_cmpint(pwrite(fd, buf, size, 0), ==, size);
    }
    g_assert_cmpint(fsync(fd), ==, 0);
    close(fd);
}

static int64_t allocated_bytes(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return (int64_t)st.st_blocks * 512;
}

static int64_t file_size(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return st.st_size;
}

/* Reads [offset, offset+len) of the file with plain pread (caller frees). */
static uint8_t *read_host(const char *path, int64_t offset, int64_t len)
{
    uint8_t *buf = g_malloc(len);
    int fd = open(path, O_RDONLY);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, buf, len, offset), ==, len);
    close(fd);
    return buf;
}

static void assert_filled(const uint8_t *buf, int64_t len, int c)
{
    for (int64_t i = 0; i < len; i++) {
        if (buf[i] != c) {
            g_error("byte %" G_GINT64_FORMAT ": 0x%02x, want 0x%02x", i,
                    buf[i], c);
        }
    }
}

/* ---- Reads, writes, flush ---- */

/* Writes a pattern and reads it back through the node and the host. */
static void check_write_read(const char *path, const OpenArgs *a)
{
    BlockDriverState *bs;
    g_autofree uint8_t *buf = g_malloc(64 * KiB);
    g_autofree uint8_t *host = NULL;

    make_file(path, MiB, 0);
    bs = open_ok(path, a);
    g_assert_cmpint(bdrv_getlength(bs), ==, MiB);
    memset(buf, 0x5a, 64 * KiB);
    g_assert_cmpint(bdrv_pwrite(bs, 128 * KiB, 64 * KiB, buf, 0), ==, 0);
    g_assert_cmpint(bdrv_flush(bs), ==, 0);
    memset(buf, 0, 64 * KiB);
    g_assert_cmpint(bdrv_pread(bs, 128 * KiB, 64 * KiB, buf, 0), ==, 0);
    assert_filled(buf, 64 * KiB, 0x5a);
    g_assert_cmpint(bdrv_pread(bs, 0, 64 * KiB, buf, 0), ==, 0);
    assert_filled(buf, 64 * KiB, 0);
    host = read_host(path, 128 * KiB, 64 * KiB);
    assert_filled(host, 64 * KiB, 0x5a);
    bdrv_unref(bs);
}

static void test_rw_threads(void)
{
    g_autofree char *path = new_path("rw-threads.raw");
    OpenArgs a = { 0 };

    check_write_read(path, &a);
}

/* Waits until every pool worker has exited, then keeps new ones alive
 * for long enough that the test can count them. */
static void drain_pool_workers(void)
{
    thread_pool_set_idle_timeout_ms(1);
    while (thread_pool_num_workers() > 0) {
        g_usleep(1000);
    }
    thread_pool_set_idle_timeout_ms(600 * 1000);
}

/*
 * Writes len bytes of c at offset and reads them back; returns whether a
 * pool worker was started for it (the pool was drained before).
 */
static bool rw_used_pool(BlockDriverState *bs, int64_t offset, int64_t len,
                         int c)
{
    g_autofree uint8_t *buf = g_malloc(len);

    drain_pool_workers();
    memset(buf, c, len);
    g_assert_cmpint(bdrv_pwrite(bs, offset, len, buf, 0), ==, 0);
    memset(buf, 0, len);
    g_assert_cmpint(bdrv_pread(bs, offset, len, buf, 0), ==, 0);
    assert_filled(buf, len, c);
    return thread_pool_num_workers() > 0;
}

/* On tmpfs, reads and writes up to 64 KiB run inline (no worker) and
 * larger ones in the pool; on a disk file system every one uses it. */
static void test_rw_tmpfs_inline(void)
{
    g_autofree char *shm = g_strdup("/dev/shm/blockd-test-file-XXXXXX");
    g_autofree char *disk = new_path("rw-not-tmpfs.raw");
    g_autofree uint8_t *host = NULL;
    BlockDriverState *bs;
    OpenArgs a = { 0 };
    struct statfs sf;
    int fd;

    if (statfs("/dev/shm", &sf) < 0 || sf.f_type != TMPFS_MAGIC) {
        g_test_skip("/dev/shm is not tmpfs");
        return;
    }
    fd = g_mkstemp(shm);
    g_assert_cmpint(fd, >=, 0);
    close(fd);
    make_file(shm, MiB, 0);
    bs = open_ok(shm, &a);
    g_assert_false(rw_used_pool(bs, 4 * KiB, 4 * KiB, 0x11));
    g_assert_false(rw_used_pool(bs, 512 * KiB, 64 * KiB, 0x22));
    g_assert_true(rw_used_pool(bs, 256 * KiB, 64 * KiB + 512, 0x33));
    bdrv_unref(bs);
    host = read_host(shm, 512 * KiB, 64 * KiB);
    assert_filled(host, 64 * KiB, 0x22);
    g_assert_cmpint(g_unlink(shm), ==, 0);

    make_file(disk, MiB, 0);
    bs = open_ok(disk, &a);
    g_assert_true(rw_used_pool(bs, 4 * KiB, 4 * KiB, 0x44));
    bdrv_unref(bs);
    thread_pool_set_idle_timeout_ms(10 * 1000);
}

/* Attaches a loop device to path (root only); NULL if that fails.  The
 * caller detaches it with losetup -d and frees the name. */
static char *loop_attach(const char *path)
{
    g_autofree char *losetup = g_find_program_in_path("losetup");
    const char *argv[] = { "losetup", "-f", "--show", path, NULL };
    char *out = NULL;
    int status;

    if (geteuid() != 0 || !losetup) {
        return NULL;
    }
    argv[0] = losetup;
    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_STDERR_TO_DEV_NULL,
                      NULL, NULL, &out, NULL, &status, NULL) ||
        !g_spawn_check_wait_status(status, NULL)) {
        g_free(out);
        return NULL;
    }
    return g_strstrip(out);
}

/*
 * A block device whose node lives on tmpfs (devtmpfs or a container's
 * /dev) is not a tmpfs file: its small reads and writes wait for the
 * device, so they must still go to the pool.
 */
static void test_rw_blockdev_not_inline(void)
{
    g_autofree char *img = new_path("loop-backing.raw");
    g_autofree char *dev = NULL;
    BlockDriverState *bs;
    OpenArgs a = { 0 };
    const char *argv[] = { "losetup", "-d", NULL, NULL };
    bool used;

    make_file(img, MiB, 0);
    dev = loop_attach(img);
    if (!dev) {
        g_test_skip("cannot attach a loop device (needs root and losetup)");
        return;
    }
    bs = open_ok(dev, &a);
    used = rw_used_pool(bs, 4 * KiB, 4 * KiB, 0x55);
    bdrv_unref(bs);
    thread_pool_set_idle_timeout_ms(10 * 1000);
    /* Detached before the verdict so that a failure leaves no device. */
    argv[2] = dev;
    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH,
                               NULL, NULL, NULL, NULL, NULL, NULL));
    g_assert_true(used);
}

static void test_rw_direct_threads(void)
{
    g_autofree char *path = new_path("rw-direct.raw");
    OpenArgs a = { .direct = true };

    check_write_read(path, &a);
}

static void test_rw_native(void)
{
    g_autofree char *path = new_path("rw-native.raw");
    OpenArgs a = { .direct = true, .native = true };
    LinuxAioState *laio;
    uint64_t submits, before, after;

    laio = aio_get_linux_aio(aio_main_context(), NULL);
    if (!laio) {
        g_test_skip("linux-aio unavailable");
        return;
    }
    laio_get_stats(laio, &submits, &before);
    check_write_read(path, &a);
    laio_get_stats(laio, &submits, &after);
    /* The pattern write and the two reads went through linux-aio. */
    g_assert_cmpuint(after - before, >=, 3);
}

static void test_native_requires_direct(void)
{
    g_autofree char *path = new_path("native-nodirect.raw");
    OpenArgs a = { .native = true };

    make_file(path, MiB, 0);
    open_fails(path, &a, "aio=native was specified, but it requires "
               "cache.direct=on, which was not specified.");
}

/*
 * O_DIRECT: the driver reports an alignment > 1 and unaligned requests
 * (padded by the core, bounced by the driver when the buffer is
 * unaligned) read back exactly what was written around them.
 */
static void check_direct_unaligned(bool native)
{
    g_autofree char *path = new_path(native ? "unal-native.raw"
                                            : "unal-threads.raw");
    OpenArgs a = { .direct = true, .native = native };
    BlockDriverState *bs;
    g_autofree uint8_t *buf = g_malloc(8 * KiB + 1);
    g_autofree uint8_t *host = NULL;

    make_file(path, MiB, 0x11);
    bs = open_ok(path, &a);
    g_assert_cmpuint(bdrv_get_request_alignment(bs), >=, 512);
    g_assert_cmpuint(bdrv_get_mem_alignment(bs), >=, 512);
    /* Unaligned offset, length and (buf + 1) buffer. */
    memset(buf + 1, 0xee, 1000);
    g_assert_cmpint(bdrv_pwrite(bs, 5000, 1000, buf + 1, 0), ==, 0);
    g_assert_cmpint(bdrv_pread(bs, 3333, 4 * KiB, buf + 1, 0), ==, 0);
    assert_filled(buf + 1, 5000 - 3333, 0x11);
    assert_filled(buf + 1 + 5000 - 3333, 1000, 0xee);
    assert_filled(buf + 1 + 6000 - 3333, 3333 + 4 * KiB - 6000, 0x11);
    bdrv_unref(bs);
    host = read_host(path, 4 * KiB, 4 * KiB);
    assert_filled(host, 5000 - 4 * KiB, 0x11);
    assert_filled(host + 5000 - 4 * KiB, 1000, 0xee);
    assert_filled(host + 6000 - 4 * KiB, 8 * KiB - 6000, 0x11);
}

static void test_direct_unaligned_threads(void)
{
    check_direct_unaligned(false);
}

static void test_direct_unaligned_native(void)
{
    if (!aio_get_linux_aio(aio_main_context(), NULL)) {
        g_test_skip("linux-aio unavailable");
        return;
    }
    check_direct_unaligned(true);
}

/* A file whose size is not a multiple of the O_DIRECT alignment: its last
 * partial block reads and writes without growing the file. */
static void test_direct_unaligned_size(void)
{
    g_autofree char *path = new_path("odd-size.raw");
    OpenArgs a = { .direct = true };
    BlockDriverState *bs;
    uint8_t buf[100];
    g_autofree uint8_t *host = NULL;

    make_file(path, 64 * KiB + 100, 0x22);
    bs = open_ok(path, &a);
    g_assert_cmpint(bdrv_getlength(bs), ==, 64 * KiB + 100);
    memset(buf, 0x33, sizeof(buf));
    g_assert_cmpint(bdrv_pwrite(bs, 64 * KiB + 50, 50, buf, 0), ==, 0);
    memset(buf, 0, sizeof(buf));
    g_assert_cmpint(bdrv_pread(bs, 64 * KiB, 100, buf, 0), ==, 0);
    assert_filled(buf, 50, 0x22);
    assert_filled(buf + 50, 50, 0x33);
    bdrv_unref(bs);
    g_assert_cmpint(file_size(path), ==, 64 * KiB + 100);
    host = read_host(path, 64 * KiB, 100);
    assert_filled(host, 50, 0x22);
    assert_filled(host + 50, 50, 0x33);
}

/* A vector longer than IOV_MAX (non-contiguous 512-byte pieces) is
 * written and read in several system calls (linux-aio cannot take it). */
static void check_long_vector(const OpenArgs *a, const char *name)
{
    g_autofree char *path = new_path(name);
    const int n = IOV_MAX + 100;
    BlockDriverState *bs;
    uint8_t *buf;
    g_autofree uint8_t *host = NULL;
    QIOVector qiov;

    make_file(path, 2 * MiB, 0);
    bs = open_ok(path, a);
    buf = bdrv_blockalign(bs, 2 * 512 * n);
    qiov_init(&qiov, n);
    for (int i = 0; i < n; i++) {
        memset(buf + 1024 * i, i & 0xff, 512);
        qiov_add(&qiov, buf + 1024 * i, 512);
    }
    g_assert_cmpint(qiov.niov, ==, n);
    g_assert_cmpint(bdrv_pwritev(bs, 0, &qiov, 0), ==, 0);
    host = read_host(path, 0, 512 * n);
    for (int i = 0; i < n; i++) {
        assert_filled(host + 512 * i, 512, i & 0xff);
    }
    memset(buf, 0, 2 * 512 * n);
    g_assert_cmpint(bdrv_preadv(bs, 0, &qiov, 0), ==, 0);
    for (int i = 0; i < n; i++) {
        assert_filled(buf + 1024 * i, 512, i & 0xff);
    }
    qiov_destroy(&qiov);
    bdrv_vfree(buf);
    bdrv_unref(bs);
}

static void test_long_vector_threads(void)
{
    OpenArgs a = { 0 };

    check_long_vector(&a, "iov-threads.raw");
}

static void test_long_vector_native(void)
{
    OpenArgs a = { .direct = true, .native = true };

    check_long_vector(&a, "iov-native.raw");
}

static void test_read_only_refuses_writes(void)
{
    g_autofree char *path = new_path("ro.raw");
    OpenArgs a = { .read_only = true };
    BlockDriverState *bs;
    uint8_t buf[512] = { 0 };

    make_file(path, MiB, 0x44);
    g_assert_cmpint(chmod(path, 0444), ==, 0);
    bs = open_ok(path, &a);
    g_assert_cmpint(bdrv_pwrite(bs, 0, sizeof(buf), buf, 0), ==, -EPERM);
    g_assert_cmpint(bdrv_pread(bs, 0, sizeof(buf), buf, 0), ==, 0);
    assert_filled(buf, sizeof(buf), 0x44);
    bdrv_unref(bs);
}

static void test_open_missing(void)
{
    g_autofree char *path = new_path("does-not-exist.raw");
    g_autofree char *want = g_strdup_printf("Could not open '%s': %s", path,
                                            g_strerror(ENOENT));
    OpenArgs a = { 0 };

    open_fails(path, &a, want);
}

static void test_open_directory(void)
{
    OpenArgs a = { .read_only = true };

    open_fails(test_dir, &a, "is not a regular file or block device");
}

static void test_actual_size(void)
{
    g_autofree char *path = new_path("actual.raw");
    OpenArgs a = { 0 };
    BlockDriverState *bs;

    make_file(path, 4 * MiB, 0);
    bs = open_ok(path, &a);
    g_assert_cmpint(bdrv_get_allocated_file_size(bs), ==, 0);
    bdrv_unref(bs);
    make_file(path, 4 * MiB, 0x55);
    bs = open_ok(path, &a);
    g_assert_cmpint(bdrv_get_allocated_file_size(bs), ==,
                    allocated_bytes(path));
    g_assert_cmpint(bdrv_get_allocated_file_size(bs), >=, 4 * MiB);
    bdrv_unref(bs);
}

/* ---- Block status, zeroes, discard ---- */

/* Status bits of the first run at offset, with *pnum its length. */
static int status_at(BlockDriverState *bs, bool want_zero, int64_t offset,
                     int64_t bytes, int64_t *pnum, int64_t *map)
{
    BlockDriverState *file = NULL;
    int ret = bdrv_block_status(bs, want_zero, offset, bytes, pnum, map,
                                &file);

    g_assert_cmpint(ret, >=, 0);
    if (ret & BDRV_BLOCK_OFFSET_VALID) {
        g_assert_true(file == bs);
    }
    return ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO |
                  BDRV_BLOCK_OFFSET_VALID);
}

static void test_block_status_holes(void)
{
    g_autofree char *path = new_path("sparse.raw");
    OpenArgs a = { 0 };
    BlockDriverState *bs;
    g_autofree uint8_t *data = g_malloc(64 * KiB);
    int64_t pnum, map;
    int fd;

    make_file(path, MiB, 0);
    fd = open(path, O_RDWR);
    memset(data, 0x66, 64 * KiB);
    g_assert_cmpint(pwrite(fd, data, 64 * KiB, 256 * KiB), ==, 64 * KiB);
    close(fd);
    bs = open_ok(path, &a);

    g_assert_cmpint(status_at(bs, true, 0, MiB, &pnum, &map), ==,
                    BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(pnum, ==, 256 * KiB);
    g_assert_cmpint(status_at(bs, true, 256 * KiB, 768 * KiB, &pnum, &map),
                    ==, BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(pnum, ==, 64 * KiB);
    g_assert_cmpint(map, ==, 256 * KiB);
    /* Starting inside the data run. */
    g_assert_cmpint(status_at(bs, true, 260 * KiB, 10 * KiB, &pnum, &map),
                    ==, BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(pnum, ==, 10 * KiB);
    /* The trailing hole runs to EOF. */
    g_assert_cmpint(status_at(bs, true, 320 * KiB, 704 * KiB, &pnum, &map),
                    ==, BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(pnum, ==, 704 * KiB);
    /* Allocation mode does not probe: all data. */
    g_assert_cmpint(status_at(bs, false, 0, MiB, &pnum, &map), ==,
                    BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(pnum, ==, MiB);
    bdrv_unref(bs);
}

static void check_write_zeroes(bool unmap)
{
    g_autofree char *path = new_path(unmap ? "wz-unmap.raw" : "wz.raw");
    OpenArgs a = { .discard_unmap = true };
    BlockDriverState *bs;
    g_autofree uint8_t *buf = g_malloc(MiB);
    int64_t before, pnum, map;

    make_file(path, MiB, 0x77);
    before = allocated_bytes(path);
    bs = open_ok(path, &a);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 256 * KiB, 256 * KiB,
                                       unmap ? BDRV_REQ_MAY_UNMAP : 0), ==, 0);
    g_assert_cmpint(bdrv_pread(bs, 0, MiB, buf, 0), ==, 0);
    assert_filled(buf, 256 * KiB, 0x77);
    assert_filled(buf + 256 * KiB, 256 * KiB, 0);
    assert_filled(buf + 512 * KiB, 512 * KiB, 0x77);
    if (unmap) {
        g_assert_cmpint(allocated_bytes(path), <=, before - 256 * KiB);
        g_assert_cmpint(status_at(bs, true, 256 * KiB, 256 * KiB, &pnum,
                                  &map), ==,
                        BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID);
    } else {
        g_assert_cmpint(allocated_bytes(path), ==, before);
    }
    bdrv_unref(bs);
}

static void test_write_zeroes(void)
{
    check_write_zeroes(false);
}

static void test_write_zeroes_unmap(void)
{
    check_write_zeroes(true);
}

/* Write-zeroes on an O_DIRECT node at an unaligned range. */
static void test_write_zeroes_direct_unaligned(void)
{
    g_autofree char *path = new_path("wz-direct.raw");
    OpenArgs a = { .direct = true };
    BlockDriverState *bs;
    g_autofree uint8_t *host = NULL;

    make_file(path, MiB, 0x78);
    bs = open_ok(path, &a);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 1000, 10000, 0), ==, 0);
    bdrv_unref(bs);
    host = read_host(path, 0, 12000);
    assert_filled(host, 1000, 0x78);
    assert_filled(host + 1000, 10000, 0);
    assert_filled(host + 11000, 1000, 0x78);
}

static void test_discard_punches_hole(void)
{
    g_autofree char *path = new_path("discard.raw");
    OpenArgs a = { .discard_unmap = true };
    BlockDriverState *bs;
    g_autofree uint8_t *buf = g_malloc(128 * KiB);
    int64_t before, pnum, map;

    make_file(path, MiB, 0x88);
    before = allocated_bytes(path);
    bs = open_ok(path, &a);
    g_assert_cmpint(bdrv_pdiscard(bs, 128 * KiB, 128 * KiB), ==, 0);
    g_assert_cmpint(allocated_bytes(path), <=, before - 128 * KiB);
    g_assert_cmpint(status_at(bs, true, 128 * KiB, 128 * KiB, &pnum, &map),
                    ==, BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(pnum, ==, 128 * KiB);
    g_assert_cmpint(bdrv_pread(bs, 128 * KiB, 128 * KiB, buf, 0), ==, 0);
    assert_filled(buf, 128 * KiB, 0);
    g_assert_cmpint(bdrv_getlength(bs), ==, MiB);
    bdrv_unref(bs);
}

/*
 * The driver remembers the last data extent it found; punching a hole
 * inside it (discard, write-zeroes with unmap) must make the next status
 * query see the hole rather than the remembered data.
 */
static void test_block_status_after_punch(void)
{
    g_autofree char *path = new_path("punch.raw");
    OpenArgs a = { .discard_unmap = true };
    BlockDriverState *bs;
    int64_t pnum, map;

    make_file(path, MiB, 0x42);
    bs = open_ok(path, &a);
    g_assert_cmpint(status_at(bs, true, 0, 64 * KiB, &pnum, &map), ==,
                    BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(bdrv_pdiscard(bs, 256 * KiB, 128 * KiB), ==, 0);
    g_assert_cmpint(status_at(bs, true, 256 * KiB, 128 * KiB, &pnum, &map),
                    ==, BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(pnum, ==, 128 * KiB);
    /* The data before the hole is found again, up to the hole. */
    g_assert_cmpint(status_at(bs, true, 0, MiB, &pnum, &map), ==,
                    BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(pnum, ==, 256 * KiB);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 640 * KiB, 64 * KiB,
                                       BDRV_REQ_MAY_UNMAP), ==, 0);
    g_assert_cmpint(status_at(bs, true, 640 * KiB, 64 * KiB, &pnum, &map),
                    ==, BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID);
    bdrv_unref(bs);
}

/* ---- Truncate, create ---- */

static void test_truncate(void)
{
    g_autofree char *path = new_path("truncate.raw");
    OpenArgs a = { 0 };
    BlockDriverState *bs;
    Error *err = NULL;
    uint8_t buf[4096];

    make_file(path, MiB, 0x99);
    bs = open_ok(path, &a);
    g_assert_cmpint(bdrv_truncate(bs, 3 * MiB, true, PREALLOC_MODE_OFF,
                                  &error_abort), ==, 0);
    g_assert_cmpint(bdrv_getlength(bs), ==, 3 * MiB);
    g_assert_cmpint(file_size(path), ==, 3 * MiB);
    g_assert_cmpint(bdrv_pread(bs, 2 * MiB, sizeof(buf), buf, 0), ==, 0);
    assert_filled(buf, sizeof(buf), 0);
    g_assert_cmpint(bdrv_truncate(bs, 512 * KiB, true, PREALLOC_MODE_OFF,
                                  &error_abort), ==, 0);
    g_assert_cmpint(bdrv_getlength(bs), ==, 512 * KiB);
    g_assert_cmpint(file_size(path), ==, 512 * KiB);
    g_assert_cmpint(bdrv_truncate(bs, MiB, true, PREALLOC_MODE_FULL, &err),
                    <, 0);
    g_assert_nonnull(strstr(error_get_pretty(err), "preallocation"));
    error_free(err);
    g_assert_cmpint(file_size(path), ==, 512 * KiB);
    bdrv_unref(bs);
}

static int create_file(const char *path, int64_t size, PreallocMode prealloc,
                       Error **errp)
{
    const BlockDriver *drv = bdrv_find_driver("file");

    g_assert_nonnull(drv);
    g_assert_nonnull(drv->create);
    return drv->create(path, size, prealloc, errp);
}

static void test_create(void)
{
    g_autofree char *path = new_path("create.raw");

    g_assert_cmpint(create_file(path, 3 * MiB, PREALLOC_MODE_OFF,
                                &error_abort), ==, 0);
    g_assert_cmpint(file_size(path), ==, 3 * MiB);
    g_assert_cmpint(allocated_bytes(path), ==, 0);
    /* Over an existing image: emptied, then sized. */
    make_file(path, MiB, 0xaa);
    g_assert_cmpint(create_file(path, 2 * MiB, PREALLOC_MODE_OFF,
                                &error_abort), ==, 0);
    g_assert_cmpint(file_size(path), ==, 2 * MiB);
    g_assert_cmpint(allocated_bytes(path), ==, 0);
}

static void test_create_prealloc(void)
{
    g_autofree char *falloc = new_path("create-falloc.raw");
    g_autofree char *full = new_path("create-full.raw");
    g_autofree uint8_t *host = NULL;

    g_assert_cmpint(create_file(falloc, 2 * MiB, PREALLOC_MODE_FALLOC,
                                &error_abort), ==, 0);
    g_assert_cmpint(file_size(falloc), ==, 2 * MiB);
    g_assert_cmpint(allocated_bytes(falloc), >=, 2 * MiB);
    g_assert_cmpint(create_file(full, 2 * MiB, PREALLOC_MODE_FULL,
                                &error_abort), ==, 0);
    g_assert_cmpint(allocated_bytes(full), >=, 2 * MiB);
    host = read_host(full, 0, 2 * MiB);
    assert_filled(host, 2 * MiB, 0);
}

/* ---- Locking ---- */

static void test_lock_second_writer_refused(void)
{
    g_autofree char *path = new_path("lock-rw.raw");
    OpenArgs a = { .has_locking = true, .locking = ON_OFF_AUTO_ON };
    BlockDriverState *bs;

    make_file(path, MiB, 0);
    bs = open_ok(path, &a);
    open_fails(path, &a, "Failed to get \"write\" lock");
    bdrv_unref(bs);
    /* Closing released the locks. */
    bs = open_ok(path, &a);
    bdrv_unref(bs);
}

static void test_lock_reader_vs_writer(void)
{
    g_autofree char *path = new_path("lock-ro.raw");
    OpenArgs rw = { 0 };
    OpenArgs ro = { .read_only = true };
    OpenArgs shared = { .read_only = true, .force_share = true };
    BlockDriverState *bs, *reader;

    make_file(path, MiB, 0);
    bs = open_ok(path, &rw);
    /* A reader does not tolerate a writer unless force-share. */
    open_fails(path, &ro, "Failed to get shared \"write\" lock");
    reader = open_ok(path, &shared);
    bdrv_unref(reader);
    bdrv_unref(bs);
    /* Two readers share the image; a writer is then refused. */
    bs = open_ok(path, &ro);
    reader = open_ok(path, &ro);
    open_fails(path, &rw, "Failed to get \"write\" lock");
    bdrv_unref(reader);
    bdrv_unref(bs);
}

static void test_locking_off(void)
{
    g_autofree char *path = new_path("lock-off.raw");
    OpenArgs on = { 0 };
    OpenArgs off = { .has_locking = true, .locking = ON_OFF_AUTO_OFF };
    BlockDriverState *a, *b;

    make_file(path, MiB, 0);
    a = open_ok(path, &off);
    b = open_ok(path, &off);
    bdrv_unref(b);
    /* Nor does an unlocked writer stop a locked one. */
    b = open_ok(path, &on);
    bdrv_unref(b);
    bdrv_unref(a);
}

static void test_create_refused_while_in_use(void)
{
    g_autofree char *path = new_path("lock-create.raw");
    OpenArgs rw = { 0 };
    BlockDriverState *bs;
    Error *err = NULL;

    make_file(path, MiB, 0xbb);
    bs = open_ok(path, &rw);
    g_assert_cmpint(create_file(path, 2 * MiB, PREALLOC_MODE_OFF, &err),
                    <, 0);
    g_assert_nonnull(strstr(error_get_pretty(err), "lock"));
    error_free(err);
    bdrv_unref(bs);
    g_assert_cmpint(file_size(path), ==, MiB);
    g_assert_cmpint(allocated_bytes(path), >=, MiB);
}

/* 1 if another open file description holds a lock on byte, else 0. */
static int byte_locked(int fd, int64_t byte)
{
    struct flock fl = {
        .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte,
        .l_len = 1,
    };

    g_assert_cmpint(fcntl(fd, F_OFD_GETLK, &fl), ==, 0);
    return fl.l_type != F_UNLCK;
}

/* The bytes a node locks are QEMU's: 100 + bit for a permission held,
 * 200 + bit for one not shared (docs/locking.md). */
static void check_lock_bytes(const OpenArgs *a, const char *want)
{
    g_autofree char *path = new_path("lock-bytes.raw");
    BlockDriverState *bs;
    int fd;

    make_file(path, MiB, 0);
    bs = open_ok(path, a);
    fd = open(path, O_RDONLY);
    g_assert_cmpint(fd, >=, 0);
    for (int i = 0; i < 4; i++) {
        g_assert_cmpint(byte_locked(fd, 100 + i), ==, want[i] == '1');
        g_assert_cmpint(byte_locked(fd, 200 + i), ==, want[5 + i] == '1');
    }
    bdrv_unref(bs);
    for (int i = 0; i < 4; i++) {
        g_assert_cmpint(byte_locked(fd, 100 + i), ==, 0);
        g_assert_cmpint(byte_locked(fd, 200 + i), ==, 0);
    }
    close(fd);
}

static void test_lock_bytes_rw(void)
{
    OpenArgs a = { 0 };

    /* Holds consistent read + write; does not share write, resize. */
    check_lock_bytes(&a, "1100 0101");
}

static void test_lock_bytes_ro(void)
{
    OpenArgs a = { .read_only = true };

    check_lock_bytes(&a, "1000 0101");
}

static void test_lock_bytes_force_share(void)
{
    OpenArgs a = { .read_only = true, .force_share = true };

    check_lock_bytes(&a, "1000 0000");
}

/* A process that does not share resize (byte 203, as a QEMU VM holds it)
 * makes truncate fail and leaves the node usable. */
static void test_truncate_refused_by_lock(void)
{
    g_autofree char *path = new_path("lock-resize.raw");
    OpenArgs a = { 0 };
    BlockDriverState *bs;
    Error *err = NULL;
    struct flock fl = {
        .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 203, .l_len = 1,
    };
    int fd;

    make_file(path, MiB, 0);
    bs = open_ok(path, &a);
    fd = open(path, O_RDONLY);
    g_assert_cmpint(fcntl(fd, F_OFD_SETLK, &fl), ==, 0);
    g_assert_cmpint(bdrv_truncate(bs, 2 * MiB, true, PREALLOC_MODE_OFF, &err),
                    <, 0);
    g_assert_cmpstr(error_get_pretty(err), ==, "Failed to get \"resize\" lock");
    error_free(err);
    g_assert_cmpint(file_size(path), ==, MiB);
    close(fd);
    g_assert_cmpint(bdrv_truncate(bs, 2 * MiB, true, PREALLOC_MODE_OFF,
                                  &error_abort), ==, 0);
    g_assert_cmpint(file_size(path), ==, 2 * MiB);
    bdrv_unref(bs);
}

/* ---- Interoperation with QEMU's lock bytes (qemu-io) ---- */

static char *find_qemu_io(void)
{
    char *qemu_io = g_find_program_in_path("qemu-io");

    if (!qemu_io) {
        g_test_skip("qemu-io not installed");
    }
    return qemu_io;
}

/* qemu-io cannot write an image we hold read-write; it can read it. */
static void test_qemu_io_refused(void)
{
    g_autofree char *qemu_io = find_qemu_io();
    g_autofree char *path = new_path("interop-1.raw");
    g_autofree char *out = NULL;
    g_autofree char *errout = NULL;
    OpenArgs rw = { 0 };
    BlockDriverState *bs;
    int status;

    if (!qemu_io) {
        return;
    }
    make_file(path, MiB, 0);
    bs = open_ok(path, &rw);
    {
        char *argv[] = { qemu_io, "-f", "raw", "-c", "write 0 4k", path,
                         NULL };
        g_assert_true(g_spawn_sync(NULL, argv, NULL, 0, NULL, NULL, &out,
                                   &errout, &status, NULL));
    }
    g_assert_false(g_spawn_check_wait_status(status, NULL));
    if (!strstr(errout, "Failed to get \"write\" lock")) {
        g_error("unexpected qemu-io output: %s%s", out, errout);
    }
    /* A reader that shares everything (qemu-io -r) is not refused. */
    {
        char *argv[] = { qemu_io, "-r", "-f", "raw", "-c", "read 0 4k", path,
                         NULL };
        g_assert_true(g_spawn_sync(NULL, argv, NULL,
                                   G_SPAWN_STDOUT_TO_DEV_NULL |
                                   G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL,
                                   NULL, NULL, &status, NULL));
    }
    g_assert_true(g_spawn_check_wait_status(status, NULL));
    bdrv_unref(bs);
}

/* True once another open file description holds a lock on byte. */
static bool wait_byte_locked(const char *path, int64_t byte)
{
    int fd = open(path, O_RDONLY);
    bool locked = false;

    g_assert_cmpint(fd, >=, 0);
    for (int i = 0; i < 1000 && !locked; i++) {
        locked = byte_locked(fd, byte);
        if (!locked) {
            g_usleep(10 * 1000);
        }
    }
    close(fd);
    return locked;
}

/* We cannot open read-write an image qemu-io holds read-write. */
static void test_qemu_io_holds_image(void)
{
    g_autofree char *qemu_io = find_qemu_io();
    g_autofree char *path = new_path("interop-2.raw");
    OpenArgs rw = { 0 };
    GPid pid;
    int status;

    if (!qemu_io) {
        return;
    }
    make_file(path, MiB, 0);
    {
        char *argv[] = { qemu_io, "-f", "raw", "-c", "sleep 20000", path,
                         NULL };
        g_assert_true(g_spawn_async(NULL, argv, NULL,
                                    G_SPAWN_DO_NOT_REAP_CHILD |
                                    G_SPAWN_STDOUT_TO_DEV_NULL,
                                    NULL, NULL, &pid, NULL));
    }
    /* Byte 101: QEMU's "write" permission. */
    g_assert_true(wait_byte_locked(path, 101));
    open_fails(path, &rw, "Failed to get shared \"write\" lock");
    kill(pid, SIGTERM);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_spawn_close_pid(pid);
}

/* ---- Setup ---- */

/* ---- Copy offload (bdrv_co_copy_range / blk_co_copy_range) ---- */

static BlockAcctStats stats_of(BlockDriverState *bs)
{
    BlockAcctStats s;

    block_acct_snapshot(bdrv_get_stats(bs), &s);
    return s;
}

/* One copy-range call run in a coroutine: through the nodes' edges
 * (src_child/dst_child) or the backends (src_blk/dst_blk). */
typedef struct CopyCall {
    BdrvChild *src_child, *dst_child;
    BlockBackend *src_blk, *dst_blk;
    int64_t src_offset, dst_offset, bytes;
    BdrvRequestFlags write_flags;
    int ret;
    bool done;
} CopyCall;

static void coroutine_fn copy_entry(void *opaque)
{
    CopyCall *c = opaque;

    if (c->src_blk) {
        c->ret = blk_co_copy_range(c->src_blk, c->src_offset, c->dst_blk,
                                   c->dst_offset, c->bytes, 0,
                                   c->write_flags);
    } else {
        c->ret = bdrv_co_copy_range(c->src_child, c->src_offset,
                                    c->dst_child, c->dst_offset, c->bytes, 0,
                                    c->write_flags);
    }
    c->done = true;
}

static int run_copy(CopyCall *c)
{
    coroutine_enter(coroutine_create(copy_entry, c));
    AIO_WAIT_WHILE(aio_main_context(), !c->done);
    return c->ret;
}

/* A raw node over a raw node (window at window_offset) over the file:
 * the outer node's file edge is a BdrvChild to copy through. */
static BlockDriverState *open_raw_raw(const char *path, int64_t window_offset,
                                      bool read_only, bool direct)
{
    g_autofree char *json = g_strdup_printf(
        "{'driver': 'raw', 'read-only': %s, 'file': {'driver': 'raw', "
        "'offset': %" G_GINT64_FORMAT ", 'file': {'driver': 'file', "
        "'filename': '%s', 'cache': {'direct': %s}}}}",
        read_only ? "true" : "false", window_offset, path,
        direct ? "true" : "false");

    return test_open_json(json, &error_abort);
}

static BlockBackend *blk_on(BlockDriverState *bs)
{
    BlockBackend *blk = blk_new(NULL, &error_abort);

    g_assert_true(blk_insert_bs(blk, bs, &error_abort));
    return blk;
}

/* file -> file between two backends: the data arrives, and both the
 * backends and the nodes account a read on the source and a write (with
 * wr_highest_offset) on the destination. */
static void test_copy_range_file_to_file(void)
{
    g_autofree char *src_path = new_path("cr-src.raw");
    g_autofree char *dst_path = new_path("cr-dst.raw");
    g_autofree uint8_t *host = NULL;
    BlockDriverState *src, *dst;
    BlockBackend *sblk, *dblk;
    OpenArgs a = { 0 };
    CopyCall c;

    make_file(src_path, 1 * MiB, 0x5a);
    make_file(dst_path, 1 * MiB, 0);
    src = open_ok(src_path, &a);
    dst = open_ok(dst_path, &a);
    sblk = blk_on(src);
    dblk = blk_on(dst);
    c = (CopyCall) { .src_blk = sblk, .dst_blk = dblk, .src_offset = 0,
                     .dst_offset = 256 * KiB, .bytes = 512 * KiB };
    g_assert_cmpint(run_copy(&c), ==, 0);
    host = read_host(dst_path, 0, 1 * MiB);
    assert_filled(host, 256 * KiB, 0);
    assert_filled(host + 256 * KiB, 512 * KiB, 0x5a);
    assert_filled(host + 768 * KiB, 256 * KiB, 0);
    g_assert_cmpuint(stats_of(src).nr_ops[BLOCK_ACCT_READ], ==, 1);
    g_assert_cmpuint(stats_of(src).nr_bytes[BLOCK_ACCT_READ], ==, 512 * KiB);
    g_assert_cmpuint(stats_of(src).nr_ops[BLOCK_ACCT_WRITE], ==, 0);
    g_assert_cmpuint(stats_of(dst).nr_ops[BLOCK_ACCT_WRITE], ==, 1);
    g_assert_cmpuint(stats_of(dst).nr_bytes[BLOCK_ACCT_WRITE], ==,
                     512 * KiB);
    g_assert_cmpuint(stats_of(dst).nr_ops[BLOCK_ACCT_READ], ==, 0);
    g_assert_cmpuint(stats_of(dst).wr_highest_offset, ==, 768 * KiB);
    g_assert_cmpuint(stats_of(dst).in_flight[BLOCK_ACCT_WRITE], ==, 0);
    g_assert_cmpuint(blk_get_stats(dblk)->nr_ops[BLOCK_ACCT_WRITE], ==, 1);
    g_assert_cmpuint(blk_get_stats(dblk)->wr_highest_offset, ==, 768 * KiB);
    g_assert_cmpuint(blk_get_stats(sblk)->nr_bytes[BLOCK_ACCT_READ], ==,
                     512 * KiB);
    blk_unref(sblk);
    blk_unref(dblk);
    bdrv_unref(src);
    bdrv_unref(dst);
}

/* raw over raw (with a window) over file, through BdrvChild edges: each
 * raw layer shifts the offsets and passes the copy down; every node on
 * both paths accounts it once. */
static void test_copy_range_raw_over_file(void)
{
    g_autofree char *src_path = new_path("cr-rsrc.raw");
    g_autofree char *dst_path = new_path("cr-rdst.raw");
    g_autofree uint8_t *host = NULL;
    BlockDriverState *src = NULL, *dst = NULL;
    CopyCall c;

    make_file(src_path, 1 * MiB, 0);
    {
        int fd = open(src_path, O_WRONLY);
        g_autofree uint8_t *buf = g_malloc(64 * KiB);

        memset(buf, 0x77, 64 * KiB);
        g_assert_cmpint(pwrite(fd, buf, 64 * KiB, 4 * KiB + 128 * KiB), ==,
                        64 * KiB);
        close(fd);
    }
    make_file(dst_path, 1 * MiB, 0x11);
    src = open_raw_raw(src_path, 4 * KiB, true, false);
    dst = open_raw_raw(dst_path, 8 * KiB, false, false);
    c = (CopyCall) { .src_child = src->file, .dst_child = dst->file,
                     .src_offset = 128 * KiB, .dst_offset = 0,
                     .bytes = 64 * KiB };
    g_assert_cmpint(run_copy(&c), ==, 0);
    host = read_host(dst_path, 0, 80 * KiB);
    assert_filled(host, 8 * KiB, 0x11);
    assert_filled(host + 8 * KiB, 64 * KiB, 0x77);
    assert_filled(host + 72 * KiB, 8 * KiB, 0x11);
    /* The inner raw nodes and the files below them. */
    g_assert_cmpuint(stats_of(src->file->bs).nr_ops[BLOCK_ACCT_READ], ==, 1);
    g_assert_cmpuint(stats_of(src->file->bs->file->bs)
                     .nr_ops[BLOCK_ACCT_READ], ==, 1);
    g_assert_cmpuint(stats_of(dst->file->bs).wr_highest_offset, ==,
                     64 * KiB);
    g_assert_cmpuint(stats_of(dst->file->bs->file->bs).wr_highest_offset,
                     ==, 72 * KiB);
    /* The outer nodes were not part of the request. */
    g_assert_cmpuint(stats_of(dst).nr_ops[BLOCK_ACCT_WRITE], ==, 0);
    bdrv_unref(src);
    bdrv_unref(dst);
}

/* Unaligned ranges: fine on buffered files (alignment 1); with O_DIRECT
 * -ENOTSUP (the caller pads with read + write), with nothing accounted. */
static void test_copy_range_unaligned(void)
{
    g_autofree char *src_path = new_path("cr-usrc.raw");
    g_autofree char *dst_path = new_path("cr-udst.raw");
    g_autofree uint8_t *host = NULL;
    BlockDriverState *src, *dst;
    CopyCall c;

    make_file(src_path, 64 * KiB, 0x3c);
    make_file(dst_path, 64 * KiB, 0);
    src = open_raw_raw(src_path, 0, true, false);
    dst = open_raw_raw(dst_path, 0, false, false);
    c = (CopyCall) { .src_child = src->file, .dst_child = dst->file,
                     .src_offset = 3, .dst_offset = 1001, .bytes = 999 };
    g_assert_cmpint(run_copy(&c), ==, 0);
    host = read_host(dst_path, 0, 4 * KiB);
    assert_filled(host, 1001, 0);
    assert_filled(host + 1001, 999, 0x3c);
    assert_filled(host + 2000, 4 * KiB - 2000, 0);
    bdrv_unref(src);
    bdrv_unref(dst);

    src = open_raw_raw(src_path, 0, true, true);
    dst = open_raw_raw(dst_path, 0, false, true);
    g_assert_cmpuint(bdrv_get_request_alignment(dst), >, 1);
    c = (CopyCall) { .src_child = src->file, .dst_child = dst->file,
                     .src_offset = 0, .dst_offset = 512 * 3 + 1,
                     .bytes = 4 * KiB };
    g_assert_cmpint(run_copy(&c), ==, -ENOTSUP);
    c = (CopyCall) { .src_child = src->file, .dst_child = dst->file,
                     .src_offset = 1, .dst_offset = 0, .bytes = 4 * KiB };
    g_assert_cmpint(run_copy(&c), ==, -ENOTSUP);
    g_assert_cmpuint(stats_of(dst->file->bs).nr_ops[BLOCK_ACCT_WRITE], ==, 0);
    g_assert_cmpuint(stats_of(dst->file->bs).invalid_ops[BLOCK_ACCT_WRITE],
                     ==, 0);
    g_assert_cmpuint(stats_of(src->file->bs).nr_ops[BLOCK_ACCT_READ], ==, 0);
    /* Aligned, with O_DIRECT on both ends, it works. */
    c = (CopyCall) { .src_child = src->file, .dst_child = dst->file,
                     .src_offset = 4 * KiB, .dst_offset = 8 * KiB,
                     .bytes = 8 * KiB };
    g_assert_cmpint(run_copy(&c), ==, 0);
    g_free(host);
    host = read_host(dst_path, 8 * KiB, 8 * KiB);
    assert_filled(host, 8 * KiB, 0x3c);
    bdrv_unref(src);
    bdrv_unref(dst);
}

/* Past the end is -EIO, negative is -EINVAL, a read-only destination is
 * -EPERM: counted as invalid on the node that refused, nothing copied. */
static void test_copy_range_invalid(void)
{
    g_autofree char *src_path = new_path("cr-isrc.raw");
    g_autofree char *dst_path = new_path("cr-idst.raw");
    g_autofree uint8_t *host = NULL;
    BlockDriverState *src, *dst, *ro;
    CopyCall c;

    make_file(src_path, 64 * KiB, 0x21);
    make_file(dst_path, 64 * KiB, 0);
    src = open_raw_raw(src_path, 0, true, false);
    dst = open_raw_raw(dst_path, 0, false, false);
    c = (CopyCall) { .src_child = src->file, .dst_child = dst->file,
                     .src_offset = 60 * KiB, .bytes = 8 * KiB };
    g_assert_cmpint(run_copy(&c), ==, -EIO);
    g_assert_cmpuint(stats_of(src->file->bs).invalid_ops[BLOCK_ACCT_READ],
                     ==, 1);
    c = (CopyCall) { .src_child = src->file, .dst_child = dst->file,
                     .dst_offset = 60 * KiB, .bytes = 8 * KiB };
    g_assert_cmpint(run_copy(&c), ==, -EIO);
    g_assert_cmpuint(stats_of(dst->file->bs).invalid_ops[BLOCK_ACCT_WRITE],
                     ==, 1);
    c = (CopyCall) { .src_child = src->file, .dst_child = dst->file,
                     .src_offset = -4096, .bytes = 4 * KiB };
    g_assert_cmpint(run_copy(&c), ==, -EINVAL);
    /* The source is read-only: as a destination it refuses. */
    ro = src;
    c = (CopyCall) { .src_child = dst->file, .dst_child = ro->file,
                     .bytes = 4 * KiB };
    g_assert_cmpint(run_copy(&c), ==, -EPERM);
    g_assert_cmpuint(stats_of(ro->file->bs).invalid_ops[BLOCK_ACCT_WRITE],
                     ==, 1);
    g_assert_cmpuint(stats_of(dst->file->bs).nr_ops[BLOCK_ACCT_READ], ==, 0);
    g_assert_cmpuint(stats_of(dst->file->bs).nr_ops[BLOCK_ACCT_WRITE], ==, 0);
    host = read_host(dst_path, 0, 64 * KiB);
    assert_filled(host, 64 * KiB, 0);
    bdrv_unref(src);
    bdrv_unref(dst);
}

/* null-co has no copy offload: -ENOTSUP either way round, and nothing is
 * accounted on any node (the caller's read + write will be). */
static void test_copy_range_fallback_null(void)
{
    g_autofree char *path = new_path("cr-null.raw");
    BlockDriverState *file, *null;
    CopyCall c;

    make_file(path, 64 * KiB, 0x42);
    file = open_raw_raw(path, 0, false, false);
    null = test_open_json("{'driver': 'raw', 'file': {'driver': 'raw', "
                          "'file': {'driver': 'null-co', 'size': 65536}}}",
                          &error_abort);
    c = (CopyCall) { .src_child = file->file, .dst_child = null->file,
                     .bytes = 4 * KiB };
    g_assert_cmpint(run_copy(&c), ==, -ENOTSUP);
    c = (CopyCall) { .src_child = null->file, .dst_child = file->file,
                     .bytes = 4 * KiB };
    g_assert_cmpint(run_copy(&c), ==, -ENOTSUP);
    for (BlockDriverState *bs = file->file->bs; bs;
         bs = bs->file ? bs->file->bs : NULL) {
        g_assert_cmpuint(stats_of(bs).nr_ops[BLOCK_ACCT_READ], ==, 0);
        g_assert_cmpuint(stats_of(bs).nr_ops[BLOCK_ACCT_WRITE], ==, 0);
        g_assert_cmpuint(stats_of(bs).failed_ops[BLOCK_ACCT_READ], ==, 0);
        g_assert_cmpuint(stats_of(bs).failed_ops[BLOCK_ACCT_WRITE], ==, 0);
        g_assert_cmpuint(stats_of(bs).in_flight[BLOCK_ACCT_READ], ==, 0);
    }
    for (BlockDriverState *bs = null->file->bs; bs;
         bs = bs->file ? bs->file->bs : NULL) {
        g_assert_cmpuint(stats_of(bs).nr_ops[BLOCK_ACCT_WRITE], ==, 0);
        g_assert_cmpuint(stats_of(bs).failed_ops[BLOCK_ACCT_WRITE], ==, 0);
    }
    bdrv_unref(file);
    bdrv_unref(null);
}

/* A write hook on the destination sees the copy as a tracked write (no
 * data vector) before it happens, can fail it, and NO_HOOKS skips it. */
typedef struct CopyHook {
    BdrvWriteHook hook;
    int calls;
    int64_t offset, bytes;
    BdrvTrackedReqType type;
    bool had_qiov;
    bool dst_untouched;         /* the data was not there yet */
    const char *dst_path;
    int fail_with;
} CopyHook;

static int coroutine_fn copy_hook_fn(BdrvWriteHook *hook,
                                     BdrvTrackedRequest *req)
{
    CopyHook *h = hook->opaque;
    g_autofree uint8_t *now = read_host(h->dst_path, bdrv_req_offset(req),
                                        bdrv_req_bytes(req));

    h->calls++;
    h->offset = bdrv_req_offset(req);
    h->bytes = bdrv_req_bytes(req);
    h->type = bdrv_req_type(req);
    h->had_qiov = bdrv_req_qiov(req) != NULL;
    h->dst_untouched = now[0] == 0;
    return h->fail_with;
}

static void test_copy_range_write_hooks(void)
{
    g_autofree char *src_path = new_path("cr-hsrc.raw");
    g_autofree char *dst_path = new_path("cr-hdst.raw");
    g_autofree uint8_t *host = NULL;
    BlockDriverState *src, *dst;
    CopyHook h = { .hook = { .fn = copy_hook_fn }, .dst_path = dst_path };
    CopyCall c;

    h.hook.opaque = &h;
    make_file(src_path, 64 * KiB, 0x99);
    make_file(dst_path, 64 * KiB, 0);
    src = open_raw_raw(src_path, 0, true, false);
    dst = open_raw_raw(dst_path, 0, false, false);
    bdrv_add_write_hook(dst->file->bs, &h.hook);
    c = (CopyCall) { .src_child = src->file, .dst_child = dst->file,
                     .dst_offset = 16 * KiB, .bytes = 8 * KiB };
    g_assert_cmpint(run_copy(&c), ==, 0);
    g_assert_cmpint(h.calls, ==, 1);
    g_assert_cmpint(h.offset, ==, 16 * KiB);
    g_assert_cmpint(h.bytes, ==, 8 * KiB);
    g_assert_cmpint(h.type, ==, BDRV_TRACKED_WRITE);
    g_assert_false(h.had_qiov);
    g_assert_true(h.dst_untouched);

    c = (CopyCall) { .src_child = src->file, .dst_child = dst->file,
                     .dst_offset = 32 * KiB, .bytes = 8 * KiB,
                     .write_flags = BDRV_REQ_NO_HOOKS };
    g_assert_cmpint(run_copy(&c), ==, 0);
    g_assert_cmpint(h.calls, ==, 1);

    h.fail_with = -EACCES;
    c = (CopyCall) { .src_child = src->file, .dst_child = dst->file,
                     .dst_offset = 48 * KiB, .bytes = 8 * KiB };
    g_assert_cmpint(run_copy(&c), ==, -EACCES);
    g_assert_cmpint(h.calls, ==, 2);
    g_assert_cmpuint(stats_of(dst->file->bs).failed_ops[BLOCK_ACCT_WRITE], ==,
                     1);
    host = read_host(dst_path, 0, 64 * KiB);
    assert_filled(host, 16 * KiB, 0);
    assert_filled(host + 16 * KiB, 8 * KiB, 0x99);
    assert_filled(host + 24 * KiB, 8 * KiB, 0);
    assert_filled(host + 32 * KiB, 8 * KiB, 0x99);
    assert_filled(host + 40 * KiB, 24 * KiB, 0);
    bdrv_remove_write_hook(dst->file->bs, &h.hook);
    bdrv_unref(src);
    bdrv_unref(dst);
}

static void remove_test_dir(void)
{
    g_autoptr(GDir) dir = g_dir_open(test_dir, 0, NULL);
    const char *name;

    while (dir && (name = g_dir_read_name(dir)) != NULL) {
        g_autofree char *p = g_build_filename(test_dir, name, NULL);
        g_unlink(p);
    }
    g_rmdir(test_dir);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    test_dir = g_strdup("/var/tmp/blockd-test-file-XXXXXX");
    g_assert_nonnull(g_mkdtemp(test_dir));

    g_test_add_func("/file-posix/rw/threads", test_rw_threads);
    g_test_add_func("/file-posix/copy-range/file-to-file",
                    test_copy_range_file_to_file);
    g_test_add_func("/file-posix/copy-range/raw-over-file",
                    test_copy_range_raw_over_file);
    g_test_add_func("/file-posix/copy-range/unaligned",
                    test_copy_range_unaligned);
    g_test_add_func("/file-posix/copy-range/invalid",
                    test_copy_range_invalid);
    g_test_add_func("/file-posix/copy-range/fallback-null",
                    test_copy_range_fallback_null);
    g_test_add_func("/file-posix/copy-range/write-hooks",
                    test_copy_range_write_hooks);
    g_test_add_func("/file-posix/rw/tmpfs-inline", test_rw_tmpfs_inline);
    g_test_add_func("/file-posix/rw/blockdev-not-inline",
                    test_rw_blockdev_not_inline);
    g_test_add_func("/file-posix/rw/direct-threads", test_rw_direct_threads);
    g_test_add_func("/file-posix/rw/native", test_rw_native);
    g_test_add_func("/file-posix/rw/native-requires-direct",
                    test_native_requires_direct);
    g_test_add_func("/file-posix/rw/direct-unaligned-threads",
                    test_direct_unaligned_threads);
    g_test_add_func("/file-posix/rw/direct-unaligned-native",
                    test_direct_unaligned_native);
    g_test_add_func("/file-posix/rw/direct-unaligned-size",
                    test_direct_unaligned_size);
    g_test_add_func("/file-posix/rw/long-vector-threads",
                    test_long_vector_threads);
    g_test_add_func("/file-posix/rw/long-vector-native",
                    test_long_vector_native);
    g_test_add_func("/file-posix/rw/read-only", test_read_only_refuses_writes);
    g_test_add_func("/file-posix/open/missing", test_open_missing);
    g_test_add_func("/file-posix/open/directory", test_open_directory);
    g_test_add_func("/file-posix/actual-size", test_actual_size);
    g_test_add_func("/file-posix/block-status/holes", test_block_status_holes);
    g_test_add_func("/file-posix/zeroes/allocate", test_write_zeroes);
    g_test_add_func("/file-posix/zeroes/unmap", test_write_zeroes_unmap);
    g_test_add_func("/file-posix/zeroes/direct-unaligned",
                    test_write_zeroes_direct_unaligned);
    g_test_add_func("/file-posix/discard", test_discard_punches_hole);
    g_test_add_func("/file-posix/block-status/after-punch",
                    test_block_status_after_punch);
    g_test_add_func("/file-posix/truncate", test_truncate);
    g_test_add_func("/file-posix/create/off", test_create);
    g_test_add_func("/file-posix/create/prealloc", test_create_prealloc);
    g_test_add_func("/file-posix/lock/second-writer",
                    test_lock_second_writer_refused);
    g_test_add_func("/file-posix/lock/reader-vs-writer",
                    test_lock_reader_vs_writer);
    g_test_add_func("/file-posix/lock/off", test_locking_off);
    g_test_add_func("/file-posix/lock/create-in-use",
                    test_create_refused_while_in_use);
    g_test_add_func("/file-posix/lock/bytes-rw", test_lock_bytes_rw);
    g_test_add_func("/file-posix/lock/bytes-ro", test_lock_bytes_ro);
    g_test_add_func("/file-posix/lock/bytes-force-share",
                    test_lock_bytes_force_share);
    g_test_add_func("/file-posix/lock/truncate-refused",
                    test_truncate_refused_by_lock);
    g_test_add_func("/file-posix/interop/qemu-io-refused",
                    test_qemu_io_refused);
    g_test_add_func("/file-posix/interop/qemu-io-holds-image",
                    test_qemu_io_holds_image);

    ret = g_test_run();
    remove_test_dir();
    return ret;
}
