/* Unit tests for aggregator/ingest.c and aggregator/sequences.c: a real ingest service on
 * 127.0.0.1:0, a gRPC C core client (tests/tools/ingest_rpc.c) sending IngestRequests built with
 * protoc-c, and the de-duplication table through its own API. */
#include "ingest.h"
#include "ingest_rpc.h"
#include "sequences.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include <grpc/grpc.h>

#define MIB (1024u * 1024u)
#define GIB (1024ull * MIB)

enum { GRPC_OK = 0, GRPC_INVALID_ARGUMENT = 3, GRPC_RESOURCE_EXHAUSTED = 8, GRPC_INTERNAL = 13 };
enum { ST_OK = 1, ST_DUPLICATE = 2, ST_RETRY_AFTER = 3 };

/* ---------------------------------------------------------------- the apply side */

typedef struct applied {
    pthread_mutex_t mu;
    int calls;
    int answer; /* what apply returns */
    char sidecar_id[SN_SEQ_ID_MAX + 1];
    uint64_t sequence;
    int64_t created;
    uint64_t dropped;
    sn_event events[4];
    size_t nevents;
    sn_local_alert alerts[4];
    size_t nalerts;
} applied;

static applied g_app;
static sn_ingest *g_in;
static char g_target[64];

static int test_apply(const sn_ingest_batch *b, void *ud)
{
    applied *a = ud;
    pthread_mutex_lock(&a->mu);
    a->calls++;
    int rc = a->answer;
    snprintf(a->sidecar_id, sizeof a->sidecar_id, "%s", b->sidecar_id);
    a->sequence = b->sequence;
    a->created = b->created_unix_nano;
    a->dropped = b->dropped_events;
    a->nevents = b->nevents;
    a->nalerts = b->nalerts;
    for (size_t i = 0; i < b->nevents && i < 4; i++)
        a->events[i] = b->events[i];
    for (size_t i = 0; i < b->nalerts && i < 4; i++)
        a->alerts[i] = b->alerts[i];
    pthread_mutex_unlock(&a->mu);
    return rc;
}

static void set_answer(int rc)
{
    pthread_mutex_lock(&g_app.mu);
    g_app.answer = rc;
    pthread_mutex_unlock(&g_app.mu);
}

static int apply_calls(void)
{
    pthread_mutex_lock(&g_app.mu);
    int n = g_app.calls;
    pthread_mutex_unlock(&g_app.mu);
    return n;
}

static void start_with(sn_ingest_config *cfg)
{
    char err[256];
    cfg->listen = "127.0.0.1:0";
    cfg->apply = test_apply;
    cfg->apply_ud = &g_app;
    ck_assert_int_eq(sn_ingest_create(cfg, &g_in, err, sizeof err), 0);
    ck_assert_int_eq(sn_ingest_start(g_in), 0);
    snprintf(g_target, sizeof g_target, "127.0.0.1:%d", sn_ingest_port(g_in));
}

static void start_default(void)
{
    sn_ingest_config cfg;
    sn_ingest_config_init(&cfg);
    cfg.max_message_bytes = 1 * MIB;
    start_with(&cfg);
}

static void setup(void)
{
    memset(&g_app, 0, sizeof g_app);
    pthread_mutex_init(&g_app.mu, NULL);
    g_in = NULL;
    grpc_init();
}

static void teardown(void)
{
    sn_ingest_destroy(g_in);
    g_in = NULL;
    grpc_shutdown_blocking();
    pthread_mutex_destroy(&g_app.mu);
}

/* ---------------------------------------------------------------- building requests */

