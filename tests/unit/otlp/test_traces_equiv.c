/*
 * Equivalence tests for the hand-written trace decoder (shared/otlp/traces.c): varied requests
 * are decoded by it and by the two references of tests/tools/otlp_ref.h -- protobuf-c's full
 * unpack walked through the same genai mapping, and the nanopb decoder it replaced -- and every
 * event, every count and the outcome must be the same.
 *
 * The requests: a seeded random generator (all three attribute conventions with current and old
 * names, every AnyValue kind, arrays, mismatched value types, missing ids/times/status/resource,
 * unknown fields at every level, big and negative integers, long keys and values), then cases
 * built byte by byte (field order, repeated fields, non-canonical varints) that only the nanopb
 * reference reads the same way, and malformed inputs whose error texts must match.
 */
#include "otlp_ref.h"

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
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

/* --- every allocation of one request goes to a pool freed by the fixture --- */

#define POOL_MAX 65536
static void *pool[POOL_MAX];
static size_t pool_n;

static void *alloc(size_t n)
{
    ck_assert_uint_lt(pool_n, POOL_MAX);
    void *p = calloc(1, n ? n : 1);
    ck_assert_ptr_nonnull(p);
    pool[pool_n++] = p;
    return p;
}

static void pool_free(void)
{
    for (size_t i = 0; i < pool_n; i++)
        free(pool[i]);
    pool_n = 0;
}

/* --- a deterministic generator (xorshift64*) --- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static unsigned pick(unsigned n)
{
    return (unsigned)(rnd() % n);
}

static const char *const keys[] = {
    /* current GenAI names */
    "gen_ai.system", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
    "gen_ai.operation.name", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
    "gen_ai.usage.total_tokens", "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.response.finish_reasons", "gen_ai.server.time_to_first_token",
    "gen_ai.response.time_to_first_chunk", "gen_ai.usage.cost", "error.type", "enduser.id",
    "user.id",
    /* old GenAI / OpenLLMetry names */
    "gen_ai.usage.prompt_tokens", "gen_ai.usage.completion_tokens", "llm.usage.prompt_tokens",
    "llm.usage.completion_tokens", "llm.usage.total_tokens", "llm.request.type",
    "traceloop.span.kind", "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.cache_creation_input_tokens", "gen_ai.usage.reasoning_tokens", "llm.user",
    /* OpenInference */
    "openinference.span.kind", "llm.model_name", "llm.provider", "llm.system",
    "llm.token_count.prompt", "llm.token_count.completion", "llm.token_count.total",
    "llm.token_count.prompt_details.cache_read", "llm.token_count.prompt_details.cache_write",
    "llm.token_count.completion_details.reasoning", "llm.cost.total",
    /* content: never read */
    "gen_ai.prompt", "gen_ai.completion", "gen_ai.input.messages", "input.value", "output.value",
    "llm.input_messages",
    /* other */
    "http.method", "db.system", "service.name", "cloud.region", ""};
static const char *const res_keys[] = {"service.name", "service.version", "cloud.region",
                                       "k8s.pod.name", "host.name",       "telemetry.sdk.name"};
static const char *const strings[] = {"gpt-4o",
                                      "claude-3-5-sonnet",
                                      "openai",
                                      "az.ai.openai",
                                      "vertex_ai",
                                      "aws.bedrock",
                                      "chat",
                                      "embeddings",
                                      "stop",
                                      "length",
                                      "timeout",
                                      "LLM",
                                      "llm",
                                      "42",
                                      "-7",
                                      "1e3",
                                      "",
                                      "x",
                                      "caf\xc3\xa9",
                                      "user-1",
                                      "us-east-1",
                                      "pod-a",
                                      "1.2.3"};

static AnyValue *any_value(int depth);

static char *long_string(size_t n)
{
    char *s = alloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)(i % 3 == 2 ? 0xA9 : i % 3 == 1 ? 0xC3 : 'a'); /* UTF-8 cut points */
    s[n] = '\0';
    return s;
}

