/*
 * The blockd-io command language (see include/tools/io-cmds.h): parsing
 * of qemu-io style command lines, the commands themselves, and qemu-io's
 * output formats ("wrote N/N bytes at offset X" plus the rate line).
 *
 * Every command is a coroutine_fn in the backend's context: synchronous
 * commands call blk_co_* directly; aio_read/aio_write start requests with
 * blk_aio_* and report from the completion callback, so several can be in
 * flight.  The same code runs under blockd-io's prompt and inside the
 * daemon for x-blockdev-io (whose handler is in io-cmds-qmp.c).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/io-cmds.h"

/*
 * State of one command interpreter.  Main thread / backend context only.
 * blk: one reference owned by the state (NULL when closed).
 */
struct IoCmdState {
    BlockBackend *blk;
    IoCmdPrintFn *print;
    void *print_opaque;
    IoCmdOpenFn *open;
    void *open_opaque;
    unsigned aio_in_flight;     /* aio requests started, not completed */
    bool aio_failed;            /* an aio request failed since last wait */
    Coroutine *aio_waiter;      /* coroutine in io_cmd_wait_aio, or NULL */
    bool quit;
};

typedef struct IoCmdDef IoCmdDef;
typedef int coroutine_fn IoCmdFn(IoCmdState *s, const IoCmdDef *def,
                                 int argc, char **argv);

/* One command of the table at the end of the command section. */
struct IoCmdDef {
    const char *name;
    IoCmdFn *fn;
    const char *opts;       /* getopt option string, NULL: no options */
    int min_args;           /* positional arguments after the options */
    int max_args;           /* -1: no limit */
    bool needs_file;
    const char *usage;
    const char *help;
};

/* ---- Output helpers ---- */

static void G_GNUC_PRINTF(3, 4)
io_out(IoCmdState *s, bool is_error, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *text = NULL;

    va_start(ap, fmt);
    text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    s->print(s->print_opaque, text, is_error);
}

#define io_printf(s, ...) io_out((s), false, __VA_ARGS__)
#define io_errorf(s, ...) io_out((s), true, __VA_ARGS__)

char *io_fmt_size(double value)
{
    static const char *const suffix[] = {
        " bytes", " KiB", " MiB", " GiB", " TiB", " PiB", " EiB",
    };
    unsigned i = 0;
    char *text, *trim;

    while (value >= 1024.0 && i < G_N_ELEMENTS(suffix) - 1) {
        value /= 1024.0;
        i++;
    }
    /* Three decimals like qemu-io, but "64 KiB" rather than "64.000 KiB". */
    text = g_strdup_printf("%.3f%s", value, suffix[i]);
    trim = strstr(text, ".000");
    if (trim) {
        memmove(trim, trim + 4, strlen(trim + 4) + 1);
    }
    return text;
}

static char *io_fmt_time(double secs)
{
    unsigned hours, mins;

    if (secs < 60.0) {
        return g_strdup_printf("%05.2f sec", secs);
    }
    hours = (unsigned)(secs / 3600.0);
    secs -= hours * 3600.0;
    mins = (unsigned)(secs / 60.0);
    secs -= mins * 60.0;
    return g_strdup_printf("%u:%02u:%05.2f", hours, mins, secs);
}

/* The two report lines of read/write/discard, as qemu-io prints them. */
static void io_report(IoCmdState *s, const char *op, int64_t start_ns,
                      int64_t offset, int64_t bytes, int ops)
{
    double secs = (clock_ns() - start_ns) / 1e9;
    g_autofree char *total = io_fmt_size((double)bytes);
    g_autofree char *rate = io_fmt_size(secs > 0 ? bytes / secs : INFINITY);
    g_autofree char *ts = io_fmt_time(secs);

    io_printf(s, "%s %" PRId64 "/%" PRId64 " bytes at offset %" PRId64 "\n",
              op, bytes, bytes, offset);
    io_printf(s, "%s, %d ops; %s (%s/sec and %.4f ops/sec)\n", total, ops, ts,
              rate, secs > 0 ? ops / secs : INFINITY);
}

