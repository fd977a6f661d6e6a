/*
 * api.c -- the aggregator's REST API (see api.h for the endpoints and threads).
 *
 * One route callback answers every request: it resolves the path to a route (a bounded set,
 * which is also the metrics' `route` label), checks the method, the bearer token on /api/ and
 * the query parameters, then reads the store (anomalies) or runs a backend callback on the loop.
 * Nothing here keeps mutable state beyond the metric handle cache (atomics) and the pool of
 * read-only store connections (a mutex).
 */
#include "api.h"

#include "admin.h"
#include "alerts.h"
#include "event.h"
#include "live.h"
#include "log.h"
#include "otlp/http_server.h"
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define JSON_TYPE       "application/json"
#define ARGS_MAX        16          /* query parameters per request */
#define BODY_MAX        (16u << 20) /* bytes of one anomalies answer */
#define QUOTE_MAX       64          /* bytes of user input quoted in a message */
#define MSG_MAX         512         /* bytes of an error message */
#define BEARER_REALM    "Bearer realm=\"sentinel\""
#define BEARER_INVALID  "Bearer realm=\"sentinel\", error=\"invalid_token\""
#define ALLOW_GET       "GET, HEAD"
#define ALLOW_GET_POST  "GET, HEAD, POST"
#define CORS_METHODS    "GET, HEAD, POST, OPTIONS"
#define CORS_HEADERS    "Authorization, Content-Type"
#define NS_PER_SEC      INT64_C(1000000000)
#define MAX_UNIX_SECOND INT64_C(9223372035) /* the last whole second an int64 of ns holds */

/* ---------------------------------------------------------------- routes and metrics */

typedef enum route {
    R_HEALTH = 0,
    R_METRICS,
    R_HEALTHZ,
    R_READYZ,
    R_ANOMALIES,
    R_ANOMALY,
    R_BASELINES,
    R_SERIES,
    R_SERVICE_HEALTH,
    R_SUMMARY,
    R_CONFIG,
    R_DASHBOARD,
    R_LIVE,
    R_OTHER,
    R_COUNT
} route;

/* The `route` label: the pattern, never the raw path, so the series stay bounded. */
static const char *const g_route_label[R_COUNT] = {
    [R_HEALTH] = "/health",
    [R_METRICS] = "/metrics",
    [R_HEALTHZ] = "/healthz",
    [R_READYZ] = "/readyz",
    [R_ANOMALIES] = "/api/v1/anomalies",
    [R_ANOMALY] = "/api/v1/anomalies/{id}",
    [R_BASELINES] = "/api/v1/baselines",
    [R_SERIES] = "/api/v1/series",
    [R_SERVICE_HEALTH] = "/api/v1/services/{name}/health",
    [R_SUMMARY] = "/api/v1/statistics/summary",
    [R_CONFIG] = "/api/v1/config",
    [R_DASHBOARD] = "dashboard",
    [R_LIVE] = SN_LIVE_PATH,
    [R_OTHER] = "other",
};

/* Status codes with a cached counter; others are looked up per request. */
static const unsigned g_codes[] = {200, 204, 400, 401, 404, 405, 413, 415, 500, 501, 503};
#define NCODES (sizeof g_codes / sizeof g_codes[0])

static const double g_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1,    0.25,  0.5,    1.0,   2.5,  5.0};

/* One read-only store connection; `busy` while a request uses it. */
typedef struct ro_conn {
    sn_store *st; /* NULL until first used (or after a failure) */
    bool busy;
} ro_conn;

struct sn_api {
    sn_api_config cfg; /* strings point at the copies below */
    char *listen;
    char *token;
    size_t token_len;
    char *origin;
    char *store_dir;
    char *version;
    sn_api_backend be;
    sn_http_server *server;

    sn_metrics_family *requests; /* NULL without a registry */
    sn_metrics_family *duration;
    _Atomic(sn_counter *) counters[R_COUNT][NCODES];
    _Atomic(sn_histogram *) hists[R_COUNT];

    pthread_mutex_t pool_mu;
    ro_conn *pool;
    unsigned npool;
};

/* ---------------------------------------------------------------- the placeholder dashboard */

static const char g_placeholder_html[] =
    "<!doctype html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\"><title>LLM-Sentinel</title></head>\n"
    "<body><h1>LLM-Sentinel</h1>\n"
    "<p>The dashboard is not built into this aggregator yet. The REST API is at\n"
    "<a href=\"/api/v1/anomalies\">/api/v1/anomalies</a>, health at <a href=\"/health\">/health"
    "</a>, metrics at <a href=\"/metrics\">/metrics</a>.</p>\n"
    "</body></html>\n";

static const sn_api_asset g_placeholder[] = {
    {"/", "text/html; charset=utf-8", g_placeholder_html, sizeof g_placeholder_html - 1},
    {"/index.html", "text/html; charset=utf-8", g_placeholder_html, sizeof g_placeholder_html - 1},
};

const sn_api_asset *sn_api_placeholder_assets(size_t *n)
{
    *n = sizeof g_placeholder / sizeof g_placeholder[0];
    return g_placeholder;
}

/* ---------------------------------------------------------------- small helpers */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats a message into err when the caller gave a buffer. */
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Copies user input for a message: printable ASCII only (others become '?'), cut to
 * QUOTE_MAX - 4 bytes with "..." when longer. */
