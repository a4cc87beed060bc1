/*
 * The handler of the test-only QMP command x-blockdev-io (qapi/
 * block-test.json): runs one blockd-io command (tools/io-cmds.c) on a live
 * node in the daemon and returns what it printed.  Kept apart from
 * io-cmds.c so that the tools do not depend on the daemon's schema.
 */
#include "qapi/qapi-commands.h"
#include "tools/io-cmds.h"

static void io_qmp_print(void *opaque, const char *text, bool is_error)
{
    g_string_append(opaque, text);
}

typedef struct IoQmpRun {
    IoCmdState *s;
    const char *command;
    int ret;
} IoQmpRun;

/* Runs in the node's context, so that its requests start in their owner
 * thread; waits for the command's aio requests before returning. */
static void coroutine_fn io_qmp_entry(void *opaque)
{
    IoQmpRun *run = opaque;

    run->ret = io_cmd_run(run->s, run->command);
    if (io_cmd_wait_aio(run->s) < 0) {
        run->ret = -1;
    }
}

XBlockdevIoResult *qmp_x_blockdev_io(const char *device, const char *command,
                                     Error **errp)
{
    BlockBackend *blk = blk_by_name(device);
    g_autoptr(BlockBackend) tmp = NULL;
    g_autoptr(GString) out = g_string_new(NULL);
    XBlockdevIoResult *res;
    IoQmpRun run = { .command = command };

    if (!blk || !blk_bs(blk)) {
        /* A node-name: a temporary anonymous user of the node, as the
         * daemon's own exports and jobs are. */
        BlockDriverState *bs = bdrv_lookup_device(device, errp);

        if (!bs) {
            return NULL;
        }
        tmp = blk_new(NULL, errp);
        if (!tmp || !blk_insert_bs(tmp, bs, errp)) {
            return NULL;
        }
        blk = tmp;
    }
    run.s = io_cmd_state_new(blk, io_qmp_print, out, NULL, NULL);
    aio_run_in_context(blk_get_aio_context(blk), io_qmp_entry, &run);
    io_cmd_state_free(run.s);
    if (run.ret < 0) {
        g_strchomp(out->str);
        error_setg(errp, "%s", out->len ? out->str : "command failed");
        return NULL;
    }
    res = g_new0(XBlockdevIoResult, 1);
    res->output = g_strdup(out->str);
    return res;
}
