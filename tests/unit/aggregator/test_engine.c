/*
 * Unit tests for aggregator/engine.c on labelled streams: each anomaly type fires when it should
 * (latency, token and cost spikes, slow cost drift, error burst, throughput drop and silence,
 * budgets soft/hard, token-distribution and finish-reason drift), and the engine stays quiet on
 * normal, heavy-tailed and seasonal traffic; persistence filtering, related metrics, local alert
 * confirmation, configuration (descriptors, validation, run-time changes), memory per key and
 * idle expiry.
 */
#include "engine.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Allocation failure injection (the binary links with -Wl,--wrap=malloc,--wrap=calloc): the
 * allocation after fail_after successful ones fails, and all later ones; < 0: never. Check
 * allocates too, so no ck_* call may run while failures are armed. */
void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
static long fail_after = -1;

void *__wrap_malloc(size_t size)
{
    if (fail_after == 0)
        return NULL;
    if (fail_after > 0)
        fail_after--;
    return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (fail_after == 0)
        return NULL;
    if (fail_after > 0)
        fail_after--;
    return __real_calloc(n, size);
}

#define SEC  INT64_C(1000000000)
#define T0   (INT64_C(1767225600) * SEC) /* 2026-01-01 00:00 UTC, a Thursday */
#define KEEP 512

/* ---- helpers -----------------------------------------------------------------------------------
 */

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
    if (getenv("ENGINE_TEST_VERBOSE") != NULL)
        fprintf(stderr, "  %s %s %s %s value %g baseline %g threshold %g dev %g conf %.3f\n",
                sn_anomaly_type_name(a->anomaly_type), sn_metric_name(a->metric),
                sn_detector_name(a->method), sn_severity_name(a->severity), a->value, a->baseline,
                a->threshold, a->deviation_sigma, a->confidence);
    ck_assert_int_lt(a->anomaly_type, SN_ANOMALY_TYPE_COUNT);
    ck_assert_int_ge(a->confidence, 0.5);
    ck_assert(a->confidence <= 0.99);
    ck_assert_int_gt(a->severity, SN_SEV_NONE);
    ck_assert_str_ne(a->service, "");
    s->by_type[a->anomaly_type]++;
    if (s->kept < KEEP)
        s->a[s->kept++] = *a;
}

static void sink_reset(sink *s)
{
    memset(s, 0, sizeof(*s));
}

/* The first kept anomaly of type t, or NULL. */
static const sn_anomaly *find(const sink *s, sn_anomaly_type t)
{
    for (unsigned i = 0; i < s->kept; i++)
        if (s->a[i].anomaly_type == t)
            return &s->a[i];
    return NULL;
}

/* The first kept anomaly of type t found by detection method k, or NULL. */
static const sn_anomaly *find_by(const sink *s, sn_anomaly_type t, sn_detector_kind k)
{
    for (unsigned i = 0; i < s->kept; i++)
        if (s->a[i].anomaly_type == t && s->a[i].method == k)
            return &s->a[i];
    return NULL;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

/* Seeds the generator; ENGINE_TEST_SEED shifts every seed (to check that the assertions hold
 * on other random streams, not only on the fixed ones). */
static void seed(uint64_t s)
{
    const char *shift = getenv("ENGINE_TEST_SEED");
    if (shift != NULL)
        s = s * 1000003u + strtoull(shift, NULL, 10);
    rng = s ? s : 1;
}

static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(void)
{
    return sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform());
}

/* An LLM call of svc/model at time t. */
static sn_event call(const char *svc, const char *model, int64_t t, double latency, int64_t in,
                     int64_t out, double cost)
{
    sn_event ev;
    sn_event_init(&ev);
    snprintf(ev.service, sizeof ev.service, "%s", svc);
    snprintf(ev.model, sizeof ev.model, "%s", model);
    snprintf(ev.region, sizeof ev.region, "eu-west-1");
    ev.end_unix_nano = t;
    ev.start_unix_nano = t - (int64_t)(latency * 1e6);
    ev.latency_ms = latency;
    ev.input_tokens = in;
    ev.output_tokens = out;
    ev.total_tokens = in + out;
    ev.cost_usd = cost;
    ev.cost_source = SN_COST_PRICE_TABLE;
    snprintf(ev.finish_reason, sizeof ev.finish_reason, "stop");
    for (int i = 0; i < 16; i++)
        ev.trace_id[i] = (uint8_t)(i + 1);
    return ev;
}

/* A normal call: latency ~ 2000 +- 200 ms, 500 +- 50 input and 200 +- 20 output tokens, cost
 * from the tokens. */
static sn_event normal_call(const char *svc, int64_t t)
{
    int64_t in = (int64_t)(500 + 50 * normal()), out = (int64_t)(200 + 20 * normal());
    return call(svc, "gpt-4o", t, 2000 + 200 * normal(), in, out, in * 2.5e-6 + out * 10e-6);
}

static sn_engine *make(const sn_engine_config *cfg)
{
    sn_engine_config def;
    if (cfg == NULL) {
        sn_engine_config_defaults(&def);
        def.memory_budget = 64 << 20;
        cfg = &def;
    }
    sn_engine *e = NULL;
    sn_config_error err = {{0}};
    int rc = sn_engine_create(&e, cfg, 42, &err);
    ck_assert_msg(rc == 0, "create: %s", err.msg);
    return e;
}

/* Feeds n normal calls, one every `step`, starting at *t; asserts that they raised at most
 * 0.5 % false positives per event, then empties the sink. */
static void warm(sn_engine *e, const char *svc, int64_t *t, int n, int64_t step, sink *s)
{
    unsigned before = s->total;
    for (int i = 0; i < n; i++) {
        sn_event ev = normal_call(svc, *t);
        sn_engine_observe(e, &ev, collect, s);
        *t += step;
    }
    ck_assert_msg(s->total - before <= (unsigned)n / 100 + 2, "%u anomalies in %d normal calls",
                  s->total - before, n);
    sink_reset(s);
}

/* ---- configuration ------------------------------------------------------------------------------
 */

typedef struct prog {
    int64_t other;
    sn_engine_config engine;
} prog;

static const sn_config_desc descs[] = {
    SN_CFG_INT("other", prog, other, "1", 0, 10, "something else of the program"),
    SN_ENGINE_DESCRIPTORS("engine", prog, engine),
};
#define NDESCS (sizeof descs / sizeof descs[0])

