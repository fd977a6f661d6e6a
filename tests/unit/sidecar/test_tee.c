/* Unit tests for sidecar/tee.c: the upstream collector is played by the project's own OTLP
 * transports (shared/otlp/grpc_server.c and http_server.c) on 127.0.0.1, with a handler that
 * records every request and can be scripted to refuse. */
#include "otlp/grpc_server.h"
#include "otlp/http_server.h"
#include "tee.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define REC_MAX 64

/* ---------------------------------------------------------------- the recording upstream */

typedef struct got {
    sn_otlp_signal signal;
    sn_otlp_encoding encoding;
    uint8_t *body;
    size_t len;
} got;

typedef struct rec {
    pthread_mutex_t mu;
    int calls; /* handler calls, refused ones included */
    int n;     /* accepted requests recorded in got[] */
    got got[REC_MAX];
    int refuse_left;         /* refuse this many calls ... */
    sn_otlp_outcome refuse;  /* ... with this outcome ... */
    uint32_t retry_after_ms; /* ... and this hint */
    int sleep_ms;            /* every call takes this long */
    char route_path[128];    /* the last non-OTLP path seen by the HTTP route */
} rec;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void rec_handler(sn_otlp_signal signal, sn_otlp_encoding encoding, const uint8_t *body,
                        size_t len, sn_otlp_result *res, void *ud)
{
    rec *r = ud;
    pthread_mutex_lock(&r->mu);
    int sleep_for = r->sleep_ms;
    pthread_mutex_unlock(&r->mu);
    if (sleep_for > 0)
        sleep_ms(sleep_for);
    pthread_mutex_lock(&r->mu);
    r->calls++;
    if (r->refuse_left > 0) {
        r->refuse_left--;
        res->outcome = r->refuse;
        res->retry_after_ms = r->retry_after_ms;
        snprintf(res->message, sizeof res->message, "scripted refusal");
    } else if (r->n < REC_MAX) {
        got *g = &r->got[r->n++];
        g->signal = signal;
        g->encoding = encoding;
        g->body = malloc(len ? len : 1);
        memcpy(g->body, body, len);
        g->len = len;
    }
    pthread_mutex_unlock(&r->mu);
}

/* Accepts OTLP requests sent under a base path ("/otel/v1/traces") and records them. */
static bool rec_route(const char *method, const char *path, const uint8_t *body, size_t len,
                      sn_http_reply *reply, void *ud)
{
    rec *r = ud;
    (void)method;
    pthread_mutex_lock(&r->mu);
    snprintf(r->route_path, sizeof r->route_path, "%s", path);
    if (r->n < REC_MAX) {
        got *g = &r->got[r->n++];
        g->signal = SN_OTLP_TRACES;
        g->body = malloc(len ? len : 1);
        memcpy(g->body, body, len);
        g->len = len;
    }
    r->calls++;
    pthread_mutex_unlock(&r->mu);
    reply->status = 200;
    return true;
}

typedef enum kind { GRPC = 0, HTTP = 1 } kind;

typedef struct upstream {
    kind kind;
    sn_grpc_server *g;
    sn_http_server *h;
    int port;
    rec r;
} upstream;

static void rec_init(rec *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
}

static void rec_free(rec *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->got[i].body);
    r->n = 0;
    pthread_mutex_destroy(&r->mu);
}

