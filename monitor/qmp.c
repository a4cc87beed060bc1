/*
 * QMP request validation and dispatch to the generated marshallers.
 * Owner: monitor work.
 *
 * The checks and their texts are the QMP contract's: a request is an
 * object with a string "execute", an optional object "arguments" and an
 * optional "id" of any type, nothing else; before capabilities negotiation
 * only qmp_capabilities exists.
 */
#include <string.h>

#include "monitor/monitor-internal.h"
#include "qapi/qapi-runtime.h"

/* Checks the members of a request object; returns the command name. */
static const char *qmp_check_request(const json_t *req, Error **errp)
{
    const char *name = NULL;
    const char *key;
    json_t *member;

    json_object_foreach((json_t *)req, key, member) {
        if (!strcmp(key, "execute")) {
            if (!json_is_string(member)) {
                error_setg(errp,
                           "QMP input member 'execute' must be a string");
                return NULL;
            }
            name = json_string_value(member);
        } else if (!strcmp(key, "arguments")) {
            if (!json_is_object(member)) {
                error_setg(errp,
                           "QMP input member 'arguments' must be an object");
                return NULL;
            }
        } else if (strcmp(key, "id") != 0) {
            error_setg(errp, "QMP input member '%s' is unexpected", key);
            return NULL;
        }
    }
    if (!name) {
        error_setg(errp, "QMP input lacks member 'execute'");
    }
    return name;
}

/* The arguments of a request without any: one shared empty object. */
static const json_t *qmp_no_arguments(void)
{
    static json_t *empty;

    if (!empty) {
        empty = json_object();
    }
    return empty;
}

bool coroutine_fn qmp_dispatch(Monitor *mon, const json_t *value,
                               GString *ret, const json_t **id,
                               Error **errp)
{
    const QmpCommand *cmd;
    const json_t *args;
    const char *name;

    if (!json_is_object(value)) {
        error_setg(errp, "QMP input must be a JSON object");
        return false;
    }
    *id = json_object_get(value, "id");
    name = qmp_check_request(value, errp);
    if (!name) {
        return false;
    }
    if (!mon->negotiated && strcmp(name, "qmp_capabilities") != 0) {
        error_set(errp, ERROR_CLASS_COMMAND_NOT_FOUND,
                  "Expecting capabilities negotiation with "
                  "'qmp_capabilities'");
        return false;
    }
    cmd = qmp_find_command(name);
    if (!cmd) {
        error_set(errp, ERROR_CLASS_COMMAND_NOT_FOUND,
                  "The command %s has not been found", name);
        return false;
    }
    args = json_object_get(value, "arguments");
    return cmd->fn(args ? args : qmp_no_arguments(), ret, errp);
}
