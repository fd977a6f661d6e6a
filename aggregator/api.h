/*
 * api.h -- the aggregator's REST API (contracts.md "Aggregator REST API", docs/aggregator.md
 * "API") on the project's libmicrohttpd server (otlp/http_server.h, route mode):
 *
 *   GET  /health                        open   {"status":"healthy","version":"X.Y.Z"}
 *   GET  /metrics                       open   Prometheus text (sn_admin_route)
 *   GET  /api/v1/anomalies              token  stored alerts, filtered and paged (store, RO)
 *   GET  /api/v1/anomalies/{id}         token  one stored alert (store, RO)
 *   GET  /api/v1/baselines              token  backend.baselines (loop)
 *   GET  /api/v1/services/{name}/health token  backend.service_health (loop)
 *   GET  /api/v1/series                 token  backend.series (loop): one key's recent values
 *   GET  /api/v1/statistics/summary     token  backend.summary (loop)
 *   GET  /api/v1/config                 token  backend.config_get (loop)
 *   POST /api/v1/config                 token  backend.config_post (loop)
 *   GET  /, /index.html, other assets   open   the dashboard's asset table
 *   GET  /ws/realtime                   token  the live feed (WebSocket; live.h), when given
 *
 * Every error is {"error":"..."} with a fitting status: 400 (bad parameter, naming it), 401
 * (token; with WWW-Authenticate: Bearer), 404, 405 (with Allow), 413, 415, 500, 501 (a backend
 * callback not provided), 503 (the loop is busy or the store unavailable; with Retry-After).
 *
 * Threads. Requests are answered on the HTTP server's threads. Alert reads go to the SQLite
 * store through read-only connections of the API's own (one per server thread, opened on first
 * use), which WAL lets run beside the loop's writer. Everything the loop owns is reached
 * through the backend's callbacks, which the API runs on the loop thread with sn_loop_call_run
 * (loop_call.h) and waits for: a call the loop does not take within the hand-off's timeout, or
 * one refused because its queue is full, is answered 503 {"error":"busy"} with Retry-After.
 */
#ifndef SN_API_H
#define SN_API_H

#include "loop_call.h"
#include "metrics.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_API_DEFAULT_LISTEN       "0.0.0.0:8080"
#define SN_API_DEFAULT_MAX_BODY     (64u * 1024u) /* bytes of a POST body */
#define SN_API_DEFAULT_THREADS      2u
#define SN_API_TOKEN_MAX            512 /* bytes of the bearer token, NUL included */
#define SN_API_ORIGIN_MAX           256 /* bytes of the CORS origin, NUL included */
#define SN_API_ERR_MAX              256 /* bytes of a backend's error message, NUL included */
#define SN_API_LIMIT_DEFAULT        100u
#define SN_API_LIMIT_MAX            1000u
#define SN_API_OFFSET_MAX           1000000000u
#define SN_API_SERIES_LIMIT_DEFAULT 300u
#define SN_API_SERIES_LIMIT_MAX     10000u

typedef struct sn_api sn_api;

/* The loop's side of the API. Every callback runs on the loop thread (through `loop`), may be
 * NULL (its endpoint then answers 501), and on success sets *out to a new JSON reference (an
 * object or an array) that the API sends as the response body and json_decref's. Return values:
 * 0 (200), -ENOENT (404), -EINVAL (400), -EAGAIN or -EBUSY (503 busy), anything else 500. */
typedef struct sn_api_backend {
    /* Baselines matching the filters (NULL: any), e.g. {"baselines":[...]}. metric, when
     * given, has already been checked to be a known metric name. */
    int (*baselines)(void *ud, const char *service, const char *model, const char *metric,
                     json_t **out);
    /* One service's health; -ENOENT when the service is unknown. */
    int (*service_health)(void *ud, const char *name, json_t **out);
    /* The statistics summary. */
    int (*summary)(void *ud, json_t **out);
    /* The newest `limit` (1..SN_API_SERIES_LIMIT_MAX) recent values of one key, with its
     * baseline; -ENOENT when the aggregator knows neither. service, model and metric are given
     * and checked (metric is a known metric name). */
    int (*series)(void *ud, const char *service, const char *model, const char *metric,
                  unsigned limit, json_t **out);
    /* The running configuration (sn_config_dump_json). */
    int (*config_get)(void *ud, json_t **out);
    /* Applies `changes` (a JSON object, borrowed) atomically without a restart and records it
     * (the configuration history is the audit trail); *out is what the API answers, e.g. the
     * new configuration. -EINVAL with a one-line message naming the bad field in err (errlen
     * bytes) is answered 400 with that message; nothing is applied then. */
    int (*config_post)(void *ud, const json_t *changes, json_t **out, char *err, size_t errlen);
    void *ud;
    /* Where the callbacks run: the loop's hand-off (borrowed, must outlive the API's start..stop).
     * NULL: called directly on the HTTP threads, so they must be thread-safe (tests, tools). */
    sn_loop_call *loop;
} sn_api_backend;

