/*
 * The request path: every read, write, write-zeroes, discard, flush,
 * truncate and block-status request of every node goes through here, so
 * validation, alignment padding, request tracking and serialisation, the
 * write hooks (backup), detect-zeroes and accounting each live in exactly
 * one place.  Drivers then only see requests that satisfy the contract in
 * block_int.h.
 *
 * Order of a write: validate -> account start -> track -> serialise (wait
 * for overlapping serialising requests) -> detect-zeroes -> write hooks ->
 * pad (read-modify-write) -> split by max_transfer -> driver -> account
 * done/failed -> untrack.
 *
 * Everything runs in the node's AioContext thread; coroutine_fn functions
 * in coroutine context.
 */
#include <errno.h>
#include <string.h>

#include "block/block-backend.h"
#include "block/block_int.h"

/* ---- Validation ---- */

/* Range check of every request: -EINVAL for nonsense, -EIO past the end
 * (QEMU's choice), -ENOMEDIUM without a driver. */
static int check_request(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    if (offset < 0 || bytes < 0 || bytes > INT64_MAX - offset) {
        return -EINVAL;
    }
    if (bs->total_bytes < 0) {
        return (int)bs->total_bytes;
    }
    if (offset > bs->total_bytes || bs->total_bytes - offset < bytes) {
        return -EIO;
    }
    return 0;
}

static inline int64_t align_down(int64_t v, int64_t align)
{
    return v & ~(align - 1);
}

static inline int64_t align_up(int64_t v, int64_t align)
{
    return align_down(v + (align - 1), align);
}

/* ---- Tracked requests ---- */

static void tracked_begin(BdrvTrackedRequest *req, BlockDriverState *bs,
                          int64_t offset, int64_t bytes,
                          BdrvTrackedReqType type, BdrvRequestFlags flags,
                          QIOVector *qiov)
{
    *req = (BdrvTrackedRequest) {
        .bs = bs,
        .offset = offset,
        .bytes = bytes,
        .type = type,
        .flags = flags,
        .qiov = qiov,
        .overlap_offset = offset,
        .overlap_bytes = bytes,
        .co = coroutine_self(),
        .next = bs->tracked,
    };
    co_queue_init(&req->wait_queue);
    if (bs->tracked) {
        bs->tracked->prev = req;
    }
    bs->tracked = req;
}

static void tracked_end(BdrvTrackedRequest *req)
{
    BlockDriverState *bs = req->bs;

    if (req->serialising) {
        bs->serialising_in_flight--;
    }
    if (req->prev) {
        req->prev->next = req->next;
    } else {
        bs->tracked = req->next;
    }
    if (req->next) {
        req->next->prev = req->prev;
    }
    co_queue_restart_all(&req->wait_queue);
}

/* Widens the request's overlap range to align and makes it serialising. */
static void tracked_set_serialising(BdrvTrackedRequest *req, int64_t align)
{
    int64_t start = align_down(req->offset, align);
    int64_t end = align_up(req->offset + req->bytes, align);

    if (!req->serialising) {
        req->serialising = true;
        req->bs->serialising_in_flight++;
    }
    start = MIN(start, req->overlap_offset);
    end = MAX(end, req->overlap_offset + req->overlap_bytes);
    req->overlap_offset = start;
    req->overlap_bytes = end - start;
}

static bool ranges_overlap(int64_t off1, int64_t len1, int64_t off2,
                           int64_t len2)
{
    return off1 < off2 + len2 && off2 < off1 + len1;
}

/* A request self must wait for, or NULL.  A request that already waits
 * (directly or not) for self is skipped: waiting for it would deadlock,
 * and it will wait for self when it wakes up. */
static BdrvTrackedRequest *find_conflict(BdrvTrackedRequest *self)
{
    for (BdrvTrackedRequest *r = self->bs->tracked; r; r = r->next) {
        if (r == self || (!r->serialising && !self->serialising)) {
            continue;
        }
        if (!ranges_overlap(self->overlap_offset, self->overlap_bytes,
                            r->overlap_offset, r->overlap_bytes)) {
            continue;
        }
        if (!r->waiting_for) {
            return r;
        }
    }
    return NULL;
}

static void coroutine_fn wait_serialising(BdrvTrackedRequest *self)
{
    BdrvTrackedRequest *r;

    if (!self->bs->serialising_in_flight) {
        return;
    }
    while ((r = find_conflict(self)) != NULL) {
        self->waiting_for = r;
        co_queue_wait(&r->wait_queue, NULL);
        self->waiting_for = NULL;
    }
}

void coroutine_fn bdrv_co_wait_for_overlapping(BlockDriverState *bs,
                                               int64_t offset, int64_t bytes)
{
    BdrvTrackedRequest *r;

    for (;;) {
        for (r = bs->tracked; r; r = r->next) {
            if (ranges_overlap(offset, bytes, r->overlap_offset,
                               r->overlap_bytes)) {
                break;
            }
        }
        if (!r) {
            return;
        }
        co_queue_wait(&r->wait_queue, NULL);
    }
}

BlockDriverState *bdrv_req_bs(const BdrvTrackedRequest *req)
{
    return req->bs;
}

int64_t bdrv_req_offset(const BdrvTrackedRequest *req)
{
    return req->offset;
}

int64_t bdrv_req_bytes(const BdrvTrackedRequest *req)
{
    return req->bytes;
}

BdrvTrackedReqType bdrv_req_type(const BdrvTrackedRequest *req)
{
    return req->type;
}

BdrvRequestFlags bdrv_req_flags(const BdrvTrackedRequest *req)
{
    return req->flags;
}

QIOVector *bdrv_req_qiov(const BdrvTrackedRequest *req)
{
    return req->qiov;
}

/* ---- Write hooks ---- */

