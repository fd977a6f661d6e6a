/* Unit tests for aggregator/api.c: every endpoint over HTTP on 127.0.0.1 (libcurl), against a
 * real state store in a temp dir (alerts written by the store from sn_alert values) and a fake
 * backend run on a real libuv loop in a thread of the test through sn_loop_call. */
#include "api.h"

#include "otlp/http_server.h"
#include "store.h"

#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define SEC    INT64_C(1000000000)
#define T0     (INT64_C(1795000000) * SEC) /* 2026-11-18T11:06:40Z */
#define NALERT 12
#define TOKEN  "s3cret-token"

/* ---------------------------------------------------------------- temp dir and store */

static char g_root[128];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Alert i: services "chatbot-api" (even) / "rag" (odd), models "gpt-4o" (i % 3 != 0) /
 * "claude" (i % 3 == 0), severities low..critical cycling, a minute apart, the last 4 resolved. */
static const char *svc_of(int i)
{
    return i % 2 == 0 ? "chatbot-api" : "rag";
}
static const char *model_of(int i)
{
    return i % 3 == 0 ? "claude" : "gpt-4o";
}
static sn_severity sev_of(int i)
{
    return (sn_severity)(SN_SEV_LOW + i % 4);
}
static int64_t ts_of(int i)
{
    return T0 + i * 60 * SEC;
}

static sn_alert make_alert(int i)
{
    sn_alert a;
    memset(&a, 0, sizeof a);
    snprintf(a.alert_id, sizeof a.alert_id, "6f1c2a3b-0000-4000-8000-%012d", i);
    a.timestamp_ns = ts_of(i);
    a.last_seen_ns = ts_of(i) + SEC;
    a.severity = sev_of(i);
    a.anomaly_type = i % 2 ? SN_ANOMALY_TOKEN_SPIKE : SN_ANOMALY_LATENCY_SPIKE;
    snprintf(a.service, sizeof a.service, "%s", svc_of(i));
    snprintf(a.model, sizeof a.model, "%s", model_of(i));
    a.method = SN_DETECT_ZSCORE;
    a.confidence = 0.9;
    a.metric = SN_METRIC_LATENCY_MS;
    a.value = 1000 + i;
    a.baseline = 200;
    a.threshold = 600;
    a.deviation_sigma = 5.5;
    a.trace_id[0] = 0xab;
    snprintf(a.region, sizeof a.region, "us-east-1");
    snprintf(a.time_window, sizeof a.time_window, "last_5_minutes");
    snprintf(a.root_cause, sizeof a.root_cause, "cause %d", i);
    a.nremediation = 1;
    snprintf(a.remediation[0], sizeof a.remediation[0], "check the provider status");
    a.status = i >= NALERT - 4 ? SN_ALERT_RESOLVED : SN_ALERT_FIRING;
    a.resolved_at_ns = a.status == SN_ALERT_RESOLVED ? ts_of(i) + 300 * SEC : 0;
    a.occurrences = (uint32_t)i + 1;
    return a;
}

/* ---------------------------------------------------------------- the loop and the fake backend */

typedef struct fake {
    uv_loop_t loop;
    sn_loop_call *lc;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready;
    /* the backend's state: touched on the loop thread only */
    json_t *config;
    int calls;
    int off_loop; /* calls that did not run on the loop thread */
    char last_service[64], last_model[64], last_metric[64];
    unsigned last_limit;
    /* a gate that keeps the loop busy */
    bool gate_entered, gate_open;
} fake;

static fake g_fake;
static sn_store *g_writer;
static sn_metrics *g_metrics;
static sn_api *g_api;
static char g_base_url[64];

static void note_call(fake *f)
{
    f->calls++;
    if (!pthread_equal(pthread_self(), f->tid))
        f->off_loop++;
}

static void copy_opt(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "(null)");
}

static int fake_baselines(void *ud, const char *service, const char *model, const char *metric,
                          json_t **out)
{
    fake *f = ud;
    note_call(f);
    copy_opt(f->last_service, sizeof f->last_service, service);
    copy_opt(f->last_model, sizeof f->last_model, model);
    copy_opt(f->last_metric, sizeof f->last_metric, metric);
    if (service != NULL && strcmp(service, "boom") == 0)
        return -EIO;
    if (service != NULL && strcmp(service, "bad-shape") == 0) {
        *out = json_string("not an object");
        return 0;
    }
    *out = json_pack("{s:[{s:s,s:s,s:s,s:i,s:f}]}", "baselines", "service",
                     service ? service : "chatbot-api", "model", model ? model : "gpt-4o", "metric",
                     metric ? metric : "latency_ms", "count", 1000, "mean", 2000.0);
    return 0;
}

/* Knows one key (chatbot-api, gpt-4o, any metric): `limit` points of value i at second i. */
static int fake_series(void *ud, const char *service, const char *model, const char *metric,
                       unsigned limit, json_t **out)
{
    fake *f = ud;
    note_call(f);
    copy_opt(f->last_service, sizeof f->last_service, service);
    copy_opt(f->last_model, sizeof f->last_model, model);
    copy_opt(f->last_metric, sizeof f->last_metric, metric);
    f->last_limit = limit;
    if (strcmp(service, "chatbot-api") != 0 || strcmp(model, "gpt-4o") != 0)
        return -ENOENT;
    json_t *pts = json_array();
    for (unsigned i = 0; i < limit && i < 50; i++)
        json_array_append_new(pts, json_pack("{s:i,s:f}", "time", (int)i, "value", (double)i));
    *out = json_pack("{s:s,s:o,s:{s:f,s:f,s:f}}", "metric", metric, "points", pts, "baseline",
                     "median", 2.0, "q1", 1.0, "q3", 3.0);
    return 0;
}

static int fake_service_health(void *ud, const char *name, json_t **out)
{
    fake *f = ud;
    note_call(f);
    if (strcmp(name, "chatbot-api") != 0 && strcmp(name, "svc with space") != 0)
        return -ENOENT;
    *out = json_pack("{s:s,s:s,s:i}", "service", name, "status", "degraded", "alerts_firing", 2);
    return 0;
}

static int fake_summary(void *ud, json_t **out)
{
    fake *f = ud;
    note_call(f);
    *out = json_pack("{s:i,s:i}", "alerts_firing", 8, "events_total", 12345);
    return 0;
}

static int fake_config_get(void *ud, json_t **out)
{
    fake *f = ud;
    note_call(f);
    *out = json_deep_copy(f->config);
    return 0;
}

