/* Unit tests for shared/detect/zscore.c. */
#include "detect/zscore.h"
#include "detect/helpers.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <string.h>

static sn_zscore_config cfg;

static void setup(void)
{
    sn_zscore_config_defaults(&cfg);
}

/* A baseline with mean 0 and stddev 1, so x is z. */
static sn_summary unit_baseline(void)
{
    return mk_summary(100, 0.0, 1.0, 0.0, -0.67, 0.67, 0.67);
}

START_TEST(defaults_follow_the_contract)
{
    ck_assert_double_eq(cfg.threshold, 3.0);
    ck_assert_double_eq(cfg.high, 4.0);
    ck_assert_double_eq(cfg.critical, 6.0);
    ck_assert_uint_eq(cfg.min_samples, 10);
    ck_assert_int_eq(cfg.direction, SN_DIR_BOTH);
    ck_assert_ptr_null(sn_zscore_config_validate(&cfg));
}
END_TEST

START_TEST(validate_names_the_bad_field)
{
    sn_zscore_config c = cfg;
    c.threshold = 0.0;
    ck_assert_ptr_nonnull(strstr(sn_zscore_config_validate(&c), "threshold"));
    c.threshold = NAN;
    ck_assert_ptr_nonnull(strstr(sn_zscore_config_validate(&c), "threshold"));
    c = cfg;
    c.high = 2.0;
    ck_assert_ptr_nonnull(strstr(sn_zscore_config_validate(&c), "high"));
    c = cfg;
    c.critical = 3.5;
    ck_assert_ptr_nonnull(strstr(sn_zscore_config_validate(&c), "critical"));
    c = cfg;
    c.min_samples = 0;
    ck_assert_ptr_nonnull(strstr(sn_zscore_config_validate(&c), "min_samples"));
    c = cfg;
    c.direction = (sn_direction)5;
    ck_assert_ptr_nonnull(strstr(sn_zscore_config_validate(&c), "direction"));
    c = cfg;
    c.min_stddev = -1.0;
    ck_assert_ptr_nonnull(strstr(sn_zscore_config_validate(&c), "min_stddev"));
    c = cfg;
    c.min_stddev_rel = INFINITY;
    ck_assert_ptr_nonnull(strstr(sn_zscore_config_validate(&c), "min_stddev_rel"));
    /* An invalid config scores nothing. */
    sn_summary b = unit_baseline();
    sn_verdict v;
    ck_assert(!sn_zscore_score(&c, &b, 100.0, &v));
    ck_assert(!v.ready && !v.anomaly);
}
END_TEST

START_TEST(severity_boundaries)
{
    sn_summary b = unit_baseline();
    sn_verdict v;
    struct {
        double z;
        bool anomaly;
        sn_severity sev;
    } cases[] = {
        {0.0, false, SN_SEV_NONE},     {2.99, false, SN_SEV_NONE},
        {3.0, false, SN_SEV_NONE}, /* |z| > 3.0 is strict */
        {3.0001, true, SN_SEV_MEDIUM}, {3.99, true, SN_SEV_MEDIUM},
        {4.0, true, SN_SEV_HIGH},      {5.99, true, SN_SEV_HIGH},
        {6.0, true, SN_SEV_CRITICAL},  {60.0, true, SN_SEV_CRITICAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int sign = -1; sign <= 1; sign += 2) {
            double x = sign * cases[i].z;
            ck_assert_int_eq(sn_zscore_score(&cfg, &b, x, &v), cases[i].anomaly);
            ck_assert(v.ready);
            ck_assert_int_eq(v.method, SN_DETECT_ZSCORE);
            ck_assert_int_eq(v.anomaly, cases[i].anomaly);
            ck_assert_int_eq(v.severity, cases[i].sev);
            ck_assert_double_eq_tol(v.deviation, x, 1e-12);
            if (x != 0.0)
                ck_assert_int_eq(v.direction, sign);
            if (cases[i].anomaly) {
                ck_assert(v.confidence >= 0.5 && v.confidence <= 0.99);
                ck_assert(v.score > 0.5);
            } else {
                ck_assert_double_eq(v.confidence, 0.0);
                ck_assert(v.score <= 0.5);
            }
        }
    }
    /* At the threshold exactly the score is 0.5. */
    sn_zscore_score(&cfg, &b, 3.0, &v);
    ck_assert_double_eq_tol(v.score, 0.5, 1e-12);
}
END_TEST