static bool same(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

static void assert_same_ensemble(const sn_ensemble_config *a, const sn_ensemble_config *b)
{
    ck_assert_int_eq(a->zscore_enabled, b->zscore_enabled);
    ck_assert_int_eq(a->iqr_enabled, b->iqr_enabled);
    ck_assert_int_eq(a->mad_enabled, b->mad_enabled);
    ck_assert_int_eq(a->cusum_enabled, b->cusum_enabled);
    ck_assert_int_eq(a->threshold_enabled, b->threshold_enabled);
    ck_assert(same(a->zscore.threshold, b->zscore.threshold));
    ck_assert(same(a->zscore.high, b->zscore.high));
    ck_assert(same(a->zscore.critical, b->zscore.critical));
    ck_assert_uint_eq(a->zscore.min_samples, b->zscore.min_samples);
    ck_assert_int_eq(a->zscore.direction, b->zscore.direction);
    ck_assert(same(a->iqr.k, b->iqr.k));
    ck_assert(same(a->iqr.high_k, b->iqr.high_k));
    ck_assert(same(a->iqr.critical_k, b->iqr.critical_k));
    ck_assert_int_eq(a->iqr.direction, b->iqr.direction);
    ck_assert(same(a->mad.threshold, b->mad.threshold));
    ck_assert(same(a->mad.critical, b->mad.critical));
    ck_assert_int_eq(a->mad.direction, b->mad.direction);
    ck_assert(same(a->cusum.h, b->cusum.h));
    ck_assert(same(a->cusum.k, b->cusum.k));
    ck_assert(same(a->cusum.critical, b->cusum.critical));
    ck_assert_int_eq(a->cusum.direction, b->cusum.direction);
    ck_assert(same(a->threshold.upper_warn, b->threshold.upper_warn));
    ck_assert(same(a->threshold.upper_critical, b->threshold.upper_critical));
    ck_assert(same(a->threshold.lower_warn, b->threshold.lower_warn));
    ck_assert_uint_eq(a->min_agree, b->min_agree);
}

START_TEST(descriptor_defaults_equal_config_defaults)
{
    prog p;
    memset(&p, 0, sizeof p);
    sn_engine_config_defaults(&p.engine);
    sn_config *c = NULL;
    sn_config_error err = {{0}};
    ck_assert_msg(sn_config_create(&c, descs, NDESCS, &p, &err) == 0, "%s", err.msg);
    sn_engine_config def;
    sn_engine_config_defaults(&def);
    ck_assert_int_eq(p.engine.baseline_mode, def.baseline_mode);
    ck_assert_int_eq(p.engine.window, def.window);
    ck_assert_int_eq(p.engine.memory_budget, def.memory_budget);
    ck_assert_int_eq(p.engine.max_pairs, def.max_pairs);
    ck_assert_int_eq(p.engine.idle_expiry, def.idle_expiry);
    ck_assert_int_eq(p.engine.seasonal, def.seasonal);
    for (int k = 0; k < SN_DETECT_KIND_COUNT - 1; k++)
        ck_assert_int_eq(p.engine.persist[k], def.persist[k]);
    ck_assert_int_eq(p.engine.persist_critical, def.persist_critical);
    ck_assert_int_eq(p.engine.resume_learning, def.resume_learning);
    ck_assert_int_eq(p.engine.summary_refresh, def.summary_refresh);
    ck_assert_int_eq(p.engine.warmup, def.warmup);
    ck_assert_int_eq(p.engine.error_window, def.error_window);
    ck_assert_int_eq(p.engine.error_min_calls, def.error_min_calls);
    ck_assert(same(p.engine.error_floor, def.error_floor));
    ck_assert(same(p.engine.error_k, def.error_k));
    ck_assert(same(p.engine.error_z, def.error_z));
    ck_assert_int_eq(p.engine.tp_bucket, def.tp_bucket);
    ck_assert_int_eq(p.engine.tp_duration, def.tp_duration);
    ck_assert(same(p.engine.tp_ratio, def.tp_ratio));
    ck_assert(same(p.engine.tp_alpha, def.tp_alpha));
    ck_assert_int_eq(p.engine.tp_min_buckets, def.tp_min_buckets);
    ck_assert(same(p.engine.tp_min_calls, def.tp_min_calls));
    ck_assert_int_eq(p.engine.tp_grace, def.tp_grace);
    ck_assert_int_eq(p.engine.tp_relearn, def.tp_relearn);
    ck_assert_int_eq(p.engine.drift_window, def.drift_window);
    ck_assert_int_eq(p.engine.drift_min_baseline, def.drift_min_baseline);
    ck_assert(same(p.engine.psi_threshold, def.psi_threshold));
    ck_assert(same(p.engine.js_threshold, def.js_threshold));
    ck_assert(same(p.engine.budget_soft_ratio, def.budget_soft_ratio));
    ck_assert(same(p.engine.cold_trust, def.cold_trust));
    ck_assert_uint_eq(p.engine.budgets.count, 0);
    for (int m = 0; m < SN_METRIC_COUNT; m++) {
        if (m == SN_METRIC_ERROR_RATE)
            continue;
        ck_assert_int_eq(p.engine.metrics[m].transform, def.metrics[m].transform);
        ck_assert_int_eq(p.engine.metrics[m].direction, def.metrics[m].direction);
        sn_ensemble_config a, b;
        int64_t pa[SN_DETECT_KIND_COUNT], pb[SN_DETECT_KIND_COUNT];
        sn_engine_config_resolve(&p.engine, (sn_metric)m, &a, pa);
        sn_engine_config_resolve(&def, (sn_metric)m, &b, pb);
        assert_same_ensemble(&a, &b);
        for (int k = 0; k < SN_DETECT_KIND_COUNT; k++)
            ck_assert_int_eq(pa[k], pb[k]);
    }
    /* The resolved defaults: directions per metric, CUSUM only for latency and cost. */
    sn_ensemble_config r;
    int64_t pr[SN_DETECT_KIND_COUNT];
    sn_engine_config_resolve(&def, SN_METRIC_LATENCY_MS, &r, pr);
    ck_assert(r.cusum_enabled);
    ck_assert_int_eq(r.zscore.direction, SN_DIR_UPPER);
    ck_assert_int_eq(pr[SN_DETECT_ZSCORE], 3);
    ck_assert_int_eq(pr[SN_DETECT_CUSUM], 1);
    ck_assert_uint_eq(def.detect.min_agree, 2);
    ck_assert(!def.metrics[SN_METRIC_TOKENS_PER_SECOND].enabled);
    sn_engine_config_resolve(&def, SN_METRIC_TOKENS_PER_SECOND, &r, pr);
    ck_assert(!r.cusum_enabled);
    ck_assert_int_eq(r.mad.direction, SN_DIR_LOWER);
    sn_engine_config_resolve(&def, SN_METRIC_COST_USD, &r, pr);
    ck_assert(r.cusum_enabled);
    sn_engine_config_resolve(&def, SN_METRIC_OUTPUT_TOKENS, &r, pr);
    ck_assert(!r.cusum_enabled);
    sn_config_destroy(c);
}
END_TEST

START_TEST(yaml_overrides_per_metric)
{
    prog p;
    memset(&p, 0, sizeof p);
    sn_engine_config_defaults(&p.engine);
    sn_config *c = NULL;
    sn_config_error err = {{0}};
    ck_assert_int_eq(sn_config_create(&c, descs, NDESCS, &p, &err), 0);
    const char *yaml = "engine:\n"
                       "  detect:\n"
                       "    zscore:\n"
                       "      threshold: 3.5\n"
                       "      persistence: 3\n"
                       "  metrics:\n"
                       "    latency_ms:\n"
                       "      zscore:\n"
                       "        threshold: 4.5\n"
                       "        high: 5\n"
                       "        persistence: 1\n"
                       "      cusum:\n"
                       "        enabled: false\n"
                       "      threshold:\n"
                       "        enabled: true\n"
                       "        upper_critical: 30000\n"
                       "  budgets: ['chatbot:day:100', '*:month:5000', '*:hour:2:per_user']\n"
                       "  seasonal:\n"
                       "    enabled: true\n";
    ck_assert_msg(sn_config_load_yaml(c, yaml, strlen(yaml), "t.yaml", &err) == 0, "%s", err.msg);
    ck_assert_int_eq(sn_engine_config_validate(&p.engine, "engine", &err), 0);
    sn_ensemble_config r;
    int64_t pr[SN_DETECT_KIND_COUNT];
    sn_engine_config_resolve(&p.engine, SN_METRIC_LATENCY_MS, &r, pr);
    ck_assert_double_eq(r.zscore.threshold, 4.5);
    ck_assert_double_eq(r.zscore.high, 5.0);
    ck_assert_double_eq(r.zscore.critical, 6.0);
    ck_assert_int_eq(pr[SN_DETECT_ZSCORE], 1);
    ck_assert(!r.cusum_enabled);
    ck_assert(r.threshold_enabled);
    ck_assert_double_eq(r.threshold.upper_critical, 30000.0);
    sn_engine_config_resolve(&p.engine, SN_METRIC_COST_USD, &r, pr);
    ck_assert_double_eq(r.zscore.threshold, 3.5); /* the engine-wide value */
    ck_assert_int_eq(pr[SN_DETECT_ZSCORE], 3);
    ck_assert(r.cusum_enabled);
    ck_assert(!r.threshold_enabled);
    ck_assert_uint_eq(p.engine.budgets.count, 3);
    ck_assert(p.engine.seasonal);

    /* Live and non-live settings through the API path. */
    json_t *ch = json_pack("{s:{s:{s:{s:{s:f}}}}}", "engine", "metrics", "cost_usd", "zscore",
                           "threshold", 5.0);
    ck_assert_int_eq(sn_config_apply_json(c, ch, NULL, &err), 0);
    json_decref(ch);
    sn_engine_config_resolve(&p.engine, SN_METRIC_COST_USD, &r, pr);
    ck_assert_double_eq(r.zscore.threshold, 5.0);
    ch = json_pack("{s:{s:{s:s}}}", "engine", "baseline", "mode", "exact");
    ck_assert_int_eq(sn_config_apply_json(c, ch, NULL, &err), -EINVAL);
    json_decref(ch);
    ck_assert_ptr_nonnull(strstr(err.msg, "engine.baseline.mode"));
    sn_config_destroy(c);
}
END_TEST

/* Validates cfg expecting a message that names `field`. */
static void expect_bad(const sn_engine_config *cfg, const char *field)
{
    sn_config_error err = {{0}};
    ck_assert_int_eq(sn_engine_config_validate(cfg, "engine", &err), -EINVAL);
    ck_assert_msg(strstr(err.msg, field) != NULL, "'%s' does not name %s", err.msg, field);
    ck_assert_msg(strncmp(err.msg, "config: ", 8) == 0, "%s", err.msg);
    sn_engine *e = (sn_engine *)&err; /* must stay untouched */
    sn_engine *before = e;
    ck_assert_int_eq(sn_engine_create(&e, cfg, 1, &err), -EINVAL);
    ck_assert_ptr_eq(e, before);
}

START_TEST(config_validation_names_the_field)
{
    sn_engine_config c;
    sn_engine_config_defaults(&c);
    sn_config_error err = {{0}};
    ck_assert_int_eq(sn_engine_config_validate(&c, "engine", &err), 0);

    c.metrics[SN_METRIC_LATENCY_MS].zscore.high = 2.0; /* below the inherited threshold 3 */
    expect_bad(&c, "engine.metrics.latency_ms.zscore");
    sn_engine_config_defaults(&c);
    c.detect.iqr.k = -1;
    expect_bad(&c, "engine.detect.iqr");
    sn_engine_config_defaults(&c);
    c.metrics[SN_METRIC_COST_USD].upper_warn = 5.0;
    c.metrics[SN_METRIC_COST_USD].upper_critical = 1.0;
    c.metrics[SN_METRIC_COST_USD].threshold_enabled = SN_ENGINE_ON;
    expect_bad(&c, "engine.metrics.cost_usd.threshold");
    sn_engine_config_defaults(&c);
    c.error_floor = 1.5;
    expect_bad(&c, "engine.error_rate.floor");
    sn_engine_config_defaults(&c);
    c.tp_ratio = 0.0;
    expect_bad(&c, "engine.throughput.ratio");
    sn_engine_config_defaults(&c);
    c.tp_relearn = c.tp_duration - 1;
    expect_bad(&c, "engine.throughput.relearn");
    sn_engine_config_defaults(&c);
    c.drift_window = 10;
    expect_bad(&c, "engine.drift.window");
    sn_engine_config_defaults(&c);
    c.persist[SN_DETECT_MAD] = 0;
    expect_bad(&c, "engine.detect.mad.persistence");
    sn_engine_config_defaults(&c);
    c.metrics[SN_METRIC_TTFT_MS].iqr.persistence = 300;
    expect_bad(&c, "engine.metrics.ttft_ms.iqr.persistence");
    sn_engine_config_defaults(&c);
    c.budgets.count = 2;
    snprintf(c.budgets.items[0], SN_CONFIG_ITEM_MAX, "chatbot:day:10");
    snprintf(c.budgets.items[1], SN_CONFIG_ITEM_MAX, "chatbot:week:10");
    expect_bad(&c, "engine.budgets[1]: period");
    snprintf(c.budgets.items[1], SN_CONFIG_ITEM_MAX, "chatbot:day:-3");
    expect_bad(&c, "engine.budgets[1]: amount_usd");
    snprintf(c.budgets.items[1], SN_CONFIG_ITEM_MAX, "day:10");
    expect_bad(&c, "engine.budgets[1]");
    snprintf(c.budgets.items[1], SN_CONFIG_ITEM_MAX, "a:b:c:day:10:per_user");
    ck_assert_int_eq(sn_engine_config_validate(&c, "engine", &err), 0); /* service "a:b:c" */
    sn_engine_config_defaults(&c);
    c.memory_budget = 100;
    expect_bad(&c, "engine.baseline.memory_budget");
}
END_TEST

START_TEST(set_config_swaps_live_settings_only)
{
    sn_engine *e = make(NULL);
    sn_engine_config c = *sn_engine_get_config(e);
    sn_config_error err = {{0}};
    c.window = 500;
    ck_assert_int_eq(sn_engine_set_config(e, &c, &err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "engine.baseline.window"));
    ck_assert_int_eq(sn_engine_get_config(e)->window, 1000);
    c = *sn_engine_get_config(e);
    c.metrics[SN_METRIC_COST_USD].transform = SN_TRANSFORM_NONE;
    ck_assert_int_eq(sn_engine_set_config(e, &c, &err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "engine.metrics.cost_usd.transform"));
    c = *sn_engine_get_config(e);
    c.error_floor = 7; /* invalid: nothing changes */
    ck_assert_int_eq(sn_engine_set_config(e, &c, &err), -EINVAL);
    ck_assert_double_eq(sn_engine_get_config(e)->error_floor, 0.05);

    /* A live change takes effect on the next event: the static threshold level. */
    sink s;
    sink_reset(&s);
    int64_t t = T0;
    warm(e, "svc", &t, 300, SEC, &s);
    c = *sn_engine_get_config(e);
    c.metrics[SN_METRIC_LATENCY_MS].threshold_enabled = SN_ENGINE_ON;
    c.metrics[SN_METRIC_LATENCY_MS].upper_warn = 2100.0;
    ck_assert_int_eq(sn_engine_set_config(e, &c, &err), 0);
    sn_event ev = call("svc", "gpt-4o", t, 2300, 500, 200, 500 * 2.5e-6 + 200 * 10e-6);
    sn_engine_observe(e, &ev, collect, &s);
    const sn_anomaly *a = find(&s, SN_ANOMALY_LATENCY_SPIKE);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->method, SN_DETECT_THRESHOLD);
    ck_assert_double_eq_tol(a->threshold, 2100.0, 1e-6);
    sn_engine_destroy(e);
}
END_TEST

