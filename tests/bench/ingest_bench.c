/*
 * ingest_bench.c -- the aggregator's whole ingest path, as the service runs it, in CPU time of
 * one thread:
 *
 *   zstd-compressed sentinel.v1.IngestRequest of 512 events (encoded by the sidecar's own
 *   encoder, sidecar/batch.h) -> sn_ingest_decoder_decode (envelope, decompression under the
 *   hard limit, protobuf-c decoding, validation, conversion to sn_event; aggregator/ingest.h)
 *   -> sn_engine_observe on every event with the default detectors (aggregator/engine.h)
 *   -> anomalies counted by the emit callback.
 *
 *   sentinel-bench-ingest [--quick] [--runs N] [--events N] [--scenario few|many|all]
 *                         [--memory] [--keys N] [--flat]
 *
 * Scenarios: "few" is 3 services x 3 models (9 pairs, 72 baseline keys), "many" is 12 500
 * (service, model) pairs (100 000 baseline keys). Events are realistic LLM calls: log-normal
 * latency, TTFT and tokens per model, price-table costs, 1 % errors with an error type,
 * mostly "stop" finish reasons, trace and span ids, region, user and pod. Every key is warmed
 * past its warm-up before timing. A ring of encoded requests (64; 1024 for "many") is replayed;
 * each replay shifts the decoded events' times by the ring's span (one addition per event) so time
 * keeps moving forward. The timed function is timed_batches (for callgrind's --toggle-collect).
 *
 * Each batch is built as the sidecar builds one: its events ordered by resource (service,
 * region, service_version, pod; a stable sort, so times stay in order within a resource) and
 * journaled as event groups (sn_batch_append_grouped_event), sealed with groups (COMPRESSION_
 * ZSTD_GROUPS) -- or, with --flat, sealed as flat events (what an aggregator that does not
 * announce groups gets): the A/B of docs/benchmarks.md, "Event groups".
 *
 * --memory: bytes per baseline key at 1 K, 100 K and 1 M keys (--keys N for one count): the
 * engine's own accounting and the process's RSS growth (/proc/self/statm) while the keys were
 * created. One line per measurement on stdout. --quick: one short run per scenario and the
 * 1 K / 100 K memory points (a smoke run for ctest; no timing is asserted).
 */
#include "batch.h"
#include "engine.h"
#include "ingest.h"

#include "test_rand.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEC      INT64_C(1000000000)
#define BATCH    512
#define RING_MAX 1024 /* encoded requests replayed */
#define MAX_RUNS 15

static sn_test_rand rng = {0x9e3779b97f4a7c15ull};

/* CPU time of this process: the machine is shared, wall time would count other work. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "sentinel-bench-ingest: %s\n", what);
    exit(1);
}

typedef struct model_profile {
    const char *name;
    const char *provider;
    double latency_ms, ttft_ms, input, output; /* medians */
    double in_price, out_price;                /* USD per token */
} model_profile;

static const model_profile models[] = {
    {"gpt-4o", "openai", 2200, 350, 900, 250, 2.5e-6, 10e-6},
    {"claude-3-5-sonnet", "anthropic", 3000, 500, 1400, 400, 3e-6, 15e-6},
    {"llama-3.1-70b", "aws.bedrock", 1500, 200, 600, 180, 0.99e-6, 0.99e-6},
    {"gpt-4o-mini", "openai", 900, 150, 700, 200, 0.15e-6, 0.6e-6},
};
#define NMODELS (sizeof models / sizeof models[0])

static const char *const regions[] = {"us-east-1", "eu-west-1", "ap-south-1"};
static const char *const errors[] = {"timeout", "rate_limit", "server_error"};

/* A normal call of pair `pair` at time t; pairs are (service pair / models_per_service, model
 * pair % models_per_service). */
