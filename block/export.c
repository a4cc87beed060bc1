/*
 * Block exports: the list of exports, their common part (backend, node
 * tree ownership, iothread) and the QMP commands block-export-add,
 * block-export-del and query-block-exports.  The type-specific part
 * (today only NBD, nbd/server.c) comes through a BlockExportDriver.
 *
 * Threads: everything here runs in the main thread.  Deletion is
 * asynchronous: block-export-del asks the driver to disconnect its
 * clients and returns; BLOCK_EXPORT_DELETED follows when the export is
 * gone.
 */
#include <errno.h>

#include "block/export.h"
#include "qapi/qapi-commands.h"
#include "qapi/qapi-events.h"

/* All exports, creation order; main thread. */
static BlockExport *exports;

static const BlockExportDriver *blk_exp_find_driver(BlockExportType type)
{
    switch (type) {
    case BLOCK_EXPORT_TYPE_NBD:
        return &blk_exp_nbd;
    default:
        return NULL;
    }
}

BlockExport *blk_exp_find(const char *id)
{
    for (BlockExport *e = exports; e; e = e->next) {
        if (!strcmp(e->id, id)) {
            return e;
        }
    }
    return NULL;
}

BlockExport *blk_exp_next(BlockExport *prev)
{
    return prev ? prev->next : exports;
}

/* Resolves iothread= and moves the node tree there.  Without fixed
 * iothread a tree that cannot move stays where it is (as QEMU does). */
static bool blk_exp_set_ctx(BlockExport *exp, BlockDriverState *bs,
                            const BlockExportOptions *opts, Error **errp)
{
    IOThread *t;
    Error *local_err = NULL;
    AioContext *ctx;

    exp->ctx = bdrv_get_aio_context(bs);
    if (!opts->iothread) {
        return true;
    }
    t = iothread_find(opts->iothread);
    if (!t) {
        error_setg(errp, "iothread \"%s\" not found", opts->iothread);
        return false;
    }
    ctx = iothread_get_aio_context(t);
    if (ctx == exp->ctx) {
        return true;
    }
    if (!bdrv_try_change_aio_context(bs, ctx, exp->blk, &local_err)) {
        if (opts->has_fixed_iothread && opts->fixed_iothread) {
            error_propagate(errp, local_err);
            return false;
        }
        /* Not fatal: the export runs in the node's current context. */
        error_free(local_err);
        return true;
    }
    exp->ctx = ctx;
    return true;
}

/* Undoes what blk_exp_add did so far and frees exp. */
static void blk_exp_free(BlockExport *exp)
{
    if (exp->blk) {
        BlockDriverState *bs = blk_bs(exp->blk);

        if (bs && bdrv_get_aio_context(bs) != aio_main_context()) {
            /* Back to the main context so other users find it there; no
             * client is left, so nothing of ours is in flight.  Refused
             * (silently) while another export still uses the tree: the
             * last one to go moves it back. */
            bdrv_try_change_aio_context(bs, aio_main_context(), exp->blk,
                                        NULL);
        }
        blk_unref(exp->blk);
    }
    g_free(exp->id);
    g_free(exp->node_name);
    g_free(exp);
}

