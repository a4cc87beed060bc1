/*
 * Unit tests for the JSON stream framer (include/util/json-streamer.h):
 * values split at every byte, several values per chunk, strings that
 * contain brackets and escaped quotes, every error kind and the resync
 * after it.
 */
#include <string.h>

#include "util/json-streamer.h"

/* What the streamer reported, in order: JSON text or "ERR: message". */
typedef struct Recorder {
    GPtrArray *events;
} Recorder;

static void record(void *opaque, json_t *value, Error *err)
{
    Recorder *r = opaque;

    g_assert((value == NULL) != (err == NULL));
    if (value) {
        char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        g_ptr_array_add(r->events, g_strdup(text));
        free(text);
        json_decref(value);
    } else {
        g_ptr_array_add(r->events,
                        g_strdup_printf("ERR: %s", error_get_pretty(err)));
        error_free(err);
    }
}

static void recorder_init(Recorder *r)
{
    r->events = g_ptr_array_new_with_free_func(g_free);
}

static void recorder_destroy(Recorder *r)
{
    g_ptr_array_free(r->events, TRUE);
}

static const char *event(Recorder *r, guint i)
{
    g_assert_cmpuint(i, <, r->events->len);
    return g_ptr_array_index(r->events, i);
}

/* Feeds the whole string in one chunk to a default streamer. */
static void feed_all(Recorder *r, const char *input)
{
    g_autoptr(JsonStreamer) s = json_streamer_new(record, r);

    json_streamer_feed(s, input, strlen(input));
}

static void test_single_object(void)
{
    Recorder r;

    recorder_init(&r);
    feed_all(&r, "{\"execute\": \"quit\"}");
    g_assert_cmpuint(r.events->len, ==, 1);
    g_assert_cmpstr(event(&r, 0), ==, "{\"execute\":\"quit\"}");
    recorder_destroy(&r);
}

static void test_split_every_position(void)
{
    const char *msg = "{\"execute\": \"x\", \"arguments\": {\"a\": [1, "
                      "{\"b\": \"}]\\\"\"}]}, \"id\": 7}";
    size_t len = strlen(msg);

    for (size_t cut = 0; cut <= len; cut++) {
        Recorder r;
        g_autoptr(JsonStreamer) s = NULL;

        recorder_init(&r);
        s = json_streamer_new(record, &r);
        json_streamer_feed(s, msg, cut);
        json_streamer_feed(s, msg + cut, len - cut);
        g_assert_cmpuint(r.events->len, ==, 1);
        g_assert_cmpstr(event(&r, 0), ==,
                        "{\"execute\":\"x\",\"arguments\":{\"a\":[1,"
                        "{\"b\":\"}]\\\"\"}]},\"id\":7}");
        recorder_destroy(&r);
    }
}

static void test_byte_by_byte(void)
{
    const char *msg = " [1, \"a\\\\\"] {\"k\": null}\n";
    Recorder r;
    g_autoptr(JsonStreamer) s = NULL;

    recorder_init(&r);
    s = json_streamer_new(record, &r);
    for (size_t i = 0; msg[i]; i++) {
        json_streamer_feed(s, msg + i, 1);
    }
    g_assert_cmpuint(r.events->len, ==, 2);
    g_assert_cmpstr(event(&r, 0), ==, "[1,\"a\\\\\"]");
    g_assert_cmpstr(event(&r, 1), ==, "{\"k\":null}");
    recorder_destroy(&r);
}

static void test_several_in_one_chunk(void)
{
    Recorder r;

    recorder_init(&r);
    feed_all(&r, "{\"a\":1}{\"b\":2}\r\n  {\"c\":3}");
    g_assert_cmpuint(r.events->len, ==, 3);
    g_assert_cmpstr(event(&r, 0), ==, "{\"a\":1}");
    g_assert_cmpstr(event(&r, 1), ==, "{\"b\":2}");
    g_assert_cmpstr(event(&r, 2), ==, "{\"c\":3}");
    recorder_destroy(&r);
}

static void test_brackets_in_strings(void)
{
    Recorder r;

    recorder_init(&r);
    feed_all(&r, "{\"s\": \"{[\\\"}]\"} [\"]\"]");
    g_assert_cmpuint(r.events->len, ==, 2);
    g_assert_cmpstr(event(&r, 0), ==, "{\"s\":\"{[\\\"}]\"}");
    g_assert_cmpstr(event(&r, 1), ==, "[\"]\"]");
    recorder_destroy(&r);
}

