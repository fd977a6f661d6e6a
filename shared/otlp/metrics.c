/*
 * metrics.c -- streaming OTLP metrics decoder on nanopb callbacks (see metrics.h), and the
 * GenAI metric rules shared with metrics_json.c.
 *
 * The shape of the walk (-> is a nanopb callback, => a field read with nanopb's field API):
 *
 *   ExportMetricsServiceRequest -> ResourceMetrics -> Resource -> KeyValue (resource attribute)
 *                                                  -> ScopeMetrics -> Metric -> name, unit
 *                                                                            ->
 * (Exponential)Histogram
 *                                                                               -> data point
 *                                                                                  -> KeyValue
 *   KeyValue => the shared attribute reader of otlp/pbwire.h (the trace decoder's), here with
 *               arrays and key/value lists skipped and long strings cut bytewise
 *
 * The same three facts about nanopb callbacks as in traces.c shape the code (a callback is not
 * told its wire type, so it checks that its substream points into the request; protobuf does
 * not order fields; a 0 tag stops nanopb early). Field order matters at three levels, and each
 * is read in two passes over the same bytes rather than by buffering:
 *   - ResourceMetrics: the resource, then its scopes (a second pass only when the scopes came
 *     first, as in traces.c);
 *   - Metric: name and unit first (data skipped), then, only for a GenAI metric, the data;
 *   - Histogram: the temporality first (points skipped), then the points -- encoders write the
 *     points (field 1) before the temporality (field 2), so this pass is the usual case.
 * A skipped length-delimited field costs nanopb a pointer move, so the extra passes are cheap.
 */
#include "otlp/metrics.h"

#include "otlp/pbwire.h"

#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb.h"
#include "opentelemetry/proto/common/v1/common.pb.h"
#include "opentelemetry/proto/metrics/v1/metrics.pb.h"
#include "opentelemetry/proto/resource/v1/resource.pb.h"

#include <math.h>
#include <pb_decode.h>
#include <stdio.h>
#include <string.h>

#if defined(PB_FIELD_32BIT) || defined(PB_NO_ERRMSG) || defined(PB_BUFFER_ONLY)
#error "libprotobuf-nanopb.a is built without PB_FIELD_32BIT, PB_NO_ERRMSG and PB_BUFFER_ONLY"
#endif

#define NAME_MAX_LEN 128 /* metric names longer than this are no GenAI metric */
#define UNIT_MAX_LEN 32

typedef enum attr_target { TARGET_RESOURCE, TARGET_POINT } attr_target;

/* ---------------------------------------------------------------- shared rules */

sn_otlp_genai_metric sn_otlp_genai_metric_lookup(const char *name, size_t len)
{
    static const struct {
        const char *name;
        sn_otlp_genai_metric m;
    } known[] = {
        {"gen_ai.client.token.usage", SN_OTLP_GENAI_TOKEN_USAGE},
        {"gen_ai.client.operation.duration", SN_OTLP_GENAI_CLIENT_DURATION},
        {"gen_ai.client.operation.time_to_first_chunk", SN_OTLP_GENAI_CLIENT_TTFC},
        {"gen_ai.server.request.duration", SN_OTLP_GENAI_SERVER_DURATION},
        {"gen_ai.server.time_to_first_token", SN_OTLP_GENAI_SERVER_TTFT},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strlen(known[i].name) == len && memcmp(known[i].name, name, len) == 0)
            return known[i].m;
    return SN_OTLP_GENAI_NONE;
}

bool sn_otlp_genai_metric_scale(sn_otlp_genai_metric m, const char *unit, size_t len, double *scale)
{
    static const struct {
        const char *unit;
        double to_ms;
    } units[] = {{"", 1000.0}, {"s", 1000.0}, {"ms", 1.0}, {"us", 1e-3}, {"ns", 1e-6}};
    if (m == SN_OTLP_GENAI_TOKEN_USAGE) {
        *scale = 1.0; /* tokens whatever the unit says ({token} by the conventions) */
        return true;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strlen(units[i].unit) == len && memcmp(units[i].unit, unit, len) == 0) {
            *scale = units[i].to_ms;
            return true;
        }
    return false;
}

