/*
 * settings.h -- configuration descriptors for the detector ensemble.
 *
 * Every program that detects (sidecar, aggregator, sentinel-detect) exposes the same settings
 * under a prefix of its choosing, e.g. "detect":
 *
 *   detect.zscore.enabled / .threshold / .high / .critical / .min_samples / .direction
 *   detect.iqr.enabled / .k / .high_k / .critical_k / .min_samples / .direction
 *   detect.mad.enabled / .threshold / .high / .critical / .min_samples / .direction
 *   detect.cusum.enabled / .k / .h / .high / .critical / .min_samples / .direction
 *   detect.threshold.enabled / .upper_warn / .upper_critical / .lower_warn / .lower_critical
 *   detect.min_agree
 *
 * SN_ENSEMBLE_DESCRIPTORS expands to descriptor initialisers binding those paths to an
 * sn_ensemble_config member of the program's config struct; their defaults are the detectors'
 * own (sn_ensemble_config_defaults), which a unit test keeps in step. Settings a detector has
 * but the descriptors do not expose (the standard-deviation floors, the threshold severities)
 * keep the values sn_ensemble_config_defaults() gives them: call it on the member before
 * loading.
 */
#ifndef SN_DETECT_SETTINGS_H
#define SN_DETECT_SETTINGS_H

#include "config.h"
#include "detect/ensemble.h"

/* "both", "upper", "lower", NULL: the choices of the direction settings. */
extern const char *const sn_direction_names[];

/* Cross-field validation of a loaded ensemble config (levels in order, etc.). Returns 0, or
 * -EINVAL with a one-line message in err naming the setting under prefix:
 * "config: detect.zscore.high: must be >= threshold". */
int sn_ensemble_settings_validate(const sn_ensemble_config *cfg, const char *prefix,
                                  sn_config_error *err);

#define SN__DETECT_LEVELS(P, T, F, name, thr, hi, crit, dthr, dhi, dcrit)                          \
    SN_CFG_BOOL(P "." #name ".enabled", T, F.name##_enabled, "true",                               \
                "run the " #name " detector"),                                                     \
        SN_CFG_POSITIVE(P "." #name "." #thr, T, F.name.thr, dthr,                                 \
                        #name ": anomaly from here (medium severity)"),                            \
        SN_CFG_POSITIVE(P "." #name "." #hi, T, F.name.hi, dhi,                                    \
                        #name ": high severity from here"),                                        \
        SN_CFG_POSITIVE(P "." #name "." #crit, T, F.name.crit, dcrit,                              \
                        #name ": critical severity from here"),                                    \
        SN_CFG_INT(P "." #name ".min_samples", T, F.name.min_samples, "10", 1, 100000000,          \
                   #name ": no verdict while the baseline has fewer samples"),                     \
        SN_CFG_ENUM(P "." #name ".direction", T, F.name.direction, "both", sn_direction_names,     \
                    #name ": which side is anomalous: both, upper or lower")

#define SN__DETECT_OPTIONAL(p, T, F, h)                                                            \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_DOUBLE, T, F, "off", h),                                              \
            .flags = SN_CONFIG_OPTIONAL | SN_CONFIG_HAS_MIN | SN_CONFIG_HAS_MAX, .dmin = -1e300,   \
            .dmax = 1e300                                                                          \
    }

/* P: path prefix (a string literal), T: the config struct, F: its sn_ensemble_config member.
 * The default texts repeat sn_ensemble_config_defaults(); a unit test keeps them equal. */
#define SN_ENSEMBLE_DESCRIPTORS(P, T, F)                                                           \
    SN__DETECT_LEVELS(P, T, F, zscore, threshold, high, critical, "3.0", "4.0", "6.0"),            \
        SN__DETECT_LEVELS(P, T, F, iqr, k, high_k, critical_k, "1.5", "2.25", "3.0"),              \
        SN__DETECT_LEVELS(P, T, F, mad, threshold, high, critical, "3.5", "5.0", "7.0"),           \
        SN__DETECT_LEVELS(P, T, F, cusum, h, high, critical, "5.0", "7.5", "10.0"),                \
        SN_CFG_DOUBLE(P ".cusum.k", T, F.cusum.k, "0.5", 0.0, 1000.0,                              \
                      "cusum: slack per step, in standard deviations"),                            \
        SN_CFG_BOOL(P ".threshold.enabled", T, F.threshold_enabled, "false",                       \
                    "run the static threshold detector"),                                          \
        SN__DETECT_OPTIONAL(P ".threshold.upper_warn", T, F.threshold.upper_warn,                  \
                            "static threshold: medium above this value (off = none)"),             \
        SN__DETECT_OPTIONAL(P ".threshold.upper_critical", T, F.threshold.upper_critical,          \
                            "static threshold: critical above this value (off = none)"),           \
        SN__DETECT_OPTIONAL(P ".threshold.lower_warn", T, F.threshold.lower_warn,                  \
                            "static threshold: medium below this value (off = none)"),             \
        SN__DETECT_OPTIONAL(P ".threshold.lower_critical", T, F.threshold.lower_critical,          \
                            "static threshold: critical below this value (off = none)"),           \
        SN_CFG_INT(P ".min_agree", T, F.min_agree, "1", 1, SN_DETECT_KIND_COUNT,                   \
                   "detectors that must agree before a value is an anomaly")

#endif
