/*
 * window.c -- exact rolling window: ring buffer + sorted array + incremental moments.
 *
 * Invariants (checked locally by window_ok() in debug builds, in full by the unit tests):
 *   - ring[(head + i) % cap] for i in [0, n) are the samples in arrival order;
 *   - sorted[0..n) is the same multiset in non-decreasing order;
 *   - mean / m2 are the Welford moments of those n samples (up to rounding, which is
 *     reset by an exact recomputation every `cap` replacements).
 */
#include "window.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sn_window {
    uint32_t cap;
    uint32_t n;
    uint32_t head;    /* ring index of the oldest sample */
    uint32_t replays; /* replacements since the last exact recomputation of the moments */
    double mean;
    double m2;
    double data[]; /* ring[cap] then sorted[cap] */
};

#define RING(w)   ((w)->data)
#define SORTED(w) ((w)->data + (w)->cap)

size_t sn_window_size(uint32_t capacity)
{
    if (capacity == 0 || capacity > SN_WINDOW_MAX_CAPACITY)
        return 0;
    return sizeof(sn_window) + 2 * (size_t)capacity * sizeof(double);
}

int sn_window_init(sn_window *mem, uint32_t capacity)
{
    if (sn_window_size(capacity) == 0)
        return -EINVAL;
    mem->cap = capacity;
    sn_window_clear(mem);
    return 0;
}

int sn_window_create(sn_window **out, uint32_t capacity)
{
    size_t size = sn_window_size(capacity);
    if (size == 0)
        return -EINVAL;
    sn_window *w = malloc(size);
    if (w == NULL)
        return -ENOMEM;
    w->cap = capacity;
    sn_window_clear(w);
    *out = w;
    return 0;
}

void sn_window_destroy(sn_window *w)
{
    free(w);
}

void sn_window_clear(sn_window *w)
{
    w->n = 0;
    w->head = 0;
    w->replays = 0;
    w->mean = 0.0;
    w->m2 = 0.0;
}

#ifndef NDEBUG
/* Cheap invariant check after placing a sample at sorted index p: counters in range and the
 * sample in order with its neighbours (the tests check the whole array). */
static int window_ok(const sn_window *w, uint32_t p)
{
    const double *s = SORTED(w);
    if (w->n > w->cap || w->head >= w->cap || p >= w->n)
        return 0;
    return (p == 0 || s[p - 1] <= s[p]) && (p + 1 >= w->n || s[p] <= s[p + 1]);
}
#endif

/* First index i in s[0..n) with s[i] > x. */
static uint32_t upper_bound(const double *s, uint32_t n, double x)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* First index i in s[0..n) with s[i] >= x. */
static uint32_t lower_bound(const double *s, uint32_t n, double x)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Exact two-pass mean and m2 over the ring, to cancel drift of the incremental updates. */
static void recompute_moments(sn_window *w)
{
    const double *r = RING(w);
    double sum = 0.0;
    for (uint32_t i = 0; i < w->n; i++)
        sum += r[i];
    double mean = sum / (double)w->n;
    double m2 = 0.0, comp = 0.0;
    for (uint32_t i = 0; i < w->n; i++) {
        double d = r[i] - mean;
        m2 += d * d;
        comp += d;
    }
    w->mean = mean;
    m2 -= comp * comp / (double)w->n;
    w->m2 = m2 > 0.0 ? m2 : 0.0;
    w->replays = 0;
}

int sn_window_add(sn_window *w, double x)
{
    if (!sn_stats_sample_ok(x))
        return -EINVAL;
    double *s = SORTED(w);
    if (w->n < w->cap) {
        uint32_t tail = w->head + w->n;
        if (tail >= w->cap)
            tail -= w->cap;
        RING(w)[tail] = x;
        uint32_t p = upper_bound(s, w->n, x);
        memmove(s + p + 1, s + p, (size_t)(w->n - p) * sizeof(double));
        s[p] = x;
        w->n++;
        double d = x - w->mean;
        w->mean += d / (double)w->n;
        w->m2 += d * (x - w->mean);
        assert(window_ok(w, p));
        return 0;
    }

    /* Full: x replaces the oldest sample, in the ring and in the sorted array. */
    double old = RING(w)[w->head];
    RING(w)[w->head] = x;
    w->head = w->head + 1 == w->cap ? 0 : w->head + 1;
    uint32_t i = lower_bound(s, w->n, old); /* s[i] == old: equal values are interchangeable */
    uint32_t p = upper_bound(s, w->n, x);
    if (p > i) {
        memmove(s + i, s + i + 1, (size_t)(p - 1 - i) * sizeof(double));
        s[--p] = x;
    } else {
        memmove(s + p + 1, s + p, (size_t)(i - p) * sizeof(double));
        s[p] = x;
    }

    /* Sliding Welford: the window size stays n. */
    double old_mean = w->mean;
    w->mean += (x - old) / (double)w->n;
    w->m2 += (x - old) * (x - w->mean + old - old_mean);
    if (w->m2 < 0.0)
        w->m2 = 0.0;
    if (++w->replays >= w->cap)
        recompute_moments(w);
    assert(window_ok(w, p));
    return 0;
}

