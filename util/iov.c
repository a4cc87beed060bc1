/*
 * I/O vectors (include/util/iov.h): the scatter/gather lists in which every
 * read and write travels through the block layer, plus the zero detection
 * used by detect-zeroes and block-copy.  Nothing here touches shared state,
 * so every function is safe in any thread for objects the caller owns.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include <glib.h>

#include "util/iov.h"

void qiov_init(QIOVector *qiov, int alloc_hint)
{
    int n = MAX(alloc_hint, 1);

    qiov->iov = g_new(struct iovec, n);
    qiov->niov = 0;
    qiov->nalloc = n;
    qiov->size = 0;
    qiov->local_iov.iov_base = NULL;
    qiov->local_iov.iov_len = 0;
}

void qiov_init_buf(QIOVector *qiov, void *buf, size_t len)
{
    qiov->local_iov.iov_base = buf;
    qiov->local_iov.iov_len = len;
    /* Points into the struct itself: a QIOVector must not be copied. */
    qiov->iov = &qiov->local_iov;
    qiov->niov = 1;
    qiov->nalloc = 0;
    qiov->size = len;
}

/*
 * Makes room for one more element.  A vector that does not own its array
 * (local_iov or external) gets an owned copy first, so any vector can grow.
 */
static void qiov_reserve_one(QIOVector *qiov)
{
    struct iovec *old = qiov->iov;
    int n;

    if (qiov->niov < qiov->nalloc) {
        return;
    }
    n = MAX(qiov->nalloc * 2, MAX(qiov->niov + 1, 4));
    if (qiov->nalloc > 0) {
        qiov->iov = g_renew(struct iovec, qiov->iov, n);
    } else {
        qiov->iov = g_new(struct iovec, n);
        if (qiov->niov > 0) {
            memcpy(qiov->iov, old, qiov->niov * sizeof(*old));
        }
    }
    qiov->nalloc = n;
}

void qiov_add(QIOVector *qiov, void *base, size_t len)
{
    struct iovec *last;

    if (len == 0) {
        return;
    }
    /* Contiguous with the last element: extend it (fewer iovecs for the
     * kernel, which limits their number to IOV_MAX). */
    if (qiov->niov > 0) {
        last = &qiov->iov[qiov->niov - 1];
        if ((char *)last->iov_base + last->iov_len == (char *)base &&
            (qiov->nalloc > 0 || qiov->iov == &qiov->local_iov)) {
            last->iov_len += len;
            qiov->size += len;
            return;
        }
    }
    qiov_reserve_one(qiov);
    qiov->iov[qiov->niov].iov_base = base;
    qiov->iov[qiov->niov].iov_len = len;
    qiov->niov++;
    qiov->size += len;
}

void qiov_concat(QIOVector *qiov, const QIOVector *src, size_t offset,
                 size_t len)
{
    int i;

    /* Appending to src while walking it could move src's array. */
    assert(qiov != src);
    assert(offset <= src->size && len <= src->size - offset);
    for (i = 0; i < src->niov && len > 0; i++) {
        size_t elen = src->iov[i].iov_len;
        size_t chunk;

        if (offset >= elen) {
            offset -= elen;
            continue;
        }
        chunk = MIN(elen - offset, len);
        qiov_add(qiov, (char *)src->iov[i].iov_base + offset, chunk);
        len -= chunk;
        offset = 0;
    }
}

void qiov_reset(QIOVector *qiov)
{
    if (qiov->nalloc == 0) {
        /* Not owned: forget it and start over on the local element. */
        qiov->iov = &qiov->local_iov;
    }
    qiov->niov = 0;
    qiov->size = 0;
}

void qiov_destroy(QIOVector *qiov)
{
    if (qiov->nalloc > 0) {
        g_free(qiov->iov);
    }
    memset(qiov, 0, sizeof(*qiov));
}

/*
 * Walks the bytes [offset, offset + bytes) of the vector, calling fn on each
 * contiguous piece.  Returns how many bytes were visited, which is less than
 * bytes when the vector ends first.
 */