static uint8_t trace_bytes[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static uint8_t span_bytes[8] = {0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18};

/* An event with every field set. */
static void full_event(Sentinel__V1__LlmEvent *e)
{
    sentinel__v1__llm_event__init(e);
    e->service = "chatbot-api";
    e->model = "gpt-4o";
    e->provider = "azure.ai.openai";
    e->operation = "chat";
    e->region = "us-east-1";
    e->service_version = "1.2.3";
    e->pod = "chatbot-7f9c";
    e->user = "user-42";
    e->error_type = "timeout";
    e->finish_reason = "length";
    e->trace_id.data = trace_bytes;
    e->trace_id.len = 16;
    e->span_id.data = span_bytes;
    e->span_id.len = 8;
    e->start_unix_nano = 1700000000000000000;
    e->end_unix_nano = 1700000001500000000;
    e->_latency_ms_case = SENTINEL__V1__LLM_EVENT___LATENCY_MS_LATENCY_MS;
    e->latency_ms = 1500.25;
    e->_ttft_ms_case = SENTINEL__V1__LLM_EVENT___TTFT_MS_TTFT_MS;
    e->ttft_ms = 210.5;
    e->_input_tokens_case = SENTINEL__V1__LLM_EVENT___INPUT_TOKENS_INPUT_TOKENS;
    e->input_tokens = 1200;
    e->_output_tokens_case = SENTINEL__V1__LLM_EVENT___OUTPUT_TOKENS_OUTPUT_TOKENS;
    e->output_tokens = 345;
    e->_total_tokens_case = SENTINEL__V1__LLM_EVENT___TOTAL_TOKENS_TOTAL_TOKENS;
    e->total_tokens = 1545;
    e->_cache_read_tokens_case = SENTINEL__V1__LLM_EVENT___CACHE_READ_TOKENS_CACHE_READ_TOKENS;
    e->cache_read_tokens = 100;
    e->_cache_write_tokens_case = SENTINEL__V1__LLM_EVENT___CACHE_WRITE_TOKENS_CACHE_WRITE_TOKENS;
    e->cache_write_tokens = 50;
    e->_reasoning_tokens_case = SENTINEL__V1__LLM_EVENT___REASONING_TOKENS_REASONING_TOKENS;
    e->reasoning_tokens = 20;
    e->_cost_usd_case = SENTINEL__V1__LLM_EVENT___COST_USD_COST_USD;
    e->cost_usd = 0.0123;
    e->cost_source = SENTINEL__V1__COST_SOURCE__COST_SOURCE_PRICE_TABLE;
    e->is_error = 1;
    e->conventions = 5;
}

static void full_alert(Sentinel__V1__LocalAlert *a)
{
    sentinel__v1__local_alert__init(a);
    a->detector = "z_score";
    a->metric = "latency_ms";
    a->severity = SENTINEL__V1__SEVERITY__SEVERITY_HIGH;
    a->value = 12000;
    a->baseline = 2000;
    a->threshold = 6000;
    a->deviation = 5.2;
    a->confidence = 0.95;
    a->trace_id.data = trace_bytes;
    a->trace_id.len = 16;
    a->time_unix_nano = 1700000001500000000;
    a->service = "chatbot-api";
    a->model = "gpt-4o";
    a->anomaly_type = "latency_spike";
    a->region = "us-east-1";
    a->alert_id = "0b7e4c1a-9d7f-4f5e-8a7b-2c3d4e5f6a7b";
}

/* A batch of `nev` minimal events (service only). */
typedef struct batch_buf {
    Sentinel__V1__Batch b;
    Sentinel__V1__LlmEvent ev[4];
    Sentinel__V1__LlmEvent *evp[4];
    Sentinel__V1__LocalAlert al[2];
    Sentinel__V1__LocalAlert *alp[2];
} batch_buf;

static Sentinel__V1__Batch *small_batch(batch_buf *bb, const char *id, uint64_t seq, size_t nev)
{
    sentinel__v1__batch__init(&bb->b);
    bb->b.sidecar_id = (char *)id;
    bb->b.sequence = seq;
    for (size_t i = 0; i < nev && i < 4; i++) {
        sentinel__v1__llm_event__init(&bb->ev[i]);
        bb->ev[i].service = "svc";
        bb->evp[i] = &bb->ev[i];
    }
    bb->b.n_events = nev;
    bb->b.events = bb->evp;
    return &bb->b;
}

/* Sends a batch (zstd or plain) and returns the result. */
static ingest_rpc_result send_batch(const Sentinel__V1__Batch *b, bool zstd)
{
    size_t len;
    uint8_t *req = ingest_rpc_request(b, zstd, &len);
    ck_assert_ptr_nonnull(req);
    ingest_rpc_result r;
    ck_assert_int_eq(ingest_rpc_call(g_target, req, len, 10000, &r), 0);
    free(req);
    return r;
}

static ingest_rpc_result send_raw(const void *req, size_t len)
{
    ingest_rpc_result r;
    ck_assert_int_eq(ingest_rpc_call(g_target, req, len, 10000, &r), 0);
    return r;
}

static ingest_rpc_result send_envelope(int compression, uint64_t usize, const void *p, size_t n)
{
    size_t len;
    uint8_t *req = ingest_rpc_envelope(compression, usize, p, n, &len);
    ingest_rpc_result r = send_raw(req, len);
    free(req);
    return r;
}

static void assert_status(const ingest_rpc_result *r, int status, uint64_t ack)
{
    ck_assert_msg(r->grpc_status == GRPC_OK, "grpc status %d: %s", r->grpc_status, r->details);
    ck_assert(r->has_response);
    ck_assert_int_eq(r->status, status);
    ck_assert_uint_eq(r->ack, ack);
}

static void assert_refused(const ingest_rpc_result *r, int grpc_status, const char *needle)
{
    ck_assert_msg(r->grpc_status == grpc_status, "grpc status %d (want %d): %s", r->grpc_status,
                  grpc_status, r->details);
    ck_assert(!r->has_response);
    ck_assert_msg(strstr(r->details, needle) != NULL, "\"%s\" not in \"%s\"", needle, r->details);
}

/* Streams `total` zero bytes through zstd (no buffer of that size), with or without a declared
 * content size. Returns the malloc'd frame and its length. */
static uint8_t *zstd_zeros(unsigned long long total, bool declare, size_t *zlen)
{
    static uint8_t zeros[1 << 20];
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, declare ? 1 : 0);
    if (declare)
        ZSTD_CCtx_setPledgedSrcSize(cc, total);
    size_t cap = 4 * MIB, pos = 0;
    uint8_t *out = malloc(cap);
    unsigned long long left = total;
    for (;;) {
        size_t n = left < sizeof zeros ? (size_t)left : sizeof zeros;
        left -= n;
        ZSTD_inBuffer in = {zeros, n, 0};
        ZSTD_EndDirective mode = left == 0 ? ZSTD_e_end : ZSTD_e_continue;
        size_t rc;
        do {
            ZSTD_outBuffer o = {out, cap, pos};
            rc = ZSTD_compressStream2(cc, &o, &in, mode);
            ck_assert(!ZSTD_isError(rc));
            pos = o.pos;
            ck_assert_uint_lt(pos, cap);
        } while (in.pos < in.size || (mode == ZSTD_e_end && rc != 0));
        if (left == 0)
            break;
    }
    ZSTD_freeCCtx(cc);
    *zlen = pos;
    return out;
}

/* ---------------------------------------------------------------- tests */

