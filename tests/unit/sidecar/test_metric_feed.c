/*
 * Unit tests for sidecar/metric_feed.c: GenAI metric points become aggregates only for
 * (service, model) pairs without recent spans; cumulative points are differenced; the
 * conversion (errors, cost from the price table, unknown stays unknown); a refused request's
 * points taken back (undo) leave the state as before.
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

static sn_metric_feed *make(void)
{
    sn_metric_feed_config cfg;
    sn_metric_feed_config_defaults(&cfg);
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
    sn_metric_feed *f = make();
    sn_metric_feed_note_span(f, "chat", "gpt-4o", T0);
    ck_assert(sn_metric_feed_covered(f, "chat", "gpt-4o", T0 + 60 * SEC));
    ck_assert(!sn_metric_feed_covered(f, "chat", "gpt-4o-mini", T0));
    ck_assert(!sn_metric_feed_covered(f, "chatg", "pt-4o", T0)); /* same bytes, other pair */

    sn_metric_fact a = fact("chat", "gpt-4o", SN_METRIC_LATENCY_MS, T0 + 10 * SEC, 5, 5000.0);
    sn_metric_fact b = fact("chat", "gpt-4o-mini", SN_METRIC_LATENCY_MS, T0 + 10 * SEC, 5, 5000.0);
    sn_aggregate out[2];
    sn_metric_delta_change ch;
    ck_assert_int_eq(sn_metric_feed_add(f, &a, T0 + 10 * SEC, &out[0], &ch),
                     SN_METRIC_FEED_COVERED);
    ck_assert_int_eq(sn_metric_feed_add(f, &b, T0 + 10 * SEC, &out[0], &ch), SN_METRIC_FEED_QUEUED);
    /* 5 minutes after the last span the pair is no longer covered */
    int64_t later = T0 + 5 * 60 * SEC + SEC;
    ck_assert(!sn_metric_feed_covered(f, "chat", "gpt-4o", later));
    a.end_unix_nano = later;
    a.start_unix_nano = later - 10 * SEC;
    ck_assert_int_eq(sn_metric_feed_add(f, &a, later, &out[1], &ch), SN_METRIC_FEED_QUEUED);
    /* expire forgets idle pairs */
    sn_metric_feed_stats st;
    sn_metric_feed_get_stats(f, &st);
    ck_assert_uint_eq(st.pairs, 1);
    sn_metric_feed_expire(f, later);
    sn_metric_feed_get_stats(f, &st);
    ck_assert_uint_eq(st.pairs, 0);
    ck_assert_uint_eq(st.outcomes[SN_METRIC_FEED_COVERED], 1);
    ck_assert_uint_eq(st.outcomes[SN_METRIC_FEED_QUEUED], 2);
    ck_assert_str_eq(out[0].model, "gpt-4o-mini");
    ck_assert_str_eq(out[1].model, "gpt-4o");
    sn_metric_feed_destroy(f);
}
END_TEST

START_TEST(cumulative_points_are_differenced)
{
    sn_metric_feed *f = make();
    /* a series that started before the sidecar: its first point only sets the baseline */
    sn_metric_fact c = fact("chat", "gpt-4o", SN_METRIC_INPUT_TOKENS, T0 + 60 * SEC, 100, 10000.0);
    c.temporality = SN_METRIC_TEMPORALITY_CUMULATIVE;
    c.start_unix_nano = T0 - 3600 * SEC;
    sn_aggregate g, g2;
    sn_metric_delta_change ch;
    ck_assert_int_eq(sn_metric_feed_add(f, &c, T0 + 60 * SEC, &g, &ch), SN_METRIC_FEED_BASELINE);
    c.end_unix_nano += 60 * SEC;
    c.count = 130;
    c.sum = 13600.0;
    ck_assert_int_eq(sn_metric_feed_add(f, &c, T0 + 120 * SEC, &g, &ch), SN_METRIC_FEED_QUEUED);
    ck_assert_int_eq(sn_metric_feed_add(f, &c, T0 + 121 * SEC, &g2, &ch), SN_METRIC_FEED_UNCHANGED);
    ck_assert_uint_eq(g.count, 30);
    ck_assert_double_eq_tol(g.sum, 3600.0, 1e-9);
    ck_assert_int_eq(g.start_unix_nano, T0 + 60 * SEC);
    ck_assert_int_eq(g.end_unix_nano, T0 + 120 * SEC);
    sn_metric_feed_destroy(f);
}
END_TEST

