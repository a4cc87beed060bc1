/*
 * A flat bitmap of a fixed number of bits with a running count: the
 * "clusters still to copy" set of block-copy (one bit per cluster; a
 * 16 GiB disk at 64 KiB clusters is 256 Ki bits, 32 KiB of memory), and
 * later the dirty bitmaps.  Ranges are [start, start+count) in bits.
 *
 * Not thread-safe: the owner (one AioContext) does every access.
 */
#ifndef UTIL_HBITMAP_H
#define UTIL_HBITMAP_H

#include <stdbool.h>
#include <stdint.h>

typedef struct HBitmap HBitmap;

/* A bitmap of size bits, all clear.  Free with hbitmap_free(). */
HBitmap *hbitmap_new(int64_t size);
void hbitmap_free(HBitmap *hb);

int64_t hbitmap_size(const HBitmap *hb);
/* Number of set bits (kept up to date: O(1)). */
int64_t hbitmap_count(const HBitmap *hb);

/* Set / clear the bits [start, start+count), clipped to the size. */
void hbitmap_set(HBitmap *hb, int64_t start, int64_t count);
void hbitmap_reset(HBitmap *hb, int64_t start, int64_t count);
bool hbitmap_get(const HBitmap *hb, int64_t bit);

/* The first set (clear) bit at or after start, or -1 if none before the
 * end.  Word at a time. */
int64_t hbitmap_next_set(const HBitmap *hb, int64_t start);
int64_t hbitmap_next_clear(const HBitmap *hb, int64_t start);

/*
 * The first run of set bits that starts in [start, end) : true with
 * *run_start and *run_len (the run is cut at end and at max_len bits),
 * false when no bit is set in [start, end).
 */
bool hbitmap_next_run(const HBitmap *hb, int64_t start, int64_t end,
                      int64_t max_len, int64_t *run_start, int64_t *run_len);

#endif
