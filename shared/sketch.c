/*
 * sketch.c -- DDSketch-style quantile sketch with a shared, bounded bucket array.
 *
 * Layout of counts[max_buckets]:
 *
 *     [ pos store: pos.len counters ][ free ][ neg store: neg.len counters ]
 *       index pos.lo at counts[0]             index neg.lo at counts[max - neg.len]
 *
 * Each store is a dense run of bucket indices [lo, lo + len), lowest index first. Invariants:
 * pos.len + neg.len <= max_buckets; zero + sum of all counters == w.n <= SN_SKETCH_MAX_COUNT.
 */
#include "sketch.h"
#include "bytes.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct store {
    int32_t lo;   /* bucket index of the first counter */
    uint32_t len; /* counters in use; 0 = empty store */
} store;

struct sn_sketch {
    double alpha;
    double log_gamma;     /* ln(gamma) */
    double inv_log_gamma; /* 1 / ln(gamma) */
    double sum;
    sn_welford w; /* exact count, mean, m2, min, max */
    uint32_t max_buckets;
    uint32_t zero; /* samples with |x| < DBL_MIN */
    store pos, neg;
    uint32_t collapsed;
    uint32_t counts[];
};

#define SER_MAGIC      0x4b534e53u /* "SNSK" little-endian */
#define SER_VERSION    1u
#define SER_HEADER     88u
#define SER_CRC        4u
#define FLAG_COLLAPSED 1u

size_t sn_sketch_size(uint32_t max_buckets)
{
    if (max_buckets < SN_SKETCH_MIN_BUCKETS || max_buckets > SN_SKETCH_MAX_BUCKETS)
        return 0;
    return sizeof(sn_sketch) + (size_t)max_buckets * sizeof(uint32_t);
}

static bool alpha_ok(double alpha)
{
    return alpha >= SN_SKETCH_MIN_ALPHA && alpha <= SN_SKETCH_MAX_ALPHA;
}

int sn_sketch_init(sn_sketch *mem, double alpha, uint32_t max_buckets)
{
    if (!alpha_ok(alpha) || sn_sketch_size(max_buckets) == 0)
        return -EINVAL;
    mem->alpha = alpha;
    mem->log_gamma = log1p(2.0 * alpha / (1.0 - alpha));
    mem->inv_log_gamma = 1.0 / mem->log_gamma;
    mem->max_buckets = max_buckets;
    sn_sketch_clear(mem);
    return 0;
}

