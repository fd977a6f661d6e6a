/*
 * local_detect.c -- Z-score and static thresholds per (service, model, metric) in one pod.
 *
 * The Z-score needs only the count, mean and standard deviation of the last `window` samples.
 * When the window fits (window <= RING_MAX_WINDOW, the default 1000 does), each baseline entry
 * keeps them itself, in the entry's user area: a ring of the samples as floats and sums over
 * them, so a sample costs O(1) instead of a sorted insert into an exact window and a full
 * summary (order statistics and MAD) per score. The table still owns keys, LRU order and the
 * memory budget; its own window is then one sample, and since nothing reads it (nor its Welford
 * moments or EWMA) a normal sample only touches the entry (sn_baseline_touch: last seen and LRU
 * order). Larger windows use the table's exact window.
 *
 * Per event the cost is kept to what the verdicts need (docs/benchmarks.md, "Sidecar local
 * detection"): one look-up per (service, model) in a small cache of the pair's entries instead
 * of one hashed table look-up per metric; a cheap test of the Z-score before the full verdict
 * (most values are nowhere near the threshold); static levels only for metrics that have some;
 * units converted back (expm1) only for an anomaly. The alerts are the same, field for field.
 */
#include "local_detect.h"

#include "baseline.h"
#include "bytes.h"
#include "detect/settings.h"

#include <assert.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rolling moments of one key's last `window` samples (the head of the entry's user area; the
 * ring of floats follows). Sums are of (sample - ref), ref being the mean when they were last
 * recomputed, which keeps the variance free of cancellation; they are recomputed from the ring
 * every `window` samples so rounding never accumulates. */
typedef struct ring_hdr {
    double ref;
    double sum, sumsq;
    uint32_t n;     /* samples in the ring */
    uint32_t head;  /* the slot the next sample goes to */
    uint32_t since; /* samples since the sums were recomputed */
    uint32_t pad;
} ring_hdr;

#define RING_MAX_WINDOW ((SN_BASELINE_USER_MAX - sizeof(ring_hdr)) / sizeof(float))

/* The pair cache: PAIR_SLOTS slots (a power of two), each the table's entries of one (service,
 * model) by metric, found by a hash of the two names in one of two slots (a set: the slot of
 * the hash with its low bit cleared, and the next), so that two busy pairs whose hashes meet
 * do not keep taking each other's slot. A slot holds only pointers: an entry the table drops is
 * cleared from it (on_drop), and a pair whose slot another pair took simply looks its entries up
 * again. 256 slots cost 38 KiB per detector, outside the baselines' budget. */
#define PAIR_SLOTS 256u

typedef struct pair_slot {
    uint64_t hash;
    uint64_t gen; /* the detector's count of take-overs when this pair took the slot */
    bool recent;  /* the set's slot found last (the other is taken over first) */
    sn_baseline_entry *e[SN_METRIC_COUNT];
    ring_hdr *h[SN_METRIC_COUNT]; /* e[m]'s ring in ring mode, else NULL */
} pair_slot;

struct sn_local_detect {
    sn_local_detect_config cfg;
    sn_zscore_config zscore[SN_METRIC_COUNT]; /* cfg.zscore with each metric's direction */
    bool levels[SN_METRIC_COUNT];             /* the metric has a static level */
    sn_baseline *baselines;
    bool ring; /* moments in the entries' user areas (window <= RING_MAX_WINDOW) */
    uint64_t seed;
    uint64_t gens; /* slots taken over so far (a pair token's generation) */
    pair_slot pairs[PAIR_SLOTS];
};

static float *ring_samples(ring_hdr *h)
{
    return (float *)(h + 1);
}

/* The mean and standard deviation of a ring with h->n > 0 samples. */
static void ring_moments(const ring_hdr *h, double *mean, double *stddev)
{
    double n = (double)h->n;
    *mean = h->ref + h->sum / n;
    double var = h->n > 1 ? (h->sumsq - h->sum * h->sum / n) / (n - 1.0) : 0.0;
    *stddev = var > 0.0 ? sqrt(var) : 0.0;
}

/* The count, mean and standard deviation of the ring; the order statistics are NAN (the Z-score
 * does not read them). */
