/*
 * webhook_it.c -- the webhook sink against a real HTTP receiver on loopback (a small HTTP/1.1
 * server on its own thread in this process, scriptable to answer 200, 500 or 400, to hang, or
 * to be down): headers, bearer token, HMAC signature, retries, dead letters, an outage and an
 * engine restart with pending deliveries -- every alert received exactly once.
 */
#include "it_util.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_REQ 128

typedef struct request {
    char alert_id[64];
    char delivery_id[32];
    char change[32];
    char auth[256];
    char signature[128];
    char content_type[64];
    char *body;
} request;

typedef struct receiver {
    int port;
    int lfd;
    pthread_t th;
    pthread_mutex_t mu;
    bool stop;
    /* script: status for each request (by order), then `then`; 0 = hang (never answer) */
    int script[32];
    unsigned nscript;
    int then;
    const char *reject_id; /* answer 400 to this alert id */
    unsigned calls;
    unsigned nreq; /* requests answered 2xx */
    request req[MAX_REQ];
} receiver;

static char g_dir[128];

static void header(const char *head, const char *name, char *out, size_t outlen)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = head; p != NULL && *p != '\0'; p = strstr(p, "\r\n")) {
        if (p[0] == '\r')
            p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t n = e != NULL ? (size_t)(e - v) : strlen(v);
            snprintf(out, outlen, "%.*s", (int)n, v);
            return;
        }
    }
}

/* Serves one connection until the peer closes or the receiver stops. */
static void serve(receiver *r, int fd)
{
    char buf[65536];
    size_t have = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, 50);
        pthread_mutex_lock(&r->mu);
        bool stop = r->stop;
        pthread_mutex_unlock(&r->mu);
        if (stop)
            return;
        if (pr <= 0)
            continue;
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0)
            return;
        have += (size_t)n;
        buf[have] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end == NULL)
            continue;
        char cl[32];
        header(buf, "Content-Length", cl, sizeof cl);
        size_t blen = (size_t)strtoul(cl, NULL, 10);
        size_t hlen = (size_t)(end + 4 - buf);
        if (have < hlen + blen)
            continue;
        request q;
        memset(&q, 0, sizeof q);
        *end = '\0';
        header(buf, "X-Sentinel-Alert-Id", q.alert_id, sizeof q.alert_id);
        header(buf, "X-Sentinel-Delivery-Id", q.delivery_id, sizeof q.delivery_id);
        header(buf, "X-Sentinel-Change", q.change, sizeof q.change);
        header(buf, "Authorization", q.auth, sizeof q.auth);
        header(buf, "X-Sentinel-Signature", q.signature, sizeof q.signature);
        header(buf, "Content-Type", q.content_type, sizeof q.content_type);
        q.body = strndup(buf + hlen, blen);
        pthread_mutex_lock(&r->mu);
        int status = r->calls < r->nscript ? r->script[r->calls] : r->then;
        r->calls++;
        if (r->reject_id != NULL && strcmp(q.alert_id, r->reject_id) == 0)
            status = 400;
        if (status >= 200 && status < 300 && r->nreq < MAX_REQ)
            r->req[r->nreq++] = q;
        else
            free(q.body);
        pthread_mutex_unlock(&r->mu);
        memmove(buf, buf + hlen + blen, have - hlen - blen);
        have -= hlen + blen;
        if (status == 0) { /* hang: never answer, wait for the client to give up */
            while (read(fd, buf, sizeof buf) > 0) {
            }
            return;
        }
        char resp[256];
        int rl = snprintf(resp, sizeof resp,
                          "HTTP/1.1 %d X\r\nContent-Length: 8\r\nContent-Type: text/plain\r\n\r\n"
                          "answered",
                          status);
        if (write(fd, resp, (size_t)rl) != rl)
            return;
    }
}

