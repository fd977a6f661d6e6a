/*
 * store.h -- the aggregator's embedded state store: one SQLite database, DIR/state.db, in WAL
 * mode (docs/aggregator.md "State" has the schema).
 *
 * What it keeps:
 *   - alerts (the alert JSON plus indexed columns for the REST API's filters), purged after a
 *     retention period;
 *   - baseline snapshots: opaque blobs by key (the engine's serialisation);
 *   - configuration history: every applied configuration with its time and source;
 *   - the ingest de-duplication table (sidecar_id -> highest applied sequence, last seen);
 *   - a durable delivery queue per alert sink: an alert raised is enqueued in the same
 *     transaction that stores it, so a restart never loses a delivery.
 *
 * One owner: every call from the same thread (the loop). Writes are committed one statement at
 * a time unless the caller groups them with sn_store_begin / sn_store_commit (do, per applied
 * batch). Errors are negative errno values (-EIO for SQLite failures, -ENOENT for "not found",
 * -ENOSPC for a full queue or disk, -EBUSY when locked, -EINVAL for bad arguments); the last
 * message is kept for sn_store_errmsg. Statements are prepared once and take bound parameters
 * only.
 */
#ifndef SN_STORE_H
#define SN_STORE_H

#include "alerts.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_STORE_FILE                "state.db"
#define SN_STORE_SCHEMA_VERSION      3
#define SN_STORE_DEFAULT_RETENTION   365 /* days */
#define SN_STORE_DEFAULT_QUEUE_MAX   100000u
#define SN_STORE_DEFAULT_ATTEMPTS    0u /* 0: the caller decides when to dead-letter */
#define SN_STORE_DEFAULT_CONFIGS_MAX 1000u
#define SN_STORE_DEFAULT_BUSY_MS     5000u
#define SN_STORE_SINK_MAX            64 /* sink name, NUL included */
#define SN_STORE_REASON_MAX          256

typedef struct sn_store sn_store;

typedef struct sn_store_options {
    unsigned retention_days;   /* default for sn_store_purge(.., 0); >= 1 */
    size_t max_queue_per_sink; /* pending deliveries per sink; enqueue over it: -ENOSPC */
    unsigned max_attempts;     /* mark_failed dead-letters at this many attempts; 0: never */
    size_t max_config_history; /* configurations kept (oldest dropped on append); >= 1 */
    unsigned busy_timeout_ms;  /* waiting for another connection's lock */
    bool synchronous_full;     /* PRAGMA synchronous=FULL (default NORMAL: WAL is safe, the
                                  last commits may be lost on power failure, never corrupt) */
} sn_store_options;

/* Fills the defaults above. Never fails. */
void sn_store_options_init(sn_store_options *o);

/* Opens (creating the directory, mode 0750, and the file as needed) DIR/state.db, switches it to
 * WAL, creates or migrates the schema and prepares the statements. Returns 0 and sets *out, or a
 * negative errno with a one-line message naming the file in err: -EACCES (not writable,
 * read-only file), -EIO (not a database, corrupt), -EPROTO (schema newer than this program),
 * -EINVAL (options), -ENOMEM. Close with sn_store_close. */
int sn_store_open(const char *dir, const sn_store_options *opt, sn_store **out, char *err,
                  size_t errlen);

/* Opens DIR/state.db read-only, for readers on other threads than the writer's (the REST API):
 * in WAL mode they read committed data beside the writer without blocking it. One connection
 * belongs to one thread at a time (open one per thread, or guard it). The file must exist with
 * this program's schema version. Only the read calls make sense on it; writes fail -EACCES.
 * Returns 0 and sets *out, or a negative errno with a one-line message naming the file in err:
 * -ENOENT (no database yet), -EPROTO (another schema version), -EIO, -EACCES, -ENOMEM. Close
 * with sn_store_close (no checkpoint). */
int sn_store_open_readonly(const char *dir, sn_store **out, char *err, size_t errlen);

