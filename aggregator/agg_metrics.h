/*
 * agg_metrics.h -- the aggregator's own Prometheus metrics (contracts.md names kept): what was
 * ingested and refused, what each check evaluated and found, anomalies by detector, type and
 * severity, detection delay, baseline keys and memory, alerts firing, state store errors.
 *
 * Event-driven series (anomalies, detection delay, batch apply time) are updated as things
 * happen; counters the modules keep themselves (ingest, engine) are copied in on the loop's
 * one-second tick by adding what grew since the last tick. Loop thread only (the registry's
 * updates are lock-free, so scrapes on the HTTP threads see them).
 */
#ifndef SN_AGG_METRICS_H
#define SN_AGG_METRICS_H

#include "alerts.h"
#include "anomaly.h"
#include "engine.h"
#include "ingest.h"
#include "metrics.h"

typedef struct sn_agg_metrics sn_agg_metrics;

/* Registers every family in m (borrowed; must outlive the result). Returns 0 or a negative errno
 * with a message in err. Free with sn_agg_metrics_destroy. */
int sn_agg_metrics_create(sn_metrics *m, sn_agg_metrics **out, char *err, size_t errlen);
void sn_agg_metrics_destroy(sn_agg_metrics *am);

/* An anomaly the engine emitted at now_ns: counted by detector, type and severity, and its
 * detection delay (now - the observation's time) observed when the time is known. */
void sn_agg_metrics_anomaly(sn_agg_metrics *am, const sn_anomaly *an, int64_t now_ns);

/* The exact detection delays of the last SN_AGG_DELAY_WINDOW anomalies with a known time (a
 * ring kept beside the histogram, whose buckets are too coarse for percentiles). */
#define SN_AGG_DELAY_WINDOW 1024u

typedef struct sn_agg_delay {
    double p50, p95, p99; /* seconds over the window (linear interpolation); NAN when empty */
    uint64_t count;       /* delays observed since start */
    size_t window;        /* delays the percentiles are computed from (<= SN_AGG_DELAY_WINDOW) */
} sn_agg_delay;

/* The delay percentiles (sorts a copy of the window: O(n log n), n <= 1024; loop thread). am
 * NULL gives an empty result. Never fails. */
void sn_agg_metrics_delay(const sn_agg_metrics *am, sn_agg_delay *out);

/* One batch applied in `seconds`. */
void sn_agg_metrics_batch(sn_agg_metrics *am, double seconds);

/* Copies the modules' counters and gauges in (the tick). store_errors is the loop's count. */
void sn_agg_metrics_refresh(sn_agg_metrics *am, const sn_ingest_stats *in,
                            const sn_engine_stats *es, const sn_alerts_stats *as,
                            uint64_t store_errors);

#endif
