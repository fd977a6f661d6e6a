/* Unit tests for shared/grpc_unary.c, the generic unary gRPC server: what its users rely on
 * beyond the OTLP layer (tests/unit/otlp/test_grpc_server.c covers limits, compression, busy
 * refusals and shutdown through that layer): the method table, response bytes, any status with
 * or without RetryInfo, configuration checks and counters. */
#include "grpc_unary.h"
#include "ingest_rpc.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include <grpc/grpc.h>

static const char *const methods[] = {"/test.v1.Echo/Call", "/test.v1.Echo/Fail",
                                      "/test.v1.Other/Call"};

typedef struct seen {
    pthread_mutex_t mu;
    int calls;
    unsigned method;
    size_t len;
    uint8_t first;
    sn_grpc_reply answer; /* code, message, retry fields to answer with */
    size_t response_len;  /* > cap tests the overflow path */
} seen;

static seen g_seen;
static sn_grpc_unary *g_srv;
static char g_target[64];

/* Echoes the body back as the response (or answers g_seen.answer's error). */
static void handler(unsigned method, const uint8_t *body, size_t len, sn_grpc_reply *reply,
                    void *ud)
{
    seen *s = ud;
    ck_assert_int_eq(reply->code, SN_GRPC_OK);
    ck_assert_uint_eq(reply->response_len, 0);
    ck_assert_uint_eq(reply->response_cap, 64);
    pthread_mutex_lock(&s->mu);
    s->calls++;
    s->method = method;
    s->len = len;
    s->first = len > 0 ? body[0] : 0;
    reply->code = s->answer.code;
    memcpy(reply->message, s->answer.message, sizeof reply->message);
    reply->retry = s->answer.retry;
    reply->retry_after_ms = s->answer.retry_after_ms;
    size_t n = len < reply->response_cap ? len : reply->response_cap;
    memcpy(reply->response, body, n);
    reply->response_len = s->response_len > 0 ? s->response_len : n;
    pthread_mutex_unlock(&s->mu);
}

/* Deferred answers: the handler keeps each call's `later` and a copy of its body; the test
 * answers them from its own thread. */
#define N_DEFERRED 2
typedef struct deferred {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
    sn_grpc_pending *later[N_DEFERRED];
    uint8_t body[N_DEFERRED][8];
    size_t len[N_DEFERRED];
} deferred;

static deferred g_def;

static void deferring_handler(unsigned method, const uint8_t *body, size_t len,
                              sn_grpc_reply *reply, void *ud)
{
    deferred *d = ud;
    (void)method;
    ck_assert_ptr_nonnull(reply->later);
    pthread_mutex_lock(&d->mu);
    ck_assert_int_lt(d->n, N_DEFERRED);
    int i = d->n++;
    d->later[i] = reply->later;
    d->len[i] = len < sizeof d->body[i] ? len : sizeof d->body[i];
    memcpy(d->body[i], body, d->len[i]);
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    reply->deferred = true;
}

/* The test server's configuration: three methods, 64-byte replies, handler h(ud). */
static void base_config(sn_grpc_unary_config *cfg, sn_grpc_unary_handler h, void *ud)
{
    sn_grpc_unary_config_init(cfg);
    cfg->name = "test grpc";
    cfg->listen = "127.0.0.1:0";
    cfg->methods = methods;
    cfg->nmethods = 3;
    cfg->max_reply_bytes = 64;
    cfg->handler = h;
    cfg->handler_ud = ud;
}

/* Creates and starts g_srv from cfg and points g_target at it. */
static void start_config(const sn_grpc_unary_config *cfg)
{
    char err[256];
    ck_assert_int_eq(sn_grpc_unary_create(cfg, &g_srv, err, sizeof err), 0);
    ck_assert_int_eq(sn_grpc_unary_start(g_srv), 0);
    ck_assert_int_eq(sn_grpc_unary_start(g_srv), -EALREADY);
    snprintf(g_target, sizeof g_target, "127.0.0.1:%d", sn_grpc_unary_port(g_srv));
}

static void start_with(bool accept_zstd, sn_grpc_unary_handler h, void *ud, bool allow_deferred)
{
    sn_grpc_unary_config cfg;
    base_config(&cfg, h, ud);
    cfg.accept_zstd = accept_zstd;
    cfg.allow_deferred = allow_deferred;
    start_config(&cfg);
}

static void start(bool accept_zstd)
{
    start_with(accept_zstd, handler, &g_seen, false);
}

static void setup(void)
{
    memset(&g_seen, 0, sizeof g_seen);
    pthread_mutex_init(&g_seen.mu, NULL);
    g_srv = NULL;
    grpc_init();
}

static void teardown(void)
{
    sn_grpc_unary_destroy(g_srv);
    g_srv = NULL;
    grpc_shutdown_blocking();
    pthread_mutex_destroy(&g_seen.mu);
}

static grpc_test_reply call(const char *method, const void *body, size_t len)
{
    grpc_test_reply r;
    ck_assert_int_eq(grpc_test_call(g_target, method, body, len, 10000, &r), 0);
    return r;
}

