/*
 * scenario.h -- labelled traffic scenarios: a JSON file (docs/scenarios.md) describing services,
 * models, their distributions, daily seasonality and labelled incidents, and a deterministic
 * generator of the LLM events it describes in SIMULATED time (nothing sleeps or reads a clock).
 *
 * The same file and seed always give the same events, byte for byte. Used by sentinel-loadgen
 * (--scenario: the events become OTLP spans, the labels a JSON-lines file) and by the accuracy
 * suite (tests/bench/accuracy.c: the events go straight into the detection engine).
 *
 * Limits: SN_SCENARIO_STREAMS_MAX (service, model) streams, SN_SCENARIO_INCIDENTS_MAX incidents,
 * SN_SCENARIO_FILE_MAX bytes of file, a duration of at most 7 days, at most 10^5 calls/s a model.
 */
#ifndef SN_SCENARIO_H
#define SN_SCENARIO_H

#include "alert.h"
#include "event.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_SCENARIO_STREAMS_MAX   64
#define SN_SCENARIO_INCIDENTS_MAX 64
#define SN_SCENARIO_FINISH_MAX    5
#define SN_SCENARIO_FILE_MAX      (1 << 20)

typedef struct sn_scenario sn_scenario;         /* a parsed file; immutable */
typedef struct sn_scenario_gen sn_scenario_gen; /* one pass over its events */

/* How an incident's effect grows over its duration. */
typedef enum sn_scenario_shape {
    SN_SHAPE_STEP = 0, /* full magnitude from start to end */
    SN_SHAPE_RAMP      /* from no effect at start to full magnitude at end (drifts) */
} sn_scenario_shape;

/* One labelled incident: the ground truth. Times are simulated unix nanoseconds. */
typedef struct sn_scenario_label {
    char id[SN_SHORT_MAX];
    sn_anomaly_type type; /* the anomaly type a detector should report */
    char service[SN_NAME_MAX];
    char model[SN_NAME_MAX];
    int64_t start_ns;
    int64_t end_ns;
    double magnitude;
    sn_scenario_shape shape;
} sn_scenario_label;

/* Parses a scenario from JSON text (len bytes; need not be NUL-terminated). name is used in
 * error messages. Returns 0 and sets *out (free with sn_scenario_destroy); -EINVAL with a
 * one-line message naming the bad field in err ("x.json: incidents[2].type: unknown type
 * \"foo\""); -ENOMEM. *out is untouched on failure. */
int sn_scenario_parse(sn_scenario **out, const char *json, size_t len, const char *name, char *err,
                      size_t errlen);

/* Reads and parses a file of at most SN_SCENARIO_FILE_MAX bytes. Errors as sn_scenario_parse,
 * plus the negative errno of open/read, -EFBIG when too large. */
int sn_scenario_load(sn_scenario **out, const char *path, char *err, size_t errlen);

/* Frees a scenario. NULL is a no-op. Generators made from it must be destroyed first. */
void sn_scenario_destroy(sn_scenario *s);

/* The scenario's name ("name" field, else the file name); static for the scenario's life. */
const char *sn_scenario_name(const sn_scenario *s);

/* Simulated start (unix ns) and duration (ns) of the traffic. */
int64_t sn_scenario_start(const sn_scenario *s);
int64_t sn_scenario_duration(const sn_scenario *s);

/* The labelled incidents, in file order; i < sn_scenario_label_count(s). */
size_t sn_scenario_label_count(const sn_scenario *s);
const sn_scenario_label *sn_scenario_label_at(const sn_scenario *s, size_t i);

/* The number of (service, model) streams and stream i's names. */
size_t sn_scenario_stream_count(const sn_scenario *s);
void sn_scenario_stream_names(const sn_scenario *s, size_t i, const char **service,
                              const char **model);

/* Engine settings the scenario asks for: an object of "dotted.path": value under "engine"
 * (paths relative to the aggregator's engine section), or NULL. Borrowed jansson json_t*,
 * valid for the scenario's life; typed void to keep jansson out of this header. */
const void *sn_scenario_engine_settings(const sn_scenario *s);

/* Writes one label as a JSON line (no newline) with absolute times: the label's simulated times
 * moved by offset_ns and divided by `compress` around the scenario start (compress 1: as is).
 * Returns the length written, or -ENOSPC when buf is too small (buf holds a truncated line). */
int sn_scenario_label_json(const sn_scenario *s, const sn_scenario_label *l, int64_t offset_ns,
                           double compress, char *buf, size_t len);

/* Starts a pass over the scenario's events. Returns 0 and sets *out, or -ENOMEM. */
int sn_scenario_gen_create(sn_scenario_gen **out, const sn_scenario *s);

/* Frees a generator. NULL is a no-op. */
void sn_scenario_gen_destroy(sn_scenario_gen *g);

/* The next event in order of its time (ev->end_unix_nano, simulated); fills every fact the
 * sidecar would extract from the span (cost from the scenario's price). *active gets a bit
 * per label (index i -> 1 << i) whose incident affects this event's (service, model) at its
 * time. Returns false at the end of the scenario (ev untouched). Never allocates. */
bool sn_scenario_next(sn_scenario_gen *g, sn_event *ev, uint64_t *active);

/* Events produced so far by this generator. */
uint64_t sn_scenario_gen_events(const sn_scenario_gen *g);

#endif