/* qemu-io -v: 16 bytes per line, hex then printable characters. */
static void io_dump(IoCmdState *s, const uint8_t *buf, int64_t offset,
                    int64_t len)
{
    for (int64_t i = 0; i < len; i += 16) {
        GString *line = g_string_new(NULL);
        int64_t n = MIN(16, len - i);

        g_string_append_printf(line, "%08" PRIx64 ":  ", offset + i);
        for (int64_t j = 0; j < n; j++) {
            g_string_append_printf(line, "%02x ", buf[i + j]);
        }
        g_string_append_c(line, ' ');
        for (int64_t j = 0; j < n; j++) {
            g_string_append_c(line, isprint(buf[i + j]) ? buf[i + j] : '.');
        }
        g_string_append_c(line, '\n');
        s->print(s->print_opaque, line->str, false);
        g_string_free(line, TRUE);
    }
}

/* ---- Argument parsing ---- */

bool io_parse_size(const char *str, int64_t *out)
{
    char *end;
    double mult = 1.0, value;
    bool is_hex = str[0] == '0' && (str[1] == 'x' || str[1] == 'X');

    if (!str[0] || str[0] == '-' || isspace((unsigned char)str[0])) {
        return false;
    }
    errno = 0;
    if (is_hex) {
        value = (double)strtoull(str, &end, 16);
    } else {
        value = strtod(str, &end);
    }
    if (errno || end == str) {
        return false;
    }
    switch (*end) {
    case '\0':
        break;
    case 'b': case 'B': mult = 1.0; end++; break;
    case 'k': case 'K': mult = 0x1p10; end++; break;
    case 'm': case 'M': mult = 0x1p20; end++; break;
    case 'g': case 'G': mult = 0x1p30; end++; break;
    case 't': case 'T': mult = 0x1p40; end++; break;
    case 'p': case 'P': mult = 0x1p50; end++; break;
    case 'e': case 'E': mult = 0x1p60; end++; break;
    default:
        return false;
    }
    value *= mult;
    /* A fraction of a byte, "1e3" style exponents or junk: refuse. */
    if (*end || value != floor(value) || value >= 0x1p63 ||
        (!is_hex && mult == 1.0 && strpbrk(str, ".eE"))) {
        return false;
    }
    *out = (int64_t)value;
    return true;
}

static bool io_parse_num(IoCmdState *s, const char *str, int64_t *out)
{
    if (!io_parse_size(str, out)) {
        io_errorf(s, "Parsing error: non-numeric argument, or "
                  "extraneous/unrecognized suffix -- %s\n", str);
        return false;
    }
    return true;
}

static bool io_parse_pattern(IoCmdState *s, const char *str, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(str, &end, 0);
    if (errno || end == str || *end || v < 0 || v > 255) {
        io_errorf(s, "%s is not a valid pattern byte\n", str);
        return false;
    }
    *out = (int)v;
    return true;
}

/* "off len [len...]": the offset and the lengths of a vector request. */
static bool io_parse_vector(IoCmdState *s, int argc, char **argv,
                            int64_t *offset, GArray *lens, int64_t *total)
{
    if (!io_parse_num(s, argv[0], offset)) {
        return false;
    }
    *total = 0;
    for (int i = 1; i < argc; i++) {
        int64_t len;

        if (!io_parse_num(s, argv[i], &len)) {
            return false;
        }
        if (len > BDRV_REQUEST_MAX_BYTES - *total) {
            io_errorf(s, "length too large: %s\n", argv[i]);
            return false;
        }
        g_array_append_val(lens, len);
        *total += len;
    }
    return true;
}

/* ---- Buffers ---- */

static void *io_alloc(IoCmdState *s, int64_t len, int pattern)
{
    void *buf = bdrv_blockalign(blk_bs(s->blk), MAX(len, 1));

    memset(buf, pattern, MAX(len, 1));
    return buf;
}

/* True if buf[0..len) holds only pattern; prints qemu-io's message if not. */
static bool io_verify(IoCmdState *s, const uint8_t *buf, int64_t offset,
                      int64_t len, int pattern)
{
    for (int64_t i = 0; i < len; i++) {
        if (buf[i] != pattern) {
            io_printf(s, "Pattern verification failed at offset %" PRId64
                      ", %" PRId64 " bytes\n", offset, len);
            return false;
        }
    }
    return true;
}

