/*
 * mad.c -- the MAD (modified Z-score) detector (see mad.h for the rule and the MAD = 0
 * fallback).
 */
#include "detect/mad.h"
#include "detect/internal.h"

#include <float.h>
#include <math.h>
#include <stddef.h>

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

bool sn__mad_score_valid(const sn_mad_config *cfg, const sn_summary *b, double x, sn_verdict *out)
{
    sn_verdict_init(out, SN_DETECT_MAD, x);
    if (!isfinite(x))
        return false;
    double s = sn__mad_scale(cfg, b);
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
