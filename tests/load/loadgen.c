/*
 * loadgen.c -- sentinel-loadgen: OTLP load of GenAI spans for benchmarks and soak tests.
 *
 * Builds a pool of ExportTraceServiceRequests up front (protoc-c, ~20 GenAI attributes per
 * span, a few services and models, log-normal latencies and token counts, a small share of
 * errors), then sends them over OTLP/gRPC (gRPC C core, several calls in flight on one channel)
 * or OTLP/HTTP (libcurl multi, keep-alive connections) either at a fixed rate of spans per
 * second or as fast as the target answers, for a duration and/or a number of requests.
 * Before each send the pool entry's trace and span ids are rewritten in place from a counter,
 * so every span sent is unique while nothing is re-encoded on the send path.
 *
 * Reports requests/s, spans/s (acknowledged spans over the wall time of the run), Export
 * latency p50/p90/p99/max (from the moment a request is handed to the transport to its answer;
 * log-linear buckets of about 3 % width) and the answers by status.
 *
 * Threads: one. Everything runs on main's loop; the gRPC completion queue and curl's multi
 * handle are polled with a timeout up to the next scheduled send.
 *
 * Scenario mode (--scenario FILE, docs/scenarios.md): instead of the pool, the requests carry
 * the scenario's events (tests/load/scenario.h), each sent when its simulated time comes up on
 * the wall clock (--speed N compresses time N-fold; 0 sends as fast as the target answers),
 * with absolute timestamps: simulated time moved to the run's start. The labelled incidents go
 * to --labels FILE as JSON lines with the same absolute times, written before the first send.
 * A request holds up to load.batch events that are due, one ResourceSpans per service.
 *
 * Spikes (--spikes N, random load only): N extra services spike-000 ... each get
 * spikes.warmup spans of one model at the start of the run, all alike (spread 0: a steady
 * baseline), then one span whose latency
 * is spikes.factor times normal, spike i at spikes.start + i * spikes.interval, each in a
 * request of its own sent in between the paced load. --marks FILE gets one JSON line per spike
 * with its trace id and the wall time (CLOCK_REALTIME) its request was handed to the transport:
 * the start of the end-to-end delay tests/bench/e2e_bench.sh measures.
 *
 * Safety: only loopback targets unless --allow-remote; every run is bounded by load.duration
 * (at most 1 h; in scenario mode the scenario's duration over --speed, also at most 1 h) plus
 * one request timeout to drain, and optionally by load.requests.
 */
#include "cli.h"
#include "log.h"
#include "scenario.h"

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define LG_TRACES_METHOD "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#define LG_MAX_ATTRS     24
#define LG_HIST_SUB_BITS 5u
#define LG_HIST_SUB      (1u << LG_HIST_SUB_BITS)
#define LG_HIST_BUCKETS  (LG_HIST_SUB + (64u - LG_HIST_SUB_BITS) * LG_HIST_SUB)
#define LG_CONNECT_MS    5000
#define LG_SPIKES_MAX    1000

typedef struct Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest lg_request;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans lg_resource_spans;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans lg_scope_spans;
typedef Opentelemetry__Proto__Trace__V1__Span lg_span;
typedef Opentelemetry__Proto__Trace__V1__Status lg_status;
typedef Opentelemetry__Proto__Common__V1__KeyValue lg_kv;
typedef Opentelemetry__Proto__Common__V1__AnyValue lg_any;
typedef Opentelemetry__Proto__Common__V1__ArrayValue lg_array;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope lg_scope;
typedef Opentelemetry__Proto__Resource__V1__Resource lg_resource;

static const char *const protocol_names[] = {"grpc", "http", NULL};
static const char *const report_names[] = {"text", "json", NULL};
enum { PROTO_GRPC = 0, PROTO_HTTP = 1 };
enum { REPORT_TEXT = 0, REPORT_JSON = 1 };

typedef struct loadgen_settings {
    sn_config_address target;
    int protocol;
    double rate;
    int64_t duration;
    int64_t requests;
    int64_t batch;
    int64_t concurrency;
    int64_t pool;
    int64_t timeout;
    int64_t services;
    double error_rate;
    double spread;
    int64_t seed;
    bool allow_remote;
    int report;
    char scenario[1024];
    char labels[1024];
    double speed;
    int64_t spikes;
    int64_t spike_start;
    int64_t spike_interval;
    int64_t spike_warmup;
    double spike_factor;
    char marks[1024];
    sn_cli_log_settings log;
} loadgen_settings;

static const sn_config_desc descriptors[] = {
    {SN__CFG("load.target", SN_CONFIG_ADDRESS, loadgen_settings, target, "",
             "host:port to send to (default 127.0.0.1:4317 for grpc, 127.0.0.1:4318 for http)"),
     .flags = SN_CONFIG_OPTIONAL},
    SN_CFG_ENUM("load.protocol", loadgen_settings, protocol, "grpc", protocol_names,
                "OTLP transport: grpc or http (protobuf)"),
    SN_CFG_DOUBLE("load.rate", loadgen_settings, rate, "0", 0.0, 1e9,
                  "spans per second to send (0: as fast as the target answers)"),
    SN_CFG_DURATION("load.duration", loadgen_settings, duration, "10s", SN_NS_PER_MS,
                    3600 * SN_NS_PER_SEC, "how long to send (at most 1h)"),
    SN_CFG_INT("load.requests", loadgen_settings, requests, "0", 0, INT64_C(1000000000),
               "stop after this many requests (0: only the duration bounds the run)"),
    SN_CFG_INT("load.batch", loadgen_settings, batch, "512", 1, 100000, "spans per request"),
    SN_CFG_INT("load.concurrency", loadgen_settings, concurrency, "8", 1, 1024,
               "requests in flight at once"),
    SN_CFG_INT("load.pool", loadgen_settings, pool, "32", 1, 4096,
               "distinct pre-encoded requests (at least concurrency + 1 are made)"),
    SN_CFG_DURATION("load.timeout", loadgen_settings, timeout, "10s", SN_NS_PER_MS,
                    600 * SN_NS_PER_SEC, "deadline of one Export request"),
    SN_CFG_INT("load.services", loadgen_settings, services, "4", 1, 64,
               "distinct service.name resources"),
    SN_CFG_DOUBLE("load.error_rate", loadgen_settings, error_rate, "0.02", 0.0, 1.0,
                  "share of spans with an error status and error.type"),
    SN_CFG_DOUBLE("load.spread", loadgen_settings, spread, "1", 0.0, 4.0,
                  "width of the log-normal latencies and token counts, relative to typical "
                  "traffic (0: every span alike, so local detection never fires)"),
    SN_CFG_INT("load.seed", loadgen_settings, seed, "1", 0, INT64_MAX,
               "random seed of the generated spans"),
    SN_CFG_BOOL("load.allow_remote", loadgen_settings, allow_remote, "false",
                "allow a target that is not a loopback address"),
    SN_CFG_ENUM("report.format", loadgen_settings, report, "text", report_names,
                "final report on stdout: text or json (one object)"),
    SN_CFG_STRING("scenario.file", loadgen_settings, scenario, "",
                  "send this scenario's events (docs/scenarios.md) instead of random load"),
    SN_CFG_STRING("scenario.labels", loadgen_settings, labels, "",
                  "write the scenario's labelled incidents here (JSON lines, absolute times)"),
    SN_CFG_DOUBLE("scenario.speed", loadgen_settings, speed, "1", 0.0, 1e6,
                  "simulated seconds per wall-clock second (0: as fast as the target answers)"),
    SN_CFG_INT("spikes.count", loadgen_settings, spikes, "0", 0, LG_SPIKES_MAX,
               "latency spikes to inject, each on its own service (spike-NNN) warmed up first"),
    SN_CFG_DURATION("spikes.start", loadgen_settings, spike_start, "3s", 0, 3600 * SN_NS_PER_SEC,
                    "from the start of the run to the first spike"),
    SN_CFG_DURATION("spikes.interval", loadgen_settings, spike_interval, "1s", SN_NS_PER_MS,
                    3600 * SN_NS_PER_SEC, "between two spikes"),
    SN_CFG_INT("spikes.warmup", loadgen_settings, spike_warmup, "40", 0, 4096,
               "normal spans of each spike service sent at the start of the run"),
    SN_CFG_DOUBLE("spikes.factor", loadgen_settings, spike_factor, "50", 1.0, 1e6,
                  "a spike span's latency and time to first token over its model's median"),
    SN_CFG_STRING("spikes.marks", loadgen_settings, marks, "",
                  "write one JSON line per spike: its service, model, trace id and the wall "
                  "time its request was handed to the transport"),
    SN_CLI_LOG_DESCRIPTORS(loadgen_settings, log),
};

