/*
 * baseline_share.h -- global baselines shared by several aggregator replicas through Redis
 * (docs/aggregator.md, "Several replicas (Redis)", "Shared baselines").
 *
 * Each replica scores the keys of the traffic it receives. The loop marks every (service,
 * model) pair it applies an event for (sn_bshare_touch, O(1), no allocation). Every `interval`
 * a round takes the pairs touched within the last `ttl` and, at most `batch` keys per tick,
 * publishes this replica's blob of each of their global keys to Redis and reads the other
 * replicas' blobs back in the same pipeline (sn_shared_baselines_exchange), then merges them
 * into the key's read-only scoring view (sn_engine_view_merge). A replica that stops publishing
 * drops out of the views after `ttl`.
 *
 * Bounded: at most max_pairs pairs per round (more are counted as dropped and wait for the
 * next round they are touched in), at most batch keys per tick, one Redis pipeline per tick
 * bounded by 2 x redis.timeout; the views shown by the API are kept in a table of
 * max_pairs x 8 slots (about 1 KiB per pair). Fail open: when Redis does not answer, every merged
 * view is dropped (keys are scored on their local baselines again) until an exchange succeeds.
 *
 * Threads: the loop thread only.
 */
#ifndef SN_BASELINE_SHARE_H
#define SN_BASELINE_SHARE_H

#include "engine.h"
#include "shared_state.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sn_bshare sn_bshare;

typedef struct sn_bshare_config {
    int64_t interval_ns; /* a round starts this often (default 5 s) */
    int64_t ttl_ns;      /* a contribution not renewed for this long is ignored, > interval
                            (default 30 s) */
    size_t batch;        /* keys exchanged per tick, 1..SN_SHARED_EXCHANGE_MAX (default 256) */
    size_t max_pairs;    /* (service, model) pairs per round (default 4096) */
} sn_bshare_config;

typedef struct sn_bshare_stats {
    uint64_t rounds;        /* rounds completed */
    uint64_t exchanged;     /* keys published and read back */
    uint64_t merged;        /* views built with at least one other replica */
    uint64_t skipped;       /* other replicas' blobs refused (corrupt, another configuration) */
    uint64_t pairs_dropped; /* touches refused because the round's pair set was full */
    uint64_t failures;      /* exchanges Redis did not answer (views dropped) */
} sn_bshare_stats;

/* Fills the defaults above. */
void sn_bshare_config_init(sn_bshare_config *cfg);

/* Creates the sharing state for engine e over the shared state s (both borrowed; they must
 * outlive it). Returns 0 and sets *out; -EINVAL with err for a bad setting; -ENOMEM. Free with
 * sn_bshare_destroy. */
int sn_bshare_create(const sn_bshare_config *cfg, sn_engine *e, sn_shared *s, sn_bshare **out,
                     char *err, size_t errlen);

/* Frees everything. NULL is a no-op. */
void sn_bshare_destroy(sn_bshare *b);

/* Marks the pair as scored here now (the last tick's time). O(1), never allocates; a full set
 * counts a new pair as dropped (it is taken once pairs idle for the ttl leave). */
void sn_bshare_touch(sn_bshare *b, const char *service, const char *model);

/* Once a second from the loop: starts a round when due, then exchanges at most `batch` keys.
 * now_ns: a monotonic clock. */
void sn_bshare_tick(sn_bshare *b, int64_t now_ns);

/* The merged view the engine scores global key en against, if any (replicas >= 2). */
bool sn_bshare_view_get(const sn_bshare *b, const sn_baseline_entry *en, sn_engine_view *out);

/* Copies the counters. */
void sn_bshare_stats_get(const sn_bshare *b, sn_bshare_stats *out);

#endif
