/*
 * fuzz_metrics.h -- the check of a metric fact shared by the metrics fuzz targets.
 */
#ifndef SN_FUZZ_METRICS_H
#define SN_FUZZ_METRICS_H

#include "fuzz_common.h"
#include "otlp/metrics.h"

/* Aborts when a fact breaks a promise of metrics.h (an sn_otlp_metric_fn; ud counts the facts
 * in a size_t). */
static inline void sn_fuzz_check_fact(const sn_metric_fact *f, void *ud)
{
    size_t *n = ud;
    (*n)++;
    sn_fuzz_check_str(f->service, sizeof f->service);
    sn_fuzz_check_str(f->model, sizeof f->model);
    sn_fuzz_check_str(f->provider, sizeof f->provider);
    sn_fuzz_check_str(f->operation, sizeof f->operation);
    sn_fuzz_check_str(f->region, sizeof f->region);
    sn_fuzz_check_str(f->error_type, sizeof f->error_type);
    sn_fuzz_check_str(f->server_address, sizeof f->server_address);
    if (f->temporality != SN_METRIC_TEMPORALITY_DELTA &&
        f->temporality != SN_METRIC_TEMPORALITY_CUMULATIVE)
        abort();
    if (f->metric != SN_METRIC_INPUT_TOKENS && f->metric != SN_METRIC_OUTPUT_TOKENS &&
        f->metric != SN_METRIC_LATENCY_MS && f->metric != SN_METRIC_TTFT_MS)
        abort();
    const double reals[] = {f->sum, f->min, f->max};
    for (size_t i = 0; i < 3; i++)
        if (!isnan(reals[i]) && (!isfinite(reals[i]) || reals[i] < 0))
            abort();
    if (f->start_unix_nano < 0 || f->end_unix_nano < 0 ||
        (f->start_unix_nano != 0 && f->end_unix_nano < f->start_unix_nano))
        abort();
}

#endif
