/*
 * mad.c -- the MAD (modified Z-score) detector (see mad.h for the rule and the MAD = 0
 * fallback).
 */
#include "detect/mad.h"
#include "detect/internal.h"

#include <float.h>
#include <math.h>
#include <stddef.h>

#define IQR_PER_SIGMA 1.3489795003921634

void sn_mad_config_defaults(sn_mad_config *cfg)
{
    cfg->threshold = 3.5;
    cfg->high = 5.0;
    cfg->critical = 7.0;
    cfg->min_samples = 10;
    cfg->direction = SN_DIR_BOTH;
    cfg->min_scale = 1e-9;
    cfg->min_scale_rel = 0.01;
}

const char *sn_mad_config_validate(const sn_mad_config *cfg)
{
    if (!(cfg->threshold > 0.0) || !isfinite(cfg->threshold))
        return "threshold must be a finite number > 0";
    if (!(cfg->high >= cfg->threshold) || !isfinite(cfg->high))
        return "high must be finite and >= threshold";
    if (!(cfg->critical >= cfg->high) || !isfinite(cfg->critical))
        return "critical must be finite and >= high";
    if (cfg->min_samples < 1)
        return "min_samples must be >= 1";
    if ((unsigned)cfg->direction > SN_DIR_LOWER)
        return "direction must be both, upper or lower";
    if (!(cfg->min_scale >= 0.0) || !isfinite(cfg->min_scale))
        return "min_scale must be finite and >= 0";
    if (!(cfg->min_scale_rel >= 0.0) || !isfinite(cfg->min_scale_rel))
        return "min_scale_rel must be finite and >= 0";
    return NULL;
}

/* The sigma estimate before flooring: MAD / 0.6745, else IQR / 1.349, else stddev, else 0. */
static double robust_sigma(const sn_summary *b)
{
    if (b->mad > 0.0)
        return b->mad / SN_MAD_SIGMA;
    if (isfinite(b->q1) && isfinite(b->q3) && b->q3 > b->q1) {
        double half = b->q3 * 0.5 - b->q1 * 0.5;
        return half / (IQR_PER_SIGMA * 0.5);
    }
    if (isfinite(b->stddev) && b->stddev > 0.0)
        return b->stddev;
    return 0.0;
}

bool sn__mad_score_valid(const sn_mad_config *cfg, const sn_summary *b, double x, sn_verdict *out)
{
    sn_verdict_init(out, SN_DETECT_MAD, x);
    if (b->n < cfg->min_samples)
        return false;
    if (!sn__finite3(x, b->median, b->mad) || b->mad < 0.0)
        return false;
    double s = robust_sigma(b);
    if (!isfinite(s))
        s = DBL_MAX;
    s = sn__floor_scale(s, b->median, cfg->min_scale, cfg->min_scale_rel);
    if (!(s > 0.0))
        return false;

    double m = sn__standardise(x, b->median, s);
    int dir = m < 0.0 ? -1 : 1;
    out->ready = true;
    out->baseline = b->median;
    out->deviation = m;
    out->direction = dir;
    out->threshold = b->median + (double)dir * cfg->threshold * s;
    if (!isfinite(out->threshold))
        out->threshold = dir > 0 ? DBL_MAX : -DBL_MAX;
    if (!sn__direction_allows(cfg->direction, dir))
        return false;
    sn__judge(out, fabs(m), cfg->threshold, cfg->high, cfg->critical);
    return out->anomaly;
}

bool sn_mad_score(const sn_mad_config *cfg, const sn_summary *b, double x, sn_verdict *out)
{
    if (sn_mad_config_validate(cfg) != NULL) {
        sn_verdict_init(out, SN_DETECT_MAD, x);
        return false;
    }
    return sn__mad_score_valid(cfg, b, x, out);
}
