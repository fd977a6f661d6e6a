/*
 * otlp_ref_nanopb.c -- the reference for the hand-written trace decoder (shared/otlp/traces.c):
 * the sidecar's streaming OTLP trace decoder on nanopb callbacks as it was until the hand
 * reader replaced it (commit b57a952), kept unchanged but for its name so that tests and the
 * differential fuzzer can compare the two on any input: same events, same counts, same errors.
 *
 * The shape of the walk (-> is a nanopb callback, => a field read with nanopb's field API):
 *
 *   ExportTraceServiceRequest -> ResourceSpans -> Resource -> KeyValue (resource attribute)
 *                                              -> ScopeSpans -> Span -> trace_id, span_id
 *                                                                    -> KeyValue (span attribute)
 *   KeyValue -> key (bounded buffer)
 *            -> value => AnyValue => string/bool/int/double/bytes, or ArrayValue => AnyValue...
 *
 * Generated descriptors drive the message levels; AnyValue and ArrayValue are read with
 * pb_decode_tag()/pb_decode_varint()/... because nanopb's oneof-of-callbacks loses the presence
 * of scalar members, and presence matters (an int 0 is a token count).
 *
 * Three facts about nanopb callbacks shape the code:
 *  1. A callback is not told the field's wire type. A length-delimited field arrives as a
 *     substream over the request buffer itself; a scalar arrives as a substream over a copy on
 *     nanopb's stack. So a callback that expects bytes checks that its substream points into the
 *     request (wire_is_len), which is why the decoder takes a whole buffer, never a reader.
 *  2. Protobuf does not order fields. A resource may follow its spans and a value may precede its
 *     key. Both cases are rare; they are handled by a second pass over the same bytes (a copy of
 *     the substream), made only when the first pass saw the unusual order.
 *  3. nanopb stops a message at a 0 tag byte and re-invokes the callback on what is left. Protobuf
 *     forbids field number 0, so each submessage callback requires its substream to be consumed.
 *
 * No recursion depends on the input: the deepest path is the fixed one above (an array inside
 * an array, or a key/value list anywhere in a value, is skipped unread).
 */
#include "otlp_ref.h"

#include "genai.h"

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "opentelemetry/proto/common/v1/common.pb.h"
#include "opentelemetry/proto/resource/v1/resource.pb.h"
#include "opentelemetry/proto/trace/v1/trace.pb.h"

#include <pb_decode.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The generated code and Debian's libprotobuf-nanopb.a must agree on nanopb's struct layouts:
 * the library is built with the defaults (16-bit descriptors, error messages, stream callbacks). */
#if defined(PB_FIELD_32BIT) || defined(PB_NO_ERRMSG) || defined(PB_BUFFER_ONLY)
#error "libprotobuf-nanopb.a is built without PB_FIELD_32BIT, PB_NO_ERRMSG and PB_BUFFER_ONLY"
#endif
_Static_assert(sizeof(pb_istream_t) == 4 * sizeof(void *), "pb_istream_t layout differs");

/* Field numbers of the three messages read by hand (common.proto). */
enum { KV_KEY = 1, KV_VALUE = 2 };
enum {
    ANY_STRING = 1,
    ANY_BOOL = 2,
    ANY_INT = 3,
    ANY_DOUBLE = 4,
    ANY_ARRAY = 5,
    ANY_KVLIST = 6,
    ANY_BYTES = 7,
    ARRAY_VALUES = 1
};

typedef enum attr_target { TARGET_RESOURCE, TARGET_SPAN } attr_target;
typedef enum key_state { KEY_NONE, KEY_OK, KEY_SKIP } key_state;

