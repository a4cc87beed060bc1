/*
 * Unit tests of the block graph (block/block.c, block/block-backend.c,
 * blockdev.c): node names, opening with inline and referenced children,
 * parent links, reference counts, replacing a node in all its parents,
 * filter insertion, busy checks, device lookup and drain.  Real drivers
 * (null-co, raw) only, through the public headers.
 */
#include <errno.h>
#include <glib.h>
#include <string.h>
#include <unistd.h>

#include "block/block-backend.h"
#include "block/block_int.h"
#include "qapi/qapi-commands.h"
#include "qapi/qapi-visit.h"
#include "tests/unit/block-test-helpers.h"

/* Opens a node from JSON written with single quotes. */
/* Opens a node that must fail; returns the error message (caller frees). */
static char *open_error(const char *text)
{
    Error *err = NULL;
    BlockDriverState *bs = test_open_json(text, &err);
    char *msg;

    g_assert_null(bs);
    g_assert_nonnull(err);
    msg = g_strdup(error_get_pretty(err));
    error_free(err);
    return msg;
}

static void test_name_valid(void)
{
    g_assert_true(bdrv_node_name_valid("a"));
    g_assert_true(bdrv_node_name_valid("disk0.file-x_y"));
    g_assert_true(bdrv_node_name_valid("abcdefghijklmnopqrstuvwxyz01234"));
    g_assert_false(bdrv_node_name_valid(""));
    g_assert_false(bdrv_node_name_valid("0disk"));
    g_assert_false(bdrv_node_name_valid("-disk"));
    g_assert_false(bdrv_node_name_valid("#block001"));
    g_assert_false(bdrv_node_name_valid("dis k"));
    g_assert_false(bdrv_node_name_valid("abcdefghijklmnopqrstuvwxyz012345"));
}

static void test_name_invalid_refused(void)
{
    g_autofree char *msg = open_error("{'driver':'null-co','node-name':'9x'}");

    g_assert_cmpstr(msg, ==, "Invalid node-name: '9x'");
}

static void test_name_too_long(void)
{
    g_autofree char *msg = open_error(
        "{'driver':'null-co','node-name':'abcdefghijklmnopqrstuvwxyz0123456'}");

    g_assert_cmpstr(msg, ==, "Node name too long");
}

static void test_name_duplicate(void)
{
    BlockDriverState *bs = test_open_json("{'driver':'null-co','node-name':'dup'}",
                                     &error_abort);
    g_autofree char *msg = open_error("{'driver':'null-co','node-name':'dup'}");

    g_assert_cmpstr(msg, ==, "Duplicate nodes with node-name='dup'");
    bdrv_unref(bs);
}

static void test_name_auto(void)
{
    BlockDriverState *a = test_open_json("{'driver':'null-co'}", &error_abort);
    BlockDriverState *b = test_open_json("{'driver':'null-co'}", &error_abort);
    const char *na = bdrv_get_node_name(a);

    g_assert_true(g_str_has_prefix(na, "#block"));
    g_assert_cmpuint(strlen(na), >=, 9);
    g_assert_cmpstr(na, !=, bdrv_get_node_name(b));
    g_assert_true(bdrv_find_node(na) == a);
    bdrv_unref(a);
    bdrv_unref(b);
}

static void test_unknown_reference(void)
{
    g_autofree char *msg = open_error("{'driver':'raw','file':'nowhere'}");

    g_assert_cmpstr(msg, ==, "Cannot find device='' nor node-name='nowhere'");
}

