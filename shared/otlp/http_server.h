/*
 * http_server.h -- the OTLP/HTTP transport: POST /v1/traces, /v1/metrics and /v1/logs on
 * libmicrohttpd.
 *
 * The server reads one request body (identity or gzip, in application/x-protobuf or
 * application/json) into a bounded buffer, calls the program's sn_otlp_handler (receiver.h) on
 * one of its own threads, and answers per the handler's sn_otlp_result: 200 with an
 * Export*ServiceResponse in the request's format (partial success when rejected > 0), 400 with a
 * google.rpc.Status, 429/503 with Retry-After, 413, 500. Other media types and encodings get 415,
 * other methods 405 (with Allow), other paths 404 -- unless an extra route claims them, which
 * lets the admin endpoints or a REST API share the same server.
 *
 * Threads: libmicrohttpd's internal thread pool (`threads` workers, each polling its share of
 * the connections), so the thread count is fixed at start. The handler and the route callback
 * run on those threads, concurrently; they must be thread-safe and must not block for long.
 *
 * Size: the body is limited to max_body_bytes on the wire and again after gzip decompression.
 * A Content-Length over the limit is refused before the body is read; a body that crosses the
 * limit while arriving (chunked, or a gzip bomb) stops being buffered or inflated at once, the
 * rest of the upload is read and thrown away (at most another max_body_bytes, after which the
 * connection is closed) and the answer is 413. The handler never sees an oversized body.
 * (A refusal from the headers closes the connection with the body unread: a client that sends a
 * large body without "Expect: 100-continue" may see a reset instead of the 413.)
 *
 * Memory: with a budget (sn_http_server_config.budget) every request reserves its bytes before
 * holding them and is refused (503 + Retry-After) when they do not fit; see the field.
 */
#ifndef SN_OTLP_HTTP_SERVER_H
#define SN_OTLP_HTTP_SERVER_H

#include "otlp/receiver.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_HTTP_DEFAULT_MAX_BODY       (16u * 1024u * 1024u) /* bytes, wire and decompressed */
#define SN_HTTP_DEFAULT_CONNECTIONS    64u
#define SN_HTTP_DEFAULT_TIMEOUT_S      30u
#define SN_HTTP_DEFAULT_THREADS        2u
#define SN_HTTP_DEFAULT_BODY_WAIT_MS   5000u  /* longest wait for a body slot */
#define SN_HTTP_DEFAULT_BODY_TIME_MS   30000u /* a body's whole arrival, once it holds a slot */
#define SN_HTTP_REPLY_CONTENT_TYPE_MAX 64

#define SN_HTTP_REPLY_HEADERS_MAX 4u

typedef struct sn_http_server sn_http_server;

/* One extra response header of a route's reply. Both strings must stay valid until the server
 * has queued the answer (after the route returns): static strings, or strings owned by the
 * route's user data for the server's lifetime. */
typedef struct sn_http_header {
    const char *name; /* NULL: unused slot */
    const char *value;
} sn_http_header;

/* A connection taken over by a route after "101 Switching Protocols" (HTTP Upgrade, e.g. a
 * WebSocket). Opaque; released only with sn_http_upgraded_close(). */
typedef struct sn_http_upgraded sn_http_upgraded;

/* Called once on a server thread after the 101 answer went out: `fd` is the connection's socket
 * (owned by the server: never close it, read and write it freely), `extra` the `extra_len` bytes
 * the client sent after its request that the server already read (borrowed for the call). The
 * request's headers and query arguments are still readable (sn_http_request_header/args) during
 * the call. The callee owns `h` from now on and must call sn_http_upgraded_close(h) exactly once,
 * before the server stops. */
typedef void (*sn_http_upgrade_fn)(int fd, const uint8_t *extra, size_t extra_len,
                                   sn_http_upgraded *h, void *ud);

/* Closes an upgraded connection's socket and returns the connection to the server. Any thread. */
void sn_http_upgraded_close(sn_http_upgraded *h);