void bdrv_add_write_hook(BlockDriverState *bs, BdrvWriteHook *hook)
{
    BdrvWriteHook **p = &bs->write_hooks;

    while (*p) {
        p = &(*p)->next;
    }
    hook->next = NULL;
    *p = hook;
}

void bdrv_remove_write_hook(BlockDriverState *bs, BdrvWriteHook *hook)
{
    for (BdrvWriteHook **p = &bs->write_hooks; *p; p = &(*p)->next) {
        if (*p == hook) {
            *p = hook->next;
            hook->next = NULL;
            return;
        }
    }
}

static int coroutine_fn run_write_hooks(BdrvTrackedRequest *req)
{
    if (req->flags & BDRV_REQ_NO_HOOKS) {
        return 0;
    }
    for (BdrvWriteHook *h = req->bs->write_hooks; h; h = h->next) {
        int ret = h->fn(h, req);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* ---- Driver calls (aligned requests, split by max_transfer) ---- */

static int64_t max_transfer(BlockDriverState *bs)
{
    int64_t mt = bs->bl.max_transfer;
    int64_t cap = align_down(BDRV_REQUEST_MAX_BYTES, bs->bl.request_alignment);

    return mt ? MIN(mt, cap) : cap;
}

/* Calls the driver's read or write on [offset, offset+bytes), in pieces of
 * at most max_transfer bytes. */
static int coroutine_fn driver_rw(BlockDriverState *bs, bool write,
                                  int64_t offset, int64_t bytes,
                                  QIOVector *qiov, BdrvRequestFlags flags)
{
    int64_t mt = max_transfer(bs);
    int64_t done = 0;

    if (!write && !bs->drv->co_preadv) {
        return -ENOTSUP;
    }
    if (write && !bs->drv->co_pwritev) {
        return -ENOTSUP;
    }
    while (done < bytes) {
        int64_t n = MIN(bytes - done, mt);
        QIOVector piece, *v = qiov;
        int ret;

        if (n != bytes) {
            qiov_init(&piece, qiov->niov);
            qiov_concat(&piece, qiov, done, n);
            v = &piece;
        }
        ret = write ? bs->drv->co_pwritev(bs, offset + done, n, v, flags)
                    : bs->drv->co_preadv(bs, offset + done, n, v, flags);
        if (v == &piece) {
            qiov_destroy(&piece);
        }
        if (ret < 0) {
            return ret;
        }
        done += n;
    }
    return 0;
}

static int coroutine_fn driver_flush(BlockDriverState *bs)
{
    if (bs->cache_no_flush || !bs->drv->co_flush) {
        return 0;
    }
    return bs->drv->co_flush(bs);
}

static int coroutine_fn driver_pwritev(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, QIOVector *qiov,
                                       BdrvRequestFlags flags)
{
    bool emulate_fua = (flags & BDRV_REQ_FUA) &&
                       !(bs->supported_write_flags & BDRV_REQ_FUA);
    int ret = driver_rw(bs, true, offset, bytes, qiov,
                        flags & bs->supported_write_flags);

    if (ret == 0 && emulate_fua) {
        ret = driver_flush(bs);
    }
    return ret;
}

/* Writes zeroes with a buffer, for drivers without a cheap way. */
static int coroutine_fn zero_fallback(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, BdrvRequestFlags flags)
{
    int64_t chunk = MIN(bytes, MIN(max_transfer(bs), 1 << 20));
    void *buf = bdrv_blockalign(bs, chunk);
    int ret = 0;

    memset(buf, 0, chunk);
    while (bytes > 0 && ret == 0) {
        int64_t n = MIN(bytes, chunk);
        QIOVector qiov;

        qiov_init_buf(&qiov, buf, n);
        ret = driver_pwritev(bs, offset, n, &qiov, flags & BDRV_REQ_FUA);
        offset += n;
        bytes -= n;
    }
    bdrv_vfree(buf);
    return ret;
}

static int coroutine_fn driver_pwrite_zeroes(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             BdrvRequestFlags flags)
{
    int64_t max = bs->bl.max_pwrite_zeroes ? bs->bl.max_pwrite_zeroes
                                           : BDRV_REQUEST_MAX_BYTES;
    BdrvRequestFlags drv_flags = flags & bs->supported_zero_flags;
    int ret = 0;

    max = MAX(align_down(max, bs->bl.request_alignment),
              bs->bl.request_alignment);
    while (bytes > 0 && ret == 0) {
        int64_t n = MIN(bytes, max);

        ret = -ENOTSUP;
        if (bs->drv->co_pwrite_zeroes) {
            ret = bs->drv->co_pwrite_zeroes(bs, offset, n, drv_flags);
        }
        if (ret == -ENOTSUP && !(flags & BDRV_REQ_NO_FALLBACK)) {
            ret = zero_fallback(bs, offset, n, flags);
        } else if (ret == 0 && (flags & BDRV_REQ_FUA) &&
                   !(drv_flags & BDRV_REQ_FUA)) {
            ret = driver_flush(bs);
        }
        offset += n;
        bytes -= n;
    }
    return ret;
}

/* ---- Padding for request_alignment (read-modify-write) ---- */

/* The aligned request covering an unaligned one: head/tail pads come from
 * one bounce buffer (two blocks, or one when the request fits in one). */
typedef struct Padding {
    int64_t offset, bytes;       /* the aligned range */
    int64_t head, tail;          /* pad bytes before/after the request */
    uint8_t *buf;                /* head block, then tail block */
    int64_t head_len, tail_len;  /* bytes of each block (<= align) */
    bool one_block;              /* head and tail in the same block */
    QIOVector qiov;              /* head pad + caller's data + tail pad */
} Padding;

static bool padding_needed(BlockDriverState *bs, int64_t offset,
                           int64_t bytes)
{
    int64_t align = bs->bl.request_alignment;
    int64_t end = offset + bytes;

    return (offset & (align - 1)) ||
           ((end & (align - 1)) && end != bs->total_bytes);
}

static void padding_init(BlockDriverState *bs, Padding *p, int64_t offset,
                         int64_t bytes)
{
    int64_t align = bs->bl.request_alignment;
    int64_t end = offset + bytes;
    int64_t aend = MIN(align_up(end, align), bs->total_bytes);

    memset(p, 0, sizeof(*p));
    p->offset = align_down(offset, align);
    p->bytes = aend - p->offset;
    p->head = offset - p->offset;
    p->tail = aend - end;
    p->one_block = align_down(end - 1, align) == p->offset;
    p->head_len = MIN(align, aend - p->offset);
    p->tail_len = aend - align_down(end - 1, align);
    p->buf = bdrv_blockalign(bs, 2 * align);
}

static uint8_t *padding_tail_block(Padding *p, int64_t align)
{
    return p->one_block ? p->buf : p->buf + align;
}

/* Reads the blocks the pads live in (for writes: their old data). */
static int coroutine_fn padding_read(BlockDriverState *bs, Padding *p)
{
    int64_t align = bs->bl.request_alignment;
    QIOVector v;
    int ret = 0;

    if (p->head) {
        qiov_init_buf(&v, p->buf, p->head_len);
        ret = driver_rw(bs, false, p->offset, p->head_len, &v, 0);
    }
    if (ret == 0 && p->tail && !(p->one_block && p->head)) {
        qiov_init_buf(&v, padding_tail_block(p, align), p->tail_len);
        ret = driver_rw(bs, false, p->offset + p->bytes - p->tail_len,
                        p->tail_len, &v, 0);
    }
    return ret;
}

/* Builds the aligned vector around data (or around zeroes when data is
 * NULL: zero writes are padded into a plain data write). */
static void padding_build(BlockDriverState *bs, Padding *p, QIOVector *data,
                          int64_t bytes)
{
    int64_t align = bs->bl.request_alignment;
    uint8_t *tail_block = padding_tail_block(p, align);

    qiov_init(&p->qiov, (data ? data->niov : 1) + 2);
    qiov_add(&p->qiov, p->buf, p->head);
    if (data) {
        qiov_concat(&p->qiov, data, 0, bytes);
    } else {
        /* Zero the request's bytes inside the bounce blocks. */
        memset(p->buf + p->head, 0, MIN(bytes, p->head_len - p->head));
        if (!p->one_block) {
            memset(tail_block, 0, p->tail_len - p->tail);
        }
        qiov_add(&p->qiov, p->buf + p->head,
                 MIN(bytes, p->head_len - p->head));
        if (!p->one_block) {
            qiov_add(&p->qiov, tail_block, p->tail_len - p->tail);
        }
    }
    qiov_add(&p->qiov, tail_block + p->tail_len - p->tail, p->tail);
}

static void padding_destroy(Padding *p)
{
    qiov_destroy(&p->qiov);
    bdrv_vfree(p->buf);
}

/* ---- Reads ---- */

static int coroutine_fn do_preadv(BdrvTrackedRequest *req)
{
    BlockDriverState *bs = req->bs;
    Padding pad;
    int ret;

    if (!padding_needed(bs, req->offset, req->bytes)) {
        return driver_rw(bs, false, req->offset, req->bytes, req->qiov, 0);
    }
    padding_init(bs, &pad, req->offset, req->bytes);
    padding_build(bs, &pad, req->qiov, req->bytes);
    ret = driver_rw(bs, false, pad.offset, pad.bytes, &pad.qiov, 0);
    padding_destroy(&pad);
    return ret;
}

int coroutine_fn bdrv_co_preadv(BlockDriverState *bs, int64_t offset,
                                int64_t bytes, QIOVector *qiov,
                                BdrvRequestFlags flags)
{
    BdrvTrackedRequest req;
    BlockAcctCookie cookie;
    int ret = check_request(bs, offset, bytes);

    if (ret < 0) {
        block_acct_invalid(&bs->stats, BLOCK_ACCT_READ);
        return ret;
    }
    g_assert(qiov->size == (size_t)bytes);
    if (bytes == 0) {
        return 0;
    }
    bs->in_flight++;
    block_acct_start(&bs->stats, &cookie, bytes, BLOCK_ACCT_READ);
    tracked_begin(&req, bs, offset, bytes, BDRV_TRACKED_READ, flags, qiov);
    g_assert(!((flags & BDRV_REQ_SERIALISING) &&
               (flags & BDRV_REQ_NO_SERIALISING)));
    if (flags & BDRV_REQ_SERIALISING) {
        tracked_set_serialising(&req, bs->bl.request_alignment);
    }
    if (!(flags & BDRV_REQ_NO_SERIALISING)) {
        wait_serialising(&req);
    }
    ret = do_preadv(&req);
    if (ret < 0) {
        block_acct_failed(&bs->stats, &cookie);
    } else {
        block_acct_done(&bs->stats, &cookie);
    }
    tracked_end(&req);
    bs->in_flight--;
    return ret;
}

/* ---- Writes ---- */

/* Writes the whole request (data, or zeroes with ZERO_WRITE) to the
 * driver, padding it first if it is not aligned. */
static int coroutine_fn do_pwritev(BdrvTrackedRequest *req,
                                   BdrvRequestFlags flags)
{
    BlockDriverState *bs = req->bs;
    bool zero = flags & BDRV_REQ_ZERO_WRITE;
    Padding pad;
    int ret;

    if (!padding_needed(bs, req->offset, req->bytes)) {
        if (zero) {
            return driver_pwrite_zeroes(bs, req->offset, req->bytes, flags);
        }
        return driver_pwritev(bs, req->offset, req->bytes, req->qiov, flags);
    }
    padding_init(bs, &pad, req->offset, req->bytes);
    ret = padding_read(bs, &pad);
    if (ret < 0) {
        padding_destroy(&pad);
        return ret;
    }
    if (!zero) {
        padding_build(bs, &pad, req->qiov, req->bytes);
        ret = driver_pwritev(bs, pad.offset, pad.bytes, &pad.qiov, flags);
    } else {
        /* Head and tail blocks as data, the aligned middle as zeroes. */
        int64_t mid_start = pad.offset + pad.head_len;
        int64_t mid_end = pad.offset + pad.bytes -
                          (pad.one_block ? 0 : pad.tail_len);

        QIOVector part;

        padding_build(bs, &pad, NULL, req->bytes);
        qiov_init(&part, 2);
        qiov_concat(&part, &pad.qiov, 0, pad.head_len);
        ret = driver_pwritev(bs, pad.offset, pad.head_len, &part,
                             flags & BDRV_REQ_FUA);
        if (ret == 0 && !pad.one_block) {
            qiov_reset(&part);
            qiov_concat(&part, &pad.qiov, pad.head_len, pad.tail_len);
            ret = driver_pwritev(bs, mid_end, pad.tail_len, &part,
                                 flags & BDRV_REQ_FUA);
        }
        qiov_destroy(&part);
        if (ret == 0 && mid_end > mid_start) {
            ret = driver_pwrite_zeroes(bs, mid_start, mid_end - mid_start,
                                       flags);
        }
    }
    padding_destroy(&pad);
    return ret;
}

/* Turns a write of zeroes into write-zeroes when detect-zeroes says so. */
static BdrvRequestFlags detect_zeroes(BlockDriverState *bs, QIOVector *qiov,
                                      BdrvRequestFlags flags)
{
    if (bs->detect_zeroes == BLOCKDEV_DETECT_ZEROES_OPTIONS_OFF ||
        (flags & BDRV_REQ_ZERO_WRITE) || !qiov_is_zero(qiov)) {
        return flags;
    }
    flags |= BDRV_REQ_ZERO_WRITE;
    if (bs->detect_zeroes == BLOCKDEV_DETECT_ZEROES_OPTIONS_UNMAP) {
        flags |= BDRV_REQ_MAY_UNMAP;
    }
    return flags;
}

/* Common body of writes and write-zeroes (qiov NULL with ZERO_WRITE). */
static int coroutine_fn do_write_request(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes, QIOVector *qiov,
                                         BdrvRequestFlags flags)
{
    BdrvTrackedRequest req;
    BlockAcctCookie cookie;
    BlockAcctType type;
    int ret = check_request(bs, offset, bytes);

    type = (flags & BDRV_REQ_MAY_UNMAP) ? BLOCK_ACCT_UNMAP : BLOCK_ACCT_WRITE;
    if (ret == 0 && bs->read_only) {
        ret = -EPERM;
    }
    if (ret < 0) {
        block_acct_invalid(&bs->stats, type);
        return ret;
    }
    g_assert(!qiov || qiov->size == (size_t)bytes);
    if (bytes == 0) {
        return 0;
    }
    if (!bs->discard_unmap) {
        flags &= ~BDRV_REQ_MAY_UNMAP;
    }
    bs->in_flight++;
    block_acct_start(&bs->stats, &cookie, bytes, type);
    tracked_begin(&req, bs, offset, bytes, BDRV_TRACKED_WRITE, flags, qiov);
    if ((flags & BDRV_REQ_SERIALISING) ||
        padding_needed(bs, offset, bytes)) {
        tracked_set_serialising(&req, bs->bl.request_alignment);
    }
    wait_serialising(&req);
    if (qiov) {
        flags = detect_zeroes(bs, qiov, flags);
        if (!bs->discard_unmap) {
            flags &= ~BDRV_REQ_MAY_UNMAP;
        }
        req.flags = flags;
    }
    ret = run_write_hooks(&req);
    if (ret == 0) {
        ret = do_pwritev(&req, flags);
    }
    if (ret < 0) {
        block_acct_failed(&bs->stats, &cookie);
    } else {
        block_acct_highest_offset(&bs->stats, offset + bytes);
        block_acct_done(&bs->stats, &cookie);
    }
    tracked_end(&req);
    bs->in_flight--;
    return ret;
}

int coroutine_fn bdrv_co_pwritev(BlockDriverState *bs, int64_t offset,
                                 int64_t bytes, QIOVector *qiov,
                                 BdrvRequestFlags flags)
{
    g_assert(qiov);
    return do_write_request(bs, offset, bytes, qiov,
                            flags & ~BDRV_REQ_ZERO_WRITE);
}

int coroutine_fn bdrv_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, BdrvRequestFlags flags)
{
    return do_write_request(bs, offset, bytes, NULL,
                            flags | BDRV_REQ_ZERO_WRITE);
}

/* ---- Discard ---- */

static int coroutine_fn driver_pdiscard(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes)
{
    int64_t align = MAX((int64_t)bs->bl.pdiscard_alignment,
                        (int64_t)bs->bl.request_alignment);
    int64_t start = align_up(offset, align);
    int64_t end = offset + bytes;
    int64_t max = bs->bl.max_pdiscard ? bs->bl.max_pdiscard
                                      : BDRV_REQUEST_MAX_BYTES;

    if (!bs->drv->co_pdiscard) {
        return 0;
    }
    /* Discard is advisory: drop the unaligned ends (unless the range ends
     * at the end of the node, which the driver accepts). */
    if (end != bs->total_bytes) {
        end = align_down(end, align);
    }
    max = MAX(align_down(max, align), align);
    while (start < end) {
        int64_t n = MIN(end - start, max);
        int ret = bs->drv->co_pdiscard(bs, start, n);

        if (ret < 0 && ret != -ENOTSUP) {
            return ret;
        }
        start += n;
    }
    return 0;
}

int coroutine_fn bdrv_co_pdiscard(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes)
{
    BdrvTrackedRequest req;
    BlockAcctCookie cookie;
    int ret = check_request(bs, offset, bytes);

    if (ret == 0 && bs->read_only) {
        ret = -EPERM;
    }
    if (ret < 0) {
        block_acct_invalid(&bs->stats, BLOCK_ACCT_UNMAP);
        return ret;
    }
    if (bytes == 0 || !bs->discard_unmap) {
        return 0;
    }
    bs->in_flight++;
    block_acct_start(&bs->stats, &cookie, bytes, BLOCK_ACCT_UNMAP);
    tracked_begin(&req, bs, offset, bytes, BDRV_TRACKED_DISCARD, 0, NULL);
    wait_serialising(&req);
    ret = run_write_hooks(&req);
    if (ret == 0) {
        ret = driver_pdiscard(bs, offset, bytes);
    }
    if (ret < 0) {
        block_acct_failed(&bs->stats, &cookie);
    } else {
        block_acct_done(&bs->stats, &cookie);
    }
    tracked_end(&req);
    bs->in_flight--;
    return ret;
}

/* ---- Flush ---- */

int coroutine_fn bdrv_co_flush(BlockDriverState *bs)
{
    BlockAcctCookie cookie;
    int ret;

    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    bs->in_flight++;
    block_acct_start(&bs->stats, &cookie, 0, BLOCK_ACCT_FLUSH);
    ret = driver_flush(bs);
    /* Then the children: a format node's data is only stable once its
     * file is. */
    for (BdrvChild *c = bs->children; c && ret == 0; c = c->next) {
        if (!c->bs->read_only) {
            ret = bdrv_co_flush(c->bs);
        }
    }
    if (ret < 0) {
        block_acct_failed(&bs->stats, &cookie);
    } else {
        block_acct_done(&bs->stats, &cookie);
    }
    bs->in_flight--;
    return ret;
}

/* ---- Truncate ---- */

int coroutine_fn bdrv_co_truncate(BlockDriverState *bs, int64_t offset,
                                  bool exact, PreallocMode prealloc,
                                  Error **errp)
{
    BdrvTrackedRequest req;
    int64_t old = bs->total_bytes;
    int ret;

    if (!bs->drv) {
        error_setg(errp, "No medium inserted");
        return -ENOMEDIUM;
    }
    if (offset < 0) {
        error_setg(errp, "Image size cannot be negative");
        return -EINVAL;
    }
    if (bs->read_only) {
        error_setg(errp, "Image is read-only");
        return -EACCES;
    }
    if (!bs->drv->co_truncate) {
        error_setg(errp, "Image format driver does not support resize");
        return -ENOTSUP;
    }
    bs->in_flight++;
    /* Exclude every request from the changing tail for the duration. */
    tracked_begin(&req, bs, MIN(offset, MAX(old, 0)),
                  INT64_MAX - MIN(offset, MAX(old, 0)),
                  BDRV_TRACKED_TRUNCATE, 0, NULL);
    tracked_set_serialising(&req, 1);
    wait_serialising(&req);
    ret = run_write_hooks(&req);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Write hook refused the resize");
    } else {
        ret = bs->drv->co_truncate(bs, offset, exact, prealloc, errp);
    }
    if (ret == 0 && bdrv_refresh_total_bytes(bs) < 0) {
        ret = (int)bs->total_bytes;
        error_setg_errno(errp, -ret, "Could not refresh the total size");
    }
    tracked_end(&req);
    bs->in_flight--;
    return ret;
}