/* FNV-1a over bytes, continuing from h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* A 64-bit finaliser (splitmix64) so that sums of hashes stay well spread. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t sn_otlp_attr_hash(const char *key, size_t keylen, const sn_attr_value *v)
{
    uint64_t h = fnv(0xcbf29ce484222325ULL, key, keylen);
    uint8_t t = (uint8_t)v->type;
    h = fnv(h, &t, 1);
    switch (v->type) {
    case SN_ATTR_STRING:
    case SN_ATTR_BYTES:
        h = fnv(h, v->str, v->len);
        break;
    case SN_ATTR_INT:
        h = fnv(h, &v->i, sizeof v->i);
        break;
    case SN_ATTR_DOUBLE:
        h = fnv(h, &v->d, sizeof v->d);
        break;
    case SN_ATTR_BOOL: {
        uint8_t b = v->b;
        h = fnv(h, &b, 1);
        break;
    }
    }
    return mix(h);
}

uint64_t sn_otlp_metric_name_hash(const char *name, size_t len)
{
    return mix(fnv(0x84222325cbf29ce4ULL, name, len));
}

void sn_otlp_metric_point_begin(sn_otlp_metric_point *p, const sn_event *tmpl)
{
    p->ev = *tmpl;
    p->token_type = 0;
    p->server_address[0] = '\0';
    p->attr_sum = 0;
}

/* True when v is the string lit. */
static bool value_is(const sn_attr_value *v, const char *lit)
{
    return v->type == SN_ATTR_STRING && v->len == strlen(lit) && memcmp(v->str, lit, v->len) == 0;
}

void sn_otlp_metric_point_attr(sn_otlp_metric_point *p, const char *key, size_t keylen,
                               const sn_attr_value *v)
{
    p->attr_sum += sn_otlp_attr_hash(key, keylen, v);
    if (keylen == 17 && memcmp(key, "gen_ai.token.type", 17) == 0) {
        /* input|output; the old values prompt|completion are read the same way */
        if (value_is(v, "input") || value_is(v, "prompt"))
            p->token_type = 1;
        else if (value_is(v, "output") || value_is(v, "completion"))
            p->token_type = 2;
        return;
    }
    if (keylen == 14 && memcmp(key, "server.address", 14) == 0) {
        if (v->type == SN_ATTR_STRING)
            sn_copy_truncated(p->server_address, sizeof p->server_address, v->str, v->len);
        return;
    }
    /* Model, provider (old names included), operation and error.type follow the span rules. */
    sn_genai_span_attr(&p->ev, key, keylen, v);
}