START_TEST(ok_converts_every_field)
{
    start_default();
    batch_buf bb;
    Sentinel__V1__Batch *b = small_batch(&bb, "pod-a/0123456789abcdef", 1, 2);
    full_event(&bb.ev[0]);
    /* ev[1] stays minimal: every optional fact unknown. */
    full_alert(&bb.al[0]);
    bb.alp[0] = &bb.al[0];
    b->n_alerts = 1;
    b->alerts = bb.alp;
    b->created_unix_nano = 1700000002000000000;
    b->dropped_events = 7;
    ingest_rpc_result r = send_batch(b, true);
    assert_status(&r, ST_OK, 1);
    ck_assert_int_eq(apply_calls(), 1);

    ck_assert_str_eq(g_app.sidecar_id, "pod-a/0123456789abcdef");
    ck_assert_uint_eq(g_app.sequence, 1);
    ck_assert_int_eq(g_app.created, 1700000002000000000);
    ck_assert_uint_eq(g_app.dropped, 7);
    ck_assert_uint_eq(g_app.nevents, 2);
    ck_assert_uint_eq(g_app.nalerts, 1);
    const sn_event *e = &g_app.events[0];
    ck_assert_str_eq(e->service, "chatbot-api");
    ck_assert_str_eq(e->model, "gpt-4o");
    ck_assert_str_eq(e->provider, "azure.ai.openai");
    ck_assert_str_eq(e->operation, "chat");
    ck_assert_str_eq(e->region, "us-east-1");
    ck_assert_str_eq(e->service_version, "1.2.3");
    ck_assert_str_eq(e->pod, "chatbot-7f9c");
    ck_assert_str_eq(e->user, "user-42");
    ck_assert_str_eq(e->error_type, "timeout");
    ck_assert_str_eq(e->finish_reason, "length");
    ck_assert_mem_eq(e->trace_id, trace_bytes, 16);
    ck_assert_mem_eq(e->span_id, span_bytes, 8);
    ck_assert_int_eq(e->start_unix_nano, 1700000000000000000);
    ck_assert_int_eq(e->end_unix_nano, 1700000001500000000);
    ck_assert_double_eq(e->latency_ms, 1500.25);
    ck_assert_double_eq(e->ttft_ms, 210.5);
    ck_assert_int_eq(e->input_tokens, 1200);
    ck_assert_int_eq(e->output_tokens, 345);
    ck_assert_int_eq(e->total_tokens, 1545);
    ck_assert_int_eq(e->cache_read_tokens, 100);
    ck_assert_int_eq(e->cache_write_tokens, 50);
    ck_assert_int_eq(e->reasoning_tokens, 20);
    ck_assert_double_eq(e->cost_usd, 0.0123);
    ck_assert_int_eq(e->cost_source, SN_COST_PRICE_TABLE);
    ck_assert(e->is_error);
    ck_assert_uint_eq(e->conventions, 5);

    const sn_event *u = &g_app.events[1];
    ck_assert_str_eq(u->service, "svc");
    ck_assert_str_eq(u->model, "");
    ck_assert(isnan(u->latency_ms) && isnan(u->ttft_ms) && isnan(u->cost_usd));
    ck_assert_int_eq(u->input_tokens, SN_UNKNOWN_COUNT);
    ck_assert_int_eq(u->output_tokens, SN_UNKNOWN_COUNT);
    ck_assert_int_eq(u->total_tokens, SN_UNKNOWN_COUNT);
    ck_assert_int_eq(u->cache_read_tokens, SN_UNKNOWN_COUNT);
    ck_assert_int_eq(u->cache_write_tokens, SN_UNKNOWN_COUNT);
    ck_assert_int_eq(u->reasoning_tokens, SN_UNKNOWN_COUNT);
    ck_assert_int_eq(u->cost_source, SN_COST_UNKNOWN);
    ck_assert(!u->is_error);
    static const uint8_t zero16[16];
    ck_assert_mem_eq(u->trace_id, zero16, 16);

    const sn_local_alert *a = &g_app.alerts[0];
    ck_assert_str_eq(a->alert_id, "0b7e4c1a-9d7f-4f5e-8a7b-2c3d4e5f6a7b");
    ck_assert_int_eq(a->detector, SN_DETECT_ZSCORE);
    ck_assert_int_eq(a->metric, SN_METRIC_LATENCY_MS);
    ck_assert_int_eq(a->severity, SN_SEV_HIGH);
    ck_assert_int_eq(a->anomaly_type, SN_ANOMALY_LATENCY_SPIKE);
    ck_assert_double_eq(a->value, 12000);
    ck_assert_double_eq(a->baseline, 2000);
    ck_assert_double_eq(a->threshold, 6000);
    ck_assert_double_eq(a->deviation, 5.2);
    ck_assert_double_eq(a->confidence, 0.95);
    ck_assert_mem_eq(a->trace_id, trace_bytes, 16);
    ck_assert_int_eq(a->time_unix_nano, 1700000001500000000);
    ck_assert_str_eq(a->service, "chatbot-api");
    ck_assert_str_eq(a->model, "gpt-4o");
    ck_assert_str_eq(a->region, "us-east-1");

    /* The same batch uncompressed (sequence 2) arrives the same way. */
    b->sequence = 2;
    r = send_batch(b, false);
    assert_status(&r, ST_OK, 2);
    ck_assert_int_eq(apply_calls(), 2);
    ck_assert_str_eq(g_app.events[0].finish_reason, "length");

    sn_ingest_stats st;
    sn_ingest_stats_get(g_in, &st);
    ck_assert_uint_eq(st.batches, 2);
    ck_assert_uint_eq(st.events, 4);
    ck_assert_uint_eq(st.alerts, 2);
    ck_assert_uint_eq(st.sidecars, 1);
    ck_assert_uint_gt(st.bytes_out, st.bytes_in / 2);
    ck_assert_uint_gt(st.bytes_in, 0);
}
END_TEST

START_TEST(long_strings_are_truncated_at_utf8_boundaries)
{
    start_default();
    char longname[400];
    /* "é" is two bytes: 127 bytes of room ends in the middle of one, which must not be kept. */
    size_t n = 0;
    longname[n++] = 'x';
    while (n + 2 < sizeof longname) {
        longname[n++] = (char)0xc3;
        longname[n++] = (char)0xa9;
    }
    longname[n] = '\0';
    batch_buf bb;
    Sentinel__V1__Batch *b = small_batch(&bb, "s", 1, 1);
    bb.ev[0].service = longname;
    bb.ev[0].pod = longname;
    ingest_rpc_result r = send_batch(b, false);
    assert_status(&r, ST_OK, 1);
    ck_assert_uint_eq(strlen(g_app.events[0].service), 127);
    ck_assert_int_eq(memcmp(g_app.events[0].service, longname, 127), 0);
    ck_assert_uint_eq(strlen(g_app.events[0].pod), 63);
}
END_TEST

START_TEST(replays_are_duplicates_and_new_ids_start_fresh)
{
    start_default();
    batch_buf bb;
    for (uint64_t seq = 1; seq <= 2; seq++) {
        ingest_rpc_result r = send_batch(small_batch(&bb, "sidecar-A", seq, 1), true);
        assert_status(&r, ST_OK, seq);
    }
    ck_assert_int_eq(apply_calls(), 2);
    /* The same (id, sequence) again, and a lower sequence: acknowledged, not applied. */
    ingest_rpc_result r = send_batch(small_batch(&bb, "sidecar-A", 2, 1), true);
    assert_status(&r, ST_DUPLICATE, 2);
    r = send_batch(small_batch(&bb, "sidecar-A", 1, 1), false);
    assert_status(&r, ST_DUPLICATE, 2);
    ck_assert_int_eq(apply_calls(), 2);
    /* A gap is applied. */
    r = send_batch(small_batch(&bb, "sidecar-A", 5, 1), true);
    assert_status(&r, ST_OK, 5);
    ck_assert_int_eq(apply_calls(), 3);
    r = send_batch(small_batch(&bb, "sidecar-A", 4, 1), true);
    assert_status(&r, ST_DUPLICATE, 5);
    /* A restarted sidecar has a new id: its sequence 1 is new. */
    r = send_batch(small_batch(&bb, "sidecar-B", 1, 1), true);
    assert_status(&r, ST_OK, 1);
    ck_assert_int_eq(apply_calls(), 4);
    ck_assert_str_eq(g_app.sidecar_id, "sidecar-B");

    sn_ingest_stats st;
    sn_ingest_stats_get(g_in, &st);
    ck_assert_uint_eq(st.duplicates, 3);
    ck_assert_uint_eq(st.batches, 4);
    ck_assert_uint_eq(st.sidecars, 2);
}
END_TEST

/* A batch of alerts only, sequence 0 (alerts ahead of their batch). */
static Sentinel__V1__Batch *alerts_ahead(batch_buf *bb, const char *id)
{
    small_batch(bb, id, 0, 0);
    full_alert(&bb->al[0]);
    bb->alp[0] = &bb->al[0];
    bb->b.alerts = bb->alp;
    bb->b.n_alerts = 1;
    return &bb->b;
}

