/*
 * Unit tests of nbd/common.c: the wire encodings shared by the NBD server
 * and client (checked byte by byte against the layouts of the NBD
 * specification), the errno <-> NBD error mapping and the names.
 */
#include <errno.h>
#include <glib.h>

#include "block/nbd.h"

static void test_request_roundtrip(void)
{
    NBDRequest in = { .flags = NBD_CMD_FLAG_FUA, .type = NBD_CMD_WRITE,
                      .cookie = 0x0102030405060708ULL,
                      .offset = 0x1122334455667788ULL, .len = 0xa0b0c0d0 };
    NBDRequest out;
    uint8_t buf[NBD_REQUEST_SIZE];
    static const uint8_t expect[NBD_REQUEST_SIZE] = {
        0x25, 0x60, 0x95, 0x13, 0x00, 0x01, 0x00, 0x01,
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
        0xa0, 0xb0, 0xc0, 0xd0,
    };

    nbd_encode_request(buf, &in);
    g_assert_cmpmem(buf, sizeof(buf), expect, sizeof(expect));
    g_assert_true(nbd_decode_request(buf, &out));
    g_assert_cmpuint(out.flags, ==, in.flags);
    g_assert_cmpuint(out.type, ==, in.type);
    g_assert_cmpuint(out.cookie, ==, in.cookie);
    g_assert_cmpuint(out.offset, ==, in.offset);
    g_assert_cmpuint(out.len, ==, in.len);
}

static void test_request_bad_magic(void)
{
    uint8_t buf[NBD_REQUEST_SIZE] = { 0x25, 0x60, 0x95, 0x14 };
    NBDRequest out;

    g_assert_false(nbd_decode_request(buf, &out));
}

static void test_simple_reply(void)
{
    uint8_t buf[NBD_SIMPLE_REPLY_SIZE];
    NBDReply r;
    size_t needed;
    static const uint8_t expect[NBD_SIMPLE_REPLY_SIZE] = {
        0x67, 0x44, 0x66, 0x98, 0x00, 0x00, 0x00, 0x05,
        0, 0, 0, 0, 0, 0, 0x12, 0x34,
    };

    nbd_encode_simple_reply(buf, NBD_EIO, 0x1234);
    g_assert_cmpmem(buf, sizeof(buf), expect, sizeof(expect));
    g_assert_true(nbd_decode_reply(buf, sizeof(buf), &r, &needed));
    g_assert_cmpuint(needed, ==, NBD_SIMPLE_REPLY_SIZE);
    g_assert_false(r.structured);
    g_assert_cmpuint(r.error, ==, NBD_EIO);
    g_assert_cmpuint(r.cookie, ==, 0x1234);
}

static void test_structured_reply(void)
{
    uint8_t buf[NBD_STRUCTURED_REPLY_SIZE];
    NBDReply r;
    size_t needed;

    nbd_encode_structured_reply(buf, NBD_REPLY_FLAG_DONE,
                                NBD_REPLY_TYPE_OFFSET_HOLE, 77, 12);
    g_assert_cmpuint(nbd_get_u32(buf), ==, 0x668e33ef);
    /* Only the magic: the caller learns how much header to read. */
    g_assert_true(nbd_decode_reply(buf, 4, &r, &needed));
    g_assert_cmpuint(needed, ==, NBD_STRUCTURED_REPLY_SIZE);
    g_assert_true(nbd_decode_reply(buf, sizeof(buf), &r, &needed));
    g_assert_true(r.structured);
    g_assert_cmpuint(r.flags, ==, NBD_REPLY_FLAG_DONE);
    g_assert_cmpuint(r.type, ==, NBD_REPLY_TYPE_OFFSET_HOLE);
    g_assert_cmpuint(r.cookie, ==, 77);
    g_assert_cmpuint(r.length, ==, 12);
    buf[0] ^= 1;
    g_assert_false(nbd_decode_reply(buf, sizeof(buf), &r, &needed));
}

static void test_option_headers(void)
{
    uint8_t opt[NBD_OPTION_HEADER_SIZE];
    uint8_t rep[NBD_OPTION_REPLY_HEADER_SIZE];

    nbd_encode_option(opt, NBD_OPT_GO, 9);
    g_assert_cmpmem(opt, 8, "IHAVEOPT", 8);
    g_assert_cmpuint(nbd_get_u32(opt + 8), ==, 7);
    g_assert_cmpuint(nbd_get_u32(opt + 12), ==, 9);
    nbd_encode_option_reply(rep, NBD_OPT_LIST, NBD_REP_ERR_UNSUP, 3);
    g_assert_cmpuint(nbd_get_u64(rep), ==, 0x0003e889045565a9ULL);
    g_assert_cmpuint(nbd_get_u32(rep + 8), ==, 3);
    g_assert_cmpuint(nbd_get_u32(rep + 12), ==, 0x80000001u);
    g_assert_cmpuint(nbd_get_u32(rep + 16), ==, 3);
}

static void test_errno_mapping(void)
{
    static const struct { int err; uint32_t wire; } map[] = {
        { 0, 0 }, { EPERM, 1 }, { EIO, 5 }, { ENOMEM, 12 }, { EINVAL, 22 },
        { ENOSPC, 28 }, { EOVERFLOW, 75 }, { ENOTSUP, 95 },
        { ESHUTDOWN, 108 },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(map); i++) {
        g_assert_cmpuint(nbd_errno_to_wire(map[i].err), ==, map[i].wire);
        g_assert_cmpuint(nbd_errno_to_wire(-map[i].err), ==, map[i].wire);
        g_assert_cmpint(nbd_wire_to_errno(map[i].wire), ==, map[i].err);
    }
    /* Host errors without an NBD value. */
    g_assert_cmpuint(nbd_errno_to_wire(-EROFS), ==, NBD_EPERM);
    g_assert_cmpuint(nbd_errno_to_wire(-EDQUOT), ==, NBD_ENOSPC);
    g_assert_cmpuint(nbd_errno_to_wire(-ENOENT), ==, NBD_EINVAL);
    g_assert_cmpint(nbd_wire_to_errno(12345), ==, EINVAL);
}

static void test_names(void)
{
    g_assert_cmpstr(nbd_opt_name(NBD_OPT_GO), ==, "NBD_OPT_GO");
    g_assert_cmpstr(nbd_opt_name(1000), ==, "unknown");
    g_assert_cmpstr(nbd_rep_name(NBD_REP_ERR_TOO_BIG), ==,
                    "NBD_REP_ERR_TOO_BIG");
    g_assert_cmpstr(nbd_cmd_name(NBD_CMD_BLOCK_STATUS), ==,
                    "NBD_CMD_BLOCK_STATUS");
    g_assert_cmpstr(nbd_reply_type_name(NBD_REPLY_TYPE_ERROR), ==,
                    "NBD_REPLY_TYPE_ERROR");
    g_assert_cmpstr(nbd_err_name(NBD_ENOSPC), ==, "ENOSPC");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/nbd/request/roundtrip", test_request_roundtrip);
    g_test_add_func("/nbd/request/bad-magic", test_request_bad_magic);
    g_test_add_func("/nbd/reply/simple", test_simple_reply);
    g_test_add_func("/nbd/reply/structured", test_structured_reply);
    g_test_add_func("/nbd/option/headers", test_option_headers);
    g_test_add_func("/nbd/errno", test_errno_mapping);
    g_test_add_func("/nbd/names", test_names);
    return g_test_run();
}
