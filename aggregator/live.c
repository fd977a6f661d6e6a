/*
 * live.c -- the live feed hub (see live.h for the protocol, threads and limits).
 *
 * State and who touches it:
 *   hub->mu guards the client list, every client's auth flag, filter, backlog ring and drop
 *   mark, the message reference counts and the counters. sn_live_publish (loop thread) and the
 *   I/O thread take it briefly and never do I/O under it.
 *   A client's wslay context, socket and receive state belong to the I/O thread alone (the
 *   adopting HTTP thread sets them up before linking the client in, under the mutex).
 *   Only the I/O thread unlinks and frees clients, so a client it polls stays valid; everybody
 *   else asks for a close by setting `drop` and waking it.
 *
 * A client's life: adopted (hello queued) -> linked -> [authed] -> drop set (slow, idle, auth,
 * protocol, peer, shutdown) -> unlinked, backlog released, wslay freed, socket returned to the
 * HTTP server with sn_http_upgraded_close.
 */
#include "live.h"

#include "detect/detect.h"
#include "event.h"
#include "log.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <wslay/wslay.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WS_GUID         "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WSLAY_QUEUE_MAX 4u   /* messages kept in wslay's own queue per client */
#define IDLE_HEARTBEATS 3    /* heartbeats without a frame from the client before closing */
#define CLOSE_GRACE_MS  1000 /* time a client gets to answer our close frame */
#define TOKEN_MAX       512  /* bytes, NUL included (as the API's) */
#define JSON_TYPE       "application/json"
#define ERR_MAX         256

/* ---------------------------------------------------------------- types */

/* One rendered message, shared by the backlogs of every client it goes to. refs under mu. */
typedef struct live_msg {
    unsigned refs;
    size_t len;
    char data[];
} live_msg;

typedef struct live_filter {
    unsigned nservice;
    unsigned nmodel;
    unsigned severities; /* bit (1 << sn_severity); 0: every severity */
    char service[SN_LIVE_FILTER_MAX][SN_NAME_MAX];
    char model[SN_LIVE_FILTER_MAX][SN_NAME_MAX];
} live_filter;

typedef struct live_client {
    struct live_client *next;
    sn_live *hub;
    int fd;
    sn_http_upgraded *h;
    wslay_event_context_ptr ws;

    /* under hub->mu */
    bool authed;
    bool drop;
    sn_live_close_reason reason;
    live_filter filter;
    live_msg **ring; /* max_backlog_msgs slots */
    unsigned head;
    unsigned count;
    size_t bytes;

    /* I/O thread only (and the adopting thread before linking) */
    uint8_t *extra; /* bytes the HTTP server read past the request */
    size_t extra_len;
    size_t extra_off;
    int64_t connected_ms;
    int64_t last_rx_ms;
    int64_t close_deadline_ms;         /* > 0: we are closing (close frame owed or queued) */
    sn_live_close_reason close_reason; /* why */
    uint16_t close_code;               /* != 0: the close frame waits for the queue to drain */
    const char *close_why;             /* static */
} live_client;

struct sn_live {
    sn_live_config cfg;
    char *token;
    size_t token_len;
    char *version;
    int efd;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t mu;
    bool stopping; /* under mu */
    bool joined;   /* the shutdown caller's */
    live_client *clients;
    unsigned nclients;
    sn_live_stats st;

    sn_gauge *g_clients;
    sn_counter *c_messages;
    sn_counter *c_closed[SN_LIVE_CLOSED_COUNT];
};

static const char *const g_reason_name[SN_LIVE_CLOSED_COUNT] = {
    [SN_LIVE_CLOSED_PEER] = "peer",         [SN_LIVE_CLOSED_SLOW] = "slow",
    [SN_LIVE_CLOSED_IDLE] = "idle",         [SN_LIVE_CLOSED_AUTH] = "auth",
    [SN_LIVE_CLOSED_PROTOCOL] = "protocol", [SN_LIVE_CLOSED_SHUTDOWN] = "shutdown",
};

static const char *const g_change_name[] = {
    [SN_ALERT_CHANGE_FIRED] = "fired",
    [SN_ALERT_CHANGE_UPDATED] = "updated",
    [SN_ALERT_CHANGE_ESCALATED] = "escalated",
    [SN_ALERT_CHANGE_RESOLVED] = "resolved",
};

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

/* Monotonic milliseconds. */
static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wall-clock nanoseconds, for the heartbeat's time. */
static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Wakes the I/O thread (eventfd; a full counter is already a wake-up). */
static void wake(sn_live *live)
{
    uint64_t one = 1;
    ssize_t r = write(live->efd, &one, sizeof one);
    (void)r;
}

/* True when the token (len bytes) is the configured one; the same time for every token of a
 * given length. */
static bool token_ok(const sn_live *live, const char *t, size_t len)
{
    unsigned diff = len != live->token_len;
    for (size_t i = 0; i < live->token_len; i++)
        diff |= (unsigned char)live->token[i] ^ (unsigned char)(i < len ? t[i] : 0);
    return diff == 0;
}

