/*
 * shared_state.h -- state that several sentinel-aggregator replicas share through Redis
 * (redis.url / SENTINEL_REDIS_URL; unset = embedded, this module is then not created).
 *
 *   ingest de-duplication  sentinel:seq:<sidecar_id> = highest sequence applied by any replica,
 *                          sentinel:inflight:<sidecar_id> = "<sequence> <replica id>" of the
 *                          batch being applied (PX inflight_ttl). Before a batch is applied,
 *                          one EVAL answers atomically: applied already (DUPLICATE), in flight
 *                          on some replica (retry later), or claimed (in flight here). After
 *                          the apply, a second EVAL raises the applied sequence (commit); a
 *                          failed apply ends the claim (release) so the resend is applied.
 *   local alerts applied   sentinel:lalert:<alert_id> = replica id (applied; PX 7 days) or
 *                          "ahead <replica id>" (a copy ahead of its batch being judged; PX
 *                          inflight_ttl). One EVAL per copy claims it atomically (SET NX): a
 *                          claimed copy is applied, a copy applied elsewhere is skipped, and a
 *                          copy meeting another replica's judgement ahead is retried later. An
 *                          early copy is then confirmed (made an applied claim) or released.
 *   alert de-duplication   sentinel:alert:<service>:<model>:<anomaly type> = replica id, SET
 *                          only when absent (or renewed by its holder) with PX = the dedup
 *                          window: the replica holding it owns the alert, the others ignore
 *                          the anomaly (counted). Answers are remembered per key (ours: half
 *                          the window, renewed then; not ours: a quarter, at most 1 s), so a
 *                          burst of anomalies costs one round trip per key and interval.
 *   baselines              sentinel:baseline:<engine key text> = hash of replica id ->
 *                          "<8-byte little-endian wall ms><engine blob>", PEXPIRE ttl on every
 *                          publish: each replica writes its own field and reads the others'
 *                          (fields older than the ttl are ignored and deleted).
 *   budgets                sentinel:budget:<rule>:<period>:<per_user>:<service>:<user>:<period
 *                          index> = the spend of every replica in that period (INCRBYFLOAT).
 *   leadership             sentinel:leader = replica id with PX = lease ttl, taken when absent
 *                          and renewed only by its holder (compare-and-renew); given back at
 *                          destroy. sn_shared_is_leader() says whether the lease is ours and
 *                          still valid by our own clock (the renewal time + ttl - 1/4 ttl).
 *
 * Failure: every call has a timeout (cfg.timeout_ns); a transport or error reply drops the
 * connection and the next call reconnects, at most once per reconnect_ns (calls in between fail
 * at once with -ENOTCONN). Callers fail open on a negative return: the ingest path keeps its
 * local table, an anomaly becomes a local alert, and leadership is lost when the lease can no
 * longer be renewed. Every such fallback is counted (sn_shared_stats).
 *
 * Threads: two connections, each behind its own mutex: one for the ingest handler thread
 * (sequences), one for the loop thread (alerts, lease). Any function may be called from any
 * thread; the blocking time is bounded by timeout_ns per call.
 */
#ifndef SN_SHARED_STATE_H
#define SN_SHARED_STATE_H

#include "metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_SHARED_ID_MAX     64 /* longest replica id, without the NUL */
#define SN_SHARED_PREFIX_MAX 64 /* longest key prefix, without the NUL */

typedef struct sn_shared sn_shared;

typedef struct sn_shared_config {
    const char *url;         /* redis://[[user]:password@]host[:port][/db]; required */
    const char *key_prefix;  /* NULL or "": "sentinel:" */
    const char *replica_id;  /* NULL or "": hostname plus a random suffix */
    int64_t timeout_ns;      /* connect and per-command timeout, > 0 (default 250 ms) */
    int64_t reconnect_ns;    /* least time between connection attempts (default 1 s) */
    int64_t lease_ttl_ns;    /* leadership lease, >= 1 ms (default 10 s) */
    int64_t seq_ttl_ns;      /* a sidecar's sequence key lives this long after its last
                                batch (default 7 days, like ingest.sidecar_idle) */
    int64_t inflight_ttl_ns; /* an in-flight claim of a replica that died ends after this
                                (default 30 s; longer than an apply can take) */
} sn_shared_config;

