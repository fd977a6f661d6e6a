/*
 * logs.c -- streaming OTLP logs decoder on nanopb callbacks (see logs.h).
 *
 *   ExportLogsServiceRequest -> ResourceLogs -> ScopeLogs -> LogRecord -> event_name (prefix)
 *                                                                      -> KeyValue
 * KeyValue is read by the shared attribute reader (otlp/pbwire.h); only the value of an
 * `event.name` attribute is looked at. A callback checks that its substream points into the request
 * (a scalar where a length-delimited field belongs is a wrong wire type), a value before its key is
 * read in a second pass, and a 0 tag that stopped nanopb early is an error.
 */
#include "otlp/logs.h"

#include "genai.h"
#include "otlp/pbwire.h"

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb.h"
#include "opentelemetry/proto/common/v1/common.pb.h"
#include "opentelemetry/proto/logs/v1/logs.pb.h"

#include <pb_decode.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#if defined(PB_FIELD_32BIT) || defined(PB_NO_ERRMSG) || defined(PB_BUFFER_ONLY)
#error "libprotobuf-nanopb.a is built without PB_FIELD_32BIT, PB_NO_ERRMSG and PB_BUFFER_ONLY"
#endif

#define GENAI_PREFIX     "gen_ai."
#define GENAI_PREFIX_LEN 7
#define EVENT_NAME_KEY   "event.name"

bool sn_otlp_is_genai_event(const char *name, size_t len)
{
    return len >= GENAI_PREFIX_LEN && memcmp(name, GENAI_PREFIX, GENAI_PREFIX_LEN) == 0;
}

/* One decode call's state; lives on the caller's stack. */
typedef struct decoder {
    const uint8_t *buf;
    const uint8_t *end;
    sn_otlp_log_stats *st;
    bool genai;            /* the current record is a GenAI event (event_name field) */
    bool genai_attr;       /* ... by its event.name attribute */
    bool has_event_name;   /* the record has a non-empty event_name field (it wins) */
    sn_pbw_kv kv;          /* the attribute reader */
    uint64_t kv_counts[3]; /* its counts, not reported for logs */
    const char *fail;
    const char *where;
    long fail_at;
} decoder;

/* Records the first failure (the innermost). Always returns false. */
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

/* True when the callback's substream is a length-delimited field of the request. */
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

/* Decodes one submessage from its whole substream; a 0 tag that stopped nanopb is an error. */
static bool decode_sub(decoder *d, pb_istream_t *s, const pb_msgdesc_t *fields, void *msg,
                       const char *where)
{
    if (!pb_decode_ex(s, fields, msg, PB_DECODE_NOINIT))
        return fail(d, s, where, explain(PB_GET_ERROR(s)));
    if (s->bytes_left != 0)
        return fail(d, s, where, "field number 0");
    return true;
}

/* Reads the first bytes of a string (s holds exactly it), tells whether it names a GenAI
 * event, and skips the rest: the whole string is consumed, since nanopb calls a callback again
 * on whatever it leaves. */
static bool read_prefix(decoder *d, pb_istream_t *s, bool *genai, const char *where)
{
    char head[GENAI_PREFIX_LEN];
    size_t n = s->bytes_left < sizeof head ? s->bytes_left : sizeof head;
    if (!pb_read(s, (pb_byte_t *)head, n))
        return fail(d, s, where, explain(PB_GET_ERROR(s)));
    if (!pb_read(s, NULL, s->bytes_left))
        return fail(d, s, where, explain(PB_GET_ERROR(s)));
    *genai = sn_otlp_is_genai_event(head, n);
    return true;
}

/* LogRecord.event_name. */
static bool on_event_name(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "event_name"))
        return false;
    if (s->bytes_left == 0)
        return true; /* empty: not an event name */
    d->has_event_name = true;
    return read_prefix(d, s, &d->genai, "event_name");
}

/* The attribute reader's questions: only the value of event.name is read (any other may be
 * prompt or response text), and only whether its string names a GenAI event matters. */