/* A service or model name as the API takes it: 1..SN_NAME_MAX-1 bytes, no control chars. */
static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n >= SN_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    }
    return true;
}

/* Drops one reference (under mu); frees the message with the last. */
static void msg_unref(live_msg *m)
{
    if (m != NULL && --m->refs == 0)
        free(m);
}

/* Under mu: asks the I/O thread to close c for `reason` (the first reason sticks). */
static void mark_drop(live_client *c, sn_live_close_reason reason)
{
    if (!c->drop) {
        c->drop = true;
        c->reason = reason;
    }
}

/* ---------------------------------------------------------------- filters */

/* Adds one filter value of `field` ("service", "model", "severity"). Returns 0, or -EINVAL
 * with a message. */
static int filter_add(live_filter *f, const char *field, const char *v, size_t n, char *err,
                      size_t errlen)
{
    if (strcmp(field, "severity") == 0) {
        sn_severity sev;
        char name[16];
        if (n >= sizeof name) {
            set_err(err, errlen, "severity: unknown value (low, medium, high, critical)");
            return -EINVAL;
        }
        memcpy(name, v, n);
        name[n] = '\0';
        if (sn_severity_from_name(name, &sev) != 0 || sev == SN_SEV_NONE) {
            set_err(err, errlen, "severity: unknown value (low, medium, high, critical)");
            return -EINVAL;
        }
        f->severities |= 1u << sev;
        return 0;
    }
    bool svc = strcmp(field, "service") == 0;
    unsigned *cnt = svc ? &f->nservice : &f->nmodel;
    if (!name_ok(v, n)) {
        set_err(err, errlen, "%s: a name is 1 to %d bytes without control characters", field,
                SN_NAME_MAX - 1);
        return -EINVAL;
    }
    if (*cnt >= SN_LIVE_FILTER_MAX) {
        set_err(err, errlen, "%s: at most %u values", field, SN_LIVE_FILTER_MAX);
        return -EINVAL;
    }
    char *dst = svc ? f->service[*cnt] : f->model[*cnt];
    memcpy(dst, v, n);
    dst[n] = '\0';
    (*cnt)++;
    return 0;
}

/* Adds a comma-separated list (a query parameter). Returns 0 or -EINVAL with a message. */
static int filter_add_list(live_filter *f, const char *field, const char *list, char *err,
                           size_t errlen)
{
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n > 0 && filter_add(f, field, p, n, err, errlen) != 0)
            return -EINVAL;
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

/* Adds a JSON value (a string or an array of strings; null means none). Returns 0 or -EINVAL. */
static int filter_add_json(live_filter *f, const char *field, const json_t *v, char *err,
                           size_t errlen)
{
    if (v == NULL || json_is_null(v))
        return 0;
    if (json_is_string(v))
        return filter_add(f, field, json_string_value(v), json_string_length(v), err, errlen);
    if (!json_is_array(v)) {
        set_err(err, errlen, "%s: a string or an array of strings", field);
        return -EINVAL;
    }
    size_t i;
    const json_t *x;
    json_array_foreach(v, i, x)
    {
        if (!json_is_string(x)) {
            set_err(err, errlen, "%s: a string or an array of strings", field);
            return -EINVAL;
        }
        if (filter_add(f, field, json_string_value(x), json_string_length(x), err, errlen) != 0)
            return -EINVAL;
    }
    return 0;
}

/* True when the alert passes the filter. */
static bool filter_match(const live_filter *f, const sn_alert *al)
{
    if (f->severities != 0 && (f->severities & (1u << al->severity)) == 0)
        return false;
    bool ok = f->nservice == 0;
    for (unsigned i = 0; !ok && i < f->nservice; i++)
        ok = strcmp(f->service[i], al->service) == 0;
    if (!ok)
        return false;
    ok = f->nmodel == 0;
    for (unsigned i = 0; !ok && i < f->nmodel; i++)
        ok = strcmp(f->model[i], al->model) == 0;
    return ok;
}

/* The filter as JSON (for the "subscribed" answer). */
static json_t *filter_json(const live_filter *f)
{
    json_t *svc = json_array(), *mod = json_array(), *sev = json_array();
    for (unsigned i = 0; i < f->nservice; i++)
        json_array_append_new(svc, json_string(f->service[i]));
    for (unsigned i = 0; i < f->nmodel; i++)
        json_array_append_new(mod, json_string(f->model[i]));
    for (int s = SN_SEV_LOW; s <= SN_SEV_CRITICAL; s++) {
        if (f->severities & (1u << s))
            json_array_append_new(sev, json_string(sn_severity_name((sn_severity)s)));
    }
    return json_pack("{s:o,s:o,s:o}", "service", svc, "model", mod, "severity", sev);
}

/* ---------------------------------------------------------------- the upgrade request */

