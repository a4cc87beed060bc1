/*
 * Tests of the nbd client driver (block/nbd.c) through the block layer's
 * API: the URI shorthand (nbd_uri_to_options, good and bad URIs), and,
 * against a real qemu-nbd when installed, the node's size and limits,
 * block status in mapping mode before and after writes (the driver keeps
 * the extents of the last answer; a write of ours must drop them), many
 * extents in one answer, concurrent queries, allocation mode,
 * pipelined requests from many coroutines, -EIO once the server is
 * gone, and the node moving to an iothread and back with its connection.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "block/block_int.h"
#include "block/nbd-client.h"

#define KiB 1024
#define MiB (1024 * 1024)
#define IMG_SIZE (4 * MiB)

/* ---- URIs ---- */

typedef struct UriCase {
    const char *uri;
    SocketAddressType type;
    const char *host_or_path;
    const char *port;            /* inet only */
    const char *export;          /* NULL: none given */
} UriCase;

static const UriCase good_uris[] = {
    { "nbd+unix:///exp?socket=/tmp/s", SOCKET_ADDRESS_TYPE_UNIX, "/tmp/s",
      NULL, "exp" },
    { "nbd+unix://?socket=/tmp/s", SOCKET_ADDRESS_TYPE_UNIX, "/tmp/s", NULL,
      NULL },
    { "nbd+unix:///?socket=/tmp/a%20b", SOCKET_ADDRESS_TYPE_UNIX, "/tmp/a b",
      NULL, "" },
    { "nbd://example.org/disk", SOCKET_ADDRESS_TYPE_INET, "example.org",
      "10809", "disk" },
    { "nbd://10.0.0.1:1234", SOCKET_ADDRESS_TYPE_INET, "10.0.0.1", "1234",
      NULL },
    { "nbd+tcp://h:7/a%2Fb", SOCKET_ADDRESS_TYPE_INET, "h", "7", "a/b" },
    { "nbd://[::1]:99/x", SOCKET_ADDRESS_TYPE_INET, "::1", "99", "x" },
    { "nbd://[fe80::1]/", SOCKET_ADDRESS_TYPE_INET, "fe80::1", "10809", "" },
};

static const char *const bad_uris[] = {
    "nbd+unix:///exp",                 /* no socket */
    "nbd+unix://host/exp?socket=/s",   /* a host */
    "nbd+unix:///?socket=",            /* empty path */
    "nbd+unix:///?socket=/s&x=1",      /* more query */
    "nbd+unix:///%4?socket=/s",        /* short escape */
    "nbd+unix:///%00?socket=/s",       /* NUL */
    "nbd://",                          /* no host */
    "nbd://:10809/x",                  /* no host */
    "nbd://h:/x",                      /* empty port */
    "nbd://h:1x/x",                    /* bad port */
    "nbd://[::1/x",                    /* open bracket */
    "nbd://[::1]x/x",                  /* junk after bracket */
    "nbd://h/x?socket=/s",             /* query on TCP */
    "nbdx://h/x",                      /* unknown scheme */
};

static void test_uri_good(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(good_uris); i++) {
        const UriCase *c = &good_uris[i];
        g_autoptr(BlockdevOptions) o = g_new0(BlockdevOptions, 1);
        Error *err = NULL;
        SocketAddress *a;

        g_assert_true(nbd_is_uri(c->uri));
        g_assert_true(nbd_uri_to_options(c->uri, o, &err));
        g_assert_null(err);
        g_assert_cmpint(o->driver, ==, BLOCKDEV_DRIVER_NBD);
        a = o->u.nbd.server;
        g_assert_cmpint(a->type, ==, c->type);
        if (c->type == SOCKET_ADDRESS_TYPE_UNIX) {
            g_assert_cmpstr(a->u.q_unix.path, ==, c->host_or_path);
        } else {
            g_assert_cmpstr(a->u.inet.host, ==, c->host_or_path);
            g_assert_cmpstr(a->u.inet.port, ==, c->port);
        }
        g_assert_cmpstr(o->u.nbd.export, ==, c->export);
    }
}

