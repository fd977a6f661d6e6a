/*
 * metrics_json.c -- OTLP/JSON ExportMetricsServiceRequest -> GenAI metric facts (see
 * metrics_json.h).
 *
 * As traces_json.c: a byte scan bounds the document, jansson parses, and the tree is walked
 * twice -- once to check every structural type (so a malformed request produces no facts), once
 * to turn points into facts through the rules shared with the protobuf decoder (metrics.h).
 */
#include "otlp/metrics_json.h"

#include "otlp/json_util.h"

#include <jansson.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct decoder {
    sn_otlp_metric_fn fn;
    void *ud;
    sn_otlp_metric_stats *st;
    bool emit; /* false: the checking walk, nothing counted or delivered */
    char *err;
    size_t errsize;
    sn_event tmpl;    /* the current resource's template */
    uint64_t res_sum; /* its attributes' hashes */
    sn_otlp_metric_point pt;
} decoder;

static bool fail(decoder *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records a one-line error and returns false, for `return fail(...)`. */
static bool fail(decoder *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->err, d->errsize, fmt, ap);
    va_end(ap);
    return false;
}

/* An optional array member: absent or null is an empty array. */
static bool optional_array(decoder *d, const json_t *obj, const char *name, const char *where,
                           const json_t **out)
{
    const json_t *a = json_object_get(obj, name);
    *out = NULL;
    if (a == NULL || json_is_null(a))
        return true;
    if (!json_is_array(a))
        return fail(d, "%s.%s is not an array", where, name);
    *out = a;
    return true;
}

/* An optional object member: absent or null is NULL. */
static bool optional_object(decoder *d, const json_t *obj, const char *name, const char *where,
                            const json_t **out)
{
    const json_t *o = json_object_get(obj, name);
    *out = NULL;
    if (o == NULL || json_is_null(o))
        return true;
    if (!json_is_object(o))
        return fail(d, "%s.%s is not an object", where, name);
    *out = o;
    return true;
}

/* Checks (emit == false) or applies an `attributes` array to the resource or the point. */
static bool attributes(decoder *d, const json_t *attrs, bool to_point, const char *where)
{
    if (attrs == NULL || json_is_null(attrs))
        return true;
    if (!json_is_array(attrs))
        return fail(d, "%s.attributes is not an array", where);
    size_t i;
    const json_t *kv;
    json_array_foreach(attrs, i, kv)
    {
        if (!json_is_object(kv))
            return fail(d, "%s.attributes[%zu] is not an object", where, i);
        if (!d->emit)
            continue;
        const json_t *key = json_object_get(kv, "key");
        if (!json_is_string(key))
            continue;
        size_t keylen = json_string_length(key);
        if (keylen >= SN_OTLP_KEY_MAX) {
            d->st->keys_skipped++;
            continue;
        }
        const json_t *val = json_object_get(kv, "value");
        sn_attr_value v;
        bool cut;
        if (!sn_otlp_json_scalar(val, SN_OTLP_VALUE_MAX, &v, &cut)) {
            if (json_is_object(val) && (json_object_get(val, "arrayValue") != NULL ||
                                        json_object_get(val, "kvlistValue") != NULL))
                d->st->values_ignored++;
            continue;
        }
        if (cut)
            d->st->values_truncated++;
        if (to_point) {
            sn_otlp_metric_point_attr(&d->pt, json_string_value(key), keylen, &v);
        } else {
            sn_genai_resource_attr(&d->tmpl, json_string_value(key), keylen, &v);
            d->res_sum += sn_otlp_attr_hash(json_string_value(key), keylen, &v);
        }
    }
    return true;
}

/* The aggregation temporality: the enum's integer or its name; anything else is 0. */
static int temporality(const json_t *v)
{
    int64_t i;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "AGGREGATION_TEMPORALITY_DELTA") == 0)
            return SN_METRIC_TEMPORALITY_DELTA;
        if (strcmp(s, "AGGREGATION_TEMPORALITY_CUMULATIVE") == 0)
            return SN_METRIC_TEMPORALITY_CUMULATIVE;
    }
    if (v != NULL && !json_is_string(v) && sn_otlp_json_int64(v, &i) && i >= 0 && i <= 2)
        return (int)i;
    return SN_METRIC_TEMPORALITY_UNSPECIFIED;
}

