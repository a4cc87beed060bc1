/*
 * Unit tests for the keyval option parser (include/util/keyval.h): the
 * shapes it builds from good input and the message for each kind of bad
 * input.
 */
#include <string.h>

#include "util/keyval.h"

/* Parses params and returns the result as compact JSON text. */
static char *parse_to_text(const char *params, const char *implied_key,
                           bool *help)
{
    json_t *v = keyval_parse(params, implied_key, help, &error_abort);
    char *text = json_dumps(v, JSON_COMPACT);
    char *ret = g_strdup(text);

    free(text);
    json_decref(v);
    return ret;
}

static void check_parse(const char *params, const char *implied_key,
                        const char *expected)
{
    g_autofree char *text = parse_to_text(params, implied_key, NULL);

    g_assert_cmpstr(text, ==, expected);
}

/* Checks that parsing fails with exactly the message expected. */
static void check_error(const char *params, const char *implied_key,
                        const char *expected)
{
    Error *err = NULL;
    json_t *v = keyval_parse(params, implied_key, NULL, &err);

    g_assert_null(v);
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, expected);
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_GENERIC_ERROR);
    error_free(err);
}

static void test_flat(void)
{
    check_parse("a=1,b=two", NULL, "{\"a\":\"1\",\"b\":\"two\"}");
}

static void test_empty_string(void)
{
    check_parse("", NULL, "{}");
}

static void test_empty_value(void)
{
    check_parse("a=,b=", NULL, "{\"a\":\"\",\"b\":\"\"}");
}

static void test_dotted(void)
{
    check_parse("a.b=1,a.c=2,d=3", NULL,
                "{\"a\":{\"b\":\"1\",\"c\":\"2\"},\"d\":\"3\"}");
}

static void test_deep_dotted(void)
{
    check_parse("x.y.z=v", NULL, "{\"x\":{\"y\":{\"z\":\"v\"}}}");
}

static void test_array(void)
{
    check_parse("l.1=b,l.0=a", NULL, "{\"l\":[\"a\",\"b\"]}");
}

static void test_array_of_objects(void)
{
    check_parse("l.0.k=a,l.1.k=b", NULL,
                "{\"l\":[{\"k\":\"a\"},{\"k\":\"b\"}]}");
}

static void test_nested_arrays(void)
{
    check_parse("m.0.0=x,m.0.1=y", NULL, "{\"m\":[[\"x\",\"y\"]]}");
}

static void test_comma_escape(void)
{
    check_parse("path=a,,b,,,c=d", NULL,
                "{\"path\":\"a,b,\",\"c\":\"d\"}");
}

static void test_trailing_comma(void)
{
    check_parse("a=1,", NULL, "{\"a\":\"1\"}");
}

static void test_implied_key(void)
{
    check_parse("iothread,id=io0", "qom-type",
                "{\"qom-type\":\"iothread\",\"id\":\"io0\"}");
}

static void test_implied_key_explicit(void)
{
    check_parse("qom-type=iothread,id=io0", "qom-type",
                "{\"qom-type\":\"iothread\",\"id\":\"io0\"}");
}

static void test_implied_key_value_with_comma(void)
{
    check_parse("c0,,x", "chardev", "{\"chardev\":\"c0,x\"}");
}

static void test_value_may_contain_equals(void)
{
    check_parse("a=b=c", NULL, "{\"a\":\"b=c\"}");
}

static void test_help(void)
{
    bool help = false;
    g_autofree char *text = parse_to_text("id=x,help", NULL, &help);

    g_assert_true(help);
    g_assert_cmpstr(text, ==, "{\"id\":\"x\"}");
}

static void test_help_alone(void)
{
    bool help = false;
    g_autofree char *text = parse_to_text("help", "qom-type", &help);

    g_assert_true(help);
    g_assert_cmpstr(text, ==, "{}");
}

static void test_question_mark_help(void)
{
    bool help = false;
    g_autofree char *text = parse_to_text("?", NULL, &help);

    g_assert_true(help);
    g_assert_cmpstr(text, ==, "{}");
}

static void test_no_help(void)
{
    bool help = true;
    g_autofree char *text = parse_to_text("a=help", NULL, &help);

    g_assert_false(help);
    g_assert_cmpstr(text, ==, "{\"a\":\"help\"}");
}

static void test_help_without_help_pointer(void)
{
    check_error("a=1,help", NULL, "Expected '=' after parameter 'help'");
}

static void test_duplicate(void)
{
    check_error("a=1,a=2", NULL, "Parameter 'a' is duplicated");
}

static void test_duplicate_dotted(void)
{
    check_error("a.b=1,a.b=2", NULL, "Parameter 'a.b' is duplicated");
}

static void test_duplicate_implied(void)
{
    check_error("iothread,qom-type=x", "qom-type",
                "Parameter 'qom-type' is duplicated");
}

static void test_leaf_then_prefix(void)
{
    check_error("a=1,a.b=2", NULL, "Parameters 'a.*' used inconsistently");
}

static void test_prefix_then_leaf(void)
{
    check_error("a.b=2,a=1", NULL, "Parameters 'a.*' used inconsistently");
}

static void test_deep_inconsistent(void)
{
    check_error("a.b=1,a.b.c=2", NULL,
                "Parameters 'a.b.*' used inconsistently");
}

static void test_array_gap(void)
{
    check_error("l.0=a,l.2=c", NULL, "Parameter 'l.1' is missing");
}

static void test_array_not_from_zero(void)
{
    check_error("l.1=a", NULL, "Parameter 'l.0' is missing");
}

static void test_array_mixed_keys(void)
{
    check_error("l.0=a,l.x=b", NULL, "Parameters 'l.*' used inconsistently");
}

