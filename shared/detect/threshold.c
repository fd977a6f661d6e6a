/*
 * threshold.c -- static thresholds and per-period budgets (see threshold.h). Calendar months
 * are computed from the timestamp with Howard Hinnant's civil-from-days algorithm: pure
 * integer arithmetic, valid for every int64 day count used here, no gmtime and no time zone.
 */
#include "detect/threshold.h"
#include "detect/internal.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#define NS_PER_SEC    INT64_C(1000000000)
#define NS_PER_MINUTE (60 * NS_PER_SEC)
#define NS_PER_HOUR   (3600 * NS_PER_SEC)
#define NS_PER_DAY    (86400 * NS_PER_SEC)

/* Below this magnitude a level counts as 0 when scaling the distance past it. */
#define LEVEL_EPS 1e-12

/* --- static thresholds --- */

void sn_threshold_config_defaults(sn_threshold_config *cfg)
{
    cfg->upper_warn = NAN;
    cfg->upper_critical = NAN;
    cfg->lower_warn = NAN;
    cfg->lower_critical = NAN;
    cfg->warn_severity = SN_SEV_MEDIUM;
    cfg->critical_severity = SN_SEV_CRITICAL;
}

static bool is_set(double level)
{
    return !isnan(level);
}

static bool valid_severity(sn_severity s)
{
    return s >= SN_SEV_LOW && s <= SN_SEV_CRITICAL;
}

const char *sn_threshold_config_validate(const sn_threshold_config *cfg)
{
    if (isinf(cfg->upper_warn))
        return "upper_warn must be finite";
    if (isinf(cfg->upper_critical))
        return "upper_critical must be finite";
    if (isinf(cfg->lower_warn))
        return "lower_warn must be finite";
    if (isinf(cfg->lower_critical))
        return "lower_critical must be finite";
    if (is_set(cfg->upper_warn) && is_set(cfg->upper_critical) &&
        cfg->upper_critical < cfg->upper_warn)
        return "upper_critical must be >= upper_warn";
    if (is_set(cfg->lower_warn) && is_set(cfg->lower_critical) &&
        cfg->lower_critical > cfg->lower_warn)
        return "lower_critical must be <= lower_warn";
    double lows[2] = {cfg->lower_warn, cfg->lower_critical};
    double ups[2] = {cfg->upper_warn, cfg->upper_critical};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            if (is_set(lows[i]) && is_set(ups[j]) && !(lows[i] < ups[j]))
                return "lower_warn and lower_critical must be below upper_warn and "
                       "upper_critical";
    if (!valid_severity(cfg->warn_severity))
        return "warn_severity must be low, medium, high or critical";
    if (!valid_severity(cfg->critical_severity) || cfg->critical_severity < cfg->warn_severity)
        return "critical_severity must be a severity >= warn_severity";
    return NULL;
}

/* r for the score: 1 at the level, 1 + dist/|level| beyond it, 1 - dist/|level| (down to 0)
 * before it. Never NaN; may be +Inf (score 1). */
static double level_ratio(double x, double level, int dir)
{
    double mag = fabs(level) > LEVEL_EPS ? fabs(level) : LEVEL_EPS;
    double past = (double)dir * (x * 0.5 - level * 0.5) / mag * 2.0; /* no overflow to NaN */
    double r = 1.0 + past;
    return r > 0.0 ? r : 0.0;
}

