/* Unit tests for shared/baseline.c: keys, observe/summary in both modes, the memory budget with
 * LRU eviction, idle expiry, iteration, and the memory per key of compact mode. */
#include "baseline.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#include "sketch.h"
#include "stats_testutil.h"
#include "window.h"

/* Allocation failure injection: the test binary links with -Wl,--wrap=malloc,--wrap=calloc, so
 * the modules' allocations come here -- and Check's own (it is linked statically), so no ck_*
 * call may run while failures are armed. fail_after < 0: never fail; otherwise the allocation after
 * fail_after successful ones fails, and so do all later ones. */
void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
static long fail_after = -1;

void *__wrap_malloc(size_t size)
{
    if (fail_after == 0)
        return NULL;
    if (fail_after > 0)
        fail_after--;
    return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (fail_after == 0)
        return NULL;
    if (fail_after > 0)
        fail_after--;
    return __real_calloc(n, size);
}

static sn_baseline *make(sn_baseline_mode mode, uint32_t window, size_t budget)
{
    sn_baseline_config cfg;
    sn_baseline_config_init(&cfg);
    cfg.mode = mode;
    cfg.window = window;
    cfg.memory_budget = budget;
    sn_baseline *b = NULL;
    ck_assert_int_eq(sn_baseline_create(&b, &cfg), 0);
    return b;
}

START_TEST(config_validation)
{
    sn_baseline_config cfg;
    sn_baseline_config_init(&cfg);
    ck_assert_int_eq(cfg.mode, SN_BASELINE_EXACT);
    ck_assert_uint_eq(cfg.window, 1000);
    sn_baseline *b = NULL;
#define BAD(stmt)                                                                                  \
    do {                                                                                           \
        sn_baseline_config_init(&cfg);                                                             \
        stmt;                                                                                      \
        ck_assert_int_eq(sn_baseline_create(&b, &cfg), -EINVAL);                                   \
    } while (0)
    BAD(cfg.window = 0);
    BAD(cfg.window = SN_WINDOW_MAX_CAPACITY + 1);
    BAD(cfg.window = UINT32_MAX);
    BAD((cfg.mode = SN_BASELINE_COMPACT, cfg.window = 1));
    BAD((cfg.mode = SN_BASELINE_COMPACT, cfg.sketch_buckets = 0));
    BAD((cfg.mode = SN_BASELINE_COMPACT, cfg.sketch_buckets = UINT32_MAX));
    BAD((cfg.mode = SN_BASELINE_COMPACT, cfg.sketch_alpha = 0.0));
    BAD((cfg.mode = SN_BASELINE_COMPACT, cfg.sketch_alpha = NAN));
    BAD(cfg.ewma_alpha = 0.0);
    BAD(cfg.ewma_alpha = 2.0);
    BAD(cfg.mode = (sn_baseline_mode)7);
    BAD(cfg.memory_budget = 0);
    BAD(cfg.memory_budget = 10000); /* less than one exact entry of 1000 samples */
#undef BAD
    ck_assert_ptr_null(b);
    /* An absurd budget is fine: the index is capped, nothing else is allocated up front. */
    sn_baseline_config_init(&cfg);
    cfg.memory_budget = SIZE_MAX;
    ck_assert_int_eq(sn_baseline_create(&b, &cfg), 0);
    sn_baseline_destroy(b);
    sn_baseline_destroy(NULL);
}
END_TEST

