/*
 * decode_bench.c -- sentinel-bench-decode: the OTLP trace decoder on its own, without transport.
 *
 * Builds one loadgen-style request (tests/load/loadgen.c's span shape: 512 GenAI chat spans of
 * one service, 20-odd attributes each, a finish-reason array, status, an 8-attribute resource)
 * with protoc-c, then decodes it N times with the sidecar's hand-written decoder
 * (shared/otlp/traces.c) and with the nanopb decoder it replaced (tests/tools/otlp_ref_nanopb.c)
 * and prints nanoseconds per span for each, as one JSON line per decoder.
 *
 *   sentinel-bench-decode [--spans 512] [--iterations 2000] [--decoder hand|nanopb|both]
 *                         [--prices] [--models 1..5]
 *
 * --prices passes the built-in price table, as the sidecar does, so each span's cost is looked up
 * (without it the table is NULL and the cost stays unknown). --models N gives the spans N of
 * loadgen's five (provider, model) pairs in a pseudo-random order, as sentinel-loadgen mixes them
 * (default 1: every span is the first pair's).
 *
 * For exact, load-independent numbers count instructions of the timed loop only:
 *   valgrind --tool=callgrind --toggle-collect=bench_loop sentinel-bench-decode \
 *       --iterations 20 --decoder hand
 * (instructions per span = the reported total / (20 * 512)). docs/benchmarks.md has results.
 */
#include "otlp/traces.h"
#include "price.h"
#include "otlp_ref.h"

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__ArrayValue ArrayValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;

/* One attribute of the loadgen span: a string (s), an int (i) or a double (d). */
typedef struct attr_spec {
    const char *key;
    char type;
    const char *s;
    int64_t i;
    double d;
} attr_spec;

