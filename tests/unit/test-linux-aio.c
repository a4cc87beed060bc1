/*
 * Unit tests for the linux-aio engine (include/util/linux-aio.h) on an
 * O_DIRECT temporary file: data round trips, many concurrent coroutines,
 * batching of one iteration's requests into one io_submit(), more requests
 * than the kernel queue holds, zero-fill past EOF and error propagation.
 * Skips cleanly where no usable directory accepts O_DIRECT (e.g. tmpfs).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "util/aio.h"
#include "util/linux-aio.h"

#define BLK 4096

static int test_fd = -1;

/* Opens an unlinked O_DIRECT file in /var/tmp or the cwd; -1 if none. */
static int open_direct_tmpfile(void)
{
    const char *dirs[] = { "/var/tmp", "." };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(dirs); i++) {
        g_autofree char *path = g_build_filename(dirs[i],
                                                 "blockd-laio-XXXXXX", NULL);
        int fd = g_mkstemp_full(path, O_RDWR | O_DIRECT, 0600);

        if (fd >= 0) {
            unlink(path);
            return fd;
        }
    }
    return -1;
}

/* Returns false (and marks the test skipped) when O_DIRECT is unusable. */
static bool need_fd(void)
{
    if (test_fd < 0) {
        g_test_skip("no directory accepts O_DIRECT");
        return false;
    }
    g_assert_cmpint(ftruncate(test_fd, 0), ==, 0);
    return true;
}

static LinuxAioState *main_laio(void)
{
    return aio_get_linux_aio(aio_main_context(), &error_abort);
}

static unsigned char *blk_alloc(size_t blocks, int fill)
{
    unsigned char *b = g_aligned_alloc(blocks, BLK, BLK);

    memset(b, fill, blocks * BLK);
    return b;
}

/* One I/O done by a coroutine. */
typedef struct Io {
    LinuxAioState *s;
    int fd;
    int64_t offset;
    QIOVector qiov;
    LaioType type;
    int64_t ret;
    bool done;
} Io;

static void coroutine_fn io_entry(void *opaque)
{
    Io *io = opaque;

    io->ret = laio_co_submit(io->s, io->fd, io->offset, &io->qiov, io->type);
    io->done = true;
}

/* Runs one I/O on a flat buffer in the main context and returns its
 * result. */
static int64_t do_io(LaioType type, int fd, int64_t offset, void *buf,
                     size_t len)
{
    Io io = { .s = main_laio(), .fd = fd, .offset = offset, .type = type };

    qiov_init_buf(&io.qiov, buf, len);
    coroutine_enter(coroutine_create(io_entry, &io));
    AIO_WAIT_WHILE(aio_main_context(), !io.done);
    return io.ret;
}

static void test_engine_per_context(void)
{
    LinuxAioState *s = main_laio();

    g_assert_nonnull(s);
    g_assert_true(main_laio() == s);
    g_assert_true(aio_find_linux_aio(aio_main_context()) == s);
}

typedef struct IothreadEngine {
    LinuxAioState *s, *again, *found_after_cleanup;
    int64_t wret, rret;
    unsigned char *wbuf, *rbuf;
} IothreadEngine;

static void coroutine_fn iothread_engine_entry(void *opaque)
{
    IothreadEngine *ie = opaque;
    AioContext *ctx = current_aio_context();
    QIOVector q;

    ie->s = aio_get_linux_aio(ctx, &error_abort);
    ie->again = aio_get_linux_aio(ctx, &error_abort);
    if (test_fd >= 0) {
        qiov_init_buf(&q, ie->wbuf, BLK);
        ie->wret = laio_co_submit(ie->s, test_fd, 0, &q, LAIO_WRITE);
        qiov_init_buf(&q, ie->rbuf, BLK);
        ie->rret = laio_co_submit(ie->s, test_fd, 0, &q, LAIO_READ);
    }
    laio_cleanup(ie->s);
    ie->found_after_cleanup = aio_find_linux_aio(ctx);
}

/* An iothread gets its own engine, does I/O with it, and can drop it. */
static void test_engine_iothread(void)
{
    IOThread *t = iothread_create("laio-io0", &error_abort);
    IothreadEngine ie = { .wbuf = blk_alloc(1, 0x5e), .rbuf = blk_alloc(1, 0) };

    if (test_fd >= 0) {
        g_assert_cmpint(ftruncate(test_fd, 0), ==, 0);
    }
    aio_run_in_context(iothread_get_aio_context(t), iothread_engine_entry,
                       &ie);
    g_assert_nonnull(ie.s);
    g_assert_true(ie.again == ie.s);
    g_assert_true(ie.s != main_laio());
    g_assert_null(ie.found_after_cleanup);
    if (test_fd >= 0) {
        g_assert_cmpint(ie.wret, ==, BLK);
        g_assert_cmpint(ie.rret, ==, BLK);
        g_assert_cmpmem(ie.wbuf, BLK, ie.rbuf, BLK);
    }
    g_aligned_free(ie.wbuf);
    g_aligned_free(ie.rbuf);
    iothread_destroy(t);
}