START_TEST(keys_and_lookup)
{
    sn_baseline *b = make(SN_BASELINE_EXACT, 10, 16 << 20);
    sn_baseline_entry *e1, *e2, *e3, *e;
    ck_assert_int_eq(sn_baseline_get(b, "chat", "gpt-4o", SN_METRIC_LATENCY_MS, 5, &e1), 0);
    ck_assert_int_eq(sn_baseline_get(b, "chat", "gpt-4o", SN_METRIC_COST_USD, 5, &e2), 0);
    ck_assert_int_eq(sn_baseline_get(b, "chat", "", SN_METRIC_LATENCY_MS, 5, &e3), 0);
    ck_assert_ptr_ne(e1, e2);
    ck_assert_ptr_ne(e1, e3);
    ck_assert_int_eq(sn_baseline_get(b, "chat", "gpt-4o", SN_METRIC_LATENCY_MS, 9, &e), 0);
    ck_assert_ptr_eq(e, e1);
    ck_assert_ptr_eq(sn_baseline_find(b, "chat", "gpt-4o", SN_METRIC_COST_USD), e2);
    ck_assert_ptr_null(sn_baseline_find(b, "chat", "gpt-4", SN_METRIC_COST_USD));
    ck_assert_ptr_null(sn_baseline_find(b, "cha", "tgpt-4o", SN_METRIC_COST_USD));
    ck_assert_str_eq(sn_baseline_entry_service(e1), "chat");
    ck_assert_str_eq(sn_baseline_entry_model(e1), "gpt-4o");
    ck_assert_str_eq(sn_baseline_entry_model(e3), "");
    ck_assert_int_eq(sn_baseline_entry_metric(e2), SN_METRIC_COST_USD);
    ck_assert_int_eq(sn_baseline_entry_last_seen(e1), 5);
    ck_assert_uint_eq(sn_baseline_entry_seen(e1), 0);

    /* Bad keys. */
    char longname[SN_NAME_MAX + 1];
    memset(longname, 'x', sizeof longname);
    longname[SN_NAME_MAX - 1] = '\0'; /* 127 characters: the longest allowed */
    ck_assert_int_eq(sn_baseline_get(b, longname, longname, SN_METRIC_TTFT_MS, 1, &e), 0);
    ck_assert_ptr_eq(sn_baseline_find(b, longname, longname, SN_METRIC_TTFT_MS), e);
    longname[SN_NAME_MAX - 1] = 'x';
    longname[SN_NAME_MAX] = '\0'; /* 128 characters */
    e = NULL;
    ck_assert_int_eq(sn_baseline_get(b, longname, "m", SN_METRIC_TTFT_MS, 1, &e), -ENAMETOOLONG);
    ck_assert_int_eq(sn_baseline_get(b, "s", longname, SN_METRIC_TTFT_MS, 1, &e), -ENAMETOOLONG);
    ck_assert_int_eq(sn_baseline_get(b, "", "m", SN_METRIC_TTFT_MS, 1, &e), -EINVAL);
    ck_assert_int_eq(sn_baseline_get(b, NULL, "m", SN_METRIC_TTFT_MS, 1, &e), -EINVAL);
    ck_assert_int_eq(sn_baseline_get(b, "s", NULL, SN_METRIC_TTFT_MS, 1, &e), -EINVAL);
    ck_assert_int_eq(sn_baseline_get(b, "s", "m", SN_METRIC_COUNT, 1, &e), -EINVAL);
    ck_assert_int_eq(sn_baseline_get(b, "s", "m", (sn_metric)-1, 1, &e), -EINVAL);
    ck_assert_ptr_null(e);
    ck_assert_ptr_null(sn_baseline_find(b, NULL, "m", SN_METRIC_TTFT_MS));
    ck_assert_ptr_null(sn_baseline_find(b, longname, "m", SN_METRIC_TTFT_MS));

    sn_baseline_stats st;
    sn_baseline_get_stats(b, &st);
    ck_assert_uint_eq(st.keys, 4);
    sn_baseline_remove(b, e2);
    ck_assert_ptr_null(sn_baseline_find(b, "chat", "gpt-4o", SN_METRIC_COST_USD));
    sn_baseline_get_stats(b, &st);
    ck_assert_uint_eq(st.keys, 3);
    ck_assert_uint_eq(st.evicted + st.expired, 0);

    /* Many keys share the fixed index: all are found again. */
    char svc[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(svc, sizeof svc, "svc-%d", i);
        ck_assert_int_eq(sn_baseline_get(b, svc, "m", (sn_metric)(i % SN_METRIC_COUNT), 1, &e), 0);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(svc, sizeof svc, "svc-%d", i);
        e = sn_baseline_find(b, svc, "m", (sn_metric)(i % SN_METRIC_COUNT));
        ck_assert_ptr_nonnull(e);
        ck_assert_str_eq(sn_baseline_entry_service(e), svc);
    }
    sn_baseline_destroy(b);
}
END_TEST

