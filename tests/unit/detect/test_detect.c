/* Unit tests for shared/detect/detect.c: names, verdict reset, score and confidence. */
#include "detect/detect.h"

#include <check.h>
#include <math.h>

START_TEST(severity_names_round_trip)
{
    const char *names[] = {"none", "low", "medium", "high", "critical"};
    for (int i = SN_SEV_NONE; i <= SN_SEV_CRITICAL; i++) {
        sn_severity s = SN_SEV_NONE;
        ck_assert_str_eq(sn_severity_name((sn_severity)i), names[i]);
        ck_assert_int_eq(sn_severity_from_name(names[i], &s), 0);
        ck_assert_int_eq(s, i);
    }
    sn_severity s = SN_SEV_HIGH;
    ck_assert_int_eq(sn_severity_from_name("severe", &s), -1);
    ck_assert_int_eq(sn_severity_from_name(NULL, &s), -1);
    ck_assert_int_eq(s, SN_SEV_HIGH);
    ck_assert_str_eq(sn_severity_name((sn_severity)99), "unknown");
    /* Severities are ordered. */
    ck_assert(SN_SEV_NONE < SN_SEV_LOW && SN_SEV_LOW < SN_SEV_MEDIUM);
    ck_assert(SN_SEV_MEDIUM < SN_SEV_HIGH && SN_SEV_HIGH < SN_SEV_CRITICAL);
}
END_TEST

START_TEST(detector_names_match_the_alert_json)
{
    const char *names[] = {"z_score", "iqr", "mad", "cusum", "threshold", "budget"};
    for (int i = 0; i < SN_DETECT_KIND_COUNT; i++) {
        sn_detector_kind k = SN_DETECT_KIND_COUNT;
        ck_assert_str_eq(sn_detector_name((sn_detector_kind)i), names[i]);
        ck_assert_int_eq(sn_detector_from_name(names[i], &k), 0);
        ck_assert_int_eq(k, i);
    }
    sn_detector_kind k = SN_DETECT_MAD;
    ck_assert_int_eq(sn_detector_from_name("zscore", &k), -1);
    ck_assert_int_eq(k, SN_DETECT_MAD);
    ck_assert_str_eq(sn_detector_name(SN_DETECT_KIND_COUNT), "unknown");
}
END_TEST

START_TEST(direction_names_round_trip)
{
    const char *names[] = {"both", "upper", "lower"};
    for (int i = 0; i < 3; i++) {
        sn_direction d = (sn_direction)7;
        ck_assert_str_eq(sn_direction_name((sn_direction)i), names[i]);
        ck_assert_int_eq(sn_direction_from_name(names[i], &d), 0);
        ck_assert_int_eq(d, i);
    }
    sn_direction d = SN_DIR_UPPER;
    ck_assert_int_eq(sn_direction_from_name("up", &d), -1);
    ck_assert_int_eq(d, SN_DIR_UPPER);
    ck_assert_str_eq(sn_direction_name((sn_direction)3), "unknown");
}
END_TEST

START_TEST(verdict_init_means_no_verdict)
{
    sn_verdict v;
    v.ready = true;
    v.anomaly = true;
    v.severity = SN_SEV_CRITICAL;
    v.score = 1.0;
    v.confidence = 0.9;
    v.direction = 1;
    sn_verdict_init(&v, SN_DETECT_CUSUM, 42.0);
    ck_assert_int_eq(v.method, SN_DETECT_CUSUM);
    ck_assert(!v.ready);
    ck_assert(!v.anomaly);
    ck_assert_int_eq(v.severity, SN_SEV_NONE);
    ck_assert_double_eq(v.score, 0.0);
    ck_assert_double_eq(v.confidence, 0.0);
    ck_assert_double_eq(v.value, 42.0);
    ck_assert(isnan(v.baseline) && isnan(v.threshold) && isnan(v.deviation));
    ck_assert_int_eq(v.direction, 0);
}
END_TEST

START_TEST(score_is_bounded_and_monotonic)
{
    ck_assert_double_eq(sn_detect_score(0.0), 0.0);
    ck_assert_double_eq(sn_detect_score(1.0), 0.5);
    ck_assert_double_eq(sn_detect_score(-3.0), 0.0);
    ck_assert_double_eq(sn_detect_score(NAN), 0.0);
    ck_assert_double_eq(sn_detect_score(INFINITY), 1.0);
    ck_assert_double_eq(sn_detect_score(1e300), 1.0);
    double prev = 0.0;
    for (double r = 0.01; r < 1e6; r *= 1.5) {
        double s = sn_detect_score(r);
        ck_assert(s > prev);
        ck_assert(s >= 0.0 && s <= 1.0);
        prev = s;
    }
}
END_TEST

START_TEST(confidence_range_and_formula)
{
    ck_assert_double_eq(sn_detect_confidence(1.0), 0.5);
    ck_assert_double_eq(sn_detect_confidence(0.2), 0.5);
    ck_assert_double_eq(sn_detect_confidence(NAN), 0.5);
    ck_assert_double_eq(sn_detect_confidence(INFINITY), 0.99);
    ck_assert_double_eq_tol(sn_detect_confidence(2.0), 0.5 + 0.49 * (1.0 - exp(-2.0)), 1e-12);
    double prev = 0.5;
    for (double r = 1.01; r < 20.0; r += 0.05) {
        double c = sn_detect_confidence(r);
        ck_assert(c >= 0.5 && c <= 0.99);
        ck_assert(c >= prev);
        prev = c;
    }
    ck_assert(sn_detect_confidence(1.5) > 0.5);
    ck_assert(sn_detect_confidence(5.0) > 0.98);
}
END_TEST

static Suite *detect_suite(void)
{
    Suite *s = suite_create("detect");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, severity_names_round_trip);
    tcase_add_test(tc, detector_names_match_the_alert_json);
    tcase_add_test(tc, direction_names_round_trip);
    tcase_add_test(tc, verdict_init_means_no_verdict);
    tcase_add_test(tc, score_is_bounded_and_monotonic);
    tcase_add_test(tc, confidence_range_and_formula);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(detect_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
