/*
 * grpc_unary.h -- a generic unary gRPC server on the gRPC C core: a table of method paths, one
 * handler, bounded calls, request decompression with a hard output limit, RetryInfo on
 * retryable refusals, graceful shutdown. The OTLP/gRPC transport (otlp/grpc_server.h) and the
 * aggregator's sentinel.v1 Ingest service are thin layers on top of it.
 *
 * Threads: two of its own. The completion-queue thread accepts calls, matches the method, reads
 * the one request message and refuses what is over a limit; it never runs the handler. The
 * handler thread takes admitted requests from a bounded FIFO, undoes the request compression
 * (gzip, deflate from grpc-encoding; zstd by its frame magic when accept_zstd) with a hard output
 * limit, calls the handler, and sends the answer -- or, with allow_deferred, lets the handler
 * answer later from another thread (sn_grpc_unary_finish), so the handler thread never waits
 * for the work it handed over. Handlers therefore run one at a time, in the order requests
 * arrived; a slow handler delays only admitted requests, while new calls are
 * still accepted and, past the limit of outstanding calls, refused at once with UNAVAILABLE +
 * google.rpc.RetryInfo.
 *
 * gRPC library state: sn_grpc_unary_create calls grpc_init() and sn_grpc_unary_destroy calls
 * grpc_shutdown(); the library counts these. See docs/otlp-receiver.md ("Threads", "Life cycle").
 */
#ifndef SN_GRPC_UNARY_H
#define SN_GRPC_UNARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

#define SN_GRPC_UNARY_MAX_METHODS   16u
#define SN_GRPC_UNARY_MESSAGE_MAX   256u /* status message bytes, NUL included */
#define SN_GRPC_UNARY_DEFAULT_REPLY 4096u

typedef struct sn_grpc_unary sn_grpc_unary;

/* A call whose answer the handler gives later (see sn_grpc_reply.later). */
typedef struct sn_grpc_pending sn_grpc_pending;

/* gRPC status codes (the values of the gRPC specification, same as grpc_status_code), so users
 * of this module need no gRPC header. */
typedef enum sn_grpc_code {
    SN_GRPC_OK = 0,
    SN_GRPC_CANCELLED = 1,
    SN_GRPC_UNKNOWN = 2,
    SN_GRPC_INVALID_ARGUMENT = 3,
    SN_GRPC_DEADLINE_EXCEEDED = 4,
    SN_GRPC_NOT_FOUND = 5,
    SN_GRPC_ALREADY_EXISTS = 6,
    SN_GRPC_PERMISSION_DENIED = 7,
    SN_GRPC_RESOURCE_EXHAUSTED = 8,
    SN_GRPC_FAILED_PRECONDITION = 9,
    SN_GRPC_ABORTED = 10,
    SN_GRPC_OUT_OF_RANGE = 11,
    SN_GRPC_UNIMPLEMENTED = 12,
    SN_GRPC_INTERNAL = 13,
    SN_GRPC_UNAVAILABLE = 14,
    SN_GRPC_DATA_LOSS = 15,
    SN_GRPC_UNAUTHENTICATED = 16,
    SN_GRPC_CODE_COUNT
} sn_grpc_code;

/* What a handler answers. The server hands it over zeroed except for `response` and
 * `response_cap`. */
typedef struct sn_grpc_reply {
    sn_grpc_code code;                       /* the call's status */
    char message[SN_GRPC_UNARY_MESSAGE_MAX]; /* grpc-message; may be empty */
    /* With SN_GRPC_OK: the response message. The handler writes at most response_cap bytes
     * into `response` (a server-owned buffer, valid during the call) and sets response_len
     * (more than response_cap is answered INTERNAL). */
    uint8_t *response;
    size_t response_cap;
    size_t response_len;
    /* With an error code: true adds google.rpc.Status + RetryInfo{retry_after_ms} to the
     * trailers (retry_after_ms 0 = the server's busy_retry_ms). */
    bool retry;
    uint32_t retry_after_ms;
    /* Answering later (only when the server was created with allow_deferred; NULL otherwise):
     * a handler that hands the work elsewhere keeps `later`, sets `deferred` and returns at
     * once, so the handler thread goes on to the next request. It must then call
     * sn_grpc_unary_finish(later, ...) exactly once, from any thread, before the server is
     * shut down; the call keeps its max_calls slot until then. `response` is then not used. */
    sn_grpc_pending *later;
    bool deferred;
} sn_grpc_reply;