sn_otlp_point_outcome sn_otlp_metric_point_finish(const sn_otlp_metric_point *p,
                                                  sn_otlp_genai_metric m, double scale,
                                                  uint64_t series_seed,
                                                  const sn_otlp_metric_values *v,
                                                  sn_metric_fact *out, sn_metric_reject *why)
{
    if (v->flags & 1u) /* DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK: a staleness marker */
        return SN_OTLP_POINT_STALE;
    if (v->temporality != SN_METRIC_TEMPORALITY_DELTA &&
        v->temporality != SN_METRIC_TEMPORALITY_CUMULATIVE) {
        *why = SN_METRIC_REJECT_TEMPORALITY;
        return SN_OTLP_POINT_REJECTED;
    }
    if (v->start_unix_nano > (uint64_t)INT64_MAX || v->end_unix_nano > (uint64_t)INT64_MAX ||
        (v->start_unix_nano != 0 && v->end_unix_nano < v->start_unix_nano)) {
        *why = SN_METRIC_REJECT_TIME;
        return SN_OTLP_POINT_REJECTED;
    }
    sn_metric metric;
    switch (m) {
    case SN_OTLP_GENAI_TOKEN_USAGE:
        if (p->token_type == 0) {
            *why = SN_METRIC_REJECT_TOKEN_TYPE;
            return SN_OTLP_POINT_REJECTED;
        }
        metric = p->token_type == 1 ? SN_METRIC_INPUT_TOKENS : SN_METRIC_OUTPUT_TOKENS;
        break;
    case SN_OTLP_GENAI_CLIENT_DURATION:
    case SN_OTLP_GENAI_SERVER_DURATION:
        metric = SN_METRIC_LATENCY_MS;
        break;
    case SN_OTLP_GENAI_CLIENT_TTFC:
    case SN_OTLP_GENAI_SERVER_TTFT:
        metric = SN_METRIC_TTFT_MS;
        break;
    default:
        *why = SN_METRIC_REJECT_UNIT; /* not reached: callers pass GenAI metrics only */
        return SN_OTLP_POINT_REJECTED;
    }
    /* Every GenAI histogram records non-negative values: a negative or non-finite aggregate is
     * not a measurement. */
    if ((v->has_sum && !(isfinite(v->sum) && v->sum >= 0)) ||
        (v->has_min && !(isfinite(v->min) && v->min >= 0)) ||
        (v->has_max && !(isfinite(v->max) && v->max >= 0))) {
        *why = SN_METRIC_REJECT_VALUE;
        return SN_OTLP_POINT_REJECTED;
    }

    memset(out, 0, sizeof *out);
    sn_copy_truncated(out->service, sizeof out->service, p->ev.service, strlen(p->ev.service));
    sn_copy_truncated(out->model, sizeof out->model, p->ev.model, strlen(p->ev.model));
    sn_copy_truncated(out->provider, sizeof out->provider, p->ev.provider, strlen(p->ev.provider));
    sn_genai_normalize_provider(out->provider, sizeof out->provider);
    sn_copy_truncated(out->operation, sizeof out->operation, p->ev.operation,
                      strlen(p->ev.operation));
    sn_copy_truncated(out->region, sizeof out->region, p->ev.region, strlen(p->ev.region));
    sn_copy_truncated(out->error_type, sizeof out->error_type, p->ev.error_type,
                      strlen(p->ev.error_type));
    sn_copy_truncated(out->server_address, sizeof out->server_address, p->server_address,
                      strlen(p->server_address));
    out->metric = metric;
    out->temporality = (sn_metric_temporality)v->temporality;
    out->count = v->count;
    out->sum = v->has_sum ? v->sum * scale : NAN;
    out->min = v->has_min ? v->min * scale : NAN;
    out->max = v->has_max ? v->max * scale : NAN;
    out->start_unix_nano = (int64_t)v->start_unix_nano;
    out->end_unix_nano = (int64_t)v->end_unix_nano;
    out->series_id = mix(series_seed + p->attr_sum);
    return SN_OTLP_POINT_FACT;
}

const char *sn_metric_reject_name(sn_metric_reject r)
{
    switch (r) {
    case SN_METRIC_REJECT_TIME:
        return "time";
    case SN_METRIC_REJECT_TOKEN_TYPE:
        return "token_type";
    case SN_METRIC_REJECT_UNIT:
        return "unit";
    case SN_METRIC_REJECT_VALUE:
        return "value";
    case SN_METRIC_REJECT_TEMPORALITY:
        return "temporality";
    case SN_METRIC_REJECT_COUNT:
        break;
    }
    return "unknown";
}

/* ---------------------------------------------------------------- the protobuf walk */

/* One decode call's state; lives on the caller's stack. */
typedef struct decoder {
    const uint8_t *buf; /* the request, to tell length-delimited fields from scalars */
    const uint8_t *end;
    sn_otlp_metric_fn fn;
    void *ud;
    sn_otlp_metric_stats *st;

    /* ResourceMetrics level */
    sn_event tmpl;        /* resource attributes applied to an empty event */
    uint64_t res_sum;     /* sum of the resource attributes' hashes */
    bool resource_seen;   /* the resource has been read in this ResourceMetrics */
    bool scopes_deferred; /* scope_metrics came before the resource: read them in pass 2 */
    bool scopes_pass2;

    /* Metric level */
    char name[NAME_MAX_LEN];
    size_t namelen;
    bool name_long;
    char unit[UNIT_MAX_LEN];
    size_t unitlen;
    bool unit_long;
    sn_otlp_genai_metric kind;
    double scale;
    bool unit_ok;
    uint64_t seed;   /* name hash + resource hashes */
    int temporality; /* of the histogram being read */
    bool hist_seen;  /* the metric had a histogram or exponential histogram */

    /* Point level */
    sn_otlp_metric_point pt;

    /* KeyValue level */
    attr_target target;
    sn_pbw_kv kv; /* the attribute reader: arrays and key/value lists skipped, counted */

    /* The first failure: what, where, and the byte offset when known. */
    const char *fail;
    const char *where;
    long fail_at;
} decoder;

