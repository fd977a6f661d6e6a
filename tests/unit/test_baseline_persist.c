/* Unit tests for the persistence of shared/baseline.c: per-entry blobs, restore, drop callback. */
#include "baseline.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sn_baseline *table(sn_baseline_mode mode, uint32_t window, size_t user)
{
    sn_baseline_config c;
    sn_baseline_config_init(&c);
    c.mode = mode;
    c.window = window;
    c.user_bytes = user;
    c.memory_budget = 4u << 20;
    sn_baseline *b = NULL;
    ck_assert_int_eq(sn_baseline_create(&b, &c), 0);
    return b;
}

/* An entry with n samples 100 + (i % 37) and a user area pattern; its blob in *blob. */
static sn_baseline_entry *filled(sn_baseline *b, const char *svc, unsigned n, uint8_t **blob,
                                 size_t *len)
{
    sn_baseline_entry *e;
    ck_assert_int_eq(sn_baseline_get(b, svc, "gpt-4o", SN_METRIC_LATENCY_MS, 1000, &e), 0);
    for (unsigned i = 0; i < n; i++)
        ck_assert_int_eq(sn_baseline_observe(b, e, 100.0 + (double)(i % 37), 2000 + i), 0);
    uint8_t *u = sn_baseline_entry_user(e);
    if (u != NULL) /* every table here has at least 8 bytes of user area */
        for (int i = 0; i < 8; i++)
            u[i] = (uint8_t)(0xA0 + i);
    size_t cap = sn_baseline_serialized_max(b);
    *blob = malloc(cap);
    ck_assert_ptr_nonnull(*blob);
    ck_assert_uint_eq(sn_baseline_entry_serialized_size(b, e) <= cap, 1);
    ck_assert_int_eq(sn_baseline_entry_serialize(b, e, *blob, cap, len), 0);
    ck_assert_uint_eq(*len, sn_baseline_entry_serialized_size(b, e));
    return e;
}

static void same_summary(sn_baseline *b1, const sn_baseline_entry *e1, sn_baseline *b2,
                         const sn_baseline_entry *e2)
{
    sn_summary s1, s2;
    sn_baseline_summary(b1, e1, &s1);
    sn_baseline_summary(b2, e2, &s2);
    ck_assert_uint_eq(s1.n, s2.n);
    ck_assert_double_eq_tol(s1.mean, s2.mean, 1e-9);
    ck_assert_double_eq_tol(s1.median, s2.median, 1e-9);
    ck_assert_double_eq_tol(s1.p99, s2.p99, 1e-9);
    ck_assert_double_eq_tol(s1.mad, s2.mad, 1e-9);
    ck_assert_uint_eq(sn_baseline_entry_seen(e1), sn_baseline_entry_seen(e2));
    ck_assert_int_eq(sn_baseline_entry_last_seen(e1), sn_baseline_entry_last_seen(e2));
    ck_assert_double_eq(sn_baseline_entry_welford(e1)->m2, sn_baseline_entry_welford(e2)->m2);
    ck_assert_double_eq(sn_baseline_entry_ewma(e1)->mean, sn_baseline_entry_ewma(e2)->mean);
}