START_TEST(exact_mode_statistics)
{
    enum { W = 200, TOTAL = 1500 };
    static double v[TOTAL], sorted[W], scratch[W];
    sn_baseline *b = make(SN_BASELINE_EXACT, W, 1 << 20);
    sn_baseline_entry *e;
    ck_assert_int_eq(sn_baseline_get(b, "rag", "claude", SN_METRIC_LATENCY_MS, 0, &e), 0);
    sn_summary s;
    sn_baseline_summary(b, e, &s);
    ck_assert_uint_eq(s.n, 0);
    ck_assert(isnan(s.median));
    tu_rng r = {.s = 17};
    sn_welford ref;
    sn_welford_init(&ref);
    for (int i = 0; i < TOTAL; i++) {
        v[i] = tu_sample(&r, TU_LOGNORMAL);
        ck_assert_int_eq(sn_baseline_observe(b, e, v[i], 1000 + i), 0);
        sn_welford_add(&ref, v[i]);
    }
    ck_assert_int_eq(sn_baseline_observe(b, e, NAN, 999999), -EINVAL);
    ck_assert_int_eq(sn_baseline_observe(b, e, -INFINITY, 999999), -EINVAL);
    ck_assert_int_eq(sn_baseline_observe(b, e, -1e101, 999999), -EINVAL);
    ck_assert_uint_eq(sn_baseline_entry_seen(e), TOTAL);
    ck_assert_int_eq(sn_baseline_entry_last_seen(e), 1000 + TOTAL - 1);
    /* Time going backwards does not move last seen back. */
    ck_assert_int_eq(sn_baseline_observe(b, e, v[TOTAL - 1], 3), 0);
    ck_assert_int_eq(sn_baseline_entry_last_seen(e), 1000 + TOTAL - 1);
    sn_welford_add(&ref, v[TOTAL - 1]);

    const sn_welford *w = sn_baseline_entry_welford(e);
    ck_assert_uint_eq(w->n, TOTAL + 1);
    ck_assert(tu_close(w->mean, ref.mean, 1e-12));
    ck_assert_uint_eq(sn_baseline_entry_ewma(e)->n, TOTAL + 1);
    ck_assert_double_eq(sn_baseline_entry_ewma(e)->alpha, SN_BASELINE_DEFAULT_EWMA_ALPHA);

    /* The window holds the last W samples: v[TOTAL-W+1 .. TOTAL) and v[TOTAL-1] again. */
    double last[W];
    memcpy(last, v + TOTAL - W + 1, (W - 1) * sizeof(double));
    last[W - 1] = v[TOTAL - 1];
    tu_sorted(last, W, sorted);
    sn_baseline_summary(b, e, &s);
    ck_assert_uint_eq(s.n, W);
    ck_assert_double_eq(s.median, tu_quantile(sorted, W, 0.5));
    ck_assert_double_eq(s.p99, tu_quantile(sorted, W, 0.99));
    ck_assert_double_eq(s.mad, tu_mad(sorted, W, scratch));
    sn_baseline_destroy(b);
}
END_TEST

