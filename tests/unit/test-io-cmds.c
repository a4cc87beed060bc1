/*
 * Unit tests of the blockd-io command language (include/tools/io-cmds.h):
 * the size parser and formatter shared with blockd-img, and commands run
 * against a real raw image in a temporary file, their output captured
 * through the print callback; and that aio commands run back to back with
 * io_cmd_run_deferred() share io_submit() calls (linux-aio on O_DIRECT).
 */
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "tools/io-cmds.h"
#include "util/linux-aio.h"

/* ---- io_parse_size / io_fmt_size ---- */

static void test_parse_size_ok(void)
{
    static const struct {
        const char *in;
        int64_t out;
    } cases[] = {
        { "0", 0 }, { "512", 512 }, { "64k", 65536 }, { "64K", 65536 },
        { "1M", 1048576 }, { "1.5M", 1572864 }, { "2G", 2147483648LL },
        { "1T", 1099511627776LL }, { "0x1000", 4096 }, { "0x10k", 16384 },
        { "100b", 100 }, { "1E", 1152921504606846976LL },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        int64_t v = -1;

        g_assert_true(io_parse_size(cases[i].in, &v));
        g_assert_cmpint(v, ==, cases[i].out);
    }
}

static void test_parse_size_bad(void)
{
    static const char *const bad[] = {
        "", "-1", "x", "12x", "1.5", "1e3", "1kk", " 1", "8E", "inf", "nan",
        "0.3k",
    };

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        int64_t v = 42;

        g_assert_false(io_parse_size(bad[i], &v));
        g_assert_cmpint(v, ==, 42);
    }
}

static void test_fmt_size(void)
{
    static const struct {
        double in;
        const char *out;
    } cases[] = {
        { 0, "0 bytes" }, { 100, "100 bytes" }, { 65536, "64 KiB" },
        { 1000000, "976.562 KiB" }, { 1048576, "1 MiB" },
        { 1610612736, "1.500 GiB" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *s = io_fmt_size(cases[i].in);

        g_assert_cmpstr(s, ==, cases[i].out);
    }
}

/* ---- Commands on a real image ---- */

typedef struct Fixture {
    char *path;
    BlockBackend *blk;
    IoCmdState *s;
    GString *out;       /* normal output */
    GString *err;       /* error messages */
} Fixture;

static void capture(void *opaque, const char *text, bool is_error)
{
    Fixture *f = opaque;

    g_string_append(is_error ? f->err : f->out, text);
}

static void fixture_setup(Fixture *f, gconstpointer data)
{
    BdrvImageOpts o = { .format = "raw", .discard_unmap = true };
    g_autoptr(BlockDriverState) bs = NULL;
    int fd;

    f->path = g_build_filename(g_get_tmp_dir(), "test-io-cmds-XXXXXX", NULL);
    fd = g_mkstemp(f->path);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, 1 << 20), ==, 0);
    close(fd);
    o.filename = f->path;
    bs = bdrv_open_image(&o, &error_abort);
    f->blk = blk_new(NULL, &error_abort);
    g_assert_true(blk_insert_bs(f->blk, bs, &error_abort));
    f->out = g_string_new(NULL);
    f->err = g_string_new(NULL);
    f->s = io_cmd_state_new(f->blk, capture, f, NULL, NULL);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    io_cmd_state_free(f->s);
    blk_unref(f->blk);
    g_string_free(f->out, TRUE);
    g_string_free(f->err, TRUE);
    g_unlink(f->path);
    g_free(f->path);
}

/* Runs cmd with fresh capture buffers; returns io_cmd_run's result. */
static int run(Fixture *f, const char *cmd)
{
    g_string_truncate(f->out, 0);
    g_string_truncate(f->err, 0);
    return io_cmd_run(f->s, cmd);
}

static void test_write_read_pattern(Fixture *f, gconstpointer data)
{
    uint8_t buf[512];

    g_assert_cmpint(run(f, "write -P 0xab 4096 512"), ==, 0);
    g_assert_true(g_str_has_prefix(f->out->str,
                                   "wrote 512/512 bytes at offset 4096\n"
                                   "512 bytes, 1 ops; "));
    g_assert_cmpint(run(f, "read -q -P 171 4096 512"), ==, 0);
    g_assert_cmpstr(f->out->str, ==, "");
    /* The data really is in the image. */
    g_assert_cmpint(blk_pread(f->blk, 4096, 512, buf, 0), ==, 0);
    g_assert_cmpint(buf[0], ==, 0xab);
    g_assert_cmpint(buf[511], ==, 0xab);
}

