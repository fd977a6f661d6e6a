/* Unit tests for shared/detect/iqr.c. */
#include "detect/iqr.h"
#include "detect/helpers.h"
#include "detect/zscore.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <string.h>

static sn_iqr_config cfg;

static void setup(void)
{
    sn_iqr_config_defaults(&cfg);
}

/* Q1 = 10, median 15, Q3 = 20: IQR 10, fences -5 and 35, critical at -20 and 50. */
static sn_summary box(void)
{
    return mk_summary(100, 15.0, 8.0, 15.0, 10.0, 20.0, 5.0);
}

START_TEST(defaults_follow_the_contract)
{
    ck_assert_double_eq(cfg.k, 1.5);
    ck_assert_double_eq(cfg.high_k, 2.25);
    ck_assert_double_eq(cfg.critical_k, 3.0);
    ck_assert_uint_eq(cfg.min_samples, 10);
    ck_assert_ptr_null(sn_iqr_config_validate(&cfg));
}
END_TEST

START_TEST(validate_names_the_bad_field)
{
    sn_iqr_config c = cfg;
    c.k = -1.0;
    ck_assert_ptr_nonnull(strstr(sn_iqr_config_validate(&c), "k must"));
    c = cfg;
    c.high_k = 1.0;
    ck_assert_ptr_nonnull(strstr(sn_iqr_config_validate(&c), "high_k"));
    c = cfg;
    c.critical_k = 2.0;
    ck_assert_ptr_nonnull(strstr(sn_iqr_config_validate(&c), "critical_k"));
    c = cfg;
    c.min_samples = 0;
    ck_assert_ptr_nonnull(strstr(sn_iqr_config_validate(&c), "min_samples"));
    c = cfg;
    c.min_iqr = NAN;
    ck_assert_ptr_nonnull(strstr(sn_iqr_config_validate(&c), "min_iqr"));
    c = cfg;
    c.min_iqr_rel = -0.5;
    ck_assert_ptr_nonnull(strstr(sn_iqr_config_validate(&c), "min_iqr_rel"));
    c = cfg;
    c.direction = (sn_direction)-1;
    ck_assert_ptr_nonnull(strstr(sn_iqr_config_validate(&c), "direction"));
    sn_summary b = box();
    sn_verdict v;
    ck_assert(!sn_iqr_score(&c, &b, 1000.0, &v));
    ck_assert(!v.ready);
}
END_TEST

START_TEST(severity_boundaries)
{
    sn_summary b = box();
    sn_verdict v;
    struct {
        double x;
        bool anomaly;
        sn_severity sev;
    } cases[] = {
        {15.0, false, SN_SEV_NONE},     {34.99, false, SN_SEV_NONE},
        {35.0, false, SN_SEV_NONE}, /* on the fence: outside is strict */
        {35.01, true, SN_SEV_MEDIUM},   {42.49, true, SN_SEV_MEDIUM},
        {42.5, true, SN_SEV_HIGH},      {49.99, true, SN_SEV_HIGH},
        {50.0, true, SN_SEV_CRITICAL},  {-4.99, false, SN_SEV_NONE},
        {-5.0, false, SN_SEV_NONE},     {-5.01, true, SN_SEV_MEDIUM},
        {-12.5, true, SN_SEV_HIGH},     {-19.99, true, SN_SEV_HIGH},
        {-20.0, true, SN_SEV_CRITICAL}, {-1e6, true, SN_SEV_CRITICAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_msg(sn_iqr_score(&cfg, &b, cases[i].x, &v) == cases[i].anomaly, "x=%g",
                      cases[i].x);
        ck_assert(v.ready);
        ck_assert_int_eq(v.method, SN_DETECT_IQR);
        ck_assert_int_eq(v.severity, cases[i].sev);
        if (cases[i].anomaly)
            ck_assert(v.confidence >= 0.5 && v.confidence <= 0.99);
        else
            ck_assert_double_eq(v.confidence, 0.0);
    }
    /* Inside the box the score is 0; on the fence 0.5. */
    sn_iqr_score(&cfg, &b, 18.0, &v);
    ck_assert_double_eq(v.score, 0.0);
    sn_iqr_score(&cfg, &b, 35.0, &v);
    ck_assert_double_eq_tol(v.score, 0.5, 1e-12);
    ck_assert_double_eq(v.threshold, 35.0);
    ck_assert_double_eq(v.baseline, 15.0);
    ck_assert_int_eq(v.direction, 1);
    /* deviation is in robust sigmas: (x - median) / (IQR / 1.349). */
    ck_assert_double_eq_tol(v.deviation, 20.0 / (10.0 / 1.3489795003921634), 1e-9);
    sn_iqr_score(&cfg, &b, -20.0, &v);
    ck_assert_double_eq(v.threshold, -5.0);
    ck_assert_int_eq(v.direction, -1);
}
END_TEST

START_TEST(cold_start_and_non_finite)
{
    sn_summary b = box();
    sn_verdict v;
    b.n = 9;
    ck_assert(!sn_iqr_score(&cfg, &b, 1000.0, &v));
    ck_assert(!v.ready);
    b.n = 10;
    ck_assert(sn_iqr_score(&cfg, &b, 1000.0, &v));
    double bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        ck_assert(!sn_iqr_score(&cfg, &b, bad[i], &v));
        ck_assert(!v.ready && !v.anomaly);
        sn_summary c = b;
        c.q1 = bad[i];
        ck_assert(!sn_iqr_score(&cfg, &c, 1000.0, &v));
        c = b;
        c.q3 = bad[i];
        ck_assert(!sn_iqr_score(&cfg, &c, 1000.0, &v));
        c = b;
        c.median = bad[i];
        ck_assert(!sn_iqr_score(&cfg, &c, 1000.0, &v));
        ck_assert(!v.ready);
    }
    sn_summary c = b;
    c.q1 = 30.0; /* q1 > q3 */
    ck_assert(!sn_iqr_score(&cfg, &c, 1000.0, &v));
    ck_assert(!v.ready);
    /* mean/stddev unused while the IQR is positive. */
    c = b;
    c.mean = NAN;
    c.stddev = NAN;
    ck_assert(sn_iqr_score(&cfg, &c, 1000.0, &v));
}
END_TEST

