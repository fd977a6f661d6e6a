/*
 * recent.h -- the last values of each (service, model, metric) key, for the dashboard's
 * drill-down (GET /api/v1/series). Baselines keep sketches, not samples; this keeps the raw
 * (time, value) points of the most recent calls, bounded three ways:
 *
 *   - per key: a ring of `points_per_key` points (the oldest is overwritten);
 *   - keys: at most `max_keys`, the least recently written evicted first (LRU);
 *   - memory: all rings are allocated up front at create (max_keys * points_per_key points,
 *     capped by `max_bytes`), so nothing is allocated per event.
 *
 * Pure (no I/O, no clock, no locks): owned by the aggregator's loop thread.
 */
#ifndef SN_RECENT_H
#define SN_RECENT_H

#include "event.h"

#include <stddef.h>
#include <stdint.h>

#define SN_RECENT_DEFAULT_POINTS 300u
#define SN_RECENT_DEFAULT_KEYS   2048u
#define SN_RECENT_DEFAULT_BYTES  (16u * 1024u * 1024u)

typedef struct sn_recent sn_recent;

typedef struct sn_recent_config {
    size_t points_per_key; /* 0: SN_RECENT_DEFAULT_POINTS; at most 100000 */
    size_t max_keys;       /* 0: SN_RECENT_DEFAULT_KEYS; lowered to fit max_bytes */
    size_t max_bytes;      /* 0: SN_RECENT_DEFAULT_BYTES; the whole module's memory ceiling */
} sn_recent_config;

/* One recent value. */
typedef struct sn_recent_point {
    int64_t time_unix_nano;
    double value;
} sn_recent_point;

typedef struct sn_recent_stats {
    size_t keys;      /* keys held now */
    size_t max_keys;  /* after fitting max_bytes */
    size_t bytes;     /* allocated at create */
    uint64_t points;  /* points ever added */
    uint64_t evicted; /* keys evicted for room */
} sn_recent_stats;

/* Allocates every ring (cfg NULL: defaults). Returns 0 and sets *out, or -EINVAL (a limit out
 * of range, or max_bytes too small for one key) / -ENOMEM with a message in err (errlen bytes,
 * may be NULL). Free with sn_recent_destroy. */
int sn_recent_create(const sn_recent_config *cfg, sn_recent **out, char *err, size_t errlen);

/* Frees everything. NULL is allowed. */
void sn_recent_destroy(sn_recent *r);

/* Appends (t, value) to the key's ring, creating the key (evicting the least recently written
 * one when full) on first use. Names longer than SN_NAME_MAX-1 bytes are cut. Never allocates.
 * Returns 0, or -EINVAL for a NULL name, a metric out of range or a value that is not finite. */
int sn_recent_add(sn_recent *r, const char *service, const char *model, sn_metric metric, int64_t t,
                  double value);

/* Appends every metric the event knows (sn_event_metric) at the event's end time. Returns the
 * number of points added. */
unsigned sn_recent_add_event(sn_recent *r, const sn_event *ev);

/* Copies the newest min(limit, held) points of the key into out (caller's array of at least
 * `limit` elements), oldest first. Returns the number copied (0 when none), or -ENOENT when the
 * key is not held. Does not change the LRU order. */
long sn_recent_get(const sn_recent *r, const char *service, const char *model, sn_metric metric,
                   sn_recent_point *out, size_t limit);

/* The ring size of every key. */
size_t sn_recent_points_per_key(const sn_recent *r);

void sn_recent_stats_get(const sn_recent *r, sn_recent_stats *out);

#endif
