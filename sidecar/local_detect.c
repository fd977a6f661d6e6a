/*
 * local_detect.c -- Z-score and static thresholds per (service, model, metric) in one pod.
 *
 * The Z-score needs only the count, mean and standard deviation of the last `window` samples.
 * When the window fits (window <= RING_MAX_WINDOW, the default 1000 does), each baseline entry
 * keeps them itself, in the entry's user area: a ring of the samples as floats and sums over
 * them, so a sample costs O(1) instead of a sorted insert into an exact window and a full
 * summary (order statistics and MAD) per score. The table still owns keys, LRU order and the
 * memory budget; its own window is then one sample. Larger windows use the table's exact window.
 */
#include "local_detect.h"

#include "baseline.h"
#include "detect/settings.h"

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

struct sn_local_detect {
    sn_local_detect_config cfg;
    sn_zscore_config zscore[SN_METRIC_COUNT]; /* cfg.zscore with each metric's direction */
    sn_baseline *baselines;
    bool ring; /* moments in the entries' user areas (window <= RING_MAX_WINDOW) */
};

static float *ring_samples(ring_hdr *h)
{
    return (float *)(h + 1);
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
    double n = (double)h->n;
    s->mean = h->ref + h->sum / n;
    double var = h->n > 1 ? (h->sumsq - h->sum * h->sum / n) / (n - 1.0) : 0.0;
    s->stddev = var > 0.0 ? sqrt(var) : 0.0;
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
    return x >= 0.0 ? log1p(x / log_unit(m)) : NAN;
}

/* Back to the metric's unit (the alert reports real units). */
static double from_scale(const sn_local_detect *ld, sn_metric m, double y)
{
    if (!ld->cfg.log_scale || !isfinite(y))
        return y;
    double x = expm1(y) * log_unit(m);
    return x > 0.0 ? x : 0.0;
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
    for (int m = 0; m < SN_METRIC_COUNT; m++) {
        ld->zscore[m] = cfg->zscore;
        ld->zscore[m].direction = metric_rule[m].dir;
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

/* Keeps the stronger of two verdicts in *best (anomalies first, then severity, then score). */
static void keep_stronger(sn_verdict *best, const sn_verdict *v)
{
    if (!v->ready)
        return;
    if (!best->ready || (v->anomaly && !best->anomaly) ||
        (v->anomaly == best->anomaly &&
         (v->severity > best->severity ||
          (v->severity == best->severity && v->score > best->score))))
        *best = *v;
}

size_t sn_local_detect_event(sn_local_detect *ld, const sn_event *ev, sn_local_alert *alerts,
                             size_t max)
{
    size_t found = 0;
    if (!ld->cfg.enabled)
        return 0;
    for (int i = 0; i < SN_METRIC_COUNT; i++) {
        sn_metric m = (sn_metric)i;
        double x;
        if (!sn_event_metric(ev, m, &x))
            continue;
        sn_verdict best, v;
        sn_verdict_init(&best, SN_DETECT_ZSCORE, x);
        sn_threshold_check(&ld->cfg.thresholds[m], x, &v);
        keep_stronger(&best, &v);
        sn_baseline_entry *e = NULL;
        double y = to_scale(ld, m, x);
        if (metric_rule[m].scored && isfinite(y) &&
            sn_baseline_get(ld->baselines, ev->service, ev->model, m, ev->end_unix_nano, &e) == 0) {
            sn_summary s;
            if (ld->ring)
                ring_summary(sn_baseline_entry_user(e), &s);
            else
                sn_baseline_summary(ld->baselines, e, &s);
            sn_zscore_score(&ld->zscore[m], &s, y, &v);
            /* the alert speaks the metric's unit; the deviation stays in sigmas */
            v.value = x;
            v.baseline = from_scale(ld, m, v.baseline);
            v.threshold = from_scale(ld, m, v.threshold);
            keep_stronger(&best, &v);
        }
        if (best.anomaly) {
            if (found < max)
                sn_local_alert_fill(&alerts[found], ev, m, &best, NULL);
            found++;
        } else if (e != NULL) {
            /* Refusals (a value past 1e100) are not worth an error: no verdict next time. */
            if (sn_baseline_observe(ld->baselines, e, y, ev->end_unix_nano) == 0 && ld->ring)
                ring_add(sn_baseline_entry_user(e), (uint32_t)ld->cfg.window, y);
        }
    }
    return found;
}

void sn_local_detect_usage(const sn_local_detect *ld, uint64_t *keys, uint64_t *bytes)
{
    sn_baseline_stats st;
    sn_baseline_get_stats(ld->baselines, &st);
    *keys = st.keys;
    *bytes = st.bytes_used;
}