/* Starts the upstream on 127.0.0.1:port (0: any free port). The recorder is kept. */
static void upstream_start(upstream *u, kind k, int port)
{
    char listen[64], err[256];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    u->kind = k;
    if (k == GRPC) {
        sn_grpc_server_config cfg;
        sn_grpc_server_config_init(&cfg);
        cfg.listen = listen;
        cfg.handler = rec_handler;
        cfg.handler_ud = &u->r;
        ck_assert_msg(sn_grpc_server_create(&cfg, &u->g, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(sn_grpc_server_start(u->g), 0);
        u->port = sn_grpc_server_port(u->g);
    } else {
        sn_http_server_config cfg = {.listen = listen,
                                     .handler = rec_handler,
                                     .handler_ud = &u->r,
                                     .route = rec_route,
                                     .route_ud = &u->r};
        ck_assert_msg(sn_http_server_create(&cfg, &u->h, err, sizeof err) == 0, "%s", err);
        ck_assert_msg(sn_http_server_start(u->h, err, sizeof err) == 0, "%s", err);
        u->port = sn_http_server_port(u->h);
    }
    ck_assert_int_gt(u->port, 0);
}

static void upstream_stop(upstream *u)
{
    if (u->g != NULL) {
        sn_grpc_server_shutdown(u->g, 0);
        sn_grpc_server_destroy(u->g);
        u->g = NULL;
    }
    if (u->h != NULL) {
        sn_http_server_destroy(u->h);
        u->h = NULL;
    }
}

/* A tee to the upstream `u` with short, test-friendly delays. */
static sn_tee *tee_to(const upstream *u, unsigned workers, bool gzip)
{
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", u->port);
    sn_tee_config cfg;
    sn_tee_config_init(&cfg);
    cfg.url = url;
    cfg.protocol = u->kind == GRPC ? SN_TEE_GRPC : SN_TEE_HTTP;
    cfg.workers = workers;
    cfg.gzip = gzip;
    cfg.backoff_ms = 20;
    cfg.max_backoff_ms = 100;
    cfg.timeout_ms = 5000;
    sn_tee *t = NULL;
    ck_assert_msg(sn_tee_create(&cfg, &t, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(sn_tee_protocol_of(t), u->kind == GRPC ? SN_TEE_GRPC : SN_TEE_HTTP);
    return t;
}

/* Every submitted request is accounted for exactly once. */
static void check_invariant(const sn_tee_stats *s)
{
    uint64_t sum = s->delivered + s->dropped_overflow + s->dropped_too_large + s->dropped_rejected +
                   s->dropped_expired + s->dropped_shutdown + s->not_forwarded + s->queued +
                   s->in_flight;
    ck_assert_uint_eq(sum, s->submitted);
}

/* Polls the tee until the stats field at `off` reaches `want` or `ms` pass, asserts it is
 * exactly `want`, and returns the stats. */
static sn_tee_stats wait_stat(sn_tee *t, size_t off, uint64_t want, int ms, const char *name)
{
    sn_tee_stats st;
    uint64_t v;
    int64_t until = mono_ms() + ms;
    for (;;) {
        sn_tee_stats_get(t, &st);
        memcpy(&v, (const char *)&st + off, sizeof v);
        if (v >= want || mono_ms() > until)
            break;
        sleep_ms(5);
    }
    ck_assert_msg(v == want, "%s is %llu, want %llu", name, (unsigned long long)v,
                  (unsigned long long)want);
    return st;
}

#define WAIT_STAT(t, field, want, ms)                                                              \
    wait_stat((t), offsetof(sn_tee_stats, field), (uint64_t)(want), (ms), #field)

/* A body that is distinct per (tag, i) and not trivially short. */
static size_t make_body(uint8_t *buf, size_t cap, int tag, int i)
{
    char head[320]; /* formatted apart, so a small `cap` is a plain cut, not a truncation */
    int hn = snprintf(head, sizeof head, "{\"tag\":%d,\"i\":%d,\"pad\":\"%0200d\",\"bin\":\"", tag,
                      i, i);
    size_t n = hn < 0 ? 0 : (size_t)hn;
    if (n >= sizeof head)
        n = sizeof head - 1;
    if (cap == 0)
        return 0;
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, head, n);
    for (int k = 0; k < 32 && n < cap; k++)
        buf[n++] = (uint8_t)(tag * 31 + i * 7 + k); /* includes NUL and high bytes */
    return n;
}

static bool got_is(const got *g, sn_otlp_signal s, sn_otlp_encoding e, const uint8_t *b, size_t len)
{
    return g->signal == s && g->encoding == e && g->len == len && memcmp(g->body, b, len) == 0;
}

/* ---------------------------------------------------------------- URL and config */

static int try_create(const char *url, sn_tee_protocol p, sn_tee_protocol *chosen, char *err,
                      size_t errlen)
{
    sn_tee_config cfg;
    sn_tee_config_init(&cfg);
    cfg.url = url;
    cfg.protocol = p;
    cfg.workers = 1;
    sn_tee *t = NULL;
    err[0] = '\0';
    int rc = sn_tee_create(&cfg, &t, err, errlen);
    if (rc == 0) {
        *chosen = sn_tee_protocol_of(t);
        sn_tee_destroy(t, 0, NULL);
    } else {
        ck_assert_ptr_null(t);
    }
    return rc;
}

START_TEST(url_picks_protocol)
{
    static const struct {
        const char *url;
        sn_tee_protocol forced, want;
    } ok[] = {
        {"http://collector:4317", SN_TEE_AUTO, SN_TEE_GRPC},
        {"http://collector:4317/", SN_TEE_AUTO, SN_TEE_GRPC},
        {"HTTP://10.0.0.1:4317", SN_TEE_AUTO, SN_TEE_GRPC},
        {"http://[::1]:4317", SN_TEE_AUTO, SN_TEE_GRPC},
        {"https://collector.example.com:4317", SN_TEE_AUTO, SN_TEE_GRPC},
        {"http://collector:4318", SN_TEE_AUTO, SN_TEE_HTTP},
        {"http://collector:4317/otlp", SN_TEE_AUTO, SN_TEE_HTTP},
        {"http://collector", SN_TEE_AUTO, SN_TEE_HTTP},
        {"https://otlp.example.com/v1base/", SN_TEE_AUTO, SN_TEE_HTTP},
        {"http://collector:9999", SN_TEE_GRPC, SN_TEE_GRPC},
        {"http://collector:4317", SN_TEE_HTTP, SN_TEE_HTTP},
    };
    char err[256];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        sn_tee_protocol got_p = SN_TEE_AUTO;
        ck_assert_msg(try_create(ok[i].url, ok[i].forced, &got_p, err, sizeof err) == 0, "%s: %s",
                      ok[i].url, err);
        ck_assert_msg(got_p == ok[i].want, "%s: protocol %d", ok[i].url, (int)got_p);
    }
}
END_TEST

START_TEST(bad_urls_name_the_variable)
{
    static const struct {
        const char *url;
        sn_tee_protocol forced;
        const char *why;
    } bad[] = {
        {"", SN_TEE_AUTO, "no upstream URL"},
        {"collector:4317", SN_TEE_AUTO, "http:// or https://"},
        {"grpc://collector:4317", SN_TEE_AUTO, "http:// or https://"},
        {"http://", SN_TEE_AUTO, "no host"},
        {"http://:4317", SN_TEE_AUTO, "no host"},
        {"http://collector:", SN_TEE_AUTO, "bad port"},
        {"http://collector:0", SN_TEE_AUTO, "1..65535"},
        {"http://collector:65536", SN_TEE_AUTO, "1..65535"},
        {"http://collector:43x7", SN_TEE_AUTO, "bad port"},
        {"http://user:pw@collector:4318", SN_TEE_AUTO, "passwords"},
        {"http://collector:4318/v1?x=1", SN_TEE_AUTO, "query"},
        {"http://collector:4318#top", SN_TEE_AUTO, "query or fragment"},
        {"http://coll ector:4318", SN_TEE_AUTO, "space"},
        {"http://[::1:4317", SN_TEE_AUTO, "IPv6"},
        {"http://coll$ector:4318", SN_TEE_AUTO, "host name"},
        {"http://collector:4318/otlp", SN_TEE_GRPC, "no path"},
    };
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sn_tee_protocol p;
        int rc = try_create(bad[i].url, bad[i].forced, &p, err, sizeof err);
        ck_assert_msg(rc == -EINVAL, "%s accepted", bad[i].url);
        ck_assert_msg(strstr(err, "SENTINEL_UPSTREAM_OTLP") != NULL, "%s: %s", bad[i].url, err);
        ck_assert_msg(strstr(err, bad[i].why) != NULL, "%s: %s", bad[i].url, err);
    }
    /* a NULL URL and out-of-range limits */
    sn_tee_config cfg;
    sn_tee *t = NULL;
    sn_tee_config_init(&cfg);
    ck_assert_int_eq(sn_tee_create(&cfg, &t, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(t);
    cfg.url = "http://collector:4318";
    cfg.workers = SN_TEE_MAX_WORKERS + 1;
    ck_assert_int_eq(sn_tee_create(&cfg, &t, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "workers"));
    cfg.workers = 1;
    cfg.backoff_ms = 5000;
    cfg.max_backoff_ms = 1000;
    ck_assert_int_eq(sn_tee_create(&cfg, &t, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(t);
}
END_TEST

/* ---------------------------------------------------------------- forwarding unchanged */

/* Sends one request per signal (and, for HTTP, per encoding) and checks each arrives once,
 * byte for byte, in order. */
static void forward_all(kind k, bool gzip)
{
    upstream u = {0};
    rec_init(&u.r);
    upstream_start(&u, k, 0);
    sn_tee *t = tee_to(&u, 1, gzip);

    uint8_t bodies[6][512];
    size_t lens[6];
    sn_otlp_signal sig[6];
    sn_otlp_encoding enc[6];
    int n = 0;
    for (int e = 0; e < (k == HTTP ? 2 : 1); e++)
        for (int s = 0; s < SN_OTLP_SIGNAL_COUNT; s++) {
            sig[n] = (sn_otlp_signal)s;
            enc[n] = (sn_otlp_encoding)e;
            lens[n] = make_body(bodies[n], sizeof bodies[n], 1, n);
            ck_assert_int_eq(sn_tee_submit(t, sig[n], enc[n], bodies[n], lens[n]), 0);
            n++;
        }
    if (k == GRPC) /* JSON cannot ride on gRPC: counted, not forwarded */
        ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_TRACES, SN_OTLP_JSON, bodies[0], lens[0]),
                         -ENOTSUP);

    sn_tee_stats st = WAIT_STAT(t, delivered, n, 5000);
    ck_assert_uint_eq(st.not_forwarded, k == GRPC ? 1u : 0u);
    ck_assert_uint_eq(st.attempts, (uint64_t)n);
    ck_assert_uint_eq(st.retries, 0);
    check_invariant(&st);
    pthread_mutex_lock(&u.r.mu);
    ck_assert_int_eq(u.r.n, n);
    for (int i = 0; i < n; i++)
        ck_assert_msg(got_is(&u.r.got[i], sig[i], enc[i], bodies[i], lens[i]),
                      "request %d changed on the way", i);
    pthread_mutex_unlock(&u.r.mu);

    sn_tee_destroy(t, 1000, &st);
    ck_assert_uint_eq(st.dropped_shutdown, 0);
    upstream_stop(&u);
    rec_free(&u.r);
}

START_TEST(grpc_forwards_each_signal_unchanged)
{
    forward_all(GRPC, false);
}
END_TEST

START_TEST(grpc_gzip_forwards_unchanged)
{
    forward_all(GRPC, true);
}
END_TEST

START_TEST(http_forwards_both_encodings_unchanged)
{
    forward_all(HTTP, false);
}
END_TEST

START_TEST(http_gzip_forwards_unchanged)
{
    forward_all(HTTP, true);
}
END_TEST

START_TEST(http_url_path_is_a_base)
{
    upstream u = {0};
    rec_init(&u.r);
    upstream_start(&u, HTTP, 0);
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/otel/", u.port);
    sn_tee_config cfg;
    sn_tee_config_init(&cfg);
    cfg.url = url;
    cfg.workers = 1;
    sn_tee *t = NULL;
    ck_assert_msg(sn_tee_create(&cfg, &t, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(sn_tee_protocol_of(t), SN_TEE_HTTP);
    const uint8_t body[] = "metrics";
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_METRICS, SN_OTLP_PROTOBUF, body, 7), 0);
    WAIT_STAT(t, delivered, 1, 5000);
    pthread_mutex_lock(&u.r.mu);
    ck_assert_str_eq(u.r.route_path, "/otel/v1/metrics");
    ck_assert_int_eq(u.r.n, 1);
    ck_assert_mem_eq(u.r.got[0].body, body, 7);
    pthread_mutex_unlock(&u.r.mu);
    sn_tee_destroy(t, 0, NULL);
    upstream_stop(&u);
    rec_free(&u.r);
}
END_TEST

/* ---------------------------------------------------------------- a raw HTTP upstream */

/* A one-connection-at-a-time HTTP/1.1 listener that records each request's head and body and
 * answers with scripted status lines ("502 Bad Gateway", "503 x\r\nRetry-After: 1"), then 200.
 * It sees the bytes on the wire, before any decompression. */
typedef struct raw {
    int fd;
    int port;
    pthread_t th;
    atomic_bool stop;
    const char *answers[4];
    pthread_mutex_t mu;
    int served;
    char head[4][2048];
    uint8_t *body[4];
    size_t len[4];
} raw;

static void *raw_main(void *arg)
{
    raw *r = arg;
    while (!atomic_load(&r->stop)) {
        struct pollfd pfd = {r->fd, POLLIN, 0};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        int c = accept(r->fd, NULL, NULL);
        if (c < 0)
            continue;
        static char buf[1 << 16];
        size_t n = 0;
        char *end = NULL;
        while (end == NULL && n < sizeof buf - 1) {
            ssize_t k = read(c, buf + n, sizeof buf - 1 - n);
            if (k <= 0)
                break;
            n += (size_t)k;
            buf[n] = '\0';
            end = strstr(buf, "\r\n\r\n");
        }
        if (end == NULL) {
            close(c);
            continue;
        }
        size_t head_len = (size_t)(end + 4 - buf), clen = 0;
        for (char *p = buf; p < end; p++)
            if (strncasecmp(p, "\r\ncontent-length:", 17) == 0) {
                for (p += 17; *p == ' '; p++)
                    ;
                for (; *p >= '0' && *p <= '9'; p++)
                    clen = clen * 10 + (size_t)(*p - '0');
                break;
            }
        while (n < head_len + clen && n < sizeof buf) {
            ssize_t k = read(c, buf + n, sizeof buf - n);
            if (k <= 0)
                break;
            n += (size_t)k;
        }
        pthread_mutex_lock(&r->mu);
        int i = r->served < 4 ? r->served : 3;
        snprintf(r->head[i], sizeof r->head[i], "%.*s", (int)head_len, buf);
        free(r->body[i]);
        r->body[i] = malloc(clen ? clen : 1);
        memcpy(r->body[i], buf + head_len, clen);
        r->len[i] = clen;
        const char *ans = r->served < 4 && r->answers[r->served] ? r->answers[r->served] : "200 OK";
        r->served++;
        pthread_mutex_unlock(&r->mu);
        char out[512];
        int m = snprintf(out, sizeof out,
                         "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", ans);
        ck_assert_int_eq(write(c, out, (size_t)m), m);
        close(c);
    }
    return NULL;
}

static void raw_start(raw *r)
{
    r->fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(r->fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(r->fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(r->fd, 8), 0);
    socklen_t al = sizeof a;
    ck_assert_int_eq(getsockname(r->fd, (struct sockaddr *)&a, &al), 0);
    r->port = ntohs(a.sin_port);
    pthread_mutex_init(&r->mu, NULL);
    atomic_init(&r->stop, false);
    ck_assert_int_eq(pthread_create(&r->th, NULL, raw_main, r), 0);
}

static void raw_stop(raw *r)
{
    atomic_store(&r->stop, true);
    pthread_join(r->th, NULL);
    close(r->fd);
    for (int i = 0; i < 4; i++)
        free(r->body[i]);
    pthread_mutex_destroy(&r->mu);
}

static sn_tee *tee_to_raw(const raw *r, const char *path, bool gzip, uint32_t backoff_ms)
{
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", r->port, path);
    sn_tee_config cfg;
    sn_tee_config_init(&cfg);
    cfg.url = url;
    cfg.workers = 1;
    cfg.gzip = gzip;
    cfg.backoff_ms = backoff_ms;
    cfg.max_backoff_ms = backoff_ms;
    sn_tee *t = NULL;
    ck_assert_msg(sn_tee_create(&cfg, &t, err, sizeof err) == 0, "%s", err);
    return t;
}

/* Inflates a gzip member. Returns its length, or (size_t)-1. */
static size_t gunzip(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK)
        return (size_t)-1;
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int rc = inflate(&zs, Z_FINISH);
    size_t n = zs.total_out;
    inflateEnd(&zs);
    return rc == Z_STREAM_END ? n : (size_t)-1;
}

START_TEST(http_wire_has_content_type_and_gzip)
{
    raw r = {0};
    raw_start(&r);
    sn_tee *t = tee_to_raw(&r, "/base", true, 20);
    uint8_t body[512], out[1024];
    size_t len = make_body(body, sizeof body, 7, 0);
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_LOGS, SN_OTLP_JSON, body, len), 0);
    WAIT_STAT(t, delivered, 1, 5000);
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_METRICS, SN_OTLP_PROTOBUF, body, len), 0);
    WAIT_STAT(t, delivered, 2, 5000);
    sn_tee_destroy(t, 0, NULL);

    pthread_mutex_lock(&r.mu);
    ck_assert_int_eq(r.served, 2);
    ck_assert_msg(strncmp(r.head[0], "POST /base/v1/logs HTTP/1.1\r\n", 29) == 0, "%s", r.head[0]);
    ck_assert_ptr_nonnull(strcasestr(r.head[0], "\r\nContent-Type: application/json\r\n"));
    ck_assert_ptr_nonnull(strcasestr(r.head[0], "\r\nContent-Encoding: gzip\r\n"));
    ck_assert_ptr_null(strcasestr(r.head[0], "\r\nExpect:"));
    ck_assert_ptr_nonnull(strcasestr(r.head[1], "\r\nContent-Type: application/x-protobuf\r\n"));
    ck_assert_msg(strncmp(r.head[1], "POST /base/v1/metrics ", 22) == 0, "%s", r.head[1]);
    for (int i = 0; i < 2; i++) {
        ck_assert_uint_ne(r.len[i], len); /* compressed on the wire ... */
        ck_assert_uint_lt(r.len[i], len);
        ck_assert_uint_eq(gunzip(r.body[i], r.len[i], out, sizeof out), len); /* ... losslessly */
        ck_assert_mem_eq(out, body, len);
    }
    pthread_mutex_unlock(&r.mu);
    raw_stop(&r);
}
END_TEST