static int count_open_fds(void)
{
    GDir *dir = g_dir_open("/proc/self/fd", 0, NULL);
    int n = 0;

    g_assert_nonnull(dir);
    while (g_dir_read_name(dir)) {
        n++;
    }
    g_dir_close(dir);
    return n;
}

static void coroutine_fn make_engine_entry(void *opaque)
{
    *(LinuxAioState **)opaque = aio_get_linux_aio(current_aio_context(),
                                                  &error_abort);
}

/* An engine left in place dies with its context: its fd is closed (and
 * the sanitizer build sees no leak). */
static void test_engine_freed_with_context(void)
{
    int before = count_open_fds();
    IOThread *t = iothread_create("laio-io1", &error_abort);
    LinuxAioState *s = NULL;

    aio_run_in_context(iothread_get_aio_context(t), make_engine_entry, &s);
    g_assert_nonnull(s);
    g_assert_cmpint(count_open_fds(), >, before);
    iothread_destroy(t);
    g_assert_cmpint(count_open_fds(), ==, before);
}

static void test_write_read_pattern(void)
{
    unsigned char *w, *r;
    size_t i;

    if (!need_fd()) {
        return;
    }
    w = blk_alloc(16, 0);
    r = blk_alloc(16, 0);
    for (i = 0; i < 16 * BLK; i++) {
        w[i] = (i * 7 + 3) & 0xff;
    }
    g_assert_cmpint(do_io(LAIO_WRITE, test_fd, BLK, w, 16 * BLK), ==,
                    16 * BLK);
    g_assert_cmpint(do_io(LAIO_READ, test_fd, BLK, r, 16 * BLK), ==,
                    16 * BLK);
    g_assert_cmpmem(w, 16 * BLK, r, 16 * BLK);
    g_aligned_free(w);
    g_aligned_free(r);
}

/* Multi-element vectors take the preadv/pwritev path. */
static void test_vectored(void)
{
    unsigned char *parts[3], *flat;
    Io io = { .fd = test_fd, .offset = 2 * BLK };
    int i;

    if (!need_fd()) {
        return;
    }
    io.s = main_laio();
    flat = blk_alloc(3, 0);
    qiov_init(&io.qiov, 3);
    for (i = 0; i < 3; i++) {
        parts[i] = blk_alloc(1, 0x10 + i);
        qiov_add(&io.qiov, parts[i], BLK);
    }
    io.type = LAIO_WRITE;
    coroutine_enter(coroutine_create(io_entry, &io));
    AIO_WAIT_WHILE(aio_main_context(), !io.done);
    g_assert_cmpint(io.ret, ==, 3 * BLK);
    g_assert_cmpint(do_io(LAIO_READ, test_fd, 2 * BLK, flat, 3 * BLK), ==,
                    3 * BLK);
    for (i = 0; i < 3; i++) {
        g_assert_cmpmem(flat + i * BLK, BLK, parts[i], BLK);
    }

    /* And back into the pieces. */
    for (i = 0; i < 3; i++) {
        memset(parts[i], 0, BLK);
    }
    io.type = LAIO_READ;
    io.done = false;
    coroutine_enter(coroutine_create(io_entry, &io));
    AIO_WAIT_WHILE(aio_main_context(), !io.done);
    g_assert_cmpint(io.ret, ==, 3 * BLK);
    for (i = 0; i < 3; i++) {
        g_assert_cmpuint(parts[i][0], ==, 0x10 + i);
        g_assert_cmpuint(parts[i][BLK - 1], ==, 0x10 + i);
        g_aligned_free(parts[i]);
    }
    qiov_destroy(&io.qiov);
    g_aligned_free(flat);
}

/* Each coroutine writes its own block, then reads it back. */
typedef struct BlockCo {
    int index;
    unsigned char *w, *r;
    int64_t wret, rret;
    bool done;
} BlockCo;

