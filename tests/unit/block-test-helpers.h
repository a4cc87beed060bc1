/*
 * Helpers shared by the block-layer unit tests.
 */
#ifndef TESTS_UNIT_BLOCK_TEST_HELPERS_H
#define TESTS_UNIT_BLOCK_TEST_HELPERS_H

#include "block/block.h"

/*
 * Opens a node from blockdev-add options written as JSON text with single
 * quotes (easier to embed in C strings), through the same generated visitor
 * and bdrv_open_options() that blockdev-add uses.  Returns a new reference,
 * or NULL with errp set.  The text must be valid JSON (asserted).
 */
BlockDriverState *test_open_json(const char *text, Error **errp);

#endif
