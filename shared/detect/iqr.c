/*
 * iqr.c -- the IQR (Tukey fence) detector (see iqr.h for the rule and its edge cases).
 */
#include "detect/iqr.h"
#include "detect/internal.h"

#include <float.h>
#include <math.h>
#include <stddef.h>

void sn_iqr_config_defaults(sn_iqr_config *cfg)
{
    cfg->k = 1.5;
    cfg->high_k = 2.25;
    cfg->critical_k = 3.0;
    cfg->min_samples = 10;
    cfg->direction = SN_DIR_BOTH;
    cfg->min_iqr = 1e-9;
    cfg->min_iqr_rel = 0.01;
}

const char *sn_iqr_config_validate(const sn_iqr_config *cfg)
{
    if (!(cfg->k > 0.0) || !isfinite(cfg->k))
        return "k must be a finite number > 0";
    if (!(cfg->high_k >= cfg->k) || !isfinite(cfg->high_k))
        return "high_k must be finite and >= k";
    if (!(cfg->critical_k >= cfg->high_k) || !isfinite(cfg->critical_k))
        return "critical_k must be finite and >= high_k";
    if (cfg->min_samples < 1)
        return "min_samples must be >= 1";
    if ((unsigned)cfg->direction > SN_DIR_LOWER)
        return "direction must be both, upper or lower";
    if (!(cfg->min_iqr >= 0.0) || !isfinite(cfg->min_iqr))
        return "min_iqr must be finite and >= 0";
    if (!(cfg->min_iqr_rel >= 0.0) || !isfinite(cfg->min_iqr_rel))
        return "min_iqr_rel must be finite and >= 0";
    return NULL;
}

bool sn__iqr_score_valid(const sn_iqr_config *cfg, const sn_summary *b, double x, sn_verdict *out)
{
    sn_verdict_init(out, SN_DETECT_IQR, x);
    if (!isfinite(x))
        return false;
    double iqr = sn__iqr_scale(cfg, b);
    if (!(iqr > 0.0))
        return false;

    int dir;
    double d = sn__iqr_beyond(b, iqr, x, &dir);
    out->ready = true;
    out->baseline = b->median;
    out->direction = dir;
    out->deviation = sn__standardise(x, b->median, iqr / SN__IQR_PER_SIGMA);
    double fence = dir > 0 ? b->q3 + cfg->k * iqr : b->q1 - cfg->k * iqr;
    if (!isfinite(fence))
        fence = dir > 0 ? DBL_MAX : -DBL_MAX;
    out->threshold = fence;
    if (!sn__direction_allows(cfg->direction, dir))
        return false;
    sn__judge(out, d, cfg->k, cfg->high_k, cfg->critical_k);
    return out->anomaly;
}

bool sn_iqr_score(const sn_iqr_config *cfg, const sn_summary *b, double x, sn_verdict *out)
{
    if (sn_iqr_config_validate(cfg) != NULL) {
        sn_verdict_init(out, SN_DETECT_IQR, x);
        return false;
    }
    return sn__iqr_score_valid(cfg, b, x, out);
}