bool sn__threshold_check_valid(const sn_threshold_config *cfg, double x, sn_verdict *out)
{
    sn_verdict_init(out, SN_DETECT_THRESHOLD, x);
    if (!isfinite(x))
        return false;
    /* The first level on each side is the one reached first: warn if set, else critical. */
    double up0 = is_set(cfg->upper_warn) ? cfg->upper_warn : cfg->upper_critical;
    double lo0 = is_set(cfg->lower_warn) ? cfg->lower_warn : cfg->lower_critical;
    if (!is_set(up0) && !is_set(lo0))
        return false;

    int dir;
    if (!is_set(lo0))
        dir = 1;
    else if (!is_set(up0))
        dir = -1;
    else
        dir = x >= up0 * 0.5 + lo0 * 0.5 ? 1 : -1; /* the nearer side (midpoint, no overflow) */
    double first = dir > 0 ? up0 : lo0;
    double warn = dir > 0 ? cfg->upper_warn : cfg->lower_warn;
    double crit = dir > 0 ? cfg->upper_critical : cfg->lower_critical;

    out->ready = true;
    out->direction = dir;
    out->threshold = first;
    out->score = sn_detect_score(level_ratio(x, first, dir));
    if (is_set(crit) && (dir > 0 ? x > crit : x < crit)) {
        out->severity = cfg->critical_severity;
        out->threshold = crit;
    } else if (is_set(warn) && (dir > 0 ? x > warn : x < warn)) {
        out->severity = cfg->warn_severity;
        out->threshold = warn;
    } else {
        return false;
    }
    out->anomaly = true;
    out->confidence = 0.99;
    return true;
}

/* --- calendar arithmetic --- */

/* floor(a / b) for b > 0, correct for negative a. */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b) != 0 && a < 0)
        q--;
    return q;
}

/* Days since 1970-01-01 -> proleptic Gregorian year and month (1..12). */
static void civil_from_days(int64_t z, int64_t *y, int *m)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;                                      /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11], March = 0 */
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2 ? 1 : 0);
}

/* Proleptic Gregorian year, month (1..12) and day -> days since 1970-01-01. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2 ? 1 : 0;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static const char *const period_names[] = {
    [SN_PERIOD_MINUTE] = "minute",
    [SN_PERIOD_HOUR] = "hour",
    [SN_PERIOD_DAY] = "day",
    [SN_PERIOD_MONTH] = "month",
};

const char *sn_period_name(sn_period p)
{
    if ((unsigned)p > SN_PERIOD_MONTH)
        return "unknown";
    return period_names[p];
}

int sn_period_from_name(const char *name, sn_period *out)
{
    if (name == NULL)
        return -1;
    for (unsigned i = 0; i <= SN_PERIOD_MONTH; i++) {
        if (strcmp(period_names[i], name) == 0) {
            *out = (sn_period)i;
            return 0;
        }
    }
    return -1;
}

int64_t sn_period_index(sn_period p, int64_t t_unix_ns)
{
    switch (p) {
    case SN_PERIOD_MINUTE:
        return floor_div(t_unix_ns, NS_PER_MINUTE);
    case SN_PERIOD_HOUR:
        return floor_div(t_unix_ns, NS_PER_HOUR);
    case SN_PERIOD_DAY:
        return floor_div(t_unix_ns, NS_PER_DAY);
    case SN_PERIOD_MONTH: {
        int64_t y;
        int m;
        civil_from_days(floor_div(t_unix_ns, NS_PER_DAY), &y, &m);
        return y * 12 + (m - 1);
    }
    }
    return INT64_MIN;
}

/* count * unit, saturating instead of overflowing. */
static int64_t mul_sat(int64_t count, int64_t unit)
{
    if (count > INT64_MAX / unit)
        return INT64_MAX;
    if (count < INT64_MIN / unit)
        return INT64_MIN;
    return count * unit;
}

int64_t sn_period_start_ns(sn_period p, int64_t index)
{
    switch (p) {
    case SN_PERIOD_MINUTE:
        return mul_sat(index, NS_PER_MINUTE);
    case SN_PERIOD_HOUR:
        return mul_sat(index, NS_PER_HOUR);
    case SN_PERIOD_DAY:
        return mul_sat(index, NS_PER_DAY);
    case SN_PERIOD_MONTH: {
        /* Any month outside +-300 years of 1970 is outside int64 nanoseconds anyway. */
        if (index > 2300 * 12)
            return INT64_MAX;
        if (index < 1600 * 12)
            return INT64_MIN;
        int64_t y = floor_div(index, 12);
        int m = (int)(index - y * 12) + 1;
        return mul_sat(days_from_civil(y, m, 1), NS_PER_DAY);
    }
    }
    return INT64_MIN;
}

