/*
 * http_server.c -- OTLP/HTTP on libmicrohttpd (see http_server.h for the contract).
 *
 * One request goes through these states, kept in a sn_http_request that libmicrohttpd carries
 * for us between calls of access_cb() and that request_completed_cb() frees:
 *
 *   headers  -- first call: route, method, Content-Type, Content-Encoding and Content-Length are
 *               checked; a refusal is queued at once and the body is never read.
 *   body     -- one call per chunk: identity bytes are appended, gzip bytes are inflated, both
 *               into one buffer that grows geometrically up to max_body_bytes. Crossing the
 *               limit (wire or inflated) or a gzip error turns the request into "discarding":
 *               the buffer is freed and further chunks are only counted.
 *   complete -- last call: the handler (or the extra route) runs and its answer is queued.
 *
 * libmicrohttpd 0.9.75 cannot queue a response while a body is still arriving, which is why an
 * oversized chunked body is drained (bounded) rather than answered mid-upload.
 */
#include "otlp/http_server.h"

#include <microhttpd.h>
#include <zlib.h>

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define INITIAL_BUFFER  (16u * 1024u)
#define LISTEN_BACKLOG  128
#define STATUS_BODY_MAX 2048 /* a google.rpc.Status or response body: code + escaped message */

/* google.rpc.Code values used in Status bodies. */
enum {
    RPC_INVALID_ARGUMENT = 3,
    RPC_RESOURCE_EXHAUSTED = 8,
    RPC_INTERNAL = 13,
    RPC_UNAVAILABLE = 14
};

struct sn_http_server {
    sn_http_server_config cfg; /* cfg.listen points at listen_copy */
    char *listen_copy;
    char *host; /* NULL: any address */
    char port_str[8];
    struct MHD_Daemon *daemon;
    int listen_fd;
    uint16_t port;
    _Atomic size_t buffered; /* body buffer bytes of all requests (cfg.max_buffered_bytes) */
    /* Body slots (cfg.max_bodies, cfg.max_bodies_bytes), under slot_mu: requests holding one and
     * the bytes they count, and the requests that wait for one, suspended, in a ring of
     * max_connections entries (each connection carries at most one request). stopping: no more
     * waiting (the server is being stopped). */
    pthread_mutex_t slot_mu;
    unsigned bodies;
    size_t body_bytes;
    struct sn_http_request **waiting;
    unsigned wait_head, wait_count;
    bool stopping;
    /* The watchdog thread (with slots): answers the requests that waited body_wait_ms. It
     * sleeps on wd_cv (CLOCK_MONOTONIC) while nothing waits; wd_stop ends it. Under slot_mu. */
    pthread_t wd_thread;
    pthread_cond_t wd_cv;
    bool wd_started, wd_stop;
};

typedef enum req_kind { REQ_OTLP = 0, REQ_ROUTE } req_kind;

typedef enum req_fault {
    FAULT_NONE = 0,
    FAULT_TOO_LARGE, /* 413 */
    FAULT_BAD_GZIP,  /* 400 */
    FAULT_NO_MEMORY, /* 503, retryable */
    FAULT_BUSY,      /* 503, retryable: max_buffered_bytes reached */
    FAULT_MEMORY,    /* 503, retryable: over the memory budget (cfg.budget) */
    FAULT_WAIT       /* 503, retryable: waited body_wait_ms for a body slot */
} req_fault;

typedef struct sn_http_request {
    sn_http_server *srv; /* for the buffered-bytes budget */
    req_kind kind;
    sn_otlp_signal signal;
    sn_otlp_encoding encoding;
    bool gzip;
    bool z_ready; /* z was initialised: inflateEnd needed */
    bool z_ended; /* the current gzip member is complete */
    req_fault fault;
    size_t limit;
    size_t wire;    /* body bytes received */
    size_t drained; /* bytes received and thrown away after a fault */
    uint8_t *buf;   /* the (decompressed) body; freed by request_free() */
    size_t len;
    size_t cap;
    size_t declared;             /* Content-Length (0: none) */
    size_t reserved;             /* bytes of cfg.budget this request holds */
    bool slot;                   /* holds one of cfg.max_bodies (under srv->slot_mu) */
    size_t slot_bytes;           /* what it counts against cfg.max_bodies_bytes (slot_need) */
    bool waiting;                /* suspended until a slot is handed to it */
    bool expired;                /* waited body_wait_ms: resumed without a slot, refused */
    uint64_t wait_since_ms;      /* when it began to wait (monotonic) */
    uint64_t slot_since_ms;      /* when it got its slot (monotonic) */
    struct MHD_Connection *conn; /* while waiting */
    z_stream z;
} sn_http_request;

/* The connection whose route callback runs on this thread (NULL elsewhere), for
 * sn_http_request_header() and sn_http_request_args(). */
static _Thread_local struct MHD_Connection *t_route_conn;

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

/* Parses a decimal TCP port ("0".."65535"). Returns 0 or -1. */
static int parse_port(const char *s, uint16_t *out)
{
    unsigned long v = 0;
    if (*s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > 65535)
            return -1;
    }
    *out = (uint16_t)v;
    return 0;
}

/* True when a header value's media type (before any ';' parameters) is `type`, compared
 * without regard to case and surrounding blanks. */
static bool media_type_is(const char *value, const char *type)
{
    size_t n = strlen(type);
    while (*value == ' ' || *value == '\t')
        value++;
    if (strncasecmp(value, type, n) != 0)
        return false;
    value += n;
    while (*value == ' ' || *value == '\t')
        value++;
    return *value == '\0' || *value == ';';
}

/* True when a Content-Encoding value is exactly the token `coding` (blanks around allowed). */
static bool coding_is(const char *value, const char *coding)
{
    return media_type_is(value, coding) && strchr(value, ';') == NULL;
}

/* Copies at most dstsize-1 printable ASCII bytes of src into dst (others become '?'), so a
 * client's header can be quoted in a message safely. */
static void copy_printable(char *dst, size_t dstsize, const char *src)
{
    size_t i = 0;
    for (; src[i] != '\0' && i + 1 < dstsize; i++)
        dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
    dst[i] = '\0';
}

/* Appends a protobuf varint to out (at least 10 bytes free). Returns the bytes written. */
static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

/* Appends `s` as JSON string contents (without quotes) to out[*pos..cap), escaping quotes,
 * backslashes and control bytes. Stops (truncates) when out is full, never splitting an escape.
 * UTF-8 passes through unchanged. */