static void test_inline_child(void)
{
    BlockDriverState *raw = test_open_json(
        "{'driver':'raw','node-name':'r0',"
        " 'file':{'driver':'null-co','node-name':'n0','size':4096}}",
        &error_abort);
    BlockDriverState *null = bdrv_find_node("n0");
    BdrvChild *c = bdrv_next_child(raw, NULL);

    g_assert_nonnull(null);
    g_assert_true(bdrv_file_bs(raw) == null);
    g_assert_true(bdrv_child_bs(c) == null);
    g_assert_cmpstr(bdrv_child_name(c), ==, "file");
    g_assert_cmpint(bdrv_child_role(c), ==, BDRV_CHILD_FILE);
    g_assert_null(bdrv_next_child(raw, c));
    /* The parent link points back. */
    g_assert_true(bdrv_next_parent(null, NULL) == c);
    g_assert_true(bdrv_child_parent_bs(c) == raw);
    g_assert_cmpint(bdrv_getlength(raw), ==, 4096);
    g_assert_null(bdrv_backing_bs(raw));
    /* The inline child lives as long as its parent. */
    bdrv_unref(raw);
    g_assert_null(bdrv_find_node("n0"));
    g_assert_null(bdrv_find_node("r0"));
}

static void test_inline_child_inherits(void)
{
    BlockDriverState *raw = test_open_json(
        "{'driver':'raw','read-only':true,'cache':{'direct':true},"
        " 'file':{'driver':'null-co','node-name':'n0'}}", &error_abort);
    BlockDriverState *null = bdrv_file_bs(raw);

    g_assert_true(bdrv_is_read_only(null));
    g_assert_true(bdrv_get_cache_direct(null));
    g_assert_false(bdrv_get_cache_no_flush(null));
    g_assert_true(bdrv_get_discard_unmap(null));
    g_assert_false(bdrv_get_discard_unmap(raw));
    bdrv_unref(raw);
}

