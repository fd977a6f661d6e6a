/*
 * ingest.h -- the aggregator's sidecar ingest: gRPC service sentinel.v1.Aggregator, method
 * Ingest (proto/sentinel/v1/sentinel.proto), on the generic unary gRPC server (grpc_unary.h).
 *
 * For each IngestRequest, on the server's handler thread (one request at a time):
 *   1. envelope: decoded with protobuf-c; uncompressed_size is checked against the limit before
 *      anything is allocated for the payload;
 *   2. payload: COMPRESSION_ZSTD is decompressed into exactly uncompressed_size bytes (a frame
 *      declaring another content size is refused first; streamed output is stopped the moment
 *      it passes the declared size) -- a decompression bomb is never allocated;
 *   3. Batch: read by hand straight into sn_event (protobuf-c's rules: refused exactly when
 *      protobuf-c would refuse it), local alerts with protobuf-c from a bump arena with a byte
 *      budget; validated and converted into sn_event / sn_local_alert arrays (strings
 *      truncated to the event's fields);
 *   4. de-duplication on (sidecar_id, sequence) (sequences.h): a sequence at or below the highest
 *      applied for that id is answered DUPLICATE and not applied again. Sequence 0 is a sidecar's
 *      local alerts sent ahead of their batch: alerts only (else INVALID_ARGUMENT), applied
 *      without touching the table, answered OK with the id's acknowledged sequence as it is;
 *   5. apply: the batch is handed to the program (usually to its loop thread); the answer waits
 *      until apply returns. 0: the sequence is recorded, OK + acknowledged_sequence; -EAGAIN:
 *      RETRY_AFTER (not applied, nothing recorded); anything else: gRPC INTERNAL.
 * Errors: INVALID_ARGUMENT (malformed envelope, payload or batch; corrupt zstd; sizes that do not
 * match), RESOURCE_EXHAUSTED (over a size or count limit; not retryable). See docs/aggregator.md.
 */
#ifndef SN_INGEST_H
#define SN_INGEST_H

#include "aggregate.h"
#include "alert.h"
#include "event.h"
#include "sequences.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_INGEST_METHOD "/sentinel.v1.Aggregator/Ingest"

#define SN_INGEST_DEFAULT_MAX_MESSAGE  (16u * 1024u * 1024u)
#define SN_INGEST_DEFAULT_MAX_CALLS    64u
#define SN_INGEST_DEFAULT_MAX_EVENTS   16384u
#define SN_INGEST_DEFAULT_MAX_ALERTS   4096u
#define SN_INGEST_DEFAULT_MAX_SIDECARS 16384u
#define SN_INGEST_DEFAULT_IDLE_NS      (INT64_C(7) * 24 * 3600 * 1000000000)
#define SN_INGEST_DEFAULT_RETRY_MS     1000u

typedef struct sn_ingest sn_ingest;

/* One accepted batch, as apply sees it. Everything is borrowed for the apply call only. */
typedef struct sn_ingest_batch {
    const char *sidecar_id; /* NUL-terminated, 1..SN_SEQ_ID_MAX bytes */
    /* >= 1, above every sequence applied before for sidecar_id; or 0: local alerts sent ahead
     * of their batch (no events, no aggregates, >= 1 alert), which come again in their
     * sequenced batch -- apply each alert_id once */
    uint64_t sequence;
    int64_t created_unix_nano;
    uint64_t dropped_events;
    const sn_event *events;
    size_t nevents;
    const sn_local_alert *alerts;
    size_t nalerts;
    const sn_aggregate *aggregates; /* GenAI metric points (sentinel.v1.LlmAggregate) */
    size_t naggregates;
} sn_ingest_batch;

/* Applies a batch; returns only once it was applied (or refused). 0: applied; -EAGAIN: not now
 * (overload), the sidecar retries later; -EALREADY: already applied elsewhere (another replica,
 * aggregator/shared_state.h), recorded and answered DUPLICATE (for sequence 0: every alert was
 * applied before); any other negative errno: failed, answered INTERNAL.
 * Called on the gRPC handler thread, one batch at a time. */
