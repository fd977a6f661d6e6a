/* Unit tests for sidecar/local_detect.c. */
#include "local_detect.h"
#include "local_stream.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sn_local_detect *make(sn_local_detect_config *cfg)
{
    sn_local_detect *ld = NULL;
    ck_assert_int_eq(sn_local_detect_create(cfg, 42, &ld), 0);
    return ld;
}

/* A chat call of `model` with the given latency and output tokens at time t (ms). */
static void call(sn_event *ev, const char *model, double latency, int64_t out_tokens, int64_t t)
{
    sn_event_init(ev);
    memcpy(ev->service, "chatbot", 8);
    snprintf(ev->model, sizeof ev->model, "%s", model);
    ev->end_unix_nano = t * 1000000;
    ev->latency_ms = latency;
    ev->output_tokens = out_tokens;
}

START_TEST(quiet_during_cold_start_and_on_normal_traffic)
{
    sn_local_detect_config cfg;
    sn_local_detect_config_defaults(&cfg);
    sn_local_detect *ld = make(&cfg);
    sn_local_alert a[4];
    sn_event ev;
    /* A wild first value: no verdict without a baseline. */
    call(&ev, "gpt-4o", 90000.0, 100, 0);
    ck_assert_uint_eq(sn_local_detect_event(ld, &ev, a, 4), 0);
    for (int i = 1; i < 200; i++) {
        call(&ev, "gpt-4o", 1000.0 + (i % 7) * 10.0, 200 + i % 5, i);
        ck_assert_uint_eq(sn_local_detect_event(ld, &ev, a, 4), 0);
    }
    uint64_t keys, bytes;
    sn_local_detect_usage(ld, &keys, &bytes);
    /* latency, output tokens and tokens per second are scored per (service, model). */
    ck_assert_uint_eq(keys, 3);
    ck_assert_uint_gt(bytes, 0);
    sn_local_detect_destroy(ld);
}
END_TEST

START_TEST(latency_spike_is_an_alert_and_stays_out_of_the_baseline)
{
    sn_local_detect_config cfg;
    sn_local_detect_config_defaults(&cfg);
    sn_local_detect *ld = make(&cfg);
    sn_local_alert a[4];
    sn_event ev;
    for (int i = 0; i < 100; i++) {
        call(&ev, "gpt-4o", 1000.0 + (i % 10) * 20.0, 200, i);
        ck_assert_uint_eq(sn_local_detect_event(ld, &ev, a, 4), 0);
    }
    for (int round = 0; round < 2; round++) {
        call(&ev, "gpt-4o", 12000.0, 200, 100 + round);
        /* Latency spikes, and with it tokens per second drops. */
        size_t n = sn_local_detect_event(ld, &ev, a, 4);
        ck_assert_uint_eq(n, 2);
        ck_assert_int_eq(a[0].metric, SN_METRIC_LATENCY_MS);
        ck_assert_int_eq(a[0].anomaly_type, SN_ANOMALY_LATENCY_SPIKE);
        ck_assert_int_eq(a[0].detector, SN_DETECT_ZSCORE);
        ck_assert_int_eq(a[0].severity, SN_SEV_CRITICAL);
        ck_assert_double_eq(a[0].value, 12000.0);
        ck_assert(a[0].baseline > 1000.0 && a[0].baseline < 1200.0);
        ck_assert(a[0].deviation > 6.0);
        ck_assert_str_eq(a[0].model, "gpt-4o");
        ck_assert_str_eq(a[0].service, "chatbot");
        ck_assert_int_eq(a[1].metric, SN_METRIC_TOKENS_PER_SECOND);
        ck_assert_int_eq(a[1].anomaly_type, SN_ANOMALY_THROUGHPUT_DROP);
    }
    /* Another model has its own baseline: its first calls are cold. */
    call(&ev, "claude-sonnet-4", 12000.0, 200, 200);
    ck_assert_uint_eq(sn_local_detect_event(ld, &ev, a, 4), 0);
    sn_local_detect_destroy(ld);
}
END_TEST

