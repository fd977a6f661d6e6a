/*
 * receiver.h -- what the OTLP transports (gRPC and HTTP) hand to the program, and what they
 * expect back.
 *
 * A transport receives one Export request, undoes the transport's compression with a size
 * limit, and calls the program's handler on the transport's own thread with the request bytes.
 * The handler decodes (pure, thread-safe), hands events to the loop thread, and fills an
 * sn_otlp_result. The transport turns the result into the protocol's answer: for gRPC a status
 * (with google.rpc.RetryInfo for retryable refusals) and an Export*ServiceResponse; for HTTP a
 * status code (200, 400, 413, 429, 503 with Retry-After) and a body in the request's format.
 */
#ifndef SN_OTLP_RECEIVER_H
#define SN_OTLP_RECEIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sn_otlp_signal {
    SN_OTLP_TRACES = 0,
    SN_OTLP_METRICS,
    SN_OTLP_LOGS,
    SN_OTLP_SIGNAL_COUNT
} sn_otlp_signal;

/* How the request body is encoded. gRPC is always protobuf. */
typedef enum sn_otlp_encoding { SN_OTLP_PROTOBUF = 0, SN_OTLP_JSON } sn_otlp_encoding;

typedef enum sn_otlp_outcome {
    SN_OTLP_OK = 0,         /* accepted (rejected > 0 makes it a partial success) */
    SN_OTLP_INVALID,        /* malformed: gRPC INVALID_ARGUMENT, HTTP 400 */
    SN_OTLP_RETRY,          /* over a limit, try later: gRPC UNAVAILABLE + RetryInfo, HTTP 503 */
    SN_OTLP_RESOURCE_RETRY, /* rate limited: gRPC RESOURCE_EXHAUSTED + RetryInfo, HTTP 429 */
    SN_OTLP_TOO_LARGE,      /* over the size limit: RESOURCE_EXHAUSTED (no RetryInfo), HTTP 413 */
    SN_OTLP_INTERNAL        /* a bug or an internal failure: gRPC INTERNAL, HTTP 500 */
} sn_otlp_outcome;

/* A request whose answer comes later. A transport that can answer from another thread (the
 * gRPC one with allow_deferred) passes one in sn_otlp_result.later; the handler that takes it
 * sets sn_otlp_result.deferred, returns at once, and later calls later->finish exactly once,
 * from any thread, before the transport is shut down. `finish` sends the answer and frees
 * `later`; `res` is read during the call only. */
typedef struct sn_otlp_later sn_otlp_later;
typedef struct sn_otlp_result sn_otlp_result;
struct sn_otlp_later {
    void (*finish)(sn_otlp_later *later, const sn_otlp_result *res);
};

struct sn_otlp_result {
    sn_otlp_outcome outcome;
    int64_t rejected; /* items (spans, data points, log records) rejected, for partial success */
    uint32_t retry_after_ms; /* for SN_OTLP_RETRY / SN_OTLP_RESOURCE_RETRY */
    char message[256];       /* error_message / status message; empty on full success */
    sn_otlp_later *later;    /* set by the transport when the answer may come later, else NULL */
    bool deferred;           /* set by the handler: it took `later`; the rest is ignored */
};

/* Called by a transport for every complete, decompressed request. `body` is borrowed for the
 * call only. Runs on the transport's thread(s): it must be thread-safe and must not block for
 * long. `res` arrives zeroed (SN_OTLP_OK) except for `later`. */
typedef void (*sn_otlp_handler)(sn_otlp_signal signal, sn_otlp_encoding encoding,
                                const uint8_t *body, size_t len, sn_otlp_result *res, void *ud);

#endif