static void coroutine_fn block_co_entry(void *opaque)
{
    BlockCo *b = opaque;
    LinuxAioState *s = main_laio();
    QIOVector q;

    qiov_init_buf(&q, b->w, BLK);
    b->wret = laio_co_submit(s, test_fd, (int64_t)b->index * BLK, &q,
                             LAIO_WRITE);
    qiov_init_buf(&q, b->r, BLK);
    b->rret = laio_co_submit(s, test_fd, (int64_t)b->index * BLK, &q,
                             LAIO_READ);
    b->done = true;
}

static bool all_blocks_done(BlockCo *b, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if (!b[i].done) {
            return false;
        }
    }
    return true;
}

static void run_block_cos(int n)
{
    BlockCo *b = g_new0(BlockCo, n);
    int i;

    for (i = 0; i < n; i++) {
        b[i].index = i;
        b[i].w = blk_alloc(1, i & 0xff);
        b[i].w[0] = i >> 8;
        b[i].r = blk_alloc(1, 0xff);
        coroutine_enter(coroutine_create(block_co_entry, &b[i]));
    }
    AIO_WAIT_WHILE(aio_main_context(), !all_blocks_done(b, n));
    for (i = 0; i < n; i++) {
        g_assert_cmpint(b[i].wret, ==, BLK);
        g_assert_cmpint(b[i].rret, ==, BLK);
        g_assert_cmpmem(b[i].r, BLK, b[i].w, BLK);
        g_aligned_free(b[i].w);
        g_aligned_free(b[i].r);
    }
    g_free(b);
}

static void test_concurrent_32(void)
{
    if (need_fd()) {
        run_block_cos(32);
    }
}

/* More requests at once than the kernel queue holds (256). */
static void test_more_than_queue_depth(void)
{
    if (need_fd()) {
        run_block_cos(600);
    }
}

/* Starts n writes of block i (pattern i + 1) at block i, each in its own
 * coroutine, without running the loop. */
static void start_writes(LinuxAioState *s, Io *io, unsigned char *buf, int n)
{
    for (int i = 0; i < n; i++) {
        memset(buf + i * BLK, i + 1, BLK);
        io[i] = (Io) { .s = s, .fd = test_fd, .offset = i * BLK,
                       .type = LAIO_WRITE };
        qiov_init_buf(&io[i].qiov, buf + i * BLK, BLK);
        coroutine_enter(coroutine_create(io_entry, &io[i]));
    }
}

/* Waits for n I/Os, checks they all succeeded and reads the blocks back. */
static void finish_writes(Io *io, int n)
{
    unsigned char *rbuf = blk_alloc(1, 0);

    for (int i = 0; i < n; i++) {
        AIO_WAIT_WHILE(aio_main_context(), !io[i].done);
        g_assert_cmpint(io[i].ret, ==, BLK);
        qiov_destroy(&io[i].qiov);
    }
    for (int i = 0; i < n; i++) {
        g_assert_cmpint(do_io(LAIO_READ, test_fd, i * BLK, rbuf, BLK), ==,
                        BLK);
        g_assert_cmpint(rbuf[0], ==, i + 1);
        g_assert_cmpint(rbuf[BLK - 1], ==, i + 1);
    }
    g_aligned_free(rbuf);
}

/* Fewer than LAIO_MAX_BATCH requests queued in one iteration wait for the
 * loop and then go out in one io_submit(). */
static void test_batching(void)
{
    LinuxAioState *s;
    uint64_t sub0, req0, sub1, req1;
    Io io[LAIO_MAX_BATCH - 1];
    unsigned char *buf;

    if (!need_fd()) {
        return;
    }
    s = main_laio();
    buf = blk_alloc(LAIO_MAX_BATCH - 1, 0);
    laio_get_stats(s, &sub0, &req0);
    start_writes(s, io, buf, LAIO_MAX_BATCH - 1);
    /* Nothing is submitted before the loop runs. */
    laio_get_stats(s, &sub1, &req1);
    g_assert_cmpuint(sub1, ==, sub0);
    g_assert_cmpuint(req1, ==, req0);
    AIO_WAIT_WHILE(aio_main_context(), !io[0].done);
    laio_get_stats(s, &sub1, &req1);
    g_assert_cmpuint(req1 - req0, ==, LAIO_MAX_BATCH - 1);
    g_assert_cmpuint(sub1 - sub0, ==, 1);
    finish_writes(io, LAIO_MAX_BATCH - 1);
    g_aligned_free(buf);
}

/* Sixteen requests started together go out in full batches, each as soon
 * as it is full (before the loop runs), and all complete. */