int sn_sketch_create(sn_sketch **out, double alpha, uint32_t max_buckets)
{
    if (!alpha_ok(alpha) || sn_sketch_size(max_buckets) == 0)
        return -EINVAL;
    sn_sketch *s = malloc(sn_sketch_size(max_buckets));
    if (s == NULL)
        return -ENOMEM;
    int rc = sn_sketch_init(s, alpha, max_buckets);
    if (rc != 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void sn_sketch_destroy(sn_sketch *s)
{
    free(s);
}

void sn_sketch_clear(sn_sketch *s)
{
    s->sum = 0.0;
    sn_welford_init(&s->w);
    s->zero = 0;
    s->pos.lo = s->neg.lo = 0;
    s->pos.len = s->neg.len = 0;
    s->collapsed = 0;
}

/* Bucket index of a positive, normal x: ceil(log_gamma(x)). log's bits: whole x (token counts)
 * come from the shared table. The ceiling is taken by truncating and stepping up (fewer
 * instructions than ceil without SSE4.1), which is ceil exactly: |v| < 4e6 here (x in
 * [DBL_MIN, SN_STATS_MAX_ABS] and 1 / ln(gamma) < 5001 at the smallest alpha), so the int32
 * conversion is exact and a truncated v below it rounds up. */
static int32_t bucket_index(const sn_sketch *s, double x)
{
    double v = sn_stats_log(x) * s->inv_log_gamma;
    int32_t i = (int32_t)v;
    return i + ((double)i < v);
}

/* 2 / (gamma + 1): the factor of every bucket value (bucket_value), computed once per walk. */
static double value_scale(const sn_sketch *s)
{
    double gamma = exp(s->log_gamma);
    return 2.0 / (1.0 + gamma);
}

/* The value a bucket reports: 2 gamma^i / (gamma + 1), the point of least relative error;
 * scale is value_scale(s). */
static double bucket_value(const sn_sketch *s, int32_t i, double scale)
{
    return exp((double)i * s->log_gamma) * scale;
}

static uint32_t *store_base(sn_sketch *s, const store *st)
{
    return st == &s->pos ? s->counts : s->counts + (s->max_buckets - st->len);
}

static const uint32_t *store_cbase(const sn_sketch *s, const store *st)
{
    return st == &s->pos ? s->counts : s->counts + (s->max_buckets - st->len);
}

/* Moves store st to cover [new_lo, new_lo + new_len), which must end at or above its current
 * top; counters below new_lo are collapsed into the new lowest one. The caller has checked that
 * the other store leaves room for new_len counters. */
static void store_remap(sn_sketch *s, store *st, int32_t new_lo, uint32_t new_len)
{
    int64_t old_lo = st->lo, old_hi = (int64_t)st->lo + st->len - 1;
    uint32_t old_len = st->len;
    uint32_t *ob = store_base(s, st);
    uint64_t low = 0;
    for (int64_t i = old_lo; old_len > 0 && i <= old_hi && i < new_lo; i++)
        low += ob[i - old_lo];
    st->lo = new_lo;
    st->len = new_len;
    uint32_t *nb = store_base(s, st);
    int64_t ov_lo = old_lo > new_lo ? old_lo : new_lo;
    if (old_len > 0 && ov_lo <= old_hi) {
        memmove(nb + (ov_lo - new_lo), ob + (ov_lo - old_lo),
                (size_t)(old_hi - ov_lo + 1) * sizeof(uint32_t));
        memset(nb, 0, (size_t)(ov_lo - new_lo) * sizeof(uint32_t));
        memset(nb + (old_hi - new_lo + 1), 0,
               (size_t)((int64_t)new_lo + new_len - 1 - old_hi) * sizeof(uint32_t));
    } else {
        memset(nb, 0, (size_t)new_len * sizeof(uint32_t));
    }
    nb[0] += (uint32_t)low; /* cannot overflow: the total count fits in 32 bits */
    if (low > 0)
        s->collapsed = 1; /* samples now sit in a bucket above their own */
}

/* Makes store st cover [lo, hi] if there is room, else [hi - room + 1, hi] (later additions
 * below the range land in its lowest counter). Takes room back from the other store first when
 * that one holds more than half of the buckets. */
static void store_reserve(sn_sketch *s, store *st, int32_t lo, int32_t hi)
{
    store *ot = st == &s->pos ? &s->neg : &s->pos;
    int64_t want_lo = lo, want_hi = hi;
    if (st->len > 0) {
        int64_t cur_hi = (int64_t)st->lo + st->len - 1;
        if (lo >= st->lo && hi <= cur_hi)
            return;
        if (st->lo < want_lo)
            want_lo = st->lo;
        if (cur_hi > want_hi)
            want_hi = cur_hi;
    }
    uint64_t want = (uint64_t)(want_hi - want_lo + 1);
    uint32_t half = s->max_buckets / 2;
    if (want > s->max_buckets - ot->len && ot->len > half) {
        uint64_t keep = s->max_buckets - want;
        if (want > s->max_buckets || keep < half)
            keep = half;
        int64_t ot_hi = (int64_t)ot->lo + ot->len - 1;
        store_remap(s, ot, (int32_t)(ot_hi - (int64_t)keep + 1), (uint32_t)keep);
    }
    uint64_t room = s->max_buckets - ot->len;
    if (want > room)
        want_lo = want_hi - (int64_t)room + 1;
    if (st->len > 0 && want_lo == st->lo && want_hi == (int64_t)st->lo + st->len - 1)
        return; /* already as wide as it may be */
    store_remap(s, st, (int32_t)want_lo, (uint32_t)(want_hi - want_lo + 1));
}

/* Adds c to bucket i of a store that already covers i from above (i <= its top). */
static void store_add(sn_sketch *s, store *st, int32_t i, uint32_t c)
{
    if (i < st->lo) {
        i = st->lo;
        s->collapsed = 1;
    }
    store_base(s, st)[i - st->lo] += c;
}

/* Adds x, which sn_stats_sample_ok accepted, to a sketch holding fewer than SN_SKETCH_MAX_COUNT
 * samples. */
static inline void add_valid(sn_sketch *s, double x)
{
    double ax = fabs(x);
    if (ax < DBL_MIN) {
        s->zero++;
    } else {
        store *st = x > 0.0 ? &s->pos : &s->neg;
        int32_t i = bucket_index(s, ax);
        /* Most samples land inside the store's range: store_reserve would return at once. */
        if (st->len == 0 || i < st->lo || (int64_t)i - st->lo >= (int64_t)st->len)
            store_reserve(s, st, i, i);
        store_add(s, st, i, 1);
    }
    s->sum += x;
    sn_welford_add_valid(&s->w, x);
}

int sn_sketch_add(sn_sketch *s, double x)
{
    if (!sn_stats_sample_ok(x))
        return -EINVAL;
    if (s->w.n >= SN_SKETCH_MAX_COUNT)
        return -EOVERFLOW;
    add_valid(s, x);
    return 0;
}

int sn_sketch_add_below(sn_sketch *s, double x, uint64_t limit)
{
    if (s->w.n >= limit || s->w.n >= SN_SKETCH_MAX_COUNT)
        return 1;
    add_valid(s, x);
    return 0;
}

static void merge_store(sn_sketch *dst, store *dt, const sn_sketch *src, const store *st)
{
    if (st->len == 0)
        return;
    const uint32_t *sb = store_cbase(src, st);
    /* Trim empty counters at both ends so the reserved range is as small as possible. */
    uint32_t first = 0, last = st->len;
    while (first < last && sb[first] == 0)
        first++;
    while (last > first && sb[last - 1] == 0)
        last--;
    if (first == last)
        return;
    store_reserve(dst, dt, st->lo + (int32_t)first, st->lo + (int32_t)last - 1);
    /* dst == src: re-read the base after the (no-op) reserve; each counter is read before it
     * is written, so merging a sketch into itself doubles it. */
    sb = store_cbase(src, st);
    int32_t from = st->lo + (int32_t)first;
    if (from >= dt->lo) {
        /* The usual case: dst now covers the whole range, so the counters add one to one (what
         * store_add would do for each, without its collapse check and base look-up). */
        uint32_t *db = store_base(dst, dt) + (from - dt->lo);
        const uint32_t *sk = sb + first;
        for (uint32_t k = 0; k < last - first; k++)
            db[k] += sk[k];
        return;
    }
    for (uint32_t k = first; k < last; k++)
        if (sb[k] != 0)
            store_add(dst, dt, st->lo + (int32_t)k, sb[k]);
}

int sn_sketch_merge(sn_sketch *dst, const sn_sketch *src)
{
    if (dst->alpha != src->alpha)
        return -EINVAL;
    if (src->w.n > SN_SKETCH_MAX_COUNT - dst->w.n)
        return -EOVERFLOW;
    if (src->w.n == 0)
        return 0;
    /* Copy src's scalars first: dst may be src. */
    sn_welford sw = src->w;
    double ssum = src->sum;
    uint32_t szero = src->zero, scollapsed = src->collapsed;
    merge_store(dst, &dst->pos, src, &src->pos);
    merge_store(dst, &dst->neg, src, &src->neg);
    dst->zero += szero;
    dst->sum += ssum;
    sn_welford_merge(&dst->w, &sw);
    dst->collapsed |= scollapsed;
    return 0;
}

uint64_t sn_sketch_count(const sn_sketch *s)
{
    return s->w.n;
}

double sn_sketch_alpha(const sn_sketch *s)
{
    return s->alpha;
}

uint32_t sn_sketch_buckets_used(const sn_sketch *s)
{
    return s->pos.len + s->neg.len;
}

uint32_t sn_sketch_max_buckets(const sn_sketch *s)
{
    return s->max_buckets;
}

bool sn_sketch_collapsed(const sn_sketch *s)
{
    return s->collapsed != 0;
}

size_t sn_sketch_bytes(const sn_sketch *s)
{
    return sn_sketch_size(s->max_buckets);
}

/* ---- ordered access: all buckets in ascending value order ----
 * Position p in [0, neg.len) is negative bucket neg.lo + (neg.len - 1 - p); p == neg.len is the
 * zero count; p > neg.len is positive bucket pos.lo + (p - neg.len - 1). */

static uint32_t ordered_len(const sn_sketch *s)
{
    return s->neg.len + 1 + s->pos.len;
}

static double clamp(const sn_sketch *s, double v)
{
    if (v < s->w.min)
        return s->w.min;
    if (v > s->w.max)
        return s->w.max;
    return v;
}

/* Count at ordered position p. */
static uint32_t ordered_count(const sn_sketch *s, uint32_t p)
{
    if (p < s->neg.len)
        return store_cbase(s, &s->neg)[s->neg.len - 1 - p];
    if (p == s->neg.len)
        return s->zero;
    return s->counts[p - s->neg.len - 1];
}

/* Representative value at ordered position p, clamped to [min, max]; scale is
 * value_scale(s). */
static double ordered_value(const sn_sketch *s, uint32_t p, double scale)
{
    if (p < s->neg.len)
        return clamp(s, -bucket_value(s, s->neg.lo + (int32_t)(s->neg.len - 1 - p), scale));
    if (p == s->neg.len)
        return clamp(s, 0.0);
    return clamp(s, bucket_value(s, s->pos.lo + (int32_t)(p - s->neg.len - 1), scale));
}

/* Estimates of the sorted samples at 0-based ranks r[0] <= r[1] <= ... < n, in one walk over
 * the buckets; the first and last sample are exact (min and max). */
static void values_at_ranks(const sn_sketch *s, const uint64_t *r, double *out, int k)
{
    uint64_t cum = 0;
    uint32_t p = 0, len = ordered_len(s);
    /* positive buckets from ordered position pos0 on: walked straight over their counts */
    const uint32_t pos0 = s->neg.len + 1;
    const uint32_t *pc = s->counts;
    double scale = value_scale(s);
    /* neighbouring ranks often share a bucket: its value is computed once */
    uint32_t have_p = UINT32_MAX;
    double have_v = 0.0;
    for (int j = 0; j < k; j++) {
        if (r[j] == 0) {
            out[j] = s->w.min;
            continue;
        }
        if (r[j] + 1 >= s->w.n) {
            out[j] = s->w.max;
            continue;
        }
        while (p < pos0 && p < len && cum + ordered_count(s, p) <= r[j])
            cum += ordered_count(s, p++);
        if (p >= pos0) {
            while (p < len && cum + pc[p - pos0] <= r[j])
                cum += pc[p++ - pos0];
        }
        if (p >= len) {
            out[j] = s->w.max;
            continue;
        }
        if (p != have_p) {
            have_v = ordered_value(s, p, scale);
            have_p = p;
        }
        out[j] = have_v;
    }
}

/* The type-7 estimate for q from the two ranks around h = q (n - 1) (see sketch.h). */
static void type7_ranks(const sn_sketch *s, double q, uint64_t r[2], double *frac)
{
    double h = q * (double)(s->w.n - 1);
    r[0] = (uint64_t)h;
    r[1] = r[0] + 1 < s->w.n ? r[0] + 1 : r[0];
    *frac = h - (double)r[0];
}

double sn_sketch_quantile(const sn_sketch *s, double q)
{
    if (s->w.n == 0 || !(q >= 0.0 && q <= 1.0))
        return NAN;
    uint64_t r[2];
    double frac, v[2];
    type7_ranks(s, q, r, &frac);
    values_at_ranks(s, r, v, 2);
    return frac > 0.0 ? v[0] + frac * (v[1] - v[0]) : v[0];
}

/* Next non-empty ordered position at or after p (step +1) or at or before p (step -1);
 * -1 or len when there is none. */
static int64_t next_nonempty(const sn_sketch *s, int64_t p, int step, uint32_t len)
{
    while (p >= 0 && p < (int64_t)len && ordered_count(s, (uint32_t)p) == 0)
        p += step;
    return p;
}

/* The k-th and (k+1)-th smallest (0-based) |v - m| over the bucket representatives weighted by
 * count: walk outwards from m with one cursor on each side, taking the nearer bucket each time.
 * O(buckets). */
static void kth_deviations(const sn_sketch *s, double m, uint64_t k, double *dk, double *dk1)
{
    uint32_t len = ordered_len(s);
    double scale = value_scale(s);
    /* Split at the first non-empty bucket whose value is >= m. */
    int64_t right = next_nonempty(s, 0, 1, len);
    while (right < (int64_t)len && ordered_value(s, (uint32_t)right, scale) < m)
        right = next_nonempty(s, right + 1, 1, len);
    int64_t left = next_nonempty(s, right - 1, -1, len);
    double vl = left >= 0 ? ordered_value(s, (uint32_t)left, scale) : 0.0;
    double vr = right < (int64_t)len ? ordered_value(s, (uint32_t)right, scale) : 0.0;
    uint64_t cum = 0;
    double last = 0.0;
    bool have_k = false;
    *dk = *dk1 = 0.0;
    while (left >= 0 || right < (int64_t)len) {
        bool take_left = right >= (int64_t)len || (left >= 0 && m - vl <= vr - m);
        if (take_left) {
            last = m - vl;
            cum += ordered_count(s, (uint32_t)left);
            left = next_nonempty(s, left - 1, -1, len);
            if (left >= 0)
                vl = ordered_value(s, (uint32_t)left, scale);
        } else {
            last = vr - m;
            cum += ordered_count(s, (uint32_t)right);
            right = next_nonempty(s, right + 1, 1, len);
            if (right < (int64_t)len)
                vr = ordered_value(s, (uint32_t)right, scale);
        }
        if (!have_k && cum > k) {
            *dk = last;
            have_k = true;
        }
        if (cum > k + 1) {
            *dk1 = last;
            return;
        }
    }
    if (!have_k)
        *dk = last;
    *dk1 = last;
}

void sn_sketch_summary(const sn_sketch *s, sn_summary *out)
{
    sn_sketch_summary_mad(s, out, true);
}

void sn_sketch_summary_mad(const sn_sketch *s, sn_summary *out, bool with_mad)
{
    sn_summary_clear(out);
    if (s->w.n == 0)
        return;
    out->n = s->w.n;
    out->mean = s->w.mean;
    out->stddev = sn_welford_stddev(&s->w);
    out->min = s->w.min;
    out->max = s->w.max;
    /* All five quantiles in one walk: ranks ascend with q. */
    static const double qs[5] = {0.25, 0.5, 0.75, 0.95, 0.99};
    uint64_t r[10];
    double frac[5], v[10], est[5];
    for (int i = 0; i < 5; i++)
        type7_ranks(s, qs[i], r + 2 * i, &frac[i]);
    values_at_ranks(s, r, v, 10);
    for (int i = 0; i < 5; i++)
        est[i] = frac[i] > 0.0 ? v[2 * i] + frac[i] * (v[2 * i + 1] - v[2 * i]) : v[2 * i];
    out->q1 = est[0];
    out->median = est[1];
    out->q3 = est[2];
    out->p95 = est[3];
    out->p99 = est[4];
    if (!with_mad)
        return; /* mad stays NAN */
    double h = 0.5 * (double)(s->w.n - 1);
    uint64_t lo = (uint64_t)h;
    double d0, d1;
    kth_deviations(s, out->median, lo, &d0, &d1);
    out->mad = h > (double)lo ? d0 + (h - (double)lo) * (d1 - d0) : d0;
}

/* ---- serialization ---- */

size_t sn_sketch_serialized_size(const sn_sketch *s)
{
    return SER_HEADER + 4u * ((size_t)s->pos.len + s->neg.len) + SER_CRC;
}

int sn_sketch_serialize(const sn_sketch *s, void *buf, size_t cap, size_t *len)
{
    size_t need = sn_sketch_serialized_size(s);
    if (cap < need)
        return -ENOSPC;
    uint8_t *p = buf;
    sn_le_put_u32(p + 0, SER_MAGIC);
    sn_le_put_u16(p + 4, SER_VERSION);
    sn_le_put_u16(p + 6, s->collapsed ? FLAG_COLLAPSED : 0);
    sn_le_put_f64(p + 8, s->alpha);
    sn_le_put_u32(p + 16, s->max_buckets);
    sn_le_put_u32(p + 20, s->zero);
    sn_le_put_u64(p + 24, s->w.n);
    sn_le_put_f64(p + 32, s->sum);
    sn_le_put_f64(p + 40, s->w.mean);
    sn_le_put_f64(p + 48, s->w.m2);
    sn_le_put_f64(p + 56, s->w.min);
    sn_le_put_f64(p + 64, s->w.max);
    sn_le_put_u32(p + 72, (uint32_t)s->pos.lo);
    sn_le_put_u32(p + 76, s->pos.len);
    sn_le_put_u32(p + 80, (uint32_t)s->neg.lo);
    sn_le_put_u32(p + 84, s->neg.len);
    uint8_t *c = p + SER_HEADER;
    const uint32_t *pb = store_cbase(s, &s->pos), *nb = store_cbase(s, &s->neg);
    for (uint32_t k = 0; k < s->pos.len; k++, c += 4)
        sn_le_put_u32(c, pb[k]);
    for (uint32_t k = 0; k < s->neg.len; k++, c += 4)
        sn_le_put_u32(c, nb[k]);
    sn_le_put_u32(c, sn_crc32(0, p, need - SER_CRC));
    *len = need;
    return 0;
}

/* Whether a store [lo, lo + len) only uses bucket indices that some accepted sample (DBL_MIN <=
 * |x| <= SN_STATS_MAX_ABS) maps to under this alpha, with one bucket of slack at each end. */
static bool store_range_ok(double alpha, int32_t lo, uint32_t len)
{
    if (len == 0)
        return true;
    double inv = 1.0 / log1p(2.0 * alpha / (1.0 - alpha));
    int64_t min_i = (int64_t)floor(log(DBL_MIN) * inv) - 1;
    int64_t max_i = (int64_t)ceil(log(SN_STATS_MAX_ABS) * inv) + 1;
    int64_t hi = (int64_t)lo + len - 1;
    return lo >= min_i && hi <= max_i;
}

int sn_sketch_deserialize(sn_sketch **out, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    if (buf == NULL || len < SER_HEADER + SER_CRC)
        return -EBADMSG;
    if (sn_le_get_u32(p) != SER_MAGIC || sn_le_get_u16(p + 4) != SER_VERSION ||
        (sn_le_get_u16(p + 6) & ~FLAG_COLLAPSED) != 0)
        return -EBADMSG;
    double alpha = sn_le_get_f64(p + 8);
    uint32_t max_buckets = sn_le_get_u32(p + 16);
    uint32_t zero = sn_le_get_u32(p + 20);
    uint64_t count = sn_le_get_u64(p + 24);
    double sum = sn_le_get_f64(p + 32), mean = sn_le_get_f64(p + 40), m2 = sn_le_get_f64(p + 48);
    double min = sn_le_get_f64(p + 56), max = sn_le_get_f64(p + 64);
    int32_t pos_lo = (int32_t)sn_le_get_u32(p + 72), neg_lo = (int32_t)sn_le_get_u32(p + 80);
    uint32_t pos_len = sn_le_get_u32(p + 76), neg_len = sn_le_get_u32(p + 84);

    if (!alpha_ok(alpha) || sn_sketch_size(max_buckets) == 0)
        return -EBADMSG;
    if ((uint64_t)pos_len + neg_len > max_buckets)
        return -EBADMSG;
    if (len != SER_HEADER + 4u * ((size_t)pos_len + neg_len) + SER_CRC)
        return -EBADMSG;
    if (sn_crc32(0, p, len - SER_CRC) != sn_le_get_u32(p + len - SER_CRC))
        return -EBADMSG;
    if (count > SN_SKETCH_MAX_COUNT || zero > count)
        return -EBADMSG;
    if (!store_range_ok(alpha, pos_lo, pos_len) || !store_range_ok(alpha, neg_lo, neg_len))
        return -EBADMSG;
    if (count == 0) {
        if (sum != 0.0 || m2 != 0.0 || !isnan(mean) || !isnan(min) || !isnan(max))
            return -EBADMSG;
    } else if (!isfinite(sum) || !isfinite(mean) || !isfinite(m2) || m2 < 0.0 ||
               !sn_stats_sample_ok(min) || !sn_stats_sample_ok(max) || min > max) {
        return -EBADMSG;
    }
    uint64_t total = zero;
    const uint8_t *c = p + SER_HEADER;
    for (uint64_t k = 0; k < (uint64_t)pos_len + neg_len; k++)
        total += sn_le_get_u32(c + 4 * k);
    if (total != count)
        return -EBADMSG;

    sn_sketch *s;
    int rc = sn_sketch_create(&s, alpha, max_buckets);
    if (rc != 0)
        return rc;
    s->collapsed = (sn_le_get_u16(p + 6) & FLAG_COLLAPSED) ? 1 : 0;
    s->zero = zero;
    s->sum = sum;
    s->w.n = count;
    s->w.mean = mean;
    s->w.m2 = m2;
    s->w.min = min;
    s->w.max = max;
    s->pos.lo = pos_lo;
    s->pos.len = pos_len;
    s->neg.lo = neg_lo;
    s->neg.len = neg_len;
    uint32_t *pb = store_base(s, &s->pos), *nb = store_base(s, &s->neg);
    for (uint32_t k = 0; k < pos_len; k++, c += 4)
        pb[k] = sn_le_get_u32(c);
    for (uint32_t k = 0; k < neg_len; k++, c += 4)
        nb[k] = sn_le_get_u32(c);
    *out = s;
    return 0;
}
