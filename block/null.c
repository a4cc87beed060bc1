/*
 * null-co and null-aio: devices without storage, for tests and
 * benchmarks.  Reads return zeroes (read-zeroes=on) or leave the buffer
 * alone; writes, write-zeroes and discards are dropped.  null-co completes
 * in the request coroutine; null-aio completes from the event loop, as a
 * real asynchronous driver does.
 *
 * Test-only options (documented in qapi/block-core.json):
 *   latency-ns          every request sleeps this long on a timer first;
 *   x-error-errno       requests chosen by x-error-on fail with -errno;
 *   x-request-alignment the node's request alignment (exercises the core's
 *                       read-modify-write padding);
 *   x-max-transfer      the node's max transfer (exercises splitting).
 */
#include <errno.h>

#include "block/block_int.h"

#define NULL_DEFAULT_SIZE (1LL << 30)

/* Set at open, read-only afterwards. */
typedef struct BDRVNullState {
    int64_t length;
    uint64_t latency_ns;
    bool read_zeroes;
    bool complete_in_loop;       /* null-aio */
    int error_errno;             /* 0: none */
    NullErrorOn error_on;
} BDRVNullState;

static int null_open(BlockDriverState *bs, const BlockdevOptions *opts,
                     Error **errp)
{
    BDRVNullState *s = bs->opaque;
    const BlockdevOptionsNull *o = opts->driver == BLOCKDEV_DRIVER_NULL_AIO
                                   ? &opts->u.null_aio : &opts->u.null_co;

    s->length = o->has_size ? o->size : NULL_DEFAULT_SIZE;
    s->latency_ns = o->has_latency_ns ? o->latency_ns : 0;
    s->read_zeroes = o->has_read_zeroes && o->read_zeroes;
    s->complete_in_loop = opts->driver == BLOCKDEV_DRIVER_NULL_AIO;
    s->error_errno = o->has_x_error_errno ? (int)o->x_error_errno : 0;
    s->error_on = o->has_x_error_on ? o->x_error_on : NULL_ERROR_ON_ALL;
    if (s->length < 0) {
        error_setg(errp, "'size' must be non-negative");
        return -EINVAL;
    }
    if (o->has_x_error_errno && (o->x_error_errno < 0 ||
                                 o->x_error_errno > 4095)) {
        error_setg(errp, "'x-error-errno' must be between 0 and 4095");
        return -EINVAL;
    }
    if (o->has_x_request_alignment) {
        uint32_t a = o->x_request_alignment;

        if (a == 0 || (a & (a - 1))) {
            error_setg(errp, "'x-request-alignment' must be a power of 2");
            return -EINVAL;
        }
        bs->bl.request_alignment = a;
    }
    if (o->has_x_max_transfer) {
        if (o->x_max_transfer % bs->bl.request_alignment) {
            error_setg(errp, "'x-max-transfer' must be a multiple of the "
                       "request alignment");
            return -EINVAL;
        }
        bs->bl.max_transfer = o->x_max_transfer;
    }
    /* QEMU shows these pseudo file names for null nodes. */
    bs->filename = g_strdup_printf("%s://", BlockdevDriver_str(opts->driver));
    bs->supported_write_flags = BDRV_REQ_FUA;
    bs->supported_zero_flags = BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP |
                               BDRV_REQ_NO_FALLBACK;
    return 0;
}

static int64_t null_getlength(BlockDriverState *bs)
{
    BDRVNullState *s = bs->opaque;

    return s->length;
}

/* The common part of every request: latency, then completion in the
 * right place, then the injected error if this request is chosen. */
static int coroutine_fn null_complete(BlockDriverState *bs, NullErrorOn kind)
{
    BDRVNullState *s = bs->opaque;

    if (s->latency_ns) {
        co_sleep_ns((int64_t)s->latency_ns);
    } else if (s->complete_in_loop) {
        /* Come back at the next iteration of the loop, as an AIO
         * completion would. */
        aio_co_schedule(bdrv_get_aio_context(bs), coroutine_self());
        coroutine_yield();
    }
    if (s->error_errno &&
        (s->error_on == NULL_ERROR_ON_ALL || s->error_on == kind)) {
        return -s->error_errno;
    }
    return 0;
}

static int coroutine_fn null_co_preadv(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, QIOVector *qiov,
                                       BdrvRequestFlags flags)
{
    BDRVNullState *s = bs->opaque;

    if (s->read_zeroes) {
        qiov_memset(qiov, 0, 0, bytes);
    }
    return null_complete(bs, NULL_ERROR_ON_READ);
}

static int coroutine_fn null_co_pwritev(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes, QIOVector *qiov,
                                        BdrvRequestFlags flags)
{
    return null_complete(bs, NULL_ERROR_ON_WRITE);
}

static int coroutine_fn null_co_pwrite_zeroes(BlockDriverState *bs,
                                              int64_t offset, int64_t bytes,
                                              BdrvRequestFlags flags)
{
    return null_complete(bs, NULL_ERROR_ON_WRITE);
}

static int coroutine_fn null_co_pdiscard(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes)
{
    return null_complete(bs, NULL_ERROR_ON_WRITE);
}

static int coroutine_fn null_co_flush(BlockDriverState *bs)
{
    return null_complete(bs, NULL_ERROR_ON_FLUSH);
}

/* As QEMU's null driver: never allocated data; zero with read-zeroes. */
static int coroutine_fn null_co_block_status(BlockDriverState *bs,
                                             bool want_zero, int64_t offset,
                                             int64_t bytes, int64_t *pnum,
                                             int64_t *map,
                                             BlockDriverState **file)
{
    BDRVNullState *s = bs->opaque;

    *pnum = bytes;
    *map = offset;
    *file = bs;
    return BDRV_BLOCK_OFFSET_VALID | (s->read_zeroes ? BDRV_BLOCK_ZERO : 0);
}

const BlockDriver bdrv_null_co = {
    .format_name = "null-co",
    .driver = BLOCKDEV_DRIVER_NULL_CO,
    .instance_size = sizeof(BDRVNullState),
    .is_protocol = true,
    .open = null_open,
    .getlength = null_getlength,
    .co_preadv = null_co_preadv,
    .co_pwritev = null_co_pwritev,
    .co_pwrite_zeroes = null_co_pwrite_zeroes,
    .co_pdiscard = null_co_pdiscard,
    .co_flush = null_co_flush,
    .co_block_status = null_co_block_status,
};

const BlockDriver bdrv_null_aio = {
    .format_name = "null-aio",
    .driver = BLOCKDEV_DRIVER_NULL_AIO,
    .instance_size = sizeof(BDRVNullState),
    .is_protocol = true,
    .open = null_open,
    .getlength = null_getlength,
    .co_preadv = null_co_preadv,
    .co_pwritev = null_co_pwritev,
    .co_pwrite_zeroes = null_co_pwrite_zeroes,
    .co_pdiscard = null_co_pdiscard,
    .co_flush = null_co_flush,
    .co_block_status = null_co_block_status,
};
