/*
 * event.h -- the LLM event: the facts LLM-Sentinel keeps from one model call.
 *
 * An event is a fixed-size value (no pointers, no heap): the sidecar fills one per LLM span,
 * copies it into batches, and the aggregator and the backtest read it. Strings longer than their
 * field are truncated at a UTF-8 boundary by whoever fills them. Unknown numbers are explicit:
 * counts are SN_UNKNOWN_COUNT and reals are NAN -- an unknown cost is never 0.
 */
#ifndef SN_EVENT_H
#define SN_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_NAME_MAX  128 /* service and model names, including the NUL */
#define SN_SHORT_MAX 64  /* provider, operation, region, version, pod, user, error, finish reason */

#define SN_UNKNOWN_COUNT (-1)

/* The metrics every baseline is keyed by (with service and model). Names in sn_metric_name(). */
typedef enum sn_metric {
    SN_METRIC_LATENCY_MS = 0,
    SN_METRIC_TTFT_MS,
    SN_METRIC_INPUT_TOKENS,
    SN_METRIC_OUTPUT_TOKENS,
    SN_METRIC_TOTAL_TOKENS,
    SN_METRIC_COST_USD,
    SN_METRIC_ERROR_RATE,
    SN_METRIC_TOKENS_PER_SECOND,
    SN_METRIC_COUNT
} sn_metric;

/* Where an event's cost came from. */
typedef enum sn_cost_source {
    SN_COST_UNKNOWN = 0, /* no cost attribute and no price for the model: cost_usd is NAN */
    SN_COST_SPAN,        /* the span carried a cost attribute (e.g. llm.cost.total) */
    SN_COST_PRICE_TABLE  /* tokens x the model's price from the price table */
} sn_cost_source;

/* Which attribute conventions a span used; any bit set makes the span an LLM call. */
enum {
    SN_CONV_GENAI = 1u << 0,         /* OpenTelemetry GenAI semantic conventions */
    SN_CONV_OPENINFERENCE = 1u << 1, /* Arize OpenInference */
    SN_CONV_OPENLLMETRY = 1u << 2    /* Traceloop OpenLLMetry */
};

typedef struct sn_event {
    int64_t start_unix_nano; /* span start; 0 when unknown */
    int64_t end_unix_nano;   /* span end: the event's time */
    char service[SN_NAME_MAX];
    char model[SN_NAME_MAX]; /* response model when present, else request model */
    char service_version[SN_SHORT_MAX];
    char provider[SN_SHORT_MAX]; /* normalised, e.g. "azure.ai.openai" */
    char operation[SN_SHORT_MAX];
    char region[SN_SHORT_MAX];
    char pod[SN_SHORT_MAX];
    char user[SN_SHORT_MAX]; /* end user or API key id, when the span names one */
    char error_type[SN_SHORT_MAX];
    char finish_reason[SN_SHORT_MAX]; /* the first finish reason */
    uint8_t trace_id[16];
    uint8_t span_id[8];
    double latency_ms; /* end - start; NAN when unknown */
    double ttft_ms;    /* time to first token/chunk; NAN when unknown */
    int64_t input_tokens;
    int64_t output_tokens;
    int64_t total_tokens;
    int64_t cache_read_tokens;
    int64_t cache_write_tokens;
    int64_t reasoning_tokens;
    double cost_usd;            /* NAN when unknown */
    uint8_t cost_source;        /* sn_cost_source */
    bool is_error;              /* span status ERROR or an error.type attribute */
    uint32_t conventions;       /* SN_CONV_* bits seen */
    /* Bookkeeping of genai.c while attributes arrive: 4 bits per fact recording the rank of the
     * attribute that set it (so the response model beats the request model and a current GenAI
     * name beats an old one whatever their order); read through sn_genai_model_from_response. */
    uint64_t fact_ranks;
} sn_event;

/* Resets every field to "unknown" (empty strings, SN_UNKNOWN_COUNT, NAN). */
void sn_event_init(sn_event *ev);

/* The value of metric m for this event. Returns false (and leaves *out alone) when the event
 * does not know it. error_rate is 1.0 for an error and 0.0 otherwise; tokens_per_second is
 * output tokens over latency. */
bool sn_event_metric(const sn_event *ev, sn_metric m, double *out);

/* The values of every metric at once, as sn_event_metric gives them: bit m of the result is set
 * when the event knows metric m, and then out[m] holds its value (the other slots are left
 * alone). One call instead of SN_METRIC_COUNT for callers that want them all. */
unsigned sn_event_metrics(const sn_event *ev, double out[SN_METRIC_COUNT]);

/* The metric's wire and API name ("latency_ms", ...); "unknown" when m is out of range. */
const char *sn_metric_name(sn_metric m);

/* Looks a metric up by name. Returns 0 and sets *out, or -1 when the name is not a metric. */
int sn_metric_from_name(const char *name, sn_metric *out);

/* Copies at most dstsize-1 bytes of src[0..len) into dst, never splitting a UTF-8 sequence,
 * and NUL-terminates. Returns true when the whole of src fit. */
bool sn_copy_truncated(char *dst, size_t dstsize, const char *src, size_t len);

#endif
