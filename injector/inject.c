/*
 * inject.c -- the injection engine: decide, then build the JSON Patch that adds the sidecar.
 *
 * Every path of the patch is relative to the pod ("/spec/containers/-"). Parents are created
 * before anything is added under them (an "add" of {} for a missing annotations map, of [] for
 * a missing env list), so the patch applies to the pod exactly as the API server received it.
 */
#include "inject.h"

#include "jsonpatch.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const sn_inject_mode_names[] = {"auto", "native", "regular", NULL};

/* The local detection thresholds a pod may override, as sidecar environment variables. */
static const struct {
    const char *annotation; /* after the prefix */
    const char *env;
} thresholds[] = {
    {"latency-warn-ms", "SENTINEL_LOCAL_THRESHOLDS_LATENCY_MS_UPPER_WARN"},
    {"latency-critical-ms", "SENTINEL_LOCAL_THRESHOLDS_LATENCY_MS_UPPER_CRITICAL"},
    {"ttft-warn-ms", "SENTINEL_LOCAL_THRESHOLDS_TTFT_MS_UPPER_WARN"},
    {"ttft-critical-ms", "SENTINEL_LOCAL_THRESHOLDS_TTFT_MS_UPPER_CRITICAL"},
    {"tokens-warn", "SENTINEL_LOCAL_THRESHOLDS_TOTAL_TOKENS_UPPER_WARN"},
    {"tokens-critical", "SENTINEL_LOCAL_THRESHOLDS_TOTAL_TOKENS_UPPER_CRITICAL"},
    {"cost-warn-usd", "SENTINEL_LOCAL_THRESHOLDS_COST_USD_UPPER_WARN"},
    {"cost-critical-usd", "SENTINEL_LOCAL_THRESHOLDS_COST_USD_UPPER_CRITICAL"},
    {"error-rate-warn", "SENTINEL_LOCAL_THRESHOLDS_ERROR_RATE_UPPER_WARN"},
    {"error-rate-critical", "SENTINEL_LOCAL_THRESHOLDS_ERROR_RATE_UPPER_CRITICAL"},
    {"zscore-threshold", "SENTINEL_LOCAL_ZSCORE_THRESHOLD"},
};

/* The other annotations the injector reads (after the prefix). */
static const char *const known_annotations[] = {
    "inject",         "status",       "image",      "cpu-request", "cpu-limit",
    "memory-request", "memory-limit", "aggregator", "log-level",   "otel-containers",
};

static const char *const log_levels[] = {"debug", "info", "warn", "error"};

/* The effective sidecar settings for one pod: the config with valid annotations applied. */
typedef struct pod_settings {
    const char *image;
    const char *cpu_request, *cpu_limit, *memory_request, *memory_limit;
    const char *aggregator;
    const char *log_level;
    const char *threshold[sizeof thresholds / sizeof thresholds[0]];
    const char *otel_containers; /* comma-separated names, or NULL = every app container */
    char memory_env[24]; /* SENTINEL_MEMORY_LIMIT in bytes, or "" to keep the sidecar's own */
} pod_settings;

/* The sidecar's own hard limit (limits.memory) as a share of its container's memory limit: the
 * rest is headroom for what the kernel charges to the container besides the resident set (page
 * cache of the spool, kernel buffers). The sidecar refuses limits below 40 MiB. */
#define SIDECAR_LIMIT_SHARE 0.875
#define SIDECAR_MIN_LIMIT   (40.0 * 1024 * 1024)

