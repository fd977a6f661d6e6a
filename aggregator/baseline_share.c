/*
 * baseline_share.c -- rounds of baseline exchange between replicas (baseline_share.h).
 */
#include "baseline_share.h"

#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_PER_SEC INT64_C(1000000000)
#define VIEW_PROBE 8                 /* slots probed in the view table */
#define PAIR_NAME  (2 * SN_NAME_MAX) /* "service\0model\0" */

/* The pairs touched within the ttl: names in arrival order with their last touch, and an
 * open-addressing index of (position + 1). Compacted at the start of each round. */
typedef struct pair_set {
    char (*names)[PAIR_NAME];
    int64_t *touched;
    uint32_t *index;
    size_t n, cap;
    uint32_t mask;
} pair_set;

typedef struct view_slot {
    uint64_t hash; /* 0: empty */
    int64_t updated_ns;
    sn_engine_view view;
} view_slot;

struct sn_bshare {
    sn_bshare_config cfg;
    sn_engine *engine;
    sn_shared *shared;
    pair_set pairs;
    int64_t now;      /* the last tick's time: a touch's time */
    size_t cursor;    /* next item of the round: pair * SN_METRIC_COUNT + metric */
    size_t round_end; /* items of the round in progress */
    int64_t next_round_ns;
    bool views_cleared; /* Redis failed and every view was dropped since */
    view_slot *views;
    size_t nviews; /* slots, a power of two */
    /* the tick's items */
    uint32_t *item_pair;
    uint8_t *item_metric;
    char keytext[SN_ENGINE_SNAPSHOT_KEY_MAX];
    int64_t tick_now;
    sn_bshare_stats st;
};

static uint64_t fnv(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * UINT64_C(1099511628211);
    return h;
}

static uint64_t pair_hash(const char *service, const char *model)
{
    uint64_t h = fnv(UINT64_C(1469598103934665603), service, strlen(service) + 1);
    return fnv(h, model, strlen(model)) | 1;
}

void sn_bshare_config_init(sn_bshare_config *cfg)
{
    cfg->interval_ns = 5 * NS_PER_SEC;
    cfg->ttl_ns = 30 * NS_PER_SEC;
    cfg->batch = 256;
    cfg->max_pairs = 4096;
}

static int set_init(pair_set *p, size_t cap)
{
    size_t slots = 16;
    while (slots < 2 * cap)
        slots <<= 1;
    p->names = calloc(cap, sizeof *p->names);
    p->touched = calloc(cap, sizeof *p->touched);
    p->index = calloc(slots, sizeof *p->index);
    p->cap = cap;
    p->mask = (uint32_t)(slots - 1);
    p->n = 0;
    return p->names != NULL && p->touched != NULL && p->index != NULL ? 0 : -ENOMEM;
}

/* Index slot of a pair: its own, or the empty one where it would go. */
static uint32_t set_slot(const pair_set *p, const char *service, const char *model)
{
    uint32_t i = (uint32_t)pair_hash(service, model) & p->mask;
    for (;; i = (i + 1) & p->mask) {
        uint32_t at = p->index[i];
        if (at == 0)
            return i;
        const char *n = p->names[at - 1];
        if (strcmp(n, service) == 0 && strcmp(n + strlen(n) + 1, model) == 0)
            return i;
    }
}

/* Drops the pairs not touched since `since` and rebuilds the index. O(cap). */
static void set_compact(pair_set *p, int64_t since)
{
    memset(p->index, 0, ((size_t)p->mask + 1) * sizeof *p->index);
    size_t kept = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (p->touched[i] < since)
            continue;
        if (kept != i) {
            memcpy(p->names[kept], p->names[i], sizeof p->names[i]);
            p->touched[kept] = p->touched[i];
        }
        const char *n = p->names[kept];
        p->index[set_slot(p, n, n + strlen(n) + 1)] = (uint32_t)(kept + 1);
        kept++;
    }
    p->n = kept;
}

