/*
 * libFuzzer target for the sidecar's journal record decoder (sidecar/batch.c,
 * sn_batch_decode_event_record): the bytes the spool hands back after a crash.
 *
 * Every input must decode to 0, -ENOBUFS or -EINVAL (with a message), without a sanitizer
 * finding. Decoded events keep the invariants of event.h, and after one encode/decode round
 * the events are a fixed point of encoding and decoding. sn_batch_scan_record (recovery)
 * agrees with the decoder: it refuses what the decoder refuses, and counts the same events when
 * it accepts (it may refuse more: any field but events and aggregates, an aggregate the
 * aggregator would refuse; the decoder skips aggregates). Events appended one by one with the
 * hand-written encoder are byte for byte the record nanopb writes; written as event groups they
 * decode to the same events. Sealed with groups and flattened with a small part budget (a floor
 * of 200 to 399 bytes, so that the fuzzer's small batches are split), zstd on or off: every flat
 * request stays within the limit, and unpacked, the parts hold every event once, in order.
 */
#include "batch.h"
#include "fuzz_common.h"

#include <errno.h>
#include <zstd.h>

#define FUZZ_CAP 64

static sn_event events[FUZZ_CAP];
static sn_event again[FUZZ_CAP];
static uint8_t buf[FUZZ_CAP * 1024];
static uint8_t flat_events[FUZZ_CAP * 2048]; /* the parts' events fields, concatenated */
static uint8_t plain[FUZZ_CAP * 2048 + 4096];

/* Reads a varint at *p (before end); 0 when truncated. */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 1;
    }
    return 0;
}

/* Appends the events fields (Batch field 3, tag included) of one flat request to
 * flat_events[*used..]: aborts when the request is not one the flattening writes. */
static void collect_events(const uint8_t *req, size_t len, size_t *used)
{
    const uint8_t *p = req, *end = req + len, *payload = NULL;
    uint64_t compression = 0, tag, v, plen = 0, declared = 0;
    while (p < end) {
        if (!read_varint(&p, end, &tag))
            abort();
        if ((tag & 7) == 0) {
            if (!read_varint(&p, end, &v))
                abort();
            if (tag >> 3 == 1)
                compression = v;
            else if (tag >> 3 == 2)
                declared = v;
        } else if ((tag & 7) == 2) {
            if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p))
                abort();
            if (tag >> 3 == 3) {
                payload = p;
                plen = v;
            }
            p += v;
        } else {
            abort();
        }
    }
    const uint8_t *b = payload;
    size_t blen = (size_t)plen;
    if (compression == 1) { /* ZSTD */
        if (declared > sizeof plain)
            abort();
        size_t n = ZSTD_decompress(plain, sizeof plain, payload, (size_t)plen);
        if (ZSTD_isError(n) || n != declared)
            abort();
        b = plain;
        blen = n;
    } else if (compression != 0) {
        abort();
    }
    p = b;
    end = b + blen;
    while (p < end) {
        const uint8_t *start = p;
        if (!read_varint(&p, end, &tag))
            abort();
        if ((tag & 7) == 2) {
            if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p))
                abort();
            p += v;
        } else if ((tag & 7) == 0) {
            if (!read_varint(&p, end, &v))
                abort();
        } else {
            abort();
        }
        if (tag == (3u << 3 | 2u)) {
            size_t n = (size_t)(p - start);
            if (n > sizeof flat_events - *used)
                abort();
            memcpy(flat_events + *used, start, n);
            *used += n;
        }
    }
}

