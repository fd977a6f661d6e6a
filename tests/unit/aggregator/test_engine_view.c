/* Unit tests for the engine's merged views across replicas (aggregator/engine.c,
 * sn_engine_view_*): the merged summary equals the summary of the union of the replicas'
 * samples (moments exactly, quantiles within the sketch's error), scoring uses the view, bad
 * blobs are skipped, and a view never survives a clear or a restore. */
#include "engine.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC SN_NS_PER_SEC
#define N   300 /* samples per replica: both sketches of a window keep them all */

static unsigned anomalies;
static void count(const sn_anomaly *a, void *ud)
{
    (void)a, (void)ud;
    anomalies++;
}

static sn_engine *engine(int mode)
{
    sn_engine_config cfg;
    sn_engine_config_defaults(&cfg);
    cfg.throughput_enabled = false;
    cfg.baseline_mode = mode;
    sn_engine *e = NULL;
    sn_config_error err;
    ck_assert_int_eq(sn_engine_create(&e, &cfg, 7, &err), 0);
    return e;
}

static void observe(sn_engine *e, const char *svc, int64_t t, double latency)
{
    sn_event ev;
    sn_event_init(&ev);
    snprintf(ev.service, sizeof ev.service, "%s", svc);
    snprintf(ev.model, sizeof ev.model, "gpt-4o");
    ev.end_unix_nano = t;
    ev.start_unix_nano = t - (int64_t)(latency * 1e6);
    ev.latency_ms = latency;
    sn_engine_observe(e, &ev, count, NULL);
}

/* Sample i of a replica's traffic around `level` ms, spread over +-10 %. */
static double sample(double level, int i)
{
    return level * (1.0 + 0.1 * (double)((i * 37) % 101 - 50) / 50.0);
}