static void round_trip(sn_baseline_mode mode)
{
    sn_baseline *b1 = table(mode, 200, 24), *b2 = table(mode, 200, 24);
    uint8_t *blob;
    size_t len;
    sn_baseline_entry *e1 = filled(b1, "svc", 777, &blob, &len), *e2 = NULL;
    ck_assert_int_eq(sn_baseline_restore(b2, blob, len, 5, &e2), 0);
    ck_assert_str_eq(sn_baseline_entry_service(e2), "svc");
    ck_assert_str_eq(sn_baseline_entry_model(e2), "gpt-4o");
    ck_assert_int_eq(sn_baseline_entry_metric(e2), SN_METRIC_LATENCY_MS);
    ck_assert_int_eq(memcmp(sn_baseline_entry_user(e1), sn_baseline_entry_user(e2), 24), 0);
    same_summary(b1, e1, b2, e2);
    /* Both keep learning the same way (the compact rotation state came along). */
    for (int i = 0; i < 150; i++) {
        sn_baseline_observe(b1, e1, 300.0 + i, 9000);
        sn_baseline_observe(b2, e2, 300.0 + i, 9000);
    }
    same_summary(b1, e1, b2, e2);
    /* The blob of the restored entry is the blob of the original. */
    uint8_t *again = malloc(sn_baseline_serialized_max(b2));
    size_t l1, l2;
    sn_baseline_entry_serialize(b1, e1, blob, sn_baseline_serialized_max(b1), &l1);
    sn_baseline_entry_serialize(b2, e2, again, sn_baseline_serialized_max(b2), &l2);
    ck_assert_uint_eq(l1, l2);
    ck_assert_int_eq(memcmp(blob, again, l1), 0);
    /* Twice: the key exists. */
    ck_assert_int_eq(sn_baseline_restore(b2, blob, l1, 5, NULL), -EEXIST);
    free(again);
    free(blob);
    sn_baseline_destroy(b1);
    sn_baseline_destroy(b2);
}

START_TEST(exact_round_trip)
{
    round_trip(SN_BASELINE_EXACT);
}
END_TEST

START_TEST(compact_round_trip)
{
    round_trip(SN_BASELINE_COMPACT);
}
END_TEST

/* Every truncation and every single-byte change is refused, and the table stays empty. */
static void corruption(sn_baseline_mode mode)
{
    sn_baseline *b1 = table(mode, 50, 8), *b2 = table(mode, 50, 8);
    uint8_t *blob;
    size_t len;
    filled(b1, "svc", 60, &blob, &len);
    for (size_t n = 0; n < len; n++)
        ck_assert_int_eq(sn_baseline_restore(b2, blob, n, 0, NULL), -EBADMSG);
    uint8_t *ext = malloc(len + 1);
    memcpy(ext, blob, len);
    ext[len] = 0;
    ck_assert_int_eq(sn_baseline_restore(b2, ext, len + 1, 0, NULL), -EBADMSG);
    free(ext);
    for (size_t i = 0; i < len; i++) {
        blob[i] ^= 0x5a;
        int rc = sn_baseline_restore(b2, blob, len, 0, NULL);
        ck_assert_msg(rc == -EBADMSG || rc == -EPROTO, "byte %zu: %d", i, rc);
        blob[i] ^= 0x5a;
    }
    sn_baseline_stats st;
    sn_baseline_get_stats(b2, &st);
    ck_assert_uint_eq(st.keys, 0);
    ck_assert_int_eq(sn_baseline_restore(b2, NULL, 0, 0, NULL), -EBADMSG);
    ck_assert_int_eq(sn_baseline_restore(b2, blob, len, 0, NULL), 0);
    free(blob);
    sn_baseline_destroy(b1);
    sn_baseline_destroy(b2);
}

START_TEST(exact_corruption_refused)
{
    corruption(SN_BASELINE_EXACT);
}
END_TEST

START_TEST(compact_corruption_refused)
{
    corruption(SN_BASELINE_COMPACT);
}
END_TEST