static void io_fill_qiov(QIOVector *qiov, uint8_t *buf, GArray *lens)
{
    int64_t pos = 0;

    qiov_init(qiov, lens->len);
    for (guint i = 0; i < lens->len; i++) {
        int64_t len = g_array_index(lens, int64_t, i);

        /* Separate elements even when contiguous would merge them: the
         * point of readv/writev is a multi-element vector. */
        qiov_add(qiov, buf + pos, len);
        pos += len;
    }
}

/* The options the read/write commands share; which of them a command
 * accepts is its def->opts. */
typedef struct IoOpts {
    int pattern;                 /* -P, or -1 */
    bool quiet;                  /* -q */
    bool verbose;                /* -v */
    bool zero;                   /* -z: write zeroes */
    bool unmap;                  /* -u: with -z, may unmap */
    BdrvRequestFlags flags;      /* -f: FUA */
} IoOpts;

/* Parses the options (leaving optind at the first operand); false on a
 * bad or unknown option, or a combination qemu-io refuses. */
static bool io_parse_opts(IoCmdState *s, const IoCmdDef *def, int argc,
                          char **argv, IoOpts *o)
{
    int c;

    *o = (IoOpts){ .pattern = -1 };
    optind = 0;
    while ((c = getopt(argc, argv, def->opts)) != -1) {
        switch (c) {
        case 'P':
            if (!io_parse_pattern(s, optarg, &o->pattern)) {
                return false;
            }
            break;
        case 'q': o->quiet = true; break;
        case 'v': o->verbose = true; break;
        case 'z': o->zero = true; break;
        case 'u': o->unmap = true; break;
        case 'f': o->flags |= BDRV_REQ_FUA; break;
        default: return false;
        }
    }
    if (o->zero && o->pattern >= 0) {
        io_errorf(s, "-z and -P cannot be specified at the same time\n");
        return false;
    }
    if (o->unmap && !o->zero) {
        io_errorf(s, "-u requires -z to be specified\n");
        return false;
    }
    return true;
}

/* Parses the "offset length" operands of read and write. */
static bool io_parse_range(IoCmdState *s, char **argv, int64_t *offset,
                           int64_t *len)
{
    if (!io_parse_num(s, argv[0], offset) || !io_parse_num(s, argv[1], len)) {
        return false;
    }
    if (*len > BDRV_REQUEST_MAX_BYTES) {
        io_errorf(s, "length too large: %s\n", argv[1]);
        return false;
    }
    return true;
}

/* ---- Synchronous commands ---- */

static int coroutine_fn io_cmd_read(IoCmdState *s, const IoCmdDef *def,
                                    int argc, char **argv)
{
    int64_t offset, len, start;
    IoOpts o;
    int ret;
    uint8_t *buf;
    QIOVector qiov;

    if (!io_parse_opts(s, def, argc, argv, &o) ||
        !io_parse_range(s, argv + optind, &offset, &len)) {
        return -1;
    }
    buf = io_alloc(s, len, 0);
    qiov_init_buf(&qiov, buf, len);
    start = clock_ns();
    ret = blk_co_preadv(s->blk, offset, len, &qiov, 0);
    if (ret < 0) {
        io_printf(s, "read failed: %s\n", strerror(-ret));
        bdrv_vfree(buf);
        return -1;
    }
    ret = 0;
    if (o.pattern >= 0 && !io_verify(s, buf, offset, len, o.pattern)) {
        ret = -1;
    }
    if (o.verbose) {
        io_dump(s, buf, offset, len);
    }
    if (!o.quiet) {
        io_report(s, "read", start, offset, len, 1);
    }
    qiov_destroy(&qiov);
    bdrv_vfree(buf);
    return ret;
}

static int coroutine_fn io_cmd_write(IoCmdState *s, const IoCmdDef *def,
                                     int argc, char **argv)
{
    int64_t offset, len, start;
    IoOpts o;
    int ret;

    if (!io_parse_opts(s, def, argc, argv, &o) ||
        !io_parse_range(s, argv + optind, &offset, &len)) {
        return -1;
    }
    start = clock_ns();
    if (o.zero) {
        ret = blk_co_pwrite_zeroes(s->blk, offset, len,
                                   o.flags |
                                   (o.unmap ? BDRV_REQ_MAY_UNMAP : 0));
    } else {
        uint8_t *buf = io_alloc(s, len, o.pattern >= 0 ? o.pattern : 0xcd);
        QIOVector qiov;

        qiov_init_buf(&qiov, buf, len);
        ret = blk_co_pwritev(s->blk, offset, len, &qiov, o.flags);
        qiov_destroy(&qiov);
        bdrv_vfree(buf);
    }
    if (ret < 0) {
        io_printf(s, "write failed: %s\n", strerror(-ret));
        return -1;
    }
    if (!o.quiet) {
        io_report(s, "wrote", start, offset, len, 1);
    }
    return 0;
}

