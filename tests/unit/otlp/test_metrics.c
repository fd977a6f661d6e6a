/*
 * Unit tests for shared/otlp/metrics.c, metrics_json.c and metrics_delta.c. Protobuf requests
 * are built with the protoc-c generated code (an encoder independent of the nanopb decoder under
 * test) or, for unusual field orders and malformed input, by hand; every fact field is checked.
 */
#include "otlp/metrics.h"
#include "otlp/metrics_delta.h"
#include "otlp/metrics_json.h"

#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Resource__V1__Resource Resource;
typedef Opentelemetry__Proto__Metrics__V1__ResourceMetrics ResourceMetrics;
typedef Opentelemetry__Proto__Metrics__V1__ScopeMetrics ScopeMetrics;
typedef Opentelemetry__Proto__Metrics__V1__Metric Metric;
typedef Opentelemetry__Proto__Metrics__V1__Histogram Histogram;
typedef Opentelemetry__Proto__Metrics__V1__HistogramDataPoint HPoint;
typedef Opentelemetry__Proto__Metrics__V1__ExponentialHistogram ExpHistogram;
typedef Opentelemetry__Proto__Metrics__V1__ExponentialHistogramDataPoint EPoint;
typedef Opentelemetry__Proto__Metrics__V1__Sum Sum;
typedef Opentelemetry__Proto__Metrics__V1__NumberDataPoint NPoint;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest Request;

#define T0 1700000000000000000LL
#define DELTA                                                                                      \
    OPENTELEMETRY__PROTO__METRICS__V1__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_DELTA
#define CUMUL                                                                                      \
    OPENTELEMETRY__PROTO__METRICS__V1__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_CUMULATIVE

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

static void teardown(void)
{
    for (size_t i = 0; i < P.n; i++)
        free(P.ptr[i]);
    P.n = 0;
}

static void *pdup(const void *src, size_t n)
{
    void *p = palloc(n + 1);
    if (n > 0)
        memcpy(p, src, n);
    return p;
}

static KeyValue *kv_str(const char *key, const char *s)
{
    AnyValue *v = palloc(sizeof(*v));
    opentelemetry__proto__common__v1__any_value__init(v);
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    v->string_value = (char *)s;
    KeyValue *p = palloc(sizeof(*p));
    opentelemetry__proto__common__v1__key_value__init(p);
    p->key = (char *)key;
    p->value = v;
    return p;
}

static KeyValue *kv_int(const char *key, int64_t i)
{
    KeyValue *p = kv_str(key, "");
    p->value->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    p->value->int_value = i;
    return p;
}

static Resource *resource(const char *service, const char *region)
{
    Resource *r = palloc(sizeof(*r));
    opentelemetry__proto__resource__v1__resource__init(r);
    KeyValue *a[] = {kv_str("service.name", service), kv_str("cloud.region", region),
                     kv_str("service.version", "1.4.2"), kv_int("process.pid", 4242)};
    r->n_attributes = 4;
    r->attributes = pdup(a, sizeof a);
    return r;
}

/* A histogram point; sum/min/max < 0 leave the field absent. */
static HPoint *hpoint(size_t nattr, KeyValue **attrs, uint64_t count, double sum, double min,
                      double max)
{
    HPoint *p = palloc(sizeof(*p));
    opentelemetry__proto__metrics__v1__histogram_data_point__init(p);
    p->n_attributes = nattr;
    p->attributes = pdup(attrs, nattr * sizeof(*attrs));
    p->start_time_unix_nano = (uint64_t)T0;
    p->time_unix_nano = (uint64_t)(T0 + 60000000000LL);
    p->count = count;
    if (sum >= 0) {
        p->_sum_case = OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT___SUM_SUM;
        p->sum = sum;
    }
    if (min >= 0) {
        p->_min_case = OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT___MIN_MIN;
        p->min = min;
    }
    if (max >= 0) {
        p->_max_case = OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT___MAX_MAX;
        p->max = max;
    }
    static uint64_t buckets[3] = {1, 1, 1};
    static double bounds[2] = {16, 256};
    p->n_bucket_counts = 3;
    p->bucket_counts = buckets;
    p->n_explicit_bounds = 2;
    p->explicit_bounds = bounds;
    return p;
}

static Metric *histogram(const char *name, const char *unit, int temporality, size_t n,
                         HPoint **points)
{
    Histogram *h = palloc(sizeof(*h));
    opentelemetry__proto__metrics__v1__histogram__init(h);
    h->n_data_points = n;
    h->data_points = pdup(points, n * sizeof(*points));
    h->aggregation_temporality =
        (Opentelemetry__Proto__Metrics__V1__AggregationTemporality)temporality;
    Metric *m = palloc(sizeof(*m));
    opentelemetry__proto__metrics__v1__metric__init(m);
    m->name = (char *)name;
    m->unit = (char *)unit;
    m->description = "a histogram";
    m->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM;
    m->histogram = h;
    return m;
}

static Metric *exp_histogram(const char *name, const char *unit, size_t nattr, KeyValue **attrs,
                             uint64_t count, double sum)
{
    EPoint *p = palloc(sizeof(*p));
    opentelemetry__proto__metrics__v1__exponential_histogram_data_point__init(p);
    p->n_attributes = nattr;
    p->attributes = pdup(attrs, nattr * sizeof(*attrs));
    p->start_time_unix_nano = (uint64_t)T0;
    p->time_unix_nano = (uint64_t)(T0 + 10000000000LL);
    p->count = count;
    p->_sum_case = OPENTELEMETRY__PROTO__METRICS__V1__EXPONENTIAL_HISTOGRAM_DATA_POINT___SUM_SUM;
    p->sum = sum;
    p->_min_case = OPENTELEMETRY__PROTO__METRICS__V1__EXPONENTIAL_HISTOGRAM_DATA_POINT___MIN_MIN;
    p->min = 0.1;
    p->scale = 3;
    p->zero_count = 1;
    Opentelemetry__Proto__Metrics__V1__ExponentialHistogramDataPoint__Buckets *b =
        palloc(sizeof(*b));
    opentelemetry__proto__metrics__v1__exponential_histogram_data_point__buckets__init(b);
    static uint64_t counts[2] = {2, 1};
    b->offset = -4;
    b->n_bucket_counts = 2;
    b->bucket_counts = counts;
    p->positive = b;
    ExpHistogram *h = palloc(sizeof(*h));
    opentelemetry__proto__metrics__v1__exponential_histogram__init(h);
    h->n_data_points = 1;
    h->data_points = pdup(&p, sizeof p);
    h->aggregation_temporality = DELTA;
    Metric *m = palloc(sizeof(*m));
    opentelemetry__proto__metrics__v1__metric__init(m);
    m->name = (char *)name;
    m->unit = (char *)unit;
    m->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_EXPONENTIAL_HISTOGRAM;
    m->exponential_histogram = h;
    return m;
}

