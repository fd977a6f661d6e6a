/*
 * engine.c -- the aggregator's detection engine (see engine.h and docs/aggregator.md,
 * "Detection").
 *
 * State, all owned by the loop thread:
 *
 *   global    sn_baseline per (service, model, metric); each entry's user area is a key_state
 *             (CUSUM sums, persistence streaks, a cached summary);
 *   seasonal  optional second sn_baseline keyed by (service, model + "\x1f" + slot, metric);
 *   pairs     one pair_state per (service, model): error window, throughput buckets, drift
 *             histograms; a chained hash plus an update-ordered list (idle expiry), at most
 *             max_pairs;
 *   budgets   one budget_state per (rule, service[, user]); same structure, max_budget_keys.
 *
 * Invariants: a pair's tp_closed only grows, and every ring slot it reads has idx > tp_closed or
 * is stale; counters only grow; `bytes` of each ktable is the sum of its nodes' chunk sizes plus
 * its index.
 */
#include "engine.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bytes.h"
#include "detect/drift.h"
#include "detect/threshold.h"

#define ERR_SLOTS      6   /* the error window is six buckets */
#define TP_SLOTS       8   /* open throughput buckets per pair */
#define TP_LEARN_CAP   1.5 /* a bucket learnt into the throughput baseline counts at most this x */
#define PSI_EDGES      (SN_ENGINE_DRIFT_BINS - 1)
#define DRIFT_EPS      1e-4
#define HOUR_NS        (INT64_C(3600) * SN_NS_PER_SEC)
#define KT_MAX_SLOTS   (1u << 20)
#define PREFETCH_AHEAD 2 /* sn_engine_observe_batch: events between the pipeline's stages */
#define PREFETCH_MIN_PAIRS                                                                         \
    1024               /* from this many pairs (~8 K keys, ~15 MB) prefetch the pair's entries */
#define QUIET_BITS  10 /* the quiet ranges' table (quiet_check): 1 024 slots, 64 KiB */
#define QUIET_SLOTS (1u << QUIET_BITS)

const char *const sn_engine_tristate_names[] = {"inherit", "true", "false", NULL};
const char *const sn_engine_direction_names[] = {"inherit", "both", "upper", "lower", NULL};
const char *const sn_engine_transform_names[] = {"none", "log", NULL};
const char *const sn_engine_mode_names[] = {"exact", "compact", NULL};
const char *const sn_engine_seasonal_names[] = {"hour_of_week", "hour_of_day", NULL};

static const char *const check_names[SN_CHECK_COUNT] = {
    [SN_CHECK_ZSCORE] = "z_score",
    [SN_CHECK_IQR] = "iqr",
    [SN_CHECK_MAD] = "mad",
    [SN_CHECK_CUSUM] = "cusum",
    [SN_CHECK_THRESHOLD] = "threshold",
    [SN_CHECK_BUDGET] = "budget",
    [SN_CHECK_ERROR_RATE] = "error_rate",
    [SN_CHECK_THROUGHPUT] = "throughput",
    [SN_CHECK_TOKEN_DRIFT] = "token_drift",
    [SN_CHECK_FINISH_DRIFT] = "finish_reason_drift",
    [SN_CHECK_LOCAL] = "local_alert",
};

static const char *const finish_names[SN_ENGINE_FINISH_CATS] = {"stop", "length", "tool_calls",
                                                                "content_filter", "other"};

/* ---- per-key state (the baseline entry's user area) ---------------------------------------- */

typedef struct key_state {
    sn_drift drift;         /* CUSUM on interval means (latency and cost drift) */
    double lmean, lvar;     /* log transform: moments of ln(1 + x) over about a window */
    float cache[10];        /* the scoring summary (see key_summary), as floats */
    uint32_t cache_n;       /* its n */
    uint32_t since_summary; /* samples learnt since the summary was computed */
    uint16_t anomalous_run; /* emitted anomalies in a row */
    uint8_t streak[SN_DETECT_KIND_COUNT]; /* consecutive violations per detector */
    uint8_t summary_ok;
    uint8_t dirty;    /* changed since it was last handed to a snapshot: on the dirty list */
    uint8_t stored;   /* a snapshot of it exists (written or restored): delete it when dropped */
    uint8_t seasonal; /* which table the entry is in (for the dirty list) */
    uint8_t view;     /* > 0: the cached summary is a merged view of this many replicas'
                         windows (sn_engine_view_merge), kept until the next merge */
    sn_baseline_entry *dprev, *dnext; /* the engine's dirty list (oldest change first) */
} key_state;

/* The user area (and so every stored snapshot) has this size; a snapshot of another size (an
 * older version's) restores its statistics only and the key's detector state starts afresh
 * (sn_engine_restore returns 1), so a change here is a format change: 152 bytes with the
 * per-call CUSUM, 216 with the interval-mean drift state. */
_Static_assert(sizeof(key_state) == 216, "key_state size is part of the snapshot format");
/* quiet_check copies and compares the cached summary and its n as one run of bytes. */
_Static_assert(offsetof(key_state, cache_n) == offsetof(key_state, cache) + 10 * sizeof(float),
               "key_state's cache_n must follow its cache");
#define QUIET_SUM_BYTES (10 * sizeof(float) + sizeof(uint32_t))
/* The run of bytes itself: taken from the struct, not from the cache array, which it outlasts. */
#define QUIET_SUM_OF(ks) ((const unsigned char *)(ks) + offsetof(key_state, cache))

/* A range of values known to be quiet (sn_ensemble_quiet_valid true, with the same ready
 * detectors) for one cached summary and metric: see quiet_check. */
typedef struct quiet_slot {
    unsigned char sum[QUIET_SUM_BYTES]; /* a copy of the key's cache and cache_n */
    uint8_t metric;                     /* the metric + 1; 0 = an empty slot */
    uint8_t ready;                      /* the ready detectors' bits */
    double lo, hi;                      /* every value in [lo, hi] is quiet */
} quiet_slot;

/* ---- keyed tables with an update-ordered list ----------------------------------------------- */

typedef struct knode {
    struct knode *hnext, *prev, *next;
    uint64_t hash;
    int64_t last_seen;
    uint32_t bytes; /* accounted chunk size */
} knode;

typedef struct ktable {
    knode **index;
    uint32_t mask;
    uint64_t count, max;
    size_t bytes; /* index + nodes */
    knode *oldest, *newest;
    uint64_t removed; /* nodes kt_remove has freed: a change tells a cached node pointer is stale */
} ktable;

typedef struct err_slot {
    int64_t idx;
    uint32_t calls, errors;
} err_slot;

typedef struct tp_slot {
    int64_t idx;
    double tokens;
    uint32_t calls;
} tp_slot;

typedef struct etype_slot {
    char name[SN_SHORT_MAX];
    float count;
} etype_slot;

typedef struct pair_state {
    knode node;
    /* error window */
    err_slot err[ERR_SLOTS];
    int64_t err_head; /* newest bucket index seen */
    int64_t err_last_emit;
    double err_base;     /* baseline error rate: EWMA of closed buckets' rates */
    uint32_t err_base_n; /* buckets learnt */
    etype_slot etypes[SN_ENGINE_ERROR_TYPES];
    bool err_elevated;
    /* throughput */
    bool tp_started;
    bool tp_fired;
    tp_slot tp[TP_SLOTS];
    int64_t tp_closed;    /* last closed bucket index */
    int64_t tp_low_since; /* start of the first low bucket of the current run; 0 = not low */
    int64_t tp_last_emit;
    double tp_rate, tp_calls; /* EWMA of the bucket rate (tokens/s) and calls per bucket */
    uint32_t tp_learnt;
    /* input-token PSI: phase 0 no bins yet, 1 filling the reference, 2 recent windows */
    uint8_t psi_phase;
    uint8_t fr_phase; /* finish reasons: 1 reference, 2 recent (0 = never set: treated as 1) */
    uint16_t psi_n, fr_n;
    uint16_t psi_cur[SN_ENGINE_DRIFT_BINS];
    uint16_t fr_cur[SN_ENGINE_FINISH_CATS];
    float psi_ref[SN_ENGINE_DRIFT_BINS];
    float fr_ref[SN_ENGINE_FINISH_CATS];
    double psi_edges[PSI_EDGES];
    /* The pair's global baseline entries, one per metric, found once and kept (NULL: not looked
     * up yet): one hashed look-up per event instead of one per metric. An entry the table drops
     * (evicted, expired) is cleared here first by on_drop (pair_forget_entry); whoever else
     * removes a global entry must call pair_forget_entry before. */
    sn_baseline_entry *ent[SN_METRIC_COUNT];
    uint16_t model_off; /* names follow the struct: service NUL model NUL */
} pair_state;

typedef struct budget_rule {
    char service[SN_NAME_MAX]; /* "*" = every service */
    bool any;
    bool per_user;
    sn_budget_config bc;
} budget_rule;

typedef struct budget_state {
    knode node;
    uint8_t rule;
    bool dirty;    /* spent or fired since sn_engine_budgets_export last handed it out */
    bool unsynced; /* spent since the last global sync (sn_engine_budgets_sync_*) */
    double synced; /* the spend right after the last sync, in period synced_period */
    int64_t synced_period;
    sn_budget st;
    char service[SN_NAME_MAX];
    char user[SN_SHORT_MAX];
} budget_state;

struct sn_engine {
    sn_engine_config cfg;
    sn_ensemble_config ens[SN_METRIC_COUNT]; /* per-call detectors (CUSUM off: see drift) */
    uint64_t agree;                          /* detect.min_agree: the spike rule's agreement */
    bool drift_on[SN_METRIC_COUNT];          /* CUSUM enabled: run it on interval means */
    /* ens[m] passed sn_ensemble_config_validate when derive set it: evaluated unchecked */
    bool ens_valid[SN_METRIC_COUNT];
    sn_drift_config drift[SN_METRIC_COUNT];
    bool drift_valid[SN_METRIC_COUNT]; /* drift[m] passed sn_drift_config_validate in derive */
    int64_t persist[SN_METRIC_COUNT][SN_DETECT_KIND_COUNT];
    double learn_floor_a; /* 2 / (window + 1): the log-space EWMA's weight floor (key_learn) */
    budget_rule rules[SN_ENGINE_BUDGETS_MAX];
    unsigned nrules;
    sn_baseline *global;
    sn_baseline *seasonal;
    ktable pairs;
    ktable budgets;
    uint64_t seed;
    int64_t tp_tick_bucket; /* last closable bucket the tick walked to */
    int64_t last_expire;    /* when the tick last expired idle keys; 0 = never */
    sn_engine_stats st;
    /* snapshots (allocated on first use): one blob buffer and the ring of dropped keys */
    uint8_t *snap_buf;
    size_t snap_cap;
    char (*dropped)[SN_ENGINE_SNAPSHOT_KEY_MAX];
    unsigned drop_head, drop_count;
    bool drop_lost;
    sn_baseline_entry *dirty_head, *dirty_tail; /* keys changed since their last snapshot */
    /* merged views (allocated on first use): a scratch table that validates other replicas'
     * blobs and the sketch their windows are merged into */
    sn_baseline *view_table;
    sn_sketch *view_acc;
    /* quiet ranges of recently scored keys' summaries (quiet_check); cleared by derive */
    quiet_slot quiet[QUIET_SLOTS];
};

