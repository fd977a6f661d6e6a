/* Unit tests for sidecar/ship.c against a scripted aggregator on 127.0.0.1 (the generic unary
 * gRPC server of shared/grpc_unary.h, answering with protoc-c-encoded IngestResponses). */
#include "ship.h"

#include "grpc_unary.h"
#include "sentinel/v1/sentinel.pb-c.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- the scripted aggregator ---------------------------------------------------------------- */

typedef enum agg_mode {
    AGG_ANSWER = 0, /* an IngestResponse with the scripted status */
    AGG_ERROR,      /* a gRPC error status */
    AGG_HANG,       /* no answer until released */
    AGG_GARBAGE,    /* an undecodable response message */
    AGG_BUSY        /* UNAVAILABLE with google.rpc.RetryInfo */
} agg_mode;

typedef struct agg {
    sn_grpc_unary *srv;
    char target[64];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    agg_mode mode;
    int status; /* IngestResponse.status */
    uint64_t ack;
    uint32_t retry_after_ms;
    int calls;
    bool hanging;  /* a handler is waiting in AGG_HANG */
    bool released; /* lets hanging handlers return */
    uint8_t last[4096];
    size_t last_len;
    uint64_t seen[16]; /* first 8 bytes of each request, in order */
} agg;

static const char *const ingest_methods[] = {SN_SHIP_METHOD};

static void agg_handler(unsigned method, const uint8_t *body, size_t len, sn_grpc_reply *reply,
                        void *ud)
{
    (void)method;
    agg *a = ud;
    pthread_mutex_lock(&a->mu);
    if (a->calls < 16 && len >= 8)
        memcpy(&a->seen[a->calls], body, 8);
    a->calls++;
    a->last_len = len < sizeof a->last ? len : sizeof a->last;
    memcpy(a->last, body, a->last_len);
    agg_mode mode = a->mode;
    if (mode == AGG_HANG) {
        a->hanging = true;
        pthread_cond_broadcast(&a->cv);
        while (!a->released)
            pthread_cond_wait(&a->cv, &a->mu);
        a->hanging = false;
    }
    Sentinel__V1__IngestResponse r = SENTINEL__V1__INGEST_RESPONSE__INIT;
    r.status = (Sentinel__V1__IngestStatus)a->status;
    r.acknowledged_sequence = a->ack;
    r.retry_after_ms = a->retry_after_ms;
    r.message = (char *)"scripted";
    pthread_mutex_unlock(&a->mu);

    switch (mode) {
    case AGG_ANSWER:
        reply->code = SN_GRPC_OK;
        reply->response_len = sentinel__v1__ingest_response__pack(&r, reply->response);
        break;
    case AGG_ERROR:
        reply->code = SN_GRPC_INVALID_ARGUMENT;
        snprintf(reply->message, sizeof reply->message, "bad batch");
        break;
    case AGG_BUSY:
        reply->code = SN_GRPC_UNAVAILABLE;
        snprintf(reply->message, sizeof reply->message, "busy");
        reply->retry = true;
        reply->retry_after_ms = 2750;
        break;
    case AGG_HANG:
        reply->code = SN_GRPC_UNAVAILABLE;
        snprintf(reply->message, sizeof reply->message, "released");
        break;
    case AGG_GARBAGE:
        reply->code = SN_GRPC_OK;
        memcpy(reply->response, "\x08\xff", 2); /* a varint cut short */
        reply->response_len = 2;
        break;
    }
}

