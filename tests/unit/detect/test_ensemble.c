/* Unit tests for shared/detect/ensemble.c. */
#include "detect/ensemble.h"
#include "detect/helpers.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <string.h>

static sn_ensemble_config cfg;
static sn_ensemble st;

static void setup(void)
{
    sn_ensemble_config_defaults(&cfg);
    sn_ensemble_init(&st);
}

/* A normal-looking baseline: mean = median = 100, stddev 10, quartiles 93.26 / 106.74 (IQR
 * 13.49 = 1.349 sigma), MAD 6.745 (= 0.6745 sigma). All three robust scales say sigma = 10. */
static sn_summary normal_baseline(void)
{
    return mk_summary(1000, 100.0, 10.0, 100.0, 93.255, 106.745, 6.745);
}

START_TEST(defaults)
{
    ck_assert(cfg.zscore_enabled && cfg.iqr_enabled && cfg.mad_enabled && cfg.cusum_enabled);
    ck_assert(!cfg.threshold_enabled);
    ck_assert_uint_eq(cfg.min_agree, 1);
    ck_assert_double_eq(cfg.zscore.threshold, 3.0);
    ck_assert_double_eq(cfg.mad.threshold, 3.5);
    ck_assert_double_eq(cfg.cusum.h, 5.0);
    ck_assert_ptr_null(sn_ensemble_config_validate(&cfg, NULL));
}
END_TEST

START_TEST(validate_says_which_detector)
{
    sn_detector_kind which = SN_DETECT_BUDGET;
    sn_ensemble_config c = cfg;
    c.mad.threshold = 0.0;
    ck_assert_ptr_nonnull(strstr(sn_ensemble_config_validate(&c, &which), "threshold"));
    ck_assert_int_eq(which, SN_DETECT_MAD);
    c.mad_enabled = false; /* disabled configs are not checked */
    ck_assert_ptr_null(sn_ensemble_config_validate(&c, &which));
    c = cfg;
    c.cusum.h = -1.0;
    ck_assert_ptr_nonnull(sn_ensemble_config_validate(&c, &which));
    ck_assert_int_eq(which, SN_DETECT_CUSUM);
    c = cfg;
    c.threshold_enabled = true;
    c.threshold.upper_warn = INFINITY;
    ck_assert_ptr_nonnull(sn_ensemble_config_validate(&c, &which));
    ck_assert_int_eq(which, SN_DETECT_THRESHOLD);
    c = cfg;
    c.min_agree = 0;
    ck_assert_ptr_nonnull(strstr(sn_ensemble_config_validate(&c, &which), "min_agree"));
    ck_assert_int_eq(which, SN_DETECT_KIND_COUNT);
    c = cfg;
    c.zscore_enabled = c.iqr_enabled = c.mad_enabled = c.cusum_enabled = false;
    ck_assert_ptr_nonnull(strstr(sn_ensemble_config_validate(&c, NULL), "enabled"));
    sn_summary b = normal_baseline();
    sn_ensemble_result r;
    ck_assert(!sn_ensemble_evaluate(&st, &c, &b, 500.0, &r));
    ck_assert(!r.best.ready);
    ck_assert_uint_eq(r.ready, 0);
}
END_TEST

START_TEST(quiet_value)
{
    sn_summary b = normal_baseline();
    sn_ensemble_result r;
    ck_assert(!sn_ensemble_evaluate(&st, &cfg, &b, 105.0, &r));
    ck_assert(r.best.ready);
    ck_assert(!r.best.anomaly);
    ck_assert_uint_eq(r.ready, 4);
    ck_assert_uint_eq(r.fired, 0);
    ck_assert_uint_eq(r.agreed, 0);
    ck_assert_double_eq(r.best.confidence, 0.0);
    ck_assert(!r.each[SN_DETECT_THRESHOLD].ready); /* disabled */
    ck_assert(!r.each[SN_DETECT_BUDGET].ready);
    /* The most suspicious verdict is still reported, with its score. */
    for (int k = 0; k < SN_DETECT_KIND_COUNT; k++)
        ck_assert(r.best.score >= r.each[k].score);
}
END_TEST