static const sn_cli_flag flags[] = {
    {.name = "target", .takes_value = true, .metavar = "HOST:PORT", .path = "load.target"},
    {.name = "protocol", .takes_value = true, .metavar = "grpc|http", .path = "load.protocol"},
    {.name = "rate", .takes_value = true, .metavar = "SPANS/S", .path = "load.rate"},
    {.name = "duration", .takes_value = true, .metavar = "DURATION", .path = "load.duration"},
    {.name = "requests", .takes_value = true, .metavar = "N", .path = "load.requests"},
    {.name = "batch", .takes_value = true, .metavar = "SPANS", .path = "load.batch"},
    {.name = "concurrency", .takes_value = true, .metavar = "N", .path = "load.concurrency"},
    {.name = "timeout", .takes_value = true, .metavar = "DURATION", .path = "load.timeout"},
    {.name = "seed", .takes_value = true, .metavar = "N", .path = "load.seed"},
    {.name = "allow-remote", .path = "load.allow_remote", .set_value = "true"},
    {.name = "json", .path = "report.format", .set_value = "json", .help = "report as JSON"},
    {.name = "scenario", .takes_value = true, .metavar = "FILE", .path = "scenario.file"},
    {.name = "labels", .takes_value = true, .metavar = "FILE", .path = "scenario.labels"},
    {.name = "speed", .takes_value = true, .metavar = "FACTOR", .path = "scenario.speed"},
    {.name = "spikes", .takes_value = true, .metavar = "N", .path = "spikes.count"},
    {.name = "spike-interval",
     .takes_value = true,
     .metavar = "DURATION",
     .path = "spikes.interval"},
    {.name = "marks", .takes_value = true, .metavar = "FILE", .path = "spikes.marks"},
};

/* ---------------------------------------------------------------- random numbers */

typedef struct lg_rng {
    uint64_t s;
} lg_rng;

