/*
 * Error reporting for the control plane.
 *
 * An Error carries a class (the QMP error class a client sees) and a
 * human-readable message.  Rules, shared by every control-plane function
 * that takes "Error **errp" as its last parameter:
 *   - it sets *errp only on failure, and at most once;
 *   - it never reads *errp (callers may pass NULL to ignore the error);
 *   - it also reports failure in its return value (false, NULL or -errno),
 *     so callers need not inspect errp to know whether it failed.
 * &error_abort and &error_fatal may be passed as errp to abort or exit(1)
 * on failure.  Data-path functions do not use Error; they return -errno.
 *
 * Thread safety: an Error belongs to whoever holds the pointer; the
 * functions here touch no shared state except error_report's stderr lock.
 */
#ifndef UTIL_ERROR_H
#define UTIL_ERROR_H

#include <glib.h>
#include <stdbool.h>

/* The QMP error classes.  Names as QEMU's (see error_class_name()). */
typedef enum ErrorClass {
    ERROR_CLASS_GENERIC_ERROR,
    ERROR_CLASS_COMMAND_NOT_FOUND,
    ERROR_CLASS_DEVICE_NOT_ACTIVE,
    ERROR_CLASS_DEVICE_NOT_FOUND,
    ERROR_CLASS__MAX,
} ErrorClass;

typedef struct Error Error;

/* Pass &error_abort / &error_fatal as errp to abort / exit on failure. */
extern Error *error_abort;
extern Error *error_fatal;

/* "GenericError", "CommandNotFound", ... */
const char *error_class_name(ErrorClass cls);

void error_setg(Error **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
void error_set(Error **errp, ErrorClass cls, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
/* Appends ": strerror(os_errno)" to the message. */
void error_setg_errno(Error **errp, int os_errno, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

/*
 * Moves @local_err into *dst_errp (takes ownership of local_err).  If dst is
 * NULL the error is freed; if *dst is already set, local_err is freed.
 */
void error_propagate(Error **dst_errp, Error *local_err);
/* Prefixes the message of *errp (if set) with the formatted text. */
void error_prepend(Error **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

const char *error_get_pretty(const Error *err);
ErrorClass error_get_class(const Error *err);
Error *error_copy(const Error *err);
void error_free(Error *err);
/* Frees *errp if set and clears it. */
void error_free_or_abort(Error **errp);

/* Prints "blockd: <message>" to stderr. */
void error_report(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
/* error_report()s the message of err and frees it. */
void error_report_err(Error *err);
/* Program name used as the prefix by error_report (default "blockd"). */
void error_set_progname(const char *name);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Error, error_free)

#endif
