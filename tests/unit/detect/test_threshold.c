/* Unit tests for shared/detect/threshold.c: static thresholds, calendar periods, budgets. */
#include "detect/threshold.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define SEC(s) ((int64_t)(s)*INT64_C(1000000000))

/* Unix seconds checked against `date -u -d ... +%s`. */
#define T_2023_02_28_235959 INT64_C(1677628799)
#define T_2023_03_01        INT64_C(1677628800)
#define T_2023_12_31_235959 INT64_C(1704067199)
#define T_2024_01_01        INT64_C(1704067200)
#define T_2024_02_01        INT64_C(1706745600)
#define T_2024_02_28_235959 INT64_C(1709164799)
#define T_2024_02_29        INT64_C(1709164800)
#define T_2024_02_29_235959 INT64_C(1709251199)
#define T_2024_03_01        INT64_C(1709251200)
#define T_2024_06_15_105959 INT64_C(1718449199)
#define T_2024_06_15_110000 INT64_C(1718449200)
#define T_2024_12_31_235959 INT64_C(1735689599)
#define T_2025_01_01        INT64_C(1735689600)
#define T_2000_02_29_120000 INT64_C(951825600)
#define T_2000_03_01        INT64_C(951868800)
#define T_2100_02_28_235959 INT64_C(4107542399)
#define T_2100_03_01        INT64_C(4107542400)
#define T_1969_12_01        INT64_C(-2678400)

static sn_threshold_config tc;
static sn_budget_config bc;
static sn_budget bs;

static void setup(void)
{
    sn_threshold_config_defaults(&tc);
    sn_budget_config_defaults(&bc);
    bc.amount = 100.0;
    sn_budget_init(&bs);
}

/* --- static thresholds --- */

START_TEST(threshold_defaults_set_no_level)
{
    sn_threshold_config_defaults(&tc);
    ck_assert(isnan(tc.upper_warn) && isnan(tc.upper_critical));
    ck_assert(isnan(tc.lower_warn) && isnan(tc.lower_critical));
    ck_assert_int_eq(tc.warn_severity, SN_SEV_MEDIUM);
    ck_assert_int_eq(tc.critical_severity, SN_SEV_CRITICAL);
    ck_assert_ptr_null(sn_threshold_config_validate(&tc));
    sn_verdict v;
    ck_assert(!sn_threshold_check(&tc, 1e9, &v));
    ck_assert(!v.ready);
}
END_TEST

START_TEST(threshold_validate_names_the_bad_field)
{
    sn_threshold_config c = tc;
    c.upper_warn = INFINITY;
    ck_assert_ptr_nonnull(strstr(sn_threshold_config_validate(&c), "upper_warn"));
    c = tc;
    c.lower_critical = -INFINITY;
    ck_assert_ptr_nonnull(strstr(sn_threshold_config_validate(&c), "lower_critical"));
    c = tc;
    c.upper_warn = 10.0;
    c.upper_critical = 5.0;
    ck_assert_ptr_nonnull(strstr(sn_threshold_config_validate(&c), "upper_critical"));
    c = tc;
    c.lower_warn = 1.0;
    c.lower_critical = 2.0;
    ck_assert_ptr_nonnull(strstr(sn_threshold_config_validate(&c), "lower_critical"));
    c = tc;
    c.lower_warn = 10.0;
    c.upper_critical = 10.0;
    ck_assert_ptr_nonnull(strstr(sn_threshold_config_validate(&c), "lower_warn"));
    c = tc;
    c.warn_severity = SN_SEV_NONE;
    ck_assert_ptr_nonnull(strstr(sn_threshold_config_validate(&c), "warn_severity"));
    c = tc;
    c.warn_severity = SN_SEV_HIGH;
    c.critical_severity = SN_SEV_MEDIUM;
    ck_assert_ptr_nonnull(strstr(sn_threshold_config_validate(&c), "critical_severity"));
    c.upper_warn = 1.0;
    sn_verdict v;
    ck_assert(!sn_threshold_check(&c, 100.0, &v));
    ck_assert(!v.ready);
}
END_TEST

