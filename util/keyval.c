/*
 * keyval: parser of the command-line option syntax (see
 * include/util/keyval.h).  Owner: monitor work.
 *
 * Parsing happens in two passes.  The first splits "k=v" pairs and builds a
 * tree of JSON objects from the dotted keys, catching duplicates and keys
 * used both as a leaf and as a prefix.  The second turns every object whose
 * keys are all indexes (0, 1, ...) into an array, since only then is it
 * known whether an object's keys are all numeric and gap-free.  Leaves stay
 * strings: the generated visitors convert them when told the input came
 * from keyval.
 */
#include <string.h>

#include "util/keyval.h"

static bool is_key_char(char c)
{
    return g_ascii_isalnum(c) || c == '-' || c == '_';
}

/* A key is one or more non-empty fragments of [A-Za-z0-9_-] joined by '.'. */
static bool key_is_valid(const char *key)
{
    bool fragment_empty = true;

    for (const char *p = key; *p; p++) {
        if (*p == '.') {
            if (fragment_empty) {
                return false;
            }
            fragment_empty = true;
        } else if (is_key_char(*p)) {
            fragment_empty = false;
        } else {
            return false;
        }
    }
    return !fragment_empty;
}

/*
 * Stores value at the dotted key below root.  Fails if a prefix of key is
 * already a leaf, key is already an object, or key is already set.
 */
static bool keyval_insert(json_t *root, const char *key, const char *value,
                          Error **errp)
{
    g_auto(GStrv) frags = g_strsplit(key, ".", -1);
    json_t *node = root;
    size_t n = g_strv_length(frags);
    size_t prefix_len = 0;

    for (size_t i = 0; i + 1 < n; i++) {
        json_t *child = json_object_get(node, frags[i]);

        prefix_len += strlen(frags[i]) + (i ? 1 : 0);
        if (!child) {
            child = json_object();
            json_object_set_new(node, frags[i], child);
        } else if (!json_is_object(child)) {
            error_setg(errp, "Parameters '%.*s.*' used inconsistently",
                       (int)prefix_len, key);
            return false;
        }
        node = child;
    }

    json_t *old = json_object_get(node, frags[n - 1]);
    if (old && json_is_object(old)) {
        error_setg(errp, "Parameters '%s.*' used inconsistently", key);
        return false;
    }
    if (old) {
        error_setg(errp, "Parameter '%s' is duplicated", key);
        return false;
    }
    json_object_set_new(node, frags[n - 1], json_string(value));
    return true;
}

/*
 * Reads a value starting at *pp up to an unescaped ',' (",," is a literal
 * comma) and advances *pp past the terminating comma.
 */
static char *keyval_read_value(const char **pp)
{
    GString *val = g_string_new(NULL);
    const char *p = *pp;

    while (*p) {
        if (*p == ',') {
            if (p[1] != ',') {
                p++;
                break;
            }
            p++;
        }
        g_string_append_c(val, *p);
        p++;
    }
    *pp = p;
    return g_string_free(val, FALSE);
}

/* Index value of key if it is a canonical decimal below 2^31, else -1. */
static long key_index(const char *key)
{
    long v = 0;

    if (!*key || (key[0] == '0' && key[1]) || strlen(key) > 9) {
        return -1;
    }
    for (const char *p = key; *p; p++) {
        if (!g_ascii_isdigit(*p)) {
            return -1;
        }
        v = v * 10 + (*p - '0');
    }
    return v;
}

static json_t *keyval_listify(json_t *obj, GString *path, Error **errp);

/* Listifies every object member of obj in place. */
static bool keyval_listify_members(json_t *obj, GString *path, Error **errp)
{
    const char *key;
    json_t *child;
    void *iter = json_object_iter(obj);

    for (; iter; iter = json_object_iter_next(obj, iter)) {
        key = json_object_iter_key(iter);
        child = json_object_iter_value(iter);
        if (!json_is_object(child)) {
            continue;
        }
        size_t saved = path->len;
        if (path->len) {
            g_string_append_c(path, '.');
        }
        g_string_append(path, key);
        json_t *conv = keyval_listify(child, path, errp);
        g_string_truncate(path, saved);
        if (!conv) {
            return false;
        }
        if (conv != child) {
            json_object_iter_set_new(obj, iter, conv);
        }
    }
    return true;
}