START_TEST(incompatible_tables_refuse)
{
    uint8_t *blob;
    size_t len;
    sn_baseline *b = table(SN_BASELINE_EXACT, 100, 8);
    filled(b, "svc", 30, &blob, &len);
    sn_baseline *compact = table(SN_BASELINE_COMPACT, 100, 8);
    sn_baseline *other_user = table(SN_BASELINE_EXACT, 100, 16);
    ck_assert_int_eq(sn_baseline_restore(compact, blob, len, 0, NULL), -EPROTO);
    ck_assert_int_eq(sn_baseline_restore(other_user, blob, len, 0, NULL), -EPROTO);
    /* ... unless only the statistics are wanted: the user area then starts zeroed */
    sn_baseline_entry *oe;
    ck_assert_int_eq(
        sn_baseline_restore_ex(other_user, blob, len, 0, SN_BASELINE_RESTORE_STATS_ONLY, &oe), 1);
    ck_assert_uint_eq(sn_baseline_entry_seen(oe), 30);
    sn_summary os;
    sn_baseline_summary(other_user, oe, &os);
    ck_assert_uint_eq(os.n, 30);
    ck_assert_double_eq(os.max, 129.0); /* samples 0..29 -> 100..129 */
    const uint8_t *ou = sn_baseline_entry_user(oe);
    for (int i = 0; i < 16; i++)
        ck_assert_uint_eq(ou[i], 0);
    /* the same size with the flag: everything restored, 0 */
    sn_baseline *same = table(SN_BASELINE_EXACT, 100, 8);
    ck_assert_int_eq(
        sn_baseline_restore_ex(same, blob, len, 0, SN_BASELINE_RESTORE_STATS_ONLY, &oe), 0);
    ck_assert_uint_eq(((const uint8_t *)sn_baseline_entry_user(oe))[0], 0xA0);
    sn_baseline_destroy(same);
    /* A smaller exact window keeps the newest samples. */
    sn_baseline *small = table(SN_BASELINE_EXACT, 10, 8);
    sn_baseline_entry *e;
    ck_assert_int_eq(sn_baseline_restore(small, blob, len, 0, &e), 0);
    sn_summary s;
    sn_baseline_summary(small, e, &s);
    ck_assert_uint_eq(s.n, 10);
    ck_assert_double_eq(s.max, 129.0); /* samples 20..29 -> 120..129 */
    ck_assert_double_eq(s.min, 120.0);
    ck_assert_uint_eq(sn_baseline_entry_seen(e), 30);
    free(blob);
    sn_baseline_destroy(b);
    sn_baseline_destroy(compact);
    sn_baseline_destroy(other_user);
    sn_baseline_destroy(small);
}
END_TEST

static unsigned drops;
static void count_drop(const sn_baseline_entry *e, void *ud)
{
    ck_assert_ptr_eq(ud, &drops);
    ck_assert_ptr_nonnull(sn_baseline_entry_service(e));
    drops++;
}

START_TEST(drop_callback_on_expiry_and_eviction)
{
    sn_baseline_config c;
    sn_baseline_config_init(&c);
    c.window = 100;
    c.memory_budget = 1u << 20;
    c.on_drop = count_drop;
    c.on_drop_ud = &drops;
    sn_baseline *b;
    ck_assert_int_eq(sn_baseline_create(&b, &c), 0);
    drops = 0;
    sn_baseline_entry *e;
    char name[32];
    unsigned i;
    for (i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "svc-%u", i);
        ck_assert_int_eq(sn_baseline_get(b, name, "", SN_METRIC_LATENCY_MS, 10, &e), 0);
    }
    sn_baseline_stats st;
    sn_baseline_get_stats(b, &st);
    ck_assert_uint_gt(st.evicted, 0);
    ck_assert_uint_eq(drops, st.evicted);
    unsigned before = drops;
    sn_baseline_remove(b, e); /* explicit removal: no callback */
    ck_assert_uint_eq(drops, before);
    uint64_t n = sn_baseline_expire(b, 1000, 100);
    ck_assert_uint_gt(n, 0);
    ck_assert_uint_eq(drops, before + n);
    sn_baseline_destroy(b);
}
END_TEST

static Suite *persist_suite(void)
{
    Suite *s = suite_create("baseline_persist");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, exact_round_trip);
    tcase_add_test(tc, compact_round_trip);
    tcase_add_test(tc, exact_corruption_refused);
    tcase_add_test(tc, compact_corruption_refused);
    tcase_add_test(tc, incompatible_tables_refuse);
    tcase_add_test(tc, drop_callback_on_expiry_and_eviction);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(persist_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