START_TEST(upper_levels)
{
    tc.upper_warn = 5000.0;
    tc.upper_critical = 10000.0;
    ck_assert_ptr_null(sn_threshold_config_validate(&tc));
    sn_verdict v;
    struct {
        double x;
        bool anomaly;
        sn_severity sev;
        double threshold;
    } cases[] = {
        {0.0, false, SN_SEV_NONE, 5000.0},      {4999.0, false, SN_SEV_NONE, 5000.0},
        {5000.0, false, SN_SEV_NONE, 5000.0},   {5000.5, true, SN_SEV_MEDIUM, 5000.0},
        {10000.0, true, SN_SEV_MEDIUM, 5000.0}, {10000.5, true, SN_SEV_CRITICAL, 10000.0},
        {-1e6, false, SN_SEV_NONE, 5000.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(sn_threshold_check(&tc, cases[i].x, &v), cases[i].anomaly);
        ck_assert(v.ready);
        ck_assert_int_eq(v.method, SN_DETECT_THRESHOLD);
        ck_assert_int_eq(v.severity, cases[i].sev);
        ck_assert_double_eq(v.threshold, cases[i].threshold);
        ck_assert_int_eq(v.direction, 1);
        ck_assert(isnan(v.deviation) && isnan(v.baseline));
        ck_assert_double_eq(v.confidence, cases[i].anomaly ? 0.99 : 0.0);
    }
    /* Score: 0.5 at the first level, rising through the critical level without a dip. */
    sn_threshold_check(&tc, 5000.0, &v);
    ck_assert_double_eq_tol(v.score, 0.5, 1e-12);
    double prev = -1.0;
    for (double x = 0.0; x < 40000.0; x += 50.0) {
        sn_threshold_check(&tc, x, &v);
        ck_assert(x == 0.0 || v.score > prev || (prev == 0.0 && v.score == 0.0));
        ck_assert(v.score >= 0.0 && v.score <= 1.0);
        prev = v.score;
    }
}
END_TEST

START_TEST(lower_levels_and_both_sides)
{
    /* tokens_per_second: warn under 10, critical under 2. */
    tc.lower_warn = 10.0;
    tc.lower_critical = 2.0;
    sn_verdict v;
    ck_assert(!sn_threshold_check(&tc, 11.0, &v));
    ck_assert_int_eq(v.direction, -1);
    ck_assert(!sn_threshold_check(&tc, 10.0, &v));
    ck_assert(sn_threshold_check(&tc, 9.0, &v));
    ck_assert_int_eq(v.severity, SN_SEV_MEDIUM);
    ck_assert(sn_threshold_check(&tc, 2.0, &v));
    ck_assert_int_eq(v.severity, SN_SEV_MEDIUM);
    ck_assert(sn_threshold_check(&tc, 1.0, &v));
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    ck_assert_double_eq(v.threshold, 2.0);
    ck_assert(sn_threshold_check(&tc, -5.0, &v)); /* negative values */
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    ck_assert_int_eq(v.direction, -1);
    /* Both sides, critical levels only, custom severity. */
    sn_threshold_config_defaults(&tc);
    tc.upper_critical = 100.0;
    tc.lower_critical = -100.0;
    tc.critical_severity = SN_SEV_HIGH;
    ck_assert(!sn_threshold_check(&tc, 60.0, &v));
    ck_assert_int_eq(v.direction, 1);
    ck_assert_double_eq(v.threshold, 100.0);
    ck_assert(!sn_threshold_check(&tc, -60.0, &v));
    ck_assert_int_eq(v.direction, -1);
    ck_assert(sn_threshold_check(&tc, 101.0, &v));
    ck_assert_int_eq(v.severity, SN_SEV_HIGH);
    ck_assert(sn_threshold_check(&tc, -101.0, &v));
    ck_assert_int_eq(v.severity, SN_SEV_HIGH);
    ck_assert_int_eq(v.direction, -1);
}
END_TEST

START_TEST(threshold_non_finite_and_huge)
{
    tc.upper_warn = 0.0;
    sn_verdict v;
    double bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        ck_assert(!sn_threshold_check(&tc, bad[i], &v));
        ck_assert(!v.ready && !v.anomaly);
    }
    /* A level at 0: the distance is measured against a tiny magnitude; still finite. */
    ck_assert(sn_threshold_check(&tc, 1e-300, &v));
    ck_assert(sn_threshold_check(&tc, DBL_MAX, &v));
    ck_assert(v.score >= 0.5 && v.score <= 1.0);
    tc.upper_warn = -DBL_MAX;
    ck_assert(sn_threshold_check(&tc, DBL_MAX, &v));
    ck_assert(v.score >= 0.5 && v.score <= 1.0);
}
END_TEST

/* --- calendar periods --- */