START_TEST(compact_mode_rolls_and_approximates)
{
    enum { W = 1000 };
    static double v[20000], sorted[W];
    sn_baseline *b = make(SN_BASELINE_COMPACT, W, 1 << 20);
    sn_baseline_entry *e;
    ck_assert_int_eq(sn_baseline_get(b, "agent", "gpt-4o", SN_METRIC_LATENCY_MS, 0, &e), 0);
    tu_rng r = {.s = 23};
    int total = 0;
    /* A level shift: 5000 samples near 100 ms, then samples near 2000 ms. */
    for (; total < 5000; total++) {
        v[total] = 100.0 + 10.0 * tu_normal(&r);
        sn_baseline_observe(b, e, v[total], total);
    }
    for (; total < 5000 + 3 * W + 123; total++) {
        v[total] = tu_sample(&r, TU_NORMAL);
        sn_baseline_observe(b, e, v[total], total);
        if (total % 97 != 0 && total != 5000 + 3 * W + 122)
            continue;
        sn_summary s;
        sn_baseline_summary(b, e, &s);
        /* The summary covers the latest n samples, window/2 < n <= window. */
        ck_assert_uint_gt(s.n, W / 2);
        ck_assert_uint_le(s.n, W);
        size_t n = s.n;
        tu_sorted(v + total + 1 - n, n, sorted);
        double mean, var;
        tu_moments(v + total + 1 - n, n, &mean, &var);
        ck_assert(tu_close(s.mean, mean, 1e-9));
        ck_assert(tu_close(s.stddev, sqrt(var), 1e-6));
        ck_assert_double_eq(s.min, sorted[0]);
        ck_assert_double_eq(s.max, sorted[n - 1]);
        const double a = SN_BASELINE_DEFAULT_SKETCH_ALPHA;
        const double *qv[] = {&s.q1, &s.median, &s.q3, &s.p95, &s.p99};
        const double qs[] = {0.25, 0.5, 0.75, 0.95, 0.99};
        for (int k = 0; k < 5; k++) {
            double h = qs[k] * (double)(n - 1);
            size_t lo = (size_t)h, hi = lo + 1 < n ? lo + 1 : lo;
            double bound = a * fmax(fabs(sorted[lo]), fabs(sorted[hi])) * (1 + 1e-9);
            ck_assert_msg(fabs(*qv[k] - tu_quantile(sorted, n, qs[k])) <= bound,
                          "q%.2f at %d: %.17g vs %.17g", qs[k], total, *qv[k],
                          tu_quantile(sorted, n, qs[k]));
        }
        /* Once W samples past the shift, nothing of the old level is left. */
        if (total >= 5000 + W)
            ck_assert_double_gt(s.min, 500.0);
    }
    sn_baseline_destroy(b);
}
END_TEST

/* sn_baseline_summary_mad without the MAD: the same summary with mad NAN (compact), the full
 * summary (exact, where the MAD costs nothing extra). */
START_TEST(summary_without_mad)
{
    for (int mode = SN_BASELINE_EXACT; mode <= SN_BASELINE_COMPACT; mode++) {
        sn_baseline *b = make((sn_baseline_mode)mode, 1000, 1 << 22);
        sn_baseline_entry *e;
        ck_assert_int_eq(sn_baseline_get(b, "agent", "gpt-4o", SN_METRIC_LATENCY_MS, 0, &e), 0);
        tu_rng r = {.s = 5};
        for (int i = 0; i < 2500; i++) {
            ck_assert_int_eq(sn_baseline_observe(b, e, tu_sample(&r, TU_LOGNORMAL), i), 0);
            if (i % 333 != 0)
                continue;
            sn_summary full, part;
            sn_baseline_summary(b, e, &full);
            sn_baseline_summary_mad(b, e, &part, false);
            if (mode == SN_BASELINE_COMPACT) {
                ck_assert(isnan(part.mad));
                part.mad = full.mad;
            }
            ck_assert_mem_eq(&part, &full, sizeof full);
        }
        sn_baseline_destroy(b);
    }
}
END_TEST

