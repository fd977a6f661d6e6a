/*
 * local_detect.h -- the sidecar's local detection: per (service, model, metric) in this pod, a
 * Z-score against a rolling baseline and the user's static thresholds, from the shared library.
 *
 * The aggregator has the full detector set over global baselines; the sidecar's job is to catch
 * the obvious at once (a call 10x slower than this pod's last thousand, a response that blew a
 * token limit) and say so within milliseconds of the span's arrival. Pure apart from its baseline
 * table: no I/O, no clock (the event's time is the clock), owned by the loop thread.
 *
 * Metrics and the side that is anomalous for each:
 *   latency_ms, ttft_ms, input_tokens, output_tokens, total_tokens, cost_usd   upper
 *   tokens_per_second                                                          lower
 * error_rate is judged by the aggregator over a sliding window (one call is 0 or 1).
 * Anomalous values do not join the baseline, so a burst does not teach it to accept itself.
 * With log_scale (the default) the Z-score is computed on ln(1 + x) (costs in micro-dollars), as
 * the aggregator does: these metrics are log-normal, and a raw-value Z-score flags ordinary
 * calls of their long upper tail. Alerts still report values, baselines and thresholds in the
 * metric's unit; static thresholds are always on raw values.
 */
#ifndef SN_SIDECAR_LOCAL_DETECT_H
#define SN_SIDECAR_LOCAL_DETECT_H

#include "alert.h"
#include "config.h"
#include "detect/settings.h"
#include "detect/threshold.h"
#include "detect/zscore.h"
#include "event.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sn_local_detect sn_local_detect;

typedef struct sn_local_detect_config {
    bool enabled;
    int64_t window;          /* samples per baseline; default 1000 */
    int64_t max_bytes;       /* memory for all baselines; the least recently used go first */
    bool log_scale;          /* score ln(1 + x) (heavy-tailed LLM metrics); default true */
    sn_zscore_config zscore; /* direction is set per metric (see above) */
    sn_threshold_config thresholds[SN_METRIC_COUNT]; /* static levels per metric; NAN = none */
} sn_local_detect_config;

/* Fills cfg with the defaults: enabled, window 1000, 16 MiB, contracts.md's Z-score defaults, no
 * static levels. */
void sn_local_detect_config_defaults(sn_local_detect_config *cfg);

/* Checks the config; returns 0 or -EINVAL with a message naming the setting under prefix
 * ("config: local.zscore.high ..."). */
int sn_local_detect_config_validate(const sn_local_detect_config *cfg, const char *prefix,
                                    sn_config_error *err);

/* Creates the detector with an empty baseline table. cfg is copied. Returns 0, -EINVAL, -ENOMEM.
 * Free with sn_local_detect_destroy. */
int sn_local_detect_create(const sn_local_detect_config *cfg, uint64_t hash_seed,
                           sn_local_detect **out);
void sn_local_detect_destroy(sn_local_detect *ld);

/* Scores every metric the event knows and learns the normal ones. Anomalies are written to
 * alerts[0..max) (alert_id left empty: the caller names them) and counted in the return value,
 * which may exceed max (the rest are counted, not written). Never fails: a baseline that cannot
 * be created (the table is full of fresher keys) just means no verdict for that metric. */
size_t sn_local_detect_event(sn_local_detect *ld, const sn_event *ev, sn_local_alert *alerts,
                             size_t max);

/* sn_local_detect_event for callers that score many events of few (service, model) pairs:
 * *pair keeps where the pair's baselines sit in the detector's cache, so that the next events of
 * the same pair skip the look-up by name. Start with *pair = 0 for each pair; pass a token again
 * only with events of the pair it was made for (another pair's token would leave the other
 * pair's entries in this pair's cache slot, where an eviction does not clear them: a use after
 * free; debug builds assert it). A token the cache no longer honours (another pair took the place)
 * is renewed by a look-up; *pair stays 0 for names that are no baseline key. The results are those
 * of sn_local_detect_event. */