/* Reads a varint at *pos of p (bounded by n). */
static uint64_t varint(const uint8_t *p, size_t n, size_t *pos)
{
    uint64_t v = 0;
    for (int shift = 0; *pos < n && shift < 64; shift += 7) {
        uint8_t b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    ck_abort_msg("bad varint");
    return 0;
}

/* Finds RetryInfo.retry_delay in a google.rpc.Status and returns it in ms (-1 when absent). */
static int64_t retry_ms_of(const grpc_test_reply *r)
{
    static const char url[] = "type.googleapis.com/google.rpc.RetryInfo";
    const uint8_t *p = r->status_bin;
    size_t n = r->status_bin_len;
    const uint8_t *hit = memmem(p, n, url, sizeof url - 1);
    if (hit == NULL)
        return -1;
    /* Any.value (field 2) follows the type_url: RetryInfo{1: Duration{1: s, 2: ns}}. */
    size_t pos = (size_t)(hit - p) + sizeof url - 1;
    ck_assert_uint_eq(p[pos++], 0x12);
    varint(p, n, &pos);
    ck_assert_uint_eq(p[pos++], 0x0a);
    size_t dlen = (size_t)varint(p, n, &pos), end = pos + dlen;
    int64_t ms = 0;
    while (pos < end) {
        uint8_t tag = p[pos++];
        uint64_t v = varint(p, n, &pos);
        ms += tag == 0x08 ? (int64_t)v * 1000 : (int64_t)(v / 1000000);
    }
    return ms;
}

START_TEST(methods_dispatch_by_index_and_echo)
{
    start(true);
    for (unsigned m = 0; m < 3; m++) {
        uint8_t body[10];
        memset(body, (int)('a' + m), sizeof body);
        grpc_test_reply r = call(methods[m], body, sizeof body);
        ck_assert_int_eq(r.grpc_status, 0);
        ck_assert_uint_eq(g_seen.method, m);
        ck_assert(r.got_message);
        ck_assert_uint_eq(r.message_len, sizeof body);
        ck_assert_mem_eq(r.message, body, sizeof body);
        grpc_test_reply_free(&r);
    }
    grpc_test_reply r = call("/test.v1.Echo/Nope", "x", 1);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_UNIMPLEMENTED);
    grpc_test_reply_free(&r);
    ck_assert_int_eq(g_seen.calls, 3);

    sn_grpc_unary_stats st;
    sn_grpc_unary_stats_get(g_srv, &st);
    ck_assert_uint_eq(st.requests[0], 1);
    ck_assert_uint_eq(st.requests[1], 1);
    ck_assert_uint_eq(st.requests[2], 1);
    ck_assert_uint_eq(st.answers[SN_GRPC_OK], 3);
    ck_assert_uint_eq(st.unimplemented, 1);
    ck_assert_uint_eq(st.bytes_in, 30);
    ck_assert_uint_eq(st.bytes_out, 30);
}
END_TEST

START_TEST(any_status_with_and_without_retry_info)
{
    start(true);
    g_seen.answer.code = SN_GRPC_FAILED_PRECONDITION;
    snprintf(g_seen.answer.message, sizeof g_seen.answer.message, "not ready yet");
    grpc_test_reply r = call(methods[1], "q", 1);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_FAILED_PRECONDITION);
    ck_assert_str_eq(r.details, "not ready yet");
    ck_assert(!r.has_status_bin);
    ck_assert_uint_eq(r.message_len, 0); /* no response message with an error */
    grpc_test_reply_free(&r);

    g_seen.answer.code = SN_GRPC_UNAVAILABLE;
    g_seen.answer.retry = true;
    g_seen.answer.retry_after_ms = 2500;
    r = call(methods[1], "q", 1);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_UNAVAILABLE);
    ck_assert(r.has_status_bin);
    ck_assert_int_eq(retry_ms_of(&r), 2500);
    grpc_test_reply_free(&r);

    g_seen.answer.retry_after_ms = 0; /* the server's busy_retry_ms (1 s) */
    r = call(methods[1], "q", 1);
    ck_assert_int_eq(retry_ms_of(&r), 1000);
    grpc_test_reply_free(&r);

    /* An out-of-range code is a handler bug: INTERNAL. */
    g_seen.answer.code = (sn_grpc_code)99;
    g_seen.answer.retry = false;
    r = call(methods[1], "q", 1);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_INTERNAL);
    grpc_test_reply_free(&r);

    sn_grpc_unary_stats st;
    sn_grpc_unary_stats_get(g_srv, &st);
    ck_assert_uint_eq(st.answers[SN_GRPC_FAILED_PRECONDITION], 1);
    ck_assert_uint_eq(st.answers[SN_GRPC_UNAVAILABLE], 2);
    ck_assert_uint_eq(st.answers[SN_GRPC_INTERNAL], 1);
}
END_TEST

START_TEST(reply_over_capacity_is_internal)
{
    start(true);
    g_seen.response_len = 65; /* claims more than the 64-byte buffer */
    grpc_test_reply r = call(methods[0], "abc", 3);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_INTERNAL);
    ck_assert(strstr(r.details, "max_reply_bytes") != NULL);
    ck_assert_uint_eq(r.message_len, 0);
    grpc_test_reply_free(&r);
}
END_TEST

typedef struct client_call {
    pthread_t th;
    char body[8];
    grpc_test_reply r;
    int rc;
} client_call;

static void *client_main(void *arg)
{
    client_call *c = arg;
    c->rc = grpc_test_call(g_target, methods[0], c->body, strlen(c->body), 10000, &c->r);
    return NULL;
}

/* With allow_deferred the handler thread hands a call over and takes the next one: two calls
 * are both in the handler's hands before either is answered, and the answers, given later from
 * this thread in the reverse order, reach the right clients. */