START_TEST(http_502_and_504_are_retried)
{
    raw r = {.answers = {"502 Bad Gateway", "504 Gateway Timeout"}};
    raw_start(&r);
    sn_tee *t = tee_to_raw(&r, "", false, 20);
    const uint8_t body[] = "abc";
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_TRACES, SN_OTLP_PROTOBUF, body, 3), 0);
    sn_tee_stats st = WAIT_STAT(t, delivered, 1, 5000);
    ck_assert_uint_eq(st.retries, 2);
    sn_tee_destroy(t, 0, NULL);
    pthread_mutex_lock(&r.mu);
    ck_assert_int_eq(r.served, 3);
    for (int i = 0; i < 3; i++)
        ck_assert(r.len[i] == 3 && memcmp(r.body[i], body, 3) == 0); /* the same bytes each time */
    pthread_mutex_unlock(&r.mu);
    raw_stop(&r);
}
END_TEST

/* Retry-After as an HTTP date (1-2 s ahead) is honoured although the backoff is 20 s. */
START_TEST(http_retry_after_date_is_honoured)
{
    char ans[128];
    /* 3 s ahead: the date has whole seconds, and one that has passed by the time curl reads it
     * is no hint (curl gives 0), which left the tee on its own 20 s backoff. */
    time_t when = time(NULL) + 3;
    struct tm tm;
    gmtime_r(&when, &tm);
    size_t n = strftime(ans, sizeof ans, "503 Busy\r\nRetry-After: %a, %d %b %Y %H:%M:%S GMT", &tm);
    ck_assert_uint_gt(n, 0);
    raw r = {.answers = {ans}};
    raw_start(&r);
    sn_tee *t = tee_to_raw(&r, "", false, 20000);
    const uint8_t body[] = "abc";
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_TRACES, SN_OTLP_PROTOBUF, body, 3), 0);
    sn_tee_stats st = WAIT_STAT(t, delivered, 1, 8000);
    ck_assert_uint_eq(st.retries, 1);
    sn_tee_destroy(t, 0, NULL);
    raw_stop(&r);
}
END_TEST

