/*
 * traces.h -- the streaming OTLP trace decoder: ExportTraceServiceRequest bytes in, LLM events out.
 *
 * The decoder walks the protobuf once, read by hand with the bounds-checked wire reader of
 * otlp/pbwire.h (nanopb 0.4's rules, so the nanopb decoder it replaced gives the same results),
 * and keeps only what becomes an LLM fact: resource attributes, span ids, times, status and
 * attributes. Everything else (names, events, links, scopes, nested key/value lists) is skipped
 * on the wire without being decoded. No object tree is built and nothing is allocated: the event
 * being filled lives on the stack, attribute keys and string values are read in place from the
 * request (a string is cut at SN_OTLP_VALUE_MAX; only what becomes a fact is copied, bounded,
 * into the event), and the recursion depth is fixed by the schema (nested values are skipped,
 * not descended into), so no input can grow the stack.
 *
 * For each span: the resource's template event (sn_genai_resource_attr) is copied, span
 * attributes are applied (sn_genai_span_key / sn_genai_span_attr_id; an array value is one call
 * per element), ids, times and status are set, and sn_genai_finish_memo() decides whether it is
 * an LLM call. If it is, the caller's callback receives the event. Within one call the decoder
 * remembers (bounded, on the stack) the key classes of the previous span's attributes by
 * position, and the last provider normalisation and price rule: the spans of one request mostly
 * repeat them.
 *
 * Thread safety: the decoder has no global state; any number of threads may decode at once.
 */
#ifndef SN_OTLP_TRACES_H
#define SN_OTLP_TRACES_H

#include "event.h"
#include "price.h"

#include <stddef.h>
#include <stdint.h>

#define SN_OTLP_KEY_MAX   256  /* attribute key buffer; a longer key's attribute is skipped */
#define SN_OTLP_VALUE_MAX 1024 /* string/bytes value buffer; a longer value is truncated */
#define SN_OTLP_ERR_MAX   192  /* a size for error buffers that always fits the message */

/* Why a span was refused (it then counts towards partial_success.rejected_spans). */
typedef enum sn_otlp_reject {
    SN_OTLP_REJECT_TRACE_ID = 0, /* trace_id not 16 bytes, or all zero */
    SN_OTLP_REJECT_SPAN_ID,      /* span_id not 8 bytes, or all zero */
    SN_OTLP_REJECT_TIME,         /* an LLM span ending before it starts, or a time past 2262 */
    SN_OTLP_REJECT_COUNT
} sn_otlp_reject;

/* What one call saw. Filled from zero by every call, also when it fails (then it describes the
 * part before the error). */
typedef struct sn_otlp_trace_stats {
    uint64_t resource_spans;
    uint64_t scope_spans;
    uint64_t spans;      /* spans seen, valid or not */
    uint64_t llm_events; /* spans that were LLM calls and valid: one callback each */
    uint64_t rejected;   /* spans refused, the sum of rejected_by */
    uint64_t rejected_by[SN_OTLP_REJECT_COUNT];
    uint64_t keys_skipped;     /* attributes skipped: key of SN_OTLP_KEY_MAX bytes or more */
    uint64_t values_truncated; /* string/bytes values cut to SN_OTLP_VALUE_MAX bytes */
    uint64_t values_ignored;   /* nested arrays and key/value lists, skipped unread */
} sn_otlp_trace_stats;

/* Receives one LLM event. `ev` is borrowed for the call only (copy what you keep). */
typedef void (*sn_otlp_event_fn)(const sn_event *ev, void *ud);

/* Decodes an ExportTraceServiceRequest (or a TracesData, which has the same layout) from
 * buf[0..len) and calls fn for every valid LLM span, in wire order. prices is passed to
 * sn_genai_finish() (NULL: cost only from span attributes). fn may be NULL to validate and
 * count only. stats (may be NULL) receives the counts.
 *
 * Returns 0 when the whole request was well-formed, or -1 for malformed input (truncated,
 * a wrong wire type, a bad varint, a length past its message, field number 0) with a one-line
 * message in err (errsize bytes; SN_OTLP_ERR_MAX is always enough). Decoding is streaming: on
 * failure fn has already been called for the spans before the malformed part. A caller that
 * must not act on a request it will refuse can validate first with fn == NULL.
 * Refused spans (sn_otlp_reject) are not errors: they are counted and skipped. */
int sn_otlp_decode_traces(const uint8_t *buf, size_t len, const sn_price_table *prices,
                          sn_otlp_event_fn fn, void *ud, sn_otlp_trace_stats *stats, char *err,
                          size_t errsize);

/* A reason's metric label ("trace_id", "span_id", "time"); "unknown" out of range. */
const char *sn_otlp_reject_name(sn_otlp_reject r);

#endif
