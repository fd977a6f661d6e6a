/*
 * grpc_server.h -- the OTLP/gRPC transport: serves the three OTLP Export methods on the gRPC
 * C core and hands each request to an sn_otlp_handler (receiver.h). A thin layer on the generic
 * unary server (grpc_unary.h), which owns the calls, limits, compression and threads below.
 *
 * Threads: two of its own. The completion-queue thread accepts calls, reads the one request
 * message and refuses what is over a limit; it never runs the handler. The handler thread
 * takes admitted requests from a bounded FIFO, undoes the request compression (gzip, deflate,
 * zstd) with a hard output limit, calls the handler, and sends the answer. A slow handler
 * therefore delays only admitted requests; new calls are still accepted and, past the limit
 * of outstanding calls, refused at once with UNAVAILABLE + google.rpc.RetryInfo.
 *
 * gRPC library state: sn_grpc_server_create calls grpc_init() and sn_grpc_server_destroy
 * calls grpc_shutdown(); the library counts these, so a program may also hold its own
 * grpc_init() for other gRPC users. See docs/otlp-receiver.md.
 */
#ifndef SN_OTLP_GRPC_SERVER_H
#define SN_OTLP_GRPC_SERVER_H

#include "grpc_unary.h"
#include "otlp/receiver.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_GRPC_DEFAULT_MAX_MESSAGE (16u * 1024u * 1024u)
#define SN_GRPC_DEFAULT_MAX_CALLS   64u
#define SN_GRPC_DEFAULT_RETRY_MS    1000u
#define SN_GRPC_DEFAULT_STREAMS     100u
#define SN_GRPC_DEFAULT_HELD_BYTES  (1024u * 1024u)

typedef struct sn_grpc_server sn_grpc_server;

typedef struct sn_grpc_server_config {
    const char *listen;       /* "host:port" (IPv6 as "[::1]:4317"); port 0 picks a free one */
    size_t max_message_bytes; /* request size limit, on the wire and after decompression */
    unsigned max_calls;       /* admitted calls at once (reading, queued, in the handler) */
    size_t max_queued_bytes;  /* received bytes waiting for the handler; a message that would
                                 go over it is refused (one message is always let in) */
    unsigned max_streams;     /* HTTP/2 concurrent streams per connection */
    size_t max_held_bytes;    /* bound on messages held before handling; 0: off
                                 (sn_grpc_unary_config.max_held_bytes; default 1 MiB) */
    size_t window_bytes;      /* 0: gRPC's own flow control; > 0: a fixed per-stream window
                                 without BDP probing (sn_grpc_unary_config.window_bytes) */
    uint32_t busy_retry_ms;   /* RetryInfo delay when refused for max_calls, and the default
                                 when a handler answers RETRY with retry_after_ms == 0 */
    bool accept_zstd;         /* decode zstd request messages (see docs/otlp-receiver.md) */
    bool allow_deferred;      /* the handler may answer later (sn_otlp_result.later): the
                                 handler thread then goes on to the next request at once */
    sn_otlp_handler handler;  /* required */
    void *handler_ud;
    sn_grpc_budget budget; /* optional request-memory budget (grpc_unary.h) */
    /* Optional per-stage histograms (grpc_unary.h, sn_grpc_stage); NULL entries untimed. */
    sn_histogram *stage_seconds[SN_GRPC_STAGE_COUNT];
    /* Trace Export requests of at most this many uncompressed bytes are decoded on the
     * completion-queue thread when the handler thread is idle (grpc_unary.h,
     * inline_max_bytes); 0: never. Metrics and logs always go to the handler thread (a
     * metrics request may wait for the sidecar's loop). */
    size_t inline_max_bytes;
} sn_grpc_server_config;

/* Counters, read with sn_grpc_server_stats; each only grows. */
typedef struct sn_grpc_server_stats {
    uint64_t requests[SN_OTLP_SIGNAL_COUNT]; /* handed to the handler */
    uint64_t outcomes[SN_OTLP_INTERNAL + 1]; /* handler answers by sn_otlp_outcome */
    uint64_t refused_busy;                   /* UNAVAILABLE: over max_calls */
    uint64_t refused_budget;                 /* UNAVAILABLE: over cfg.budget */
    uint64_t refused_too_large;              /* RESOURCE_EXHAUSTED after decompression */
    uint64_t refused_bad_encoding;           /* undecodable compressed message */
    uint64_t unimplemented;                  /* unknown method */
    uint64_t expired;                        /* deadline passed before the handler ran */
} sn_grpc_server_stats;

/* Fills `cfg` with the defaults above (max_queued_bytes 4 x max_message), listen "127.0.0.1:4317",
 * accept_zstd true and no handler. Never fails. */
void sn_grpc_server_config_init(sn_grpc_server_config *cfg);

/* Creates a server bound to cfg->listen (the port is bound here, so a port conflict fails
 * now, and sn_grpc_server_port is valid on return). `cfg` is copied; cfg->listen need not
 * outlive the call. Returns 0 and sets *out, or a negative errno-style code with a one-line
 * reason in `err` (EINVAL bad config, EADDRNOTAVAIL when the address cannot be bound -- in
 * use or not local; gRPC logs which --, ENOMEM).
 * The caller frees *out with sn_grpc_server_destroy. */
int sn_grpc_server_create(const sn_grpc_server_config *cfg, sn_grpc_server **out, char *err,
                          size_t errlen);

/* The bound TCP port (useful after listening on port 0). */
int sn_grpc_server_port(const sn_grpc_server *s);

/* Starts the two threads and begins serving. Returns 0, or -EALREADY if already started, or a
 * negative errno if a thread cannot be started (the server is then left stopped). */
int sn_grpc_server_start(sn_grpc_server *s);

/* Graceful stop: no new calls are accepted; calls in flight (including queued ones) finish
 * normally for up to `grace_ms`, after which the rest are cancelled (clients see CANCELLED).
 * Blocks until every call is finished and both threads have exited. Idempotent; a server
 * never started is simply marked stopped. Must not be called from the handler. */
void sn_grpc_server_shutdown(sn_grpc_server *s, uint32_t grace_ms);

/* Copies the counters into *out. Safe from any thread, at any time before destroy. */
void sn_grpc_server_stats_get(const sn_grpc_server *s, sn_grpc_server_stats *out);

/* Shuts down (grace 0 if still running) and frees the server, then releases its grpc_init
 * reference. NULL is a no-op. */
void sn_grpc_server_destroy(sn_grpc_server *s);

#endif
