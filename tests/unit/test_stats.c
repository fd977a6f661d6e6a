/* Unit tests for shared/stats.c: Welford, Chan's merge, EWMA. */
#include "stats.h"

#include <check.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stats_testutil.h"

#define N 20000

START_TEST(welford_matches_two_pass)
{
    static double v[N];
    for (int dist = 0; dist < TU_DIST_COUNT; dist++) {
        tu_rng r = {.s = 1000u + (uint64_t)dist};
        sn_welford w;
        sn_welford_init(&w);
        double min = INFINITY, max = -INFINITY;
        for (int i = 0; i < N; i++) {
            v[i] = tu_sample(&r, dist);
            TU_CHECK(sn_welford_add(&w, v[i]) == 0);
            min = fmin(min, v[i]);
            max = fmax(max, v[i]);
        }
        double mean, var;
        tu_moments(v, N, &mean, &var);
        ck_assert_uint_eq(w.n, N);
        ck_assert_msg(tu_close(sn_welford_mean(&w), mean, 1e-12), "%s mean %.17g vs %.17g",
                      tu_dist_names[dist], sn_welford_mean(&w), mean);
        ck_assert_msg(tu_close(sn_welford_variance(&w), var, 1e-9), "%s var %.17g vs %.17g",
                      tu_dist_names[dist], sn_welford_variance(&w), var);
        ck_assert_double_eq(w.min, min);
        ck_assert_double_eq(w.max, max);
    }
}
END_TEST

START_TEST(welford_small_and_empty)
{
    sn_welford w;
    sn_welford_init(&w);
    ck_assert(isnan(sn_welford_mean(&w)));
    ck_assert_double_eq(sn_welford_variance(&w), 0.0);
    ck_assert_int_eq(sn_welford_add(&w, 3.0), 0);
    ck_assert_double_eq(sn_welford_mean(&w), 3.0);
    ck_assert_double_eq(sn_welford_stddev(&w), 0.0);
    ck_assert_int_eq(sn_welford_add(&w, 5.0), 0);
    ck_assert_double_eq(sn_welford_mean(&w), 4.0);
    ck_assert_double_eq_tol(sn_welford_variance(&w), 2.0, 1e-15);
    /* A large offset does not destroy precision (the naive sum of squares would). */
    sn_welford_init(&w);
    for (int i = 0; i < 1000; i++)
        sn_welford_add(&w, 1e9 + (i % 2));
    ck_assert_double_eq_tol(sn_welford_variance(&w), 0.25 * 1000.0 / 999.0, 1e-9);
}
END_TEST

START_TEST(welford_refuses_non_finite)
{
    sn_welford w;
    sn_welford_init(&w);
    sn_welford_add(&w, 1.0);
    sn_welford before = w;
    ck_assert_int_eq(sn_welford_add(&w, NAN), -EINVAL);
    ck_assert_int_eq(sn_welford_add(&w, INFINITY), -EINVAL);
    ck_assert_int_eq(sn_welford_add(&w, -INFINITY), -EINVAL);
    ck_assert_int_eq(sn_welford_add(&w, 2 * SN_STATS_MAX_ABS), -EINVAL);
    ck_assert_int_eq(sn_welford_add(&w, -2 * SN_STATS_MAX_ABS), -EINVAL);
    ck_assert_mem_eq(&w, &before, sizeof w);
}
END_TEST

START_TEST(merge_equals_sequential)
{
    static double v[N];
    for (int dist = 0; dist < TU_DIST_COUNT; dist++) {
        tu_rng r = {.s = 77u + (uint64_t)dist};
        sn_welford all, parts[5];
        sn_welford_init(&all);
        for (int k = 0; k < 5; k++)
            sn_welford_init(&parts[k]);
        for (int i = 0; i < N; i++) {
            v[i] = tu_sample(&r, dist);
            sn_welford_add(&all, v[i]);
            /* Uneven parts, one of them empty. */
            int k = (int)(tu_next(&r) % 4);
            sn_welford_add(&parts[k == 3 && i % 7 ? 1 : k], v[i]);
        }
        sn_welford m;
        sn_welford_init(&m);
        for (int k = 0; k < 5; k++)
            sn_welford_merge(&m, &parts[k]);
        ck_assert_uint_eq(m.n, all.n);
        ck_assert(tu_close(m.mean, all.mean, 1e-12));
        ck_assert(tu_close(sn_welford_variance(&m), sn_welford_variance(&all), 1e-9));
        ck_assert_double_eq(m.min, all.min);
        ck_assert_double_eq(m.max, all.max);
    }
    /* Merging an accumulator into itself doubles every sample. */
    sn_welford a, b;
    sn_welford_init(&a);
    sn_welford_init(&b);
    for (int i = 1; i <= 10; i++) {
        sn_welford_add(&a, i);
        sn_welford_add(&b, i);
        sn_welford_add(&b, i);
    }
    sn_welford_merge(&a, &a);
    ck_assert_uint_eq(a.n, 20);
    ck_assert(tu_close(a.mean, b.mean, 1e-15));
    ck_assert(tu_close(a.m2, b.m2, 1e-12));
}
END_TEST

