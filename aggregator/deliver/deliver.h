/*
 * deliver.h -- alert delivery: routes every change of an alert to the sinks that want it,
 * through the state store's durable per-sink queue (store.h), and delivers each queued message
 * from one worker thread per sink (sink.h), with backoff, a circuit breaker, a rate limit and
 * metrics. docs/alert-delivery.md describes it for operators.
 *
 *   loop thread                                     worker thread of sink S (one per sink)
 *   alert changes -> sn_deliver_enqueue(d, store,   own read-write connection to DIR/state.db
 *     change, alert, now): for every sink whose     loop: breaker open? rate bucket empty?
 *     route matches, format + enqueue on the          -> wait; next_due(S) -> send
 *     loop's store connection (same transaction       OK        -> mark_delivered
 *     as the alert upsert when the caller groups      RETRY     -> mark_failed (stays at the
 *     them); then sn_deliver_kick(d)                               head), sink waits backoff
 *                                                      PERMANENT -> dead_letter(reason)
 *
 * Why a second connection rather than a hand-off queue: the queue is the store (an alert is
 * removed only after the receiver acknowledged it, and a restart continues where it stopped),
 * so the worker reads what is due straight from it. SQLite in WAL mode lets the loop's and the
 * workers' connections work side by side; writers take turns through BEGIN IMMEDIATE and the
 * busy timeout. A kick only shortens the wait; a worker also polls every poll interval.
 *
 * Order: a delivery that failed stays due at its original time, so it remains the head of its
 * sink's queue and FIRED is never overtaken by the RESOLVED of the same alert. While the sink
 * waits for its backoff, nothing else goes to it.
 *
 * Guarantee: at least once, de-duplicated at the receiver by alert id plus change (and the
 * delivery id each sink sends). The engine never sends again what a receiver acknowledged; it
 * can send twice only when the acknowledgement itself was lost (a timeout after the receiver
 * accepted the message) or the process died between the acknowledgement and its commit.
 */
#ifndef SN_DELIVER_H
#define SN_DELIVER_H

#include "alerts.h"
#include "backoff.h"
#include "config.h"
#include "metrics.h"
#include "sink.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_DELIVER_MAX_SINKS    8
#define SN_DELIVER_URL_MAX      1024
#define SN_DELIVER_SECRET_MAX   512
#define SN_DELIVER_SERVICES_MAX SN_CONFIG_LIST_MAX

/* ---- routing ---- */

/* Which changes of which alerts one sink receives. */
typedef struct sn_deliver_rule {
    sn_severity min_severity; /* alerts below it are not sent */
    unsigned changes;         /* bit (1u << sn_alert_change) per change sent */
    unsigned nservices;       /* 0: every service */
    char services[SN_DELIVER_SERVICES_MAX][SN_NAME_MAX];
} sn_deliver_rule;

/* Every change of every alert. */
void sn_deliver_rule_all(sn_deliver_rule *r);

/* True when the rule sends this change of this alert: severity >= min_severity, the change's
 * bit set, and the service listed (exact match) or no list. */
bool sn_deliver_rule_match(const sn_deliver_rule *r, sn_alert_change change, const sn_alert *a);

/* ---- rate limit: a token bucket ---- */

typedef struct sn_token_bucket {
    double rate;   /* tokens per second; <= 0: unlimited */
    double burst;  /* capacity, >= 1 */
    double tokens; /* now */
    int64_t last_ns;
} sn_token_bucket;

/* A full bucket at now_ns. rate <= 0 turns the limit off; burst < 1 counts as 1. */
void sn_token_bucket_init(sn_token_bucket *b, double rate, double burst, int64_t now_ns);

/* Takes one token at now_ns: returns 0 when taken, else how many ns until one is there
 * (nothing taken: the caller waits and asks again). Never fails. */
int64_t sn_token_bucket_take(sn_token_bucket *b, int64_t now_ns);