/* ---------------------------------------------------------------- retries and refusals */

/* The upstream refuses `refusals` times with `outcome` (and a hint of hint_ms), then accepts.
 * The tee's own backoff is set far above the test's patience, so a delivery in time shows
 * the upstream's hint (RetryInfo / Retry-After) was honoured. */
static void retry_then_accept(kind k, sn_otlp_outcome outcome, int refusals, uint32_t hint_ms)
{
    upstream u = {0};
    rec_init(&u.r);
    u.r.refuse = outcome;
    u.r.refuse_left = refusals;
    u.r.retry_after_ms = hint_ms;
    upstream_start(&u, k, 0);

    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", u.port);
    sn_tee_config cfg;
    sn_tee_config_init(&cfg);
    cfg.url = url;
    cfg.protocol = k == GRPC ? SN_TEE_GRPC : SN_TEE_HTTP;
    cfg.workers = 1;
    cfg.backoff_ms = 20000;
    cfg.max_backoff_ms = 20000;
    sn_tee *t = NULL;
    ck_assert_msg(sn_tee_create(&cfg, &t, err, sizeof err) == 0, "%s", err);

    uint8_t body[512];
    size_t len = make_body(body, sizeof body, 2, 0);
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_LOGS, SN_OTLP_PROTOBUF, body, len), 0);
    sn_tee_stats st = WAIT_STAT(t, delivered, 1, 8000);
    ck_assert_uint_eq(st.retries, (uint64_t)refusals);
    ck_assert_uint_eq(st.attempts, (uint64_t)refusals + 1);
    ck_assert_uint_eq(st.dropped_rejected + st.dropped_expired, 0);
    check_invariant(&st);
    sleep_ms(100); /* nothing more arrives */
    pthread_mutex_lock(&u.r.mu);
    ck_assert_int_eq(u.r.calls, refusals + 1);
    ck_assert_int_eq(u.r.n, 1); /* delivered once */
    ck_assert(got_is(&u.r.got[0], SN_OTLP_LOGS, SN_OTLP_PROTOBUF, body, len));
    pthread_mutex_unlock(&u.r.mu);
    sn_tee_destroy(t, 0, NULL);
    upstream_stop(&u);
    rec_free(&u.r);
}

