/* Unit tests for injector/inject.c and admission.c: decisions, annotations, the patch. */
#include "admission.h"
#include "inject.h"
#include "jsonpatch.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct test_settings {
    sn_inject_config inject;
} test_settings;

static const sn_config_desc descs[] = {SN_INJECT_DESCRIPTORS("sidecar", test_settings, inject)};

/* The injector's defaults, through its descriptors. */
static sn_inject_config defaults(void)
{
    test_settings s;
    sn_config *cfg;
    sn_config_error err;
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(sn_config_create(&cfg, descs, sizeof descs / sizeof descs[0], &s, &err), 0);
    sn_config_destroy(cfg);
    return s.inject;
}

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, 0, &e);
    ck_assert_msg(v != NULL, "bad test JSON: %s", e.text);
    return v;
}

/* Runs the engine and, when it injects, applies the patch; returns the patched pod (or a copy
 * of the pod when skipped) and fills res. */
static json_t *run(const sn_inject_config *cfg, const char *pod_text, const char *ns,
                   sn_inject_policy policy, sn_inject_result *res)
{
    json_t *pod = J(pod_text);
    char err[256];
    ck_assert_int_eq(sn_inject_pod(cfg, pod, ns, policy, res, err, sizeof err), 0);
    if (res->inject) {
        char perr[SN_JSONPATCH_ERROR_MAX];
        ck_assert_msg(sn_jsonpatch_apply(&pod, res->patch, perr, sizeof perr) == 0, "%s", perr);
    } else {
        ck_assert_ptr_null(res->patch);
    }
    return pod;
}

/* The env value of name in container c, or NULL. */
static const char *env_of(const json_t *c, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(c, "env"), i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "name")), name) == 0)
            return json_string_value(json_object_get(e, "value"));
    }
    return NULL;
}

/* How many env entries of name container c has. */
static int env_count(const json_t *c, const char *name)
{
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(c, "env"), i, e)
    {
        n += strcmp(json_string_value(json_object_get(e, "name")), name) == 0;
    }
    return n;
}

/* The container called name in pod's containers or initContainers, or NULL. */
static json_t *container(json_t *pod, const char *list, const char *name)
{
    size_t i;
    json_t *c;
    json_array_foreach(sn_jsonpointer_get(pod, list), i, c)
    {
        if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0)
            return c;
    }
    return NULL;
}

/* True when some warning contains text. */
static bool warned(const sn_inject_result *res, const char *text)
{
    size_t i;
    json_t *w;
    json_array_foreach(res->warnings, i, w)
    {
        if (strstr(json_string_value(w), text) != NULL)
            return true;
    }
    return false;
}

#define OPTED_IN_POD                                                                               \
    "{\"metadata\":{\"name\":\"p\",\"annotations\":{\"sentinel.llm-devops.io/inject\":\"true\"}}," \
    "\"spec\":{\"containers\":[{\"name\":\"app\",\"image\":\"a\"},"                                \
    "{\"name\":\"side\",\"image\":\"b\",\"env\":[{\"name\":\"OTEL_EXPORTER_OTLP_ENDPOINT\","       \
    "\"value\":\"http://mine:4317\"}]}]}}"

