/*
 * pbwire.h -- a small bounds-checked protobuf wire reader for the hand-written OTLP decoders.
 *
 * A sn_pbw is a cursor over one message's bytes [p, end). Every read checks the bound first and
 * fails with a sn_pbw_status instead of reading past it; nothing is allocated and nothing is
 * copied (a length-delimited field becomes a sub-cursor over the same bytes). The rules are
 * nanopb 0.4's, so a decoder moved from nanopb to this reader accepts and refuses exactly the
 * same inputs:
 *   - a tag or a length is a varint that must fit 32 bits (trailing 0x80 / sign-extension bytes
 *     allowed, at most 10 bytes); field number 0 is an error;
 *   - a value varint has at most 10 bytes, the 10th 0 or 1 (no bits past 64);
 *   - a length past the end of its message is an error when the field is read
 *     (SN_PBW_PAST_END) and a truncation when it is skipped (SN_PBW_TRUNCATED);
 *   - wire types 3, 4 (groups), 6 and 7 are invalid; an unknown field of any other wire type is
 *     skipped (a skipped varint may be of any length).
 *
 * The fast paths are inline; the cursor is a plain value, so a sub-cursor is a copy.
 * Thread safety: no state besides the caller's cursors.
 */
#ifndef SN_OTLP_PBWIRE_H
#define SN_OTLP_PBWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "genai.h" /* sn_attr_value */

typedef enum sn_pbw_wt {
    SN_PBW_VARINT = 0,
    SN_PBW_I64 = 1,
    SN_PBW_LEN = 2,
    SN_PBW_I32 = 5
} sn_pbw_wt;

typedef enum sn_pbw_status {
    SN_PBW_OK = 0,
    SN_PBW_TRUNCATED,   /* the message ends inside a value */
    SN_PBW_PAST_END,    /* a length runs past the end of its message */
    SN_PBW_VARINT_LONG, /* a varint too long, or a tag/length over 32 bits */
    SN_PBW_BAD_WIRE,    /* wire type 3, 4, 6 or 7 */
    SN_PBW_FIELD_ZERO,  /* field number 0 */
    SN_PBW_TOO_LARGE    /* a value over its field's range (uint32) */
} sn_pbw_status;

/* A cursor over one message: p is the next byte, end one past the last. */
typedef struct sn_pbw {
    const uint8_t *p;
    const uint8_t *end;
} sn_pbw;

/* The status in the terms the decoders report ("truncated message", ...); static text. */
const char *sn_pbw_strerror(sn_pbw_status st);

/* Slow paths of the inline readers below (multi-byte varints). */
sn_pbw_status sn_pbw_varint32_slow(sn_pbw *r, uint32_t *out);
sn_pbw_status sn_pbw_varint_slow(sn_pbw *r, uint64_t *out);

/* Skips one field's value of wire type wt (the tag already read). */
sn_pbw_status sn_pbw_skip(sn_pbw *r, uint32_t wt);

/* A cursor over buf[0..len). */
static inline sn_pbw sn_pbw_init(const uint8_t *buf, size_t len)
{
    sn_pbw r = {buf, buf + len};
    return r;
}

static inline bool sn_pbw_more(const sn_pbw *r)
{
    return r->p < r->end;
}

static inline size_t sn_pbw_left(const sn_pbw *r)
{
    return (size_t)(r->end - r->p);
}

/* A varint that must fit 32 bits (tags and lengths). One and two bytes inline. */
static inline sn_pbw_status sn_pbw_varint32(sn_pbw *r, uint32_t *out)
{
    if (r->p < r->end && !(*r->p & 0x80)) {
        *out = *r->p++;
        return SN_PBW_OK;
    }
    if (r->end - r->p >= 2 && !(r->p[1] & 0x80)) {
        *out = (uint32_t)(r->p[0] & 0x7F) | (uint32_t)r->p[1] << 7;
        r->p += 2;
        return SN_PBW_OK;
    }
    return sn_pbw_varint32_slow(r, out);
}

/* A 64-bit varint value. One and two bytes inline. */
static inline sn_pbw_status sn_pbw_varint(sn_pbw *r, uint64_t *out)
{
    if (r->p < r->end && !(*r->p & 0x80)) {
        *out = *r->p++;
        return SN_PBW_OK;
    }
    if (r->end - r->p >= 2 && !(r->p[1] & 0x80)) {
        *out = (uint64_t)(r->p[0] & 0x7F) | (uint64_t)r->p[1] << 7;
        r->p += 2;
        return SN_PBW_OK;
    }
    return sn_pbw_varint_slow(r, out);
}