/* Rolls back an open transaction, finalises the statements, checkpoints (not read-only ones)
 * and closes. NULL is a no-op. */
void sn_store_close(sn_store *st);

/* The message of the last failure ("" when none). Valid until the next call. */
const char *sn_store_errmsg(const sn_store *st);

/* The database's journal mode ("wal") and schema version, for tests and /health. */
int sn_store_journal_mode(sn_store *st, char *out, size_t outlen);
int sn_store_schema_version(sn_store *st);

/* Groups the following writes into one transaction (nestable: only the outermost commit
 * writes). Returns 0 or a negative errno. A failed commit rolls back and returns the error. */
int sn_store_begin(sn_store *st);
int sn_store_commit(sn_store *st);
/* Rolls back the outermost transaction (whatever the nesting depth). */
void sn_store_rollback(sn_store *st);

/* ---- alerts ---- */

/* Inserts or replaces the alert (by alert_id). Returns 0, -EINVAL when it cannot be written as
 * JSON, or a database error. */
int sn_store_alert_upsert(sn_store *st, const sn_alert *a);

/* Reads one alert by id into *out. Returns 0, -ENOENT, -EIO (stored JSON not valid). */
int sn_store_alert_get(sn_store *st, const char *id, sn_alert *out);

/* The alert's stored JSON text, malloc'd (the caller frees it), or NULL with *rc set to -ENOENT
 * or another error. */
char *sn_store_alert_get_json(sn_store *st, const char *id, int *rc);

typedef struct sn_store_alert_filter {
    int64_t start_ns;       /* timestamp >= start; 0: no bound */
    int64_t end_ns;         /* timestamp < end; 0: no bound */
    sn_severity severity;   /* SN_SEV_NONE: any */
    bool severity_min;      /* true: severity >= .severity; false: equal */
    unsigned severity_mask; /* non-zero: any severity s with bit (1u << s) set; overrides the two
                               fields above */
    const char *service;    /* NULL: any */
    const char *model;      /* NULL: any */
    int status;             /* -1: any, else an sn_alert_status */
    int anomaly_type;       /* -1: any, else an sn_anomaly_type */
    unsigned limit;         /* rows; 0 means 100; at most 10000 */
    unsigned offset;
} sn_store_alert_filter;

/* Any alert, newest first, 100 rows. */
void sn_store_alert_filter_init(sn_store_alert_filter *f);

/* Calls cb with the JSON text of every matching alert, newest first (timestamp, then id). Stops
 * at and returns the first non-zero cb return. *total (may be NULL) gets the number of matches
 * without limit/offset. Returns 0, -EINVAL for a bad filter, or a database error. */
typedef int (*sn_store_json_visit)(const char *json, size_t len, void *ud);
int sn_store_alert_query(sn_store *st, const sn_store_alert_filter *f, sn_store_json_visit cb,
                         void *ud, uint64_t *total);

/* Calls cb for every firing alert (parsed; unparsable rows are skipped and counted in
 * *skipped, may be NULL), oldest first: for sn_alerts_restore after a restart. */
int sn_store_alerts_firing(sn_store *st, sn_alerts_visit cb, void *ud, size_t *skipped);

/* ---- retention ---- */

typedef struct sn_store_purged {
    uint64_t alerts;     /* last seen before the cut-off */
    uint64_t deliveries; /* delivered or dead, last changed before the cut-off */
    uint64_t sequences;  /* sidecar ids last seen before the cut-off */
    uint64_t local_alert_ids; /* applied local alert ids older than min(days, LAID_DAYS) */
} sn_store_purged;

/* Deletes what is older than `days` (0: the option's retention_days) before now_ns. Pending
 * deliveries and baselines are never purged here. *out may be NULL. Returns 0 or an error. */
int sn_store_purge(sn_store *st, int64_t now_ns, unsigned days, sn_store_purged *out);

/* ---- baselines ---- */

