/* Unit tests for sidecar/memguard.c: the request budget (reserve / release, refusals for now and
 * for good, no limit), the budget shrinking by memory that no reservation counts, "too large"
 * and "retry" judged against the same memory (kept memory reclaimed on demand), the checks
 * spacing out while idle, and the resident-set threshold refusing everything. */
#include "memguard.h"

#include <check.h>
#include <stdbool.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uv.h>

#define MIB (1024u * 1024u)

/* The resident set of this process now, in bytes. */
static uint64_t rss_now(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    ck_assert_ptr_nonnull(f);
    unsigned long long size = 0, resident = 0;
    ck_assert_int_eq(fscanf(f, "%llu %llu", &size, &resident), 2);
    fclose(f);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void on_stop(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs the loop for `ms` milliseconds (the guard's checks run every 20 ms). */
static void run_for(uv_loop_t *loop, unsigned ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, on_stop, ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static uv_loop_t g_loop;

/* Memory "kept for reuse" by a stand-in holder: a touched mapping the guard may reclaim. */
typedef struct holder {
    char *p;
    size_t n;
    int reclaims;
} holder;

static size_t holder_kept(void *ud)
{
    const holder *h = ud;
    return h->p != NULL ? h->n : 0;
}

static void holder_reclaim(void *ud)
{
    holder *h = ud;
    h->reclaims++;
    if (h->p != NULL)
        munmap(h->p, h->n);
    h->p = NULL;
}

/* Maps and touches n bytes (mmap, not malloc: a sanitizer's quarantine would keep freed pages
 * resident). */
static char *hog(size_t n)
{
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert(p != MAP_FAILED);
    memset(p, 0x5a, n);
    __asm__ volatile("" : : "r"(p) : "memory"); /* the compiler must not drop the pages */
    return p;
}

/* Starts a guard on g_loop: limit 0, or 48 MiB above the resident set now, refusing from pct;
 * with kept memory from h when given. */
static sn_memguard *open_guard_with(bool limited, unsigned pct, holder *h)
{
    uv_loop_init(&g_loop);
    sn_memguard_config cfg = {.limit_bytes = limited ? rss_now() + 48 * (uint64_t)MIB : 0,
                              .refuse_percent = pct};
    if (h != NULL) {
        cfg.kept = holder_kept;
        cfg.reclaim = holder_reclaim;
        cfg.kept_ud = h;
    }
    sn_memguard *g = NULL;
    char err[128];
    ck_assert_int_eq(sn_memguard_create(&cfg, &g_loop, &g, err, sizeof err), 0);
    return g;
}

static sn_memguard *open_guard(bool limited, unsigned pct)
{
    return open_guard_with(limited, pct, NULL);
}

/* Closes the guard, lets the loop free it and closes the loop. */
static void close_guard(sn_memguard *g)
{
    sn_memguard_close(g);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&g_loop), 0);
}

START_TEST(reservations_fit_the_budget_and_come_back)
{
    sn_memguard *g = open_guard(true, 100);
    size_t budget = sn_memguard_budget(g);
    /* limit - baseline is about 48 MiB; the margin a third of it. */
    ck_assert_uint_gt(budget, 28 * MIB);
    ck_assert_uint_lt(budget, 34 * MIB);
    ck_assert_uint_eq(sn_memguard_available(g), budget);

    size_t half = budget / 2;
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_HTTP, half, 0), 0);
    ck_assert_uint_eq(sn_memguard_available(g), budget - half);
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_GRPC, budget - half, 0), 0);
    ck_assert_uint_eq(sn_memguard_available(g), 0);
    /* Full: not now; a request that grows is refused the same way. */
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_HTTP, 1, 0), -EAGAIN);
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_HTTP, 1, half), -EAGAIN);
    sn_memguard_release(g, budget - half);
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_HTTP, 1024, half), 0);
    sn_memguard_release(g, half + 1024);
    ck_assert_uint_eq(sn_memguard_available(g), budget);

    /* Larger than the whole budget: never, even alone. */
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_HTTP, budget + 1, 0), -E2BIG);
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_GRPC, 16, budget - 8), -E2BIG);
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_GRPC, 0, 0), 0);
    ck_assert_uint_eq(sn_memguard_available(g), budget);
    ck_assert(!sn_memguard_over(g));
    close_guard(g);
}
END_TEST

