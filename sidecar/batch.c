/*
 * batch.c -- sentinel.v1 Batch / IngestRequest encoding on nanopb, and journal records (see
 * batch.h and docs/sidecar.md, "Shipping to the aggregator").
 *
 * The repeated fields and the sidecar id are nanopb encode callbacks over the caller's arrays:
 * each event or alert is converted into a fixed-size generated struct on the stack and written
 * as a submessage, so no tree of messages is ever built. Encoding a batch runs the callbacks
 * twice (pb_get_encoded_size, then the real pass) into a buffer of exactly the right size.
 */
#include "batch.h"

#include "sentinel/v1/sentinel.pb.h"

#include <errno.h>
#include <math.h>
#include <pb_decode.h>
#include <pb_encode.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_c_literalCompressionMode (a parameter value only) */
#include <zstd.h>
#include <zstd_errors.h>

/* Same nanopb build settings as Debian's libprotobuf-nanopb.a (see proto/CMakeLists.txt). */
#if defined(PB_FIELD_32BIT) || defined(PB_NO_ERRMSG) || defined(PB_BUFFER_ONLY)
#error "libprotobuf-nanopb.a is built without PB_FIELD_32BIT, PB_NO_ERRMSG and PB_BUFFER_ONLY"
#endif

/* The generated strings must hold event.h's and alert.h's strings whole. */
_Static_assert(sizeof(((sentinel_v1_LlmEvent *)0)->service) == SN_NAME_MAX, "service size");
_Static_assert(sizeof(((sentinel_v1_LlmEvent *)0)->provider) == SN_SHORT_MAX, "provider size");
_Static_assert(sizeof(((sentinel_v1_LocalAlert *)0)->alert_id) == SN_ALERT_ID_LEN + 1, "id size");
_Static_assert(sizeof(((sentinel_v1_LocalAlert *)0)->region) == SN_SHORT_MAX, "region size");
/* One event in a record: tag (1 byte) + length (2 bytes, < 16384) + the message. */
_Static_assert(sentinel_v1_LlmEvent_size < 16384, "event length takes two varint bytes");
_Static_assert(SN_BATCH_FEATURE_GROUPS == sentinel_v1_Feature_FEATURE_GROUPS, "feature bit");
_Static_assert(SN_NAME_MAX <= 256 && SN_SHORT_MAX <= 256, "sn_batch_grouper.len holds a length");
/* A group's short strings (region, version, pod) are written with a one-byte length, the service
 * with at most two (SN_GROUP_RESOURCE_MAX, write_group_flat). */
_Static_assert(SN_SHORT_MAX <= 128 && SN_NAME_MAX <= 16384, "resource string lengths");
_Static_assert(sentinel_v1_LlmAggregate_size < 16384, "aggregate length takes two varint bytes");
#define SN_RECORD_PER_EVENT (sentinel_v1_LlmEvent_size + 3u)

struct sn_batch_encoder {
    sn_batch_config cfg;
    ZSTD_CCtx *zctx; /* NULL when zstd_level is 0 */
    uint8_t *batch_buf;
    size_t batch_cap;
    /* The IngestRequest; compressed, zstd writes the payload into it straight after room for
     * the envelope's fields (ENVELOPE_MAX), which go in front of it (no second buffer). */
    uint8_t *req_buf;
    size_t req_cap;
};

/* The IngestRequest's fields before the payload's bytes: compression (tag and a varint enum),
 * uncompressed_size (tag, varint), the payload's tag and length (varint). */
#define ENVELOPE_MAX (1u + 10u + 1u + 10u + 1u + 10u)

/* What the events and alerts callbacks iterate. */
typedef struct sn_items {
    const sn_event *events;
    size_t n_events;
    const uint8_t *records; /* already-encoded events entries, written as they are */
    size_t records_len;
    bool groups; /* records' groups go as they are; false: as flat events (write_records) */
    const sn_local_alert *alerts;
    size_t n_alerts;
    const sn_aggregate *aggregates;
    size_t n_aggregates;
} sn_items;

/* What the event decode callback fills. */
typedef struct sn_record_sink {
    sn_event *events;
    size_t cap;
    size_t n;
    bool overflow;
    const char *why;     /* a static reason when a decoded event is invalid */
    size_t n_aggregates; /* aggregates counted by the scan */
    bool scan;           /* events are checked into events[0] and counted, not kept */
} sn_record_sink;

typedef struct sn_bytes {
    const uint8_t *data;
    size_t len;
} sn_bytes;

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

/* Copies a NUL-terminated field of at most dstsize-1 bytes (src need not be terminated). */
static void copy_str(char *dst, size_t dstsize, const char *src, size_t srcsize)
{
    size_t n = strnlen(src, srcsize < dstsize ? srcsize : dstsize - 1);
    if (n > dstsize - 1)
        n = dstsize - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v);

/* ---- sn_event <-> LlmEvent ---------------------------------------------------------------- */

#define SET_COUNT(m, ev, name)                                                                     \
    do {                                                                                           \
        if ((ev)->name >= 0) {                                                                     \
            (m)->which__##name = sentinel_v1_LlmEvent_##name##_tag;                                \
            (m)->_##name.name = (ev)->name;                                                        \
        }                                                                                          \
    } while (0)
#define SET_REAL(m, ev, name)                                                                      \
    do {                                                                                           \
        if (isfinite((ev)->name) && (ev)->name >= 0.0) {                                           \
            (m)->which__##name = sentinel_v1_LlmEvent_##name##_tag;                                \
            (m)->_##name.name = (ev)->name;                                                        \
        }                                                                                          \
    } while (0)
#define STR_FIELD(m, ev, name) copy_str((m)->name, sizeof(m)->name, (ev)->name, sizeof(ev)->name)

static void event_to_pb(sentinel_v1_LlmEvent *m, const sn_event *ev)
{
    memset(m, 0, sizeof *m);
    STR_FIELD(m, ev, service);
    STR_FIELD(m, ev, model);
    STR_FIELD(m, ev, provider);
    STR_FIELD(m, ev, operation);
    STR_FIELD(m, ev, region);
    STR_FIELD(m, ev, service_version);
    STR_FIELD(m, ev, pod);
    STR_FIELD(m, ev, user);
    STR_FIELD(m, ev, error_type);
    STR_FIELD(m, ev, finish_reason);
    if (!all_zero(ev->trace_id, sizeof ev->trace_id)) {
        m->trace_id.size = sizeof ev->trace_id;
        memcpy(m->trace_id.bytes, ev->trace_id, sizeof ev->trace_id);
    }
    if (!all_zero(ev->span_id, sizeof ev->span_id)) {
        m->span_id.size = sizeof ev->span_id;
        memcpy(m->span_id.bytes, ev->span_id, sizeof ev->span_id);
    }
    m->start_unix_nano = ev->start_unix_nano;
    m->end_unix_nano = ev->end_unix_nano;
    SET_REAL(m, ev, latency_ms);
    SET_REAL(m, ev, ttft_ms);
    SET_COUNT(m, ev, input_tokens);
    SET_COUNT(m, ev, output_tokens);
    SET_COUNT(m, ev, total_tokens);
    SET_COUNT(m, ev, cache_read_tokens);
    SET_COUNT(m, ev, cache_write_tokens);
    SET_COUNT(m, ev, reasoning_tokens);
    /* cost_usd is set exactly when cost_source is known (sentinel.proto). */
    if ((ev->cost_source == SN_COST_SPAN || ev->cost_source == SN_COST_PRICE_TABLE) &&
        isfinite(ev->cost_usd) && ev->cost_usd >= 0.0) {
        m->which__cost_usd = sentinel_v1_LlmEvent_cost_usd_tag;
        m->_cost_usd.cost_usd = ev->cost_usd;
        m->cost_source = ev->cost_source == SN_COST_SPAN
                             ? sentinel_v1_CostSource_COST_SOURCE_SPAN
                             : sentinel_v1_CostSource_COST_SOURCE_PRICE_TABLE;
    }
    m->is_error = ev->is_error;
    m->conventions = ev->conventions;
}

