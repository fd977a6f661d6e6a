/* Unit tests for shared/backoff.c. */
#include "backoff.h"

#include <check.h>
#include <math.h>
#include <stdint.h>

/* A random value that makes sn_backoff_next pick the top of its range [lo, hi]. */
static uint64_t pick_top(uint32_t lo, uint32_t hi)
{
    return (uint64_t)(hi - lo);
}

START_TEST(defaults_are_the_documented_ones)
{
    sn_backoff_config cfg;
    sn_backoff_config_defaults(&cfg);
    ck_assert_uint_eq(cfg.initial_ms, 100);
    ck_assert_uint_eq(cfg.max_ms, 30000);
    ck_assert_double_eq(cfg.multiplier, 2.0);
    ck_assert_ptr_null(sn_backoff_config_validate(&cfg));
}
END_TEST

START_TEST(first_delay_is_initial_whatever_the_random_bits)
{
    sn_backoff_config cfg;
    sn_backoff_config_defaults(&cfg);
    uint64_t randoms[] = {0, 1, 99, 12345, UINT64_MAX};
    for (size_t i = 0; i < sizeof randoms / sizeof randoms[0]; i++) {
        sn_backoff st = {0};
        ck_assert_uint_eq(sn_backoff_next(&st, &cfg, randoms[i]), 100);
        ck_assert_uint_eq(st.attempts, 1);
    }
}
END_TEST

START_TEST(top_draws_double_up_to_the_cap)
{
    sn_backoff_config cfg;
    sn_backoff_config_defaults(&cfg);
    sn_backoff st = {0};
    uint32_t expect[] = {100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000};
    uint32_t prev = 0;
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        uint32_t hi = prev == 0 ? 100 : (prev * 2 > 30000 ? 30000 : prev * 2);
        uint32_t d = sn_backoff_next(&st, &cfg, pick_top(100, hi));
        ck_assert_uint_eq(d, expect[i]);
        prev = d;
    }
    ck_assert_uint_eq(st.attempts, sizeof expect / sizeof expect[0]);
}
END_TEST

START_TEST(bottom_draws_stay_at_initial)
{
    sn_backoff_config cfg;
    sn_backoff_config_defaults(&cfg);
    sn_backoff st = {0};
    for (int i = 0; i < 50; i++)
        ck_assert_uint_eq(sn_backoff_next(&st, &cfg, 0), 100);
}
END_TEST

START_TEST(every_draw_is_within_initial_and_the_growing_ceiling)
{
    sn_backoff_config cfg = {.initial_ms = 50, .max_ms = 10000, .multiplier = 3.0};
    sn_backoff st = {0};
    uint64_t x = 0x9e3779b97f4a7c15ull; /* xorshift64 */
    uint32_t ceiling = 50, top = 0;
    double sum_capped = 0.0;
    int n_capped = 0;
    for (int i = 0; i < 10000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t d = sn_backoff_next(&st, &cfg, x);
        ck_assert_uint_eq(st.ceiling_ms, ceiling);
        ck_assert_uint_ge(d, 50);
        ck_assert_uint_le(d, ceiling);
        if (i == 0)
            ck_assert_uint_eq(d, 50);
        if (ceiling == 10000) {
            sum_capped += d;
            n_capped++;
        }
        top = d > top ? d : top;
        ceiling = ceiling * 3u > 10000u ? 10000u : ceiling * 3u;
    }
    /* The ceiling grew geometrically to the cap whatever was drawn (50, 150, 450, 1350,
     * 4050, then 10000), and the draws spread over the whole range: uniform on
     * [50, 10000] has mean 5025. */
    ck_assert_int_eq(n_capped, 10000 - 5);
    ck_assert_uint_gt(top, 9900);
    ck_assert_double_eq_tol(sum_capped / n_capped, 5025.0, 150.0);
}
END_TEST

START_TEST(reset_starts_over)
{
    sn_backoff_config cfg;
    sn_backoff_config_defaults(&cfg);
    sn_backoff st = {0};
    sn_backoff_next(&st, &cfg, 0);
    ck_assert_uint_eq(sn_backoff_next(&st, &cfg, 100), 200);
    ck_assert_uint_eq(sn_backoff_next(&st, &cfg, 300), 400);
    sn_backoff_reset(&st);
    ck_assert_uint_eq(st.attempts, 0);
    ck_assert_uint_eq(sn_backoff_next(&st, &cfg, UINT64_MAX), 100);
    ck_assert_uint_eq(st.attempts, 1);
}
END_TEST

