/* Unit tests for shared/otlp/http_server.c: a real server on 127.0.0.1:0, libcurl and raw
 * sockets as clients. */
#include "otlp/http_server.h"

#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* ---------------------------------------------------------------- the test handler */

typedef struct seen {
    pthread_mutex_t mu;
    atomic_int calls;
    sn_otlp_signal signal;
    sn_otlp_encoding encoding;
    uint8_t *body; /* copy of the last body */
    size_t len;
    sn_otlp_result answer; /* what the handler answers */
    int sleep_ms;
    bool gated; /* the handler waits for `open` */
    bool open;
    atomic_int in_handler; /* handlers running */
    pthread_cond_t cv;
} seen;

static seen g_seen;

static void test_handler(sn_otlp_signal signal, sn_otlp_encoding encoding, const uint8_t *body,
                         size_t len, sn_otlp_result *res, void *ud)
{
    seen *s = ud;
    atomic_fetch_add(&s->in_handler, 1);
    pthread_mutex_lock(&s->mu);
    while (s->gated && !s->open)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (s->sleep_ms > 0) {
        struct timespec ts = {s->sleep_ms / 1000, (long)(s->sleep_ms % 1000) * 1000000L};
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
}

static bool test_route(const char *method, const char *path, const uint8_t *body, size_t len,
                       sn_http_reply *reply, void *ud)
{
    (void)ud;
    if (strcmp(path, "/healthz") == 0 && strcmp(method, "GET") == 0) {
        reply->body = strdup("ok\n");
        reply->len = 3;
        return true;
    }
    if (strcmp(path, "/echo") == 0) {
        reply->status = 201;
        snprintf(reply->content_type, sizeof reply->content_type, "application/octet-stream");
        reply->body = malloc(len ? len : 1);
        memcpy(reply->body, body, len);
        reply->len = len;
        return true;
    }
    return false;
}

static sn_http_server *g_srv;
static _Atomic uint16_t g_port; /* read by client threads while a test restarts the server */
/* Send "Expect: 100-continue" (curl's default for large bodies) instead of suppressing it. */
static bool g_expect_continue;

static void start_server_buffered(size_t max_body, unsigned threads, bool with_route,
                                  size_t max_buffered)
{
    memset(&g_seen, 0, sizeof g_seen);
    pthread_mutex_init(&g_seen.mu, NULL);
    pthread_cond_init(&g_seen.cv, NULL);
    sn_http_server_config cfg = {
        .listen = "127.0.0.1:0",
        .max_body_bytes = max_body,
        .max_buffered_bytes = max_buffered,
        .threads = threads,
        .handler = test_handler,
        .handler_ud = &g_seen,
        .route = with_route ? test_route : NULL,
    };
    char err[256];
    ck_assert_int_eq(sn_http_server_create(&cfg, &g_srv, err, sizeof err), 0);
    ck_assert_int_eq(sn_http_server_port(g_srv), 0);
    ck_assert_msg(sn_http_server_start(g_srv, err, sizeof err) == 0, "%s", err);
    g_port = sn_http_server_port(g_srv);
    ck_assert_int_ne(g_port, 0);
}

static void start_server(size_t max_body, unsigned threads, bool with_route)
{
    start_server_buffered(max_body, threads, with_route, 0);
}

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    start_server(1024 * 1024, 2, true);
}

static void teardown(void)
{
    sn_http_server_destroy(g_srv);
    g_srv = NULL;
    free(g_seen.body);
    g_seen.body = NULL;
    curl_global_cleanup();
}

/* ---------------------------------------------------------------- a small libcurl client */

typedef struct reply {
    long status;
    char content_type[128];
    char retry_after[32];
    char allow[64];
    uint8_t *body;
    size_t len;
    CURLcode rc;
} reply;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    reply *r = ud;
    uint8_t *nb = realloc(r->body, r->len + sz * n + 1);
    ck_assert_ptr_nonnull(nb);
    r->body = nb;
    memcpy(r->body + r->len, p, sz * n);
    r->len += sz * n;
    r->body[r->len] = 0;
    return sz * n;
}

static void header_value(const char *line, size_t n, const char *name, char *dst, size_t dstsize)
{
    size_t k = strlen(name);
    if (n <= k + 1 || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return;
    const char *v = line + k + 1;
    size_t vlen = n - k - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
        vlen--;
    if (vlen >= dstsize)
        vlen = dstsize - 1;
    memcpy(dst, v, vlen);
    dst[vlen] = 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    reply *r = ud;
    header_value(p, sz * n, "Content-Type", r->content_type, sizeof r->content_type);
    header_value(p, sz * n, "Retry-After", r->retry_after, sizeof r->retry_after);
    header_value(p, sz * n, "Allow", r->allow, sizeof r->allow);
    return sz * n;
}

typedef struct chunked_src {
    size_t left;
} chunked_src;

static size_t read_zeros(char *buf, size_t sz, size_t n, void *ud)
{
    chunked_src *c = ud;
    size_t k = sz * n < c->left ? sz * n : c->left;
    memset(buf, 'x', k);
    c->left -= k;
    return k;
}

/* Sends one request. content_type NULL sends none; encoding NULL sends none. chunked_len > 0
 * streams that many bytes with chunked transfer encoding instead of body/len. */
static reply request(const char *method, const char *path, const char *content_type,
                     const char *encoding, const void *body, size_t len, size_t chunked_len)
{
    reply r;
    memset(&r, 0, sizeof r);
    CURL *c = curl_easy_init();
    ck_assert_ptr_nonnull(c);
    char url[128], h1[160], h2[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)g_port, path);
    struct curl_slist *hs = NULL;
    if (content_type != NULL)
        snprintf(h1, sizeof h1, "Content-Type: %s", content_type);
    else
        snprintf(h1, sizeof h1, "Content-Type:");
    hs = curl_slist_append(hs, h1);
    if (encoding != NULL) {
        snprintf(h2, sizeof h2, "Content-Encoding: %s", encoding);
        hs = curl_slist_append(hs, h2);
    }
    if (!g_expect_continue)
        hs = curl_slist_append(hs, "Expect:");
    chunked_src src = {chunked_len};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 15L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        if (chunked_len > 0) {
            hs = curl_slist_append(hs, "Transfer-Encoding: chunked");
            curl_easy_setopt(c, CURLOPT_READFUNCTION, read_zeros);
            curl_easy_setopt(c, CURLOPT_READDATA, &src);
        } else {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        }
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    r.rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    return r;
}