#define GET_COUNT(ev, m, name)                                                                     \
    do {                                                                                           \
        if ((m)->which__##name == sentinel_v1_LlmEvent_##name##_tag && (m)->_##name.name >= 0)     \
            (ev)->name = (m)->_##name.name;                                                        \
    } while (0)
#define GET_REAL(ev, m, name)                                                                      \
    do {                                                                                           \
        if ((m)->which__##name == sentinel_v1_LlmEvent_##name##_tag)                               \
            (ev)->name = (m)->_##name.name;                                                        \
    } while (0)

/* Fills ev from a decoded LlmEvent. Returns NULL, or a static reason the message is invalid. */
static const char *event_from_pb(sn_event *ev, const sentinel_v1_LlmEvent *m)
{
    sn_event_init(ev);
    if (m->trace_id.size != 0 && m->trace_id.size != sizeof ev->trace_id)
        return "trace_id is not 16 bytes";
    if (m->span_id.size != 0 && m->span_id.size != sizeof ev->span_id)
        return "span_id is not 8 bytes";
    /* nanopb NUL-terminates decoded strings within their max_size, which equals ours. */
    STR_FIELD(ev, m, service);
    STR_FIELD(ev, m, model);
    STR_FIELD(ev, m, provider);
    STR_FIELD(ev, m, operation);
    STR_FIELD(ev, m, region);
    STR_FIELD(ev, m, service_version);
    STR_FIELD(ev, m, pod);
    STR_FIELD(ev, m, user);
    STR_FIELD(ev, m, error_type);
    STR_FIELD(ev, m, finish_reason);
    memcpy(ev->trace_id, m->trace_id.bytes, m->trace_id.size);
    memcpy(ev->span_id, m->span_id.bytes, m->span_id.size);
    ev->start_unix_nano = m->start_unix_nano;
    ev->end_unix_nano = m->end_unix_nano;
    GET_REAL(ev, m, latency_ms);
    GET_REAL(ev, m, ttft_ms);
    GET_COUNT(ev, m, input_tokens);
    GET_COUNT(ev, m, output_tokens);
    GET_COUNT(ev, m, total_tokens);
    GET_COUNT(ev, m, cache_read_tokens);
    GET_COUNT(ev, m, cache_write_tokens);
    GET_COUNT(ev, m, reasoning_tokens);
    if (m->which__cost_usd == sentinel_v1_LlmEvent_cost_usd_tag &&
        (m->cost_source == sentinel_v1_CostSource_COST_SOURCE_SPAN ||
         m->cost_source == sentinel_v1_CostSource_COST_SOURCE_PRICE_TABLE)) {
        ev->cost_usd = m->_cost_usd.cost_usd;
        ev->cost_source = m->cost_source == sentinel_v1_CostSource_COST_SOURCE_SPAN
                              ? SN_COST_SPAN
                              : SN_COST_PRICE_TABLE;
    }
    ev->is_error = m->is_error;
    ev->conventions = m->conventions;
    return NULL;
}

static sentinel_v1_Severity severity_to_pb(sn_severity s)
{
    switch (s) {
    case SN_SEV_LOW:
        return sentinel_v1_Severity_SEVERITY_LOW;
    case SN_SEV_MEDIUM:
        return sentinel_v1_Severity_SEVERITY_MEDIUM;
    case SN_SEV_HIGH:
        return sentinel_v1_Severity_SEVERITY_HIGH;
    case SN_SEV_CRITICAL:
        return sentinel_v1_Severity_SEVERITY_CRITICAL;
    case SN_SEV_NONE:
        break;
    }
    return sentinel_v1_Severity_SEVERITY_UNSPECIFIED;
}

/* NULL when the aggregator accepts the alert's enums, else a static reason. */
static const char *alert_problem(const sn_local_alert *a)
{
    if (a->severity < SN_SEV_LOW || a->severity > SN_SEV_CRITICAL)
        return "severity must be low..critical";
    if ((int)a->metric < 0 || a->metric >= SN_METRIC_COUNT)
        return "unknown metric";
    if ((int)a->detector < 0 || a->detector >= SN_DETECT_KIND_COUNT)
        return "unknown detector";
    if ((int)a->anomaly_type < 0 || a->anomaly_type >= SN_ANOMALY_TYPE_COUNT)
        return "unknown anomaly_type";
    return NULL;
}

static void alert_to_pb(sentinel_v1_LocalAlert *m, const sn_local_alert *a)
{
    memset(m, 0, sizeof *m);
    const char *det = sn_detector_name(a->detector);
    const char *met = sn_metric_name(a->metric);
    const char *typ = sn_anomaly_type_name(a->anomaly_type);
    copy_str(m->detector, sizeof m->detector, det, strlen(det));
    copy_str(m->metric, sizeof m->metric, met, strlen(met));
    copy_str(m->anomaly_type, sizeof m->anomaly_type, typ, strlen(typ));
    m->severity = severity_to_pb(a->severity);
    m->value = a->value;
    m->baseline = a->baseline;
    m->threshold = a->threshold;
    m->deviation = a->deviation;
    m->confidence = a->confidence;
    if (!all_zero(a->trace_id, sizeof a->trace_id)) {
        m->trace_id.size = sizeof a->trace_id;
        memcpy(m->trace_id.bytes, a->trace_id, sizeof a->trace_id);
    }
    m->time_unix_nano = a->time_unix_nano;
    copy_str(m->service, sizeof m->service, a->service, sizeof a->service);
    copy_str(m->model, sizeof m->model, a->model, sizeof a->model);
    copy_str(m->region, sizeof m->region, a->region, sizeof a->region);
    copy_str(m->alert_id, sizeof m->alert_id, a->alert_id, sizeof a->alert_id);
    m->suppressed = a->suppressed;
}

/* NULL when the aggregator accepts the aggregate, else a static reason. */
static const char *aggregate_problem(const sn_aggregate *g)
{
    if (g->metric != SN_METRIC_LATENCY_MS && g->metric != SN_METRIC_TTFT_MS &&
        g->metric != SN_METRIC_INPUT_TOKENS && g->metric != SN_METRIC_OUTPUT_TOKENS)
        return "metric must be latency_ms, ttft_ms, input_tokens or output_tokens";
    if (g->count == 0 || g->error_count > g->count)
        return "count must be >= 1 and >= error_count";
    return NULL;
}

/* A value the aggregator accepts: finite and >= 0 (else it stays unset, unknown). */
static bool known(double x)
{
    return isfinite(x) && x >= 0.0;
}

static void aggregate_to_pb(sentinel_v1_LlmAggregate *m, const sn_aggregate *g)
{
    memset(m, 0, sizeof *m);
    const char *met = sn_metric_name(g->metric);
    copy_str(m->service, sizeof m->service, g->service, sizeof g->service);
    copy_str(m->model, sizeof m->model, g->model, sizeof g->model);
    copy_str(m->provider, sizeof m->provider, g->provider, sizeof g->provider);
    copy_str(m->operation, sizeof m->operation, g->operation, sizeof g->operation);
    copy_str(m->region, sizeof m->region, g->region, sizeof g->region);
    copy_str(m->error_type, sizeof m->error_type, g->error_type, sizeof g->error_type);
    copy_str(m->metric, sizeof m->metric, met, strlen(met));
    m->start_unix_nano = g->start_unix_nano;
    m->end_unix_nano = g->end_unix_nano;
    m->count = g->count;
    m->error_count = g->error_count;
    if (known(g->sum)) {
        m->which__sum = sentinel_v1_LlmAggregate_sum_tag;
        m->_sum.sum = g->sum;
    }
    if (known(g->min)) {
        m->which__min = sentinel_v1_LlmAggregate_min_tag;
        m->_min.min = g->min;
    }
    if (known(g->max)) {
        m->which__max = sentinel_v1_LlmAggregate_max_tag;
        m->_max.max = g->max;
    }
    if (known(g->cost_usd)) {
        m->which__cost_usd = sentinel_v1_LlmAggregate_cost_usd_tag;
        m->_cost_usd.cost_usd = g->cost_usd;
    }
}

/* ---- nanopb callbacks --------------------------------------------------------------------- */

static bool encode_string_cb(pb_ostream_t *s, const pb_field_t *f, void *const *arg)
{
    const char *str = *arg;
    return pb_encode_tag_for_field(s, f) &&
           pb_encode_string(s, (const pb_byte_t *)str, strlen(str));
}

static bool encode_bytes_cb(pb_ostream_t *s, const pb_field_t *f, void *const *arg)
{
    const sn_bytes *b = *arg;
    return pb_encode_tag_for_field(s, f) && pb_encode_string(s, b->data, b->len);
}

/* ---- groups written as flat events ------------------------------------------------------
 *
 * For an aggregator that does not read groups, each event of a group becomes a Batch.events
 * entry: tag, length, the group's resource strings as the event's own fields (service 1, region
 * 5, service_version 6, pod 7), then the event's bytes. Fields may come in any order, so the
 * event's bytes are copied unchanged. Records are the sidecar's own (or checked by
 * sn_batch_scan_record), so a malformed one fails the encoding rather than being repaired. */

/* The event field each EventGroup string becomes (index: the group's field number). */
static const uint8_t group_to_event_field[5] = {
    0, sentinel_v1_LlmEvent_service_tag, sentinel_v1_LlmEvent_region_tag,
    sentinel_v1_LlmEvent_service_version_tag, sentinel_v1_LlmEvent_pod_tag};

/* The longest resource prefix: service (tag, two-byte length, 127 bytes) and three short
 * strings (tag, length, 63 bytes). */
#define SN_GROUP_RESOURCE_MAX                                                                      \
    ((1u + 2u + (SN_NAME_MAX - 1u)) + 3u * (1u + 1u + (SN_SHORT_MAX - 1u)))

/* A cursor over length-delimited entries (journal records and groups). */
typedef struct sn_cursor {
    const uint8_t *p, *end;
} sn_cursor;

/* A varint of at most 5 bytes (tags and lengths) below 2^32. Returns false when malformed. */
static bool get_varint32(sn_cursor *c, uint32_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 5 && c->p < c->end; i++) {
        uint8_t b = *c->p++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            if (v > UINT32_MAX)
                return false;
            *out = (uint32_t)v;
            return true;
        }
    }
    return false;
}

/* The next length-delimited entry: its field number and value bytes. Returns false when
 * malformed or of another wire type. */
static bool next_entry(sn_cursor *c, uint32_t *field, const uint8_t **val, size_t *vlen)
{
    uint32_t tag, n;
    if (!get_varint32(c, &tag) || (tag & 7) != PB_WT_STRING || !get_varint32(c, &n) ||
        n > (size_t)(c->end - c->p))
        return false;
    *field = tag >> 3;
    *val = c->p;
    *vlen = n;
    c->p += n;
    return true;
}

/* Writes the events of the EventGroup in g[0..glen) as Batch.events entries. */
static bool write_group_flat(pb_ostream_t *s, const uint8_t *g, size_t glen)
{
    uint8_t res[SN_GROUP_RESOURCE_MAX];
    const uint8_t *str[5] = {NULL};
    size_t slen[5] = {0};
    uint32_t tag;
    const uint8_t *v;
    size_t vlen;
    /* 1. The resource strings (the last value of each, as a reader would take it). */
    sn_cursor c = {g, g + glen};
    while (c.p < c.end) {
        if (!next_entry(&c, &tag, &v, &vlen))
            return false;
        if (tag >= 1 && tag <= 4)
            str[tag] = v, slen[tag] = vlen;
    }
    uint8_t *p = res;
    for (uint32_t f = 1; f <= 4; f++) {
        size_t max = (f == 1 ? SN_NAME_MAX : SN_SHORT_MAX) - 1;
        if (slen[f] == 0)
            continue;
        if (slen[f] > max)
            return false;
        *p++ = (uint8_t)((group_to_event_field[f] << 3) | PB_WT_STRING);
        p = put_varint(p, slen[f]);
        memcpy(p, str[f], slen[f]);
        p += slen[f];
    }
    size_t rlen = (size_t)(p - res);
    /* 2. Each event: the prefix, then its own fields. */
    c = (sn_cursor){g, g + glen};
    while (c.p < c.end) {
        if (!next_entry(&c, &tag, &v, &vlen))
            return false;
        if (tag != sentinel_v1_EventGroup_events_tag)
            continue;
        if (!pb_encode_tag(s, PB_WT_STRING, sentinel_v1_Batch_events_tag) ||
            !pb_encode_varint(s, rlen + vlen) || !pb_write(s, res, rlen) || !pb_write(s, v, vlen))
            return false;
    }
    return true;
}

