/*
 * Unit tests for shared/otlp/traces.c: requests are built with the protoc-c generated code (an
 * encoder independent of the nanopb decoder under test) or, for malformed and unusual input, by
 * hand; every fact the decoder hands on is checked.
 */
#include "otlp/traces.h"

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__ArrayValue ArrayValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValueList KeyValueList;
typedef Opentelemetry__Proto__Resource__V1__Resource Resource;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans ResourceSpans;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans ScopeSpans;
typedef Opentelemetry__Proto__Trace__V1__Span Span;
typedef Opentelemetry__Proto__Trace__V1__Status Status;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest Request;

#define T0 1700000000000000000LL /* a span start, unix nanos */

/* --- building requests with protoc-c: every object comes from a pool freed at the end --- */

typedef struct pool {
    void *ptr[4096];
    size_t n;
} pool;

static pool P;

static void *palloc(size_t size)
{
    ck_assert_uint_lt(P.n, sizeof(P.ptr) / sizeof(P.ptr[0]));
    void *p = calloc(1, size);
    ck_assert_ptr_nonnull(p);
    P.ptr[P.n++] = p;
    return p;
}

static void pool_free(void)
{
    for (size_t i = 0; i < P.n; i++)
        free(P.ptr[i]);
    P.n = 0;
}

static AnyValue *v_str(const char *s)
{
    AnyValue *v = palloc(sizeof(*v));
    opentelemetry__proto__common__v1__any_value__init(v);
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    v->string_value = (char *)s;
    return v;
}

static AnyValue *v_int(int64_t i)
{
    AnyValue *v = palloc(sizeof(*v));
    opentelemetry__proto__common__v1__any_value__init(v);
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    v->int_value = i;
    return v;
}

static AnyValue *v_double(double d)
{
    AnyValue *v = palloc(sizeof(*v));
    opentelemetry__proto__common__v1__any_value__init(v);
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
    v->double_value = d;
    return v;
}

static AnyValue *v_bool(bool b)
{
    AnyValue *v = palloc(sizeof(*v));
    opentelemetry__proto__common__v1__any_value__init(v);
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
    v->bool_value = b;
    return v;
}

static AnyValue *v_array(size_t n, AnyValue **elems)
{
    ArrayValue *a = palloc(sizeof(*a));
    opentelemetry__proto__common__v1__array_value__init(a);
    a->n_values = n;
    a->values = palloc(n * sizeof(*a->values) + 1);
    memcpy(a->values, elems, n * sizeof(*elems));
    AnyValue *v = palloc(sizeof(*v));
    opentelemetry__proto__common__v1__any_value__init(v);
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
    v->array_value = a;
    return v;
}

static KeyValue *kv(const char *key, AnyValue *v);

static AnyValue *v_kvlist(const char *key, AnyValue *inner)
{
    KeyValueList *l = palloc(sizeof(*l));
    opentelemetry__proto__common__v1__key_value_list__init(l);
    l->n_values = 1;
    l->values = palloc(sizeof(*l->values));
    l->values[0] = kv(key, inner);
    AnyValue *v = palloc(sizeof(*v));
    opentelemetry__proto__common__v1__any_value__init(v);
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE;
    v->kvlist_value = l;
    return v;
}

static KeyValue *kv(const char *key, AnyValue *v)
{
    KeyValue *p = palloc(sizeof(*p));
    opentelemetry__proto__common__v1__key_value__init(p);
    p->key = (char *)key;
    p->value = v;
    return p;
}

static KeyValue **kvs(size_t n, KeyValue **list)
{
    KeyValue **a = palloc(n * sizeof(*a) + 1);
    memcpy(a, list, n * sizeof(*list));
    return a;
}

/* A span with ids derived from `seed` (never all zero), times, status code and attributes. */
static Span *span(uint8_t seed, int64_t start, int64_t end, int status, size_t n, KeyValue **attrs)
{
    Span *s = palloc(sizeof(*s));
    opentelemetry__proto__trace__v1__span__init(s);
    uint8_t *tid = palloc(16);
    uint8_t *sid = palloc(8);
    for (int i = 0; i < 16; i++)
        tid[i] = (uint8_t)(seed + i);
    for (int i = 0; i < 8; i++)
        sid[i] = (uint8_t)(seed * 3 + i + 1);
    s->trace_id.data = tid;
    s->trace_id.len = 16;
    s->span_id.data = sid;
    s->span_id.len = 8;
    s->name = "llm call";
    s->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT;
    s->start_time_unix_nano = (uint64_t)start;
    s->end_time_unix_nano = (uint64_t)end;
    s->n_attributes = n;
    s->attributes = kvs(n, attrs);
    if (status >= 0) {
        Status *st = palloc(sizeof(*st));
        opentelemetry__proto__trace__v1__status__init(st);
        st->code = (Opentelemetry__Proto__Trace__V1__Status__StatusCode)status;
        st->message = status == 2 ? "upstream failed" : "";
        s->status = st;
    }
    return s;
}

static ScopeSpans *scope(size_t n, Span **spans)
{
    ScopeSpans *ss = palloc(sizeof(*ss));
    opentelemetry__proto__trace__v1__scope_spans__init(ss);
    Opentelemetry__Proto__Common__V1__InstrumentationScope *sc = palloc(sizeof(*sc));
    opentelemetry__proto__common__v1__instrumentation_scope__init(sc);
    sc->name = "test-instrumentation";
    sc->version = "1.0.0";
    ss->scope = sc;
    ss->n_spans = n;
    ss->spans = palloc(n * sizeof(*ss->spans) + 1);
    memcpy(ss->spans, spans, n * sizeof(*spans));
    ss->schema_url = "https://opentelemetry.io/schemas/1.30.0";
    return ss;
}

static Resource *resource(const char *service, const char *region)
{
    Resource *r = palloc(sizeof(*r));
    opentelemetry__proto__resource__v1__resource__init(r);
    KeyValue *a[] = {
        kv("service.name", v_str(service)),       kv("service.version", v_str("1.4.2")),
        kv("cloud.region", v_str(region)),        kv("k8s.pod.name", v_str("chatbot-7d9f-abcde")),
        kv("telemetry.sdk.language", v_str("c")),
    };
    r->n_attributes = 5;
    r->attributes = kvs(5, a);
    return r;
}