/* glibc malloc chunk of a request of n bytes (as shared/baseline.c counts). */
static size_t chunk_bytes(size_t n)
{
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

static uint64_t hash_bytes(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return (h ^ 0xff) * 0x100000001b3ull;
}

static uint64_t hash_final(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_seed(uint64_t seed)
{
    return 0xcbf29ce484222325ull ^ (seed * 0x9e3779b97f4a7c15ull);
}

/* Allocates the index of a table holding at most max nodes. Returns 0 or -ENOMEM. */
static int kt_init(ktable *t, uint64_t max)
{
    uint32_t slots = 64;
    while (slots < max && slots < KT_MAX_SLOTS)
        slots <<= 1;
    memset(t, 0, sizeof(*t));
    t->index = calloc(slots, sizeof(*t->index));
    if (t->index == NULL)
        return -ENOMEM;
    t->mask = slots - 1;
    t->max = max;
    t->bytes = chunk_bytes(slots * sizeof(*t->index));
    return 0;
}

static void kt_unlink_lru(ktable *t, knode *n)
{
    if (n->prev != NULL)
        n->prev->next = n->next;
    else
        t->oldest = n->next;
    if (n->next != NULL)
        n->next->prev = n->prev;
    else
        t->newest = n->prev;
    n->prev = n->next = NULL;
}

static void kt_append_lru(ktable *t, knode *n)
{
    n->prev = t->newest;
    n->next = NULL;
    if (t->newest != NULL)
        t->newest->next = n;
    else
        t->oldest = n;
    t->newest = n;
}

/* Links a node the caller allocated (hash and bytes set). */
static void kt_insert(ktable *t, knode *n)
{
    knode **slot = &t->index[n->hash & t->mask];
    n->hnext = *slot;
    *slot = n;
    kt_append_lru(t, n);
    t->count++;
    t->bytes += n->bytes;
}

/* Unlinks and frees a node. */
static void kt_remove(ktable *t, knode *n)
{
    knode **pp = &t->index[n->hash & t->mask];
    while (*pp != n)
        pp = &(*pp)->hnext;
    *pp = n->hnext;
    kt_unlink_lru(t, n);
    t->count--;
    t->bytes -= n->bytes;
    t->removed++;
    free(n);
}

/* Marks n most recently updated at time now. */
static void kt_touch(ktable *t, knode *n, int64_t now)
{
    if (now > n->last_seen)
        n->last_seen = now;
    if (t->newest != n) {
        kt_unlink_lru(t, n);
        kt_append_lru(t, n);
    }
}

/* Removes nodes idle for longer than idle_ns. Returns how many. */
static uint64_t kt_expire(ktable *t, int64_t now, int64_t idle_ns)
{
    uint64_t removed = 0;
    knode *n = t->oldest;
    while (n != NULL) {
        knode *next = n->next;
        if (now >= n->last_seen && (uint64_t)now - (uint64_t)n->last_seen > (uint64_t)idle_ns) {
            kt_remove(t, n);
            removed++;
        }
        n = next;
    }
    return removed;
}

static void kt_free(ktable *t)
{
    knode *n = t->oldest;
    while (n != NULL) {
        knode *next = n->next;
        free(n);
        n = next;
    }
    free(t->index);
    memset(t, 0, sizeof(*t));
}

/* ---- configuration ------------------------------------------------------------------------- */

const char *sn_engine_check_name(sn_engine_check c)
{
    if ((int)c < 0 || c >= SN_CHECK_COUNT)
        return "unknown";
    return check_names[c];
}

void sn_engine_config_defaults(sn_engine_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->baseline_mode = SN_BASELINE_COMPACT;
    cfg->window = SN_BASELINE_DEFAULT_WINDOW;
    cfg->memory_budget = (int64_t)SN_BASELINE_DEFAULT_BUDGET;
    cfg->max_pairs = 100000;
    cfg->max_budget_keys = 100000;
    cfg->idle_expiry = INT64_C(24) * HOUR_NS;
    cfg->seasonal = false;
    cfg->seasonal_slots = 0;
    sn_ensemble_config_defaults(&cfg->detect);
    cfg->detect.min_agree = 2; /* the spike rule: two of Z-score, IQR and MAD */
    cfg->persist[SN_DETECT_ZSCORE] = 3;
    cfg->persist[SN_DETECT_IQR] = 3;
    cfg->persist[SN_DETECT_MAD] = 3;
    cfg->persist[SN_DETECT_CUSUM] = 1;
    cfg->persist[SN_DETECT_THRESHOLD] = 1;
    cfg->persist[SN_DETECT_BUDGET] = 1;
    cfg->persist_critical = 1;
    cfg->drift_interval = 60 * SN_NS_PER_SEC;
    cfg->drift_min_calls = 30;
    cfg->drift_reference = 60;
    cfg->resume_learning = 50;
    cfg->warmup = 100;
    cfg->summary_refresh = 32;
    for (int m = 0; m < SN_METRIC_COUNT; m++) {
        sn_engine_metric_config *mc = &cfg->metrics[m];
        mc->enabled = true;
        mc->transform = SN_TRANSFORM_LOG;
        mc->direction = 1 + SN_DIR_UPPER;
        sn_engine_detector_override *d[] = {&mc->zscore, &mc->iqr, &mc->mad, &mc->cusum};
        for (int i = 0; i < 4; i++) {
            d[i]->enabled = SN_ENGINE_INHERIT;
            d[i]->threshold = d[i]->high = d[i]->critical = NAN;
            d[i]->min_samples = 0;
            d[i]->persistence = 0;
        }
        mc->cusum.enabled = SN_ENGINE_OFF;
        mc->cusum_k = NAN;
        mc->threshold_enabled = SN_ENGINE_INHERIT;
        mc->upper_warn = mc->upper_critical = mc->lower_warn = mc->lower_critical = NAN;
    }
    /* CUSUM watches latency and cost for slow drift; throughput's bad side is low. */
    cfg->metrics[SN_METRIC_LATENCY_MS].cusum.enabled = SN_ENGINE_INHERIT;
    cfg->metrics[SN_METRIC_COST_USD].cusum.enabled = SN_ENGINE_INHERIT;
    cfg->metrics[SN_METRIC_TOKENS_PER_SECOND].direction = 1 + SN_DIR_LOWER;
    /* A slow call is a latency matter; throughput drops come from the bucketed check. */
    cfg->metrics[SN_METRIC_TOKENS_PER_SECOND].enabled = false;
    cfg->metrics[SN_METRIC_ERROR_RATE].transform = SN_TRANSFORM_NONE;
    cfg->metrics[SN_METRIC_ERROR_RATE].direction = SN_ENGINE_INHERIT;
    cfg->error_enabled = true;
    cfg->error_window = 60 * SN_NS_PER_SEC;
    cfg->error_min_calls = 20;
    cfg->error_floor = 0.05;
    cfg->error_k = 2.0;
    cfg->error_z = 3.0;
    cfg->throughput_enabled = true;
    cfg->tp_bucket = 10 * SN_NS_PER_SEC;
    cfg->tp_duration = 60 * SN_NS_PER_SEC;
    cfg->tp_ratio = 0.5;
    cfg->tp_alpha = 0.1;
    cfg->tp_min_buckets = 30;
    cfg->tp_min_calls = 5.0;
    cfg->tp_grace = 5 * SN_NS_PER_SEC;
    cfg->tp_relearn = 15 * 60 * SN_NS_PER_SEC;
    cfg->drift_enabled = true;
    cfg->drift_window = 500;
    cfg->drift_min_baseline = 200;
    cfg->psi_threshold = 0.2;
    cfg->js_threshold = 0.1;
    cfg->budget_soft_ratio = 0.8;
    cfg->cold_trust = 0.8;
}

static void apply_det(const sn_engine_detector_override *o, bool *enabled, double *thr,
                      double *high, double *crit, uint64_t *min_samples, int64_t *persist)
{
    if (o->enabled == SN_ENGINE_ON)
        *enabled = true;
    else if (o->enabled == SN_ENGINE_OFF)
        *enabled = false;
    if (!isnan(o->threshold))
        *thr = o->threshold;
    if (!isnan(o->high))
        *high = o->high;
    if (!isnan(o->critical))
        *crit = o->critical;
    if (o->min_samples > 0)
        *min_samples = (uint64_t)o->min_samples;
    if (o->persistence > 0)
        *persist = o->persistence;
}

void sn_engine_config_resolve(const sn_engine_config *cfg, sn_metric m, sn_ensemble_config *out,
                              int64_t persist[SN_DETECT_KIND_COUNT])
{
    *out = cfg->detect;
    for (int k = 0; k < SN_DETECT_KIND_COUNT; k++)
        persist[k] = cfg->persist[k];
    if ((int)m < 0 || m >= SN_METRIC_COUNT)
        return;
    const sn_engine_metric_config *mc = &cfg->metrics[m];
    apply_det(&mc->zscore, &out->zscore_enabled, &out->zscore.threshold, &out->zscore.high,
              &out->zscore.critical, &out->zscore.min_samples, &persist[SN_DETECT_ZSCORE]);
    apply_det(&mc->iqr, &out->iqr_enabled, &out->iqr.k, &out->iqr.high_k, &out->iqr.critical_k,
              &out->iqr.min_samples, &persist[SN_DETECT_IQR]);
    apply_det(&mc->mad, &out->mad_enabled, &out->mad.threshold, &out->mad.high, &out->mad.critical,
              &out->mad.min_samples, &persist[SN_DETECT_MAD]);
    apply_det(&mc->cusum, &out->cusum_enabled, &out->cusum.h, &out->cusum.high,
              &out->cusum.critical, &out->cusum.min_samples, &persist[SN_DETECT_CUSUM]);
    if (!isnan(mc->cusum_k))
        out->cusum.k = mc->cusum_k;
    if (mc->direction > 0 && mc->direction <= 3) {
        sn_direction d = (sn_direction)(mc->direction - 1);
        out->zscore.direction = out->iqr.direction = out->mad.direction = d;
        out->cusum.direction = d;
    }
    if (mc->threshold_enabled == SN_ENGINE_ON)
        out->threshold_enabled = true;
    else if (mc->threshold_enabled == SN_ENGINE_OFF)
        out->threshold_enabled = false;
    if (!isnan(mc->upper_warn))
        out->threshold.upper_warn = mc->upper_warn;
    if (!isnan(mc->upper_critical))
        out->threshold.upper_critical = mc->upper_critical;
    if (!isnan(mc->lower_warn))
        out->threshold.lower_warn = mc->lower_warn;
    if (!isnan(mc->lower_critical))
        out->threshold.lower_critical = mc->lower_critical;
    if (mc->transform == SN_TRANSFORM_LOG) {
        /* In log space a scale floor relative to |mean| means nothing; an absolute 0.01 is a 1 %
         * change of the value: a constant baseline still alerts on a few percent, not on 0.1 %.
         * In compact mode quantiles are sketch buckets (relative accuracy alpha, so +-alpha in
         * log space): the quantile detectors cannot resolve an IQR below a few bucket widths,
         * so their scale is floored there (6 alpha for the IQR, 3 alpha for the MAD scale). */
        double q = cfg->baseline_mode == SN_BASELINE_COMPACT ? SN_BASELINE_DEFAULT_SKETCH_ALPHA : 0;
        out->zscore.min_stddev = out->cusum.min_stddev = 0.01;
        out->mad.min_scale = fmax(0.01, 3.0 * q);
        out->iqr.min_iqr = fmax(0.01 * 1.349, 6.0 * q);
        out->zscore.min_stddev_rel = out->cusum.min_stddev_rel = 0.0;
        out->mad.min_scale_rel = out->iqr.min_iqr_rel = 0.0;
    }
}

static int fail(sn_config_error *err, const char *prefix, const char *field, const char *msg)
{
    if (err != NULL)
        snprintf(err->msg, sizeof err->msg, "config: %s.%s: %s", prefix, field, msg);
    return -EINVAL;
}

/* Parses one budget rule "service:period:amount[:per_user]" (split from the right so service
 * names may hold ':'). Returns NULL or a static message. */
static const char *parse_budget(const char *text, double soft_ratio, budget_rule *out)
{
    char buf[SN_CONFIG_ITEM_MAX];
    size_t len = strnlen(text, sizeof buf);
    if (len >= sizeof buf)
        return "too long";
    memcpy(buf, text, len + 1);
    memset(out, 0, sizeof(*out));
    char *last = strrchr(buf, ':');
    if (last != NULL && strcmp(last + 1, "per_user") == 0) {
        out->per_user = true;
        *last = '\0';
    }
    char *amount = strrchr(buf, ':');
    if (amount == NULL)
        return "must be service:period:amount_usd[:per_user]";
    *amount++ = '\0';
    char *period = strrchr(buf, ':');
    if (period == NULL)
        return "must be service:period:amount_usd[:per_user]";
    *period++ = '\0';
    if (buf[0] == '\0')
        return "service must not be empty (use * for every service)";
    if (strlen(buf) >= SN_NAME_MAX)
        return "service name too long";
    sn_budget_config_defaults(&out->bc);
    if (sn_period_from_name(period, &out->bc.period) != 0)
        return "period must be minute, hour, day or month";
    char *end = NULL;
    errno = 0;
    double a = strtod(amount, &end);
    if (errno != 0 || end == amount || *end != '\0' || !(a > 0.0) || !isfinite(a))
        return "amount_usd must be a number > 0";
    out->bc.amount = a;
    out->bc.soft_ratio = soft_ratio;
    out->bc.hard_ratio = 1.0;
    memcpy(out->service, buf, strlen(buf) + 1);
    out->any = strcmp(buf, "*") == 0;
    return NULL;
}

int sn_engine_config_validate(const sn_engine_config *cfg, const char *prefix, sn_config_error *err)
{
    char path[SN_CONFIG_PATH_MAX];
    if (prefix == NULL)
        prefix = "engine";
    if (cfg->baseline_mode != SN_BASELINE_EXACT && cfg->baseline_mode != SN_BASELINE_COMPACT)
        return fail(err, prefix, "baseline.mode", "must be exact or compact");
    if (cfg->window < 2 || cfg->window > 1000000)
        return fail(err, prefix, "baseline.window", "must be an integer between 2 and 1000000");
    if (cfg->memory_budget < (1 << 20))
        return fail(err, prefix, "baseline.memory_budget", "must be at least 1MiB");
    if (cfg->max_pairs < 1 || cfg->max_budget_keys < 1)
        return fail(err, prefix,
                    cfg->max_pairs < 1 ? "baseline.max_pairs" : "baseline.max_budget_keys",
                    "must be >= 1");
    if (cfg->idle_expiry < SN_NS_PER_SEC)
        return fail(err, prefix, "baseline.idle_expiry", "must be at least 1s");
    if (cfg->seasonal_slots != 0 && cfg->seasonal_slots != 1)
        return fail(err, prefix, "seasonal.period", "must be hour_of_week or hour_of_day");
    snprintf(path, sizeof path, "%s.detect", prefix);
    int rc = sn_ensemble_settings_validate(&cfg->detect, path, err);
    if (rc != 0)
        return rc;
    for (int k = 0; k < SN_DETECT_KIND_COUNT; k++) {
        if (cfg->persist[k] < 1 || cfg->persist[k] > 255) {
            char f[64];
            snprintf(f, sizeof f, "detect.%s.persistence",
                     k == SN_DETECT_ZSCORE ? "zscore" : sn_detector_name((sn_detector_kind)k));
            return fail(err, prefix, f, "must be an integer between 1 and 255");
        }
    }
    if (cfg->persist_critical < 1 || cfg->persist_critical > 255)
        return fail(err, prefix, "detect.persistence_critical", "must be between 1 and 255");
    if (cfg->detect.min_agree < 1 || cfg->detect.min_agree > 3)
        return fail(err, prefix, "detect.min_agree", "must be between 1 and 3");
    if (cfg->drift_interval < SN_NS_PER_SEC)
        return fail(err, prefix, "detect.cusum.interval", "must be at least 1s");
    if (cfg->drift_min_calls < 2 || cfg->drift_min_calls > 1000000)
        return fail(err, prefix, "detect.cusum.min_calls", "must be between 2 and 1000000");
    if (cfg->drift_reference < 1 || cfg->drift_reference > 1000000)
        return fail(err, prefix, "detect.cusum.reference", "must be between 1 and 1000000");
    if (cfg->resume_learning < 1 || cfg->resume_learning > 65535)
        return fail(err, prefix, "detect.resume_learning", "must be between 1 and 65535");
    if (cfg->warmup < 0 || cfg->warmup > 100000000)
        return fail(err, prefix, "detect.warmup", "must be between 0 and 100000000");
    if (cfg->summary_refresh < 1 || cfg->summary_refresh > 1000)
        return fail(err, prefix, "detect.summary_refresh", "must be between 1 and 1000");
    for (int m = 0; m < SN_METRIC_COUNT; m++) {
        if (m == SN_METRIC_ERROR_RATE)
            continue;
        const sn_engine_metric_config *mc = &cfg->metrics[m];
        const char *name = sn_metric_name((sn_metric)m);
        char f[96];
        if (mc->transform != SN_TRANSFORM_NONE && mc->transform != SN_TRANSFORM_LOG) {
            snprintf(f, sizeof f, "metrics.%s.transform", name);
            return fail(err, prefix, f, "must be none or log");
        }
        if (mc->direction < 0 || mc->direction > 3) {
            snprintf(f, sizeof f, "metrics.%s.direction", name);
            return fail(err, prefix, f, "must be inherit, both, upper or lower");
        }
        const sn_engine_detector_override *d[] = {&mc->zscore, &mc->iqr, &mc->mad, &mc->cusum};
        static const char *const seg[] = {"zscore", "iqr", "mad", "cusum"};
        for (int i = 0; i < 4; i++) {
            if (d[i]->persistence < 0 || d[i]->persistence > 255) {
                snprintf(f, sizeof f, "metrics.%s.%s.persistence", name, seg[i]);
                return fail(err, prefix, f, "must be an integer between 0 and 255");
            }
            if (d[i]->min_samples < 0) {
                snprintf(f, sizeof f, "metrics.%s.%s.min_samples", name, seg[i]);
                return fail(err, prefix, f, "must be >= 0");
            }
        }
        sn_ensemble_config r;
        int64_t persist[SN_DETECT_KIND_COUNT];
        sn_engine_config_resolve(cfg, (sn_metric)m, &r, persist);
        snprintf(path, sizeof path, "%s.metrics.%s", prefix, name);
        rc = sn_ensemble_settings_validate(&r, path, err);
        if (rc != 0)
            return rc;
    }
    if (cfg->error_window < ERR_SLOTS * SN_NS_PER_MS)
        return fail(err, prefix, "error_rate.window", "must be at least 6ms");
    if (cfg->error_min_calls < 1)
        return fail(err, prefix, "error_rate.min_calls", "must be >= 1");
    if (!(cfg->error_floor >= 0.0 && cfg->error_floor < 1.0))
        return fail(err, prefix, "error_rate.floor", "must be in [0, 1)");
    if (!(cfg->error_k >= 0.0 && cfg->error_k <= 1000.0))
        return fail(err, prefix, "error_rate.k", "must be between 0 and 1000");
    if (!(cfg->error_z > 0.0 && isfinite(cfg->error_z)))
        return fail(err, prefix, "error_rate.z", "must be a number > 0");
    if (cfg->tp_bucket < SN_NS_PER_MS)
        return fail(err, prefix, "throughput.bucket", "must be at least 1ms");
    if (cfg->tp_duration < cfg->tp_bucket)
        return fail(err, prefix, "throughput.duration", "must be at least one bucket");
    if (!(cfg->tp_ratio > 0.0 && cfg->tp_ratio < 1.0))
        return fail(err, prefix, "throughput.ratio", "must be in (0, 1)");
    if (!(cfg->tp_alpha > 0.0 && cfg->tp_alpha <= 1.0))
        return fail(err, prefix, "throughput.alpha", "must be in (0, 1]");
    if (cfg->tp_min_buckets < 1)
        return fail(err, prefix, "throughput.min_buckets", "must be >= 1");
    if (!(cfg->tp_min_calls >= 0.0 && isfinite(cfg->tp_min_calls)))
        return fail(err, prefix, "throughput.min_calls", "must be >= 0");
    if (cfg->tp_grace < 0)
        return fail(err, prefix, "throughput.grace", "must be >= 0");
    if (cfg->tp_relearn < cfg->tp_duration)
        return fail(err, prefix, "throughput.relearn", "must be >= throughput.duration");
    if (cfg->drift_window < 50 || cfg->drift_window > 65535)
        return fail(err, prefix, "drift.window", "must be an integer between 50 and 65535");
    if (cfg->drift_min_baseline < 10)
        return fail(err, prefix, "drift.min_baseline", "must be >= 10");
    if (!(cfg->psi_threshold > 0.0 && isfinite(cfg->psi_threshold)))
        return fail(err, prefix, "drift.psi_threshold", "must be a number > 0");
    if (!(cfg->js_threshold > 0.0 && cfg->js_threshold < 1.0))
        return fail(err, prefix, "drift.js_threshold", "must be in (0, 1)");
    if (!(cfg->budget_soft_ratio > 0.0 && cfg->budget_soft_ratio <= 1.0))
        return fail(err, prefix, "budget_soft_ratio", "must be in (0, 1]");
    if (cfg->budgets.count > SN_ENGINE_BUDGETS_MAX)
        return fail(err, prefix, "budgets", "too many rules");
    for (uint32_t i = 0; i < cfg->budgets.count; i++) {
        budget_rule r;
        const char *msg = parse_budget(cfg->budgets.items[i], cfg->budget_soft_ratio, &r);
        if (msg != NULL) {
            char f[64];
            snprintf(f, sizeof f, "budgets[%u]", (unsigned)i);
            char m2[SN_CONFIG_ERROR_MAX / 2];
            snprintf(m2, sizeof m2, "%s (got \"%.80s\")", msg, cfg->budgets.items[i]);
            return fail(err, prefix, f, m2);
        }
    }
    if (!(cfg->cold_trust >= 0.0 && cfg->cold_trust <= 1.0))
        return fail(err, prefix, "local_alerts.cold_trust", "must be in [0, 1]");
    return 0;
}

static double to_model(const sn_engine *e, sn_metric m, double x);

/* Derives the resolved per-metric ensembles and the budget rules. cfg must be valid. */
static void derive(sn_engine *e)
{
    for (int m = 0; m < SN_METRIC_COUNT; m++) {
        sn_engine_config_resolve(&e->cfg, (sn_metric)m, &e->ens[m], e->persist[m]);
        /* Agreement is the engine's own rule (spike_agreement): the ensemble reports every
         * verdict. */
        e->ens[m].min_agree = 1;
        /* CUSUM runs on interval means (sn_drift), not on single calls. */
        e->drift_on[m] = e->ens[m].cusum_enabled;
        e->ens[m].cusum_enabled = false;
        sn_drift_config_defaults(&e->drift[m]);
        e->drift[m].cusum = e->ens[m].cusum;
        e->drift[m].interval = e->cfg.drift_interval;
        e->drift[m].min_calls = (uint32_t)e->cfg.drift_min_calls;
        e->drift[m].ref_intervals = (uint32_t)e->cfg.drift_reference;
        e->drift_valid[m] = sn_drift_config_validate(&e->drift[m]) == NULL;
        /* Static levels are written in the metric's unit; the ensemble scores in its space. */
        sn_threshold_config *th = &e->ens[m].threshold;
        double *lv[] = {&th->upper_warn, &th->upper_critical, &th->lower_warn, &th->lower_critical};
        for (int i = 0; i < 4; i++)
            if (!isnan(*lv[i]))
                *lv[i] = to_model(e, (sn_metric)m, *lv[i]);
        /* Checked once here so that every value can skip the check (metric_observe). */
        e->ens_valid[m] = sn_ensemble_config_validate(&e->ens[m], NULL) == NULL;
    }
    memset(e->quiet, 0, sizeof e->quiet); /* they were found with the old ensembles */
    e->agree = e->cfg.detect.min_agree;
    e->learn_floor_a = 2.0 / ((double)e->cfg.window + 1.0);
    e->nrules = 0;
    for (uint32_t i = 0; i < e->cfg.budgets.count; i++)
        if (parse_budget(e->cfg.budgets.items[i], e->cfg.budget_soft_ratio, &e->rules[e->nrules]) ==
            NULL)
            e->nrules++;
}

static void on_drop_global(const sn_baseline_entry *en, void *ud);
static void on_drop_seasonal(const sn_baseline_entry *en, void *ud);

static int make_baseline(sn_baseline **out, const sn_engine_config *cfg, uint64_t seed,
                         sn_engine *e, bool seasonal)
{
    sn_baseline_config bc;
    sn_baseline_config_init(&bc);
    bc.mode = (sn_baseline_mode)cfg->baseline_mode;
    bc.window = (uint32_t)cfg->window;
    bc.memory_budget = (size_t)cfg->memory_budget;
    bc.hash_seed = seed;
    bc.user_bytes = sizeof(key_state);
    bc.on_drop = seasonal ? on_drop_seasonal : on_drop_global;
    bc.on_drop_ud = e;
    return sn_baseline_create(out, &bc);
}

int sn_engine_create(sn_engine **out, const sn_engine_config *cfg, uint64_t seed,
                     sn_config_error *err)
{
    int rc = sn_engine_config_validate(cfg, "engine", err);
    if (rc != 0)
        return rc;
    sn_engine *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    e->cfg = *cfg;
    e->seed = seed;
    e->tp_tick_bucket = INT64_MIN;
    derive(e);
    rc = make_baseline(&e->global, cfg, seed, e, false);
    if (rc != 0) {
        fail(err, "engine", "baseline.memory_budget",
             rc == -EINVAL ? "too small for one key" : "out of memory");
        goto out_free_engine;
    }
    if (cfg->seasonal) {
        rc = make_baseline(&e->seasonal, cfg, seed ^ 0x5ea5011a1ull, e, true);
        if (rc != 0)
            goto out_free_global;
    }
    rc = kt_init(&e->pairs, (uint64_t)cfg->max_pairs);
    if (rc != 0)
        goto out_free_seasonal;
    rc = kt_init(&e->budgets, (uint64_t)cfg->max_budget_keys);
    if (rc != 0)
        goto out_free_pairs;
    *out = e;
    return 0;

out_free_pairs:
    kt_free(&e->pairs);
out_free_seasonal:
    sn_baseline_destroy(e->seasonal);
out_free_global:
    sn_baseline_destroy(e->global);
out_free_engine:
    free(e);
    return rc;
}

void sn_engine_destroy(sn_engine *e)
{
    if (e == NULL)
        return;
    kt_free(&e->budgets);
    kt_free(&e->pairs);
    sn_baseline_destroy(e->seasonal);
    sn_baseline_destroy(e->global);
    sn_baseline_destroy(e->view_table);
    sn_sketch_destroy(e->view_acc);
    free(e->dropped);
    free(e->snap_buf);
    free(e);
}

/* Re-keys budget state after the rules changed: state whose (service pattern, period,
 * per_user) still has a rule moves to it; the rest is dropped. */
static void remap_budgets(sn_engine *e, const budget_rule *old, unsigned nold)
{
    knode *n = e->budgets.oldest;
    /* Collect first: re-inserting changes the list we walk. */
    knode *moved = NULL;
    while (n != NULL) {
        knode *next = n->next;
        budget_state *b = (budget_state *)n;
        int found = -1;
        if (b->rule < nold) {
            const budget_rule *o = &old[b->rule];
            for (unsigned i = 0; i < e->nrules; i++) {
                const budget_rule *r = &e->rules[i];
                if (r->per_user == o->per_user && r->bc.period == o->bc.period &&
                    strcmp(r->service, o->service) == 0) {
                    found = (int)i;
                    break;
                }
            }
        }
        if (found < 0) {
            kt_remove(&e->budgets, n);
        } else if ((unsigned)found != b->rule) {
            /* unlink without freeing, fix the key, re-insert below */
            knode **pp = &e->budgets.index[n->hash & e->budgets.mask];
            while (*pp != n)
                pp = &(*pp)->hnext;
            *pp = n->hnext;
            kt_unlink_lru(&e->budgets, n);
            e->budgets.count--;
            e->budgets.bytes -= n->bytes;
            b->rule = (uint8_t)found;
            uint64_t h = hash_seed(e->seed) ^ (uint64_t)found;
            h = hash_bytes(h, b->service, strlen(b->service));
            h = hash_bytes(h, b->user, strlen(b->user));
            n->hash = hash_final(h);
            n->hnext = moved;
            moved = n;
        }
        n = next;
    }
    while (moved != NULL) {
        knode *next = moved->hnext;
        kt_insert(&e->budgets, moved);
        moved = next;
    }
}

int sn_engine_set_config(sn_engine *e, const sn_engine_config *cfg, sn_config_error *err)
{
    int rc = sn_engine_config_validate(cfg, "engine", err);
    if (rc != 0)
        return rc;
    const sn_engine_config *o = &e->cfg;
    if (cfg->baseline_mode != o->baseline_mode)
        return fail(err, "engine", "baseline.mode", "cannot change at run time");
    if (cfg->window != o->window)
        return fail(err, "engine", "baseline.window", "cannot change at run time");
    if (cfg->memory_budget != o->memory_budget)
        return fail(err, "engine", "baseline.memory_budget", "cannot change at run time");
    if (cfg->max_pairs != o->max_pairs)
        return fail(err, "engine", "baseline.max_pairs", "cannot change at run time");
    if (cfg->max_budget_keys != o->max_budget_keys)
        return fail(err, "engine", "baseline.max_budget_keys", "cannot change at run time");
    if (cfg->seasonal != o->seasonal || cfg->seasonal_slots != o->seasonal_slots)
        return fail(err, "engine", "seasonal.enabled", "cannot change at run time");
    for (int m = 0; m < SN_METRIC_COUNT; m++) {
        if (cfg->metrics[m].transform != o->metrics[m].transform) {
            char f[64];
            snprintf(f, sizeof f, "metrics.%s.transform", sn_metric_name((sn_metric)m));
            return fail(err, "engine", f, "cannot change at run time");
        }
    }
    budget_rule old[SN_ENGINE_BUDGETS_MAX];
    unsigned nold = e->nrules;
    memcpy(old, e->rules, sizeof(budget_rule) * nold);
    e->cfg = *cfg;
    derive(e);
    remap_budgets(e, old, nold);
    return 0;
}

const sn_engine_config *sn_engine_get_config(const sn_engine *e)
{
    return &e->cfg;
}

sn_baseline *sn_engine_baselines(sn_engine *e)
{
    return e->global;
}

sn_engine_transform sn_engine_metric_transform(const sn_engine *e, sn_metric m)
{
    if ((int)m < 0 || m >= SN_METRIC_COUNT)
        return SN_TRANSFORM_NONE;
    return (sn_engine_transform)e->cfg.metrics[m].transform;
}

/* ---- helpers --------------------------------------------------------------------------------- */

/* The log transform's unit: ln(1 + x / u). Costs are fractions of a dollar, so they are counted
 * in micro-dollars (ln(1 + x) of 0.003 would be linear, not a log). */
static double log_unit(sn_metric m)
{
    return m == SN_METRIC_COST_USD ? 1e-6 : 1.0;
}

/* The value scored for x: x, or ln(1 + x / unit) on the log scale (NAN for x < 0). log1p's bits
 * either way: whole values below SN_STATS_LOG_TABLE (token counts) come from the shared table
 * that sn_engine_create set up. */
static double to_model(const sn_engine *e, sn_metric m, double x)
{
    if (e->cfg.metrics[m].transform == SN_TRANSFORM_LOG)
        return x >= 0.0 ? sn_stats_log1p(x / log_unit(m)) : NAN;
    return x;
}

static double from_model(const sn_engine *e, sn_metric m, double y)
{
    if (e->cfg.metrics[m].transform == SN_TRANSFORM_LOG)
        return isfinite(y) ? expm1(y) * log_unit(m) : y;
    return y;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int slot_of(int64_t idx, int n)
{
    int64_t r = idx % n;
    return (int)(r < 0 ? r + n : r);
}

/* The agreement rule of the ensemble: each agreeing opinion beyond the first halves the
 * distance to 0.99. */
static double agree_confidence(double c, unsigned agreed)
{
    if (c < 0.5)
        c = 0.5;
    for (unsigned i = 1; i < agreed && i < 16; i++)
        c = 0.99 - (0.99 - c) * 0.5;
    return c > 0.99 ? 0.99 : c;
}

static void anomaly_init(sn_anomaly *a, int64_t t, const char *service, const char *model)
{
    memset(a, 0, sizeof(*a));
    a->time_unix_nano = t;
    sn_copy_truncated(a->service, sizeof a->service, service, strnlen(service, SN_NAME_MAX));
    sn_copy_truncated(a->model, sizeof a->model, model, strnlen(model, SN_NAME_MAX));
    a->source = SN_SOURCE_AGGREGATOR;
    a->agreed = 1;
    a->deviation_sigma = NAN;
    a->baseline = NAN;
    a->threshold = NAN;
}

static void emit_one(sn_engine *e, sn_engine_check check, const sn_anomaly *a,
                     sn_engine_emit_fn emit, void *ud, unsigned *count)
{
    e->st.anomalies[check]++;
    if ((int)a->anomaly_type >= 0 && a->anomaly_type < SN_ANOMALY_TYPE_COUNT)
        e->st.anomalies_by_type[a->anomaly_type]++;
    (*count)++;
    if (emit != NULL)
        emit(a, ud);
}

static const char *pair_model(const pair_state *p)
{
    return (const char *)(p + 1) + p->model_off;
}

static const char *pair_service(const pair_state *p)
{
    return (const char *)(p + 1);
}

/* The pair index's hash of (service, model): sn_hash_bytes of both names, seeded with both
 * lengths (sn_hash_bytes alone lets strings of different lengths collide, and ("ab", "c") must
 * differ from ("a", "bc")). Only the pair index uses it: where a pair sits in the index changes
 * nothing else (look-ups compare the names; every walk over the pairs follows the LRU list), so
 * any good mix will do. */
static uint64_t pair_hash(const sn_engine *e, const char *service, size_t slen, const char *model,
                          size_t mlen)
{
    uint64_t h = sn_hash_word(hash_seed(e->seed), (uint64_t)slen << 32 | mlen);
    h = sn_hash_bytes(h, service, slen, 0);
    return hash_final(sn_hash_bytes(h, model, mlen, 0));
}

/* The pair state of (service, model) whose pair_hash is h, or NULL. */
static pair_state *pair_lookup(const sn_engine *e, uint64_t h, const char *service,
                               const char *model)
{
    for (knode *n = e->pairs.index[h & e->pairs.mask]; n != NULL; n = n->hnext) {
        pair_state *p = (pair_state *)n;
        if (n->hash == h && strcmp(pair_service(p), service) == 0 &&
            strcmp(pair_model(p), model) == 0)
            return p;
    }
    return NULL;
}

/* The pair state of (service, model), or NULL; not an update (no LRU move). */
static pair_state *pair_find(const sn_engine *e, const char *service, const char *model)
{
    size_t slen = strnlen(service, SN_NAME_MAX), mlen = strnlen(model, SN_NAME_MAX);
    return pair_lookup(e, pair_hash(e, service, slen, model, mlen), service, model);
}

/* Forgets the pair's cached pointer to global entry en (about to be removed). */
static void pair_forget_entry(sn_engine *e, const sn_baseline_entry *en)
{
    pair_state *p = pair_find(e, sn_baseline_entry_service(en), sn_baseline_entry_model(en));
    sn_metric m = sn_baseline_entry_metric(en);
    if (p != NULL && (int)m >= 0 && m < SN_METRIC_COUNT && p->ent[m] == en)
        p->ent[m] = NULL;
}

/* The global baseline entry of metric m for the event's (service, model): the pair's cached
 * pointer, or sn_baseline_get (creating it), then cached. p may be NULL (pair table full).
 * Returns 0 or sn_baseline_get's error. */
static int global_entry(sn_engine *e, pair_state *p, const sn_event *ev, sn_metric m, int64_t t,
                        sn_baseline_entry **out)
{
    if (p != NULL && p->ent[m] != NULL) {
        *out = p->ent[m];
        return 0;
    }
    int rc = sn_baseline_get(e->global, ev->service, ev->model, m, t, out);
    if (rc == 0 && p != NULL)
        p->ent[m] = *out;
    return rc;
}

/* Finds or creates the pair state of (service, model). NULL when the table is full (counted)
 * or allocation fails. */
static inline pair_state *pair_get_hashed(sn_engine *e, const char *service, size_t slen,
                                          const char *model, size_t mlen, uint64_t h, int64_t t);

static inline pair_state *pair_get(sn_engine *e, const char *service, const char *model, int64_t t)
{
    size_t slen = strnlen(service, SN_NAME_MAX), mlen = strnlen(model, SN_NAME_MAX);
    return pair_get_hashed(e, service, slen, model, mlen, pair_hash(e, service, slen, model, mlen),
                           t);
}

/* pair_get for names of lengths slen, mlen whose pair_hash is h. */
static inline pair_state *pair_get_hashed(sn_engine *e, const char *service, size_t slen,
                                          const char *model, size_t mlen, uint64_t h, int64_t t)
{
    pair_state *found = pair_lookup(e, h, service, model);
    if (found != NULL) {
        kt_touch(&e->pairs, &found->node, t);
        return found;
    }
    if (e->pairs.count >= e->pairs.max) {
        e->st.refused++;
        return NULL;
    }
    size_t size = sizeof(pair_state) + slen + 1 + mlen + 1;
    pair_state *p = calloc(1, size);
    if (p == NULL) {
        e->st.refused++;
        return NULL;
    }
    char *names = (char *)(p + 1);
    memcpy(names, service, slen);
    memcpy(names + slen + 1, model, mlen);
    p->model_off = (uint16_t)(slen + 1);
    p->node.hash = h;
    p->node.last_seen = t;
    p->node.bytes = (uint32_t)chunk_bytes(size);
    for (int i = 0; i < ERR_SLOTS; i++)
        p->err[i].idx = INT64_MIN;
    p->err_head = INT64_MIN;
    p->err_last_emit = INT64_MIN;
    for (int i = 0; i < TP_SLOTS; i++)
        p->tp[i].idx = INT64_MIN;
    p->fr_phase = 1;
    kt_insert(&e->pairs, &p->node);
    return p;
}

/* Maps a raw window summary r into the metric's scoring space (see key_summary); lmean, lvar and
 * n are the log-space moments and the sample count behind them. */
static void scoring_summary(const sn_engine *e, sn_metric m, sn_summary *r, double lmean,
                            double lvar, uint64_t n)
{
    if (e->cfg.metrics[m].transform != SN_TRANSFORM_LOG || r->n == 0)
        return;
    r->min = to_model(e, m, r->min);
    r->max = to_model(e, m, r->max);
    r->median = to_model(e, m, r->median);
    r->q1 = to_model(e, m, r->q1);
    r->q3 = to_model(e, m, r->q3);
    r->p95 = to_model(e, m, r->p95);
    r->p99 = to_model(e, m, r->p99);
    r->mad = (r->q3 - r->q1) / 2.0;
    r->mean = lmean;
    r->stddev = n >= 2 ? sqrt(lvar * (double)n / (double)(n - 1)) : 0.0;
}

/* Stores a scoring summary as the key's cached one. */
static void cache_summary(key_state *ks, const sn_summary *r)
{
    double f[10] = {r->mean, r->stddev, r->min, r->max, r->median,
                    r->q1,   r->q3,     r->p95, r->p99, r->mad};
    for (int i = 0; i < 10; i++)
        ks->cache[i] = (float)f[i];
    ks->cache_n = r->n > UINT32_MAX ? UINT32_MAX : (uint32_t)r->n;
    ks->summary_ok = 1;
    ks->since_summary = 0;
}

/* The summary a key's values are scored against, in the metric's scoring space: the rolling
 * window's summary, or with the log transform its quantiles mapped through ln(1 + q) (exact:
 * quantiles commute with monotonic maps), MAD estimated as half the log IQR and mean/stddev from
 * the key's own moments of ln(1 + x). The baseline itself keeps raw values, so relative-accuracy
 * sketches keep their resolution and the API shows real units. Cached as floats in the key and
 * recomputed every summary_refresh samples (every sample while the key is in its warm-up,
 * where each sample still moves the statistics). A merged view of several replicas
 * (ks->view) stays the cached summary until the next merge replaces or removes it. seen is
 * sn_baseline_entry_seen(en), passed in: the caller keeps it for the key's other uses. */
static inline void key_summary(sn_engine *e, sn_baseline *b, sn_baseline_entry *en, key_state *ks,
                               sn_metric m, uint64_t seen, sn_summary *out)
{
    if (ks->view == 0 && (!ks->summary_ok || seen < (uint64_t)e->cfg.warmup ||
                          ks->since_summary >= (uint64_t)e->cfg.summary_refresh)) {
        sn_summary r;
        bool log_space = e->cfg.metrics[m].transform == SN_TRANSFORM_LOG;
        sn_baseline_summary_mad(b, en, &r, !log_space); /* log space: MAD from the quartiles */
        scoring_summary(e, m, &r, ks->lmean, ks->lvar, seen);
        cache_summary(ks, &r);
    }
    out->n = ks->cache_n;
    out->mean = ks->cache[0];
    out->stddev = ks->cache[1];
    out->min = ks->cache[2];
    out->max = ks->cache[3];
    out->median = ks->cache[4];
    out->q1 = ks->cache[5];
    out->q3 = ks->cache[6];
    out->p95 = ks->cache[7];
    out->p99 = ks->cache[8];
    out->mad = ks->cache[9];
}

static void key_dirty(sn_engine *e, const sn_baseline *b, sn_baseline_entry *en, key_state *ks);

/* Learns raw value x (scored as y) into the key; seen is sn_baseline_entry_seen(en) before it
 * (a value learnt adds one). */
static inline void key_learn(sn_engine *e, sn_baseline *b, sn_baseline_entry *en, key_state *ks,
                             sn_metric m, uint64_t seen, double x, double y, int64_t t)
{
    if (sn_baseline_observe(b, en, x, t) != 0)
        return;
    key_dirty(e, b, en, ks);
    ks->since_summary++;
    if (e->cfg.metrics[m].transform == SN_TRANSFORM_LOG) {
        /* exact mean and population variance for the first samples, then an EWMA spanning
         * about a window */
        uint64_t n = seen + 1; /* sn_baseline_observe counted x */
        double a = 1.0 / (double)n;
        if (a < e->learn_floor_a) /* fmax of two positive numbers, without the call */
            a = e->learn_floor_a;
        double d = y - ks->lmean;
        ks->lmean += a * d;
        ks->lvar = (1.0 - a) * (ks->lvar + a * d * d);
    }
}

/* ---- error rate --------------------------------------------------------------------------------
 */

static void etype_add(pair_state *p, const char *type, float n)
{
    if (type[0] == '\0')
        return;
    int min = 0;
    for (int i = 0; i < SN_ENGINE_ERROR_TYPES; i++) {
        if (p->etypes[i].count > 0.0f && strcmp(p->etypes[i].name, type) == 0) {
            p->etypes[i].count += n;
            return;
        }
        if (p->etypes[i].count < p->etypes[min].count)
            min = i;
    }
    /* Space-saving: the weakest slot is taken over and keeps its count as an error bound. */
    etype_slot *s = &p->etypes[min];
    sn_copy_truncated(s->name, sizeof s->name, type, strnlen(type, SN_SHORT_MAX));
    s->count += n;
}

static const char *etype_top(const pair_state *p)
{
    int best = -1;
    for (int i = 0; i < SN_ENGINE_ERROR_TYPES; i++)
        if (p->etypes[i].count > 0.5f && (best < 0 || p->etypes[i].count > p->etypes[best].count))
            best = i;
    return best < 0 ? "" : p->etypes[best].name;
}

/* Adds calls, errors of them (error.type error_type), at time t to the pair's error window and
 * tests the window. */
static inline void error_add(sn_engine *e, pair_state *p, int64_t t, uint32_t calls,
                             uint32_t errors, const char *error_type, const char *region,
                             sn_engine_emit_fn emit, void *ud, unsigned *count)
{
    int64_t bl = e->cfg.error_window / ERR_SLOTS;
    int64_t idx = floor_div(t, bl);
    if (p->err_head != INT64_MIN && idx <= p->err_head - ERR_SLOTS)
        return; /* older than the window */
    if (p->err_head == INT64_MIN || idx > p->err_head) {
        if (p->err_head != INT64_MIN) {
            /* The bucket that just ended feeds the baseline rate (an EWMA over buckets, about
             * 50 buckets long), unless the window was elevated: a burst is not learnt. */
            const err_slot *h = &p->err[slot_of(p->err_head, ERR_SLOTS)];
            if (h->idx == p->err_head && h->calls > 0 && !p->err_elevated) {
                double r = (double)h->errors / h->calls;
                double a = fmax(1.0 / (p->err_base_n + 1.0), 0.02);
                p->err_base += a * (r - p->err_base);
                if (p->err_base_n < UINT32_MAX)
                    p->err_base_n++;
            }
            /* error.type counts fade by half per window */
            int64_t d = idx - p->err_head;
            float f = d >= 64 ? 0.0f : (float)pow(0.5, (double)d / ERR_SLOTS);
            for (int i = 0; i < SN_ENGINE_ERROR_TYPES; i++)
                p->etypes[i].count *= f;
        }
        p->err_head = idx;
    }
    err_slot *s = &p->err[slot_of(idx, ERR_SLOTS)];
    if (s->idx != idx) {
        s->idx = idx;
        s->calls = s->errors = 0;
    }
    /* saturating; errors <= calls keeps errors <= calls per slot */
    calls = calls < UINT32_MAX - s->calls ? calls : UINT32_MAX - s->calls;
    errors = errors < calls ? errors : calls;
    s->calls += calls;
    if (errors > 0) {
        s->errors += errors;
        etype_add(p, error_type, (float)errors);
    }

    /* A slot is in the window when its index is above lo; an unused slot's INT64_MIN never is. */
    uint64_t n = 0, errs = 0;
    const int64_t lo = p->err_head - ERR_SLOTS;
    for (int i = 0; i < ERR_SLOTS; i++) {
        bool in = p->err[i].idx > lo;
        n += in ? p->err[i].calls : 0;
        errs += in ? p->err[i].errors : 0;
    }
    if (n < (uint64_t)e->cfg.error_min_calls) {
        p->err_elevated = false;
        return;
    }
    e->st.evaluations[SN_CHECK_ERROR_RATE]++;
    double base = p->err_base_n >= ERR_SLOTS ? p->err_base : 0.0;
    double p0 = fmax(e->cfg.error_floor, e->cfg.error_k * base);
    double rate = (double)errs / (double)n;
    if (!(rate > p0)) { /* most calls: no z (a division and a square root) to compute */
        p->err_elevated = false;
        return;
    }
    /* here 0 <= p0 < rate <= 1 (so errs > 0): z is infinite only when nothing was expected */
    double z =
        p0 <= 0.0 ? INFINITY : ((double)errs - (double)n * p0) / sqrt((double)n * p0 * (1.0 - p0));
    bool high = z > e->cfg.error_z; /* and rate > p0 */
    if (!high) {
        p->err_elevated = false;
        return;
    }
    e->st.violations[SN_CHECK_ERROR_RATE]++;
    bool was = p->err_elevated;
    p->err_elevated = true;
    /* One anomaly when the window turns bad, then at most one per window while it stays bad. */
    if (was && p->err_last_emit != INT64_MIN && t - p->err_last_emit < e->cfg.error_window)
        return;
    p->err_last_emit = t;
    sn_anomaly a;
    anomaly_init(&a, t, pair_service(p), pair_model(p));
    a.anomaly_type = SN_ANOMALY_ERROR_RATE;
    a.method = SN_DETECT_THRESHOLD;
    a.metric = SN_METRIC_ERROR_RATE;
    a.value = rate;
    a.baseline = base;
    a.threshold = p0;
    a.deviation_sigma = isfinite(z) ? z : NAN;
    a.severity = rate >= 4.0 * p0 || rate >= 0.5    ? SN_SEV_CRITICAL
                 : rate >= 2.0 * p0 || rate >= 0.25 ? SN_SEV_HIGH
                                                    : SN_SEV_MEDIUM;
    a.confidence = sn_detect_confidence(isfinite(z) ? z / e->cfg.error_z : 10.0);
    sn_copy_truncated(a.error_type, sizeof a.error_type, etype_top(p),
                      strnlen(etype_top(p), SN_SHORT_MAX));
    sn_copy_truncated(a.region, sizeof a.region, region, strnlen(region, SN_SHORT_MAX));
    snprintf(a.time_window, sizeof a.time_window, "last_%llds",
             (long long)(e->cfg.error_window / SN_NS_PER_SEC));
    emit_one(e, SN_CHECK_ERROR_RATE, &a, emit, ud, count);
}

static void error_observe(sn_engine *e, pair_state *p, const sn_event *ev, sn_engine_emit_fn emit,
                          void *ud, unsigned *count)
{
    error_add(e, p, ev->end_unix_nano, 1, ev->is_error ? 1 : 0, ev->error_type, ev->region, emit,
              ud, count);
}

/* ---- throughput ------------------------------------------------------------------------------ */

/* Closes bucket b of pair p: judges it against the baseline rate and learns it. */
static void tp_close(sn_engine *e, pair_state *p, int64_t b, sn_engine_emit_fn emit, void *ud,
                     unsigned *count)
{
    const sn_engine_config *c = &e->cfg;
    tp_slot *s = &p->tp[slot_of(b, TP_SLOTS)];
    double tokens = 0.0, calls = 0.0;
    if (s->idx == b) {
        tokens = s->tokens;
        calls = s->calls;
        s->idx = INT64_MIN;
    }
    double secs = (double)c->tp_bucket / (double)SN_NS_PER_SEC;
    double rate = tokens / secs;
    p->tp_closed = b;
    int64_t bstart = b * c->tp_bucket, bend = bstart + c->tp_bucket;
    if (p->tp_learnt < (uint64_t)c->tp_min_buckets || p->tp_calls < c->tp_min_calls ||
        !(p->tp_rate > 0.0)) {
        /* still learning, or too quiet to judge */
        if (p->tp_learnt == 0) {
            p->tp_rate = rate;
            p->tp_calls = calls;
        } else {
            p->tp_rate += c->tp_alpha * (rate - p->tp_rate);
            p->tp_calls += c->tp_alpha * (calls - p->tp_calls);
        }
        if (p->tp_learnt < UINT32_MAX)
            p->tp_learnt++;
        p->tp_low_since = 0;
        p->tp_fired = false;
        return;
    }
    e->st.evaluations[SN_CHECK_THROUGHPUT]++;
    double limit = c->tp_ratio * p->tp_rate;
    if (rate >= limit) {
        /* A burst (a token spike) counts at most TP_LEARN_CAP x the baseline, so it does not
         * raise the bar the next minutes are held to; a lasting rise still lifts it. */
        double cap = TP_LEARN_CAP * p->tp_rate;
        p->tp_low_since = 0;
        p->tp_fired = false;
        p->tp_rate += c->tp_alpha * ((rate < cap ? rate : cap) - p->tp_rate);
        p->tp_calls += c->tp_alpha * (calls - p->tp_calls);
        return;
    }
    e->st.violations[SN_CHECK_THROUGHPUT]++;
    if (p->tp_low_since == 0)
        p->tp_low_since = bstart;
    int64_t low_for = bend - p->tp_low_since;
    if (low_for >= c->tp_relearn) {
        /* The low rate has lasted: it is the new normal. */
        p->tp_rate = rate;
        p->tp_calls = calls;
        p->tp_low_since = 0;
        p->tp_fired = false;
        e->st.relearned++;
        return;
    }
    if (low_for < c->tp_duration)
        return;
    if (p->tp_fired && bend - p->tp_last_emit < c->tp_duration)
        return;
    p->tp_fired = true;
    p->tp_last_emit = bend;
    sn_anomaly a;
    anomaly_init(&a, bend, pair_service(p), pair_model(p));
    a.anomaly_type = SN_ANOMALY_THROUGHPUT_DROP;
    a.method = SN_DETECT_THRESHOLD;
    a.metric = SN_METRIC_TOKENS_PER_SECOND;
    a.value = rate;
    a.baseline = p->tp_rate;
    a.threshold = limit;
    double frac = rate / p->tp_rate;
    a.severity = frac <= 0.1 ? SN_SEV_CRITICAL : frac <= 0.25 ? SN_SEV_HIGH : SN_SEV_MEDIUM;
    a.confidence = sn_detect_confidence(1.0 + (c->tp_ratio - frac) / c->tp_ratio * 2.0);
    snprintf(a.time_window, sizeof a.time_window, "last_%llds",
             (long long)(low_for / SN_NS_PER_SEC));
    emit_one(e, SN_CHECK_THROUGHPUT, &a, emit, ud, count);
}

/* Adds tokens (NAN: unknown) and calls at time t to the pair's throughput bucket. */
static inline void tp_add(sn_engine *e, pair_state *p, int64_t t, double tok, uint32_t calls,
                          sn_engine_emit_fn emit, void *ud, unsigned *count)
{
    int64_t idx = floor_div(t, e->cfg.tp_bucket);
    if (!p->tp_started) {
        p->tp_started = true;
        p->tp_closed = idx - 1;
    }
    if (idx <= p->tp_closed) {
        e->st.late++;
        return;
    }
    /* Keep the ring ahead: close what no longer fits (when ticks lag behind event time). */
    while (idx - p->tp_closed > TP_SLOTS)
        tp_close(e, p, p->tp_closed + 1, emit, ud, count);
    tp_slot *s = &p->tp[slot_of(idx, TP_SLOTS)];
    if (s->idx != idx) {
        s->idx = idx;
        s->tokens = 0.0;
        s->calls = 0;
    }
    if (isfinite(tok))
        s->tokens += tok;
    s->calls += calls < UINT32_MAX - s->calls ? calls : UINT32_MAX - s->calls;
}

static void tp_observe(sn_engine *e, pair_state *p, const sn_event *ev, sn_engine_emit_fn emit,
                       void *ud, unsigned *count)
{
    double tok = NAN;
    if (ev->total_tokens >= 0)
        tok = (double)ev->total_tokens;
    else if (ev->input_tokens >= 0 || ev->output_tokens >= 0)
        tok = (double)(ev->input_tokens > 0 ? ev->input_tokens : 0) +
              (double)(ev->output_tokens > 0 ? ev->output_tokens : 0);
    tp_add(e, p, ev->end_unix_nano, tok, 1, emit, ud, count);
}

/* ---- drift ----------------------------------------------------------------------------------- */

/* The category of finish reason r (case-insensitive; 4 = other). Only the names of r's length
 * are compared: most calls compare one or two names, not up to 25. */
static int finish_category(const char *r)
{
    static const struct {
        const char *name;
        uint8_t len, cat;
    } names[] = {
        {"stop", 4, 0},
        {"end_turn", 8, 0},
        {"stop_sequence", 13, 0},
        {"complete", 8, 0},
        {"eos", 3, 0},
        {"finished", 8, 0},
        {"end", 3, 0},
        {"length", 6, 1},
        {"max_tokens", 10, 1},
        {"max_output_tokens", 17, 1},
        {"max_length", 10, 1},
        {"token_limit", 11, 1},
        {"tool_calls", 10, 2},
        {"tool_use", 8, 2},
        {"function_call", 13, 2},
        {"tool_call", 9, 2},
        {"function_calls", 14, 2},
        {"content_filter", 14, 3},
        {"safety", 6, 3},
        {"recitation", 10, 3},
        {"blocklist", 9, 3},
        {"prohibited_content", 18, 3},
        {"spii", 4, 3},
        {"refusal", 7, 3},
    };
    size_t n = strnlen(r, SN_SHORT_MAX);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].len == n && strcasecmp(r, names[i].name) == 0)
            return names[i].cat;
    return 4;
}

/* PSI of counts cur (n) against reference proportions ref; proportions floored at DRIFT_EPS. */
static double psi(const uint16_t *cur, unsigned n, const float *ref, int bins)
{
    double s = 0.0;
    for (int i = 0; i < bins; i++) {
        double a = fmax((double)cur[i] / n, DRIFT_EPS), b = fmax((double)ref[i], DRIFT_EPS);
        s += (a - b) * log(a / b);
    }
    return s;
}

/* Jensen-Shannon divergence in bits (in [0, 1]). */
static double js_divergence(const uint16_t *cur, unsigned n, const float *ref, int cats)
{
    double s = 0.0;
    for (int i = 0; i < cats; i++) {
        double p = (double)cur[i] / n, q = ref[i], m = 0.5 * (p + q);
        if (p > 0.0)
            s += 0.5 * p * log2(p / m);
        if (q > 0.0)
            s += 0.5 * q * log2(q / m);
    }
    return s < 0.0 ? 0.0 : s;
}

static sn_severity drift_severity(double v, double thr)
{
    return v >= 4.0 * thr ? SN_SEV_CRITICAL : v >= 2.0 * thr ? SN_SEV_HIGH : SN_SEV_MEDIUM;
}

static void psi_observe(sn_engine *e, pair_state *p, const sn_summary *base, double y, int64_t t,
                        sn_engine_emit_fn emit, void *ud, unsigned *count)
{
    const unsigned w = (unsigned)e->cfg.drift_window;
    if (p->psi_phase == 0) {
        if (base->n < (uint64_t)e->cfg.drift_min_baseline)
            return;
        double q[PSI_EDGES] = {base->q1, base->median, base->q3, base->p95, base->p99};
        for (int i = 0; i < PSI_EDGES; i++)
            if (!isfinite(q[i]) || (i > 0 && q[i] < q[i - 1]))
                return;
        memcpy(p->psi_edges, q, sizeof q);
        p->psi_phase = 1;
        p->psi_n = 0;
        memset(p->psi_cur, 0, sizeof p->psi_cur);
    }
    int bin = 0;
    while (bin < PSI_EDGES && y > p->psi_edges[bin])
        bin++;
    p->psi_cur[bin]++;
    if (++p->psi_n < w)
        return;
    if (p->psi_phase == 1) {
        for (int i = 0; i < SN_ENGINE_DRIFT_BINS; i++)
            p->psi_ref[i] = (float)p->psi_cur[i] / (float)w;
        p->psi_phase = 2;
    } else {
        e->st.evaluations[SN_CHECK_TOKEN_DRIFT]++;
        double v = psi(p->psi_cur, w, p->psi_ref, SN_ENGINE_DRIFT_BINS);
        double keep = 0.9;
        if (v > e->cfg.psi_threshold) {
            e->st.violations[SN_CHECK_TOKEN_DRIFT]++;
            keep = 0.0; /* adopt the new distribution: one drift, one anomaly */
            sn_anomaly a;
            anomaly_init(&a, t, pair_service(p), pair_model(p));
            a.anomaly_type = SN_ANOMALY_TOKEN_DRIFT;
            a.method = SN_DETECT_THRESHOLD;
            a.metric = SN_METRIC_INPUT_TOKENS;
            a.value = v;
            a.baseline = 0.0;
            a.threshold = e->cfg.psi_threshold;
            a.severity = drift_severity(v, e->cfg.psi_threshold);
            a.confidence = sn_detect_confidence(v / e->cfg.psi_threshold);
            snprintf(a.time_window, sizeof a.time_window, "last_%u_calls", w);
            emit_one(e, SN_CHECK_TOKEN_DRIFT, &a, emit, ud, count);
        }
        for (int i = 0; i < SN_ENGINE_DRIFT_BINS; i++)
            p->psi_ref[i] = (float)(keep * p->psi_ref[i] + (1.0 - keep) * p->psi_cur[i] / w);
    }
    p->psi_n = 0;
    memset(p->psi_cur, 0, sizeof p->psi_cur);
}

static void finish_observe(sn_engine *e, pair_state *p, const sn_event *ev, sn_engine_emit_fn emit,
                           void *ud, unsigned *count)
{
    if (ev->finish_reason[0] == '\0')
        return;
    const unsigned w = (unsigned)e->cfg.drift_window;
    p->fr_cur[finish_category(ev->finish_reason)]++;
    if (++p->fr_n < w)
        return;
    if (p->fr_phase != 2) {
        for (int i = 0; i < SN_ENGINE_FINISH_CATS; i++)
            p->fr_ref[i] = (float)p->fr_cur[i] / (float)w;
        p->fr_phase = 2;
    } else {
        e->st.evaluations[SN_CHECK_FINISH_DRIFT]++;
        double v = js_divergence(p->fr_cur, w, p->fr_ref, SN_ENGINE_FINISH_CATS);
        double keep = 0.9;
        if (v > e->cfg.js_threshold) {
            e->st.violations[SN_CHECK_FINISH_DRIFT]++;
            keep = 0.0;
            int grew = 0;
            double most = -2.0;
            for (int i = 0; i < SN_ENGINE_FINISH_CATS; i++) {
                double d = (double)p->fr_cur[i] / w - p->fr_ref[i];
                if (d > most) {
                    most = d;
                    grew = i;
                }
            }
            sn_anomaly a;
            anomaly_init(&a, ev->end_unix_nano, pair_service(p), pair_model(p));
            a.anomaly_type = SN_ANOMALY_FINISH_REASON_DRIFT;
            a.method = SN_DETECT_THRESHOLD;
            a.metric = SN_METRIC_OUTPUT_TOKENS; /* finish reasons describe how outputs end */
            a.value = v;
            a.baseline = 0.0;
            a.threshold = e->cfg.js_threshold;
            a.severity = drift_severity(v, e->cfg.js_threshold);
            a.confidence = sn_detect_confidence(v / e->cfg.js_threshold);
            sn_copy_truncated(a.finish_reason, sizeof a.finish_reason, finish_names[grew],
                              strlen(finish_names[grew]));
            snprintf(a.time_window, sizeof a.time_window, "last_%u_calls", w);
            emit_one(e, SN_CHECK_FINISH_DRIFT, &a, emit, ud, count);
        }
        for (int i = 0; i < SN_ENGINE_FINISH_CATS; i++)
            p->fr_ref[i] = (float)(keep * p->fr_ref[i] + (1.0 - keep) * p->fr_cur[i] / w);
    }
    p->fr_n = 0;
    memset(p->fr_cur, 0, sizeof p->fr_cur);
}

/* ---- budgets --------------------------------------------------------------------------------- */

static budget_state *budget_get(sn_engine *e, unsigned rule, const char *service, const char *user,
                                int64_t t)
{
    size_t slen = strnlen(service, SN_NAME_MAX), ulen = strnlen(user, SN_SHORT_MAX);
    if (slen >= SN_NAME_MAX || ulen >= SN_SHORT_MAX)
        return NULL;
    uint64_t h = hash_seed(e->seed) ^ (uint64_t)rule;
    h = hash_bytes(h, service, slen);
    h = hash_final(hash_bytes(h, user, ulen));
    for (knode *n = e->budgets.index[h & e->budgets.mask]; n != NULL; n = n->hnext) {
        budget_state *b = (budget_state *)n;
        if (n->hash == h && b->rule == rule && strcmp(b->service, service) == 0 &&
            strcmp(b->user, user) == 0) {
            kt_touch(&e->budgets, n, t);
            return b;
        }
    }
    if (e->budgets.count >= e->budgets.max)
        return NULL;
    budget_state *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->rule = (uint8_t)rule;
    memcpy(b->service, service, slen);
    memcpy(b->user, user, ulen);
    sn_budget_init(&b->st);
    b->node.hash = h;
    b->node.last_seen = t;
    b->node.bytes = (uint32_t)chunk_bytes(sizeof(*b));
    kt_insert(&e->budgets, &b->node);
    return b;
}

static void budget_observe(sn_engine *e, const sn_event *ev, sn_engine_emit_fn emit, void *ud,
                           unsigned *count)
{
    if (e->nrules == 0 || !(ev->cost_usd >= 0.0) || !isfinite(ev->cost_usd))
        return;
    for (unsigned i = 0; i < e->nrules; i++) {
        const budget_rule *r = &e->rules[i];
        if (!r->any && strcmp(r->service, ev->service) != 0)
            continue;
        if (r->per_user && ev->user[0] == '\0')
            continue;
        budget_state *b =
            budget_get(e, i, ev->service, r->per_user ? ev->user : "", ev->end_unix_nano);
        if (b == NULL) {
            e->st.refused++;
            continue;
        }
        sn_verdict v;
        sn_budget_add(&b->st, &r->bc, ev->end_unix_nano, ev->cost_usd, &v);
        if (!v.ready)
            continue;
        b->dirty = b->unsynced = true;
        e->st.evaluations[SN_CHECK_BUDGET]++;
        if (!v.anomaly)
            continue;
        e->st.violations[SN_CHECK_BUDGET]++;
        sn_anomaly a;
        anomaly_init(&a, ev->end_unix_nano, ev->service, "");
        a.anomaly_type = SN_ANOMALY_BUDGET;
        a.method = SN_DETECT_BUDGET;
        a.metric = SN_METRIC_COST_USD;
        a.severity = v.severity;
        a.confidence = v.confidence;
        a.value = v.value;
        a.baseline = v.baseline;
        a.threshold = v.threshold;
        if (r->per_user)
            sn_copy_truncated(a.user, sizeof a.user, ev->user, strnlen(ev->user, SN_SHORT_MAX));
        snprintf(a.time_window, sizeof a.time_window, "current_%s", sn_period_name(r->bc.period));
        emit_one(e, SN_CHECK_BUDGET, &a, emit, ud, count);
    }
}

/* ---- per-event metrics ------------------------------------------------------------------------
 */

/* The seasonal slot of time t. */
static int season_slot(const sn_engine *e, int64_t t)
{
    int64_t hours = floor_div(t, HOUR_NS);
    if (e->cfg.seasonal_slots == 1)
        return slot_of(hours, 24);
    return slot_of(hours + 72, 168); /* 1970-01-01 was a Thursday: slot 0 is Monday 00:00 UTC */
}

/* Writes the seasonal model key (model \x1f slot) into buf. Returns false when it does not
 * fit SN_NAME_MAX. */
static bool season_model(const sn_engine *e, const char *model, int64_t t, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s\x1fh%03d", model, season_slot(e, t));
    return n > 0 && (size_t)n < size && (size_t)n < SN_NAME_MAX;
}

typedef struct pending {
    bool fire;
    bool drift_fire;
    sn_anomaly a;
    sn_anomaly drift; /* a CUSUM alarm of an interval that closed with this value */
} pending;

/* The per-call (spike) rule, docs/aggregator.md "Detection": a value violates when at least
 * detect.min_agree of the statistical detectors (Z-score, IQR, MAD; fewer when fewer are
 * enabled) find it anomalous on the same side; the static threshold is a level the user set and
 * violates alone. Sets viol[k] for every detector whose verdict counts as a violation, and *crit
 * when every enabled statistical detector rates the value critical -- about 7 sigma on the log
 * scale (Z >= 6, beyond Q3 + 3 IQR, MAD score >= 7): such a value may pass persistence alone.
 * (Critical by two, i.e. from 6 sigma, let 2-3 times more single calls of heavy-tailed traffic
 * through: docs/benchmarks.md.) Returns how many statistical detectors agreed (0 if none). */
static unsigned spike_agreement(const sn_engine *e, sn_metric m, const sn_ensemble_result *res,
                                bool viol[SN_DETECT_KIND_COUNT], bool *crit)
{
    static const sn_detector_kind stat[] = {SN_DETECT_ZSCORE, SN_DETECT_IQR, SN_DETECT_MAD};
    const sn_ensemble_config *ec = &e->ens[m];
    const bool on[] = {ec->zscore_enabled, ec->iqr_enabled, ec->mad_enabled};
    unsigned enabled = 0, agreed = 0, ncrit = 0;
    const sn_verdict *best = NULL;
    for (int i = 0; i < 3; i++) {
        const sn_verdict *v = &res->each[stat[i]];
        enabled += on[i];
        if (v->ready && v->anomaly &&
            (best == NULL || v->severity > best->severity ||
             (v->severity == best->severity && v->score > best->score)))
            best = v;
    }
    if (best != NULL) {
        for (int i = 0; i < 3; i++) {
            const sn_verdict *v = &res->each[stat[i]];
            if (v->ready && v->anomaly && v->direction == best->direction) {
                agreed++;
                ncrit += v->severity == SN_SEV_CRITICAL;
            }
        }
    }
    uint64_t need = e->agree < enabled ? e->agree : enabled;
    if (need < 1)
        need = 1;
    for (int i = 0; i < 3; i++) {
        const sn_verdict *v = &res->each[stat[i]];
        viol[stat[i]] = best != NULL && agreed >= need && v->ready && v->anomaly &&
                        v->direction == best->direction;
    }
    viol[SN_DETECT_THRESHOLD] =
        res->each[SN_DETECT_THRESHOLD].ready && res->each[SN_DETECT_THRESHOLD].anomaly;
    *crit = best != NULL && agreed >= need && ncrit >= enabled;
    return agreed;
}

/* Feeds y to the key's interval-mean CUSUM (sn_drift); fills out->drift when the interval that
 * this value closes raised a drift. An interval holding a reported spike is dropped. */
static void drift_observe(sn_engine *e, const sn_event *ev, sn_metric m, key_state *ks, double y,
                          pending *out)
{
    sn_verdict v;
    bool scored = e->drift_valid[m]
                      ? sn_drift_add_valid(&ks->drift, &e->drift[m], ev->end_unix_nano, y, &v)
                      : sn_drift_add(&ks->drift, &e->drift[m], ev->end_unix_nano, y, &v);
    if (out->fire)
        sn_drift_explain(&ks->drift);
    if (!scored)
        return;
    e->st.evaluations[SN_CHECK_CUSUM]++;
    if (!v.anomaly)
        return;
    e->st.violations[SN_CHECK_CUSUM]++;
    out->drift_fire = true;
    sn_anomaly *a = &out->drift;
    anomaly_init(a, ev->end_unix_nano, ev->service, ev->model);
    a->anomaly_type = sn_anomaly_type_for(m, SN_DETECT_CUSUM, v.direction);
    a->method = SN_DETECT_CUSUM;
    a->severity = v.severity;
    a->confidence = v.confidence;
    a->metric = m;
    a->value = from_model(e, m, v.value);
    a->baseline = from_model(e, m, v.baseline);
    a->threshold = v.threshold;
    a->deviation_sigma = v.deviation;
    sn_copy_truncated(a->region, sizeof a->region, ev->region, strnlen(ev->region, SN_SHORT_MAX));
    snprintf(a->time_window, sizeof a->time_window, "interval_mean_%llds",
             (long long)(e->drift[m].interval / SN_NS_PER_SEC));
}

/* Scores one value of metric m; fills *out when an anomaly passed persistence. Returns the value
 * in the metric's scoring space (to_model; NAN or out of range when it was not scored), which
 * the caller may reuse instead of transforming x again. */
/* A value beyond y on side `side` (+1 above, -1 below) near where ensemble ec's detectors stop
 * being quiet for summary b -- each one's threshold times its raw scale (the floors only widen
 * the real range), the nearest, pulled 0.1 % towards y: a guess that quiet_check widens a quiet
 * range to only after sn_ensemble_quiet_valid confirms it. NAN when there is none. */
static double quiet_guess(const sn_ensemble_config *ec, const sn_summary *b, double y, int side)
{
    double g = side * INFINITY, c;
    if (ec->zscore_enabled && b->stddev > 0.0) {
        c = b->mean + side * ec->zscore.threshold * b->stddev;
        g = side > 0 ? fmin(g, c) : fmax(g, c);
    }
    if (ec->iqr_enabled && b->q3 > b->q1) {
        c = (side > 0 ? b->q3 : b->q1) + side * ec->iqr.k * (b->q3 - b->q1);
        g = side > 0 ? fmin(g, c) : fmax(g, c);
    }
    if (ec->mad_enabled && b->mad > 0.0) {
        c = b->median + side * ec->mad.threshold * (b->mad / SN_MAD_SIGMA);
        g = side > 0 ? fmin(g, c) : fmax(g, c);
    }
    if (ec->threshold_enabled) {
        const sn_threshold_config *th = &ec->threshold;
        double lv[2] = {side > 0 ? th->upper_warn : th->lower_warn,
                        side > 0 ? th->upper_critical : th->lower_critical};
        for (int i = 0; i < 2; i++)
            if (!isnan(lv[i]))
                g = side > 0 ? fmin(g, lv[i]) : fmax(g, lv[i]);
    }
    if (!isfinite(g))
        return NAN;
    g = y + (g - y) * 0.999;
    return isfinite(g) && (side > 0 ? g > y : g < y) ? g : NAN;
}

/* sn_ensemble_quiet_valid(&e->ens[m], sum, y, ready) -- the same answer and *ready -- where
 * sum is the summary key_summary built from ks's cache for metric m and e->ens_valid[m].
 * Each detector's quiet values form an interval (its deviation is monotonic in the value:
 * halving, subtracting the centre and dividing by a positive scale all keep the order; the
 * threshold's levels likewise), so the values quiet for all of them do too: a range [lo, hi]
 * whose ends were both found quiet for this very summary holds only quiet values, with the
 * same ready detectors (those depend on the summary alone for a finite value), and a value in
 * it is answered without the check. A slot is found by the key's address but matched by the
 * summary's bytes and the metric, so a key freed and reused, restored, merged or refreshed is
 * never answered from another summary's range. seen is the count of ks's entry: in its
 * warm-up (and not a merged view) the summary changes with every value, so no range is kept;
 * after it a new range is widened to guesses at its ends at once. */
static inline bool quiet_check(sn_engine *e, const key_state *ks, uint64_t seen, sn_metric m,
                               const sn_summary *sum, double y, unsigned *ready)
{
    const sn_ensemble_config *ec = &e->ens[m];
    if (seen < (uint64_t)e->cfg.warmup && ks->view == 0) /* a new summary for every value */
        return sn_ensemble_quiet_valid(ec, sum, y, ready);
    uint64_t h = (uint64_t)(uintptr_t)ks * 0x9E3779B97F4A7C15ull;
    quiet_slot *q = &e->quiet[h >> (64 - QUIET_BITS)];
    bool same =
        q->metric == (uint8_t)(m + 1) && memcmp(q->sum, QUIET_SUM_OF(ks), QUIET_SUM_BYTES) == 0;
    if (same && y >= q->lo && y <= q->hi) {
        *ready = q->ready;
        return true;
    }
    if (!sn_ensemble_quiet_valid(ec, sum, y, ready))
        return false;
    if (!isfinite(y)) /* quiet with no detector ready: not a range's end */
        return true;
    if (same) {
        if (y < q->lo)
            q->lo = y;
        else
            q->hi = y;
        return true;
    }
    memcpy(q->sum, QUIET_SUM_OF(ks), QUIET_SUM_BYTES);
    q->metric = (uint8_t)(m + 1);
    q->ready = (uint8_t)*ready;
    q->lo = q->hi = y;
    unsigned r;
    double g = quiet_guess(ec, sum, y, -1);
    if (!isnan(g) && sn_ensemble_quiet_valid(ec, sum, g, &r) && r == *ready)
        q->lo = g;
    g = quiet_guess(ec, sum, y, 1);
    if (!isnan(g) && sn_ensemble_quiet_valid(ec, sum, g, &r) && r == *ready)
        q->hi = g;
    return true;
}

static double metric_observe(sn_engine *e, pair_state *p, const sn_event *ev, sn_metric m, double x,
                             pending *out, sn_summary *gsum_out)
{
    int64_t t = ev->end_unix_nano;
    double y = to_model(e, m, x);
    if (!sn_stats_sample_ok(y))
        return y;
    sn_baseline_entry *gen;
    if (global_entry(e, p, ev, m, t, &gen) != 0) {
        e->st.refused++;
        return y;
    }
    e->st.values++;
    key_state *gks = sn_baseline_entry_user(gen);
    key_dirty(e, e->global, gen, gks); /* scoring steps CUSUM and streaks, learnt or not */
    sn_summary gsum, ssum;
    uint64_t gseen = sn_baseline_entry_seen(gen), sseen = 0;
    key_summary(e, e->global, gen, gks, m, gseen, &gsum);
    if (gsum_out != NULL)
        *gsum_out = gsum;
    const sn_ensemble_config *ec = &e->ens[m];

    /* Seasonal: score against the slot's baseline once it has enough samples. */
    sn_baseline_entry *sen = NULL;
    key_state *sks = NULL;
    if (e->seasonal != NULL) {
        char smodel[SN_NAME_MAX + 16];
        if (season_model(e, ev->model, t, smodel, sizeof smodel) &&
            sn_baseline_get(e->seasonal, ev->service, smodel, m, t, &sen) == 0) {
            sks = sn_baseline_entry_user(sen);
            key_dirty(e, e->seasonal, sen, sks);
            sseen = sn_baseline_entry_seen(sen);
            key_summary(e, e->seasonal, sen, sks, m, sseen, &ssum);
        } else {
            sen = NULL;
        }
    }
    key_state *ks = gks;
    const sn_summary *sum = &gsum;
    if (sen != NULL && ssum.n >= ec->zscore.min_samples) {
        ks = sks;
        sum = &ssum;
    }

    /* Most values are normal: when no detector fires, only the counters of the ready ones and
     * their streaks change (what the full path below does then), without building verdicts. */
    unsigned quiet_ready;
    if (e->ens_valid[m] && quiet_check(e, ks, ks == sks ? sseen : gseen, m, sum, y, &quiet_ready)) {
        for (int k = 0; k < SN_DETECT_KIND_COUNT; k++) {
            if (quiet_ready & (1u << k)) {
                e->st.evaluations[k]++;
                ks->streak[k] = 0;
            }
        }
        goto learn;
    }

    sn_ensemble st; /* CUSUM is off in ec: no state to keep */
    sn_ensemble_init(&st);
    sn_ensemble_result res;
    if (e->ens_valid[m])
        sn_ensemble_evaluate_valid(&st, ec, sum, y, &res);
    else
        sn_ensemble_evaluate(&st, ec, sum, y, &res); /* not ready: no verdicts, as before */

    const int64_t *persist = e->persist[m];
    bool passing[SN_DETECT_KIND_COUNT] = {false};
    bool viol[SN_DETECT_KIND_COUNT] = {false};
    bool crit = false;
    unsigned agreed = spike_agreement(e, m, &res, viol, &crit);
    bool any_pass = false, anomalous = false;
    for (int k = 0; k < SN_DETECT_KIND_COUNT; k++) {
        const sn_verdict *v = &res.each[k];
        if (!v->ready)
            continue;
        e->st.evaluations[k]++;
        if (v->anomaly)
            e->st.violations[k]++;
        if (!viol[k]) {
            ks->streak[k] = 0;
            continue;
        }
        anomalous = true;
        if (ks->streak[k] < 255)
            ks->streak[k]++;
        passing[k] = ks->streak[k] >= persist[k] ||
                     (v->severity == SN_SEV_CRITICAL && (crit || k == SN_DETECT_THRESHOLD) &&
                      ks->streak[k] >= e->cfg.persist_critical);
        any_pass = any_pass || passing[k];
    }

    if (anomalous && any_pass) {
        /* The strongest passing verdict on the ensemble's side. */
        int best = -1;
        for (int k = 0; k < SN_DETECT_KIND_COUNT; k++) {
            const sn_verdict *v = &res.each[k];
            if (!passing[k])
                continue;
            if (best < 0 || v->severity > res.each[best].severity ||
                (v->severity == res.each[best].severity && v->score > res.each[best].score))
                best = k;
        }
        if (best >= 0) {
            const sn_verdict *v = &res.each[best];
            pending *pd = out;
            pd->fire = true;
            sn_anomaly *a = &pd->a;
            anomaly_init(a, t, ev->service, ev->model);
            a->anomaly_type = sn_anomaly_type_for(m, v->method, v->direction);
            a->method = v->method;
            a->severity = v->severity;
            a->agreed = agreed > 0 ? agreed : 1;
            a->confidence = agree_confidence(v->confidence, a->agreed);
            a->metric = m;
            a->value = x;
            a->baseline = from_model(e, m, v->baseline);
            a->threshold =
                v->method == SN_DETECT_CUSUM ? v->threshold : from_model(e, m, v->threshold);
            a->deviation_sigma = v->deviation;
            memcpy(a->trace_id, ev->trace_id, sizeof a->trace_id);
            sn_copy_truncated(a->region, sizeof a->region, ev->region,
                              strnlen(ev->region, SN_SHORT_MAX));
            if (ev->is_error)
                sn_copy_truncated(a->error_type, sizeof a->error_type, ev->error_type,
                                  strnlen(ev->error_type, SN_SHORT_MAX));
            sn_copy_truncated(a->finish_reason, sizeof a->finish_reason, ev->finish_reason,
                              strnlen(ev->finish_reason, SN_SHORT_MAX));
            snprintf(a->time_window, sizeof a->time_window, "%s",
                     ks == sks ? "same_hour_baseline" : "last_1000_calls");
            if (ks != sks && e->cfg.window != 1000)
                snprintf(a->time_window, sizeof a->time_window, "last_%lld_calls",
                         (long long)e->cfg.window);
        }
    } else if (anomalous) {
        e->st.suppressed++;
    }

learn:
    if (e->drift_on[m])
        drift_observe(e, ev, m, gks, y, out);

    /* Learn unless reported -- but a long run of anomalies is the new normal, and a young
     * baseline (fewer than warmup samples) learns everything. Values held back by persistence
     * are learnt: leaving out every borderline value, or the tails a baseline of 20 samples
     * happens not to have seen, would narrow the baseline until normal traffic looks
     * anomalous. */
    bool reported = out->fire;
    if (reported && ks->anomalous_run < UINT16_MAX)
        ks->anomalous_run++;
    else if (!reported)
        ks->anomalous_run = 0;
    bool young = gseen < (uint64_t)e->cfg.warmup;
    if (!reported || young || ks->anomalous_run >= (uint64_t)e->cfg.resume_learning) {
        if (reported && !young && ks->anomalous_run == (uint64_t)e->cfg.resume_learning)
            e->st.relearned++;
        key_learn(e, e->global, gen, gks, m, gseen, x, y, t);
        if (sen != NULL)
            key_learn(e, e->seasonal, sen, sks, m, sseen, x, y, t);
    } else if (sen != NULL && ks != sks) {
        /* Judged by the global baseline while the slot was cold: the slot learns it anyway, or
         * a daily peak the global baseline flags would never get a baseline of its own. */
        key_learn(e, e->seasonal, sen, sks, m, sseen, x, y, t);
    }
    return y;
}

static void relate(pending *pd, const char *metric)
{
    if (pd->a.related_metric[0] != '\0')
        return;
    snprintf(pd->a.related_metric, sizeof pd->a.related_metric, "%s", metric);
    pd->a.agreed++;
    pd->a.confidence = agree_confidence(pd->a.confidence, 2);
}

/* An event's names and pair hash, found before it is observed (sn_engine_observe_batch reads
 * them a few events ahead to start loading the pair). ok = false: the names are refused. same:
 * the names are the batch's previous event's (whose pair observe_keyed may reuse). */
typedef struct event_key {
    bool ok, same;
    size_t slen, mlen;
    uint64_t h;
} event_key;

static event_key event_key_of(const sn_engine *e, const sn_event *ev)
{
    event_key k = {.ok = false, .same = false};
    if (ev->service[0] == '\0')
        return k;
    k.slen = strnlen(ev->service, SN_NAME_MAX);
    k.mlen = strnlen(ev->model, SN_NAME_MAX);
    if (k.slen >= SN_NAME_MAX || k.mlen >= SN_NAME_MAX)
        return k;
    k.ok = true;
    k.h = pair_hash(e, ev->service, k.slen, ev->model, k.mlen);
    return k;
}

/* Whether the n bytes of a and b agree, a word at a time with no call: both are name fields of
 * SN_NAME_MAX bytes and n < SN_NAME_MAX, so every load stays inside them. */
static inline bool same_bytes(const char *a, const char *b, size_t n)
{
    uint64_t x, y;
    if (n < 8) {
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        return ((x ^ y) & (n == 0 ? 0 : UINT64_MAX >> (64 - 8 * n))) == 0;
    }
    for (size_t i = 0; i + 8 < n; i += 8) {
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y)
            return false;
    }
    memcpy(&x, a + n - 8, 8); /* the last word, overlapping the one before */
    memcpy(&y, b + n - 8, 8);
    return x == y;
}