/* Appends a formatted warning to arr (best effort: a warning that cannot be stored is lost). */
static void warn(json_t *arr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(json_t *arr, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (json_array_size(arr) < 32)
        (void)json_array_append_new(arr, json_string(buf));
}

int sn_inject_parse_version(const char *text, int *major, int *minor)
{
    if (text == NULL)
        return -EINVAL;
    if (*text == 'v')
        text++;
    char *end;
    if (*text < '0' || *text > '9')
        return -EINVAL;
    long ma = strtol(text, &end, 10);
    if (*end != '.' || end[1] < '0' || end[1] > '9' || ma > 1000)
        return -EINVAL;
    long mi = strtol(end + 1, &end, 10);
    if (mi > 1000 || (*end != '\0' && *end != '.' && *end != '-' && *end != '+'))
        return -EINVAL;
    *major = (int)ma;
    *minor = (int)mi;
    return 0;
}

bool sn_inject_native(const sn_inject_config *cfg)
{
    if (cfg->mode == SN_INJECT_MODE_NATIVE)
        return true;
    if (cfg->mode == SN_INJECT_MODE_REGULAR)
        return false;
    int ma, mi;
    if (sn_inject_parse_version(cfg->kubernetes_version, &ma, &mi) != 0)
        return false;
    return ma > 1 || (ma == 1 && mi >= 29);
}

int sn_inject_parse_quantity(const char *text, double *out)
{
    static const struct {
        const char *suffix;
        double mult;
    } suffixes[] = {
        {"Ki", 1024.0},
        {"Mi", 1048576.0},
        {"Gi", 1073741824.0},
        {"Ti", 1099511627776.0},
        {"Pi", 1125899906842624.0},
        {"Ei", 1152921504606846976.0},
        {"n", 1e-9},
        {"u", 1e-6},
        {"m", 1e-3},
        {"k", 1e3},
        {"M", 1e6},
        {"G", 1e9},
        {"T", 1e12},
        {"P", 1e15},
        {"E", 1e18},
    };
    if (text == NULL || text[0] == '\0' || strlen(text) >= SN_INJECT_QUANTITY_MAX)
        return -EINVAL;
    const char *p = text;
    if (*p == '+')
        p++;
    const char *digits = p;
    size_t nd = 0;
    while (*p >= '0' && *p <= '9') {
        p++;
        nd++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            p++;
            nd++;
        }
    }
    if (nd == 0)
        return -EINVAL;
    char num[SN_INJECT_QUANTITY_MAX];
    size_t numlen = (size_t)(p - digits);
    memcpy(num, digits, numlen);
    num[numlen] = '\0';
    double v = strtod(num, NULL);
    double mult = 1.0;
    if (*p == 'e' || *p == 'E') {
        /* a decimal exponent, unless it is the "E" (exa) suffix alone */
        const char *q = p + 1;
        if (*q == '+' || *q == '-')
            q++;
        if (*q >= '0' && *q <= '9') {
            char *end;
            long ex = strtol(p + 1, &end, 10);
            if (*end != '\0' || ex > 300 || ex < -300)
                return -EINVAL;
            mult = pow(10.0, (double)ex);
            p = end;
        }
    }
    if (*p != '\0') {
        bool found = false;
        for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
            if (strcmp(p, suffixes[i].suffix) == 0) {
                mult = suffixes[i].mult;
                found = true;
                break;
            }
        }
        if (!found)
            return -EINVAL;
    }
    v *= mult;
    if (!isfinite(v))
        return -EINVAL;
    *out = v;
    return 0;
}

/* True when text is a positive finite number, or "off" when allowed (the sidecar's optional
 * thresholds; its Z-score threshold must be a number). */
static bool threshold_valid(const char *text, bool allow_off)
{
    if (allow_off && strcmp(text, "off") == 0)
        return true;
    if (!((text[0] >= '0' && text[0] <= '9') || text[0] == '.') || strpbrk(text, "xX") != NULL)
        return false;
    char *end;
    double v = strtod(text, &end);
    return *end == '\0' && isfinite(v) && v > 0;
}

/* True for an image reference without spaces or control characters. */
static bool image_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= SN_INJECT_IMAGE_MAX)
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return false;
    return true;
}

static bool aggregator_valid(const char *s)
{
    sn_config_address a;
    return sn_config_parse_address(s, false, &a) == 0 && a.host[0] != '\0';
}

static bool log_level_valid(const char *s)
{
    for (size_t i = 0; i < sizeof log_levels / sizeof log_levels[0]; i++)
        if (strcmp(s, log_levels[i]) == 0)
            return true;
    return false;
}