typedef int (*sn_ingest_apply_fn)(const sn_ingest_batch *b, void *ud);

/* Why requests were refused (counters). */
typedef enum sn_ingest_refusal {
    SN_INGEST_REFUSED_MALFORMED = 0, /* envelope or Batch not decodable */
    SN_INGEST_REFUSED_INVALID,       /* a Batch that breaks a rule (id, sequence, a field) */
    SN_INGEST_REFUSED_TOO_LARGE,     /* over a size or count limit */
    SN_INGEST_REFUSED_DECOMPRESS,    /* corrupt zstd, or sizes that do not match */
    SN_INGEST_REFUSED_RETRY,         /* apply said -EAGAIN: RETRY_AFTER */
    SN_INGEST_REFUSED_INTERNAL,      /* apply failed otherwise, or out of memory */
    SN_INGEST_REFUSED_COUNT
} sn_ingest_refusal;

typedef struct sn_ingest_config {
    const char *listen;       /* "host:port"; port 0 picks a free one */
    size_t max_message_bytes; /* request on the wire, and the decompressed payload */
    unsigned max_calls;       /* calls admitted at once (see grpc_unary.h) */
    size_t window_bytes;      /* 0: gRPC's flow control; > 0: a fixed per-stream window and TCP
                                 read cap (sn_grpc_unary_config.window_bytes) */
    size_t max_batch_events;  /* events in one batch (and, separately, aggregates) */
    size_t max_batch_alerts;  /* alerts in one batch */
    size_t max_sidecars;      /* de-duplication table entries */
    int64_t sidecar_idle_ns;  /* a sidecar_id unseen this long is forgotten */
    uint32_t retry_after_ms;  /* RETRY_AFTER delay and busy RetryInfo */
    sn_ingest_apply_fn apply; /* required */
    void *apply_ud;
} sn_ingest_config;

/* Counters; each only grows except `sidecars`. */
typedef struct sn_ingest_stats {
    uint64_t batches;      /* applied (OK) */
    uint64_t events;       /* in applied batches */
    uint64_t alerts;       /* in applied batches */
    uint64_t duplicates;   /* answered DUPLICATE */
    uint64_t alerts_ahead; /* alert-only batches (sequence 0) applied or answered DUPLICATE */
    uint64_t refused[SN_INGEST_REFUSED_COUNT];
    uint64_t bytes_in;  /* payload bytes received (compressed), every decoded envelope */
    uint64_t bytes_out; /* the same payloads after decompression */
    uint64_t sidecars;  /* ids in the de-duplication table now */
    uint64_t sidecars_expired;
    uint64_t sidecars_evicted;
    uint64_t transport_refused; /* refused by the gRPC layer (busy, too large, bad encoding) */
} sn_ingest_stats;

/* Fills the defaults above (listen "0.0.0.0:9090"), no apply. Never fails. */
void sn_ingest_config_init(sn_ingest_config *cfg);

/* Creates the service bound to cfg->listen (see sn_grpc_unary_create; the port is bound here).
 * Returns 0 and sets *out, or a negative errno with a one-line reason in err (EINVAL bad
 * config, EADDRNOTAVAIL, ENOMEM). Free with sn_ingest_destroy. */
int sn_ingest_create(const sn_ingest_config *cfg, sn_ingest **out, char *err, size_t errlen);

/* The bound port. */
int sn_ingest_port(const sn_ingest *in);

/* Starts serving (two threads). Returns 0 or a negative errno. */
int sn_ingest_start(sn_ingest *in);

/* Stops accepting calls and finishes those in flight for up to grace_ms (apply keeps being
 * called for them, so the apply side must keep working until this returns). Blocks; must not
 * be called from apply. Idempotent. */