START_TEST(period_names)
{
    const char *names[] = {"minute", "hour", "day", "month"};
    for (int i = 0; i < 4; i++) {
        sn_period p = (sn_period)9;
        ck_assert_str_eq(sn_period_name((sn_period)i), names[i]);
        ck_assert_int_eq(sn_period_from_name(names[i], &p), 0);
        ck_assert_int_eq(p, i);
    }
    sn_period p = SN_PERIOD_HOUR;
    ck_assert_int_eq(sn_period_from_name("week", &p), -1);
    ck_assert_int_eq(p, SN_PERIOD_HOUR);
    ck_assert_str_eq(sn_period_name((sn_period)4), "unknown");
}
END_TEST

START_TEST(period_index_boundaries)
{
    int64_t last = SEC(T_2024_06_15_105959) + 999999999; /* the last ns of 10:59 */
    int64_t next = SEC(T_2024_06_15_110000);
    ck_assert_int_eq(
        sn_period_index(SN_PERIOD_MINUTE, next) - sn_period_index(SN_PERIOD_MINUTE, last), 1);
    ck_assert_int_eq(sn_period_index(SN_PERIOD_HOUR, next) - sn_period_index(SN_PERIOD_HOUR, last),
                     1);
    ck_assert_int_eq(sn_period_index(SN_PERIOD_DAY, next), sn_period_index(SN_PERIOD_DAY, last));
    ck_assert_int_eq(sn_period_index(SN_PERIOD_MINUTE, next), T_2024_06_15_110000 / 60);
    /* Negative times floor, not truncate. */
    ck_assert_int_eq(sn_period_index(SN_PERIOD_MINUTE, -1), -1);
    ck_assert_int_eq(sn_period_index(SN_PERIOD_DAY, SEC(-1)), -1);
    ck_assert_int_eq(sn_period_index(SN_PERIOD_DAY, 0), 0);
    ck_assert_int_eq(sn_period_index(SN_PERIOD_MONTH, SEC(-1)), 1969 * 12 + 11);
    ck_assert_int_eq(sn_period_index(SN_PERIOD_MONTH, SEC(T_1969_12_01)), 1969 * 12 + 11);
    ck_assert_int_eq(sn_period_index(SN_PERIOD_MONTH, SEC(T_1969_12_01) - 1), 1969 * 12 + 10);
    /* Months: Dec -> Jan, leap and non-leap Februaries. */
    struct {
        int64_t t;
        int64_t month;
    } months[] = {
        {T_2023_12_31_235959, 2023 * 12 + 11}, {T_2024_01_01, 2024 * 12 + 0},
        {T_2024_12_31_235959, 2024 * 12 + 11}, {T_2025_01_01, 2025 * 12 + 0},
        {T_2024_02_28_235959, 2024 * 12 + 1},  {T_2024_02_29, 2024 * 12 + 1},
        {T_2024_02_29_235959, 2024 * 12 + 1},  {T_2024_03_01, 2024 * 12 + 2},
        {T_2023_02_28_235959, 2023 * 12 + 1},  {T_2023_03_01, 2023 * 12 + 2},
        {T_2000_02_29_120000, 2000 * 12 + 1},  {T_2000_03_01, 2000 * 12 + 2},
        {T_2100_02_28_235959, 2100 * 12 + 1},  {T_2100_03_01, 2100 * 12 + 2},
    };
    for (size_t i = 0; i < sizeof months / sizeof months[0]; i++)
        ck_assert_int_eq(sn_period_index(SN_PERIOD_MONTH, SEC(months[i].t)), months[i].month);
    /* The extremes of int64 nanoseconds (1677 and 2262) still give sensible months. */
    ck_assert_int_eq(sn_period_index(SN_PERIOD_MONTH, INT64_MAX), 2262 * 12 + 3);
    ck_assert_int_eq(sn_period_index(SN_PERIOD_MONTH, INT64_MIN), 1677 * 12 + 8);
    ck_assert_int_eq(sn_period_index((sn_period)9, 0), INT64_MIN);
}
END_TEST

