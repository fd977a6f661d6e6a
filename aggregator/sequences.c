/*
 * sequences.c -- the ingest de-duplication table (see sequences.h).
 *
 * Layout: a fixed array of entries; a hash index of chains (bucket heads and per-entry `hnext`,
 * all indexes into the array); and a doubly linked recency list, most recently put at the head.
 * Expiry and eviction both take from the tail. Unused entries sit on a free list (threaded
 * through `hnext`). NONE marks the end of every list.
 */
#include "sequences.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define NONE               UINT32_MAX
#define SN_SEQ_MAX_ENTRIES (1u << 24)

typedef struct seq_entry {
    char id[SN_SEQ_ID_MAX + 1];
    uint8_t idlen;
    bool used;
    uint64_t seq;
    int64_t last_seen_ns;
    uint64_t hash;
    uint32_t hnext; /* next in the bucket chain, or in the free list */
    uint32_t prev;  /* recency list: towards the head (more recent) */
    uint32_t next;  /* towards the tail (older) */
} seq_entry;

struct sn_seqtab {
    seq_entry *e;
    uint32_t cap;
    uint32_t *buckets;
    uint32_t nbuckets; /* a power of two */
    uint32_t free_head;
    uint32_t head, tail;
    size_t count;
    int64_t idle_ns;
    uint64_t expired, evicted;
};

/* FNV-1a over the id bytes. */
static uint64_t hash_id(const char *id, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)id[i];
        h *= 1099511628211ull;
    }
    return h;
}

int sn_seqtab_create(size_t max_entries, int64_t idle_ns, sn_seqtab **out)
{
    *out = NULL;
    if (max_entries == 0 || max_entries > SN_SEQ_MAX_ENTRIES || idle_ns <= 0)
        return -EINVAL;
    sn_seqtab *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -ENOMEM;
    t->cap = (uint32_t)max_entries;
    t->nbuckets = 16;
    while (t->nbuckets < 2 * t->cap)
        t->nbuckets *= 2;
    t->e = calloc(t->cap, sizeof *t->e);
    if (t->e == NULL)
        goto out_free_table;
    t->buckets = malloc((size_t)t->nbuckets * sizeof *t->buckets);
    if (t->buckets == NULL)
        goto out_free_entries;
    for (uint32_t i = 0; i < t->nbuckets; i++)
        t->buckets[i] = NONE;
    for (uint32_t i = 0; i < t->cap; i++)
        t->e[i].hnext = i + 1 < t->cap ? i + 1 : NONE;
    t->free_head = 0;
    t->head = t->tail = NONE;
    t->idle_ns = idle_ns;
    *out = t;
    return 0;

out_free_entries:
    free(t->e);
out_free_table:
    free(t);
    return -ENOMEM;
}

void sn_seqtab_destroy(sn_seqtab *t)
{
    if (t == NULL)
        return;
    free(t->buckets);
    free(t->e);
    free(t);
}

/* Unlinks entry i from the recency list. */
static void lru_unlink(sn_seqtab *t, uint32_t i)
{
    seq_entry *x = &t->e[i];
    if (x->prev != NONE)
        t->e[x->prev].next = x->next;
    else
        t->head = x->next;
    if (x->next != NONE)
        t->e[x->next].prev = x->prev;
    else
        t->tail = x->prev;
    x->prev = x->next = NONE;
}

/* Links entry i at the head (most recent) of the recency list. */
static void lru_push_head(sn_seqtab *t, uint32_t i)
{
    seq_entry *x = &t->e[i];
    x->prev = NONE;
    x->next = t->head;
    if (t->head != NONE)
        t->e[t->head].prev = i;
    t->head = i;
    if (t->tail == NONE)
        t->tail = i;
}

/* Removes entry i from its bucket chain and the recency list, and frees it. */
static void remove_entry(sn_seqtab *t, uint32_t i)
{
    seq_entry *x = &t->e[i];
    uint32_t *link = &t->buckets[x->hash & (t->nbuckets - 1)];
    while (*link != i)
        link = &t->e[*link].hnext;
    *link = x->hnext;
    lru_unlink(t, i);
    memset(x, 0, sizeof *x);
    x->hnext = t->free_head;
    t->free_head = i;
    t->count--;
}