static void put_json_escaped(char *out, size_t cap, size_t *pos, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[7];
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

/* ---------------------------------------------------------------- bodies */

/* Encodes a google.rpc.Status {code = 1, message = 2} as protobuf into out (STATUS_BODY_MAX).
 * Returns the length. The message is truncated to fit. */
static size_t encode_status_pb(uint8_t *out, int code, const char *message)
{
    size_t n = 0;
    size_t mlen = strnlen(message, STATUS_BODY_MAX - 32);
    if (code != 0) {
        out[n++] = 0x08; /* field 1, varint */
        n += put_varint(out + n, (uint64_t)code);
    }
    if (mlen > 0) {
        out[n++] = 0x12; /* field 2, length-delimited */
        n += put_varint(out + n, mlen);
        memcpy(out + n, message, mlen);
        n += mlen;
    }
    return n;
}

/* Encodes {"code":N,"message":"..."} into out (STATUS_BODY_MAX). Returns the length. */
static size_t encode_status_json(char *out, int code, const char *message)
{
    int n = snprintf(out, STATUS_BODY_MAX, "{\"code\":%d,\"message\":\"", code);
    size_t pos = (n > 0) ? (size_t)n : 0;
    put_json_escaped(out, STATUS_BODY_MAX - 2, &pos, message);
    out[pos++] = '"';
    out[pos++] = '}';
    return pos;
}

/* Encodes an Export*ServiceResponse: empty on full success, else partial_success (field 1)
 * with rejected_<items> (field 1) and error_message (field 2). Protobuf or JSON (lowerCamelCase
 * names, int64 as a string per the proto3 JSON mapping). Returns the length written to out
 * (STATUS_BODY_MAX). */
static size_t encode_export_response(uint8_t *out, sn_otlp_encoding enc, sn_otlp_signal signal,
                                     int64_t rejected, const char *message)
{
    static const char *const json_names[SN_OTLP_SIGNAL_COUNT] = {
        "rejectedSpans", "rejectedDataPoints", "rejectedLogRecords"};
    if (rejected < 0)
        rejected = 0;
    size_t mlen = strnlen(message, STATUS_BODY_MAX - 64);
    bool partial = rejected > 0 || mlen > 0;

    if (enc == SN_OTLP_JSON) {
        char *o = (char *)out;
        if (!partial) {
            memcpy(o, "{}", 2);
            return 2;
        }
        int n = snprintf(o, STATUS_BODY_MAX, "{\"partialSuccess\":{\"%s\":\"%lld\"",
                         json_names[signal], (long long)rejected);
        size_t pos = (n > 0) ? (size_t)n : 0;
        if (mlen > 0) {
            static const char key[] = ",\"errorMessage\":\"";
            memcpy(o + pos, key, sizeof key - 1);
            pos += sizeof key - 1;
            put_json_escaped(o, STATUS_BODY_MAX - 3, &pos, message);
            o[pos++] = '"';
        }
        o[pos++] = '}';
        o[pos++] = '}';
        return pos;
    }

    if (!partial)
        return 0;
    uint8_t inner[STATUS_BODY_MAX];
    size_t n = 0;
    if (rejected > 0) {
        inner[n++] = 0x08; /* rejected_<items> = 1, varint */
        n += put_varint(inner + n, (uint64_t)rejected);
    }
    if (mlen > 0) {
        inner[n++] = 0x12; /* error_message = 2 */
        n += put_varint(inner + n, mlen);
        memcpy(inner + n, message, mlen);
        n += mlen;
    }
    size_t m = 0;
    out[m++] = 0x0a; /* partial_success = 1, length-delimited */
    m += put_varint(out + m, n);
    memcpy(out + m, inner, n);
    return m + n;
}

/* ---------------------------------------------------------------- queuing answers */

/* Queues a response with a copied body and optional Retry-After (seconds > 0) and Allow
 * headers. Returns MHD_NO only when libmicrohttpd could not take it (the connection closes). */
static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status,
                              const char *content_type, const void *body, size_t len,
                              unsigned retry_after_s, const char *allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    if (content_type != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (retry_after_s > 0) {
        char v[16];
        snprintf(v, sizeof v, "%u", retry_after_s);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (allow != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result q = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return q;
}

/* A route's answer: answer() plus the reply's extra headers. */
static enum MHD_Result answer_reply(struct MHD_Connection *conn, const sn_http_reply *reply)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(reply->body ? reply->len : 0,
                                                             reply->body ? reply->body : (void *)"",
                                                             MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, reply->content_type);
    if (reply->retry_after_s > 0) {
        char v[16];
        snprintf(v, sizeof v, "%u", reply->retry_after_s);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (reply->allow != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, reply->allow);
    for (unsigned i = 0; i < SN_HTTP_REPLY_HEADERS_MAX; i++) {
        if (reply->headers[i].name != NULL && reply->headers[i].value != NULL)
            MHD_add_response_header(r, reply->headers[i].name, reply->headers[i].value);
    }
    enum MHD_Result q = MHD_queue_response(conn, reply->status, r);
    MHD_destroy_response(r);
    return q;
}

/* The server's own refusal of a route request: {"error":"..."} when route_json_errors is set
 * (`text` is a fixed message without quotes or backslashes), else plain text. */
static enum MHD_Result answer_route_error(const sn_http_server *s, struct MHD_Connection *conn,
                                          unsigned status, const char *text, unsigned retry_after_s)
{
    if (!s->cfg.route_json_errors) {
        char line[160];
        int n = snprintf(line, sizeof line, "%s\n", text);
        return answer(conn, status, "text/plain; charset=utf-8", line, (size_t)n, retry_after_s,
                      NULL);
    }
    char body[192];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}", text);
    return answer(conn, status, "application/json", body, (size_t)n, retry_after_s, NULL);
}

/* A plain-text answer for requests whose format is unknown (404, 405, 415). */
static enum MHD_Result answer_text(struct MHD_Connection *conn, unsigned status, const char *text,
                                   const char *allow)
{
    return answer(conn, status, "text/plain; charset=utf-8", text, strlen(text), 0, allow);
}

/* A google.rpc.Status answer in the request's format. */
static enum MHD_Result answer_status(struct MHD_Connection *conn, unsigned status,
                                     sn_otlp_encoding enc, int code, const char *message,
                                     unsigned retry_after_s)
{
    uint8_t body[STATUS_BODY_MAX];
    if (enc == SN_OTLP_JSON) {
        size_t n = encode_status_json((char *)body, code, message);
        return answer(conn, status, "application/json", body, n, retry_after_s, NULL);
    }
    size_t n = encode_status_pb(body, code, message);
    return answer(conn, status, "application/x-protobuf", body, n, retry_after_s, NULL);
}

/* Retry-After in whole seconds, rounded up, at least 1. */
static unsigned retry_seconds(uint32_t ms)
{
    unsigned s = (unsigned)((ms + 999u) / 1000u);
    if (ms > UINT32_MAX - 999u)
        s = UINT32_MAX / 1000u + 1u;
    return s == 0 ? 1 : s;
}

/* Turns the handler's result into the HTTP answer. */
static enum MHD_Result answer_result(struct MHD_Connection *conn, const sn_http_request *req,
                                     const sn_otlp_result *res)
{
    const char *msg = res->message;
    switch (res->outcome) {
    case SN_OTLP_OK: {
        uint8_t body[STATUS_BODY_MAX];
        size_t n = encode_export_response(body, req->encoding, req->signal, res->rejected, msg);
        const char *ct =
            req->encoding == SN_OTLP_JSON ? "application/json" : "application/x-protobuf";
        return answer(conn, MHD_HTTP_OK, ct, body, n, 0, NULL);
    }
    case SN_OTLP_INVALID:
        return answer_status(conn, MHD_HTTP_BAD_REQUEST, req->encoding, RPC_INVALID_ARGUMENT,
                             msg[0] ? msg : "invalid request", 0);
    case SN_OTLP_RETRY:
        return answer_status(conn, MHD_HTTP_SERVICE_UNAVAILABLE, req->encoding, RPC_UNAVAILABLE,
                             msg[0] ? msg : "temporarily unavailable, retry later",
                             retry_seconds(res->retry_after_ms));
    case SN_OTLP_RESOURCE_RETRY:
        return answer_status(conn, MHD_HTTP_TOO_MANY_REQUESTS, req->encoding,
                             RPC_RESOURCE_EXHAUSTED, msg[0] ? msg : "rate limited, retry later",
                             retry_seconds(res->retry_after_ms));
    case SN_OTLP_TOO_LARGE:
        return answer_status(conn, MHD_HTTP_CONTENT_TOO_LARGE, req->encoding,
                             RPC_RESOURCE_EXHAUSTED, msg[0] ? msg : "request too large", 0);
    case SN_OTLP_INTERNAL:
    default:
        return answer_status(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, req->encoding, RPC_INTERNAL,
                             msg[0] ? msg : "internal error", 0);
    }
}

/* ---------------------------------------------------------------- request bodies */

/* ---------------------------------------------------------------- body slots */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* What slot_take decided. */
typedef enum slot_state { SLOT_HELD = 0, SLOT_WAIT, SLOT_EXPIRED } slot_state;

/* What req counts against cfg.max_bodies_bytes: its Content-Length, or for a body of unknown
 * length (chunked) the whole bound, so it is read alone. */
static size_t slot_need(const sn_http_server *s, const sn_http_request *req)
{
    return req->declared > 0 ? req->declared : s->cfg.max_bodies_bytes;
}

/* Whether a body of `need` bytes may be read now beside the bodies being read (under slot_mu):
 * fewer than cfg.max_bodies, and their bytes within cfg.max_bodies_bytes -- but one body is
 * always read, whatever its size. */
static bool slot_fits(const sn_http_server *s, size_t need)
{
    if (s->bodies >= s->cfg.max_bodies)
        return false;
    return s->cfg.max_bodies_bytes == 0 || s->bodies == 0 ||
           (s->body_bytes <= s->cfg.max_bodies_bytes &&
            need <= s->cfg.max_bodies_bytes - s->body_bytes);
}

/* Gives req a slot (under slot_mu). */
static void slot_grant(sn_http_server *s, sn_http_request *req)
{
    req->slot_bytes = slot_need(s, req);
    s->bodies++;
    s->body_bytes += req->slot_bytes;
    req->slot = true;
    req->slot_since_ms = now_ms();
}

/* Hands slots to the requests that waited longest, oldest first, as long as the next one fits,
 * resuming them (under slot_mu). */
static void grant_waiting(sn_http_server *s)
{
    while (s->wait_count > 0 && slot_fits(s, slot_need(s, s->waiting[s->wait_head]))) {
        sn_http_request *next = s->waiting[s->wait_head];
        s->wait_head = (s->wait_head + 1) % s->cfg.max_connections;
        s->wait_count--;
        slot_grant(s, next);
        /* Under slot_mu (the order slot_take suspends in): once slots_stop holds the lock, every
         * connection handed a slot is already flagged for resumption, so MHD_stop_daemon never
         * meets one still suspended. */
        MHD_resume_connection(next->conn);
    }
}

/* Takes a body slot for req, or queues it and suspends conn (a call of the access handler, the
 * only place libmicrohttpd allows that). Requests get slots in the order they arrive: one that
 * fits waits while older ones wait. Returns SLOT_HELD when req holds a slot (also without a
 * limit, and while stopping), SLOT_WAIT when it waits: it is resumed holding one, or
 * SLOT_EXPIRED when the watchdog gave up its wait (to be refused). */
static slot_state slot_take(sn_http_server *s, sn_http_request *req, struct MHD_Connection *conn)
{
    if (s->cfg.max_bodies == 0)
        return SLOT_HELD;
    slot_state st = SLOT_HELD;
    pthread_mutex_lock(&s->slot_mu);
    if (req->expired) {
        req->waiting = false;
        st = SLOT_EXPIRED;
    } else if (req->waiting && !req->slot) {
        st = SLOT_WAIT; /* still queued (libmicrohttpd does not call a suspended connection) */
    } else if (req->slot) {
        req->waiting = false; /* handed over while it waited */
    } else if ((s->wait_count == 0 && slot_fits(s, slot_need(s, req))) || s->stopping ||
               s->wait_count >= s->cfg.max_connections) {
        slot_grant(s, req);
        req->waiting = false;
    } else {
        s->waiting[(s->wait_head + s->wait_count) % s->cfg.max_connections] = req;
        if (s->wait_count++ == 0)
            pthread_cond_signal(&s->wd_cv); /* the watchdog sleeps while nothing waits */
        req->waiting = true;
        req->wait_since_ms = now_ms();
        req->conn = conn;
        /* Under slot_mu, so no release can resume conn before it is suspended. (libmicrohttpd
         * takes its own lock inside; it calls us under none of its locks, so slot_mu is always
         * taken first.) */
        MHD_suspend_connection(conn);
        st = SLOT_WAIT;
    }
    pthread_mutex_unlock(&s->slot_mu);
    return st;
}

/* The watchdog: resumes, without a slot (expired), every request that has waited
 * body_wait_ms -- the oldest are at the head of the ring -- so that it is refused with a
 * retryable status instead of waiting for clients that hold the slots by sending slowly. */
static void *slot_watchdog(void *arg)
{
    sn_http_server *s = arg;
    pthread_mutex_lock(&s->slot_mu);
    while (!s->wd_stop) {
        if (s->wait_count == 0) {
            pthread_cond_wait(&s->wd_cv, &s->slot_mu);
            continue;
        }
        sn_http_request *head = s->waiting[s->wait_head];
        uint64_t due = head->wait_since_ms + s->cfg.body_wait_ms, now = now_ms();
        if (now < due) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + (due - now) * 1000000u;
            ts.tv_sec += (time_t)(ns / 1000000000u);
            ts.tv_nsec = (long)(ns % 1000000000u);
            pthread_cond_timedwait(&s->wd_cv, &s->slot_mu, &ts);
            continue;
        }
        s->wait_head = (s->wait_head + 1) % s->cfg.max_connections;
        s->wait_count--;
        head->expired = true;
        MHD_resume_connection(head->conn); /* under slot_mu, as in slot_release */
        grant_waiting(s); /* the next ones may fit where it did not (max_bodies_bytes) */
    }
    pthread_mutex_unlock(&s->slot_mu);
    return NULL;
}

/* Gives req's slot back, and hands slots to the requests that waited longest, oldest first, as
 * long as the next one fits, resuming them. A request still waiting (its client gone) leaves
 * the queue. */
static void slot_release(sn_http_server *s, sn_http_request *req)
{
    if (s->cfg.max_bodies == 0 || (!req->slot && !req->waiting))
        return;
    pthread_mutex_lock(&s->slot_mu);
    if (req->waiting) {
        for (unsigned i = 0; i < s->wait_count; i++) {
            unsigned at = (s->wait_head + i) % s->cfg.max_connections;
            if (s->waiting[at] != req)
                continue;
            for (unsigned j = i; j + 1 < s->wait_count; j++)
                s->waiting[(s->wait_head + j) % s->cfg.max_connections] =
                    s->waiting[(s->wait_head + j + 1) % s->cfg.max_connections];
            s->wait_count--;
            break;
        }
        req->waiting = false;
    }
    if (req->slot) {
        req->slot = false;
        s->bodies--;
        s->body_bytes -= req->slot_bytes;
        req->slot_bytes = 0;
    }
    grant_waiting(s);
    pthread_mutex_unlock(&s->slot_mu);
}

/* Stops all waiting: every queued request is resumed holding a slot (over the limit), and no
 * request waits from now on, so libmicrohttpd can be stopped with none suspended. */
static void slots_stop(sn_http_server *s)
{
    if (s->cfg.max_bodies == 0)
        return;
    pthread_mutex_lock(&s->slot_mu);
    s->stopping = true;
    while (s->wait_count > 0) {
        sn_http_request *next = s->waiting[s->wait_head];
        s->wait_head = (s->wait_head + 1) % s->cfg.max_connections;
        s->wait_count--;
        slot_grant(s, next);
        MHD_resume_connection(next->conn); /* under slot_mu, as in slot_release */
    }
    pthread_mutex_unlock(&s->slot_mu);
}

/* Makes the request's share of the memory budget `want` bytes (growing only). Returns 0 (also
 * without a budget), or the budget's refusal: -EAGAIN (not now), -E2BIG (never). */
static int request_budget(sn_http_request *req, size_t want)
{
    const sn_http_budget *b = &req->srv->cfg.budget;
    if (b->reserve == NULL || want <= req->reserved)
        return 0;
    int rc = b->reserve(b->ud, want - req->reserved, req->reserved);
    if (rc != 0)
        return rc == -E2BIG ? -E2BIG : -EAGAIN;
    req->reserved = want;
    return 0;
}

/* The budget a body buffer of `cap` bytes stands for: the buffer and the decoder's memory (a
 * JSON document is parsed into a tree about twice its size, protobuf into events about half). */
static size_t budget_for(const sn_http_request *req, size_t cap)
{
    if (cap > SIZE_MAX / 3)
        return SIZE_MAX;
    return req->encoding == SN_OTLP_JSON ? 3 * cap : cap + cap / 2;
}

/* Gives the request's share of the memory budget back. */
static void request_unbudget(sn_http_request *req)
{
    if (req->reserved > 0)
        req->srv->cfg.budget.release(req->srv->cfg.budget.ud, req->reserved);
    req->reserved = 0;
}

/* Frees a request and everything it holds. NULL is allowed. */
static void request_free(sn_http_request *req)
{
    if (req == NULL)
        return;
    if (req->z_ready)
        inflateEnd(&req->z);
    if (req->cap > 0)
        atomic_fetch_sub(&req->srv->buffered, req->cap);
    request_unbudget(req);
    slot_release(req->srv, req);
    free(req->buf);
    free(req);
}

/* Frees the request's body buffer and gives back what it held: its share of
 * max_buffered_bytes and of the memory budget. */
static void request_drop_body(sn_http_request *req)
{
    if (req->cap > 0)
        atomic_fetch_sub(&req->srv->buffered, req->cap);
    request_unbudget(req);
    free(req->buf);
    req->buf = NULL;
    req->len = req->cap = 0;
}

/* Marks a request as failed: the body is dropped now and the rest of the upload discarded. */
static void request_fault(sn_http_request *req, req_fault fault)
{
    req->fault = fault;
    request_drop_body(req);
}

/* Makes room for `need` bytes in the body buffer, doubling from INITIAL_BUFFER and never past
 * the request's limit, nor the server's max_buffered_bytes over all requests (the growth is
 * charged first), nor the memory budget (cfg.budget: the buffer and half again for decoding).
 * Returns 0, -E2BIG when need exceeds the limit, -EBUSY over the server's max_buffered_bytes,
 * -ENOSPC over the memory budget, -ENOMEM. */
static int request_reserve(sn_http_request *req, size_t need)
{
    if (need <= req->cap)
        return 0;
    if (need > req->limit)
        return -E2BIG;
    size_t cap = req->cap ? req->cap : INITIAL_BUFFER;
    while (cap < need)
        cap = (cap > req->limit / 2) ? req->limit : cap * 2;
    if (!req->gzip && req->declared >= need)
        cap = req->declared; /* an identity body of known length: exactly that, at once */
    if (cap > req->limit)
        cap = req->limit;
    int brc = request_budget(req, budget_for(req, cap));
    if (brc != 0)
        return brc == -E2BIG ? -E2BIG : -ENOSPC;
    size_t grow = cap - req->cap, budget = req->srv->cfg.max_buffered_bytes;
    size_t before = atomic_fetch_add(&req->srv->buffered, grow);
    if (budget > 0 && before + grow > budget && before > req->cap) { /* others hold bytes */
        atomic_fetch_sub(&req->srv->buffered, grow);
        return -EBUSY;
    }
    uint8_t *nb = realloc(req->buf, cap);
    if (nb == NULL) {
        atomic_fetch_sub(&req->srv->buffered, grow);
        return -ENOMEM;
    }
    req->buf = nb;
    req->cap = cap;
    return 0;
}

/* Appends identity body bytes. Sets a fault instead of failing. */
static void request_append(sn_http_request *req, const char *data, size_t n)
{
    int rc = request_reserve(req, req->len + n);
    if (rc != 0) {
        request_fault(req, rc == -E2BIG    ? FAULT_TOO_LARGE
                           : rc == -EBUSY  ? FAULT_BUSY
                           : rc == -ENOSPC ? FAULT_MEMORY
                                           : FAULT_NO_MEMORY);
        return;
    }
    memcpy(req->buf + req->len, data, n);
    req->len += n;
}

/* Inflates gzip body bytes into the buffer. Output beyond the limit is never stored: once the
 * buffer is full at the limit, one scratch byte tells whether inflate has more to give, which
 * makes the body too large. Concatenated gzip members are accepted. Sets a fault on error. */
static void request_inflate(sn_http_request *req, const char *data, size_t n)
{
    req->z.next_in = (Bytef *)(uintptr_t)data;
    req->z.avail_in = (uInt)n;
    for (;;) {
        if (req->z_ended) {
            if (req->z.avail_in == 0)
                return;
            if (inflateReset(&req->z) != Z_OK) {
                request_fault(req, FAULT_BAD_GZIP);
                return;
            }
            req->z_ended = false;
        }
        uint8_t scratch;
        bool at_limit = false;
        if (req->len == req->cap) {
            int rc = request_reserve(req, req->len + 1);
            if (rc == -ENOMEM || rc == -EBUSY || rc == -ENOSPC) {
                request_fault(req, rc == -EBUSY    ? FAULT_BUSY
                                   : rc == -ENOSPC ? FAULT_MEMORY
                                                   : FAULT_NO_MEMORY);
                return;
            }
            at_limit = rc != 0;
        }
        if (at_limit) {
            req->z.next_out = &scratch;
            req->z.avail_out = 1;
        } else {
            req->z.next_out = req->buf + req->len;
            req->z.avail_out = (uInt)(req->cap - req->len);
        }
        int zrc = inflate(&req->z, Z_NO_FLUSH);
        if (at_limit) {
            if (req->z.avail_out == 0) {
                request_fault(req, FAULT_TOO_LARGE);
                return;
            }
        } else {
            req->len = req->cap - req->z.avail_out;
        }
        if (zrc == Z_STREAM_END) {
            req->z_ended = true;
            continue;
        }
        if (zrc == Z_BUF_ERROR)
            return; /* no progress possible: needs more input */
        if (zrc != Z_OK) {
            request_fault(req, FAULT_BAD_GZIP);
            return;
        }
        if (req->z.avail_in == 0 && req->z.avail_out > 0)
            return;
    }
}

/* ---------------------------------------------------------------- libmicrohttpd callbacks */

/* Maps a path to an OTLP signal. Returns false for other paths. */
static bool otlp_route(const char *url, sn_otlp_signal *signal)
{
    static const char *const paths[SN_OTLP_SIGNAL_COUNT] = {"/v1/traces", "/v1/metrics",
                                                            "/v1/logs"};
    for (int i = 0; i < SN_OTLP_SIGNAL_COUNT; i++) {
        if (strcmp(url, paths[i]) == 0) {
            *signal = (sn_otlp_signal)i;
            return true;
        }
    }
    return false;
}

/* True when the client waits for "100 Continue" before sending its body. */
static bool expects_continue(struct MHD_Connection *conn)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
    return v != NULL && strncasecmp(v, "100-continue", 12) == 0;
}

