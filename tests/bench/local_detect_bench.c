/*
 * local_detect_bench.c -- the sidecar's local detection (sidecar/local_detect.h) per event.
 *
 *   sentinel-bench-local [--events N] [--quick]
 *
 * Feeds N events of tests/tools/local_stream.h (4 services x 5 models, log-normal values, 0.5 %
 * spikes; generated before the clock starts) to sn_local_detect_event with the default settings
 * and prints the CPU time per event, the alerts, the baseline keys and a digest of every alert
 * field (equal digests = identical results). For exact A/B numbers count instructions instead of
 * time (the machine may be shared):
 *
 *   valgrind --tool=callgrind --toggle-collect=sn_local_detect_event \
 *       build/tests/bench/sentinel-bench-local --events 200000
 *
 * and divide the total by the events (docs/benchmarks.md, "Sidecar local detection").
 */
#include "local_detect.h"
#include "local_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CPU time of this process. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Parses a positive event count; returns 0 or -1. */
static int parse_count(const char *s, size_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || v < 1 || v > 100000000)
        return -1;
    *out = (size_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = 1000000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            n = 20000;
        } else if (strcmp(argv[i], "--events") == 0 && i + 1 < argc) {
            if (parse_count(argv[++i], &n) != 0) {
                fprintf(stderr, "sentinel-bench-local: --events takes 1..100000000\n");
                return 2;
            }
        } else {
            fprintf(stderr, "usage: sentinel-bench-local [--events N] [--quick]\n");
            return 2;
        }
    }
    int rc = 1;
    sn_local_detect *ld = NULL;
    sn_event *evs = malloc(n * sizeof(*evs));
    if (evs == NULL) {
        fprintf(stderr, "sentinel-bench-local: out of memory for %zu events\n", n);
        goto out;
    }
    local_stream st;
    local_stream_init(&st, 1);
    for (size_t i = 0; i < n; i++)
        local_stream_next(&st, &evs[i]);

    sn_local_detect_config cfg;
    sn_local_detect_config_defaults(&cfg);
    if (sn_local_detect_create(&cfg, 0x5eed, &ld) != 0) {
        fprintf(stderr, "sentinel-bench-local: cannot create the detector\n");
        goto out;
    }
    sn_local_alert alerts[SN_METRIC_COUNT];
    uint64_t digest = LOCAL_STREAM_DIGEST_INIT, found = 0;
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        size_t k = sn_local_detect_event(ld, &evs[i], alerts, SN_METRIC_COUNT);
        found += k;
        digest = local_stream_digest(digest, k, alerts, SN_METRIC_COUNT);
    }
    double dt = now_s() - t0;
    uint64_t keys, bytes;
    sn_local_detect_usage(ld, &keys, &bytes);
    printf("local_detect events=%zu ns_per_event=%.1f alerts=%llu keys=%llu bytes=%llu "
           "digest=%016llx\n",
           n, dt * 1e9 / (double)n, (unsigned long long)found, (unsigned long long)keys,
           (unsigned long long)bytes, (unsigned long long)digest);
    rc = 0;

out:
    sn_local_detect_destroy(ld);
    free(evs);
    return rc;
}