/* A request refused after its points went through the feed (its journal write failed) is
 * taken back newest first: the retry computes the same deltas, so no call is counted twice or
 * lost -- for a cumulative series' baseline, its increase, a reset, and delta points. */
START_TEST(undo_leaves_the_state_unchanged)
{
    sn_metric_feed *f = make();
    sn_metric_fact c = fact("chat", "gpt-4o", SN_METRIC_INPUT_TOKENS, T0 + 60 * SEC, 100, 10000.0);
    c.temporality = SN_METRIC_TEMPORALITY_CUMULATIVE;
    c.start_unix_nano = T0 - 3600 * SEC;
    sn_aggregate g;
    sn_metric_delta_change ch[4];
    sn_metric_feed_outcome o[4];
    ck_assert_int_eq(sn_metric_feed_add(f, &c, T0 + 60 * SEC, &g, &ch[0]), SN_METRIC_FEED_BASELINE);

    /* the request: the known series grows by 30, a new series starts, a delta point */
    sn_metric_fact up = c;
    up.end_unix_nano += 60 * SEC;
    up.count = 130;
    up.sum = 13600.0;
    sn_metric_fact fresh = fact("chatbot", "gpt-4o", SN_METRIC_LATENCY_MS, T0 + 120 * SEC, 7, 70.0);
    fresh.temporality = SN_METRIC_TEMPORALITY_CUMULATIVE;
    fresh.start_unix_nano = T0 - 3600 * SEC; /* older than the sidecar: a baseline */
    sn_metric_fact d = fact("chat", "gpt-4o-mini", SN_METRIC_LATENCY_MS, T0 + 120 * SEC, 3, 30.0);
    const sn_metric_fact *req[3] = {&up, &fresh, &d};
    sn_aggregate first[3];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 3; i++)
            o[i] = sn_metric_feed_add(f, req[i], T0 + 120 * SEC, &first[i], &ch[i]);
        ck_assert_int_eq(o[0], SN_METRIC_FEED_QUEUED);
        ck_assert_int_eq(o[1], SN_METRIC_FEED_BASELINE);
        ck_assert_int_eq(o[2], SN_METRIC_FEED_QUEUED);
        ck_assert_uint_eq(first[0].count, 30);
        ck_assert_double_eq_tol(first[0].sum, 3600.0, 1e-9);
        ck_assert_uint_eq(first[2].count, 3);
        if (round == 1)
            break;
        /* refused: taken back, newest first */
        for (int i = 3; i-- > 0;)
            sn_metric_feed_undo(f, o[i], &ch[i]);
        sn_metric_feed_stats st;
        sn_metric_feed_get_stats(f, &st);
        ck_assert_uint_eq(st.outcomes[SN_METRIC_FEED_QUEUED], 0);
        ck_assert_uint_eq(st.outcomes[SN_METRIC_FEED_BASELINE], 1);
    }
    /* accepted the second time: now the same points are unchanged / old */
    ck_assert_int_eq(sn_metric_feed_add(f, &up, T0 + 121 * SEC, &g, &ch[3]),
                     SN_METRIC_FEED_UNCHANGED);
    sn_metric_feed_stats st;
    sn_metric_feed_get_stats(f, &st);
    ck_assert_uint_eq(st.outcomes[SN_METRIC_FEED_QUEUED], 2);
    ck_assert_uint_eq(st.outcomes[SN_METRIC_FEED_BASELINE], 2);
    ck_assert_str_eq(sn_metric_feed_outcome_name(SN_METRIC_FEED_COVERED), "covered");
    ck_assert_str_eq(sn_metric_feed_outcome_name(SN_METRIC_FEED_OUTCOME_COUNT), "unknown");
    sn_metric_feed_destroy(f);

    sn_metric_feed_config cfg;
    sn_metric_feed_config_defaults(&cfg);
    cfg.max_series = 0;
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
    tcase_add_test(tc, undo_leaves_the_state_unchanged);
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
