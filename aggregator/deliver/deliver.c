/*
 * deliver.c -- the delivery engine of deliver.h: routing, the token bucket, the circuit breaker
 * and one worker thread per sink reading its queue from its own store connection.
 *
 * Threads. The loop thread calls add_sink, enqueue, destroy. Each worker owns its sink's send
 * side, its store connection, its bucket, breaker and backoff. Shared between them: stop and
 * the kick generation (under d->mu, signalled through d->cond on CLOCK_MONOTONIC) and the
 * counters (atomics, read by sn_deliver_sink_stats_get from any thread).
 */
#include "deliver.h"

#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---- small helpers shared by the sinks ---- */

static const char *const change_names[] = {"fired", "updated", "escalated", "resolved"};

const char *sn_alert_change_name(sn_alert_change c)
{
    if ((unsigned)c < sizeof change_names / sizeof change_names[0])
        return change_names[c];
    return "unknown";
}

int sn_alert_change_from_name(const char *name, sn_alert_change *out)
{
    for (unsigned i = 0; i < sizeof change_names / sizeof change_names[0]; i++) {
        if (strcmp(name, change_names[i]) == 0) {
            *out = (sn_alert_change)i;
            return 0;
        }
    }
    return -EINVAL;
}

void sn_sink_destroy(sn_sink *s)
{
    if (s != NULL)
        s->ops->destroy(s);
}

char *sn_sink_alert_json(const sn_alert *a, size_t *len)
{
    json_t *j = sn_alert_to_json(a);
    if (j == NULL)
        return NULL;
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (text != NULL)
        *len = strlen(text);
    return text;
}

/* ---- routing ---- */

void sn_deliver_rule_all(sn_deliver_rule *r)
{
    memset(r, 0, sizeof *r);
    r->min_severity = SN_SEV_LOW;
    r->changes = (1u << SN_ALERT_CHANGE_FIRED) | (1u << SN_ALERT_CHANGE_UPDATED) |
                 (1u << SN_ALERT_CHANGE_ESCALATED) | (1u << SN_ALERT_CHANGE_RESOLVED);
}

bool sn_deliver_rule_match(const sn_deliver_rule *r, sn_alert_change change, const sn_alert *a)
{
    if ((unsigned)change >= 32 || (r->changes & (1u << change)) == 0)
        return false;
    if (a->severity < r->min_severity)
        return false;
    if (r->nservices == 0)
        return true;
    for (unsigned i = 0; i < r->nservices; i++) {
        if (strcmp(r->services[i], a->service) == 0)
            return true;
    }
    return false;
}

const char *const sn_deliver_severity_names[] = {"low", "medium", "high", "critical", NULL};

int sn_deliver_rule_from_settings(const sn_deliver_route_settings *s, sn_deliver_rule *out,
                                  char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (s->min_severity < 0 || s->min_severity > 3) {
        snprintf(err, errlen, "deliver: min_severity out of range");
        return -EINVAL;
    }
    out->min_severity = (sn_severity)(SN_SEV_LOW + s->min_severity);
    for (uint32_t i = 0; i < s->changes.count && i < SN_CONFIG_LIST_MAX; i++) {
        sn_alert_change c;
        if (sn_alert_change_from_name(s->changes.items[i], &c) != 0) {
            snprintf(err, errlen,
                     "deliver: unknown change \"%s\" (fired, updated, escalated, resolved)",
                     s->changes.items[i]);
            return -EINVAL;
        }
        out->changes |= 1u << c;
    }
    for (uint32_t i = 0; i < s->services.count && i < SN_DELIVER_SERVICES_MAX; i++) {
        size_t n = strlen(s->services.items[i]);
        if (n == 0 || n >= SN_NAME_MAX) {
            snprintf(err, errlen, "deliver: service name %u is empty or too long", i + 1);
            return -EINVAL;
        }
        memcpy(out->services[out->nservices++], s->services.items[i], n + 1);
    }
    return 0;
}

/* ---- token bucket ---- */

void sn_token_bucket_init(sn_token_bucket *b, double rate, double burst, int64_t now_ns)
{
    b->rate = rate;
    b->burst = burst < 1.0 ? 1.0 : burst;
    b->tokens = b->burst;
    b->last_ns = now_ns;
}