/* splitmix64: a fast generator with a 64-bit state; never fails. */
static uint64_t rng_next(lg_rng *r)
{
    uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A uniform double in (0, 1). */
static double rng_unit(lg_rng *r)
{
    return ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
}

/* A log-normal draw: exp(mu + sigma * N(0,1)) (Box-Muller). */
static double rng_lognormal(lg_rng *r, double mu, double sigma)
{
    double n = sqrt(-2.0 * log(rng_unit(r))) * cos(2.0 * M_PI * rng_unit(r));
    return exp(mu + sigma * n);
}

/* ---------------------------------------------------------------- the generated spans */

typedef struct lg_model {
    const char *provider;
    const char *request_model;
    const char *response_model;
    const char *server;
    double latency_median_ms;
    double input_median, output_median;
} lg_model;

static const lg_model models[] = {
    {"openai", "gpt-4o", "gpt-4o-2024-08-06", "api.openai.com", 1800, 900, 250},
    {"openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "api.openai.com", 900, 700, 180},
    {"anthropic", "claude-sonnet-4", "claude-sonnet-4-20250514", "api.anthropic.com", 2400, 1200,
     320},
    {"gcp.gemini", "gemini-2.0-flash", "gemini-2.0-flash-001", "generativelanguage.googleapis.com",
     700, 800, 200},
    {"aws.bedrock", "meta.llama3-1-70b-instruct", "meta.llama3-1-70b-instruct-v1:0",
     "bedrock-runtime.us-east-1.amazonaws.com", 1500, 600, 220},
};
#define LG_NMODELS (sizeof models / sizeof models[0])

static const char *const finish_reasons[] = {"stop", "length", "tool_calls"};
static const char *const error_types[] = {"rate_limit_exceeded", "timeout", "server_error"};
static const char *const regions[] = {"us-east-1", "eu-west-1", "ap-southeast-2"};

/* One pre-encoded request and where its ids sit in the encoded bytes. */
typedef struct lg_entry {
    uint8_t *buf;
    size_t len;
    uint32_t *id_off; /* offset of each span's trace_id; UINT32_MAX when not patchable */
    size_t nspans;
    bool busy; /* in flight: its bytes must not change */
} lg_entry;

/* The protoc-c objects of one span, allocated together. */
typedef struct lg_span_parts {
    lg_span span;
    lg_status status;
    lg_kv kv[LG_MAX_ATTRS];
    lg_any any[LG_MAX_ATTRS];
    lg_kv *kvp[LG_MAX_ATTRS];
    lg_any finish_any;
    lg_any *finish_anyp;
    lg_array finish_array;
    uint8_t trace_id[16], span_id[8], parent_id[8];
    char name[96];
    char response_id[40];
    char conversation_id[40];
} lg_span_parts;

static lg_kv *kv_str(lg_span_parts *p, size_t *n, const char *key, const char *v)
{
    lg_kv *kv = &p->kv[*n];
    lg_any *a = &p->any[*n];
    opentelemetry__proto__common__v1__key_value__init(kv);
    opentelemetry__proto__common__v1__any_value__init(a);
    a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    a->string_value = (char *)v;
    kv->key = (char *)key;
    kv->value = a;
    p->kvp[*n] = kv;
    (*n)++;
    return kv;
}

static void kv_int(lg_span_parts *p, size_t *n, const char *key, int64_t v)
{
    lg_kv *kv = kv_str(p, n, key, "");
    kv->value->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    kv->value->int_value = v;
}

static void kv_double(lg_span_parts *p, size_t *n, const char *key, double v)
{
    lg_kv *kv = kv_str(p, n, key, "");
    kv->value->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
    kv->value->double_value = v;
}

static void hex(char *out, const uint8_t *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Fills one GenAI chat span (about 20 attributes) of model `fixed` (NULL: a random one) whose
 * latency and time to first token are `factor` times a normal draw. Strings point into `p` or
 * static tables. */
static void make_span(lg_span_parts *p, lg_rng *r, uint64_t now_ns, double error_rate,
                      double spread, const lg_model *fixed, double factor)
{
    const lg_model *m = fixed != NULL ? fixed : &models[rng_next(r) % LG_NMODELS];
    lg_span *s = &p->span;
    opentelemetry__proto__trace__v1__span__init(s);
    opentelemetry__proto__trace__v1__status__init(&p->status);
    for (size_t i = 0; i < 16; i += 8) {
        uint64_t v = rng_next(r) | 1u;
        memcpy(p->trace_id + i, &v, 8);
    }
    uint64_t v = rng_next(r) | 1u;
    memcpy(p->span_id, &v, 8);
    v = rng_next(r) | 1u;
    memcpy(p->parent_id, &v, 8);
    s->trace_id = (ProtobufCBinaryData){16, p->trace_id};
    s->span_id = (ProtobufCBinaryData){8, p->span_id};
    s->parent_span_id = (ProtobufCBinaryData){8, p->parent_id};
    s->flags = 0x101; /* sampled, remote parent known */
    snprintf(p->name, sizeof p->name, "chat %s", m->request_model);
    s->name = p->name;
    s->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT;

    double latency_ms = factor * rng_lognormal(r, log(m->latency_median_ms), 0.5 * spread);
    double ttft_s =
        latency_ms / 1000.0 * (0.25 + 0.15 * (2.0 * rng_unit(r) - 1.0) * fmin(spread, 1.0));
    uint64_t dur = (uint64_t)(latency_ms * 1e6);
    s->end_time_unix_nano = now_ns - (rng_next(r) % (60 * (uint64_t)SN_NS_PER_SEC));
    s->start_time_unix_nano = s->end_time_unix_nano - dur;
    int64_t in_tok = (int64_t)rng_lognormal(r, log(m->input_median), 0.7 * spread) + 1;
    int64_t out_tok = (int64_t)rng_lognormal(r, log(m->output_median), 0.6 * spread) + 1;
    int64_t cache_read = (int64_t)((double)in_tok * 0.3 * (spread > 0 ? rng_unit(r) : 0.5));
    bool error = rng_unit(r) < error_rate;

    uint8_t rid[12];
    for (size_t i = 0; i < sizeof rid; i++)
        rid[i] = (uint8_t)rng_next(r);
    char rhex[25];
    hex(rhex, rid, sizeof rid);
    snprintf(p->response_id, sizeof p->response_id, "chatcmpl-%s", rhex);
    hex(rhex, rid + 4, 8);
    snprintf(p->conversation_id, sizeof p->conversation_id, "conv_%s", rhex);

    size_t n = 0;
    kv_str(p, &n, "gen_ai.operation.name", "chat");
    kv_str(p, &n, "gen_ai.provider.name", m->provider);
    kv_str(p, &n, "gen_ai.request.model", m->request_model);
    kv_str(p, &n, "gen_ai.response.model", m->response_model);
    kv_str(p, &n, "gen_ai.response.id", p->response_id);
    kv_str(p, &n, "gen_ai.conversation.id", p->conversation_id);
    kv_str(p, &n, "gen_ai.output.type", "text");
    kv_double(p, &n, "gen_ai.request.temperature", 0.7);
    kv_double(p, &n, "gen_ai.request.top_p", 0.95);
    kv_int(p, &n, "gen_ai.request.max_tokens", 1024);
    kv_int(p, &n, "gen_ai.usage.input_tokens", in_tok);
    kv_int(p, &n, "gen_ai.usage.output_tokens", out_tok);
    kv_int(p, &n, "gen_ai.usage.cache_read.input_tokens", cache_read);
    kv_int(p, &n, "gen_ai.usage.cache_creation.input_tokens", 0);
    kv_double(p, &n, "gen_ai.response.time_to_first_chunk", ttft_s);
    kv_str(p, &n, "server.address", m->server);
    kv_int(p, &n, "server.port", 443);
    kv_str(p, &n, "http.request.method", "POST");
    /* gen_ai.response.finish_reasons: an array of one string. */
    lg_kv *fr = kv_str(p, &n, "gen_ai.response.finish_reasons", "");
    opentelemetry__proto__common__v1__any_value__init(&p->finish_any);
    opentelemetry__proto__common__v1__array_value__init(&p->finish_array);
    p->finish_any.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    p->finish_any.string_value = (char *)finish_reasons[rng_next(r) % 3];
    p->finish_anyp = &p->finish_any;
    p->finish_array.n_values = 1;
    p->finish_array.values = &p->finish_anyp;
    fr->value->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
    fr->value->array_value = &p->finish_array;
    if (error) {
        kv_str(p, &n, "error.type", error_types[rng_next(r) % 3]);
        p->status.code = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
        p->status.message = (char *)"provider returned an error";
    } else {
        kv_int(p, &n, "http.response.status_code", 200);
    }
    s->n_attributes = n;
    s->attributes = p->kvp;
    s->status = &p->status;
}

/* How the spans of one request are made (make_entry). */
typedef struct lg_entry_spec {
    size_t nspans;
    unsigned service;      /* service.name llm-app-<service> ... */
    const char *svc_name;  /* ... unless this is not NULL */
    const lg_model *model; /* every span of this model; NULL: random models */
    double factor;         /* latency factor (1: normal traffic) */
    double error_rate, spread;
} lg_entry_spec;

/* Encodes one request as `spec` says into `e`, and finds the offset of every span's trace_id in
 * the bytes. Returns 0 or -ENOMEM; on failure `e` holds nothing to free. */
static int make_entry(lg_entry *e, const lg_entry_spec *spec, lg_rng *r, uint64_t now_ns)
{
    size_t nspans = spec->nspans;
    int rc = -ENOMEM;
    lg_span_parts *parts = calloc(nspans, sizeof *parts);
    lg_span **spanp = calloc(nspans, sizeof *spanp);
    e->id_off = calloc(nspans, sizeof *e->id_off);
    if (parts == NULL || spanp == NULL || e->id_off == NULL)
        goto out_free_parts;
    for (size_t i = 0; i < nspans; i++) {
        make_span(&parts[i], r, now_ns, spec->error_rate, spec->spread, spec->model, spec->factor);
        spanp[i] = &parts[i].span;
    }

    char svc[64], inst[96];
    if (spec->svc_name != NULL)
        snprintf(svc, sizeof svc, "%s", spec->svc_name);
    else
        snprintf(svc, sizeof svc, "llm-app-%u", spec->service);
    snprintf(inst, sizeof inst, "%s-7f9c%04x", svc, (unsigned)(rng_next(r) & 0xffff));
    lg_span_parts rattr; /* reuses the attribute helpers for the resource */
    size_t nr = 0;
    kv_str(&rattr, &nr, "service.name", svc);
    kv_str(&rattr, &nr, "service.version", "1.4.2");
    kv_str(&rattr, &nr, "service.instance.id", inst);
    kv_str(&rattr, &nr, "deployment.environment.name", "production");
    kv_str(&rattr, &nr, "cloud.region", regions[spec->service % 3]);
    kv_str(&rattr, &nr, "telemetry.sdk.name", "opentelemetry");
    kv_str(&rattr, &nr, "telemetry.sdk.language", "python");
    kv_str(&rattr, &nr, "telemetry.sdk.version", "1.29.0");

    lg_resource res;
    opentelemetry__proto__resource__v1__resource__init(&res);
    res.n_attributes = nr;
    res.attributes = rattr.kvp;
    lg_scope scope;
    opentelemetry__proto__common__v1__instrumentation_scope__init(&scope);
    scope.name = (char *)"opentelemetry.instrumentation.openai_v2";
    scope.version = (char *)"2.1b0";
    lg_scope_spans ss;
    opentelemetry__proto__trace__v1__scope_spans__init(&ss);
    ss.scope = &scope;
    ss.n_spans = nspans;
    ss.spans = spanp;
    lg_scope_spans *ssp = &ss;
    lg_resource_spans rs;
    opentelemetry__proto__trace__v1__resource_spans__init(&rs);
    rs.resource = &res;
    rs.n_scope_spans = 1;
    rs.scope_spans = &ssp;
    rs.schema_url = (char *)"https://opentelemetry.io/schemas/1.28.0";
    lg_resource_spans *rsp = &rs;
    lg_request req;
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(&req);
    req.n_resource_spans = 1;
    req.resource_spans = &rsp;

    e->len =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
            &req);
    e->buf = malloc(e->len);
    if (e->buf == NULL)
        goto out_free_parts;
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(&req, e->buf);
    e->nspans = nspans;

    /* Spans are written in order and a Span starts with trace_id (field 1, 16 bytes) followed
     * by span_id (field 2, 8 bytes): each search starts where the previous span was found, so
     * finding all of them reads the buffer once. */
    size_t pos = 0;
    for (size_t i = 0; i < nspans; i++) {
        const uint8_t *hit = memmem(e->buf + pos, e->len - pos, parts[i].trace_id, 16);
        size_t off = hit != NULL ? (size_t)(hit - e->buf) : SIZE_MAX;
        if (off == SIZE_MAX || off + 26 > e->len || e->buf[off + 16] != 0x12 ||
            e->buf[off + 17] != 8 || memcmp(e->buf + off + 18, parts[i].span_id, 8) != 0) {
            e->id_off[i] = UINT32_MAX;
            continue;
        }
        e->id_off[i] = (uint32_t)off;
        pos = off + 26;
    }
    rc = 0;
    goto out_free_parts_only;

out_free_parts:
    free(e->id_off);
    e->id_off = NULL;
out_free_parts_only:
    free(spanp);
    free(parts);
    return rc;
}

/* Gives every span of `e` fresh ids: the last 8 bytes of the trace id and the whole span id
 * become the next values of *counter. Only for an entry that is not in flight. */
static void refresh_ids(lg_entry *e, uint64_t *counter)
{
    for (size_t i = 0; i < e->nspans; i++) {
        if (e->id_off[i] == UINT32_MAX)
            continue;
        uint64_t c = ++*counter;
        memcpy(e->buf + e->id_off[i] + 8, &c, 8);
        memcpy(e->buf + e->id_off[i] + 18, &c, 8);
    }
}

/* ---------------------------------------------------------------- scenario requests */

#define LG_SCENARIO_BATCH 4096 /* events per scenario request at most */

/* Fills one GenAI span from a scenario event ending at end_ns: the facts the sidecar extracts
 * (model, provider, tokens, time to first chunk, finish reason, error) plus the event's cost as
 * llm.cost.total, so the scenario's prices reach the detectors whatever the price table says.
 * Strings point into ev, which must outlive the encoding. */
static void make_scenario_span(lg_span_parts *p, const sn_event *ev, int64_t end_ns)
{
    lg_span *s = &p->span;
    opentelemetry__proto__trace__v1__span__init(s);
    opentelemetry__proto__trace__v1__status__init(&p->status);
    memcpy(p->trace_id, ev->trace_id, 16);
    memcpy(p->span_id, ev->span_id, 8);
    s->trace_id = (ProtobufCBinaryData){16, p->trace_id};
    s->span_id = (ProtobufCBinaryData){8, p->span_id};
    snprintf(p->name, sizeof p->name, "chat %.80s", ev->model);
    s->name = p->name;
    s->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT;
    double lat = isnan(ev->latency_ms) ? 0.0 : ev->latency_ms;
    s->end_time_unix_nano = (uint64_t)end_ns;
    s->start_time_unix_nano = (uint64_t)(end_ns - (int64_t)(lat * 1e6));
    size_t n = 0;
    kv_str(p, &n, "gen_ai.operation.name", ev->operation[0] ? ev->operation : "chat");
    if (ev->provider[0] != '\0')
        kv_str(p, &n, "gen_ai.provider.name", ev->provider);
    kv_str(p, &n, "gen_ai.request.model", ev->model);
    kv_str(p, &n, "gen_ai.response.model", ev->model);
    if (ev->input_tokens >= 0)
        kv_int(p, &n, "gen_ai.usage.input_tokens", ev->input_tokens);
    if (ev->output_tokens >= 0)
        kv_int(p, &n, "gen_ai.usage.output_tokens", ev->output_tokens);
    if (!isnan(ev->ttft_ms))
        kv_double(p, &n, "gen_ai.response.time_to_first_chunk", ev->ttft_ms / 1000.0);
    if (!isnan(ev->cost_usd))
        kv_double(p, &n, "llm.cost.total", ev->cost_usd);
    if (ev->finish_reason[0] != '\0') {
        lg_kv *fr = kv_str(p, &n, "gen_ai.response.finish_reasons", "");
        opentelemetry__proto__common__v1__any_value__init(&p->finish_any);
        opentelemetry__proto__common__v1__array_value__init(&p->finish_array);
        p->finish_any.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
        p->finish_any.string_value = (char *)ev->finish_reason;
        p->finish_anyp = &p->finish_any;
        p->finish_array.n_values = 1;
        p->finish_array.values = &p->finish_anyp;
        fr->value->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
        fr->value->array_value = &p->finish_array;
    }
    if (ev->is_error) {
        kv_str(p, &n, "error.type", ev->error_type[0] ? ev->error_type : "error");
        p->status.code = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
        p->status.message = (char *)"provider returned an error";
    }
    s->n_attributes = n;
    s->attributes = p->kvp;
    s->status = &p->status;
}

/* Encodes n scenario events (end times in ends) into e: one ResourceSpans per service, in the
 * order services first appear. The span ids come from the scenario (unique), so no id offsets
 * are kept. Returns 0 or -ENOMEM; on failure e holds nothing to free. */
static int make_scenario_entry(lg_entry *e, const sn_event *evs, const int64_t *ends, size_t n)
{
    int rc = -ENOMEM;
    lg_span_parts *parts = calloc(n ? n : 1, sizeof *parts);
    lg_span **spanp = calloc(n ? n : 1, sizeof *spanp);
    size_t *svc_of = calloc(n ? n : 1, sizeof *svc_of);
    /* Per service: its resource and scope objects (at most n services). */
    lg_span_parts *rattr = calloc(n ? n : 1, sizeof *rattr);
    lg_resource *res = calloc(n ? n : 1, sizeof *res);
    lg_scope_spans *ss = calloc(n ? n : 1, sizeof *ss);
    lg_scope_spans **ssp = calloc(n ? n : 1, sizeof *ssp);
    lg_resource_spans *rs = calloc(n ? n : 1, sizeof *rs);
    lg_resource_spans **rsp = calloc(n ? n : 1, sizeof *rsp);
    e->id_off = calloc(n ? n : 1, sizeof *e->id_off);
    if (parts == NULL || spanp == NULL || svc_of == NULL || rattr == NULL || res == NULL ||
        ss == NULL || ssp == NULL || rs == NULL || rsp == NULL || e->id_off == NULL)
        goto out_free_parts;
    size_t nsvc = 0;
    size_t svc_first[LG_SCENARIO_BATCH]; /* first event of each service */
    if (n > LG_SCENARIO_BATCH)
        goto out_free_parts;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        for (k = 0; k < nsvc; k++)
            if (strcmp(evs[svc_first[k]].service, evs[i].service) == 0)
                break;
        if (k == nsvc)
            svc_first[nsvc++] = i;
        svc_of[i] = k;
    }
    /* Spans grouped by service, each group in time order. */
    size_t pos = 0;
    lg_scope scope;
    opentelemetry__proto__common__v1__instrumentation_scope__init(&scope);
    scope.name = (char *)"opentelemetry.instrumentation.openai_v2";
    for (size_t k = 0; k < nsvc; k++) {
        size_t from = pos;
        for (size_t i = 0; i < n; i++) {
            if (svc_of[i] != k)
                continue;
            make_scenario_span(&parts[pos], &evs[i], ends[i]);
            spanp[pos] = &parts[pos].span;
            e->id_off[pos] = UINT32_MAX;
            pos++;
        }
        const sn_event *first_ev = &evs[svc_first[k]];
        size_t nr = 0;
        kv_str(&rattr[k], &nr, "service.name", first_ev->service);
        if (first_ev->region[0] != '\0')
            kv_str(&rattr[k], &nr, "cloud.region", first_ev->region);
        kv_str(&rattr[k], &nr, "telemetry.sdk.name", "opentelemetry");
        opentelemetry__proto__resource__v1__resource__init(&res[k]);
        res[k].n_attributes = nr;
        res[k].attributes = rattr[k].kvp;
        opentelemetry__proto__trace__v1__scope_spans__init(&ss[k]);
        ss[k].scope = &scope;
        ss[k].n_spans = pos - from;
        ss[k].spans = spanp + from;
        ssp[k] = &ss[k];
        opentelemetry__proto__trace__v1__resource_spans__init(&rs[k]);
        rs[k].resource = &res[k];
        rs[k].n_scope_spans = 1;
        rs[k].scope_spans = &ssp[k];
        rsp[k] = &rs[k];
    }
    lg_request req;
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(&req);
    req.n_resource_spans = nsvc;
    req.resource_spans = rsp;
    e->len =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
            &req);
    e->buf = malloc(e->len ? e->len : 1);
    if (e->buf == NULL)
        goto out_free_parts;
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(&req, e->buf);
    e->nspans = n;
    rc = 0;
    goto out_free_parts_only;

out_free_parts:
    free(e->id_off);
    e->id_off = NULL;
out_free_parts_only:
    free(rsp);
    free(rs);
    free(ssp);
    free(ss);
    free(res);
    free(rattr);
    free(svc_of);
    free(spanp);
    free(parts);
    return rc;
}

