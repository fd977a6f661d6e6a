/*
 * tee.h -- the optional OTLP tee: every OTLP request the sidecar receives is also forwarded,
 * byte for byte, to the user's own collector (SENTINEL_UPSTREAM_OTLP), so putting the sidecar
 * in the path never costs the user their telemetry.
 *
 * The tee is fire-and-forget for the application. sn_tee_submit copies the request into a
 * bounded queue and returns at once; when the queue is full the OLDEST waiting request is
 * dropped (and counted), never the application's call. Worker threads of the tee's own send the
 * queued requests upstream, one attempt at a time each, with a deadline per attempt, retrying
 * retryable failures with exponential backoff and jitter (honouring the upstream's RetryInfo /
 * Retry-After) and dropping non-retryable ones (counted).
 *
 * Upstream protocol, from the URL (see docs/sidecar.md, "Tee to an existing collector"):
 *   http://host:4317            OTLP/gRPC (port 4317 and no path)
 *   http://host:4318, any other port, or any URL with a path
 *                               OTLP/HTTP: POST <url path>/v1/{traces,metrics,logs}
 *   https://...                 the same over TLS (system trust store)
 * sn_tee_config.protocol forces one or the other. A gRPC upstream only carries protobuf, so
 * JSON-encoded requests are not forwarded to it (counted in not_forwarded); an HTTP upstream
 * carries both encodings with the request's own Content-Type.
 *
 * Memory: at most max_queue_requests / max_queue_bytes waiting, plus one request per worker
 * being sent (each no larger than max_queue_bytes).
 */
#ifndef SN_SIDECAR_TEE_H
#define SN_SIDECAR_TEE_H

#include "metrics.h"
#include "otlp/receiver.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_TEE_URL_MAX                1024u /* longest upstream URL, including the NUL */
#define SN_TEE_DEFAULT_MAX_REQUESTS   1024u
#define SN_TEE_DEFAULT_MAX_BYTES      (64u * 1024u * 1024u)
#define SN_TEE_DEFAULT_TIMEOUT_MS     10000u
#define SN_TEE_DEFAULT_BACKOFF_MS     500u
#define SN_TEE_DEFAULT_MAX_BACKOFF_MS 30000u
#define SN_TEE_DEFAULT_MAX_RETRY_MS   60000u
#define SN_TEE_DEFAULT_WORKERS        2u
#define SN_TEE_MAX_WORKERS            16u

typedef struct sn_tee sn_tee;

typedef enum sn_tee_protocol {
    SN_TEE_AUTO = 0, /* from the URL: port 4317 without a path is gRPC, anything else HTTP */
    SN_TEE_GRPC,
    SN_TEE_HTTP
} sn_tee_protocol;

typedef struct sn_tee_config {
    const char *url;           /* SENTINEL_UPSTREAM_OTLP, e.g. "http://otel-collector:4317" */
    sn_tee_protocol protocol;  /* SN_TEE_AUTO unless forced */
    size_t max_queue_requests; /* requests waiting at most; 0: default */
    size_t max_queue_bytes;    /* request bytes waiting at most; 0: default. A single request
                                  larger than this is dropped at once (dropped_too_large) */
    uint32_t timeout_ms;       /* deadline of one attempt, connect included; 0: default */
    uint32_t backoff_ms;       /* first retry delay and the floor of every one; later ones are
                                  drawn up to a ceiling doubling per retry (shared/backoff.h);
                                  0: default */
    uint32_t max_backoff_ms;   /* ceiling of one computed retry delay; 0: default. A delay the
                                  upstream asks for (RetryInfo, Retry-After) is honoured as is */
    uint32_t max_retry_ms;     /* a request still failing this long after its first attempt is
                                  dropped (dropped_expired); 0: default */
    unsigned workers;          /* sending threads (requests in flight at once); 0: default */
    bool gzip;                 /* compress what is sent (gRPC message / HTTP body) with gzip */
    sn_metrics *metrics;       /* optional: the tee registers and keeps up to date
                                  sentinel_sidecar_tee_requests_total{outcome},
                                  sentinel_sidecar_tee_retries_total,
                                  sentinel_sidecar_tee_queue_requests and _queue_bytes there
                                  (docs/sidecar.md); the registry must outlive the tee */
} sn_tee_config;