static AnyValue *any_value(int depth)
{
    AnyValue *a = alloc(sizeof(*a));
    opentelemetry__proto__common__v1__any_value__init(a);
    switch (pick(depth < 2 ? 10 : 8)) {
    case 0:
    case 1:
        a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
        a->string_value = pick(20) == 0 ? long_string(1000 + pick(60))
                                        : (char *)strings[pick(sizeof strings / sizeof *strings)];
        break;
    case 2: {
        static const int64_t ints[] = {0, 1, 12, 34, 1000, -1, INT64_MAX, INT64_MIN, 1LL << 40};
        a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
        a->int_value = ints[pick(sizeof ints / sizeof *ints)];
        break;
    }
    case 3:
        a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
        a->int_value = (int64_t)pick(5000);
        break;
    case 4: {
        static const double ds[] = {0.0, 0.25, 0.0123, 1e300, -2.5, 150.0};
        a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
        a->double_value = pick(8) == 0 ? NAN : ds[pick(sizeof ds / sizeof *ds)];
        break;
    }
    case 5:
        a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
        a->bool_value = pick(2);
        break;
    case 6: {
        a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE;
        size_t n = pick(4) == 0 ? 1030 : pick(16);
        uint8_t *b = alloc(n);
        for (size_t i = 0; i < n; i++)
            b[i] = (uint8_t)rnd();
        a->bytes_value.data = b;
        a->bytes_value.len = n;
        break;
    }
    case 7:
        break; /* no value at all */
    case 8: {
        ArrayValue *arr = alloc(sizeof(*arr));
        opentelemetry__proto__common__v1__array_value__init(arr);
        arr->n_values = pick(4);
        arr->values = alloc(arr->n_values * sizeof(AnyValue *));
        for (size_t i = 0; i < arr->n_values; i++)
            arr->values[i] = any_value(depth + 1);
        a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
        a->array_value = arr;
        break;
    }
    default: {
        KeyValueList *l = alloc(sizeof(*l));
        opentelemetry__proto__common__v1__key_value_list__init(l);
        l->n_values = 1;
        l->values = alloc(sizeof(KeyValue *));
        KeyValue *kv = alloc(sizeof(*kv));
        opentelemetry__proto__common__v1__key_value__init(kv);
        kv->key = "gen_ai.request.model";
        kv->value = any_value(depth + 1);
        l->values[0] = kv;
        a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE;
        a->kvlist_value = l;
        break;
    }
    }
    return a;
}

/* A value that suits the key most of the time, so that spans become LLM events. */
static AnyValue *value_for(const char *key)
{
    if (pick(3) == 0)
        return any_value(0);
    AnyValue *a = alloc(sizeof(*a));
    opentelemetry__proto__common__v1__any_value__init(a);
    if (strstr(key, "tokens") || strstr(key, "token_count")) {
        a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
        a->int_value = (int64_t)pick(4000);
    } else if (strstr(key, "cost") || strstr(key, "time_to_first")) {
        a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
        a->double_value = (double)pick(1000) / 997.0;
    } else {
        a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
        a->string_value = (char *)strings[pick(sizeof strings / sizeof *strings)];
    }
    return a;
}

/* An unknown field of a random wire type (field numbers 100..199), as protobuf-c packs them. */
static void add_unknown(ProtobufCMessage *m)
{
    if (pick(4) != 0)
        return;
    ProtobufCMessageUnknownField *u = alloc(sizeof(*u));
    u->tag = 100 + pick(100);
    static const uint8_t varint[] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    static const uint8_t len[] = {0x03, 'a', 'b', 'c'};
    static const uint8_t fixed[] = {1, 2, 3, 4, 5, 6, 7, 8};
    switch (pick(4)) {
    case 0:
        u->wire_type = PROTOBUF_C_WIRE_TYPE_VARINT;
        u->data = (uint8_t *)varint;
        u->len = sizeof varint;
        break;
    case 1:
        u->wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
        u->data = (uint8_t *)len;
        u->len = sizeof len;
        break;
    case 2:
        u->wire_type = PROTOBUF_C_WIRE_TYPE_64BIT;
        u->data = (uint8_t *)fixed;
        u->len = 8;
        break;
    default:
        u->wire_type = PROTOBUF_C_WIRE_TYPE_32BIT;
        u->data = (uint8_t *)fixed;
        u->len = 4;
        break;
    }
    m->n_unknown_fields = 1;
    m->unknown_fields = u;
}

