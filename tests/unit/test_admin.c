/* Unit tests for shared/admin.c: /healthz, /readyz and /metrics over real HTTP (libcurl against
 * 127.0.0.1 on a free port). */
#include "admin.h"

#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- a small libcurl client */

typedef struct reply {
    long status;
    char *body;
    size_t len;
    char content_type[128];
    char allow[64];
    bool ok; /* the transfer completed */
} reply;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    reply *r = ud;
    size_t add = size * n;
    char *nb = realloc(r->body, r->len + add + 1);
    ck_assert_ptr_nonnull(nb);
    memcpy(nb + r->len, p, add);
    r->body = nb;
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

/* Keeps the Allow header (without its line ending). */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    reply *r = ud;
    size_t len = size * n;
    if (len > 6 && strncasecmp(p, "Allow:", 6) == 0) {
        size_t i = 6;
        while (i < len && p[i] == ' ')
            i++;
        size_t e = len;
        while (e > i && (p[e - 1] == '\r' || p[e - 1] == '\n'))
            e--;
        snprintf(r->allow, sizeof r->allow, "%.*s", (int)(e - i), p + i);
    }
    return len;
}

static reply request(uint16_t port, const char *method, const char *path)
{
    reply r;
    memset(&r, 0, sizeof r);
    CURL *c = curl_easy_init();
    ck_assert_ptr_nonnull(c);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "x=1");
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    r.ok = curl_easy_perform(c) == CURLE_OK;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    if (ct != NULL)
        snprintf(r.content_type, sizeof r.content_type, "%s", ct);
    curl_easy_cleanup(c);
    return r;
}

static void reply_free(reply *r)
{
    free(r->body);
    r->body = NULL;
}

/* ---------------------------------------------------------------- fixture */

typedef struct readiness {
    _Atomic bool ready;
    char reason[64];
    _Atomic int calls;
} readiness;

static bool ready_cb(char *reason, size_t reasonlen, void *ud)
{
    readiness *r = ud;
    atomic_fetch_add(&r->calls, 1);
    if (atomic_load(&r->ready))
        return true;
    snprintf(reason, reasonlen, "%s", r->reason);
    return false;
}

static sn_metrics *g_metrics;
static sn_metrics_family *g_requests;
static sn_admin *g_admin;
static uint16_t g_port;
static readiness g_ready;

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char err[256];
    ck_assert_int_eq(sn_metrics_create(NULL, &g_metrics, err, sizeof err), 0);
    ck_assert_int_eq(sn_metrics_register(g_metrics,
                                         &(sn_metrics_desc){.type = SN_METRICS_COUNTER,
                                                            .name = "sentinel_test_requests_total",
                                                            .help = "Requests.",
                                                            .labels = {"outcome"}},
                                         &g_requests, err, sizeof err),
                     0);
    memset(&g_ready, 0, sizeof g_ready);
    atomic_store(&g_ready.ready, true);
    sn_admin_config cfg = {
        .listen = "127.0.0.1:0",
        .metrics = g_metrics,
        .ready = ready_cb,
        .ready_ud = &g_ready,
        .threads = 2,
    };
    ck_assert_int_eq(sn_admin_create(&cfg, &g_admin, err, sizeof err), 0);
    ck_assert_int_eq(sn_admin_port(g_admin), 0);
    ck_assert_msg(sn_admin_start(g_admin, err, sizeof err) == 0, "%s", err);
    g_port = sn_admin_port(g_admin);
    ck_assert_int_ne(g_port, 0);
}

static void teardown(void)
{
    sn_admin_destroy(g_admin);
    g_admin = NULL;
    sn_metrics_destroy(g_metrics);
    g_metrics = NULL;
    curl_global_cleanup();
}

/* ---------------------------------------------------------------- tests */

START_TEST(healthz_answers_ok)
{
    reply r = request(g_port, "GET", "/healthz");
    ck_assert(r.ok);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "ok\n");
    ck_assert_str_eq(r.content_type, "text/plain; charset=utf-8");
    reply_free(&r);
    /* The query string is not part of the path; liveness does not ask readiness. */
    atomic_store(&g_ready.ready, false);
    r = request(g_port, "GET", "/healthz?verbose=1");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "ok\n");
    reply_free(&r);
    ck_assert_int_eq(atomic_load(&g_ready.calls), 0);
}
END_TEST