static void quote(char out[QUOTE_MAX], const char *s)
{
    size_t n = 0;
    if (s == NULL)
        s = "";
    for (; *s != '\0' && n < QUOTE_MAX - 4; s++)
        out[n++] = (*s >= 0x20 && *s < 0x7f && *s != '"' && *s != '\\') ? *s : '?';
    if (*s != '\0') {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* Monotonic seconds, for request durations. */
static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sets the reply's body to `json` serialised (compact) with status; steals the reference. On
 * failure (out of memory) the reply is a bodiless 500. */
static void reply_json(sn_http_reply *reply, unsigned status, json_t *json)
{
    char *text = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);
    snprintf(reply->content_type, sizeof reply->content_type, JSON_TYPE);
    if (text == NULL) {
        reply->status = 500;
        return;
    }
    reply->status = status;
    reply->body = text;
    reply->len = strlen(text);
}

static void reply_error(sn_http_reply *reply, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An error answer {"error":"<message>"}. The message must be UTF-8: user input goes through
 * quote() first. */
static void reply_error(sn_http_reply *reply, unsigned status, const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    reply_json(reply, status, json_pack("{s:s}", "error", msg));
}

/* 503 {"error":"busy"} with Retry-After: the loop did not take the call in time. */
static void reply_busy(sn_http_reply *reply)
{
    reply_error(reply, 503, "busy");
    reply->retry_after_s = 1;
}

/* Counts a finished request in the metrics (nothing without a registry). */
static void count_request(sn_api *api, route r, unsigned status, double seconds)
{
    if (api->requests == NULL)
        return;
    char code[12];
    snprintf(code, sizeof code, "%u", status);
    const char *values[2] = {g_route_label[r], code};
    sn_counter *c = NULL;
    size_t ci = NCODES;
    for (size_t i = 0; i < NCODES; i++) {
        if (g_codes[i] == status) {
            ci = i;
            c = atomic_load_explicit(&api->counters[r][i], memory_order_acquire);
            break;
        }
    }
    if (c == NULL) {
        c = sn_metrics_counter(api->requests, values); /* the same handle every time */
        if (c != NULL && ci < NCODES)
            atomic_store_explicit(&api->counters[r][ci], c, memory_order_release);
    }
    sn_counter_inc(c);
    sn_histogram *h = atomic_load_explicit(&api->hists[r], memory_order_acquire);
    if (h == NULL) {
        h = sn_metrics_histogram(api->duration, values);
        if (h != NULL)
            atomic_store_explicit(&api->hists[r], h, memory_order_release);
    }
    if (h != NULL)
        sn_histogram_observe(h, seconds);
}

/* ---------------------------------------------------------------- auth */

/* True when the request carries "Authorization: Bearer <token>" with the configured token (or
 * no token is configured). The comparison takes the same time for every token of a given
 * length. *present tells a missing header from a wrong token. */
static bool authorized(const sn_api *api, bool *present)
{
    *present = false;
    if (api->token_len == 0)
        return true;
    const char *h = sn_http_request_header("Authorization");
    if (h == NULL)
        return false;
    *present = true;
    while (*h == ' ')
        h++;
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
        return false;
    h += 6;
    while (*h == ' ' || *h == '\t')
        h++;
    size_t len = strlen(h);
    while (len > 0 && (h[len - 1] == ' ' || h[len - 1] == '\t'))
        len--;
    unsigned diff = len != api->token_len;
    for (size_t i = 0; i < api->token_len; i++)
        diff |= (unsigned char)api->token[i] ^ (unsigned char)(i < len ? h[i] : 0);
    return diff == 0;
}

/* ---------------------------------------------------------------- query parameters */

typedef struct query_args {
    const char *key[ARGS_MAX];
    const char *value[ARGS_MAX]; /* "" for "?key" */
    size_t n;
    bool too_many;
} query_args;

/* sn_http_arg_fn: collects the arguments (bounded). */
static bool collect_arg(const char *key, const char *value, void *ud)
{
    query_args *q = ud;
    if (q->n == ARGS_MAX) {
        q->too_many = true;
        return false;
    }
    q->key[q->n] = key;
    q->value[q->n] = value != NULL ? value : "";
    q->n++;
    return true;
}

/* Reads the query arguments and checks each is one of `allowed` (NULL-terminated; NULL means
 * none) and given once. Returns true, or false with a 400 in reply naming the parameter. */
static bool read_args(query_args *q, const char *const *allowed, sn_http_reply *reply)
{
    memset(q, 0, sizeof *q);
    sn_http_request_args(collect_arg, q);
    if (q->too_many) {
        reply_error(reply, 400, "too many query parameters (at most %d)", ARGS_MAX);
        return false;
    }
    for (size_t i = 0; i < q->n; i++) {
        bool known = false;
        for (size_t a = 0; allowed != NULL && allowed[a] != NULL; a++)
            known = known || strcmp(q->key[i], allowed[a]) == 0;
        char k[QUOTE_MAX];
        quote(k, q->key[i]);
        if (!known) {
            if (allowed == NULL || allowed[0] == NULL) {
                reply_error(reply, 400, "unknown parameter '%s': this endpoint takes none", k);
            } else {
                char list[256];
                size_t n = 0;
                list[0] = '\0';
                for (size_t a = 0; allowed[a] != NULL && n < sizeof list; a++)
                    n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", a ? ", " : "",
                                          allowed[a]);
                reply_error(reply, 400, "unknown parameter '%s' (known: %s)", k, list);
            }
            return false;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(q->key[i], q->key[j]) == 0) {
                reply_error(reply, 400, "parameter '%s' given more than once", k);
                return false;
            }
        }
    }
    return true;
}

/* The value of parameter key, or NULL when absent. */
static const char *arg(const query_args *q, const char *key)
{
    for (size_t i = 0; i < q->n; i++) {
        if (strcmp(q->key[i], key) == 0)
            return q->value[i];
    }
    return NULL;
}

/* Parses a decimal without sign into [min, max]. Returns 0 or -EINVAL. */
static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0')
        return -EINVAL;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > max)
            return -EINVAL;
    }
    if (v < min)
        return -EINVAL;
    *out = v;
    return 0;
}

