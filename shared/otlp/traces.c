/*
 * traces.c -- streaming OTLP trace decoder, read by hand with the wire reader of pbwire.h.
 *
 * The shape of the walk (every level is a loop over its message's fields):
 *
 *   ExportTraceServiceRequest -> ResourceSpans -> Resource -> KeyValue (resource attribute)
 *                                              -> ScopeSpans -> Span -> trace_id, span_id, times,
 *                                                                       status, KeyValue...
 *   KeyValue => sn_pbw_kv_read (pbwire.h, shared with the metrics and logs decoders):
 *               key (in place), value -> AnyValue -> string/bool/int/double/bytes, or
 *               ArrayValue -> AnyValue...
 *   A span's KeyValue in the usual encoding (key then value, one-byte lengths, a scalar or an
 *   array of scalars) is read here without the reader's callbacks (read_span_attribute), with
 *   the same result; anything else goes to sn_pbw_kv_read.
 *
 * The rules are those of the nanopb decoder this replaced (kept as the test reference in
 * tests/tools/otlp_ref_nanopb.c), so the same bytes give the same events, counts and errors:
 *  - Fields the decoder reads must have their wire type: a length-delimited field sent as a
 *    scalar is read past and refused ("wrong wire type (expected a length-delimited field)"); a
 *    kept scalar (times, kind, flags, dropped counts, status code) sent with another wire type is
 *    refused ("wrong wire type for a known field"); a uint32 over 32 bits is refused.
 *  - Unknown fields are skipped whatever their wire type (groups and wire types 6/7 refused).
 *  - Protobuf does not order fields. A resource may follow its spans and a value may precede its
 *    key. Both cases are rare; they are handled by a second pass over the same bytes, made only
 *    when the first pass saw the unusual order.
 *
 * No recursion depends on the input: the deepest path is the fixed one above (an array inside
 * an array, or a key/value list anywhere in a value, is skipped unread). Nothing is allocated.
 */
#include "otlp/traces.h"

#include "genai.h"
#include "otlp/pbwire.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Field numbers (trace.proto, resource.proto, common.proto, trace_service.proto). */
enum { REQ_RESOURCE_SPANS = 1 };
enum { RS_RESOURCE = 1, RS_SCOPE_SPANS = 2 };
enum { RES_ATTRIBUTES = 1, RES_DROPPED = 2 };
enum { SS_SPANS = 2 };
enum {
    SPAN_TRACE_ID = 1,
    SPAN_SPAN_ID = 2,
    SPAN_KIND = 6,
    SPAN_START = 7,
    SPAN_END = 8,
    SPAN_ATTRIBUTES = 9,
    SPAN_DROPPED_ATTRIBUTES = 10,
    SPAN_DROPPED_EVENTS = 12,
    SPAN_DROPPED_LINKS = 14,
    SPAN_STATUS = 15,
    SPAN_FLAGS = 16
};
enum { STATUS_CODE = 3, STATUS_CODE_ERROR = 2 };
typedef enum attr_target { TARGET_RESOURCE, TARGET_SPAN } attr_target;

/* The keys of the previous span's attributes, by position, with their sn_genai_span_key(): the
 * spans of one request mostly repeat the same keys in the same order, so an attribute's key is
 * first compared with the key at its position in the span before. A slot names the key's bytes
 * by their offset in the request, which outlives the call. */
#define KEY_MEMO_SLOTS 64
_Static_assert(SN_GENAI_KEY_OTHER == 0, "a zeroed key_memo slot is empty and names nothing");
typedef struct key_memo {
    uint32_t off; /* the key's offset in the request */
    uint16_t len; /* 0: empty slot */
    int16_t cls;  /* sn_genai_span_key() */
} key_memo;

_Static_assert(SN_OTLP_KEY_MAX == SN_PBW_KEY_MAX && SN_OTLP_VALUE_MAX == SN_PBW_VALUE_MAX,
               "traces.h documents the attribute reader's bounds");

static const char WRONG_WIRE_KNOWN[] = "wrong wire type for a known field";
static const char WRONG_WIRE_LEN[] = "wrong wire type (expected a length-delimited field)";