static void test_top_level_scalars(void)
{
    Recorder r;

    recorder_init(&r);
    feed_all(&r, "42 \"x}\" true{\"a\":1}-1.5[2] null\n");
    g_assert_cmpuint(r.events->len, ==, 7);
    g_assert_cmpstr(event(&r, 0), ==, "42");
    g_assert_cmpstr(event(&r, 1), ==, "\"x}\"");
    g_assert_cmpstr(event(&r, 2), ==, "true");
    g_assert_cmpstr(event(&r, 3), ==, "{\"a\":1}");
    g_assert_cmpstr(event(&r, 4), ==, "-1.5");
    g_assert_cmpstr(event(&r, 5), ==, "[2]");
    g_assert_cmpstr(event(&r, 6), ==, "null");
    recorder_destroy(&r);
}

static void test_token_waits_for_delimiter(void)
{
    Recorder r;
    g_autoptr(JsonStreamer) s = NULL;

    recorder_init(&r);
    s = json_streamer_new(record, &r);
    json_streamer_feed(s, "12", 2);
    g_assert_cmpuint(r.events->len, ==, 0);
    json_streamer_feed(s, "3 ", 2);
    g_assert_cmpuint(r.events->len, ==, 1);
    g_assert_cmpstr(event(&r, 0), ==, "123");
    recorder_destroy(&r);
}

static void test_parse_error_resync(void)
{
    Recorder r;

    recorder_init(&r);
    feed_all(&r, "{\"execute\": }{\"execute\" \"x\"} tru {\"ok\":1}");
    g_assert_cmpuint(r.events->len, ==, 4);
    g_assert_true(g_str_has_prefix(event(&r, 0), "ERR: JSON parse error, "));
    g_assert_true(g_str_has_prefix(event(&r, 1), "ERR: JSON parse error, "));
    g_assert_true(g_str_has_prefix(event(&r, 2), "ERR: JSON parse error, "));
    g_assert_cmpstr(event(&r, 3), ==, "{\"ok\":1}");
    recorder_destroy(&r);
}

static void test_duplicate_key(void)
{
    Recorder r;

    recorder_init(&r);
    feed_all(&r, "{\"a\": 1, \"a\": 2}");
    g_assert_cmpuint(r.events->len, ==, 1);
    g_assert_true(g_str_has_prefix(event(&r, 0),
                                   "ERR: JSON parse error, duplicate object key"));
    recorder_destroy(&r);
}

static void test_stray_closers(void)
{
    Recorder r;

    recorder_init(&r);
    feed_all(&r, "}]{\"a\":1}}");
    g_assert_cmpuint(r.events->len, ==, 4);
    g_assert_true(g_str_has_prefix(event(&r, 0), "ERR: JSON parse error, "));
    g_assert_true(g_str_has_prefix(event(&r, 1), "ERR: JSON parse error, "));
    g_assert_cmpstr(event(&r, 2), ==, "{\"a\":1}");
    g_assert_true(g_str_has_prefix(event(&r, 3), "ERR: JSON parse error, "));
    recorder_destroy(&r);
}

static void test_int_out_of_range(void)
{
    Recorder r;

    recorder_init(&r);
    feed_all(&r, "{\"a\": 99999999999999999999}");
    g_assert_cmpuint(r.events->len, ==, 1);
    g_assert_true(g_str_has_prefix(event(&r, 0), "ERR: JSON parse error, "));
    recorder_destroy(&r);
}

static void test_default_size_limit(void)
{
    /* {"s":"xxx..."} of exactly the limit passes, one byte more fails. */
    size_t limit = JSON_STREAMER_MAX_SIZE;
    GString *ok = g_string_new("{\"s\":\"");
    Recorder r;

    while (ok->len < limit - 2) {
        g_string_append_c(ok, 'x');
    }
    g_string_append(ok, "\"}");
    g_assert_cmpuint(ok->len, ==, limit);
    recorder_init(&r);
    feed_all(&r, ok->str);
    g_string_insert_c(ok, 6, 'y');
    g_string_append(ok, "[1]");
    feed_all(&r, ok->str);
    g_assert_cmpuint(r.events->len, ==, 3);
    g_assert_cmpuint(strlen(event(&r, 0)), ==, limit);
    g_assert_cmpstr(event(&r, 1), ==,
                    "ERR: JSON message exceeds the size limit of 1048576 bytes");
    g_assert_cmpstr(event(&r, 2), ==, "[1]");
    g_string_free(ok, TRUE);
    recorder_destroy(&r);
}

