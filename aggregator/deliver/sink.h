/*
 * sink.h -- what the delivery engine (deliver.h) needs from one alert sink: format a change of
 * an alert into the message kept in the durable queue, and send one queued message.
 *
 * A sink is an opaque object whose first member is an sn_sink (the "base"); its ops are a
 * static table. format runs on the loop thread (inside sn_deliver_enqueue) and may only read
 * the sink's immutable settings; send runs on the sink's own worker thread, one call at a time,
 * and may block up to the sink's timeout. destroy runs after the worker stopped.
 *
 * send classifies every outcome:
 *   SN_SINK_OK         the receiver acknowledged the message (2xx, publisher confirm, XADD id);
 *   SN_SINK_RETRY      the receiver is down, slow or overloaded (connection error, timeout,
 *                      408/429/5xx, nack): try again later with backoff;
 *   SN_SINK_PERMANENT  the receiver refused this message (other 4xx, a malformed request):
 *                      sending it again cannot help, it goes to the dead letters with reason.
 */
#ifndef SN_DELIVER_SINK_H
#define SN_DELIVER_SINK_H

#include "alerts.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>

#define SN_SINK_REASON_MAX SN_STORE_REASON_MAX

typedef enum sn_sink_result { SN_SINK_OK = 0, SN_SINK_RETRY, SN_SINK_PERMANENT } sn_sink_result;

/* One queued message as the worker hands it to send. Every string is borrowed for the call. */
typedef struct sn_sink_msg {
    int64_t delivery_id;  /* the queue row: unique per (store, delivery), for receiver de-dup */
    const char *alert_id; /* the alert's UUID */
    sn_alert_change change;
    sn_severity severity;
    const char *body; /* what format produced, NUL-terminated */
    size_t len;
} sn_sink_msg;

typedef struct sn_sink sn_sink;

typedef struct sn_sink_ops {
    const char *kind; /* "webhook", "alertmanager", "amqp", "redis", "test" */
    /* The message body for one change of a (copy of an) alert: malloc'd, NUL-terminated, *len
     * its length; NULL when out of memory or the alert cannot be written. */
    char *(*format)(const sn_sink *s, sn_alert_change change, const sn_alert *a, size_t *len);
    /* Sends one message; on failure writes a one-line reason (status, error text). */
    sn_sink_result (*send)(sn_sink *s, const sn_sink_msg *m, char *reason, size_t rlen);
    /* Frees the sink. */
    void (*destroy)(sn_sink *s);
} sn_sink_ops;

/* The base every sink starts with. */
struct sn_sink {
    const sn_sink_ops *ops;
    char name[SN_STORE_SINK_MAX]; /* the queue's sink name and the metrics' sink label */
    /* > 0: the engine re-sends every firing alert that matches the sink's route this often
     * (Alertmanager forgets alerts that are not repeated); 0: never. */
    int64_t resend_ns;
};

/* Frees any sink through its ops. NULL is a no-op. */
void sn_sink_destroy(sn_sink *s);

/* The alert JSON of contracts.md (sn_alert_to_json), compact, malloc'd; *len its length. NULL
 * when out of memory. The body of the webhook, RabbitMQ and Redis sinks. */
char *sn_sink_alert_json(const sn_alert *a, size_t *len);

/* "fired", "updated", "escalated", "resolved"; "unknown" otherwise. */
const char *sn_alert_change_name(sn_alert_change c);

/* Parses a change name (case-sensitive). Returns 0 and sets *out, or -EINVAL. */
int sn_alert_change_from_name(const char *name, sn_alert_change *out);

/* ---- the four sinks (each in its own file) ---- */

/* Webhook (webhook.c): POSTs the alert JSON to url with Content-Type application/json,
 * X-Sentinel-Alert-Id, X-Sentinel-Delivery-Id, X-Sentinel-Change, Authorization: Bearer
 * <token> when token is set and X-Sentinel-Signature: sha256=<hex HMAC-SHA256 of the body
 * keyed by secret> when secret is set. 2xx: OK; 408, 429, 5xx and transport errors: RETRY;
 * other statuses: PERMANENT. */
typedef struct sn_webhook_config {
    const char *url;       /* http:// or https:// */
    const char *token;     /* NULL or "": no Authorization header */
    const char *secret;    /* NULL or "": no signature */
    int64_t timeout_ns;    /* whole request, connect included; > 0 */
    const char *sink_name; /* NULL: "webhook" */
} sn_webhook_config;

/* Creates the sink (strings copied). Returns 0 and sets *out, or -EINVAL (no http(s) URL,
 * timeout) / -ENOMEM with a one-line message in err. */
