/*
 * QMP commands and command-line options that change the block graph:
 * blockdev-add / --blockdev (a node from BlockdevOptions), blockdev-del,
 * and --drive (QEMU's "-drive if=none" shape: a file node, a format node
 * on it and a named BlockBackend).  Main thread.
 */
#include <string.h>

#include "block/block-backend.h"
#include "block/block_int.h"
#include "qapi/qapi-commands.h"
#include "qapi/qapi-visit.h"
#include "util/keyval.h"

void qmp_blockdev_add(const BlockdevOptions *arg, Error **errp)
{
    BlockDriverState *bs = bdrv_open_options(arg, errp);

    if (bs) {
        /* The reference bdrv_open_options returned is the monitor's. */
        bdrv_set_monitor_owned(bs, true);
    }
}

void qmp_blockdev_del(const char *node_name, Error **errp)
{
    BlockDriverState *bs = bdrv_find_node(node_name);

    if (!bs) {
        error_setg(errp, "Failed to find node with node-name='%s'",
                   node_name);
        return;
    }
    if (!bdrv_is_monitor_owned(bs)) {
        error_setg(errp, "Node %s is not owned by the monitor", node_name);
        return;
    }
    if (bdrv_is_busy(bs, errp)) {
        return;
    }
    bdrv_set_monitor_owned(bs, false);
    bdrv_unref(bs);
}

bool blockdev_add_cmdline(const char *arg, Error **errp)
{
    g_autoptr(BlockdevOptions) opts = NULL;
    bool is_json;
    json_t *obj = keyval_or_json_parse(arg, "driver", &is_json, errp);
    QapiPath root = QAPI_PATH_ROOT(!is_json);
    bool ok;

    if (!obj) {
        return false;
    }
    ok = visit_in_BlockdevOptions(obj, &root, &opts, errp);
    json_decref(obj);
    if (!ok) {
        return false;
    }
    Error *local_err = NULL;
    qmp_blockdev_add(opts, &local_err);
    if (local_err) {
        error_propagate(errp, local_err);
        return false;
    }
    return true;
}

/* ---- --drive ---- */

/* The members --drive takes; everything is a string from keyval. */
typedef struct DriveOpts {
    const char *id, *file, *format, *cache, *aio, *iface, *read_only;
    const char *discard, *detect_zeroes, *node_name;
} DriveOpts;

static bool drive_get_opts(json_t *obj, DriveOpts *d, Error **errp)
{
    struct { const char *key; const char **dst; } keys[] = {
        { "id", &d->id }, { "file", &d->file }, { "format", &d->format },
        { "cache", &d->cache }, { "aio", &d->aio }, { "if", &d->iface },
        { "read-only", &d->read_only }, { "discard", &d->discard },
        { "detect-zeroes", &d->detect_zeroes },
        { "node-name", &d->node_name },
    };
    const char *key;
    json_t *value;

    json_object_foreach(obj, key, value) {
        size_t i;

        for (i = 0; i < G_N_ELEMENTS(keys); i++) {
            if (strcmp(key, keys[i].key) == 0) {
                break;
            }
        }
        if (i == G_N_ELEMENTS(keys) || !json_is_string(value)) {
            error_setg(errp, "Invalid parameter '%s'", key);
            return false;
        }
        *keys[i].dst = json_string_value(value);
    }
    if (!d->id) {
        error_setg(errp, "Parameter 'id' is missing");
        return false;
    }
    if (!d->file) {
        error_setg(errp, "Parameter 'file' is missing");
        return false;
    }
    return true;
}

/* QEMU's cache modes: "none" and "directsync" bypass the host cache,
 * "unsafe" ignores flushes. */
static bool drive_parse_cache(const char *mode, BdrvImageOpts *o,
                              Error **errp)
{
    if (!mode || !strcmp(mode, "writeback") || !strcmp(mode, "writethrough")) {
        return true;
    }
    if (!strcmp(mode, "none") || !strcmp(mode, "directsync")) {
        o->direct = true;
        return true;
    }
    if (!strcmp(mode, "unsafe")) {
        o->no_flush = true;
        return true;
    }
    error_setg(errp, "invalid cache option");
    return false;
}

static bool drive_parse_onoff(const char *name, const char *v, bool *out,
                              Error **errp)
{
    if (!v || !strcmp(v, "off")) {
        *out = false;
    } else if (!strcmp(v, "on")) {
        *out = true;
    } else {
        error_setg(errp, "Parameter '%s' expects 'on' or 'off'", name);
        return false;
    }
    return true;
}

static bool drive_to_image_opts(const DriveOpts *d, BdrvImageOpts *o,
                                Error **errp)
{
    *o = (BdrvImageOpts) { .filename = d->file, .format = d->format,
                           .node_name = d->node_name };
    if (d->iface && strcmp(d->iface, "none") != 0) {
        error_setg(errp, "Only if=none is supported: blockd has no guest "
                   "devices");
        return false;
    }
    if (!drive_parse_cache(d->cache, o, errp) ||
        !drive_parse_onoff("read-only", d->read_only, &o->read_only, errp)) {
        return false;
    }
    if (d->aio && strcmp(d->aio, "threads") && strcmp(d->aio, "native")) {
        error_setg(errp, "invalid aio option");
        return false;
    }
    o->aio_native = d->aio && !strcmp(d->aio, "native");
    if (d->discard && strcmp(d->discard, "ignore") &&
        strcmp(d->discard, "unmap")) {
        error_setg(errp, "Invalid discard option");
        return false;
    }
    o->discard_unmap = d->discard && !strcmp(d->discard, "unmap");
    if (d->detect_zeroes) {
        int dz = BlockdevDetectZeroesOptions_parse(d->detect_zeroes);

        if (dz < 0) {
            error_setg(errp, "Parameter 'detect-zeroes' does not accept "
                       "value '%s'", d->detect_zeroes);
            return false;
        }
        o->detect_zeroes = dz;
    }
    return true;
}

bool drive_add_cmdline(const char *arg, Error **errp)
{
    json_t *obj = keyval_parse(arg, NULL, NULL, errp);
    DriveOpts d = { 0 };
    BdrvImageOpts o;
    BlockBackend *blk = NULL;
    BlockDriverState *bs = NULL;
    bool ok = false;

    if (!obj) {
        return false;
    }
    if (!drive_get_opts(obj, &d, errp) || !drive_to_image_opts(&d, &o, errp)) {
        goto out;
    }
    blk = blk_new(d.id, errp);
    if (!blk) {
        goto out;
    }
    bs = bdrv_open_image(&o, errp);
    if (!bs || !blk_insert_bs(blk, bs, errp)) {
        blk_unref(blk);
        goto out;
    }
    /* The backend lives until the daemon exits: its reference is kept. */
    ok = true;
out:
    bdrv_unref(bs);     /* the backend holds its own reference */
    json_decref(obj);
    return ok;
}
