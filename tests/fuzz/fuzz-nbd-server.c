/*
 * libFuzzer target: blockd's NBD server facing a hostile client.
 *
 * Once per process the target builds what a daemon would have: a
 * writable 1 MiB null-co node exported as "e0" (and read-only as "ro"),
 * and the NBD server listening on a UNIX socket, all through the same QMP
 * marshallers the monitor calls.  Each input is then sent as one client
 * connection: connect, write every byte (handshake, options, requests and
 * payloads, in whatever order the fuzzer found), half-close, and read
 * until the server hangs up.  Client and server run in the one main
 * AioContext, the client as plain fd handlers, so the server never blocks
 * on a reply nobody reads.
 *
 * The server must end every connection (a hang is reported by libFuzzer's
 * -timeout), never crash, never leak (LeakSanitizer at exit) and never
 * touch memory it does not own (ASan); the daemon-wide state it leaves
 * behind must let the next connection in.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "qapi/qapi-runtime.h"
#include "util/aio.h"

typedef struct FuzzClient {
    int fd;
    const uint8_t *data;
    size_t size;
    size_t sent;
    bool hung_up;
} FuzzClient;

static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

/* Runs one QMP command through its marshaller; aborts on failure, since
 * the set-up is fixed and must work. */
static void run_command(const char *name, const char *args_json)
{
    const QmpCommand *cmd = qmp_find_command(name);
    g_autoptr(GString) ret = g_string_new(NULL);
    json_error_t jerr;
    json_t *args = json_loads(args_json, 0, &jerr);
    Error *err = NULL;

    if (!cmd || !args || !cmd->fn(args, ret, &err)) {
        fprintf(stderr, "set-up command %s failed: %s\n", name,
                err ? error_get_pretty(err) : "bad arguments");
        abort();
    }
    json_decref(args);
}

static void setup(void)
{
    g_autofree char *dir = g_dir_make_tmp("blockd-fuzz-XXXXXX", NULL);
    g_autofree char *args = NULL;

    g_assert(dir);
    g_snprintf(sock_path, sizeof(sock_path), "%s/nbd.sock", dir);
    aio_context_set_current(aio_main_context());
    run_command("blockdev-add",
                "{\"driver\": \"null-co\", \"node-name\": \"n0\","
                " \"size\": 1048576, \"read-zeroes\": true}");
    args = g_strdup_printf("{\"addr\": {\"type\": \"unix\", \"path\": \"%s\"}}",
                           sock_path);
    run_command("nbd-server-start", args);
    run_command("block-export-add",
                "{\"type\": \"nbd\", \"id\": \"e0\", \"node-name\": \"n0\","
                " \"name\": \"e0\", \"writable\": true}");
    run_command("block-export-add",
                "{\"type\": \"nbd\", \"id\": \"ro\", \"node-name\": \"n0\","
                " \"name\": \"ro\", \"description\": \"read-only\"}");
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    setup();
    return 0;
}

static void client_update(FuzzClient *c);

/* Sends what the socket takes; half-closes after the last byte so the
 * server sees EOF wherever the input ends. */
static void client_writable(void *opaque)
{
    FuzzClient *c = opaque;
    ssize_t n = send(c->fd, c->data + c->sent, c->size - c->sent,
                     MSG_DONTWAIT | MSG_NOSIGNAL);

    if (n > 0) {
        c->sent += n;
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        c->sent = c->size;      /* the server hung up first */
    }
    if (c->sent == c->size) {
        shutdown(c->fd, SHUT_WR);
    }
    client_update(c);
}

/* Reads and drops replies; EOF or an error means the server is done. */
static void client_readable(void *opaque)
{
    FuzzClient *c = opaque;
    char buf[65536];
    ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        c->hung_up = true;
    }
    client_update(c);
}

static void client_update(FuzzClient *c)
{
    bool want_write = c->sent < c->size && !c->hung_up;

    if (c->hung_up) {
        aio_set_fd_handler(aio_main_context(), c->fd, NULL, NULL, NULL);
        return;
    }
    aio_set_fd_handler(aio_main_context(), c->fd, client_readable,
                       want_write ? client_writable : NULL, c);
}

static int client_connect(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_assert(fd >= 0);
    memcpy(sa.sun_path, sock_path, sizeof(sock_path));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "connect: %s\n", strerror(errno));
        abort();
    }
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    AioContext *ctx = aio_main_context();
    FuzzClient c = { .fd = client_connect(), .data = data, .size = size };

    if (size == 0) {
        shutdown(c.fd, SHUT_WR);
    }
    client_update(&c);
    while (!c.hung_up) {
        aio_poll(ctx, true);
    }
    close(c.fd);
    /* Let the server finish freeing the connection (bottom halves). */
    while (aio_poll(ctx, false)) {
    }
    return 0;
}