START_TEST(agreement_raises_confidence)
{
    sn_summary b = normal_baseline();
    sn_ensemble_result r;
    /* 190 = 9 sigma: Z-score, IQR, MAD all critical, CUSUM jumps to 8.5 (high). */
    ck_assert(sn_ensemble_evaluate(&st, &cfg, &b, 190.0, &r));
    ck_assert_uint_eq(r.ready, 4);
    ck_assert_uint_eq(r.fired, 4);
    ck_assert_uint_eq(r.agreed, 4);
    ck_assert_int_eq(r.best.severity, SN_SEV_CRITICAL);
    ck_assert_int_eq(r.best.direction, 1);
    /* Among the critical ones the highest score wins: that is the IQR (d = 5.67 fences vs
     * z/3 = 3 and M/3.5 = 2.57). */
    ck_assert_int_eq(r.best.method, SN_DETECT_IQR);
    double c = r.each[SN_DETECT_IQR].confidence;
    ck_assert_double_eq_tol(r.best.confidence, 0.99 - (0.99 - c) * 0.125, 1e-12);
    ck_assert(r.best.confidence > c);
    ck_assert(r.best.confidence <= 0.99);

    /* Just past the Z-score threshold only: one detector, its own confidence. The MAD
     * (threshold 3.5) and IQR (fence at 2.7 sigma -- so it fires too) differ: use a value
     * between the fence and 3 sigma to get IQR alone. */
    sn_ensemble_init(&st);
    ck_assert(sn_ensemble_evaluate(&st, &cfg, &b, 128.0, &r)); /* 2.8 sigma */
    ck_assert_uint_eq(r.fired, 1);
    ck_assert_uint_eq(r.agreed, 1);
    ck_assert_int_eq(r.best.method, SN_DETECT_IQR);
    ck_assert_double_eq(r.best.confidence, r.each[SN_DETECT_IQR].confidence);
    /* 3.2 sigma: IQR and Z-score agree, MAD does not (3.2 < 3.5). */
    sn_ensemble_init(&st);
    ck_assert(sn_ensemble_evaluate(&st, &cfg, &b, 132.0, &r));
    ck_assert_uint_eq(r.agreed, 2);
    ck_assert(!r.each[SN_DETECT_MAD].anomaly);
    double best_own = r.each[r.best.method].confidence;
    ck_assert_double_eq_tol(r.best.confidence, 0.99 - (0.99 - best_own) * 0.5, 1e-12);
}
END_TEST

START_TEST(min_agree)
{
    sn_summary b = normal_baseline();
    sn_ensemble_result r;
    cfg.min_agree = 2;
    ck_assert(!sn_ensemble_evaluate(&st, &cfg, &b, 128.0, &r)); /* IQR alone */
    ck_assert(r.best.ready);
    ck_assert(!r.best.anomaly);
    ck_assert_int_eq(r.best.severity, SN_SEV_NONE);
    ck_assert_uint_eq(r.fired, 1);
    ck_assert(r.best.score > 0.5); /* still reported as the most suspicious */
    sn_ensemble_init(&st);
    ck_assert(sn_ensemble_evaluate(&st, &cfg, &b, 132.0, &r));
    ck_assert_uint_eq(r.agreed, 2);
}
END_TEST

