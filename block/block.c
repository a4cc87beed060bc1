/*
 * The block graph: opening nodes from BlockdevOptions, node names,
 * reference counts, child edges with parent links, the permissions on
 * those edges (docs/permissions.md), replacing a node in all its parents
 * (how a filter is inserted above a node), and drain.
 *
 * Everything here runs in the main thread (see block.h); the request path
 * lives in io.c.
 */
#include <errno.h>
#include <string.h>

#include "block/block-backend.h"
#include "block/block_int.h"
#include "block/nbd-client.h"

/* All nodes in creation order (main thread). */
static BlockDriverState *all_nodes_head;
static BlockDriverState *all_nodes_tail;
/* Suffix of the next generated node-name ("#block001"...). */
static unsigned auto_name_counter;

bool bdrv_node_name_valid(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > BDRV_NODE_NAME_MAX || !g_ascii_isalpha(name[0])) {
        return false;
    }
    for (size_t i = 1; i < len; i++) {
        char c = name[i];
        if (!g_ascii_isalnum(c) && c != '-' && c != '_' && c != '.') {
            return false;
        }
    }
    return true;
}

/* node-name -> node for every node in the list above (stats: O(1) lookups
 * keep blockdev-add fast with thousands of nodes). */
static GHashTable *nodes_by_name;

BlockDriverState *bdrv_find_node(const char *name)
{
    return nodes_by_name ? g_hash_table_lookup(nodes_by_name, name) : NULL;
}

BlockDriverState *bdrv_next_node(BlockDriverState *prev)
{
    return prev ? prev->next_all : all_nodes_head;
}

/* Checks a node-name given by the user; QEMU's messages. */
static bool check_node_name(const char *name, Error **errp)
{
    if (!bdrv_node_name_valid(name)) {
        if (strlen(name) > BDRV_NODE_NAME_MAX) {
            error_setg(errp, "Node name too long");
        } else {
            error_setg(errp, "Invalid node-name: '%s'", name);
        }
        return false;
    }
    if (blk_by_name(name)) {
        error_setg(errp, "node-name=%s is conflicting with a device id",
                   name);
        return false;
    }
    if (bdrv_find_node(name)) {
        error_setg(errp, "Duplicate nodes with node-name='%s'", name);
        return false;
    }
    return true;
}

static void generate_node_name(BlockDriverState *bs)
{
    do {
        g_snprintf(bs->node_name, sizeof(bs->node_name), "#block%03u",
                   ++auto_name_counter);
    } while (bdrv_find_node(bs->node_name));
}

static void node_list_add(BlockDriverState *bs)
{
    if (!nodes_by_name) {
        nodes_by_name = g_hash_table_new(g_str_hash, g_str_equal);
    }
    g_hash_table_insert(nodes_by_name, bs->node_name, bs);
    if (all_nodes_tail) {
        all_nodes_tail->next_all = bs;
    } else {
        all_nodes_head = bs;
    }
    all_nodes_tail = bs;
}

static void node_list_remove(BlockDriverState *bs)
{
    BlockDriverState *prev = NULL;

    if (nodes_by_name && g_hash_table_lookup(nodes_by_name,
                                             bs->node_name) == bs) {
        g_hash_table_remove(nodes_by_name, bs->node_name);
    }

    for (BlockDriverState *p = all_nodes_head; p; prev = p, p = p->next_all) {
        if (p != bs) {
            continue;
        }
        if (prev) {
            prev->next_all = bs->next_all;
        } else {
            all_nodes_head = bs->next_all;
        }
        if (all_nodes_tail == bs) {
            all_nodes_tail = prev;
        }
        bs->next_all = NULL;
        return;
    }
}

/* ---- Opening ---- */

/* Sets the BlockdevOptionsBase members in bs. */
static bool apply_base_options(BlockDriverState *bs,
                               const BlockdevOptions *opts, Error **errp)
{
    bs->read_only = opts->has_read_only && opts->read_only;
    bs->force_share = opts->has_force_share && opts->force_share;
    bs->discard_unmap = opts->has_discard &&
                        opts->discard == BLOCKDEV_DISCARD_OPTIONS_UNMAP;
    if (opts->cache) {
        bs->cache_direct = opts->cache->has_direct && opts->cache->direct;
        bs->cache_no_flush = opts->cache->has_no_flush &&
                             opts->cache->no_flush;
    }
    bs->detect_zeroes = BLOCKDEV_DETECT_ZEROES_OPTIONS_OFF;
    if (opts->has_detect_zeroes) {
        bs->detect_zeroes = opts->detect_zeroes;
    }
    if (bs->detect_zeroes == BLOCKDEV_DETECT_ZEROES_OPTIONS_UNMAP &&
        !bs->discard_unmap) {
        error_setg(errp, "setting detect-zeroes to unmap is not allowed "
                   "without setting discard operation to unmap");
        return false;
    }
    if (bs->force_share && !bs->read_only) {
        error_setg(errp, "force-share=on can only be used with read-only "
                   "images");
        return false;
    }
    return true;
}

static BlockDriverState *bdrv_new(const BlockDriver *drv)
{
    BlockDriverState *bs = g_new0(BlockDriverState, 1);

    bs->drv = drv;
    bs->opaque = drv->instance_size ? g_malloc0(drv->instance_size) : NULL;
    bs->refcnt = 1;
    bs->ctx = aio_main_context();
    bs->bl.request_alignment = 1;
    bs->bl.min_mem_alignment = 1;
    return bs;
}