/* readv and writev: one request over a vector of the given lengths. */
static int coroutine_fn io_cmd_rwv(IoCmdState *s, const IoCmdDef *def,
                                   int argc, char **argv)
{
    bool is_write = def->name[0] == 'w';
    int64_t offset, total, start;
    IoOpts o;
    int ret = 0;
    g_autoptr(GArray) lens = g_array_new(FALSE, FALSE, sizeof(int64_t));
    uint8_t *buf;
    QIOVector qiov;

    if (!io_parse_opts(s, def, argc, argv, &o) ||
        !io_parse_vector(s, argc - optind, argv + optind, &offset, lens,
                         &total)) {
        return -1;
    }
    buf = io_alloc(s, total,
                   is_write ? (o.pattern >= 0 ? o.pattern : 0xcd) : 0);
    io_fill_qiov(&qiov, buf, lens);
    start = clock_ns();
    if (is_write) {
        ret = blk_co_pwritev(s->blk, offset, total, &qiov, 0);
    } else {
        ret = blk_co_preadv(s->blk, offset, total, &qiov, 0);
    }
    if (ret < 0) {
        io_printf(s, "%s failed: %s\n", is_write ? "writev" : "readv",
                  strerror(-ret));
        ret = -1;
        goto out;
    }
    if (!is_write && o.pattern >= 0 &&
        !io_verify(s, buf, offset, total, o.pattern)) {
        ret = -1;
    }
    if (o.verbose && !is_write) {
        io_dump(s, buf, offset, total);
    }
    if (!o.quiet) {
        io_report(s, is_write ? "wrote" : "read", start, offset, total, 1);
    }
out:
    qiov_destroy(&qiov);
    bdrv_vfree(buf);
    return ret;
}

static int coroutine_fn io_cmd_discard(IoCmdState *s, const IoCmdDef *def,
                                       int argc, char **argv)
{
    int64_t offset, len, start;
    bool quiet = false;
    int c, ret;

    optind = 0;
    while ((c = getopt(argc, argv, def->opts)) != -1) {
        if (c != 'q') {
            return -1;
        }
        quiet = true;
    }
    if (!io_parse_num(s, argv[optind], &offset) ||
        !io_parse_num(s, argv[optind + 1], &len)) {
        return -1;
    }
    start = clock_ns();
    ret = blk_co_pdiscard(s->blk, offset, len);
    if (ret < 0) {
        io_printf(s, "discard failed: %s\n", strerror(-ret));
        return -1;
    }
    if (!quiet) {
        io_report(s, "discard", start, offset, len, 1);
    }
    return 0;
}

static int coroutine_fn io_cmd_flush(IoCmdState *s, const IoCmdDef *def,
                                     int argc, char **argv)
{
    int ret = blk_co_flush(s->blk);

    if (ret < 0) {
        io_printf(s, "flush failed: %s\n", strerror(-ret));
        return -1;
    }
    return 0;
}

/* Allocation status of [offset, offset+bytes) at the top node, in
 * allocation mode; *pnum as bdrv_co_is_allocated. */
static int coroutine_fn io_is_allocated(IoCmdState *s, int64_t offset,
                                        int64_t bytes, int64_t *pnum)
{
    return bdrv_co_is_allocated(blk_bs(s->blk), offset, bytes, pnum);
}