/* One decode call's state; lives on the caller's stack. */
typedef struct decoder {
    const uint8_t *buf; /* the request, for error offsets */
    const sn_price_table *prices;
    sn_otlp_event_fn fn;
    void *ud;
    sn_otlp_trace_stats *st;

    /* ResourceSpans level */
    sn_event tmpl;      /* resource attributes applied to an empty event */
    bool resource_seen; /* the resource has been read in this ResourceSpans */

    /* Span level */
    sn_event ev;
    bool trace_id_ok;
    bool span_id_ok;

    /* KeyValue level */
    attr_target target;
    int span_key; /* sn_genai_span_key() of the current span attribute's key */
    key_memo keys[KEY_MEMO_SLOTS];
    size_t attr_pos; /* the current attribute's position in its span */
    sn_pbw_kv kv;
    sn_genai_memo memo; /* provider normalisation and price rule of the spans before */

    /* The first failure: what, where, and the byte offset when known. */
    const char *fail;
    const char *where;
    long fail_at;
} decoder;

/* Records the first failure (the innermost: levels fail inside out). at: the position in the
 * request, or NULL when it has none. Always returns false, for `return fail(...)`. */
static bool fail(decoder *d, const uint8_t *at, const char *where, const char *what)
{
    if (d->fail)
        return false;
    d->fail = what;
    d->where = where;
    d->fail_at = at ? (long)(at - d->buf) : -1;
    return false;
}

/* A wire reader failure at r's position. */
static bool fail_wire(decoder *d, const sn_pbw *r, const char *where, sn_pbw_status st)
{
    return fail(d, r->p, where, sn_pbw_strerror(st));
}

/* Reads the next tag of a message (level names it in errors). */
static inline bool next_tag(decoder *d, sn_pbw *r, const char *level, uint32_t *field, uint32_t *wt)
{
    sn_pbw_status st = sn_pbw_tag(r, field, wt);
    return st == SN_PBW_OK || fail_wire(d, r, level, st);
}

/* Skips an unknown field. */
static inline bool skip(decoder *d, sn_pbw *r, const char *level, uint32_t wt)
{
    sn_pbw_status st = sn_pbw_skip(r, wt);
    return st == SN_PBW_OK || fail_wire(d, r, level, st);
}

/* The bytes of a length-delimited field the decoder reads (where names it). A scalar there is
 * read past and refused, without an offset. */
static inline bool field_bytes(decoder *d, sn_pbw *r, uint32_t wt, const char *level,
                               const char *where, sn_pbw *sub)
{
    sn_pbw_status st = wt == SN_PBW_LEN ? sn_pbw_len(r, sub) : sn_pbw_skip_scalar(r, wt);
    if (st != SN_PBW_OK)
        return fail_wire(d, r, level, st);
    if (wt != SN_PBW_LEN)
        return fail(d, NULL, where, WRONG_WIRE_LEN);
    return true;
}

/* A kept uint32 (or enum) varint field. */
static bool read_uint32(decoder *d, sn_pbw *r, uint32_t wt, const char *level, uint32_t *out)
{
    if (wt != SN_PBW_VARINT)
        return fail(d, r->p, level, WRONG_WIRE_KNOWN);
    sn_pbw_status st = sn_pbw_uint32(r, out);
    return st == SN_PBW_OK || fail_wire(d, r, level, st);
}

/* A kept fixed64 field. */
static bool read_fixed64(decoder *d, sn_pbw *r, uint32_t wt, const char *level, uint64_t *out)
{
    if (wt != SN_PBW_I64)
        return fail(d, r->p, level, WRONG_WIRE_KNOWN);
    sn_pbw_status st = sn_pbw_fixed64(r, out);
    return st == SN_PBW_OK || fail_wire(d, r, level, st);
}

