/*
 * Queries of the block graph for QMP: query-named-block-nodes and
 * query-block.  Main thread; the graph changes only in the main thread,
 * so walking it here needs no lock.
 */
#include "block/block-backend.h"
#include "block/block_int.h"
#include "qapi/qapi-commands.h"

BlockDeviceInfo *bdrv_block_device_info(BlockDriverState *bs)
{
    BlockDeviceInfo *info = g_new0(BlockDeviceInfo, 1);
    ImageInfo *image = g_new0(ImageInfo, 1);
    int64_t size = bdrv_getlength(bs);
    int64_t actual = bdrv_get_allocated_file_size(bs);

    info->file = g_strdup(bdrv_get_filename(bs));
    info->node_name = g_strdup(bdrv_get_node_name(bs));
    info->ro = bdrv_is_read_only(bs);
    info->drv = g_strdup(bdrv_get_format_name(bs));
    info->backing_file_depth = bdrv_backing_chain_depth(bs);
    info->encrypted = false;
    info->detect_zeroes = bdrv_get_detect_zeroes(bs);
    /* bps..iops_wr and write_threshold: no throttling, no threshold. */
    info->cache = g_new0(BlockdevCacheInfo, 1);
    info->cache->writeback = true;
    info->cache->direct = bdrv_get_cache_direct(bs);
    info->cache->no_flush = bdrv_get_cache_no_flush(bs);
    info->virtual_size = size < 0 ? 0 : size;

    image->filename = g_strdup(info->file);
    image->format = g_strdup(info->drv);
    image->virtual_size = info->virtual_size;
    if (actual >= 0) {
        image->has_actual_size = true;
        image->actual_size = actual;
    }
    info->image = image;
    return info;
}

BlockDeviceInfoList *qmp_query_named_block_nodes(bool has_flat, bool flat,
                                                 Error **errp)
{
    BlockDeviceInfoList *head = NULL, **tail = &head;

    for (BlockDriverState *bs = bdrv_next_node(NULL); bs;
         bs = bdrv_next_node(bs)) {
        BlockDeviceInfoList *e = g_new0(BlockDeviceInfoList, 1);

        e->value = bdrv_block_device_info(bs);
        *tail = e;
        tail = &e->next;
    }
    return head;
}

BlockInfoList *qmp_query_block(Error **errp)
{
    BlockInfoList *head = NULL, **tail = &head;

    for (BlockBackend *blk = blk_next(NULL); blk; blk = blk_next(blk)) {
        BlockInfoList *e = g_new0(BlockInfoList, 1);
        BlockInfo *info = g_new0(BlockInfo, 1);
        BlockDriverState *bs = blk_bs(blk);

        info->device = g_strdup(blk_name(blk));
        info->locked = false;
        info->removable = false;
        if (bs) {
            info->inserted = bdrv_block_device_info(bs);
        }
        e->value = info;
        *tail = e;
        tail = &e->next;
    }
    return head;
}