/* True when request (a quantity) is not above limit (a quantity or "" for none). */
static bool request_fits(const char *request, const char *limit)
{
    double r, l;
    if (limit == NULL || limit[0] == '\0')
        return true;
    if (sn_inject_parse_quantity(request, &r) != 0 || sn_inject_parse_quantity(limit, &l) != 0)
        return true;
    return r <= l;
}

int sn_inject_config_check(const sn_inject_config *cfg, const char *prefix, sn_config_error *err)
{
    const struct {
        const char *name;
        const char *value;
        bool optional;
    } quantities[] = {
        {"cpu_request", cfg->cpu_request, true},
        {"cpu_limit", cfg->cpu_limit, true},
        {"memory_request", cfg->memory_request, true},
        {"memory_limit", cfg->memory_limit, true},
        {"spool_size_limit", cfg->spool_size_limit, true},
    };
    double v;
    for (size_t i = 0; i < sizeof quantities / sizeof quantities[0]; i++) {
        if (quantities[i].value[0] == '\0' && quantities[i].optional)
            continue;
        if (sn_inject_parse_quantity(quantities[i].value, &v) != 0) {
            snprintf(err->msg, sizeof err->msg,
                     "config: %s.%s: must be a Kubernetes quantity like 500m or 128Mi (got \"%s\")",
                     prefix, quantities[i].name, quantities[i].value);
            return -EINVAL;
        }
    }
    if (!request_fits(cfg->cpu_request, cfg->cpu_limit) ||
        !request_fits(cfg->memory_request, cfg->memory_limit)) {
        snprintf(err->msg, sizeof err->msg, "config: %s.%s: the request is above the limit", prefix,
                 request_fits(cfg->cpu_request, cfg->cpu_limit) ? "memory_request" : "cpu_request");
        return -EINVAL;
    }
    if (!image_valid(cfg->image)) {
        snprintf(err->msg, sizeof err->msg, "config: %s.image: must be an image reference", prefix);
        return -EINVAL;
    }
    if (strcmp(cfg->pull_policy, "Always") != 0 && strcmp(cfg->pull_policy, "IfNotPresent") != 0 &&
        strcmp(cfg->pull_policy, "Never") != 0) {
        snprintf(err->msg, sizeof err->msg,
                 "config: %s.image_pull_policy: must be Always, IfNotPresent or Never (got \"%s\")",
                 prefix, cfg->pull_policy);
        return -EINVAL;
    }
    if (!aggregator_valid(cfg->aggregator)) {
        snprintf(err->msg, sizeof err->msg, "config: %s.aggregator: must be host:port (got \"%s\")",
                 prefix, cfg->aggregator);
        return -EINVAL;
    }
    if (cfg->log_level[0] != '\0' && !log_level_valid(cfg->log_level)) {
        snprintf(err->msg, sizeof err->msg,
                 "config: %s.log_level: must be debug, info, warn or error (got \"%s\")", prefix,
                 cfg->log_level);
        return -EINVAL;
    }
    int ma, mi;
    if (cfg->kubernetes_version[0] != '\0' &&
        sn_inject_parse_version(cfg->kubernetes_version, &ma, &mi) != 0) {
        snprintf(err->msg, sizeof err->msg,
                 "config: kubernetes.version: must be a version like 1.29 (got \"%s\")",
                 cfg->kubernetes_version);
        return -EINVAL;
    }
    return 0;
}

/* The string value of a member of obj, or NULL. */
static const char *member_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static bool list_contains(const sn_config_list *l, const char *s)
{
    for (uint32_t i = 0; i < l->count; i++)
        if (strcmp(l->items[i], s) == 0)
            return true;
    return false;
}

/* True when a comma-separated list holds name (spaces around names ignored). */
static bool csv_contains(const char *csv, const char *name)
{
    size_t nl = strlen(name);
    const char *p = csv;
    while (*p != '\0') {
        while (*p == ' ' || *p == ',')
            p++;
        const char *start = p;
        while (*p != '\0' && *p != ',')
            p++;
        const char *end = p;
        while (end > start && end[-1] == ' ')
            end--;
        if ((size_t)(end - start) == nl && nl > 0 && memcmp(start, name, nl) == 0)
            return true;
    }
    return false;
}