/* Accepts numbers > 0 for keys it knows; anything else is -EINVAL naming the field. */
static int fake_config_post(void *ud, const json_t *changes, json_t **out, char *err, size_t errlen)
{
    fake *f = ud;
    note_call(f);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)changes, k, v)
    {
        if (json_object_get(f->config, k) == NULL) {
            snprintf(err, errlen, "unknown setting '%s'", k);
            return -EINVAL;
        }
        if (!json_is_number(v) || json_number_value(v) <= 0) {
            snprintf(err, errlen, "%s must be a number > 0", k);
            return -EINVAL;
        }
    }
    json_object_update(f->config, (json_t *)changes);
    *out = json_deep_copy(f->config);
    return 0;
}

/* Runs on the loop: blocks it until the test opens the gate. */
static void gate_fn(void *arg)
{
    fake *f = arg;
    pthread_mutex_lock(&f->mu);
    f->gate_entered = true;
    pthread_cond_broadcast(&f->cv);
    while (!f->gate_open)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

static void *gate_thread(void *arg)
{
    fake *f = arg;
    ck_assert_int_eq(sn_loop_call_run(f->lc, gate_fn, f), 0);
    return NULL;
}

static void *loop_main(void *arg)
{
    fake *f = arg;
    sn_loop_call_config cfg = {.max_queue = 4, .timeout_ns = 300 * (SEC / 1000)};
    ck_assert_int_eq(uv_loop_init(&f->loop), 0);
    ck_assert_int_eq(sn_loop_call_create(&f->loop, &cfg, &f->lc, NULL, 0), 0);
    pthread_mutex_lock(&f->mu);
    f->ready = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void close_fn(void *arg)
{
    sn_loop_call_close(arg);
}

/* ---------------------------------------------------------------- fixture */

static void start_api(const char *token, const char *origin, bool with_store, bool full_backend)
{
    sn_api_backend be = {
        .baselines = fake_baselines,
        .service_health = fake_service_health,
        .summary = full_backend ? fake_summary : NULL,
        .series = full_backend ? fake_series : NULL,
        .config_get = fake_config_get,
        .config_post = fake_config_post,
        .ud = &g_fake,
        .loop = g_fake.lc,
    };
    char dir[200];
    snprintf(dir, sizeof dir, "%s/data", g_root);
    sn_api_config cfg = {
        .listen = "127.0.0.1:0",
        .api_token = token,
        .cors_origin = origin,
        .store_dir = with_store ? dir : NULL,
        .metrics = g_metrics,
        .threads = 2,
    };
    char err[256];
    int rc = sn_api_create(&cfg, &be, &g_api, err, sizeof err);
    ck_assert_msg(rc == 0, "create: %d %s", rc, err);
    rc = sn_api_start(g_api, err, sizeof err);
    ck_assert_msg(rc == 0, "start: %d %s", rc, err);
    snprintf(g_base_url, sizeof g_base_url, "http://127.0.0.1:%u", (unsigned)sn_api_port(g_api));
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(g_root, sizeof g_root, "%s/sn-api-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(g_root));
    char dir[200], err[256];
    snprintf(dir, sizeof dir, "%s/data", g_root);
    ck_assert_int_eq(sn_store_open(dir, NULL, &g_writer, err, sizeof err), 0);
    for (int i = 0; i < NALERT; i++) {
        sn_alert a = make_alert(i);
        ck_assert_int_eq(sn_store_alert_upsert(g_writer, &a), 0);
    }
    ck_assert_int_eq(sn_metrics_create(NULL, &g_metrics, err, sizeof err), 0);

    memset(&g_fake, 0, sizeof g_fake);
    pthread_mutex_init(&g_fake.mu, NULL);
    pthread_cond_init(&g_fake.cv, NULL);
    g_fake.config =
        json_pack("{s:f,s:i}", "detection.zscore.threshold", 3.0, "alerts.dedup_window_s", 300);
    ck_assert_int_eq(pthread_create(&g_fake.tid, NULL, loop_main, &g_fake), 0);
    pthread_mutex_lock(&g_fake.mu);
    while (!g_fake.ready)
        pthread_cond_wait(&g_fake.cv, &g_fake.mu);
    pthread_mutex_unlock(&g_fake.mu);
    curl_global_init(CURL_GLOBAL_ALL);
}

static void teardown(void)
{
    sn_api_destroy(g_api); /* stops the HTTP threads while the loop still runs */
    g_api = NULL;
    ck_assert_int_eq(sn_loop_call_run(g_fake.lc, close_fn, g_fake.lc), 0);
    pthread_join(g_fake.tid, NULL);
    uv_loop_close(&g_fake.loop);
    sn_loop_call_destroy(g_fake.lc);
    json_decref(g_fake.config);
    sn_store_close(g_writer);
    sn_metrics_destroy(g_metrics);
    curl_global_cleanup();
    nftw(g_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---------------------------------------------------------------- the HTTP client */

typedef struct resp {
    long status;
    char *body;
    size_t len;
    char headers[8192];
    size_t hlen;
    json_t *json; /* the body parsed, or NULL */
} resp;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    resp *r = ud;
    size_t add = sz * n;
    char *b = realloc(r->body, r->len + add + 1);
    ck_assert_ptr_nonnull(b);
    memcpy(b + r->len, p, add);
    r->body = b;
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    resp *r = ud;
    size_t add = sz * n;
    if (r->hlen + add < sizeof r->headers) {
        memcpy(r->headers + r->hlen, p, add);
        r->hlen += add;
        r->headers[r->hlen] = '\0';
    }
    return add;
}

/* One request. auth: the whole Authorization value or NULL; ctype: Content-Type or NULL. */
static resp request(const char *method, const char *path, const char *auth, const char *body,
                    size_t body_len, const char *ctype)
{
    resp r;
    memset(&r, 0, sizeof r);
    char url[2048];
    snprintf(url, sizeof url, "%s%s", g_base_url, path);
    CURL *c = curl_easy_init();
    ck_assert_ptr_nonnull(c);
    struct curl_slist *h = NULL;
    char line[1024];
    if (auth != NULL) {
        snprintf(line, sizeof line, "Authorization: %s", auth);
        h = curl_slist_append(h, line);
    }
    if (ctype != NULL) {
        snprintf(line, sizeof line, "Content-Type: %s", ctype);
        h = curl_slist_append(h, line);
    } else if (body != NULL) {
        h = curl_slist_append(h, "Content-Type:"); /* none at all */
    }
    if (body_len < 1024)
        h = curl_slist_append(h, "Expect:"); /* larger bodies wait for 100-continue */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode cc = curl_easy_perform(c);
    ck_assert_msg(cc == CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(cc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r.body != NULL)
        r.json = json_loadb(r.body, r.len, 0, NULL);
    return r;
}

static resp get(const char *path, const char *auth)
{
    return request("GET", path, auth, NULL, 0, NULL);
}

static void resp_free(resp *r)
{
    free(r->body);
    json_decref(r->json);
}

/* The value of header name (case-insensitive) into out, or false. */
static bool header(const resp *r, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = r->headers; p != NULL && *p != '\0';) {
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r\n");
            snprintf(out, cap, "%.*s", (int)len, v);
            return true;
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return false;
}

/* Asserts a JSON error answer with this status whose message holds `has` (may be NULL). */
static void assert_error(const char *what, resp *r, long status, const char *has)
{
    ck_assert_msg(r->status == status, "%s: status %ld, wanted %ld (%s)", what, r->status, status,
                  r->body ? r->body : "");
    ck_assert_msg(r->json != NULL && json_is_object(r->json), "%s: not JSON: %s", what,
                  r->body ? r->body : "(none)");
    ck_assert_int_eq(json_object_size(r->json), 1);
    const char *msg = json_string_value(json_object_get(r->json, "error"));
    ck_assert_msg(msg != NULL, "%s: no error string", what);
    ck_assert_msg(has == NULL || strstr(msg, has) != NULL, "%s: '%s' lacks '%s'", what, msg, has);
    char ct[128];
    ck_assert(header(r, "Content-Type", ct, sizeof ct));
    ck_assert_str_eq(ct, "application/json");
}

/* GET path (auth) expecting a JSON error. */
static void expect_error(const char *path, const char *auth, long status, const char *has)
{
    resp r = get(path, auth);
    assert_error(path, &r, status, has);
    resp_free(&r);
}

/* GET an anomalies query (open API) expecting 200; returns the parsed body (caller decrefs). */
static json_t *anomalies(const char *query)
{
    char path[512];
    snprintf(path, sizeof path, "/api/v1/anomalies%s", query);
    resp r = get(path, NULL);
    ck_assert_msg(r.status == 200, "%s: %ld %s", path, r.status, r.body ? r.body : "");
    ck_assert_ptr_nonnull(r.json);
    json_t *j = json_incref(r.json);
    resp_free(&r);
    ck_assert(json_is_array(json_object_get(j, "anomalies")));
    return j;
}

static size_t n_items(json_t *j)
{
    return json_array_size(json_object_get(j, "anomalies"));
}

static json_int_t total_of(json_t *j)
{
    return json_integer_value(json_object_get(j, "total"));
}

/* ---------------------------------------------------------------- health, metrics, auth */

START_TEST(health_and_metrics_stay_open_with_a_token)
{
    start_api(TOKEN, NULL, true, true);
    resp r = get("/health", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(r.json);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "status")), "healthy");
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "version")), SENTINEL_VERSION);
    ck_assert_int_eq(json_object_size(r.json), 2);
    resp_free(&r);

    r = request("HEAD", "/health", NULL, NULL, 0, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.len, 0);
    resp_free(&r);

    r = get("/metrics", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "sentinel_api_requests_total{route=\"/health\","
                                         "code=\"200\"} 2"));
    resp_free(&r);
    r = get("/healthz", NULL);
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
}
END_TEST

