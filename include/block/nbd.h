/*
 * NBD protocol: the wire constants, message layouts and small encode /
 * decode helpers shared by the server (nbd/server.c) and the client
 * driver (block/nbd.c).  Written from the NBD protocol specification
 * (proto.md of the NBD project); names follow the specification's
 * NBD_* names so that code and spec read alike.
 *
 * STATUS: FINAL (nbds, 03:55 UTC).  The constants and helpers below are
 * stable; additions only, nothing renamed or removed.
 *
 * All multi-byte wire fields are big-endian.  The helpers take and return
 * host-order values and never touch sockets: each side does its own I/O
 * in its own AioContext.
 */
#ifndef BLOCK_NBD_H
#define BLOCK_NBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- Handshake ---- */

#define NBD_INIT_MAGIC          0x4e42444d41474943ULL /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC          0x49484156454f5054ULL /* "IHAVEOPT" */
#define NBD_CLISERV_MAGIC       0x0000420281861253ULL /* oldstyle */
#define NBD_REP_MAGIC           0x0003e889045565a9ULL /* option replies */

/* Handshake flags (server, u16 after the two magics). */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES      (1u << 1)
/* Client flags (u32 reply to the handshake flags). */
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* Options (client → server: magic u64, option u32, length u32, data). */
#define NBD_OPT_EXPORT_NAME       1
#define NBD_OPT_ABORT             2
#define NBD_OPT_LIST              3
#define NBD_OPT_PEEK_EXPORT       4   /* withdrawn */
#define NBD_OPT_STARTTLS          5
#define NBD_OPT_INFO              6
#define NBD_OPT_GO                7
#define NBD_OPT_STRUCTURED_REPLY  8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT  10
#define NBD_OPT_EXTENDED_HEADERS  11

/* Option reply types (magic u64, option u32, type u32, length u32). */
#define NBD_REP_ACK             1
#define NBD_REP_SERVER          2
#define NBD_REP_INFO            3
#define NBD_REP_META_CONTEXT    4
#define NBD_REP_FLAG_ERROR      (1u << 31)
#define NBD_REP_ERR_UNSUP       (NBD_REP_FLAG_ERROR | 1)
#define NBD_REP_ERR_POLICY      (NBD_REP_FLAG_ERROR | 2)
#define NBD_REP_ERR_INVALID     (NBD_REP_FLAG_ERROR | 3)
#define NBD_REP_ERR_PLATFORM    (NBD_REP_FLAG_ERROR | 4)
#define NBD_REP_ERR_TLS_REQD    (NBD_REP_FLAG_ERROR | 5)
#define NBD_REP_ERR_UNKNOWN     (NBD_REP_FLAG_ERROR | 6)
#define NBD_REP_ERR_SHUTDOWN    (NBD_REP_FLAG_ERROR | 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_FLAG_ERROR | 8)
#define NBD_REP_ERR_TOO_BIG     (NBD_REP_FLAG_ERROR | 9)
#define NBD_REP_ERR_EXT_HEADER_REQD (NBD_REP_FLAG_ERROR | 10)

/* NBD_REP_INFO payload starts with a u16 info type. */
#define NBD_INFO_EXPORT         0   /* u64 size, u16 transmission flags */
#define NBD_INFO_NAME           1   /* name (rest of payload) */
#define NBD_INFO_DESCRIPTION    2   /* description (rest of payload) */
#define NBD_INFO_BLOCK_SIZE     3   /* u32 minimum, preferred, maximum */

/* Transmission flags (u16, per export). */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)
#define NBD_FLAG_READ_ONLY         (1u << 1)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_ROTATIONAL        (1u << 4)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF           (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8)
#define NBD_FLAG_SEND_RESIZE       (1u << 9)
#define NBD_FLAG_SEND_CACHE        (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO    (1u << 11)

/* Size of the zero padding after an NBD_OPT_EXPORT_NAME reply (u64 size,
 * u16 flags, 124 zero bytes unless NO_ZEROES was negotiated). */
