/*
 * drift.h -- the CUSUM of cusum.h applied to interval means against an in-control reference:
 * slow drift (cost creeping up, latency degrading over minutes) without the false alarms of a
 * CUSUM fed with single calls.
 *
 * Values are collected per interval (at least `interval` ns and `min_calls` values; a quiet key
 * simply has longer intervals). When an interval closes, its mean m is standardised against the
 * reference -- the mean and variance of past interval means -- with
 *     z = (m - ref_mean) / max(sqrt(ref_var), s_w / sqrt(n))
 * (s_w the interval's own spread, so a young reference never scores finer than sampling noise),
 * and fed to sn_cusum_step (k, h, levels, reset after firing: the contract's CUSUM unchanged).
 * The reference is an exponentially weighted mean and variance over about `ref_intervals`
 * intervals, learnt only while the CUSUM is in control (both sums <= h / 2): a ramp freezes the
 * reference it is measured against instead of dragging it along, and after an alarm the reference
 * follows a lasting change slowly. No verdict until the reference holds cusum.min_samples
 * intervals.
 *
 * An interval that holds a value the caller reported by other means (sn_drift_explain: a spike
 * of the same key), or follows one that did, is dropped whole -- neither scored nor learnt: a
 * burst of spikes is not a drift, and a spike incident (whose later calls a baseline that
 * adopted the new level no longer reports) would otherwise leave a drift alarm at the next
 * interval close.
 *
 * The state is a plain value (checkpoint by copy); pure: time comes from the caller.
 */
#ifndef SN_DRIFT_H
#define SN_DRIFT_H

#include "detect/cusum.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sn_drift_config {
    sn_cusum_config cusum;  /* k, h, levels, direction, floors; min_samples = reference
                               intervals before a verdict */
    int64_t interval;       /* ns; > 0; default 60 s */
    uint32_t min_calls;     /* values per interval at least; >= 2; default 30 */
    uint32_t ref_intervals; /* reference span in intervals; >= 1; default 60 */
} sn_drift_config;

typedef struct sn_drift {
    sn_cusum cusum;
    int64_t start;     /* the open interval's first value time */
    double sum, sumsq; /* of (y - shift) over the open interval */
    double shift;      /* the reference mean when the interval opened (keeps sums small) */
    double ref_mean, ref_var;
    uint32_t n;             /* values in the open interval */
    uint32_t ref_n;         /* intervals learnt into the reference */
    uint32_t skipped;       /* intervals dropped because they were explained */
    uint8_t explained;      /* the open interval holds a reported value */
    uint8_t explained_prev; /* ... and so did the interval before it */
    uint8_t open;
} sn_drift;

/* Fills cfg: the CUSUM defaults (cusum.h), 60 s, 30 calls, 60 intervals. */
void sn_drift_config_defaults(sn_drift_config *cfg);

/* Returns NULL when cfg is usable, else a static message naming the bad field. */
const char *sn_drift_config_validate(const sn_drift_config *cfg);

/* Starts st afresh. */
void sn_drift_init(sn_drift *st);

/* Adds value y at time t (ns). When the open interval is complete (t - start >= interval and
 * n >= min_calls) it is closed first and *out holds its verdict (method CUSUM, value the
 * interval mean, baseline the reference mean, deviation the CUSUM shift estimate); then y opens
 * the next interval. Returns true when an interval was closed and scored (out->ready; check
 * out->anomaly); false otherwise (*out not ready). Non-finite y is ignored. st is the caller's;
 * cfg only read. */
bool sn_drift_add(sn_drift *st, const sn_drift_config *cfg, int64_t t, double y, sn_verdict *out);

/* sn_drift_add for a cfg that passed sn_drift_config_validate and has not changed since (the
 * engine checks its configs once when they are set): no check per value, and *out is written
 * only when an interval was closed (when it returns true it holds the ready verdict, as
 * sn_drift_add's would; when false it may be untouched). State changes are identical. */
bool sn_drift_add_valid(sn_drift *st, const sn_drift_config *cfg, int64_t t, double y,
                        sn_verdict *out);

/* Marks the open interval as explained by another anomaly of the key: it will be dropped. */
void sn_drift_explain(sn_drift *st);

#endif