static KeyValue **attributes(size_t n, bool resource)
{
    KeyValue **kvs = alloc(n * sizeof(KeyValue *));
    for (size_t i = 0; i < n; i++) {
        KeyValue *kv = alloc(sizeof(*kv));
        opentelemetry__proto__common__v1__key_value__init(kv);
        if (pick(40) == 0)
            kv->key = long_string(256 + pick(4) - 2);
        else if (resource)
            kv->key = (char *)res_keys[pick(sizeof res_keys / sizeof *res_keys)];
        else
            kv->key = (char *)keys[pick(sizeof keys / sizeof *keys)];
        kv->value = pick(30) == 0 ? NULL : value_for(kv->key);
        add_unknown(&kv->base);
        if (kv->value)
            add_unknown(&kv->value->base);
        kvs[i] = kv;
    }
    return kvs;
}

static Span *random_span(void)
{
    Span *sp = alloc(sizeof(*sp));
    opentelemetry__proto__trace__v1__span__init(sp);
    size_t tl = pick(12) == 0 ? pick(17) : 16, sl = pick(12) == 0 ? pick(9) : 8;
    uint8_t *tid = alloc(16), *sid = alloc(8);
    for (size_t i = 0; i < tl; i++)
        tid[i] = pick(30) == 0 ? 0 : (uint8_t)rnd();
    for (size_t i = 0; i < sl; i++)
        sid[i] = (uint8_t)rnd();
    sp->trace_id.data = tid;
    sp->trace_id.len = tl;
    sp->span_id.data = sid;
    sp->span_id.len = sl;
    sp->name = "chat gpt-4o";
    sp->kind = pick(6);
    uint64_t start = 1700000000000000000ULL + pick(1000000) * 1000ULL;
    sp->start_time_unix_nano = pick(20) == 0 ? 0 : start;
    sp->end_time_unix_nano = pick(20) == 0   ? start - 5
                             : pick(30) == 0 ? UINT64_MAX
                                             : start + pick(2000000000U);
    sp->dropped_attributes_count = pick(10) == 0 ? UINT32_MAX : pick(3);
    sp->flags = (uint32_t)rnd();
    sp->n_attributes = pick(24);
    sp->attributes = attributes(sp->n_attributes, false);
    if (pick(3) == 0) {
        Status *st = alloc(sizeof(*st));
        opentelemetry__proto__trace__v1__status__init(st);
        st->code = pick(3);
        st->message = pick(2) ? "boom" : "";
        add_unknown(&st->base);
        sp->status = st;
    }
    if (pick(5) == 0) { /* an event with attributes: skipped unread */
        sp->n_events = 1;
        sp->events = alloc(sizeof(void *));
        Opentelemetry__Proto__Trace__V1__Span__Event *e = alloc(sizeof(*e));
        opentelemetry__proto__trace__v1__span__event__init(e);
        e->name = "gen_ai.content.prompt";
        e->n_attributes = 2;
        e->attributes = attributes(2, false);
        sp->events[0] = e;
    }
    add_unknown(&sp->base);
    return sp;
}

/* A random request, packed into a buffer from the pool. */
static uint8_t *random_request(size_t *len)
{
    Request *req = alloc(sizeof(*req));
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(req);
    req->n_resource_spans = pick(4);
    req->resource_spans = alloc(req->n_resource_spans * sizeof(void *));
    for (size_t r = 0; r < req->n_resource_spans; r++) {
        ResourceSpans *rs = alloc(sizeof(*rs));
        opentelemetry__proto__trace__v1__resource_spans__init(rs);
        if (pick(6) != 0) {
            Resource *res = alloc(sizeof(*res));
            opentelemetry__proto__resource__v1__resource__init(res);
            res->n_attributes = pick(6);
            res->attributes = attributes(res->n_attributes, true);
            res->dropped_attributes_count = pick(2);
            add_unknown(&res->base);
            rs->resource = res;
        }
        rs->schema_url = "https://opentelemetry.io/schemas/1.26.0";
        rs->n_scope_spans = pick(3);
        rs->scope_spans = alloc(rs->n_scope_spans * sizeof(void *));
        for (size_t s = 0; s < rs->n_scope_spans; s++) {
            ScopeSpans *sc = alloc(sizeof(*sc));
            opentelemetry__proto__trace__v1__scope_spans__init(sc);
            sc->n_spans = pick(6);
            sc->spans = alloc(sc->n_spans * sizeof(void *));
            for (size_t i = 0; i < sc->n_spans; i++)
                sc->spans[i] = random_span();
            add_unknown(&sc->base);
            rs->scope_spans[s] = sc;
        }
        add_unknown(&rs->base);
        req->resource_spans[r] = rs;
    }
    add_unknown(&req->base);
    *len =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
            req);
    uint8_t *buf = alloc(*len);
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(req, buf);
    return buf;
}