START_TEST(deferred_answers_come_from_another_thread)
{
    memset(&g_def, 0, sizeof g_def);
    pthread_mutex_init(&g_def.mu, NULL);
    pthread_cond_init(&g_def.cv, NULL);
    start_with(true, deferring_handler, &g_def, true);
    client_call c[N_DEFERRED];
    memset(c, 0, sizeof c);
    for (int i = 0; i < N_DEFERRED; i++) {
        snprintf(c[i].body, sizeof c[i].body, "call-%d", i);
        ck_assert_int_eq(pthread_create(&c[i].th, NULL, client_main, &c[i]), 0);
    }
    pthread_mutex_lock(&g_def.mu);
    while (g_def.n < N_DEFERRED)
        pthread_cond_wait(&g_def.cv, &g_def.mu); /* hangs (test timeout) if the handler waited */
    pthread_mutex_unlock(&g_def.mu);
    for (int i = N_DEFERRED - 1; i >= 0; i--) {
        sn_grpc_reply reply;
        memset(&reply, 0, sizeof reply);
        reply.code = SN_GRPC_OK;
        reply.response = g_def.body[i];
        reply.response_cap = sizeof g_def.body[i];
        reply.response_len = g_def.len[i];
        sn_grpc_unary_finish(g_def.later[i], &reply);
    }
    for (int i = 0; i < N_DEFERRED; i++) {
        pthread_join(c[i].th, NULL);
        ck_assert_int_eq(c[i].rc, 0);
        ck_assert_int_eq(c[i].r.grpc_status, 0);
        ck_assert_uint_eq(c[i].r.message_len, strlen(c[i].body));
        ck_assert_mem_eq(c[i].r.message, c[i].body, strlen(c[i].body));
        grpc_test_reply_free(&c[i].r);
    }
    sn_grpc_unary_stats st;
    sn_grpc_unary_stats_get(g_srv, &st);
    ck_assert_uint_eq(st.answers[SN_GRPC_OK], N_DEFERRED);
    pthread_cond_destroy(&g_def.cv);
    pthread_mutex_destroy(&g_def.mu);
}
END_TEST

/* Records the thread each call is handled on, and echoes the body (inline handling). */
typedef struct where {
    pthread_mutex_t mu;
    char thread[16];
    size_t len;
} where;

static where g_where;

static void where_handler(unsigned method, const uint8_t *body, size_t len, sn_grpc_reply *reply,
                          void *ud)
{
    where *w = ud;
    (void)method;
    pthread_mutex_lock(&w->mu);
    pthread_getname_np(pthread_self(), w->thread, sizeof w->thread);
    w->len = len;
    pthread_mutex_unlock(&w->mu);
    size_t n = len < reply->response_cap ? len : reply->response_cap;
    memcpy(reply->response, body, n);
    reply->response_len = n;
}

/* One call; checks the echo and returns the thread that handled it in `thread`. */
static void call_where(unsigned method, const void *body, size_t len, size_t want_len, char *thread,
                       size_t cap)
{
    grpc_test_reply r = call(methods[method], body, len);
    ck_assert_int_eq(r.grpc_status, 0);
    size_t echo = want_len < 64 ? want_len : 64;
    ck_assert_uint_eq(r.message_len, echo);
    grpc_test_reply_free(&r);
    pthread_mutex_lock(&g_where.mu);
    ck_assert_uint_eq(g_where.len, want_len);
    snprintf(thread, cap, "%s", g_where.thread);
    pthread_mutex_unlock(&g_where.mu);
}

/* Waits (at most 10 s) until the handler thread sleeps: after answering a call it goes back
 * to sleep a moment after the answer may have reached the client. */
static void wait_handler_idle(void)
{
    for (int i = 0; i < 10000; i++) {
        sn_grpc_unary_stats st;
        sn_grpc_unary_stats_get(g_srv, &st);
        if (st.handler_idle)
            return;
        nanosleep(&(struct timespec){0, 1000000L}, NULL);
    }
    ck_abort_msg("the handler thread never went back to sleep");
}

/* inline_max_bytes: a small plain request of an inline method is handled on the
 * completion-queue thread; a larger one, one of another method and a zstd one go to the
 * handler thread -- with the same results; 0 sends every request to the handler thread. */
START_TEST(small_plain_requests_are_handled_inline)
{
    memset(&g_where, 0, sizeof g_where);
    pthread_mutex_init(&g_where.mu, NULL);
    uint8_t big[400], small[100];
    memset(big, 'b', sizeof big);
    memset(small, 's', sizeof small);
    size_t zcap = ZSTD_compressBound(sizeof big);
    uint8_t *z = malloc(zcap);
    size_t zl = ZSTD_compress(z, zcap, big, sizeof big, 3);
    ck_assert(!ZSTD_isError(zl) && zl <= 200);

    for (int inl = 1; inl >= 0; inl--) {
        sn_grpc_unary_config cfg;
        base_config(&cfg, where_handler, &g_where);
        cfg.allow_deferred = true; /* handlers may still answer at once */
        cfg.inline_max_bytes = inl ? 200 : 0;
        cfg.inline_methods = 1u << 0;
        start_config(&cfg);
        const char *small_on = inl ? "sn-grpc-cq" : "sn-grpc-handler";
        char th[16];
        for (int round = 0; round < 3; round++) {
            /* Inline only while the handler thread sleeps: wait for it before each call that
             * may be handled inline. */
            wait_handler_idle();
            call_where(0, small, sizeof small, sizeof small, th, sizeof th);
            ck_assert_str_eq(th, small_on);
            call_where(0, big, sizeof big, sizeof big, th, sizeof th);
            ck_assert_str_eq(th, "sn-grpc-handler");
            call_where(1, small, sizeof small, sizeof small, th, sizeof th);
            ck_assert_str_eq(th, "sn-grpc-handler");
            call_where(0, z, zl, sizeof big, th, sizeof th); /* small, but zstd: decompressed */
            ck_assert_str_eq(th, "sn-grpc-handler");
            wait_handler_idle();
            call_where(0, "", 0, 0, th, sizeof th);
            ck_assert_str_eq(th, small_on);
        }
        sn_grpc_unary_stats st;
        sn_grpc_unary_stats_get(g_srv, &st);
        ck_assert_uint_eq(st.requests[0], 12);
        ck_assert_uint_eq(st.requests[1], 3);
        ck_assert_uint_eq(st.answers[SN_GRPC_OK], 15);
        sn_grpc_unary_destroy(g_srv);
        g_srv = NULL;
    }
    free(z);
    pthread_mutex_destroy(&g_where.mu);
}
END_TEST

/* stage_seconds: every handled call, answered at once or later, is observed once in each
 * stage's histogram; a refused call (unknown method) in none. */