/* True when a container array holds a container called name. */
static bool has_container(const json_t *arr, const char *name)
{
    size_t i;
    const json_t *c;
    json_array_foreach(arr, i, c)
    {
        const char *n = member_str(c, "name");
        if (n != NULL && strcmp(n, name) == 0)
            return true;
    }
    return false;
}

/* Sets ps->memory_env from the container's memory limit, so the sidecar refuses load before
 * the kernel would kill it: SIDECAR_LIMIT_SHARE of the limit, at least the sidecar's minimum
 * (with a warning when the container limit is too small for it). No limit: left empty. */
static void derive_memory_env(pod_settings *ps, json_t *warnings)
{
    double limit;
    ps->memory_env[0] = '\0';
    if (ps->memory_limit == NULL || ps->memory_limit[0] == '\0' ||
        sn_inject_parse_quantity(ps->memory_limit, &limit) != 0 || !(limit > 0.0))
        return;
    double own = limit * SIDECAR_LIMIT_SHARE;
    if (own < SIDECAR_MIN_LIMIT) {
        warn(warnings,
             "sidecar memory limit %s is below the sidecar's minimum of %.0fMi (%.0fMi for itself "
             "and headroom); it may be killed under load",
             ps->memory_limit, SIDECAR_MIN_LIMIT / SIDECAR_LIMIT_SHARE / (1024.0 * 1024.0),
             SIDECAR_MIN_LIMIT / (1024.0 * 1024.0));
        own = SIDECAR_MIN_LIMIT;
    }
    if (own > 1099511627776.0) /* the sidecar's largest limits.memory (1 TiB) */
        own = 1099511627776.0;
    snprintf(ps->memory_env, sizeof ps->memory_env, "%llu", (unsigned long long)own);
}

/* Reads the per-pod overrides from the annotations into ps (starting from the config),
 * reporting every invalid or unknown one in warnings. */