int sn_bshare_create(const sn_bshare_config *cfg, sn_engine *e, sn_shared *s, sn_bshare **out,
                     char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->interval_ns < NS_PER_SEC / 10 || cfg->ttl_ns <= cfg->interval_ns) {
        snprintf(err, errlen, "redis.baseline_ttl: must be longer than redis.baseline_interval");
        return -EINVAL;
    }
    if (cfg->batch < 1 || cfg->batch > SN_SHARED_EXCHANGE_MAX) {
        snprintf(err, errlen, "redis.baseline_batch: must be 1..%u", SN_SHARED_EXCHANGE_MAX);
        return -EINVAL;
    }
    if (cfg->max_pairs < 1 || cfg->max_pairs > (1u << 20)) {
        snprintf(err, errlen, "redis.baseline_max_pairs: must be 1..1048576");
        return -EINVAL;
    }
    sn_bshare *b = calloc(1, sizeof *b);
    if (b == NULL)
        goto out_nomem;
    b->cfg = *cfg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* touches before the first tick */
    b->now = (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
    b->engine = e;
    b->shared = s;
    b->nviews = 16;
    while (b->nviews < cfg->max_pairs * SN_METRIC_COUNT)
        b->nviews <<= 1;
    b->views = calloc(b->nviews, sizeof *b->views);
    b->item_pair = calloc(cfg->batch, sizeof *b->item_pair);
    b->item_metric = calloc(cfg->batch, sizeof *b->item_metric);
    if (b->views == NULL || b->item_pair == NULL || b->item_metric == NULL ||
        set_init(&b->pairs, cfg->max_pairs) != 0)
        goto out_nomem;
    *out = b;
    return 0;

out_nomem:
    sn_bshare_destroy(b);
    snprintf(err, errlen, "shared baselines: out of memory");
    return -ENOMEM;
}

void sn_bshare_destroy(sn_bshare *b)
{
    if (b == NULL)
        return;
    free(b->pairs.names);
    free(b->pairs.touched);
    free(b->pairs.index);
    free(b->views);
    free(b->item_pair);
    free(b->item_metric);
    free(b);
}

void sn_bshare_touch(sn_bshare *b, const char *service, const char *model)
{
    pair_set *p = &b->pairs;
    size_t sl = strlen(service), ml = strlen(model);
    if (sl == 0 || sl >= SN_NAME_MAX || ml >= SN_NAME_MAX)
        return;
    uint32_t i = set_slot(p, service, model);
    if (p->index[i] != 0) {
        p->touched[p->index[i] - 1] = b->now;
        return;
    }
    if (p->n == p->cap) {
        b->st.pairs_dropped++;
        return;
    }
    memcpy(p->names[p->n], service, sl + 1);
    memcpy(p->names[p->n] + sl + 1, model, ml + 1);
    p->touched[p->n] = b->now;
    p->index[i] = (uint32_t)++p->n;
}

/* The view slot of a key hash: its own; with insert, else a free one, else the oldest probed
 * (replaced). NULL when absent (and not inserting). */
static view_slot *view_slot_for(const sn_bshare *b, uint64_t h, bool insert)
{
    view_slot *pick = NULL;
    for (size_t k = 0; k < VIEW_PROBE; k++) {
        view_slot *v = &b->views[(h + k) & (b->nviews - 1)];
        if (v->hash == h)
            return v;
        if (pick == NULL || (pick->hash != 0 && (v->hash == 0 || v->updated_ns < pick->updated_ns)))
            pick = v;
    }
    return insert ? pick : NULL;
}

static uint64_t key_hash(const char *text)
{
    return fnv(UINT64_C(1469598103934665603), text, strlen(text)) | 1;
}

/* Item i's names. */
static void item_names(const sn_bshare *b, size_t i, const char **service, const char **model)
{
    const char *n = b->pairs.names[b->item_pair[i]];
    *service = n;
    *model = n + strlen(n) + 1;
}

static int exchange_get(void *ud, size_t i, const char **key, const void **blob, size_t *len)
{
    sn_bshare *b = ud;
    const char *svc, *mdl;
    item_names(b, i, &svc, &mdl);
    sn_metric m = (sn_metric)b->item_metric[i];
    sn_engine_global_key(svc, mdl, m, b->keytext, sizeof b->keytext);
    *key = b->keytext;
    return sn_engine_view_export(b->engine, svc, mdl, m, blob, len);
}