/* One decode call's state; lives on the caller's stack. */
typedef struct decoder {
    const uint8_t *buf; /* the request, to tell length-delimited fields from scalars */
    const uint8_t *end;
    const sn_price_table *prices;
    sn_otlp_event_fn fn;
    void *ud;
    sn_otlp_trace_stats *st;

    /* ResourceSpans level */
    sn_event tmpl;        /* resource attributes applied to an empty event */
    bool resource_seen;   /* the resource has been read in this ResourceSpans */
    bool scopes_deferred; /* scope_spans came before the resource: read them in pass 2 */
    bool scopes_pass2;

    /* Span level */
    sn_event ev;
    bool trace_id_ok;
    bool span_id_ok;

    /* KeyValue level */
    attr_target target;
    key_state key;
    bool value_before_key;
    size_t keylen;
    char keybuf[SN_OTLP_KEY_MAX];
    char valbuf[SN_OTLP_VALUE_MAX];

    /* The first failure: what, where, and the byte offset when known. */
    const char *fail;
    const char *where;
    long fail_at;
} decoder;

/* The offset of a stream's position in the request, or -1 when the stream reads something else
 * (nanopb's stack copy of a scalar). Compared as integers: the pointers may be to different
 * objects. */
static long offset_in_request(const decoder *d, const pb_istream_t *s)
{
    uintptr_t p = (uintptr_t)s->state;
    uintptr_t lo = (uintptr_t)d->buf, hi = (uintptr_t)d->end;
    return p >= lo && p <= hi ? (long)(p - lo) : -1;
}

/* Records the first failure (the innermost: callbacks fail inside out). Always returns false so
 * callers can `return fail(...)`. */
static bool fail(decoder *d, const pb_istream_t *s, const char *where, const char *what)
{
    if (d->fail)
        return false;
    d->fail = what;
    d->where = where;
    d->fail_at = offset_in_request(d, s);
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
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(nanopb_msg, map[i].from) == 0)
            return map[i].to;
    return nanopb_msg;
}

/* True when a callback's substream is a length-delimited field (it reads the request buffer
 * itself); false when nanopb handed it a scalar copied to its stack. Fails the decode if not. */