static void make_event(sn_event *ev, unsigned pair, unsigned models_per_service, int64_t t)
{
    const model_profile *mp = &models[(pair % models_per_service) % NMODELS];
    sn_event_init(ev);
    snprintf(ev->service, sizeof ev->service, "svc-%05u", pair / models_per_service);
    if (pair % models_per_service < NMODELS)
        snprintf(ev->model, sizeof ev->model, "%s", mp->name);
    else
        snprintf(ev->model, sizeof ev->model, "%s-ft%u", mp->name, pair % models_per_service);
    snprintf(ev->provider, sizeof ev->provider, "%s", mp->provider);
    snprintf(ev->operation, sizeof ev->operation, "chat");
    snprintf(ev->region, sizeof ev->region, "%s", regions[pair % 3]);
    snprintf(ev->service_version, sizeof ev->service_version, "1.4.%u", pair % 7);
    snprintf(ev->pod, sizeof ev->pod, "pod-%u-%c", pair % 50,
             (char)('a' + sn_test_rand_u64(&rng) % 4));
    snprintf(ev->user, sizeof ev->user, "user-%u", (unsigned)(sn_test_rand_u64(&rng) % 1000));
    uint64_t a = sn_test_rand_u64(&rng), b = sn_test_rand_u64(&rng), c = sn_test_rand_u64(&rng);
    memcpy(ev->trace_id, &a, 8);
    memcpy(ev->trace_id + 8, &b, 8);
    memcpy(ev->span_id, &c, 8);
    ev->latency_ms = mp->latency_ms * exp(0.3 * sn_test_rand_normal(&rng));
    ev->ttft_ms = mp->ttft_ms * exp(0.3 * sn_test_rand_normal(&rng));
    ev->start_unix_nano = t - (int64_t)(ev->latency_ms * 1e6);
    ev->end_unix_nano = t;
    ev->input_tokens = (int64_t)(mp->input * exp(0.4 * sn_test_rand_normal(&rng))) + 1;
    ev->output_tokens = (int64_t)(mp->output * exp(0.4 * sn_test_rand_normal(&rng))) + 1;
    ev->total_tokens = ev->input_tokens + ev->output_tokens;
    ev->cost_usd =
        (double)ev->input_tokens * mp->in_price + (double)ev->output_tokens * mp->out_price;
    ev->cost_source = SN_COST_PRICE_TABLE;
    ev->conventions = SN_CONV_GENAI;
    ev->is_error = sn_test_rand_unit(&rng) < 0.01;
    if (ev->is_error)
        snprintf(ev->error_type, sizeof ev->error_type, "%s", errors[sn_test_rand_u64(&rng) % 3]);
    snprintf(ev->finish_reason, sizeof ev->finish_reason, "%s",
             ev->is_error                    ? ""
             : sn_test_rand_unit(&rng) < 0.9 ? "stop"
                                             : "length");
}

static unsigned long long emitted;
static bool flat_batches; /* --flat: seal flat events instead of groups */

/* Orders events by resource, then by their place in the batch (a stable sort). */
typedef struct ordered {
    const sn_event *ev;
    unsigned i;
} ordered;

static bool same_resource(const sn_event *a, const sn_event *b)
{
    return strcmp(a->service, b->service) == 0 && strcmp(a->region, b->region) == 0 &&
           strcmp(a->service_version, b->service_version) == 0 && strcmp(a->pod, b->pod) == 0;
}

static int cmp_resource(const void *a, const void *b)
{
    const ordered *x = a, *y = b;
    int c = strcmp(x->ev->service, y->ev->service);
    if (c == 0)
        c = strcmp(x->ev->region, y->ev->region);
    if (c == 0)
        c = strcmp(x->ev->service_version, y->ev->service_version);
    if (c == 0)
        c = strcmp(x->ev->pod, y->ev->pod);
    return c != 0 ? c : (x->i > y->i) - (x->i < y->i);
}

static void count(const sn_anomaly *an, void *ud)
{
    (void)an;
    (void)ud;
    emitted++;
}

