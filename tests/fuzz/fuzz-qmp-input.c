/*
 * libFuzzer target: untrusted QMP and command-line input up to the point
 * where a command would run.  The bytes go through the same parsers the
 * daemon uses: the JSON streamer (QMP framing and limits) or the keyval
 * parser (--blockdev, --export arguments), then the generated input
 * visitors of the argument types with the most structure (unions,
 * alternates, nested lists).  Nothing is executed, so the target is safe to
 * run anywhere.
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks one
 * property: a value the input visitor accepts serialises (generated output
 * serialiser) to JSON that the visitor accepts again and that serialises
 * to the same text.  A failure means the two halves of the generator
 * disagree about a type, which QMP clients would see as a reply they cannot
 * send back.
 *
 * Input: the first byte chooses the parser (even: QMP stream, odd:
 * keyval), the rest is the text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qapi/qapi-visit.h"
#include "util/json-streamer.h"
#include "util/keyval.h"

/* Visits v as T, and if accepted checks the round trip described above. */
#define DEFINE_ROUNDTRIP(T)                                                \
    static void roundtrip_##T(const json_t *v, bool keyval)                \
    {                                                                      \
        QapiPath root = QAPI_PATH_ROOT(keyval);                            \
        QapiPath strict = QAPI_PATH_ROOT(false);                           \
        g_autoptr(T) first = NULL;                                         \
        g_autoptr(T) second = NULL;                                        \
        g_autoptr(GString) text1 = g_string_new(NULL);                     \
        g_autoptr(GString) text2 = g_string_new(NULL);                     \
        Error *err = NULL;                                                 \
        json_t *again;                                                     \
                                                                           \
        if (!visit_in_##T(v, &root, &first, &err)) {                       \
            check_error(err);                                              \
            return;                                                        \
        }                                                                  \
        qapi_out_##T(text1, first);                                        \
        again = parse_own_output(#T, text1->str);                          \
        if (!visit_in_##T(again, &strict, &second, &err)) {                \
            roundtrip_failed(#T, text1->str, error_get_pretty(err));       \
        }                                                                  \
        json_decref(again);                                                \
        qapi_out_##T(text2, second);                                       \
        if (strcmp(text1->str, text2->str) != 0) {                         \
            roundtrip_failed(#T, text1->str, text2->str);                  \
        }                                                                  \
    }

/* An error from a visitor must carry a message a client can read. */
static void check_error(Error *err)
{
    const char *msg = error_get_pretty(err);

    if (!msg || !*msg) {
        fprintf(stderr, "visitor error without a message\n");
        abort();
    }
    error_free(err);
}

static G_NORETURN void roundtrip_failed(const char *type, const char *text,
                                        const char *detail)
{
    fprintf(stderr, "%s does not survive a round trip:\n  %s\n  %s\n",
            type, text, detail);
    abort();
}

/* The serialiser's output must always be valid JSON. */
static json_t *parse_own_output(const char *type, const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);

    if (!v) {
        roundtrip_failed(type, text, jerr.text);
    }
    return v;
}

DEFINE_ROUNDTRIP(BlockdevOptions)
DEFINE_ROUNDTRIP(BlockExportOptions)
DEFINE_ROUNDTRIP(BlockdevBackup)
DEFINE_ROUNDTRIP(DriveBackup)
DEFINE_ROUNDTRIP(TransactionAction)

static void visit_all(const json_t *v, bool keyval)
{
    roundtrip_BlockdevOptions(v, keyval);
    roundtrip_BlockExportOptions(v, keyval);
    roundtrip_BlockdevBackup(v, keyval);
    roundtrip_DriveBackup(v, keyval);
    roundtrip_TransactionAction(v, keyval);
}

/* A QMP message: its "arguments" if it has them (as the dispatcher takes
 * them), else the whole value. */
static void qmp_emit(void *opaque, json_t *value, Error *err)
{
    json_t *args;

    if (err) {
        check_error(err);
        return;
    }
    args = json_is_object(value) ? json_object_get(value, "arguments") : NULL;
    visit_all(args ? args : value, false);
    json_decref(value);
}

static void fuzz_qmp(const uint8_t *data, size_t size)
{
    /* Small limits so the fuzzer reaches them with small inputs. */
    g_autoptr(JsonStreamer) s = json_streamer_new_limits(qmp_emit, NULL,
                                                         4096, 16);

    json_streamer_feed(s, (const char *)data, size);
}

static void fuzz_keyval(const uint8_t *data, size_t size)
{
    g_autofree char *text = g_strndup((const char *)data, size);
    Error *err = NULL;
    json_t *v = keyval_parse(text, "driver", NULL, &err);

    if (!v) {
        check_error(err);
        return;
    }
    visit_all(v, true);
    json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    if (data[0] & 1) {
        fuzz_keyval(data + 1, size - 1);
    } else {
        fuzz_qmp(data + 1, size - 1);
    }
    return 0;
}