START_TEST(regular_injection_adds_everything_once)
{
    sn_inject_config cfg = defaults();
    ck_assert_int_eq(cfg.mode, SN_INJECT_MODE_AUTO);
    sn_inject_result res;
    json_t *pod = run(&cfg, OPTED_IN_POD, "apps", SN_INJECT_OPT_IN, &res);
    ck_assert(res.inject);
    ck_assert(!res.native); /* auto with no version known: regular */
    ck_assert_int_eq(json_array_size(res.warnings), 0);
    json_t *sc = container(pod, "/spec/containers", "sentinel-sidecar");
    ck_assert_ptr_nonnull(sc);
    ck_assert_ptr_null(json_object_get(sc, "restartPolicy"));
    ck_assert_str_eq(env_of(sc, "SENTINEL_MODE"), "sidecar");
    ck_assert_str_eq(env_of(sc, "SENTINEL_AGGREGATOR"),
                     "sentinel-aggregator.sentinel-system.svc:9090");
    ck_assert_ptr_nonnull(sn_jsonpointer_get(sc, "/env/2/valueFrom/fieldRef"));
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(sc, "/volumeMounts/0/mountPath")),
                     "/var/lib/sentinel/spool");
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(sc, "/resources/limits/memory")),
                     "128Mi");
    /* the sidecar's own limit: 7/8 of the container's 128Mi = 112 MiB */
    ck_assert_str_eq(env_of(sc, "SENTINEL_MEMORY_LIMIT"), "117440512");
    json_t *app = container(pod, "/spec/containers", "app");
    ck_assert_str_eq(env_of(app, "OTEL_EXPORTER_OTLP_ENDPOINT"), "http://localhost:4317");
    ck_assert_str_eq(env_of(app, "OTEL_EXPORTER_OTLP_PROTOCOL"), "grpc");
    json_t *side = container(pod, "/spec/containers", "side");
    ck_assert_str_eq(env_of(side, "OTEL_EXPORTER_OTLP_ENDPOINT"), "http://mine:4317");
    ck_assert_int_eq(env_count(side, "OTEL_EXPORTER_OTLP_ENDPOINT"), 1);
    ck_assert_str_eq(env_of(side, "OTEL_EXPORTER_OTLP_PROTOCOL"), "grpc");
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(pod, "/spec/volumes/0/name")),
                     "sentinel-spool");
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(
                         pod, "/metadata/annotations/kubectl.kubernetes.io~1default-container")),
                     "app");
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(
                         pod, "/metadata/labels/sentinel.llm-devops.io~1injected")),
                     "true");
    json_t *status = J(json_string_value(
        sn_jsonpointer_get(pod, "/metadata/annotations/sentinel.llm-devops.io~1status")));
    ck_assert_str_eq(json_string_value(json_object_get(status, "version")), SENTINEL_VERSION);
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(status, "/containers/0")),
                     "sentinel-sidecar");
    json_decref(status);

    /* a second pass changes nothing */
    sn_inject_result again;
    char err[256];
    ck_assert_int_eq(sn_inject_pod(&cfg, pod, "apps", SN_INJECT_OPT_IN, &again, err, sizeof err),
                     0);
    ck_assert(!again.inject);
    ck_assert_str_eq(again.skip_reason, "already_injected");
    sn_inject_result_cleanup(&again);
    sn_inject_result_cleanup(&res);
    json_decref(pod);
}
END_TEST

START_TEST(native_injection_by_version)
{
    sn_inject_config cfg = defaults();
    snprintf(cfg.kubernetes_version, sizeof cfg.kubernetes_version, "v1.29.2");
    ck_assert(sn_inject_native(&cfg));
    snprintf(cfg.kubernetes_version, sizeof cfg.kubernetes_version, "1.28.9-eks-1");
    ck_assert(!sn_inject_native(&cfg));
    cfg.mode = SN_INJECT_MODE_NATIVE;
    ck_assert(sn_inject_native(&cfg));
    cfg.mode = SN_INJECT_MODE_AUTO;
    snprintf(cfg.kubernetes_version, sizeof cfg.kubernetes_version, "1.30");
    sn_inject_result res;
    json_t *pod = run(&cfg,
                      "{\"metadata\":{\"generateName\":\"web-\",\"labels\":{"
                      "\"sentinel.llm-devops.io/inject\":\"true\"}},\"spec\":{\"initContainers\":"
                      "[{\"name\":\"migrate\",\"image\":\"m\"}],\"restartPolicy\":\"Never\","
                      "\"containers\":[{\"name\":\"web\","
                      "\"image\":\"w\"}]}}",
                      "default", SN_INJECT_OPT_IN, &res);
    ck_assert(res.inject && res.native);
    json_t *sc = json_array_get(sn_jsonpointer_get(pod, "/spec/initContainers"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(sc, "name")), "sentinel-sidecar");
    ck_assert_str_eq(json_string_value(json_object_get(sc, "restartPolicy")), "Always");
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(sc, "/startupProbe/httpGet/path")),
                     "/healthz");
    ck_assert_int_eq(json_integer_value(sn_jsonpointer_get(sc, "/startupProbe/httpGet/port")),
                     8081);
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(pod, "/spec/initContainers/1/name")),
                     "migrate");
    ck_assert_ptr_null(container(pod, "/spec/containers", "sentinel-sidecar"));
    /* the init container gets no OTLP variables; the app does */
    ck_assert_ptr_null(
        env_of(container(pod, "/spec/initContainers", "migrate"), "OTEL_EXPORTER_OTLP_ENDPOINT"));
    ck_assert_str_eq(
        env_of(container(pod, "/spec/containers", "web"), "OTEL_EXPORTER_OTLP_PROTOCOL"), "grpc");
    /* the label map existed; annotations were created before being added to */
    ck_assert_ptr_nonnull(
        sn_jsonpointer_get(pod, "/metadata/annotations/sentinel.llm-devops.io~1status"));
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(res.patch, "/0/path")),
                     "/metadata/annotations");
    sn_inject_result_cleanup(&res);
    json_decref(pod);
}
END_TEST

