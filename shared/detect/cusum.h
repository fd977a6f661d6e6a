/*
 * cusum.h -- the two-sided standardised CUSUM detector, for slow drift (cost creeping up a few
 * percent a day, latency degrading step by step) that no single value reveals.
 *
 * Each step standardises x against the baseline given with it, z = (x - mean) / s (s floored
 * as in the Z-score detector), and updates
 *     S+ = max(0, S+ + z - k)      S- = max(0, S- - z - k)
 * with slack k = 0.5 (half the shift, in sigmas, worth detecting quickly). It fires when S+ or
 * S- exceeds h = 5.0 (strictly), reports the side (+1 drift up, -1 drift down) and then resets
 * both sums to 0, so one drift gives one alert per h of accumulated evidence.
 *
 * Severity by how far past h the sum got: S >= critical (10.0 = 2 h) critical, S >= high
 * (7.5) high, else medium. A slow drift crosses h by a little (medium); a sudden jump shoots
 * far past it (critical). The drift magnitude is the classic estimate of the shift,
 * k + S / N sigmas (N = steps since that side's sum was last 0), reported in the verdict's
 * deviation (sigmas) and, times s, in sn_cusum.drift (value units).
 *
 * The state is a plain value: copy it to checkpoint, sn_cusum_init to start over.
 */
#ifndef SN_CUSUM_H
#define SN_CUSUM_H

#include "detect/detect.h"
#include "stats.h"

#include <stdint.h>

typedef struct sn_cusum_config {
    double k;               /* slack per step, in sigmas; >= 0; default 0.5 */
    double h;               /* decision threshold; > 0; default 5.0 */
    double high;            /* sum at or above: high; >= h; default 7.5 */
    double critical;        /* sum at or above: critical; >= high; default 10.0 */
    uint64_t min_samples;   /* no update and no verdict while the baseline has fewer; >= 1;
                               default 10 */
    sn_direction direction; /* sides that run and may fire (the other sum stays 0);
                               default both */
    double min_stddev;      /* floors as in sn_zscore_config; defaults 1e-9 and 0.01 */
    double min_stddev_rel;
} sn_cusum_config;

typedef struct sn_cusum {
    double s_hi;     /* S+: evidence of an upward shift, >= 0 */
    double s_lo;     /* S-: evidence of a downward shift, >= 0 */
    uint64_t n_hi;   /* steps since S+ was last 0 */
    uint64_t n_lo;   /* steps since S- was last 0 */
    uint64_t steps;  /* values accepted since init */
    uint64_t alarms; /* times it fired since init */
    double drift;    /* the last alarm's estimated shift in value units (signed); 0 before */
} sn_cusum;

/* Fills cfg with the defaults above. */
void sn_cusum_config_defaults(sn_cusum_config *cfg);

/* Returns NULL when cfg is usable, else a static message naming the first bad field. */
const char *sn_cusum_config_validate(const sn_cusum_config *cfg);

/* Starts st afresh: both sums 0, counters 0. */
void sn_cusum_init(sn_cusum *st);

/* Feeds x, standardised against b, into st and fills *out (always). Not ready -- and st left
 * exactly as it was -- during cold start (b->n < min_samples), when x, b->mean or b->stddev
 * is not finite, when b->stddev < 0, when the floored stddev is 0, or when cfg is invalid. When
 * ready: out->deviation is the estimated shift k + S/N in sigmas of the larger sum (signed),
 * out->threshold is h, out->baseline the mean, out->score sn_detect_score(S / h). Returns
 * out->anomaly (the sums were reset). st is owned by the caller; cfg and b are only read. */
bool sn_cusum_step(sn_cusum *st, const sn_cusum_config *cfg, const sn_summary *b, double x,
                   sn_verdict *out);

#endif