/* ---------------------------------------------------------------- latency histogram */

typedef struct lg_hist {
    uint64_t counts[LG_HIST_BUCKETS];
    uint64_t n, max, sum;
} lg_hist;

/* Bucket of a value: exact below LG_HIST_SUB, then LG_HIST_SUB buckets per power of two. */
static unsigned hist_index(uint64_t v)
{
    if (v < LG_HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    unsigned sub = (unsigned)(v >> (e - LG_HIST_SUB_BITS)) & (LG_HIST_SUB - 1);
    return LG_HIST_SUB + (e - LG_HIST_SUB_BITS) * LG_HIST_SUB + sub;
}

/* The highest value that falls into bucket i. */
static uint64_t hist_upper(unsigned i)
{
    if (i < LG_HIST_SUB)
        return i;
    unsigned e = (i - LG_HIST_SUB) / LG_HIST_SUB + LG_HIST_SUB_BITS;
    uint64_t sub = (i - LG_HIST_SUB) % LG_HIST_SUB;
    uint64_t width = UINT64_C(1) << (e - LG_HIST_SUB_BITS);
    return ((LG_HIST_SUB + sub) << (e - LG_HIST_SUB_BITS)) + width - 1;
}

static void hist_add(lg_hist *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    h->n++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

/* The p-th percentile (0 < p <= 100): the upper edge of the bucket holding that rank, never
 * above the maximum seen. 0 when empty. */
static uint64_t hist_pct(const lg_hist *h, double p)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->n);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t u = hist_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

/* ---------------------------------------------------------------- the run */

/* Answers are counted by class and by the protocol's own code. */
enum { ANS_OK = 0, ANS_RETRYABLE, ANS_INVALID, ANS_TOO_LARGE, ANS_TIMEOUT, ANS_OTHER, ANS_COUNT };
static const char *const answer_names[ANS_COUNT] = {"ok",        "retryable", "invalid",
                                                    "too_large", "timeout",   "other"};

typedef struct lg_run {
    const loadgen_settings *s;
    lg_entry *pool;
    size_t npool;
    size_t next_entry;
    uint64_t id_counter;
    uint64_t start_ns, stop_send_ns, last_done_ns;
    uint64_t interval_ns; /* between sends in rate mode; 0 = flat out */
    uint64_t next_due_ns;
    uint64_t max_lag_ns; /* how far behind schedule a send started, at worst */
    uint64_t sent, done, inflight, spans_ok;
    uint64_t answers[ANS_COUNT];
    uint64_t codes[600]; /* gRPC status codes 0..16, HTTP status 100..599; 0 for curl errors */
    uint64_t transport_errors;
    lg_hist hist;
    char target[300];
    /* Scenario mode: gen is not NULL. */
    sn_scenario_gen *gen;
    sn_event pending; /* the next event, read ahead */
    bool has_pending;
    int64_t sim_start;   /* the scenario's simulated start */
    int64_t wall_start;  /* CLOCK_REALTIME at the run's start: the scenario's start in spans */
    uint64_t scen_mono0; /* now_ns() at that moment */
    sn_event *evbuf;     /* one request's events (load.batch, at most LG_SCENARIO_BATCH) */
    int64_t *evtime;     /* their end times in the spans */
    size_t nevbuf;
    uint64_t events_sent;
    /* Spikes (spikes.count): pool[npool ...] holds nwarm warm-up requests, then nspikes spike
     * requests of one span each; next_extra is the next of them to send. */
    size_t nwarm, nspikes, next_extra;
    FILE *marks;
    uint64_t marks_written;
} lg_run;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Scenario mode: the monotonic time at which the pending event is due (its simulated offset
 * over the speed, from the moment the scenario was placed on the wall clock). */
static uint64_t scenario_due(const lg_run *run)
{
    if (run->s->speed <= 0.0)
        return 0;
    double off = (double)(run->pending.end_unix_nano - run->sim_start) / run->s->speed;
    return run->scen_mono0 + (uint64_t)(off > 0.0 ? off : 0.0);
}

/* Scenario mode: an event's time in the spans -- simulated time moved to the run's start and
 * compressed by the speed; at speed 0 the scenario's own absolute times. */
static int64_t scenario_time(const lg_run *run, int64_t sim)
{
    if (run->s->speed <= 0.0)
        return sim;
    return run->wall_start + (int64_t)((double)(sim - run->sim_start) / run->s->speed);
}

/* Scenario mode: fills pool entry e with the events due at `now` (at least one, at most the
 * batch). On failure (out of memory) the entry is an empty request and the run is stopped. */
static void scenario_fill(lg_run *run, lg_entry *e, uint64_t now)
{
    free(e->buf);
    free(e->id_off);
    memset(e, 0, sizeof *e);
    size_t n = 0;
    while (run->has_pending && n < run->nevbuf && (n == 0 || scenario_due(run) <= now)) {
        run->evbuf[n] = run->pending;
        run->evtime[n] = scenario_time(run, run->pending.end_unix_nano);
        n++;
        run->has_pending = sn_scenario_next(run->gen, &run->pending, NULL);
    }
    if (make_scenario_entry(e, run->evbuf, run->evtime, n) != 0) {
        sn_log_error("out of memory while encoding a scenario request");
        interrupted = 1;
        e->buf = NULL;
        e->len = 0;
        e->nspans = 0;
        return;
    }
    run->events_sent += n;
}

/* Spikes: when the next warm-up or spike request is due (monotonic ns); UINT64_MAX when all
 * were sent. Warm-ups are due at the start, spike i at spikes.start + i * spikes.interval. */
static uint64_t extra_due(const lg_run *run)
{
    size_t k = run->next_extra;
    if (k >= run->nwarm + run->nspikes)
        return UINT64_MAX;
    if (k < run->nwarm)
        return run->start_ns;
    return run->start_ns + (uint64_t)run->s->spike_start +
           (uint64_t)(k - run->nwarm) * (uint64_t)run->s->spike_interval;
}

/* The name of spike service i (spike-000 ...) into buf. */
static void spike_service(char *buf, size_t len, size_t i)
{
    snprintf(buf, len, "spike-%03zu", i);
}

/* Picks the next warm-up or spike request when it is due, else a pool entry that is not in
 * flight (there is always one: the pool is larger than the number of calls in flight),
 * refreshes its ids (scenario mode: fills it with the events due) and marks it busy. Spike
 * requests keep their ids: each is sent once. */
static size_t take_entry(lg_run *run)
{
    if (now_ns() >= extra_due(run)) {
        size_t i = run->npool + run->next_extra++;
        run->pool[i].busy = true;
        return i;
    }
    for (;;) {
        size_t i = run->next_entry;
        run->next_entry = (run->next_entry + 1) % run->npool;
        if (!run->pool[i].busy) {
            if (run->gen != NULL)
                scenario_fill(run, &run->pool[i], now_ns());
            else
                refresh_ids(&run->pool[i], &run->id_counter);
            run->pool[i].busy = true;
            return i;
        }
    }
}

/* Is the run still in its sending phase (not interrupted, within the duration and count, and
 * in scenario mode with events left)? */
static bool sending(const lg_run *run, uint64_t now)
{
    return !interrupted && now < run->stop_send_ns &&
           (run->s->requests == 0 || run->sent < (uint64_t)run->s->requests) &&
           (run->gen == NULL || run->has_pending);
}

/* May another request be started now? Updates nothing. */
static bool may_send(const lg_run *run, uint64_t now)
{
    if (!sending(run, now))
        return false;
    if (run->inflight >= (uint64_t)run->s->concurrency)
        return false;
    if (now >= extra_due(run))
        return true;
    if (run->gen != NULL)
        return now >= scenario_due(run);
    return run->interval_ns == 0 || now >= run->next_due_ns;
}

/* Spikes: writes the mark of spike request `entry` -- its number, service, model, trace id and
 * CLOCK_REALTIME now, the moment it is handed to the transport -- as one JSON line. */
static void write_mark(lg_run *run, size_t entry)
{
    size_t i = entry - run->npool - run->nwarm;
    const lg_entry *e = &run->pool[entry];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char trace[33] = "";
    if (e->nspans > 0 && e->id_off[0] != UINT32_MAX)
        hex(trace, e->buf + e->id_off[0], 16);
    char svc[32];
    spike_service(svc, sizeof svc, i);
    fprintf(run->marks,
            "{\"spike\":%zu,\"service\":\"%s\",\"model\":\"%s\",\"trace_id\":\"%s\","
            "\"export_unix_nano\":%" PRIu64 ",\"factor\":%g}\n",
            i, svc, models[i % LG_NMODELS].request_model, trace,
            (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec, run->s->spike_factor);
    fflush(run->marks);
    run->marks_written++;
}

/* Bookkeeping of one started request (pool entry or spike request `entry`). */
static void note_sent(lg_run *run, uint64_t now, size_t entry)
{
    if (entry >= run->npool + run->nwarm && run->marks != NULL)
        write_mark(run, entry);
    if (entry < run->npool && run->interval_ns != 0) {
        if (now > run->next_due_ns && now - run->next_due_ns > run->max_lag_ns)
            run->max_lag_ns = now - run->next_due_ns;
        run->next_due_ns += run->interval_ns;
    }
    run->sent++;
    run->inflight++;
}

/* Bookkeeping of one finished request: `cls` its class, `code` the protocol's code. */
static void note_done(lg_run *run, size_t entry, uint64_t t0, int cls, int code)
{
    uint64_t now = now_ns();
    run->pool[entry].busy = false;
    run->inflight--;
    run->done++;
    run->answers[cls]++;
    if (code >= 0 && code < 600)
        run->codes[code]++;
    if (cls == ANS_OK) {
        run->spans_ok += run->pool[entry].nspans;
        hist_add(&run->hist, (now - t0) / 1000u);
    }
    run->last_done_ns = now;
}

/* How long (ns) the transport may wait for an answer before the loop has something to do. */
static uint64_t wait_budget(const lg_run *run, uint64_t now)
{
    uint64_t until = run->stop_send_ns;
    if (!sending(run, now))
        until = run->stop_send_ns + (uint64_t)run->s->timeout + SN_NS_PER_SEC;
    else if (run->gen != NULL && run->inflight < (uint64_t)run->s->concurrency)
        until = scenario_due(run);
    else if (run->interval_ns != 0 && run->inflight < (uint64_t)run->s->concurrency)
        until = run->next_due_ns;
    if (sending(run, now) && run->inflight < (uint64_t)run->s->concurrency &&
        extra_due(run) < until)
        until = extra_due(run);
    if (until <= now)
        return 0;
    uint64_t w = until - now;
    return w > 100 * (uint64_t)SN_NS_PER_MS ? 100 * (uint64_t)SN_NS_PER_MS : w;
}

/* ---------------------------------------------------------------- OTLP/gRPC */

typedef struct lg_gcall {
    grpc_call *call;
    grpc_byte_buffer *request, *response;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code status;
    grpc_slice details;
    size_t entry;
    uint64_t t0;
    bool busy;
} lg_gcall;

static int grpc_class(grpc_status_code st)
{
    switch (st) {
    case GRPC_STATUS_OK:
        return ANS_OK;
    case GRPC_STATUS_UNAVAILABLE:
    case GRPC_STATUS_ABORTED:
    case GRPC_STATUS_OUT_OF_RANGE:
    case GRPC_STATUS_DATA_LOSS:
    case GRPC_STATUS_CANCELLED:
        return ANS_RETRYABLE;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return ANS_RETRYABLE; /* with RetryInfo; "too large" is told apart by the message */
    case GRPC_STATUS_INVALID_ARGUMENT:
        return ANS_INVALID;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return ANS_TIMEOUT;
    default:
        return ANS_OTHER;
    }
}

/* Waits until the channel is READY, at most LG_CONNECT_MS. Returns 0 or -ETIMEDOUT. */
static int grpc_wait_ready(grpc_channel *ch, grpc_completion_queue *cq)
{
    static char connect_tag;
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(LG_CONNECT_MS, GPR_TIMESPAN));
    for (;;) {
        grpc_connectivity_state st = grpc_channel_check_connectivity_state(ch, 1);
        if (st == GRPC_CHANNEL_READY)
            return 0;
        if (gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), deadline) >= 0)
            return -ETIMEDOUT;
        grpc_channel_watch_connectivity_state(ch, st, deadline, cq, &connect_tag);
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type != GRPC_OP_COMPLETE || ev.tag != &connect_tag)
            return -EIO;
    }
}

