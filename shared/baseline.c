/*
 * baseline.c -- hash table of per-key statistics with a memory budget, LRU eviction and expiry.
 *
 * Structure: a fixed array of 2^k chain heads (sized at creation from the budget, so it never
 * rehashes or grows), singly linked chains through entry->hnext, and one doubly linked list
 * through entry->prev/next in update order (head = least recently updated) for eviction and
 * iteration. Each entry is ONE allocation:
 *
 *     [ sn_baseline_entry | service\0 model\0 | pad to 8 | stats area (window, or two sketches) ]
 *
 * Accounting: an entry counts as glibc's malloc chunk for its size (size + 8 rounded up to 16,
 * at least 32 bytes); the fixed part is the table, the index and (compact) the scratch sketch.
 * Invariant: bytes_used <= budget after every call.
 */
#include "baseline.h"
#include "bytes.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sketch.h"
#include "window.h"

#define MAX_INDEX_SLOTS (1u << 22)
#define MIN_INDEX_SLOTS 16u

struct sn_baseline_entry {
    sn_baseline_entry *hnext; /* hash chain */
    sn_baseline_entry *prev;  /* update order: towards the least recently updated */
    sn_baseline_entry *next;  /* update order: towards the most recently updated */
    uint64_t hash;
    int64_t last_seen;
    uint64_t seen;
    sn_welford all;
    sn_ewma ewma;
    uint32_t bytes;     /* accounted size */
    uint16_t model_off; /* model string offset from the service string */
    uint16_t stats_off; /* offset of the stats area from the entry */
    uint16_t user_off;  /* offset of the caller's area (user_bytes, rounded to 8) */
    uint8_t metric;
    uint8_t cur; /* compact: which of the two sketches is current */
};

struct sn_baseline {
    sn_baseline_config cfg;
    sn_baseline_entry **index;
    uint32_t mask;      /* index slots - 1 */
    size_t stats_size;  /* window or two sketches (each sketch rounded to 8 bytes) */
    size_t user_size;   /* the caller's area per entry: user_bytes rounded to 8 */
    size_t sketch_size; /* compact: one sketch, rounded to 8 bytes */
    size_t fixed;       /* accounted bytes outside entries */
    size_t used;        /* fixed + entries */
    uint64_t keys, evicted, expired;
    sn_baseline_entry *oldest, *newest;
    sn_sketch *scratch; /* compact: the merge of an entry's two sketches, for summaries */
};