typedef struct sn_shared_stats {
    uint64_t seq_claimed;           /* batches this replica claimed */
    uint64_t seq_duplicates;        /* batches another claim already covered */
    uint64_t seq_released;          /* claims given back after a failed apply */
    uint64_t seq_in_flight;         /* batches another claim had in flight (answered retry) */
    uint64_t alert_owned;           /* anomalies whose de-dup key is ours */
    uint64_t alert_foreign;         /* anomalies ignored: another replica owns the alert */
    uint64_t leader_acquired;       /* times the lease was taken */
    uint64_t leader_lost;           /* times it was lost (taken over, or not renewable) */
    uint64_t fail_open;             /* calls answered locally because Redis failed */
    uint64_t connects;              /* successful connections */
    uint64_t connect_failures;      /* failed connection attempts */
    uint64_t baseline_published;    /* baseline keys written (and read back) */
    uint64_t baseline_read;         /* other replicas' blobs received */
    uint64_t baseline_expired;      /* stale replica fields deleted */
    uint64_t budget_added;          /* budget spend added to the shared totals */
    uint64_t local_alert_claimed;   /* local alert copies this replica claimed */
    uint64_t local_alert_copies;    /* copies another claim had applied (skipped) */
    uint64_t local_alert_in_flight; /* copies met while an early copy was judged elsewhere */
    uint64_t local_alert_released;  /* claims given back (early copy not confirmed, failed batch) */
} sn_shared_stats;

/* Fills the defaults above. Never fails. */
void sn_shared_config_init(sn_shared_config *cfg);

/* Parses the URL and prepares the module; does not need Redis to be up (the first call
 * connects). Returns 0 and sets *out, or -EINVAL (bad URL, prefix or id; the field is named in
 * err) or -ENOMEM. Free with sn_shared_destroy. */
int sn_shared_create(const sn_shared_config *cfg, sn_shared **out, char *err, size_t errlen);

/* Gives the lease back when it is ours, closes both connections and frees. NULL is a no-op. */
void sn_shared_destroy(sn_shared *s);

/* This replica's id (NUL-terminated, owned by s). */
const char *sn_shared_replica_id(const sn_shared *s);

/* Claims batch seq of sidecar_id before it is applied. *prev is the highest applied sequence
 * (0: none). Returns 0 when claimed (apply it, then commit or release), 1 when seq was applied
 * already (answer DUPLICATE), 2 when a claim at or above seq is in flight on some replica
 * (answer retry later), or a negative errno when Redis could not answer (fail open: counted). */
int sn_shared_seq_claim(sn_shared *s, const char *sidecar_id, uint64_t seq, uint64_t *prev);

/* After the claimed batch was applied: raises the applied sequence to seq (never lowers it) and
 * ends the claim. Returns 0 or a negative errno (counted as fail-open: the claim then expires
 * after inflight_ttl and a replay to another replica would be applied again). */
int sn_shared_seq_commit(sn_shared *s, const char *sidecar_id, uint64_t seq);

/* Ends the claim of a batch that was not applied, if it is still this replica's. Returns 0 or a
 * negative errno (then the claim expires after inflight_ttl). */
int sn_shared_seq_release(sn_shared *s, const char *sidecar_id, uint64_t seq);

/* The highest applied sequence of sidecar_id into *out (0: none). 0 or a negative errno. */
int sn_shared_seq_get(sn_shared *s, const char *sidecar_id, uint64_t *out);

/* Claims the de-dup key of (service, model, type) for window_ns (or renews it when it is ours).
 * Returns 1 when this replica owns the alert, 0 when another one does (ignore the anomaly), or
 * a negative errno when Redis could not answer (fail open: raise it locally; counted). */
int sn_shared_alert_claim(sn_shared *s, const char *service, const char *model, const char *type,
                          int64_t window_ns);

/* Local alerts applied, by the sidecar's alert_id (a local alert comes twice: ahead of its batch
 * and in it; docs/aggregator.md, "Local alerts ahead of their batch"). All on the loop
 * connection; a negative errno when Redis could not answer (fail open: the caller's own table
 * decides; counted).
 *
 * claim: one atomic claim of a copy before it is applied. A copy in a batch (ahead false) is
 * claimed as applied for ttl_ns; a copy ahead of its batch (ahead true) as pending for
 * inflight_ttl, until confirm or release. Returns 1 when this call claimed it (apply it), 0
 * when some replica applied it (skip the copy), 2 when a copy ahead of its batch is being
 * judged on another replica (answer retry later: its outcome decides).
 * confirm: the copy ahead was emitted: our pending claim becomes an applied one for ttl_ns.
 *   1, or 0 when the claim was no longer ours (it had expired).
 * release: the claimed copy was not applied (an early copy the baseline did not confirm, or a
 *   batch that failed): deletes the claim if it is still ours, so a later copy can claim it.
 *   1 when deleted, 0 when it was not ours. */
