/*
 * ingest_rpc.h -- a test client for sentinel.v1.Aggregator/Ingest on the gRPC C core: builds
 * IngestRequests around protoc-c Batches and makes one unary call. Used by the ingest unit test
 * and the aggregator integration test. The caller holds a grpc_init() reference.
 */
#ifndef SN_TEST_INGEST_RPC_H
#define SN_TEST_INGEST_RPC_H

#include "sentinel/v1/sentinel.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ingest_rpc_result {
    int grpc_status;   /* grpc_status_code */
    char details[256]; /* grpc-message */
    bool has_response; /* an IngestResponse arrived and decoded */
    int status;        /* IngestResponse.status */
    uint64_t ack;      /* acknowledged_sequence */
    uint32_t retry_after_ms;
    char message[256];
    uint32_t features; /* IngestResponse.features */
} ingest_rpc_result;

/* The raw answer of one unary call. */
typedef struct grpc_test_reply {
    int grpc_status;
    char details[256];
    bool got_message;
    uint8_t *message; /* malloc'd response bytes (NULL when none); free with grpc_test_reply_free */
    size_t message_len;
    bool has_status_bin; /* a grpc-status-details-bin trailer (google.rpc.Status) arrived */
    uint8_t status_bin[512];
    size_t status_bin_len;
} grpc_test_reply;

/* Makes one unary call of `method` with `req` at target and waits up to timeout_ms. Returns 0
 * with *out filled, or -1 when the call could not be made at all. */
int grpc_test_call(const char *target, const char *method, const void *req, size_t len,
                   int timeout_ms, grpc_test_reply *out);
void grpc_test_reply_free(grpc_test_reply *r);

/* Sends `req` (len bytes, any content) to /sentinel.v1.Aggregator/Ingest at target
 * ("127.0.0.1:port") and waits up to timeout_ms. Returns 0 with *out filled, or -1 when the
 * call could not be made at all. */
int ingest_rpc_call(const char *target, const void *req, size_t len, int timeout_ms,
                    ingest_rpc_result *out);

/* Serialises `b` and wraps it in an IngestRequest (zstd-compressed at level 3 with a declared
 * content size when `zstd`). Returns a malloc'd buffer (caller frees) and its length. */
uint8_t *ingest_rpc_request(const Sentinel__V1__Batch *b, bool zstd, size_t *len);

/* Wraps an arbitrary payload in an IngestRequest envelope. Returns a malloc'd buffer. */
uint8_t *ingest_rpc_envelope(int compression, uint64_t uncompressed_size, const void *payload,
                             size_t plen, size_t *len);

#endif