/* A tag: *field (never 0 on success) and *wt (0..7; not checked here, see sn_pbw_skip). */
static inline sn_pbw_status sn_pbw_tag(sn_pbw *r, uint32_t *field, uint32_t *wt)
{
    uint32_t t;
    sn_pbw_status st = sn_pbw_varint32(r, &t);
    if (st != SN_PBW_OK)
        return st;
    *field = t >> 3;
    *wt = t & 7;
    return *field == 0 ? SN_PBW_FIELD_ZERO : SN_PBW_OK;
}

/* A little-endian fixed64 (a double's bits too). The cursor stays put when truncated. */
static inline sn_pbw_status sn_pbw_fixed64(sn_pbw *r, uint64_t *out)
{
    if (r->end - r->p < 8)
        return SN_PBW_TRUNCATED;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | r->p[i];
    r->p += 8;
    *out = v;
    return SN_PBW_OK;
}

static inline sn_pbw_status sn_pbw_fixed32(sn_pbw *r, uint32_t *out)
{
    if (r->end - r->p < 4)
        return SN_PBW_TRUNCATED;
    *out = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
           (uint32_t)r->p[3] << 24;
    r->p += 4;
    return SN_PBW_OK;
}

/* A length-delimited value: *sub covers its bytes and r moves past them. On SN_PBW_PAST_END r
 * stands after the length. */
static inline sn_pbw_status sn_pbw_len(sn_pbw *r, sn_pbw *sub)
{
    uint32_t n;
    sn_pbw_status st = sn_pbw_varint32(r, &n);
    if (st != SN_PBW_OK)
        return st;
    if ((size_t)(r->end - r->p) < n)
        return SN_PBW_PAST_END;
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    return SN_PBW_OK;
}

/* A uint32 varint field (nanopb refuses values over 32 bits with SN_PBW_TOO_LARGE). */
static inline sn_pbw_status sn_pbw_uint32(sn_pbw *r, uint32_t *out)
{
    uint64_t v;
    sn_pbw_status st = sn_pbw_varint(r, &v);
    if (st != SN_PBW_OK)
        return st;
    if (v > UINT32_MAX)
        return SN_PBW_TOO_LARGE;
    *out = (uint32_t)v;
    return SN_PBW_OK;
}

/* Skips the value of a scalar field whose wire type is not the expected length-delimited one,
 * as nanopb reads such a value for a callback (a varint of at most 10 bytes). */
sn_pbw_status sn_pbw_skip_scalar(sn_pbw *r, uint32_t wt);

/* ---------------------------------------------------------------- KeyValue and AnyValue
 *
 * The one reader of OTLP attributes (common.proto KeyValue / AnyValue / ArrayValue) for the
 * trace, metrics and logs decoders. Nothing is copied: a KeyValue's key and a string value are
 * handed to the caller as pointers into the message bytes. A key of SN_PBW_KEY_MAX bytes or more
 * is skipped with its value (counted); the value, when the caller wants it, is delivered member
 * by member as sn_attr_value (strings and bytes cut at SN_PBW_VALUE_MAX, counted; scalars keep
 * their presence: an int 0 is a value). A key/value list, and an array inside an array, are
 * skipped unread (counted), so the depth is fixed by the schema. A value before its key is read
 * in a second pass over the same bytes. The common layout (key, then value, nothing else, one-
 * byte lengths) takes a fast path that gives the same results as the general one.
 * Errors ("attribute", "attribute key", "attribute value", "attribute array" + what + where):
 * a key or value that is not length-delimited, an AnyValue member or array element of the wrong
 * wire type, and everything the wire reader refuses.
 */
#define SN_PBW_KEY_MAX   256
#define SN_PBW_VALUE_MAX 1024

typedef struct sn_pbw_kv {
    /* Set by the caller. want may be NULL (every value is read); it is asked when a value is
     * about to be read, with its key. deliver receives each value; key and value point into the
     * message bytes and are borrowed for the call only (not NUL-terminated). */
    bool (*want)(void *ud, const char *key, size_t keylen);
    void (*deliver)(void *ud, const char *key, size_t keylen, const sn_attr_value *v);
    void *ud;
    bool arrays;   /* an ArrayValue's elements are delivered (true) or it is skipped (false) */
    bool utf8_cut; /* a cut string also drops a UTF-8 sequence the cut split */
    uint64_t *keys_skipped, *values_truncated, *values_ignored; /* counters, never NULL */

    /* The first failure, set when sn_pbw_kv_read returns false; at is its position. */
    const char *where;
    const char *what;
    const uint8_t *at;

    /* The reader's own: the current key (into the message bytes). */
    int key_state;
    bool value_before_key;
    const char *key;
    size_t keylen;
} sn_pbw_kv;

