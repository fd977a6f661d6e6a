/*
 * metric_feed.h -- GenAI metric points become facts where spans are absent.
 *
 * The metrics decoder (otlp/metrics.h) hands over one sn_metric_fact per GenAI histogram point.
 * This module decides which of them become sn_aggregate facts for the aggregator:
 *
 *   1. span coverage: a (service, model) pair that delivered spans within `cover_ns` (sidecar
 *      receive time) is covered -- its spans already carry every call, so its points are
 *      counted (covered) and dropped; nothing is counted twice;
 *   2. temporality: cumulative points are differenced per series (otlp/metrics_delta.h); the
 *      first point of a series older than the sidecar only sets the series' baseline;
 *   3. conversion: the delta point becomes an sn_aggregate (count, sum, min/max, errors = count
 *      when the point has an error.type; for token usage the cost from the price table when the
 *      model is known, else unknown);
 *   4. the caller (the pipeline's loop) journals the aggregate as a Batch.aggregates entry
 *      and answers; when it refuses the request after all (journal write failed), it takes the
 *      request's points back with sn_metric_feed_undo, newest first, so the delta state is as if
 *      the request never came and the client's retry counts every call once.
 *
 * Bounds: the coverage table holds `max_pairs` pairs (a full probe window forgets the pair seen
 * longest ago: counted as evicted), the delta table `max_series` series (new series refused when
 * full, counted). The feed keeps no aggregates: they go into the journal record of their
 * request. Memory is allocated at create only.
 *
 * Thread safety: every function takes the feed's mutex -- the transports call note_span on their
 * threads, the loop calls add, undo and expire. add and undo must come from one thread (the
 * loop): an undo is only exact when nothing was added since.
 */
#ifndef SN_SIDECAR_METRIC_FEED_H
#define SN_SIDECAR_METRIC_FEED_H

#include "aggregate.h"
#include "otlp/metrics_delta.h"
#include "otlp/metrics.h"
#include "price.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sn_metric_feed sn_metric_feed;

typedef struct sn_metric_feed_config {
    size_t max_pairs;        /* span-coverage table; default 4096 */
    int64_t cover_ns;        /* a pair is covered this long after its last span; default 5 min */
    size_t max_series;       /* cumulative series differenced; default 4096 */
    int64_t since_unix_nano; /* the sidecar's start: series starting later are new in full */
} sn_metric_feed_config;

/* Fills the defaults above (since_unix_nano 0). */
void sn_metric_feed_config_defaults(sn_metric_feed_config *cfg);

/* Creates a feed; prices (may be NULL: cost stays unknown) is borrowed and must outlive it.
 * Returns 0 and *out, -EINVAL for a limit of 0 or above 1<<20 or cover_ns < 0, -ENOMEM. Free
 * with sn_metric_feed_destroy. */
int sn_metric_feed_create(const sn_metric_feed_config *cfg, const sn_price_table *prices,
                          sn_metric_feed **out);

/* Frees the feed and what it queued. NULL is a no-op. */
void sn_metric_feed_destroy(sn_metric_feed *f);

/* Records that (service, model) delivered a span at now_ns (the sidecar's clock). */
void sn_metric_feed_note_span(sn_metric_feed *f, const char *service, const char *model,
                              int64_t now_ns);

/* Whether (service, model) is covered by spans at now_ns. */
bool sn_metric_feed_covered(sn_metric_feed *f, const char *service, const char *model,
                            int64_t now_ns);

/* What sn_metric_feed_add did with a point (each is also counted in the stats). */
typedef enum sn_metric_feed_outcome {
    SN_METRIC_FEED_QUEUED = 0, /* an aggregate is made (journaled and shipped by the caller) */
    SN_METRIC_FEED_COVERED,    /* the pair sent spans: dropped */
    SN_METRIC_FEED_BASELINE,   /* first cumulative point of a series: nothing new yet */
    SN_METRIC_FEED_UNCHANGED,  /* nothing new, or out of order */
    SN_METRIC_FEED_REFUSED,    /* new series, delta table full */
    SN_METRIC_FEED_OUTCOME_COUNT
} sn_metric_feed_outcome;

/* "queued", "covered", "baseline", "unchanged", "refused". Static storage. */
const char *sn_metric_feed_outcome_name(sn_metric_feed_outcome o);

/* What happened to the points (counts since create). */
typedef struct sn_metric_feed_stats {
    uint64_t outcomes[SN_METRIC_FEED_OUTCOME_COUNT]; /* points by sn_metric_feed_outcome */
    uint64_t evicted; /* pairs forgotten from the full coverage table */
    uint64_t pairs;   /* pairs in the coverage table now */
} sn_metric_feed_stats;

/* Takes one decoded point at now_ns (the sidecar's clock): steps 1-3 above. For
 * SN_METRIC_FEED_QUEUED *out holds the aggregate; *ch always gets what the point changed in the
 * delta state (for sn_metric_feed_undo). Never fails. */
sn_metric_feed_outcome sn_metric_feed_add(sn_metric_feed *f, const sn_metric_fact *fact,
                                          int64_t now_ns, sn_aggregate *out,
                                          sn_metric_delta_change *ch);

/* Takes back one point sn_metric_feed_add took (its outcome and change), for a request refused
 * after its points went through add: undo them newest first, with no add or expire in between.
 * The stats forget the point too. */
void sn_metric_feed_undo(sn_metric_feed *f, sn_metric_feed_outcome o,
                         const sn_metric_delta_change *ch);

/* Forgets pairs and series idle since before_unix_nano / before the cover window. */
void sn_metric_feed_expire(sn_metric_feed *f, int64_t now_ns);

/* Converts a delta point to an aggregate (step 3 above; exposed for tests). prices may be NULL.
 * Never fails. */
void sn_metric_feed_convert(const sn_metric_fact *fact, const sn_price_table *prices,
                            sn_aggregate *out);

/* The counts so far. */
void sn_metric_feed_get_stats(sn_metric_feed *f, sn_metric_feed_stats *out);

#endif