static reply post(const char *path, const char *ct, const void *body, size_t len)
{
    return request("POST", path, ct, NULL, body, len, 0);
}

static void reply_free(reply *r)
{
    free(r->body);
    r->body = NULL;
}

/* gzip-compresses in[0..n) into a malloc'd buffer. */
static uint8_t *gzip(const void *in, size_t n, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    ck_assert_int_eq(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, n) + 64;
    uint8_t *out = malloc(cap);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    *out_len = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

/* ---------------------------------------------------------------- hand-written decoders */

static uint64_t get_varint(const uint8_t *p, size_t len, size_t *pos)
{
    uint64_t v = 0;
    for (int shift = 0; *pos < len && shift < 64; shift += 7) {
        uint8_t b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    ck_abort_msg("bad varint");
    return 0;
}

/* Decodes a google.rpc.Status {code = 1, message = 2}. */
static void decode_status(const uint8_t *p, size_t len, int *code, char *msg, size_t msgsize)
{
    size_t pos = 0;
    *code = 0;
    msg[0] = 0;
    while (pos < len) {
        uint64_t key = get_varint(p, len, &pos);
        if (key == 0x08) {
            *code = (int)get_varint(p, len, &pos);
        } else if (key == 0x12) {
            size_t n = (size_t)get_varint(p, len, &pos);
            ck_assert_uint_le(pos + n, len);
            ck_assert_uint_lt(n, msgsize);
            memcpy(msg, p + pos, n);
            msg[n] = 0;
            pos += n;
        } else {
            ck_abort_msg("unexpected Status field key %llu", (unsigned long long)key);
        }
    }
}

/* Decodes Export*ServiceResponse {partial_success = 1 {rejected = 1, error_message = 2}}. */
static void decode_partial(const uint8_t *p, size_t len, int64_t *rejected, char *msg,
                           size_t msgsize)
{
    size_t pos = 0;
    ck_assert_uint_gt(len, 2);
    ck_assert_uint_eq(get_varint(p, len, &pos), 0x0a);
    size_t n = (size_t)get_varint(p, len, &pos);
    ck_assert_uint_eq(pos + n, len);
    int code;
    /* The inner message has the same shape as a Status: varint 1, string 2. */
    decode_status(p + pos, n, &code, msg, msgsize);
    *rejected = code;
}

/* ---------------------------------------------------------------- tests */

static const char *const paths[3] = {"/v1/traces", "/v1/metrics", "/v1/logs"};

START_TEST(each_route_and_content_type)
{
    const char *types[3] = {"application/x-protobuf", "application/json",
                            "Application/JSON ; charset=utf-8"};
    const sn_otlp_encoding encs[3] = {SN_OTLP_PROTOBUF, SN_OTLP_JSON, SN_OTLP_JSON};
    int calls = 0;
    for (int p = 0; p < 3; p++) {
        for (int t = 0; t < 3; t++) {
            const char body[] = "\x0a\x03\x01\x02\x03{\"resourceSpans\":[]}";
            reply r = post(paths[p], types[t], body, sizeof body - 1);
            ck_assert_int_eq(r.rc, CURLE_OK);
            ck_assert_int_eq(r.status, 200);
            ck_assert_int_eq(atomic_load(&g_seen.calls), ++calls);
            ck_assert_int_eq(g_seen.signal, p);
            ck_assert_int_eq(g_seen.encoding, encs[t]);
            ck_assert_uint_eq(g_seen.len, sizeof body - 1);
            ck_assert_mem_eq(g_seen.body, body, sizeof body - 1);
            if (encs[t] == SN_OTLP_JSON) {
                ck_assert_str_eq(r.content_type, "application/json");
                ck_assert_uint_eq(r.len, 2);
                ck_assert_mem_eq(r.body, "{}", 2);
            } else {
                ck_assert_str_eq(r.content_type, "application/x-protobuf");
                ck_assert_uint_eq(r.len, 0);
            }
            reply_free(&r);
        }
    }
    /* An empty body is a valid (empty) request. */
    reply r = post("/v1/traces", "application/x-protobuf", "", 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(g_seen.len, 0);
    reply_free(&r);
}
END_TEST

START_TEST(other_media_types_and_encodings_get_415)
{
    const char *bad[] = {"text/plain", "application/protobuf", "application/jsonx",
                         "application/x-protobuf-ish", NULL};
    for (int i = 0; i < 5; i++) {
        reply r = post("/v1/traces", bad[i], "x", 1);
        ck_assert_int_eq(r.status, 415);
        ck_assert_ptr_nonnull(strstr((char *)r.body, "application/x-protobuf"));
        reply_free(&r);
    }
    reply r = request("POST", "/v1/logs", "application/json", "br", "x", 1, 0);
    ck_assert_int_eq(r.status, 415);
    ck_assert_ptr_nonnull(strstr((char *)r.body, "gzip"));
    reply_free(&r);
    r = request("POST", "/v1/logs", "application/json", "identity", "{}", 2, 0);
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 1);
}
END_TEST

START_TEST(gzip_body_is_decompressed_exactly)
{
    size_t n = 700 * 1000;
    uint8_t *raw = malloc(n);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        raw[i] = (i % 7 == 0) ? (uint8_t)(x >> 24) : (uint8_t)(i & 0x3f);
    }
    size_t zlen;
    uint8_t *z = gzip(raw, n, &zlen);
    reply r = request("POST", "/v1/traces", "application/x-protobuf", "gzip", z, zlen, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(g_seen.len, n);
    ck_assert_mem_eq(g_seen.body, raw, n);
    reply_free(&r);

    /* Two gzip members one after the other make one body. */
    size_t alen, blen;
    uint8_t *a = gzip("hello ", 6, &alen), *b = gzip("world", 5, &blen);
    uint8_t *ab = malloc(alen + blen);
    memcpy(ab, a, alen);
    memcpy(ab + alen, b, blen);
    r = request("POST", "/v1/traces", "application/json", "gzip", ab, alen + blen, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(g_seen.len, 11);
    ck_assert_mem_eq(g_seen.body, "hello world", 11);
    reply_free(&r);

    /* Truncated and corrupt streams are bad requests; the handler never runs. */
    int calls = atomic_load(&g_seen.calls);
    r = request("POST", "/v1/traces", "application/json", "gzip", z, zlen / 2, 0);
    ck_assert_int_eq(r.status, 400);
    json_t *j = json_loadb((char *)r.body, r.len, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "code")), 3);
    json_decref(j);
    reply_free(&r);
    r = request("POST", "/v1/traces", "application/x-protobuf", "gzip", "not gzip", 8, 0);
    ck_assert_int_eq(r.status, 400);
    reply_free(&r);
    ck_assert_int_eq(atomic_load(&g_seen.calls), calls);
    free(ab);
    free(a);
    free(b);
    free(z);
    free(raw);
}
END_TEST

START_TEST(gzip_limit_is_exact_and_bombs_get_413)
{
    /* The server's limit here is 1 MiB: exactly the limit inflates, one byte more does not. */
    size_t limit = 1024 * 1024;
    uint8_t *raw = calloc(1, 64 * limit);
    size_t zlen;
    uint8_t *z = gzip(raw, limit, &zlen);
    reply r = request("POST", "/v1/traces", "application/x-protobuf", "gzip", z, zlen, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(g_seen.len, limit);
    reply_free(&r);
    free(z);

    int calls = atomic_load(&g_seen.calls);
    z = gzip(raw, limit + 1, &zlen);
    r = request("POST", "/v1/traces", "application/x-protobuf", "gzip", z, zlen, 0);
    ck_assert_int_eq(r.status, 413);
    int code;
    char msg[256];
    decode_status(r.body, r.len, &code, msg, sizeof msg);
    ck_assert_int_eq(code, 8);
    ck_assert_ptr_nonnull(strstr(msg, "decompression"));
    reply_free(&r);
    free(z);

    /* 64 MiB of zeros is ~64 KiB on the wire. */
    z = gzip(raw, 64 * limit, &zlen);
    ck_assert_uint_lt(zlen, limit);
    r = request("POST", "/v1/metrics", "application/json", "gzip", z, zlen, 0);
    ck_assert_int_eq(r.status, 413);
    ck_assert_str_eq(r.content_type, "application/json");
    reply_free(&r);
    ck_assert_int_eq(atomic_load(&g_seen.calls), calls);
    free(z);
    free(raw);
}
END_TEST

START_TEST(oversized_identity_body_gets_413)
{
    size_t limit = 1024 * 1024;
    uint8_t *big = calloc(1, 3 * limit);
    /* Content-Length over the limit: refused from the headers, before "100 Continue", so the
     * client never sends the body. (A client that sends it anyway races the server closing the
     * connection and may see a reset instead of the 413: HTTP/1.1's usual caveat.) */
    g_expect_continue = true;
    reply r = post("/v1/traces", "application/json", big, 3 * limit);
    g_expect_continue = false;
    ck_assert_int_eq(r.status, 413);
    json_t *j = json_loadb((char *)r.body, r.len, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "code")), 8);
    json_decref(j);
    reply_free(&r);
    /* Chunked, no length: crosses the limit while arriving. */
    r = request("POST", "/v1/logs", "application/x-protobuf", NULL, NULL, 0, limit + 10);
    ck_assert_int_eq(r.status, 413);
    reply_free(&r);
    /* Exactly the limit is fine, chunked or not. */
    r = post("/v1/traces", "application/x-protobuf", big, limit);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(g_seen.len, limit);
    reply_free(&r);
    r = request("POST", "/v1/logs", "application/x-protobuf", NULL, NULL, 0, limit);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(g_seen.len, limit);
    reply_free(&r);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 2);
    free(big);
}
END_TEST