static ResourceSpans *rspans(Resource *r, size_t n, ScopeSpans **scopes)
{
    ResourceSpans *rs = palloc(sizeof(*rs));
    opentelemetry__proto__trace__v1__resource_spans__init(rs);
    rs->resource = r;
    rs->n_scope_spans = n;
    rs->scope_spans = palloc(n * sizeof(*rs->scope_spans) + 1);
    memcpy(rs->scope_spans, scopes, n * sizeof(*scopes));
    return rs;
}

/* Packs a request of n resource spans into a pooled buffer. */
static uint8_t *pack(size_t n, ResourceSpans **rs, size_t *len)
{
    Request req;
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(&req);
    req.n_resource_spans = n;
    req.resource_spans = rs;
    *len =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
            &req);
    uint8_t *buf = palloc(*len + 1);
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(&req, buf);
    return buf;
}

/* A typical GenAI chat span (current attribute names). */
static Span *genai_span(uint8_t seed, const char *model, int64_t in, int64_t out, int status)
{
    AnyValue *reasons[] = {v_str("stop"), v_str("length")};
    KeyValue *a[] = {
        kv("gen_ai.operation.name", v_str("chat")),
        kv("gen_ai.provider.name", v_str("az.ai.openai")),
        kv("gen_ai.request.model", v_str("gpt-4o")),
        kv("gen_ai.response.model", v_str(model)),
        kv("gen_ai.usage.input_tokens", v_int(in)),
        kv("gen_ai.usage.output_tokens", v_int(out)),
        kv("gen_ai.response.finish_reasons", v_array(2, reasons)),
        kv("gen_ai.response.time_to_first_chunk", v_double(0.25)),
        kv("gen_ai.prompt", v_str("What is the capital of France?")),
        kv("http.response.status_code", v_int(200)),
    };
    return span(seed, T0, T0 + 1500000000LL, status, 10, a);
}

/* A span no LLM convention touches. */
static Span *http_span(uint8_t seed)
{
    KeyValue *a[] = {
        kv("http.request.method", v_str("GET")),
        kv("url.path", v_str("/healthz")),
        kv("http.response.status_code", v_int(200)),
    };
    return span(seed, T0, T0 + 1000000LL, 1, 3, a);
}

/* --- collecting events --- */

typedef struct sink {
    sn_event ev[64];
    size_t n;
} sink;

static void collect(const sn_event *ev, void *ud)
{
    sink *k = ud;
    ck_assert_uint_lt(k->n, 64);
    k->ev[k->n++] = *ev;
}

static int decode(const uint8_t *buf, size_t len, sink *k, sn_otlp_trace_stats *st, char *err)
{
    memset(k, 0, sizeof(*k));
    err[0] = '\0';
    return sn_otlp_decode_traces(buf, len, NULL, collect, k, st, err, SN_OTLP_ERR_MAX);
}

static void teardown(void)
{
    pool_free();
}

/* --- well-formed requests --- */

START_TEST(one_genai_span_every_fact)
{
    Span *sp[] = {genai_span(1, "gpt-4o-2024-08-06", 120, 45, 0)};
    ScopeSpans *sc[] = {scope(1, sp)};
    ResourceSpans *rs[] = {rspans(resource("chatbot-api", "us-east-1"), 1, sc)};
    size_t len;
    uint8_t *buf = pack(1, rs, &len);

    sink k;
    sn_otlp_trace_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode(buf, len, &k, &st, err), 0);
    ck_assert_str_eq(err, "");
    ck_assert_uint_eq(k.n, 1);
    const sn_event *ev = &k.ev[0];
    ck_assert_str_eq(ev->service, "chatbot-api");
    ck_assert_str_eq(ev->service_version, "1.4.2");
    ck_assert_str_eq(ev->region, "us-east-1");
    ck_assert_str_eq(ev->pod, "chatbot-7d9f-abcde");
    ck_assert_str_eq(ev->model, "gpt-4o-2024-08-06");
    ck_assert_str_eq(ev->provider, "azure.ai.openai");
    ck_assert_str_eq(ev->operation, "chat");
    ck_assert_str_eq(ev->finish_reason, "stop");
    ck_assert_int_eq(ev->input_tokens, 120);
    ck_assert_int_eq(ev->output_tokens, 45);
    ck_assert_int_eq(ev->total_tokens, 165);
    ck_assert_double_eq_tol(ev->ttft_ms, 250.0, 1e-9);
    ck_assert_double_eq_tol(ev->latency_ms, 1500.0, 1e-9);
    ck_assert_int_eq(ev->start_unix_nano, T0);
    ck_assert_int_eq(ev->end_unix_nano, T0 + 1500000000LL);
    for (int i = 0; i < 16; i++)
        ck_assert_uint_eq(ev->trace_id[i], (uint8_t)(1 + i));
    for (int i = 0; i < 8; i++)
        ck_assert_uint_eq(ev->span_id[i], (uint8_t)(3 + i + 1));
    ck_assert(!ev->is_error);
    ck_assert(isnan(ev->cost_usd)); /* no prices given, no cost attribute */
    ck_assert_int_eq(ev->cost_source, SN_COST_UNKNOWN);
    ck_assert(ev->conventions & SN_CONV_GENAI);

    ck_assert_uint_eq(st.resource_spans, 1);
    ck_assert_uint_eq(st.scope_spans, 1);
    ck_assert_uint_eq(st.spans, 1);
    ck_assert_uint_eq(st.llm_events, 1);
    ck_assert_uint_eq(st.rejected, 0);
    ck_assert_uint_eq(st.keys_skipped, 0);
    ck_assert_uint_eq(st.values_truncated, 0);
}
END_TEST

