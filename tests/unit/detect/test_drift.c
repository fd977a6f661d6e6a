/* Unit tests for shared/detect/drift.c: CUSUM on interval means against an in-control
 * reference. */
#include "detect/drift.h"
#include "detect/helpers.h"

#include <check.h>
#include <math.h>
#include <string.h>

#define SEC INT64_C(1000000000)

static sn_drift_config cfg;
static sn_drift st;

static void setup(void)
{
    sn_drift_config_defaults(&cfg);
    cfg.cusum.direction = SN_DIR_UPPER; /* the engine's default for latency and cost */
    sn_drift_init(&st);
}

/* Feeds `secs` seconds of log-normal values (log median mu, sigma 0.35) at `rate` calls per
 * second, the log median rising linearly by `rise` over the period; *t advances. Returns the
 * number of alarms; *first_at is the second of the first one (or -1). */
static unsigned feed(helper_rng *r, int64_t *t, int secs, int rate, double mu, double rise,
                     int *first_at)
{
    unsigned alarms = 0;
    if (first_at != NULL)
        *first_at = -1;
    for (int i = 0; i < secs * rate; i++) {
        double y = mu + rise * (double)i / (double)(secs * rate) + 0.35 * rng_normal(r);
        sn_verdict v;
        if (sn_drift_add(&st, &cfg, *t, y, &v) && v.anomaly) {
            ck_assert_int_eq(v.method, SN_DETECT_CUSUM);
            ck_assert_int_eq(v.direction, 1);
            if (alarms == 0 && first_at != NULL)
                *first_at = i / rate;
            alarms++;
        }
        *t += SEC / rate;
    }
    return alarms;
}

/* 40 s of values 4x the median at 10 calls/s; with `explain`, the first is marked as a reported
 * spike. Returns the alarms. */
static unsigned burst(helper_rng *r, int64_t *t, bool explain)
{
    unsigned alarms = 0;
    for (int i = 0; i < 400; i++, *t += SEC / 10) {
        sn_verdict v;
        alarms +=
            sn_drift_add(&st, &cfg, *t, 7.5 + log(4.0) + 0.35 * rng_normal(r), &v) && v.anomaly;
        if (explain && i == 0)
            sn_drift_explain(&st);
    }
    return alarms;
}

START_TEST(defaults_and_validation)
{
    ck_assert_double_eq(cfg.cusum.k, 0.5); /* contracts.md's CUSUM */
    ck_assert_double_eq(cfg.cusum.h, 5.0);
    ck_assert_uint_eq(cfg.cusum.min_samples, 10);
    ck_assert(cfg.interval == 60 * SEC);
    ck_assert_uint_eq(cfg.min_calls, 30);
    ck_assert_uint_eq(cfg.ref_intervals, 60);
    ck_assert_ptr_null(sn_drift_config_validate(&cfg));
    cfg.interval = 0;
    ck_assert_ptr_nonnull(sn_drift_config_validate(&cfg));
    cfg.interval = SEC;
    cfg.min_calls = 1;
    ck_assert_ptr_nonnull(sn_drift_config_validate(&cfg));
    cfg.min_calls = 30;
    cfg.cusum.h = -1;
    ck_assert_ptr_nonnull(sn_drift_config_validate(&cfg));
}
END_TEST

/* One hour of in-control log-normal traffic at 10 calls/s: no alarm, while a per-call
 * standardised CUSUM (h 5, k 0.5) would fire every few hundred calls. */
START_TEST(an_hour_in_control_is_quiet)
{
    helper_rng r = {11};
    int64_t t = 1000 * SEC;
    ck_assert_uint_eq(feed(&r, &t, 3600, 10, 7.5, 0.0, NULL), 0);
    ck_assert_uint_ge(st.ref_n, 50);
    ck_assert_uint_eq(st.cusum.alarms, 0);
}
END_TEST

/* After 30 minutes in control, the median doubles over 20 minutes: found during the ramp. */
START_TEST(a_2x_ramp_over_20_minutes_fires)
{
    helper_rng r = {12};
    int64_t t = 1000 * SEC;
    ck_assert_uint_eq(feed(&r, &t, 1800, 10, 7.5, 0.0, NULL), 0);
    double ref = st.ref_mean;
    int first = -1;
    unsigned alarms = feed(&r, &t, 1200, 10, 7.5, log(2.0), &first);
    ck_assert_uint_ge(alarms, 1);
    ck_assert_msg(first > 0 && first < 600, "first alarm %d s into the ramp", first);
    /* the reference did not follow the ramp */
    ck_assert_msg(st.ref_mean - ref < 0.5 * log(2.0), "reference moved %f", st.ref_mean - ref);
}
END_TEST

/* An interval holding a value reported as a spike (and the one after it) is neither scored nor
 * learnt: a burst of spikes leaves no drift alarm behind. */