/* Counters and gauges, read with sn_tee_stats_get. Every submitted request ends in exactly one
 * of delivered, dropped_*, not_forwarded, or is still queued / in flight:
 *   submitted == delivered + dropped_overflow + dropped_too_large + dropped_rejected
 *                + dropped_expired + dropped_shutdown + not_forwarded + queued + in_flight */
typedef struct sn_tee_stats {
    uint64_t submitted;         /* sn_tee_submit calls */
    uint64_t delivered;         /* accepted by the upstream (a partial success included) */
    uint64_t attempts;          /* send attempts, first ones and retries */
    uint64_t retries;           /* attempts after a retryable failure */
    uint64_t dropped_overflow;  /* oldest queued requests pushed out by newer ones */
    uint64_t dropped_too_large; /* a single request over max_queue_bytes */
    uint64_t dropped_rejected;  /* refused by the upstream as non-retryable (HTTP 400, ...) */
    uint64_t dropped_expired;   /* still failing after max_retry_ms */
    uint64_t dropped_shutdown;  /* left over when sn_tee_destroy's grace period ran out */
    uint64_t not_forwarded;     /* JSON requests with a gRPC upstream */
    uint64_t queued;            /* gauge: requests waiting */
    uint64_t queued_bytes;      /* gauge: bytes waiting */
    uint64_t in_flight;         /* gauge: requests held by a worker (sending or backing off) */
} sn_tee_stats;

/* Fills `cfg` with the defaults above, protocol auto, no gzip and no URL. Never fails. */
void sn_tee_config_init(sn_tee_config *cfg);

/* Parses cfg->url, creates the upstream client (gRPC channel or libcurl handles) and starts
 * the worker threads. Nothing is sent until a request is submitted; an upstream that is down
 * is not an error. `cfg` is copied; the URL need not outlive the call. Returns 0 and sets
 * *out, or -EINVAL with a one-line message naming SENTINEL_UPSTREAM_OTLP in `err` (bad URL:
 * scheme other than http/https, userinfo, query, fragment, bad port, a path with a forced gRPC
 * protocol; a limit out of range), -ENOENT when an HTTP upstream cannot load libcurl.so.4
 * (loaded with dlopen, not linked), -ENOMEM, the metrics registry's error (-EEXIST when its
 * families are registered already), or the negative errno of pthread_create. The caller frees
 * *out with sn_tee_destroy. */
int sn_tee_create(const sn_tee_config *cfg, sn_tee **out, char *err, size_t errlen);

/* Queues a copy of one received request (the decompressed body, as the transport handed it)
 * for forwarding. Thread-safe; called from the receiver threads. Never blocks on the upstream
 * or waits for room: at worst it takes a mutex held for a few list operations. When the queue
 * is over a limit the oldest waiting requests are dropped to make room. Returns 0 when queued,
 * or a negative errno when this request is not forwarded (-EMSGSIZE too large, -ENOTSUP JSON
 * for a gRPC upstream, -ENOMEM, -ESHUTDOWN after destroy began); each is counted, and none
 * of them concerns the application's own answer. -EINVAL (an unknown signal or encoding) is
 * not counted. `body` is borrowed for the call. */
int sn_tee_submit(sn_tee *tee, sn_otlp_signal signal, sn_otlp_encoding encoding,
                  const uint8_t *body, size_t len);

/* Copies the counters into *out. Thread-safe, any time before destroy. */
void sn_tee_stats_get(sn_tee *tee, sn_tee_stats *out);

/* The protocol chosen for the upstream (SN_TEE_GRPC or SN_TEE_HTTP). */
sn_tee_protocol sn_tee_protocol_of(const sn_tee *tee);

/* Stops accepting, then keeps sending what is queued (retries included) for up to grace_ms;
 * when the grace period runs out, attempts in flight are cancelled and what is left is dropped
 * (dropped_shutdown). Joins the workers and frees the tee. If `final` is not NULL the last
 * counters are copied there. NULL tee is a no-op. Must not be called concurrently with
 * sn_tee_submit on the same tee (stop the receivers first). */
void sn_tee_destroy(sn_tee *tee, uint32_t grace_ms, sn_tee_stats *final);

#endif