/* A varint of at most 10 bytes. Returns false when malformed. */
static bool get_varint64(sn_cursor *c, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 10 && c->p < c->end; i++) {
        uint8_t b = *c->p++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Skips the value of a field of wire type wt; returns false when malformed. */
static bool skip_value(sn_cursor *c, uint32_t wt)
{
    uint64_t v;
    size_t n;
    switch (wt) {
    case PB_WT_VARINT:
        return get_varint64(c, &v);
    case PB_WT_64BIT:
        n = 8;
        break;
    case PB_WT_32BIT:
        n = 4;
        break;
    case PB_WT_STRING:
        if (!get_varint64(c, &v) || v > (uint64_t)(c->end - c->p))
            return false;
        n = (size_t)v;
        break;
    default:
        return false;
    }
    if (n > (size_t)(c->end - c->p))
        return false;
    c->p += n;
    return true;
}

/* Steps over the next field of any wire type: *start at its tag, *val at its value, the cursor
 * after it. Returns false when malformed. */
static bool next_field(sn_cursor *c, uint32_t *tag, const uint8_t **start, const uint8_t **val)
{
    *start = c->p;
    if (!get_varint32(c, tag))
        return false;
    *val = c->p;
    return skip_value(c, *tag & 7);
}

/* Writes the Batch in b[0..len) -- or journal-record bytes, a part of one -- with each groups
 * entry as flat events entries, every other field unchanged. */
static bool write_batch_flat(pb_ostream_t *s, const uint8_t *b, size_t len)
{
    sn_cursor c = {b, b + len};
    while (c.p < c.end) {
        const uint8_t *start, *val;
        uint32_t tag;
        if (!next_field(&c, &tag, &start, &val))
            return false;
        if ((tag >> 3) == sentinel_v1_Batch_groups_tag && (tag & 7) == PB_WT_STRING) {
            sn_cursor lc = {val, c.p};
            uint32_t n;
            if (!get_varint32(&lc, &n) || !write_group_flat(s, lc.p, n))
                return false;
        } else if (!pb_write(s, start, (size_t)(c.p - start))) {
            return false;
        }
    }
    return true;
}

/* Whether journal-record bytes hold a groups entry (top-level entries only are stepped). */
static bool records_have_groups(const uint8_t *rec, size_t len)
{
    sn_cursor c = {rec, rec + len};
    while (c.p < c.end) {
        uint32_t tag;
        const uint8_t *v;
        size_t vlen;
        if (!next_entry(&c, &tag, &v, &vlen))
            return false;
        if (tag == sentinel_v1_Batch_groups_tag)
            return true;
    }
    return false;
}

static bool encode_events_cb(pb_ostream_t *s, const pb_field_t *f, void *const *arg)
{
    const sn_items *it = *arg;
    sentinel_v1_LlmEvent m;
    for (size_t i = 0; i < it->n_events; i++) {
        event_to_pb(&m, &it->events[i]);
        if (!pb_encode_tag_for_field(s, f) ||
            !pb_encode_submessage(s, sentinel_v1_LlmEvent_fields, &m))
            return false;
    }
    /* Journal records are runs of complete events, aggregates and groups entries (tags
     * included): copied unchanged -- a repeated field may come in any number of runs -- or,
     * for an aggregator that does not read groups, with each group written as flat events. */
    if (it->records_len > 0 && !(it->groups ? pb_write(s, it->records, it->records_len)
                                            : write_batch_flat(s, it->records, it->records_len)))
        return false;
    return true;
}

static bool encode_alerts_cb(pb_ostream_t *s, const pb_field_t *f, void *const *arg)
{
    const sn_items *it = *arg;
    sentinel_v1_LocalAlert m;
    for (size_t i = 0; i < it->n_alerts; i++) {
        alert_to_pb(&m, &it->alerts[i]);
        if (!pb_encode_tag_for_field(s, f) ||
            !pb_encode_submessage(s, sentinel_v1_LocalAlert_fields, &m))
            return false;
    }
    return true;
}

/* One Batch.aggregates entry (tag, length, LlmAggregate): the one encoding of an aggregate, for
 * sealed batches and journal records alike. */
static bool encode_aggregate_entry(pb_ostream_t *s, const sn_aggregate *g)
{
    sentinel_v1_LlmAggregate m;
    aggregate_to_pb(&m, g);
    return pb_encode_tag(s, PB_WT_STRING, sentinel_v1_Batch_aggregates_tag) &&
           pb_encode_submessage(s, sentinel_v1_LlmAggregate_fields, &m);
}

static bool encode_aggregates_cb(pb_ostream_t *s, const pb_field_t *f, void *const *arg)
{
    (void)f;
    const sn_items *it = *arg;
    for (size_t i = 0; i < it->n_aggregates; i++)
        if (!encode_aggregate_entry(s, &it->aggregates[i]))
            return false;
    return true;
}

/* The reason an event inside a group is refused when it sets a resource field. */
static const char group_event_why[] =
    "an event in a group must not set service, region, service_version or pod";

/* Decodes one LlmEvent element into the next slot (or, scanning, into the scratch slot 0 and
 * counts it). in_group: it must leave the resource strings unset (its group's are filled in by
 * decode_group_cb). */
static bool take_event(pb_istream_t *s, sn_record_sink *sink, bool in_group)
{
    if (!sink->scan && sink->n >= sink->cap) {
        sink->overflow = true;
        PB_RETURN_ERROR(s, "too many events");
    }
    sentinel_v1_LlmEvent m = sentinel_v1_LlmEvent_init_zero;
    if (!pb_decode(s, sentinel_v1_LlmEvent_fields, &m))
        return false;
    const char *why = NULL;
    if (in_group && (m.service[0] != '\0' || m.region[0] != '\0' || m.service_version[0] != '\0' ||
                     m.pod[0] != '\0'))
        why = group_event_why;
    if (why == NULL)
        why = event_from_pb(&sink->events[sink->scan ? 0 : sink->n], &m);
    if (why != NULL) {
        sink->why = why;
        PB_RETURN_ERROR(s, "invalid event");
    }
    sink->n++;
    return true;
}

/* Called once per events element: decodes one LlmEvent into the next slot. */
static bool decode_event_cb(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    (void)f;
    return take_event(s, *arg, false);
}

/* Called once per EventGroup.events element. */
static bool decode_group_event_cb(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    (void)f;
    return take_event(s, *arg, true);
}

/* Called once per groups element: its events, then its resource strings into each of them
 * (the strings may come after the events on the wire). */
static bool decode_group_cb(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    (void)f;
    sn_record_sink *sink = *arg;
    size_t first = sink->n;
    sentinel_v1_EventGroup g = sentinel_v1_EventGroup_init_zero;
    g.events.funcs.decode = decode_group_event_cb;
    g.events.arg = sink;
    if (!pb_decode(s, sentinel_v1_EventGroup_fields, &g))
        return false;
    for (size_t i = first; !sink->scan && i < sink->n; i++) {
        sn_event *ev = &sink->events[i];
        copy_str(ev->service, sizeof ev->service, g.service, sizeof g.service);
        copy_str(ev->region, sizeof ev->region, g.region, sizeof g.region);
        copy_str(ev->service_version, sizeof ev->service_version, g.service_version,
                 sizeof g.service_version);
        copy_str(ev->pod, sizeof ev->pod, g.pod, sizeof g.pod);
    }
    return true;
}

/* ---- encoder ------------------------------------------------------------------------------ */

void sn_batch_config_init(sn_batch_config *cfg)
{
    cfg->zstd_level = SN_BATCH_ZSTD_LEVEL_DEFAULT;
    cfg->zstd_raw_literals = SN_BATCH_ZSTD_RAW_LITERALS_DEFAULT;
    cfg->zstd_hash_log = 0;
    cfg->max_events = SN_BATCH_MAX_EVENTS_DEFAULT;
    cfg->max_alerts = SN_BATCH_MAX_ALERTS_DEFAULT;
    cfg->max_message_bytes = SN_BATCH_MAX_MESSAGE_DEFAULT;
}

/* Sets cfg's compression parameters on z once: they stay for every frame ZSTD_compress2 makes
 * (it resets the session, not the parameters). Frames record their content size (the
 * aggregator checks it and decompresses them in one pass) and carry no checksum (gRPC's
 * transport and the spool's record CRC cover the bytes). The hash log overrides only the
 * level's table size; at level 1 and the fast (negative) levels the window is
 * SN_BATCH_ZSTD_WINDOW_LOG_FAST (the context's size follows it); search, match length and a
 * fast level's acceleration stay the level's for the batch's size. cfg->zstd_level is not 0.
 * Returns 0 or a zstd error code. */
static size_t set_zstd_params(ZSTD_CCtx *z, const sn_batch_config *cfg)
{
    bool fast = cfg->zstd_level <= 1; /* level 1 or a fast (negative) level */
    int hash_log = cfg->zstd_hash_log;
    if (hash_log == 0 && fast)
        hash_log = SN_BATCH_ZSTD_HASH_LOG_FAST;
    size_t r = ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, cfg->zstd_level);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(z, ZSTD_c_contentSizeFlag, 1);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 0);
    /* Set either way: zstd's own choice at the fast levels is raw, and huffman means Huffman. */
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(z, ZSTD_c_literalCompressionMode,
                                   cfg->zstd_raw_literals ? ZSTD_ps_disable : ZSTD_ps_enable);
    if (!ZSTD_isError(r) && hash_log > 0)
        r = ZSTD_CCtx_setParameter(z, ZSTD_c_hashLog, hash_log);
    if (!ZSTD_isError(r) && fast)
        r = ZSTD_CCtx_setParameter(z, ZSTD_c_windowLog, SN_BATCH_ZSTD_WINDOW_LOG_FAST);
    return r;
}