/* ---- Copy offload ---- */

/*
 * Can bs take part in a copy range as the source (write false) or the
 * destination of [offset, +bytes)?  0, or the error a read/write of the
 * range would get (-EPERM for a read-only destination), or -ENOTSUP when
 * the driver has no callback or the range would need padding (offload
 * copies whole aligned blocks only; the caller's read + write pads).
 */
static int copy_range_check(BlockDriverState *bs, int64_t offset,
                            int64_t bytes, bool write)
{
    int ret = check_request(bs, offset, bytes);

    if (ret == 0 && write && bs->read_only) {
        ret = -EPERM;
    }
    if (ret < 0) {
        return ret;
    }
    if (write ? !bs->drv->co_copy_range_to : !bs->drv->co_copy_range_from) {
        return -ENOTSUP;
    }
    return padding_needed(bs, offset, bytes) ? -ENOTSUP : 0;
}

/*
 * Accounts a finished leg.  Started requests are counted only once the
 * driver did not refuse with -ENOTSUP, so that a pair that cannot offload
 * (the caller falls back to read + write, which is accounted) leaves no
 * failed request behind; the price is that the in-flight gauge does not
 * show a copy while it runs.
 */
static void copy_range_account(BlockAcctStats *stats, BlockAcctType type,
                               int64_t bytes, int64_t start_ns, int ret)
{
    BlockAcctCookie cookie;

    if (ret == -ENOTSUP) {
        return;
    }
    block_acct_start(stats, &cookie, bytes, type);
    cookie.start_ns = start_ns;
    if (ret < 0) {
        block_acct_failed(stats, &cookie);
    } else {
        block_acct_done(stats, &cookie);
    }
}

