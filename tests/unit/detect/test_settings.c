/* Unit tests for shared/detect/settings.c and the SN_ENSEMBLE_DESCRIPTORS table. */
#include "config.h"
#include "detect/settings.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <string.h>

typedef struct prog {
    int64_t other;
    sn_ensemble_config ens;
} prog;

static const sn_config_desc descs[] = {
    SN_CFG_INT("other", prog, other, "1", 0, 10, "something else"),
    SN_ENSEMBLE_DESCRIPTORS("detect", prog, ens),
};
#define NDESCS (sizeof descs / sizeof descs[0])

/* Loads the table's defaults (and optional YAML) into p. */
static void load(prog *p, const char *yaml, int expect_rc, sn_config_error *err)
{
    memset(p, 0, sizeof *p);
    sn_ensemble_config_defaults(&p->ens);
    sn_config *cfg = NULL;
    ck_assert_int_eq(sn_config_create(&cfg, descs, NDESCS, p, err), 0);
    if (yaml != NULL)
        ck_assert_int_eq(sn_config_load_yaml(cfg, yaml, strlen(yaml), "test.yaml", err), expect_rc);
    sn_config_destroy(cfg);
}

START_TEST(descriptor_defaults_equal_the_detectors_defaults)
{
    prog p;
    sn_config_error err = {{0}};
    load(&p, NULL, 0, &err);
    sn_ensemble_config want;
    memset(&want, 0, sizeof want); /* padding compares equal too */
    sn_ensemble_config_defaults(&want);
    /* Field by field, so a mismatch names itself. NAN levels compare via isnan. */
    ck_assert_int_eq(p.ens.zscore_enabled, want.zscore_enabled);
    ck_assert_double_eq(p.ens.zscore.threshold, want.zscore.threshold);
    ck_assert_double_eq(p.ens.zscore.high, want.zscore.high);
    ck_assert_double_eq(p.ens.zscore.critical, want.zscore.critical);
    ck_assert_uint_eq(p.ens.zscore.min_samples, want.zscore.min_samples);
    ck_assert_int_eq(p.ens.zscore.direction, want.zscore.direction);
    ck_assert_int_eq(p.ens.iqr_enabled, want.iqr_enabled);
    ck_assert_double_eq(p.ens.iqr.k, want.iqr.k);
    ck_assert_double_eq(p.ens.iqr.high_k, want.iqr.high_k);
    ck_assert_double_eq(p.ens.iqr.critical_k, want.iqr.critical_k);
    ck_assert_uint_eq(p.ens.iqr.min_samples, want.iqr.min_samples);
    ck_assert_int_eq(p.ens.mad_enabled, want.mad_enabled);
    ck_assert_double_eq(p.ens.mad.threshold, want.mad.threshold);
    ck_assert_double_eq(p.ens.mad.high, want.mad.high);
    ck_assert_double_eq(p.ens.mad.critical, want.mad.critical);
    ck_assert_int_eq(p.ens.cusum_enabled, want.cusum_enabled);
    ck_assert_double_eq(p.ens.cusum.k, want.cusum.k);
    ck_assert_double_eq(p.ens.cusum.h, want.cusum.h);
    ck_assert_double_eq(p.ens.cusum.high, want.cusum.high);
    ck_assert_double_eq(p.ens.cusum.critical, want.cusum.critical);
    ck_assert_int_eq(p.ens.threshold_enabled, want.threshold_enabled);
    ck_assert(isnan(p.ens.threshold.upper_warn) && isnan(want.threshold.upper_warn));
    ck_assert(isnan(p.ens.threshold.lower_critical) && isnan(want.threshold.lower_critical));
    ck_assert_uint_eq(p.ens.min_agree, want.min_agree);
    /* And, as a whole, what is loaded is exactly the defaults (NANs are the same bits). */
    ck_assert_int_eq(memcmp(&p.ens, &want, sizeof want), 0);
}
END_TEST

START_TEST(yaml_sets_thresholds_and_optional_levels)
{
    prog p;
    sn_config_error err = {{0}};
    load(&p,
         "detect:\n"
         "  zscore:\n"
         "    threshold: 2.5\n"
         "    direction: upper\n"
         "  threshold:\n"
         "    enabled: true\n"
         "    upper_warn: 100\n"
         "    lower_warn: off\n"
         "  min_agree: 2\n",
         0, &err);
    ck_assert_double_eq(p.ens.zscore.threshold, 2.5);
    ck_assert_int_eq(p.ens.zscore.direction, SN_DIR_UPPER);
    ck_assert(p.ens.threshold_enabled);
    ck_assert_double_eq(p.ens.threshold.upper_warn, 100.0);
    ck_assert(isnan(p.ens.threshold.lower_warn));
    ck_assert_uint_eq(p.ens.min_agree, 2);
    ck_assert_int_eq(sn_ensemble_settings_validate(&p.ens, "detect", &err), 0);
}
END_TEST

START_TEST(bad_values_name_the_setting)
{
    prog p;
    sn_config_error err = {{0}};
    load(&p, "detect:\n  mad:\n    threshold: -1\n", -EINVAL, &err);
    ck_assert_ptr_nonnull(strstr(err.msg, "detect.mad.threshold"));
    ck_assert_ptr_nonnull(strstr(err.msg, "test.yaml:3"));
    load(&p, "detect:\n  cusum:\n    direction: sideways\n", -EINVAL, &err);
    ck_assert_ptr_nonnull(strstr(err.msg, "detect.cusum.direction"));
    load(&p, "detect:\n  threshold:\n    upper_warn: lots\n", -EINVAL, &err);
    ck_assert_ptr_nonnull(strstr(err.msg, "detect.threshold.upper_warn"));
    load(&p, "detect:\n  min_agree: 0\n", -EINVAL, &err);
    ck_assert_ptr_nonnull(strstr(err.msg, "detect.min_agree"));
}
END_TEST

START_TEST(cross_field_validation_names_the_setting)
{
    prog p;
    sn_config_error err = {{0}};
    load(&p, "detect:\n  zscore:\n    high: 2\n", 0, &err);
    ck_assert_int_eq(sn_ensemble_settings_validate(&p.ens, "detect", &err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "config: detect.zscore.high"));

    load(&p,
         "detect:\n  threshold:\n    enabled: true\n    upper_warn: 10\n    upper_critical: 5\n", 0,
         &err);
    ck_assert_int_eq(sn_ensemble_settings_validate(&p.ens, "detect", &err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "config: detect.threshold."));
}
END_TEST

static Suite *settings_suite(void)
{
    Suite *s = suite_create("detect_settings");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, descriptor_defaults_equal_the_detectors_defaults);
    tcase_add_test(tc, yaml_sets_thresholds_and_optional_levels);
    tcase_add_test(tc, bad_values_name_the_setting);
    tcase_add_test(tc, cross_field_validation_names_the_setting);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(settings_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
