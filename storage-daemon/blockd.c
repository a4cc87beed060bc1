/*
 * blockd: the storage daemon's main().  Owner: monitor work.
 *
 * Parses a qemu-storage-daemon style command line, creating objects in the
 * order the options appear (so --monitor must follow its --chardev), then
 * writes the pidfile and runs the main AioContext until a shutdown is
 * requested (QMP quit, SIGTERM, SIGINT).  On the way out it sends the
 * SHUTDOWN event, flushes every client's output and removes the socket
 * files and the pidfile.
 *
 * Every option is a row of the table "options" below; later options
 * (--blockdev, --drive, --nbd-server, --export) are added there.  Option
 * values go through keyval (or JSON) and the generated input visitors of
 * the types in qapi/control.json, so there is one option system: the
 * schema's.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "block/block-backend.h"
#include "block/block.h"
#include "block/export.h"
#include "block/nbd.h"
#include "job.h"
#include "monitor/metrics-server.h"
#include "monitor/monitor.h"
#include "qapi/qapi-events.h"
#include "qapi/qapi-visit.h"
#include "util/aio.h"
#include "util/keyval.h"
#include "util/thread-pool.h"

/* Daemon state; main thread only. */
static char *pidfile_path;
static bool pidfile_written;
static int signal_fd = -1;
static bool early_exit;     /* --help or --version: stop after printing */

typedef bool OptionHandler(const char *opt, const char *arg, Error **errp);

typedef struct BlockdOption {
    const char *name;       /* long name, without "--" */
    char short_name;        /* single-letter alias, or 0 */
    const char *arg_help;   /* argument synopsis; NULL if none is taken */
    const char *help;       /* one line for --help */
    OptionHandler *handler;
} BlockdOption;

static OptionHandler opt_help, opt_version, opt_chardev, opt_monitor,
    opt_object, opt_pidfile, opt_blockdev, opt_drive, opt_nbd_server,
    opt_export;

static const BlockdOption options[] = {
    { "help", 'h', NULL, "display this help and exit", opt_help },
    { "version", 'V', NULL, "print the version and exit", opt_version },
    { "chardev", 0, "socket,id=ID,path=PATH|host=H,port=N,server=on",
      "create a listening socket for a monitor (UNIX or TCP)", opt_chardev },
    { "monitor", 0, "[chardev=]ID[,id=ID][,mode=control][,pretty=on|off]",
      "serve QMP on the chardev ID (any number of clients)", opt_monitor },
    { "object", 0, "iothread,id=ID | metrics-server,id=ID,addr.type=inet,"
      "addr.host=H,addr.port=N",
      "create an object; 'iothread' is a thread with its own event loop, "
      "'metrics-server' serves GET /metrics (OpenMetrics)",
      opt_object },
    { "blockdev", 0, "[driver=]DRIVER[,node-name=NAME][,OPTION=VALUE...]",
      "open a block node, as blockdev-add does", opt_blockdev },
    { "drive", 0, "id=NAME,file=PATH[,format=raw][,cache=none|writeback]"
      "[,aio=native|threads][,if=none][,read-only=on|off]"
      "[,stats-intervals.N=SECONDS][,account-invalid=on|off]"
      "[,account-failed=on|off]",
      "open an image file as the device NAME (file node, raw node, "
      "backend)", opt_drive },
    { "nbd-server", 0, "addr.type=unix,addr.path=PATH|addr.type=inet,"
      "addr.host=H,addr.port=N[,max-connections=N]",
      "start the NBD server, as nbd-server-start does", opt_nbd_server },
    { "export", 0, "[type=]nbd,id=ID,node-name=NODE[,name=NAME]"
      "[,writable=on|off][,iothread=ID][,fixed-iothread=on|off]",
      "export a node, as block-export-add does", opt_export },
    { "pidfile", 0, "PATH",
      "write the daemon's pid to PATH once set up; removed at exit",
      opt_pidfile },
};

