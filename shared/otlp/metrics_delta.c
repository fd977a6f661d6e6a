/*
 * metrics_delta.c -- cumulative -> delta for metric facts (see metrics_delta.h).
 *
 * An open-addressing hash table (linear probing, power-of-two capacity at least twice
 * max_series, so probes stay short) keyed by (series_id, metric). expire() rebuilds the table
 * through a second array of the same size allocated at creation, so nothing allocates after
 * create().
 */
#include "otlp/metrics_delta.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERIES_LIMIT ((size_t)1 << 24)

typedef struct series {
    uint64_t id;
    int64_t start; /* the series' start time as its points give it */
    int64_t last;  /* time of the last point */
    uint64_t count;
    double sum; /* NAN when the points carry none */
    uint8_t metric;
    bool used;
} series;

struct sn_metric_delta {
    series *slots;
    series *spare; /* expire()'s rebuild area */
    size_t mask;   /* capacity - 1 */
    size_t max_series;
    int64_t since;
    sn_metric_delta_stats st;
};

int sn_metric_delta_create(size_t max_series, int64_t since_unix_nano, sn_metric_delta **out)
{
    if (max_series == 0 || max_series > MAX_SERIES_LIMIT)
        return -EINVAL;
    size_t cap = 2;
    while (cap < 2 * max_series)
        cap <<= 1;
    sn_metric_delta *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -ENOMEM;
    t->slots = calloc(cap, sizeof *t->slots);
    if (t->slots == NULL)
        goto out_free_table;
    t->spare = calloc(cap, sizeof *t->spare);
    if (t->spare == NULL)
        goto out_free_slots;
    t->mask = cap - 1;
    t->max_series = max_series;
    t->since = since_unix_nano;
    *out = t;
    return 0;

out_free_slots:
    free(t->slots);
out_free_table:
    free(t);
    return -ENOMEM;
}

void sn_metric_delta_destroy(sn_metric_delta *t)
{
    if (t == NULL)
        return;
    free(t->spare);
    free(t->slots);
    free(t);
}

/* The home slot of a key. */
static size_t home(const sn_metric_delta *t, uint64_t id, uint8_t metric)
{
    uint64_t h = (id ^ ((uint64_t)metric * 0x9e3779b97f4a7c15ULL)) * 0xff51afd7ed558ccdULL;
    return (size_t)(h >> 17) & t->mask;
}

/* The slot holding the key, or the empty slot where it would go. */
static series *find(sn_metric_delta *t, uint64_t id, uint8_t metric)
{
    size_t i = home(t, id, metric);
    for (;;) {
        series *s = &t->slots[i];
        if (!s->used || (s->id == id && s->metric == metric))
            return s;
        i = (i + 1) & t->mask; /* the table is never full: capacity >= 2 * max_series */
    }
}

/* Remembers p as the series' latest cumulative point. */
static void remember(series *s, const sn_metric_fact *p)
{
    s->start = p->start_unix_nano;
    s->last = p->end_unix_nano;
    s->count = p->count;
    s->sum = p->sum;
}

int sn_metric_delta_apply(sn_metric_delta *t, const sn_metric_fact *in, sn_metric_fact *out)
{
    sn_metric_delta_change ch;
    return sn_metric_delta_apply_undoable(t, in, out, &ch);
}

void sn_metric_delta_undo(sn_metric_delta *t, const sn_metric_delta_change *ch)
{
    if (ch->slot > t->mask)
        return;
    series *s = &t->slots[ch->slot];
    if (ch->inserted) {
        /* The newest insertion ends every probe run it is in: clearing it breaks none. */
        memset(s, 0, sizeof *s);
        t->st.series--;
        return;
    }
    s->start = ch->start;
    s->last = ch->last;
    s->count = ch->count;
    s->sum = ch->sum;
}

int sn_metric_delta_apply_undoable(sn_metric_delta *t, const sn_metric_fact *in,
                                   sn_metric_fact *out, sn_metric_delta_change *ch)
{
    ch->slot = SIZE_MAX;
    ch->inserted = false;
    if (in->temporality == SN_METRIC_TEMPORALITY_DELTA) {
        if (out != in)
            *out = *in;
        t->st.passed++;
        return SN_METRIC_DELTA_EMIT;
    }
    if (in->temporality != SN_METRIC_TEMPORALITY_CUMULATIVE)
        return -EINVAL;

    uint8_t metric = (uint8_t)in->metric;
    series *s = find(t, in->series_id, metric);
    ch->slot = (size_t)(s - t->slots);
    ch->inserted = !s->used;
    ch->start = s->start;
    ch->last = s->last;
    ch->count = s->count;
    ch->sum = s->sum;
    if (!s->used) {
        if (t->st.series >= t->max_series) {
            ch->slot = SIZE_MAX;
            t->st.refused++;
            return -ENOSPC;
        }
        s->used = true;
        s->id = in->series_id;
        s->metric = metric;
        t->st.series++;
        bool fresh = in->start_unix_nano != 0 && in->start_unix_nano >= t->since;
        remember(s, in);
        if (!fresh) {
            t->st.baselines++;
            return SN_METRIC_DELTA_BASELINE;
        }
        if (out != in)
            *out = *in;
        out->temporality = SN_METRIC_TEMPORALITY_DELTA;
        t->st.emitted++;
        return SN_METRIC_DELTA_EMIT;
    }

    if (in->end_unix_nano <= s->last) {
        t->st.out_of_order++;
        return SN_METRIC_DELTA_OUT_OF_ORDER;
    }
    bool reset = in->count < s->count ||
                 (in->start_unix_nano != 0 && s->start != 0 && in->start_unix_nano != s->start);
    if (reset) {
        t->st.resets++;
        remember(s, in);
        if (out != in)
            *out = *in;
        out->temporality = SN_METRIC_TEMPORALITY_DELTA;
        t->st.emitted++;
        return SN_METRIC_DELTA_EMIT;
    }
    if (in->count == s->count) {
        s->last = in->end_unix_nano;
        return SN_METRIC_DELTA_UNCHANGED;
    }

    uint64_t prev_count = s->count;
    double prev_sum = s->sum;
    int64_t prev_end = s->last;
    remember(s, in);
    if (out != in)
        *out = *in;
    out->temporality = SN_METRIC_TEMPORALITY_DELTA;
    out->count = in->count - prev_count;
    out->sum = (isnan(in->sum) || isnan(prev_sum)) ? NAN : out->sum - prev_sum;
    if (!isnan(out->sum) && out->sum < 0)
        out->sum = 0; /* rounding in a client's running sum; the values are non-negative */
    out->min = NAN;
    out->max = NAN;
    out->start_unix_nano = prev_end;
    t->st.emitted++;
    return SN_METRIC_DELTA_EMIT;
}

size_t sn_metric_delta_expire(sn_metric_delta *t, int64_t before_unix_nano)
{
    size_t cap = t->mask + 1, kept = 0, gone = 0;
    for (size_t i = 0; i < cap; i++) {
        if (!t->slots[i].used)
            continue;
        if (t->slots[i].last < before_unix_nano)
            gone++;
        else
            t->spare[kept++] = t->slots[i];
    }
    if (gone == 0)
        return 0;
    memset(t->slots, 0, cap * sizeof *t->slots);
    for (size_t i = 0; i < kept; i++)
        *find(t, t->spare[i].id, t->spare[i].metric) = t->spare[i];
    t->st.series = kept;
    t->st.expired += gone;
    return gone;
}

void sn_metric_delta_get_stats(const sn_metric_delta *t, sn_metric_delta_stats *out)
{
    *out = t->st;
}
