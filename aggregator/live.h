/*
 * live.h -- the aggregator's live feed, GET /ws/realtime (WebSocket, RFC 6455), see
 * docs/dashboard.md "Live feed".
 *
 * The API's route hands the upgrade request to sn_live_handshake (checks it, answers 101 with
 * Sec-WebSocket-Accept, or an error); the HTTP server then gives the socket to sn_live_adopt.
 * Frames are read and written with wslay; one I/O thread of the hub's own serves every client
 * (poll over the clients' sockets and an eventfd).
 *
 *   server -> client   {"type":"hello","version":"X.Y.Z","heartbeat_ms":N,"auth":"ok|required"}
 *                      {"type":"subscribed","filter":{"service":[...],"model":[...],
 *                                                     "severity":[...]}}
 *                      {"type":"alert","change":"fired|updated|escalated|resolved",
 *                       "alert":{...the alert JSON of contracts.md...}}
 *                      {"type":"heartbeat","time":"RFC3339"} (and a ping frame), every
 *                       heartbeat_ms
 *                      {"type":"error","error":"..."} before a close for a bad message
 *   client -> server   {"type":"subscribe","service":"a"|["a","b"],"model":...,"severity":...,
 *                       "token":"..."} -- absent or empty lists match everything
 *
 * Token. With a token configured, a client proves it with the `token` query parameter, an
 * "Authorization: Bearer" header, or the "token" of its first subscribe message (browsers
 * cannot set headers on a WebSocket). A wrong token in the request is answered 401; a client
 * that has not proven it gets nothing but the hello until it does, and is closed (1008) when its
 * first message does not carry the right token or none arrives within auth_timeout_ms.
 *
 * Threads and limits. sn_live_publish runs on the loop thread and never blocks: it renders the
 * message once, and under the hub's mutex appends a reference to the backlog of each matching
 * client -- a bounded ring (max_backlog_msgs messages and max_backlog_bytes bytes); a client
 * whose backlog would pass either limit is dropped (closed, counted) instead of slowing the
 * loop. The I/O thread moves backlog into wslay only while wslay's own queue is short, so the
 * ring is the client's real backlog. A client that sends nothing (not even the pong every
 * browser answers a ping with) for 3 heartbeats is closed as idle. At most max_clients at once;
 * more are answered 503.
 */
#ifndef SN_LIVE_H
#define SN_LIVE_H

#include "alerts.h"
#include "metrics.h"
#include "otlp/http_server.h"

#include <stdint.h>

#define SN_LIVE_PATH                  "/ws/realtime"
#define SN_LIVE_DEFAULT_MAX_CLIENTS   32u /* below the API server's 64 connections */
#define SN_LIVE_DEFAULT_BACKLOG_MSGS  256u
#define SN_LIVE_DEFAULT_BACKLOG_BYTES (1u << 20) /* 1 MiB */
#define SN_LIVE_DEFAULT_HEARTBEAT_MS  15000u
#define SN_LIVE_DEFAULT_AUTH_MS       10000u
#define SN_LIVE_FILTER_MAX            16u   /* values per filter field */
#define SN_LIVE_MSG_IN_MAX            4096u /* bytes of one client message */

typedef struct sn_live sn_live;

typedef struct sn_live_config {
    const char *api_token;     /* NULL or "": open; copied */
    unsigned max_clients;      /* 0: the default */
    unsigned max_backlog_msgs; /* per client; 0: the default */
    size_t max_backlog_bytes;  /* per client; 0: the default */
    unsigned heartbeat_ms;     /* 0: the default */
    unsigned auth_timeout_ms;  /* 0: the default */
    sn_metrics *metrics;       /* borrowed; NULL: no metrics */
    const char *version;       /* the hello's "version"; NULL: SENTINEL_VERSION */
} sn_live_config;

/* Why clients went away (sn_live_stats.closed[]). */
typedef enum sn_live_close_reason {
    SN_LIVE_CLOSED_PEER = 0, /* the client closed or its connection broke */
    SN_LIVE_CLOSED_SLOW,     /* backlog over the limit */
    SN_LIVE_CLOSED_IDLE,     /* nothing received for 3 heartbeats */
    SN_LIVE_CLOSED_AUTH,     /* no or a wrong token */
    SN_LIVE_CLOSED_PROTOCOL, /* a bad message or frame */
    SN_LIVE_CLOSED_SHUTDOWN, /* sn_live_shutdown */
    SN_LIVE_CLOSED_COUNT
} sn_live_close_reason;

typedef struct sn_live_stats {
    unsigned clients;                      /* connected now */
    uint64_t accepted;                     /* connections adopted */
    uint64_t refused;                      /* upgrades refused (limit, bad request, token) */
    uint64_t published;                    /* sn_live_publish calls */
    uint64_t queued;                       /* messages put in a client's backlog */
    uint64_t sent;                         /* messages handed to wslay for a client */
    uint64_t closed[SN_LIVE_CLOSED_COUNT]; /* clients closed, by reason */
} sn_live_stats;

/* Creates the hub and starts its I/O thread. Copies the configuration; registers
 * sentinel_live_clients, sentinel_live_messages_total and
 * sentinel_live_clients_closed_total{reason} in cfg->metrics when given. Returns 0 and sets
 * *out, or -EINVAL (token too long) / -ENOMEM / -EEXIST (metrics) / a thread or eventfd error
 * with a message in err. Free with sn_live_destroy. */
int sn_live_create(const sn_live_config *cfg, sn_live **out, char *err, size_t errlen);

/* Inside the HTTP server's route callback for SN_LIVE_PATH: checks the upgrade request (GET,
 * Upgrade: websocket, Connection: upgrade, Sec-WebSocket-Version: 13, a Sec-WebSocket-Key, the
 * token when given, the query's filter) and fills reply with the 101 answer (reply->upgrade
 * set) or a JSON error: 400, 401, 405, 426 (with Sec-WebSocket-Version: 13), 503 (full or
 * shutting down). */
void sn_live_handshake(sn_live *live, const char *method, sn_http_reply *reply);

/* The server's upgrade callback (sn_http_upgrade_fn) for connections sn_live_handshake
 * accepted: the hub takes `h` over (and closes it on every path, at once when it cannot take the
 * client). Reads the token and filter again from the request's query string. */
void sn_live_adopt(sn_live *live, int fd, const uint8_t *extra, size_t extra_len,
                   sn_http_upgraded *h);

/* Loop thread (any single thread): pushes one alert change to every subscribed client whose
 * filter matches. Never blocks on a client; a client over its backlog is dropped. Failures
 * (out of memory) are counted, not returned. No-op after sn_live_shutdown or with live NULL. */
void sn_live_publish(sn_live *live, sn_alert_change change, const sn_alert *al);

/* Closes every client (counted as shutdown), refuses new ones and joins the I/O thread. Must
 * run before the HTTP server stops. Idempotent; NULL is allowed. */
void sn_live_shutdown(sn_live *live);

/* A snapshot of the counters. */
void sn_live_stats_get(sn_live *live, sn_live_stats *out);

/* Shuts down if needed and frees the hub. NULL is allowed. */
void sn_live_destroy(sn_live *live);

/* Computes Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + the RFC 6455
 * GUID)) with GnuTLS. out must hold 29 bytes. Returns 0 or -EINVAL (key not 1..64 bytes) /
 * -EIO. Exposed for tests. */
int sn_live_accept_key(const char *key, char out[29]);

#endif