int64_t sn_token_bucket_take(sn_token_bucket *b, int64_t now_ns)
{
    if (!(b->rate > 0.0))
        return 0;
    if (now_ns > b->last_ns) {
        b->tokens += (double)(now_ns - b->last_ns) * b->rate / 1e9;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ns = now_ns;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 0;
    }
    int64_t wait = (int64_t)((1.0 - b->tokens) * 1e9 / b->rate) + 1;
    return wait < 1 ? 1 : wait;
}

/* ---- circuit breaker ---- */

void sn_breaker_init(sn_breaker *b, unsigned threshold, int64_t cooldown_ns)
{
    memset(b, 0, sizeof *b);
    b->threshold = threshold;
    b->cooldown_ns = cooldown_ns < 0 ? 0 : cooldown_ns;
}

int64_t sn_breaker_allow(sn_breaker *b, int64_t now_ns)
{
    if (b->state != SN_BREAKER_OPEN)
        return 0;
    if (now_ns < b->open_until_ns)
        return b->open_until_ns - now_ns;
    b->state = SN_BREAKER_HALF_OPEN;
    return 0;
}

void sn_breaker_success(sn_breaker *b)
{
    b->failures = 0;
    b->state = SN_BREAKER_CLOSED;
}

bool sn_breaker_failure(sn_breaker *b, int64_t now_ns)
{
    if (b->failures < UINT_MAX)
        b->failures++;
    if (b->threshold == 0)
        return false;
    if (b->state == SN_BREAKER_HALF_OPEN || b->failures >= b->threshold) {
        bool was_open = b->state == SN_BREAKER_OPEN;
        b->state = SN_BREAKER_OPEN;
        b->open_until_ns = now_ns + b->cooldown_ns;
        if (!was_open)
            b->opened++;
        return !was_open;
    }
    return false;
}

/* ---- settings ---- */

typedef struct desc_target {
    sn_deliver_settings s;
} desc_target;

static const sn_config_desc deliver_descs[] = {SN_DELIVER_DESCRIPTORS(desc_target, s)};

const sn_config_desc *sn_deliver_descriptors(size_t *n)
{
    *n = sizeof deliver_descs / sizeof deliver_descs[0];
    return deliver_descs;
}

void sn_deliver_policy_init(sn_deliver_policy *p)
{
    memset(p, 0, sizeof *p);
    p->rate = 10.0;
    p->burst = 20.0;
    p->backoff.initial_ms = 1000;
    p->backoff.max_ms = 300000;
    p->backoff.multiplier = 2.0;
    p->breaker_failures = 5;
    p->breaker_cooldown_ns = 30 * SN_NS_PER_SEC;
}

void sn_deliver_options_init(sn_deliver_options *o)
{
    memset(o, 0, sizeof *o);
    o->poll_ns = SN_NS_PER_SEC;
    o->busy_timeout_ms = SN_STORE_DEFAULT_BUSY_MS;
}

void sn_deliver_options_from_settings(sn_deliver_options *o, const sn_deliver_settings *s)
{
    o->max_attempts = (unsigned)(s->max_attempts > 0 ? s->max_attempts : 0);
    o->poll_ns = s->poll_ns > 0 ? s->poll_ns : SN_NS_PER_SEC;
    int64_t ms = s->busy_timeout_ns / SN_NS_PER_MS;
    o->busy_timeout_ms = (unsigned)(ms > 0 ? (ms > 3600000 ? 3600000 : ms) : 1);
}

/* ---- the engine ---- */

typedef struct worker {
    struct sn_deliver *d;
    sn_sink *sink;
    sn_deliver_rule rule;
    sn_deliver_policy policy;
    sn_store *st; /* this worker's own connection */
    pthread_t thread;
    bool started;
    /* worker-thread state */
    sn_token_bucket bucket;
    sn_breaker breaker;
    sn_backoff backoff;
    int64_t pause_until_ns; /* backoff after a failure */
    int64_t next_resend_ns;
    uint64_t rng;
    /* counters, any thread */
    _Atomic uint64_t delivered, failed, retried, dead, resent, pending, breaker_opened;
    _Atomic int breaker_state;
    char last_error[SN_SINK_REASON_MAX]; /* under d->mu */
    /* metrics (NULL without a registry) */
    sn_counter *m_ok, *m_failed, *m_dead, *m_retries;
    sn_gauge *m_depth, *m_open;
    sn_histogram *m_seconds;
} worker;