static void test_nested_array_gap(void)
{
    check_error("o.l.0=a,o.l.3=b", NULL, "Parameter 'o.l.1' is missing");
}

static void test_leading_zero_is_not_index(void)
{
    check_error("l.0=a,l.01=b", NULL, "Parameters 'l.*' used inconsistently");
}

static void test_invalid_char(void)
{
    check_error("a b=1", NULL, "Invalid parameter 'a b'");
}

static void test_empty_fragment(void)
{
    check_error("a..b=1", NULL, "Invalid parameter 'a..b'");
}

static void test_trailing_dot(void)
{
    check_error("a.=1", NULL, "Invalid parameter 'a.'");
}

static void test_empty_key(void)
{
    check_error("=1", NULL, "Expected a parameter name before '='");
}

static void test_empty_element(void)
{
    check_error(",a=1", NULL, "Expected a parameter name before ','");
}

static void test_missing_equals(void)
{
    check_error("a=1,b", NULL, "Expected '=' after parameter 'b'");
}

static void test_no_implied_key(void)
{
    check_error("iothread", NULL, "Expected '=' after parameter 'iothread'");
}

static void test_json_object(void)
{
    bool is_json = false;
    json_t *v = keyval_or_json_parse("{\"a\": 1}", "x", &is_json,
                                     &error_abort);

    g_assert_true(is_json);
    g_assert_true(json_is_integer(json_object_get(v, "a")));
    json_decref(v);
}

static void test_json_falls_back_to_keyval(void)
{
    bool is_json = true;
    json_t *v = keyval_or_json_parse("iothread,id=a", "qom-type", &is_json,
                                     &error_abort);

    g_assert_false(is_json);
    g_assert_cmpstr(json_string_value(json_object_get(v, "qom-type")), ==,
                    "iothread");
    json_decref(v);
}

static void test_json_syntax_error(void)
{
    bool is_json = false;
    Error *err = NULL;

    g_assert_null(keyval_or_json_parse("{\"a\": }", NULL, &is_json, &err));
    g_assert_true(is_json);
    g_assert_true(g_str_has_prefix(error_get_pretty(err),
                                   "JSON parse error, "));
    error_free(err);
}

static void test_json_duplicate_key(void)
{
    bool is_json = false;
    Error *err = NULL;

    g_assert_null(keyval_or_json_parse("{\"a\": 1, \"a\": 2}", NULL,
                                       &is_json, &err));
    g_assert_true(g_str_has_prefix(error_get_pretty(err),
                                   "JSON parse error, duplicate object key"));
    error_free(err);
}

static void test_json_trailing_garbage(void)
{
    bool is_json = false;
    Error *err = NULL;

    g_assert_null(keyval_or_json_parse("{} []", NULL, &is_json, &err));
    g_assert_true(g_str_has_prefix(error_get_pretty(err),
                                   "JSON parse error, "));
    error_free(err);
}

static void test_keyval_error_via_json_api(void)
{
    bool is_json = true;
    Error *err = NULL;

    g_assert_null(keyval_or_json_parse("a=1,a=2", NULL, &is_json, &err));
    g_assert_false(is_json);
    g_assert_cmpstr(error_get_pretty(err), ==, "Parameter 'a' is duplicated");
    error_free(err);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        GTestFunc fn;
    } tests[] = {
        { "flat", test_flat },
        { "empty-string", test_empty_string },
        { "empty-value", test_empty_value },
        { "dotted", test_dotted },
        { "deep-dotted", test_deep_dotted },
        { "array", test_array },
        { "array-of-objects", test_array_of_objects },
        { "nested-arrays", test_nested_arrays },
        { "comma-escape", test_comma_escape },
        { "trailing-comma", test_trailing_comma },
        { "implied-key", test_implied_key },
        { "implied-key-explicit", test_implied_key_explicit },
        { "implied-key-value-with-comma", test_implied_key_value_with_comma },
        { "value-may-contain-equals", test_value_may_contain_equals },
        { "help", test_help },
        { "help-alone", test_help_alone },
        { "question-mark-help", test_question_mark_help },
        { "no-help", test_no_help },
        { "help-without-help-pointer", test_help_without_help_pointer },
        { "error/duplicate", test_duplicate },
        { "error/duplicate-dotted", test_duplicate_dotted },
        { "error/duplicate-implied", test_duplicate_implied },
        { "error/leaf-then-prefix", test_leaf_then_prefix },
        { "error/prefix-then-leaf", test_prefix_then_leaf },
        { "error/deep-inconsistent", test_deep_inconsistent },
        { "error/array-gap", test_array_gap },
        { "error/array-not-from-zero", test_array_not_from_zero },
        { "error/array-mixed-keys", test_array_mixed_keys },
        { "error/nested-array-gap", test_nested_array_gap },
        { "error/leading-zero", test_leading_zero_is_not_index },
        { "error/invalid-char", test_invalid_char },
        { "error/empty-fragment", test_empty_fragment },
        { "error/trailing-dot", test_trailing_dot },
        { "error/empty-key", test_empty_key },
        { "error/empty-element", test_empty_element },
        { "error/missing-equals", test_missing_equals },
        { "error/no-implied-key", test_no_implied_key },
        { "json/object", test_json_object },
        { "json/falls-back-to-keyval", test_json_falls_back_to_keyval },
        { "json/syntax-error", test_json_syntax_error },
        { "json/duplicate-key", test_json_duplicate_key },
        { "json/trailing-garbage", test_json_trailing_garbage },
        { "json/keyval-error", test_keyval_error_via_json_api },
    };

    g_test_init(&argc, &argv, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(tests); i++) {
        g_autofree char *path = g_strdup_printf("/keyval/%s", tests[i].name);

        g_test_add_func(path, tests[i].fn);
    }
    return g_test_run();
}