/* --- budgets --- */

void sn_budget_config_defaults(sn_budget_config *cfg)
{
    cfg->period = SN_PERIOD_DAY;
    cfg->amount = NAN;
    cfg->soft_ratio = 0.8;
    cfg->hard_ratio = 1.0;
    cfg->soft_severity = SN_SEV_HIGH;
    cfg->hard_severity = SN_SEV_CRITICAL;
}

const char *sn_budget_config_validate(const sn_budget_config *cfg)
{
    if ((unsigned)cfg->period > SN_PERIOD_MONTH)
        return "period must be minute, hour, day or month";
    if (!(cfg->amount > 0.0) || !isfinite(cfg->amount))
        return "amount must be a finite number > 0";
    if (!(cfg->hard_ratio > 0.0) || !isfinite(cfg->hard_ratio))
        return "hard_ratio must be a finite number > 0";
    if (!(cfg->soft_ratio > 0.0) || !(cfg->soft_ratio <= cfg->hard_ratio))
        return "soft_ratio must be > 0 and <= hard_ratio";
    if (!valid_severity(cfg->soft_severity))
        return "soft_severity must be low, medium, high or critical";
    if (!valid_severity(cfg->hard_severity) || cfg->hard_severity < cfg->soft_severity)
        return "hard_severity must be a severity >= soft_severity";
    return NULL;
}

void sn_budget_init(sn_budget *st)
{
    st->started = false;
    st->period = 0;
    st->spent = 0.0;
    st->soft_fired = false;
    st->hard_fired = false;
}

bool sn_budget_add(sn_budget *st, const sn_budget_config *cfg, int64_t t_unix_ns, double amount,
                   sn_verdict *out)
{
    sn_verdict_init(out, SN_DETECT_BUDGET, amount);
    if (sn_budget_config_validate(cfg) != NULL || !isfinite(amount) || amount < 0.0)
        return false;
    int64_t period = sn_period_index(cfg->period, t_unix_ns);
    if (st->started && period < st->period)
        return false; /* a closed period: not counted anywhere */
    if (!st->started || period > st->period) {
        st->started = true;
        st->period = period;
        st->spent = 0.0;
        st->soft_fired = false;
        st->hard_fired = false;
    }
    st->spent += amount;
    if (!isfinite(st->spent))
        st->spent = DBL_MAX;

    double soft = cfg->soft_ratio * cfg->amount;
    double hard = cfg->hard_ratio * cfg->amount;
    if (!isfinite(soft))
        soft = DBL_MAX;
    if (!isfinite(hard))
        hard = DBL_MAX;
    out->ready = true;
    out->value = st->spent;
    out->baseline = cfg->amount;
    out->direction = 1;
    out->threshold = st->spent >= soft ? hard : soft;
    out->score = sn_detect_score(st->spent / soft);

    if (st->spent >= hard && !st->hard_fired) {
        st->hard_fired = true;
        st->soft_fired = true;
        out->severity = cfg->hard_severity;
        out->threshold = hard;
    } else if (st->spent >= soft && !st->soft_fired) {
        st->soft_fired = true;
        out->severity = cfg->soft_severity;
        out->threshold = soft;
    } else {
        return false;
    }
    out->anomaly = true;
    out->confidence = 0.99;
    return true;
}

bool sn_threshold_check(const sn_threshold_config *cfg, double x, sn_verdict *out)
{
    if (sn_threshold_config_validate(cfg) != NULL) {
        sn_verdict_init(out, SN_DETECT_THRESHOLD, x);
        return false;
    }
    return sn__threshold_check_valid(cfg, x, out);
}