START_TEST(every_outcome_maps_to_status_headers_and_body)
{
    struct {
        sn_otlp_outcome outcome;
        uint32_t retry_ms;
        const char *message;
        long status;
        int code;
        const char *retry_after;
    } cases[] = {
        {SN_OTLP_INVALID, 0, "span 3: bad trace id", 400, 3, ""},
        {SN_OTLP_INVALID, 0, "", 400, 3, ""},
        {SN_OTLP_RETRY, 1500, "queue full", 503, 14, "2"},
        {SN_OTLP_RETRY, 2000, "", 503, 14, "2"},
        {SN_OTLP_RESOURCE_RETRY, 0, "rate limited", 429, 8, "1"},
        {SN_OTLP_RESOURCE_RETRY, 30001, "", 429, 8, "31"},
        {SN_OTLP_TOO_LARGE, 0, "too many spans", 413, 8, ""},
        {SN_OTLP_INTERNAL, 0, "bug \"quoted\"\n", 500, 13, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&g_seen.answer, 0, sizeof g_seen.answer);
        g_seen.answer.outcome = cases[i].outcome;
        g_seen.answer.retry_after_ms = cases[i].retry_ms;
        snprintf(g_seen.answer.message, sizeof g_seen.answer.message, "%s", cases[i].message);

        reply r = post("/v1/traces", "application/x-protobuf", "x", 1);
        ck_assert_int_eq(r.status, cases[i].status);
        ck_assert_str_eq(r.retry_after, cases[i].retry_after);
        ck_assert_str_eq(r.content_type, "application/x-protobuf");
        int code;
        char msg[256];
        decode_status(r.body, r.len, &code, msg, sizeof msg);
        ck_assert_int_eq(code, cases[i].code);
        if (cases[i].message[0])
            ck_assert_str_eq(msg, cases[i].message);
        else
            ck_assert_uint_gt(strlen(msg), 0); /* a default message */
        reply_free(&r);

        r = post("/v1/metrics", "application/json", "{}", 2);
        ck_assert_int_eq(r.status, cases[i].status);
        ck_assert_str_eq(r.retry_after, cases[i].retry_after);
        ck_assert_str_eq(r.content_type, "application/json");
        json_error_t e;
        json_t *j = json_loadb((char *)r.body, r.len, 0, &e);
        ck_assert_msg(j != NULL, "%s: %.*s", e.text, (int)r.len, r.body);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "code")), cases[i].code);
        if (cases[i].message[0])
            ck_assert_str_eq(json_string_value(json_object_get(j, "message")), cases[i].message);
        json_decref(j);
        reply_free(&r);
    }
}
END_TEST