/* A monotonic sum (a counter): not a histogram, so skipped even under a GenAI name. */
static Metric *counter(const char *name)
{
    NPoint *p = palloc(sizeof(*p));
    opentelemetry__proto__metrics__v1__number_data_point__init(p);
    p->value_case = OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT;
    p->as_int = 7;
    p->time_unix_nano = (uint64_t)T0;
    Sum *s = palloc(sizeof(*s));
    opentelemetry__proto__metrics__v1__sum__init(s);
    s->n_data_points = 1;
    s->data_points = pdup(&p, sizeof p);
    s->aggregation_temporality = CUMUL;
    s->is_monotonic = 1;
    Metric *m = palloc(sizeof(*m));
    opentelemetry__proto__metrics__v1__metric__init(m);
    m->name = (char *)name;
    m->unit = "{token}";
    m->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM;
    m->sum = s;
    return m;
}

static ScopeMetrics *scope(size_t n, Metric **metrics)
{
    ScopeMetrics *sm = palloc(sizeof(*sm));
    opentelemetry__proto__metrics__v1__scope_metrics__init(sm);
    Opentelemetry__Proto__Common__V1__InstrumentationScope *sc = palloc(sizeof(*sc));
    opentelemetry__proto__common__v1__instrumentation_scope__init(sc);
    sc->name = "openai-instrumentation";
    sc->version = "0.5.0";
    sm->scope = sc;
    sm->n_metrics = n;
    sm->metrics = pdup(metrics, n * sizeof(*metrics));
    sm->schema_url = "https://opentelemetry.io/schemas/1.37.0";
    return sm;
}

static ResourceMetrics *rmetrics(Resource *r, size_t n, ScopeMetrics **scopes)
{
    ResourceMetrics *rm = palloc(sizeof(*rm));
    opentelemetry__proto__metrics__v1__resource_metrics__init(rm);
    rm->resource = r;
    rm->n_scope_metrics = n;
    rm->scope_metrics = pdup(scopes, n * sizeof(*scopes));
    return rm;
}

/* Packs a request; the buffer is pool-owned. */
static uint8_t *pack(size_t n, ResourceMetrics **rms, size_t *len)
{
    Request req;
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__init(&req);
    req.n_resource_metrics = n;
    req.resource_metrics = rms;
    *len =
        opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__get_packed_size(
            &req);
    uint8_t *buf = palloc(*len + 1);
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__pack(&req, buf);
    return buf;
}

/* --- collecting facts --- */

#define MAX_FACTS 64

typedef struct sink {
    sn_metric_fact f[MAX_FACTS];
    int n;
} sink;

static void collect(const sn_metric_fact *f, void *ud)
{
    sink *s = ud;
    ck_assert_int_lt(s->n, MAX_FACTS);
    s->f[s->n++] = *f;
}

static int decode(const uint8_t *buf, size_t len, sink *k, sn_otlp_metric_stats *st, char *err)
{
    memset(k, 0, sizeof(*k));
    err[0] = '\0';
    return sn_otlp_decode_metrics(buf, len, collect, k, st, err, SN_OTLP_ERR_MAX);
}

static int decode_json(const char *json, sink *k, sn_otlp_metric_stats *st, char *err)
{
    memset(k, 0, sizeof(*k));
    err[0] = '\0';
    return sn_otlp_decode_metrics_json((const uint8_t *)json, strlen(json), collect, k, st, err,
                                       SN_OTLP_ERR_MAX);
}

/* The request most tests use: one resource, every GenAI metric kind, and metrics to skip. */
static uint8_t *full_request(size_t *len)
{
    KeyValue *in_attrs[] = {
        kv_str("gen_ai.token.type", "input"),
        kv_str("gen_ai.provider.name", "az.ai.openai"),
        kv_str("gen_ai.request.model", "gpt-4o"),
        kv_str("gen_ai.response.model", "gpt-4o-2024-08-06"),
        kv_str("gen_ai.operation.name", "chat"),
        kv_str("server.address", "example.openai.azure.com"),
    };
    KeyValue *out_attrs[] = {
        kv_str("gen_ai.system", "openai"), /* the old provider name */
        kv_str("gen_ai.request.model", "gpt-4o-mini"),
        kv_str("gen_ai.operation.name", "chat"),
        kv_str("gen_ai.token.type", "output"),
    };
    HPoint *tok[] = {hpoint(6, in_attrs, 3, 1200, 100, 700), hpoint(4, out_attrs, 3, 300, -1, -1)};
    KeyValue *dur_attrs[] = {kv_str("gen_ai.request.model", "gpt-4o"),
                             kv_str("error.type", "timeout"),
                             kv_str("gen_ai.provider.name", "openai")};
    HPoint *dur[] = {hpoint(3, dur_attrs, 2, 1.5, 0.5, 1.0)};
    KeyValue *ttfc_attrs[] = {kv_str("gen_ai.request.model", "gpt-4o")};
    HPoint *ttfc[] = {hpoint(1, ttfc_attrs, 5, 250, -1, -1)};
    KeyValue *srv_attrs[] = {kv_str("gen_ai.response.model", "llama-3-70b")};
    Metric *m[] = {
        histogram("gen_ai.client.token.usage", "{token}", CUMUL, 2, tok),
        histogram("http.client.request.duration", "s", DELTA, 1, dur),
        histogram("gen_ai.client.operation.duration", "s", DELTA, 1, dur),
        exp_histogram("gen_ai.server.time_to_first_token", "s", 1, srv_attrs, 4, 0.8),
        histogram("gen_ai.client.operation.time_to_first_chunk", "ms", DELTA, 1, ttfc),
        counter("gen_ai.client.token.usage"),
    };
    ScopeMetrics *sc[] = {scope(6, m)};
    ResourceMetrics *rm[] = {rmetrics(resource("chatbot-api", "us-east-1"), 1, sc)};
    return pack(1, rm, len);
}

