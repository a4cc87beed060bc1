/*
 * Unit tests of the permissions on graph edges (block/block.c,
 * block/block-backend.c, the copy-before-write filter's child_perm):
 * cumulative permissions, conflicts between two users of a node and
 * through a node above it, read-only nodes, and that a refused attach,
 * replace or filter insertion leaves the graph and every permission as
 * they were.  Real drivers (null-co, raw, copy-before-write) only.
 */
#include <glib.h>
#include <string.h>

#include "block/block-backend.h"
#include "block/block_int.h"
#include "tests/unit/block-test-helpers.h"

#define PERM_RW (BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE)

static BlockDriverState *open_node(const char *json)
{
    return test_open_json(json, &error_abort);
}

/* A backend named name (NULL: anonymous) on bs with perm / shared. */
static BlockBackend *backend_on(const char *name, BlockDriverState *bs,
                                uint64_t perm, uint64_t shared)
{
    BlockBackend *blk = blk_new(name, &error_abort);

    g_assert_true(blk_set_perm(blk, perm, shared, &error_abort));
    g_assert_true(blk_insert_bs(blk, bs, &error_abort));
    return blk;
}

/* Attaching a backend must fail; returns the message (caller frees). */
static char *insert_error(BlockBackend *blk, BlockDriverState *bs)
{
    Error *err = NULL;
    char *msg;

    g_assert_false(blk_insert_bs(blk, bs, &err));
    g_assert_nonnull(err);
    g_assert_null(blk_bs(blk));
    msg = g_strdup(error_get_pretty(err));
    error_free(err);
    return msg;
}

static void assert_cumulative(BlockDriverState *bs, uint64_t perm,
                              uint64_t shared)
{
    uint64_t p, s;

    bdrv_get_cumulative_perm(bs, &p, &s);
    g_assert_cmphex(p, ==, perm);
    g_assert_cmphex(s, ==, shared);
}

static unsigned count_parents(BlockDriverState *bs)
{
    unsigned n = 0;

    for (BdrvChild *c = bdrv_next_parent(bs, NULL); c;
         c = bdrv_next_parent(bs, c)) {
        n++;
    }
    return n;
}

static void test_perm_names(void)
{
    g_autofree char *all = bdrv_perm_names(BLK_PERM_ALL);
    g_autofree char *none = bdrv_perm_names(0);
    g_autofree char *wr = bdrv_perm_names(BLK_PERM_WRITE | BLK_PERM_RESIZE);

    g_assert_cmpstr(all, ==, "consistent read, write, write unchanged, "
                    "resize");
    g_assert_cmpstr(none, ==, "");
    g_assert_cmpstr(wr, ==, "write, resize");
}

/* blk_insert_bs's default: read + write, shares all; none after detach. */
static void test_default_backend_perm(void)
{
    BlockDriverState *bs = open_node("{'driver':'null-co','node-name':'n0'}");
    BlockBackend *blk = blk_new("dev0", &error_abort);
    uint64_t perm, shared;

    assert_cumulative(bs, 0, BLK_PERM_ALL);
    g_assert_true(blk_insert_bs(blk, bs, &error_abort));
    blk_get_perm(blk, &perm, &shared);
    g_assert_cmphex(perm, ==, PERM_RW);
    g_assert_cmphex(shared, ==, BLK_PERM_ALL);
    assert_cumulative(bs, PERM_RW, BLK_PERM_ALL);
    blk_unref(blk);
    assert_cumulative(bs, 0, BLK_PERM_ALL);
    bdrv_unref(bs);
}

static void test_two_writers_sharing(void)
{
    BlockDriverState *bs = open_node("{'driver':'null-co','node-name':'n0'}");
    BlockBackend *a = backend_on("dev0", bs, PERM_RW, BLK_PERM_ALL);
    BlockBackend *b = backend_on("dev1", bs, PERM_RW, BLK_PERM_ALL);

    assert_cumulative(bs, PERM_RW, BLK_PERM_ALL);
    blk_unref(a);
    blk_unref(b);
    bdrv_unref(bs);
}