/*
 * The common start of one copy-range leg on bs (the source as a read, the
 * destination as a write): checks, counts a refusal other than -ENOTSUP
 * as invalid, then tracks the request.  On success the caller must end
 * it with copy_range_leg_end().
 */
static int coroutine_fn copy_range_leg_begin(BlockDriverState *bs,
                                             BdrvTrackedRequest *req,
                                             int64_t offset, int64_t bytes,
                                             bool is_write,
                                             BdrvRequestFlags flags,
                                             int64_t *start_ns)
{
    int ret = copy_range_check(bs, offset, bytes, is_write);

    if (ret < 0) {
        if (ret != -ENOTSUP) {
            block_acct_invalid(&bs->stats, is_write ? BLOCK_ACCT_WRITE
                                                    : BLOCK_ACCT_READ);
        }
        return ret;
    }
    bs->in_flight++;
    *start_ns = clock_ns();
    /* No data vector: write hooks see a write of unknown content, as with
     * write-zeroes, and must copy the old data away first. */
    tracked_begin(req, bs, offset, bytes,
                  is_write ? BDRV_TRACKED_WRITE : BDRV_TRACKED_READ,
                  flags, NULL);
    if (flags & BDRV_REQ_SERIALISING) {
        tracked_set_serialising(req, bs->bl.request_alignment);
    }
    if (is_write || !(flags & BDRV_REQ_NO_SERIALISING)) {
        wait_serialising(req);
    }
    return 0;
}

