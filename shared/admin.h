/*
 * admin.h -- the health and metrics endpoints every long-running program serves:
 *
 *   GET /healthz  200 "ok\n" while the process runs (liveness)
 *   GET /readyz   200 "ok\n" when the readiness callback says ready (or there is none);
 *                 503 {"status":"not ready","reason":"..."} otherwise (readiness)
 *   GET /metrics  200, the registry in the Prometheus text format (SN_METRICS_CONTENT_TYPE);
 *                 500 when the exposition is larger than the registry's render limit
 *
 * HEAD is answered like GET without a body; other methods on these paths get 405 with
 * "Allow: GET, HEAD"; other paths 404. Query strings are ignored.
 *
 * sn_admin runs these on its own listener (the sidecar's 0.0.0.0:8081), built on the HTTP
 * server of otlp/http_server.h with no OTLP routes. A program with its own HTTP server (the
 * aggregator's REST API on 8080) calls sn_admin_route() from its route callback instead.
 *
 * Threads: requests are answered on the server's worker threads; the readiness callback runs
 * there, concurrently with the program's own threads, so it must be thread-safe and quick
 * (read an atomic flag, not the loop's state).
 */
#ifndef SN_ADMIN_H
#define SN_ADMIN_H

#include "metrics.h"
#include "otlp/http_server.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_ADMIN_DEFAULT_LISTEN  "0.0.0.0:8081"
#define SN_ADMIN_DEFAULT_THREADS 1u
#define SN_ADMIN_REASON_MAX      256 /* bytes of a not-ready reason, NUL included */

typedef struct sn_admin sn_admin;

/* Readiness: returns true when ready; when not, may write a short reason (a NUL-terminated
 * string of at most reasonlen bytes, for a person) into `reason`. Runs on server threads. */
typedef bool (*sn_admin_ready_fn)(char *reason, size_t reasonlen, void *ud);

typedef struct sn_admin_config {
    const char *listen;      /* "host:port"; NULL: SN_ADMIN_DEFAULT_LISTEN; port 0 = any */
    sn_metrics *metrics;     /* NULL: /metrics is 404; else borrowed, must outlive the server */
    sn_admin_ready_fn ready; /* NULL: always ready */
    void *ready_ud;
    unsigned threads;         /* worker threads; 0: SN_ADMIN_DEFAULT_THREADS */
    unsigned max_connections; /* 0: the HTTP server's default */
} sn_admin_config;

/* Validates and copies the configuration (the listen string included) into a new endpoint,
 * which is not listening yet. Returns 0 and sets *out, or -EINVAL / -ENOMEM with a message in
 * err (errlen bytes, may be NULL). Free with sn_admin_destroy(). */
int sn_admin_create(const sn_admin_config *cfg, sn_admin **out, char *err, size_t errlen);

/* Binds and starts serving. Returns 0, or a negative errno (-EADDRINUSE, -EACCES, -EALREADY,
 * ...) with a message in err; on failure nothing is left listening. */
int sn_admin_start(sn_admin *a, char *err, size_t errlen);

/* The bound port once started (the real one when 0 was asked for); 0 before. */
uint16_t sn_admin_port(const sn_admin *a);

/* Stops serving and joins the worker threads; a request in progress finishes first. Safe when
 * not started. Not to be called from the readiness callback. */
void sn_admin_stop(sn_admin *a);

/* Stops if needed and frees the endpoint (not the registry). NULL is allowed. */
void sn_admin_destroy(sn_admin *a);

/* Answers /healthz, /readyz and /metrics as described above into `reply` (an sn_http_route_fn
 * reply: the body is malloc'd here and owned by the caller's server afterwards). Returns false,
 * touching nothing, when `path` is none of them. `metrics` and `ready` may be NULL. */
bool sn_admin_route(sn_metrics *metrics, sn_admin_ready_fn ready, void *ready_ud,
                    const char *method, const char *path, sn_http_reply *reply);

#endif
