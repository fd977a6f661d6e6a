/* Unit tests for shared/otlp/grpc_server.c: a real server on 127.0.0.1:0, the gRPC C core
 * client API as the client (and libcurl over HTTP/2 for zstd, which this gRPC core cannot
 * send). */
#include "otlp/grpc_server.h"

#include <check.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <grpc/grpc_security.h>
#pragma GCC diagnostic pop
#include <grpc/slice.h>
#include <grpc/support/time.h>

#define TRACES  "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#define METRICS "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
#define LOGS    "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
#define MIB     (1024u * 1024u)

/* ---------------------------------------------------------------- the test handler */

typedef struct seen {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int calls;
    atomic_int inside; /* handlers running now */
    sn_otlp_signal signal;
    sn_otlp_encoding encoding;
    uint8_t *body; /* copy of the last body */
    size_t len;
    sn_otlp_result answer; /* what the handler answers */
    int sleep_ms;
    bool hold; /* block until released */
} seen;

static seen g_seen;
static sn_grpc_server *g_srv;

static void test_handler(sn_otlp_signal signal, sn_otlp_encoding encoding, const uint8_t *body,
                         size_t len, sn_otlp_result *res, void *ud)
{
    seen *s = ud;
    atomic_fetch_add(&s->inside, 1);
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    while (s->hold)
        pthread_cond_wait(&s->cv, &s->mu);
    int sleep_ms = s->sleep_ms;
    pthread_mutex_unlock(&s->mu);
    if (sleep_ms > 0) {
        struct timespec ts = {sleep_ms / 1000, (long)(sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&s->mu);
    s->signal = signal;
    s->encoding = encoding;
    free(s->body);
    s->body = malloc(len ? len : 1);
    memcpy(s->body, body, len);
    s->len = len;
    ck_assert_int_eq(res->outcome, SN_OTLP_OK);
    ck_assert_int_eq(res->rejected, 0);
    *res = s->answer;
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->calls, 1);
    atomic_fetch_sub(&s->inside, 1);
}

static void set_hold(bool hold)
{
    pthread_mutex_lock(&g_seen.mu);
    g_seen.hold = hold;
    pthread_cond_broadcast(&g_seen.cv);
    pthread_mutex_unlock(&g_seen.mu);
}

/* Waits until `n` handlers are running (held), at most 5 s. */
static void wait_inside(int n)
{
    for (int i = 0; i < 500 && atomic_load(&g_seen.inside) < n; i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    ck_assert_int_ge(atomic_load(&g_seen.inside), n);
}

static void start_server(sn_grpc_server_config *cfg)
{
    char err[256];
    cfg->listen = "127.0.0.1:0";
    cfg->handler = test_handler;
    cfg->handler_ud = &g_seen;
    ck_assert_int_eq(sn_grpc_server_create(cfg, &g_srv, err, sizeof err), 0);
    ck_assert_int_gt(sn_grpc_server_port(g_srv), 0);
    ck_assert_int_eq(sn_grpc_server_start(g_srv), 0);
}

static void start_default(void)
{
    sn_grpc_server_config cfg;
    sn_grpc_server_config_init(&cfg);
    start_server(&cfg);
}

static void setup(void)
{
    memset(&g_seen, 0, sizeof g_seen);
    pthread_mutex_init(&g_seen.mu, NULL);
    pthread_cond_init(&g_seen.cv, NULL);
    g_srv = NULL;
    grpc_init(); /* for the test's client side */
}

static void teardown(void)
{
    set_hold(false);
    sn_grpc_server_destroy(g_srv);
    g_srv = NULL;
    grpc_shutdown_blocking();
    free(g_seen.body);
    pthread_cond_destroy(&g_seen.cv);
    pthread_mutex_destroy(&g_seen.mu);
}

/* ---------------------------------------------------------------- a gRPC C core client */

typedef struct reply {
    grpc_status_code status;
    char details[512];
    bool got_message;
    uint8_t *message; /* the response message, malloc'd */
    size_t message_len;
    uint8_t status_bin[1024]; /* grpc-status-details-bin, decoded from base64 by gRPC */
    size_t status_bin_len;
    bool has_status_bin;
} reply;

/* One in-flight call: everything the batch writes into. */
typedef struct pending {
    grpc_call *call;
    grpc_metadata_array initial_md;
    grpc_metadata_array trailing_md;
    grpc_byte_buffer *send;
    grpc_byte_buffer *recv;
    grpc_status_code status;
    grpc_slice details;
} pending;

static grpc_channel *open_channel(grpc_compression_algorithm alg)
{
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", sn_grpc_server_port(g_srv));
    grpc_arg args[1];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_COMPRESSION_CHANNEL_DEFAULT_ALGORITHM;
    args[0].value.integer = (int)alg;
    grpc_channel_args chargs = {1, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, creds, &chargs);
    grpc_channel_credentials_release(creds);
    ck_assert_ptr_nonnull(ch);
    return ch;
}

/* Starts a unary call with `body` on `cq`; the completion carries `tag`. */
static void start_call(grpc_channel *ch, grpc_completion_queue *cq, const char *method,
                       const void *body, size_t len, int timeout_ms, pending *p, void *tag)
{
    memset(p, 0, sizeof *p);
    grpc_slice m = grpc_slice_from_static_string(method);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    p->call =
        grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, deadline, NULL);
    ck_assert_ptr_nonnull(p->call);
    grpc_metadata_array_init(&p->initial_md);
    grpc_metadata_array_init(&p->trailing_md);
    grpc_slice sl = grpc_slice_from_copied_buffer(body, len);
    p->send = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = p->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &p->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &p->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &p->trailing_md;
    ops[5].data.recv_status_on_client.status = &p->status;
    ops[5].data.recv_status_on_client.status_details = &p->details;
    ck_assert_int_eq(grpc_call_start_batch(p->call, ops, 6, tag, NULL), GRPC_CALL_OK);
}

/* Moves a finished call's results into `r` and frees the call. */
static void finish_call(pending *p, reply *r)
{
    memset(r, 0, sizeof *r);
    r->status = p->status;
    size_t dl = GRPC_SLICE_LENGTH(p->details);
    if (dl >= sizeof r->details)
        dl = sizeof r->details - 1;
    memcpy(r->details, GRPC_SLICE_START_PTR(p->details), dl);
    if (p->recv != NULL) {
        r->got_message = true;
        grpc_byte_buffer_reader rd;
        ck_assert(grpc_byte_buffer_reader_init(&rd, p->recv));
        grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
        r->message_len = GRPC_SLICE_LENGTH(all);
        r->message = malloc(r->message_len + 1);
        memcpy(r->message, GRPC_SLICE_START_PTR(all), r->message_len);
        grpc_slice_unref(all);
        grpc_byte_buffer_reader_destroy(&rd);
        grpc_byte_buffer_destroy(p->recv);
    }
    for (size_t i = 0; i < p->trailing_md.count; i++) {
        if (grpc_slice_str_cmp(p->trailing_md.metadata[i].key, "grpc-status-details-bin") == 0) {
            size_t n = GRPC_SLICE_LENGTH(p->trailing_md.metadata[i].value);
            ck_assert_uint_le(n, sizeof r->status_bin);
            memcpy(r->status_bin, GRPC_SLICE_START_PTR(p->trailing_md.metadata[i].value), n);
            r->status_bin_len = n;
            r->has_status_bin = true;
        }
    }
    grpc_slice_unref(p->details);
    grpc_byte_buffer_destroy(p->send);
    grpc_metadata_array_destroy(&p->initial_md);
    grpc_metadata_array_destroy(&p->trailing_md);
    grpc_call_unref(p->call);
}

static void drain_and_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
}

