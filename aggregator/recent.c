/*
 * recent.c -- bounded rings of recent values per (service, model, metric).
 *
 * Layout: `slots` is a fixed array of max_keys entries; slot i owns points[i * ppk .. +ppk).
 * A chained hash (bucket heads and per-slot `next`, all int32 indexes, -1 = none) finds a key;
 * a doubly linked LRU list (most recently written at the head) picks the slot to reuse when
 * every slot is taken. Free slots are chained through `next` until first used.
 *
 * Invariants: every used slot is in exactly one hash chain and in the LRU list; 0 <= count <=
 * ppk; the ring's oldest point is at (head - count) mod ppk, the next write at head.
 */
#include "recent.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POINTS_MAX 100000u
#define KEYS_MAX   (1u << 24)
#define NONE       (-1)

typedef struct slot {
    /* what a lookup and a write touch, in the first cache line */
    uint32_t hash;
    int32_t next; /* hash chain, or the free list */
    int32_t lru_prev, lru_next;
    uint32_t head, count; /* ring position and fill */
    uint8_t metric;
    char service[SN_NAME_MAX];
    char model[SN_NAME_MAX];
} slot;

struct sn_recent {
    size_t ppk, max_keys, nbuckets, keys, bytes;
    slot *slots;
    sn_recent_point *points;
    int32_t *buckets;
    int32_t free_head;
    int32_t lru_head, lru_tail; /* most / least recently written */
    uint64_t added, evicted;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* FNV-1a over "service\xffmodel\xff": once per event for all its metrics. */
static uint32_t pair_hash(const char *service, const char *model)
{
    uint32_t h = 2166136261u;
    for (const char *p = service; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    h = (h ^ 0xffu) * 16777619u;
    for (const char *p = model; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return (h ^ 0xffu) * 16777619u;
}

/* The key's hash: the pair's with the metric mixed in, its bits spread for the bucket mask. */
static uint32_t key_hash(uint32_t pair, sn_metric metric)
{
    uint32_t h = (pair ^ (uint8_t)metric) * 16777619u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    return h ^ (h >> 12);
}

int sn_recent_create(const sn_recent_config *cfg, sn_recent **out, char *err, size_t errlen)
{
    sn_recent_config c = {0};
    if (cfg != NULL)
        c = *cfg;
    size_t ppk = c.points_per_key ? c.points_per_key : SN_RECENT_DEFAULT_POINTS;
    size_t keys = c.max_keys ? c.max_keys : SN_RECENT_DEFAULT_KEYS;
    size_t budget = c.max_bytes ? c.max_bytes : SN_RECENT_DEFAULT_BYTES;
    if (ppk > POINTS_MAX || keys > KEYS_MAX) {
        set_err(err, errlen, "recent values: at most %u points per key and %u keys", POINTS_MAX,
                KEYS_MAX);
        return -EINVAL;
    }
    /* One key's share: its slot, its ring and two buckets (the table is twice the keys). */
    size_t per_key = sizeof(slot) + ppk * sizeof(sn_recent_point) + 2 * sizeof(int32_t);
    size_t fit = (budget - (budget < sizeof(sn_recent) ? budget : sizeof(sn_recent))) / per_key;
    if (fit < keys)
        keys = fit;
    if (keys == 0) {
        set_err(err, errlen, "recent values: %zu bytes do not hold one key of %zu points", budget,
                ppk);
        return -EINVAL;
    }
    size_t nb = 1;
    while (nb < 2 * keys)
        nb <<= 1;
    sn_recent *r = calloc(1, sizeof *r);
    if (r == NULL)
        goto out_nomem;
    r->ppk = ppk;
    r->max_keys = keys;
    r->nbuckets = nb;
    r->slots = calloc(keys, sizeof *r->slots);
    if (r->slots == NULL)
        goto out_free_r;
    r->points = malloc(keys * ppk * sizeof *r->points);
    if (r->points == NULL)
        goto out_free_slots;
    r->buckets = malloc(nb * sizeof *r->buckets);
    if (r->buckets == NULL)
        goto out_free_points;
    for (size_t i = 0; i < nb; i++)
        r->buckets[i] = NONE;
    for (size_t i = 0; i < keys; i++)
        r->slots[i].next = i + 1 < keys ? (int32_t)(i + 1) : NONE;
    r->free_head = 0;
    r->lru_head = r->lru_tail = NONE;
    r->bytes = sizeof *r + keys * sizeof *r->slots + keys * ppk * sizeof *r->points +
               nb * sizeof *r->buckets;
    *out = r;
    return 0;

out_free_points:
    free(r->points);
out_free_slots:
    free(r->slots);
out_free_r:
    free(r);
out_nomem:
    set_err(err, errlen, "recent values: out of memory");
    return -ENOMEM;
}

void sn_recent_destroy(sn_recent *r)
{
    if (r == NULL)
        return;
    free(r->buckets);
    free(r->points);
    free(r->slots);
    free(r);
}

/* s itself when it fits a slot's name, else its first SN_NAME_MAX-1 bytes (cut at a UTF-8
 * boundary) in buf: keys are stored and looked up by the cut name. */
static const char *fit_name(const char *s, char buf[SN_NAME_MAX])
{
    size_t n = strnlen(s, SN_NAME_MAX);
    if (n < SN_NAME_MAX)
        return s;
    sn_copy_truncated(buf, SN_NAME_MAX, s, strlen(s));
    return buf;
}

/* The slot holding the key (names already cut by fit_name), or NONE. */
static int32_t find(const sn_recent *r, const char *service, const char *model, sn_metric metric,
                    uint32_t h)
{
    for (int32_t i = r->buckets[h & (r->nbuckets - 1)]; i != NONE; i = r->slots[i].next) {
        const slot *s = &r->slots[i];
        if (s->hash == h && s->metric == (uint8_t)metric && strcmp(s->service, service) == 0 &&
            strcmp(s->model, model) == 0)
            return i;
    }
    return NONE;
}

static void lru_unlink(sn_recent *r, int32_t i)
{
    slot *s = &r->slots[i];
    if (s->lru_prev != NONE)
        r->slots[s->lru_prev].lru_next = s->lru_next;
    else
        r->lru_head = s->lru_next;
    if (s->lru_next != NONE)
        r->slots[s->lru_next].lru_prev = s->lru_prev;
    else
        r->lru_tail = s->lru_prev;
}

static void lru_push_front(sn_recent *r, int32_t i)
{
    slot *s = &r->slots[i];
    s->lru_prev = NONE;
    s->lru_next = r->lru_head;
    if (r->lru_head != NONE)
        r->slots[r->lru_head].lru_prev = i;
    r->lru_head = i;
    if (r->lru_tail == NONE)
        r->lru_tail = i;
}

/* Removes slot i from its hash chain. */
static void chain_unlink(sn_recent *r, int32_t i)
{
    int32_t *link = &r->buckets[r->slots[i].hash & (r->nbuckets - 1)];
    while (*link != i)
        link = &r->slots[*link].next;
    *link = r->slots[i].next;
}

/* A slot for a new key: a free one, else the least recently written (evicted). */
static int32_t take_slot(sn_recent *r)
{
    int32_t i = r->free_head;
    if (i != NONE) {
        r->free_head = r->slots[i].next;
        r->keys++;
        return i;
    }
    i = r->lru_tail;
    lru_unlink(r, i);
    chain_unlink(r, i);
    r->evicted++;
    return i;
}

/* Appends to the key (names already cut by fit_name; h is its key_hash). Never fails. */
static void add_hashed(sn_recent *r, const char *service, const char *model, sn_metric metric,
                       uint32_t h, int64_t t, double value)
{
    int32_t i = find(r, service, model, metric, h);
    if (i == NONE) {
        i = take_slot(r);
        slot *s = &r->slots[i];
        snprintf(s->service, sizeof s->service, "%s", service);
        snprintf(s->model, sizeof s->model, "%s", model);
        s->hash = h;
        s->metric = (uint8_t)metric;
        s->head = s->count = 0;
        size_t b = s->hash & (r->nbuckets - 1);
        s->next = r->buckets[b];
        r->buckets[b] = i;
        lru_push_front(r, i);
    } else if (r->lru_head != i) {
        lru_unlink(r, i);
        lru_push_front(r, i);
    }
    slot *s = &r->slots[i];
    sn_recent_point *ring = &r->points[(size_t)i * r->ppk];
    ring[s->head] = (sn_recent_point){t, value};
    if (++s->head == r->ppk)
        s->head = 0;
    if (s->count < r->ppk)
        s->count++;
    r->added++;
}

int sn_recent_add(sn_recent *r, const char *service, const char *model, sn_metric metric, int64_t t,
                  double value)
{
    if (service == NULL || model == NULL || (int)metric < 0 || metric >= SN_METRIC_COUNT ||
        !isfinite(value))
        return -EINVAL;
    char sbuf[SN_NAME_MAX], mbuf[SN_NAME_MAX];
    service = fit_name(service, sbuf);
    model = fit_name(model, mbuf);
    add_hashed(r, service, model, metric, key_hash(pair_hash(service, model), metric), t, value);
    return 0;
}

unsigned sn_recent_add_event(sn_recent *r, const sn_event *ev)
{
    char sbuf[SN_NAME_MAX], mbuf[SN_NAME_MAX];
    const char *service = fit_name(ev->service, sbuf), *model = fit_name(ev->model, mbuf);
    uint32_t pair = pair_hash(service, model);
    unsigned n = 0;
    for (int m = 0; m < SN_METRIC_COUNT; m++) {
        double v;
        if (sn_event_metric(ev, (sn_metric)m, &v) && isfinite(v)) {
            add_hashed(r, service, model, (sn_metric)m, key_hash(pair, (sn_metric)m),
                       ev->end_unix_nano, v);
            n++;
        }
    }
    return n;
}

long sn_recent_get(const sn_recent *r, const char *service, const char *model, sn_metric metric,
                   sn_recent_point *out, size_t limit)
{
    if (service == NULL || model == NULL || (int)metric < 0 || metric >= SN_METRIC_COUNT)
        return -ENOENT;
    char sbuf[SN_NAME_MAX], mbuf[SN_NAME_MAX];
    service = fit_name(service, sbuf);
    model = fit_name(model, mbuf);
    int32_t i = find(r, service, model, metric, key_hash(pair_hash(service, model), metric));
    if (i == NONE)
        return -ENOENT;
    const slot *s = &r->slots[i];
    const sn_recent_point *ring = &r->points[(size_t)i * r->ppk];
    size_t n = s->count < limit ? s->count : limit;
    size_t start = (s->head + r->ppk - n) % r->ppk; /* the n newest, oldest first */
    for (size_t k = 0; k < n; k++)
        out[k] = ring[(start + k) % r->ppk];
    return (long)n;
}

size_t sn_recent_points_per_key(const sn_recent *r)
{
    return r->ppk;
}

void sn_recent_stats_get(const sn_recent *r, sn_recent_stats *out)
{
    out->keys = r->keys;
    out->max_keys = r->max_keys;
    out->bytes = r->bytes;
    out->points = r->added;
    out->evicted = r->evicted;
}
