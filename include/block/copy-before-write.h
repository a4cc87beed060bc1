/*
 * The copy-before-write filter (block/copy-before-write.c) as the backup
 * job uses it: open it above a source with a target, get its block-copy
 * engine, activate it at the backup's instant.  Main thread.
 */
#ifndef BLOCK_COPY_BEFORE_WRITE_H
#define BLOCK_COPY_BEFORE_WRITE_H

#include "block/block-copy.h"

/*
 * Opens a copy-before-write node named filter_node_name (NULL: automatic)
 * over source with target, configured by opts, and inserts it above source
 * (every parent of source now uses the filter).  The filter starts
 * inactive (nothing to copy) until bdrv_cbw_activate().  Returns the
 * filter with one reference owned by the caller, or NULL with errp set
 * (graph unchanged).
 */
BlockDriverState *bdrv_cbw_append(BlockDriverState *source,
                                  BlockDriverState *target,
                                  const char *filter_node_name,
                                  const BlockCopyOptions *opts,
                                  Error **errp);
/* The filter's engine (owned by the filter). */
BlockCopyState *bdrv_cbw_get_block_copy(BlockDriverState *filter);
/*
 * The backup's instant: marks every cluster as to be copied, so that
 * from now on each first write of a cluster copies the old data first.
 * No yield: several filters activated one after the other share the
 * instant.
 */
void bdrv_cbw_activate(BlockDriverState *filter);
/* Removes the filter from above its source (parents re-pointed back) and
 * drops the caller's reference.  Block-copy must be idle. */
void bdrv_cbw_drop(BlockDriverState *filter);

#endif