/* The EWMA's mean and variance equal the weighted mean and weighted population variance with
 * weights w_1 = (1-a)^(n-1), w_i = a (1-a)^(n-i). */
START_TEST(ewma_matches_direct_formula)
{
    const double alphas[] = {0.05, 0.3, 1.0};
    static double v[500];
    for (size_t ai = 0; ai < sizeof alphas / sizeof alphas[0]; ai++) {
        double a = alphas[ai];
        for (int dist = 0; dist < TU_DIST_COUNT; dist++) {
            tu_rng r = {.s = 5u + (uint64_t)dist};
            sn_ewma e;
            ck_assert_int_eq(sn_ewma_init(&e, a), 0);
            for (int n = 1; n <= 500; n++) {
                v[n - 1] = tu_sample(&r, dist);
                TU_CHECK(sn_ewma_add(&e, v[n - 1]) == 0);
                if (n % 37 != 0 && n != 1 && n != 500)
                    continue;
                double mean = 0.0;
                for (int i = 1; i <= n; i++) {
                    double w = i == 1 ? pow(1 - a, n - 1) : a * pow(1 - a, n - i);
                    mean += w * v[i - 1];
                }
                double var = 0.0;
                for (int i = 1; i <= n; i++) {
                    double w = i == 1 ? pow(1 - a, n - 1) : a * pow(1 - a, n - i);
                    var += w * (v[i - 1] - mean) * (v[i - 1] - mean);
                }
                ck_assert_msg(tu_close(e.mean, mean, 1e-9), "alpha %g %s n %d: %.17g vs %.17g", a,
                              tu_dist_names[dist], n, e.mean, mean);
                ck_assert_msg(fabs(e.var - var) <= 1e-8 * fmax(var, 1.0) + 1e-9,
                              "alpha %g %s n %d: var %.17g vs %.17g", a, tu_dist_names[dist], n,
                              e.var, var);
                ck_assert(tu_close(sn_ewma_stddev(&e), sqrt(var), 1e-6));
            }
        }
    }
}
END_TEST

START_TEST(ewma_rejects_bad_input)
{
    sn_ewma e = {.alpha = 0.5, .mean = 1.0, .var = 2.0, .n = 3};
    ck_assert_int_eq(sn_ewma_init(&e, 0.0), -EINVAL);
    ck_assert_int_eq(sn_ewma_init(&e, -0.1), -EINVAL);
    ck_assert_int_eq(sn_ewma_init(&e, 1.5), -EINVAL);
    ck_assert_int_eq(sn_ewma_init(&e, NAN), -EINVAL);
    ck_assert_uint_eq(e.n, 3); /* untouched */
    ck_assert_int_eq(sn_ewma_init(&e, 0.2), 0);
    ck_assert(isnan(e.mean));
    ck_assert_double_eq(sn_ewma_stddev(&e), 0.0);
    ck_assert_int_eq(sn_ewma_add(&e, NAN), -EINVAL);
    ck_assert_int_eq(sn_ewma_add(&e, INFINITY), -EINVAL);
    ck_assert_int_eq(sn_ewma_add(&e, 1e101), -EINVAL);
    ck_assert_uint_eq(e.n, 0);
    ck_assert_int_eq(sn_ewma_add(&e, -7.0), 0);
    ck_assert_double_eq(e.mean, -7.0);
    ck_assert_double_eq(e.var, 0.0);
}
END_TEST