/* An optional memory budget shared with other transports (the sidecar's sidecar/memguard.h).
 * reserve(ud, more, held): may a call that holds `held` bytes hold `more` besides? 0 reserves
 * them; -EAGAIN refuses the call for now (UNAVAILABLE + RetryInfo, nothing kept); -E2BIG refuses
 * it for good (larger than the whole budget: RESOURCE_EXHAUSTED without RetryInfo).
 * release(ud, bytes) gives back what a call reserved, when it is answered. available(ud): what
 * is not reserved now (bounds decompression). All three: any thread, fast, no blocking. */
typedef struct sn_grpc_budget {
    int (*reserve)(void *ud, size_t more, size_t held);
    void (*release)(void *ud, size_t bytes);
    size_t (*available)(void *ud);
    void *ud;
    /* The whole budget (0: unknown). gRPC reads a message whole before it can be refused, so
     * its receive limit is lowered to a third of this (a message that needs more than the
     * budget could never be taken): a message gRPC buffers is then at most total / 3. */
    size_t total;
} sn_grpc_budget;

/* Called on the handler thread for every admitted, decompressed request. `method` is the index
 * of the call's path in the method table; `body` is borrowed for the call only. Handlers run
 * one at a time (never concurrently with each other) and may block, which delays the calls
 * queued behind. */
typedef void (*sn_grpc_unary_handler)(unsigned method, const uint8_t *body, size_t len,
                                      sn_grpc_reply *reply, void *ud);

/* The stages of a call that the server can time (sn_grpc_unary_config.stage_seconds), each from
 * CLOCK_MONOTONIC readings taken where the stage starts and ends, observed when the answer's
 * batch completes. Only calls whose message reached handling are timed (not refusals). */
typedef enum sn_grpc_stage {
    SN_GRPC_STAGE_READ = 0, /* gRPC's new-call event to the whole message (the client's send,
                               flow control, the completion-queue thread's wake-ups) */
    SN_GRPC_STAGE_QUEUE,    /* message to the start of its handling: the hand-off to the
                               handler thread and the requests ahead in its FIFO (0 inline) */
    SN_GRPC_STAGE_HANDLE,   /* the start of its handling (decompression, the handler) to the
                               answer handed to gRPC; for a deferred call up to
                               sn_grpc_unary_finish, so the other thread's work included */
    SN_GRPC_STAGE_SEND,     /* the answer handed to gRPC to its batch's completion (written) */
    SN_GRPC_STAGE_TOTAL,    /* message to the answer's completion: the server's share */
    SN_GRPC_STAGE_COUNT
} sn_grpc_stage;

/* Label values for the stages ("grpc_read", ...), index = sn_grpc_stage. */
extern const char *const sn_grpc_stage_names[SN_GRPC_STAGE_COUNT];