static void expect_full_request_facts(const sink *k, const sn_otlp_metric_stats *st)
{
    ck_assert_int_eq(k->n, 5);
    const sn_metric_fact *f = &k->f[0];
    ck_assert_str_eq(f->service, "chatbot-api");
    ck_assert_str_eq(f->region, "us-east-1");
    ck_assert_str_eq(f->model, "gpt-4o-2024-08-06");  /* the response model wins */
    ck_assert_str_eq(f->provider, "azure.ai.openai"); /* normalised */
    ck_assert_str_eq(f->operation, "chat");
    ck_assert_str_eq(f->error_type, "");
    ck_assert_str_eq(f->server_address, "example.openai.azure.com");
    ck_assert_int_eq(f->metric, SN_METRIC_INPUT_TOKENS);
    ck_assert_int_eq(f->temporality, SN_METRIC_TEMPORALITY_CUMULATIVE);
    ck_assert_uint_eq(f->count, 3);
    ck_assert_double_eq(f->sum, 1200);
    ck_assert_double_eq(f->min, 100);
    ck_assert_double_eq(f->max, 700);
    ck_assert_int_eq(f->start_unix_nano, T0);
    ck_assert_int_eq(f->end_unix_nano, T0 + 60000000000LL);

    f = &k->f[1];
    ck_assert_str_eq(f->service, "chatbot-api");
    ck_assert_str_eq(f->model, "gpt-4o-mini");
    ck_assert_str_eq(f->provider, "openai");
    ck_assert_str_eq(f->server_address, "");
    ck_assert_int_eq(f->metric, SN_METRIC_OUTPUT_TOKENS);
    ck_assert_uint_eq(f->count, 3);
    ck_assert_double_eq(f->sum, 300);
    ck_assert(isnan(f->min) && isnan(f->max));
    ck_assert_uint_ne(f->series_id, k->f[0].series_id);

    f = &k->f[2];
    ck_assert_int_eq(f->metric, SN_METRIC_LATENCY_MS);
    ck_assert_int_eq(f->temporality, SN_METRIC_TEMPORALITY_DELTA);
    ck_assert_str_eq(f->model, "gpt-4o");
    ck_assert_str_eq(f->provider, "openai");
    ck_assert_str_eq(f->operation, "");
    ck_assert_str_eq(f->error_type, "timeout");
    ck_assert_uint_eq(f->count, 2);
    ck_assert_double_eq_tol(f->sum, 1500, 1e-9);
    ck_assert_double_eq_tol(f->min, 500, 1e-9);
    ck_assert_double_eq_tol(f->max, 1000, 1e-9);

    f = &k->f[3]; /* exponential histogram, server side */
    ck_assert_int_eq(f->metric, SN_METRIC_TTFT_MS);
    ck_assert_str_eq(f->model, "llama-3-70b");
    ck_assert_uint_eq(f->count, 4);
    ck_assert_double_eq_tol(f->sum, 800, 1e-9);
    ck_assert_double_eq_tol(f->min, 100, 1e-9);
    ck_assert(isnan(f->max));
    ck_assert_int_eq(f->end_unix_nano, T0 + 10000000000LL);

    f = &k->f[4]; /* unit ms: no conversion */
    ck_assert_int_eq(f->metric, SN_METRIC_TTFT_MS);
    ck_assert_uint_eq(f->count, 5);
    ck_assert_double_eq(f->sum, 250);

    ck_assert_uint_eq(st->resource_metrics, 1);
    ck_assert_uint_eq(st->scope_metrics, 1);
    ck_assert_uint_eq(st->metrics, 6);
    ck_assert_uint_eq(st->metrics_skipped, 2); /* http.client..., the counter */
    ck_assert_uint_eq(st->data_points, 5);
    ck_assert_uint_eq(st->facts, 5);
    ck_assert_uint_eq(st->rejected, 0);
    ck_assert_uint_eq(st->stale_points, 0);
}

START_TEST(every_genai_metric_every_field)
{
    size_t len;
    uint8_t *buf = full_request(&len);
    sink k;
    sn_otlp_metric_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode(buf, len, &k, &st, err), 0);
    expect_full_request_facts(&k, &st);
}
END_TEST

/* The same request as OTLP/JSON: the same facts, the same series ids. */
static const char *const full_json =
    "{\"resourceMetrics\":[{\"resource\":{\"attributes\":["
    " {\"key\":\"service.name\",\"value\":{\"stringValue\":\"chatbot-api\"}},"
    " {\"key\":\"cloud.region\",\"value\":{\"stringValue\":\"us-east-1\"}},"
    " {\"key\":\"service.version\",\"value\":{\"stringValue\":\"1.4.2\"}},"
    " {\"key\":\"process.pid\",\"value\":{\"intValue\":\"4242\"}}]},"
    " \"scopeMetrics\":[{\"scope\":{\"name\":\"openai-instrumentation\"},\"metrics\":["
    "  {\"name\":\"gen_ai.client.token.usage\",\"unit\":\"{token}\",\"histogram\":{"
    "   \"aggregationTemporality\":\"AGGREGATION_TEMPORALITY_CUMULATIVE\",\"dataPoints\":["
    "    {\"attributes\":["
    "      {\"key\":\"gen_ai.token.type\",\"value\":{\"stringValue\":\"input\"}},"
    "      {\"key\":\"gen_ai.provider.name\",\"value\":{\"stringValue\":\"az.ai.openai\"}},"
    "      {\"key\":\"gen_ai.request.model\",\"value\":{\"stringValue\":\"gpt-4o\"}},"
    "      {\"key\":\"gen_ai.response.model\",\"value\":{\"stringValue\":\"gpt-4o-2024-08-06\"}},"
    "      {\"key\":\"gen_ai.operation.name\",\"value\":{\"stringValue\":\"chat\"}},"
    "      {\"key\":\"server.address\",\"value\":{\"stringValue\":\"example.openai.azure.com\"}}],"
    "     \"startTimeUnixNano\":\"1700000000000000000\",\"timeUnixNano\":1700000060000000000,"
    "     \"count\":\"3\",\"sum\":1200,\"min\":100,\"max\":700,"
    "     \"bucketCounts\":[\"1\",\"1\",\"1\"],\"explicitBounds\":[16,256]},"
    "    {\"attributes\":["
    "      {\"key\":\"gen_ai.system\",\"value\":{\"stringValue\":\"openai\"}},"
    "      {\"key\":\"gen_ai.request.model\",\"value\":{\"stringValue\":\"gpt-4o-mini\"}},"
    "      {\"key\":\"gen_ai.operation.name\",\"value\":{\"stringValue\":\"chat\"}},"
    "      {\"key\":\"gen_ai.token.type\",\"value\":{\"stringValue\":\"output\"}}],"
    "     \"startTimeUnixNano\":\"1700000000000000000\",\"timeUnixNano\":\"1700000060000000000\","
    "     \"count\":3,\"sum\":300}]}},"
    "  {\"name\":\"http.client.request.duration\",\"unit\":\"s\",\"histogram\":{"
    "   \"aggregationTemporality\":1,\"dataPoints\":[{\"count\":\"1\",\"sum\":0.1}]}},"
    "  {\"name\":\"gen_ai.client.operation.duration\",\"unit\":\"s\",\"histogram\":{"
    "   \"aggregationTemporality\":1,\"dataPoints\":[{\"attributes\":["
    "      {\"key\":\"gen_ai.request.model\",\"value\":{\"stringValue\":\"gpt-4o\"}},"
    "      {\"key\":\"error.type\",\"value\":{\"stringValue\":\"timeout\"}},"
    "      {\"key\":\"gen_ai.provider.name\",\"value\":{\"stringValue\":\"openai\"}}],"
    "     \"startTimeUnixNano\":\"1700000000000000000\",\"timeUnixNano\":\"1700000060000000000\","
    "     \"count\":\"2\",\"sum\":1.5,\"min\":0.5,\"max\":1.0}]}},"
    "  {\"name\":\"gen_ai.server.time_to_first_token\",\"unit\":\"s\",\"exponentialHistogram\":{"
    "   \"aggregationTemporality\":1,\"dataPoints\":[{\"attributes\":["
    "      {\"key\":\"gen_ai.response.model\",\"value\":{\"stringValue\":\"llama-3-70b\"}}],"
    "     \"startTimeUnixNano\":\"1700000000000000000\",\"timeUnixNano\":\"1700000010000000000\","
    "     \"count\":\"4\",\"sum\":0.8,\"min\":0.1,\"scale\":3,\"zeroCount\":\"1\","
    "     \"positive\":{\"offset\":-4,\"bucketCounts\":[\"2\",\"1\"]}}]}},"
    "  {\"name\":\"gen_ai.client.operation.time_to_first_chunk\",\"unit\":\"ms\",\"histogram\":{"
    "   \"aggregationTemporality\":1,\"dataPoints\":[{\"attributes\":["
    "      {\"key\":\"gen_ai.request.model\",\"value\":{\"stringValue\":\"gpt-4o\"}}],"
    "     \"startTimeUnixNano\":\"1700000000000000000\",\"timeUnixNano\":\"1700000060000000000\","
    "     \"count\":5,\"sum\":250}]}},"
    "  {\"name\":\"gen_ai.client.token.usage\",\"unit\":\"{token}\",\"sum\":{"
    "   \"aggregationTemporality\":2,\"isMonotonic\":true,\"dataPoints\":[{\"asInt\":\"7\"}]}}"
    " ]}]}]}";

