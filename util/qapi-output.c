/*
 * Builtin serialisers for the code scripts/qapi-gen.py generates: append
 * single-line JSON text for one C value straight to a GString, spaced as
 * QEMU's QMP output is (", " and ": ").  There is no
 * intermediate JSON tree and no allocation beyond growing the buffer,
 * because replies such as query-blockstats render thousands of entries.
 *
 * Pure functions: any thread may call them on a buffer it owns.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qapi/qapi-runtime.h"

/* Bytes that need no escaping inside a JSON string (ASCII only). */
static inline bool plain_ascii(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* Appends the escape sequence for the ASCII byte c. */
static void append_escape(GString *buf, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    char esc[7] = { '\\', 'u', '0', '0', 0, 0, 0 };

    switch (c) {
    case '"':
        g_string_append_len(buf, "\\\"", 2);
        return;
    case '\\':
        g_string_append_len(buf, "\\\\", 2);
        return;
    case '\n':
        g_string_append_len(buf, "\\n", 2);
        return;
    case '\r':
        g_string_append_len(buf, "\\r", 2);
        return;
    case '\t':
        g_string_append_len(buf, "\\t", 2);
        return;
    case '\b':
        g_string_append_len(buf, "\\b", 2);
        return;
    case '\f':
        g_string_append_len(buf, "\\f", 2);
        return;
    default:
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 0xf];
        g_string_append_len(buf, esc, 6);
        return;
    }
}

/*
 * Strings are written in runs of plain bytes.  Valid UTF-8 passes through
 * unchanged; an invalid byte becomes U+FFFD so the output is always valid
 * JSON whatever a driver or file name put into the string.
 */
void qapi_out_str(GString *buf, const char *s)
{
    const char *p = s ? s : "";
    const char *run = p;

    g_string_append_c(buf, '"');
    while (*p) {
        unsigned char c = *p;

        if (plain_ascii(c)) {
            p++;
            continue;
        }
        g_string_append_len(buf, run, p - run);
        if (c < 0x80) {
            append_escape(buf, c);
            p++;
        } else {
            const char *next = g_utf8_next_char(p);
            size_t max = strnlen(p, 4);

            if (g_utf8_get_char_validated(p, max) >= 0x80000000u ||
                (size_t)(next - p) > max) {
                g_string_append(buf, "\\ufffd");
                p++;
            } else {
                g_string_append_len(buf, p, next - p);
                p = next;
            }
        }
        run = p;
    }
    g_string_append_len(buf, run, p - run);
    g_string_append_c(buf, '"');
}

void qapi_out_uint(GString *buf, uint64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof(tmp);

    do {
        *--p = '0' + v % 10;
        v /= 10;
    } while (v);
    g_string_append_len(buf, p, tmp + sizeof(tmp) - p);
}

void qapi_out_int(GString *buf, int64_t v)
{
    if (v < 0) {
        g_string_append_c(buf, '-');
        /* Negate in unsigned arithmetic: -INT64_MIN overflows int64_t. */
        qapi_out_uint(buf, 0 - (uint64_t)v);
    } else {
        qapi_out_uint(buf, v);
    }
}

void qapi_out_bool(GString *buf, bool v)
{
    if (v) {
        g_string_append_len(buf, "true", 4);
    } else {
        g_string_append_len(buf, "false", 5);
    }
}

/*
 * Numbers read back as the same double: integral values print as integers
 * (fast path), others with %.15g when that is exact (so 0.1 prints as 0.1)
 * and with %.17g, which always is, otherwise.  JSON has no infinity or
 * NaN: they print as null.
 */
void qapi_out_number(GString *buf, double v)
{
    char tmp[G_ASCII_DTOSTR_BUF_SIZE];

    if (!isfinite(v)) {
        qapi_out_null(buf);
        return;
    }
    /* Exact integers below 2^53; -0.0 keeps its sign via the format. */
    if (v == trunc(v) && fabs(v) < 9007199254740992.0 &&
        (v != 0 || !signbit(v))) {
        qapi_out_int(buf, (int64_t)v);
        return;
    }
    g_ascii_formatd(tmp, sizeof(tmp), "%.15g", v);
    if (g_ascii_strtod(tmp, NULL) != v) {
        g_ascii_formatd(tmp, sizeof(tmp), "%.17g", v);
    }
    g_string_append(buf, tmp);
}

void qapi_out_null(GString *buf)
{
    g_string_append_len(buf, "null", 4);
}

static int dump_to_gstring(const char *text, size_t size, void *opaque)
{
    g_string_append_len(opaque, text, size);
    return 0;
}

void qapi_out_any(GString *buf, const json_t *v)
{
    if (!v) {
        qapi_out_null(buf);
        return;
    }
    /* Without JSON_COMPACT jansson separates with ", " and ": ", which is
     * what every other serialiser here writes (QEMU's QMP spacing). */
    json_dump_callback(v, dump_to_gstring, buf, JSON_ENCODE_ANY);
}

void qapi_out_key(GString *buf, const char *name, bool *first)
{
    if (*first) {
        *first = false;
    } else {
        g_string_append_len(buf, ", ", 2);
    }
    /* Schema member names never need escaping. */
    g_string_append_c(buf, '"');
    g_string_append(buf, name);
    g_string_append_len(buf, "\": ", 3);
}