START_TEST(the_api_wants_the_bearer_token)
{
    start_api(TOKEN, NULL, true, true);
    char v[256];
    resp r = get("/api/v1/anomalies", NULL);
    assert_error("no token", &r, 401, "token");
    ck_assert(header(&r, "WWW-Authenticate", v, sizeof v));
    ck_assert_str_eq(v, "Bearer realm=\"sentinel\"");
    resp_free(&r);

    const char *wrong[] = {"Bearer nope",
                           "Bearer " TOKEN "x",
                           "Bearer s3cret-toke",
                           "Basic czNjcmV0LXRva2Vu",
                           "Bearer",
                           TOKEN,
                           "Bearer " TOKEN " extra"};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        r = get("/api/v1/statistics/summary", wrong[i]);
        assert_error(wrong[i], &r, 401, "token");
        ck_assert(header(&r, "WWW-Authenticate", v, sizeof v));
        ck_assert_ptr_nonnull(strstr(v, "invalid_token"));
        resp_free(&r);
    }
    ck_assert_int_eq(g_fake.calls, 0); /* refused before the backend */

    /* An unknown /api/ path is 401 too: no probing without the token. */
    expect_error("/api/v1/nothing", NULL, 401, NULL);

    const char *right[] = {"Bearer " TOKEN, "bearer " TOKEN, "Bearer   " TOKEN "  "};
    for (size_t i = 0; i < sizeof right / sizeof right[0]; i++) {
        r = get("/api/v1/statistics/summary", right[i]);
        ck_assert_msg(r.status == 200, "%s: %ld", right[i], r.status);
        resp_free(&r);
    }
    r = get("/api/v1/anomalies?limit=1", "Bearer " TOKEN);
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    /* The dashboard's files carry no data and stay open. */
    r = get("/", NULL);
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
}
END_TEST

START_TEST(no_token_means_open)
{
    start_api(NULL, NULL, true, true);
    resp r = get("/api/v1/anomalies", NULL);
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    r = get("/api/v1/statistics/summary", "Bearer whatever");
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
}
END_TEST

/* ---------------------------------------------------------------- anomalies */

/* How many stored alerts match (the test's own reckoning). */
static int expect_count(const char *svc, const char *model, unsigned sev_mask, int64_t start,
                        int64_t end, int status)
{
    int n = 0;
    for (int i = 0; i < NALERT; i++) {
        sn_alert a = make_alert(i);
        if ((svc && strcmp(a.service, svc) != 0) || (model && strcmp(a.model, model) != 0) ||
            (sev_mask && !(sev_mask & (1u << a.severity))) || (start && a.timestamp_ns < start) ||
            (end && a.timestamp_ns >= end) || (status >= 0 && (int)a.status != status))
            continue;
        n++;
    }
    return n;
}