START_TEST(grpc_unavailable_then_ok_is_delivered_once)
{
    retry_then_accept(GRPC, SN_OTLP_RETRY, 2, 50);
}
END_TEST

START_TEST(grpc_resource_exhausted_with_retry_info_is_retried)
{
    retry_then_accept(GRPC, SN_OTLP_RESOURCE_RETRY, 1, 50);
}
END_TEST

START_TEST(http_503_then_ok_is_delivered_once)
{
    retry_then_accept(HTTP, SN_OTLP_RETRY, 1, 100); /* Retry-After: 1 */
}
END_TEST

START_TEST(http_429_then_ok_is_delivered_once)
{
    retry_then_accept(HTTP, SN_OTLP_RESOURCE_RETRY, 1, 100);
}
END_TEST

/* A non-retryable refusal drops the request after one attempt; the next one goes through. */
static void refused_is_dropped(kind k, sn_otlp_outcome outcome)
{
    upstream u = {0};
    rec_init(&u.r);
    u.r.refuse = outcome;
    u.r.refuse_left = 1;
    upstream_start(&u, k, 0);
    sn_tee *t = tee_to(&u, 1, false);

    uint8_t a[512], b[512];
    size_t alen = make_body(a, sizeof a, 3, 0), blen = make_body(b, sizeof b, 3, 1);
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_TRACES, SN_OTLP_PROTOBUF, a, alen), 0);
    sn_tee_stats st = WAIT_STAT(t, dropped_rejected, 1, 5000);
    ck_assert_uint_eq(st.retries, 0);
    ck_assert_uint_eq(st.delivered, 0);
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_TRACES, SN_OTLP_PROTOBUF, b, blen), 0);
    st = WAIT_STAT(t, delivered, 1, 5000);
    ck_assert_uint_eq(st.dropped_rejected, 1);
    ck_assert_uint_eq(st.attempts, 2);
    check_invariant(&st);
    pthread_mutex_lock(&u.r.mu);
    ck_assert_int_eq(u.r.calls, 2);
    ck_assert_int_eq(u.r.n, 1);
    ck_assert(got_is(&u.r.got[0], SN_OTLP_TRACES, SN_OTLP_PROTOBUF, b, blen));
    pthread_mutex_unlock(&u.r.mu);
    sn_tee_destroy(t, 0, NULL);
    upstream_stop(&u);
    rec_free(&u.r);
}

START_TEST(grpc_invalid_argument_is_dropped)
{
    refused_is_dropped(GRPC, SN_OTLP_INVALID);
}
END_TEST

START_TEST(grpc_resource_exhausted_without_retry_info_is_dropped)
{
    refused_is_dropped(GRPC, SN_OTLP_TOO_LARGE);
}
END_TEST

START_TEST(http_400_is_dropped)
{
    refused_is_dropped(HTTP, SN_OTLP_INVALID);
}
END_TEST

