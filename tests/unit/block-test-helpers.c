/*
 * Helpers shared by the block-layer unit tests (see block-test-helpers.h).
 */
#include <glib.h>
#include <jansson.h>

#include "qapi/qapi-visit.h"
#include "tests/unit/block-test-helpers.h"

BlockDriverState *test_open_json(const char *text, Error **errp)
{
    g_autofree char *json = g_strdelimit(g_strdup(text), "'", '"');
    json_error_t jerr;
    json_t *obj = json_loads(json, 0, &jerr);
    QapiPath root = QAPI_PATH_ROOT(false);
    g_autoptr(BlockdevOptions) opts = NULL;
    bool ok;

    g_assert_nonnull(obj);
    ok = visit_in_BlockdevOptions(obj, &root, &opts, errp);
    json_decref(obj);
    if (!ok) {
        return NULL;
    }
    return bdrv_open_options(opts, errp);
}