/* Frees a node whose open failed or whose last reference went away. */
static void bdrv_free(BlockDriverState *bs)
{
    while (bs->children) {
        bdrv_unref_child(bs->children);
    }
    block_acct_cleanup(&bs->stats);
    g_free(bs->filename);
    g_free(bs->opaque);
    g_free(bs);
}

static bool check_limits(BlockDriverState *bs, Error **errp)
{
    uint32_t align = bs->bl.request_alignment;

    if (align == 0 || (align & (align - 1))) {
        error_setg(errp, "Driver '%s' set an invalid request alignment %u",
                   bs->drv->format_name, align);
        return false;
    }
    if (bs->bl.max_transfer % align) {
        error_setg(errp, "Driver '%s' set a max transfer that is not a "
                   "multiple of the request alignment",
                   bs->drv->format_name);
        return false;
    }
    if (bs->bl.min_mem_alignment == 0) {
        bs->bl.min_mem_alignment = 1;
    }
    return true;
}

BlockDriverState *bdrv_open_options(const BlockdevOptions *opts,
                                    Error **errp)
{
    const char *drv_name = BlockdevDriver_str(opts->driver);
    const BlockDriver *drv = bdrv_find_driver(drv_name);
    BlockDriverState *bs;

    if (!drv) {
        error_setg(errp, "Driver '%s' is not available", drv_name);
        return NULL;
    }
    if (opts->node_name && !check_node_name(opts->node_name, errp)) {
        return NULL;
    }
    bs = bdrv_new(drv);
    if (opts->node_name) {
        /* For messages about the node while its children are attached
         * (permission conflicts); registered only after the open. */
        g_strlcpy(bs->node_name, opts->node_name, sizeof(bs->node_name));
    }
    if (!apply_base_options(bs, opts, errp) || drv->open(bs, opts, errp) < 0) {
        bdrv_free(bs);
        return NULL;
    }
    if (!check_limits(bs, errp) || bdrv_refresh_total_bytes(bs) < 0) {
        if (bs->total_bytes < 0) {
            error_setg_errno(errp, (int)-bs->total_bytes,
                             "Could not get the size of node");
        }
        goto fail_opened;
    }
    /* Children opened meanwhile may have taken the name: check again. */
    if (opts->node_name) {
        if (!check_node_name(opts->node_name, errp)) {
            goto fail_opened;
        }
        g_strlcpy(bs->node_name, opts->node_name, sizeof(bs->node_name));
    } else {
        generate_node_name(bs);
    }
    node_list_add(bs);
    return bs;

fail_opened:
    if (drv->close) {
        drv->close(bs);
    }
    bdrv_free(bs);
    return NULL;
}

/* Fills a BlockdevOptions for the child of bs, inheriting as QEMU does:
 * a shallow copy, so it borrows every pointer of def. */
static void inherit_child_options(const BlockDriverState *parent,
                                  const BlockdevOptions *def,
                                  BlockdevOptions *child,
                                  BlockdevCacheOptions *cache)
{
    *child = *def;
    if (!child->has_read_only) {
        child->has_read_only = true;
        child->read_only = parent->read_only;
    }
    if (!child->has_discard) {
        child->has_discard = true;
        child->discard = BLOCKDEV_DISCARD_OPTIONS_UNMAP;
    }
    *cache = (BlockdevCacheOptions) {
        .has_direct = true,
        .direct = parent->cache_direct,
        .has_no_flush = true,
        .no_flush = parent->cache_no_flush,
    };
    if (def->cache && def->cache->has_direct) {
        cache->direct = def->cache->direct;
    }
    if (def->cache && def->cache->has_no_flush) {
        cache->no_flush = def->cache->no_flush;
    }
    child->cache = cache;
}

BdrvChild *bdrv_open_child(BlockDriverState *parent, const BlockdevRef *ref,
                           const char *name, BdrvChildRole role,
                           Error **errp)
{
    BlockDriverState *child_bs;
    BdrvChild *c;

    if (ref->type == QTYPE_QSTRING) {
        child_bs = bdrv_lookup_bs(NULL, ref->u.reference, errp);
        if (!child_bs) {
            return NULL;
        }
        return bdrv_attach_child(parent, child_bs, name, role, errp);
    }
    BlockdevOptions child_opts;
    BlockdevCacheOptions cache;

    inherit_child_options(parent, ref->u.definition, &child_opts, &cache);
    child_bs = bdrv_open_options(&child_opts, errp);
    if (!child_bs) {
        return NULL;
    }
    c = bdrv_attach_child(parent, child_bs, name, role, errp);
    bdrv_unref(child_bs);   /* the edge holds the reference now */
    return c;
}

int64_t bdrv_refresh_total_bytes(BlockDriverState *bs)
{
    bs->total_bytes = bs->drv->getlength ? bs->drv->getlength(bs) : -ENOTSUP;
    return bs->total_bytes;
}

void bdrv_inherit_limits(BlockDriverState *bs, const BlockDriverState *child)
{
    bs->bl.request_alignment = child->bl.request_alignment;
    bs->bl.max_transfer = child->bl.max_transfer;
    bs->bl.max_pwrite_zeroes = child->bl.max_pwrite_zeroes;
    bs->bl.max_pdiscard = child->bl.max_pdiscard;
    bs->bl.pdiscard_alignment = child->bl.pdiscard_alignment;
    bs->bl.min_mem_alignment = child->bl.min_mem_alignment;
}

/* ---- References ---- */

void bdrv_ref(BlockDriverState *bs)
{
    bs->refcnt++;
}

void bdrv_unref(BlockDriverState *bs)
{
    if (!bs) {
        return;
    }
    g_assert(bs->refcnt > 0);
    if (--bs->refcnt > 0) {
        return;
    }
    g_assert(!bs->parents);
    bdrv_drain(bs);
    node_list_remove(bs);
    if (bs->drv->close) {
        bs->drv->close(bs);
    }
    bdrv_free(bs);
}

