/*
 * store.c -- the embedded state store on SQLite (see store.h; schema in docs/aggregator.md).
 *
 * Schema versions: the table schema_version holds one row. At open, every migration above the
 * stored version runs in its own IMMEDIATE transaction together with the version bump, so a
 * crash mid-migration leaves the previous version intact. A database newer than this program
 * is refused rather than guessed at.
 *
 * Statements are prepared once at open (the alert query, whose WHERE clause depends on which
 * filters are set, is prepared per call from fixed fragments); every value is bound.
 */
#include "store.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- schema ---- */

static const char *const g_migrations[SN_STORE_SCHEMA_VERSION] = {
    /* 1: the first schema */
    "CREATE TABLE alerts ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  json TEXT NOT NULL,"
    "  service TEXT NOT NULL,"
    "  model TEXT NOT NULL,"
    "  severity INTEGER NOT NULL," /* 1 low .. 4 critical */
    "  anomaly_type TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),"
    "  timestamp INTEGER NOT NULL," /* first seen, ns since the epoch */
    "  last_seen INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX alerts_by_time ON alerts (timestamp);"
    "CREATE INDEX alerts_by_service ON alerts (service, timestamp);"
    "CREATE INDEX alerts_by_status ON alerts (status, timestamp);"
    "CREATE INDEX alerts_by_severity ON alerts (severity, timestamp);"
    "CREATE INDEX alerts_by_last_seen ON alerts (last_seen);"
    "CREATE TABLE baselines ("
    "  key TEXT PRIMARY KEY NOT NULL,"
    "  value BLOB NOT NULL,"
    "  updated_at INTEGER NOT NULL"
    ");"
    "CREATE TABLE config_history ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  timestamp INTEGER NOT NULL,"
    "  source TEXT NOT NULL,"
    "  json TEXT NOT NULL"
    ");"
    "CREATE TABLE ingest_sequences ("
    "  sidecar_id TEXT PRIMARY KEY NOT NULL,"
    "  sequence INTEGER NOT NULL,"
    "  last_seen INTEGER NOT NULL"
    ");"
    "CREATE TABLE deliveries ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  sink TEXT NOT NULL,"
    "  alert_id TEXT NOT NULL,"
    "  payload BLOB NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt_at INTEGER NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),"
    "  reason TEXT,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL"
    ");"
    "CREATE INDEX deliveries_due ON deliveries (sink, state, next_attempt_at);"
    "CREATE INDEX deliveries_by_update ON deliveries (state, updated_at);",
    /* 2: the engine's budget spend, one row per (rule, service, user) */
    "CREATE TABLE budget_spend ("
    "  rule_service TEXT NOT NULL," /* the rule's service, '*' for each service */
    "  period TEXT NOT NULL,"       /* minute, hour, day, month */
    "  per_user INTEGER NOT NULL,"
    "  service TEXT NOT NULL,"
    "  user TEXT NOT NULL,"
    "  period_index INTEGER NOT NULL,"
    "  spent REAL NOT NULL,"
    "  soft_fired INTEGER NOT NULL,"
    "  hard_fired INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY (rule_service, period, per_user, service, user)"
    ") WITHOUT ROWID;",
    /* 3: sidecar local alerts applied, by the sidecar's alert_id: a local alert arrives twice
     * (ahead of its batch, sequence 0, and in the batch) and is applied once */
    "CREATE TABLE local_alert_ids ("
    "  alert_id TEXT PRIMARY KEY NOT NULL,"
    "  seen_at INTEGER NOT NULL" /* ns since the epoch */
    ") WITHOUT ROWID;"
    "CREATE INDEX local_alert_ids_by_time ON local_alert_ids (seen_at);",
};

/* ---- prepared statements ---- */

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_ALERT_UPSERT,
    S_ALERT_GET,
    S_ALERTS_FIRING,
    S_PURGE_ALERTS,
    S_PURGE_DELIVERIES,
    S_PURGE_SEQUENCES,
    S_BASE_PUT,
    S_BASE_GET,
    S_BASE_DELETE,
    S_BASE_PREFIX,
    S_CFG_APPEND,
    S_CFG_TRIM,
    S_CFG_LATEST,
    S_CFG_HISTORY,
    S_SEQ_PUT,
    S_SEQ_ALL,
    S_DLV_PENDING,
    S_DLV_INSERT,
    S_DLV_NEXT,
    S_DLV_NEXT_TIME,
    S_DLV_GET,
    S_DLV_DELIVERED,
    S_DLV_FAILED,
    S_DLV_DEAD,
    S_DLV_DEPTH,
    S_BUDGET_PUT,
    S_BUDGET_ALL,
    S_BUDGET_PURGE,
    S_LAID_SEEN,
    S_LAID_CLAIM,
    S_PURGE_LAIDS,
    S_COUNT
};

#define DLV_COLS "id, sink, alert_id, payload, attempts, next_attempt_at, created_at, state, reason"

