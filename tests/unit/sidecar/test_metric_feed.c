/*
 * Unit tests for sidecar/metric_feed.c: GenAI metric points become aggregates only for
 * (service, model) pairs without recent spans; cumulative points are differenced; the
 * conversion (errors, cost from the price table, unknown stays unknown); the bounded queue.
 */
#include "metric_feed.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define SEC INT64_C(1000000000)
#define T0  (INT64_C(1767225600) * SEC)

static sn_price_table *g_prices;

static void setup(void)
{
    char err[256];
    g_prices = sn_price_table_default(err, sizeof err);
    ck_assert_msg(g_prices != NULL, "%s", err);
}

static void teardown(void)
{
    sn_price_table_destroy(g_prices);
}

static sn_metric_fact fact(const char *svc, const char *model, sn_metric m, int64_t end,
                           uint64_t count, double sum)
{
    sn_metric_fact f;
    memset(&f, 0, sizeof f);
    snprintf(f.service, sizeof f.service, "%s", svc);
    snprintf(f.model, sizeof f.model, "%s", model);
    snprintf(f.provider, sizeof f.provider, "openai");
    snprintf(f.operation, sizeof f.operation, "chat");
    snprintf(f.region, sizeof f.region, "eu-west-1");
    f.metric = m;
    f.temporality = SN_METRIC_TEMPORALITY_DELTA;
    f.count = count;
    f.sum = sum;
    f.min = f.max = NAN;
    f.start_unix_nano = end - 10 * SEC;
    f.end_unix_nano = end;
    f.series_id = (uint64_t)m * 1000 + (uint64_t)strlen(svc);
    return f;
}

static sn_metric_feed *make(size_t pending)
{
    sn_metric_feed_config cfg;
    sn_metric_feed_config_defaults(&cfg);
    cfg.max_pending = pending;
    cfg.since_unix_nano = T0;
    sn_metric_feed *f = NULL;
    ck_assert_int_eq(sn_metric_feed_create(&cfg, g_prices, &f), 0);
    return f;
}

START_TEST(convert_keeps_the_facts_and_prices_tokens)
{
    sn_metric_fact d = fact("chat", "gpt-4o-mini", SN_METRIC_LATENCY_MS, T0, 7, 7000.0);
    d.min = 800.0;
    d.max = 1300.0;
    snprintf(d.error_type, sizeof d.error_type, "timeout");
    sn_aggregate g;
    sn_metric_feed_convert(&d, g_prices, &g);
    ck_assert_str_eq(g.service, "chat");
    ck_assert_str_eq(g.model, "gpt-4o-mini");
    ck_assert_str_eq(g.provider, "openai");
    ck_assert_str_eq(g.operation, "chat");
    ck_assert_str_eq(g.region, "eu-west-1");
    ck_assert_str_eq(g.error_type, "timeout");
    ck_assert_int_eq(g.metric, SN_METRIC_LATENCY_MS);
    ck_assert_uint_eq(g.count, 7);
    ck_assert_uint_eq(g.error_count, 7); /* a point with error.type: every call failed */
    ck_assert_double_eq(g.sum, 7000.0);
    ck_assert_double_eq(g.min, 800.0);
    ck_assert_double_eq(g.max, 1300.0);
    ck_assert_int_eq(g.start_unix_nano, T0 - 10 * SEC);
    ck_assert_int_eq(g.end_unix_nano, T0);
    ck_assert(isnan(g.cost_usd)); /* durations have no cost */

    /* gpt-4o-mini: 0.15 USD input, 0.60 USD output per million tokens */
    sn_metric_fact in = fact("chat", "gpt-4o-mini", SN_METRIC_INPUT_TOKENS, T0, 10, 1e6);
    sn_metric_feed_convert(&in, g_prices, &g);
    ck_assert_uint_eq(g.error_count, 0);
    ck_assert_double_eq_tol(g.cost_usd, 0.15, 1e-12);
    sn_metric_fact out = fact("chat", "gpt-4o-mini", SN_METRIC_OUTPUT_TOKENS, T0, 10, 1e6);
    sn_metric_feed_convert(&out, g_prices, &g);
    ck_assert_double_eq_tol(g.cost_usd, 0.60, 1e-12);
    /* unknown model, unknown sum, no table: unknown cost, never 0 */
    sn_metric_fact unk = fact("chat", "my-own-llm", SN_METRIC_OUTPUT_TOKENS, T0, 10, 1e6);
    sn_metric_feed_convert(&unk, g_prices, &g);
    ck_assert(isnan(g.cost_usd));
    out.sum = NAN;
    sn_metric_feed_convert(&out, g_prices, &g);
    ck_assert(isnan(g.cost_usd));
    out.sum = 1e6;
    sn_metric_feed_convert(&out, NULL, &g);
    ck_assert(isnan(g.cost_usd));
}
END_TEST