static void test_pattern_mismatch(Fixture *f, gconstpointer data)
{
    g_assert_cmpint(run(f, "read -q -P 1 0 4k"), ==, -1);
    g_assert_cmpstr(f->out->str, ==,
                    "Pattern verification failed at offset 0, 4096 bytes\n");
}

static void test_io_error(Fixture *f, gconstpointer data)
{
    g_assert_cmpint(run(f, "read 1M 1"), ==, -1);
    g_assert_cmpstr(f->out->str, ==, "read failed: Input/output error\n");
}

static void test_bad_args(Fixture *f, gconstpointer data)
{
    g_assert_cmpint(run(f, "read 0"), ==, -1);
    g_assert_cmpstr(f->err->str, ==,
                    "bad argument count 1 to read, expected 2 arguments\n");
    g_assert_cmpint(run(f, "nosuch"), ==, -1);
    g_assert_cmpstr(f->err->str, ==, "command \"nosuch\" not found\n");
    g_assert_cmpint(run(f, "write -u 0 1"), ==, -1);
    g_assert_cmpstr(f->err->str, ==, "-u requires -z to be specified\n");
    g_assert_cmpint(run(f, "read -P 256 0 1"), ==, -1);
    g_assert_cmpstr(f->err->str, ==, "256 is not a valid pattern byte\n");
}

static void test_empty_line(Fixture *f, gconstpointer data)
{
    g_assert_cmpint(run(f, "  \t\n"), ==, 0);
    g_assert_cmpstr(f->out->str, ==, "");
    g_assert_cmpstr(f->err->str, ==, "");
}

static void test_aio_in_flight(Fixture *f, gconstpointer data)
{
    g_assert_cmpint(run(f, "aio_write -q -P 7 0 64k"), ==, 0);
    g_assert_cmpint(run(f, "aio_write -q -P 8 64k 64k"), ==, 0);
    g_assert_cmpint(io_cmd_wait_aio(f->s), ==, 0);
    g_assert_cmpint(run(f, "read -q -P 7 0 64k"), ==, 0);
    g_assert_cmpint(run(f, "read -q -P 8 64k 64k"), ==, 0);
}

static void test_aio_failure_reported_by_wait(Fixture *f,
                                              gconstpointer data)
{
    g_assert_cmpint(run(f, "aio_read -q -P 9 0 4k"), ==, 0);
    g_assert_cmpint(io_cmd_wait_aio(f->s), ==, -1);
    g_assert_cmpstr(f->out->str, ==,
                    "Pattern verification failed at offset 0, 4096 bytes\n");
    /* The failure is reported once. */
    g_assert_cmpint(io_cmd_wait_aio(f->s), ==, 0);
}

static void test_length_and_alloc(Fixture *f, gconstpointer data)
{
    g_assert_cmpint(run(f, "length"), ==, 0);
    g_assert_cmpstr(f->out->str, ==, "1 MiB\n");
    g_assert_cmpint(run(f, "alloc 64k 4k"), ==, 0);
    g_assert_cmpstr(f->out->str, ==,
                    "4096/4096 bytes allocated at offset 64 KiB\n");
}

static void test_no_open_in_host_without_it(Fixture *f, gconstpointer data)
{
    g_assert_cmpint(run(f, "open /dev/null"), ==, -1);
    g_assert_cmpstr(f->err->str, ==, "open is not available here\n");
    g_assert_cmpint(run(f, "quit"), ==, -1);
    g_assert_false(io_cmd_quit_requested(f->s));
}

static void test_no_file(void)
{
    g_autoptr(GString) err = g_string_new(NULL);
    Fixture f = { .out = g_string_new(NULL), .err = err };
    IoCmdState *s = io_cmd_state_new(NULL, capture, &f, NULL, NULL);

    g_assert_cmpint(io_cmd_run(s, "read 0 1"), ==, -1);
    g_assert_cmpstr(err->str, ==, "no file open, try 'help open'\n");
    io_cmd_state_free(s);
    g_string_free(f.out, TRUE);
}