/* Every item matches the predicate's fields; timestamps strictly descending. */
static void check_items(json_t *j, const char *svc, const char *model, const char *sev)
{
    json_t *arr = json_object_get(j, "anomalies");
    const char *prev = NULL;
    size_t i;
    json_t *it;
    json_array_foreach(arr, i, it)
    {
        if (svc)
            ck_assert_str_eq(json_string_value(json_object_get(it, "service_name")), svc);
        if (model)
            ck_assert_str_eq(json_string_value(json_object_get(it, "model")), model);
        if (sev)
            ck_assert_ptr_nonnull(strstr(sev, json_string_value(json_object_get(it, "severity"))));
        const char *ts = json_string_value(json_object_get(it, "timestamp"));
        ck_assert_ptr_nonnull(ts);
        if (prev != NULL)
            ck_assert_msg(strcmp(prev, ts) > 0, "%s then %s", prev, ts);
        prev = ts;
    }
}

START_TEST(anomalies_filters_against_stored_alerts)
{
    start_api(NULL, NULL, true, true);
    json_t *j = anomalies("");
    ck_assert_uint_eq(n_items(j), NALERT);
    ck_assert_int_eq(total_of(j), NALERT);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "limit")), 100);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "offset")), 0);
    check_items(j, NULL, NULL, NULL);
    /* Newest first: the first item is alert NALERT-1, exactly as the alerts module writes it. */
    sn_alert newest = make_alert(NALERT - 1);
    json_t *want = sn_alert_to_json(&newest);
    ck_assert(json_equal(json_array_get(json_object_get(j, "anomalies"), 0), want));
    json_decref(want);
    json_decref(j);

    j = anomalies("?severity=high");
    ck_assert_int_eq(total_of(j), expect_count(NULL, NULL, 1u << SN_SEV_HIGH, 0, 0, -1));
    ck_assert_uint_eq(n_items(j), 3);
    check_items(j, NULL, NULL, "high");
    json_decref(j);

    j = anomalies("?severity=low,critical");
    ck_assert_int_eq(
        total_of(j),
        expect_count(NULL, NULL, (1u << SN_SEV_LOW) | (1u << SN_SEV_CRITICAL), 0, 0, -1));
    ck_assert_uint_eq(n_items(j), 6);
    check_items(j, NULL, NULL, "low critical");
    json_decref(j);

    j = anomalies("?service=rag&model=gpt-4o");
    ck_assert_int_eq(total_of(j), expect_count("rag", "gpt-4o", 0, 0, 0, -1));
    ck_assert_uint_eq(n_items(j), (size_t)expect_count("rag", "gpt-4o", 0, 0, 0, -1));
    ck_assert_uint_gt(n_items(j), 0);
    check_items(j, "rag", "gpt-4o", NULL);
    json_decref(j);

    j = anomalies("?service=chatbot-api&severity=medium");
    ck_assert_int_eq(total_of(j), expect_count("chatbot-api", NULL, 1u << SN_SEV_MEDIUM, 0, 0, -1));
    json_decref(j);

    j = anomalies("?service=nobody");
    ck_assert_int_eq(total_of(j), 0);
    ck_assert_uint_eq(n_items(j), 0);
    json_decref(j);

    /* Time range: [start, end) in RFC 3339 and in Unix seconds give the same answer. */
    int64_t s = ts_of(3), e = ts_of(7);
    char q[256];
    snprintf(q, sizeof q, "?start=%lld&end=%lld", (long long)(s / SEC), (long long)(e / SEC));
    j = anomalies(q);
    ck_assert_int_eq(total_of(j), 4);
    ck_assert_int_eq(total_of(j), expect_count(NULL, NULL, 0, s, e, -1));
    json_decref(j);
    char s3339[40], e3339[40];
    ck_assert_int_eq(sn_alert_format_time(s, s3339, sizeof s3339), 0);
    ck_assert_int_eq(sn_alert_format_time(e, e3339, sizeof e3339), 0);
    snprintf(q, sizeof q, "?start=%s&end=%s", s3339, e3339);
    j = anomalies(q);
    ck_assert_int_eq(total_of(j), 4);
    json_decref(j);
    /* An offset in the RFC 3339 form: 11:09:40+01:00 is 10:09:40Z, before every alert. */
    j = anomalies("?end=2026-11-18T11:09:40%2B01:00");
    ck_assert_int_eq(total_of(j), 0);
    json_decref(j);
    j = anomalies("?start=2026-11-18T11:09:40Z"); /* ts_of(3) */
    ck_assert_int_eq(total_of(j), NALERT - 3);
    json_decref(j);
    j = anomalies("?start=100&end=100"); /* empty range */
    ck_assert_int_eq(total_of(j), 0);
    json_decref(j);

    j = anomalies("?status=resolved");
    ck_assert_int_eq(total_of(j), 4);
    json_decref(j);
    j = anomalies("?status=firing&anomaly_type=token_spike");
    ck_assert_int_eq(total_of(j), 4); /* odd i below 8 */
    json_decref(j);
}
END_TEST

START_TEST(anomalies_limit_and_offset)
{
    start_api(NULL, NULL, true, true);
    json_t *all = anomalies("?limit=1000");
    ck_assert_uint_eq(n_items(all), NALERT);
    json_t *j = anomalies("?limit=5&offset=10");
    ck_assert_uint_eq(n_items(j), 2);
    ck_assert_int_eq(total_of(j), NALERT);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "limit")), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "offset")), 10);
    /* The page is the tail of the full list. */
    json_t *a = json_object_get(all, "anomalies"), *p = json_object_get(j, "anomalies");
    ck_assert(json_equal(json_array_get(p, 0), json_array_get(a, 10)));
    ck_assert(json_equal(json_array_get(p, 1), json_array_get(a, 11)));
    json_decref(j);
    j = anomalies("?limit=1");
    ck_assert_uint_eq(n_items(j), 1);
    ck_assert_int_eq(total_of(j), NALERT);
    json_decref(j);
    j = anomalies("?offset=50");
    ck_assert_uint_eq(n_items(j), 0);
    ck_assert_int_eq(total_of(j), NALERT);
    json_decref(j);
    json_decref(all);
}
END_TEST