START_TEST(pairs_with_recent_spans_are_covered)
{
    sn_metric_feed *f = make(16);
    sn_metric_feed_note_span(f, "chat", "gpt-4o", T0);
    ck_assert(sn_metric_feed_covered(f, "chat", "gpt-4o", T0 + 60 * SEC));
    ck_assert(!sn_metric_feed_covered(f, "chat", "gpt-4o-mini", T0));
    ck_assert(!sn_metric_feed_covered(f, "chatg", "pt-4o", T0)); /* same bytes, other pair */

    sn_metric_fact a = fact("chat", "gpt-4o", SN_METRIC_LATENCY_MS, T0 + 10 * SEC, 5, 5000.0);
    sn_metric_fact b = fact("chat", "gpt-4o-mini", SN_METRIC_LATENCY_MS, T0 + 10 * SEC, 5, 5000.0);
    ck_assert_int_eq(sn_metric_feed_add(f, &a, T0 + 10 * SEC), SN_METRIC_FEED_COVERED);
    ck_assert_int_eq(sn_metric_feed_add(f, &b, T0 + 10 * SEC), SN_METRIC_FEED_QUEUED);
    /* 5 minutes after the last span the pair is no longer covered */
    int64_t later = T0 + 5 * 60 * SEC + SEC;
    ck_assert(!sn_metric_feed_covered(f, "chat", "gpt-4o", later));
    a.end_unix_nano = later;
    a.start_unix_nano = later - 10 * SEC;
    ck_assert_int_eq(sn_metric_feed_add(f, &a, later), SN_METRIC_FEED_QUEUED);
    /* expire forgets idle pairs */
    sn_metric_feed_stats st;
    sn_metric_feed_get_stats(f, &st);
    ck_assert_uint_eq(st.pairs, 1);
    sn_metric_feed_expire(f, later);
    sn_metric_feed_get_stats(f, &st);
    ck_assert_uint_eq(st.pairs, 0);
    ck_assert_uint_eq(st.outcomes[SN_METRIC_FEED_COVERED], 1);
    ck_assert_uint_eq(st.outcomes[SN_METRIC_FEED_QUEUED], 2);
    ck_assert_uint_eq(st.pending, 2);
    sn_aggregate out[4];
    ck_assert_uint_eq(sn_metric_feed_take(f, out, 4), 2);
    ck_assert_str_eq(out[0].model, "gpt-4o-mini");
    ck_assert_str_eq(out[1].model, "gpt-4o");
    ck_assert_uint_eq(sn_metric_feed_take(f, out, 4), 0);
    sn_metric_feed_destroy(f);
}
END_TEST

START_TEST(cumulative_points_are_differenced)
{
    sn_metric_feed *f = make(16);
    /* a series that started before the sidecar: its first point only sets the baseline */
    sn_metric_fact c = fact("chat", "gpt-4o", SN_METRIC_INPUT_TOKENS, T0 + 60 * SEC, 100, 10000.0);
    c.temporality = SN_METRIC_TEMPORALITY_CUMULATIVE;
    c.start_unix_nano = T0 - 3600 * SEC;
    ck_assert_int_eq(sn_metric_feed_add(f, &c, T0 + 60 * SEC), SN_METRIC_FEED_BASELINE);
    c.end_unix_nano += 60 * SEC;
    c.count = 130;
    c.sum = 13600.0;
    ck_assert_int_eq(sn_metric_feed_add(f, &c, T0 + 120 * SEC), SN_METRIC_FEED_QUEUED);
    ck_assert_int_eq(sn_metric_feed_add(f, &c, T0 + 121 * SEC), SN_METRIC_FEED_UNCHANGED);
    sn_aggregate g;
    ck_assert_uint_eq(sn_metric_feed_take(f, &g, 1), 1);
    ck_assert_uint_eq(g.count, 30);
    ck_assert_double_eq_tol(g.sum, 3600.0, 1e-9);
    ck_assert_int_eq(g.start_unix_nano, T0 + 60 * SEC);
    ck_assert_int_eq(g.end_unix_nano, T0 + 120 * SEC);
    sn_metric_feed_destroy(f);
}
END_TEST

START_TEST(the_queue_is_bounded)
{
    sn_metric_feed *f = make(4);
    ck_assert(!sn_metric_feed_busy(f));
    for (int i = 0; i < 6; i++) {
        sn_metric_fact d =
            fact("chat", "gpt-4o", SN_METRIC_LATENCY_MS, T0 + (i + 1) * 10 * SEC, 1, 1000.0 + i);
        ck_assert_int_eq(sn_metric_feed_add(f, &d, T0),
                         i < 4 ? SN_METRIC_FEED_QUEUED : SN_METRIC_FEED_DROPPED);
        ck_assert(sn_metric_feed_busy(f) == (i >= 2));
    }
    sn_metric_feed_stats st;
    sn_metric_feed_get_stats(f, &st);
    ck_assert_uint_eq(st.outcomes[SN_METRIC_FEED_DROPPED], 2);
    sn_aggregate out[3];
    ck_assert_uint_eq(sn_metric_feed_take(f, out, 3), 3);
    ck_assert_double_eq(out[0].sum, 1000.0);
    ck_assert_double_eq(out[2].sum, 1002.0);
    ck_assert_uint_eq(sn_metric_feed_take(f, out, 3), 1);
    ck_assert_double_eq(out[0].sum, 1003.0);
    ck_assert_str_eq(sn_metric_feed_outcome_name(SN_METRIC_FEED_COVERED), "covered");
    ck_assert_str_eq(sn_metric_feed_outcome_name(SN_METRIC_FEED_OUTCOME_COUNT), "unknown");
    sn_metric_feed_destroy(f);

    sn_metric_feed_config cfg;
    sn_metric_feed_config_defaults(&cfg);
    cfg.max_pending = 0;
    ck_assert_int_eq(sn_metric_feed_create(&cfg, NULL, &f), -EINVAL);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("metric_feed");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, convert_keeps_the_facts_and_prices_tokens);
    tcase_add_test(tc, pairs_with_recent_spans_are_covered);
    tcase_add_test(tc, cumulative_points_are_differenced);
    tcase_add_test(tc, the_queue_is_bounded);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