/* An engine with the defaults, sized for `pairs` pairs of eight keys (the budget an operator
 * would give it). */
static sn_engine *make_engine(unsigned pairs)
{
    sn_engine_config c;
    sn_engine_config_defaults(&c);
    c.memory_budget = (int64_t)pairs * 8 * 2560 + ((int64_t)64 << 20);
    if (pairs > c.max_pairs)
        c.max_pairs = pairs;
    sn_engine *e = NULL;
    sn_config_error err = {{0}};
    if (sn_engine_create(&e, &c, 7, &err) != 0)
        die(err.msg);
    return e;
}

typedef struct request {
    uint8_t *bytes;
    size_t len;
} request;

typedef struct scenario {
    const char *name;
    unsigned pairs, models_per_service;
    sn_engine *engine;
    sn_ingest_decoder *dec;
    request ring[RING_MAX];
    unsigned nring;
    size_t raw_bytes, zstd_bytes;
    size_t groups; /* resource runs over the ring (groups when sealed with groups) */
    int64_t t0;    /* time of the ring's first event */
    int64_t span;  /* time the ring covers */
    int64_t shift;
} scenario;

/* Encodes the ring of requests (the sidecar's encoder, zstd level 3) with events from time t0,
 * `step` ns apart, over random pairs. */
static void build_ring(scenario *s, int64_t t0, int64_t step)
{
    sn_batch_config bc;
    sn_batch_config_init(&bc);
    bc.max_events = BATCH;
    sn_batch_encoder *enc = NULL;
    char err[256];
    if (sn_batch_encoder_create(&bc, &enc, err, sizeof err) != 0)
        die(err);
    sn_event *evs = malloc(BATCH * sizeof *evs);
    ordered *ord = malloc(BATCH * sizeof *ord);
    size_t rec_cap = sn_batch_grouped_record_bound(BATCH);
    uint8_t *rec = malloc(rec_cap);
    if (evs == NULL || ord == NULL || rec == NULL)
        die("out of memory");
    int64_t t = t0;
    for (unsigned r = 0; r < s->nring; r++) {
        for (unsigned i = 0; i < BATCH; i++) {
            make_event(&evs[i], (unsigned)(sn_test_rand_u64(&rng) % s->pairs),
                       s->models_per_service, t);
            ord[i] = (ordered){&evs[i], i};
            t += step;
        }
        /* The journal record of the batch, as the sidecar writes it: runs of one resource. */
        qsort(ord, BATCH, sizeof *ord, cmp_resource);
        sn_batch_grouper g;
        sn_batch_grouper_init(&g);
        size_t rec_len = 0;
        for (unsigned i = 0; i < BATCH; i++) {
            if (sn_batch_append_grouped_event(&g, ord[i].ev, rec, rec_cap, &rec_len) != 0)
                die("cannot build a record");
            if (i + 1 == BATCH || !same_resource(ord[i].ev, ord[i + 1].ev))
                s->groups++; /* a run ends here */
        }
        if (sn_batch_grouper_close(&g, rec, &rec_len) != 0)
            die("cannot close a record");
        sn_batch b = {.sidecar_id = "bench-pod/0123abcd",
                      .sequence = r + 1,
                      .records = rec,
                      .records_len = rec_len,
                      .n_record_events = BATCH,
                      .groups = !flat_batches,
                      .created_unix_nano = t};
        const uint8_t *out;
        size_t len, raw;
        if (sn_batch_encode(enc, &b, &out, &len, &raw, err, sizeof err) != 0)
            die(err);
        s->ring[r].bytes = malloc(len);
        if (s->ring[r].bytes == NULL)
            die("out of memory");
        memcpy(s->ring[r].bytes, out, len);
        s->ring[r].len = len;
        s->raw_bytes += raw;
        s->zstd_bytes += len;
    }
    s->t0 = t0;
    s->span = t - t0;
    free(rec);
    free(ord);
    free(evs);
    sn_batch_encoder_destroy(enc);
}