/* ---- circuit breaker ----
 *   CLOSED --(threshold consecutive failures)--> OPEN --(cooldown over)--> HALF_OPEN (one probe)
 *   HALF_OPEN --success--> CLOSED;  HALF_OPEN --failure--> OPEN (another cooldown)
 */
typedef enum sn_breaker_state {
    SN_BREAKER_CLOSED = 0,
    SN_BREAKER_OPEN,
    SN_BREAKER_HALF_OPEN
} sn_breaker_state;

typedef struct sn_breaker {
    unsigned threshold;  /* consecutive failures that open it; 0: never opens */
    int64_t cooldown_ns; /* how long it stays open */
    unsigned failures;   /* consecutive, since the last success */
    sn_breaker_state state;
    int64_t open_until_ns;
    uint64_t opened; /* times it opened (for tests and logs) */
} sn_breaker;

void sn_breaker_init(sn_breaker *b, unsigned threshold, int64_t cooldown_ns);

/* Whether a send may go out at now_ns: 0 yes (an OPEN breaker whose cooldown is over becomes
 * HALF_OPEN and lets this one probe through), else the ns left before it may. */
int64_t sn_breaker_allow(sn_breaker *b, int64_t now_ns);

/* Records a success (closes it) or a failure (returns true when this failure opened it). */
void sn_breaker_success(sn_breaker *b);
bool sn_breaker_failure(sn_breaker *b, int64_t now_ns);

/* ---- settings (config.h descriptors) ---- */

/* Routing and rate limit of one sink as configured. */
typedef struct sn_deliver_route_settings {
    int min_severity;        /* index into sn_deliver_severity_names: low, medium, high, critical */
    sn_config_list services; /* empty: all */
    sn_config_list changes;  /* names of sn_alert_change_name */
    double rate;             /* deliveries per second; 0: unlimited */
    int64_t burst;
} sn_deliver_route_settings;

typedef struct sn_deliver_settings {
    struct {
        char url[SN_DELIVER_URL_MAX];
        char token[SN_DELIVER_SECRET_MAX];
        char secret[SN_DELIVER_SECRET_MAX];
        int64_t timeout_ns;
        sn_deliver_route_settings route;
    } webhook;
    struct {
        char url[SN_DELIVER_URL_MAX];
        char generator_url[SN_DELIVER_URL_MAX];
        int64_t timeout_ns;
        int64_t resend_ns;
        sn_deliver_route_settings route;
    } alertmanager;
    struct {
        char url[SN_DELIVER_URL_MAX];
        char exchange[128];
        int64_t timeout_ns;
        sn_deliver_route_settings route;
    } amqp;
    struct {
        char url[SN_DELIVER_URL_MAX];
        char stream[128];
        int64_t retention_ns;
        int64_t timeout_ns;
        sn_deliver_route_settings route;
    } redis;
    /* the engine, for every sink */
    int64_t backoff_initial_ns;
    int64_t backoff_max_ns;
    int64_t breaker_failures;
    int64_t breaker_cooldown_ns;
    int64_t max_attempts; /* 0: retry until delivered */
    int64_t poll_ns;
    int64_t busy_timeout_ns;
} sn_deliver_settings;

extern const char *const sn_deliver_severity_names[]; /* "low", "medium", "high", "critical" */

#define SN__DELIVER_ROUTE(P, T, F, CH)                                                             \
    SN_CFG_ENUM(P ".min_severity", T, F.min_severity, "low", sn_deliver_severity_names,            \
                "lowest severity sent to this sink"),                                              \
        SN_CFG_LIST(P ".services", T, F.services, "",                                              \
                    "services sent to this sink (empty: every service)"),                          \
        SN_CFG_LIST(P ".changes", T, F.changes, CH,                                                \
                    "alert changes sent: fired, updated, escalated, resolved"),                    \
        SN_CFG_DOUBLE(P ".rate", T, F.rate, "10", 0, 1e6,                                          \
                      "deliveries per second at most (0: unlimited); more wait, none dropped"),    \
        SN_CFG_INT(P ".burst", T, F.burst, "20", 1, 1000000, "deliveries allowed in a burst")