START_TEST(many_resources_scopes_spans_in_order)
{
    /* Two resources x two scopes; LLM and plain spans interleaved. */
    ResourceSpans *rs[2];
    const char *svc[2] = {"chatbot-api", "rag-worker"};
    const char *reg[2] = {"us-east-1", "eu-west-1"};
    uint8_t seed = 1;
    for (int r = 0; r < 2; r++) {
        ScopeSpans *sc[2];
        for (int s = 0; s < 2; s++) {
            Span *sp[3] = {genai_span(seed, "m-a", 10 * seed, 1, 0), http_span((uint8_t)(seed + 1)),
                           genai_span((uint8_t)(seed + 2), "m-b", 10 * (seed + 2), 2, 0)};
            seed = (uint8_t)(seed + 3);
            sc[s] = scope(3, sp);
        }
        rs[r] = rspans(resource(svc[r], reg[r]), 2, sc);
    }
    size_t len;
    uint8_t *buf = pack(2, rs, &len);

    sink k;
    sn_otlp_trace_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode(buf, len, &k, &st, err), 0);
    ck_assert_uint_eq(st.resource_spans, 2);
    ck_assert_uint_eq(st.scope_spans, 4);
    ck_assert_uint_eq(st.spans, 12);
    ck_assert_uint_eq(st.llm_events, 8);
    ck_assert_uint_eq(k.n, 8);
    for (size_t i = 0; i < k.n; i++) {
        int r = i < 4 ? 0 : 1;
        ck_assert_str_eq(k.ev[i].service, svc[r]);
        ck_assert_str_eq(k.ev[i].region, reg[r]);
        ck_assert_str_eq(k.ev[i].model, i % 2 == 0 ? "m-a" : "m-b");
        /* Seeds run 1, 3, 4, 6, 7, 9, ...: the LLM spans are the 1st and 3rd of each triple. */
        int64_t seed_i = 1 + 3 * (int64_t)(i / 2) + (i % 2 == 0 ? 0 : 2);
        ck_assert_int_eq(k.ev[i].input_tokens, 10 * seed_i);
        ck_assert_uint_eq(k.ev[i].trace_id[0], (uint8_t)seed_i);
    }
}
END_TEST

START_TEST(non_llm_spans_are_skipped)
{
    Span *sp[] = {http_span(1), http_span(2), http_span(3)};
    ScopeSpans *sc[] = {scope(3, sp)};
    ResourceSpans *rs[] = {rspans(resource("web", "us-east-1"), 1, sc)};
    size_t len;
    uint8_t *buf = pack(1, rs, &len);
    sink k;
    sn_otlp_trace_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode(buf, len, &k, &st, err), 0);
    ck_assert_uint_eq(k.n, 0);
    ck_assert_uint_eq(st.spans, 3);
    ck_assert_uint_eq(st.llm_events, 0);
    ck_assert_uint_eq(st.rejected, 0);
}
END_TEST

START_TEST(status_error_marks_the_event)
{
    Span *sp[] = {genai_span(1, "gpt-4o", 1, 1, 2), genai_span(2, "gpt-4o", 1, 1, 1),
                  genai_span(3, "gpt-4o", 1, 1, -1)};
    ScopeSpans *sc[] = {scope(3, sp)};
    ResourceSpans *rs[] = {rspans(resource("svc", "r"), 1, sc)};
    size_t len;
    uint8_t *buf = pack(1, rs, &len);
    sink k;
    sn_otlp_trace_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode(buf, len, &k, &st, err), 0);
    ck_assert_uint_eq(k.n, 3);
    ck_assert(k.ev[0].is_error);  /* STATUS_CODE_ERROR */
    ck_assert(!k.ev[1].is_error); /* STATUS_CODE_OK */
    ck_assert(!k.ev[2].is_error); /* no status */
}
END_TEST

START_TEST(other_conventions_and_value_types)
{
    /* OpenInference with an integer-valued string, a cost, and a bool; OpenLLMetry totals. */
    KeyValue *oi[] = {
        kv("openinference.span.kind", v_str("LLM")),
        kv("llm.model_name", v_str("claude-3-5-sonnet")),
        kv("llm.provider", v_str("anthropic")),
        kv("llm.token_count.prompt", v_int(0)), /* 0 is a value, not "unknown" */
        kv("llm.token_count.completion", v_str("77")),
        kv("llm.cost.total", v_double(0.0123)),
        kv("some.flag", v_bool(true)),
    };
    KeyValue *oll[] = {
        kv("llm.request.type", v_str("chat")),
        kv("gen_ai.system", v_str("vertex_ai")),
        kv("gen_ai.request.model", v_str("gemini-1.5-pro")),
        kv("gen_ai.usage.prompt_tokens", v_int(300)),
        kv("gen_ai.usage.completion_tokens", v_int(20)),
        kv("llm.usage.total_tokens", v_int(321)),
        kv("error.type", v_str("timeout")),
    };
    Span *sp[] = {span(1, T0, T0 + 2000000LL, 0, 7, oi), span(2, T0, T0 + 3000000LL, 0, 7, oll)};
    ScopeSpans *sc[] = {scope(2, sp)};
    ResourceSpans *rs[] = {rspans(resource("agents", "ap-south-1"), 1, sc)};
    size_t len;
    uint8_t *buf = pack(1, rs, &len);
    sink k;
    sn_otlp_trace_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode(buf, len, &k, &st, err), 0);
    ck_assert_uint_eq(k.n, 2);

    ck_assert_str_eq(k.ev[0].model, "claude-3-5-sonnet");
    ck_assert_str_eq(k.ev[0].provider, "anthropic");
    ck_assert_int_eq(k.ev[0].input_tokens, 0);
    ck_assert_int_eq(k.ev[0].output_tokens, 77);
    ck_assert_int_eq(k.ev[0].total_tokens, 77);
    ck_assert_double_eq_tol(k.ev[0].cost_usd, 0.0123, 1e-12);
    ck_assert_int_eq(k.ev[0].cost_source, SN_COST_SPAN);
    ck_assert(k.ev[0].conventions & SN_CONV_OPENINFERENCE);
    ck_assert_double_eq_tol(k.ev[0].latency_ms, 2.0, 1e-9);

    ck_assert_str_eq(k.ev[1].model, "gemini-1.5-pro");
    ck_assert_str_eq(k.ev[1].provider, "gcp.vertex_ai");
    ck_assert_int_eq(k.ev[1].input_tokens, 300);
    ck_assert_int_eq(k.ev[1].output_tokens, 20);
    ck_assert_int_eq(k.ev[1].total_tokens, 321);
    ck_assert_str_eq(k.ev[1].error_type, "timeout");
    ck_assert(k.ev[1].is_error);
    ck_assert(k.ev[1].conventions & SN_CONV_OPENLLMETRY);
}
END_TEST