START_TEST(alerts_ahead_leave_the_sequence_table_alone)
{
    start_default();
    batch_buf bb;
    ingest_rpc_result r = send_batch(small_batch(&bb, "sidecar-A", 3, 1), true);
    assert_status(&r, ST_OK, 3);
    /* Applied with sequence 0, answered OK with the id's acknowledged sequence as it is. */
    r = send_batch(alerts_ahead(&bb, "sidecar-A"), true);
    assert_status(&r, ST_OK, 3);
    ck_assert_int_eq(apply_calls(), 2);
    ck_assert_uint_eq(g_app.sequence, 0);
    ck_assert_uint_eq(g_app.nalerts, 1);
    ck_assert_uint_eq(g_app.nevents, 0);
    ck_assert_str_eq(g_app.alerts[0].alert_id, "0b7e4c1a-9d7f-4f5e-8a7b-2c3d4e5f6a7b");
    /* From an unknown sidecar too; the table gains no entry (ack 0). */
    r = send_batch(alerts_ahead(&bb, "sidecar-B"), false);
    assert_status(&r, ST_OK, 0);
    /* Sequence 4 of sidecar-A is still new; sidecar-B's sequence 1 too. */
    r = send_batch(small_batch(&bb, "sidecar-A", 4, 1), true);
    assert_status(&r, ST_OK, 4);
    r = send_batch(small_batch(&bb, "sidecar-B", 1, 1), true);
    assert_status(&r, ST_OK, 1);
    /* apply says every alert was applied before: DUPLICATE. */
    set_answer(-EALREADY);
    r = send_batch(alerts_ahead(&bb, "sidecar-A"), true);
    assert_status(&r, ST_DUPLICATE, 4);
    set_answer(-EAGAIN);
    r = send_batch(alerts_ahead(&bb, "sidecar-A"), true);
    assert_status(&r, ST_RETRY_AFTER, 4);
    set_answer(0);
    ck_assert_int_eq(apply_calls(), 7);

    /* Events, aggregates or no alert at all with sequence 0: refused for good. */
    alerts_ahead(&bb, "sidecar-A");
    sentinel__v1__llm_event__init(&bb.ev[0]);
    bb.ev[0].service = "svc";
    bb.evp[0] = &bb.ev[0];
    bb.b.n_events = 1;
    r = send_batch(&bb.b, true);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "0 only for alerts ahead");
    r = send_batch(small_batch(&bb, "sidecar-A", 0, 0), true);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "at least one alert");
    /* An alert ahead without an alert_id could not be told from its batch's copy. */
    alerts_ahead(&bb, "sidecar-A");
    bb.al[0].alert_id = "";
    r = send_batch(&bb.b, true);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "needs an alert_id");
    ck_assert_int_eq(apply_calls(), 7);

    sn_ingest_stats st;
    sn_ingest_stats_get(g_in, &st);
    ck_assert_uint_eq(st.alerts_ahead, 3); /* OK, OK, DUPLICATE */
    ck_assert_uint_eq(st.batches, 3);
    ck_assert_uint_eq(st.sidecars, 2);
}
END_TEST

START_TEST(retry_after_and_internal_are_not_acknowledged)
{
    start_default();
    batch_buf bb;
    ingest_rpc_result r = send_batch(small_batch(&bb, "s", 1, 1), true);
    assert_status(&r, ST_OK, 1);
    set_answer(-EAGAIN);
    r = send_batch(small_batch(&bb, "s", 2, 1), true);
    assert_status(&r, ST_RETRY_AFTER, 1); /* the last one applied */
    ck_assert_uint_eq(r.retry_after_ms, SN_INGEST_DEFAULT_RETRY_MS);
    set_answer(-EIO);
    r = send_batch(small_batch(&bb, "s", 2, 1), true);
    ck_assert_int_eq(r.grpc_status, GRPC_INTERNAL);
    ck_assert(!r.has_response);
    /* Neither refusal was recorded: the resend is applied, once. */
    set_answer(0);
    r = send_batch(small_batch(&bb, "s", 2, 1), true);
    assert_status(&r, ST_OK, 2);
    r = send_batch(small_batch(&bb, "s", 2, 1), true);
    assert_status(&r, ST_DUPLICATE, 2);
    ck_assert_int_eq(apply_calls(), 4);
    sn_ingest_stats st;
    sn_ingest_stats_get(g_in, &st);
    ck_assert_uint_eq(st.refused[SN_INGEST_REFUSED_RETRY], 1);
    ck_assert_uint_eq(st.refused[SN_INGEST_REFUSED_INTERNAL], 1);
    ck_assert_uint_eq(st.batches, 2);
}
END_TEST

START_TEST(corrupt_zstd_and_size_mismatches_are_invalid)
{
    start_default();
    batch_buf bb;
    size_t n = sentinel__v1__batch__get_packed_size(small_batch(&bb, "s", 1, 2));
    uint8_t *plain = malloc(n);
    sentinel__v1__batch__pack(&bb.b, plain);
    size_t cap = ZSTD_compressBound(n);
    uint8_t *z = malloc(cap);
    size_t zl = ZSTD_compress(z, cap, plain, n, 3);
    ck_assert(!ZSTD_isError(zl));

    /* Corrupt bytes inside the frame. */
    uint8_t *bad = malloc(zl);
    memcpy(bad, z, zl);
    for (size_t i = 6; i < zl; i++)
        bad[i] ^= 0x5a;
    ingest_rpc_result r = send_envelope(1, n, bad, zl);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "zstd");
    /* Not zstd at all. */
    r = send_envelope(1, n, plain, n);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "zstd");
    /* Truncated frame. */
    r = send_envelope(1, n, z, zl - 3);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "zstd");
    /* Declared size differs from the frame's content size. */
    r = send_envelope(1, n + 1, z, zl);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "content size");
    /* zstd without uncompressed_size. */
    r = send_envelope(1, 0, z, zl);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "uncompressed_size");
    /* Plain payload whose declared size is wrong. */
    r = send_envelope(0, n + 5, plain, n);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "uncompressed_size");
    /* Unknown compression. */
    r = send_envelope(7, n, plain, n);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "compression");
    /* And the good frame still works. */
    r = send_envelope(1, n, z, zl);
    assert_status(&r, ST_OK, 1);
    ck_assert_int_eq(apply_calls(), 1);
    sn_ingest_stats st;
    sn_ingest_stats_get(g_in, &st);
    ck_assert_uint_eq(st.refused[SN_INGEST_REFUSED_DECOMPRESS], 6);
    ck_assert_uint_eq(st.refused[SN_INGEST_REFUSED_MALFORMED], 1);
    free(bad);
    free(z);
    free(plain);
}
END_TEST