START_TEST(anomalies_bad_parameters)
{
    start_api(NULL, NULL, true, true);
    struct {
        const char *query;
        const char *has;
    } bad[] = {
        {"?limit=0", "limit"},
        {"?limit=1001", "limit"},
        {"?limit=ten", "limit"},
        {"?limit=", "limit"},
        {"?offset=-1", "offset"},
        {"?offset=99999999999", "offset"},
        {"?severity=bad", "severity"},
        {"?severity=", "severity"},
        {"?severity=high,", "severity"},
        {"?severity=none", "severity"},
        {"?start=yesterday", "start"},
        {"?end=2026-13-01T00:00:00Z", "end"},
        {"?start=99999999999", "start"},
        {"?start=200&end=100", "before"},
        {"?service=", "service"},
        {"?model=a%01b", "model"},
        {"?status=open", "status"},
        {"?anomaly_type=vibes", "anomaly_type"},
        {"?foo=1", "'foo'"},
        {"?limit=5&limit=6", "more than once"},
        {"?a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9&j=10&k=11&l=12&m=13&n=14&o=15&p=16&q=17",
         "too many"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "/api/v1/anomalies%s", bad[i].query);
        expect_error(path, NULL, 400, bad[i].has);
    }
    /* A name longer than SN_NAME_MAX - 1 bytes. */
    char path[512];
    int n = snprintf(path, sizeof path, "/api/v1/anomalies?service=");
    memset(path + n, 'x', SN_NAME_MAX);
    path[n + SN_NAME_MAX] = '\0';
    expect_error(path, NULL, 400, "service");
    /* A quoted bad value never carries raw control bytes or quotes into the message. */
    resp r = get("/api/v1/anomalies?bad%22%0Akey=1", NULL);
    assert_error("quoted", &r, 400, "bad??key");
    resp_free(&r);
}
END_TEST

START_TEST(anomaly_by_id)
{
    start_api(NULL, NULL, true, true);
    sn_alert a = make_alert(4);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/anomalies/%s", a.alert_id);
    resp r = get(path, NULL);
    ck_assert_int_eq(r.status, 200);
    json_t *want = sn_alert_to_json(&a);
    ck_assert(json_equal(r.json, want));
    json_decref(want);
    /* And it parses back into the same alert. */
    sn_alert back;
    char err[128];
    ck_assert_int_eq(sn_alert_from_json(r.json, &back, err, sizeof err), 0);
    ck_assert_str_eq(back.alert_id, a.alert_id);
    ck_assert_int_eq(back.severity, a.severity);
    resp_free(&r);

    expect_error("/api/v1/anomalies/not-a-uuid", NULL, 400, "UUID");
    expect_error("/api/v1/anomalies/6f1c2a3b-0000-4000-8000-00000000000g", NULL, 400, "UUID");
    expect_error("/api/v1/anomalies/6f1c2a3b-0000-4000-8000-999999999999", NULL, 404,
                 "6f1c2a3b-0000-4000-8000-999999999999");
    snprintf(path, sizeof path, "/api/v1/anomalies/%s?x=1", a.alert_id);
    expect_error(path, NULL, 400, "'x'");
    expect_error("/api/v1/anomalies/a/b", NULL, 404, NULL);
}
END_TEST

START_TEST(anomalies_without_a_store)
{
    start_api(NULL, NULL, false, true);
    resp r = get("/api/v1/anomalies", NULL);
    assert_error("no store", &r, 503, "store");
    resp_free(&r);
    /* A configured directory without a database yet: 503 with Retry-After, then it works once
     * the writer has created it. */
    sn_api_destroy(g_api);
    g_api = NULL;
    sn_store_close(g_writer);
    g_writer = NULL;
    char dir[200];
    snprintf(dir, sizeof dir, "%s/data", g_root);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    sn_metrics_destroy(g_metrics); /* a new API registers its metrics again */
    ck_assert_int_eq(sn_metrics_create(NULL, &g_metrics, NULL, 0), 0);
    start_api(NULL, NULL, true, true);
    r = get("/api/v1/anomalies", NULL);
    assert_error("no db", &r, 503, "store");
    char v[32];
    ck_assert(header(&r, "Retry-After", v, sizeof v));
    resp_free(&r);
    char err[256];
    ck_assert_int_eq(sn_store_open(dir, NULL, &g_writer, err, sizeof err), 0);
    sn_alert a = make_alert(0);
    ck_assert_int_eq(sn_store_alert_upsert(g_writer, &a), 0);
    json_t *j = anomalies("");
    ck_assert_int_eq(total_of(j), 1);
    json_decref(j);
}
END_TEST

/* ---------------------------------------------------------------- the backend endpoints */

START_TEST(backend_endpoints_run_on_the_loop)
{
    start_api(TOKEN, NULL, true, true);
    const char *auth = "Bearer " TOKEN;
    resp r = get("/api/v1/baselines?service=chatbot-api&model=gpt-4o&metric=ttft_ms", auth);
    ck_assert_int_eq(r.status, 200);
    json_t *b = json_array_get(json_object_get(r.json, "baselines"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(b, "metric")), "ttft_ms");
    ck_assert_str_eq(g_fake.last_service, "chatbot-api");
    ck_assert_str_eq(g_fake.last_model, "gpt-4o");
    ck_assert_str_eq(g_fake.last_metric, "ttft_ms");
    resp_free(&r);
    r = get("/api/v1/baselines", auth);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(g_fake.last_service, "(null)");
    ck_assert_str_eq(g_fake.last_metric, "(null)");
    resp_free(&r);
    int calls = g_fake.calls;
    expect_error("/api/v1/baselines?metric=latency", auth, 400, "metric");
    expect_error("/api/v1/baselines?region=eu", auth, 400, "'region'");
    expect_error("/api/v1/baselines?service=", auth, 400, "service");
    ck_assert_int_eq(g_fake.calls, calls); /* refused before the loop */
    expect_error("/api/v1/baselines?service=boom", auth, 500, NULL);
    expect_error("/api/v1/baselines?service=bad-shape", auth, 500, NULL);

    r = get("/api/v1/services/chatbot-api/health", auth);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "service")), "chatbot-api");
    resp_free(&r);
    r = get("/api/v1/services/svc%20with%20space/health", auth);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "service")), "svc with space");
    resp_free(&r);
    expect_error("/api/v1/services/ghost/health", auth, 404, "ghost");
    expect_error("/api/v1/services/chatbot-api/health?verbose=1", auth, 400, "verbose");
    expect_error("/api/v1/services//health", auth, 404, NULL);

    r = get("/api/v1/statistics/summary", auth);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "alerts_firing")), 8);
    resp_free(&r);
    expect_error("/api/v1/statistics/summary?x", auth, 400, "'x'");

    ck_assert_int_gt(g_fake.calls, 5);
    ck_assert_int_eq(g_fake.off_loop, 0); /* every callback ran on the loop thread */
}
END_TEST