static bool wire_is_len(decoder *d, const pb_istream_t *s, const char *where)
{
    if (offset_in_request(d, s) >= 0)
        return true;
    if (!d->fail) { /* the scalar's stack copy has no useful offset */
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

/* Hands one attribute value to the conventions module (resource template or current span). */
static void deliver(decoder *d, const sn_attr_value *v)
{
    if (d->target == TARGET_RESOURCE)
        sn_genai_resource_attr(&d->tmpl, d->keybuf, d->keylen, v);
    else
        sn_genai_span_attr(&d->ev, d->keybuf, d->keylen, v);
}

/* The length of buf[0..n) without a UTF-8 sequence the cut at n left incomplete. */
static size_t utf8_whole(const char *buf, size_t n)
{
    size_t lead = n;
    while (lead > 0 && ((unsigned char)buf[lead - 1] & 0xC0) == 0x80)
        lead--;
    if (lead == 0)
        return n; /* no lead byte in reach: not UTF-8 text, leave it */
    unsigned char c = (unsigned char)buf[lead - 1];
    size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return n - (lead - 1) < want ? lead - 1 : n;
}

/* Reads a length-delimited string/bytes value of AnyValue into the bounded value buffer (cut
 * at SN_OTLP_VALUE_MAX bytes, the rest skipped) and delivers it. */
static bool read_string_value(decoder *d, pb_istream_t *s, sn_attr_type type)
{
    pb_istream_t sub;
    if (!pb_make_string_substream(s, &sub))
        return fail(d, s, "attribute value", explain(PB_GET_ERROR(s)));
    size_t n = sub.bytes_left;
    bool truncated = n > sizeof(d->valbuf);
    if (truncated) {
        n = sizeof(d->valbuf);
        d->st->values_truncated++;
    }
    if (!pb_read(&sub, (pb_byte_t *)d->valbuf, n))
        return fail(d, &sub, "attribute value", explain(PB_GET_ERROR(&sub)));
    if (!pb_close_string_substream(s, &sub))
        return fail(d, s, "attribute value", explain(PB_GET_ERROR(s)));
    if (type == SN_ATTR_STRING && truncated)
        n = utf8_whole(d->valbuf, n);
    sn_attr_value v = {.type = type, .str = d->valbuf, .len = n};
    deliver(d, &v);
    return true;
}

static bool read_any_value(decoder *d, pb_istream_t *s, bool in_array);

/* Skips a nested value the decoder does not read (counted). */
static bool skip_ignored(decoder *d, pb_istream_t *s, pb_wire_type_t wt)
{
    d->st->values_ignored++;
    if (!pb_skip_field(s, wt))
        return fail(d, s, "attribute value", explain(PB_GET_ERROR(s)));
    return true;
}

/* Reads an ArrayValue (s holds exactly its bytes): each element is an AnyValue delivered under
 * the current key; elements that are arrays or key/value lists are skipped. */
static bool read_array_value(decoder *d, pb_istream_t *s)
{
    while (s->bytes_left > 0) {
        pb_wire_type_t wt;
        uint32_t tag;
        bool eof;
        if (!pb_decode_tag(s, &wt, &tag, &eof))
            return fail(d, s, "attribute array", eof ? "field number 0" : explain(PB_GET_ERROR(s)));
        if (tag == 0)
            return fail(d, s, "attribute array", "field number 0");
        if (tag != ARRAY_VALUES) {
            if (!pb_skip_field(s, wt))
                return fail(d, s, "attribute array", explain(PB_GET_ERROR(s)));
            continue;
        }
        if (wt != PB_WT_STRING)
            return fail(d, s, "attribute array", "wrong wire type for ArrayValue.values");
        pb_istream_t sub;
        if (!pb_make_string_substream(s, &sub))
            return fail(d, s, "attribute array", explain(PB_GET_ERROR(s)));
        if (!read_any_value(d, &sub, true))
            return false;
        if (!pb_close_string_substream(s, &sub))
            return fail(d, s, "attribute array", explain(PB_GET_ERROR(s)));
    }
    return true;
}

/* Reads an AnyValue (s holds exactly its bytes) and delivers each scalar member. in_array: the
 * value is an array element, so a nested array is skipped rather than read. */
static bool read_any_value(decoder *d, pb_istream_t *s, bool in_array)
{
    static const pb_wire_type_t expect[] = {
        [ANY_STRING] = PB_WT_STRING, [ANY_BOOL] = PB_WT_VARINT,  [ANY_INT] = PB_WT_VARINT,
        [ANY_DOUBLE] = PB_WT_64BIT,  [ANY_ARRAY] = PB_WT_STRING, [ANY_KVLIST] = PB_WT_STRING,
        [ANY_BYTES] = PB_WT_STRING,
    };
    while (s->bytes_left > 0) {
        pb_wire_type_t wt;
        uint32_t tag;
        bool eof;
        if (!pb_decode_tag(s, &wt, &tag, &eof))
            return fail(d, s, "attribute value", eof ? "field number 0" : explain(PB_GET_ERROR(s)));
        if (tag == 0)
            return fail(d, s, "attribute value", "field number 0");
        if (tag < ANY_STRING || tag > ANY_BYTES) {
            if (!pb_skip_field(s, wt))
                return fail(d, s, "attribute value", explain(PB_GET_ERROR(s)));
            continue;
        }
        if (wt != expect[tag])
            return fail(d, s, "attribute value", "wrong wire type for an AnyValue member");
        sn_attr_value v = {0};
        uint64_t u;
        switch (tag) {
        case ANY_STRING:
            if (!read_string_value(d, s, SN_ATTR_STRING))
                return false;
            continue;
        case ANY_BYTES:
            if (!read_string_value(d, s, SN_ATTR_BYTES))
                return false;
            continue;
        case ANY_BOOL:
            if (!pb_decode_varint(s, &u))
                return fail(d, s, "attribute value", explain(PB_GET_ERROR(s)));
            v.type = SN_ATTR_BOOL;
            v.b = u != 0;
            break;
        case ANY_INT:
            if (!pb_decode_varint(s, &u))
                return fail(d, s, "attribute value", explain(PB_GET_ERROR(s)));
            v.type = SN_ATTR_INT;
            v.i = (int64_t)u; /* int64 is two's complement on the wire */
            break;
        case ANY_DOUBLE:
            if (!pb_decode_fixed64(s, &v.d))
                return fail(d, s, "attribute value", explain(PB_GET_ERROR(s)));
            v.type = SN_ATTR_DOUBLE;
            break;
        case ANY_ARRAY: {
            if (in_array) { /* an array inside an array carries no LLM fact */
                if (!skip_ignored(d, s, wt))
                    return false;
                continue;
            }
            pb_istream_t sub;
            if (!pb_make_string_substream(s, &sub))
                return fail(d, s, "attribute value", explain(PB_GET_ERROR(s)));
            if (!read_array_value(d, &sub))
                return false;
            if (!pb_close_string_substream(s, &sub))
                return fail(d, s, "attribute value", explain(PB_GET_ERROR(s)));
            continue;
        }
        default: /* ANY_KVLIST: nothing in a key/value list is an LLM fact */
            if (!skip_ignored(d, s, wt))
                return false;
            continue;
        }
        deliver(d, &v);
    }
    return true;
}

/* KeyValue.key: copied into the key buffer; a key that does not fit marks the attribute
 * skipped (no convention has such a key). */
static bool on_key(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "attribute key"))
        return false;
    size_t n = s->bytes_left;
    if (n >= sizeof(d->keybuf)) {
        d->key = KEY_SKIP;
        d->st->keys_skipped++;
        return true; /* nanopb skips the unread rest */
    }
    if (!pb_read(s, (pb_byte_t *)d->keybuf, n))
        return fail(d, s, "attribute key", explain(PB_GET_ERROR(s)));
    d->keybuf[n] = '\0';
    d->keylen = n;
    d->key = KEY_OK;
    return true;
}