static bool want_value(void *ud, const char *key, size_t keylen)
{
    (void)ud;
    return keylen == sizeof EVENT_NAME_KEY - 1 && memcmp(key, EVENT_NAME_KEY, keylen) == 0;
}

static void deliver(void *ud, const char *key, size_t keylen, const sn_attr_value *v)
{
    (void)key;
    (void)keylen;
    decoder *d = ud;
    if (v->type == SN_ATTR_STRING)
        d->genai_attr = sn_otlp_is_genai_event(v->str, v->len);
}

/* One KeyValue of a log record, read by the shared attribute reader (otlp/pbwire.h) straight
 * from the request bytes; nanopb skips them after. */
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

/* One LogRecord: counted, and counted again when it is a GenAI event. */
static bool on_record(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "log record"))
        return false;
    d->st->log_records++;
    d->genai = d->genai_attr = d->has_event_name = false;
    opentelemetry_proto_logs_v1_LogRecord r = opentelemetry_proto_logs_v1_LogRecord_init_zero;
    r.attributes.funcs.decode = on_attribute;
    r.attributes.arg = d;
    r.event_name.funcs.decode = on_event_name;
    r.event_name.arg = d;
    if (!decode_sub(d, s, opentelemetry_proto_logs_v1_LogRecord_fields, &r, "log record"))
        return false;
    if (d->has_event_name ? d->genai : d->genai_attr)
        d->st->genai_events++;
    return true;
}

/* One ScopeLogs: its records. */
static bool on_scope_logs(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "scope_logs"))
        return false;
    d->st->scope_logs++;
    opentelemetry_proto_logs_v1_ScopeLogs sl = opentelemetry_proto_logs_v1_ScopeLogs_init_zero;
    sl.log_records.funcs.decode = on_record;
    sl.log_records.arg = d;
    return decode_sub(d, s, opentelemetry_proto_logs_v1_ScopeLogs_fields, &sl, "scope_logs");
}

/* One ResourceLogs: its scopes (the resource is skipped unread). */
static bool on_resource_logs(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "resource_logs"))
        return false;
    d->st->resource_logs++;
    opentelemetry_proto_logs_v1_ResourceLogs rl =
        opentelemetry_proto_logs_v1_ResourceLogs_init_zero;
    rl.scope_logs.funcs.decode = on_scope_logs;
    rl.scope_logs.arg = d;
    return decode_sub(d, s, opentelemetry_proto_logs_v1_ResourceLogs_fields, &rl, "resource_logs");
}

int sn_otlp_decode_logs(const uint8_t *buf, size_t len, sn_otlp_log_stats *stats, char *err,
                        size_t errsize)
{
    static const uint8_t empty[1];
    sn_otlp_log_stats scratch;
    decoder d;
    memset(&d, 0, sizeof(d));
    if (!buf)
        buf = empty;
    d.buf = buf;
    d.end = buf + len;
    d.st = stats ? stats : &scratch;
    memset(d.st, 0, sizeof(*d.st));
    d.kv.want = want_value;
    d.kv.deliver = deliver;
    d.kv.ud = &d;
    d.kv.keys_skipped = &d.kv_counts[0];
    d.kv.values_truncated = &d.kv_counts[1];
    d.kv.values_ignored = &d.kv_counts[2];

    pb_istream_t s = pb_istream_from_buffer(buf, len);
    opentelemetry_proto_collector_logs_v1_ExportLogsServiceRequest req =
        opentelemetry_proto_collector_logs_v1_ExportLogsServiceRequest_init_zero;
    req.resource_logs.funcs.decode = on_resource_logs;
    req.resource_logs.arg = &d;
    if (decode_sub(&d, &s, opentelemetry_proto_collector_logs_v1_ExportLogsServiceRequest_fields,
                   &req, "request"))
        return 0;
    if (err && errsize > 0) {
        if (d.fail_at >= 0)
            snprintf(err, errsize, "malformed OTLP logs request: %s: %s (near byte %ld)", d.where,
                     d.fail, d.fail_at);
        else
            snprintf(err, errsize, "malformed OTLP logs request: %s: %s", d.where, d.fail);
    }
    return -1;
}