typedef struct req_args {
    live_filter filter;
    const char *token; /* borrowed from the request */
    char err[ERR_MAX];
    bool bad;
} req_args;

/* sn_http_arg_fn: the query's token and filter. */
static bool take_arg(const char *key, const char *value, void *ud)
{
    req_args *a = ud;
    if (value == NULL)
        value = "";
    if (strcmp(key, "token") == 0) {
        a->token = value;
        return true;
    }
    if (strcmp(key, "service") == 0 || strcmp(key, "model") == 0 || strcmp(key, "severity") == 0) {
        char msg[ERR_MAX];
        if (filter_add_list(&a->filter, key, value, msg, sizeof msg) != 0) {
            snprintf(a->err, sizeof a->err, "%s", msg);
            a->bad = true;
            return false;
        }
        return true;
    }
    snprintf(a->err, sizeof a->err, "unknown parameter (known: token, service, model, severity)");
    a->bad = true;
    return false;
}

/* Reads the request's token (query or bearer header) and filter. Returns 0 (authed set when a
 * right token came or none is needed), -EINVAL (bad parameter, message in a->err) or -EACCES
 * (a wrong token). */
static int read_request(sn_live *live, req_args *a, bool *authed)
{
    memset(a, 0, sizeof *a);
    sn_http_request_args(take_arg, a);
    if (a->bad)
        return -EINVAL;
    const char *tok = a->token;
    size_t len = tok ? strlen(tok) : 0;
    const char *h = sn_http_request_header("Authorization");
    if (tok == NULL && h != NULL) {
        while (*h == ' ')
            h++;
        if (strncasecmp(h, "Bearer", 6) == 0 && (h[6] == ' ' || h[6] == '\t')) {
            tok = h + 7;
            while (*tok == ' ' || *tok == '\t')
                tok++;
            len = strlen(tok);
            while (len > 0 && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
                len--;
        } else {
            return -EACCES;
        }
    }
    *authed = live->token_len == 0;
    if (live->token_len > 0 && tok != NULL) {
        if (!token_ok(live, tok, len))
            return -EACCES;
        *authed = true;
    }
    return 0;
}

/* True when a comma-separated header value holds `token` (case-insensitive). */
static bool header_has(const char *value, const char *token)
{
    size_t tl = strlen(token);
    const char *p = value;
    while (p != NULL && *p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == tl && strncasecmp(p, token, tl) == 0)
            return true;
        p = end;
    }
    return false;
}

int sn_live_accept_key(const char *key, char out[29])
{
    size_t klen = key ? strlen(key) : 0;
    if (klen == 0 || klen > 64)
        return -EINVAL;
    char buf[64 + sizeof WS_GUID];
    memcpy(buf, key, klen);
    memcpy(buf + klen, WS_GUID, sizeof WS_GUID - 1);
    uint8_t digest[20];
    if (gnutls_hash_fast(GNUTLS_DIG_SHA1, buf, klen + sizeof WS_GUID - 1, digest) != 0)
        return -EIO;
    gnutls_datum_t in = {digest, sizeof digest}, b64 = {NULL, 0};
    if (gnutls_base64_encode2(&in, &b64) != 0)
        return -EIO;
    int rc = 0;
    if (b64.size != 28) {
        rc = -EIO;
    } else {
        memcpy(out, b64.data, 28);
        out[28] = '\0';
    }
    gnutls_free(b64.data);
    return rc;
}

/* An error answer {"error":"..."} (the message is ASCII without quotes). */
static void reply_error(sn_http_reply *reply, unsigned status, const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    reply->status = text ? status : 500;
    snprintf(reply->content_type, sizeof reply->content_type, JSON_TYPE);
    reply->body = text;
    reply->len = text ? strlen(text) : 0;
}