START_TEST(price_table_is_passed_through)
{
    char perr[256];
    sn_price_table *prices = sn_price_table_default(perr, sizeof(perr));
    ck_assert_msg(prices != NULL, "%s", perr);
    Span *sp[] = {genai_span(1, "gpt-4o", 1000, 1000, 0)};
    ScopeSpans *sc[] = {scope(1, sp)};
    ResourceSpans *rs[] = {rspans(resource("svc", "r"), 1, sc)};
    size_t len;
    uint8_t *buf = pack(1, rs, &len);
    sink k = {0};
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(sn_otlp_decode_traces(buf, len, prices, collect, &k, NULL, err, sizeof(err)),
                     0);
    sn_price_table_destroy(prices);
    ck_assert_uint_eq(k.n, 1);
    ck_assert_int_eq(k.ev[0].cost_source, SN_COST_PRICE_TABLE);
    ck_assert(k.ev[0].cost_usd > 0.0);
}
END_TEST

/* The decoder remembers, across the spans of a request, each attribute position's key class and
 * the last provider and price rule. Spans whose keys at a position differ in bytes but not in
 * length (gen_ai.request.model / gen_ai.provider.name, gen_ai.system / gen_ai.prompt), whose
 * providers and models alternate, and whose attribute counts differ must each decode as they do
 * alone. */
START_TEST(request_memo_gives_each_span_its_own_facts)
{
    char perr[256];
    sn_price_table *prices = sn_price_table_default(perr, sizeof(perr));
    ck_assert_msg(prices != NULL, "%s", perr);
    AnyValue *reasons[] = {v_str("length"), v_str("stop")};
    KeyValue *a0[] = {
        kv("gen_ai.request.model", v_str("gpt-4o")), kv("gen_ai.provider.name", v_str(" OpenAI ")),
        kv("gen_ai.usage.input_tokens", v_int(1000)), kv("gen_ai.usage.output_tokens", v_int(10))};
    KeyValue *a1[] = {kv("gen_ai.provider.name", v_str("anthropic")),
                      kv("gen_ai.request.model", v_str("claude-3-5-sonnet-20241022")),
                      kv("gen_ai.usage.input_tokens", v_int(2000)),
                      kv("gen_ai.usage.output_tokens", v_int(20)),
                      kv("gen_ai.response.finish_reasons", v_array(2, reasons))};
    KeyValue *a2[] = {kv("gen_ai.system", v_str("az.ai.openai")),
                      kv("gen_ai.request.model", v_str("gpt-4o-mini")),
                      kv("gen_ai.usage.input_tokens", v_int(3000))};
    KeyValue *a3[] = {kv("gen_ai.prompt", v_str("not a provider")),
                      kv("gen_ai.request.model", v_str("gpt-4o-mini")),
                      kv("gen_ai.usage.input_tokens", v_str("4000"))};
    KeyValue *a4[] = {
        kv("gen_ai.request.model", v_str("gpt-4o")), kv("gen_ai.provider.name", v_str(" OpenAI ")),
        kv("gen_ai.usage.input_tokens", v_int(5000)), kv("gen_ai.usage.output_tokens", v_int(50))};
    Span *sp[] = {span(1, T0, T0 + 1000, 0, 4, a0), span(2, T0, T0 + 1000, 0, 5, a1),
                  span(3, T0, T0 + 1000, 0, 3, a2), span(4, T0, T0 + 1000, 0, 3, a3),
                  span(5, T0, T0 + 1000, 0, 4, a4)};
    enum { N = sizeof sp / sizeof sp[0] };
    ScopeSpans *sc[] = {scope(N, sp)};
    ResourceSpans *rs[] = {rspans(resource("svc", "r"), 1, sc)};
    size_t len;
    uint8_t *buf = pack(1, rs, &len);
    static sink all, one;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(sn_otlp_decode_traces(buf, len, prices, collect, &all, NULL, err, sizeof err),
                     0);
    ck_assert_uint_eq(all.n, N);
    for (size_t i = 0; i < N; i++) {
        ScopeSpans *sc1[] = {scope(1, &sp[i])};
        ResourceSpans *rs1[] = {rspans(resource("svc", "r"), 1, sc1)};
        uint8_t *buf1 = pack(1, rs1, &len);
        memset(&one, 0, sizeof one);
        ck_assert_int_eq(
            sn_otlp_decode_traces(buf1, len, prices, collect, &one, NULL, err, sizeof err), 0);
        ck_assert_uint_eq(one.n, 1);
        const sn_event *x = &all.ev[i], *y = &one.ev[0];
        ck_assert_str_eq(x->model, y->model);
        ck_assert_str_eq(x->provider, y->provider);
        ck_assert_str_eq(x->finish_reason, y->finish_reason);
        ck_assert_int_eq(x->input_tokens, y->input_tokens);
        ck_assert_int_eq(x->output_tokens, y->output_tokens);
        ck_assert_int_eq(x->cost_source, y->cost_source);
        if (isnan(y->cost_usd))
            ck_assert(isnan(x->cost_usd));
        else
            ck_assert_double_eq(x->cost_usd, y->cost_usd);
    }
    /* And what each is. */
    ck_assert_str_eq(all.ev[0].provider, "openai");
    ck_assert_str_eq(all.ev[1].provider, "anthropic");
    ck_assert_str_eq(all.ev[1].model, "claude-3-5-sonnet-20241022");
    ck_assert_str_eq(all.ev[1].finish_reason, "length");
    ck_assert_str_eq(all.ev[2].provider, "azure.ai.openai");
    ck_assert_str_eq(all.ev[3].provider, ""); /* gen_ai.prompt is content, never a fact */
    ck_assert_int_eq(all.ev[3].input_tokens, 4000);
    ck_assert_str_eq(all.ev[4].provider, "openai");
    ck_assert_int_eq(all.ev[0].cost_source, SN_COST_PRICE_TABLE);
    ck_assert_int_eq(all.ev[1].cost_source, SN_COST_PRICE_TABLE);
    ck_assert(all.ev[4].cost_usd > all.ev[0].cost_usd);
    sn_price_table_destroy(prices);
}
END_TEST

/* The key memo compares a key with the previous span's key at its position word by word from
 * both ends: a key that differs from it in any one byte (at every position, for keys of each
 * length class: up to 16, 32 and 48 bytes) is not taken for it, and the key itself after such a
 * key is still recognised. */