/* Makes one call on a fresh channel and waits for its answer. */
static void rpc(const char *method, const void *body, size_t len, grpc_compression_algorithm alg,
                reply *r)
{
    grpc_channel *ch = open_channel(alg);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    pending p;
    start_call(ch, cq, method, body, len, 10000, &p, &p);
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    ck_assert_int_eq(ev.type, GRPC_OP_COMPLETE);
    ck_assert_ptr_eq(ev.tag, &p);
    finish_call(&p, r);
    grpc_channel_destroy(ch);
    drain_and_destroy(cq);
}

/* ---------------------------------------------------------------- protobuf reading */

typedef struct pbr {
    const uint8_t *p;
    size_t len;
    size_t pos;
} pbr;

static uint64_t pbr_varint(pbr *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        ck_assert_uint_lt(r->pos, r->len);
        uint8_t b = r->p[r->pos++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    ck_abort_msg("varint too long");
    return 0;
}

/* Reads the next field; varints go to *v, length-delimited ones to *sub. Returns the field
 * number, 0 at the end. */
static uint32_t pbr_next(pbr *r, uint64_t *v, pbr *sub)
{
    if (r->pos >= r->len)
        return 0;
    uint64_t key = pbr_varint(r);
    if ((key & 7) == 0) {
        *v = pbr_varint(r);
    } else {
        ck_assert_uint_eq(key & 7, 2);
        uint64_t n = pbr_varint(r);
        ck_assert_uint_le(n, r->len - r->pos);
        sub->p = r->p + r->pos;
        sub->len = (size_t)n;
        sub->pos = 0;
        r->pos += (size_t)n;
    }
    return (uint32_t)(key >> 3);
}

/* Decodes google.rpc.Status with one RetryInfo detail: code, message and delay in ms. */
static void decode_status(const reply *r, int *code, char *msg, size_t msglen, int64_t *delay_ms)
{
    pbr st = {r->status_bin, r->status_bin_len, 0}, sub;
    uint64_t v = 0;
    uint32_t f;
    *code = 0;
    msg[0] = '\0';
    *delay_ms = -1;
    while ((f = pbr_next(&st, &v, &sub)) != 0) {
        if (f == 1) {
            *code = (int)v;
        } else if (f == 2) {
            snprintf(msg, msglen, "%.*s", (int)sub.len, (const char *)sub.p);
        } else if (f == 3) {
            pbr any = sub, val = {NULL, 0, 0}, url = {NULL, 0, 0}, part;
            while ((f = pbr_next(&any, &v, &part)) != 0) {
                if (f == 1)
                    url = part;
                else if (f == 2)
                    val = part;
            }
            ck_assert_int_eq((int)url.len, 40);
            ck_assert(memcmp(url.p, "type.googleapis.com/google.rpc.RetryInfo", 40) == 0);
            pbr dur = {NULL, 0, 0};
            while ((f = pbr_next(&val, &v, &part)) != 0)
                if (f == 1)
                    dur = part;
            int64_t secs = 0, nanos = 0;
            while ((f = pbr_next(&dur, &v, &part)) != 0) {
                if (f == 1)
                    secs = (int64_t)v;
                else if (f == 2)
                    nanos = (int64_t)v;
            }
            *delay_ms = secs * 1000 + nanos / 1000000;
        }
    }
}

static void free_reply(reply *r)
{
    free(r->message);
    r->message = NULL;
}

static uint8_t *pattern(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 7 + i / 251) & 0xff);
    return p;
}