static void ring_summary(const ring_hdr *h, sn_summary *s)
{
    s->n = h->n;
    s->min = s->max = s->median = s->q1 = s->q3 = s->p95 = s->p99 = s->mad = NAN;
    if (h->n == 0) {
        s->mean = s->stddev = NAN;
        return;
    }
    ring_moments(h, &s->mean, &s->stddev);
}

/* Adds x to the ring of `window` samples, replacing the oldest when full. */
static void ring_add(ring_hdr *h, uint32_t window, double x)
{
    float *r = ring_samples(h);
    float f = x > FLT_MAX ? FLT_MAX : x < -FLT_MAX ? -FLT_MAX : (float)x;
    if (h->n == 0 && h->since == 0)
        h->ref = (double)f; /* the first sample: sums start near zero */
    if (h->n == window) {
        double old = (double)r[h->head] - h->ref;
        h->sum -= old;
        h->sumsq -= old * old;
    } else {
        h->n++;
    }
    r[h->head] = f;
    h->head = h->head + 1 == window ? 0 : h->head + 1;
    double d = (double)f - h->ref;
    h->sum += d;
    h->sumsq += d * d;
    if (++h->since >= window) {
        /* Samples sit in r[0..n) (the ring fills from slot 0). */
        h->ref += h->sum / (double)h->n;
        h->sum = h->sumsq = 0.0;
        for (uint32_t i = 0; i < h->n; i++) {
            double e = (double)r[i] - h->ref;
            h->sum += e;
            h->sumsq += e * e;
        }
        h->since = 0;
    }
}

/* The side that is anomalous per metric; SN_DIR_BOTH + learn=false means "not scored". */
static const struct {
    bool scored;
    sn_direction dir;
} metric_rule[SN_METRIC_COUNT] = {
    [SN_METRIC_LATENCY_MS] = {true, SN_DIR_UPPER},
    [SN_METRIC_TTFT_MS] = {true, SN_DIR_UPPER},
    [SN_METRIC_INPUT_TOKENS] = {true, SN_DIR_UPPER},
    [SN_METRIC_OUTPUT_TOKENS] = {true, SN_DIR_UPPER},
    [SN_METRIC_TOTAL_TOKENS] = {true, SN_DIR_UPPER},
    [SN_METRIC_COST_USD] = {true, SN_DIR_UPPER},
    [SN_METRIC_ERROR_RATE] = {false, SN_DIR_UPPER}, /* static thresholds only */
    [SN_METRIC_TOKENS_PER_SECOND] = {true, SN_DIR_LOWER},
};

/* The log scale's unit: ln(1 + x / u), costs in micro-dollars (as the aggregator's engine). */
static double log_unit(sn_metric m)
{
    return m == SN_METRIC_COST_USD ? 1e-6 : 1.0;
}

/* The value scored for metric m: x, or ln(1 + x / unit) on the log scale (NAN for x < 0). */
static double to_scale(const sn_local_detect *ld, sn_metric m, double x)
{
    if (!ld->cfg.log_scale)
        return x;
    /* whole token counts (unit 1) come from sn_stats_log1p's table, the same bits as log1p */
    return x >= 0.0 ? sn_stats_log1p(x / log_unit(m)) : NAN;
}

/* Back to the metric's unit (the alert reports real units). */
static double from_scale(const sn_local_detect *ld, sn_metric m, double y)
{
    if (!ld->cfg.log_scale || !isfinite(y))
        return y;
    double x = expm1(y) * log_unit(m);
    return x > 0.0 ? x : 0.0;
}

/* The pair cache's hash of (service, model) (slen and mlen bytes), seeded so that crafted names
 * cannot pile into one slot (a collision only costs look-ups, never a wrong entry: slots are
 * checked by name). */
static uint64_t pair_hash(uint64_t seed, const char *service, size_t slen, const char *model,
                          size_t mlen)
{
    uint64_t h = sn_hash_bytes(seed ^ ((uint64_t)slen << 32 | mlen), service, slen, 0);
    h = sn_hash_bytes(h, model, mlen, 0);
    return h ^ (h >> 32);
}

/* Whether slot p caches the pair (service, model): its first entry has these names. A slot with
 * no entry caches nothing. */
