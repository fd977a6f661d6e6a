/*
 * sketch.h -- a mergeable quantile sketch with bounded memory (DDSketch-style).
 *
 * Positive values x are counted in log-spaced buckets: bucket i holds (gamma^(i-1), gamma^i] with
 * gamma = (1 + alpha) / (1 - alpha), and reports 2 gamma^i / (gamma + 1), which is within a
 * relative error alpha of every value in the bucket. Negative values go to a mirrored store keyed
 * by |x|; zero (and any |x| below DBL_MIN, i.e. subnormals) goes to a separate zero count.
 * Count, sum, min, max, mean and variance (Welford) are kept exactly alongside.
 *
 * Memory is fixed at creation: max_buckets counters (4 bytes each) shared by the positive and
 * negative stores, each a dense run of consecutive bucket indices. When a new value needs more
 * buckets than are free, the store first takes space back from the other sign's store if that
 * one holds more than half, then collapses its own LOWEST buckets into one (DDSketch's
 * "collapsing lowest" store): high quantiles -- what spike detection needs -- keep the alpha
 * guarantee, the lowest ones lose it, and sn_sketch_collapsed() says so.
 *
 * Quantiles: for n samples and q in [0, 1], h = q (n - 1); the sketch estimates the sorted
 * samples s[floor(h)] and s[ceil(h)] (each within relative error alpha, or exactly for the
 * minimum and maximum) and interpolates linearly between them -- the same type-7 definition as
 * the exact window, so the result is within alpha * max(|s[floor(h)]|, |s[ceil(h)]|) of the
 * exact type-7 quantile as long as no bucket was collapsed.
 *
 * Merging two sketches with the same alpha gives exactly the sketch of the union (bucket counts
 * add), unless the union range forces a collapse. Serialization is a little-endian, versioned,
 * CRC-32 protected byte string of bounded size; deserialization validates every field.
 *
 * Not thread-safe: one owner at a time. No function allocates except create and deserialize.
 */
#ifndef SN_SKETCH_H
#define SN_SKETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stats.h"

#define SN_SKETCH_DEFAULT_ALPHA   0.01
#define SN_SKETCH_DEFAULT_BUCKETS 2048u
#define SN_SKETCH_MIN_ALPHA       1e-4
#define SN_SKETCH_MAX_ALPHA       0.5
#define SN_SKETCH_MIN_BUCKETS     8u
#define SN_SKETCH_MAX_BUCKETS     65536u
#define SN_SKETCH_MAX_COUNT       UINT32_MAX /* samples one sketch can hold */

/* Largest serialized sketch, for sizing buffers: header + every bucket + checksum. */
#define SN_SKETCH_MAX_SERIALIZED (88u + 4u * SN_SKETCH_MAX_BUCKETS + 4u)

typedef struct sn_sketch sn_sketch;

/* Bytes a sketch with max_buckets counters occupies; 0 when max_buckets is outside
 * [SN_SKETCH_MIN_BUCKETS, SN_SKETCH_MAX_BUCKETS]. */
size_t sn_sketch_size(uint32_t max_buckets);

/* Allocates an empty sketch with relative accuracy alpha and at most max_buckets buckets, and
 * stores it in *out. Returns 0; -EINVAL when alpha is not in [SN_SKETCH_MIN_ALPHA,
 * SN_SKETCH_MAX_ALPHA] or max_buckets is out of range; -ENOMEM when allocation fails (*out is untouched on
 * failure). The caller frees it with sn_sketch_destroy. */
int sn_sketch_create(sn_sketch **out, double alpha, uint32_t max_buckets);

/* Frees a sketch from sn_sketch_create or sn_sketch_deserialize. NULL is a no-op. */
void sn_sketch_destroy(sn_sketch *s);

/* Initialises an empty sketch inside caller-owned memory of at least sn_sketch_size(max_buckets)
 * bytes, aligned for a double. The caller keeps ownership of mem (nothing to destroy). Same
 * errors as sn_sketch_create except -ENOMEM; mem is untouched on failure. */
int sn_sketch_init(sn_sketch *mem, double alpha, uint32_t max_buckets);

/* Empties the sketch; alpha and max_buckets are kept. Cannot fail. */
void sn_sketch_clear(sn_sketch *s);

