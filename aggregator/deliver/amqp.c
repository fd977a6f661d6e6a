/*
 * amqp.c -- the RabbitMQ sink (sink.h) through librabbitmq: persistent JSON messages to a
 * durable topic exchange on a channel in confirm mode, one publish and its confirm at a time.
 *
 * Topology declared on every (re)connect, idempotently:
 *   exchange <x> (topic, durable, alternate-exchange <x>.dlx): routing key <x>.<severity>
 *   exchange <x>.dlx (fanout, durable)
 *   queue <x>.dlq (durable) bound to <x>.dlx
 * So a message no queue is bound for (unroutable) lands in <x>.dlq instead of vanishing, and
 * consumers declare their queues with x-dead-letter-exchange=<x>.dlx to send rejected or
 * expired messages there too.
 */
#include "sink.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHANNEL 1

typedef struct amqp_sink {
    sn_sink base;
    char *url_copy; /* amqp_parse_url points into it */
    struct amqp_connection_info ci;
    char exchange[128], dlx[140], dlq[140];
    int64_t timeout_ns;
    amqp_connection_state_t conn; /* NULL while disconnected */
    uint64_t next_tag;            /* delivery tag of the next publish on this channel */
} amqp_sink;

static struct timeval to_tv(int64_t ns)
{
    return (struct timeval){.tv_sec = (time_t)(ns / 1000000000),
                            .tv_usec = (suseconds_t)(ns % 1000000000 / 1000)};
}

static void disconnect(amqp_sink *s)
{
    if (s->conn != NULL)
        amqp_destroy_connection(s->conn);
    s->conn = NULL;
}

/* Describes a failed RPC reply into reason. Returns false when the reply is not normal. */
static bool rpc_ok(amqp_rpc_reply_t r, const char *what, char *reason, size_t rlen)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return true;
    case AMQP_RESPONSE_NONE:
        snprintf(reason, rlen, "amqp: %s: missing reply", what);
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(reason, rlen, "amqp: %s: %s", what, amqp_error_string2(r.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *c = r.reply.decoded;
            snprintf(reason, rlen, "amqp: %s: connection closed %u %.*s", what, c->reply_code,
                     (int)c->reply_text.len, (const char *)c->reply_text.bytes);
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *c = r.reply.decoded;
            snprintf(reason, rlen, "amqp: %s: channel closed %u %.*s", what, c->reply_code,
                     (int)c->reply_text.len, (const char *)c->reply_text.bytes);
        } else {
            snprintf(reason, rlen, "amqp: %s: server error method 0x%08X", what, r.reply.id);
        }
        break;
    }
    return false;
}

/* Connects, logs in, opens the channel in confirm mode and declares the topology. Returns 0 or
 * -EIO with the reason (the connection is dropped). */
