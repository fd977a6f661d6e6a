/*
 * alert_limit.c -- one local alert per (service, model, metric, anomaly type) per interval
 * (see alert_limit.h).
 */
#include "alert_limit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PROBE 8u /* slots looked at per key; the oldest of them is replaced when none fits */

typedef struct slot {
    uint64_t key;     /* 0: free (a real hash of 0 is stored as 1) */
    uint64_t last_ms; /* when the key's last alert was raised */
    uint64_t held;    /* alerts held back since then */
} slot;

struct sn_alert_limit {
    uint64_t interval_ms;
    uint64_t seed;
    size_t mask;
    uint64_t suppressed_total;
    slot *slots;
};

int sn_alert_limit_create(size_t slots, uint64_t interval_ms, uint64_t hash_seed,
                          sn_alert_limit **out)
{
    if (slots < 1 || slots > SN_ALERT_LIMIT_SLOTS_MAX)
        return -EINVAL;
    size_t n = 16;
    while (n < slots)
        n <<= 1;
    sn_alert_limit *l = calloc(1, sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    l->slots = calloc(n, sizeof *l->slots);
    if (l->slots == NULL)
        goto out_free_limit;
    l->interval_ms = interval_ms;
    l->seed = hash_seed;
    l->mask = n - 1;
    *out = l;
    return 0;

out_free_limit:
    free(l);
    return -ENOMEM;
}

void sn_alert_limit_destroy(sn_alert_limit *l)
{
    if (l == NULL)
        return;
    free(l->slots);
    free(l);
}

/* FNV-1a over bytes, continuing from h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The key of an alert: its service and model (up to their NUL), metric and anomaly type, mixed
 * with the seed and finalised (splitmix64) so the low bits index well. Never 0. */
static uint64_t key_of(const sn_alert_limit *l, const sn_local_alert *a)
{
    uint64_t h =
        fnv(0xcbf29ce484222325ull ^ l->seed, a->service, strnlen(a->service, sizeof a->service));
    h = fnv(h, "\0", 1); /* ("ab","c") and ("a","bc") differ */
    h = fnv(h, a->model, strnlen(a->model, sizeof a->model));
    uint32_t kinds[2] = {(uint32_t)a->metric, (uint32_t)a->anomaly_type};
    h = fnv(h, kinds, sizeof kinds);
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h != 0 ? h : 1;
}

bool sn_alert_limit_admit(sn_alert_limit *l, const sn_local_alert *a, uint64_t now_ms,
                          uint64_t *suppressed)
{
    if (suppressed != NULL)
        *suppressed = 0;
    if (l->interval_ms == 0)
        return true;
    uint64_t key = key_of(l, a);
    slot *victim = NULL;
    for (size_t i = 0; i < PROBE; i++) {
        slot *s = &l->slots[(key + i) & l->mask];
        if (s->key == key) {
            if (now_ms >= s->last_ms && now_ms - s->last_ms < l->interval_ms) {
                s->held++;
                l->suppressed_total++;
                return false;
            }
            if (suppressed != NULL)
                *suppressed = s->held;
            s->held = 0;
            s->last_ms = now_ms;
            return true;
        }
        if (victim == NULL || (victim->key != 0 && (s->key == 0 || s->last_ms < victim->last_ms)))
            victim = s;
    }
    /* A new key (or one forgotten): raise it and remember it in a free or the oldest slot. */
    victim->key = key;
    victim->last_ms = now_ms;
    victim->held = 0;
    return true;
}

uint64_t sn_alert_limit_suppressed_total(const sn_alert_limit *l)
{
    return l->suppressed_total;
}