/* ---------------------------------------------------------------- tests */

START_TEST(ok_passes_exact_bytes_and_answers_empty)
{
    start_default();
    static const char *const methods[3] = {TRACES, METRICS, LOGS};
    for (int sig = 0; sig < 3; sig++) {
        size_t n = 1000 + (size_t)sig * 70000; /* up to several HTTP/2 frames */
        uint8_t *body = pattern(n);
        reply r;
        rpc(methods[sig], body, n, GRPC_COMPRESS_NONE, &r);
        ck_assert_int_eq(r.status, GRPC_STATUS_OK);
        ck_assert(r.got_message);
        ck_assert_uint_eq(r.message_len, 0); /* an empty Export*ServiceResponse */
        ck_assert_int_eq(g_seen.signal, sig);
        ck_assert_int_eq(g_seen.encoding, SN_OTLP_PROTOBUF);
        ck_assert_uint_eq(g_seen.len, n);
        ck_assert(memcmp(g_seen.body, body, n) == 0);
        free_reply(&r);
        free(body);
    }
    /* An empty request is a valid (empty) protobuf message. */
    reply r;
    rpc(TRACES, "", 0, GRPC_COMPRESS_NONE, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_OK);
    ck_assert_uint_eq(g_seen.len, 0);
    free_reply(&r);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 4);
    sn_grpc_server_stats st;
    sn_grpc_server_stats_get(g_srv, &st);
    ck_assert_uint_eq(st.requests[SN_OTLP_TRACES], 2);
    ck_assert_uint_eq(st.requests[SN_OTLP_METRICS], 1);
    ck_assert_uint_eq(st.outcomes[SN_OTLP_OK], 4);
}
END_TEST