START_TEST(strongest_by_severity_then_direction_count)
{
    sn_summary b = normal_baseline();
    sn_ensemble_result r;
    /* A static threshold with a critical level at 120 outranks the statistical detectors'
     * medium verdicts at 132 (3.2 sigma). */
    cfg.threshold_enabled = true;
    cfg.threshold.upper_critical = 120.0;
    ck_assert(sn_ensemble_evaluate(&st, &cfg, &b, 132.0, &r));
    ck_assert_int_eq(r.best.method, SN_DETECT_THRESHOLD);
    ck_assert_int_eq(r.best.severity, SN_SEV_CRITICAL);
    ck_assert_uint_eq(r.agreed, 3); /* threshold, IQR, Z-score */
    ck_assert_double_eq(r.best.confidence, 0.99);
    /* Opposite sides do not agree: a lower static level fires for a value the CUSUM (fed
     * a long upward run first) reports on the upper side. */
    sn_ensemble_config_defaults(&cfg);
    cfg.zscore_enabled = cfg.iqr_enabled = cfg.mad_enabled = false;
    cfg.threshold_enabled = true;
    cfg.threshold.lower_warn = 200.0; /* everything below 200 is "too low" */
    sn_ensemble_init(&st);
    for (int i = 0; i < 3; i++)
        sn_ensemble_evaluate(&st, &cfg, &b, 125.0, &r); /* CUSUM S+ = 2, 4, 6 -> fires */
    ck_assert(r.each[SN_DETECT_CUSUM].anomaly);
    ck_assert_int_eq(r.each[SN_DETECT_CUSUM].direction, 1);
    ck_assert(r.each[SN_DETECT_THRESHOLD].anomaly);
    ck_assert_int_eq(r.each[SN_DETECT_THRESHOLD].direction, -1);
    ck_assert_uint_eq(r.fired, 2);
    ck_assert_uint_eq(r.agreed, 1);
}
END_TEST

START_TEST(cold_start_and_non_finite)
{
    sn_summary b = normal_baseline();
    b.n = 5;
    sn_ensemble_result r;
    ck_assert(!sn_ensemble_evaluate(&st, &cfg, &b, 1e6, &r));
    ck_assert(!r.best.ready && !r.best.anomaly);
    ck_assert_uint_eq(r.ready, 0);
    ck_assert_double_eq(st.cusum.s_hi, 0.0);
    /* A static threshold has no cold start: it still answers. */
    cfg.threshold_enabled = true;
    cfg.threshold.upper_warn = 1000.0;
    ck_assert(sn_ensemble_evaluate(&st, &cfg, &b, 1e6, &r));
    ck_assert_uint_eq(r.ready, 1);
    ck_assert_int_eq(r.best.method, SN_DETECT_THRESHOLD);
    b = normal_baseline();
    double bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        ck_assert(!sn_ensemble_evaluate(&st, &cfg, &b, bad[i], &r));
        ck_assert(!r.best.ready);
        ck_assert_uint_eq(r.ready, 0);
    }
    sn_summary nb = b;
    nb.mean = nb.stddev = nb.median = nb.q1 = nb.q3 = nb.mad = NAN;
    cfg.threshold_enabled = false;
    ck_assert(!sn_ensemble_evaluate(&st, &cfg, &nb, 120.0, &r));
    ck_assert(!r.best.ready);
}
END_TEST

START_TEST(huge_values)
{
    sn_summary b = normal_baseline();
    sn_ensemble_result r;
    double xs[] = {DBL_MAX, -DBL_MAX, 1e300};
    for (int i = 0; i < 3; i++) {
        ck_assert(sn_ensemble_evaluate(&st, &cfg, &b, xs[i], &r));
        ck_assert_int_eq(r.best.severity, SN_SEV_CRITICAL);
        ck_assert(r.best.score >= 0.0 && r.best.score <= 1.0);
        ck_assert(r.best.confidence >= 0.5 && r.best.confidence <= 0.99);
        ck_assert(isfinite(r.best.deviation));
    }
}
END_TEST