static const char *const g_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_ALERT_UPSERT] =
        "INSERT INTO alerts (id, json, service, model, severity, anomaly_type, status, "
        "timestamp, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
        "ON CONFLICT (id) DO UPDATE SET json = excluded.json, service = excluded.service, "
        "model = excluded.model, severity = excluded.severity, "
        "anomaly_type = excluded.anomaly_type, status = excluded.status, "
        "timestamp = excluded.timestamp, last_seen = excluded.last_seen",
    [S_ALERT_GET] = "SELECT json FROM alerts WHERE id = ?1",
    [S_ALERTS_FIRING] = "SELECT json FROM alerts WHERE status = 'firing' ORDER BY timestamp, id",
    [S_PURGE_ALERTS] = "DELETE FROM alerts WHERE last_seen < ?1",
    [S_PURGE_DELIVERIES] =
        "DELETE FROM deliveries WHERE state IN ('delivered', 'dead') AND updated_at < ?1",
    [S_PURGE_SEQUENCES] = "DELETE FROM ingest_sequences WHERE last_seen < ?1",
    [S_BASE_PUT] = "INSERT INTO baselines (key, value, updated_at) VALUES (?1, ?2, ?3) "
                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                   "updated_at = excluded.updated_at",
    [S_BASE_GET] = "SELECT value, updated_at FROM baselines WHERE key = ?1",
    [S_BASE_DELETE] = "DELETE FROM baselines WHERE key = ?1",
    [S_BASE_PREFIX] = "SELECT key, value, updated_at FROM baselines "
                      "WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
    [S_CFG_APPEND] = "INSERT INTO config_history (timestamp, source, json) VALUES (?1, ?2, ?3)",
    [S_CFG_TRIM] = "DELETE FROM config_history WHERE id <= (SELECT id FROM config_history "
                   "ORDER BY id DESC LIMIT 1 OFFSET ?1)",
    [S_CFG_LATEST] = "SELECT timestamp, source, json FROM config_history ORDER BY id DESC LIMIT 1",
    [S_CFG_HISTORY] =
        "SELECT timestamp, source, json FROM config_history ORDER BY id DESC LIMIT ?1",
    [S_SEQ_PUT] = "INSERT INTO ingest_sequences (sidecar_id, sequence, last_seen) "
                  "VALUES (?1, ?2, ?3) ON CONFLICT (sidecar_id) DO UPDATE SET "
                  "sequence = max(sequence, excluded.sequence), "
                  "last_seen = max(last_seen, excluded.last_seen)",
    [S_SEQ_ALL] = "SELECT sidecar_id, sequence, last_seen FROM ingest_sequences "
                  "ORDER BY last_seen, sidecar_id",
    [S_DLV_PENDING] = "SELECT count(*) FROM deliveries WHERE sink = ?1 AND state = 'pending'",
    [S_DLV_INSERT] = "INSERT INTO deliveries (sink, alert_id, payload, attempts, "
                     "next_attempt_at, state, reason, created_at, updated_at) "
                     "VALUES (?1, ?2, ?3, 0, ?4, 'pending', NULL, ?4, ?4)",
    [S_DLV_NEXT] = "SELECT " DLV_COLS " FROM deliveries WHERE sink = ?1 AND state = 'pending' "
                   "AND next_attempt_at <= ?2 ORDER BY next_attempt_at, id LIMIT 1",
    [S_DLV_NEXT_TIME] = "SELECT min(next_attempt_at) FROM deliveries "
                        "WHERE sink = ?1 AND state = 'pending'",
    [S_DLV_GET] = "SELECT " DLV_COLS " FROM deliveries WHERE id = ?1",
    [S_DLV_DELIVERED] = "UPDATE deliveries SET state = 'delivered', updated_at = ?2 "
                        "WHERE id = ?1 AND state = 'pending'",
    [S_DLV_FAILED] = "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?2, "
                     "reason = ?3, updated_at = ?4, state = CASE WHEN ?5 > 0 AND "
                     "attempts + 1 >= ?5 THEN 'dead' ELSE 'pending' END "
                     "WHERE id = ?1 AND state = 'pending' RETURNING state",
    [S_DLV_DEAD] = "UPDATE deliveries SET state = 'dead', reason = ?2, updated_at = ?3 "
                   "WHERE id = ?1 AND state = 'pending'",
    [S_DLV_DEPTH] = "SELECT state, count(*) FROM deliveries WHERE sink = ?1 GROUP BY state",
    [S_BUDGET_PUT] = "INSERT INTO budget_spend (rule_service, period, per_user, service, user, "
                     "period_index, spent, soft_fired, hard_fired, updated_at) VALUES "
                     "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (rule_service, "
                     "period, per_user, service, user) DO UPDATE SET period_index = "
                     "excluded.period_index, spent = excluded.spent, soft_fired = "
                     "excluded.soft_fired, hard_fired = excluded.hard_fired, updated_at = "
                     "excluded.updated_at",
    [S_BUDGET_ALL] = "SELECT rule_service, period, per_user, service, user, period_index, spent, "
                     "soft_fired, hard_fired, updated_at FROM budget_spend",
    [S_BUDGET_PURGE] = "DELETE FROM budget_spend WHERE updated_at < ?1",
    [S_LAID_SEEN] = "SELECT 1 FROM local_alert_ids WHERE alert_id = ?1",
    [S_LAID_CLAIM] = "INSERT INTO local_alert_ids (alert_id, seen_at) VALUES (?1, ?2) "
                     "ON CONFLICT (alert_id) DO NOTHING",
    [S_PURGE_LAIDS] = "DELETE FROM local_alert_ids WHERE seen_at < ?1",
};

struct sn_store {
    sqlite3 *db;
    sqlite3_stmt *stmt[S_COUNT];
    sn_store_options opt;
    unsigned depth; /* sn_store_begin nesting */
    bool readonly;  /* sn_store_open_readonly: no checkpoint at close */
    char err[256];
};

/* ---- errors ---- */

/* The negative errno for an SQLite result code. */
static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CANTOPEN:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
        return -EINVAL;
    default:
        return -EIO;
    }
}

/* Records "store: what: sqlite's message" and returns the mapped errno. */
static int fail_db(sn_store *st, int rc, const char *what)
{
    snprintf(st->err, sizeof st->err, "store: %s: %s", what, sqlite3_errmsg(st->db));
    int e = map_rc(rc);
    return e != 0 ? e : -EIO;
}

/* Records a message and returns e. */
static int fail(sn_store *st, int e, const char *msg)
{
    snprintf(st->err, sizeof st->err, "store: %s", msg);
    return e;
}

const char *sn_store_errmsg(const sn_store *st)
{
    return st->err;
}

/* Resets a statement after use (drops its bindings so borrowed buffers are not kept). */
static void done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Steps a statement that returns no rows (or whose rows are ignored) and resets it. */
static int run(sn_store *st, int which, const char *what)
{
    sqlite3_stmt *s = st->stmt[which];
    int rc = sqlite3_step(s);
    int e = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : fail_db(st, rc, what);
    done(s);
    return e;
}

/* Binds a NUL-terminated string as TEXT (SQLite copies it). */
static int bind_text(sqlite3_stmt *s, int i, const char *v)
{
    return sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
}

/* Copies column i (TEXT) into a fixed buffer, cut to fit. */
static void col_text(sqlite3_stmt *s, int i, char *dst, size_t dstsize)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(dst, dstsize, "%s", t != NULL ? (const char *)t : "");
}

/* ---- open / close ---- */