START_TEST(readyz_follows_the_callback)
{
    reply r = request(g_port, "GET", "/readyz");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "ok\n");
    reply_free(&r);
    ck_assert_int_eq(atomic_load(&g_ready.calls), 1);

    atomic_store(&g_ready.ready, false);
    snprintf(g_ready.reason, sizeof g_ready.reason, "aggregator \"agg:9090\" down\nspool full");
    r = request(g_port, "GET", "/readyz");
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(r.content_type, "application/json");
    json_error_t je;
    json_t *j = json_loads(r.body, 0, &je);
    ck_assert_msg(j != NULL, "not JSON: %s", r.body);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "not ready");
    ck_assert_str_eq(json_string_value(json_object_get(j, "reason")),
                     "aggregator \"agg:9090\" down\nspool full");
    json_decref(j);
    reply_free(&r);

    /* No reason given: a generic one. */
    g_ready.reason[0] = '\0';
    r = request(g_port, "GET", "/readyz");
    ck_assert_int_eq(r.status, 503);
    j = json_loads(r.body, 0, &je);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "reason")), "not ready");
    json_decref(j);
    reply_free(&r);

    atomic_store(&g_ready.ready, true);
    r = request(g_port, "GET", "/readyz");
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
    ck_assert_int_eq(atomic_load(&g_ready.calls), 4);
}
END_TEST

START_TEST(metrics_serves_the_registry)
{
    sn_counter *ok = sn_metrics_counter(g_requests, (const char *[]){"ok"});
    sn_counter_add(ok, 5);
    reply r = request(g_port, "GET", "/metrics");
    ck_assert(r.ok);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    char *want;
    size_t len;
    ck_assert_int_eq(sn_metrics_render_alloc(g_metrics, &want, &len), 0);
    ck_assert_uint_eq(r.len, len);
    ck_assert_str_eq(r.body, want);
    ck_assert_ptr_nonnull(strstr(r.body, "\nsentinel_test_requests_total{outcome=\"ok\"} 5\n"));
    free(want);
    reply_free(&r);

    /* The next scrape sees new values. */
    sn_counter_inc(ok);
    r = request(g_port, "GET", "/metrics?name[]=x");
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\nsentinel_test_requests_total{outcome=\"ok\"} 6\n"));
    reply_free(&r);

    /* HEAD: headers only. */
    r = request(g_port, "HEAD", "/metrics");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.content_type, SN_METRICS_CONTENT_TYPE);
    ck_assert_uint_eq(r.len, 0);
    reply_free(&r);
}
END_TEST

START_TEST(other_methods_and_paths_are_refused)
{
    const char *paths[] = {"/healthz", "/readyz", "/metrics"};
    const char *methods[] = {"POST", "PUT", "DELETE"};
    for (int i = 0; i < 3; i++) {
        reply r = request(g_port, methods[i], paths[i]);
        ck_assert_int_eq(r.status, 405);
        ck_assert_str_eq(r.allow, "GET, HEAD");
        reply_free(&r);
    }
    /* No OTLP routes on the admin listener, and nothing else either. */
    const char *missing[] = {"/v1/traces", "/", "/metrics/", "/healthzz", "/health"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        reply r = request(g_port, "GET", missing[i]);
        ck_assert_msg(r.status == 404, "%s: %ld", missing[i], r.status);
        reply_free(&r);
        r = request(g_port, "POST", missing[i]);
        ck_assert_int_eq(r.status, 404);
        reply_free(&r);
    }
    ck_assert_int_eq(atomic_load(&g_ready.calls), 0);
}
END_TEST

/* Scrapes from several threads while counters move. */
typedef struct scraper {
    int ok;
} scraper;

static void *scrape(void *arg)
{
    scraper *s = arg;
    for (int i = 0; i < 25; i++) {
        reply r = request(g_port, "GET", "/metrics");
        if (r.status == 200 && strstr(r.body, "# TYPE sentinel_test_requests_total counter\n"))
            s->ok++;
        reply_free(&r);
    }
    return NULL;
}

START_TEST(concurrent_scrapes)
{
    pthread_t t[4];
    scraper s[4];
    memset(s, 0, sizeof s);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, scrape, &s[i]), 0);
    sn_counter *c = sn_metrics_counter(g_requests, (const char *[]){"busy"});
    for (int i = 0; i < 100000; i++)
        sn_counter_inc(c);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(s[i].ok, 25);
    }
    reply r = request(g_port, "GET", "/metrics");
    ck_assert_ptr_nonnull(
        strstr(r.body, "\nsentinel_test_requests_total{outcome=\"busy\"} 100000\n"));
    reply_free(&r);
}
END_TEST