static void copy_range_leg_end(BlockDriverState *bs, BdrvTrackedRequest *req,
                               bool is_write, int64_t start_ns, int ret)
{
    copy_range_account(&bs->stats,
                       is_write ? BLOCK_ACCT_WRITE : BLOCK_ACCT_READ,
                       req->bytes, start_ns, ret);
    tracked_end(req);
    bs->in_flight--;
}

int coroutine_fn bdrv_co_copy_range_from(BlockDriverState *src,
                                         int64_t src_offset,
                                         BlockDriverState *dst,
                                         int64_t dst_offset, int64_t bytes,
                                         BdrvRequestFlags read_flags,
                                         BdrvRequestFlags write_flags)
{
    BdrvTrackedRequest req;
    int64_t start_ns;
    int ret;

    g_assert(!((read_flags & BDRV_REQ_SERIALISING) &&
               (read_flags & BDRV_REQ_NO_SERIALISING)));
    ret = copy_range_leg_begin(src, &req, src_offset, bytes, false,
                               read_flags, &start_ns);
    if (ret < 0) {
        return ret;
    }
    ret = src->drv->co_copy_range_from(src, src_offset, dst, dst_offset,
                                       bytes, read_flags, write_flags);
    copy_range_leg_end(src, &req, false, start_ns, ret);
    return ret;
}