uint32_t sn_window_count(const sn_window *w)
{
    return w->n;
}

uint32_t sn_window_capacity(const sn_window *w)
{
    return w->cap;
}

/* Type-7 quantile of a sorted array of n >= 1 values. */
static double sorted_quantile(const double *s, uint32_t n, double q)
{
    double h = q * (double)(n - 1);
    uint32_t lo = (uint32_t)h;
    if (lo >= n - 1)
        return s[n - 1];
    double frac = h - (double)lo;
    return s[lo] + frac * (s[lo + 1] - s[lo]);
}

double sn_window_quantile(const sn_window *w, double q)
{
    if (w->n == 0 || !(q >= 0.0 && q <= 1.0))
        return NAN;
    return sorted_quantile(SORTED(w), w->n, q);
}

/*
 * The k-th smallest (0-based) of the deviations |s[i] - m|, given L = the first index with
 * s[L] >= m. The deviations form two non-decreasing sequences:
 *     A[j] = m - s[L-1-j]  (j in [0, L))       -- below the median, walking down
 *     B[j] = s[L+j] - m    (j in [0, n-L))     -- at/above the median, walking up
 * and the k-th smallest of their union is found by binary search on how many come from A:
 * the smallest a with A[a] >= B[k-a] (b = k+1-a taken from B).
 */
static double kth_deviation(const double *s, uint32_t n, uint32_t split, double m, uint32_t k)
{
    uint32_t len_a = split, len_b = n - split;
    uint32_t want = k + 1;
    uint32_t lo = want > len_b ? want - len_b : 0;
    uint32_t hi = want < len_a ? want : len_a;
    while (lo < hi) {
        uint32_t a = lo + (hi - lo) / 2;
        uint32_t b = want - a;
        double da = m - s[split - 1 - a];
        double db = s[split + b - 1] - m;
        if (da < db)
            lo = a + 1;
        else
            hi = a;
    }
    uint32_t a = lo, b = want - lo;
    double best = 0.0;
    if (a > 0)
        best = m - s[split - a];
    if (b > 0) {
        double db = s[split + b - 1] - m;
        if (db > best)
            best = db;
    }
    return best;
}

static double sorted_mad(const double *s, uint32_t n, double median)
{
    uint32_t split = lower_bound(s, n, median);
    double h = 0.5 * (double)(n - 1);
    uint32_t lo = (uint32_t)h;
    double d_lo = kth_deviation(s, n, split, median, lo);
    if (lo + 1 >= n || h == (double)lo)
        return d_lo;
    double d_hi = kth_deviation(s, n, split, median, lo + 1);
    return d_lo + (h - (double)lo) * (d_hi - d_lo);
}

double sn_window_mad(const sn_window *w)
{
    if (w->n == 0)
        return NAN;
    const double *s = SORTED(w);
    return sorted_mad(s, w->n, sorted_quantile(s, w->n, 0.5));
}

void sn_window_summary(const sn_window *w, sn_summary *out)
{
    sn_summary_clear(out);
    if (w->n == 0)
        return;
    const double *s = SORTED(w);
    uint32_t n = w->n;
    out->n = n;
    out->mean = w->mean;
    out->stddev = n < 2 ? 0.0 : sqrt(w->m2 / (double)(n - 1));
    out->min = s[0];
    out->max = s[n - 1];
    out->median = sorted_quantile(s, n, 0.5);
    out->q1 = sorted_quantile(s, n, 0.25);
    out->q3 = sorted_quantile(s, n, 0.75);
    out->p95 = sorted_quantile(s, n, 0.95);
    out->p99 = sorted_quantile(s, n, 0.99);
    out->mad = sorted_mad(s, n, out->median);
}

uint32_t sn_window_samples(const sn_window *w, double *dst, uint32_t max)
{
    uint32_t n = w->n < max ? w->n : max;
    uint32_t idx = w->head;
    for (uint32_t i = 0; i < n; i++) {
        dst[i] = RING(w)[idx];
        idx = idx + 1 == w->cap ? 0 : idx + 1;
    }
    return n;
}

uint32_t sn_window_samples_from(const sn_window *w, uint32_t from, double *dst, uint32_t max)
{
    if (from >= w->n)
        return 0;
    uint32_t n = w->n - from < max ? w->n - from : max;
    uint64_t idx = ((uint64_t)w->head + from) % w->cap;
    for (uint32_t i = 0; i < n; i++) {
        dst[i] = RING(w)[idx];
        idx = idx + 1 == w->cap ? 0 : idx + 1;
    }
    return n;
}
