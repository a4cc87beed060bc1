/*
 * Runtime support for the code that scripts/qapi-gen.py generates from
 * the qapi/ schema files, and the contract between that code and its
 * users (the monitor, the daemon's command line, tests).
 *
 * Generated API, for a schema type Foo (struct, union, alternate, enum):
 *   struct/union:  typedef struct Foo Foo;  optional scalar members have a
 *                  "bool has_<m>" flag, optional pointer members are NULL
 *                  when absent.  Lists: "FooList { FooList *next; Foo *value; }"
 *                  (builtins: strList, int64List, boolList...).
 *   enum:          typedef enum Foo { FOO_VALUE, ..., FOO__MAX } Foo;
 *                  const char *Foo_str(Foo v); int Foo_parse(const char *s)
 *                  (-1 when unknown).
 *   free:          void qapi_free_Foo(Foo *obj); qapi_free_FooList(...);
 *                  and G_DEFINE_AUTOPTR_CLEANUP_FUNC for each.
 *   input:         bool visit_in_Foo(const json_t *src, const QapiPath *path,
 *                                    Foo **out, Error **errp);
 *                  (enums: Foo *out).  On failure *out is left NULL and the
 *                  error names the member by its full dotted path.
 *   output:        void qapi_out_Foo(GString *buf, const Foo *obj);
 *                  appends single-line JSON text straight to buf, separated as
 *                  QEMU does (", " between members, ": " after keys).
 *   commands:      a handler "R *qmp_<cmd>(args..., Error **errp)" that the
 *                  project writes; arguments expanded unless 'boxed';
 *                  the generated marshaller qmp_marshal_<cmd> parses the
 *                  arguments with the input visitors, calls the handler and
 *                  writes the return value as JSON text.  Commands with
 *                  'gen': false have a hand-written marshaller.
 *   events:        void qapi_event_send_<event>(args...) renders the data
 *                  and calls qapi_event_emit().
 *   introspection: qapi_introspect_json, the reply of query-qmp-schema.
 *
 * Threads: everything here is used from the main thread only, except the
 * pure functions (visitors, serialisers, free) which any thread may call on
 * data it owns.
 */
#ifndef QAPI_QAPI_RUNTIME_H
#define QAPI_QAPI_RUNTIME_H

#include <glib.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

/*
 * Where an input value sits, for error messages.  Built on the stack while
 * visiting, so success costs no allocation; the dotted name
 * ("x-perf.max-workers", "actions[0].type") is assembled only on error.
 */
typedef struct QapiPath {
    const struct QapiPath *parent;
    const char *name;   /* member name; NULL for a list element or root */
    size_t index;       /* list index when name is NULL and parent set */
    bool keyval;        /* scalars may come as strings (command line) */
} QapiPath;

#define QAPI_PATH_ROOT(kv) ((QapiPath){ NULL, NULL, 0, (kv) })
#define QAPI_PATH_MEMBER(p, n) ((QapiPath){ (p), (n), 0, (p)->keyval })
#define QAPI_PATH_INDEX(p, i) ((QapiPath){ (p), NULL, (i), (p)->keyval })

/* Full dotted name of path (caller frees). */
char *qapi_path_name(const QapiPath *path);

/* Builtin input visitors.  On type mismatch:
 * "Parameter 'NAME' expects integer" (or string, boolean, number, ...). */
bool qapi_in_str(const json_t *v, const QapiPath *p, char **out, Error **errp);
bool qapi_in_int(const json_t *v, const QapiPath *p, int64_t min, int64_t max,
                 const char *type_name, int64_t *out, Error **errp);
bool qapi_in_uint(const json_t *v, const QapiPath *p, uint64_t max,
                  const char *type_name, uint64_t *out, Error **errp);
bool qapi_in_bool(const json_t *v, const QapiPath *p, bool *out, Error **errp);
bool qapi_in_number(const json_t *v, const QapiPath *p, double *out,
                    Error **errp);
bool qapi_in_null(const json_t *v, const QapiPath *p, Error **errp);
/* 'any': a new reference to v. */
bool qapi_in_any(const json_t *v, const QapiPath *p, json_t **out,
                 Error **errp);
bool qapi_in_enum(const json_t *v, const QapiPath *p,
                  int (*parse)(const char *), int *out, Error **errp);