static bool slot_holds(const pair_slot *p, const char *service, const char *model)
{
    for (int m = 0; m < SN_METRIC_COUNT; m++) {
        if (p->e[m] != NULL)
            return strcmp(sn_baseline_entry_service(p->e[m]), service) == 0 &&
                   strcmp(sn_baseline_entry_model(p->e[m]), model) == 0;
    }
    return false;
}

/* Whether slot p caches no entry. */
static bool slot_empty(const pair_slot *p)
{
    for (int m = 0; m < SN_METRIC_COUNT; m++) {
        if (p->e[m] != NULL)
            return false;
    }
    return true;
}

/* The cache slot of the event's (service, model): one of its set, taken over (emptied) when
 * neither caches the pair; NULL when the names are no table key (no service, or a name too long):
 * then no metric of the event has a baseline. The slot belongs to ld. */
static pair_slot *pair_for(sn_local_detect *ld, const sn_event *ev)
{
    size_t slen = strnlen(ev->service, sizeof ev->service);
    size_t mlen = strnlen(ev->model, sizeof ev->model);
    if (slen == 0 || slen >= sizeof ev->service || mlen >= sizeof ev->model)
        return NULL;
    uint64_t h = pair_hash(ld->seed, ev->service, slen, ev->model, mlen);
    pair_slot *set = &ld->pairs[h & (PAIR_SLOTS - 2)];
    int k = 0;
    for (; k < 2; k++) {
        if (set[k].hash == h && slot_holds(&set[k], ev->service, ev->model))
            break;
    }
    if (k == 2) {
        /* Taken over: a slot caching nothing, else the one found less recently. */
        k = slot_empty(&set[0]) ? 0 : slot_empty(&set[1]) ? 1 : set[0].recent ? 1 : 0;
        memset(&set[k], 0, sizeof set[k]);
        set[k].hash = h;
        set[k].gen = ++ld->gens;
    }
    set[k].recent = true;
    set[k ^ 1].recent = false;
    return &set[k];
}

/* A pair token: the slot's generation and index, never 0. */
static uint64_t pair_token(const sn_local_detect *ld, const pair_slot *p)
{
    return p->gen * PAIR_SLOTS + (uint64_t)(p - ld->pairs);
}

/* The slot a pair token names while that slot still caches the token's pair (no other pair took
 * it over since), else NULL. */
static pair_slot *pair_of_token(sn_local_detect *ld, uint64_t token)
{
    pair_slot *p = &ld->pairs[token & (PAIR_SLOTS - 1)];
    return token != 0 && p->gen == token / PAIR_SLOTS ? p : NULL;
}

/* The table's on_drop: forgets an evicted entry's place in the pair cache. */
static void forget_entry(const sn_baseline_entry *e, void *ud)
{
    sn_local_detect *ld = ud;
    const char *service = sn_baseline_entry_service(e), *model = sn_baseline_entry_model(e);
    size_t slen = strlen(service), mlen = strlen(model);
    uint64_t h = pair_hash(ld->seed, service, slen, model, mlen);
    pair_slot *set = &ld->pairs[h & (PAIR_SLOTS - 2)];
    sn_metric m = sn_baseline_entry_metric(e);
    for (int k = 0; k < 2; k++) {
        if (set[k].e[m] == e) {
            set[k].e[m] = NULL;
            set[k].h[m] = NULL;
        }
    }
}

/* False only when sn_zscore_score(cfg, {mean, sd}, y) cannot be an anomaly: the Z-score with the
 * detector's floored scale, computed as the detector does, is within the threshold -- less a
 * margin of 1e-6 so that no rounding could matter -- or on the side the direction ignores. A NaN
 * score (no verdict there either) is false too. Most values stop here, before the full verdict. */
static bool may_exceed(const sn_zscore_config *cfg, double mean, double sd, double y)
{
    double s = sd > 0.0 ? sd : 0.0;
    if (cfg->min_stddev > s)
        s = cfg->min_stddev;
    double rel = cfg->min_stddev_rel * fabs(mean);
    if (rel > s && isfinite(rel))
        s = rel;
    double z = (y * 0.5 - mean * 0.5) / s * 2.0;
    double cut = cfg->threshold * (1.0 - 1e-6);
    switch (cfg->direction) {
    case SN_DIR_UPPER:
        return z > cut;
    case SN_DIR_LOWER:
        return z < -cut;
    case SN_DIR_BOTH:
        break;
    }
    return fabs(z) > cut;
}