struct sn_deliver {
    sn_deliver_options opt;
    char dir[4096];
    pthread_mutex_t mu;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    bool stop;
    uint64_t kicks;
    unsigned nworkers;
    worker *workers[SN_DELIVER_MAX_SINKS];
    sn_metrics_family *f_delivered, *f_retries, *f_depth, *f_seconds, *f_open;
};

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * SN_NS_PER_SEC + ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static const double delivery_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                          2.5,   5,    10,    30,   60,  300,  900, 3600};

/* Registers the engine's families in m. Returns 0 or the registry's error. */
static int register_metrics(sn_deliver *d, sn_metrics *m, char *err, size_t errlen)
{
    int e = sn_metrics_register(
        m,
        &(sn_metrics_desc){.type = SN_METRICS_COUNTER,
                           .name = "sentinel_alerts_delivered_total",
                           .help = "Alert deliveries by sink and outcome (delivered: acknowledged "
                                   "by the receiver; failed: an attempt to retry; dead_letter: "
                                   "refused for good).",
                           .labels = {"sink", "outcome"}},
        &d->f_delivered, err, errlen);
    if (e == 0)
        e = sn_metrics_register(
            m,
            &(sn_metrics_desc){.type = SN_METRICS_COUNTER,
                               .name = "sentinel_alert_delivery_retries_total",
                               .help = "Delivery attempts of alerts whose earlier attempt failed.",
                               .labels = {"sink"}},
            &d->f_retries, err, errlen);
    if (e == 0)
        e = sn_metrics_register(
            m,
            &(sn_metrics_desc){.type = SN_METRICS_GAUGE,
                               .name = "sentinel_alert_delivery_queue_depth",
                               .help = "Deliveries pending in the sink's durable queue.",
                               .labels = {"sink"}},
            &d->f_depth, err, errlen);
    if (e == 0)
        e = sn_metrics_register(
            m,
            &(sn_metrics_desc){.type = SN_METRICS_HISTOGRAM,
                               .name = "sentinel_alert_delivery_seconds",
                               .help = "Time from queueing an alert change to the receiver's "
                                       "acknowledgement.",
                               .labels = {"sink"},
                               .buckets = delivery_buckets,
                               .bucket_count =
                                   sizeof delivery_buckets / sizeof delivery_buckets[0]},
            &d->f_seconds, err, errlen);
    if (e == 0)
        e = sn_metrics_register(
            m,
            &(sn_metrics_desc){.type = SN_METRICS_GAUGE,
                               .name = "sentinel_alert_delivery_breaker_open",
                               .help = "1 while the sink's circuit breaker is open.",
                               .labels = {"sink"}},
            &d->f_open, err, errlen);
    return e;
}

int sn_deliver_create(const sn_deliver_options *o, sn_deliver **out, char *err, size_t errlen)
{
    *out = NULL;
    if (o == NULL || o->store_dir == NULL || o->store_dir[0] == '\0' || o->poll_ns <= 0 ||
        strlen(o->store_dir) >= sizeof((sn_deliver *)0)->dir) {
        snprintf(err, errlen, "deliver: options need a store directory and a poll interval > 0");
        return -EINVAL;
    }
    sn_deliver *d = calloc(1, sizeof *d);
    if (d == NULL) {
        snprintf(err, errlen, "deliver: out of memory");
        return -ENOMEM;
    }
    d->opt = *o;
    memcpy(d->dir, o->store_dir, strlen(o->store_dir) + 1);
    d->opt.store_dir = d->dir;
    int e = -ENOMEM;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        goto out_free_d;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&d->cond, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        goto out_free_d;
    }
    pthread_condattr_destroy(&ca);
    if (pthread_mutex_init(&d->mu, NULL) != 0)
        goto out_free_cond;
    if (o->metrics != NULL && (e = register_metrics(d, o->metrics, err, errlen)) != 0)
        goto out_free_mutex;
    *out = d;
    return 0;

out_free_mutex:
    pthread_mutex_destroy(&d->mu);
out_free_cond:
    pthread_cond_destroy(&d->cond);
out_free_d:
    if (e == -ENOMEM)
        snprintf(err, errlen, "deliver: out of memory");
    free(d);
    return e;
}