/* ---- option handlers ---- */

static bool opt_help(const char *opt, const char *arg, Error **errp)
{
    printf("Usage: blockd [options]\n"
           "blockd " BLOCKD_VERSION ": block storage daemon with a QMP "
           "monitor\n\n"
           "Options (each also accepts the --name=VALUE form):\n");
    for (size_t i = 0; i < G_N_ELEMENTS(options); i++) {
        const BlockdOption *o = &options[i];
        g_autoptr(GString) synopsis = g_string_new("  ");

        if (o->short_name) {
            g_string_append_printf(synopsis, "-%c, ", o->short_name);
        }
        g_string_append_printf(synopsis, "--%s", o->name);
        if (o->arg_help) {
            g_string_append_printf(synopsis, " %s", o->arg_help);
        }
        printf("%s\n      %s\n", synopsis->str, o->help);
    }
    printf("\nOption values use keyval syntax (key=value,...; ',,' stands "
           "for a comma)\nor JSON ({...}).\n");
    early_exit = true;
    return true;
}

static bool opt_version(const char *opt, const char *arg, Error **errp)
{
    printf("blockd version " BLOCKD_VERSION "\n");
    early_exit = true;
    return true;
}

/* Parses arg (keyval with implied_key, or JSON) into a JSON object;
 * *keyval tells the visitors whether scalars come as strings. */
static json_t *parse_option(const char *arg, const char *implied_key,
                            bool *keyval, Error **errp)
{
    bool is_json = false;
    json_t *obj = keyval_or_json_parse(arg, implied_key, &is_json, errp);

    *keyval = !is_json;
    return obj;
}

static bool opt_chardev(const char *opt, const char *arg, Error **errp)
{
    g_autoptr(ChardevOptions) co = NULL;
    bool keyval;
    json_t *obj = parse_option(arg, "backend", &keyval, errp);
    QapiPath root = QAPI_PATH_ROOT(keyval);
    bool ok;

    if (!obj) {
        return false;
    }
    ok = visit_in_ChardevOptions(obj, &root, &co, errp);
    json_decref(obj);
    if (!ok) {
        return false;
    }
    if (chardev_find(co->id)) {
        error_setg(errp, "Duplicate ID '%s' for chardev", co->id);
        return false;
    }
    return chardev_new(co, errp) != NULL;
}

static bool opt_monitor(const char *opt, const char *arg, Error **errp)
{
    g_autoptr(MonitorOptions) mo = NULL;
    bool keyval;
    json_t *obj = parse_option(arg, "chardev", &keyval, errp);
    QapiPath root = QAPI_PATH_ROOT(keyval);
    bool ok;

    if (!obj) {
        return false;
    }
    ok = visit_in_MonitorOptions(obj, &root, &mo, errp);
    json_decref(obj);
    return ok && monitor_new_qmp(mo, errp);
}

static bool opt_object(const char *opt, const char *arg, Error **errp)
{
    g_autoptr(ObjectOptions) oo = NULL;
    bool keyval;
    json_t *obj = parse_option(arg, "qom-type", &keyval, errp);
    QapiPath root = QAPI_PATH_ROOT(keyval);
    bool ok;

    if (!obj) {
        return false;
    }
    ok = visit_in_ObjectOptions(obj, &root, &oo, errp);
    json_decref(obj);
    if (!ok) {
        return false;
    }
    if (oo->qom_type == OBJECT_TYPE_METRICS_SERVER) {
        MetricsServerProperties *m = &oo->u.metrics_server;

        return metrics_server_start(oo->id, m->addr,
                                    m->has_max_connections
                                    ? m->max_connections
                                    : METRICS_SERVER_DEFAULT_CONNECTIONS,
                                    errp);
    }
    g_assert(oo->qom_type == OBJECT_TYPE_IOTHREAD);
    if (iothread_find(oo->id)) {
        error_setg(errp, "Duplicate ID '%s' for object", oo->id);
        return false;
    }
    if (oo->u.iothread.has_poll_max_ns && oo->u.iothread.poll_max_ns != 0) {
        error_setg(errp, "Parameter 'poll-max-ns' must be 0: blockd's "
                   "iothreads do not busy-poll");
        return false;
    }
    return iothread_create(oo->id, errp) != NULL;
}