/* Stores blob (len bytes, may be 0) under key with its time. Returns 0 or an error. */
int sn_store_baseline_put(sn_store *st, const char *key, const void *blob, size_t len,
                          int64_t updated_ns);

/* Reads the blob of key: *blob is malloc'd (the caller frees it; NULL when len is 0), *len its
 * size, *updated_ns (may be NULL) its time. Returns 0, -ENOENT or an error. */
int sn_store_baseline_get(sn_store *st, const char *key, void **blob, size_t *len,
                          int64_t *updated_ns);

/* Deletes key. Returns 0 (also when absent) or an error. */
int sn_store_baseline_delete(sn_store *st, const char *key);

/* Calls cb for every baseline whose key starts with prefix (NULL or "": all), in key order;
 * blob is borrowed for the call. Stops at and returns the first non-zero cb return. */
typedef int (*sn_store_baseline_visit)(const char *key, const void *blob, size_t len,
                                       int64_t updated_ns, void *ud);
int sn_store_baseline_foreach(sn_store *st, const char *prefix, sn_store_baseline_visit cb,
                              void *ud);

/* ---- configuration history ---- */

/* Appends a configuration (JSON text) applied at ts_ns from source ("file", "api", ...), then
 * drops the oldest beyond max_config_history. Returns 0 or an error. */
int sn_store_config_append(sn_store *st, int64_t ts_ns, const char *source, const char *json);

/* The latest configuration: *json malloc'd (the caller frees it), *ts_ns and source (may be
 * NULL; cut to srclen). Returns 0, -ENOENT or an error. */
int sn_store_config_latest(sn_store *st, char **json, int64_t *ts_ns, char *source, size_t srclen);

/* Calls cb for up to `limit` (0: all kept) configurations, newest first. */
typedef int (*sn_store_config_visit)(int64_t ts_ns, const char *source, const char *json, void *ud);
int sn_store_config_history(sn_store *st, unsigned limit, sn_store_config_visit cb, void *ud);

/* ---- budget spend (the engine's cost budgets, so a restart keeps what was spent) ---- */

/* One row: the rule (its service pattern, period name and per_user), who spends, and the
 * period's state. Strings are borrowed. */
typedef struct sn_store_budget {
    const char *rule_service, *period, *service, *user;
    bool per_user;
    int64_t period_index;
    double spent;
    bool soft_fired, hard_fired;
    int64_t updated_ns;
} sn_store_budget;

/* Inserts or replaces the row of (rule_service, period, per_user, service, user). 0 or an
 * error (-EINVAL for a missing string or a non-finite amount). */
int sn_store_budget_put(sn_store *st, const sn_store_budget *b);

/* Calls cb for every row (strings valid for the call); stops at and returns the first non-zero
 * cb return. */
typedef int (*sn_store_budget_visit)(const sn_store_budget *b, void *ud);
int sn_store_budget_foreach(sn_store *st, sn_store_budget_visit cb, void *ud);

/* Deletes rows not written since before_ns (their periods are over); *removed may be NULL. */
int sn_store_budget_purge(sn_store *st, int64_t before_ns, uint64_t *removed);

/* ---- ingest de-duplication table ---- */

/* Records (sidecar_id, seq, last_seen): the stored sequence never goes down. Its signature is
 * sn_seqtab_visit's, so sn_ingest_sequences_export(in, sn_store_seq_put_cb, store) persists the
 * table. */
int sn_store_seq_put(sn_store *st, const char *sidecar_id, uint64_t seq, int64_t last_seen_ns);

/* ---- local alerts applied (by the sidecar's alert_id) ----
 * A sidecar sends each local alert twice: ahead of its batch (an alert-only Batch, sequence 0)
 * and in its sequenced batch. The aggregator applies whichever copy comes first and remembers
 * its alert_id here, in the batch's transaction, so the other copy is skipped -- also after a
 * restart. Ids are purged after SN_STORE_LAID_DAYS (a copy older than that is not expected). */
#define SN_STORE_LAID_DAYS 7u