START_TEST(stage_histograms_count_every_handled_call)
{
    char err[256];
    sn_metrics *m = NULL;
    ck_assert_int_eq(sn_metrics_create(NULL, &m, err, sizeof err), 0);
    static const double buckets[] = {0.001, 1};
    sn_metrics_desc d = {.type = SN_METRICS_HISTOGRAM,
                         .name = "test_stage_seconds",
                         .help = "stages",
                         .labels = {"stage"},
                         .buckets = buckets,
                         .bucket_count = 2};
    sn_metrics_family *f = NULL;
    ck_assert_int_eq(sn_metrics_register(m, &d, &f, err, sizeof err), 0);

    memset(&g_def, 0, sizeof g_def);
    pthread_mutex_init(&g_def.mu, NULL);
    pthread_cond_init(&g_def.cv, NULL);
    sn_grpc_unary_config cfg;
    base_config(&cfg, deferring_handler, &g_def);
    cfg.allow_deferred = true;
    sn_histogram *h[SN_GRPC_STAGE_COUNT];
    for (unsigned i = 0; i < SN_GRPC_STAGE_COUNT; i++) {
        const char *v[1] = {sn_grpc_stage_names[i]};
        h[i] = cfg.stage_seconds[i] = sn_metrics_histogram(f, v);
        ck_assert_ptr_nonnull(h[i]);
    }
    start_config(&cfg);
    client_call c[N_DEFERRED];
    memset(c, 0, sizeof c);
    for (int i = 0; i < N_DEFERRED; i++) {
        snprintf(c[i].body, sizeof c[i].body, "call-%d", i);
        ck_assert_int_eq(pthread_create(&c[i].th, NULL, client_main, &c[i]), 0);
    }
    pthread_mutex_lock(&g_def.mu);
    while (g_def.n < N_DEFERRED)
        pthread_cond_wait(&g_def.cv, &g_def.mu);
    pthread_mutex_unlock(&g_def.mu);
    for (int i = 0; i < N_DEFERRED; i++) {
        sn_grpc_reply reply;
        memset(&reply, 0, sizeof reply);
        reply.code = SN_GRPC_OK;
        sn_grpc_unary_finish(g_def.later[i], &reply);
    }
    for (int i = 0; i < N_DEFERRED; i++) {
        pthread_join(c[i].th, NULL);
        ck_assert_int_eq(c[i].r.grpc_status, 0);
        grpc_test_reply_free(&c[i].r);
    }
    grpc_test_reply r = call("/test.v1.Nope/Call", "x", 1);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_UNIMPLEMENTED);
    grpc_test_reply_free(&r);
    sn_grpc_unary_destroy(g_srv); /* every completion has been seen */
    g_srv = NULL;
    for (unsigned i = 0; i < SN_GRPC_STAGE_COUNT; i++)
        ck_assert_msg(sn_histogram_count(h[i]) == N_DEFERRED, "stage %s: %llu observations",
                      sn_grpc_stage_names[i], (unsigned long long)sn_histogram_count(h[i]));
    sn_metrics_destroy(m);
    pthread_cond_destroy(&g_def.cv);
    pthread_mutex_destroy(&g_def.mu);
}
END_TEST

START_TEST(zstd_sniffing_follows_accept_zstd)
{
    size_t n = 5000;
    uint8_t *plain = calloc(1, n);
    size_t cap = ZSTD_compressBound(n);
    uint8_t *z = malloc(cap);
    size_t zl = ZSTD_compress(z, cap, plain, n, 3);
    ck_assert(!ZSTD_isError(zl));

    start(true);
    grpc_test_reply r = call(methods[0], z, zl);
    ck_assert_int_eq(r.grpc_status, 0);
    ck_assert_uint_eq(g_seen.len, n); /* decompressed */
    grpc_test_reply_free(&r);
    sn_grpc_unary_destroy(g_srv);

    g_srv = NULL;
    start(false);
    r = call(methods[0], z, zl);
    ck_assert_int_eq(r.grpc_status, 0);
    ck_assert_uint_eq(g_seen.len, zl); /* handed over as received */
    ck_assert_uint_eq(g_seen.first, 0x28);
    grpc_test_reply_free(&r);
    free(z);
    free(plain);
}
END_TEST

/* A small window: a message 16 times the window arrives whole. */
START_TEST(small_windows_carry_large_messages)
{
    sn_grpc_unary_config cfg;
    base_config(&cfg, handler, &g_seen);
    cfg.max_streams = 2;
    cfg.window_bytes = 1000; /* raised to the HTTP/2 initial window, 65535 */
    start_config(&cfg);

    size_t big = 1024 * 1024;
    uint8_t *body = malloc(big);
    ck_assert_ptr_nonnull(body);
    memset(body, 'b', big);
    grpc_test_reply r = call(methods[0], body, big);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_OK);
    ck_assert_uint_eq(r.message_len, 64);
    grpc_test_reply_free(&r);
    free(body);
    ck_assert_int_eq(g_seen.calls, 1);
    ck_assert_uint_eq(g_seen.len, big);

    sn_grpc_unary_stats st;
    sn_grpc_unary_stats_get(g_srv, &st);
    ck_assert_uint_eq(st.refused_busy, 0);
    ck_assert_uint_eq(st.requests[0], 1);
}
END_TEST

/* A memory budget for the tests: `cap` bytes at once, `used` reserved now, the largest request
 * `ceiling` (at most cap; lowered by a test, as the sidecar's memory guard lowers it). */
static atomic_size_t g_used;
static const size_t g_cap = 1024 * 1024;
static atomic_size_t g_ceiling;

static atomic_int g_reserves; /* reserve calls with held == 0: new calls asking for budget */