static void test_uri_bad(void)
{
    g_assert_false(nbd_is_uri("/tmp/disk.raw"));
    g_assert_false(nbd_is_uri("nbd:unix:/tmp/s"));
    for (size_t i = 0; i < G_N_ELEMENTS(bad_uris); i++) {
        g_autoptr(BlockdevOptions) o = g_new0(BlockdevOptions, 1);
        Error *err = NULL;

        g_assert_false(nbd_uri_to_options(bad_uris[i], o, &err));
        g_assert_nonnull(err);
        g_assert_true(g_str_has_prefix(error_get_pretty(err),
                                       "Invalid NBD URI"));
        error_free(err);
    }
}

/* ---- Against qemu-nbd ---- */

typedef struct Server {
    char *dir;
    char *img;
    char *sock;
    GPid pid;
} Server;

/* Starts qemu-nbd on a fresh sparse image; false (test skipped) if it is
 * not installed. */
static bool server_start(Server *srv)
{
    g_autofree char *pidfile = NULL;
    g_autofree char *pidtext = NULL;
    g_autofree char *prog = g_find_program_in_path("qemu-nbd");
    g_autoptr(GError) gerr = NULL;
    int status = 0;

    if (!prog) {
        g_test_skip("qemu-nbd not installed");
        return false;
    }
    srv->dir = g_dir_make_tmp("test-nbd-client.XXXXXX", &gerr);
    g_assert_no_error(gerr);
    srv->img = g_build_filename(srv->dir, "img.raw", NULL);
    srv->sock = g_build_filename(srv->dir, "s", NULL);
    pidfile = g_build_filename(srv->dir, "pid", NULL);
    g_assert_true(g_file_set_contents(srv->img, "", 0, NULL));
    g_assert_cmpint(truncate(srv->img, IMG_SIZE), ==, 0);
    {
        const char *argv[] = { "qemu-nbd", "--fork", "--pid-file", pidfile,
                               "-f", "raw", "--persistent", "--shared=4",
                               "-k", srv->sock, srv->img, NULL };

        g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL,
                                   G_SPAWN_SEARCH_PATH, NULL, NULL, NULL,
                                   NULL, &status, &gerr));
    }
    g_assert_no_error(gerr);
    g_assert_cmpint(status, ==, 0);
    g_assert_true(g_file_get_contents(pidfile, &pidtext, NULL, NULL));
    srv->pid = (GPid)g_ascii_strtoll(pidtext, NULL, 10);
    g_assert_cmpint(srv->pid, >, 0);
    return true;
}

static void server_kill(Server *srv)
{
    if (srv->pid > 0) {
        kill(srv->pid, SIGKILL);
        /* Not our child (it forked): poll until it is gone. */
        for (int i = 0; i < 500 && kill(srv->pid, 0) == 0; i++) {
            g_usleep(10 * 1000);
        }
        srv->pid = 0;
    }
}

static void server_free(Server *srv)
{
    server_kill(srv);
    g_unlink(srv->img);
    g_unlink(srv->sock);
    g_rmdir(srv->dir);
    g_free(srv->img);
    g_free(srv->sock);
    g_free(srv->dir);
}

static BlockDriverState *open_nbd(Server *srv)
{
    g_autofree char *uri = g_strdup_printf("nbd+unix:///?socket=%s",
                                           srv->sock);
    g_autoptr(BlockdevOptions) o = g_new0(BlockdevOptions, 1);
    BlockDriverState *bs;
    Error *err = NULL;

    g_assert_true(nbd_uri_to_options(uri, o, &err));
    bs = bdrv_open_options(o, &err);
    if (!bs) {
        g_error("open: %s", error_get_pretty(err));
    }
    return bs;
}

/* Mapping-mode status of offset: the BDRV_BLOCK_DATA / ZERO bits and the
 * extent length. */
static int status_at(BlockDriverState *bs, int64_t offset, int64_t *pnum)
{
    int ret = bdrv_block_status(bs, true, offset, IMG_SIZE - offset, pnum,
                                NULL, NULL);

    g_assert_cmpint(ret, >=, 0);
    return ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO);
}