START_TEST(partial_success_carries_count_and_message)
{
    start_default();
    g_seen.answer.outcome = SN_OTLP_OK;
    g_seen.answer.rejected = 300;
    snprintf(g_seen.answer.message, sizeof g_seen.answer.message, "3 spans had no trace id");
    reply r;
    rpc(METRICS, "abc", 3, GRPC_COMPRESS_NONE, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_OK);
    ck_assert(r.got_message);
    /* Export*ServiceResponse{partial_success(1){rejected(1), error_message(2)}} */
    pbr top = {r.message, r.message_len, 0}, ps, s2;
    uint64_t v;
    ck_assert_uint_eq(pbr_next(&top, &v, &ps), 1);
    ck_assert_uint_eq(pbr_next(&top, &v, &s2), 0);
    int64_t rejected = -1;
    char msg[128] = "";
    uint32_t f;
    while ((f = pbr_next(&ps, &v, &s2)) != 0) {
        if (f == 1)
            rejected = (int64_t)v;
        else if (f == 2)
            snprintf(msg, sizeof msg, "%.*s", (int)s2.len, (const char *)s2.p);
    }
    ck_assert_int_eq(rejected, 300);
    ck_assert_str_eq(msg, "3 spans had no trace id");
    free_reply(&r);
}
END_TEST

START_TEST(invalid_maps_to_invalid_argument)
{
    start_default();
    g_seen.answer.outcome = SN_OTLP_INVALID;
    snprintf(g_seen.answer.message, sizeof g_seen.answer.message, "bad span at offset 12");
    reply r;
    rpc(TRACES, "xyz", 3, GRPC_COMPRESS_NONE, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_INVALID_ARGUMENT);
    ck_assert_str_eq(r.details, "bad span at offset 12");
    ck_assert(!r.has_status_bin);
    free_reply(&r);
}
END_TEST