void sn_ingest_shutdown(sn_ingest *in, uint32_t grace_ms);

/* Copies the counters. Any thread. */
void sn_ingest_stats_get(sn_ingest *in, sn_ingest_stats *out);

/* The de-duplication state, for a state store: export visits every (sidecar_id, sequence,
 * last seen) most recent first (see sn_seqtab_export); import restores one entry (oldest
 * first). Both lock the table against the handler thread; cb must not call back into ingest. */
int sn_ingest_sequences_export(sn_ingest *in, sn_seqtab_visit cb, void *ud);
int sn_ingest_sequences_import(sn_ingest *in, const char *sidecar_id, uint64_t seq,
                               int64_t last_seen_ns);

/* Shuts down (grace 0) and frees. NULL is a no-op. */
void sn_ingest_destroy(sn_ingest *in);

/* One IngestRequest decoded and validated by sn_ingest_decode_request: batch points into the
 * other fields, which the value owns. */
typedef struct sn_ingest_decoded {
    sn_ingest_batch batch;
    char sidecar_id[SN_SEQ_ID_MAX + 1];
    sn_event *events;         /* batch.nevents of them (malloc'ed; NULL when none) */
    sn_local_alert *alerts;   /* batch.nalerts of them (malloc'ed; NULL when none) */
    sn_aggregate *aggregates; /* batch.naggregates of them (malloc'ed; NULL when none) */
} sn_ingest_decoded;

/* Decodes the bytes of one Ingest call exactly as the service does before de-duplication and
 * apply (steps 1 to 3 above, and the batch's id, sequence and count checks) under cfg's
 * max_message_bytes (0: the default), max_batch_events and max_batch_alerts; nothing else of
 * cfg is used. Pure: no server, no shared state, no I/O; any thread.
 * Returns 0 and fills *out (free it with sn_ingest_decoded_free), or -EINVAL for a request the
 * service refuses, or -ENOMEM; then *why (may be NULL) is the refusal's reason, err holds the
 * message the service would answer with, and *out is empty. */
int sn_ingest_decode_request(const uint8_t *body, size_t len, const sn_ingest_config *cfg,
                             sn_ingest_decoded *out, sn_ingest_refusal *why, char *err,
                             size_t errlen);

/* Frees what sn_ingest_decode_request put in d and empties it. NULL is a no-op. */
void sn_ingest_decoded_free(sn_ingest_decoded *d);

/* A reusable decoder: the service's steps 1 to 3 (and the batch's id, sequence and count checks)
 * with the zstd context, the decoding arena and the event/alert arrays kept from one request to
 * the next, so a steady stream of batches allocates nothing. Used by the service's handler and
 * by benchmarks; one owner thread. */
typedef struct sn_ingest_decoder sn_ingest_decoder;

/* Creates a decoder for cfg's max_message_bytes (0: the default), max_batch_events and
 * max_batch_alerts (nothing else of cfg is used). Returns 0 and sets *out (free it with
 * sn_ingest_decoder_destroy), -EINVAL (a limit of 0 or above 2^24 items; reason in err) or
 * -ENOMEM. */
int sn_ingest_decoder_create(const sn_ingest_config *cfg, sn_ingest_decoder **out, char *err,
                             size_t errlen);

/* Decodes one request as sn_ingest_decode_request does and points *out at the result, which
 * the decoder owns: valid (and writable through the arrays, for the owner) until the next
 * decode or destroy. Returns 0, or -EINVAL / -ENOMEM with *why (may be NULL) and err set as
 * sn_ingest_decode_request does; *out is then untouched. */
int sn_ingest_decoder_decode(sn_ingest_decoder *d, const uint8_t *body, size_t len,
                             const sn_ingest_batch **out, sn_ingest_refusal *why, char *err,
                             size_t errlen);

/* Frees the decoder and everything it holds. NULL is a no-op. */
void sn_ingest_decoder_destroy(sn_ingest_decoder *d);

#endif