START_TEST(key_memo_sees_a_difference_at_every_byte)
{
    static const char *const keys[] = {"gen_ai.system", "gen_ai.usage.input_tokens",
                                       "gen_ai.usage.cache_creation.input_tokens"};
    char err[SN_OTLP_ERR_MAX];
    static sink k;
    for (size_t ki = 0; ki < sizeof keys / sizeof keys[0]; ki++) {
        size_t n = strlen(keys[ki]);
        for (size_t i = 0; i < n; i++) {
            char *bad = palloc(n + 1);
            memcpy(bad, keys[ki], n + 1);
            bad[i] = '#';
            Span *sp[3];
            for (int j = 0; j < 3; j++) {
                const char *key = j == 1 ? bad : keys[ki];
                AnyValue *v = ki == 0 ? v_str("anthropic") : v_int(9);
                KeyValue *a[] = {kv("gen_ai.request.model", v_str("m")), kv(key, v)};
                sp[j] = span((uint8_t)(j + 1), T0, T0 + 1000, 0, 2, a);
            }
            ScopeSpans *sc[] = {scope(3, sp)};
            ResourceSpans *rs[] = {rspans(resource("svc", "r"), 1, sc)};
            size_t len;
            uint8_t *buf = pack(1, rs, &len);
            ck_assert_int_eq(decode(buf, len, &k, NULL, err), 0);
            ck_assert_uint_eq(k.n, 3);
            for (int j = 0; j < 3; j++) {
                bool hit = j != 1;
                if (ki == 0)
                    ck_assert_msg(strcmp(k.ev[j].provider, hit ? "anthropic" : "") == 0,
                                  "key %s byte %zu span %d: provider '%s'", keys[ki], i, j,
                                  k.ev[j].provider);
                else if (ki == 1)
                    ck_assert_msg((k.ev[j].input_tokens == 9) == hit, "key %s byte %zu span %d",
                                  keys[ki], i, j);
                else
                    ck_assert_msg((k.ev[j].cache_write_tokens == 9) == hit,
                                  "key %s byte %zu span %d", keys[ki], i, j);
            }
        }
    }
}
END_TEST

START_TEST(refused_spans_are_counted_by_reason)
{
    Span *short_tid = genai_span(1, "m", 1, 1, 0);
    short_tid->trace_id.len = 8;
    Span *zero_tid = genai_span(2, "m", 1, 1, 0);
    memset(zero_tid->trace_id.data, 0, 16);
    Span *long_sid = genai_span(3, "m", 1, 1, 0);
    long_sid->span_id.len = 0;
    Span *backwards = genai_span(4, "m", 1, 1, 0);
    backwards->end_time_unix_nano = backwards->start_time_unix_nano - 1;
    Span *far = genai_span(5, "m", 1, 1, 0);
    far->end_time_unix_nano = UINT64_MAX;
    Span *ok = genai_span(6, "m", 1, 1, 0);
    Span *sp[] = {short_tid, zero_tid, long_sid, backwards, far, ok};
    ScopeSpans *sc[] = {scope(6, sp)};
    ResourceSpans *rs[] = {rspans(resource("svc", "r"), 1, sc)};
    size_t len;
    uint8_t *buf = pack(1, rs, &len);
    sink k;
    sn_otlp_trace_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode(buf, len, &k, &st, err), 0);
    ck_assert_uint_eq(k.n, 1);
    ck_assert_uint_eq(k.ev[0].trace_id[0], 6);
    ck_assert_uint_eq(st.spans, 6);
    ck_assert_uint_eq(st.rejected, 5);
    ck_assert_uint_eq(st.rejected_by[SN_OTLP_REJECT_TRACE_ID], 2);
    ck_assert_uint_eq(st.rejected_by[SN_OTLP_REJECT_SPAN_ID], 1);
    ck_assert_uint_eq(st.rejected_by[SN_OTLP_REJECT_TIME], 2);
    ck_assert_str_eq(sn_otlp_reject_name(SN_OTLP_REJECT_TIME), "time");
    ck_assert_str_eq(sn_otlp_reject_name(SN_OTLP_REJECT_COUNT), "unknown");
}
END_TEST

START_TEST(long_keys_and_values_are_bounded)
{
    static char longkey[SN_OTLP_KEY_MAX + 10];
    memset(longkey, 'k', sizeof(longkey) - 1);
    static char longmodel[3 * SN_OTLP_VALUE_MAX];
    /* "é" (2 bytes) repeated, so the cut at SN_OTLP_VALUE_MAX falls inside a character. */
    longmodel[0] = 'x'; /* then 2-byte sequences at odd offsets: one straddles the cut */
    for (size_t i = 1; i + 2 < sizeof(longmodel); i += 2)
        memcpy(longmodel + i, "\xc3\xa9", 2);
    KeyValue *a[] = {
        kv(longkey, v_str("ignored")),
        kv("gen_ai.operation.name", v_str("chat")),
        kv("gen_ai.request.model", v_str(longmodel)),
        kv("gen_ai.usage.input_tokens", v_int(5)),
    };
    Span *sp[] = {span(1, T0, T0 + 1, 0, 4, a)};
    ScopeSpans *sc[] = {scope(1, sp)};
    ResourceSpans *rs[] = {rspans(resource("svc", "r"), 1, sc)};
    size_t len;
    uint8_t *buf = pack(1, rs, &len);
    sink k;
    sn_otlp_trace_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode(buf, len, &k, &st, err), 0);
    ck_assert_uint_eq(k.n, 1);
    ck_assert_uint_eq(st.keys_skipped, 1);
    ck_assert_uint_eq(st.values_truncated, 1);
    ck_assert_int_eq(k.ev[0].input_tokens, 5);
    size_t n = strlen(k.ev[0].model);
    ck_assert_uint_gt(n, 100);
    ck_assert_uint_lt(n, SN_NAME_MAX);
    /* The model field ends on a whole character. */
    ck_assert_uint_ne((unsigned char)k.ev[0].model[n - 1], 0xc3);
}
END_TEST