/* The Z-score verdict on y (the scale's value) of metric m against entry e -- its ring h in ring
 * mode, else NULL -- in *v, when it is an anomaly (true); false when there is no verdict or no
 * anomaly (*v then undefined). */
static bool zscore_anomaly(sn_local_detect *ld, sn_metric m, sn_baseline_entry *e,
                           const ring_hdr *h, double y, sn_verdict *v)
{
    sn_summary s;
    if (h != NULL) {
        if (h->n < ld->zscore[m].min_samples)
            return false; /* cold start */
        double mean, sd;
        ring_moments(h, &mean, &sd);
        if (!may_exceed(&ld->zscore[m], mean, sd, y))
            return false;
        ring_summary(h, &s);
    } else {
        sn_baseline_summary(ld->baselines, e, &s);
    }
    return sn_zscore_score(&ld->zscore[m], &s, y, v);
}

void sn_local_detect_config_defaults(sn_local_detect_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->enabled = true;
    cfg->log_scale = true;
    cfg->window = 1000;
    cfg->max_bytes = 16 << 20;
    sn_zscore_config_defaults(&cfg->zscore);
    for (int m = 0; m < SN_METRIC_COUNT; m++)
        sn_threshold_config_defaults(&cfg->thresholds[m]);
}

int sn_local_detect_config_validate(const sn_local_detect_config *cfg, const char *prefix,
                                    sn_config_error *err)
{
    const char *msg = sn_zscore_config_validate(&cfg->zscore);
    if (msg != NULL) {
        snprintf(err->msg, sizeof err->msg, "config: %s.zscore.%s", prefix, msg);
        return -EINVAL;
    }
    for (int m = 0; m < SN_METRIC_COUNT; m++) {
        msg = sn_threshold_config_validate(&cfg->thresholds[m]);
        if (msg != NULL) {
            snprintf(err->msg, sizeof err->msg, "config: %s.thresholds.%s.%s", prefix,
                     sn_metric_name((sn_metric)m), msg);
            return -EINVAL;
        }
    }
    return 0;
}

int sn_local_detect_create(const sn_local_detect_config *cfg, uint64_t hash_seed,
                           sn_local_detect **out)
{
    sn_config_error err;
    if (sn_local_detect_config_validate(cfg, "local", &err) != 0)
        return -EINVAL;
    sn_local_detect *ld = calloc(1, sizeof(*ld));
    if (ld == NULL)
        return -ENOMEM;
    ld->cfg = *cfg;
    ld->seed = hash_seed;
    for (int m = 0; m < SN_METRIC_COUNT; m++) {
        const sn_threshold_config *t = &cfg->thresholds[m];
        ld->zscore[m] = cfg->zscore;
        ld->zscore[m].direction = metric_rule[m].dir;
        ld->levels[m] = !isnan(t->upper_warn) || !isnan(t->upper_critical) ||
                        !isnan(t->lower_warn) || !isnan(t->lower_critical);
    }
    sn_baseline_config bc;
    sn_baseline_config_init(&bc);
    bc.mode = SN_BASELINE_EXACT;
    bc.window = (uint32_t)cfg->window;
    if (cfg->window >= 1 && (uint64_t)cfg->window <= RING_MAX_WINDOW) {
        ld->ring = true;
        bc.window = 1; /* the moments live in the user area */
        bc.user_bytes = sizeof(ring_hdr) + (size_t)cfg->window * sizeof(float);
    }
    bc.memory_budget = (size_t)cfg->max_bytes;
    bc.hash_seed = hash_seed;
    bc.on_drop = forget_entry;
    bc.on_drop_ud = ld;
    int rc = sn_baseline_create(&ld->baselines, &bc);
    if (rc != 0)
        goto out_free_ld;
    *out = ld;
    return 0;

out_free_ld:
    free(ld);
    return rc;
}

void sn_local_detect_destroy(sn_local_detect *ld)
{
    if (ld == NULL)
        return;
    sn_baseline_destroy(ld->baselines);
    free(ld);
}

