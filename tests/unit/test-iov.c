/*
 * Unit tests for I/O vectors and zero detection (include/util/iov.h).
 * Vectors are built from separately allocated pieces so that element
 * boundaries are real and copies across them are exercised.
 */
#include <string.h>

#include <glib.h>

#include "util/iov.h"

/* A vector over separately allocated buffers of the given sizes. */
typedef struct Pieces {
    QIOVector qiov;
    GPtrArray *bufs;
} Pieces;

static void pieces_init(Pieces *p, const size_t *sizes, int n)
{
    int i;

    qiov_init(&p->qiov, 1);
    p->bufs = g_ptr_array_new_with_free_func(g_free);
    for (i = 0; i < n; i++) {
        unsigned char *b = g_malloc0(sizes[i]);

        g_ptr_array_add(p->bufs, b);
        qiov_add(&p->qiov, b, sizes[i]);
    }
}

static void pieces_destroy(Pieces *p)
{
    qiov_destroy(&p->qiov);
    g_ptr_array_unref(p->bufs);
}

static const size_t piece_sizes[] = { 3, 5, 1, 7, 16 };
#define NPIECES G_N_ELEMENTS(piece_sizes)
#define PIECES_TOTAL 32

/* Flattens the vector's content for comparison. */
static void flatten(const QIOVector *q, unsigned char *out)
{
    g_assert_cmpuint(iov_to_buf(q->iov, q->niov, 0, out, q->size), ==,
                     q->size);
}

static void test_init_buf(void)
{
    char buf[10];
    QIOVector q;

    qiov_init_buf(&q, buf, sizeof(buf));
    g_assert_cmpint(q.niov, ==, 1);
    g_assert_cmpuint(q.size, ==, sizeof(buf));
    g_assert_true(q.iov[0].iov_base == buf);
    qiov_destroy(&q);
}

static void test_add_grows(void)
{
    char bufs[40][2];
    QIOVector q;
    int i;

    qiov_init(&q, 1);
    /* Every other buffer, so no two elements are contiguous. */
    for (i = 0; i < 40; i += 2) {
        qiov_add(&q, bufs[i], 1);
    }
    g_assert_cmpint(q.niov, ==, 20);
    g_assert_cmpuint(q.size, ==, 20);
    for (i = 0; i < 20; i++) {
        g_assert_true(q.iov[i].iov_base == bufs[2 * i]);
    }
    qiov_destroy(&q);
}

static void test_add_merges_contiguous(void)
{
    char buf[16];
    QIOVector q;

    qiov_init(&q, 4);
    qiov_add(&q, buf, 4);
    qiov_add(&q, buf + 4, 4);
    g_assert_cmpint(q.niov, ==, 1);
    g_assert_cmpuint(q.iov[0].iov_len, ==, 8);
    qiov_add(&q, buf + 12, 4);
    g_assert_cmpint(q.niov, ==, 2);
    g_assert_cmpuint(q.size, ==, 12);
    qiov_destroy(&q);
}

static void test_add_zero_length_ignored(void)
{
    char buf[4];
    QIOVector q;

    qiov_init(&q, 1);
    qiov_add(&q, buf, 0);
    g_assert_cmpint(q.niov, ==, 0);
    g_assert_cmpuint(q.size, ==, 0);
    qiov_destroy(&q);
}

static void test_add_after_init_buf(void)
{
    char buf[32];
    char *a = buf, *b = buf + 16;
    QIOVector q;

    qiov_init_buf(&q, a, 8);
    qiov_add(&q, b, 8);
    g_assert_cmpint(q.niov, ==, 2);
    g_assert_cmpuint(q.size, ==, 16);
    g_assert_true(q.iov[0].iov_base == a);
    g_assert_true(q.iov[1].iov_base == b);
    qiov_destroy(&q);
}

static void test_reset(void)
{
    char buf[8];
    QIOVector q;

    qiov_init(&q, 2);
    qiov_add(&q, buf, 8);
    qiov_reset(&q);
    g_assert_cmpint(q.niov, ==, 0);
    g_assert_cmpuint(q.size, ==, 0);
    qiov_add(&q, buf, 3);
    g_assert_cmpuint(q.size, ==, 3);
    qiov_destroy(&q);
}