static void test_node_basics(void)
{
    Server srv = { 0 };
    BlockDriverState *bs;
    g_autofree char *want = NULL;

    if (!server_start(&srv)) {
        return;
    }
    bs = open_nbd(&srv);
    want = g_strdup_printf("nbd+unix:///?socket=%s", srv.sock);
    g_assert_cmpint(bdrv_getlength(bs), ==, IMG_SIZE);
    g_assert_cmpstr(bdrv_get_format_name(bs), ==, "nbd");
    g_assert_cmpstr(bdrv_get_filename(bs), ==, want);
    /* qemu-nbd on a raw file: 1-byte minimum, 32 MiB maximum. */
    g_assert_cmpuint(bdrv_get_request_alignment(bs), ==, 1);
    g_assert_cmpint(bdrv_get_max_transfer(bs), ==, 32 * MiB);
    bdrv_unref(bs);
    server_free(&srv);
}

static void test_status_after_write(void)
{
    Server srv = { 0 };
    BlockDriverState *bs;
    g_autofree uint8_t *buf = g_malloc(64 * KiB);
    int64_t pnum;

    if (!server_start(&srv)) {
        return;
    }
    bs = open_nbd(&srv);
    g_assert_cmpint(status_at(bs, 0, &pnum), ==, BDRV_BLOCK_ZERO);
    g_assert_cmpint(pnum, ==, IMG_SIZE);
    /* Asked again inside the same (cached) extent. */
    g_assert_cmpint(status_at(bs, MiB, &pnum), ==, BDRV_BLOCK_ZERO);
    g_assert_cmpint(pnum, ==, IMG_SIZE - MiB);

    memset(buf, 0x5a, 64 * KiB);
    g_assert_cmpint(bdrv_pwrite(bs, MiB, 64 * KiB, buf, 0), ==, 0);
    g_assert_cmpint(status_at(bs, 0, &pnum), ==, BDRV_BLOCK_ZERO);
    g_assert_cmpint(pnum, ==, MiB);
    g_assert_cmpint(status_at(bs, MiB, &pnum), ==, BDRV_BLOCK_DATA);
    g_assert_cmpint(pnum, ==, 64 * KiB);
    g_assert_cmpint(status_at(bs, MiB + 64 * KiB, &pnum), ==,
                    BDRV_BLOCK_ZERO);

    /* write-zeroes with MAY_UNMAP punches the hole again. */
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, MiB, 64 * KiB,
                                       BDRV_REQ_MAY_UNMAP), ==, 0);
    g_assert_cmpint(status_at(bs, MiB, &pnum), ==, BDRV_BLOCK_ZERO);
    g_assert_cmpint(pnum, ==, IMG_SIZE - MiB);

    /* Allocation mode never asks the server: all data. */
    g_assert_cmpint(bdrv_block_status(bs, false, 0, IMG_SIZE, &pnum, NULL,
                                      NULL) & BDRV_BLOCK_DATA, !=, 0);
    g_assert_cmpint(pnum, ==, IMG_SIZE);
    bdrv_unref(bs);
    server_free(&srv);
}

/* Data at PIECES pieces of PIECE_LEN, one every PIECE_STRIDE: a reply to
 * one block status query holds many extents. */
#define PIECES 12
#define PIECE_LEN (64 * KiB)
#define PIECE_STRIDE (320 * KiB)

static void write_pieces(BlockDriverState *bs)
{
    g_autofree uint8_t *buf = g_malloc(PIECE_LEN);

    memset(buf, 0x6c, PIECE_LEN);
    for (int i = 0; i < PIECES; i++) {
        g_assert_cmpint(bdrv_pwrite(bs, (int64_t)i * PIECE_STRIDE + 4 * KiB,
                                    PIECE_LEN, buf, 0), ==, 0);
    }
}

/* What write_pieces left at offset: BDRV_BLOCK_DATA or ZERO, and how far
 * it goes on. */