/* The descriptors of every delivery setting, for a field F of type sn_deliver_settings in the
 * program's config struct T. URLs come from contracts.md's variables (SENTINEL_WEBHOOK_URL,
 * SENTINEL_ALERTMANAGER_URL, SENTINEL_AMQP_URL); the Redis sink's is sinks.redis.url
 * (SENTINEL_SINKS_REDIS_URL), separate from SENTINEL_REDIS_URL (shared state). A sink whose URL
 * is empty is off. */
#define SN_DELIVER_DESCRIPTORS(T, F)                                                               \
    {SN__CFG("sinks.webhook.url", SN_CONFIG_STRING, T, F.webhook.url, "",                          \
             "webhook URL the alert JSON is POSTed to (empty: off)"),                              \
     .env = "SENTINEL_WEBHOOK_URL"},                                                               \
        {SN__CFG("sinks.webhook.token", SN_CONFIG_STRING, T, F.webhook.token, "",                  \
                 "bearer token sent to the webhook (empty: none)"),                                \
         .flags = SN_CONFIG_SECRET},                                                               \
        {SN__CFG("sinks.webhook.secret", SN_CONFIG_STRING, T, F.webhook.secret, "",                \
                 "HMAC-SHA256 key of X-Sentinel-Signature (empty: unsigned)"),                     \
         .flags = SN_CONFIG_SECRET},                                                               \
        SN_CFG_DURATION("sinks.webhook.timeout", T, F.webhook.timeout_ns, "5s", SN_NS_PER_MS,      \
                        300 * SN_NS_PER_SEC, "webhook request timeout"),                           \
        SN__DELIVER_ROUTE("sinks.webhook", T, F.webhook.route, "fired,escalated,resolved"),        \
        {SN__CFG("sinks.alertmanager.url", SN_CONFIG_STRING, T, F.alertmanager.url, "",            \
                 "Prometheus Alertmanager base URL (empty: off)"),                                 \
         .env = "SENTINEL_ALERTMANAGER_URL"},                                                      \
        SN_CFG_STRING("sinks.alertmanager.generator_url", T, F.alertmanager.generator_url, "",     \
                      "base of generatorURL (the aggregator's REST URL; empty: none)"),            \
        SN_CFG_DURATION("sinks.alertmanager.timeout", T, F.alertmanager.timeout_ns, "5s",          \
                        SN_NS_PER_MS, 300 * SN_NS_PER_SEC, "Alertmanager request timeout"),        \
        SN_CFG_DURATION("sinks.alertmanager.resend_interval", T, F.alertmanager.resend_ns, "1m",   \
                        SN_NS_PER_SEC, 3600 * SN_NS_PER_SEC,                                       \
                        "firing alerts are re-sent to Alertmanager this often"),                   \
        SN__DELIVER_ROUTE("sinks.alertmanager", T, F.alertmanager.route,                           \
                          "fired,escalated,resolved"),                                             \
        {SN__CFG("sinks.amqp.url", SN_CONFIG_STRING, T, F.amqp.url, "",                            \
                 "RabbitMQ URL amqp://user:pass@host:port/vhost (empty: off)"),                    \
         .env = "SENTINEL_AMQP_URL", .flags = SN_CONFIG_SECRET},                                   \
        SN_CFG_STRING("sinks.amqp.exchange", T, F.amqp.exchange, "incidents",                      \
                      "topic exchange; routing key <exchange>.<severity>"),                        \
        SN_CFG_DURATION("sinks.amqp.timeout", T, F.amqp.timeout_ns, "5s", SN_NS_PER_MS,            \
                        300 * SN_NS_PER_SEC, "connect, RPC and publisher-confirm timeout"),        \
        SN__DELIVER_ROUTE("sinks.amqp", T, F.amqp.route, "fired,escalated,resolved"),              \
        {SN__CFG("sinks.redis.url", SN_CONFIG_STRING, T, F.redis.url, "",                          \
                 "Redis URL redis://[:password@]host:port/db of the alert stream (empty: off)"),   \
         .flags = SN_CONFIG_SECRET},                                                               \
        SN_CFG_STRING("sinks.redis.stream", T, F.redis.stream, "sentinel:alerts", "stream key"),   \
        SN_CFG_DURATION("sinks.redis.retention", T, F.redis.retention_ns, "7d", SN_NS_PER_SEC,     \
                        3650 * 86400 * SN_NS_PER_SEC,                                              \
                        "stream entries older than this are trimmed"),                             \
        SN_CFG_DURATION("sinks.redis.timeout", T, F.redis.timeout_ns, "5s", SN_NS_PER_MS,          \
                        300 * SN_NS_PER_SEC, "connect and command timeout"),                       \
        SN__DELIVER_ROUTE("sinks.redis", T, F.redis.route, "fired,escalated,resolved"),            \
        SN_CFG_DURATION("delivery.backoff.initial", T, F.backoff_initial_ns, "1s", SN_NS_PER_MS,   \
                        3600 * SN_NS_PER_SEC, "first retry delay of a failing sink"),              \
        SN_CFG_DURATION("delivery.backoff.max", T, F.backoff_max_ns, "5m", SN_NS_PER_MS,           \
                        86400 * SN_NS_PER_SEC, "longest retry delay"),                             \
        SN_CFG_INT("delivery.breaker.failures", T, F.breaker_failures, "5", 0, 1000000,            \
                   "consecutive failures that open a sink's circuit breaker (0: never)"),          \
        SN_CFG_DURATION("delivery.breaker.cooldown", T, F.breaker_cooldown_ns, "30s",              \
                        SN_NS_PER_MS, 86400 * SN_NS_PER_SEC,                                       \
                        "how long an open breaker waits before one probe"),                        \
        SN_CFG_INT(                                                                                \
            "delivery.max_attempts", T, F.max_attempts, "0", 0, 1000000,                           \
            "failed attempts before a delivery is dead-lettered (0: retry until delivered)"),      \
        SN_CFG_DURATION("delivery.poll_interval", T, F.poll_ns, "1s", SN_NS_PER_MS,                \
                        60 * SN_NS_PER_SEC, "how often an idle sink looks at its queue"),          \
        SN_CFG_DURATION("delivery.busy_timeout", T, F.busy_timeout_ns, "5s", SN_NS_PER_MS,         \
                        300 * SN_NS_PER_SEC, "wait for the state store's write lock")

