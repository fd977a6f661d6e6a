/*
 * engine.h -- the aggregator's detection engine: global baselines per (service, model, metric)
 * and every detector on top of them, turning sidecar events and local alerts into anomalies
 * (anomaly.h).
 *
 * PURE: no I/O, no clock, no locks. Every call takes its time from the event or from `now`
 * (unix nanoseconds on the caller's clock, normally the loop's CLOCK_REALTIME). One owner: the
 * loop thread. Memory is bounded: the baseline table has a byte budget (least recently updated
 * keys are evicted), the per-(service, model) state and the budget state have key limits (new
 * keys are refused and counted when full). Allocation happens only when a key is created.
 *
 * What it detects (docs/aggregator.md, "Detection"):
 *   per event and metric   Z-score, IQR, MAD and static threshold against the key's global
 *                          baseline (or its hour-of-week baseline when seasonal baselines are
 *                          on), combined by the spike rule (min_agree detectors agreeing,
 *                          persistence, critical-for-all passes alone); the value is learnt
 *                          unless it was reported; latency and cost also feed a CUSUM on
 *                          interval means (shared/detect/drift.h) for slow drift;
 *   per (service, model)   the error rate of a sliding time window (binomial z-test against
 *                          max(floor, k x the baseline rate)); throughput (tokens per second of
 *                          wall time in fixed buckets) below a fraction of its EWMA for long
 *                          enough, evaluated in sn_engine_tick so silence counts; PSI of the
 *                          input-token distribution and Jensen-Shannon divergence of the
 *                          finish-reason mix, recent window against a reference window;
 *   per service (and user) cost budgets per minute/hour/day/month, soft and hard levels;
 *   sidecar local alerts   confirmed against the global baseline, or discarded.
 *
 * Emission: every anomaly goes to the caller's sn_engine_emit_fn before the call returns. The
 * anomaly is the engine's; the callback copies what it keeps and must not call back into the
 * engine.
 */
#ifndef SN_ENGINE_H
#define SN_ENGINE_H

#include "aggregate.h"
#include "alert.h"
#include "anomaly.h"
#include "baseline.h"
#include "config.h"
#include "detect/ensemble.h"
#include "detect/settings.h"
#include "event.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sn_engine sn_engine;

#define SN_ENGINE_BUDGETS_MAX SN_CONFIG_LIST_MAX /* budget rules */
#define SN_ENGINE_DRIFT_BINS  6                  /* input-token PSI bins (5 baseline quantiles) */
#define SN_ENGINE_FINISH_CATS 5 /* stop, length, tool_calls, content_filter, other */
#define SN_ENGINE_ERROR_TYPES 3 /* error.type heavy hitters kept per (service, model) */

/* Per-metric overrides. Every field may say "inherit" (NAN for numbers, index 0 for the
 * enums), meaning the value of the engine-wide `detect` section. */
typedef enum sn_engine_tristate {
    SN_ENGINE_INHERIT = 0,
    SN_ENGINE_ON,
    SN_ENGINE_OFF
} sn_engine_tristate;

/* Metric transform: "log" scores ln(1 + x) (x >= 0), which makes the heavy-tailed metrics of
 * LLM calls (latency, tokens, cost) close to normal, so the Z-score, IQR and MAD rules hold
 * their nominal false-positive rates. The baselines keep raw values (quantiles are mapped, the
 * log moments are kept per key), and anomalies report values, baselines and thresholds in the
 * metric's own unit. "none" scores x as is. */
typedef enum sn_engine_transform { SN_TRANSFORM_NONE = 0, SN_TRANSFORM_LOG } sn_engine_transform;

typedef struct sn_engine_detector_override {
    int enabled;         /* sn_engine_tristate */
    double threshold;    /* zscore/mad: threshold, iqr: k, cusum: h; NAN = inherit */
    double high;         /* zscore/mad: high, iqr: high_k, cusum: high */
    double critical;     /* zscore/mad: critical, iqr: critical_k, cusum: critical */
    int64_t min_samples; /* 0 = inherit */
    int64_t persistence; /* consecutive violations before an anomaly; 0 = inherit */
} sn_engine_detector_override;

typedef struct sn_engine_metric_config {
    bool enabled;  /* score this metric at all (error_rate is never ensemble-scored) */
    int transform; /* sn_engine_transform; not live (the baseline holds transformed values) */
    int direction; /* 0 inherit (each detector's own), else 1 + sn_direction */
    sn_engine_detector_override zscore, iqr, mad, cusum;
    double cusum_k;        /* NAN = inherit */
    int threshold_enabled; /* sn_engine_tristate */
    double upper_warn;     /* static levels, NAN = inherit (the detect section's, off by default) */
    double upper_critical;
    double lower_warn;
    double lower_critical;
} sn_engine_metric_config;

