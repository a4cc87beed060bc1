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

void qiov_init(QIOVector *qiov, int alloc_hint);
/* A one-element vector over buf without allocating. */
void qiov_init_buf(QIOVector *qiov, void *buf, size_t len);
void qiov_add(QIOVector *qiov, void *base, size_t len);
/* Appends the bytes [offset, offset+len) of src's elements to qiov. */
void qiov_concat(QIOVector *qiov, const QIOVector *src, size_t offset,
                 size_t len);
void qiov_reset(QIOVector *qiov);
void qiov_destroy(QIOVector *qiov);

/* Copy between a vector (starting at byte offset) and a flat buffer. */
size_t iov_from_buf(const struct iovec *iov, int niov, size_t offset,
                    const void *buf, size_t bytes);
size_t iov_to_buf(const struct iovec *iov, int niov, size_t offset,
                  void *buf, size_t bytes);
size_t iov_memset(const struct iovec *iov, int niov, size_t offset,
                  int fillc, size_t bytes);
/* True when every byte of the vector is zero. */
bool qiov_is_zero(const QIOVector *qiov);
/* True when buf[0..len) is all zero; fast for aligned buffers. */
bool buffer_is_zero(const void *buf, size_t len);

#endif
