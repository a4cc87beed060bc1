/*
 * NBD protocol helpers shared by the server (nbd/server.c) and the client
 * driver (block/nbd.c): header encoding/decoding, the errno ↔ NBD error
 * mapping and names for messages.  No I/O and no state: callable from any
 * thread.
 */
#include <errno.h>

#include "block/nbd.h"

void nbd_encode_request(uint8_t *buf, const NBDRequest *req)
{
    nbd_put_u32(buf, NBD_REQUEST_MAGIC);
    nbd_put_u16(buf + 4, req->flags);
    nbd_put_u16(buf + 6, req->type);
    nbd_put_u64(buf + 8, req->cookie);
    nbd_put_u64(buf + 16, req->offset);
    nbd_put_u32(buf + 24, req->len);
}

bool nbd_decode_request(const uint8_t *buf, NBDRequest *req)
{
    if (nbd_get_u32(buf) != NBD_REQUEST_MAGIC) {
        return false;
    }
    req->flags = nbd_get_u16(buf + 4);
    req->type = nbd_get_u16(buf + 6);
    req->cookie = nbd_get_u64(buf + 8);
    req->offset = nbd_get_u64(buf + 16);
    req->len = nbd_get_u32(buf + 24);
    return true;
}

void nbd_encode_simple_reply(uint8_t *buf, uint32_t nbd_error,
                             uint64_t cookie)
{
    nbd_put_u32(buf, NBD_SIMPLE_REPLY_MAGIC);
    nbd_put_u32(buf + 4, nbd_error);
    nbd_put_u64(buf + 8, cookie);
}

void nbd_encode_structured_reply(uint8_t *buf, uint16_t flags,
                                 uint16_t type, uint64_t cookie,
                                 uint32_t length)
{
    nbd_put_u32(buf, NBD_STRUCTURED_REPLY_MAGIC);
    nbd_put_u16(buf + 4, flags);
    nbd_put_u16(buf + 6, type);
    nbd_put_u64(buf + 8, cookie);
    nbd_put_u32(buf + 16, length);
}

bool nbd_decode_reply(const uint8_t *buf, size_t avail, NBDReply *reply,
                      size_t *needed)
{
    uint32_t magic = nbd_get_u32(buf);

    memset(reply, 0, sizeof(*reply));
    if (magic == NBD_SIMPLE_REPLY_MAGIC) {
        *needed = NBD_SIMPLE_REPLY_SIZE;
        if (avail >= NBD_SIMPLE_REPLY_SIZE) {
            reply->error = nbd_get_u32(buf + 4);
            reply->cookie = nbd_get_u64(buf + 8);
        }
        return true;
    }
    if (magic == NBD_STRUCTURED_REPLY_MAGIC) {
        *needed = NBD_STRUCTURED_REPLY_SIZE;
        reply->structured = true;
        if (avail >= NBD_STRUCTURED_REPLY_SIZE) {
            reply->flags = nbd_get_u16(buf + 4);
            reply->type = nbd_get_u16(buf + 6);
            reply->cookie = nbd_get_u64(buf + 8);
            reply->length = nbd_get_u32(buf + 16);
        }
        return true;
    }
    *needed = 0;
    return false;
}

void nbd_encode_option(uint8_t *buf, uint32_t option, uint32_t length)
{
    nbd_put_u64(buf, NBD_OPTS_MAGIC);
    nbd_put_u32(buf + 8, option);
    nbd_put_u32(buf + 12, length);
}

void nbd_encode_option_reply(uint8_t *buf, uint32_t option, uint32_t type,
                             uint32_t length)
{
    nbd_put_u64(buf, NBD_REP_MAGIC);
    nbd_put_u32(buf + 8, option);
    nbd_put_u32(buf + 12, type);
    nbd_put_u32(buf + 16, length);
}

uint32_t nbd_errno_to_wire(int err)
{
    if (err < 0) {
        err = -err;
    }
    switch (err) {
    case 0:
        return NBD_SUCCESS;
    case EPERM:
    case EROFS:
        return NBD_EPERM;
    case EIO:
        return NBD_EIO;
    case ENOMEM:
        return NBD_ENOMEM;
    case EDQUOT:
    case EFBIG:
    case ENOSPC:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    case EINVAL:
    default:
        return NBD_EINVAL;
    }
}

int nbd_wire_to_errno(uint32_t nbd_error)
{
    switch (nbd_error) {
    case NBD_SUCCESS:
        return 0;
    case NBD_EPERM:
        return EPERM;
    case NBD_EIO:
        return EIO;
    case NBD_ENOMEM:
        return ENOMEM;
    case NBD_ENOSPC:
        return ENOSPC;
    case NBD_EOVERFLOW:
        return EOVERFLOW;
    case NBD_ENOTSUP:
        return ENOTSUP;
    case NBD_ESHUTDOWN:
        return ESHUTDOWN;
    case NBD_EINVAL:
    default:
        return EINVAL;
    }
}

