/*
 * ensemble.h -- a per-metric set of detectors scoring one value against one baseline summary.
 *
 * Each enabled detector (Z-score, IQR, MAD, CUSUM, static threshold) scores the value; the
 * ensemble returns every verdict, the strongest one, and how many detectors agreed with it.
 * Budgets are not part of it: they sum amounts over calendar periods rather than compare one
 * value with a baseline (use sn_budget_add alongside).
 *
 * Strongest: among anomalous verdicts the highest severity, ties broken by the higher score
 * (then by the order above). When nothing is anomalous, the ready verdict with the highest
 * score, reported as not anomalous.
 *
 * Agreement: agreed = the anomalous verdicts on the strongest one's side (direction), itself
 * included. The result is an anomaly only when agreed >= min_agree (default 1). Each detector
 * beyond the first that agrees halves the remaining distance to 0.99:
 *     confidence = 0.99 - (0.99 - c) * 0.5^(agreed - 1)
 * where c is the strongest verdict's own confidence. So 0.5 alone becomes 0.745 with two
 * detectors, 0.8675 with three. Dissent does not lower it; severity is not raised.
 */
#ifndef SN_ENSEMBLE_H
#define SN_ENSEMBLE_H

#include "detect/cusum.h"
#include "detect/detect.h"
#include "detect/iqr.h"
#include "detect/mad.h"
#include "detect/threshold.h"
#include "detect/zscore.h"
#include "stats.h"

typedef struct sn_ensemble_config {
    bool zscore_enabled; /* default true */
    sn_zscore_config zscore;
    bool iqr_enabled; /* default true */
    sn_iqr_config iqr;
    bool mad_enabled; /* default true */
    sn_mad_config mad;
    bool cusum_enabled; /* default true */
    sn_cusum_config cusum;
    bool threshold_enabled; /* default false (no levels are set by default) */
    sn_threshold_config threshold;
    uint64_t min_agree; /* anomalies need this many agreeing detectors; >= 1; default 1 */
} sn_ensemble_config;

/* The ensemble's state: the CUSUM sums (the other detectors keep none). A plain value. */
typedef struct sn_ensemble {
    sn_cusum cusum;
} sn_ensemble;

typedef struct sn_ensemble_result {
    sn_verdict best; /* strongest verdict, confidence raised by agreement; ready=false when no
                        enabled detector was ready */
    unsigned ready;  /* detectors that gave a verdict */
    unsigned fired;  /* detectors that found an anomaly (either side) */
    unsigned agreed; /* anomalous verdicts on best's side, best included; 0 if none fired */
    sn_verdict each[SN_DETECT_KIND_COUNT]; /* indexed by sn_detector_kind; not ready when the
                                              detector is disabled (budget: always) */
} sn_ensemble_result;

/* Fills cfg: the four statistical detectors enabled with their defaults, the static threshold
 * disabled with no levels, min_agree 1. */
void sn_ensemble_config_defaults(sn_ensemble_config *cfg);

/* Returns NULL when cfg is usable, else a static message naming the bad field; *which (when
 * which is not NULL) is set to the detector whose config is bad, or SN_DETECT_KIND_COUNT for
 * the ensemble's own fields, so the caller can write "zscore: threshold must be > 0". Only
 * enabled detectors are checked. */
const char *sn_ensemble_config_validate(const sn_ensemble_config *cfg, sn_detector_kind *which);

/* Starts st afresh (CUSUM sums 0). */
void sn_ensemble_init(sn_ensemble *st);

/* Scores x against b with every enabled detector, steps st's CUSUM, and fills *out (always).
 * out->best.ready is false when cfg is invalid or no enabled detector was ready (cold start,
 * NaN/Inf). Returns out->best.anomaly. st is the caller's; cfg and b are only read. */
bool sn_ensemble_evaluate(sn_ensemble *st, const sn_ensemble_config *cfg, const sn_summary *b,
                          double x, sn_ensemble_result *out);

/* sn_ensemble_evaluate for a cfg the caller has already validated: precondition,
 * sn_ensemble_config_validate(cfg, NULL) returned NULL and cfg has not changed since (the
 * engine checks its resolved configs once when they are set). Neither the ensemble nor its
 * detectors check cfg again, which is most of the per-value cost; the results are identical.
 * With an invalid cfg the result is undefined. Ownership as in sn_ensemble_evaluate. */
bool sn_ensemble_evaluate_valid(sn_ensemble *st, const sn_ensemble_config *cfg, const sn_summary *b,
                                double x, sn_ensemble_result *out);

/* The common case of sn_ensemble_evaluate_valid without its verdicts: returns true when the
 * call would find no detector anomalous -- every enabled detector either not ready or ready and
 * within its threshold -- and then sets *ready to the detectors that would be ready (bit
 * 1 << sn_detector_kind each). Returns false (*ready untouched) when some detector would fire,
 * or when CUSUM is enabled (it keeps state): the caller then runs sn_ensemble_evaluate_valid
 * for the verdicts. Exact, not an estimate: each detector's scale and deviation are computed
 * by the same code as its scoring call. About a fifth of the cost of the full call, which
 * fills and ranks six verdicts. Same precondition as sn_ensemble_evaluate_valid (cfg valid);
 * cfg and b are only read. */
bool sn_ensemble_quiet_valid(const sn_ensemble_config *cfg, const sn_summary *b, double x,
                             unsigned *ready);

#endif
