/*
 * Unit tests for sn_engine_aggregate (aggregator/engine.c): GenAI metric aggregates feed the
 * per-metric baselines with one sample per point (the interval's mean), count calls and errors
 * in the error-rate window, tokens and calls in the throughput buckets when the interval fits
 * one, and cost in the budgets; a shift of the interval mean raises the metric's anomaly marked
 * with the point's call count.
 */
#include "engine.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define SEC  INT64_C(1000000000)
#define T0   (INT64_C(1767225600) * SEC)
#define KEEP 64

typedef struct sink {
    unsigned total;
    unsigned by_type[SN_ANOMALY_TYPE_COUNT];
    unsigned kept;
    sn_anomaly a[KEEP];
} sink;

static void collect(const sn_anomaly *a, void *ud)
{
    sink *s = ud;
    s->total++;
    s->by_type[a->anomaly_type]++;
    if (s->kept < KEEP)
        s->a[s->kept++] = *a;
}

static const sn_anomaly *find(const sink *s, sn_anomaly_type t)
{
    for (unsigned i = 0; i < s->kept; i++)
        if (s->a[i].anomaly_type == t)
            return &s->a[i];
    return NULL;
}

static sn_engine *make(const char *budget)
{
    sn_engine_config cfg;
    sn_engine_config_defaults(&cfg);
    cfg.memory_budget = 64 << 20;
    if (budget != NULL) {
        snprintf(cfg.budgets.items[0], sizeof cfg.budgets.items[0], "%s", budget);
        cfg.budgets.count = 1;
    }
    sn_engine *e = NULL;
    sn_config_error err = {{0}};
    ck_assert_msg(sn_engine_create(&e, &cfg, 42, &err) == 0, "create: %s", err.msg);
    return e;
}

/* One aggregate of `count` calls over [end - len, end) with mean `mean`. */
static sn_aggregate agg(const char *svc, sn_metric m, int64_t end, int64_t len, uint64_t count,
                        double mean)
{
    sn_aggregate g;
    memset(&g, 0, sizeof g);
    snprintf(g.service, sizeof g.service, "%s", svc);
    snprintf(g.model, sizeof g.model, "gpt-4o");
    snprintf(g.provider, sizeof g.provider, "openai");
    g.metric = m;
    g.start_unix_nano = end - len;
    g.end_unix_nano = end;
    g.count = count;
    g.sum = mean * (double)count;
    g.min = g.max = g.cost_usd = NAN;
    return g;
}

static uint64_t seen(sn_engine *e, const char *svc, sn_metric m)
{
    sn_baseline_entry *en = sn_baseline_find(sn_engine_baselines(e), svc, "gpt-4o", m);
    return en != NULL ? sn_baseline_entry_seen(en) : 0;
}