START_TEST(decisions)
{
    sn_inject_config cfg = defaults();
    static const struct {
        const char *pod;
        const char *ns;
        sn_inject_policy policy;
        const char *reason; /* NULL: injected */
    } cases[] = {
        {"{\"spec\":{\"containers\":[{\"name\":\"a\"}]}}", "apps", SN_INJECT_OPT_IN,
         "not_opted_in"},
        {"{\"spec\":{\"containers\":[{\"name\":\"a\"}]}}", "apps", SN_INJECT_ENABLED, NULL},
        {"{\"spec\":{\"containers\":[{\"name\":\"a\"}]}}", "team-ai", SN_INJECT_OPT_IN, NULL},
        {"{\"metadata\":{\"annotations\":{\"sentinel.llm-devops.io/inject\":\"false\"},"
         "\"labels\":{\"sentinel.llm-devops.io/inject\":\"true\"}},"
         "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}",
         "apps", SN_INJECT_ENABLED, "opted_out"},
        {"{\"metadata\":{\"labels\":{\"sentinel.llm-devops.io/inject\":\"false\"}},"
         "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}",
         "team-ai", SN_INJECT_OPT_IN, "opted_out"},
        {"{\"metadata\":{\"annotations\":{\"sentinel.llm-devops.io/inject\":\"true\"}},"
         "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}",
         "kube-system", SN_INJECT_OPT_IN, "system_namespace"},
        {"{\"metadata\":{\"annotations\":{\"sentinel.llm-devops.io/inject\":\"true\"}},"
         "\"spec\":{\"hostNetwork\":true,\"containers\":[{\"name\":\"a\"}]}}",
         "apps", SN_INJECT_OPT_IN, "host_network"},
        {"{\"metadata\":{\"annotations\":{\"sentinel.llm-devops.io/inject\":\"true\"}},"
         "\"spec\":{\"containers\":[{\"name\":\"a\"},{\"name\":\"sentinel-sidecar\"}]}}",
         "apps", SN_INJECT_OPT_IN, "already_injected"},
        {"{\"metadata\":{\"annotations\":{\"sentinel.llm-devops.io/inject\":\"true\"}},"
         "\"spec\":{}}",
         "apps", SN_INJECT_OPT_IN, "invalid_pod"},
        {"{\"spec\":{\"restartPolicy\":\"Never\",\"containers\":[{\"name\":\"a\"}]}}", "apps",
         SN_INJECT_ENABLED, "needs_native_sidecar"},
        {"{\"spec\":{\"restartPolicy\":\"Always\",\"containers\":[{\"name\":\"a\"}]}}", "apps",
         SN_INJECT_ENABLED, NULL},
        {"{\"metadata\":{\"annotations\":{\"sentinel.llm-devops.io/inject\":\"yes\"}},"
         "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}",
         "apps", SN_INJECT_OPT_IN, "not_opted_in"},
    };
    cfg.namespaces.count = 1;
    snprintf(cfg.namespaces.items[0], sizeof cfg.namespaces.items[0], "team-ai");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sn_inject_result res;
        json_t *pod = run(&cfg, cases[i].pod, cases[i].ns, cases[i].policy, &res);
        if (cases[i].reason == NULL)
            ck_assert_msg(res.inject, "case %zu: not injected (%s)", i, res.skip_reason);
        else
            ck_assert_msg(!res.inject && strcmp(res.skip_reason, cases[i].reason) == 0,
                          "case %zu: want %s, got %s", i, cases[i].reason,
                          res.inject ? "injected" : res.skip_reason);
        sn_inject_result_cleanup(&res);
        json_decref(pod);
    }
}
END_TEST