START_TEST(retry_carries_retry_info)
{
    start_default();
    g_seen.answer.outcome = SN_OTLP_RETRY;
    g_seen.answer.retry_after_ms = 2500;
    snprintf(g_seen.answer.message, sizeof g_seen.answer.message, "queue full");
    reply r;
    rpc(TRACES, "x", 1, GRPC_COMPRESS_NONE, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_UNAVAILABLE);
    ck_assert_str_eq(r.details, "queue full");
    ck_assert(r.has_status_bin);
    int code;
    char msg[64];
    int64_t delay;
    decode_status(&r, &code, msg, sizeof msg, &delay);
    ck_assert_int_eq(code, GRPC_STATUS_UNAVAILABLE);
    ck_assert_str_eq(msg, "queue full");
    ck_assert_int_eq(delay, 2500);
    free_reply(&r);

    /* Rate limited: RESOURCE_EXHAUSTED with RetryInfo; 0 ms takes the configured default. */
    g_seen.answer.outcome = SN_OTLP_RESOURCE_RETRY;
    g_seen.answer.retry_after_ms = 0;
    rpc(LOGS, "x", 1, GRPC_COMPRESS_NONE, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    decode_status(&r, &code, msg, sizeof msg, &delay);
    ck_assert_int_eq(code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    ck_assert_int_eq(delay, SN_GRPC_DEFAULT_RETRY_MS);
    free_reply(&r);

    /* Too large (handler's verdict): RESOURCE_EXHAUSTED without RetryInfo. */
    g_seen.answer.outcome = SN_OTLP_TOO_LARGE;
    g_seen.answer.message[0] = '\0';
    rpc(LOGS, "x", 1, GRPC_COMPRESS_NONE, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    ck_assert(!r.has_status_bin);
    free_reply(&r);

    g_seen.answer.outcome = SN_OTLP_INTERNAL;
    rpc(LOGS, "x", 1, GRPC_COMPRESS_NONE, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_INTERNAL);
    free_reply(&r);
}
END_TEST

START_TEST(unknown_method_is_unimplemented)
{
    start_default();
    reply r;
    rpc("/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export", "x", 1,
        GRPC_COMPRESS_NONE, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_UNIMPLEMENTED);
    free_reply(&r);
    rpc("/sentinel.v1.Aggregator/Push", "x", 1, GRPC_COMPRESS_NONE, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_UNIMPLEMENTED);
    free_reply(&r);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 0);
    sn_grpc_server_stats st;
    sn_grpc_server_stats_get(g_srv, &st);
    ck_assert_uint_eq(st.unimplemented, 2);
}
END_TEST

START_TEST(gzip_and_deflate_arrive_decompressed)
{
    start_default();
    size_t n = 300000;
    uint8_t *body = malloc(n);
    for (size_t i = 0; i < n; i++)
        body[i] = (uint8_t)("gen_ai.usage.input_tokens"[i % 25]);
    grpc_compression_algorithm algs[2] = {GRPC_COMPRESS_GZIP, GRPC_COMPRESS_DEFLATE};
    for (int i = 0; i < 2; i++) {
        reply r;
        rpc(TRACES, body, n, algs[i], &r);
        ck_assert_int_eq(r.status, GRPC_STATUS_OK);
        ck_assert_uint_eq(g_seen.len, n);
        ck_assert(memcmp(g_seen.body, body, n) == 0);
        free_reply(&r);
    }
    free(body);
}
END_TEST

START_TEST(oversize_is_refused_before_the_handler)
{
    sn_grpc_server_config cfg;
    sn_grpc_server_config_init(&cfg);
    cfg.max_message_bytes = 1 * MIB;
    start_server(&cfg);
    uint8_t *body = calloc(1, MIB + 1);
    reply r;
    /* Raw: refused by gRPC's own receive limit. */
    rpc(TRACES, body, MIB + 1, GRPC_COMPRESS_NONE, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    free_reply(&r);
    /* gzip: a few KiB on the wire, over the limit once inflated. */
    rpc(TRACES, body, MIB + 1, GRPC_COMPRESS_GZIP, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    ck_assert(!r.has_status_bin); /* not retryable */
    free_reply(&r);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 0);
    /* Exactly at the limit is fine. */
    rpc(TRACES, body, MIB, GRPC_COMPRESS_GZIP, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_OK);
    ck_assert_uint_eq(g_seen.len, MIB);
    free_reply(&r);
    free(body);
}
END_TEST

START_TEST(gzip_bomb_over_default_limit_is_refused)
{
    start_default(); /* 16 MiB */
    size_t n = 20 * MIB;
    uint8_t *zeros = calloc(1, n);
    reply r;
    rpc(LOGS, zeros, n, GRPC_COMPRESS_GZIP, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    free_reply(&r);
    free(zeros);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 0);
    sn_grpc_server_stats st;
    sn_grpc_server_stats_get(g_srv, &st);
    ck_assert_uint_eq(st.refused_too_large, 1);
}
END_TEST

/* ---- zstd over raw HTTP/2 (libcurl), since this gRPC core cannot compress with zstd */

typedef struct h2reply {
    int grpc_status;
    char grpc_message[256];
    size_t body_len;
} h2reply;

static size_t h2_header(char *line, size_t size, size_t n, void *ud)
{
    h2reply *r = ud;
    size_t len = size * n;
    if (len > 13 && strncmp(line, "grpc-status: ", 13) == 0)
        r->grpc_status = (int)strtol(line + 13, NULL, 10);
    if (len > 14 && strncmp(line, "grpc-message: ", 14) == 0)
        snprintf(r->grpc_message, sizeof r->grpc_message, "%.*s", (int)(len - 16), line + 14);
    return len;
}

static size_t h2_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    ((h2reply *)ud)->body_len += size * n;
    return size * n;
}

/* POSTs one gRPC message (5-byte prefix with the compressed flag) with `encoding`. */
static void h2_post(const char *method, const char *encoding, const uint8_t *msg, size_t len,
                    bool compressed_flag, h2reply *r)
{
    memset(r, 0, sizeof *r);
    r->grpc_status = -1;
    uint8_t *framed = malloc(len + 5);
    framed[0] = compressed_flag ? 1 : 0;
    framed[1] = (uint8_t)(len >> 24);
    framed[2] = (uint8_t)(len >> 16);
    framed[3] = (uint8_t)(len >> 8);
    framed[4] = (uint8_t)len;
    memcpy(framed + 5, msg, len);
    char url[256], enc[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", sn_grpc_server_port(g_srv), method);
    snprintf(enc, sizeof enc, "grpc-encoding: %s", encoding);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "content-type: application/grpc");
    h = curl_slist_append(h, "te: trailers");
    h = curl_slist_append(h, enc);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, framed);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(len + 5));
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, h2_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h2_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(framed);
}

