/*
 * alert.h -- a local alert: one detector verdict about one event, as the sidecar raises it and
 * ships it to the aggregator (sentinel.v1.LocalAlert), and the anomaly types of the alert JSON.
 */
#ifndef SN_ALERT_H
#define SN_ALERT_H

#include "detect/detect.h"
#include "event.h"

#include <stdint.h>

#define SN_ALERT_ID_LEN 36 /* a UUID in text form, without the NUL */

/* The alert JSON's anomaly_type values. */
typedef enum sn_anomaly_type {
    SN_ANOMALY_LATENCY_SPIKE = 0,   /* latency or time to first token too high */
    SN_ANOMALY_LATENCY_DROP,        /* latency far below its baseline (truncated answers?) */
    SN_ANOMALY_TOKEN_SPIKE,         /* input, output or total tokens too high */
    SN_ANOMALY_TOKEN_DROP,          /* tokens far below their baseline */
    SN_ANOMALY_COST_SPIKE,          /* cost per call too high */
    SN_ANOMALY_COST_DRIFT,          /* cost creeping up (CUSUM) */
    SN_ANOMALY_LATENCY_DRIFT,       /* latency creeping up (CUSUM) */
    SN_ANOMALY_ERROR_RATE,          /* errors above their baseline or threshold */
    SN_ANOMALY_THROUGHPUT_DROP,     /* tokens per second below the baseline */
    SN_ANOMALY_THROUGHPUT_SPIKE,    /* tokens per second far above the baseline */
    SN_ANOMALY_BUDGET,              /* a cost budget's soft or hard limit */
    SN_ANOMALY_TOKEN_DRIFT,         /* the input-token distribution moved (PSI) */
    SN_ANOMALY_FINISH_REASON_DRIFT, /* the mix of finish reasons moved (Jensen-Shannon) */
    SN_ANOMALY_TYPE_COUNT
} sn_anomaly_type;

typedef struct sn_local_alert {
    char alert_id[SN_ALERT_ID_LEN + 1]; /* random UUID v4, so a receiver can de-duplicate */
    int64_t time_unix_nano;             /* the event's time */
    char service[SN_NAME_MAX];
    char model[SN_NAME_MAX];
    char region[SN_SHORT_MAX];
    sn_metric metric;
    sn_anomaly_type anomaly_type;
    sn_detector_kind detector;
    sn_severity severity;
    double value;
    double baseline;
    double threshold;
    double deviation; /* sigmas where meaningful, else NAN */
    double confidence;
    uint8_t trace_id[16];
    uint64_t suppressed; /* alerts of the same key the sidecar's rate limit held back since the
                            previous one of that key was shipped (sidecar/alert_limit.h) */
} sn_local_alert;

/* "latency_spike", "token_spike", ...; "unknown" when out of range. Static storage. */
const char *sn_anomaly_type_name(sn_anomaly_type t);

/* Parses an anomaly_type name. Returns 0 and sets *out, or -1 (*out untouched). */
int sn_anomaly_type_from_name(const char *name, sn_anomaly_type *out);

/* The anomaly type of a verdict on metric m: the metric and the side (direction > 0 above the
 * baseline) pick it, and CUSUM verdicts on latency and cost are drifts. */
sn_anomaly_type sn_anomaly_type_for(sn_metric m, sn_detector_kind detector, int direction);

/* Fills a local alert from an event, the metric and its verdict (anomalous or not: the caller
 * decides). `id` is a UUID text (SN_ALERT_ID_LEN chars) the caller generated, or NULL to leave
 * alert_id empty. Never fails. */
void sn_local_alert_fill(sn_local_alert *a, const sn_event *ev, sn_metric m, const sn_verdict *v,
                         const char *id);

/* Writes a random (version 4) UUID as 36 characters plus NUL into out, from 16 random bytes the
 * caller supplies (no I/O here). */
void sn_uuid_format(const uint8_t random16[16], char out[SN_ALERT_ID_LEN + 1]);

#endif