/* Waits on d->cond up to ns unless stopped or kicked since `gen`. */
static void worker_wait(sn_deliver *d, uint64_t gen, int64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t t = (int64_t)ts.tv_sec * SN_NS_PER_SEC + ts.tv_nsec + ns;
    ts.tv_sec = (time_t)(t / SN_NS_PER_SEC);
    ts.tv_nsec = (long)(t % SN_NS_PER_SEC);
    pthread_mutex_lock(&d->mu);
    while (!d->stop && d->kicks == gen) {
        if (pthread_cond_timedwait(&d->cond, &d->mu, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&d->mu);
}

/* Splits a queued "<change> <severity>\n<body>" into m. Returns 0 or -EINVAL. */
static int parse_envelope(const sn_store_delivery *dl, sn_sink_msg *m)
{
    const char *nl = memchr(dl->payload, '\n', dl->payload_len);
    const char *sp = nl != NULL ? memchr(dl->payload, ' ', (size_t)(nl - dl->payload)) : NULL;
    if (sp == NULL)
        return -EINVAL;
    char change[16], sev[16];
    size_t cl = (size_t)(sp - dl->payload), sl = (size_t)(nl - sp - 1);
    if (cl >= sizeof change || sl >= sizeof sev)
        return -EINVAL;
    memcpy(change, dl->payload, cl);
    change[cl] = '\0';
    memcpy(sev, sp + 1, sl);
    sev[sl] = '\0';
    if (sn_alert_change_from_name(change, &m->change) != 0 ||
        sn_severity_from_name(sev, &m->severity) != 0)
        return -EINVAL;
    m->delivery_id = dl->id;
    m->alert_id = dl->alert_id;
    m->body = nl + 1;
    m->len = dl->payload_len - (size_t)(nl + 1 - dl->payload);
    return 0;
}

static void update_depth(worker *w)
{
    uint64_t pending = 0;
    if (sn_store_delivery_depth(w->st, w->sink->name, &pending, NULL, NULL) == 0) {
        atomic_store(&w->pending, pending);
        sn_gauge_set(w->m_depth, (double)pending);
    }
}

static void set_breaker_state(worker *w)
{
    atomic_store(&w->breaker_state, (int)w->breaker.state);
    atomic_store(&w->breaker_opened, w->breaker.opened);
    sn_gauge_set(w->m_open, w->breaker.state == SN_BREAKER_OPEN ? 1.0 : 0.0);
}

typedef struct resend_ctx {
    worker *w;
    bool failed;
} resend_ctx;

/* sn_store_alerts_firing visitor: re-sends one firing alert the route wants. */
static int resend_one(const sn_alert *a, void *ud)
{
    resend_ctx *rc = ud;
    worker *w = rc->w;
    if (!sn_deliver_rule_match(&w->rule, SN_ALERT_CHANGE_FIRED, a) &&
        !sn_deliver_rule_match(&w->rule, SN_ALERT_CHANGE_UPDATED, a) &&
        !sn_deliver_rule_match(&w->rule, SN_ALERT_CHANGE_ESCALATED, a))
        return 0;
    size_t len = 0;
    char *body = w->sink->ops->format(w->sink, SN_ALERT_CHANGE_UPDATED, a, &len);
    if (body == NULL)
        return 0;
    sn_sink_msg m = {.delivery_id = 0,
                     .alert_id = a->alert_id,
                     .change = SN_ALERT_CHANGE_UPDATED,
                     .severity = a->severity,
                     .body = body,
                     .len = len};
    char reason[SN_SINK_REASON_MAX] = "";
    sn_sink_result r = w->sink->ops->send(w->sink, &m, reason, sizeof reason);
    free(body);
    if (r == SN_SINK_OK) {
        atomic_fetch_add(&w->resent, 1);
        return 0;
    }
    sn_log_warn("alert re-send failed", SN_LOG_STR("sink", w->sink->name),
                SN_LOG_STR("alert_id", a->alert_id), SN_LOG_STR("reason", reason));
    rc->failed = r == SN_SINK_RETRY;
    return rc->failed ? 1 : 0; /* a receiver that is down: stop, the next round retries */
}

/* Worker thread: remembers the reason of a failed or refused attempt for the sink's stats. */
static void set_last_error(worker *w, const char *reason)
{
    pthread_mutex_lock(&w->d->mu);
    snprintf(w->last_error, sizeof w->last_error, "%s", reason[0] ? reason : "unknown");
    pthread_mutex_unlock(&w->d->mu);
}

/* One delivery (or a wait). Returns how long to wait before the next step (0: go on now). */
static int64_t worker_step(worker *w)
{
    sn_deliver *d = w->d;
    const char *name = w->sink->name;
    int64_t now = realtime_ns();
    if (now < w->pause_until_ns)
        return w->pause_until_ns - now;
    int64_t wait = sn_breaker_allow(&w->breaker, now);
    if (wait > 0)
        return wait;
    if (w->sink->resend_ns > 0 && now >= w->next_resend_ns) {
        resend_ctx rc = {.w = w};
        w->next_resend_ns = now + w->sink->resend_ns;
        sn_store_alerts_firing(w->st, resend_one, &rc, NULL);
    }
    sn_store_delivery dl = {0};
    int e = sn_store_delivery_next_due(w->st, name, now, &dl);
    if (e == -ENOENT) {
        update_depth(w);
        wait = d->opt.poll_ns;
        int64_t when;
        if (sn_store_delivery_next_time(w->st, name, &when) == 0 && when - now < wait)
            wait = when - now;
        if (w->sink->resend_ns > 0 && w->next_resend_ns - now < wait)
            wait = w->next_resend_ns - now;
        return wait < SN_NS_PER_MS ? SN_NS_PER_MS : wait;
    }
    if (e != 0) {
        sn_log_error("reading the delivery queue failed", SN_LOG_STR("sink", name),
                     SN_LOG_STR("reason", sn_store_errmsg(w->st)));
        return d->opt.poll_ns;
    }
    wait = sn_token_bucket_take(&w->bucket, now);
    if (wait > 0) {
        sn_store_delivery_clear(&dl);
        return wait;
    }
    sn_sink_msg m;
    if (parse_envelope(&dl, &m) != 0) {
        sn_store_delivery_dead_letter(w->st, dl.id, now, "malformed queued message");
        atomic_fetch_add(&w->dead, 1);
        sn_counter_inc(w->m_dead);
        sn_store_delivery_clear(&dl);
        update_depth(w);
        return 0;
    }
    if (dl.attempts > 0) {
        atomic_fetch_add(&w->retried, 1);
        sn_counter_inc(w->m_retries);
    }
    char reason[SN_SINK_REASON_MAX] = "";
    sn_sink_result r = w->sink->ops->send(w->sink, &m, reason, sizeof reason);
    int64_t done = realtime_ns();
    switch (r) {
    case SN_SINK_OK:
        e = sn_store_delivery_mark_delivered(w->st, dl.id, done);
        if (e != 0)
            sn_log_error("recording a delivery failed (it will be sent again)",
                         SN_LOG_STR("sink", name), SN_LOG_INT("delivery_id", dl.id),
                         SN_LOG_STR("reason", sn_store_errmsg(w->st)));
        atomic_fetch_add(&w->delivered, 1);
        sn_counter_inc(w->m_ok);
        sn_histogram_observe(w->m_seconds,
                             (double)(done > dl.created_ns ? done - dl.created_ns : 0) / 1e9);
        sn_breaker_success(&w->breaker);
        sn_backoff_reset(&w->backoff);
        break;
    case SN_SINK_RETRY: {
        bool dead = false;
        set_last_error(w, reason);
        uint32_t delay_ms = sn_backoff_next(&w->backoff, &w->policy.backoff, xorshift(&w->rng));
        /* Due at its old time: it stays the head of the queue; the sink waits instead. */
        e = sn_store_delivery_mark_failed(w->st, dl.id, done, dl.next_attempt_ns, reason, &dead);
        atomic_fetch_add(&w->failed, 1);
        sn_counter_inc(w->m_failed);
        if (e == 0 && dead) {
            atomic_fetch_add(&w->dead, 1);
            sn_counter_inc(w->m_dead);
            sn_log_warn("delivery dead-lettered after its last attempt", SN_LOG_STR("sink", name),
                        SN_LOG_STR("alert_id", dl.alert_id), SN_LOG_STR("reason", reason));
        }
        if (e != 0)
            sn_log_error("recording a failed delivery failed", SN_LOG_STR("sink", name),
                         SN_LOG_INT("delivery_id", dl.id),
                         SN_LOG_STR("reason", sn_store_errmsg(w->st)));
        w->pause_until_ns = done + (int64_t)delay_ms * SN_NS_PER_MS;
        if (sn_breaker_failure(&w->breaker, done))
            sn_log_warn("sink circuit breaker open", SN_LOG_STR("sink", name),
                        SN_LOG_UINT("failures", w->breaker.failures), SN_LOG_STR("reason", reason));
        else if (!dead)
            sn_log_info("delivery failed, will retry", SN_LOG_STR("sink", name),
                        SN_LOG_STR("alert_id", dl.alert_id), SN_LOG_UINT("retry_ms", delay_ms),
                        SN_LOG_STR("reason", reason));
        break;
    }
    case SN_SINK_PERMANENT:
        set_last_error(w, reason);
        e = sn_store_delivery_dead_letter(w->st, dl.id, done, reason);
        atomic_fetch_add(&w->dead, 1);
        sn_counter_inc(w->m_dead);
        sn_log_warn("delivery refused, dead-lettered", SN_LOG_STR("sink", name),
                    SN_LOG_STR("alert_id", dl.alert_id), SN_LOG_STR("reason", reason));
        /* The receiver answered: it is up. */
        sn_breaker_success(&w->breaker);
        sn_backoff_reset(&w->backoff);
        break;
    }
    set_breaker_state(w);
    sn_store_delivery_clear(&dl);
    update_depth(w);
    return 0;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    sn_deliver *d = w->d;
    for (;;) {
        pthread_mutex_lock(&d->mu);
        bool stop = d->stop;
        uint64_t gen = d->kicks;
        pthread_mutex_unlock(&d->mu);
        if (stop)
            break;
        int64_t wait = worker_step(w);
        if (wait > 0)
            worker_wait(d, gen, wait);
    }
    return NULL;
}

static void worker_free(worker *w)
{
    if (w == NULL)
        return;
    sn_store_close(w->st);
    sn_sink_destroy(w->sink);
    free(w);
}

int sn_deliver_add_sink(sn_deliver *d, sn_sink *sink, const sn_deliver_rule *rule,
                        const sn_deliver_policy *policy, char *err, size_t errlen)
{
    int e;
    if (d->nworkers >= SN_DELIVER_MAX_SINKS) {
        snprintf(err, errlen, "deliver: at most %d sinks", SN_DELIVER_MAX_SINKS);
        e = -ENOSPC;
        goto out_free_sink;
    }
    size_t nl = strnlen(sink->name, sizeof sink->name);
    if (nl == 0 || nl >= sizeof sink->name) {
        snprintf(err, errlen, "deliver: a sink needs a name under %d bytes", SN_STORE_SINK_MAX);
        e = -EINVAL;
        goto out_free_sink;
    }
    for (unsigned i = 0; i < d->nworkers; i++) {
        if (strcmp(d->workers[i]->sink->name, sink->name) == 0) {
            snprintf(err, errlen, "deliver: sink %s added twice", sink->name);
            e = -EEXIST;
            goto out_free_sink;
        }
    }
    worker *w = calloc(1, sizeof *w);
    if (w == NULL) {
        snprintf(err, errlen, "deliver: out of memory");
        e = -ENOMEM;
        goto out_free_sink;
    }
    w->d = d;
    w->sink = sink;
    w->rule = *rule;
    w->policy = *policy;
    const char *bad = sn_backoff_config_validate(&w->policy.backoff);
    if (bad != NULL) {
        snprintf(err, errlen, "deliver: sink %s: %s", sink->name, bad);
        e = -EINVAL;
        goto out_free_worker;
    }
    sn_store_options so;
    sn_store_options_init(&so);
    so.max_attempts = d->opt.max_attempts;
    so.busy_timeout_ms = d->opt.busy_timeout_ms;
    char serr[256];
    e = sn_store_open(d->dir, &so, &w->st, serr, sizeof serr);
    if (e != 0) {
        snprintf(err, errlen, "deliver: sink %s: %s", sink->name, serr);
        goto out_free_worker;
    }
    int64_t now = realtime_ns();
    sn_token_bucket_init(&w->bucket, policy->rate, policy->burst, now);
    sn_breaker_init(&w->breaker, policy->breaker_failures, policy->breaker_cooldown_ns);
    if (getrandom(&w->rng, sizeof w->rng, 0) != (ssize_t)sizeof w->rng || w->rng == 0)
        w->rng = (uint64_t)now | 1u;
    if (d->f_delivered != NULL) {
        const char *n = sink->name;
        w->m_ok = sn_metrics_counter(d->f_delivered, (const char *[]){n, "delivered"});
        w->m_failed = sn_metrics_counter(d->f_delivered, (const char *[]){n, "failed"});
        w->m_dead = sn_metrics_counter(d->f_delivered, (const char *[]){n, "dead_letter"});
        w->m_retries = sn_metrics_counter(d->f_retries, (const char *[]){n});
        w->m_depth = sn_metrics_gauge(d->f_depth, (const char *[]){n});
        w->m_seconds = sn_metrics_histogram(d->f_seconds, (const char *[]){n});
        w->m_open = sn_metrics_gauge(d->f_open, (const char *[]){n});
    }
    update_depth(w);
    e = -pthread_create(&w->thread, NULL, worker_main, w);
    if (e != 0) {
        snprintf(err, errlen, "deliver: sink %s: cannot start its thread", sink->name);
        goto out_free_worker;
    }
    w->started = true;
    d->workers[d->nworkers++] = w;
    sn_log_info("alert sink started", SN_LOG_STR("sink", sink->name),
                SN_LOG_STR("kind", sink->ops->kind), SN_LOG_UINT("pending", w->pending));
    return 0;

out_free_worker:
    worker_free(w);
    return e;
out_free_sink:
    sn_sink_destroy(sink);
    return e;
}

void sn_deliver_destroy(sn_deliver *d)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);
    for (unsigned i = 0; i < d->nworkers; i++) {
        if (d->workers[i]->started)
            pthread_join(d->workers[i]->thread, NULL);
        worker_free(d->workers[i]);
    }
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cond);
    free(d);
}