typedef struct sn_engine_config {
    /* Baselines (not live: sn_engine_set_config refuses changes). */
    int baseline_mode;       /* sn_baseline_mode: "exact" or "compact"; default compact */
    int64_t window;          /* rolling window in samples; default 1000 */
    int64_t memory_budget;   /* bytes for baselines (per-key state included); default 256 MiB */
    int64_t max_pairs;       /* (service, model) states; default 100000 */
    int64_t max_budget_keys; /* budget states (service or service+user); default 100000 */
    int64_t idle_expiry;     /* keys idle this long are removed by tick; ns; default 24 h */
    bool seasonal;           /* hour-of-week baselines as well (default false; not live) */
    int seasonal_slots;      /* 0: hour of week (168 slots), 1: hour of day (24) */
    /* Detection defaults for every metric. */
    sn_ensemble_config detect;
    int64_t persist[SN_DETECT_KIND_COUNT]; /* consecutive violations; zscore/iqr/mad 3, cusum 1
                                              (unused: see drift_*), threshold 1 */
    int64_t persist_critical;              /* a critical verdict needs only this many; default 1 */
    int64_t drift_interval;  /* CUSUM: interval whose mean is one step; ns; default 60 s */
    int64_t drift_min_calls; /* CUSUM: values per interval at least; default 30 */
    int64_t drift_reference; /* CUSUM: reference span in intervals; default 60 */
    int64_t resume_learning; /* after this many anomalous values in a row the key learns them
                                (the new normal); default 50 */
    int64_t warmup;          /* a key with fewer samples learns every value, even reported
                                ones; default 100 */
    int64_t summary_refresh; /* recompute a key's summary every this many samples after its
                                warm-up (every sample before); default 32 */
    sn_engine_metric_config metrics[SN_METRIC_COUNT];
    /* Error rate per (service, model). */
    bool error_enabled;
    int64_t error_window;    /* ns; default 60 s (six buckets) */
    int64_t error_min_calls; /* no verdict below this many calls in the window; default 20 */
    double error_floor;      /* absolute floor of the allowed rate; default 0.05 */
    double error_k;          /* allowed = max(floor, k x baseline rate); default 2.0 */
    double error_z;          /* binomial z-test threshold; default 3.0 */
    /* Throughput per (service, model). */
    bool throughput_enabled;
    int64_t tp_bucket;      /* ns; default 10 s */
    int64_t tp_duration;    /* low for longer than this fires; ns; default 60 s */
    double tp_ratio;        /* low = under this fraction of the baseline rate; default 0.5 */
    double tp_alpha;        /* EWMA weight of a bucket in the baseline rate; default 0.1 */
    int64_t tp_min_buckets; /* buckets learnt before a verdict; default 30 */
    double tp_min_calls;    /* baseline calls per bucket needed for a verdict; default 5 */
    int64_t tp_grace;       /* a bucket closes this long after its end (late events); 5 s */
    int64_t tp_relearn;     /* low this long: the low rate becomes the baseline; ns; 15 min */
    /* Distribution drift per (service, model). */
    bool drift_enabled;
    int64_t drift_window;       /* calls per window (reference and recent); default 500 */
    int64_t drift_min_baseline; /* input-token baseline samples before the bins freeze; 200 */
    double psi_threshold;       /* input-token PSI above this fires; default 0.2 */
    double js_threshold;        /* finish-reason JS divergence (base 2) above this; 0.1 */
    /* Budgets: "service:period:amount_usd[:per_user]", service "*" = each service. */
    sn_config_list budgets;
    double budget_soft_ratio; /* default 0.8 (hard: 1.0) */
    /* Sidecar local alerts. */
    double cold_trust; /* confidence factor when the global baseline is cold; default 0.8 */
} sn_engine_config;

/* What the engine counts evaluations and anomalies of: the ensemble's detectors (same values
 * as sn_detector_kind), then the engine's own checks. Names: sn_engine_check_name(). */
typedef enum sn_engine_check {
    SN_CHECK_ZSCORE = SN_DETECT_ZSCORE,
    SN_CHECK_IQR = SN_DETECT_IQR,
    SN_CHECK_MAD = SN_DETECT_MAD,
    SN_CHECK_CUSUM = SN_DETECT_CUSUM,
    SN_CHECK_THRESHOLD = SN_DETECT_THRESHOLD,
    SN_CHECK_BUDGET = SN_DETECT_BUDGET,
    SN_CHECK_ERROR_RATE,   /* a window's error-rate test */
    SN_CHECK_THROUGHPUT,   /* a closed throughput bucket */
    SN_CHECK_TOKEN_DRIFT,  /* an input-token PSI window */
    SN_CHECK_FINISH_DRIFT, /* a finish-reason JS window */
    SN_CHECK_LOCAL,        /* a sidecar local alert */
    SN_CHECK_COUNT
} sn_engine_check;

/* "z_score", "iqr", ..., "error_rate", "throughput", "token_drift", "finish_reason_drift",
 * "local_alert"; "unknown" when out of range. Static storage. */
const char *sn_engine_check_name(sn_engine_check c);

/* Counters for /metrics and the API. */
typedef struct sn_engine_stats {
    uint64_t events;                      /* events observed */
    uint64_t values;                      /* (event, metric) values scored */
    uint64_t evaluations[SN_CHECK_COUNT]; /* ready verdicts / evaluations per check */
    uint64_t violations[SN_CHECK_COUNT];  /* anomalous verdicts before filtering */
    uint64_t anomalies[SN_CHECK_COUNT];   /* anomalies emitted, by check */
    uint64_t anomalies_by_type[SN_ANOMALY_TYPE_COUNT];
    uint64_t suppressed;           /* anomalous values held back by persistence filtering */
    uint64_t local_confirmed;      /* local alerts the global baseline agreed with */
    uint64_t local_discarded;      /* local alerts the global baseline found normal */
    uint64_t local_trusted;        /* local alerts emitted unconfirmed (global cold start) */
    uint64_t local_suppressed;     /* alerts the sidecars' rate limits held back (their counts) */
    uint64_t keys;                 /* baseline keys now (global + seasonal) */
    uint64_t bytes;                /* accounted bytes now: baselines + pair and budget states */
    uint64_t evictions;            /* baseline keys evicted for the budget, ever */
    uint64_t expired;              /* baseline keys and states removed as idle, ever */
    uint64_t pairs;                /* (service, model) states now */
    uint64_t budget_keys;          /* budget states now */
    uint64_t refused;              /* events/values not tracked: a key limit or a bad key */
    uint64_t late;                 /* events too late for their throughput bucket */
    uint64_t relearned;            /* keys that adopted a new normal after a long anomaly */
    uint64_t aggregates;           /* GenAI metric aggregates applied (sn_engine_aggregate) */
    uint64_t aggregate_calls;      /* calls they counted (operation duration points) */
    uint64_t aggregate_tp_skipped; /* aggregates longer than a throughput bucket: not in it */
} sn_engine_stats;