START_TEST(json_gives_the_same_facts_and_series)
{
    sink kj;
    sn_otlp_metric_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_msg(decode_json(full_json, &kj, &st, err) == 0, "%s", err);
    expect_full_request_facts(&kj, &st);

    size_t len;
    uint8_t *buf = full_request(&len);
    sink kp;
    ck_assert_int_eq(decode(buf, len, &kp, &st, err), 0);
    for (int i = 0; i < kp.n; i++)
        ck_assert_msg(kp.f[i].series_id == kj.f[i].series_id, "fact %d: series differ", i);
}
END_TEST

/* Series identity: attribute order does not matter; any resource or point attribute does. */
START_TEST(series_identity)
{
    KeyValue *a1[] = {kv_str("gen_ai.token.type", "input"), kv_str("gen_ai.request.model", "m")};
    KeyValue *a2[] = {kv_str("gen_ai.request.model", "m"), kv_str("gen_ai.token.type", "input")};
    KeyValue *a3[] = {kv_str("gen_ai.request.model", "n"), kv_str("gen_ai.token.type", "input")};
    HPoint *p[] = {hpoint(2, a1, 1, 1, -1, -1), hpoint(2, a2, 1, 1, -1, -1),
                   hpoint(2, a3, 1, 1, -1, -1)};
    Metric *m1[] = {histogram("gen_ai.client.token.usage", "{token}", DELTA, 3, p)};
    Metric *m2[] = {histogram("gen_ai.client.token.usage", "{token}", DELTA, 1, p)};
    ScopeMetrics *s1[] = {scope(1, m1)};
    ScopeMetrics *s2[] = {scope(1, m2)};
    ResourceMetrics *rm[] = {rmetrics(resource("a", "r"), 1, s1),
                             rmetrics(resource("a", "r2"), 1, s2)};
    size_t len;
    uint8_t *buf = pack(2, rm, &len);
    sink k;
    sn_otlp_metric_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode(buf, len, &k, &st, err), 0);
    ck_assert_int_eq(k.n, 4);
    ck_assert_uint_eq(k.f[0].series_id, k.f[1].series_id);
    ck_assert_uint_ne(k.f[0].series_id, k.f[2].series_id);
    ck_assert_uint_ne(k.f[0].series_id, k.f[3].series_id); /* another region */
    ck_assert_str_eq(k.f[3].region, "r2");
    ck_assert_uint_eq(st.resource_metrics, 2);
}
END_TEST

START_TEST(refused_points_are_counted_by_reason)
{
    KeyValue *no_type[] = {kv_str("gen_ai.request.model", "m")};
    KeyValue *bad_type[] = {kv_str("gen_ai.token.type", "cached")};
    KeyValue *in[] = {kv_str("gen_ai.token.type", "input")};
    HPoint *tok[] = {hpoint(1, no_type, 1, 5, -1, -1), hpoint(1, bad_type, 1, 5, -1, -1),
                     hpoint(1, in, 1, 5, -1, -1),      hpoint(1, in, 1, 5, -1, -1),
                     hpoint(1, in, 1, 5, -1, -1),      hpoint(1, in, 1, 5, -1, -1),
                     hpoint(1, in, 1, 5, -1, -1)};
    tok[3]->sum = -1; /* negative */
    tok[3]->_sum_case = OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT___SUM_SUM;
    tok[4]->sum = NAN;
    tok[5]->time_unix_nano = (uint64_t)T0 - 1; /* ends before it starts */
    tok[6]->flags = 1;                         /* no recorded value: stale, not refused */
    HPoint *dur[] = {hpoint(1, in, 1, 1, -1, -1)};
    HPoint *big[] = {hpoint(1, in, 1, 1, -1, -1)};
    big[0]->time_unix_nano = (uint64_t)INT64_MAX + 1;
    Metric *m[] = {
        histogram("gen_ai.client.token.usage", "{token}", DELTA, 7, tok),
        histogram("gen_ai.client.operation.duration", "By", DELTA, 1, dur),
        histogram("gen_ai.client.operation.duration", "s", 0, 1, dur),
        histogram("gen_ai.server.request.duration", "s", DELTA, 1, big),
    };
    ScopeMetrics *sc[] = {scope(4, m)};
    ResourceMetrics *rm[] = {rmetrics(resource("a", "r"), 1, sc)};
    size_t len;
    uint8_t *buf = pack(1, rm, &len);
    sink k;
    sn_otlp_metric_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode(buf, len, &k, &st, err), 0);
    ck_assert_int_eq(k.n, 1);
    ck_assert_int_eq(k.f[0].metric, SN_METRIC_INPUT_TOKENS);
    ck_assert_uint_eq(st.data_points, 10);
    ck_assert_uint_eq(st.facts, 1);
    ck_assert_uint_eq(st.stale_points, 1);
    ck_assert_uint_eq(st.rejected, 8);
    ck_assert_uint_eq(st.rejected_by[SN_METRIC_REJECT_TOKEN_TYPE], 2);
    ck_assert_uint_eq(st.rejected_by[SN_METRIC_REJECT_VALUE], 2);
    ck_assert_uint_eq(st.rejected_by[SN_METRIC_REJECT_TIME], 2);
    ck_assert_uint_eq(st.rejected_by[SN_METRIC_REJECT_UNIT], 1);
    ck_assert_uint_eq(st.rejected_by[SN_METRIC_REJECT_TEMPORALITY], 1);
    ck_assert_str_eq(sn_metric_reject_name(SN_METRIC_REJECT_TOKEN_TYPE), "token_type");
    ck_assert_str_eq(sn_metric_reject_name(SN_METRIC_REJECT_COUNT), "unknown");
}
END_TEST