/* Adds x. Returns 0; -EINVAL when !sn_stats_sample_ok(x) (NaN, +-Inf, |x| > SN_STATS_MAX_ABS);
 * -EOVERFLOW when the sketch already
 * holds SN_SKETCH_MAX_COUNT samples. The sketch is unchanged on failure. Never allocates;
 * O(1) except when the bucket range grows (a memmove of at most max_buckets counters). */
int sn_sketch_add(sn_sketch *s, double x);

/* sn_sketch_add for a caller that has checked sn_stats_sample_ok(x) (not checked again), and
 * that rotates sketches by their count: adds x and returns 0 when the sketch holds fewer than
 * limit (and fewer than SN_SKETCH_MAX_COUNT) samples, else returns 1 and leaves it unchanged --
 * one call instead of sn_sketch_count and sn_sketch_add. Never allocates. */
int sn_sketch_add_below(sn_sketch *s, double x, uint64_t limit);

/* Adds every sample of src to dst (src unchanged; dst == src doubles it). Returns 0; -EINVAL
 * when the alphas differ; -EOVERFLOW when the total would exceed SN_SKETCH_MAX_COUNT. dst is
 * unchanged on failure. dst keeps its own max_buckets and collapses if the union needs more. */
int sn_sketch_merge(sn_sketch *dst, const sn_sketch *src);

/* Samples held. */
uint64_t sn_sketch_count(const sn_sketch *s);

/* The relative accuracy fixed at creation. */
double sn_sketch_alpha(const sn_sketch *s);

/* Buckets currently spanned by the two stores (<= max_buckets). */
uint32_t sn_sketch_buckets_used(const sn_sketch *s);

/* The bucket cap fixed at creation. */
uint32_t sn_sketch_max_buckets(const sn_sketch *s);

/* True once any bucket was collapsed since creation or the last clear: the lowest quantiles may
 * then be off by more than alpha. */
bool sn_sketch_collapsed(const sn_sketch *s);

/* Bytes of memory the sketch occupies (sn_sketch_size of its max_buckets). */
size_t sn_sketch_bytes(const sn_sketch *s);

/* The estimated type-7 quantile q (see above). NAN when empty or q is not in [0, 1].
 * O(max_buckets). */
double sn_sketch_quantile(const sn_sketch *s, double q);

/* Fills *out. n, mean, stddev, min and max are exact (up to floating point rounding); median,
 * q1, q3, p95 and p99 are sketch estimates; mad is APPROXIMATE: the median of |v - median| over
 * the bucket representatives v (clamped to [min, max]) weighted by their counts, so its absolute
 * error is about alpha * (|x| + |median|) for the samples x near the MAD. An empty sketch gives
 * n = 0 and NAN fields (stddev 0). Cannot fail. O(max_buckets). */
void sn_sketch_summary(const sn_sketch *s, sn_summary *out);

/* sn_sketch_summary, or without the MAD (left NAN) when with_mad is false: the MAD is a second
 * walk over the buckets, which a caller that does not use it (the engine's log-space scoring
 * derives its own from the quartiles) need not pay for. Every other field is the same. */
void sn_sketch_summary_mad(const sn_sketch *s, sn_summary *out, bool with_mad);

/* Exact number of bytes sn_sketch_serialize will write (<= SN_SKETCH_MAX_SERIALIZED). */
size_t sn_sketch_serialized_size(const sn_sketch *s);

/* Writes the sketch into buf[0..cap) and stores the length in *len. Returns 0, or -ENOSPC when
 * cap is smaller than sn_sketch_serialized_size (buf may then be partly written). */
int sn_sketch_serialize(const sn_sketch *s, void *buf, size_t cap, size_t *len);

/* Parses buf[0..len) (the whole of it) into a newly allocated sketch stored in *out, which the
 * caller frees with sn_sketch_destroy. Every field is validated: a truncated, extended or corrupt
 * buffer (bad magic, version, checksum, parameters, counts that do not add up, indices outside
 * the range of doubles) returns -EBADMSG; allocation failure returns -ENOMEM. *out is untouched
 * on failure. Never reads outside buf[0..len). */
int sn_sketch_deserialize(sn_sketch **out, const void *buf, size_t len);

#endif
