/*
 * batch.h -- the sidecar's wire encoding: sealed batches (sentinel.v1.Batch wrapped in an
 * IngestRequest, zstd-compressed) and the compact event records of the write-ahead journal.
 *
 *   sn_batch_encode               {sidecar_id, sequence, events, alerts, created, dropped,
 *                                 aggregates}
 *                                 -> Batch -> zstd (or none) -> IngestRequest bytes, ready for
 *                                 the spool and sn_ship_send. Output lives in the encoder.
 *   sn_batch_encode_event_record  events -> a Batch holding only events (no id, no sequence):
 *   sn_batch_decode_event_record  the journal's record of one accepted request, and back.
 *   sn_batch_append_event_record  one event appended to a record being built (records
 *                                 concatenate: a record is a run of events entries).
 *   sn_batch_append_aggregate_record  one GenAI metric aggregate appended to a record (a
 *                                 Batch.aggregates entry, the bytes sn_batch_encode writes).
 *   sn_batch_append_grouped_event events appended to a record as Batch.groups entries: one
 *   sn_batch_grouper_close        EventGroup per run of events with the same resource strings
 *                                 (service, region, service_version, pod), written once.
 *   sn_batch_scan_record          checks a record read back from disk; counts its events and
 *                                 aggregates (a record may hold events, groups and aggregates).
 *
 * A sealed batch may take its events and aggregates as journal-record bytes (sn_batch.records):
 * they are copied into the Batch unchanged, so each is encoded once, when it is accepted. Groups
 * are copied unchanged only for an aggregator that reads them (sn_batch.groups; the Batch then
 * goes with COMPRESSION_ZSTD_GROUPS / NONE_GROUPS); otherwise each group's events are written as
 * flat events entries (tag, length, the group's four strings, the event's own bytes).
 *
 * Mapping (proto/sentinel/v1/sentinel.proto): every sn_event and sn_local_alert field has a
 * wire field of the same name. What the event does not know is absent on the wire, never 0:
 * counts below 0 (SN_UNKNOWN_COUNT) and reals that are not finite and >= 0 (NAN; an infinity
 * or a negative latency from a skewed clock is no measurement either) leave their oneof unset;
 * cost_usd is sent exactly when cost_source is known and the cost finite and >= 0 (otherwise
 * both are unknown). These are the aggregator's validation rules (docs/aggregator.md), so an
 * encoded batch is never refused for an event's value. An all-zero trace or span id is sent empty.
 * Alerts carry names, not numbers: detector ("z_score"), metric ("latency_ms"), anomaly_type
 * ("latency_spike"); severity is the Severity enum. An alert the aggregator would refuse
 * (severity SN_SEV_NONE, an out-of-range metric, detector or anomaly type) makes
 * sn_batch_encode fail with -EINVAL rather than poison the spool with a batch that is never
 * accepted. genai.c's
 * bookkeeping (sn_event.fact_ranks) is not sent.
 *
 * Bounds: at most max_events events and max_alerts alerts per batch; the serialized Batch and
 * the IngestRequest are each at most max_message_bytes (the aggregator's limit, 16 MiB by
 * default, applies to the uncompressed Batch). Buffers are sized exactly with
 * pb_get_encoded_size and ZSTD_compressBound, grow only up to those limits and are reused from
 * one batch to the next, so a steady sidecar allocates nothing per batch.
 *
 * Not thread-safe: an encoder belongs to one thread (the loop). The record functions keep no
 * state and may be called from any thread.
 */
#ifndef SN_SIDECAR_BATCH_H
#define SN_SIDECAR_BATCH_H

#include "aggregate.h"
#include "alert.h"
#include "event.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_BATCH_ZSTD_LEVEL_DEFAULT (-2)
/* zstd's fast levels: -N skips ahead faster through bytes without a match (acceleration N, raw
 * literals), cheaper to compress for fewer matches found (docs/benchmarks.md, "h/cpu"). */
