/*
 * helpers.h -- test-only helpers for the detector tests: a sort-based exact summary of an
 * array (what the rolling window would report) and a deterministic random source. Static
 * inline so each test file takes only what it uses.
 */
#ifndef SN_TEST_DETECT_HELPERS_H
#define SN_TEST_DETECT_HELPERS_H

#include "stats.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HELPER_MAX 20000

static inline int helper_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Linear-interpolation quantile (type 7) of sorted[0..n). */
static inline double helper_quantile(const double *sorted, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)pos;
    double frac = pos - (double)lo;
    if (lo + 1 >= n)
        return sorted[n - 1];
    return sorted[lo] + frac * (sorted[lo + 1] - sorted[lo]);
}

/* Exact summary of xs[0..n), 1 <= n <= HELPER_MAX. */
static inline void summarise(const double *xs, size_t n, sn_summary *out)
{
    static double sorted[HELPER_MAX];
    static double dev[HELPER_MAX];
    memcpy(sorted, xs, n * sizeof(double));
    qsort(sorted, n, sizeof(double), helper_cmp);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += xs[i];
    double mean = sum / (double)n;
    double ss = 0.0;
    for (size_t i = 0; i < n; i++)
        ss += (xs[i] - mean) * (xs[i] - mean);
    out->n = n;
    out->mean = mean;
    out->stddev = n > 1 ? sqrt(ss / (double)(n - 1)) : 0.0;
    out->min = sorted[0];
    out->max = sorted[n - 1];
    out->median = helper_quantile(sorted, n, 0.5);
    out->q1 = helper_quantile(sorted, n, 0.25);
    out->q3 = helper_quantile(sorted, n, 0.75);
    out->p95 = helper_quantile(sorted, n, 0.95);
    out->p99 = helper_quantile(sorted, n, 0.99);
    for (size_t i = 0; i < n; i++)
        dev[i] = fabs(xs[i] - out->median);
    qsort(dev, n, sizeof(double), helper_cmp);
    out->mad = helper_quantile(dev, n, 0.5);
}

/* A summary with the given moments and quartiles; min/max/p95/p99 NAN. */
static inline sn_summary mk_summary(uint64_t n, double mean, double stddev, double median,
                                    double q1, double q3, double mad)
{
    sn_summary s = {.n = n,
                    .mean = mean,
                    .stddev = stddev,
                    .min = NAN,
                    .max = NAN,
                    .median = median,
                    .q1 = q1,
                    .q3 = q3,
                    .p95 = NAN,
                    .p99 = NAN,
                    .mad = mad};
    return s;
}

/* xorshift64*: deterministic, seedable. */
typedef struct helper_rng {
    uint64_t s;
} helper_rng;

static inline double rng_uniform(helper_rng *r) /* (0, 1) */
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    uint64_t v = r->s * UINT64_C(2685821657736338717);
    return ((double)(v >> 11) + 0.5) / 9007199254740992.0;
}

static inline double rng_normal(helper_rng *r) /* N(0, 1), Box-Muller */
{
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif
