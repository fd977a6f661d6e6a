/*
 * ingest_grpc_bench.c -- sentinel-bench-ingest-grpc: sidecar-like clients shipping batches to a
 * running aggregator's gRPC Ingest service, for the aggregator's memory and throughput under
 * many connections (docs/benchmarks.md, "aggregator gRPC read buffers").
 *
 *   sentinel-bench-ingest-grpc --target HOST:PORT [--clients N] [--events N] [--seconds S]
 *                              [--batches N] [--zstd-level L]
 *
 * Each client is what a sidecar's shipper is to the aggregator: a connection of its own (a
 * channel with a local subchannel pool, so no two clients share a connection), a sidecar id of
 * its own, one Ingest call in flight at a time with sequences 1, 2, ... Every batch holds
 * --events events (default 2000, the sidecar's batch.max_events) as the sidecar seals them:
 * journal records of event groups (one per resource run), zstd at the sidecar's default level
 * (-2, raw literals), COMPRESSION_ZSTD_GROUPS. The events are built once (realistic LLM calls of
 * 16 services x 4 models; ids random) and re-sealed for every call with the client's id and next
 * sequence, so the aggregator decodes and applies every batch (no DUPLICATE); their times are
 * the start of the run (the engine sees the same times again: a transport benchmark).
 *
 * Runs until --seconds (default 10, at most 600) pass or each client sent --batches batches,
 * then waits for the calls in flight. RETRY_AFTER and transport refusals are counted and the
 * same batch is sent again. One line on stdout:
 *   clients=N events_per_batch=N batch_bytes=N ok=N retry=N failed=N seconds=S batches_per_s=R
 *   events_per_s=R mib_per_s=R
 * Loopback targets only. Threads: one (a completion queue; the encoder runs between calls).
 * Exit status: 0 when at least one batch was acknowledged and none failed, 1 otherwise, 2 on bad
 * usage.
 */
#include "batch.h"
#include "event.h"
#include "sentinel/v1/sentinel.pb-c.h"

#include "test_rand.h"
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <grpc/grpc_security.h>
#pragma GCC diagnostic pop
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#define MAX_CLIENTS 1024
#define MAX_EVENTS  100000
#define METHOD      "/sentinel.v1.Aggregator/Ingest"

typedef struct client {
    grpc_channel *ch;
    grpc_call *call;
    char id[64];
    uint64_t seq;  /* of the batch in flight or next */
    uint64_t sent; /* batches acknowledged */
    bool busy;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code status;
    grpc_slice details;
} client;

static sn_test_rand rng = {0x9e3779b97f4a7c15ull};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "sentinel-bench-ingest-grpc: %s\n", what);
    exit(1);
}

static const char *const model_names[] = {"gpt-4o", "claude-3-5-sonnet", "llama-3.1-70b",
                                          "gpt-4o-mini"};
static const double model_latency[] = {2200, 3000, 1500, 900};

/* Event i of a batch: service i / 4 % 16 (runs of one resource), model i % 4, at time t. */
static void make_event(sn_event *ev, unsigned i, int64_t t)
{
    unsigned m = i % 4;
    sn_event_init(ev);
    snprintf(ev->service, sizeof ev->service, "svc-%02u", (i / 64) % 16);
    snprintf(ev->model, sizeof ev->model, "%s", model_names[m]);
    snprintf(ev->provider, sizeof ev->provider, "%s", m == 1 ? "anthropic" : "openai");
    snprintf(ev->operation, sizeof ev->operation, "chat");
    snprintf(ev->region, sizeof ev->region, "us-east-1");
    snprintf(ev->service_version, sizeof ev->service_version, "1.4.2");
    snprintf(ev->pod, sizeof ev->pod, "pod-%02u", (i / 64) % 16);
    snprintf(ev->user, sizeof ev->user, "user-%u", (unsigned)(sn_test_rand_u64(&rng) % 1000));
    uint64_t a = sn_test_rand_u64(&rng), b = sn_test_rand_u64(&rng), c = sn_test_rand_u64(&rng);
    memcpy(ev->trace_id, &a, 8);
    memcpy(ev->trace_id + 8, &b, 8);
    memcpy(ev->span_id, &c, 8);
    ev->latency_ms = model_latency[m] * exp(0.3 * sn_test_rand_normal(&rng));
    ev->ttft_ms = ev->latency_ms / 6.0;
    ev->start_unix_nano = t - (int64_t)(ev->latency_ms * 1e6);
    ev->end_unix_nano = t;
    ev->input_tokens = (int64_t)(800 * exp(0.4 * sn_test_rand_normal(&rng))) + 1;
    ev->output_tokens = (int64_t)(220 * exp(0.4 * sn_test_rand_normal(&rng))) + 1;
    ev->total_tokens = ev->input_tokens + ev->output_tokens;
    ev->cost_usd = (double)ev->input_tokens * 2.5e-6 + (double)ev->output_tokens * 10e-6;
    ev->cost_source = SN_COST_PRICE_TABLE;
    ev->conventions = SN_CONV_GENAI;
    ev->is_error = sn_test_rand_unit(&rng) < 0.01;
    if (ev->is_error)
        snprintf(ev->error_type, sizeof ev->error_type, "timeout");
    snprintf(ev->finish_reason, sizeof ev->finish_reason, "%s", ev->is_error ? "" : "stop");
}

