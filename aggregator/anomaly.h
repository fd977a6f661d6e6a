/*
 * anomaly.h -- what the aggregator's engine finds: one anomalous observation about one
 * (service, model), before the alert lifecycle (de-duplication, grouping, resolve) turns it into
 * an alert. Plain value, no pointers: the engine fills it, the alert manager copies what it keeps.
 *
 * Field names follow the alert JSON of contracts.md.
 */
#ifndef SN_ANOMALY_H
#define SN_ANOMALY_H

#include "alert.h"
#include "detect/detect.h"
#include "event.h"

#include <stdint.h>

#define SN_ANOMALY_WINDOW_MAX 32 /* "last_5_minutes", "last_1000_calls" */

/* Where the verdict came from (context.source). */
typedef enum sn_anomaly_source {
    SN_SOURCE_AGGREGATOR = 0, /* the engine's own detectors on global baselines */
    SN_SOURCE_SIDECAR         /* a sidecar's local alert, confirmed against the global baseline */
} sn_anomaly_source;

typedef struct sn_anomaly {
    int64_t time_unix_nano; /* the observation's time (the event's end, or the tick's time) */
    sn_severity severity;
    sn_anomaly_type anomaly_type;
    char service[SN_NAME_MAX];
    char model[SN_NAME_MAX];
    char user[SN_SHORT_MAX]; /* budgets per user / API key; empty otherwise */
    sn_detector_kind method; /* detection_method; the strongest when several agreed */
    unsigned agreed;         /* detectors (and related metrics) that agreed */
    double confidence;       /* [0.5, 0.99] */
    /* details */
    sn_metric metric;
    double value;
    double baseline;
    double threshold;
    double deviation_sigma; /* NAN when not meaningful (thresholds, budgets, drift) */
    /* context */
    uint8_t trace_id[16]; /* all zero when the anomaly is not about one call */
    char region[SN_SHORT_MAX];
    char time_window[SN_ANOMALY_WINDOW_MAX];
    sn_anomaly_source source;
    /* Hints the engine knows from the data (e.g. the error.type of the spiking calls); the alert
     * manager turns them into root_cause and remediation text. */
    char error_type[SN_SHORT_MAX];
    char finish_reason[SN_SHORT_MAX];
    char related_metric[32]; /* a related metric that moved at the same time ("error_rate") */
    /* Calls the observation summarises: 0 for one call (a span); a GenAI metric point's call
     * count when the value is an interval's mean (sn_engine_aggregate; context.signal
     * "metrics"). */
    uint64_t calls;
    /* Sidecar alerts only: alerts of the same key the sidecar's rate limit held back since the
     * previous one it shipped (LocalAlert.suppressed); they count as occurrences. */
    uint64_t suppressed;
} sn_anomaly;

#endif
