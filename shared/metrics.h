/*
 * metrics.h -- a bounded, thread-safe Prometheus metrics registry and its text exposition
 * (format 0.0.4), used by every program's /metrics endpoint.
 *
 * A registry holds families (counter, gauge, histogram), each with a name, a HELP text and up to
 * SN_METRICS_MAX_LABELS label names. A family holds series, one per distinct tuple of label
 * values, up to the family's max_series; an unlabelled family has exactly one series, created at
 * registration.
 *
 *   sn_metrics *m;
 *   sn_metrics_create(NULL, &m, err, sizeof err);
 *   sn_metrics_family *req;
 *   sn_metrics_register(m, &(sn_metrics_desc){.type = SN_METRICS_COUNTER,
 *                           .name = "sentinel_sidecar_otlp_requests_total",
 *                           .help = "OTLP export requests by signal, protocol and outcome.",
 *                           .labels = {"signal", "protocol", "outcome"}},
 *                       &req, err, sizeof err);
 *   sn_counter *ok = sn_metrics_counter(req, (const char *[]){"traces", "grpc", "ok"});
 *   sn_counter_inc(ok);   // from any thread, lock-free
 *
 * Threads. Updates (sn_counter_*, sn_gauge_*, sn_histogram_observe) are lock-free C11 atomics
 * with relaxed ordering, callable from any thread: counters and histogram bucket counts are
 * atomic_fetch_add on uint64_t; doubles (gauge values, histogram sums, a counter's fractional
 * part) are IEEE-754 bit patterns in an _Atomic uint64_t updated by compare-and-swap. Registering
 * a family and looking up or creating a labelled series take the registry mutex, so callers look
 * a series up once and keep the handle. Rendering walks append-only lists without the mutex and
 * may run on several threads at once, concurrently with updates and registrations. Handles stay
 * valid until sn_metrics_destroy(), which must not race with anything else.
 *
 * Bounds. A registry has at most max_families families; a family at most max_series series (a
 * lookup that would create one more is refused: the call returns NULL and the registry's own
 * counter sentinel_metrics_series_dropped_total goes up by one); label values are cut to
 * SN_METRICS_LABEL_VALUE_MAX - 1 bytes (at a UTF-8 character boundary) with invalid UTF-8
 * replaced by U+FFFD; an exposition is at most max_render_bytes. Update functions accept NULL
 * handles and do nothing, so a refused series needs no special case at the call site.
 *
 * Names. Metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, counters end in "_total" and other types
 * must not; label names match [a-zA-Z_][a-zA-Z0-9_]*, must not start with "__", must be distinct
 * and a histogram may not use "le". A family whose name, or a sample name it produces
 * (histograms: _bucket, _sum, _count), equals one of an existing family is refused.
 */
#ifndef SN_METRICS_H
#define SN_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SN_METRICS_MAX_LABELS         4u
#define SN_METRICS_MAX_BUCKETS        32u   /* finite upper bounds; +Inf is implied */
#define SN_METRICS_NAME_MAX           128u  /* bytes of a metric or label name, NUL included */
#define SN_METRICS_HELP_MAX           1024u /* bytes of a HELP text, NUL included */
#define SN_METRICS_LABEL_VALUE_MAX    256u  /* bytes of a stored label value, NUL included */
#define SN_METRICS_DEFAULT_FAMILIES   256u
#define SN_METRICS_DEFAULT_SERIES     1000u              /* per family */
#define SN_METRICS_DEFAULT_RENDER_MAX (4u * 1024 * 1024) /* bytes of one exposition */
#define SN_METRICS_SERIES_LIMIT       100000u            /* the largest max_series accepted */
#define SN_METRICS_FAMILIES_LIMIT     4096u
#define SN_METRICS_RENDER_LIMIT       (64u * 1024 * 1024)
#define SN_METRICS_CONTENT_TYPE       "text/plain; version=0.0.4; charset=utf-8"
#define SN_METRICS_DROPPED_NAME       "sentinel_metrics_series_dropped_total"

typedef struct sn_metrics sn_metrics;               /* a registry */
typedef struct sn_metrics_family sn_metrics_family; /* one metric name and its series */
typedef struct sn_counter sn_counter;               /* one counter series */
typedef struct sn_gauge sn_gauge;                   /* one gauge series */
typedef struct sn_histogram sn_histogram;           /* one histogram series */

typedef enum sn_metrics_type {
    SN_METRICS_COUNTER = 0,
    SN_METRICS_GAUGE,
    SN_METRICS_HISTOGRAM
} sn_metrics_type;

typedef struct sn_metrics_limits {
    unsigned max_families;   /* 0: SN_METRICS_DEFAULT_FAMILIES (the built-in ones included) */
    unsigned max_series;     /* per family, when its desc says 0; 0: SN_METRICS_DEFAULT_SERIES */
    size_t max_render_bytes; /* 0: SN_METRICS_DEFAULT_RENDER_MAX */
} sn_metrics_limits;