_Static_assert(SN_NAME_MAX >= 16, "same_bytes reads a whole word of a name field");

/* The key of ev, which follows prev (whose key is pk) in a batch: pk's, marked same, when the
 * names are prev's (a sidecar sends a (service, model)'s events in runs); else event_key_of. */
static inline event_key event_key_after(const sn_engine *e, const sn_event *ev,
                                        const sn_event *prev, const event_key *pk)
{
    if (pk->ok && ev->service[pk->slen] == '\0' && ev->model[pk->mlen] == '\0' &&
        same_bytes(ev->service, prev->service, pk->slen) &&
        same_bytes(ev->model, prev->model, pk->mlen)) {
        event_key k = *pk;
        k.same = true;
        return k;
    }
    return event_key_of(e, ev);
}

/* The pair observe_keyed used last in a batch, for the next event of the same names (key.same):
 * no hash, no look-up. Valid while the pair table has removed nothing since (pairs only leave
 * it through kt_remove, which counts). */
typedef struct pair_memo {
    pair_state *p; /* NULL: none (also after a refusal) */
    uint64_t removed;
} pair_memo;

static unsigned observe_keyed(sn_engine *e, const sn_event *ev, const event_key *k, pair_memo *memo,
                              sn_engine_emit_fn emit, void *ud);

