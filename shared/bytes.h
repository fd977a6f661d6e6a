/*
 * bytes.h -- fixed-width little-endian fields and CRC-32 for the project's own binary formats
 * (sketch and baseline snapshots), portable byte by byte, so a blob written on one host reads the
 * same on any other; and the word-at-a-time string hash of the in-memory caches (sn_hash_bytes).
 */
#ifndef SN_BYTES_H
#define SN_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline void sn_le_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void sn_le_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void sn_le_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void sn_le_put_f64(uint8_t *p, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    sn_le_put_u64(p, v);
}

static inline uint16_t sn_le_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t sn_le_get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static inline uint64_t sn_le_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&v, p, 8); /* one load where the host's order is the format's */
#else
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
#endif
    return v;
}

static inline double sn_le_get_f64(const uint8_t *p)
{
    uint64_t v = sn_le_get_u64(p);
    double d;
    memcpy(&d, &v, sizeof d);
    return d;
}

/* One step of sn_hash_bytes: the word w folded into h (a multiply-xorshift). */
static inline uint64_t sn_hash_word(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9fb21c651e98df25ull;
    return h ^ (h >> 29);
}

/* Folds n bytes of p into h eight at a time, for in-memory hash tables and caches (the value
 * depends on the host's byte order: never store it). No byte past p[n - 1] is read: the last
 * word overlaps the one before (n >= 8), or is read as two overlapping halves (4 <= n < 8) or
 * as its first, middle and last byte (n < 4) -- so strings of different lengths can collide;
 * seed h with the lengths when that matters. fold is or-ed into every byte read: 0, or
 * 0x2020202020202020 to make the two cases of an ASCII letter hash alike (and a few other
 * pairs, which only costs a comparison). Chain calls for several strings; the result is mixed
 * well enough for a table index from its low bits after h ^ (h >> 32). */
static inline uint64_t sn_hash_bytes(uint64_t h, const char *p, size_t n, uint64_t fold)
{
    uint64_t w;
    if (n >= 8) {
        for (; n > 8; p += 8, n -= 8) {
            memcpy(&w, p, 8);
            h = sn_hash_word(h, w | fold);
        }
        memcpy(&w, p + n - 8, 8);
        return sn_hash_word(h, w | fold);
    }
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        w = ((uint64_t)a << 32 | b) | fold;
    } else if (n > 0) {
        w = ((uint64_t)(unsigned char)p[0] << 16 | (uint64_t)(unsigned char)p[n / 2] << 8 |
             (unsigned char)p[n - 1]) |
            (fold & 0xFFFFFF);
    } else {
        w = 0;
    }
    return sn_hash_word(h, w);
}

/* CRC-32 (IEEE 802.3, reflected 0xEDB88320) of p[0..n), continuing from crc (0 to start). */
uint32_t sn_crc32(uint32_t crc, const uint8_t *p, size_t n);

#endif