START_TEST(zstd_arrives_decompressed)
{
    start_default();
    size_t n = 200000;
    uint8_t *body = malloc(n);
    for (size_t i = 0; i < n; i++)
        body[i] = (uint8_t)("llm.token_count.prompt"[i % 22]);
    size_t cap = ZSTD_compressBound(n);
    uint8_t *z = malloc(cap);
    size_t zl = ZSTD_compress(z, cap, body, n, 3);
    ck_assert(!ZSTD_isError(zl));
    h2reply r;
    h2_post(TRACES, "zstd", z, zl, true, &r);
    ck_assert_int_eq(r.grpc_status, 0);
    ck_assert_uint_eq(r.body_len, 5); /* one empty message */
    ck_assert_uint_eq(g_seen.len, n);
    ck_assert(memcmp(g_seen.body, body, n) == 0);
    /* Plain gRPC over the same path still works (and is not mistaken for zstd). */
    h2_post(TRACES, "identity", body, 1000, false, &r);
    ck_assert_int_eq(r.grpc_status, 0);
    ck_assert_uint_eq(g_seen.len, 1000);
    ck_assert(memcmp(g_seen.body, body, 1000) == 0);
    free(z);
    free(body);
}
END_TEST

START_TEST(zstd_bomb_is_refused)
{
    start_default();
    size_t n = 20 * MIB;
    uint8_t *zeros = calloc(1, n);
    size_t cap = ZSTD_compressBound(n);
    uint8_t *z = malloc(cap);
    size_t zl = ZSTD_compress(z, cap, zeros, n, 1);
    ck_assert(!ZSTD_isError(zl));
    h2reply r;
    h2_post(LOGS, "zstd", z, zl, true, &r);
    ck_assert_int_eq(r.grpc_status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 0);

    /* The same without a declared content size (streamed frame): stopped at the limit. */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    ZSTD_inBuffer in = {zeros, n, 0};
    ZSTD_outBuffer out = {z, cap, 0};
    ck_assert_uint_eq(ZSTD_compressStream2(cc, &out, &in, ZSTD_e_end), 0);
    ZSTD_freeCCtx(cc);
    h2_post(LOGS, "zstd", z, out.pos, true, &r);
    ck_assert_int_eq(r.grpc_status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 0);
    free(z);
    free(zeros);
}
END_TEST

START_TEST(many_concurrent_calls_all_answered)
{
    sn_grpc_server_config cfg;
    sn_grpc_server_config_init(&cfg);
    cfg.max_calls = 256;
    start_server(&cfg);
    enum { N = 200 };
    grpc_channel *ch[4];
    for (int i = 0; i < 4; i++)
        ch[i] = open_channel(GRPC_COMPRESS_NONE);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    pending *p = calloc(N, sizeof *p);
    for (int i = 0; i < N; i++) {
        char body[32];
        int len = snprintf(body, sizeof body, "request %d", i);
        start_call(ch[i % 4], cq, i % 3 == 0 ? TRACES : (i % 3 == 1 ? METRICS : LOGS), body,
                   (size_t)len, 15000, &p[i], &p[i]);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        ck_assert_int_eq(ev.type, GRPC_OP_COMPLETE);
        pending *done = ev.tag;
        reply r;
        finish_call(done, &r);
        ok += r.status == GRPC_STATUS_OK;
        free_reply(&r);
    }
    ck_assert_int_eq(ok, N);
    ck_assert_int_eq(atomic_load(&g_seen.calls), N);
    free(p);
    for (int i = 0; i < 4; i++)
        grpc_channel_destroy(ch[i]);
    drain_and_destroy(cq);
}
END_TEST

