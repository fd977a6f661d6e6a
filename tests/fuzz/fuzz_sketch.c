/*
 * libFuzzer target for the sketch deserializer (shared/sketch.c, sn_sketch_deserialize): the
 * bytes replicas exchange through the shared state store.
 *
 * The input's last four bytes are replaced with its CRC-32 before parsing, so the fuzzer gets
 * past the checksum into the field checks. Every input must give -EBADMSG or a sketch, without
 * a sanitizer finding. A sketch must serialize back to exactly the input, answer finite
 * quantiles, and keep working when a sample is added and it is merged into itself.
 */
#include "fuzz_common.h"
#include "sketch.h"

#include <errno.h>
#include <zlib.h>

static uint8_t in[SN_SKETCH_MAX_SERIALIZED];
static uint8_t out[SN_SKETCH_MAX_SERIALIZED];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > sizeof in)
        return 0;
    memcpy(in, data, size);
    if (size >= 4) {
        uLong crc = crc32(0L, in, (uInt)(size - 4));
        for (int i = 0; i < 4; i++)
            in[size - 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
    }
    sn_sketch *s = NULL;
    int rc = sn_sketch_deserialize(&s, in, size);
    if (rc == -EBADMSG)
        return 0;
    if (rc != 0 || s == NULL)
        abort();

    size_t len = 0;
    if (sn_sketch_serialized_size(s) != size ||
        sn_sketch_serialize(s, out, sizeof out, &len) != 0 || len != size ||
        memcmp(in, out, size) != 0)
        abort();
    sn_summary sum;
    sn_sketch_summary(s, &sum);
    if (sn_sketch_count(s) > 0) {
        for (double q = 0; q <= 1.0; q += 0.25) {
            double v = sn_sketch_quantile(s, q);
            if (!isfinite(v))
                abort();
        }
    }
    int add = sn_sketch_add(s, 42.0);
    if (add != 0 && add != -EOVERFLOW)
        abort();
    int merge = sn_sketch_merge(s, s);
    if (merge != 0 && merge != -EOVERFLOW)
        abort();
    if (sn_sketch_buckets_used(s) > sn_sketch_max_buckets(s))
        abort();
    sn_sketch_destroy(s);
    return 0;
}