/* n calls of svc around `level` ms into e, one a second from t0; returns the next time. */
static int64_t feed(sn_engine *e, const char *svc, int n, double level)
{
    int64_t t = INT64_C(1700000000) * SEC;
    for (int i = 0; i < n; i++, t += SEC)
        observe(e, svc, t, sample(level, i));
    return t;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Type-7 quantile of sorted v[0..n). */
static double quantile(const double *v, size_t n, double q)
{
    double h = q * (double)(n - 1);
    size_t lo = (size_t)floor(h), hi = (size_t)ceil(h);
    return v[lo] + (h - (double)lo) * (v[hi] - v[lo]);
}

/* Copies the blob of svc's latency key out of e. */
static uint8_t *export(sn_engine *e, const char *svc, size_t *len)
{
    const void *blob;
    ck_assert_int_eq(sn_engine_view_export(e, svc, "gpt-4o", SN_METRIC_LATENCY_MS, &blob, len), 0);
    uint8_t *copy = malloc(*len);
    memcpy(copy, blob, *len);
    return copy;
}

static const sn_baseline_entry *entry(sn_engine *e, const char *svc)
{
    return sn_baseline_find(sn_engine_baselines(e), svc, "gpt-4o", SN_METRIC_LATENCY_MS);
}

START_TEST(merged_summary_is_the_summary_of_the_union)
{
    /* Replica a sees ~1000 ms, replica b ~5000 ms; u sees both (one replica with all traffic). */
    sn_engine *a = engine(SN_BASELINE_COMPACT), *b = engine(SN_BASELINE_COMPACT),
              *u = engine(SN_BASELINE_COMPACT);
    double all[2 * N];
    for (int i = 0; i < N; i++) {
        int64_t t = INT64_C(1700000000) * SEC + i * SEC;
        all[2 * i] = sample(1000.0, i);
        all[2 * i + 1] = sample(5000.0, i);
        observe(a, "svc", t, all[2 * i]);
        observe(b, "svc", t, all[2 * i + 1]);
        observe(u, "svc", t, all[2 * i]);
        observe(u, "svc", t, all[2 * i + 1]);
    }
    size_t len;
    uint8_t *blob = export(b, "svc", &len);
    const void *blobs[] = {blob};
    sn_engine_view v;
    ck_assert_int_eq(
        sn_engine_view_merge(a, "svc", "gpt-4o", SN_METRIC_LATENCY_MS, 1, blobs, &len, &v), 0);
    ck_assert_uint_eq(v.replicas, 2);
    ck_assert_uint_eq(v.skipped, 0);
    ck_assert_uint_eq(v.local_n, N);
    ck_assert_uint_eq(sn_engine_view_replicas(a, entry(a, "svc")), 2);

    /* Count, mean, stddev, min, max: exact (Chan's merge); quantiles: within the sketch's
     * relative accuracy (2 %) of both the union replica's sketch and the exact values. */
    sn_summary us;
    sn_baseline_summary(sn_engine_baselines(u), entry(u, "svc"), &us);
    ck_assert_uint_eq(v.raw.n, 2 * N);
    ck_assert_uint_eq(us.n, 2 * N);
    ck_assert_double_eq_tol(v.raw.mean, us.mean, 1e-9 * us.mean);
    ck_assert_double_eq_tol(v.raw.stddev, us.stddev, 1e-9 * us.stddev);
    ck_assert_double_eq(v.raw.min, us.min);
    ck_assert_double_eq(v.raw.max, us.max);
    qsort(all, 2 * N, sizeof all[0], cmp);
    const double qs[] = {0.25, 0.5, 0.75, 0.95, 0.99};
    const double got[] = {v.raw.q1, v.raw.median, v.raw.q3, v.raw.p95, v.raw.p99};
    const double uni[] = {us.q1, us.median, us.q3, us.p95, us.p99};
    for (int k = 0; k < 5; k++) {
        double exact = quantile(all, 2 * N, qs[k]);
        ck_assert_msg(fabs(got[k] - exact) <= 0.021 * exact, "q%.2f: merged %g exact %g", qs[k],
                      got[k], exact);
        ck_assert_msg(fabs(got[k] - uni[k]) <= 0.042 * uni[k], "q%.2f: merged %g union %g", qs[k],
                      got[k], uni[k]);
    }
    free(blob);
    sn_engine_destroy(a);
    sn_engine_destroy(b);
    sn_engine_destroy(u);
}
END_TEST

START_TEST(scoring_uses_the_merged_view)
{
    sn_engine *a = engine(SN_BASELINE_COMPACT), *b = engine(SN_BASELINE_COMPACT);
    feed(a, "svc", N, 1000.0);
    feed(a, "solo", N, 1000.0);
    int64_t t = feed(b, "svc", N, 5000.0);
    ck_assert_uint_eq(anomalies, 0);
    size_t len;
    uint8_t *blob = export(b, "svc", &len);
    const void *blobs[] = {blob};
    sn_engine_view v;
    ck_assert_int_eq(
        sn_engine_view_merge(a, "svc", "gpt-4o", SN_METRIC_LATENCY_MS, 1, blobs, &len, &v), 0);
    /* 5000 ms twice: b's normal, so quiet against the merged view of svc ... */
    anomalies = 0;
    observe(a, "svc", t, 5000.0);
    observe(a, "svc", t + SEC, 5000.0);
    ck_assert_uint_eq(anomalies, 0);
    /* ... and an anomaly for the key a alone knows. */
    observe(a, "solo", t, 5000.0);
    observe(a, "solo", t + SEC, 5000.0);
    ck_assert_uint_ge(anomalies, 1);
    /* The view survives the summary refresh of later values, until it is cleared. */
    for (int i = 0; i < 40; i++)
        observe(a, "svc", t + (2 + i) * SEC, sample(1000.0, i));
    ck_assert_uint_eq(sn_engine_view_replicas(a, entry(a, "svc")), 2);
    sn_engine_view_clear_all(a);
    ck_assert_uint_eq(sn_engine_view_replicas(a, entry(a, "svc")), 0);
    anomalies = 0;
    observe(a, "svc", t + 50 * SEC, 5000.0);
    observe(a, "svc", t + 51 * SEC, 5000.0);
    ck_assert_uint_ge(anomalies, 1); /* scored on a's own baseline again */
    free(blob);
    sn_engine_destroy(a);
    sn_engine_destroy(b);
}
END_TEST

START_TEST(bad_blobs_are_skipped)
{
    sn_engine *a = engine(SN_BASELINE_COMPACT), *b = engine(SN_BASELINE_COMPACT);
    feed(a, "svc", 50, 1000.0);
    feed(b, "svc", 50, 1000.0);
    int64_t t = feed(b, "other", 50, 1000.0);
    size_t len, olen;
    uint8_t *good = export(b, "svc", &len), *other = export(b, "other", &olen);
    uint8_t *bad = malloc(len);
    memcpy(bad, good, len);
    bad[len / 2] ^= 0x40; /* the CRC no longer matches */
    const void *blobs[] = {bad, other, good};
    size_t lens[] = {len, olen, len - 1};
    sn_engine_view v;
    ck_assert_int_eq(
        sn_engine_view_merge(a, "svc", "gpt-4o", SN_METRIC_LATENCY_MS, 3, blobs, lens, &v), 0);
    ck_assert_uint_eq(v.skipped, 3); /* corrupt, another key, truncated */
    ck_assert_uint_eq(v.replicas, 1);
    ck_assert_uint_eq(v.raw.n, 50); /* the local summary */
    ck_assert_uint_eq(sn_engine_view_replicas(a, entry(a, "svc")), 0);

    /* A good one merges; then no blob at all gives the local summary back. */
    lens[2] = len;
    ck_assert_int_eq(
        sn_engine_view_merge(a, "svc", "gpt-4o", SN_METRIC_LATENCY_MS, 1, &blobs[2], &lens[2], &v),
        0);
    ck_assert_uint_eq(v.replicas, 2);
    ck_assert_uint_eq(v.raw.n, 100);
    ck_assert_int_eq(
        sn_engine_view_merge(a, "svc", "gpt-4o", SN_METRIC_LATENCY_MS, 0, NULL, NULL, &v), 0);
    ck_assert_uint_eq(v.replicas, 1);
    ck_assert_uint_eq(sn_engine_view_replicas(a, entry(a, "svc")), 0);
    /* Unknown key; exact mode. */
    ck_assert_int_eq(
        sn_engine_view_merge(a, "nope", "gpt-4o", SN_METRIC_LATENCY_MS, 1, &blobs[2], &lens[2], &v),
        -ENOENT);
    sn_engine *x = engine(SN_BASELINE_EXACT);
    observe(x, "svc", t, 1000.0);
    ck_assert_int_eq(
        sn_engine_view_merge(x, "svc", "gpt-4o", SN_METRIC_LATENCY_MS, 1, &blobs[2], &lens[2], &v),
        -EPROTO);
    free(good);
    free(other);
    free(bad);
    sn_engine_destroy(a);
    sn_engine_destroy(b);
    sn_engine_destroy(x);
}
END_TEST

START_TEST(a_restored_key_has_no_view)
{
    sn_engine *a = engine(SN_BASELINE_COMPACT), *b = engine(SN_BASELINE_COMPACT);
    feed(a, "svc", 50, 1000.0);
    feed(b, "svc", 50, 3000.0);
    size_t len, alen;
    uint8_t *blob = export(b, "svc", &len);
    const void *blobs[] = {blob};
    sn_engine_view v;
    ck_assert_int_eq(
        sn_engine_view_merge(a, "svc", "gpt-4o", SN_METRIC_LATENCY_MS, 1, blobs, &len, &v), 0);
    uint8_t *ablob = export(a, "svc", &alen); /* carries the view flag in its user area */
    sn_engine *r = engine(SN_BASELINE_COMPACT);
    char key[SN_ENGINE_SNAPSHOT_KEY_MAX];
    sn_engine_global_key("svc", "gpt-4o", SN_METRIC_LATENCY_MS, key, sizeof key);
    ck_assert_str_eq(key, "g/latency_ms/3/svcgpt-4o");
    ck_assert_int_eq(sn_engine_restore(r, key, ablob, alen), 0);
    ck_assert_uint_eq(sn_engine_view_replicas(r, entry(r, "svc")), 0);
    free(blob);
    free(ablob);
    sn_engine_destroy(a);
    sn_engine_destroy(b);
    sn_engine_destroy(r);
}
END_TEST

static Suite *view_suite(void)
{
    Suite *s = suite_create("engine_view");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, merged_summary_is_the_summary_of_the_union);
    tcase_add_test(tc, scoring_uses_the_merged_view);
    tcase_add_test(tc, bad_blobs_are_skipped);
    tcase_add_test(tc, a_restored_key_has_no_view);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(view_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