int coroutine_fn bdrv_co_copy_range_to(BlockDriverState *src,
                                       int64_t src_offset,
                                       BlockDriverState *dst,
                                       int64_t dst_offset, int64_t bytes,
                                       BdrvRequestFlags read_flags,
                                       BdrvRequestFlags write_flags)
{
    BdrvTrackedRequest req;
    int64_t start_ns;
    int ret = copy_range_leg_begin(dst, &req, dst_offset, bytes, true,
                                   write_flags, &start_ns);

    if (ret < 0) {
        return ret;
    }
    ret = run_write_hooks(&req);
    if (ret == 0) {
        ret = dst->drv->co_copy_range_to(dst, src, src_offset, dst_offset,
                                         bytes, read_flags, write_flags);
    }
    if (ret == 0) {
        block_acct_highest_offset(&dst->stats, dst_offset + bytes);
    }
    copy_range_leg_end(dst, &req, true, start_ns, ret);
    return ret;
}

/* The longest piece both nodes take in one request. */
static int64_t copy_range_max(BlockDriverState *src, BlockDriverState *dst)
{
    int64_t mt = MIN(max_transfer(src), max_transfer(dst));
    int64_t align = MAX(src->bl.request_alignment,
                        dst->bl.request_alignment);

    return MAX(align_down(mt, align), align);
}

/* Whole-request checks before any leg runs, so that a request refused on
 * one node accounts nothing on the other.  *bad_dst tells which node
 * refused it. */
static int copy_range_precheck(BlockDriverState *src, int64_t src_offset,
                               BlockDriverState *dst, int64_t dst_offset,
                               int64_t bytes, bool *bad_dst)
{
    int ret = copy_range_check(dst, dst_offset, bytes, true);

    *bad_dst = ret < 0;
    if (ret == 0) {
        ret = copy_range_check(src, src_offset, bytes, false);
    }
    return ret;
}

/* Accounts a request that failed validation as invalid on the node (and
 * backend) that refused it; -ENOTSUP is no error of the request. */
static void copy_range_invalid(int ret, bool bad_dst, BlockAcctStats *src,
                               BlockAcctStats *dst)
{
    if (ret == -ENOTSUP) {
        return;
    }
    if (bad_dst) {
        block_acct_invalid(dst, BLOCK_ACCT_WRITE);
    } else {
        block_acct_invalid(src, BLOCK_ACCT_READ);
    }
}

/* The copy in pieces of at most copy_range_max() bytes. */
static int coroutine_fn copy_range_split(BlockDriverState *src,
                                         int64_t src_offset,
                                         BlockDriverState *dst,
                                         int64_t dst_offset, int64_t bytes,
                                         BdrvRequestFlags read_flags,
                                         BdrvRequestFlags write_flags)
{
    int64_t max = copy_range_max(src, dst);
    int64_t done = 0;

    while (done < bytes) {
        int64_t n = MIN(bytes - done, max);
        int ret = bdrv_co_copy_range_from(src, src_offset + done, dst,
                                          dst_offset + done, n, read_flags,
                                          write_flags);
        if (ret < 0) {
            return ret;
        }
        done += n;
    }
    return 0;
}