START_TEST(static_threshold_fires_without_a_baseline)
{
    sn_local_detect_config cfg;
    sn_local_detect_config_defaults(&cfg);
    cfg.thresholds[SN_METRIC_OUTPUT_TOKENS].upper_warn = 1000.0;
    cfg.thresholds[SN_METRIC_OUTPUT_TOKENS].upper_critical = 4000.0;
    cfg.thresholds[SN_METRIC_ERROR_RATE].upper_warn = 0.5;
    sn_local_detect *ld = make(&cfg);
    sn_local_alert a[4];
    sn_event ev;
    call(&ev, "gpt-4o", 1000.0, 5000, 0);
    ck_assert_uint_eq(sn_local_detect_event(ld, &ev, a, 4), 1);
    ck_assert_int_eq(a[0].metric, SN_METRIC_OUTPUT_TOKENS);
    ck_assert_int_eq(a[0].detector, SN_DETECT_THRESHOLD);
    ck_assert_int_eq(a[0].severity, SN_SEV_CRITICAL);
    ck_assert_int_eq(a[0].anomaly_type, SN_ANOMALY_TOKEN_SPIKE);
    call(&ev, "gpt-4o", 1000.0, 2000, 1);
    ck_assert_uint_eq(sn_local_detect_event(ld, &ev, a, 4), 1);
    ck_assert_int_eq(a[0].severity, SN_SEV_MEDIUM);
    /* An error crosses the error_rate level (1.0 > 0.5). */
    call(&ev, "gpt-4o", 1000.0, 10, 2);
    ev.is_error = true;
    ck_assert_uint_eq(sn_local_detect_event(ld, &ev, a, 4), 1);
    ck_assert_int_eq(a[0].anomaly_type, SN_ANOMALY_ERROR_RATE);
    sn_local_detect_destroy(ld);
}
END_TEST

START_TEST(alerts_beyond_max_are_counted_not_written)
{
    sn_local_detect_config cfg;
    sn_local_detect_config_defaults(&cfg);
    cfg.thresholds[SN_METRIC_LATENCY_MS].upper_warn = 10.0;
    cfg.thresholds[SN_METRIC_OUTPUT_TOKENS].upper_warn = 10.0;
    sn_local_detect *ld = make(&cfg);
    sn_local_alert a[1];
    memset(a, 0, sizeof a);
    sn_event ev;
    call(&ev, "m", 100.0, 100, 0);
    ck_assert_uint_eq(sn_local_detect_event(ld, &ev, a, 1), 2);
    ck_assert_int_eq(a[0].metric, SN_METRIC_LATENCY_MS);
    ck_assert_uint_eq(sn_local_detect_event(ld, &ev, NULL, 0), 2);
    sn_local_detect_destroy(ld);
}
END_TEST

START_TEST(disabled_finds_nothing_and_bad_config_is_named)
{
    sn_local_detect_config cfg;
    sn_local_detect_config_defaults(&cfg);
    cfg.enabled = false;
    cfg.thresholds[SN_METRIC_LATENCY_MS].upper_warn = 10.0;
    sn_local_detect *ld = make(&cfg);
    sn_event ev;
    sn_local_alert a[1];
    call(&ev, "m", 100.0, 100, 0);
    ck_assert_uint_eq(sn_local_detect_event(ld, &ev, a, 1), 0);
    sn_local_detect_destroy(ld);

    sn_local_detect_config_defaults(&cfg);
    cfg.thresholds[SN_METRIC_COST_USD].upper_warn = 5.0;
    cfg.thresholds[SN_METRIC_COST_USD].upper_critical = 1.0;
    sn_config_error err;
    ck_assert_int_eq(sn_local_detect_config_validate(&cfg, "local", &err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "local.thresholds.cost_usd."));
    ck_assert_int_eq(sn_local_detect_create(&cfg, 1, &ld), -EINVAL);
    sn_local_detect_config_defaults(&cfg);
    cfg.zscore.threshold = -1;
    ck_assert_int_eq(sn_local_detect_config_validate(&cfg, "local", &err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "local.zscore.threshold"));
}
END_TEST

/* The exact mean and sample standard deviation of v[from..to). */
static void moments(const double *v, int from, int to, double *mean, double *sd)
{
    double m = 0.0, q = 0.0;
    for (int i = from; i < to; i++)
        m += v[i];
    m /= (to - from);
    for (int i = from; i < to; i++)
        q += (v[i] - m) * (v[i] - m);
    *mean = m;
    *sd = sqrt(q / (to - from - 1));
}

