/*
 * alert_ship.c -- local alerts ahead of their batch (see alert_ship.h and docs/sidecar.md).
 *
 * The queue is a ring of max_pending entries; the call in flight carries its first `sending`
 * entries (copied into a contiguous scratch for the encoder), which stay queued until the
 * answer: popped on OK or DUPLICATE or a refusal for good, resent after a backoff otherwise.
 * Expiry (max_age) is checked before each send and never touches entries in flight.
 */
#include "alert_ship.h"

#include "backoff.h"
#include "batch.h"
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PENDING_LIMIT 65536u

enum fallback { FB_QUEUE_FULL = 0, FB_EXPIRED, FB_REFUSED, FB_BATCH_FIRST, FB_STOPPED, FB_COUNT };
static const char *const fallback_names[FB_COUNT] = {"queue_full", "expired", "refused",
                                                     "batch_first", "stopped"};

typedef struct entry {
    sn_local_alert alert;
    uint64_t queued_ms; /* uv_now when pushed */
} entry;

struct sn_alert_ship {
    sn_alert_ship_config cfg;
    char sidecar_id[SN_BATCH_ID_MAX];
    uv_loop_t *loop;
    sn_ship *ship;
    sn_batch_encoder *enc;
    uv_timer_t *timer; /* heap: its close callback frees the struct */

    entry *ring; /* max_pending entries */
    size_t head, count;
    size_t sending;          /* the first `sending` entries are in the call in flight */
    sn_local_alert *scratch; /* max_per_call alerts: the call's batch */
    bool waiting;            /* the retry timer runs */
    bool closing;
    bool warned_refused; /* the "aggregator refuses alerts ahead" warning was logged */
    sn_backoff backoff;
    sn_backoff_config backoff_cfg;

    sn_counter *ahead;
    sn_counter *fallback[FB_COUNT];
    sn_gauge *pending_gauge;
};

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

void sn_alert_ship_config_init(sn_alert_ship_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    sn_ship_config_init(&cfg->ship);
    cfg->max_pending = SN_ALERT_SHIP_MAX_PENDING_DEFAULT;
    cfg->max_per_call = SN_ALERT_SHIP_MAX_PER_CALL_DEFAULT;
    cfg->max_age_ms = SN_ALERT_SHIP_MAX_AGE_MS_DEFAULT;
    cfg->backoff_initial_ms = SN_ALERT_SHIP_BACKOFF_INITIAL_MS;
    cfg->backoff_max_ms = SN_ALERT_SHIP_BACKOFF_MAX_MS;
}

/* ---- counting ---------------------------------------------------------------------------- */

static void count_fallback(sn_alert_ship *as, enum fallback why, size_t n)
{
    if (as->fallback[why] != NULL)
        sn_counter_add(as->fallback[why], n);
}

static void update_gauge(sn_alert_ship *as)
{
    if (as->pending_gauge != NULL)
        sn_gauge_set(as->pending_gauge, (double)as->count);
}

/* Registers the counters (nothing without a registry). Returns 0 or a negative errno. */
static int register_metrics(sn_alert_ship *as, char *err, size_t errlen)
{
    sn_metrics *m = as->cfg.metrics;
    if (m == NULL)
        return 0;
    sn_metrics_family *f;
    sn_metrics_desc d = {.type = SN_METRICS_COUNTER,
                         .name = "sentinel_sidecar_local_alerts_ahead_total",
                         .help = "local alerts the aggregator took ahead of their batch"};
    int rc = sn_metrics_register(m, &d, &f, err, errlen);
    if (rc != 0)
        return rc;
    if ((as->ahead = sn_metrics_counter(f, NULL)) == NULL)
        return -ENOMEM;
    d = (sn_metrics_desc){.type = SN_METRICS_COUNTER,
                          .name = "sentinel_sidecar_local_alerts_fallback_total",
                          .help = "local alerts not sent ahead, left to their sequenced batch, "
                                  "by reason",
                          .labels = {"reason"}};
    if ((rc = sn_metrics_register(m, &d, &f, err, errlen)) != 0)
        return rc;
    for (int i = 0; i < FB_COUNT; i++) {
        const char *v[] = {fallback_names[i]};
        if ((as->fallback[i] = sn_metrics_counter(f, v)) == NULL)
            return -ENOMEM;
    }
    return sn_metrics_register_gauge(m, "sentinel_sidecar_local_alerts_ahead_pending",
                                     "local alerts waiting to be sent ahead of their batch",
                                     &as->pending_gauge, err, errlen);
}

/* ---- the queue --------------------------------------------------------------------------- */

static entry *at(sn_alert_ship *as, size_t i)
{
    return &as->ring[(as->head + i) % as->cfg.max_pending];
}

static void pop(sn_alert_ship *as, size_t n)
{
    as->head = (as->head + n) % as->cfg.max_pending;
    as->count -= n;
}