/*
 * Returns obj itself (borrowed) when it stays an object, a new array when
 * all its keys are indexes 0..n-1, or NULL on error.
 */
static json_t *keyval_listify(json_t *obj, GString *path, Error **errp)
{
    size_t n = json_object_size(obj);
    size_t numeric = 0;
    const char *key;
    json_t *child;

    if (!keyval_listify_members(obj, path, errp)) {
        return NULL;
    }
    json_object_foreach(obj, key, child) {
        numeric += key_index(key) >= 0;
    }
    if (numeric == 0) {
        return obj;
    }
    if (numeric != n) {
        error_setg(errp, "Parameters '%s.*' used inconsistently", path->str);
        return NULL;
    }

    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        char idx[24];

        g_snprintf(idx, sizeof(idx), "%zu", i);
        child = json_object_get(obj, idx);
        if (!child) {
            error_setg(errp, "Parameter '%s.%zu' is missing", path->str, i);
            json_decref(arr);
            return NULL;
        }
        json_array_append(arr, child);
    }
    return arr;
}

/*
 * Parses one "key=value" element at *pp.  Returns false on error; sets
 * *pp past the element.  first tells whether the implied key may apply.
 */
static bool keyval_parse_one(json_t *root, const char **pp, bool first,
                             const char *implied_key, bool *help,
                             Error **errp)
{
    const char *p = *pp;
    size_t key_len = strcspn(p, "=,");
    g_autofree char *key = g_strndup(p, key_len);
    g_autofree char *value = NULL;

    if (p[key_len] != '=') {
        if (help && (!strcmp(key, "help") || !strcmp(key, "?"))) {
            *help = true;
            *pp = p + key_len + (p[key_len] == ',');
            return true;
        }
        if (!*key) {
            error_setg(errp, "Expected a parameter name before '%s'",
                       p[key_len] ? "," : "end of string");
            return false;
        }
        if (!first || !implied_key) {
            error_setg(errp, "Expected '=' after parameter '%s'", key);
            return false;
        }
        g_free(key);
        key = g_strdup(implied_key);
    } else {
        if (!*key) {
            error_setg(errp, "Expected a parameter name before '='");
            return false;
        }
        p += key_len + 1;
    }
    if (!key_is_valid(key)) {
        error_setg(errp, "Invalid parameter '%s'", key);
        return false;
    }
    value = keyval_read_value(&p);
    *pp = p;
    return keyval_insert(root, key, value, errp);
}

json_t *keyval_parse(const char *params, const char *implied_key, bool *help,
                     Error **errp)
{
    json_t *root = json_object();
    const char *p = params;
    g_autoptr(GString) path = g_string_new(NULL);

    if (help) {
        *help = false;
    }
    for (bool first = true; *p; first = false) {
        if (!keyval_parse_one(root, &p, first, implied_key, help, errp)) {
            json_decref(root);
            return NULL;
        }
    }
    if (!keyval_listify_members(root, path, errp)) {
        json_decref(root);
        return NULL;
    }
    return root;
}

json_t *keyval_or_json_parse(const char *arg, const char *implied_key,
                             bool *is_json, Error **errp)
{
    json_error_t jerr;
    json_t *v;

    *is_json = arg[0] == '{';
    if (!*is_json) {
        return keyval_parse(arg, implied_key, NULL, errp);
    }
    v = json_loads(arg, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!v) {
        error_setg(errp, "JSON parse error, %s", jerr.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        error_setg(errp, "JSON option must be an object");
        return NULL;
    }
    return v;
}
