/*
 * linux-aio engine (io_setup/io_submit/io_getevents).
 *
 * One LinuxAioState per AioContext, created on first use.  Requests queued
 * by coroutines during one loop iteration are submitted together in a
 * single io_submit() from a BH (batching); completions arrive through an
 * eventfd registered in the context and wake the waiting coroutines there.
 * Callers that get NULL from aio_get_linux_aio() fall back to the thread
 * pool.  Buffers must satisfy O_DIRECT alignment when fd is O_DIRECT.
 */
#ifndef UTIL_LINUX_AIO_H
#define UTIL_LINUX_AIO_H

#include <stdint.h>

#include "util/aio.h"
#include "util/iov.h"

typedef struct LinuxAioState LinuxAioState;

typedef enum LaioType {
    LAIO_READ,
    LAIO_WRITE,
    LAIO_FDSYNC,
} LaioType;

/* The context's engine, created on first call; NULL (errp set) when the
 * kernel refuses io_setup. */
LinuxAioState *aio_get_linux_aio(AioContext *ctx, Error **errp);

/*
 * Reads or writes qiov at offset on fd from the current coroutine (which
 * must run in the engine's context).  Returns bytes transferred (short
 * reads past EOF are zero-filled and count as complete) or -errno.
 */
int64_t coroutine_fn laio_co_submit(LinuxAioState *s, int fd, int64_t offset,
                                    QIOVector *qiov, LaioType type);

/* Destroys an engine (its context is shutting down). */
void laio_cleanup(LinuxAioState *s);

#endif
