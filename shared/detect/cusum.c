/*
 * cusum.c -- the two-sided standardised CUSUM (see cusum.h for the recursion and reset).
 */
#include "detect/cusum.h"
#include "detect/internal.h"

#include <float.h>
#include <math.h>
#include <stddef.h>

void sn_cusum_config_defaults(sn_cusum_config *cfg)
{
    cfg->k = 0.5;
    cfg->h = 5.0;
    cfg->high = 7.5;
    cfg->critical = 10.0;
    cfg->min_samples = 10;
    cfg->direction = SN_DIR_BOTH;
    cfg->min_stddev = 1e-9;
    cfg->min_stddev_rel = 0.01;
}

const char *sn_cusum_config_validate(const sn_cusum_config *cfg)
{
    if (!(cfg->k >= 0.0) || !isfinite(cfg->k))
        return "k must be finite and >= 0";
    if (!(cfg->h > 0.0) || !isfinite(cfg->h))
        return "h must be a finite number > 0";
    if (!(cfg->high >= cfg->h) || !isfinite(cfg->high))
        return "high must be finite and >= h";
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

void sn_cusum_init(sn_cusum *st)
{
    st->s_hi = 0.0;
    st->s_lo = 0.0;
    st->n_hi = 0;
    st->n_lo = 0;
    st->steps = 0;
    st->alarms = 0;
    st->drift = 0.0;
}

/* One side's recursion: S = max(0, S + inc); n counts the steps S has been positive. */
static void accumulate(double *s, uint64_t *n, double inc)
{
    double next = *s + inc;
    if (next > 0.0) {
        *s = next;
        *n += 1;
    } else {
        *s = 0.0;
        *n = 0;
    }
}

bool sn__cusum_step_valid(sn_cusum *st, const sn_cusum_config *cfg, const sn_summary *b, double x,
                          sn_verdict *out)
{
    sn_verdict_init(out, SN_DETECT_CUSUM, x);
    if (b->n < cfg->min_samples)
        return false;
    if (!sn__finite3(x, b->mean, b->stddev) || b->stddev < 0.0)
        return false;
    double s = sn__floor_scale(b->stddev, b->mean, cfg->min_stddev, cfg->min_stddev_rel);
    if (!(s > 0.0))
        return false;

    /* Capped at +-SN__DEV_CAP, so the sums (at most h + one step) stay finite. */
    double z = sn__standardise(x, b->mean, s);
    /* A side the direction setting excludes is held at 0 (it would only grow without end). */
    accumulate(&st->s_hi, &st->n_hi,
               sn__direction_allows(cfg->direction, 1) ? z - cfg->k : -HUGE_VAL);
    accumulate(&st->s_lo, &st->n_lo,
               sn__direction_allows(cfg->direction, -1) ? -z - cfg->k : -HUGE_VAL);
    st->steps++;

    /* Report the side with more evidence. */
    double sh = st->s_hi;
    double sl = st->s_lo;
    int dir = sh >= sl ? 1 : -1;
    double sum = dir > 0 ? sh : sl;
    uint64_t n = dir > 0 ? st->n_hi : st->n_lo;
    double shift = n > 0 ? cfg->k + sum / (double)n : 0.0;

    out->ready = true;
    out->baseline = b->mean;
    out->threshold = cfg->h;
    out->direction = dir;
    out->deviation = (double)dir * shift;
    sn__judge(out, sum, cfg->h, cfg->high, cfg->critical);
    if (out->anomaly) {
        st->alarms++;
        st->drift = (double)dir * shift * s;
        if (!isfinite(st->drift))
            st->drift = dir > 0 ? DBL_MAX : -DBL_MAX;
        st->s_hi = 0.0;
        st->s_lo = 0.0;
        st->n_hi = 0;
        st->n_lo = 0;
    }
    return out->anomaly;
}

bool sn_cusum_step(sn_cusum *st, const sn_cusum_config *cfg, const sn_summary *b, double x,
                   sn_verdict *out)
{
    if (sn_cusum_config_validate(cfg) != NULL) {
        sn_verdict_init(out, SN_DETECT_CUSUM, x);
        return false;
    }
    return sn__cusum_step_valid(st, cfg, b, x, out);
}