static void exchange_put(void *ud, size_t i, unsigned n, const void *const *blobs,
                         const size_t *lens)
{
    sn_bshare *b = ud;
    const char *svc, *mdl;
    item_names(b, i, &svc, &mdl);
    sn_metric m = (sn_metric)b->item_metric[i];
    sn_engine_view v;
    if (sn_engine_view_merge(b->engine, svc, mdl, m, n, blobs, lens, &v) != 0)
        return;
    b->st.exchanged++;
    b->st.skipped += v.skipped;
    char text[SN_ENGINE_SNAPSHOT_KEY_MAX];
    sn_engine_global_key(svc, mdl, m, text, sizeof text);
    uint64_t h = key_hash(text);
    view_slot *slot = view_slot_for(b, h, v.replicas > 1);
    if (v.replicas > 1) {
        b->st.merged++;
        slot->hash = h;
        slot->updated_ns = b->tick_now;
        slot->view = v;
    } else if (slot != NULL) {
        slot->hash = 0;
    }
}

/* Redis did not answer: every key is scored on its own baseline again (once per outage). */
static void drop_views(sn_bshare *b)
{
    b->st.failures++;
    if (b->views_cleared)
        return;
    sn_engine_view_clear_all(b->engine);
    memset(b->views, 0, b->nviews * sizeof *b->views);
    b->views_cleared = true;
    sn_log_warn("shared baselines: Redis did not answer; scoring on local baselines");
}

void sn_bshare_tick(sn_bshare *b, int64_t now_ns)
{
    b->now = now_ns;
    if (b->cursor >= b->round_end) {
        if (now_ns < b->next_round_ns)
            return;
        if (b->round_end > 0)
            b->st.rounds++;
        /* A round covers every pair touched within the ttl, so a view stays fresh while its
         * key is scored here (and a little after). */
        set_compact(&b->pairs, now_ns - b->cfg.ttl_ns);
        b->cursor = 0;
        b->round_end = b->pairs.n * SN_METRIC_COUNT;
        b->next_round_ns = now_ns + b->cfg.interval_ns;
    }
    pair_set *round = &b->pairs;
    size_t end = b->round_end;
    const sn_baseline *table = sn_engine_baselines(b->engine);
    size_t n = 0;
    for (; b->cursor < end && n < b->cfg.batch; b->cursor++) {
        size_t pair = b->cursor / SN_METRIC_COUNT;
        sn_metric m = (sn_metric)(b->cursor % SN_METRIC_COUNT);
        const char *svc = round->names[pair];
        if (sn_baseline_find(table, svc, svc + strlen(svc) + 1, m) == NULL)
            continue; /* nothing learnt for this metric here */
        b->item_pair[n] = (uint32_t)pair;
        b->item_metric[n] = (uint8_t)m;
        n++;
    }
    if (n == 0)
        return;
    b->tick_now = now_ns;
    sn_shared_exchange_result res;
    int rc = sn_shared_baselines_exchange(b->shared, n, b->cfg.ttl_ns, exchange_get, exchange_put,
                                          b, &res);
    if (rc != 0) {
        drop_views(b);
        b->cursor = b->round_end; /* the round ends; the next one starts when due */
        return;
    }
    if (b->views_cleared)
        sn_log_info("shared baselines: exchanging again");
    b->views_cleared = false;
}

bool sn_bshare_view_get(const sn_bshare *b, const sn_baseline_entry *en, sn_engine_view *out)
{
    if (sn_engine_view_replicas(b->engine, en) == 0)
        return false; /* scored locally now */
    char text[SN_ENGINE_SNAPSHOT_KEY_MAX];
    sn_engine_global_key(sn_baseline_entry_service(en), sn_baseline_entry_model(en),
                         sn_baseline_entry_metric(en), text, sizeof text);
    const view_slot *v = view_slot_for(b, key_hash(text), false);
    if (v == NULL)
        return false;
    *out = v->view;
    return true;
}

void sn_bshare_stats_get(const sn_bshare *b, sn_bshare_stats *out)
{
    *out = b->st;
}