typedef struct sn_grpc_unary_config {
    const char *name;              /* prefix of error messages ("otlp grpc"); NULL = "grpc" */
    const char *listen;            /* "host:port" (IPv6 as "[::1]:4317"); port 0 picks a free one */
    const char *const *methods;    /* full paths "/pkg.Service/Method"; index = handler's method */
    unsigned nmethods;             /* 1..SN_GRPC_UNARY_MAX_METHODS */
    size_t max_message_bytes;      /* request size limit, on the wire and after decompression */
    unsigned max_calls;            /* admitted calls at once (reading, queued, in the handler) */
    size_t max_queued_bytes;       /* received bytes waiting for the handler; a message that would
                                      go over it is refused (one message is always let in) */
    unsigned max_streams;          /* HTTP/2 concurrent streams per connection */
    size_t max_held_bytes;         /* 0: off. Otherwise an admitted call's message is read (gRPC
                                      assembles it whole) only while the messages received and
                                      not yet copied out, plus the reads under way at the message
                                      estimate, are under this; the others wait unrefused (their
                                      bytes stay within the stream window) in arrival order. One
                                      read is always let in. */
    size_t window_bytes;           /* 0: gRPC's flow control (BDP probing grows a stream's window
                                      to megabytes); > 0: BDP probing off, a stream's lookahead and
                                      the TCP read chunk capped at this -- the read cap only once
                                      the process turned gRPC's tcp_read_chunks experiment off
                                      (sn_grpc_unary_read_chunks; see otlp-receiver.md) */
    size_t max_reply_bytes;        /* capacity of sn_grpc_reply.response */
    uint32_t busy_retry_ms;        /* RetryInfo delay for busy refusals and retry_after_ms == 0 */
    bool accept_zstd;              /* decode request messages that start with a zstd frame magic */
    bool allow_deferred;           /* handlers may answer later (sn_grpc_reply.later) */
    sn_grpc_unary_handler handler; /* required */
    void *handler_ud;
    /* Optional (reserve NULL: none). A new call that got a max_calls slot reserves twice an
     * estimate of its message (the largest recent message, decaying, at least 64 KiB: gRPC's
     * buffers while it reads) before the message is read -- the one admission decision: a call
     * refused for max_calls takes no budget, one refused here gives its slot back -- and is
     * refused for now when that does not fit (an estimate answered -E2BIG is halved and tried
     * again, down to 64 KiB: only a message's real size is ever refused as too large); when
     * the message has
     * arrived, three times its length (gRPC's buffers and our copy, later the decoded data); a
     * compressed one also its output, charged as the output buffer grows (so decompression
     * stops where the budget ends), plus half of it for decoding. Released when the call is
     * answered; the handler thread's buffers then shrink back to 64 KiB (without a budget they
     * keep up to 1 MiB). */
    sn_grpc_budget budget;
    /* Optional: per stage, a histogram (seconds) that every timed call is observed in; NULL
     * entries are not timed. Not owned; they must outlive the server. Cost: one clock read
     * per stage boundary (vDSO, tens of nanoseconds) and one observation per stage. */
    sn_histogram *stage_seconds[SN_GRPC_STAGE_COUNT];
    /* Requests of the methods in inline_methods (bit i: method i) whose message is at most
     * inline_max_bytes, arrives uncompressed (no grpc-encoding, no zstd frame) and finds the
     * handler thread idle with nothing queued are handled on the completion-queue thread
     * itself: one thread hand-off less. Larger ones, or any while the handler thread is busy,
     * go to the handler thread, so the completion-queue thread keeps accepting calls. Handlers
     * still run one at a time, in arrival order; an inline handler should not block (it holds
     * up every call's progress meanwhile). 0 (the default): never. */
    size_t inline_max_bytes;
    uint32_t inline_methods;
} sn_grpc_unary_config;

/* Counters, read with sn_grpc_unary_stats_get; each only grows. */
typedef struct sn_grpc_unary_stats {
    uint64_t requests[SN_GRPC_UNARY_MAX_METHODS]; /* handed to the handler, by method */
    uint64_t answers[SN_GRPC_CODE_COUNT];         /* handler answers by status code */
    uint64_t refused_busy;                        /* UNAVAILABLE: over max_calls / queued bytes */
    uint64_t refused_budget;                      /* UNAVAILABLE: over cfg.budget */
    uint64_t refused_too_large;                   /* RESOURCE_EXHAUSTED after decompression */
    uint64_t refused_bad_encoding;                /* undecodable compressed message */
    uint64_t unimplemented;                       /* unknown method */
    uint64_t expired;                             /* deadline passed before the handler ran */
    uint64_t bytes_in;   /* request bytes as received (compressed), handled requests */
    uint64_t bytes_out;  /* the same requests after decompression */
    uint64_t read_waits; /* calls whose read waited for cfg.max_held_bytes */
    /* Gauges, as of the call: */
    uint64_t held_bytes;   /* messages received and not yet copied out */
    uint64_t reads_parked; /* admitted calls whose read waits now */
    uint64_t handler_idle; /* 1 while the handler thread sleeps waiting for work (only then
                            * may a small request be handled inline, cfg.inline_max_bytes) */
} sn_grpc_unary_stats;