static int budget_reserve(void *ud, size_t more, size_t held)
{
    (void)ud;
    if (held == 0)
        atomic_fetch_add(&g_reserves, 1);
    if (held + more > atomic_load(&g_ceiling))
        return -E2BIG;
    size_t before = atomic_fetch_add(&g_used, more);
    if (before + more > g_cap) {
        atomic_fetch_sub(&g_used, more);
        return -EAGAIN;
    }
    return 0;
}

static void budget_release(void *ud, size_t bytes)
{
    (void)ud;
    ck_assert_uint_ge(atomic_load(&g_used), bytes);
    atomic_fetch_sub(&g_used, bytes);
}

static size_t budget_available(void *ud)
{
    (void)ud;
    size_t used = atomic_load(&g_used);
    return used < g_cap ? g_cap - used : 0;
}

/* The test server's configuration with the test budget: nothing used, the ceiling at cap. */
static void budget_config(sn_grpc_unary_config *cfg, sn_grpc_unary_handler h, void *ud)
{
    base_config(cfg, h, ud);
    cfg->budget = (sn_grpc_budget){budget_reserve, budget_release, budget_available, NULL, g_cap};
    atomic_store(&g_used, 0);
    atomic_store(&g_ceiling, g_cap);
}

/* Waits (up to 2 s) until the budget's use is back to `want`: a call's reservation is released
 * when gRPC reports its answer sent, just after the client has it. */
static void wait_used(size_t want)
{
    for (int i = 0; i < 200 && atomic_load(&g_used) != want; i++) {
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    ck_assert_uint_eq(atomic_load(&g_used), want);
}

/* With a memory budget: a call reserves before its message is read and is refused (retryable)
 * when that does not fit; a message larger than the budget allows is refused for good; a zstd
 * message's output is charged as it is decompressed; everything comes back after the answer. */
START_TEST(memory_budget_refuses_before_reading_and_bounds_decompression)
{
    sn_grpc_unary_config cfg;
    budget_config(&cfg, handler, &g_seen);
    start_config(&cfg);

    size_t n = 100 * 1024;
    uint8_t *body = calloc(1, 400 * 1024);
    grpc_test_reply r = call(methods[0], body, n);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_OK);
    grpc_test_reply_free(&r);
    ck_assert_int_eq(g_seen.calls, 1);
    wait_used(0);

    /* 900 KiB held elsewhere: refused before the message is read, with RetryInfo. */
    atomic_store(&g_used, 900 * 1024);
    r = call(methods[0], body, n);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_UNAVAILABLE);
    ck_assert(strstr(r.details, "memory") != NULL);
    ck_assert_int_eq(retry_ms_of(&r), 1000);
    grpc_test_reply_free(&r);
    ck_assert_int_eq(g_seen.calls, 1);
    wait_used(900 * 1024);
    atomic_store(&g_used, 0);

    /* 400 KiB needs 1.2 MiB: never (gRPC's own receive limit is a third of the budget). */
    r = call(methods[0], body, 400 * 1024);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_RESOURCE_EXHAUSTED);
    ck_assert_int_eq(retry_ms_of(&r), -1);
    grpc_test_reply_free(&r);
    ck_assert_int_eq(g_seen.calls, 1);
    wait_used(0);

    /* 300 KiB of zeros in a small zstd frame: refused (retryable) when the output does not
     * fit in what is left -- decompression stops there -- ... */
    size_t zcap = ZSTD_compressBound(300 * 1024);
    uint8_t *z = malloc(zcap);
    size_t zl = ZSTD_compress(z, zcap, body, 300 * 1024, 3);
    ck_assert(!ZSTD_isError(zl));
    atomic_store(&g_used, 600 * 1024);
    r = call(methods[0], z, zl);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_UNAVAILABLE);
    ck_assert_int_eq(retry_ms_of(&r), 1000);
    grpc_test_reply_free(&r);
    ck_assert_int_eq(g_seen.calls, 1);
    wait_used(600 * 1024);
    atomic_store(&g_used, 0);
    /* ... and decompressed when the budget is free. */
    r = call(methods[0], z, zl);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_OK);
    grpc_test_reply_free(&r);
    ck_assert_int_eq(g_seen.calls, 2);
    ck_assert_uint_eq(g_seen.len, 300 * 1024);
    wait_used(0);

    sn_grpc_unary_stats st;
    sn_grpc_unary_stats_get(g_srv, &st);
    ck_assert_uint_eq(st.refused_budget, 2);
    free(z);
    free(body);
}
END_TEST

/* Starts a client call with `body` on its own thread and waits until the deferring handler
 * holds it (the handler's `n`-th call). */
static void call_held(client_call *c, const char *body, int n)
{
    memset(c, 0, sizeof *c);
    snprintf(c->body, sizeof c->body, "%s", body);
    ck_assert_int_eq(pthread_create(&c->th, NULL, client_main, c), 0);
    pthread_mutex_lock(&g_def.mu);
    while (g_def.n < n)
        pthread_cond_wait(&g_def.cv, &g_def.mu);
    pthread_mutex_unlock(&g_def.mu);
}

/* One admission decision per call, max_calls first: with one call held by the handler, a second
 * is refused as busy without asking the budget; with the held one answered, the next call
 * reserves once and gets in. */