START_TEST(budget_evicts_least_recently_updated)
{
    sn_baseline *b = make(SN_BASELINE_EXACT, 100, 64 * 1024);
    sn_baseline_stats st;
    sn_baseline_get_stats(b, &st);
    size_t fixed = st.index_bytes;
    ck_assert_uint_eq(st.bytes_used, fixed);
    sn_baseline_entry *keep, *e;
    ck_assert_int_eq(sn_baseline_get(b, "keep", "m", SN_METRIC_LATENCY_MS, 0, &keep), 0);
    size_t per = sn_baseline_entry_bytes(keep);
    ck_assert_uint_gt(per, 100 * 16);
    size_t capacity = (64 * 1024 - fixed) / per; /* keys that fit (names of similar length) */
    char svc[32];
    for (int i = 0; i < 200; i++) {
        snprintf(svc, sizeof svc, "s%03d", i);
        ck_assert_int_eq(sn_baseline_get(b, svc, "m", SN_METRIC_LATENCY_MS, i, &e), 0);
        sn_baseline_observe(b, e, i, i);
        /* "keep" is updated after every new key, so it is never the least recently updated. */
        keep = sn_baseline_find(b, "keep", "m", SN_METRIC_LATENCY_MS);
        ck_assert_ptr_nonnull(keep);
        sn_baseline_observe(b, keep, 1.0, i);
        sn_baseline_get_stats(b, &st);
        ck_assert_uint_le(st.bytes_used, st.budget);
    }
    sn_baseline_get_stats(b, &st);
    ck_assert_uint_ge(st.keys, capacity - 1);
    ck_assert_uint_le(st.keys, capacity + 1);
    ck_assert_uint_eq(st.evicted, 201 - st.keys);
    /* The survivors are exactly the most recent keys. */
    for (int i = 0; i < 200; i++) {
        snprintf(svc, sizeof svc, "s%03d", i);
        bool present = sn_baseline_find(b, svc, "m", SN_METRIC_LATENCY_MS) != NULL;
        ck_assert_msg(present == (i >= 200 - (int)(st.keys - 1)), "key %d present %d", i, present);
    }
    ck_assert_uint_eq(sn_baseline_entry_seen(keep), 200);
    sn_baseline_destroy(b);
}
END_TEST

/* A touch keeps the key in the LRU order like an observe, moves last seen forward only, and
 * leaves the statistics and the seen count alone. */
START_TEST(touch_updates_order_and_time_not_statistics)
{
    sn_baseline *b = make(SN_BASELINE_EXACT, 10, 64 * 1024);
    sn_baseline_entry *first, *e;
    ck_assert_int_eq(sn_baseline_get(b, "first", "m", SN_METRIC_LATENCY_MS, 5, &first), 0);
    ck_assert_int_eq(sn_baseline_observe(b, first, 7.0, 5), 0);
    sn_summary before, after;
    sn_baseline_summary(b, first, &before);
    char svc[32];
    for (int i = 0; i < 200; i++) {
        snprintf(svc, sizeof svc, "s%03d", i);
        ck_assert_int_eq(sn_baseline_get(b, svc, "m", SN_METRIC_LATENCY_MS, 10 + i, &e), 0);
        first = sn_baseline_find(b, "first", "m", SN_METRIC_LATENCY_MS);
        ck_assert_ptr_nonnull(first); /* touched after every new key: never the oldest */
        sn_baseline_touch(b, first, 10 + i);
    }
    sn_baseline_stats st;
    sn_baseline_get_stats(b, &st);
    ck_assert_uint_gt(st.evicted, 0);
    sn_baseline_touch(b, first, 3); /* an older time does not move last seen back */
    ck_assert_int_eq(sn_baseline_entry_last_seen(first), 209);
    ck_assert_uint_eq(sn_baseline_entry_seen(first), 1);
    ck_assert_uint_eq(sn_baseline_entry_welford(first)->n, 1);
    sn_baseline_summary(b, first, &after);
    ck_assert_uint_eq(after.n, 1);
    ck_assert_double_eq(after.mean, before.mean);
    /* Idle for more than 791 at 1000: every key but "first" and the newest (both seen at 209). */
    ck_assert_uint_eq(sn_baseline_expire(b, 1000, 791), st.keys - 2);
    ck_assert_ptr_nonnull(sn_baseline_find(b, "first", "m", SN_METRIC_LATENCY_MS));
    sn_baseline_destroy(b);
}
END_TEST

static int count_visit(const sn_baseline_entry *e, void *arg)
{
    int64_t *state = arg; /* [0] = visits, [1] = last "last seen", [2] = stop after */
    ck_assert_int_ge(sn_baseline_entry_last_seen(e), state[1]);
    state[1] = sn_baseline_entry_last_seen(e);
    return ++state[0] == state[2] ? 42 : 0;
}