/* The Z-score's baseline is the last `window` normal samples -- with the rolling moments (window
 * 50, 300) and with the table's exact window (window 2000, too large for the moments) alike --
 * and stays right over many times the window (the sums are recomputed, never drift). */
START_TEST(zscore_baseline_is_the_mean_and_sd_of_the_last_window)
{
    static const int64_t windows[] = {50, 300, 2000};
    enum { N = 5000 };
    static double v[N];
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
        sn_local_detect_config cfg;
        sn_local_detect_config_defaults(&cfg);
        cfg.window = windows[w];
        cfg.log_scale = false;           /* raw values: the moments are checked exactly */
        cfg.zscore.min_stddev_rel = 0.0; /* the plain z = (x - mean) / sd */
        sn_local_detect *ld = make(&cfg);
        sn_local_alert a[4];
        sn_event ev;
        for (int i = 0; i < N; i++) {
            /* A slow drift plus a wobble: the window, not all history, sets the mean. */
            v[i] = 1000.0 + i * 0.5 + (i % 7) * 3.0;
            call(&ev, "gpt-4o", v[i], -1, i);
            ck_assert_uint_eq(sn_local_detect_event(ld, &ev, a, 4), 0);
        }
        int from = N - (int)windows[w];
        double mean, sd;
        moments(v, from, N, &mean, &sd);
        double spike = mean + 40.0 * sd; /* z = 40 */
        call(&ev, "gpt-4o", spike, -1, N);
        ck_assert_uint_eq(sn_local_detect_event(ld, &ev, a, 4), 1);
        ck_assert_msg(fabs(a[0].baseline - mean) < 1e-6 * mean, "window %d: baseline %.9g != %.9g",
                      (int)windows[w], a[0].baseline, mean);
        ck_assert_msg(fabs(a[0].deviation - 40.0) < 1e-3, "window %d: z %.9g != 40",
                      (int)windows[w], a[0].deviation);
        /* The spike did not join: the same baseline next time. */
        call(&ev, "gpt-4o", spike, -1, N + 1);
        ck_assert_uint_eq(sn_local_detect_event(ld, &ev, a, 4), 1);
        ck_assert(fabs(a[0].baseline - mean) < 1e-6 * mean);
        sn_local_detect_destroy(ld);
    }
}
END_TEST

/* Log-normal latency (sigma 0.35): on the raw scale its long upper tail trips the Z-score
 * about once per 100 calls; on the log scale (the default) at the nominal 0.13 %. Alerts report
 * raw units: the baseline is about the median, the threshold above it. */
START_TEST(log_scale_keeps_log_normal_traffic_quiet)
{
    unsigned alerts[2];
    for (int log_scale = 0; log_scale < 2; log_scale++) {
        sn_local_detect_config cfg;
        sn_local_detect_config_defaults(&cfg);
        ck_assert(cfg.log_scale);
        cfg.log_scale = log_scale;
        sn_local_detect *ld = make(&cfg);
        uint64_t r = 99;
        sn_local_alert a[4];
        sn_event ev;
        alerts[log_scale] = 0;
        for (int i = 0; i < 20000; i++) {
            double u1, u2;
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            u1 = ((double)(r >> 11) + 0.5) / 9007199254740992.0;
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            u2 = ((double)(r >> 11) + 0.5) / 9007199254740992.0;
            double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
            call(&ev, "gpt-4o", 2000.0 * exp(0.35 * z), -1, i);
            alerts[log_scale] += (unsigned)sn_local_detect_event(ld, &ev, a, 4);
        }
        if (log_scale) {
            call(&ev, "gpt-4o", 2000.0 * exp(0.35 * 8.0), -1, 20000);
            ck_assert_uint_eq(sn_local_detect_event(ld, &ev, a, 4), 1);
            ck_assert_msg(a[0].baseline > 1800.0 && a[0].baseline < 2200.0, "baseline %f",
                          a[0].baseline);
            ck_assert(a[0].threshold > 2000.0 * exp(0.35 * 2.5) &&
                      a[0].threshold < 2000.0 * exp(0.35 * 3.5));
            ck_assert_double_eq(a[0].value, 2000.0 * exp(0.35 * 8.0));
            ck_assert(a[0].deviation > 7.0 && a[0].deviation < 9.0);
        }
        sn_local_detect_destroy(ld);
    }
    ck_assert_msg(alerts[0] > 100 && alerts[1] < 60, "raw %u, log %u", alerts[0], alerts[1]);
}
END_TEST

