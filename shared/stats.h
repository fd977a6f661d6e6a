/*
 * stats.h -- running statistics: Welford mean/variance, EWMA, and the summary of a baseline
 * that detectors score against.
 *
 * sn_welford and sn_ewma are small value types (no heap, no pointers) meant to be embedded in
 * other state and copied freely. Their fields may be read; change them only through the
 * functions below.
 *
 * Samples: every module (here, window, sketch, baseline) accepts exactly the values for which
 * sn_stats_sample_ok() is true -- finite, with |x| <= SN_STATS_MAX_ABS -- and refuses anything
 * else with -EINVAL, leaving its state unchanged. The bound keeps squares and sums finite (no
 * accumulator can overflow to Inf or NaN), and no metric of an LLM call comes near it.
 */
#ifndef SN_STATS_H
#define SN_STATS_H

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>

/* What a detector needs to know about a baseline. Filled by the window (exact) or the sketch
 * (approximate); detectors never look at the raw samples. Fields that the source cannot give
 * are NAN. */
typedef struct sn_summary {
    uint64_t n; /* samples in the baseline */
    double mean;
    double stddev; /* sample standard deviation (n-1); 0 for n < 2 */
    double min;
    double max;
    double median;
    double q1; /* 25th percentile */
    double q3; /* 75th percentile */
    double p95;
    double p99;
    double mad; /* median absolute deviation from the median, unscaled */
} sn_summary;

#define SN_STATS_MAX_ABS 1e100

/* Whether x is a sample the statistics accept: finite and |x| <= SN_STATS_MAX_ABS. */
static inline bool sn_stats_sample_ok(double x)
{
    return fabs(x) <= SN_STATS_MAX_ABS; /* false for NaN and +-Inf too */
}

/* Sets every field of a summary to "no data": n = 0, stddev = 0, everything else NAN. */
void sn_summary_clear(sn_summary *s);

/* Running mean and variance (Welford 1962), plus exact min and max. Mergeable: two accumulators
 * over disjoint samples combine into the accumulator of their union (Chan et al. 1979). */
typedef struct sn_welford {
    uint64_t n;
    double mean; /* NAN when n == 0 */
    double m2;   /* sum of squared deviations from the mean */
    double min;  /* NAN when n == 0 */
    double max;  /* NAN when n == 0 */
} sn_welford;

/* Resets w to the empty accumulator. Cannot fail. */
void sn_welford_init(sn_welford *w);

/* sn_welford_add for a sample the caller has checked with sn_stats_sample_ok (not checked
 * again). */
static inline void sn_welford_add_valid(sn_welford *w, double x)
{
    if (w->n == 0) {
        w->n = 1;
        w->mean = x;
        w->m2 = 0.0;
        w->min = x;
        w->max = x;
        return;
    }
    w->n++;
    double d = x - w->mean;
    w->mean += d / (double)w->n;
    w->m2 += d * (x - w->mean);
    if (x < w->min)
        w->min = x;
    if (x > w->max)
        w->max = x;
}

/* Adds sample x. Returns 0, or -EINVAL (w unchanged) when !sn_stats_sample_ok(x). O(1).
 * Inline: baselines add every value of every key twice (window and all-time moments). */
static inline int sn_welford_add(sn_welford *w, double x)
{
    if (!sn_stats_sample_ok(x))
        return -EINVAL;
    sn_welford_add_valid(w, x);
    return 0;
}

/* Folds src into dst so dst describes the union of both sample sets (Chan's parallel formula).
 * src is not modified and may be empty; dst == src is allowed (doubles every sample). */
void sn_welford_merge(sn_welford *dst, const sn_welford *src);

/* The mean; NAN when empty. */
double sn_welford_mean(const sn_welford *w);

/* The sample variance m2 / (n - 1); 0 when n < 2. */
double sn_welford_variance(const sn_welford *w);

/* The sample standard deviation; 0 when n < 2. */
double sn_welford_stddev(const sn_welford *w);

/* Exponentially weighted moving mean and variance. After the first sample (which sets
 * mean = x, var = 0) each sample x updates
 *     d = x - mean;  mean += alpha * d;  var = (1 - alpha) * (var + alpha * d * d)
 * which equals the weighted mean and weighted (population) variance of all samples with
 * weights alpha * (1 - alpha)^age (the first sample carries the remaining weight). */
typedef struct sn_ewma {
    double alpha; /* weight of the newest sample, in (0, 1] */
    double mean;  /* NAN before the first sample */
    double var;   /* 0 before the first sample */
    uint64_t n;   /* samples seen */
} sn_ewma;

/* Resets e with smoothing factor alpha. Returns 0, or -EINVAL (e untouched) unless
 * 0 < alpha <= 1. */
int sn_ewma_init(sn_ewma *e, double alpha);

/* Adds sample x. Returns 0, or -EINVAL (e unchanged) when !sn_stats_sample_ok(x). O(1).
 * Inline, like sn_welford_add. */
static inline int sn_ewma_add(sn_ewma *e, double x)
{
    if (!sn_stats_sample_ok(x))
        return -EINVAL;
    if (e->n++ == 0) {
        e->mean = x;
        e->var = 0.0;
        return 0;
    }
    double d = x - e->mean;
    e->mean += e->alpha * d;
    e->var = (1.0 - e->alpha) * (e->var + e->alpha * d * d);
    return 0;
}

/* The weighted standard deviation sqrt(var); 0 before the second sample. */
double sn_ewma_stddev(const sn_ewma *e);

/* log1p and log of the whole numbers below SN_STATS_LOG_TABLE (token counts: most calls' counts),
 * read from tables that log1p and log themselves filled, so sn_stats_log1p and sn_stats_log return
 * the same bits as log1p and log for every argument. 2 x 32 KiB, shared by the whole program,
 * filled once. */
#define SN_STATS_LOG_TABLE 4096u

/* The tables; read them only through sn_stats_log1p and sn_stats_log. Filled when the program
 * is loaded (a constructor in stats.c), before main. */
extern double sn_stats_log1p_table[SN_STATS_LOG_TABLE];
extern double sn_stats_log_table[SN_STATS_LOG_TABLE];

/* Whether x is a whole number in [0, SN_STATS_LOG_TABLE), -0 excluded (log1p(-0) is -0); its
 * index in *i. */
static inline bool sn_stats_table_index(double x, uint32_t *i)
{
    if (!(x >= 0.0 && x < (double)SN_STATS_LOG_TABLE))
        return false;
    *i = (uint32_t)x;
    return (double)*i == x && (*i != 0 || !signbit(x));
}

/* log1p(x), bit for bit, for every x (NaN, negative and infinite ones included); whole x below
 * SN_STATS_LOG_TABLE come from the table. */
static inline double sn_stats_log1p(double x)
{
    uint32_t i;
    return sn_stats_table_index(x, &i) ? sn_stats_log1p_table[i] : log1p(x);
}

/* log(x), bit for bit, for every x; whole x below SN_STATS_LOG_TABLE come from the table (log(0)
 * is -Inf there too). */
static inline double sn_stats_log(double x)
{
    uint32_t i;
    return sn_stats_table_index(x, &i) ? sn_stats_log_table[i] : log(x);
}

#endif
