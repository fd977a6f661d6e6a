/* Unit tests for aggregator/agg_metrics.c's detection delay window: exact percentiles, the
 * 1024-delay ring, anomalies without a time, and the histogram fed alongside. */
#include "agg_metrics.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SEC INT64_C(1000000000)

static sn_metrics *g_m;
static sn_agg_metrics *g_am;

static void setup(void)
{
    char err[256];
    ck_assert_int_eq(sn_metrics_create(NULL, &g_m, err, sizeof err), 0);
    ck_assert_int_eq(sn_agg_metrics_create(g_m, &g_am, err, sizeof err), 0);
}

static void teardown(void)
{
    sn_agg_metrics_destroy(g_am);
    sn_metrics_destroy(g_m);
}

/* An anomaly observed at t, reported `delay_ms` later. */
static void report(int64_t t, int64_t delay_ms)
{
    sn_anomaly an;
    memset(&an, 0, sizeof an);
    an.time_unix_nano = t;
    an.severity = SN_SEV_HIGH;
    an.anomaly_type = SN_ANOMALY_LATENCY_SPIKE;
    sn_agg_metrics_anomaly(g_am, &an, t + delay_ms * (SEC / 1000));
}

START_TEST(empty_window_has_no_percentiles)
{
    sn_agg_delay d;
    sn_agg_metrics_delay(g_am, &d);
    ck_assert(isnan(d.p50) && isnan(d.p95) && isnan(d.p99));
    ck_assert_uint_eq(d.count, 0);
    ck_assert_uint_eq(d.window, 0);
    sn_agg_metrics_delay(NULL, &d);
    ck_assert(isnan(d.p50));
    ck_assert_uint_eq(d.count, 0);
    /* Without a time, or with a clock behind it, nothing is timed. */
    report(0, 5);
    sn_anomaly an;
    memset(&an, 0, sizeof an);
    an.time_unix_nano = 100 * SEC;
    sn_agg_metrics_anomaly(g_am, &an, 99 * SEC);
    sn_agg_metrics_delay(g_am, &d);
    ck_assert_uint_eq(d.count, 0);
}
END_TEST

START_TEST(percentiles_are_exact_and_interpolated)
{
    /* 1..101 ms in a shuffled order: p50 = 51 ms, p95 = 96 ms, p99 = 100 ms exactly. */
    int order[101];
    for (int i = 0; i < 101; i++)
        order[i] = (i * 37) % 101 + 1;
    for (int i = 0; i < 101; i++)
        report(1000 * SEC + i * SEC, order[i]);
    sn_agg_delay d;
    sn_agg_metrics_delay(g_am, &d);
    ck_assert_uint_eq(d.count, 101);
    ck_assert_uint_eq(d.window, 101);
    ck_assert_double_eq_tol(d.p50, 0.051, 1e-9);
    ck_assert_double_eq_tol(d.p95, 0.096, 1e-9);
    ck_assert_double_eq_tol(d.p99, 0.100, 1e-9);

    /* Two values: interpolated between them. */
    teardown();
    setup();
    report(SEC, 10);
    report(SEC, 20);
    sn_agg_metrics_delay(g_am, &d);
    ck_assert_double_eq_tol(d.p50, 0.015, 1e-9);
    ck_assert_double_eq_tol(d.p99, 0.0199, 1e-9);
}
END_TEST

START_TEST(window_keeps_the_last_1024)
{
    /* 2000 slow delays, then 1024 fast ones: the slow ones have left the window. */
    for (int i = 0; i < 2000; i++)
        report(SEC, 5000);
    for (unsigned i = 0; i < SN_AGG_DELAY_WINDOW; i++)
        report(SEC, 1 + (int64_t)(i % 10));
    sn_agg_delay d;
    sn_agg_metrics_delay(g_am, &d);
    ck_assert_uint_eq(d.count, 2000 + SN_AGG_DELAY_WINDOW);
    ck_assert_uint_eq(d.window, SN_AGG_DELAY_WINDOW);
    ck_assert_double_le(d.p99, 0.010 + 1e-12);
    ck_assert_double_ge(d.p50, 0.001);
    /* One more slow one is in the window again. */
    report(SEC, 5000);
    sn_agg_metrics_delay(g_am, &d);
    ck_assert_double_le(d.p99, 0.010 + 1e-12);
    ck_assert_uint_eq(d.window, SN_AGG_DELAY_WINDOW);
    for (int i = 0; i < 20; i++)
        report(SEC, 5000);
    sn_agg_metrics_delay(g_am, &d);
    ck_assert_double_eq_tol(d.p99, 5.0, 1e-9); /* 21 of 1024 > 1 % */
}
END_TEST

START_TEST(histogram_is_fed_too)
{
    report(SEC, 30);
    report(SEC, 3000);
    char *text;
    size_t len;
    ck_assert_int_eq(sn_metrics_render_alloc(g_m, &text, &len), 0);
    ck_assert_ptr_nonnull(strstr(text, "sentinel_detection_delay_seconds_count 2"));
    ck_assert_ptr_nonnull(strstr(text, "sentinel_detection_delay_seconds_bucket{le=\"0.05\"} 1"));
    free(text);
}
END_TEST

static Suite *agg_metrics_suite(void)
{
    Suite *s = suite_create("agg_metrics");
    TCase *tc = tcase_create("delay");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, empty_window_has_no_percentiles);
    tcase_add_test(tc, percentiles_are_exact_and_interpolated);
    tcase_add_test(tc, window_keeps_the_last_1024);
    tcase_add_test(tc, histogram_is_fed_too);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(agg_metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
