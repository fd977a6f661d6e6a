/*
 * pbwire.c -- the slow paths of the protobuf wire reader (see pbwire.h for the rules).
 */
#include "otlp/pbwire.h"

const char *sn_pbw_strerror(sn_pbw_status st)
{
    switch (st) {
    case SN_PBW_OK:
        return "ok";
    case SN_PBW_TRUNCATED:
        return "truncated message";
    case SN_PBW_PAST_END:
        return "length runs past the end of its message";
    case SN_PBW_VARINT_LONG:
        return "varint too long or out of range";
    case SN_PBW_BAD_WIRE:
        return "invalid wire type";
    case SN_PBW_FIELD_ZERO:
        return "field number 0";
    case SN_PBW_TOO_LARGE:
        return "integer too large";
    }
    return "unknown error";
}

/* A 32-bit varint with nanopb's tolerance: bytes past bit 31 must be 0x80/0x00 padding, or a
 * sign extension (0xFF..., 0x01 last) of a value with bit 31 set; ten bytes at most. */
sn_pbw_status sn_pbw_varint32_slow(sn_pbw *r, uint32_t *out)
{
    if (r->p >= r->end)
        return SN_PBW_TRUNCATED;
    uint8_t byte = *r->p++;
    uint32_t result = byte & 0x7F;
    unsigned bitpos = 7;
    while (byte & 0x80) {
        if (r->p >= r->end)
            return SN_PBW_TRUNCATED;
        byte = *r->p++;
        if (bitpos >= 32) {
            uint8_t sign_extension = bitpos < 63 ? 0xFF : 0x01;
            bool valid = (byte & 0x7F) == 0 || ((result >> 31) != 0 && byte == sign_extension);
            if (bitpos >= 64 || !valid)
                return SN_PBW_VARINT_LONG;
        } else if (bitpos == 28) {
            if ((byte & 0x70) != 0 && (byte & 0x78) != 0x78)
                return SN_PBW_VARINT_LONG;
            result |= (uint32_t)(byte & 0x0F) << bitpos;
        } else {
            result |= (uint32_t)(byte & 0x7F) << bitpos;
        }
        bitpos += 7;
    }
    *out = result;
    return SN_PBW_OK;
}

/* A 64-bit varint: at most ten bytes, the tenth 0 or 1 (the error comes after the bad byte). */
sn_pbw_status sn_pbw_varint_slow(sn_pbw *r, uint64_t *out)
{
    uint64_t result = 0;
    unsigned bitpos = 0;
    uint8_t byte;
    do {
        if (r->p >= r->end)
            return SN_PBW_TRUNCATED;
        byte = *r->p++;
        if (bitpos >= 63 && (byte & 0xFE) != 0)
            return SN_PBW_VARINT_LONG;
        result |= (uint64_t)(byte & 0x7F) << bitpos;
        bitpos += 7;
    } while (byte & 0x80);
    *out = result;
    return SN_PBW_OK;
}

/* Moves the cursor n bytes on, or reports a truncation (the cursor then stays). */
static sn_pbw_status advance(sn_pbw *r, size_t n)
{
    if ((size_t)(r->end - r->p) < n)
        return SN_PBW_TRUNCATED;
    r->p += n;
    return SN_PBW_OK;
}

sn_pbw_status sn_pbw_skip(sn_pbw *r, uint32_t wt)
{
    switch (wt) {
    case SN_PBW_VARINT:
        do {
            if (r->p >= r->end)
                return SN_PBW_TRUNCATED;
        } while (*r->p++ & 0x80);
        return SN_PBW_OK;
    case SN_PBW_I64:
        return advance(r, 8);
    case SN_PBW_LEN: {
        uint32_t n;
        sn_pbw_status st = sn_pbw_varint32(r, &n);
        return st != SN_PBW_OK ? st : advance(r, n);
    }
    case SN_PBW_I32:
        return advance(r, 4);
    default:
        return SN_PBW_BAD_WIRE;
    }
}