START_TEST(partial_success_bodies)
{
    const char *json_keys[3] = {"rejectedSpans", "rejectedDataPoints", "rejectedLogRecords"};
    for (int p = 0; p < 3; p++) {
        memset(&g_seen.answer, 0, sizeof g_seen.answer);
        g_seen.answer.rejected = 300 + p;
        snprintf(g_seen.answer.message, sizeof g_seen.answer.message, "%d spans had bad ids",
                 300 + p);
        reply r = post(paths[p], "application/x-protobuf", "x", 1);
        ck_assert_int_eq(r.status, 200);
        int64_t rejected;
        char msg[256];
        decode_partial(r.body, r.len, &rejected, msg, sizeof msg);
        ck_assert_int_eq(rejected, 300 + p);
        ck_assert_str_eq(msg, g_seen.answer.message);
        reply_free(&r);

        r = post(paths[p], "application/json", "{}", 2);
        ck_assert_int_eq(r.status, 200);
        json_t *j = json_loadb((char *)r.body, r.len, 0, NULL);
        ck_assert_ptr_nonnull(j);
        json_t *ps = json_object_get(j, "partialSuccess");
        ck_assert_ptr_nonnull(ps);
        /* int64 as a string, per the proto3 JSON mapping. */
        char want[16];
        snprintf(want, sizeof want, "%d", 300 + p);
        ck_assert_str_eq(json_string_value(json_object_get(ps, json_keys[p])), want);
        ck_assert_str_eq(json_string_value(json_object_get(ps, "errorMessage")),
                         g_seen.answer.message);
        json_decref(j);
        reply_free(&r);
    }
    /* A warning without rejections still travels; zero rejected and no message is empty. */
    memset(&g_seen.answer, 0, sizeof g_seen.answer);
    snprintf(g_seen.answer.message, sizeof g_seen.answer.message, "deprecated attribute");
    reply r = post("/v1/traces", "application/x-protobuf", "x", 1);
    int64_t rejected;
    char msg[256];
    decode_partial(r.body, r.len, &rejected, msg, sizeof msg);
    ck_assert_int_eq(rejected, 0);
    ck_assert_str_eq(msg, "deprecated attribute");
    reply_free(&r);
}
END_TEST

START_TEST(wrong_method_and_unknown_path)
{
    const char *methods[] = {"GET", "PUT", "DELETE"};
    for (int i = 0; i < 3; i++) {
        reply r = request(methods[i], "/v1/traces", "application/json", NULL, NULL, 0, 0);
        ck_assert_int_eq(r.status, 405);
        ck_assert_str_eq(r.allow, "POST");
        reply_free(&r);
    }
    reply r = post("/v1/trace", "application/json", "{}", 2);
    ck_assert_int_eq(r.status, 404);
    reply_free(&r);
    r = post("/v1/traces/", "application/json", "{}", 2);
    ck_assert_int_eq(r.status, 404);
    reply_free(&r);
    /* The extra route answers its own paths and lets the rest be 404. */
    r = request("GET", "/healthz", NULL, NULL, NULL, 0, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq((char *)r.body, "ok\n");
    ck_assert_str_eq(r.content_type, "text/plain; charset=utf-8");
    reply_free(&r);
    r = post("/echo", "text/plain", "abc", 3);
    ck_assert_int_eq(r.status, 201);
    ck_assert_str_eq((char *)r.body, "abc");
    ck_assert_str_eq(r.content_type, "application/octet-stream");
    reply_free(&r);
    r = request("GET", "/nothing", NULL, NULL, NULL, 0, 0);
    ck_assert_int_eq(r.status, 404);
    reply_free(&r);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 0);
}
END_TEST

/* Raw sockets for what curl will not send. */
static int raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static int raw_status(const char *req, size_t len)
{
    int fd = raw_connect();
    ck_assert_int_eq(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status;
}

START_TEST(malformed_requests_on_raw_sockets)
{
    const char garbage[] = "GARBAGE\r\n\r\n";
    int st = raw_status(garbage, sizeof garbage - 1);
    ck_assert_msg(st == 400 || st == -1, "status %d", st);

    const char bad_len[] = "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           "application/json\r\nContent-Length: abc\r\n\r\n{}";
    st = raw_status(bad_len, sizeof bad_len - 1);
    ck_assert_msg(st == 400 || st == -1, "status %d", st);

    const char huge_len[] = "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: "
                            "application/json\r\nContent-Length: 99999999999999\r\n\r\n{}";
    ck_assert_int_eq(raw_status(huge_len, sizeof huge_len - 1), 413);

    const char no_type[] = "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    ck_assert_int_eq(raw_status(no_type, sizeof no_type - 1), 415);

    /* A client that sends headers and then nothing is dropped by the server's timeout, not
     * here; an abandoned half body must not upset the server either. */
    int fd = raw_connect();
    const char half[] = "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: "
                        "application/json\r\nContent-Length: 100\r\n\r\n{\"res";
    ck_assert_int_eq(send(fd, half, sizeof half - 1, MSG_NOSIGNAL), (ssize_t)(sizeof half - 1));
    close(fd);
    reply r = post("/v1/traces", "application/json", "{}", 2);
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 1);
}
END_TEST

typedef struct client_arg {
    int requests;
    int ok;
} client_arg;

static void *client_thread(void *p)
{
    client_arg *a = p;
    for (int i = 0; i < a->requests; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "req-%d", i);
        reply r = post(paths[i % 3], "application/x-protobuf", body, (size_t)n);
        if (r.rc == CURLE_OK && r.status == 200)
            a->ok++;
        reply_free(&r);
    }
    return NULL;
}