#define SN_BATCH_ZSTD_LEVEL_MIN            (-7)
#define SN_BATCH_ZSTD_RAW_LITERALS_DEFAULT true
#define SN_BATCH_ZSTD_HASH_LOG_FAST                                                                \
    12 /* zstd_hash_log 0 at level <= 1: a 16 KiB table (L1-sized) */
/* At level 1 and the fast levels the window is 64 KiB: zstd's blocks, and with them the sequence
 * and literal buffers of its context, are as large as the window (128 KiB otherwise): a 0.33 MB
 * context instead of 0.58 MB, for 0.7 % larger batches (docs/benchmarks.md, "Steady-load memory").
 */
#define SN_BATCH_ZSTD_WINDOW_LOG_FAST 16
#define SN_BATCH_ZSTD_HASH_LOG_MIN    6
#define SN_BATCH_ZSTD_HASH_LOG_MAX    20
#define SN_BATCH_MAX_EVENTS_DEFAULT   10000u
#define SN_BATCH_MAX_ALERTS_DEFAULT   1000u
#define SN_BATCH_MAX_MESSAGE_DEFAULT  ((size_t)16 << 20) /* 16 MiB */
#define SN_BATCH_MAX_MESSAGE_LIMIT    ((size_t)256 << 20)
#define SN_BATCH_MAX_COUNT_LIMIT      1000000u /* max_events, max_alerts */
/* IngestResponse.features bit: the aggregator reads Batch.groups (sentinel_v1_FEATURE_GROUPS). */
#define SN_BATCH_FEATURE_GROUPS 1u
#define SN_BATCH_ID_MAX         129u /* sidecar_id bytes, NUL included (aggregator: 1..128) */

typedef struct sn_batch_config {
    /* 0: COMPRESSION_NONE; SN_BATCH_ZSTD_LEVEL_MIN..-1 (zstd's fast levels) or
     * 1..ZSTD_maxCLevel(): zstd at that level */
    int zstd_level;
    /* Literals (the bytes no match covers: ids, numbers) stored as they are, not Huffman-coded:
     * about 19 % fewer instructions to compress and a third fewer to decompress for about 7 %
     * more bytes on our events (docs/benchmarks.md, "zstd parameters"). */
    bool zstd_raw_literals;
    /* log2 of zstd's match-finder hash table: 0 = automatic (SN_BATCH_ZSTD_HASH_LOG_FAST at
     * level 1 and the fast levels, the level's own above), else SN_BATCH_ZSTD_HASH_LOG_MIN..MAX. */
    int zstd_hash_log;
    size_t max_events;        /* events per batch, 1..SN_BATCH_MAX_COUNT_LIMIT */
    size_t max_alerts;        /* alerts per batch, 0..SN_BATCH_MAX_COUNT_LIMIT */
    size_t max_message_bytes; /* limit on the Batch and on the IngestRequest, 1 KiB..256 MiB */
} sn_batch_config;

/* One batch to seal. Everything is borrowed for the duration of sn_batch_encode. */
typedef struct sn_batch {
    const char *sidecar_id; /* "<pod or host>/<random hex>", 1..128 bytes, UTF-8 */
    uint64_t sequence;      /* >= 1; 0 only for alerts ahead of their batch (alerts only) */
    const sn_event *events; /* n_events of them (may be NULL when n_events is 0) */
    size_t n_events;
    /* Events and aggregates already encoded: the concatenation of journal records
     * (sn_batch_append_event_record / sn_batch_encode_event_record /
     * sn_batch_append_aggregate_record output), holding n_record_events events and
     * n_record_aggregates aggregates. They are written as they are -- a repeated field is the
     * concatenation of its elements, in any number of runs -- so sealing costs a copy, not a
     * re-encode. NULL / 0 when unused. The caller vouches for the bytes (sn_batch_scan_record
     * checks records read back from disk). */
    const uint8_t *records;
    size_t records_len;
    size_t n_record_events;
    size_t n_record_aggregates;
    /* Whether the aggregator reads groups (it announced FEATURE_GROUPS): the records' groups
     * entries are then copied as they are; false writes each as flat events. */
    bool groups;
    const sn_local_alert *alerts;
    size_t n_alerts;
    int64_t created_unix_nano; /* when the batch was sealed */
    uint64_t dropped_events;   /* events refused since the previous batch */
    /* GenAI metric aggregates (metric_feed.h); with n_record_aggregates at most max_events of
     * them. NULL / 0 when none. */
    const sn_aggregate *aggregates;
    size_t n_aggregates;
} sn_batch;