START_TEST(period_start)
{
    ck_assert_int_eq(sn_period_start_ns(SN_PERIOD_MONTH, 2024 * 12 + 1), SEC(T_2024_02_01));
    ck_assert_int_eq(sn_period_start_ns(SN_PERIOD_MONTH, 2024 * 12 + 2), SEC(T_2024_03_01));
    ck_assert_int_eq(sn_period_start_ns(SN_PERIOD_MONTH, 2025 * 12 + 0), SEC(T_2025_01_01));
    ck_assert_int_eq(sn_period_start_ns(SN_PERIOD_MONTH, 1969 * 12 + 11), SEC(T_1969_12_01));
    ck_assert_int_eq(sn_period_start_ns(SN_PERIOD_HOUR, T_2024_06_15_110000 / 3600),
                     SEC(T_2024_06_15_110000));
    ck_assert_int_eq(sn_period_start_ns(SN_PERIOD_DAY, -1), SEC(-86400));
    /* Round trip for every month from 1900 to 2200. */
    for (int64_t m = 1900 * 12; m < 2200 * 12; m++) {
        int64_t start = sn_period_start_ns(SN_PERIOD_MONTH, m);
        ck_assert_int_eq(sn_period_index(SN_PERIOD_MONTH, start), m);
        ck_assert_int_eq(sn_period_index(SN_PERIOD_MONTH, start - 1), m - 1);
    }
    /* Outside int64 nanoseconds: saturates. */
    ck_assert_int_eq(sn_period_start_ns(SN_PERIOD_MONTH, 2262 * 12 + 4), INT64_MAX);
    ck_assert_int_eq(sn_period_start_ns(SN_PERIOD_MONTH, 1000 * 12), INT64_MIN);
    ck_assert_int_eq(sn_period_start_ns(SN_PERIOD_DAY, INT64_MAX / 2), INT64_MAX);
    ck_assert_int_eq(sn_period_start_ns(SN_PERIOD_MINUTE, INT64_MIN / 2), INT64_MIN);
}
END_TEST

/* --- budgets --- */

START_TEST(budget_defaults_and_validate)
{
    sn_budget_config c;
    sn_budget_config_defaults(&c);
    ck_assert_int_eq(c.period, SN_PERIOD_DAY);
    ck_assert_double_eq(c.soft_ratio, 0.8);
    ck_assert_double_eq(c.hard_ratio, 1.0);
    ck_assert_int_eq(c.soft_severity, SN_SEV_HIGH);
    ck_assert_int_eq(c.hard_severity, SN_SEV_CRITICAL);
    ck_assert_ptr_nonnull(strstr(sn_budget_config_validate(&c), "amount")); /* must be set */
    c.amount = 50.0;
    ck_assert_ptr_null(sn_budget_config_validate(&c));
    sn_budget_config d = c;
    d.period = (sn_period)7;
    ck_assert_ptr_nonnull(strstr(sn_budget_config_validate(&d), "period"));
    d = c;
    d.amount = -1.0;
    ck_assert_ptr_nonnull(strstr(sn_budget_config_validate(&d), "amount"));
    d = c;
    d.hard_ratio = 0.0;
    ck_assert_ptr_nonnull(strstr(sn_budget_config_validate(&d), "hard_ratio"));
    d = c;
    d.soft_ratio = 1.2;
    ck_assert_ptr_nonnull(strstr(sn_budget_config_validate(&d), "soft_ratio"));
    d = c;
    d.soft_ratio = NAN;
    ck_assert_ptr_nonnull(strstr(sn_budget_config_validate(&d), "soft_ratio"));
    d = c;
    d.soft_severity = (sn_severity)0;
    ck_assert_ptr_nonnull(strstr(sn_budget_config_validate(&d), "soft_severity"));
    d = c;
    d.hard_severity = SN_SEV_LOW;
    ck_assert_ptr_nonnull(strstr(sn_budget_config_validate(&d), "hard_severity"));
    sn_verdict v;
    ck_assert(!sn_budget_add(&bs, &d, 0, 1000.0, &v));
    ck_assert(!v.ready);
    ck_assert(!bs.started);
}
END_TEST