START_TEST(nested_values_are_ignored)
{
    AnyValue *inner[] = {v_str("a"), v_str("b")};
    AnyValue *mixed[] = {v_str("tool_calls"), v_array(2, inner), v_kvlist("x", v_int(1))};
    KeyValue *a[] = {
        kv("gen_ai.operation.name", v_str("chat")),
        kv("gen_ai.request.model", v_str("gpt-4o")),
        kv("gen_ai.response.finish_reasons", v_array(3, mixed)),
        kv("gen_ai.usage.output_tokens", v_kvlist("deep", v_int(5))),
        kv("gen_ai.usage.input_tokens", v_int(9)),
    };
    Span *sp[] = {span(1, T0, T0 + 1, 0, 5, a)};
    ScopeSpans *sc[] = {scope(1, sp)};
    ResourceSpans *rs[] = {rspans(resource("svc", "r"), 1, sc)};
    size_t len;
    uint8_t *buf = pack(1, rs, &len);
    sink k;
    sn_otlp_trace_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode(buf, len, &k, &st, err), 0);
    ck_assert_uint_eq(k.n, 1);
    ck_assert_str_eq(k.ev[0].finish_reason, "tool_calls");
    ck_assert_int_eq(k.ev[0].output_tokens, SN_UNKNOWN_COUNT);
    ck_assert_int_eq(k.ev[0].input_tokens, 9);
    ck_assert_uint_eq(st.values_ignored, 3);
}
END_TEST

/* --- hand-encoded input --- */

typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
} wbuf;

static void put(wbuf *w, const void *data, size_t n)
{
    if (w->len + n > w->cap) {
        size_t cap = (w->len + n) * 2;
        w->p = realloc(w->p, cap);
        ck_assert_ptr_nonnull(w->p);
        w->cap = cap;
    }
    memcpy(w->p + w->len, data, n);
    w->len += n;
}

static void put_varint(wbuf *w, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;
    do {
        b[n] = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v)
            b[n] |= 0x80;
        n++;
    } while (v);
    put(w, b, n);
}

/* Field `num` of wire type 2 holding `data`. */
static void put_len(wbuf *w, unsigned num, const void *data, size_t n)
{
    put_varint(w, (uint64_t)num << 3 | 2);
    put_varint(w, n);
    put(w, data, n);
}

static void put_str(wbuf *w, unsigned num, const char *s)
{
    put_len(w, num, s, strlen(s));
}

/* KeyValue{key, string value} with the fields in the given order. */
static void put_kv(wbuf *w, unsigned num, const char *key, const char *val, bool value_first)
{
    wbuf any = {0}, pair = {0};
    put_str(&any, 1, val);
    if (value_first)
        put_len(&pair, 2, any.p, any.len);
    put_str(&pair, 1, key);
    if (!value_first)
        put_len(&pair, 2, any.p, any.len);
    put_len(w, num, pair.p, pair.len);
    free(any.p);
    free(pair.p);
}

/* A Span with ids, times and the given raw attribute bytes (already framed as field 9). */
static void put_span(wbuf *w, const wbuf *attrs)
{
    wbuf s = {0};
    uint8_t tid[16], sid[8];
    for (int i = 0; i < 16; i++)
        tid[i] = (uint8_t)(0xA0 + i);
    for (int i = 0; i < 8; i++)
        sid[i] = (uint8_t)(0xB0 + i);
    if (attrs)
        put(&s, attrs->p, attrs->len); /* attributes first: field order is free */
    put_len(&s, 1, tid, 16);
    put_len(&s, 2, sid, 8);
    uint64_t t0 = (uint64_t)T0, t1 = (uint64_t)T0 + 2000000;
    uint8_t tag7 = 7 << 3 | 1, tag8 = 8 << 3 | 1;
    put(&s, &tag7, 1);
    put(&s, &t0, 8); /* little-endian host */
    put(&s, &tag8, 1);
    put(&s, &t1, 8);
    put_len(w, 2, s.p, s.len);
    free(s.p);
}

START_TEST(fields_in_any_order)
{
    /* ResourceSpans{scope_spans, resource}; KeyValue{value, key}. */
    wbuf attrs = {0};
    put_kv(&attrs, 9, "gen_ai.request.model", "gpt-4o-mini", true);
    put_kv(&attrs, 9, "gen_ai.operation.name", "chat", false);
    wbuf scope_spans = {0};
    put_span(&scope_spans, &attrs);
    put_span(&scope_spans, &attrs);
    wbuf res = {0};
    put_kv(&res, 1, "cloud.region", "sa-east-1", true);
    put_kv(&res, 1, "service.name", "late-resource", false);
    wbuf rs = {0};
    put_len(&rs, 2, scope_spans.p, scope_spans.len);
    put_len(&rs, 1, res.p, res.len);
    put_len(&rs, 2, scope_spans.p, scope_spans.len);
    wbuf req = {0};
    put_len(&req, 1, rs.p, rs.len);

    sink k;
    sn_otlp_trace_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode(req.p, req.len, &k, &st, err), 0);
    ck_assert_uint_eq(k.n, 4);
    ck_assert_uint_eq(st.scope_spans, 2);
    for (size_t i = 0; i < k.n; i++) {
        ck_assert_str_eq(k.ev[i].service, "late-resource");
        ck_assert_str_eq(k.ev[i].region, "sa-east-1");
        ck_assert_str_eq(k.ev[i].model, "gpt-4o-mini");
        ck_assert_str_eq(k.ev[i].operation, "chat");
        ck_assert_uint_eq(k.ev[i].trace_id[15], 0xAF);
        ck_assert_double_eq_tol(k.ev[i].latency_ms, 2.0, 1e-9);
    }
    free(attrs.p);
    free(scope_spans.p);
    free(res.p);
    free(rs.p);
    free(req.p);
}
END_TEST