/* Runs `threads` clients (at most 16) of `each` small requests at once; asserts that every one
 * was answered 200 and reached the handler. */
static void concurrent_clients(int threads, int each)
{
    pthread_t th[16];
    client_arg args[16];
    ck_assert_int_le(threads, 16);
    for (int i = 0; i < threads; i++) {
        args[i] = (client_arg){each, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, client_thread, &args[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].ok;
    }
    ck_assert_int_eq(ok, threads * each);
    ck_assert_int_eq(atomic_load(&g_seen.calls), threads * each);
}

START_TEST(many_concurrent_requests)
{
    concurrent_clients(16, 25);
}
END_TEST

typedef struct big_post {
    size_t len;
    reply r;
} big_post;

static void *big_post_thread(void *p)
{
    big_post *b = p;
    uint8_t *body = calloc(1, b->len);
    b->r = post("/v1/traces", "application/x-protobuf", body, b->len);
    free(body);
    return NULL;
}

/* max_buffered_bytes bounds the body bytes of all requests at once: one request always fits,
 * a second one that would pass the budget while the first is held gets 503 + Retry-After, and
 * once the first is answered there is room again. */
START_TEST(buffered_bytes_budget_refuses_retryable)
{
    sn_http_server_destroy(g_srv);
    free(g_seen.body);
    start_server_buffered(1024 * 1024, 4, true, 64 * 1024);
    g_seen.gated = true;
    big_post a = {.len = 100 * 1024};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, big_post_thread, &a), 0);
    while (atomic_load(&g_seen.in_handler) == 0) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    big_post b = {.len = 100 * 1024};
    big_post_thread(&b);
    ck_assert_int_eq(b.r.status, 503);
    ck_assert_str_ne(b.r.retry_after, "");
    reply_free(&b.r);

    pthread_mutex_lock(&g_seen.mu);
    g_seen.open = true;
    pthread_cond_broadcast(&g_seen.cv);
    pthread_mutex_unlock(&g_seen.mu);
    pthread_join(th, NULL);
    ck_assert_int_eq(a.r.status, 200);
    reply_free(&a.r);

    big_post c = {.len = 100 * 1024};
    big_post_thread(&c);
    ck_assert_int_eq(c.r.status, 200);
    reply_free(&c.r);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 2);
}
END_TEST

/* A memory budget for the tests: `cap` bytes at once, `used` of them reserved now. */
typedef struct fake_budget {
    atomic_size_t used;
    size_t cap;
    atomic_int refused;
} fake_budget;

static int fake_reserve(void *ud, size_t more, size_t held)
{
    fake_budget *b = ud;
    if (held + more > b->cap) {
        atomic_fetch_add(&b->refused, 1);
        return -E2BIG;
    }
    size_t before = atomic_fetch_add(&b->used, more);
    if (before + more > b->cap) {
        atomic_fetch_sub(&b->used, more);
        atomic_fetch_add(&b->refused, 1);
        return -EAGAIN;
    }
    return 0;
}

static void fake_release(void *ud, size_t bytes)
{
    fake_budget *b = ud;
    ck_assert_uint_ge(atomic_load(&b->used), bytes);
    atomic_fetch_sub(&b->used, bytes);
}

/* Waits up to 5 s for b->used to become want (a reservation comes back when the server has
 * finished the request, which may be just after the client has its answer); returns it. */
static size_t wait_used(fake_budget *b, size_t want)
{
    for (int i = 0; i < 500 && atomic_load(&b->used) != want; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return atomic_load(&b->used);
}

/* With a memory budget a request reserves its Content-Length and the decoder's share (half for
 * protobuf, twice for JSON) before its body is read: over what is left it gets 503 +
 * Retry-After without the handler running (with and without "Expect: 100-continue"), over the
 * whole budget 413; what it reserved comes back when it is answered. */
START_TEST(memory_budget_refuses_before_the_body)
{
    sn_http_server_destroy(g_srv);
    free(g_seen.body);
    g_seen.body = NULL;
    static fake_budget fb;
    atomic_store(&fb.used, 0);
    atomic_store(&fb.refused, 0);
    fb.cap = 100 * 1024;
    memset(&g_seen, 0, sizeof g_seen);
    pthread_mutex_init(&g_seen.mu, NULL);
    pthread_cond_init(&g_seen.cv, NULL);
    sn_http_server_config cfg = {
        .listen = "127.0.0.1:0",
        .max_body_bytes = 1024 * 1024,
        .threads = 2,
        .handler = test_handler,
        .handler_ud = &g_seen,
        .budget = {fake_reserve, fake_release, &fb},
    };
    char err[256];
    ck_assert_int_eq(sn_http_server_create(&cfg, &g_srv, err, sizeof err), 0);
    ck_assert_msg(sn_http_server_start(g_srv, err, sizeof err) == 0, "%s", err);
    g_port = sn_http_server_port(g_srv);

    uint8_t *body = calloc(1, 80 * 1024);
    /* 60 KiB of protobuf: 90 KiB reserved, fits; released after the answer. */
    reply r = post("/v1/traces", "application/x-protobuf", body, 60 * 1024);
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 1);
    ck_assert_uint_eq(wait_used(&fb, 0), 0);

    /* 50 KiB held elsewhere: the same request does not fit now. */
    atomic_store(&fb.used, 50 * 1024);
    for (int expect = 0; expect < 2; expect++) {
        g_expect_continue = expect == 1;
        r = post("/v1/traces", "application/x-protobuf", body, 60 * 1024);
        ck_assert_int_eq(r.status, 503);
        ck_assert_str_eq(r.retry_after, "1");
        int code = 0;
        char msg[256];
        decode_status(r.body, r.len, &code, msg, sizeof msg);
        ck_assert_int_eq(code, 14); /* UNAVAILABLE */
        ck_assert_ptr_nonnull(strstr(msg, "memory"));
        reply_free(&r);
    }
    g_expect_continue = false;
    ck_assert_int_eq(atomic_load(&g_seen.calls), 1);
    ck_assert_uint_eq(atomic_load(&fb.used), 50 * 1024);
    atomic_store(&fb.used, 0);

    /* JSON reserves three times its length: 40 KiB never fits (413), 30 KiB does. */
    memset(body, ' ', 40 * 1024);
    body[0] = '{';
    body[40 * 1024 - 1] = '}';
    r = post("/v1/traces", "application/json", body, 40 * 1024);
    ck_assert_int_eq(r.status, 413);
    reply_free(&r);
    body[30 * 1024 - 1] = '}';
    r = post("/v1/traces", "application/json", body, 30 * 1024);
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 2);
    ck_assert_uint_eq(wait_used(&fb, 0), 0);

    /* A chunked body reserves as its buffer grows: 80 KiB of protobuf passes the budget. */
    r = request("POST", "/v1/traces", "application/x-protobuf", NULL, NULL, 0, 80 * 1024);
    ck_assert_int_eq(r.status, 413);
    reply_free(&r);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 2);
    ck_assert_uint_eq(wait_used(&fb, 0), 0);
    ck_assert_int_ge(atomic_load(&fb.refused), 4);
    free(body);
}
END_TEST