START_TEST(decompression_bombs_are_refused_unallocated)
{
    start_default(); /* limit 1 MiB */
    size_t zl;
    /* 1 GiB of zeros in a frame that declares its size: refused before decompressing. */
    uint8_t *z = zstd_zeros(GIB, true, &zl);
    ck_assert_uint_lt(zl, 1 * MIB);
    ingest_rpc_result r = send_envelope(1, GIB, z, zl);
    assert_refused(&r, GRPC_RESOURCE_EXHAUSTED, "limit");
    /* The same frame with a small declared size: the frame's own size gives it away. */
    r = send_envelope(1, 1000, z, zl);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "content size");
    free(z);

    /* Without a content size in the frame, declared small: decompression stops just past the
     * declared size (1000 + 1 bytes allocated). */
    z = zstd_zeros(GIB, false, &zl);
    r = send_envelope(1, 1000, z, zl);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "larger than uncompressed_size");
    /* Declared honestly (1 GiB): over the limit, refused before any allocation. */
    r = send_envelope(1, GIB, z, zl);
    assert_refused(&r, GRPC_RESOURCE_EXHAUSTED, "limit");
    /* Declared at the limit: stops at the limit, never more. */
    r = send_envelope(1, 1 * MIB, z, zl);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "larger than uncompressed_size");
    free(z);
    ck_assert_int_eq(apply_calls(), 0);
    sn_ingest_stats st;
    sn_ingest_stats_get(g_in, &st);
    ck_assert_uint_eq(st.refused[SN_INGEST_REFUSED_TOO_LARGE], 2);
    ck_assert_uint_eq(st.refused[SN_INGEST_REFUSED_DECOMPRESS], 3);
}
END_TEST

START_TEST(bad_protobuf_is_invalid)
{
    start_default();
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 0xff, 0xff, 0x01};
    ingest_rpc_result r = send_raw(garbage, sizeof garbage);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "IngestRequest");
    /* A good envelope around a payload that is not a Batch (a truncated field). */
    static const uint8_t notbatch[] = {0x0a, 0x20, 'a', 'b'};
    r = send_envelope(0, 0, notbatch, sizeof notbatch);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "Batch");
    ck_assert_int_eq(apply_calls(), 0);
    sn_ingest_stats st;
    sn_ingest_stats_get(g_in, &st);
    ck_assert_uint_eq(st.refused[SN_INGEST_REFUSED_MALFORMED], 2);
}
END_TEST

START_TEST(invalid_batches_are_refused)
{
    start_default();
    batch_buf bb;
    ingest_rpc_result r = send_batch(small_batch(&bb, "", 1, 1), true);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "sidecar_id");
    char longid[SN_SEQ_ID_MAX + 2];
    memset(longid, 'i', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    r = send_batch(small_batch(&bb, longid, 1, 1), true);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "sidecar_id");
    r = send_batch(small_batch(&bb, "s", 0, 1), true);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "sequence");

    small_batch(&bb, "s", 1, 2);
    bb.ev[1].trace_id.data = trace_bytes;
    bb.ev[1].trace_id.len = 5;
    r = send_batch(&bb.b, true);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "event 1: trace_id");

    small_batch(&bb, "s", 1, 1);
    bb.ev[0]._input_tokens_case = SENTINEL__V1__LLM_EVENT___INPUT_TOKENS_INPUT_TOKENS;
    bb.ev[0].input_tokens = -3;
    r = send_batch(&bb.b, true);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "negative");

    small_batch(&bb, "s", 1, 1);
    bb.ev[0].cost_source = SENTINEL__V1__COST_SOURCE__COST_SOURCE_SPAN; /* without cost_usd */
    r = send_batch(&bb.b, true);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "cost");

    small_batch(&bb, "s", 1, 0);
    full_alert(&bb.al[0]);
    bb.al[0].metric = "bogus_metric";
    bb.alp[0] = &bb.al[0];
    bb.b.n_alerts = 1;
    bb.b.alerts = bb.alp;
    r = send_batch(&bb.b, true);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "alert 0: unknown metric");
    full_alert(&bb.al[0]);
    bb.al[0].severity = SENTINEL__V1__SEVERITY__SEVERITY_UNSPECIFIED;
    r = send_batch(&bb.b, true);
    assert_refused(&r, GRPC_INVALID_ARGUMENT, "severity");

    ck_assert_int_eq(apply_calls(), 0);
    /* None of it was recorded: sequence 1 is still new. */
    r = send_batch(small_batch(&bb, "s", 1, 1), true);
    assert_status(&r, ST_OK, 1);
}
END_TEST

START_TEST(size_and_count_limits)
{
    sn_ingest_config cfg;
    sn_ingest_config_init(&cfg);
    cfg.max_message_bytes = 64 * 1024;
    cfg.max_batch_events = 3;
    start_with(&cfg);
    batch_buf bb;
    ingest_rpc_result r = send_batch(small_batch(&bb, "s", 1, 4), true);
    assert_refused(&r, GRPC_RESOURCE_EXHAUSTED, "more than 3 events");
    /* Over the message limit on the wire: gRPC refuses it. */
    size_t n = 100 * 1024;
    uint8_t *big = calloc(1, n);
    r = send_envelope(0, 0, big, n);
    ck_assert_int_eq(r.grpc_status, GRPC_RESOURCE_EXHAUSTED);
    /* Compressed small, declared over the limit. */
    size_t cap = ZSTD_compressBound(n);
    uint8_t *z = malloc(cap);
    size_t zl = ZSTD_compress(z, cap, big, n, 3);
    r = send_envelope(1, n, z, zl);
    assert_refused(&r, GRPC_RESOURCE_EXHAUSTED, "limit");
    ck_assert_int_eq(apply_calls(), 0);
    r = send_batch(small_batch(&bb, "s", 1, 3), true);
    assert_status(&r, ST_OK, 1);
    free(z);
    free(big);
}
END_TEST

