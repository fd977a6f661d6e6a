/*
 * metric_feed.c -- GenAI metric points become aggregates where spans are absent (see
 * metric_feed.h).
 *
 * The coverage table is open addressing over a probe window of PROBE slots: a slot holds a
 * 64-bit hash of (service, model) and the time of the pair's last span. A pair's hash is
 * FNV-1a over service, a separator byte and model; a collision could only make a pair look
 * covered (its points dropped as covered), at odds of about n / 2^64.
 */
#include "metric_feed.h"

#include "otlp/metrics_delta.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PROBE          8
#define LIMIT_MAX      ((size_t)1 << 20)
#define SERIES_IDLE_NS (INT64_C(3600) * 1000000000) /* a series idle this long is forgotten */

typedef struct pair_slot {
    uint64_t hash; /* 0: empty */
    int64_t last_span;
} pair_slot;

struct sn_metric_feed {
    sn_metric_feed_config cfg;
    const sn_price_table *prices;
    pthread_mutex_t mu;
    pair_slot *pairs;
    size_t mask;
    sn_metric_delta *delta;
    sn_metric_feed_stats st;
};

void sn_metric_feed_config_defaults(sn_metric_feed_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_pairs = 4096;
    cfg->cover_ns = INT64_C(300) * 1000000000;
    cfg->max_series = 4096;
}

int sn_metric_feed_create(const sn_metric_feed_config *cfg, const sn_price_table *prices,
                          sn_metric_feed **out)
{
    if (cfg->max_pairs == 0 || cfg->max_pairs > LIMIT_MAX || cfg->max_series == 0 ||
        cfg->max_series > LIMIT_MAX || cfg->cover_ns < 0)
        return -EINVAL;
    sn_metric_feed *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -ENOMEM;
    f->cfg = *cfg;
    f->prices = prices;
    size_t slots = 16;
    while (slots < cfg->max_pairs)
        slots <<= 1;
    f->mask = slots - 1;
    f->pairs = calloc(slots, sizeof *f->pairs);
    if (f->pairs == NULL)
        goto fail;
    if (sn_metric_delta_create(cfg->max_series, cfg->since_unix_nano, &f->delta) != 0)
        goto fail;
    if (pthread_mutex_init(&f->mu, NULL) != 0)
        goto fail;
    *out = f;
    return 0;

fail:
    sn_metric_delta_destroy(f->delta);
    free(f->pairs);
    free(f);
    return -ENOMEM;
}

void sn_metric_feed_destroy(sn_metric_feed *f)
{
    if (f == NULL)
        return;
    pthread_mutex_destroy(&f->mu);
    sn_metric_delta_destroy(f->delta);
    free(f->pairs);
    free(f);
}

static uint64_t pair_hash(const char *service, const char *model)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *s = (const unsigned char *)service; *s != '\0'; s++)
        h = (h ^ *s) * 0x100000001b3ull;
    h = (h ^ 0x1f) * 0x100000001b3ull;
    for (const unsigned char *s = (const unsigned char *)model; *s != '\0'; s++)
        h = (h ^ *s) * 0x100000001b3ull;
    return h != 0 ? h : 1;
}

/* The slot of hash h, or NULL. Caller holds mu. */
static pair_slot *pair_find(sn_metric_feed *f, uint64_t h)
{
    for (size_t i = 0; i < PROBE; i++) {
        pair_slot *s = &f->pairs[(h + i) & f->mask];
        if (s->hash == h)
            return s;
    }
    return NULL;
}

void sn_metric_feed_note_span(sn_metric_feed *f, const char *service, const char *model,
                              int64_t now_ns)
{
    uint64_t h = pair_hash(service, model);
    pthread_mutex_lock(&f->mu);
    pair_slot *s = pair_find(f, h);
    if (s == NULL) {
        /* An empty slot of the window, else the one whose span is oldest. */
        pair_slot *oldest = NULL;
        for (size_t i = 0; i < PROBE && s == NULL; i++) {
            pair_slot *c = &f->pairs[(h + i) & f->mask];
            if (c->hash == 0)
                s = c;
            else if (oldest == NULL || c->last_span < oldest->last_span)
                oldest = c;
        }
        if (s == NULL) {
            s = oldest;
            f->st.evicted++;
        } else {
            f->st.pairs++;
        }
        s->hash = h;
    }
    if (now_ns > s->last_span)
        s->last_span = now_ns;
    pthread_mutex_unlock(&f->mu);
}

/* Caller holds mu. */
static bool covered_locked(sn_metric_feed *f, uint64_t h, int64_t now_ns)
{
    const pair_slot *s = pair_find(f, h);
    return s != NULL && now_ns - s->last_span <= f->cfg.cover_ns;
}

bool sn_metric_feed_covered(sn_metric_feed *f, const char *service, const char *model,
                            int64_t now_ns)
{
    uint64_t h = pair_hash(service, model);
    pthread_mutex_lock(&f->mu);
    bool c = covered_locked(f, h, now_ns);
    pthread_mutex_unlock(&f->mu);
    return c;
}

