/*
 * detect.c -- severities, detector names, verdicts and the score/confidence formulas every
 * detector uses.
 */
#include "detect/detect.h"
#include "detect/internal.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

static const char *const severity_names[] = {
    [SN_SEV_NONE] = "none", [SN_SEV_LOW] = "low",           [SN_SEV_MEDIUM] = "medium",
    [SN_SEV_HIGH] = "high", [SN_SEV_CRITICAL] = "critical",
};

static const char *const detector_names[SN_DETECT_KIND_COUNT] = {
    [SN_DETECT_ZSCORE] = "z_score",
    [SN_DETECT_IQR] = "iqr",
    [SN_DETECT_MAD] = "mad",
    [SN_DETECT_CUSUM] = "cusum",
    [SN_DETECT_THRESHOLD] = "threshold",
    [SN_DETECT_BUDGET] = "budget",
};

static const char *const direction_names[] = {
    [SN_DIR_BOTH] = "both",
    [SN_DIR_UPPER] = "upper",
    [SN_DIR_LOWER] = "lower",
};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Index of name in names[0..n), or -1. NULL name never matches. */
static int lookup(const char *const *names, size_t n, const char *name)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return (int)i;
    return -1;
}

const char *sn_severity_name(sn_severity s)
{
    if ((unsigned)s >= COUNT_OF(severity_names))
        return "unknown";
    return severity_names[s];
}

int sn_severity_from_name(const char *name, sn_severity *out)
{
    int i = lookup(severity_names, COUNT_OF(severity_names), name);
    if (i < 0)
        return -1;
    *out = (sn_severity)i;
    return 0;
}

const char *sn_detector_name(sn_detector_kind k)
{
    if ((unsigned)k >= SN_DETECT_KIND_COUNT)
        return "unknown";
    return detector_names[k];
}

int sn_detector_from_name(const char *name, sn_detector_kind *out)
{
    int i = lookup(detector_names, SN_DETECT_KIND_COUNT, name);
    if (i < 0)
        return -1;
    *out = (sn_detector_kind)i;
    return 0;
}

const char *sn_direction_name(sn_direction d)
{
    if ((unsigned)d >= COUNT_OF(direction_names))
        return "unknown";
    return direction_names[d];
}

int sn_direction_from_name(const char *name, sn_direction *out)
{
    int i = lookup(direction_names, COUNT_OF(direction_names), name);
    if (i < 0)
        return -1;
    *out = (sn_direction)i;
    return 0;
}

void sn_verdict_init(sn_verdict *v, sn_detector_kind k, double x)
{
    v->method = k;
    v->ready = false;
    v->anomaly = false;
    v->severity = SN_SEV_NONE;
    v->score = 0.0;
    v->confidence = 0.0;
    v->value = x;
    v->baseline = NAN;
    v->threshold = NAN;
    v->deviation = NAN;
    v->direction = 0;
}

double sn_detect_score(double r)
{
    if (!(r > 0.0)) /* NaN, 0 and negative */
        return 0.0;
    if (isinf(r))
        return 1.0;
    return 1.0 - 1.0 / (1.0 + r);
}

double sn_detect_confidence(double r)
{
    if (!(r > 1.0)) /* NaN and anything at or below the threshold */
        return 0.5;
    double c = 0.5 + 0.49 * (1.0 - exp(-2.0 * (r - 1.0)));
    if (c > 0.99)
        c = 0.99;
    return c;
}