/* KeyValue.value: read and delivered when the key is known; noted for a second pass when the
 * value came first. */
static bool on_value(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "attribute value"))
        return false;
    if (d->key == KEY_NONE) {
        d->value_before_key = true;
        return true;
    }
    if (d->key == KEY_SKIP)
        return true;
    if (d->target == TARGET_SPAN && sn_genai_is_content_key(d->keybuf, d->keylen))
        return true; /* prompt or response text: never a fact, never read */
    return read_any_value(d, s, false);
}

/* Reads the fields of one KeyValue (s holds exactly its bytes) by hand -- the hottest message of
 * a request, about twenty per span, so nanopb's per-message set-up is worth skipping -- with
 * nanopb's rules: unknown fields skipped, each occurrence of key or value handed to on_key /
 * on_value (a scalar wire type there is an error), field number 0 an error. values_only: the
 * second pass, when a value came before its key. */
static bool read_key_value(decoder *d, pb_istream_t *s, bool values_only)
{
    void *arg = d;
    while (s->bytes_left > 0) {
        pb_wire_type_t wt;
        uint32_t tag;
        bool eof;
        if (!pb_decode_tag(s, &wt, &tag, &eof))
            return fail(d, s, "attribute", eof ? "field number 0" : explain(PB_GET_ERROR(s)));
        if (tag == 0)
            return fail(d, s, "attribute", "field number 0");
        if ((tag != KV_KEY && tag != KV_VALUE) || (values_only && tag == KV_KEY)) {
            if (!pb_skip_field(s, wt))
                return fail(d, s, "attribute", explain(PB_GET_ERROR(s)));
            continue;
        }
        const char *where = tag == KV_KEY ? "attribute key" : "attribute value";
        if (wt != PB_WT_STRING) {
            if (wt != PB_WT_VARINT && wt != PB_WT_64BIT && wt != PB_WT_32BIT)
                return fail(d, s, "attribute", "invalid wire type");
            return fail(d, s, where, "wrong wire type (expected a length-delimited field)");
        }
        pb_istream_t sub;
        if (!pb_make_string_substream(s, &sub))
            return fail(d, s, "attribute", explain(PB_GET_ERROR(s)));
        if (!(tag == KV_KEY ? on_key(&sub, NULL, &arg) : on_value(&sub, NULL, &arg)))
            return false;
        if (!pb_close_string_substream(s, &sub)) /* skips what the callback left unread */
            return fail(d, s, "attribute", explain(PB_GET_ERROR(s)));
    }
    return true;
}