START_TEST(expire_and_iterate)
{
    sn_baseline *b = make(SN_BASELINE_COMPACT, 100, 1 << 20);
    sn_baseline_entry *e;
    char svc[32];
    const int64_t sec = 1000000000;
    for (int i = 0; i < 50; i++) {
        snprintf(svc, sizeof svc, "svc-%d", i);
        ck_assert_int_eq(sn_baseline_get(b, svc, "m", SN_METRIC_OUTPUT_TOKENS, i * sec, &e), 0);
        if (i % 2)
            sn_baseline_observe(b, e, 10.0 * i, i * sec);
    }
    /* Update order = last-seen order here: iteration sees non-decreasing times. */
    int64_t state[3] = {0, INT64_MIN, -1};
    ck_assert_int_eq(sn_baseline_foreach(b, count_visit, state), 0);
    ck_assert_int_eq(state[0], 50);
    int64_t stop[3] = {0, INT64_MIN, 7};
    ck_assert_int_eq(sn_baseline_foreach(b, count_visit, stop), 42);
    ck_assert_int_eq(stop[0], 7);

    ck_assert_uint_eq(sn_baseline_expire(b, 60 * sec, -1), 0);
    /* Idle more than 30 s at t = 60 s: last seen before 30 s, i.e. keys 0..29. */
    ck_assert_uint_eq(sn_baseline_expire(b, 60 * sec, 30 * sec), 30);
    ck_assert_uint_eq(sn_baseline_expire(b, 60 * sec, 30 * sec), 0);
    ck_assert_ptr_null(sn_baseline_find(b, "svc-29", "m", SN_METRIC_OUTPUT_TOKENS));
    ck_assert_ptr_nonnull(sn_baseline_find(b, "svc-30", "m", SN_METRIC_OUTPUT_TOKENS));
    sn_baseline_stats st;
    sn_baseline_get_stats(b, &st);
    ck_assert_uint_eq(st.keys, 20);
    ck_assert_uint_eq(st.expired, 30);
    ck_assert_uint_eq(st.evicted, 0);
    /* A time before everything (clock skew) expires nothing. */
    ck_assert_uint_eq(sn_baseline_expire(b, 0, 0), 0);
    ck_assert_uint_eq(sn_baseline_expire(b, INT64_MAX, 0), 20);
    sn_baseline_get_stats(b, &st);
    ck_assert_uint_eq(st.bytes_used, st.index_bytes);
    sn_baseline_destroy(b);
}
END_TEST

/* Compact mode must fit 100 K keys in about 200 MiB: at most 2 KiB per key, all included. */
START_TEST(compact_bytes_per_key)
{
    const int keys = 400;
    sn_baseline *b = make(SN_BASELINE_COMPACT, 1000, (size_t)64 << 20);
    sn_baseline_entry *e;
    char svc[64];
    tu_rng r = {.s = 8};
    for (int i = 0; i < keys; i++) {
        snprintf(svc, sizeof svc, "customer-support-chatbot-%d", i);
        ck_assert_int_eq(sn_baseline_get(b, svc, "gpt-4o-mini-2024-07-18",
                                         (sn_metric)(i % SN_METRIC_COUNT), 0, &e),
                         0);
        for (int k = 0; k < 1200; k++)
            sn_baseline_observe(b, e, tu_sample(&r, k % 2 ? TU_LOGNORMAL : TU_NEGATIVE), k);
    }
    sn_baseline_stats st;
    sn_baseline_get_stats(b, &st);
    double per_key = (double)(st.bytes_used - st.index_bytes) / keys;
    /* The index of a 100 K-key deployment: a pointer slot per key (at most two at the
     * power-of-two rounding). */
    double index_per_key = 2.0 * sizeof(void *);
    fprintf(stderr, "compact mode: %.0f bytes per key (+ %.0f index), entry %zu bytes\n", per_key,
            index_per_key, sn_baseline_entry_bytes(e));
    ck_assert(per_key + index_per_key <= 2048.0);

    /* Even with the longest names. */
    char longname[SN_NAME_MAX];
    memset(longname, 'n', sizeof longname - 1);
    longname[SN_NAME_MAX - 1] = '\0';
    ck_assert_int_eq(sn_baseline_get(b, longname, longname, SN_METRIC_COST_USD, 0, &e), 0);
    ck_assert_uint_le(sn_baseline_entry_bytes(e) + index_per_key, 2048);

    /* And the exact mode of the default window, for comparison. */
    sn_baseline *x = make(SN_BASELINE_EXACT, 1000, (size_t)64 << 20);
    ck_assert_int_eq(sn_baseline_get(x, "customer-support-chatbot-1", "gpt-4o-mini-2024-07-18",
                                     SN_METRIC_LATENCY_MS, 0, &e),
                     0);
    fprintf(stderr, "exact mode (window 1000): entry %zu bytes\n", sn_baseline_entry_bytes(e));
    ck_assert_uint_ge(sn_baseline_entry_bytes(e), 16000);
    sn_baseline_destroy(x);
    sn_baseline_destroy(b);
}
END_TEST