unsigned sn_engine_observe(sn_engine *e, const sn_event *ev, sn_engine_emit_fn emit, void *ud)
{
    event_key k = event_key_of(e, ev);
    return observe_keyed(e, ev, &k, NULL, emit, ud);
}

unsigned sn_engine_observe_batch(sn_engine *e, const sn_event *evs, size_t n,
                                 sn_engine_emit_fn emit, void *ud)
{
    pair_memo memo = {NULL, 0};
    unsigned count = 0;
    /* A pair table this small stays cached: no pipeline, the same work as sn_engine_observe,
     * with the key of a run of events with the same names found once. */
    if (e->pairs.count < PREFETCH_MIN_PAIRS) {
        event_key k = {.ok = false};
        for (size_t i = 0; i < n; i++) {
            k = i > 0 ? event_key_after(e, &evs[i], &evs[i - 1], &k) : event_key_of(e, &evs[i]);
            count += observe_keyed(e, &evs[i], &k, &memo, emit, ud);
        }
        return count;
    }
    /* Three stages, PREFETCH_AHEAD events apart: hash the event and prefetch its index slot;
     * read the slot (cached by then) and prefetch the first pair in it; observe (the pair is
     * cached, and observe prefetches its entries). An event with its predecessor's names needs
     * neither: its pair is the one observed just before. */
    /* keys of events i - 2 * PREFETCH_AHEAD .. i: one more than the pipeline's depth */
    enum { RING = 2 * PREFETCH_AHEAD + 1 };
    event_key ring[RING];
    for (size_t i = 0; i < n + 2 * PREFETCH_AHEAD; i++) {
        if (i < n) {
            event_key *k = &ring[i % RING];
            *k = i > 0 ? event_key_after(e, &evs[i], &evs[i - 1], &ring[(i - 1) % RING])
                       : event_key_of(e, &evs[i]);
            if (k->ok && !k->same)
                __builtin_prefetch(&e->pairs.index[k->h & e->pairs.mask]);
        }
        if (i >= PREFETCH_AHEAD && i - PREFETCH_AHEAD < n) {
            const event_key *k = &ring[(i - PREFETCH_AHEAD) % RING];
            const knode *head = k->ok && !k->same ? e->pairs.index[k->h & e->pairs.mask] : NULL;
            if (head != NULL) {
                const pair_state *hp = (const pair_state *)head;
                __builtin_prefetch(hp);
                __builtin_prefetch(&hp->ent[0]);
            }
        }
        if (i >= 2 * PREFETCH_AHEAD) {
            size_t j = i - 2 * PREFETCH_AHEAD;
            count += observe_keyed(e, &evs[j], &ring[j % RING], &memo, emit, ud);
        }
    }
    return count;
}