START_TEST(units_and_names)
{
    double s = 0;
    ck_assert(sn_otlp_genai_metric_scale(SN_OTLP_GENAI_CLIENT_DURATION, "s", 1, &s) && s == 1000);
    ck_assert(sn_otlp_genai_metric_scale(SN_OTLP_GENAI_CLIENT_DURATION, "", 0, &s) && s == 1000);
    ck_assert(sn_otlp_genai_metric_scale(SN_OTLP_GENAI_SERVER_TTFT, "us", 2, &s) && s == 1e-3);
    ck_assert(sn_otlp_genai_metric_scale(SN_OTLP_GENAI_SERVER_TTFT, "ns", 2, &s) && s == 1e-6);
    ck_assert(!sn_otlp_genai_metric_scale(SN_OTLP_GENAI_SERVER_TTFT, "min", 3, &s));
    ck_assert(sn_otlp_genai_metric_scale(SN_OTLP_GENAI_TOKEN_USAGE, "anything", 8, &s) && s == 1);
    ck_assert_int_eq(sn_otlp_genai_metric_lookup("gen_ai.client.token.usage", 25),
                     SN_OTLP_GENAI_TOKEN_USAGE);
    ck_assert_int_eq(sn_otlp_genai_metric_lookup("gen_ai.client.token.usag", 24),
                     SN_OTLP_GENAI_NONE);
    ck_assert_int_eq(sn_otlp_genai_metric_lookup("gen_ai.server.request.duration", 30),
                     SN_OTLP_GENAI_SERVER_DURATION);
}
END_TEST

/* Hand-built bytes: a tag + length prefix around a body. */
static uint8_t *wrap(uint32_t field, const uint8_t *body, size_t n, size_t *out_len)
{
    uint8_t *b = palloc(n + 16);
    size_t o = 0;
    b[o++] = (uint8_t)(field << 3 | 2);
    size_t v = n;
    do {
        b[o] = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v)
            b[o] |= 0x80;
        o++;
    } while (v);
    memcpy(b + o, body, n);
    *out_len = o + n;
    return b;
}

static uint8_t *cat(const uint8_t *a, size_t na, const uint8_t *b, size_t nb, size_t *len)
{
    uint8_t *p = palloc(na + nb + 1);
    memcpy(p, a, na);
    memcpy(p + na, b, nb);
    *len = na + nb;
    return p;
}

/* The resource after its scopes, the metric's name after its data, the value before its key. */
START_TEST(fields_in_any_order)
{
    /* A point whose attribute has the value first: KeyValue{value, key}. */
    KeyValue *type = kv_str("gen_ai.token.type", "output");
    size_t vlen = opentelemetry__proto__common__v1__any_value__get_packed_size(type->value);
    uint8_t *vbytes = palloc(vlen + 1);
    opentelemetry__proto__common__v1__any_value__pack(type->value, vbytes);
    size_t n1, n2, kvlen;
    uint8_t *f_value = wrap(2, vbytes, vlen, &n1);
    uint8_t *f_key = wrap(1, (const uint8_t *)"gen_ai.token.type", 17, &n2);
    uint8_t *kvb = cat(f_value, n1, f_key, n2, &kvlen);
    size_t alen;
    uint8_t *attr = wrap(9, kvb, kvlen, &alen); /* HistogramDataPoint.attributes */

    HPoint *p = hpoint(0, NULL, 2, 40, -1, -1);
    size_t plen = opentelemetry__proto__metrics__v1__histogram_data_point__get_packed_size(p);
    uint8_t *pb = palloc(plen + 1);
    opentelemetry__proto__metrics__v1__histogram_data_point__pack(p, pb);
    size_t pointlen;
    uint8_t *point = cat(pb, plen, attr, alen, &pointlen);

    /* Histogram{temporality, data_points}: the temporality first this time. */
    static const uint8_t temporality[] = {0x10, 0x01};
    size_t dplen, hlen;
    uint8_t *dp = wrap(1, point, pointlen, &dplen);
    uint8_t *hist = cat(temporality, 2, dp, dplen, &hlen);
    /* Metric{histogram, unit, name} */
    size_t fh, fu, fn, mlen, tmp;
    uint8_t *mh = wrap(9, hist, hlen, &fh);
    uint8_t *mu = wrap(3, (const uint8_t *)"{token}", 7, &fu);
    uint8_t *mn = wrap(1, (const uint8_t *)"gen_ai.client.token.usage", 25, &fn);
    uint8_t *hu = cat(mh, fh, mu, fu, &tmp);
    uint8_t *metric = cat(hu, tmp, mn, fn, &mlen);
    /* ScopeMetrics{metrics}; ResourceMetrics{scope_metrics, resource} */
    size_t sm_len, fs, fr, rmlen, reqlen;
    uint8_t *sm = wrap(2, metric, mlen, &sm_len);
    uint8_t *scope_field = wrap(2, sm, sm_len, &fs);
    Resource *r = resource("late-resource", "eu-west-1");
    size_t rlen = opentelemetry__proto__resource__v1__resource__get_packed_size(r);
    uint8_t *rb = palloc(rlen + 1);
    opentelemetry__proto__resource__v1__resource__pack(r, rb);
    uint8_t *res_field = wrap(1, rb, rlen, &fr);
    uint8_t *rm = cat(scope_field, fs, res_field, fr, &rmlen);
    uint8_t *req = wrap(1, rm, rmlen, &reqlen);

    sink k;
    sn_otlp_metric_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_msg(decode(req, reqlen, &k, &st, err) == 0, "%s", err);
    ck_assert_int_eq(k.n, 1);
    ck_assert_str_eq(k.f[0].service, "late-resource");
    ck_assert_str_eq(k.f[0].region, "eu-west-1");
    ck_assert_int_eq(k.f[0].metric, SN_METRIC_OUTPUT_TOKENS);
    ck_assert_int_eq(k.f[0].temporality, SN_METRIC_TEMPORALITY_DELTA);
    ck_assert_uint_eq(k.f[0].count, 2);
    ck_assert_double_eq(k.f[0].sum, 40);
    ck_assert_uint_eq(st.scope_metrics, 1);
}
END_TEST

START_TEST(validate_only_and_empty_input)
{
    size_t len;
    uint8_t *buf = full_request(&len);
    sn_otlp_metric_stats st;
    ck_assert_int_eq(sn_otlp_decode_metrics(buf, len, NULL, NULL, &st, NULL, 0), 0);
    ck_assert_uint_eq(st.facts, 5);
    ck_assert_int_eq(sn_otlp_decode_metrics(buf, len, NULL, NULL, NULL, NULL, 0), 0);
    ck_assert_int_eq(sn_otlp_decode_metrics(NULL, 0, NULL, NULL, &st, NULL, 0), 0);
    ck_assert_uint_eq(st.metrics, 0);
    ck_assert_int_eq(sn_otlp_decode_metrics(buf, len - 1, NULL, NULL, NULL, NULL, 0), -1);
    ck_assert_int_eq(
        sn_otlp_decode_metrics_json((const uint8_t *)"{}", 2, NULL, NULL, &st, NULL, 0), 0);
    ck_assert_int_eq(sn_otlp_decode_metrics_json(NULL, 0, NULL, NULL, &st, NULL, 0), -1);
}
END_TEST