/* The refusal of an OTLP request that waited body_wait_ms for a body slot: 503 + Retry-After. */
static enum MHD_Result answer_wait(struct MHD_Connection *conn, sn_otlp_encoding enc)
{
    return answer_status(conn, MHD_HTTP_SERVICE_UNAVAILABLE, enc, RPC_UNAVAILABLE,
                         "receiver busy: no request body slot came free in time, retry later", 1);
}

/* The retryable refusal of a request over the memory budget: 503 + Retry-After. */
static enum MHD_Result answer_memory(sn_http_server *s, struct MHD_Connection *conn, bool is_otlp,
                                     sn_otlp_encoding enc)
{
    if (!is_otlp)
        return answer_route_error(s, conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                                  "server over its memory limit", 1);
    return answer_status(conn, MHD_HTTP_SERVICE_UNAVAILABLE, enc, RPC_UNAVAILABLE,
                         "receiver over its memory limit, retry later", 1);
}

static enum MHD_Result start_body(sn_http_server *s, struct MHD_Connection *conn,
                                  sn_http_request *req, void **req_cls);

/* First call of a request: everything decidable from the headers. Either queues a refusal
 * (*req_cls stays NULL) or allocates the request state. */
static enum MHD_Result begin_request(sn_http_server *s, struct MHD_Connection *conn,
                                     const char *url, const char *method, void **req_cls)
{
    sn_otlp_signal signal = SN_OTLP_TRACES;
    bool is_otlp = s->cfg.handler != NULL && otlp_route(url, &signal);
    if (!is_otlp && s->cfg.route == NULL)
        return answer_text(conn, MHD_HTTP_NOT_FOUND, "not found\n", NULL);
    if (is_otlp && strcmp(method, MHD_HTTP_METHOD_POST) != 0)
        return answer_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                           "method not allowed: OTLP/HTTP takes POST\n", MHD_HTTP_METHOD_POST);

    sn_otlp_encoding enc = SN_OTLP_PROTOBUF;
    if (is_otlp) {
        const char *ct =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (ct != NULL && media_type_is(ct, "application/x-protobuf")) {
            enc = SN_OTLP_PROTOBUF;
        } else if (ct != NULL && media_type_is(ct, "application/json")) {
            enc = SN_OTLP_JSON;
        } else {
            char quoted[64], text[160];
            copy_printable(quoted, sizeof quoted, ct ? ct : "(none)");
            snprintf(text, sizeof text,
                     "unsupported Content-Type '%s': use application/x-protobuf or "
                     "application/json\n",
                     quoted);
            return answer_text(conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, text, NULL);
        }
    }

    bool gzip = false;
    const char *ce =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (ce != NULL && (coding_is(ce, "gzip") || coding_is(ce, "x-gzip"))) {
        gzip = true;
    } else if (ce != NULL && !coding_is(ce, "identity")) {
        char quoted[64], text[160];
        copy_printable(quoted, sizeof quoted, ce);
        snprintf(text, sizeof text, "unsupported Content-Encoding '%s': use gzip or identity\n",
                 quoted);
        return answer_text(conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, text, NULL);
    }

    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    size_t declared = 0; /* Content-Length, 0 when absent */
    if (cl != NULL) {
        unsigned long long v = 0;
        bool over = false;
        for (const char *p = cl; *p >= '0' && *p <= '9'; p++) {
            v = v * 10 + (unsigned long long)(*p - '0');
            if (v > s->cfg.max_body_bytes) {
                over = true;
                break;
            }
        }
        if (over) {
            if (is_otlp)
                return answer_status(conn, MHD_HTTP_CONTENT_TOO_LARGE, enc, RPC_RESOURCE_EXHAUSTED,
                                     "request body larger than the server's limit", 0);
            return answer_route_error(s, conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large",
                                      0);
        }
        declared = (size_t)v;
    }

    sn_http_request *req = calloc(1, sizeof *req);
    if (req == NULL)
        return MHD_NO;
    req->srv = s;
    req->kind = is_otlp ? REQ_OTLP : REQ_ROUTE;
    req->signal = signal;
    req->encoding = enc;
    req->gzip = gzip;
    req->limit = s->cfg.max_body_bytes;
    req->declared = declared;
    *req_cls = req;
    /* An OTLP body waits for a slot (cfg.max_bodies) before anything is reserved for it. */
    if (is_otlp && (cl == NULL || declared > 0) && slot_take(s, req, conn) != SLOT_HELD)
        return MHD_YES;
    return start_body(s, conn, req, req_cls);
}