void sn_metric_feed_convert(const sn_metric_fact *fact, const sn_price_table *prices,
                            sn_aggregate *out)
{
    memset(out, 0, sizeof *out);
    memcpy(out->service, fact->service, sizeof out->service);
    memcpy(out->model, fact->model, sizeof out->model);
    memcpy(out->provider, fact->provider, sizeof out->provider);
    memcpy(out->operation, fact->operation, sizeof out->operation);
    memcpy(out->region, fact->region, sizeof out->region);
    memcpy(out->error_type, fact->error_type, sizeof out->error_type);
    out->metric = fact->metric;
    out->start_unix_nano = fact->start_unix_nano;
    out->end_unix_nano = fact->end_unix_nano;
    out->count = fact->count;
    out->sum = fact->sum;
    out->min = fact->min;
    out->max = fact->max;
    out->error_count = fact->error_type[0] != '\0' ? fact->count : 0;
    out->cost_usd = NAN;
    bool tokens = fact->metric == SN_METRIC_INPUT_TOKENS || fact->metric == SN_METRIC_OUTPUT_TOKENS;
    sn_price price;
    if (tokens && prices != NULL && isfinite(fact->sum) && fact->sum >= 0 && fact->sum < 9.0e18 &&
        sn_price_lookup(prices, fact->model, fact->provider, fact->end_unix_nano, &price)) {
        int64_t n = (int64_t)llround(fact->sum);
        out->cost_usd =
            fact->metric == SN_METRIC_INPUT_TOKENS
                ? sn_price_cost(&price, n, SN_UNKNOWN_COUNT, SN_UNKNOWN_COUNT, SN_UNKNOWN_COUNT)
                : sn_price_cost(&price, SN_UNKNOWN_COUNT, n, SN_UNKNOWN_COUNT, SN_UNKNOWN_COUNT);
    }
}

const char *sn_metric_feed_outcome_name(sn_metric_feed_outcome o)
{
    static const char *const names[SN_METRIC_FEED_OUTCOME_COUNT] = {"queued", "covered", "baseline",
                                                                    "unchanged", "refused"};
    return (int)o >= 0 && o < SN_METRIC_FEED_OUTCOME_COUNT ? names[o] : "unknown";
}

/* Steps 1-3 of metric_feed.h. Caller holds mu. */
static sn_metric_feed_outcome add_locked(sn_metric_feed *f, const sn_metric_fact *fact,
                                         int64_t now_ns, sn_aggregate *out,
                                         sn_metric_delta_change *ch)
{
    ch->slot = SIZE_MAX;
    if (covered_locked(f, pair_hash(fact->service, fact->model), now_ns))
        return SN_METRIC_FEED_COVERED;
    sn_metric_fact d;
    int rc = sn_metric_delta_apply_undoable(f->delta, fact, &d, ch);
    if (rc == -ENOSPC)
        return SN_METRIC_FEED_REFUSED;
    if (rc == SN_METRIC_DELTA_BASELINE)
        return SN_METRIC_FEED_BASELINE;
    if (rc != SN_METRIC_DELTA_EMIT || d.count == 0)
        return SN_METRIC_FEED_UNCHANGED;
    sn_metric_feed_convert(&d, f->prices, out);
    return SN_METRIC_FEED_QUEUED;
}

sn_metric_feed_outcome sn_metric_feed_add(sn_metric_feed *f, const sn_metric_fact *fact,
                                          int64_t now_ns, sn_aggregate *out,
                                          sn_metric_delta_change *ch)
{
    pthread_mutex_lock(&f->mu);
    sn_metric_feed_outcome o = add_locked(f, fact, now_ns, out, ch);
    f->st.outcomes[o]++;
    pthread_mutex_unlock(&f->mu);
    return o;
}

void sn_metric_feed_undo(sn_metric_feed *f, sn_metric_feed_outcome o,
                         const sn_metric_delta_change *ch)
{
    pthread_mutex_lock(&f->mu);
    sn_metric_delta_undo(f->delta, ch);
    if ((int)o >= 0 && o < SN_METRIC_FEED_OUTCOME_COUNT && f->st.outcomes[o] > 0)
        f->st.outcomes[o]--;
    pthread_mutex_unlock(&f->mu);
}

void sn_metric_feed_expire(sn_metric_feed *f, int64_t now_ns)
{
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i <= f->mask; i++) {
        pair_slot *s = &f->pairs[i];
        if (s->hash != 0 && now_ns - s->last_span > f->cfg.cover_ns) {
            s->hash = 0;
            s->last_span = 0;
            f->st.pairs--;
        }
    }
    (void)sn_metric_delta_expire(f->delta, now_ns - SERIES_IDLE_NS);
    pthread_mutex_unlock(&f->mu);
}

void sn_metric_feed_get_stats(sn_metric_feed *f, sn_metric_feed_stats *out)
{
    pthread_mutex_lock(&f->mu);
    *out = f->st;
    pthread_mutex_unlock(&f->mu);
}
