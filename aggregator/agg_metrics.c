/*
 * agg_metrics.c -- the aggregator's Prometheus families and how they are fed.
 */
#include "agg_metrics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const refusal_names[SN_INGEST_REFUSED_COUNT] = {
    "malformed", "invalid", "too_large", "decompress", "retry", "internal"};

struct sn_agg_metrics {
    sn_metrics_family *anomalies; /* {detector, type, severity} */
    sn_histogram *delay;
    sn_histogram *apply;
    sn_counter *events, *batches, *duplicates, *refused[SN_INGEST_REFUSED_COUNT];
    sn_counter *bytes_in;
    sn_counter *evaluations[SN_CHECK_COUNT];
    sn_counter *local[3]; /* confirmed, discarded, trusted */
    sn_counter *suppressed, *evicted, *store_errors;
    sn_counter *aggregates, *aggregate_calls, *local_held;
    sn_gauge *keys, *bytes, *sidecars, *firing;
    /* what was copied in last time */
    sn_ingest_stats last_in;
    sn_engine_stats last_es;
    uint64_t last_store_errors;
    /* the last SN_AGG_DELAY_WINDOW detection delays, seconds (a ring; next write at delay_pos) */
    double delays[SN_AGG_DELAY_WINDOW];
    size_t delay_pos;
    uint64_t delay_count;
};

static int family(sn_metrics *m, sn_metrics_type type, const char *name, const char *help,
                  const char *l1, const double *buckets, size_t nb, sn_metrics_family **out,
                  char *err, size_t errlen)
{
    sn_metrics_desc d = {.type = type,
                         .name = name,
                         .help = help,
                         .labels = {l1},
                         .buckets = buckets,
                         .bucket_count = nb};
    return sn_metrics_register(m, &d, out, err, errlen);
}

int sn_agg_metrics_create(sn_metrics *m, sn_agg_metrics **out, char *err, size_t errlen)
{
    int rc;
    sn_metrics_family *f;
    sn_agg_metrics *am = calloc(1, sizeof(*am));
    if (am == NULL)
        return -ENOMEM;
    static const double delay_buckets[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300};
    static const double apply_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                           0.01,   0.025,   0.05,   0.1,   0.25,   1};
    sn_metrics_desc an = {.type = SN_METRICS_COUNTER,
                          .name = "sentinel_anomalies_detected_total",
                          .help =
                              "anomalies the engine found, by detector, anomaly type and severity",
                          .labels = {"detector", "type", "severity"}};
    if ((rc = sn_metrics_register(m, &an, &am->anomalies, err, errlen)) != 0)
        goto out_free;
    if ((rc = family(m, SN_METRICS_HISTOGRAM, "sentinel_detection_delay_seconds",
                     "from the end of the span (or the observed window) to the anomaly", NULL,
                     delay_buckets, sizeof delay_buckets / sizeof delay_buckets[0], &f, err,
                     errlen)) != 0)
        goto out_free;
    am->delay = sn_metrics_histogram(f, NULL);
    if ((rc = family(m, SN_METRICS_HISTOGRAM, "sentinel_detection_duration_seconds",
                     "time to apply one sidecar batch: detection on every event, alerts, state",
                     NULL, apply_buckets, sizeof apply_buckets / sizeof apply_buckets[0], &f, err,
                     errlen)) != 0)
        goto out_free;
    am->apply = sn_metrics_histogram(f, NULL);

    struct {
        const char *name, *help;
        sn_counter **c;
    } counters[] = {
        {"sentinel_aggregator_events_ingested_total", "LLM events applied from sidecar batches",
         &am->events},
        {"sentinel_aggregator_batches_total", "sidecar batches applied", &am->batches},
        {"sentinel_aggregator_batches_duplicate_total",
         "replayed batches recognised and not applied again", &am->duplicates},
        {"sentinel_aggregator_ingest_bytes_total", "compressed batch bytes received",
         &am->bytes_in},
        {"sentinel_aggregator_anomalies_suppressed_total",
         "anomalous values held back by persistence filtering", &am->suppressed},
        {"sentinel_baseline_evictions_total",
         "baseline keys evicted to stay within the memory budget", &am->evicted},
        {"sentinel_store_errors_total", "state store writes that failed", &am->store_errors},
        {"sentinel_aggregator_aggregates_applied_total",
         "GenAI metric points (LlmAggregate) applied from sidecar batches", &am->aggregates},
        {"sentinel_aggregator_aggregate_calls_total",
         "LLM calls counted from GenAI operation-duration points", &am->aggregate_calls},
        {"sentinel_local_alerts_held_back_total",
         "local alerts the sidecars' rate limits held back (LocalAlert.suppressed)",
         &am->local_held},
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        if ((rc = family(m, SN_METRICS_COUNTER, counters[i].name, counters[i].help, NULL, NULL, 0,
                         &f, err, errlen)) != 0)
            goto out_free;
        *counters[i].c = sn_metrics_counter(f, NULL);
    }
    if ((rc = family(m, SN_METRICS_COUNTER, "sentinel_aggregator_batches_refused_total",
                     "sidecar batches refused, by reason", "reason", NULL, 0, &f, err, errlen)) !=
        0)
        goto out_free;
    for (int r = 0; r < SN_INGEST_REFUSED_COUNT; r++) {
        const char *v[] = {refusal_names[r]};
        am->refused[r] = sn_metrics_counter(f, v);
    }
    if ((rc = family(m, SN_METRICS_COUNTER, "sentinel_detector_evaluations_total",
                     "verdicts given, by detector or check", "detector", NULL, 0, &f, err,
                     errlen)) != 0)
        goto out_free;
    for (int c = 0; c < SN_CHECK_COUNT; c++) {
        const char *v[] = {sn_engine_check_name((sn_engine_check)c)};
        am->evaluations[c] = sn_metrics_counter(f, v);
    }
    if ((rc = family(m, SN_METRICS_COUNTER, "sentinel_local_alerts_total",
                     "sidecar local alerts against the global baseline, by result", "result", NULL,
                     0, &f, err, errlen)) != 0)
        goto out_free;
    static const char *const local_names[3] = {"confirmed", "discarded", "trusted_cold"};
    for (int i = 0; i < 3; i++) {
        const char *v[] = {local_names[i]};
        am->local[i] = sn_metrics_counter(f, v);
    }
    struct {
        const char *name, *help;
        sn_gauge **g;
    } gauges[] = {
        {"sentinel_baseline_keys", "baseline keys (service, model, metric) held", &am->keys},
        {"sentinel_baseline_bytes", "memory accounted to baselines and detector state", &am->bytes},
        {"sentinel_aggregator_sidecars", "sidecar ids in the de-duplication table", &am->sidecars},
        {"sentinel_alerts_firing", "alerts firing now", &am->firing},
    };
    for (size_t i = 0; i < sizeof gauges / sizeof gauges[0]; i++) {
        if ((rc = family(m, SN_METRICS_GAUGE, gauges[i].name, gauges[i].help, NULL, NULL, 0, &f,
                         err, errlen)) != 0)
            goto out_free;
        *gauges[i].g = sn_metrics_gauge(f, NULL);
    }
    *out = am;
    return 0;