const char *nbd_opt_name(uint32_t opt)
{
    switch (opt) {
    case NBD_OPT_EXPORT_NAME:       return "NBD_OPT_EXPORT_NAME";
    case NBD_OPT_ABORT:             return "NBD_OPT_ABORT";
    case NBD_OPT_LIST:              return "NBD_OPT_LIST";
    case NBD_OPT_PEEK_EXPORT:       return "NBD_OPT_PEEK_EXPORT";
    case NBD_OPT_STARTTLS:          return "NBD_OPT_STARTTLS";
    case NBD_OPT_INFO:              return "NBD_OPT_INFO";
    case NBD_OPT_GO:                return "NBD_OPT_GO";
    case NBD_OPT_STRUCTURED_REPLY:  return "NBD_OPT_STRUCTURED_REPLY";
    case NBD_OPT_LIST_META_CONTEXT: return "NBD_OPT_LIST_META_CONTEXT";
    case NBD_OPT_SET_META_CONTEXT:  return "NBD_OPT_SET_META_CONTEXT";
    case NBD_OPT_EXTENDED_HEADERS:  return "NBD_OPT_EXTENDED_HEADERS";
    default:                        return "unknown";
    }
}

const char *nbd_rep_name(uint32_t rep)
{
    switch (rep) {
    case NBD_REP_ACK:                 return "NBD_REP_ACK";
    case NBD_REP_SERVER:              return "NBD_REP_SERVER";
    case NBD_REP_INFO:                return "NBD_REP_INFO";
    case NBD_REP_META_CONTEXT:        return "NBD_REP_META_CONTEXT";
    case NBD_REP_ERR_UNSUP:           return "NBD_REP_ERR_UNSUP";
    case NBD_REP_ERR_POLICY:          return "NBD_REP_ERR_POLICY";
    case NBD_REP_ERR_INVALID:         return "NBD_REP_ERR_INVALID";
    case NBD_REP_ERR_PLATFORM:        return "NBD_REP_ERR_PLATFORM";
    case NBD_REP_ERR_TLS_REQD:        return "NBD_REP_ERR_TLS_REQD";
    case NBD_REP_ERR_UNKNOWN:         return "NBD_REP_ERR_UNKNOWN";
    case NBD_REP_ERR_SHUTDOWN:        return "NBD_REP_ERR_SHUTDOWN";
    case NBD_REP_ERR_BLOCK_SIZE_REQD: return "NBD_REP_ERR_BLOCK_SIZE_REQD";
    case NBD_REP_ERR_TOO_BIG:         return "NBD_REP_ERR_TOO_BIG";
    case NBD_REP_ERR_EXT_HEADER_REQD: return "NBD_REP_ERR_EXT_HEADER_REQD";
    default:                          return "unknown";
    }
}

const char *nbd_cmd_name(uint16_t cmd)
{
    switch (cmd) {
    case NBD_CMD_READ:         return "NBD_CMD_READ";
    case NBD_CMD_WRITE:        return "NBD_CMD_WRITE";
    case NBD_CMD_DISC:         return "NBD_CMD_DISC";
    case NBD_CMD_FLUSH:        return "NBD_CMD_FLUSH";
    case NBD_CMD_TRIM:         return "NBD_CMD_TRIM";
    case NBD_CMD_CACHE:        return "NBD_CMD_CACHE";
    case NBD_CMD_WRITE_ZEROES: return "NBD_CMD_WRITE_ZEROES";
    case NBD_CMD_BLOCK_STATUS: return "NBD_CMD_BLOCK_STATUS";
    case NBD_CMD_RESIZE:       return "NBD_CMD_RESIZE";
    default:                   return "unknown";
    }
}

const char *nbd_reply_type_name(uint16_t type)
{
    switch (type) {
    case NBD_REPLY_TYPE_NONE:         return "NBD_REPLY_TYPE_NONE";
    case NBD_REPLY_TYPE_OFFSET_DATA:  return "NBD_REPLY_TYPE_OFFSET_DATA";
    case NBD_REPLY_TYPE_OFFSET_HOLE:  return "NBD_REPLY_TYPE_OFFSET_HOLE";
    case NBD_REPLY_TYPE_BLOCK_STATUS: return "NBD_REPLY_TYPE_BLOCK_STATUS";
    case NBD_REPLY_TYPE_ERROR:        return "NBD_REPLY_TYPE_ERROR";
    case NBD_REPLY_TYPE_ERROR_OFFSET: return "NBD_REPLY_TYPE_ERROR_OFFSET";
    default:                          return "unknown";
    }
}

const char *nbd_err_name(uint32_t nbd_error)
{
    switch (nbd_error) {
    case NBD_SUCCESS:   return "success";
    case NBD_EPERM:     return "EPERM";
    case NBD_EIO:       return "EIO";
    case NBD_ENOMEM:    return "ENOMEM";
    case NBD_EINVAL:    return "EINVAL";
    case NBD_ENOSPC:    return "ENOSPC";
    case NBD_EOVERFLOW: return "EOVERFLOW";
    case NBD_ENOTSUP:   return "ENOTSUP";
    case NBD_ESHUTDOWN: return "ESHUTDOWN";
    default:            return "unknown";
    }
}
