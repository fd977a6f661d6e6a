/*
 * libFuzzer target for the aggregator's Ingest request decoding (aggregator/ingest.c,
 * sn_ingest_decode_request): envelope, zstd payload, Batch, validation and conversion -- the
 * code every Ingest call runs before de-duplication, here without a gRPC server.
 *
 * Limits are small (1 MiB message, 64 events, 16 alerts) so the fuzzer reaches them. Every input
 * must be accepted or refused with a reason and a one-line message, without a sanitizer finding
 * or a leak, and never allocate for a payload larger than the limit (run-fuzzer.sh makes any
 * allocation over 256 MiB a finding). An accepted batch keeps the
 * service's promises: an id of 1..128 bytes, a sequence >= 1 (or 0 with alerts only: alerts
 * ahead of their batch; found by the fuzzer on a seed with event groups), counts within the
 * limits, events
 * and alerts with terminated strings, known enums, and no negative latency or count.
 */
#include "fuzz_common.h"
#include "ingest.h"

#include <errno.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sn_ingest_config cfg;
    sn_ingest_config_init(&cfg);
    cfg.max_message_bytes = 1u << 20;
    cfg.max_batch_events = 64;
    cfg.max_batch_alerts = 16;
    sn_ingest_decoded d;
    sn_ingest_refusal why = SN_INGEST_REFUSED_COUNT;
    char err[256];
    err[0] = '\0';
    int rc = sn_ingest_decode_request(data, size, &cfg, &d, &why, err, sizeof err);
    if (rc != 0) {
        if ((rc != -EINVAL && rc != -ENOMEM) || why >= SN_INGEST_REFUSED_COUNT ||
            why == SN_INGEST_REFUSED_RETRY || d.events != NULL || d.alerts != NULL)
            abort();
        sn_fuzz_check_err(err, sizeof err);
        return 0;
    }
    const sn_ingest_batch *b = &d.batch;
    size_t idlen = strnlen(b->sidecar_id, sizeof d.sidecar_id);
    /* Sequence 0 is a batch of local alerts ahead of their batch: alerts only. */
    bool ahead_ok = b->nevents == 0 && b->naggregates == 0 && b->nalerts >= 1;
    if (idlen == 0 || idlen > SN_SEQ_ID_MAX || (b->sequence == 0 && !ahead_ok) ||
        b->nevents > cfg.max_batch_events || b->nalerts > cfg.max_batch_alerts)
        abort();
    for (size_t i = 0; i < b->nevents; i++) {
        const sn_event *ev = &b->events[i];
        sn_fuzz_check_event(ev);
        if ((!isnan(ev->latency_ms) && ev->latency_ms < 0) ||
            (!isnan(ev->ttft_ms) && ev->ttft_ms < 0) || ev->input_tokens < SN_UNKNOWN_COUNT ||
            ev->output_tokens < SN_UNKNOWN_COUNT)
            abort();
    }
    for (size_t i = 0; i < b->nalerts; i++) {
        const sn_local_alert *al = &b->alerts[i];
        sn_fuzz_check_str(al->alert_id, sizeof al->alert_id);
        sn_fuzz_check_str(al->service, sizeof al->service);
        sn_fuzz_check_str(al->model, sizeof al->model);
        sn_fuzz_check_str(al->region, sizeof al->region);
        if ((unsigned)al->metric >= SN_METRIC_COUNT ||
            (unsigned)al->anomaly_type >= SN_ANOMALY_TYPE_COUNT ||
            (unsigned)al->detector >= SN_DETECT_KIND_COUNT || al->severity < SN_SEV_LOW ||
            al->severity > SN_SEV_CRITICAL)
            abort();
    }
    sn_ingest_decoded_free(&d);
    return 0;
}