int sn_batch_encoder_create(const sn_batch_config *cfg, sn_batch_encoder **out, char *err,
                            size_t errlen)
{
    if (cfg->zstd_level < SN_BATCH_ZSTD_LEVEL_MIN || cfg->zstd_level > ZSTD_maxCLevel()) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "batch: zstd_level must be %d to %d (0: none)",
                     SN_BATCH_ZSTD_LEVEL_MIN, ZSTD_maxCLevel());
        return -EINVAL;
    }
    if (cfg->zstd_hash_log != 0 && (cfg->zstd_hash_log < SN_BATCH_ZSTD_HASH_LOG_MIN ||
                                    cfg->zstd_hash_log > SN_BATCH_ZSTD_HASH_LOG_MAX)) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "batch: zstd_hash_log must be 0 (automatic) or %d to %d",
                     SN_BATCH_ZSTD_HASH_LOG_MIN, SN_BATCH_ZSTD_HASH_LOG_MAX);
        return -EINVAL;
    }
    if (cfg->max_events < 1 || cfg->max_events > SN_BATCH_MAX_COUNT_LIMIT) {
        set_err(err, errlen, "batch: max_events must be 1 to 1000000");
        return -EINVAL;
    }
    if (cfg->max_alerts > SN_BATCH_MAX_COUNT_LIMIT) {
        set_err(err, errlen, "batch: max_alerts must be 0 to 1000000");
        return -EINVAL;
    }
    if (cfg->max_message_bytes < 1024 || cfg->max_message_bytes > SN_BATCH_MAX_MESSAGE_LIMIT) {
        set_err(err, errlen, "batch: max_message_bytes must be 1 KiB to 256 MiB");
        return -EINVAL;
    }
    sn_batch_encoder *enc = calloc(1, sizeof *enc);
    if (enc == NULL)
        goto out_nomem;
    enc->cfg = *cfg;
    if (cfg->zstd_level != 0) {
        enc->zctx = ZSTD_createCCtx();
        if (enc->zctx == NULL)
            goto out_free_enc;
        size_t zr = set_zstd_params(enc->zctx, cfg);
        if (ZSTD_isError(zr)) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "batch: zstd parameters refused: %s", ZSTD_getErrorName(zr));
            ZSTD_freeCCtx(enc->zctx);
            free(enc);
            return -EINVAL;
        }
    }
    *out = enc;
    return 0;

out_free_enc:
    free(enc);
out_nomem:
    set_err(err, errlen, "batch: out of memory");
    return -ENOMEM;
}

void sn_batch_encoder_destroy(sn_batch_encoder *enc)
{
    if (enc == NULL)
        return;
    ZSTD_freeCCtx(enc->zctx);
    free(enc->batch_buf);
    free(enc->req_buf);
    free(enc);
}

/* Makes *buf hold at least need bytes (need is already bounded by the caller). Buffers only
 * grow: a steady batch size reuses them. Returns false when out of memory (buffer untouched). */
static bool reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return true;
    size_t want = *cap * 2 > need ? *cap * 2 : need;
    uint8_t *p = realloc(*buf, want);
    if (p == NULL && want > need)
        p = realloc(*buf, want = need);
    if (p == NULL)
        return false;
    *buf = p;
    *cap = want;
    return true;
}

/* The compressed IngestRequest of the blen-byte Batch in enc->batch_buf: zstd writes the frame
 * into req_buf after ENVELOPE_MAX bytes, the envelope's fields (the same bytes nanopb writes for
 * req with the payload) go right in front of it, and *out points at the first. Returns 0,
 * -ENOMEM, -EIO or -EMSGSIZE (with err). The output lives in the encoder. */
static int encode_zstd(sn_batch_encoder *enc, sentinel_v1_IngestRequest *req, size_t blen,
                       size_t max, const uint8_t **out, size_t *out_len, size_t *batch_len,
                       char *err, size_t errlen)
{
    size_t bound = ZSTD_compressBound(blen);
    if (bound > SIZE_MAX - ENVELOPE_MAX ||
        !reserve(&enc->req_buf, &enc->req_cap, ENVELOPE_MAX + bound)) {
        set_err(err, errlen, "batch: out of memory");
        return -ENOMEM;
    }
    size_t zn = ZSTD_compress2(enc->zctx, enc->req_buf + ENVELOPE_MAX, bound, enc->batch_buf, blen);
    if (ZSTD_isError(zn)) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "batch: zstd: %s", ZSTD_getErrorName(zn));
        return -EIO;
    }
    req->compression = req->compression == sentinel_v1_Compression_COMPRESSION_NONE_GROUPS
                           ? sentinel_v1_Compression_COMPRESSION_ZSTD_GROUPS
                           : sentinel_v1_Compression_COMPRESSION_ZSTD;
    req->payload.funcs.encode = NULL; /* the fields before it only */
    uint8_t head[ENVELOPE_MAX];
    pb_ostream_t os = pb_ostream_from_buffer(head, sizeof head);
    if (!pb_encode(&os, sentinel_v1_IngestRequest_fields, req) ||
        !pb_encode_tag(&os, PB_WT_STRING, sentinel_v1_IngestRequest_payload_tag) ||
        !pb_encode_varint(&os, zn)) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "batch: encoding the request failed: %s", PB_GET_ERROR(&os));
        return -EIO;
    }
    size_t hlen = os.bytes_written;
    if (hlen + zn > max) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "batch: request of %zu bytes, over max_message_bytes %zu",
                     hlen + zn, max);
        return -EMSGSIZE;
    }
    uint8_t *start = enc->req_buf + ENVELOPE_MAX - hlen;
    memcpy(start, head, hlen);
    *out = start;
    *out_len = hlen + zn;
    if (batch_len != NULL)
        *batch_len = blen;
    return 0;
}

static int check_batch(const sn_batch_encoder *enc, const sn_batch *b, char *err, size_t errlen)
{
    size_t idlen = b->sidecar_id != NULL ? strnlen(b->sidecar_id, SN_BATCH_ID_MAX) : 0;
    if (idlen == 0 || idlen >= SN_BATCH_ID_MAX) {
        set_err(err, errlen, "batch: sidecar_id must be 1 to 128 bytes");
        return -EINVAL;
    }
    /* Sequence 0: local alerts sent ahead of their batch (alert_ship.h), alerts only. */
    if (b->sequence == 0 &&
        (b->n_events > 0 || b->records_len > 0 || b->n_aggregates > 0 || b->n_alerts == 0)) {
        set_err(err, errlen, "batch: sequence must be >= 1 (0: alerts only)");
        return -EINVAL;
    }
    if ((b->n_events > 0 && b->events == NULL) || (b->n_alerts > 0 && b->alerts == NULL)) {
        set_err(err, errlen, "batch: NULL events or alerts with a count");
        return -EINVAL;
    }
    if (b->records_len > 0 && b->records == NULL) {
        set_err(err, errlen, "batch: NULL records with a length");
        return -EINVAL;
    }
    if (b->n_events > enc->cfg.max_events ||
        b->n_record_events > enc->cfg.max_events - b->n_events) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "batch: %zu events, more than max_events %zu",
                     b->n_events + b->n_record_events, enc->cfg.max_events);
        return -EINVAL;
    }
    if (b->n_alerts > enc->cfg.max_alerts) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "batch: %zu alerts, more than max_alerts %zu", b->n_alerts,
                     enc->cfg.max_alerts);
        return -EINVAL;
    }
    for (size_t i = 0; i < b->n_alerts; i++) {
        const char *why = alert_problem(&b->alerts[i]);
        if (why != NULL) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "batch: alert %zu: %s", i, why);
            return -EINVAL;
        }
    }
    if ((b->n_aggregates > 0 && b->aggregates == NULL) || b->n_aggregates > enc->cfg.max_events ||
        b->n_record_aggregates > enc->cfg.max_events - b->n_aggregates) {
        set_err(err, errlen, "batch: NULL aggregates, or more than max_events of them");
        return -EINVAL;
    }
    for (size_t i = 0; i < b->n_aggregates; i++) {
        const char *why = aggregate_problem(&b->aggregates[i]);
        if (why != NULL) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "batch: aggregate %zu: %s", i, why);
            return -EINVAL;
        }
    }
    return 0;
}

int sn_batch_encode(sn_batch_encoder *enc, const sn_batch *b, const uint8_t **out, size_t *out_len,
                    size_t *batch_len, char *err, size_t errlen)
{
    int rc = check_batch(enc, b, err, errlen);
    if (rc != 0)
        return rc;
    size_t max = enc->cfg.max_message_bytes;

    sn_items items = {b->events, b->n_events, b->records,    b->records_len, b->groups,
                      b->alerts, b->n_alerts, b->aggregates, b->n_aggregates};
    /* A Batch with groups goes with the *_GROUPS compression an older aggregator refuses. */
    bool grouped =
        b->groups && b->records_len > 0 && records_have_groups(b->records, b->records_len);
    sentinel_v1_Batch msg = sentinel_v1_Batch_init_zero;
    msg.sidecar_id.funcs.encode = encode_string_cb;
    msg.sidecar_id.arg = (void *)b->sidecar_id;
    msg.sequence = b->sequence;
    msg.events.funcs.encode = encode_events_cb;
    msg.events.arg = &items;
    msg.alerts.funcs.encode = encode_alerts_cb;
    msg.alerts.arg = &items;
    msg.aggregates.funcs.encode = encode_aggregates_cb;
    msg.aggregates.arg = &items;
    msg.created_unix_nano = b->created_unix_nano;
    msg.dropped_events = b->dropped_events;

    /* 1. The Batch, into a buffer of exactly its size. */
    size_t blen = 0;
    if (!pb_get_encoded_size(&blen, sentinel_v1_Batch_fields, &msg)) {
        set_err(err, errlen, "batch: sizing the batch failed");
        return -EIO;
    }
    if (blen > max) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "batch: %zu bytes, over max_message_bytes %zu", blen, max);
        return -EMSGSIZE;
    }
    if (!reserve(&enc->batch_buf, &enc->batch_cap, blen > 0 ? blen : 1)) {
        set_err(err, errlen, "batch: out of memory");
        return -ENOMEM;
    }
    pb_ostream_t os = pb_ostream_from_buffer(enc->batch_buf, blen);
    if (!pb_encode(&os, sentinel_v1_Batch_fields, &msg) || os.bytes_written != blen) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "batch: encoding failed: %s", PB_GET_ERROR(&os));
        return -EIO;
    }

    /* 2. The payload: the Batch itself or one zstd frame of it (with its content size). */
    sn_bytes payload = {enc->batch_buf, blen};
    sentinel_v1_IngestRequest req = sentinel_v1_IngestRequest_init_zero;
    req.compression = grouped ? sentinel_v1_Compression_COMPRESSION_NONE_GROUPS
                              : sentinel_v1_Compression_COMPRESSION_NONE;
    req.uncompressed_size = blen;
    if (enc->zctx != NULL)
        return encode_zstd(enc, &req, blen, max, out, out_len, batch_len, err, errlen);
    req.payload.funcs.encode = encode_bytes_cb;
    req.payload.arg = &payload;

    /* 3. The envelope. */
    size_t rlen = 0;
    if (!pb_get_encoded_size(&rlen, sentinel_v1_IngestRequest_fields, &req)) {
        set_err(err, errlen, "batch: sizing the request failed");
        return -EIO;
    }
    if (rlen > max) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "batch: request of %zu bytes, over max_message_bytes %zu", rlen,
                     max);
        return -EMSGSIZE;
    }
    if (!reserve(&enc->req_buf, &enc->req_cap, rlen)) {
        set_err(err, errlen, "batch: out of memory");
        return -ENOMEM;
    }
    os = pb_ostream_from_buffer(enc->req_buf, rlen);
    if (!pb_encode(&os, sentinel_v1_IngestRequest_fields, &req) || os.bytes_written != rlen) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "batch: encoding the request failed: %s", PB_GET_ERROR(&os));
        return -EIO;
    }
    *out = enc->req_buf;
    *out_len = rlen;
    if (batch_len != NULL)
        *batch_len = blen;
    return 0;
}

