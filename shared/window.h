/*
 * window.h -- an exact rolling window over the last N samples, with order statistics.
 *
 * The window keeps the samples twice: a ring buffer in arrival order (to know which sample leaves
 * next) and a sorted array maintained by binary search plus one memmove per sample (to answer
 * order statistics directly). The mean and variance over the window are kept incrementally
 * (Welford, with the sliding-window removal update) and recomputed exactly once every
 * `capacity` replacements so rounding error cannot accumulate.
 *
 * Cost per sample: O(log N) comparisons plus a memmove of at most N doubles (on average about
 * N/3). Quantiles and MAD: O(log N). Memory: sn_window_size(N) = a small header + 16 N bytes,
 * all allocated once at creation; nothing is allocated afterwards.
 *
 * Quantiles use linear interpolation between closest ranks (Hyndman & Fan type 7, numpy's
 * default): for sorted samples s[0..n) and q in [0, 1], h = q (n - 1), and
 *     Q(q) = s[floor(h)] + (h - floor(h)) * (s[floor(h) + 1] - s[floor(h)]).
 * The median is Q(0.5); the MAD is the type-7 median of |s[i] - median|.
 *
 * NaN, +-Inf and |x| > SN_STATS_MAX_ABS are refused (never stored; see stats.h). A window is not
 * thread-safe: one owner at a time.
 */
#ifndef SN_WINDOW_H
#define SN_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#include "stats.h"

#define SN_WINDOW_DEFAULT_CAPACITY 1000u      /* contracts.md: rolling baseline window */
#define SN_WINDOW_MAX_CAPACITY     (1u << 24) /* 16 Mi samples, 256 MiB: anything larger is a bug */

typedef struct sn_window sn_window;

/* Bytes a window of `capacity` samples occupies (for sn_window_init and memory budgets); 0 when
 * capacity is 0 or above SN_WINDOW_MAX_CAPACITY. */
size_t sn_window_size(uint32_t capacity);

/* Allocates an empty window holding at most `capacity` samples and stores it in *out.
 * Returns 0; -EINVAL when capacity is 0 or above SN_WINDOW_MAX_CAPACITY; -ENOMEM when the
 * allocation fails. On failure *out is untouched. The caller frees it with sn_window_destroy. */
int sn_window_create(sn_window **out, uint32_t capacity);

/* Frees a window from sn_window_create. NULL is a no-op. */
void sn_window_destroy(sn_window *w);

/* Initialises a window inside caller-owned memory `mem` of at least sn_window_size(capacity)
 * bytes, aligned for a double (e.g. part of a larger allocation). The caller keeps ownership of
 * `mem` and simply releases it; there is nothing to destroy. Returns 0 or -EINVAL (bad
 * capacity); mem is untouched on failure. */
int sn_window_init(sn_window *mem, uint32_t capacity);

/* Empties the window (capacity unchanged). Cannot fail. */
void sn_window_clear(sn_window *w);

/* Adds x; when the window is full the oldest sample leaves. Returns 0, or -EINVAL (window
 * unchanged) when !sn_stats_sample_ok(x) (NaN, +-Inf, |x| > SN_STATS_MAX_ABS). Never
 * allocates. */
int sn_window_add(sn_window *w, double x);

/* Samples currently held (at most the capacity). */
uint32_t sn_window_count(const sn_window *w);

/* The capacity fixed at creation. */
uint32_t sn_window_capacity(const sn_window *w);

/* The type-7 quantile q of the samples held (see above). NAN when the window is empty or q is
 * not in [0, 1]. O(1). */
double sn_window_quantile(const sn_window *w, double q);

/* The median absolute deviation from the median (unscaled). NAN when empty. O(log n): it is the
 * k-th smallest of two monotone deviation sequences read from the sorted array. */
double sn_window_mad(const sn_window *w);

/* Fills *out: n, mean, stddev (n - 1), min, max, median, q1, q3, p95, p99 and MAD, all exact
 * (up to floating point rounding of mean and stddev). An empty window gives n = 0 and NAN
 * fields (stddev 0). Cannot fail. */
void sn_window_summary(const sn_window *w, sn_summary *out);

/* Copies up to `max` samples, oldest first, into dst and returns how many were copied (for
 * snapshots). */
uint32_t sn_window_samples(const sn_window *w, double *dst, uint32_t max);

/* Copies up to `max` samples starting at the from-th oldest (0 = the oldest) into dst, oldest
 * first, and returns how many were copied (0 when from >= the count): snapshots of any window
 * size through a small buffer. */
uint32_t sn_window_samples_from(const sn_window *w, uint32_t from, double *dst, uint32_t max);

#endif
