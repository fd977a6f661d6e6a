/*
 * internal.h -- helpers the detector modules share. Not part of the public API: only files in
 * shared/detect/ include it. Everything here is pure and allocation-free.
 */
#ifndef SN_DETECT_INTERNAL_H
#define SN_DETECT_INTERNAL_H

#include "detect/cusum.h"
#include "detect/detect.h"
#include "detect/iqr.h"
#include "detect/mad.h"
#include "detect/threshold.h"
#include "detect/zscore.h"

#include <math.h>
#include <stdbool.h>

/* Deviations are clamped to this many scale units so that a huge value against a tiny scale
 * stays finite (no Inf/NaN in scores, sums or JSON). */
#define SN__DEV_CAP 1e12

/* The scale actually used: the largest of scale, floor_abs and floor_rel * |centre|. This is
 * how a zero (or tiny) stddev/IQR/MAD is handled: a constant baseline gets a small non-zero
 * scale, so tiny changes score low and big changes still fire. Returns 0 when every term is 0
 * (the caller treats that as "no verdict"). */
double sn__floor_scale(double scale, double centre, double floor_abs, double floor_rel);

/* (x - centre) / scale, clamped to +-SN__DEV_CAP; never NaN for finite inputs and scale > 0. */
double sn__standardise(double x, double centre, double scale);

/* True when every argument is finite. */
bool sn__finite3(double a, double b, double c);

/* True when a value on side dir (+1/-1) may be reported under direction setting d. */
bool sn__direction_allows(sn_direction d, int dir);

/* The severity of an anomaly whose magnitude m already passed the detection threshold:
 * CRITICAL when m >= critical, HIGH when m >= high, else MEDIUM. */
sn_severity sn__band(double m, double high, double critical);

/* Fills the common fields of a ready verdict: score from r = m / threshold, anomaly and
 * confidence when m > threshold (strictly), severity from sn__band. */
void sn__judge(sn_verdict *v, double m, double threshold, double high, double critical);

/* The scoring calls for a config the caller has already validated (sn_X_config_validate
 * returned NULL for it and it has not changed since): the same verdicts as the public calls,
 * without checking cfg again. With an invalid cfg the result is undefined. The ensemble uses
 * them after validating once per value, or never (sn_ensemble_evaluate_valid). Ownership as in
 * the public calls: st, when present, and *out are the caller's; cfg and b are only read. */
bool sn__zscore_score_valid(const sn_zscore_config *cfg, const sn_summary *b, double x,
                            sn_verdict *out);
bool sn__iqr_score_valid(const sn_iqr_config *cfg, const sn_summary *b, double x, sn_verdict *out);
bool sn__mad_score_valid(const sn_mad_config *cfg, const sn_summary *b, double x, sn_verdict *out);
bool sn__cusum_step_valid(sn_cusum *st, const sn_cusum_config *cfg, const sn_summary *b, double x,
                          sn_verdict *out);
bool sn__threshold_check_valid(const sn_threshold_config *cfg, double x, sn_verdict *out);

#endif