sn_pbw_status sn_pbw_skip_scalar(sn_pbw *r, uint32_t wt)
{
    switch (wt) {
    case SN_PBW_VARINT:
        for (int size = 1;; size++) {
            if (size > 10)
                return SN_PBW_VARINT_LONG;
            if (r->p >= r->end)
                return SN_PBW_TRUNCATED;
            if (!(*r->p++ & 0x80))
                return SN_PBW_OK;
        }
    case SN_PBW_I64:
        return advance(r, 8);
    case SN_PBW_I32:
        return advance(r, 4);
    default:
        return SN_PBW_BAD_WIRE;
    }
}

/* ---------------------------------------------------------------- KeyValue and AnyValue */

/* Field numbers of common.proto. */
enum { KV_KEY = 1, KV_VALUE = 2 };
enum {
    ANY_STRING = SN_PBW_ANY_STRING,
    ANY_BOOL = SN_PBW_ANY_BOOL,
    ANY_INT = SN_PBW_ANY_INT,
    ANY_DOUBLE = SN_PBW_ANY_DOUBLE,
    ANY_ARRAY = 5,
    ANY_KVLIST = 6,
    ANY_BYTES = 7,
    ARRAY_VALUES = 1
};
enum { KEY_NONE, KEY_OK, KEY_SKIP };

/* Records a failure at `at`. Always returns false, for `return kv_fail(...)`. */
static bool kv_fail(sn_pbw_kv *k, const uint8_t *at, const char *where, const char *what)
{
    k->where = where;
    k->what = what;
    k->at = at;
    return false;
}

