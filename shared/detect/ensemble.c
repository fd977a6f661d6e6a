/*
 * ensemble.c -- several detectors on one value; strongest verdict and agreement (see
 * ensemble.h for the rules).
 */
#include "detect/ensemble.h"
#include "detect/internal.h"

#include <math.h>
#include <stddef.h>

void sn_ensemble_config_defaults(sn_ensemble_config *cfg)
{
    cfg->zscore_enabled = true;
    sn_zscore_config_defaults(&cfg->zscore);
    cfg->iqr_enabled = true;
    sn_iqr_config_defaults(&cfg->iqr);
    cfg->mad_enabled = true;
    sn_mad_config_defaults(&cfg->mad);
    cfg->cusum_enabled = true;
    sn_cusum_config_defaults(&cfg->cusum);
    cfg->threshold_enabled = false;
    sn_threshold_config_defaults(&cfg->threshold);
    cfg->min_agree = 1;
}

const char *sn_ensemble_config_validate(const sn_ensemble_config *cfg, sn_detector_kind *which)
{
    sn_detector_kind bad = SN_DETECT_KIND_COUNT;
    const char *err = NULL;
    if (cfg->zscore_enabled && (err = sn_zscore_config_validate(&cfg->zscore)) != NULL)
        bad = SN_DETECT_ZSCORE;
    else if (cfg->iqr_enabled && (err = sn_iqr_config_validate(&cfg->iqr)) != NULL)
        bad = SN_DETECT_IQR;
    else if (cfg->mad_enabled && (err = sn_mad_config_validate(&cfg->mad)) != NULL)
        bad = SN_DETECT_MAD;
    else if (cfg->cusum_enabled && (err = sn_cusum_config_validate(&cfg->cusum)) != NULL)
        bad = SN_DETECT_CUSUM;
    else if (cfg->threshold_enabled &&
             (err = sn_threshold_config_validate(&cfg->threshold)) != NULL)
        bad = SN_DETECT_THRESHOLD;
    else if (!cfg->zscore_enabled && !cfg->iqr_enabled && !cfg->mad_enabled &&
             !cfg->cusum_enabled && !cfg->threshold_enabled)
        err = "at least one detector must be enabled";
    else if (cfg->min_agree < 1)
        err = "min_agree must be >= 1";
    if (err != NULL && which != NULL)
        *which = bad;
    return err;
}

void sn_ensemble_init(sn_ensemble *st)
{
    sn_cusum_init(&st->cusum);
}

/* True when a is a stronger verdict than b (see ensemble.h); earlier kinds win exact ties
 * because the caller only replaces on strictly stronger. */
static bool stronger(const sn_verdict *a, const sn_verdict *b)
{
    if (a->anomaly != b->anomaly)
        return a->anomaly;
    if (a->severity != b->severity)
        return a->severity > b->severity;
    return a->score > b->score;
}

bool sn_ensemble_evaluate(sn_ensemble *st, const sn_ensemble_config *cfg, const sn_summary *b,
                          double x, sn_ensemble_result *out)
{
    if (sn_ensemble_config_validate(cfg, NULL) != NULL) {
        out->ready = 0;
        out->fired = 0;
        out->agreed = 0;
        for (int k = 0; k < SN_DETECT_KIND_COUNT; k++)
            sn_verdict_init(&out->each[k], (sn_detector_kind)k, x);
        sn_verdict_init(&out->best, SN_DETECT_ZSCORE, x);
        return false;
    }
    return sn_ensemble_evaluate_valid(st, cfg, b, x, out);
}

