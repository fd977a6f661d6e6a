/* Unit tests for shared/detect/mad.c. */
#include "detect/helpers.h"
#include "detect/mad.h"
#include "detect/zscore.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <string.h>

static sn_mad_config cfg;

static void setup(void)
{
    sn_mad_config_defaults(&cfg);
}

/* Median 0 and MAD 0.6745, so the robust sigma is 1 and the modified Z-score is x. */
static sn_summary unit_baseline(void)
{
    return mk_summary(100, 0.0, 1.0, 0.0, -0.6745, 0.6745, SN_MAD_SIGMA);
}

START_TEST(defaults_follow_the_contract)
{
    ck_assert_double_eq(cfg.threshold, 3.5);
    ck_assert_double_eq(cfg.high, 5.0);
    ck_assert_double_eq(cfg.critical, 7.0);
    ck_assert_uint_eq(cfg.min_samples, 10);
    ck_assert_ptr_null(sn_mad_config_validate(&cfg));
}
END_TEST

START_TEST(validate_names_the_bad_field)
{
    sn_mad_config c = cfg;
    c.threshold = -3.5;
    ck_assert_ptr_nonnull(strstr(sn_mad_config_validate(&c), "threshold"));
    c = cfg;
    c.high = 3.0;
    ck_assert_ptr_nonnull(strstr(sn_mad_config_validate(&c), "high"));
    c = cfg;
    c.critical = INFINITY;
    ck_assert_ptr_nonnull(strstr(sn_mad_config_validate(&c), "critical"));
    c = cfg;
    c.min_samples = 0;
    ck_assert_ptr_nonnull(strstr(sn_mad_config_validate(&c), "min_samples"));
    c = cfg;
    c.min_scale = -1.0;
    ck_assert_ptr_nonnull(strstr(sn_mad_config_validate(&c), "min_scale"));
    c = cfg;
    c.min_scale_rel = NAN;
    ck_assert_ptr_nonnull(strstr(sn_mad_config_validate(&c), "min_scale_rel"));
    c = cfg;
    c.direction = (sn_direction)9;
    ck_assert_ptr_nonnull(strstr(sn_mad_config_validate(&c), "direction"));
    sn_summary b = unit_baseline();
    sn_verdict v;
    ck_assert(!sn_mad_score(&c, &b, 100.0, &v));
    ck_assert(!v.ready);
}
END_TEST

START_TEST(severity_boundaries)
{
    sn_summary b = unit_baseline();
    sn_verdict v;
    struct {
        double m;
        bool anomaly;
        sn_severity sev;
    } cases[] = {
        {0.0, false, SN_SEV_NONE},     {3.49, false, SN_SEV_NONE},
        {3.5, false, SN_SEV_NONE}, /* > 3.5 is strict */
        {3.5001, true, SN_SEV_MEDIUM}, {4.99, true, SN_SEV_MEDIUM},
        {5.0, true, SN_SEV_HIGH},      {6.99, true, SN_SEV_HIGH},
        {7.0, true, SN_SEV_CRITICAL},  {70.0, true, SN_SEV_CRITICAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int sign = -1; sign <= 1; sign += 2) {
            double x = sign * cases[i].m;
            ck_assert_int_eq(sn_mad_score(&cfg, &b, x, &v), cases[i].anomaly);
            ck_assert(v.ready);
            ck_assert_int_eq(v.method, SN_DETECT_MAD);
            ck_assert_int_eq(v.severity, cases[i].sev);
            ck_assert_double_eq_tol(v.deviation, x, 1e-12);
            if (cases[i].anomaly) {
                ck_assert_int_eq(v.direction, sign);
                ck_assert(v.confidence >= 0.5 && v.confidence <= 0.99);
            } else {
                ck_assert_double_eq(v.confidence, 0.0);
            }
        }
    }
}
END_TEST

START_TEST(modified_z_formula)
{
    /* 0.6745 * (10 - 2) / 1.5 = 3.597 > 3.5. */
    sn_summary b = mk_summary(50, 2.5, 2.0, 2.0, 1.0, 3.0, 1.5);
    sn_verdict v;
    ck_assert(sn_mad_score(&cfg, &b, 10.0, &v));
    ck_assert_double_eq_tol(v.deviation, 0.6745 * 8.0 / 1.5, 1e-12);
    ck_assert_double_eq(v.baseline, 2.0);
    ck_assert_double_eq_tol(v.threshold, 2.0 + 3.5 * 1.5 / 0.6745, 1e-9);
    ck_assert_int_eq(v.severity, SN_SEV_MEDIUM);
    ck_assert(!sn_mad_score(&cfg, &b, 9.5, &v)); /* 0.6745 * 7.5 / 1.5 = 3.37 */
    ck_assert(v.ready);
}
END_TEST