/* sn_engine_observe with the event's names and hash already found (k). memo: NULL, or the pair
 * of the batch's previous event, reused when k->same and still valid, then set to this one's. */
static unsigned observe_keyed(sn_engine *e, const sn_event *ev, const event_key *k, pair_memo *memo,
                              sn_engine_emit_fn emit, void *ud)
{
    unsigned count = 0;
    e->st.events++;
    if (!k->ok) {
        e->st.refused++;
        return 0;
    }
    int64_t t = ev->end_unix_nano;
    pair_state *p;
    if (memo != NULL && k->same && memo->p != NULL && memo->removed == e->pairs.removed) {
        p = memo->p;
        kt_touch(&e->pairs, &p->node, t);
    } else {
        p = pair_get_hashed(e, ev->service, k->slen, ev->model, k->mlen, k->h, t);
        if (memo != NULL) {
            memo->p = p;
            memo->removed = e->pairs.removed;
        }
    }
    /* With many keys the pair's baseline entries are cold: start loading all of them now, so
     * that their cache misses overlap (and overlap the error and throughput work below) instead
     * of stalling each metric in turn. Few keys stay cached: no hint needed there. */
    if (p != NULL && e->pairs.count >= PREFETCH_MIN_PAIRS)
        for (int m = 0; m < SN_METRIC_COUNT; m++)
            if (p->ent[m] != NULL)
                sn_baseline_entry_prefetch(e->global, p->ent[m]);
    if (p != NULL && e->cfg.error_enabled)
        error_observe(e, p, ev, emit, ud, &count);

    pending pd[SN_METRIC_COUNT];
    sn_summary input_sum;
    sn_summary_clear(&input_sum);
    bool have_input = false;
    double input_y = NAN; /* the input tokens in their scoring space */
    for (int m = 0; m < SN_METRIC_COUNT; m++) {
        pd[m].fire = false;
        pd[m].drift_fire = false;
        double x;
        if (m == SN_METRIC_ERROR_RATE || !e->cfg.metrics[m].enabled ||
            !sn_event_metric(ev, (sn_metric)m, &x))
            continue;
        double y = metric_observe(e, p, ev, (sn_metric)m, x, &pd[m],
                                  m == SN_METRIC_INPUT_TOKENS ? &input_sum : NULL);
        if (m == SN_METRIC_INPUT_TOKENS) {
            have_input = true;
            input_y = y;
        }
    }
    /* The error rate baseline learns every call unless the window is elevated. */
    sn_baseline_entry *en;
    if (!(p != NULL && p->err_elevated) &&
        global_entry(e, p, ev, SN_METRIC_ERROR_RATE, t, &en) == 0)
        key_learn(e, e->global, en, sn_baseline_entry_user(en), SN_METRIC_ERROR_RATE,
                  sn_baseline_entry_seen(en), ev->is_error ? 1.0 : 0.0, ev->is_error ? 1.0 : 0.0,
                  t);

    /* Related metrics raise confidence. */
    bool err_high = p != NULL && p->err_elevated;
    for (int m = SN_METRIC_LATENCY_MS; m <= SN_METRIC_TTFT_MS; m++)
        if (pd[m].fire && err_high)
            relate(&pd[m], "error_rate");
    if (pd[SN_METRIC_COST_USD].fire) {
        for (int m = SN_METRIC_INPUT_TOKENS; m <= SN_METRIC_TOTAL_TOKENS; m++) {
            if (pd[m].fire) {
                relate(&pd[SN_METRIC_COST_USD], sn_metric_name((sn_metric)m));
                relate(&pd[m], "cost_usd");
            }
        }
    }
    if (pd[SN_METRIC_TOKENS_PER_SECOND].fire && pd[SN_METRIC_LATENCY_MS].fire)
        relate(&pd[SN_METRIC_TOKENS_PER_SECOND], "latency_ms");
    for (int m = 0; m < SN_METRIC_COUNT; m++) {
        if (pd[m].fire)
            emit_one(e, (sn_engine_check)pd[m].a.method, &pd[m].a, emit, ud, &count);
        if (pd[m].drift_fire)
            emit_one(e, SN_CHECK_CUSUM, &pd[m].drift, emit, ud, &count);
    }

    budget_observe(e, ev, emit, ud, &count);
    if (p != NULL) {
        if (e->cfg.drift_enabled) {
            if (have_input)
                psi_observe(e, p, &input_sum, input_y, t, emit, ud, &count);
            finish_observe(e, p, ev, emit, ud, &count);
        }
        if (e->cfg.throughput_enabled)
            tp_observe(e, p, ev, emit, ud, &count);
    }
    return count;
}