static void read_overrides(const sn_inject_config *cfg, const json_t *annotations,
                           const json_t *containers, pod_settings *ps, json_t *warnings)
{
    memset(ps, 0, sizeof *ps);
    ps->image = cfg->image;
    ps->cpu_request = cfg->cpu_request;
    ps->cpu_limit = cfg->cpu_limit;
    ps->memory_request = cfg->memory_request;
    ps->memory_limit = cfg->memory_limit;
    ps->aggregator = cfg->aggregator;
    ps->log_level = cfg->log_level[0] != '\0' ? cfg->log_level : NULL;

    const char *key;
    const json_t *jv;
    const size_t plen = strlen(SN_INJECT_PREFIX);
    json_object_foreach((json_t *)annotations, key, jv)
    {
        if (strncmp(key, SN_INJECT_PREFIX, plen) != 0)
            continue;
        const char *name = key + plen;
        const char *v = json_string_value(jv);
        if (v == NULL) {
            warn(warnings, "annotation %s: not a string; ignored", key);
            continue;
        }
        const char **qslot = NULL;
        if (strcmp(name, "cpu-request") == 0)
            qslot = &ps->cpu_request;
        else if (strcmp(name, "cpu-limit") == 0)
            qslot = &ps->cpu_limit;
        else if (strcmp(name, "memory-request") == 0)
            qslot = &ps->memory_request;
        else if (strcmp(name, "memory-limit") == 0)
            qslot = &ps->memory_limit;
        if (qslot != NULL) {
            double q;
            if (sn_inject_parse_quantity(v, &q) != 0)
                warn(warnings,
                     "annotation %s: \"%.40s\" is not a quantity like 500m or 128Mi; ignored", key,
                     v);
            else
                *qslot = v;
            continue;
        }
        if (strcmp(name, "image") == 0) {
            if (!image_valid(v))
                warn(warnings, "annotation %s: not an image reference; ignored", key);
            else
                ps->image = v;
            continue;
        }
        if (strcmp(name, "aggregator") == 0) {
            if (!aggregator_valid(v))
                warn(warnings, "annotation %s: \"%.60s\" is not host:port; ignored", key, v);
            else
                ps->aggregator = v;
            continue;
        }
        if (strcmp(name, "log-level") == 0) {
            if (!log_level_valid(v))
                warn(warnings,
                     "annotation %s: \"%.20s\" is not debug, info, warn or error; ignored", key, v);
            else
                ps->log_level = v;
            continue;
        }
        if (strcmp(name, "otel-containers") == 0) {
            ps->otel_containers = v;
            continue;
        }
        bool done = false;
        for (size_t i = 0; i < sizeof thresholds / sizeof thresholds[0] && !done; i++) {
            if (strcmp(name, thresholds[i].annotation) != 0)
                continue;
            done = true;
            if (!threshold_valid(v,
                                 strncmp(thresholds[i].env, "SENTINEL_LOCAL_THRESHOLDS_", 26) == 0))
                warn(warnings, "annotation %s: \"%.40s\" is not a number > 0; ignored", key, v);
            else
                ps->threshold[i] = v;
        }
        for (size_t i = 0; i < sizeof known_annotations / sizeof known_annotations[0] && !done; i++)
            done = strcmp(name, known_annotations[i]) == 0;
        if (!done)
            warn(warnings, "annotation %s: unknown to the sentinel injector; ignored", key);
    }
    /* A request above its limit would get the pod refused by the API server. */
    if (!request_fits(ps->cpu_request, ps->cpu_limit)) {
        warn(warnings, "sidecar CPU request %s is above the limit %s; using %s", ps->cpu_request,
             ps->cpu_limit, cfg->cpu_request);
        ps->cpu_request = cfg->cpu_request;
        if (!request_fits(ps->cpu_request, ps->cpu_limit))
            ps->cpu_limit = cfg->cpu_limit;
    }
    if (!request_fits(ps->memory_request, ps->memory_limit)) {
        warn(warnings, "sidecar memory request %s is above the limit %s; using %s",
             ps->memory_request, ps->memory_limit, cfg->memory_request);
        ps->memory_request = cfg->memory_request;
        if (!request_fits(ps->memory_request, ps->memory_limit))
            ps->memory_limit = cfg->memory_limit;
    }
    derive_memory_env(ps, warnings);
    if (ps->otel_containers != NULL) {
        /* every name must be an app container */
        char name[256];
        const char *p = ps->otel_containers;
        while (*p != '\0') {
            while (*p == ' ' || *p == ',')
                p++;
            size_t n = 0;
            while (*p != '\0' && *p != ',') {
                if (n + 1 < sizeof name)
                    name[n++] = *p;
                p++;
            }
            while (n > 0 && name[n - 1] == ' ')
                n--;
            name[n] = '\0';
            if (n > 0 && !has_container(containers, name))
                warn(warnings,
                     "annotation " SN_INJECT_PREFIX "otel-containers: no container \"%.60s\"",
                     name);
        }
    }
}

/* {"name":name,"value":value} */
static json_t *env_var(const char *name, const char *value)
{
    return json_pack("{s:s, s:s}", "name", name, "value", value);
}