/* --- decoding with one decoder into a record of what it said --- */

#define EV_MAX 256
typedef struct outcome {
    int rc;
    sn_otlp_trace_stats st;
    size_t n;
    sn_event ev[EV_MAX];
    char err[SN_OTLP_ERR_MAX];
} outcome;

typedef int (*decode_fn)(const uint8_t *, size_t, const sn_price_table *, sn_otlp_event_fn, void *,
                         sn_otlp_trace_stats *, char *, size_t);

static void collect(const sn_event *ev, void *ud)
{
    outcome *o = ud;
    ck_assert_uint_lt(o->n, EV_MAX);
    o->ev[o->n++] = *ev;
}

static outcome *run(decode_fn fn, const uint8_t *buf, size_t len)
{
    outcome *o = alloc(sizeof(*o));
    /* a private heap copy of exactly len bytes, so that ASan sees any read past the end */
    uint8_t *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    if (len)
        memcpy(copy, buf, len);
    o->rc = fn(copy, len, NULL, collect, o, &o->st, o->err, sizeof(o->err));
    free(copy);
    return o;
}

/* Asserts that two outcomes agree: result, counts, events; error texts when both failed. */
static void expect_same(const outcome *a, const outcome *b, const char *what, int n)
{
    const char *field = "";
    ck_assert_msg(a->rc == b->rc, "%s #%d: rc %d vs %d (%s | %s)", what, n, a->rc, b->rc, a->err,
                  b->err);
    ck_assert_msg(sn_ref_stats_equal(&a->st, &b->st, &field), "%s #%d: stats.%s differ", what, n,
                  field);
    ck_assert_msg(a->n == b->n, "%s #%d: %zu vs %zu events", what, n, a->n, b->n);
    for (size_t i = 0; i < a->n; i++)
        ck_assert_msg(sn_ref_event_equal(&a->ev[i], &b->ev[i], &field),
                      "%s #%d: event %zu differs in %s", what, n, i, field);
}

static void teardown(void)
{
    pool_free();
}

START_TEST(random_requests_match_protobuf_c_and_nanopb)
{
    rng_state = 0x9E3779B97F4A7C15ULL;
    uint64_t events = 0, spans = 0;
    for (int i = 0; i < 400; i++) {
        size_t len;
        const uint8_t *buf = random_request(&len);
        outcome *hand = run(sn_otlp_decode_traces, buf, len);
        outcome *pbc = run(sn_ref_decode_traces_pbc, buf, len);
        outcome *nano = run(sn_ref_decode_traces_nanopb, buf, len);
        ck_assert_msg(hand->rc == 0, "#%d: %s", i, hand->err);
        expect_same(hand, pbc, "protobuf-c", i);
        expect_same(hand, nano, "nanopb", i);
        events += hand->st.llm_events;
        spans += hand->st.spans;
        pool_free();
    }
    /* the generator must exercise the interesting paths, not only non-LLM spans */
    ck_assert_uint_gt(events, 300);
    ck_assert_uint_gt(spans, events);
}
END_TEST

/* --- byte-level cases --- */

typedef struct wbuf {
    uint8_t p[4096];
    size_t len;
} wbuf;

static void put(wbuf *b, const void *p, size_t n)
{
    ck_assert_uint_le(b->len + n, sizeof(b->p));
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void put_varint(wbuf *b, uint64_t v)
{
    do {
        uint8_t c = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v)
            c |= 0x80;
        put(b, &c, 1);
    } while (v);
}

static void put_tag(wbuf *b, uint32_t field, uint32_t wt)
{
    put_varint(b, (uint64_t)field << 3 | wt);
}