/* ---- journal records ---------------------------------------------------------------------- */

size_t sn_batch_event_record_bound(size_t n)
{
    if (n > SIZE_MAX / SN_RECORD_PER_EVENT)
        return SIZE_MAX;
    return n * SN_RECORD_PER_EVENT;
}

int sn_batch_encode_event_record(const sn_event *events, size_t n, uint8_t *buf, size_t cap,
                                 size_t *len)
{
    if (n > 0 && events == NULL)
        return -EINVAL;
    sn_items items = {events, n, NULL, 0, false, NULL, 0, NULL, 0};
    sentinel_v1_Batch msg = sentinel_v1_Batch_init_zero;
    msg.events.funcs.encode = encode_events_cb;
    msg.events.arg = &items;
    pb_ostream_t os = pb_ostream_from_buffer(buf, cap);
    if (pb_encode(&os, sentinel_v1_Batch_fields, &msg)) {
        *len = os.bytes_written;
        return 0;
    }
    size_t need = 0;
    if (pb_get_encoded_size(&need, sentinel_v1_Batch_fields, &msg) && need > cap) {
        *len = need;
        return -ENOBUFS;
    }
    return -EIO;
}

int sn_batch_decode_event_record(const uint8_t *buf, size_t len, sn_event *events, size_t cap,
                                 size_t *n, char *err, size_t errlen)
{
    sn_record_sink sink = {events, cap, 0, false, NULL, 0, false};
    sentinel_v1_Batch msg = sentinel_v1_Batch_init_zero;
    msg.events.funcs.decode = decode_event_cb;
    msg.events.arg = &sink;
    msg.groups.funcs.decode = decode_group_cb;
    msg.groups.arg = &sink;
    /* sidecar_id and alerts have no decode callback: nanopb skips them. */
    pb_istream_t is = pb_istream_from_buffer(buf, len);
    if (!pb_decode(&is, sentinel_v1_Batch_fields, &msg)) {
        if (sink.overflow) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "journal record: more than %zu events", cap);
            return -ENOBUFS;
        }
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "journal record: %s",
                     sink.why != NULL ? sink.why : PB_GET_ERROR(&is));
        return -EINVAL;
    }
    *n = sink.n;
    return 0;
}

/* ---- LlmEvent by hand (the journal-record hot path) ----------------------------------------
 *
 * The same bytes nanopb writes for event_to_pb's message (the unit test compares them): fields
 * in field-number order; proto3 scalars and strings only when not empty / not zero; a oneof
 * member whenever it is set. The caller guarantees SN_RECORD_PER_EVENT bytes of room. */

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_tag(uint8_t *p, uint32_t field, pb_wire_type_t wt)
{
    return put_varint(p, ((uint64_t)field << 3) | (uint64_t)wt);
}

/* A string field from a NUL-terminated array of `size` bytes (at most size - 1 are sent, as
 * copy_str into the generated field of the same size would keep). */
static uint8_t *put_str(uint8_t *p, uint32_t field, const char *str, size_t size)
{
    size_t n = strnlen(str, size - 1);
    if (n == 0)
        return p;
    p = put_tag(p, field, PB_WT_STRING);
    p = put_varint(p, n);
    memcpy(p, str, n);
    return p + n;
}

static uint8_t *put_fixed64(uint8_t *p, uint32_t field, uint64_t v)
{
    p = put_tag(p, field, PB_WT_64BIT);
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 8;
}

static uint8_t *put_double(uint8_t *p, uint32_t field, double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return put_fixed64(p, field, u);
}

static uint8_t *put_id(uint8_t *p, uint32_t field, const uint8_t *id, size_t n)
{
    if (all_zero(id, n))
        return p;
    p = put_tag(p, field, PB_WT_STRING);
    p = put_varint(p, n);
    memcpy(p, id, n);
    return p + n;
}

#define PUT_STR(p, f, ev, name) ((p) = put_str((p), (f), (ev)->name, sizeof(ev)->name))
#define PUT_COUNT(p, f, ev, name)                                                                  \
    do {                                                                                           \
        if ((ev)->name >= 0) {                                                                     \
            (p) = put_tag((p), (f), PB_WT_VARINT);                                                 \
            (p) = put_varint((p), (uint64_t)(ev)->name);                                           \
        }                                                                                          \
    } while (0)
#define PUT_REAL(p, f, ev, name)                                                                   \
    do {                                                                                           \
        if (isfinite((ev)->name) && (ev)->name >= 0.0)                                             \
            (p) = put_double((p), (f), (ev)->name);                                                \
    } while (0)

/* Writes ev as an LlmEvent message at p; returns the end. resource: with service, region,
 * service_version and pod (false inside a group, which carries them). */
static uint8_t *put_event(uint8_t *p, const sn_event *ev, bool resource)
{
    if (resource)
        PUT_STR(p, sentinel_v1_LlmEvent_service_tag, ev, service);
    PUT_STR(p, sentinel_v1_LlmEvent_model_tag, ev, model);
    PUT_STR(p, sentinel_v1_LlmEvent_provider_tag, ev, provider);
    PUT_STR(p, sentinel_v1_LlmEvent_operation_tag, ev, operation);
    if (resource) {
        PUT_STR(p, sentinel_v1_LlmEvent_region_tag, ev, region);
        PUT_STR(p, sentinel_v1_LlmEvent_service_version_tag, ev, service_version);
        PUT_STR(p, sentinel_v1_LlmEvent_pod_tag, ev, pod);
    }
    PUT_STR(p, sentinel_v1_LlmEvent_user_tag, ev, user);
    PUT_STR(p, sentinel_v1_LlmEvent_error_type_tag, ev, error_type);
    PUT_STR(p, sentinel_v1_LlmEvent_finish_reason_tag, ev, finish_reason);
    p = put_id(p, sentinel_v1_LlmEvent_trace_id_tag, ev->trace_id, sizeof ev->trace_id);
    p = put_id(p, sentinel_v1_LlmEvent_span_id_tag, ev->span_id, sizeof ev->span_id);
    if (ev->start_unix_nano != 0)
        p = put_fixed64(p, sentinel_v1_LlmEvent_start_unix_nano_tag, (uint64_t)ev->start_unix_nano);
    if (ev->end_unix_nano != 0)
        p = put_fixed64(p, sentinel_v1_LlmEvent_end_unix_nano_tag, (uint64_t)ev->end_unix_nano);
    PUT_REAL(p, sentinel_v1_LlmEvent_latency_ms_tag, ev, latency_ms);
    PUT_REAL(p, sentinel_v1_LlmEvent_ttft_ms_tag, ev, ttft_ms);
    PUT_COUNT(p, sentinel_v1_LlmEvent_input_tokens_tag, ev, input_tokens);
    PUT_COUNT(p, sentinel_v1_LlmEvent_output_tokens_tag, ev, output_tokens);
    PUT_COUNT(p, sentinel_v1_LlmEvent_total_tokens_tag, ev, total_tokens);
    PUT_COUNT(p, sentinel_v1_LlmEvent_cache_read_tokens_tag, ev, cache_read_tokens);
    PUT_COUNT(p, sentinel_v1_LlmEvent_cache_write_tokens_tag, ev, cache_write_tokens);
    PUT_COUNT(p, sentinel_v1_LlmEvent_reasoning_tokens_tag, ev, reasoning_tokens);
    if ((ev->cost_source == SN_COST_SPAN || ev->cost_source == SN_COST_PRICE_TABLE) &&
        isfinite(ev->cost_usd) && ev->cost_usd >= 0.0) {
        p = put_double(p, sentinel_v1_LlmEvent_cost_usd_tag, ev->cost_usd);
        p = put_tag(p, sentinel_v1_LlmEvent_cost_source_tag, PB_WT_VARINT);
        p = put_varint(p, ev->cost_source == SN_COST_SPAN
                              ? sentinel_v1_CostSource_COST_SOURCE_SPAN
                              : sentinel_v1_CostSource_COST_SOURCE_PRICE_TABLE);
    }
    if (ev->is_error) {
        p = put_tag(p, sentinel_v1_LlmEvent_is_error_tag, PB_WT_VARINT);
        *p++ = 1;
    }
    if (ev->conventions != 0) {
        p = put_tag(p, sentinel_v1_LlmEvent_conventions_tag, PB_WT_VARINT);
        p = put_varint(p, ev->conventions);
    }
    return p;
}

/* Writes one entry of field `field` holding ev (see put_event) at `at`, which has
 * SN_RECORD_PER_EVENT bytes of room. Returns its size. */
static size_t put_event_entry(uint8_t *at, uint32_t field, const sn_event *ev, bool resource)
{
    /* The message after room for the tag and a two-byte length; then the tag and length go in
     * front of it (moving it back a byte when the length takes one). */
    size_t size = (size_t)(put_event(at + 3, ev, resource) - (at + 3));
    at[0] = (uint8_t)((field << 3) | PB_WT_STRING);
    if (size < 128) {
        at[1] = (uint8_t)size;
        memmove(at + 2, at + 3, size);
        return 2 + size;
    }
    at[1] = (uint8_t)(0x80 | (size & 0x7f));
    at[2] = (uint8_t)(size >> 7); /* < 128: sentinel_v1_LlmEvent_size < 16384 */
    return 3 + size;
}

