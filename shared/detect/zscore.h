/*
 * zscore.h -- the Z-score detector: how many standard deviations a value is from the
 * baseline mean.
 *
 * Rule: z = (x - mean) / s, anomaly when |z| > threshold (3.0; strictly greater, so z = 3.0
 * exactly is not an anomaly). Severity: |z| >= critical (6.0) critical, >= high (4.0) high,
 * otherwise medium. s is the baseline's stddev raised to a floor (see below).
 *
 * Zero variance: a constant baseline has stddev 0, and dividing by it would turn any change
 * into an infinite z. s is therefore max(stddev, min_stddev, min_stddev_rel * |mean|): with
 * the defaults, a baseline constant at 100 ms gets s = 1 ms, so 101 ms scores z = 1 (quiet)
 * while 110 ms scores z = 10 (critical). A baseline constant at 0 uses min_stddev alone.
 */
#ifndef SN_ZSCORE_H
#define SN_ZSCORE_H

#include "detect/detect.h"
#include "stats.h"

#include <stdint.h>

typedef struct sn_zscore_config {
    double threshold;       /* |z| above this is an anomaly (medium); > 0; default 3.0 */
    double high;            /* |z| at or above: high; >= threshold; default 4.0 */
    double critical;        /* |z| at or above: critical; >= high; default 6.0 */
    uint64_t min_samples;   /* no verdict while the baseline has fewer; >= 1; default 10 */
    sn_direction direction; /* which side is anomalous; default both */
    double min_stddev;      /* absolute floor on the stddev; >= 0; default 1e-9 */
    double min_stddev_rel;  /* floor relative to |mean|; >= 0; default 0.01 (1 %) */
} sn_zscore_config;

/* Fills cfg with the defaults above. */
void sn_zscore_config_defaults(sn_zscore_config *cfg);

/* Returns NULL when cfg is usable, else a static message naming the first bad field. */
const char *sn_zscore_config_validate(const sn_zscore_config *cfg);

/* Scores x against baseline b and fills *out (always). out->ready is false -- and the return
 * value false -- during cold start (b->n < min_samples), when x, b->mean or b->stddev is not
 * finite, when b->stddev < 0, when the floored stddev is 0 (both floors set to 0), or when cfg
 * is invalid. Otherwise out->baseline is the mean,
 * out->deviation is z, out->threshold is mean +- threshold * s on the value's side. Returns
 * out->anomaly. Nothing is kept; cfg and b are only read. */
bool sn_zscore_score(const sn_zscore_config *cfg, const sn_summary *b, double x, sn_verdict *out);

#endif