static void test_two_writers_not_sharing(void)
{
    BlockDriverState *bs = open_node("{'driver':'null-co','node-name':'n0'}");
    BlockBackend *a = backend_on("dev0", bs, PERM_RW,
                                 BLK_PERM_CONSISTENT_READ);
    BlockBackend *b = blk_new("dev1", &error_abort);
    BlockBackend *reader = blk_new(NULL, &error_abort);
    g_autofree char *msg = insert_error(b, bs);

    g_assert_cmpstr(msg, ==, "Permission conflict on node 'n0': permissions "
                    "'write' are both required by block device 'dev1' "
                    "(uses node 'n0' as 'root' child) and unshared by block "
                    "device 'dev0' (uses node 'n0' as 'root' child).");
    /* Nothing of the refused edge is left. */
    g_assert_cmpuint(count_parents(bs), ==, 1);
    g_assert_cmpint(bs->refcnt, ==, 2);
    assert_cumulative(bs, PERM_RW, BLK_PERM_CONSISTENT_READ);

    /* A reader is fine: dev0 shares consistent read. */
    g_assert_true(blk_set_perm(reader, BLK_PERM_CONSISTENT_READ,
                               BLK_PERM_ALL, &error_abort));
    g_assert_true(blk_insert_bs(reader, bs, &error_abort));

    /* Once dev0 is gone, dev1 may write. */
    blk_unref(a);
    g_assert_true(blk_insert_bs(b, bs, &error_abort));
    blk_unref(b);
    blk_unref(reader);
    bdrv_unref(bs);
}

/* A user that does not share write refuses a writer already there. */
static void test_unshare_against_existing_writer(void)
{
    BlockDriverState *bs = open_node("{'driver':'null-co','node-name':'n0'}");
    BlockBackend *w = backend_on(NULL, bs, PERM_RW, BLK_PERM_ALL);
    BlockBackend *b = blk_new("dev1", &error_abort);
    g_autofree char *msg = NULL;

    g_assert_true(blk_set_perm(b, BLK_PERM_CONSISTENT_READ,
                               BLK_PERM_CONSISTENT_READ, &error_abort));
    msg = insert_error(b, bs);
    g_assert_cmpstr(msg, ==, "Permission conflict on node 'n0': permissions "
                    "'write' are both required by an unnamed block device "
                    "(uses node 'n0' as 'root' child) and unshared by block "
                    "device 'dev1' (uses node 'n0' as 'root' child).");
    blk_unref(b);
    blk_unref(w);
    bdrv_unref(bs);
}