/* --- malformed protobuf --- */

/* Decodes a private heap copy of exactly len bytes, so ASan sees any read past the end. */
static int decode_exact(const uint8_t *data, size_t len, char *err)
{
    uint8_t *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    if (len)
        memcpy(copy, data, len);
    sn_otlp_metric_stats st;
    err[0] = '\0';
    int rc = sn_otlp_decode_metrics(copy, len, NULL, NULL, &st, err, SN_OTLP_ERR_MAX);
    free(copy);
    return rc;
}

static void expect_malformed(const uint8_t *data, size_t len, const char *what)
{
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode_exact(data, len, err), -1);
    ck_assert_msg(strncmp(err, "malformed OTLP metrics request: ", 32) == 0, "%s", err);
    if (what)
        ck_assert_msg(strstr(err, what) != NULL, "'%s' lacks '%s'", err, what);
}

START_TEST(truncated_at_every_byte)
{
    size_t len;
    uint8_t *buf = full_request(&len);
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode_exact(buf, len, err), 0);
    /* The request is one resource_metrics field: every cut inside it is malformed. */
    for (size_t cut = 1; cut < len; cut++)
        expect_malformed(buf, cut, NULL);
}
END_TEST

START_TEST(every_single_byte_corruption_is_safe)
{
    size_t len;
    uint8_t *buf = full_request(&len);
    uint8_t *copy = malloc(len);
    ck_assert_ptr_nonnull(copy);
    static const uint8_t flips[] = {0x00, 0x01, 0x07, 0x80, 0xFF};
    for (size_t i = 0; i < len; i++) {
        for (size_t f = 0; f < sizeof(flips); f++) {
            memcpy(copy, buf, len);
            copy[i] = flips[f];
            char err[SN_OTLP_ERR_MAX];
            sink k;
            sn_otlp_metric_stats st;
            int rc = decode(copy, len, &k, &st, err);
            ck_assert(rc == 0 || rc == -1);
            ck_assert(rc == 0 || err[0] != '\0');
            ck_assert_uint_eq(st.facts, (uint64_t)k.n);
        }
    }
    free(copy);
}
END_TEST

