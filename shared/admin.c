/*
 * admin.c -- /healthz, /readyz and /metrics (see admin.h for the contract).
 *
 * The endpoint is an sn_http_server with no OTLP handler and one route callback; every body is
 * a fresh malloc'd buffer the server frees after sending. Only /metrics allocates more than a
 * few bytes: the exposition buffer, bounded by the registry's max_render_bytes.
 */
#include "admin.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READY_BODY_MAX (SN_ADMIN_REASON_MAX * 6 + 64) /* every byte escaped as \u00XX */

struct sn_admin {
    sn_admin_config cfg; /* cfg.listen points at listen_copy */
    char *listen_copy;
    sn_http_server *server;
};

/* Formats a message into err when the caller gave a buffer. */
static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Sets a reply's status, content type and a malloc'd copy of text. On allocation failure the
 * reply becomes a bodiless 503, which the server can still send. */
static void reply_text(sn_http_reply *reply, unsigned status, const char *content_type,
                       const char *text, size_t len)
{
    reply->status = status;
    snprintf(reply->content_type, sizeof reply->content_type, "%s", content_type);
    reply->body = malloc(len > 0 ? len : 1);
    if (reply->body == NULL) {
        reply->status = 503;
        reply->len = 0;
        return;
    }
    memcpy(reply->body, text, len);
    reply->len = len;
}

/* Appends s to out[*pos..cap) as JSON string contents: quotes, backslashes and control bytes
 * escaped. Stops (truncates) before an escape that would not fit. */
static void put_json_escaped(char *out, size_t cap, size_t *pos, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[6];
        size_t n;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            n = 2;
        } else if (c < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            n = 6;
        } else {
            esc[0] = (char)c;
            n = 1;
        }
        if (*pos + n >= cap)
            return;
        memcpy(out + *pos, esc, n);
        *pos += n;
    }
}

/* /readyz: asks the callback and answers 200 "ok" or 503 with a JSON reason. */
static void answer_ready(sn_admin_ready_fn ready, void *ud, sn_http_reply *reply)
{
    char reason[SN_ADMIN_REASON_MAX] = "";
    if (ready == NULL || ready(reason, sizeof reason, ud)) {
        reply_text(reply, 200, "text/plain; charset=utf-8", "ok\n", 3);
        return;
    }
    reason[sizeof reason - 1] = '\0';
    char body[READY_BODY_MAX];
    static const char head[] = "{\"status\":\"not ready\",\"reason\":\"";
    size_t pos = sizeof head - 1;
    memcpy(body, head, pos);
    put_json_escaped(body, sizeof body - 3, &pos, reason[0] ? reason : "not ready");
    memcpy(body + pos, "\"}\n", 3);
    reply_text(reply, 503, "application/json", body, pos + 3);
}

/* /metrics: renders the registry into a buffer the reply takes over. */
static void answer_metrics(sn_metrics *m, sn_http_reply *reply)
{
    char *text;
    size_t len;
    int rc = sn_metrics_render_alloc(m, &text, &len);
    if (rc == -ENOMEM) {
        reply_text(reply, 503, "text/plain; charset=utf-8", "out of memory\n", 14);
        return;
    }
    if (rc != 0) {
        static const char msg[] = "metrics exposition larger than its limit\n";
        reply_text(reply, 500, "text/plain; charset=utf-8", msg, sizeof msg - 1);
        return;
    }
    reply->status = 200;
    snprintf(reply->content_type, sizeof reply->content_type, "%s", SN_METRICS_CONTENT_TYPE);
    reply->body = text;
    reply->len = len;
}

bool sn_admin_route(sn_metrics *metrics, sn_admin_ready_fn ready, void *ready_ud,
                    const char *method, const char *path, sn_http_reply *reply)
{
    enum { HEALTH, READY, METRICS } which;
    if (strcmp(path, "/healthz") == 0)
        which = HEALTH;
    else if (strcmp(path, "/readyz") == 0)
        which = READY;
    else if (strcmp(path, "/metrics") == 0 && metrics != NULL)
        which = METRICS;
    else
        return false;

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char msg[] = "method not allowed: use GET\n";
        reply_text(reply, 405, "text/plain; charset=utf-8", msg, sizeof msg - 1);
        reply->allow = "GET, HEAD";
        return true;
    }
    switch (which) {
    case HEALTH:
        reply_text(reply, 200, "text/plain; charset=utf-8", "ok\n", 3);
        break;
    case READY:
        answer_ready(ready, ready_ud, reply);
        break;
    case METRICS:
        answer_metrics(metrics, reply);
        break;
    }
    return true;
}

/* The server's route callback: the admin paths, nothing else. */
static bool admin_route(const char *method, const char *path, const uint8_t *body, size_t len,
                        sn_http_reply *reply, void *ud)
{
    (void)body;
    (void)len;
    const sn_admin *a = ud;
    return sn_admin_route(a->cfg.metrics, a->cfg.ready, a->cfg.ready_ud, method, path, reply);
}

int sn_admin_create(const sn_admin_config *cfg, sn_admin **out, char *err, size_t errlen)
{
    int rc;
    *out = NULL;
    if (cfg == NULL) {
        set_err(err, errlen, "admin endpoint needs a configuration");
        return -EINVAL;
    }
    sn_admin *a = calloc(1, sizeof *a);
    if (a == NULL) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    a->cfg = *cfg;
    a->listen_copy = strdup(cfg->listen ? cfg->listen : SN_ADMIN_DEFAULT_LISTEN);
    if (a->listen_copy == NULL) {
        set_err(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out_free_admin;
    }
    a->cfg.listen = a->listen_copy;
    if (a->cfg.threads == 0)
        a->cfg.threads = SN_ADMIN_DEFAULT_THREADS;
    sn_http_server_config hc = {
        .listen = a->cfg.listen,
        /* Admin requests have no body worth reading. */
        .max_body_bytes = 4096,
        .max_connections = a->cfg.max_connections,
        .threads = a->cfg.threads,
        .route = admin_route,
        .route_ud = a,
    };
    rc = sn_http_server_create(&hc, &a->server, err, errlen);
    if (rc != 0)
        goto out_free_admin;
    *out = a;
    return 0;

out_free_admin:
    sn_admin_destroy(a);
    return rc;
}

int sn_admin_start(sn_admin *a, char *err, size_t errlen)
{
    return sn_http_server_start(a->server, err, errlen);
}

uint16_t sn_admin_port(const sn_admin *a)
{
    return sn_http_server_port(a->server);
}

void sn_admin_stop(sn_admin *a)
{
    if (a != NULL)
        sn_http_server_stop(a->server);
}

void sn_admin_destroy(sn_admin *a)
{
    if (a == NULL)
        return;
    sn_http_server_destroy(a->server);
    free(a->listen_copy);
    free(a);
}