/* The entry index of id, or NONE. */
static uint32_t find(const sn_seqtab *t, const char *id, size_t n, uint64_t h)
{
    for (uint32_t i = t->buckets[h & (t->nbuckets - 1)]; i != NONE; i = t->e[i].hnext) {
        const seq_entry *x = &t->e[i];
        if (x->hash == h && x->idlen == n && memcmp(x->id, id, n) == 0)
            return i;
    }
    return NONE;
}

size_t sn_seqtab_expire(sn_seqtab *t, int64_t now_ns)
{
    size_t n = 0;
    while (t->tail != NONE && now_ns - t->e[t->tail].last_seen_ns > t->idle_ns) {
        remove_entry(t, t->tail);
        n++;
    }
    t->expired += n;
    return n;
}

uint64_t sn_seqtab_get(sn_seqtab *t, const char *id, size_t idlen, int64_t now_ns)
{
    if (idlen == 0 || idlen > SN_SEQ_ID_MAX)
        return 0;
    sn_seqtab_expire(t, now_ns);
    uint32_t i = find(t, id, idlen, hash_id(id, idlen));
    if (i == NONE)
        return 0;
    if (now_ns - t->e[i].last_seen_ns > t->idle_ns) { /* imported out of order: not at the tail */
        remove_entry(t, i);
        t->expired++;
        return 0;
    }
    return t->e[i].seq;
}

/* Inserts or updates id; `import` keeps the later of two times and does not expire. */
static int upsert(sn_seqtab *t, const char *id, size_t idlen, uint64_t seq, int64_t now_ns,
                  bool import)
{
    if (idlen == 0 || idlen > SN_SEQ_ID_MAX)
        return -EINVAL;
    if (!import)
        sn_seqtab_expire(t, now_ns);
    uint64_t h = hash_id(id, idlen);
    uint32_t i = find(t, id, idlen, h);
    if (i != NONE) {
        seq_entry *x = &t->e[i];
        if (seq > x->seq)
            x->seq = seq;
        if (!import || now_ns > x->last_seen_ns)
            x->last_seen_ns = now_ns;
        lru_unlink(t, i);
        lru_push_head(t, i);
        return 0;
    }
    if (t->free_head == NONE) {
        remove_entry(t, t->tail); /* full: the least recently seen id goes */
        t->evicted++;
    }
    i = t->free_head;
    seq_entry *x = &t->e[i];
    t->free_head = x->hnext;
    memcpy(x->id, id, idlen);
    x->id[idlen] = '\0';
    x->idlen = (uint8_t)idlen;
    x->used = true;
    x->seq = seq;
    x->last_seen_ns = now_ns;
    x->hash = h;
    uint32_t b = (uint32_t)(h & (t->nbuckets - 1));
    x->hnext = t->buckets[b];
    t->buckets[b] = i;
    lru_push_head(t, i);
    t->count++;
    return 0;
}

int sn_seqtab_put(sn_seqtab *t, const char *id, size_t idlen, uint64_t seq, int64_t now_ns)
{
    return upsert(t, id, idlen, seq, now_ns, false);
}

int sn_seqtab_import(sn_seqtab *t, const char *id, uint64_t seq, int64_t last_seen_ns)
{
    return upsert(t, id, strnlen(id, SN_SEQ_ID_MAX + 1), seq, last_seen_ns, true);
}

int sn_seqtab_export(const sn_seqtab *t, sn_seqtab_visit cb, void *ud)
{
    for (uint32_t i = t->head; i != NONE; i = t->e[i].next) {
        int rc = cb(t->e[i].id, t->e[i].seq, t->e[i].last_seen_ns, ud);
        if (rc != 0)
            return rc;
    }
    return 0;
}

void sn_seqtab_stats_get(const sn_seqtab *t, sn_seqtab_stats *out)
{
    out->entries = t->count;
    out->expired = t->expired;
    out->evicted = t->evicted;
}