START_TEST(wrong_wire_types_and_lengths)
{
    static const uint8_t rm_varint[] = {0x08, 0x01};
    expect_malformed(rm_varint, sizeof(rm_varint), "resource_metrics: wrong wire type");
    /* ScopeMetrics.metrics (field 2) as fixed32 inside resource_metrics{scope_metrics{...}} */
    static const uint8_t metric_fixed32[] = {0x0A, 0x09, 0x12, 0x07, 0x15, 1, 2, 3, 4, 0x00, 0x00};
    expect_malformed(metric_fixed32, sizeof(metric_fixed32), NULL);
    /* Metric.name as a varint */
    static const uint8_t name_varint[] = {0x0A, 0x06, 0x12, 0x04, 0x12, 0x02, 0x08, 0x05};
    expect_malformed(name_varint, sizeof(name_varint), "metric name: wrong wire type");
    /* Histogram data point count (fixed64, field 4) sent as length-delimited */
    uint8_t point[] = {0x22, 0x01, 0x00};
    size_t l1, l2, l3, l4, l5, l6, tmp;
    uint8_t *dp = wrap(1, point, sizeof point, &l1);
    uint8_t *h = wrap(9, dp, l1, &l2);
    uint8_t *nm = wrap(1, (const uint8_t *)"gen_ai.client.operation.duration", 32, &tmp);
    uint8_t *m = cat(nm, tmp, h, l2, &l3);
    uint8_t *sm = wrap(2, m, l3, &l4);
    uint8_t *rm = wrap(2, sm, l4, &l5);
    uint8_t *req = wrap(1, rm, l5, &l6);
    expect_malformed(req, l6, "data point: wrong wire type");
    /* A huge length */
    static const uint8_t huge[] = {0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00};
    expect_malformed(huge, sizeof(huge), NULL);
    /* A varint that never ends */
    static const uint8_t endless[] = {0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                      0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    expect_malformed(endless, sizeof(endless), NULL);
    /* Field number 0 inside a metric */
    static const uint8_t zero_tag[] = {0x0A, 0x06, 0x12, 0x04, 0x12, 0x02, 0x00, 0x00};
    expect_malformed(zero_tag, sizeof(zero_tag), "field number 0");
    /* An invalid wire type (7) at the top */
    static const uint8_t wt7[] = {0x0F, 0x00};
    expect_malformed(wt7, sizeof(wt7), NULL);
    /* A point attribute value with a wrong AnyValue member wire type: string_value as varint */
    uint8_t any_bad[] = {0x08, 0x01};
    size_t a1, a2, a3;
    uint8_t *val = wrap(2, any_bad, sizeof any_bad, &a1);
    uint8_t *key = wrap(1, (const uint8_t *)"k", 1, &a2);
    uint8_t *kvb = cat(key, a2, val, a1, &a3);
    size_t b1, b2, b3, b4, b5, b6, b7;
    uint8_t *attr = wrap(9, kvb, a3, &b1);
    uint8_t *dp2 = wrap(1, attr, b1, &b2);
    uint8_t *h2 = wrap(9, dp2, b2, &b3);
    uint8_t *m2 = cat(nm, tmp, h2, b3, &b4);
    uint8_t *sm2 = wrap(2, m2, b4, &b5);
    uint8_t *rm2 = wrap(2, sm2, b5, &b6);
    uint8_t *req2 = wrap(1, rm2, b6, &b7);
    expect_malformed(req2, b7, "attribute value: wrong wire type");
}
END_TEST

/* --- malformed JSON --- */

START_TEST(json_malformed_structure)
{
    static const struct {
        const char *json;
        const char *msg;
    } cases[] = {
        {"[]", "not a JSON object"},
        {"{\"resourceMetrics\":{}}", "request.resourceMetrics is not an array"},
        {"{\"resourceMetrics\":[1]}", "resourceMetrics[0] is not an object"},
        {"{\"resourceMetrics\":[{\"resource\":[]}]}", "resource is not an object"},
        {"{\"resourceMetrics\":[{\"scopeMetrics\":[{\"metrics\":[\"x\"]}]}]}",
         "metrics[0] is not an object"},
        {"{\"resourceMetrics\":[{\"scopeMetrics\":[{\"metrics\":[{\"histogram\":[]}]}]}]}",
         "histogram is not an object"},
        {"{\"resourceMetrics\":[{\"scopeMetrics\":[{\"metrics\":[{\"name\":\"gen_ai.client."
         "token.usage\",\"histogram\":{\"dataPoints\":[7]}}]}]}]}",
         "dataPoints[0] is not an object"},
        {"{\"resourceMetrics\":[{\"scopeMetrics\":[{\"metrics\":[{\"name\":\"gen_ai.client."
         "token.usage\",\"histogram\":{\"dataPoints\":[{\"attributes\":{}}]}}]}]}]}",
         "attributes is not an array"},
        {"{\"resourceMetrics\":[", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sink k;
        sn_otlp_metric_stats st;
        char err[SN_OTLP_ERR_MAX];
        ck_assert_int_eq(decode_json(cases[i].json, &k, &st, err), -1);
        ck_assert_msg(strstr(err, cases[i].msg) != NULL, "case %zu: '%s'", i, err);
        ck_assert_int_eq(k.n, 0);
    }
    /* Nesting past the bound */
    char deep[SN_OTLP_JSON_MAX_DEPTH * 2 + 8];
    size_t n = 0;
    for (int i = 0; i <= SN_OTLP_JSON_MAX_DEPTH; i++)
        deep[n++] = '[';
    deep[n] = '\0';
    sink k;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode_json(deep, &k, NULL, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "nested deeper"));
}
END_TEST

/* Bad numbers refuse the point only; every JSON cut is an error, never a crash. */
START_TEST(json_bad_numbers_and_cuts)
{
    const char *json =
        "{\"resourceMetrics\":[{\"scopeMetrics\":[{\"metrics\":["
        " {\"name\":\"gen_ai.client.operation.duration\",\"histogram\":{"
        "  \"aggregationTemporality\":\"AGGREGATION_TEMPORALITY_DELTA\",\"dataPoints\":["
        "  {\"timeUnixNano\":\"x\",\"count\":1},"
        "  {\"timeUnixNano\":\"5\",\"count\":\"-1\"},"
        "  {\"timeUnixNano\":\"5\",\"count\":1,\"sum\":\"many\"},"
        "  {\"timeUnixNano\":\"5\",\"count\":1,\"sum\":\"Infinity\"},"
        "  {\"timeUnixNano\":\"5\",\"count\":1,\"sum\":2,\"flags\":1},"
        "  {\"timeUnixNano\":\"5\",\"count\":\"18446744073709551615\",\"sum\":2}]}}]}]}]}";
    sink k;
    sn_otlp_metric_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_msg(decode_json(json, &k, &st, err) == 0, "%s", err);
    ck_assert_int_eq(k.n, 1);
    ck_assert_uint_eq(k.f[0].count, UINT64_MAX);
    ck_assert_double_eq(k.f[0].sum, 2000); /* no unit: seconds */
    ck_assert_str_eq(k.f[0].service, "");
    ck_assert_uint_eq(st.rejected_by[SN_METRIC_REJECT_TIME], 1);
    ck_assert_uint_eq(st.rejected_by[SN_METRIC_REJECT_VALUE], 3);
    ck_assert_uint_eq(st.stale_points, 1);

    size_t len = strlen(full_json);
    for (size_t cut = 0; cut < len; cut++) {
        char *copy = malloc(cut + 1);
        ck_assert_ptr_nonnull(copy);
        memcpy(copy, full_json, cut);
        int rc = sn_otlp_decode_metrics_json((const uint8_t *)copy, cut, collect, &k, &st, err,
                                             sizeof err);
        k.n = 0;
        free(copy);
        ck_assert_int_eq(rc, -1);
        ck_assert(err[0] != '\0');
    }
}
END_TEST

/* --- cumulative -> delta --- */

static sn_metric_fact cumulative(uint64_t id, int64_t start, int64_t end, uint64_t count,
                                 double sum)
{
    sn_metric_fact f;
    memset(&f, 0, sizeof f);
    snprintf(f.service, sizeof f.service, "svc");
    f.metric = SN_METRIC_INPUT_TOKENS;
    f.temporality = SN_METRIC_TEMPORALITY_CUMULATIVE;
    f.series_id = id;
    f.start_unix_nano = start;
    f.end_unix_nano = end;
    f.count = count;
    f.sum = sum;
    f.min = 1;
    f.max = 99;
    return f;
}

START_TEST(delta_from_cumulative_with_resets)
{
    sn_metric_delta *t;
    ck_assert_int_eq(sn_metric_delta_create(0, 0, &t), -EINVAL);
    ck_assert_int_eq(sn_metric_delta_create((size_t)1 << 25, 0, &t), -EINVAL);
    ck_assert_int_eq(sn_metric_delta_create(2, T0 + 1000, &t), 0);

    sn_metric_fact in = cumulative(7, T0, T0 + 10, 3, 300), out;
    /* Started before the table: the first point is only a baseline. */
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), SN_METRIC_DELTA_BASELINE);
    in = cumulative(7, T0, T0 + 20, 5, 420);
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), SN_METRIC_DELTA_EMIT);
    ck_assert_int_eq(out.temporality, SN_METRIC_TEMPORALITY_DELTA);
    ck_assert_uint_eq(out.count, 2);
    ck_assert_double_eq(out.sum, 120);
    ck_assert(isnan(out.min) && isnan(out.max));
    ck_assert_int_eq(out.start_unix_nano, T0 + 10);
    ck_assert_int_eq(out.end_unix_nano, T0 + 20);
    ck_assert_str_eq(out.service, "svc");
    /* Nothing new; then an old point. */
    in = cumulative(7, T0, T0 + 30, 5, 420);
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), SN_METRIC_DELTA_UNCHANGED);
    in = cumulative(7, T0, T0 + 25, 6, 500);
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), SN_METRIC_DELTA_OUT_OF_ORDER);
    /* The next delta starts where the unchanged point left the series. */
    in = cumulative(7, T0, T0 + 40, 6, 500);
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), SN_METRIC_DELTA_EMIT);
    ck_assert_uint_eq(out.count, 1);
    ck_assert_double_eq(out.sum, 80);
    ck_assert_int_eq(out.start_unix_nano, T0 + 30);
    /* Reset by a falling count: the point in full. */
    in = cumulative(7, T0, T0 + 50, 2, 50);
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), SN_METRIC_DELTA_EMIT);
    ck_assert_uint_eq(out.count, 2);
    ck_assert_double_eq(out.sum, 50);
    ck_assert_double_eq(out.min, 1);
    /* Reset by a new start time, with a count that did not fall. */
    in = cumulative(7, T0 + 55, T0 + 60, 9, 900);
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), SN_METRIC_DELTA_EMIT);
    ck_assert_uint_eq(out.count, 9);
    ck_assert_int_eq(out.start_unix_nano, T0 + 55);
    in = cumulative(7, T0 + 55, T0 + 70, 10, 950);
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &in), SN_METRIC_DELTA_EMIT); /* in place */
    ck_assert_uint_eq(in.count, 1);
    ck_assert_double_eq(in.sum, 50);

    /* A series that started after the table: its first point counts in full. */
    in = cumulative(8, T0 + 2000, T0 + 3000, 4, 40);
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), SN_METRIC_DELTA_EMIT);
    ck_assert_uint_eq(out.count, 4);
    /* Same id, another metric: another series -- and the table (2) is full. */
    in = cumulative(8, T0, T0 + 3000, 4, 40);
    in.metric = SN_METRIC_OUTPUT_TOKENS;
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), -ENOSPC);
    /* Delta points pass through untouched, full table or not. */
    sn_metric_fact d = cumulative(99, T0, T0 + 5, 3, 30);
    d.temporality = SN_METRIC_TEMPORALITY_DELTA;
    ck_assert_int_eq(sn_metric_delta_apply(t, &d, &out), SN_METRIC_DELTA_EMIT);
    ck_assert_int_eq(memcmp(&d, &out, sizeof d), 0);
    d.temporality = SN_METRIC_TEMPORALITY_UNSPECIFIED;
    ck_assert_int_eq(sn_metric_delta_apply(t, &d, &out), -EINVAL);

    sn_metric_delta_stats st;
    sn_metric_delta_get_stats(t, &st);
    ck_assert_uint_eq(st.series, 2);
    ck_assert_uint_eq(st.baselines, 1);
    ck_assert_uint_eq(st.emitted, 6);
    ck_assert_uint_eq(st.resets, 2);
    ck_assert_uint_eq(st.out_of_order, 1);
    ck_assert_uint_eq(st.refused, 1);
    ck_assert_uint_eq(st.passed, 1);

    /* Expiry frees room: series 7 (last at T0+70) goes, series 8 (T0+3000) stays. */
    ck_assert_uint_eq(sn_metric_delta_expire(t, T0 + 100), 1);
    ck_assert_uint_eq(sn_metric_delta_expire(t, T0 + 100), 0);
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), SN_METRIC_DELTA_BASELINE);
    in = cumulative(8, T0 + 2000, T0 + 4000, 6, 70);
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), SN_METRIC_DELTA_EMIT);
    ck_assert_uint_eq(out.count, 2);
    ck_assert_double_eq(out.sum, 30);
    /* Forgotten series 7 starts over as a baseline. */
    in = cumulative(7, T0 + 55, T0 + 80, 11, 960);
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), -ENOSPC);
    ck_assert_uint_eq(sn_metric_delta_expire(t, T0 + 5000), 2);
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), SN_METRIC_DELTA_BASELINE);
    sn_metric_delta_get_stats(t, &st);
    ck_assert_uint_eq(st.expired, 3);
    ck_assert_uint_eq(st.series, 1);
    sn_metric_delta_destroy(t);
    sn_metric_delta_destroy(NULL);
}
END_TEST

