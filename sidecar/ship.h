/*
 * ship.h -- the shipper's transport: an asynchronous gRPC client for the aggregator's
 * /sentinel.v1.Aggregator/Ingest, whose completions arrive on the sidecar's libuv loop.
 *
 * The pipeline owns the ordering and the retries (docs/sidecar.md, "Shipping to the
 * aggregator"): it peeks the oldest spooled IngestRequest, hands its bytes to sn_ship_send, and
 * on the callback pops it (ACKED, DUPLICATE) or arms a backoff timer and resends the same bytes
 * (RETRY_AFTER, FAILED). This module makes exactly one call at a time; a second send while one
 * is in flight is refused with -EBUSY, which is what keeps batches in order.
 *
 * Threads: sn_ship_create, sn_ship_send and sn_ship_destroy are called on the loop thread, and
 * the callback runs there too. A completion-queue thread of the module's own drives gRPC; when
 * a call completes it parses the IngestResponse (nanopb), stores the result in a one-slot
 * completion list under a mutex and wakes the loop with uv_async_send. The async handle is
 * referenced only while a call is in flight, so an idle shipper does not keep uv_run alive.
 *
 * Transport: plaintext HTTP/2 (insecure channel credentials). In Kubernetes the service mesh
 * (or a node-local tunnel) provides mTLS between pods; TLS in the sidecar itself is not built.
 * Calls do not wait for the channel to be ready (wait_for_ready off): while the aggregator is
 * unreachable a call fails at once with UNAVAILABLE and the pipeline's backoff decides when to
 * try again; meanwhile the channel reconnects on its own, with its reconnect backoff bounded by
 * reconnect_initial_ms..reconnect_max_ms. gRPC's own retries are disabled: the pipeline owns
 * them. Every call has a deadline (DEADLINE_EXCEEDED when the aggregator does not answer).
 *
 * gRPC library state: create calls grpc_init() and destroy calls grpc_shutdown().
 */
#ifndef SN_SIDECAR_SHIP_H
#define SN_SIDECAR_SHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define SN_SHIP_METHOD               "/sentinel.v1.Aggregator/Ingest"
#define SN_SHIP_DEADLINE_MS_DEFAULT  5000u
#define SN_SHIP_MAX_MESSAGE_DEFAULT  (((size_t)16 << 20) + 4096u) /* a 16 MiB Batch + envelope */
#define SN_SHIP_RECONNECT_INITIAL_MS 500u
#define SN_SHIP_RECONNECT_MAX_MS     10000u
#define SN_SHIP_MESSAGE_MAX          256u   /* result message bytes, NUL included */
#define SN_SHIP_RESPONSE_MAX         65536u /* largest IngestResponse accepted */

typedef struct sn_ship sn_ship;

typedef struct sn_ship_config {
    const char *aggregator;        /* "host:port" (IPv6 "[::1]:9090"); copied */
    uint32_t deadline_ms;          /* per call, 1..3600000; default 5 s */
    size_t max_message_bytes;      /* largest request sent, 1 KiB..256 MiB */
    uint32_t reconnect_initial_ms; /* channel reconnect backoff, first delay (>= 100) */
    uint32_t reconnect_max_ms;     /* channel reconnect backoff, cap (>= initial) */
    /* Its own TCP connection (a local subchannel pool) instead of sharing one with other
     * channels to the same aggregator: the alert sender's calls then never queue behind a large
     * batch on a shared connection. Default false. */
    bool own_connection;
} sn_ship_config;

typedef enum sn_ship_outcome {
    SN_SHIP_ACKED = 0,   /* INGEST_STATUS_OK: applied; pop the record */
    SN_SHIP_DUPLICATE,   /* INGEST_STATUS_DUPLICATE: applied before; pop the record */
    SN_SHIP_RETRY_AFTER, /* INGEST_STATUS_RETRY_AFTER: resend the same bytes later */
    SN_SHIP_FAILED       /* no usable answer: transport or gRPC error, or a bad response */
} sn_ship_outcome;