/* Receives one anomaly; `a` lives until the callback returns. */
typedef void (*sn_engine_emit_fn)(const sn_anomaly *a, void *ud);

/* Fills cfg with every default above (and the ensemble's, contracts.md); budgets empty. */
void sn_engine_config_defaults(sn_engine_config *cfg);

/* Validates cfg (ranges, level order per metric after inheritance, budget rules). Returns 0, or
 * -EINVAL with a one-line message naming the setting under prefix ("engine") in err:
 * "config: engine.metrics.latency_ms.zscore.high: must be >= threshold". */
int sn_engine_config_validate(const sn_engine_config *cfg, const char *prefix,
                              sn_config_error *err);

/* The ensemble config effective for metric m (defaults with m's overrides applied) and its
 * per-detector persistence. Never fails; the result is valid when cfg validated. */
void sn_engine_config_resolve(const sn_engine_config *cfg, sn_metric m, sn_ensemble_config *out,
                              int64_t persist[SN_DETECT_KIND_COUNT]);

/* Creates an engine with a copy of cfg and stores it in *out (the caller destroys it). seed
 * is mixed into the key hashes (pass random bytes). Returns 0, -EINVAL with err filled for a
 * bad config, or -ENOMEM. *out is untouched on failure. */
int sn_engine_create(sn_engine **out, const sn_engine_config *cfg, uint64_t seed,
                     sn_config_error *err);

/* Frees the engine and all its state. NULL is a no-op. */
void sn_engine_destroy(sn_engine *e);

/* Replaces the configuration in one step: validated first, and nothing changes on failure
 * (-EINVAL, err names the setting -- also for a change to a setting that is not live: the
 * baseline fields, seasonal, transforms). Budget state whose rule (service, period, per_user)
 * still exists keeps what it spent; other budget state is dropped. Detector state is kept. */
int sn_engine_set_config(sn_engine *e, const sn_engine_config *cfg, sn_config_error *err);

/* The configuration in force (the engine's copy). */
const sn_engine_config *sn_engine_get_config(const sn_engine *e);

/* Runs every detector on one event (its time is ev->end_unix_nano) and emits the anomalies
 * that pass persistence filtering. Events with an empty service are counted and ignored.
 * Returns the number of anomalies emitted. Allocates only to create keys. */
unsigned sn_engine_observe(sn_engine *e, const sn_event *ev, sn_engine_emit_fn emit, void *ud);

/* sn_engine_observe on evs[0..n) in order -- the same results, anomalies and counters -- for a
 * caller with a batch at hand (an ingest request): with many (service, model) pairs it finds
 * each event's pair a few events ahead and starts loading the pair's state while earlier events
 * are scored, so the cache misses of a large table overlap. Returns the anomalies emitted. */
unsigned sn_engine_observe_batch(sn_engine *e, const sn_event *evs, size_t n,
                                 sn_engine_emit_fn emit, void *ud);

/* Applies one GenAI metric aggregate (aggregate.h: one histogram point of a (service, model)
 * that sent no spans; docs/aggregator.md, "GenAI metrics"):
 *   latency_ms points (operation duration, one value per call) -- count calls and error_count
 *     errors to the pair's error-rate window, and the calls to its throughput bucket;
 *   input_tokens / output_tokens points -- sum tokens to the throughput bucket, cost_usd (when
 *     known) to the budgets;
 *   every point of successful calls with a known sum -- its mean (sum / count) is scored by the
 *     ensemble against the key's baseline (service, model, metric) and learnt as one sample,
 *     like one event's value; an anomaly carries calls = count (context.signal "metrics").
 * Throughput takes an aggregate only when its interval fits one bucket (start known and
 * end - start <= throughput.bucket); longer ones are counted in aggregate_tp_skipped, as their
 * tokens cannot be placed in time. Points with an empty service or count 0 are refused.
 * Returns the number of anomalies emitted. Allocates only to create keys. */
unsigned sn_engine_aggregate(sn_engine *e, const sn_aggregate *g, sn_engine_emit_fn emit, void *ud);

/* Confirms a sidecar's local alert against the global baseline of its key: anomalous there ->
 * emitted with source SIDECAR (confidence raised by the agreement); quiet -> discarded and
 * counted; key unknown or in cold start -> emitted trusting the sidecar, confidence x
 * cold_trust. Does not learn and does not step CUSUM. The anomaly keeps the alert's own time;
 * `now` is the loop's time of arrival (kept for symmetry with tick; not used today). Returns 1
 * when emitted, 0 otherwise (also for an alert with an empty service or a bad metric). */
int sn_engine_local_alert(sn_engine *e, const sn_local_alert *a, int64_t now,
                          sn_engine_emit_fn emit, void *ud);

/* sn_engine_local_alert for a copy sent ahead of its batch (sequence 0): judged the same way,
 * but an alert that is not emitted leaves every counter alone -- its copy in the batch is judged
 * again, against the batch's events, and counted then. Counted once when emitted (the batch's
 * copy is then skipped by the caller). */
int sn_engine_local_alert_ahead(sn_engine *e, const sn_local_alert *a, int64_t now,
                                sn_engine_emit_fn emit, void *ud);

/* Periodic work, every second from the loop: closes throughput buckets that ended before
 * now - tp_grace and fires throughput drops (silence included); removes idle keys and states.
 * Returns the number of anomalies emitted. */
unsigned sn_engine_tick(sn_engine *e, int64_t now, sn_engine_emit_fn emit, void *ud);

/* Fills *out with the engine's counters. */
void sn_engine_get_stats(const sn_engine *e, sn_engine_stats *out);