static void *receiver_main(void *arg)
{
    receiver *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        bool stop = r->stop;
        pthread_mutex_unlock(&r->mu);
        if (stop)
            break;
        struct pollfd p = {.fd = r->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(r->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        serve(r, fd);
        close(fd);
    }
    return NULL;
}

/* Starts listening on r->port (0: a free one). */
static void receiver_start(receiver *r)
{
    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(r->lfd, 0);
    int one = 1;
    setsockopt(r->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)r->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(r->lfd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(r->lfd, (struct sockaddr *)&a, &l);
    r->port = ntohs(a.sin_port);
    ck_assert_int_eq(listen(r->lfd, 16), 0);
    r->stop = false;
    ck_assert_int_eq(pthread_create(&r->th, NULL, receiver_main, r), 0);
}

static void receiver_stop(receiver *r)
{
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->th, NULL);
    close(r->lfd);
    r->lfd = -1;
}

static receiver *receiver_new(void)
{
    receiver *r = calloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    r->then = 200;
    r->lfd = -1;
    return r;
}

static void receiver_free(receiver *r)
{
    for (unsigned i = 0; i < r->nreq; i++)
        free(r->req[i].body);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Requests answered 2xx carrying this alert id and change. */
static unsigned received(receiver *r, const char *alert_id, const char *change)
{
    unsigned n = 0;
    pthread_mutex_lock(&r->mu);
    for (unsigned i = 0; i < r->nreq; i++)
        n += strcmp(r->req[i].alert_id, alert_id) == 0 && strcmp(r->req[i].change, change) == 0;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static sn_sink *webhook(int port, const char *token, const char *secret, int64_t timeout_ns)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/alerts", port);
    sn_webhook_config c = {.url = url, .token = token, .secret = secret, .timeout_ns = timeout_ns};
    sn_sink *s;
    char err[256];
    int rc = sn_sink_webhook_create(&c, &s, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    return s;
}

static void setup(void)
{
    it_tmpdir("sn-webhook-it", g_dir, sizeof g_dir);
}

static void teardown(void)
{
    it_rmrf(g_dir);
}

START_TEST(posts_alert_json_with_token_signature_and_ids)
{
    receiver *r = receiver_new();
    receiver_start(r);
    sn_store *st = it_store(g_dir);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, webhook(r->port, "tok-abc", "s3cret", 5 * IT_SEC));
    sn_alert a = it_alert(1, "chatbot", SN_SEV_HIGH);
    ck_assert_int_eq(sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a, it_now(), NULL), 1);
    a.status = SN_ALERT_RESOLVED;
    a.resolved_at_ns = it_now();
    ck_assert_int_eq(sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_RESOLVED, &a, it_now(), NULL), 1);
    ck_assert(it_wait_done(d, "webhook", 2, 10000));
    ck_assert_uint_eq(r->nreq, 2);
    const char *status[] = {"firing", "resolved"};
    const char *change[] = {"fired", "resolved"};
    for (int i = 0; i < 2; i++) {
        request *q = &r->req[i];
        ck_assert_str_eq(q->alert_id, a.alert_id);
        ck_assert_str_eq(q->change, change[i]);
        ck_assert_str_eq(q->auth, "Bearer tok-abc");
        ck_assert_str_eq(q->content_type, "application/json");
        ck_assert_int_gt(atoi(q->delivery_id), 0);
        char want[SN_WEBHOOK_SIGNATURE_MAX];
        ck_assert_int_eq(
            sn_webhook_signature("s3cret", q->body, strlen(q->body), want, sizeof want), 0);
        ck_assert_str_eq(q->signature, want);
        json_t *j = json_loads(q->body, 0, NULL);
        ck_assert_ptr_nonnull(j);
        ck_assert_str_eq(json_string_value(json_object_get(j, "alert_id")), a.alert_id);
        ck_assert_str_eq(json_string_value(json_object_get(j, "status")), status[i]);
        ck_assert_str_eq(json_string_value(json_object_get(j, "service_name")), "chatbot");
        json_decref(j);
    }
    ck_assert_str_ne(r->req[0].delivery_id, r->req[1].delivery_id);
    sn_deliver_destroy(d);
    sn_store_close(st);
    receiver_stop(r);
    receiver_free(r);
}
END_TEST

START_TEST(no_token_no_signature_headers)
{
    receiver *r = receiver_new();
    receiver_start(r);
    sn_store *st = it_store(g_dir);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, webhook(r->port, NULL, "", 5 * IT_SEC));
    sn_alert a = it_alert(2, "chatbot", SN_SEV_LOW);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a, it_now(), NULL);
    ck_assert(it_wait_done(d, "webhook", 1, 10000));
    ck_assert_str_eq(r->req[0].auth, "");
    ck_assert_str_eq(r->req[0].signature, "");
    sn_deliver_destroy(d);
    sn_store_close(st);
    receiver_stop(r);
    receiver_free(r);
}
END_TEST

