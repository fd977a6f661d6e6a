/*
 * local_detect.c -- Z-score and static thresholds per (service, model, metric) in one pod.
 */
#include "local_detect.h"

#include "baseline.h"
#include "detect/settings.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sn_local_detect {
    sn_local_detect_config cfg;
    sn_zscore_config zscore[SN_METRIC_COUNT]; /* cfg.zscore with each metric's direction */
    sn_baseline *baselines;
};

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

void sn_local_detect_config_defaults(sn_local_detect_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->enabled = true;
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
        if (metric_rule[m].scored &&
            sn_baseline_get(ld->baselines, ev->service, ev->model, m, ev->end_unix_nano, &e) == 0) {
            sn_summary s;
            sn_baseline_summary(ld->baselines, e, &s);
            sn_zscore_score(&ld->zscore[m], &s, x, &v);
            keep_stronger(&best, &v);
        }
        if (best.anomaly) {
            if (found < max)
                sn_local_alert_fill(&alerts[found], ev, m, &best, NULL);
            found++;
        } else if (e != NULL) {
            /* Refusals (a value past 1e100) are not worth an error: no verdict next time. */
            (void)sn_baseline_observe(ld->baselines, e, x, ev->end_unix_nano);
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