/* Records the first failure (the innermost). Always returns false, for `return fail(...)`. */
static bool fail(decoder *d, const pb_istream_t *s, const char *where, const char *what)
{
    if (d->fail)
        return false;
    d->fail = what;
    d->where = where;
    const uint8_t *p = (const uint8_t *)s->state;
    d->fail_at = (p >= d->buf && p <= d->end) ? (long)(p - d->buf) : -1;
    return false;
}

/* nanopb's error strings, said in the terms of the protobuf encoding. */
static const char *explain(const char *nanopb_msg)
{
    static const struct {
        const char *from, *to;
    } map[] = {
        {"end-of-stream", "truncated message"},
        {"io error", "truncated message"},
        {"parent stream too short", "length runs past the end of its message"},
        {"varint overflow", "varint too long or out of range"},
        {"invalid wire_type", "invalid wire type"},
        {"wrong wire type", "wrong wire type for a known field"},
        {"string overflow", "length too large"},
        {"zero tag", "field number 0"},
    };
    if (nanopb_msg == NULL)
        return "malformed";
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(nanopb_msg, map[i].from) == 0)
            return map[i].to;
    return nanopb_msg;
}

/* True when a callback's substream is a length-delimited field (it reads the request buffer
 * itself); false, failing the decode, when nanopb handed it a scalar copied to its stack. */
static bool wire_is_len(decoder *d, const pb_istream_t *s, const char *where)
{
    const uint8_t *p = (const uint8_t *)s->state;
    if (p >= d->buf && p <= d->end)
        return true;
    if (!d->fail) {
        d->fail = "wrong wire type (expected a length-delimited field)";
        d->where = where;
        d->fail_at = -1;
    }
    return false;
}

/* Decodes one submessage from its whole substream with the callbacks already set in msg.
 * Fails on malformed input or when a 0 tag stopped nanopb before the end. */
static bool decode_sub(decoder *d, pb_istream_t *s, const pb_msgdesc_t *fields, void *msg,
                       const char *where)
{
    if (!pb_decode_ex(s, fields, msg, PB_DECODE_NOINIT))
        return fail(d, s, where, explain(PB_GET_ERROR(s)));
    if (s->bytes_left != 0)
        return fail(d, s, where, "field number 0");
    return true;
}

/* Hands one attribute value to the resource template or the current point. */
static void deliver(void *ud, const char *key, size_t keylen, const sn_attr_value *v)
{
    decoder *d = ud;
    if (d->target == TARGET_RESOURCE) {
        sn_genai_resource_attr(&d->tmpl, key, keylen, v);
        d->res_sum += sn_otlp_attr_hash(key, keylen, v);
    } else {
        sn_otlp_metric_point_attr(&d->pt, key, keylen, v);
    }
}

/* One KeyValue of a resource or a data point (d->target says which), read by the shared
 * attribute reader (otlp/pbwire.h) straight from the request bytes; nanopb skips them after. */
static bool on_attribute(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "attribute"))
        return false;
    if (sn_pbw_kv_read(&d->kv, sn_pbw_init((const uint8_t *)s->state, s->bytes_left)))
        return true;
    if (!d->fail) {
        d->fail = d->kv.what;
        d->where = d->kv.where;
        d->fail_at = (long)(d->kv.at - d->buf);
    }
    return false;
}

