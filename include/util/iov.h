/*
 * I/O vectors: a growable list of (pointer, length) buffers, the unit in
 * which every read and write travels through the block layer and the
 * linux-aio / thread-pool engines.  A QIOVector does not own the memory its
 * elements point to; it owns only its iovec array.
 */
#ifndef UTIL_IOV_H
#define UTIL_IOV_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

typedef struct QIOVector {
    struct iovec *iov;  /* owned unless it points at local_iov */
    int niov;
    int nalloc;         /* 0 when iov points at local_iov or external */
    size_t size;        /* sum of iov[i].iov_len */
    struct iovec local_iov;
} QIOVector;

/* An empty vector with room for alloc_hint elements (at least one). */
void qiov_init(QIOVector *qiov, int alloc_hint);
/* A one-element vector over buf without allocating.  It points into
 * itself (local_iov): do not copy the struct by value. */
void qiov_init_buf(QIOVector *qiov, void *buf, size_t len);
/* Appends [base, base+len).  Zero-length pieces are skipped and a piece
 * contiguous with the last element extends it.  Any vector may grow,
 * including one made by qiov_init_buf (it then gets its own array). */
void qiov_add(QIOVector *qiov, void *base, size_t len);
/* Appends the bytes [offset, offset+len) of src's elements to qiov (the
 * memory is shared, not copied).  src must not be qiov and must hold
 * offset+len bytes. */
void qiov_concat(QIOVector *qiov, const QIOVector *src, size_t offset,
                 size_t len);
/* Empties the vector, keeping its array for reuse. */
void qiov_reset(QIOVector *qiov);
/* Frees the array (never the buffers); the vector is then all zero. */
void qiov_destroy(QIOVector *qiov);

/* Copy between a vector (starting at byte offset) and a flat buffer.
 * Each returns the bytes handled: less than bytes when the vector ends
 * first. */
size_t iov_from_buf(const struct iovec *iov, int niov, size_t offset,
                    const void *buf, size_t bytes);
size_t iov_to_buf(const struct iovec *iov, int niov, size_t offset,
                  void *buf, size_t bytes);
size_t iov_memset(const struct iovec *iov, int niov, size_t offset,
                  int fillc, size_t bytes);

/* The same on a whole QIOVector. */
static inline size_t qiov_from_buf(QIOVector *qiov, size_t offset,
                                   const void *buf, size_t bytes)
{
    return iov_from_buf(qiov->iov, qiov->niov, offset, buf, bytes);
}

static inline size_t qiov_to_buf(const QIOVector *qiov, size_t offset,
                                 void *buf, size_t bytes)
{
    return iov_to_buf(qiov->iov, qiov->niov, offset, buf, bytes);
}

static inline size_t qiov_memset(QIOVector *qiov, size_t offset, int fillc,
                                 size_t bytes)
{
    return iov_memset(qiov->iov, qiov->niov, offset, fillc, bytes);
}

/* True when every byte of the vector is zero (true for an empty one). */
bool qiov_is_zero(const QIOVector *qiov);
/* True when buf[0..len) is all zero (true for len 0); fast for large
 * buffers at any alignment.  Runs on every written buffer when
 * detect-zeroes is on. */
bool buffer_is_zero(const void *buf, size_t len);

#endif