/* ---- quiet on normal traffic --------------------------------------------------------------------
 */

START_TEST(quiet_on_normal_traffic)
{
    seed(1);
    sn_engine *e = make(NULL);
    sink s;
    sink_reset(&s);
    int64_t t = T0;
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        sn_event ev = normal_call("chatbot", t);
        ev.is_error = uniform() < 0.01;
        if (ev.is_error)
            snprintf(ev.error_type, sizeof ev.error_type, "timeout");
        if (uniform() < 0.1)
            snprintf(ev.finish_reason, sizeof ev.finish_reason, "length");
        sn_engine_observe(e, &ev, collect, &s);
        t += SEC / 5;
        if (i % 5 == 0)
            sn_engine_tick(e, t, collect, &s);
    }
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.events, n);
    ck_assert_uint_gt(st.evaluations[SN_CHECK_ZSCORE], (uint64_t)n * 4);
    ck_assert_uint_gt(st.evaluations[SN_CHECK_ERROR_RATE], 1000);
    ck_assert_uint_gt(st.evaluations[SN_CHECK_THROUGHPUT], 100);
    ck_assert_uint_gt(st.evaluations[SN_CHECK_TOKEN_DRIFT], 10);
    ck_assert_uint_gt(st.evaluations[SN_CHECK_FINISH_DRIFT], 10);
    ck_assert_msg(s.total < (unsigned)n / 200, "%u false positives in %d events", s.total, n);
    ck_assert_uint_eq(st.anomalies[SN_CHECK_ERROR_RATE], 0);
    ck_assert_uint_eq(st.anomalies[SN_CHECK_THROUGHPUT], 0);
    ck_assert_uint_eq(st.anomalies[SN_CHECK_TOKEN_DRIFT], 0);
    ck_assert_uint_eq(st.anomalies[SN_CHECK_FINISH_DRIFT], 0);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(quiet_on_heavy_tailed_traffic)
{
    seed(2);
    sn_engine *e = make(NULL);
    sink s;
    sink_reset(&s);
    int64_t t = T0;
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        /* log-normal latency (sigma 0.6: p99 is 4x the median) and tokens (sigma 0.8) */
        double lat = 1500.0 * exp(0.6 * normal());
        int64_t in = (int64_t)(400.0 * exp(0.8 * normal())) + 1;
        int64_t out = (int64_t)(150.0 * exp(0.8 * normal())) + 1;
        sn_event ev = call("rag", "claude", t, lat, in, out, in * 3e-6 + out * 15e-6);
        ev.ttft_ms = 300.0 * exp(0.5 * normal());
        sn_engine_observe(e, &ev, collect, &s);
        t += SEC / 5;
        if (i % 5 == 0)
            sn_engine_tick(e, t, collect, &s);
    }
    double rate = (double)s.total / n;
    ck_assert_msg(rate < 0.005, "false-positive rate %.4f (%u in %d)", rate, s.total, n);
    sn_engine_destroy(e);
}
END_TEST

/* With the transform off the same traffic gives far more false positives: the log transform
 * is what keeps heavy tails quiet. */
START_TEST(log_transform_is_what_keeps_heavy_tails_quiet)
{
    unsigned total[2];
    for (int raw = 0; raw < 2; raw++) {
        sn_engine_config c;
        sn_engine_config_defaults(&c);
        c.memory_budget = 64 << 20;
        for (int m = 0; raw && m < SN_METRIC_COUNT; m++)
            c.metrics[m].transform = SN_TRANSFORM_NONE;
        seed(2);
        sn_engine *e = make(&c);
        sink s;
        sink_reset(&s);
        int64_t t = T0;
        for (int i = 0; i < 20000; i++) {
            sn_event ev = call("rag", "claude", t, 1500.0 * exp(0.6 * normal()), 400, 150, 0.003);
            sn_engine_observe(e, &ev, collect, &s);
            t += SEC / 5;
        }
        total[raw] = s.total;
        sn_engine_destroy(e);
    }
    ck_assert_msg(total[1] > 10 && total[1] > 5 * total[0], "raw %u, log %u", total[1], total[0]);
}
END_TEST

/* ---- spikes
 * ---------------------------------------------------------------------------------------- */