static void test_size_limit_split_and_skip(void)
{
    /* The error comes as soon as the limit is crossed, the rest is skipped
     * across chunks, including brackets inside strings. */
    Recorder r;
    g_autoptr(JsonStreamer) s = NULL;

    recorder_init(&r);
    s = json_streamer_new_limits(record, &r, 10, 128);
    json_streamer_feed(s, "{\"a\": \"0123", 11);
    g_assert_cmpuint(r.events->len, ==, 1);
    g_assert_cmpstr(event(&r, 0), ==,
                    "ERR: JSON message exceeds the size limit of 10 bytes");
    json_streamer_feed(s, "4}]\", \"b\": [1]", 14);
    g_assert_cmpuint(r.events->len, ==, 1);
    json_streamer_feed(s, "} {\"c\":[]}", 10);
    g_assert_cmpuint(r.events->len, ==, 2);
    g_assert_cmpstr(event(&r, 1), ==, "{\"c\":[]}");
    recorder_destroy(&r);
}

static void test_size_limit_token(void)
{
    Recorder r;
    g_autoptr(JsonStreamer) s = NULL;

    recorder_init(&r);
    s = json_streamer_new_limits(record, &r, 4, 128);
    json_streamer_feed(s, "12345678 7 ", 11);
    g_assert_cmpuint(r.events->len, ==, 2);
    g_assert_cmpstr(event(&r, 0), ==,
                    "ERR: JSON message exceeds the size limit of 4 bytes");
    g_assert_cmpstr(event(&r, 1), ==, "7");
    recorder_destroy(&r);
}

static void test_depth_limit(void)
{
    GString *in = g_string_new(NULL);
    Recorder r;

    /* 128 levels pass, 129 fail and are skipped up to their end. */
    for (int i = 0; i < 128; i++) {
        g_string_append_c(in, '[');
    }
    for (int i = 0; i < 128; i++) {
        g_string_append_c(in, ']');
    }
    for (int i = 0; i < 129; i++) {
        g_string_append(in, "{\"a\":");
    }
    g_string_append(in, "\"]]\"");
    for (int i = 0; i < 129; i++) {
        g_string_append_c(in, '}');
    }
    g_string_append(in, "{\"next\":true}");
    recorder_init(&r);
    feed_all(&r, in->str);
    g_assert_cmpuint(r.events->len, ==, 3);
    g_assert_cmpuint(event(&r, 0)[0], ==, '[');
    g_assert_cmpstr(event(&r, 1), ==,
                    "ERR: JSON nesting exceeds the limit of 128 levels");
    g_assert_cmpstr(event(&r, 2), ==, "{\"next\":true}");
    g_string_free(in, TRUE);
    recorder_destroy(&r);
}

static void test_0xff_discards(void)
{
    Recorder r;
    g_autoptr(JsonStreamer) s = NULL;

    recorder_init(&r);
    s = json_streamer_new(record, &r);
    json_streamer_feed(s, "{\"execute\": \"a", 14);
    json_streamer_feed(s, "\xff", 1);
    json_streamer_feed(s, "{\"b\":1}", 7);
    g_assert_cmpuint(r.events->len, ==, 1);
    g_assert_cmpstr(event(&r, 0), ==, "{\"b\":1}");
    recorder_destroy(&r);
}

static void test_0xff_ends_skipping(void)
{
    Recorder r;
    g_autoptr(JsonStreamer) s = NULL;

    recorder_init(&r);
    s = json_streamer_new_limits(record, &r, 4, 128);
    json_streamer_feed(s, "[1,2,3,4,5\xff[6]", 14);
    g_assert_cmpuint(r.events->len, ==, 2);
    g_assert_true(g_str_has_prefix(event(&r, 0), "ERR: JSON message exceeds"));
    g_assert_cmpstr(event(&r, 1), ==, "[6]");
    recorder_destroy(&r);
}

static void test_reset(void)
{
    Recorder r;
    g_autoptr(JsonStreamer) s = NULL;

    recorder_init(&r);
    s = json_streamer_new(record, &r);
    json_streamer_feed(s, "[1, [2", 6);
    json_streamer_reset(s);
    json_streamer_feed(s, "[3]", 3);
    g_assert_cmpuint(r.events->len, ==, 1);
    g_assert_cmpstr(event(&r, 0), ==, "[3]");
    recorder_destroy(&r);
}

