/*
 * raw: the format whose image is the data itself.  A thin pass-through
 * to the "file" child, optionally restricted to the window
 * [offset, offset+size) of it.  Write-zeroes, discard, block status and
 * copy offload pass through, so holes, cheap zeroing and copy_file_range
 * of the file show up here.
 */
#include <errno.h>
#include <inttypes.h>

#include "block/block_int.h"

/* Set at open; has_size fixed-size windows cannot be resized. */
typedef struct BDRVRawState {
    int64_t offset;
    int64_t size;
    bool has_size;
} BDRVRawState;

static void raw_refresh_limits(BlockDriverState *bs)
{
    bdrv_inherit_limits(bs, bs->file->bs);
    /* Pass every flag down: the file node's core emulates what its
     * driver lacks. */
    bs->supported_write_flags = BDRV_REQ_FUA;
    bs->supported_zero_flags = BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP |
                               BDRV_REQ_NO_FALLBACK;
}

/* Checks the window against the file's size (QEMU's messages). */
static int raw_check_window(BDRVRawState *s, int64_t file_size,
                            uint32_t align, Error **errp)
{
    if (s->offset < 0) {
        error_setg(errp, "offset cannot be negative");
        return -EINVAL;
    }
    if (s->has_size && s->size < 0) {
        error_setg(errp, "size cannot be negative");
        return -EINVAL;
    }
    if (s->offset > file_size ||
        (s->has_size && s->size > file_size - s->offset)) {
        error_setg(errp, "The sum of offset (%" PRId64 ") and size (%"
                   PRId64 ") has to be smaller or equal to the  actual size "
                   "of the containing file (%" PRId64 ")", s->offset,
                   s->has_size ? s->size : 0, file_size);
        return -EINVAL;
    }
    if (s->offset % align || (s->has_size && s->size % align)) {
        error_setg(errp, "offset and size must be multiples of the request "
                   "alignment (%u)", align);
        return -EINVAL;
    }
    return 0;
}

static int raw_open(BlockDriverState *bs, const BlockdevOptions *opts,
                    Error **errp)
{
    BDRVRawState *s = bs->opaque;
    const BlockdevOptionsRaw *o = &opts->u.raw;
    int64_t file_size;
    int ret;

    if (!bdrv_open_child(bs, o->file, "file", BDRV_CHILD_FILE, errp)) {
        return -EINVAL;
    }
    s->offset = o->has_offset ? o->offset : 0;
    s->has_size = o->has_size;
    s->size = o->has_size ? o->size : 0;
    file_size = bdrv_getlength(bs->file->bs);
    if (file_size < 0) {
        error_setg_errno(errp, (int)-file_size, "Could not get image size");
        return (int)file_size;
    }
    raw_refresh_limits(bs);
    ret = raw_check_window(s, file_size, bs->bl.request_alignment, errp);
    return ret;
}

static int64_t raw_getlength(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;
    int64_t len;

    if (s->has_size) {
        return s->size;
    }
    len = bdrv_getlength(bs->file->bs);
    return len < 0 ? len : MAX(len - s->offset, 0);
}

static int64_t raw_get_allocated_file_size(BlockDriverState *bs)
{
    return bdrv_get_allocated_file_size(bs->file->bs);
}

static int coroutine_fn raw_co_preadv(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, QIOVector *qiov,
                                      BdrvRequestFlags flags)
{
    BDRVRawState *s = bs->opaque;

    return bdrv_co_preadv(bs->file->bs, offset + s->offset, bytes, qiov,
                          flags);
}

static int coroutine_fn raw_co_pwritev(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, QIOVector *qiov,
                                       BdrvRequestFlags flags)
{
    BDRVRawState *s = bs->opaque;

    return bdrv_co_pwritev(bs->file->bs, offset + s->offset, bytes, qiov,
                           flags);
}

static int coroutine_fn raw_co_pwrite_zeroes(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             BdrvRequestFlags flags)
{
    BDRVRawState *s = bs->opaque;

    return bdrv_co_pwrite_zeroes(bs->file->bs, offset + s->offset, bytes,
                                 flags);
}

static int coroutine_fn raw_co_pdiscard(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes)
{
    BDRVRawState *s = bs->opaque;

    return bdrv_co_pdiscard(bs->file->bs, offset + s->offset, bytes);
}

/* Copy offload: both legs pass through to the file child, shifted by
 * the window's offset. */
static int coroutine_fn raw_co_copy_range_from(BlockDriverState *bs,
                                               int64_t offset,
                                               BlockDriverState *dst,
                                               int64_t dst_offset,
                                               int64_t bytes,
                                               BdrvRequestFlags read_flags,
                                               BdrvRequestFlags write_flags)
{
    BDRVRawState *s = bs->opaque;

    return bdrv_co_copy_range_from(bs->file->bs, offset + s->offset, dst,
                                   dst_offset, bytes, read_flags,
                                   write_flags);
}

static int coroutine_fn raw_co_copy_range_to(BlockDriverState *bs,
                                             BlockDriverState *src,
                                             int64_t src_offset,
                                             int64_t offset, int64_t bytes,
                                             BdrvRequestFlags read_flags,
                                             BdrvRequestFlags write_flags)
{
    BDRVRawState *s = bs->opaque;

    return bdrv_co_copy_range_to(src, src_offset, bs->file->bs,
                                 offset + s->offset, bytes, read_flags,
                                 write_flags);
}

static int coroutine_fn raw_co_block_status(BlockDriverState *bs,
                                            bool want_zero, int64_t offset,
                                            int64_t bytes, int64_t *pnum,
                                            int64_t *map,
                                            BlockDriverState **file)
{
    BDRVRawState *s = bs->opaque;

    *pnum = bytes;
    *file = bs->file->bs;
    *map = offset + s->offset;
    return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID;
}

static int coroutine_fn raw_co_truncate(BlockDriverState *bs, int64_t offset,
                                        bool exact, PreallocMode prealloc,
                                        Error **errp)
{
    BDRVRawState *s = bs->opaque;

    if (s->has_size) {
        error_setg(errp, "Cannot resize fixed-size raw disks");
        return -ENOTSUP;
    }
    if (INT64_MAX - offset < s->offset) {
        error_setg(errp, "Disk size too large for the chosen offset");
        return -EINVAL;
    }
    return bdrv_co_truncate(bs->file->bs, offset + s->offset, exact,
                            prealloc, errp);
}

static int raw_create(const char *filename, int64_t size,
                      PreallocMode prealloc, Error **errp)
{
    const BlockDriver *file = bdrv_find_driver("file");

    if (!file || !file->create) {
        error_setg(errp, "Protocol driver 'file' does not support image "
                   "creation");
        return -ENOTSUP;
    }
    return file->create(filename, size, prealloc, errp);
}

const BlockDriver bdrv_raw = {
    .format_name = "raw",
    .driver = BLOCKDEV_DRIVER_RAW,
    .instance_size = sizeof(BDRVRawState),
    .open = raw_open,
    .getlength = raw_getlength,
    .get_allocated_file_size = raw_get_allocated_file_size,
    .co_preadv = raw_co_preadv,
    .co_pwritev = raw_co_pwritev,
    .co_pwrite_zeroes = raw_co_pwrite_zeroes,
    .co_pdiscard = raw_co_pdiscard,
    .co_block_status = raw_co_block_status,
    .co_copy_range_from = raw_co_copy_range_from,
    .co_copy_range_to = raw_co_copy_range_to,
    .co_truncate = raw_co_truncate,
    .create = raw_create,
    .refresh_limits = raw_refresh_limits,
};
