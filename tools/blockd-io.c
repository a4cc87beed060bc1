/*
 * blockd-io: the I/O exerciser, qemu-io's command line and command
 * language on top of the block layer.  Opens one image through
 * bdrv_open_image() under an anonymous BlockBackend and feeds the
 * commands (-c, or lines read at the "blockd-io> " prompt) to the shared
 * interpreter in tools/io-cmds.c.
 *
 * Exit status as qemu-io: 0 when every command succeeded, 1 otherwise
 * (including open failures and usage errors).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/block-backend.h"
#include "tools/io-cmds.h"

static void usage(void)
{
    printf(
"Usage: blockd-io [OPTIONS]... [-c COMMAND]... [FILE]\n"
"blockd-io -- exercise the blockd block layer with qemu-io's commands\n"
"\n"
"  -c, --cmd STRING    run a command (may be repeated); without -c,\n"
"                      commands are read at a prompt from stdin\n"
"  -f, --format FMT    image format (default: raw)\n"
"  -r, --read-only     open the image read-only\n"
"  -n, --nocache       cache.direct=on (O_DIRECT)\n"
"  -i, --aio MODE      aio=threads (default) or aio=native\n"
"  -h, --help          show this help\n"
"  -V, --version       show the version\n"
"\n"
"Type 'help' at the prompt for the commands.\n");
}

static void print_out(void *opaque, const char *text, bool is_error)
{
    if (is_error) {
        /* Keep the order of interleaved stdout and stderr lines. */
        fflush(stdout);
        fputs(text, stderr);
    } else {
        fputs(text, stdout);
    }
}

/* The "open" command and the FILE argument: an anonymous backend on a
 * freshly opened image. */
static BlockBackend *open_image(void *opaque, const IoCmdOpenOpts *o,
                                Error **errp)
{
    BdrvImageOpts io = {
        .filename = o->filename,
        .format = o->format ? o->format : "raw",
        .read_only = o->read_only,
        .direct = o->nocache,
        .aio_native = o->aio_native,
        .discard_unmap = true,
    };
    g_autoptr(BlockDriverState) bs = bdrv_open_image(&io, errp);
    BlockBackend *blk;

    if (!bs) {
        return NULL;
    }
    blk = blk_new(NULL, errp);
    if (blk && !blk_insert_bs(blk, bs, errp)) {
        blk_unref(blk);
        return NULL;
    }
    return blk;
}

/*
 * stdin, read with read(2) into our own buffer so that we know whether
 * the next command line is already here.  64 KiB hold a few thousand
 * commands of a script.
 */
typedef struct InputBuf {
    char data[64 * 1024];
    size_t start, end;      /* unconsumed bytes: data[start, end) */
    bool eof;
} InputBuf;

/* The next complete line (NUL-terminated in place, without its newline)
 * if one is buffered, else NULL.  A last line without a newline counts
 * once EOF was seen. */
static char *input_take_line(InputBuf *in)
{
    char *line = in->data + in->start;
    char *nl = memchr(line, '\n', in->end - in->start);

    if (nl) {
        *nl = '\0';
        in->start = nl + 1 - in->data;
        return line;
    }
    if (in->eof && in->end > in->start) {
        if (in->end == sizeof(in->data)) {
            in->end--;      /* an overlong last line loses a byte */
        }
        in->data[in->end] = '\0';
        in->start = in->end;
        return line;
    }
    return NULL;
}

/* Reads more of stdin (may block).  False at EOF or on error. */
static bool input_fill(InputBuf *in)
{
    ssize_t n;

    if (in->start > 0) {
        memmove(in->data, in->data + in->start, in->end - in->start);
        in->end -= in->start;
        in->start = 0;
    }
    if (in->end == sizeof(in->data)) {
        /* One line longer than the buffer: cut it here. */
        in->data[in->end - 1] = '\n';
        return true;
    }
    do {
        n = read(STDIN_FILENO, in->data + in->end, sizeof(in->data) - in->end);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        in->eof = true;
        return in->end > in->start;
    }
    in->end += n;
    return true;
}

/*
 * Reads commands from stdin at a prompt until EOF or "quit".  Commands
 * whose lines are already buffered run back to back without polling in
 * between, so that their aio requests go to the kernel as one batch; the
 * loop polls (submitting the batch) only before it may block on stdin.
 * On a terminal every line is read alone, so each request still goes out
 * as soon as its command was typed.
 */
static bool command_loop(IoCmdState *s)
{
    g_autofree InputBuf *in = g_new0(InputBuf, 1);
    bool ok = true, tty = isatty(STDIN_FILENO);
    char *line;

    while (!io_cmd_quit_requested(s)) {
        fputs("blockd-io> ", stdout);
        /* A person must see the prompt; a script needs no write(2) per
         * command (stdout and stderr stay ordered: see print_out). */
        if (tty) {
            fflush(stdout);
        }
        while ((line = input_take_line(in)) == NULL) {
            io_cmd_poll(s);
            if (in->eof || !input_fill(in)) {
                break;
            }
        }
        if (!line) {
            break;
        }
        if (io_cmd_run_deferred(s, line) < 0) {
            ok = false;
        }
    }
    io_cmd_poll(s);
    return ok;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "cmd", required_argument, NULL, 'c' },
        { "format", required_argument, NULL, 'f' },
        { "read-only", no_argument, NULL, 'r' },
        { "nocache", no_argument, NULL, 'n' },
        { "aio", required_argument, NULL, 'i' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    g_autoptr(GPtrArray) cmds = g_ptr_array_new();
    IoCmdOpenOpts o = { 0 };
    BlockBackend *blk = NULL;
    IoCmdState *s;
    bool ok = true;
    int c;

    error_set_progname("blockd-io");
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+c:f:rni:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': g_ptr_array_add(cmds, optarg); break;
        case 'f': o.format = optarg; break;
        case 'r': o.read_only = true; break;
        case 'n': o.nocache = true; break;
        case 'i':
            if (strcmp(optarg, "native") && strcmp(optarg, "threads")) {
                error_report("Invalid aio option: %s", optarg);
                return 1;
            }
            o.aio_native = strcmp(optarg, "native") == 0;
            break;
        case 'h': usage(); return 0;
        case 'V': printf("blockd-io version %s\n", BLOCKD_VERSION); return 0;
        default:
            if (optopt) {
                error_report("invalid option -- '%c'", optopt);
            } else {
                error_report("unrecognized option '%s'", argv[optind - 1]);
            }
            fprintf(stderr, "Try 'blockd-io --help' for more information\n");
            return 1;
        }
    }
    if (argc - optind > 1) {
        error_report("too many arguments");
        fprintf(stderr, "Try 'blockd-io --help' for more information\n");
        return 1;
    }
    aio_main_context();
    if (optind < argc) {
        Error *err = NULL;

        o.filename = argv[optind];
        blk = open_image(NULL, &o, &err);
        if (!blk) {
            error_report("can't open device %s: %s", o.filename,
                         error_get_pretty(err));
            error_free(err);
            return 1;
        }
    }
    s = io_cmd_state_new(blk, print_out, NULL, open_image, NULL);
    blk_unref(blk);
    if (cmds->len == 0) {
        ok = command_loop(s);
    }
    for (guint i = 0; i < cmds->len && !io_cmd_quit_requested(s); i++) {
        if (io_cmd_run(s, cmds->pdata[i]) < 0) {
            ok = false;
        }
    }
    if (io_cmd_wait_aio(s) < 0) {
        ok = false;
    }
    io_cmd_state_free(s);
    fflush(stdout);
    return ok ? 0 : 1;
}