static unsigned g_body_wait_ms, g_body_time_ms; /* for start_server_slots; 0: defaults */
static atomic_int g_timeouts[2];                /* on_timeout calls: [0] slow, [1] waited */

static void count_timeout(void *ud, bool waited)
{
    (void)ud;
    atomic_fetch_add(&g_timeouts[waited ? 1 : 0], 1);
}

/* Starts g_srv with max_bodies body slots of max_bytes together (0: no byte bound) and the
 * memory budget fb (large: it only counts). */
static void start_server_slot_bytes(unsigned max_bodies, size_t max_bytes, unsigned threads,
                                    fake_budget *fb)
{
    sn_http_server_destroy(g_srv);
    free(g_seen.body);
    memset(&g_seen, 0, sizeof g_seen);
    pthread_mutex_init(&g_seen.mu, NULL);
    pthread_cond_init(&g_seen.cv, NULL);
    atomic_store(&fb->used, 0);
    atomic_store(&fb->refused, 0);
    fb->cap = 64 * 1024 * 1024;
    sn_http_server_config cfg = {
        .listen = "127.0.0.1:0",
        .max_body_bytes = 1024 * 1024,
        .max_bodies = max_bodies,
        .max_bodies_bytes = max_bytes,
        .threads = threads,
        .handler = test_handler,
        .handler_ud = &g_seen,
        .budget = {fake_reserve, fake_release, fb},
        .body_wait_ms = g_body_wait_ms,
        .body_time_ms = g_body_time_ms,
        .on_timeout = count_timeout,
    };
    char err[256];
    ck_assert_int_eq(sn_http_server_create(&cfg, &g_srv, err, sizeof err), 0);
    ck_assert_msg(sn_http_server_start(g_srv, err, sizeof err) == 0, "%s", err);
    g_port = sn_http_server_port(g_srv);
}

static void start_server_slots(unsigned max_bodies, unsigned threads, fake_budget *fb)
{
    start_server_slot_bytes(max_bodies, 0, threads, fb);
}

/* A raw connection that sends the headers of a 1 000-byte OTLP/JSON body and its first 10
 * bytes, then nothing: it holds a body slot. The caller closes it. */