void bdrv_set_monitor_owned(BlockDriverState *bs, bool owned)
{
    bs->monitor_owned = owned;
}

bool bdrv_is_monitor_owned(const BlockDriverState *bs)
{
    return bs->monitor_owned;
}

/* ---- Edges ---- */

/* True if target is bs or below it. */
static bool bdrv_reaches(BlockDriverState *bs, const BlockDriverState *target)
{
    if (bs == target) {
        return true;
    }
    for (BdrvChild *c = bs->children; c; c = c->next) {
        if (bdrv_reaches(c->bs, target)) {
            return true;
        }
    }
    return false;
}

static void parent_list_add(BlockDriverState *bs, BdrvChild *c)
{
    c->bs = bs;
    c->next_parent = bs->parents;
    bs->parents = c;
}

static void parent_list_remove(BdrvChild *c)
{
    BdrvChild **p = &c->bs->parents;

    while (*p != c) {
        p = &(*p)->next_parent;
    }
    *p = c->next_parent;
    c->next_parent = NULL;
}

static void update_shortcuts(BlockDriverState *parent)
{
    parent->file = NULL;
    parent->backing = NULL;
    for (BdrvChild *c = parent->children; c; c = c->next) {
        if (c->role == BDRV_CHILD_FILE && !parent->file) {
            parent->file = c;
        } else if (c->role == BDRV_CHILD_BACKING && !parent->backing) {
            parent->backing = c;
        }
    }
}

/* ---- Permissions (docs/permissions.md) ----
 *
 * A graph change is done in three steps, all in the main thread without
 * a yield: the edges are re-linked, the permissions of every edge below
 * the changed nodes are recomputed (parents before children, remembering
 * each old value), and every node reached is checked.  On a conflict the
 * old values are put back and the caller re-links the edges as they were,
 * so a refused change leaves no trace.
 */

static const char *const perm_name_table[] = {
    "consistent read", "write", "write unchanged", "resize",
};

char *bdrv_perm_names(uint64_t perm)
{
    GString *s = g_string_new(NULL);

    for (size_t i = 0; i < G_N_ELEMENTS(perm_name_table); i++) {
        if (perm & (UINT64_C(1) << i)) {
            g_string_append_printf(s, "%s%s", s->len ? ", " : "",
                                   perm_name_table[i]);
        }
    }
    return g_string_free(s, FALSE);
}

void bdrv_get_cumulative_perm(const BlockDriverState *bs, uint64_t *perm,
                              uint64_t *shared)
{
    uint64_t p = 0, sh = BLK_PERM_ALL;

    for (BdrvChild *c = bs->parents; c; c = c->next_parent) {
        p |= c->perm;
        sh &= c->shared;
    }
    *perm = p;
    *shared = sh;
}

uint64_t bdrv_child_perm(const BdrvChild *c)
{
    return c->perm;
}

uint64_t bdrv_child_shared(const BdrvChild *c)
{
    return c->shared;
}

void bdrv_default_child_perm(BlockDriverState *bs, BdrvChild *c,
                             BdrvChildRole role, uint64_t perm,
                             uint64_t shared, uint64_t *nperm,
                             uint64_t *nshared)
{
    switch (role) {
    case BDRV_CHILD_BACKING:
        /* Read for the guest; nobody may change what it reads through. */
        *nperm = BLK_PERM_CONSISTENT_READ;
        *nshared = BLK_PERM_ALL & ~(BLK_PERM_WRITE | BLK_PERM_RESIZE);
        break;
    case BDRV_CHILD_TARGET:
        /* A copy target: another writer would corrupt the copy; readers
         * (checking a backup as it grows) are fine. */
        *nperm = BLK_PERM_WRITE;
        *nshared = BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED;
        break;
    default:
        /* The node's data: its users' needs pass straight through. */
        *nperm = perm | BLK_PERM_CONSISTENT_READ;
        *nshared = shared;
        break;
    }
}

/* The perm / shared parent (with the given cumulative ones) needs on c. */
static void child_perm_of(BlockDriverState *parent, BdrvChild *c,
                          uint64_t perm, uint64_t shared, uint64_t *nperm,
                          uint64_t *nshared)
{
    if (parent->drv->child_perm) {
        parent->drv->child_perm(parent, c, c->role, perm, shared, nperm,
                                nshared);
    } else {
        bdrv_default_child_perm(parent, c, c->role, perm, shared, nperm,
                                nshared);
    }
}

/* An edge's permissions before a recomputation changed them. */
typedef struct PermUndo {
    BdrvChild *c;
    uint64_t perm, shared;
} PermUndo;

/* Appends the nodes at and below bs not yet in seen, children before
 * parents (DFS post-order): reversed, parents come first. */
static void perm_collect(BlockDriverState *bs, GHashTable *seen,
                         GPtrArray *order)
{
    if (!g_hash_table_add(seen, bs)) {
        return;
    }
    for (BdrvChild *c = bs->children; c; c = c->next) {
        perm_collect(c->bs, seen, order);
    }
    g_ptr_array_add(order, bs);
}

/* The nodes at and below starts (NULLs skipped), parents before
 * children (caller frees). */