/* ---- GenAI metric aggregates ----------------------------------------------------------------- */

/* A template event for an aggregate's key: service, model, region and time; nothing measured. */
static void aggregate_event(const sn_aggregate *g, sn_event *ev)
{
    sn_event_init(ev);
    memcpy(ev->service, g->service, sizeof ev->service);
    memcpy(ev->model, g->model, sizeof ev->model);
    memcpy(ev->region, g->region, sizeof ev->region);
    ev->end_unix_nano = g->end_unix_nano;
}

unsigned sn_engine_aggregate(sn_engine *e, const sn_aggregate *g, sn_engine_emit_fn emit, void *ud)
{
    unsigned count = 0;
    e->st.aggregates++;
    if (g->service[0] == '\0' || strnlen(g->service, SN_NAME_MAX) >= SN_NAME_MAX ||
        strnlen(g->model, SN_NAME_MAX) >= SN_NAME_MAX || g->count == 0 || (int)g->metric < 0 ||
        g->metric >= SN_METRIC_COUNT) {
        e->st.refused++;
        return 0;
    }
    int64_t t = g->end_unix_nano;
    bool calls_point = g->metric == SN_METRIC_LATENCY_MS;
    bool tokens_point = g->metric == SN_METRIC_INPUT_TOKENS || g->metric == SN_METRIC_OUTPUT_TOKENS;
    uint32_t n = g->count > UINT32_MAX ? UINT32_MAX : (uint32_t)g->count;
    uint32_t errs = g->error_count < n ? (uint32_t)g->error_count : n;
    sn_event ev;
    aggregate_event(g, &ev);

    pair_state *p = pair_get(e, g->service, g->model, t);
    if (calls_point) {
        e->st.aggregate_calls += g->count;
        if (p != NULL && e->cfg.error_enabled)
            error_add(e, p, t, n, errs, g->error_type, g->region, emit, ud, &count);
    }
    if (p != NULL && e->cfg.throughput_enabled && (calls_point || tokens_point)) {
        int64_t len = g->start_unix_nano > 0 ? t - g->start_unix_nano : -1;
        if (len >= 0 && len <= e->cfg.tp_bucket)
            tp_add(e, p, t, tokens_point ? g->sum : NAN, calls_point ? n : 0, emit, ud, &count);
        else
            e->st.aggregate_tp_skipped++;
    }
    if (tokens_point && isfinite(g->cost_usd) && g->cost_usd >= 0.0) {
        ev.cost_usd = g->cost_usd;
        ev.cost_source = SN_COST_PRICE_TABLE;
        budget_observe(e, &ev, emit, ud, &count);
        ev.cost_usd = NAN;
        ev.cost_source = SN_COST_UNKNOWN;
    }
    /* The interval's mean, one sample; failed calls' points only count as errors (their
     * durations are another distribution). */
    if (errs == 0 && isfinite(g->sum) && g->sum >= 0.0 && g->metric != SN_METRIC_ERROR_RATE &&
        e->cfg.metrics[g->metric].enabled) {
        pending pd = {.fire = false};
        metric_observe(e, p, &ev, g->metric, g->sum / (double)g->count, &pd, NULL);
        if (pd.fire) {
            pd.a.calls = g->count;
            if (g->start_unix_nano > 0 && t > g->start_unix_nano)
                snprintf(pd.a.time_window, sizeof pd.a.time_window, "interval_%llds",
                         (long long)((t - g->start_unix_nano + SN_NS_PER_SEC / 2) / SN_NS_PER_SEC));
            else
                snprintf(pd.a.time_window, sizeof pd.a.time_window, "%s", "one_interval");
            emit_one(e, (sn_engine_check)pd.a.method, &pd.a, emit, ud, &count);
        }
    }
    return count;
}