static bool opt_blockdev(const char *opt, const char *arg, Error **errp)
{
    return blockdev_add_cmdline(arg, errp);
}

/* The accounting options of --drive (QEMU's -drive has them): handled
 * here, the rest by drive_add_cmdline. */
static bool drive_stats_key(const char *key, size_t len)
{
    static const char *const keys[] = {
        "stats-intervals", "account-invalid", "account-failed",
    };

    for (size_t i = 0; i < G_N_ELEMENTS(keys); i++) {
        size_t kl = strlen(keys[i]);

        if (len >= kl && !strncmp(key, keys[i], kl) &&
            (len == kl || key[kl] == '.')) {
            return true;
        }
    }
    return false;
}

/* arg without its accounting options (keyval: ",," is a literal comma). */
static char *drive_strip_stats(const char *arg)
{
    GString *out = g_string_new(NULL);
    const char *p = arg;

    while (*p) {
        const char *end = p;
        size_t klen;

        while (*end && !(end[0] == ',' && end[1] != ',')) {
            end += (end[0] == ',') ? 2 : 1;
        }
        klen = strcspn(p, "=,");
        if (!drive_stats_key(p, MIN(klen, (size_t)(end - p)))) {
            if (out->len) {
                g_string_append_c(out, ',');
            }
            g_string_append_len(out, p, end - p);
        }
        p = *end ? end + 1 : end;
    }
    return g_string_free(out, FALSE);
}

static bool drive_onoff(json_t *obj, const char *key, bool *out,
                        Error **errp)
{
    json_t *v = json_object_get(obj, key);
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;

    *out = true;
    if (!v) {
        return true;
    }
    if (s && (!strcmp(s, "on") || !strcmp(s, "off"))) {
        *out = !strcmp(s, "on");
        return true;
    }
    error_setg(errp, "Parameter '%s' expects 'on' or 'off'", key);
    return false;
}

static bool opt_drive(const char *opt, const char *arg, Error **errp)
{
    g_autofree char *rest = NULL;
    g_autofree uint64_t *iv = NULL;
    json_t *obj = keyval_parse(arg, NULL, NULL, errp);
    json_t *list, *id;
    bool inv, failed, ok = false;
    size_t n = 0;

    if (!obj) {
        return false;
    }
    list = json_object_get(obj, "stats-intervals");
    id = json_object_get(obj, "id");
    if (list && !json_is_array(list)) {
        error_setg(errp, "Parameter 'stats-intervals' expects a list "
                   "(stats-intervals.0=SECONDS,...)");
        goto out;
    }
    n = list ? json_array_size(list) : 0;
    iv = g_new0(uint64_t, n + 1);
    for (size_t i = 0; i < n; i++) {
        const char *v = json_string_value(json_array_get(list, i));
        char *end = NULL;

        iv[i] = v ? g_ascii_strtoull(v, &end, 10) : 0;
        if (!v || !*v || *end || iv[i] == 0 || iv[i] > UINT32_MAX) {
            error_setg(errp, "Invalid interval length: '%s' (must be "
                       "between 1 and %u seconds)", v ? v : "",
                       UINT32_MAX);
            goto out;
        }
    }
    if (!drive_onoff(obj, "account-invalid", &inv, errp) ||
        !drive_onoff(obj, "account-failed", &failed, errp)) {
        goto out;
    }
    rest = drive_strip_stats(arg);
    if (!drive_add_cmdline(rest, errp)) {
        goto out;
    }
    if (json_is_string(id)) {
        BlockBackend *blk = blk_by_name(json_string_value(id));
        BlockAcctStats *st = blk ? blk_get_stats(blk) : NULL;

        if (st) {
            block_acct_setup(st, inv, failed);
            for (size_t i = 0; i < n; i++) {
                block_acct_add_interval(st, iv[i], &error_abort);
            }
        }
    }
    ok = true;
out:
    json_decref(obj);
    return ok;
}