/* Counts a refused point. */
static void reject(decoder *d, sn_metric_reject why)
{
    d->st->rejected++;
    d->st->rejected_by[why]++;
}

/* Finishes one point read into d->pt and v: a fact for the callback, or counted. */
static void finish_point(decoder *d, const sn_otlp_metric_values *v)
{
    sn_metric_fact f;
    sn_metric_reject why = SN_METRIC_REJECT_TIME;
    switch (sn_otlp_metric_point_finish(&d->pt, d->kind, d->scale, d->seed, v, &f, &why)) {
    case SN_OTLP_POINT_FACT:
        d->st->facts++;
        if (d->fn)
            d->fn(&f, d->ud);
        break;
    case SN_OTLP_POINT_STALE:
        d->st->stale_points++;
        break;
    case SN_OTLP_POINT_REJECTED:
        reject(d, why);
        break;
    }
}

/* Starts a point: counted, and attributes routed to it. */
static void begin_point(decoder *d)
{
    d->st->data_points++;
    sn_otlp_metric_point_begin(&d->pt, &d->tmpl);
    d->target = TARGET_POINT;
}

/* One HistogramDataPoint. */
static bool on_hist_point(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "data point"))
        return false;
    begin_point(d);
    opentelemetry_proto_metrics_v1_HistogramDataPoint p =
        opentelemetry_proto_metrics_v1_HistogramDataPoint_init_zero;
    p.attributes.funcs.decode = on_attribute;
    p.attributes.arg = d;
    if (!decode_sub(d, s, opentelemetry_proto_metrics_v1_HistogramDataPoint_fields, &p,
                    "data point"))
        return false;
    if (!d->unit_ok) {
        reject(d, SN_METRIC_REJECT_UNIT);
        return true;
    }
    sn_otlp_metric_values v = {
        .start_unix_nano = p.start_time_unix_nano,
        .end_unix_nano = p.time_unix_nano,
        .count = p.count,
        .has_sum = p.which__sum != 0,
        .sum = p._sum.sum,
        .has_min = p.which__min != 0,
        .min = p._min.min,
        .has_max = p.which__max != 0,
        .max = p._max.max,
        .flags = p.flags,
        .temporality = d->temporality,
    };
    finish_point(d, &v);
    return true;
}

/* One ExponentialHistogramDataPoint: count, sum, min and max as for a histogram. */
static bool on_exp_point(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "data point"))
        return false;
    begin_point(d);
    opentelemetry_proto_metrics_v1_ExponentialHistogramDataPoint p =
        opentelemetry_proto_metrics_v1_ExponentialHistogramDataPoint_init_zero;
    p.attributes.funcs.decode = on_attribute;
    p.attributes.arg = d;
    if (!decode_sub(d, s, opentelemetry_proto_metrics_v1_ExponentialHistogramDataPoint_fields, &p,
                    "data point"))
        return false;
    if (!d->unit_ok) {
        reject(d, SN_METRIC_REJECT_UNIT);
        return true;
    }
    sn_otlp_metric_values v = {
        .start_unix_nano = p.start_time_unix_nano,
        .end_unix_nano = p.time_unix_nano,
        .count = p.count,
        .has_sum = p.which__sum != 0,
        .sum = p._sum.sum,
        .has_min = p.which__min != 0,
        .min = p._min.min,
        .has_max = p.which__max != 0,
        .max = p._max.max,
        .flags = p.flags,
        .temporality = d->temporality,
    };
    finish_point(d, &v);
    return true;
}

/* Metric.histogram: temporality first (points skipped), then the points. */
static bool on_histogram(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "histogram"))
        return false;
    d->hist_seen = true;
    pb_istream_t again = *s;
    opentelemetry_proto_metrics_v1_Histogram h = opentelemetry_proto_metrics_v1_Histogram_init_zero;
    if (!decode_sub(d, s, opentelemetry_proto_metrics_v1_Histogram_fields, &h, "histogram"))
        return false;
    d->temporality = (int)h.aggregation_temporality;
    h.data_points.funcs.decode = on_hist_point;
    h.data_points.arg = d;
    return decode_sub(d, &again, opentelemetry_proto_metrics_v1_Histogram_fields, &h, "histogram");
}