static int coroutine_fn io_cmd_alloc(IoCmdState *s, const IoCmdDef *def,
                                     int argc, char **argv)
{
    int64_t offset, count = 512, len, pos, end, sum = 0;
    g_autofree char *where = NULL;

    if (!io_parse_num(s, argv[1], &offset) ||
        (argc > 2 && !io_parse_num(s, argv[2], &count))) {
        return -1;
    }
    len = blk_getlength(s->blk);
    if (len < 0) {
        io_printf(s, "alloc failed: %s\n", strerror((int)-len));
        return -1;
    }
    if (offset > len || count > len - offset) {
        io_printf(s, "alloc failed: %s\n", strerror(EIO));
        return -1;
    }
    end = offset + count;
    for (pos = offset; pos < end;) {
        int64_t pnum;
        int ret = io_is_allocated(s, pos, end - pos, &pnum);

        if (ret < 0) {
            io_printf(s, "alloc failed: %s\n", strerror(-ret));
            return -1;
        }
        if (pnum == 0) {
            break;
        }
        if (ret) {
            sum += pnum;
        }
        pos += pnum;
    }
    where = io_fmt_size((double)offset);
    io_printf(s, "%" PRId64 "/%" PRId64 " bytes allocated at offset %s\n",
              sum, count, where);
    return 0;
}

static void io_map_line(IoCmdState *s, int64_t offset, int64_t bytes,
                        bool allocated)
{
    g_autofree char *len = io_fmt_size((double)bytes);
    g_autofree char *off = io_fmt_size((double)offset);

    io_printf(s, "%s (0x%" PRIx64 ") bytes %s allocated at offset %s "
              "(0x%" PRIx64 ")\n", len, bytes, allocated ? "   " : "not",
              off, offset);
}

static int coroutine_fn io_cmd_map(IoCmdState *s, const IoCmdDef *def,
                                   int argc, char **argv)
{
    int64_t len = blk_getlength(s->blk), pos = 0, run_start = 0;
    int run_alloc = -1;

    if (len < 0) {
        io_printf(s, "map failed: %s\n", strerror((int)-len));
        return -1;
    }
    while (pos < len) {
        int64_t pnum;
        int ret = io_is_allocated(s, pos, len - pos, &pnum);

        if (ret < 0) {
            io_printf(s, "map failed: %s\n", strerror(-ret));
            return -1;
        }
        if (pnum == 0) {
            break;
        }
        /* Merge runs of equal state into one line, as qemu-io does. */
        if (ret != run_alloc && run_alloc >= 0) {
            io_map_line(s, run_start, pos - run_start, run_alloc);
            run_start = pos;
        }
        run_alloc = ret;
        pos += pnum;
    }
    if (run_alloc >= 0) {
        io_map_line(s, run_start, pos - run_start, run_alloc);
    }
    return 0;
}

static int coroutine_fn io_cmd_length(IoCmdState *s, const IoCmdDef *def,
                                      int argc, char **argv)
{
    int64_t len = blk_getlength(s->blk);
    g_autofree char *text = NULL;

    if (len < 0) {
        io_printf(s, "getlength: %s\n", strerror((int)-len));
        return -1;
    }
    text = io_fmt_size((double)len);
    io_printf(s, "%s\n", text);
    return 0;
}

static int coroutine_fn io_cmd_info(IoCmdState *s, const IoCmdDef *def,
                                    int argc, char **argv)
{
    BlockDriverState *bs = blk_bs(s->blk);

    io_printf(s, "format name: %s\n", bdrv_get_format_name(bs));
    io_printf(s, "cluster size: 0 bytes\n");
    io_printf(s, "vm state offset: 0 bytes\n");
    return 0;
}

static int coroutine_fn io_cmd_sleep(IoCmdState *s, const IoCmdDef *def,
                                     int argc, char **argv)
{
    int64_t ms;

    if (!io_parse_num(s, argv[1], &ms) || ms > INT64_MAX / 1000000) {
        return -1;
    }
    co_sleep_ns(ms * 1000000);
    return 0;
}

/* ---- Asynchronous requests ---- */

/* One aio_read / aio_write in flight; freed by its completion. */
typedef struct IoAioReq {
    IoCmdState *s;
    bool is_write;
    bool quiet;
    bool verbose;
    int pattern;                /* aio_read -P, or -1 */
    int64_t offset;
    int64_t bytes;
    int64_t start_ns;
    uint8_t *buf;               /* bdrv_blockalign()ed, owned */
    QIOVector qiov;
} IoAioReq;