static int expected_at(int64_t offset, int64_t *len)
{
    int64_t in = offset % PIECE_STRIDE, base = offset - in;
    int64_t end;
    bool data = offset < (int64_t)PIECES * PIECE_STRIDE &&
                in >= 4 * KiB && in < 4 * KiB + PIECE_LEN;

    if (data) {
        end = base + 4 * KiB + PIECE_LEN;
    } else if (in < 4 * KiB && offset < (int64_t)PIECES * PIECE_STRIDE) {
        end = base + 4 * KiB;
    } else if (base + PIECE_STRIDE + 4 * KiB <=
               (int64_t)(PIECES - 1) * PIECE_STRIDE + 4 * KiB) {
        end = base + PIECE_STRIDE + 4 * KiB;
    } else {
        end = IMG_SIZE;
    }
    *len = end - offset;
    return data ? BDRV_BLOCK_DATA : BDRV_BLOCK_ZERO;
}

/* Walks the image in 16k steps and at odd offsets: every answer (the
 * first from the server, most from the extents it sent along) is right. */
static void test_status_many_extents(void)
{
    Server srv = { 0 };
    BlockDriverState *bs;

    if (!server_start(&srv)) {
        return;
    }
    bs = open_nbd(&srv);
    write_pieces(bs);
    for (int64_t off = 0; off < IMG_SIZE; off += 16 * KiB - 512) {
        int64_t pnum, want_len;
        int want = expected_at(off, &want_len);

        g_assert_cmpint(status_at(bs, off, &pnum), ==, want);
        g_assert_cmpint(pnum, ==, want_len);
    }
    bdrv_unref(bs);
    server_free(&srv);
}

/* Block status from many coroutines at once: queries in flight are
 * shared, and every caller still gets the answer for its own offset. */
typedef struct StatusCo {
    BlockDriverState *bs;
    int64_t offset;
    int ret;
    int64_t pnum;
    int *running;
} StatusCo;

static void coroutine_fn status_co(void *opaque)
{
    StatusCo *c = opaque;

    c->ret = bdrv_co_block_status(c->bs, true, c->offset,
                                  IMG_SIZE - c->offset, &c->pnum, NULL, NULL);
    (*c->running)--;
}

static void test_status_concurrent(void)
{
    Server srv = { 0 };
    BlockDriverState *bs;
    StatusCo cos[32];
    int running = G_N_ELEMENTS(cos);

    if (!server_start(&srv)) {
        return;
    }
    bs = open_nbd(&srv);
    write_pieces(bs);
    for (size_t i = 0; i < G_N_ELEMENTS(cos); i++) {
        cos[i] = (StatusCo) { .bs = bs, .offset = i * 123 * KiB,
                              .running = &running };
        coroutine_enter(coroutine_create(status_co, &cos[i]));
    }
    while (running > 0) {
        aio_poll(aio_main_context(), true);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(cos); i++) {
        int64_t want_len;
        int want = expected_at(cos[i].offset, &want_len);

        g_assert_cmpint(cos[i].ret, >=, 0);
        g_assert_cmpint(cos[i].ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO), ==,
                        want);
        g_assert_cmpint(cos[i].pnum, ==, want_len);
    }
    bdrv_unref(bs);
    server_free(&srv);
}

/* Many requests in flight on the one connection. */
typedef struct Pipe {
    BlockDriverState *bs;
    int index;
    int ret;
    int *running;
} Pipe;

#define PIPE_REQS 48
#define PIPE_LEN (32 * KiB)

static void coroutine_fn pipe_write(void *opaque)
{
    Pipe *p = opaque;
    g_autofree uint8_t *buf = g_malloc(PIPE_LEN);
    QIOVector qiov;

    memset(buf, p->index + 1, PIPE_LEN);
    qiov_init_buf(&qiov, buf, PIPE_LEN);
    p->ret = bdrv_co_pwritev(p->bs, (int64_t)p->index * PIPE_LEN, PIPE_LEN,
                             &qiov, 0);
    qiov_destroy(&qiov);
    (*p->running)--;
}

