/* metrics_sample: prints an exposition that uses every feature of shared/metrics.c (labels,
 * escaping, special values, histograms with and without labels, a refused series, the process
 * families), so a Prometheus parser can check the format. Exit status 0, or 1 with a message. */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Registers a family or exits with the registry's message. */
static sn_metrics_family *reg(sn_metrics *m, const sn_metrics_desc *d)
{
    char err[256];
    sn_metrics_family *f;
    if (sn_metrics_register(m, d, &f, err, sizeof err) != 0) {
        fprintf(stderr, "metrics_sample: %s\n", err);
        exit(1);
    }
    return f;
}

int main(void)
{
    char err[256];
    sn_metrics *m;
    sn_metrics_limits lim = {.max_series = 4};
    if (sn_metrics_create(&lim, &m, err, sizeof err) != 0 ||
        sn_metrics_register_process(m, err, sizeof err) != 0) {
        fprintf(stderr, "metrics_sample: %s\n", err);
        return 1;
    }
    sn_metrics_family *req = reg(m, &(sn_metrics_desc){
                                        .type = SN_METRICS_COUNTER,
                                        .name = "sentinel_sidecar_otlp_requests_total",
                                        .help = "OTLP export requests by signal, protocol and "
                                                "outcome.\nA second line, a \\ and \"quotes\".",
                                        .labels = {"signal", "protocol", "outcome"},
                                    });
    sn_counter_add(sn_metrics_counter(req, (const char *[]){"traces", "grpc", "ok"}), 1234);
    sn_counter_inc(sn_metrics_counter(req, (const char *[]){"logs", "http", "invalid"}));
    sn_counter_inc(sn_metrics_counter(req, (const char *[]){"a\\b", "\"q\"", "line\nbreak"}));
    sn_counter_inc(sn_metrics_counter(req, (const char *[]){"bad \xff utf-8", "", NULL}));
    sn_counter_inc(sn_metrics_counter(req, (const char *[]){"refused", "fifth", "series"}));

    sn_metrics_family *cost = reg(m, &(sn_metrics_desc){.type = SN_METRICS_COUNTER,
                                                        .name = "sentinel_cost_usd_total",
                                                        .help = "Cost in US dollars.",
                                                        .labels = {"model"}});
    sn_counter_add_double(sn_metrics_counter(cost, (const char *[]){"gpt-4o"}), 0.125);

    sn_metrics_family *g = reg(m, &(sn_metrics_desc){.type = SN_METRICS_GAUGE,
                                                     .name = "sentinel_sample_ratio",
                                                     .help = "Special values.",
                                                     .labels = {"case"}});
    sn_gauge_set(sn_metrics_gauge(g, (const char *[]){"nan"}), NAN);
    sn_gauge_set(sn_metrics_gauge(g, (const char *[]){"inf"}), INFINITY);
    sn_gauge_set(sn_metrics_gauge(g, (const char *[]){"-inf"}), -INFINITY);
    sn_gauge_set(sn_metrics_gauge(g, (const char *[]){"tiny"}), -1.5e-300);
    sn_gauge_set(sn_metrics_gauge(reg(m, &(sn_metrics_desc){.type = SN_METRICS_GAUGE,
                                                            .name = "sentinel_sidecar_spool_bytes",
                                                            .help = "Bytes in the spool."}),
                                  NULL),
                 1048576);

    static const double secs[] = {0.0005, 0.001, 0.01, 0.1, 1, 10};
    sn_metrics_family *h = reg(m, &(sn_metrics_desc){.type = SN_METRICS_HISTOGRAM,
                                                     .name = "sentinel_detection_duration_seconds",
                                                     .help = "Time to score one event.",
                                                     .labels = {"detector"},
                                                     .buckets = secs,
                                                     .bucket_count = 6});
    sn_histogram *z = sn_metrics_histogram(h, (const char *[]){"zscore"});
    for (int i = 0; i < 100; i++)
        sn_histogram_observe(z, i * 0.001);
    sn_histogram_observe(sn_metrics_histogram(h, (const char *[]){"mad"}), 42);
    sn_histogram_observe(
        sn_metrics_histogram(reg(m, &(sn_metrics_desc){.type = SN_METRICS_HISTOGRAM,
                                                       .name = "sentinel_batch_size_bytes",
                                                       .help = "Batch sizes.",
                                                       .buckets = secs,
                                                       .bucket_count = 6}),
                             NULL),
        3);

    char *text;
    size_t len;
    int rc = sn_metrics_render_alloc(m, &text, &len);
    if (rc != 0) {
        fprintf(stderr, "metrics_sample: render failed (%d)\n", rc);
        return 1;
    }
    fwrite(text, 1, len, stdout);
    free(text);
    sn_metrics_destroy(m);
    return 0;
}