START_TEST(max_calls_is_judged_before_the_budget_once)
{
    memset(&g_def, 0, sizeof g_def);
    pthread_mutex_init(&g_def.mu, NULL);
    pthread_cond_init(&g_def.cv, NULL);
    sn_grpc_unary_config cfg;
    budget_config(&cfg, deferring_handler, &g_def);
    cfg.allow_deferred = true;
    cfg.max_calls = 1;
    atomic_store(&g_reserves, 0);
    start_config(&cfg);

    client_call c;
    call_held(&c, "held", 1);
    ck_assert_int_eq(atomic_load(&g_reserves), 1);
    size_t held = atomic_load(&g_used);
    ck_assert_uint_gt(held, 0);

    grpc_test_reply r = call(methods[0], "q", 1);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_UNAVAILABLE);
    ck_assert(strstr(r.details, "busy") != NULL);
    grpc_test_reply_free(&r);
    ck_assert_int_eq(atomic_load(&g_reserves), 1); /* the busy call asked nothing */
    ck_assert_uint_eq(atomic_load(&g_used), held);

    sn_grpc_reply reply;
    memset(&reply, 0, sizeof reply);
    reply.code = SN_GRPC_OK;
    sn_grpc_unary_finish(g_def.later[0], &reply);
    pthread_join(c.th, NULL);
    ck_assert_int_eq(c.rc, 0);
    ck_assert_int_eq(c.r.grpc_status, 0);
    grpc_test_reply_free(&c.r);
    wait_used(0);

    /* A call refused by the budget gives its slot back: the next one gets in. */
    atomic_store(&g_used, g_cap);
    r = call(methods[0], "q", 1);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_UNAVAILABLE);
    ck_assert(strstr(r.details, "memory") != NULL);
    grpc_test_reply_free(&r);
    atomic_store(&g_used, 0);
    call_held(&c, "next", 2);
    sn_grpc_unary_finish(g_def.later[1], &reply);
    pthread_join(c.th, NULL);
    ck_assert_int_eq(c.r.grpc_status, 0);
    grpc_test_reply_free(&c.r);
    wait_used(0);

    sn_grpc_unary_stats st;
    sn_grpc_unary_stats_get(g_srv, &st);
    ck_assert_uint_eq(st.refused_busy, 1);
    ck_assert_uint_eq(st.refused_budget, 1);
    ck_assert_int_eq(atomic_load(&g_reserves), 3);
    pthread_cond_destroy(&g_def.cv);
    pthread_mutex_destroy(&g_def.mu);
}
END_TEST

/* The estimate a new call reserves before its message (twice the largest recent message) may
 * exceed a largest request lowered since: it is no reason to refuse the call for good -- a
 * small message still gets in (the estimate shrinks until it fits), only a message whose real
 * size does not fit is RESOURCE_EXHAUSTED, and with not even the least estimate fitting the
 * call is refused for now (RetryInfo). */
START_TEST(an_estimate_above_a_lowered_ceiling_refuses_nothing_for_good)
{
    sn_grpc_unary_config cfg;
    budget_config(&cfg, handler, &g_seen);
    start_config(&cfg);

    uint8_t *body = calloc(1, 300 * 1024);
    ck_assert_ptr_nonnull(body);
    grpc_test_reply r = call(methods[0], body, 300 * 1024); /* the estimate: 300 KiB */
    ck_assert_int_eq(r.grpc_status, SN_GRPC_OK);
    grpc_test_reply_free(&r);
    wait_used(0);

    /* The largest request drops to 400 KiB: twice the estimate no longer fits. */
    atomic_store(&g_ceiling, 400 * 1024);
    for (int i = 0; i < 2; i++) {
        atomic_store(&g_reserves, 0);
        r = call(methods[0], "q", 1);
        ck_assert_int_eq(r.grpc_status, SN_GRPC_OK);
        grpc_test_reply_free(&r);
        wait_used(0);
        /* The first call tries the old estimate once more; the next starts below the ceiling. */
        ck_assert_int_eq(atomic_load(&g_reserves), i == 0 ? 2 : 1);
    }
    ck_assert_int_eq(g_seen.calls, 3);

    /* 200 KiB needs 600 KiB: its real size is too large, for good. */
    r = call(methods[0], body, 200 * 1024);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_RESOURCE_EXHAUSTED);
    ck_assert_int_eq(retry_ms_of(&r), -1);
    grpc_test_reply_free(&r);
    wait_used(0);

    /* Not even the least estimate (2 x 64 KiB) fits: not now. */
    atomic_store(&g_ceiling, 64 * 1024);
    r = call(methods[0], "q", 1);
    ck_assert_int_eq(r.grpc_status, SN_GRPC_UNAVAILABLE);
    ck_assert_int_eq(retry_ms_of(&r), 1000);
    grpc_test_reply_free(&r);
    wait_used(0);
    ck_assert_int_eq(g_seen.calls, 3);

    sn_grpc_unary_stats st;
    sn_grpc_unary_stats_get(g_srv, &st);
    ck_assert_uint_eq(st.refused_too_large, 1);
    ck_assert_uint_eq(st.refused_budget, 1);
    free(body);
}
END_TEST

/* A handler that blocks its first call until `open` and records the first byte of each body. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    int n;
    uint8_t order[4];
} gate;

static gate g_gate;

static void gate_handler(unsigned method, const uint8_t *body, size_t len, sn_grpc_reply *reply,
                         void *ud)
{
    gate *g = ud;
    (void)method;
    pthread_mutex_lock(&g->mu);
    if (g->n < (int)sizeof g->order)
        g->order[g->n] = len > 0 ? body[0] : 0;
    g->n++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    reply->code = SN_GRPC_OK;
}

typedef struct big_call {
    pthread_t th;
    uint8_t *body;
    size_t len;
    grpc_test_reply r;
    int rc;
} big_call;

static void *big_client_main(void *arg)
{
    big_call *c = arg;
    c->rc = grpc_test_call(g_target, methods[0], c->body, c->len, 10000, &c->r);
    return NULL;
}

/* Polls the stats until `pred` holds (bounded: 10 s). */
static void wait_stats(bool (*pred)(const sn_grpc_unary_stats *))
{
    for (int i = 0; i < 1000; i++) {
        sn_grpc_unary_stats st;
        sn_grpc_unary_stats_get(g_srv, &st);
        if (pred(&st))
            return;
        nanosleep(&(struct timespec){0, 10000000L}, NULL);
    }
    ck_abort_msg("stats condition not reached");
}

static bool one_held(const sn_grpc_unary_stats *st)
{
    return st->held_bytes == 100 * 1024;
}

