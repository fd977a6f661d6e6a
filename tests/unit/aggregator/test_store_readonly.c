/* Unit tests for aggregator/store.c's read-only connections (sn_store_open_readonly) and the
 * severity set of the alert filter: readers beside a writer in WAL mode, writes refused,
 * missing and foreign databases. */
#include "store.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEC INT64_C(1000000000)
#define T0  (INT64_C(1795000000) * SEC)

static char g_root[128];
static char g_dir[160];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(g_root, sizeof g_root, "%s/sn-ro-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(g_root));
    snprintf(g_dir, sizeof g_dir, "%s/data", g_root);
}

static void teardown(void)
{
    nftw(g_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static sn_alert make_alert(int i, sn_severity sev, int64_t ts)
{
    sn_alert a;
    memset(&a, 0, sizeof a);
    snprintf(a.alert_id, sizeof a.alert_id, "00000000-0000-4000-8000-%012d", i);
    a.timestamp_ns = ts;
    a.last_seen_ns = ts + SEC;
    a.severity = sev;
    a.anomaly_type = SN_ANOMALY_LATENCY_SPIKE;
    snprintf(a.service, sizeof a.service, "svc");
    snprintf(a.model, sizeof a.model, "gpt-4o");
    a.method = SN_DETECT_ZSCORE;
    a.confidence = 0.9;
    a.metric = SN_METRIC_LATENCY_MS;
    a.value = 100 + i;
    a.baseline = 50;
    a.threshold = 80;
    a.deviation_sigma = NAN;
    a.status = SN_ALERT_FIRING;
    a.occurrences = 1;
    return a;
}

static int count_cb(const char *json, size_t len, void *ud)
{
    (void)json;
    (void)len;
    (*(int *)ud)++;
    return 0;
}

START_TEST(a_reader_sees_the_writers_commits_and_cannot_write)
{
    char err[512];
    sn_store *w = NULL, *r = NULL;
    ck_assert_int_eq(sn_store_open(g_dir, NULL, &w, err, sizeof err), 0);
    sn_alert a = make_alert(1, SN_SEV_HIGH, T0);
    ck_assert_int_eq(sn_store_alert_upsert(w, &a), 0);

    int rc = sn_store_open_readonly(g_dir, &r, err, sizeof err);
    ck_assert_msg(rc == 0, "%d %s", rc, err);
    sn_alert b;
    ck_assert_int_eq(sn_store_alert_get(r, a.alert_id, &b), 0);
    ck_assert_str_eq(b.service, "svc");
    ck_assert_int_eq(b.severity, SN_SEV_HIGH);

    /* The writer goes on while the reader is open (WAL); a new read sees the commit. */
    sn_alert c = make_alert(2, SN_SEV_LOW, T0 + SEC);
    ck_assert_int_eq(sn_store_alert_upsert(w, &c), 0);
    sn_store_alert_filter f;
    sn_store_alert_filter_init(&f);
    int n = 0;
    uint64_t total = 0;
    ck_assert_int_eq(sn_store_alert_query(r, &f, count_cb, &n, &total), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_uint_eq(total, 2);

    /* Writes through the reader are refused and change nothing. */
    sn_alert d = make_alert(3, SN_SEV_LOW, T0);
    ck_assert_int_eq(sn_store_alert_upsert(r, &d), -EACCES);
    ck_assert_int_eq(sn_store_alert_get(w, d.alert_id, &b), -ENOENT);
    ck_assert_int_eq(sn_store_baseline_put(r, "k", "x", 1, T0), -EACCES);

    /* A writer transaction in progress does not block the reader. */
    ck_assert_int_eq(sn_store_begin(w), 0);
    ck_assert_int_eq(sn_store_alert_upsert(w, &d), 0);
    n = 0;
    ck_assert_int_eq(sn_store_alert_query(r, &f, count_cb, &n, NULL), 0);
    ck_assert_int_eq(n, 2); /* not committed yet */
    ck_assert_int_eq(sn_store_commit(w), 0);
    n = 0;
    ck_assert_int_eq(sn_store_alert_query(r, &f, count_cb, &n, NULL), 0);
    ck_assert_int_eq(n, 3);

    sn_store_close(r);
    sn_store_close(w);
    /* The writer's close removed nothing the reader needs: a reader opens again. */
    ck_assert_int_eq(sn_store_open_readonly(g_dir, &r, err, sizeof err), 0);
    ck_assert_int_eq(sn_store_alert_get(r, c.alert_id, &b), 0);
    sn_store_close(r);
}
END_TEST

START_TEST(no_database_is_enoent)
{
    char err[512] = "";
    sn_store *r = (sn_store *)&r;
    ck_assert_int_eq(sn_store_open_readonly(g_dir, &r, err, sizeof err), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "state.db"));
    /* And it created nothing. */
    struct stat sb;
    ck_assert_int_ne(stat(g_dir, &sb), 0);
    ck_assert_int_eq(sn_store_open_readonly("", &r, err, sizeof err), -EINVAL);
}
END_TEST

START_TEST(another_schema_version_is_refused)
{
    char err[512];
    sn_store *w = NULL, *r = NULL;
    ck_assert_int_eq(sn_store_open(g_dir, NULL, &w, err, sizeof err), 0);
    sn_store_close(w);
    char path[256];
    snprintf(path, sizeof path, "%s/state.db", g_dir);
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "UPDATE schema_version SET version = 99", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    ck_assert_int_eq(sn_store_open_readonly(g_dir, &r, err, sizeof err), -EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "99"));

    /* Not a database at all. */
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs("this is not sqlite, just text long enough to be read as a header..........", fp);
    fclose(fp);
    char wal[300];
    snprintf(wal, sizeof wal, "%s-wal", path);
    remove(wal);
    snprintf(wal, sizeof wal, "%s-shm", path);
    remove(wal);
    int rc = sn_store_open_readonly(g_dir, &r, err, sizeof err);
    ck_assert_msg(rc == -EIO, "%d %s", rc, err);
}
END_TEST

START_TEST(severity_set_filter)
{
    char err[512];
    sn_store *w = NULL;
    ck_assert_int_eq(sn_store_open(g_dir, NULL, &w, err, sizeof err), 0);
    for (int i = 0; i < 8; i++) {
        sn_alert a = make_alert(i, (sn_severity)(SN_SEV_LOW + i % 4), T0 + i * SEC);
        ck_assert_int_eq(sn_store_alert_upsert(w, &a), 0);
    }
    sn_store_alert_filter f;
    sn_store_alert_filter_init(&f);
    f.severity_mask = (1u << SN_SEV_LOW) | (1u << SN_SEV_CRITICAL);
    f.severity = SN_SEV_HIGH; /* ignored: the set wins */
    int n = 0;
    uint64_t total = 0;
    ck_assert_int_eq(sn_store_alert_query(w, &f, count_cb, &n, &total), 0);
    ck_assert_int_eq(n, 4);
    ck_assert_uint_eq(total, 4);
    f.severity_mask = 1u << SN_SEV_MEDIUM;
    n = 0;
    ck_assert_int_eq(sn_store_alert_query(w, &f, count_cb, &n, &total), 0);
    ck_assert_int_eq(n, 2);
    f.severity_mask = 1u << (SN_SEV_CRITICAL + 1);
    ck_assert_int_eq(sn_store_alert_query(w, &f, count_cb, &n, &total), -EINVAL);
    sn_store_close(w);
}
END_TEST

static Suite *store_readonly_suite(void)
{
    Suite *s = suite_create("store_readonly");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, a_reader_sees_the_writers_commits_and_cannot_write);
    tcase_add_test(tc, no_database_is_enoent);
    tcase_add_test(tc, another_schema_version_is_refused);
    tcase_add_test(tc, severity_set_filter);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(store_readonly_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