static int slow_client(void)
{
    static const char head[] = "POST /v1/traces HTTP/1.1\r\nHost: x\r\n"
                               "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                               "{\"resourceS";
    int fd = raw_connect();
    ck_assert_int_eq(send(fd, head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
    return fd;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A client that holds the only slot by sending slowly stalls nobody for long: a request
 * waiting for the slot longer than body_wait_ms is refused retryably (503 + Retry-After) with
 * its body unread, and the slow one loses its connection at its next bytes after body_time_ms,
 * after which the next request gets the slot. */
START_TEST(slow_bodies_do_not_hold_the_slots_for_ever)
{
    static fake_budget fb;
    g_body_wait_ms = 300;
    g_body_time_ms = 600;
    atomic_store(&g_timeouts[0], 0);
    atomic_store(&g_timeouts[1], 0);
    start_server_slots(1, 2, &fb);
    int slow = slow_client();
    sleep_ms(100); /* its headers are in: it holds the slot */

    reply r = post("/v1/traces", "application/json", "{}", 2);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(r.retry_after, "1");
    reply_free(&r);
    ck_assert_int_eq(atomic_load(&g_timeouts[1]), 1);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 0);

    sleep_ms(600); /* past body_time_ms: its next bytes cost it the connection */
    ck_assert_int_eq(send(slow, "pans\":[", 7, MSG_NOSIGNAL), 7);
    char buf[64];
    ck_assert_int_le(recv(slow, buf, sizeof buf, 0), 0);
    close(slow);
    ck_assert_int_eq(atomic_load(&g_timeouts[0]), 1);
    r = post("/v1/traces", "application/json", "{}", 2);
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
    ck_assert_uint_eq(wait_used(&fb, 0), 0);
    g_body_wait_ms = g_body_time_ms = 0;
}
END_TEST

enum { HELD_POSTS = 6, HELD_LEN = 100 * 1024 };

/* With the handler held, posts HELD_POSTS bodies of HELD_LEN at once to the started server and
 * checks that exactly 2 are read -- 2 reservations of a body and its decoder's share (protobuf:
 * half again), at most 2 in the handler (the other's body may wait for the held worker thread)
 * -- while the others wait unread (nothing reserved, nothing refused); then lets the handler go
 * on and checks that all are answered 200 with their whole bodies and every byte released. */
static void check_two_bodies_read_at_once(fake_budget *fb)
{
    g_seen.gated = true;
    big_post posts[HELD_POSTS];
    pthread_t th[HELD_POSTS];
    for (int i = 0; i < HELD_POSTS; i++) {
        posts[i] = (big_post){.len = HELD_LEN};
        ck_assert_int_eq(pthread_create(&th[i], NULL, big_post_thread, &posts[i]), 0);
    }
    /* Two bodies are reserved and read at once -- unless every other connection landed on the
     * worker thread the first body's held handler blocks (libmicrohttpd serves a connection on
     * the thread that accepted it), which then reads nothing more until the handler goes on:
     * one, for up to 10 s. Never more than two, either way. */
    const size_t one = HELD_LEN + HELD_LEN / 2;
    for (int i = 0; i < 10000 && atomic_load(&fb->used) < 2 * one; i++) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    struct timespec settle = {0, 300 * 1000000L};
    nanosleep(&settle, NULL);
    size_t used = atomic_load(&fb->used);
    int in_handler = atomic_load(&g_seen.in_handler);
    ck_assert_int_le(in_handler, 2);
    unsigned holding, waiting;
    sn_http_server_slots(g_srv, &holding, &waiting);
    if (used != 2 * one) {
        /* Starved, not held back: one slot taken and nobody waiting for another (a slot bound
         * of one would leave the others waiting for it). */
        ck_assert_msg(used == one && in_handler == 1 && holding == 1 && waiting == 0,
                      "%zu bytes reserved, %d in the handler, %u slots held, %u waiting: "
                      "neither two bodies nor one starved",
                      used, in_handler, holding, waiting);
        fprintf(stderr, "check_two_bodies_read_at_once: one body read (the others wait for its "
                        "worker thread)\n");
    } else {
        ck_assert_uint_eq(holding, 2);
    }

    pthread_mutex_lock(&g_seen.mu);
    g_seen.open = true;
    pthread_cond_broadcast(&g_seen.cv);
    pthread_mutex_unlock(&g_seen.mu);
    for (int i = 0; i < HELD_POSTS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(posts[i].r.status, 200);
        reply_free(&posts[i].r);
    }
    ck_assert_int_eq(atomic_load(&g_seen.calls), HELD_POSTS);
    ck_assert_uint_eq(g_seen.len, HELD_LEN);
    ck_assert_int_eq(atomic_load(&fb->refused), 0);
    ck_assert_uint_eq(wait_used(fb, 0), 0);
}

/* max_bodies: with 2 slots, of 6 requests only 2 are read at once, all are answered
 * (check_two_bodies_read_at_once); small requests from many clients get through one slot. */
START_TEST(body_slots_hold_requests_back_without_refusing)
{
    static fake_budget fb;
    start_server_slots(2, 2, &fb);
    check_two_bodies_read_at_once(&fb);

    /* small requests from many clients at once all get through one slot too */
    start_server_slots(1, 2, &fb);
    concurrent_clients(8, 10);
}
END_TEST

/* max_bodies_bytes: 8 slots of 250 KiB together (and 4 worker threads): of 6 bodies of 100 KiB
 * only 2 are read at once (a third would pass the bytes), all are answered; a body larger than
 * the bound is still read (alone); small requests from many clients all get through. */
START_TEST(body_slots_bound_the_bytes_read_at_once)
{
    static fake_budget fb;
    start_server_slot_bytes(8, 250 * 1024, 4, &fb);
    check_two_bodies_read_at_once(&fb);

    /* a body over the bound alone is read and answered */
    start_server_slot_bytes(8, 64 * 1024, 2, &fb);
    big_post one = {.len = HELD_LEN};
    big_post_thread(&one);
    ck_assert_int_eq(one.r.status, 200);
    reply_free(&one.r);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 1);

    /* small requests from many clients at once all get through */
    start_server_slot_bytes(8, 64 * 1024, 2, &fb);
    concurrent_clients(8, 10);
}
END_TEST

/* Stopping the server while requests wait for a body slot: they are let go (answered or cut
 * off), no client hangs, and the server starts again. */
START_TEST(stop_with_requests_waiting_for_a_slot)
{
    static fake_budget fb;
    start_server_slots(1, 2, &fb);
    g_seen.sleep_ms = 200;
    enum { THREADS = 5 };
    pthread_t th[THREADS];
    client_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (client_arg){2, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, client_thread, &args[i]), 0);
    }
    struct timespec ts = {0, 300 * 1000000L};
    nanosleep(&ts, NULL);
    sn_http_server_stop(g_srv);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    g_seen.sleep_ms = 0;
    char err[128];
    ck_assert_int_eq(sn_http_server_start(g_srv, err, sizeof err), 0);
    g_port = sn_http_server_port(g_srv);
    reply r = post("/v1/traces", "application/json", "{}", 2);
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
    ck_assert_uint_eq(wait_used(&fb, 0), 0);
}
END_TEST

START_TEST(stop_with_requests_in_flight)
{
    g_seen.sleep_ms = 200;
    enum { THREADS = 6 };
    pthread_t th[THREADS];
    client_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (client_arg){3, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, client_thread, &args[i]), 0);
    }
    struct timespec ts = {0, 300 * 1000000L};
    nanosleep(&ts, NULL);
    sn_http_server_stop(g_srv);
    ck_assert_int_eq(sn_http_server_port(g_srv), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL); /* clients finish: answered or refused, never hung */
    sn_http_server_stop(g_srv);    /* twice is fine */

    /* Nothing listens any more; a restart listens again. */
    reply r = post("/v1/traces", "application/json", "{}", 2);
    ck_assert_int_ne(r.rc, CURLE_OK);
    reply_free(&r);
    g_seen.sleep_ms = 0;
    char err[128];
    ck_assert_int_eq(sn_http_server_start(g_srv, err, sizeof err), 0);
    g_port = sn_http_server_port(g_srv);
    r = post("/v1/traces", "application/json", "{}", 2);
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
}
END_TEST

/* A connection attempt to 127.0.0.1:port: 0 when accepted (a listening socket, even one no
 * thread serves any more, takes it into its backlog), else the connect errno. */
static int connect_errno(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a) == 0 ? 0 : errno;
    close(fd);
    return rc;
}

/* Posts until told to stop, to whatever port the server has now; counts the answers. */
typedef struct hammer {
    atomic_bool stop;
    atomic_int answered;
} hammer;

static void *hammer_thread(void *p)
{
    hammer *h = p;
    while (!atomic_load(&h->stop)) {
        reply r = post("/v1/traces", "application/x-protobuf", "x", 1);
        if (r.rc == CURLE_OK && r.status == 200)
            atomic_fetch_add(&h->answered, 1);
        reply_free(&r);
    }
    return NULL;
}

