/*
 * Handlers of the QMP control commands (qapi/control.json): capabilities
 * negotiation, version, command list, introspection and quit.
 * Owner: monitor work.  Main thread, called by the generated marshallers
 * from a client's dispatcher coroutine.
 */
#include <string.h>

#include "monitor/monitor.h"
#include "qapi/qapi-commands.h"

void qmp_qmp_capabilities(QMPCapabilityList *enable, Error **errp)
{
    Monitor *mon = monitor_cur();

    g_assert(mon);
    if (monitor_is_negotiated(mon)) {
        error_set(errp, ERROR_CLASS_COMMAND_NOT_FOUND,
                  "Capabilities negotiation is already complete, "
                  "command ignored");
        return;
    }
    /* blockd offers no capability yet, so any requested one is refused. */
    if (enable) {
        error_setg(errp, "Capability '%s' not available",
                   QMPCapability_str(enable->value));
        return;
    }
    monitor_set_negotiated(mon);
}

/* Parses "MAJOR.MINOR.MICRO" of BLOCKD_VERSION into v. */
static void parse_version(VersionTriple *v)
{
    g_auto(GStrv) parts = g_strsplit(BLOCKD_VERSION, ".", 3);
    int64_t *fields[] = { &v->major, &v->minor, &v->micro };

    for (int i = 0; i < 3 && parts[i]; i++) {
        *fields[i] = g_ascii_strtoll(parts[i], NULL, 10);
    }
}

VersionInfo *qmp_query_version(Error **errp)
{
    VersionInfo *info = g_new0(VersionInfo, 1);

    info->qemu = g_new0(VersionTriple, 1);
    parse_version(info->qemu);
    info->package = g_strdup("blockd " BLOCKD_VERSION);
    return info;
}

CommandInfoList *qmp_query_commands(Error **errp)
{
    CommandInfoList *head = NULL;

    /* Built back to front so the list keeps the table's sorted order. */
    for (size_t i = qmp_command_count; i-- > 0;) {
        CommandInfoList *node = g_new0(CommandInfoList, 1);

        node->value = g_new0(CommandInfo, 1);
        node->value->name = g_strdup(qmp_command_table[i].name);
        node->next = head;
        head = node;
    }
    return head;
}

bool qmp_marshal_query_qmp_schema(const json_t *args, GString *ret,
                                  Error **errp)
{
    static const char *const known[] = { NULL };
    QapiPath root = QAPI_PATH_ROOT(false);

    if (!qapi_in_check_object(args, &root, errp) ||
        !qapi_in_check_unexpected(args, &root, known, errp)) {
        return false;
    }
    /* Rendered at build time: sending it as is costs one copy. */
    g_string_append(ret, qapi_introspect_json);
    return true;
}

void qmp_quit(Error **errp)
{
    /* The reply goes out first; the main loop then sends SHUTDOWN. */
    shutdown_request(SHUTDOWN_CAUSE_HOST_QMP_QUIT);
}