START_TEST(latency_spike_fires_and_is_not_learnt)
{
    seed(3);
    sn_engine *e = make(NULL);
    sink s;
    sink_reset(&s);
    int64_t t = T0;
    warm(e, "chatbot", &t, 600, SEC, &s);
    sn_baseline_entry *en =
        sn_baseline_find(sn_engine_baselines(e), "chatbot", "gpt-4o", SN_METRIC_LATENCY_MS);
    ck_assert_ptr_nonnull(en);
    uint64_t seen = sn_baseline_entry_seen(en);

    sn_event ev = call("chatbot", "gpt-4o", t, 12000, 500, 200, 500 * 2.5e-6 + 200 * 10e-6);
    ck_assert_uint_ge(sn_engine_observe(e, &ev, collect, &s), 1);
    const sn_anomaly *a = find(&s, SN_ANOMALY_LATENCY_SPIKE);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->severity, SN_SEV_CRITICAL); /* critical: no persistence needed */
    ck_assert_int_eq(a->metric, SN_METRIC_LATENCY_MS);
    ck_assert_double_eq(a->value, 12000.0);
    ck_assert_msg(fabs(a->baseline - 2000.0) < 100.0, "baseline %f", a->baseline);
    ck_assert(a->threshold > 2000.0 && a->threshold < 12000.0);
    ck_assert(a->deviation_sigma > 6.0);
    ck_assert_uint_ge(a->agreed, 2);
    ck_assert(a->confidence > 0.9);
    ck_assert_int_eq(a->source, SN_SOURCE_AGGREGATOR);
    ck_assert_str_eq(a->region, "eu-west-1");
    ck_assert_uint_eq(a->trace_id[0], 1);
    ck_assert_str_eq(a->related_metric, "");
    /* the call's tokens per second fell with it, but a slow call is no throughput drop (the
     * per-call metric is off by default; drops come from the bucketed check) */
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_THROUGHPUT_DROP], 0);
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_TOKEN_SPIKE], 0);
    /* the anomalous value was not learnt */
    ck_assert_uint_eq(sn_baseline_entry_seen(en), seen);
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_ge(st.anomalies_by_type[SN_ANOMALY_LATENCY_SPIKE], 1);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(token_and_cost_spike_are_related)
{
    seed(4);
    sn_engine *e = make(NULL);
    sink s;
    sink_reset(&s);
    int64_t t = T0;
    warm(e, "agent", &t, 600, SEC, &s);
    /* A prompt-injection loop: 50x the output tokens, cost follows. */
    sn_event ev = call("agent", "gpt-4o", t, 2100, 500, 10000, 500 * 2.5e-6 + 10000 * 10e-6);
    sn_engine_observe(e, &ev, collect, &s);
    const sn_anomaly *tok = find(&s, SN_ANOMALY_TOKEN_SPIKE);
    const sn_anomaly *cost = find(&s, SN_ANOMALY_COST_SPIKE);
    ck_assert_ptr_nonnull(tok);
    ck_assert_ptr_nonnull(cost);
    ck_assert_str_eq(cost->related_metric, "output_tokens");
    ck_assert_str_eq(tok->related_metric, "cost_usd");
    ck_assert_int_eq(cost->metric, SN_METRIC_COST_USD);
    double related_conf = cost->confidence;
    unsigned related_agreed = cost->agreed;

    /* The same cost jump without a token spike (a price change) has no related metric and a
     * lower confidence. */
    sn_engine *e2 = make(NULL);
    sink s2;
    sink_reset(&s2);
    seed(4);
    t = T0;
    warm(e2, "agent", &t, 600, SEC, &s2);
    ev = call("agent", "gpt-4o", t, 2100, 500, 200, 500 * 2.5e-6 + 10000 * 10e-6);
    sn_engine_observe(e2, &ev, collect, &s2);
    cost = find(&s2, SN_ANOMALY_COST_SPIKE);
    ck_assert_ptr_nonnull(cost);
    ck_assert_str_eq(cost->related_metric, "");
    ck_assert_uint_eq(s2.by_type[SN_ANOMALY_TOKEN_SPIKE], 0);
    ck_assert_uint_eq(related_agreed, cost->agreed + 1);
    ck_assert_msg(related_conf >= cost->confidence, "%f vs %f", related_conf, cost->confidence);
    sn_engine_destroy(e2);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(slow_cost_drift_fires_cusum)
{
    seed(5);
    sn_engine *e = make(NULL);
    sink s;
    sink_reset(&s);
    int64_t t = T0;
    for (int i = 0; i < 1500; i++) {
        sn_event ev = call("batch", "gpt-4o", t, 2000 + 100 * normal(), 500, 200,
                           0.01 * (1.0 + 0.03 * normal()));
        sn_engine_observe(e, &ev, collect, &s);
        t += SEC;
    }
    ck_assert_uint_le(s.total, 7); /* 0.5 % of 1500 */
    ck_assert_uint_le(s.by_type[SN_ANOMALY_COST_DRIFT], 5);
    sink_reset(&s);
    /* Cost creeps up 0.02 % per call: +22 % over 1000 calls, no single call stands out. */
    int fired_at = -1;
    for (int i = 0; i < 3000 && fired_at < 0; i++) {
        double drift = pow(1.0002, i);
        sn_event ev = call("batch", "gpt-4o", t, 2000 + 100 * normal(), 500, 200,
                           0.01 * drift * (1.0 + 0.03 * normal()));
        sn_engine_observe(e, &ev, collect, &s);
        t += SEC;
        if (s.by_type[SN_ANOMALY_COST_DRIFT] > 0)
            fired_at = i;
    }
    ck_assert_msg(fired_at > 0 && fired_at < 1500, "fired at %d", fired_at);
    const sn_anomaly *a = find(&s, SN_ANOMALY_COST_DRIFT);
    ck_assert_int_eq(a->method, SN_DETECT_CUSUM);
    ck_assert_int_eq(a->metric, SN_METRIC_COST_USD);
    ck_assert_double_eq(a->threshold, 5.0); /* h */
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_COST_SPIKE], 0);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(persistence_filters_single_violations)
{
    seed(6);
    sn_engine_config c;
    sn_engine_config_defaults(&c);
    c.memory_budget = 64 << 20;
    c.metrics[SN_METRIC_LATENCY_MS].cusum.enabled = SN_ENGINE_OFF;
    sn_engine *e = make(&c);
    sink s;
    sink_reset(&s);
    int64_t t = T0;
    /* latency with sigma 0.05 in log space; 4.2 sigma is high, never critical */
    for (int i = 0; i < 800; i++) {
        sn_event ev = call("svc", "m", t, 2000 * exp(0.05 * normal()), 500, 200, 0.003);
        sn_engine_observe(e, &ev, collect, &s);
        t += SEC;
    }
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_LATENCY_SPIKE], 0);
    sink_reset(&s);
    sn_engine_stats st0;
    sn_engine_get_stats(e, &st0);
    double high = 2000 * exp(0.05 * 4.2);
    sn_event ev = call("svc", "m", t, high, 500, 200, 0.003);
    sn_engine_observe(e, &ev, collect, &s);
    t += SEC;
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_LATENCY_SPIKE], 0); /* held back */
    sn_engine_stats st1;
    sn_engine_get_stats(e, &st1);
    ck_assert_uint_gt(st1.suppressed, st0.suppressed);
    ck_assert_uint_gt(st1.violations[SN_CHECK_ZSCORE], st0.violations[SN_CHECK_ZSCORE]);
    /* a normal value breaks the streak */
    ev = call("svc", "m", t, 2000, 500, 200, 0.003);
    sn_engine_observe(e, &ev, collect, &s);
    t += SEC;
    ev = call("svc", "m", t, high, 500, 200, 0.003);
    sn_engine_observe(e, &ev, collect, &s);
    t += SEC;
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_LATENCY_SPIKE], 0);
    /* three in a row (the default persistence): emitted on the third */
    ev = call("svc", "m", t, high, 500, 200, 0.003);
    sn_engine_observe(e, &ev, collect, &s);
    t += SEC;
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_LATENCY_SPIKE], 0);
    ev = call("svc", "m", t, high, 500, 200, 0.003);
    sn_engine_observe(e, &ev, collect, &s);
    t += SEC;
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_LATENCY_SPIKE], 1);
    const sn_anomaly *a = find(&s, SN_ANOMALY_LATENCY_SPIKE);
    ck_assert_int_lt(a->severity, SN_SEV_CRITICAL);
    sn_engine_destroy(e);

    /* persistence 1 for the Z-score of latency: the first one fires */
    seed(6);
    c.metrics[SN_METRIC_LATENCY_MS].zscore.persistence = 1;
    e = make(&c);
    sink_reset(&s);
    t = T0;
    for (int i = 0; i < 800; i++) {
        ev = call("svc", "m", t, 2000 * exp(0.05 * normal()), 500, 200, 0.003);
        sn_engine_observe(e, &ev, collect, &s);
        t += SEC;
    }
    sink_reset(&s);
    ev = call("svc", "m", t, high, 500, 200, 0.003);
    sn_engine_observe(e, &ev, collect, &s);
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_LATENCY_SPIKE], 1);
    ck_assert_int_eq(find(&s, SN_ANOMALY_LATENCY_SPIKE)->method, SN_DETECT_ZSCORE);
    sn_engine_destroy(e);
}
END_TEST

/* Feeds n calls of key svc/m, latency log-normal (median 2000 ms, sigma in log space), one a
 * second from *t; *t advances. */
static void lognormal_calls(sn_engine *e, double sigma, int n, int64_t *t, sink *s)
{
    for (int i = 0; i < n; i++, *t += SEC) {
        sn_event ev = call("svc", "m", *t, 2000 * exp(sigma * normal()), 500, 200, 0.003);
        sn_engine_observe(e, &ev, collect, s);
    }
}

/* One call of key svc/m at `sigmas` log-space sigmas above the median of lognormal_calls. */
static void call_at_sigmas(sn_engine *e, double sigma, double sigmas, int64_t t, sink *s)
{
    sn_event ev = call("svc", "m", t, 2000 * exp(sigma * sigmas), 500, 200, 0.003);
    sn_engine_observe(e, &ev, collect, s);
}

/* The spike rule: one call 3.5 sigma out is no alert, one 8 sigma out -- critical for
 * all three detectors -- is, on its own. */