/* The descriptors on their own, bound to an sn_deliver_settings (tests, tools). *n gets the
 * count. Static storage. */
const sn_config_desc *sn_deliver_descriptors(size_t *n);

/* Turns one sink's route settings into a rule. Returns 0, or -EINVAL with a one-line message
 * naming the bad change or service in err. */
int sn_deliver_rule_from_settings(const sn_deliver_route_settings *s, sn_deliver_rule *out,
                                  char *err, size_t errlen);

/* ---- the engine ---- */

/* How one sink's worker retries and paces. */
typedef struct sn_deliver_policy {
    double rate; /* deliveries per second; 0: unlimited */
    double burst;
    sn_backoff_config backoff;
    unsigned breaker_failures; /* 0: no breaker */
    int64_t breaker_cooldown_ns;
} sn_deliver_policy;

/* rate 10/s, burst 20, backoff 1 s .. 5 min x2, breaker 5 failures / 30 s. */
void sn_deliver_policy_init(sn_deliver_policy *p);

typedef struct sn_deliver_options {
    const char *store_dir;    /* the state store's directory (the loop's sn_store_open dir) */
    sn_metrics *metrics;      /* may be NULL; the engine registers its families once in it */
    unsigned max_attempts;    /* 0: retry until delivered */
    int64_t poll_ns;          /* idle re-check of the queue; > 0 */
    unsigned busy_timeout_ms; /* the workers' store connections */
} sn_deliver_options;

