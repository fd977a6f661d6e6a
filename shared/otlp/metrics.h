/*
 * metrics.h -- the streaming OTLP metrics decoder: ExportMetricsServiceRequest bytes in, aggregate
 * LLM facts out.
 *
 * Applications instrumented with the OpenTelemetry GenAI semantic conventions record histograms
 * besides (or instead of) spans. The decoder turns each data point of these into one
 * sn_metric_fact: a count and a sum (with min and max when sent) for one combination of service,
 * model, provider, operation and error type over one time interval.
 *
 *   metric name                                   unit    fact metric
 *   gen_ai.client.token.usage                     {token} INPUT_TOKENS or OUTPUT_TOKENS, by the
 *                                                         point's gen_ai.token.type (input|output)
 *   gen_ai.client.operation.duration              s       LATENCY_MS
 *   gen_ai.server.request.duration                s       LATENCY_MS
 *   gen_ai.client.operation.time_to_first_chunk   s       TTFT_MS
 *   gen_ai.server.time_to_first_token             s       TTFT_MS
 *
 * Durations are converted to milliseconds from the metric's unit ("s", or "ms", "us", "ns";
 * an empty unit is taken as the conventions' "s"); a duration metric in any other unit is
 * refused (SN_METRIC_REJECT_UNIT). Histograms and exponential histograms are read alike: only
 * count, sum, min and max are kept (buckets and exemplars are skipped unread). Every other
 * metric -- and a GenAI metric sent as a gauge, sum or summary -- is counted and skipped.
 *
 * Temporality: a delta point's count and sum cover [start, end); a cumulative point's cover
 * everything since its start time. The decoder is stateless and hands both on as they came,
 * marked with their temporality; whoever keeps baselines must difference cumulative series,
 * e.g. with sn_metric_delta (otlp/metrics_delta.h), keyed by the fact's series_id.
 *
 * Like the trace decoder: no object tree, no allocation, bounded buffers, recursion depth fixed
 * by the schema. Thread safety: no global state; any number of threads may decode at once.
 */
#ifndef SN_OTLP_METRICS_H
#define SN_OTLP_METRICS_H

#include "event.h"
#include "genai.h"
#include "otlp/traces.h" /* SN_OTLP_KEY_MAX, SN_OTLP_VALUE_MAX, SN_OTLP_ERR_MAX */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A point's aggregation temporality (the OTLP enum's values). */
typedef enum sn_metric_temporality {
    SN_METRIC_TEMPORALITY_UNSPECIFIED = 0,
    SN_METRIC_TEMPORALITY_DELTA = 1,
    SN_METRIC_TEMPORALITY_CUMULATIVE = 2
} sn_metric_temporality;

/* One histogram data point of a GenAI metric. Strings are NUL-terminated (empty when unknown),
 * truncated at a UTF-8 boundary. */
typedef struct sn_metric_fact {
    char service[SN_NAME_MAX];         /* resource service.name */
    char model[SN_NAME_MAX];           /* gen_ai.response.model, else gen_ai.request.model */
    char provider[SN_SHORT_MAX];       /* gen_ai.provider.name (old: gen_ai.system), normalised */
    char operation[SN_SHORT_MAX];      /* gen_ai.operation.name */
    char region[SN_SHORT_MAX];         /* resource cloud.region */
    char error_type[SN_SHORT_MAX];     /* error.type: the points of failed calls */
    char server_address[SN_NAME_MAX];  /* server.address */
    sn_metric metric;                  /* INPUT_TOKENS, OUTPUT_TOKENS, LATENCY_MS or TTFT_MS */
    sn_metric_temporality temporality; /* DELTA or CUMULATIVE (others are refused) */
    uint64_t count;                    /* number of recorded values */
    double sum;              /* their sum in the metric's unit (tokens, ms); NAN unknown */
    double min;              /* smallest value, NAN when not sent */
    double max;              /* largest value, NAN when not sent */
    int64_t start_unix_nano; /* start of the interval (cumulative: of the series); 0 unknown */
    int64_t end_unix_nano;   /* the point's time */
    /* Identity of the series the point belongs to: a hash of the metric name, every resource
     * attribute and every point attribute (in any order). Equal for the points of one series. */
    uint64_t series_id;
} sn_metric_fact;

/* Why a data point was refused (it counts towards partial_success.rejected_data_points). */
typedef enum sn_metric_reject {
    SN_METRIC_REJECT_TIME = 0,    /* time past 2262, or the point ends before it starts */
    SN_METRIC_REJECT_TOKEN_TYPE,  /* token usage without gen_ai.token.type input or output */
    SN_METRIC_REJECT_UNIT,        /* a duration in a unit that is not a time */
    SN_METRIC_REJECT_VALUE,       /* sum/min/max not finite or negative */
    SN_METRIC_REJECT_TEMPORALITY, /* temporality unspecified or unknown */
    SN_METRIC_REJECT_COUNT
} sn_metric_reject;

/* What one call saw. Filled from zero by every call, also when it fails. */
typedef struct sn_otlp_metric_stats {
    uint64_t resource_metrics;
    uint64_t scope_metrics;
    uint64_t metrics;         /* metrics seen */
    uint64_t metrics_skipped; /* not a GenAI metric this decoder reads (or not a histogram) */
    uint64_t data_points;     /* points of GenAI histograms seen, valid or not */
    uint64_t facts;           /* points handed to the callback */
    uint64_t stale_points;    /* points flagged "no recorded value": neither facts nor errors */
    uint64_t rejected;        /* points refused, the sum of rejected_by */
    uint64_t rejected_by[SN_METRIC_REJECT_COUNT];
    uint64_t keys_skipped;     /* attributes with a key of SN_OTLP_KEY_MAX bytes or more */
    uint64_t values_truncated; /* string values cut to SN_OTLP_VALUE_MAX bytes */
    uint64_t values_ignored;   /* array and key/value list attribute values, skipped */
} sn_otlp_metric_stats;