static int connect_amqp(amqp_sink *s, char *reason, size_t rlen)
{
    struct timeval tv = to_tv(s->timeout_ns);
    s->conn = amqp_new_connection();
    if (s->conn == NULL) {
        snprintf(reason, rlen, "amqp: out of memory");
        return -EIO;
    }
    amqp_socket_t *sock = amqp_tcp_socket_new(s->conn);
    if (sock == NULL) {
        snprintf(reason, rlen, "amqp: out of memory");
        goto out_drop;
    }
    int st = amqp_socket_open_noblock(sock, s->ci.host, s->ci.port, &tv);
    if (st != AMQP_STATUS_OK) {
        snprintf(reason, rlen, "amqp: connecting to %s:%d: %s", s->ci.host, s->ci.port,
                 amqp_error_string2(st));
        goto out_drop;
    }
    amqp_set_handshake_timeout(s->conn, &tv);
    amqp_set_rpc_timeout(s->conn, &tv);
    if (!rpc_ok(amqp_login(s->conn, s->ci.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, s->ci.user,
                           s->ci.password),
                "login", reason, rlen))
        goto out_drop;
    amqp_channel_open(s->conn, CHANNEL);
    if (!rpc_ok(amqp_get_rpc_reply(s->conn), "channel.open", reason, rlen))
        goto out_drop;
    amqp_confirm_select(s->conn, CHANNEL);
    if (!rpc_ok(amqp_get_rpc_reply(s->conn), "confirm.select", reason, rlen))
        goto out_drop;
    amqp_exchange_declare(s->conn, CHANNEL, amqp_cstring_bytes(s->dlx),
                          amqp_cstring_bytes("fanout"), 0, 1, 0, 0, amqp_empty_table);
    if (!rpc_ok(amqp_get_rpc_reply(s->conn), "declaring the dead-letter exchange", reason, rlen))
        goto out_drop;
    amqp_queue_declare(s->conn, CHANNEL, amqp_cstring_bytes(s->dlq), 0, 1, 0, 0, amqp_empty_table);
    if (!rpc_ok(amqp_get_rpc_reply(s->conn), "declaring the dead-letter queue", reason, rlen))
        goto out_drop;
    amqp_queue_bind(s->conn, CHANNEL, amqp_cstring_bytes(s->dlq), amqp_cstring_bytes(s->dlx),
                    amqp_cstring_bytes(""), amqp_empty_table);
    if (!rpc_ok(amqp_get_rpc_reply(s->conn), "binding the dead-letter queue", reason, rlen))
        goto out_drop;
    amqp_table_entry_t ae = {
        .key = amqp_cstring_bytes("alternate-exchange"),
        .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(s->dlx)}};
    amqp_table_t args = {.num_entries = 1, .entries = &ae};
    amqp_exchange_declare(s->conn, CHANNEL, amqp_cstring_bytes(s->exchange),
                          amqp_cstring_bytes("topic"), 0, 1, 0, 0, args);
    if (!rpc_ok(amqp_get_rpc_reply(s->conn), "declaring the exchange", reason, rlen))
        goto out_drop;
    s->next_tag = 1;
    return 0;

out_drop:
    disconnect(s);
    return -EIO;
}

/* Waits for the confirm of tag. Returns OK (ack), RETRY (nack, timeout, closed). */
static sn_sink_result wait_confirm(amqp_sink *s, uint64_t tag, char *reason, size_t rlen)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t spent =
            (int64_t)(now.tv_sec - start.tv_sec) * 1000000000 + (now.tv_nsec - start.tv_nsec);
        if (spent >= s->timeout_ns) {
            snprintf(reason, rlen, "amqp: no publisher confirm within the timeout");
            return SN_SINK_RETRY;
        }
        struct timeval tv = to_tv(s->timeout_ns - spent);
        amqp_frame_t f;
        int st = amqp_simple_wait_frame_noblock(s->conn, &f, &tv);
        if (st == AMQP_STATUS_TIMEOUT)
            continue;
        if (st != AMQP_STATUS_OK) {
            snprintf(reason, rlen, "amqp: waiting for the confirm: %s", amqp_error_string2(st));
            return SN_SINK_RETRY;
        }
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        switch (f.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
            amqp_basic_ack_t *a = f.payload.method.decoded;
            if (a->delivery_tag == tag || (a->multiple && a->delivery_tag >= tag))
                return SN_SINK_OK;
            break;
        }
        case AMQP_BASIC_NACK_METHOD: {
            amqp_basic_nack_t *n = f.payload.method.decoded;
            if (n->delivery_tag == tag || (n->multiple && n->delivery_tag >= tag)) {
                snprintf(reason, rlen, "amqp: the broker nacked the message");
                return SN_SINK_RETRY;
            }
            break;
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
            amqp_channel_close_t *c = f.payload.method.decoded;
            snprintf(reason, rlen, "amqp: channel closed %u %.*s", c->reply_code,
                     (int)c->reply_text.len, (const char *)c->reply_text.bytes);
            return SN_SINK_RETRY;
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
            amqp_connection_close_t *c = f.payload.method.decoded;
            snprintf(reason, rlen, "amqp: connection closed %u %.*s", c->reply_code,
                     (int)c->reply_text.len, (const char *)c->reply_text.bytes);
            return SN_SINK_RETRY;
        }
        default:
            break; /* basic.return and the like: keep waiting for the confirm */
        }
    }
}

static char *amqp_format(const sn_sink *s, sn_alert_change change, const sn_alert *a, size_t *len)
{
    (void)s;
    (void)change;
    return sn_sink_alert_json(a, len);
}