START_TEST(labelled_series)
{
    /* Normal latency with three injected spikes and one slow ramp: the ensemble flags the
     * spikes (several detectors agreeing) and the ramp (CUSUM), and little else. */
    static double base[1000];
    helper_rng g = {UINT64_C(0x1234abcd)};
    for (int i = 0; i < 1000; i++)
        base[i] = 2000.0 + 200.0 * rng_normal(&g);
    sn_summary b;
    summarise(base, 1000, &b);
    sn_ensemble_result r;
    int spikes_caught = 0, ramp_caught = 0, other = 0;
    for (int t = 0; t < 400; t++) {
        double x = 2000.0 + 200.0 * rng_normal(&g);
        bool spike = (t == 100 || t == 200 || t == 300);
        bool ramp = (t >= 350);
        if (spike)
            x = 2000.0 + 10.0 * 200.0;
        if (ramp)
            x = 2000.0 + 200.0 * 0.1 * (t - 349) + 20.0 * rng_normal(&g);
        bool fired = sn_ensemble_evaluate(&st, &cfg, &b, x, &r);
        if (spike) {
            ck_assert(fired);
            ck_assert_int_eq(r.best.severity, SN_SEV_CRITICAL);
            ck_assert_uint_ge(r.agreed, 3);
            ck_assert(r.best.confidence > 0.9);
            spikes_caught++;
        } else if (ramp) {
            if (fired && r.each[SN_DETECT_CUSUM].anomaly)
                ramp_caught++;
        } else if (fired) {
            other++;
        }
    }
    ck_assert_int_eq(spikes_caught, 3);
    ck_assert_int_ge(ramp_caught, 1);
    ck_assert_int_le(other, 25); /* IQR's 0.7 %, Z 0.27 %, a few CUSUM runs */
}
END_TEST

/* Doubles equal, NaN equal to NaN (unset baselines and thresholds are NaN). */
static bool same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

static bool same_verdict(const sn_verdict *a, const sn_verdict *b)
{
    return a->method == b->method && a->ready == b->ready && a->anomaly == b->anomaly &&
           a->severity == b->severity && same_double(a->score, b->score) &&
           same_double(a->confidence, b->confidence) && same_double(a->value, b->value) &&
           same_double(a->baseline, b->baseline) && same_double(a->threshold, b->threshold) &&
           same_double(a->deviation, b->deviation) && a->direction == b->direction;
}

/* Five detector mixes from the defaults: all, with static levels, MAD and CUSUM only, min_agree
 * 3 with an upper-only Z-score, the static threshold alone. */
static void detector_mixes(sn_ensemble_config cs[5])
{
    for (int i = 0; i < 5; i++)
        cs[i] = cfg;
    cs[1].threshold_enabled = true;
    cs[1].threshold.upper_warn = 150.0;
    cs[1].threshold.upper_critical = 200.0;
    cs[1].threshold.lower_warn = 20.0;
    cs[2].zscore_enabled = false;
    cs[2].iqr_enabled = false;
    cs[3].min_agree = 3;
    cs[3].zscore.direction = SN_DIR_UPPER;
    cs[4].zscore_enabled = cs[4].iqr_enabled = cs[4].mad_enabled = cs[4].cusum_enabled = false;
    cs[4].threshold_enabled = true;
    cs[4].threshold.lower_critical = 50.0;
}

START_TEST(valid_variant_matches_checked)
{
    /* sn_ensemble_evaluate_valid gives exactly what the checked call gives, for every detector
     * mix, with the CUSUM sums stepping alike. */
    sn_ensemble_config cs[5];
    detector_mixes(cs);
    sn_summary good = normal_baseline(), cold = normal_baseline();
    cold.n = 3;
    const sn_summary *bs[] = {&good, &cold};
    double xs[] = {100.0,    131.0,   145.0,    175.0, 260.0, 60.0,  10.0,  99.0, NAN,
                   INFINITY, DBL_MAX, -DBL_MAX, 128.0, 129.0, 130.0, 131.0, 132.0};
    int fired = 0;
    for (int c = 0; c < 5; c++) {
        ck_assert_ptr_null(sn_ensemble_config_validate(&cs[c], NULL));
        sn_ensemble a, v;
        sn_ensemble_init(&a);
        sn_ensemble_init(&v);
        for (int bi = 0; bi < 2; bi++) {
            for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
                sn_ensemble_result ra, rv;
                memset(&rv, 0xa5, sizeof rv); /* every field must be written */
                bool fa = sn_ensemble_evaluate(&a, &cs[c], bs[bi], xs[i], &ra);
                bool fv = sn_ensemble_evaluate_valid(&v, &cs[c], bs[bi], xs[i], &rv);
                ck_assert(fa == fv);
                fired += fa;
                ck_assert_uint_eq(ra.ready, rv.ready);
                ck_assert_uint_eq(ra.fired, rv.fired);
                ck_assert_uint_eq(ra.agreed, rv.agreed);
                ck_assert(same_verdict(&ra.best, &rv.best));
                for (int k = 0; k < SN_DETECT_KIND_COUNT; k++)
                    ck_assert(same_verdict(&ra.each[k], &rv.each[k]));
                ck_assert(memcmp(&a, &v, sizeof a) == 0);
            }
        }
    }
    ck_assert_int_gt(fired, 10); /* the anomalous paths were taken too */

    /* The checked call still refuses an invalid config: nothing ready, CUSUM untouched. */
    sn_ensemble_config bad = cfg;
    bad.zscore.threshold = -1.0;
    sn_ensemble s0;
    sn_ensemble_init(&s0);
    sn_ensemble_result r;
    ck_assert(!sn_ensemble_evaluate(&s0, &bad, &good, 1e6, &r));
    ck_assert(!r.best.ready);
    ck_assert_uint_eq(r.ready, 0);
    for (int k = 0; k < SN_DETECT_KIND_COUNT; k++)
        ck_assert(!r.each[k].ready && r.each[k].method == (sn_detector_kind)k);
    ck_assert_uint_eq(s0.cusum.steps, 0);
}
END_TEST