static bool one_parked(const sn_grpc_unary_stats *st)
{
    return st->reads_parked == 1;
}

/* cfg.max_held_bytes: with the handler busy and a 100 KiB message held in the queue (over the
 * 64 KiB bound), the next call's read waits -- not refused, not answered -- and proceeds once
 * the held message is copied out; the calls are handled in arrival order. */
START_TEST(a_read_waits_while_held_messages_pass_the_bound)
{
    memset(&g_gate, 0, sizeof g_gate);
    pthread_mutex_init(&g_gate.mu, NULL);
    pthread_cond_init(&g_gate.cv, NULL);
    sn_grpc_unary_config cfg;
    base_config(&cfg, gate_handler, &g_gate);
    cfg.max_held_bytes = 64 * 1024;
    start_config(&cfg);

    big_call c[3];
    memset(c, 0, sizeof c);
    for (int i = 0; i < 3; i++) {
        c[i].len = i == 1 ? 100 * 1024 : 1;
        c[i].body = malloc(c[i].len);
        ck_assert_ptr_nonnull(c[i].body);
        memset(c[i].body, 'a' + i, c[i].len);
    }
    /* a: in the handler (its message copied out, nothing held). */
    ck_assert_int_eq(pthread_create(&c[0].th, NULL, big_client_main, &c[0]), 0);
    pthread_mutex_lock(&g_gate.mu);
    while (g_gate.n < 1)
        pthread_cond_wait(&g_gate.cv, &g_gate.mu);
    pthread_mutex_unlock(&g_gate.mu);
    /* b: read (nothing held) and queued: 100 KiB held. */
    ck_assert_int_eq(pthread_create(&c[1].th, NULL, big_client_main, &c[1]), 0);
    wait_stats(one_held);
    /* c: its read waits. */
    ck_assert_int_eq(pthread_create(&c[2].th, NULL, big_client_main, &c[2]), 0);
    wait_stats(one_parked);
    nanosleep(&(struct timespec){0, 100000000L}, NULL);
    sn_grpc_unary_stats st;
    sn_grpc_unary_stats_get(g_srv, &st);
    ck_assert_uint_eq(st.read_waits, 1);
    ck_assert_uint_eq(st.reads_parked, 1);
    ck_assert_uint_eq(st.held_bytes, 100 * 1024);
    ck_assert_uint_eq(st.refused_busy + st.refused_budget, 0);
    for (unsigned i = 0; i < SN_GRPC_CODE_COUNT; i++)
        ck_assert_uint_eq(st.answers[i], 0);

    pthread_mutex_lock(&g_gate.mu);
    g_gate.open = true;
    pthread_cond_broadcast(&g_gate.cv);
    pthread_mutex_unlock(&g_gate.mu);
    for (int i = 0; i < 3; i++) {
        pthread_join(c[i].th, NULL);
        ck_assert_int_eq(c[i].rc, 0);
        ck_assert_int_eq(c[i].r.grpc_status, SN_GRPC_OK);
        grpc_test_reply_free(&c[i].r);
        free(c[i].body);
    }
    ck_assert_int_eq(g_gate.n, 3);
    ck_assert_mem_eq(g_gate.order, "abc", 3);
    sn_grpc_unary_stats_get(g_srv, &st);
    ck_assert_uint_eq(st.answers[SN_GRPC_OK], 3);
    ck_assert_uint_eq(st.read_waits, 1);
    ck_assert_uint_eq(st.reads_parked, 0);
    ck_assert_uint_eq(st.held_bytes, 0);
    pthread_cond_destroy(&g_gate.cv);
    pthread_mutex_destroy(&g_gate.mu);
}
END_TEST

/* Shutting down with a read waiting: the parked call is read and answered, nothing hangs. */
START_TEST(a_waiting_read_is_answered_at_shutdown)
{
    memset(&g_gate, 0, sizeof g_gate);
    pthread_mutex_init(&g_gate.mu, NULL);
    pthread_cond_init(&g_gate.cv, NULL);
    sn_grpc_unary_config cfg;
    base_config(&cfg, gate_handler, &g_gate);
    cfg.max_held_bytes = 64 * 1024;
    start_config(&cfg);
    big_call c[3];
    memset(c, 0, sizeof c);
    for (int i = 0; i < 3; i++) {
        c[i].len = i == 1 ? 100 * 1024 : 1;
        c[i].body = calloc(1, c[i].len);
        ck_assert_ptr_nonnull(c[i].body);
    }
    ck_assert_int_eq(pthread_create(&c[0].th, NULL, big_client_main, &c[0]), 0);
    pthread_mutex_lock(&g_gate.mu);
    while (g_gate.n < 1)
        pthread_cond_wait(&g_gate.cv, &g_gate.mu);
    pthread_mutex_unlock(&g_gate.mu);
    ck_assert_int_eq(pthread_create(&c[1].th, NULL, big_client_main, &c[1]), 0);
    wait_stats(one_held);
    ck_assert_int_eq(pthread_create(&c[2].th, NULL, big_client_main, &c[2]), 0);
    wait_stats(one_parked);
    pthread_mutex_lock(&g_gate.mu);
    g_gate.open = true; /* the shutdown below waits for the handler */
    pthread_cond_broadcast(&g_gate.cv);
    pthread_mutex_unlock(&g_gate.mu);
    sn_grpc_unary_shutdown(g_srv, 2000);
    for (int i = 0; i < 3; i++) {
        pthread_join(c[i].th, NULL);
        ck_assert_int_eq(c[i].rc, 0);
        grpc_test_reply_free(&c[i].r);
        free(c[i].body);
    }
    pthread_cond_destroy(&g_gate.cv);
    pthread_mutex_destroy(&g_gate.mu);
}
END_TEST

