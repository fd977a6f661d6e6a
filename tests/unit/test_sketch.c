/* Unit tests for shared/sketch.c: accuracy against exact quantiles, merging, the bucket cap, and
 * serialization (round trip and rejection of corrupt buffers). */
#include "sketch.h"

#include <check.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "stats_testutil.h"

#define N 20000

static const double grid[] = {0.0,   0.001, 0.01, 0.05, 0.1,  0.25,  0.333, 0.5,
                              0.667, 0.75,  0.9,  0.95, 0.99, 0.999, 1.0};
#define GRID (sizeof grid / sizeof grid[0])

/* The sketch's quantile q is within alpha of the sorted samples it interpolates between. */
static void check_quantile(const sn_sketch *s, const double *sorted, size_t n, double q,
                           double alpha, const char *what)
{
    double h = q * (double)(n - 1);
    size_t lo = (size_t)floor(h), hi = lo + 1 < n ? lo + 1 : lo;
    double exact = tu_quantile(sorted, n, q);
    double est = sn_sketch_quantile(s, q);
    double bound = alpha * fmax(fabs(sorted[lo]), fabs(sorted[hi]));
    if (!(fabs(est - exact) <= bound * (1 + 1e-9) + 1e-300))
        ck_abort_msg("%s q=%g: estimate %.17g exact %.17g bound %.3g", what, q, est, exact, bound);
}

START_TEST(relative_error_guarantee)
{
    static double v[N], sorted[N], scratch[N];
    const double alphas[] = {0.001, 0.01, 0.05};
    for (size_t ai = 0; ai < 3; ai++) {
        for (int dist = 0; dist < TU_DIST_COUNT; dist++) {
            sn_sketch *s;
            ck_assert_int_eq(sn_sketch_create(&s, alphas[ai], SN_SKETCH_MAX_BUCKETS), 0);
            tu_rng r = {.s = 31u + (uint64_t)dist};
            for (int i = 0; i < N; i++) {
                v[i] = tu_sample(&r, dist);
                TU_CHECK(sn_sketch_add(s, v[i]) == 0);
            }
            ck_assert(!sn_sketch_collapsed(s));
            tu_sorted(v, N, sorted);
            char what[64];
            snprintf(what, sizeof what, "%s alpha %g", tu_dist_names[dist], alphas[ai]);
            for (size_t g = 0; g < GRID; g++)
                check_quantile(s, sorted, N, grid[g], alphas[ai], what);

            sn_summary sum;
            sn_sketch_summary(s, &sum);
            double mean, var;
            tu_moments(v, N, &mean, &var);
            ck_assert_uint_eq(sum.n, N);
            ck_assert_uint_eq(sn_sketch_count(s), N);
            ck_assert(fabs(sum.mean - mean) <= 1e-9 * fmax(1.0, fabs(sorted[N - 1])));
            ck_assert(tu_close(sum.stddev, sqrt(var), 1e-9));
            ck_assert_double_eq(sum.min, sorted[0]);
            ck_assert_double_eq(sum.max, sorted[N - 1]);
            ck_assert_double_eq(sum.median, sn_sketch_quantile(s, 0.5));
            ck_assert_double_eq(sum.p99, sn_sketch_quantile(s, 0.99));
            /* MAD is approximate: deviations between bucket representatives. */
            double mad = tu_mad(sorted, N, scratch);
            double tol = 2.0 * alphas[ai] * (fabs(sum.median) + mad) + 1e-12;
            ck_assert_msg(fabs(sum.mad - mad) <= tol, "%s: mad %.17g exact %.17g", what, sum.mad,
                          mad);
            sn_sketch_destroy(s);
        }
    }
}
END_TEST