/* Once req may read its body (a slot, when there are slots): reserves its memory and prepares
 * gzip. Either queues a refusal (freeing req and clearing *req_cls when the client waits for
 * "100 Continue" and so sends no body) or leaves req to read the body. */
static enum MHD_Result start_body(sn_http_server *s, struct MHD_Connection *conn,
                                  sn_http_request *req, void **req_cls)
{
    bool is_otlp = req->kind == REQ_OTLP, gzip = req->gzip;
    sn_otlp_encoding enc = req->encoding;
    size_t declared = req->declared;
    /* The body and the decoded data (a gzip body's output: at least twice the wire bytes),
     * reserved before a byte of the body is read. */
    int brc = request_budget(
        req, budget_for(req, gzip && declared < SIZE_MAX / 2 ? 2 * declared : declared));
    if (brc != 0) {
        req->fault = brc == -E2BIG ? FAULT_TOO_LARGE : FAULT_MEMORY;
        if (expects_continue(conn)) {
            *req_cls = NULL;
            request_free(req); /* the client sends no body: answer now */
            if (brc == -E2BIG)
                return is_otlp ? answer_status(conn, MHD_HTTP_CONTENT_TOO_LARGE, enc,
                                               RPC_RESOURCE_EXHAUSTED,
                                               "request body larger than the receiver's "
                                               "memory limit allows",
                                               0)
                               : answer_route_error(s, conn, MHD_HTTP_CONTENT_TOO_LARGE,
                                                    "request body too large", 0);
            return answer_memory(s, conn, is_otlp, enc);
        }
        return MHD_YES; /* the body is read and thrown away, then refused */
    }
    if (gzip) {
        if (inflateInit2(&req->z, 16 + MAX_WBITS) != Z_OK) {
            *req_cls = NULL;
            request_free(req);
            return MHD_NO;
        }
        req->z_ready = true;
    }
    return MHD_YES;
}