/* The extremes of the accepted range keep every accumulator finite. */
START_TEST(extremes_stay_finite)
{
    ck_assert(sn_stats_sample_ok(SN_STATS_MAX_ABS));
    ck_assert(sn_stats_sample_ok(-SN_STATS_MAX_ABS));
    ck_assert(sn_stats_sample_ok(0.0));
    ck_assert(!sn_stats_sample_ok(NAN));
    ck_assert(!sn_stats_sample_ok(INFINITY));
    sn_welford w, w2;
    sn_ewma e;
    sn_welford_init(&w);
    sn_welford_init(&w2);
    sn_ewma_init(&e, 0.5);
    for (int i = 0; i < 100000; i++) {
        double x = i % 2 ? SN_STATS_MAX_ABS : -SN_STATS_MAX_ABS;
        TU_CHECK(sn_welford_add(i % 3 ? &w : &w2, x) == 0);
        TU_CHECK(sn_ewma_add(&e, x) == 0);
    }
    sn_welford_merge(&w, &w2);
    ck_assert(isfinite(w.mean) && isfinite(w.m2) && isfinite(sn_welford_stddev(&w)));
    ck_assert(isfinite(e.mean) && isfinite(e.var));
}
END_TEST

START_TEST(summary_clear_means_no_data)
{
    sn_summary s = {.n = 5, .mean = 1.0, .stddev = 2.0};
    sn_summary_clear(&s);
    ck_assert_uint_eq(s.n, 0);
    ck_assert_double_eq(s.stddev, 0.0);
    ck_assert(isnan(s.mean) && isnan(s.min) && isnan(s.max) && isnan(s.median) && isnan(s.q1) &&
              isnan(s.q3) && isnan(s.p95) && isnan(s.p99) && isnan(s.mad));
}
END_TEST

/* Whether a and b are the same bits (NaN payloads, the sign of zero). */
static bool same_bits(double a, double b)
{
    uint64_t ua, ub;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    return ua == ub;
}

START_TEST(log_tables_match_libm)
{
    /* every table entry, and the whole numbers just past it (libm again) */
    for (uint32_t i = 0; i < SN_STATS_LOG_TABLE + 64; i++) {
        double x = (double)i;
        ck_assert_msg(same_bits(sn_stats_log1p(x), log1p(x)), "log1p(%u)", i);
        ck_assert_msg(same_bits(sn_stats_log(x), log(x)), "log(%u)", i);
    }
    /* values that are not whole numbers below the table's end */
    const double odd[] = {-0.0,      -1.0,     -0.5,      -1e-300,     0.5,      1e-300,
                          4e-320,    2.999999, 3.000001,  4095.5,      4095.999, 4096.0,
                          1e6 + 0.5, 1e100,    INFINITY,  -INFINITY,   NAN,      -NAN,
                          DBL_MAX,   1e-6,     1234.5678, 0.999999999, 1.0 / 3.0};
    for (size_t k = 0; k < sizeof odd / sizeof odd[0]; k++) {
        double x = odd[k];
        ck_assert_msg(same_bits(sn_stats_log1p(x), log1p(x)) ||
                          (isnan(log1p(x)) && isnan(sn_stats_log1p(x))),
                      "log1p(%a)", x);
        ck_assert_msg(same_bits(sn_stats_log(x), log(x)) ||
                          (isnan(log(x)) && isnan(sn_stats_log(x))),
                      "log(%a)", x);
    }
    /* the sign of zero survives: log1p(-0) is -0 */
    ck_assert(signbit(sn_stats_log1p(-0.0)));
    ck_assert(!signbit(sn_stats_log1p(0.0)));
    /* a dense sweep of small fractions and whole numbers */
    for (uint32_t i = 0; i < 20000; i++) {
        double x = (double)i * 0.25;
        ck_assert(same_bits(sn_stats_log1p(x), log1p(x)));
        ck_assert(same_bits(sn_stats_log(x), log(x)));
    }
}
END_TEST

static Suite *stats_suite(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, welford_matches_two_pass);
    tcase_add_test(tc, welford_small_and_empty);
    tcase_add_test(tc, welford_refuses_non_finite);
    tcase_add_test(tc, merge_equals_sequential);
    tcase_add_test(tc, ewma_matches_direct_formula);
    tcase_add_test(tc, ewma_rejects_bad_input);
    tcase_add_test(tc, extremes_stay_finite);
    tcase_add_test(tc, summary_clear_means_no_data);
    tcase_add_test(tc, log_tables_match_libm);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(stats_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
