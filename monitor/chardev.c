/*
 * Listening character devices (--chardev socket,...) for the QMP monitor.
 * Owner: monitor work.
 *
 * A chardev here is only a non-blocking listening socket; the QMP server
 * that uses it (monitor/monitor.c) accepts the clients.  Unlike QEMU's
 * socket chardev, one chardev serves any number of clients at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "monitor/monitor-internal.h"

/* All chardevs in creation order.  Main thread only. */
static GPtrArray *chardevs;

static int chardev_listen_unix(const char *path, Error **errp)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    struct stat st;
    int fd;

    if (strlen(path) >= sizeof(addr.sun_path)) {
        error_setg(errp, "UNIX socket path '%s' is too long", path);
        return -1;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);

    /* A socket file left by a process that died is in the way of bind();
     * anything else at that path is not ours to remove. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        unlink(path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Failed to create UNIX socket");
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        error_setg_errno(errp, errno, "Failed to bind socket to %s", path);
        close(fd);
        return -1;
    }
    if (listen(fd, SOMAXCONN) < 0) {
        error_setg_errno(errp, errno, "Failed to listen on %s", path);
        close(fd);
        unlink(path);
        return -1;
    }
    return fd;
}

/* Binds and listens on the first address of host:port that works. */
static int chardev_listen_tcp(const char *host, const char *port,
                              Error **errp)
{
    struct addrinfo hints = {
        .ai_flags = AI_PASSIVE | AI_ADDRCONFIG,
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
    };
    struct addrinfo *res, *ai;
    int saved_errno = 0;
    int fd = -1;
    int rc;

    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        error_setg(errp, "address resolution failed for %s:%s: %s",
                   host, port, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        int one = 1;

        fd = socket(ai->ai_family,
                    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            saved_errno = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, SOMAXCONN) == 0) {
            break;
        }
        saved_errno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        error_setg_errno(errp, saved_errno, "Failed to listen on %s:%s",
                         host, port);
    }
    return fd;
}

static int chardev_listen(const ChardevSocketOptions *sock, Error **errp)
{
    if (!sock->has_server || !sock->server) {
        error_setg(errp, "only server=on is supported");
        return -1;
    }
    if (sock->path && sock->host) {
        error_setg(errp, "'path' and 'host' are mutually exclusive");
        return -1;
    }
    if (sock->path) {
        return chardev_listen_unix(sock->path, errp);
    }
    if (!sock->host) {
        error_setg(errp, "either 'path' or 'host' is required");
        return -1;
    }
    if (!sock->port) {
        error_setg(errp, "Parameter 'port' is missing");
        return -1;
    }
    return chardev_listen_tcp(sock->host, sock->port, errp);
}

Chardev *chardev_new(const ChardevOptions *opts, Error **errp)
{
    const ChardevSocketOptions *sock = &opts->u.socket;
    Chardev *chr;
    int fd;

    g_assert(opts->backend == CHARDEV_BACKEND_KIND_SOCKET);
    fd = chardev_listen(sock, errp);
    if (fd < 0) {
        return NULL;
    }
    chr = g_new0(Chardev, 1);
    chr->id = g_strdup(opts->id);
    chr->fd = fd;
    chr->unix_path = g_strdup(sock->path);
    if (!chardevs) {
        chardevs = g_ptr_array_new();
    }
    g_ptr_array_add(chardevs, chr);
    return chr;
}

Chardev *chardev_find(const char *id)
{
    for (guint i = 0; chardevs && i < chardevs->len; i++) {
        Chardev *chr = g_ptr_array_index(chardevs, i);

        if (!strcmp(chr->id, id)) {
            return chr;
        }
    }
    return NULL;
}

void chardev_cleanup_all(void)
{
    for (guint i = 0; chardevs && i < chardevs->len; i++) {
        Chardev *chr = g_ptr_array_index(chardevs, i);

        g_assert(!chr->in_use);
        close(chr->fd);
        if (chr->unix_path) {
            unlink(chr->unix_path);
        }
        g_free(chr->unix_path);
        g_free(chr->id);
        g_free(chr);
    }
    if (chardevs) {
        g_ptr_array_free(chardevs, TRUE);
        chardevs = NULL;
    }
}
