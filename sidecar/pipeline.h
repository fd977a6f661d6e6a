/*
 * pipeline.h -- the sidecar's loop and the state it owns.
 *
 * Threads (design.md, principle 1): the OTLP transports call sn_pipeline_otlp_handler on their
 * own threads. There a request is decoded once: malformed input is answered at once, and the LLM
 * events become the request's journal record (each event encoded once, into a pooled per-request
 * scratch) plus the few numbers local detection needs per event. A request with no LLM call is
 * answered at once; one with LLM calls becomes a work item on a locked queue and the loop is
 * woken with uv_async_send. When the transport can answer later (gRPC, sn_otlp_result.later)
 * and no tee is configured, the transport thread goes on to its next request and the loop
 * answers once the record is journaled; otherwise the transport thread waits for the loop's
 * verdict (always for a metrics request with GenAI points, whose aggregates the loop makes and
 * journals). The loop thread
 * owns all mutable state: it appends the record to the journal (write(2), so an acknowledged
 * event survives kill -9) and to the open batch as it is, runs local detection (alerts rate
 * limited per key), seals the batch every flush_interval (at once when it holds an alert) into
 * the spool by copying the records' bytes, and ships sealed batches to the aggregator in order,
 * one in flight, with backoff. A full spool or a long queue answers with retryable statuses;
 * nothing accepted is dropped.
 */
#ifndef SN_SIDECAR_PIPELINE_H
#define SN_SIDECAR_PIPELINE_H

#include "alert_limit.h"
#include "alert_ship.h"
#include "batch.h"
#include "local_detect.h"
#include "metric_feed.h"
#include "metrics.h"
#include "otlp/receiver.h"
#include "price.h"
#include "ship.h"
#include "spool.h"
#include "tee.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct sn_pipeline sn_pipeline;

typedef struct sn_pipeline_config {
    const char *sidecar_id;    /* "<pod or host>/<random hex>" (copied) */
    int64_t flush_interval_ns; /* seal the open batch this often; default 200 ms */
    int64_t sync_interval_ns;  /* fsync the spool this often; default 1 s */
    size_t max_batch_events;   /* events per sealed batch */
    size_t max_batch_alerts;   /* alerts per sealed batch */
    size_t max_pending;        /* requests waiting for the loop; more are refused (retryable) */
    size_t max_pending_bytes;  /* decoded requests the loop answers later (gRPC): their memory at
                                  once; more is refused (retryable); one is always let in */
    uint32_t retry_after_ms;   /* what refused clients are told */
    int64_t wait_timeout_ns;   /* a transport thread gives up on a queued request after this */
    uint32_t backoff_initial_ms;
    uint32_t backoff_max_ms;
    uint64_t spool_max_bytes; /* the spool's limits (sn_spool_config), for admission */
    uint64_t journal_max_bytes;
    uint64_t alert_interval_ms; /* one local alert per (service, model, metric, type) per this;
                                   0: no limit; default 10 s */
    int64_t metric_cover_ns;    /* GenAI metric points of a (service, model) that sent spans this
                                   recently are not facts (metric_feed.h); 0: default 5 min */
} sn_pipeline_config;

/* What the pipeline uses; all borrowed, all outliving the pipeline. tee and alert_ship may be
 * NULL. */
typedef struct sn_pipeline_deps {
    uv_loop_t *loop;
    sn_spool *spool;
    sn_batch_encoder *encoder;
    sn_ship *ship;
    sn_local_detect *detect;
    sn_tee *tee;
    sn_metrics *metrics;
    const sn_price_table *prices;
    sn_alert_ship *alert_ship; /* new local alerts also go ahead of their batch; may be NULL */
} sn_pipeline_deps;

/* The protocol a handler wrapper serves, for the requests metric's label. */
typedef enum sn_pipeline_protocol { SN_PIPELINE_GRPC = 0, SN_PIPELINE_HTTP } sn_pipeline_protocol;

void sn_pipeline_config_defaults(sn_pipeline_config *cfg);

/* Creates the pipeline on deps->loop (call on the loop thread, before it runs), registers its
 * metrics, re-seals journal records a previous run left unsealed, and starts its timers.
 * Returns 0 or a negative errno with a message in err. Free with sn_pipeline_destroy. */
int sn_pipeline_create(const sn_pipeline_config *cfg, const sn_pipeline_deps *deps,
                       sn_pipeline **out, char *err, size_t errlen);

/* The transport handler (receiver.h); ud is the value of sn_pipeline_handler_ud for the
 * transport's protocol. Thread-safe. */
void sn_pipeline_otlp_handler(sn_otlp_signal signal, sn_otlp_encoding encoding, const uint8_t *body,
                              size_t len, sn_otlp_result *res, void *ud);
void *sn_pipeline_handler_ud(sn_pipeline *p, sn_pipeline_protocol protocol);

/* The series of sentinel_sidecar_export_stage_seconds for `stage` (a transport's own stage,
 * e.g. one of sn_grpc_stage_names), created on first use; owned by the metrics registry. NULL
 * when the family is full or memory is short. Any thread (takes the registry mutex). */
sn_histogram *sn_pipeline_stage_histogram(sn_pipeline *p, const char *stage);

/* Readiness for /readyz (thread-safe): false with a reason while the spool is full or the
 * pipeline is stopping. */
bool sn_pipeline_ready(char *reason, size_t reasonlen, void *ud);

/* The memory of the idle request scratches the pipeline keeps for reuse (the memory guard's
 * `kept`), and freeing them (its `reclaim`; the next requests grow new ones). Any thread. */
size_t sn_pipeline_scratch_kept(const sn_pipeline *p);
void sn_pipeline_scratch_reclaim(sn_pipeline *p);

/* Starts the drain on the loop thread: new requests are refused (retryable), the open batch is
 * sealed, and shipping goes on until the spool is empty or timeout_ms passed; then `done` is
 * called on the loop thread. Whatever is not shipped stays in the spool for the next start. */
void sn_pipeline_drain(sn_pipeline *p, uint64_t timeout_ms, void (*done)(void *ud), void *ud);

/* Closes the pipeline's handles (the caller then runs the loop until they are closed) and frees
 * it once they are. Call after the transports were stopped. */
void sn_pipeline_destroy(sn_pipeline *p);

#endif
