/* Unit tests for aggregator/recent.c: ring bounds and order, LRU eviction, the memory budget,
 * events, long names and refused input. */
#include "recent.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static sn_recent *make(size_t ppk, size_t keys, size_t bytes)
{
    sn_recent_config c = {.points_per_key = ppk, .max_keys = keys, .max_bytes = bytes};
    sn_recent *r = NULL;
    char err[128];
    ck_assert_int_eq(sn_recent_create(&c, &r, err, sizeof err), 0);
    ck_assert_ptr_nonnull(r);
    return r;
}

START_TEST(ring_keeps_the_newest_oldest_first)
{
    sn_recent *r = make(5, 4, 0);
    sn_recent_point p[10];
    ck_assert_int_eq(sn_recent_get(r, "svc", "m", SN_METRIC_LATENCY_MS, p, 10), -ENOENT);
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(sn_recent_add(r, "svc", "m", SN_METRIC_LATENCY_MS, i * 10, i), 0);
    ck_assert_int_eq(sn_recent_get(r, "svc", "m", SN_METRIC_LATENCY_MS, p, 10), 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(p[i].time_unix_nano, (i + 1) * 10);
        ck_assert_double_eq(p[i].value, i + 1);
    }
    /* 12 points into a ring of 5: the last five, in order, wrapping more than once. */
    for (int i = 4; i <= 12; i++)
        ck_assert_int_eq(sn_recent_add(r, "svc", "m", SN_METRIC_LATENCY_MS, i * 10, i), 0);
    ck_assert_int_eq(sn_recent_get(r, "svc", "m", SN_METRIC_LATENCY_MS, p, 10), 5);
    for (int i = 0; i < 5; i++)
        ck_assert_double_eq(p[i].value, 8 + i);
    /* A limit below what is held gives the newest ones, still oldest first. */
    ck_assert_int_eq(sn_recent_get(r, "svc", "m", SN_METRIC_LATENCY_MS, p, 2), 2);
    ck_assert_double_eq(p[0].value, 11);
    ck_assert_double_eq(p[1].value, 12);
    ck_assert_int_eq(sn_recent_get(r, "svc", "m", SN_METRIC_LATENCY_MS, p, 0), 0);
    /* Keys differ by every part. */
    ck_assert_int_eq(sn_recent_get(r, "svc", "m", SN_METRIC_TTFT_MS, p, 10), -ENOENT);
    ck_assert_int_eq(sn_recent_get(r, "svc", "m2", SN_METRIC_LATENCY_MS, p, 10), -ENOENT);
    ck_assert_int_eq(sn_recent_get(r, "svc2", "m", SN_METRIC_LATENCY_MS, p, 10), -ENOENT);
    sn_recent_stats st;
    sn_recent_stats_get(r, &st);
    ck_assert_uint_eq(st.keys, 1);
    ck_assert_uint_eq(st.points, 12);
    ck_assert_uint_eq(st.evicted, 0);
    sn_recent_destroy(r);
}
END_TEST

