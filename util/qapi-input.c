/*
 * Builtin input visitors for the code scripts/qapi-gen.py generates: they
 * check one JSON value (from a QMP request, or from a keyval command-line
 * option where every scalar is a string) against a builtin schema type and
 * convert it to C.  Error texts are part of the QMP contract, which tests
 * and clients match exactly: "Parameter 'NAME' ...", NAME being the full
 * dotted path of the value.
 *
 * Pure functions: any thread may call them on values it owns.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "qapi/qapi-runtime.h"

/* Appends the name of path (root first) to buf. */
static void path_append(GString *buf, const QapiPath *path)
{
    if (!path || (!path->parent && !path->name)) {
        return;
    }
    path_append(buf, path->parent);
    if (path->name) {
        if (buf->len) {
            g_string_append_c(buf, '.');
        }
        g_string_append(buf, path->name);
    } else {
        g_string_append_printf(buf, "[%zu]", path->index);
    }
}

char *qapi_path_name(const QapiPath *path)
{
    GString *buf = g_string_new(NULL);

    path_append(buf, path);
    return g_string_free(buf, FALSE);
}

void qapi_in_error_type(const QapiPath *p, const char *what, Error **errp)
{
    g_autofree char *name = qapi_path_name(p);

    error_setg(errp, "Parameter '%s' expects %s", name, what);
}

static void error_range_int(const QapiPath *p, int64_t min, int64_t max,
                            Error **errp)
{
    g_autofree char *name = qapi_path_name(p);

    error_setg(errp, "Parameter '%s' expects integer in range [%" PRId64
               ", %" PRId64 "]", name, min, max);
}

static void error_range_uint(const QapiPath *p, uint64_t max, Error **errp)
{
    g_autofree char *name = qapi_path_name(p);

    error_setg(errp, "Parameter '%s' expects integer in range [0, %" PRIu64
               "]", name, max);
}

void qapi_in_error_missing(const QapiPath *p, const char *member,
                           Error **errp)
{
    QapiPath mp = QAPI_PATH_MEMBER(p, member);
    g_autofree char *name = qapi_path_name(&mp);

    error_setg(errp, "Parameter '%s' is missing", name);
}

bool qapi_in_str(const json_t *v, const QapiPath *p, char **out, Error **errp)
{
    if (!json_is_string(v)) {
        qapi_in_error_type(p, "string", errp);
        return false;
    }
    *out = g_strndup(json_string_value(v), json_string_length(v));
    return true;
}

/*
 * Parses a keyval integer: optional '-' (when allowed), then decimal or
 * 0x hexadecimal digits, nothing after.  Sets *neg and the magnitude;
 * false when s is no integer or its magnitude exceeds 64 bits (*overflow).
 */
static bool parse_kv_integer(const char *s, bool allow_neg, bool *neg,
                             uint64_t *mag, bool *overflow)
{
    const char *digits = s;
    char *end;

    *neg = false;
    *overflow = false;
    if (allow_neg && *digits == '-') {
        *neg = true;
        digits++;
    }
    if (!g_ascii_isdigit(*digits)) {
        return false;
    }
    errno = 0;
    if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
        if (!g_ascii_isxdigit(digits[2])) {
            return false;
        }
        *mag = g_ascii_strtoull(digits + 2, &end, 16);
    } else {
        *mag = g_ascii_strtoull(digits, &end, 10);
    }
    if (*end) {
        return false;
    }
    if (errno == ERANGE) {
        *overflow = true;
        return false;
    }
    return true;
}

bool qapi_in_int(const json_t *v, const QapiPath *p, int64_t min, int64_t max,
                 const char *type_name, int64_t *out, Error **errp)
{
    int64_t val;

    if (json_is_integer(v)) {
        val = json_integer_value(v);
    } else if (p->keyval && json_is_string(v)) {
        bool neg, overflow;
        uint64_t mag;

        if (!parse_kv_integer(json_string_value(v), true, &neg, &mag,
                              &overflow)) {
            if (overflow) {
                error_range_int(p, min, max, errp);
            } else {
                qapi_in_error_type(p, "integer", errp);
            }
            return false;
        }
        if ((!neg && mag > INT64_MAX) || (neg && mag > (uint64_t)INT64_MAX + 1)) {
            error_range_int(p, min, max, errp);
            return false;
        }
        val = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    } else {
        qapi_in_error_type(p, "integer", errp);
        return false;
    }
    if (val < min || val > max) {
        error_range_int(p, min, max, errp);
        return false;
    }
    *out = val;
    return true;
}

/*
 * A keyval size: an integer, or a decimal number with a suffix
 * b/k/M/G/T/P/E (any case; powers of 1024), e.g. "64k", "1.5G".
 * Returns 1 on success, 0 when s is not a size, -1 when it is too big.
 */
static int parse_kv_size(const char *s, uint64_t *out)
{
    static const char suffixes[] = "bkmgtpe";
    const char *sfx;
    double num, mult;
    char *end;
    int shift;

    if (!g_ascii_isdigit(*s)) {
        return 0;
    }
    num = g_ascii_strtod(s, &end);
    if (end == s || !end[0] || end[1] ||
        !(sfx = strchr(suffixes, g_ascii_tolower(end[0])))) {
        return 0;
    }
    shift = (int)(sfx - suffixes) * 10;
    mult = ldexp(1.0, shift);
    if (!isfinite(num) || num * mult >= 18446744073709551616.0) {
        return -1;
    }
    *out = (uint64_t)(num * mult);
    return 1;
}

