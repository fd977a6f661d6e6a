/*
 * iqr.h -- the interquartile-range (Tukey fence) detector.
 *
 * Rule: with IQR = Q3 - Q1, a value above Q3 is d = (x - Q3) / IQR box-widths out (below Q1:
 * d = (Q1 - x) / IQR; inside the box d = 0). Anomaly when d > k (1.5, i.e. outside
 * [Q1 - 1.5 IQR, Q3 + 1.5 IQR]). Severity: d >= critical_k (3.0, at or beyond Q3 + 3 IQR /
 * Q1 - 3 IQR) critical; d >= high_k (2.25, half-way between the fences) high; otherwise medium.
 *
 * Zero IQR (at least half the baseline is one value): the IQR a normal distribution with the
 * baseline's stddev would have, 1.349 * stddev, is used instead when the stddev is finite and
 * > 0 (a metric that is 0 80 % of the time still gets a data-driven width). The result is then
 * raised to max(IQR, min_iqr, min_iqr_rel * |median|), as the Z-score floors its stddev; a
 * baseline constant at 100 gets IQR = 1, so fences at 98.5 / 101.5, and 103 or more is
 * critical. With both floors 0 and nothing to fall back on there is no verdict.
 *
 * deviation reports (x - median) / (IQR / 1.349): distance in robust sigmas (for normal data
 * the IQR is 1.349 sigma).
 */
#ifndef SN_IQR_H
#define SN_IQR_H

#include "detect/detect.h"
#include "stats.h"

#include <stdint.h>

typedef struct sn_iqr_config {
    double k;               /* fence multiplier; > 0; default 1.5 */
    double high_k;          /* d at or above: high; >= k; default 2.25 */
    double critical_k;      /* d at or above: critical; >= high_k; default 3.0 */
    uint64_t min_samples;   /* no verdict while the baseline has fewer; >= 1; default 10 */
    sn_direction direction; /* default both */
    double min_iqr;         /* absolute floor on the IQR; >= 0; default 1e-9 */
    double min_iqr_rel;     /* floor relative to |median|; >= 0; default 0.01 */
} sn_iqr_config;

/* Fills cfg with the defaults above. */
void sn_iqr_config_defaults(sn_iqr_config *cfg);

/* Returns NULL when cfg is usable, else a static message naming the first bad field. */
const char *sn_iqr_config_validate(const sn_iqr_config *cfg);

/* Scores x against b's quartiles and fills *out (always). Not ready (returns false) during
 * cold start, when x, b->q1, b->q3 or b->median is not finite, when q1 > q3, when the width
 * is 0 after the fallback and floors, or when cfg is invalid. out->baseline is the median,
 * out->threshold the fence on the value's side (Q3 + k IQR or Q1 - k IQR), out->score is
 * sn_detect_score(d / k). Returns out->anomaly. Nothing is kept; cfg and b are only read. */
bool sn_iqr_score(const sn_iqr_config *cfg, const sn_summary *b, double x, sn_verdict *out);

#endif