START_TEST(least_recently_written_key_is_evicted)
{
    sn_recent *r = make(3, 3, 0);
    sn_recent_point p[3];
    ck_assert_int_eq(sn_recent_add(r, "a", "m", SN_METRIC_LATENCY_MS, 1, 1), 0);
    ck_assert_int_eq(sn_recent_add(r, "b", "m", SN_METRIC_LATENCY_MS, 2, 2), 0);
    ck_assert_int_eq(sn_recent_add(r, "c", "m", SN_METRIC_LATENCY_MS, 3, 3), 0);
    /* Writing a makes b the least recently written; reading does not count. */
    ck_assert_int_eq(sn_recent_add(r, "a", "m", SN_METRIC_LATENCY_MS, 4, 4), 0);
    ck_assert_int_eq(sn_recent_get(r, "b", "m", SN_METRIC_LATENCY_MS, p, 3), 1);
    ck_assert_int_eq(sn_recent_add(r, "d", "m", SN_METRIC_LATENCY_MS, 5, 5), 0);
    ck_assert_int_eq(sn_recent_get(r, "b", "m", SN_METRIC_LATENCY_MS, p, 3), -ENOENT);
    ck_assert_int_eq(sn_recent_get(r, "a", "m", SN_METRIC_LATENCY_MS, p, 3), 2);
    ck_assert_int_eq(sn_recent_get(r, "c", "m", SN_METRIC_LATENCY_MS, p, 3), 1);
    /* The reused slot starts empty: d holds only its own point. */
    ck_assert_int_eq(sn_recent_get(r, "d", "m", SN_METRIC_LATENCY_MS, p, 3), 1);
    ck_assert_double_eq(p[0].value, 5);
    /* Next to go is c (a was written after it). */
    ck_assert_int_eq(sn_recent_add(r, "e", "m", SN_METRIC_LATENCY_MS, 6, 6), 0);
    ck_assert_int_eq(sn_recent_get(r, "c", "m", SN_METRIC_LATENCY_MS, p, 3), -ENOENT);
    ck_assert_int_eq(sn_recent_get(r, "a", "m", SN_METRIC_LATENCY_MS, p, 3), 2);
    sn_recent_stats st;
    sn_recent_stats_get(r, &st);
    ck_assert_uint_eq(st.keys, 3);
    ck_assert_uint_eq(st.evicted, 2);
    sn_recent_destroy(r);
}
END_TEST

START_TEST(many_keys_stay_within_the_bound)
{
    sn_recent *r = make(4, 64, 0);
    char svc[32];
    sn_recent_point p[4];
    for (int i = 0; i < 1000; i++) {
        snprintf(svc, sizeof svc, "svc-%d", i);
        ck_assert_int_eq(sn_recent_add(r, svc, "m", (sn_metric)(i % SN_METRIC_COUNT), i, i), 0);
    }
    sn_recent_stats st;
    sn_recent_stats_get(r, &st);
    ck_assert_uint_eq(st.keys, 64);
    ck_assert_uint_eq(st.evicted, 1000 - 64);
    /* Exactly the last 64 keys are held. */
    for (int i = 0; i < 1000; i++) {
        snprintf(svc, sizeof svc, "svc-%d", i);
        long n = sn_recent_get(r, svc, "m", (sn_metric)(i % SN_METRIC_COUNT), p, 4);
        ck_assert_int_eq(n, i >= 1000 - 64 ? 1 : -ENOENT);
    }
    sn_recent_destroy(r);
}
END_TEST

START_TEST(memory_budget_limits_the_keys)
{
    sn_recent *r = make(300, 100000, 1024 * 1024);
    sn_recent_stats st;
    sn_recent_stats_get(r, &st);
    ck_assert_uint_lt(st.max_keys, 1024 * 1024 / (300 * sizeof(sn_recent_point)) + 1);
    ck_assert_uint_gt(st.max_keys, 100);
    ck_assert_uint_le(st.bytes, 1024 * 1024);
    sn_recent_destroy(r);

    /* Too small for one key, or limits out of range: refused with a message. */
    sn_recent_config c = {.points_per_key = 300, .max_bytes = 1000};
    char err[128] = "";
    ck_assert_int_eq(sn_recent_create(&c, &r, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "one key"));
    c = (sn_recent_config){.points_per_key = 1000000};
    ck_assert_int_eq(sn_recent_create(&c, &r, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "points per key"));
    /* Defaults. */
    ck_assert_int_eq(sn_recent_create(NULL, &r, NULL, 0), 0);
    ck_assert_uint_eq(sn_recent_points_per_key(r), SN_RECENT_DEFAULT_POINTS);
    sn_recent_stats_get(r, &st);
    ck_assert_uint_eq(st.max_keys, SN_RECENT_DEFAULT_KEYS);
    ck_assert_uint_le(st.bytes, SN_RECENT_DEFAULT_BYTES);
    sn_recent_destroy(r);
    sn_recent_destroy(NULL);
}
END_TEST