void sn_live_handshake(sn_live *live, const char *method, sn_http_reply *reply)
{
    pthread_mutex_lock(&live->mu);
    bool refuse = live->stopping || live->nclients >= live->cfg.max_clients;
    bool stopping = live->stopping;
    live->st.refused++;
    pthread_mutex_unlock(&live->mu);

    if (strcmp(method, "GET") != 0) {
        reply_error(reply, 405, "the live feed takes GET with a WebSocket upgrade");
        reply->allow = "GET";
        return;
    }
    const char *up = sn_http_request_header("Upgrade");
    const char *conn = sn_http_request_header("Connection");
    if (up == NULL || !header_has(up, "websocket") || conn == NULL ||
        !header_has(conn, "upgrade")) {
        reply_error(reply, 426, "the live feed is a WebSocket: send Upgrade: websocket");
        reply->headers[0] = (sn_http_header){"Upgrade", "websocket"};
        return;
    }
    const char *ver = sn_http_request_header("Sec-WebSocket-Version");
    if (ver == NULL || strcmp(ver, "13") != 0) {
        reply_error(reply, 426, "Sec-WebSocket-Version 13 is required");
        reply->headers[0] = (sn_http_header){"Sec-WebSocket-Version", "13"};
        return;
    }
    const char *key = sn_http_request_header("Sec-WebSocket-Key");
    static _Thread_local char accept[29];
    if (key == NULL || strlen(key) != 24 || sn_live_accept_key(key, accept) != 0) {
        reply_error(reply, 400, "a Sec-WebSocket-Key of 16 bytes in base64 is required");
        return;
    }
    req_args a;
    bool authed = false;
    int rc = read_request(live, &a, &authed);
    if (rc == -EINVAL) {
        char msg[ERR_MAX + 16];
        snprintf(msg, sizeof msg, "live feed: %s", a.err);
        reply_error(reply, 400, msg);
        return;
    }
    if (rc == -EACCES) {
        reply_error(reply, 401, "invalid token");
        reply->headers[0] = (sn_http_header){"WWW-Authenticate", "Bearer realm=\"sentinel\""};
        return;
    }
    if (refuse) {
        reply_error(reply, 503, stopping ? "shutting down" : "too many live feed clients");
        reply->retry_after_s = 5;
        return;
    }
    pthread_mutex_lock(&live->mu);
    live->st.refused--; /* counted up front; this one goes through */
    pthread_mutex_unlock(&live->mu);
    reply->status = 101;
    reply->upgrade = true;
    reply->headers[0] = (sn_http_header){"Upgrade", "websocket"};
    reply->headers[1] = (sn_http_header){"Connection", "Upgrade"};
    reply->headers[2] = (sn_http_header){"Sec-WebSocket-Accept", accept};
}

/* ---------------------------------------------------------------- wslay callbacks (I/O thread) */

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    (void)flags;
    live_client *c = ud;
    if (c->extra_off < c->extra_len) {
        size_t n = c->extra_len - c->extra_off;
        if (n > len)
            n = len;
        memcpy(buf, c->extra + c->extra_off, n);
        c->extra_off += n;
        return (ssize_t)n;
    }
    ssize_t r;
    do {
        r = recv(c->fd, buf, len, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (r <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return r;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    live_client *c = ud;
    int sf = MSG_NOSIGNAL | ((flags & WSLAY_MSG_MORE) ? MSG_MORE : 0);
    ssize_t r;
    do {
        r = send(c->fd, data, len, sf);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        wslay_event_set_error(ctx, (errno == EAGAIN || errno == EWOULDBLOCK)
                                       ? WSLAY_ERR_WOULDBLOCK
                                       : WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return r;
}

/* Queues a text message straight into wslay (I/O thread; control answers, not backlog). */
static void ws_text(live_client *c, json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text == NULL)
        return;
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)text, strlen(text)};
    wslay_event_queue_msg(c->ws, &m);
    free(text);
}

/* Starts our close: the close frame is queued once the messages before it went out (wslay
 * sends control frames first); the client is closed for `reason` when it answers or after
 * CLOSE_GRACE_MS. `why` is a static string. */
static void ws_close(live_client *c, uint16_t code, const char *why, sn_live_close_reason reason)
{
    if (c->close_deadline_ms > 0)
        return;
    c->close_code = code;
    c->close_why = why;
    c->close_deadline_ms = mono_ms() + CLOSE_GRACE_MS;
    c->close_reason = reason;
}

/* Queues an owed close frame once wslay's queue is empty; I/O thread. */
static void ws_close_flush(live_client *c)
{
    if (c->close_code != 0 && wslay_event_get_queued_msg_count(c->ws) == 0) {
        wslay_event_queue_close(c->ws, c->close_code, (const uint8_t *)c->close_why,
                                strlen(c->close_why));
        c->close_code = 0;
    }
}

/* A text message from the client: a subscription (with the token, when one is owed). */
static void on_text(live_client *c, const uint8_t *data, size_t len)
{
    sn_live *live = c->hub;
    json_error_t jerr;
    json_t *o = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *type = json_string_value(json_object_get(o, "type"));
    pthread_mutex_lock(&live->mu);
    bool authed = c->authed;
    pthread_mutex_unlock(&live->mu);
    char err[ERR_MAX];
    err[0] = '\0';
    live_filter f;
    memset(&f, 0, sizeof f);
    if (!json_is_object(o)) {
        snprintf(err, sizeof err, "a message is a JSON object");
    } else if (type == NULL || strcmp(type, "subscribe") != 0) {
        snprintf(err, sizeof err, "unknown message type (known: subscribe)");
    } else {
        const json_t *tok = json_object_get(o, "token");
        if (!authed && live->token_len > 0) {
            if (!json_is_string(tok) ||
                !token_ok(live, json_string_value(tok), json_string_length(tok))) {
                ws_text(c, json_pack("{s:s,s:s}", "type", "error", "error",
                                     tok ? "invalid token" : "a token is required"));
                ws_close(c, 1008, "token", SN_LIVE_CLOSED_AUTH);
                json_decref(o);
                return;
            }
        }
        char msg[ERR_MAX - 16] = ""; /* room for the "subscribe: " prefix */
        if (filter_add_json(&f, "service", json_object_get(o, "service"), msg, sizeof msg) != 0 ||
            filter_add_json(&f, "model", json_object_get(o, "model"), msg, sizeof msg) != 0 ||
            filter_add_json(&f, "severity", json_object_get(o, "severity"), msg, sizeof msg) != 0)
            snprintf(err, sizeof err, "subscribe: %s", msg);
    }
    json_decref(o);
    if (err[0] != '\0') {
        if (!authed && live->token_len > 0) {
            ws_text(c, json_pack("{s:s,s:s}", "type", "error", "error", "a token is required"));
            ws_close(c, 1008, "token", SN_LIVE_CLOSED_AUTH);
            return;
        }
        ws_text(c, json_pack("{s:s,s:s}", "type", "error", "error", err));
        return;
    }
    pthread_mutex_lock(&live->mu);
    c->filter = f;
    c->authed = true;
    pthread_mutex_unlock(&live->mu);
    ws_text(c, json_pack("{s:s,s:o}", "type", "subscribed", "filter", filter_json(&f)));
}

static void ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *ud)
{
    (void)ctx;
    live_client *c = ud;
    c->last_rx_ms = mono_ms();
    if (arg->opcode == WSLAY_TEXT_FRAME) {
        on_text(c, arg->msg, arg->msg_length);
    } else if (arg->opcode == WSLAY_BINARY_FRAME) {
        ws_text(c,
                json_pack("{s:s,s:s}", "type", "error", "error", "binary messages are not taken"));
        ws_close(c, 1003, "text only", SN_LIVE_CLOSED_PROTOCOL);
    }
    /* ping (answered by wslay), pong and close (answered by wslay) only count as activity */
}