/* Checks v is an object; errors "Parameter 'NAME' expects object". */
bool qapi_in_check_object(const json_t *v, const QapiPath *p, Error **errp);
bool qapi_in_check_array(const json_t *v, const QapiPath *p, Error **errp);
/* "Parameter 'NAME' is missing" */
void qapi_in_error_missing(const QapiPath *p, const char *member,
                           Error **errp);
/* Fails with "Parameter 'NAME' is unexpected" if obj has a member whose
 * name is not in the NULL-terminated list known. */
bool qapi_in_check_unexpected(const json_t *obj, const QapiPath *p,
                              const char *const *known, Error **errp);

/*
 * Also generated, for a struct or union Foo: visit_in_members_Foo() and
 * qapi_out_members_Foo(buf, obj, &first) (the members without the braces,
 * used for bases, union branches and boxed events), qapi_free_members_Foo()
 * (frees what the members own, not obj), and for a type with a base,
 * qapi_Foo_base() (a pointer cast: base members come first).  Lists of
 * builtins are named after the schema type: strList, intList, int8List,
 * sizeList, numberList, boolList, anyList...  A NULL string serialises as
 * "", a NULL object as {}, a NULL list as [] and a NULL any as null.
 * Marshallers expect args to be a JSON object (the monitor passes {} when
 * a request has no "arguments"); a command without a return value writes
 * {} into ret.
 */

/*
 * Additions (qapi): the C type of the schema's 'null' (a value that can
 * only be null), and the JSON kinds an alternate's branches are told
 * apart by.  An alternate is "struct { QType type; union {...} u; }".
 */
typedef enum QapiNull { QAPI_NULL } QapiNull;

typedef enum QType {
    QTYPE_NONE,
    QTYPE_QNULL,
    QTYPE_QNUM,
    QTYPE_QSTRING,
    QTYPE_QDICT,
    QTYPE_QLIST,
    QTYPE_QBOOL,
    QTYPE__MAX,
} QType;

/* "Parameter 'NAME' expects <what>" */
void qapi_in_error_type(const QapiPath *p, const char *what, Error **errp);
/* True when v stands for an empty list: an empty string from keyval. */
bool qapi_in_is_empty_list(const json_t *v, const QapiPath *p);
/*
 * Which branch of an alternate takes v: one of the QTypes in the bit mask
 * allowed (1u << QTYPE_x), or QTYPE_NONE.  From keyval, where every
 * scalar is a string, a string goes to the string branch if there is one,
 * else to the first of boolean, number or null that can parse it.  (The
 * generated code asks again without the string bit when the string branch
 * is an enum that has no such value.)
 */
QType qapi_in_alternate_type(const json_t *v, const QapiPath *p,
                             unsigned allowed);

/* Builtin serialisers: append single-line JSON to buf. */
void qapi_out_str(GString *buf, const char *s);   /* quoted and escaped */
void qapi_out_int(GString *buf, int64_t v);
void qapi_out_uint(GString *buf, uint64_t v);
void qapi_out_bool(GString *buf, bool v);
void qapi_out_number(GString *buf, double v);
void qapi_out_null(GString *buf);
void qapi_out_any(GString *buf, const json_t *v);
/* Appends "\"name\": " (after ", " unless *first). */
void qapi_out_key(GString *buf, const char *name, bool *first);

/* Commands. */
typedef bool QmpMarshalFn(const json_t *args, GString *ret, Error **errp);

typedef struct QmpCommand {
    const char *name;
    QmpMarshalFn *fn;
} QmpCommand;

/* The table of all commands, sorted by name (generated). */
extern const QmpCommand qmp_command_table[];
extern const size_t qmp_command_count;
const QmpCommand *qmp_find_command(const char *name);

/* query-qmp-schema's reply: a JSON array of SchemaInfo (generated). */
extern const char qapi_introspect_json[];

/*
 * Events.  The generated qapi_event_send_<name>() render the data and call
 * qapi_event_emit(), which hands the event to the sink registered with
 * qapi_event_set_sink(): the monitor (which sends it, timestamped, to every
 * negotiated client) or a test's recorder.  Programs without a sink (the
 * tools) drop events.  data_json is the rendered "data" object or NULL.
 * Main thread only: code running elsewhere hands its events over first.
 */
typedef void QapiEventSink(const char *event, const char *data_json);
void qapi_event_set_sink(QapiEventSink *sink);
void qapi_event_emit(const char *event, const char *data_json);

#endif
