/*
 * threshold.h -- static thresholds and budgets: limits the user writes down, as opposed to
 * baselines learnt from the data.
 *
 * Static thresholds: up to four levels, each optional (NAN = not set): upper_warn,
 * upper_critical, lower_warn, lower_critical. A value strictly above an upper level (strictly
 * below a lower one) crosses it; the most severe level crossed gives the severity (warn:
 * warn_severity, default medium; critical: critical_severity, default critical). No baseline
 * is involved, so no cold start either.
 *
 * Budgets: a cost (or token) budget per period -- minute, hour, day or calendar month in UTC.
 * The budget state sums the amounts of the current period; the caller passes each amount's
 * event time (unix ns), so period roll-over is computed from the timestamps, never from a
 * clock. Two levels: soft at soft_ratio (80 %) and hard at hard_ratio (100 %) of the amount,
 * each reached when the period's sum is at or above it (spending exactly the budget exhausts
 * it), and each fires once per period.
 *
 * A crossed configured limit is a fact, not an inference: confidence is 0.99 for both.
 */
#ifndef SN_THRESHOLD_H
#define SN_THRESHOLD_H

#include "detect/detect.h"

#include <stdint.h>

typedef struct sn_threshold_config {
    double upper_warn;             /* NAN = not set; otherwise finite */
    double upper_critical;         /* NAN = not set; >= upper_warn when both are set */
    double lower_warn;             /* NAN = not set */
    double lower_critical;         /* NAN = not set; <= lower_warn when both are set */
    sn_severity warn_severity;     /* default SN_SEV_MEDIUM */
    sn_severity critical_severity; /* default SN_SEV_CRITICAL; >= warn_severity */
} sn_threshold_config;

/* Fills cfg with no level set and the default severities. */
void sn_threshold_config_defaults(sn_threshold_config *cfg);

/* Returns NULL when cfg is usable, else a static message naming the first bad field: a level
 * that is infinite, levels out of order, or every lower level not below every upper level. A
 * config with no level set is valid (and never ready). */
const char *sn_threshold_config_validate(const sn_threshold_config *cfg);

/* Checks x against the levels and fills *out (always). Not ready (returns false) when x is
 * not finite, no level is set, or cfg is invalid. out->threshold is the most severe level
 * crossed, else the nearer first level (warn if set, else critical); out->baseline and
 * out->deviation are NAN. The score is 0.5 at the first level on x's side and grows with the
 * distance past it relative to that level's magnitude. Returns out->anomaly. */
bool sn_threshold_check(const sn_threshold_config *cfg, double x, sn_verdict *out);

/* --- budgets --- */

typedef enum sn_period {
    SN_PERIOD_MINUTE = 0,
    SN_PERIOD_HOUR,
    SN_PERIOD_DAY,  /* UTC day */
    SN_PERIOD_MONTH /* UTC calendar month */
} sn_period;

/* "minute", "hour", "day", "month"; "unknown" when out of range. */
const char *sn_period_name(sn_period p);

/* Parses a period name. Returns 0 and sets *out, or -1 (*out untouched). */
int sn_period_from_name(const char *name, sn_period *out);

/* The number of the period holding t (unix ns, may be negative): floor(t / length) for
 * minute/hour/day, year * 12 + month - 1 for month. Consecutive periods have consecutive
 * numbers. An invalid p gives INT64_MIN. */
int64_t sn_period_index(sn_period p, int64_t t_unix_ns);

/* The first nanosecond of period index (as returned by sn_period_index); saturates at
 * INT64_MIN / INT64_MAX when that instant is outside int64 nanoseconds. */
int64_t sn_period_start_ns(sn_period p, int64_t index);

typedef struct sn_budget_config {
    sn_period period;          /* default day */
    double amount;             /* the budget per period, > 0; default NAN: must be set */
    double soft_ratio;         /* soft alert at this fraction; (0, hard_ratio]; default 0.8 */
    double hard_ratio;         /* hard alert at this fraction; > 0; default 1.0 */
    sn_severity soft_severity; /* default SN_SEV_HIGH */
    sn_severity hard_severity; /* default SN_SEV_CRITICAL; >= soft_severity */
} sn_budget_config;

typedef struct sn_budget {
    bool started;    /* false until the first accepted amount */
    int64_t period;  /* sn_period_index of the current period */
    double spent;    /* sum of the current period's amounts */
    bool soft_fired; /* the soft level fired in this period */
    bool hard_fired; /* the hard level fired in this period */
} sn_budget;

/* Fills cfg with the defaults above (amount NAN: validate fails until it is set). */
void sn_budget_config_defaults(sn_budget_config *cfg);

/* Returns NULL when cfg is usable, else a static message naming the first bad field. */
const char *sn_budget_config_validate(const sn_budget_config *cfg);

/* Starts st with nothing spent and no period. */
void sn_budget_init(sn_budget *st);

/* Adds amount, spent at t_unix_ns, to st and fills *out (always). If t is in a later period
 * than st's, the period rolls over first (sum 0, both levels re-armed). Not ready -- and st
 * left unchanged -- when amount is negative, NaN or infinite, when t lies in a period before
 * st's current one (that period is closed), or when cfg is invalid. When ready: out->value is
 * the period's sum, out->baseline the budget amount, out->threshold the next level to reach
 * (or the hard level once passed); out->anomaly is true exactly when this amount made the sum
 * reach a level that has not fired in this period -- the hard level when one amount reaches
 * both (the soft one is then marked fired too). Returns out->anomaly. st is the caller's. */
bool sn_budget_add(sn_budget *st, const sn_budget_config *cfg, int64_t t_unix_ns, double amount,
                   sn_verdict *out);

#endif