static GPtrArray *perm_topo_order(BlockDriverState *const *starts, size_t n)
{
    g_autoptr(GHashTable) seen = g_hash_table_new(NULL, NULL);
    GPtrArray *order = g_ptr_array_new();

    for (size_t i = 0; i < n; i++) {
        if (starts[i]) {
            perm_collect(starts[i], seen, order);
        }
    }
    for (guint i = 0, j = order->len; i + 1 < j; i++, j--) {
        gpointer tmp = order->pdata[i];

        order->pdata[i] = order->pdata[j - 1];
        order->pdata[j - 1] = tmp;
    }
    return order;
}

/* Recomputes the edges from bs to its children from bs's parent edges,
 * logging old values in undo (may be NULL). */
static void perm_update_children(BlockDriverState *bs, GArray *undo)
{
    uint64_t perm, shared;

    bdrv_get_cumulative_perm(bs, &perm, &shared);
    for (BdrvChild *c = bs->children; c; c = c->next) {
        uint64_t np, ns;

        child_perm_of(bs, c, perm, shared, &np, &ns);
        if (np == c->perm && ns == c->shared) {
            continue;
        }
        if (undo) {
            PermUndo u = { .c = c, .perm = c->perm, .shared = c->shared };

            g_array_append_val(undo, u);
        }
        c->perm = np;
        c->shared = ns;
    }
}

static void perm_undo(GArray *undo)
{
    for (guint i = undo->len; i-- > 0;) {
        PermUndo *u = &g_array_index(undo, PermUndo, i);

        u->c->perm = u->perm;
        u->c->shared = u->shared;
    }
}

/* The parent of c as QEMU names it in permission errors. */
static char *perm_user_desc(BdrvChild *c)
{
    if (c->parent_bs) {
        if (!c->parent_bs->node_name[0]) {
            /* Still being opened, no name yet. */
            return g_strdup_printf("a new %s node",
                                   c->parent_bs->drv->format_name);
        }
        return g_strdup_printf("node '%s'", c->parent_bs->node_name);
    }
    if (c->klass && c->klass->get_user_desc) {
        return c->klass->get_user_desc(c);
    }
    return bdrv_child_parent_desc(c);
}

/* False (errp set) if b needs something a does not share. */
static bool perm_a_allows_b(BdrvChild *a, BdrvChild *b, Error **errp)
{
    uint64_t denied = b->perm & ~a->shared;
    const char *node = a->bs->node_name;

    if (!denied) {
        return true;
    }
    g_autofree char *names = bdrv_perm_names(denied);
    g_autofree char *b_user = perm_user_desc(b);
    g_autofree char *a_user = perm_user_desc(a);

    error_setg(errp, "Permission conflict on node '%s': permissions '%s' "
               "are both required by %s (uses node '%s' as '%s' child) and "
               "unshared by %s (uses node '%s' as '%s' child).",
               node, names, b_user, node, b->name, a_user, node, a->name);
    return false;
}

/* Checks the parent edges of bs against each other and against a
 * read-only bs. */
static bool perm_check_node(BlockDriverState *bs, Error **errp)
{
    uint64_t perm, shared;

    bdrv_get_cumulative_perm(bs, &perm, &shared);
    if (bs->read_only && (perm & (BLK_PERM_WRITE | BLK_PERM_RESIZE))) {
        error_setg(errp, "Block node is read-only");
        return false;
    }
    if (!(perm & ~shared)) {
        return true;     /* the common case: one parent, or all share */
    }
    /* An edge may keep for itself what it does not share: compare pairs
     * (QEMU's order, so the same pair is named). */
    for (BdrvChild *a = bs->parents; a; a = a->next_parent) {
        for (BdrvChild *b = bs->parents; b; b = b->next_parent) {
            if (a != b && !perm_a_allows_b(a, b, errp)) {
                return false;
            }
        }
    }
    return true;
}

/*
 * Recomputes the edges below starts (n entries, NULLs skipped) after the
 * caller re-linked edges there, and checks every node reached.  On a
 * conflict every recomputed edge gets its old value back and errp is set;
 * the caller then undoes its re-linking.
 */
static bool bdrv_refresh_perms(BlockDriverState *const *starts, size_t n,
                               Error **errp)
{
    g_autoptr(GPtrArray) order = perm_topo_order(starts, n);
    g_autoptr(GArray) undo = g_array_new(FALSE, FALSE, sizeof(PermUndo));

    for (guint i = 0; i < order->len; i++) {
        perm_update_children(order->pdata[i], undo);
    }
    for (guint i = 0; i < order->len; i++) {
        if (!perm_check_node(order->pdata[i], errp)) {
            perm_undo(undo);
            return false;
        }
    }
    return true;
}

/* After an edge to bs went away: needs can only shrink, so there is
 * nothing to check (child_perm is monotone). */
static void bdrv_refresh_perms_loosen(BlockDriverState *bs)
{
    g_autoptr(GPtrArray) order = perm_topo_order(&bs, 1);

    for (guint i = 0; i < order->len; i++) {
        perm_update_children(order->pdata[i], NULL);
    }
}

bool bdrv_child_set_perm(BdrvChild *c, uint64_t perm, uint64_t shared,
                         Error **errp)
{
    uint64_t old_perm = c->perm, old_shared = c->shared;

    g_assert(!c->parent_bs);
    c->perm = perm;
    c->shared = shared;
    if (!bdrv_refresh_perms(&c->bs, 1, errp)) {
        c->perm = old_perm;
        c->shared = old_shared;
        return false;
    }
    return true;
}

