/* Unit tests for the engine's snapshots (aggregator/engine.c): dirty tracking, bounded steps,
 * deletions of dropped keys, restore into a new engine without a cold start, refusals. */
#include "bytes.h"
#include "engine.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC     SN_NS_PER_SEC
#define MAXKEYS 64

/* What a snapshot handed out: keys with copies of their blobs, and deletions. */
typedef struct store {
    unsigned n;
    char key[MAXKEYS][SN_ENGINE_SNAPSHOT_KEY_MAX];
    uint8_t *blob[MAXKEYS];
    size_t len[MAXKEYS];
    unsigned puts, deletes;
    int fail_at; /* put number that fails (-1: none) */
} store;

static int put(const char *key, const void *blob, size_t len, void *ud)
{
    store *s = ud;
    if (blob == NULL) {
        s->deletes++;
        for (unsigned i = 0; i < s->n; i++)
            if (strcmp(s->key[i], key) == 0)
                s->key[i][0] = '\0';
        return 0;
    }
    if (s->fail_at >= 0 && (int)s->puts == s->fail_at)
        return -EIO;
    s->puts++;
    unsigned i = 0;
    while (i < s->n && strcmp(s->key[i], key) != 0)
        i++;
    if (i == s->n) {
        ck_assert_uint_lt(s->n, MAXKEYS);
        snprintf(s->key[s->n++], SN_ENGINE_SNAPSHOT_KEY_MAX, "%s", key);
    }
    free(s->blob[i]);
    s->blob[i] = malloc(len);
    memcpy(s->blob[i], blob, len);
    s->len[i] = len;
    return 0;
}

static void store_free(store *s)
{
    for (unsigned i = 0; i < s->n; i++)
        free(s->blob[i]);
    memset(s, 0, sizeof(*s));
    s->fail_at = -1;
}

static unsigned anomalies;
static void count(const sn_anomaly *a, void *ud)
{
    (void)a, (void)ud;
    anomalies++;
}

static sn_engine *engine(void)
{
    sn_engine_config cfg;
    sn_engine_config_defaults(&cfg);
    cfg.throughput_enabled = false;
    sn_engine *e = NULL;
    sn_config_error err;
    ck_assert_int_eq(sn_engine_create(&e, &cfg, 42, &err), 0);
    return e;
}

static void observe(sn_engine *e, const char *svc, int64_t t, double latency)
{
    sn_event ev;
    sn_event_init(&ev);
    snprintf(ev.service, sizeof ev.service, "%s", svc);
    snprintf(ev.model, sizeof ev.model, "gpt-4o");
    ev.end_unix_nano = t;
    ev.start_unix_nano = t - (int64_t)(latency * 1e6);
    ev.latency_ms = latency;
    sn_engine_observe(e, &ev, count, NULL);
}

/* 200 calls of svc around 800 ms. */
static void warm(sn_engine *e, const char *svc, int64_t t0)
{
    for (int i = 0; i < 200; i++)
        observe(e, svc, t0 + i * SEC / 10, 800.0 + (double)((i * 37) % 41) - 20.0);
}

