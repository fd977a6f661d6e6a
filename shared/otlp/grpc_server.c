/*
 * grpc_server.c -- the OTLP/gRPC transport: the three OTLP Export methods on the generic unary
 * gRPC server (grpc_unary.h). This layer maps an sn_otlp_result to a gRPC status and encodes the
 * Export*ServiceResponse; calls, limits, compression, threads and shutdown live in grpc_unary.c.
 * See grpc_server.h and docs/otlp-receiver.md.
 */
#include "otlp/grpc_server.h"

#include "grpc_unary.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SN_OTLP_RESPONSE_MAX 640 /* an Export*ServiceResponse with partial_success */

static const char *const sn_methods[SN_OTLP_SIGNAL_COUNT] = {
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
};

struct sn_grpc_server {
    sn_grpc_unary *unary;
    sn_otlp_handler handler;
    void *handler_ud;
    _Atomic uint64_t st_outcomes[SN_OTLP_INTERNAL + 1];
};

/* Appends a base-128 varint to out[*len..cap); returns false when it does not fit. */
static bool put_varint(uint8_t *out, size_t cap, size_t *len, uint64_t v)
{
    do {
        if (*len >= cap)
            return false;
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        out[(*len)++] = (uint8_t)(b | (v != 0 ? 0x80 : 0));
    } while (v != 0);
    return true;
}

/* Encodes Export{Trace,Metrics,Logs}ServiceResponse{partial_success = 1 {rejected_* = 1,
 * error_message = 2}} -- the three signals share the field numbers. Returns the length (0 for
 * the empty response, and 0 if it does not fit in cap). */
static size_t encode_partial_success(uint8_t *out, size_t cap, int64_t rejected, const char *msg)
{
    uint8_t inner[SN_OTLP_RESPONSE_MAX];
    size_t ilen = 0, olen = 0, mlen = strlen(msg);
    bool fits = true;

    if (rejected <= 0 && mlen == 0)
        return 0;
    if (rejected > 0)
        fits = put_varint(inner, sizeof inner, &ilen, 1u << 3) &&
               put_varint(inner, sizeof inner, &ilen, (uint64_t)rejected);
    if (fits && mlen > 0) {
        fits = put_varint(inner, sizeof inner, &ilen, (2u << 3) | 2u) &&
               put_varint(inner, sizeof inner, &ilen, mlen) && mlen <= sizeof inner - ilen;
        if (fits) {
            memcpy(inner + ilen, msg, mlen);
            ilen += mlen;
        }
    }
    fits = fits && put_varint(out, cap, &olen, (1u << 3) | 2u) &&
           put_varint(out, cap, &olen, ilen) && ilen <= cap - olen;
    if (!fits)
        return 0;
    memcpy(out + olen, inner, ilen);
    return olen + ilen;
}

/* A deferred OTLP call: what sn_otlp_later.finish needs to answer it. */
typedef struct otlp_later {
    sn_otlp_later base; /* first: the handler sees &base */
    sn_grpc_server *srv;
    sn_grpc_pending *pending;
} otlp_later;

static void fill_reply(sn_grpc_server *s, const sn_otlp_result *res, sn_grpc_reply *reply);

/* sn_otlp_later.finish: maps the result and answers the call; frees the later. Any thread. */
static void otlp_finish(sn_otlp_later *later, const sn_otlp_result *res)
{
    otlp_later *l = (otlp_later *)later;
    uint8_t resp[SN_OTLP_RESPONSE_MAX];
    sn_grpc_reply reply;
    memset(&reply, 0, sizeof reply);
    reply.response = resp;
    reply.response_cap = sizeof resp;
    fill_reply(l->srv, res, &reply);
    sn_grpc_unary_finish(l->pending, &reply);
    free(l);
}

/* The unary server's handler: runs the OTLP handler and maps its outcome (status table in
 * docs/otlp-receiver.md), or leaves the answer to the OTLP handler's later->finish. */
static void otlp_unary_handler(unsigned method, const uint8_t *body, size_t len,
                               sn_grpc_reply *reply, void *ud)
{
    sn_grpc_server *s = ud;
    sn_otlp_result res;
    memset(&res, 0, sizeof res);
    otlp_later *l = NULL;
    if (reply->later != NULL && (l = malloc(sizeof *l)) != NULL) {
        l->base.finish = otlp_finish;
        l->srv = s;
        l->pending = reply->later;
        res.later = &l->base;
    }
    s->handler((sn_otlp_signal)method, SN_OTLP_PROTOBUF, body, len, &res, s->handler_ud);
    if (l != NULL && res.deferred) {
        reply->deferred = true; /* l belongs to the handler now, and may be gone already */
        return;
    }
    free(l);
    fill_reply(s, &res, reply);
}

/* Turns an OTLP result into the gRPC reply (status, message, RetryInfo, partial success) and
 * counts the outcome. */