START_TEST(over_max_calls_is_refused_with_retry_info)
{
    sn_grpc_server_config cfg;
    sn_grpc_server_config_init(&cfg);
    cfg.max_calls = 2;
    cfg.busy_retry_ms = 750;
    start_server(&cfg);
    set_hold(true);
    grpc_channel *ch = open_channel(GRPC_COMPRESS_NONE);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    pending p[3];
    start_call(ch, cq, TRACES, "one", 3, 10000, &p[0], &p[0]);
    wait_inside(1); /* the first is in the handler */
    start_call(ch, cq, TRACES, "two", 3, 10000, &p[1], &p[1]);
    /* Give the second time to be admitted (it waits behind the first). */
    struct timespec ts = {0, 200 * 1000000L};
    nanosleep(&ts, NULL);
    start_call(ch, cq, TRACES, "three", 5, 10000, &p[2], &p[2]);
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    ck_assert_ptr_eq(ev.tag, &p[2]);
    reply r;
    finish_call(&p[2], &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_UNAVAILABLE);
    int code;
    char msg[128];
    int64_t delay;
    decode_status(&r, &code, msg, sizeof msg, &delay);
    ck_assert_int_eq(delay, 750);
    free_reply(&r);
    set_hold(false);
    for (int i = 0; i < 2; i++) {
        ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        finish_call(ev.tag, &r);
        ck_assert_int_eq(r.status, GRPC_STATUS_OK);
        free_reply(&r);
    }
    ck_assert_int_eq(atomic_load(&g_seen.calls), 2);
    sn_grpc_server_stats st;
    sn_grpc_server_stats_get(g_srv, &st);
    ck_assert_uint_eq(st.refused_busy, 1);
    grpc_channel_destroy(ch);
    drain_and_destroy(cq);
}
END_TEST

START_TEST(expired_deadline_skips_the_handler)
{
    start_default();
    set_hold(true);
    grpc_channel *ch = open_channel(GRPC_COMPRESS_NONE);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    pending p[2];
    start_call(ch, cq, TRACES, "slow", 4, 10000, &p[0], &p[0]);
    wait_inside(1);
    start_call(ch, cq, TRACES, "late", 4, 100, &p[1], &p[1]);
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    ck_assert_ptr_eq(ev.tag, &p[1]);
    reply r;
    finish_call(&p[1], &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_DEADLINE_EXCEEDED);
    free_reply(&r);
    /* The server's deadline started when the call reached it, a little after the client's. */
    struct timespec ts = {0, 200 * 1000000L};
    nanosleep(&ts, NULL);
    set_hold(false);
    ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    finish_call(ev.tag, &r);
    ck_assert_int_eq(r.status, GRPC_STATUS_OK);
    free_reply(&r);
    grpc_channel_destroy(ch);
    drain_and_destroy(cq);
    /* The late request never reached the handler. */
    sn_grpc_server_shutdown(g_srv, 1000);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 1);
    ck_assert_uint_eq(g_seen.len, 4);
    ck_assert(memcmp(g_seen.body, "slow", 4) == 0);
    sn_grpc_server_stats st;
    sn_grpc_server_stats_get(g_srv, &st);
    ck_assert_uint_eq(st.expired, 1);
}
END_TEST

START_TEST(graceful_shutdown_finishes_calls_in_flight)
{
    start_default();
    g_seen.sleep_ms = 300;
    grpc_channel *ch = open_channel(GRPC_COMPRESS_NONE);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    pending p[2];
    start_call(ch, cq, TRACES, "a", 1, 10000, &p[0], &p[0]);
    wait_inside(1);
    start_call(ch, cq, TRACES, "b", 1, 10000, &p[1], &p[1]); /* queued behind the first */
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
    sn_grpc_server_shutdown(g_srv, 5000); /* returns once both are answered */
    ck_assert_int_eq(atomic_load(&g_seen.calls), 2);
    for (int i = 0; i < 2; i++) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        reply r;
        finish_call(ev.tag, &r);
        ck_assert_int_eq(r.status, GRPC_STATUS_OK);
        free_reply(&r);
    }
    /* Shutdown is idempotent, and nothing is served after it. */
    sn_grpc_server_shutdown(g_srv, 0);
    reply r;
    start_call(ch, cq, TRACES, "c", 1, 1000, &p[0], &p[0]);
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    finish_call(ev.tag, &r);
    ck_assert_int_ne(r.status, GRPC_STATUS_OK);
    free_reply(&r);
    grpc_channel_destroy(ch);
    drain_and_destroy(cq);
}
END_TEST

