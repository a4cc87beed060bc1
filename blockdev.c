/*
 * QMP commands and command-line options that change the block graph:
 * blockdev-add / --blockdev (a node from BlockdevOptions), blockdev-del,
 * and --drive (QEMU's "-drive if=none" shape: a file node, a format node
 * on it and a named BlockBackend).  Main thread.
 */
#include <string.h>

#include "block/backup.h"
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

/* ---- Backup commands: blockdev-backup, drive-backup, block-backup,
 * transaction ---- */

/* Fills p from the arguments every backup command shares and looks up
 * the source.  p->target is left to the caller. */
static bool backup_params_init(const BackupCommon *c, BackupParams *p,
                               Error **errp)
{
    const BackupPerf *perf = c->x_perf;

    *p = (BackupParams) {
        .job_id = c->job_id,
        .device = c->device,
        .sync = c->sync,
        .speed = c->has_speed ? c->speed : 0,
        .on_source_error = c->has_on_source_error ? c->on_source_error
                                                  : BLOCKDEV_ON_ERROR_REPORT,
        .on_target_error = c->has_on_target_error ? c->on_target_error
                                                  : BLOCKDEV_ON_ERROR_REPORT,
        .filter_node_name = c->filter_node_name,
        .copy.cbw_buffer_size = BLOCK_COPY_DEFAULT_CBW_BUFFER,
    };
    if (c->has_auto_finalize && !c->auto_finalize) {
        p->flags |= JOB_MANUAL_FINALIZE;
    }
    if (c->has_auto_dismiss && !c->auto_dismiss) {
        p->flags |= JOB_MANUAL_DISMISS;
    }
    if (perf) {
        if (perf->has_use_copy_range) {
            p->copy.use_copy_range = perf->use_copy_range;
        }
        if (perf->has_max_workers) {
            if (perf->max_workers < 1 || perf->max_workers > 1024) {
                error_setg(errp, "max-workers must be between 1 and 1024");
                return false;
            }
            p->copy.max_workers = (int)perf->max_workers;
        }
        if (perf->has_max_chunk) {
            p->copy.max_chunk = perf->max_chunk;
        }
        if (perf->has_cbw_buffer_size) {
            p->copy.cbw_buffer_size = perf->cbw_buffer_size;
        }
    }
    p->source = bdrv_lookup_device(c->device, errp);
    return p->source != NULL;
}

/* blockdev-backup up to the created job (not activated, not started). */
static BlockJob *blockdev_backup_create(const BlockdevBackup *arg,
                                        JobTxn *txn, Error **errp)
{
    BackupParams p;

    if (!backup_params_init(qapi_BlockdevBackup_base(arg), &p, errp)) {
        return NULL;
    }
    p.target = bdrv_lookup_device(arg->target, errp);
    if (!p.target) {
        return NULL;
    }
    return backup_job_create(&p, txn, errp);
}

/* Creates (mode absolute-paths) and opens drive-backup's target image with
 * the source's size and cache mode.  Returns a new reference. */
static BlockDriverState *drive_backup_open_target(BlockDriverState *source,
                                                  const char *path,
                                                  const char *format,
                                                  NewImageMode mode,
                                                  Error **errp)
{
    int64_t size = bdrv_getlength(source);
    BdrvImageOpts o = {
        .filename = path,
        .format = format ? format : "raw",
        .direct = bdrv_get_cache_direct(source),
        .aio_native = bdrv_get_cache_direct(source),
    };

    if (size < 0) {
        error_setg_errno(errp, (int)-size, "Cannot get the size of '%s'",
                         bdrv_get_node_name(source));
        return NULL;
    }
    if (mode == NEW_IMAGE_MODE_ABSOLUTE_PATHS &&
        bdrv_create_image(o.format, path, size, PREALLOC_MODE_OFF,
                          errp) < 0) {
        return NULL;
    }
    return bdrv_open_image(&o, errp);
}

static BlockJob *drive_backup_create(const DriveBackup *arg, JobTxn *txn,
                                     Error **errp)
{
    BackupParams p;
    BlockJob *job;

    if (!backup_params_init(qapi_DriveBackup_base(arg), &p, errp)) {
        return NULL;
    }
    p.target = drive_backup_open_target(p.source, arg->target, arg->format,
                                        arg->has_mode ? arg->mode :
                                        NEW_IMAGE_MODE_ABSOLUTE_PATHS, errp);
    if (!p.target) {
        return NULL;
    }
    job = backup_job_create(&p, txn, errp);
    /* The job (and its filter) hold the target now; on failure this
     * closes it. */
    bdrv_unref(p.target);
    return job;
}

/* Activates and starts created jobs together. */
static void backup_jobs_start(BlockJob **jobs, size_t n)
{
    backup_jobs_activate(jobs, n);
    for (size_t i = 0; i < n; i++) {
        job_start(&jobs[i]->job);
    }
}

void qmp_blockdev_backup(const BlockdevBackup *arg, Error **errp)
{
    BlockJob *job = blockdev_backup_create(arg, NULL, errp);

    if (job) {
        backup_jobs_start(&job, 1);
    }
}

void qmp_drive_backup(const DriveBackup *arg, Error **errp)
{
    BlockJob *job = drive_backup_create(arg, NULL, errp);

    if (job) {
        backup_jobs_start(&job, 1);
    }
}

void qmp_block_backup(const char *device, const char *target,
                      const char *format, bool has_mode, NewImageMode mode,
                      bool has_speed, int64_t speed, Error **errp)
{
    DriveBackup arg = {
        .device = (char *)device,
        .sync = MIRROR_SYNC_MODE_FULL,
        .has_speed = has_speed,
        .speed = speed,
        .target = (char *)target,
        .format = (char *)format,
        .has_mode = has_mode,
        .mode = mode,
    };

    qmp_drive_backup(&arg, errp);
}

void qmp_transaction(TransactionActionList *actions,
                     TransactionProperties *properties, Error **errp)
{
    bool grouped = properties && properties->has_completion_mode &&
                   properties->completion_mode ==
                   ACTION_COMPLETION_MODE_GROUPED;
    g_autoptr(GPtrArray) jobs = g_ptr_array_new();
    JobTxn *txn = NULL;
    TransactionActionList *l;

    if (grouped) {
        for (l = actions; l; l = l->next) {
            if (l->value->type == TRANSACTION_ACTION_KIND_ABORT) {
                error_setg(errp, "Action 'abort' does not support "
                           "Transaction property completion-mode = "
                           "grouped");
                return;
            }
        }
        txn = job_txn_new();
    }
    for (l = actions; l; l = l->next) {
        TransactionAction *a = l->value;
        BlockJob *job = NULL;

        switch (a->type) {
        case TRANSACTION_ACTION_KIND_BLOCKDEV_BACKUP:
            job = blockdev_backup_create(a->u.blockdev_backup.data, txn,
                                         errp);
            break;
        case TRANSACTION_ACTION_KIND_DRIVE_BACKUP:
            job = drive_backup_create(a->u.drive_backup.data, txn, errp);
            break;
        default:
            error_setg(errp, "Transaction aborted using Abort action");
            break;
        }
        if (!job) {
            /* None starts: the created jobs go away with their filters. */
            for (guint i = 0; i < jobs->len; i++) {
                job_early_fail(&((BlockJob *)jobs->pdata[i])->job);
            }
            goto out;
        }
        g_ptr_array_add(jobs, job);
    }
    backup_jobs_start((BlockJob **)jobs->pdata, jobs->len);
out:
    if (txn) {
        job_txn_unref(txn);
    }
}
