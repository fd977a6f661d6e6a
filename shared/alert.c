/*
 * alert.c -- anomaly type names and the local alert constructor.
 */
#include "alert.h"

#include <stdio.h>
#include <string.h>

static const char *const type_names[SN_ANOMALY_TYPE_COUNT] = {
    [SN_ANOMALY_LATENCY_SPIKE] = "latency_spike",
    [SN_ANOMALY_LATENCY_DROP] = "latency_drop",
    [SN_ANOMALY_TOKEN_SPIKE] = "token_spike",
    [SN_ANOMALY_TOKEN_DROP] = "token_drop",
    [SN_ANOMALY_COST_SPIKE] = "cost_spike",
    [SN_ANOMALY_COST_DRIFT] = "cost_drift",
    [SN_ANOMALY_LATENCY_DRIFT] = "latency_drift",
    [SN_ANOMALY_ERROR_RATE] = "error_rate",
    [SN_ANOMALY_THROUGHPUT_DROP] = "throughput_drop",
    [SN_ANOMALY_THROUGHPUT_SPIKE] = "throughput_spike",
    [SN_ANOMALY_BUDGET] = "budget",
    [SN_ANOMALY_TOKEN_DRIFT] = "token_distribution_drift",
    [SN_ANOMALY_FINISH_REASON_DRIFT] = "finish_reason_drift",
};

const char *sn_anomaly_type_name(sn_anomaly_type t)
{
    if ((int)t < 0 || t >= SN_ANOMALY_TYPE_COUNT)
        return "unknown";
    return type_names[t];
}

int sn_anomaly_type_from_name(const char *name, sn_anomaly_type *out)
{
    for (int i = 0; i < SN_ANOMALY_TYPE_COUNT; i++) {
        if (strcmp(name, type_names[i]) == 0) {
            *out = (sn_anomaly_type)i;
            return 0;
        }
    }
    return -1;
}

sn_anomaly_type sn_anomaly_type_for(sn_metric m, sn_detector_kind detector, int direction)
{
    bool up = direction >= 0;
    switch (m) {
    case SN_METRIC_LATENCY_MS:
    case SN_METRIC_TTFT_MS:
        if (detector == SN_DETECT_CUSUM && up)
            return SN_ANOMALY_LATENCY_DRIFT;
        return up ? SN_ANOMALY_LATENCY_SPIKE : SN_ANOMALY_LATENCY_DROP;
    case SN_METRIC_INPUT_TOKENS:
    case SN_METRIC_OUTPUT_TOKENS:
    case SN_METRIC_TOTAL_TOKENS:
        return up ? SN_ANOMALY_TOKEN_SPIKE : SN_ANOMALY_TOKEN_DROP;
    case SN_METRIC_COST_USD:
        if (detector == SN_DETECT_BUDGET)
            return SN_ANOMALY_BUDGET;
        return detector == SN_DETECT_CUSUM && up ? SN_ANOMALY_COST_DRIFT : SN_ANOMALY_COST_SPIKE;
    case SN_METRIC_ERROR_RATE:
        return SN_ANOMALY_ERROR_RATE;
    case SN_METRIC_TOKENS_PER_SECOND:
        return up ? SN_ANOMALY_THROUGHPUT_SPIKE : SN_ANOMALY_THROUGHPUT_DROP;
    case SN_METRIC_COUNT:
        break;
    }
    return SN_ANOMALY_LATENCY_SPIKE;
}

void sn_local_alert_fill(sn_local_alert *a, const sn_event *ev, sn_metric m, const sn_verdict *v,
                         const char *id)
{
    memset(a, 0, sizeof(*a));
    if (id != NULL)
        sn_copy_truncated(a->alert_id, sizeof a->alert_id, id, strnlen(id, SN_ALERT_ID_LEN));
    a->time_unix_nano = ev->end_unix_nano;
    memcpy(a->service, ev->service, sizeof a->service);
    memcpy(a->model, ev->model, sizeof a->model);
    memcpy(a->region, ev->region, sizeof a->region);
    memcpy(a->trace_id, ev->trace_id, sizeof a->trace_id);
    a->metric = m;
    a->detector = v->method;
    a->anomaly_type = sn_anomaly_type_for(m, v->method, v->direction);
    a->severity = v->severity;
    a->value = v->value;
    a->baseline = v->baseline;
    a->threshold = v->threshold;
    a->deviation = v->deviation;
    a->confidence = v->confidence;
}

void sn_uuid_format(const uint8_t random16[16], char out[SN_ALERT_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    memcpy(b, random16, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0F) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0F];
    }
    out[o] = '\0';
}
