/*
 * zscore.c -- the Z-score detector (see zscore.h for the rule and its edge cases).
 */
#include "detect/zscore.h"
#include "detect/internal.h"

#include <float.h>
#include <math.h>
#include <stddef.h>

void sn_zscore_config_defaults(sn_zscore_config *cfg)
{
    cfg->threshold = 3.0;
    cfg->high = 4.0;
    cfg->critical = 6.0;
    cfg->min_samples = 10;
    cfg->direction = SN_DIR_BOTH;
    cfg->min_stddev = 1e-9;
    cfg->min_stddev_rel = 0.01;
}

const char *sn_zscore_config_validate(const sn_zscore_config *cfg)
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
    if (!(cfg->min_stddev >= 0.0) || !isfinite(cfg->min_stddev))
        return "min_stddev must be finite and >= 0";
    if (!(cfg->min_stddev_rel >= 0.0) || !isfinite(cfg->min_stddev_rel))
        return "min_stddev_rel must be finite and >= 0";
    return NULL;
}

bool sn__zscore_score_valid(const sn_zscore_config *cfg, const sn_summary *b, double x,
                            sn_verdict *out)
{
    sn_verdict_init(out, SN_DETECT_ZSCORE, x);
    if (!isfinite(x))
        return false;
    double s = sn__zscore_scale(cfg, b);
    if (!(s > 0.0))
        return false;

    double z = sn__standardise(x, b->mean, s);
    int dir = z < 0.0 ? -1 : 1;
    out->ready = true;
    out->baseline = b->mean;
    out->deviation = z;
    out->direction = dir;
    out->threshold = b->mean + (double)dir * cfg->threshold * s;
    if (!isfinite(out->threshold))
        out->threshold = dir > 0 ? DBL_MAX : -DBL_MAX;
    if (!sn__direction_allows(cfg->direction, dir))
        return false; /* the other side is never anomalous: score stays 0 */
    sn__judge(out, fabs(z), cfg->threshold, cfg->high, cfg->critical);
    return out->anomaly;
}

bool sn_zscore_score(const sn_zscore_config *cfg, const sn_summary *b, double x, sn_verdict *out)
{
    if (sn_zscore_config_validate(cfg) != NULL) {
        sn_verdict_init(out, SN_DETECT_ZSCORE, x);
        return false;
    }
    return sn__zscore_score_valid(cfg, b, x, out);
}
