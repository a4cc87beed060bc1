/*
 * keyval: the command-line option syntax "key=value,a.b=1,c.0=x".
 *
 *   - dotted keys build nested objects: "a.b=1,a.c=2" -> {"a":{"b":"1","c":"2"}}
 *   - an object whose keys are all 0,1,2... becomes an array:
 *     "l.0=a,l.1=b" -> {"l":["a","b"]}
 *   - ",," inside a value stands for a literal comma;
 *   - the first element may omit "implied_key=" ("iothread,id=x" with implied
 *     key "qom-type").
 * Every leaf is a JSON string; the generated input visitors accept strings
 * for numbers and booleans when told the input came from keyval.
 * Errors name the offending key, e.g. "Parameter 'a.b' is duplicated".
 */
#ifndef UTIL_KEYVAL_H
#define UTIL_KEYVAL_H

#include <jansson.h>
#include <stdbool.h>

#include "util/error.h"

/* Returns a new reference to a JSON object, or NULL with errp set.
 * *help (if non-NULL) is set when the string is "help" or has "help". */
json_t *keyval_parse(const char *params, const char *implied_key, bool *help,
                     Error **errp);

/*
 * Parses an option argument that is either JSON (starts with '{') or
 * keyval.  *is_json tells which, so the caller can choose strict typing.
 */
json_t *keyval_or_json_parse(const char *arg, const char *implied_key,
                             bool *is_json, Error **errp);

#endif