START_TEST(single_call_alerts_only_when_critical_for_all)
{
    for (int extreme = 0; extreme < 2; extreme++) {
        seed(16);
        sn_engine *e = make(NULL);
        sink s;
        sink_reset(&s);
        int64_t t = T0;
        lognormal_calls(e, 0.3, 800, &t, &s);
        ck_assert_uint_eq(s.by_type[SN_ANOMALY_LATENCY_SPIKE], 0);
        sn_engine_stats st0, st1;
        sn_engine_get_stats(e, &st0);
        call_at_sigmas(e, 0.3, extreme ? 8.0 : 3.5, t, &s);
        sn_engine_get_stats(e, &st1);
        ck_assert_uint_gt(st1.violations[SN_CHECK_ZSCORE], st0.violations[SN_CHECK_ZSCORE]);
        ck_assert_uint_eq(s.by_type[SN_ANOMALY_LATENCY_SPIKE], (unsigned)extreme);
        if (extreme) {
            const sn_anomaly *a = find(&s, SN_ANOMALY_LATENCY_SPIKE);
            ck_assert_int_eq(a->severity, SN_SEV_CRITICAL);
            ck_assert_uint_ge(a->agreed, 2);
        }
        sn_engine_destroy(e);
    }
    /* With min_agree 1 (one detector is enough) the 3.5 sigma call is held back only by
     * persistence: three in a row fire. */
    sn_engine_config c;
    sn_engine_config_defaults(&c);
    c.memory_budget = 64 << 20;
    c.detect.min_agree = 1;
    seed(16);
    sn_engine *e = make(&c);
    sink s;
    sink_reset(&s);
    int64_t t = T0;
    lognormal_calls(e, 0.3, 800, &t, &s);
    sink_reset(&s);
    for (int i = 0; i < 3; i++, t += SEC)
        call_at_sigmas(e, 0.3, 3.5, t, &s);
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_LATENCY_SPIKE], 1);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(new_normal_is_learnt_after_a_long_run)
{
    seed(7);
    sn_engine *e = make(NULL);
    sink s;
    sink_reset(&s);
    int64_t t = T0;
    warm(e, "svc", &t, 400, SEC, &s);
    /* a new model version answers 3x slower, for good */
    for (int i = 0; i < 400; i++) {
        sn_event ev =
            call("svc", "gpt-4o", t, 6000 + 600 * normal(), 500, 200, 500 * 2.5e-6 + 200 * 10e-6);
        sn_engine_observe(e, &ev, collect, &s);
        t += SEC;
    }
    unsigned spikes = s.by_type[SN_ANOMALY_LATENCY_SPIKE];
    ck_assert_uint_ge(spikes, 20);
    ck_assert_uint_le(spikes, 200);
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_ge(st.relearned, 1);
    /* after the baseline has moved, the new level is quiet */
    unsigned before = s.by_type[SN_ANOMALY_LATENCY_SPIKE];
    for (int i = 0; i < 300; i++) {
        sn_event ev =
            call("svc", "gpt-4o", t, 6000 + 600 * normal(), 500, 200, 500 * 2.5e-6 + 200 * 10e-6);
        sn_engine_observe(e, &ev, collect, &s);
        t += SEC;
    }
    ck_assert_uint_le(s.by_type[SN_ANOMALY_LATENCY_SPIKE] - before, 3);
    sn_engine_destroy(e);
}
END_TEST

/* ---- error rate --------------------------------------------------------------------------------
 */

START_TEST(error_burst_fires_with_the_common_error_type)
{
    seed(8);
    sn_engine *e = make(NULL);
    sink s;
    sink_reset(&s);
    int64_t t = T0;
    /* 5 calls/s, 1 % errors, 10 minutes */
    for (int i = 0; i < 3000; i++) {
        sn_event ev = normal_call("chatbot", t);
        if (uniform() < 0.01) {
            ev.is_error = true;
            snprintf(ev.error_type, sizeof ev.error_type, "timeout");
        }
        sn_engine_observe(e, &ev, collect, &s);
        t += SEC / 5;
    }
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_ERROR_RATE], 0);
    /* provider outage: 30 % errors, mostly rate limits */
    int fired_after = -1;
    for (int i = 0; i < 600; i++) {
        sn_event ev = normal_call("chatbot", t);
        if (uniform() < 0.3) {
            ev.is_error = true;
            snprintf(ev.error_type, sizeof ev.error_type, "%s",
                     uniform() < 0.8 ? "rate_limit_exceeded" : "timeout");
        }
        sn_engine_observe(e, &ev, collect, &s);
        t += SEC / 5;
        if (fired_after < 0 && s.by_type[SN_ANOMALY_ERROR_RATE] > 0)
            fired_after = i;
    }
    ck_assert_msg(fired_after >= 0 && fired_after < 150, "fired after %d", fired_after);
    const sn_anomaly *a = find(&s, SN_ANOMALY_ERROR_RATE);
    ck_assert_str_eq(a->error_type, "rate_limit_exceeded");
    ck_assert_int_eq(a->metric, SN_METRIC_ERROR_RATE);
    ck_assert(a->value > 0.05);
    ck_assert_double_eq(a->threshold, 0.05); /* the floor: 2 x 1 % is below it */
    ck_assert(a->baseline < 0.03);
    ck_assert_str_eq(a->time_window, "last_60s");
    /* repeated at most once per window while it lasts (600 calls = 2 minutes) */
    ck_assert_uint_ge(s.by_type[SN_ANOMALY_ERROR_RATE], 2);
    ck_assert_uint_le(s.by_type[SN_ANOMALY_ERROR_RATE], 3);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(latency_spike_during_errors_is_related)
{
    double conf[2];
    for (int with_errors = 0; with_errors < 2; with_errors++) {
        seed(9);
        sn_engine *e = make(NULL);
        sink s;
        sink_reset(&s);
        int64_t t = T0;
        warm(e, "chatbot", &t, 1000, SEC / 5, &s);
        for (int i = 0; i < 100; i++) {
            sn_event ev = normal_call("chatbot", t);
            if (with_errors && i % 2 == 0) {
                ev.is_error = true;
                snprintf(ev.error_type, sizeof ev.error_type, "server_error");
            }
            sn_engine_observe(e, &ev, collect, &s);
            t += SEC / 5;
        }
        ck_assert_uint_eq(s.by_type[SN_ANOMALY_ERROR_RATE] > 0, with_errors);
        /* critical for every detector: one call is enough */
        sn_event ev = call("chatbot", "gpt-4o", t, 5000, 500, 200, 500 * 2.5e-6 + 200 * 10e-6);
        sn_engine_observe(e, &ev, collect, &s);
        const sn_anomaly *a = find(&s, SN_ANOMALY_LATENCY_SPIKE);
        ck_assert_ptr_nonnull(a);
        ck_assert_str_eq(a->related_metric, with_errors ? "error_rate" : "");
        conf[with_errors] = a->confidence;
        sn_engine_destroy(e);
    }
    ck_assert_msg(conf[1] > conf[0], "%f vs %f", conf[1], conf[0]);
}
END_TEST

/* ---- throughput --------------------------------------------------------------------------------
 */

/* Drops found by the throughput check (not per-call tokens_per_second verdicts). */
static uint64_t tp_drops(const sn_engine *e)
{
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    return st.anomalies[SN_CHECK_THROUGHPUT];
}

/* Runs `secs` seconds of calls at `per_sec` calls per second (0 = silence), ticking every
 * second. Returns the throughput drops emitted and sets *first to the second of the first. */
static unsigned run_tp(sn_engine *e, int64_t *t, int secs, int per_sec, sink *s, int *first)
{
    uint64_t before = tp_drops(e);
    *first = -1;
    for (int sec = 0; sec < secs; sec++) {
        for (int i = 0; i < per_sec; i++) {
            sn_event ev = normal_call("stream", *t + (int64_t)i * SEC / per_sec);
            sn_engine_observe(e, &ev, collect, s);
        }
        *t += SEC;
        sn_engine_tick(e, *t, collect, s);
        if (*first < 0 && tp_drops(e) > before)
            *first = sec;
    }
    return (unsigned)(tp_drops(e) - before);
}

START_TEST(throughput_drop_and_silence)
{
    seed(10);
    for (int silence = 0; silence < 2; silence++) {
        sn_engine *e = make(NULL);
        sink s;
        sink_reset(&s);
        int64_t t = T0;
        int first;
        ck_assert_uint_eq(run_tp(e, &t, 600, 10, &s, &first), 0);
        /* 20 % of the traffic (or none at all) */
        unsigned n = run_tp(e, &t, 180, silence ? 0 : 2, &s, &first);
        ck_assert_uint_ge(n, 1);
        /* after 60 s of low buckets plus the 5 s grace, not before */
        ck_assert_msg(first >= 60 && first <= 80, "first at %d", first);
        const sn_anomaly *a = find_by(&s, SN_ANOMALY_THROUGHPUT_DROP, SN_DETECT_THRESHOLD);
        ck_assert_ptr_nonnull(a);
        ck_assert_int_eq(a->metric, SN_METRIC_TOKENS_PER_SECOND);
        ck_assert_msg(fabs(a->baseline - 7000.0) < 700.0, "baseline %f", a->baseline);
        ck_assert(a->value < a->threshold);
        ck_assert_double_eq_tol(a->threshold, a->baseline * 0.5, 1e-6);
        ck_assert_int_eq(a->severity, silence ? SN_SEV_CRITICAL : SN_SEV_HIGH);
        /* re-sent about once a minute while it lasts */
        ck_assert_uint_ge(n, 2);
        ck_assert_uint_le(n, 3);
        /* traffic comes back: quiet again once the low buckets are closed */
        run_tp(e, &t, 20, 10, &s, &first);
        ck_assert_uint_eq(run_tp(e, &t, 120, 10, &s, &first), 0);
        sn_engine_stats st;
        sn_engine_get_stats(e, &st);
        ck_assert_uint_gt(st.evaluations[SN_CHECK_THROUGHPUT], 60);
        sn_engine_destroy(e);
    }
}
END_TEST