/* One unaligned 8-byte word of p. */
static inline uint64_t word_at(const char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

/* a[0..n) == b[0..n). Keys are 10 to 45 bytes long: for 8 <= n <= 48 the words at both ends,
 * then (n > 16) the next ones in from each end, then (n > 32) the next again, overlapping where
 * they meet; the differences are or-ed together, one branch per two words. Longer keys go on
 * in a loop. */
static inline bool same_bytes(const char *a, const char *b, size_t n)
{
    if (n < 8)
        return memcmp(a, b, n) == 0;
    uint64_t diff = (word_at(a) ^ word_at(b)) | (word_at(a + n - 8) ^ word_at(b + n - 8));
    if (n <= 16 || diff)
        return diff == 0;
    diff = (word_at(a + 8) ^ word_at(b + 8)) | (word_at(a + n - 16) ^ word_at(b + n - 16));
    if (n <= 32 || diff)
        return diff == 0;
    diff = (word_at(a + 16) ^ word_at(b + 16)) | (word_at(a + n - 24) ^ word_at(b + n - 24));
    for (size_t i = 24; i + 24 < n && !diff; i += 8)
        diff = word_at(a + i) ^ word_at(b + i);
    return diff == 0;
}

/* sn_genai_span_key() of a key that missed the memo, kept in slot m when it can be named. */
static int span_key_miss(decoder *d, key_memo *m, const char *key, size_t len)
{
    int cls = sn_genai_span_key(key, len);
    size_t off = (size_t)((const uint8_t *)key - d->buf);
    if (len <= UINT16_MAX && off <= UINT32_MAX) {
        m->off = (uint32_t)off;
        m->len = (uint16_t)len;
        m->cls = (int16_t)cls;
    }
    return cls;
}

/* sn_genai_span_key() of the key of the span's attribute at position d->attr_pos, through the
 * memo of the previous span's keys. An empty slot (len 0, class SN_GENAI_KEY_OTHER) also answers
 * for an empty key, rightly: an empty key names nothing. */
static inline int span_key_class(decoder *d, const char *key, size_t len)
{
    if (d->attr_pos >= KEY_MEMO_SLOTS)
        return sn_genai_span_key(key, len);
    key_memo *m = &d->keys[d->attr_pos];
    if (m->len == len && same_bytes(key, (const char *)d->buf + m->off, len))
        return m->cls;
    return span_key_miss(d, m, key, len);
}

/* The attribute reader's questions: is this value read (never for prompt or response text of a
 * span), and where does it go (resource template or current span). A span attribute's key is
 * classified once, here; a key that names no fact still has its value read (and checked, as
 * nanopb did) but delivers nothing. */
static bool want_value(void *ud, const char *key, size_t keylen)
{
    decoder *d = ud;
    if (d->target == TARGET_RESOURCE)
        return true;
    d->span_key = span_key_class(d, key, keylen);
    return d->span_key != SN_GENAI_KEY_CONTENT;
}

static void deliver(void *ud, const char *key, size_t keylen, const sn_attr_value *v)
{
    decoder *d = ud;
    if (d->target == TARGET_RESOURCE)
        sn_genai_resource_attr(&d->tmpl, key, keylen, v);
    else if (d->span_key > SN_GENAI_KEY_OTHER)
        sn_genai_span_attr_id(&d->ev, d->span_key, v);
}

/* One KeyValue of a resource or a span (d->target says which), by the shared reader. */
static bool read_attribute(decoder *d, const sn_pbw *s)
{
    if (sn_pbw_kv_read(&d->kv, *s))
        return true;
    return fail(d, d->kv.at, d->kv.where, d->kv.what);
}

/* An AnyValue (r holds exactly its bytes) that is an array of scalars in the usual encoding
 * (gen_ai.response.finish_reasons): each element, as sn_pbw_any_scalar() reads it, is applied under
 * span key cls. The elements are all checked before the first is applied. Returns false, having
 * applied nothing, for anything else (then the reader is used). */
static bool any_scalar_array(decoder *d, int cls, sn_pbw r)
{
    size_t left = sn_pbw_left(&r);
    if (left < 2 || r.p[0] != 0x2A || r.p[1] >= 0x80 || left != (size_t)r.p[1] + 2)
        return false;
    sn_attr_value v;
    for (int pass = 0; pass < 2; pass++) {
        sn_pbw a = {r.p + 2, r.end};
        while (sn_pbw_more(&a)) {
            left = sn_pbw_left(&a);
            if (left < 2 || a.p[0] != 0x0A || a.p[1] >= 0x80 || left < (size_t)a.p[1] + 2)
                return false;
            sn_pbw e = {a.p + 2, a.p + 2 + a.p[1]};
            if (!sn_pbw_any_scalar(e, &v))
                return false;
            if (pass == 1)
                sn_genai_span_attr_id(&d->ev, cls, &v);
            a.p = e.end;
        }
        if (cls <= SN_GENAI_KEY_OTHER)
            break;
    }
    return true;
}

/* One KeyValue of a span: a key/value of one scalar, or an array of scalars, in the usual
 * encoding is read here (what the shared reader would deliver, without its callbacks); anything
 * else by the reader. */
static bool read_span_attribute(decoder *d, const sn_pbw *s)
{
    const char *key;
    size_t keylen;
    sn_pbw val;
    sn_attr_value v;
    bool ok = true;
    if (sn_pbw_kv_simple(*s, &key, &keylen, &val)) {
        int cls = span_key_class(d, key, keylen);
        if (cls == SN_GENAI_KEY_CONTENT) {
            /* prompt or response text: never read */
        } else if (sn_pbw_any_scalar(val, &v)) {
            if (cls > SN_GENAI_KEY_OTHER)
                sn_genai_span_attr_id(&d->ev, cls, &v);
        } else if (!any_scalar_array(d, cls, val)) {
            ok = read_attribute(d, s);
        }
    } else {
        ok = read_attribute(d, s);
    }
    d->attr_pos++;
    return ok;
}

/* Span.trace_id / Span.span_id: kept when exactly the right size and not all zero. */
static void read_id(const sn_pbw *s, uint8_t *out, size_t size, bool *ok)
{
    static const uint8_t zero[16];
    *ok = false;
    if (sn_pbw_left(s) != size)
        return; /* the wrong size: the span is refused */
    memcpy(out, s->p, size);
    *ok = memcmp(out, zero, size) != 0;
}

/* Counts a refused span. */
static void reject(decoder *d, sn_otlp_reject why)
{
    d->st->rejected++;
    d->st->rejected_by[why]++;
}

/* Span.status (r holds exactly its bytes): the code, when present. Returns NULL, or what is
 * wrong. */
static const char *read_status(sn_pbw *r, uint32_t *code)
{
    while (sn_pbw_more(r)) {
        uint32_t field, wt;
        sn_pbw_status st = sn_pbw_tag(r, &field, &wt);
        if (st != SN_PBW_OK)
            return sn_pbw_strerror(st);
        if (field != STATUS_CODE)
            st = sn_pbw_skip(r, wt);
        else if (wt != SN_PBW_VARINT)
            return WRONG_WIRE_KNOWN;
        else
            st = sn_pbw_uint32(r, code);
        if (st != SN_PBW_OK)
            return sn_pbw_strerror(st);
    }
    return NULL;
}

/* The fields of one Span (r holds exactly its bytes) into d->ev and the out-parameters. */
static bool read_span_fields(decoder *d, sn_pbw *r, uint64_t *start, uint64_t *end,
                             uint32_t *status_code)
{
    static const char L[] = "span";
    uint32_t ignored;
    while (sn_pbw_more(r)) {
        uint32_t field, wt;
        sn_pbw sub;
        sn_pbw_status st;
        if (!next_tag(d, r, L, &field, &wt))
            return false;
        switch (field) {
        case SPAN_TRACE_ID:
            if (!field_bytes(d, r, wt, L, "span trace_id", &sub))
                return false;
            read_id(&sub, d->ev.trace_id, sizeof(d->ev.trace_id), &d->trace_id_ok);
            break;
        case SPAN_SPAN_ID:
            if (!field_bytes(d, r, wt, L, "span span_id", &sub))
                return false;
            read_id(&sub, d->ev.span_id, sizeof(d->ev.span_id), &d->span_id_ok);
            break;
        case SPAN_START:
            if (!read_fixed64(d, r, wt, L, start))
                return false;
            break;
        case SPAN_END:
            if (!read_fixed64(d, r, wt, L, end))
                return false;
            break;
        case SPAN_ATTRIBUTES:
            /* Attributes usually follow each other: their one-byte tag is taken here. */
            for (;;) {
                if (!field_bytes(d, r, wt, L, "attribute", &sub) || !read_span_attribute(d, &sub))
                    return false;
                if (r->p == r->end || *r->p != (SPAN_ATTRIBUTES << 3 | SN_PBW_LEN))
                    break;
                r->p++;
                wt = SN_PBW_LEN;
            }
            break;
        case SPAN_KIND:
        case SPAN_DROPPED_ATTRIBUTES:
        case SPAN_DROPPED_EVENTS:
        case SPAN_DROPPED_LINKS:
            if (!read_uint32(d, r, wt, L, &ignored))
                return false;
            break;
        case SPAN_FLAGS:
            if (wt != SN_PBW_I32)
                return fail(d, r->p, L, WRONG_WIRE_KNOWN);
            st = sn_pbw_fixed32(r, &ignored);
            if (st != SN_PBW_OK)
                return fail_wire(d, r, L, st);
            break;
        case SPAN_STATUS: {
            if (wt != SN_PBW_LEN)
                return fail(d, r->p, L, WRONG_WIRE_KNOWN);
            st = sn_pbw_len(r, &sub);
            if (st != SN_PBW_OK)
                return fail_wire(d, r, L, st);
            const char *bad = read_status(&sub, status_code);
            if (bad) /* reported at the end of the status, as nanopb does */
                return fail(d, sub.end, L, bad);
            break;
        }
        default:
            if (!skip(d, r, L, wt))
                return false;
            break;
        }
    }
    return true;
}

/* One Span: the resource template plus the span's facts; an LLM call goes to the callback. */
static bool read_span(decoder *d, sn_pbw *r)
{
    d->st->spans++;
    d->ev = d->tmpl;
    d->trace_id_ok = false;
    d->span_id_ok = false;
    d->target = TARGET_SPAN;
    d->attr_pos = 0;
    uint64_t start = 0, end = 0;
    uint32_t status_code = 0;
    if (!read_span_fields(d, r, &start, &end, &status_code))
        return false;

    if (!d->trace_id_ok) {
        reject(d, SN_OTLP_REJECT_TRACE_ID);
        return true;
    }
    if (!d->span_id_ok) {
        reject(d, SN_OTLP_REJECT_SPAN_ID);
        return true;
    }
    if (start > (uint64_t)INT64_MAX || end > (uint64_t)INT64_MAX) {
        reject(d, SN_OTLP_REJECT_TIME);
        return true;
    }
    d->ev.start_unix_nano = (int64_t)start;
    d->ev.end_unix_nano = (int64_t)end;
    if (status_code == STATUS_CODE_ERROR)
        d->ev.is_error = true;

    if (!sn_genai_finish_memo(&d->ev, d->prices, &d->memo))
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

/* One ScopeSpans: its spans. */
static bool read_scope_spans(decoder *d, sn_pbw *r)
{
    d->st->scope_spans++;
    while (sn_pbw_more(r)) {
        uint32_t field, wt;
        sn_pbw sub;
        if (!next_tag(d, r, "scope_spans", &field, &wt))
            return false;
        if (field != SS_SPANS) {
            if (!skip(d, r, "scope_spans", wt))
                return false;
        } else if (!field_bytes(d, r, wt, "scope_spans", "span", &sub) || !read_span(d, &sub)) {
            return false;
        }
    }
    return true;
}

/* ResourceSpans.resource: its attributes fill the template event. */
static bool read_resource(decoder *d, sn_pbw *r)
{
    static const char L[] = "resource";
    d->target = TARGET_RESOURCE;
    while (sn_pbw_more(r)) {
        uint32_t field, wt, ignored;
        sn_pbw sub;
        if (!next_tag(d, r, L, &field, &wt))
            return false;
        if (field == RES_ATTRIBUTES) {
            if (!field_bytes(d, r, wt, L, "attribute", &sub) || !read_attribute(d, &sub))
                return false;
        } else if (field == RES_DROPPED) {
            if (!read_uint32(d, r, wt, L, &ignored))
                return false;
        } else if (!skip(d, r, L, wt)) {
            return false;
        }
    }
    d->resource_seen = true;
    return true;
}

/* One pass over a ResourceSpans. Pass 1 reads the resource and the scopes that follow it; a
 * scope before the resource (and every scope after that one, to keep their order) is left for
 * pass 2, which reads only those (*deferred says whether there are any). */
static bool resource_spans_pass(decoder *d, sn_pbw r, bool pass2, bool *deferred)
{
    static const char L[] = "resource_spans";
    while (sn_pbw_more(&r)) {
        uint32_t field, wt;
        sn_pbw sub;
        if (!next_tag(d, &r, L, &field, &wt))
            return false;
        if (field == RS_RESOURCE && !pass2) {
            if (!field_bytes(d, &r, wt, L, "resource", &sub) || !read_resource(d, &sub))
                return false;
        } else if (field == RS_SCOPE_SPANS) {
            if (!field_bytes(d, &r, wt, L, "scope_spans", &sub))
                return false;
            if (!pass2 && (!d->resource_seen || *deferred))
                *deferred = true;
            else if (!read_scope_spans(d, &sub))
                return false;
        } else if (!skip(d, &r, L, wt)) {
            return false;
        }
    }
    return true;
}

/* One ResourceSpans: the resource first, then its scopes. */
static bool read_resource_spans(decoder *d, const sn_pbw *r)
{
    d->st->resource_spans++;
    sn_event_init(&d->tmpl);
    d->resource_seen = false;
    bool deferred = false;
    if (!resource_spans_pass(d, *r, false, &deferred))
        return false;
    return !deferred || resource_spans_pass(d, *r, true, &deferred);
}

int sn_otlp_decode_traces(const uint8_t *buf, size_t len, const sn_price_table *prices,
                          sn_otlp_event_fn fn, void *ud, sn_otlp_trace_stats *stats, char *err,
                          size_t errsize)
{
    static const uint8_t empty[1];
    sn_otlp_trace_stats scratch;
    decoder d;
    d.buf = buf ? buf : empty; /* len is 0 then */
    d.prices = prices;
    d.fn = fn;
    d.ud = ud;
    d.st = stats ? stats : &scratch;
    memset(d.st, 0, sizeof(*d.st));
    d.fail = NULL;
    d.where = NULL;
    d.fail_at = -1;
    d.target = TARGET_RESOURCE;
    d.span_key = SN_GENAI_KEY_OTHER;
    memset(d.keys, 0, sizeof(d.keys)); /* every slot empty: len 0, SN_GENAI_KEY_OTHER (0) */
    d.attr_pos = 0;
    sn_genai_memo_init(&d.memo);
    d.kv.want = want_value;
    d.kv.deliver = deliver;
    d.kv.ud = &d;
    d.kv.arrays = true;
    d.kv.utf8_cut = true;
    d.kv.keys_skipped = &d.st->keys_skipped;
    d.kv.values_truncated = &d.st->values_truncated;
    d.kv.values_ignored = &d.st->values_ignored;

    sn_pbw r = sn_pbw_init(d.buf, len);
    while (sn_pbw_more(&r)) {
        uint32_t field, wt;
        sn_pbw sub;
        if (!next_tag(&d, &r, "request", &field, &wt))
            goto fail;
        if (field != REQ_RESOURCE_SPANS) {
            if (!skip(&d, &r, "request", wt))
                goto fail;
        } else if (!field_bytes(&d, &r, wt, "request", "resource_spans", &sub) ||
                   !read_resource_spans(&d, &sub)) {
            goto fail;
        }
    }
    return 0;

fail:
    if (err && errsize > 0) {
        if (d.fail_at >= 0)
            snprintf(err, errsize, "malformed OTLP trace request: %s: %s (near byte %ld)", d.where,
                     d.fail, d.fail_at);
        else
            snprintf(err, errsize, "malformed OTLP trace request: %s: %s", d.where, d.fail);
    }
    return -1;
}

const char *sn_otlp_reject_name(sn_otlp_reject r)
{
    switch (r) {
    case SN_OTLP_REJECT_TRACE_ID:
        return "trace_id";
    case SN_OTLP_REJECT_SPAN_ID:
        return "span_id";
    case SN_OTLP_REJECT_TIME:
        return "time";
    case SN_OTLP_REJECT_COUNT:
        break;
    }
    return "unknown";
}
