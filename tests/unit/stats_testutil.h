/*
 * stats_testutil.h -- seeded random streams and sort-based reference statistics for the unit
 * tests of the statistics modules (window, sketch, stats, baseline). Header-only, test code only.
 */
#ifndef SN_STATS_TESTUTIL_H
#define SN_STATS_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* An assertion for hot loops: Check records a location message for every ck_assert* call (and
 * unpacks them all at the end of the test, which gets slow with 10^5 of them); this one only
 * calls into Check when it fails. */
#define TU_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg("%s:%d: check failed: %s", __FILE__, __LINE__, #cond);                    \
    } while (0)

/* TU_CHECK_EQ(a, b): a == b, printing both as doubles on failure. */
#define TU_CHECK_EQ(a, b)                                                                          \
    do {                                                                                           \
        double tu_a_ = (double)(a), tu_b_ = (double)(b);                                           \
        if (!(tu_a_ == tu_b_))                                                                     \
            ck_abort_msg("%s:%d: %s == %s failed: %.17g vs %.17g", __FILE__, __LINE__, #a, #b,     \
                         tu_a_, tu_b_);                                                            \
    } while (0)

/* TU_CHECK_MSG(cond, fmt, ...): TU_CHECK with a message. */
#define TU_CHECK_MSG(cond, ...)                                                                    \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

typedef struct tu_rng {
    uint64_t s;
} tu_rng;

/* splitmix64: small, fast and good enough for test streams. */
static inline uint64_t tu_next(tu_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline double tu_uniform(tu_rng *r)
{
    return (double)(tu_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal (Box-Muller). */
static inline double tu_normal(tu_rng *r)
{
    double u = tu_uniform(r), v = tu_uniform(r);
    if (u < 1e-300)
        u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

enum tu_dist {
    TU_UNIFORM,    /* [0, 1000) */
    TU_NORMAL,     /* mean 2000, sd 300: a latency */
    TU_LOGNORMAL,  /* exp(N(5, 1.5)): heavy tail */
    TU_DUPLICATES, /* integers 0..9 */
    TU_CONSTANT,   /* always 42.5 */
    TU_NEGATIVE,   /* N(-50, 40): mostly negative, crosses zero */
    TU_DIST_COUNT
};

static const char *const tu_dist_names[TU_DIST_COUNT] = {"uniform",    "normal",   "lognormal",
                                                         "duplicates", "constant", "negative"};

static inline double tu_sample(tu_rng *r, int dist)
{
    switch (dist) {
    case TU_UNIFORM:
        return tu_uniform(r) * 1000.0;
    case TU_NORMAL:
        return 2000.0 + 300.0 * tu_normal(r);
    case TU_LOGNORMAL:
        return exp(5.0 + 1.5 * tu_normal(r));
    case TU_DUPLICATES:
        return (double)(tu_next(r) % 10);
    case TU_CONSTANT:
        return 42.5;
    default:
        return -50.0 + 40.0 * tu_normal(r);
    }
}

static inline int tu_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts a copy of v[0..n) into out. */
static inline void tu_sorted(const double *v, size_t n, double *out)
{
    memcpy(out, v, n * sizeof(double));
    qsort(out, n, sizeof(double), tu_cmp_double);
}

/* Type-7 quantile of sorted s[0..n). */
static inline double tu_quantile(const double *s, size_t n, double q)
{
    double h = q * (double)(n - 1);
    size_t lo = (size_t)floor(h);
    if (lo >= n - 1)
        return s[n - 1];
    return s[lo] + (h - (double)lo) * (s[lo + 1] - s[lo]);
}

/* Type-7 MAD of sorted s[0..n), by building and sorting the deviations (scratch has n slots). */
static inline double tu_mad(const double *s, size_t n, double *scratch)
{
    double m = tu_quantile(s, n, 0.5);
    for (size_t i = 0; i < n; i++)
        scratch[i] = fabs(s[i] - m);
    qsort(scratch, n, sizeof(double), tu_cmp_double);
    return tu_quantile(scratch, n, 0.5);
}

/* Two-pass mean and sample variance. */
static inline void tu_moments(const double *v, size_t n, double *mean, double *var)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    double m = sum / (double)n, ss = 0.0;
    for (size_t i = 0; i < n; i++)
        ss += (v[i] - m) * (v[i] - m);
    *mean = m;
    *var = n > 1 ? ss / (double)(n - 1) : 0.0;
}

/* |a - b| <= tol * max(1, |b|) */
static inline int tu_close(double a, double b, double tol)
{
    double scale = fabs(b) > 1.0 ? fabs(b) : 1.0;
    return fabs(a - b) <= tol * scale;
}

#endif