void sn_deliver_kick(sn_deliver *d)
{
    pthread_mutex_lock(&d->mu);
    d->kicks++;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);
}

int sn_deliver_enqueue(sn_deliver *d, sn_store *st, sn_alert_change change, const sn_alert *a,
                       int64_t now_ns, unsigned *queued)
{
    unsigned n = 0;
    int first = 0;
    for (unsigned i = 0; i < d->nworkers; i++) {
        worker *w = d->workers[i];
        if (!sn_deliver_rule_match(&w->rule, change, a))
            continue;
        size_t blen = 0;
        char *body = w->sink->ops->format(w->sink, change, a, &blen);
        if (body == NULL) {
            first = first != 0 ? first : -ENOMEM;
            sn_log_error("formatting an alert failed", SN_LOG_STR("sink", w->sink->name),
                         SN_LOG_STR("alert_id", a->alert_id));
            continue;
        }
        const char *cn = sn_alert_change_name(change), *sv = sn_severity_name(a->severity);
        size_t hl = strlen(cn) + 1 + strlen(sv) + 1;
        char *payload = malloc(hl + blen + 1);
        if (payload == NULL) {
            free(body);
            first = first != 0 ? first : -ENOMEM;
            continue;
        }
        snprintf(payload, hl + 1, "%s %s\n", cn, sv);
        memcpy(payload + hl, body, blen + 1);
        free(body);
        int e = sn_store_delivery_enqueue(st, w->sink->name, a->alert_id, payload, hl + blen,
                                          now_ns, NULL);
        free(payload);
        if (e != 0) {
            first = first != 0 ? first : e;
            sn_log_error("queueing an alert delivery failed", SN_LOG_STR("sink", w->sink->name),
                         SN_LOG_STR("alert_id", a->alert_id),
                         SN_LOG_STR("reason", sn_store_errmsg(st)));
            continue;
        }
        n++;
    }
    if (queued != NULL)
        *queued = n;
    if (n > 0)
        sn_deliver_kick(d);
    return first != 0 ? first : (int)n;
}