/* Every (offset, len) pair across all element boundaries. */
static void test_from_buf_all_ranges(void)
{
    unsigned char src[PIECES_TOTAL], got[PIECES_TOTAL];
    size_t off, len, i;

    for (i = 0; i < PIECES_TOTAL; i++) {
        src[i] = 0x80 + i;
    }
    for (off = 0; off <= PIECES_TOTAL; off++) {
        for (len = 0; off + len <= PIECES_TOTAL; len++) {
            Pieces p;

            pieces_init(&p, piece_sizes, NPIECES);
            g_assert_cmpuint(p.qiov.size, ==, PIECES_TOTAL);
            g_assert_cmpuint(iov_from_buf(p.qiov.iov, p.qiov.niov, off, src,
                                          len), ==, len);
            flatten(&p.qiov, got);
            for (i = 0; i < PIECES_TOTAL; i++) {
                unsigned char want = (i >= off && i < off + len) ?
                                     src[i - off] : 0;
                g_assert_cmpuint(got[i], ==, want);
            }
            pieces_destroy(&p);
        }
    }
}

static void test_from_buf_past_end(void)
{
    unsigned char src[PIECES_TOTAL] = { 0 };
    Pieces p;

    pieces_init(&p, piece_sizes, NPIECES);
    g_assert_cmpuint(iov_from_buf(p.qiov.iov, p.qiov.niov, 30, src, 10), ==,
                     2);
    g_assert_cmpuint(iov_from_buf(p.qiov.iov, p.qiov.niov, 40, src, 10), ==,
                     0);
    pieces_destroy(&p);
}

static void test_to_buf_all_ranges(void)
{
    unsigned char flat[PIECES_TOTAL], got[PIECES_TOTAL];
    size_t off, len, i;
    Pieces p;

    pieces_init(&p, piece_sizes, NPIECES);
    for (i = 0; i < PIECES_TOTAL; i++) {
        flat[i] = 0x40 + i;
    }
    iov_from_buf(p.qiov.iov, p.qiov.niov, 0, flat, PIECES_TOTAL);
    for (off = 0; off <= PIECES_TOTAL; off++) {
        for (len = 0; off + len <= PIECES_TOTAL; len++) {
            memset(got, 0xee, sizeof(got));
            g_assert_cmpuint(iov_to_buf(p.qiov.iov, p.qiov.niov, off, got,
                                        len), ==, len);
            g_assert_cmpmem(got, len, flat + off, len);
            /* Nothing written beyond len. */
            for (i = len; i < PIECES_TOTAL; i++) {
                g_assert_cmpuint(got[i], ==, 0xee);
            }
        }
    }
    /* Short count when the vector ends before bytes. */
    g_assert_cmpuint(iov_to_buf(p.qiov.iov, p.qiov.niov, 28, got, 100), ==, 4);
    pieces_destroy(&p);
}

static void test_memset_ranges(void)
{
    unsigned char got[PIECES_TOTAL];
    size_t off, len, i;

    for (off = 0; off <= PIECES_TOTAL; off++) {
        for (len = 0; off + len <= PIECES_TOTAL; len++) {
            Pieces p;

            pieces_init(&p, piece_sizes, NPIECES);
            g_assert_cmpuint(iov_memset(p.qiov.iov, p.qiov.niov, off, 0xa5,
                                        len), ==, len);
            flatten(&p.qiov, got);
            for (i = 0; i < PIECES_TOTAL; i++) {
                g_assert_cmpuint(got[i], ==,
                                 (i >= off && i < off + len) ? 0xa5 : 0);
            }
            pieces_destroy(&p);
        }
    }
}

static void test_memset_past_end(void)
{
    Pieces p;

    pieces_init(&p, piece_sizes, NPIECES);
    g_assert_cmpuint(iov_memset(p.qiov.iov, p.qiov.niov, 20, 1, 64), ==, 12);
    pieces_destroy(&p);
}

