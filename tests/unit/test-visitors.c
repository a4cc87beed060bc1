/*
 * Tests of the code scripts/qapi-gen.py generates, through the test
 * schema tests/qapi-schema/qapi-schema-test.json (prefix "test-"): input
 * visitors and their exact error texts (the QMP contract), keyval
 * conversions, JSON round trips, marshallers reached through the command
 * table, events, and the introspection text.
 *
 * The handlers of the test schema's commands are defined here, and an
 * event recorder is registered as the event sink, as the monitor does for
 * the real schema.
 */
#include <glib.h>
#include <string.h>

#include "test-qapi-commands.h"
#include "test-qapi-events.h"
#include "test-qapi-types.h"
#include "test-qapi-visit.h"

/* ---- helpers ---------------------------------------------------------- */

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                           &jerr);

    if (!v) {
        g_error("bad test JSON '%s': %s", text, jerr.text);
    }
    return v;
}

/*
 * Visits text as TYPE (JSON mode or keyval mode) and checks that it fails
 * with exactly the message expected, leaving the output NULL.
 */
#define CHECK_IN_ERROR(TYPE, text, kv, expected)                          \
    do {                                                                  \
        json_t *src_ = parse(text);                                       \
        QapiPath root_ = QAPI_PATH_ROOT(kv);                              \
        TYPE *obj_ = (TYPE *)&root_;                                      \
        Error *err_ = NULL;                                               \
        g_assert_false(visit_in_##TYPE(src_, &root_, &obj_, &err_));      \
        g_assert_null(obj_);                                              \
        g_assert_nonnull(err_);                                           \
        g_assert_cmpstr(error_get_pretty(err_), ==, (expected));          \
        error_free(err_);                                                 \
        json_decref(src_);                                                \
    } while (0)

/* Visits text as TYPE, which must succeed; returns the C value. */
#define VISIT_OK(TYPE, text, kv)                                          \
    ({                                                                    \
        json_t *vsrc_ = parse(text);                                       \
        QapiPath vroot_ = QAPI_PATH_ROOT(kv);                              \
        TYPE *vobj_ = NULL;                                                \
        g_assert_true(visit_in_##TYPE(vsrc_, &vroot_, &vobj_, &error_abort)); \
        json_decref(vsrc_);                                                \
        vobj_;                                                             \
    })

/* JSON text -> C -> JSON text must give back the (canonical) input. */
#define CHECK_ROUND_TRIP(TYPE, text)                                      \
    do {                                                                  \
        g_autoptr(TYPE) obj_ = VISIT_OK(TYPE, text, false);               \
        GString *out_ = g_string_new(NULL);                               \
        qapi_out_##TYPE(out_, obj_);                                      \
        g_assert_cmpstr(out_->str, ==, (text));                           \
        g_string_free(out_, TRUE);                                        \
    } while (0)

/* ---- input: missing, unexpected, wrong JSON type ----------------------- */

static void test_in_missing(void)
{
    CHECK_IN_ERROR(TestLeaf, "{}", false, "Parameter 'c' is missing");
    CHECK_IN_ERROR(TestDerived, "{\"a\": {\"b\": []}}", false,
                   "Parameter 'base-name' is missing");
}

static void test_in_unexpected(void)
{
    CHECK_IN_ERROR(TestLeaf, "{\"c\": \"x\", \"zz\": 1}", false,
                   "Parameter 'zz' is unexpected");
    CHECK_IN_ERROR(TestMiddle, "{\"b\": [{\"c\": \"x\", \"e\": 1}]}", false,
                   "Parameter 'b[0].e' is unexpected");
}

static void test_in_wrong_string(void)
{
    CHECK_IN_ERROR(TestLeaf, "{\"c\": 1}", false,
                   "Parameter 'c' expects string");
}

static void test_in_wrong_integer(void)
{
    CHECK_IN_ERROR(TestInts, "{\"n\": \"1\"}", false,
                   "Parameter 'n' expects integer");
    CHECK_IN_ERROR(TestInts, "{\"i8\": 1.5}", false,
                   "Parameter 'i8' expects integer");
    CHECK_IN_ERROR(TestInts, "{\"u64\": true}", false,
                   "Parameter 'u64' expects integer");
}

static void test_in_wrong_number(void)
{
    CHECK_IN_ERROR(TestLeaf, "{\"c\": \"x\", \"d\": \"1.5\"}", false,
                   "Parameter 'd' expects number");
}

static void test_in_wrong_boolean(void)
{
    CHECK_IN_ERROR(TestLists, "{\"bools\": [true, 1]}", false,
                   "Parameter 'bools[1]' expects boolean");
}

static void test_in_wrong_null(void)
{
    CHECK_IN_ERROR(TestInts, "{\"nul\": 0}", false,
                   "Parameter 'nul' expects null");
}

static void test_in_wrong_object(void)
{
    CHECK_IN_ERROR(TestAll, "{\"derived\": []}", false,
                   "Parameter 'derived' expects object");
    CHECK_IN_ERROR(TestAll, "{\"union\": \"leaf\"}", false,
                   "Parameter 'union' expects object");
}

static void test_in_wrong_array(void)
{
    CHECK_IN_ERROR(TestMiddle, "{\"b\": {}}", false,
                   "Parameter 'b' expects array");
    CHECK_IN_ERROR(TestLists, "{\"ints\": 1}", false,
                   "Parameter 'ints' expects array");
}

/* ---- input: integer ranges -------------------------------------------- */

static void test_in_int_ranges(void)
{
    static const struct {
        const char *json;
        const char *msg;
    } cases[] = {
        { "{\"i8\": 128}", "Parameter 'i8' expects integer in range "
          "[-128, 127]" },
        { "{\"i8\": -129}", "Parameter 'i8' expects integer in range "
          "[-128, 127]" },
        { "{\"i16\": 32768}", "Parameter 'i16' expects integer in range "
          "[-32768, 32767]" },
        { "{\"i32\": -2147483649}", "Parameter 'i32' expects integer in "
          "range [-2147483648, 2147483647]" },
        { "{\"u8\": 256}", "Parameter 'u8' expects integer in range "
          "[0, 255]" },
        { "{\"u8\": -1}", "Parameter 'u8' expects integer in range "
          "[0, 255]" },
        { "{\"u16\": 65536}", "Parameter 'u16' expects integer in range "
          "[0, 65535]" },
        { "{\"u32\": 4294967296}", "Parameter 'u32' expects integer in "
          "range [0, 4294967295]" },
        { "{\"u64\": -1}", "Parameter 'u64' expects integer in range "
          "[0, 18446744073709551615]" },
        { "{\"sz\": -5}", "Parameter 'sz' expects integer in range "
          "[0, 18446744073709551615]" },
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        CHECK_IN_ERROR(TestInts, cases[i].json, false, cases[i].msg);
    }
}

static void test_in_int_limits(void)
{
    g_autoptr(TestInts) obj = VISIT_OK(TestInts,
        "{\"i8\": -128, \"i16\": 32767, \"i32\": -2147483648, "
        " \"i64\": -9223372036854775808, \"u8\": 255, \"u16\": 0,"
        " \"u32\": 4294967295, \"u64\": 9223372036854775807,"
        " \"n\": 9223372036854775807}", false);

    g_assert_cmpint(obj->i8, ==, INT8_MIN);
    g_assert_cmpint(obj->i16, ==, INT16_MAX);
    g_assert_cmpint(obj->i32, ==, INT32_MIN);
    g_assert_cmpint(obj->i64, ==, INT64_MIN);
    g_assert_cmpuint(obj->u8, ==, UINT8_MAX);
    g_assert_true(obj->has_u16);
    g_assert_cmpuint(obj->u16, ==, 0);
    g_assert_cmpuint(obj->u32, ==, UINT32_MAX);
    g_assert_cmpuint(obj->u64, ==, INT64_MAX);
    g_assert_cmpint(obj->n, ==, INT64_MAX);
    g_assert_false(obj->has_sz);
    g_assert_false(obj->has_num);
}

/* ---- input: enums, unions, alternates, paths --------------------------- */

static void test_in_enum(void)
{
    CHECK_IN_ERROR(TestLists, "{\"enums\": [\"one\", \"three\"]}", false,
                   "Parameter 'enums[1]' does not accept value 'three'");
    CHECK_IN_ERROR(TestLists, "{\"enums\": [2]}", false,
                   "Parameter 'enums[0]' expects string");
}

static void test_in_enum_values(void)
{
    g_autoptr(TestLists) obj = VISIT_OK(TestLists,
        "{\"enums\": [\"one\", \"two\", \"int\"]}", false);

    g_assert_cmpint(obj->enums->value, ==, TEST_ENUM_ONE);
    g_assert_cmpint(obj->enums->next->value, ==, TEST_ENUM_TWO);
    g_assert_cmpint(obj->enums->next->next->value, ==, TEST_ENUM_INT);
    g_assert_null(obj->enums->next->next->next);
    g_assert_cmpstr(TestEnum_str(TEST_ENUM_INT), ==, "int");
    g_assert_cmpint(TestPrefixed_parse("beta-value"), ==, TP_BETA_VALUE);
    g_assert_cmpint(TestPrefixed_parse("gamma"), ==, -1);
    g_assert_null(TestPrefixed_str(TP__MAX));
}

static void test_in_union_discriminator(void)
{
    CHECK_IN_ERROR(TestUnion, "{\"id\": \"x\"}", false,
                   "Parameter 'kind' is missing");
    CHECK_IN_ERROR(TestUnion, "{\"kind\": \"tree\", \"id\": \"x\"}", false,
                   "Parameter 'kind' does not accept value 'tree'");
    CHECK_IN_ERROR(TestUnion, "{\"kind\": 1, \"id\": \"x\"}", false,
                   "Parameter 'kind' expects string");
}

static void test_in_union_branches(void)
{
    g_autoptr(TestUnion) leaf = NULL;
    g_autoptr(TestUnion) none = NULL;

    CHECK_IN_ERROR(TestUnion, "{\"kind\": \"leaf\", \"id\": \"x\"}", false,
                   "Parameter 'c' is missing");
    /* A member of another branch is unexpected in this one. */
    CHECK_IN_ERROR(TestUnion, "{\"kind\": \"nothing\", \"id\": \"x\", "
                   "\"c\": \"y\"}", false, "Parameter 'c' is unexpected");
    CHECK_IN_ERROR(TestUnion, "{\"kind\": \"ints\", \"id\": \"x\", "
                   "\"c\": \"y\"}", false, "Parameter 'c' is unexpected");
    leaf = VISIT_OK(TestUnion, "{\"kind\": \"leaf\", \"id\": \"x\", "
                    "\"c\": \"y\", \"d\": 2.5}", false);
    g_assert_cmpint(leaf->kind, ==, TEST_KIND_LEAF);
    g_assert_cmpstr(leaf->u.leaf.c, ==, "y");
    g_assert_true(leaf->u.leaf.has_d);
    g_assert_cmpfloat(leaf->u.leaf.d, ==, 2.5);
    none = VISIT_OK(TestUnion, "{\"kind\": \"nothing\", \"id\": \"z\"}",
                    false);
    g_assert_cmpint(none->kind, ==, TEST_KIND_NOTHING);
    g_assert_cmpstr(none->id, ==, "z");
}

static void test_in_alternate(void)
{
    g_autoptr(TestAll) obj = NULL;

    CHECK_IN_ERROR(TestAll, "{\"alt\": [1]}", false,
                   "Parameter 'alt' expects a value of type TestAlt");
    CHECK_IN_ERROR(TestAll, "{\"altnum\": true}", false,
                   "Parameter 'altnum' expects a value of type TestAltNum");
    CHECK_IN_ERROR(TestAll, "{\"altnum\": \"three\"}", false,
                   "Parameter 'altnum' does not accept value 'three'");
    CHECK_IN_ERROR(TestAll, "{\"alt\": {\"c\": 1}}", false,
                   "Parameter 'alt.c' expects string");
    CHECK_IN_ERROR(TestAll, "{\"alt\": 1.5}", false,
                   "Parameter 'alt' expects integer");

    obj = VISIT_OK(TestAll, "{\"alt\": null, \"altnum\": 7}", false);
    g_assert_cmpint(obj->alt->type, ==, QTYPE_QNULL);
    g_assert_cmpint(obj->altnum->type, ==, QTYPE_QNUM);
    g_assert_cmpfloat(obj->altnum->u.n, ==, 7);
}

static void test_in_alternate_branches(void)
{
    static const struct {
        const char *json;
        QType type;
    } cases[] = {
        { "\"s\"", QTYPE_QSTRING },
        { "-3", QTYPE_QNUM },
        { "false", QTYPE_QBOOL },
        { "{\"c\": \"x\"}", QTYPE_QDICT },
        { "null", QTYPE_QNULL },
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(TestAlt) alt = VISIT_OK(TestAlt, cases[i].json, false);

        g_assert_cmpint(alt->type, ==, cases[i].type);
    }
}

static void test_in_nested_paths(void)
{
    CHECK_IN_ERROR(TestDerived, "{\"base-name\": \"n\", \"a\": {\"b\": "
                   "[{\"c\": \"x\"}, {\"c\": \"y\"}, {\"c\": 3}]}}", false,
                   "Parameter 'a.b[2].c' expects string");
    CHECK_IN_ERROR(TestAll, "{\"lists\": {\"unions\": [{\"kind\": \"ints\", "
                   "\"id\": \"a\", \"i8\": 1000}]}}", false,
                   "Parameter 'lists.unions[0].i8' expects integer in range "
                   "[-128, 127]");
    CHECK_IN_ERROR(TestAll, "{\"lists\": {\"unions\": [{\"kind\": \"nothing\", "
                   " \"id\": \"a\"}, {\"id\": \"b\"}]}}", false,
                   "Parameter 'lists.unions[1].kind' is missing");
    CHECK_IN_ERROR(TestAll, "{\"derived\": {\"base-name\": \"n\", "
                   "\"a\": {\"b\": []}, \"tags\": [\"t\", null]}}", false,
                   "Parameter 'derived.tags[1]' expects string");
}

/* ---- keyval mode ------------------------------------------------------- */

static void test_keyval_bool(void)
{
    static const struct {
        const char *word;
        bool value;
    } words[] = {
        { "on", true }, { "yes", true }, { "true", true },
        { "off", false }, { "no", false }, { "false", false },
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(words); i++) {
        g_autofree char *text = g_strdup_printf(
            "{\"bools\": [\"%s\"]}", words[i].word);
        g_autoptr(TestLists) obj = VISIT_OK(TestLists, text, true);

        g_assert_cmpint(obj->bools->value, ==, words[i].value);
    }
    CHECK_IN_ERROR(TestLists, "{\"bools\": [\"maybe\"]}", true,
                   "Parameter 'bools[0]' expects boolean");
    /* Outside keyval mode a string is never a boolean. */
    CHECK_IN_ERROR(TestLists, "{\"bools\": [\"on\"]}", false,
                   "Parameter 'bools[0]' expects boolean");
}

static void test_keyval_ints(void)
{
    g_autoptr(TestInts) obj = VISIT_OK(TestInts,
        "{\"i8\": \"-0x10\", \"i64\": \"-9223372036854775808\", "
        " \"u8\": \"0xff\", \"u64\": \"0xffffffffffffffff\","
        " \"n\": \"42\", \"num\": \"-1.25\", \"nul\": \"\"}", true);

    g_assert_cmpint(obj->i8, ==, -16);
    g_assert_cmpint(obj->i64, ==, INT64_MIN);
    g_assert_cmpuint(obj->u8, ==, 255);
    g_assert_cmpuint(obj->u64, ==, UINT64_MAX);
    g_assert_cmpint(obj->n, ==, 42);
    g_assert_cmpfloat(obj->num, ==, -1.25);
    g_assert_true(obj->has_nul);
}

static void test_keyval_int_errors(void)
{
    CHECK_IN_ERROR(TestInts, "{\"n\": \"12x\"}", true,
                   "Parameter 'n' expects integer");
    CHECK_IN_ERROR(TestInts, "{\"n\": \"\"}", true,
                   "Parameter 'n' expects integer");
    CHECK_IN_ERROR(TestInts, "{\"n\": \"0x\"}", true,
                   "Parameter 'n' expects integer");
    CHECK_IN_ERROR(TestInts, "{\"u8\": \"0x100\"}", true,
                   "Parameter 'u8' expects integer in range [0, 255]");
    CHECK_IN_ERROR(TestInts, "{\"u16\": \"-1\"}", true,
                   "Parameter 'u16' expects integer in range [0, 65535]");
    CHECK_IN_ERROR(TestInts, "{\"i64\": \"9223372036854775808\"}", true,
                   "Parameter 'i64' expects integer in range "
                   "[-9223372036854775808, 9223372036854775807]");
    CHECK_IN_ERROR(TestInts, "{\"u64\": \"18446744073709551616\"}", true,
                   "Parameter 'u64' expects integer in range "
                   "[0, 18446744073709551615]");
    CHECK_IN_ERROR(TestInts, "{\"num\": \"1.5x\"}", true,
                   "Parameter 'num' expects number");
    CHECK_IN_ERROR(TestInts, "{\"nul\": \"x\"}", true,
                   "Parameter 'nul' expects null");
    /* Suffixes are for sizes only. */
    CHECK_IN_ERROR(TestInts, "{\"u64\": \"1k\"}", true,
                   "Parameter 'u64' expects integer");
}

static void test_keyval_sizes(void)
{
    static const struct {
        const char *text;
        uint64_t value;
    } sizes[] = {
        { "0", 0 }, { "512", 512 }, { "0x200", 512 }, { "1b", 1 },
        { "64k", 64 * 1024 }, { "64K", 64 * 1024 }, { "2M", 2 << 20 },
        { "1G", 1ull << 30 }, { "1.5G", 3ull << 29 }, { "3T", 3ull << 40 },
        { "1P", 1ull << 50 }, { "8E", 8ull << 60 },
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(sizes); i++) {
        g_autofree char *text = g_strdup_printf("{\"sz\": \"%s\"}",
                                                sizes[i].text);
        g_autoptr(TestInts) obj = VISIT_OK(TestInts, text, true);

        g_assert_cmpuint(obj->sz, ==, sizes[i].value);
    }
    CHECK_IN_ERROR(TestInts, "{\"sz\": \"12x\"}", true,
                   "Parameter 'sz' expects integer");
    CHECK_IN_ERROR(TestInts, "{\"sz\": \"k\"}", true,
                   "Parameter 'sz' expects integer");
    CHECK_IN_ERROR(TestInts, "{\"sz\": \"16E\"}", true,
                   "Parameter 'sz' expects integer in range "
                   "[0, 18446744073709551615]");
}

static void test_keyval_lists_and_alternates(void)
{
    g_autoptr(TestLists) lists = VISIT_OK(TestLists,
        "{\"ints\": \"\", \"sizes\": [\"1k\", \"2\"]}", true);
    g_autoptr(TestAll) all = VISIT_OK(TestAll,
        "{\"alt\": \"42\", \"altnum\": \"two\"}", true);
    g_autoptr(TestLists) alts = VISIT_OK(TestLists,
        "{\"alts\": [{\"c\": \"x\", \"d\": \"0.5\"}]}", true);

    /* An empty keyval value is an empty list. */
    g_assert_null(lists->ints);
    g_assert_cmpuint(lists->sizes->value, ==, 1024);
    g_assert_cmpuint(lists->sizes->next->value, ==, 2);
    /* With a string branch, a keyval string stays a string. */
    g_assert_cmpint(all->alt->type, ==, QTYPE_QSTRING);
    g_assert_cmpstr(all->alt->u.s, ==, "42");
    g_assert_cmpint(all->altnum->type, ==, QTYPE_QSTRING);
    g_assert_cmpint(all->altnum->u.e, ==, TEST_ENUM_TWO);
    g_assert_cmpint(alts->alts->value->type, ==, QTYPE_QDICT);
    g_assert_cmpfloat(alts->alts->value->u.o->d, ==, 0.5);
}

static void test_keyval_alternate_enum_or_number(void)
{
    g_autoptr(TestAll) num = VISIT_OK(TestAll, "{\"altnum\": \"2.5\"}", true);
    g_autoptr(TestAll) val = VISIT_OK(TestAll, "{\"altnum\": \"one\"}", true);

    /* A keyval string that names no enum value goes to the number. */
    g_assert_cmpint(num->altnum->type, ==, QTYPE_QNUM);
    g_assert_cmpfloat(num->altnum->u.n, ==, 2.5);
    g_assert_cmpint(val->altnum->type, ==, QTYPE_QSTRING);
    g_assert_cmpint(val->altnum->u.e, ==, TEST_ENUM_ONE);
    CHECK_IN_ERROR(TestAll, "{\"altnum\": \"bogus\"}", true,
                   "Parameter 'altnum' does not accept value 'bogus'");
}

/* ---- round trips and output -------------------------------------------- */

static void test_round_trip_all(void)
{
    CHECK_ROUND_TRIP(TestAll, "{}");
    CHECK_ROUND_TRIP(TestAll,
        "{\"derived\": {\"base-name\": \"b\", \"a\": {\"b\": [{\"c\": \"x\"}, "
        "{\"c\": \"y\", \"d\": 0.1}]}, \"flag\": false, \"e\": \"int\", "
        "\"tags\": [\"p\", \"q\"], \"default\": -7}, "
        "\"union\": {\"kind\": \"ints\", \"id\": \"u\", \"i8\": -128, \"u64\": "
        "9223372036854775807, \"sz\": 0, \"num\": 1e+300, \"anything\": "
        "{\"k\": [1, \"two\", null, true, {}]}, \"nul\": null}, "
        "\"alt\": {\"c\": \"o\"}, \"altnum\": \"one\", "
        "\"lists\": {\"ints\": [1, -2, 3], \"sizes\": [4096], \"bools\": [true, false], "
        "\"enums\": [\"two\"], \"unions\": [{\"kind\": \"nothing\", \"id\": \"n\"}, "
        "{\"kind\": \"leaf\", \"id\": \"l\", \"c\": \"v\"}], "
        "\"alts\": [\"s\", 5, true, null, {\"c\": \"w\"}]}, "
        "\"prefixed\": \"beta-value\"}");
}

static void test_round_trip_strings(void)
{
    /* Escapes in canonical form; UTF-8 passes through unescaped. */
    CHECK_ROUND_TRIP(TestLeaf,
        "{\"c\": \"q\\\"b\\\\s\\n\\t\\r\\b\\f\\u0001\\u001f/\xc3\xa9\xe2\x82\xac\"}");
}

static void test_round_trip_numbers(void)
{
    CHECK_ROUND_TRIP(TestLeaf, "{\"c\": \"\", \"d\": 0.1}");
    CHECK_ROUND_TRIP(TestLeaf, "{\"c\": \"\", \"d\": -2.5e-10}");
    CHECK_ROUND_TRIP(TestLeaf, "{\"c\": \"\", \"d\": 1}");
    CHECK_ROUND_TRIP(TestInts, "{\"i64\": -9223372036854775808, "
                     "\"u64\": 0, \"n\": 9223372036854775807}");
}

static void test_out_invalid_utf8(void)
{
    GString *buf = g_string_new(NULL);

    qapi_out_str(buf, "a\xff" "b\xc3");
    g_assert_cmpstr(buf->str, ==, "\"a\\ufffdb\\ufffd\"");
    g_string_free(buf, TRUE);
}

static void test_out_omits_absent(void)
{
    g_autoptr(TestInts) obj = g_new0(TestInts, 1);
    GString *buf = g_string_new(NULL);

    obj->i8 = 5;            /* set but has_i8 false: not written */
    obj->has_u16 = true;
    obj->u16 = 7;
    qapi_out_TestInts(buf, obj);
    g_assert_cmpstr(buf->str, ==, "{\"u16\": 7}");
    g_string_free(buf, TRUE);
}

static void test_free_partial(void)
{
    /* Failures deep inside lists and unions free what was built so far;
     * ASan reports any leak or double free. */
    CHECK_IN_ERROR(TestAll, "{\"derived\": {\"base-name\": \"n\", \"a\": "
                   "{\"b\": [{\"c\": \"x\"}]}, \"tags\": [\"a\", \"b\"], "
                   "\"e\": \"zz\"}}", false,
                   "Parameter 'derived.e' does not accept value 'zz'");
    CHECK_IN_ERROR(TestAll, "{\"lists\": {\"alts\": [\"s\", {\"c\": \"x\"}, "
                   "[]]}}", false,
                   "Parameter 'lists.alts[2]' expects a value of type "
                   "TestAlt");
    CHECK_IN_ERROR(TestAll, "{\"union\": {\"kind\": \"ints\", \"id\": \"x\", "
                   " \"anything\": [1, 2], \"bad\": 1}}", false,
                   "Parameter 'union.bad' is unexpected");
}

/* ---- commands ---------------------------------------------------------- */

void qmp_test_ping(Error **errp)
{
}

TestLeaf *qmp_test_add(int64_t a, bool has_b, int8_t b, const char *label,
                       bool has_e, TestEnum e, Error **errp)
{
    TestLeaf *ret = g_new0(TestLeaf, 1);
    int64_t sum = a + (has_b ? b : 1);

    ret->c = g_strdup_printf("%s%s%" G_GINT64_FORMAT, label ? label : "",
                             has_e ? TestEnum_str(e) : "", sum);
    ret->has_d = true;
    ret->d = sum;
    return ret;
}

TestLeafList *qmp_test_list(TestMiddle *middle, Error **errp)
{
    TestLeafList *head = NULL;
    TestLeafList **tail = &head;
    TestLeafList *l;

    /* Returns the leaves in reverse order of c, to show it ran. */
    for (l = middle->b; l; l = l->next) {
        TestLeafList *node = g_new0(TestLeafList, 1);

        node->value = g_new0(TestLeaf, 1);
        node->value->c = g_strreverse(g_strdup(l->value->c));
        *tail = node;
        tail = &node->next;
    }
    return head;
}

TestUnion *qmp_test_boxed(const TestUnion *arg, Error **errp)
{
    TestUnion *ret = g_new0(TestUnion, 1);

    ret->kind = arg->kind;
    ret->id = g_strconcat(arg->id, "!", NULL);
    if (arg->kind == TEST_KIND_LEAF) {
        ret->u.leaf.c = g_strdup(arg->u.leaf.c);
    }
    return ret;
}

int64_t qmp_test_struct_args(const char *c, bool has_d, double d,
                             Error **errp)
{
    return strlen(c) + (has_d ? (int64_t)d : 0);
}

void qmp_test_fail(Error **errp)
{
    error_set(errp, ERROR_CLASS_DEVICE_NOT_FOUND, "Device 'x' not found");
}

bool qmp_marshal_test_hand_written(const json_t *args, GString *ret,
                                   Error **errp)
{
    g_string_append(ret, "\"by hand\"");
    return true;
}

/* Runs a command through the table; returns the reply text or NULL. */
static char *run_command(const char *name, const char *args_json,
                         Error **errp)
{
    const QmpCommand *cmd = qmp_find_command(name);
    json_t *args = parse(args_json);
    GString *ret = g_string_new(NULL);
    bool ok;

    g_assert_nonnull(cmd);
    g_assert_cmpstr(cmd->name, ==, name);
    ok = cmd->fn(args, ret, errp);
    json_decref(args);
    if (!ok) {
        g_assert_cmpuint(ret->len, ==, 0);
        g_string_free(ret, TRUE);
        return NULL;
    }
    return g_string_free(ret, FALSE);
}

static void check_command(const char *name, const char *args,
                          const char *expected)
{
    g_autofree char *ret = run_command(name, args, &error_abort);

    g_assert_cmpstr(ret, ==, expected);
}

static void check_command_error(const char *name, const char *args,
                                ErrorClass cls, const char *expected)
{
    Error *err = NULL;

    g_assert_null(run_command(name, args, &err));
    g_assert_nonnull(err);
    g_assert_cmpint(error_get_class(err), ==, cls);
    g_assert_cmpstr(error_get_pretty(err), ==, expected);
    error_free(err);
}

static void test_command_table(void)
{
    size_t i;

    g_assert_cmpuint(qmp_command_count, ==, 7);
    for (i = 1; i < qmp_command_count; i++) {
        g_assert_cmpint(strcmp(qmp_command_table[i - 1].name,
                               qmp_command_table[i].name), <, 0);
    }
    for (i = 0; i < qmp_command_count; i++) {
        g_assert_true(qmp_find_command(qmp_command_table[i].name) ==
                      &qmp_command_table[i]);
    }
    g_assert_null(qmp_find_command("test-nope"));
    g_assert_null(qmp_find_command(""));
    g_assert_null(qmp_find_command("zzz"));
}

static void test_command_marshal(void)
{
    check_command("test-ping", "{}", "{}");
    check_command("test-add", "{\"a\": 40, \"b\": 2}",
                  "{\"c\": \"42\", \"d\": 42}");
    check_command("test-add", "{\"a\": 1, \"label\": \"s=\", \"e\": \"two\"}",
                  "{\"c\": \"s=two2\", \"d\": 2}");
    check_command("test-list", "{\"middle\": {\"b\": [{\"c\": \"ab\"}, "
                  "{\"c\": \"xyz\"}]}}", "[{\"c\": \"ba\"}, {\"c\": \"zyx\"}]");
    check_command("test-list", "{\"middle\": {\"b\": []}}", "[]");
    check_command("test-boxed", "{\"kind\": \"leaf\", \"id\": \"i\", "
                  "\"c\": \"v\"}",
                  "{\"kind\": \"leaf\", \"id\": \"i!\", \"c\": \"v\"}");
    check_command("test-struct-args", "{\"c\": \"abc\", \"d\": 10}", "13");
    check_command("test-hand-written", "{}", "\"by hand\"");
}

static void test_command_errors(void)
{
    check_command_error("test-ping", "{\"x\": 1}",
                        ERROR_CLASS_GENERIC_ERROR,
                        "Parameter 'x' is unexpected");
    check_command_error("test-add", "{}", ERROR_CLASS_GENERIC_ERROR,
                        "Parameter 'a' is missing");
    check_command_error("test-add", "{\"a\": 1, \"b\": 300}",
                        ERROR_CLASS_GENERIC_ERROR,
                        "Parameter 'b' expects integer in range [-128, 127]");
    check_command_error("test-list", "{\"middle\": {\"b\": [{\"d\": 1}]}}",
                        ERROR_CLASS_GENERIC_ERROR,
                        "Parameter 'middle.b[0].c' is missing");
    check_command_error("test-boxed", "{\"kind\": \"leaf\", \"id\": \"i\"}",
                        ERROR_CLASS_GENERIC_ERROR,
                        "Parameter 'c' is missing");
    check_command_error("test-fail", "{}", ERROR_CLASS_DEVICE_NOT_FOUND,
                        "Device 'x' not found");
}

/* ---- events ------------------------------------------------------------ */

static char *last_event;
static char *last_data;
static int event_count;

static void record_event(const char *event, const char *data_json)
{
    g_free(last_event);
    g_free(last_data);
    last_event = g_strdup(event);
    last_data = g_strdup(data_json);
    event_count++;
}

static void test_events(void)
{
    TestUnion u = { .kind = TEST_KIND_LEAF, .id = (char *)"e" };
    int before = event_count;

    qapi_event_send_test_event_a();
    g_assert_cmpstr(last_event, ==, "TEST_EVENT_A");
    g_assert_null(last_data);

    qapi_event_send_test_event_b(true, TEST_ENUM_TWO, NULL);
    g_assert_cmpstr(last_event, ==, "TEST_EVENT_B");
    g_assert_cmpstr(last_data, ==, "{\"guest\": true, \"reason\": \"two\"}");

    qapi_event_send_test_event_b(false, TEST_ENUM_ONE, "why \"not\"");
    g_assert_cmpstr(last_data, ==, "{\"guest\": false, \"reason\": \"one\", "
                    "\"detail\": \"why \\\"not\\\"\"}");

    u.u.leaf.c = (char *)"leafy";
    qapi_event_send_test_event_c(&u);
    g_assert_cmpstr(last_event, ==, "TEST_EVENT_C");
    g_assert_cmpstr(last_data, ==,
                    "{\"kind\": \"leaf\", \"id\": \"e\", \"c\": \"leafy\"}");
    g_assert_cmpint(event_count - before, ==, 4);
    g_clear_pointer(&last_event, g_free);
    g_clear_pointer(&last_data, g_free);
}

/* ---- introspection ----------------------------------------------------- */

static json_t *find_entry(json_t *schema, const char *name)
{
    size_t i;
    json_t *entry;

    json_array_foreach(schema, i, entry) {
        if (strcmp(json_string_value(json_object_get(entry, "name")),
                   name) == 0) {
            return entry;
        }
    }
    return NULL;
}

static void test_introspect(void)
{
    json_t *schema = parse(qapi_introspect_json);
    json_t *entry;
    size_t i;

    g_assert_true(json_is_array(schema));
    for (i = 0; i < qmp_command_count; i++) {
        const char *arg_type;

        entry = find_entry(schema, qmp_command_table[i].name);
        g_assert_nonnull(entry);
        g_assert_cmpstr(json_string_value(json_object_get(entry,
                        "meta-type")), ==, "command");
        arg_type = json_string_value(json_object_get(entry, "arg-type"));
        g_assert_nonnull(find_entry(schema, arg_type));
        g_assert_nonnull(find_entry(schema, json_string_value(
                         json_object_get(entry, "ret-type"))));
    }
    entry = find_entry(schema, "TestUnion");
    g_assert_cmpstr(json_string_value(json_object_get(entry, "tag")), ==,
                    "kind");
    g_assert_cmpuint(json_array_size(json_object_get(entry, "variants")), ==,
                     3);
    entry = find_entry(schema, "TEST_EVENT_B");
    g_assert_cmpstr(json_string_value(json_object_get(entry, "meta-type")),
                    ==, "event");
    entry = find_entry(schema, "[TestLeaf]");
    g_assert_cmpstr(json_string_value(json_object_get(entry,
                    "element-type")), ==, "TestLeaf");
    entry = find_entry(schema, "int8");
    g_assert_cmpstr(json_string_value(json_object_get(entry, "json-type")),
                    ==, "int");
    json_decref(schema);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qapi_event_set_sink(record_event);
    g_test_add_func("/visitors/in/missing", test_in_missing);
    g_test_add_func("/visitors/in/unexpected", test_in_unexpected);
    g_test_add_func("/visitors/in/wrong-string", test_in_wrong_string);
    g_test_add_func("/visitors/in/wrong-integer", test_in_wrong_integer);
    g_test_add_func("/visitors/in/wrong-number", test_in_wrong_number);
    g_test_add_func("/visitors/in/wrong-boolean", test_in_wrong_boolean);
    g_test_add_func("/visitors/in/wrong-null", test_in_wrong_null);
    g_test_add_func("/visitors/in/wrong-object", test_in_wrong_object);
    g_test_add_func("/visitors/in/wrong-array", test_in_wrong_array);
    g_test_add_func("/visitors/in/int-ranges", test_in_int_ranges);
    g_test_add_func("/visitors/in/int-limits", test_in_int_limits);
    g_test_add_func("/visitors/in/enum", test_in_enum);
    g_test_add_func("/visitors/in/enum-values", test_in_enum_values);
    g_test_add_func("/visitors/in/union-discriminator",
                    test_in_union_discriminator);
    g_test_add_func("/visitors/in/union-branches", test_in_union_branches);
    g_test_add_func("/visitors/in/alternate", test_in_alternate);
    g_test_add_func("/visitors/in/alternate-branches",
                    test_in_alternate_branches);
    g_test_add_func("/visitors/in/nested-paths", test_in_nested_paths);
    g_test_add_func("/visitors/keyval/bool", test_keyval_bool);
    g_test_add_func("/visitors/keyval/ints", test_keyval_ints);
    g_test_add_func("/visitors/keyval/int-errors", test_keyval_int_errors);
    g_test_add_func("/visitors/keyval/sizes", test_keyval_sizes);
    g_test_add_func("/visitors/keyval/lists-alternates",
                    test_keyval_lists_and_alternates);
    g_test_add_func("/visitors/keyval/alternate-enum-or-number",
                    test_keyval_alternate_enum_or_number);
    g_test_add_func("/visitors/out/round-trip-all", test_round_trip_all);
    g_test_add_func("/visitors/out/round-trip-strings",
                    test_round_trip_strings);
    g_test_add_func("/visitors/out/round-trip-numbers",
                    test_round_trip_numbers);
    g_test_add_func("/visitors/out/invalid-utf8", test_out_invalid_utf8);
    g_test_add_func("/visitors/out/omits-absent", test_out_omits_absent);
    g_test_add_func("/visitors/free-partial", test_free_partial);
    g_test_add_func("/visitors/commands/table", test_command_table);
    g_test_add_func("/visitors/commands/marshal", test_command_marshal);
    g_test_add_func("/visitors/commands/errors", test_command_errors);
    g_test_add_func("/visitors/events", test_events);
    g_test_add_func("/visitors/introspect", test_introspect);
    return g_test_run();
}