/* gRPC 1.51's tcp_read_chunks experiment (on by default) sizes every socket read's buffers by
 * the largest recent burst, ignoring the read cap of window_bytes. With `on` false this puts
 * "-tcp_read_chunks" in GRPC_EXPERIMENTS ahead of the environment's own entries (which come
 * later and so win); with `on` true it changes nothing. Process-wide: call it before the first
 * grpc_init (gRPC reads its experiments once). Returns 0, or -1 with errno set (ENOMEM). */
int sn_grpc_unary_read_chunks(bool on);

/* Sends gRPC core's own log lines (and its GRPC_TRACE output) through the project's logger:
 * one JSON line each with msg "grpc" and the fields message, file and line; gRPC's errors at
 * warn, the rest at debug (so a trace needs log.level=debug too). Process-wide; call it before
 * grpc_init. Never fails. */
void sn_grpc_unary_route_logs(void);

/* Fills `cfg` with the defaults: 16 MiB messages, 64 calls, 4 x max_message queued, 100
 * streams, gRPC's own flow control (window_bytes 0), 4 KiB replies, 1 s retry, accept_zstd
 * true; no listen address, methods or handler. Never fails. */
void sn_grpc_unary_config_init(sn_grpc_unary_config *cfg);

/* Creates a server bound to cfg->listen (the port is bound here, so a conflict fails now and
 * sn_grpc_unary_port is valid on return). `cfg` is copied, with the listen address and name;
 * the method table and its strings must outlive the server. Returns 0 and sets *out, or a
 * negative errno with a one-line reason in `err` (EINVAL bad config, EADDRNOTAVAIL when the
 * address cannot be bound, ENOMEM). The caller frees *out with sn_grpc_unary_destroy. */
int sn_grpc_unary_create(const sn_grpc_unary_config *cfg, sn_grpc_unary **out, char *err,
                         size_t errlen);

/* Answers a call a handler deferred (sn_grpc_reply.deferred): `reply` as a handler fills it,
 * with `response` pointing at the caller's response bytes (copied here; `later`, `deferred`
 * ignored). Thread-safe (gRPC core allows grpc_call_start_batch from any thread); `later` is
 * gone on return. */
void sn_grpc_unary_finish(sn_grpc_pending *later, sn_grpc_reply *reply);

/* The bound TCP port (useful after listening on port 0). */
int sn_grpc_unary_port(const sn_grpc_unary *s);

/* Starts the two threads (which block every signal) and begins serving. Returns 0, -EALREADY
 * if already started or shut down, or a negative errno if a thread cannot be started (the
 * server is then left stopped). */
int sn_grpc_unary_start(sn_grpc_unary *s);

/* Graceful stop: no new calls are accepted; calls in flight (queued ones included) finish
 * normally for up to `grace_ms`, after which the rest are cancelled (clients see CANCELLED or
 * UNAVAILABLE). Blocks until every call is finished and both threads have exited. Idempotent;
 * a server never started is simply marked stopped. Must not be called from the handler. */
void sn_grpc_unary_shutdown(sn_grpc_unary *s, uint32_t grace_ms);

/* Copies the counters into *out. Safe from any thread, at any time before destroy. */
void sn_grpc_unary_stats_get(const sn_grpc_unary *s, sn_grpc_unary_stats *out);

/* Shuts down (grace 0 if still running), frees the server and releases its grpc_init
 * reference. NULL is a no-op. */
void sn_grpc_unary_destroy(sn_grpc_unary *s);

#endif