#define NBD_EXPORT_NAME_PAD     124

/* The only meta context we implement. */
#define NBD_META_NS_BASE        "base:"
#define NBD_META_BASE_ALLOCATION "base:allocation"
/* base:allocation status flags in block status descriptors. */
#define NBD_STATE_HOLE          (1u << 0)
#define NBD_STATE_ZERO          (1u << 1)

/* Limits: longest export name / description / option payload we accept,
 * and the largest payload of one request (read or write). */
#define NBD_MAX_STRING_SIZE     4096
#define NBD_MAX_OPTION_SIZE     (64 * 1024)
#define NBD_MAX_BUFFER_SIZE     (32 * 1024 * 1024)

/* ---- Transmission ---- */

#define NBD_REQUEST_MAGIC       0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC  0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

/* Commands (u16 type of a request). */
#define NBD_CMD_READ            0
#define NBD_CMD_WRITE           1
#define NBD_CMD_DISC            2
#define NBD_CMD_FLUSH           3
#define NBD_CMD_TRIM            4
#define NBD_CMD_CACHE           5
#define NBD_CMD_WRITE_ZEROES    6
#define NBD_CMD_BLOCK_STATUS    7
#define NBD_CMD_RESIZE          8

/* Command flags (u16 flags of a request). */
#define NBD_CMD_FLAG_FUA        (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE    (1u << 1)
#define NBD_CMD_FLAG_DF         (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE    (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO  (1u << 4)

/* Structured reply chunk flags and types. */
#define NBD_REPLY_FLAG_DONE     (1u << 0)
#define NBD_REPLY_TYPE_NONE         0
#define NBD_REPLY_TYPE_OFFSET_DATA  1   /* u64 offset, data */
#define NBD_REPLY_TYPE_OFFSET_HOLE  2   /* u64 offset, u32 hole size */
#define NBD_REPLY_TYPE_BLOCK_STATUS 5   /* u32 context id, {u32 len, u32 flags}* */
#define NBD_REPLY_TYPE_ERROR        ((1u << 15) | 1) /* u32 err, u16 len, msg */
#define NBD_REPLY_TYPE_ERROR_OFFSET ((1u << 15) | 2) /* ... then u64 offset */
#define NBD_REPLY_TYPE_IS_ERR(t)    (((t) & (1u << 15)) != 0)

/* Error values on the wire (not the host's errno numbers). */
#define NBD_SUCCESS     0
#define NBD_EPERM       1
#define NBD_EIO         5
#define NBD_ENOMEM      12
#define NBD_EINVAL      22
#define NBD_ENOSPC      28
#define NBD_EOVERFLOW   75
#define NBD_ENOTSUP     95
#define NBD_ESHUTDOWN   108

/* Wire sizes of the fixed headers. */
#define NBD_OPTION_HEADER_SIZE       16  /* magic, option, length */
#define NBD_OPTION_REPLY_HEADER_SIZE 20  /* magic, option, type, length */
#define NBD_REQUEST_SIZE             28  /* magic, flags, type, cookie,
                                            offset, length */
#define NBD_SIMPLE_REPLY_SIZE        16  /* magic, error, cookie */
#define NBD_STRUCTURED_REPLY_SIZE    20  /* magic, flags, type, cookie,
                                            length */

/* A decoded request (host order). */
typedef struct NBDRequest {
    uint16_t flags;     /* NBD_CMD_FLAG_* */
    uint16_t type;      /* NBD_CMD_* */
    uint64_t cookie;    /* "handle": opaque, echoed in replies */
    uint64_t offset;
    uint32_t len;
} NBDRequest;

/* A decoded simple or structured reply header (host order). */
typedef struct NBDReply {
    bool structured;
    uint16_t flags;     /* structured: NBD_REPLY_FLAG_* */
    uint16_t type;      /* structured: NBD_REPLY_TYPE_* */
    uint32_t error;     /* simple: NBD_E* */
    uint64_t cookie;
    uint32_t length;    /* structured: payload length */
} NBDReply;

