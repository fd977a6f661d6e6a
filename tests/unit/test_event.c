/* Unit tests for shared/event.c. */
#include "event.h"

#include <check.h>
#include <math.h>
#include <string.h>

START_TEST(init_marks_everything_unknown)
{
    sn_event ev;
    sn_event_init(&ev);
    double v = 123.0;
    ck_assert(isnan(ev.cost_usd));
    ck_assert_int_eq(ev.cost_source, SN_COST_UNKNOWN);
    ck_assert(!sn_event_metric(&ev, SN_METRIC_LATENCY_MS, &v));
    ck_assert(!sn_event_metric(&ev, SN_METRIC_COST_USD, &v));
    ck_assert(!sn_event_metric(&ev, SN_METRIC_INPUT_TOKENS, &v));
    ck_assert(!sn_event_metric(&ev, SN_METRIC_TOKENS_PER_SECOND, &v));
    ck_assert_double_eq(v, 123.0);
    /* error_rate is always known: an event is either an error or not. */
    ck_assert(sn_event_metric(&ev, SN_METRIC_ERROR_RATE, &v));
    ck_assert_double_eq(v, 0.0);
}
END_TEST

START_TEST(metrics_read_the_fields)
{
    sn_event ev;
    sn_event_init(&ev);
    ev.latency_ms = 2000.0;
    ev.output_tokens = 500;
    ev.input_tokens = 0;
    ev.cost_usd = 0.25;
    ev.is_error = true;
    double v;
    ck_assert(sn_event_metric(&ev, SN_METRIC_TOKENS_PER_SECOND, &v));
    ck_assert_double_eq_tol(v, 250.0, 1e-9);
    ck_assert(sn_event_metric(&ev, SN_METRIC_INPUT_TOKENS, &v));
    ck_assert_double_eq(v, 0.0);
    /* A cost value with no source is still unknown. */
    ck_assert(!sn_event_metric(&ev, SN_METRIC_COST_USD, &v));
    ev.cost_source = SN_COST_SPAN;
    ck_assert(sn_event_metric(&ev, SN_METRIC_COST_USD, &v));
    ck_assert_double_eq(v, 0.25);
    ck_assert(sn_event_metric(&ev, SN_METRIC_ERROR_RATE, &v));
    ck_assert_double_eq(v, 1.0);
    ev.latency_ms = 0.0;
    ck_assert(!sn_event_metric(&ev, SN_METRIC_TOKENS_PER_SECOND, &v));
    ev.latency_ms = INFINITY;
    ck_assert(!sn_event_metric(&ev, SN_METRIC_LATENCY_MS, &v));
}
END_TEST

START_TEST(metric_names_round_trip)
{
    for (int i = 0; i < SN_METRIC_COUNT; i++) {
        sn_metric m;
        ck_assert_int_eq(sn_metric_from_name(sn_metric_name((sn_metric)i), &m), 0);
        ck_assert_int_eq(m, i);
    }
    sn_metric m;
    ck_assert_int_eq(sn_metric_from_name("latency", &m), -1);
    ck_assert_str_eq(sn_metric_name(SN_METRIC_COUNT), "unknown");
}
END_TEST

START_TEST(truncation_keeps_utf8_whole)
{
    char buf[6];
    ck_assert(sn_copy_truncated(buf, sizeof buf, "abc", 3));
    ck_assert_str_eq(buf, "abc");
    /* "abcd" + U+00E9 (2 bytes): 6 bytes do not fit in 5, and the e-acute is not split. */
    ck_assert(!sn_copy_truncated(buf, sizeof buf, "abcd\xc3\xa9", 6));
    ck_assert_str_eq(buf, "abcd");
    /* A 3-byte sequence starting at offset 3 is dropped whole. */
    ck_assert(!sn_copy_truncated(buf, sizeof buf, "abc\xe2\x82\xac", 6));
    ck_assert_str_eq(buf, "abc");
    ck_assert(!sn_copy_truncated(buf, sizeof buf, "abcdefgh", 8));
    ck_assert_str_eq(buf, "abcde");
}
END_TEST

/* sn_event_metrics gives, for every metric, what sn_event_metric gives: known or not, and the
 * same bits -- over events that miss each metric in every way (unknown, negative, NaN, Inf,
 * zero latency, a cost with no source). */
START_TEST(metrics_at_once_agree_with_one_at_a_time)
{
    static const double reals[] = {NAN, INFINITY, -INFINITY, 0.0, -3.5, 0.25, 1234.5678};
    static const int64_t counts[] = {SN_UNKNOWN_COUNT, -7, 0, 1, 4096};
    const size_t nr = sizeof reals / sizeof reals[0], nc = sizeof counts / sizeof counts[0];
    unsigned seen_known = 0, seen_unknown = 0;
    for (size_t k = 0; k < nr * nr * nc * nc * 3; k++) {
        size_t r = k;
        sn_event ev;
        sn_event_init(&ev);
        ev.latency_ms = reals[r % nr];
        r /= nr;
        ev.ttft_ms = ev.cost_usd = reals[r % nr];
        r /= nr;
        ev.input_tokens = ev.total_tokens = counts[r % nc];
        r /= nc;
        ev.output_tokens = counts[r % nc];
        r /= nc;
        ev.cost_source = r == 0 ? SN_COST_UNKNOWN : SN_COST_PRICE_TABLE;
        ev.is_error = r == 2;
        double all[SN_METRIC_COUNT];
        unsigned have = sn_event_metrics(&ev, all);
        ck_assert_uint_eq(have >> SN_METRIC_COUNT, 0);
        for (int m = 0; m < SN_METRIC_COUNT; m++) {
            double one = -1.0;
            bool known = sn_event_metric(&ev, (sn_metric)m, &one);
            ck_assert_int_eq(known, (have >> m) & 1u);
            if (known) {
                ck_assert_mem_eq(&all[m], &one, sizeof one);
                seen_known |= 1u << m;
            } else {
                seen_unknown |= 1u << m;
            }
        }
    }
    /* every metric was seen known, and every one but error_rate unknown */
    ck_assert_uint_eq(seen_known, (1u << SN_METRIC_COUNT) - 1);
    ck_assert_uint_eq(seen_unknown, ((1u << SN_METRIC_COUNT) - 1) & ~(1u << SN_METRIC_ERROR_RATE));
}
END_TEST

static Suite *event_suite(void)
{
    Suite *s = suite_create("event");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, init_marks_everything_unknown);
    tcase_add_test(tc, metrics_read_the_fields);
    tcase_add_test(tc, metrics_at_once_agree_with_one_at_a_time);
    tcase_add_test(tc, metric_names_round_trip);
    tcase_add_test(tc, truncation_keeps_utf8_whole);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(event_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