static void io_aio_done(void *opaque, int ret)
{
    IoAioReq *r = opaque;
    IoCmdState *s = r->s;

    if (ret < 0) {
        io_printf(s, "%s failed: %s\n", r->is_write ? "aio_write" : "aio_read",
                  strerror(-ret));
        s->aio_failed = true;
    } else {
        if (r->pattern >= 0 && !r->is_write &&
            !io_verify(s, r->buf, r->offset, r->bytes, r->pattern)) {
            s->aio_failed = true;
        }
        if (r->verbose) {
            io_dump(s, r->buf, r->offset, r->bytes);
        }
        if (!r->quiet) {
            io_report(s, r->is_write ? "wrote" : "read", r->start_ns,
                      r->offset, r->bytes, 1);
        }
    }
    qiov_destroy(&r->qiov);
    bdrv_vfree(r->buf);
    g_free(r);
    if (--s->aio_in_flight == 0 && s->aio_waiter) {
        aio_co_wake(s->aio_waiter);
    }
}

static int coroutine_fn io_cmd_aio(IoCmdState *s, const IoCmdDef *def,
                                   int argc, char **argv)
{
    g_autoptr(GArray) lens = g_array_new(FALSE, FALSE, sizeof(int64_t));
    IoAioReq *r;
    int64_t offset, total;
    IoOpts o;
    bool is_write = strcmp(def->name, "aio_write") == 0;

    if (!io_parse_opts(s, def, argc, argv, &o) ||
        !io_parse_vector(s, argc - optind, argv + optind, &offset, lens,
                         &total)) {
        return -1;
    }
    r = g_new0(IoAioReq, 1);
    *r = (IoAioReq) {
        .s = s, .is_write = is_write, .quiet = o.quiet, .verbose = o.verbose,
        .pattern = is_write ? -1 : o.pattern, .offset = offset,
        .bytes = total, .start_ns = clock_ns(),
    };
    s->aio_in_flight++;
    if (o.zero) {
        /* No buffer: an empty vector keeps the completion path uniform. */
        qiov_init(&r->qiov, 1);
        blk_aio_pwrite_zeroes(s->blk, offset, total,
                              o.unmap ? BDRV_REQ_MAY_UNMAP : 0, io_aio_done,
                              r);
        return 0;
    }
    r->buf = io_alloc(s, total,
                      is_write ? (o.pattern >= 0 ? o.pattern : 0xcd) : 0);
    io_fill_qiov(&r->qiov, r->buf, lens);
    if (is_write) {
        blk_aio_pwritev(s->blk, offset, &r->qiov, 0, io_aio_done, r);
    } else {
        blk_aio_preadv(s->blk, offset, &r->qiov, 0, io_aio_done, r);
    }
    return 0;
}

int io_cmd_wait_aio(IoCmdState *s)
{
    int ret;

    if (in_coroutine()) {
        while (s->aio_in_flight > 0) {
            s->aio_waiter = coroutine_self();
            coroutine_yield();
            s->aio_waiter = NULL;
        }
    } else {
        while (s->aio_in_flight > 0) {
            aio_poll(current_aio_context(), true);
        }
    }
    ret = s->aio_failed ? -1 : 0;
    s->aio_failed = false;
    return ret;
}

static int coroutine_fn io_cmd_aio_flush(IoCmdState *s, const IoCmdDef *def,
                                         int argc, char **argv)
{
    return io_cmd_wait_aio(s);
}

/* ---- open, close, help, quit ---- */

static void io_close(IoCmdState *s)
{
    io_cmd_wait_aio(s);
    blk_unref(s->blk);
    s->blk = NULL;
}

static int coroutine_fn io_cmd_open(IoCmdState *s, const IoCmdDef *def,
                                    int argc, char **argv)
{
    IoCmdOpenOpts o = { 0 };
    Error *err = NULL;
    int c;

    if (!s->open) {
        io_errorf(s, "open is not available here\n");
        return -1;
    }
    if (s->blk) {
        io_errorf(s, "file open already, try 'help close'\n");
        return -1;
    }
    optind = 0;
    while ((c = getopt(argc, argv, def->opts)) != -1) {
        switch (c) {
        case 'r': o.read_only = true; break;
        case 'n': o.nocache = true; break;
        case 'f': o.format = optarg; break;
        case 'i':
            if (strcmp(optarg, "native") && strcmp(optarg, "threads")) {
                io_errorf(s, "Invalid aio option: %s\n", optarg);
                return -1;
            }
            o.aio_native = strcmp(optarg, "native") == 0;
            break;
        default: return -1;
        }
    }
    o.filename = argv[optind];
    s->blk = s->open(s->open_opaque, &o, &err);
    if (!s->blk) {
        io_errorf(s, "can't open device %s: %s\n", o.filename,
                  error_get_pretty(err));
        error_free(err);
        return -1;
    }
    return 0;
}