/* ---- Big-endian helpers (unaligned-safe) ---- */

static inline void nbd_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = v >> 8;
    p[1] = v;
}

static inline void nbd_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

static inline void nbd_put_u64(uint8_t *p, uint64_t v)
{
    nbd_put_u32(p, v >> 32);
    nbd_put_u32(p + 4, (uint32_t)v);
}

static inline uint16_t nbd_get_u16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t nbd_get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t nbd_get_u64(const uint8_t *p)
{
    return ((uint64_t)nbd_get_u32(p) << 32) | nbd_get_u32(p + 4);
}

/* ---- nbd/common.c ---- */

/* Encodes req into buf[NBD_REQUEST_SIZE]. */
void nbd_encode_request(uint8_t *buf, const NBDRequest *req);
/* Decodes buf[NBD_REQUEST_SIZE]; false if the magic is wrong. */
bool nbd_decode_request(const uint8_t *buf, NBDRequest *req);

/* Encodes a simple reply header into buf[NBD_SIMPLE_REPLY_SIZE]. */
void nbd_encode_simple_reply(uint8_t *buf, uint32_t nbd_error,
                             uint64_t cookie);
/* Encodes a structured reply chunk header into
 * buf[NBD_STRUCTURED_REPLY_SIZE]. */
void nbd_encode_structured_reply(uint8_t *buf, uint16_t flags,
                                 uint16_t type, uint64_t cookie,
                                 uint32_t length);
/*
 * Decodes the first 4 bytes (magic) of a reply and the rest of its
 * header.  buf holds at least NBD_SIMPLE_REPLY_SIZE bytes; for a
 * structured reply (*needed set to NBD_STRUCTURED_REPLY_SIZE) the caller
 * reads 4 more bytes and calls again with the full header.  Returns false
 * on an unknown magic.  *needed is the header size for that magic.
 */
bool nbd_decode_reply(const uint8_t *buf, size_t avail, NBDReply *reply,
                      size_t *needed);

/* Encodes an option header (client side) into buf[NBD_OPTION_HEADER_SIZE]. */
void nbd_encode_option(uint8_t *buf, uint32_t option, uint32_t length);
/* Encodes an option reply header into buf[NBD_OPTION_REPLY_HEADER_SIZE]. */
void nbd_encode_option_reply(uint8_t *buf, uint32_t option, uint32_t type,
                             uint32_t length);

/* Host errno (positive or negative) → NBD wire error; unknown values map
 * to NBD_EINVAL except EIO-like ones (QEMU maps unknowns to EINVAL too). */
uint32_t nbd_errno_to_wire(int err);
/* NBD wire error → positive host errno; unknown values map to EINVAL. */
int nbd_wire_to_errno(uint32_t nbd_error);

/* Names for messages and traces ("NBD_OPT_GO"; "unknown" otherwise). */
const char *nbd_opt_name(uint32_t opt);
const char *nbd_rep_name(uint32_t rep);
const char *nbd_cmd_name(uint16_t cmd);
const char *nbd_reply_type_name(uint16_t type);
const char *nbd_err_name(uint32_t nbd_error);

/* ---- nbd/server.c: server limits ---- */

/* A client that has not finished the handshake (NBD_OPT_GO or
 * NBD_OPT_EXPORT_NAME) after this many seconds is dropped by default. */
#define NBD_DEFAULT_HANDSHAKE_MAX_SECS 10

typedef struct Error Error;
typedef struct SocketAddress SocketAddress;

/*
 * nbd_server_start() (include/block/export.h) with every limit given:
 * max_connections (0: unlimited) and handshake_max_secs (0: a client may
 * negotiate forever).  Main thread; fails if a server is running.
 */
bool nbd_server_start_with_limits(const SocketAddress *addr,
                                  uint32_t max_connections,
                                  uint32_t handshake_max_secs, Error **errp);

#endif
