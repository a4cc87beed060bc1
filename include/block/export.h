/*
 * Block exports: nodes made reachable from outside the daemon (today only
 * by the NBD server, nbd/server.c).  block/export.c keeps the list of
 * exports and implements block-export-add/-del and query-block-exports;
 * each export type supplies a BlockExportDriver.
 *
 * An export holds an anonymous BlockBackend on its node ("export 'ID'"
 * in busy errors and permission conflicts; counted like any backend by
 * the statistics).  The backend needs consistent read, plus write when
 * the export is writable, and shares everything (docs/permissions.md).  With
 * iothread=ID the export's node tree is moved into that iothread's
 * AioContext (bdrv_try_change_aio_context) and the export's I/O
 * (connections, request coroutines) runs there; deleting the export
 * moves the tree back to the main context.
 *
 * Threads: the list, creation and deletion are main-thread only.  The
 * driver's connections run in exp->ctx.
 */
#ifndef BLOCK_EXPORT_H
#define BLOCK_EXPORT_H

#include "block/block-backend.h"
#include "qapi/qapi-types.h"

typedef struct BlockExport BlockExport;

typedef struct BlockExportDriver {
    BlockExportType type;
    size_t instance_size;          /* >= sizeof(BlockExport) */
    /* Sets up the type-specific part; exp->blk, ctx, id are set.  Main
     * thread.  False with errp set refuses the export. */
    bool (*create)(BlockExport *exp, const BlockExportOptions *opts,
                   Error **errp);
    /* True while clients are connected (block-export-del mode=safe). */
    bool (*has_clients)(BlockExport *exp);
    /* Starts disconnecting every client; when the last one is gone the
     * driver calls blk_exp_clients_gone().  Main thread. */
    void (*request_shutdown)(BlockExport *exp);
    /* Frees the type-specific part (no client left).  Main thread. */
    void (*destroy)(BlockExport *exp);
} BlockExportDriver;

/* Common part of every export; main thread unless noted. */
struct BlockExport {
    const BlockExportDriver *drv;
    char *id;
    char *node_name;               /* the exported node, for queries */
    BlockBackend *blk;             /* owned; its node may be in ctx */
    AioContext *ctx;               /* where the export's I/O runs */
    bool writable;
    bool writethrough;             /* every write gets FUA */
    bool shutting_down;            /* block-export-del in progress */
    BlockExport *next;             /* in the export list */
};

/*
 * Creates an export of opts->type (the whole of block-export-add and
 * --export): validates the id, node and iothread, makes the backend,
 * moves the node tree, calls the driver.  Main thread.
 */
bool blk_exp_add(const BlockExportOptions *opts, Error **errp);
/* The export with that id, or NULL. */
BlockExport *blk_exp_find(const char *id);
/* Iterates in creation order (NULL starts). */
BlockExport *blk_exp_next(BlockExport *prev);
/*
 * Starts deleting exp: marks it shutting down and asks the driver to
 * disconnect its clients; the export is freed (and BLOCK_EXPORT_DELETED
 * emitted) when they are gone, possibly before this returns.
 */
void blk_exp_request_shutdown(BlockExport *exp);
/* Called by the driver (main thread) when a shutting-down export has no
 * client left: finishes the deletion. */
void blk_exp_clients_gone(BlockExport *exp);
/* Deletes every export of that type (nbd-server-stop) and waits until
 * they are gone. */
void blk_exp_close_all_type(BlockExportType type);

/* The NBD export type (nbd/server.c). */
extern const BlockExportDriver blk_exp_nbd;

/* ---- The NBD server (nbd/server.c; main thread) ---- */

/* Listens on addr (nbd-server-start, --nbd-server); max_connections 0 is
 * unlimited.  Fails if a server is running. */
bool nbd_server_start(const SocketAddress *addr, uint32_t max_connections,
                      Error **errp);
bool nbd_server_is_running(void);
/* Deletes every NBD export, disconnects clients, stops listening. */
void nbd_server_stop(void);

#endif