START_TEST(dirty_keys_only_and_bounded_steps)
{
    sn_engine *e = engine();
    store s;
    memset(&s, 0, sizeof s);
    s.fail_at = -1;
    warm(e, "a", 1000 * SEC);
    warm(e, "b", 1000 * SEC);
    /* each service: latency_ms and error_rate keys */
    sn_engine_snapshot_result r;
    ck_assert_int_eq(sn_engine_snapshot(e, false, 3, put, &s, &r), 0);
    ck_assert_uint_eq(r.written, 3);
    ck_assert(!r.complete);
    ck_assert_int_eq(sn_engine_snapshot(e, false, 3, put, &s, &r), 0);
    ck_assert_uint_eq(r.written, 1);
    ck_assert(r.complete);
    ck_assert_uint_eq(s.n, 4);
    ck_assert_int_eq(sn_engine_snapshot(e, false, 0, put, &s, &r), 0);
    ck_assert_uint_eq(r.written, 0); /* nothing changed */
    ck_assert(r.complete);
    observe(e, "a", 1100 * SEC, 805.0);
    ck_assert_int_eq(sn_engine_snapshot(e, false, 0, put, &s, &r), 0);
    ck_assert_uint_eq(r.written, 2); /* a's latency and error-rate keys */
    ck_assert_int_eq(sn_engine_snapshot(e, true, 0, put, &s, &r), 0);
    ck_assert_uint_eq(r.written, 4); /* all */
    /* A failing write stops the step and the key stays dirty. */
    observe(e, "b", 1100 * SEC, 805.0);
    s.fail_at = (int)s.puts;
    ck_assert_int_eq(sn_engine_snapshot(e, false, 0, put, &s, &r), -EIO);
    s.fail_at = -1;
    ck_assert_int_eq(sn_engine_snapshot(e, false, 0, put, &s, &r), 0);
    ck_assert_uint_eq(r.written, 2);
    for (unsigned i = 0; i < s.n; i++)
        ck_assert(sn_engine_snapshot_live(e, s.key[i]));
    ck_assert(!sn_engine_snapshot_live(e, "g/latency_ms/1/zgpt-4o"));
    ck_assert(!sn_engine_snapshot_live(e, "nonsense"));
    store_free(&s);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(restored_engine_is_warm)
{
    sn_engine *e = engine();
    store s;
    memset(&s, 0, sizeof s);
    s.fail_at = -1;
    warm(e, "svc", 1000 * SEC);
    ck_assert_int_eq(sn_engine_snapshot(e, false, 0, put, &s, NULL), 0);

    sn_engine *cold = engine(), *back = engine();
    for (unsigned i = 0; i < s.n; i++)
        ck_assert_int_eq(sn_engine_restore(back, s.key[i], s.blob[i], s.len[i]), 0);
    ck_assert_int_eq(sn_engine_restore(back, s.key[0], s.blob[0], s.len[0]), -EEXIST);
    sn_engine_stats st;
    sn_engine_get_stats(back, &st);
    ck_assert_uint_eq(st.keys, s.n);
    /* Restored keys are not dirty. */
    sn_engine_snapshot_result r;
    store s2;
    memset(&s2, 0, sizeof s2);
    s2.fail_at = -1;
    ck_assert_int_eq(sn_engine_snapshot(back, false, 0, put, &s2, &r), 0);
    ck_assert_uint_eq(r.written, 0);
    /* A spike: the restored engine judges it at once, an empty one cannot. */
    anomalies = 0;
    observe(back, "svc", 1100 * SEC, 30000.0);
    ck_assert_uint_ge(anomalies, 1);
    anomalies = 0;
    observe(cold, "svc", 1100 * SEC, 30000.0);
    ck_assert_uint_eq(anomalies, 0);
    store_free(&s2);
    store_free(&s);
    sn_engine_destroy(cold);
    sn_engine_destroy(back);
    sn_engine_destroy(e);
}
END_TEST

/* blob (sn_baseline_entry_serialize's format, baseline.h) rewritten as an older version would
 * have written it: a user area (key_state) of `ulen` bytes instead of its own, the rest as it
 * is. Returns a malloc'd blob (the caller frees it) of *outlen bytes. */
static uint8_t *with_user_size(const uint8_t *blob, size_t len, size_t ulen, size_t *outlen)
{
    size_t names = 108 + sn_le_get_u16(blob + 8) + sn_le_get_u16(blob + 10);
    size_t old_ulen = sn_le_get_u32(blob + 104);
    ck_assert_uint_ge(old_ulen, ulen);
    size_t rest = len - 4 - names - old_ulen; /* the statistics, without the CRC */
    *outlen = names + ulen + rest + 4;
    uint8_t *out = malloc(*outlen);
    ck_assert_ptr_nonnull(out);
    memcpy(out, blob, names);
    memcpy(out + names, blob + names, ulen);
    memcpy(out + names + ulen, blob + names + old_ulen, rest);
    sn_le_put_u32(out + 104, (uint32_t)ulen);
    sn_le_put_u32(out + *outlen - 4, sn_crc32(0, out, *outlen - 4));
    return out;
}

START_TEST(older_format_keeps_statistics)
{
    sn_engine *e = engine();
    store s;
    memset(&s, 0, sizeof s);
    s.fail_at = -1;
    warm(e, "svc", 1000 * SEC);
    ck_assert_int_eq(sn_engine_snapshot(e, false, 0, put, &s, NULL), 0);
    ck_assert_uint_ge(s.n, 1);
    sn_engine *back = engine(), *cold = engine();
    for (unsigned i = 0; i < s.n; i++) {
        size_t olen;
        uint8_t *old = with_user_size(s.blob[i], s.len[i], 152, &olen); /* key_state of 0.1 */
        ck_assert_int_eq(sn_engine_restore(back, s.key[i], old, olen), 1);
        free(old);
    }
    sn_engine_stats st;
    sn_engine_get_stats(back, &st);
    ck_assert_uint_eq(st.keys, s.n);
    /* rewritten in the current format at the next snapshot, every key */
    store s2;
    memset(&s2, 0, sizeof s2);
    s2.fail_at = -1;
    sn_engine_snapshot_result r;
    ck_assert_int_eq(sn_engine_snapshot(back, false, 0, put, &s2, &r), 0);
    ck_assert_uint_eq(r.written, s.n);
    ck_assert_uint_eq(s2.len[0], s.len[0]);
    /* normal values stay normal: the fresh detector state starts from the restored window
     * (no Z-score violation), as in the engine that wrote the snapshots */
    sn_engine_stats before, after;
    sn_engine_get_stats(back, &before);
    for (int i = 0; i < 20; i++)
        observe(back, "svc", 1050 * SEC + i * SEC / 10, 800.0 + (double)((i * 37) % 41) - 20.0);
    sn_engine_get_stats(back, &after);
    ck_assert_uint_gt(after.evaluations[SN_CHECK_ZSCORE], before.evaluations[SN_CHECK_ZSCORE]);
    ck_assert_uint_eq(after.violations[SN_CHECK_ZSCORE], before.violations[SN_CHECK_ZSCORE]);
    /* the learned statistics came along: a spike is judged at once, as by a warm engine
     * (two calls: the first starts the detectors' fresh streaks) */
    anomalies = 0;
    for (int i = 0; i < 4; i++)
        observe(back, "svc", 1100 * SEC + i * SEC, 30000.0);
    ck_assert_uint_ge(anomalies, 1);
    anomalies = 0;
    for (int i = 0; i < 4; i++)
        observe(cold, "svc", 1100 * SEC + i * SEC, 30000.0);
    ck_assert_uint_eq(anomalies, 0);
    store_free(&s2);
    store_free(&s);
    sn_engine_destroy(cold);
    sn_engine_destroy(back);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(restore_refuses_bad_input)
{
    sn_engine *e = engine();
    store s;
    memset(&s, 0, sizeof s);
    s.fail_at = -1;
    warm(e, "svc", 1000 * SEC);
    ck_assert_int_eq(sn_engine_snapshot(e, false, 0, put, &s, NULL), 0);
    ck_assert_uint_ge(s.n, 1);
    sn_engine *b = engine();
    const uint8_t *blob = s.blob[0];
    size_t len = s.len[0];
    /* bad key texts */
    const char *bad[] = {"",
                         "x/latency_ms/3/svcgpt-4o",
                         "g/latency/3/svcgpt-4o",
                         "g/latency_ms//svcgpt-4o",
                         "g/latency_ms/99/svc",
                         "g/latency_ms/0/x",
                         "g/latency_ms/3/abcgpt-4o" /* parses, but another key than the blob's */};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_int_eq(sn_engine_restore(b, bad[i], blob, len), -EBADMSG);
    /* seasonal key with seasonal baselines off */
    char skey[SN_ENGINE_SNAPSHOT_KEY_MAX];
    memcpy(skey, s.key[0], sizeof skey);
    skey[0] = 's';
    ck_assert_int_eq(sn_engine_restore(b, skey, blob, len), -EPROTO);
    /* a truncated blob */
    ck_assert_int_eq(sn_engine_restore(b, s.key[0], blob, len - 1), -EBADMSG);
    sn_engine_stats st;
    sn_engine_get_stats(b, &st);
    ck_assert_uint_eq(st.keys, 0);
    store_free(&s);
    sn_engine_destroy(b);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(expired_keys_are_handed_out_for_deletion)
{
    sn_engine *e = engine();
    store s;
    memset(&s, 0, sizeof s);
    s.fail_at = -1;
    warm(e, "old", 1000 * SEC);
    ck_assert_int_eq(sn_engine_snapshot(e, false, 0, put, &s, NULL), 0);
    unsigned stored = s.n;
    ck_assert_uint_eq(stored, 2);
    /* 25 hours later the tick expires them (idle_expiry 24 h). */
    sn_engine_tick(e, 1000 * SEC + INT64_C(25) * 3600 * SEC, count, NULL);
    sn_engine_snapshot_result r;
    ck_assert_int_eq(sn_engine_snapshot(e, false, 1, put, &s, &r), 0);
    ck_assert_uint_eq(r.deleted, 1);
    ck_assert(!r.complete);
    ck_assert_int_eq(sn_engine_snapshot(e, false, 0, put, &s, &r), 0);
    ck_assert_uint_eq(r.deleted, 1);
    ck_assert(r.complete);
    ck_assert_uint_eq(s.deletes, 2);
    for (unsigned i = 0; i < s.n; i++)
        ck_assert_str_eq(s.key[i], "");
    store_free(&s);
    sn_engine_destroy(e);
}
END_TEST

/* Seasonal keys are written under "s/" and restored into the seasonal table. */
START_TEST(seasonal_keys_round_trip)
{
    sn_engine_config cfg;
    sn_engine_config_defaults(&cfg);
    cfg.throughput_enabled = false;
    cfg.seasonal = true;
    sn_engine *e = NULL, *back = NULL;
    sn_config_error err;
    ck_assert_int_eq(sn_engine_create(&e, &cfg, 5, &err), 0);
    ck_assert_int_eq(sn_engine_create(&back, &cfg, 6, &err), 0);
    warm(e, "svc", 1000 * SEC);
    store s;
    memset(&s, 0, sizeof s);
    s.fail_at = -1;
    sn_engine_snapshot_result r;
    ck_assert_int_eq(sn_engine_snapshot(e, true, 0, put, &s, &r), 0);
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(r.written, st.keys); /* all = both tables */
    unsigned seasonal = 0;
    for (unsigned i = 0; i < s.n; i++) {
        seasonal += s.key[i][0] == 's';
        ck_assert_int_eq(sn_engine_restore(back, s.key[i], s.blob[i], s.len[i]), 0);
        ck_assert(sn_engine_snapshot_live(back, s.key[i]));
    }
    ck_assert_uint_gt(seasonal, 0);
    sn_engine_stats bst;
    sn_engine_get_stats(back, &bst);
    ck_assert_uint_eq(bst.keys, st.keys);
    /* A full snapshot of the restored engine writes every key of both tables again. */
    store s2;
    memset(&s2, 0, sizeof s2);
    s2.fail_at = -1;
    ck_assert_int_eq(sn_engine_snapshot(back, true, 0, put, &s2, &r), 0);
    ck_assert_uint_eq(r.written, st.keys);
    for (unsigned i = 0; i < s2.n; i++)
        ck_assert(sn_engine_snapshot_live(e, s2.key[i]));
    store_free(&s2);
    store_free(&s);
    sn_engine_destroy(back);
    sn_engine_destroy(e);
}
END_TEST

/* Keys evicted while dirty leave the dirty list (ASan would see a freed entry handed out). */
static int count_put(const char *key, const void *blob, size_t len, void *ud)
{
    (void)key, (void)len;
    if (blob != NULL)
        (*(unsigned *)ud)++;
    return 0;
}

START_TEST(evicted_dirty_keys_leave_the_list)
{
    sn_engine_config cfg;
    sn_engine_config_defaults(&cfg);
    cfg.throughput_enabled = false;
    cfg.memory_budget = 1 << 20; /* a few hundred keys */
    sn_engine *e = NULL;
    sn_config_error err;
    ck_assert_int_eq(sn_engine_create(&e, &cfg, 3, &err), 0);
    char svc[32];
    for (int k = 0; k < 3000; k++) {
        snprintf(svc, sizeof svc, "svc-%d", k);
        observe(e, svc, 1000 * SEC + k, 700.0);
    }
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_gt(st.evictions, 0);
    unsigned n = 0;
    sn_engine_snapshot_result r;
    ck_assert_int_eq(sn_engine_snapshot(e, false, 0, count_put, &n, &r), 0);
    ck_assert(r.complete);
    ck_assert_uint_eq(n, st.keys);   /* exactly the keys still there */
    ck_assert_uint_eq(r.deleted, 0); /* none of the evicted ones had been stored */
    /* Now every key is stored: evicting them queues deletions. */
    for (int k = 3000; k < 6000; k++) {
        snprintf(svc, sizeof svc, "svc-%d", k);
        observe(e, svc, 1000 * SEC + k, 700.0);
    }
    n = 0;
    ck_assert_int_eq(sn_engine_snapshot(e, false, 0, count_put, &n, &r), 0);
    ck_assert_uint_eq(r.deleted, st.keys);
    sn_engine_destroy(e);
}
END_TEST

static Suite *snapshot_suite(void)
{
    Suite *s = suite_create("engine_snapshot");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, dirty_keys_only_and_bounded_steps);
    tcase_add_test(tc, restored_engine_is_warm);
    tcase_add_test(tc, restore_refuses_bad_input);
    tcase_add_test(tc, older_format_keeps_statistics);
    tcase_add_test(tc, expired_keys_are_handed_out_for_deletion);
    tcase_add_test(tc, evicted_dirty_keys_leave_the_list);
    tcase_add_test(tc, seasonal_keys_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(snapshot_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