START_TEST(verdict_fields)
{
    sn_summary b = mk_summary(1000, 2000.0, 500.0, 1900.0, 1700.0, 2300.0, 300.0);
    sn_verdict v;
    ck_assert(sn_zscore_score(&cfg, &b, 4600.0, &v));
    ck_assert_double_eq(v.value, 4600.0);
    ck_assert_double_eq(v.baseline, 2000.0);
    ck_assert_double_eq_tol(v.deviation, 5.2, 1e-12);
    ck_assert_double_eq_tol(v.threshold, 3500.0, 1e-9);
    ck_assert_int_eq(v.direction, 1);
    ck_assert_int_eq(v.severity, SN_SEV_HIGH);
    ck_assert(!sn_zscore_score(&cfg, &b, 1000.0, &v));
    ck_assert_double_eq_tol(v.threshold, 500.0, 1e-9);
    ck_assert_int_eq(v.direction, -1);
}
END_TEST

START_TEST(cold_start_gives_no_verdict)
{
    sn_summary b = unit_baseline();
    sn_verdict v;
    b.n = 9;
    ck_assert(!sn_zscore_score(&cfg, &b, 50.0, &v));
    ck_assert(!v.ready && !v.anomaly);
    ck_assert_int_eq(v.severity, SN_SEV_NONE);
    b.n = 10;
    ck_assert(sn_zscore_score(&cfg, &b, 50.0, &v));
    ck_assert(v.ready);
    cfg.min_samples = 30;
    b.n = 29;
    ck_assert(!sn_zscore_score(&cfg, &b, 50.0, &v));
    ck_assert(!v.ready);
    b.n = 0;
    ck_assert(!sn_zscore_score(&cfg, &b, 50.0, &v));
}
END_TEST

START_TEST(non_finite_input_gives_no_verdict)
{
    sn_summary good = unit_baseline();
    sn_verdict v;
    double bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        ck_assert(!sn_zscore_score(&cfg, &good, bad[i], &v));
        ck_assert(!v.ready && !v.anomaly);
        sn_summary b = good;
        b.mean = bad[i];
        ck_assert(!sn_zscore_score(&cfg, &b, 10.0, &v));
        ck_assert(!v.ready);
        b = good;
        b.stddev = bad[i];
        ck_assert(!sn_zscore_score(&cfg, &b, 10.0, &v));
        ck_assert(!v.ready);
    }
    sn_summary b = good;
    b.stddev = -1.0;
    ck_assert(!sn_zscore_score(&cfg, &b, 10.0, &v));
    ck_assert(!v.ready);
    /* Quartiles and MAD are not used: NAN there is fine. */
    b = good;
    b.q1 = b.q3 = b.median = b.mad = NAN;
    ck_assert(sn_zscore_score(&cfg, &b, 10.0, &v));
}
END_TEST