int coroutine_fn bdrv_co_copy_range(BdrvChild *src, int64_t src_offset,
                                    BdrvChild *dst, int64_t dst_offset,
                                    int64_t bytes, BdrvRequestFlags read_flags,
                                    BdrvRequestFlags write_flags)
{
    bool bad_dst;
    int ret;

    if (!src || !dst || !src->bs->drv || !dst->bs->drv) {
        return -ENOMEDIUM;
    }
    ret = copy_range_precheck(src->bs, src_offset, dst->bs, dst_offset,
                              bytes, &bad_dst);
    if (ret < 0) {
        copy_range_invalid(ret, bad_dst, &src->bs->stats, &dst->bs->stats);
        return ret;
    }
    if (bytes == 0) {
        return 0;
    }
    return copy_range_split(src->bs, src_offset, dst->bs, dst_offset, bytes,
                            read_flags, write_flags);
}

/*
 * The backend form.  It lives here rather than in block-backend.c so that
 * the core owns the whole copy path; the backends' part is their
 * accounting.  It does not wait while a backend is drained (that queue is
 * private to block-backend.c): its users (blockd-img convert) never drain
 * their own backends.
 */
int coroutine_fn blk_co_copy_range(BlockBackend *blk_in, int64_t off_in,
                                   BlockBackend *blk_out, int64_t off_out,
                                   int64_t bytes, BdrvRequestFlags read_flags,
                                   BdrvRequestFlags write_flags)
{
    BlockDriverState *src = blk_bs(blk_in), *dst = blk_bs(blk_out);
    BlockAcctStats *in = blk_get_stats(blk_in), *out = blk_get_stats(blk_out);
    int64_t start_ns = clock_ns();
    bool bad_dst;
    int ret;

    if (!src || !dst || !src->drv || !dst->drv) {
        return -ENOMEDIUM;
    }
    ret = copy_range_precheck(src, off_in, dst, off_out, bytes, &bad_dst);
    if (ret < 0) {
        copy_range_invalid(ret, bad_dst, in, out);
        copy_range_invalid(ret, bad_dst, &src->stats, &dst->stats);
        return ret;
    }
    if (bytes == 0) {
        return 0;
    }
    ret = copy_range_split(src, off_in, dst, off_out, bytes, read_flags,
                           write_flags);
    if (ret == 0) {
        block_acct_highest_offset(out, off_out + bytes);
    }
    copy_range_account(in, BLOCK_ACCT_READ, bytes, start_ns, ret);
    copy_range_account(out, BLOCK_ACCT_WRITE, bytes, start_ns, ret);
    return ret;
}

/* ---- Block status ---- */

/* Default answer of drivers without co_block_status. */
static int default_block_status(BlockDriverState *bs, int64_t offset,
                                int64_t bytes, int64_t *pnum, int64_t *map,
                                BlockDriverState **file)
{
    *pnum = bytes;
    *map = offset;
    if (bs->file && !bs->drv->is_protocol) {
        *file = bs->file->bs;
        return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID;
    }
    *file = bs;
    return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
}

/* Mapping mode: asks the protocol layer whether a data range of a format
 * node reads as zeroes there (a hole), and trims pnum to its answer. */
static int coroutine_fn refine_from_file(BlockDriverState *file, int64_t map,
                                         int ret, int64_t *pnum)
{
    int64_t file_pnum;
    int ret2 = bdrv_co_block_status(file, true, map, *pnum, &file_pnum,
                                    NULL, NULL);

    /* Errors are ignored: this only adds information. */
    if (ret2 >= 0 && (ret2 & BDRV_BLOCK_ZERO) && file_pnum > 0) {
        *pnum = file_pnum;
        ret |= BDRV_BLOCK_ZERO;
    }
    return ret;
}

int coroutine_fn bdrv_co_block_status(BlockDriverState *bs, bool want_zero,
                                      int64_t offset, int64_t bytes,
                                      int64_t *pnum, int64_t *map,
                                      BlockDriverState **file)
{
    BlockDriverState *local_file = NULL;
    int64_t local_map = 0;
    int ret;

    *pnum = 0;
    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    if (offset < 0 || bytes < 0) {
        return -EINVAL;
    }
    if (offset >= bs->total_bytes || bytes == 0) {
        return offset >= bs->total_bytes ? BDRV_BLOCK_EOF : 0;
    }
    bytes = MIN(bytes, bs->total_bytes - offset);
    bs->in_flight++;
    if (bs->drv->co_block_status) {
        ret = bs->drv->co_block_status(bs, want_zero, offset, bytes, pnum,
                                       &local_map, &local_file);
    } else {
        ret = default_block_status(bs, offset, bytes, pnum, &local_map,
                                   &local_file);
    }
    if (ret < 0) {
        goto out;
    }
    g_assert(*pnum > 0);
    *pnum = MIN(*pnum, bytes);
    if (ret & BDRV_BLOCK_RAW) {
        /* A filter/raw node: the answer is its file's. */
        g_assert(local_file && local_file != bs);
        ret = bdrv_co_block_status(local_file, want_zero, local_map, *pnum,
                                   pnum, &local_map, &local_file);
        if (ret < 0) {
            goto out;
        }
        /* EOF is judged at this node's end below, not the file's. */
        ret &= ~BDRV_BLOCK_EOF;
    } else {
        if (ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO)) {
            ret |= BDRV_BLOCK_ALLOCATED;
        }
        if (want_zero && local_file && local_file != bs &&
            (ret & BDRV_BLOCK_OFFSET_VALID) && (ret & BDRV_BLOCK_DATA) &&
            !(ret & BDRV_BLOCK_ZERO)) {
            ret = refine_from_file(local_file, local_map, ret, pnum);
        }
    }
    if (offset + *pnum == bs->total_bytes) {
        ret |= BDRV_BLOCK_EOF;
    }
    if (map) {
        *map = local_map;
    }
    if (file) {
        *file = local_file;
    }
out:
    bs->in_flight--;
    return ret;
}

int coroutine_fn bdrv_co_is_allocated(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, int64_t *pnum)
{
    int ret = bdrv_co_block_status(bs, false, offset, bytes, pnum, NULL,
                                   NULL);

    if (ret < 0) {
        return ret;
    }
    return !!(ret & BDRV_BLOCK_ALLOCATED);
}