/* What sn_metrics_register() copies into a new family. */
typedef struct sn_metrics_desc {
    sn_metrics_type type;
    const char *name;
    const char *help; /* required, at most SN_METRICS_HELP_MAX - 1 bytes of UTF-8 */
    /* Label names: the leading non-NULL entries are the family's labels, in this order. */
    const char *labels[SN_METRICS_MAX_LABELS];
    /* Histograms: 1..SN_METRICS_MAX_BUCKETS finite, strictly increasing upper bounds (a final
     * +Inf is accepted and ignored: it is always there). Other types: must be empty. */
    const double *buckets;
    size_t bucket_count;
    unsigned max_series; /* 0: the registry's max_series; at most SN_METRICS_SERIES_LIMIT */
} sn_metrics_desc;

/* Creates an empty registry holding only its own counter SN_METRICS_DROPPED_NAME. limits may
 * be NULL (defaults). Returns 0 and sets *out, or -EINVAL (a limit out of range) / -ENOMEM with
 * a message in err (errlen bytes, may be NULL). Free with sn_metrics_destroy(). */
int sn_metrics_create(const sn_metrics_limits *limits, sn_metrics **out, char *err, size_t errlen);

/* Frees the registry, its families and series; every handle from it becomes invalid. No other
 * thread may be using the registry. NULL is allowed. */
void sn_metrics_destroy(sn_metrics *m);

/* Registers a family (copying every string and the buckets) and, when it has no labels, its one
 * series. Returns 0 and sets *out (owned by the registry), or -EINVAL (a bad name, label,
 * bucket list or HELP), -EEXIST (the name clashes with a family already registered), -ENOSPC
 * (max_families reached) or -ENOMEM, with a message in err. Takes the registry mutex. */
int sn_metrics_register(sn_metrics *m, const sn_metrics_desc *desc, sn_metrics_family **out,
                        char *err, size_t errlen);

/* Registers an unlabelled gauge family and stores its one series in *out (owned by the
 * registry). Returns 0, sn_metrics_register's error (message in err) or -ENOMEM. */
int sn_metrics_register_gauge(sn_metrics *m, const char *name, const char *help, sn_gauge **out,
                              char *err, size_t errlen);

/* Registers the process families, whose values are read from /proc when rendered:
 * process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds and process_start_time_seconds (Unix time). A value that
 * cannot be read is left out of that exposition. Fails like sn_metrics_register(). */
int sn_metrics_register_process(sn_metrics *m, char *err, size_t errlen);

/* The series of a family for one tuple of label values (`values` holds exactly as many strings
 * as the family has labels; NULL entries mean ""; for an unlabelled family it is ignored and
 * may be NULL), created on first use. Takes the registry mutex: look up once, keep the handle.
 * Returns NULL when the family is of another type, when it already has max_series series (the
 * refusal is counted in SN_METRICS_DROPPED_NAME) or when out of memory (counted the same way).
 * The handle is owned by the registry. */
sn_counter *sn_metrics_counter(sn_metrics_family *f, const char *const *values);
sn_gauge *sn_metrics_gauge(sn_metrics_family *f, const char *const *values);
sn_histogram *sn_metrics_histogram(sn_metrics_family *f, const char *const *values);

/* Number of series the family holds, and the lookups it refused because it was full. */
size_t sn_metrics_family_series(sn_metrics_family *f);
uint64_t sn_metrics_family_dropped(sn_metrics_family *f);

/* Counter updates: lock-free, any thread, NULL ignored. sn_counter_add_double adds a finite
 * v >= 0 (other values are ignored: a counter never goes down) to a separate fractional
 * part, for totals like seconds or dollars. */
void sn_counter_add(sn_counter *c, uint64_t n);
void sn_counter_inc(sn_counter *c);
void sn_counter_add_double(sn_counter *c, double v);
/* The current value: the integer part plus the fractional part. 0 for NULL. */
double sn_counter_value(const sn_counter *c);

/* Gauge updates: lock-free, any thread, NULL ignored. */
void sn_gauge_set(sn_gauge *g, double v);
void sn_gauge_add(sn_gauge *g, double v); /* negative v subtracts */
double sn_gauge_value(const sn_gauge *g); /* 0 for NULL */

/* Counts v in the first bucket whose upper bound is >= v (else +Inf) and adds it to the sum.
 * Lock-free, any thread, NULL ignored; NaN is ignored (it would poison the sum). */
void sn_histogram_observe(sn_histogram *h, double v);
/* The number of observations so far. 0 for NULL. */
uint64_t sn_histogram_count(const sn_histogram *h);

/* Renders the registry in the text exposition format 0.0.4 into buf (cap bytes), NUL-terminated.
 * Returns the length without the NUL, or -ENOSPC when it does not fit in cap (or exceeds
 * max_render_bytes). Families come in registration order, series in creation order. Each
 * histogram's _count equals its +Inf bucket; its _sum may lag an observation in progress. */
ssize_t sn_metrics_render(sn_metrics *m, char *buf, size_t cap);

/* Renders into a malloc'd buffer that grows (from a few KiB) up to max_render_bytes. Returns 0
 * with *out (NUL-terminated, the caller frees it) and *len, or -E2BIG (larger than
 * max_render_bytes) / -ENOMEM, with *out NULL. */
int sn_metrics_render_alloc(sn_metrics *m, char **out, size_t *len);

/* True when name is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*, shorter than
 * SN_METRICS_NAME_MAX); label_name likewise for label names (no leading "__"). */
bool sn_metrics_name_valid(const char *name);
bool sn_metrics_label_name_valid(const char *name);

#endif