START_TEST(deeply_nested_value_is_skipped_not_descended)
{
    /* 100000 levels of AnyValue{array_value{values: AnyValue{...}}}: valid protobuf, and the
     * decoder must neither recurse into it nor refuse its sibling attributes. Sizes are worked
     * out from the leaf up, then the bytes are written from the top down. */
    enum { LEVELS = 100000 };
    static const uint8_t leaf[] = {0x0A, 0x04, 'l', 'e', 'a', 'f'};
    size_t *any_len = malloc((LEVELS + 1) * sizeof(*any_len));
    size_t *arr_len = malloc((LEVELS + 1) * sizeof(*arr_len));
    ck_assert_ptr_nonnull(any_len);
    ck_assert_ptr_nonnull(arr_len);
    any_len[0] = sizeof(leaf);
    for (int i = 1; i <= LEVELS; i++) {
        wbuf tmp = {0};
        put_varint(&tmp, any_len[i - 1]);
        arr_len[i] = 1 + tmp.len + any_len[i - 1];
        tmp.len = 0;
        put_varint(&tmp, arr_len[i]);
        any_len[i] = 1 + tmp.len + arr_len[i];
        free(tmp.p);
    }
    wbuf v = {0};
    for (int i = LEVELS; i >= 1; i--) {
        static const uint8_t any_tag = 5 << 3 | 2, arr_tag = 1 << 3 | 2;
        put(&v, &any_tag, 1);
        put_varint(&v, arr_len[i]);
        put(&v, &arr_tag, 1);
        put_varint(&v, any_len[i - 1]);
    }
    put(&v, leaf, sizeof(leaf));
    ck_assert_uint_eq(v.len, any_len[LEVELS]);
    free(any_len);
    free(arr_len);
    wbuf pair = {0};
    put_str(&pair, 1, "gen_ai.response.finish_reasons");
    put_len(&pair, 2, v.p, v.len);
    wbuf attrs = {0};
    put_len(&attrs, 9, pair.p, pair.len);
    put_kv(&attrs, 9, "gen_ai.request.model", "deep-model", false);
    wbuf scope_spans = {0};
    put_span(&scope_spans, &attrs);
    wbuf rs = {0};
    put_len(&rs, 2, scope_spans.p, scope_spans.len);
    wbuf req = {0};
    put_len(&req, 1, rs.p, rs.len);

    sink k;
    sn_otlp_trace_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode(req.p, req.len, &k, &st, err), 0);
    ck_assert_uint_eq(k.n, 1);
    ck_assert_str_eq(k.ev[0].model, "deep-model");
    ck_assert_str_eq(k.ev[0].finish_reason, "");
    ck_assert_uint_eq(st.values_ignored, 1);
    free(v.p);
    free(pair.p);
    free(attrs.p);
    free(scope_spans.p);
    free(rs.p);
    free(req.p);
}
END_TEST

/* --- malformed input --- */

/* Decodes a private heap copy of exactly len bytes, so ASan sees any read past the end. */
static int decode_exact(const uint8_t *data, size_t len, char *err)
{
    uint8_t *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    if (len)
        memcpy(copy, data, len);
    sn_otlp_trace_stats st;
    err[0] = '\0';
    int rc = sn_otlp_decode_traces(copy, len, NULL, NULL, NULL, &st, err, SN_OTLP_ERR_MAX);
    free(copy);
    return rc;
}

static void expect_malformed(const uint8_t *data, size_t len, const char *what)
{
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode_exact(data, len, err), -1);
    ck_assert_msg(strncmp(err, "malformed OTLP trace request: ", 30) == 0, "%s", err);
    if (what)
        ck_assert_msg(strstr(err, what) != NULL, "'%s' lacks '%s'", err, what);
}

START_TEST(truncated_at_every_byte)
{
    Span *sp[] = {genai_span(1, "gpt-4o", 12, 34, 2), http_span(2)};
    ScopeSpans *sc[] = {scope(2, sp)};
    ResourceSpans *rs[] = {rspans(resource("svc", "us-east-1"), 1, sc)};
    size_t len;
    uint8_t *buf = pack(1, rs, &len);
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode_exact(buf, len, err), 0);
    ck_assert_int_eq(decode_exact(buf, 0, err), 0); /* the empty request is valid */
    /* The request is one resource_spans field: every cut inside it is malformed. */
    for (size_t cut = 1; cut < len; cut++)
        expect_malformed(buf, cut, NULL);
}
END_TEST

START_TEST(every_single_byte_corruption_is_safe)
{
    Span *sp[] = {genai_span(1, "gpt-4o", 12, 34, 2)};
    ScopeSpans *sc[] = {scope(1, sp)};
    ResourceSpans *rs[] = {rspans(resource("svc", "us-east-1"), 1, sc)};
    size_t len;
    uint8_t *buf = pack(1, rs, &len);
    uint8_t *copy = malloc(len);
    ck_assert_ptr_nonnull(copy);
    static const uint8_t flips[] = {0x00, 0x01, 0x07, 0x80, 0xFF};
    for (size_t i = 0; i < len; i++) {
        for (size_t f = 0; f < sizeof(flips); f++) {
            memcpy(copy, buf, len);
            copy[i] = flips[f];
            char err[SN_OTLP_ERR_MAX];
            sink k;
            sn_otlp_trace_stats st;
            int rc = decode(copy, len, &k, &st, err);
            ck_assert(rc == 0 || rc == -1);
            ck_assert(rc == 0 || err[0] != '\0');
        }
    }
    free(copy);
}
END_TEST

START_TEST(wrong_wire_types)
{
    /* resource_spans as a varint */
    static const uint8_t rs_varint[] = {0x08, 0x01};
    expect_malformed(rs_varint, sizeof(rs_varint), "resource_spans: wrong wire type");
    /* resource_spans as fixed64 */
    static const uint8_t rs_fixed[] = {0x09, 1, 2, 3, 4, 5, 6, 7, 8};
    expect_malformed(rs_fixed, sizeof(rs_fixed), "wrong wire type");
    /* wire types 6 and 7 do not exist */
    static const uint8_t wt6[] = {0x0E, 0x00};
    expect_malformed(wt6, sizeof(wt6), "invalid wire type");
    static const uint8_t wt7[] = {0x0F};
    expect_malformed(wt7, sizeof(wt7), "invalid wire type");

    /* span start time (fixed64) sent as a varint */
    wbuf s = {0}, sc = {0}, rs = {0}, req = {0};
    uint8_t bad[] = {7 << 3 | 0, 0x05};
    put(&s, bad, 2);
    put_len(&sc, 2, s.p, s.len);
    put_len(&rs, 2, sc.p, sc.len);
    put_len(&req, 1, rs.p, rs.len);
    expect_malformed(req.p, req.len, "span: wrong wire type");
    free(s.p);
    free(sc.p);
    free(rs.p);
    free(req.p);

    /* attribute key as a varint, then int_value as length-delimited */
    wbuf pair = {0}, attrs = {0}, sc2 = {0}, rs2 = {0}, req2 = {0};
    uint8_t key_varint[] = {1 << 3 | 0, 0x07};
    put(&pair, key_varint, 2);
    put_len(&attrs, 9, pair.p, pair.len);
    put_span(&sc2, &attrs);
    put_len(&rs2, 2, sc2.p, sc2.len);
    put_len(&req2, 1, rs2.p, rs2.len);
    expect_malformed(req2.p, req2.len, "attribute key: wrong wire type");
    free(pair.p);
    free(attrs.p);
    free(sc2.p);
    free(rs2.p);
    free(req2.p);

    wbuf any = {0}, pair3 = {0}, attrs3 = {0}, sc3 = {0}, rs3 = {0}, req3 = {0};
    put_str(&any, 3, "12");
    put_str(&pair3, 1, "gen_ai.usage.input_tokens");
    put_len(&pair3, 2, any.p, any.len);
    put_len(&attrs3, 9, pair3.p, pair3.len);
    put_span(&sc3, &attrs3);
    put_len(&rs3, 2, sc3.p, sc3.len);
    put_len(&req3, 1, rs3.p, rs3.len);
    expect_malformed(req3.p, req3.len, "attribute value: wrong wire type");
    free(any.p);
    free(pair3.p);
    free(attrs3.p);
    free(sc3.p);
    free(rs3.p);
    free(req3.p);
}
END_TEST