START_TEST(series_validates_and_runs_on_the_loop)
{
    start_api(TOKEN, NULL, true, true);
    const char *auth = "Bearer " TOKEN;
    resp r = get("/api/v1/series?service=chatbot-api&model=gpt-4o&metric=ttft_ms&limit=7", auth);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "metric")), "ttft_ms");
    ck_assert_uint_eq(json_array_size(json_object_get(r.json, "points")), 7);
    ck_assert_double_eq(
        json_number_value(json_object_get(json_object_get(r.json, "baseline"), "q3")), 3.0);
    ck_assert_str_eq(g_fake.last_service, "chatbot-api");
    ck_assert_str_eq(g_fake.last_model, "gpt-4o");
    ck_assert_str_eq(g_fake.last_metric, "ttft_ms");
    ck_assert_uint_eq(g_fake.last_limit, 7);
    resp_free(&r);
    /* Without a limit: the default; the largest limit is accepted. */
    r = get("/api/v1/series?service=chatbot-api&model=gpt-4o&metric=latency_ms", auth);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(g_fake.last_limit, SN_API_SERIES_LIMIT_DEFAULT);
    resp_free(&r);
    r = get("/api/v1/series?service=chatbot-api&model=gpt-4o&metric=latency_ms&limit=10000", auth);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(g_fake.last_limit, SN_API_SERIES_LIMIT_MAX);
    resp_free(&r);

    int calls = g_fake.calls;
    expect_error("/api/v1/series?model=gpt-4o&metric=latency_ms", auth, 400, "'service'");
    expect_error("/api/v1/series?service=a&metric=latency_ms", auth, 400, "'model'");
    expect_error("/api/v1/series?service=a&model=b", auth, 400, "'metric'");
    expect_error("/api/v1/series?service=a&model=b&metric=latency", auth, 400, "known metric");
    expect_error("/api/v1/series?service=&model=b&metric=latency_ms", auth, 400, "service");
    expect_error("/api/v1/series?service=a&model=b&metric=latency_ms&limit=0", auth, 400, "limit");
    expect_error("/api/v1/series?service=a&model=b&metric=latency_ms&limit=10001", auth, 400,
                 "limit");
    expect_error("/api/v1/series?service=a&model=b&metric=latency_ms&limit=-1", auth, 400, "limit");
    expect_error("/api/v1/series?service=a&model=b&metric=latency_ms&limit=5x", auth, 400, "limit");
    expect_error("/api/v1/series?service=a&model=b&metric=latency_ms&start=1", auth, 400,
                 "'start'");
    expect_error("/api/v1/series?service=a&service=b&model=b&metric=latency_ms", auth, 400,
                 "more than once");
    ck_assert_int_eq(g_fake.calls, calls); /* refused before the loop */
    /* An unknown key is 404 naming it; the token is required; only GET. */
    expect_error("/api/v1/series?service=ghost&model=gpt-4o&metric=cost_usd", auth, 404, "ghost");
    ck_assert_int_eq(g_fake.calls, calls + 1);
    expect_error("/api/v1/series?service=chatbot-api&model=gpt-4o&metric=cost_usd", NULL, 401,
                 NULL);
    r = request("POST", "/api/v1/series?service=chatbot-api&model=gpt-4o&metric=cost_usd", auth,
                "{}", 2, "application/json");
    ck_assert_int_eq(r.status, 405);
    resp_free(&r);
    ck_assert_int_eq(g_fake.off_loop, 0);
}
END_TEST

START_TEST(config_get_and_post)
{
    start_api(TOKEN, NULL, true, true);
    const char *auth = "Bearer " TOKEN;
    resp r = get("/api/v1/config", auth);
    ck_assert_int_eq(r.status, 200);
    ck_assert_double_eq(json_number_value(json_object_get(r.json, "detection.zscore.threshold")),
                        3.0);
    resp_free(&r);

    const char *ok = "{\"detection.zscore.threshold\": 4.5}";
    r = request("POST", "/api/v1/config", auth, ok, strlen(ok), "application/json");
    ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
    ck_assert_double_eq(json_number_value(json_object_get(r.json, "detection.zscore.threshold")),
                        4.5);
    resp_free(&r);
    r = get("/api/v1/config", auth);
    ck_assert_double_eq(json_number_value(json_object_get(r.json, "detection.zscore.threshold")),
                        4.5);
    resp_free(&r);

    /* The backend's refusal names the field and changes nothing. */
    const char *bad = "{\"alerts.dedup_window_s\": -5}";
    r = request("POST", "/api/v1/config", auth, bad, strlen(bad), "application/json");
    assert_error("bad value", &r, 400, "alerts.dedup_window_s must be a number > 0");
    resp_free(&r);
    const char *unknown = "{\"detection.nope\": 1}";
    r = request("POST", "/api/v1/config", auth, unknown, strlen(unknown),
                "application/json; charset=utf-8");
    assert_error("unknown", &r, 400, "detection.nope");
    resp_free(&r);
    r = get("/api/v1/config", auth);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "alerts.dedup_window_s")), 300);
    ck_assert_ptr_null(json_object_get(r.json, "detection.nope"));
    resp_free(&r);

    int calls = g_fake.calls;
    const char *notjson = "{\"a\": ";
    r = request("POST", "/api/v1/config", auth, notjson, strlen(notjson), "application/json");
    assert_error("not json", &r, 400, "not valid JSON");
    resp_free(&r);
    r = request("POST", "/api/v1/config", auth, "[1]", 3, "application/json");
    assert_error("array", &r, 400, "object");
    resp_free(&r);
    const char *dup = "{\"a\":1,\"a\":2}";
    r = request("POST", "/api/v1/config", auth, dup, strlen(dup), "application/json");
    assert_error("duplicate keys", &r, 400, "not valid JSON");
    resp_free(&r);
    r = request("POST", "/api/v1/config", auth, ok, strlen(ok), "text/plain");
    assert_error("content type", &r, 415, "application/json");
    resp_free(&r);
    /* Without a Content-Type the body is still read as JSON. */
    r = request("POST", "/api/v1/config", auth, ok, strlen(ok), NULL);
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    ck_assert_int_eq(g_fake.calls, calls + 1);

    /* Over 64 KiB: 413, as JSON. */
    size_t big = SN_API_DEFAULT_MAX_BODY + 10;
    char *huge = malloc(big);
    ck_assert_ptr_nonnull(huge);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    r = request("POST", "/api/v1/config", auth, huge, big, "application/json");
    assert_error("too large", &r, 413, "too large");
    resp_free(&r);
    free(huge);

    /* Without the token nothing is applied. */
    r = request("POST", "/api/v1/config", NULL, ok, strlen(ok), "application/json");
    ck_assert_int_eq(r.status, 401);
    resp_free(&r);
    ck_assert_int_eq(g_fake.calls, calls + 1);
    ck_assert_int_eq(g_fake.off_loop, 0);
}
END_TEST