/* Starts one Export call on a free slot. Returns 0 or -EIO (the call could not be started;
 * counted as a transport error). */
static int grpc_start(lg_run *run, grpc_channel *ch, grpc_completion_queue *cq, lg_gcall *c,
                      grpc_slice method)
{
    c->entry = take_entry(run);
    lg_entry *e = &run->pool[c->entry];
    grpc_slice body = grpc_slice_from_static_buffer(e->buf, e->len);
    c->request = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    c->response = NULL;
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);
    c->details = grpc_empty_slice();
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_nanos(run->s->timeout, GPR_TIMESPAN));
    c->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                       deadline, NULL);
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->response;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    uint64_t t0 = now_ns();
    note_sent(run, t0, c->entry);
    c->t0 = t0;
    c->busy = true;
    if (c->call == NULL || grpc_call_start_batch(c->call, ops, 6, c, NULL) != GRPC_CALL_OK)
        return -EIO;
    return 0;
}

/* Frees what a finished call holds and marks its slot free. */
static void grpc_release(lg_gcall *c)
{
    if (c->call != NULL)
        grpc_call_unref(c->call);
    c->call = NULL;
    grpc_byte_buffer_destroy(c->request);
    c->request = NULL;
    if (c->response != NULL)
        grpc_byte_buffer_destroy(c->response);
    c->response = NULL;
    grpc_metadata_array_destroy(&c->initial_md);
    grpc_metadata_array_destroy(&c->trailing_md);
    grpc_slice_unref(c->details);
    c->busy = false;
}

