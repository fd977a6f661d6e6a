/* Unit tests for shared/detect/cusum.c. */
#include "detect/cusum.h"
#include "detect/helpers.h"
#include "detect/zscore.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <string.h>

static sn_cusum_config cfg;
static sn_cusum st;

static void setup(void)
{
    sn_cusum_config_defaults(&cfg);
    sn_cusum_init(&st);
}

/* Mean 0, stddev 1: each x is its own z. */
static sn_summary unit_baseline(void)
{
    return mk_summary(100, 0.0, 1.0, 0.0, -0.67, 0.67, 0.67);
}

START_TEST(defaults_follow_the_contract)
{
    ck_assert_double_eq(cfg.k, 0.5);
    ck_assert_double_eq(cfg.h, 5.0);
    ck_assert_double_eq(cfg.high, 7.5);
    ck_assert_double_eq(cfg.critical, 10.0);
    ck_assert_uint_eq(cfg.min_samples, 10);
    ck_assert_int_eq(cfg.direction, SN_DIR_BOTH);
    ck_assert_ptr_null(sn_cusum_config_validate(&cfg));
    ck_assert_double_eq(st.s_hi, 0.0);
    ck_assert_double_eq(st.s_lo, 0.0);
    ck_assert_uint_eq(st.steps, 0);
    ck_assert_uint_eq(st.alarms, 0);
}
END_TEST

START_TEST(validate_names_the_bad_field)
{
    sn_cusum_config c = cfg;
    c.k = -0.1;
    ck_assert_ptr_nonnull(strstr(sn_cusum_config_validate(&c), "k must"));
    c = cfg;
    c.h = 0.0;
    ck_assert_ptr_nonnull(strstr(sn_cusum_config_validate(&c), "h must"));
    c = cfg;
    c.high = 4.0;
    ck_assert_ptr_nonnull(strstr(sn_cusum_config_validate(&c), "high"));
    c = cfg;
    c.critical = 7.0;
    ck_assert_ptr_nonnull(strstr(sn_cusum_config_validate(&c), "critical"));
    c = cfg;
    c.min_samples = 0;
    ck_assert_ptr_nonnull(strstr(sn_cusum_config_validate(&c), "min_samples"));
    c = cfg;
    c.min_stddev_rel = -1.0;
    ck_assert_ptr_nonnull(strstr(sn_cusum_config_validate(&c), "min_stddev_rel"));
    c = cfg;
    c.direction = (sn_direction)4;
    ck_assert_ptr_nonnull(strstr(sn_cusum_config_validate(&c), "direction"));
    /* An invalid config neither scores nor moves the state. */
    sn_summary b = unit_baseline();
    sn_verdict v;
    ck_assert(!sn_cusum_step(&st, &c, &b, 3.0, &v));
    ck_assert(!v.ready);
    ck_assert_double_eq(st.s_hi, 0.0);
    ck_assert_uint_eq(st.steps, 0);
}
END_TEST

START_TEST(upper_recursion_fires_after_h_and_resets)
{
    sn_summary b = unit_baseline();
    sn_verdict v;
    /* z = 1.5 adds 1.0 per step: 5 steps reach S+ = 5.0 exactly (not > h). */
    for (int i = 1; i <= 5; i++) {
        ck_assert(!sn_cusum_step(&st, &cfg, &b, 1.5, &v));
        ck_assert(v.ready);
        ck_assert_double_eq_tol(st.s_hi, (double)i, 1e-12);
        ck_assert_double_eq(st.s_lo, 0.0);
        ck_assert_uint_eq(st.n_hi, (uint64_t)i);
    }
    ck_assert_double_eq_tol(v.score, 0.5, 1e-12); /* S = h */
    ck_assert(sn_cusum_step(&st, &cfg, &b, 1.5, &v));
    ck_assert_int_eq(v.method, SN_DETECT_CUSUM);
    ck_assert_int_eq(v.direction, 1);
    ck_assert_int_eq(v.severity, SN_SEV_MEDIUM);
    ck_assert_double_eq(v.threshold, 5.0);
    ck_assert_double_eq(v.baseline, 0.0);
    /* Estimated shift k + S/N = 0.5 + 6/6 = 1.5 sigmas: the true one. */
    ck_assert_double_eq_tol(v.deviation, 1.5, 1e-12);
    ck_assert_double_eq_tol(st.drift, 1.5, 1e-12);
    ck_assert(v.confidence >= 0.5 && v.confidence <= 0.99);
    /* Reset after firing. */
    ck_assert_double_eq(st.s_hi, 0.0);
    ck_assert_double_eq(st.s_lo, 0.0);
    ck_assert_uint_eq(st.n_hi, 0);
    ck_assert_uint_eq(st.alarms, 1);
    ck_assert_uint_eq(st.steps, 6);
    ck_assert(!sn_cusum_step(&st, &cfg, &b, 1.5, &v));
    ck_assert_double_eq_tol(st.s_hi, 1.0, 1e-12);
}
END_TEST