/* The quiet tests' configs: detector mixes, one-sided and narrow detectors, CUSUM off. */
static void quiet_configs(sn_ensemble_config cs[8])
{
    detector_mixes(cs);
    cs[5] = cfg;
    /* one-sided Z-score and MAD both ways: the quiet check skips the unreported side */
    cs[6] = cfg;
    cs[6].zscore.direction = SN_DIR_LOWER;
    cs[6].mad.direction = SN_DIR_LOWER;
    cs[7] = cfg;
    cs[7].zscore.direction = SN_DIR_UPPER;
    cs[7].mad.direction = SN_DIR_LOWER;
    cs[7].zscore.threshold = 0.5;
    cs[7].mad.threshold = 0.5;
    for (int i = 0; i < 8; i++)
        cs[i].cusum_enabled = false; /* CUSUM keeps state: not answered (checked below) */
    cs[3].iqr.direction = SN_DIR_LOWER;
    cs[3].mad.direction = SN_DIR_UPPER;
    cs[5].zscore.threshold = 1.0;
    cs[5].iqr.k = 0.25;
    cs[5].mad.threshold = 1.0;
}

/* The quiet tests' baselines: normal, cold, flat and without a MAD. */
static void quiet_baselines(sn_summary bs[4])
{
    bs[0] = normal_baseline();
    bs[1] = normal_baseline();
    bs[1].n = 3;
    bs[2] = mk_summary(1000, 100.0, 0.0, 100.0, 100.0, 100.0, 0.0);
    bs[3] = mk_summary(1000, 100.0, 10.0, 100.0, 93.255, 106.745, 0.0);
}