/* qiov_concat of every sub-range yields exactly those bytes. */
static void test_concat_sub_ranges(void)
{
    unsigned char flat[PIECES_TOTAL], got[PIECES_TOTAL];
    size_t off, len, i;
    Pieces p;

    pieces_init(&p, piece_sizes, NPIECES);
    for (i = 0; i < PIECES_TOTAL; i++) {
        flat[i] = i + 1;
    }
    iov_from_buf(p.qiov.iov, p.qiov.niov, 0, flat, PIECES_TOTAL);
    for (off = 0; off <= PIECES_TOTAL; off++) {
        for (len = 0; off + len <= PIECES_TOTAL; len++) {
            QIOVector sub;

            qiov_init(&sub, 1);
            qiov_concat(&sub, &p.qiov, off, len);
            g_assert_cmpuint(sub.size, ==, len);
            g_assert_cmpint(sub.niov, <=, (int)NPIECES);
            flatten(&sub, got);
            g_assert_cmpmem(got, len, flat + off, len);
            qiov_destroy(&sub);
        }
    }
    pieces_destroy(&p);
}

/* concat shares memory with the source: writes through it land there. */
static void test_concat_aliases_source(void)
{
    unsigned char got[PIECES_TOTAL];
    QIOVector sub;
    Pieces p;

    pieces_init(&p, piece_sizes, NPIECES);
    qiov_init(&sub, 1);
    qiov_concat(&sub, &p.qiov, 2, 10);
    iov_memset(sub.iov, sub.niov, 0, 0x33, sub.size);
    flatten(&p.qiov, got);
    g_assert_cmpuint(got[1], ==, 0);
    g_assert_cmpuint(got[2], ==, 0x33);
    g_assert_cmpuint(got[11], ==, 0x33);
    g_assert_cmpuint(got[12], ==, 0);
    qiov_destroy(&sub);
    pieces_destroy(&p);
}

static void test_concat_appends(void)
{
    char buf[32];
    char *a = buf, *b = buf + 16;
    QIOVector src, dst;

    qiov_init_buf(&src, a, 8);
    qiov_init(&dst, 1);
    qiov_add(&dst, b, 4);
    qiov_concat(&dst, &src, 2, 3);
    g_assert_cmpint(dst.niov, ==, 2);
    g_assert_cmpuint(dst.size, ==, 7);
    g_assert_true(dst.iov[1].iov_base == a + 2);
    g_assert_cmpuint(dst.iov[1].iov_len, ==, 3);
    qiov_destroy(&dst);
    qiov_destroy(&src);
}

static void test_qiov_wrappers(void)
{
    unsigned char flat[PIECES_TOTAL], got[PIECES_TOTAL];
    size_t i;
    Pieces p;

    pieces_init(&p, piece_sizes, NPIECES);
    for (i = 0; i < PIECES_TOTAL; i++) {
        flat[i] = 0xc0 + i;
    }
    g_assert_cmpuint(qiov_from_buf(&p.qiov, 0, flat, PIECES_TOTAL), ==,
                     PIECES_TOTAL);
    g_assert_cmpuint(qiov_to_buf(&p.qiov, 4, got, 10), ==, 10);
    g_assert_cmpmem(got, 10, flat + 4, 10);
    g_assert_cmpuint(qiov_memset(&p.qiov, 30, 0, 8), ==, 2);
    g_assert_cmpuint(qiov_to_buf(&p.qiov, 28, got, 4), ==, 4);
    g_assert_cmpuint(got[0], ==, flat[28]);
    g_assert_cmpuint(got[1], ==, flat[29]);
    g_assert_cmpuint(got[2], ==, 0);
    g_assert_cmpuint(got[3], ==, 0);
    pieces_destroy(&p);
}

static void test_buffer_is_zero_all_zero(void)
{
    unsigned char *buf = g_malloc0(4096 + 64);
    size_t align, len;

    for (align = 0; align < 32; align++) {
        for (len = 0; len <= 600; len++) {
            g_assert_true(buffer_is_zero(buf + align, len));
        }
        g_assert_true(buffer_is_zero(buf + align, 4096));
    }
    g_free(buf);
}

/* A single non-zero byte anywhere in a small buffer is found, at every
 * alignment, and bytes just outside the range are ignored. */