START_TEST(overrides_and_warnings)
{
    sn_inject_config cfg = defaults();
    sn_inject_result res;
    json_t *pod = run(&cfg,
                      "{\"metadata\":{\"annotations\":{\"sentinel.llm-devops.io/inject\":\"true\","
                      "\"sentinel.llm-devops.io/image\":\"example.com/sidecar:dev\","
                      "\"sentinel.llm-devops.io/cpu-request\":\"100m\","
                      "\"sentinel.llm-devops.io/memory-limit\":\"lots\","
                      "\"sentinel.llm-devops.io/aggregator\":\"agg.example:9999\","
                      "\"sentinel.llm-devops.io/log-level\":\"loud\","
                      "\"sentinel.llm-devops.io/latency-critical-ms\":\"2500\","
                      "\"sentinel.llm-devops.io/cost-warn-usd\":\"-1\","
                      "\"sentinel.llm-devops.io/zscore-threshold\":\"off\","
                      "\"sentinel.llm-devops.io/tokens-warn\":\"off\","
                      "\"sentinel.llm-devops.io/frobnicate\":\"1\","
                      "\"sentinel.llm-devops.io/otel-containers\":\"api, ghost\","
                      "\"kubectl.kubernetes.io/default-container\":\"worker\"}},"
                      "\"spec\":{\"containers\":[{\"name\":\"worker\"},{\"name\":\"api\"}]}}",
                      "apps", SN_INJECT_OPT_IN, &res);
    ck_assert(res.inject);
    json_t *sc = container(pod, "/spec/containers", "sentinel-sidecar");
    ck_assert_str_eq(json_string_value(json_object_get(sc, "image")), "example.com/sidecar:dev");
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(sc, "/resources/requests/cpu")), "100m");
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(sc, "/resources/limits/memory")),
                     "128Mi");
    ck_assert_str_eq(env_of(sc, "SENTINEL_AGGREGATOR"), "agg.example:9999");
    ck_assert_ptr_null(env_of(sc, "SENTINEL_LOG_LEVEL"));
    ck_assert_str_eq(env_of(sc, "SENTINEL_LOCAL_THRESHOLDS_LATENCY_MS_UPPER_CRITICAL"), "2500");
    ck_assert_ptr_null(env_of(sc, "SENTINEL_LOCAL_THRESHOLDS_COST_USD_UPPER_WARN"));
    ck_assert(warned(&res, "memory-limit"));
    ck_assert(warned(&res, "log-level"));
    ck_assert(warned(&res, "cost-warn-usd"));
    ck_assert(warned(&res, "frobnicate"));
    ck_assert(warned(&res, "zscore-threshold"));
    ck_assert_ptr_null(env_of(sc, "SENTINEL_LOCAL_ZSCORE_THRESHOLD"));
    ck_assert_str_eq(env_of(sc, "SENTINEL_LOCAL_THRESHOLDS_TOTAL_TOKENS_UPPER_WARN"), "off");
    ck_assert(warned(&res, "\"ghost\""));
    ck_assert_int_eq(json_array_size(res.warnings), 6);
    /* only the named container gets the OTLP variables; default-container is kept */
    ck_assert_ptr_null(
        env_of(container(pod, "/spec/containers", "worker"), "OTEL_EXPORTER_OTLP_ENDPOINT"));
    ck_assert_str_eq(
        env_of(container(pod, "/spec/containers", "api"), "OTEL_EXPORTER_OTLP_ENDPOINT"),
        "http://localhost:4317");
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(
                         pod, "/metadata/annotations/kubectl.kubernetes.io~1default-container")),
                     "worker");
    sn_inject_result_cleanup(&res);
    json_decref(pod);

    /* a request above the limit would get the pod refused: the default comes back */
    pod = run(&cfg,
              "{\"metadata\":{\"annotations\":{\"sentinel.llm-devops.io/cpu-request\":\"2\"}},"
              "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}",
              "apps", SN_INJECT_ENABLED, &res);
    sc = container(pod, "/spec/containers", "sentinel-sidecar");
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(sc, "/resources/requests/cpu")), "50m");
    ck_assert(warned(&res, "above the limit"));
    sn_inject_result_cleanup(&res);
    json_decref(pod);

    /* the sidecar's own limit follows the container's: 7/8 of 1Gi; a limit too small for the
     * sidecar's 40 MiB minimum gets the minimum and a warning */
    pod = run(&cfg,
              "{\"metadata\":{\"annotations\":{\"sentinel.llm-devops.io/memory-limit\":\"1Gi\"}},"
              "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}",
              "apps", SN_INJECT_ENABLED, &res);
    sc = container(pod, "/spec/containers", "sentinel-sidecar");
    ck_assert_str_eq(env_of(sc, "SENTINEL_MEMORY_LIMIT"), "939524096");
    ck_assert_int_eq(json_array_size(res.warnings), 0);
    sn_inject_result_cleanup(&res);
    json_decref(pod);
    pod = run(&cfg,
              "{\"metadata\":{\"annotations\":{\"sentinel.llm-devops.io/memory-limit\":\"40Mi\"}},"
              "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}",
              "apps", SN_INJECT_ENABLED, &res);
    sc = container(pod, "/spec/containers", "sentinel-sidecar");
    ck_assert_str_eq(env_of(sc, "SENTINEL_MEMORY_LIMIT"), "41943040");
    ck_assert(warned(&res, "below the sidecar's minimum"));
    sn_inject_result_cleanup(&res);
    json_decref(pod);
}
END_TEST

