/*
 * The NBD client block driver (block/nbd.c) as the rest of the block
 * layer sees it: the URI shorthand that bdrv_open_image() accepts in
 * place of a file name.  The driver itself is reached through the driver
 * table (driver=nbd, BlockdevOptionsNbd).
 */
#ifndef BLOCK_NBD_CLIENT_H
#define BLOCK_NBD_CLIENT_H

#include <stdbool.h>

#include "qapi/qapi-types.h"
#include "util/error.h"

/* True if filename is meant as an NBD URI (nbd://, nbd+tcp://,
 * nbd+unix://), whether or not it is well formed. */
bool nbd_is_uri(const char *filename);

/*
 * Fills opts (zeroed by the caller, driver still unset) with the nbd
 * driver's options described by the URI:
 *   nbd://HOST[:PORT][/EXPORT]        (also nbd+tcp://; port 10809)
 *   nbd+unix:///[EXPORT]?socket=PATH
 * HOST may be an IPv6 address in brackets; EXPORT is percent-decoded.
 * Returns true, or false with errp set ("Invalid NBD URI '...': ...")
 * and opts possibly half filled (the caller frees it with
 * qapi_free_BlockdevOptions).  Any thread.
 */
bool nbd_uri_to_options(const char *uri, BlockdevOptions *opts,
                        Error **errp);

#endif
