/*
 * The blockd-io command language (qemu-io's: "write -P 0xab 0 64k",
 * "read -P", "aio_write", "alloc", "map", ...), shared by the blockd-io
 * tool and the daemon's test-only QMP command x-blockdev-io.
 *
 * An IoCmdState binds the language to one BlockBackend and to an output
 * sink.  The tool prints to stdout; the QMP handler collects the text and
 * returns it.  Output follows qemu-io's formats so that iotest golden
 * files and filters written for one read the other.
 *
 * Threads: an IoCmdState is used in the main thread (the backend's
 * context) only; commands run as coroutines in that context.
 */
#ifndef TOOLS_IO_CMDS_H
#define TOOLS_IO_CMDS_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block-backend.h"

typedef struct IoCmdState IoCmdState;

/* Receives each piece of output text (NUL-terminated, usually one or more
 * whole lines).  is_error: the text is an error message (the tool sends
 * it to stderr; the QMP handler keeps it in the output). */
typedef void IoCmdPrintFn(void *opaque, const char *text, bool is_error);

/* What the "open" command asks for. */
typedef struct IoCmdOpenOpts {
    const char *filename;
    const char *format;     /* NULL: raw */
    bool read_only;         /* -r */
    bool nocache;           /* -n: cache.direct=on */
    bool aio_native;        /* -i native */
} IoCmdOpenOpts;

/* Opens an image for the "open" command: a new backend (one reference for
 * the caller) or NULL with errp set.  Hosts without "open" pass NULL. */
typedef BlockBackend *IoCmdOpenFn(void *opaque, const IoCmdOpenOpts *o,
                                  Error **errp);

/*
 * A new command state on blk (which may be NULL: only "open", "help",
 * "sleep" and "quit" work then); takes its own reference to blk.  print
 * receives all output.  open may be NULL (then "open" fails: the daemon
 * does not open images from x-blockdev-io).
 */
IoCmdState *io_cmd_state_new(BlockBackend *blk, IoCmdPrintFn *print,
                             void *print_opaque, IoCmdOpenFn *open,
                             void *open_opaque);
/* Waits for outstanding aio requests, drops the backend and frees s. */
void io_cmd_state_free(IoCmdState *s);

/*
 * Runs one command line.  Returns 0 on success, -1 when the command failed
 * (its message was printed).  Requests started by aio_read/aio_write may
 * still be in flight afterwards; they print when they complete.  Runs the
 * command in a coroutine: directly when called from one (the QMP handler),
 * otherwise in a new coroutine while polling the current context, and
 * then ends with io_cmd_poll() so that aio requests go out at once.
 */
int io_cmd_run(IoCmdState *s, const char *line);
/*
 * As io_cmd_run() but without its final non-blocking poll, for a caller
 * that has more commands at hand: requests that aio_read/aio_write queue
 * in the I/O engines stay queued, and those of consecutive commands go to
 * the kernel together (one io_submit() for a batch with linux-aio) when
 * the context next polls: in a command that waits, in io_cmd_poll() or in
 * io_cmd_wait_aio().  Call io_cmd_poll() before waiting for input.
 */
int io_cmd_run_deferred(IoCmdState *s, const char *line);
/* One non-blocking iteration of the context: submits queued requests and
 * reports finished ones.  No-op inside a coroutine (the caller's loop
 * does it). */
void io_cmd_poll(IoCmdState *s);
/* True once "quit" ran. */
bool io_cmd_quit_requested(const IoCmdState *s);
/* Waits until no aio request of s is in flight (yields when in a
 * coroutine, polls otherwise).  Returns -1 if one of them failed since the
 * last wait, else 0. */
int io_cmd_wait_aio(IoCmdState *s);

/*
 * Parses a size or offset as qemu-io and qemu-img do: a decimal or 0x hex
 * integer, optionally with one suffix k/K, M, G, T, P, E (powers of 1024)
 * or b/B (bytes), fractions allowed with a suffix ("1.5M").  False on
 * anything else, on negative values and on overflow of INT64_MAX.
 */
bool io_parse_size(const char *str, int64_t *out);

/* Human sizes: qemu-io's "64 KiB", "976.562 KiB", "100 bytes" (caller
 * frees). */
char *io_fmt_size(double value);

#endif