/* What an extra route answers. The server hands it in with status 200, content type
 * "text/plain; charset=utf-8" and no body. `body` must be malloc'd by the route (or NULL); the
 * server takes it over and frees it, whatever the outcome. */
typedef struct sn_http_reply {
    unsigned status;
    char content_type[SN_HTTP_REPLY_CONTENT_TYPE_MAX];
    char *body;
    size_t len;
    const char *allow;      /* optional Allow header value (a static string), e.g. with a 405 */
    unsigned retry_after_s; /* > 0: a Retry-After header with these seconds */
    sn_http_header headers[SN_HTTP_REPLY_HEADERS_MAX]; /* optional extra headers */
    /* true with status 101 (on a server configured with `upgrade`): the answer is "101
     * Switching Protocols" with `headers` (which must include Upgrade and "Connection:
     * Upgrade") and no body, after which the connection goes to the server's upgrade
     * callback. */
    bool upgrade;
} sn_http_reply;

/* An extra route: called for every request whose path is not an OTLP route, once its body
 * (bounded like any other) has arrived. `method` and `path` (without the query string) are
 * NUL-terminated; `body` is borrowed for the call. Returns false when the path is not the
 * route's (the server answers 404); true when it filled `reply`. Runs on server threads. */
typedef bool (*sn_http_route_fn)(const char *method, const char *path, const uint8_t *body,
                                 size_t len, sn_http_reply *reply, void *ud);

/* Inside a route callback (or an upgrade callback) only (on the thread running it): the value of
 * the request header `name` (case-insensitive), or NULL when absent or when called outside a route.
 * Valid until the route returns. */
const char *sn_http_request_header(const char *name);

/* Inside a route callback only: calls fn once per query-string argument, in request order, with
 * the percent-decoded key and value (value NULL for "?key" without '='), until fn returns false.
 * Returns the number of arguments visited, or -EPERM outside a route. The strings are valid
 * until the route returns. */
typedef bool (*sn_http_arg_fn)(const char *key, const char *value, void *ud);
int sn_http_request_args(sn_http_arg_fn fn, void *ud);

/* An optional memory budget shared with other transports (the sidecar's sidecar/memguard.h):
 * reserve(ud, more, held) -- may a request holding `held` bytes hold `more` besides? 0 reserves
 * them, -EAGAIN refuses for now (503 + Retry-After), -E2BIG for good (the request is larger
 * than the whole budget: 413); release(ud, bytes) gives them back. Any thread, fast, no
 * blocking. */
typedef struct sn_http_budget {
    int (*reserve)(void *ud, size_t more, size_t held);
    void (*release)(void *ud, size_t bytes);
    void *ud;
} sn_http_budget;