/* Many series through a small table: every one found again after expiry rebuilds it. */
START_TEST(delta_table_many_series)
{
    enum { N = 1000 };
    sn_metric_delta *t;
    ck_assert_int_eq(sn_metric_delta_create(N, INT64_MAX, &t), 0);
    sn_metric_fact in, out;
    for (uint64_t i = 0; i < N; i++) {
        in = cumulative(i * 0x9E3779B97F4A7C15ULL, T0, T0 + (int64_t)i, 1, 1);
        ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), SN_METRIC_DELTA_BASELINE);
    }
    in = cumulative(12345, T0, T0, 1, 1);
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), -ENOSPC);
    ck_assert_uint_eq(sn_metric_delta_expire(t, T0 + N / 2), N / 2);
    for (uint64_t i = N / 2; i < N; i++) {
        in = cumulative(i * 0x9E3779B97F4A7C15ULL, T0, T0 + N + (int64_t)i, 3, 5);
        ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), SN_METRIC_DELTA_EMIT);
        ck_assert_uint_eq(out.count, 2);
        ck_assert_double_eq(out.sum, 4);
    }
    sn_metric_delta_destroy(t);
}
END_TEST

/* Found by fuzz_otlp_logs_json (the JSON decoders share the message): a line break or a raw byte
 * of the input quoted by jansson's error text reached the one-line message. */
START_TEST(json_syntax_errors_are_one_line_of_ascii)
{
    static const uint8_t crash[] = {'{', '"', '\\', '\n', 0xa5, '\r', 'b'};
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(
        sn_otlp_decode_metrics_json(crash, sizeof crash, NULL, NULL, NULL, err, sizeof err), -1);
    ck_assert_msg(strncmp(err, "invalid JSON at line", 20) == 0, "%s", err);
    for (const char *c = err; *c != '\0'; c++)
        ck_assert_msg(*c >= 0x20 && *c < 0x7f, "byte 0x%02x in '%s'", (unsigned char)*c, err);
}
END_TEST

/* Found by fuzz_otlp_metrics_delta: a point emitted in full (the first of a series that started
 * while the table watched, or a reset) kept CUMULATIVE, though EMIT promises a delta point. */
START_TEST(delta_points_emitted_in_full_are_deltas)
{
    sn_metric_delta *t;
    ck_assert_int_eq(sn_metric_delta_create(4, 0, &t), 0);
    sn_metric_fact in = cumulative(1, T0, T0 + 10, 3, 300), out;
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), SN_METRIC_DELTA_EMIT);
    ck_assert_int_eq(out.temporality, SN_METRIC_TEMPORALITY_DELTA);
    ck_assert_uint_eq(out.count, 3);
    ck_assert_int_eq(out.start_unix_nano, T0);
    /* A reset (the count falls): in full, as a delta from its own start. */
    in = cumulative(1, T0, T0 + 20, 1, 50);
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &out), SN_METRIC_DELTA_EMIT);
    ck_assert_int_eq(out.temporality, SN_METRIC_TEMPORALITY_DELTA);
    ck_assert_uint_eq(out.count, 1);
    /* In place too. */
    in = cumulative(2, T0, T0 + 10, 2, 20);
    ck_assert_int_eq(sn_metric_delta_apply(t, &in, &in), SN_METRIC_DELTA_EMIT);
    ck_assert_int_eq(in.temporality, SN_METRIC_TEMPORALITY_DELTA);
    sn_metric_delta_destroy(t);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("otlp_metrics");
    TCase *ok = tcase_create("well_formed");
    tcase_add_checked_fixture(ok, NULL, teardown);
    tcase_add_test(ok, every_genai_metric_every_field);
    tcase_add_test(ok, json_gives_the_same_facts_and_series);
    tcase_add_test(ok, series_identity);
    tcase_add_test(ok, refused_points_are_counted_by_reason);
    tcase_add_test(ok, units_and_names);
    tcase_add_test(ok, fields_in_any_order);
    tcase_add_test(ok, validate_only_and_empty_input);
    suite_add_tcase(s, ok);
    TCase *bad = tcase_create("malformed");
    tcase_add_checked_fixture(bad, NULL, teardown);
    tcase_set_timeout(bad, 120);
    tcase_add_test(bad, truncated_at_every_byte);
    tcase_add_test(bad, every_single_byte_corruption_is_safe);
    tcase_add_test(bad, wrong_wire_types_and_lengths);
    tcase_add_test(bad, json_malformed_structure);
    tcase_add_test(bad, json_bad_numbers_and_cuts);
    tcase_add_test(bad, json_syntax_errors_are_one_line_of_ascii);
    suite_add_tcase(s, bad);
    TCase *delta = tcase_create("delta");
    tcase_add_test(delta, delta_from_cumulative_with_resets);
    tcase_add_test(delta, delta_table_many_series);
    tcase_add_test(delta, delta_points_emitted_in_full_are_deltas);
    suite_add_tcase(s, delta);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