void sn_store_options_init(sn_store_options *o)
{
    memset(o, 0, sizeof *o);
    o->retention_days = SN_STORE_DEFAULT_RETENTION;
    o->max_queue_per_sink = SN_STORE_DEFAULT_QUEUE_MAX;
    o->max_attempts = SN_STORE_DEFAULT_ATTEMPTS;
    o->max_config_history = SN_STORE_DEFAULT_CONFIGS_MAX;
    o->busy_timeout_ms = SN_STORE_DEFAULT_BUSY_MS;
}

/* Runs SQL text without results (pragmas, migrations). */
static int exec_sql(sn_store *st, const char *sql, const char *what)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : fail_db(st, rc, what);
}

/* Reads the schema version (0 for an empty database). */
static int read_version(sn_store *st, int *version)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, "SELECT max(version) FROM schema_version", -1, &s, NULL);
    if (rc != SQLITE_OK)
        return fail_db(st, rc, "reading the schema version");
    rc = sqlite3_step(s);
    *version = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    int e = rc == SQLITE_ROW ? 0 : fail_db(st, rc, "reading the schema version");
    sqlite3_finalize(s);
    return e;
}

/* Creates the version table and applies every migration above the stored version. */
static int migrate(sn_store *st)
{
    int e = exec_sql(st, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
                     "creating the schema version table");
    if (e != 0)
        return e;
    int version;
    if ((e = read_version(st, &version)) != 0)
        return e;
    if (version > SN_STORE_SCHEMA_VERSION) {
        snprintf(st->err, sizeof st->err,
                 "store: schema version %d is newer than this program's %d", version,
                 SN_STORE_SCHEMA_VERSION);
        return -EPROTO;
    }
    for (int v = version; v < SN_STORE_SCHEMA_VERSION; v++) {
        if ((e = exec_sql(st, "BEGIN IMMEDIATE", "starting a migration")) != 0)
            return e;
        char bump[96];
        snprintf(bump, sizeof bump,
                 "DELETE FROM schema_version; "
                 "INSERT INTO schema_version (version) VALUES (%d);",
                 v + 1);
        if ((e = exec_sql(st, g_migrations[v], "migrating the schema")) != 0 ||
            (e = exec_sql(st, bump, "recording the schema version")) != 0 ||
            (e = exec_sql(st, "COMMIT", "committing a migration")) != 0) {
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
            return e;
        }
    }
    return 0;
}

int sn_store_open(const char *dir, const sn_store_options *opt, sn_store **out, char *err,
                  size_t errlen)
{
    sn_store_options defaults;
    if (opt == NULL) {
        sn_store_options_init(&defaults);
        opt = &defaults;
    }
    if (opt->retention_days < 1 || opt->max_queue_per_sink < 1 || opt->max_config_history < 1 ||
        opt->max_config_history > INT_MAX) {
        snprintf(err, errlen,
                 "store: retention_days, max_queue_per_sink and "
                 "max_config_history must be >= 1");
        return -EINVAL;
    }
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", dir, SN_STORE_FILE);
    if (dir[0] == '\0' || n < 0 || (size_t)n >= sizeof path) {
        snprintf(err, errlen, "store: data directory \"%s\" is empty or too long", dir);
        return -EINVAL;
    }
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        int e = errno;
        snprintf(err, errlen, "store: cannot create %s: %s", dir, strerror(e));
        return -e;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "store: %s is not a directory", dir);
        return -ENOTDIR;
    }

    sn_store *st = calloc(1, sizeof *st);
    if (st == NULL) {
        snprintf(err, errlen, "store: out of memory");
        return -ENOMEM;
    }
    st->opt = *opt;
    int e;
    int rc = sqlite3_open_v2(
        path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        e = fail_db(st, rc, "open");
        goto out_close;
    }
    sqlite3_extended_result_codes(st->db, 0);
    if (sqlite3_db_readonly(st->db, "main") == 1) {
        e = fail(st, -EACCES, "the file is read-only");
        goto out_close;
    }
    sqlite3_busy_timeout(st->db,
                         (int)(opt->busy_timeout_ms > INT_MAX ? INT_MAX : opt->busy_timeout_ms));

    /* WAL: readers (the API) never block the loop's writes; the mode is stored in the file. */
    sqlite3_stmt *s = NULL;
    rc = sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        e = fail_db(st, rc, "switching to WAL");
        sqlite3_finalize(s);
        goto out_close;
    }
    const unsigned char *mode = sqlite3_column_text(s, 0);
    bool wal = mode != NULL && strcmp((const char *)mode, "wal") == 0;
    sqlite3_finalize(s);
    if (!wal) {
        e = fail(st, -EIO, "the database refused WAL mode");
        goto out_close;
    }
    e = exec_sql(
        st, opt->synchronous_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
        "setting synchronous");
    if (e != 0)
        goto out_close;
    if ((e = migrate(st)) != 0)
        goto out_close;
    for (int i = 0; i < S_COUNT; i++) {
        rc =
            sqlite3_prepare_v3(st->db, g_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL);
        if (rc != SQLITE_OK) {
            e = fail_db(st, rc, "preparing statements");
            goto out_close;
        }
    }
    st->err[0] = '\0';
    *out = st;
    return 0;

out_close:
    snprintf(err, errlen, "%s (%s)", st->err, path);
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    sqlite3_close(st->db);
    free(st);
    return e;
}

int sn_store_open_readonly(const char *dir, sn_store **out, char *err, size_t errlen)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", dir, SN_STORE_FILE);
    if (dir[0] == '\0' || n < 0 || (size_t)n >= sizeof path) {
        snprintf(err, errlen, "store: data directory \"%s\" is empty or too long", dir);
        return -EINVAL;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) {
        int e = errno;
        snprintf(err, errlen, "store: cannot open %s: %s", path, strerror(e));
        return -e;
    }
    sn_store *st = calloc(1, sizeof *st);
    if (st == NULL) {
        snprintf(err, errlen, "store: out of memory");
        return -ENOMEM;
    }
    sn_store_options_init(&st->opt);
    st->readonly = true;
    int e;
    int rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        e = fail_db(st, rc, "open");
        goto out_close;
    }
    sqlite3_extended_result_codes(st->db, 0);
    sqlite3_busy_timeout(st->db, (int)st->opt.busy_timeout_ms);
    int version = 0;
    if ((e = read_version(st, &version)) != 0)
        goto out_close;
    if (version != SN_STORE_SCHEMA_VERSION) {
        snprintf(st->err, sizeof st->err,
                 "store: schema version %d, this program reads %d (the writer migrates it)",
                 version, SN_STORE_SCHEMA_VERSION);
        e = -EPROTO;
        goto out_close;
    }
    /* Write statements prepare fine on a read-only connection; running them fails -EACCES. */
    for (int i = 0; i < S_COUNT; i++) {
        rc =
            sqlite3_prepare_v3(st->db, g_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL);
        if (rc != SQLITE_OK) {
            e = fail_db(st, rc, "preparing statements");
            goto out_close;
        }
    }
    st->err[0] = '\0';
    *out = st;
    return 0;