/* nb requests from the ring through decode and the engine. Returns the events applied. */
static uint64_t run_batches(scenario *s, unsigned nb)
{
    uint64_t n = 0;
    for (unsigned k = 0; k < nb; k++) {
        unsigned r = k % s->nring;
        if (r == 0 && k > 0)
            s->shift += s->span;
        const sn_ingest_batch *b;
        char err[256];
        if (sn_ingest_decoder_decode(s->dec, s->ring[r].bytes, s->ring[r].len, &b, NULL, err,
                                     sizeof err) != 0)
            die(err);
        sn_event *evs = (sn_event *)b->events; /* the decoder's array, ours until the next call */
        for (size_t i = 0; i < b->nevents; i++)
            evs[i].end_unix_nano += s->shift;
        sn_engine_observe_batch(s->engine, evs, b->nevents, count, NULL); /* as the service */
        n += b->nevents;
    }
    /* the next call starts a new replay of the ring */
    s->shift += s->span;
    return n;
}

/* The timed work (run_batches), not inlined so that callgrind can count it alone, without the
 * warm-up: valgrind --tool=callgrind --toggle-collect=timed_batches. */
__attribute__((noinline)) static uint64_t timed_batches(scenario *s, unsigned nb)
{
    return run_batches(s, nb);
}

static void scenario_init(scenario *s, const char *name, unsigned pairs, unsigned mps,
                          unsigned nring, unsigned warm_per_pair)
{
    memset(s, 0, sizeof *s);
    s->nring = nring;
    s->name = name;
    s->pairs = pairs;
    s->models_per_service = mps;
    s->engine = make_engine(pairs);
    sn_ingest_config ic;
    sn_ingest_config_init(&ic);
    char err[256];
    if (sn_ingest_decoder_create(&ic, &s->dec, err, sizeof err) != 0)
        die(err);
    /* 1000 calls/s in all, as in engine_bench: the error and throughput windows see traffic */
    int64_t step = SEC / 1000;
    build_ring(s, INT64_C(1767225600) * SEC, step);
    /* warm every key past its warm-up (default 100 samples) by replaying the ring */
    uint64_t want = (uint64_t)warm_per_pair * pairs, done = 0;
    while (done < want)
        done += run_batches(s, s->nring);
}

static void scenario_free(scenario *s)
{
    for (unsigned r = 0; r < s->nring; r++)
        free(s->ring[r].bytes);
    sn_ingest_decoder_destroy(s->dec);
    sn_engine_destroy(s->engine);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of `runs` timed runs of about `events` events each. */
static void throughput(scenario *s, unsigned runs, unsigned events)
{
    unsigned nb = (events + BATCH - 1) / BATCH;
    double rate[MAX_RUNS];
    unsigned long long anomalies = 0, total = 0;
    for (unsigned r = 0; r < runs; r++) {
        emitted = 0;
        double t0 = cpu_s();
        uint64_t n = timed_batches(s, nb);
        double dt = cpu_s() - t0;
        rate[r] = (double)n / dt;
        anomalies += emitted;
        total += n;
    }
    sn_engine_stats st;
    sn_engine_get_stats(s->engine, &st);
    qsort(rate, runs, sizeof rate[0], cmp_double);
    printf("ingest %-5s pairs=%-6u keys=%-7llu runs=%u events/run=%u  median %.0f events/s per "
           "CPU-second (%.0f ns/event; min %.0f max %.0f)  anomalies %.3f%%  zstd %.1f B/event "
           "(raw %.1f)  %s, %.1f events per resource run\n",
           s->name, s->pairs, (unsigned long long)st.keys, runs, nb * BATCH, rate[runs / 2],
           1e9 / rate[runs / 2], rate[0], rate[runs - 1], 100.0 * (double)anomalies / (double)total,
           (double)s->zstd_bytes / (s->nring * BATCH), (double)s->raw_bytes / (s->nring * BATCH),
           flat_batches ? "flat" : "groups", (double)(s->nring * BATCH) / (double)s->groups);
}

/* Resident bytes of this process (/proc/self/statm), or 0 when unknown. */
static double rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0.0;
    unsigned long long size = 0, res = 0;
    int got = fscanf(f, "%llu %llu", &size, &res);
    fclose(f);
    return got == 2 ? (double)res * (double)sysconf(_SC_PAGESIZE) : 0.0;
}