static void test_reference_child_refcount(void)
{
    BlockDriverState *null = test_open_json("{'driver':'null-co','node-name':'n0'}",
                                       &error_abort);
    BlockDriverState *raw = test_open_json(
        "{'driver':'raw','node-name':'r0','file':'n0'}", &error_abort);
    Error *err = NULL;

    g_assert_true(bdrv_file_bs(raw) == null);
    g_assert_cmpint(null->refcnt, ==, 2);
    g_assert_true(bdrv_is_busy(null, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Node 'n0' is busy: used as file of node 'r0'");
    error_free(err);
    g_assert_false(bdrv_is_busy(raw, NULL));

    bdrv_unref(raw);
    g_assert_cmpint(null->refcnt, ==, 1);
    g_assert_null(bdrv_next_parent(null, NULL));
    g_assert_true(bdrv_find_node("n0") == null);
    bdrv_unref(null);
}

static void test_read_only_child_refused(void)
{
    BlockDriverState *null = test_open_json(
        "{'driver':'null-co','node-name':'n0','read-only':true}",
        &error_abort);
    g_autofree char *msg = open_error("{'driver':'raw','file':'n0'}");

    g_assert_cmpstr(msg, ==, "Block node 'n0' is read-only");
    g_assert_null(bdrv_next_parent(null, NULL));
    bdrv_unref(null);
}

static void test_detect_zeroes_unmap_needs_discard(void)
{
    g_autofree char *msg = open_error(
        "{'driver':'null-co','detect-zeroes':'unmap'}");

    g_assert_true(g_str_has_prefix(msg, "setting detect-zeroes to unmap"));
}

static void test_raw_window_too_big(void)
{
    g_autofree char *msg = open_error(
        "{'driver':'raw','offset':4096,'size':8192,"
        " 'file':{'driver':'null-co','size':8192}}");

    g_assert_true(g_str_has_prefix(msg, "The sum of offset (4096) and size "
                                   "(8192) has to be smaller or equal"));
    /* The failed open left no node behind. */
    g_assert_null(bdrv_next_node(NULL));
}

static void test_attach_loop_refused(void)
{
    BlockDriverState *raw = test_open_json(
        "{'driver':'raw','file':{'driver':'null-co','node-name':'n0'}}",
        &error_abort);
    Error *err = NULL;

    g_assert_null(bdrv_attach_child(bdrv_file_bs(raw), raw, "backing",
                                    BDRV_CHILD_BACKING, &err));
    g_assert_true(strstr(error_get_pretty(err), "loop") != NULL);
    error_free(err);
    bdrv_unref(raw);
}

static void test_attach_duplicate_child_name(void)
{
    BlockDriverState *raw = test_open_json(
        "{'driver':'raw','node-name':'r0','file':{'driver':'null-co'}}",
        &error_abort);
    BlockDriverState *other = test_open_json("{'driver':'null-co'}", &error_abort);
    Error *err = NULL;

    g_assert_null(bdrv_attach_child(raw, other, "file", BDRV_CHILD_FILE,
                                    &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Node 'r0' already has a child named 'file'");
    error_free(err);
    bdrv_unref(raw);
    bdrv_unref(other);
}

static void test_replace_node(void)
{
    BlockDriverState *old = test_open_json("{'driver':'null-co','node-name':'old'}",
                                      &error_abort);
    BlockDriverState *new = test_open_json("{'driver':'null-co','node-name':'new'}",
                                      &error_abort);
    BlockDriverState *r1 = test_open_json(
        "{'driver':'raw','node-name':'r1','file':'old'}", &error_abort);
    BlockDriverState *r2 = test_open_json(
        "{'driver':'raw','node-name':'r2','file':'old'}", &error_abort);
    BlockBackend *blk = blk_new("dev0", &error_abort);

    g_assert_true(blk_insert_bs(blk, old, &error_abort));
    g_assert_cmpint(old->refcnt, ==, 4);

    g_assert_true(bdrv_replace_node(old, new, &error_abort));
    g_assert_true(bdrv_file_bs(r1) == new);
    g_assert_true(bdrv_file_bs(r2) == new);
    g_assert_true(blk_bs(blk) == new);
    g_assert_null(bdrv_next_parent(old, NULL));
    g_assert_cmpint(old->refcnt, ==, 1);
    g_assert_cmpint(new->refcnt, ==, 4);

    blk_unref(blk);
    bdrv_unref(r1);
    bdrv_unref(r2);
    g_assert_cmpint(new->refcnt, ==, 1);
    bdrv_unref(old);
    bdrv_unref(new);
}

static void test_replace_read_only_refused(void)
{
    BlockDriverState *old = test_open_json("{'driver':'null-co','node-name':'old'}",
                                      &error_abort);
    BlockDriverState *ro = test_open_json(
        "{'driver':'null-co','node-name':'ro','read-only':true}",
        &error_abort);
    BlockDriverState *r1 = test_open_json(
        "{'driver':'raw','node-name':'r1','file':'old'}", &error_abort);
    Error *err = NULL;

    g_assert_false(bdrv_replace_node(old, ro, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Block node 'ro' is read-only");
    error_free(err);
    g_assert_true(bdrv_file_bs(r1) == old);
    bdrv_unref(r1);
    bdrv_unref(old);
    bdrv_unref(ro);
}

static void test_insert_and_remove_filter(void)
{
    BlockDriverState *src = test_open_json("{'driver':'null-co','node-name':'src'}",
                                      &error_abort);
    BlockDriverState *top = test_open_json(
        "{'driver':'raw','node-name':'top','file':'src'}", &error_abort);
    BlockBackend *blk = blk_new("dev0", &error_abort);
    BlockDriverState *filter;

    g_assert_true(blk_insert_bs(blk, src, &error_abort));
    /* raw over src stands in for a filter: its file child is src. */
    filter = test_open_json("{'driver':'raw','node-name':'flt','file':'src'}",
                       &error_abort);
    g_assert_true(bdrv_insert_above(filter, src, &error_abort));
    g_assert_true(bdrv_file_bs(top) == filter);
    g_assert_true(blk_bs(blk) == filter);
    g_assert_true(bdrv_file_bs(filter) == src);
    /* src's only parent is now the filter. */
    g_assert_true(bdrv_child_parent_bs(bdrv_next_parent(src, NULL)) ==
                  filter);
    g_assert_null(bdrv_next_parent(src, bdrv_next_parent(src, NULL)));

    g_assert_true(bdrv_remove_filter(filter, &error_abort));
    g_assert_true(bdrv_file_bs(top) == src);
    g_assert_true(blk_bs(blk) == src);
    g_assert_null(bdrv_next_parent(filter, NULL));

    bdrv_unref(filter);
    blk_unref(blk);
    bdrv_unref(top);
    g_assert_cmpint(src->refcnt, ==, 1);
    bdrv_unref(src);
}

static void test_insert_above_needs_child(void)
{
    BlockDriverState *a = test_open_json("{'driver':'null-co','node-name':'a'}",
                                    &error_abort);
    BlockDriverState *f = test_open_json(
        "{'driver':'raw','node-name':'f','file':{'driver':'null-co'}}",
        &error_abort);
    Error *err = NULL;

    g_assert_false(bdrv_insert_above(f, a, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Node 'f' is not a filter of 'a'");
    error_free(err);
    bdrv_unref(f);
    bdrv_unref(a);
}

static void test_blockdev_del(void)
{
    BlockdevOptions opts = { .driver = BLOCKDEV_DRIVER_NULL_CO,
                             .node_name = (char *)"n0" };
    BlockDriverState *raw;
    Error *err = NULL;

    qmp_blockdev_add(&opts, &error_abort);
    g_assert_true(bdrv_is_monitor_owned(bdrv_find_node("n0")));
    raw = test_open_json("{'driver':'raw','node-name':'r0','file':'n0'}",
                    &error_abort);

    qmp_blockdev_del("n0", &err);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Node 'n0' is busy: used as file of node 'r0'");
    error_free_or_abort(&err);

    qmp_blockdev_del("r0", &err);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Node r0 is not owned by the monitor");
    error_free_or_abort(&err);

    qmp_blockdev_del("zz", &err);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Failed to find node with node-name='zz'");
    error_free_or_abort(&err);

    bdrv_unref(raw);
    qmp_blockdev_del("n0", &error_abort);
    g_assert_null(bdrv_find_node("n0"));
}

static void test_blockdev_del_busy_device(void)
{
    BlockdevOptions opts = { .driver = BLOCKDEV_DRIVER_NULL_CO,
                             .node_name = (char *)"n0" };
    BlockBackend *blk = blk_new("drive0", &error_abort);
    Error *err = NULL;

    qmp_blockdev_add(&opts, &error_abort);
    g_assert_true(blk_insert_bs(blk, bdrv_find_node("n0"), &error_abort));
    qmp_blockdev_del("n0", &err);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Node 'n0' is busy: used by device 'drive0'");
    error_free_or_abort(&err);
    blk_unref(blk);
    qmp_blockdev_del("n0", &error_abort);
}

static void test_lookup(void)
{
    BlockDriverState *bs = test_open_json("{'driver':'null-co','node-name':'n0'}",
                                     &error_abort);
    BlockBackend *blk = blk_new("drive0", &error_abort);
    BlockBackend *empty = blk_new("drive1", &error_abort);
    Error *err = NULL;

    g_assert_true(blk_insert_bs(blk, bs, &error_abort));
    g_assert_true(bdrv_lookup_device("drive0", &error_abort) == bs);
    g_assert_true(bdrv_lookup_device("n0", &error_abort) == bs);
    g_assert_true(blk_by_name("drive0") == blk);
    g_assert_true(blk_next(NULL) == blk);
    g_assert_true(blk_next(blk) == empty);

    g_assert_null(bdrv_lookup_device("x", &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Cannot find device='x' nor node-name='x'");
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_GENERIC_ERROR);
    error_free_or_abort(&err);

    g_assert_null(bdrv_lookup_device("drive1", &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Device 'drive1' has no medium");
    error_free_or_abort(&err);

    blk_unref(empty);
    blk_unref(blk);
    bdrv_unref(bs);
}

static void test_backend_names(void)
{
    BlockDriverState *bs = test_open_json("{'driver':'null-co','node-name':'n0'}",
                                     &error_abort);
    BlockBackend *blk = blk_new("drive0", &error_abort);
    Error *err = NULL;

    g_assert_null(blk_new("drive0", &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Device with id 'drive0' already exists");
    error_free_or_abort(&err);
    g_assert_null(blk_new("n0", &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Device name 'n0' conflicts with an existing node name");
    error_free_or_abort(&err);
    g_assert_null(blk_new("1x", &err));
    error_free_or_abort(&err);
    g_assert_null(test_open_json("{'driver':'null-co','node-name':'drive0'}",
                            &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "node-name=drive0 is conflicting with a device id");
    error_free_or_abort(&err);
    blk_unref(blk);
    g_assert_null(blk_by_name("drive0"));
    bdrv_unref(bs);
}

/* ---- Drain ---- */

static void count_done(void *opaque, int ret)
{
    int *done = opaque;

    g_assert_cmpint(ret, ==, 0);
    (*done)++;
}

static void test_drain_waits_for_requests(void)
{
    BlockDriverState *bs = test_open_json(
        "{'driver':'raw','file':{'driver':'null-co','latency-ns':2000000}}",
        &error_abort);
    BlockBackend *blk = blk_new(NULL, &error_abort);
    char buf[512] = { 0 };
    QIOVector qiov;
    int done = 0;

    g_assert_true(blk_insert_bs(blk, bs, &error_abort));
    qiov_init_buf(&qiov, buf, sizeof(buf));
    blk_aio_pwritev(blk, 0, &qiov, 0, count_done, &done);
    g_assert_cmpint(done, ==, 0);
    g_assert_cmpuint(bdrv_in_flight(bs), ==, 1);
    bdrv_drained_begin(bdrv_file_bs(bs));
    g_assert_cmpuint(bdrv_in_flight(bs), ==, 0);
    g_assert_cmpuint(bdrv_in_flight(bdrv_file_bs(bs)), ==, 0);
    bdrv_drained_end(bdrv_file_bs(bs));
    /* The completion callback may come at the next iteration. */
    while (done == 0) {
        aio_poll(aio_main_context(), true);
    }
    blk_unref(blk);
    bdrv_unref(bs);
}

static void test_drained_section_holds_new_requests(void)
{
    BlockDriverState *bs = test_open_json("{'driver':'null-co'}", &error_abort);
    BlockBackend *blk = blk_new(NULL, &error_abort);
    char buf[512];
    QIOVector qiov;
    int done = 0;

    g_assert_true(blk_insert_bs(blk, bs, &error_abort));
    qiov_init_buf(&qiov, buf, sizeof(buf));
    bdrv_drained_begin(bs);
    blk_aio_preadv(blk, 0, &qiov, 0, count_done, &done);
    for (int i = 0; i < 5; i++) {
        aio_poll(aio_main_context(), false);
    }
    g_assert_cmpint(done, ==, 0);
    g_assert_cmpuint(bs->stats.nr_ops[BLOCK_ACCT_READ], ==, 0);
    bdrv_drained_end(bs);
    while (done == 0) {
        aio_poll(aio_main_context(), true);
    }
    g_assert_cmpuint(bs->stats.nr_ops[BLOCK_ACCT_READ], ==, 1);
    blk_unref(blk);
    bdrv_unref(bs);
}

/* A read through blk, run as a coroutine in the node's iothread. */
typedef struct IoRead {
    BlockBackend *blk;
    int ret;
    int done;                    /* atomic: set by the iothread */
} IoRead;

static void coroutine_fn io_read_co(void *opaque)
{
    IoRead *r = opaque;
    char buf[512];
    QIOVector qiov;

    qiov_init_buf(&qiov, buf, sizeof(buf));
    r->ret = blk_co_preadv(r->blk, 0, 512, &qiov, 0);
    qiov_destroy(&qiov);
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
}

static void coroutine_fn noop_co(void *opaque)
{
}

/*
 * The backend's node lives in an iothread; the main thread drains it.
 * A request started there meanwhile waits in the backend's queue (which
 * belongs to the iothread: drained_begin/end update it there, not from
 * the main thread) and runs once the drained section ends.
 */
static void test_drained_section_in_iothread(void)
{
    BlockDriverState *bs = test_open_json("{'driver':'null-co'}", &error_abort);
    BlockBackend *blk = blk_new(NULL, &error_abort);
    IOThread *t = iothread_create("graph-io0", &error_abort);
    AioContext *io = iothread_get_aio_context(t);
    IoRead r = { .blk = blk };

    g_assert_true(blk_insert_bs(blk, bs, &error_abort));
    g_assert_true(bdrv_try_change_aio_context(bs, io, blk, &error_abort));
    bdrv_drained_begin(bs);
    aio_co_enter(io, coroutine_create(io_read_co, &r));
    /* Runs after io_read_co has reached the backend's queue. */
    aio_run_in_context(io, noop_co, NULL);
    aio_run_in_context(io, noop_co, NULL);
    g_assert_cmpint(__atomic_load_n(&r.done, __ATOMIC_ACQUIRE), ==, 0);
    bdrv_drained_end(bs);
    while (!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE)) {
        aio_run_in_context(io, noop_co, NULL);
    }
    g_assert_cmpint(r.ret, ==, 0);
    g_assert_true(bdrv_try_change_aio_context(bs, aio_main_context(), blk,
                                              &error_abort));
    blk_unref(blk);
    bdrv_unref(bs);
    iothread_destroy(t);
}

static void test_query_named_block_nodes(void)
{
    BlockDriverState *bs = test_open_json(
        "{'driver':'raw','node-name':'r0','detect-zeroes':'on',"
        " 'file':{'driver':'null-co','node-name':'n0','size':65536}}",
        &error_abort);
    BlockDeviceInfoList *list = qmp_query_named_block_nodes(false, false,
                                                            &error_abort);
    BlockDeviceInfo *n0 = list->value, *r0 = list->next->value;

    /* Creation order: the inline child finished opening first. */
    g_assert_cmpstr(n0->node_name, ==, "n0");
    g_assert_cmpstr(n0->drv, ==, "null-co");
    g_assert_cmpstr(r0->node_name, ==, "r0");
    g_assert_cmpstr(r0->drv, ==, "raw");
    g_assert_cmpint(r0->virtual_size, ==, 65536);
    g_assert_cmpint(r0->image->virtual_size, ==, 65536);
    g_assert_cmpstr(r0->file, ==, "null-co://");
    g_assert_cmpint(r0->detect_zeroes, ==, BLOCKDEV_DETECT_ZEROES_OPTIONS_ON);
    g_assert_true(r0->cache->writeback);
    g_assert_null(list->next->next);
    qapi_free_BlockDeviceInfoList(list);
    bdrv_unref(bs);
}

static void test_query_block(void)
{
    BlockDriverState *bs = test_open_json(
        "{'driver':'null-co','node-name':'n0','size':1048576}",
        &error_abort);
    BlockBackend *blk = blk_new("drive0", &error_abort);
    BlockBackend *anon = blk_new(NULL, &error_abort);
    BlockInfoList *list;

    g_assert_true(blk_insert_bs(blk, bs, &error_abort));
    g_assert_true(blk_insert_bs(anon, bs, &error_abort));
    list = qmp_query_block(&error_abort);
    g_assert_cmpstr(list->value->device, ==, "drive0");
    g_assert_false(list->value->locked);
    g_assert_false(list->value->removable);
    g_assert_cmpint(list->value->inserted->virtual_size, ==, 1048576);
    g_assert_cmpstr(list->value->inserted->node_name, ==, "n0");
    /* Anonymous backends are not devices. */
    g_assert_null(list->next);
    qapi_free_BlockInfoList(list);
    blk_unref(anon);
    blk_unref(blk);
    bdrv_unref(bs);
}

/* ---- Command line ---- */

static void test_cmdline_blockdev(void)
{
    Error *err = NULL;

    g_assert_true(blockdev_add_cmdline("null-co,node-name=n0,size=4096",
                                       &error_abort));
    g_assert_true(blockdev_add_cmdline(
        "{\"driver\": \"raw\", \"node-name\": \"r0\", \"file\": \"n0\"}",
        &error_abort));
    g_assert_cmpint(bdrv_getlength(bdrv_find_node("r0")), ==, 4096);
    g_assert_true(bdrv_is_monitor_owned(bdrv_find_node("r0")));
    /* keyval values are strings: a bad number names the member. */
    g_assert_false(blockdev_add_cmdline("null-co,size=big", &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Parameter 'size' expects integer");
    error_free_or_abort(&err);
    qmp_blockdev_del("r0", &error_abort);
    qmp_blockdev_del("n0", &error_abort);
}

static char *make_image(int64_t size)
{
    char *path = NULL;
    int fd = g_file_open_tmp("test-block-graph-XXXXXX", &path, NULL);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    close(fd);
    return path;
}

static void test_cmdline_drive(void)
{
    g_autofree char *path = NULL;
    g_autofree char *arg = NULL;
    BlockBackend *blk;
    BlockDriverState *bs;

    if (!bdrv_find_driver("file")) {
        g_test_skip("no file driver");
        return;
    }
    path = make_image(1048576);
    arg = g_strdup_printf("id=drive0,file=%s,format=raw,cache=writeback,"
                          "aio=threads,if=none,read-only=on", path);
    g_assert_true(drive_add_cmdline(arg, &error_abort));
    blk = blk_by_name("drive0");
    g_assert_nonnull(blk);
    bs = blk_bs(blk);
    g_assert_cmpstr(bdrv_get_format_name(bs), ==, "raw");
    g_assert_cmpstr(bdrv_get_format_name(bdrv_file_bs(bs)), ==, "file");
    g_assert_cmpstr(bdrv_get_filename(bs), ==, path);
    g_assert_true(bdrv_is_read_only(bs));
    g_assert_true(bdrv_is_read_only(bdrv_file_bs(bs)));
    g_assert_false(bdrv_get_cache_direct(bs));
    g_assert_cmpint(blk_getlength(blk), ==, 1048576);
    blk_unref(blk);
    g_assert_null(bdrv_next_node(NULL));
    unlink(path);
}

static void test_create_image(void)
{
    g_autofree char *path = NULL;
    g_autofree char *dir = g_dir_make_tmp("test-block-graph-XXXXXX", NULL);
    Error *err = NULL;
    BdrvImageOpts o = { 0 };
    BlockDriverState *bs;

    g_assert_cmpint(bdrv_create_image("vmdk", "x", 512, PREALLOC_MODE_OFF,
                                      &err), ==, -EINVAL);
    g_assert_cmpstr(error_get_pretty(err), ==, "Unknown file format 'vmdk'");
    error_free_or_abort(&err);
    g_assert_cmpint(bdrv_create_image("null-co", "x", 512, PREALLOC_MODE_OFF,
                                      &err), ==, -ENOTSUP);
    error_free_or_abort(&err);
    if (!bdrv_find_driver("file")) {
        g_test_skip("no file driver");
        return;
    }
    path = g_build_filename(dir, "new.raw", NULL);
    g_assert_cmpint(bdrv_create_image(NULL, path, 3 * 65536,
                                      PREALLOC_MODE_OFF, &error_abort), ==, 0);
    o.filename = path;
    bs = bdrv_open_image(&o, &error_abort);
    g_assert_cmpint(bdrv_getlength(bs), ==, 3 * 65536);
    bdrv_unref(bs);
    unlink(path);
    rmdir(dir);
}

static void test_cmdline_drive_errors(void)
{
    const struct { const char *arg, *msg; } cases[] = {
        { "file=x", "Parameter 'id' is missing" },
        { "id=d0", "Parameter 'file' is missing" },
        { "id=d0,file=x,if=virtio",
          "Only if=none is supported: blockd has no guest devices" },
        { "id=d0,file=x,cache=sometimes", "invalid cache option" },
        { "id=d0,file=x,aio=io_uring", "invalid aio option" },
        { "id=d0,file=x,read-only=yes",
          "Parameter 'read-only' expects 'on' or 'off'" },
        { "id=d0,file=x,bus=1", "Invalid parameter 'bus'" },
        { "id=d0,file=x,format=vmdk", "Unknown image format 'vmdk'" },
        { "id=0d,file=x", "Invalid device name '0d'" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        Error *err = NULL;

        g_assert_false(drive_add_cmdline(cases[i].arg, &err));
        g_assert_cmpstr(error_get_pretty(err), ==, cases[i].msg);
        error_free(err);
        g_assert_null(blk_by_name("d0"));
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/block-graph/name/valid", test_name_valid);
    g_test_add_func("/block-graph/name/invalid", test_name_invalid_refused);
    g_test_add_func("/block-graph/name/too-long", test_name_too_long);
    g_test_add_func("/block-graph/name/duplicate", test_name_duplicate);
    g_test_add_func("/block-graph/name/auto", test_name_auto);
    g_test_add_func("/block-graph/open/unknown-reference",
                    test_unknown_reference);
    g_test_add_func("/block-graph/open/inline-child", test_inline_child);
    g_test_add_func("/block-graph/open/inline-child-inherits",
                    test_inline_child_inherits);
    g_test_add_func("/block-graph/open/reference-refcount",
                    test_reference_child_refcount);
    g_test_add_func("/block-graph/open/read-only-child",
                    test_read_only_child_refused);
    g_test_add_func("/block-graph/open/detect-zeroes-unmap",
                    test_detect_zeroes_unmap_needs_discard);
    g_test_add_func("/block-graph/open/raw-window", test_raw_window_too_big);
    g_test_add_func("/block-graph/attach/loop", test_attach_loop_refused);
    g_test_add_func("/block-graph/attach/duplicate-name",
                    test_attach_duplicate_child_name);
    g_test_add_func("/block-graph/replace/all-parents", test_replace_node);
    g_test_add_func("/block-graph/replace/read-only",
                    test_replace_read_only_refused);
    g_test_add_func("/block-graph/filter/insert-remove",
                    test_insert_and_remove_filter);
    g_test_add_func("/block-graph/filter/needs-child",
                    test_insert_above_needs_child);
    g_test_add_func("/block-graph/blockdev-del/errors", test_blockdev_del);
    g_test_add_func("/block-graph/blockdev-del/busy-device",
                    test_blockdev_del_busy_device);
    g_test_add_func("/block-graph/backend/lookup", test_lookup);
    g_test_add_func("/block-graph/backend/names", test_backend_names);
    g_test_add_func("/block-graph/drain/waits", test_drain_waits_for_requests);
    g_test_add_func("/block-graph/drain/holds-new-requests",
                    test_drained_section_holds_new_requests);
    g_test_add_func("/block-graph/drain/iothread",
                    test_drained_section_in_iothread);
    g_test_add_func("/block-graph/query/named-block-nodes",
                    test_query_named_block_nodes);
    g_test_add_func("/block-graph/query/block", test_query_block);
    g_test_add_func("/block-graph/cmdline/blockdev", test_cmdline_blockdev);
    g_test_add_func("/block-graph/cmdline/drive", test_cmdline_drive);
    g_test_add_func("/block-graph/create", test_create_image);
    g_test_add_func("/block-graph/cmdline/drive-errors",
                    test_cmdline_drive_errors);
    return g_test_run();
}