/* libmicrohttpd's upgrade handler: hands the socket to the server's upgrade callback, with
 * the request's headers and arguments readable during the call. */
static void upgrade_cb(void *cls, struct MHD_Connection *conn, void *req_cls, const char *extra,
                       size_t extra_len, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    (void)req_cls;
    const sn_http_server *s = cls;
    t_route_conn = conn;
    s->cfg.upgrade((int)sock, (const uint8_t *)extra, extra_len, (sn_http_upgraded *)urh,
                   s->cfg.upgrade_ud);
    t_route_conn = NULL;
}

void sn_http_upgraded_close(sn_http_upgraded *h)
{
    if (h != NULL)
        MHD_upgrade_action((struct MHD_UpgradeResponseHandle *)h, MHD_UPGRADE_ACTION_CLOSE);
}

/* A route's 101 answer: the reply's headers, no body; upgrade_cb takes the connection. */
static enum MHD_Result answer_upgrade(sn_http_server *s, struct MHD_Connection *conn,
                                      const sn_http_reply *reply)
{
    struct MHD_Response *r = MHD_create_response_for_upgrade(upgrade_cb, s);
    if (r == NULL)
        return MHD_NO;
    for (unsigned i = 0; i < SN_HTTP_REPLY_HEADERS_MAX; i++) {
        if (reply->headers[i].name != NULL && reply->headers[i].value != NULL)
            MHD_add_response_header(r, reply->headers[i].name, reply->headers[i].value);
    }
    enum MHD_Result q = MHD_queue_response(conn, MHD_HTTP_SWITCHING_PROTOCOLS, r);
    MHD_destroy_response(r);
    return q;
}