/* Every allocation of every module, failed in turn: a clean -ENOMEM, nothing leaked (ASan),
 * nothing changed. */
START_TEST(user_area_per_entry)
{
    sn_baseline_config cfg;
    sn_baseline_config_init(&cfg);
    cfg.mode = SN_BASELINE_COMPACT;
    cfg.user_bytes = SN_BASELINE_USER_MAX + 1;
    sn_baseline *b = NULL;
    ck_assert_int_eq(sn_baseline_create(&b, &cfg), -EINVAL);
    ck_assert_ptr_null(b);

    /* Without a user area there is none. */
    cfg.user_bytes = 0;
    ck_assert_int_eq(sn_baseline_create(&b, &cfg), 0);
    sn_baseline_entry *e;
    ck_assert_int_eq(sn_baseline_get(b, "svc", "m", SN_METRIC_LATENCY_MS, 1, &e), 0);
    ck_assert_ptr_null(sn_baseline_entry_user(e));
    size_t plain = sn_baseline_entry_bytes(e);
    sn_baseline_destroy(b);

    /* 13 bytes become 16, zeroed, aligned, separate per key, and survive observe. */
    cfg.user_bytes = 13;
    ck_assert_int_eq(sn_baseline_create(&b, &cfg), 0);
    sn_baseline_entry *e1, *e2;
    ck_assert_int_eq(sn_baseline_get(b, "svc", "m", SN_METRIC_LATENCY_MS, 1, &e1), 0);
    ck_assert_int_eq(sn_baseline_get(b, "svc", "m", SN_METRIC_COST_USD, 1, &e2), 0);
    ck_assert_uint_eq(sn_baseline_entry_bytes(e1), plain + 16);
    unsigned char *u1 = sn_baseline_entry_user(e1), *u2 = sn_baseline_entry_user(e2);
    ck_assert_ptr_nonnull(u1);
    ck_assert_ptr_ne(u1, u2);
    ck_assert_uint_eq((uintptr_t)u1 % 8, 0);
    for (int i = 0; i < 16; i++)
        ck_assert_uint_eq(u1[i], 0);
    memset(u1, 0xab, 16);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(sn_baseline_observe(b, e1, 100.0 + i, 2), 0);
    sn_summary s;
    sn_baseline_summary(b, e1, &s);
    ck_assert_uint_eq(s.n, 100);
    ck_assert(fabs(s.mean - 149.5) < 1e-9);
    ck_assert_str_eq(sn_baseline_entry_service(e1), "svc");
    ck_assert_str_eq(sn_baseline_entry_model(e1), "m");
    for (int i = 0; i < 16; i++) {
        ck_assert_uint_eq(u1[i], 0xab);
        ck_assert_uint_eq(u2[i], 0);
    }
    /* A key created again after removal starts with a zeroed area. */
    sn_baseline_remove(b, e1);
    ck_assert_int_eq(sn_baseline_get(b, "svc", "m", SN_METRIC_LATENCY_MS, 3, &e1), 0);
    u1 = sn_baseline_entry_user(e1);
    for (int i = 0; i < 16; i++)
        ck_assert_uint_eq(u1[i], 0);
    sn_baseline_destroy(b);
}
END_TEST