/* The pair tokens of sn_local_detect_event_pair by (service, model), as a caller keeps them. */
typedef struct pair_tokens {
    size_t n;
    struct {
        char service[SN_NAME_MAX];
        char model[SN_NAME_MAX];
        uint64_t token;
    } e[600];
} pair_tokens;

/* The token slot of ev's (service, model) in t, added (token 0) when new. */
static uint64_t *token_of(pair_tokens *t, const sn_event *ev)
{
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->e[i].service, ev->service) == 0 && strcmp(t->e[i].model, ev->model) == 0)
            return &t->e[i].token;
    }
    ck_assert_uint_lt(t->n, sizeof t->e / sizeof t->e[0]);
    memcpy(t->e[t->n].service, ev->service, sizeof ev->service);
    memcpy(t->e[t->n].model, ev->model, sizeof ev->model);
    t->e[t->n].token = 0;
    return &t->e[t->n++].token;
}

/* One configuration of the digest test below. */
typedef struct digest_case {
    const char *name;
    size_t events;
    unsigned services;
    size_t max_alerts; /* room passed to sn_local_detect_event (the rest are only counted) */
    uint64_t expect;   /* the digest main's code gave (see below) */
} digest_case;

/* Sets case i's configuration on top of the defaults. */
static void digest_config(size_t i, sn_local_detect_config *cfg)
{
    sn_local_detect_config_defaults(cfg);
    switch (i) {
    case 1: /* raw values and static levels on both sides */
        cfg->log_scale = false;
        cfg->thresholds[SN_METRIC_LATENCY_MS].upper_warn = 6000.0;
        cfg->thresholds[SN_METRIC_LATENCY_MS].upper_critical = 15000.0;
        cfg->thresholds[SN_METRIC_TOKENS_PER_SECOND].lower_warn = 20.0;
        cfg->thresholds[SN_METRIC_TOKENS_PER_SECOND].lower_critical = 5.0;
        cfg->thresholds[SN_METRIC_ERROR_RATE].upper_warn = 0.5;
        cfg->thresholds[SN_METRIC_COST_USD].upper_warn = 0.05;
        cfg->thresholds[SN_METRIC_TTFT_MS].lower_warn = 1.0;
        break;
    case 2: /* a window too large for the rolling moments: the table's exact window */
        cfg->window = 2000;
        cfg->thresholds[SN_METRIC_OUTPUT_TOKENS].upper_warn = 1500.0;
        break;
    case 3: /* a budget for about 140 of 175 keys: constant eviction */
        cfg->window = 100;
        cfg->max_bytes = 96 << 10;
        break;
    case 4: /* touchy Z-score, small window: many alerts of every severity */
        cfg->window = 50;
        cfg->zscore.threshold = 2.0;
        cfg->zscore.high = 2.5;
        cfg->zscore.critical = 3.0;
        cfg->zscore.min_samples = 3;
        break;
    case 5: /* 500 (service, model) pairs, more than the detector's pair cache has slots */
        cfg->window = 100;
        break;
    default:
        break;
    }
}

/* Every alert field is what main's straightforward code gave before the per-event work was cut
 * (one look-up per (service, model), units only for anomalies, no unused table statistics): the
 * digests below fold the count and every field, bit for bit, of each event's alerts over a
 * seeded stream with spikes (tests/tools/local_stream.h) in six configurations. Recorded by
 * running this test at commit 66f3694 (local_detect.c before the change, this test and
 * local_stream.c as they are) with the expectations at 0: each case's failure message printed
 * the digest. A change to local_stream.c or to the alert fields needs them recorded again, from
 * a build of the old local_detect.c. Each case runs twice: through sn_local_detect_event, and
 * through sn_local_detect_event_pair with one token per (service, model) kept for the whole
 * stream (with 500 pairs in 256 cache slots, and under eviction, tokens go stale and are
 * renewed) -- the same digests. */
