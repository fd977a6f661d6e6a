/*
 * metrics_json.h -- the OTLP/JSON metrics decoder: an ExportMetricsServiceRequest in the OTLP
 * JSON encoding in, GenAI metric facts out.
 *
 * The twin of metrics.h: the same facts (sn_metric_fact), counts (sn_otlp_metric_stats),
 * reasons to refuse a point (sn_metric_reject) and rules (the sn_otlp_metric_point_* calls), so
 * a handler picks one by the request's encoding and treats the results alike. A point decoded
 * from JSON has the same series_id as the same point sent as protobuf.
 *
 * JSON rules (the OTLP specification's JSON mapping): lowerCamelCase names (resourceMetrics,
 * scopeMetrics, dataPoints, aggregationTemporality, timeUnixNano, ...); unknown fields ignored;
 * null is absent; fixed64/int64 (times, count, intValue) a decimal string or a JSON integer;
 * doubles a number or "NaN"/"Infinity"/"-Infinity"; aggregationTemporality the enum's integer or
 * its name. A wrong type where the structure is expected (the root, resourceMetrics,
 * scopeMetrics, metrics, histogram, exponentialHistogram, dataPoints, attributes, resource, and
 * their elements) makes the request malformed; a bad number inside one point only refuses that
 * point (time: SN_METRIC_REJECT_TIME; count, sum, min, max: SN_METRIC_REJECT_VALUE).
 * Bounds: the nesting and size bounds of traces_json.h (SN_OTLP_JSON_MAX_DEPTH, ..._NODES).
 *
 * Thread safety: no global state; any number of threads may decode at once.
 */
#ifndef SN_OTLP_METRICS_JSON_H
#define SN_OTLP_METRICS_JSON_H

#include "otlp/metrics.h"
#include "otlp/traces_json.h" /* the JSON bounds */

#include <stddef.h>
#include <stdint.h>

/* Decodes an OTLP/JSON ExportMetricsServiceRequest (or MetricsData) from buf[0..len) and calls fn
 * for every valid point of a GenAI histogram, in document order. fn may be NULL to count only;
 * stats (may be NULL) is filled from zero. Returns 0, or -1 (invalid JSON, a non-object root, a
 * wrong structural type, over the bounds) with a one-line message in err (errsize bytes;
 * SN_OTLP_ERR_MAX is enough). The structure is checked before any callback: on -1, fn has not
 * been called. Refused points are not errors. */
int sn_otlp_decode_metrics_json(const uint8_t *buf, size_t len, sn_otlp_metric_fn fn, void *ud,
                                sn_otlp_metric_stats *stats, char *err, size_t errsize);

#endif