static const attr_spec span_attrs[] = {
    {"gen_ai.operation.name", 's', "chat", 0, 0},
    {"gen_ai.provider.name", 's', "openai", 0, 0},
    {"gen_ai.request.model", 's', "gpt-4o", 0, 0},
    {"gen_ai.response.model", 's', "gpt-4o-2024-08-06", 0, 0},
    {"gen_ai.response.id", 's', "chatcmpl-5f1e2d3c4b5a69788796a5b4", 0, 0},
    {"gen_ai.conversation.id", 's', "conv_2d3c4b5a69788796", 0, 0},
    {"gen_ai.output.type", 's', "text", 0, 0},
    {"gen_ai.request.temperature", 'd', NULL, 0, 0.7},
    {"gen_ai.request.top_p", 'd', NULL, 0, 0.95},
    {"gen_ai.request.max_tokens", 'i', NULL, 1024, 0},
    {"gen_ai.usage.input_tokens", 'i', NULL, 812, 0},
    {"gen_ai.usage.output_tokens", 'i', NULL, 214, 0},
    {"gen_ai.usage.cache_read.input_tokens", 'i', NULL, 120, 0},
    {"gen_ai.usage.cache_creation.input_tokens", 'i', NULL, 0, 0},
    {"gen_ai.response.time_to_first_chunk", 'd', NULL, 0, 0.31},
    {"server.address", 's', "api.openai.com", 0, 0},
    {"server.port", 'i', NULL, 443, 0},
    {"http.request.method", 's', "POST", 0, 0},
    {"http.response.status_code", 'i', NULL, 200, 0},
};
static const attr_spec resource_attrs[] = {
    {"service.name", 's', "llm-app-0", 0, 0},
    {"service.version", 's', "1.4.2", 0, 0},
    {"service.instance.id", 's', "llm-app-0-7f9c1a2b", 0, 0},
    {"deployment.environment.name", 's', "production", 0, 0},
    {"cloud.region", 's', "us-east-1", 0, 0},
    {"telemetry.sdk.name", 's', "opentelemetry", 0, 0},
    {"telemetry.sdk.language", 's', "python", 0, 0},
    {"telemetry.sdk.version", 's', "1.29.0", 0, 0},
};
/* loadgen's models (tests/load/loadgen.c): provider, request and response model, server. */
static const struct {
    const char *provider, *request, *response, *server;
} models[] = {
    {"openai", "gpt-4o", "gpt-4o-2024-08-06", "api.openai.com"},
    {"openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "api.openai.com"},
    {"anthropic", "claude-sonnet-4", "claude-sonnet-4-20250514", "api.anthropic.com"},
    {"gcp.gemini", "gemini-2.0-flash", "gemini-2.0-flash-001", "generativelanguage.googleapis.com"},
    {"aws.bedrock", "meta.llama3-1-70b-instruct", "meta.llama3-1-70b-instruct-v1:0",
     "bedrock-runtime.us-east-1.amazonaws.com"},
};
#define NMODELS     (sizeof models / sizeof *models)
#define NSPAN_ATTRS (sizeof span_attrs / sizeof *span_attrs)
#define NRES_ATTRS  (sizeof resource_attrs / sizeof *resource_attrs)

/* Key/values for a table, in kv[] and val[] (n entries, caller's storage). */
static void fill_attrs(const attr_spec *spec, size_t n, KeyValue *kv, AnyValue *val, KeyValue **kvp)
{
    for (size_t i = 0; i < n; i++) {
        opentelemetry__proto__common__v1__key_value__init(&kv[i]);
        opentelemetry__proto__common__v1__any_value__init(&val[i]);
        kv[i].key = (char *)spec[i].key;
        kv[i].value = &val[i];
        if (spec[i].type == 's') {
            val[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
            val[i].string_value = (char *)spec[i].s;
        } else if (spec[i].type == 'i') {
            val[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
            val[i].int_value = spec[i].i;
        } else {
            val[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
            val[i].double_value = spec[i].d;
        }
        kvp[i] = &kv[i];
    }
}

/* The storage of one span: its attributes plus the finish-reason array. */
typedef struct span_parts {
    Opentelemetry__Proto__Trace__V1__Span span;
    Opentelemetry__Proto__Trace__V1__Status status;
    KeyValue kv[NSPAN_ATTRS + 1];
    AnyValue val[NSPAN_ATTRS + 1];
    KeyValue *kvp[NSPAN_ATTRS + 1];
    AnyValue reason;
    AnyValue *reasonp;
    ArrayValue reasons;
    uint8_t ids[32];
} span_parts;

/* Encodes the request, its spans of nmodels (1..NMODELS) models; returns a malloc'd buffer (the
 * caller frees it) or NULL. */
static uint8_t *build_request(size_t nspans, size_t nmodels, size_t *len)
{
    uint32_t rng = 12345;
    uint8_t *buf = NULL;
    span_parts *parts = calloc(nspans, sizeof *parts);
    Opentelemetry__Proto__Trace__V1__Span **spanp = calloc(nspans, sizeof *spanp);
    if (!parts || !spanp)
        goto out;
    for (size_t i = 0; i < nspans; i++) {
        span_parts *p = &parts[i];
        Opentelemetry__Proto__Trace__V1__Span *s = &p->span;
        opentelemetry__proto__trace__v1__span__init(s);
        opentelemetry__proto__trace__v1__status__init(&p->status);
        for (size_t b = 0; b < sizeof p->ids; b++)
            p->ids[b] = (uint8_t)(i * 31 + b * 7 + 1);
        s->trace_id = (ProtobufCBinaryData){16, p->ids};
        s->span_id = (ProtobufCBinaryData){8, p->ids + 16};
        s->parent_span_id = (ProtobufCBinaryData){8, p->ids + 24};
        s->flags = 0x101;
        s->name = "chat gpt-4o";
        s->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT;
        s->end_time_unix_nano = 1764200000000000000ULL + i * 1000000ULL;
        s->start_time_unix_nano = s->end_time_unix_nano - 850000000ULL;
        fill_attrs(span_attrs, NSPAN_ATTRS, p->kv, p->val, p->kvp);
        if (nmodels > 1) {
            rng = rng * 1103515245u + 12345u;
            size_t mi = (rng >> 16) % nmodels;
            p->val[1].string_value = (char *)models[mi].provider;
            p->val[2].string_value = (char *)models[mi].request;
            p->val[3].string_value = (char *)models[mi].response;
            p->val[15].string_value = (char *)models[mi].server;
        }
        /* gen_ai.response.finish_reasons: an array of one string */
        KeyValue *fr = &p->kv[NSPAN_ATTRS];
        opentelemetry__proto__common__v1__key_value__init(fr);
        opentelemetry__proto__common__v1__any_value__init(&p->val[NSPAN_ATTRS]);
        opentelemetry__proto__common__v1__any_value__init(&p->reason);
        opentelemetry__proto__common__v1__array_value__init(&p->reasons);
        p->reason.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
        p->reason.string_value = "stop";
        p->reasonp = &p->reason;
        p->reasons.n_values = 1;
        p->reasons.values = &p->reasonp;
        fr->key = "gen_ai.response.finish_reasons";
        fr->value = &p->val[NSPAN_ATTRS];
        fr->value->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
        fr->value->array_value = &p->reasons;
        p->kvp[NSPAN_ATTRS] = fr;
        s->n_attributes = NSPAN_ATTRS + 1;
        s->attributes = p->kvp;
        s->status = &p->status;
        spanp[i] = s;
    }
    KeyValue rkv[NRES_ATTRS], *rkvp[NRES_ATTRS];
    AnyValue rval[NRES_ATTRS];
    fill_attrs(resource_attrs, NRES_ATTRS, rkv, rval, rkvp);
    Opentelemetry__Proto__Resource__V1__Resource res;
    opentelemetry__proto__resource__v1__resource__init(&res);
    res.n_attributes = NRES_ATTRS;
    res.attributes = rkvp;
    Opentelemetry__Proto__Common__V1__InstrumentationScope scope;
    opentelemetry__proto__common__v1__instrumentation_scope__init(&scope);
    scope.name = "opentelemetry.instrumentation.openai_v2";
    scope.version = "2.1b0";
    Opentelemetry__Proto__Trace__V1__ScopeSpans ss, *ssp = &ss;
    opentelemetry__proto__trace__v1__scope_spans__init(&ss);
    ss.scope = &scope;
    ss.n_spans = nspans;
    ss.spans = spanp;
    Opentelemetry__Proto__Trace__V1__ResourceSpans rs, *rsp = &rs;
    opentelemetry__proto__trace__v1__resource_spans__init(&rs);
    rs.resource = &res;
    rs.n_scope_spans = 1;
    rs.scope_spans = &ssp;
    rs.schema_url = "https://opentelemetry.io/schemas/1.28.0";
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req;
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(&req);
    req.n_resource_spans = 1;
    req.resource_spans = &rsp;
    *len =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
            &req);
    buf = malloc(*len);
    if (buf)
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(&req, buf);
out:
    free(spanp);
    free(parts);
    return buf;
}

typedef int (*decode_fn)(const uint8_t *, size_t, const sn_price_table *, sn_otlp_event_fn, void *,
                         sn_otlp_trace_stats *, char *, size_t);

static void count_event(const sn_event *ev, void *ud)
{
    (void)ev;
    (*(uint64_t *)ud)++;
}

/* The timed loop (callgrind: --toggle-collect=bench_loop). Returns events seen, or 0 on error. */
__attribute__((noinline)) uint64_t bench_loop(decode_fn fn, const uint8_t *buf, size_t len,
                                              const sn_price_table *prices, long iterations);
__attribute__((noinline)) uint64_t bench_loop(decode_fn fn, const uint8_t *buf, size_t len,
                                              const sn_price_table *prices, long iterations)
{
    uint64_t events = 0;
    char err[SN_OTLP_ERR_MAX];
    for (long i = 0; i < iterations; i++) {
        if (fn(buf, len, prices, count_event, &events, NULL, err, sizeof err) != 0) {
            fprintf(stderr, "decode failed: %s\n", err);
            return 0;
        }
    }
    return events;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run(const char *name, decode_fn fn, const uint8_t *buf, size_t len, size_t nspans,
               const sn_price_table *prices, long iterations)
{
    bench_loop(fn, buf, len, prices, iterations / 10 + 1); /* warm up */
    double t0 = now_s();
    uint64_t events = bench_loop(fn, buf, len, prices, iterations);
    double dt = now_s() - t0;
    if (events != (uint64_t)iterations * nspans) {
        fprintf(stderr, "%s: %llu events, expected %llu\n", name, (unsigned long long)events,
                (unsigned long long)((uint64_t)iterations * nspans));
        return -1;
    }
    double spans = (double)iterations * (double)nspans;
    printf("{\"decoder\":\"%s\",\"spans_per_request\":%zu,\"request_bytes\":%zu,"
           "\"iterations\":%ld,\"prices\":%s,\"ns_per_span\":%.1f,\"spans_per_s\":%.0f}\n",
           name, nspans, len, iterations, prices ? "true" : "false", dt * 1e9 / spans, spans / dt);
    return 0;
}

/* Reads a positive integer option value; exits on a bad one. */
static long parse_count(const char *opt, const char *v)
{
    char *end;
    long n = v ? strtol(v, &end, 10) : 0;
    if (!v || *end != '\0' || n <= 0 || n > 100000000) {
        fprintf(stderr, "%s needs a positive integer\n", opt);
        exit(2);
    }
    return n;
}

int main(int argc, char **argv)
{
    long nspans = 512, iterations = 2000, nmodels = 1;
    const char *which = "both";
    bool with_prices = false;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--spans") == 0)
            nspans = parse_count(argv[i], v), i++;
        else if (strcmp(argv[i], "--iterations") == 0)
            iterations = parse_count(argv[i], v), i++;
        else if (strcmp(argv[i], "--decoder") == 0 && v)
            which = v, i++;
        else if (strcmp(argv[i], "--prices") == 0)
            with_prices = true;
        else if (strcmp(argv[i], "--models") == 0 && v && parse_count(argv[i], v) <= (long)NMODELS)
            nmodels = parse_count(argv[i], v), i++;
        else {
            fprintf(stderr,
                    "usage: %s [--spans N] [--iterations N] [--decoder hand|nanopb|both] "
                    "[--prices] [--models 1..5]\n",
                    argv[0]);
            return 2;
        }
    }
    size_t len;
    uint8_t *buf = build_request((size_t)nspans, (size_t)nmodels, &len);
    if (!buf) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    int rc = 0;
    sn_price_table *prices = NULL;
    if (with_prices) {
        char err[256];
        prices = sn_price_table_default(err, sizeof err);
        if (!prices) {
            fprintf(stderr, "price table: %s\n", err);
            rc = 1;
            goto out;
        }
    }
    if (strcmp(which, "hand") == 0 || strcmp(which, "both") == 0)
        rc |= run("hand", sn_otlp_decode_traces, buf, len, (size_t)nspans, prices, iterations);
    if (strcmp(which, "nanopb") == 0 || strcmp(which, "both") == 0)
        rc |= run("nanopb", sn_ref_decode_traces_nanopb, buf, len, (size_t)nspans, prices,
                  iterations);
out:
    sn_price_table_destroy(prices);
    free(buf);
    return rc == 0 ? 0 : 1;
}