size_t sn_local_detect_event_pair(sn_local_detect *ld, const sn_event *ev, uint64_t *pair,
                                  sn_local_alert *alerts, size_t max);

/* Keys in the baseline table and the bytes they use. */
void sn_local_detect_usage(const sn_local_detect *ld, uint64_t *keys, uint64_t *bytes);

/* Descriptor initialisers for the settings under prefix P ("local"): P.enabled, P.window,
 * P.max_bytes, P.zscore.{threshold,high,critical,min_samples}, and per metric
 * P.thresholds.<metric>.{upper_warn,upper_critical,lower_warn,lower_critical}. */
#define SN__LOCAL_LEVELS(P, T, F, m, idx)                                                          \
    SN__DETECT_OPTIONAL(P ".thresholds." m ".upper_warn", T, F.thresholds[idx].upper_warn,         \
                        "static level: medium alert above this " m " (off = none)"),               \
        SN__DETECT_OPTIONAL(P ".thresholds." m ".upper_critical", T,                               \
                            F.thresholds[idx].upper_critical,                                      \
                            "static level: critical alert above this " m " (off = none)"),         \
        SN__DETECT_OPTIONAL(P ".thresholds." m ".lower_warn", T, F.thresholds[idx].lower_warn,     \
                            "static level: medium alert below this " m " (off = none)"),           \
        SN__DETECT_OPTIONAL(P ".thresholds." m ".lower_critical", T,                               \
                            F.thresholds[idx].lower_critical,                                      \
                            "static level: critical alert below this " m " (off = none)")

#define SN_LOCAL_DETECT_DESCRIPTORS(P, T, F)                                                       \
    SN_CFG_BOOL(P ".enabled", T, F.enabled, "true", "run local detection in the sidecar"),         \
        SN_CFG_INT(P ".window", T, F.window, "1000", 2, 100000,                                    \
                   "samples in each local baseline (per service, model and metric)"),              \
        SN_CFG_SIZE(P ".max_bytes", T, F.max_bytes, "16MiB", 65536, (int64_t)1 << 32,              \
                    "memory for the local baselines; the least recently used are evicted"),        \
        SN_CFG_BOOL(P ".log_scale", T, F.log_scale, "true",                                        \
                    "score ln(1 + x) instead of x (latency, tokens and cost are log-normal)"),     \
        SN_CFG_POSITIVE(P ".zscore.threshold", T, F.zscore.threshold, "3.0",                       \
                        "local Z-score: anomaly from here (medium)"),                              \
        SN_CFG_POSITIVE(P ".zscore.high", T, F.zscore.high, "4.0",                                 \
                        "local Z-score: high from here"),                                          \
        SN_CFG_POSITIVE(P ".zscore.critical", T, F.zscore.critical, "6.0",                         \
                        "local Z-score: critical from here"),                                      \
        SN_CFG_INT(P ".zscore.min_samples", T, F.zscore.min_samples, "10", 1, 100000000,           \
                   "local Z-score: no verdict while the baseline has fewer samples"),              \
        SN__LOCAL_LEVELS(P, T, F, "latency_ms", SN_METRIC_LATENCY_MS),                             \
        SN__LOCAL_LEVELS(P, T, F, "ttft_ms", SN_METRIC_TTFT_MS),                                   \
        SN__LOCAL_LEVELS(P, T, F, "input_tokens", SN_METRIC_INPUT_TOKENS),                         \
        SN__LOCAL_LEVELS(P, T, F, "output_tokens", SN_METRIC_OUTPUT_TOKENS),                       \
        SN__LOCAL_LEVELS(P, T, F, "total_tokens", SN_METRIC_TOTAL_TOKENS),                         \
        SN__LOCAL_LEVELS(P, T, F, "cost_usd", SN_METRIC_COST_USD),                                 \
        SN__LOCAL_LEVELS(P, T, F, "error_rate", SN_METRIC_ERROR_RATE),                             \
        SN__LOCAL_LEVELS(P, T, F, "tokens_per_second", SN_METRIC_TOKENS_PER_SECOND)

#endif
