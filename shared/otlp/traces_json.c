/*
 * traces_json.c -- OTLP/JSON ExportTraceServiceRequest -> LLM events (see traces_json.h).
 *
 * Three steps: a byte scan bounds nesting and tree size, jansson parses, and the tree is walked
 * twice -- once to check every structural type (so a malformed request produces no events),
 * once to turn spans into events through the genai calls.
 */
#include "otlp/traces_json.h"

#include "genai.h"
#include "otlp/json_util.h"

#include <jansson.h>

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct decoder {
    const sn_price_table *prices;
    sn_otlp_event_fn fn;
    void *ud;
    sn_otlp_trace_stats *st;
    bool emit; /* false: the checking walk, nothing counted or delivered */
    char *err;
    size_t errsize;
    sn_event tmpl;                    /* the current resource's template */
    sn_event ev;                      /* the span being decoded */
    bool to_span;                     /* attributes go to ev (else to tmpl) */
    uint8_t bytes[SN_OTLP_VALUE_MAX]; /* a decoded bytesValue */
} decoder;

static bool fail(decoder *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records a one-line error and returns false, for `return fail(...)`. */
static bool fail(decoder *d, const char *fmt, ...)
{
    if (d->err != NULL && d->errsize > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->err, d->errsize, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* ---------------------------------------------------------------- bounds before parsing */

/* ---------------------------------------------------------------- scalar conversions */

/* A double given as a JSON number or one of the proto3 JSON special strings. */
static bool get_double(const json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return true;
    }
    if (!json_is_string(v))
        return false;
    const char *s = json_string_value(v);
    if (strcmp(s, "NaN") == 0)
        *out = NAN;
    else if (strcmp(s, "Infinity") == 0)
        *out = INFINITY;
    else if (strcmp(s, "-Infinity") == 0)
        *out = -INFINITY;
    else
        return false;
    return true;
}

/* The value of one hex digit, or -1. */
static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes a hex id of exactly n bytes (2n digits) that is not all zeros. */
static bool get_hex_id(const json_t *v, uint8_t *out, size_t n)
{
    if (!json_is_string(v) || json_string_length(v) != 2 * n)
        return false;
    const char *s = json_string_value(v);
    uint8_t any = 0;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
        any |= out[i];
    }
    return any != 0;
}

/* Decodes standard or URL-safe base64 (padding optional) into out, at most cap bytes (the rest
 * is dropped). Returns the decoded length, or -1 on a bad character. */
static long base64_decode(const char *s, size_t n, uint8_t *out, size_t cap, bool *cut)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    *cut = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '+' || c == '-')
            v = 62;
        else if (c == '/' || c == '_')
            v = 63;
        else if (c == '=')
            break;
        else
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o < cap)
                out[o++] = (uint8_t)(acc >> bits);
            else
                *cut = true;
        }
    }
    return (long)o;
}

/* ---------------------------------------------------------------- attributes */

/* Hands one attribute value to the conventions module (resource template or current span). */
static void deliver(decoder *d, const char *key, size_t keylen, const sn_attr_value *v)
{
    if (d->to_span)
        sn_genai_span_attr(&d->ev, key, keylen, v);
    else
        sn_genai_resource_attr(&d->tmpl, key, keylen, v);
}

/* Converts one AnyValue object and delivers it; an arrayValue (when !in_array) one element at
 * a time. Values that carry nothing usable are ignored, never an error. */
static void any_value(decoder *d, const char *key, size_t keylen, const json_t *val, bool in_array)
{
    if (!json_is_object(val))
        return;
    sn_attr_value v;
    memset(&v, 0, sizeof v);
    const json_t *x;
    if ((x = json_object_get(val, "stringValue")) != NULL && json_is_string(x)) {
        size_t n = json_string_length(x);
        const char *s = json_string_value(x);
        if (n > SN_OTLP_VALUE_MAX) {
            n = SN_OTLP_VALUE_MAX;
            d->st->values_truncated++;
            while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
                n--; /* cut before a UTF-8 continuation byte */
        }
        v.type = SN_ATTR_STRING;
        v.str = s;
        v.len = n;
    } else if ((x = json_object_get(val, "boolValue")) != NULL && json_is_boolean(x)) {
        v.type = SN_ATTR_BOOL;
        v.b = json_is_true(x);
    } else if ((x = json_object_get(val, "intValue")) != NULL && !json_is_null(x)) {
        if (!sn_otlp_json_int64(x, &v.i))
            return;
        v.type = SN_ATTR_INT;
    } else if ((x = json_object_get(val, "doubleValue")) != NULL && !json_is_null(x)) {
        if (!get_double(x, &v.d))
            return;
        v.type = SN_ATTR_DOUBLE;
    } else if ((x = json_object_get(val, "bytesValue")) != NULL && json_is_string(x)) {
        bool cut;
        long n = base64_decode(json_string_value(x), json_string_length(x), d->bytes,
                               sizeof d->bytes, &cut);
        if (n < 0)
            return;
        if (cut)
            d->st->values_truncated++;
        v.type = SN_ATTR_BYTES;
        v.str = (const char *)d->bytes;
        v.len = (size_t)n;
    } else if ((x = json_object_get(val, "arrayValue")) != NULL && json_is_object(x)) {
        if (in_array) {
            d->st->values_ignored++;
            return;
        }
        const json_t *values = json_object_get(x, "values");
        size_t i;
        const json_t *el;
        if (json_is_array(values)) {
            json_array_foreach(values, i, el)
            {
                any_value(d, key, keylen, el, true);
            }
        }
        return;
    } else if ((x = json_object_get(val, "kvlistValue")) != NULL && !json_is_null(x)) {
        d->st->values_ignored++;
        return;
    } else {
        return; /* empty AnyValue */
    }
    deliver(d, key, keylen, &v);
}