/* ---- snapshots: baselines that survive a restart ---------------------------------------------
 *
 * Every baseline key (global and seasonal) can be written out as a blob (shared/baseline.h's
 * per-entry format, its user area holding the key's detector state) under a text key:
 *
 *     "g/<metric>/<service length>/<service><model>"   (global; "s/..." seasonal, model + slot)
 *
 * A key that learns or whose detector state changes joins a dirty list (an O(1) link kept in
 * its per-key state) and leaves it when written, so periodic snapshots write only what changed
 * and each call costs O(keys written), whatever the size of the table. Keys the engine drops by
 * itself (evicted for the budget, expired when idle) after they were written are queued (at most
 * SN_ENGINE_DROPPED_MAX; beyond that the queue is marked lost) and handed out as deletions.
 * What is not saved: the per-(service, model) windows (error rate, throughput, drift) -- short
 * windows relearnt within minutes, and a restored throughput baseline would judge the
 * restart's own silence as a drop. The budget spend is saved apart (sn_engine_budgets_export). */

#define SN_ENGINE_DROPPED_MAX 1024u /* dropped keys remembered for deletion */
/* The longest snapshot key text, NUL included. */
#define SN_ENGINE_SNAPSHOT_KEY_MAX (2 + 32 + 8 + 2 * SN_NAME_MAX + 16)

/* Receives one key: blob != NULL is its current state (len bytes, borrowed for the call) to
 * store under key; blob == NULL means the key is gone and its snapshot should be deleted. A
 * non-zero return stops the snapshot (the key stays dirty). */
typedef int (*sn_engine_snapshot_fn)(const char *key, const void *blob, size_t len, void *ud);

typedef struct sn_engine_snapshot_result {
    uint64_t written; /* keys handed out with a blob */
    uint64_t deleted; /* dropped keys handed out for deletion */
    bool complete;    /* no dirty key or deletion is left (false: call again) */
    bool lost_drops;  /* the dropped-key queue overflowed since the last call: some snapshots
                         of gone keys were not handed out (see sn_engine_snapshot_live) */
} sn_engine_snapshot_result;

/* Hands out pending deletions, then the dirty keys in the order they changed (`all`: every
 * key is marked dirty first, an O(keys) walk), at most max_keys in all (0: no limit); a key
 * leaves the dirty list when cb returned 0 for it. Bounded work per call: call again while
 * !res->complete. Allocates one buffer of the largest blob on first use (kept until destroy).
 * Returns 0; the first non-zero cb return; -ENOMEM. *res (may be NULL) is filled in every case. */
int sn_engine_snapshot(sn_engine *e, bool all, size_t max_keys, sn_engine_snapshot_fn cb, void *ud,
                       sn_engine_snapshot_result *res);

/* Restores one key from a snapshot written by sn_engine_snapshot. The key is restored not
 * dirty. Returns 0; 1 when the snapshot came from a version with another per-key detector
 * state (its size differs): the learned statistics are restored, the detector state (streaks,
 * drift reference) starts afresh, and the key is dirty so the next snapshot rewrites it; -EBADMSG
 * for a corrupt blob, a key text that does not parse or does not match the blob, or detector state
 * out of range; -EPROTO for a blob this configuration cannot hold (mode, sketch alpha, window,
 * seasonal baselines off, another format version); -EEXIST when the key is already there; -ENOMEM.
 * Nothing changes on failure. Restore before the first event: restoring may evict keys like any new
 * key. */
int sn_engine_restore(sn_engine *e, const char *key, const void *blob, size_t len);

/* Whether a snapshot key names a key the engine holds now (for a full clean-up of stored
 * snapshots after the dropped-key queue overflowed). A key that does not parse is not live. */
bool sn_engine_snapshot_live(const sn_engine *e, const char *key);

/* The global baseline table (read-only use: the REST API's baselines), in raw units. Metrics
 * with the log transform are scored in log space (sn_engine_metric_transform). */
sn_baseline *sn_engine_baselines(sn_engine *e);
sn_engine_transform sn_engine_metric_transform(const sn_engine *e, sn_metric m);

/* ---- budget spend that survives a restart ---------------------------------------------------
 *
 * Each budget state (rule, service, user) is handed out as plain values; a rule is named by
 * its (service pattern, period, per_user), as sn_engine_set_config keeps state across rule
 * changes, so a restored amount follows its rule even when the rule list was reordered or the
 * amount changed. */

typedef struct sn_engine_budget {
    const char *rule_service; /* the rule's service, "*" for each service */
    sn_period period;
    bool per_user;
    const char *service;  /* the service spending */
    const char *user;     /* per-user rules: the user; else "" */
    int64_t period_index; /* sn_period_index of the period the spend belongs to */
    double spent;
    bool soft_fired, hard_fired;
    int64_t last_seen; /* ns of the last event (export only) */
} sn_engine_budget;

/* Receives one budget state (strings borrowed for the call); non-zero stops the walk and the
 * state stays dirty. */
typedef int (*sn_engine_budget_fn)(const sn_engine_budget *b, void *ud);

/* Hands out every budget state that spent since it was last handed out (`all`: every one),
 * oldest first. O(budget states). Returns 0 or the first non-zero cb return. */
int sn_engine_budgets_export(sn_engine *e, bool all, sn_engine_budget_fn cb, void *ud);

/* Restores one budget state (before the first event) when its rule still exists and `now` is in
 * the same period. Returns 0; -ENOENT (no such rule now); -ESTALE (another period: it starts
 * from zero); -EEXIST; -EINVAL (bad values); -ENOSPC (max_budget_keys) or -ENOMEM. */
int sn_engine_budget_restore(sn_engine *e, const sn_engine_budget *b, int64_t now);

/* One budget across replicas: each replica adds what it spent since the last sync to a shared
 * per-period total (Redis INCRBYFLOAT) and takes the total as its spend, so the levels are
 * judged on the spend of every replica. collect hands out at most max states that spent since
 * their last sync, with the amount to add; apply takes the total back. No engine call may come
 * between the two (the handles point into the engine's state). */