out_close:
    snprintf(err, errlen, "%s (%s)", st->err, path);
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    sqlite3_close(st->db);
    free(st);
    return e;
}

void sn_store_close(sn_store *st)
{
    if (st == NULL)
        return;
    if (st->depth > 0)
        sn_store_rollback(st);
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    if (!st->readonly)
        sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    sqlite3_close(st->db);
    free(st);
}

int sn_store_journal_mode(sn_store *st, char *out, size_t outlen)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, "PRAGMA journal_mode", -1, &s, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    int e = rc == SQLITE_ROW ? 0 : fail_db(st, rc, "reading the journal mode");
    if (e == 0)
        col_text(s, 0, out, outlen);
    sqlite3_finalize(s);
    return e;
}

int sn_store_schema_version(sn_store *st)
{
    int v;
    int e = read_version(st, &v);
    return e != 0 ? e : v;
}

/* ---- transactions ---- */

int sn_store_begin(sn_store *st)
{
    if (st->depth == 0) {
        int e = run(st, S_BEGIN, "begin");
        if (e != 0)
            return e;
    }
    st->depth++;
    return 0;
}

int sn_store_commit(sn_store *st)
{
    if (st->depth == 0)
        return fail(st, -EINVAL, "commit without begin");
    if (--st->depth > 0)
        return 0;
    int e = run(st, S_COMMIT, "commit");
    if (e != 0) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return e;
}

void sn_store_rollback(sn_store *st)
{
    if (st->depth == 0)
        return;
    st->depth = 0;
    (void)run(st, S_ROLLBACK, "rollback");
}

/* Ends an internal begin: commit on success, rollback on failure. Returns e or the commit's
 * error. */
static int finish(sn_store *st, int e)
{
    if (e == 0)
        return sn_store_commit(st);
    if (st->depth == 1) {
        sn_store_rollback(st);
    } else {
        st->depth--; /* the caller's transaction decides */
    }
    return e;
}

/* ---- alerts ---- */

int sn_store_alert_upsert(sn_store *st, const sn_alert *a)
{
    json_t *j = sn_alert_to_json(a);
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (text == NULL)
        return fail(st, -EINVAL, "alert cannot be written as JSON");
    sqlite3_stmt *s = st->stmt[S_ALERT_UPSERT];
    bind_text(s, 1, a->alert_id);
    bind_text(s, 2, text);
    bind_text(s, 3, a->service);
    bind_text(s, 4, a->model);
    sqlite3_bind_int(s, 5, (int)a->severity);
    bind_text(s, 6, sn_anomaly_type_name(a->anomaly_type));
    bind_text(s, 7, a->status == SN_ALERT_RESOLVED ? "resolved" : "firing");
    sqlite3_bind_int64(s, 8, a->timestamp_ns);
    sqlite3_bind_int64(s, 9, a->last_seen_ns);
    int e = run(st, S_ALERT_UPSERT, "storing an alert");
    free(text);
    return e;
}

char *sn_store_alert_get_json(sn_store *st, const char *id, int *rc)
{
    sqlite3_stmt *s = st->stmt[S_ALERT_GET];
    bind_text(s, 1, id);
    int r = sqlite3_step(s);
    char *out = NULL;
    if (r == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        out = t != NULL ? strdup(t) : NULL;
        *rc = out != NULL ? 0 : fail(st, -ENOMEM, "out of memory");
    } else if (r == SQLITE_DONE) {
        *rc = fail(st, -ENOENT, "no such alert");
    } else {
        *rc = fail_db(st, r, "reading an alert");
    }
    done(s);
    return out;
}

/* Parses stored JSON text into an alert. */
static int parse_alert(sn_store *st, const char *text, size_t len, sn_alert *out)
{
    json_error_t jerr;
    json_t *j = json_loadb(text, len, 0, &jerr);
    if (j == NULL)
        return fail(st, -EIO, "a stored alert is not JSON");
    char msg[128];
    int e = sn_alert_from_json(j, out, msg, sizeof msg);
    json_decref(j);
    return e == 0 ? 0 : fail(st, -EIO, msg);
}

int sn_store_alert_get(sn_store *st, const char *id, sn_alert *out)
{
    int rc;
    char *text = sn_store_alert_get_json(st, id, &rc);
    if (text == NULL)
        return rc;
    rc = parse_alert(st, text, strlen(text), out);
    free(text);
    return rc;
}

void sn_store_alert_filter_init(sn_store_alert_filter *f)
{
    memset(f, 0, sizeof *f);
    f->severity = SN_SEV_NONE;
    f->status = -1;
    f->anomaly_type = -1;
    f->limit = 100;
}

/* Appends the WHERE clause of f (fixed fragments with numbered parameters) to sql. */
static void where_clause(const sn_store_alert_filter *f, char *sql, size_t cap)
{
    size_t n = strlen(sql);
    const char *sep = " WHERE ";
#define ADD(cond, frag)                                                                            \
    do {                                                                                           \
        if (cond) {                                                                                \
            n += (size_t)snprintf(sql + n, cap - n, "%s%s", sep, frag);                            \
            sep = " AND ";                                                                         \
        }                                                                                          \
    } while (0)
    ADD(f->start_ns != 0, "timestamp >= ?1");
    ADD(f->end_ns != 0, "timestamp < ?2");
    ADD(f->severity_mask != 0, "((?10 >> severity) & 1) = 1");
    ADD(f->severity_mask == 0 && f->severity != SN_SEV_NONE && f->severity_min, "severity >= ?3");
    ADD(f->severity_mask == 0 && f->severity != SN_SEV_NONE && !f->severity_min, "severity = ?3");
    ADD(f->service != NULL, "service = ?4");
    ADD(f->model != NULL, "model = ?5");
    ADD(f->status >= 0, "status = ?6");
    ADD(f->anomaly_type >= 0, "anomaly_type = ?7");
#undef ADD
}