START_TEST(events_add_every_known_metric)
{
    sn_recent *r = make(10, 32, 0);
    sn_event ev;
    sn_event_init(&ev);
    snprintf(ev.service, sizeof ev.service, "chat");
    snprintf(ev.model, sizeof ev.model, "gpt-4o");
    ev.end_unix_nano = 1234;
    ev.latency_ms = 2000;
    ev.output_tokens = 100;
    /* latency, output tokens, error_rate (always known) and tokens per second */
    ck_assert_uint_eq(sn_recent_add_event(r, &ev), 4);
    sn_recent_point p[2];
    ck_assert_int_eq(sn_recent_get(r, "chat", "gpt-4o", SN_METRIC_TOKENS_PER_SECOND, p, 2), 1);
    ck_assert_double_eq_tol(p[0].value, 50.0, 1e-9);
    ck_assert_int_eq(p[0].time_unix_nano, 1234);
    ck_assert_int_eq(sn_recent_get(r, "chat", "gpt-4o", SN_METRIC_ERROR_RATE, p, 2), 1);
    ck_assert_double_eq(p[0].value, 0.0);
    ck_assert_int_eq(sn_recent_get(r, "chat", "gpt-4o", SN_METRIC_COST_USD, p, 2), -ENOENT);
    ck_assert_int_eq(sn_recent_get(r, "chat", "gpt-4o", SN_METRIC_TTFT_MS, p, 2), -ENOENT);
    sn_recent_destroy(r);
}
END_TEST

START_TEST(bad_input_is_refused_and_long_names_are_cut)
{
    sn_recent *r = make(4, 4, 0);
    sn_recent_point p[4];
    ck_assert_int_eq(sn_recent_add(r, NULL, "m", SN_METRIC_LATENCY_MS, 1, 1), -EINVAL);
    ck_assert_int_eq(sn_recent_add(r, "s", NULL, SN_METRIC_LATENCY_MS, 1, 1), -EINVAL);
    ck_assert_int_eq(sn_recent_add(r, "s", "m", SN_METRIC_COUNT, 1, 1), -EINVAL);
    ck_assert_int_eq(sn_recent_add(r, "s", "m", SN_METRIC_LATENCY_MS, 1, NAN), -EINVAL);
    ck_assert_int_eq(sn_recent_add(r, "s", "m", SN_METRIC_LATENCY_MS, 1, INFINITY), -EINVAL);
    ck_assert_int_eq(sn_recent_get(r, "s", "m", SN_METRIC_LATENCY_MS, p, 4), -ENOENT);
    ck_assert_int_eq(sn_recent_get(r, "s", "m", SN_METRIC_COUNT, p, 4), -ENOENT);

    char longname[400], cut[SN_NAME_MAX];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_int_eq(sn_recent_add(r, longname, "m", SN_METRIC_LATENCY_MS, 1, 7), 0);
    /* Found by the long name and by its cut form, which are the same key. */
    ck_assert_int_eq(sn_recent_get(r, longname, "m", SN_METRIC_LATENCY_MS, p, 4), 1);
    memcpy(cut, longname, SN_NAME_MAX - 1);
    cut[SN_NAME_MAX - 1] = '\0';
    ck_assert_int_eq(sn_recent_add(r, cut, "m", SN_METRIC_LATENCY_MS, 2, 8), 0);
    ck_assert_int_eq(sn_recent_get(r, longname, "m", SN_METRIC_LATENCY_MS, p, 4), 2);
    sn_recent_stats st;
    sn_recent_stats_get(r, &st);
    ck_assert_uint_eq(st.keys, 1);
    sn_recent_destroy(r);
}
END_TEST

static Suite *recent_suite(void)
{
    Suite *s = suite_create("recent");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, ring_keeps_the_newest_oldest_first);
    tcase_add_test(tc, least_recently_written_key_is_evicted);
    tcase_add_test(tc, many_keys_stay_within_the_bound);
    tcase_add_test(tc, memory_budget_limits_the_keys);
    tcase_add_test(tc, events_add_every_known_metric);
    tcase_add_test(tc, bad_input_is_refused_and_long_names_are_cut);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(recent_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