/* ---------------------------------------------------------------- clients */

/* Frees a client that is not linked (backlog references must already be released). */
static void client_free(live_client *c)
{
    if (c == NULL)
        return;
    if (c->ws != NULL)
        wslay_event_context_free(c->ws);
    sn_http_upgraded_close(c->h);
    free(c->ring);
    free(c->extra);
    free(c);
}

void sn_live_adopt(sn_live *live, int fd, const uint8_t *extra, size_t extra_len,
                   sn_http_upgraded *h)
{
    static const struct wslay_event_callbacks cbs = {
        .recv_callback = ws_recv,
        .send_callback = ws_send,
        .on_msg_recv_callback = ws_on_msg,
    };
    live_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        sn_http_upgraded_close(h);
        goto out_count_refused;
    }
    c->hub = live;
    c->fd = fd;
    c->h = h;
    req_args a;
    if (read_request(live, &a, &c->authed) != 0) /* checked by the handshake already */
        goto out_free_client;
    c->filter = a.filter;
    c->ring = calloc(live->cfg.max_backlog_msgs, sizeof *c->ring);
    if (c->ring == NULL)
        goto out_free_client;
    if (extra_len > 0) {
        c->extra = malloc(extra_len);
        if (c->extra == NULL)
            goto out_free_client;
        memcpy(c->extra, extra, extra_len);
        c->extra_len = extra_len;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        goto out_free_client;
    if (wslay_event_context_server_init(&c->ws, &cbs, c) != 0) {
        c->ws = NULL;
        goto out_free_client;
    }
    wslay_event_config_set_max_recv_msg_length(c->ws, SN_LIVE_MSG_IN_MAX);
    c->connected_ms = c->last_rx_ms = mono_ms();
    ws_text(c, json_pack("{s:s,s:s,s:I,s:s}", "type", "hello", "version", live->version,
                         "heartbeat_ms", (json_int_t)live->cfg.heartbeat_ms, "auth",
                         c->authed ? "ok" : "required"));

    pthread_mutex_lock(&live->mu);
    if (live->stopping || live->nclients >= live->cfg.max_clients) {
        live->st.refused++;
        pthread_mutex_unlock(&live->mu);
        client_free(c);
        return;
    }
    c->next = live->clients;
    live->clients = c;
    live->nclients++;
    live->st.accepted++;
    pthread_mutex_unlock(&live->mu);
    sn_gauge_add(live->g_clients, 1);
    wake(live);
    return;

out_free_client:
    client_free(c);
out_count_refused:
    pthread_mutex_lock(&live->mu);
    live->st.refused++;
    pthread_mutex_unlock(&live->mu);
}

/* Under mu: releases a client's backlog. */
static void ring_clear(sn_live *live, live_client *c)
{
    while (c->count > 0) {
        msg_unref(c->ring[c->head]);
        c->ring[c->head] = NULL;
        c->head = (c->head + 1) % live->cfg.max_backlog_msgs;
        c->count--;
    }
    c->bytes = 0;
}

