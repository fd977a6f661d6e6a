/* Unit tests for shared/window.c: exact rolling order statistics against a sort-based reference. */
#include "window.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "stats_testutil.h"

/* Compares the window's summary and samples with a reference built by sorting the last n
 * samples of the stream (hist[0..total), in arrival order). */
static void check_against_reference(const sn_window *w, const double *hist, size_t total,
                                    uint32_t cap, const char *what)
{
    static double last[4096], sorted[4096], scratch[4096], got[4096];
    size_t n = total < cap ? total : cap;
    memcpy(last, hist + (total - n), n * sizeof(double));
    TU_CHECK_EQ(sn_window_count(w), n);
    TU_CHECK_EQ(sn_window_samples(w, got, 4096), n);
    TU_CHECK(memcmp(got, last, n * sizeof(double)) == 0);
    tu_sorted(last, n, sorted);

    sn_summary s;
    sn_window_summary(w, &s);
    double mean, var;
    tu_moments(last, n, &mean, &var);
    TU_CHECK_EQ(s.n, n);
    /* Rounding error is relative to the magnitude of the data, not of the mean. */
    double scale = fmax(1.0, fmax(fabs(sorted[0]), fabs(sorted[n - 1])));
    TU_CHECK_MSG(fabs(s.mean - mean) <= 1e-9 * scale, "%s mean %.17g vs %.17g", what, s.mean, mean);
    TU_CHECK_MSG(fabs(s.stddev - sqrt(var)) <= 1e-7 * fmax(sqrt(var), 1.0),
                 "%s stddev %.17g vs %.17g", what, s.stddev, sqrt(var));
    TU_CHECK_EQ(s.min, sorted[0]);
    TU_CHECK_EQ(s.max, sorted[n - 1]);
    TU_CHECK_EQ(s.median, tu_quantile(sorted, n, 0.5));
    TU_CHECK_EQ(s.q1, tu_quantile(sorted, n, 0.25));
    TU_CHECK_EQ(s.q3, tu_quantile(sorted, n, 0.75));
    TU_CHECK_EQ(s.p95, tu_quantile(sorted, n, 0.95));
    TU_CHECK_EQ(s.p99, tu_quantile(sorted, n, 0.99));
    double mad = tu_mad(sorted, n, scratch);
    TU_CHECK_MSG(s.mad == mad, "%s mad %.17g vs %.17g", what, s.mad, mad);
    TU_CHECK_EQ(sn_window_mad(w), mad);
    const double qs[] = {0.0, 0.01, 0.1, 0.333, 0.9, 0.999, 1.0};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        TU_CHECK_EQ(sn_window_quantile(w, qs[i]), tu_quantile(sorted, n, qs[i]));
}

START_TEST(matches_reference_across_wraparound)
{
    const uint32_t caps[] = {1, 2, 3, 7, 64, 1000};
    static double hist[30000];
    for (int dist = 0; dist < TU_DIST_COUNT; dist++) {
        for (size_t ci = 0; ci < sizeof caps / sizeof caps[0]; ci++) {
            uint32_t cap = caps[ci];
            sn_window *w;
            ck_assert_int_eq(sn_window_create(&w, cap), 0);
            tu_rng r = {.s = 42u * (uint64_t)(dist + 1) + cap};
            size_t total = cap < 100 ? 3000 : 12 * (size_t)cap; /* wraps 12 to 3000 times */
            for (size_t i = 0; i < total; i++) {
                hist[i] = tu_sample(&r, dist);
                TU_CHECK(sn_window_add(w, hist[i]) == 0);
                size_t t = i + 1;
                if (t <= 12 || t % (cap < 100 ? 97 : 451) == 0 || t == total) {
                    char what[64];
                    snprintf(what, sizeof what, "%s cap %u after %zu", tu_dist_names[dist], cap, t);
                    check_against_reference(w, hist, t, cap, what);
                }
            }
            sn_window_destroy(w);
        }
    }
}
END_TEST

/* Ties and a sorted/reverse-sorted stream stress the binary searches and memmove directions. */
START_TEST(monotone_and_tied_streams)
{
    static double hist[5000];
    sn_window *w;
    ck_assert_int_eq(sn_window_create(&w, 100), 0);
    for (int pattern = 0; pattern < 4; pattern++) {
        sn_window_clear(w);
        for (size_t i = 0; i < 1000; i++) {
            double x = pattern == 0   ? (double)i
                       : pattern == 1 ? -(double)i
                       : pattern == 2 ? (double)(i % 3)
                                      : (i % 2 ? 1e100 : -1e100);
            hist[i] = x;
            sn_window_add(w, x);
            if (i % 50 == 49)
                check_against_reference(w, hist, i + 1, 100, "monotone");
        }
    }
    sn_window_destroy(w);
}
END_TEST