START_TEST(lower_side_and_slack)
{
    sn_summary b = unit_baseline();
    sn_verdict v;
    /* z = -2 adds 1.5 to S- per step: fires on the 4th (6 > 5). */
    for (int i = 0; i < 3; i++)
        ck_assert(!sn_cusum_step(&st, &cfg, &b, -2.0, &v));
    ck_assert_double_eq_tol(st.s_lo, 4.5, 1e-12);
    ck_assert_int_eq(v.direction, -1);
    ck_assert(sn_cusum_step(&st, &cfg, &b, -2.0, &v));
    ck_assert_int_eq(v.direction, -1);
    ck_assert_double_eq_tol(v.deviation, -2.0, 1e-12);
    ck_assert_double_eq_tol(st.drift, -2.0, 1e-12);
    /* Values within the slack never accumulate. */
    sn_cusum_init(&st);
    for (int i = 0; i < 1000; i++) {
        ck_assert(!sn_cusum_step(&st, &cfg, &b, (i % 2) ? 0.5 : -0.5, &v));
        ck_assert_double_eq(st.s_hi, 0.0);
        ck_assert_double_eq(st.s_lo, 0.0);
    }
    /* Alternating +-2: each side is pulled back to 0 by the other step, never fires. */
    for (int i = 0; i < 1000; i++)
        ck_assert(!sn_cusum_step(&st, &cfg, &b, (i % 2) ? 2.0 : -2.0, &v));
    ck_assert(st.s_hi <= 1.5 && st.s_lo <= 1.5);
    ck_assert_uint_eq(st.alarms, 0);
}
END_TEST