typedef struct sn_engine_budget_sync {
    sn_engine_budget b; /* who, and the local view of the period */
    double delta;       /* spent here since the last sync (in this period) */
    void *state;        /* the engine's handle, for apply */
} sn_engine_budget_sync;

size_t sn_engine_budgets_sync_collect(sn_engine *e, size_t max, sn_engine_budget_sync *out);

/* Sets the state's spend to max(its own, global): global is the shared total after adding
 * s->delta. Ignored when the period rolled over since collect or global is not finite. */
void sn_engine_budgets_sync_apply(sn_engine *e, const sn_engine_budget_sync *s, double global);

/* ---- merged views: one global key's baseline across replicas -----------------------------------
 *
 * With several replicas each one learns from the part of the traffic it receives. A replica
 * publishes its key blobs (sn_engine_view_export) and merges the other replicas' blobs of the
 * same key into a read-only view (sn_engine_view_merge): the union of every replica's rolling
 * window (the compact sketches merge exactly, bucket counts add), log-space moments combined
 * by weight (Chan), and that view becomes the key's scoring summary until the next merge. The
 * key's own statistics, detector state and snapshots stay local; only the global table is
 * merged (seasonal keys are not). Compact mode only: a window of raw samples is not merged. */

#define SN_ENGINE_VIEW_MAX 16u /* contributions merged into one view, this replica's included */

typedef struct sn_engine_view {
    sn_summary raw;    /* the merged window, in the metric's own unit */
    unsigned replicas; /* contributions merged, this replica's included (1: local only) */
    unsigned skipped;  /* blobs refused: corrupt, another key or configuration, too many */
    uint64_t local_n;  /* this replica's window samples */
} sn_engine_view;

/* The text key of global key (service, model, m) as snapshots and views name it
 * ("g/<metric>/<service length>/<service><model>") into buf. */
void sn_engine_global_key(const char *service, const char *model, sn_metric m, char *buf,
                          size_t cap);

/* Serialises the global key (service, model, m) for other replicas into *blob / *len. The blob is
 * the engine's (valid until the next engine call). Returns 0, -ENOENT (no such key) or -ENOMEM. */
int sn_engine_view_export(sn_engine *e, const char *service, const char *model, sn_metric m,
                          const void **blob, size_t *len);

/* Merges the global key (service, model, m) with n blobs of other replicas (borrowed) into its
 * scoring view, kept until the next call for that key; with no usable blob the key goes back
 * to its local summary. Each blob is validated as a snapshot is (a bad one is skipped and
 * counted in out->skipped); at most SN_ENGINE_VIEW_MAX contributions are merged. Fills *out.
 * Returns 0; -ENOENT when the key is not here; -EPROTO in exact mode; -ENOMEM. */
int sn_engine_view_merge(sn_engine *e, const char *service, const char *model, sn_metric m,
                         unsigned n, const void *const *blobs, const size_t *lens,
                         sn_engine_view *out);

/* Drops every merged view (each key is scored on its local summary again). O(keys). */
void sn_engine_view_clear_all(sn_engine *e);

/* Replicas in the key's merged view (0: none, scored locally). en from sn_engine_baselines. */
unsigned sn_engine_view_replicas(sn_engine *e, const sn_baseline_entry *en);

/* --- configuration descriptors ---------------------------------------------------------- */

extern const char *const sn_engine_tristate_names[];  /* "inherit", "true", "false" */
extern const char *const sn_engine_direction_names[]; /* "inherit", "both", "upper", "lower" */
extern const char *const sn_engine_transform_names[]; /* "none", "log" */
extern const char *const sn_engine_mode_names[];      /* "exact", "compact" */
extern const char *const sn_engine_seasonal_names[];  /* "hour_of_week", "hour_of_day" */

#define SN__ENG_FLAGS_D (SN_CONFIG_HAS_MIN | SN_CONFIG_HAS_MAX | SN_CONFIG_LIVE)
#define SN__ENG_BOOL(p, T, F, d, h)                                                                \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_BOOL, T, F, d, h), .flags = SN_CONFIG_LIVE                            \
    }
#define SN__ENG_INT(p, T, F, d, lo, hi, h)                                                         \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_INT, T, F, d, h), .flags = SN__ENG_FLAGS_D, .imin = (lo),             \
                                               .imax = (hi)                                        \
    }
#define SN__ENG_DBL(p, T, F, d, lo, hi, h)                                                         \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_DOUBLE, T, F, d, h), .flags = SN__ENG_FLAGS_D, .dmin = (lo),          \
                                                  .dmax = (hi)                                     \
    }
#define SN__ENG_POS(p, T, F, d, h)                                                                 \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_DOUBLE, T, F, d, h),                                                  \
            .flags = SN_CONFIG_HAS_MIN | SN_CONFIG_MIN_EXCL | SN_CONFIG_LIVE, .dmin = 0.0          \
    }
#define SN__ENG_DUR(p, T, F, d, lo, hi, h)                                                         \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_DURATION, T, F, d, h), .flags = SN__ENG_FLAGS_D, .imin = (lo),        \
                                                    .imax = (hi)                                   \
    }
#define SN__ENG_ENUM(p, T, F, d, c, h, fl)                                                         \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_ENUM, T, F, d, h), .choices = (c), .flags = (fl)                      \
    }
/* An optional positive number: "" (the default) or "off" = NAN = inherit. */
#define SN__ENG_OPT(p, T, F, h)                                                                    \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_DOUBLE, T, F, "", h),                                                 \
            .flags = SN_CONFIG_OPTIONAL | SN_CONFIG_HAS_MIN | SN_CONFIG_MIN_EXCL | SN_CONFIG_LIVE, \
            .dmin = 0.0                                                                            \
    }