/* Binds the filter's values to the parameters where_clause names. */
static void bind_filter(sqlite3_stmt *s, const sn_store_alert_filter *f)
{
    if (f->start_ns != 0)
        sqlite3_bind_int64(s, 1, f->start_ns);
    if (f->end_ns != 0)
        sqlite3_bind_int64(s, 2, f->end_ns);
    if (f->severity_mask != 0)
        sqlite3_bind_int(s, 10, (int)f->severity_mask);
    else if (f->severity != SN_SEV_NONE)
        sqlite3_bind_int(s, 3, (int)f->severity);
    if (f->service != NULL)
        bind_text(s, 4, f->service);
    if (f->model != NULL)
        bind_text(s, 5, f->model);
    if (f->status >= 0)
        bind_text(s, 6, f->status == SN_ALERT_RESOLVED ? "resolved" : "firing");
    if (f->anomaly_type >= 0)
        bind_text(s, 7, sn_anomaly_type_name((sn_anomaly_type)f->anomaly_type));
}

/* sn_store_alert_query without the read transaction. */
static int alert_query(sn_store *st, const sn_store_alert_filter *f, sn_store_json_visit cb,
                       void *ud, uint64_t *total)
{
    if (f->limit > 10000 || f->severity > SN_SEV_CRITICAL ||
        f->severity_mask >= 1u << (SN_SEV_CRITICAL + 1) || f->status > SN_ALERT_RESOLVED ||
        f->anomaly_type >= SN_ANOMALY_TYPE_COUNT || (f->end_ns != 0 && f->end_ns < f->start_ns))
        return fail(st, -EINVAL, "bad alert filter");
    /* Parameters ?1..?7 are the filters, ?8 and ?9 limit and offset. Unused numbered
     * parameters are allowed: SQLite leaves them NULL. */
    char sql[512] = "SELECT json FROM alerts";
    where_clause(f, sql, sizeof sql);
    size_t n = strlen(sql);
    snprintf(sql + n, sizeof sql - n, " ORDER BY timestamp DESC, id LIMIT ?8 OFFSET ?9");
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return fail_db(st, rc, "preparing the alert query");
    bind_filter(s, f);
    sqlite3_bind_int(s, 8, f->limit == 0 ? 100 : (int)f->limit);
    sqlite3_bind_int64(s, 9, f->offset);
    int e = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        size_t len = (size_t)sqlite3_column_bytes(s, 0);
        if (t != NULL && (e = cb(t, len, ud)) != 0)
            break;
    }
    if (e == 0 && rc != SQLITE_DONE)
        e = fail_db(st, rc, "querying alerts");
    sqlite3_finalize(s);
    if (e != 0 || total == NULL)
        return e;

    char csql[512] = "SELECT count(*) FROM alerts";
    where_clause(f, csql, sizeof csql);
    rc = sqlite3_prepare_v2(st->db, csql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return fail_db(st, rc, "preparing the alert count");
    bind_filter(s, f);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *total = (uint64_t)sqlite3_column_int64(s, 0);
    else
        e = fail_db(st, rc, "counting alerts");
    sqlite3_finalize(s);
    return e;
}

int sn_store_alert_query(sn_store *st, const sn_store_alert_filter *f, sn_store_json_visit cb,
                         void *ud, uint64_t *total)
{
    /* A reader beside the writer: the rows and the count come from one snapshot. (The writer's
     * own connection sees its own writes only, so it needs none.) */
    bool snapshot = st->readonly && st->depth == 0 && total != NULL;
    if (snapshot) {
        int e = exec_sql(st, "BEGIN", "starting a read");
        if (e != 0)
            return e;
    }
    int e = alert_query(st, f, cb, ud, total);
    if (snapshot)
        sqlite3_exec(st->db, e == 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
    return e;
}

int sn_store_alerts_firing(sn_store *st, sn_alerts_visit cb, void *ud, size_t *skipped)
{
    sqlite3_stmt *s = st->stmt[S_ALERTS_FIRING];
    size_t bad = 0;
    int rc, e = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        sn_alert a;
        const char *t = (const char *)sqlite3_column_text(s, 0);
        size_t len = (size_t)sqlite3_column_bytes(s, 0);
        if (t == NULL || parse_alert(st, t, len, &a) != 0) {
            bad++;
            continue;
        }
        if ((e = cb(&a, ud)) != 0)
            break;
    }
    if (e == 0 && rc != SQLITE_DONE)
        e = fail_db(st, rc, "reading firing alerts");
    done(s);
    if (skipped != NULL)
        *skipped = bad;
    return e;
}

/* ---- retention ---- */

int sn_store_purge(sn_store *st, int64_t now_ns, unsigned days, sn_store_purged *out)
{
    if (days == 0)
        days = st->opt.retention_days;
    int64_t cutoff = now_ns - (int64_t)days * 86400 * INT64_C(1000000000);
    sn_store_purged p = {0};
    int e = sn_store_begin(st);
    if (e != 0)
        return e;
    /* Local alert ids matter only while a copy of the alert may still come: SN_STORE_LAID_DAYS. */
    unsigned laid_days = days < SN_STORE_LAID_DAYS ? days : SN_STORE_LAID_DAYS;
    int64_t laid_cutoff = now_ns - (int64_t)laid_days * 86400 * INT64_C(1000000000);
    static const int which[4] = {S_PURGE_ALERTS, S_PURGE_DELIVERIES, S_PURGE_SEQUENCES,
                                 S_PURGE_LAIDS};
    uint64_t *counts[4] = {&p.alerts, &p.deliveries, &p.sequences, &p.local_alert_ids};
    for (int i = 0; i < 4 && e == 0; i++) {
        sqlite3_bind_int64(st->stmt[which[i]], 1, which[i] == S_PURGE_LAIDS ? laid_cutoff : cutoff);
        e = run(st, which[i], "purging");
        if (e == 0)
            *counts[i] = (uint64_t)sqlite3_changes(st->db);
    }
    e = finish(st, e);
    if (e == 0 && out != NULL)
        *out = p;
    return e;
}