/* Builds the sidecar container object. */
static json_t *sidecar_container(const sn_inject_config *cfg, const pod_settings *ps, bool native)
{
    json_t *env = json_pack("[{s:s,s:s}, {s:s,s:s}, {s:s,s:{s:{s:s}}}, {s:s,s:{s:{s:s}}}]", "name",
                            "SENTINEL_MODE", "value", "sidecar", "name", "SENTINEL_AGGREGATOR",
                            "value", ps->aggregator, "name", "POD_NAME", "valueFrom", "fieldRef",
                            "fieldPath", "metadata.name", "name", "POD_NAMESPACE", "valueFrom",
                            "fieldRef", "fieldPath", "metadata.namespace");
    if (env == NULL)
        return NULL;
    if (ps->log_level != NULL)
        json_array_append_new(env, env_var("SENTINEL_LOG_LEVEL", ps->log_level));
    if (ps->memory_env[0] != '\0')
        json_array_append_new(env, env_var("SENTINEL_MEMORY_LIMIT", ps->memory_env));
    for (size_t i = 0; i < sizeof thresholds / sizeof thresholds[0]; i++)
        if (ps->threshold[i] != NULL)
            json_array_append_new(env, env_var(thresholds[i].env, ps->threshold[i]));

    json_t *requests = json_object(), *limits = json_object();
    if (ps->cpu_request[0] != '\0')
        json_object_set_new(requests, "cpu", json_string(ps->cpu_request));
    if (ps->memory_request[0] != '\0')
        json_object_set_new(requests, "memory", json_string(ps->memory_request));
    if (ps->cpu_limit[0] != '\0')
        json_object_set_new(limits, "cpu", json_string(ps->cpu_limit));
    if (ps->memory_limit[0] != '\0')
        json_object_set_new(limits, "memory", json_string(ps->memory_limit));
    json_t *resources = json_object();
    if (json_object_size(requests) > 0)
        json_object_set(resources, "requests", requests);
    if (json_object_size(limits) > 0)
        json_object_set(resources, "limits", limits);
    json_decref(requests);
    json_decref(limits);

    json_t *c = json_pack(
        "{s:s, s:s, s:s, s:[{s:s,s:i,s:s}, {s:s,s:i,s:s}, {s:s,s:i,s:s}], s:o, s:o, "
        "s:[{s:s,s:s}], s:{s:{s:s,s:i}, s:i, s:i}, s:{s:{s:s,s:i}, s:i, s:i}, "
        "s:{s:b, s:b, s:b, s:{s:[s]}}}",
        "name", SN_INJECT_CONTAINER_NAME, "image", ps->image, "imagePullPolicy", cfg->pull_policy,
        "ports", "name", "otlp-grpc", "containerPort", 4317, "protocol", "TCP", "name", "otlp-http",
        "containerPort", 4318, "protocol", "TCP", "name", "sentinel-admin", "containerPort",
        SN_INJECT_ADMIN_PORT, "protocol", "TCP", "env", env, "resources", resources, "volumeMounts",
        "name", SN_INJECT_VOLUME_NAME, "mountPath", SN_INJECT_SPOOL_PATH, "startupProbe", "httpGet",
        "path", "/healthz", "port", SN_INJECT_ADMIN_PORT, "periodSeconds", 1, "failureThreshold",
        30, "livenessProbe", "httpGet", "path", "/healthz", "port", SN_INJECT_ADMIN_PORT,
        "periodSeconds", 10, "failureThreshold", 3, "securityContext", "allowPrivilegeEscalation",
        0, "readOnlyRootFilesystem", 1, "runAsNonRoot", 1, "capabilities", "drop", "ALL");
    if (c != NULL && native &&
        json_object_set_new(c, "restartPolicy", json_string("Always")) != 0) {
        json_decref(c);
        return NULL;
    }
    return c;
}

/* True when the container's env list sets name (value or valueFrom). */
static bool env_has(const json_t *env, const char *name)
{
    return has_container(env, name); /* the same shape: objects with "name" */
}