START_TEST(quantities_and_versions)
{
    double v;
    ck_assert_int_eq(sn_inject_parse_quantity("500m", &v), 0);
    ck_assert_double_eq_tol(v, 0.5, 1e-12);
    ck_assert_int_eq(sn_inject_parse_quantity("128Mi", &v), 0);
    ck_assert_double_eq(v, 134217728.0);
    ck_assert_int_eq(sn_inject_parse_quantity("1.5", &v), 0);
    ck_assert_int_eq(sn_inject_parse_quantity("1e3", &v), 0);
    ck_assert_double_eq(v, 1000.0);
    ck_assert_int_eq(sn_inject_parse_quantity("2E", &v), 0);
    ck_assert_double_eq(v, 2e18);
    ck_assert_int_eq(sn_inject_parse_quantity("-1", &v), -EINVAL);
    ck_assert_int_eq(sn_inject_parse_quantity("1Mb", &v), -EINVAL);
    ck_assert_int_eq(sn_inject_parse_quantity("", &v), -EINVAL);
    ck_assert_int_eq(sn_inject_parse_quantity("m", &v), -EINVAL);
    int ma, mi;
    ck_assert_int_eq(sn_inject_parse_version("v1.29.0", &ma, &mi), 0);
    ck_assert_int_eq(ma * 100 + mi, 129);
    ck_assert_int_eq(sn_inject_parse_version("1.3x", &ma, &mi), -EINVAL);
    ck_assert_int_eq(sn_inject_parse_version("latest", &ma, &mi), -EINVAL);

    sn_inject_config cfg = defaults();
    sn_config_error err;
    ck_assert_int_eq(sn_inject_config_check(&cfg, "sidecar", &err), 0);
    snprintf(cfg.memory_request, sizeof cfg.memory_request, "1Gi");
    ck_assert_int_eq(sn_inject_config_check(&cfg, "sidecar", &err), -EINVAL);
    ck_assert(strstr(err.msg, "sidecar.memory_request") != NULL);
    cfg = defaults();
    snprintf(cfg.aggregator, sizeof cfg.aggregator, "no-port");
    ck_assert_int_eq(sn_inject_config_check(&cfg, "sidecar", &err), -EINVAL);
    ck_assert(strstr(err.msg, "sidecar.aggregator") != NULL);
}
END_TEST

/* Decodes standard base64 (test helper). */
static char *unbase64(const char *s)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s);
    char *out = calloc(1, n + 1);
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n && s[i] != '='; i++) {
        acc = (acc << 6) | (unsigned)(strchr(tbl, s[i]) - tbl);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    return out;
}