/* The journal record of n events as the sidecar writes it (groups of one resource each).
 * Returns a malloc'd record (the caller frees) and sets *len. */
static uint8_t *make_record(size_t n, size_t *len)
{
    sn_event *evs = malloc(n * sizeof *evs);
    size_t cap = sn_batch_grouped_record_bound(n);
    uint8_t *rec = malloc(cap);
    if (evs == NULL || rec == NULL)
        die("out of memory");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - (int64_t)n * 1000000;
    for (size_t i = 0; i < n; i++)
        make_event(&evs[i], (unsigned)i, t + (int64_t)i * 1000000);
    sn_batch_grouper g;
    sn_batch_grouper_init(&g);
    *len = 0;
    for (size_t i = 0; i < n; i++)
        if (sn_batch_append_grouped_event(&g, &evs[i], rec, cap, len) != 0)
            die("cannot build a record");
    if (sn_batch_grouper_close(&g, rec, len) != 0)
        die("cannot close a record");
    free(evs);
    return rec;
}

/* Seals c's next batch and starts its call on cq. */
static void start_call(client *c, grpc_completion_queue *cq, sn_batch_encoder *enc,
                       const uint8_t *rec, size_t rec_len, size_t n, size_t *bytes)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sn_batch b = {.sidecar_id = c->id,
                  .sequence = c->seq,
                  .records = rec,
                  .records_len = rec_len,
                  .n_record_events = n,
                  .groups = true,
                  .created_unix_nano = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec};
    const uint8_t *out;
    size_t len, raw;
    char err[256];
    if (sn_batch_encode(enc, &b, &out, &len, &raw, err, sizeof err) != 0)
        die(err);
    *bytes = len;
    grpc_slice sl = grpc_slice_from_copied_buffer((const char *)out, len);
    c->send = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    c->recv = NULL;
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);
    c->details = grpc_empty_slice();
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(30, GPR_TIMESPAN));
    grpc_slice m = grpc_slice_from_static_string(METHOD);
    c->call =
        grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, deadline, NULL);
    if (c->call == NULL)
        die("cannot create a call");
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    if (grpc_call_start_batch(c->call, ops, 6, c, NULL) != GRPC_CALL_OK)
        die("cannot start a call");
    c->busy = true;
}

/* The answer of c's call: 0 acknowledged (OK or DUPLICATE), 1 retry (RETRY_AFTER, UNAVAILABLE,
 * RESOURCE_EXHAUSTED), -1 failed. Frees the call's buffers. */