START_TEST(http_413_and_500_are_dropped)
{
    refused_is_dropped(HTTP, SN_OTLP_TOO_LARGE);
    refused_is_dropped(HTTP, SN_OTLP_INTERNAL);
}
END_TEST

/* A retryable failure that outlasts max_retry_ms is dropped as expired. */
START_TEST(retries_give_up_after_max_retry)
{
    upstream u = {0};
    rec_init(&u.r);
    u.r.refuse = SN_OTLP_RETRY;
    u.r.refuse_left = 1000;
    u.r.retry_after_ms = 0; /* the server's default hint (1 s) */
    upstream_start(&u, GRPC, 0);
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", u.port);
    sn_tee_config cfg;
    sn_tee_config_init(&cfg);
    cfg.url = url;
    cfg.protocol = SN_TEE_GRPC;
    cfg.workers = 1;
    cfg.max_retry_ms = 300;
    sn_tee *t = NULL;
    ck_assert_msg(sn_tee_create(&cfg, &t, err, sizeof err) == 0, "%s", err);
    const uint8_t body[] = "x";
    int64_t t0 = mono_ms();
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_TRACES, SN_OTLP_PROTOBUF, body, 1), 0);
    sn_tee_stats st = WAIT_STAT(t, dropped_expired, 1, 5000);
    /* the 1 s hint would pass the 300 ms budget, so it gives up at once instead of waiting */
    ck_assert_int_lt(mono_ms() - t0, 900);
    ck_assert_uint_eq(st.delivered, 0);
    check_invariant(&st);
    sn_tee_destroy(t, 0, NULL);
    upstream_stop(&u);
    rec_free(&u.r);
}
END_TEST

/* ---------------------------------------------------------------- a down upstream */

/* A port that was just free on 127.0.0.1. */
static int free_port(kind k)
{
    upstream u = {0};
    rec_init(&u.r);
    upstream_start(&u, k, 0);
    int port = u.port;
    upstream_stop(&u);
    rec_free(&u.r);
    return port;
}

/* The upstream is down: submits return at once, the queue keeps the newest max_queue_requests
 * and counts the dropped oldest; when the upstream comes up, the kept ones arrive in order. */
static void down_then_up(kind k)
{
    upstream u = {0};
    rec_init(&u.r);
    int port = free_port(k);

    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    sn_tee_config cfg;
    sn_tee_config_init(&cfg);
    cfg.url = url;
    cfg.protocol = k == GRPC ? SN_TEE_GRPC : SN_TEE_HTTP;
    cfg.workers = 1;
    cfg.max_queue_requests = 4;
    cfg.backoff_ms = 20;
    cfg.max_backoff_ms = 100;
    sn_tee *t = NULL;
    ck_assert_msg(sn_tee_create(&cfg, &t, err, sizeof err) == 0, "%s", err);

    enum { N = 12 };
    uint8_t bodies[N][512];
    size_t lens[N];
    for (int i = 0; i < N; i++)
        lens[i] = make_body(bodies[i], sizeof bodies[i], 4, i);

    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_TRACES, SN_OTLP_PROTOBUF, bodies[0], lens[0]), 0);
    WAIT_STAT(t, in_flight, 1, 2000); /* the worker holds #0 and keeps retrying it */
    WAIT_STAT(t, retries, 1, 2000);
    int64_t worst = 0;
    for (int i = 1; i < N; i++) {
        int64_t t0 = mono_ms();
        ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_TRACES, SN_OTLP_PROTOBUF, bodies[i], lens[i]), 0);
        int64_t d = mono_ms() - t0;
        worst = d > worst ? d : worst;
    }
    ck_assert_msg(worst < 100, "submit took %lld ms with the upstream down", (long long)worst);
    sn_tee_stats st;
    sn_tee_stats_get(t, &st);
    ck_assert_uint_eq(st.queued, 4);
    ck_assert_uint_eq(st.in_flight, 1);
    ck_assert_uint_eq(st.dropped_overflow, N - 1 - 4); /* #1 .. #7 */
    ck_assert_uint_eq(st.delivered, 0);
    ck_assert_uint_gt(st.queued_bytes, 0);
    check_invariant(&st);

    upstream_start(&u, k, port);
    st = WAIT_STAT(t, delivered, 5, 10000);
    ck_assert_uint_eq(st.queued, 0);
    ck_assert_uint_eq(st.queued_bytes, 0);
    ck_assert_uint_eq(st.in_flight, 0);
    check_invariant(&st);
    pthread_mutex_lock(&u.r.mu);
    ck_assert_int_eq(u.r.n, 5);
    static const int kept[5] = {0, 8, 9, 10, 11};
    for (int i = 0; i < 5; i++)
        ck_assert_msg(
            got_is(&u.r.got[i], SN_OTLP_TRACES, SN_OTLP_PROTOBUF, bodies[kept[i]], lens[kept[i]]),
            "arrival %d is not request %d", i, kept[i]);
    pthread_mutex_unlock(&u.r.mu);
    sn_tee_destroy(t, 0, NULL);
    upstream_stop(&u);
    rec_free(&u.r);
}

START_TEST(grpc_down_queue_drops_oldest_then_delivers)
{
    down_then_up(GRPC);
}
END_TEST

START_TEST(http_down_queue_drops_oldest_then_delivers)
{
    down_then_up(HTTP);
}
END_TEST

