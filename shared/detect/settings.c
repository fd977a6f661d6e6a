/*
 * settings.c -- validation of the ensemble settings, with messages that name the setting.
 */
#include "detect/settings.h"

#include <errno.h>
#include <stdio.h>

const char *const sn_direction_names[] = {"both", "upper", "lower", NULL};

/* The path segment of each detector kind in the settings. */
static const char *const kind_segment[SN_DETECT_KIND_COUNT + 1] = {
    [SN_DETECT_ZSCORE] = "zscore",
    [SN_DETECT_IQR] = "iqr",
    [SN_DETECT_MAD] = "mad",
    [SN_DETECT_CUSUM] = "cusum",
    [SN_DETECT_THRESHOLD] = "threshold",
    [SN_DETECT_BUDGET] = "budget",
    [SN_DETECT_KIND_COUNT] = NULL,
};

int sn_ensemble_settings_validate(const sn_ensemble_config *cfg, const char *prefix,
                                  sn_config_error *err)
{
    sn_detector_kind which = SN_DETECT_KIND_COUNT;
    const char *msg = sn_ensemble_config_validate(cfg, &which);
    if (msg == NULL)
        return 0;
    /* The detectors' messages start with the field name ("high must be >= threshold"). */
    if (which < SN_DETECT_KIND_COUNT)
        snprintf(err->msg, sizeof err->msg, "config: %s.%s.%s", prefix, kind_segment[which], msg);
    else
        snprintf(err->msg, sizeof err->msg, "config: %s.%s", prefix, msg);
    return -EINVAL;
}