START_TEST(throughput_short_dip_and_late_events)
{
    seed(11);
    sn_engine *e = make(NULL);
    sink s;
    sink_reset(&s);
    int64_t t = T0;
    int first;
    ck_assert_uint_eq(run_tp(e, &t, 600, 10, &s, &first), 0);
    /* 40 s of low traffic is shorter than the 60 s rule */
    ck_assert_uint_eq(run_tp(e, &t, 40, 1, &s, &first), 0);
    ck_assert_uint_eq(run_tp(e, &t, 60, 10, &s, &first), 0);
    /* an event for a bucket already closed is counted, not added */
    sn_event ev = normal_call("stream", t - 120 * SEC);
    sn_engine_observe(e, &ev, collect, &s);
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.late, 1);
    sn_engine_destroy(e);
}
END_TEST

/* ---- budgets -----------------------------------------------------------------------------------
 */

START_TEST(budget_soft_and_hard)
{
    sn_engine_config c;
    sn_engine_config_defaults(&c);
    c.memory_budget = 64 << 20;
    c.budgets.count = 2;
    snprintf(c.budgets.items[0], SN_CONFIG_ITEM_MAX, "chatbot:day:10");
    snprintf(c.budgets.items[1], SN_CONFIG_ITEM_MAX, "*:hour:2:per_user");
    sn_engine *e = make(&c);
    sink s;
    sink_reset(&s);
    int64_t t = T0 + 3600 * SEC / 2;
    for (int i = 1; i <= 12; i++) {
        sn_event ev = call("chatbot", "gpt-4o", t, 2000, 500, 200, 1.0);
        sn_engine_observe(e, &ev, collect, &s);
        t += SEC;
        if (i < 8)
            ck_assert_uint_eq(s.by_type[SN_ANOMALY_BUDGET], 0);
        if (i == 8) { /* 8 of 10: soft */
            ck_assert_uint_eq(s.by_type[SN_ANOMALY_BUDGET], 1);
            const sn_anomaly *a = find(&s, SN_ANOMALY_BUDGET);
            ck_assert_int_eq(a->severity, SN_SEV_HIGH);
            ck_assert_int_eq(a->method, SN_DETECT_BUDGET);
            ck_assert_double_eq(a->value, 8.0);
            ck_assert_double_eq(a->baseline, 10.0);
            ck_assert_str_eq(a->time_window, "current_day");
            ck_assert_str_eq(a->user, "");
            ck_assert_str_eq(a->service, "chatbot");
        }
        if (i == 10) {
            ck_assert_uint_eq(s.by_type[SN_ANOMALY_BUDGET], 2);
            ck_assert_int_eq(s.a[s.kept - 1].severity, SN_SEV_CRITICAL);
        }
    }
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_BUDGET], 2); /* each level once per period */
    /* the next day re-arms */
    t = T0 + 86400 * SEC + 3600 * SEC / 2;
    for (int i = 0; i < 8; i++) {
        sn_event ev = call("chatbot", "gpt-4o", t, 2000, 500, 200, 1.0);
        sn_engine_observe(e, &ev, collect, &s);
    }
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_BUDGET], 3);

    /* per user, any service: alice spends 2 USD in an hour, bob 1 */
    sink_reset(&s);
    for (int i = 0; i < 4; i++) {
        sn_event ev = call("search", "gpt-4o-mini", t, 800, 100, 50, 0.6);
        snprintf(ev.user, sizeof ev.user, "alice");
        sn_engine_observe(e, &ev, collect, &s);
        ev = call("search", "gpt-4o-mini", t, 800, 100, 50, 0.25);
        snprintf(ev.user, sizeof ev.user, "bob");
        sn_engine_observe(e, &ev, collect, &s);
        ev = call("search", "gpt-4o-mini", t, 800, 100, 50, 5.0); /* no user: no per-user budget */
        sn_engine_observe(e, &ev, collect, &s);
    }
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_BUDGET],
                      2); /* alice: soft at 1.8 (>= 1.6), hard at 2.4 */
    for (unsigned i = 0; i < s.kept; i++)
        if (s.a[i].anomaly_type == SN_ANOMALY_BUDGET) {
            ck_assert_str_eq(s.a[i].user, "alice");
            ck_assert_str_eq(s.a[i].time_window, "current_hour");
        }
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.budget_keys, 3); /* chatbot per day, alice and bob per hour */

    /* an amount change at run time keeps what was spent */
    sn_engine_config c2 = *sn_engine_get_config(e);
    snprintf(c2.budgets.items[0], SN_CONFIG_ITEM_MAX, "chatbot:day:9");
    sn_config_error err = {{0}};
    ck_assert_int_eq(sn_engine_set_config(e, &c2, &err), 0);
    sink_reset(&s);
    sn_event ev = call("chatbot", "gpt-4o", t, 2000, 500, 200, 1.0); /* 9 of 9 */
    sn_engine_observe(e, &ev, collect, &s);
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_BUDGET], 1);
    ck_assert_int_eq(find(&s, SN_ANOMALY_BUDGET)->severity, SN_SEV_CRITICAL);
    /* removing a rule drops its state */
    c2.budgets.count = 1;
    ck_assert_int_eq(sn_engine_set_config(e, &c2, &err), 0);
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.budget_keys, 1);
    sn_engine_destroy(e);
}
END_TEST

/* ---- drift -------------------------------------------------------------------------------------
 */

START_TEST(token_distribution_drift)
{
    seed(12);
    sn_engine *e = make(NULL);
    sink s;
    sink_reset(&s);
    int64_t t = T0;
    for (int i = 0; i < 3000; i++) {
        int64_t in = (int64_t)(500.0 * exp(0.3 * normal()));
        sn_event ev = call("rag", "gpt-4o", t, 2000 + 100 * normal(), in, 200, 0.003);
        sn_engine_observe(e, &ev, collect, &s);
        t += SEC / 5;
    }
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_TOKEN_DRIFT], 0);
    /* retrieval starts stuffing more context: the median moves by one sigma */
    int fired_at = -1;
    for (int i = 0; i < 1500; i++) {
        int64_t in = (int64_t)(500.0 * exp(0.3 + 0.3 * normal()));
        sn_event ev = call("rag", "gpt-4o", t, 2000 + 100 * normal(), in, 200, 0.003);
        sn_engine_observe(e, &ev, collect, &s);
        t += SEC / 5;
        if (fired_at < 0 && s.by_type[SN_ANOMALY_TOKEN_DRIFT] > 0)
            fired_at = i;
    }
    ck_assert_msg(fired_at >= 0 && fired_at < 1000, "fired at %d", fired_at);
    const sn_anomaly *a = find(&s, SN_ANOMALY_TOKEN_DRIFT);
    ck_assert_int_eq(a->metric, SN_METRIC_INPUT_TOKENS);
    ck_assert(a->value > 0.2);
    ck_assert_double_eq(a->threshold, 0.2);
    ck_assert_str_eq(a->time_window, "last_500_calls");
    /* the new mix is adopted: one alarm, two when a window straddled the change */
    ck_assert_uint_le(s.by_type[SN_ANOMALY_TOKEN_DRIFT], 2);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(finish_reason_drift)
{
    seed(13);
    sn_engine *e = make(NULL);
    sink s;
    sink_reset(&s);
    int64_t t = T0;
    static const char *const normal_mix[] = {"stop", "end_turn", "tool_calls", "length"};
    for (int i = 0; i < 2000; i++) {
        sn_event ev = normal_call("agent", t);
        double u = uniform();
        snprintf(ev.finish_reason, sizeof ev.finish_reason, "%s",
                 normal_mix[u < 0.5    ? 0
                            : u < 0.8  ? 1
                            : u < 0.95 ? 2
                                       : 3]);
        sn_engine_observe(e, &ev, collect, &s);
        t += SEC / 5;
    }
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_FINISH_REASON_DRIFT], 0);
    /* answers get cut off: 45 % hit the token limit ("max_tokens" is an alias of length) */
    for (int i = 0; i < 1000; i++) {
        sn_event ev = normal_call("agent", t);
        double u = uniform();
        snprintf(ev.finish_reason, sizeof ev.finish_reason, "%s",
                 u < 0.45  ? "max_tokens"
                 : u < 0.9 ? "stop"
                           : "tool_calls");
        sn_engine_observe(e, &ev, collect, &s);
        t += SEC / 5;
    }
    ck_assert_uint_eq(s.by_type[SN_ANOMALY_FINISH_REASON_DRIFT], 1);
    const sn_anomaly *a = find(&s, SN_ANOMALY_FINISH_REASON_DRIFT);
    ck_assert_str_eq(a->finish_reason, "length");
    ck_assert(a->value > 0.1 && a->value <= 1.0);
    sn_engine_destroy(e);
}
END_TEST