void sn_deliver_options_init(sn_deliver_options *o);

/* Copies the engine-wide settings (max_attempts, poll_interval, busy_timeout) into o; the
 * caller sets store_dir and metrics. Never fails. */
void sn_deliver_options_from_settings(sn_deliver_options *o, const sn_deliver_settings *s);

typedef struct sn_deliver sn_deliver;

/* Creates an engine without sinks. Returns 0 and sets *out, or -EINVAL (no store_dir, poll)
 * / -EEXIST (the metric families are already registered in this registry) / -ENOMEM with a
 * one-line message in err. Free with sn_deliver_destroy. */
int sn_deliver_create(const sn_deliver_options *o, sn_deliver **out, char *err, size_t errlen);

/* Adds a sink with its route and policy, opens the worker's own store connection and starts
 * its thread. Takes ownership of sink in every case (destroyed on failure). Call it on the
 * loop thread before the first sn_deliver_enqueue. Returns 0, -EEXIST (a sink of that name),
 * -ENOSPC (SN_DELIVER_MAX_SINKS), -EINVAL (a name the store refuses), or the store's or
 * pthread's error, with a message in err. */
int sn_deliver_add_sink(sn_deliver *d, sn_sink *sink, const sn_deliver_rule *rule,
                        const sn_deliver_policy *policy, char *err, size_t errlen);

/* Creates the sinks whose URL is set in s (webhook, alertmanager, amqp, redis) with their rules
 * and the shared policy, and adds them. Returns the number added (0: none configured) or a
 * negative errno with a message naming the sink in err (sinks added before stay). */
int sn_deliver_add_configured(sn_deliver *d, const sn_deliver_settings *s, char *err,
                              size_t errlen);

/* Stops every worker (a send in progress finishes or times out first), closes their
 * connections and frees the sinks. Pending deliveries stay in the store for the next engine.
 * NULL is a no-op. */
void sn_deliver_destroy(sn_deliver *d);

/* On the loop thread, for every change of an alert: for each sink whose rule matches, formats
 * the sink's message and queues it on st (the loop's own connection; group it with the alert
 * upsert in one sn_store_begin/commit to make both durable together). Then wakes the workers
 * (kick again after the commit when grouping). Returns the number of sinks queued, or the first
 * error (-ENOSPC: that sink's queue is full; -ENOMEM; store errors) after trying every sink;
 * *queued (may be NULL) counts the successes either way. */
int sn_deliver_enqueue(sn_deliver *d, sn_store *st, sn_alert_change change, const sn_alert *a,
                       int64_t now_ns, unsigned *queued);

/* Wakes every worker to look at its queue now. Any thread. */
void sn_deliver_kick(sn_deliver *d);

typedef struct sn_deliver_sink_stats {
    uint64_t delivered;     /* acknowledged by the receiver */
    uint64_t failed;        /* attempts that failed and will be retried */
    uint64_t retried;       /* attempts of deliveries that had failed before */
    uint64_t dead_lettered; /* refused by the receiver (or max_attempts reached) */
    uint64_t resent;        /* periodic re-sends of firing alerts that were acknowledged */
    uint64_t pending;       /* the queue's depth at the worker's last look */
    sn_breaker_state breaker;
    uint64_t breaker_opened;
    char last_error[SN_SINK_REASON_MAX]; /* the last failed or refused attempt's reason; "" */
} sn_deliver_sink_stats;

/* Counters of the sink named name. Any thread. Returns 0 or -ENOENT. */
int sn_deliver_sink_stats_get(sn_deliver *d, const char *name, sn_deliver_sink_stats *out);

/* How many sinks were added, and the name of the i-th (0-based; NULL when i is out of range;
 * valid until sn_deliver_destroy). Call on the thread that adds sinks (the loop). */
unsigned sn_deliver_sink_count(const sn_deliver *d);
const char *sn_deliver_sink_name(const sn_deliver *d, unsigned i);

#endif