/* ---- baselines ---- */

int sn_store_baseline_put(sn_store *st, const char *key, const void *blob, size_t len,
                          int64_t updated_ns)
{
    if (key == NULL || key[0] == '\0' || len > INT_MAX)
        return fail(st, -EINVAL, "baseline key empty or blob too large");
    sqlite3_stmt *s = st->stmt[S_BASE_PUT];
    bind_text(s, 1, key);
    /* A zero-length blob is bound as an empty blob, never NULL (the column is NOT NULL). */
    sqlite3_bind_zeroblob(s, 2, 0);
    if (len > 0)
        sqlite3_bind_blob(s, 2, blob, (int)len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, updated_ns);
    return run(st, S_BASE_PUT, "storing a baseline");
}

int sn_store_baseline_get(sn_store *st, const char *key, void **blob, size_t *len,
                          int64_t *updated_ns)
{
    sqlite3_stmt *s = st->stmt[S_BASE_GET];
    bind_text(s, 1, key);
    int rc = sqlite3_step(s);
    int e = 0;
    *blob = NULL;
    *len = 0;
    if (rc == SQLITE_ROW) {
        const void *src = sqlite3_column_blob(s, 0);
        size_t n = (size_t)sqlite3_column_bytes(s, 0);
        if (n > 0) {
            *blob = malloc(n);
            if (*blob == NULL)
                e = fail(st, -ENOMEM, "out of memory");
            else {
                memcpy(*blob, src, n);
                *len = n;
            }
        }
        if (updated_ns != NULL)
            *updated_ns = sqlite3_column_int64(s, 1);
    } else if (rc == SQLITE_DONE) {
        e = fail(st, -ENOENT, "no such baseline");
    } else {
        e = fail_db(st, rc, "reading a baseline");
    }
    done(s);
    return e;
}

int sn_store_baseline_delete(sn_store *st, const char *key)
{
    bind_text(st->stmt[S_BASE_DELETE], 1, key);
    return run(st, S_BASE_DELETE, "deleting a baseline");
}

int sn_store_baseline_foreach(sn_store *st, const char *prefix, sn_store_baseline_visit cb,
                              void *ud)
{
    sqlite3_stmt *s = st->stmt[S_BASE_PREFIX];
    bind_text(s, 1, prefix != NULL ? prefix : "");
    int rc, e = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(s, 0);
        const void *blob = sqlite3_column_blob(s, 1);
        size_t len = (size_t)sqlite3_column_bytes(s, 1);
        if ((e = cb(key != NULL ? key : "", blob, len, sqlite3_column_int64(s, 2), ud)) != 0)
            break;
    }
    if (e == 0 && rc != SQLITE_DONE)
        e = fail_db(st, rc, "reading baselines");
    done(s);
    return e;
}

/* ---- budget spend ---- */

int sn_store_budget_put(sn_store *st, const sn_store_budget *b)
{
    if (b->rule_service == NULL || b->period == NULL || b->service == NULL || b->user == NULL ||
        !isfinite(b->spent))
        return fail(st, -EINVAL, "budget row incomplete");
    sqlite3_stmt *s = st->stmt[S_BUDGET_PUT];
    bind_text(s, 1, b->rule_service);
    bind_text(s, 2, b->period);
    sqlite3_bind_int(s, 3, b->per_user ? 1 : 0);
    bind_text(s, 4, b->service);
    bind_text(s, 5, b->user);
    sqlite3_bind_int64(s, 6, b->period_index);
    sqlite3_bind_double(s, 7, b->spent);
    sqlite3_bind_int(s, 8, b->soft_fired ? 1 : 0);
    sqlite3_bind_int(s, 9, b->hard_fired ? 1 : 0);
    sqlite3_bind_int64(s, 10, b->updated_ns);
    return run(st, S_BUDGET_PUT, "storing budget spend");
}

int sn_store_budget_foreach(sn_store *st, sn_store_budget_visit cb, void *ud)
{
    sqlite3_stmt *s = st->stmt[S_BUDGET_ALL];
    int rc, e = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *t[5] = {"", "", "", "", ""}; /* the text columns 0, 1, 3, 4 */
        for (int i = 0; i < 5; i++) {
            const char *v = i != 2 ? (const char *)sqlite3_column_text(s, i) : NULL;
            if (v != NULL)
                t[i] = v;
        }
        sn_store_budget b = {.rule_service = t[0],
                             .period = t[1],
                             .per_user = sqlite3_column_int(s, 2) != 0,
                             .service = t[3],
                             .user = t[4],
                             .period_index = sqlite3_column_int64(s, 5),
                             .spent = sqlite3_column_double(s, 6),
                             .soft_fired = sqlite3_column_int(s, 7) != 0,
                             .hard_fired = sqlite3_column_int(s, 8) != 0,
                             .updated_ns = sqlite3_column_int64(s, 9)};
        if ((e = cb(&b, ud)) != 0)
            break;
    }
    if (e == 0 && rc != SQLITE_DONE)
        e = fail_db(st, rc, "reading budget spend");
    done(s);
    return e;
}

int sn_store_budget_purge(sn_store *st, int64_t before_ns, uint64_t *removed)
{
    sqlite3_bind_int64(st->stmt[S_BUDGET_PURGE], 1, before_ns);
    int e = run(st, S_BUDGET_PURGE, "purging budget spend");
    if (e == 0 && removed != NULL)
        *removed = (uint64_t)sqlite3_changes(st->db);
    return e;
}

/* ---- configuration history ---- */

int sn_store_config_append(sn_store *st, int64_t ts_ns, const char *source, const char *json)
{
    if (source == NULL || json == NULL)
        return fail(st, -EINVAL, "config source and json are required");
    int e = sn_store_begin(st);
    if (e != 0)
        return e;
    sqlite3_stmt *s = st->stmt[S_CFG_APPEND];
    sqlite3_bind_int64(s, 1, ts_ns);
    bind_text(s, 2, source);
    bind_text(s, 3, json);
    e = run(st, S_CFG_APPEND, "storing a configuration");
    if (e == 0) {
        sqlite3_bind_int64(st->stmt[S_CFG_TRIM], 1, (sqlite3_int64)st->opt.max_config_history);
        e = run(st, S_CFG_TRIM, "trimming the configuration history");
    }
    return finish(st, e);
}