/* The byte limit: the oldest go to make room; a request above the limit alone is refused. */
START_TEST(byte_limit_drops_oldest_and_too_large)
{
    int port = free_port(HTTP);
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    sn_tee_config cfg;
    sn_tee_config_init(&cfg);
    cfg.url = url;
    cfg.workers = 1;
    cfg.max_queue_bytes = 100;
    cfg.backoff_ms = 1000;
    cfg.max_backoff_ms = 1000;
    sn_tee *t = NULL;
    ck_assert_msg(sn_tee_create(&cfg, &t, err, sizeof err) == 0, "%s", err);
    uint8_t b[200];
    memset(b, 'a', sizeof b);
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_TRACES, SN_OTLP_PROTOBUF, b, 10), 0);
    WAIT_STAT(t, in_flight, 1, 2000);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_TRACES, SN_OTLP_PROTOBUF, b, 40), 0);
    sn_tee_stats st;
    sn_tee_stats_get(t, &st);
    ck_assert_uint_eq(st.queued, 2);
    ck_assert_uint_eq(st.queued_bytes, 80);
    ck_assert_uint_eq(st.dropped_overflow, 1);
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_TRACES, SN_OTLP_PROTOBUF, b, 101), -EMSGSIZE);
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_TRACES, SN_OTLP_PROTOBUF, b, 100), 0);
    sn_tee_stats_get(t, &st);
    ck_assert_uint_eq(st.dropped_too_large, 1);
    ck_assert_uint_eq(st.queued, 1);
    ck_assert_uint_eq(st.queued_bytes, 100);
    ck_assert_uint_eq(st.dropped_overflow, 3);
    check_invariant(&st);
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_SIGNAL_COUNT, SN_OTLP_PROTOBUF, b, 1), -EINVAL);
    sn_tee_destroy(t, 0, &st);
    ck_assert_uint_eq(st.dropped_shutdown, 2); /* the one in flight and the one queued */
    ck_assert_uint_eq(st.queued + st.in_flight, 0);
    check_invariant(&st);
}
END_TEST

/* ---------------------------------------------------------------- metrics */

/* The value of one sample line ("name{labels} value") in an exposition, or -1. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

START_TEST(metrics_follow_the_counters)
{
    char err[256];
    sn_metrics *m = NULL;
    ck_assert_int_eq(sn_metrics_create(NULL, &m, err, sizeof err), 0);
    raw r = {.answers = {"400 Bad Request", "503 Busy"}};
    raw_start(&r);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", r.port);
    sn_tee_config cfg;
    sn_tee_config_init(&cfg);
    cfg.url = url;
    cfg.workers = 1;
    cfg.backoff_ms = 20;
    cfg.max_queue_bytes = 1000;
    cfg.metrics = m;
    sn_tee *t = NULL;
    ck_assert_msg(sn_tee_create(&cfg, &t, err, sizeof err) == 0, "%s", err);
    sn_tee *t2 = NULL; /* the families are there already */
    ck_assert_int_eq(sn_tee_create(&cfg, &t2, err, sizeof err), -EEXIST);
    ck_assert_ptr_null(t2);

    uint8_t b[1001] = {0};
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_TRACES, SN_OTLP_PROTOBUF, b, 10), 0); /* 400 */
    WAIT_STAT(t, dropped_rejected, 1, 5000);
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_TRACES, SN_OTLP_PROTOBUF, b, 10), 0); /* 503, 200 */
    WAIT_STAT(t, delivered, 1, 5000);
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_TRACES, SN_OTLP_PROTOBUF, b, 1001), -EMSGSIZE);

    char *text = NULL;
    size_t len = 0;
    ck_assert_int_eq(sn_metrics_render_alloc(m, &text, &len), 0);
    ck_assert_double_eq(sample(text, "sentinel_sidecar_tee_requests_total{outcome=\"delivered\"}"),
                        1);
    ck_assert_double_eq(sample(text, "sentinel_sidecar_tee_requests_total{outcome=\"rejected\"}"),
                        1);
    ck_assert_double_eq(sample(text, "sentinel_sidecar_tee_requests_total{outcome=\"too_large\"}"),
                        1);
    ck_assert_double_eq(sample(text, "sentinel_sidecar_tee_requests_total{outcome=\"queue_full\"}"),
                        0);
    ck_assert_double_eq(sample(text, "sentinel_sidecar_tee_retries_total"), 1);
    ck_assert_double_eq(sample(text, "sentinel_sidecar_tee_queue_requests"), 0);
    free(text);
    sn_tee_destroy(t, 0, NULL);
    raw_stop(&r);

    /* a down upstream: the queue gauges show what waits; the drop of the oldest is counted */
    int port = free_port(HTTP);
    sn_metrics *m2 = NULL;
    ck_assert_int_eq(sn_metrics_create(NULL, &m2, err, sizeof err), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    cfg.metrics = m2;
    cfg.max_queue_requests = 2;
    cfg.backoff_ms = 1000;
    cfg.max_backoff_ms = 1000;
    ck_assert_msg(sn_tee_create(&cfg, &t, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_LOGS, SN_OTLP_JSON, b, 7), 0);
    WAIT_STAT(t, in_flight, 1, 2000);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_LOGS, SN_OTLP_JSON, b, 7), 0);
    ck_assert_int_eq(sn_metrics_render_alloc(m2, &text, &len), 0);
    ck_assert_double_eq(sample(text, "sentinel_sidecar_tee_queue_requests"), 2);
    ck_assert_double_eq(sample(text, "sentinel_sidecar_tee_queue_bytes"), 14);
    ck_assert_double_eq(sample(text, "sentinel_sidecar_tee_requests_total{outcome=\"queue_full\"}"),
                        1);
    free(text);
    sn_tee_destroy(t, 0, NULL);
    ck_assert_int_eq(sn_metrics_render_alloc(m2, &text, &len), 0);
    ck_assert_double_eq(sample(text, "sentinel_sidecar_tee_requests_total{outcome=\"shutdown\"}"),
                        3);
    ck_assert_double_eq(sample(text, "sentinel_sidecar_tee_queue_requests"), 0);
    free(text);
    sn_metrics_destroy(m2);
    sn_metrics_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------- shutdown */