typedef struct sn_batch_encoder sn_batch_encoder;

/* Fills cfg with the defaults: zstd level 1 with raw literals and the automatic hash table,
 * 10000 events, 1000 alerts, 16 MiB. */
void sn_batch_config_init(sn_batch_config *cfg);

/* Creates an encoder (with its zstd context) for cfg, which is copied. Returns 0 and sets *out,
 * -EINVAL with a one-line reason naming the field in err for a bad config, -ENOMEM. Free with
 * sn_batch_encoder_destroy. */
int sn_batch_encoder_create(const sn_batch_config *cfg, sn_batch_encoder **out, char *err,
                            size_t errlen);

/* Frees the encoder and its buffers (any output it returned becomes invalid). NULL is a no-op. */
void sn_batch_encoder_destroy(sn_batch_encoder *enc);

/* Encodes b as an IngestRequest. On success returns 0 and points *out / *out_len at the bytes,
 * which belong to the encoder and stay valid until the next sn_batch_encode or destroy (copy
 * them -- the spool does -- before encoding again). *batch_len (may be NULL) gets the size of
 * the serialized Batch before compression. Errors, with a one-line reason in err:
 *   -EINVAL    bad batch: empty or too long sidecar_id, sequence 0 with events, aggregates or
 *              no alert, more than max_events
 *              events, max_events aggregates or max_alerts alerts, NULL arrays with a count, an
 *              invalid alert or aggregate (the message names its index);
 *   -EMSGSIZE  the Batch or the IngestRequest would be larger than max_message_bytes (seal
 *              smaller batches);
 *   -ENOMEM    a buffer could not grow;
 *   -EIO       nanopb or zstd failed (a bug).
 * On error *out is untouched and the encoder stays usable. */
int sn_batch_encode(sn_batch_encoder *enc, const sn_batch *b, const uint8_t **out, size_t *out_len,
                    size_t *batch_len, char *err, size_t errlen);

/* The most bytes sn_batch_encode_event_record can need for n events (about 950 per event;
 * real records are far smaller). */
size_t sn_batch_event_record_bound(size_t n);

/* Encodes events[0..n) as a journal record (a Batch with only events) into buf. Returns 0 and
 * sets *len; -ENOBUFS when cap is too small (then *len is the size needed); -EINVAL when
 * events is NULL with n > 0; -EIO on an encoder failure. Allocates nothing; thread-safe. */
int sn_batch_encode_event_record(const sn_event *events, size_t n, uint8_t *buf, size_t cap,
                                 size_t *len);

/* Appends ev to a journal record being built in buf[*len..cap): one events entry (tag, length,
 * LlmEvent), so a record is any concatenation of these. Returns 0 and advances *len; -ENOBUFS
 * when the entry does not fit (*len untouched; sn_batch_event_record_bound(1) always fits);
 * -EIO on an encoder failure. Allocates nothing; thread-safe. */
int sn_batch_append_event_record(const sn_event *ev, uint8_t *buf, size_t cap, size_t *len);

/* The open group of a journal record being built (sn_batch_append_grouped_event). One per
 * record; sn_batch_grouper_init before the first event. */
typedef struct sn_batch_grouper {
    size_t start;  /* offset of the open group's entry in the record; SIZE_MAX: none */
    size_t events; /* events in the open group */
    char service[SN_NAME_MAX];
    char region[SN_SHORT_MAX];
    char service_version[SN_SHORT_MAX];
    char pod[SN_SHORT_MAX];
    uint8_t len[4]; /* their lengths (service, region, service_version, pod) */
} sn_batch_grouper;