void sn_live_publish(sn_live *live, sn_alert_change change, const sn_alert *al)
{
    if (live == NULL || al == NULL || (unsigned)change > SN_ALERT_CHANGE_RESOLVED)
        return;
    pthread_mutex_lock(&live->mu);
    bool none = live->nclients == 0 || live->stopping;
    live->st.published++;
    pthread_mutex_unlock(&live->mu);
    if (none)
        return; /* nobody to render it for */

    json_t *o = json_pack("{s:s,s:s,s:o}", "type", "alert", "change", g_change_name[change],
                          "alert", sn_alert_to_json(al));
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    size_t len = text ? strlen(text) : 0;
    live_msg *m = text ? malloc(sizeof *m + len) : NULL;
    if (m == NULL) {
        free(text);
        return;
    }
    m->refs = 1;
    m->len = len;
    memcpy(m->data, text, len);
    free(text);

    bool woke = false;
    unsigned queued = 0;
    pthread_mutex_lock(&live->mu);
    for (live_client *c = live->clients; c != NULL; c = c->next) {
        if (!c->authed || c->drop || !filter_match(&c->filter, al))
            continue;
        if (c->count + 1 > live->cfg.max_backlog_msgs ||
            c->bytes + len > live->cfg.max_backlog_bytes) {
            mark_drop(c, SN_LIVE_CLOSED_SLOW);
            woke = true;
            continue;
        }
        c->ring[(c->head + c->count) % live->cfg.max_backlog_msgs] = m;
        c->count++;
        c->bytes += len;
        m->refs++;
        queued++;
        woke = true;
    }
    live->st.queued += queued;
    msg_unref(m);
    pthread_mutex_unlock(&live->mu);
    sn_counter_add(live->c_messages, queued);
    if (woke)
        wake(live);
}

/* ---------------------------------------------------------------- the I/O thread */

/* Unlinks and frees every client marked for a close; I/O thread. */
static void reap(sn_live *live)
{
    live_client *gone = NULL;
    pthread_mutex_lock(&live->mu);
    for (live_client **p = &live->clients; *p != NULL;) {
        live_client *c = *p;
        if (!c->drop) {
            p = &c->next;
            continue;
        }
        *p = c->next;
        live->nclients--;
        live->st.closed[c->reason]++;
        ring_clear(live, c);
        c->next = gone;
        gone = c;
    }
    pthread_mutex_unlock(&live->mu);
    while (gone != NULL) {
        live_client *c = gone;
        gone = c->next;
        sn_gauge_add(live->g_clients, -1);
        sn_counter_inc(live->c_closed[c->reason]);
        if (c->reason != SN_LIVE_CLOSED_PEER && c->reason != SN_LIVE_CLOSED_SHUTDOWN)
            sn_log_info("live feed client closed", SN_LOG_STR("reason", g_reason_name[c->reason]));
        client_free(c);
    }
}

/* Asks for c's close from the I/O thread. */
static void io_drop(sn_live *live, live_client *c, sn_live_close_reason reason)
{
    pthread_mutex_lock(&live->mu);
    mark_drop(c, reason);
    pthread_mutex_unlock(&live->mu);
}

/* Heartbeats, idle and auth timeouts and close deadlines of the n clients in who[] (those
 * polled this round; only this thread frees clients); then sends what is queued. The mutex is
 * held only to read and set flags, never around wslay or the socket. I/O thread. */
static void timers(sn_live *live, live_client **who, unsigned n, bool beat, int64_t now)
{
    char ts[40], text[96];
    struct wslay_event_msg hb = {WSLAY_TEXT_FRAME, (const uint8_t *)text, 0};
    if (beat) {
        if (sn_alert_format_time(wall_ns(), ts, sizeof ts) != 0)
            ts[0] = '\0';
        int k = snprintf(text, sizeof text, "{\"type\":\"heartbeat\",\"time\":\"%s\"}", ts);
        hb.msg_length = k > 0 && (size_t)k < sizeof text ? (size_t)k : 0;
    }
    for (unsigned i = 0; i < n; i++) {
        live_client *c = who[i];
        sn_live_close_reason why = SN_LIVE_CLOSED_COUNT;
        if (c->close_deadline_ms > 0 && now >= c->close_deadline_ms)
            why = c->close_reason;
        else if (now - c->last_rx_ms >= (int64_t)IDLE_HEARTBEATS * live->cfg.heartbeat_ms)
            why = SN_LIVE_CLOSED_IDLE;
        pthread_mutex_lock(&live->mu);
        if (why == SN_LIVE_CLOSED_COUNT && !c->authed &&
            now - c->connected_ms >= live->cfg.auth_timeout_ms)
            why = SN_LIVE_CLOSED_AUTH;
        if (why != SN_LIVE_CLOSED_COUNT)
            mark_drop(c, why);
        bool skip = c->drop;
        bool authed = c->authed;
        pthread_mutex_unlock(&live->mu);
        if (skip)
            continue;
        if (beat && authed && c->close_deadline_ms == 0 && hb.msg_length > 0) {
            struct wslay_event_msg ping = {WSLAY_PING, (const uint8_t *)"hb", 2};
            wslay_event_queue_msg(c->ws, &hb);
            wslay_event_queue_msg(c->ws, &ping);
        }
        ws_close_flush(c);
        if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0)
            io_drop(live, c, SN_LIVE_CLOSED_PEER);
    }
}

