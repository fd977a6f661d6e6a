/*
 * alertmanager.c -- the Prometheus Alertmanager sink (sink.h): POST /api/v2/alerts with the
 * alert as labels and annotations; the engine re-sends firing alerts every resend interval
 * (Alertmanager resolves an alert that is not repeated within its resolve_timeout).
 */
#include "http.h"
#include "sink.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct alertmanager {
    sn_sink base;
    CURL *h;
    char *url;           /* .../api/v2/alerts */
    char *generator_url; /* NULL: none */
    int64_t timeout_ns;
} alertmanager;

/* "LLM" + the anomaly type in CamelCase: latency_spike -> LLMLatencySpike. */
static void alertname(sn_anomaly_type t, char *out, size_t outlen)
{
    const char *n = sn_anomaly_type_name(t);
    size_t o = 0;
    bool up = true;
    memcpy(out, "LLM", 3);
    o = 3;
    for (const char *p = n; *p != '\0' && o + 1 < outlen; p++) {
        if (*p == '_') {
            up = true;
            continue;
        }
        out[o++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
        up = false;
    }
    out[o] = '\0';
}

/* Sets key to a number when v is finite. Returns false when out of memory. */
static bool set_num(json_t *obj, const char *key, double v)
{
    if (!isfinite(v))
        return true;
    char buf[64];
    snprintf(buf, sizeof buf, "%.6g", v);
    return json_object_set_new(obj, key, json_string(buf)) == 0;
}

static bool set_str(json_t *obj, const char *key, const char *v)
{
    if (v == NULL || v[0] == '\0')
        return true;
    return json_object_set_new(obj, key, json_string(v)) == 0;
}

/* One Alertmanager alert object with the given severity label; ends_ns 0: no endsAt. */
static json_t *am_alert(const sn_alert *a, sn_severity sev, int64_t ends_ns,
                        const char *generator_url)
{
    json_t *o = json_object(), *labels = json_object(), *ann = json_object();
    char name[96], t[40], text[1024];
    if (o == NULL || labels == NULL || ann == NULL)
        goto out_free;
    json_object_set_new(o, "labels", labels);
    json_object_set_new(o, "annotations", ann);
    alertname(a->anomaly_type, name, sizeof name);
    bool ok = set_str(labels, "alertname", name) &&
              set_str(labels, "severity", sn_severity_name(sev)) &&
              set_str(labels, "service", a->service) && set_str(labels, "model", a->model) &&
              set_str(labels, "anomaly_type", sn_anomaly_type_name(a->anomaly_type));
    if (isfinite(a->value) && isfinite(a->baseline))
        snprintf(text, sizeof text, "%s on %s/%s: %s %.6g (baseline %.6g)",
                 sn_anomaly_type_name(a->anomaly_type), a->service, a->model,
                 sn_metric_name(a->metric), a->value, a->baseline);
    else
        snprintf(text, sizeof text, "%s on %s/%s: %s", sn_anomaly_type_name(a->anomaly_type),
                 a->service, a->model, sn_metric_name(a->metric));
    ok = ok && set_str(ann, "summary", text) && set_str(ann, "description", a->root_cause) &&
         set_str(ann, "root_cause", a->root_cause) && set_str(ann, "runbook_url", a->runbook_url) &&
         set_str(ann, "alert_id", a->alert_id) &&
         set_str(ann, "detection_method", sn_detector_name(a->method)) &&
         set_num(ann, "confidence", a->confidence) &&
         set_str(ann, "metric", sn_metric_name(a->metric)) && set_num(ann, "value", a->value) &&
         set_num(ann, "baseline", a->baseline) && set_num(ann, "threshold", a->threshold) &&
         set_num(ann, "deviation_sigma", a->deviation_sigma) &&
         set_num(ann, "occurrences", (double)a->occurrences);
    size_t o2 = 0;
    text[0] = '\0';
    for (unsigned i = 0; i < a->nremediation && o2 + 1 < sizeof text; i++) {
        int n = snprintf(text + o2, sizeof text - o2, "%s%s", i > 0 ? "; " : "", a->remediation[i]);
        o2 = n < 0 ? o2 : (size_t)n + o2 >= sizeof text ? sizeof text - 1 : o2 + (size_t)n;
    }
    ok = ok && set_str(ann, "remediation", text);
    o2 = 0;
    text[0] = '\0';
    for (unsigned i = 0; i < a->nrelated && o2 + 1 < sizeof text; i++) {
        int n = snprintf(text + o2, sizeof text - o2, "%s%s", i > 0 ? "," : "", a->related[i]);
        o2 = n < 0 ? o2 : (size_t)n + o2 >= sizeof text ? sizeof text - 1 : o2 + (size_t)n;
    }
    ok = ok && set_str(ann, "related_alerts", text);
    ok = ok && sn_alert_format_time(a->timestamp_ns, t, sizeof t) == 0 && set_str(o, "startsAt", t);
    if (ok && ends_ns > 0)
        ok = sn_alert_format_time(ends_ns, t, sizeof t) == 0 && set_str(o, "endsAt", t);
    if (ok && generator_url != NULL) {
        snprintf(text, sizeof text, "%s/api/v1/anomalies/%s", generator_url, a->alert_id);
        ok = set_str(o, "generatorURL", text);
    }
    if (ok)
        return o;
out_free:
    if (o == NULL || json_object_get(o, "labels") == NULL)
        json_decref(labels);
    if (o == NULL || json_object_get(o, "annotations") == NULL)
        json_decref(ann);
    json_decref(o);
    return NULL;
}

char *sn_alertmanager_payload(const sn_alert *a, sn_alert_change change, const char *generator_url,
                              size_t *len)
{
    json_t *arr = json_array();
    if (arr == NULL)
        return NULL;
    int64_t ends = a->status == SN_ALERT_RESOLVED
                       ? (a->resolved_at_ns > 0 ? a->resolved_at_ns : a->last_seen_ns)
                       : 0;
    if (change == SN_ALERT_CHANGE_RESOLVED && ends == 0)
        ends = a->last_seen_ns > 0 ? a->last_seen_ns : a->timestamp_ns;
    bool ok = json_array_append_new(arr, am_alert(a, a->severity, ends, generator_url)) == 0;
    if (change == SN_ALERT_CHANGE_ESCALATED) {
        int64_t end_old = a->last_seen_ns > 0 ? a->last_seen_ns : a->timestamp_ns;
        for (int s = SN_SEV_LOW; ok && s < (int)a->severity; s++)
            ok = json_array_append_new(arr, am_alert(a, (sn_severity)s, end_old, generator_url)) ==
                 0;
    }
    char *text = ok ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    if (text != NULL)
        *len = strlen(text);
    return text;
}

static char *am_format(const sn_sink *s, sn_alert_change change, const sn_alert *a, size_t *len)
{
    const alertmanager *am = (const alertmanager *)s;
    return sn_alertmanager_payload(a, change, am->generator_url, len);
}

static sn_sink_result am_send(sn_sink *s, const sn_sink_msg *m, char *reason, size_t rlen)
{
    alertmanager *am = (alertmanager *)s;
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = hdr != NULL ? curl_slist_append(hdr, "Expect:") : NULL;
    if (h2 == NULL) {
        curl_slist_free_all(hdr);
        snprintf(reason, rlen, "out of memory building the request");
        return SN_SINK_RETRY;
    }
    long status;
    sn_sink_result r = sn_deliver_http_post(am->h, am->url, h2, m->body, m->len, am->timeout_ns,
                                            &status, reason, rlen);
    curl_slist_free_all(h2);
    return r;
}

static void am_destroy(sn_sink *s)
{
    alertmanager *am = (alertmanager *)s;
    if (am->h != NULL)
        curl_easy_cleanup(am->h);
    free(am->url);
    free(am->generator_url);
    free(am);
    curl_global_cleanup();
}

static const sn_sink_ops am_ops = {
    .kind = "alertmanager", .format = am_format, .send = am_send, .destroy = am_destroy};

int sn_sink_alertmanager_create(const sn_alertmanager_config *cfg, sn_sink **out, char *err,
                                size_t errlen)
{
    *out = NULL;
    if (cfg->url == NULL ||
        (strncmp(cfg->url, "http://", 7) != 0 && strncmp(cfg->url, "https://", 8) != 0)) {
        snprintf(err, errlen, "alertmanager: url must start with http:// or https://");
        return -EINVAL;
    }
    if (cfg->timeout_ns <= 0 || cfg->resend_ns < 0) {
        snprintf(err, errlen, "alertmanager: timeout must be > 0 and resend_interval >= 0");
        return -EINVAL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "alertmanager: libcurl initialisation failed");
        return -ENOMEM;
    }
    alertmanager *am = calloc(1, sizeof *am);
    if (am == NULL) {
        curl_global_cleanup();
        snprintf(err, errlen, "alertmanager: out of memory");
        return -ENOMEM;
    }
    am->base.ops = &am_ops;
    snprintf(am->base.name, sizeof am->base.name, "%s",
             cfg->sink_name != NULL ? cfg->sink_name : "alertmanager");
    am->base.resend_ns = cfg->resend_ns;
    am->timeout_ns = cfg->timeout_ns;
    am->h = curl_easy_init();
    size_t ul = strlen(cfg->url);
    while (ul > 0 && cfg->url[ul - 1] == '/')
        ul--;
    static const char path[] = "/api/v2/alerts";
    bool has_path = ul >= sizeof path - 1 &&
                    memcmp(cfg->url + ul - (sizeof path - 1), path, sizeof path - 1) == 0;
    size_t n = ul + (has_path ? 0 : sizeof path - 1) + 1;
    am->url = malloc(n);
    if (am->url != NULL)
        snprintf(am->url, n, "%.*s%s", (int)ul, cfg->url, has_path ? "" : path);
    if (cfg->generator_url != NULL && cfg->generator_url[0] != '\0') {
        size_t gl = strlen(cfg->generator_url);
        while (gl > 0 && cfg->generator_url[gl - 1] == '/')
            gl--;
        am->generator_url = strndup(cfg->generator_url, gl);
        if (am->generator_url == NULL)
            am->url = (free(am->url), NULL);
    }
    if (am->h == NULL || am->url == NULL) {
        am_destroy(&am->base);
        snprintf(err, errlen, "alertmanager: out of memory");
        return -ENOMEM;
    }
    *out = &am->base;
    return 0;
}