START_TEST(severity_by_distance_past_h)
{
    sn_summary b = unit_baseline();
    sn_verdict v;
    struct {
        double z;
        bool fires;
        sn_severity sev;
    } cases[] = {
        {5.5, false, SN_SEV_NONE},     /* S = 5.0 */
        {5.51, true, SN_SEV_MEDIUM},   /* S = 5.01 */
        {7.99, true, SN_SEV_MEDIUM},   /* S = 7.49 */
        {8.0, true, SN_SEV_HIGH},      /* S = 7.5 */
        {10.49, true, SN_SEV_HIGH},    /* S = 9.99 */
        {10.5, true, SN_SEV_CRITICAL}, /* S = 10 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int sign = -1; sign <= 1; sign += 2) {
            sn_cusum_init(&st);
            ck_assert_int_eq(sn_cusum_step(&st, &cfg, &b, sign * cases[i].z, &v), cases[i].fires);
            ck_assert_int_eq(v.severity, cases[i].sev);
            ck_assert_int_eq(v.direction, sign);
        }
    }
}
END_TEST

START_TEST(cold_start_and_bad_input_leave_state_alone)
{
    sn_summary b = unit_baseline();
    sn_verdict v;
    sn_cusum_step(&st, &cfg, &b, 3.0, &v);
    sn_cusum_step(&st, &cfg, &b, 3.0, &v);
    sn_cusum saved = st;
    ck_assert_double_eq_tol(saved.s_hi, 5.0, 1e-12);
    sn_summary cold = b;
    cold.n = 9;
    ck_assert(!sn_cusum_step(&st, &cfg, &cold, 100.0, &v));
    ck_assert(!v.ready);
    ck_assert_mem_eq(&st, &saved, sizeof st);
    double bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        ck_assert(!sn_cusum_step(&st, &cfg, &b, bad[i], &v));
        ck_assert(!v.ready && !v.anomaly);
        sn_summary c = b;
        c.mean = bad[i];
        ck_assert(!sn_cusum_step(&st, &cfg, &c, 100.0, &v));
        c = b;
        c.stddev = bad[i];
        ck_assert(!sn_cusum_step(&st, &cfg, &c, 100.0, &v));
        ck_assert(!v.ready);
    }
    sn_summary c = b;
    c.stddev = -2.0;
    ck_assert(!sn_cusum_step(&st, &cfg, &c, 100.0, &v));
    ck_assert_mem_eq(&st, &saved, sizeof st);
    /* The next good value continues from where it was: 5.0 + 2.5 > 5 fires. */
    ck_assert(sn_cusum_step(&st, &cfg, &b, 3.0, &v));
}
END_TEST

START_TEST(slow_drift_caught_by_cusum_not_zscore)
{
    /* Cost per call around $0.010 (stddev $0.001), then rising 2 % of the baseline per step.
     * After 14 steps it is 28 % (2.8 sigma) up: no single value is a Z-score outlier, but the
     * CUSUM has accumulated the evidence by step 10. */
    sn_summary b = mk_summary(1000, 0.010, 0.001, 0.010, 0.0093, 0.0107, 0.00067);
    sn_zscore_config z;
    sn_zscore_config_defaults(&z);
    helper_rng r = {42};
    sn_verdict v, zv;
    int first_alarm = 0;
    for (int t = 1; t <= 14; t++) {
        double noise = (rng_uniform(&r) - 0.5) * 0.0001; /* +-0.05 sigma */
        double x = 0.010 * (1.0 + 0.02 * t) + noise;
        ck_assert_msg(!sn_zscore_score(&z, &b, x, &zv), "z-score fired at step %d", t);
        ck_assert(zv.ready);
        if (sn_cusum_step(&st, &cfg, &b, x, &v) && first_alarm == 0) {
            first_alarm = t;
            ck_assert_int_eq(v.direction, 1);
            ck_assert(v.deviation > 0.5);
            ck_assert(st.drift > 0.0);
        }
    }
    ck_assert_int_gt(first_alarm, 5);
    ck_assert_int_le(first_alarm, 11);
}
END_TEST

START_TEST(noise_is_quiet_and_a_shift_is_found)
{
    /* h = 5, k = 0.5 has an in-control average run length of several hundred steps, so 2000
     * steps of pure noise give a handful of alarms at most; a 1-sigma shift is found in about
     * 10 steps. */
    static double base[1000];
    helper_rng r = {UINT64_C(0xc0ffee)};
    for (int i = 0; i < 1000; i++)
        base[i] = 500.0 + 50.0 * rng_normal(&r);
    sn_summary b;
    summarise(base, 1000, &b);
    sn_verdict v;
    for (int i = 0; i < 2000; i++)
        sn_cusum_step(&st, &cfg, &b, 500.0 + 50.0 * rng_normal(&r), &v);
    ck_assert_uint_le(st.alarms, 12);
    sn_cusum_init(&st);
    int found = 0;
    for (int i = 1; i <= 40 && !found; i++)
        if (sn_cusum_step(&st, &cfg, &b, 550.0 + 50.0 * rng_normal(&r), &v))
            found = i;
    ck_assert_int_gt(found, 0);
    ck_assert_int_le(found, 30);
    ck_assert_int_eq(v.direction, 1);
    ck_assert(v.deviation > 0.5 && v.deviation < 3.0);
}
END_TEST

START_TEST(direction_filter)
{
    sn_summary b = unit_baseline();
    sn_verdict v;
    cfg.direction = SN_DIR_UPPER;
    for (int i = 0; i < 50; i++)
        ck_assert(!sn_cusum_step(&st, &cfg, &b, -3.0, &v));
    ck_assert(v.ready);
    ck_assert_int_eq(v.direction, 1);
    ck_assert_double_eq(v.score, 0.0);
    ck_assert_double_eq(st.s_lo, 0.0); /* the excluded side does not build up */
    ck_assert(sn_cusum_step(&st, &cfg, &b, 6.0, &v));
    ck_assert_int_eq(v.direction, 1);
    cfg.direction = SN_DIR_LOWER;
    sn_cusum_init(&st);
    for (int i = 0; i < 50; i++)
        ck_assert(!sn_cusum_step(&st, &cfg, &b, 3.0, &v));
    ck_assert(sn_cusum_step(&st, &cfg, &b, -6.0, &v));
    ck_assert_int_eq(v.direction, -1);
}
END_TEST

START_TEST(zero_variance_negative_and_huge)
{
    sn_verdict v;
    /* Constant at 100: floor 1. 100.4 is within the slack; 102 accumulates 1.5 per step. */
    sn_summary b = mk_summary(100, 100.0, 0.0, 100.0, 100.0, 100.0, 0.0);
    for (int i = 0; i < 100; i++)
        ck_assert(!sn_cusum_step(&st, &cfg, &b, 100.4, &v));
    ck_assert_double_eq(st.s_hi, 0.0);
    for (int i = 0; i < 3; i++)
        ck_assert(!sn_cusum_step(&st, &cfg, &b, 102.0, &v));
    ck_assert(sn_cusum_step(&st, &cfg, &b, 102.0, &v));
    /* Negative baseline. */
    sn_cusum_init(&st);
    b = mk_summary(100, -40.0, 4.0, -40.0, -43.0, -37.0, 3.0);
    for (int i = 0; i < 3; i++)
        ck_assert(!sn_cusum_step(&st, &cfg, &b, -48.0, &v)); /* z = -2 */
    ck_assert(sn_cusum_step(&st, &cfg, &b, -48.0, &v));
    ck_assert_int_eq(v.direction, -1);
    /* Huge values: one step is capped, fires critical, and everything stays finite. */
    sn_cusum_init(&st);
    b = mk_summary(100, -1e308, 1e-300, 0.0, 0.0, 0.0, 0.0);
    ck_assert(sn_cusum_step(&st, &cfg, &b, DBL_MAX, &v));
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    ck_assert(isfinite(v.deviation) && isfinite(st.drift));
    ck_assert(v.score >= 0.0 && v.score <= 1.0);
    ck_assert(v.confidence >= 0.5 && v.confidence <= 0.99);
    ck_assert_double_eq(st.s_hi, 0.0);
    for (int i = 0; i < 100; i++) {
        sn_cusum_step(&st, &cfg, &b, (i % 2) ? DBL_MAX : -DBL_MAX, &v);
        ck_assert(isfinite(st.s_hi) && isfinite(st.s_lo));
        ck_assert(v.score >= 0.0 && v.score <= 1.0);
    }
}
END_TEST

START_TEST(score_grows_with_the_sum)
{
    sn_summary b = unit_baseline();
    sn_verdict v;
    double prev = -1.0;
    /* z = 0.6 adds 0.1 per step: the score rises with S until the alarm. */
    for (int i = 0; i < 49; i++) {
        ck_assert(!sn_cusum_step(&st, &cfg, &b, 0.6, &v));
        ck_assert(v.score > prev);
        prev = v.score;
    }
    ck_assert_double_eq_tol(v.score, sn_detect_score(st.s_hi / 5.0), 1e-12);
}
END_TEST

static Suite *cusum_suite(void)
{
    Suite *s = suite_create("detect_cusum");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, defaults_follow_the_contract);
    tcase_add_test(tc, validate_names_the_bad_field);
    tcase_add_test(tc, upper_recursion_fires_after_h_and_resets);
    tcase_add_test(tc, lower_side_and_slack);
    tcase_add_test(tc, severity_by_distance_past_h);
    tcase_add_test(tc, cold_start_and_bad_input_leave_state_alone);
    tcase_add_test(tc, slow_drift_caught_by_cusum_not_zscore);
    tcase_add_test(tc, noise_is_quiet_and_a_shift_is_found);
    tcase_add_test(tc, direction_filter);
    tcase_add_test(tc, zero_variance_negative_and_huge);
    tcase_add_test(tc, score_grows_with_the_sum);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cusum_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