static void put_len(wbuf *b, uint32_t field, const wbuf *sub)
{
    put_tag(b, field, 2);
    put_varint(b, sub->len);
    put(b, sub->p, sub->len);
}

static void put_str(wbuf *b, uint32_t field, const char *s)
{
    put_tag(b, field, 2);
    put_varint(b, strlen(s));
    put(b, s, strlen(s));
}

static void put_fixed64(wbuf *b, uint32_t field, uint64_t v)
{
    put_tag(b, field, 1);
    for (int i = 0; i < 8; i++) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        put(b, &c, 1);
    }
}

static void kv_str(wbuf *attrs, uint32_t field, const char *k, const char *v, bool value_first)
{
    wbuf any = {0}, kv = {0};
    put_str(&any, 1, v);
    if (!value_first)
        put_str(&kv, 1, k);
    put_len(&kv, 2, &any);
    if (value_first)
        put_str(&kv, 1, k);
    put_len(attrs, field, &kv);
}

static void kv_int(wbuf *attrs, uint32_t field, const char *k, uint64_t v)
{
    wbuf any = {0}, kv = {0};
    put_tag(&any, 3, 0);
    put_varint(&any, v);
    put_str(&kv, 1, k);
    put_len(&kv, 2, &any);
    put_len(attrs, field, &kv);
}

/* A GenAI span with ids and times, plus extra raw bytes. */
static void genai_span(wbuf *span, uint8_t id, const void *extra, size_t extra_len)
{
    uint8_t tid[16], sid[8];
    memset(tid, id, sizeof tid);
    memset(sid, id, sizeof sid);
    put_tag(span, 1, 2);
    put_varint(span, 16);
    put(span, tid, 16);
    put_tag(span, 2, 2);
    put_varint(span, 8);
    put(span, sid, 8);
    put_fixed64(span, 7, 1700000000000000000ULL);
    put_fixed64(span, 8, 1700000000500000000ULL);
    kv_str(span, 9, "gen_ai.system", "openai", false);
    kv_str(span, 9, "gen_ai.request.model", "gpt-4o", id % 2 == 0);
    kv_int(span, 9, "gen_ai.usage.input_tokens", 12);
    if (extra_len)
        put(span, extra, extra_len);
}

/* A request of one resource (service "svc", before or after its scope) and the given spans. */
static void request(wbuf *req, const wbuf *spans, size_t n, bool resource_last)
{
    wbuf res = {0}, scope = {0}, rs = {0};
    kv_str(&res, 1, "service.name", "svc", false);
    kv_str(&res, 1, "cloud.region", "eu-west-1", true);
    for (size_t i = 0; i < n; i++)
        put_len(&scope, 2, &spans[i]);
    if (!resource_last)
        put_len(&rs, 1, &res);
    put_len(&rs, 2, &scope);
    if (resource_last)
        put_len(&rs, 1, &res);
    put_len(req, 1, &rs);
}