int sn_batch_append_event_record(const sn_event *ev, uint8_t *buf, size_t cap, size_t *len)
{
    if (ev == NULL || buf == NULL || *len > cap)
        return -EINVAL;
    uint8_t *at = buf + *len;
    size_t room = cap - *len;
    if (room >= SN_RECORD_PER_EVENT) {
        *len += put_event_entry(at, sentinel_v1_Batch_events_tag, ev, true);
        return 0;
    }
    /* Tight on room: nanopb, which says exactly whether the event fits. */
    sentinel_v1_LlmEvent m;
    event_to_pb(&m, ev);
    size_t size = 0;
    if (!pb_get_encoded_size(&size, sentinel_v1_LlmEvent_fields, &m))
        return -EIO;
    size_t need = 1 + (size < 128 ? 1 : 2) + size;
    if (room < need)
        return -ENOBUFS;
    pb_ostream_t os = pb_ostream_from_buffer(at, need);
    if (!pb_encode_tag(&os, PB_WT_STRING, sentinel_v1_Batch_events_tag) ||
        !pb_encode_varint(&os, size) || !pb_encode(&os, sentinel_v1_LlmEvent_fields, &m) ||
        os.bytes_written != need)
        return -EIO;
    *len += need;
    return 0;
}

/* ---- events as groups in journal records ----------------------------------------------------
 *
 * A groups entry is written as: tag (1 byte), a length of SN_GROUP_LEN_ROOM bytes reserved
 * while the group is open, the resource strings, then one EventGroup.events entry per event.
 * Closing writes the length as a four-byte varint, in place. */

#define SN_GROUP_LEN_ROOM    4u                      /* a group's content is below 2^28 bytes */
#define SN_GROUP_CONTENT_MAX (((size_t)1 << 28) - 1) /* what four varint bytes hold */
#define SN_GROUP_HEAD        (1u + SN_GROUP_LEN_ROOM + SN_GROUP_RESOURCE_MAX)

void sn_batch_grouper_init(sn_batch_grouper *g)
{
    memset(g, 0, sizeof *g);
    g->start = SIZE_MAX;
}

size_t sn_batch_grouped_record_bound(size_t n)
{
    const size_t per = SN_RECORD_PER_EVENT + SN_GROUP_HEAD; /* each event in its own group */
    if (n > SIZE_MAX / per)
        return SIZE_MAX;
    return n * per;
}

/* Whether the string s of a field of `size` bytes (at most size - 1 of them count, as put_str
 * sends them) is the group's string gs of glen bytes: its bytes and, when shorter than the field
 * allows, its NUL. */
static bool same_str(const char *gs, size_t glen, const char *s, size_t size)
{
    return memcmp(gs, s, glen < size - 1 ? glen + 1 : glen) == 0;
}

/* Whether ev belongs to the open group. */
static bool same_resource(const sn_batch_grouper *g, const sn_event *ev)
{
    return same_str(g->pod, g->len[3], ev->pod, sizeof ev->pod) &&
           same_str(g->service, g->len[0], ev->service, sizeof ev->service) &&
           same_str(g->region, g->len[1], ev->region, sizeof ev->region) &&
           same_str(g->service_version, g->len[2], ev->service_version, sizeof ev->service_version);
}

/* Rewrites the group of one event that starts at buf[at] (its length not yet written) and ends
 * at *len as one flat events entry: tag, length, the group's strings under the event's field
 * numbers, the event's bytes. Everything moves left, so it fits in place. Returns 0 or -EINVAL
 * (not a group of one event). */
static int group_of_one_to_flat(uint8_t *buf, size_t at, size_t *len)
{
    const uint8_t *body = buf + at + 1 + SN_GROUP_LEN_ROOM, *end = buf + *len;
    sn_cursor c = {body, end};
    const uint8_t *ev = NULL;
    size_t evlen = 0, slen = 0;
    uint32_t field;
    const uint8_t *v;
    size_t vlen;
    while (c.p < c.end) { /* the strings, then the event (as sn_batch_append_grouped_event wrote) */
        if (!next_entry(&c, &field, &v, &vlen))
            return -EINVAL;
        if (field == sentinel_v1_EventGroup_events_tag) {
            if (ev != NULL || c.p != c.end)
                return -EINVAL;
            ev = v;
            evlen = vlen;
        } else if (field >= 1 && field <= 4 && ev == NULL) {
            slen = (size_t)(c.p - body);
        } else {
            return -EINVAL;
        }
    }
    if (ev == NULL)
        return -EINVAL;
    uint8_t *p = buf + at;
    *p++ = (uint8_t)((sentinel_v1_Batch_events_tag << 3) | PB_WT_STRING);
    p = put_varint(p, slen + evlen); /* at most 3 bytes: it never passes body */
    memmove(p, body, slen);
    for (c = (sn_cursor){p, p + slen};
         c.p < c.end;) { /* the group's field numbers -> the event's */
        uint8_t *tag = (uint8_t *)c.p;
        if (!next_entry(&c, &field, &v, &vlen))
            return -EINVAL;
        *tag = (uint8_t)((group_to_event_field[field] << 3) | PB_WT_STRING);
    }
    p += slen;
    memmove(p, ev, evlen);
    *len = (size_t)(p + evlen - buf);
    return 0;
}

int sn_batch_grouper_close(sn_batch_grouper *g, uint8_t *buf, size_t *len)
{
    if (g == NULL || buf == NULL)
        return -EINVAL;
    if (g->start == SIZE_MAX)
        return 0;
    size_t body = g->start + 1 + SN_GROUP_LEN_ROOM;
    if (*len < body)
        return -EINVAL;
    size_t content = *len - body;
    if (g->events == 1) {
        g->start = SIZE_MAX;
        return group_of_one_to_flat(buf, body - 1 - SN_GROUP_LEN_ROOM, len);
    }
    /* The length as a varint of exactly four bytes (content <= SN_GROUP_CONTENT_MAX): a longer
     * encoding than needed, which every protobuf reader takes (the aggregator's, protobuf-c and
     * nanopb read up to five bytes), so the group's bytes need not move. */
    uint8_t *lp = buf + g->start + 1;
    lp[0] = (uint8_t)(0x80 | (content & 0x7f));
    lp[1] = (uint8_t)(0x80 | ((content >> 7) & 0x7f));
    lp[2] = (uint8_t)(0x80 | ((content >> 14) & 0x7f));
    lp[3] = (uint8_t)((content >> 21) & 0x7f);
    g->start = SIZE_MAX;
    return 0;
}

int sn_batch_append_grouped_event(sn_batch_grouper *g, const sn_event *ev, uint8_t *buf, size_t cap,
                                  size_t *len)
{
    if (g == NULL || ev == NULL || buf == NULL || *len > cap)
        return -EINVAL;
    bool join =
        g->start != SIZE_MAX && same_resource(g, ev) &&
        *len - (g->start + 1 + SN_GROUP_LEN_ROOM) <= SN_GROUP_CONTENT_MAX - SN_RECORD_PER_EVENT;
    if (!join) {
        if (cap - *len < SN_GROUP_HEAD + SN_RECORD_PER_EVENT)
            return -ENOBUFS; /* checked first: *len untouched (closing only shrinks it) */
        int rc = sn_batch_grouper_close(g, buf, len);
        if (rc != 0)
            return rc;
        copy_str(g->service, sizeof g->service, ev->service, sizeof ev->service);
        copy_str(g->region, sizeof g->region, ev->region, sizeof ev->region);
        copy_str(g->service_version, sizeof g->service_version, ev->service_version,
                 sizeof ev->service_version);
        copy_str(g->pod, sizeof g->pod, ev->pod, sizeof ev->pod);
        g->len[0] = (uint8_t)strlen(g->service); /* < SN_NAME_MAX: copy_str terminates */
        g->len[1] = (uint8_t)strlen(g->region);
        g->len[2] = (uint8_t)strlen(g->service_version);
        g->len[3] = (uint8_t)strlen(g->pod);
        g->start = *len;
        g->events = 0;
        uint8_t *p = buf + *len;
        *p++ = (uint8_t)((sentinel_v1_Batch_groups_tag << 3) | PB_WT_STRING);
        p += SN_GROUP_LEN_ROOM;
        p = put_str(p, sentinel_v1_EventGroup_service_tag, g->service, sizeof g->service);
        p = put_str(p, sentinel_v1_EventGroup_region_tag, g->region, sizeof g->region);
        p = put_str(p, sentinel_v1_EventGroup_service_version_tag, g->service_version,
                    sizeof g->service_version);
        p = put_str(p, sentinel_v1_EventGroup_pod_tag, g->pod, sizeof g->pod);
        *len = (size_t)(p - buf);
    } else if (cap - *len < SN_RECORD_PER_EVENT) {
        return -ENOBUFS;
    }
    *len += put_event_entry(buf + *len, sentinel_v1_EventGroup_events_tag, ev, false);
    g->events++;
    return 0;
}

/* Whether a set oneof real is one the aggregator accepts (finite and >= 0). */
static bool real_ok(pb_size_t which, double x)
{
    return which == 0 || known(x);
}

/* NULL when the aggregator accepts a decoded LlmAggregate (its validation rules), else a static
 * reason. */
static const char *aggregate_pb_problem(const sentinel_v1_LlmAggregate *m)
{
    sn_aggregate g;
    memset(&g, 0, sizeof g);
    if (sn_metric_from_name(m->metric, &g.metric) != 0)
        return "aggregate metric must be latency_ms, ttft_ms, input_tokens or output_tokens";
    g.count = m->count;
    g.error_count = m->error_count;
    const char *why = aggregate_problem(&g);
    if (why != NULL)
        return why;
    if (!real_ok(m->which__sum, m->_sum.sum) || !real_ok(m->which__min, m->_min.min) ||
        !real_ok(m->which__max, m->_max.max) || !real_ok(m->which__cost_usd, m->_cost_usd.cost_usd))
        return "aggregate sum, min, max and cost_usd must be finite and >= 0";
    return NULL;
}

/* Called once per aggregates element while scanning: checks it as the aggregator would and
 * counts it. */
static bool scan_aggregate_cb(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    (void)f;
    sn_record_sink *sink = *arg;
    sentinel_v1_LlmAggregate m = sentinel_v1_LlmAggregate_init_zero;
    if (!pb_decode(s, sentinel_v1_LlmAggregate_fields, &m))
        return false;
    const char *why = aggregate_pb_problem(&m);
    if (why != NULL) {
        sink->why = why;
        PB_RETURN_ERROR(s, "invalid aggregate");
    }
    sink->n_aggregates++;
    return true;
}