START_TEST(cold_start_and_non_finite)
{
    sn_summary b = unit_baseline();
    sn_verdict v;
    b.n = 9;
    ck_assert(!sn_mad_score(&cfg, &b, 100.0, &v));
    ck_assert(!v.ready && !v.anomaly);
    b.n = 10;
    ck_assert(sn_mad_score(&cfg, &b, 100.0, &v));
    double bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        ck_assert(!sn_mad_score(&cfg, &b, bad[i], &v));
        ck_assert(!v.ready && !v.anomaly);
        sn_summary c = b;
        c.median = bad[i];
        ck_assert(!sn_mad_score(&cfg, &c, 100.0, &v));
        c = b;
        c.mad = bad[i];
        ck_assert(!sn_mad_score(&cfg, &c, 100.0, &v));
        ck_assert(!v.ready);
    }
    sn_summary c = b;
    c.mad = -1.0;
    ck_assert(!sn_mad_score(&cfg, &c, 100.0, &v));
    ck_assert(!v.ready);
    /* With a positive MAD nothing else is needed. */
    c = b;
    c.mean = c.stddev = c.q1 = c.q3 = NAN;
    ck_assert(sn_mad_score(&cfg, &c, 100.0, &v));
}
END_TEST

START_TEST(zero_mad_falls_back)
{
    sn_verdict v;
    /* MAD 0, IQR 20: sigma = 20 / 1.349 = 14.83. */
    sn_summary b = mk_summary(100, 100.0, 30.0, 100.0, 90.0, 110.0, 0.0);
    ck_assert(!sn_mad_score(&cfg, &b, 150.0, &v)); /* 3.37 */
    ck_assert(v.ready);
    ck_assert_double_eq_tol(v.deviation, 50.0 / (20.0 / 1.3489795003921634), 1e-9);
    ck_assert(sn_mad_score(&cfg, &b, 160.0, &v)); /* 4.05 */
    ck_assert_int_eq(v.severity, SN_SEV_MEDIUM);
    /* MAD 0 and IQR 0: the stddev. */
    b = mk_summary(100, 101.0, 5.0, 100.0, 100.0, 100.0, 0.0);
    ck_assert(!sn_mad_score(&cfg, &b, 117.0, &v));
    ck_assert_double_eq_tol(v.deviation, 17.0 / 5.0, 1e-12);
    ck_assert(sn_mad_score(&cfg, &b, 120.0, &v));
    ck_assert_double_eq_tol(v.deviation, 4.0, 1e-12);
    /* Nothing to fall back on (constant, quartiles unknown): the floor, 1 % of the median. */
    b = mk_summary(100, 100.0, 0.0, 100.0, NAN, NAN, 0.0);
    ck_assert(!sn_mad_score(&cfg, &b, 101.0, &v));
    ck_assert(v.ready);
    ck_assert_double_eq_tol(v.deviation, 1.0, 1e-12);
    ck_assert(sn_mad_score(&cfg, &b, 110.0, &v));
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    ck_assert(sn_mad_score(&cfg, &b, 90.0, &v));
    ck_assert_int_eq(v.direction, -1);
    /* No floors either: no verdict. */
    cfg.min_scale = 0.0;
    cfg.min_scale_rel = 0.0;
    ck_assert(!sn_mad_score(&cfg, &b, 110.0, &v));
    ck_assert(!v.ready);
    /* A constant-0 baseline with the default absolute floor: any real change is critical. */
    sn_mad_config_defaults(&cfg);
    b = mk_summary(100, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    ck_assert(sn_mad_score(&cfg, &b, 1.0, &v));
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    ck_assert(isfinite(v.deviation));
}
END_TEST

START_TEST(negative_and_huge_values)
{
    sn_summary b = mk_summary(100, -100.0, 10.0, -100.0, -106.0, -94.0, 6.745);
    sn_verdict v;
    ck_assert(sn_mad_score(&cfg, &b, -180.0, &v)); /* M = -8 */
    ck_assert_int_eq(v.direction, -1);
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    ck_assert(!sn_mad_score(&cfg, &b, -70.0, &v)); /* M = 3 */
    ck_assert(sn_mad_score(&cfg, &b, -50.0, &v));  /* M = 5 */
    ck_assert_int_eq(v.severity, SN_SEV_HIGH);
    double xs[] = {DBL_MAX, -DBL_MAX};
    for (int i = 0; i < 2; i++) {
        ck_assert(sn_mad_score(&cfg, &b, xs[i], &v));
        ck_assert(isfinite(v.deviation) && isfinite(v.threshold));
        ck_assert(v.score >= 0.0 && v.score <= 1.0);
        ck_assert(v.confidence >= 0.5 && v.confidence <= 0.99);
    }
    b = mk_summary(100, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0); /* scale: the 1e-9 floor */
    ck_assert(sn_mad_score(&cfg, &b, DBL_MAX, &v));
    ck_assert(isfinite(v.deviation) && isfinite(v.threshold));
    b = mk_summary(100, 0.0, 1.0, 0.0, -1.0, 1.0, DBL_MAX);
    ck_assert(!sn_mad_score(&cfg, &b, 1e308, &v));
    ck_assert(v.ready && isfinite(v.threshold));
}
END_TEST

START_TEST(score_monotonic_and_direction)
{
    sn_summary b = unit_baseline();
    sn_verdict v;
    double prev = -1.0;
    for (double x = 0.0; x < 50.0; x += 0.1) {
        sn_mad_score(&cfg, &b, -x, &v);
        ck_assert(v.score > prev && v.score <= 1.0);
        prev = v.score;
    }
    cfg.direction = SN_DIR_UPPER;
    ck_assert(!sn_mad_score(&cfg, &b, -10.0, &v));
    ck_assert(v.ready);
    ck_assert_double_eq(v.score, 0.0);
    ck_assert(sn_mad_score(&cfg, &b, 10.0, &v));
}
END_TEST

START_TEST(heavy_tailed_traffic)
{
    static double base[2000], fresh[2000];
    helper_rng r = {UINT64_C(0xabad1dea)};
    for (int i = 0; i < 2000; i++)
        base[i] = exp(7.0 + 0.5 * rng_normal(&r));
    for (int i = 0; i < 2000; i++)
        fresh[i] = exp(7.0 + 0.5 * rng_normal(&r));
    sn_summary b;
    summarise(base, 2000, &b);
    sn_verdict v;
    /* Log-normal(sigma 0.5) traffic crosses median + 3.5 * MAD / 0.6745 (~2.7x the median)
     * about 2.3 % of the time; never on the low side (it would need a negative latency). */
    int fired = 0, low = 0;
    for (int i = 0; i < 2000; i++) {
        if (sn_mad_score(&cfg, &b, fresh[i], &v)) {
            fired++;
            low += v.direction < 0;
        }
    }
    ck_assert_int_lt(fired, 100); /* < 5 % */
    ck_assert_int_gt(fired, 10);  /* the tail is real */
    ck_assert_int_eq(low, 0);
    ck_assert(sn_mad_score(&cfg, &b, 10.0 * b.median, &v));
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    /* 2 % of 100x outliers in the baseline: the median and MAD barely move, so the spike is
     * still critical, while the Z-score's inflated stddev hides it. */
    for (int i = 0; i < 2000; i += 50)
        base[i] = 100.0 * exp(7.0);
    sn_summary c;
    summarise(base, 2000, &c);
    ck_assert_double_eq_tol(c.mad, b.mad, 0.05 * b.mad);
    ck_assert(sn_mad_score(&cfg, &c, 10.0 * b.median, &v));
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    sn_zscore_config z;
    sn_zscore_config_defaults(&z);
    ck_assert(!sn_zscore_score(&z, &c, 10.0 * b.median, &v));
    ck_assert(v.ready);
}
END_TEST

static Suite *mad_suite(void)
{
    Suite *s = suite_create("detect_mad");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, defaults_follow_the_contract);
    tcase_add_test(tc, validate_names_the_bad_field);
    tcase_add_test(tc, severity_boundaries);
    tcase_add_test(tc, modified_z_formula);
    tcase_add_test(tc, cold_start_and_non_finite);
    tcase_add_test(tc, zero_mad_falls_back);
    tcase_add_test(tc, negative_and_huge_values);
    tcase_add_test(tc, score_monotonic_and_direction);
    tcase_add_test(tc, heavy_tailed_traffic);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(mad_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