BdrvChild *bdrv_attach_child(BlockDriverState *parent_bs,
                             BlockDriverState *child_bs, const char *name,
                             BdrvChildRole role, Error **errp)
{
    BdrvChild *c, **tail;

    g_assert(role != BDRV_CHILD_ROOT);
    if (bdrv_find_child(parent_bs, name)) {
        error_setg(errp, "Node '%s' already has a child named '%s'",
                   parent_bs->node_name, name);
        return NULL;
    }
    if (bdrv_reaches(child_bs, parent_bs)) {
        error_setg(errp, "Making '%s' a child of '%s' would create a loop",
                   child_bs->node_name, parent_bs->node_name);
        return NULL;
    }
    if (child_bs->ctx != parent_bs->ctx && !parent_bs->children &&
        !parent_bs->parents) {
        /* A node being opened has no user yet: it follows its first
         * child into that child's context (a filter above a node that
         * runs in an iothread). */
        parent_bs->ctx = child_bs->ctx;
    }
    if (child_bs->ctx != parent_bs->ctx) {
        error_setg(errp, "Node '%s' is in a different I/O thread than '%s'",
                   child_bs->node_name, parent_bs->node_name);
        return NULL;
    }
    /* A read-write parent writes through its file child; a target is
     * always written to. */
    if (((role == BDRV_CHILD_FILE && !parent_bs->read_only) ||
         role == BDRV_CHILD_TARGET) && child_bs->read_only) {
        error_setg(errp, "Block node '%s' is read-only", child_bs->node_name);
        return NULL;
    }
    c = g_new0(BdrvChild, 1);
    c->name = g_strdup(name);
    c->role = role;
    c->parent_bs = parent_bs;
    for (tail = &parent_bs->children; *tail; tail = &(*tail)->next) {
        /* append: children stay in attach order */
    }
    *tail = c;
    parent_list_add(child_bs, c);
    /* The parent's edges decide the new edge's needs: start there. */
    if (!bdrv_refresh_perms(&parent_bs, 1, errp)) {
        parent_list_remove(c);
        *tail = NULL;
        g_free(c->name);
        g_free(c);
        return NULL;
    }
    bdrv_ref(child_bs);
    update_shortcuts(parent_bs);
    return c;
}

BdrvChild *bdrv_root_attach_child(BlockDriverState *bs, const char *name,
                                  const BdrvChildClass *klass, void *opaque,
                                  uint64_t perm, uint64_t shared,
                                  Error **errp)
{
    BdrvChild *c = g_new0(BdrvChild, 1);

    c->name = g_strdup(name);
    c->role = BDRV_CHILD_ROOT;
    c->klass = klass;
    c->opaque = opaque;
    c->perm = perm;
    c->shared = shared;
    parent_list_add(bs, c);
    if (!bdrv_refresh_perms(&bs, 1, errp)) {
        parent_list_remove(c);
        g_free(c->name);
        g_free(c);
        return NULL;
    }
    bdrv_ref(bs);
    return c;
}

void bdrv_unref_child(BdrvChild *child)
{
    BlockDriverState *bs;

    if (!child) {
        return;
    }
    bs = child->bs;
    if (child->parent_bs) {
        BdrvChild **p = &child->parent_bs->children;

        while (*p != child) {
            p = &(*p)->next;
        }
        *p = child->next;
        update_shortcuts(child->parent_bs);
    }
    parent_list_remove(child);
    g_free(child->name);
    g_free(child);
    bdrv_refresh_perms_loosen(bs);
    bdrv_unref(bs);
}

BlockDriverState *bdrv_child_bs(const BdrvChild *c)
{
    return c->bs;
}

const char *bdrv_child_name(const BdrvChild *c)
{
    return c->name;
}

BdrvChildRole bdrv_child_role(const BdrvChild *c)
{
    return c->role;
}

void *bdrv_child_get_opaque(const BdrvChild *c)
{
    return c->opaque;
}

BlockDriverState *bdrv_child_parent_bs(const BdrvChild *c)
{
    return c->parent_bs;
}

char *bdrv_child_parent_desc(BdrvChild *c)
{
    if (c->parent_bs) {
        return g_strdup_printf("used as %s of node '%s'", c->name,
                               c->parent_bs->node_name);
    }
    if (c->klass && c->klass->get_parent_desc) {
        return c->klass->get_parent_desc(c);
    }
    return g_strdup("in use");
}

BdrvChild *bdrv_next_child(BlockDriverState *bs, BdrvChild *prev)
{
    return prev ? prev->next : bs->children;
}

BdrvChild *bdrv_next_parent(BlockDriverState *bs, BdrvChild *prev)
{
    return prev ? prev->next_parent : bs->parents;
}

BdrvChild *bdrv_find_child(BlockDriverState *bs, const char *name)
{
    for (BdrvChild *c = bs->children; c; c = c->next) {
        if (strcmp(c->name, name) == 0) {
            return c;
        }
    }
    return NULL;
}

BlockDriverState *bdrv_file_bs(BlockDriverState *bs)
{
    return bs->file ? bs->file->bs : NULL;
}

BlockDriverState *bdrv_backing_bs(BlockDriverState *bs)
{
    return bs->backing ? bs->backing->bs : NULL;
}

bool bdrv_is_busy(BlockDriverState *bs, Error **errp)
{
    if (!bs->parents) {
        return false;
    }
    g_autofree char *desc = bdrv_child_parent_desc(bs->parents);
    error_setg(errp, "Node '%s' is busy: %s", bs->node_name, desc);
    return true;
}

/* ---- Replacing a node in its parents ---- */