static int coroutine_fn io_cmd_close(IoCmdState *s, const IoCmdDef *def,
                                     int argc, char **argv)
{
    if (!s->open) {
        io_errorf(s, "close is not available here\n");
        return -1;
    }
    io_close(s);
    return 0;
}

static int coroutine_fn io_cmd_quit(IoCmdState *s, const IoCmdDef *def,
                                    int argc, char **argv)
{
    if (!s->open) {
        io_errorf(s, "quit is not available here\n");
        return -1;
    }
    s->quit = true;
    return 0;
}

static int coroutine_fn io_cmd_help(IoCmdState *s, const IoCmdDef *def,
                                    int argc, char **argv);

#define RW_OPTS "+P:qv"

static const IoCmdDef io_cmds[] = {
    { "aio_flush", io_cmd_aio_flush, NULL, 0, 0, false, "",
      "completes all outstanding aio requests" },
    { "aio_read", io_cmd_aio, RW_OPTS, 2, -1, true,
      "[-qv] [-P pattern] off len [len..]",
      "asynchronously reads a number of bytes" },
    { "aio_write", io_cmd_aio, "+P:quz", 2, -1, true,
      "[-quz] [-P pattern] off len [len..]",
      "asynchronously writes a number of bytes" },
    { "alloc", io_cmd_alloc, NULL, 1, 2, true, "offset [count]",
      "checks if offset is allocated in the file" },
    { "close", io_cmd_close, NULL, 0, 0, true, "",
      "close the current open file" },
    { "discard", io_cmd_discard, "+q", 2, 2, true, "[-q] off len",
      "discards a number of bytes at a specified offset" },
    { "flush", io_cmd_flush, NULL, 0, 0, true, "",
      "flush all in-core file state to disk" },
    { "help", io_cmd_help, NULL, 0, 1, false, "[command]",
      "help for one or all commands" },
    { "info", io_cmd_info, NULL, 0, 0, true, "",
      "prints information about the current file" },
    { "length", io_cmd_length, NULL, 0, 0, true, "",
      "gets the length of the current file" },
    { "map", io_cmd_map, NULL, 0, 0, true, "",
      "prints the allocated areas of a file" },
    { "open", io_cmd_open, "+rnf:i:", 1, 1, false,
      "[-rn] [-f fmt] [-i aio] path", "open the file specified by path" },
    { "quit", io_cmd_quit, NULL, 0, 0, false, "", "exit the program" },
    { "read", io_cmd_read, RW_OPTS, 2, 2, true, "[-qv] [-P pattern] off len",
      "reads a number of bytes at a specified offset" },
    { "readv", io_cmd_rwv, RW_OPTS, 2, -1, true,
      "[-qv] [-P pattern] off len [len..]",
      "reads a number of bytes at a specified offset" },
    { "sleep", io_cmd_sleep, NULL, 1, 1, false, "milliseconds",
      "waits for the given value in milliseconds" },
    { "write", io_cmd_write, "+P:qzuf", 2, 2, true,
      "[-fquz] [-P pattern] off len",
      "writes a number of bytes at a specified offset" },
    { "writev", io_cmd_rwv, "+P:q", 2, -1, true,
      "[-q] [-P pattern] off len [len..]",
      "writes a number of bytes at a specified offset" },
};

static const IoCmdDef *io_find_cmd(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(io_cmds); i++) {
        if (strcmp(io_cmds[i].name, name) == 0) {
            return &io_cmds[i];
        }
    }
    return NULL;
}

static void io_print_usage(IoCmdState *s, const IoCmdDef *def, bool is_error)
{
    io_out(s, is_error, "%s %s%s-- %s\n", def->name, def->usage,
           def->usage[0] ? " " : "", def->help);
}

static int coroutine_fn io_cmd_help(IoCmdState *s, const IoCmdDef *def,
                                    int argc, char **argv)
{
    if (argc > 1) {
        const IoCmdDef *d = io_find_cmd(argv[1]);

        if (!d) {
            io_errorf(s, "command %s not found\n", argv[1]);
            return -1;
        }
        io_print_usage(s, d, false);
        return 0;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(io_cmds); i++) {
        io_print_usage(s, &io_cmds[i], false);
    }
    io_printf(s, "\nUse 'help commandname' for extended help.\n");
    return 0;
}