static void test_pipelined(void)
{
    Server srv = { 0 };
    BlockDriverState *bs;
    Pipe pipes[PIPE_REQS];
    int running = PIPE_REQS;
    g_autofree uint8_t *buf = g_malloc(PIPE_LEN);

    if (!server_start(&srv)) {
        return;
    }
    bs = open_nbd(&srv);
    for (int i = 0; i < PIPE_REQS; i++) {
        pipes[i] = (Pipe) { .bs = bs, .index = i, .running = &running };
        coroutine_enter(coroutine_create(pipe_write, &pipes[i]));
    }
    /* They all wait for replies: one connection, all in flight. */
    g_assert_cmpint(running, >, 1);
    while (running > 0) {
        aio_poll(aio_main_context(), true);
    }
    for (int i = 0; i < PIPE_REQS; i++) {
        g_assert_cmpint(pipes[i].ret, ==, 0);
        g_assert_cmpint(bdrv_pread(bs, (int64_t)i * PIPE_LEN, PIPE_LEN, buf,
                                   0), ==, 0);
        for (int j = 0; j < PIPE_LEN; j++) {
            g_assert_cmpint(buf[j], ==, i + 1);
        }
    }
    bdrv_unref(bs);
    server_free(&srv);
}

/* I/O on the node from a coroutine in the node's (current) context. */
typedef struct CtxIo {
    BlockDriverState *bs;
    int64_t offset;
    uint8_t fill;                /* written, then read back and checked */
    int ret;
} CtxIo;

static void coroutine_fn ctx_io_co(void *opaque)
{
    CtxIo *c = opaque;
    g_autofree uint8_t *buf = g_malloc(64 * KiB);
    QIOVector qiov;

    memset(buf, c->fill, 64 * KiB);
    qiov_init_buf(&qiov, buf, 64 * KiB);
    c->ret = bdrv_co_pwritev(c->bs, c->offset, 64 * KiB, &qiov, 0);
    if (c->ret == 0) {
        memset(buf, 0, 64 * KiB);
        c->ret = bdrv_co_preadv(c->bs, c->offset, 64 * KiB, &qiov, 0);
    }
    for (int i = 0; c->ret == 0 && i < 64 * KiB; i++) {
        if (buf[i] != c->fill) {
            c->ret = -EILSEQ;
        }
    }
    qiov_destroy(&qiov);
}

static int io_in_node_ctx(BlockDriverState *bs, int64_t offset, uint8_t fill)
{
    CtxIo c = { .bs = bs, .offset = offset, .fill = fill };

    aio_run_in_context(bdrv_get_aio_context(bs), ctx_io_co, &c);
    return c.ret;
}

/*
 * The node moves to an iothread and back; its connection follows it: I/O
 * in the iothread, back in the main thread, a move there and back with
 * no I/O in between, close after a move back without I/O (the close
 * takes the connection over from the iothread), and a server that dies
 * while the node is in the iothread.
 */
