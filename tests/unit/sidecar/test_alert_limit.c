/* Unit tests for sidecar/alert_limit.c: one alert per (service, model, metric, anomaly type)
 * per interval, the held-back count handed to the next one, a bounded table. */
#include "alert_limit.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static sn_local_alert alert(const char *service, const char *model, sn_metric m, sn_anomaly_type t)
{
    sn_local_alert a;
    memset(&a, 0, sizeof a);
    snprintf(a.service, sizeof a.service, "%s", service);
    snprintf(a.model, sizeof a.model, "%s", model);
    a.metric = m;
    a.anomaly_type = t;
    a.severity = SN_SEV_HIGH;
    return a;
}

START_TEST(one_alert_per_key_per_interval_with_the_held_back_count)
{
    sn_alert_limit *l;
    ck_assert_int_eq(sn_alert_limit_create(64, 10000, 42, &l), 0);
    sn_local_alert a = alert("chat", "gpt-4o", SN_METRIC_LATENCY_MS, SN_ANOMALY_LATENCY_SPIKE);
    uint64_t held = 99;
    ck_assert(sn_alert_limit_admit(l, &a, 1000, &held));
    ck_assert_uint_eq(held, 0);
    for (int i = 0; i < 5; i++)
        ck_assert(!sn_alert_limit_admit(l, &a, 1000 + (uint64_t)i * 1000, &held));
    ck_assert(!sn_alert_limit_admit(l, &a, 10999, &held));
    ck_assert_uint_eq(sn_alert_limit_suppressed_total(l), 6);
    /* The interval is over: the next one passes and carries the six held back. */
    ck_assert(sn_alert_limit_admit(l, &a, 11000, &held));
    ck_assert_uint_eq(held, 6);
    ck_assert(!sn_alert_limit_admit(l, &a, 11001, &held));
    ck_assert(sn_alert_limit_admit(l, &a, 21000, &held));
    ck_assert_uint_eq(held, 1);
    /* A clock that went back never holds an alert back for long: it passes. */
    ck_assert(sn_alert_limit_admit(l, &a, 5, &held));
    sn_alert_limit_destroy(l);
}
END_TEST

START_TEST(every_part_of_the_key_counts)
{
    sn_alert_limit *l;
    ck_assert_int_eq(sn_alert_limit_create(64, 60000, 7, &l), 0);
    sn_local_alert base = alert("chat", "gpt-4o", SN_METRIC_LATENCY_MS, SN_ANOMALY_LATENCY_SPIKE);
    sn_local_alert other[] = {
        alert("chat2", "gpt-4o", SN_METRIC_LATENCY_MS, SN_ANOMALY_LATENCY_SPIKE),
        alert("chat", "gpt-4o-mini", SN_METRIC_LATENCY_MS, SN_ANOMALY_LATENCY_SPIKE),
        alert("chat", "gpt-4o", SN_METRIC_TTFT_MS, SN_ANOMALY_LATENCY_SPIKE),
        alert("chat", "gpt-4o", SN_METRIC_LATENCY_MS, SN_ANOMALY_LATENCY_DRIFT),
        alert("chatg", "pt-4o", SN_METRIC_LATENCY_MS, SN_ANOMALY_LATENCY_SPIKE), /* same bytes */
    };
    ck_assert(sn_alert_limit_admit(l, &base, 0, NULL));
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        ck_assert_msg(sn_alert_limit_admit(l, &other[i], 1, NULL), "key %zu", i);
        ck_assert_msg(!sn_alert_limit_admit(l, &other[i], 2, NULL), "key %zu again", i);
    }
    /* Severity, value, trace id are not part of the key. */
    sn_local_alert same = base;
    same.severity = SN_SEV_CRITICAL;
    same.value = 1e9;
    same.trace_id[0] = 1;
    ck_assert(!sn_alert_limit_admit(l, &same, 3, NULL));
    sn_alert_limit_destroy(l);
}
END_TEST

START_TEST(interval_zero_lets_everything_through)
{
    sn_alert_limit *l;
    ck_assert_int_eq(sn_alert_limit_create(16, 0, 1, &l), 0);
    sn_local_alert a = alert("s", "m", SN_METRIC_COST_USD, SN_ANOMALY_COST_SPIKE);
    for (int i = 0; i < 100; i++)
        ck_assert(sn_alert_limit_admit(l, &a, 5, NULL));
    ck_assert_uint_eq(sn_alert_limit_suppressed_total(l), 0);
    sn_alert_limit_destroy(l);
}
END_TEST

START_TEST(a_full_table_forgets_the_oldest_key_and_never_hides_a_new_one)
{
    sn_alert_limit *l;
    ck_assert_int_eq(sn_alert_limit_create(16, 60000, 3, &l), 0);
    /* Far more keys than slots: every new key passes. */
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "svc-%d", i);
        sn_local_alert a = alert(name, "m", SN_METRIC_LATENCY_MS, SN_ANOMALY_LATENCY_SPIKE);
        ck_assert_msg(sn_alert_limit_admit(l, &a, (uint64_t)i, NULL), "key %d", i);
    }
    /* The most recent key is remembered (held back); the first was forgotten (passes). */
    sn_local_alert last = alert("svc-999", "m", SN_METRIC_LATENCY_MS, SN_ANOMALY_LATENCY_SPIKE);
    ck_assert(!sn_alert_limit_admit(l, &last, 1000, NULL));
    sn_local_alert first = alert("svc-0", "m", SN_METRIC_LATENCY_MS, SN_ANOMALY_LATENCY_SPIKE);
    ck_assert(sn_alert_limit_admit(l, &first, 1001, NULL));
    sn_alert_limit_destroy(l);
}
END_TEST

START_TEST(create_checks_its_arguments)
{
    sn_alert_limit *l = NULL;
    ck_assert_int_eq(sn_alert_limit_create(0, 1000, 0, &l), -EINVAL);
    ck_assert_int_eq(sn_alert_limit_create(SN_ALERT_LIMIT_SLOTS_MAX + 1, 1000, 0, &l), -EINVAL);
    ck_assert_ptr_null(l);
    ck_assert_int_eq(sn_alert_limit_create(SN_ALERT_LIMIT_SLOTS_MAX, 1000, 0, &l), 0);
    sn_alert_limit_destroy(l);
    sn_alert_limit_destroy(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("alert_limit");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, one_alert_per_key_per_interval_with_the_held_back_count);
    tcase_add_test(tc, every_part_of_the_key_counts);
    tcase_add_test(tc, interval_zero_lets_everything_through);
    tcase_add_test(tc, a_full_table_forgets_the_oldest_key_and_never_hides_a_new_one);
    tcase_add_test(tc, create_checks_its_arguments);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