START_TEST(bad_config_is_refused_with_the_name)
{
    sn_grpc_unary_config cfg;
    sn_grpc_unary_config_init(&cfg);
    cfg.name = "my grpc";
    cfg.listen = "127.0.0.1:0";
    cfg.handler = handler;
    sn_grpc_unary *s = NULL;
    char err[256];
    ck_assert_int_eq(sn_grpc_unary_create(&cfg, &s, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(s);
    ck_assert(strstr(err, "my grpc: ") == err);
    ck_assert(strstr(err, "methods") != NULL);
    static const char *const bad[] = {"no-slash"};
    cfg.methods = bad;
    cfg.nmethods = 1;
    ck_assert_int_eq(sn_grpc_unary_create(&cfg, &s, err, sizeof err), -EINVAL);
    ck_assert(strstr(err, "method 0") != NULL);
    cfg.methods = methods;
    cfg.nmethods = SN_GRPC_UNARY_MAX_METHODS + 1;
    ck_assert_int_eq(sn_grpc_unary_create(&cfg, &s, err, sizeof err), -EINVAL);
    cfg.nmethods = 3;
    cfg.max_reply_bytes = (size_t)1 << 30;
    ck_assert_int_eq(sn_grpc_unary_create(&cfg, &s, err, sizeof err), -EINVAL);
    ck_assert(strstr(err, "reply") != NULL);
    cfg.max_reply_bytes = 0;
    cfg.window_bytes = (size_t)1 << 30;
    ck_assert_int_eq(sn_grpc_unary_create(&cfg, &s, err, sizeof err), -EINVAL);
    ck_assert(strstr(err, "window") != NULL);
    cfg.window_bytes = 0;
    cfg.handler = NULL;
    ck_assert_int_eq(sn_grpc_unary_create(&cfg, &s, err, sizeof err), -EINVAL);
    ck_assert(strstr(err, "handler") != NULL);
    cfg.handler = handler;
    cfg.name = NULL; /* defaults to "grpc" */
    cfg.listen = "nowhere";
    ck_assert_int_eq(sn_grpc_unary_create(&cfg, &s, err, sizeof err), -EINVAL);
    ck_assert(strstr(err, "grpc: listen") == err);
    /* Created, then shut down without ever starting, then destroyed. */
    cfg.listen = "127.0.0.1:0";
    ck_assert_int_eq(sn_grpc_unary_create(&cfg, &s, err, sizeof err), 0);
    sn_grpc_unary_shutdown(s, 0);
    ck_assert_int_eq(sn_grpc_unary_start(s), -EALREADY);
    sn_grpc_unary_destroy(s);
}
END_TEST

/* sn_grpc_unary_read_chunks: off puts -tcp_read_chunks ahead of the environment's entries (which
 * come later and win); on leaves GRPC_EXPERIMENTS alone. Only the environment is checked here:
 * gRPC read it at this process's first grpc_init (integration.sidecar_read_chunks checks that
 * gRPC obeys). */
START_TEST(read_chunks_sets_grpc_experiments)
{
    const char *old = getenv("GRPC_EXPERIMENTS");
    char *saved = old != NULL ? strdup(old) : NULL;

    ck_assert_int_eq(unsetenv("GRPC_EXPERIMENTS"), 0);
    ck_assert_int_eq(sn_grpc_unary_read_chunks(true), 0);
    ck_assert_ptr_null(getenv("GRPC_EXPERIMENTS"));
    ck_assert_int_eq(sn_grpc_unary_read_chunks(false), 0);
    ck_assert_str_eq(getenv("GRPC_EXPERIMENTS"), "-tcp_read_chunks");

    ck_assert_int_eq(setenv("GRPC_EXPERIMENTS", "tcp_read_chunks,event_engine_client", 1), 0);
    ck_assert_int_eq(sn_grpc_unary_read_chunks(true), 0);
    ck_assert_str_eq(getenv("GRPC_EXPERIMENTS"), "tcp_read_chunks,event_engine_client");
    ck_assert_int_eq(sn_grpc_unary_read_chunks(false), 0);
    ck_assert_str_eq(getenv("GRPC_EXPERIMENTS"),
                     "-tcp_read_chunks,tcp_read_chunks,event_engine_client");

    ck_assert_int_eq(setenv("GRPC_EXPERIMENTS", "", 1), 0);
    ck_assert_int_eq(sn_grpc_unary_read_chunks(false), 0);
    ck_assert_str_eq(getenv("GRPC_EXPERIMENTS"), "-tcp_read_chunks");

    if (saved != NULL)
        setenv("GRPC_EXPERIMENTS", saved, 1);
    else
        unsetenv("GRPC_EXPERIMENTS");
    free(saved);
}
END_TEST

static Suite *grpc_unary_suite(void)
{
    Suite *s = suite_create("grpc_unary");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, methods_dispatch_by_index_and_echo);
    tcase_add_test(tc, any_status_with_and_without_retry_info);
    tcase_add_test(tc, reply_over_capacity_is_internal);
    tcase_add_test(tc, zstd_sniffing_follows_accept_zstd);
    tcase_add_test(tc, deferred_answers_come_from_another_thread);
    tcase_add_test(tc, small_windows_carry_large_messages);
    tcase_add_test(tc, memory_budget_refuses_before_reading_and_bounds_decompression);
    tcase_add_test(tc, max_calls_is_judged_before_the_budget_once);
    tcase_add_test(tc, an_estimate_above_a_lowered_ceiling_refuses_nothing_for_good);
    tcase_add_test(tc, bad_config_is_refused_with_the_name);
    tcase_add_test(tc, a_read_waits_while_held_messages_pass_the_bound);
    tcase_add_test(tc, a_waiting_read_is_answered_at_shutdown);
    tcase_add_test(tc, small_plain_requests_are_handled_inline);
    tcase_add_test(tc, stage_histograms_count_every_handled_call);
    tcase_add_test(tc, read_chunks_sets_grpc_experiments);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(grpc_unary_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
