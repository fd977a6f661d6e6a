/*
 * traces_json.h -- the OTLP/JSON trace decoder: an ExportTraceServiceRequest in the OTLP JSON
 * encoding in, LLM events out.
 *
 * The twin of traces.h: the same counts (sn_otlp_trace_stats), the same callback
 * (sn_otlp_event_fn), the same reasons to refuse a span (sn_otlp_reject), the same genai calls,
 * so a handler picks one or the other by the request's encoding and treats the results alike.
 *
 * JSON rules (the OTLP specification's JSON mapping of the protobuf):
 *   - field names are lowerCamelCase (resourceSpans, scopeSpans, traceId, ...); unknown fields
 *     are ignored; null is the same as absent;
 *   - traceId and spanId are hex strings (32 and 16 digits, either case), not base64; a wrong
 *     length, a non-hex digit or all zeros refuses the span (SN_OTLP_REJECT_TRACE_ID/SPAN_ID);
 *   - startTimeUnixNano / endTimeUnixNano and intValue are int64: a decimal string or a JSON
 *     integer; a time that is not a non-negative int64 refuses the span (SN_OTLP_REJECT_TIME),
 *     an intValue that is not an int64 is ignored;
 *   - status.code is the enum's integer (2 = ERROR); the name "STATUS_CODE_ERROR" is accepted too;
 *   - doubleValue is a number or "NaN" / "Infinity" / "-Infinity"; bytesValue is base64;
 *   - an arrayValue is delivered one element at a time; nested arrays and kvlistValue are
 *     ignored (counted in values_ignored).
 * A wrong JSON type where the document's structure is expected (the root, resourceSpans,
 * scopeSpans, spans, attributes and their elements, resource, status) makes the whole request
 * malformed; a bad id or time inside one span only refuses that span.
 *
 * Bounds: the document is parsed (jansson) from exactly len bytes. Before parsing, one pass
 * over the bytes refuses nesting deeper than SN_OTLP_JSON_MAX_DEPTH and documents whose parse
 * tree would exceed SN_OTLP_JSON_MAX_NODES weighted nodes (an object weighs
 * SN_OTLP_JSON_OBJECT_WEIGHT, any other value 1), which caps the decoder's memory at a few tens
 * of MiB whatever the input; a real 16 MiB export stays well inside.
 *
 * Thread safety: no global state; any number of threads may decode at once.
 */
#ifndef SN_OTLP_TRACES_JSON_H
#define SN_OTLP_TRACES_JSON_H

#include "otlp/traces.h"

#include <stddef.h>
#include <stdint.h>

#define SN_OTLP_JSON_MAX_DEPTH     64
#define SN_OTLP_JSON_MAX_NODES     (1u << 20)
#define SN_OTLP_JSON_OBJECT_WEIGHT 4

/* Decodes an OTLP/JSON ExportTraceServiceRequest (or TracesData) from buf[0..len) and calls fn
 * for every valid LLM span, in document order. prices goes to sn_genai_finish() (NULL: cost only
 * from span attributes); fn may be NULL to count only; stats (may be NULL) is filled from zero.
 *
 * Returns 0 when the document is well-formed, or -1 (invalid JSON, a non-object root, a wrong
 * type at a structural position, over the nesting or size bounds) with a one-line message in
 * err (errsize bytes; SN_OTLP_ERR_MAX is enough). Unlike the protobuf decoder, the structure is
 * checked before any callback: on -1, fn has not been called. Refused spans are not errors. */
int sn_otlp_decode_traces_json(const uint8_t *buf, size_t len, const sn_price_table *prices,
                               sn_otlp_event_fn fn, void *ud, sn_otlp_trace_stats *stats, char *err,
                               size_t errsize);

#endif