static bool check_replace_edge(BdrvChild *c, BlockDriverState *to,
                               Error **errp)
{
    if (to->ctx != c->bs->ctx) {
        error_setg(errp, "Cannot replace node '%s' by '%s': they are in "
                   "different I/O threads", c->bs->node_name, to->node_name);
        return false;
    }
    if (!c->parent_bs) {
        return true;
    }
    if (c->role == BDRV_CHILD_FILE && !c->parent_bs->read_only &&
        to->read_only) {
        error_setg(errp, "Block node '%s' is read-only", to->node_name);
        return false;
    }
    if (bdrv_reaches(to, c->parent_bs)) {
        error_setg(errp, "Replacing '%s' by '%s' would create a loop",
                   c->bs->node_name, to->node_name);
        return false;
    }
    return true;
}

/* bs's parent edges in list order (caller frees), for an exact undo. */
static GPtrArray *parents_snapshot(BlockDriverState *bs)
{
    GPtrArray *a = g_ptr_array_new();

    for (BdrvChild *c = bs->parents; c; c = c->next_parent) {
        g_ptr_array_add(a, c);
    }
    return a;
}

/* Makes bs's parent list exactly snap again. */
static void parents_restore(BlockDriverState *bs, GPtrArray *snap)
{
    bs->parents = NULL;
    for (guint i = snap->len; i-- > 0;) {
        parent_list_add(bs, g_ptr_array_index(snap, i));
    }
}

bool bdrv_replace_node(BlockDriverState *from, BlockDriverState *to,
                       Error **errp)
{
    BlockDriverState *changed[] = { from, to };
    g_autoptr(GPtrArray) from_parents = NULL;
    g_autoptr(GPtrArray) to_parents = NULL;
    BdrvChild *c, *next;
    unsigned moved = 0;

    for (c = from->parents; c; c = c->next_parent) {
        if (c->parent_bs != to && !check_replace_edge(c, to, errp)) {
            return false;
        }
    }
    /* Keep both alive, and let requests already on their way finish:
     * after the wait nothing runs until the edges have moved (main thread,
     * no yield), so every later request takes the new path.  No drained
     * section: it would tell the moved parents "begin" through from and
     * "end" through to, and upward recursion makes that uneven. */
    bdrv_ref(from);
    bdrv_ref(to);
    bdrv_drain(from);
    bdrv_drain(to);
    from_parents = parents_snapshot(from);
    to_parents = parents_snapshot(to);
    for (c = from->parents; c; c = next) {
        next = c->next_parent;
        if (c->parent_bs != to) {
            parent_list_remove(c);
            parent_list_add(to, c);
        }
    }
    if (!bdrv_refresh_perms(changed, G_N_ELEMENTS(changed), errp)) {
        parents_restore(from, from_parents);
        parents_restore(to, to_parents);
        bdrv_unref(to);
        bdrv_unref(from);
        return false;
    }
    for (guint i = 0; i < from_parents->len; i++) {
        c = g_ptr_array_index(from_parents, i);
        if (c->parent_bs == to) {
            continue;
        }
        bdrv_ref(to);
        moved++;
        if (c->parent_bs && c->parent_bs->drv->refresh_limits) {
            c->parent_bs->drv->refresh_limits(c->parent_bs);
        }
    }
    while (moved--) {
        bdrv_unref(from);
    }
    bdrv_unref(to);
    bdrv_unref(from);
    return true;
}

bool bdrv_insert_above(BlockDriverState *filter, BlockDriverState *bs,
                       Error **errp)
{
    if (!filter->file || filter->file->bs != bs) {
        error_setg(errp, "Node '%s' is not a filter of '%s'",
                   filter->node_name, bs->node_name);
        return false;
    }
    return bdrv_replace_node(bs, filter, errp);
}

bool bdrv_remove_filter(BlockDriverState *filter, Error **errp)
{
    if (!filter->file) {
        error_setg(errp, "Node '%s' has no filtered child",
                   filter->node_name);
        return false;
    }
    return bdrv_replace_node(filter, filter->file->bs, errp);
}

/* ---- Drain ---- */

static void parents_drained_begin(BlockDriverState *bs);
static void parents_drained_end(BlockDriverState *bs);

static void parents_drained_begin(BlockDriverState *bs)
{
    for (BdrvChild *c = bs->parents; c; c = c->next_parent) {
        if (c->parent_bs) {
            c->parent_bs->quiesce_counter++;
            parents_drained_begin(c->parent_bs);
        } else if (c->klass && c->klass->drained_begin) {
            c->klass->drained_begin(c);
        }
    }
}

static void parents_drained_end(BlockDriverState *bs)
{
    for (BdrvChild *c = bs->parents; c; c = c->next_parent) {
        if (c->parent_bs) {
            c->parent_bs->quiesce_counter--;
            parents_drained_end(c->parent_bs);
        } else if (c->klass && c->klass->drained_end) {
            c->klass->drained_end(c);
        }
    }
}

/* True while a request is in flight on bs, below it or above it (a
 * parent's request may still send one down). */
static bool subtree_busy(BlockDriverState *bs)
{
    if (bs->in_flight) {
        return true;
    }
    for (BdrvChild *c = bs->children; c; c = c->next) {
        if (subtree_busy(c->bs)) {
            return true;
        }
    }
    return false;
}

static bool ancestors_busy(BlockDriverState *bs)
{
    for (BdrvChild *c = bs->parents; c; c = c->next_parent) {
        if (c->parent_bs && (c->parent_bs->in_flight ||
                             ancestors_busy(c->parent_bs))) {
            return true;
        }
    }
    return false;
}

/* Runs in bs's own context when the caller is elsewhere (the main
 * thread draining a node owned by an iothread): the in-flight counters
 * belong to that thread, and only it may poll its context. */
static void coroutine_fn bdrv_drain_in_owner_co(void *opaque)
{
    BlockDriverState *bs = opaque;

    while (subtree_busy(bs) || ancestors_busy(bs)) {
        co_sleep_ns(50 * 1000);
    }
}

