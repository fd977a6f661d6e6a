/* Unit tests for injector/yamljson.c and inject_cli.c: YAML <-> JSON and offline injection. */
#include "inject_cli.h"
#include "jsonpatch.h"
#include "yamljson.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static json_t *load(const char *yaml)
{
    json_t *docs;
    char err[256];
    ck_assert_msg(sn_yaml_load(yaml, strlen(yaml), &docs, err, sizeof err) == 0, "%s", err);
    return docs;
}

START_TEST(scalars_resolve_like_kubectl)
{
    json_t *d = load("a: true\nb: \"true\"\nc: 1.0\nd: '1.0'\ne: 0755\nf: \"0755\"\ng: ~\n"
                     "h: 0x1F\ni: yes\nj: text\nk: -12\nl: 1e3\nm: !!str 42\nn: \"\"\no:\n");
    json_t *o = json_array_get(d, 0);
    ck_assert(json_is_true(json_object_get(o, "a")));
    ck_assert_str_eq(json_string_value(json_object_get(o, "b")), "true");
    ck_assert(json_is_real(json_object_get(o, "c")));
    ck_assert_str_eq(json_string_value(json_object_get(o, "d")), "1.0");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "e")), 493);
    ck_assert_str_eq(json_string_value(json_object_get(o, "f")), "0755");
    ck_assert(json_is_null(json_object_get(o, "g")));
    ck_assert_int_eq(json_integer_value(json_object_get(o, "h")), 31);
    ck_assert(json_is_true(json_object_get(o, "i")));
    ck_assert_str_eq(json_string_value(json_object_get(o, "j")), "text");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "k")), -12);
    ck_assert_double_eq(json_real_value(json_object_get(o, "l")), 1000.0);
    ck_assert_str_eq(json_string_value(json_object_get(o, "m")), "42");
    ck_assert_str_eq(json_string_value(json_object_get(o, "n")), "");
    ck_assert(json_is_null(json_object_get(o, "o")));
    /* key order is kept */
    const char *first = json_object_iter_key(json_object_iter(o));
    ck_assert_str_eq(first, "a");
    json_decref(d);
}
END_TEST

START_TEST(dump_quotes_what_would_change_type)
{
    json_t *docs =
        json_pack("[{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:i, s:f, s:s}, {s:[]}]", "t", "true",
                  "f", "1.0", "o", "0755", "e", "", "n", "null", "d", "2024-01-01", "plain",
                  "hello world", "b", 1, "i", 420, "r", 1.0, "multi", "a\nb\n", "empty", NULL);
    ck_assert_ptr_nonnull(docs);
    char *out;
    size_t len;
    char err[256];
    ck_assert_int_eq(sn_yaml_dump(docs, &out, &len, err, sizeof err), 0);
    ck_assert(strstr(out, "t: \"true\"") != NULL);
    ck_assert(strstr(out, "f: \"1.0\"") != NULL);
    ck_assert(strstr(out, "o: \"0755\"") != NULL);
    ck_assert(strstr(out, "e: \"\"") != NULL);
    ck_assert(strstr(out, "plain: hello world") != NULL);
    ck_assert(strstr(out, "b: true") != NULL);
    ck_assert(strstr(out, "i: 420") != NULL);
    ck_assert(strstr(out, "r: 1.0") != NULL);
    ck_assert(strstr(out, "multi: |") != NULL);
    ck_assert(strstr(out, "\n---") != NULL);
    /* and it reads back as the same values */
    json_t *back = load(out);
    ck_assert(json_equal(back, docs));
    json_decref(back);
    free(out);
    json_decref(docs);
}
END_TEST

START_TEST(load_errors)
{
    json_t *docs;
    char err[256];
    const char *dup = "a: 1\na: 2\n";
    ck_assert_int_eq(sn_yaml_load(dup, strlen(dup), &docs, err, sizeof err), -EINVAL);
    ck_assert(strstr(err, "duplicate key") != NULL);
    const char *alias = "a: &x 1\nb: *x\n";
    ck_assert_int_eq(sn_yaml_load(alias, strlen(alias), &docs, err, sizeof err), -EINVAL);
    ck_assert(strstr(err, "alias") != NULL);
    const char *broken = "a: [1, 2\nb: 3\n";
    ck_assert_int_eq(sn_yaml_load(broken, strlen(broken), &docs, err, sizeof err), -EINVAL);
    ck_assert(strstr(err, "line") != NULL);
    /* deep nesting is refused, not recursed into */
    char deep[400];
    memset(deep, '[', 300);
    deep[300] = '\0';
    ck_assert_int_eq(sn_yaml_load(deep, 300, &docs, err, sizeof err), -EINVAL);
}
END_TEST