/* One KeyValue of a resource or a span (d->target says which). */
static bool on_attribute(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "attribute"))
        return false;
    pb_istream_t again = *s;
    d->key = KEY_NONE;
    d->value_before_key = false;
    if (!read_key_value(d, s, false))
        return false;
    if (d->value_before_key && d->key == KEY_OK && !read_key_value(d, &again, true))
        return false;
    return true;
}

/* Span.trace_id / Span.span_id: kept when exactly the right size and not all zero. */
static bool read_id(decoder *d, pb_istream_t *s, uint8_t *out, size_t size, bool *ok)
{
    static const uint8_t zero[16];
    *ok = false;
    if (s->bytes_left != size)
        return true; /* the wrong size: the span is refused, the bytes skipped */
    if (!pb_read(s, out, size))
        return fail(d, s, "span id", explain(PB_GET_ERROR(s)));
    *ok = memcmp(out, zero, size) != 0;
    return true;
}

static bool on_trace_id(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "span trace_id"))
        return false;
    return read_id(d, s, d->ev.trace_id, sizeof(d->ev.trace_id), &d->trace_id_ok);
}

static bool on_span_id(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "span span_id"))
        return false;
    return read_id(d, s, d->ev.span_id, sizeof(d->ev.span_id), &d->span_id_ok);
}

/* Counts a refused span. */
static void reject(decoder *d, sn_otlp_reject why)
{
    d->st->rejected++;
    d->st->rejected_by[why]++;
}

/* One Span: the resource template plus the span's facts; an LLM call goes to the callback. */
static bool on_span(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "span"))
        return false;
    d->st->spans++;
    d->ev = d->tmpl;
    d->trace_id_ok = false;
    d->span_id_ok = false;
    d->target = TARGET_SPAN;

    opentelemetry_proto_trace_v1_Span sp = opentelemetry_proto_trace_v1_Span_init_zero;
    sp.trace_id.funcs.decode = on_trace_id;
    sp.trace_id.arg = d;
    sp.span_id.funcs.decode = on_span_id;
    sp.span_id.arg = d;
    sp.attributes.funcs.decode = on_attribute;
    sp.attributes.arg = d;
    if (!decode_sub(d, s, opentelemetry_proto_trace_v1_Span_fields, &sp, "span"))
        return false;

    if (!d->trace_id_ok) {
        reject(d, SN_OTLP_REJECT_TRACE_ID);
        return true;
    }
    if (!d->span_id_ok) {
        reject(d, SN_OTLP_REJECT_SPAN_ID);
        return true;
    }
    if (sp.start_time_unix_nano > (uint64_t)INT64_MAX ||
        sp.end_time_unix_nano > (uint64_t)INT64_MAX) {
        reject(d, SN_OTLP_REJECT_TIME);
        return true;
    }
    d->ev.start_unix_nano = (int64_t)sp.start_time_unix_nano;
    d->ev.end_unix_nano = (int64_t)sp.end_time_unix_nano;
    if (sp.has_status &&
        sp.status.code == opentelemetry_proto_trace_v1_Status_StatusCode_STATUS_CODE_ERROR)
        d->ev.is_error = true;

    if (!sn_genai_finish(&d->ev, d->prices))
        return true; /* not an LLM call */
    if (d->ev.end_unix_nano < d->ev.start_unix_nano) {
        reject(d, SN_OTLP_REJECT_TIME);
        return true;
    }
    d->st->llm_events++;
    if (d->fn)
        d->fn(&d->ev, d->ud);
    return true;
}