int sn_deliver_sink_stats_get(sn_deliver *d, const char *name, sn_deliver_sink_stats *out)
{
    for (unsigned i = 0; i < d->nworkers; i++) {
        worker *w = d->workers[i];
        if (strcmp(w->sink->name, name) != 0)
            continue;
        out->delivered = atomic_load(&w->delivered);
        out->failed = atomic_load(&w->failed);
        out->retried = atomic_load(&w->retried);
        out->dead_lettered = atomic_load(&w->dead);
        out->resent = atomic_load(&w->resent);
        out->pending = atomic_load(&w->pending);
        out->breaker = (sn_breaker_state)atomic_load(&w->breaker_state);
        out->breaker_opened = atomic_load(&w->breaker_opened);
        pthread_mutex_lock(&d->mu);
        memcpy(out->last_error, w->last_error, sizeof out->last_error);
        pthread_mutex_unlock(&d->mu);
        return 0;
    }
    return -ENOENT;
}

/* The shared policy of the settings with one sink's rate and burst. */
static int policy_from_settings(const sn_deliver_settings *s, const sn_deliver_route_settings *r,
                                sn_deliver_policy *p, char *err, size_t errlen)
{
    sn_deliver_policy_init(p);
    p->rate = r->rate;
    p->burst = (double)r->burst;
    p->backoff.initial_ms = (uint32_t)(s->backoff_initial_ns / SN_NS_PER_MS);
    int64_t max_ms = s->backoff_max_ns / SN_NS_PER_MS;
    p->backoff.max_ms = (uint32_t)(max_ms > SN_BACKOFF_MS_LIMIT ? SN_BACKOFF_MS_LIMIT : max_ms);
    p->breaker_failures = (unsigned)s->breaker_failures;
    p->breaker_cooldown_ns = s->breaker_cooldown_ns;
    const char *bad = sn_backoff_config_validate(&p->backoff);
    if (bad != NULL) {
        snprintf(err, errlen, "deliver: delivery.%s", bad);
        return -EINVAL;
    }
    return 0;
}