static size_t round8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* What glibc malloc really uses for a request of n bytes. */
static size_t chunk_bytes(size_t n)
{
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

void sn_baseline_config_init(sn_baseline_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->mode = SN_BASELINE_EXACT;
    cfg->window = SN_BASELINE_DEFAULT_WINDOW;
    cfg->sketch_alpha = SN_BASELINE_DEFAULT_SKETCH_ALPHA;
    cfg->sketch_buckets = SN_BASELINE_DEFAULT_SKETCH_BUCKETS;
    cfg->ewma_alpha = SN_BASELINE_DEFAULT_EWMA_ALPHA;
    cfg->memory_budget = SN_BASELINE_DEFAULT_BUDGET;
    cfg->hash_seed = 0;
    cfg->user_bytes = 0;
}

/* The entry header is a multiple of 8 bytes, so the strings start right after it. */
_Static_assert(sizeof(sn_baseline_entry) % 8 == 0, "entry header must keep 8-byte alignment");

static sn_window *entry_window(const sn_baseline_entry *e)
{
    return (sn_window *)((char *)e + e->stats_off);
}

static sn_sketch *entry_sketch(const sn_baseline *b, const sn_baseline_entry *e, unsigned k)
{
    return (sn_sketch *)((char *)e + e->stats_off + k * b->sketch_size);
}

int sn_baseline_create(sn_baseline **out, const sn_baseline_config *cfg)
{
    size_t stats_size, sketch_size = 0;
    if (cfg->mode == SN_BASELINE_EXACT) {
        stats_size = round8(sn_window_size(cfg->window));
        if (stats_size == 0)
            return -EINVAL;
    } else if (cfg->mode == SN_BASELINE_COMPACT) {
        if (cfg->window < 2 || cfg->window > SN_WINDOW_MAX_CAPACITY ||
            !(cfg->sketch_alpha >= SN_SKETCH_MIN_ALPHA && cfg->sketch_alpha <= SN_SKETCH_MAX_ALPHA))
            return -EINVAL;
        sketch_size = round8(sn_sketch_size(cfg->sketch_buckets));
        if (sketch_size == 0)
            return -EINVAL;
        stats_size = 2 * sketch_size;
    } else {
        return -EINVAL;
    }
    if (!(cfg->ewma_alpha > 0.0 && cfg->ewma_alpha <= 1.0))
        return -EINVAL;
    if (cfg->user_bytes > SN_BASELINE_USER_MAX)
        return -EINVAL;
    size_t user_size = round8(cfg->user_bytes);

    size_t min_entry = chunk_bytes(round8(sizeof(sn_baseline_entry) + 3) + user_size + stats_size);
    size_t max_entry =
        chunk_bytes(round8(sizeof(sn_baseline_entry) + 2 * SN_NAME_MAX) + user_size + stats_size);
    size_t est = cfg->memory_budget / min_entry;
    uint32_t slots = MIN_INDEX_SLOTS;
    while (slots < est && slots < MAX_INDEX_SLOTS)
        slots <<= 1;
    size_t fixed = chunk_bytes(sizeof(sn_baseline)) + chunk_bytes(slots * sizeof(void *));
    if (cfg->mode == SN_BASELINE_COMPACT)
        fixed += chunk_bytes(sn_sketch_size(cfg->sketch_buckets));
    if (cfg->memory_budget < fixed || cfg->memory_budget - fixed < max_entry)
        return -EINVAL;

    int rc = -ENOMEM;
    sn_baseline *b = calloc(1, sizeof(*b));
    if (b == NULL)
        goto out;
    b->index = calloc(slots, sizeof(*b->index));
    if (b->index == NULL)
        goto out_free_table;
    if (cfg->mode == SN_BASELINE_COMPACT) {
        rc = sn_sketch_create(&b->scratch, cfg->sketch_alpha, cfg->sketch_buckets);
        if (rc != 0)
            goto out_free_index;
    }
    b->cfg = *cfg;
    b->mask = slots - 1;
    b->stats_size = stats_size;
    b->user_size = user_size;
    b->sketch_size = sketch_size;
    b->fixed = fixed;
    b->used = fixed;
    *out = b;
    return 0;

out_free_index:
    free(b->index);
out_free_table:
    free(b);
out:
    return rc;
}

void sn_baseline_destroy(sn_baseline *b)
{
    if (b == NULL)
        return;
    sn_baseline_entry *e = b->oldest;
    while (e != NULL) {
        sn_baseline_entry *next = e->next;
        free(e);
        e = next;
    }
    sn_sketch_destroy(b->scratch);
    free(b->index);
    free(b);
}

/* FNV-1a over "service \xff model \xff metric", seeded, with a murmur3 finaliser so that the
 * low bits used by the index are well mixed. */
static uint64_t key_hash(uint64_t seed, const char *service, size_t slen, const char *model,
                         size_t mlen, sn_metric metric)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (seed * 0x9e3779b97f4a7c15ull);
    const uint64_t prime = 0x100000001b3ull;
    for (size_t i = 0; i < slen; i++)
        h = (h ^ (unsigned char)service[i]) * prime;
    h = (h ^ 0xff) * prime;
    for (size_t i = 0; i < mlen; i++)
        h = (h ^ (unsigned char)model[i]) * prime;
    h = (h ^ 0xff) * prime;
    h = (h ^ (unsigned)metric) * prime;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* Validates a key and measures its strings. Returns 0, -EINVAL or -ENAMETOOLONG. */
static int key_check(const char *service, const char *model, sn_metric metric, size_t *slen,
                     size_t *mlen)
{
    if (service == NULL || model == NULL || service[0] == '\0' || (int)metric < 0 ||
        metric >= SN_METRIC_COUNT)
        return -EINVAL;
    *slen = strnlen(service, SN_NAME_MAX);
    *mlen = strnlen(model, SN_NAME_MAX);
    if (*slen >= SN_NAME_MAX || *mlen >= SN_NAME_MAX)
        return -ENAMETOOLONG;
    return 0;
}

static sn_baseline_entry *lookup(const sn_baseline *b, uint64_t h, const char *service,
                                 const char *model, sn_metric metric)
{
    for (sn_baseline_entry *e = b->index[h & b->mask]; e != NULL; e = e->hnext) {
        if (e->hash != h || e->metric != (uint8_t)metric)
            continue;
        if (strcmp(sn_baseline_entry_service(e), service) == 0 &&
            strcmp(sn_baseline_entry_model(e), model) == 0)
            return e;
    }
    return NULL;
}

sn_baseline_entry *sn_baseline_find(const sn_baseline *b, const char *service, const char *model,
                                    sn_metric metric)
{
    size_t slen, mlen;
    if (key_check(service, model, metric, &slen, &mlen) != 0)
        return NULL;
    return lookup(b, key_hash(b->cfg.hash_seed, service, slen, model, mlen, metric), service, model,
                  metric);
}

static void lru_unlink(sn_baseline *b, sn_baseline_entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        b->oldest = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        b->newest = e->prev;
    e->prev = e->next = NULL;
}

static void lru_append(sn_baseline *b, sn_baseline_entry *e)
{
    e->prev = b->newest;
    e->next = NULL;
    if (b->newest != NULL)
        b->newest->next = e;
    else
        b->oldest = e;
    b->newest = e;
}

void sn_baseline_remove(sn_baseline *b, sn_baseline_entry *e)
{
    sn_baseline_entry **pp = &b->index[e->hash & b->mask];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(b, e);
    b->used -= e->bytes;
    b->keys--;
    free(e);
}

int sn_baseline_get(sn_baseline *b, const char *service, const char *model, sn_metric metric,
                    int64_t now, sn_baseline_entry **out)
{
    size_t slen, mlen;
    int rc = key_check(service, model, metric, &slen, &mlen);
    if (rc != 0)
        return rc;
    uint64_t h = key_hash(b->cfg.hash_seed, service, slen, model, mlen, metric);
    sn_baseline_entry *e = lookup(b, h, service, model, metric);
    if (e != NULL) {
        *out = e;
        return 0;
    }

    size_t user_off = round8(sizeof(*e) + slen + 1 + mlen + 1);
    size_t stats_off = user_off + b->user_size;
    size_t size = stats_off + b->stats_size;
    size_t bytes = chunk_bytes(size);
    /* used <= budget always holds, so budget - used cannot wrap. */
    while (bytes > b->cfg.memory_budget - b->used && b->oldest != NULL) {
        if (b->cfg.on_drop != NULL)
            b->cfg.on_drop(b->oldest, b->cfg.on_drop_ud);
        sn_baseline_remove(b, b->oldest);
        b->evicted++;
    }
    if (bytes > b->cfg.memory_budget - b->used)
        return -ENOMEM; /* unreachable: create checked that one entry of any size fits */
    e = malloc(size);
    if (e == NULL)
        return -ENOMEM;
    memset(e, 0, sizeof(*e));
    e->hash = h;
    e->last_seen = now;
    e->bytes = (uint32_t)bytes;
    e->metric = (uint8_t)metric;
    e->model_off = (uint16_t)(slen + 1);
    e->stats_off = (uint16_t)stats_off;
    e->user_off = (uint16_t)user_off;
    if (b->user_size > 0)
        memset((char *)e + user_off, 0, b->user_size);
    sn_welford_init(&e->all);
    sn_ewma_init(&e->ewma, b->cfg.ewma_alpha);
    if (b->cfg.mode == SN_BASELINE_EXACT) {
        sn_window_init(entry_window(e), b->cfg.window);
    } else {
        sn_sketch_init(entry_sketch(b, e, 0), b->cfg.sketch_alpha, b->cfg.sketch_buckets);
        sn_sketch_init(entry_sketch(b, e, 1), b->cfg.sketch_alpha, b->cfg.sketch_buckets);
    }
    char *es = (char *)(e + 1);
    memcpy(es, service, slen);
    es[slen] = '\0';
    memcpy(es + slen + 1, model, mlen);
    es[slen + 1 + mlen] = '\0';

    sn_baseline_entry **slot = &b->index[h & b->mask];
    e->hnext = *slot;
    *slot = e;
    lru_append(b, e);
    b->used += bytes;
    b->keys++;
    *out = e;
    return 0;
}

int sn_baseline_observe(sn_baseline *b, sn_baseline_entry *e, double x, int64_t now)
{
    if (!sn_stats_sample_ok(x))
        return -EINVAL;
    if (b->cfg.mode == SN_BASELINE_EXACT) {
        sn_window_add(entry_window(e), x);
    } else {
        /* the current sketch holds window/2 samples: the other one, emptied, becomes current
         * (cannot overflow: window/2 < SN_SKETCH_MAX_COUNT) */
        if (sn_sketch_add_below(entry_sketch(b, e, e->cur), x, b->cfg.window / 2) != 0) {
            e->cur ^= 1;
            sn_sketch *cur = entry_sketch(b, e, e->cur);
            sn_sketch_clear(cur);
            sn_sketch_add_below(cur, x, UINT64_MAX);
        }
    }
    sn_welford_add(&e->all, x);
    sn_ewma_add(&e->ewma, x);
    e->seen++;
    sn_baseline_touch(b, e, now);
    return 0;
}

void sn_baseline_touch(sn_baseline *b, sn_baseline_entry *e, int64_t now)
{
    if (now > e->last_seen)
        e->last_seen = now;
    if (b->newest != e) {
        lru_unlink(b, e);
        lru_append(b, e);
    }
}

void sn_baseline_summary(sn_baseline *b, const sn_baseline_entry *e, sn_summary *out)
{
    sn_baseline_summary_mad(b, e, out, true);
}

void sn_baseline_summary_mad(sn_baseline *b, const sn_baseline_entry *e, sn_summary *out,
                             bool with_mad)
{
    if (b->cfg.mode == SN_BASELINE_EXACT) {
        sn_window_summary(entry_window(e), out);
        return;
    }
    sn_sketch_clear(b->scratch);
    /* Same alpha, and the scratch sketch has the entries' bucket cap and is empty: no failure. */
    sn_sketch_merge(b->scratch, entry_sketch(b, e, e->cur ^ 1));
    sn_sketch_merge(b->scratch, entry_sketch(b, e, e->cur));
    sn_sketch_summary_mad(b->scratch, out, with_mad);
}

uint64_t sn_baseline_expire(sn_baseline *b, int64_t now, int64_t idle_ns)
{
    if (idle_ns < 0)
        return 0;
    uint64_t removed = 0;
    sn_baseline_entry *e = b->oldest;
    while (e != NULL) {
        sn_baseline_entry *next = e->next;
        if (now >= e->last_seen && (uint64_t)now - (uint64_t)e->last_seen > (uint64_t)idle_ns) {
            if (b->cfg.on_drop != NULL)
                b->cfg.on_drop(e, b->cfg.on_drop_ud);
            sn_baseline_remove(b, e);
            removed++;
        }
        e = next;
    }
    b->expired += removed;
    return removed;
}

int sn_baseline_foreach(const sn_baseline *b, sn_baseline_visit_fn fn, void *arg)
{
    for (const sn_baseline_entry *e = b->oldest; e != NULL; e = e->next) {
        int rc = fn(e, arg);
        if (rc != 0)
            return rc;
    }
    return 0;
}

void sn_baseline_get_stats(const sn_baseline *b, sn_baseline_stats *out)
{
    out->keys = b->keys;
    out->bytes_used = b->used;
    out->budget = b->cfg.memory_budget;
    out->index_bytes = b->fixed;
    out->evicted = b->evicted;
    out->expired = b->expired;
}

const char *sn_baseline_entry_service(const sn_baseline_entry *e)
{
    return (const char *)(e + 1);
}

const char *sn_baseline_entry_model(const sn_baseline_entry *e)
{
    return (const char *)(e + 1) + e->model_off;
}

sn_metric sn_baseline_entry_metric(const sn_baseline_entry *e)
{
    return (sn_metric)e->metric;
}

uint64_t sn_baseline_entry_seen(const sn_baseline_entry *e)
{
    return e->seen;
}

int64_t sn_baseline_entry_last_seen(const sn_baseline_entry *e)
{
    return e->last_seen;
}

const sn_welford *sn_baseline_entry_welford(const sn_baseline_entry *e)
{
    return &e->all;
}

const sn_ewma *sn_baseline_entry_ewma(const sn_baseline_entry *e)
{
    return &e->ewma;
}

size_t sn_baseline_entry_bytes(const sn_baseline_entry *e)
{
    return e->bytes;
}

void sn_baseline_entry_prefetch(const sn_baseline *b, const sn_baseline_entry *e)
{
    const char *p = (const char *)e;
    __builtin_prefetch(p);
    /* header and names, then the user area: contiguous up to stats_off */
    for (size_t off = 64; off < e->stats_off; off += 64)
        __builtin_prefetch(p + off);
    if (b->cfg.mode != SN_BASELINE_EXACT) {
        const char *sk = (const char *)entry_sketch(b, e, e->cur);
        __builtin_prefetch(sk);
        __builtin_prefetch(sk + 64);
    }
}

void *sn_baseline_entry_user(sn_baseline_entry *e)
{
    if (e->user_off == e->stats_off)
        return NULL;
    return (char *)e + e->user_off;
}

/* ---- persistence ------------------------------------------------------------------------------
 * Layout in baseline.h. Offsets of the fixed header: */
#define BLOB_MAGIC     0x31424e53u /* "SNB1" read little-endian */
#define BLOB_HEADER    108u
#define BLOB_CRC       4u
#define BLOB_FLAG_CUR1 0x01u
#define SAMPLE_CHUNK   256u /* samples copied per step through the stack */

/* Serialized size of one sketch of the table's bucket cap at its fullest (sketch.h's
 * SN_SKETCH_MAX_SERIALIZED formula for cfg.sketch_buckets). */
static size_t sketch_blob_max(const sn_baseline *b)
{
    return 88u + 4u * (size_t)b->cfg.sketch_buckets + 4u;
}

size_t sn_baseline_serialized_max(const sn_baseline *b)
{
    size_t n = BLOB_HEADER + 2 * (SN_NAME_MAX - 1) + b->cfg.user_bytes + BLOB_CRC;
    if (b->cfg.mode == SN_BASELINE_EXACT)
        return n + 4 + 8 * (size_t)b->cfg.window;
    return n + 2 * (4 + sketch_blob_max(b));
}

size_t sn_baseline_entry_serialized_size(const sn_baseline *b, const sn_baseline_entry *e)
{
    const char *svc = sn_baseline_entry_service(e);
    size_t n =
        BLOB_HEADER + strlen(svc) + strlen(svc + e->model_off) + b->cfg.user_bytes + BLOB_CRC;
    if (b->cfg.mode == SN_BASELINE_EXACT)
        return n + 4 + 8 * (size_t)sn_window_count(entry_window(e));
    return n + 8 + sn_sketch_serialized_size(entry_sketch(b, e, 0)) +
           sn_sketch_serialized_size(entry_sketch(b, e, 1));
}

int sn_baseline_entry_serialize(const sn_baseline *b, const sn_baseline_entry *e, void *buf,
                                size_t cap, size_t *len)
{
    size_t need = sn_baseline_entry_serialized_size(b, e);
    if (cap < need)
        return -ENOSPC;
    uint8_t *p = buf;
    const char *svc = sn_baseline_entry_service(e), *mdl = sn_baseline_entry_model(e);
    size_t slen = strlen(svc), mlen = strlen(mdl);
    memset(p, 0, BLOB_HEADER);
    sn_le_put_u32(p + 0, BLOB_MAGIC);
    sn_le_put_u16(p + 4, SN_BASELINE_BLOB_VERSION);
    p[6] = (uint8_t)b->cfg.mode;
    p[7] = e->metric;
    sn_le_put_u16(p + 8, (uint16_t)slen);
    sn_le_put_u16(p + 10, (uint16_t)mlen);
    p[12] = b->cfg.mode == SN_BASELINE_COMPACT && e->cur ? BLOB_FLAG_CUR1 : 0;
    sn_le_put_u64(p + 16, e->seen);
    sn_le_put_u64(p + 24, (uint64_t)e->last_seen);
    sn_le_put_u64(p + 32, e->all.n);
    sn_le_put_f64(p + 40, e->all.mean);
    sn_le_put_f64(p + 48, e->all.m2);
    sn_le_put_f64(p + 56, e->all.min);
    sn_le_put_f64(p + 64, e->all.max);
    sn_le_put_f64(p + 72, e->ewma.alpha);
    sn_le_put_f64(p + 80, e->ewma.mean);
    sn_le_put_f64(p + 88, e->ewma.var);
    sn_le_put_u64(p + 96, e->ewma.n);
    sn_le_put_u32(p + 104, (uint32_t)b->cfg.user_bytes);
    uint8_t *c = p + BLOB_HEADER;
    memcpy(c, svc, slen);
    c += slen;
    memcpy(c, mdl, mlen);
    c += mlen;
    if (b->cfg.user_bytes > 0)
        memcpy(c, (const char *)e + e->user_off, b->cfg.user_bytes);
    c += b->cfg.user_bytes;
    if (b->cfg.mode == SN_BASELINE_EXACT) {
        const sn_window *w = entry_window(e);
        uint32_t n = sn_window_count(w);
        sn_le_put_u32(c, n);
        c += 4;
        double chunk[SAMPLE_CHUNK];
        for (uint32_t from = 0; from < n;) {
            uint32_t got = sn_window_samples_from(w, from, chunk, SAMPLE_CHUNK);
            for (uint32_t i = 0; i < got; i++, c += 8)
                sn_le_put_f64(c, chunk[i]);
            from += got;
        }
    } else {
        for (unsigned k = 0; k < 2; k++) {
            size_t sl;
            /* cannot fail: need counted both sketches' exact sizes */
            sn_sketch_serialize(entry_sketch(b, e, k), c + 4, (size_t)(p + cap - (c + 4)), &sl);
            sn_le_put_u32(c, (uint32_t)sl);
            c += 4 + sl;
        }
    }
    sn_le_put_u32(c, sn_crc32(0, p, (size_t)(c - p)));
    *len = need;
    return 0;
}

/* Whether Welford moments read from a blob are self-consistent for n samples. */
static bool welford_ok(const sn_welford *w)
{
    if (w->n == 0)
        return isnan(w->mean) && isnan(w->min) && isnan(w->max) && w->m2 == 0.0;
    return sn_stats_sample_ok(w->min) && sn_stats_sample_ok(w->max) && w->min <= w->max &&
           isfinite(w->mean) && isfinite(w->m2) && w->m2 >= 0.0;
}

/* Whether an EWMA read from a blob is self-consistent. */
static bool ewma_ok(const sn_ewma *x)
{
    if (!(x->alpha > 0.0 && x->alpha <= 1.0))
        return false;
    if (x->n == 0)
        return isnan(x->mean) && x->var == 0.0;
    return isfinite(x->mean) && isfinite(x->var) && x->var >= 0.0;
}

/* Parses one length-prefixed sketch at *off of p[0..end). Returns 0, -EBADMSG or -ENOMEM. */
static int read_sketch(const uint8_t *p, size_t end, size_t *off, sn_sketch **out)
{
    if (end - *off < 4)
        return -EBADMSG;
    size_t sl = sn_le_get_u32(p + *off);
    *off += 4;
    if (sl > end - *off)
        return -EBADMSG;
    int rc = sn_sketch_deserialize(out, p + *off, sl);
    *off += sl;
    return rc;
}

int sn_baseline_restore(sn_baseline *b, const void *blob, size_t len, int64_t now,
                        sn_baseline_entry **out)
{
    return sn_baseline_restore_ex(b, blob, len, now, 0, out);
}

int sn_baseline_restore_ex(sn_baseline *b, const void *blob, size_t len, int64_t now,
                           unsigned flags_in, sn_baseline_entry **out)
{
    const uint8_t *p = blob;
    if (blob == NULL || len < BLOB_HEADER + BLOB_CRC || sn_le_get_u32(p) != BLOB_MAGIC)
        return -EBADMSG;
    size_t end = len - BLOB_CRC; /* the checksummed part */
    if (sn_crc32(0, p, end) != sn_le_get_u32(p + end))
        return -EBADMSG;
    if (sn_le_get_u16(p + 4) != SN_BASELINE_BLOB_VERSION)
        return -EPROTO;
    unsigned mode = p[6], metric = p[7], flags = p[12];
    size_t slen = sn_le_get_u16(p + 8), mlen = sn_le_get_u16(p + 10);
    if (mode > SN_BASELINE_COMPACT || metric >= SN_METRIC_COUNT || p[13] != 0 || p[14] != 0 ||
        p[15] != 0 || (flags & ~BLOB_FLAG_CUR1) != 0 || (mode == SN_BASELINE_EXACT && flags != 0))
        return -EBADMSG;
    if (slen == 0 || slen >= SN_NAME_MAX || mlen >= SN_NAME_MAX)
        return -EBADMSG;
    if (mode != (unsigned)b->cfg.mode)
        return -EPROTO;
    uint64_t seen = sn_le_get_u64(p + 16);
    int64_t last_seen = (int64_t)sn_le_get_u64(p + 24);
    sn_welford all = {sn_le_get_u64(p + 32), sn_le_get_f64(p + 40), sn_le_get_f64(p + 48),
                      sn_le_get_f64(p + 56), sn_le_get_f64(p + 64)};
    sn_ewma ew = {sn_le_get_f64(p + 72), sn_le_get_f64(p + 80), sn_le_get_f64(p + 88),
                  sn_le_get_u64(p + 96)};
    size_t ulen = sn_le_get_u32(p + 104);
    if (all.n != seen || ew.n != seen || !welford_ok(&all) || !ewma_ok(&ew))
        return -EBADMSG;
    if (end - BLOB_HEADER < slen + mlen)
        return -EBADMSG;
    if (end - BLOB_HEADER - slen - mlen < ulen)
        return -EBADMSG;
    /* Another user area size: its owner's format changed. Statistics only, when asked. */
    bool user_kept = ulen == b->cfg.user_bytes;
    if (!user_kept && !(flags_in & SN_BASELINE_RESTORE_STATS_ONLY))
        return -EPROTO;
    char service[SN_NAME_MAX], model[SN_NAME_MAX];
    const uint8_t *names = p + BLOB_HEADER;
    if (memchr(names, '\0', slen + mlen) != NULL)
        return -EBADMSG;
    memcpy(service, names, slen);
    service[slen] = '\0';
    memcpy(model, names + slen, mlen);
    model[mlen] = '\0';
    const uint8_t *user = names + slen + mlen;
    size_t off = BLOB_HEADER + slen + mlen + ulen;

    /* The statistics: validate everything before the table changes. */
    uint32_t nsamples = 0;
    size_t samples_off = 0;
    sn_sketch *sk[2] = {NULL, NULL};
    sn_baseline_entry *e;
    int rc;
    if (mode == SN_BASELINE_EXACT) {
        if (end - off < 4)
            return -EBADMSG;
        nsamples = sn_le_get_u32(p + off);
        off += 4;
        if (nsamples > SN_WINDOW_MAX_CAPACITY || (size_t)nsamples * 8 != end - off ||
            nsamples > seen)
            return -EBADMSG;
        samples_off = off;
        for (uint32_t i = 0; i < nsamples; i++)
            if (!sn_stats_sample_ok(sn_le_get_f64(p + off + 8 * (size_t)i)))
                return -EBADMSG;
    } else {
        rc = read_sketch(p, end, &off, &sk[0]);
        if (rc == 0)
            rc = read_sketch(p, end, &off, &sk[1]);
        if (rc != 0)
            goto out_free_sketches;
        rc = -EBADMSG;
        if (off != end || sn_sketch_count(sk[0]) + sn_sketch_count(sk[1]) > seen)
            goto out_free_sketches;
        rc = -EPROTO;
        if (sn_sketch_alpha(sk[0]) != b->cfg.sketch_alpha ||
            sn_sketch_alpha(sk[1]) != b->cfg.sketch_alpha ||
            sn_sketch_count(sk[0]) > b->cfg.window || sn_sketch_count(sk[1]) > b->cfg.window)
            goto out_free_sketches;
    }
    rc = -EEXIST;
    if (sn_baseline_find(b, service, model, (sn_metric)metric) != NULL)
        goto out_free_sketches;

    rc = sn_baseline_get(b, service, model, (sn_metric)metric, now, &e);
    if (rc != 0)
        goto out_free_sketches;
    e->seen = seen;
    e->last_seen = last_seen;
    e->all = all;
    e->ewma = ew;
    e->ewma.alpha = b->cfg.ewma_alpha; /* the table's smoothing from now on */
    if (user_kept && ulen > 0)
        memcpy((char *)e + e->user_off, user, ulen);
    if (mode == SN_BASELINE_EXACT) {
        uint32_t skip = nsamples > b->cfg.window ? nsamples - b->cfg.window : 0;
        for (uint32_t i = skip; i < nsamples; i++)
            sn_window_add(entry_window(e), sn_le_get_f64(p + samples_off + 8 * (size_t)i));
    } else {
        /* Same alpha and both counts within the window: the merges cannot fail. */
        for (unsigned k = 0; k < 2; k++)
            sn_sketch_merge(entry_sketch(b, e, k), sk[k]);
        e->cur = (flags & BLOB_FLAG_CUR1) ? 1 : 0;
    }
    if (out != NULL)
        *out = e;
    rc = user_kept ? 0 : 1;

out_free_sketches:
    sn_sketch_destroy(sk[1]);
    sn_sketch_destroy(sk[0]);
    return rc;
}

int sn_baseline_entry_merge_window(const sn_baseline *b, const sn_baseline_entry *e, sn_sketch *acc)
{
    if (b->cfg.mode != SN_BASELINE_COMPACT)
        return -EPROTO;
    int rc = sn_sketch_merge(acc, entry_sketch(b, e, e->cur ^ 1));
    if (rc == 0)
        rc = sn_sketch_merge(acc, entry_sketch(b, e, e->cur));
    return rc;
}