typedef struct sn_ship_result {
    sn_ship_outcome outcome;
    uint64_t acknowledged_sequence; /* from the response (0 when FAILED) */
    /* IngestResponse.features: the sentinel_v1_Feature bits the aggregator reads (bit 1:
     * Batch.groups); 0 when FAILED or from an aggregator older than the field. */
    uint32_t features;
    /* With RETRY_AFTER: the aggregator's delay (may be 0). With FAILED: the delay of a
     * google.rpc.RetryInfo in the trailers (a busy aggregator's UNAVAILABLE), else 0. */
    uint32_t retry_after_ms;
    /* The call's gRPC status code (the values of sn_grpc_code in grpc_unary.h: 14 UNAVAILABLE
     * when the aggregator is down, 4 DEADLINE_EXCEEDED, 1 CANCELLED by sn_ship_destroy, 3
     * INVALID_ARGUMENT for a batch the aggregator refuses for good). 0 (OK) with FAILED means
     * the response itself was unusable: missing, undecodable or INGEST_STATUS_UNSPECIFIED. */
    int grpc_status;
    /* FAILED: the gRPC status message or what was wrong with the response; otherwise
     * IngestResponse.message. Truncated at a byte boundary, NUL-terminated. */
    char message[SN_SHIP_MESSAGE_MAX];
} sn_ship_result;

/* Called on the loop thread once per accepted sn_ship_send. `res` is valid during the call
 * only. The callback may call sn_ship_send again (the shipper is idle by then) and may call
 * sn_ship_destroy, except while it is being called from sn_ship_destroy itself. */
typedef void (*sn_ship_done_fn)(sn_ship *ship, const sn_ship_result *res, void *ud);

/* Fills cfg with the defaults: aggregator "localhost:9090", 5 s deadline, 16 MiB + 4 KiB,
 * reconnect backoff 500 ms .. 10 s. */
void sn_ship_config_init(sn_ship_config *cfg);

/* Creates the channel (connecting lazily), the completion queue and its thread, and the async
 * handle on `loop`. Returns 0 and sets *out, or a negative errno with a one-line reason in err:
 * -EINVAL for a bad config (names the field), -ENOMEM, or the error of pthread_create / the
 * libuv error of uv_async_init. Free with sn_ship_destroy. */
int sn_ship_create(const sn_ship_config *cfg, uv_loop_t *loop, sn_ship **out, char *err,
                   size_t errlen);

/* Starts one Ingest call with the len bytes of req (a serialized IngestRequest). The bytes are
 * copied before the call returns, so the caller may free or reuse req at once. On success
 * returns 0 and cb(ship, result, ud) follows exactly once on the loop thread -- at the latest
 * from inside sn_ship_destroy, with FAILED/CANCELLED. On error cb is never called:
 *   -EBUSY      a call is in flight (one at a time);
 *   -EMSGSIZE   len is over max_message_bytes;
 *   -EINVAL     cb is NULL, or req is NULL with len > 0;
 *   -ECANCELED  the shipper is being destroyed;
 *   -ENOMEM, -EIO  gRPC could not start the call. */
int sn_ship_send(sn_ship *ship, const uint8_t *req, size_t len, sn_ship_done_fn cb, void *ud);

/* True while a call is in flight (from a successful send until its callback has started). */
bool sn_ship_busy(const sn_ship *ship);

/* Cancels the call in flight, if any, and delivers its callback (FAILED, usually CANCELLED --
 * or the real outcome if the answer had already arrived) before returning; joins the
 * completion-queue thread, destroys the channel and releases the gRPC library. The async
 * handle is closed with uv_close: the loop must run once more (as uv_loop_close requires
 * anyway) to free it. Must be called on the loop thread. NULL is a no-op. */
void sn_ship_destroy(sn_ship *ship);

#endif
