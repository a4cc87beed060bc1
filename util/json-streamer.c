/*
 * JSON stream framing for the QMP monitor (see include/util/json-streamer.h
 * for the rules).  Owner: monitor work.
 *
 * The scanner looks at each byte once.  Bytes of the value being scanned
 * are not copied while the value lies inside the current chunk: a value
 * that starts and ends in one chunk (the common case, one request per
 * read) is parsed straight from the caller's buffer.  Only a value split
 * across chunks is accumulated in s->buf, which is reused between values.
 */
#include <string.h>

#include "util/json-streamer.h"

typedef enum StreamerState {
    ST_IDLE,        /* between values */
    ST_CONTAINER,   /* inside a top-level object or array */
    ST_STRING,      /* inside a top-level string */
    ST_TOKEN,       /* inside a top-level number, literal or garbage */
} StreamerState;

/* Ownership: all fields belong to the streamer's owner (one thread). */
struct JsonStreamer {
    JsonStreamerEmit *emit;
    void *opaque;
    size_t max_size;
    unsigned max_depth;

    StreamerState state;
    GString *buf;       /* bytes of the current value from earlier chunks */
    size_t len;         /* bytes of the current value so far, skipped too */
    unsigned depth;     /* bracket depth inside ST_CONTAINER */
    bool in_string;     /* inside a string within a container */
    bool escape;        /* previous byte was a backslash inside a string */
    bool skipping;      /* value already reported as too big / too deep */
};

JsonStreamer *json_streamer_new_limits(JsonStreamerEmit *emit, void *opaque,
                                       size_t max_size, unsigned max_depth)
{
    JsonStreamer *s = g_new0(JsonStreamer, 1);

    s->emit = emit;
    s->opaque = opaque;
    s->max_size = max_size;
    s->max_depth = max_depth;
    s->buf = g_string_sized_new(256);
    return s;
}

JsonStreamer *json_streamer_new(JsonStreamerEmit *emit, void *opaque)
{
    return json_streamer_new_limits(emit, opaque, JSON_STREAMER_MAX_SIZE,
                                    JSON_STREAMER_MAX_DEPTH);
}

void json_streamer_reset(JsonStreamer *s)
{
    s->state = ST_IDLE;
    g_string_truncate(s->buf, 0);
    s->len = 0;
    s->depth = 0;
    s->in_string = false;
    s->escape = false;
    s->skipping = false;
}

void json_streamer_free(JsonStreamer *s)
{
    if (s) {
        g_string_free(s->buf, TRUE);
        g_free(s);
    }
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_structural(char c)
{
    return c == '{' || c == '}' || c == '[' || c == ']' || c == '"' ||
           c == ',' || c == ':';
}

/* Parses one complete value and hands the result to the callback. */
static void emit_text(JsonStreamer *s, const char *text, size_t len)
{
    json_error_t jerr;
    json_t *v = json_loadb(text, len,
                           JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);

    if (v) {
        s->emit(s->opaque, v, NULL);
    } else {
        Error *err = NULL;

        error_setg(&err, "JSON parse error, %s", jerr.text);
        s->emit(s->opaque, NULL, err);
    }
}

/*
 * The value ends with the bytes run[0..n) of the current chunk (appended
 * to what earlier chunks left in s->buf).  Emits it unless it was skipped,
 * and returns to ST_IDLE.
 */
static void finish_value(JsonStreamer *s, const char *run, size_t n)
{
    if (!s->skipping) {
        if (s->buf->len == 0) {
            emit_text(s, run, n);
        } else {
            g_string_append_len(s->buf, run, n);
            emit_text(s, s->buf->str, s->buf->len);
        }
    }
    json_streamer_reset(s);
}

/* Reports the current value as bad and skips the rest of it. */
static void start_skipping(JsonStreamer *s, const char *msg)
{
    Error *err = NULL;

    error_setg(&err, "%s", msg);
    s->skipping = true;
    g_string_truncate(s->buf, 0);
    s->emit(s->opaque, NULL, err);
}

static void report_too_big(JsonStreamer *s)
{
    g_autofree char *msg = g_strdup_printf(
        "JSON message exceeds the size limit of %zu bytes", s->max_size);

    start_skipping(s, msg);
}

static void report_too_deep(JsonStreamer *s)
{
    g_autofree char *msg = g_strdup_printf(
        "JSON nesting exceeds the limit of %u levels", s->max_depth);

    start_skipping(s, msg);
}

/* Starts a value with byte c; returns true if c alone completes it. */
static bool start_value(JsonStreamer *s, char c)
{
    s->len = 0;
    switch (c) {
    case '{':
    case '[':
        s->state = ST_CONTAINER;
        s->depth = 1;
        if (s->depth > s->max_depth) {
            report_too_deep(s);
        }
        return false;
    case '"':
        s->state = ST_STRING;
        s->in_string = true;
        return false;
    case '}':
    case ']':
    case ',':
    case ':':
        /* Stray structural character: jansson names the problem. */
        return true;
    default:
        s->state = ST_TOKEN;
        return false;
    }
}

/* Tracks strings and escapes; returns true if c is inside a string. */
static bool scan_string_byte(JsonStreamer *s, char c)
{
    if (!s->in_string) {
        if (c == '"') {
            s->in_string = true;
            return true;
        }
        return false;
    }
    if (s->escape) {
        s->escape = false;
    } else if (c == '\\') {
        s->escape = true;
    } else if (c == '"') {
        s->in_string = false;
    }
    return true;
}

/* One byte inside a container or top-level string; true if value ends. */
static bool scan_byte(JsonStreamer *s, char c)
{
    if (s->state == ST_STRING) {
        scan_string_byte(s, c);
        return !s->in_string;
    }
    if (scan_string_byte(s, c)) {
        return false;
    }
    if (c == '{' || c == '[') {
        s->depth++;
        if (s->depth > s->max_depth && !s->skipping) {
            report_too_deep(s);
        }
    } else if (c == '}' || c == ']') {
        s->depth--;
        return s->depth == 0;
    }
    return false;
}

void json_streamer_feed(JsonStreamer *s, const char *buf, size_t len)
{
    const char *run = buf;  /* first byte of the value not yet in s->buf */
    size_t i = 0;

    while (i < len) {
        char c = buf[i];

        if ((unsigned char)c == 0xFF) {
            json_streamer_reset(s);
            run = buf + ++i;
            continue;
        }
        if (s->state == ST_IDLE) {
            if (is_ws(c)) {
                run = buf + ++i;
                continue;
            }
            run = buf + i;
            if (start_value(s, c)) {
                i++;
                finish_value(s, run, 1);
                run = buf + i;
                continue;
            }
        } else if (s->state == ST_TOKEN && (is_ws(c) || is_structural(c))) {
            /* The delimiter is not part of the token: rescan it. */
            finish_value(s, run, buf + i - run);
            run = buf + i;
            continue;
        } else if (scan_byte(s, c)) {
            i++;
            s->len++;
            if (s->len > s->max_size && !s->skipping) {
                report_too_big(s);
            }
            finish_value(s, run, buf + i - run);
            run = buf + i;
            continue;
        }
        i++;
        s->len++;
        if (s->len > s->max_size && !s->skipping) {
            report_too_big(s);
        }
        if (s->skipping) {
            run = buf + i;
        }
    }
    if (s->state != ST_IDLE && !s->skipping) {
        g_string_append_len(s->buf, run, buf + len - run);
    }
}