int sn_store_config_latest(sn_store *st, char **json, int64_t *ts_ns, char *source, size_t srclen)
{
    sqlite3_stmt *s = st->stmt[S_CFG_LATEST];
    int rc = sqlite3_step(s);
    int e = 0;
    *json = NULL;
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 2);
        *json = strdup(t != NULL ? t : "");
        if (*json == NULL)
            e = fail(st, -ENOMEM, "out of memory");
        if (ts_ns != NULL)
            *ts_ns = sqlite3_column_int64(s, 0);
        if (source != NULL && srclen > 0)
            col_text(s, 1, source, srclen);
    } else if (rc == SQLITE_DONE) {
        e = fail(st, -ENOENT, "no configuration stored");
    } else {
        e = fail_db(st, rc, "reading the configuration");
    }
    done(s);
    return e;
}

int sn_store_config_history(sn_store *st, unsigned limit, sn_store_config_visit cb, void *ud)
{
    sqlite3_stmt *s = st->stmt[S_CFG_HISTORY];
    sqlite3_bind_int64(s, 1, limit == 0 ? -1 : (sqlite3_int64)limit);
    int rc, e = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *src = (const char *)sqlite3_column_text(s, 1);
        const char *json = (const char *)sqlite3_column_text(s, 2);
        if ((e = cb(sqlite3_column_int64(s, 0), src != NULL ? src : "", json != NULL ? json : "",
                    ud)) != 0)
            break;
    }
    if (e == 0 && rc != SQLITE_DONE)
        e = fail_db(st, rc, "reading the configuration history");
    done(s);
    return e;
}

/* ---- ingest de-duplication table ---- */

int sn_store_local_alert_seen(sn_store *st, const char *alert_id)
{
    if (alert_id == NULL || alert_id[0] == '\0')
        return fail(st, -EINVAL, "local alert id empty");
    sqlite3_stmt *s = st->stmt[S_LAID_SEEN];
    bind_text(s, 1, alert_id);
    int rc = sqlite3_step(s);
    int e = rc == SQLITE_ROW    ? 1
            : rc == SQLITE_DONE ? 0
                                : fail_db(st, rc, "reading a local alert id");
    done(s);
    return e;
}

int sn_store_local_alert_claim(sn_store *st, const char *alert_id, int64_t now_ns)
{
    if (alert_id == NULL || alert_id[0] == '\0')
        return fail(st, -EINVAL, "local alert id empty");
    sqlite3_stmt *s = st->stmt[S_LAID_CLAIM];
    bind_text(s, 1, alert_id);
    sqlite3_bind_int64(s, 2, now_ns);
    int e = run(st, S_LAID_CLAIM, "storing a local alert id");
    if (e != 0)
        return e;
    return sqlite3_changes(st->db) == 1 ? 1 : 0;
}

int sn_store_seq_put(sn_store *st, const char *sidecar_id, uint64_t seq, int64_t last_seen_ns)
{
    if (sidecar_id == NULL || sidecar_id[0] == '\0' || seq > (uint64_t)INT64_MAX)
        return fail(st, -EINVAL, "sidecar id empty or sequence above 2^63-1");
    sqlite3_stmt *s = st->stmt[S_SEQ_PUT];
    bind_text(s, 1, sidecar_id);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)seq);
    sqlite3_bind_int64(s, 3, last_seen_ns);
    return run(st, S_SEQ_PUT, "storing a sequence");
}

int sn_store_seq_put_cb(const char *sidecar_id, uint64_t seq, int64_t last_seen_ns, void *store)
{
    return sn_store_seq_put(store, sidecar_id, seq, last_seen_ns);
}

int sn_store_seq_load_all(sn_store *st, sn_store_seq_visit cb, void *ud)
{
    sqlite3_stmt *s = st->stmt[S_SEQ_ALL];
    int rc, e = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(s, 0);
        if (id == NULL)
            continue;
        if ((e = cb(id, (uint64_t)sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2), ud)) != 0)
            break;
    }
    if (e == 0 && rc != SQLITE_DONE)
        e = fail_db(st, rc, "reading sequences");
    done(s);
    return e;
}

/* ---- delivery queue ---- */

static sn_delivery_state state_of(const char *name)
{
    if (name != NULL && strcmp(name, "delivered") == 0)
        return SN_DELIVERY_DELIVERED;
    if (name != NULL && strcmp(name, "dead") == 0)
        return SN_DELIVERY_DEAD;
    return SN_DELIVERY_PENDING;
}

/* Fills a delivery from a row of DLV_COLS. */
static int read_delivery(sn_store *st, sqlite3_stmt *s, sn_store_delivery *out)
{
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(s, 0);
    col_text(s, 1, out->sink, sizeof out->sink);
    col_text(s, 2, out->alert_id, sizeof out->alert_id);
    const void *blob = sqlite3_column_blob(s, 3); /* blob first, then its size */
    size_t n = (size_t)sqlite3_column_bytes(s, 3);
    out->payload = malloc(n + 1);
    if (out->payload == NULL)
        return fail(st, -ENOMEM, "out of memory");
    if (n > 0)
        memcpy(out->payload, blob, n);
    out->payload[n] = '\0';
    out->payload_len = n;
    out->attempts = (unsigned)sqlite3_column_int(s, 4);
    out->next_attempt_ns = sqlite3_column_int64(s, 5);
    out->created_ns = sqlite3_column_int64(s, 6);
    out->state = state_of((const char *)sqlite3_column_text(s, 7));
    col_text(s, 8, out->reason, sizeof out->reason);
    return 0;
}

void sn_store_delivery_clear(sn_store_delivery *d)
{
    free(d->payload);
    d->payload = NULL;
    d->payload_len = 0;
}

/* The number of pending deliveries of sink. */
static int pending_count(sn_store *st, const char *sink, uint64_t *n)
{
    sqlite3_stmt *s = st->stmt[S_DLV_PENDING];
    bind_text(s, 1, sink);
    int rc = sqlite3_step(s);
    int e = rc == SQLITE_ROW ? 0 : fail_db(st, rc, "counting deliveries");
    if (e == 0)
        *n = (uint64_t)sqlite3_column_int64(s, 0);
    done(s);
    return e;
}