START_TEST(a_missing_backend_callback_is_501)
{
    start_api(NULL, NULL, true, false);
    expect_error("/api/v1/statistics/summary", NULL, 501, NULL);
    expect_error("/api/v1/series?service=a&model=b&metric=latency_ms", NULL, 501, NULL);
}
END_TEST

START_TEST(a_busy_loop_is_503_and_reads_go_on)
{
    start_api(NULL, NULL, true, true);
    pthread_t gt;
    ck_assert_int_eq(pthread_create(&gt, NULL, gate_thread, &g_fake), 0);
    pthread_mutex_lock(&g_fake.mu);
    while (!g_fake.gate_entered)
        pthread_cond_wait(&g_fake.cv, &g_fake.mu);
    pthread_mutex_unlock(&g_fake.mu);

    /* The loop is stuck: the hand-off times out (300 ms) and the API says busy. */
    resp r = get("/api/v1/statistics/summary", NULL);
    assert_error("busy", &r, 503, "busy");
    char v[32];
    ck_assert(header(&r, "Retry-After", v, sizeof v));
    ck_assert_str_eq(v, "1");
    resp_free(&r);
    const char *ok = "{\"detection.zscore.threshold\": 9}";
    r = request("POST", "/api/v1/config", NULL, ok, strlen(ok), "application/json");
    assert_error("busy post", &r, 503, "busy");
    resp_free(&r);
    /* Alert reads do not need the loop. */
    json_t *j = anomalies("?limit=2");
    ck_assert_int_eq(total_of(j), NALERT);
    json_decref(j);

    pthread_mutex_lock(&g_fake.mu);
    g_fake.gate_open = true;
    pthread_cond_broadcast(&g_fake.cv);
    pthread_mutex_unlock(&g_fake.mu);
    pthread_join(gt, NULL);
    /* The refused change was never applied, and the loop answers again. */
    r = get("/api/v1/config", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_double_eq(json_number_value(json_object_get(r.json, "detection.zscore.threshold")),
                        3.0);
    resp_free(&r);
}
END_TEST

/* ---------------------------------------------------------------- methods, paths, assets, CORS */

START_TEST(methods_paths_and_the_dashboard)
{
    start_api(NULL, NULL, true, true);
    char v[128];
    struct {
        const char *method, *path, *allow;
    } m[] = {
        {"DELETE", "/api/v1/anomalies", "GET, HEAD"},  {"POST", "/api/v1/anomalies", "GET, HEAD"},
        {"PUT", "/api/v1/config", "GET, HEAD, POST"},  {"POST", "/health", "GET, HEAD"},
        {"DELETE", "/metrics", "GET, HEAD"},           {"POST", "/", "GET, HEAD"},
        {"OPTIONS", "/api/v1/baselines", "GET, HEAD"},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        resp r = request(m[i].method, m[i].path, NULL, m[i].method[0] == 'P' ? "{}" : NULL,
                         m[i].method[0] == 'P' ? 2 : 0, "application/json");
        assert_error(m[i].path, &r, 405, m[i].method);
        ck_assert(header(&r, "Allow", v, sizeof v));
        ck_assert_str_eq(v, m[i].allow);
        resp_free(&r);
    }
    expect_error("/nope", NULL, 404, "not found");
    expect_error("/api/v2/anomalies", NULL, 404, NULL);
    expect_error("/index.htm", NULL, 404, NULL);

    resp r = get("/", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert(header(&r, "Content-Type", v, sizeof v));
    ck_assert_str_eq(v, "text/html; charset=utf-8");
    ck_assert_ptr_nonnull(strstr(r.body, "LLM-Sentinel"));
    ck_assert(!header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    resp_free(&r);
    r = get("/index.html", NULL);
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
}
END_TEST

static const char g_js[] = "console.log('dashboard');\n";
static const sn_api_asset g_assets[] = {
    {"/", "text/html; charset=utf-8", "<p>mine</p>", 11},
    {"/app.js", "text/javascript", g_js, sizeof g_js - 1},
};

START_TEST(an_asset_table_replaces_the_placeholder)
{
    sn_api_config cfg = {.listen = "127.0.0.1:0", .assets = g_assets, .nassets = 2};
    char err[256];
    ck_assert_int_eq(sn_api_create(&cfg, NULL, &g_api, err, sizeof err), 0);
    ck_assert_int_eq(sn_api_start(g_api, err, sizeof err), 0);
    snprintf(g_base_url, sizeof g_base_url, "http://127.0.0.1:%u", (unsigned)sn_api_port(g_api));
    resp r = get("/", NULL);
    ck_assert_str_eq(r.body, "<p>mine</p>");
    resp_free(&r);
    r = get("/app.js", NULL);
    ck_assert_str_eq(r.body, g_js);
    char v[64];
    ck_assert(header(&r, "Content-Type", v, sizeof v));
    ck_assert_str_eq(v, "text/javascript");
    resp_free(&r);
    expect_error("/index.html", NULL, 404, NULL);
    /* No registry: /metrics is 404; no backend: 501. */
    expect_error("/metrics", NULL, 404, NULL);
    expect_error("/api/v1/config", NULL, 501, NULL);
    expect_error("/api/v1/anomalies", NULL, 503, NULL);
}
END_TEST

START_TEST(cors_when_configured)
{
    start_api(TOKEN, "https://dash.example.com", true, true);
    resp r = request("OPTIONS", "/api/v1/anomalies", NULL, NULL, 0, NULL);
    ck_assert_int_eq(r.status, 204);
    char v[128];
    ck_assert(header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    ck_assert_str_eq(v, "https://dash.example.com");
    ck_assert(header(&r, "Access-Control-Allow-Headers", v, sizeof v));
    ck_assert_ptr_nonnull(strstr(v, "Authorization"));
    ck_assert(header(&r, "Access-Control-Allow-Methods", v, sizeof v));
    ck_assert_ptr_nonnull(strstr(v, "POST"));
    resp_free(&r);
    r = get("/api/v1/anomalies", NULL);
    ck_assert_int_eq(r.status, 401);
    ck_assert(header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    ck_assert(header(&r, "WWW-Authenticate", v, sizeof v));
    resp_free(&r);
}
END_TEST

/* ---------------------------------------------------------------- metrics */

START_TEST(requests_are_counted_by_route_pattern)
{
    start_api(NULL, NULL, true, true);
    sn_alert a = make_alert(1);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/anomalies/%s", a.alert_id);
    resp r = get(path, NULL);
    resp_free(&r);
    expect_error("/api/v1/anomalies/6f1c2a3b-0000-4000-8000-999999999999", NULL, 404, NULL);
    expect_error("/api/v1/services/ghost/health", NULL, 404, NULL);
    expect_error("/what/ever", NULL, 404, NULL);
    expect_error("/api/v1/anomalies?limit=0", NULL, 400, NULL);
    r = get("/metrics", NULL);
    ck_assert_int_eq(r.status, 200);
    const char *want[] = {
        "sentinel_api_requests_total{route=\"/api/v1/anomalies/{id}\",code=\"200\"} 1",
        "sentinel_api_requests_total{route=\"/api/v1/anomalies/{id}\",code=\"404\"} 1",
        "sentinel_api_requests_total{route=\"/api/v1/services/{name}/health\",code=\"404\"} 1",
        "sentinel_api_requests_total{route=\"other\",code=\"404\"} 1",
        "sentinel_api_requests_total{route=\"/api/v1/anomalies\",code=\"400\"} 1",
        "sentinel_api_request_duration_seconds_count{route=\"/api/v1/anomalies/{id}\"} 2",
        "sentinel_api_request_duration_seconds_bucket{route=\"other\",le=\"+Inf\"} 1",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(strstr(r.body, want[i]) != NULL, "missing %s in\n%s", want[i], r.body);
    /* The raw ids and names never become label values. */
    ck_assert_ptr_null(strstr(r.body, "ghost"));
    ck_assert_ptr_null(strstr(r.body, "999999999999"));
    resp_free(&r);
}
END_TEST

/* ---------------------------------------------------------------- create, parse_time */

START_TEST(create_refuses_bad_configuration)
{
    char err[256];
    sn_api *api = (sn_api *)&api;
    char longtok[SN_API_TOKEN_MAX + 1];
    memset(longtok, 'a', sizeof longtok - 1);
    longtok[sizeof longtok - 1] = '\0';
    sn_api_config cfg = {.listen = "127.0.0.1:0", .api_token = longtok};
    ck_assert_int_eq(sn_api_create(&cfg, NULL, &api, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(api);
    ck_assert_ptr_nonnull(strstr(err, "api_token"));
    cfg.api_token = "has space";
    ck_assert_int_eq(sn_api_create(&cfg, NULL, &api, err, sizeof err), -EINVAL);
    cfg.api_token = NULL;
    cfg.listen = "nonsense";
    ck_assert_int_eq(sn_api_create(&cfg, NULL, &api, err, sizeof err), -EINVAL);
    cfg.listen = "127.0.0.1:0";
    cfg.assets = g_assets;
    ck_assert_int_eq(sn_api_create(&cfg, NULL, &api, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "nassets"));
    /* Two APIs on one registry: the second cannot register the same metrics. */
    sn_api_config c2 = {.listen = "127.0.0.1:0", .metrics = g_metrics};
    ck_assert_int_eq(sn_api_create(&c2, NULL, &g_api, err, sizeof err), 0);
    ck_assert_int_eq(sn_api_create(&c2, NULL, &api, err, sizeof err), -EEXIST);
    ck_assert_ptr_null(api);
    sn_api_destroy(NULL);
}
END_TEST

START_TEST(parse_time)
{
    int64_t ns = -1;
    ck_assert_int_eq(sn_api_parse_time("0", &ns), 0);
    ck_assert_int_eq(ns, 0);
    ck_assert_int_eq(sn_api_parse_time("1795000000", &ns), 0);
    ck_assert_int_eq(ns, T0);
    ck_assert_int_eq(sn_api_parse_time("2026-11-18T11:06:40Z", &ns), 0);
    ck_assert_int_eq(ns, T0);
    ck_assert_int_eq(sn_api_parse_time("2026-11-18T12:06:40.5+01:00", &ns), 0);
    ck_assert_int_eq(ns, T0 + SEC / 2);
    ck_assert_int_eq(sn_api_parse_time("9223372035", &ns), 0);
    const char *bad[] = {"",           "-1",
                         "9223372036", "1e9",
                         "12.5",       "1969-12-31T23:59:59Z",
                         "2026-11-18", "2026-11-18T09:46:40",
                         "now"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(sn_api_parse_time(bad[i], &ns) == -EINVAL, "%s accepted", bad[i]);
    ck_assert_int_eq(sn_api_parse_time(NULL, &ns), -EINVAL);
}
END_TEST

static bool never_called(const char *key, const char *value, void *ud)
{
    (void)key;
    (void)value;
    (*(int *)ud)++;
    return true;
}

/* The HTTP server's request accessors answer only inside a route callback. */
START_TEST(request_accessors_outside_a_route)
{
    int n = 0;
    ck_assert_int_eq(sn_http_request_args(never_called, &n), -EPERM);
    ck_assert_int_eq(n, 0);
    ck_assert_ptr_null(sn_http_request_header("Authorization"));
}
END_TEST

static Suite *api_suite(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("http");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, health_and_metrics_stay_open_with_a_token);
    tcase_add_test(tc, the_api_wants_the_bearer_token);
    tcase_add_test(tc, no_token_means_open);
    tcase_add_test(tc, anomalies_filters_against_stored_alerts);
    tcase_add_test(tc, anomalies_limit_and_offset);
    tcase_add_test(tc, anomalies_bad_parameters);
    tcase_add_test(tc, anomaly_by_id);
    tcase_add_test(tc, anomalies_without_a_store);
    tcase_add_test(tc, backend_endpoints_run_on_the_loop);
    tcase_add_test(tc, series_validates_and_runs_on_the_loop);
    tcase_add_test(tc, config_get_and_post);
    tcase_add_test(tc, a_missing_backend_callback_is_501);
    tcase_add_test(tc, a_busy_loop_is_503_and_reads_go_on);
    tcase_add_test(tc, methods_paths_and_the_dashboard);
    tcase_add_test(tc, an_asset_table_replaces_the_placeholder);
    tcase_add_test(tc, cors_when_configured);
    tcase_add_test(tc, requests_are_counted_by_route_pattern);
    tcase_add_test(tc, create_refuses_bad_configuration);
    suite_add_tcase(s, tc);
    TCase *pure = tcase_create("pure");
    tcase_add_test(pure, parse_time);
    tcase_add_test(pure, request_accessors_outside_a_route);
    suite_add_tcase(s, pure);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(api_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