/* Checks (emit == false) or applies an `attributes` array of KeyValue objects. Absent or null
 * is an empty list. */
static bool attributes(decoder *d, const json_t *attrs, const char *where)
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
        any_value(d, json_string_value(key), keylen, json_object_get(kv, "value"), false);
    }
    return true;
}

/* ---------------------------------------------------------------- spans */

/* Counts a refused span under its reason. */
static void reject(decoder *d, sn_otlp_reject why)
{
    d->st->rejected++;
    d->st->rejected_by[why]++;
}

/* A time in nanoseconds since the epoch: absent/null is 0, else a non-negative int64. */
static bool get_time(const json_t *v, int64_t *out)
{
    *out = 0;
    if (v == NULL || json_is_null(v))
        return true;
    return sn_otlp_json_int64(v, out) && *out >= 0;
}

/* One Span object: checked, or turned into an event for the callback. */
static bool span(decoder *d, const json_t *sp, size_t r, size_t s, size_t k)
{
    char where[128];
    snprintf(where, sizeof where, "resourceSpans[%zu].scopeSpans[%zu].spans[%zu]", r, s, k);
    if (!json_is_object(sp))
        return fail(d, "%s is not an object", where);
    const json_t *status = json_object_get(sp, "status");
    if (status != NULL && !json_is_null(status) && !json_is_object(status))
        return fail(d, "%s.status is not an object", where);
    if (!d->emit)
        return attributes(d, json_object_get(sp, "attributes"), where);

    d->st->spans++;
    d->ev = d->tmpl;
    d->to_span = true;
    if (!attributes(d, json_object_get(sp, "attributes"), where))
        return false;
    if (!get_hex_id(json_object_get(sp, "traceId"), d->ev.trace_id, sizeof d->ev.trace_id)) {
        reject(d, SN_OTLP_REJECT_TRACE_ID);
        return true;
    }
    if (!get_hex_id(json_object_get(sp, "spanId"), d->ev.span_id, sizeof d->ev.span_id)) {
        reject(d, SN_OTLP_REJECT_SPAN_ID);
        return true;
    }
    int64_t start, end;
    if (!get_time(json_object_get(sp, "startTimeUnixNano"), &start) ||
        !get_time(json_object_get(sp, "endTimeUnixNano"), &end)) {
        reject(d, SN_OTLP_REJECT_TIME);
        return true;
    }
    d->ev.start_unix_nano = start;
    d->ev.end_unix_nano = end;
    if (json_is_object(status)) {
        const json_t *code = json_object_get(status, "code");
        int64_t c;
        if ((json_is_string(code) && strcmp(json_string_value(code), "STATUS_CODE_ERROR") == 0) ||
            (json_is_integer(code) && sn_otlp_json_int64(code, &c) && c == 2))
            d->ev.is_error = true;
    }
    if (!sn_genai_finish(&d->ev, d->prices))
        return true; /* not an LLM call */
    if (d->ev.end_unix_nano < d->ev.start_unix_nano) {
        reject(d, SN_OTLP_REJECT_TIME);
        return true;
    }
    d->st->llm_events++;
    if (d->fn != NULL)
        d->fn(&d->ev, d->ud);
    return true;
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

/* The walk over resourceSpans -> scopeSpans -> spans, checking or emitting. */
static bool walk(decoder *d, const json_t *root)
{
    const json_t *rss;
    if (!optional_array(d, root, "resourceSpans", "request", &rss))
        return false;
    size_t r, s, k;
    const json_t *rs, *ss, *sp;
    json_array_foreach(rss, r, rs)
    {
        char where[48];
        snprintf(where, sizeof where, "resourceSpans[%zu]", r);
        if (!json_is_object(rs))
            return fail(d, "%s is not an object", where);
        const json_t *res = json_object_get(rs, "resource");
        if (res != NULL && !json_is_null(res) && !json_is_object(res))
            return fail(d, "%s.resource is not an object", where);
        if (d->emit) {
            d->st->resource_spans++;
            sn_event_init(&d->tmpl);
        }
        d->to_span = false;
        if (json_is_object(res) && !attributes(d, json_object_get(res, "attributes"), where))
            return false;
        const json_t *sss;
        if (!optional_array(d, rs, "scopeSpans", where, &sss))
            return false;
        json_array_foreach(sss, s, ss)
        {
            char swhere[128];
            snprintf(swhere, sizeof swhere, "%s.scopeSpans[%zu]", where, s);
            if (!json_is_object(ss))
                return fail(d, "%s is not an object", swhere);
            if (d->emit)
                d->st->scope_spans++;
            const json_t *sps;
            if (!optional_array(d, ss, "spans", swhere, &sps))
                return false;
            json_array_foreach(sps, k, sp)
            {
                if (!span(d, sp, r, s, k))
                    return false;
            }
        }
    }
    return true;
}

int sn_otlp_decode_traces_json(const uint8_t *buf, size_t len, const sn_price_table *prices,
                               sn_otlp_event_fn fn, void *ud, sn_otlp_trace_stats *stats, char *err,
                               size_t errsize)
{
    sn_otlp_trace_stats local;
    if (stats == NULL)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    if (err != NULL && errsize > 0)
        err[0] = '\0';
    char scratch[SN_OTLP_ERR_MAX];
    if (err == NULL || errsize == 0) {
        err = scratch;
        errsize = sizeof scratch;
    }
    json_t *root = sn_otlp_json_load_request(buf, len, err, errsize);
    if (root == NULL)
        return -1;

    /* Two events and a bytes buffer, a few KiB: on the stack, no allocation per request. */
    decoder d = {.prices = prices, .fn = fn, .ud = ud, .st = stats, .err = err, .errsize = errsize};
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