int sn_store_delivery_enqueue(sn_store *st, const char *sink, const char *alert_id,
                              const char *payload, size_t len, int64_t now_ns, int64_t *id)
{
    if (sink == NULL || sink[0] == '\0' || strnlen(sink, SN_STORE_SINK_MAX) >= SN_STORE_SINK_MAX ||
        alert_id == NULL || payload == NULL || len == 0 || len > INT_MAX)
        return fail(st, -EINVAL, "delivery needs a sink (under 64 bytes), alert id and payload");
    int e = sn_store_begin(st);
    if (e != 0)
        return e;
    uint64_t pending = 0;
    e = pending_count(st, sink, &pending);
    if (e == 0 && pending >= st->opt.max_queue_per_sink)
        e = fail(st, -ENOSPC, "delivery queue of the sink is full");
    if (e == 0) {
        sqlite3_stmt *s = st->stmt[S_DLV_INSERT];
        bind_text(s, 1, sink);
        bind_text(s, 2, alert_id);
        sqlite3_bind_blob(s, 3, payload, (int)len, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 4, now_ns);
        e = run(st, S_DLV_INSERT, "queueing a delivery");
        if (e == 0 && id != NULL)
            *id = sqlite3_last_insert_rowid(st->db);
    }
    return finish(st, e);
}

/* Reads the single row of a DLV_COLS statement with its parameters bound. */
static int one_delivery(sn_store *st, int which, sn_store_delivery *out, const char *what)
{
    sqlite3_stmt *s = st->stmt[which];
    int rc = sqlite3_step(s);
    int e;
    if (rc == SQLITE_ROW)
        e = read_delivery(st, s, out);
    else if (rc == SQLITE_DONE)
        e = fail(st, -ENOENT, "no such delivery");
    else
        e = fail_db(st, rc, what);
    done(s);
    return e;
}

int sn_store_delivery_next_due(sn_store *st, const char *sink, int64_t now_ns,
                               sn_store_delivery *out)
{
    bind_text(st->stmt[S_DLV_NEXT], 1, sink);
    sqlite3_bind_int64(st->stmt[S_DLV_NEXT], 2, now_ns);
    return one_delivery(st, S_DLV_NEXT, out, "reading the next delivery");
}

int sn_store_delivery_get(sn_store *st, int64_t id, sn_store_delivery *out)
{
    sqlite3_bind_int64(st->stmt[S_DLV_GET], 1, id);
    return one_delivery(st, S_DLV_GET, out, "reading a delivery");
}

int sn_store_delivery_next_time(sn_store *st, const char *sink, int64_t *when_ns)
{
    sqlite3_stmt *s = st->stmt[S_DLV_NEXT_TIME];
    bind_text(s, 1, sink);
    int rc = sqlite3_step(s);
    int e;
    if (rc != SQLITE_ROW)
        e = fail_db(st, rc, "reading the next delivery time");
    else if (sqlite3_column_type(s, 0) == SQLITE_NULL)
        e = fail(st, -ENOENT, "no pending delivery");
    else {
        *when_ns = sqlite3_column_int64(s, 0);
        e = 0;
    }
    done(s);
    return e;
}

/* Runs an UPDATE on one pending delivery; -ENOENT when no row changed. */
static int update_pending(sn_store *st, int which, const char *what)
{
    int e = run(st, which, what);
    if (e == 0 && sqlite3_changes(st->db) == 0)
        e = fail(st, -ENOENT, "no such pending delivery");
    return e;
}

int sn_store_delivery_mark_delivered(sn_store *st, int64_t id, int64_t now_ns)
{
    sqlite3_bind_int64(st->stmt[S_DLV_DELIVERED], 1, id);
    sqlite3_bind_int64(st->stmt[S_DLV_DELIVERED], 2, now_ns);
    return update_pending(st, S_DLV_DELIVERED, "marking a delivery delivered");
}

int sn_store_delivery_mark_failed(sn_store *st, int64_t id, int64_t now_ns, int64_t retry_at_ns,
                                  const char *reason, bool *dead)
{
    sqlite3_stmt *s = st->stmt[S_DLV_FAILED];
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, retry_at_ns);
    bind_text(s, 3, reason != NULL ? reason : "");
    sqlite3_bind_int64(s, 4, now_ns);
    sqlite3_bind_int64(s, 5, st->opt.max_attempts);
    int rc = sqlite3_step(s);
    int e = 0;
    if (rc == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(s, 0);
        if (dead != NULL)
            *dead = state_of(state) == SN_DELIVERY_DEAD;
        rc = sqlite3_step(s); /* finish the statement so the update is complete */
        if (rc != SQLITE_DONE)
            e = fail_db(st, rc, "marking a delivery failed");
    } else if (rc == SQLITE_DONE) {
        e = fail(st, -ENOENT, "no such pending delivery");
    } else {
        e = fail_db(st, rc, "marking a delivery failed");
    }
    done(s);
    return e;
}

int sn_store_delivery_dead_letter(sn_store *st, int64_t id, int64_t now_ns, const char *reason)
{
    sqlite3_stmt *s = st->stmt[S_DLV_DEAD];
    sqlite3_bind_int64(s, 1, id);
    bind_text(s, 2, reason != NULL ? reason : "");
    sqlite3_bind_int64(s, 3, now_ns);
    return update_pending(st, S_DLV_DEAD, "dead-lettering a delivery");
}

int sn_store_delivery_depth(sn_store *st, const char *sink, uint64_t *pending, uint64_t *dead,
                            uint64_t *delivered)
{
    uint64_t n[3] = {0, 0, 0};
    sqlite3_stmt *s = st->stmt[S_DLV_DEPTH];
    bind_text(s, 1, sink);
    int rc, e = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        n[state_of((const char *)sqlite3_column_text(s, 0))] = (uint64_t)sqlite3_column_int64(s, 1);
    if (rc != SQLITE_DONE)
        e = fail_db(st, rc, "counting deliveries");
    done(s);
    if (pending != NULL)
        *pending = n[SN_DELIVERY_PENDING];
    if (dead != NULL)
        *dead = n[SN_DELIVERY_DEAD];
    if (delivered != NULL)
        *delivered = n[SN_DELIVERY_DELIVERED];
    return e;
}