/* Moves backlog into wslay while its queue is short (under mu). */
static void feed(sn_live *live, live_client *c, uint64_t *sent)
{
    while (c->count > 0 && c->close_deadline_ms == 0 &&
           wslay_event_get_queued_msg_count(c->ws) < WSLAY_QUEUE_MAX) {
        live_msg *m = c->ring[c->head];
        struct wslay_event_msg wm = {WSLAY_TEXT_FRAME, (const uint8_t *)m->data, m->len};
        if (wslay_event_queue_msg(c->ws, &wm) != 0)
            break;
        c->ring[c->head] = NULL;
        c->head = (c->head + 1) % live->cfg.max_backlog_msgs;
        c->count--;
        c->bytes -= m->len;
        msg_unref(m);
        (*sent)++;
    }
}

static void *io_main(void *arg)
{
    sn_live *live = arg;
    unsigned cap = live->cfg.max_clients + 1;
    struct pollfd *pfd = calloc(cap, sizeof *pfd);
    live_client **who = calloc(cap, sizeof *who);
    int64_t next_beat = mono_ms() + live->cfg.heartbeat_ms;
    if (pfd == NULL || who == NULL) {
        sn_log_error("live feed: out of memory; the feed is off");
        pthread_mutex_lock(&live->mu);
        while (!live->stopping) {
            pthread_mutex_unlock(&live->mu);
            struct pollfd p = {live->efd, POLLIN, 0};
            poll(&p, 1, 1000);
            pthread_mutex_lock(&live->mu);
        }
        pthread_mutex_unlock(&live->mu);
        goto out_free_arrays;
    }
    for (;;) {
        reap(live);
        unsigned n = 0;
        int64_t soonest = next_beat; /* the next timer due */
        uint64_t sent = 0;
        pthread_mutex_lock(&live->mu);
        bool stopping = live->stopping;
        for (live_client *c = live->clients; c != NULL && n + 1 < cap; c = c->next) {
            if (stopping) { /* a last, non-blocking try at a "going away" close */
                wslay_event_queue_close(c->ws, 1001, (const uint8_t *)"shutdown", 8);
                wslay_event_send(c->ws);
                mark_drop(c, SN_LIVE_CLOSED_SHUTDOWN);
                continue;
            }
            feed(live, c, &sent);
            ws_close_flush(c);
            if (c->close_deadline_ms > 0 && c->close_deadline_ms < soonest)
                soonest = c->close_deadline_ms;
            if (!c->authed && c->connected_ms + live->cfg.auth_timeout_ms < soonest)
                soonest = c->connected_ms + live->cfg.auth_timeout_ms;
            short ev = 0;
            if (wslay_event_want_read(c->ws))
                ev |= POLLIN;
            if (wslay_event_want_write(c->ws))
                ev |= POLLOUT;
            pfd[n] = (struct pollfd){c->fd, ev, 0};
            who[n++] = c;
        }
        live->st.sent += sent;
        pthread_mutex_unlock(&live->mu);
        if (stopping) {
            reap(live);
            break;
        }
        pfd[n] = (struct pollfd){live->efd, POLLIN, 0};
        int64_t now = mono_ms();
        int64_t wait = soonest - now;
        if (wait < 0)
            wait = 0;
        int pr = poll(pfd, n + 1, (int)wait);
        if (pr < 0 && errno != EINTR)
            sn_log_error("live feed: poll failed", SN_LOG_ERRNO(-errno));
        if (pfd[n].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(live->efd, &v, sizeof v);
            (void)r;
        }
        for (unsigned i = 0; pr > 0 && i < n; i++) {
            live_client *c = who[i];
            short re = pfd[i].revents;
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                if (wslay_event_recv(c->ws) != 0) {
                    io_drop(live, c, SN_LIVE_CLOSED_PEER);
                    continue;
                }
            }
            if (re & POLLOUT || wslay_event_want_write(c->ws)) {
                if (wslay_event_send(c->ws) != 0) {
                    io_drop(live, c, SN_LIVE_CLOSED_PEER);
                    continue;
                }
            }
            if (!wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws))
                io_drop(live, c, c->close_deadline_ms > 0 ? c->close_reason : SN_LIVE_CLOSED_PEER);
        }
        now = mono_ms();
        bool beat = now >= next_beat;
        if (beat)
            next_beat = now + live->cfg.heartbeat_ms;
        timers(live, who, n, beat, now);
    }
out_free_arrays:
    free(pfd);
    free(who);
    return NULL;
}

/* ---------------------------------------------------------------- lifecycle */