static bool opt_nbd_server(const char *opt, const char *arg, Error **errp)
{
    g_autoptr(NbdServerOptions) no = NULL;
    bool keyval;
    json_t *obj = parse_option(arg, NULL, &keyval, errp);
    QapiPath root = QAPI_PATH_ROOT(keyval);
    bool ok;

    if (!obj) {
        return false;
    }
    ok = visit_in_NbdServerOptions(obj, &root, &no, errp);
    json_decref(obj);
    return ok && nbd_server_start_with_limits(
        no->addr, no->has_max_connections ? no->max_connections : 0,
        no->has_handshake_max_seconds ? no->handshake_max_seconds :
        NBD_DEFAULT_HANDSHAKE_MAX_SECS, errp);
}

static bool opt_export(const char *opt, const char *arg, Error **errp)
{
    g_autoptr(BlockExportOptions) eo = NULL;
    bool keyval;
    json_t *obj = parse_option(arg, "type", &keyval, errp);
    QapiPath root = QAPI_PATH_ROOT(keyval);
    bool ok;

    if (!obj) {
        return false;
    }
    ok = visit_in_BlockExportOptions(obj, &root, &eo, errp);
    json_decref(obj);
    return ok && blk_exp_add(eo, errp);
}

static bool opt_pidfile(const char *opt, const char *arg, Error **errp)
{
    g_free(pidfile_path);
    pidfile_path = g_strdup(arg);
    return true;
}

/* ---- command line ---- */

static const BlockdOption *find_option(const char *name, size_t len,
                                       char short_name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(options); i++) {
        const BlockdOption *o = &options[i];

        if (short_name ? o->short_name == short_name :
            strlen(o->name) == len && !strncmp(o->name, name, len)) {
            return o;
        }
    }
    return NULL;
}

/*
 * Identifies the option at argv[*i] and its value (from "--name=VALUE" or
 * the next argument, which *i then skips).  NULL with errp set if the
 * option is unknown or its value is missing or superfluous.
 */
static const BlockdOption *next_option(int argc, char **argv, int *i,
                                       const char **value, Error **errp)
{
    const char *a = argv[*i];
    const char *eq = NULL;
    const BlockdOption *o;

    *value = NULL;
    if (a[0] == '-' && a[1] == '-' && a[2]) {
        size_t len;

        eq = strchr(a + 2, '=');
        len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        o = find_option(a + 2, len, 0);
        if (!o) {
            error_setg(errp, "Unrecognized option '%.*s'", (int)(len + 2), a);
            return NULL;
        }
    } else if (a[0] == '-' && a[1] && !a[2]) {
        o = find_option(NULL, 0, a[1]);
        if (!o) {
            error_setg(errp, "Unrecognized option '%s'", a);
            return NULL;
        }
    } else {
        error_setg(errp, "Unexpected argument '%s'", a);
        return NULL;
    }
    if (!o->arg_help && eq) {
        error_setg(errp, "Option '--%s' does not take an argument", o->name);
        return NULL;
    }
    if (o->arg_help && !eq && *i + 1 >= argc) {
        error_setg(errp, "Option '--%s' requires an argument", o->name);
        return NULL;
    }
    if (o->arg_help) {
        *value = eq ? eq + 1 : argv[++*i];
    }
    return o;
}

/*
 * Runs the handler of every option in order.  Errors of a handler are
 * prefixed with "--name VALUE: " to say which option failed, except
 * duplicate ids (the contract's "Duplicate ID 'c0' for chardev"), whose
 * message names the culprit already.
 */