START_TEST(no_limit_no_budget)
{
    sn_memguard *g = open_guard(false, 0);
    ck_assert_uint_eq(sn_memguard_budget(g), SIZE_MAX);
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_HTTP, (size_t)1 << 40, 0), 0);
    ck_assert_uint_eq(sn_memguard_available(g), SIZE_MAX);
    sn_memguard_release(g, (size_t)1 << 40);
    run_for(&g_loop, 50);
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_GRPC, (size_t)1 << 40, 0), 0);
    sn_memguard_release(g, (size_t)1 << 40);
    close_guard(g);
}
END_TEST

/* Memory the process holds outside any reservation and that nothing can give back (here:
 * 16 MiB touched by the test) is taken off what requests may reserve at the next check, and
 * off the largest request once the process is idle: a request that no longer fits even alone
 * is refused as too large (not "retry" for good); all is given back when the memory is freed. */
START_TEST(unaccounted_memory_shrinks_the_budget_and_the_largest_request)
{
    sn_memguard *g = open_guard(true, 100);
    size_t budget = sn_memguard_budget(g);
    run_for(&g_loop, 50);
    ck_assert_uint_gt(sn_memguard_available(g), budget - 2 * MIB);

    size_t n = 16 * MIB;
    char *p = hog(n);
    run_for(&g_loop, 50);
    ck_assert_uint_lt(sn_memguard_available(g), budget - 14 * MIB);
    /* Nothing reserved: once the 16 MiB stayed for the floor's window (4 s), a reservation the
     * old budget allowed is too large, at once and on every retry. */
    run_for(&g_loop, 4600);
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_HTTP, budget - 8 * MIB, 0), -E2BIG);
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_HTTP, budget - 8 * MIB, 0), -E2BIG);
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_HTTP, budget - 20 * MIB, 0), 0);
    sn_memguard_release(g, budget - 20 * MIB);
    munmap(p, n);
    /* The maximum decays by 1/16 per check, the floor follows a lower reading at once: back
     * within a second. */
    run_for(&g_loop, 1500);
    ck_assert_uint_gt(sn_memguard_available(g), budget - 4 * MIB);
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_HTTP, budget - 8 * MIB, 0), 0);
    sn_memguard_release(g, budget - 8 * MIB);
    close_guard(g);
}
END_TEST

/* Memory kept for reuse (config.kept: 16 MiB here) lowers the budget of the moment like any
 * other, but not the largest request: a request that fits the start budget is refused for now,
 * which asks for a reclaim; the holder frees its memory, and the retry gets in. */
START_TEST(kept_memory_is_reclaimed_for_a_request_that_fits)
{
    holder h = {NULL, 16 * MIB, 0};
    sn_memguard *g = open_guard_with(true, 100, &h);
    size_t budget = sn_memguard_budget(g);
    run_for(&g_loop, 50);
    h.p = hog(h.n);
    run_for(&g_loop, 600);
    ck_assert_uint_lt(sn_memguard_available(g), budget - 14 * MIB);
    ck_assert_int_eq(h.reclaims, 0); /* kept while nobody needs the room */
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_HTTP, budget - 8 * MIB, 0), -EAGAIN);
    int tries = 1;
    while (sn_memguard_reserve(g, SN_MEMGUARD_HTTP, budget - 8 * MIB, 0) != 0) {
        ck_assert_int_lt(tries++, 20); /* the client's retries, 100 ms apart */
        run_for(&g_loop, 100);
    }
    ck_assert_int_ge(h.reclaims, 1);
    ck_assert_ptr_null(h.p);
    sn_memguard_release(g, budget - 8 * MIB);
    close_guard(g);
}
END_TEST