int sn_batch_scan_record(const uint8_t *buf, size_t len, size_t *n_events, size_t *n_aggregates,
                         char *err, size_t errlen)
{
    /* Only events and aggregates entries may be copied into a sealed batch: a stray sidecar_id
     * or sequence would override the batch's own. */
    pb_istream_t is = pb_istream_from_buffer(buf, len);
    while (is.bytes_left > 0) {
        pb_wire_type_t wt;
        uint32_t tag;
        bool eof;
        if (!pb_decode_tag(&is, &wt, &tag, &eof) || eof) {
            set_err(err, errlen, "journal record: bad tag");
            return -EINVAL;
        }
        if ((tag != sentinel_v1_Batch_events_tag && tag != sentinel_v1_Batch_aggregates_tag &&
             tag != sentinel_v1_Batch_groups_tag) ||
            wt != PB_WT_STRING) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen,
                         "journal record: field %u is not an event, an aggregate or a group",
                         (unsigned)tag);
            return -EINVAL;
        }
        if (!pb_skip_field(&is, wt)) {
            set_err(err, errlen, "journal record: truncated entry");
            return -EINVAL;
        }
    }
    sn_event scratch;
    sn_record_sink sink = {&scratch, 1, 0, false, NULL, 0, true};
    sentinel_v1_Batch msg = sentinel_v1_Batch_init_zero;
    msg.events.funcs.decode = decode_event_cb;
    msg.events.arg = &sink;
    msg.groups.funcs.decode = decode_group_cb;
    msg.groups.arg = &sink;
    msg.aggregates.funcs.decode = scan_aggregate_cb;
    msg.aggregates.arg = &sink;
    is = pb_istream_from_buffer(buf, len);
    if (!pb_decode(&is, sentinel_v1_Batch_fields, &msg)) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "journal record: %s",
                     sink.why != NULL ? sink.why : PB_GET_ERROR(&is));
        return -EINVAL;
    }
    *n_events = sink.n;
    *n_aggregates = sink.n_aggregates;
    return 0;
}

/* ---- aggregates in journal records --------------------------------------------------------- */

size_t sn_batch_aggregate_record_bound(size_t n)
{
    const size_t per = sentinel_v1_LlmAggregate_size + 3u; /* tag + two-byte length + message */
    if (n > SIZE_MAX / per)
        return SIZE_MAX;
    return n * per;
}

int sn_batch_append_aggregate_record(const sn_aggregate *g, uint8_t *buf, size_t cap, size_t *len)
{
    if (g == NULL || buf == NULL || *len > cap)
        return -EINVAL;
    if (aggregate_problem(g) != NULL)
        return -EINVAL;
    sentinel_v1_LlmAggregate m;
    aggregate_to_pb(&m, g);
    size_t size = 0;
    if (!pb_get_encoded_size(&size, sentinel_v1_LlmAggregate_fields, &m))
        return -EIO;
    size_t need = 1 + (size < 128 ? 1 : 2) + size; /* size < 16384: LlmAggregate_size */
    if (cap - *len < need)
        return -ENOBUFS;
    pb_ostream_t os = pb_ostream_from_buffer(buf + *len, need);
    if (!encode_aggregate_entry(&os, g) || os.bytes_written != need)
        return -EIO;
    *len += os.bytes_written;
    return 0;
}

/* ---- a grouped request for an aggregator that does not read groups ------------------------ */

const sn_batch_config *sn_batch_encoder_config(const sn_batch_encoder *enc)
{
    return &enc->cfg;
}

void sn_batch_parts_free(sn_batch_parts *parts)
{
    if (parts == NULL)
        return;
    free(parts->data);
    free(parts->end);
    parts->data = NULL;
    parts->end = NULL;
    parts->n = 0;
}

/* A top-level field of the flat Batch: its bytes b[off .. off + len), tag included. */
typedef struct sn_span {
    size_t off;
    size_t len;
} sn_span;

/* What the parts are built from: the flat Batch's top-level fields, sorted. */
typedef struct sn_flat_fields {
    const uint8_t *id; /* sidecar_id's value */
    size_t idlen;
    uint64_t sequence;
    sn_span *entries; /* the events / alerts / aggregates entries, in order (malloc'd) */
    size_t n_entries;
    sn_span *tails; /* the other fields but id and sequence: created, dropped, unknown (malloc'd) */
    size_t n_tails;
    size_t tail;      /* their bytes */
    size_t max_entry; /* the largest entry */
} sn_flat_fields;

/* Frees the spans flat_fields allocated. */
static void flat_fields_free(sn_flat_fields *ff)
{
    free(ff->entries);
    free(ff->tails);
    ff->entries = NULL;
    ff->tails = NULL;
}

static bool is_entry(uint32_t tag)
{
    uint32_t f = tag >> 3;
    return (tag & 7) == PB_WT_STRING &&
           (f == sentinel_v1_Batch_events_tag || f == sentinel_v1_Batch_alerts_tag ||
            f == sentinel_v1_Batch_aggregates_tag);
}

/* Reads the flat Batch b into *ff (the spans malloc'd: the caller frees them with
 * flat_fields_free, also on failure): counted in a first walk, recorded in a second. Returns 0,
 * -EINVAL (malformed, or no sidecar_id of 1..128 bytes) or -ENOMEM. */
static int flat_fields(const uint8_t *b, size_t len, sn_flat_fields *ff)
{
    memset(ff, 0, sizeof *ff);
    size_t ne = 0, nt = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            ff->entries = malloc((ne > 0 ? ne : 1) * sizeof *ff->entries);
            ff->tails = malloc((nt > 0 ? nt : 1) * sizeof *ff->tails);
            if (ff->entries == NULL || ff->tails == NULL)
                return -ENOMEM;
        }
        sn_cursor c = {b, b + len};
        while (c.p < c.end) {
            const uint8_t *start, *val;
            uint32_t tag;
            if (!next_field(&c, &tag, &start, &val))
                return -EINVAL;
            sn_span s = {(size_t)(start - b), (size_t)(c.p - start)};
            if (is_entry(tag)) {
                if (pass == 0)
                    ne++;
                else
                    ff->entries[ff->n_entries++] = s;
                if (s.len > ff->max_entry)
                    ff->max_entry = s.len;
            } else if ((tag >> 3) == sentinel_v1_Batch_sidecar_id_tag &&
                       (tag & 7) == PB_WT_STRING) {
                sn_cursor lc = {val, c.p};
                uint32_t l;
                if (!get_varint32(&lc, &l))
                    return -EINVAL;
                ff->id = lc.p;
                ff->idlen = l;
            } else if ((tag >> 3) == sentinel_v1_Batch_sequence_tag && (tag & 7) == PB_WT_VARINT) {
                sn_cursor lc = {val, c.p};
                if (!get_varint64(&lc, &ff->sequence))
                    return -EINVAL;
            } else if (pass == 0) {
                nt++;
                ff->tail += s.len;
            } else {
                ff->tails[ff->n_tails++] = s;
            }
        }
    }
    return ff->idlen > 0 && ff->idlen < SN_BATCH_ID_MAX ? 0 : -EINVAL;
}

/* The most a part's sidecar_id and sequence fields take (tags and lengths included). */
#define PART_HEAD_MAX (1u + 1u + SN_BATCH_ID_MAX + 1u + 10u)

/* A part's sidecar id and sequence: every part but the last goes under "<id>/part"
 * (SN_BATCH_PART_SUFFIX) with sequence (S << SN_BATCH_PART_BITS) | k, k = 1.., the last under the
 * batch's own id and sequence S. Returns the id's length (out holds SN_BATCH_ID_MAX bytes). */
static size_t part_id(char *out, const sn_flat_fields *ff, size_t k, size_t n, uint64_t *seq)
{
    memcpy(out, ff->id, ff->idlen);
    if (k + 1 == n) {
        *seq = ff->sequence;
        return ff->idlen;
    }
    memcpy(out + ff->idlen, SN_BATCH_PART_SUFFIX, sizeof SN_BATCH_PART_SUFFIX - 1);
    *seq = (ff->sequence << SN_BATCH_PART_BITS) | (uint64_t)(k + 1);
    return ff->idlen + sizeof SN_BATCH_PART_SUFFIX - 1;
}

/* Writes part k of n of the flat Batch b: its id and sequence (part_id), the entries [from, to)
 * and, for the last part, the other fields. Returns the bytes written to out (at most
 * PART_HEAD_MAX + the entries' and, for the last, the other fields' bytes). */
static size_t write_part(uint8_t *out, const uint8_t *b, const sn_flat_fields *ff,
                         const sn_span *entries, size_t k, size_t n, size_t from, size_t to)
{
    char id[SN_BATCH_ID_MAX];
    uint64_t seq;
    size_t idlen = part_id(id, ff, k, n, &seq);
    uint8_t *p = out;
    p = put_tag(p, sentinel_v1_Batch_sidecar_id_tag, PB_WT_STRING);
    p = put_varint(p, idlen);
    memcpy(p, id, idlen);
    p += idlen;
    if (seq != 0) {
        p = put_tag(p, sentinel_v1_Batch_sequence_tag, PB_WT_VARINT);
        p = put_varint(p, seq);
    }
    for (size_t e = from; e < to; e++) {
        memcpy(p, b + entries[e].off, entries[e].len);
        p += entries[e].len;
    }
    if (k + 1 == n) {
        for (size_t t = 0; t < ff->n_tails; t++) {
            memcpy(p, b + ff->tails[t].off, ff->tails[t].len);
            p += ff->tails[t].len;
        }
    }
    return (size_t)(p - out);
}
/* Appends one IngestRequest holding the Batch b[0..blen) to parts (compressed with z when not
 * NULL). Returns 0, -ENOMEM, -EIO or -EMSGSIZE (the request over max). */