START_TEST(explained_intervals_are_dropped)
{
    helper_rng r = {13};
    int64_t t = 1000 * SEC;
    ck_assert_uint_eq(feed(&r, &t, 1200, 10, 7.5, 0.0, NULL), 0);
    uint32_t learnt = st.ref_n;
    /* 40 s of values 4x higher, the first of them reported by the spike rule */
    unsigned alarms = burst(&r, &t, true);
    alarms += feed(&r, &t, 600, 10, 7.5, 0.0, NULL);
    ck_assert_uint_eq(alarms, 0);
    ck_assert_uint_ge(st.skipped, 1);
    ck_assert_uint_le(st.ref_n, learnt + 11);
}
END_TEST

/* Without sn_drift_explain the same burst is a drift: the test above shows the rule, not
 * luck. */
START_TEST(an_unexplained_burst_is_a_drift)
{
    helper_rng r = {13};
    int64_t t = 1000 * SEC;
    ck_assert_uint_eq(feed(&r, &t, 1200, 10, 7.5, 0.0, NULL), 0);
    unsigned alarms = burst(&r, &t, false);
    alarms += feed(&r, &t, 120, 10, 7.5, 0.0, NULL);
    ck_assert_uint_ge(alarms, 1);
}
END_TEST

/* A quiet key: intervals stretch until they hold min_calls values; nothing is scored before
 * the reference holds min_samples intervals; non-finite values are ignored. */
START_TEST(quiet_keys_and_cold_start)
{
    int64_t t = 1000 * SEC;
    sn_verdict v;
    int scored = 0;
    for (int i = 0; i < 29; i++, t += 10 * SEC)
        scored += sn_drift_add(&st, &cfg, t, 1.0, &v);
    ck_assert_int_eq(scored, 0);
    ck_assert_uint_eq(st.n, 29);
    ck_assert(!sn_drift_add(&st, &cfg, t, NAN, &v));
    ck_assert_uint_eq(st.n, 29);
    sn_drift_add(&st, &cfg, t, 1.0, &v); /* the 30th value: complete, not yet closed */
    t += 10 * SEC;
    ck_assert_uint_eq(st.ref_n, 0);
    ck_assert(!sn_drift_add(&st, &cfg, t, 1.0, &v)); /* closes it: learnt, not scored */
    t += 10 * SEC;
    ck_assert_uint_eq(st.ref_n, 1);
    /* nine more intervals are learnt without a verdict, the next one is scored */
    for (int i = 0; i < 30 * 9; i++, t += 10 * SEC)
        scored += sn_drift_add(&st, &cfg, t, 1.0 + 0.01 * (i % 3), &v);
    ck_assert_int_eq(scored, 0);
    ck_assert_uint_eq(st.ref_n, 10);
    for (int i = 0; i < 30; i++, t += 10 * SEC)
        scored += sn_drift_add(&st, &cfg, t, 1.0 + 0.01 * (i % 3), &v);
    ck_assert_int_eq(scored, 1);
    ck_assert(v.ready);
}
END_TEST

/* sn_drift_add_valid steps the state exactly as sn_drift_add does and returns the same verdict
 * whenever an interval is scored: in control, a ramp, explained bursts and non-finite values. */
START_TEST(valid_variant_matches_checked)
{
    helper_rng r = {21};
    sn_drift a, b;
    memset(&a, 0, sizeof a); /* padding too: the states are compared bytewise */
    memset(&b, 0, sizeof b);
    sn_drift_init(&a);
    sn_drift_init(&b);
    ck_assert_ptr_null(sn_drift_config_validate(&cfg));
    int64_t t = 1000 * SEC;
    unsigned scored = 0, fired = 0;
    for (int i = 0; i < 36000; i++, t += SEC / 10) {
        double y =
            7.5 + (i > 24000 ? log(3.0) * (i - 24000) / 6000.0 : 0.0) + 0.35 * rng_normal(&r);
        if (i % 997 == 0)
            y = NAN;
        if (i % 5000 == 17) {
            sn_drift_explain(&a);
            sn_drift_explain(&b);
        }
        sn_verdict va, vb;
        bool sa = sn_drift_add(&a, &cfg, t, y, &va);
        bool sb = sn_drift_add_valid(&b, &cfg, t, y, &vb);
        ck_assert(sa == sb);
        ck_assert(memcmp(&a, &b, sizeof a) == 0);
        if (sa) {
            scored++;
            fired += va.anomaly;
            ck_assert(va.anomaly == vb.anomaly && va.severity == vb.severity);
            ck_assert(va.value == vb.value && va.baseline == vb.baseline);
            ck_assert(va.deviation == vb.deviation && va.confidence == vb.confidence);
            ck_assert_int_eq(va.direction, vb.direction);
        }
    }
    ck_assert_uint_gt(scored, 20);
    ck_assert_uint_gt(fired, 0);
}
END_TEST

static Suite *drift_suite(void)
{
    Suite *s = suite_create("detect_drift");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, defaults_and_validation);
    tcase_add_test(tc, an_hour_in_control_is_quiet);
    tcase_add_test(tc, a_2x_ramp_over_20_minutes_fires);
    tcase_add_test(tc, explained_intervals_are_dropped);
    tcase_add_test(tc, an_unexplained_burst_is_a_drift);
    tcase_add_test(tc, quiet_keys_and_cold_start);
    tcase_add_test(tc, valid_variant_matches_checked);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(drift_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
