/* Unit tests for util/error.c: the Error ** rules of CONVENTIONS.md. */
#include <errno.h>
#include <string.h>

#include "util/error.h"

static void test_set_and_class(void)
{
    Error *err = NULL;

    error_set(&err, ERROR_CLASS_DEVICE_NOT_ACTIVE, "No job '%s'", "j0");
    g_assert_nonnull(err);
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_DEVICE_NOT_ACTIVE);
    g_assert_cmpstr(error_get_pretty(err), ==, "No job 'j0'");
    g_assert_cmpstr(error_class_name(error_get_class(err)), ==,
                    "DeviceNotActive");
    error_free(err);
}

static void test_null_errp_ignored(void)
{
    error_setg(NULL, "nobody listens");
    error_propagate(NULL, NULL);
}

static void test_errno_suffix(void)
{
    g_autoptr(Error) err = NULL;

    error_setg_errno(&err, ENOENT, "Could not open '%s'", "x.img");
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Could not open 'x.img': No such file or directory");
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_GENERIC_ERROR);
}

static void test_propagate_keeps_first(void)
{
    Error *dst = NULL;
    Error *a = NULL;
    Error *b = NULL;

    error_setg(&a, "first");
    error_setg(&b, "second");
    error_propagate(&dst, a);
    error_propagate(&dst, b);
    g_assert_cmpstr(error_get_pretty(dst), ==, "first");
    error_free(dst);
}

static void test_prepend_and_copy(void)
{
    Error *err = NULL;
    Error *copy;

    error_setg(&err, "bad header");
    error_prepend(&err, "Image '%s': ", "a.qcow2");
    copy = error_copy(err);
    error_free_or_abort(&err);
    g_assert_null(err);
    g_assert_cmpstr(error_get_pretty(copy), ==, "Image 'a.qcow2': bad header");
    error_free(copy);
}

static void test_class_names(void)
{
    g_assert_cmpstr(error_class_name(ERROR_CLASS_GENERIC_ERROR), ==,
                    "GenericError");
    g_assert_cmpstr(error_class_name(ERROR_CLASS_COMMAND_NOT_FOUND), ==,
                    "CommandNotFound");
    g_assert_cmpstr(error_class_name(ERROR_CLASS_DEVICE_NOT_FOUND), ==,
                    "DeviceNotFound");
}

static void test_abort_on_error(void)
{
    if (g_test_subprocess()) {
        error_setg(&error_abort, "boom");
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*unexpected error: boom*");
}

static void test_fatal_exits_1(void)
{
    if (g_test_subprocess()) {
        error_setg(&error_fatal, "cannot go on");
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("blockd: cannot go on\n");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/error/set-and-class", test_set_and_class);
    g_test_add_func("/error/null-errp", test_null_errp_ignored);
    g_test_add_func("/error/errno-suffix", test_errno_suffix);
    g_test_add_func("/error/propagate-keeps-first", test_propagate_keeps_first);
    g_test_add_func("/error/prepend-and-copy", test_prepend_and_copy);
    g_test_add_func("/error/class-names", test_class_names);
    g_test_add_func("/error/abort", test_abort_on_error);
    g_test_add_func("/error/fatal", test_fatal_exits_1);
    return g_test_run();
}
