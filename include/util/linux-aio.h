/*
 * linux-aio engine (io_setup/io_submit/io_getevents).
 *
 * One LinuxAioState per AioContext, created on first use.  Requests queued
 * by coroutines during one loop iteration are submitted together from a BH
 * before the context next waits (batching, with nothing to call: every
 * user benefits), in batches of at most a few requests so that the device
 * starts early (see LAIO_MAX_BATCH); completions arrive through an
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

/*
 * A queue this long is submitted at once instead of at the end of the
 * iteration, so that the device starts on it while the caller prepares
 * the next requests.  Measured with bench/io-path (4k random, QD 16,
 * O_DIRECT) on a virtio disk: batches of 4 were 15-25% faster than
 * batches of 16, and about as fast as one request per io_submit() for
 * reads (faster for writes); on tmpfs they cost 5-10% against 16 but stay
 * far ahead of one request per call (which took 1.5 times as long).
 */
#define LAIO_MAX_BATCH 4

typedef enum LaioType {
    LAIO_READ,
    LAIO_WRITE,
    LAIO_FDSYNC,
} LaioType;

/* The context's engine, created on first call and kept in ctx's
 * AIO_SLOT_LINUX_AIO slot until laio_cleanup() or until ctx is freed;
 * NULL (errp set) when the kernel refuses io_setup (a later call tries
 * again).  ctx's thread only (or before that thread runs ctx). */
LinuxAioState *aio_get_linux_aio(AioContext *ctx, Error **errp);

/*
 * Reads or writes qiov at offset on fd from the current coroutine (which
 * must run in the engine's context).  Returns bytes transferred (short
 * reads past EOF are zero-filled and count as complete) or -errno.
 * A short write is resubmitted for its remainder; a write round that makes
 * no progress fails with -EIO.  qiov may have at most IOV_MAX elements.
 * LAIO_FDSYNC returns 0 or -errno; -EINVAL means the kernel does not
 * support it (fall back to fdatasync() in the thread pool).
 */
int64_t coroutine_fn laio_co_submit(LinuxAioState *s, int fd, int64_t offset,
                                    QIOVector *qiov, LaioType type);

/* Destroys an engine before its context goes away (freeing the context
 * does it too).  No request may be in flight; ctx's thread only, or after
 * that thread stopped. */
void laio_cleanup(LinuxAioState *s);

/* The context's engine if one was created, else NULL (never creates).
 * ctx's thread only. */
LinuxAioState *aio_find_linux_aio(AioContext *ctx);

/* Counters since creation: io_submit() calls and requests submitted (a
 * resubmitted short write counts again).  submits < requests shows
 * batching.  Any thread; the two values may be from different instants. */
void laio_get_stats(LinuxAioState *s, uint64_t *submits, uint64_t *requests);

#endif
