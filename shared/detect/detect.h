/*
 * detect.h -- what every detector shares: severities, detector names, directions and the
 * verdict a detector returns for one value.
 *
 * Detectors are pure (design.md, principle 4): a config struct, sometimes a small state struct,
 * and functions that score one value against a baseline summary (stats.h). They do no I/O, read
 * no clock and never allocate, so the sidecar, the aggregator and the offline backtest run the
 * same code. Time, where a detector needs it (budgets), is passed in by the caller.
 *
 * Conventions for every detector module (zscore, iqr, mad, cusum, threshold, ensemble):
 *   sn_X_config_defaults(cfg)   fills cfg with contracts.md's defaults;
 *   sn_X_config_validate(cfg)   returns NULL when cfg is usable, else a static message that
 *                               names the bad field ("threshold must be > 0");
 *   the scoring call            always fills an sn_verdict. ready=false means "no verdict":
 *                               cold start, a NaN/Inf value or baseline, or an invalid config.
 *                               A value that is not ready is never an anomaly.
 */
#ifndef SN_DETECT_H
#define SN_DETECT_H

#include <stdbool.h>

/* How bad an anomaly is. SN_SEV_NONE means "no anomaly"; the others are the alert JSON's
 * "low|medium|high|critical" and compare with < and >. */
typedef enum sn_severity {
    SN_SEV_NONE = 0,
    SN_SEV_LOW,
    SN_SEV_MEDIUM,
    SN_SEV_HIGH,
    SN_SEV_CRITICAL
} sn_severity;

/* The detectors, named as the alert JSON's detection_method. */
typedef enum sn_detector_kind {
    SN_DETECT_ZSCORE = 0,
    SN_DETECT_IQR,
    SN_DETECT_MAD,
    SN_DETECT_CUSUM,
    SN_DETECT_THRESHOLD,
    SN_DETECT_BUDGET,
    SN_DETECT_KIND_COUNT
} sn_detector_kind;

/* Which side of the baseline counts as anomalous (latency: upper; throughput: lower). */
typedef enum sn_direction { SN_DIR_BOTH = 0, SN_DIR_UPPER, SN_DIR_LOWER } sn_direction;

/* The outcome of scoring one value. Filled completely by every scoring call. */
typedef struct sn_verdict {
    sn_detector_kind method; /* which detector produced it */
    bool ready;              /* false: no verdict (cold start, invalid input or config) */
    bool anomaly;            /* true only when ready */
    sn_severity severity;    /* SN_SEV_NONE unless anomaly */
    double score;            /* [0, 1]: 0 = at the baseline, 0.5 = at the threshold, -> 1 */
    double confidence;       /* [0.5, 0.99] when anomaly, 0 otherwise */
    double value;            /* the value scored (for budgets: the amount spent this period) */
    double baseline;         /* the centre compared against (mean, median; budget amount) */
    double threshold;        /* the boundary crossed or nearest, in the value's unit (CUSUM: h) */
    double deviation;        /* in sigmas where meaningful; NAN for thresholds and budgets */
    int direction;           /* +1 above the baseline, -1 below, 0 when not ready */
} sn_verdict;

/* "none", "low", "medium", "high", "critical"; "unknown" when s is out of range. Static
 * storage; never NULL. */
const char *sn_severity_name(sn_severity s);

/* Parses "low|medium|high|critical" (and "none"). Returns 0 and sets *out, or -1 when the
 * name is unknown (*out untouched). */
int sn_severity_from_name(const char *name, sn_severity *out);

/* "z_score", "iqr", "mad", "cusum", "threshold", "budget"; "unknown" when out of range. */
const char *sn_detector_name(sn_detector_kind k);

/* Parses a detection_method name. Returns 0 and sets *out, or -1 (*out untouched). */
int sn_detector_from_name(const char *name, sn_detector_kind *out);

/* "both", "upper", "lower"; "unknown" when out of range. */
const char *sn_direction_name(sn_direction d);

/* Parses a direction name. Returns 0 and sets *out, or -1 (*out untouched). */
int sn_direction_from_name(const char *name, sn_direction *out);

/* Resets *v to "no verdict" for detector k and value x: ready=false, anomaly=false,
 * severity NONE, score and confidence 0, baseline/threshold/deviation NAN, direction 0. */
void sn_verdict_init(sn_verdict *v, sn_detector_kind k, double x);

/* The score of a value that is r thresholds away from the baseline (r = |deviation| /
 * threshold, r >= 0): 1 - 1/(1 + r). 0 at the baseline, 0.5 at the threshold, tends to 1;
 * strictly increasing in r. NaN or negative r gives 0; +Inf gives 1. */
double sn_detect_score(double r);

/* The confidence of an anomaly r >= 1 thresholds away: 0.5 + 0.49 * (1 - exp(-2 (r - 1))),
 * i.e. 0.5 at the threshold, ~0.92 at twice the threshold, tending to 0.99; clamped to
 * [0.5, 0.99] for any r (NaN gives 0.5). */
double sn_detect_confidence(double r);

#endif