/* With the upstream up, destroy keeps sending until the queue is empty. */
static void destroy_flushes(kind k)
{
    upstream u = {0};
    rec_init(&u.r);
    u.r.sleep_ms = 50;
    upstream_start(&u, k, 0);
    sn_tee *t = tee_to(&u, 1, false);
    uint8_t b[64];
    for (int i = 0; i < 5; i++) {
        size_t len = make_body(b, sizeof b, 5, i);
        ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_METRICS, SN_OTLP_PROTOBUF, b, len), 0);
    }
    sn_tee_stats st;
    sn_tee_destroy(t, 5000, &st);
    ck_assert_uint_eq(st.delivered, 5);
    ck_assert_uint_eq(st.dropped_shutdown, 0);
    check_invariant(&st);
    pthread_mutex_lock(&u.r.mu);
    ck_assert_int_eq(u.r.n, 5);
    pthread_mutex_unlock(&u.r.mu);
    upstream_stop(&u);
    rec_free(&u.r);
}

START_TEST(grpc_destroy_flushes_within_grace)
{
    destroy_flushes(GRPC);
}
END_TEST

START_TEST(http_destroy_flushes_within_grace)
{
    destroy_flushes(HTTP);
}
END_TEST

/* With a stuck upstream (each request takes 4 s), destroy returns soon after the grace period,
 * cancelling the attempt in flight and counting everything left. */
static void destroy_cuts_off(kind k)
{
    upstream u = {0};
    rec_init(&u.r);
    u.r.sleep_ms = 4000;
    upstream_start(&u, k, 0);
    sn_tee *t = tee_to(&u, 1, false);
    const uint8_t b[] = "stuck";
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(sn_tee_submit(t, SN_OTLP_LOGS, SN_OTLP_PROTOBUF, b, 5), 0);
    WAIT_STAT(t, in_flight, 1, 2000);
    int64_t t0 = mono_ms();
    sn_tee_stats st;
    sn_tee_destroy(t, 200, &st);
    int64_t took = mono_ms() - t0;
    ck_assert_msg(took >= 150 && took < 2500, "destroy took %lld ms", (long long)took);
    ck_assert_uint_eq(st.dropped_shutdown, 3);
    ck_assert_uint_eq(st.delivered, 0);
    check_invariant(&st);
    upstream_stop(&u);
    rec_free(&u.r);
}

START_TEST(grpc_destroy_cuts_off_after_grace)
{
    destroy_cuts_off(GRPC);
}
END_TEST

START_TEST(http_destroy_cuts_off_after_grace)
{
    destroy_cuts_off(HTTP);
}
END_TEST

/* Several receiver threads submit at once while workers send: nothing is lost or counted twice. */
typedef struct submitter {
    sn_tee *t;
    int id;
} submitter;

static void *submit_many(void *arg)
{
    submitter *s = arg;
    uint8_t b[64];
    for (int i = 0; i < 200; i++) {
        size_t len = make_body(b, sizeof b, 6 + s->id, i);
        sn_tee_submit(s->t, (sn_otlp_signal)(i % 3), SN_OTLP_PROTOBUF, b, len);
    }
    return NULL;
}

START_TEST(concurrent_submitters_are_all_accounted_for)
{
    upstream u = {0};
    rec_init(&u.r);
    upstream_start(&u, HTTP, 0);
    sn_tee *t = tee_to(&u, 4, false);
    pthread_t th[4];
    submitter s[4];
    for (int i = 0; i < 4; i++) {
        s[i] = (submitter){t, i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, submit_many, &s[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    sn_tee_stats st;
    sn_tee_destroy(t, 10000, &st);
    ck_assert_uint_eq(st.submitted, 800);
    ck_assert_uint_eq(st.dropped_shutdown, 0);
    check_invariant(&st);
    /* what was not pushed out of the queue arrived, and only that */
    ck_assert_uint_eq(st.delivered + st.dropped_overflow, 800);
    ck_assert_uint_gt(st.delivered, 0);
    pthread_mutex_lock(&u.r.mu);
    ck_assert_int_eq((uint64_t)u.r.calls, st.delivered);
    pthread_mutex_unlock(&u.r.mu);
    upstream_stop(&u);
    rec_free(&u.r);
}
END_TEST

static Suite *tee_suite(void)
{
    Suite *s = suite_create("tee");
    TCase *tc = tcase_create("tee");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, url_picks_protocol);
    tcase_add_test(tc, bad_urls_name_the_variable);
    tcase_add_test(tc, grpc_forwards_each_signal_unchanged);
    tcase_add_test(tc, grpc_gzip_forwards_unchanged);
    tcase_add_test(tc, http_forwards_both_encodings_unchanged);
    tcase_add_test(tc, http_gzip_forwards_unchanged);
    tcase_add_test(tc, http_url_path_is_a_base);
    tcase_add_test(tc, http_wire_has_content_type_and_gzip);
    tcase_add_test(tc, http_502_and_504_are_retried);
    tcase_add_test(tc, http_retry_after_date_is_honoured);
    tcase_add_test(tc, grpc_unavailable_then_ok_is_delivered_once);
    tcase_add_test(tc, grpc_resource_exhausted_with_retry_info_is_retried);
    tcase_add_test(tc, http_503_then_ok_is_delivered_once);
    tcase_add_test(tc, http_429_then_ok_is_delivered_once);
    tcase_add_test(tc, grpc_invalid_argument_is_dropped);
    tcase_add_test(tc, grpc_resource_exhausted_without_retry_info_is_dropped);
    tcase_add_test(tc, http_400_is_dropped);
    tcase_add_test(tc, http_413_and_500_are_dropped);
    tcase_add_test(tc, retries_give_up_after_max_retry);
    tcase_add_test(tc, grpc_down_queue_drops_oldest_then_delivers);
    tcase_add_test(tc, http_down_queue_drops_oldest_then_delivers);
    tcase_add_test(tc, byte_limit_drops_oldest_and_too_large);
    tcase_add_test(tc, grpc_destroy_flushes_within_grace);
    tcase_add_test(tc, http_destroy_flushes_within_grace);
    tcase_add_test(tc, grpc_destroy_cuts_off_after_grace);
    tcase_add_test(tc, http_destroy_cuts_off_after_grace);
    tcase_add_test(tc, concurrent_submitters_are_all_accounted_for);
    tcase_add_test(tc, metrics_follow_the_counters);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tee_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