/* Metric.exponential_histogram: as a histogram. */
static bool on_exp_histogram(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "exponential histogram"))
        return false;
    d->hist_seen = true;
    pb_istream_t again = *s;
    opentelemetry_proto_metrics_v1_ExponentialHistogram h =
        opentelemetry_proto_metrics_v1_ExponentialHistogram_init_zero;
    if (!decode_sub(d, s, opentelemetry_proto_metrics_v1_ExponentialHistogram_fields, &h,
                    "exponential histogram"))
        return false;
    d->temporality = (int)h.aggregation_temporality;
    h.data_points.funcs.decode = on_exp_point;
    h.data_points.arg = d;
    return decode_sub(d, &again, opentelemetry_proto_metrics_v1_ExponentialHistogram_fields, &h,
                      "exponential histogram");
}

/* Reads a short string field into buf (cap bytes); *too_long when it does not fit. */
static bool read_short(decoder *d, pb_istream_t *s, char *buf, size_t cap, size_t *len,
                       bool *too_long, const char *where)
{
    if (!wire_is_len(d, s, where))
        return false;
    size_t n = s->bytes_left;
    *too_long = n >= cap;
    if (*too_long) {
        *len = 0;
        return true; /* nanopb skips the unread rest */
    }
    if (!pb_read(s, (pb_byte_t *)buf, n))
        return fail(d, s, where, explain(PB_GET_ERROR(s)));
    buf[n] = '\0';
    *len = n;
    return true;
}

static bool on_metric_name(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    return read_short(d, s, d->name, sizeof d->name, &d->namelen, &d->name_long, "metric name");
}

static bool on_metric_unit(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    return read_short(d, s, d->unit, sizeof d->unit, &d->unitlen, &d->unit_long, "metric unit");
}

/* One Metric: name and unit (pass 1), then a GenAI histogram's points (pass 2). */
static bool on_metric(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "metric"))
        return false;
    d->st->metrics++;
    d->namelen = d->unitlen = 0;
    d->name_long = d->unit_long = false;
    pb_istream_t again = *s;
    opentelemetry_proto_metrics_v1_Metric m = opentelemetry_proto_metrics_v1_Metric_init_zero;
    m.name.funcs.decode = on_metric_name;
    m.name.arg = d;
    m.unit.funcs.decode = on_metric_unit;
    m.unit.arg = d;
    if (!decode_sub(d, s, opentelemetry_proto_metrics_v1_Metric_fields, &m, "metric"))
        return false;

    d->kind = d->name_long ? SN_OTLP_GENAI_NONE : sn_otlp_genai_metric_lookup(d->name, d->namelen);
    if (d->kind == SN_OTLP_GENAI_NONE) {
        d->st->metrics_skipped++;
        return true;
    }
    d->unit_ok =
        !d->unit_long && sn_otlp_genai_metric_scale(d->kind, d->unit, d->unitlen, &d->scale);
    d->seed = sn_otlp_metric_name_hash(d->name, d->namelen) + d->res_sum;

    /* Pass 2: the data. A GenAI metric that is not a histogram has nothing read here. */
    memset(&m, 0, sizeof m);
    m.histogram.funcs.decode = on_histogram;
    m.histogram.arg = d;
    m.exponential_histogram.funcs.decode = on_exp_histogram;
    m.exponential_histogram.arg = d;
    d->hist_seen = false;
    if (!decode_sub(d, &again, opentelemetry_proto_metrics_v1_Metric_fields, &m, "metric"))
        return false;
    if (!d->hist_seen)
        d->st->metrics_skipped++;
    return true;
}