typedef void IovPieceFn(void *piece, size_t len, size_t done, void *opaque);

static size_t iov_walk(const struct iovec *iov, int niov, size_t offset,
                       size_t bytes, IovPieceFn *fn, void *opaque)
{
    size_t done = 0;
    int i;

    for (i = 0; i < niov && done < bytes; i++) {
        size_t chunk;

        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        chunk = MIN(iov[i].iov_len - offset, bytes - done);
        fn((char *)iov[i].iov_base + offset, chunk, done, opaque);
        done += chunk;
        offset = 0;
    }
    return done;
}

static void piece_from_buf(void *piece, size_t len, size_t done, void *opaque)
{
    memcpy(piece, (const char *)opaque + done, len);
}

static void piece_to_buf(void *piece, size_t len, size_t done, void *opaque)
{
    memcpy((char *)opaque + done, piece, len);
}

static void piece_memset(void *piece, size_t len, size_t done, void *opaque)
{
    memset(piece, *(const int *)opaque, len);
}

size_t iov_from_buf(const struct iovec *iov, int niov, size_t offset,
                    const void *buf, size_t bytes)
{
    return iov_walk(iov, niov, offset, bytes, piece_from_buf, (void *)buf);
}

size_t iov_to_buf(const struct iovec *iov, int niov, size_t offset,
                  void *buf, size_t bytes)
{
    return iov_walk(iov, niov, offset, bytes, piece_to_buf, buf);
}

size_t iov_memset(const struct iovec *iov, int niov, size_t offset,
                  int fillc, size_t bytes)
{
    return iov_walk(iov, niov, offset, bytes, piece_memset, &fillc);
}

bool qiov_is_zero(const QIOVector *qiov)
{
    int i;

    for (i = 0; i < qiov->niov; i++) {
        if (!buffer_is_zero(qiov->iov[i].iov_base, qiov->iov[i].iov_len)) {
            return false;
        }
    }
    return true;
}

/*
 * Zero detection.  Runs on every written buffer when detect-zeroes is on, so
 * the bulk loop ORs four 16-byte vectors per step (SSE2 on x86-64, NEON on
 * arm64 through GCC's generic vectors) and tests the accumulator once.
 * may_alias because the buffer's real type is unknown.
 */
typedef uint64_t ZeroVec __attribute__((vector_size(16), may_alias));

#define ZERO_VEC_SIZE sizeof(ZeroVec)

static inline uint64_t load_u64(const unsigned char *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

/* Short buffers: unaligned 8-byte loads, then single bytes. */
static bool small_is_zero(const unsigned char *p, size_t len)
{
    uint64_t acc = 0;
    size_t i = 0;

    for (; i + 8 <= len; i += 8) {
        acc |= load_u64(p + i);
    }
    for (; i < len; i++) {
        acc |= p[i];
    }
    return acc == 0;
}

static inline bool vec_is_zero(ZeroVec v)
{
    return (v[0] | v[1]) == 0;
}

bool buffer_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    const ZeroVec *v, *vend;
    uintptr_t start, end;

    if (len < 4 * ZERO_VEC_SIZE) {
        return small_is_zero(p, len);
    }
    /*
     * The unaligned head and tail (less than 16 bytes each) are covered by
     * 16-byte loads at both ends; data usually differs from zero near the
     * start, so this also rejects most non-zero buffers cheaply.
     */
    if (load_u64(p) | load_u64(p + 8) |
        load_u64(p + len - 16) | load_u64(p + len - 8)) {
        return false;
    }
    start = ((uintptr_t)p + ZERO_VEC_SIZE - 1) & ~(ZERO_VEC_SIZE - 1);
    end = ((uintptr_t)p + len) & ~(ZERO_VEC_SIZE - 1);
    v = (const ZeroVec *)start;
    vend = (const ZeroVec *)end;
    for (; vend - v >= 4; v += 4) {
        if (!vec_is_zero(v[0] | v[1] | v[2] | v[3])) {
            return false;
        }
    }
    for (; v < vend; v++) {
        if (!vec_is_zero(*v)) {
            return false;
        }
    }
    return true;
}