static agg *agg_start(agg_mode mode, int status, uint64_t ack)
{
    agg *a = calloc(1, sizeof *a);
    ck_assert_ptr_nonnull(a);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    a->mode = mode;
    a->status = status;
    a->ack = ack;
    sn_grpc_unary_config cfg;
    sn_grpc_unary_config_init(&cfg);
    cfg.name = "test aggregator";
    cfg.listen = "127.0.0.1:0";
    cfg.methods = ingest_methods;
    cfg.nmethods = 1;
    cfg.accept_zstd = false;
    cfg.handler = agg_handler;
    cfg.handler_ud = a;
    char err[256];
    ck_assert_msg(sn_grpc_unary_create(&cfg, &a->srv, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(sn_grpc_unary_start(a->srv), 0);
    snprintf(a->target, sizeof a->target, "127.0.0.1:%d", sn_grpc_unary_port(a->srv));
    return a;
}

static void agg_release(agg *a)
{
    pthread_mutex_lock(&a->mu);
    a->released = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* Waits (up to 5 s) until a handler hangs in AGG_HANG. */
static void agg_wait_hanging(agg *a)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&a->mu);
    while (!a->hanging)
        if (pthread_cond_timedwait(&a->cv, &a->mu, &until) != 0)
            break;
    bool hanging = a->hanging;
    pthread_mutex_unlock(&a->mu);
    ck_assert(hanging);
}

static void agg_stop(agg *a)
{
    agg_release(a);
    sn_grpc_unary_destroy(a->srv);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* ---- the client side --------------------------------------------------------------------------
 */

typedef struct done {
    int calls;
    sn_ship_result res;
    double at_ms; /* when the callback ran */
    /* chaining: send these bytes again from the callback, `more` times */
    int more;
    const uint8_t *next;
    size_t next_len;
    int chain_rc;
} done;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void on_done(sn_ship *ship, const sn_ship_result *res, void *ud)
{
    done *d = ud;
    d->calls++;
    d->res = *res;
    d->at_ms = now_ms();
    ck_assert(!sn_ship_busy(ship));
    if (d->more > 0) {
        d->more--;
        d->chain_rc = sn_ship_send(ship, d->next, d->next_len, on_done, d);
    }
}

static sn_ship *ship_new(uv_loop_t *loop, const char *target, uint32_t deadline_ms)
{
    ck_assert_int_eq(uv_loop_init(loop), 0);
    sn_ship_config cfg;
    sn_ship_config_init(&cfg);
    cfg.aggregator = target;
    cfg.deadline_ms = deadline_ms;
    sn_ship *ship = NULL;
    char err[256];
    ck_assert_msg(sn_ship_create(&cfg, loop, &ship, err, sizeof err) == 0, "%s", err);
    return ship;
}

static void ship_free(sn_ship *ship, uv_loop_t *loop)
{
    sn_ship_destroy(ship);
    ck_assert_int_eq(uv_run(loop, UV_RUN_DEFAULT), 0); /* finishes closing the async handle */
    ck_assert_int_eq(uv_loop_close(loop), 0);
}

static const uint8_t REQ[] = "\x08\x01\x10\x2a\x1a\x05hello-ingest-request";

/* Sends REQ and runs the loop until the callback (uv_run returns once nothing is in flight). */
static void send_and_wait(sn_ship *ship, uv_loop_t *loop, done *d)
{
    ck_assert_int_eq(sn_ship_send(ship, REQ, sizeof REQ, on_done, d), 0);
    ck_assert(sn_ship_busy(ship));
    ck_assert_int_eq(uv_run(loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(d->calls, 1);
    ck_assert(!sn_ship_busy(ship));
}

START_TEST(ok_is_acked_with_the_sequence_and_the_exact_bytes)
{
    agg *a = agg_start(AGG_ANSWER, SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_OK, 42);
    uv_loop_t loop;
    sn_ship *ship = ship_new(&loop, a->target, 5000);
    /* The bytes are copied: the caller's buffer may change as soon as send returns. */
    uint8_t buf[sizeof REQ];
    memcpy(buf, REQ, sizeof REQ);
    done d = {0};
    ck_assert_int_eq(sn_ship_send(ship, buf, sizeof buf, on_done, &d), 0);
    memset(buf, 0xEE, sizeof buf);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(d.calls, 1);
    ck_assert_int_eq(d.res.outcome, SN_SHIP_ACKED);
    ck_assert_uint_eq(d.res.acknowledged_sequence, 42);
    ck_assert_int_eq(d.res.grpc_status, SN_GRPC_OK);
    ck_assert_str_eq(d.res.message, "scripted");
    ck_assert_int_eq(a->calls, 1);
    ck_assert_uint_eq(a->last_len, sizeof REQ);
    ck_assert_mem_eq(a->last, REQ, sizeof REQ);
    ship_free(ship, &loop);
    agg_stop(a);
}
END_TEST

START_TEST(duplicate_and_retry_after_are_reported)
{
    agg *a = agg_start(AGG_ANSWER, SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_DUPLICATE, 41);
    uv_loop_t loop;
    sn_ship *ship = ship_new(&loop, a->target, 5000);
    done d = {0};
    send_and_wait(ship, &loop, &d);
    ck_assert_int_eq(d.res.outcome, SN_SHIP_DUPLICATE);
    ck_assert_uint_eq(d.res.acknowledged_sequence, 41);

    pthread_mutex_lock(&a->mu);
    a->status = SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_RETRY_AFTER;
    a->ack = 40;
    a->retry_after_ms = 1500;
    pthread_mutex_unlock(&a->mu);
    d = (done){0};
    send_and_wait(ship, &loop, &d);
    ck_assert_int_eq(d.res.outcome, SN_SHIP_RETRY_AFTER);
    ck_assert_uint_eq(d.res.retry_after_ms, 1500);
    ck_assert_uint_eq(d.res.acknowledged_sequence, 40);

    /* UNSPECIFIED is never a success. */
    pthread_mutex_lock(&a->mu);
    a->status = SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_UNSPECIFIED;
    pthread_mutex_unlock(&a->mu);
    d = (done){0};
    send_and_wait(ship, &loop, &d);
    ck_assert_int_eq(d.res.outcome, SN_SHIP_FAILED);
    ck_assert_int_eq(d.res.grpc_status, SN_GRPC_OK);
    ck_assert_uint_eq(d.res.acknowledged_sequence, 0);
    ck_assert_ptr_nonnull(strstr(d.res.message, "status 0"));

    /* Nor is an undecodable response. */
    pthread_mutex_lock(&a->mu);
    a->mode = AGG_GARBAGE;
    pthread_mutex_unlock(&a->mu);
    d = (done){0};
    send_and_wait(ship, &loop, &d);
    ck_assert_int_eq(d.res.outcome, SN_SHIP_FAILED);
    ck_assert_ptr_nonnull(strstr(d.res.message, "bad IngestResponse"));
    ck_assert_int_eq(a->calls, 4);
    ship_free(ship, &loop);
    agg_stop(a);
}
END_TEST

START_TEST(grpc_error_status_is_failed_with_code_message_and_retry_info)
{
    agg *a = agg_start(AGG_ERROR, 0, 0);
    uv_loop_t loop;
    sn_ship *ship = ship_new(&loop, a->target, 5000);
    done d = {0};
    send_and_wait(ship, &loop, &d);
    ck_assert_int_eq(d.res.outcome, SN_SHIP_FAILED);
    ck_assert_int_eq(d.res.grpc_status, SN_GRPC_INVALID_ARGUMENT);
    ck_assert_str_eq(d.res.message, "bad batch");
    ck_assert_uint_eq(d.res.retry_after_ms, 0);

    /* A busy refusal's RetryInfo delay is passed on. */
    pthread_mutex_lock(&a->mu);
    a->mode = AGG_BUSY;
    pthread_mutex_unlock(&a->mu);
    d = (done){0};
    send_and_wait(ship, &loop, &d);
    ck_assert_int_eq(d.res.outcome, SN_SHIP_FAILED);
    ck_assert_int_eq(d.res.grpc_status, SN_GRPC_UNAVAILABLE);
    ck_assert_str_eq(d.res.message, "busy");
    ck_assert_uint_eq(d.res.retry_after_ms, 2750);
    ship_free(ship, &loop);
    agg_stop(a);
}
END_TEST

/* A port on 127.0.0.1 that nothing listens on. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

START_TEST(aggregator_down_fails_fast_with_unavailable)
{
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", closed_port());
    uv_loop_t loop;
    sn_ship *ship = ship_new(&loop, target, 5000);
    for (int i = 0; i < 2; i++) { /* the second one meets the channel in reconnect backoff */
        done d = {0};
        double t0 = now_ms();
        send_and_wait(ship, &loop, &d);
        ck_assert_int_eq(d.res.outcome, SN_SHIP_FAILED);
        ck_assert_int_eq(d.res.grpc_status, SN_GRPC_UNAVAILABLE);
        ck_assert_double_lt(d.at_ms - t0, 2500.0); /* not the 5 s deadline */
    }
    ship_free(ship, &loop);
}
END_TEST

START_TEST(silent_aggregator_hits_the_deadline)
{
    agg *a = agg_start(AGG_HANG, 0, 0);
    uv_loop_t loop;
    sn_ship *ship = ship_new(&loop, a->target, 300);
    done d = {0};
    double t0 = now_ms();
    send_and_wait(ship, &loop, &d);
    double took = d.at_ms - t0;
    ck_assert_int_eq(d.res.outcome, SN_SHIP_FAILED);
    ck_assert_int_eq(d.res.grpc_status, SN_GRPC_DEADLINE_EXCEEDED);
    ck_assert_double_ge(took, 250.0);
    ck_assert_double_lt(took, 3000.0);
    ship_free(ship, &loop);
    agg_stop(a);
}
END_TEST

START_TEST(one_call_at_a_time_and_sends_chain_in_order)
{
    agg *a = agg_start(AGG_HANG, SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_OK, 7);
    uv_loop_t loop;
    sn_ship *ship = ship_new(&loop, a->target, 5000);
    done d = {0};
    ck_assert_int_eq(sn_ship_send(ship, REQ, sizeof REQ, on_done, &d), 0);
    ck_assert_int_eq(sn_ship_send(ship, REQ, sizeof REQ, on_done, &d), -EBUSY);
    agg_wait_hanging(a);
    ck_assert_int_eq(sn_ship_send(ship, REQ, sizeof REQ, on_done, &d), -EBUSY);
    pthread_mutex_lock(&a->mu);
    a->mode = AGG_ANSWER; /* later calls answer at once */
    pthread_mutex_unlock(&a->mu);
    agg_release(a);
    /* Each callback sends the next request: three more, strictly one after the other. */
    static const uint8_t r2[] = "22222222", r3[] = "33333333";
    d.more = 1;
    d.next = r2;
    d.next_len = sizeof r2;
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(d.calls, 2);
    ck_assert_int_eq(d.chain_rc, 0);
    d.more = 1;
    d.next = r3;
    d.next_len = sizeof r3;
    ck_assert_int_eq(sn_ship_send(ship, r2, sizeof r2, on_done, &d), 0);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(d.calls, 4);
    ck_assert_int_eq(d.res.outcome, SN_SHIP_ACKED);
    ck_assert_int_eq(a->calls, 4);
    ck_assert_mem_eq(&a->seen[0], REQ, 8);
    ck_assert_mem_eq(&a->seen[1], r2, 8);
    ck_assert_mem_eq(&a->seen[2], r2, 8);
    ck_assert_mem_eq(&a->seen[3], r3, 8);
    ship_free(ship, &loop);
    agg_stop(a);
}
END_TEST

START_TEST(destroy_cancels_the_call_and_calls_back_once)
{
    agg *a = agg_start(AGG_HANG, 0, 0);
    uv_loop_t loop;
    sn_ship *ship = ship_new(&loop, a->target, 20000);
    done d = {0};
    ck_assert_int_eq(sn_ship_send(ship, REQ, sizeof REQ, on_done, &d), 0);
    agg_wait_hanging(a); /* the call is at the aggregator */
    d.more = 1;          /* a send from the callback during destroy is refused */
    d.next = REQ;
    d.next_len = sizeof REQ;
    double t0 = now_ms();
    sn_ship_destroy(ship);
    ck_assert_double_lt(now_ms() - t0, 2000.0);
    ck_assert_int_eq(d.calls, 1);
    ck_assert_int_eq(d.res.outcome, SN_SHIP_FAILED);
    ck_assert_int_eq(d.res.grpc_status, SN_GRPC_CANCELLED);
    ck_assert_int_eq(d.chain_rc, -ECANCELED);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(d.calls, 1);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    agg_stop(a);
}
END_TEST

START_TEST(idle_destroy_and_bad_arguments)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    sn_ship_config cfg;
    sn_ship_config_init(&cfg);
    ck_assert_str_eq(cfg.aggregator, "localhost:9090");
    ck_assert_uint_eq(cfg.deadline_ms, 5000);
    sn_ship *ship = NULL;
    char err[256];
    cfg.aggregator = "no-port";
    ck_assert_int_eq(sn_ship_create(&cfg, &loop, &ship, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "ship: aggregator must be host:port");
    cfg.aggregator = "127.0.0.1:1";
    cfg.deadline_ms = 0;
    ck_assert_int_eq(sn_ship_create(&cfg, &loop, &ship, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "ship: deadline_ms must be 1 to 3600000");
    cfg.deadline_ms = 1000;
    cfg.max_message_bytes = 10;
    ck_assert_int_eq(sn_ship_create(&cfg, &loop, &ship, err, sizeof err), -EINVAL);
    cfg.max_message_bytes = 1024;
    cfg.reconnect_max_ms = 50;
    ck_assert_int_eq(sn_ship_create(&cfg, &loop, &ship, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(ship);
    cfg.reconnect_max_ms = 1000;
    ck_assert_int_eq(sn_ship_create(&cfg, &loop, &ship, err, sizeof err), 0);

    static uint8_t big[1025];
    done d = {0};
    ck_assert_int_eq(sn_ship_send(ship, big, sizeof big, on_done, &d), -EMSGSIZE);
    ck_assert_int_eq(sn_ship_send(ship, big, 10, NULL, &d), -EINVAL);
    ck_assert_int_eq(sn_ship_send(ship, NULL, 10, on_done, &d), -EINVAL);
    ck_assert(!sn_ship_busy(ship));
    /* Idle: the async handle does not keep the loop alive. */
    ck_assert_int_eq(uv_run(&loop, UV_RUN_NOWAIT), 0);
    sn_ship_destroy(ship);
    sn_ship_destroy(NULL);
    ck_assert_int_eq(d.calls, 0);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

static Suite *ship_suite(void)
{
    Suite *s = suite_create("ship");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, ok_is_acked_with_the_sequence_and_the_exact_bytes);
    tcase_add_test(tc, duplicate_and_retry_after_are_reported);
    tcase_add_test(tc, grpc_error_status_is_failed_with_code_message_and_retry_info);
    tcase_add_test(tc, aggregator_down_fails_fast_with_unavailable);
    tcase_add_test(tc, silent_aggregator_hits_the_deadline);
    tcase_add_test(tc, one_call_at_a_time_and_sends_chain_in_order);
    tcase_add_test(tc, destroy_cancels_the_call_and_calls_back_once);
    tcase_add_test(tc, idle_destroy_and_bad_arguments);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ship_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
