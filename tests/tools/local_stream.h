/*
 * local_stream.h -- a seeded stream of LLM-call events for the sidecar's local detection (the
 * local_detect unit test and sentinel-bench-local): 4 services x 5 models with log-normal
 * latency, time to first token, tokens and cost like tests/load's loadgen, errors, events that
 * miss a metric, rare ones with no service, and spikes (latency, time to first token, tokens,
 * cost, a throughput collapse) at a chosen rate. Pure: the same seed gives the same events.
 */
#ifndef SN_TEST_LOCAL_STREAM_H
#define SN_TEST_LOCAL_STREAM_H

#include "alert.h"
#include "event.h"

#include <stddef.h>
#include <stdint.h>

typedef struct local_stream {
    uint64_t rng;
    unsigned services; /* distinct services (default 4) */
    unsigned models;   /* distinct models, at most 5 (default 5) */
    double spike_rate; /* share of events with a spike (default 0.005) */
    double error_rate; /* share of failed calls (default 0.02) */
    int64_t t;         /* time of the next event, ns */
} local_stream;

/* Starts a stream with the defaults above and the given seed. Nothing to free. */
void local_stream_init(local_stream *s, uint64_t seed);

/* Fills *ev with the next event (sn_event_init first, then the call's facts). */
void local_stream_next(local_stream *s, sn_event *ev);

/* Folds the count of alerts an event gave and every field of the ones written (a[0..min(n,
 * max))) -- metric, type, detector, severity, time, names, and the bits of value, baseline,
 * threshold, deviation and confidence -- into the FNV-1a digest h and returns it. */
uint64_t local_stream_digest(uint64_t h, size_t n, const sn_local_alert *a, size_t max);

#define LOCAL_STREAM_DIGEST_INIT 0xcbf29ce484222325ull

#endif