/* The whole run over OTLP/gRPC. Returns 0, or a negative errno when the target could not be
 * reached at all (message in err). */
static int run_grpc(lg_run *run, char *err, size_t errlen)
{
    int rc = 0;
    grpc_init();
    grpc_arg args[4];
    memset(args, 0, sizeof args);
    const char *keys[4] = {GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                           GRPC_ARG_ENABLE_RETRIES, GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL};
    int vals[4] = {-1, 4 * 1024 * 1024, 0, 1};
    for (size_t i = 0; i < 4; i++) {
        args[i].type = GRPC_ARG_INTEGER;
        args[i].key = (char *)keys[i];
        args[i].value.integer = vals[i];
    }
    grpc_channel_args chargs = {4, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(run->target, creds, &chargs);
    grpc_channel_credentials_release(creds);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    size_t ncalls = (size_t)run->s->concurrency;
    lg_gcall *calls = calloc(ncalls, sizeof *calls);
    if (ch == NULL || cq == NULL || calls == NULL) {
        snprintf(err, errlen, "cannot create the gRPC channel to %s", run->target);
        rc = -ENOMEM;
        goto out_destroy_channel;
    }
    if (grpc_wait_ready(ch, cq) != 0) {
        snprintf(err, errlen, "cannot connect to %s over gRPC within %d ms", run->target,
                 LG_CONNECT_MS);
        rc = -ECONNREFUSED;
        goto out_destroy_channel;
    }
    grpc_slice method = grpc_slice_from_static_string(LG_TRACES_METHOD);

    run->start_ns = now_ns();
    run->next_due_ns = run->start_ns;
    run->stop_send_ns = run->start_ns + (uint64_t)run->s->duration;
    run->last_done_ns = run->start_ns;
    uint64_t give_up = run->stop_send_ns + (uint64_t)run->s->timeout + SN_NS_PER_SEC;
    for (;;) {
        uint64_t now = now_ns();
        for (size_t i = 0; i < ncalls && may_send(run, now); i++) {
            if (calls[i].busy)
                continue;
            if (grpc_start(run, ch, cq, &calls[i], method) != 0) {
                run->transport_errors++;
                note_done(run, calls[i].entry, calls[i].t0, ANS_OTHER, -1);
                grpc_release(&calls[i]);
            }
            now = now_ns();
        }
        if (run->inflight == 0 && !sending(run, now))
            break;
        if (now >= give_up) {
            /* Calls still out past their deadline: cancel and collect them below. */
            for (size_t i = 0; i < ncalls; i++)
                if (calls[i].busy)
                    grpc_call_cancel(calls[i].call, NULL);
            give_up = UINT64_MAX;
        }
        uint64_t wait = wait_budget(run, now);
        grpc_event ev = grpc_completion_queue_next(
            cq,
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                         gpr_time_from_nanos((int64_t)wait, GPR_TIMESPAN)),
            NULL);
        while (ev.type == GRPC_OP_COMPLETE) {
            lg_gcall *c = ev.tag;
            grpc_status_code st = ev.success ? c->status : GRPC_STATUS_UNKNOWN;
            note_done(run, c->entry, c->t0, grpc_class(st), (int)st);
            grpc_release(c);
            /* Collect whatever else is ready without waiting. */
            ev = grpc_completion_queue_next(cq, gpr_time_0(GPR_CLOCK_MONOTONIC), NULL);
        }
    }
    grpc_slice_unref(method);

out_destroy_channel:
    if (ch != NULL)
        grpc_channel_destroy(ch);
    if (cq != NULL) {
        grpc_completion_queue_shutdown(cq);
        while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(cq);
    }
    free(calls);
    grpc_shutdown();
    return rc;
}

/* ---------------------------------------------------------------- OTLP/HTTP */

typedef struct lg_hcall {
    CURL *easy;
    size_t entry;
    uint64_t t0;
    bool busy;
} lg_hcall;

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    (void)ptr;
    (void)ud;
    return size * nmemb;
}

static int http_class(long status)
{
    if (status >= 200 && status < 300)
        return ANS_OK;
    if (status == 429 || status == 502 || status == 503 || status == 504)
        return ANS_RETRYABLE;
    if (status == 400)
        return ANS_INVALID;
    if (status == 413)
        return ANS_TOO_LARGE;
    return ANS_OTHER;
}

/* The whole run over OTLP/HTTP. Returns 0, or a negative errno when curl cannot be set up or
 * not one request got an HTTP answer (message in err). */
static int run_http(lg_run *run, char *err, size_t errlen)
{
    int rc = 0;
    char url[400];
    snprintf(url, sizeof url, "http://%s/v1/traces", run->target);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return -ENOMEM;
    }
    size_t ncalls = (size_t)run->s->concurrency;
    lg_hcall *calls = calloc(ncalls, sizeof *calls);
    CURLM *multi = curl_multi_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/x-protobuf");
    struct curl_slist *h2 = headers != NULL ? curl_slist_append(headers, "Expect:") : NULL;
    if (calls == NULL || multi == NULL || h2 == NULL) {
        snprintf(err, errlen, "cannot set up libcurl");
        rc = -ENOMEM;
        goto out_cleanup;
    }
    headers = h2;
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)ncalls);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)ncalls);
    for (size_t i = 0; i < ncalls; i++) {
        CURL *e = curl_easy_init();
        if (e == NULL) {
            snprintf(err, errlen, "cannot set up libcurl");
            rc = -ENOMEM;
            goto out_cleanup;
        }
        calls[i].easy = e;
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(run->s->timeout / SN_NS_PER_MS));
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)LG_CONNECT_MS);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &calls[i]);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
    }

    run->start_ns = now_ns();
    run->next_due_ns = run->start_ns;
    run->stop_send_ns = run->start_ns + (uint64_t)run->s->duration;
    run->last_done_ns = run->start_ns;
    for (;;) {
        uint64_t now = now_ns();
        for (size_t i = 0; i < ncalls && may_send(run, now); i++) {
            lg_hcall *c = &calls[i];
            if (c->busy)
                continue;
            c->entry = take_entry(run);
            lg_entry *e = &run->pool[c->entry];
            curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, (const char *)e->buf);
            curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)e->len);
            c->t0 = now_ns();
            note_sent(run, c->t0, c->entry);
            c->busy = true;
            if (curl_multi_add_handle(multi, c->easy) != CURLM_OK) {
                run->transport_errors++;
                c->busy = false;
                note_done(run, c->entry, c->t0, ANS_OTHER, 0);
            }
            now = now_ns();
        }
        if (run->inflight == 0 && !sending(run, now))
            break;
        int running = 0;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            lg_hcall *c = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            long status = 0;
            int cls = ANS_OTHER;
            if (msg->data.result == CURLE_OK) {
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
                cls = http_class(status);
            } else if (msg->data.result == CURLE_OPERATION_TIMEDOUT) {
                cls = ANS_TIMEOUT;
            } else {
                run->transport_errors++;
                if (run->transport_errors == 1)
                    sn_log_warn("request failed",
                                SN_LOG_STR("error", curl_easy_strerror(msg->data.result)));
            }
            curl_multi_remove_handle(multi, msg->easy_handle);
            c->busy = false;
            note_done(run, c->entry, c->t0, cls, (int)status);
        }
        /* Nobody answers at all: stop sending rather than fail fast for the whole duration. */
        if (run->done >= 3 && run->transport_errors == run->done)
            run->stop_send_ns = 0;
        uint64_t wait = wait_budget(run, now_ns());
        int ms = (int)((wait + SN_NS_PER_MS - 1) / SN_NS_PER_MS);
        if (running > 0 || ms > 0)
            curl_multi_poll(multi, NULL, 0, ms, NULL);
    }
    if (run->answers[ANS_OK] + run->answers[ANS_RETRYABLE] + run->answers[ANS_INVALID] +
            run->answers[ANS_TOO_LARGE] ==
        0) {
        snprintf(err, errlen, "no HTTP answer from %s", url);
        rc = -ECONNREFUSED;
    }