/* Compares two events field by field (NAN equal to NAN; the bookkeeping is not on the wire). */
static int same_event(const sn_event *a, const sn_event *b)
{
    sn_event x = *a, y = *b;
    x.fact_ranks = y.fact_ranks = 0;
    double *xr[] = {&x.latency_ms, &x.ttft_ms, &x.cost_usd};
    double *yr[] = {&y.latency_ms, &y.ttft_ms, &y.cost_usd};
    for (int i = 0; i < 3; i++) {
        if (isnan(*xr[i]) != isnan(*yr[i]))
            return 0;
        if (isnan(*xr[i]))
            *xr[i] = *yr[i] = 0;
    }
    return memcmp(&x, &y, sizeof x) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    size_t n = 0;
    err[0] = '\0';
    int rc = sn_batch_decode_event_record(data, size, events, FUZZ_CAP, &n, err, sizeof err);
    size_t scanned = 0, scanned_aggs = 0;
    char serr[256];
    serr[0] = '\0';
    int src = sn_batch_scan_record(data, size, &scanned, &scanned_aggs, serr, sizeof serr);
    if (src == -EINVAL)
        sn_fuzz_check_err(serr, sizeof serr);
    else if (src != 0 || (rc == 0 && scanned != n) || rc == -EINVAL)
        abort();
    if (rc == -EINVAL) {
        sn_fuzz_check_err(err, sizeof err);
        return 0;
    }
    if (rc == -ENOBUFS)
        return 0;
    if (rc != 0 || n > FUZZ_CAP)
        abort();
    for (size_t i = 0; i < n; i++)
        sn_fuzz_check_event(&events[i]);

    /* Round trip: what was decoded encodes and decodes; after that one round (which may drop
     * values the encoder does not send, such as a negative latency) the record is a fixed point. */
    if (sn_batch_event_record_bound(n) > sizeof buf)
        return 0;
    size_t n2 = 0;
    for (int round = 0; round < 2; round++) {
        sn_event *from = round == 0 ? events : again, *to = round == 0 ? again : events;
        size_t len = 0;
        if (sn_batch_encode_event_record(from, n, buf, sizeof buf, &len) != 0)
            abort();
        if (sn_batch_decode_event_record(buf, len, to, FUZZ_CAP, &n2, err, sizeof err) != 0 ||
            n2 != n)
            abort();
    }
    for (size_t i = 0; i < n; i++)
        if (!same_event(&events[i], &again[i]))
            abort();

    /* The hand-written appender against nanopb, event by event. */
    static uint8_t byhand[FUZZ_CAP * 1024];
    size_t len = 0, hlen = 0;
    if (sn_batch_encode_event_record(events, n, buf, sizeof buf, &len) != 0)
        abort();
    for (size_t i = 0; i < n; i++)
        if (sn_batch_append_event_record(&events[i], byhand, sizeof byhand, &hlen) != 0)
            abort();
    if (hlen != len || memcmp(byhand, buf, len) != 0)
        abort();

    /* As event groups (the sidecar's journal records): the same events back, and the scan
     * counts them. */
    static uint8_t grouped[FUZZ_CAP * 1400];
    if (sn_batch_grouped_record_bound(n) > sizeof grouped)
        return 0;
    sn_batch_grouper g;
    sn_batch_grouper_init(&g);
    size_t glen = 0;
    for (size_t i = 0; i < n; i++)
        if (sn_batch_append_grouped_event(&g, &events[i], grouped, sizeof grouped, &glen) != 0)
            abort();
    if (sn_batch_grouper_close(&g, grouped, &glen) != 0)
        abort();
    if (sn_batch_decode_event_record(grouped, glen, again, FUZZ_CAP, &n2, err, sizeof err) != 0 ||
        n2 != n)
        abort();
    for (size_t i = 0; i < n; i++)
        if (!same_event(&events[i], &again[i]))
            abort();
    if (sn_batch_scan_record(grouped, glen, &scanned, &scanned_aggs, serr, sizeof serr) != 0 ||
        scanned != n)
        abort();

    /* Sealed with groups and flattened for an older aggregator under a small limit: one request
     * or several (a split batch), each within the limit; or -EMSGSIZE (an event alone too big). */
    static sn_batch_encoder *enc;
    if (enc == NULL) {
        sn_batch_config cfg;
        sn_batch_config_init(&cfg);
        cfg.max_events = FUZZ_CAP;
        cfg.max_message_bytes = SN_BATCH_MAX_MESSAGE_DEFAULT;
        if (sn_batch_encoder_create(&cfg, &enc, err, sizeof err) != 0)
            abort();
    }
    sn_batch b = {.sidecar_id = "fuzz/0123456789abcdef",
                  .sequence = 1,
                  .records = grouped,
                  .records_len = glen,
                  .n_record_events = n,
                  .groups = true};
    const uint8_t *req;
    size_t req_len;
    if (sn_batch_encode(enc, &b, &req, &req_len, NULL, err, sizeof err) != 0)
        abort();
    sn_batch_config small = *sn_batch_encoder_config(enc);
    /* A part budget of 200 to 399 bytes, uncompressed or not: splits of the small batches. */
    small.zstd_level = (int)(size & 1);
    sn_batch_parts parts = {NULL, NULL, 0};
    rc = sn_batch_flatten_request_floor(req, req_len, &small, 200 + size % 200, &parts, err,
                                        sizeof err);
    if (rc == -ENOENT || rc == -EMSGSIZE) { /* no group (events of one resource each); too big */
        sn_fuzz_check_err(err, sizeof err);
        return 0;
    }
    if (rc != 0 || parts.n == 0)
        abort();
    size_t used = 0;
    for (size_t k = 0; k < parts.n; k++) {
        size_t from = k > 0 ? parts.end[k - 1] : 0;
        if (parts.end[k] - from > small.max_message_bytes)
            abort();
        collect_events(parts.data + from, parts.end[k] - from, &used);
    }
    /* Every event once, in order. */
    if (sn_batch_decode_event_record(flat_events, used, again, FUZZ_CAP, &n2, err, sizeof err) !=
            0 ||
        n2 != n)
        abort();
    for (size_t i = 0; i < n; i++)
        if (!same_event(&events[i], &again[i]))
            abort();
    sn_batch_parts_free(&parts);
    return 0;
}