/* A large offset with a small spread: the incremental variance would drift without the periodic
 * exact recomputation. */
START_TEST(variance_does_not_drift)
{
    sn_window *w;
    ck_assert_int_eq(sn_window_create(&w, 50), 0);
    tu_rng r = {.s = 9};
    static double ring[50];
    for (size_t i = 0; i < 200000; i++) {
        double x = 1e9 + tu_normal(&r);
        ring[i % 50] = x;
        sn_window_add(w, x);
    }
    double mean, var;
    tu_moments(ring, 50, &mean, &var);
    sn_summary s;
    sn_window_summary(w, &s);
    ck_assert_msg(fabs(s.stddev - sqrt(var)) < 1e-3 * sqrt(var), "%.17g vs %.17g", s.stddev,
                  sqrt(var));
    ck_assert(tu_close(s.mean, mean, 1e-15));
    sn_window_destroy(w);
}
END_TEST

START_TEST(refuses_non_finite_and_bad_capacity)
{
    sn_window *w = NULL;
    ck_assert_int_eq(sn_window_create(&w, 0), -EINVAL);
    ck_assert_int_eq(sn_window_create(&w, SN_WINDOW_MAX_CAPACITY + 1), -EINVAL);
    ck_assert_int_eq(sn_window_create(&w, UINT32_MAX), -EINVAL);
    ck_assert_ptr_null(w);
    ck_assert_uint_eq(sn_window_size(0), 0);
    ck_assert_uint_eq(sn_window_size(UINT32_MAX), 0);

    ck_assert_int_eq(sn_window_create(&w, SN_WINDOW_DEFAULT_CAPACITY), 0);
    ck_assert_uint_eq(sn_window_capacity(w), 1000);
    ck_assert_int_eq(sn_window_add(w, NAN), -EINVAL);
    ck_assert_int_eq(sn_window_add(w, INFINITY), -EINVAL);
    ck_assert_int_eq(sn_window_add(w, -INFINITY), -EINVAL);
    ck_assert_int_eq(sn_window_add(w, 1e101), -EINVAL);
    ck_assert_uint_eq(sn_window_count(w), 0);

    sn_summary s;
    sn_window_summary(w, &s);
    ck_assert_uint_eq(s.n, 0);
    ck_assert(isnan(s.mean) && isnan(s.median) && isnan(s.mad));
    ck_assert_double_eq(s.stddev, 0.0);
    ck_assert(isnan(sn_window_quantile(w, 0.5)));
    ck_assert(isnan(sn_window_mad(w)));

    ck_assert_int_eq(sn_window_add(w, -3.0), 0);
    ck_assert_int_eq(sn_window_add(w, NAN), -EINVAL);
    ck_assert_uint_eq(sn_window_count(w), 1);
    ck_assert(isnan(sn_window_quantile(w, -0.1)));
    ck_assert(isnan(sn_window_quantile(w, 1.1)));
    ck_assert(isnan(sn_window_quantile(w, NAN)));
    ck_assert_double_eq(sn_window_quantile(w, 0.7), -3.0);
    sn_window_summary(w, &s);
    ck_assert_double_eq(s.stddev, 0.0);
    ck_assert_double_eq(s.mad, 0.0);
    sn_window_destroy(w);
    sn_window_destroy(NULL);
}
END_TEST

START_TEST(init_in_caller_memory)
{
    double mem[(sizeof(double) * 16 + 64) / sizeof(double) + 8];
    ck_assert_uint_le(sn_window_size(8), sizeof mem);
    sn_window *w = (sn_window *)mem;
    ck_assert_int_eq(sn_window_init(w, 0), -EINVAL);
    ck_assert_int_eq(sn_window_init(w, 8), 0);
    for (int i = 0; i < 20; i++)
        sn_window_add(w, i);
    ck_assert_uint_eq(sn_window_count(w), 8);
    ck_assert_double_eq(sn_window_quantile(w, 0.0), 12.0);
    ck_assert_double_eq(sn_window_quantile(w, 0.5), 15.5);
    ck_assert_double_eq(sn_window_mad(w), 2.0);
}
END_TEST

static Suite *window_suite(void)
{
    Suite *s = suite_create("window");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, matches_reference_across_wraparound);
    tcase_add_test(tc, monotone_and_tied_streams);
    tcase_add_test(tc, variance_does_not_drift);
    tcase_add_test(tc, refuses_non_finite_and_bad_capacity);
    tcase_add_test(tc, init_in_caller_memory);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(window_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