/* Last call of a request: answers a fault, or runs the handler / route and answers for it. */
static enum MHD_Result finish_request(sn_http_server *s, struct MHD_Connection *conn,
                                      const char *url, const char *method, sn_http_request *req)
{
    static const uint8_t empty[1] = {0};
    if (req->fault == FAULT_NONE && req->gzip && req->wire > 0 && !req->z_ended)
        req->fault = FAULT_BAD_GZIP; /* truncated stream */
    if (req->fault == FAULT_NONE && req->gzip && req->wire == 0)
        req->fault = FAULT_BAD_GZIP;

    if (req->kind == REQ_ROUTE) {
        switch (req->fault) {
        case FAULT_TOO_LARGE:
            return answer_route_error(s, conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large",
                                      0);
        case FAULT_BAD_GZIP:
            return answer_route_error(s, conn, MHD_HTTP_BAD_REQUEST, "invalid gzip body", 0);
        case FAULT_NO_MEMORY:
            return answer_route_error(s, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory", 1);
        case FAULT_BUSY:
            return answer_route_error(s, conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                                      "server busy: too many request bytes in progress", 1);
        case FAULT_MEMORY:
            return answer_memory(s, conn, false, req->encoding);
        case FAULT_WAIT: /* routes take no body slot */
        case FAULT_NONE:
            break;
        }
        sn_http_reply reply = {.status = MHD_HTTP_OK};
        snprintf(reply.content_type, sizeof reply.content_type, "text/plain; charset=utf-8");
        t_route_conn = conn;
        bool found = s->cfg.route(method, url, req->buf ? req->buf : empty, req->len, &reply,
                                  s->cfg.route_ud);
        t_route_conn = NULL;
        request_drop_body(req); /* as for OTLP requests below */
        if (!found) {
            free(reply.body);
            return answer_route_error(s, conn, MHD_HTTP_NOT_FOUND, "not found", 0);
        }
        reply.content_type[sizeof reply.content_type - 1] = '\0';
        if (reply.upgrade && reply.status == MHD_HTTP_SWITCHING_PROTOCOLS &&
            s->cfg.upgrade != NULL) {
            free(reply.body);
            return answer_upgrade(s, conn, &reply);
        }
        enum MHD_Result q = answer_reply(conn, &reply);
        free(reply.body);
        return q;
    }

    switch (req->fault) {
    case FAULT_TOO_LARGE:
        return answer_status(conn, MHD_HTTP_CONTENT_TOO_LARGE, req->encoding,
                             RPC_RESOURCE_EXHAUSTED,
                             req->gzip ? "request body larger than the server's limit after "
                                         "decompression"
                                       : "request body larger than the server's limit",
                             0);
    case FAULT_BAD_GZIP:
        return answer_status(conn, MHD_HTTP_BAD_REQUEST, req->encoding, RPC_INVALID_ARGUMENT,
                             "invalid or truncated gzip body", 0);
    case FAULT_NO_MEMORY:
        return answer_status(conn, MHD_HTTP_SERVICE_UNAVAILABLE, req->encoding, RPC_UNAVAILABLE,
                             "out of memory, retry later", 1);
    case FAULT_BUSY:
        return answer_status(conn, MHD_HTTP_SERVICE_UNAVAILABLE, req->encoding, RPC_UNAVAILABLE,
                             "receiver busy: too many request bytes in progress, retry later", 1);
    case FAULT_MEMORY:
        return answer_memory(s, conn, true, req->encoding);
    case FAULT_WAIT:
        return answer_wait(conn, req->encoding);
    case FAULT_NONE:
        break;
    }
    sn_otlp_result res;
    memset(&res, 0, sizeof res);
    s->cfg.handler(req->signal, req->encoding, req->buf ? req->buf : empty, req->len, &res,
                   s->cfg.handler_ud);
    slot_release(s, req); /* the next body may be read while this answer goes out */
    /* The body's bytes are free again before the answer goes out (not only once the request
     * completes, after it is sent): a client that has its answer finds them back in
     * max_buffered_bytes and the memory budget. */
    request_drop_body(req);
    res.message[sizeof res.message - 1] = '\0';
    return answer_result(conn, req, &res);
}

const char *sn_http_request_header(const char *name)
{
    if (t_route_conn == NULL || name == NULL)
        return NULL;
    return MHD_lookup_connection_value(t_route_conn, MHD_HEADER_KIND, name);
}

typedef struct arg_walk {
    sn_http_arg_fn fn;
    void *ud;
    int n;
} arg_walk;

/* libmicrohttpd's iterator over GET arguments, forwarding to the caller's function. */
static enum MHD_Result arg_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                              const char *value)
{
    (void)kind;
    arg_walk *w = cls;
    w->n++;
    return w->fn(key, value, w->ud) ? MHD_YES : MHD_NO;
}