/* Checks a wire reader status; false (recorded) unless it is SN_PBW_OK. */
static inline bool kv_ok(sn_pbw_kv *k, const sn_pbw *r, const char *where, sn_pbw_status st)
{
    return st == SN_PBW_OK || kv_fail(k, r->p, where, sn_pbw_strerror(st));
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

/* A string/bytes member delivered straight from the message bytes, cut at SN_PBW_VALUE_MAX. */
static bool kv_string(sn_pbw_kv *k, sn_pbw *r, sn_attr_type type)
{
    sn_pbw sub;
    if (!kv_ok(k, r, "attribute value", sn_pbw_len(r, &sub)))
        return false;
    size_t n = sn_pbw_left(&sub);
    if (n > SN_PBW_VALUE_MAX) {
        n = SN_PBW_VALUE_MAX;
        ++*k->values_truncated;
        if (type == SN_ATTR_STRING && k->utf8_cut)
            n = utf8_whole((const char *)sub.p, n);
    }
    sn_attr_value v = {.type = type, .str = (const char *)sub.p, .len = n};
    k->deliver(k->ud, k->key, k->keylen, &v);
    return true;
}

/* Skips a value that is never read (counted). */
static bool kv_ignore(sn_pbw_kv *k, sn_pbw *r, uint32_t wt)
{
    ++*k->values_ignored;
    return kv_ok(k, r, "attribute value", sn_pbw_skip(r, wt));
}

static bool kv_any(sn_pbw_kv *k, sn_pbw *r, bool in_array);

/* An ArrayValue: each element delivered under the current key. */
static bool kv_array(sn_pbw_kv *k, sn_pbw *r)
{
    while (sn_pbw_more(r)) {
        uint32_t field, wt;
        sn_pbw sub;
        if (!kv_ok(k, r, "attribute array", sn_pbw_tag(r, &field, &wt)))
            return false;
        if (field != ARRAY_VALUES) {
            if (!kv_ok(k, r, "attribute array", sn_pbw_skip(r, wt)))
                return false;
            continue;
        }
        if (wt != SN_PBW_LEN)
            return kv_fail(k, r->p, "attribute array", "wrong wire type for ArrayValue.values");
        if (!kv_ok(k, r, "attribute array", sn_pbw_len(r, &sub)) || !kv_any(k, &sub, true))
            return false;
    }
    return true;
}

/* An AnyValue: each scalar member delivered. in_array: an element (a nested array is skipped). */
static bool kv_any(sn_pbw_kv *k, sn_pbw *r, bool in_array)
{
    static const uint8_t expect[] = {
        [ANY_STRING] = SN_PBW_LEN, [ANY_BOOL] = SN_PBW_VARINT, [ANY_INT] = SN_PBW_VARINT,
        [ANY_DOUBLE] = SN_PBW_I64, [ANY_ARRAY] = SN_PBW_LEN,   [ANY_KVLIST] = SN_PBW_LEN,
        [ANY_BYTES] = SN_PBW_LEN,
    };
    while (sn_pbw_more(r)) {
        uint32_t field, wt;
        if (!kv_ok(k, r, "attribute value", sn_pbw_tag(r, &field, &wt)))
            return false;
        if (field > ANY_BYTES) {
            if (!kv_ok(k, r, "attribute value", sn_pbw_skip(r, wt)))
                return false;
            continue;
        }
        if (wt != expect[field])
            return kv_fail(k, r->p, "attribute value", "wrong wire type for an AnyValue member");
        sn_attr_value v;
        uint64_t u;
        switch (field) {
        case ANY_STRING:
        case ANY_BYTES:
            if (!kv_string(k, r, field == ANY_STRING ? SN_ATTR_STRING : SN_ATTR_BYTES))
                return false;
            continue;
        case ANY_BOOL:
        case ANY_INT:
            if (!kv_ok(k, r, "attribute value", sn_pbw_varint(r, &u)))
                return false;
            v = sn_pbw_scalar_value(field, u);
            break;
        case ANY_DOUBLE:
            if (!kv_ok(k, r, "attribute value", sn_pbw_fixed64(r, &u)))
                return false;
            v = sn_pbw_scalar_value(field, u);
            break;
        case ANY_ARRAY: {
            if (in_array || !k->arrays) { /* carries no fact */
                if (!kv_ignore(k, r, wt))
                    return false;
                continue;
            }
            sn_pbw sub;
            if (!kv_ok(k, r, "attribute value", sn_pbw_len(r, &sub)) || !kv_array(k, &sub))
                return false;
            continue;
        }
        default: /* ANY_KVLIST: nothing in a key/value list is a fact */
            if (!kv_ignore(k, r, wt))
                return false;
            continue;
        }
        k->deliver(k->ud, k->key, k->keylen, &v);
    }
    return true;
}

/* The fields of one KeyValue; values_only: the second pass (keys skipped). */
static bool kv_fields(sn_pbw_kv *k, sn_pbw *r, bool values_only)
{
    while (sn_pbw_more(r)) {
        uint32_t field, wt;
        sn_pbw sub;
        if (!kv_ok(k, r, "attribute", sn_pbw_tag(r, &field, &wt)))
            return false;
        if ((field != KV_KEY && field != KV_VALUE) || (values_only && field == KV_KEY)) {
            if (!kv_ok(k, r, "attribute", sn_pbw_skip(r, wt)))
                return false;
            continue;
        }
        if (wt != SN_PBW_LEN) {
            if (wt != SN_PBW_VARINT && wt != SN_PBW_I64 && wt != SN_PBW_I32)
                return kv_fail(k, r->p, "attribute", "invalid wire type");
            return kv_fail(k, r->p, field == KV_KEY ? "attribute key" : "attribute value",
                           "wrong wire type (expected a length-delimited field)");
        }
        if (!kv_ok(k, r, "attribute", sn_pbw_len(r, &sub)))
            return false;
        size_t n = sn_pbw_left(&sub);
        if (field == KV_KEY) {
            if (n >= SN_PBW_KEY_MAX) { /* no convention has such a key */
                k->key_state = KEY_SKIP;
                ++*k->keys_skipped;
                continue;
            }
            k->key = (const char *)sub.p;
            k->keylen = n;
            k->key_state = KEY_OK;
        } else if (k->key_state == KEY_NONE) {
            k->value_before_key = true;
        } else if (k->key_state == KEY_OK && (!k->want || k->want(k->ud, k->key, k->keylen)) &&
                   !kv_any(k, &sub, false)) {
            return false;
        }
    }
    return true;
}

bool sn_pbw_kv_read(sn_pbw_kv *k, sn_pbw r)
{
    sn_pbw sub;
    if (sn_pbw_kv_simple(r, &k->key, &k->keylen, &sub)) { /* the general path reads it so too */
        k->key_state = KEY_OK;
        if (k->want && !k->want(k->ud, k->key, k->keylen))
            return true;
        return kv_any(k, &sub, false);
    }
    sn_pbw again = r;
    k->key_state = KEY_NONE;
    k->value_before_key = false;
    if (!kv_fields(k, &r, false))
        return false;
    if (k->value_before_key && k->key_state == KEY_OK && !kv_fields(k, &again, true))
        return false;
    return true;
}