/* ---- local alerts ------------------------------------------------------------------------------
 */

static sn_local_alert local(const char *svc, sn_metric m, double value, double conf)
{
    sn_local_alert a;
    memset(&a, 0, sizeof a);
    snprintf(a.alert_id, sizeof a.alert_id, "3f1c2b9e-0000-4000-8000-000000000001");
    snprintf(a.service, sizeof a.service, "%s", svc);
    snprintf(a.model, sizeof a.model, "gpt-4o");
    a.time_unix_nano = T0;
    a.metric = m;
    a.anomaly_type = SN_ANOMALY_LATENCY_SPIKE;
    a.detector = SN_DETECT_ZSCORE;
    a.severity = SN_SEV_HIGH;
    a.value = value;
    a.baseline = 1000;
    a.threshold = 2000;
    a.deviation = 4.5;
    a.confidence = conf;
    return a;
}

/* An error-rate alert is judged by its pair's error window: a known pair whose window is not
 * elevated discards it, an unknown pair trusts it (the pair look-up by name). */
START_TEST(local_error_alert_judged_by_pair_window)
{
    seed(15);
    sn_engine *e = make(NULL);
    sink s;
    sink_reset(&s);
    int64_t t = T0;
    warm(e, "chatbot", &t, 600, SEC, &s);
    unsigned before = s.total;

    sn_local_alert a = local("chatbot", SN_METRIC_ERROR_RATE, 0.5, 0.7);
    a.anomaly_type = SN_ANOMALY_ERROR_RATE;
    ck_assert_int_eq(sn_engine_local_alert(e, &a, t, collect, &s), 0);
    a = local("new-service", SN_METRIC_ERROR_RATE, 0.5, 0.7);
    a.anomaly_type = SN_ANOMALY_ERROR_RATE;
    ck_assert_int_eq(sn_engine_local_alert(e, &a, t, collect, &s), 1);
    ck_assert_uint_eq(s.total, before + 1);

    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.local_discarded, 1);
    ck_assert_uint_eq(st.local_trusted, 1);
    ck_assert_uint_eq(st.local_confirmed, 0);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(local_alerts_confirmed_discarded_or_trusted)
{
    seed(14);
    sn_engine *e = make(NULL);
    sink s;
    sink_reset(&s);
    int64_t t = T0;
    warm(e, "chatbot", &t, 600, SEC, &s);

    sn_local_alert a = local("chatbot", SN_METRIC_LATENCY_MS, 12000, 0.7);
    ck_assert_int_eq(sn_engine_local_alert(e, &a, t, collect, &s), 1);
    ck_assert_uint_eq(s.total, 1);
    ck_assert_int_eq(s.a[0].source, SN_SOURCE_SIDECAR);
    ck_assert_int_eq(s.a[0].anomaly_type, SN_ANOMALY_LATENCY_SPIKE);
    ck_assert(s.a[0].confidence > 0.9);
    ck_assert_uint_ge(s.a[0].agreed, 2);
    ck_assert_msg(fabs(s.a[0].baseline - 2000) < 100, "global baseline %f", s.a[0].baseline);
    ck_assert_int_eq(s.a[0].severity, SN_SEV_CRITICAL); /* the global verdict is stronger */

    /* The sidecar's own baseline was tighter: globally 2400 ms is normal. */
    a = local("chatbot", SN_METRIC_LATENCY_MS, 2400, 0.7);
    ck_assert_int_eq(sn_engine_local_alert(e, &a, t, collect, &s), 0);
    ck_assert_uint_eq(s.total, 1);

    /* Unknown to the aggregator: trusted with lower confidence. */
    a = local("new-service", SN_METRIC_LATENCY_MS, 5000, 0.9);
    ck_assert_int_eq(sn_engine_local_alert(e, &a, t, collect, &s), 1);
    ck_assert_double_eq_tol(s.a[1].confidence, 0.72, 1e-9);
    ck_assert_int_eq(s.a[1].source, SN_SOURCE_SIDECAR);
    ck_assert_int_eq(s.a[1].method, SN_DETECT_ZSCORE);
    a = local("new-service", SN_METRIC_LATENCY_MS, 5000, 0.55);
    ck_assert_int_eq(sn_engine_local_alert(e, &a, t, collect, &s), 1);
    ck_assert_double_eq(s.a[2].confidence, 0.5); /* clamped */

    /* Bad metric: refused. */
    a = local("chatbot", SN_METRIC_COUNT, 1, 0.9);
    ck_assert_int_eq(sn_engine_local_alert(e, &a, t, collect, &s), 0);

    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.local_confirmed, 1);
    ck_assert_uint_eq(st.local_discarded, 1);
    ck_assert_uint_eq(st.local_trusted, 2);
    ck_assert_uint_eq(st.anomalies[SN_CHECK_LOCAL], 3);

    /* A copy ahead of its batch: judged alike, but counted only when emitted (its batch's copy
     * is judged and counted otherwise). */
    a = local("chatbot", SN_METRIC_LATENCY_MS, 2400, 0.7);
    a.suppressed = 5;
    ck_assert_int_eq(sn_engine_local_alert_ahead(e, &a, t, collect, &s), 0);
    a = local("chatbot", SN_METRIC_COUNT, 1, 0.9);
    ck_assert_int_eq(sn_engine_local_alert_ahead(e, &a, t, collect, &s), 0);
    sn_engine_stats st2;
    sn_engine_get_stats(e, &st2);
    ck_assert_uint_eq(st2.evaluations[SN_CHECK_LOCAL], st.evaluations[SN_CHECK_LOCAL]);
    ck_assert_uint_eq(st2.local_suppressed, st.local_suppressed);
    ck_assert_uint_eq(st2.local_discarded, st.local_discarded);
    ck_assert_uint_eq(st2.refused, st.refused);
    a = local("chatbot", SN_METRIC_LATENCY_MS, 12000, 0.7);
    a.suppressed = 5;
    ck_assert_int_eq(sn_engine_local_alert_ahead(e, &a, t, collect, &s), 1);
    sn_engine_get_stats(e, &st2);
    ck_assert_uint_eq(st2.evaluations[SN_CHECK_LOCAL], st.evaluations[SN_CHECK_LOCAL] + 1);
    ck_assert_uint_eq(st2.local_suppressed, st.local_suppressed + 5);
    ck_assert_uint_eq(st2.local_confirmed, st.local_confirmed + 1);
    sn_engine_destroy(e);
}
END_TEST

/* ---- seasonality -------------------------------------------------------------------------------
 */

/* Three weeks at 30 calls an hour; every day 02:00-03:00 UTC a batch job sends 10x the output
 * tokens. Returns the anomalies of the third week. */
static unsigned seasonal_run(bool seasonal, unsigned *events)
{
    sn_engine_config c;
    sn_engine_config_defaults(&c);
    c.memory_budget = 256 << 20;
    c.seasonal = seasonal;
    c.throughput_enabled = false; /* one call every two minutes is too sparse anyway */
    sn_engine *e = make(&c);
    sink s;
    sink_reset(&s);
    seed(15);
    unsigned week3 = 0, n = 0;
    for (int h = 0; h < 3 * 168; h++) {
        bool batch = h % 24 == 2;
        for (int i = 0; i < 30; i++) {
            int64_t t = T0 + (int64_t)h * 3600 * SEC + (int64_t)i * 120 * SEC;
            int64_t out = (int64_t)((batch ? 2000.0 : 200.0) * exp(0.1 * normal()));
            double lat = (batch ? 20000.0 : 2000.0) * exp(0.1 * normal());
            sn_event ev = call("reports", "gpt-4o", t, lat, 500, out, 500 * 2.5e-6 + out * 10e-6);
            unsigned before = s.total;
            sn_engine_observe(e, &ev, collect, &s);
            if (h >= 2 * 168) {
                week3 += s.total - before;
                n++;
            }
        }
    }
    *events = n;
    sn_engine_destroy(e);
    return week3;
}

START_TEST(seasonal_baselines_keep_daily_cycles_quiet)
{
    unsigned n_off, n_on;
    unsigned off = seasonal_run(false, &n_off);
    unsigned on = seasonal_run(true, &n_on);
    ck_assert_uint_eq(n_on, 168 * 30);
    ck_assert_msg(off > 100, "without seasonal baselines only %u anomalies", off);
    ck_assert_msg(on < n_on / 200, "with seasonal baselines %u anomalies in %u events", on, n_on);
}
END_TEST

/* ---- memory, limits, expiry --------------------------------------------------------------------
 */

