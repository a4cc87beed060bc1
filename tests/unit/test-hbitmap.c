/*
 * Unit tests of the flat bitmap (util/hbitmap.c) that block-copy uses for
 * its clusters still to copy: ranges across word boundaries, the running
 * count, searches, runs and clipping at the size.
 */
#include <glib.h>

#include "util/hbitmap.h"

static void test_empty(void)
{
    HBitmap *hb = hbitmap_new(200);
    int64_t s, l;

    g_assert_cmpint(hbitmap_size(hb), ==, 200);
    g_assert_cmpint(hbitmap_count(hb), ==, 0);
    g_assert_cmpint(hbitmap_next_set(hb, 0), ==, -1);
    g_assert_cmpint(hbitmap_next_clear(hb, 0), ==, 0);
    g_assert_false(hbitmap_next_run(hb, 0, 200, 0, &s, &l));
    hbitmap_free(hb);
}

static void test_set_reset_words(void)
{
    HBitmap *hb = hbitmap_new(300);

    hbitmap_set(hb, 60, 10);            /* crosses the first word edge */
    g_assert_cmpint(hbitmap_count(hb), ==, 10);
    g_assert_false(hbitmap_get(hb, 59));
    g_assert_true(hbitmap_get(hb, 60));
    g_assert_true(hbitmap_get(hb, 69));
    g_assert_false(hbitmap_get(hb, 70));
    hbitmap_set(hb, 65, 200);           /* overlaps: count only new bits */
    g_assert_cmpint(hbitmap_count(hb), ==, 205);
    hbitmap_reset(hb, 64, 128);         /* two whole words */
    g_assert_cmpint(hbitmap_count(hb), ==, 205 - 128);
    g_assert_true(hbitmap_get(hb, 63));
    g_assert_false(hbitmap_get(hb, 64));
    g_assert_false(hbitmap_get(hb, 191));
    g_assert_true(hbitmap_get(hb, 192));
    hbitmap_free(hb);
}

static void test_clip(void)
{
    HBitmap *hb = hbitmap_new(70);

    hbitmap_set(hb, 60, 1000);          /* clipped at the size */
    g_assert_cmpint(hbitmap_count(hb), ==, 10);
    hbitmap_set(hb, -5, 10);            /* clipped at 0 */
    g_assert_cmpint(hbitmap_count(hb), ==, 15);
    g_assert_false(hbitmap_get(hb, 70));
    g_assert_false(hbitmap_get(hb, -1));
    g_assert_cmpint(hbitmap_next_clear(hb, 60), ==, -1);
    hbitmap_reset(hb, 0, 1000);
    g_assert_cmpint(hbitmap_count(hb), ==, 0);
    hbitmap_free(hb);
}

static void test_search(void)
{
    HBitmap *hb = hbitmap_new(1000);

    hbitmap_set(hb, 500, 1);
    hbitmap_set(hb, 700, 100);
    g_assert_cmpint(hbitmap_next_set(hb, 0), ==, 500);
    g_assert_cmpint(hbitmap_next_set(hb, 500), ==, 500);
    g_assert_cmpint(hbitmap_next_set(hb, 501), ==, 700);
    g_assert_cmpint(hbitmap_next_set(hb, 800), ==, -1);
    g_assert_cmpint(hbitmap_next_clear(hb, 500), ==, 501);
    g_assert_cmpint(hbitmap_next_clear(hb, 700), ==, 800);
    g_assert_cmpint(hbitmap_next_set(hb, 5000), ==, -1);
    hbitmap_free(hb);
}

static void test_runs(void)
{
    HBitmap *hb = hbitmap_new(1000);
    int64_t s, l;

    hbitmap_set(hb, 100, 300);
    g_assert_true(hbitmap_next_run(hb, 0, 1000, 0, &s, &l));
    g_assert_cmpint(s, ==, 100);
    g_assert_cmpint(l, ==, 300);
    /* Cut by max_len and by end. */
    g_assert_true(hbitmap_next_run(hb, 0, 1000, 64, &s, &l));
    g_assert_cmpint(s, ==, 100);
    g_assert_cmpint(l, ==, 64);
    g_assert_true(hbitmap_next_run(hb, 150, 200, 0, &s, &l));
    g_assert_cmpint(s, ==, 150);
    g_assert_cmpint(l, ==, 50);
    /* A run starting at or after end is not found. */
    g_assert_false(hbitmap_next_run(hb, 0, 100, 0, &s, &l));
    g_assert_false(hbitmap_next_run(hb, 400, 1000, 0, &s, &l));
    hbitmap_free(hb);
}

static void test_random_against_model(void)
{
    const int64_t n = 777;
    HBitmap *hb = hbitmap_new(n);
    g_autofree gboolean *model = g_new0(gboolean, n);
    GRand *r = g_rand_new_with_seed(42);

    for (int i = 0; i < 2000; i++) {
        int64_t start = g_rand_int_range(r, 0, n);
        int64_t count = g_rand_int_range(r, 0, 200);
        bool set = g_rand_boolean(r);
        int64_t expect = 0, next = -1;

        if (set) {
            hbitmap_set(hb, start, count);
        } else {
            hbitmap_reset(hb, start, count);
        }
        for (int64_t b = start; b < MIN(start + count, n); b++) {
            model[b] = set;
        }
        for (int64_t b = 0; b < n; b++) {
            expect += model[b];
            if (next < 0 && b >= start && model[b]) {
                next = b;
            }
        }
        g_assert_cmpint(hbitmap_count(hb), ==, expect);
        g_assert_cmpint(hbitmap_next_set(hb, start), ==, next);
    }
    g_rand_free(r);
    hbitmap_free(hb);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/hbitmap/empty", test_empty);
    g_test_add_func("/hbitmap/set-reset-words", test_set_reset_words);
    g_test_add_func("/hbitmap/clip", test_clip);
    g_test_add_func("/hbitmap/search", test_search);
    g_test_add_func("/hbitmap/runs", test_runs);
    g_test_add_func("/hbitmap/random-model", test_random_against_model);
    return g_test_run();
}
