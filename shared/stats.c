/*
 * stats.c -- Welford and EWMA accumulators; the log1p and log tables.
 */
#include "stats.h"

#include <errno.h>
#include <math.h>

void sn_summary_clear(sn_summary *s)
{
    s->n = 0;
    s->mean = NAN;
    s->stddev = 0.0;
    s->min = NAN;
    s->max = NAN;
    s->median = NAN;
    s->q1 = NAN;
    s->q3 = NAN;
    s->p95 = NAN;
    s->p99 = NAN;
    s->mad = NAN;
}

void sn_welford_init(sn_welford *w)
{
    w->n = 0;
    w->mean = NAN;
    w->m2 = 0.0;
    w->min = NAN;
    w->max = NAN;
}

void sn_welford_merge(sn_welford *dst, const sn_welford *src)
{
    if (src->n == 0)
        return;
    if (dst->n == 0) {
        *dst = *src;
        return;
    }
    /* Read src fully first: dst and src may be the same object. */
    double na = (double)dst->n, nb = (double)src->n;
    double mb = src->mean, m2b = src->m2, minb = src->min, maxb = src->max;
    double n = na + nb;
    double delta = mb - dst->mean;
    dst->mean += delta * (nb / n);
    dst->m2 += m2b + delta * delta * (na * nb / n);
    dst->n += src->n;
    if (minb < dst->min)
        dst->min = minb;
    if (maxb > dst->max)
        dst->max = maxb;
}

double sn_welford_mean(const sn_welford *w)
{
    return w->n == 0 ? NAN : w->mean;
}

double sn_welford_variance(const sn_welford *w)
{
    if (w->n < 2)
        return 0.0;
    double v = w->m2 / (double)(w->n - 1);
    return v > 0.0 ? v : 0.0;
}

double sn_welford_stddev(const sn_welford *w)
{
    return sqrt(sn_welford_variance(w));
}

int sn_ewma_init(sn_ewma *e, double alpha)
{
    if (!(alpha > 0.0 && alpha <= 1.0))
        return -EINVAL;
    e->alpha = alpha;
    e->mean = NAN;
    e->var = 0.0;
    e->n = 0;
    return 0;
}

double sn_ewma_stddev(const sn_ewma *e)
{
    return e->var > 0.0 ? sqrt(e->var) : 0.0;
}

double sn_stats_log1p_table[SN_STATS_LOG_TABLE];
double sn_stats_log_table[SN_STATS_LOG_TABLE];
/* Filled when the program is loaded (the tables are defined here, so every program that reads
 * them links this file and runs this before main): no caller has to set them up. */
__attribute__((constructor)) static void tables_fill(void)
{
    for (uint32_t i = 0; i < SN_STATS_LOG_TABLE; i++) {
        sn_stats_log1p_table[i] = log1p((double)i);
        sn_stats_log_table[i] = log((double)i);
    }
}