out_free:
    free(am);
    return rc;
}

void sn_agg_metrics_destroy(sn_agg_metrics *am)
{
    free(am);
}

void sn_agg_metrics_anomaly(sn_agg_metrics *am, const sn_anomaly *an, int64_t now_ns)
{
    if (am == NULL)
        return;
    const char *v[] = {sn_detector_name(an->method), sn_anomaly_type_name(an->anomaly_type),
                       sn_severity_name(an->severity)};
    sn_counter_inc(sn_metrics_counter(am->anomalies, v));
    if (an->time_unix_nano > 0 && now_ns >= an->time_unix_nano) {
        double s = (double)(now_ns - an->time_unix_nano) / 1e9;
        sn_histogram_observe(am->delay, s);
        am->delays[am->delay_pos] = s;
        am->delay_pos = (am->delay_pos + 1) % SN_AGG_DELAY_WINDOW;
        am->delay_count++;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of sorted v[0..n) (n > 0), interpolating between neighbours. */
static double quantile(const double *v, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)pos;
    if (lo + 1 >= n)
        return v[n - 1];
    return v[lo] + (v[lo + 1] - v[lo]) * (pos - (double)lo);
}

void sn_agg_metrics_delay(const sn_agg_metrics *am, sn_agg_delay *out)
{
    out->p50 = out->p95 = out->p99 = NAN;
    out->count = am != NULL ? am->delay_count : 0;
    out->window = 0;
    if (am == NULL || am->delay_count == 0)
        return;
    double v[SN_AGG_DELAY_WINDOW];
    size_t n =
        am->delay_count < SN_AGG_DELAY_WINDOW ? (size_t)am->delay_count : SN_AGG_DELAY_WINDOW;
    memcpy(v, am->delays, n * sizeof v[0]); /* the ring's first n slots are the filled ones */
    qsort(v, n, sizeof v[0], cmp_double);
    out->p50 = quantile(v, n, 0.50);
    out->p95 = quantile(v, n, 0.95);
    out->p99 = quantile(v, n, 0.99);
    out->window = n;
}

void sn_agg_metrics_batch(sn_agg_metrics *am, double seconds)
{
    if (am != NULL)
        sn_histogram_observe(am->apply, seconds);
}

/* Adds what a module's ever-growing counter gained since the last copy. */
static void grow(sn_counter *c, uint64_t now, uint64_t *last)
{
    if (now > *last)
        sn_counter_add(c, now - *last);
    *last = now;
}

void sn_agg_metrics_refresh(sn_agg_metrics *am, const sn_ingest_stats *in,
                            const sn_engine_stats *es, const sn_alerts_stats *as,
                            uint64_t store_errors)
{
    if (am == NULL)
        return;
    grow(am->events, in->events, &am->last_in.events);
    grow(am->batches, in->batches, &am->last_in.batches);
    grow(am->duplicates, in->duplicates, &am->last_in.duplicates);
    grow(am->bytes_in, in->bytes_in, &am->last_in.bytes_in);
    for (int r = 0; r < SN_INGEST_REFUSED_COUNT; r++)
        grow(am->refused[r], in->refused[r], &am->last_in.refused[r]);
    for (int c = 0; c < SN_CHECK_COUNT; c++)
        grow(am->evaluations[c], es->evaluations[c], &am->last_es.evaluations[c]);
    grow(am->local[0], es->local_confirmed, &am->last_es.local_confirmed);
    grow(am->local[1], es->local_discarded, &am->last_es.local_discarded);
    grow(am->local[2], es->local_trusted, &am->last_es.local_trusted);
    grow(am->suppressed, es->suppressed, &am->last_es.suppressed);
    grow(am->evicted, es->evictions, &am->last_es.evictions);
    grow(am->aggregates, es->aggregates, &am->last_es.aggregates);
    grow(am->aggregate_calls, es->aggregate_calls, &am->last_es.aggregate_calls);
    grow(am->local_held, es->local_suppressed, &am->last_es.local_suppressed);
    grow(am->store_errors, store_errors, &am->last_store_errors);
    sn_gauge_set(am->keys, (double)es->keys);
    sn_gauge_set(am->bytes, (double)es->bytes);
    sn_gauge_set(am->sidecars, (double)in->sidecars);
    sn_gauge_set(am->firing, (double)as->firing);
}