bool blk_exp_add(const BlockExportOptions *opts, Error **errp)
{
    const BlockExportDriver *drv = blk_exp_find_driver(opts->type);
    BlockDriverState *bs;
    BlockExport *exp, **tail;
    g_autofree char *desc = NULL;

    if (!drv) {
        error_setg(errp, "Unsupported export type");
        return false;
    }
    if (!bdrv_node_name_valid(opts->id)) {
        error_setg(errp, "Invalid block export id '%s'", opts->id);
        return false;
    }
    if (blk_exp_find(opts->id)) {
        error_setg(errp, "Block export id '%s' is already in use", opts->id);
        return false;
    }
    bs = bdrv_lookup_bs(NULL, opts->node_name, errp);
    if (!bs) {
        return false;
    }
    if (opts->has_writable && opts->writable && bdrv_is_read_only(bs)) {
        error_setg(errp, "Cannot export node '%s' writable: it is "
                   "read-only", opts->node_name);
        return false;
    }

    exp = g_malloc0(drv->instance_size);
    exp->drv = drv;
    exp->id = g_strdup(opts->id);
    exp->node_name = g_strdup(bdrv_get_node_name(bs));
    exp->writable = opts->has_writable && opts->writable;
    exp->writethrough = opts->has_writethrough && opts->writethrough;

    exp->blk = blk_new(NULL, errp);
    if (!exp->blk) {
        blk_exp_free(exp);
        return false;
    }
    desc = g_strdup_printf("export '%s'", exp->id);
    blk_set_user_desc(exp->blk, desc);
    /* As QEMU's exports: read, write only when writable, share all. */
    blk_set_perm(exp->blk, BLK_PERM_CONSISTENT_READ |
                 (exp->writable ? BLK_PERM_WRITE : 0), BLK_PERM_ALL,
                 &error_abort);
    if (!blk_insert_bs(exp->blk, bs, errp) ||
        !blk_exp_set_ctx(exp, bs, opts, errp) ||
        !drv->create(exp, opts, errp)) {
        blk_exp_free(exp);
        return false;
    }
    for (tail = &exports; *tail; tail = &(*tail)->next) {
        /* append */
    }
    *tail = exp;
    return true;
}

void blk_exp_clients_gone(BlockExport *exp)
{
    BlockExport **p;
    g_autofree char *id = g_strdup(exp->id);

    g_assert(exp->shutting_down);
    for (p = &exports; *p && *p != exp; p = &(*p)->next) {
        /* find */
    }
    g_assert(*p);
    *p = exp->next;
    exp->drv->destroy(exp);
    blk_exp_free(exp);
    qapi_event_send_block_export_deleted(id);
}

void blk_exp_request_shutdown(BlockExport *exp)
{
    if (exp->shutting_down) {
        return;
    }
    exp->shutting_down = true;
    exp->drv->request_shutdown(exp);
}

/* Counts exports of type that still exist. */
static unsigned blk_exp_count_type(BlockExportType type)
{
    unsigned n = 0;

    for (BlockExport *e = exports; e; e = e->next) {
        n += e->drv->type == type;
    }
    return n;
}

void blk_exp_close_all_type(BlockExportType type)
{
    BlockExport *e = exports;

    while (e) {
        BlockExport *next = e->next;

        /* May free e (no clients) before returning. */
        if (e->drv->type == type) {
            blk_exp_request_shutdown(e);
        }
        e = next;
    }
    /* QMP handlers run in coroutines, which must not poll the loop that
     * runs them: they sleep instead while the clients go away. */
    while (blk_exp_count_type(type) > 0) {
        if (in_coroutine()) {
            co_sleep_ns(1000 * 1000);
        } else {
            aio_poll(aio_main_context(), true);
        }
    }
}

/* ---- QMP ---- */

void qmp_block_export_add(const BlockExportOptions *arg, Error **errp)
{
    blk_exp_add(arg, errp);
}

void qmp_block_export_del(const char *id, bool has_mode,
                          BlockExportRemoveMode mode, Error **errp)
{
    BlockExport *exp = blk_exp_find(id);

    if (!exp) {
        error_setg(errp, "Export '%s' is not found", id);
        return;
    }
    if (exp->shutting_down) {
        error_setg(errp, "Export '%s' is already shutting down", id);
        return;
    }
    if ((!has_mode || mode == BLOCK_EXPORT_REMOVE_MODE_SAFE) &&
        exp->drv->has_clients(exp)) {
        error_setg(errp, "export '%s' still in use: it has connected "
                   "clients (use mode 'hard' to disconnect them)", id);
        return;
    }
    blk_exp_request_shutdown(exp);
}

BlockExportInfoList *qmp_query_block_exports(Error **errp)
{
    BlockExportInfoList *head = NULL, **tail = &head;

    for (BlockExport *e = exports; e; e = e->next) {
        BlockExportInfo *info = g_new0(BlockExportInfo, 1);

        info->type = e->drv->type;
        info->id = g_strdup(e->id);
        info->node_name = g_strdup(e->node_name);
        info->shutting_down = e->shutting_down;
        *tail = g_new0(BlockExportInfoList, 1);
        (*tail)->value = info;
        tail = &(*tail)->next;
    }
    return head;
}