int sn_http_request_args(sn_http_arg_fn fn, void *ud)
{
    if (t_route_conn == NULL || fn == NULL)
        return -EPERM;
    arg_walk w = {.fn = fn, .ud = ud, .n = 0};
    MHD_get_connection_values(t_route_conn, MHD_GET_ARGUMENT_KIND, arg_cb, &w);
    return w.n;
}

/* libmicrohttpd's access handler: called for the headers, each body chunk and the end. */
static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **req_cls)
{
    (void)version;
    sn_http_server *s = cls;
    sn_http_request *req = *req_cls;
    if (req == NULL)
        return begin_request(s, conn, url, method, req_cls);
    if (req->waiting) {
        /* Resumed holding a slot (or, should libmicrohttpd call while suspended, not yet: the
         * data stays unread), or after waiting too long: refused as from the headers (the
         * body unread, the connection closed after the answer; req freed by the completion). */
        slot_state st = slot_take(s, req, conn);
        if (st == SLOT_WAIT)
            return MHD_YES;
        if (st == SLOT_EXPIRED) {
            if (s->cfg.on_timeout != NULL)
                s->cfg.on_timeout(s->cfg.timeout_ud, true);
            req->fault = FAULT_WAIT;
            if (expects_continue(conn)) { /* the client sends no body: answer now */
                sn_otlp_encoding enc = req->encoding;
                *req_cls = NULL;
                request_free(req);
                return answer_wait(conn, enc);
            }
            return MHD_YES; /* the body is read and thrown away (no slot, no buffer), then
                             * refused: the client gets the 503, not a reset */
        }
        enum MHD_Result q = start_body(s, conn, req, req_cls);
        if (q != MHD_YES || *req_cls == NULL)
            return q;
        /* A call without data right after the resume repeats the headers' call (the one that
         * was suspended), not the end of the body: the body is read next. Were it the end (an
         * empty chunked body), libmicrohttpd calls again. */
        if (*upload_data_size == 0)
            return MHD_YES;
    }

    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->fault != FAULT_NONE) {
            req->drained += n;
            /* Bounded discard: a client that keeps sending loses its connection. */
            return req->drained > req->limit ? MHD_NO : MHD_YES;
        }
        if (req->slot && now_ms() - req->slot_since_ms > s->cfg.body_time_ms) {
            /* Too slow: the slot goes to the next request, the connection is closed. */
            if (s->cfg.on_timeout != NULL)
                s->cfg.on_timeout(s->cfg.timeout_ud, false);
            request_fault(req, FAULT_NO_MEMORY);
            slot_release(s, req);
            return MHD_NO;
        }
        req->wire += n;
        if (req->wire > req->limit) {
            request_fault(req, FAULT_TOO_LARGE);
            req->drained = n;
            return MHD_YES;
        }
        if (req->gzip)
            request_inflate(req, upload_data, n);
        else
            request_append(req, upload_data, n);
        return MHD_YES;
    }
    return finish_request(s, conn, url, method, req);
}

/* libmicrohttpd's completion callback: frees the request state, whatever happened. */
static void request_completed_cb(void *cls, struct MHD_Connection *conn, void **req_cls,
                                 enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    request_free(*req_cls);
    *req_cls = NULL;
}

/* ---------------------------------------------------------------- lifecycle */

/* Splits "host:port", "[v6]:port" or ":port" into s->host (NULL for any) and s->port_str.
 * Returns 0 or -EINVAL with a message. */
static int parse_listen(sn_http_server *s, const char *listen, char *err, size_t errlen)
{
    const char *colon = strrchr(listen, ':');
    if (colon == NULL) {
        set_err(err, errlen, "listen address '%s' is not host:port", listen);
        return -EINVAL;
    }
    uint16_t port;
    if (parse_port(colon + 1, &port) != 0) {
        set_err(err, errlen, "listen address '%s' has a bad port", listen);
        return -EINVAL;
    }
    snprintf(s->port_str, sizeof s->port_str, "%u", (unsigned)port);
    const char *h = listen;
    size_t hlen = (size_t)(colon - listen);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    } else if (memchr(h, ':', hlen) != NULL) {
        set_err(err, errlen, "listen address '%s': put an IPv6 address in brackets", listen);
        return -EINVAL;
    }
    if (hlen == 0 || (hlen == 1 && h[0] == '*'))
        return 0;
    s->host = strndup(h, hlen);
    if (s->host == NULL) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

