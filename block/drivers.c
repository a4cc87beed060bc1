/*
 * The table of block drivers: every driver blockd knows, in one greppable
 * place (no link-order constructors).  A new driver adds its extern
 * declaration and one line to the table.
 */
#include <string.h>

#include "block/block_int.h"

extern const BlockDriver bdrv_file;
extern const BlockDriver bdrv_nbd;
extern const BlockDriver bdrv_null_co;
extern const BlockDriver bdrv_null_aio;
extern const BlockDriver bdrv_raw;
extern const BlockDriver bdrv_copy_before_write;

static const BlockDriver *const block_drivers[] = {
    &bdrv_file,
    &bdrv_nbd,
    &bdrv_null_co,
    &bdrv_null_aio,
    &bdrv_raw,
    &bdrv_copy_before_write,
};

const BlockDriver *bdrv_driver_at(size_t i)
{
    return i < G_N_ELEMENTS(block_drivers) ? block_drivers[i] : NULL;
}

const BlockDriver *bdrv_find_driver(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(block_drivers); i++) {
        if (strcmp(block_drivers[i]->format_name, name) == 0) {
            return block_drivers[i];
        }
    }
    return NULL;
}