START_TEST(bad_varints_and_lengths)
{
    /* a tag varint of 11 bytes */
    static const uint8_t long_tag[] = {0x8A, 0x80, 0x80, 0x80, 0x80, 0x80,
                                       0x80, 0x80, 0x80, 0x80, 0x01};
    expect_malformed(long_tag, sizeof(long_tag), NULL);
    /* a length varint that never ends */
    static const uint8_t open_len[] = {0x0A, 0xFF, 0xFF, 0xFF};
    expect_malformed(open_len, sizeof(open_len), "truncated");
    /* a length past the end of the buffer */
    static const uint8_t far_len[] = {0x0A, 0xFF, 0xFF, 0x03, 0x12, 0x00};
    expect_malformed(far_len, sizeof(far_len), "length runs past the end");
    /* a length of 2^32 + 1 (more than 32 bits) */
    static const uint8_t huge_len[] = {0x0A, 0x81, 0x80, 0x80, 0x80, 0x10, 0x00};
    expect_malformed(huge_len, sizeof(huge_len), NULL);
    /* an inner length longer than its parent message */
    static const uint8_t inner_len[] = {0x0A, 0x02, 0x12, 0x05, 0x00, 0x00, 0x00, 0x00};
    expect_malformed(inner_len, sizeof(inner_len), "length runs past the end");
    /* field number 0 inside a message, and at the top */
    static const uint8_t zero_inner[] = {0x0A, 0x02, 0x00, 0x00};
    expect_malformed(zero_inner, sizeof(zero_inner), "field number 0");
    static const uint8_t zero_top[] = {0x00};
    expect_malformed(zero_top, sizeof(zero_top), "field number 0");
    /* a bool varint overflowing inside an attribute value */
    wbuf any = {0}, pair = {0}, attrs = {0}, sc = {0}, rs = {0}, req = {0};
    uint8_t over[] = {2 << 3 | 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    put(&any, over, sizeof(over));
    put_str(&pair, 1, "flag");
    put_len(&pair, 2, any.p, any.len);
    put_len(&attrs, 9, pair.p, pair.len);
    put_span(&sc, &attrs);
    put_len(&rs, 2, sc.p, sc.len);
    put_len(&req, 1, rs.p, rs.len);
    expect_malformed(req.p, req.len, "attribute value: varint too long or out of range");
    free(any.p);
    free(pair.p);
    free(attrs.p);
    free(sc.p);
    free(rs.p);
    free(req.p);
}
END_TEST

START_TEST(validate_only_and_empty_input)
{
    Span *sp[] = {genai_span(1, "gpt-4o", 1, 2, 0), genai_span(2, "gpt-4o", 1, 2, 0)};
    ScopeSpans *sc[] = {scope(2, sp)};
    ResourceSpans *rs[] = {rspans(resource("svc", "r"), 1, sc)};
    size_t len;
    uint8_t *buf = pack(1, rs, &len);
    sn_otlp_trace_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(sn_otlp_decode_traces(buf, len, NULL, NULL, NULL, &st, err, sizeof(err)), 0);
    ck_assert_uint_eq(st.llm_events, 2);
    ck_assert_int_eq(sn_otlp_decode_traces(NULL, 0, NULL, NULL, NULL, &st, err, sizeof(err)), 0);
    ck_assert_uint_eq(st.spans, 0);
    /* err may be NULL; stats may be NULL */
    static const uint8_t bad[] = {0x0A, 0x05};
    ck_assert_int_eq(sn_otlp_decode_traces(bad, sizeof(bad), NULL, NULL, NULL, NULL, NULL, 0), -1);
}
END_TEST

static Suite *traces_suite(void)
{
    Suite *s = suite_create("otlp_traces");
    TCase *ok = tcase_create("well_formed");
    tcase_add_checked_fixture(ok, NULL, teardown);
    tcase_add_test(ok, one_genai_span_every_fact);
    tcase_add_test(ok, many_resources_scopes_spans_in_order);
    tcase_add_test(ok, non_llm_spans_are_skipped);
    tcase_add_test(ok, status_error_marks_the_event);
    tcase_add_test(ok, other_conventions_and_value_types);
    tcase_add_test(ok, price_table_is_passed_through);
    tcase_add_test(ok, request_memo_gives_each_span_its_own_facts);
    tcase_add_test(ok, key_memo_sees_a_difference_at_every_byte);
    tcase_add_test(ok, refused_spans_are_counted_by_reason);
    tcase_add_test(ok, long_keys_and_values_are_bounded);
    tcase_add_test(ok, nested_values_are_ignored);
    tcase_add_test(ok, fields_in_any_order);
    tcase_add_test(ok, deeply_nested_value_is_skipped_not_descended);
    tcase_add_test(ok, validate_only_and_empty_input);
    suite_add_tcase(s, ok);
    TCase *bad = tcase_create("malformed");
    tcase_add_checked_fixture(bad, NULL, teardown);
    tcase_set_timeout(bad, 120);
    tcase_add_test(bad, truncated_at_every_byte);
    tcase_add_test(bad, every_single_byte_corruption_is_safe);
    tcase_add_test(bad, wrong_wire_types);
    tcase_add_test(bad, bad_varints_and_lengths);
    suite_add_tcase(s, bad);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(traces_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
