/*
 * otlp_ref_pbc.c -- an independent reference trace decoder: protobuf-c unpacks the whole
 * ExportTraceServiceRequest, and the tree is walked with the genai mapping and the rules of
 * traces.h (bounded keys and values, arrays one call per element, nested arrays and key/value
 * lists ignored, content keys never read, refused spans counted). Also the event/stats
 * comparisons used by the tests and the differential fuzzer.
 */
#include "otlp_ref.h"

#include "genai.h"

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Trace__V1__Span Span;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest Request;

typedef struct walk {
    sn_otlp_trace_stats *st;
    sn_event *target;
    bool resource;
    char valbuf[SN_OTLP_VALUE_MAX];
} walk;

/* The length of buf[0..n) without a UTF-8 sequence the cut at n left incomplete (traces.c). */
static size_t utf8_whole(const char *buf, size_t n)
{
    size_t lead = n;
    while (lead > 0 && ((unsigned char)buf[lead - 1] & 0xC0) == 0x80)
        lead--;
    if (lead == 0)
        return n;
    unsigned char c = (unsigned char)buf[lead - 1];
    size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return n - (lead - 1) < want ? lead - 1 : n;
}

static void deliver(walk *w, const char *key, size_t keylen, const sn_attr_value *v)
{
    if (w->resource)
        sn_genai_resource_attr(w->target, key, keylen, v);
    else
        sn_genai_span_attr(w->target, key, keylen, v);
}

/* One AnyValue; in_array: an element, where a nested array is ignored. */
static void any_value(walk *w, const char *key, size_t keylen, const AnyValue *a, bool in_array)
{
    sn_attr_value v = {0};
    switch (a->value_case) {
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE: {
        bool str = a->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
        const char *p = str ? a->string_value : (const char *)a->bytes_value.data;
        size_t n = str ? strlen(a->string_value) : a->bytes_value.len;
        bool cut = n > sizeof(w->valbuf);
        if (cut) {
            n = sizeof(w->valbuf);
            w->st->values_truncated++;
        }
        if (n)
            memcpy(w->valbuf, p, n);
        if (str && cut)
            n = utf8_whole(w->valbuf, n);
        v.type = str ? SN_ATTR_STRING : SN_ATTR_BYTES;
        v.str = w->valbuf;
        v.len = n;
        break;
    }
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
        v.type = SN_ATTR_BOOL;
        v.b = a->bool_value;
        break;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
        v.type = SN_ATTR_INT;
        v.i = a->int_value;
        break;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
        v.type = SN_ATTR_DOUBLE;
        v.d = a->double_value;
        break;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE:
        if (in_array) {
            w->st->values_ignored++;
            return;
        }
        for (size_t i = 0; a->array_value && i < a->array_value->n_values; i++)
            any_value(w, key, keylen, a->array_value->values[i], true);
        return;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE:
        w->st->values_ignored++;
        return;
    default:
        return; /* no value */
    }
    deliver(w, key, keylen, &v);
}

static void attributes(walk *w, KeyValue **kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t keylen = strlen(kv[i]->key);
        if (keylen >= SN_OTLP_KEY_MAX) {
            w->st->keys_skipped++;
            continue;
        }
        if (!kv[i]->value || keylen == 0)
            continue; /* no key on the wire (proto3 leaves "" out): the value is not read */
        if (!w->resource && sn_genai_is_content_key(kv[i]->key, keylen))
            continue;
        any_value(w, kv[i]->key, keylen, kv[i]->value, false);
    }
}

static bool id_ok(const ProtobufCBinaryData *b, uint8_t *out, size_t size)
{
    static const uint8_t zero[16];
    if (b->len != size)
        return false;
    memcpy(out, b->data, size);
    return memcmp(out, zero, size) != 0;
}

static void reject(sn_otlp_trace_stats *st, sn_otlp_reject why)
{
    st->rejected++;
    st->rejected_by[why]++;
}

