/*
 * drift.c -- CUSUM on interval means against an in-control reference (see drift.h).
 */
#include "detect/drift.h"
#include "detect/internal.h"

#include <math.h>
#include <stddef.h>

#define SN_NS_PER_S INT64_C(1000000000)

void sn_drift_config_defaults(sn_drift_config *cfg)
{
    sn_cusum_config_defaults(&cfg->cusum);
    cfg->interval = 60 * SN_NS_PER_S;
    cfg->min_calls = 30;
    cfg->ref_intervals = 60;
}

const char *sn_drift_config_validate(const sn_drift_config *cfg)
{
    const char *msg = sn_cusum_config_validate(&cfg->cusum);
    if (msg != NULL)
        return msg;
    if (cfg->interval <= 0)
        return "interval must be > 0";
    if (cfg->min_calls < 2)
        return "min_calls must be >= 2";
    if (cfg->ref_intervals < 1)
        return "ref_intervals must be >= 1";
    return NULL;
}

void sn_drift_init(sn_drift *st)
{
    sn_cusum_init(&st->cusum);
    st->start = 0;
    st->sum = st->sumsq = st->shift = 0.0;
    st->ref_mean = st->ref_var = 0.0;
    st->n = st->ref_n = st->skipped = 0;
    st->explained = st->explained_prev = 0;
    st->open = 0;
}

void sn_drift_explain(sn_drift *st)
{
    if (st->open)
        st->explained = 1;
}

/* Learns interval mean m into the reference (exact mean and variance for the first intervals,
 * then an EWMA over about ref_intervals). */
static void learn(sn_drift *st, const sn_drift_config *cfg, double m)
{
    if (st->ref_n < UINT32_MAX)
        st->ref_n++;
    double a = 1.0 / (double)st->ref_n;
    double floor_a = 2.0 / ((double)cfg->ref_intervals + 1.0);
    if (a < floor_a)
        a = floor_a;
    double d = m - st->ref_mean;
    st->ref_mean += a * d;
    st->ref_var = (1.0 - a) * (st->ref_var + a * d * d);
}

/* Closes the open interval: scores it (when the reference is ready) and learns it (when in
 * control). Returns true when *out holds a ready verdict. */
static bool close_interval(sn_drift *st, const sn_drift_config *cfg, sn_verdict *out)
{
    double n = (double)st->n;
    double dm = st->sum / n;
    double m = st->shift + dm;
    double var_w = st->n > 1 ? (st->sumsq - st->sum * dm) / (n - 1.0) : 0.0;
    if (!(var_w > 0.0))
        var_w = 0.0;
    sn_verdict_init(out, SN_DETECT_CUSUM, m);
    bool explained = st->explained || st->explained_prev;
    st->explained_prev = st->explained;
    if (explained) {
        if (st->skipped < UINT32_MAX)
            st->skipped++;
        return false;
    }
    if (!isfinite(m))
        return false;
    if (st->ref_n < cfg->cusum.min_samples) {
        learn(st, cfg, m);
        return false;
    }
    double se2 = var_w / n;
    double sd = sqrt(st->ref_var > se2 ? st->ref_var : se2);
    /* The CUSUM reads only n, mean and stddev. */
    sn_summary b = {.n = st->ref_n, .mean = st->ref_mean, .stddev = sd};
    bool fired = sn_cusum_step(&st->cusum, &cfg->cusum, &b, m, out);
    double half = cfg->cusum.h / 2.0;
    if (!fired && st->cusum.s_hi <= half && st->cusum.s_lo <= half)
        learn(st, cfg, m);
    return out->ready;
}

/* Adds finite y under a valid cfg; *out is written only when an interval closed. */
static bool add_checked(sn_drift *st, const sn_drift_config *cfg, int64_t t, double y,
                        sn_verdict *out)
{
    bool scored = false;
    if (st->open && st->n >= cfg->min_calls && t - st->start >= cfg->interval) {
        scored = close_interval(st, cfg, out);
        st->open = 0;
    }
    if (!st->open) {
        st->open = 1;
        st->start = t;
        st->n = 0;
        st->sum = st->sumsq = 0.0;
        st->shift = st->ref_n > 0 ? st->ref_mean : y;
        st->explained = 0;
    }
    double d = y - st->shift;
    st->sum += d;
    st->sumsq += d * d;
    if (st->n < UINT32_MAX)
        st->n++;
    return scored;
}

bool sn_drift_add(sn_drift *st, const sn_drift_config *cfg, int64_t t, double y, sn_verdict *out)
{
    sn_verdict_init(out, SN_DETECT_CUSUM, y);
    if (!isfinite(y) || sn_drift_config_validate(cfg) != NULL)
        return false;
    return add_checked(st, cfg, t, y, out);
}

bool sn_drift_add_valid(sn_drift *st, const sn_drift_config *cfg, int64_t t, double y,
                        sn_verdict *out)
{
    if (!isfinite(y))
        return false;
    return add_checked(st, cfg, t, y, out);
}