static sn_sink_result amqp_send(sn_sink *base, const sn_sink_msg *m, char *reason, size_t rlen)
{
    amqp_sink *s = (amqp_sink *)base;
    if (s->conn == NULL && connect_amqp(s, reason, rlen) != 0)
        return SN_SINK_RETRY;
    char key[160];
    snprintf(key, sizeof key, "%s.%s", s->exchange, sn_severity_name(m->severity));
    amqp_table_entry_t h[2] = {
        {.key = amqp_cstring_bytes("change"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8,
                   .value.bytes = amqp_cstring_bytes(sn_alert_change_name(m->change))}},
        {.key = amqp_cstring_bytes("delivery_id"),
         .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = m->delivery_id}}};
    amqp_basic_properties_t p = {0};
    p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
               AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_HEADERS_FLAG |
               AMQP_BASIC_APP_ID_FLAG;
    p.content_type = amqp_cstring_bytes("application/json");
    p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    p.message_id = amqp_cstring_bytes(m->alert_id);
    p.timestamp = (uint64_t)time(NULL);
    p.app_id = amqp_cstring_bytes("llm-sentinel");
    p.headers = (amqp_table_t){.num_entries = 2, .entries = h};
    amqp_bytes_t body = {.len = m->len, .bytes = (void *)(uintptr_t)m->body};
    int st = amqp_basic_publish(s->conn, CHANNEL, amqp_cstring_bytes(s->exchange),
                                amqp_cstring_bytes(key), 0, 0, &p, body);
    if (st != AMQP_STATUS_OK) {
        snprintf(reason, rlen, "amqp: publish: %s", amqp_error_string2(st));
        disconnect(s);
        return SN_SINK_RETRY;
    }
    sn_sink_result r = wait_confirm(s, s->next_tag++, reason, rlen);
    if (r != SN_SINK_OK)
        disconnect(s); /* confirms may be out of step now: start a fresh channel */
    else
        amqp_maybe_release_buffers(s->conn);
    return r;
}

static void amqp_sink_destroy(sn_sink *base)
{
    amqp_sink *s = (amqp_sink *)base;
    if (s->conn != NULL) {
        amqp_channel_close(s->conn, CHANNEL, AMQP_REPLY_SUCCESS);
        amqp_connection_close(s->conn, AMQP_REPLY_SUCCESS);
    }
    disconnect(s);
    free(s->url_copy);
    free(s);
}

static const sn_sink_ops amqp_ops = {
    .kind = "amqp", .format = amqp_format, .send = amqp_send, .destroy = amqp_sink_destroy};

int sn_sink_amqp_create(const sn_amqp_config *cfg, sn_sink **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *x = cfg->exchange != NULL && cfg->exchange[0] != '\0' ? cfg->exchange : "incidents";
    if (cfg->url == NULL || strncmp(cfg->url, "amqp://", 7) != 0 || cfg->timeout_ns <= 0 ||
        strlen(x) >= 128) {
        snprintf(err, errlen,
                 "amqp: needs url amqp://user:pass@host:port/vhost, a timeout > 0 and an "
                 "exchange name under 128 bytes");
        return -EINVAL;
    }
    amqp_sink *s = calloc(1, sizeof *s);
    if (s == NULL || (s->url_copy = strdup(cfg->url)) == NULL) {
        free(s);
        snprintf(err, errlen, "amqp: out of memory");
        return -ENOMEM;
    }
    amqp_default_connection_info(&s->ci);
    if (amqp_parse_url(s->url_copy, &s->ci) != AMQP_STATUS_OK || s->ci.ssl) {
        free(s->url_copy);
        free(s);
        snprintf(err, errlen, "amqp: bad url (amqp://user:pass@host:port/vhost; no amqps)");
        return -EINVAL;
    }
    if (s->ci.vhost == NULL || s->ci.vhost[0] == '\0')
        s->ci.vhost = "/"; /* "amqp://host/" means the default vhost, as most clients read it */
    s->base.ops = &amqp_ops;
    snprintf(s->base.name, sizeof s->base.name, "%s",
             cfg->sink_name != NULL ? cfg->sink_name : "amqp");
    snprintf(s->exchange, sizeof s->exchange, "%s", x);
    snprintf(s->dlx, sizeof s->dlx, "%s.dlx", x);
    snprintf(s->dlq, sizeof s->dlq, "%s.dlq", x);
    s->timeout_ns = cfg->timeout_ns;
    *out = &s->base;
    return 0;
}