int sn_api_parse_time(const char *s, int64_t *ns)
{
    if (s == NULL || *s == '\0')
        return -EINVAL;
    bool digits = true;
    for (const char *p = s; *p != '\0'; p++)
        digits = digits && *p >= '0' && *p <= '9';
    if (digits) {
        uint64_t sec;
        if (parse_uint(s, 0, (uint64_t)MAX_UNIX_SECOND, &sec) != 0)
            return -EINVAL;
        *ns = (int64_t)sec * NS_PER_SEC;
        return 0;
    }
    int64_t v;
    if (sn_alert_parse_time(s, &v) != 0 || v < 0)
        return -EINVAL;
    *ns = v;
    return 0;
}

/* A service or model name: 1..SN_NAME_MAX-1 bytes without control characters. */
static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= SN_NAME_MAX)
        return false;
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    }
    return true;
}

/* True when s is a UUID in 8-4-4-4-12 hex form. */
static bool uuid_ok(const char *s)
{
    if (strlen(s) != SN_ALERT_ID_LEN)
        return false;
    for (int i = 0; i < SN_ALERT_ID_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        char c = s[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (dash ? c != '-' : !hex)
            return false;
    }
    return true;
}

/* ---------------------------------------------------------------- read-only store pool */

/* Takes a free connection, opening it when needed. Returns it, or NULL with the answer (503)
 * in reply. */
static ro_conn *pool_acquire(sn_api *api, sn_http_reply *reply)
{
    if (api->store_dir == NULL) {
        reply_error(reply, 503, "the state store is not configured");
        return NULL;
    }
    ro_conn *c = NULL;
    pthread_mutex_lock(&api->pool_mu);
    for (unsigned i = 0; i < api->npool && c == NULL; i++) {
        if (!api->pool[i].busy) {
            c = &api->pool[i];
            c->busy = true;
        }
    }
    pthread_mutex_unlock(&api->pool_mu);
    if (c == NULL) {
        reply_busy(reply);
        return NULL;
    }
    if (c->st == NULL) {
        char err[256];
        int rc = sn_store_open_readonly(api->store_dir, &c->st, err, sizeof err);
        if (rc != 0) {
            sn_log_warn("api: cannot open the state store", SN_LOG_STR("reason", err),
                        SN_LOG_ERRNO(rc));
            c->st = NULL;
            pthread_mutex_lock(&api->pool_mu);
            c->busy = false;
            pthread_mutex_unlock(&api->pool_mu);
            reply_error(reply, 503, "the state store is not available");
            reply->retry_after_s = 1;
            return NULL;
        }
    }
    return c;
}

/* Gives the connection back; after a failure (`broken`) it is closed, to be reopened. */
static void pool_release(sn_api *api, ro_conn *c, bool broken)
{
    if (broken) {
        sn_store_close(c->st);
        c->st = NULL;
    }
    pthread_mutex_lock(&api->pool_mu);
    c->busy = false;
    pthread_mutex_unlock(&api->pool_mu);
}

/* ---------------------------------------------------------------- anomalies */

typedef struct dynbuf {
    char *p;
    size_t len, cap;
} dynbuf;

/* Appends n bytes, growing geometrically up to BODY_MAX. Returns 0 or -ENOMEM / -E2BIG. */
static int buf_add(dynbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > BODY_MAX)
        return -E2BIG;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

typedef struct rows {
    dynbuf buf;
    size_t n;
} rows;

/* sn_store_json_visit: appends one stored alert (the JSON sn_alert_to_json wrote). */
static int add_row(const char *json, size_t len, void *ud)
{
    rows *r = ud;
    int e = r->n++ > 0 ? buf_add(&r->buf, ",", 1) : 0;
    return e != 0 ? e : buf_add(&r->buf, json, len);
}

/* Parses the anomalies filters into f. Returns true, or false with a 400 in reply. */
static bool anomalies_filter(const query_args *q, sn_store_alert_filter *f, sn_http_reply *reply)
{
    sn_store_alert_filter_init(f);
    f->limit = SN_API_LIMIT_DEFAULT;
    char v[QUOTE_MAX];
    const char *s;
    if ((s = arg(q, "start")) != NULL && sn_api_parse_time(s, &f->start_ns) != 0) {
        quote(v, s);
        reply_error(reply, 400, "parameter 'start' ('%s') must be RFC 3339 or Unix seconds", v);
        return false;
    }
    if ((s = arg(q, "end")) != NULL) {
        if (sn_api_parse_time(s, &f->end_ns) != 0) {
            quote(v, s);
            reply_error(reply, 400, "parameter 'end' ('%s') must be RFC 3339 or Unix seconds", v);
            return false;
        }
        if (arg(q, "start") != NULL && f->end_ns < f->start_ns) {
            reply_error(reply, 400, "parameter 'end' is before 'start'");
            return false;
        }
        if (f->end_ns == 0)
            f->end_ns = 1; /* the store reads 0 as "no bound"; this is "before 1970" */
    }
    if ((s = arg(q, "severity")) != NULL) {
        const char *p = s;
        do {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            char name[16];
            sn_severity sev = SN_SEV_NONE;
            bool ok = n > 0 && n < sizeof name;
            if (ok) {
                memcpy(name, p, n);
                name[n] = '\0';
                ok = sn_severity_from_name(name, &sev) == 0 && sev != SN_SEV_NONE;
            }
            if (!ok) {
                quote(v, s);
                reply_error(reply, 400,
                            "parameter 'severity' ('%s') must be low, medium, high or critical "
                            "(or a comma-separated list of them)",
                            v);
                return false;
            }
            f->severity_mask |= 1u << sev;
            p = comma ? comma + 1 : NULL;
        } while (p != NULL);
    }
    static const char *const names[2] = {"service", "model"};
    for (int i = 0; i < 2; i++) {
        if ((s = arg(q, names[i])) == NULL)
            continue;
        if (!name_ok(s)) {
            reply_error(reply, 400, "parameter '%s' must be 1..%d bytes without control characters",
                        names[i], SN_NAME_MAX - 1);
            return false;
        }
        if (i == 0)
            f->service = s;
        else
            f->model = s;
    }
    if ((s = arg(q, "status")) != NULL) {
        if (strcmp(s, "firing") == 0) {
            f->status = SN_ALERT_FIRING;
        } else if (strcmp(s, "resolved") == 0) {
            f->status = SN_ALERT_RESOLVED;
        } else {
            reply_error(reply, 400, "parameter 'status' must be firing or resolved");
            return false;
        }
    }
    if ((s = arg(q, "anomaly_type")) != NULL) {
        sn_anomaly_type t;
        if (sn_anomaly_type_from_name(s, &t) != 0) {
            quote(v, s);
            reply_error(reply, 400, "parameter 'anomaly_type' ('%s') is not an anomaly type", v);
            return false;
        }
        f->anomaly_type = (int)t;
    }
    uint64_t n;
    if ((s = arg(q, "limit")) != NULL) {
        if (parse_uint(s, 1, SN_API_LIMIT_MAX, &n) != 0) {
            reply_error(reply, 400, "parameter 'limit' must be 1..%u", SN_API_LIMIT_MAX);
            return false;
        }
        f->limit = (unsigned)n;
    }
    if ((s = arg(q, "offset")) != NULL) {
        if (parse_uint(s, 0, SN_API_OFFSET_MAX, &n) != 0) {
            reply_error(reply, 400, "parameter 'offset' must be 0..%u", SN_API_OFFSET_MAX);
            return false;
        }
        f->offset = (unsigned)n;
    }
    return true;
}

/* GET /api/v1/anomalies: {"anomalies":[...],"total":N,"limit":L,"offset":O}, newest first. */
static void get_anomalies(sn_api *api, sn_http_reply *reply)
{
    static const char *const allowed[] = {"start",  "end",          "severity", "service", "model",
                                          "status", "anomaly_type", "limit",    "offset",  NULL};
    query_args q;
    sn_store_alert_filter f;
    if (!read_args(&q, allowed, reply) || !anomalies_filter(&q, &f, reply))
        return;
    ro_conn *c = pool_acquire(api, reply);
    if (c == NULL)
        return;
    rows r = {{NULL, 0, 0}, 0};
    uint64_t total = 0;
    int e = buf_add(&r.buf, "{\"anomalies\":[", 14);
    if (e == 0)
        e = sn_store_alert_query(c->st, &f, add_row, &r, &total);
    if (e == -EIO || e == -EBUSY || e == -EACCES)
        sn_log_warn("api: alert query failed", SN_LOG_STR("reason", sn_store_errmsg(c->st)),
                    SN_LOG_ERRNO(e));
    pool_release(api, c, e == -EIO || e == -EACCES);
    if (e == 0) {
        char tail[96];
        int n = snprintf(tail, sizeof tail, "],\"total\":%llu,\"limit\":%u,\"offset\":%u}",
                         (unsigned long long)total, f.limit, f.offset);
        e = buf_add(&r.buf, tail, (size_t)n);
    }
    if (e != 0) {
        free(r.buf.p);
        if (e == -EBUSY) {
            reply_busy(reply);
        } else if (e == -E2BIG) {
            reply_error(reply, 500, "the answer is too large: lower 'limit'");
        } else {
            reply_error(reply, 500, "reading the state store failed");
        }
        return;
    }
    snprintf(reply->content_type, sizeof reply->content_type, JSON_TYPE);
    reply->status = 200;
    reply->body = r.buf.p;
    reply->len = r.buf.len;
}

/* GET /api/v1/anomalies/{id}: the stored alert JSON. */
static void get_anomaly(sn_api *api, const char *id, sn_http_reply *reply)
{
    query_args q;
    if (!read_args(&q, NULL, reply))
        return;
    char v[QUOTE_MAX];
    if (!uuid_ok(id)) {
        quote(v, id);
        reply_error(reply, 400, "'%s' is not an alert id (a UUID)", v);
        return;
    }
    ro_conn *c = pool_acquire(api, reply);
    if (c == NULL)
        return;
    int e = 0;
    char *json = sn_store_alert_get_json(c->st, id, &e);
    if (json == NULL && e != -ENOENT)
        sn_log_warn("api: alert read failed", SN_LOG_STR("reason", sn_store_errmsg(c->st)),
                    SN_LOG_ERRNO(e));
    pool_release(api, c, json == NULL && (e == -EIO || e == -EACCES));
    if (json == NULL) {
        if (e == -ENOENT)
            reply_error(reply, 404, "no alert with id %s", id);
        else if (e == -EBUSY)
            reply_busy(reply);
        else
            reply_error(reply, 500, "reading the state store failed");
        return;
    }
    snprintf(reply->content_type, sizeof reply->content_type, JSON_TYPE);
    reply->status = 200;
    reply->body = json;
    reply->len = strlen(json);
}

/* ---------------------------------------------------------------- backend calls */

typedef enum be_kind {
    BE_BASELINES,
    BE_SERIES,
    BE_SERVICE,
    BE_SUMMARY,
    BE_CONFIG_GET,
    BE_CONFIG_POST
} be_kind;

typedef struct be_call {
    const sn_api_backend *be;
    be_kind kind;
    const char *a, *b, *c;
    unsigned limit;
    const json_t *in;
    json_t *out;
    int rc;
    char err[SN_API_ERR_MAX];
} be_call;

/* sn_loop_fn (or a direct call): runs one backend callback. */
static void be_run(void *arg)
{
    be_call *x = arg;
    const sn_api_backend *be = x->be;
    switch (x->kind) {
    case BE_BASELINES:
        x->rc = be->baselines(be->ud, x->a, x->b, x->c, &x->out);
        break;
    case BE_SERIES:
        x->rc = be->series(be->ud, x->a, x->b, x->c, x->limit, &x->out);
        break;
    case BE_SERVICE:
        x->rc = be->service_health(be->ud, x->a, &x->out);
        break;
    case BE_SUMMARY:
        x->rc = be->summary(be->ud, &x->out);
        break;
    case BE_CONFIG_GET:
        x->rc = be->config_get(be->ud, &x->out);
        break;
    case BE_CONFIG_POST:
        x->rc = be->config_post(be->ud, x->in, &x->out, x->err, sizeof x->err);
        break;
    }
}

/* True when the backend has the callback for kind. */
static bool be_has(const sn_api_backend *be, be_kind kind)
{
    switch (kind) {
    case BE_BASELINES:
        return be->baselines != NULL;
    case BE_SERIES:
        return be->series != NULL;
    case BE_SERVICE:
        return be->service_health != NULL;
    case BE_SUMMARY:
        return be->summary != NULL;
    case BE_CONFIG_GET:
        return be->config_get != NULL;
    case BE_CONFIG_POST:
        return be->config_post != NULL;
    }
    return false;
}

/* Runs the call on the loop (or directly) and answers for it. `what` names the thing for a
 * 404 ("service 'x'"). */
static void be_answer(sn_api *api, be_call *x, const char *what, sn_http_reply *reply)
{
    x->be = &api->be;
    x->out = NULL;
    x->rc = -EIO;
    x->err[0] = '\0';
    if (!be_has(&api->be, x->kind)) {
        reply_error(reply, 501, "not available in this aggregator");
        return;
    }
    if (api->be.loop != NULL) {
        int rc = sn_loop_call_run(api->be.loop, be_run, x);
        if (rc == -EAGAIN || rc == -ETIMEDOUT) {
            reply_busy(reply);
            return;
        }
        if (rc != 0) {
            reply_error(reply, 503, "the aggregator is shutting down");
            return;
        }
    } else {
        be_run(x);
    }
    x->err[sizeof x->err - 1] = '\0';
    if (x->rc == 0 && x->out != NULL && (json_is_object(x->out) || json_is_array(x->out))) {
        reply_json(reply, 200, x->out);
        return;
    }
    json_decref(x->out);
    switch (x->rc) {
    case 0:
        sn_log_error("api: a backend answer is not a JSON object or array",
                     SN_LOG_STR("route", what));
        reply_error(reply, 500, "internal error");
        break;
    case -ENOENT:
        reply_error(reply, 404, "unknown %s", what);
        break;
    case -EINVAL:
        /* The backend's message, made safe for JSON: control and non-ASCII bytes become '?'. */
        for (char *p = x->err; *p != '\0'; p++) {
            if (*p < 0x20 || *p >= 0x7f)
                *p = '?';
        }
        reply_error(reply, 400, "%s", x->err[0] ? x->err : "invalid request");
        break;
    case -EAGAIN:
    case -EBUSY:
        reply_busy(reply);
        break;
    default:
        reply_error(reply, 500, "internal error");
        break;
    }
}

/* GET /api/v1/baselines?service=&model=&metric= */
static void get_baselines(sn_api *api, sn_http_reply *reply)
{
    static const char *const allowed[] = {"service", "model", "metric", NULL};
    query_args q;
    if (!read_args(&q, allowed, reply))
        return;
    be_call x = {.kind = BE_BASELINES};
    x.a = arg(&q, "service");
    x.b = arg(&q, "model");
    x.c = arg(&q, "metric");
    if ((x.a != NULL && !name_ok(x.a)) || (x.b != NULL && !name_ok(x.b))) {
        reply_error(reply, 400,
                    "parameters 'service' and 'model' must be 1..%d bytes without control "
                    "characters",
                    SN_NAME_MAX - 1);
        return;
    }
    sn_metric m;
    if (x.c != NULL && sn_metric_from_name(x.c, &m) != 0) {
        char v[QUOTE_MAX];
        quote(v, x.c);
        reply_error(reply, 400, "parameter 'metric' ('%s') is not a known metric", v);
        return;
    }
    be_answer(api, &x, "baselines", reply);
}

/* GET /api/v1/series?service=&model=&metric=&limit= : all three names required. */
static void get_series(sn_api *api, sn_http_reply *reply)
{
    static const char *const allowed[] = {"service", "model", "metric", "limit", NULL};
    query_args q;
    if (!read_args(&q, allowed, reply))
        return;
    be_call x = {.kind = BE_SERIES, .limit = SN_API_SERIES_LIMIT_DEFAULT};
    x.a = arg(&q, "service");
    x.b = arg(&q, "model");
    x.c = arg(&q, "metric");
    const char *limit = arg(&q, "limit");
    if (x.a == NULL || x.b == NULL || x.c == NULL) {
        reply_error(reply, 400, "parameter '%s' is required",
                    x.a == NULL   ? "service"
                    : x.b == NULL ? "model"
                                  : "metric");
        return;
    }
    if (!name_ok(x.a) || !name_ok(x.b)) {
        reply_error(reply, 400,
                    "parameters 'service' and 'model' must be 1..%d bytes without control "
                    "characters",
                    SN_NAME_MAX - 1);
        return;
    }
    sn_metric m;
    if (sn_metric_from_name(x.c, &m) != 0) {
        char v[QUOTE_MAX];
        quote(v, x.c);
        reply_error(reply, 400, "parameter 'metric' ('%s') is not a known metric", v);
        return;
    }
    uint64_t n;
    if (limit != NULL) {
        if (parse_uint(limit, 1, SN_API_SERIES_LIMIT_MAX, &n) != 0) {
            reply_error(reply, 400, "parameter 'limit' must be an integer in 1..%u",
                        SN_API_SERIES_LIMIT_MAX);
            return;
        }
        x.limit = (unsigned)n;
    }
    char what[2 * QUOTE_MAX + 64], s[QUOTE_MAX], md[QUOTE_MAX];
    quote(s, x.a);
    quote(md, x.b);
    snprintf(what, sizeof what, "series ('%s', '%s', %s)", s, md, sn_metric_name(m));
    be_answer(api, &x, what, reply);
}

/* GET /api/v1/services/{name}/health */
static void get_service_health(sn_api *api, const char *name, sn_http_reply *reply)
{
    query_args q;
    if (!read_args(&q, NULL, reply))
        return;
    if (!name_ok(name)) {
        reply_error(reply, 400, "the service name must be 1..%d bytes without control characters",
                    SN_NAME_MAX - 1);
        return;
    }
    char what[QUOTE_MAX + 16], v[QUOTE_MAX];
    quote(v, name);
    snprintf(what, sizeof what, "service '%s'", v);
    be_call x = {.kind = BE_SERVICE, .a = name};
    be_answer(api, &x, what, reply);
}

/* True when the request's Content-Type is absent or application/json. */
static bool json_content_type(void)
{
    const char *ct = sn_http_request_header("Content-Type");
    if (ct == NULL)
        return true;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return n == strlen(JSON_TYPE) && strncasecmp(ct, JSON_TYPE, n) == 0;
}

/* POST /api/v1/config: the body is a JSON object of changes. */
static void post_config(sn_api *api, const uint8_t *body, size_t len, sn_http_reply *reply)
{
    query_args q;
    if (!read_args(&q, NULL, reply))
        return;
    if (!json_content_type()) {
        reply_error(reply, 415, "the body must be application/json");
        return;
    }
    json_error_t jerr;
    json_t *changes = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (changes == NULL) {
        reply_error(reply, 400, "the body is not valid JSON (line %d, column %d)", jerr.line,
                    jerr.column);
        return;
    }
    if (!json_is_object(changes)) {
        json_decref(changes);
        reply_error(reply, 400, "the body must be a JSON object of settings");
        return;
    }
    be_call x = {.kind = BE_CONFIG_POST, .in = changes};
    be_answer(api, &x, "configuration", reply);
    if (reply->status == 200) {
        char keys[256];
        size_t n = 0;
        const char *k;
        json_t *v;
        keys[0] = '\0';
        json_object_foreach(changes, k, v)
        {
            char qk[QUOTE_MAX];
            quote(qk, k);
            if (n < sizeof keys)
                n += (size_t)snprintf(keys + n, sizeof keys - n, "%s%s", n ? "," : "", qk);
        }
        sn_log_info("api: configuration changed", SN_LOG_STR("keys", keys));
    } else {
        sn_log_info("api: configuration change refused", SN_LOG_UINT("status", reply->status));
    }
    json_decref(changes);
}

/* ---------------------------------------------------------------- dispatch */

/* Resolves path to a route; *param gets the {id} or {name} part (in path, or cut into
 * `param_buf`), *asset the dashboard file. */
static route resolve(const sn_api *api, const char *path, char *param_buf, size_t cap,
                     const char **param, const sn_api_asset **asset)
{
    static const char anomalies[] = "/api/v1/anomalies/";
    static const char services[] = "/api/v1/services/";
    static const char health[] = "/health";
    *param = NULL;
    if (strcmp(path, "/health") == 0)
        return R_HEALTH;
    if (strcmp(path, "/metrics") == 0)
        return R_METRICS;
    if (strcmp(path, "/healthz") == 0)
        return R_HEALTHZ;
    if (strcmp(path, "/readyz") == 0)
        return R_READYZ;
    if (strcmp(path, "/api/v1/anomalies") == 0)
        return R_ANOMALIES;
    if (strncmp(path, anomalies, sizeof anomalies - 1) == 0 &&
        strchr(path + sizeof anomalies - 1, '/') == NULL) {
        *param = path + sizeof anomalies - 1;
        return R_ANOMALY;
    }
    size_t plen = strlen(path);
    if (strncmp(path, services, sizeof services - 1) == 0 &&
        plen > sizeof services - 1 + sizeof health - 1 &&
        strcmp(path + plen - (sizeof health - 1), health) == 0) {
        size_t n = plen - (sizeof services - 1) - (sizeof health - 1);
        if (n >= cap)
            n = cap - 1;
        memcpy(param_buf, path + sizeof services - 1, n);
        param_buf[n] = '\0';
        *param = param_buf;
        return R_SERVICE_HEALTH;
    }
    if (strcmp(path, "/api/v1/baselines") == 0)
        return R_BASELINES;
    if (strcmp(path, "/api/v1/series") == 0)
        return R_SERIES;
    if (strcmp(path, "/api/v1/statistics/summary") == 0)
        return R_SUMMARY;
    if (strcmp(path, "/api/v1/config") == 0)
        return R_CONFIG;
    if (strcmp(path, SN_LIVE_PATH) == 0 && api->cfg.live != NULL)
        return R_LIVE;
    for (size_t i = 0; i < api->cfg.nassets; i++) {
        if (strcmp(path, api->cfg.assets[i].path) == 0) {
            *asset = &api->cfg.assets[i];
            return R_DASHBOARD;
        }
    }
    return R_OTHER;
}

/* Adds the CORS header to every answer when an origin is configured. */
static void add_cors(const sn_api *api, sn_http_reply *reply)
{
    if (api->origin == NULL)
        return;
    for (unsigned i = 0; i < SN_HTTP_REPLY_HEADERS_MAX; i++) {
        if (reply->headers[i].name == NULL) {
            reply->headers[i].name = "Access-Control-Allow-Origin";
            reply->headers[i].value = api->origin;
            return;
        }
    }
}

/* Answers one request (everything but the metrics); *r gets its route. */
static void handle(sn_api *api, const char *method, const char *path, const uint8_t *body,
                   size_t len, sn_http_reply *reply, route *r)
{
    char name[SN_NAME_MAX + 1];
    const char *param = NULL;
    const sn_api_asset *a = NULL;
    *r = resolve(api, path, name, sizeof name, &param, &a);
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool post = strcmp(method, "POST") == 0;

    bool under_api = strncmp(path, "/api/", 5) == 0;
    if (*r == R_OTHER && !under_api) {
        reply_error(reply, 404, "not found");
        return;
    }
    if (*r == R_METRICS || *r == R_HEALTHZ || *r == R_READYZ) {
        if (*r == R_METRICS && api->cfg.metrics == NULL) {
            reply_error(reply, 404, "not found");
            return;
        }
        if (!get) {
            char m[QUOTE_MAX];
            quote(m, method);
            reply_error(reply, 405, "method %s is not allowed here", m);
            reply->allow = ALLOW_GET;
            return;
        }
        sn_admin_route(api->cfg.metrics, NULL, NULL, method, path, reply);
        return;
    }
    if (*r == R_LIVE) { /* the token may come in the query or the first message (live.h) */
        sn_live_handshake(api->cfg.live, method, reply);
        return;
    }
    if (strcmp(method, "OPTIONS") == 0 && api->origin != NULL) {
        reply->status = 204;
        reply->headers[0] = (sn_http_header){"Access-Control-Allow-Origin", api->origin};
        reply->headers[1] = (sn_http_header){"Access-Control-Allow-Methods", CORS_METHODS};
        reply->headers[2] = (sn_http_header){"Access-Control-Allow-Headers", CORS_HEADERS};
        reply->headers[3] = (sn_http_header){"Access-Control-Max-Age", "600"};
        return;
    }
    /* Under /api/ the token comes first, so unknown paths cannot be probed without it. */
    bool present;
    if (under_api && !authorized(api, &present)) {
        reply_error(reply, 401, present ? "invalid bearer token" : "a bearer token is required");
        reply->headers[0] =
            (sn_http_header){"WWW-Authenticate", present ? BEARER_INVALID : BEARER_REALM};
        return;
    }
    if (*r == R_OTHER) {
        reply_error(reply, 404, "not found");
        return;
    }
    bool allowed = get || (*r == R_CONFIG && post);
    if (!allowed) {
        char m[QUOTE_MAX];
        quote(m, method);
        reply_error(reply, 405, "method %s is not allowed here", m);
        reply->allow = *r == R_CONFIG ? ALLOW_GET_POST : ALLOW_GET;
        return;
    }
    if (*r == R_HEALTH) {
        reply_json(reply, 200,
                   json_pack("{s:s,s:s}", "status", "healthy", "version", api->version));
        return;
    }
    if (*r == R_DASHBOARD) {
        char *copy = malloc(a->len ? a->len : 1);
        if (copy == NULL) {
            reply->status = 500;
            return;
        }
        memcpy(copy, a->data, a->len);
        reply->status = 200;
        snprintf(reply->content_type, sizeof reply->content_type, "%s", a->content_type);
        reply->body = copy;
        reply->len = a->len;
        return;
    }

    /* Everything left is under /api/ and authorized. */
    switch (*r) {
    case R_ANOMALIES:
        get_anomalies(api, reply);
        break;
    case R_ANOMALY:
        get_anomaly(api, param, reply);
        break;
    case R_BASELINES:
        get_baselines(api, reply);
        break;
    case R_SERIES:
        get_series(api, reply);
        break;
    case R_SERVICE_HEALTH:
        get_service_health(api, param, reply);
        break;
    case R_SUMMARY: {
        query_args q;
        be_call x = {.kind = BE_SUMMARY};
        if (read_args(&q, NULL, reply))
            be_answer(api, &x, "summary", reply);
        break;
    }
    case R_CONFIG:
        if (post) {
            post_config(api, body, len, reply);
        } else {
            query_args q;
            be_call x = {.kind = BE_CONFIG_GET};
            if (read_args(&q, NULL, reply))
                be_answer(api, &x, "configuration", reply);
        }
        break;
    default:
        reply_error(reply, 404, "not found");
        break;
    }
}

/* sn_http_route_fn: every request of the API's server. */
static bool api_route(const char *method, const char *path, const uint8_t *body, size_t len,
                      sn_http_reply *reply, void *ud)
{
    sn_api *api = ud;
    double t0 = mono_s();
    route r = R_OTHER;
    handle(api, method, path, body, len, reply, &r);
    if (reply->status != 204)
        add_cors(api, reply);
    count_request(api, r, reply->status, mono_s() - t0);
    return true;
}

/* sn_http_upgrade_fn: a live feed connection after its 101. */
static void api_upgrade(int fd, const uint8_t *extra, size_t extra_len, sn_http_upgraded *h,
                        void *ud)
{
    sn_api *api = ud;
    sn_live_adopt(api->cfg.live, fd, extra, extra_len, h);
}

/* ---------------------------------------------------------------- lifecycle */

/* strdup of s, or NULL for NULL/"" (sets *oom when the copy failed). */
static char *dup_opt(const char *s, bool *oom)
{
    if (s == NULL || s[0] == '\0')
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *oom = true;
    return d;
}

int sn_api_create(const sn_api_config *cfg, const sn_api_backend *backend, sn_api **out, char *err,
                  size_t errlen)
{
    *out = NULL;
    if (cfg == NULL) {
        set_err(err, errlen, "api: no configuration");
        return -EINVAL;
    }
    if (cfg->api_token != NULL && strlen(cfg->api_token) >= SN_API_TOKEN_MAX) {
        set_err(err, errlen, "api: api_token longer than %d bytes", SN_API_TOKEN_MAX - 1);
        return -EINVAL;
    }
    for (const char *p = cfg->api_token; p != NULL && *p != '\0'; p++) {
        if (*p <= 0x20 || *p == 0x7f) {
            set_err(err, errlen, "api: api_token must not hold spaces or control characters");
            return -EINVAL;
        }
    }
    if (cfg->cors_origin != NULL && strlen(cfg->cors_origin) >= SN_API_ORIGIN_MAX) {
        set_err(err, errlen, "api: cors_origin longer than %d bytes", SN_API_ORIGIN_MAX - 1);
        return -EINVAL;
    }
    if (cfg->assets != NULL && cfg->nassets == 0) {
        set_err(err, errlen, "api: an asset table needs nassets");
        return -EINVAL;
    }
    sn_api *api = calloc(1, sizeof *api);
    if (api == NULL) {
        set_err(err, errlen, "api: out of memory");
        return -ENOMEM;
    }
    int rc = pthread_mutex_init(&api->pool_mu, NULL);
    if (rc != 0) {
        free(api);
        set_err(err, errlen, "api: %s", strerror(rc));
        return -rc;
    }
    api->cfg = *cfg;
    if (backend != NULL)
        api->be = *backend;
    if (api->cfg.max_body_bytes == 0)
        api->cfg.max_body_bytes = SN_API_DEFAULT_MAX_BODY;
    if (api->cfg.threads == 0)
        api->cfg.threads = SN_API_DEFAULT_THREADS;
    if (api->cfg.assets == NULL)
        api->cfg.assets = sn_api_placeholder_assets(&api->cfg.nassets);
    bool oom = false;
    api->listen = dup_opt(cfg->listen ? cfg->listen : SN_API_DEFAULT_LISTEN, &oom);
    api->token = dup_opt(cfg->api_token, &oom);
    api->token_len = api->token ? strlen(api->token) : 0;
    api->origin = dup_opt(cfg->cors_origin, &oom);
    api->store_dir = dup_opt(cfg->store_dir, &oom);
    api->version = dup_opt(cfg->version ? cfg->version : SENTINEL_VERSION, &oom);
    api->cfg.listen = api->listen;
    api->cfg.api_token = api->token;
    api->cfg.cors_origin = api->origin;
    api->cfg.store_dir = api->store_dir;
    api->cfg.version = api->version;
    api->npool = api->cfg.threads;
    api->pool = calloc(api->npool ? api->npool : 1, sizeof *api->pool);
    if (oom || api->pool == NULL) {
        set_err(err, errlen, "api: out of memory");
        rc = -ENOMEM;
        goto out_destroy_api;
    }

    sn_http_server_config hc = {
        .listen = api->listen,
        .max_body_bytes = api->cfg.max_body_bytes,
        .max_connections = api->cfg.max_connections,
        .threads = api->cfg.threads,
        .route = api_route,
        .route_ud = api,
        .route_json_errors = true,
        .upgrade = cfg->live != NULL ? api_upgrade : NULL,
        .upgrade_ud = api,
    };
    rc = sn_http_server_create(&hc, &api->server, err, errlen);
    if (rc != 0)
        goto out_destroy_api;

    if (cfg->metrics != NULL) {
        sn_metrics_desc req = {
            .type = SN_METRICS_COUNTER,
            .name = "sentinel_api_requests_total",
            .help = "REST API requests answered, by route pattern and status code.",
            .labels = {"route", "code"},
        };
        sn_metrics_desc dur = {
            .type = SN_METRICS_HISTOGRAM,
            .name = "sentinel_api_request_duration_seconds",
            .help = "Time to answer a REST API request once its body arrived, by route pattern.",
            .labels = {"route"},
            .buckets = g_buckets,
            .bucket_count = sizeof g_buckets / sizeof g_buckets[0],
        };
        if ((rc = sn_metrics_register(cfg->metrics, &req, &api->requests, err, errlen)) != 0 ||
            (rc = sn_metrics_register(cfg->metrics, &dur, &api->duration, err, errlen)) != 0)
            goto out_destroy_api;
    }
    *out = api;
    return 0;

out_destroy_api:
    sn_api_destroy(api);
    return rc;
}

int sn_api_start(sn_api *api, char *err, size_t errlen)
{
    int rc = sn_http_server_start(api->server, err, errlen);
    if (rc == 0)
        sn_log_info("api: listening", SN_LOG_STR("listen", api->listen),
                    SN_LOG_UINT("port", sn_http_server_port(api->server)),
                    SN_LOG_BOOL("token", api->token_len > 0));
    return rc;
}

uint16_t sn_api_port(const sn_api *api)
{
    return sn_http_server_port(api->server);
}

void sn_api_stop(sn_api *api)
{
    if (api == NULL)
        return;
    sn_live_shutdown(api->cfg.live); /* upgraded connections go back before the server stops */
    sn_http_server_stop(api->server);
    pthread_mutex_lock(&api->pool_mu);
    for (unsigned i = 0; api->pool != NULL && i < api->npool; i++) {
        sn_store_close(api->pool[i].st);
        api->pool[i].st = NULL;
    }
    pthread_mutex_unlock(&api->pool_mu);
}

void sn_api_destroy(sn_api *api)
{
    if (api == NULL)
        return;
    sn_api_stop(api);
    sn_http_server_destroy(api->server);
    pthread_mutex_destroy(&api->pool_mu);
    free(api->pool);
    free(api->listen);
    free(api->token);
    free(api->origin);
    free(api->store_dir);
    free(api->version);
    free(api);
}
