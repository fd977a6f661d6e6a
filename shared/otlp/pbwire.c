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