/* Bytes per baseline key with `keys` keys (keys / 8 pairs, one event each creates a pair's eight
 * keys): the engine's accounting and the RSS growth. */
static void memory(unsigned keys)
{
    unsigned pairs = keys / 8;
    double rss0 = rss_bytes();
    sn_engine *e = make_engine(pairs);
    sn_engine_stats st0;
    sn_engine_get_stats(e, &st0);
    sn_event ev;
    int64_t t = INT64_C(1767225600) * SEC;
    for (unsigned i = 0; i < pairs; i++) {
        make_event(&ev, i, 4, t);
        sn_engine_observe(e, &ev, NULL, NULL);
    }
    double rss1 = rss_bytes();
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    double k = (double)st.keys;
    printf("memory keys=%-8llu accounted %.0f bytes/key all in (%.0f without the fixed %llu); "
           "RSS growth %.0f bytes/key  evictions=%llu\n",
           (unsigned long long)st.keys, (double)st.bytes / k, (double)(st.bytes - st0.bytes) / k,
           (unsigned long long)st0.bytes, (rss1 - rss0) / k, (unsigned long long)st.evictions);
    sn_engine_destroy(e);
}

static unsigned parse_uint(const char *s, unsigned lo, unsigned hi)
{
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi)
        die("bad number");
    return (unsigned)v;
}

int main(int argc, char **argv)
{
    bool quick = false, mem = false;
    unsigned runs = 5, events = 1000000, keys = 0;
    const char *which = "all";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--flat") == 0) {
            flat_batches = true;
        } else if (strcmp(argv[i], "--memory") == 0) {
            mem = true;
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = parse_uint(argv[++i], 1, MAX_RUNS);
        } else if (strcmp(argv[i], "--events") == 0 && i + 1 < argc) {
            events = parse_uint(argv[++i], BATCH, 1000000000);
        } else if (strcmp(argv[i], "--keys") == 0 && i + 1 < argc) {
            keys = parse_uint(argv[++i], 8, 100000000);
        } else if (strcmp(argv[i], "--scenario") == 0 && i + 1 < argc) {
            which = argv[++i];
        } else {
            fprintf(stderr, "usage: sentinel-bench-ingest [--quick] [--runs N] [--events N] "
                            "[--scenario few|many|all] [--memory] "
                            "[--keys N] [--flat]\n");
            return 2;
        }
    }
    if (quick) {
        runs = 1;
        events = 20 * BATCH;
    }
    if (mem) {
        if (keys > 0) {
            memory(keys);
        } else {
            memory(1000);
            memory(100000);
            if (!quick)
                memory(1000000);
        }
        return 0;
    }
    if (strcmp(which, "few") == 0 || strcmp(which, "all") == 0) {
        scenario s;
        scenario_init(&s, "few", 9, 3, 64, quick ? 200 : 400);
        throughput(&s, runs, events);
        scenario_free(&s);
    }
    if (strcmp(which, "many") == 0 || strcmp(which, "all") == 0) {
        scenario s;
        scenario_init(&s, "many", 12500, 4, quick ? 64 : RING_MAX, quick ? 2 : 120);
        throughput(&s, runs, events);
        scenario_free(&s);
    }
    if (quick) {
        memory(1000);
        memory(100000);
    }
    return 0;
}
