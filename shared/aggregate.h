/*
 * aggregate.h -- one GenAI metric data point as a fact: the calls of one (service, model,
 * provider, operation, error type) over one interval, as the sidecar ships it to the aggregator
 * (sentinel.v1.LlmAggregate) and the aggregator's engine applies it (sn_engine_aggregate).
 *
 * The sidecar makes these from delta (or differenced cumulative) histogram points of
 * gen_ai.client.token.usage, gen_ai.client.operation.duration and the time-to-first-chunk
 * metrics, only for (service, model) pairs that sent no spans recently (docs/sidecar.md, "GenAI
 * metrics"). Plain value, no pointers; no functions (the conversion lives in the sidecar, the
 * application in the engine).
 */
#ifndef SN_AGGREGATE_H
#define SN_AGGREGATE_H

#include "event.h"

#include <stdint.h>

typedef struct sn_aggregate {
    char service[SN_NAME_MAX];     /* resource service.name */
    char model[SN_NAME_MAX];       /* response model, else request model */
    char provider[SN_SHORT_MAX];   /* normalised */
    char operation[SN_SHORT_MAX];  /* gen_ai.operation.name */
    char region[SN_SHORT_MAX];     /* resource cloud.region */
    char error_type[SN_SHORT_MAX]; /* error.type of the point; empty when its calls succeeded */
    sn_metric metric;              /* LATENCY_MS, TTFT_MS, INPUT_TOKENS or OUTPUT_TOKENS */
    int64_t start_unix_nano;       /* interval start; 0 unknown */
    int64_t end_unix_nano;         /* interval end (the point's time) */
    uint64_t count;                /* values recorded in the interval, >= 1 */
    double sum;                    /* their sum in the metric's unit; NAN unknown */
    double min;                    /* NAN when not sent */
    double max;                    /* NAN when not sent */
    uint64_t error_count;          /* failed calls among count */
    double cost_usd;               /* token usage: sum x the model's price; NAN unknown */
} sn_aggregate;

#endif