static int finish_call(client *c)
{
    int rc = -1;
    if (c->status == GRPC_STATUS_UNAVAILABLE || c->status == GRPC_STATUS_RESOURCE_EXHAUSTED)
        rc = 1;
    if (c->status == GRPC_STATUS_OK && c->recv != NULL) {
        grpc_byte_buffer_reader rd;
        if (grpc_byte_buffer_reader_init(&rd, c->recv)) {
            grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
            Sentinel__V1__IngestResponse *resp = sentinel__v1__ingest_response__unpack(
                NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
            if (resp != NULL) {
                if (resp->status == SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_OK ||
                    resp->status == SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_DUPLICATE)
                    rc = 0;
                else if (resp->status == SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_RETRY_AFTER)
                    rc = 1;
                else
                    fprintf(stderr, "sentinel-bench-ingest-grpc: %s: status %d: %s\n", c->id,
                            (int)resp->status, resp->message);
                sentinel__v1__ingest_response__free_unpacked(resp, NULL);
            }
            grpc_slice_unref(all);
            grpc_byte_buffer_reader_destroy(&rd);
        }
    } else if (rc < 0) {
        char *d = grpc_slice_to_c_string(c->details);
        fprintf(stderr, "sentinel-bench-ingest-grpc: %s: gRPC status %d: %s\n", c->id,
                (int)c->status, d);
        gpr_free(d);
    }
    if (c->recv != NULL)
        grpc_byte_buffer_destroy(c->recv);
    grpc_byte_buffer_destroy(c->send);
    grpc_slice_unref(c->details);
    grpc_metadata_array_destroy(&c->initial_md);
    grpc_metadata_array_destroy(&c->trailing_md);
    grpc_call_unref(c->call);
    c->call = NULL;
    c->busy = false;
    return rc;
}

/* Parses a whole number in [lo, hi] or exits with usage status. */
static long parse_num(const char *flag, const char *text, long lo, long hi)
{
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "sentinel-bench-ingest-grpc: %s must be %ld..%ld\n", flag, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *target = NULL;
    long nclients = 16, nevents = 2000, seconds = 10, max_batches = 0, level = -2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            fprintf(stderr, "sentinel-bench-ingest-grpc: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--target") == 0)
            target = v;
        else if (strcmp(a, "--clients") == 0)
            nclients = parse_num(a, v, 1, MAX_CLIENTS);
        else if (strcmp(a, "--events") == 0)
            nevents = parse_num(a, v, 1, MAX_EVENTS);
        else if (strcmp(a, "--seconds") == 0)
            seconds = parse_num(a, v, 1, 600);
        else if (strcmp(a, "--batches") == 0)
            max_batches = parse_num(a, v, 0, 1000000);
        else if (strcmp(a, "--zstd-level") == 0)
            level = parse_num(a, v, SN_BATCH_ZSTD_LEVEL_MIN, 19);
        else {
            fprintf(stderr, "usage: sentinel-bench-ingest-grpc --target HOST:PORT [--clients N] "
                            "[--events N] [--seconds S] [--batches N] [--zstd-level L]\n");
            return 2;
        }
        i++;
    }
    if (target == NULL ||
        (strncmp(target, "127.", 4) != 0 && strncmp(target, "localhost:", 10) != 0 &&
         strncmp(target, "[::1]:", 6) != 0)) {
        fprintf(stderr, "sentinel-bench-ingest-grpc: --target must be a loopback HOST:PORT\n");
        return 2;
    }

    sn_batch_config bc;
    sn_batch_config_init(&bc);
    bc.zstd_level = (int)level;
    bc.zstd_raw_literals = true;
    bc.max_events = (size_t)nevents;
    sn_batch_encoder *enc = NULL;
    char err[256];
    if (sn_batch_encoder_create(&bc, &enc, err, sizeof err) != 0)
        die(err);
    size_t rec_len = 0;
    uint8_t *rec = make_record((size_t)nevents, &rec_len);

    grpc_init();
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    client *cl = calloc((size_t)nclients, sizeof *cl);
    if (cl == NULL)
        die("out of memory");
    grpc_arg args[2] = {
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, .value.integer = 1},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, .value.integer = -1},
    };
    grpc_channel_args chargs = {.num_args = 2, .args = args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    unsigned long long run = (unsigned long long)time(NULL);
    for (long i = 0; i < nclients; i++) {
        cl[i].ch = grpc_channel_create(target, creds, &chargs);
        if (cl[i].ch == NULL)
            die("cannot create a channel");
        snprintf(cl[i].id, sizeof cl[i].id, "bench-%03ld/%llx", i, run);
        cl[i].seq = 1;
    }
    grpc_channel_credentials_release(creds);

    size_t batch_bytes = 0;
    uint64_t ok = 0, retry = 0, failed = 0, wire = 0;
    double t0 = now_s(), deadline = t0 + (double)seconds;
    long busy = 0;
    for (long i = 0; i < nclients; i++) {
        start_call(&cl[i], cq, enc, rec, rec_len, (size_t)nevents, &batch_bytes);
        busy++;
    }
    while (busy > 0) {
        grpc_event ev = grpc_completion_queue_next(
            cq, gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(60, GPR_TIMESPAN)),
            NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            die("no answer within 60 s");
        client *c = ev.tag;
        busy--;
        int rc = finish_call(c);
        if (rc == 0) {
            ok++;
            wire += batch_bytes;
            c->sent++;
            c->seq++;
        } else if (rc > 0) {
            retry++;
        } else {
            failed++;
            continue; /* that client stops */
        }
        if (now_s() < deadline && (max_batches == 0 || c->sent < (uint64_t)max_batches)) {
            start_call(c, cq, enc, rec, rec_len, (size_t)nevents, &batch_bytes);
            busy++;
        }
    }
    double dt = now_s() - t0;
    printf("clients=%ld events_per_batch=%ld batch_bytes=%zu ok=%llu retry=%llu failed=%llu "
           "seconds=%.2f batches_per_s=%.1f events_per_s=%.0f mib_per_s=%.2f\n",
           nclients, nevents, batch_bytes, (unsigned long long)ok, (unsigned long long)retry,
           (unsigned long long)failed, dt, (double)ok / dt, (double)ok * (double)nevents / dt,
           (double)wire / dt / 1048576.0);

    for (long i = 0; i < nclients; i++)
        grpc_channel_destroy(cl[i].ch);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    grpc_shutdown();
    free(cl);
    free(rec);
    sn_batch_encoder_destroy(enc);
    return ok > 0 && failed == 0 ? 0 : 1;
}