#define SN__ENG_LEVEL(p, T, F, d, h)                                                               \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_DOUBLE, T, F, d, h),                                                  \
            .flags = SN_CONFIG_OPTIONAL | SN_CONFIG_HAS_MIN | SN_CONFIG_HAS_MAX | SN_CONFIG_LIVE,  \
            .dmin = -1e300, .dmax = 1e300                                                          \
    }

/* The engine-wide settings of one detector: P.name.{enabled,THR,high,critical,min_samples,
 * direction,persistence}; K is its sn_detector_kind. */
#define SN__ENG_DEFAULTS(P, T, F, name, K, thr, hi, crit, dthr, dhi, dcrit, dpersist)              \
    SN__ENG_BOOL(P "." #name ".enabled", T, F.detect.name##_enabled, "true",                       \
                 "run the " #name " detector"),                                                    \
        SN__ENG_POS(P "." #name "." #thr, T, F.detect.name.thr, dthr,                              \
                    #name ": anomaly from here (medium severity)"),                                \
        SN__ENG_POS(P "." #name "." #hi, T, F.detect.name.hi, dhi, #name ": high from here"),      \
        SN__ENG_POS(P "." #name "." #crit, T, F.detect.name.crit, dcrit,                           \
                    #name ": critical from here"),                                                 \
        SN__ENG_INT(P "." #name ".min_samples", T, F.detect.name.min_samples, "10", 1, 100000000,  \
                    #name ": no verdict while the baseline has fewer samples"),                    \
        SN__ENG_ENUM(P "." #name ".direction", T, F.detect.name.direction, "both",                 \
                     sn_direction_names, #name ": anomalous side (both, upper, lower)",            \
                     SN_CONFIG_LIVE),                                                              \
        SN__ENG_INT(P "." #name ".persistence", T, F.persist[K], dpersist, 1, 255,                 \
                    #name ": consecutive violations before an anomaly")

/* The per-metric override of one detector. EN: default of .enabled. */
#define SN__ENG_DET(P, T, F, name, thr, EN)                                                        \
    SN__ENG_ENUM(P "." #name ".enabled", T, F.name.enabled, EN, sn_engine_tristate_names,          \
                 #name ": run it for this metric (inherit, true, false)", SN_CONFIG_LIVE),         \
        SN__ENG_OPT(P "." #name "." #thr, T, F.name.threshold, #name ": anomaly from here"),       \
        SN__ENG_OPT(P "." #name ".high", T, F.name.high, #name ": high severity from here"),       \
        SN__ENG_OPT(P "." #name ".critical", T, F.name.critical,                                   \
                    #name ": critical severity from here"),                                        \
        SN__ENG_INT(P "." #name ".min_samples", T, F.name.min_samples, "0", 0, 100000000,          \
                    #name ": no verdict below this many samples (0 = inherit)"),                   \
        SN__ENG_INT(P "." #name ".persistence", T, F.name.persistence, "0", 0, 255,                \
                    #name ": consecutive violations before an anomaly (0 = inherit)")

/* The settings of metric M (a literal such as "latency_ms", index I) under P ".metrics." M;
 * DIR, TR, CUSUM and EN are its default direction, transform, cusum.enabled and enabled. */
#define SN__ENG_METRIC(P, T, F, M, I, DIR, TR, CUSUM, EN)                                          \
    SN__ENG_BOOL(P ".metrics." M ".enabled", T, F.metrics[I].enabled, EN,                          \
                 "score this metric's single calls"),                                              \
        SN__ENG_ENUM(P ".metrics." M ".transform", T, F.metrics[I].transform, TR,                  \
                     sn_engine_transform_names,                                                    \
                     "none, or log: score ln(1 + x) (heavy-tailed metrics)", 0),                   \
        SN__ENG_ENUM(P ".metrics." M ".direction", T, F.metrics[I].direction, DIR,                 \
                     sn_engine_direction_names,                                                    \
                     "anomalous side for every detector: inherit, both, upper, lower",             \
                     SN_CONFIG_LIVE),                                                              \
        SN__ENG_DET(P ".metrics." M, T, F.metrics[I], zscore, threshold, "inherit"),               \
        SN__ENG_DET(P ".metrics." M, T, F.metrics[I], iqr, k, "inherit"),                          \
        SN__ENG_DET(P ".metrics." M, T, F.metrics[I], mad, threshold, "inherit"),                  \
        SN__ENG_DET(P ".metrics." M, T, F.metrics[I], cusum, h, CUSUM),                            \
        SN__ENG_OPT(P ".metrics." M ".cusum.k", T, F.metrics[I].cusum_k,                           \
                    "cusum: slack per step in sigmas"),                                            \
        SN__ENG_ENUM(P ".metrics." M ".threshold.enabled", T, F.metrics[I].threshold_enabled,      \
                     "inherit", sn_engine_tristate_names,                                          \
                     "static threshold for this metric (inherit, true, false)", SN_CONFIG_LIVE),   \
        SN__ENG_LEVEL(P ".metrics." M ".threshold.upper_warn", T, F.metrics[I].upper_warn, "off",  \
                      "medium above this value (off = none)"),                                     \
        SN__ENG_LEVEL(P ".metrics." M ".threshold.upper_critical", T, F.metrics[I].upper_critical, \
                      "off", "critical above this value"),                                         \
        SN__ENG_LEVEL(P ".metrics." M ".threshold.lower_warn", T, F.metrics[I].lower_warn, "off",  \
                      "medium below this value (off = none)"),                                     \
        SN__ENG_LEVEL(P ".metrics." M ".threshold.lower_critical", T, F.metrics[I].lower_critical, \
                      "off", "critical below this value")

/* Every engine setting under prefix P (a string literal, e.g. "engine"), bound to the
 * sn_engine_config member F of the program's config struct T. The default texts repeat
 * sn_engine_config_defaults(); the unit test keeps them equal. Call
 * sn_engine_config_defaults(&cfg.F) before loading (fields without a descriptor: the detectors'
 * standard-deviation floors and threshold severities). Baseline fields, seasonal and the
 * transforms are not live (SN_CONFIG_LIVE unset); the rest may change through
 * sn_config_apply_json followed by sn_engine_set_config. */
#define SN_ENGINE_DESCRIPTORS(P, T, F)                                                             \
    SN__ENG_ENUM(P ".baseline.mode", T, F.baseline_mode, "compact", sn_engine_mode_names,          \
                 "baseline statistics: exact (window) or compact (sketches, ~1.7 KiB/key)", 0),    \
        {SN__CFG(P ".baseline.window", SN_CONFIG_INT, T, F.window, "1000",                         \
                 "rolling baseline window in samples"),                                            \
         .flags = SN_CONFIG_HAS_MIN | SN_CONFIG_HAS_MAX, .imin = 2, .imax = 1000000},              \
        {SN__CFG(P ".baseline.memory_budget", SN_CONFIG_SIZE, T, F.memory_budget, "256MiB",        \
                 "bytes for baselines and per-key state; least recently updated keys go first"),   \
         .flags = SN_CONFIG_HAS_MIN | SN_CONFIG_HAS_MAX, .imin = 1 << 20,                          \
         .imax = INT64_C(1) << 40},                                                                \
        {SN__CFG(P ".baseline.max_pairs", SN_CONFIG_INT, T, F.max_pairs, "100000",                 \
                 "(service, model) states for error rate, throughput and drift"),                  \
         .flags = SN_CONFIG_HAS_MIN | SN_CONFIG_HAS_MAX, .imin = 1, .imax = 10000000},             \
        {SN__CFG(P ".baseline.max_budget_keys", SN_CONFIG_INT, T, F.max_budget_keys, "100000",     \
                 "budget states (per service, or per service and user)"),                          \
         .flags = SN_CONFIG_HAS_MIN | SN_CONFIG_HAS_MAX, .imin = 1, .imax = 10000000},             \
        SN__ENG_DUR(P ".baseline.idle_expiry", T, F.idle_expiry, "24h", SN_NS_PER_SEC,             \
                    INT64_C(366) * 86400 * SN_NS_PER_SEC, "keys idle this long are removed"),      \
        {SN__CFG(P ".seasonal.enabled", SN_CONFIG_BOOL, T, F.seasonal, "false",                    \
                 "also keep baselines per hour of week (or day) and score against them")},         \
        SN__ENG_ENUM(P ".seasonal.period", T, F.seasonal_slots, "hour_of_week",                    \
                     sn_engine_seasonal_names, "seasonal slots: hour_of_week or hour_of_day", 0),  \
        SN__ENG_DEFAULTS(P ".detect", T, F, zscore, SN_DETECT_ZSCORE, threshold, high, critical,   \
                         "3.0", "4.0", "6.0", "3"),                                                \
        SN__ENG_DEFAULTS(P ".detect", T, F, iqr, SN_DETECT_IQR, k, high_k, critical_k, "1.5",      \
                         "2.25", "3.0", "3"),                                                      \
        SN__ENG_DEFAULTS(P ".detect", T, F, mad, SN_DETECT_MAD, threshold, high, critical, "3.5",  \
                         "5.0", "7.0", "3"),                                                       \
        SN__ENG_DEFAULTS(P ".detect", T, F, cusum, SN_DETECT_CUSUM, h, high, critical, "5.0",      \
                         "7.5", "10.0", "1"),                                                      \
        SN__ENG_DBL(P ".detect.cusum.k", T, F.detect.cusum.k, "0.5", 0.0, 1000.0,                  \
                    "cusum: slack per step, in standard deviations"),                              \
        SN__ENG_DUR(P ".detect.cusum.interval", T, F.drift_interval, "60s", SN_NS_PER_SEC,         \
                    INT64_C(86400) * SN_NS_PER_SEC, "cusum: one step is the mean of this long"),   \
        SN__ENG_INT(P ".detect.cusum.min_calls", T, F.drift_min_calls, "30", 2, 1000000,           \
                    "cusum: values per interval at least (quiet keys get longer intervals)"),      \
        SN__ENG_INT(P ".detect.cusum.reference", T, F.drift_reference, "60", 1, 1000000,           \
                    "cusum: the in-control reference spans about this many intervals"),            \
        SN__ENG_BOOL(P ".detect.threshold.enabled", T, F.detect.threshold_enabled, "false",        \
                     "run the static threshold detector (levels per metric)"),                     \
        SN__ENG_INT(P ".detect.threshold.persistence", T, F.persist[SN_DETECT_THRESHOLD], "1", 1,  \
                    255, "threshold: consecutive violations before an anomaly"),                   \
        SN__ENG_INT(P ".detect.min_agree", T, F.detect.min_agree, "2", 1, 3,                       \
                    "statistical detectors (Z-score, IQR, MAD) that must agree on a value"),       \
        SN__ENG_INT(P ".detect.persistence_critical", T, F.persist_critical, "1", 1, 255,          \
                    "consecutive critical verdicts before an anomaly"),                            \
        SN__ENG_INT(P ".detect.resume_learning", T, F.resume_learning, "50", 1, 1000000,           \
                    "anomalous values in a row after which a key learns them (new normal)"),       \
        SN__ENG_INT(P ".detect.warmup", T, F.warmup, "100", 0, 100000000,                          \
                    "a key with fewer samples learns every value, anomalous or not"),              \
        SN__ENG_INT(P ".detect.summary_refresh", T, F.summary_refresh, "32", 1, 1000,              \
                    "recompute a key's baseline summary every this many samples after warm-up"),   \
        SN__ENG_METRIC(P, T, F, "latency_ms", SN_METRIC_LATENCY_MS, "upper", "log", "inherit",     \
                       "true"),                                                                    \
        SN__ENG_METRIC(P, T, F, "ttft_ms", SN_METRIC_TTFT_MS, "upper", "log", "false", "true"),    \
        SN__ENG_METRIC(P, T, F, "input_tokens", SN_METRIC_INPUT_TOKENS, "upper", "log", "false",   \
                       "true"),                                                                    \
        SN__ENG_METRIC(P, T, F, "output_tokens", SN_METRIC_OUTPUT_TOKENS, "upper", "log", "false", \
                       "true"),                                                                    \
        SN__ENG_METRIC(P, T, F, "total_tokens", SN_METRIC_TOTAL_TOKENS, "upper", "log", "false",   \
                       "true"),                                                                    \
        SN__ENG_METRIC(P, T, F, "cost_usd", SN_METRIC_COST_USD, "upper", "log", "inherit",         \
                       "true"),                                                                    \
        SN__ENG_METRIC(P, T, F, "tokens_per_second", SN_METRIC_TOKENS_PER_SECOND, "lower", "log",  \
                       "false", "false"),                                                          \
        SN__ENG_BOOL(P ".error_rate.enabled", T, F.error_enabled, "true",                          \
                     "error rate of a sliding window per (service, model)"),                       \
        SN__ENG_DUR(P ".error_rate.window", T, F.error_window, "60s", SN_NS_PER_SEC,               \
                    INT64_C(86400) * SN_NS_PER_SEC, "sliding window (six buckets)"),               \
        SN__ENG_INT(P ".error_rate.min_calls", T, F.error_min_calls, "20", 1, 100000000,           \
                    "no verdict below this many calls in the window"),                             \
        SN__ENG_DBL(P ".error_rate.floor", T, F.error_floor, "0.05", 0.0, 1.0,                     \
                    "the allowed error rate is at least this"),                                    \
        SN__ENG_DBL(P ".error_rate.k", T, F.error_k, "2.0", 0.0, 1000.0,                           \
                    "allowed error rate = max(floor, k x baseline rate)"),                         \
        SN__ENG_POS(P ".error_rate.z", T, F.error_z, "3.0", "binomial z-test threshold"),          \
        SN__ENG_BOOL(P ".throughput.enabled", T, F.throughput_enabled, "true",                     \
                     "tokens per second of wall time per (service, model)"),                       \
        SN__ENG_DUR(P ".throughput.bucket", T, F.tp_bucket, "10s", SN_NS_PER_SEC,                  \
                    INT64_C(3600) * SN_NS_PER_SEC, "bucket length"),                               \
        SN__ENG_DUR(P ".throughput.duration", T, F.tp_duration, "60s", SN_NS_PER_SEC,              \
                    INT64_C(86400) * SN_NS_PER_SEC, "low for longer than this fires"),             \
        SN__ENG_DBL(P ".throughput.ratio", T, F.tp_ratio, "0.5", 0.0, 1.0,                         \
                    "low = under this fraction of the baseline rate"),                             \
        SN__ENG_DBL(P ".throughput.alpha", T, F.tp_alpha, "0.1", 0.0001, 1.0,                      \
                    "EWMA weight of each bucket in the baseline rate"),                            \
        SN__ENG_INT(P ".throughput.min_buckets", T, F.tp_min_buckets, "30", 1, 1000000,            \
                    "buckets learnt before a verdict"),                                            \
        SN__ENG_DBL(P ".throughput.min_calls", T, F.tp_min_calls, "5", 0.0, 1e9,                   \
                    "baseline calls per bucket needed for a verdict"),                             \
        SN__ENG_DUR(P ".throughput.grace", T, F.tp_grace, "5s", 0, INT64_C(3600) * SN_NS_PER_SEC,  \
                    "a bucket closes this long after it ends (late events)"),                      \
        SN__ENG_DUR(P ".throughput.relearn", T, F.tp_relearn, "15m", SN_NS_PER_SEC,                \
                    INT64_C(30) * 86400 * SN_NS_PER_SEC,                                           \
                    "low this long: the low rate becomes the baseline"),                           \
        SN__ENG_BOOL(P ".drift.enabled", T, F.drift_enabled, "true",                               \
                     "input-token PSI and finish-reason JS divergence per (service, model)"),      \
        SN__ENG_INT(P ".drift.window", T, F.drift_window, "500", 50, 65535,                        \
                    "calls per window (reference and recent)"),                                    \
        SN__ENG_INT(P ".drift.min_baseline", T, F.drift_min_baseline, "200", 10, 100000000,        \
                    "input-token baseline samples before the PSI bins are fixed"),                 \
        SN__ENG_POS(P ".drift.psi_threshold", T, F.psi_threshold, "0.2",                           \
                    "input-token PSI above this is a drift"),                                      \
        SN__ENG_DBL(P ".drift.js_threshold", T, F.js_threshold, "0.1", 0.0, 1.0,                   \
                    "finish-reason Jensen-Shannon divergence (base 2) above this is a drift"),     \
        {SN__CFG(P ".budgets", SN_CONFIG_LIST, T, F.budgets, "",                                   \
                 "cost budgets: service:period:amount_usd[:per_user], service * = each"),          \
         .flags = SN_CONFIG_LIVE},                                                                 \
        {SN__CFG(P ".budget_soft_ratio", SN_CONFIG_DOUBLE, T, F.budget_soft_ratio, "0.8",          \
                 "soft budget alert at this fraction of the amount"),                              \
         .flags = SN__ENG_FLAGS_D | SN_CONFIG_MIN_EXCL, .dmin = 0.0, .dmax = 1.0},                 \
        SN__ENG_DBL(P ".local_alerts.cold_trust", T, F.cold_trust, "0.8", 0.0, 1.0,                \
                    "confidence factor of a local alert the global baseline cannot judge yet")

#endif