/* Receives one fact. `f` is borrowed for the call only (copy what you keep). */
typedef void (*sn_otlp_metric_fn)(const sn_metric_fact *f, void *ud);

/* Decodes an ExportMetricsServiceRequest (or a MetricsData, which has the same layout) from
 * buf[0..len) and calls fn for every valid data point of a GenAI histogram, in wire order.
 * fn may be NULL to validate and count only; stats (may be NULL) receives the counts.
 *
 * Returns 0 when the whole request was well-formed, or -1 for malformed input (truncated, a
 * wrong wire type, a bad varint, a length past its message, field number 0) with a one-line
 * message in err (errsize bytes; SN_OTLP_ERR_MAX is enough). Streaming: on failure fn has been
 * called for the points before the malformed part; validate first with fn == NULL when that
 * matters. Refused points are not errors: counted (sn_metric_reject) and skipped. */
int sn_otlp_decode_metrics(const uint8_t *buf, size_t len, sn_otlp_metric_fn fn, void *ud,
                           sn_otlp_metric_stats *stats, char *err, size_t errsize);

/* A reason's metric label ("time", "token_type", "unit", "value", "temporality"); "unknown"
 * out of range. */
const char *sn_metric_reject_name(sn_metric_reject r);

/* --- the rules both metric decoders (protobuf and JSON) share --- */

/* Which GenAI metric a name is. */
typedef enum sn_otlp_genai_metric {
    SN_OTLP_GENAI_NONE = 0,
    SN_OTLP_GENAI_TOKEN_USAGE,     /* gen_ai.client.token.usage */
    SN_OTLP_GENAI_CLIENT_DURATION, /* gen_ai.client.operation.duration */
    SN_OTLP_GENAI_CLIENT_TTFC,     /* gen_ai.client.operation.time_to_first_chunk */
    SN_OTLP_GENAI_SERVER_DURATION, /* gen_ai.server.request.duration */
    SN_OTLP_GENAI_SERVER_TTFT      /* gen_ai.server.time_to_first_token */
} sn_otlp_genai_metric;

/* The GenAI metric named name[0..len), or SN_OTLP_GENAI_NONE. */
sn_otlp_genai_metric sn_otlp_genai_metric_lookup(const char *name, size_t len);

/* The factor from the metric's unit to the fact's (1 for tokens; 1000 for "s", ...). Returns
 * false when a duration's unit is not a time unit. */
bool sn_otlp_genai_metric_scale(sn_otlp_genai_metric m, const char *unit, size_t len,
                                double *scale);

/* A hash of one attribute (key and value) for series identity; the attributes of a series are
 * combined by adding their hashes, so their order does not matter. */
uint64_t sn_otlp_attr_hash(const char *key, size_t keylen, const sn_attr_value *v);

/* A hash of a metric name, the seed of its series' identities. */
uint64_t sn_otlp_metric_name_hash(const char *name, size_t len);

/* One data point being assembled from its attributes (a decoder's scratch state). */
typedef struct sn_otlp_metric_point {
    sn_event ev;    /* the resource template with the point's GenAI attributes applied */
    int token_type; /* 0 unknown, 1 input, 2 output */
    char server_address[SN_NAME_MAX];
    uint64_t attr_sum; /* sum of sn_otlp_attr_hash over the point's attributes */
} sn_otlp_metric_point;

/* The numbers of a data point, as they came on the wire. */
typedef struct sn_otlp_metric_values {
    uint64_t start_unix_nano, end_unix_nano;
    uint64_t count;
    bool has_sum, has_min, has_max;
    double sum, min, max;
    uint32_t flags;
    int temporality;
} sn_otlp_metric_values;

/* Starts a point from the resource's template event (sn_genai_resource_attr applied). */
void sn_otlp_metric_point_begin(sn_otlp_metric_point *p, const sn_event *tmpl);

/* Applies one point attribute. */
void sn_otlp_metric_point_attr(sn_otlp_metric_point *p, const char *key, size_t keylen,
                               const sn_attr_value *v);

/* The outcome of finishing a point. */
typedef enum sn_otlp_point_outcome {
    SN_OTLP_POINT_FACT = 0, /* *out is a fact */
    SN_OTLP_POINT_STALE,    /* flagged "no recorded value": skipped */
    SN_OTLP_POINT_REJECTED  /* *why says why */
} sn_otlp_point_outcome;

/* Turns an assembled point into a fact: metric from m and the token type, values scaled,
 * series_id from series_seed (name hash + resource attribute hashes) and the point's attributes.
 * Never fails otherwise; *why is set only for SN_OTLP_POINT_REJECTED. */
sn_otlp_point_outcome sn_otlp_metric_point_finish(const sn_otlp_metric_point *p,
                                                  sn_otlp_genai_metric m, double scale,
                                                  uint64_t series_seed,
                                                  const sn_otlp_metric_values *v,
                                                  sn_metric_fact *out, sn_metric_reject *why);

#endif