void bdrv_drain(BlockDriverState *bs)
{
    if (in_coroutine() && bs->ctx == current_aio_context()) {
        /* A coroutine (e.g. a QMP handler) must not poll its own loop. */
        bdrv_drain_in_owner_co(bs);
        return;
    }
    if (bs->ctx != current_aio_context()) {
        aio_run_in_context(bs->ctx, bdrv_drain_in_owner_co, bs);
        return;
    }
    AIO_WAIT_WHILE(bs->ctx, subtree_busy(bs) || ancestors_busy(bs));
}

/* ---- AioContext ownership ---- */

/* Adds bs and every node reachable from it through children and node
 * parents to set (once each). */
static void bdrv_collect_tree(BlockDriverState *bs, GPtrArray *set)
{
    if (g_ptr_array_find(set, bs, NULL)) {
        return;
    }
    g_ptr_array_add(set, bs);
    for (BdrvChild *c = bs->children; c; c = c->next) {
        bdrv_collect_tree(c->bs, set);
    }
    for (BdrvChild *c = bs->parents; c; c = c->next_parent) {
        if (c->parent_bs) {
            bdrv_collect_tree(c->parent_bs, set);
        }
    }
}

/* Fails if a root parent other than ignore (by opaque) uses a node of
 * set: that user runs in the current context and cannot follow. */
static bool bdrv_tree_movable(GPtrArray *set, void *ignore, Error **errp)
{
    for (guint i = 0; i < set->len; i++) {
        BlockDriverState *n = g_ptr_array_index(set, i);

        for (BdrvChild *c = n->parents; c; c = c->next_parent) {
            if (!c->parent_bs && c->opaque != ignore) {
                g_autofree char *desc = bdrv_child_parent_desc(c);

                error_setg(errp, "Cannot change the iothread of node '%s': "
                           "it is also used by %s", n->node_name, desc);
                return false;
            }
        }
    }
    return true;
}

/* Fails if the driver of a node of set cannot follow it to ctx. */
static bool bdrv_tree_drivers_movable(GPtrArray *set, AioContext *ctx,
                                      Error **errp)
{
    for (guint i = 0; i < set->len; i++) {
        BlockDriverState *n = g_ptr_array_index(set, i);

        if (n->drv->can_change_aio_context &&
            !n->drv->can_change_aio_context(n, ctx, errp)) {
            return false;
        }
    }
    return true;
}

static void coroutine_fn bdrv_detach_co(void *opaque)
{
    BlockDriverState *bs = opaque;

    bs->drv->detach_aio_context(bs);
}

static void coroutine_fn bdrv_attach_co(void *opaque)
{
    BlockDriverState *bs = opaque;

    bs->drv->attach_aio_context(bs, bs->ctx);
}

/* Runs the driver's detach (entry bdrv_detach_co) or attach callback, if
 * it has one, in ctx's thread: the fd handlers and timers it moves
 * belong to that thread.  Waits for it. */
static void bdrv_tell_driver(BlockDriverState *bs, AioContext *ctx,
                             CoroutineEntry *entry)
{
    bool has = entry == bdrv_detach_co ? bs->drv->detach_aio_context != NULL
                                       : bs->drv->attach_aio_context != NULL;

    if (!has) {
        return;
    }
    if (ctx == current_aio_context()) {
        entry(bs);
        return;
    }
    aio_run_in_context(ctx, entry, bs);
}

bool bdrv_try_change_aio_context(BlockDriverState *bs, AioContext *ctx,
                                 void *ignore_parent, Error **errp)
{
    g_autoptr(GPtrArray) set = g_ptr_array_new();
    AioContext *old = bs->ctx;

    if (old == ctx) {
        return true;
    }
    if (old != aio_main_context() && ctx != aio_main_context()) {
        error_setg(errp, "Cannot move node '%s' to another iothread: it "
                   "already runs in an iothread", bs->node_name);
        return false;
    }
    bdrv_collect_tree(bs, set);
    if (!bdrv_tree_movable(set, ignore_parent, errp) ||
        !bdrv_tree_drivers_movable(set, ctx, errp)) {
        return false;
    }
    /* bdrv_drained_begin() without its no-coroutine rule: QMP handlers
     * run in coroutines, and bdrv_drain() copes with both. */
    bs->quiesce_counter++;
    parents_drained_begin(bs);
    bdrv_drain(bs);
    for (guint i = 0; i < set->len; i++) {
        BlockDriverState *n = g_ptr_array_index(set, i);

        /* The drain above covered every node reachable from bs. */
        g_assert(n->in_flight == 0);
        bdrv_tell_driver(n, old, bdrv_detach_co);
        n->ctx = ctx;
        bdrv_tell_driver(n, ctx, bdrv_attach_co);
    }
    bdrv_drained_end(bs);
    return true;
}

void bdrv_drained_begin(BlockDriverState *bs)
{
    g_assert(!in_coroutine());
    bs->quiesce_counter++;
    parents_drained_begin(bs);
    bdrv_drain(bs);
}

void bdrv_drained_end(BlockDriverState *bs)
{
    g_assert(bs->quiesce_counter > 0);
    bs->quiesce_counter--;
    parents_drained_end(bs);
}

unsigned bdrv_in_flight(const BlockDriverState *bs)
{
    return bs->in_flight;
}

/* ---- Properties ---- */

AioContext *bdrv_get_aio_context(const BlockDriverState *bs)
{
    return bs->ctx;
}

const char *bdrv_get_node_name(const BlockDriverState *bs)
{
    return bs->node_name;
}