int sn_http_server_create(const sn_http_server_config *cfg, sn_http_server **out, char *err,
                          size_t errlen)
{
    int rc;
    *out = NULL;
    if (cfg == NULL || (cfg->handler == NULL && cfg->route == NULL) || cfg->listen == NULL) {
        set_err(err, errlen, "HTTP server needs a listen address and a handler or a route");
        return -EINVAL;
    }
    sn_http_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->listen_fd = -1;
    s->cfg = *cfg;
    pthread_mutex_init(&s->slot_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wd_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (s->cfg.body_wait_ms == 0)
        s->cfg.body_wait_ms = SN_HTTP_DEFAULT_BODY_WAIT_MS;
    if (s->cfg.body_time_ms == 0)
        s->cfg.body_time_ms = SN_HTTP_DEFAULT_BODY_TIME_MS;
    if (s->cfg.max_body_bytes == 0)
        s->cfg.max_body_bytes = SN_HTTP_DEFAULT_MAX_BODY;
    if (s->cfg.max_connections == 0)
        s->cfg.max_connections = SN_HTTP_DEFAULT_CONNECTIONS;
    if (s->cfg.connection_timeout_s == 0)
        s->cfg.connection_timeout_s = SN_HTTP_DEFAULT_TIMEOUT_S;
    if (s->cfg.threads == 0)
        s->cfg.threads = SN_HTTP_DEFAULT_THREADS;
    if (s->cfg.max_body_bytes > (size_t)1 << 30 || s->cfg.threads > 256 ||
        s->cfg.max_connections < s->cfg.threads || s->cfg.max_connections > 65536) {
        set_err(err, errlen,
                "OTLP/HTTP limits out of range (body <= 1 GiB, threads <= 256, "
                "threads <= connections <= 65536)");
        rc = -EINVAL;
        goto out_free_server;
    }
    if (s->cfg.budget.reserve != NULL && s->cfg.budget.release == NULL) {
        set_err(err, errlen, "HTTP server: a memory budget needs reserve and release");
        rc = -EINVAL;
        goto out_free_server;
    }
    if (s->cfg.max_bodies > 0) {
        s->waiting = calloc(s->cfg.max_connections, sizeof *s->waiting);
        if (s->waiting == NULL) {
            set_err(err, errlen, "out of memory");
            rc = -ENOMEM;
            goto out_free_server;
        }
    }
    s->listen_copy = strdup(cfg->listen);
    if (s->listen_copy == NULL) {
        set_err(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out_free_server;
    }
    s->cfg.listen = s->listen_copy;
    rc = parse_listen(s, s->listen_copy, err, errlen);
    if (rc != 0)
        goto out_free_server;
    *out = s;
    return 0;

out_free_server:
    sn_http_server_destroy(s);
    return rc;
}

/* Resolves the listen address and binds a non-blocking listening socket to the first address
 * that works. Returns the fd, or a negative errno with a message. */
static int bind_listener(sn_http_server *s, int *family, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(s->host, s->port_str, &hints, &res);
    if (gai != 0) {
        set_err(err, errlen, "cannot resolve '%s': %s", s->cfg.listen, gai_strerror(gai));
        return -EADDRNOTAVAIL;
    }
    int last = -EADDRNOTAVAIL;
    int fd = -1;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, LISTEN_BACKLOG) == 0) {
            *family = ai->ai_family;
            break;
        }
        last = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        set_err(err, errlen, "cannot listen on '%s': %s", s->cfg.listen, strerror(-last));
        return last;
    }
    return fd;
}

int sn_http_server_start(sn_http_server *s, char *err, size_t errlen)
{
    if (s->daemon != NULL) {
        set_err(err, errlen, "OTLP/HTTP server already started");
        return -EALREADY;
    }
    int family = AF_INET;
    int fd = bind_listener(s, &family, err, errlen);
    if (fd < 0)
        return fd;

    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    uint16_t port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ITC;
    if (family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (s->cfg.upgrade != NULL)
        flags |= MHD_ALLOW_UPGRADE;
    if (s->cfg.max_bodies > 0)
        flags |= MHD_ALLOW_SUSPEND_RESUME;
    struct MHD_OptionItem pool[] = {
        {s->cfg.threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, s->cfg.threads, NULL},
        {MHD_OPTION_END, 0, NULL}};
    s->daemon =
        MHD_start_daemon(flags, 0, NULL, NULL, access_cb, s, MHD_OPTION_LISTEN_SOCKET,
                         (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned)s->cfg.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
                         (unsigned)s->cfg.connection_timeout_s, MHD_OPTION_NOTIFY_COMPLETED,
                         request_completed_cb, (void *)s, MHD_OPTION_ARRAY, pool, MHD_OPTION_END);
    if (s->daemon == NULL) {
        close(fd);
        set_err(err, errlen, "cannot start the HTTP server on '%s'", s->cfg.listen);
        return -EIO;
    }
    s->listen_fd = fd;
    s->port = port;
    if (s->cfg.max_bodies > 0) {
        int trc = pthread_create(&s->wd_thread, NULL, slot_watchdog, s);
        if (trc != 0) {
            sn_http_server_stop(s);
            set_err(err, errlen, "cannot start the OTLP/HTTP body-slot thread: %s", strerror(trc));
            return -trc;
        }
        pthread_setname_np(s->wd_thread, "sn-http-slots");
        s->wd_started = true;
    }
    return 0;
}

uint16_t sn_http_server_port(const sn_http_server *s)
{
    return s->daemon != NULL ? s->port : 0;
}

void sn_http_server_slots(sn_http_server *s, unsigned *holding, unsigned *waiting)
{
    pthread_mutex_lock(&s->slot_mu);
    *holding = (unsigned)s->bodies;
    *waiting = (unsigned)s->wait_count;
    pthread_mutex_unlock(&s->slot_mu);
}

void sn_http_server_stop(sn_http_server *s)
{
    if (s == NULL || s->daemon == NULL)
        return;
    /* No MHD_quiesce_daemon() first: on an epoll daemon with a thread pool (MHD_USE_AUTO picks
     * epoll on Linux) it removes the listening socket from each worker's epoll set while the
     * worker, seeing the daemon quiesced, may remove it too, and libmicrohttpd 0.9.75 aborts the
     * process when it loses that race ("Failed to remove listen FD from epoll set"). Nothing
     * needs it: once slots_stop() has run no connection is suspended any more nor will be, and
     * MHD_stop_daemon() stops accepting and closes the listening socket itself. */
    slots_stop(s); /* libmicrohttpd must not be stopped with connections suspended */
    if (s->wd_started) {
        pthread_mutex_lock(&s->slot_mu);
        s->wd_stop = true;
        pthread_cond_signal(&s->wd_cv);
        pthread_mutex_unlock(&s->slot_mu);
        pthread_join(s->wd_thread, NULL);
        s->wd_started = false;
        s->wd_stop = false;
    }
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    pthread_mutex_lock(&s->slot_mu);
    s->stopping = false; /* every request has ended: none holds or waits for a slot */
    assert(s->bodies == 0 && s->body_bytes == 0 && s->wait_count == 0);
    pthread_mutex_unlock(&s->slot_mu);
    s->listen_fd = -1; /* closed by MHD_stop_daemon() */
    s->port = 0;
}

void sn_http_server_destroy(sn_http_server *s)
{
    if (s == NULL)
        return;
    sn_http_server_stop(s);
    pthread_cond_destroy(&s->wd_cv);
    pthread_mutex_destroy(&s->slot_mu);
    free(s->waiting);
    free(s->host);
    free(s->listen_copy);
    free(s);
}