typedef struct test_settings {
    sn_inject_config inject;
} test_settings;
static const sn_config_desc descs[] = {SN_INJECT_DESCRIPTORS("sidecar", test_settings, inject)};

START_TEST(offline_injects_templates_and_is_idempotent)
{
    test_settings s;
    sn_config *cfg;
    sn_config_error cerr;
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(sn_config_create(&cfg, descs, sizeof descs / sizeof descs[0], &s, &cerr), 0);
    sn_config_destroy(cfg);
    const char *in = "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: nightly\nspec:\n"
                     "  schedule: \"0 3 * * *\"\n  jobTemplate:\n    spec:\n      template:\n"
                     "        spec:\n          restartPolicy: OnFailure\n          containers:\n"
                     "          - name: job\n            image: j\n"
                     "---\n"
                     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: \"1\"\n"
                     "---\n"
                     "apiVersion: v1\nkind: Pod\nmetadata:\n  name: out\n  annotations:\n"
                     "    sentinel.llm-devops.io/inject: \"false\"\nspec:\n  containers:\n"
                     "  - name: a\n    image: a\n";
    char *out1, *out2, err[256];
    size_t l1, l2;
    sn_inject_stats st;
    /* regular sidecars would keep the CronJob's pods from completing: not injected */
    ck_assert_int_eq(sn_inject_stream(&s.inject, in, strlen(in), NULL, SN_INJECT_FORMAT_AUTO, &out1,
                                      &l1, &st, err, sizeof err),
                     0);
    ck_assert_int_eq(st.injected, 0);
    ck_assert_int_eq(st.skipped, 2);
    ck_assert_int_eq(st.warnings, 1);
    free(out1);
    s.inject.mode = SN_INJECT_MODE_NATIVE;
    ck_assert_int_eq(sn_inject_stream(&s.inject, in, strlen(in), NULL, SN_INJECT_FORMAT_AUTO, &out1,
                                      &l1, &st, err, sizeof err),
                     0);
    ck_assert_int_eq(st.documents, 3);
    ck_assert_int_eq(st.templates, 2);
    ck_assert_int_eq(st.injected, 1);
    ck_assert_int_eq(st.skipped, 1);
    json_t *docs = load(out1);
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(
                         docs, "/0/spec/jobTemplate/spec/template/spec/initContainers/0/name")),
                     "sentinel-sidecar");
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(docs, "/0/spec/schedule")), "0 3 * * *");
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(docs, "/1/data/k")), "1");
    ck_assert_ptr_null(sn_jsonpointer_get(docs, "/2/spec/containers/1"));
    json_decref(docs);
    ck_assert_int_eq(sn_inject_stream(&s.inject, out1, l1, NULL, SN_INJECT_FORMAT_AUTO, &out2, &l2,
                                      &st, err, sizeof err),
                     0);
    ck_assert_int_eq(st.injected, 0);
    ck_assert_str_eq(out1, out2);
    free(out1);
    free(out2);

    /* JSON in, JSON out */
    const char *j = "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"x\"},"
                    "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}";
    ck_assert_int_eq(sn_inject_stream(&s.inject, j, strlen(j), "apps", SN_INJECT_FORMAT_AUTO, &out1,
                                      &l1, &st, err, sizeof err),
                     0);
    json_error_t je;
    json_t *v = json_loads(out1, 0, &je);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(v, "/spec/initContainers/0/name")),
                     "sentinel-sidecar");
    json_decref(v);
    free(out1);
    ck_assert_int_eq(sn_inject_stream(&s.inject, "{\"a\":", 5, NULL, SN_INJECT_FORMAT_AUTO, &out1,
                                      &l1, &st, err, sizeof err),
                     -EINVAL);
}
END_TEST

static Suite *yaml_suite(void)
{
    Suite *s = suite_create("injector_yaml");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, scalars_resolve_like_kubectl);
    tcase_add_test(tc, dump_quotes_what_would_change_type);
    tcase_add_test(tc, load_errors);
    tcase_add_test(tc, offline_injects_templates_and_is_idempotent);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(yaml_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
