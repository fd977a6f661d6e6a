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

#include <float.h>
#include <math.h>
#include <stdbool.h>

/* Deviations are clamped to this many scale units so that a huge value against a tiny scale
 * stays finite (no Inf/NaN in scores, sums or JSON). */
#define SN__DEV_CAP 1e12

/* The helpers below are static inline: they run for every detector on every value, and
 * inlined they cost a few instructions instead of a call each (the results are the same). */

/* The scale actually used: the largest of scale, floor_abs and floor_rel * |centre|. This is
 * how a zero (or tiny) stddev/IQR/MAD is handled: a constant baseline gets a small non-zero
 * scale, so tiny changes score low and big changes still fire. Returns 0 when every term is 0
 * (the caller treats that as "no verdict"). */
static inline double sn__floor_scale(double scale, double centre, double floor_abs,
                                     double floor_rel)
{
    double s = scale > 0.0 ? scale : 0.0;
    if (floor_abs > s)
        s = floor_abs;
    double rel = floor_rel * fabs(centre);
    if (rel > s && isfinite(rel))
        s = rel;
    return s;
}

/* (x - centre) / scale, clamped to +-SN__DEV_CAP; never NaN for finite inputs and scale > 0. */
static inline double sn__standardise(double x, double centre, double scale)
{
    /* Halve both before subtracting: x - centre of two finite doubles can overflow. */
    double d = (x * 0.5 - centre * 0.5) / scale;
    if (!(d == d))
        return 0.0;
    if (d > SN__DEV_CAP / 2.0)
        return SN__DEV_CAP;
    if (d < -SN__DEV_CAP / 2.0)
        return -SN__DEV_CAP;
    return d * 2.0;
}

/* True when every argument is finite. */
static inline bool sn__finite3(double a, double b, double c)
{
    return isfinite(a) && isfinite(b) && isfinite(c);
}

/* True when a value on side dir (+1/-1) may be reported under direction setting d. */
static inline bool sn__direction_allows(sn_direction d, int dir)
{
    switch (d) {
    case SN_DIR_BOTH:
        return true;
    case SN_DIR_UPPER:
        return dir > 0;
    case SN_DIR_LOWER:
        return dir < 0;
    }
    return false;
}

/* The severity of an anomaly whose magnitude m already passed the detection threshold:
 * CRITICAL when m >= critical, HIGH when m >= high, else MEDIUM. */
static inline sn_severity sn__band(double m, double high, double critical)
{
    if (m >= critical)
        return SN_SEV_CRITICAL;
    if (m >= high)
        return SN_SEV_HIGH;
    return SN_SEV_MEDIUM;
}

/* Fills the common fields of a ready verdict: score from r = m / threshold, anomaly and
 * confidence when m > threshold (strictly), severity from sn__band. */
static inline void sn__judge(sn_verdict *v, double m, double threshold, double high,
                             double critical)
{
    double r = m / threshold;
    v->score = sn_detect_score(r);
    if (m > threshold) {
        v->anomaly = true;
        v->severity = sn__band(m, high, critical);
        v->confidence = sn_detect_confidence(r);
    }
}

/* For normally distributed data IQR = 1.349 sigma. */
#define SN__IQR_PER_SIGMA 1.3489795003921634

/* Each detector's first step, shared by its scoring call and sn_ensemble_quiet_valid: the
 * scale a value is measured in for baseline b, or 0 when there is no verdict (fewer than
 * min_samples, a non-finite baseline, no usable scale). Never NaN. cfg must be valid. A
 * non-finite value gets no verdict either: the caller checks it first. */

/* Z-score: the stddev, floored. */
static inline double sn__zscore_scale(const sn_zscore_config *cfg, const sn_summary *b)
{
    if (b->n < cfg->min_samples || !isfinite(b->mean) || !isfinite(b->stddev) || b->stddev < 0.0)
        return 0.0;
    return sn__floor_scale(b->stddev, b->mean, cfg->min_stddev, cfg->min_stddev_rel);
}

/* IQR: q3 - q1 (stddev x 1.349 when that is 0), floored. */
static inline double sn__iqr_scale(const sn_iqr_config *cfg, const sn_summary *b)
{
    if (b->n < cfg->min_samples || !sn__finite3(b->q1, b->q3, b->median) || b->q1 > b->q3)
        return 0.0;
    /* q3 - q1 of two finite doubles can overflow: halve first. */
    double half = b->q3 * 0.5 - b->q1 * 0.5;
    double iqr = half > DBL_MAX / 2.0 ? DBL_MAX : half * 2.0;
    if (!(iqr > 0.0) && isfinite(b->stddev) && b->stddev > 0.0)
        iqr = b->stddev > DBL_MAX / SN__IQR_PER_SIGMA ? DBL_MAX : b->stddev * SN__IQR_PER_SIGMA;
    return sn__floor_scale(iqr, b->median, cfg->min_iqr, cfg->min_iqr_rel);
}

/* IQR: how many IQRs x lies beyond its fence's base (q3 above, q1 below; 0 between them), and
 * in *dir the side (+1 above, -1 below; inside, the side of the median). iqr from
 * sn__iqr_scale, > 0. */
static inline double sn__iqr_beyond(const sn_summary *b, double iqr, double x, int *dir)
{
    if (x > b->q3) {
        *dir = 1;
        return sn__standardise(x, b->q3, iqr);
    }
    if (x < b->q1) {
        *dir = -1;
        return -sn__standardise(x, b->q1, iqr);
    }
    *dir = x < b->median ? -1 : 1;
    return 0.0;
}

/* MAD: the sigma estimate MAD / 0.6745, else IQR / 1.349, else stddev; floored. */
static inline double sn__mad_scale(const sn_mad_config *cfg, const sn_summary *b)
{
    if (b->n < cfg->min_samples || !isfinite(b->median) || !isfinite(b->mad) || b->mad < 0.0)
        return 0.0;
    double s = 0.0;
    if (b->mad > 0.0)
        s = b->mad / SN_MAD_SIGMA;
    else if (isfinite(b->q1) && isfinite(b->q3) && b->q3 > b->q1)
        s = (b->q3 * 0.5 - b->q1 * 0.5) / (SN__IQR_PER_SIGMA * 0.5);
    else if (isfinite(b->stddev) && b->stddev > 0.0)
        s = b->stddev;
    if (!isfinite(s))
        s = DBL_MAX;
    return sn__floor_scale(s, b->median, cfg->min_scale, cfg->min_scale_rel);
}

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