/* blk_set_perm on an attached backend is checked and all-or-nothing. */
static void test_set_perm_checked(void)
{
    BlockDriverState *bs = open_node("{'driver':'null-co','node-name':'n0'}");
    BlockBackend *a = backend_on("dev0", bs, BLK_PERM_CONSISTENT_READ,
                                 BLK_PERM_ALL);
    BlockBackend *b = backend_on("dev1", bs, PERM_RW, BLK_PERM_ALL);
    Error *err = NULL;
    uint64_t perm, shared;

    g_assert_false(blk_set_perm(a, BLK_PERM_CONSISTENT_READ,
                                BLK_PERM_CONSISTENT_READ, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Permission conflict on node "
                    "'n0': permissions 'write' are both required by block "
                    "device 'dev1' (uses node 'n0' as 'root' child) and "
                    "unshared by block device 'dev0' (uses node 'n0' as "
                    "'root' child).");
    error_free(err);
    blk_get_perm(a, &perm, &shared);
    g_assert_cmphex(perm, ==, BLK_PERM_CONSISTENT_READ);
    g_assert_cmphex(shared, ==, BLK_PERM_ALL);

    /* After dev1 stops writing, the same change goes through. */
    g_assert_true(blk_set_perm(b, BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL,
                               &error_abort));
    g_assert_true(blk_set_perm(a, BLK_PERM_CONSISTENT_READ,
                               BLK_PERM_CONSISTENT_READ, &error_abort));
    assert_cumulative(bs, BLK_PERM_CONSISTENT_READ,
                      BLK_PERM_CONSISTENT_READ);
    blk_unref(a);
    blk_unref(b);
    bdrv_unref(bs);
}

static void test_read_only_refuses_writer(void)
{
    BlockDriverState *bs = open_node(
        "{'driver':'null-co','node-name':'ro','read-only':true}");
    BlockBackend *w = blk_new(NULL, &error_abort);
    BlockBackend *r = blk_new(NULL, &error_abort);
    BlockBackend *resizer = blk_new(NULL, &error_abort);
    g_autofree char *msg = NULL;
    g_autofree char *msg2 = NULL;

    g_assert_true(blk_set_perm(w, PERM_RW, BLK_PERM_ALL, &error_abort));
    msg = insert_error(w, bs);
    g_assert_cmpstr(msg, ==, "Block node is read-only");
    g_assert_true(blk_set_perm(resizer, BLK_PERM_RESIZE, BLK_PERM_ALL,
                               &error_abort));
    msg2 = insert_error(resizer, bs);
    g_assert_cmpstr(msg2, ==, "Block node is read-only");
    /* The default of a backend on a read-only node is to read only. */
    g_assert_true(blk_insert_bs(r, bs, &error_abort));
    assert_cumulative(bs, BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL);
    blk_unref(w);
    blk_unref(r);
    blk_unref(resizer);
    bdrv_unref(bs);
}

/* A format node passes its users' needs down to its file: a writer of
 * the raw node that does not share write keeps others off the file. */
static void test_conflict_through_format_node(void)
{
    BlockDriverState *raw = open_node(
        "{'driver':'raw','node-name':'r0',"
        " 'file':{'driver':'null-co','node-name':'n0'}}");
    BlockDriverState *file = bdrv_file_bs(raw);
    BlockBackend *dev = blk_new("dev0", &error_abort);
    BlockBackend *w = backend_on(NULL, raw, PERM_RW,
                                 BLK_PERM_ALL & ~BLK_PERM_WRITE);
    BlockBackend *r = backend_on(NULL, file, BLK_PERM_CONSISTENT_READ,
                                 BLK_PERM_ALL);
    g_autofree char *msg = NULL;

    g_assert_cmphex(bdrv_child_perm(raw->file), ==, PERM_RW);
    g_assert_cmphex(bdrv_child_shared(raw->file), ==,
                    BLK_PERM_ALL & ~BLK_PERM_WRITE);
    msg = insert_error(dev, file);
    g_assert_cmpstr(msg, ==, "Permission conflict on node 'n0': permissions "
                    "'write' are both required by block device 'dev0' (uses "
                    "node 'n0' as 'root' child) and unshared by node 'r0' "
                    "(uses node 'n0' as 'file' child).");
    blk_unref(dev);
    /* Without users the raw node only reads its file, sharing all. */
    blk_unref(w);
    g_assert_cmphex(bdrv_child_perm(raw->file), ==,
                    BLK_PERM_CONSISTENT_READ);
    g_assert_cmphex(bdrv_child_shared(raw->file), ==, BLK_PERM_ALL);
    blk_unref(r);
    bdrv_unref(raw);
}

/* The default permissions of the backing and target roles, on attach;
 * a refused attach leaves no edge and no reference. */
static void test_backing_and_target_roles(void)
{
    BlockDriverState *n0 = open_node("{'driver':'null-co','node-name':'n0'}");
    BlockDriverState *n1 = open_node("{'driver':'null-co','node-name':'n1'}");
    BlockDriverState *r0 = open_node(
        "{'driver':'raw','node-name':'r0','file':{'driver':'null-co'}}");
    BlockBackend *w = backend_on("dev0", n0, PERM_RW, BLK_PERM_ALL);
    BlockBackend *rd = backend_on(NULL, n1, BLK_PERM_CONSISTENT_READ,
                                  BLK_PERM_ALL);
    BdrvChild *c;
    Error *err = NULL;

    /* A backing file must not change under its reader. */
    g_assert_null(bdrv_attach_child(r0, n0, "backing", BDRV_CHILD_BACKING,
                                    &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Permission conflict on node "
                    "'n0': permissions 'write' are both required by block "
                    "device 'dev0' (uses node 'n0' as 'root' child) and "
                    "unshared by node 'r0' (uses node 'n0' as 'backing' "
                    "child).");
    error_free(err);
    err = NULL;
    g_assert_null(bdrv_find_child(r0, "backing"));
    g_assert_cmpuint(count_parents(n0), ==, 1);
    g_assert_cmpint(n0->refcnt, ==, 2);

    /* A target may be read by others, not written. */
    c = bdrv_attach_child(r0, n1, "target", BDRV_CHILD_TARGET, &error_abort);
    g_assert_cmphex(bdrv_child_perm(c), ==, BLK_PERM_WRITE);
    g_assert_cmphex(bdrv_child_shared(c), ==,
                    BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED);
    g_assert_false(blk_set_perm(rd, PERM_RW, BLK_PERM_ALL, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Permission conflict on node "
                    "'n1': permissions 'write' are both required by an "
                    "unnamed block device (uses node 'n1' as 'root' child) "
                    "and unshared by node 'r0' (uses node 'n1' as 'target' "
                    "child).");
    error_free(err);
    bdrv_unref_child(c);

    /* Without the writer, the backing edge is accepted. */
    blk_unref(w);
    c = bdrv_attach_child(r0, n0, "backing", BDRV_CHILD_BACKING,
                          &error_abort);
    g_assert_cmphex(bdrv_child_perm(c), ==, BLK_PERM_CONSISTENT_READ);
    bdrv_unref_child(c);
    blk_unref(rd);
    bdrv_unref(r0);
    bdrv_unref(n0);
    bdrv_unref(n1);
}

/* Snapshot of one node's parent edges and their permissions. */
typedef struct ParentsSnap {
    BdrvChild *c[8];
    uint64_t perm[8], shared[8];
    unsigned n;
} ParentsSnap;

static void snap_parents(BlockDriverState *bs, ParentsSnap *s)
{
    s->n = 0;
    for (BdrvChild *c = bdrv_next_parent(bs, NULL); c;
         c = bdrv_next_parent(bs, c)) {
        g_assert_cmpuint(s->n, <, G_N_ELEMENTS(s->c));
        s->c[s->n] = c;
        s->perm[s->n] = bdrv_child_perm(c);
        s->shared[s->n] = bdrv_child_shared(c);
        s->n++;
    }
}

static void assert_parents_equal(BlockDriverState *bs, const ParentsSnap *s)
{
    ParentsSnap now;

    snap_parents(bs, &now);
    g_assert_cmpuint(now.n, ==, s->n);
    for (unsigned i = 0; i < s->n; i++) {
        g_assert_true(now.c[i] == s->c[i]);
        g_assert_cmphex(now.perm[i], ==, s->perm[i]);
        g_assert_cmphex(now.shared[i], ==, s->shared[i]);
    }
}

/* A replace whose result would conflict is refused; every edge and
 * every permission, in and below both nodes, is as before. */
static void test_replace_rollback(void)
{
    BlockDriverState *old = open_node(
        "{'driver':'raw','node-name':'old','file':{'driver':'null-co',"
        " 'node-name':'old-file'}}");
    BlockDriverState *new = open_node(
        "{'driver':'raw','node-name':'new','file':{'driver':'null-co',"
        " 'node-name':'new-file'}}");
    BlockDriverState *top = open_node(
        "{'driver':'raw','node-name':'top','file':'old'}");
    BlockBackend *w = backend_on("dev0", top, PERM_RW, BLK_PERM_ALL);
    BlockBackend *other = backend_on("dev1", old, BLK_PERM_CONSISTENT_READ,
                                     BLK_PERM_ALL);
    BlockBackend *guard = backend_on("dev2", bdrv_file_bs(new),
                                     BLK_PERM_CONSISTENT_READ,
                                     BLK_PERM_CONSISTENT_READ);
    ParentsSnap s_old, s_new, s_oldf, s_newf;
    Error *err = NULL;
    int old_ref = old->refcnt, new_ref = new->refcnt;

    snap_parents(old, &s_old);
    snap_parents(new, &s_new);
    snap_parents(bdrv_file_bs(old), &s_oldf);
    snap_parents(bdrv_file_bs(new), &s_newf);
    g_assert_cmphex(bdrv_child_perm(old->file), ==, PERM_RW);

    /* top's writes would reach new-file, which dev2 keeps unwritten. */
    g_assert_false(bdrv_replace_node(old, new, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Permission conflict on node "
                    "'new-file': permissions 'write' are both required by "
                    "node 'new' (uses node 'new-file' as 'file' child) and "
                    "unshared by block device 'dev2' (uses node 'new-file' "
                    "as 'root' child).");
    error_free(err);
    g_assert_true(bdrv_file_bs(top) == old);
    g_assert_true(blk_bs(other) == old);
    assert_parents_equal(old, &s_old);
    assert_parents_equal(new, &s_new);
    assert_parents_equal(bdrv_file_bs(old), &s_oldf);
    assert_parents_equal(bdrv_file_bs(new), &s_newf);
    g_assert_cmphex(bdrv_child_perm(new->file), ==,
                    BLK_PERM_CONSISTENT_READ);
    g_assert_cmpint(old->refcnt, ==, old_ref);
    g_assert_cmpint(new->refcnt, ==, new_ref);

    /* Without the guard the same replace goes through. */
    blk_unref(guard);
    g_assert_true(bdrv_replace_node(old, new, &error_abort));
    g_assert_true(bdrv_file_bs(top) == new);
    g_assert_cmphex(bdrv_child_perm(new->file), ==, PERM_RW);
    g_assert_cmphex(bdrv_child_perm(old->file), ==,
                    BLK_PERM_CONSISTENT_READ);
    blk_unref(w);
    blk_unref(other);
    bdrv_unref(top);
    bdrv_unref(old);
    bdrv_unref(new);
}

/*
 * The copy-before-write filter: not yet inserted it shares everything (so
 * the source's writers can move above it); inserted, it shares neither
 * write nor resize on its source, so a writer below the source is
 * refused, and an insertion that would meet one is refused with the graph
 * unchanged.
 */
static void test_filter_insert_refused(void)
{
    BlockDriverState *src = open_node(
        "{'driver':'raw','node-name':'src','file':{'driver':'null-co',"
        " 'node-name':'src-file','size':1048576}}");
    BlockDriverState *tgt = open_node(
        "{'driver':'null-co','node-name':'tgt','size':1048576}");
    BlockBackend *dev = backend_on("dev0", src, PERM_RW, BLK_PERM_ALL);
    BlockBackend *below = backend_on(NULL, bdrv_file_bs(src), PERM_RW,
                                     BLK_PERM_ALL);
    BlockBackend *late = blk_new(NULL, &error_abort);
    BlockDriverState *cbw = open_node(
        "{'driver':'copy-before-write','node-name':'cbw','file':'src',"
        " 'target':'tgt'}");
    ParentsSnap s_src, s_file, s_cbw;
    Error *err = NULL;
    g_autofree char *msg = NULL;

    /* No users yet: the filter shares all on src. */
    g_assert_cmphex(bdrv_child_shared(cbw->file), ==, BLK_PERM_ALL);
    snap_parents(src, &s_src);
    snap_parents(bdrv_file_bs(src), &s_file);
    snap_parents(cbw, &s_cbw);

    g_assert_false(bdrv_insert_above(cbw, src, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Permission conflict on node "
                    "'src-file': permissions 'write' are both required by "
                    "an unnamed block device (uses node 'src-file' as "
                    "'root' child) and unshared by node 'src' (uses node "
                    "'src-file' as 'file' child).");
    error_free(err);
    g_assert_true(blk_bs(dev) == src);
    assert_parents_equal(src, &s_src);
    assert_parents_equal(bdrv_file_bs(src), &s_file);
    assert_parents_equal(cbw, &s_cbw);
    g_assert_cmphex(bdrv_child_shared(cbw->file), ==, BLK_PERM_ALL);

    /* Without the writer below, the insertion works and then keeps
     * writers off the source's file. */
    blk_unref(below);
    g_assert_true(bdrv_insert_above(cbw, src, &error_abort));
    g_assert_true(blk_bs(dev) == cbw);
    g_assert_cmphex(bdrv_child_perm(cbw->file), ==, PERM_RW);
    g_assert_cmphex(bdrv_child_shared(cbw->file), ==,
                    BLK_PERM_ALL & ~(BLK_PERM_WRITE | BLK_PERM_RESIZE));
    msg = insert_error(late, bdrv_file_bs(src));
    g_assert_cmpstr(msg, ==, "Permission conflict on node 'src-file': "
                    "permissions 'write' are both required by an unnamed "
                    "block device (uses node 'src-file' as 'root' child) "
                    "and unshared by node 'src' (uses node 'src-file' as "
                    "'file' child).");
    /* Reading it is fine. */
    g_assert_true(blk_set_perm(late, BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL,
                               &error_abort));
    g_assert_true(blk_insert_bs(late, bdrv_file_bs(src), &error_abort));
    blk_unref(late);

    /* Removed, it shares all again. */
    g_assert_true(bdrv_remove_filter(cbw, &error_abort));
    g_assert_true(blk_bs(dev) == src);
    g_assert_cmphex(bdrv_child_shared(cbw->file), ==, BLK_PERM_ALL);
    bdrv_unref(cbw);
    blk_unref(dev);
    bdrv_unref(src);
    bdrv_unref(tgt);
    g_assert_null(bdrv_next_node(NULL));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/block-perm/names", test_perm_names);
    g_test_add_func("/block-perm/backend/default", test_default_backend_perm);
    g_test_add_func("/block-perm/backend/two-writers-sharing",
                    test_two_writers_sharing);
    g_test_add_func("/block-perm/backend/two-writers-not-sharing",
                    test_two_writers_not_sharing);
    g_test_add_func("/block-perm/backend/unshare-existing-writer",
                    test_unshare_against_existing_writer);
    g_test_add_func("/block-perm/backend/set-perm", test_set_perm_checked);
    g_test_add_func("/block-perm/read-only", test_read_only_refuses_writer);
    g_test_add_func("/block-perm/format-node",
                    test_conflict_through_format_node);
    g_test_add_func("/block-perm/roles", test_backing_and_target_roles);
    g_test_add_func("/block-perm/replace-rollback", test_replace_rollback);
    g_test_add_func("/block-perm/filter-insert-refused",
                    test_filter_insert_refused);
    return g_test_run();
}