START_TEST(budget_soft_and_hard_fire_once_per_period)
{
    int64_t t = SEC(T_2024_06_15_110000);
    sn_verdict v;
    ck_assert(!sn_budget_add(&bs, &bc, t, 50.0, &v));
    ck_assert(v.ready);
    ck_assert_int_eq(v.method, SN_DETECT_BUDGET);
    ck_assert_double_eq(v.value, 50.0);
    ck_assert_double_eq(v.baseline, 100.0);
    ck_assert_double_eq(v.threshold, 80.0);
    ck_assert(!sn_budget_add(&bs, &bc, t + 1, 29.5, &v)); /* 79.5 */
    ck_assert(sn_budget_add(&bs, &bc, t + 2, 0.5, &v));   /* 80: soft, at >= */
    ck_assert_int_eq(v.severity, SN_SEV_HIGH);
    ck_assert_double_eq(v.threshold, 80.0);
    ck_assert_double_eq(v.confidence, 0.99);
    ck_assert_int_eq(v.direction, 1);
    ck_assert(!sn_budget_add(&bs, &bc, t + 3, 10.0, &v)); /* 90: soft already fired */
    ck_assert(v.ready);
    ck_assert_double_eq(v.threshold, 100.0);
    ck_assert(sn_budget_add(&bs, &bc, t + 4, 10.0, &v)); /* 100: hard */
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    ck_assert_double_eq(v.threshold, 100.0);
    ck_assert(!sn_budget_add(&bs, &bc, t + 5, 500.0, &v)); /* way over, fired already */
    ck_assert_double_eq(v.value, 600.0);
    ck_assert(v.score > 0.8 && v.score <= 1.0);
    /* The next UTC day re-arms both levels and starts from 0. */
    int64_t next_day = SEC(T_2024_06_15_110000 + 13 * 3600);
    ck_assert(!sn_budget_add(&bs, &bc, next_day, 79.0, &v));
    ck_assert_double_eq(v.value, 79.0);
    ck_assert(sn_budget_add(&bs, &bc, next_day + 1, 1.0, &v));
    ck_assert_int_eq(v.severity, SN_SEV_HIGH);
    /* One amount over both levels fires hard only, and soft stays quiet afterwards. */
    int64_t day3 = next_day + SEC(86400);
    ck_assert(sn_budget_add(&bs, &bc, day3, 150.0, &v));
    ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
    ck_assert(bs.soft_fired && bs.hard_fired);
    ck_assert(!sn_budget_add(&bs, &bc, day3 + 1, 1.0, &v));
}
END_TEST

/* Spends 80 just before `boundary` (soft fires), then 80 at `boundary`: it must fire again
 * when boundary starts a new period, and not when it does not. */
static void check_rollover(sn_period p, int64_t boundary_s, bool new_period)
{
    sn_budget_init(&bs);
    bc.period = p;
    sn_verdict v;
    ck_assert(sn_budget_add(&bs, &bc, SEC(boundary_s) - 1, 80.0, &v));
    ck_assert_int_eq(v.severity, SN_SEV_HIGH);
    bool fired = sn_budget_add(&bs, &bc, SEC(boundary_s), 80.0, &v);
    ck_assert(v.ready);
    if (new_period) {
        ck_assert_msg(fired, "%s boundary at %lld did not roll over", sn_period_name(p),
                      (long long)boundary_s);
        ck_assert_int_eq(v.severity, SN_SEV_HIGH);
        ck_assert_double_eq(v.value, 80.0);
    } else {
        /* Same period: 160 >= 100 fires the hard level instead. */
        ck_assert(fired);
        ck_assert_int_eq(v.severity, SN_SEV_CRITICAL);
        ck_assert_double_eq(v.value, 160.0);
    }
}

START_TEST(budget_rolls_over_at_period_boundaries)
{
    check_rollover(SN_PERIOD_MINUTE, T_2024_06_15_110000, true);
    check_rollover(SN_PERIOD_MINUTE, T_2024_06_15_110000 + 30, false);
    check_rollover(SN_PERIOD_HOUR, T_2024_06_15_110000, true);
    check_rollover(SN_PERIOD_HOUR, T_2024_06_15_110000 + 60, false);
    check_rollover(SN_PERIOD_DAY, T_2024_03_01, true);
    check_rollover(SN_PERIOD_DAY, T_2024_06_15_110000, false);
    check_rollover(SN_PERIOD_DAY, 0, true);               /* across the epoch */
    check_rollover(SN_PERIOD_MONTH, T_2024_01_01, true);  /* Dec -> Jan */
    check_rollover(SN_PERIOD_MONTH, T_2025_01_01, true);  /* Dec -> Jan */
    check_rollover(SN_PERIOD_MONTH, T_2024_02_29, false); /* Feb 28 -> 29 in a leap year */
    check_rollover(SN_PERIOD_MONTH, T_2024_03_01, true);  /* Feb 29 -> Mar 1 */
    check_rollover(SN_PERIOD_MONTH, T_2023_03_01, true);  /* Feb 28 -> Mar 1, not leap */
    check_rollover(SN_PERIOD_MONTH, T_2100_03_01, true);  /* 2100 is not a leap year */
    check_rollover(SN_PERIOD_MONTH, T_2000_03_01, true);  /* 2000 is */
    check_rollover(SN_PERIOD_MONTH, T_2024_06_15_110000, false);
}
END_TEST