out_cleanup:
    if (calls != NULL) {
        for (size_t i = 0; i < ncalls; i++) {
            if (calls[i].easy == NULL)
                continue;
            if (calls[i].busy)
                curl_multi_remove_handle(multi, calls[i].easy);
            curl_easy_cleanup(calls[i].easy);
        }
    }
    if (multi != NULL)
        curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    free(calls);
    curl_global_cleanup();
    return rc;
}

/* ---------------------------------------------------------------- setup and report */

/* Is every address `host` resolves to a loopback address? Returns 1 yes, 0 no, or a negative
 * errno when it does not resolve (message in err). */
static int is_loopback(const char *host, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(host, NULL, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "load.target: cannot resolve %s: %s", host, gai_strerror(g));
        return -EINVAL;
    }
    int loop = 1;
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            const struct sockaddr_in *in = (const void *)a->ai_addr;
            if ((ntohl(in->sin_addr.s_addr) >> 24) != 127)
                loop = 0;
        } else if (a->ai_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const void *)a->ai_addr;
            if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
                loop = 0;
        } else {
            loop = 0;
        }
    }
    freeaddrinfo(res);
    return loop;
}

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

/* Prints the report to stdout in the configured format. */
static void report(const lg_run *run)
{
    const loadgen_settings *s = run->s;
    uint64_t end = run->last_done_ns > run->start_ns ? run->last_done_ns : run->start_ns + 1;
    double secs = (double)(end - run->start_ns) / 1e9;
    double rps = (double)run->answers[ANS_OK] / secs;
    double sps = (double)run->spans_ok / secs;
    const lg_hist *h = &run->hist;
    uint64_t p50 = hist_pct(h, 50), p90 = hist_pct(h, 90), p99 = hist_pct(h, 99);
    double mean = h->n ? (double)h->sum / (double)h->n : 0.0;
    if (s->report == REPORT_JSON) {
        printf("{\"protocol\":\"%s\",\"target\":\"%s\",\"batch\":%" PRId64
               ",\"concurrency\":%" PRId64 ",\"rate\":%.1f,\"seconds\":%.3f,\"sent\":%" PRIu64
               ",\"completed\":%" PRIu64 ",\"requests_per_s\":%.1f,\"spans_per_s\":%.1f"
               ",\"spans_ok\":%" PRIu64 ",\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,"
               "\"p99\":%.3f,\"max\":%.3f,\"mean\":%.3f},\"max_schedule_lag_ms\":%.3f,"
               "\"answers\":{",
               protocol_names[s->protocol], run->target, s->batch, s->concurrency, s->rate, secs,
               run->sent, run->done, rps, sps, run->spans_ok, ms(p50), ms(p90), ms(p99), ms(h->max),
               mean / 1000.0, (double)run->max_lag_ns / 1e6);
        for (int i = 0; i < ANS_COUNT; i++)
            printf("%s\"%s\":%" PRIu64, i ? "," : "", answer_names[i], run->answers[i]);
        printf("},\"codes\":{");
        bool first = true;
        for (int i = 0; i < 600; i++) {
            if (run->codes[i] == 0)
                continue;
            printf("%s\"%d\":%" PRIu64, first ? "" : ",", i, run->codes[i]);
            first = false;
        }
        printf("},\"transport_errors\":%" PRIu64 "}\n", run->transport_errors);
        return;
    }
    printf("sentinel-loadgen: OTLP/%s to %s, %" PRId64 " spans/request, %" PRId64
           " in flight, rate %s\n",
           s->protocol == PROTO_GRPC ? "gRPC" : "HTTP", run->target, s->batch, s->concurrency,
           s->rate > 0 ? "fixed" : "as fast as possible");
    if (s->rate > 0)
        printf("  target rate      %.0f spans/s (worst schedule lag %.3f ms)\n", s->rate,
               (double)run->max_lag_ns / 1e6);
    printf("  duration         %.3f s\n", secs);
    printf("  requests         %" PRIu64 " sent, %" PRIu64 " answered\n", run->sent, run->done);
    printf("  throughput       %.1f requests/s, %.1f spans/s\n", rps, sps);
    printf("  Export latency   p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms\n", ms(p50),
           ms(p90), ms(p99), ms(h->max));
    printf("  answers         ");
    for (int i = 0; i < ANS_COUNT; i++)
        printf(" %s %" PRIu64, answer_names[i], run->answers[i]);
    printf("\n  codes           ");
    for (int i = 0; i < 600; i++)
        if (run->codes[i] != 0)
            printf(" %d:%" PRIu64, i, run->codes[i]);
    printf("\n  transport errors %" PRIu64 "\n", run->transport_errors);
}

/* Scenario mode: loads the scenario into *out, bounds the run by its duration over the speed
 * (at most 1 h), places its start at wall_ns (CLOCK_REALTIME, now), writes the labels file and
 * reads the first event. Returns 0; -EINVAL for a bad file or speed (a usage error); a negative
 * errno when the labels cannot be written or memory runs out. err names the problem. The caller
 * frees *out, run->gen and run->evbuf/evtime whatever the result. */