START_TEST(memory_per_key_100k)
{
    sn_engine_config c;
    sn_engine_config_defaults(&c);
    c.memory_budget = (int64_t)512 << 20;
    c.metrics[SN_METRIC_TOKENS_PER_SECOND].enabled = true; /* 8 keys per call */
    sn_engine *e = make(&c);
    int64_t t = T0;
    char svc[32];
    for (int i = 0; i < 12500; i++) {
        snprintf(svc, sizeof svc, "svc-%05d", i);
        sn_event ev = call(svc, "gpt-4o", t, 2000, 500, 200, 0.003);
        ev.ttft_ms = 300;
        sn_engine_observe(e, &ev, NULL, NULL);
    }
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.keys, 100000);
    ck_assert_uint_eq(st.pairs, 12500);
    ck_assert_uint_eq(st.evictions, 0);
    double per_key = (double)st.bytes / (double)st.keys;
    fprintf(stderr, "engine, compact: %.0f bytes per key (100000 keys, pair state included)\n",
            per_key);
    ck_assert_msg(per_key <= 2048.0, "%.0f bytes per key", per_key);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(budget_evicts_and_limits_refuse)
{
    sn_engine_config c;
    sn_engine_config_defaults(&c);
    c.memory_budget = 1 << 20; /* about 550 compact keys */
    c.max_pairs = 100;
    sn_engine *e = make(&c);
    sink s;
    sink_reset(&s);
    char svc[32];
    for (int i = 0; i < 200; i++) {
        snprintf(svc, sizeof svc, "svc-%d", i);
        sn_event ev = call(svc, "m", T0 + i, 2000, 500, 200, 0.003);
        sn_engine_observe(e, &ev, collect, &s);
    }
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.pairs, 100);
    ck_assert_uint_ge(st.refused, 100);
    ck_assert_uint_gt(st.evictions, 0);
    sn_baseline_stats bs;
    sn_baseline_get_stats(sn_engine_baselines(e), &bs);
    ck_assert_uint_le(bs.bytes_used, bs.budget);
    /* an event without a service is refused, not scored */
    sn_event ev = call("", "m", T0, 2000, 500, 200, 0.003);
    ck_assert_uint_eq(sn_engine_observe(e, &ev, collect, &s), 0);
    sn_engine_stats st2;
    sn_engine_get_stats(e, &st2);
    ck_assert_uint_eq(st2.refused, st.refused + 1);
    ck_assert_uint_eq(st2.values, st.values);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(idle_keys_expire_on_tick)
{
    sn_engine_config c;
    sn_engine_config_defaults(&c);
    c.memory_budget = 64 << 20;
    c.idle_expiry = 3600 * SEC;
    c.metrics[SN_METRIC_TOKENS_PER_SECOND].enabled = true;
    c.budgets.count = 1;
    snprintf(c.budgets.items[0], SN_CONFIG_ITEM_MAX, "*:month:100");
    sn_engine *e = make(&c);
    sink s;
    sink_reset(&s);
    sn_event ev = call("old", "m", T0, 2000, 500, 200, 1.0);
    sn_engine_observe(e, &ev, collect, &s);
    ev = call("fresh", "m", T0 + 3000 * SEC, 2000, 500, 200, 1.0);
    sn_engine_observe(e, &ev, collect, &s);
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.keys, 14); /* 7 metrics each (no ttft) */
    ck_assert_uint_eq(st.pairs, 2);
    ck_assert_uint_eq(st.budget_keys, 2);
    uint64_t bytes = st.bytes;

    sn_engine_tick(e, T0 + 3601 * SEC, collect, &s); /* idle exactly an hour + 1 s */
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.keys, 7);
    ck_assert_uint_eq(st.pairs, 1);
    ck_assert_uint_eq(st.budget_keys, 2); /* the month is not over: spend is kept */
    ck_assert_uint_eq(st.expired, 7 + 1);
    ck_assert_uint_lt(st.bytes, bytes);
    ck_assert_ptr_null(sn_baseline_find(sn_engine_baselines(e), "old", "m", SN_METRIC_LATENCY_MS));
    ck_assert_ptr_nonnull(
        sn_baseline_find(sn_engine_baselines(e), "fresh", "m", SN_METRIC_LATENCY_MS));

    /* next month: the old budget state goes too */
    sn_engine_tick(e, T0 + 40 * 86400 * SEC, collect, &s);
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.keys, 0);
    ck_assert_uint_eq(st.pairs, 0);
    ck_assert_uint_eq(st.budget_keys, 0);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(names_and_null_destroy)
{
    ck_assert_str_eq(sn_engine_check_name(SN_CHECK_ZSCORE), "z_score");
    ck_assert_str_eq(sn_engine_check_name(SN_CHECK_ERROR_RATE), "error_rate");
    ck_assert_str_eq(sn_engine_check_name(SN_CHECK_LOCAL), "local_alert");
    ck_assert_str_eq(sn_engine_check_name(SN_CHECK_COUNT), "unknown");
    sn_engine_destroy(NULL);
    sn_engine *e = make(NULL);
    ck_assert_int_eq(sn_engine_metric_transform(e, SN_METRIC_LATENCY_MS), SN_TRANSFORM_LOG);
    ck_assert_int_eq(sn_engine_metric_transform(e, SN_METRIC_ERROR_RATE), SN_TRANSFORM_NONE);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(allocation_failures)
{
    sn_engine_config c;
    sn_engine_config_defaults(&c);
    c.memory_budget = 64 << 20;
    c.seasonal = true;
    c.metrics[SN_METRIC_TOKENS_PER_SECOND].enabled = true;
    c.budgets.count = 1;
    snprintf(c.budgets.items[0], SN_CONFIG_ITEM_MAX, "*:day:100");
    /* create: every allocation in turn fails cleanly (ASan finds any leak) */
    long n;
    int rc = -1;
    sn_engine *e = NULL;
    for (n = 0; n < 64; n++) {
        sn_config_error err = {{0}};
        fail_after = n;
        rc = sn_engine_create(&e, &c, 1, &err);
        fail_after = -1;
        if (rc == 0)
            break;
        ck_assert_int_eq(rc, -ENOMEM);
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_int_ge(n, 4); /* engine, baselines, pair and budget indexes */
    /* observe: the pair, the keys and the budget state fail in turn; counted, never fatal */
    sink s;
    sink_reset(&s);
    unsigned refused_runs = 0;
    for (n = 0; n < 24; n++) {
        sn_engine_stats before, after;
        sn_engine_get_stats(e, &before);
        char svc[32];
        snprintf(svc, sizeof svc, "svc-%ld", n);
        sn_event ev = call(svc, "m", T0 + n, 2000, 500, 200, 1.0);
        fail_after = n;
        sn_engine_observe(e, &ev, collect, &s);
        fail_after = -1;
        sn_engine_get_stats(e, &after);
        refused_runs += after.refused > before.refused;
        /* the same event again, with memory: everything missing is created now */
        sn_engine_observe(e, &ev, collect, &s);
    }
    ck_assert_uint_ge(refused_runs, 10);
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.pairs, 24);
    ck_assert_uint_eq(st.budget_keys, 24);
    ck_assert_uint_eq(st.keys, 24 * (7 + 6)); /* global; seasonal has no error_rate keys */
    sn_engine_destroy(e);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("engine");
    TCase *cfg = tcase_create("config");
    tcase_add_test(cfg, descriptor_defaults_equal_config_defaults);
    tcase_add_test(cfg, yaml_overrides_per_metric);
    tcase_add_test(cfg, config_validation_names_the_field);
    tcase_add_test(cfg, set_config_swaps_live_settings_only);
    tcase_add_test(cfg, names_and_null_destroy);
    suite_add_tcase(s, cfg);
    TCase *det = tcase_create("detection");
    tcase_set_timeout(det, 120);
    tcase_add_test(det, quiet_on_normal_traffic);
    tcase_add_test(det, quiet_on_heavy_tailed_traffic);
    tcase_add_test(det, log_transform_is_what_keeps_heavy_tails_quiet);
    tcase_add_test(det, latency_spike_fires_and_is_not_learnt);
    tcase_add_test(det, token_and_cost_spike_are_related);
    tcase_add_test(det, slow_cost_drift_fires_cusum);
    tcase_add_test(det, persistence_filters_single_violations);
    tcase_add_test(det, single_call_alerts_only_when_critical_for_all);
    tcase_add_test(det, new_normal_is_learnt_after_a_long_run);
    tcase_add_test(det, error_burst_fires_with_the_common_error_type);
    tcase_add_test(det, latency_spike_during_errors_is_related);
    tcase_add_test(det, throughput_drop_and_silence);
    tcase_add_test(det, throughput_short_dip_and_late_events);
    tcase_add_test(det, budget_soft_and_hard);
    tcase_add_test(det, token_distribution_drift);
    tcase_add_test(det, finish_reason_drift);
    tcase_add_test(det, local_alerts_confirmed_discarded_or_trusted);
    tcase_add_test(det, local_error_alert_judged_by_pair_window);
    tcase_add_test(det, seasonal_baselines_keep_daily_cycles_quiet);
    suite_add_tcase(s, det);
    TCase *mem = tcase_create("memory");
    tcase_set_timeout(mem, 120);
    tcase_add_test(mem, memory_per_key_100k);
    tcase_add_test(mem, budget_evicts_and_limits_refuse);
    tcase_add_test(mem, idle_keys_expire_on_tick);
    tcase_add_test(mem, allocation_failures);
    suite_add_tcase(s, mem);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