START_TEST(multiplier_one_is_a_constant_delay)
{
    sn_backoff_config cfg = {.initial_ms = 250, .max_ms = 1000, .multiplier = 1.0};
    sn_backoff st = {0};
    for (int i = 0; i < 20; i++)
        ck_assert_uint_eq(sn_backoff_next(&st, &cfg, (uint64_t)i * 7919u), 250);
}
END_TEST

START_TEST(huge_multiplier_and_cap_do_not_wrap)
{
    sn_backoff_config cfg = {.initial_ms = 1, .max_ms = SN_BACKOFF_MS_LIMIT, .multiplier = 1e300};
    ck_assert_ptr_null(sn_backoff_config_validate(&cfg));
    sn_backoff st = {0};
    ck_assert_uint_eq(sn_backoff_next(&st, &cfg, UINT64_MAX), 1);
    uint32_t d = sn_backoff_next(&st, &cfg, SN_BACKOFF_MS_LIMIT - 1u);
    ck_assert_uint_eq(d, SN_BACKOFF_MS_LIMIT);
    ck_assert_uint_eq(sn_backoff_next(&st, &cfg, SN_BACKOFF_MS_LIMIT - 1u), SN_BACKOFF_MS_LIMIT);
}
END_TEST

START_TEST(validate_names_the_bad_field)
{
    sn_backoff_config cfg;
    sn_backoff_config_defaults(&cfg);
    cfg.initial_ms = 0;
    ck_assert_str_eq(sn_backoff_config_validate(&cfg), "backoff: initial_ms must be > 0");
    sn_backoff_config_defaults(&cfg);
    cfg.max_ms = 50;
    ck_assert_str_eq(sn_backoff_config_validate(&cfg), "backoff: max_ms must be >= initial_ms");
    sn_backoff_config_defaults(&cfg);
    cfg.max_ms = SN_BACKOFF_MS_LIMIT + 1u;
    ck_assert_str_eq(sn_backoff_config_validate(&cfg),
                     "backoff: max_ms must be <= 86400000 (a day)");
    sn_backoff_config_defaults(&cfg);
    cfg.multiplier = 0.5;
    ck_assert_str_eq(sn_backoff_config_validate(&cfg),
                     "backoff: multiplier must be a finite number >= 1");
    cfg.multiplier = NAN;
    ck_assert_ptr_nonnull(sn_backoff_config_validate(&cfg));
    cfg.multiplier = INFINITY;
    ck_assert_ptr_nonnull(sn_backoff_config_validate(&cfg));
}
END_TEST

START_TEST(invalid_config_is_clamped_not_fatal)
{
    sn_backoff st = {0};
    sn_backoff_config zero = {.initial_ms = 0, .max_ms = 0, .multiplier = NAN};
    ck_assert_uint_eq(sn_backoff_next(&st, &zero, 5), 1);
    ck_assert_uint_eq(sn_backoff_next(&st, &zero, 5), 1); /* multiplier NAN -> 1: constant */
    sn_backoff_reset(&st);
    sn_backoff_config inverted = {.initial_ms = 500, .max_ms = 10, .multiplier = 2.0};
    ck_assert_uint_eq(sn_backoff_next(&st, &inverted, 77), 500);
    ck_assert_uint_eq(sn_backoff_next(&st, &inverted, 77), 500); /* cap raised to initial */
}
END_TEST

static Suite *backoff_suite(void)
{
    Suite *s = suite_create("backoff");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, defaults_are_the_documented_ones);
    tcase_add_test(tc, first_delay_is_initial_whatever_the_random_bits);
    tcase_add_test(tc, top_draws_double_up_to_the_cap);
    tcase_add_test(tc, bottom_draws_stay_at_initial);
    tcase_add_test(tc, every_draw_is_within_initial_and_the_growing_ceiling);
    tcase_add_test(tc, reset_starts_over);
    tcase_add_test(tc, multiplier_one_is_a_constant_delay);
    tcase_add_test(tc, huge_multiplier_and_cap_do_not_wrap);
    tcase_add_test(tc, validate_names_the_bad_field);
    tcase_add_test(tc, invalid_config_is_clamped_not_fatal);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(backoff_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