typedef struct sn_http_server_config {
    const char *listen;        /* "host:port", "[v6addr]:port" or ":port"; port 0 = any */
    size_t max_body_bytes;     /* 0: SN_HTTP_DEFAULT_MAX_BODY */
    unsigned max_connections;  /* 0: SN_HTTP_DEFAULT_CONNECTIONS */
    size_t max_buffered_bytes; /* body buffers of all requests at once (a body's until its
                                  handler or route returns); growing past it gets 503 +
                                  Retry-After (one request always fits); 0: no limit */
    /* OTLP requests whose bodies are read at once; past it a request waits before its body is
     * read (its connection is suspended and the body stays in the socket, so the client is held
     * back by TCP, as gRPC's stream limit does) until one ends, oldest first. Nothing is refused
     * for it -- unless it waits longer than body_wait_ms: then it is answered 503 +
     * Retry-After (its body read and thrown away, unless it awaits "100 Continue"), so clients that
     * hold every slot by sending slowly cannot stall the others. A request holding a slot whose
     * body has not arrived body_time_ms after it got it loses its connection (at its next bytes; a
     * silent one at the idle timeout), freeing the slot. 0: no limit. */
    unsigned max_bodies;
    unsigned body_wait_ms; /* 0: SN_HTTP_DEFAULT_BODY_WAIT_MS */
    unsigned body_time_ms; /* 0: SN_HTTP_DEFAULT_BODY_TIME_MS */
    /* Optional: called (on a server thread) once per request refused for waiting too long for
     * a slot (waited true), and once per connection closed for a body arriving too slowly. */
    void (*on_timeout)(void *ud, bool waited);
    void *timeout_ud;
    /* And their bytes at once (Content-Length; a body of unknown length counts as all of it):
     * past it a request waits as for max_bodies, but one body is always read. With request
     * sizes that vary, this holds a few large bodies at once and many small ones. 0: no byte
     * bound (max_bodies alone); used only with max_bodies. */
    size_t max_bodies_bytes;
    unsigned connection_timeout_s; /* idle connection timeout; 0: SN_HTTP_DEFAULT_TIMEOUT_S */
    unsigned threads;              /* worker threads; 0: SN_HTTP_DEFAULT_THREADS */
    sn_otlp_handler handler;       /* NULL: no OTLP routes, every path goes to `route` */
    void *handler_ud;
    sn_http_route_fn route; /* optional; required when there is no handler */
    void *route_ud;
    /* true: the server's own refusals of route requests (413 body too large, 400 bad gzip, 503
     * out of memory, 404 when the route declines) are JSON {"error":"..."} instead of text. */
    bool route_json_errors;
    /* Optional: lets routes answer with an HTTP Upgrade (sn_http_reply.upgrade); the upgraded
     * connections go to upgrade(..., upgrade_ud). */
    sn_http_upgrade_fn upgrade;
    void *upgrade_ud;
    /* Optional (reserve NULL: none). A request reserves its Content-Length and the decoder's
     * share (half of it for protobuf, twice it for JSON, which is parsed into a tree) from the
     * headers, before its body is read -- a gzip body twice that -- and more as its buffer grows
     * past it (chunked bodies, inflated gzip); released once the handler or route has returned,
     * before the answer is sent (or when the request ends, if sooner). A reservation that
     * does not fit answers 503 + Retry-After (413 when the request would not fit even alone): at
     * once when the client sent "Expect: 100-continue" (it then never sends the body), else after
     * reading and throwing away the body, which is never buffered. */
    sn_http_budget budget;
} sn_http_server_config;

/* Validates the configuration and copies it (the listen string included) into a new server,
 * which is not listening yet. Returns 0 and sets *out, or -EINVAL (bad listen address, neither
 * handler nor route, a limit out of range) / -ENOMEM with a message in err (errlen bytes, may be
 * NULL). The caller frees the server with sn_http_server_destroy(). */
int sn_http_server_create(const sn_http_server_config *cfg, sn_http_server **out, char *err,
                          size_t errlen);

/* Resolves and binds the listen address and starts the worker threads. Returns 0, or a negative
 * errno (-EADDRINUSE, -EACCES, -EADDRNOTAVAIL, ...; -EALREADY when started) with a message in
 * err. On failure nothing is left listening and start may be called again. */
int sn_http_server_start(sn_http_server *s, char *err, size_t errlen);

/* The bound TCP port once started (the real port when the configured one was 0); 0 before. */
uint16_t sn_http_server_port(const sn_http_server *s);

/* The body slots (max_bodies) as of the call: requests that hold one (reading their body or in
 * the handler) in *holding, requests waiting for one in *waiting. Both 0 without slots. Any
 * thread. */
void sn_http_server_slots(sn_http_server *s, unsigned *holding, unsigned *waiting);

/* Stops accepting, closes every connection and joins the worker threads. A handler call in
 * progress finishes first; requests not yet answered are dropped with their connection, which
 * OTLP clients retry. Safe to call when not started or already stopped. Not to be called from a
 * handler or route. */
void sn_http_server_stop(sn_http_server *s);

/* Stops the server if needed and frees it. NULL is allowed. */
void sn_http_server_destroy(sn_http_server *s);

#endif