START_TEST(quiet_matches_full_evaluation)
{
    /* sn_ensemble_quiet_valid says "quiet" exactly when the full call finds no detector
     * anomalous, and then names the detectors the full call has ready: over detector mixes,
     * directions, cold/flat/spread-less baselines and a dense sweep of values through every
     * threshold (both sides, with the boundaries themselves). */
    sn_ensemble_config cs[8];
    quiet_configs(cs);
    sn_summary sums[4];
    quiet_baselines(sums);
    const sn_summary *bs[] = {&sums[0], &sums[1], &sums[2], &sums[3]};
    double edges[] = {NAN,   INFINITY, -INFINITY, DBL_MAX, -DBL_MAX, 130.0, 70.0,
                      126.5, 73.5,     135.0,     65.0,    99.0,     101.0, 100.0};
    unsigned quiet = 0, loud = 0;
    for (int c = 0; c < 8; c++) {
        ck_assert_ptr_null(sn_ensemble_config_validate(&cs[c], NULL));
        for (int bi = 0; bi < 4; bi++) {
            for (int i = 0; i < 1400 + (int)(sizeof edges / sizeof edges[0]); i++) {
                double x = i < 1400 ? (double)i * 0.25 - 50.0 : edges[i - 1400];
                sn_ensemble es;
                sn_ensemble_init(&es);
                sn_ensemble_result r;
                sn_ensemble_evaluate_valid(&es, &cs[c], bs[bi], x, &r);
                unsigned want = 0;
                bool any = false;
                for (int k = 0; k < SN_DETECT_KIND_COUNT; k++) {
                    want |= r.each[k].ready ? 1u << k : 0u;
                    any = any || r.each[k].anomaly;
                }
                unsigned got = 0xdead;
                bool q = sn_ensemble_quiet_valid(&cs[c], bs[bi], x, &got);
                ck_assert_msg(q == !any, "config %d baseline %d x %g", c, bi, x);
                if (q)
                    ck_assert_uint_eq(got, want);
                else
                    ck_assert_uint_eq(got, 0xdead);
                quiet += q;
                loud += !q;
            }
        }
    }
    ck_assert_uint_gt(quiet, 1000); /* both answers were exercised */
    ck_assert_uint_gt(loud, 1000);

    /* CUSUM keeps state: never answered here. */
    unsigned got = 0;
    sn_summary b = normal_baseline();
    ck_assert(!sn_ensemble_quiet_valid(&cfg, &b, 100.0, &got));
}
END_TEST

START_TEST(quiet_values_form_one_range)
{
    /* The aggregator answers values between two quiet ones without asking (engine.c,
     * quiet_check): that holds only while every summary's quiet values form one range, with
     * the same ready detectors throughout. Values in increasing order, each grid point with the
     * next double above it: once quiet and then loud, no value is quiet again. */
    sn_ensemble_config cs[8];
    quiet_configs(cs);
    sn_summary bs[4];
    quiet_baselines(bs);
    double xs[2 * 1400 + 6];
    size_t nx = 0;
    xs[nx++] = -DBL_MAX;
    xs[nx++] = -1e300;
    xs[nx++] = -1e6;
    for (int i = 0; i < 1400; i++) {
        xs[nx] = (double)i * 0.25 - 50.0;
        xs[nx + 1] = nextafter(xs[nx], INFINITY);
        nx += 2;
    }
    xs[nx++] = 1e6;
    xs[nx++] = 1e300;
    xs[nx++] = DBL_MAX;
    unsigned bounded = 0;
    for (int c = 0; c < 8; c++) {
        for (int bi = 0; bi < 4; bi++) {
            int phase = 0; /* 0: before the quiet range, 1: in it, 2: after it */
            unsigned ready = 0, got;
            bool loud_before = false;
            for (size_t i = 0; i < nx; i++) {
                bool q = sn_ensemble_quiet_valid(&cs[c], &bs[bi], xs[i], &got);
                if (q && phase == 0) {
                    phase = 1;
                    ready = got;
                } else if (q) {
                    ck_assert_msg(phase == 1, "config %d baseline %d: %.17g quiet again", c, bi,
                                  xs[i]);
                    ck_assert_uint_eq(got, ready);
                } else if (phase == 1) {
                    phase = 2;
                    bounded += loud_before;
                }
                loud_before = loud_before || (!q && phase == 0);
            }
        }
    }
    ck_assert_uint_gt(bounded, 10); /* ranges with a loud side below and above were seen */
}
END_TEST

static Suite *ensemble_suite(void)
{
    Suite *s = suite_create("detect_ensemble");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, validate_says_which_detector);
    tcase_add_test(tc, quiet_value);
    tcase_add_test(tc, agreement_raises_confidence);
    tcase_add_test(tc, min_agree);
    tcase_add_test(tc, strongest_by_severity_then_direction_count);
    tcase_add_test(tc, cold_start_and_non_finite);
    tcase_add_test(tc, huge_values);
    tcase_add_test(tc, labelled_series);
    tcase_add_test(tc, valid_variant_matches_checked);
    tcase_add_test(tc, quiet_matches_full_evaluation);
    tcase_add_test(tc, quiet_values_form_one_range);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ensemble_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