/* Whether the anomaly v beats the verdict *best so far (an anomaly when have is true): any anomaly
 * beats none; between anomalies the higher severity, then the higher score. */
static bool beats(const sn_verdict *v, const sn_verdict *best, bool have)
{
    return !have || v->severity > best->severity ||
           (v->severity == best->severity && v->score > best->score);
}

/* Scores and learns every metric of ev against the entries of its pair's slot (NULL when the
 * names are no table key): sn_local_detect_event's work once the slot is known. */
static size_t detect_in(sn_local_detect *ld, const sn_event *ev, pair_slot *pair,
                        sn_local_alert *alerts, size_t max)
{
    size_t found = 0;
    double xs[SN_METRIC_COUNT];
    unsigned have = sn_event_metrics(ev, xs);
    for (int i = 0; i < SN_METRIC_COUNT; i++) {
        if (!(have & (1u << i)))
            continue;
        sn_metric m = (sn_metric)i;
        double x = xs[i];
        sn_verdict best, v;
        bool anomaly = false;
        if (ld->levels[m])
            anomaly = sn_threshold_check(&ld->cfg.thresholds[m], x, &best);
        sn_baseline_entry *e = NULL;
        ring_hdr *h = NULL; /* e's ring in ring mode */
        double y = 0.0;
        if (metric_rule[m].scored && pair != NULL) {
            y = to_scale(ld, m, x);
            if (isfinite(y)) {
                /* The entry is looked up again per metric: creating one may evict another. */
                if (pair->e[m] == NULL) {
                    if (sn_baseline_get(ld->baselines, ev->service, ev->model, m, ev->end_unix_nano,
                                        &pair->e[m]) != 0)
                        pair->e[m] = NULL;
                    else if (ld->ring)
                        pair->h[m] = sn_baseline_entry_user(pair->e[m]);
                }
                e = pair->e[m];
                h = pair->h[m];
            }
        }
        if (e != NULL && zscore_anomaly(ld, m, e, h, y, &v) && beats(&v, &best, anomaly)) {
            /* the alert speaks the metric's unit; the deviation stays in sigmas */
            best = v;
            best.value = x;
            best.baseline = from_scale(ld, m, v.baseline);
            best.threshold = from_scale(ld, m, v.threshold);
            anomaly = true;
        }
        if (anomaly) {
            if (found < max)
                sn_local_alert_fill(&alerts[found], ev, m, &best, NULL);
            found++;
        } else if (e != NULL) {
            /* Refusals (a value past 1e100) are not worth an error: no verdict next time. */
            if (h == NULL) {
                sn_baseline_observe(ld->baselines, e, y, ev->end_unix_nano);
            } else if (sn_stats_sample_ok(y)) {
                sn_baseline_touch(ld->baselines, e, ev->end_unix_nano);
                ring_add(h, (uint32_t)ld->cfg.window, y);
            }
        }
    }
    return found;
}

size_t sn_local_detect_event(sn_local_detect *ld, const sn_event *ev, sn_local_alert *alerts,
                             size_t max)
{
    if (!ld->cfg.enabled)
        return 0;
    return detect_in(ld, ev, pair_for(ld, ev), alerts, max);
}

size_t sn_local_detect_event_pair(sn_local_detect *ld, const sn_event *ev, uint64_t *pair,
                                  sn_local_alert *alerts, size_t max)
{
    if (!ld->cfg.enabled)
        return 0;
    pair_slot *p = pair_of_token(ld, *pair);
    /* A token passed with another pair's event would mix that pair's entries into this slot,
     * where forget_entry does not look for them: the caller's contract, checked in debug builds. */
    assert(p == NULL || slot_empty(p) || slot_holds(p, ev->service, ev->model));
    if (p == NULL) {
        p = pair_for(ld, ev);
        *pair = p != NULL ? pair_token(ld, p) : 0;
    }
    return detect_in(ld, ev, p, alerts, max);
}

void sn_local_detect_usage(const sn_local_detect *ld, uint64_t *keys, uint64_t *bytes)
{
    sn_baseline_stats st;
    sn_baseline_get_stats(ld->baselines, &st);
    *keys = st.keys;
    *bytes = st.bytes_used;
}