/* Under continuous traffic (a reservation held at every check) the floor is never sampled: a
 * window without a sample returns it to the baseline, so a request that the floor of an earlier
 * idle moment made too large is refused for now while the memory is held (the budget of the
 * moment still counts it) -- never for good -- and gets in once the memory is gone. */
START_TEST(a_floor_not_sampled_for_a_window_returns_to_the_baseline)
{
    sn_memguard *g = open_guard(true, 100);
    size_t budget = sn_memguard_budget(g);
    size_t n = 16 * MIB;
    char *p = hog(n);
    run_for(&g_loop, 4600); /* idle: the floor is the 16 MiB higher */
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_HTTP, budget - 8 * MIB, 0), -E2BIG);

    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_GRPC, MIB, 0), 0); /* the traffic */
    run_for(&g_loop, 4600);
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_HTTP, budget - 8 * MIB, 0), -EAGAIN);
    munmap(p, n);
    int tries = 1;
    while (sn_memguard_reserve(g, SN_MEMGUARD_HTTP, budget - 8 * MIB, 0) != 0) {
        ck_assert_int_lt(tries++, 30); /* the client's retries, 100 ms apart */
        run_for(&g_loop, 100);
    }
    sn_memguard_release(g, budget - 8 * MIB + MIB);
    close_guard(g);
}
END_TEST

/* A refusal for now because other requests' reservations fill the budget does not free the
 * kept memory (that would not make room): no reclaim. */
START_TEST(a_refusal_for_others_reservations_reclaims_nothing)
{
    holder h = {NULL, 0, 0};
    sn_memguard *g = open_guard_with(true, 100, &h);
    size_t budget = sn_memguard_budget(g);
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_GRPC, budget, 0), 0);
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_HTTP, MIB, 0), -EAGAIN);
    run_for(&g_loop, 300); /* three trim decisions */
    ck_assert_int_eq(h.reclaims, 0);
    sn_memguard_release(g, budget);
    close_guard(g);
}
END_TEST

/* The checks space out while nothing happens (1 s apart at most instead of every 20 ms) and
 * come back to 20 ms with the first request. */
START_TEST(checks_back_off_while_idle_and_wake_on_traffic)
{
    sn_memguard *g = open_guard(true, 100);
    run_for(&g_loop, 1000);
    uint64_t s0 = sn_memguard_samples(g);
    run_for(&g_loop, 1000);
    uint64_t idle = sn_memguard_samples(g) - s0;
    ck_assert_uint_le(idle, 5); /* every 20 ms: 50 */
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_GRPC, MIB, 0), 0);
    s0 = sn_memguard_samples(g);
    run_for(&g_loop, 300);
    ck_assert_uint_ge(sn_memguard_samples(g) - s0, 3); /* awake while a request is held */
    sn_memguard_release(g, MIB);
    close_guard(g);
}
END_TEST

/* Over the resident-set threshold every reservation is refused (retryable). */
START_TEST(over_the_threshold_everything_is_refused)
{
    sn_memguard *g = open_guard(true, 1);
    run_for(&g_loop, 50);
    ck_assert(sn_memguard_over(g));
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_GRPC, 1, 0), -EAGAIN);
    ck_assert_int_eq(sn_memguard_reserve(g, SN_MEMGUARD_HTTP, 1, 0), -EAGAIN);
    close_guard(g);
}
END_TEST

static Suite *memguard_suite(void)
{
    Suite *s = suite_create("memguard");
    TCase *tc = tcase_create("budget");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, reservations_fit_the_budget_and_come_back);
    tcase_add_test(tc, no_limit_no_budget);
    tcase_add_test(tc, unaccounted_memory_shrinks_the_budget_and_the_largest_request);
    tcase_add_test(tc, kept_memory_is_reclaimed_for_a_request_that_fits);
    tcase_add_test(tc, a_floor_not_sampled_for_a_window_returns_to_the_baseline);
    tcase_add_test(tc, a_refusal_for_others_reservations_reclaims_nothing);
    tcase_add_test(tc, checks_back_off_while_idle_and_wake_on_traffic);
    tcase_add_test(tc, over_the_threshold_everything_is_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(memguard_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