/* The common layout of a KeyValue, for callers with a fast path of their own: tag 1, a key of
 * under 128 bytes, tag 2, a value of under 128 bytes that ends the message. Returns true with
 * the key and the value's bytes (pointers into r's bytes) when r is exactly that; then
 * sn_pbw_kv_read() would read the same key and the same value. False: use sn_pbw_kv_read(). */
static inline bool sn_pbw_kv_simple(sn_pbw r, const char **key, size_t *keylen, sn_pbw *value)
{
    const uint8_t *p = r.p;
    size_t left = sn_pbw_left(&r);
    if (left < 4 || p[0] != 0x0A || p[1] >= 0x80 || (size_t)p[1] + 4 > left)
        return false;
    const uint8_t *v = p + 2 + p[1];
    if (v[0] != 0x12 || v[1] >= 0x80 || (size_t)(r.end - v) != (size_t)v[1] + 2)
        return false;
    *key = (const char *)p + 2;
    *keylen = p[1];
    value->p = v + 2;
    value->end = r.end;
    return true;
}

/* AnyValue's scalar members (common.proto): field numbers and their wire types. */
enum { SN_PBW_ANY_STRING = 1, SN_PBW_ANY_BOOL = 2, SN_PBW_ANY_INT = 3, SN_PBW_ANY_DOUBLE = 4 };

/* The value of a bool or int member (a varint u) or a double member (its bits u), as the
 * attribute reader delivers it. */
static inline sn_attr_value sn_pbw_scalar_value(uint32_t field, uint64_t u)
{
    sn_attr_value v;
    if (field == SN_PBW_ANY_BOOL) {
        v = (sn_attr_value){.type = SN_ATTR_BOOL, .b = u != 0};
    } else if (field == SN_PBW_ANY_INT) { /* int64 is two's complement on the wire */
        v = (sn_attr_value){.type = SN_ATTR_INT, .i = (int64_t)u};
    } else {
        v = (sn_attr_value){.type = SN_ATTR_DOUBLE};
        memcpy(&v.d, &u, sizeof(v.d));
    }
    return v;
}

/* An AnyValue (r covers exactly its bytes) that is one scalar member in the usual encoding: a
 * string of under 128 bytes, a bool, an int or a double, nothing else. Returns true with *v as
 * sn_pbw_kv_read() would deliver it (a string points into r's bytes); false for anything else
 * (then use sn_pbw_kv_read()). For callers with a fast path of their own. */
static inline bool sn_pbw_any_scalar(sn_pbw r, sn_attr_value *v)
{
    if (!sn_pbw_more(&r))
        return false;
    uint8_t tag = *r.p++;
    uint64_t u;
    switch (tag) {
    case SN_PBW_ANY_STRING << 3 | SN_PBW_LEN:
        if (!sn_pbw_more(&r) || *r.p >= 0x80 || sn_pbw_left(&r) != (size_t)*r.p + 1)
            return false;
        *v = (sn_attr_value){.type = SN_ATTR_STRING, .str = (const char *)r.p + 1, .len = *r.p};
        return true;
    case SN_PBW_ANY_BOOL << 3 | SN_PBW_VARINT:
    case SN_PBW_ANY_INT << 3 | SN_PBW_VARINT:
        if (sn_pbw_varint(&r, &u) != SN_PBW_OK || sn_pbw_more(&r))
            return false;
        *v = sn_pbw_scalar_value(tag >> 3, u);
        return true;
    case SN_PBW_ANY_DOUBLE << 3 | SN_PBW_I64:
        if (sn_pbw_left(&r) != 8 || sn_pbw_fixed64(&r, &u) != SN_PBW_OK)
            return false;
        *v = sn_pbw_scalar_value(SN_PBW_ANY_DOUBLE, u);
        return true;
    default:
        return false;
    }
}

/* Reads one KeyValue (r covers exactly its bytes). Returns false on malformed input, with
 * k->where / what / at set. Nothing is allocated; the caller's bytes must outlive the call. */
bool sn_pbw_kv_read(sn_pbw_kv *k, sn_pbw r);

#endif