START_TEST(small_counts_and_zero)
{
    sn_sketch *s;
    ck_assert_int_eq(sn_sketch_create(&s, 0.01, 64), 0);
    ck_assert(isnan(sn_sketch_quantile(s, 0.5)));
    sn_summary sum;
    sn_sketch_summary(s, &sum);
    ck_assert_uint_eq(sum.n, 0);
    ck_assert(isnan(sum.median) && isnan(sum.mad) && isnan(sum.mean));

    ck_assert_int_eq(sn_sketch_add(s, 7.0), 0);
    ck_assert_double_eq(sn_sketch_quantile(s, 0.3), 7.0);
    sn_sketch_summary(s, &sum);
    ck_assert_double_eq(sum.mad, 0.0);
    ck_assert_double_eq(sum.stddev, 0.0);

    /* Zero and subnormals share the zero count; -0.0 too. */
    sn_sketch_clear(s);
    sn_sketch_add(s, 0.0);
    sn_sketch_add(s, -0.0);
    sn_sketch_add(s, DBL_MIN / 4);
    sn_sketch_add(s, 1.0);
    ck_assert_uint_eq(sn_sketch_buckets_used(s), 1);
    ck_assert_double_eq(sn_sketch_quantile(s, 0.0), 0.0);
    ck_assert_double_eq(sn_sketch_quantile(s, 0.5), 0.0);
    ck_assert_double_eq(sn_sketch_quantile(s, 1.0), 1.0);
    ck_assert(isnan(sn_sketch_quantile(s, 1.5)));
    ck_assert(isnan(sn_sketch_quantile(s, -0.5)));
    ck_assert(isnan(sn_sketch_quantile(s, NAN)));

    /* The extremes of the accepted range map to valid buckets; beyond it is refused. */
    sn_sketch_clear(s);
    ck_assert_int_eq(sn_sketch_add(s, SN_STATS_MAX_ABS), 0);
    ck_assert_int_eq(sn_sketch_add(s, -SN_STATS_MAX_ABS), 0);
    ck_assert_int_eq(sn_sketch_add(s, DBL_MIN), 0);
    ck_assert_int_eq(sn_sketch_add(s, nextafter(SN_STATS_MAX_ABS, INFINITY)), -EINVAL);
    ck_assert_int_eq(sn_sketch_add(s, -DBL_MAX), -EINVAL);
    ck_assert_uint_eq(sn_sketch_count(s), 3);
    ck_assert_double_eq(sn_sketch_quantile(s, 1.0), SN_STATS_MAX_ABS);
    ck_assert_double_eq(sn_sketch_quantile(s, 0.0), -SN_STATS_MAX_ABS);
    ck_assert(isfinite(sn_sketch_quantile(s, 0.5)));
    sn_summary big;
    sn_sketch_summary(s, &big);
    ck_assert(isfinite(big.mean) && isfinite(big.stddev) && isfinite(big.mad));
    sn_sketch_destroy(s);
}
END_TEST