static void test_batching_full_queue(void)
{
    LinuxAioState *s;
    uint64_t sub0, req0, sub1, req1;
    Io io[16];
    unsigned char *buf;

    G_STATIC_ASSERT(16 % LAIO_MAX_BATCH == 0);
    if (!need_fd()) {
        return;
    }
    s = main_laio();
    buf = blk_alloc(16, 0);
    laio_get_stats(s, &sub0, &req0);
    start_writes(s, io, buf, 16);
    laio_get_stats(s, &sub1, &req1);
    g_assert_cmpuint(req1 - req0, ==, 16);
    g_assert_cmpuint(sub1 - sub0, ==, 16 / LAIO_MAX_BATCH);
    finish_writes(io, 16);
    laio_get_stats(s, &sub1, &req1);
    /* finish_writes read each block alone: one call each. */
    g_assert_cmpuint(sub1 - sub0, ==, 16 / LAIO_MAX_BATCH + 16);
    g_aligned_free(buf);
}

static void test_read_past_eof_zero_fills(void)
{
    unsigned char *w, *r;
    size_t i;

    if (!need_fd()) {
        return;
    }
    w = blk_alloc(1, 0x77);
    r = blk_alloc(4, 0xff);
    g_assert_cmpint(do_io(LAIO_WRITE, test_fd, 0, w, BLK), ==, BLK);
    /* Straddling EOF: the first block is data, the rest zeros. */
    g_assert_cmpint(do_io(LAIO_READ, test_fd, 0, r, 4 * BLK), ==, 4 * BLK);
    g_assert_cmpmem(r, BLK, w, BLK);
    for (i = BLK; i < 4 * BLK; i++) {
        g_assert_cmpuint(r[i], ==, 0);
    }
    /* Entirely past EOF. */
    memset(r, 0xff, 4 * BLK);
    g_assert_cmpint(do_io(LAIO_READ, test_fd, 1 << 20, r, 4 * BLK), ==,
                    4 * BLK);
    for (i = 0; i < 4 * BLK; i++) {
        g_assert_cmpuint(r[i], ==, 0);
    }
    g_aligned_free(w);
    g_aligned_free(r);
}

/*
 * A short write is resubmitted for its remainder.  RLIMIT_FSIZE makes the
 * kernel cut a write at the limit (short write); the resubmitted rest then
 * starts at the limit and fails with EFBIG, which is what comes back.
 */
static void test_short_write_resubmits(void)
{
    struct rlimit old, lim;
    uint64_t sub0, req0, sub1, req1;
    unsigned char *buf;
    struct stat st;
    int64_t ret;

    if (!need_fd()) {
        return;
    }
    buf = blk_alloc(4, 0x99);
    laio_get_stats(main_laio(), &sub0, &req0);
    signal(SIGXFSZ, SIG_IGN);
    g_assert_cmpint(getrlimit(RLIMIT_FSIZE, &old), ==, 0);
    lim = old;
    lim.rlim_cur = 2 * BLK;
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &lim), ==, 0);
    ret = do_io(LAIO_WRITE, test_fd, 0, buf, 4 * BLK);
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &old), ==, 0);
    signal(SIGXFSZ, SIG_DFL);

    laio_get_stats(main_laio(), &sub1, &req1);
    g_assert_cmpint(fstat(test_fd, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 2 * BLK);
    /* The first round was accepted and came back short; the second was
     * refused by io_submit or failed on completion. */
    g_assert_cmpuint(sub1 - sub0, ==, 2);
    g_assert_cmpuint(req1 - req0, >=, 1);
    g_assert_cmpint(ret, ==, -EFBIG);
    g_aligned_free(buf);
}

/* A descriptor number that is certainly closed. */
static int closed_fd(void)
{
    int fd = dup(0);

    g_assert_cmpint(fd, >=, 0);
    close(fd);
    return fd;
}

static void test_bad_fd(void)
{
    unsigned char *buf = blk_alloc(1, 0);

    g_assert_cmpint(do_io(LAIO_READ, closed_fd(), 0, buf, BLK), ==, -EBADF);
    g_assert_cmpint(do_io(LAIO_WRITE, closed_fd(), 0, buf, BLK), ==, -EBADF);
    g_aligned_free(buf);
}

/* A request the kernel refuses fails alone; its batch neighbours run. */
static void test_bad_fd_in_batch(void)
{
    unsigned char *buf;
    Io io[3];
    int i;

    if (!need_fd()) {
        return;
    }
    buf = blk_alloc(3, 0x42);
    for (i = 0; i < 3; i++) {
        io[i] = (Io) { .s = main_laio(), .fd = i == 1 ? closed_fd() : test_fd,
                       .offset = i * BLK, .type = LAIO_WRITE };
        qiov_init_buf(&io[i].qiov, buf + i * BLK, BLK);
        coroutine_enter(coroutine_create(io_entry, &io[i]));
    }
    for (i = 0; i < 3; i++) {
        AIO_WAIT_WHILE(aio_main_context(), !io[i].done);
    }
    g_assert_cmpint(io[0].ret, ==, BLK);
    g_assert_cmpint(io[1].ret, ==, -EBADF);
    g_assert_cmpint(io[2].ret, ==, BLK);
    g_aligned_free(buf);
}