/* ---- Batching of a script's aio requests (linux-aio, O_DIRECT) ---- */

static void discard_output(void *opaque, const char *text, bool is_error)
{
}

/* Runs 16 aio_write commands (deferred or not) on an O_DIRECT image with
 * aio=native and returns the io_submit() calls they took; the data is
 * checked afterwards. */
static uint64_t submits_for_16_writes(bool deferred)
{
    g_autofree char *path = g_build_filename("/var/tmp",
                                             "test-io-cmds-XXXXXX", NULL);
    BdrvImageOpts o = { .format = "raw", .direct = true, .aio_native = true };
    g_autoptr(BlockDriverState) bs = NULL;
    LinuxAioState *laio;
    uint64_t sub0, req0, sub1, req1;
    BlockBackend *blk;
    IoCmdState *s;
    int fd = g_mkstemp(path);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, 1 << 20), ==, 0);
    close(fd);
    o.filename = path;
    bs = bdrv_open_image(&o, &error_abort);
    blk = blk_new(NULL, &error_abort);
    g_assert_true(blk_insert_bs(blk, bs, &error_abort));
    s = io_cmd_state_new(blk, discard_output, NULL, NULL, NULL);
    laio = aio_get_linux_aio(aio_main_context(), &error_abort);
    laio_get_stats(laio, &sub0, &req0);
    for (int i = 0; i < 16; i++) {
        g_autofree char *cmd = g_strdup_printf("aio_write -q -P %d %dk 4k",
                                               i + 1, i * 8);

        g_assert_cmpint(deferred ? io_cmd_run_deferred(s, cmd)
                                 : io_cmd_run(s, cmd), ==, 0);
    }
    io_cmd_poll(s);
    g_assert_cmpint(io_cmd_wait_aio(s), ==, 0);
    laio_get_stats(laio, &sub1, &req1);
    g_assert_cmpuint(req1 - req0, ==, 16);
    for (int i = 0; i < 16; i++) {
        g_autofree char *cmd = g_strdup_printf("read -q -P %d %dk 4k",
                                               i + 1, i * 8);

        g_assert_cmpint(io_cmd_run(s, cmd), ==, 0);
    }
    io_cmd_state_free(s);
    blk_unref(blk);
    g_unlink(path);
    return sub1 - sub0;
}

/* Commands run back to back with io_cmd_run_deferred() share io_submit()
 * calls (a full batch goes out at once); io_cmd_run() submits each
 * command's request before it returns. */
static void test_deferred_batches_submissions(void)
{
    int fd = open("/var/tmp", O_TMPFILE | O_RDWR | O_DIRECT, 0600);

    if (fd < 0) {
        g_test_skip("/var/tmp does not take O_DIRECT");
        return;
    }
    close(fd);
    g_assert_cmpuint(submits_for_16_writes(true), ==, 16 / LAIO_MAX_BATCH);
    g_assert_cmpuint(submits_for_16_writes(false), ==, 16);
}

#define ADD(name, fn) \
    g_test_add("/io-cmds/" name, Fixture, NULL, fixture_setup, fn, \
               fixture_teardown)

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    aio_main_context();
    g_test_add_func("/io-cmds/parse-size/ok", test_parse_size_ok);
    g_test_add_func("/io-cmds/parse-size/bad", test_parse_size_bad);
    g_test_add_func("/io-cmds/fmt-size", test_fmt_size);
    g_test_add_func("/io-cmds/no-file", test_no_file);
    g_test_add_func("/io-cmds/deferred-batches-submissions",
                    test_deferred_batches_submissions);
    ADD("write-read-pattern", test_write_read_pattern);
    ADD("pattern-mismatch", test_pattern_mismatch);
    ADD("io-error", test_io_error);
    ADD("bad-args", test_bad_args);
    ADD("empty-line", test_empty_line);
    ADD("aio-in-flight", test_aio_in_flight);
    ADD("aio-failure-reported-by-wait", test_aio_failure_reported_by_wait);
    ADD("length-and-alloc", test_length_and_alloc);
    ADD("no-open-without-host-support", test_no_open_in_host_without_it);
    return g_test_run();
}