static bool parse_command_line(int argc, char **argv, Error **errp)
{
    for (int i = 1; i < argc && !early_exit; i++) {
        const char *value;
        const BlockdOption *o = next_option(argc, argv, &i, &value, errp);
        Error *err = NULL;

        if (!o) {
            return false;
        }
        if (!o->handler(o->name, value, &err)) {
            if (!g_str_has_prefix(error_get_pretty(err), "Duplicate ID ")) {
                error_prepend(&err, "--%s %s: ", o->name, value);
            }
            error_propagate(errp, err);
            return false;
        }
    }
    return true;
}

/* ---- signals, pidfile, exit ---- */

static void signal_read(void *opaque)
{
    struct signalfd_siginfo si;

    while (read(signal_fd, &si, sizeof(si)) == sizeof(si)) {
        shutdown_request(SHUTDOWN_CAUSE_HOST_SIGNAL);
    }
}

/*
 * Blocks SIGTERM and SIGINT (before any thread starts, so every iothread
 * inherits the mask) and receives them through a signalfd in the main
 * loop instead; SIGPIPE is ignored so that a vanished client is just an
 * EPIPE.
 */
static void signals_init(void)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd < 0) {
        error_report("signalfd: %s", g_strerror(errno));
        exit(1);
    }
    aio_set_fd_handler(aio_main_context(), signal_fd, signal_read, NULL,
                       NULL);
}

/* Writes "PID\n" to a temporary file and renames it over the pidfile, so
 * a reader never sees a partial file. */
static bool pidfile_write(const char *path, Error **errp)
{
    g_autofree char *tmp = g_strdup_printf("%s.%d.tmp", path, (int)getpid());
    g_autofree char *text = g_strdup_printf("%d\n", (int)getpid());
    size_t len = strlen(text);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    if (fd < 0) {
        error_setg_errno(errp, errno, "Cannot create pidfile %s", path);
        return false;
    }
    if (write(fd, text, len) != (ssize_t)len || close(fd) < 0 ||
        rename(tmp, path) < 0) {
        error_setg_errno(errp, errno, "Cannot write pidfile %s", path);
        unlink(tmp);
        return false;
    }
    return true;
}

/* Releases everything main() set up; safe after a partial setup. */
static void cleanup(void)
{
    IOThread *t;

    /* Exports run in iothreads: stop them before the threads go. */
    nbd_server_stop();
    monitor_cleanup_all();
    metrics_server_cleanup_all();
    chardev_cleanup_all();
    while ((t = iothread_next(NULL)) != NULL) {
        iothread_destroy(t);
    }
    /* Joined so that no thread outlives the daemon (valgrind counts a
     * live worker's stack as possibly lost). */
    thread_pool_stop();
    if (pidfile_written) {
        unlink(pidfile_path);
    }
    g_free(pidfile_path);
    if (signal_fd >= 0) {
        aio_set_fd_handler(aio_main_context(), signal_fd, NULL, NULL, NULL);
        close(signal_fd);
    }
}

int main(int argc, char **argv)
{
    AioContext *ctx;
    ShutdownCause cause;
    Error *err = NULL;

    error_set_progname("blockd");
    ctx = aio_main_context();
    signals_init();

    if (!parse_command_line(argc, argv, &err) ||
        (!early_exit && pidfile_path &&
         !pidfile_write(pidfile_path, &err))) {
        error_report_err(err);
        cleanup();
        return 1;
    }
    if (early_exit) {
        cleanup();
        return 0;
    }
    pidfile_written = pidfile_path != NULL;

    while (!shutdown_requested(&cause)) {
        aio_poll(ctx, true);
    }
    qapi_event_send_shutdown(false, cause);
    /* Running jobs are cancelled (their events still reach clients). */
    job_cancel_sync_all();
    monitor_flush_all();
    cleanup();
    return 0;
}