/* ---- Dispatch ---- */

/* Checks options and argument counts before the command runs, so that the
 * commands may index argv[optind..] freely. */
static bool io_check_args(IoCmdState *s, const IoCmdDef *def, int argc,
                          char **argv)
{
    int nargs, c;

    optind = 0;
    opterr = 0;
    if (def->opts) {
        while ((c = getopt(argc, argv, def->opts)) != -1) {
            if (c == '?' || c == ':') {
                io_errorf(s, "%s: invalid option -- '%c'\n", def->name,
                          optopt);
                io_print_usage(s, def, true);
                return false;
            }
        }
        nargs = argc - optind;
    } else {
        nargs = argc - 1;
    }
    if (nargs < def->min_args || (def->max_args >= 0 &&
                                  nargs > def->max_args)) {
        if (def->max_args < 0) {
            io_errorf(s, "bad argument count %d to %s, expected at least "
                      "%d arguments\n", nargs, def->name, def->min_args);
        } else if (def->min_args == def->max_args) {
            io_errorf(s, "bad argument count %d to %s, expected %d "
                      "arguments\n", nargs, def->name, def->min_args);
        } else {
            io_errorf(s, "bad argument count %d to %s, expected between %d "
                      "and %d arguments\n", nargs, def->name, def->min_args,
                      def->max_args);
        }
        return false;
    }
    return true;
}

static int coroutine_fn io_cmd_co_dispatch(IoCmdState *s, const char *line)
{
    g_auto(GStrv) words = g_strsplit_set(line, " \t\r\n", -1);
    g_autofree char **argv = g_new0(char *, g_strv_length(words) + 1);
    const IoCmdDef *def;
    int argc = 0;

    for (char **w = words; *w; w++) {
        if (**w) {
            argv[argc++] = *w;
        }
    }
    if (argc == 0) {
        return 0;
    }
    def = io_find_cmd(argv[0]);
    if (!def) {
        io_errorf(s, "command \"%s\" not found\n", argv[0]);
        return -1;
    }
    if (def->needs_file && !s->blk) {
        io_errorf(s, "no file open, try 'help open'\n");
        return -1;
    }
    if (!io_check_args(s, def, argc, argv)) {
        return -1;
    }
    return def->fn(s, def, argc, argv);
}

typedef struct IoCmdRun {
    IoCmdState *s;
    const char *line;
    int ret;
    bool done;
} IoCmdRun;

static void coroutine_fn io_cmd_run_entry(void *opaque)
{
    IoCmdRun *run = opaque;

    run->ret = io_cmd_co_dispatch(run->s, run->line);
    run->done = true;
}

int io_cmd_run_deferred(IoCmdState *s, const char *line)
{
    IoCmdRun run = { .s = s, .line = line };

    if (in_coroutine()) {
        io_cmd_run_entry(&run);
    } else {
        coroutine_enter(coroutine_create(io_cmd_run_entry, &run));
        while (!run.done) {
            aio_poll(current_aio_context(), true);
        }
    }
    return run.ret;
}

void io_cmd_poll(IoCmdState *s)
{
    /* Engines submit what was queued in a BH, which this iteration runs;
     * completions that already arrived report too. */
    if (!in_coroutine()) {
        aio_poll(current_aio_context(), false);
    }
}

int io_cmd_run(IoCmdState *s, const char *line)
{
    int ret = io_cmd_run_deferred(s, line);

    io_cmd_poll(s);
    return ret;
}

bool io_cmd_quit_requested(const IoCmdState *s)
{
    return s->quit;
}

IoCmdState *io_cmd_state_new(BlockBackend *blk, IoCmdPrintFn *print,
                             void *print_opaque, IoCmdOpenFn *open,
                             void *open_opaque)
{
    IoCmdState *s = g_new0(IoCmdState, 1);

    if (blk) {
        blk_ref(blk);
    }
    *s = (IoCmdState) {
        .blk = blk, .print = print, .print_opaque = print_opaque,
        .open = open, .open_opaque = open_opaque,
    };
    return s;
}

void io_cmd_state_free(IoCmdState *s)
{
    if (!s) {
        return;
    }
    io_close(s);
    g_free(s);
}