START_TEST(retries_5xx_and_timeouts_dead_letters_4xx)
{
    receiver *r = receiver_new();
    r->script[0] = 503;
    r->script[1] = 0; /* hangs: the 300 ms timeout fires */
    r->script[2] = 500;
    r->nscript = 3;
    sn_alert a1 = it_alert(11, "svc", SN_SEV_HIGH), a2 = it_alert(12, "svc", SN_SEV_HIGH),
             a3 = it_alert(13, "svc", SN_SEV_HIGH);
    r->reject_id = a2.alert_id;
    receiver_start(r);
    sn_store *st = it_store(g_dir);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, webhook(r->port, NULL, NULL, 300 * IT_MS));
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a1, it_now(), NULL);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a2, it_now(), NULL);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a3, it_now(), NULL);
    ck_assert(it_wait_done(d, "webhook", 3, 15000));
    it_sleep_ms(200);
    ck_assert_uint_eq(received(r, a1.alert_id, "fired"), 1);
    ck_assert_uint_eq(received(r, a2.alert_id, "fired"), 0);
    ck_assert_uint_eq(received(r, a3.alert_id, "fired"), 1);
    ck_assert_str_eq(r->req[0].alert_id, a1.alert_id); /* order kept through the retries */
    sn_deliver_sink_stats s;
    ck_assert_int_eq(sn_deliver_sink_stats_get(d, "webhook", &s), 0);
    ck_assert_uint_eq(s.delivered, 2);
    ck_assert_uint_eq(s.failed, 3);
    ck_assert_uint_eq(s.dead_lettered, 1);
    uint64_t pend, dead, done;
    ck_assert_int_eq(sn_store_delivery_depth(st, "webhook", &pend, &dead, &done), 0);
    ck_assert_uint_eq(pend, 0);
    ck_assert_uint_eq(dead, 1);
    ck_assert_uint_eq(done, 2);
    sn_store_delivery dl;
    ck_assert_int_eq(sn_store_delivery_get(st, 2, &dl), 0);
    ck_assert_int_eq(dl.state, SN_DELIVERY_DEAD);
    ck_assert_str_eq(dl.alert_id, a2.alert_id);
    ck_assert_str_eq(dl.reason, "HTTP 400: answered");
    sn_store_delivery_clear(&dl);
    ck_assert_int_eq(sn_store_delivery_get(st, 1, &dl), 0);
    ck_assert_uint_eq(dl.attempts, 3);
    sn_store_delivery_clear(&dl);
    sn_deliver_destroy(d);
    sn_store_close(st);
    receiver_stop(r);
    receiver_free(r);
}
END_TEST

START_TEST(outage_then_up_delivers_each_once)
{
    receiver *r = receiver_new();
    r->port = it_free_port(); /* nobody listens yet */
    sn_store *st = it_store(g_dir);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, webhook(r->port, NULL, NULL, IT_SEC));
    sn_alert a[6];
    for (int i = 0; i < 6; i++) {
        a[i] = it_alert(20 + i, "svc", SN_SEV_MEDIUM);
        ck_assert_int_eq(sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a[i], it_now(), NULL),
                         1);
    }
    it_sleep_ms(1000);
    sn_deliver_sink_stats s;
    sn_deliver_sink_stats_get(d, "webhook", &s);
    ck_assert_uint_gt(s.failed, 0);
    ck_assert_uint_eq(s.delivered, 0);
    ck_assert_uint_ge(s.breaker_opened, 1); /* 5 connection failures in a row */
    receiver_start(r);
    ck_assert(it_wait_done(d, "webhook", 6, 15000));
    it_sleep_ms(300);
    ck_assert_uint_eq(r->nreq, 6);
    for (int i = 0; i < 6; i++)
        ck_assert_uint_eq(received(r, a[i].alert_id, "fired"), 1);
    sn_deliver_destroy(d);
    sn_store_close(st);
    receiver_stop(r);
    receiver_free(r);
}
END_TEST

START_TEST(engine_restart_with_pending_loses_and_repeats_nothing)
{
    receiver *r = receiver_new();
    r->port = it_free_port();
    sn_store *st = it_store(g_dir);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, webhook(r->port, NULL, NULL, IT_SEC));
    sn_alert a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = it_alert(40 + i, "svc", SN_SEV_MEDIUM);
        sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a[i], it_now(), NULL);
    }
    it_sleep_ms(300);
    sn_deliver_destroy(d); /* the aggregator stops with 4 pending */
    uint64_t pend;
    ck_assert_int_eq(sn_store_delivery_depth(st, "webhook", &pend, NULL, NULL), 0);
    ck_assert_uint_eq(pend, 4);
    receiver_start(r);
    d = it_engine(g_dir);
    it_add(d, webhook(r->port, NULL, NULL, IT_SEC));
    ck_assert(it_wait_done(d, "webhook", 4, 10000));
    sn_deliver_destroy(d);
    /* once more: nothing is sent again */
    d = it_engine(g_dir);
    it_add(d, webhook(r->port, NULL, NULL, IT_SEC));
    it_sleep_ms(500);
    sn_deliver_destroy(d);
    ck_assert_uint_eq(r->nreq, 4);
    ck_assert_uint_eq(r->calls, 4);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(received(r, a[i].alert_id, "fired"), 1);
    sn_store_close(st);
    receiver_stop(r);
    receiver_free(r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("webhook_it");
    TCase *tc = tcase_create("webhook");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, posts_alert_json_with_token_signature_and_ids);
    tcase_add_test(tc, no_token_no_signature_headers);
    tcase_add_test(tc, retries_5xx_and_timeouts_dead_letters_4xx);
    tcase_add_test(tc, outage_then_up_delivers_each_once);
    tcase_add_test(tc, engine_restart_with_pending_loses_and_repeats_nothing);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