int sn_sink_webhook_create(const sn_webhook_config *cfg, sn_sink **out, char *err, size_t errlen);

/* Writes "sha256=" and the lowercase hex HMAC-SHA256 of body keyed by secret into out (at least
 * SN_WEBHOOK_SIGNATURE_MAX bytes). Returns 0 or -EIO. */
#define SN_WEBHOOK_SIGNATURE_MAX (7 + 64 + 1)
int sn_webhook_signature(const char *secret, const void *body, size_t len, char *out,
                         size_t outlen);

/* Prometheus Alertmanager (alertmanager.c): POSTs a JSON array to <url>/api/v2/alerts (url is the
 * Alertmanager's base URL; one already ending in /api/v2/alerts is used as it is). Classified
 * like the webhook. resend_ns sets sn_sink.resend_ns. */
typedef struct sn_alertmanager_config {
    const char *url;
    const char *generator_url; /* NULL or "": no generatorURL; else <it>/api/v1/anomalies/<id> */
    int64_t timeout_ns;
    int64_t resend_ns;
    const char *sink_name; /* NULL: "alertmanager" */
} sn_alertmanager_config;

int sn_sink_alertmanager_create(const sn_alertmanager_config *cfg, sn_sink **out, char *err,
                                size_t errlen);

/* The Alertmanager v2 payload for one change: a JSON array holding the alert (labels alertname
 * "LLM" + the anomaly type in CamelCase, severity, service, model, anomaly_type; annotations
 * summary, description, root_cause, remediation, runbook_url, alert_id, detection_method,
 * confidence, metric, value, baseline, threshold, deviation_sigma, occurrences,
 * related_alerts; startsAt; endsAt when resolved; generatorURL when set) and, on ESCALATED,
 * the same labels with each lower severity ended at last_seen (so the label sets the alert
 * fired with before do not linger). malloc'd text; NULL when out of memory. */
char *sn_alertmanager_payload(const sn_alert *a, sn_alert_change change, const char *generator_url,
                              size_t *len);

/* RabbitMQ (amqp.c): publishes the alert JSON to the topic exchange (default "incidents",
 * durable, with alternate exchange "<exchange>.dlx") with routing key "<exchange>.<severity>",
 * delivery_mode 2 (persistent), content_type application/json, message_id = alert id,
 * timestamp, headers change and delivery_id; on a channel in confirm mode, waiting for the
 * broker's basic.ack (OK) or basic.nack (RETRY) up to the timeout. Declares the fanout exchange
 * "<exchange>.dlx" and the durable queue "<exchange>.dlq" bound to it: consumers declare their
 * queues with x-dead-letter-exchange = "<exchange>.dlx". Any connection, channel or timeout
 * error is RETRY and drops the connection (the next send reconnects). */
typedef struct sn_amqp_config {
    const char *url;       /* amqp://user:pass@host:port/vhost */
    const char *exchange;  /* NULL or "": "incidents" */
    int64_t timeout_ns;    /* connect, each RPC and the confirm wait */
    const char *sink_name; /* NULL: "amqp" */
} sn_amqp_config;

int sn_sink_amqp_create(const sn_amqp_config *cfg, sn_sink **out, char *err, size_t errlen);

/* Redis (redis.c): XADD <stream> MINID ~ <now - retention in ms> * alert_id <id> change <kind>
 * severity <sev> delivery_id <n> json <alert JSON>. A reply with an entry id is OK; an error
 * reply LOADING/BUSY/TRYAGAIN/READONLY/MASTERDOWN/CLUSTERDOWN/NOAUTH/OOM or a transport
 * error is RETRY (and reconnects); other error replies are PERMANENT. */
typedef struct sn_redis_sink_config {
    const char *url;      /* redis://[[user]:password@]host[:port][/db] */
    const char *stream;   /* NULL or "": "sentinel:alerts" */
    int64_t retention_ns; /* > 0 */
    int64_t timeout_ns;
    const char *sink_name; /* NULL: "redis" */
} sn_redis_sink_config;

int sn_sink_redis_create(const sn_redis_sink_config *cfg, sn_sink **out, char *err, size_t errlen);

/* Parses redis://[[user]:password@]host[:port][/db] (port 6379, db 0 by default). Returns 0 or
 * -EINVAL. */
typedef struct sn_redis_url {
    char host[256];
    int port;
    char user[128];
    char password[256];
    int db;
} sn_redis_url;
int sn_redis_url_parse(const char *url, sn_redis_url *out);

#endif