bool qapi_in_uint(const json_t *v, const QapiPath *p, uint64_t max,
                  const char *type_name, uint64_t *out, Error **errp)
{
    uint64_t val;

    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0) {
            error_range_uint(p, max, errp);
            return false;
        }
        val = json_integer_value(v);
    } else if (p->keyval && json_is_string(v)) {
        const char *s = json_string_value(v);
        bool neg, overflow;
        int ret;

        if (!parse_kv_integer(s, true, &neg, &val, &overflow)) {
            ret = strcmp(type_name, "size") == 0 ? parse_kv_size(s, &val) : 0;
            if (ret == 0 && !overflow) {
                qapi_in_error_type(p, "integer", errp);
                return false;
            }
            if (ret <= 0) {
                error_range_uint(p, max, errp);
                return false;
            }
        } else if (neg && val != 0) {
            error_range_uint(p, max, errp);
            return false;
        }
    } else {
        qapi_in_error_type(p, "integer", errp);
        return false;
    }
    if (val > max) {
        error_range_uint(p, max, errp);
        return false;
    }
    *out = val;
    return true;
}

/* The keyval spellings of booleans; false when s is none of them. */
static bool parse_kv_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "on", "yes", "true" };
    static const char *const no[] = { "off", "no", "false" };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(yes); i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

bool qapi_in_bool(const json_t *v, const QapiPath *p, bool *out, Error **errp)
{
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return true;
    }
    if (p->keyval && json_is_string(v) &&
        parse_kv_bool(json_string_value(v), out)) {
        return true;
    }
    qapi_in_error_type(p, "boolean", errp);
    return false;
}

/* A finite decimal number filling all of s. */
static bool parse_kv_number(const char *s, double *out)
{
    char *end;

    if (!*s || g_ascii_isspace(*s)) {
        return false;
    }
    *out = g_ascii_strtod(s, &end);
    return !*end && isfinite(*out);
}

bool qapi_in_number(const json_t *v, const QapiPath *p, double *out,
                    Error **errp)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return true;
    }
    if (p->keyval && json_is_string(v) &&
        parse_kv_number(json_string_value(v), out)) {
        return true;
    }
    qapi_in_error_type(p, "number", errp);
    return false;
}

bool qapi_in_null(const json_t *v, const QapiPath *p, Error **errp)
{
    if (json_is_null(v)) {
        return true;
    }
    /* keyval has no null literal: an empty value stands for it. */
    if (p->keyval && json_is_string(v) && json_string_length(v) == 0) {
        return true;
    }
    qapi_in_error_type(p, "null", errp);
    return false;
}

bool qapi_in_any(const json_t *v, const QapiPath *p, json_t **out,
                 Error **errp)
{
    *out = json_incref((json_t *)v);
    return true;
}

bool qapi_in_enum(const json_t *v, const QapiPath *p,
                  int (*parse)(const char *), int *out, Error **errp)
{
    g_autofree char *name = NULL;
    int val;

    if (!json_is_string(v)) {
        qapi_in_error_type(p, "string", errp);
        return false;
    }
    val = parse(json_string_value(v));
    if (val < 0) {
        name = qapi_path_name(p);
        error_setg(errp, "Parameter '%s' does not accept value '%s'", name,
                   json_string_value(v));
        return false;
    }
    *out = val;
    return true;
}

bool qapi_in_check_object(const json_t *v, const QapiPath *p, Error **errp)
{
    if (!json_is_object(v)) {
        qapi_in_error_type(p, "object", errp);
        return false;
    }
    return true;
}

bool qapi_in_check_array(const json_t *v, const QapiPath *p, Error **errp)
{
    if (!json_is_array(v)) {
        qapi_in_error_type(p, "array", errp);
        return false;
    }
    return true;
}

bool qapi_in_is_empty_list(const json_t *v, const QapiPath *p)
{
    return p->keyval && json_is_string(v) && json_string_length(v) == 0;
}

bool qapi_in_check_unexpected(const json_t *obj, const QapiPath *p,
                              const char *const *known, Error **errp)
{
    const char *key;
    json_t *val;

    json_object_foreach((json_t *)obj, key, val) {
        const char *const *k;

        for (k = known; *k; k++) {
            if (strcmp(*k, key) == 0) {
                break;
            }
        }
        if (!*k) {
            QapiPath mp = QAPI_PATH_MEMBER(p, key);
            g_autofree char *name = qapi_path_name(&mp);

            error_setg(errp, "Parameter '%s' is unexpected", name);
            return false;
        }
    }
    return true;
}

/* The branch a keyval string goes to when there is no string branch. */
static QType alternate_kv_string(const char *s, unsigned allowed)
{
    bool b;
    double d;

    if ((allowed & (1u << QTYPE_QBOOL)) && parse_kv_bool(s, &b)) {
        return QTYPE_QBOOL;
    }
    if ((allowed & (1u << QTYPE_QNUM)) && parse_kv_number(s, &d)) {
        return QTYPE_QNUM;
    }
    if ((allowed & (1u << QTYPE_QNULL)) && !*s) {
        return QTYPE_QNULL;
    }
    return QTYPE_NONE;
}

QType qapi_in_alternate_type(const json_t *v, const QapiPath *p,
                             unsigned allowed)
{
    QType t;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        t = QTYPE_QDICT;
        break;
    case JSON_ARRAY:
        t = QTYPE_QLIST;
        break;
    case JSON_STRING:
        if (p->keyval && !(allowed & (1u << QTYPE_QSTRING))) {
            return alternate_kv_string(json_string_value(v), allowed);
        }
        t = QTYPE_QSTRING;
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        t = QTYPE_QNUM;
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        t = QTYPE_QBOOL;
        break;
    case JSON_NULL:
        t = QTYPE_QNULL;
        break;
    default:
        return QTYPE_NONE;
    }
    return (allowed & (1u << t)) ? t : QTYPE_NONE;
}