/* Starts with no open group. */
void sn_batch_grouper_init(sn_batch_grouper *g);

/* The most bytes n events appended with sn_batch_append_grouped_event can need (each in its own
 * group: about 1 280 per event; real records are far smaller). */
size_t sn_batch_grouped_record_bound(size_t n);

/* Appends ev to the journal record being built in buf[*len..cap): to the open group when ev has
 * its resource strings (service, region, service_version, pod), else the open group is closed
 * and a new groups entry begins with ev's. The record is complete only after
 * sn_batch_grouper_close. Returns 0 and advances *len; -ENOBUFS when
 * sn_batch_grouped_record_bound(1) bytes are not free (*len untouched: grow buf, keeping its
 * bytes, and call again); -EINVAL for NULL arguments. Allocates nothing; thread-safe. */
int sn_batch_append_grouped_event(sn_batch_grouper *g, const sn_event *ev, uint8_t *buf, size_t cap,
                                  size_t *len);

/* Closes the open group, if any: writes its length (a four-byte varint, so nothing moves),
 * or, when it holds one event, rewrites it as a flat events entry with the strings in the event
 * (a group of one costs its reader more than the strings it saves). Returns 0, or -EINVAL for
 * NULL arguments or a buffer that does not hold the group. */
int sn_batch_grouper_close(sn_batch_grouper *g, uint8_t *buf, size_t *len);

/* Checks a journal record read back from disk without keeping what it holds: every top-level
 * field is an events entry that decodes as an LlmEvent sn_batch_decode_event_record would accept,
 * a groups entry whose events do (and leave the resource strings to the group), or an
 * aggregates entry the aggregator would accept. Returns 0 and sets *n_events and
 * *n_aggregates, or -EINVAL with a one-line reason in err (err may be NULL). Allocates nothing;
 * thread-safe. */
int sn_batch_scan_record(const uint8_t *buf, size_t len, size_t *n_events, size_t *n_aggregates,
                         char *err, size_t errlen);

/* The most bytes sn_batch_append_aggregate_record can need for n aggregates (about 630 each). */
size_t sn_batch_aggregate_record_bound(size_t n);

/* Appends g to a journal record being built in buf[*len..cap): one aggregates entry (tag,
 * length, LlmAggregate), encoded as sn_batch_encode encodes it. Returns 0 and advances *len;
 * -ENOBUFS when the entry does not fit (*len untouched; sn_batch_aggregate_record_bound(1)
 * always fits); -EINVAL for NULL arguments or an aggregate the aggregator would refuse (metric
 * not latency_ms, ttft_ms, input_tokens or output_tokens; count 0 or below error_count); -EIO on
 * an encoder failure. Allocates nothing; thread-safe. */
int sn_batch_append_aggregate_record(const sn_aggregate *g, uint8_t *buf, size_t cap, size_t *len);

/* Decodes a journal record into events[0..cap) (aggregates entries are skipped; a group's events
 * get its resource strings), in wire order. Returns 0 and sets
 * *n; every event is fully initialised (unknown facts as sn_event_init leaves them). -ENOBUFS when
 * the record holds more than cap events, -EINVAL when it is malformed (one-line reason in err; err
 * may be NULL). On error the contents of events[] are unspecified and *n is untouched. Allocates
 * nothing. */
int sn_batch_decode_event_record(const uint8_t *buf, size_t len, sn_event *events, size_t cap,
                                 size_t *n, char *err, size_t errlen);

/* The config an encoder was created with (immutable: any thread may read it). */
const sn_batch_config *sn_batch_encoder_config(const sn_batch_encoder *enc);

/* The flat requests a grouped one becomes (sn_batch_flatten_request): request i is
 * data[i == 0 ? 0 : end[i - 1] .. end[i]). Free with sn_batch_parts_free. */
typedef struct sn_batch_parts {
    uint8_t *data;
    size_t *end;
    size_t n;
} sn_batch_parts;