/* Counts a refused point. */
static void reject(decoder *d, sn_metric_reject why)
{
    d->st->rejected++;
    d->st->rejected_by[why]++;
}

/* An optional double member (absent/null: not present). False when present but not a number. */
static bool opt_double(const json_t *obj, const char *name, bool *has, double *out)
{
    const json_t *v = json_object_get(obj, name);
    *has = false;
    *out = 0;
    if (v == NULL || json_is_null(v))
        return true;
    *has = true;
    return sn_otlp_json_double(v, out);
}

/* An optional fixed64 member (absent/null: 0). */
static bool opt_uint64(const json_t *obj, const char *name, uint64_t *out)
{
    const json_t *v = json_object_get(obj, name);
    *out = 0;
    if (v == NULL || json_is_null(v))
        return true;
    return sn_otlp_json_uint64(v, out);
}

/* One data point: checked, or turned into a fact. */
static bool point(decoder *d, const json_t *p, sn_otlp_genai_metric kind, bool unit_ok,
                  double scale, uint64_t seed, int temp, const char *where)
{
    if (!json_is_object(p))
        return fail(d, "%s is not an object", where);
    if (!d->emit)
        return attributes(d, json_object_get(p, "attributes"), true, where);

    d->st->data_points++;
    sn_otlp_metric_point_begin(&d->pt, &d->tmpl);
    if (!attributes(d, json_object_get(p, "attributes"), true, where))
        return false;
    if (!unit_ok) {
        reject(d, SN_METRIC_REJECT_UNIT);
        return true;
    }
    sn_otlp_metric_values v = {.temporality = temp};
    if (!opt_uint64(p, "startTimeUnixNano", &v.start_unix_nano) ||
        !opt_uint64(p, "timeUnixNano", &v.end_unix_nano)) {
        reject(d, SN_METRIC_REJECT_TIME);
        return true;
    }
    uint64_t flags;
    if (!opt_uint64(p, "count", &v.count) || !opt_double(p, "sum", &v.has_sum, &v.sum) ||
        !opt_double(p, "min", &v.has_min, &v.min) || !opt_double(p, "max", &v.has_max, &v.max) ||
        !opt_uint64(p, "flags", &flags)) {
        reject(d, SN_METRIC_REJECT_VALUE);
        return true;
    }
    v.flags = (uint32_t)flags;
    sn_metric_fact f;
    sn_metric_reject why = SN_METRIC_REJECT_TIME;
    switch (sn_otlp_metric_point_finish(&d->pt, kind, scale, seed, &v, &f, &why)) {
    case SN_OTLP_POINT_FACT:
        d->st->facts++;
        if (d->fn != NULL)
            d->fn(&f, d->ud);
        break;
    case SN_OTLP_POINT_STALE:
        d->st->stale_points++;
        break;
    case SN_OTLP_POINT_REJECTED:
        reject(d, why);
        break;
    }
    return true;
}