/* One ScopeSpans: its spans. Skipped (and read in pass 2) while the resource is still unknown. */
static bool on_scope_spans(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "scope_spans"))
        return false;
    if (!d->scopes_pass2 && (!d->resource_seen || d->scopes_deferred)) {
        d->scopes_deferred = true;
        return true;
    }
    d->st->scope_spans++;
    opentelemetry_proto_trace_v1_ScopeSpans ss = opentelemetry_proto_trace_v1_ScopeSpans_init_zero;
    ss.spans.funcs.decode = on_span;
    ss.spans.arg = d;
    return decode_sub(d, s, opentelemetry_proto_trace_v1_ScopeSpans_fields, &ss, "scope_spans");
}

/* ResourceSpans.resource: its attributes fill the template event. */
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

/* One ResourceSpans: the resource first, then its scopes (a second pass when the scopes came
 * first on the wire). */
static bool on_resource_spans(pb_istream_t *s, const pb_field_t *field, void **arg)
{
    (void)field;
    decoder *d = *arg;
    if (!wire_is_len(d, s, "resource_spans"))
        return false;
    d->st->resource_spans++;
    sn_event_init(&d->tmpl);
    d->resource_seen = false;
    d->scopes_deferred = false;
    d->scopes_pass2 = false;

    pb_istream_t again = *s;
    opentelemetry_proto_trace_v1_ResourceSpans rs =
        opentelemetry_proto_trace_v1_ResourceSpans_init_zero;
    rs.resource.funcs.decode = on_resource;
    rs.resource.arg = d;
    rs.scope_spans.funcs.decode = on_scope_spans;
    rs.scope_spans.arg = d;
    if (!decode_sub(d, s, opentelemetry_proto_trace_v1_ResourceSpans_fields, &rs, "resource_spans"))
        return false;
    if (!d->scopes_deferred)
        return true;
    rs.resource.funcs.decode = NULL; /* pass 2: the scopes only */
    d->scopes_pass2 = true;
    return decode_sub(d, &again, opentelemetry_proto_trace_v1_ResourceSpans_fields, &rs,
                      "resource_spans");
}

int sn_ref_decode_traces_nanopb(const uint8_t *buf, size_t len, const sn_price_table *prices,
                                sn_otlp_event_fn fn, void *ud, sn_otlp_trace_stats *stats,
                                char *err, size_t errsize)
{
    static const uint8_t empty[1];
    sn_otlp_trace_stats scratch;
    decoder d;
    memset(&d, 0, sizeof(d));
    if (!buf)
        buf = empty; /* len is 0 then; the range checks need a real pointer */
    d.buf = buf;
    d.end = buf + len;
    d.prices = prices;
    d.fn = fn;
    d.ud = ud;
    d.st = stats ? stats : &scratch;
    memset(d.st, 0, sizeof(*d.st));

    pb_istream_t s = pb_istream_from_buffer(buf, len);
    opentelemetry_proto_collector_trace_v1_ExportTraceServiceRequest req =
        opentelemetry_proto_collector_trace_v1_ExportTraceServiceRequest_init_zero;
    req.resource_spans.funcs.decode = on_resource_spans;
    req.resource_spans.arg = &d;
    if (decode_sub(&d, &s, opentelemetry_proto_collector_trace_v1_ExportTraceServiceRequest_fields,
                   &req, "request"))
        return 0;

    if (err && errsize > 0) {
        if (d.fail_at >= 0)
            snprintf(err, errsize, "malformed OTLP trace request: %s: %s (near byte %ld)", d.where,
                     d.fail, d.fail_at);
        else
            snprintf(err, errsize, "malformed OTLP trace request: %s: %s", d.where, d.fail);
    }
    return -1;
}