static int append_request(sn_batch_parts *parts, size_t *cap, ZSTD_CCtx *z, const uint8_t *b,
                          size_t blen, size_t max, char *err, size_t errlen)
{
    size_t bound = z != NULL ? ZSTD_compressBound(blen) : blen;
    size_t used = parts->n > 0 ? parts->end[parts->n - 1] : 0;
    if (!reserve(&parts->data, cap, used + ENVELOPE_MAX + bound)) {
        set_err(err, errlen, "batch: out of memory");
        return -ENOMEM;
    }
    uint8_t head[ENVELOPE_MAX], *h = head;
    uint8_t *dst = parts->data + used + ENVELOPE_MAX;
    size_t pl = blen;
    if (z != NULL) {
        pl = ZSTD_compress2(z, dst, bound, b, blen);
        if (ZSTD_isError(pl)) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "batch: zstd: %s", ZSTD_getErrorName(pl));
            /* zstd's own workspace allocation failed: retried like any out-of-memory */
            return ZSTD_getErrorCode(pl) == ZSTD_error_memory_allocation ? -ENOMEM : -EIO;
        }
        h = put_tag(h, sentinel_v1_IngestRequest_compression_tag, PB_WT_VARINT);
        h = put_varint(h, sentinel_v1_Compression_COMPRESSION_ZSTD);
    } else {
        memcpy(dst, b, blen);
    }
    h = put_tag(h, sentinel_v1_IngestRequest_uncompressed_size_tag, PB_WT_VARINT);
    h = put_varint(h, blen);
    h = put_tag(h, sentinel_v1_IngestRequest_payload_tag, PB_WT_STRING);
    h = put_varint(h, pl);
    size_t hlen = (size_t)(h - head);
    if (hlen + pl > max) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "batch: flat request of %zu bytes, over max_message_bytes %zu",
                     hlen + pl, max);
        return -EMSGSIZE;
    }
    memmove(parts->data + used + hlen, dst, pl);
    memcpy(parts->data + used, head, hlen);
    parts->end[parts->n++] = used + hlen + pl;
    return 0;
}

int sn_batch_flatten_request(const uint8_t *req, size_t len, const sn_batch_config *cfg,
                             sn_batch_parts *out, char *err, size_t errlen)
{
    return sn_batch_flatten_request_floor(req, len, cfg, SN_BATCH_PART_FLOOR, out, err, errlen);
}

/* sn_batch_flatten_alloc_for_tests: zstd's allocator for the flattener's contexts. */
static ZSTD_customMem g_flatten_mem; /* all NULL: zstd's default */

void sn_batch_flatten_alloc_for_tests(sn_batch_alloc_fn alloc, sn_batch_release_fn release,
                                      void *ud)
{
    g_flatten_mem = alloc != NULL ? (ZSTD_customMem){alloc, release, ud} : (ZSTD_customMem){0};
}

int sn_batch_flatten_request_floor(const uint8_t *req, size_t len, const sn_batch_config *cfg,
                                   size_t floor, sn_batch_parts *out, char *err, size_t errlen)
{
    uint64_t compression = 0, declared = 0;
    const uint8_t *payload = NULL;
    size_t plen = 0, max = cfg->max_message_bytes, cap = 0;
    size_t *starts = NULL; /* the entry index each part begins at */
    uint8_t *plain = NULL, *flat = NULL, *part = NULL;
    ZSTD_CCtx *z = NULL;
    ZSTD_DCtx *dctx = NULL;
    sn_batch_parts res = {NULL, NULL, 0};
    sn_flat_fields ff = {0};
    int rc = -EINVAL;
    sn_cursor c = {req, req + len};
    while (c.p < c.end) {
        uint32_t tag;
        if (!get_varint32(&c, &tag))
            goto bad;
        const uint8_t *val = c.p;
        if ((tag >> 3) == sentinel_v1_IngestRequest_compression_tag && (tag & 7) == PB_WT_VARINT) {
            if (!get_varint64(&c, &compression))
                goto bad;
        } else if ((tag >> 3) == sentinel_v1_IngestRequest_uncompressed_size_tag &&
                   (tag & 7) == PB_WT_VARINT) {
            if (!get_varint64(&c, &declared))
                goto bad;
        } else {
            if (!skip_value(&c, tag & 7))
                goto bad;
            if ((tag >> 3) == sentinel_v1_IngestRequest_payload_tag && (tag & 7) == PB_WT_STRING) {
                sn_cursor lc = {val, c.p};
                uint32_t n;
                if (!get_varint32(&lc, &n))
                    goto bad;
                payload = lc.p;
                plen = n;
            }
        }
    }
    if (compression != sentinel_v1_Compression_COMPRESSION_NONE_GROUPS &&
        compression != sentinel_v1_Compression_COMPRESSION_ZSTD_GROUPS) {
        set_err(err, errlen, "batch: the request holds no groups");
        return -ENOENT;
    }
    const uint8_t *batch = payload;
    size_t blen = plen;
    if (compression == sentinel_v1_Compression_COMPRESSION_ZSTD_GROUPS) {
        /* The spool's own (checked) bytes, sealed under the limit of their day: a limit lowered
         * since then splits them, it does not make them undeliverable. */
        if (declared == 0 || declared > SN_BATCH_MAX_MESSAGE_LIMIT) {
            set_err(err, errlen, "batch: uncompressed_size missing or over 256 MiB");
            goto out;
        }
        plain = malloc((size_t)declared);
        dctx =
            ZSTD_createDCtx_advanced(g_flatten_mem); /* its allocation failing: -ENOMEM, retried */
        if (plain == NULL || dctx == NULL)
            goto nomem;
        size_t n = ZSTD_decompressDCtx(dctx, plain, (size_t)declared,
                                       payload != NULL ? payload : req, plen);
        if (ZSTD_isError(n) && ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation)
            goto nomem;
        if (ZSTD_isError(n) || n != declared) {
            set_err(err, errlen, "batch: the payload does not decompress to uncompressed_size");
            goto out;
        }
        batch = plain;
        blen = n;
        ZSTD_freeDCtx(dctx);
        dctx = NULL;
    }
    /* The flat Batch: sized, then written. */
    pb_ostream_t sz = PB_OSTREAM_SIZING;
    if (blen > 0 && !write_batch_flat(&sz, batch, blen))
        goto bad;
    size_t flen = sz.bytes_written;
    flat = malloc(flen > 0 ? flen : 1);
    if (flat == NULL)
        goto nomem;
    pb_ostream_t os = pb_ostream_from_buffer(flat, flen);
    if (flen > 0 && (!write_batch_flat(&os, batch, blen) || os.bytes_written != flen))
        goto bad;
    free(plain);
    plain = NULL;
    rc = flat_fields(flat, flen, &ff);
    if (rc == -ENOMEM)
        goto nomem;
    if (rc != 0)
        goto bad;
    if (cfg->zstd_level != 0) {
        z = ZSTD_createCCtx_advanced(g_flatten_mem);
        if (z == NULL)
            goto nomem;
        size_t zr = set_zstd_params(z, cfg);
        if (ZSTD_isError(zr)) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "batch: zstd parameters refused: %s", ZSTD_getErrorName(zr));
            rc = -EINVAL;
            goto out;
        }
    }
    /* The split is a function of the record alone, never of a setting (max_message_bytes, zstd
     * on or off may change across a restart while a split batch is half sent; the same parts
     * must then be made again). Every part holds at most `budget` Batch bytes, from the grouped
     * Batch's own size (sealed under the limit of its day), at least floor (SN_BATCH_PART_FLOOR):
     * its request is then at most that size whatever zstd makes of it (ZSTD_compressBound(x) - x
     * grows with x). Whether each request fits today's limit is checked (append_request). */
    size_t unit = blen > floor ? blen : floor;
    size_t grow = ENVELOPE_MAX + (ZSTD_compressBound(unit) - unit);
    size_t budget = unit > grow ? unit - grow : 0;
    /* The common case: one request, the flat Batch as it is. */
    if (flen <= budget) {
        res.end = malloc(sizeof *res.end);
        if (res.end == NULL)
            goto nomem;
        rc = append_request(&res, &cap, z, flat, flen, max, err, errlen);
        goto done;
    }
    /* Too big for one request: the entries, in order, packed into as many parts as needed, each
     * with the id (its suffix included), the sequence and -- counted in every part, written in
     * the last -- the other fields. Part boundaries recorded in one walk, slices copied. */
    if (ff.idlen + sizeof SN_BATCH_PART_SUFFIX - 1 >= SN_BATCH_ID_MAX) {
        set_err(err, errlen, "batch: sidecar_id too long to name the parts of a split batch");
        rc = -EMSGSIZE;
        goto out;
    }
    if (ff.sequence >> (64 - SN_BATCH_PART_BITS) != 0) {
        set_err(err, errlen, "batch: sequence too large to number the parts of a split batch");
        rc = -EMSGSIZE;
        goto out;
    }
    size_t fixed = PART_HEAD_MAX + ff.tail;
    if (budget <= fixed || ff.max_entry > budget - fixed) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen,
                     "batch: an entry of %zu bytes cannot go in a part of a split batch "
                     "(%zu bytes, from the batch's own size)",
                     ff.max_entry, budget);
        rc = -EMSGSIZE;
        goto out;
    }
    size_t room = budget - fixed, nparts = 1, used = 0;
    starts = malloc((ff.n_entries + 1) * sizeof *starts); /* at most one part per entry */
    if (starts == NULL)
        goto nomem;
    starts[0] = 0;
    for (size_t e = 0; e < ff.n_entries; e++) {
        if (used + ff.entries[e].len > room) {
            starts[nparts++] = e;
            used = 0;
        }
        used += ff.entries[e].len;
    }
    starts[nparts] = ff.n_entries;
    if (nparts - 1 >= ((size_t)1 << SN_BATCH_PART_BITS)) {
        set_err(err, errlen, "batch: too many parts for a split batch");
        rc = -EMSGSIZE;
        goto out;
    }
    res.end = malloc(nparts * sizeof *res.end);
    part = malloc(budget + PART_HEAD_MAX); /* a margin over what write_part writes */
    if (res.end == NULL || part == NULL)
        goto nomem;
    rc = 0;
    for (size_t k = 0; k < nparts && rc == 0; k++) {
        size_t pl = write_part(part, flat, &ff, ff.entries, k, nparts, starts[k], starts[k + 1]);
        rc = append_request(&res, &cap, z, part, pl, max, err, errlen);
    }
done:
    if (rc != 0)
        goto out;
    *out = res;
    res = (sn_batch_parts){NULL, NULL, 0};
    goto out;
nomem:
    set_err(err, errlen, "batch: out of memory");
    rc = -ENOMEM;
    goto out;
bad:
    set_err(err, errlen, "batch: malformed grouped request");
    rc = -EINVAL;
out:
    sn_batch_parts_free(&res);
    flat_fields_free(&ff);
    ZSTD_freeCCtx(z);
    ZSTD_freeDCtx(dctx);
    free(starts);
    free(part);
    free(flat);
    free(plain);
    return rc;
}
