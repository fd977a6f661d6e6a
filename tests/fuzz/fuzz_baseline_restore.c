/*
 * libFuzzer target for baseline snapshots (shared/baseline.c sn_baseline_restore and
 * aggregator/engine.c sn_engine_restore): the blobs the aggregator reads back from its state
 * store at start, where a corrupt or foreign row must be skipped, never crash.
 *
 * Input: one selector byte, then for the engine a key length byte and the key text, then the
 * blob. The blob's last four bytes are replaced with its CRC-32 so the fuzzer gets past the
 * checksum into the field checks. Selector bit 0: exact or compact tables; bit 1: through the
 * engine (with its key text) or straight into a baseline table.
 *
 * Every input must be refused with -EBADMSG / -EPROTO / -EEXIST or restore a key. A restored
 * key must summarise, learn a sample, serialize, and restore again from that blob into a fresh
 * table to the same blob; through the engine it must take an event and snapshot.
 */
#include "baseline.h"
#include "engine.h"
#include "fuzz_common.h"

#include <errno.h>
#include <zlib.h>

#define FUZZ_MAX_INPUT (1u << 20)

static uint8_t in[FUZZ_MAX_INPUT];

static sn_baseline *table(sn_baseline_mode mode)
{
    sn_baseline_config c;
    sn_baseline_config_init(&c);
    c.mode = mode;
    c.window = 64;
    c.user_bytes = 24;
    c.memory_budget = 8u << 20;
    sn_baseline *b = NULL;
    if (sn_baseline_create(&b, &c) != 0)
        abort();
    return b;
}

static int ignore_key(const char *key, const void *blob, size_t len, void *ud)
{
    (void)ud;
    if (key == NULL || (blob != NULL && len == 0))
        abort();
    return 0;
}

static void through_table(sn_baseline_mode mode, const uint8_t *blob, size_t len)
{
    sn_baseline *b = table(mode), *b2 = table(mode);
    sn_baseline_entry *e = NULL, *e2 = NULL;
    int rc = sn_baseline_restore(b, blob, len, 0, &e);
    if (rc == -EBADMSG || rc == -EPROTO)
        goto out;
    if (rc != 0 || e == NULL)
        abort();
    sn_summary s;
    sn_baseline_summary(b, e, &s);
    if (s.n > 0 && (isnan(s.median) || s.min > s.max))
        abort();
    size_t cap = sn_baseline_serialized_max(b), l1, l2;
    uint8_t *o1 = malloc(cap), *o2 = malloc(cap);
    if (o1 == NULL || o2 == NULL)
        abort();
    if (sn_baseline_entry_serialize(b, e, o1, cap, &l1) != 0 ||
        sn_baseline_restore(b2, o1, l1, 0, &e2) != 0 ||
        sn_baseline_entry_serialize(b2, e2, o2, cap, &l2) != 0 || l1 != l2 ||
        memcmp(o1, o2, l1) != 0)
        abort();
    if (sn_baseline_observe(b, e, 42.0, 1) != 0)
        abort();
    free(o2);
    free(o1);
out:
    sn_baseline_destroy(b2);
    sn_baseline_destroy(b);
}

static void through_engine(sn_baseline_mode mode, const char *key, const uint8_t *blob, size_t len)
{
    sn_engine_config cfg;
    sn_engine_config_defaults(&cfg);
    cfg.baseline_mode = mode;
    cfg.window = 64;
    cfg.memory_budget = 8 << 20;
    cfg.max_pairs = 16;
    cfg.max_budget_keys = 16;
    sn_engine *e = NULL;
    sn_config_error err;
    if (sn_engine_create(&e, &cfg, 7, &err) != 0)
        abort();
    int rc = sn_engine_restore(e, key, blob, len);
    if (rc != 0 && rc != 1 && rc != -EBADMSG && rc != -EPROTO)
        abort();
    if (rc == 0 || rc == 1) { /* 1: statistics of another format's key, detector state afresh */
        if (!sn_engine_snapshot_live(e, key))
            abort();
        sn_engine_snapshot_result r;
        if (sn_engine_snapshot(e, true, 0, ignore_key, NULL, &r) != 0 || r.written != 1)
            abort();
        sn_engine_stats st;
        sn_engine_get_stats(e, &st);
        if (st.keys != 1)
            abort();
    }
    sn_engine_destroy(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > sizeof in)
        return 0;
    uint8_t sel = data[0];
    sn_baseline_mode mode = (sel & 1) ? SN_BASELINE_COMPACT : SN_BASELINE_EXACT;
    size_t off = 1;
    char key[256] = "";
    if (sel & 2) {
        if (size < 2)
            return 0;
        size_t klen = data[1];
        if (size - 2 < klen)
            return 0;
        memcpy(key, data + 2, klen);
        key[klen] = '\0';
        off = 2 + klen;
    }
    size_t len = size - off;
    memcpy(in, data + off, len);
    if (len >= 4) {
        uLong crc = crc32(0L, in, (uInt)(len - 4));
        for (int i = 0; i < 4; i++)
            in[len - 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
    }
    if (sel & 2)
        through_engine(mode, key, in, len);
    else
        through_table(mode, in, len);
    return 0;
}
