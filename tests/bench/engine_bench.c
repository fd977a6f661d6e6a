/*
 * engine_bench.c -- micro benchmark of the aggregator's detection engine (aggregator/engine.h).
 *
 *   sentinel-bench-engine [--quick] [--mode compact|exact]
 *
 * 1. Events per second through sn_engine_observe with 1 K and 100 K baseline keys (8 metrics per
 *    (service, model), so 125 and 12 500 pairs), after every key has left its warm-up; the events
 *    are generated before the clock starts.
 * 2. Accounted bytes per baseline key (pair state included) at 1 K, 100 K and 1 M keys.
 *
 * Times are CPU time of the process (one thread). One line per measurement on stdout. --quick uses
 * fewer events and skips 1 M keys (a smoke run).
 */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEC INT64_C(1000000000)

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(void)
{
    return sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform());
}

/* CPU time of this process: the machine may be shared, wall time would count other work. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A normal call of pair i at time t (all eight metrics known). */
static void make_event(sn_event *ev, unsigned i, int64_t t)
{
    sn_event_init(ev);
    snprintf(ev->service, sizeof ev->service, "service-%05u", i / 4);
    snprintf(ev->model, sizeof ev->model, "model-%u", i % 4);
    ev->end_unix_nano = t;
    ev->latency_ms = 2000.0 * exp(0.3 * normal());
    ev->ttft_ms = 300.0 * exp(0.3 * normal());
    ev->input_tokens = (int64_t)(500.0 * exp(0.4 * normal())) + 1;
    ev->output_tokens = (int64_t)(200.0 * exp(0.4 * normal())) + 1;
    ev->total_tokens = ev->input_tokens + ev->output_tokens;
    ev->cost_usd = ev->input_tokens * 2.5e-6 + ev->output_tokens * 10e-6;
    ev->cost_source = SN_COST_PRICE_TABLE;
    ev->is_error = uniform() < 0.01;
    snprintf(ev->finish_reason, sizeof ev->finish_reason, "%s",
             uniform() < 0.9 ? "stop" : "length");
}

static unsigned emitted;

static void count(const sn_anomaly *a, void *ud)
{
    (void)a;
    (void)ud;
    emitted++;
}

/* An engine sized for `pairs` pairs (eight keys each): budget and limits as an operator would
 * set them, so the fixed index is in proportion. */
static sn_engine *make(int mode, unsigned pairs)
{
    sn_engine_config c;
    sn_engine_config_defaults(&c);
    c.baseline_mode = mode;
    int64_t per_key = mode == SN_BASELINE_COMPACT ? 2560 : 17 * 1024;
    c.memory_budget = (int64_t)pairs * 8 * per_key + ((int64_t)64 << 20);
    c.max_pairs = pairs;
    sn_engine *e = NULL;
    sn_config_error err = {{0}};
    if (sn_engine_create(&e, &c, 7, &err) != 0) {
        fprintf(stderr, "sentinel-bench-engine: %s\n", err.msg);
        exit(1);
    }
    return e;
}

#define RING 65536 /* pre-generated events, replayed with fresh times */

/* Events per second with `pairs` pairs: warm every key, then time `n` events taken from a ring
 * of pre-generated ones (only their time is set in the timed loop). */
static void throughput(int mode, unsigned pairs, unsigned warm_per_pair, unsigned n)
{
    sn_engine *e = make(mode, pairs);
    sn_event *evs = malloc((size_t)RING * sizeof *evs);
    if (evs == NULL) {
        fprintf(stderr, "sentinel-bench-engine: out of memory\n");
        exit(1);
    }
    int64_t t = INT64_C(1767225600) * SEC;
    int64_t step = SEC / 1000; /* 1000 calls/s in all */
    sn_event ev;
    for (unsigned r = 0; r < warm_per_pair; r++) {
        for (unsigned i = 0; i < pairs; i++) {
            make_event(&ev, i, t);
            sn_engine_observe(e, &ev, count, NULL);
            t += step;
        }
        sn_engine_tick(e, t, count, NULL);
    }
    for (unsigned k = 0; k < RING; k++)
        make_event(&evs[k], (unsigned)(uniform() * pairs) % pairs, t);
    emitted = 0;
    double t0 = now_s();
    for (unsigned k = 0; k < n; k++) {
        sn_event *x = &evs[k % RING];
        x->end_unix_nano = t;
        sn_engine_observe(e, x, count, NULL);
        t += step;
    }
    double dt = now_s() - t0;
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    printf("observe %-7s keys=%-7llu events=%u  %.0f events/s  %.0f ns/event  anomalies=%u "
           "(%.3f%%)\n",
           mode == SN_BASELINE_COMPACT ? "compact" : "exact", (unsigned long long)st.keys, n,
           n / dt, dt / n * 1e9, emitted, 100.0 * emitted / n);
    free(evs);
    sn_engine_destroy(e);
}

/* Accounted bytes per key with `pairs` pairs of eight keys. */
static void bytes_per_key(int mode, unsigned pairs)
{
    sn_engine *e = make(mode, pairs);
    sn_engine_stats st0;
    sn_engine_get_stats(e, &st0); /* the fixed part: indexes and scratch */
    int64_t t = INT64_C(1767225600) * SEC;
    sn_event ev;
    double t0 = now_s();
    for (unsigned i = 0; i < pairs; i++) {
        make_event(&ev, i, t);
        sn_engine_observe(e, &ev, NULL, NULL);
    }
    double dt = now_s() - t0;
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    printf("memory  %-7s keys=%-7llu bytes=%llu  %.0f bytes/key all in, %.0f bytes/key without "
           "the fixed %llu  (creating a key: %.0f ns)\n",
           mode == SN_BASELINE_COMPACT ? "compact" : "exact", (unsigned long long)st.keys,
           (unsigned long long)st.bytes, (double)st.bytes / (double)st.keys,
           (double)(st.bytes - st0.bytes) / (double)st.keys, (unsigned long long)st0.bytes,
           dt / (double)st.keys * 1e9);
    sn_engine_destroy(e);
}

int main(int argc, char **argv)
{
    bool quick = false;
    int mode = SN_BASELINE_COMPACT;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
            i++;
            mode = strcmp(argv[i], "exact") == 0 ? SN_BASELINE_EXACT : SN_BASELINE_COMPACT;
        } else {
            fprintf(stderr, "usage: sentinel-bench-engine [--quick] [--mode compact|exact]\n");
            return 2;
        }
    }
    unsigned n = quick ? 20000 : 2000000;
    throughput(mode, 125, quick ? 120 : 1200, n);
    throughput(mode, 12500, quick ? 2 : 120, n);
    bytes_per_key(mode, 125);
    bytes_per_key(mode, 12500);
    if (!quick && mode == SN_BASELINE_COMPACT) /* exact: 16 GiB */
        bytes_per_key(mode, 125000);
    return 0;
}
