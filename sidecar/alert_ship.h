/*
 * alert_ship.h -- local alerts ahead of their batch: every new local alert is sent to the
 * aggregator at once, in its own small Ingest call, on a path that waits neither for the spool
 * nor for the batch in flight (docs/sidecar.md, "Local alerts ahead of the batches").
 *
 * The pipeline still puts each alert into its open batch and seals it (the sequenced copy, as
 * before); it also hands the alert to sn_alert_ship_push, which queues it here. This module owns
 * its own sn_ship (its own gRPC call, in flight concurrently with batch shipping) and its own
 * batch encoder, and sends the queued alerts as a Batch with sequence 0 that carries alerts only
 * (proto/sentinel/v1/sentinel.proto, "Alerts ahead of their batch"). The aggregator applies each
 * alert_id once, whichever copy arrives first, and leaves its sequence table alone.
 *
 *   queued --send--> in flight --OK--> sent ahead (counted, dropped from the queue)
 *                       |--DUPLICATE--> fallen back: the batch copy was applied first
 *                       |--RETRY_AFTER / transient failure--> backoff with jitter, resend
 *                       `--INVALID_ARGUMENT, UNIMPLEMENTED, RESOURCE_EXHAUSTED (no retry
 *                          delay)--> fallen back: e.g. an older aggregator, which refuses
 *                          sequence 0; the batch copy carries the alert
 *
 * Bounds: at most max_pending alerts wait (a new alert over it falls back at once), at most
 * max_per_call go in one call, and an alert not delivered within max_age falls back. Nothing is
 * lost by falling back: the alert's sequenced batch carries it to the aggregator as before.
 *
 * Metrics (when cfg.metrics is set): sentinel_sidecar_local_alerts_ahead_total (alerts the
 * aggregator took ahead of their batch), sentinel_sidecar_local_alerts_fallback_total{reason}
 * (queue_full, expired, refused, batch_first, stopped) and the gauge
 * sentinel_sidecar_local_alerts_ahead_pending.
 *
 * Threads: everything runs on the loop thread (the sn_ship's completion thread is internal).
 */
#ifndef SN_SIDECAR_ALERT_SHIP_H
#define SN_SIDECAR_ALERT_SHIP_H

#include "alert.h"
#include "metrics.h"
#include "ship.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define SN_ALERT_SHIP_MAX_PENDING_DEFAULT  256u
#define SN_ALERT_SHIP_MAX_PER_CALL_DEFAULT 64u
#define SN_ALERT_SHIP_MAX_AGE_MS_DEFAULT   60000u
#define SN_ALERT_SHIP_BACKOFF_INITIAL_MS   50u
#define SN_ALERT_SHIP_BACKOFF_MAX_MS       2000u

typedef struct sn_alert_ship sn_alert_ship;

typedef struct sn_alert_ship_config {
    const char *sidecar_id;      /* the batches' sidecar_id, 1..128 bytes (copied) */
    sn_ship_config ship;         /* the aggregator, deadline and reconnect backoff of the calls */
    size_t max_pending;          /* alerts waiting, 1..65536; default 256 */
    size_t max_per_call;         /* alerts in one call, 1..max_pending; default 64 */
    uint64_t max_age_ms;         /* undelivered this long: falls back to the batch; >= 1; 60 s */
    uint32_t backoff_initial_ms; /* retry delays (full jitter); default 50 ms .. 2 s */
    uint32_t backoff_max_ms;
    sn_metrics *metrics; /* registers the counters above; may be NULL */
} sn_alert_ship_config;

/* Fills cfg with the defaults (and sn_ship_config_init's for cfg->ship); no sidecar_id. */
void sn_alert_ship_config_init(sn_alert_ship_config *cfg);

/* Creates the sender on `loop` (loop thread): its sn_ship (channel, completion thread), its
 * encoder (uncompressed: the batches are small), its queue and its retry timer. Returns 0 and
 * sets *out, or a negative errno with a one-line reason in err (-EINVAL names the field).
 * Free with sn_alert_ship_destroy. */
int sn_alert_ship_create(const sn_alert_ship_config *cfg, uv_loop_t *loop, sn_alert_ship **out,
                         char *err, size_t errlen);

/* Queues a copy of alert (which must have its alert_id) and sends at once when no call is in
 * flight and no retry is waiting; otherwise it goes with the next call. A full queue makes
 * the alert fall back to its batch (counted). Loop thread. */
void sn_alert_ship_push(sn_alert_ship *as, const sn_local_alert *alert);

/* Alerts waiting or in flight. */
size_t sn_alert_ship_pending(const sn_alert_ship *as);

/* Cancels the call in flight and drops what waits (counted as fallen back, reason stopped: the
 * batch copies are in the spool), destroys the sn_ship and closes the timer; the struct is
 * freed by the timer's close callback, so the loop must run once more. Loop thread. NULL is a
 * no-op. */
void sn_alert_ship_destroy(sn_alert_ship *as);

#endif