START_TEST(zero_variance_uses_the_floor)
{
    /* A baseline constant at 100: stddev 0, floor 1 % of 100 = 1. */
    sn_summary b = mk_summary(500, 100.0, 0.0, 100.0, 100.0, 100.0, 0.0);
    sn_verdict v;
    ck_assert(!sn_zscore_score(&cfg, &b, 100.0, &v));
    ck_assert(v.ready);
    ck_assert_double_eq(v.deviation, 0.0);
    ck_assert_double_eq(v.score, 0.0);
    ck_assert(!sn_zscore_score(&cfg, &b, 101.0, &v)); /* tiny change: quiet */
    ck_assert_double_eq_tol(v.deviation, 1.0, 1e-9);
    ck_assert(!sn_zscore_score(&cfg, &b, 102.9, &v));
    ck_assert(sn_zscore_score(&cfg, &b, 103.5, &v));
    ck_assert_int_eq(v.severity, SN_SEV_MEDIUM);
    ck_assert(sn_zscore_score(&cfg, &b, 110.0, &v)); /* big change: still fires */
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    ck_assert(sn_zscore_score(&cfg, &b, 95.0, &v));
    ck_assert_int_eq(v.direction, -1);
    ck_assert_int_eq(v.severity, SN_SEV_HIGH);
    /* A stddev that is positive but below the floor is raised too. */
    b.stddev = 1e-6;
    ck_assert(!sn_zscore_score(&cfg, &b, 101.0, &v));
    /* Relative floor configurable. */
    cfg.min_stddev_rel = 0.1; /* s = 10 */
    ck_assert(!sn_zscore_score(&cfg, &b, 110.0, &v));
    ck_assert_double_eq_tol(v.deviation, 1.0, 1e-9);
    /* A baseline constant at 0 uses the absolute floor. */
    sn_zscore_config_defaults(&cfg);
    b = mk_summary(500, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    ck_assert(!sn_zscore_score(&cfg, &b, 0.0, &v));
    ck_assert(v.ready);
    ck_assert(!sn_zscore_score(&cfg, &b, 1e-10, &v));
    ck_assert(sn_zscore_score(&cfg, &b, 1.0, &v));
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    ck_assert(isfinite(v.deviation) && v.score <= 1.0);
    /* With both floors off, a zero stddev gives no verdict rather than a division by 0. */
    cfg.min_stddev = 0.0;
    cfg.min_stddev_rel = 0.0;
    ck_assert(!sn_zscore_score(&cfg, &b, 1.0, &v));
    ck_assert(!v.ready);
}
END_TEST

START_TEST(negative_values)
{
    sn_summary b = mk_summary(200, -50.0, 5.0, -50.0, -53.0, -47.0, 3.0);
    sn_verdict v;
    ck_assert(sn_zscore_score(&cfg, &b, -80.0, &v));
    ck_assert_int_eq(v.direction, -1);
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    ck_assert_double_eq_tol(v.deviation, -6.0, 1e-12);
    ck_assert(sn_zscore_score(&cfg, &b, -30.0, &v));
    ck_assert_int_eq(v.direction, 1);
    ck_assert_int_eq(v.severity, SN_SEV_HIGH);
    ck_assert(!sn_zscore_score(&cfg, &b, -45.0, &v));
    /* Constant negative baseline: the relative floor uses |mean|. */
    b = mk_summary(200, -200.0, 0.0, -200.0, -200.0, -200.0, 0.0);
    ck_assert(!sn_zscore_score(&cfg, &b, -202.0, &v));
    ck_assert_double_eq_tol(v.deviation, -1.0, 1e-12);
}
END_TEST

START_TEST(huge_values_stay_finite)
{
    sn_summary b = mk_summary(100, -1e308, 1.0, 0.0, 0.0, 0.0, 0.0);
    sn_verdict v;
    double xs[] = {1e308, DBL_MAX, -DBL_MAX};
    for (int i = 0; i < 3; i++) {
        sn_zscore_score(&cfg, &b, xs[i], &v);
        ck_assert(v.ready);
        ck_assert(isfinite(v.deviation));
        ck_assert(isfinite(v.threshold));
        ck_assert(v.score >= 0.0 && v.score <= 1.0);
        if (v.anomaly)
            ck_assert(v.confidence >= 0.5 && v.confidence <= 0.99);
    }
    sn_zscore_score(&cfg, &b, DBL_MAX, &v);
    ck_assert(v.anomaly);
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    ck_assert_double_eq_tol(v.confidence, 0.99, 1e-12);
    /* DBL_MAX against a constant-0 baseline (scale = the 1e-9 floor): z is capped, finite. */
    b = mk_summary(100, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    ck_assert(sn_zscore_score(&cfg, &b, DBL_MAX, &v));
    ck_assert(isfinite(v.deviation) && v.deviation > 0.0);
    ck_assert(sn_zscore_score(&cfg, &b, -DBL_MAX, &v));
    ck_assert(isfinite(v.deviation) && v.deviation < 0.0);
    ck_assert_double_eq(v.score, sn_detect_score(fabs(v.deviation) / 3.0));
    /* A huge stddev: nothing is anomalous. */
    b = mk_summary(100, 0.0, DBL_MAX, 0.0, 0.0, 0.0, 0.0);
    ck_assert(!sn_zscore_score(&cfg, &b, 1e300, &v));
    ck_assert(v.ready);
    ck_assert(isfinite(v.score));
}
END_TEST

START_TEST(direction_filter)
{
    sn_summary b = unit_baseline();
    sn_verdict v;
    cfg.direction = SN_DIR_UPPER;
    ck_assert(sn_zscore_score(&cfg, &b, 10.0, &v));
    ck_assert(!sn_zscore_score(&cfg, &b, -10.0, &v));
    ck_assert(v.ready);
    ck_assert_int_eq(v.direction, -1);
    ck_assert_double_eq(v.score, 0.0);
    cfg.direction = SN_DIR_LOWER;
    ck_assert(!sn_zscore_score(&cfg, &b, 10.0, &v));
    ck_assert(sn_zscore_score(&cfg, &b, -10.0, &v));
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
}
END_TEST

START_TEST(custom_levels)
{
    sn_summary b = unit_baseline();
    sn_verdict v;
    cfg.threshold = 2.0;
    cfg.high = 2.5;
    cfg.critical = 3.0;
    ck_assert(sn_zscore_score(&cfg, &b, 2.2, &v));
    ck_assert_int_eq(v.severity, SN_SEV_MEDIUM);
    ck_assert(sn_zscore_score(&cfg, &b, 2.5, &v));
    ck_assert_int_eq(v.severity, SN_SEV_HIGH);
    ck_assert(sn_zscore_score(&cfg, &b, 3.0, &v));
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
}
END_TEST

START_TEST(score_and_confidence_monotonic_in_deviation)
{
    sn_summary b = unit_baseline();
    sn_verdict v;
    double prev_score = -1.0, prev_conf = 0.0;
    for (double x = 0.0; x <= 40.0; x += 0.05) {
        sn_zscore_score(&cfg, &b, x, &v);
        ck_assert(v.score > prev_score);
        ck_assert(v.score >= 0.0 && v.score <= 1.0);
        prev_score = v.score;
        if (v.anomaly) {
            ck_assert(v.confidence >= prev_conf);
            ck_assert(v.confidence >= 0.5 && v.confidence <= 0.99);
            prev_conf = v.confidence;
        }
    }
    ck_assert(prev_conf > 0.98);
}
END_TEST

START_TEST(noise_with_injected_spikes)
{
    /* Latency ~ N(1000, 100): a 1000-sample baseline, then 600 fresh samples with five
     * labelled spikes. Every spike fires with the right severity; the unlabelled samples fire
     * at most at the Gaussian rate (0.27 %, so ~1.6 expected; allow 5). */
    static double base[1000];
    helper_rng r = {UINT64_C(0x5eed1234)};
    for (int i = 0; i < 1000; i++)
        base[i] = 1000.0 + 100.0 * rng_normal(&r);
    sn_summary b;
    summarise(base, 1000, &b);
    struct {
        int at;
        double sigmas;
        sn_severity sev;
    } spikes[] = {{50, 3.6, SN_SEV_MEDIUM},
                  {100, 4.8, SN_SEV_HIGH},
                  {250, 8.0, SN_SEV_CRITICAL},
                  {400, -7.0, SN_SEV_CRITICAL},
                  {550, 30.0, SN_SEV_CRITICAL}};
    int false_alarms = 0, caught = 0;
    sn_verdict v;
    for (int t = 0; t < 600; t++) {
        int label = -1;
        for (int s = 0; s < 5; s++)
            if (spikes[s].at == t)
                label = s;
        double x = 1000.0 + 100.0 * rng_normal(&r);
        if (label >= 0)
            x = b.mean + spikes[label].sigmas * b.stddev;
        bool fired = sn_zscore_score(&cfg, &b, x, &v);
        if (label >= 0) {
            ck_assert_msg(fired, "spike at %d missed", t);
            ck_assert_int_eq(v.severity, spikes[label].sev);
            ck_assert_int_eq(v.direction, spikes[label].sigmas > 0 ? 1 : -1);
            caught++;
        } else if (fired) {
            false_alarms++;
        }
    }
    ck_assert_int_eq(caught, 5);
    ck_assert_int_le(false_alarms, 5);
}
END_TEST

static Suite *zscore_suite(void)
{
    Suite *s = suite_create("detect_zscore");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, defaults_follow_the_contract);
    tcase_add_test(tc, validate_names_the_bad_field);
    tcase_add_test(tc, severity_boundaries);
    tcase_add_test(tc, verdict_fields);
    tcase_add_test(tc, cold_start_gives_no_verdict);
    tcase_add_test(tc, non_finite_input_gives_no_verdict);
    tcase_add_test(tc, zero_variance_uses_the_floor);
    tcase_add_test(tc, negative_values);
    tcase_add_test(tc, huge_values_stay_finite);
    tcase_add_test(tc, direction_filter);
    tcase_add_test(tc, custom_levels);
    tcase_add_test(tc, score_and_confidence_monotonic_in_deviation);
    tcase_add_test(tc, noise_with_injected_spikes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(zscore_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
