/*
 * otlp_ref.h -- reference OTLP trace decoders for tests and the differential fuzzer, to hold the
 * sidecar's hand-written decoder (shared/otlp/traces.c) against.
 *
 *   sn_ref_decode_traces_nanopb  the nanopb streaming decoder the hand reader replaced: the same
 *                                rules byte for byte (events, counts, error texts), on any input.
 *   sn_ref_decode_traces_pbc     an independent one: protobuf-c unpacks the whole request tree,
 *                                then the tree is walked through the same genai mapping. For
 *                                canonical requests (no repeated singular fields, keys before
 *                                values) it must give the same events and counts.
 *
 * Both have the signature and the contract of sn_otlp_decode_traces (traces.h).
 */
#ifndef SN_TEST_OTLP_REF_H
#define SN_TEST_OTLP_REF_H

#include "otlp/traces.h"

#include <stdbool.h>

int sn_ref_decode_traces_nanopb(const uint8_t *buf, size_t len, const sn_price_table *prices,
                                sn_otlp_event_fn fn, void *ud, sn_otlp_trace_stats *stats,
                                char *err, size_t errsize);

int sn_ref_decode_traces_pbc(const uint8_t *buf, size_t len, const sn_price_table *prices,
                             sn_otlp_event_fn fn, void *ud, sn_otlp_trace_stats *stats, char *err,
                             size_t errsize);

/* True when a and b carry the same facts (every field; NaN equals NaN). Otherwise false with the
 * first differing field's name in *field. */
bool sn_ref_event_equal(const sn_event *a, const sn_event *b, const char **field);

/* True when the counts are equal (every member); otherwise false with the member's name. */
bool sn_ref_stats_equal(const sn_otlp_trace_stats *a, const sn_otlp_trace_stats *b,
                        const char **field);

#endif