START_TEST(interval_means_build_baselines_and_a_shift_fires)
{
    sn_engine *e = make(NULL);
    sink s;
    memset(&s, 0, sizeof s);
    int64_t t = T0;
    for (int i = 0; i < 40; i++) {
        double j = 1.0 + (double)((i * 37) % 11 - 5) / 100.0; /* +-5 % */
        t += 10 * SEC;
        sn_aggregate d = agg("chat", SN_METRIC_LATENCY_MS, t, 10 * SEC, 5, 1000.0 * j);
        sn_aggregate in = agg("chat", SN_METRIC_INPUT_TOKENS, t, 10 * SEC, 5, 100.0 * j);
        sn_aggregate out = agg("chat", SN_METRIC_OUTPUT_TOKENS, t, 10 * SEC, 5, 50.0 * j);
        sn_engine_aggregate(e, &d, collect, &s);
        sn_engine_aggregate(e, &in, collect, &s);
        sn_engine_aggregate(e, &out, collect, &s);
    }
    ck_assert_uint_eq(s.total, 0);
    /* one sample per point, whatever its call count */
    ck_assert_uint_eq(seen(e, "chat", SN_METRIC_LATENCY_MS), 40);
    ck_assert_uint_eq(seen(e, "chat", SN_METRIC_INPUT_TOKENS), 40);
    ck_assert_uint_eq(seen(e, "chat", SN_METRIC_OUTPUT_TOKENS), 40);
    ck_assert_uint_eq(seen(e, "chat", SN_METRIC_TOTAL_TOKENS), 0);
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.aggregates, 120);
    ck_assert_uint_eq(st.aggregate_calls, 200); /* duration points only */
    ck_assert_uint_eq(st.aggregate_tp_skipped, 0);

    /* the interval mean jumps to 20 s */
    t += 10 * SEC;
    sn_aggregate d = agg("chat", SN_METRIC_LATENCY_MS, t, 10 * SEC, 5, 20000.0);
    ck_assert_uint_eq(sn_engine_aggregate(e, &d, collect, &s), 1);
    const sn_anomaly *a = find(&s, SN_ANOMALY_LATENCY_SPIKE);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->metric, SN_METRIC_LATENCY_MS);
    ck_assert_double_eq_tol(a->value, 20000.0, 1e-9);
    ck_assert(a->baseline > 950.0 && a->baseline < 1050.0);
    ck_assert_uint_eq(a->calls, 5);
    ck_assert_str_eq(a->time_window, "interval_10s");
    ck_assert_int_eq(a->source, SN_SOURCE_AGGREGATOR);
    /* and the token means */
    t += 10 * SEC;
    sn_aggregate in = agg("chat", SN_METRIC_INPUT_TOKENS, t, 10 * SEC, 5, 5000.0);
    sn_engine_aggregate(e, &in, collect, &s);
    a = find(&s, SN_ANOMALY_TOKEN_SPIKE);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->metric, SN_METRIC_INPUT_TOKENS);
    ck_assert_uint_eq(a->calls, 5);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(errors_count_in_the_error_window_not_in_the_baselines)
{
    sn_engine *e = make(NULL);
    sink s;
    memset(&s, 0, sizeof s);
    int64_t t = T0;
    /* 20 calls per 10 s, all fine, for 10 minutes */
    for (int i = 0; i < 60; i++) {
        t += 10 * SEC;
        sn_aggregate d = agg("chat", SN_METRIC_LATENCY_MS, t, 10 * SEC, 20, 1000.0 + i % 7);
        sn_engine_aggregate(e, &d, collect, &s);
    }
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_ERROR_RATE], 0);
    /* then half of them fail with a rate limit: a point of their own, with error.type */
    for (int i = 0; i < 3; i++) {
        t += 10 * SEC;
        sn_aggregate ok = agg("chat", SN_METRIC_LATENCY_MS, t, 10 * SEC, 10, 1000.0);
        sn_aggregate bad = agg("chat", SN_METRIC_LATENCY_MS, t, 10 * SEC, 10, 50.0);
        snprintf(bad.error_type, sizeof bad.error_type, "rate_limit_exceeded");
        bad.error_count = 10;
        sn_engine_aggregate(e, &ok, collect, &s);
        sn_engine_aggregate(e, &bad, collect, &s);
    }
    const sn_anomaly *a = find(&s, SN_ANOMALY_ERROR_RATE);
    ck_assert_ptr_nonnull(a);
    ck_assert_str_eq(a->error_type, "rate_limit_exceeded");
    ck_assert(a->value > 0.05); /* the first window over the floor: 10 of 120 calls */
    /* the failed calls' fast durations are not latency samples */
    ck_assert_uint_eq(seen(e, "chat", SN_METRIC_LATENCY_MS), 63);
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_LATENCY_DROP], 0);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(throughput_takes_intervals_that_fit_a_bucket)
{
    sn_engine *e = make(NULL);
    sink s;
    memset(&s, 0, sizeof s);
    int64_t t = T0;
    /* 60 s points (the SDK's default export interval) cannot be placed in 10 s buckets */
    sn_aggregate in = agg("chat", SN_METRIC_INPUT_TOKENS, t + 60 * SEC, 60 * SEC, 30, 100.0);
    sn_engine_aggregate(e, &in, collect, &s);
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.aggregate_tp_skipped, 1);
    /* 10 s points can: a steady rate for 10 minutes, then silence, is a throughput drop */
    for (int i = 0; i < 60; i++) {
        t += 10 * SEC;
        sn_aggregate d = agg("chat", SN_METRIC_LATENCY_MS, t, 10 * SEC, 10, 1000.0);
        sn_aggregate o = agg("chat", SN_METRIC_OUTPUT_TOKENS, t, 10 * SEC, 10, 50.0);
        sn_engine_aggregate(e, &d, collect, &s);
        sn_engine_aggregate(e, &o, collect, &s);
        sn_engine_tick(e, t + SEC, collect, &s);
    }
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_THROUGHPUT_DROP], 0);
    for (int i = 0; i < 120; i++)
        sn_engine_tick(e, t + (int64_t)i * SEC, collect, &s);
    ck_assert_uint_ge(s.by_type[SN_ANOMALY_THROUGHPUT_DROP], 1);
    const sn_anomaly *a = find(&s, SN_ANOMALY_THROUGHPUT_DROP);
    ck_assert_double_eq_tol(a->baseline, 50.0, 5.0); /* 10 x 50 tokens per 10 s */
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.aggregate_tp_skipped, 1);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(token_cost_feeds_budgets_and_unknown_cost_does_not)
{
    sn_engine *e = make("chat:day:10");
    sink s;
    memset(&s, 0, sizeof s);
    int64_t t = T0 + 3600 * SEC;
    sn_aggregate unknown = agg("chat", SN_METRIC_INPUT_TOKENS, t, 10 * SEC, 1000, 1e6);
    sn_engine_aggregate(e, &unknown, collect, &s);
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_BUDGET], 0);
    for (int i = 0; i < 3; i++) {
        t += 10 * SEC;
        sn_aggregate g = agg("chat", SN_METRIC_OUTPUT_TOKENS, t, 10 * SEC, 100, 1000.0);
        g.cost_usd = 4.0;
        sn_engine_aggregate(e, &g, collect, &s);
    }
    /* 8 USD: the soft level (80 % of 10); 12 USD: over the hard one */
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_BUDGET], 2);
    ck_assert_double_eq_tol(s.a[0].value, 8.0, 1e-9);
    ck_assert_double_eq_tol(s.a[1].value, 12.0, 1e-9);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(bad_aggregates_are_refused)
{
    sn_engine *e = make(NULL);
    sink s;
    memset(&s, 0, sizeof s);
    sn_aggregate g = agg("", SN_METRIC_LATENCY_MS, T0, 10 * SEC, 5, 1000.0);
    ck_assert_uint_eq(sn_engine_aggregate(e, &g, collect, &s), 0);
    g = agg("chat", SN_METRIC_LATENCY_MS, T0, 10 * SEC, 0, 1000.0);
    ck_assert_uint_eq(sn_engine_aggregate(e, &g, collect, &s), 0);
    g = agg("chat", SN_METRIC_COUNT, T0, 10 * SEC, 5, 1000.0);
    ck_assert_uint_eq(sn_engine_aggregate(e, &g, collect, &s), 0);
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.refused, 3);
    ck_assert_uint_eq(seen(e, "chat", SN_METRIC_LATENCY_MS), 0);
    /* an unknown sum counts calls but is no sample */
    g = agg("chat", SN_METRIC_LATENCY_MS, T0, 10 * SEC, 5, 1000.0);
    g.sum = NAN;
    sn_engine_aggregate(e, &g, collect, &s);
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.aggregate_calls, 5);
    ck_assert_uint_eq(seen(e, "chat", SN_METRIC_LATENCY_MS), 0);
    sn_engine_destroy(e);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("engine_aggregate");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, interval_means_build_baselines_and_a_shift_fires);
    tcase_add_test(tc, errors_count_in_the_error_window_not_in_the_baselines);
    tcase_add_test(tc, throughput_takes_intervals_that_fit_a_bucket);
    tcase_add_test(tc, token_cost_feeds_budgets_and_unknown_cost_does_not);
    tcase_add_test(tc, bad_aggregates_are_refused);
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