/* Adds the OTLP variables to the app containers that do not set them. */
static int add_app_env(json_t *patch, const json_t *containers, const pod_settings *ps)
{
    static const char *const vars[][2] = {
        {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317"},
        {"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"},
    };
    size_t i;
    const json_t *c;
    json_array_foreach(containers, i, c)
    {
        const char *name = member_str(c, "name");
        if (ps->otel_containers != NULL &&
            (name == NULL || !csv_contains(ps->otel_containers, name)))
            continue;
        char path[SN_JSONPATCH_POINTER_MAX] = "/spec/containers";
        if (sn_jsonpointer_append_index(path, sizeof path, i) != 0 ||
            sn_jsonpointer_append(path, sizeof path, "env") != 0)
            return -E2BIG;
        const json_t *env = json_object_get(c, "env");
        bool have_list = json_is_array(env);
        for (size_t v = 0; v < 2; v++) {
            if (have_list && env_has(env, vars[v][0]))
                continue;
            int rc;
            if (!have_list) {
                rc = sn_jsonpatch_add_op(patch, "add", path, json_array());
                if (rc != 0)
                    return rc;
                have_list = true;
                env = NULL;
            }
            char item[SN_JSONPATCH_POINTER_MAX];
            memcpy(item, path, sizeof item);
            if (sn_jsonpointer_append(item, sizeof item, "-") != 0)
                return -E2BIG;
            rc = sn_jsonpatch_add_op(patch, "add", item, env_var(vars[v][0], vars[v][1]));
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

/* Adds a member to a map at base ("/metadata/annotations"), creating the map when missing. */
static int add_map_entry(json_t *patch, const char *base, bool *exists, const char *key,
                         json_t *value)
{
    int rc;
    if (!*exists) {
        rc = sn_jsonpatch_add_op(patch, "add", base, json_object());
        if (rc != 0) {
            json_decref(value);
            return rc;
        }
        *exists = true;
    }
    char path[SN_JSONPATCH_POINTER_MAX];
    snprintf(path, sizeof path, "%s", base);
    if (sn_jsonpointer_append(path, sizeof path, key) != 0) {
        json_decref(value);
        return -E2BIG;
    }
    return sn_jsonpatch_add_op(patch, "add", path, value);
}

/* Builds the whole patch. */
static int build_patch(const sn_inject_config *cfg, const json_t *pod, const pod_settings *ps,
                       bool native, json_t *patch)
{
    const json_t *meta = json_object_get(pod, "metadata");
    const json_t *spec = json_object_get(pod, "spec");
    const json_t *containers = json_object_get(spec, "containers");
    const json_t *annotations = json_object_get(meta, "annotations");
    const json_t *labels = json_object_get(meta, "labels");
    int rc;
    if (!json_is_object(meta)) {
        rc = sn_jsonpatch_add_op(patch, "add", "/metadata", json_object());
        if (rc != 0)
            return rc;
    }
    bool have_ann = json_is_object(annotations), have_labels = json_is_object(labels);

    json_t *status = json_pack("{s:s, s:[s], s:[s], s:s}", "version", SENTINEL_VERSION,
                               "containers", SN_INJECT_CONTAINER_NAME, "volumes",
                               SN_INJECT_VOLUME_NAME, "mode", native ? "native" : "regular");
    char *status_text = status != NULL ? json_dumps(status, JSON_COMPACT) : NULL;
    json_decref(status);
    if (status_text == NULL)
        return -ENOMEM;
    rc = add_map_entry(patch, "/metadata/annotations", &have_ann, SN_INJECT_STATUS_ANNOTATION,
                       json_string(status_text));
    free(status_text);
    if (rc != 0)
        return rc;
    const char *first = member_str(json_array_get(containers, 0), "name");
    if (json_object_get(annotations, SN_INJECT_DEFAULT_CONTAINER) == NULL && first != NULL) {
        rc = add_map_entry(patch, "/metadata/annotations", &have_ann, SN_INJECT_DEFAULT_CONTAINER,
                           json_string(first));
        if (rc != 0)
            return rc;
    }
    rc = add_map_entry(patch, "/metadata/labels", &have_labels, SN_INJECT_INJECTED_LABEL,
                       json_string("true"));
    if (rc != 0)
        return rc;

    rc = add_app_env(patch, containers, ps);
    if (rc != 0)
        return rc;

    const json_t *volumes = json_object_get(spec, "volumes");
    if (!has_container(volumes, SN_INJECT_VOLUME_NAME)) {
        json_t *ed = json_object();
        if (cfg->spool_size_limit[0] != '\0')
            json_object_set_new(ed, "sizeLimit", json_string(cfg->spool_size_limit));
        json_t *vol = json_pack("{s:s, s:o}", "name", SN_INJECT_VOLUME_NAME, "emptyDir", ed);
        if (vol == NULL)
            return -ENOMEM;
        if (json_is_array(volumes))
            rc = sn_jsonpatch_add_op(patch, "add", "/spec/volumes/-", vol);
        else
            rc = sn_jsonpatch_add_op(patch, "add", "/spec/volumes", json_pack("[o]", vol));
        if (rc != 0)
            return rc;
    }

    json_t *sc = sidecar_container(cfg, ps, native);
    if (sc == NULL)
        return -ENOMEM;
    if (native) {
        /* First among the init containers: it is up (startup probe) before the others run. */
        if (json_is_array(json_object_get(spec, "initContainers")))
            rc = sn_jsonpatch_add_op(patch, "add", "/spec/initContainers/0", sc);
        else
            rc = sn_jsonpatch_add_op(patch, "add", "/spec/initContainers", json_pack("[o]", sc));
    } else {
        rc = sn_jsonpatch_add_op(patch, "add", "/spec/containers/-", sc);
    }
    return rc;
}

/* Reads the inject switch from a map: 1 "true", 0 "false", -1 absent or not valid (warned). */
static int read_switch(const json_t *map, const char *where, json_t *warnings)
{
    const json_t *v = json_object_get(map, SN_INJECT_ANNOTATION);
    if (v == NULL)
        return -1;
    const char *s = json_string_value(v);
    if (s != NULL && strcmp(s, "true") == 0)
        return 1;
    if (s != NULL && strcmp(s, "false") == 0)
        return 0;
    warn(warnings, "%s " SN_INJECT_ANNOTATION ": must be \"true\" or \"false\"; ignored", where);
    return -1;
}

int sn_inject_pod(const sn_inject_config *cfg, const json_t *pod, const char *ns,
                  sn_inject_policy policy, sn_inject_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    res->warnings = json_array();
    if (res->warnings == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (ns == NULL || ns[0] == '\0')
        ns = "default";
    const json_t *meta = json_object_get(pod, "metadata");
    const json_t *spec = json_object_get(pod, "spec");
    const json_t *containers = json_object_get(spec, "containers");
    const json_t *annotations = json_object_get(meta, "annotations");
    const json_t *labels = json_object_get(meta, "labels");

    if (!json_is_object(spec) || !json_is_array(containers)) {
        res->skip_reason = "invalid_pod";
        return 0;
    }
    if (json_object_get(annotations, SN_INJECT_STATUS_ANNOTATION) != NULL ||
        has_container(containers, SN_INJECT_CONTAINER_NAME) ||
        has_container(json_object_get(spec, "initContainers"), SN_INJECT_CONTAINER_NAME)) {
        res->skip_reason = "already_injected";
        return 0;
    }
    if (list_contains(&cfg->system_namespaces, ns)) {
        res->skip_reason = "system_namespace";
        return 0;
    }
    int sw = read_switch(annotations, "annotation", res->warnings);
    if (sw < 0)
        sw = read_switch(labels, "label", res->warnings);
    if (sw == 0) {
        res->skip_reason = "opted_out";
        return 0;
    }
    if (json_is_true(json_object_get(spec, "hostNetwork"))) {
        res->skip_reason = "host_network";
        return 0;
    }
    if (sw < 0 && policy == SN_INJECT_OPT_IN && !list_contains(&cfg->namespaces, ns)) {
        res->skip_reason = "not_opted_in";
        return 0;
    }

    /* A regular sidecar container never exits, so a pod meant to run to completion (a Job's)
     * would never complete: such pods need the native sidecar, which the kubelet stops once the
     * app containers are done. */
    res->native = sn_inject_native(cfg);
    const char *restart = member_str(spec, "restartPolicy");
    if (!res->native && restart != NULL && strcmp(restart, "Always") != 0) {
        warn(res->warnings,
             "restartPolicy %.20s: the sentinel sidecar needs native sidecars (Kubernetes >= "
             "1.29) in pods that run to completion; not injected",
             restart);
        res->skip_reason = "needs_native_sidecar";
        return 0;
    }
    pod_settings ps;
    read_overrides(cfg, annotations, containers, &ps, res->warnings);
    res->patch = json_array();
    int rc = res->patch != NULL ? build_patch(cfg, pod, &ps, res->native, res->patch) : -ENOMEM;
    if (rc != 0) {
        snprintf(err, errlen, "%s", rc == -E2BIG ? "the patch grew too large" : "out of memory");
        json_decref(res->patch);
        res->patch = NULL;
        return rc;
    }
    res->inject = true;
    return 0;
}

void sn_inject_result_cleanup(sn_inject_result *res)
{
    json_decref(res->patch);
    json_decref(res->warnings);
    res->patch = NULL;
    res->warnings = NULL;
}