START_TEST(bad_config_fails_cleanly)
{
    char err[256];
    sn_ingest_config cfg;
    sn_ingest_config_init(&cfg);
    sn_ingest *in = NULL;
    cfg.listen = "127.0.0.1:0";
    ck_assert_int_eq(sn_ingest_create(&cfg, &in, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(in);
    ck_assert(strstr(err, "apply") != NULL);
    cfg.apply = test_apply;
    cfg.max_sidecars = 0;
    ck_assert_int_eq(sn_ingest_create(&cfg, &in, err, sizeof err), -EINVAL);
    cfg.max_sidecars = 10;
    cfg.listen = "nowhere";
    ck_assert_int_eq(sn_ingest_create(&cfg, &in, err, sizeof err), -EINVAL);
    ck_assert(strstr(err, "ingest grpc") != NULL);
    start_default();
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", sn_ingest_port(g_in));
    cfg.listen = addr;
    ck_assert_int_eq(sn_ingest_create(&cfg, &in, err, sizeof err), -EADDRNOTAVAIL);
    ck_assert_ptr_null(in);
}
END_TEST

/* Collects exported entries. */
typedef struct export_seen {
    int n;
    char ids[8][SN_SEQ_ID_MAX + 1];
    uint64_t seqs[8];
    int64_t times[8];
} export_seen;

static int collect(const char *id, uint64_t seq, int64_t t, void *ud)
{
    export_seen *e = ud;
    if (e->n >= 8)
        return 1;
    snprintf(e->ids[e->n], sizeof e->ids[0], "%s", id);
    e->seqs[e->n] = seq;
    e->times[e->n] = t;
    e->n++;
    return 0;
}

START_TEST(sequence_import_makes_replays_duplicates)
{
    start_default();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    ck_assert_int_eq(sn_ingest_sequences_import(g_in, "restored", 10, now), 0);
    /* An entry idle for longer than sidecar_idle (7 days) is not kept. */
    ck_assert_int_eq(
        sn_ingest_sequences_import(g_in, "stale", 10, now - SN_INGEST_DEFAULT_IDLE_NS - 1000000000),
        0);
    batch_buf bb;
    /* "stale" is not the oldest in recency order, so only its own age can tell. */
    ingest_rpc_result r = send_batch(small_batch(&bb, "stale", 3, 1), true);
    assert_status(&r, ST_OK, 3);
    r = send_batch(small_batch(&bb, "restored", 10, 1), true);
    assert_status(&r, ST_DUPLICATE, 10);
    r = send_batch(small_batch(&bb, "restored", 11, 1), true);
    assert_status(&r, ST_OK, 11);
    export_seen e = {0};
    ck_assert_int_eq(sn_ingest_sequences_export(g_in, collect, &e), 0);
    ck_assert_int_eq(e.n, 2);
    ck_assert_str_eq(e.ids[0], "restored");
    ck_assert_uint_eq(e.seqs[0], 11);
    ck_assert_int_ge(e.times[0], now);
    ck_assert_str_eq(e.ids[1], "stale");
    ck_assert_uint_eq(e.seqs[1], 3);
}
END_TEST

START_TEST(sequence_table_is_bounded_and_expires)
{
    sn_seqtab *t;
    ck_assert_int_eq(sn_seqtab_create(0, 10, &t), -EINVAL);
    ck_assert_int_eq(sn_seqtab_create(3, 0, &t), -EINVAL);
    ck_assert_int_eq(sn_seqtab_create(3, 100, &t), 0);
    ck_assert_int_eq(sn_seqtab_put(t, "", 0, 1, 0), -EINVAL);
    char longid[SN_SEQ_ID_MAX + 1];
    memset(longid, 'x', sizeof longid);
    ck_assert_int_eq(sn_seqtab_put(t, longid, sizeof longid, 1, 0), -EINVAL);
    ck_assert_int_eq(sn_seqtab_put(t, longid, SN_SEQ_ID_MAX, 9, 0), 0);
    ck_assert_uint_eq(sn_seqtab_get(t, longid, SN_SEQ_ID_MAX, 0), 9);

    ck_assert_int_eq(sn_seqtab_put(t, "a", 1, 5, 10), 0);
    ck_assert_int_eq(sn_seqtab_put(t, "b", 1, 6, 20), 0);
    /* Full (3): the least recently put ("xxx...") is evicted for "c". */
    ck_assert_int_eq(sn_seqtab_put(t, "c", 1, 7, 30), 0);
    sn_seqtab_stats st;
    sn_seqtab_stats_get(t, &st);
    ck_assert_uint_eq(st.entries, 3);
    ck_assert_uint_eq(st.evicted, 1);
    ck_assert_uint_eq(sn_seqtab_get(t, longid, SN_SEQ_ID_MAX, 30), 0);
    /* A put refreshes "a", so "b" goes next. */
    ck_assert_int_eq(sn_seqtab_put(t, "a", 1, 8, 40), 0);
    ck_assert_int_eq(sn_seqtab_put(t, "a", 1, 2, 41), 0); /* never goes down */
    ck_assert_uint_eq(sn_seqtab_get(t, "a", 1, 41), 8);
    ck_assert_int_eq(sn_seqtab_put(t, "d", 1, 1, 50), 0);
    ck_assert_uint_eq(sn_seqtab_get(t, "b", 1, 50), 0);
    ck_assert_uint_eq(sn_seqtab_get(t, "c", 1, 50), 7);

    /* Export: most recent first. */
    export_seen e = {0};
    ck_assert_int_eq(sn_seqtab_export(t, collect, &e), 0);
    ck_assert_int_eq(e.n, 3);
    ck_assert_str_eq(e.ids[0], "d");
    ck_assert_str_eq(e.ids[1], "a");
    ck_assert_str_eq(e.ids[2], "c");
    ck_assert_uint_eq(e.seqs[1], 8);

    /* Idle expiry (idle 100): at 135 "c" (30) is over, "a" (41) and "d" (50) are not. */
    ck_assert_uint_eq(sn_seqtab_expire(t, 135), 1);
    ck_assert_uint_eq(sn_seqtab_get(t, "c", 1, 135), 0);
    ck_assert_uint_eq(sn_seqtab_get(t, "a", 1, 135), 8);
    /* A get expires on its own too. */
    ck_assert_uint_eq(sn_seqtab_get(t, "d", 1, 1000), 0);
    sn_seqtab_stats_get(t, &st);
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.expired, 3);

    /* Import into a fresh table round-trips (oldest first), keeping the higher sequence. */
    sn_seqtab *t2;
    ck_assert_int_eq(sn_seqtab_create(2, 100, &t2), 0);
    for (int i = e.n - 1; i >= 0; i--)
        ck_assert_int_eq(sn_seqtab_import(t2, e.ids[i], e.seqs[i], e.times[i]), 0);
    ck_assert_uint_eq(sn_seqtab_get(t2, "d", 1, 60), 1);
    ck_assert_uint_eq(sn_seqtab_get(t2, "a", 1, 60), 8);
    ck_assert_uint_eq(sn_seqtab_get(t2, "c", 1, 60), 0); /* the oldest did not fit */
    ck_assert_int_eq(sn_seqtab_import(t2, "a", 3, 45), 0);
    ck_assert_uint_eq(sn_seqtab_get(t2, "a", 1, 60), 8);

    /* Many ids through a small table: never more than its size, every lookup consistent. */
    char id[16];
    for (int i = 0; i < 1000; i++) {
        int len = snprintf(id, sizeof id, "id-%d", i);
        ck_assert_int_eq(sn_seqtab_put(t2, id, (size_t)len, (uint64_t)i + 1, 60), 0);
        ck_assert_uint_eq(sn_seqtab_get(t2, id, (size_t)len, 60), (uint64_t)i + 1);
    }
    sn_seqtab_stats_get(t2, &st);
    ck_assert_uint_eq(st.entries, 2);
    ck_assert_uint_eq(sn_seqtab_get(t2, "id-998", 6, 60), 999);
    ck_assert_uint_eq(sn_seqtab_get(t2, "id-997", 6, 60), 0);
    sn_seqtab_destroy(t2);
    sn_seqtab_destroy(t);
    sn_seqtab_destroy(NULL);
}
END_TEST

/* ---------------------------------------------------------------- the pure decoder */

/* sn_ingest_decode_request gives what apply would see, for plain and zstd requests, and owns it. */
/* Batch.groups: each group's events take its resource strings, numbered with Batch.events in
 * wire order; an event in a group that sets one of them is refused; every answer announces
 * FEATURE_GROUPS; the *_GROUPS compressions are read like NONE and ZSTD. */
START_TEST(groups_give_their_events_the_resource_strings)
{
    start_default();
    batch_buf bb;
    Sentinel__V1__Batch *b = small_batch(&bb, "pod-g/1", 1, 1); /* one flat event, "svc" */
    Sentinel__V1__LlmEvent gev[3], *gevp[3];
    for (int i = 0; i < 3; i++) {
        sentinel__v1__llm_event__init(&gev[i]);
        gev[i].model = i == 1 ? "claude" : "gpt-4o";
        gevp[i] = &gev[i];
    }
    full_event(&gev[2]);
    gev[2].service = gev[2].region = gev[2].service_version = gev[2].pod = ""; /* the group's */
    Sentinel__V1__EventGroup g[2], *gp[2] = {&g[0], &g[1]};
    for (int i = 0; i < 2; i++)
        sentinel__v1__event_group__init(&g[i]);
    g[0].service = "checkout";
    g[0].region = "eu-west-1";
    g[0].service_version = "2.0.1";
    g[0].pod = "checkout-7d9f";
    g[0].n_events = 2;
    g[0].events = gevp;
    g[1].service = "search"; /* region, version and pod empty */
    g[1].n_events = 1;
    g[1].events = gevp + 2;
    b->n_groups = 2;
    b->groups = gp;
    for (int zstd = 0; zstd <= 1; zstd++) {
        set_answer(0);
        b->sequence = 1 + (uint64_t)zstd;
        ingest_rpc_result r = send_batch(b, zstd);
        assert_status(&r, ST_OK, b->sequence);
        ck_assert_uint_eq(r.features & SENTINEL__V1__FEATURE__FEATURE_GROUPS, 1);
        pthread_mutex_lock(&g_app.mu);
        ck_assert_uint_eq(g_app.nevents, 4);
        ck_assert_str_eq(g_app.events[0].service, "svc");
        ck_assert_str_eq(g_app.events[0].region, "");
        ck_assert_str_eq(g_app.events[1].service, "checkout");
        ck_assert_str_eq(g_app.events[1].region, "eu-west-1");
        ck_assert_str_eq(g_app.events[1].service_version, "2.0.1");
        ck_assert_str_eq(g_app.events[1].pod, "checkout-7d9f");
        ck_assert_str_eq(g_app.events[1].model, "gpt-4o");
        ck_assert_str_eq(g_app.events[2].service, "checkout");
        ck_assert_str_eq(g_app.events[2].pod, "checkout-7d9f");
        ck_assert_str_eq(g_app.events[2].model, "claude");
        ck_assert_str_eq(g_app.events[3].service, "search");
        ck_assert_str_eq(g_app.events[3].pod, "");
        ck_assert_str_eq(g_app.events[3].model, "gpt-4o");
        ck_assert_int_eq(g_app.events[3].input_tokens, gev[2].input_tokens);
        ck_assert_int_eq(memcmp(g_app.events[3].trace_id, trace_bytes, 16), 0);
        pthread_mutex_unlock(&g_app.mu);
    }

    /* The *_GROUPS compressions: the same batch. */
    size_t plen = sentinel__v1__batch__get_packed_size(b);
    uint8_t *plain = malloc(plen);
    b->sequence = 3;
    plen = sentinel__v1__batch__pack(b, plain);
    ingest_rpc_result r =
        send_envelope(SENTINEL__V1__COMPRESSION__COMPRESSION_NONE_GROUPS, plen, plain, plen);
    assert_status(&r, ST_OK, 3);
    b->sequence = 4;
    plen = sentinel__v1__batch__pack(b, plain);
    size_t zcap = ZSTD_compressBound(plen);
    uint8_t *z = malloc(zcap);
    size_t zlen = ZSTD_compress(z, zcap, plain, plen, 1);
    ck_assert(!ZSTD_isError(zlen));
    r = send_envelope(SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD_GROUPS, plen, z, zlen);
    assert_status(&r, ST_OK, 4);
    pthread_mutex_lock(&g_app.mu);
    ck_assert_uint_eq(g_app.nevents, 4);
    ck_assert_str_eq(g_app.events[2].pod, "checkout-7d9f");
    pthread_mutex_unlock(&g_app.mu);
    free(z);
    free(plain);

    /* An event in a group that names its own pod: refused, by its index in the batch. */
    gev[1].pod = "other-pod";
    b->sequence = 5;
    r = send_batch(b, true);
    assert_refused(&r, GRPC_INVALID_ARGUMENT,
                   "event 2: an event in a group must not set service, region, service_version "
                   "or pod");
    gev[1].pod = "";
    b->sequence = 5;
    r = send_batch(b, true);
    assert_status(&r, ST_OK, 5);

    /* A group whose strings come after its events (any order is valid): each event takes the
     * group's last value of each string. Batch {1 id, 2 seq, 8 {5 ev, 1 "late", 5 ev, 4 "p"}}. */
    uint8_t evb[64];
    size_t evn = sentinel__v1__llm_event__pack(&gev[0], evb); /* model only */
    ck_assert_uint_lt(evn, 60);
    uint8_t raw[256], *q = raw;
    *q++ = 0x0a, *q++ = 7, memcpy(q, "pod-g/1", 7), q += 7;
    *q++ = 0x10, *q++ = 6;
    uint8_t grp[200], *gq = grp;
    *gq++ = 0x2a, *gq++ = (uint8_t)evn, memcpy(gq, evb, evn), gq += evn;
    *gq++ = 0x0a, *gq++ = 5, memcpy(gq, "first", 5), gq += 5;
    *gq++ = 0x0a, *gq++ = 4, memcpy(gq, "late", 4), gq += 4;
    *gq++ = 0x2a, *gq++ = (uint8_t)evn, memcpy(gq, evb, evn), gq += evn;
    *gq++ = 0x22, *gq++ = 1, *gq++ = 'p';
    *q++ = 0x42, *q++ = (uint8_t)(gq - grp), memcpy(q, grp, (size_t)(gq - grp)), q += gq - grp;
    r = send_envelope(SENTINEL__V1__COMPRESSION__COMPRESSION_NONE, (uint64_t)(q - raw), raw,
                      (size_t)(q - raw));
    assert_status(&r, ST_OK, 6);
    pthread_mutex_lock(&g_app.mu);
    ck_assert_uint_eq(g_app.nevents, 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_str_eq(g_app.events[i].service, "late");
        ck_assert_str_eq(g_app.events[i].pod, "p");
        ck_assert_str_eq(g_app.events[i].model, "gpt-4o");
    }
    pthread_mutex_unlock(&g_app.mu);
}
END_TEST

START_TEST(decode_request_gives_the_batch_apply_sees)
{
    sn_ingest_config cfg;
    sn_ingest_config_init(&cfg);
    batch_buf bb;
    Sentinel__V1__Batch *b = small_batch(&bb, "pod-a/1", 9, 2);
    full_event(&bb.ev[1]);
    full_alert(&bb.al[0]);
    bb.alp[0] = &bb.al[0];
    b->n_alerts = 1;
    b->alerts = bb.alp;
    b->created_unix_nano = 1700000002000000000;
    b->dropped_events = 3;
    for (int zstd = 0; zstd <= 1; zstd++) {
        size_t len;
        uint8_t *req = ingest_rpc_request(b, zstd, &len);
        ck_assert_ptr_nonnull(req);
        sn_ingest_decoded d;
        sn_ingest_refusal why = SN_INGEST_REFUSED_COUNT;
        char err[256] = "";
        ck_assert_int_eq(sn_ingest_decode_request(req, len, &cfg, &d, &why, err, sizeof err), 0);
        free(req);
        ck_assert_int_eq(why, SN_INGEST_REFUSED_COUNT); /* untouched */
        ck_assert_str_eq(d.batch.sidecar_id, "pod-a/1");
        ck_assert_ptr_eq(d.batch.sidecar_id, d.sidecar_id);
        ck_assert_uint_eq(d.batch.sequence, 9);
        ck_assert_int_eq(d.batch.created_unix_nano, 1700000002000000000);
        ck_assert_uint_eq(d.batch.dropped_events, 3);
        ck_assert_uint_eq(d.batch.nevents, 2);
        ck_assert_uint_eq(d.batch.nalerts, 1);
        ck_assert_str_eq(d.batch.events[0].service, "svc");
        ck_assert_str_eq(d.batch.events[1].model, "gpt-4o");
        ck_assert_int_eq(memcmp(d.batch.events[1].trace_id, trace_bytes, 16), 0);
        ck_assert_str_eq(d.batch.alerts[0].model, bb.al[0].model);
        sn_ingest_decoded_free(&d);
        ck_assert_ptr_null(d.events);
        sn_ingest_decoded_free(NULL);
    }
}
END_TEST

/* Refusals come with the service's reason and message, and leave nothing to free. */
START_TEST(decode_request_refuses_like_the_service)
{
    sn_ingest_config cfg;
    sn_ingest_config_init(&cfg);
    cfg.max_batch_events = 2;
    sn_ingest_decoded d;
    sn_ingest_refusal why;
    char err[256];

    static const uint8_t junk[] = {0xff, 0xff, 0xff};
    ck_assert_int_eq(sn_ingest_decode_request(junk, sizeof junk, &cfg, &d, &why, err, sizeof err),
                     -EINVAL);
    ck_assert_int_eq(why, SN_INGEST_REFUSED_MALFORMED);
    ck_assert_str_eq(err, "request is not a sentinel.v1.IngestRequest");
    ck_assert_ptr_null(d.events);

    size_t len;
    uint8_t *req = ingest_rpc_envelope(1, 10, "not zstd!!", 10, &len);
    ck_assert_int_eq(sn_ingest_decode_request(req, len, &cfg, &d, &why, err, sizeof err), -EINVAL);
    free(req);
    ck_assert_int_eq(why, SN_INGEST_REFUSED_DECOMPRESS);

    batch_buf bb;
    Sentinel__V1__Batch *b = small_batch(&bb, "pod-a/1", 1, 3);
    req = ingest_rpc_request(b, false, &len);
    ck_assert_int_eq(sn_ingest_decode_request(req, len, &cfg, &d, &why, err, sizeof err), -EINVAL);
    free(req);
    ck_assert_int_eq(why, SN_INGEST_REFUSED_TOO_LARGE);
    ck_assert_msg(strstr(err, "more than 2 events") != NULL, "%s", err);

    b = small_batch(&bb, "pod-a/1", 0, 1);
    req = ingest_rpc_request(b, false, &len);
    ck_assert_int_eq(sn_ingest_decode_request(req, len, &cfg, &d, &why, err, sizeof err), -EINVAL);
    free(req);
    ck_assert_int_eq(why, SN_INGEST_REFUSED_INVALID);
    ck_assert_msg(strstr(err, "batch: sequence must be >= 1") != NULL, "%s", err);

    b = small_batch(&bb, "pod-a/1", 1, 2);
    bb.ev[1].span_id.len = 3;
    bb.ev[1].span_id.data = span_bytes;
    req = ingest_rpc_request(b, true, &len);
    ck_assert_int_eq(sn_ingest_decode_request(req, len, &cfg, &d, &why, err, sizeof err), -EINVAL);
    free(req);
    ck_assert_int_eq(why, SN_INGEST_REFUSED_INVALID);
    ck_assert_str_eq(err, "batch: event 1: span_id must be empty or 8 bytes");
    ck_assert_ptr_null(d.events);
    ck_assert_uint_eq(d.batch.nevents, 0);
}
END_TEST

static Suite *ingest_suite(void)
{
    Suite *s = suite_create("ingest");
    TCase *tc = tcase_create("service");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, ok_converts_every_field);
    tcase_add_test(tc, groups_give_their_events_the_resource_strings);
    tcase_add_test(tc, long_strings_are_truncated_at_utf8_boundaries);
    tcase_add_test(tc, replays_are_duplicates_and_new_ids_start_fresh);
    tcase_add_test(tc, alerts_ahead_leave_the_sequence_table_alone);
    tcase_add_test(tc, retry_after_and_internal_are_not_acknowledged);
    tcase_add_test(tc, corrupt_zstd_and_size_mismatches_are_invalid);
    tcase_add_test(tc, decompression_bombs_are_refused_unallocated);
    tcase_add_test(tc, bad_protobuf_is_invalid);
    tcase_add_test(tc, invalid_batches_are_refused);
    tcase_add_test(tc, size_and_count_limits);
    tcase_add_test(tc, bad_config_fails_cleanly);
    tcase_add_test(tc, sequence_import_makes_replays_duplicates);
    suite_add_tcase(s, tc);
    TCase *td = tcase_create("decode");
    tcase_add_test(td, decode_request_gives_the_batch_apply_sees);
    tcase_add_test(td, decode_request_refuses_like_the_service);
    suite_add_tcase(s, td);
    TCase *tt = tcase_create("sequences");
    tcase_add_test(tt, sequence_table_is_bounded_and_expires);
    suite_add_tcase(s, tt);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ingest_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