START_TEST(zero_iqr)
{
    /* Constant at 100: stddev 0 too, so the floor (1 % of 100) sets the width. */
    sn_summary b = mk_summary(500, 100.0, 0.0, 100.0, 100.0, 100.0, 0.0);
    sn_verdict v;
    ck_assert(!sn_iqr_score(&cfg, &b, 100.0, &v));
    ck_assert(v.ready);
    ck_assert(!sn_iqr_score(&cfg, &b, 101.0, &v));
    ck_assert(!sn_iqr_score(&cfg, &b, 101.5, &v));
    ck_assert(sn_iqr_score(&cfg, &b, 101.6, &v));
    ck_assert_int_eq(v.severity, SN_SEV_MEDIUM);
    ck_assert(sn_iqr_score(&cfg, &b, 103.0, &v));
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    ck_assert(sn_iqr_score(&cfg, &b, 50.0, &v));
    ck_assert_int_eq(v.direction, -1);
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    ck_assert(isfinite(v.deviation));
    /* Mostly zeros (Q1 = Q3 = 0) but some spread: the stddev gives the width. */
    static double xs[1000];
    for (int i = 0; i < 1000; i++)
        xs[i] = (i % 5 == 0) ? 10.0 + (double)(i % 7) : 0.0;
    summarise(xs, 1000, &b);
    ck_assert_double_eq(b.q1, 0.0);
    ck_assert_double_eq(b.q3, 0.0);
    ck_assert(b.stddev > 4.0);
    /* An ordinary non-zero value is at most a medium outlier (on a zero-width box with only
     * the absolute floor it would be critical). */
    sn_iqr_score(&cfg, &b, 12.0, &v);
    ck_assert(v.ready);
    ck_assert_int_le(v.severity, SN_SEV_MEDIUM);
    ck_assert(!sn_iqr_score(&cfg, &b, 8.0, &v));
    ck_assert(sn_iqr_score(&cfg, &b, 200.0, &v));
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    /* No spread, no floors: no verdict. */
    cfg.min_iqr = 0.0;
    cfg.min_iqr_rel = 0.0;
    b = mk_summary(500, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    ck_assert(!sn_iqr_score(&cfg, &b, 5.0, &v));
    ck_assert(!v.ready);
}
END_TEST

START_TEST(negative_and_huge_values)
{
    sn_summary b = mk_summary(100, -15.0, 8.0, -15.0, -20.0, -10.0, 5.0);
    sn_verdict v;
    ck_assert(sn_iqr_score(&cfg, &b, -50.0, &v));
    ck_assert_int_eq(v.direction, -1);
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    ck_assert(!sn_iqr_score(&cfg, &b, 4.0, &v));
    ck_assert(sn_iqr_score(&cfg, &b, 6.0, &v));
    ck_assert_int_eq(v.direction, 1);
    double xs[] = {DBL_MAX, -DBL_MAX, 1e308};
    for (int i = 0; i < 3; i++) {
        ck_assert(sn_iqr_score(&cfg, &b, xs[i], &v));
        ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
        ck_assert(isfinite(v.deviation) && isfinite(v.threshold));
        ck_assert(v.score >= 0.0 && v.score <= 1.0);
        ck_assert(v.confidence >= 0.5 && v.confidence <= 0.99);
    }
    /* DBL_MAX against a zero-width box at 0 (the 1e-9 floor): capped, finite. */
    b = mk_summary(100, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    ck_assert(sn_iqr_score(&cfg, &b, DBL_MAX, &v));
    ck_assert(isfinite(v.deviation));
    ck_assert(sn_iqr_score(&cfg, &b, -DBL_MAX, &v));
    ck_assert(isfinite(v.deviation));
    /* Quartiles at the ends of the double range: the width does not overflow. */
    b = mk_summary(100, 0.0, 1.0, 0.0, -DBL_MAX, DBL_MAX, 1.0);
    ck_assert(!sn_iqr_score(&cfg, &b, 1e308, &v));
    ck_assert(v.ready);
    ck_assert(isfinite(v.threshold) && isfinite(v.score));
}
END_TEST

START_TEST(score_monotonic_and_direction)
{
    sn_summary b = box();
    sn_verdict v;
    double prev = -1.0;
    for (double x = 20.0; x < 200.0; x += 0.25) {
        sn_iqr_score(&cfg, &b, x, &v);
        ck_assert(x == 20.0 || v.score > prev);
        ck_assert(v.score <= 1.0);
        prev = v.score;
    }
    cfg.direction = SN_DIR_LOWER;
    ck_assert(!sn_iqr_score(&cfg, &b, 100.0, &v));
    ck_assert(v.ready);
    ck_assert_double_eq(v.score, 0.0);
    ck_assert(sn_iqr_score(&cfg, &b, -100.0, &v));
    cfg.direction = SN_DIR_UPPER;
    ck_assert(!sn_iqr_score(&cfg, &b, -100.0, &v));
    ck_assert(sn_iqr_score(&cfg, &b, 100.0, &v));
}
END_TEST

/* Log-normal latencies (median e^7 ~ 1097 ms, sigma 0.5), the shape LLM latencies have. */
static void lognormal(helper_rng *r, double *xs, int n)
{
    for (int i = 0; i < n; i++)
        xs[i] = exp(7.0 + 0.5 * rng_normal(r));
}

START_TEST(heavy_tailed_traffic)
{
    static double base[2000], fresh[2000];
    helper_rng r = {UINT64_C(0xfeedbeef)};
    lognormal(&r, base, 2000);
    lognormal(&r, fresh, 2000);
    sn_summary b;
    summarise(base, 2000, &b);
    sn_verdict v;
    /* Ordinary traffic: the right tail of a log-normal sits past Q3 + 1.5 IQR about 3.8 % of
     * the time and past Q3 + 3 IQR about 0.65 %; the lower fence is below 0 and never hit. */
    int fired = 0, critical = 0, low = 0;
    for (int i = 0; i < 2000; i++) {
        if (sn_iqr_score(&cfg, &b, fresh[i], &v)) {
            fired++;
            critical += v.severity == SN_SEV_CRITICAL;
            low += v.direction < 0;
        }
    }
    ck_assert_int_lt(fired, 100);   /* < 5 % */
    ck_assert_int_gt(fired, 20);    /* the tail is real: > 1 % */
    ck_assert_int_lt(critical, 40); /* < 2 % */
    ck_assert_int_eq(low, 0);
    /* A 10x-median spike is critical. */
    ck_assert(sn_iqr_score(&cfg, &b, 10.0 * b.median, &v));
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);

    /* Contaminate the baseline with 2 % of 100x outliers (say, stuck requests): the stddev
     * explodes, so the Z-score no longer sees the spike, while the quartiles barely move and
     * the IQR detector still does. */
    for (int i = 0; i < 2000; i += 50)
        base[i] = 100.0 * exp(7.0);
    sn_summary c;
    summarise(base, 2000, &c);
    ck_assert_double_eq_tol(c.q3, b.q3, 0.05 * b.q3);
    ck_assert(sn_iqr_score(&cfg, &c, 10.0 * b.median, &v));
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    sn_zscore_config z;
    sn_zscore_config_defaults(&z);
    ck_assert(!sn_zscore_score(&z, &c, 10.0 * b.median, &v));
    ck_assert(v.ready);
}
END_TEST

static Suite *iqr_suite(void)
{
    Suite *s = suite_create("detect_iqr");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, defaults_follow_the_contract);
    tcase_add_test(tc, validate_names_the_bad_field);
    tcase_add_test(tc, severity_boundaries);
    tcase_add_test(tc, cold_start_and_non_finite);
    tcase_add_test(tc, zero_iqr);
    tcase_add_test(tc, negative_and_huge_values);
    tcase_add_test(tc, score_monotonic_and_direction);
    tcase_add_test(tc, heavy_tailed_traffic);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(iqr_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