/* ---- Synchronous wrappers ---- */

/* One synchronous call: the arguments, the result and a done flag. */
typedef struct SyncCall {
    BlockDriverState *bs;
    int op;
    int64_t offset, bytes;
    QIOVector *qiov;
    BdrvRequestFlags flags;
    bool want_zero, exact;
    PreallocMode prealloc;
    int64_t *pnum, *map;
    BlockDriverState **file;
    Error **errp;
    AioContext *waiter_ctx;      /* the context polling for done */
    int ret;
    bool done;
} SyncCall;

enum {
    SYNC_READ, SYNC_WRITE, SYNC_ZEROES, SYNC_DISCARD, SYNC_FLUSH,
    SYNC_TRUNCATE, SYNC_STATUS,
};

static void coroutine_fn sync_entry(void *opaque)
{
    SyncCall *c = opaque;

    switch (c->op) {
    case SYNC_READ:
        c->ret = bdrv_co_preadv(c->bs, c->offset, c->bytes, c->qiov, c->flags);
        break;
    case SYNC_WRITE:
        c->ret = bdrv_co_pwritev(c->bs, c->offset, c->bytes, c->qiov,
                                 c->flags);
        break;
    case SYNC_ZEROES:
        c->ret = bdrv_co_pwrite_zeroes(c->bs, c->offset, c->bytes, c->flags);
        break;
    case SYNC_DISCARD:
        c->ret = bdrv_co_pdiscard(c->bs, c->offset, c->bytes);
        break;
    case SYNC_FLUSH:
        c->ret = bdrv_co_flush(c->bs);
        break;
    case SYNC_TRUNCATE:
        c->ret = bdrv_co_truncate(c->bs, c->offset, c->exact, c->prealloc,
                                  c->errp);
        break;
    default:
        c->ret = bdrv_co_block_status(c->bs, c->want_zero, c->offset,
                                      c->bytes, c->pnum, c->map, c->file);
        break;
    }
    c->done = true;
    /* Finishing in another thread (a node in an iothread) must wake the
     * poller; in the same thread its loop re-checks done anyway. */
    if (c->waiter_ctx && c->waiter_ctx != current_aio_context()) {
        aio_notify(c->waiter_ctx);
    }
}

static int sync_run(SyncCall *c)
{
    if (in_coroutine()) {
        sync_entry(c);
    } else {
        Coroutine *co = coroutine_create(sync_entry, c);

        c->waiter_ctx = current_aio_context();
        coroutine_enter(co);
        AIO_WAIT_WHILE(current_aio_context(), !c->done);
    }
    return c->ret;
}

int bdrv_preadv(BlockDriverState *bs, int64_t offset, QIOVector *qiov,
                BdrvRequestFlags flags)
{
    SyncCall c = { .bs = bs, .op = SYNC_READ, .offset = offset,
                   .bytes = (int64_t)qiov->size, .qiov = qiov,
                   .flags = flags };
    return sync_run(&c);
}

int bdrv_pwritev(BlockDriverState *bs, int64_t offset, QIOVector *qiov,
                 BdrvRequestFlags flags)
{
    SyncCall c = { .bs = bs, .op = SYNC_WRITE, .offset = offset,
                   .bytes = (int64_t)qiov->size, .qiov = qiov,
                   .flags = flags };
    return sync_run(&c);
}

int bdrv_pread(BlockDriverState *bs, int64_t offset, int64_t bytes,
               void *buf, BdrvRequestFlags flags)
{
    QIOVector qiov;

    if (bytes < 0) {
        return -EINVAL;
    }
    qiov_init_buf(&qiov, buf, bytes);
    return bdrv_preadv(bs, offset, &qiov, flags);
}

int bdrv_pwrite(BlockDriverState *bs, int64_t offset, int64_t bytes,
                const void *buf, BdrvRequestFlags flags)
{
    QIOVector qiov;

    if (bytes < 0) {
        return -EINVAL;
    }
    /* The vector is only read from. */
    qiov_init_buf(&qiov, (void *)buf, bytes);
    return bdrv_pwritev(bs, offset, &qiov, flags);
}

int bdrv_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       BdrvRequestFlags flags)
{
    SyncCall c = { .bs = bs, .op = SYNC_ZEROES, .offset = offset,
                   .bytes = bytes, .flags = flags };
    return sync_run(&c);
}

int bdrv_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    SyncCall c = { .bs = bs, .op = SYNC_DISCARD, .offset = offset,
                   .bytes = bytes };
    return sync_run(&c);
}

int bdrv_flush(BlockDriverState *bs)
{
    SyncCall c = { .bs = bs, .op = SYNC_FLUSH };
    return sync_run(&c);
}

int bdrv_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                  PreallocMode prealloc, Error **errp)
{
    SyncCall c = { .bs = bs, .op = SYNC_TRUNCATE, .offset = offset,
                   .exact = exact, .prealloc = prealloc, .errp = errp };
    return sync_run(&c);
}

int bdrv_block_status(BlockDriverState *bs, bool want_zero, int64_t offset,
                      int64_t bytes, int64_t *pnum, int64_t *map,
                      BlockDriverState **file)
{
    SyncCall c = { .bs = bs, .op = SYNC_STATUS, .want_zero = want_zero,
                   .offset = offset, .bytes = bytes, .pnum = pnum,
                   .map = map, .file = file };
    return sync_run(&c);
}

int bdrv_is_allocated(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      int64_t *pnum)
{
    int ret = bdrv_block_status(bs, false, offset, bytes, pnum, NULL, NULL);

    if (ret < 0) {
        return ret;
    }
    return !!(ret & BDRV_BLOCK_ALLOCATED);
}