START_TEST(allocation_failures)
{
    for (int mode = 0; mode < 2; mode++) {
        sn_baseline_config cfg;
        sn_baseline_config_init(&cfg);
        cfg.mode = (sn_baseline_mode)mode;
        cfg.memory_budget = 1 << 20;
        sn_baseline *b = NULL;
        int rc;
        long k = 0;
        do {
            fail_after = k++;
            rc = sn_baseline_create(&b, &cfg);
            fail_after = -1;
            ck_assert(rc == 0 || rc == -ENOMEM);
            if (rc != 0)
                ck_assert_ptr_null(b);
        } while (rc != 0);
        ck_assert_int_eq(k, mode == 0 ? 3 : 4); /* table, index (+ scratch sketch) */

        sn_baseline_entry *e = NULL;
        ck_assert_int_eq(sn_baseline_get(b, "a", "m", SN_METRIC_LATENCY_MS, 0, &e), 0);
        sn_baseline_observe(b, e, 1.0, 1);
        e = NULL;
        fail_after = 0;
        rc = sn_baseline_get(b, "b", "m", SN_METRIC_LATENCY_MS, 0, &e);
        fail_after = -1;
        ck_assert_int_eq(rc, -ENOMEM);
        ck_assert_ptr_null(e);
        sn_baseline_stats st;
        sn_baseline_get_stats(b, &st);
        ck_assert_uint_eq(st.keys, 1);
        ck_assert_ptr_null(sn_baseline_find(b, "b", "m", SN_METRIC_LATENCY_MS));
        e = sn_baseline_find(b, "a", "m", SN_METRIC_LATENCY_MS);
        ck_assert_ptr_nonnull(e);
        /* The hot path does not allocate at all. */
        int bad = 0;
        fail_after = 0;
        for (int i = 0; i < 3000; i++)
            bad += sn_baseline_observe(b, e, (double)i, i) != 0;
        sn_summary s;
        sn_baseline_summary(b, e, &s);
        fail_after = -1;
        ck_assert_int_eq(bad, 0);
        ck_assert_uint_eq(s.n, mode == 0 ? 1000 : 501); /* compact: 500 + 1 after rotation */
        sn_baseline_destroy(b);
    }

    sn_window *w = NULL;
    sn_sketch *k = NULL;
    fail_after = 0;
    int rc_w = sn_window_create(&w, 10);
    int rc_k = sn_sketch_create(&k, 0.01, 64);
    fail_after = -1;
    ck_assert_int_eq(rc_w, -ENOMEM);
    ck_assert_int_eq(rc_k, -ENOMEM);
    ck_assert_ptr_null(w);
    ck_assert_ptr_null(k);
    ck_assert_int_eq(sn_sketch_create(&k, 0.01, 64), 0);
    sn_sketch_add(k, 3.0);
    uint8_t buf[1024];
    size_t len;
    ck_assert_int_eq(sn_sketch_serialize(k, buf, sizeof buf, &len), 0);
    sn_sketch *copy = NULL;
    fail_after = 0;
    int rc_d = sn_sketch_deserialize(&copy, buf, len);
    fail_after = -1;
    ck_assert_int_eq(rc_d, -ENOMEM);
    ck_assert_ptr_null(copy);
    sn_sketch_destroy(k);
}
END_TEST

static Suite *baseline_suite(void)
{
    Suite *s = suite_create("baseline");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, config_validation);
    tcase_add_test(tc, keys_and_lookup);
    tcase_add_test(tc, exact_mode_statistics);
    tcase_add_test(tc, compact_mode_rolls_and_approximates);
    tcase_add_test(tc, summary_without_mad);
    tcase_add_test(tc, budget_evicts_least_recently_updated);
    tcase_add_test(tc, touch_updates_order_and_time_not_statistics);
    tcase_add_test(tc, expire_and_iterate);
    tcase_add_test(tc, compact_bytes_per_key);
    tcase_add_test(tc, user_area_per_entry);
    tcase_add_test(tc, allocation_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(baseline_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