static void fill_reply(sn_grpc_server *s, const sn_otlp_result *src, sn_grpc_reply *reply)
{
    const sn_otlp_result res = *src;
    if ((unsigned)res.outcome <= SN_OTLP_INTERNAL)
        atomic_fetch_add(&s->st_outcomes[res.outcome], 1);

    size_t mlen = strnlen(res.message, sizeof res.message);
    if (mlen >= sizeof reply->message)
        mlen = sizeof reply->message - 1;
    char msg[sizeof reply->message];
    memcpy(msg, res.message, mlen);
    msg[mlen] = '\0';
    const char *fallback = "internal error";

    reply->retry_after_ms = res.retry_after_ms;
    switch (res.outcome) {
    case SN_OTLP_OK:
        reply->code = SN_GRPC_OK;
        reply->response_len =
            encode_partial_success(reply->response, reply->response_cap, res.rejected, msg);
        return;
    case SN_OTLP_INVALID:
        reply->code = SN_GRPC_INVALID_ARGUMENT;
        fallback = "invalid request";
        break;
    case SN_OTLP_RETRY:
        reply->code = SN_GRPC_UNAVAILABLE;
        reply->retry = true;
        fallback = "try again later";
        break;
    case SN_OTLP_RESOURCE_RETRY:
        reply->code = SN_GRPC_RESOURCE_EXHAUSTED;
        reply->retry = true;
        fallback = "rate limited";
        break;
    case SN_OTLP_TOO_LARGE:
        reply->code = SN_GRPC_RESOURCE_EXHAUSTED;
        fallback = "request too large";
        break;
    case SN_OTLP_INTERNAL:
    default:
        reply->code = SN_GRPC_INTERNAL;
        break;
    }
    snprintf(reply->message, sizeof reply->message, "%s", msg[0] != '\0' ? msg : fallback);
}

void sn_grpc_server_config_init(sn_grpc_server_config *cfg)
{
    sn_grpc_unary_config u;
    sn_grpc_unary_config_init(&u);
    memset(cfg, 0, sizeof *cfg);
    cfg->listen = "127.0.0.1:4317";
    cfg->max_message_bytes = u.max_message_bytes;
    cfg->max_calls = u.max_calls;
    cfg->max_queued_bytes = u.max_queued_bytes;
    cfg->max_streams = u.max_streams;
    cfg->max_held_bytes = SN_GRPC_DEFAULT_HELD_BYTES;
    cfg->window_bytes = u.window_bytes;
    cfg->busy_retry_ms = u.busy_retry_ms;
    cfg->accept_zstd = true;
}

int sn_grpc_server_create(const sn_grpc_server_config *cfg, sn_grpc_server **out, char *err,
                          size_t errlen)
{
    *out = NULL;
    if (cfg->handler == NULL) {
        snprintf(err, errlen, "otlp grpc: no handler");
        return -EINVAL;
    }
    sn_grpc_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "otlp grpc: out of memory");
        return -ENOMEM;
    }
    s->handler = cfg->handler;
    s->handler_ud = cfg->handler_ud;

    sn_grpc_unary_config u;
    sn_grpc_unary_config_init(&u);
    u.name = "otlp grpc";
    u.listen = cfg->listen;
    u.methods = sn_methods;
    u.nmethods = SN_OTLP_SIGNAL_COUNT;
    u.max_message_bytes = cfg->max_message_bytes;
    u.max_calls = cfg->max_calls;
    u.max_queued_bytes = cfg->max_queued_bytes;
    u.max_streams = cfg->max_streams;
    u.max_held_bytes = cfg->max_held_bytes;
    u.window_bytes = cfg->window_bytes;
    u.max_reply_bytes = SN_OTLP_RESPONSE_MAX;
    u.busy_retry_ms = cfg->busy_retry_ms;
    u.accept_zstd = cfg->accept_zstd;
    u.allow_deferred = cfg->allow_deferred;
    u.handler = otlp_unary_handler;
    u.handler_ud = s;
    u.budget = cfg->budget;
    memcpy(u.stage_seconds, cfg->stage_seconds, sizeof u.stage_seconds);
    u.inline_max_bytes = cfg->inline_max_bytes;
    u.inline_methods = 1u << SN_OTLP_TRACES;
    int rc = sn_grpc_unary_create(&u, &s->unary, err, errlen);
    if (rc != 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int sn_grpc_server_port(const sn_grpc_server *s)
{
    return sn_grpc_unary_port(s->unary);
}

int sn_grpc_server_start(sn_grpc_server *s)
{
    return sn_grpc_unary_start(s->unary);
}

void sn_grpc_server_shutdown(sn_grpc_server *s, uint32_t grace_ms)
{
    sn_grpc_unary_shutdown(s->unary, grace_ms);
}

void sn_grpc_server_stats_get(const sn_grpc_server *s, sn_grpc_server_stats *out)
{
    sn_grpc_server *m = (sn_grpc_server *)s; /* atomic_load wants a non-const object */
    sn_grpc_unary_stats u;
    sn_grpc_unary_stats_get(s->unary, &u);
    memset(out, 0, sizeof *out);
    for (int i = 0; i < SN_OTLP_SIGNAL_COUNT; i++)
        out->requests[i] = u.requests[i];
    for (int i = 0; i <= SN_OTLP_INTERNAL; i++)
        out->outcomes[i] = atomic_load(&m->st_outcomes[i]);
    out->refused_busy = u.refused_busy;
    out->refused_budget = u.refused_budget;
    out->refused_too_large = u.refused_too_large;
    out->refused_bad_encoding = u.refused_bad_encoding;
    out->unimplemented = u.unimplemented;
    out->expired = u.expired;
}

void sn_grpc_server_destroy(sn_grpc_server *s)
{
    if (s == NULL)
        return;
    sn_grpc_unary_destroy(s->unary);
    free(s);
}