int sn_shared_local_alert_claim(sn_shared *s, const char *alert_id, bool ahead, int64_t ttl_ns);
int sn_shared_local_alert_confirm(sn_shared *s, const char *alert_id, int64_t ttl_ns);
int sn_shared_local_alert_release(sn_shared *s, const char *alert_id, bool ahead);

/* Takes or renews the lease; call about once a second (well within lease_ttl). Returns 1 when
 * this replica leads, 0 when another one does, or a negative errno (then not leader). Logs
 * leadership changes. */
int sn_shared_lease_tick(sn_shared *s);

/* Whether this replica holds a lease that is still valid by its own clock. */
bool sn_shared_is_leader(sn_shared *s);

/* ---- baselines ---- */

#define SN_SHARED_EXCHANGE_MAX 1024u      /* keys in one exchange */
#define SN_SHARED_VIEW_MAX     15u        /* other replicas' blobs handed out per key */
#define SN_SHARED_BLOB_MAX     (1u << 20) /* largest blob published */

/* Item i of an exchange: its key text (the engine's global key) and this replica's blob, both
 * valid until the next call of this function. Non-zero: skip the item. May be called again for
 * the same i (to delete stale fields). */
typedef int (*sn_shared_blob_get_fn)(void *ud, size_t i, const char **key, const void **blob,
                                     size_t *len);
/* The other replicas' live blobs of item i (n may be 0), borrowed for the call. */
typedef void (*sn_shared_blob_put_fn)(void *ud, size_t i, unsigned n, const void *const *blobs,
                                      const size_t *lens);

typedef struct sn_shared_exchange_result {
    size_t published;    /* items written and read back */
    size_t remote_blobs; /* other replicas' live blobs handed to put */
    size_t stale_removed;
} sn_shared_exchange_result;

/* Publishes and reads n (<= SN_SHARED_EXCHANGE_MAX) baseline keys in one pipeline on the loop
 * connection: per item HSET <prefix>baseline:<key> <replica id> <time+blob>, PEXPIRE ttl,
 * HGETALL; then put() per item with the other replicas' fields published within ttl_ns (by
 * their wall clocks: keep clocks within a fraction of the ttl); stale fields are deleted.
 * The whole exchange must finish within 2 x timeout, or the connection is dropped. Returns 0,
 * or a negative errno (Redis down or slow: counted as fail-open; items not yet handed to put
 * are left as they were). */
int sn_shared_baselines_exchange(sn_shared *s, size_t n, int64_t ttl_ns, sn_shared_blob_get_fn get,
                                 sn_shared_blob_put_fn put, void *ud,
                                 sn_shared_exchange_result *res);

/* ---- budgets ---- */

/* Adds delta[i] to the shared total <prefix>budget:<keys[i]> (INCRBYFLOAT) and sets its expiry
 * to ttl_ns[i], for n (<= SN_SHARED_EXCHANGE_MAX) keys in one pipeline (within 2 x timeout);
 * totals[i] is the total after the addition (NAN when the reply was not a number). Returns 0 or
 * a negative errno (fail-open, counted; what was added before the failure stays added). */
int sn_shared_budget_add(sn_shared *s, size_t n, const char *const *keys, const double *delta,
                         const int64_t *ttl_ns, double *totals);

/* Registers sentinel_aggregator_shared_state_total{operation, outcome} (the counters of
 * sn_shared_stats, those so far included) and the gauge sentinel_aggregator_leader in m, which
 * must outlive s. Call once, before other threads use s. Returns 0 or the error of
 * sn_metrics_register (message in err). */
int sn_shared_register_metrics(sn_shared *s, sn_metrics *m, char *err, size_t errlen);

/* Copies the counters. Any thread. */
void sn_shared_stats_get(sn_shared *s, sn_shared_stats *out);

#endif