/* ---- local alerts -----------------------------------------------------------------------------
 */

/* Whether the global baseline confirms a local alert on a value scored as res: the value must
 * break the engine's own spike rule -- agreement of min_agree detectors, and critical for every
 * one of them or a run of violations of the key that already meets persistence (the aggregator has
 * observed the batch's events before it judges the batch's alerts). So a sidecar's alert never
 * reports what the engine alone would have held back. */
static bool local_confirms(const sn_engine *e, sn_metric m, const key_state *ks,
                           const sn_ensemble_result *res)
{
    bool viol[SN_DETECT_KIND_COUNT] = {false}, crit = false;
    spike_agreement(e, m, res, viol, &crit);
    for (int k = 0; k < SN_DETECT_KIND_COUNT; k++) {
        if (!viol[k])
            continue;
        if (crit || ks->streak[k] >= e->persist[m][k])
            return true;
    }
    return false;
}

/* sn_engine_local_alert, or with `tentative` sn_engine_local_alert_ahead: then nothing is
 * counted unless the alert is emitted (its batch's copy is judged and counted otherwise). */
static int local_alert(sn_engine *e, const sn_local_alert *a, bool tentative,
                       sn_engine_emit_fn emit, void *ud)
{
    unsigned count = 0;
    if (!tentative) {
        e->st.evaluations[SN_CHECK_LOCAL]++;
        e->st.local_suppressed += a->suppressed;
    }
    sn_metric m = a->metric;
    if (a->service[0] == '\0' || (int)m < 0 || m >= SN_METRIC_COUNT) {
        e->st.refused += !tentative;
        return 0;
    }
    sn_anomaly an;
    anomaly_init(&an, a->time_unix_nano, a->service, a->model);
    an.source = SN_SOURCE_SIDECAR;
    an.anomaly_type = a->anomaly_type;
    an.method = a->detector;
    an.severity = a->severity;
    an.metric = m;
    an.value = a->value;
    an.baseline = a->baseline;
    an.threshold = a->threshold;
    an.deviation_sigma = a->deviation;
    an.suppressed = a->suppressed;
    memcpy(an.trace_id, a->trace_id, sizeof an.trace_id);
    sn_copy_truncated(an.region, sizeof an.region, a->region, strnlen(a->region, SN_SHORT_MAX));
    snprintf(an.time_window, sizeof an.time_window, "%s", "single_call");

    bool cold = true, confirmed = false;
    double gconf = 0.0;
    unsigned agreed = 1;
    if (m == SN_METRIC_ERROR_RATE) {
        /* An error alert is judged by the pair's error window. */
        const pair_state *p = pair_find(e, a->service, a->model);
        if (p != NULL) {
            cold = false;
            confirmed = p->err_elevated;
            gconf = 0.5;
            agreed = 2;
        }
    } else if (!e->cfg.metrics[m].enabled) {
        /* The engine does not alert on this metric's single calls (tokens_per_second by
         * default): neither does a sidecar through it. */
        cold = false;
    } else {
        sn_baseline_entry *en = sn_baseline_find(e->global, a->service, a->model, m);
        double y = to_model(e, m, a->value);
        if (en != NULL && sn_stats_sample_ok(y)) {
            key_state *ks = sn_baseline_entry_user(en);
            sn_summary sm;
            key_summary(e, e->global, en, ks, m, sn_baseline_entry_seen(en), &sm);
            const sn_summary *s = &sm;
            sn_ensemble_config ec = e->ens[m];
            ec.cusum_enabled = false; /* one value says nothing about drift; sums untouched */
            sn_ensemble st;
            sn_ensemble_init(&st);
            sn_ensemble_result res;
            sn_ensemble_evaluate(&st, &ec, s, y, &res);
            if (res.ready > 0) {
                cold = false;
                confirmed = local_confirms(e, m, ks, &res);
                if (confirmed) {
                    gconf = res.best.confidence;
                    agreed = res.agreed + 1;
                    an.method = res.best.method;
                    if (res.best.severity > an.severity)
                        an.severity = res.best.severity;
                    an.baseline = from_model(e, m, res.best.baseline);
                    an.threshold = from_model(e, m, res.best.threshold);
                    an.deviation_sigma = res.best.deviation;
                }
            }
        }
    }
    if (cold) {
        e->st.local_trusted++;
        double c = a->confidence * e->cfg.cold_trust;
        an.confidence = c < 0.5 ? 0.5 : c > 0.99 ? 0.99 : c;
        an.agreed = 1;
    } else if (confirmed) {
        e->st.local_confirmed++;
        e->st.violations[SN_CHECK_LOCAL]++;
        an.agreed = agreed;
        an.confidence = agree_confidence(fmax(gconf, a->confidence), agreed);
    } else {
        e->st.local_discarded += !tentative;
        return 0;
    }
    if (tentative) {
        e->st.evaluations[SN_CHECK_LOCAL]++;
        e->st.local_suppressed += a->suppressed;
    }
    if (an.severity == SN_SEV_NONE)
        an.severity = SN_SEV_MEDIUM;
    emit_one(e, SN_CHECK_LOCAL, &an, emit, ud, &count);
    return 1;
}

int sn_engine_local_alert(sn_engine *e, const sn_local_alert *a, int64_t now,
                          sn_engine_emit_fn emit, void *ud)
{
    (void)now;
    return local_alert(e, a, false, emit, ud);
}

int sn_engine_local_alert_ahead(sn_engine *e, const sn_local_alert *a, int64_t now,
                                sn_engine_emit_fn emit, void *ud)
{
    (void)now;
    return local_alert(e, a, true, emit, ud);
}

/* ---- tick ------------------------------------------------------------------------------------ */

/* Removes budget state idle for longer than idle_ns whose period has ended (a month's spend is
 * kept however long the key is quiet within the month). Returns how many. */
static uint64_t budget_expire(sn_engine *e, int64_t now, int64_t idle_ns)
{
    uint64_t removed = 0;
    knode *n = e->budgets.oldest;
    while (n != NULL) {
        knode *next = n->next;
        budget_state *b = (budget_state *)n;
        bool ended = b->rule >= e->nrules || !b->st.started ||
                     sn_period_index(e->rules[b->rule].bc.period, now) > b->st.period;
        if (ended && now >= n->last_seen &&
            (uint64_t)now - (uint64_t)n->last_seen > (uint64_t)idle_ns) {
            kt_remove(&e->budgets, n);
            removed++;
        }
        n = next;
    }
    return removed;
}

unsigned sn_engine_tick(sn_engine *e, int64_t now, sn_engine_emit_fn emit, void *ud)
{
    unsigned count = 0;
    if (e->cfg.throughput_enabled) {
        /* Buckets that ended before now - grace can be closed. Walk the pairs only when that
         * moved. */
        int64_t closable = floor_div(now - e->cfg.tp_grace, e->cfg.tp_bucket) - 1;
        if (closable != e->tp_tick_bucket) {
            e->tp_tick_bucket = closable;
            for (knode *n = e->pairs.oldest; n != NULL; n = n->next) {
                pair_state *p = (pair_state *)n;
                if (!p->tp_started)
                    continue;
                /* A long silence: judge at most relearn's worth of buckets one by one. */
                int64_t max_steps = e->cfg.tp_relearn / e->cfg.tp_bucket + 2;
                if (closable - p->tp_closed > max_steps)
                    p->tp_closed = closable - max_steps;
                while (p->tp_closed < closable)
                    tp_close(e, p, p->tp_closed + 1, emit, ud, &count);
            }
        }
    }
    /* Expiry walks every key: once a minute is enough for an idle time of seconds to days. */
    if (e->last_expire == 0 || now - e->last_expire >= 60 * SN_NS_PER_SEC || now < e->last_expire) {
        e->last_expire = now;
        int64_t idle = e->cfg.idle_expiry;
        e->st.expired += kt_expire(&e->pairs, now, idle);
        e->st.expired += budget_expire(e, now, idle);
        e->st.expired += sn_baseline_expire(e->global, now, idle);
        /* a seasonal slot is visited once a week at most */
        if (e->seasonal != NULL)
            e->st.expired += sn_baseline_expire(e->seasonal, now, idle + 168 * HOUR_NS);
    }
    return count;
}

void sn_engine_get_stats(const sn_engine *e, sn_engine_stats *out)
{
    *out = e->st;
    sn_baseline_stats bs;
    sn_baseline_get_stats(e->global, &bs);
    out->keys = bs.keys;
    out->bytes = bs.bytes_used;
    out->evictions = bs.evicted;
    if (e->seasonal != NULL) {
        sn_baseline_get_stats(e->seasonal, &bs);
        out->keys += bs.keys;
        out->bytes += bs.bytes_used;
        out->evictions += bs.evicted;
    }
    out->bytes += e->pairs.bytes + e->budgets.bytes + chunk_bytes(sizeof(*e));
    out->pairs = e->pairs.count;
    out->budget_keys = e->budgets.count;
}

/* ---- snapshots ------------------------------------------------------------------------------- */

/* Writes the snapshot key of an entry of table `which` ('g' or 's') into buf. */
static void snapshot_key(char *buf, size_t cap, char which, const sn_baseline_entry *en)
{
    const char *svc = sn_baseline_entry_service(en);
    snprintf(buf, cap, "%c/%s/%zu/%s%s", which, sn_metric_name(sn_baseline_entry_metric(en)),
             strlen(svc), svc, sn_baseline_entry_model(en));
}

/* Parses a snapshot key into its table, metric, service and model (buffers of SN_NAME_MAX).
 * Returns 0 or -EBADMSG. */
static int parse_snapshot_key(const char *key, char *which, sn_metric *m, char *svc, char *mdl)
{
    if (key == NULL || (key[0] != 'g' && key[0] != 's') || key[1] != '/')
        return -EBADMSG;
    *which = key[0];
    const char *p = key + 2, *slash = strchr(p, '/');
    if (slash == NULL)
        return -EBADMSG;
    int found = -1;
    for (int i = 0; i < SN_METRIC_COUNT; i++) {
        const char *name = sn_metric_name((sn_metric)i);
        if (strlen(name) == (size_t)(slash - p) && strncmp(name, p, (size_t)(slash - p)) == 0)
            found = i;
    }
    if (found < 0)
        return -EBADMSG;
    *m = (sn_metric)found;
    p = slash + 1;
    size_t slen = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 4; p++, digits++)
        slen = slen * 10 + (size_t)(*p - '0');
    if (digits == 0 || *p != '/' || slen == 0 || slen >= SN_NAME_MAX)
        return -EBADMSG;
    p++;
    if (strnlen(p, slen) < slen)
        return -EBADMSG;
    size_t mlen = strnlen(p + slen, SN_NAME_MAX);
    if (mlen >= SN_NAME_MAX)
        return -EBADMSG;
    memcpy(svc, p, slen);
    svc[slen] = '\0';
    memcpy(mdl, p + slen, mlen + 1);
    return 0;
}

/* Allocates the blob buffer and the dropped-key ring on first use. Returns 0 or -ENOMEM. */
static int snapshot_prepare(sn_engine *e)
{
    if (e->snap_buf == NULL) {
        size_t cap = sn_baseline_serialized_max(e->global);
        if (e->seasonal != NULL && sn_baseline_serialized_max(e->seasonal) > cap)
            cap = sn_baseline_serialized_max(e->seasonal);
        e->snap_buf = malloc(cap);
        if (e->snap_buf == NULL)
            return -ENOMEM;
        e->snap_cap = cap;
    }
    if (e->dropped == NULL) {
        e->dropped = calloc(SN_ENGINE_DROPPED_MAX, sizeof(*e->dropped));
        if (e->dropped == NULL)
            return -ENOMEM;
    }
    return 0;
}

/* Puts a changed key on the dirty list (once; O(1), no allocation). */
static void key_dirty(sn_engine *e, const sn_baseline *b, sn_baseline_entry *en, key_state *ks)
{
    if (ks->dirty)
        return;
    ks->dirty = 1;
    ks->seasonal = b == e->seasonal;
    ks->dnext = NULL;
    ks->dprev = e->dirty_tail;
    if (e->dirty_tail != NULL)
        ((key_state *)sn_baseline_entry_user(e->dirty_tail))->dnext = en;
    else
        e->dirty_head = en;
    e->dirty_tail = en;
}

/* Takes a key off the dirty list (no-op when it is not on it). */
static void key_clean(sn_engine *e, sn_baseline_entry *en, key_state *ks)
{
    if (!ks->dirty)
        return;
    if (ks->dprev != NULL)
        ((key_state *)sn_baseline_entry_user(ks->dprev))->dnext = ks->dnext;
    else
        e->dirty_head = ks->dnext;
    if (ks->dnext != NULL)
        ((key_state *)sn_baseline_entry_user(ks->dnext))->dprev = ks->dprev;
    else
        e->dirty_tail = ks->dprev;
    ks->dirty = 0;
    ks->dprev = ks->dnext = NULL;
    (void)en;
}