/* Frees a parts' buffers and zeroes it (NULL or an empty one: no-op). */
void sn_batch_parts_free(sn_batch_parts *parts);

/* The sidecar id of every part of a split batch but the last: "<id>" SN_BATCH_PART_SUFFIX, with
 * sequence (S << SN_BATCH_PART_BITS) | k for part k = 1.. of the batch of sequence S. */
#define SN_BATCH_PART_SUFFIX "/part"
#define SN_BATCH_PART_BITS   20
/* The least part budget of a split (see sn_batch_flatten_request): a flat batch of up to about
 * this many bytes is never split. */
#define SN_BATCH_PART_FLOOR ((size_t)64 << 10)

/* Converts an IngestRequest whose Batch carries groups (compression NONE_GROUPS or ZSTD_GROUPS:
 * what sn_batch_encode writes with sn_batch.groups) into the same batch with flat events, for an
 * aggregator that refused it because it does not read groups (a downgrade): each group's events
 * become events entries holding the group's strings; every other field is kept. It is compressed
 * as cfg says (zstd_level, zstd_raw_literals, zstd_hash_log: as sealing does), and each request
 * and its Batch are at most cfg->max_message_bytes.
 *
 * Usually that is one request. When the flat batch is over the part budget (the group's strings
 * are now in every event), its events, alerts and aggregates are split, in order, over n parts.
 * The split is a function of the record alone, never of cfg, so that a restart while a split
 * batch is half sent makes exactly the same parts again: the budget is U - ENVELOPE - (zstd's
 * worst-case growth of U) Batch bytes per part, U the grouped Batch's own (uncompressed) size
 * or SN_BATCH_PART_FLOOR if larger -- so each part's request is at most U, which fitted the limit
 * the record was sealed under. The last part carries the batch's own sidecar_id and sequence S
 * (and created_unix_nano and dropped_events); part k < n goes under "<sidecar_id>/part" with
 * sequence (S << SN_BATCH_PART_BITS) | k (k from 1): one extra de-dup entry per sidecar, rising
 * in sending order across batches. The aggregator's (sidecar id, sequence) de-duplication then
 * applies each part exactly once, also when they are all sent again after a restart. Send them
 * in order and drop the spool's record after the last is acknowledged.
 *
 * Returns 0 and fills *out (the caller frees it with sn_batch_parts_free); -ENOENT when the
 * request holds no groups (nothing to convert); -EINVAL when malformed or its declared size is
 * over SN_BATCH_MAX_MESSAGE_LIMIT; -EMSGSIZE when a request is over today's
 * cfg->max_message_bytes (lowered since the record was sealed), an event, alert or aggregate
 * alone is over the part budget, the id is too long for the part suffix, S is 2^44 or more, or
 * there would be 2^20 parts or more (the batch cannot be delivered flat); -ENOMEM; -EIO. A
 * one-line reason in err. Thread-safe; allocates; linear in the request's size. */
int sn_batch_flatten_request(const uint8_t *req, size_t len, const sn_batch_config *cfg,
                             sn_batch_parts *out, char *err, size_t errlen);

/* Tests only: the zstd contexts sn_batch_flatten_request creates from now on allocate through
 * alloc/release with ud (NULL alloc: zstd's own malloc), so a test can make them fail. Set it
 * while nothing flattens. */
typedef void *(*sn_batch_alloc_fn)(void *ud, size_t n);
typedef void (*sn_batch_release_fn)(void *ud, void *p);
void sn_batch_flatten_alloc_for_tests(sn_batch_alloc_fn alloc, sn_batch_release_fn release,
                                      void *ud);

/* sn_batch_flatten_request with `floor` in place of SN_BATCH_PART_FLOOR: for tests and the
 * fuzzer, which reach splits with small batches this way. The sidecar never calls it. */
int sn_batch_flatten_request_floor(const uint8_t *req, size_t len, const sn_batch_config *cfg,
                                   size_t floor, sn_batch_parts *out, char *err, size_t errlen);

#endif