/* One ScopeMetrics: its metrics. Skipped (and read in pass 2) while the resource is unknown. */
static bool on_scope_metrics(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "scope_metrics"))
        return false;
    if (!d->scopes_pass2 && (!d->resource_seen || d->scopes_deferred)) {
        d->scopes_deferred = true;
        return true;
    }
    d->st->scope_metrics++;
    opentelemetry_proto_metrics_v1_ScopeMetrics sm =
        opentelemetry_proto_metrics_v1_ScopeMetrics_init_zero;
    sm.metrics.funcs.decode = on_metric;
    sm.metrics.arg = d;
    return decode_sub(d, s, opentelemetry_proto_metrics_v1_ScopeMetrics_fields, &sm,
                      "scope_metrics");
}

/* ResourceMetrics.resource: its attributes fill the template event and the series seed. */
static bool on_resource(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "resource"))
        return false;
    opentelemetry_proto_resource_v1_Resource r = opentelemetry_proto_resource_v1_Resource_init_zero;
    r.attributes.funcs.decode = on_attribute;
    r.attributes.arg = d;
    d->target = TARGET_RESOURCE;
    if (!decode_sub(d, s, opentelemetry_proto_resource_v1_Resource_fields, &r, "resource"))
        return false;
    d->resource_seen = true;
    return true;
}

/* One ResourceMetrics: the resource first, then its scopes (a second pass when the scopes came
 * first on the wire). */
static bool on_resource_metrics(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "resource_metrics"))
        return false;
    d->st->resource_metrics++;
    sn_event_init(&d->tmpl);
    d->res_sum = 0;
    d->resource_seen = false;
    d->scopes_deferred = false;
    d->scopes_pass2 = false;

    pb_istream_t again = *s;
    opentelemetry_proto_metrics_v1_ResourceMetrics rm =
        opentelemetry_proto_metrics_v1_ResourceMetrics_init_zero;
    rm.resource.funcs.decode = on_resource;
    rm.resource.arg = d;
    rm.scope_metrics.funcs.decode = on_scope_metrics;
    rm.scope_metrics.arg = d;
    if (!decode_sub(d, s, opentelemetry_proto_metrics_v1_ResourceMetrics_fields, &rm,
                    "resource_metrics"))
        return false;
    if (!d->scopes_deferred)
        return true;
    rm.resource.funcs.decode = NULL; /* pass 2: the scopes only */
    d->scopes_pass2 = true;
    return decode_sub(d, &again, opentelemetry_proto_metrics_v1_ResourceMetrics_fields, &rm,
                      "resource_metrics");
}

int sn_otlp_decode_metrics(const uint8_t *buf, size_t len, sn_otlp_metric_fn fn, void *ud,
                           sn_otlp_metric_stats *stats, char *err, size_t errsize)
{
    static const uint8_t empty[1];
    sn_otlp_metric_stats scratch;
    decoder d;
    memset(&d, 0, sizeof(d));
    if (!buf)
        buf = empty; /* len is 0 then; the range checks need a real pointer */
    d.buf = buf;
    d.end = buf + len;
    d.fn = fn;
    d.ud = ud;
    d.st = stats ? stats : &scratch;
    memset(d.st, 0, sizeof(*d.st));
    d.kv.deliver = deliver;
    d.kv.ud = &d;
    d.kv.keys_skipped = &d.st->keys_skipped;
    d.kv.values_truncated = &d.st->values_truncated;
    d.kv.values_ignored = &d.st->values_ignored;

    pb_istream_t s = pb_istream_from_buffer(buf, len);
    opentelemetry_proto_collector_metrics_v1_ExportMetricsServiceRequest req =
        opentelemetry_proto_collector_metrics_v1_ExportMetricsServiceRequest_init_zero;
    req.resource_metrics.funcs.decode = on_resource_metrics;
    req.resource_metrics.arg = &d;
    if (decode_sub(&d, &s,
                   opentelemetry_proto_collector_metrics_v1_ExportMetricsServiceRequest_fields,
                   &req, "request"))
        return 0;

    if (err && errsize > 0) {
        if (d.fail_at >= 0)
            snprintf(err, errsize, "malformed OTLP metrics request: %s: %s (near byte %ld)",
                     d.where, d.fail, d.fail_at);
        else
            snprintf(err, errsize, "malformed OTLP metrics request: %s: %s", d.where, d.fail);
    }
    return -1;
}