/* One file of the dashboard, served at `path` with GET/HEAD. Static data. */
typedef struct sn_api_asset {
    const char *path;         /* "/", "/index.html", "/app.js", ... */
    const char *content_type; /* "text/html; charset=utf-8", ... */
    const void *data;
    size_t len;
} sn_api_asset;

/* The built-in placeholder dashboard (a small HTML page at "/" and "/index.html"); *n gets the
 * table's length. Static storage. */
const sn_api_asset *sn_api_placeholder_assets(size_t *n);

typedef struct sn_api_config {
    const char *listen;         /* "host:port"; NULL: SN_API_DEFAULT_LISTEN; port 0 = any */
    const char *api_token;      /* NULL or "": open; else required as "Authorization: Bearer <t>"
                                   on /api/ (compared in constant time) */
    size_t max_body_bytes;      /* POST bodies; 0: SN_API_DEFAULT_MAX_BODY */
    unsigned threads;           /* HTTP threads (and read-only store connections); 0: the default */
    unsigned max_connections;   /* 0: the HTTP server's default */
    const char *cors_origin;    /* NULL or "": no CORS headers (the default); else the
                                   Access-Control-Allow-Origin value, and OPTIONS answers */
    const char *store_dir;      /* the state store's directory (read-only connections); NULL:
                                   the anomalies endpoints answer 503 */
    sn_metrics *metrics;        /* borrowed; NULL: /metrics is 404 and requests are not counted */
    const sn_api_asset *assets; /* the dashboard; NULL: sn_api_placeholder_assets() */
    size_t nassets;
    const char *version;  /* /health's "version"; NULL: SENTINEL_VERSION */
    struct sn_live *live; /* the live feed at /ws/realtime (borrowed; NULL: 404); sn_api_stop
                             shuts it down (sn_live_shutdown) before the server stops */
} sn_api_config;

/* Validates and copies the configuration (strings included; the backend table is copied, the
 * loop, metrics registry and assets are borrowed) into a new API, not listening yet, and
 * registers its metrics (sentinel_api_requests_total{route,code},
 * sentinel_api_request_duration_seconds{route}) in cfg->metrics. Returns 0 and sets *out, or
 * -EINVAL (bad listen address, token or origin too long, a limit out of range) / -EEXIST (the
 * metrics are already registered) / -ENOMEM with a message in err (errlen bytes, may be NULL).
 * Free with sn_api_destroy. */
int sn_api_create(const sn_api_config *cfg, const sn_api_backend *backend, sn_api **out, char *err,
                  size_t errlen);

/* Binds and starts serving. Returns 0, or a negative errno (-EADDRINUSE, -EACCES, -EALREADY,
 * ...) with a message in err; on failure nothing is left listening. */
int sn_api_start(sn_api *api, char *err, size_t errlen);

/* The bound port once started (the real one when 0 was asked for); 0 before. */
uint16_t sn_api_port(const sn_api *api);

/* Stops serving and joins the HTTP threads; requests in progress finish first (a backend call
 * among them needs the loop running, or its hand-off closed). Closes the read-only store
 * connections. Safe when not started. */
void sn_api_stop(sn_api *api);

/* Stops if needed and frees the API (not the borrowed registry, loop or assets). NULL is
 * allowed. */
void sn_api_destroy(sn_api *api);

/* Parses an API time parameter: RFC 3339 (sn_alert_parse_time) or whole Unix seconds. Returns 0
 * and sets *ns (nanoseconds since the epoch, >= 0), or -EINVAL (also before 1970 or past
 * 2262). Exposed for tests. */
int sn_api_parse_time(const char *s, int64_t *ns);

#endif
