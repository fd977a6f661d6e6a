/* Unit tests for aggregator/store.c: every function, reopening, failures. */
#include "store.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEC INT64_C(1000000000)
#define DAY (INT64_C(86400) * SEC)
#define T0  (INT64_C(1795000000) * SEC)

static char g_base[64];
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
    snprintf(g_root, sizeof g_root, "%s/t-XXXXXX", g_base);
    ck_assert_ptr_nonnull(mkdtemp(g_root));
    snprintf(g_dir, sizeof g_dir, "%s/data", g_root);
}

static void teardown(void)
{
    chmod(g_root, 0700);
    nftw(g_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static sn_store *open_store(const sn_store_options *opt)
{
    sn_store *st = NULL;
    char err[512];
    int rc = sn_store_open(g_dir, opt, &st, err, sizeof err);
    ck_assert_msg(rc == 0, "open: %d %s", rc, err);
    return st;
}

static sn_alert make_alert(int i, const char *service, const char *model, sn_severity sev,
                           sn_anomaly_type type, sn_alert_status status, int64_t ts)
{
    sn_alert a;
    memset(&a, 0, sizeof a);
    snprintf(a.alert_id, sizeof a.alert_id, "00000000-0000-4000-8000-%012d", i);
    a.timestamp_ns = ts;
    a.last_seen_ns = ts + SEC;
    a.resolved_at_ns = status == SN_ALERT_RESOLVED ? ts + 2 * SEC : 0;
    a.severity = sev;
    a.anomaly_type = type;
    snprintf(a.service, sizeof a.service, "%s", service);
    snprintf(a.model, sizeof a.model, "%s", model);
    a.method = SN_DETECT_ZSCORE;
    a.confidence = 0.9;
    a.metric = SN_METRIC_LATENCY_MS;
    a.value = 100 + i;
    a.baseline = 50;
    a.threshold = 80;
    a.deviation_sigma = NAN;
    snprintf(a.time_window, sizeof a.time_window, "last_5_minutes");
    snprintf(a.root_cause, sizeof a.root_cause, "cause %d", i);
    a.nremediation = 1;
    snprintf(a.remediation[0], sizeof a.remediation[0], "step");
    a.status = status;
    a.occurrences = (uint32_t)i + 1;
    return a;
}

/* ---- open ---- */

START_TEST(open_creates_a_wal_database)
{
    sn_store *st = open_store(NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/state.db", g_dir);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    char mode[16];
    ck_assert_int_eq(sn_store_journal_mode(st, mode, sizeof mode), 0);
    ck_assert_str_eq(mode, "wal");
    ck_assert_int_eq(sn_store_schema_version(st), SN_STORE_SCHEMA_VERSION);
    ck_assert_str_eq(sn_store_errmsg(st), "");
    sn_store_close(st);
    sn_store_close(NULL);
    /* Reopening an up-to-date database migrates nothing and keeps WAL. */
    st = open_store(NULL);
    ck_assert_int_eq(sn_store_schema_version(st), SN_STORE_SCHEMA_VERSION);
    ck_assert_int_eq(sn_store_journal_mode(st, mode, sizeof mode), 0);
    ck_assert_str_eq(mode, "wal");
    sn_store_close(st);
}
END_TEST

START_TEST(open_migrates_an_empty_database)
{
    /* An existing, empty SQLite file (as another tool might leave it). */
    ck_assert_int_eq(mkdir(g_dir, 0700), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/state.db", g_dir);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "CREATE TABLE unrelated (x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    sn_store *st = open_store(NULL);
    ck_assert_int_eq(sn_store_schema_version(st), SN_STORE_SCHEMA_VERSION);
    sn_alert a =
        make_alert(1, "s", "m", SN_SEV_HIGH, SN_ANOMALY_LATENCY_SPIKE, SN_ALERT_FIRING, T0);
    ck_assert_int_eq(sn_store_alert_upsert(st, &a), 0);
    sn_store_close(st);
}
END_TEST

START_TEST(open_refuses_a_corrupt_file)
{
    ck_assert_int_eq(mkdir(g_dir, 0700), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/state.db", g_dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 512; i++)
        fputs("this is not a database ", f);
    fclose(f);
    sn_store *st = NULL;
    char err[512] = "";
    int rc = sn_store_open(g_dir, NULL, &st, err, sizeof err);
    ck_assert_int_eq(rc, -EIO);
    ck_assert_ptr_null(st);
    ck_assert_ptr_nonnull(strstr(err, "not a database"));
    ck_assert_ptr_nonnull(strstr(err, path));
}
END_TEST

START_TEST(open_refuses_a_newer_schema)
{
    sn_store *st = open_store(NULL);
    sn_store_close(st);
    char path[256];
    snprintf(path, sizeof path, "%s/state.db", g_dir);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "UPDATE schema_version SET version = 99", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    char err[512] = "";
    ck_assert_int_eq(sn_store_open(g_dir, NULL, &st, err, sizeof err), -EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "schema version 99"));
}
END_TEST

START_TEST(open_refuses_bad_places_and_options)
{
    sn_store *st = NULL;
    char err[512] = "";
    /* The data directory is a file. */
    char file[200];
    snprintf(file, sizeof file, "%s/plain", g_root);
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_eq(sn_store_open(file, NULL, &st, err, sizeof err), -ENOTDIR);
    ck_assert_ptr_nonnull(strstr(err, file));
    /* Below a file: cannot be created. */
    char below[240];
    snprintf(below, sizeof below, "%s/x", file);
    ck_assert_int_eq(sn_store_open(below, NULL, &st, err, sizeof err), -ENOTDIR);
    ck_assert_ptr_nonnull(strstr(err, "cannot create"));
    ck_assert_int_eq(sn_store_open("", NULL, &st, err, sizeof err), -EINVAL);
    sn_store_options o;
    sn_store_options_init(&o);
    o.retention_days = 0;
    ck_assert_int_eq(sn_store_open(g_dir, &o, &st, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "retention_days"));
    ck_assert_ptr_null(st);
    /* The state file is a directory: SQLite cannot open it. */
    ck_assert_int_eq(mkdir(g_dir, 0700), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/state.db", g_dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    int rc = sn_store_open(g_dir, NULL, &st, err, sizeof err);
    ck_assert_int_lt(rc, 0);
    ck_assert_ptr_nonnull(strstr(err, path));
}
END_TEST

START_TEST(open_refuses_a_read_only_file)
{
    if (geteuid() == 0)
        return; /* root writes whatever the mode says */
    sn_store *st = open_store(NULL);
    sn_store_close(st);
    char path[256];
    snprintf(path, sizeof path, "%s/state.db", g_dir);
    ck_assert_int_eq(chmod(path, 0400), 0);
    char err[512] = "";
    ck_assert_int_eq(sn_store_open(g_dir, NULL, &st, err, sizeof err), -EACCES);
    ck_assert_ptr_nonnull(strstr(err, "read-only"));
}
END_TEST

/* ---- alerts ---- */

typedef struct collected {
    int n;
    char ids[32][SN_ALERT_ID_LEN + 1];
} collected;

static int collect(const char *json, size_t len, void *ud)
{
    collected *c = ud;
    json_error_t jerr;
    json_t *o = json_loadb(json, len, 0, &jerr);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_lt(c->n, 32);
    snprintf(c->ids[c->n++], SN_ALERT_ID_LEN + 1, "%s",
             json_string_value(json_object_get(o, "alert_id")));
    json_decref(o);
    return 0;
}

START_TEST(alerts_upsert_get_and_persist)
{
    sn_store *st = open_store(NULL);
    sn_alert a = make_alert(7, "chatbot-api", "gpt-4o", SN_SEV_HIGH, SN_ANOMALY_TOKEN_SPIKE,
                            SN_ALERT_FIRING, T0);
    ck_assert_int_eq(sn_store_alert_upsert(st, &a), 0);
    sn_alert b;
    ck_assert_int_eq(sn_store_alert_get(st, a.alert_id, &b), 0);
    ck_assert_str_eq(b.alert_id, a.alert_id);
    ck_assert_str_eq(b.service, "chatbot-api");
    ck_assert_int_eq(b.occurrences, 8);
    ck_assert_int_eq(b.status, SN_ALERT_FIRING);
    ck_assert(isnan(b.deviation_sigma));
    int rc;
    char *text = sn_store_alert_get_json(st, a.alert_id, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(strstr(text, "\"service_name\":\"chatbot-api\""));
    free(text);
    ck_assert_int_eq(sn_store_alert_get(st, "00000000-0000-4000-8000-999999999999", &b), -ENOENT);
    ck_assert_ptr_null(sn_store_alert_get_json(st, "nope", &rc));
    ck_assert_int_eq(rc, -ENOENT);
    ck_assert_ptr_nonnull(strstr(sn_store_errmsg(st), "no such alert"));

    /* Resolved later: the same row changes. */
    a.status = SN_ALERT_RESOLVED;
    a.resolved_at_ns = T0 + 300 * SEC;
    a.occurrences = 20;
    ck_assert_int_eq(sn_store_alert_upsert(st, &a), 0);
    sn_store_close(st);

    st = open_store(NULL);
    ck_assert_int_eq(sn_store_alert_get(st, a.alert_id, &b), 0);
    ck_assert_int_eq(b.status, SN_ALERT_RESOLVED);
    ck_assert_int_eq(b.occurrences, 20);
    ck_assert_int_eq(b.resolved_at_ns, T0 + 300 * SEC);
    sn_store_alert_filter f;
    sn_store_alert_filter_init(&f);
    collected c = {0};
    uint64_t total = 0;
    ck_assert_int_eq(sn_store_alert_query(st, &f, collect, &c, &total), 0);
    ck_assert_int_eq(c.n, 1);
    ck_assert_uint_eq(total, 1);
    sn_store_close(st);
}
END_TEST

static sn_store *store_with_alerts(void)
{
    sn_store *st = open_store(NULL);
    static const char *const svc[] = {"a", "b"};
    static const char *const mdl[] = {"gpt-4o", "claude"};
    ck_assert_int_eq(sn_store_begin(st), 0);
    for (int i = 0; i < 12; i++) {
        sn_alert a = make_alert(i, svc[i % 2], mdl[(i / 2) % 2], (sn_severity)(1 + i % 4),
                                i % 3 == 0 ? SN_ANOMALY_COST_DRIFT : SN_ANOMALY_LATENCY_SPIKE,
                                i < 6 ? SN_ALERT_RESOLVED : SN_ALERT_FIRING, T0 + i * 60 * SEC);
        ck_assert_int_eq(sn_store_alert_upsert(st, &a), 0);
    }
    ck_assert_int_eq(sn_store_commit(st), 0);
    return st;
}

/* The numeric suffix of a test alert id. */
static int idx(const char *id)
{
    return (int)strtol(id + 24, NULL, 10);
}

START_TEST(alert_query_filters)
{
    sn_store *st = store_with_alerts();
    sn_store_alert_filter f;
    collected c;
    uint64_t total;

    sn_store_alert_filter_init(&f);
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(sn_store_alert_query(st, &f, collect, &c, &total), 0);
    ck_assert_int_eq(c.n, 12);
    ck_assert_int_eq(idx(c.ids[0]), 11); /* newest first */
    ck_assert_int_eq(idx(c.ids[11]), 0);

    /* time range [start, end) */
    f.start_ns = T0 + 2 * 60 * SEC;
    f.end_ns = T0 + 5 * 60 * SEC;
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(sn_store_alert_query(st, &f, collect, &c, &total), 0);
    ck_assert_int_eq(c.n, 3);
    ck_assert_int_eq(idx(c.ids[0]), 4);
    ck_assert_int_eq(idx(c.ids[2]), 2);

    /* severity equal, and at least */
    sn_store_alert_filter_init(&f);
    f.severity = SN_SEV_CRITICAL; /* i % 4 == 3: 3, 7, 11 */
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(sn_store_alert_query(st, &f, collect, &c, &total), 0);
    ck_assert_int_eq(c.n, 3);
    f.severity = SN_SEV_HIGH;
    f.severity_min = true; /* 2, 3, 6, 7, 10, 11 */
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(sn_store_alert_query(st, &f, collect, &c, &total), 0);
    ck_assert_int_eq(c.n, 6);

    /* service, model, status, type together */
    sn_store_alert_filter_init(&f);
    f.service = "a"; /* even */
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(sn_store_alert_query(st, &f, collect, &c, &total), 0);
    ck_assert_int_eq(c.n, 6);
    f.model = "gpt-4o"; /* (i/2) even: 0, 1, 4, 5, 8, 9 -> even: 0, 4, 8 */
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(sn_store_alert_query(st, &f, collect, &c, &total), 0);
    ck_assert_int_eq(c.n, 3);
    f.status = SN_ALERT_FIRING; /* 8 */
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(sn_store_alert_query(st, &f, collect, &c, &total), 0);
    ck_assert_int_eq(c.n, 1);
    ck_assert_int_eq(idx(c.ids[0]), 8);
    sn_store_alert_filter_init(&f);
    f.anomaly_type = SN_ANOMALY_COST_DRIFT; /* 0, 3, 6, 9 */
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(sn_store_alert_query(st, &f, collect, &c, &total), 0);
    ck_assert_int_eq(c.n, 4);
    /* A value that looks like SQL is only ever a value. */
    sn_store_alert_filter_init(&f);
    f.service = "a' OR '1'='1";
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(sn_store_alert_query(st, &f, collect, &c, &total), 0);
    ck_assert_int_eq(c.n, 0);

    /* limit and offset, with the total before paging */
    sn_store_alert_filter_init(&f);
    f.limit = 5;
    f.offset = 10;
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(sn_store_alert_query(st, &f, collect, &c, &total), 0);
    ck_assert_int_eq(c.n, 2);
    ck_assert_uint_eq(total, 12);
    ck_assert_int_eq(idx(c.ids[0]), 1);

    /* bad filters */
    f.limit = 10001;
    ck_assert_int_eq(sn_store_alert_query(st, &f, collect, &c, NULL), -EINVAL);
    sn_store_alert_filter_init(&f);
    f.start_ns = T0 + 10;
    f.end_ns = T0;
    ck_assert_int_eq(sn_store_alert_query(st, &f, collect, &c, NULL), -EINVAL);
    sn_store_close(st);
}
END_TEST

static int stop_at_two(const char *json, size_t len, void *ud)
{
    (void)json;
    (void)len;
    int *n = ud;
    return ++*n == 2 ? 42 : 0;
}

static int collect_firing(const sn_alert *a, void *ud)
{
    collected *c = ud;
    snprintf(c->ids[c->n++], SN_ALERT_ID_LEN + 1, "%s", a->alert_id);
    ck_assert_int_eq(a->status, SN_ALERT_FIRING);
    return 0;
}

START_TEST(alert_query_stops_and_firing_are_listed)
{
    sn_store *st = store_with_alerts();
    sn_store_alert_filter f;
    sn_store_alert_filter_init(&f);
    int n = 0;
    ck_assert_int_eq(sn_store_alert_query(st, &f, stop_at_two, &n, NULL), 42);
    ck_assert_int_eq(n, 2);
    collected c = {0};
    size_t skipped = 99;
    ck_assert_int_eq(sn_store_alerts_firing(st, collect_firing, &c, &skipped), 0);
    ck_assert_int_eq(c.n, 6);
    ck_assert_uint_eq(skipped, 0);
    ck_assert_int_eq(idx(c.ids[0]), 6); /* oldest first */
    sn_store_close(st);

    /* A row whose JSON was damaged is skipped and counted, not fatal. */
    char path[256];
    snprintf(path, sizeof path, "%s/state.db", g_dir);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db,
                                  "UPDATE alerts SET json = '{\"broken\":1}' WHERE id = "
                                  "'00000000-0000-4000-8000-000000000007'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    st = open_store(NULL);
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(sn_store_alerts_firing(st, collect_firing, &c, &skipped), 0);
    ck_assert_int_eq(c.n, 5);
    ck_assert_uint_eq(skipped, 1);
    sn_alert b;
    ck_assert_int_eq(sn_store_alert_get(st, "00000000-0000-4000-8000-000000000007", &b), -EIO);
    sn_store_close(st);
}
END_TEST

/* ---- transactions ---- */

START_TEST(transactions_commit_nest_and_roll_back)
{
    sn_store *st = open_store(NULL);
    sn_alert a1 =
        make_alert(1, "s", "m", SN_SEV_LOW, SN_ANOMALY_LATENCY_SPIKE, SN_ALERT_FIRING, T0);
    sn_alert a2 = make_alert(2, "s", "m", SN_SEV_LOW, SN_ANOMALY_TOKEN_SPIKE, SN_ALERT_FIRING, T0);
    ck_assert_int_eq(sn_store_begin(st), 0);
    ck_assert_int_eq(sn_store_alert_upsert(st, &a1), 0);
    ck_assert_int_eq(sn_store_delivery_enqueue(st, "webhook", a1.alert_id, "{}", 2, T0, NULL), 0);
    sn_store_rollback(st);
    sn_alert b;
    ck_assert_int_eq(sn_store_alert_get(st, a1.alert_id, &b), -ENOENT);
    uint64_t pending = 9;
    ck_assert_int_eq(sn_store_delivery_depth(st, "webhook", &pending, NULL, NULL), 0);
    ck_assert_uint_eq(pending, 0);

    ck_assert_int_eq(sn_store_begin(st), 0);
    ck_assert_int_eq(sn_store_begin(st), 0);
    ck_assert_int_eq(sn_store_alert_upsert(st, &a1), 0);
    ck_assert_int_eq(sn_store_commit(st), 0); /* inner: nothing written yet */
    ck_assert_int_eq(sn_store_alert_upsert(st, &a2), 0);
    ck_assert_int_eq(sn_store_commit(st), 0);
    ck_assert_int_eq(sn_store_commit(st), -EINVAL); /* no transaction open */
    sn_store_close(st);
    st = open_store(NULL);
    ck_assert_int_eq(sn_store_alert_get(st, a1.alert_id, &b), 0);
    ck_assert_int_eq(sn_store_alert_get(st, a2.alert_id, &b), 0);
    /* Closing with a transaction open rolls it back. */
    sn_alert a3 = make_alert(3, "s", "m", SN_SEV_LOW, SN_ANOMALY_COST_SPIKE, SN_ALERT_FIRING, T0);
    ck_assert_int_eq(sn_store_begin(st), 0);
    ck_assert_int_eq(sn_store_alert_upsert(st, &a3), 0);
    sn_store_close(st);
    st = open_store(NULL);
    ck_assert_int_eq(sn_store_alert_get(st, a3.alert_id, &b), -ENOENT);
    sn_store_close(st);
}
END_TEST

/* ---- retention ---- */

START_TEST(purge_removes_what_is_older_than_retention)
{
    sn_store_options o;
    sn_store_options_init(&o);
    o.retention_days = 30;
    sn_store *st = open_store(&o);
    int64_t now = T0 + 400 * DAY;
    sn_alert old = make_alert(1, "s", "m", SN_SEV_LOW, SN_ANOMALY_LATENCY_SPIKE, SN_ALERT_RESOLVED,
                              now - 40 * DAY);
    sn_alert recent = make_alert(2, "s", "m", SN_SEV_LOW, SN_ANOMALY_LATENCY_SPIKE,
                                 SN_ALERT_RESOLVED, now - 10 * DAY);
    ck_assert_int_eq(sn_store_alert_upsert(st, &old), 0);
    ck_assert_int_eq(sn_store_alert_upsert(st, &recent), 0);
    int64_t d_old, d_pending, d_recent;
    ck_assert_int_eq(
        sn_store_delivery_enqueue(st, "w", old.alert_id, "x", 1, now - 40 * DAY, &d_old), 0);
    ck_assert_int_eq(
        sn_store_delivery_enqueue(st, "w", old.alert_id, "y", 1, now - 40 * DAY, &d_pending), 0);
    ck_assert_int_eq(
        sn_store_delivery_enqueue(st, "w", recent.alert_id, "z", 1, now - 10 * DAY, &d_recent), 0);
    ck_assert_int_eq(sn_store_delivery_mark_delivered(st, d_old, now - 39 * DAY), 0);
    ck_assert_int_eq(sn_store_delivery_mark_delivered(st, d_recent, now - 9 * DAY), 0);
    ck_assert_int_eq(sn_store_seq_put(st, "old-sidecar", 5, now - 31 * DAY), 0);
    ck_assert_int_eq(sn_store_seq_put(st, "new-sidecar", 5, now - DAY), 0);
    ck_assert_int_eq(sn_store_baseline_put(st, "s|m|latency_ms", "b", 1, now - 300 * DAY), 0);

    sn_store_purged p;
    ck_assert_int_eq(sn_store_purge(st, now, 0, &p), 0);
    ck_assert_uint_eq(p.alerts, 1);
    ck_assert_uint_eq(p.deliveries, 1);
    ck_assert_uint_eq(p.sequences, 1);
    sn_alert b;
    ck_assert_int_eq(sn_store_alert_get(st, old.alert_id, &b), -ENOENT);
    ck_assert_int_eq(sn_store_alert_get(st, recent.alert_id, &b), 0);
    sn_store_delivery d;
    ck_assert_int_eq(sn_store_delivery_get(st, d_old, &d), -ENOENT);
    ck_assert_int_eq(sn_store_delivery_get(st, d_pending, &d), 0); /* pending: never purged */
    sn_store_delivery_clear(&d);
    void *blob;
    size_t len;
    ck_assert_int_eq(sn_store_baseline_get(st, "s|m|latency_ms", &blob, &len, NULL), 0);
    free(blob);
    /* An explicit number of days overrides the option. */
    ck_assert_int_eq(sn_store_purge(st, now, 5, &p), 0);
    ck_assert_uint_eq(p.alerts, 1);
    ck_assert_uint_eq(p.deliveries, 1);
    ck_assert_int_eq(sn_store_purge(st, now, 5, NULL), 0);
    sn_store_close(st);
}
END_TEST

/* ---- baselines ---- */

typedef struct seen_keys {
    int n;
    char keys[8][64];
    size_t lens[8];
} seen_keys;

static int see_baseline(const char *key, const void *blob, size_t len, int64_t ts, void *ud)
{
    seen_keys *s = ud;
    (void)blob;
    ck_assert_int_gt(ts, 0);
    snprintf(s->keys[s->n], sizeof s->keys[s->n], "%s", key);
    s->lens[s->n++] = len;
    return 0;
}

START_TEST(baselines_put_get_delete_foreach)
{
    sn_store *st = open_store(NULL);
    uint8_t blob[1000];
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (uint8_t)(i * 7); /* includes NUL bytes */
    ck_assert_int_eq(sn_store_baseline_put(st, "svc|gpt-4o|latency_ms", blob, sizeof blob, T0), 0);
    ck_assert_int_eq(sn_store_baseline_put(st, "svc|gpt-4o|cost_usd", blob, 10, T0), 0);
    ck_assert_int_eq(sn_store_baseline_put(st, "svd|x|latency_ms", NULL, 0, T0), 0);
    ck_assert_int_eq(sn_store_baseline_put(st, "", blob, 1, T0), -EINVAL);
    void *out;
    size_t len;
    int64_t ts;
    ck_assert_int_eq(sn_store_baseline_get(st, "svc|gpt-4o|latency_ms", &out, &len, &ts), 0);
    ck_assert_uint_eq(len, sizeof blob);
    ck_assert_mem_eq(out, blob, sizeof blob);
    ck_assert_int_eq(ts, T0);
    free(out);
    /* Overwrite. */
    ck_assert_int_eq(sn_store_baseline_put(st, "svc|gpt-4o|latency_ms", "abc", 3, T0 + SEC), 0);
    ck_assert_int_eq(sn_store_baseline_get(st, "svc|gpt-4o|latency_ms", &out, &len, &ts), 0);
    ck_assert_uint_eq(len, 3);
    ck_assert_mem_eq(out, "abc", 3);
    ck_assert_int_eq(ts, T0 + SEC);
    free(out);
    ck_assert_int_eq(sn_store_baseline_get(st, "svd|x|latency_ms", &out, &len, NULL), 0);
    ck_assert_ptr_null(out);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(sn_store_baseline_get(st, "nope", &out, &len, NULL), -ENOENT);

    seen_keys s = {0};
    ck_assert_int_eq(sn_store_baseline_foreach(st, "svc|", see_baseline, &s), 0);
    ck_assert_int_eq(s.n, 2);
    ck_assert_str_eq(s.keys[0], "svc|gpt-4o|cost_usd"); /* key order */
    ck_assert_uint_eq(s.lens[0], 10);
    ck_assert_str_eq(s.keys[1], "svc|gpt-4o|latency_ms");
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(sn_store_baseline_foreach(st, NULL, see_baseline, &s), 0);
    ck_assert_int_eq(s.n, 3);
    /* '%' and '_' in a prefix are plain characters. */
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(sn_store_baseline_foreach(st, "sv_", see_baseline, &s), 0);
    ck_assert_int_eq(s.n, 0);

    ck_assert_int_eq(sn_store_baseline_delete(st, "svc|gpt-4o|cost_usd"), 0);
    ck_assert_int_eq(sn_store_baseline_delete(st, "svc|gpt-4o|cost_usd"), 0);
    sn_store_close(st);
    st = open_store(NULL);
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(sn_store_baseline_foreach(st, "", see_baseline, &s), 0);
    ck_assert_int_eq(s.n, 2);
    sn_store_close(st);
}
END_TEST

/* ---- configuration ---- */

typedef struct seen_configs {
    int n;
    int64_t ts[8];
    char src[8][16];
} seen_configs;

static int see_config(int64_t ts, const char *source, const char *json, void *ud)
{
    seen_configs *s = ud;
    ck_assert_ptr_nonnull(strstr(json, "\"v\""));
    s->ts[s->n] = ts;
    snprintf(s->src[s->n++], 16, "%s", source);
    return 0;
}

START_TEST(config_history_appends_trims_and_reads)
{
    sn_store_options o;
    sn_store_options_init(&o);
    o.max_config_history = 3;
    sn_store *st = open_store(&o);
    char *json;
    ck_assert_int_eq(sn_store_config_latest(st, &json, NULL, NULL, 0), -ENOENT);
    ck_assert_ptr_null(json);
    const char *src[] = {"file", "api", "api", "env", "api"};
    for (int i = 0; i < 5; i++) {
        char j[32];
        snprintf(j, sizeof j, "{\"v\":%d}", i);
        ck_assert_int_eq(sn_store_config_append(st, T0 + i * SEC, src[i], j), 0);
    }
    int64_t ts;
    char source[8];
    ck_assert_int_eq(sn_store_config_latest(st, &json, &ts, source, sizeof source), 0);
    ck_assert_str_eq(json, "{\"v\":4}");
    ck_assert_int_eq(ts, T0 + 4 * SEC);
    ck_assert_str_eq(source, "api");
    free(json);
    seen_configs s = {0};
    ck_assert_int_eq(sn_store_config_history(st, 0, see_config, &s), 0);
    ck_assert_int_eq(s.n, 3); /* trimmed to the newest 3 */
    ck_assert_int_eq(s.ts[0], T0 + 4 * SEC);
    ck_assert_int_eq(s.ts[2], T0 + 2 * SEC);
    ck_assert_str_eq(s.src[1], "env");
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(sn_store_config_history(st, 2, see_config, &s), 0);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(sn_store_config_append(st, T0, NULL, "{}"), -EINVAL);
    sn_store_close(st);
    st = open_store(&o);
    ck_assert_int_eq(sn_store_config_latest(st, &json, NULL, NULL, 0), 0);
    ck_assert_str_eq(json, "{\"v\":4}");
    free(json);
    sn_store_close(st);
}
END_TEST

/* ---- budget spend ---- */

typedef struct seen_budgets {
    int n;
    char who[4][64];
    double spent[4];
    int64_t period[4];
    bool soft[4], hard[4], per_user[4];
} seen_budgets;

static int see_budget(const sn_store_budget *b, void *ud)
{
    seen_budgets *s = ud;
    ck_assert_int_lt(s->n, 4);
    snprintf(s->who[s->n], sizeof s->who[0], "%s|%s|%s|%s", b->rule_service, b->period, b->service,
             b->user);
    s->spent[s->n] = b->spent;
    s->period[s->n] = b->period_index;
    s->soft[s->n] = b->soft_fired;
    s->hard[s->n] = b->hard_fired;
    s->per_user[s->n] = b->per_user;
    s->n++;
    return 0;
}

START_TEST(budget_spend_put_read_purge)
{
    sn_store *st = open_store(NULL);
    sn_store_budget b = {.rule_service = "*",
                         .period = "day",
                         .service = "chat",
                         .user = "",
                         .period_index = 20000,
                         .spent = 1.25,
                         .updated_ns = T0};
    ck_assert_int_eq(sn_store_budget_put(st, &b), 0);
    b.spent = 2.5; /* the same row replaced */
    b.soft_fired = true;
    ck_assert_int_eq(sn_store_budget_put(st, &b), 0);
    sn_store_budget u = {.rule_service = "chat",
                         .period = "hour",
                         .per_user = true,
                         .service = "chat",
                         .user = "alice",
                         .period_index = 7,
                         .spent = 0.5,
                         .hard_fired = true,
                         .updated_ns = T0 - 40 * 86400 * SEC};
    ck_assert_int_eq(sn_store_budget_put(st, &u), 0);
    u.spent = NAN;
    ck_assert_int_eq(sn_store_budget_put(st, &u), -EINVAL);
    u.spent = 0.5;
    u.user = NULL;
    ck_assert_int_eq(sn_store_budget_put(st, &u), -EINVAL);
    sn_store_close(st);

    st = open_store(NULL); /* it survives a reopen */
    seen_budgets s = {0};
    ck_assert_int_eq(sn_store_budget_foreach(st, see_budget, &s), 0);
    ck_assert_int_eq(s.n, 2);
    int d = strcmp(s.who[0], "*|day|chat|") == 0 ? 0 : 1;
    ck_assert_str_eq(s.who[d], "*|day|chat|");
    ck_assert_double_eq(s.spent[d], 2.5);
    ck_assert_int_eq(s.period[d], 20000);
    ck_assert(s.soft[d] && !s.hard[d] && !s.per_user[d]);
    ck_assert_str_eq(s.who[1 - d], "chat|hour|chat|alice");
    ck_assert(s.hard[1 - d] && s.per_user[1 - d]);
    uint64_t removed = 0;
    ck_assert_int_eq(sn_store_budget_purge(st, T0 - 32 * 86400 * SEC, &removed), 0);
    ck_assert_uint_eq(removed, 1);
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(sn_store_budget_foreach(st, see_budget, &s), 0);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.who[0], "*|day|chat|");
    sn_store_close(st);
}
END_TEST

/* ---- sequences ---- */

typedef struct seen_seqs {
    int n;
    char ids[8][32];
    uint64_t seq[8];
    int64_t last[8];
} seen_seqs;

static int see_seq(const char *id, uint64_t seq, int64_t last, void *ud)
{
    seen_seqs *s = ud;
    snprintf(s->ids[s->n], 32, "%s", id);
    s->seq[s->n] = seq;
    s->last[s->n++] = last;
    return 0;
}

START_TEST(sequences_never_go_down_and_load_oldest_first)
{
    sn_store *st = open_store(NULL);
    ck_assert_int_eq(sn_store_seq_put(st, "pod-b", 10, T0 + 2 * SEC), 0);
    ck_assert_int_eq(sn_store_seq_put_cb("pod-a", 7, T0 + SEC, st), 0);
    ck_assert_int_eq(sn_store_seq_put(st, "pod-b", 4, T0 + 3 * SEC), 0); /* lower: kept 10 */
    ck_assert_int_eq(sn_store_seq_put(st, "pod-c", (uint64_t)INT64_MAX, T0), 0);
    ck_assert_int_eq(sn_store_seq_put(st, "pod-d", (uint64_t)INT64_MAX + 1, T0), -EINVAL);
    ck_assert_int_eq(sn_store_seq_put(st, "", 1, T0), -EINVAL);
    sn_store_close(st);
    st = open_store(NULL);
    seen_seqs s = {0};
    ck_assert_int_eq(sn_store_seq_load_all(st, see_seq, &s), 0);
    ck_assert_int_eq(s.n, 3);
    ck_assert_str_eq(s.ids[0], "pod-c");
    ck_assert_uint_eq(s.seq[0], (uint64_t)INT64_MAX);
    ck_assert_str_eq(s.ids[1], "pod-a");
    ck_assert_uint_eq(s.seq[1], 7);
    ck_assert_str_eq(s.ids[2], "pod-b");
    ck_assert_uint_eq(s.seq[2], 10);
    ck_assert_int_eq(s.last[2], T0 + 3 * SEC);
    sn_store_close(st);
}
END_TEST

START_TEST(local_alert_ids_are_applied_once_survive_and_expire)
{
    static const char id1[] = "5c0ffee0-0000-4000-8000-000000000001";
    static const char id2[] = "5c0ffee0-0000-4000-8000-000000000002";
    sn_store *st = open_store(NULL);
    ck_assert_int_eq(sn_store_local_alert_seen(st, id1), 0);
    ck_assert_int_eq(sn_store_local_alert_claim(st, id1, T0), 1);
    ck_assert_int_eq(sn_store_local_alert_claim(st, id1, T0 + SEC), 0); /* the other copy */
    ck_assert_int_eq(sn_store_local_alert_seen(st, id1), 1);
    ck_assert_int_eq(sn_store_local_alert_seen(st, id2), 0);
    ck_assert_int_eq(sn_store_local_alert_claim(st, id2, T0 + 6 * DAY), 1);
    ck_assert_int_eq(sn_store_local_alert_seen(st, ""), -EINVAL);
    ck_assert_int_eq(sn_store_local_alert_claim(st, NULL, T0), -EINVAL);
    sn_store_close(st);
    /* Kept across a restart; purged after SN_STORE_LAID_DAYS whatever the retention. */
    st = open_store(NULL);
    ck_assert_int_eq(sn_store_local_alert_seen(st, id1), 1);
    sn_store_purged p;
    ck_assert_int_eq(sn_store_purge(st, T0 + 8 * DAY, 0, &p), 0);
    ck_assert_uint_eq(p.local_alert_ids, 1);
    ck_assert_int_eq(sn_store_local_alert_seen(st, id1), 0);
    ck_assert_int_eq(sn_store_local_alert_seen(st, id2), 1);
    sn_store_close(st);
}
END_TEST

/* ---- delivery queue ---- */

START_TEST(delivery_queue_state_machine)
{
    sn_store *st = open_store(NULL);
    int64_t id1, id2;
    const char *body = "{\"alert_id\":\"x\"}";
    ck_assert_int_eq(
        sn_store_delivery_enqueue(st, "webhook", "alert-1", body, strlen(body), T0, &id1), 0);
    ck_assert_int_eq(sn_store_delivery_enqueue(st, "webhook", "alert-2", "b2", 2, T0 + SEC, &id2),
                     0);
    ck_assert_int_eq(sn_store_delivery_enqueue(st, "amqp", "alert-1", "a1", 2, T0, NULL), 0);
    ck_assert_int_gt(id2, id1);

    sn_store_delivery d;
    ck_assert_int_eq(sn_store_delivery_next_due(st, "webhook", T0 - 1, &d), -ENOENT);
    ck_assert_int_eq(sn_store_delivery_next_due(st, "webhook", T0, &d), 0);
    ck_assert_int_eq(d.id, id1);
    ck_assert_str_eq(d.sink, "webhook");
    ck_assert_str_eq(d.alert_id, "alert-1");
    ck_assert_str_eq(d.payload, body);
    ck_assert_uint_eq(d.payload_len, strlen(body));
    ck_assert_uint_eq(d.attempts, 0);
    ck_assert_int_eq(d.state, SN_DELIVERY_PENDING);
    ck_assert_int_eq(d.created_ns, T0);
    sn_store_delivery_clear(&d);
    ck_assert_ptr_null(d.payload);

    /* Failure: retried later, the other one becomes first. */
    bool dead = true;
    ck_assert_int_eq(
        sn_store_delivery_mark_failed(st, id1, T0 + SEC, T0 + 10 * SEC, "HTTP 503", &dead), 0);
    ck_assert(!dead);
    int64_t when;
    ck_assert_int_eq(sn_store_delivery_next_time(st, "webhook", &when), 0);
    ck_assert_int_eq(when, T0 + SEC);
    ck_assert_int_eq(sn_store_delivery_next_due(st, "webhook", T0 + 5 * SEC, &d), 0);
    ck_assert_int_eq(d.id, id2);
    sn_store_delivery_clear(&d);
    ck_assert_int_eq(sn_store_delivery_mark_delivered(st, id2, T0 + 5 * SEC), 0);
    ck_assert_int_eq(sn_store_delivery_mark_delivered(st, id2, T0 + 5 * SEC), -ENOENT);
    ck_assert_int_eq(sn_store_delivery_mark_failed(st, id2, T0, T0, "x", NULL), -ENOENT);
    ck_assert_int_eq(sn_store_delivery_next_due(st, "webhook", T0 + 9 * SEC, &d), -ENOENT);
    ck_assert_int_eq(sn_store_delivery_next_due(st, "webhook", T0 + 10 * SEC, &d), 0);
    ck_assert_int_eq(d.id, id1);
    ck_assert_uint_eq(d.attempts, 1);
    ck_assert_str_eq(d.reason, "HTTP 503");
    ck_assert_int_eq(d.next_attempt_ns, T0 + 10 * SEC);
    sn_store_delivery_clear(&d);

    /* Dead letter: out of the queue for good, reason kept. */
    ck_assert_int_eq(sn_store_delivery_dead_letter(st, id1, T0 + 11 * SEC, "HTTP 400"), 0);
    ck_assert_int_eq(sn_store_delivery_dead_letter(st, id1, T0 + 11 * SEC, "again"), -ENOENT);
    ck_assert_int_eq(sn_store_delivery_next_due(st, "webhook", T0 + 100 * SEC, &d), -ENOENT);
    ck_assert_int_eq(sn_store_delivery_next_time(st, "webhook", &when), -ENOENT);
    ck_assert_int_eq(sn_store_delivery_get(st, id1, &d), 0);
    ck_assert_int_eq(d.state, SN_DELIVERY_DEAD);
    ck_assert_str_eq(d.reason, "HTTP 400");
    sn_store_delivery_clear(&d);
    ck_assert_int_eq(sn_store_delivery_get(st, id2, &d), 0);
    ck_assert_int_eq(d.state, SN_DELIVERY_DELIVERED);
    sn_store_delivery_clear(&d);

    uint64_t pending, dl, delivered;
    ck_assert_int_eq(sn_store_delivery_depth(st, "webhook", &pending, &dl, &delivered), 0);
    ck_assert_uint_eq(pending, 0);
    ck_assert_uint_eq(dl, 1);
    ck_assert_uint_eq(delivered, 1);
    ck_assert_int_eq(sn_store_delivery_depth(st, "amqp", &pending, &dl, &delivered), 0);
    ck_assert_uint_eq(pending, 1);
    ck_assert_uint_eq(dl + delivered, 0);

    /* Bad arguments. */
    ck_assert_int_eq(sn_store_delivery_enqueue(st, "", "a", "p", 1, T0, NULL), -EINVAL);
    ck_assert_int_eq(sn_store_delivery_enqueue(st, "w", "a", "p", 0, T0, NULL), -EINVAL);
    char longsink[80];
    memset(longsink, 's', sizeof longsink - 1);
    longsink[sizeof longsink - 1] = '\0';
    ck_assert_int_eq(sn_store_delivery_enqueue(st, longsink, "a", "p", 1, T0, NULL), -EINVAL);
    sn_store_close(st);
}
END_TEST

START_TEST(delivery_survives_a_restart)
{
    sn_store *st = open_store(NULL);
    int64_t id;
    ck_assert_int_eq(sn_store_delivery_enqueue(st, "alertmanager", "a", "payload", 7, T0, &id), 0);
    ck_assert_int_eq(sn_store_delivery_mark_failed(st, id, T0, T0 + SEC, "refused", NULL), 0);
    /* No close: a crash. The WAL holds the commits. */
    sn_store *st2 = NULL;
    char err[512];
    ck_assert_int_eq(sn_store_open(g_dir, NULL, &st2, err, sizeof err), 0);
    sn_store_delivery d;
    ck_assert_int_eq(sn_store_delivery_next_due(st2, "alertmanager", T0 + SEC, &d), 0);
    ck_assert_int_eq(d.id, id);
    ck_assert_uint_eq(d.attempts, 1);
    ck_assert_str_eq(d.payload, "payload");
    sn_store_delivery_clear(&d);
    sn_store_close(st2);
    sn_store_close(st);
}
END_TEST

START_TEST(delivery_dead_letters_after_max_attempts)
{
    sn_store_options o;
    sn_store_options_init(&o);
    o.max_attempts = 3;
    sn_store *st = open_store(&o);
    int64_t id;
    ck_assert_int_eq(sn_store_delivery_enqueue(st, "w", "a", "p", 1, T0, &id), 0);
    bool dead = true;
    for (int i = 1; i <= 2; i++) {
        ck_assert_int_eq(sn_store_delivery_mark_failed(st, id, T0, T0 + i * SEC, "e", &dead), 0);
        ck_assert(!dead);
    }
    ck_assert_int_eq(sn_store_delivery_mark_failed(st, id, T0, T0 + 3 * SEC, "final", &dead), 0);
    ck_assert(dead);
    sn_store_delivery d;
    ck_assert_int_eq(sn_store_delivery_get(st, id, &d), 0);
    ck_assert_int_eq(d.state, SN_DELIVERY_DEAD);
    ck_assert_uint_eq(d.attempts, 3);
    ck_assert_str_eq(d.reason, "final");
    sn_store_delivery_clear(&d);
    sn_store_close(st);
}
END_TEST

START_TEST(delivery_queue_is_bounded_per_sink)
{
    sn_store_options o;
    sn_store_options_init(&o);
    o.max_queue_per_sink = 2;
    sn_store *st = open_store(&o);
    int64_t id;
    ck_assert_int_eq(sn_store_delivery_enqueue(st, "w", "a", "p", 1, T0, &id), 0);
    ck_assert_int_eq(sn_store_delivery_enqueue(st, "w", "b", "p", 1, T0, NULL), 0);
    ck_assert_int_eq(sn_store_delivery_enqueue(st, "w", "c", "p", 1, T0, NULL), -ENOSPC);
    ck_assert_ptr_nonnull(strstr(sn_store_errmsg(st), "full"));
    ck_assert_int_eq(sn_store_delivery_enqueue(st, "other", "c", "p", 1, T0, NULL), 0);
    /* Delivered ones no longer count. */
    ck_assert_int_eq(sn_store_delivery_mark_delivered(st, id, T0), 0);
    ck_assert_int_eq(sn_store_delivery_enqueue(st, "w", "c", "p", 1, T0, NULL), 0);
    uint64_t pending;
    ck_assert_int_eq(sn_store_delivery_depth(st, "w", &pending, NULL, NULL), 0);
    ck_assert_uint_eq(pending, 2);
    sn_store_close(st);
}
END_TEST

/* The lifecycle and the store together: alerts raised, stored and restored after a restart. */
static sn_store *g_cb_store;

static void persist(sn_alert_change c, const sn_alert *a, void *ud)
{
    (void)c;
    (void)ud;
    ck_assert_int_eq(sn_store_alert_upsert(g_cb_store, a), 0);
}

static int restore_into(const sn_alert *a, void *ud)
{
    return sn_alerts_restore(ud, a);
}

START_TEST(alerts_restored_after_restart_keep_deduplicating)
{
    sn_store *st = open_store(NULL);
    g_cb_store = st;
    sn_alerts_config cfg;
    sn_alerts_config_init(&cfg);
    cfg.on_change = persist;
    sn_alerts *m = NULL;
    char err[128];
    ck_assert_int_eq(sn_alerts_create(&cfg, &m, err, sizeof err), 0);
    sn_anomaly an;
    memset(&an, 0, sizeof an);
    an.severity = SN_SEV_HIGH;
    an.anomaly_type = SN_ANOMALY_ERROR_RATE;
    snprintf(an.service, sizeof an.service, "svc");
    snprintf(an.model, sizeof an.model, "m");
    an.metric = SN_METRIC_ERROR_RATE;
    an.confidence = 0.8;
    an.deviation_sigma = NAN;
    snprintf(an.error_type, sizeof an.error_type, "429");
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
    sn_alerts_destroy(m);
    sn_store_close(st);

    st = open_store(NULL);
    g_cb_store = st;
    ck_assert_int_eq(sn_alerts_create(&cfg, &m, err, sizeof err), 0);
    size_t skipped;
    ck_assert_int_eq(sn_store_alerts_firing(st, restore_into, m, &skipped), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + 60 * SEC), 0);
    sn_alerts_stats s;
    sn_alerts_stats_get(m, &s);
    ck_assert_uint_eq(s.fired, 0);
    ck_assert_uint_eq(s.updates, 1);
    sn_store_alert_filter f;
    sn_store_alert_filter_init(&f);
    collected c = {0};
    ck_assert_int_eq(sn_store_alert_query(st, &f, collect, &c, NULL), 0);
    ck_assert_int_eq(c.n, 1);
    sn_alert b;
    ck_assert_int_eq(sn_store_alert_get(st, c.ids[0], &b), 0);
    ck_assert_int_eq(b.occurrences, 2);
    ck_assert_str_eq(b.root_cause, "provider rate limiting");
    sn_alerts_destroy(m);
    sn_store_close(st);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, open_creates_a_wal_database);
    tcase_add_test(tc, local_alert_ids_are_applied_once_survive_and_expire);
    tcase_add_test(tc, open_migrates_an_empty_database);
    tcase_add_test(tc, open_refuses_a_corrupt_file);
    tcase_add_test(tc, open_refuses_a_newer_schema);
    tcase_add_test(tc, open_refuses_bad_places_and_options);
    tcase_add_test(tc, open_refuses_a_read_only_file);
    tcase_add_test(tc, alerts_upsert_get_and_persist);
    tcase_add_test(tc, alert_query_filters);
    tcase_add_test(tc, alert_query_stops_and_firing_are_listed);
    tcase_add_test(tc, transactions_commit_nest_and_roll_back);
    tcase_add_test(tc, purge_removes_what_is_older_than_retention);
    tcase_add_test(tc, baselines_put_get_delete_foreach);
    tcase_add_test(tc, config_history_appends_trims_and_reads);
    tcase_add_test(tc, budget_spend_put_read_purge);
    tcase_add_test(tc, sequences_never_go_down_and_load_oldest_first);
    tcase_add_test(tc, delivery_queue_state_machine);
    tcase_add_test(tc, delivery_survives_a_restart);
    tcase_add_test(tc, delivery_dead_letters_after_max_attempts);
    tcase_add_test(tc, delivery_queue_is_bounded_per_sink);
    tcase_add_test(tc, alerts_restored_after_restart_keep_deduplicating);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    snprintf(g_base, sizeof g_base, "/tmp/sn-store-XXXXXX");
    if (mkdtemp(g_base) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    SRunner *sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    nftw(g_base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failed == 0 ? 0 : 1;
}