/* The tables' drop callback: the key leaves the dirty list, and one with a stored snapshot
 * joins the deletion queue. */
static void on_drop(sn_engine *e, char which, const sn_baseline_entry *cen)
{
    sn_baseline_entry *en = (sn_baseline_entry *)cen; /* the table is ours: it is mutable */
    key_state *ks = sn_baseline_entry_user(en);
    key_clean(e, en, ks);
    if (which == 'g')
        pair_forget_entry(e, en);
    if (!ks->stored || e->dropped == NULL)
        return;
    if (e->drop_count == SN_ENGINE_DROPPED_MAX) {
        e->drop_lost = true;
        return;
    }
    unsigned slot = (e->drop_head + e->drop_count) % SN_ENGINE_DROPPED_MAX;
    snapshot_key(e->dropped[slot], sizeof e->dropped[slot], which, en);
    e->drop_count++;
}

static void on_drop_global(const sn_baseline_entry *en, void *ud)
{
    on_drop(ud, 'g', en);
}

static void on_drop_seasonal(const sn_baseline_entry *en, void *ud)
{
    on_drop(ud, 's', en);
}

/* Puts every key of one table on the dirty list (a full snapshot). */
typedef struct mark_all {
    sn_engine *e;
    sn_baseline *table;
} mark_all;

static int mark_dirty(const sn_baseline_entry *en, void *arg)
{
    const mark_all *m = arg;
    sn_baseline_entry *me = (sn_baseline_entry *)en; /* the table is ours: it is mutable */
    key_dirty(m->e, m->table, me, sn_baseline_entry_user(me));
    return 0;
}

int sn_engine_snapshot(sn_engine *e, bool all, size_t max_keys, sn_engine_snapshot_fn cb, void *ud,
                       sn_engine_snapshot_result *res)
{
    sn_engine_snapshot_result local;
    if (res == NULL)
        res = &local;
    memset(res, 0, sizeof(*res));
    int rc = snapshot_prepare(e);
    if (rc != 0)
        return rc;
    res->lost_drops = e->drop_lost;
    e->drop_lost = false;
    if (all) {
        mark_all g = {e, e->global}, se = {e, e->seasonal};
        sn_baseline_foreach(e->global, mark_dirty, &g);
        if (e->seasonal != NULL)
            sn_baseline_foreach(e->seasonal, mark_dirty, &se);
    }
    size_t done = 0;
    while (e->drop_count > 0 && (max_keys == 0 || done < max_keys)) {
        rc = cb(e->dropped[e->drop_head], NULL, 0, ud);
        if (rc != 0)
            return rc;
        e->drop_head = (e->drop_head + 1) % SN_ENGINE_DROPPED_MAX;
        e->drop_count--;
        done++;
        res->deleted++;
    }
    while (e->dirty_head != NULL && (max_keys == 0 || done < max_keys)) {
        sn_baseline_entry *en = e->dirty_head;
        key_state *ks = sn_baseline_entry_user(en);
        sn_baseline *table = ks->seasonal ? e->seasonal : e->global;
        /* Off the list first: the blob then holds no list pointers, only zeros. */
        key_clean(e, en, ks);
        char key[SN_ENGINE_SNAPSHOT_KEY_MAX];
        snapshot_key(key, sizeof key, ks->seasonal ? 's' : 'g', en);
        size_t len;
        /* cannot fail: the buffer holds the largest blob of either table */
        sn_baseline_entry_serialize(table, en, e->snap_buf, e->snap_cap, &len);
        rc = cb(key, e->snap_buf, len, ud);
        if (rc != 0) {
            key_dirty(e, table, en, ks); /* written next time */
            return rc;
        }
        ks->stored = 1;
        done++;
        res->written++;
    }
    res->complete = e->dirty_head == NULL && e->drop_count == 0;
    return 0;
}

/* Whether detector state read from a snapshot is in range (the rest of key_state is bytes
 * and counters any value of which is harmless). */
static bool key_state_ok(const key_state *ks)
{
    const sn_cusum *c = &ks->drift.cusum;
    const sn_drift *d = &ks->drift;
    return isfinite(c->s_hi) && c->s_hi >= 0.0 && isfinite(c->s_lo) && c->s_lo >= 0.0 &&
           isfinite(c->drift) && isfinite(ks->lmean) && isfinite(ks->lvar) && ks->lvar >= 0.0 &&
           isfinite(d->sum) && isfinite(d->sumsq) && isfinite(d->shift) && isfinite(d->ref_mean) &&
           isfinite(d->ref_var) && d->ref_var >= 0.0;
}

int sn_engine_restore(sn_engine *e, const char *key, const void *blob, size_t len)
{
    char which, svc[SN_NAME_MAX], mdl[SN_NAME_MAX];
    sn_metric m;
    int rc = parse_snapshot_key(key, &which, &m, svc, mdl);
    if (rc != 0)
        return rc;
    sn_baseline *table = which == 'g' ? e->global : e->seasonal;
    if (table == NULL)
        return -EPROTO;
    rc = snapshot_prepare(e);
    if (rc != 0)
        return rc;
    sn_baseline_entry *en;
    /* A snapshot written with another key_state size (an older version) keeps its learned
     * statistics; the detectors' own state starts afresh (all zero, as a new key's). */
    rc = sn_baseline_restore_ex(table, blob, len, 0, SN_BASELINE_RESTORE_STATS_ONLY, &en);
    if (rc < 0)
        return rc;
    bool stats_only = rc == 1;
    key_state *ks = sn_baseline_entry_user(en);
    /* The list fields came from the blob: this entry is on no list. */
    ks->dirty = 0;
    ks->dprev = ks->dnext = NULL;
    ks->seasonal = which == 's';
    if (sn_baseline_entry_metric(en) != m || strcmp(sn_baseline_entry_service(en), svc) != 0 ||
        strcmp(sn_baseline_entry_model(en), mdl) != 0 || !key_state_ok(ks)) {
        if (table == e->global)
            pair_forget_entry(e, en);
        sn_baseline_remove(table, en);
        return -EBADMSG;
    }
    /* The cached summary is recomputed from the restored statistics, never trusted. */
    memset(ks->cache, 0, sizeof ks->cache);
    ks->cache_n = 0;
    ks->summary_ok = 0;
    ks->view = 0;
    ks->since_summary = 0;
    ks->stored = 1;
    if (stats_only) {
        /* The log-space moments were detector state too: seeded from the restored window
         * (mean from the median, standard deviation from the IQR of a normal), not zero, which
         * would put every value many deviations away until they re-learned. */
        if (e->cfg.metrics[m].transform == SN_TRANSFORM_LOG) {
            sn_summary r;
            sn_baseline_summary_mad(table, en, &r, false);
            if (r.n > 0) {
                double sd = (to_model(e, m, r.q3) - to_model(e, m, r.q1)) / 1.349;
                ks->lmean = to_model(e, m, r.median);
                ks->lvar = isfinite(sd) ? sd * sd : 0.0;
            }
        }
        key_dirty(e, table, en, ks); /* rewritten in this version's format at the next snapshot */
        return 1;
    }
    return 0;
}

bool sn_engine_snapshot_live(const sn_engine *e, const char *key)
{
    char which, svc[SN_NAME_MAX], mdl[SN_NAME_MAX];
    sn_metric m;
    if (parse_snapshot_key(key, &which, &m, svc, mdl) != 0)
        return false;
    const sn_baseline *table = which == 'g' ? e->global : e->seasonal;
    return table != NULL && sn_baseline_find(table, svc, mdl, m) != NULL;
}

/* ---- merged views across replicas ------------------------------------------------------------ */

void sn_engine_global_key(const char *service, const char *model, sn_metric m, char *buf,
                          size_t cap)
{
    snprintf(buf, cap, "g/%s/%zu/%s%s", sn_metric_name(m), strlen(service), service, model);
}

int sn_engine_view_export(sn_engine *e, const char *service, const char *model, sn_metric m,
                          const void **blob, size_t *len)
{
    sn_baseline_entry *en = sn_baseline_find(e->global, service, model, m);
    if (en == NULL)
        return -ENOENT;
    int rc = snapshot_prepare(e);
    if (rc == 0)
        rc = sn_baseline_entry_serialize(e->global, en, e->snap_buf, e->snap_cap, len);
    if (rc == 0)
        *blob = e->snap_buf;
    return rc;
}

/* Creates the scratch table and accumulator of merged views on first use. 0, -EPROTO (exact
 * mode: windows of samples are not merged) or -ENOMEM. */
static int view_prepare(sn_engine *e)
{
    if (e->cfg.baseline_mode != SN_BASELINE_COMPACT)
        return -EPROTO;
    if (e->view_table != NULL)
        return 0;
    sn_baseline_config bc;
    sn_baseline_config_init(&bc);
    bc.mode = SN_BASELINE_COMPACT;
    bc.window = (uint32_t)e->cfg.window;
    bc.memory_budget = 1 << 20; /* one entry at a time */
    bc.hash_seed = e->seed ^ 0x71e3ull;
    bc.user_bytes = sizeof(key_state);
    int rc = sn_baseline_create(&e->view_table, &bc);
    if (rc != 0)
        return rc == -EINVAL ? -ENOMEM : rc;
    /* Four times the buckets of one key's sketch: the union of a few replicas' windows keeps
     * its resolution. */
    rc = sn_sketch_create(&e->view_acc, SN_BASELINE_DEFAULT_SKETCH_ALPHA,
                          4 * SN_BASELINE_DEFAULT_SKETCH_BUCKETS);
    if (rc != 0) {
        sn_baseline_destroy(e->view_table);
        e->view_table = NULL;
    }
    return rc;
}

/* Log-space moments of one contribution, weighted by its window's samples. */
typedef struct view_moments {
    double w, sum, sumsq; /* sum of w_i m_i and of w_i (v_i + m_i^2) */
} view_moments;

static void view_add_moments(view_moments *vm, double w, double mean, double var)
{
    vm->w += w;
    vm->sum += w * mean;
    vm->sumsq += w * (var + mean * mean);
}

int sn_engine_view_merge(sn_engine *e, const char *service, const char *model, sn_metric m,
                         unsigned n, const void *const *blobs, const size_t *lens,
                         sn_engine_view *out)
{
    memset(out, 0, sizeof *out);
    sn_summary_clear(&out->raw);
    sn_baseline_entry *en = sn_baseline_find(e->global, service, model, m);
    if (en == NULL)
        return -ENOENT;
    key_state *ks = sn_baseline_entry_user(en);
    int rc = view_prepare(e);
    if (rc != 0)
        return rc;
    sn_sketch_clear(e->view_acc);
    rc = sn_baseline_entry_merge_window(e->global, en, e->view_acc);
    if (rc != 0)
        return rc;
    out->local_n = sn_sketch_count(e->view_acc);
    view_moments vm = {0};
    view_add_moments(&vm, (double)out->local_n, ks->lmean, ks->lvar);
    out->replicas = 1;
    for (unsigned i = 0; i < n; i++) {
        sn_baseline_entry *rn;
        if (sn_baseline_restore(e->view_table, blobs[i], lens[i], 0, &rn) != 0) {
            out->skipped++;
            continue;
        }
        const key_state *rs = sn_baseline_entry_user(rn);
        uint64_t before = sn_sketch_count(e->view_acc);
        /* Only the same key, with sane moments, and while the union fits. */
        if (sn_baseline_entry_metric(rn) != m ||
            strcmp(sn_baseline_entry_service(rn), service) != 0 ||
            strcmp(sn_baseline_entry_model(rn), model) != 0 || !key_state_ok(rs) ||
            out->replicas >= SN_ENGINE_VIEW_MAX ||
            sn_baseline_entry_merge_window(e->view_table, rn, e->view_acc) != 0) {
            out->skipped++;
        } else {
            view_add_moments(&vm, (double)(sn_sketch_count(e->view_acc) - before), rs->lmean,
                             rs->lvar);
            out->replicas++;
        }
        sn_baseline_remove(e->view_table, rn);
    }
    if (out->replicas == 1) { /* nobody else: back to the local summary */
        ks->view = 0;
        ks->summary_ok = 0;
        sn_baseline_summary(e->global, en, &out->raw);
        return 0;
    }
    sn_sketch_summary(e->view_acc, &out->raw);
    sn_summary r = out->raw;
    double lmean = vm.w > 0.0 ? vm.sum / vm.w : ks->lmean;
    double lvar = vm.w > 0.0 ? fmax(0.0, vm.sumsq / vm.w - lmean * lmean) : ks->lvar;
    scoring_summary(e, m, &r, lmean, lvar, r.n);
    cache_summary(ks, &r);
    ks->view = (uint8_t)out->replicas;
    return 0;
}

static int view_clear(const sn_baseline_entry *en, void *arg)
{
    (void)arg;
    key_state *ks = sn_baseline_entry_user((sn_baseline_entry *)en);
    if (ks->view != 0) {
        ks->view = 0;
        ks->summary_ok = 0;
    }
    return 0;
}

void sn_engine_view_clear_all(sn_engine *e)
{
    sn_baseline_foreach(e->global, view_clear, NULL);
}

unsigned sn_engine_view_replicas(sn_engine *e, const sn_baseline_entry *en)
{
    (void)e; /* the user area is the engine's: asked through it */
    const key_state *ks = sn_baseline_entry_user((sn_baseline_entry *)en);
    return ks->view;
}

/* A budget state as the engine's export shows it (pointers into r and b, valid while they are). */
static sn_engine_budget budget_view(const budget_rule *r, const budget_state *b, int64_t last_seen)
{
    return (sn_engine_budget){
        .rule_service = r->any ? "*" : r->service,
        .period = r->bc.period,
        .per_user = r->per_user,
        .service = b->service,
        .user = b->user,
        .period_index = b->st.period,
        .spent = b->st.spent,
        .soft_fired = b->st.soft_fired,
        .hard_fired = b->st.hard_fired,
        .last_seen = last_seen,
    };
}

/* ---- budget spend that survives a restart ------------------------------------------------------
 */

int sn_engine_budgets_export(sn_engine *e, bool all, sn_engine_budget_fn cb, void *ud)
{
    for (knode *n = e->budgets.oldest; n != NULL; n = n->next) {
        budget_state *b = (budget_state *)n;
        if ((!b->dirty && !all) || !b->st.started || b->rule >= e->nrules)
            continue;
        const budget_rule *r = &e->rules[b->rule];
        sn_engine_budget out = budget_view(r, b, n->last_seen);
        int rc = cb(&out, ud);
        if (rc != 0)
            return rc;
        b->dirty = false;
    }
    return 0;
}

int sn_engine_budget_restore(sn_engine *e, const sn_engine_budget *in, int64_t now)
{
    if (in->rule_service == NULL || in->service == NULL || in->user == NULL ||
        !isfinite(in->spent) || in->spent < 0.0 || in->service[0] == '\0')
        return -EINVAL;
    unsigned i = 0;
    for (; i < e->nrules; i++) {
        const budget_rule *r = &e->rules[i];
        if (r->bc.period == in->period && r->per_user == in->per_user &&
            strcmp(r->any ? "*" : r->service, in->rule_service) == 0 &&
            (r->any || strcmp(r->service, in->service) == 0))
            break;
    }
    if (i == e->nrules || (in->per_user && in->user[0] == '\0') ||
        (!in->per_user && in->user[0] != '\0'))
        return -ENOENT;
    if (sn_period_index(in->period, now) != in->period_index)
        return -ESTALE; /* that period is over: the new one starts from zero */
    budget_state *b = budget_get(e, i, in->service, in->user, now);
    if (b == NULL)
        return e->budgets.count >= e->budgets.max ? -ENOSPC : -ENOMEM;
    if (b->st.started)
        return -EEXIST;
    b->st.started = true;
    b->st.period = in->period_index;
    b->st.spent = in->spent;
    b->st.soft_fired = in->soft_fired;
    b->st.hard_fired = in->hard_fired;
    b->dirty = false;
    b->synced = in->spent; /* counted globally before the restart, if it was shared */
    b->synced_period = in->period_index;
    return 0;
}

/* ---- one budget across replicas ---- */

size_t sn_engine_budgets_sync_collect(sn_engine *e, size_t max, sn_engine_budget_sync *out)
{
    size_t n = 0;
    for (knode *k = e->budgets.oldest; k != NULL && n < max; k = k->next) {
        budget_state *b = (budget_state *)k;
        if (!b->unsynced || !b->st.started || b->rule >= e->nrules)
            continue;
        const budget_rule *r = &e->rules[b->rule];
        double base = b->synced_period == b->st.period ? b->synced : 0.0;
        out[n].b = budget_view(r, b, k->last_seen);
        out[n].delta = b->st.spent - base;
        out[n].state = b;
        n++;
    }
    return n;
}

void sn_engine_budgets_sync_apply(sn_engine *e, const sn_engine_budget_sync *s, double global)
{
    (void)e;
    budget_state *b = s->state;
    if (b->st.period != s->b.period_index || !isfinite(global))
        return; /* the period rolled over meanwhile: the next sync starts it */
    /* Another replica's spend counts from now; ours never goes down (a Redis that lost the
     * key restarts the sum from our delta). */
    if (global > b->st.spent) {
        b->st.spent = global;
        b->dirty = true;
    }
    b->synced = b->st.spent;
    b->synced_period = b->st.period;
    b->unsynced = false;
}
