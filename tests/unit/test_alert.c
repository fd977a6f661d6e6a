/* Unit tests for shared/alert.c. */
#include "alert.h"

#include <check.h>
#include <math.h>
#include <string.h>

START_TEST(type_names_round_trip)
{
    for (int i = 0; i < SN_ANOMALY_TYPE_COUNT; i++) {
        sn_anomaly_type t;
        ck_assert_int_eq(sn_anomaly_type_from_name(sn_anomaly_type_name((sn_anomaly_type)i), &t),
                         0);
        ck_assert_int_eq(t, i);
    }
    sn_anomaly_type t = SN_ANOMALY_BUDGET;
    ck_assert_int_eq(sn_anomaly_type_from_name("nope", &t), -1);
    ck_assert_int_eq(t, SN_ANOMALY_BUDGET);
    ck_assert_str_eq(sn_anomaly_type_name(SN_ANOMALY_TYPE_COUNT), "unknown");
    /* The drift types of the aggregator's engine. */
    ck_assert_str_eq(sn_anomaly_type_name(SN_ANOMALY_TOKEN_DRIFT), "token_distribution_drift");
    ck_assert_str_eq(sn_anomaly_type_name(SN_ANOMALY_FINISH_REASON_DRIFT), "finish_reason_drift");
    ck_assert_int_eq(sn_anomaly_type_from_name("finish_reason_drift", &t), 0);
    ck_assert_int_eq(t, SN_ANOMALY_FINISH_REASON_DRIFT);
    ck_assert_int_eq(sn_anomaly_type_from_name("token_distribution_drift", &t), 0);
    ck_assert_int_eq(t, SN_ANOMALY_TOKEN_DRIFT);
}
END_TEST

START_TEST(type_follows_metric_side_and_detector)
{
    ck_assert_int_eq(sn_anomaly_type_for(SN_METRIC_LATENCY_MS, SN_DETECT_ZSCORE, 1),
                     SN_ANOMALY_LATENCY_SPIKE);
    ck_assert_int_eq(sn_anomaly_type_for(SN_METRIC_TTFT_MS, SN_DETECT_MAD, -1),
                     SN_ANOMALY_LATENCY_DROP);
    ck_assert_int_eq(sn_anomaly_type_for(SN_METRIC_LATENCY_MS, SN_DETECT_CUSUM, 1),
                     SN_ANOMALY_LATENCY_DRIFT);
    ck_assert_int_eq(sn_anomaly_type_for(SN_METRIC_OUTPUT_TOKENS, SN_DETECT_IQR, 1),
                     SN_ANOMALY_TOKEN_SPIKE);
    ck_assert_int_eq(sn_anomaly_type_for(SN_METRIC_COST_USD, SN_DETECT_ZSCORE, 1),
                     SN_ANOMALY_COST_SPIKE);
    ck_assert_int_eq(sn_anomaly_type_for(SN_METRIC_COST_USD, SN_DETECT_CUSUM, 1),
                     SN_ANOMALY_COST_DRIFT);
    ck_assert_int_eq(sn_anomaly_type_for(SN_METRIC_COST_USD, SN_DETECT_BUDGET, 1),
                     SN_ANOMALY_BUDGET);
    ck_assert_int_eq(sn_anomaly_type_for(SN_METRIC_ERROR_RATE, SN_DETECT_THRESHOLD, 1),
                     SN_ANOMALY_ERROR_RATE);
    ck_assert_int_eq(sn_anomaly_type_for(SN_METRIC_TOKENS_PER_SECOND, SN_DETECT_ZSCORE, -1),
                     SN_ANOMALY_THROUGHPUT_DROP);
}
END_TEST

START_TEST(fill_copies_the_event_and_verdict)
{
    sn_event ev;
    sn_event_init(&ev);
    memcpy(ev.service, "chatbot-api", 12);
    memcpy(ev.model, "gpt-4o", 7);
    memcpy(ev.region, "us-east-1", 10);
    ev.end_unix_nano = 1234;
    for (int i = 0; i < 16; i++)
        ev.trace_id[i] = (uint8_t)i;
    sn_verdict v;
    sn_verdict_init(&v, SN_DETECT_ZSCORE, 12000.0);
    v.ready = v.anomaly = true;
    v.severity = SN_SEV_HIGH;
    v.baseline = 2000.0;
    v.threshold = 6000.0;
    v.deviation = 5.2;
    v.confidence = 0.95;
    v.direction = 1;
    sn_local_alert a;
    sn_local_alert_fill(&a, &ev, SN_METRIC_LATENCY_MS, &v, "0f8fad5b-d9cb-469f-a165-70867728950e");
    ck_assert_str_eq(a.alert_id, "0f8fad5b-d9cb-469f-a165-70867728950e");
    ck_assert_str_eq(a.service, "chatbot-api");
    ck_assert_str_eq(a.model, "gpt-4o");
    ck_assert_str_eq(a.region, "us-east-1");
    ck_assert_int_eq(a.time_unix_nano, 1234);
    ck_assert_int_eq(a.trace_id[15], 15);
    ck_assert_int_eq(a.anomaly_type, SN_ANOMALY_LATENCY_SPIKE);
    ck_assert_int_eq(a.detector, SN_DETECT_ZSCORE);
    ck_assert_int_eq(a.severity, SN_SEV_HIGH);
    ck_assert_double_eq(a.value, 12000.0);
    ck_assert_double_eq(a.baseline, 2000.0);
    ck_assert_double_eq(a.deviation, 5.2);
    sn_local_alert_fill(&a, &ev, SN_METRIC_LATENCY_MS, &v, NULL);
    ck_assert_str_eq(a.alert_id, "");
}
END_TEST

START_TEST(uuid_is_version_4)
{
    uint8_t r[16];
    memset(r, 0xFF, sizeof r);
    char id[SN_ALERT_ID_LEN + 1];
    sn_uuid_format(r, id);
    ck_assert_uint_eq(strlen(id), SN_ALERT_ID_LEN);
    ck_assert_str_eq(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    memset(r, 0, sizeof r);
    sn_uuid_format(r, id);
    ck_assert_str_eq(id, "00000000-0000-4000-8000-000000000000");
}
END_TEST

static Suite *alert_suite(void)
{
    Suite *s = suite_create("alert");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, type_names_round_trip);
    tcase_add_test(tc, type_follows_metric_side_and_detector);
    tcase_add_test(tc, fill_copies_the_event_and_verdict);
    tcase_add_test(tc, uuid_is_version_4);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(alert_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