START_TEST(byte_level_cases_match_nanopb)
{
    /* extras appended to a span: each must decode as the nanopb decoder decodes it */
    static const struct {
        const char *name;
        uint8_t bytes[24];
        size_t len;
    } extras[] = {
        {"nothing", {0}, 0},
        {"status error", {0x7A, 0x02, 0x18, 0x02}, 4},
        {"status twice, second without code", {0x7A, 0x02, 0x18, 0x02, 0x7A, 0x00}, 6},
        {"status with unknown field", {0x7A, 0x04, 0x12, 0x01, 'x', 0x18}, 6},
        {"status code over 32 bits", {0x7A, 0x06, 0x18, 0x80, 0x80, 0x80, 0x80, 0x10}, 8},
        {"kind as fixed64", {0x31, 1, 2, 3, 4, 5, 6, 7, 8}, 9},
        {"dropped count 2^32", {0x50, 0x80, 0x80, 0x80, 0x80, 0x10}, 6},
        {"dropped count max", {0x50, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F}, 6},
        /* found by the differential fuzzer: a 10th varint byte over 1 is an overflow, not a
         * value too large for uint32 */
        {"dropped count, 10th byte 5",
         {0x70, 0xCA, 0xCA, 0xCA, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x05},
         11},
        {"int value, 10th byte 1",
         {0x50, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01},
         11},
        {"flags as varint", {0x80, 0x01, 0x05}, 3},
        {"flags", {0x85, 0x01, 1, 0, 0, 0}, 6},
        {"start time again, over int64", {0x39, 0, 0, 0, 0, 0, 0, 0, 0x80}, 9},
        {"unknown group", {0xA3, 0x06}, 2},
        {"unknown varint of 12 bytes",
         {0xA0, 0x06, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00},
         14},
        {"trace_id as varint", {0x08, 0x01}, 2},
        {"trace_id of 17 bytes",
         {0x0A, 0x11, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
         19},
        {"span_id all zero", {0x12, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}, 10},
        {"attribute as fixed32", {0x4D, 1, 2, 3, 4}, 5},
        {"tag with padded varint", {0xBA, 0x80, 0x80, 0x80, 0x00, 0x00}, 6},
        {"length with padded varint", {0x2A, 0x81, 0x80, 0x00, 'n'}, 5},
        {"field 0", {0x00}, 1},
        {"truncated fixed64", {0x39, 1, 2}, 3},
        {"wire type 7", {0x0F}, 1},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof extras / sizeof *extras; i++) {
        for (int order = 0; order < 2; order++) {
            wbuf spans[2] = {{{0}, 0}, {{0}, 0}};
            genai_span(&spans[0], 1, extras[i].bytes, extras[i].len);
            genai_span(&spans[1], 2, NULL, 0);
            wbuf *req = alloc(sizeof(*req));
            request(req, spans, 2, order == 1);
            outcome *hand = run(sn_otlp_decode_traces, req->p, req->len);
            outcome *nano = run(sn_ref_decode_traces_nanopb, req->p, req->len);
            expect_same(hand, nano, extras[i].name, n++);
            ck_assert_msg(strcmp(hand->err, nano->err) == 0, "%s: '%s' vs '%s'", extras[i].name,
                          hand->err, nano->err);
            pool_free();
        }
    }
}
END_TEST

START_TEST(every_cut_and_byte_flip_matches_nanopb)
{
    wbuf spans[2] = {{{0}, 0}, {{0}, 0}};
    static const uint8_t status[] = {0x7A, 0x02, 0x18, 0x02};
    genai_span(&spans[0], 1, status, sizeof status);
    genai_span(&spans[1], 2, NULL, 0);
    wbuf req = {0};
    request(&req, spans, 2, true);
    static const uint8_t flips[] = {0x00, 0x01, 0x02, 0x07, 0x08, 0x7F, 0x80, 0xFF};
    int n = 0, failed = 0;
    for (size_t cut = 0; cut <= req.len; cut++) {
        outcome *hand = run(sn_otlp_decode_traces, req.p, cut);
        outcome *nano = run(sn_ref_decode_traces_nanopb, req.p, cut);
        expect_same(hand, nano, "cut", n++);
        ck_assert_str_eq(hand->err, nano->err);
        failed += hand->rc != 0;
        pool_free();
    }
    for (size_t i = 0; i < req.len; i++) {
        for (size_t f = 0; f < sizeof flips; f++) {
            wbuf copy = req;
            copy.p[i] = flips[f];
            outcome *hand = run(sn_otlp_decode_traces, copy.p, copy.len);
            outcome *nano = run(sn_ref_decode_traces_nanopb, copy.p, copy.len);
            expect_same(hand, nano, "flip", n++);
            ck_assert_msg(strcmp(hand->err, nano->err) == 0, "flip %zu=%02x: '%s' vs '%s'", i,
                          flips[f], hand->err, nano->err);
            pool_free();
        }
    }
    ck_assert_int_eq(failed, (int)req.len - 1); /* every proper cut but the empty one fails */
}
END_TEST

static Suite *equiv_suite(void)
{
    Suite *s = suite_create("otlp_traces_equiv");
    TCase *tc = tcase_create("equivalence");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, random_requests_match_protobuf_c_and_nanopb);
    tcase_add_test(tc, byte_level_cases_match_nanopb);
    tcase_add_test(tc, every_cut_and_byte_flip_matches_nanopb);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(equiv_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