const char *bdrv_get_format_name(const BlockDriverState *bs)
{
    return bs->drv ? bs->drv->format_name : "";
}

const char *bdrv_get_filename(const BlockDriverState *bs)
{
    while (bs) {
        if (bs->filename) {
            return bs->filename;
        }
        bs = bs->file ? bs->file->bs : NULL;
    }
    return "";
}

bool bdrv_is_read_only(const BlockDriverState *bs)
{
    return bs->read_only;
}

BlockdevDetectZeroesOptions bdrv_get_detect_zeroes(const BlockDriverState *bs)
{
    return bs->detect_zeroes;
}

bool bdrv_get_cache_direct(const BlockDriverState *bs)
{
    return bs->cache_direct;
}

bool bdrv_get_cache_no_flush(const BlockDriverState *bs)
{
    return bs->cache_no_flush;
}

bool bdrv_get_discard_unmap(const BlockDriverState *bs)
{
    return bs->discard_unmap;
}

int64_t bdrv_getlength(BlockDriverState *bs)
{
    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    return bs->total_bytes;
}

int64_t bdrv_get_allocated_file_size(BlockDriverState *bs)
{
    if (bs->drv->get_allocated_file_size) {
        return bs->drv->get_allocated_file_size(bs);
    }
    if (bs->file) {
        return bdrv_get_allocated_file_size(bs->file->bs);
    }
    return -ENOTSUP;
}

int bdrv_backing_chain_depth(BlockDriverState *bs)
{
    int depth = 0;

    for (bs = bdrv_backing_bs(bs); bs; bs = bdrv_backing_bs(bs)) {
        depth++;
    }
    return depth;
}

uint32_t bdrv_get_request_alignment(const BlockDriverState *bs)
{
    return bs->bl.request_alignment;
}

int64_t bdrv_get_max_transfer(const BlockDriverState *bs)
{
    return bs->bl.max_transfer;
}

size_t bdrv_get_mem_alignment(const BlockDriverState *bs)
{
    /* Never below the largest scalar alignment, so any use is safe. */
    return MAX(bs->bl.min_mem_alignment, 16);
}

void *bdrv_blockalign(BlockDriverState *bs, size_t size)
{
    size_t align = bdrv_get_mem_alignment(bs);

    return g_aligned_alloc(1, MAX(size, 1), align);
}

void bdrv_vfree(void *p)
{
    g_aligned_free(p);
}

BlockAcctStats *bdrv_get_stats(BlockDriverState *bs)
{
    return &bs->stats;
}

/* ---- Images the short way ---- */

int bdrv_create_image(const char *format, const char *filename, int64_t size,
                      PreallocMode prealloc, Error **errp)
{
    const BlockDriver *drv = bdrv_find_driver(format ? format : "raw");

    if (!drv) {
        error_setg(errp, "Unknown file format '%s'", format);
        return -EINVAL;
    }
    if (!drv->create) {
        error_setg(errp, "Format driver '%s' does not support image creation",
                   drv->format_name);
        return -ENOTSUP;
    }
    if (size < 0) {
        error_setg(errp, "Image size must be less than 8 EiB!");
        return -EINVAL;
    }
    return drv->create(filename, size, prealloc, errp);
}

BlockDriverState *bdrv_open_image(const BdrvImageOpts *o, Error **errp)
{
    const char *format = o->format ? o->format : "raw";
    g_autoptr(BlockdevOptions) opts = g_new0(BlockdevOptions, 1);
    BlockdevOptions *file = g_new0(BlockdevOptions, 1);
    int drv = BlockdevDriver_parse(format);

    if (drv < 0 || drv == BLOCKDEV_DRIVER_FILE || drv == BLOCKDEV_DRIVER_NBD ||
        drv == BLOCKDEV_DRIVER_NULL_CO || drv == BLOCKDEV_DRIVER_NULL_AIO) {
        qapi_free_BlockdevOptions(file);
        error_setg(errp, "Unknown image format '%s'", format);
        return NULL;
    }
    if (nbd_is_uri(o->filename)) {
        /* nbd:// and nbd+unix:// URIs: an nbd node instead of a file */
        if (!nbd_uri_to_options(o->filename, file, errp)) {
            qapi_free_BlockdevOptions(file);
            return NULL;
        }
    } else {
        file->driver = BLOCKDEV_DRIVER_FILE;
        file->u.file.filename = g_strdup(o->filename);
        file->u.file.has_aio = true;
        file->u.file.aio = o->aio_native ? BLOCKDEV_AIO_OPTIONS_NATIVE
                                         : BLOCKDEV_AIO_OPTIONS_THREADS;
    }

    opts->driver = drv;
    opts->node_name = g_strdup(o->node_name);
    opts->has_read_only = true;
    opts->read_only = o->read_only;
    opts->has_discard = true;
    opts->discard = o->discard_unmap ? BLOCKDEV_DISCARD_OPTIONS_UNMAP
                                     : BLOCKDEV_DISCARD_OPTIONS_IGNORE;
    opts->has_detect_zeroes = true;
    opts->detect_zeroes = o->detect_zeroes;
    opts->cache = g_new0(BlockdevCacheOptions, 1);
    opts->cache->has_direct = true;
    opts->cache->direct = o->direct;
    opts->cache->has_no_flush = true;
    opts->cache->no_flush = o->no_flush;
    /* Every format driver's options start with BlockdevOptionsGenericFormat
     * ('file'), and raw is the only one today. */
    opts->u.raw.file = g_new0(BlockdevRef, 1);
    opts->u.raw.file->type = QTYPE_QDICT;
    opts->u.raw.file->u.definition = file;
    return bdrv_open_options(opts, errp);
}