/* Stopping while the worker threads are busy with connections (accepting, answering, closing):
 * the stop never races them (libmicrohttpd aborts the process when its listening socket is
 * taken out of a worker's epoll set by the stop and the worker at once), each stop closes the
 * listening socket, and the server answers again after each start. */
START_TEST(stop_while_busy)
{
    char err[128];
    hammer h = {.stop = false, .answered = 0};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, hammer_thread, &h), 0);
    for (int i = 0; i < 300; i++) {
        int before = atomic_load(&h.answered);
        for (int spin = 0; spin < 100000 && atomic_load(&h.answered) < before + 2; spin++) {
            struct timespec ts = {0, 100 * 1000L};
            nanosleep(&ts, NULL);
        }
        uint16_t port = g_port;
        sn_http_server_stop(g_srv);
        ck_assert_int_eq(connect_errno(port), ECONNREFUSED);
        ck_assert_int_eq(sn_http_server_start(g_srv, err, sizeof err), 0);
        g_port = sn_http_server_port(g_srv);
    }
    atomic_store(&h.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_ge(atomic_load(&h.answered), 600);
}
END_TEST

/* A route for a server without OTLP handler: it claims /v1/traces, which it can only see
 * because there are no OTLP routes, and answers 405 with an Allow header. */
static bool route_only(const char *method, const char *path, const uint8_t *body, size_t len,
                       sn_http_reply *out, void *ud)
{
    (void)method;
    (void)body;
    (void)len;
    (void)ud;
    if (strcmp(path, "/v1/traces") != 0)
        return false;
    out->status = 405;
    out->allow = "GET, HEAD";
    return true;
}

START_TEST(server_without_otlp_routes)
{
    char err[256];
    sn_http_server *s;
    sn_http_server_config cfg = {.listen = "127.0.0.1:0", .route = route_only};
    ck_assert_int_eq(sn_http_server_create(&cfg, &s, err, sizeof err), 0);
    ck_assert_msg(sn_http_server_start(s, err, sizeof err) == 0, "%s", err);
    uint16_t saved = g_port;
    g_port = sn_http_server_port(s);
    reply r = post("/v1/traces", "application/x-protobuf", "", 0);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(r.allow, "GET, HEAD");
    ck_assert_uint_eq(r.len, 0);
    reply_free(&r);
    r = post("/v1/metrics", "application/x-protobuf", "", 0);
    ck_assert_int_eq(r.status, 404);
    reply_free(&r);
    g_port = saved;
    sn_http_server_destroy(s);
    ck_assert_int_eq(atomic_load(&g_seen.calls), 0);
}
END_TEST

START_TEST(configuration_errors)
{
    char err[256];
    sn_http_server *s = NULL;
    sn_http_server_config cfg = {.listen = "127.0.0.1:0", .handler = test_handler};
    const char *bad[] = {"127.0.0.1", "127.0.0.1:70000", "127.0.0.1:x", "::1:80", "host:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.listen = bad[i];
        ck_assert_int_eq(sn_http_server_create(&cfg, &s, err, sizeof err), -EINVAL);
        ck_assert_ptr_null(s);
        ck_assert_uint_gt(strlen(err), 0);
    }
    cfg.listen = "127.0.0.1:0";
    cfg.handler = NULL;
    ck_assert_int_eq(sn_http_server_create(&cfg, &s, err, sizeof err), -EINVAL);
    cfg.handler = test_handler;
    cfg.threads = 8;
    cfg.max_connections = 4;
    ck_assert_int_eq(sn_http_server_create(&cfg, &s, err, sizeof err), -EINVAL);

    /* The port of the running server is taken. */
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)g_port);
    cfg = (sn_http_server_config){.listen = listen, .handler = test_handler};
    ck_assert_int_eq(sn_http_server_create(&cfg, &s, err, sizeof err), 0);
    ck_assert_int_eq(sn_http_server_start(s, err, sizeof err), -EADDRINUSE);
    ck_assert_ptr_nonnull(strstr(err, listen));
    sn_http_server_destroy(s);

    /* IPv6 loopback in brackets, when the host has it. */
    cfg.listen = "[::1]:0";
    ck_assert_int_eq(sn_http_server_create(&cfg, &s, err, sizeof err), 0);
    if (sn_http_server_start(s, err, sizeof err) == 0) {
        ck_assert_int_ne(sn_http_server_port(s), 0);
        ck_assert_int_eq(sn_http_server_start(s, err, sizeof err), -EALREADY);
    }
    sn_http_server_destroy(s);
    sn_http_server_destroy(NULL);
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("otlp_http");
    TCase *tc = tcase_create("server");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, each_route_and_content_type);
    tcase_add_test(tc, other_media_types_and_encodings_get_415);
    tcase_add_test(tc, gzip_body_is_decompressed_exactly);
    tcase_add_test(tc, gzip_limit_is_exact_and_bombs_get_413);
    tcase_add_test(tc, oversized_identity_body_gets_413);
    tcase_add_test(tc, every_outcome_maps_to_status_headers_and_body);
    tcase_add_test(tc, partial_success_bodies);
    tcase_add_test(tc, wrong_method_and_unknown_path);
    tcase_add_test(tc, malformed_requests_on_raw_sockets);
    tcase_add_test(tc, many_concurrent_requests);
    tcase_add_test(tc, buffered_bytes_budget_refuses_retryable);
    tcase_add_test(tc, memory_budget_refuses_before_the_body);
    tcase_add_test(tc, body_slots_hold_requests_back_without_refusing);
    tcase_add_test(tc, body_slots_bound_the_bytes_read_at_once);
    tcase_add_test(tc, stop_with_requests_waiting_for_a_slot);
    tcase_add_test(tc, slow_bodies_do_not_hold_the_slots_for_ever);
    tcase_add_test(tc, stop_with_requests_in_flight);
    tcase_add_test(tc, stop_while_busy);
    tcase_add_test(tc, server_without_otlp_routes);
    tcase_add_test(tc, configuration_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(http_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