/* One Metric object: a GenAI histogram's points, or counted and skipped. */
static bool metric(decoder *d, const json_t *m, const char *where)
{
    if (!json_is_object(m))
        return fail(d, "%s is not an object", where);
    const json_t *hist, *exph;
    if (!optional_object(d, m, "histogram", where, &hist) ||
        !optional_object(d, m, "exponentialHistogram", where, &exph))
        return false;
    const json_t *data = hist != NULL ? hist : exph;
    const json_t *points = NULL;
    if (data != NULL && !optional_array(d, data, "dataPoints", where, &points))
        return false;
    if (d->emit)
        d->st->metrics++;

    const json_t *name = json_object_get(m, "name");
    sn_otlp_genai_metric kind =
        json_is_string(name)
            ? sn_otlp_genai_metric_lookup(json_string_value(name), json_string_length(name))
            : SN_OTLP_GENAI_NONE;
    if (kind == SN_OTLP_GENAI_NONE || data == NULL) {
        if (d->emit)
            d->st->metrics_skipped++;
        return true;
    }
    const json_t *unit = json_object_get(m, "unit");
    double scale = 1.0;
    bool unit_ok;
    if (unit == NULL || json_is_null(unit))
        unit_ok = sn_otlp_genai_metric_scale(kind, "", 0, &scale);
    else
        unit_ok =
            json_is_string(unit) && sn_otlp_genai_metric_scale(kind, json_string_value(unit),
                                                               json_string_length(unit), &scale);
    uint64_t seed =
        sn_otlp_metric_name_hash(json_string_value(name), json_string_length(name)) + d->res_sum;
    int temp = temporality(json_object_get(data, "aggregationTemporality"));
    size_t k;
    const json_t *p;
    json_array_foreach(points, k, p)
    {
        char pwhere[192];
        snprintf(pwhere, sizeof pwhere, "%s.dataPoints[%zu]", where, k);
        if (!point(d, p, kind, unit_ok, scale, seed, temp, pwhere))
            return false;
    }
    return true;
}

/* The walk over resourceMetrics -> scopeMetrics -> metrics, checking or emitting. */
static bool walk(decoder *d, const json_t *root)
{
    const json_t *rms;
    if (!optional_array(d, root, "resourceMetrics", "request", &rms))
        return false;
    size_t r, s, k;
    const json_t *rm, *sm, *m;
    json_array_foreach(rms, r, rm)
    {
        char where[48];
        snprintf(where, sizeof where, "resourceMetrics[%zu]", r);
        if (!json_is_object(rm))
            return fail(d, "%s is not an object", where);
        const json_t *res;
        if (!optional_object(d, rm, "resource", where, &res))
            return false;
        if (d->emit) {
            d->st->resource_metrics++;
            sn_event_init(&d->tmpl);
            d->res_sum = 0;
        }
        if (res != NULL && !attributes(d, json_object_get(res, "attributes"), false, where))
            return false;
        const json_t *sms;
        if (!optional_array(d, rm, "scopeMetrics", where, &sms))
            return false;
        json_array_foreach(sms, s, sm)
        {
            char swhere[96];
            snprintf(swhere, sizeof swhere, "%s.scopeMetrics[%zu]", where, s);
            if (!json_is_object(sm))
                return fail(d, "%s is not an object", swhere);
            if (d->emit)
                d->st->scope_metrics++;
            const json_t *ms;
            if (!optional_array(d, sm, "metrics", swhere, &ms))
                return false;
            json_array_foreach(ms, k, m)
            {
                char mwhere[128];
                snprintf(mwhere, sizeof mwhere, "%s.metrics[%zu]", swhere, k);
                if (!metric(d, m, mwhere))
                    return false;
            }
        }
    }
    return true;
}

int sn_otlp_decode_metrics_json(const uint8_t *buf, size_t len, sn_otlp_metric_fn fn, void *ud,
                                sn_otlp_metric_stats *stats, char *err, size_t errsize)
{
    sn_otlp_metric_stats local;
    if (stats == NULL)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    char scratch[SN_OTLP_ERR_MAX];
    if (err == NULL || errsize == 0) {
        err = scratch;
        errsize = sizeof scratch;
    }
    err[0] = '\0';
    if (buf == NULL)
        buf = (const uint8_t *)"";
    json_t *root = sn_otlp_json_load_request(buf, len, err, errsize);
    if (root == NULL)
        return -1;

    decoder d = {.fn = fn, .ud = ud, .st = stats, .err = err, .errsize = errsize};
    int rc = -1;
    d.emit = false;
    if (!walk(&d, root))
        goto out_free_root;
    d.emit = true;
    if (!walk(&d, root))
        goto out_free_root;
    rc = 0;

out_free_root:
    json_decref(root);
    return rc;
}