static void test_whitespace_only(void)
{
    Recorder r;

    recorder_init(&r);
    feed_all(&r, " \r\n\t \n");
    g_assert_cmpuint(r.events->len, ==, 0);
    recorder_destroy(&r);
}

static void test_top_level_string_split(void)
{
    Recorder r;
    g_autoptr(JsonStreamer) s = NULL;

    recorder_init(&r);
    s = json_streamer_new(record, &r);
    json_streamer_feed(s, "\"a\\", 3);
    json_streamer_feed(s, "\"[\"", 3);
    g_assert_cmpuint(r.events->len, ==, 1);
    g_assert_cmpstr(event(&r, 0), ==, "\"a\\\"[\"");
    recorder_destroy(&r);
}

static void test_stray_separators(void)
{
    Recorder r;

    recorder_init(&r);
    feed_all(&r, ":,[]");
    g_assert_cmpuint(r.events->len, ==, 3);
    g_assert_true(g_str_has_prefix(event(&r, 0), "ERR: JSON parse error, "));
    g_assert_true(g_str_has_prefix(event(&r, 1), "ERR: JSON parse error, "));
    g_assert_cmpstr(event(&r, 2), ==, "[]");
    recorder_destroy(&r);
}

static void test_0xff_inside_string(void)
{
    Recorder r;

    recorder_init(&r);
    feed_all(&r, "{\"a\": \"x\xff{\"b\": \"}\"}");
    g_assert_cmpuint(r.events->len, ==, 1);
    g_assert_cmpstr(event(&r, 0), ==, "{\"b\":\"}\"}");
    recorder_destroy(&r);
}

/* Errors are GenericError, which QMP reports as such. */
static void error_class_check(void *opaque, json_t *value, Error *err)
{
    int *count = opaque;

    g_assert_null(value);
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_GENERIC_ERROR);
    error_free(err);
    (*count)++;
}

static void test_error_class(void)
{
    int count = 0;
    g_autoptr(JsonStreamer) s =
        json_streamer_new_limits(error_class_check, &count, 8, 1);

    json_streamer_feed(s, "[[]] {\"a\":\"123456\"} }", 22);
    g_assert_cmpint(count, ==, 3);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/json-streamer/single-object", test_single_object);
    g_test_add_func("/json-streamer/split-every-position",
                    test_split_every_position);
    g_test_add_func("/json-streamer/byte-by-byte", test_byte_by_byte);
    g_test_add_func("/json-streamer/several-in-one-chunk",
                    test_several_in_one_chunk);
    g_test_add_func("/json-streamer/brackets-in-strings",
                    test_brackets_in_strings);
    g_test_add_func("/json-streamer/top-level-scalars", test_top_level_scalars);
    g_test_add_func("/json-streamer/token-waits-for-delimiter",
                    test_token_waits_for_delimiter);
    g_test_add_func("/json-streamer/parse-error-resync",
                    test_parse_error_resync);
    g_test_add_func("/json-streamer/duplicate-key", test_duplicate_key);
    g_test_add_func("/json-streamer/stray-closers", test_stray_closers);
    g_test_add_func("/json-streamer/int-out-of-range", test_int_out_of_range);
    g_test_add_func("/json-streamer/size-limit", test_default_size_limit);
    g_test_add_func("/json-streamer/size-limit-split-skip",
                    test_size_limit_split_and_skip);
    g_test_add_func("/json-streamer/size-limit-token", test_size_limit_token);
    g_test_add_func("/json-streamer/depth-limit", test_depth_limit);
    g_test_add_func("/json-streamer/0xff-discards", test_0xff_discards);
    g_test_add_func("/json-streamer/0xff-ends-skipping",
                    test_0xff_ends_skipping);
    g_test_add_func("/json-streamer/reset", test_reset);
    g_test_add_func("/json-streamer/whitespace-only", test_whitespace_only);
    g_test_add_func("/json-streamer/top-level-string-split",
                    test_top_level_string_split);
    g_test_add_func("/json-streamer/stray-separators", test_stray_separators);
    g_test_add_func("/json-streamer/0xff-inside-string",
                    test_0xff_inside_string);
    g_test_add_func("/json-streamer/error-class", test_error_class);
    return g_test_run();
}