static void test_iothread(void)
{
    Server srv = { 0 };
    BlockDriverState *bs;
    IOThread *t;
    AioContext *io, *main_ctx = aio_main_context();
    Error *err = NULL;

    if (!server_start(&srv)) {
        return;
    }
    t = iothread_create("nbd-io0", &err);
    g_assert_nonnull(t);
    io = iothread_get_aio_context(t);
    bs = open_nbd(&srv);

    g_assert_true(bdrv_try_change_aio_context(bs, io, NULL, &err));
    g_assert_true(bdrv_get_aio_context(bs) == io);
    g_assert_cmpint(io_in_node_ctx(bs, 0, 0x31), ==, 0);
    g_assert_cmpint(io_in_node_ctx(bs, 64 * KiB, 0x32), ==, 0);
    g_assert_true(bdrv_try_change_aio_context(bs, main_ctx, NULL, &err));
    g_assert_cmpint(io_in_node_ctx(bs, 128 * KiB, 0x33), ==, 0);

    g_assert_true(bdrv_try_change_aio_context(bs, io, NULL, &err));
    g_assert_true(bdrv_try_change_aio_context(bs, main_ctx, NULL, &err));
    g_assert_cmpint(io_in_node_ctx(bs, 0, 0x34), ==, 0);

    g_assert_true(bdrv_try_change_aio_context(bs, io, NULL, &err));
    g_assert_cmpint(io_in_node_ctx(bs, 0, 0x35), ==, 0);
    g_assert_true(bdrv_try_change_aio_context(bs, main_ctx, NULL, &err));
    bdrv_unref(bs);

    bs = open_nbd(&srv);
    g_assert_true(bdrv_try_change_aio_context(bs, io, NULL, &err));
    g_assert_cmpint(io_in_node_ctx(bs, 192 * KiB, 0x36), ==, 0);
    server_kill(&srv);
    g_assert_cmpint(io_in_node_ctx(bs, 0, 0x37), ==, -EIO);
    g_assert_true(bdrv_try_change_aio_context(bs, main_ctx, NULL, &err));
    bdrv_unref(bs);
    g_assert_null(err);
    iothread_destroy(t);
    server_free(&srv);
}

/*
 * The node moves to an iothread (I/O there, so its connection runs
 * there) and back, and the iothread ends before the node sees another
 * request.  The connection must have left the iothread during the move
 * (BlockDriver.detach/attach_aio_context): a driver that followed its
 * node lazily would ask the dead thread to let go of it and hang.
 */
static void test_iothread_gone(void)
{
    Server srv = { 0 };
    BlockDriverState *bs;
    IOThread *t;
    Error *err = NULL;

    if (!server_start(&srv)) {
        return;
    }
    t = iothread_create("nbd-io1", &err);
    g_assert_nonnull(t);
    bs = open_nbd(&srv);

    g_assert_true(bdrv_try_change_aio_context(bs, iothread_get_aio_context(t),
                                              NULL, &err));
    g_assert_cmpint(io_in_node_ctx(bs, 0, 0x41), ==, 0);
    g_assert_true(bdrv_try_change_aio_context(bs, aio_main_context(), NULL,
                                              &err));
    iothread_destroy(t);
    g_assert_cmpint(io_in_node_ctx(bs, 64 * KiB, 0x42), ==, 0);
    g_assert_cmpint(io_in_node_ctx(bs, 0, 0x43), ==, 0);
    g_assert_null(err);
    bdrv_unref(bs);
    server_free(&srv);
}

static void test_server_gone(void)
{
    Server srv = { 0 };
    BlockDriverState *bs;
    uint8_t buf[512] = { 0 };

    if (!server_start(&srv)) {
        return;
    }
    bs = open_nbd(&srv);
    g_assert_cmpint(bdrv_pread(bs, 0, sizeof(buf), buf, 0), ==, 0);
    server_kill(&srv);
    g_assert_cmpint(bdrv_pread(bs, 0, sizeof(buf), buf, 0), ==, -EIO);
    g_assert_cmpint(bdrv_pwrite(bs, 0, sizeof(buf), buf, 0), ==, -EIO);
    g_assert_cmpint(bdrv_flush(bs), ==, -EIO);
    bdrv_unref(bs);
    server_free(&srv);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    signal(SIGPIPE, SIG_IGN);
    g_test_add_func("/nbd-client/uri/good", test_uri_good);
    g_test_add_func("/nbd-client/uri/bad", test_uri_bad);
    g_test_add_func("/nbd-client/node/basics", test_node_basics);
    g_test_add_func("/nbd-client/status/after-write", test_status_after_write);
    g_test_add_func("/nbd-client/status/many-extents",
                    test_status_many_extents);
    g_test_add_func("/nbd-client/status/concurrent", test_status_concurrent);
    g_test_add_func("/nbd-client/pipelined", test_pipelined);
    g_test_add_func("/nbd-client/server-gone", test_server_gone);
    g_test_add_func("/nbd-client/iothread", test_iothread);
    g_test_add_func("/nbd-client/iothread-gone", test_iothread_gone);
    return g_test_run();
}
