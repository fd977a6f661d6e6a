/*
 * bytes.h -- fixed-width little-endian fields and CRC-32 for the project's own binary formats
 * (sketch and baseline snapshots). Portable byte by byte, so a blob written on one host reads the
 * same on any other.
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

/* CRC-32 (IEEE 802.3, reflected 0xEDB88320) of p[0..n), continuing from crc (0 to start). */
uint32_t sn_crc32(uint32_t crc, const uint8_t *p, size_t n);

#endif