START_TEST(alerts_are_identical_to_the_straightforward_code)
{
    static const digest_case cases[] = {
        {"defaults", 40000, 4, SN_METRIC_COUNT, 0x41d8f3c617e448feull},
        {"raw scale, static levels", 40000, 4, SN_METRIC_COUNT, 0x47303e7b0db495f3ull},
        {"exact window 2000", 10000, 4, SN_METRIC_COUNT, 0x8047d779a42828d6ull},
        {"eviction", 30000, 5, SN_METRIC_COUNT, 0x2c02266b2deb7191ull},
        {"touchy, window 50, room for 2", 30000, 4, 2, 0x4944b3f8f16eec40ull},
        {"500 pairs", 40000, 100, SN_METRIC_COUNT, 0x4d667d3d8b831eacull},
    };
    static pair_tokens tokens;
    for (size_t run = 0; run < 2 * sizeof cases / sizeof cases[0]; run++) {
        size_t i = run / 2;
        bool by_pair = run % 2 == 1;
        tokens.n = 0;
        sn_local_detect_config cfg;
        digest_config(i, &cfg);
        sn_local_detect *ld = make(&cfg);
        local_stream st;
        local_stream_init(&st, 7 + i);
        st.services = cases[i].services;
        sn_local_alert a[SN_METRIC_COUNT];
        sn_event ev;
        uint64_t h = LOCAL_STREAM_DIGEST_INIT, found = 0;
        for (size_t k = 0; k < cases[i].events; k++) {
            local_stream_next(&st, &ev);
            size_t n = by_pair ? sn_local_detect_event_pair(ld, &ev, token_of(&tokens, &ev), a,
                                                            cases[i].max_alerts)
                               : sn_local_detect_event(ld, &ev, a, cases[i].max_alerts);
            found += n;
            h = local_stream_digest(h, n, a, cases[i].max_alerts);
        }
        bool record = getenv("SN_TEST_PRINT_DIGESTS") != NULL;
        if (record)
            fprintf(stderr, "case %zu (%s): digest %#018llx, %llu alerts\n", i, cases[i].name,
                    (unsigned long long)h, (unsigned long long)found);
        /* The stream does exercise the detector: alerts, but not on most events. */
        ck_assert_msg(record || (found > cases[i].events / 1000 && found < cases[i].events / 2),
                      "%s: %llu alerts", cases[i].name, (unsigned long long)found);
        ck_assert_msg(record || h == cases[i].expect,
                      "%s%s: digest %#018llx, expected %#018llx (%llu alerts)", cases[i].name,
                      by_pair ? " (pair tokens)" : "", (unsigned long long)h,
                      (unsigned long long)cases[i].expect, (unsigned long long)found);
        uint64_t keys, bytes;
        sn_local_detect_usage(ld, &keys, &bytes);
        if (record)
            fprintf(stderr, "  %llu keys, %llu bytes\n", (unsigned long long)keys,
                    (unsigned long long)bytes);
        /* All keys fit, but for the eviction case (7 scored metrics per pair). */
        ck_assert_msg(i == 3 ? keys < 7u * 5 * cases[i].services : keys > 0, "%s: %llu keys",
                      cases[i].name, (unsigned long long)keys);
        sn_local_detect_destroy(ld);
    }
}
END_TEST

static Suite *local_detect_suite(void)
{
    Suite *s = suite_create("local_detect");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60); /* the digest cases take seconds under ASan on a loaded machine */
    tcase_add_test(tc, quiet_during_cold_start_and_on_normal_traffic);
    tcase_add_test(tc, zscore_baseline_is_the_mean_and_sd_of_the_last_window);
    tcase_add_test(tc, log_scale_keeps_log_normal_traffic_quiet);
    tcase_add_test(tc, latency_spike_is_an_alert_and_stays_out_of_the_baseline);
    tcase_add_test(tc, static_threshold_fires_without_a_baseline);
    tcase_add_test(tc, alerts_beyond_max_are_counted_not_written);
    tcase_add_test(tc, disabled_finds_nothing_and_bad_config_is_named);
    tcase_add_test(tc, alerts_are_identical_to_the_straightforward_code);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(local_detect_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