/* Adds one configured sink (created by the caller) with its route. */
static int add_one(sn_deliver *d, const sn_deliver_settings *s, const sn_deliver_route_settings *r,
                   sn_sink *sink, char *err, size_t errlen)
{
    sn_deliver_rule rule;
    sn_deliver_policy pol;
    char sub[SN_CONFIG_ERROR_MAX];
    int e = sn_deliver_rule_from_settings(r, &rule, sub, sizeof sub);
    if (e == 0)
        e = policy_from_settings(s, r, &pol, sub, sizeof sub);
    if (e != 0) {
        snprintf(err, errlen, "sinks.%s: %s", sink->name, sub);
        sn_sink_destroy(sink);
        return e;
    }
    return sn_deliver_add_sink(d, sink, &rule, &pol, err, errlen);
}

int sn_deliver_add_configured(sn_deliver *d, const sn_deliver_settings *s, char *err, size_t errlen)
{
    int added = 0, e;
    sn_sink *sink;
    if (s->webhook.url[0] != '\0') {
        sn_webhook_config c = {.url = s->webhook.url,
                               .token = s->webhook.token,
                               .secret = s->webhook.secret,
                               .timeout_ns = s->webhook.timeout_ns};
        if ((e = sn_sink_webhook_create(&c, &sink, err, errlen)) != 0 ||
            (e = add_one(d, s, &s->webhook.route, sink, err, errlen)) != 0)
            return e;
        added++;
    }
    if (s->alertmanager.url[0] != '\0') {
        sn_alertmanager_config c = {.url = s->alertmanager.url,
                                    .generator_url = s->alertmanager.generator_url,
                                    .timeout_ns = s->alertmanager.timeout_ns,
                                    .resend_ns = s->alertmanager.resend_ns};
        if ((e = sn_sink_alertmanager_create(&c, &sink, err, errlen)) != 0 ||
            (e = add_one(d, s, &s->alertmanager.route, sink, err, errlen)) != 0)
            return e;
        added++;
    }
    if (s->amqp.url[0] != '\0') {
        sn_amqp_config c = {
            .url = s->amqp.url, .exchange = s->amqp.exchange, .timeout_ns = s->amqp.timeout_ns};
        if ((e = sn_sink_amqp_create(&c, &sink, err, errlen)) != 0 ||
            (e = add_one(d, s, &s->amqp.route, sink, err, errlen)) != 0)
            return e;
        added++;
    }
    if (s->redis.url[0] != '\0') {
        sn_redis_sink_config c = {.url = s->redis.url,
                                  .stream = s->redis.stream,
                                  .retention_ns = s->redis.retention_ns,
                                  .timeout_ns = s->redis.timeout_ns};
        if ((e = sn_sink_redis_create(&c, &sink, err, errlen)) != 0 ||
            (e = add_one(d, s, &s->redis.route, sink, err, errlen)) != 0)
            return e;
        added++;
    }
    return added;
}

unsigned sn_deliver_sink_count(const sn_deliver *d)
{
    return d != NULL ? d->nworkers : 0;
}

const char *sn_deliver_sink_name(const sn_deliver *d, unsigned i)
{
    return d != NULL && i < d->nworkers ? d->workers[i]->sink->name : NULL;
}
