/*
 * Flat bitmap with a running population count (see include/util/hbitmap.h).
 * Bits live in 64-bit words; range operations touch whole words in the
 * middle and masked words at the edges, searches skip empty (or full)
 * words, so scanning a mostly clean 16 GiB disk costs a few thousand
 * word loads.
 */
#include <glib.h>

#include "util/hbitmap.h"

struct HBitmap {
    int64_t size;        /* bits */
    int64_t count;       /* set bits */
    uint64_t *words;     /* (size + 63) / 64 words; bits past size stay 0 */
};

#define WORD_BITS 64

HBitmap *hbitmap_new(int64_t size)
{
    HBitmap *hb = g_new0(HBitmap, 1);

    g_assert(size >= 0);
    hb->size = size;
    hb->words = g_new0(uint64_t, (size + WORD_BITS - 1) / WORD_BITS + 1);
    return hb;
}

void hbitmap_free(HBitmap *hb)
{
    if (hb) {
        g_free(hb->words);
        g_free(hb);
    }
}

int64_t hbitmap_size(const HBitmap *hb)
{
    return hb->size;
}

int64_t hbitmap_count(const HBitmap *hb)
{
    return hb->count;
}

/* Mask of bits [lo, hi) inside one word, 0 <= lo < hi <= 64. */
static uint64_t word_mask(int lo, int hi)
{
    uint64_t upper = hi == WORD_BITS ? ~0ULL : (1ULL << hi) - 1;

    return upper & ~((1ULL << lo) - 1);
}

/* Applies set or clear to [start, end) and keeps count exact. */
static void change_range(HBitmap *hb, int64_t start, int64_t count, bool set)
{
    int64_t end;

    if (start < 0) {
        count += start;
        start = 0;
    }
    if (count <= 0 || start >= hb->size) {
        return;
    }
    end = MIN(start + count, hb->size);
    while (start < end) {
        int64_t w = start / WORD_BITS;
        int lo = start % WORD_BITS;
        int hi = (int)MIN((int64_t)WORD_BITS, end - w * WORD_BITS);
        uint64_t mask = word_mask(lo, hi);
        uint64_t old = hb->words[w];
        uint64_t new = set ? (old | mask) : (old & ~mask);

        hb->count += __builtin_popcountll(new) - __builtin_popcountll(old);
        hb->words[w] = new;
        start = w * WORD_BITS + hi;
    }
}

void hbitmap_set(HBitmap *hb, int64_t start, int64_t count)
{
    change_range(hb, start, count, true);
}

void hbitmap_reset(HBitmap *hb, int64_t start, int64_t count)
{
    change_range(hb, start, count, false);
}

bool hbitmap_get(const HBitmap *hb, int64_t bit)
{
    if (bit < 0 || bit >= hb->size) {
        return false;
    }
    return (hb->words[bit / WORD_BITS] >> (bit % WORD_BITS)) & 1;
}

/* Shared search: want_set selects set or clear bits. */
static int64_t next_bit(const HBitmap *hb, int64_t start, bool want_set)
{
    int64_t nwords = (hb->size + WORD_BITS - 1) / WORD_BITS;
    int64_t w;
    uint64_t word;

    if (start < 0) {
        start = 0;
    }
    if (start >= hb->size) {
        return -1;
    }
    w = start / WORD_BITS;
    word = want_set ? hb->words[w] : ~hb->words[w];
    word &= ~0ULL << (start % WORD_BITS);
    for (;;) {
        if (word) {
            int64_t bit = w * WORD_BITS + __builtin_ctzll(word);
            return bit < hb->size ? bit : -1;
        }
        if (++w >= nwords) {
            return -1;
        }
        word = want_set ? hb->words[w] : ~hb->words[w];
    }
}

int64_t hbitmap_next_set(const HBitmap *hb, int64_t start)
{
    return next_bit(hb, start, true);
}

int64_t hbitmap_next_clear(const HBitmap *hb, int64_t start)
{
    return next_bit(hb, start, false);
}

bool hbitmap_next_run(const HBitmap *hb, int64_t start, int64_t end,
                      int64_t max_len, int64_t *run_start, int64_t *run_len)
{
    int64_t first = hbitmap_next_set(hb, start);
    int64_t stop;

    end = MIN(end, hb->size);
    if (first < 0 || first >= end) {
        return false;
    }
    stop = hbitmap_next_clear(hb, first);
    if (stop < 0 || stop > end) {
        stop = end;
    }
    if (max_len > 0 && stop - first > max_len) {
        stop = first + max_len;
    }
    *run_start = first;
    *run_len = stop - first;
    return true;
}