static void test_buffer_is_zero_single_byte(void)
{
    unsigned char *buf = g_malloc0(512 + 64);
    size_t align, len, pos;

    for (align = 0; align < 17; align++) {
        for (len = 1; len <= 300; len++) {
            unsigned char *b = buf + align;

            for (pos = 0; pos < len; pos++) {
                b[pos] = 1 << (pos % 8);
                g_assert_false(buffer_is_zero(b, len));
                b[pos] = 0;
            }
            if (align > 0) {
                b[-1] = 0xff;
            }
            b[len] = 0xff;
            g_assert_true(buffer_is_zero(b, len));
            b[len] = 0;
            if (align > 0) {
                b[-1] = 0;
            }
        }
    }
    g_free(buf);
}

static void test_buffer_is_zero_large(void)
{
    size_t len = 1 << 20;
    unsigned char *buf = g_malloc0(len + 1);
    size_t positions[] = { 0, 1, 15, 16, 63, 64, 4095, 65536, len / 2 + 3,
                           len - 17, len - 16, len - 1 };
    size_t i;

    g_assert_true(buffer_is_zero(buf, len));
    g_assert_true(buffer_is_zero(buf + 1, len));
    for (i = 0; i < G_N_ELEMENTS(positions); i++) {
        buf[positions[i]] = 0x80;
        g_assert_false(buffer_is_zero(buf, len));
        if (positions[i] > 0) {
            g_assert_false(buffer_is_zero(buf + 1, len));
        }
        buf[positions[i]] = 0;
    }
    g_free(buf);
}

static void test_qiov_is_zero(void)
{
    unsigned char flat[PIECES_TOTAL] = { 0 };
    size_t i;
    Pieces p;

    pieces_init(&p, piece_sizes, NPIECES);
    g_assert_true(qiov_is_zero(&p.qiov));
    for (i = 0; i < PIECES_TOTAL; i++) {
        flat[i] = 7;
        iov_from_buf(p.qiov.iov, p.qiov.niov, 0, flat, PIECES_TOTAL);
        g_assert_false(qiov_is_zero(&p.qiov));
        flat[i] = 0;
    }
    iov_from_buf(p.qiov.iov, p.qiov.niov, 0, flat, PIECES_TOTAL);
    g_assert_true(qiov_is_zero(&p.qiov));
    pieces_destroy(&p);
}

static void test_qiov_is_zero_empty(void)
{
    QIOVector q;

    qiov_init(&q, 1);
    g_assert_true(qiov_is_zero(&q));
    qiov_destroy(&q);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/iov/init-buf", test_init_buf);
    g_test_add_func("/iov/add/grows", test_add_grows);
    g_test_add_func("/iov/add/merges-contiguous", test_add_merges_contiguous);
    g_test_add_func("/iov/add/zero-length", test_add_zero_length_ignored);
    g_test_add_func("/iov/add/after-init-buf", test_add_after_init_buf);
    g_test_add_func("/iov/reset", test_reset);
    g_test_add_func("/iov/from-buf/all-ranges", test_from_buf_all_ranges);
    g_test_add_func("/iov/from-buf/past-end", test_from_buf_past_end);
    g_test_add_func("/iov/to-buf/all-ranges", test_to_buf_all_ranges);
    g_test_add_func("/iov/memset/ranges", test_memset_ranges);
    g_test_add_func("/iov/memset/past-end", test_memset_past_end);
    g_test_add_func("/iov/concat/sub-ranges", test_concat_sub_ranges);
    g_test_add_func("/iov/concat/aliases-source", test_concat_aliases_source);
    g_test_add_func("/iov/concat/appends", test_concat_appends);
    g_test_add_func("/iov/qiov-wrappers", test_qiov_wrappers);
    g_test_add_func("/iov/buffer-is-zero/all-zero",
                    test_buffer_is_zero_all_zero);
    g_test_add_func("/iov/buffer-is-zero/single-byte",
                    test_buffer_is_zero_single_byte);
    g_test_add_func("/iov/buffer-is-zero/large", test_buffer_is_zero_large);
    g_test_add_func("/iov/qiov-is-zero/pieces", test_qiov_is_zero);
    g_test_add_func("/iov/qiov-is-zero/empty", test_qiov_is_zero_empty);
    return g_test_run();
}