START_TEST(budget_month_accumulates_across_days)
{
    bc.period = SN_PERIOD_MONTH;
    bc.amount = 29.0 * 3.0;
    sn_verdict v;
    int fired = 0;
    /* $3 a day through February 2024 (29 days): soft on day 24 ($72 >= $69.6), hard on 29. */
    for (int d = 0; d < 29; d++) {
        if (sn_budget_add(&bs, &bc, SEC(T_2024_02_01 + d * 86400 + 3600), 3.0, &v)) {
            fired++;
            if (v.severity == SN_SEV_HIGH)
                ck_assert_int_eq(d + 1, 24);
            else
                ck_assert_int_eq(d + 1, 29);
        }
    }
    ck_assert_int_eq(fired, 2);
    ck_assert_double_eq_tol(bs.spent, 87.0, 1e-9);
    /* March 1 starts afresh. */
    ck_assert(!sn_budget_add(&bs, &bc, SEC(T_2024_03_01), 3.0, &v));
    ck_assert_double_eq(v.value, 3.0);
}
END_TEST

START_TEST(budget_bad_input_and_late_events)
{
    int64_t t = SEC(T_2024_06_15_110000);
    sn_verdict v;
    sn_budget_add(&bs, &bc, t, 10.0, &v);
    sn_budget saved = bs;
    double bad[] = {NAN, INFINITY, -INFINITY, -5.0};
    for (int i = 0; i < 4; i++) {
        ck_assert(!sn_budget_add(&bs, &bc, t, bad[i], &v));
        ck_assert(!v.ready && !v.anomaly);
        ck_assert_mem_eq(&bs, &saved, sizeof bs);
    }
    /* An amount from yesterday (a closed period) is not counted. */
    ck_assert(!sn_budget_add(&bs, &bc, t - SEC(86400), 90.0, &v));
    ck_assert(!v.ready);
    ck_assert_mem_eq(&bs, &saved, sizeof bs);
    /* Zero is a valid amount; earlier in the same period is fine. */
    ck_assert(!sn_budget_add(&bs, &bc, t - SEC(3600), 0.0, &v));
    ck_assert(v.ready);
    ck_assert_double_eq(v.value, 10.0);
    /* Huge amounts saturate instead of turning into Inf. */
    ck_assert(sn_budget_add(&bs, &bc, t, DBL_MAX, &v));
    ck_assert(!sn_budget_add(&bs, &bc, t, DBL_MAX, &v));
    ck_assert(v.ready);
    ck_assert(isfinite(bs.spent) && isfinite(v.value));
    ck_assert(v.score >= 0.0 && v.score <= 1.0);
    /* Negative timestamps work like any other. */
    sn_budget_init(&bs);
    ck_assert(sn_budget_add(&bs, &bc, SEC(-10), 85.0, &v));
    ck_assert_int_eq(bs.period, -1);
}
END_TEST

static Suite *threshold_suite(void)
{
    Suite *s = suite_create("detect_threshold");
    TCase *tc_static = tcase_create("static");
    tcase_add_checked_fixture(tc_static, setup, NULL);
    tcase_add_test(tc_static, threshold_defaults_set_no_level);
    tcase_add_test(tc_static, threshold_validate_names_the_bad_field);
    tcase_add_test(tc_static, upper_levels);
    tcase_add_test(tc_static, lower_levels_and_both_sides);
    tcase_add_test(tc_static, threshold_non_finite_and_huge);
    suite_add_tcase(s, tc_static);
    TCase *tc_period = tcase_create("period");
    tcase_add_test(tc_period, period_names);
    tcase_add_test(tc_period, period_index_boundaries);
    tcase_add_test(tc_period, period_start);
    suite_add_tcase(s, tc_period);
    TCase *tc_budget = tcase_create("budget");
    tcase_add_checked_fixture(tc_budget, setup, NULL);
    tcase_add_test(tc_budget, budget_defaults_and_validate);
    tcase_add_test(tc_budget, budget_soft_and_hard_fire_once_per_period);
    tcase_add_test(tc_budget, budget_rolls_over_at_period_boundaries);
    tcase_add_test(tc_budget, budget_month_accumulates_across_days);
    tcase_add_test(tc_budget, budget_bad_input_and_late_events);
    suite_add_tcase(s, tc_budget);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(threshold_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