static void span(walk *w, const sn_event *tmpl, const Span *sp, const sn_price_table *prices,
                 sn_otlp_event_fn fn, void *ud)
{
    sn_otlp_trace_stats *st = w->st;
    sn_event ev = *tmpl;
    st->spans++;
    w->target = &ev;
    w->resource = false;
    attributes(w, sp->attributes, sp->n_attributes);
    if (!id_ok(&sp->trace_id, ev.trace_id, sizeof(ev.trace_id))) {
        reject(st, SN_OTLP_REJECT_TRACE_ID);
        return;
    }
    if (!id_ok(&sp->span_id, ev.span_id, sizeof(ev.span_id))) {
        reject(st, SN_OTLP_REJECT_SPAN_ID);
        return;
    }
    if (sp->start_time_unix_nano > (uint64_t)INT64_MAX ||
        sp->end_time_unix_nano > (uint64_t)INT64_MAX) {
        reject(st, SN_OTLP_REJECT_TIME);
        return;
    }
    ev.start_unix_nano = (int64_t)sp->start_time_unix_nano;
    ev.end_unix_nano = (int64_t)sp->end_time_unix_nano;
    if (sp->status &&
        sp->status->code == OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR)
        ev.is_error = true;
    if (!sn_genai_finish(&ev, prices))
        return;
    if (ev.end_unix_nano < ev.start_unix_nano) {
        reject(st, SN_OTLP_REJECT_TIME);
        return;
    }
    st->llm_events++;
    if (fn)
        fn(&ev, ud);
}

int sn_ref_decode_traces_pbc(const uint8_t *buf, size_t len, const sn_price_table *prices,
                             sn_otlp_event_fn fn, void *ud, sn_otlp_trace_stats *stats, char *err,
                             size_t errsize)
{
    sn_otlp_trace_stats scratch;
    walk w = {.st = stats ? stats : &scratch};
    memset(w.st, 0, sizeof(*w.st));
    Request *req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
        NULL, len, buf);
    if (!req) {
        if (err && errsize)
            snprintf(err, errsize, "protobuf-c refused the request");
        return -1;
    }
    for (size_t r = 0; r < req->n_resource_spans; r++) {
        const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = req->resource_spans[r];
        sn_event tmpl;
        sn_event_init(&tmpl);
        w.st->resource_spans++;
        if (rs->resource) {
            w.target = &tmpl;
            w.resource = true;
            attributes(&w, rs->resource->attributes, rs->resource->n_attributes);
        }
        for (size_t s = 0; s < rs->n_scope_spans; s++) {
            w.st->scope_spans++;
            for (size_t i = 0; i < rs->scope_spans[s]->n_spans; i++)
                span(&w, &tmpl, rs->scope_spans[s]->spans[i], prices, fn, ud);
        }
    }
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req,
                                                                                            NULL);
    return 0;
}

static bool same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

bool sn_ref_event_equal(const sn_event *a, const sn_event *b, const char **field)
{
#define SAME(cond, name)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            *field = name;                                                                         \
            return false;                                                                          \
        }                                                                                          \
    } while (0)
#define SAME_STR(m) SAME(strcmp(a->m, b->m) == 0, #m)
#define SAME_INT(m) SAME(a->m == b->m, #m)
    SAME_INT(start_unix_nano);
    SAME_INT(end_unix_nano);
    SAME_STR(service);
    SAME_STR(model);
    SAME_STR(service_version);
    SAME_STR(provider);
    SAME_STR(operation);
    SAME_STR(region);
    SAME_STR(pod);
    SAME_STR(user);
    SAME_STR(error_type);
    SAME_STR(finish_reason);
    SAME(memcmp(a->trace_id, b->trace_id, sizeof(a->trace_id)) == 0, "trace_id");
    SAME(memcmp(a->span_id, b->span_id, sizeof(a->span_id)) == 0, "span_id");
    SAME(same_double(a->latency_ms, b->latency_ms), "latency_ms");
    SAME(same_double(a->ttft_ms, b->ttft_ms), "ttft_ms");
    SAME_INT(input_tokens);
    SAME_INT(output_tokens);
    SAME_INT(total_tokens);
    SAME_INT(cache_read_tokens);
    SAME_INT(cache_write_tokens);
    SAME_INT(reasoning_tokens);
    SAME(same_double(a->cost_usd, b->cost_usd), "cost_usd");
    SAME_INT(cost_source);
    SAME_INT(is_error);
    SAME_INT(conventions);
    SAME_INT(fact_ranks);
    return true;
}

bool sn_ref_stats_equal(const sn_otlp_trace_stats *a, const sn_otlp_trace_stats *b,
                        const char **field)
{
    SAME_INT(resource_spans);
    SAME_INT(scope_spans);
    SAME_INT(spans);
    SAME_INT(llm_events);
    SAME_INT(rejected);
    for (int i = 0; i < SN_OTLP_REJECT_COUNT; i++)
        SAME_INT(rejected_by[i]);
    SAME_INT(keys_skipped);
    SAME_INT(values_truncated);
    SAME_INT(values_ignored);
    return true;
#undef SAME
#undef SAME_STR
#undef SAME_INT
}