static void *release_later(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 700 * 1000000L};
    nanosleep(&ts, NULL);
    set_hold(false);
    return NULL;
}

START_TEST(shutdown_past_grace_cancels_the_rest)
{
    start_default();
    set_hold(true);
    grpc_channel *ch = open_channel(GRPC_COMPRESS_NONE);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    pending p[2];
    start_call(ch, cq, TRACES, "a", 1, 10000, &p[0], &p[0]);
    wait_inside(1);
    start_call(ch, cq, TRACES, "b", 1, 10000, &p[1], &p[1]);
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
    /* The handler is released well after the grace period ends. */
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, release_later, NULL), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sn_grpc_server_shutdown(g_srv, 200);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_join(t, NULL);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    ck_assert(took < 5.0);
    /* The held call's answer comes after the cancel; the queued one never runs. */
    for (int i = 0; i < 2; i++) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        reply r;
        finish_call(ev.tag, &r);
        ck_assert_int_ne(r.status, GRPC_STATUS_OK);
        free_reply(&r);
    }
    ck_assert_int_eq(atomic_load(&g_seen.calls), 1);
    grpc_channel_destroy(ch);
    drain_and_destroy(cq);
}
END_TEST

START_TEST(bad_config_and_busy_port_fail_cleanly)
{
    char err[256];
    sn_grpc_server_config cfg;
    sn_grpc_server_config_init(&cfg);
    sn_grpc_server *s = NULL;
    ck_assert_int_lt(sn_grpc_server_create(&cfg, &s, err, sizeof err), 0); /* no handler */
    ck_assert_ptr_null(s);
    cfg.handler = test_handler;
    cfg.listen = "no-port";
    ck_assert_int_lt(sn_grpc_server_create(&cfg, &s, err, sizeof err), 0);
    ck_assert(strstr(err, "host:port") != NULL);
    start_default();
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", sn_grpc_server_port(g_srv));
    cfg.listen = addr;
    ck_assert_int_lt(sn_grpc_server_create(&cfg, &s, err, sizeof err), 0);
    ck_assert_ptr_null(s);
    ck_assert(strstr(err, addr) != NULL);
    /* Created but never started: destroy alone is enough. */
    cfg.listen = "127.0.0.1:0";
    ck_assert_int_eq(sn_grpc_server_create(&cfg, &s, err, sizeof err), 0);
    sn_grpc_server_destroy(s);
}
END_TEST

static Suite *grpc_server_suite(void)
{
    Suite *s = suite_create("otlp_grpc");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, ok_passes_exact_bytes_and_answers_empty);
    tcase_add_test(tc, partial_success_carries_count_and_message);
    tcase_add_test(tc, invalid_maps_to_invalid_argument);
    tcase_add_test(tc, retry_carries_retry_info);
    tcase_add_test(tc, unknown_method_is_unimplemented);
    tcase_add_test(tc, gzip_and_deflate_arrive_decompressed);
    tcase_add_test(tc, oversize_is_refused_before_the_handler);
    tcase_add_test(tc, gzip_bomb_over_default_limit_is_refused);
    tcase_add_test(tc, zstd_arrives_decompressed);
    tcase_add_test(tc, zstd_bomb_is_refused);
    tcase_add_test(tc, many_concurrent_calls_all_answered);
    tcase_add_test(tc, over_max_calls_is_refused_with_retry_info);
    tcase_add_test(tc, expired_deadline_skips_the_handler);
    tcase_add_test(tc, graceful_shutdown_finishes_calls_in_flight);
    tcase_add_test(tc, shutdown_past_grace_cancels_the_rest);
    tcase_add_test(tc, bad_config_and_busy_port_fail_cleanly);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    SRunner *sr = srunner_create(grpc_server_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed == 0 ? 0 : 1;
}