/* Drops the queued entries (none in flight) older than max_age: their batches carry them. */
static void expire(sn_alert_ship *as)
{
    uint64_t now = uv_now(as->loop);
    size_t n = 0;
    while (n < as->count && now - at(as, n)->queued_ms >= as->cfg.max_age_ms)
        n++;
    if (n == 0)
        return;
    pop(as, n);
    count_fallback(as, FB_EXPIRED, n);
    sn_log_warn("local alerts not delivered ahead in time; their batches carry them",
                SN_LOG_UINT("alerts", n));
}

/* ---- sending ----------------------------------------------------------------------------- */

static void kick(sn_alert_ship *as);

static void on_timer(uv_timer_t *t)
{
    sn_alert_ship *as = t->data;
    as->waiting = false;
    kick(as);
}

static void wait_then_send(sn_alert_ship *as, uint32_t delay_ms)
{
    if (delay_ms == 0)
        delay_ms = sn_backoff_next(&as->backoff, &as->backoff_cfg, sn_backoff_random());
    as->waiting = true;
    uv_timer_start(as->timer, on_timer, delay_ms, 0);
}

/* Whether a failed call can never succeed with the same alerts: the aggregator refuses them
 * (INVALID_ARGUMENT: e.g. an older one, which refuses sequence 0), does not know the method
 * (UNIMPLEMENTED), or refuses their size for good (RESOURCE_EXHAUSTED without a delay). */
static bool refused_for_good(const sn_ship_result *r)
{
    return r->grpc_status == 3 || r->grpc_status == 12 ||
           (r->grpc_status == 8 && r->retry_after_ms == 0);
}

static void on_done(sn_ship *ship, const sn_ship_result *r, void *ud)
{
    (void)ship;
    sn_alert_ship *as = ud;
    size_t n = as->sending;
    as->sending = 0;
    if (as->closing)
        return; /* destroy drops the queue */
    switch (r->outcome) {
    case SN_SHIP_ACKED:
        pop(as, n);
        if (as->ahead != NULL)
            sn_counter_add(as->ahead, n);
        sn_backoff_reset(&as->backoff);
        break;
    case SN_SHIP_DUPLICATE:
        pop(as, n);
        count_fallback(as, FB_BATCH_FIRST, n);
        sn_backoff_reset(&as->backoff);
        break;
    case SN_SHIP_RETRY_AFTER:
        wait_then_send(as, r->retry_after_ms);
        break;
    case SN_SHIP_FAILED:
        if (refused_for_good(r)) {
            pop(as, n);
            count_fallback(as, FB_REFUSED, n);
            if (!as->warned_refused)
                sn_log_warn("the aggregator refuses local alerts ahead of their batch; they "
                            "travel in their batches",
                            SN_LOG_INT("grpc_status", r->grpc_status),
                            SN_LOG_STR("error", r->message));
            as->warned_refused = true;
            break;
        }
        wait_then_send(as, r->retry_after_ms);
        break;
    }
    update_gauge(as);
    kick(as);
}

/* Sends the oldest queued alerts (up to max_per_call) when nothing is in flight or waiting. */
static void kick(sn_alert_ship *as)
{
    if (as->closing || as->waiting || sn_ship_busy(as->ship))
        return;
    expire(as);
    while (as->count > 0) {
        size_t n = as->count < as->cfg.max_per_call ? as->count : as->cfg.max_per_call;
        for (size_t i = 0; i < n; i++)
            as->scratch[i] = at(as, i)->alert;
        sn_batch b = {.sidecar_id = as->sidecar_id,
                      .sequence = 0,
                      .alerts = as->scratch,
                      .n_alerts = n,
                      .created_unix_nano = as->scratch[0].time_unix_nano};
        const uint8_t *req;
        size_t len;
        char err[160];
        int rc = sn_batch_encode(as->enc, &b, &req, &len, NULL, err, sizeof err);
        if (rc != 0) {
            /* An alert the aggregator would refuse: its batch's seal reports it too. */
            sn_log_error("cannot encode local alerts to send ahead; their batches carry them",
                         SN_LOG_STR("error", err), SN_LOG_UINT("alerts", n));
            pop(as, n);
            count_fallback(as, FB_REFUSED, n);
            continue;
        }
        rc = sn_ship_send(as->ship, req, len, on_done, as);
        if (rc != 0) {
            sn_log_warn("cannot start an Ingest call for local alerts", SN_LOG_ERRNO(rc));
            wait_then_send(as, 0);
            break;
        }
        as->sending = n;
        break;
    }
    update_gauge(as);
}

/* ---- public -------------------------------------------------------------------------------- */

void sn_alert_ship_push(sn_alert_ship *as, const sn_local_alert *alert)
{
    if (as->closing)
        return;
    if (as->count >= as->cfg.max_pending) {
        count_fallback(as, FB_QUEUE_FULL, 1);
        return;
    }
    entry *e = &as->ring[(as->head + as->count) % as->cfg.max_pending];
    e->alert = *alert;
    e->queued_ms = uv_now(as->loop);
    as->count++;
    kick(as);
}