START_TEST(oversized_exposition_is_a_500)
{
    char err[256];
    sn_metrics *m;
    sn_metrics_limits lim = {.max_render_bytes = 2048};
    ck_assert_int_eq(sn_metrics_create(&lim, &m, err, sizeof err), 0);
    sn_metrics_family *f;
    ck_assert_int_eq(
        sn_metrics_register(
            m,
            &(sn_metrics_desc){.type = SN_METRICS_GAUGE, .name = "g", .help = "g", .labels = {"k"}},
            &f, err, sizeof err),
        0);
    for (int i = 0; i < 200; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        sn_gauge_set(sn_metrics_gauge(f, (const char *[]){k}), i);
    }
    sn_admin *a;
    sn_admin_config cfg = {.listen = "127.0.0.1:0", .metrics = m};
    ck_assert_int_eq(sn_admin_create(&cfg, &a, err, sizeof err), 0);
    ck_assert_int_eq(sn_admin_start(a, err, sizeof err), 0);
    reply r = request(sn_admin_port(a), "GET", "/metrics");
    ck_assert_int_eq(r.status, 500);
    ck_assert_str_eq(r.body, "metrics exposition larger than its limit\n");
    reply_free(&r);
    /* Without a readiness callback the endpoint is always ready. */
    r = request(sn_admin_port(a), "GET", "/readyz");
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
    sn_admin_destroy(a);
    sn_metrics_destroy(m);
}
END_TEST

START_TEST(without_a_registry_metrics_is_404)
{
    char err[256];
    sn_admin *a;
    sn_admin_config cfg = {.listen = "127.0.0.1:0"};
    ck_assert_int_eq(sn_admin_create(&cfg, &a, err, sizeof err), 0);
    ck_assert_int_eq(sn_admin_start(a, err, sizeof err), 0);
    reply r = request(sn_admin_port(a), "GET", "/metrics");
    ck_assert_int_eq(r.status, 404);
    reply_free(&r);
    r = request(sn_admin_port(a), "GET", "/healthz");
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
    /* Stop, then start again on a fresh port. */
    sn_admin_stop(a);
    ck_assert_int_eq(sn_admin_port(a), 0);
    sn_admin_stop(a);
    ck_assert_int_eq(sn_admin_start(a, err, sizeof err), 0);
    ck_assert_int_eq(sn_admin_start(a, err, sizeof err), -EALREADY);
    r = request(sn_admin_port(a), "GET", "/healthz");
    ck_assert_int_eq(r.status, 200);
    reply_free(&r);
    sn_admin_destroy(a);
}
END_TEST

START_TEST(route_helper_for_other_servers)
{
    sn_http_reply rep = {.status = 200};
    ck_assert(!sn_admin_route(g_metrics, NULL, NULL, "GET", "/api/v1/config", &rep));
    ck_assert_ptr_null(rep.body);
    ck_assert_uint_eq(rep.status, 200);
    ck_assert(sn_admin_route(g_metrics, NULL, NULL, "GET", "/metrics", &rep));
    ck_assert_uint_eq(rep.status, 200);
    ck_assert_str_eq(rep.content_type, SN_METRICS_CONTENT_TYPE);
    ck_assert_ptr_nonnull(rep.body);
    ck_assert_int_eq(memcmp(rep.body, "# HELP ", 7), 0);
    free(rep.body);
    rep = (sn_http_reply){.status = 200};
    ck_assert(!sn_admin_route(NULL, NULL, NULL, "GET", "/metrics", &rep));
    ck_assert_ptr_null(rep.body);
}
END_TEST

START_TEST(configuration_errors)
{
    char err[256];
    sn_admin *a = (sn_admin *)1;
    sn_admin_config cfg = {.listen = "127.0.0.1"};
    ck_assert_int_eq(sn_admin_create(&cfg, &a, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(a);
    ck_assert_ptr_nonnull(strstr(err, "127.0.0.1"));
    ck_assert_int_eq(sn_admin_create(NULL, &a, err, sizeof err), -EINVAL);
    /* The default listen address is used when none is given (not started here: it is a
     * fixed port). */
    cfg.listen = NULL;
    ck_assert_int_eq(sn_admin_create(&cfg, &a, err, sizeof err), 0);
    ck_assert_int_eq(sn_admin_port(a), 0);
    sn_admin_destroy(a);
    /* The port of the running endpoint is taken. */
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)g_port);
    cfg.listen = listen;
    ck_assert_int_eq(sn_admin_create(&cfg, &a, err, sizeof err), 0);
    ck_assert_int_eq(sn_admin_start(a, err, sizeof err), -EADDRINUSE);
    ck_assert_ptr_nonnull(strstr(err, listen));
    ck_assert_int_eq(sn_admin_port(a), 0);
    sn_admin_destroy(a);
    sn_admin_destroy(NULL);
}
END_TEST

static Suite *admin_suite(void)
{
    Suite *s = suite_create("admin");
    TCase *tc = tcase_create("endpoints");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, healthz_answers_ok);
    tcase_add_test(tc, readyz_follows_the_callback);
    tcase_add_test(tc, metrics_serves_the_registry);
    tcase_add_test(tc, other_methods_and_paths_are_refused);
    tcase_add_test(tc, concurrent_scrapes);
    tcase_add_test(tc, oversized_exposition_is_a_500);
    tcase_add_test(tc, without_a_registry_metrics_is_404);
    tcase_add_test(tc, route_helper_for_other_servers);
    tcase_add_test(tc, configuration_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(admin_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