int sn_live_create(const sn_live_config *cfg, sn_live **out, char *err, size_t errlen)
{
    *out = NULL;
    sn_live_config def;
    memset(&def, 0, sizeof def);
    if (cfg == NULL)
        cfg = &def;
    if (cfg->api_token != NULL && strlen(cfg->api_token) >= TOKEN_MAX) {
        set_err(err, errlen, "live: api_token longer than %d bytes", TOKEN_MAX - 1);
        return -EINVAL;
    }
    sn_live *live = calloc(1, sizeof *live);
    if (live == NULL) {
        set_err(err, errlen, "live: out of memory");
        return -ENOMEM;
    }
    int rc = pthread_mutex_init(&live->mu, NULL);
    if (rc != 0) {
        free(live);
        set_err(err, errlen, "live: %s", strerror(rc));
        return -rc;
    }
    live->efd = -1;
    live->cfg = *cfg;
    if (live->cfg.max_clients == 0)
        live->cfg.max_clients = SN_LIVE_DEFAULT_MAX_CLIENTS;
    if (live->cfg.max_backlog_msgs == 0)
        live->cfg.max_backlog_msgs = SN_LIVE_DEFAULT_BACKLOG_MSGS;
    if (live->cfg.max_backlog_bytes == 0)
        live->cfg.max_backlog_bytes = SN_LIVE_DEFAULT_BACKLOG_BYTES;
    if (live->cfg.heartbeat_ms == 0)
        live->cfg.heartbeat_ms = SN_LIVE_DEFAULT_HEARTBEAT_MS;
    if (live->cfg.auth_timeout_ms == 0)
        live->cfg.auth_timeout_ms = SN_LIVE_DEFAULT_AUTH_MS;
    if (cfg->api_token != NULL && cfg->api_token[0] != '\0') {
        live->token = strdup(cfg->api_token);
        if (live->token == NULL)
            goto out_oom;
        live->token_len = strlen(live->token);
    }
    live->version = strdup(cfg->version ? cfg->version : SENTINEL_VERSION);
    if (live->version == NULL)
        goto out_oom;
    live->cfg.api_token = live->token;
    live->cfg.version = live->version;

    if (cfg->metrics != NULL) {
        sn_metrics_family *fc = NULL, *fm = NULL, *fx = NULL;
        sn_metrics_desc dc = {.type = SN_METRICS_GAUGE,
                              .name = "sentinel_live_clients",
                              .help = "Live feed (/ws/realtime) clients connected."};
        sn_metrics_desc dm = {.type = SN_METRICS_COUNTER,
                              .name = "sentinel_live_messages_total",
                              .help = "Alert messages queued to live feed clients."};
        sn_metrics_desc dx = {.type = SN_METRICS_COUNTER,
                              .name = "sentinel_live_clients_closed_total",
                              .help = "Live feed clients closed, by reason (slow: backlog over "
                                      "the limit).",
                              .labels = {"reason"}};
        if ((rc = sn_metrics_register(cfg->metrics, &dc, &fc, err, errlen)) != 0 ||
            (rc = sn_metrics_register(cfg->metrics, &dm, &fm, err, errlen)) != 0 ||
            (rc = sn_metrics_register(cfg->metrics, &dx, &fx, err, errlen)) != 0)
            goto out_destroy_live;
        live->g_clients = sn_metrics_gauge(fc, NULL);
        live->c_messages = sn_metrics_counter(fm, NULL);
        for (int r = 0; r < SN_LIVE_CLOSED_COUNT; r++) {
            const char *v[1] = {g_reason_name[r]};
            live->c_closed[r] = sn_metrics_counter(fx, v);
        }
    }

    live->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (live->efd < 0) {
        rc = -errno;
        set_err(err, errlen, "live: eventfd: %s", strerror(errno));
        goto out_destroy_live;
    }
    rc = pthread_create(&live->thread, NULL, io_main, live);
    if (rc != 0) {
        set_err(err, errlen, "live: cannot start the I/O thread: %s", strerror(rc));
        rc = -rc;
        goto out_destroy_live;
    }
    live->thread_started = true;
    *out = live;
    return 0;

out_oom:
    set_err(err, errlen, "live: out of memory");
    rc = -ENOMEM;
out_destroy_live:
    sn_live_destroy(live);
    return rc;
}

void sn_live_shutdown(sn_live *live)
{
    if (live == NULL)
        return;
    pthread_mutex_lock(&live->mu);
    live->stopping = true;
    bool join = live->thread_started && !live->joined;
    live->joined = true;
    pthread_mutex_unlock(&live->mu);
    if (join) {
        wake(live);
        pthread_join(live->thread, NULL);
    }
}

void sn_live_stats_get(sn_live *live, sn_live_stats *out)
{
    pthread_mutex_lock(&live->mu);
    *out = live->st;
    out->clients = live->nclients;
    pthread_mutex_unlock(&live->mu);
}

void sn_live_destroy(sn_live *live)
{
    if (live == NULL)
        return;
    sn_live_shutdown(live);
    if (live->efd >= 0)
        close(live->efd);
    pthread_mutex_destroy(&live->mu);
    free(live->token);
    free(live->version);
    free(live);
}