size_t sn_alert_ship_pending(const sn_alert_ship *as)
{
    return as->count;
}

static int check_config(const sn_alert_ship_config *cfg, char *err, size_t errlen)
{
    size_t idlen = cfg->sidecar_id != NULL ? strnlen(cfg->sidecar_id, SN_BATCH_ID_MAX) : 0;
    if (idlen == 0 || idlen >= SN_BATCH_ID_MAX) {
        set_err(err, errlen, "alert ship: sidecar_id must be 1 to 128 bytes");
        return -EINVAL;
    }
    if (cfg->max_pending < 1 || cfg->max_pending > MAX_PENDING_LIMIT) {
        set_err(err, errlen, "alert ship: max_pending must be 1 to 65536");
        return -EINVAL;
    }
    if (cfg->max_per_call < 1 || cfg->max_per_call > cfg->max_pending) {
        set_err(err, errlen, "alert ship: max_per_call must be 1 to max_pending");
        return -EINVAL;
    }
    if (cfg->max_age_ms < 1) {
        set_err(err, errlen, "alert ship: max_age_ms must be >= 1");
        return -EINVAL;
    }
    sn_backoff_config bc = {cfg->backoff_initial_ms, cfg->backoff_max_ms, 2.0};
    const char *why = sn_backoff_config_validate(&bc);
    if (why != NULL) {
        set_err(err, errlen, why);
        return -EINVAL;
    }
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    sn_alert_ship *as = h->data;
    free(h);
    if (as == NULL)
        return;
    free(as->ring);
    free(as->scratch);
    free(as);
}

int sn_alert_ship_create(const sn_alert_ship_config *cfg, uv_loop_t *loop, sn_alert_ship **out,
                         char *err, size_t errlen)
{
    int rc = check_config(cfg, err, errlen);
    if (rc != 0)
        return rc;
    rc = -ENOMEM;
    sn_alert_ship *as = calloc(1, sizeof *as);
    if (as == NULL) {
        set_err(err, errlen, "alert ship: out of memory");
        return rc;
    }
    as->cfg = *cfg;
    memcpy(as->sidecar_id, cfg->sidecar_id, strnlen(cfg->sidecar_id, SN_BATCH_ID_MAX - 1));
    as->cfg.sidecar_id = as->sidecar_id;
    as->loop = loop;
    as->backoff_cfg = (sn_backoff_config){cfg->backoff_initial_ms, cfg->backoff_max_ms, 2.0};
    as->ring = calloc(cfg->max_pending, sizeof *as->ring);
    as->scratch = calloc(cfg->max_per_call, sizeof *as->scratch);
    as->timer = calloc(1, sizeof *as->timer);
    if (as->ring == NULL || as->scratch == NULL || as->timer == NULL) {
        set_err(err, errlen, "alert ship: out of memory");
        goto fail_free;
    }
    if ((rc = register_metrics(as, err, errlen)) != 0)
        goto fail_free;
    sn_batch_config bc;
    sn_batch_config_init(&bc);
    bc.zstd_level = 0; /* a few alerts: compression would cost more than it saves */
    bc.max_events = 1;
    bc.max_alerts = cfg->max_per_call;
    bc.max_message_bytes = cfg->ship.max_message_bytes > 4096 ? cfg->ship.max_message_bytes - 4096
                                                              : cfg->ship.max_message_bytes;
    if ((rc = sn_batch_encoder_create(&bc, &as->enc, err, errlen)) != 0)
        goto fail_free;
    sn_ship_config sc = cfg->ship;
    sc.own_connection = true; /* never behind a large batch on a shared connection */
    if ((rc = sn_ship_create(&sc, loop, &as->ship, err, errlen)) != 0)
        goto fail_encoder;
    uv_timer_init(loop, as->timer);
    as->timer->data = as; /* active (keeping the loop alive) only while a retry waits */
    update_gauge(as);
    *out = as;
    return 0;

fail_encoder:
    sn_batch_encoder_destroy(as->enc);
fail_free:
    free(as->ring);
    free(as->scratch);
    free(as->timer);
    free(as);
    return rc;
}

void sn_alert_ship_destroy(sn_alert_ship *as)
{
    if (as == NULL)
        return;
    as->closing = true;
    uv_timer_stop(as->timer);
    sn_ship_destroy(as->ship); /* the call in flight is cancelled; on_done ignores it */
    as->ship = NULL;
    sn_batch_encoder_destroy(as->enc);
    as->enc = NULL;
    if (as->count > 0) {
        count_fallback(as, FB_STOPPED, as->count);
        as->count = 0;
    }
    update_gauge(as);
    uv_close((uv_handle_t *)as->timer, on_timer_closed);
}