/* 1 when alert_id was applied before, 0 when not, or a negative errno. */
int sn_store_local_alert_seen(sn_store *st, const char *alert_id);

/* Records alert_id as applied at now_ns. Returns 1 when it is new, 0 when it was there already,
 * or a negative errno. */
int sn_store_local_alert_claim(sn_store *st, const char *alert_id, int64_t now_ns);
int sn_store_seq_put_cb(const char *sidecar_id, uint64_t seq, int64_t last_seen_ns, void *store);

/* Calls cb for every entry, oldest first (the order sn_ingest_sequences_import wants). Stops at
 * and returns the first non-zero cb return. */
typedef int (*sn_store_seq_visit)(const char *sidecar_id, uint64_t seq, int64_t last_seen_ns,
                                  void *ud);
int sn_store_seq_load_all(sn_store *st, sn_store_seq_visit cb, void *ud);

/* ---- delivery queue ---- */

typedef enum sn_delivery_state {
    SN_DELIVERY_PENDING = 0,
    SN_DELIVERY_DELIVERED,
    SN_DELIVERY_DEAD
} sn_delivery_state;

/* One queued delivery. payload is malloc'd by next_due (free with sn_store_delivery_clear). */
typedef struct sn_store_delivery {
    int64_t id;
    char sink[SN_STORE_SINK_MAX];
    char alert_id[SN_ALERT_ID_LEN + 1];
    char *payload;
    size_t payload_len;
    unsigned attempts;
    int64_t next_attempt_ns;
    int64_t created_ns;
    sn_delivery_state state;
    char reason[SN_STORE_REASON_MAX];
} sn_store_delivery;

/* Queues payload (the sink's message for alert_id) for sink, due at now_ns. *id (may be NULL)
 * gets its id. Returns 0, -EINVAL (empty or over-long sink, empty payload), -ENOSPC (the sink
 * has max_queue_per_sink pending) or an error. */
int sn_store_delivery_enqueue(sn_store *st, const char *sink, const char *alert_id,
                              const char *payload, size_t len, int64_t now_ns, int64_t *id);

/* The pending delivery of sink due first (next_attempt <= now_ns; oldest first among equals).
 * Returns 0 and fills *out, -ENOENT when nothing is due, or an error. */
int sn_store_delivery_next_due(sn_store *st, const char *sink, int64_t now_ns,
                               sn_store_delivery *out);

/* When the next pending delivery of sink is due (for a timer). Returns 0 and sets *when_ns, or
 * -ENOENT when none is pending. */
int sn_store_delivery_next_time(sn_store *st, const char *sink, int64_t *when_ns);

/* Reads any delivery by id (payload malloc'd). Returns 0, -ENOENT or an error. */
int sn_store_delivery_get(sn_store *st, int64_t id, sn_store_delivery *out);

/* Frees out->payload. */
void sn_store_delivery_clear(sn_store_delivery *d);

/* pending -> delivered. Returns 0, -ENOENT when id is not pending. */
int sn_store_delivery_mark_delivered(sn_store *st, int64_t id, int64_t now_ns);

/* A failed attempt: attempts++, due again at retry_at_ns, reason kept. When max_attempts is set
 * and reached, the delivery goes dead instead and *dead (may be NULL) is set. Returns 0,
 * -ENOENT when id is not pending. */
int sn_store_delivery_mark_failed(sn_store *st, int64_t id, int64_t now_ns, int64_t retry_at_ns,
                                  const char *reason, bool *dead);

/* pending -> dead with a reason (a permanent refusal). Returns 0, -ENOENT when not pending. */
int sn_store_delivery_dead_letter(sn_store *st, int64_t id, int64_t now_ns, const char *reason);

/* Counts of sink's deliveries by state (pointers may be NULL). Returns 0 or an error. */
int sn_store_delivery_depth(sn_store *st, const char *sink, uint64_t *pending, uint64_t *dead,
                            uint64_t *delivered);

#endif
