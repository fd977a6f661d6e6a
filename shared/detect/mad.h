/*
 * mad.h -- the median-absolute-deviation detector (Iglewicz and Hoaglin's modified Z-score).
 *
 * Rule: M = 0.6745 * (x - median) / MAD, i.e. (x - median) / s with s = MAD / 0.6745 (the
 * robust estimate of sigma). Anomaly when |M| > threshold (3.5). Severity: |M| >= critical
 * (7.0) critical, >= high (5.0) high, otherwise medium.
 *
 * MAD = 0 (more than half the baseline is one value). The textbook fallback is the mean
 * absolute deviation times 1.2533 (an estimate of sigma); the summary does not carry it, so s
 * falls back, in order, to the other robust estimate IQR / 1.349, then to the stddev (which the
 * mean absolute deviation * 1.2533 estimates as well), and is finally raised to
 * max(s, min_scale, min_scale_rel * |median|) as the Z-score floors its stddev. So a baseline
 * that is 0 most of the time but sometimes not still gets a data-driven scale, and a constant
 * baseline at 100 gets s = 1 (101 is quiet, 110 is critical).
 */
#ifndef SN_MAD_H
#define SN_MAD_H

#include "detect/detect.h"
#include "stats.h"

#include <stdint.h>

/* MAD / SN_MAD_SIGMA estimates sigma for normal data (Phi^-1(0.75) = 0.6745). */
#define SN_MAD_SIGMA 0.6745

typedef struct sn_mad_config {
    double threshold;       /* |M| above this is an anomaly; > 0; default 3.5 */
    double high;            /* |M| at or above: high; >= threshold; default 5.0 */
    double critical;        /* |M| at or above: critical; >= high; default 7.0 */
    uint64_t min_samples;   /* no verdict while the baseline has fewer; >= 1; default 10 */
    sn_direction direction; /* default both */
    double min_scale;       /* absolute floor on s (sigma units); >= 0; default 1e-9 */
    double min_scale_rel;   /* floor relative to |median|; >= 0; default 0.01 */
} sn_mad_config;

/* Fills cfg with the defaults above. */
void sn_mad_config_defaults(sn_mad_config *cfg);

/* Returns NULL when cfg is usable, else a static message naming the first bad field. */
const char *sn_mad_config_validate(const sn_mad_config *cfg);

/* Scores x against b's median and MAD and fills *out (always). Not ready (returns false)
 * during cold start, when x, b->median or b->mad is not finite, when b->mad < 0, or when cfg
 * is invalid. A MAD of 0 uses the fallbacks above (q1/q3 and stddev only when finite); if the
 * scale is still 0 (both floors 0, nothing to fall back on) there is no verdict.
 * out->baseline is the median, out->deviation is M, out->threshold is median +- threshold * s.
 * Returns out->anomaly. Nothing is kept; cfg and b are only read. */
bool sn_mad_score(const sn_mad_config *cfg, const sn_summary *b, double x, sn_verdict *out);

#endif
