/*
 * metrics_delta.h -- turns cumulative metric facts into deltas.
 *
 * A cumulative histogram point carries everything recorded since its series started; baselines
 * want what happened since the previous point. This table remembers, per series (the fact's
 * series_id and metric), the last cumulative count, sum and time, and answers each new point
 * with the difference. Delta points pass through unchanged.
 *
 * Rules (the OpenTelemetry data model's, as the Collector's cumulativetodelta processor reads
 * them):
 *   - the first point of a series only sets its baseline -- unless the series started at or
 *     after `since_unix_nano` given at creation (it began while we were watching: the whole
 *     point is new), in which case it is emitted in full;
 *   - a point whose start time differs from the series' start, or whose count went down, is a
 *     reset (the application restarted): it is emitted in full, from its own start, and becomes
 *     the new baseline;
 *   - a point not later than the last one is out of order or repeated: ignored;
 *   - a point with the same count as the last has nothing new: not emitted (time advances).
 * Every point emitted is marked DELTA, those emitted in full included. A delta's min and max are
 * unknown (NAN) unless the point is emitted in full: a cumulative min/max covers the whole
 * series, not the interval.
 *
 * Bounds: at most max_series series. A new series when the table is full is refused
 * (-ENOSPC) rather than evicting one silently; sn_metric_delta_expire() forgets series idle
 * since a given time. Memory is allocated once at creation; apply() never allocates.
 *
 * Pure: no clock, no I/O. Not thread-safe: one owner (the sidecar's loop thread).
 */
#ifndef SN_OTLP_METRICS_DELTA_H
#define SN_OTLP_METRICS_DELTA_H

#include "otlp/metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sn_metric_delta sn_metric_delta;

/* What apply() did with a point. */
typedef enum sn_metric_delta_result {
    SN_METRIC_DELTA_EMIT = 0,     /* *out holds a delta point */
    SN_METRIC_DELTA_BASELINE,     /* the first point of a series: remembered, nothing emitted */
    SN_METRIC_DELTA_UNCHANGED,    /* no new values since the last point */
    SN_METRIC_DELTA_OUT_OF_ORDER, /* not later than the last point: ignored */
} sn_metric_delta_result;

/* Counts since creation. */
typedef struct sn_metric_delta_stats {
    uint64_t series;       /* series tracked now */
    uint64_t emitted;      /* delta points produced from cumulative points */
    uint64_t passed;       /* delta points passed through */
    uint64_t baselines;    /* first points that only set a baseline */
    uint64_t resets;       /* series restarts detected */
    uint64_t out_of_order; /* points ignored as old or repeated */
    uint64_t refused;      /* new series refused: table full */
    uint64_t expired;      /* series forgotten by expire() */
} sn_metric_delta_stats;

/* Creates a table for at most max_series series (1 .. 1<<24). Series that start at or after
 * since_unix_nano have their first point emitted in full (pass the time the receiver started;
 * 0 emits every first point in full, INT64_MAX never does). Returns 0 and *out, or -EINVAL
 * (max_series out of range) or -ENOMEM. Free with sn_metric_delta_destroy(). */
int sn_metric_delta_create(size_t max_series, int64_t since_unix_nano, sn_metric_delta **out);

/* Frees the table. NULL is allowed. */
void sn_metric_delta_destroy(sn_metric_delta *t);

/* Turns one fact into a delta. A DELTA fact is copied to *out (EMIT). A CUMULATIVE fact is
 * handled by the rules above; *out (may alias in) is written only for EMIT. Returns an
 * sn_metric_delta_result, or -ENOSPC when the fact starts a new series and the table is full,
 * or -EINVAL when the fact's temporality is neither. */
int sn_metric_delta_apply(sn_metric_delta *t, const sn_metric_fact *in, sn_metric_fact *out);

/* What one apply changed in the table, so that sn_metric_delta_undo can put it back. */
typedef struct sn_metric_delta_change {
    size_t slot;   /* SIZE_MAX: nothing changed (a DELTA point, a refusal, an error) */
    bool inserted; /* the point started the series */
    int64_t start, last;
    uint64_t count;
    double sum;
} sn_metric_delta_change;

/* sn_metric_delta_apply that also fills *ch with what it changed. */
int sn_metric_delta_apply_undoable(sn_metric_delta *t, const sn_metric_fact *in,
                                   sn_metric_fact *out, sn_metric_delta_change *ch);

/* Puts back what one apply changed. Changes must be undone newest first, with nothing applied
 * or expired since the newest: then the table is as before the oldest of them (the counts of
 * sn_metric_delta_get_stats but `series` are not taken back). */
void sn_metric_delta_undo(sn_metric_delta *t, const sn_metric_delta_change *ch);

/* Forgets every series whose last point is older than before_unix_nano. Returns how many. */
size_t sn_metric_delta_expire(sn_metric_delta *t, int64_t before_unix_nano);

/* The counts so far. */
void sn_metric_delta_get_stats(const sn_metric_delta *t, sn_metric_delta_stats *out);

#endif
