/*
 * The handler of the test-only QMP command x-blockdev-io (qapi/
 * block-test.json): runs one blockd-io command (tools/io-cmds.c) on a live
 * node in the daemon and returns what it printed.  Kept apart from
 * io-cmds.c so that the tools do not depend on the daemon's schema.
 */
#include <string.h>

#include "qapi/qapi-commands.h"
#include "tools/io-cmds.h"

static void io_qmp_print(void *opaque, const char *text, bool is_error)
{
    g_string_append(opaque, text);
}

/* True if the command line (first word) writes to the node: its
 * temporary backend then asks for the write permission. */
static bool io_qmp_writes(const char *command)
{
    static const char *const writers[] = {
        "aio_write", "discard", "write", "writev",
    };
    g_autofree char *line = g_strstrip(g_strdup(command));
    g_auto(GStrv) words = g_strsplit_set(line, " \t\r\n", 2);
    const char *name = words[0] ? words[0] : "";

    for (size_t i = 0; i < G_N_ELEMENTS(writers); i++) {
        if (strcmp(name, writers[i]) == 0) {
            return true;
        }
    }
    return false;
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
         * daemon's own exports and jobs are.  It asks for write only when
         * the command writes (and the node is writable: otherwise the
         * request fails as on any read-only node), so that reading, e.g.
         * a backup target while the backup writes it, is allowed. */
        BlockDriverState *bs = bdrv_lookup_device(device, errp);
        uint64_t perm = BLK_PERM_CONSISTENT_READ;

        if (!bs) {
            return NULL;
        }
        if (io_qmp_writes(command) && !bdrv_is_read_only(bs)) {
            perm |= BLK_PERM_WRITE;
        }
        tmp = blk_new(NULL, errp);
        if (!tmp || !blk_set_perm(tmp, perm, BLK_PERM_ALL, errp) ||
            !blk_insert_bs(tmp, bs, errp)) {
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