START_TEST(refuses_bad_input)
{
    sn_sketch *s = NULL;
    ck_assert_int_eq(sn_sketch_create(&s, 0.0, 64), -EINVAL);
    ck_assert_int_eq(sn_sketch_create(&s, 0.6, 64), -EINVAL);
    ck_assert_int_eq(sn_sketch_create(&s, NAN, 64), -EINVAL);
    ck_assert_int_eq(sn_sketch_create(&s, 0.01, 0), -EINVAL);
    ck_assert_int_eq(sn_sketch_create(&s, 0.01, SN_SKETCH_MIN_BUCKETS - 1), -EINVAL);
    ck_assert_int_eq(sn_sketch_create(&s, 0.01, SN_SKETCH_MAX_BUCKETS + 1), -EINVAL);
    ck_assert_int_eq(sn_sketch_create(&s, 0.01, UINT32_MAX), -EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_uint_eq(sn_sketch_size(UINT32_MAX), 0);

    ck_assert_int_eq(sn_sketch_create(&s, SN_SKETCH_DEFAULT_ALPHA, SN_SKETCH_DEFAULT_BUCKETS), 0);
    ck_assert_int_eq(sn_sketch_add(s, NAN), -EINVAL);
    ck_assert_int_eq(sn_sketch_add(s, INFINITY), -EINVAL);
    ck_assert_int_eq(sn_sketch_add(s, -INFINITY), -EINVAL);
    ck_assert_uint_eq(sn_sketch_count(s), 0);
    ck_assert_uint_eq(sn_sketch_buckets_used(s), 0);

    sn_sketch *other;
    ck_assert_int_eq(sn_sketch_create(&other, 0.02, 64), 0);
    sn_sketch_add(other, 1.0);
    ck_assert_int_eq(sn_sketch_merge(s, other), -EINVAL);
    ck_assert_uint_eq(sn_sketch_count(s), 0);
    sn_sketch_destroy(other);
    sn_sketch_destroy(s);
    sn_sketch_destroy(NULL);
}
END_TEST

/* The summary without the MAD has every other field bit for bit the same as the full one, on
 * positive, negative, mixed and zero samples. */
START_TEST(summary_without_mad_equals_full_summary)
{
    tu_rng r = {.s = 77};
    const double shift[] = {0.0, -3000.0, -1000.0, 0.0};
    for (int c = 0; c < 4; c++) {
        sn_sketch *s = NULL;
        ck_assert_int_eq(sn_sketch_create(&s, 0.02, 160), 0);
        for (int i = 0; i < 5000; i++) {
            double x = c == 3 && i % 7 == 0 ? 0.0 : tu_sample(&r, TU_LOGNORMAL) * 1000.0;
            ck_assert_int_eq(sn_sketch_add(s, x + shift[c]), 0);
            if (i % 250 != 0 && i != 4999)
                continue;
            sn_summary full, part;
            sn_sketch_summary(s, &full);
            sn_sketch_summary_mad(s, &part, false);
            ck_assert(isnan(part.mad));
            ck_assert(!isnan(full.mad));
            part.mad = full.mad;
            ck_assert_mem_eq(&part, &full, sizeof full);
            sn_sketch_summary_mad(s, &part, true);
            ck_assert_mem_eq(&part, &full, sizeof full);
        }
        sn_sketch_destroy(s);
    }
}
END_TEST

START_TEST(merge_equals_sketch_of_union)
{
    for (int dist = 0; dist < TU_DIST_COUNT; dist++) {
        sn_sketch *a, *b, *all;
        ck_assert_int_eq(sn_sketch_create(&a, 0.01, 2048), 0);
        ck_assert_int_eq(sn_sketch_create(&b, 0.01, 2048), 0);
        ck_assert_int_eq(sn_sketch_create(&all, 0.01, 2048), 0);
        tu_rng r = {.s = 500u + (uint64_t)dist};
        for (int i = 0; i < N; i++) {
            /* b gets a shifted copy of the distribution so the ranges differ. */
            bool to_b = tu_next(&r) % 3 == 0;
            double x = tu_sample(&r, dist) * (to_b ? 3.0 : 1.0);
            sn_sketch_add(to_b ? b : a, x);
            sn_sketch_add(all, x);
        }
        ck_assert_int_eq(sn_sketch_merge(a, b), 0);
        ck_assert_uint_eq(sn_sketch_count(a), N);
        for (size_t g = 0; g < GRID; g++)
            ck_assert_double_eq(sn_sketch_quantile(a, grid[g]), sn_sketch_quantile(all, grid[g]));
        sn_summary sa, sall;
        sn_sketch_summary(a, &sa);
        sn_sketch_summary(all, &sall);
        ck_assert_double_eq(sa.mad, sall.mad);
        ck_assert(tu_close(sa.mean, sall.mean, 1e-12));
        ck_assert(tu_close(sa.stddev, sall.stddev, 1e-9));

        /* Merging into an empty sketch copies; merging an empty one changes nothing. */
        sn_sketch *e;
        ck_assert_int_eq(sn_sketch_create(&e, 0.01, 2048), 0);
        ck_assert_int_eq(sn_sketch_merge(e, all), 0);
        ck_assert_double_eq(sn_sketch_quantile(e, 0.9), sn_sketch_quantile(all, 0.9));
        sn_sketch_clear(b);
        ck_assert_int_eq(sn_sketch_merge(e, b), 0);
        ck_assert_uint_eq(sn_sketch_count(e), N);
        /* Self-merge doubles every count: quantiles stay put. */
        ck_assert_int_eq(sn_sketch_merge(e, e), 0);
        ck_assert_uint_eq(sn_sketch_count(e), 2 * N);
        ck_assert_double_eq(sn_sketch_quantile(e, 0.5), sn_sketch_quantile(all, 0.5));
        sn_sketch_destroy(e);
        sn_sketch_destroy(a);
        sn_sketch_destroy(b);
        sn_sketch_destroy(all);
    }
}
END_TEST

START_TEST(bucket_cap_respected)
{
    static double v[N], sorted[N];
    /* Heavy tail over ~600 buckets into a 256-bucket sketch: the lowest collapse, the high
     * quantiles keep the guarantee. */
    sn_sketch *s;
    ck_assert_int_eq(sn_sketch_create(&s, 0.01, 256), 0);
    tu_rng r = {.s = 3};
    for (int i = 0; i < N; i++) {
        v[i] = tu_sample(&r, TU_LOGNORMAL);
        TU_CHECK(sn_sketch_add(s, v[i]) == 0);
        TU_CHECK(sn_sketch_buckets_used(s) <= 256);
    }
    ck_assert(sn_sketch_collapsed(s));
    tu_sorted(v, N, sorted);
    check_quantile(s, sorted, N, 0.95, 0.01, "capped p95");
    check_quantile(s, sorted, N, 0.99, 0.01, "capped p99");
    ck_assert_double_eq(sn_sketch_quantile(s, 0.0), sorted[0]);
    ck_assert_double_eq(sn_sketch_quantile(s, 1.0), sorted[N - 1]);
    sn_sketch_destroy(s);

    /* Values of both signs over the whole double range, in random order, into the smallest
     * sketch: the cap holds, every sample is counted, and the result stays ordered. */
    ck_assert_int_eq(sn_sketch_create(&s, 0.01, SN_SKETCH_MIN_BUCKETS), 0);
    sn_sketch *m;
    ck_assert_int_eq(sn_sketch_create(&m, 0.01, SN_SKETCH_MIN_BUCKETS), 0);
    for (int i = 0; i < N; i++) {
        double mag = pow(10.0, (double)(tu_next(&r) % 400) - 300.0);
        double x = tu_next(&r) % 2 ? mag : -mag;
        TU_CHECK(sn_sketch_add(i % 2 ? s : m, x) == 0);
        TU_CHECK(sn_sketch_buckets_used(s) <= SN_SKETCH_MIN_BUCKETS);
    }
    ck_assert_int_eq(sn_sketch_merge(s, m), 0);
    ck_assert_uint_le(sn_sketch_buckets_used(s), SN_SKETCH_MIN_BUCKETS);
    ck_assert_uint_eq(sn_sketch_count(s), N);
    double prev = -INFINITY;
    for (size_t g = 0; g < GRID; g++) {
        double q = sn_sketch_quantile(s, grid[g]);
        ck_assert(isfinite(q) && q >= prev);
        prev = q;
    }
    /* The invariants survive: a serialized copy passes the full validation. */
    static uint8_t buf[SN_SKETCH_MAX_SERIALIZED];
    size_t len;
    sn_sketch *copy;
    ck_assert_int_eq(sn_sketch_serialize(s, buf, sizeof buf, &len), 0);
    ck_assert_int_eq(sn_sketch_deserialize(&copy, buf, len), 0);
    sn_sketch_destroy(copy);
    sn_sketch_destroy(m);

    /* Negatives take every bucket first; positives arriving later get room back (the larger
     * store gives up to half) and stay accurate. */
    sn_sketch_clear(s);
    for (int i = 0; i < 1000; i++)
        sn_sketch_add(s, -pow(10.0, (double)(i % 200) - 100.0));
    ck_assert_uint_eq(sn_sketch_buckets_used(s), SN_SKETCH_MIN_BUCKETS);
    for (int i = 0; i < 1000; i++)
        sn_sketch_add(s, i % 2 ? 5.0 : 5.2); /* two buckets apart */
    ck_assert_uint_le(sn_sketch_buckets_used(s), SN_SKETCH_MIN_BUCKETS);
    ck_assert_double_eq_tol(sn_sketch_quantile(s, 0.6), 5.0, 0.05);
    ck_assert_double_eq_tol(sn_sketch_quantile(s, 0.9), 5.2, 0.052);
    ck_assert_double_eq(sn_sketch_quantile(s, 1.0), 5.2);
    ck_assert_int_eq(sn_sketch_serialize(s, buf, sizeof buf, &len), 0);
    ck_assert_int_eq(sn_sketch_deserialize(&copy, buf, len), 0);
    sn_sketch_destroy(copy);
    sn_sketch_destroy(s);
}
END_TEST

/* ---- serialization ---- */

static uint32_t crc32_ref(const uint8_t *p, size_t n)
{
    uint32_t crc = ~0u;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void reseal(uint8_t *buf, size_t len)
{
    put32(buf + len - 4, crc32_ref(buf, len - 4));
}

static sn_sketch *sample_sketch(int dist, int n, uint32_t buckets)
{
    sn_sketch *s;
    ck_assert_int_eq(sn_sketch_create(&s, 0.01, buckets), 0);
    tu_rng r = {.s = 99u + (uint64_t)dist};
    for (int i = 0; i < n; i++)
        sn_sketch_add(s, tu_sample(&r, dist));
    return s;
}

START_TEST(serialize_round_trip)
{
    static uint8_t buf[SN_SKETCH_MAX_SERIALIZED], buf2[SN_SKETCH_MAX_SERIALIZED];
    for (int dist = -1; dist < TU_DIST_COUNT; dist++) {
        /* dist -1: an empty sketch; lognormal in 64 buckets: a collapsed one. */
        sn_sketch *s = sample_sketch(dist < 0 ? 0 : dist, dist < 0 ? 0 : 5000,
                                     dist == TU_LOGNORMAL ? 64 : 1024);
        size_t len = 0, len2 = 0;
        ck_assert_int_eq(sn_sketch_serialize(s, buf, sizeof buf, &len), 0);
        ck_assert_uint_eq(len, sn_sketch_serialized_size(s));
        ck_assert_uint_le(len, SN_SKETCH_MAX_SERIALIZED);
        ck_assert_int_eq(sn_sketch_serialize(s, buf2, len - 1, &len2), -ENOSPC);
        sn_sketch *t = NULL;
        ck_assert_int_eq(sn_sketch_deserialize(&t, buf, len), 0);
        ck_assert_int_eq(sn_sketch_serialize(t, buf2, sizeof buf2, &len2), 0);
        ck_assert_uint_eq(len2, len);
        ck_assert_mem_eq(buf, buf2, len);
        ck_assert_uint_eq(sn_sketch_count(t), sn_sketch_count(s));
        ck_assert(sn_sketch_collapsed(t) == sn_sketch_collapsed(s));
        ck_assert_uint_eq(sn_sketch_bytes(t), sn_sketch_bytes(s));
        for (size_t g = 0; g < GRID; g++) {
            double a = sn_sketch_quantile(s, grid[g]), b = sn_sketch_quantile(t, grid[g]);
            ck_assert(a == b || (isnan(a) && isnan(b)));
        }
        /* The copy keeps working. */
        ck_assert_int_eq(sn_sketch_add(t, 123.0), 0);
        ck_assert_int_eq(sn_sketch_merge(t, s), 0);
        sn_sketch_destroy(t);
        sn_sketch_destroy(s);
    }
}
END_TEST

START_TEST(deserialize_rejects_corruption)
{
    static uint8_t buf[SN_SKETCH_MAX_SERIALIZED + 8], bad[SN_SKETCH_MAX_SERIALIZED + 8];
    sn_sketch *s = sample_sketch(TU_NEGATIVE, 3000, 512);
    size_t len;
    ck_assert_int_eq(sn_sketch_serialize(s, buf, sizeof buf, &len), 0);
    sn_sketch *t = (sn_sketch *)0x1;

    /* Every truncation, and one byte too many. */
    for (size_t l = 0; l < len; l++)
        TU_CHECK(sn_sketch_deserialize(&t, buf, l) == -EBADMSG);
    ck_assert_int_eq(sn_sketch_deserialize(&t, buf, len + 1), -EBADMSG);
    ck_assert_int_eq(sn_sketch_deserialize(&t, NULL, len), -EBADMSG);

    /* Every single-byte corruption, and a flip of every bit in the header. */
    for (size_t i = 0; i < len; i++) {
        memcpy(bad, buf, len);
        bad[i] ^= 0xA5;
        TU_CHECK(sn_sketch_deserialize(&t, bad, len) == -EBADMSG);
    }
    for (size_t bit = 0; bit < 88 * 8; bit++) {
        memcpy(bad, buf, len);
        bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        TU_CHECK(sn_sketch_deserialize(&t, bad, len) == -EBADMSG);
    }
    ck_assert_ptr_eq(t, (sn_sketch *)0x1);

    /* Corrupt fields behind a valid checksum: validation, not only the CRC, must catch them. */
    struct {
        size_t off;
        uint32_t value;
    } fields[] = {
        {0, 0x12345678},  /* magic */
        {4, 2},           /* version */
        {6, 0x8000},      /* unknown flag */
        {16, 0},          /* max_buckets 0 */
        {16, 0xFFFFFFFF}, /* max_buckets huge */
        {16, 8},          /* max_buckets below the buckets in use */
        {20, 0xFFFFFFFF}, /* zero count > count */
        {24, 0},          /* count does not match the buckets */
        {72, 0x7FFFFFF0}, /* positive range beyond the largest double */
        {80, 0x80000000}, /* negative range below the smallest double */
        {76, 0xFFFFFFFF}, /* positive length huge */
    };
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
        memcpy(bad, buf, len);
        if (fields[f].off == 4 || fields[f].off == 6) {
            bad[fields[f].off] = (uint8_t)fields[f].value;
            bad[fields[f].off + 1] = (uint8_t)(fields[f].value >> 8);
        } else {
            put32(bad + fields[f].off, fields[f].value);
        }
        reseal(bad, len);
        ck_assert_msg(sn_sketch_deserialize(&t, bad, len) == -EBADMSG, "field at %zu",
                      fields[f].off);
    }
    /* Non-finite or inconsistent doubles. */
    const size_t dbl_offs[] = {8, 32, 40, 48, 56, 64};
    const double dbl_vals[] = {NAN, INFINITY, -1.0};
    for (size_t o = 0; o < 6; o++) {
        for (size_t k = 0; k < 3; k++) {
            if (dbl_offs[o] != 8 && dbl_offs[o] != 48 && k == 2)
                continue; /* -1 is a fine sum, mean, min or max */
            memcpy(bad, buf, len);
            uint64_t u;
            memcpy(&u, &dbl_vals[k], sizeof u);
            for (int i = 0; i < 8; i++)
                bad[dbl_offs[o] + i] = (uint8_t)(u >> (8 * i));
            reseal(bad, len);
            ck_assert_msg(sn_sketch_deserialize(&t, bad, len) == -EBADMSG, "double at %zu = %g",
                          dbl_offs[o], dbl_vals[k]);
        }
    }
    /* A bucket count that no longer adds up to the total. */
    memcpy(bad, buf, len);
    bad[88] ^= 1;
    reseal(bad, len);
    ck_assert_int_eq(sn_sketch_deserialize(&t, bad, len), -EBADMSG);
    /* min > max */
    memcpy(bad, buf, len);
    memcpy(bad + 56, buf + 64, 8);
    memcpy(bad + 64, buf + 56, 8);
    reseal(bad, len);
    ck_assert_int_eq(sn_sketch_deserialize(&t, bad, len), -EBADMSG);

    /* A sketch claiming the maximum count: further samples and merges report overflow. */
    sn_sketch *one;
    ck_assert_int_eq(sn_sketch_create(&one, 0.01, 16), 0);
    sn_sketch_add(one, 5.0);
    ck_assert_int_eq(sn_sketch_serialize(one, bad, sizeof bad, &len), 0);
    put32(bad + 24, UINT32_MAX); /* count */
    put32(bad + 88, UINT32_MAX); /* the one bucket */
    reseal(bad, len);
    sn_sketch *full;
    ck_assert_int_eq(sn_sketch_deserialize(&full, bad, len), 0);
    ck_assert_int_eq(sn_sketch_add(full, 5.0), -EOVERFLOW);
    ck_assert_int_eq(sn_sketch_merge(full, one), -EOVERFLOW);
    ck_assert_int_eq(sn_sketch_merge(one, full), -EOVERFLOW);
    ck_assert_uint_eq(sn_sketch_count(full), UINT32_MAX);
    ck_assert_uint_eq(sn_sketch_count(one), 1);
    sn_sketch_destroy(full);
    sn_sketch_destroy(one);
    sn_sketch_destroy(s);
}
END_TEST

/* Random garbage, and random mutations of a valid buffer, never crash (ASan build). */
START_TEST(deserialize_survives_garbage)
{
    static uint8_t buf[4096], bad[4096];
    sn_sketch *s = sample_sketch(TU_NORMAL, 1000, 256);
    size_t len;
    ck_assert_int_eq(sn_sketch_serialize(s, buf, sizeof buf, &len), 0);
    tu_rng r = {.s = 2024};
    for (int iter = 0; iter < 20000; iter++) {
        size_t l = iter % 2 ? len : (size_t)(tu_next(&r) % sizeof bad);
        memcpy(bad, buf, len);
        int flips = 1 + (int)(tu_next(&r) % 4);
        for (int k = 0; k < flips; k++)
            bad[tu_next(&r) % (l ? l : 1)] = (uint8_t)tu_next(&r);
        if (iter % 3 == 0)
            reseal(bad, l < 4 ? 4 : l);
        sn_sketch *t = NULL;
        if (sn_sketch_deserialize(&t, bad, l) == 0) {
            /* Only possible when the mutation kept every invariant; then it must be usable. */
            (void)sn_sketch_quantile(t, 0.5);
            sn_summary sum;
            sn_sketch_summary(t, &sum);
            sn_sketch_add(t, 1.0);
            sn_sketch_destroy(t);
        }
    }
    sn_sketch_destroy(s);
}
END_TEST

/* sn_sketch_add_below (the baseline's path) leaves every byte of the sketch as sn_sketch_add
 * does, and refuses exactly when the sketch holds limit samples. */
START_TEST(add_below_equals_add)
{
    static uint8_t buf[SN_SKETCH_MAX_SERIALIZED], buf2[SN_SKETCH_MAX_SERIALIZED];
    static const double odd[] = {0.0,    -0.0,   1e-310, -1e-310, DBL_MIN, -3.5,
                                 4095.0, 4096.0, 0.25,   1e100,   -1e100,  7.0};
    for (int dist = 0; dist < TU_DIST_COUNT; dist++) {
        sn_sketch *a, *b;
        uint32_t buckets = dist == TU_LOGNORMAL ? 64 : 1024; /* lognormal: collapses */
        ck_assert_int_eq(sn_sketch_create(&a, 0.01, buckets), 0);
        ck_assert_int_eq(sn_sketch_create(&b, 0.01, buckets), 0);
        tu_rng r = {.s = 7u + (uint64_t)dist};
        for (int i = 0; i < 3000; i++) {
            double x =
                i % 50 == 0 ? odd[(i / 50) % (sizeof odd / sizeof odd[0])] : tu_sample(&r, dist);
            ck_assert_int_eq(sn_sketch_add(a, x), 0);
            ck_assert_int_eq(sn_sketch_add_below(b, x, UINT64_MAX), 0);
        }
        size_t len = 0, len2 = 0;
        ck_assert_int_eq(sn_sketch_serialize(a, buf, sizeof buf, &len), 0);
        ck_assert_int_eq(sn_sketch_serialize(b, buf2, sizeof buf2, &len2), 0);
        ck_assert_uint_eq(len, len2);
        ck_assert_mem_eq(buf, buf2, len);
        sn_summary sa, sb;
        sn_sketch_summary(a, &sa);
        sn_sketch_summary(b, &sb);
        ck_assert_mem_eq(&sa, &sb, sizeof sa);

        /* full at limit: refused, nothing changes */
        ck_assert_int_eq(sn_sketch_add_below(b, 5.0, 3000), 1);
        ck_assert_int_eq(sn_sketch_add_below(b, 5.0, 0), 1);
        ck_assert_int_eq(sn_sketch_serialize(b, buf2, sizeof buf2, &len2), 0);
        ck_assert_uint_eq(len, len2);
        ck_assert_mem_eq(buf, buf2, len);
        ck_assert_uint_eq(sn_sketch_count(b), 3000);
        ck_assert_int_eq(sn_sketch_add_below(b, 5.0, 3001), 0);
        ck_assert_uint_eq(sn_sketch_count(b), 3001);
        ck_assert_int_eq(sn_sketch_add_below(b, 5.0, 3001), 1);
        sn_sketch_destroy(a);
        sn_sketch_destroy(b);
    }
}
END_TEST

/* The bucket index is ceil(log(x) / ln(gamma)) exactly, above and below 1 and at whole numbers:
 * two values share a bucket (one bucket spanned) exactly when their ceilings, computed here
 * with libm's ceil from the same factors, are equal. Values step through a few ulps around
 * bucket boundaries gamma^k, where a wrong rounding would show. */
START_TEST(bucket_index_is_ceil)
{
    static const double alphas[] = {SN_SKETCH_MIN_ALPHA, 0.01, 0.05, SN_SKETCH_MAX_ALPHA};
    for (size_t a = 0; a < sizeof alphas / sizeof alphas[0]; a++) {
        double lg = log1p(2.0 * alphas[a] / (1.0 - alphas[a])), inv = 1.0 / lg;
        int checked = 0;
        for (int k = -300; k <= 300; k += 7) {
            double edge = exp((double)k * lg);
            if (!(edge >= DBL_MIN && edge <= SN_STATS_MAX_ABS))
                continue;
            double x = edge;
            for (int u = 0; u < 3; u++)
                x = nextafter(x, 0.0);
            for (int u = 0; u < 7; u++, x = nextafter(x, INFINITY)) {
                double ys[3] = {edge, floor(x) >= 1.0 ? floor(x) : x * 0.999, x * 1.0001};
                for (int j = 0; j < 3; j++) {
                    sn_sketch *s;
                    ck_assert_int_eq(sn_sketch_create(&s, alphas[a], 1024), 0);
                    ck_assert_int_eq(sn_sketch_add(s, x), 0);
                    ck_assert_int_eq(sn_sketch_add(s, ys[j]), 0);
                    double cx = ceil(log(x) * inv), cy = ceil(log(ys[j]) * inv);
                    uint32_t want = (uint32_t)fabs(cx - cy) + 1;
                    ck_assert_uint_eq(sn_sketch_buckets_used(s), want);
                    sn_sketch_destroy(s);
                    checked++;
                }
            }
        }
        ck_assert_int_gt(checked, 100);
    }
}
END_TEST

static Suite *sketch_suite(void)
{
    Suite *s = suite_create("sketch");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, relative_error_guarantee);
    tcase_add_test(tc, small_counts_and_zero);
    tcase_add_test(tc, refuses_bad_input);
    tcase_add_test(tc, summary_without_mad_equals_full_summary);
    tcase_add_test(tc, merge_equals_sketch_of_union);
    tcase_add_test(tc, bucket_cap_respected);
    tcase_add_test(tc, serialize_round_trip);
    tcase_add_test(tc, deserialize_rejects_corruption);
    tcase_add_test(tc, deserialize_survives_garbage);
    tcase_add_test(tc, add_below_equals_add);
    tcase_add_test(tc, bucket_index_is_ceil);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sketch_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