/* A full batch submitted from the coroutine of its last request: a refused
 * request earlier in it gets its error, the others complete. */
static void test_bad_fd_in_full_batch(void)
{
    unsigned char *buf;
    Io io[LAIO_MAX_BATCH];
    int i;

    if (!need_fd()) {
        return;
    }
    buf = blk_alloc(LAIO_MAX_BATCH, 0x42);
    for (i = 0; i < LAIO_MAX_BATCH; i++) {
        io[i] = (Io) { .s = main_laio(), .fd = i == 0 ? closed_fd() : test_fd,
                       .offset = i * BLK, .type = LAIO_WRITE };
        qiov_init_buf(&io[i].qiov, buf + i * BLK, BLK);
        coroutine_enter(coroutine_create(io_entry, &io[i]));
    }
    /* Refused before the loop ran, but resumed by the loop. */
    g_assert_false(io[0].done);
    AIO_WAIT_WHILE(aio_main_context(), !io[0].done);
    g_assert_cmpint(io[0].ret, ==, -EBADF);
    for (i = 1; i < LAIO_MAX_BATCH; i++) {
        AIO_WAIT_WHILE(aio_main_context(), !io[i].done);
        g_assert_cmpint(io[i].ret, ==, BLK);
    }
    g_aligned_free(buf);
}

/* O_DIRECT refuses a misaligned offset: the kernel's errno comes back. */
static void test_misaligned_direct(void)
{
    unsigned char *buf;

    if (!need_fd()) {
        return;
    }
    buf = blk_alloc(1, 0);
    g_assert_cmpint(do_io(LAIO_WRITE, test_fd, 1, buf, BLK), ==, -EINVAL);
    g_aligned_free(buf);
}

static void test_empty_request(void)
{
    unsigned char *buf = blk_alloc(1, 0);

    g_assert_cmpint(do_io(LAIO_READ, closed_fd(), 0, buf, 0), ==, 0);
    g_aligned_free(buf);
}

/* FDSYNC either works or is refused with the documented -EINVAL. */
static void test_fdsync(void)
{
    int64_t ret;

    if (!need_fd()) {
        return;
    }
    ret = do_io(LAIO_FDSYNC, test_fd, 0, NULL, 0);
    if (ret != 0) {
        g_assert_cmpint(ret, ==, -EINVAL);
    }
    g_assert_cmpint(do_io(LAIO_FDSYNC, closed_fd(), 0, NULL, 0), ==, -EBADF);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    test_fd = open_direct_tmpfile();
    g_test_add_func("/linux-aio/engine/per-context", test_engine_per_context);
    g_test_add_func("/linux-aio/engine/iothread", test_engine_iothread);
    g_test_add_func("/linux-aio/engine/freed-with-context",
                    test_engine_freed_with_context);
    g_test_add_func("/linux-aio/rw/pattern", test_write_read_pattern);
    g_test_add_func("/linux-aio/rw/vectored", test_vectored);
    g_test_add_func("/linux-aio/rw/concurrent-32", test_concurrent_32);
    g_test_add_func("/linux-aio/rw/more-than-queue-depth",
                    test_more_than_queue_depth);
    g_test_add_func("/linux-aio/batching", test_batching);
    g_test_add_func("/linux-aio/batching-full-queue",
                    test_batching_full_queue);
    g_test_add_func("/linux-aio/read/past-eof-zero-fills",
                    test_read_past_eof_zero_fills);
    g_test_add_func("/linux-aio/rw/short-write-resubmits",
                    test_short_write_resubmits);
    g_test_add_func("/linux-aio/errors/bad-fd", test_bad_fd);
    g_test_add_func("/linux-aio/errors/bad-fd-in-batch", test_bad_fd_in_batch);
    g_test_add_func("/linux-aio/errors/bad-fd-in-full-batch",
                    test_bad_fd_in_full_batch);
    g_test_add_func("/linux-aio/errors/misaligned-direct",
                    test_misaligned_direct);
    g_test_add_func("/linux-aio/empty-request", test_empty_request);
    g_test_add_func("/linux-aio/fdsync", test_fdsync);
    ret = g_test_run();
    if (test_fd >= 0) {
        close(test_fd);
    }
    return ret;
}