static int start_scenario(lg_run *run, loadgen_settings *s, sn_scenario **out, uint64_t wall_ns,
                          char *err, size_t errlen)
{
    int rc = sn_scenario_load(out, s->scenario, err, errlen);
    if (rc != 0)
        return rc == -ENOENT || rc == -EFBIG ? -EINVAL : rc;
    const sn_scenario *sc = *out;
    double wall = (double)sn_scenario_duration(sc) / (s->speed > 0.0 ? s->speed : 1.0);
    if (s->speed > 0.0 && wall > 3600.0 * (double)SN_NS_PER_SEC) {
        snprintf(err, errlen,
                 "config: scenario.speed: the scenario would take %.0f s (at most 3600); "
                 "raise --speed",
                 wall / (double)SN_NS_PER_SEC);
        return -EINVAL;
    }
    s->duration = s->speed > 0.0 ? (int64_t)wall + SN_NS_PER_SEC : 3600 * SN_NS_PER_SEC;
    run->nevbuf = (size_t)s->batch < LG_SCENARIO_BATCH ? (size_t)s->batch : LG_SCENARIO_BATCH;
    run->evbuf = calloc(run->nevbuf, sizeof *run->evbuf);
    run->evtime = calloc(run->nevbuf, sizeof *run->evtime);
    if (run->evbuf == NULL || run->evtime == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rc = sn_scenario_gen_create(&run->gen, sc);
    if (rc != 0) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    run->sim_start = sn_scenario_start(sc);
    run->wall_start = (int64_t)wall_ns;
    run->scen_mono0 = now_ns();
    if (s->labels[0] != '\0') {
        FILE *f = fopen(s->labels, "w");
        if (f == NULL) {
            rc = -errno;
            snprintf(err, errlen, "%.400s: %s", s->labels, strerror(errno));
            return rc;
        }
        int64_t offset = s->speed > 0.0 ? run->wall_start - run->sim_start : 0;
        double compress = s->speed > 0.0 ? s->speed : 1.0;
        for (size_t i = 0; i < sn_scenario_label_count(sc); i++) {
            char line[1024];
            if (sn_scenario_label_json(sc, sn_scenario_label_at(sc, i), offset, compress, line,
                                       sizeof line) > 0)
                fprintf(f, "%s\n", line);
        }
        if (ferror(f) | (fclose(f) != 0)) {
            snprintf(err, errlen, "%.400s: cannot write the labels", s->labels);
            return -EIO;
        }
    }
    run->has_pending = sn_scenario_next(run->gen, &run->pending, NULL);
    sn_log_info(
        "scenario ready", SN_LOG_STR("scenario", sn_scenario_name(sc)),
        SN_LOG_UINT("incidents", sn_scenario_label_count(sc)),
        SN_LOG_UINT("simulated_seconds", (uint64_t)(sn_scenario_duration(sc) / SN_NS_PER_SEC)),
        SN_LOG_STR("target", run->target), SN_LOG_STR("protocol", protocol_names[s->protocol]));
    return 0;
}

int main(int argc, char **argv)
{
    loadgen_settings s;
    memset(&s, 0, sizeof s);
    const sn_program_info info = {
        .name = "sentinel-loadgen",
        .version = SENTINEL_VERSION,
        .component = "loadgen",
        .summary = "send OTLP GenAI spans to a receiver at a fixed rate or as fast as it answers",
        .flags = flags,
        .nflags = sizeof flags / sizeof flags[0],
    };
    sn_cli_result res;
    int out = sn_cli_load(argc, argv, &info, descriptors,
                          sizeof descriptors / sizeof descriptors[0], &s, &res);
    if (out != SN_CLI_RUN)
        return sn_cli_exit_status(out);

    int status = 1, rc;
    char err[512] = "";
    sn_scenario *scenario = NULL;
    lg_run *run = calloc(1, sizeof *run);
    if (run == NULL) {
        sn_log_error("out of memory");
        goto out_cleanup_cli;
    }
    run->s = &s;
    if (s.target.host[0] == '\0') {
        snprintf(s.target.host, sizeof s.target.host, "127.0.0.1");
        s.target.port = s.protocol == PROTO_GRPC ? 4317 : 4318;
    }
    if (s.target.port == 0) {
        sn_log_error("config: load.target: needs a port", SN_LOG_STR("host", s.target.host));
        status = 2;
        goto out_free_run;
    }
    int lb = is_loopback(s.target.host, err, sizeof err);
    if (lb < 0 || (lb == 0 && !s.allow_remote)) {
        sn_log_error(lb < 0 ? err
                            : "config: load.target: not a loopback address (add --allow-remote "
                              "to send load over the network)",
                     SN_LOG_STR("host", s.target.host));
        status = 2;
        goto out_free_run;
    }
    sn_config_format_address(&s.target, run->target, sizeof run->target);
    if (s.rate > 0)
        run->interval_ns = (uint64_t)((double)s.batch * 1e9 / s.rate);
    if (s.rate > 0 && run->interval_ns == 0)
        run->interval_ns = 1;

    if (s.spikes > 0 && s.scenario[0] != '\0') {
        sn_log_error("config: spikes.count: spikes are injected into random load only, not "
                     "into a scenario (give the scenario incidents instead)");
        status = 2;
        goto out_free_run;
    }
    if (s.marks[0] != '\0' && s.spikes == 0) {
        sn_log_error("config: spikes.marks: needs --spikes");
        status = 2;
        goto out_free_run;
    }
    if (s.spikes > 0 && s.spike_start + (s.spikes - 1) * s.spike_interval >= s.duration) {
        sn_log_error(
            "config: load.duration: too short for the spikes (the last is due at "
            "spikes.start + (spikes.count - 1) x spikes.interval)",
            SN_LOG_INT("last_spike_ms",
                       (s.spike_start + (s.spikes - 1) * s.spike_interval) / SN_NS_PER_MS));
        status = 2;
        goto out_free_run;
    }
    run->npool =
        (size_t)s.pool > (size_t)s.concurrency ? (size_t)s.pool : (size_t)s.concurrency + 1;
    run->nspikes = (size_t)s.spikes;
    run->nwarm = s.spike_warmup > 0 ? run->nspikes : 0;
    run->pool = calloc(run->npool + run->nwarm + run->nspikes, sizeof *run->pool);
    if (run->pool == NULL) {
        sn_log_error("out of memory");
        goto out_free_run;
    }
    lg_rng rng = {(uint64_t)s.seed};
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    uint64_t wall_ns = (uint64_t)wall.tv_sec * 1000000000u + (uint64_t)wall.tv_nsec;
    if (s.labels[0] != '\0' && s.scenario[0] == '\0') {
        sn_log_error("config: scenario.labels: needs --scenario");
        status = 2;
        goto out_free_pool;
    }
    if (s.scenario[0] != '\0') {
        rc = start_scenario(run, &s, &scenario, wall_ns, err, sizeof err);
        if (rc != 0) {
            sn_log_error(err);
            status = rc == -EINVAL ? 2 : 1;
            goto out_free_pool;
        }
    }
    size_t bytes = 0, fixed_ids = 0;
    for (size_t i = 0; run->gen == NULL && i < run->npool + run->nwarm + run->nspikes; i++) {
        lg_entry_spec spec = {.nspans = (size_t)s.batch,
                              .service = (unsigned)(i % (size_t)s.services),
                              .factor = 1.0,
                              .error_rate = s.error_rate,
                              .spread = s.spread};
        char svc[32];
        if (i >= run->npool) {
            /* Spike services: warm-up calls of one model, all alike (spread 0, no errors: a
             * steady baseline that raises no alert of its own), then one slow call, so the
             * latency spike is the only thing that changes. */
            size_t k = i - run->npool, sp = k < run->nwarm ? k : k - run->nwarm;
            spike_service(svc, sizeof svc, sp);
            spec.svc_name = svc;
            spec.service = (unsigned)sp;
            spec.model = &models[sp % LG_NMODELS];
            spec.error_rate = 0.0;
            spec.spread = 0.0;
            spec.nspans = k < run->nwarm ? (size_t)s.spike_warmup : 1;
            spec.factor = k < run->nwarm ? 1.0 : s.spike_factor;
        }
        if (make_entry(&run->pool[i], &spec, &rng, wall_ns) != 0) {
            sn_log_error("out of memory while encoding the request pool");
            goto out_free_pool;
        }
        if (i >= run->npool)
            continue;
        bytes += run->pool[i].len;
        for (size_t j = 0; j < run->pool[i].nspans; j++)
            fixed_ids += run->pool[i].id_off[j] == UINT32_MAX;
    }
    /* The id counter starts from the seed's stream, so runs with different seeds differ. */
    run->id_counter = rng_next(&rng) >> 16;
    if (run->gen == NULL)
        sn_log_info("request pool ready", SN_LOG_UINT("requests", run->npool),
                    SN_LOG_UINT("spans_per_request", (uint64_t)s.batch),
                    SN_LOG_UINT("mean_request_bytes", bytes / run->npool),
                    /* spans whose ids could not be found in the encoding repeat on every send */
                    SN_LOG_UINT("spans_with_fixed_ids", fixed_ids),
                    SN_LOG_STR("target", run->target),
                    SN_LOG_STR("protocol", protocol_names[s.protocol]));

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (s.marks[0] != '\0') {
        run->marks = fopen(s.marks, "w");
        if (run->marks == NULL) {
            sn_log_error("spikes.marks: cannot open", SN_LOG_STR("file", s.marks),
                         SN_LOG_ERRNO(-errno));
            goto out_free_pool;
        }
    }
    rc = s.protocol == PROTO_GRPC ? run_grpc(run, err, sizeof err) : run_http(run, err, sizeof err);
    if (rc != 0) {
        sn_log_error(err, SN_LOG_ERRNO(rc));
        goto out_free_pool;
    }
    if (run->gen != NULL)
        sn_log_info("scenario sent", SN_LOG_STR("scenario", sn_scenario_name(scenario)),
                    SN_LOG_UINT("events", run->events_sent),
                    SN_LOG_UINT("events_left", run->has_pending ? 1 : 0));
    report(run);
    fflush(stdout);
    status = run->answers[ANS_OK] > 0 ? 0 : 1;
    if (status != 0)
        sn_log_error("no request was accepted");

    if (run->nspikes > 0)
        sn_log_info(
            "spikes sent", SN_LOG_UINT("spikes", run->nspikes),
            SN_LOG_UINT("sent", run->next_extra > run->nwarm ? run->next_extra - run->nwarm : 0),
            SN_LOG_UINT("marks", run->marks_written));

out_free_pool:
    if (run->marks != NULL && (ferror(run->marks) | (fclose(run->marks) != 0))) {
        sn_log_error("spikes.marks: cannot write", SN_LOG_STR("file", s.marks));
        status = 1;
    }
    for (size_t i = 0; i < run->npool + run->nwarm + run->nspikes; i++) {
        free(run->pool[i].buf);
        free(run->pool[i].id_off);
    }
    free(run->pool);
    free(run->evbuf);
    free(run->evtime);
    sn_scenario_gen_destroy(run->gen);
    sn_scenario_destroy(scenario);
out_free_run:
    free(run);
out_cleanup_cli:
    sn_cli_result_cleanup(&res);
    return status;
}