bool sn_ensemble_evaluate_valid(sn_ensemble *st, const sn_ensemble_config *cfg, const sn_summary *b,
                                double x, sn_ensemble_result *out)
{
    out->ready = 0;
    out->fired = 0;
    out->agreed = 0;
    /* Each enabled detector fills its own verdict; only the others are reset here. */
    if (cfg->zscore_enabled)
        sn__zscore_score_valid(&cfg->zscore, b, x, &out->each[SN_DETECT_ZSCORE]);
    else
        sn_verdict_init(&out->each[SN_DETECT_ZSCORE], SN_DETECT_ZSCORE, x);
    if (cfg->iqr_enabled)
        sn__iqr_score_valid(&cfg->iqr, b, x, &out->each[SN_DETECT_IQR]);
    else
        sn_verdict_init(&out->each[SN_DETECT_IQR], SN_DETECT_IQR, x);
    if (cfg->mad_enabled)
        sn__mad_score_valid(&cfg->mad, b, x, &out->each[SN_DETECT_MAD]);
    else
        sn_verdict_init(&out->each[SN_DETECT_MAD], SN_DETECT_MAD, x);
    if (cfg->cusum_enabled)
        sn__cusum_step_valid(&st->cusum, &cfg->cusum, b, x, &out->each[SN_DETECT_CUSUM]);
    else
        sn_verdict_init(&out->each[SN_DETECT_CUSUM], SN_DETECT_CUSUM, x);
    if (cfg->threshold_enabled)
        sn__threshold_check_valid(&cfg->threshold, x, &out->each[SN_DETECT_THRESHOLD]);
    else
        sn_verdict_init(&out->each[SN_DETECT_THRESHOLD], SN_DETECT_THRESHOLD, x);
    sn_verdict_init(&out->each[SN_DETECT_BUDGET], SN_DETECT_BUDGET, x);

    const sn_verdict *best = NULL;
    for (int k = 0; k < SN_DETECT_KIND_COUNT; k++) {
        const sn_verdict *v = &out->each[k];
        if (!v->ready)
            continue;
        out->ready++;
        if (v->anomaly)
            out->fired++;
        if (best == NULL || stronger(v, best))
            best = v;
    }
    if (best == NULL) {
        sn_verdict_init(&out->best, SN_DETECT_ZSCORE, x);
        return false;
    }
    out->best = *best;
    if (!best->anomaly)
        return false;

    for (int k = 0; k < SN_DETECT_KIND_COUNT; k++) {
        const sn_verdict *v = &out->each[k];
        if (v->ready && v->anomaly && v->direction == best->direction)
            out->agreed++;
    }
    if (out->agreed < cfg->min_agree) {
        out->best.anomaly = false;
        out->best.severity = SN_SEV_NONE;
        out->best.confidence = 0.0;
        return false;
    }
    double c = 0.99 - (0.99 - best->confidence) * ldexp(1.0, -(int)(out->agreed - 1));
    out->best.confidence = c > 0.99 ? 0.99 : (c < 0.5 ? 0.5 : c);
    return true;
}

/* True when detector deviation m on side dir is beyond threshold and that side is reported:
 * the anomaly condition of sn__judge after the direction check. */
static bool fires(double m, double threshold, sn_direction allowed, int dir)
{
    return m > threshold && sn__direction_allows(allowed, dir);
}

/* The Z-score's and the MAD's rule: x standardised around centre by scale s (> 0) is beyond
 * threshold on a reported side. */
static bool centred_fires(double x, double centre, double s, double threshold, sn_direction d)
{
    /* A value on a side that is not reported never fires, so the division is skipped there.
     * Exact: x <= centre gives z <= 0 (halving and dividing by s > 0 keep the order), which is
     * the lower side or 0, and 0 > threshold is false (threshold > 0: the config is valid);
     * x >= centre gives z >= 0, the upper side. */
    if ((d == SN_DIR_UPPER && !(x > centre)) || (d == SN_DIR_LOWER && !(x < centre)))
        return false;
    double z = sn__standardise(x, centre, s);
    return fires(fabs(z), threshold, d, z < 0.0 ? -1 : 1);
}

bool sn_ensemble_quiet_valid(const sn_ensemble_config *cfg, const sn_summary *b, double x,
                             unsigned *ready)
{
    if (cfg->cusum_enabled)
        return false;
    unsigned r = 0;
    if (!isfinite(x)) { /* no detector has a verdict for it */
        *ready = 0;
        return true;
    }
    if (cfg->zscore_enabled) {
        double s = sn__zscore_scale(&cfg->zscore, b);
        if (s > 0.0) {
            if (centred_fires(x, b->mean, s, cfg->zscore.threshold, cfg->zscore.direction))
                return false;
            r |= 1u << SN_DETECT_ZSCORE;
        }
    }
    if (cfg->iqr_enabled) {
        double iqr = sn__iqr_scale(&cfg->iqr, b);
        if (iqr > 0.0) {
            int dir;
            double d = sn__iqr_beyond(b, iqr, x, &dir);
            if (fires(d, cfg->iqr.k, cfg->iqr.direction, dir))
                return false;
            r |= 1u << SN_DETECT_IQR;
        }
    }
    if (cfg->mad_enabled) {
        double s = sn__mad_scale(&cfg->mad, b);
        if (s > 0.0) {
            if (centred_fires(x, b->median, s, cfg->mad.threshold, cfg->mad.direction))
                return false;
            r |= 1u << SN_DETECT_MAD;
        }
    }
    if (cfg->threshold_enabled) {
        sn_verdict v;
        if (sn__threshold_check_valid(&cfg->threshold, x, &v))
            return false;
        if (v.ready)
            r |= 1u << SN_DETECT_THRESHOLD;
    }
    *ready = r;
    return true;
}