START_TEST(admission_review_round_trip)
{
    sn_inject_config cfg = defaults();
    char *b = sn_base64_encode((const unsigned char *)"ab", 2);
    ck_assert_str_eq(b, "YWI=");
    free(b);
    b = sn_base64_encode((const unsigned char *)"", 0);
    ck_assert_str_eq(b, "");
    free(b);

    const char *req =
        "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{"
        "\"uid\":\"705ab4f5-6393-11e8-b7cc-42010a800002\",\"kind\":{\"group\":\"\",\"version\":"
        "\"v1\",\"kind\":\"Pod\"},\"resource\":{\"group\":\"\",\"version\":\"v1\",\"resource\":"
        "\"pods\"},\"namespace\":\"apps\",\"operation\":\"CREATE\",\"dryRun\":true,"
        "\"object\":" OPTED_IN_POD "}}";
    char *out;
    size_t outlen;
    sn_admission_outcome oc;
    ck_assert_int_eq(
        sn_admission_handle(&cfg, SN_INJECT_OPT_IN, req, strlen(req), &out, &outlen, &oc), 0);
    ck_assert_int_eq(oc.http_status, 200);
    ck_assert_str_eq(oc.result, "injected");
    ck_assert(oc.dry_run);
    ck_assert_str_eq(oc.pod, "p");
    json_t *resp = J(out);
    free(out);
    ck_assert_str_eq(json_string_value(json_object_get(resp, "apiVersion")), "admission.k8s.io/v1");
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(resp, "/response/uid")),
                     "705ab4f5-6393-11e8-b7cc-42010a800002");
    ck_assert(json_is_true(sn_jsonpointer_get(resp, "/response/allowed")));
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(resp, "/response/patchType")),
                     "JSONPatch");
    char *ptext = unbase64(json_string_value(sn_jsonpointer_get(resp, "/response/patch")));
    json_t *patch = J(ptext);
    free(ptext);
    ck_assert(json_array_size(patch) > 5);
    json_decref(patch);
    json_decref(resp);

    /* an UPDATE is admitted untouched */
    char *upd = strdup(req);
    memcpy(strstr(upd, "CREATE"), "UPDATE", 6);
    ck_assert_int_eq(
        sn_admission_handle(&cfg, SN_INJECT_OPT_IN, upd, strlen(upd), &out, &outlen, &oc), 0);
    free(upd);
    ck_assert_str_eq(oc.reason, "not_pod_create");
    resp = J(out);
    free(out);
    ck_assert(json_is_true(sn_jsonpointer_get(resp, "/response/allowed")));
    ck_assert_ptr_null(sn_jsonpointer_get(resp, "/response/patch"));
    json_decref(resp);

    /* bodies that are not reviews: 400 with a Status */
    static const char *const bad[] = {
        "not json",
        "{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":\"AdmissionReview\","
        "\"request\":{\"uid\":\"x\"}}",
        "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{}}",
    };
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(
            sn_admission_handle(&cfg, SN_INJECT_OPT_IN, bad[i], strlen(bad[i]), &out, &outlen, &oc),
            0);
        ck_assert_int_eq(oc.http_status, 400);
        resp = J(out);
        free(out);
        ck_assert_str_eq(json_string_value(json_object_get(resp, "kind")), "Status");
        ck_assert_int_eq(json_integer_value(json_object_get(resp, "code")), 400);
        json_decref(resp);
    }

    /* a review whose object is not a pod: admitted, with a message, counted as failed */
    const char *noobj =
        "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{"
        "\"uid\":\"u1\",\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},"
        "\"operation\":\"CREATE\",\"object\":[]}}";
    ck_assert_int_eq(
        sn_admission_handle(&cfg, SN_INJECT_OPT_IN, noobj, strlen(noobj), &out, &outlen, &oc), 0);
    ck_assert_str_eq(oc.result, "failed");
    resp = J(out);
    free(out);
    ck_assert(json_is_true(sn_jsonpointer_get(resp, "/response/allowed")));
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(resp, "/response/uid")), "u1");
    ck_assert_ptr_nonnull(sn_jsonpointer_get(resp, "/response/status/message"));
    json_decref(resp);
}
END_TEST

static Suite *inject_suite(void)
{
    Suite *s = suite_create("injector_inject");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, regular_injection_adds_everything_once);
    tcase_add_test(tc, native_injection_by_version);
    tcase_add_test(tc, decisions);
    tcase_add_test(tc, overrides_and_warnings);
    tcase_add_test(tc, quantities_and_versions);
    tcase_add_test(tc, admission_review_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(inject_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
