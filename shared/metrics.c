/*
 * metrics.c -- the Prometheus registry and text exposition (see metrics.h for the contract).
 *
 * Layout and invariants:
 *   registry --next--> family --next--> family ...        (append-only, in registration order)
 *   family   --next--> series --next--> series ...        (append-only, in creation order)
 *   family   table[hash & mask] --chain--> series ...      (lookup by label values)
 *
 * Lists only grow, and a node is published (release store of the pointer to it) after it is
 * fully initialised, so the renderer walks them with acquire loads and no lock. Every mutation
 * of the lists, the hash tables and the counts (nfamilies, nseries) happens under the registry
 * mutex. Values live in _Atomic uint64_t fields updated with relaxed atomics: a double is kept as
 * its IEEE-754 bit pattern and changed by compare-and-swap, which is lock-free wherever 64-bit
 * atomics are (checked at compile time below).
 *
 * A histogram series keeps one non-cumulative count per bucket (the last is +Inf); rendering
 * reads each once, accumulates, and prints the total as both the +Inf bucket and _count, so the
 * two always agree within one exposition.
 */
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_LONG_LOCK_FREE == 2,
               "metrics updates need lock-free 64-bit atomics");
_Static_assert(sizeof(double) == sizeof(uint64_t), "doubles are stored as 64-bit patterns");

#define RENDER_INITIAL (16u * 1024u) /* first size of a growing exposition buffer */
#define NUM_MAX        40            /* a formatted number, NUL included */
#define PROC_STAT_MAX  2048          /* bytes read from /proc/self/stat */

/* Which /proc value a process family renders (PROC_NONE: an ordinary family). */
typedef enum proc_kind {
    PROC_NONE = 0,
    PROC_CPU,
    PROC_RSS,
    PROC_VSIZE,
    PROC_OPEN_FDS,
    PROC_MAX_FDS,
    PROC_START
} proc_kind;

typedef struct series series;
struct series {
    _Atomic(series *) next; /* creation order; published with release */
    series *chain;          /* hash chain; under the mutex */
    const sn_metrics_family *family;
    uint32_t hash;
    const char *values[SN_METRICS_MAX_LABELS]; /* point into this allocation */
    _Atomic uint64_t n;                        /* counter: integer part */
    _Atomic uint64_t bits;     /* counter: fractional part; gauge: value; histogram: sum */
    _Atomic uint64_t counts[]; /* histogram: nbounds + 1 per-bucket counts */
};

struct sn_metrics_family {
    _Atomic(sn_metrics_family *) next; /* registration order; published with release */
    sn_metrics *reg;
    sn_metrics_type type;
    proc_kind proc;
    char *name;
    char *help;
    char *labels[SN_METRICS_MAX_LABELS];
    unsigned nlabels;
    double *bounds;
    size_t nbounds;
    unsigned max_series;
    size_t nseries;         /* under the mutex */
    _Atomic(series *) head; /* first series; published with release */
    series *tail;           /* under the mutex */
    series **table;         /* labelled families: hash heads; under the mutex */
    uint32_t mask;
    _Atomic uint64_t dropped; /* lookups refused: full or out of memory */
};

struct sn_metrics {
    pthread_mutex_t mu;
    sn_metrics_limits lim;
    _Atomic(sn_metrics_family *) head;
    sn_metrics_family *tail; /* under the mutex */
    unsigned nfamilies;      /* under the mutex */
    series *dropped;         /* the one series of SN_METRICS_DROPPED_NAME */
};

/* ---------------------------------------------------------------- small helpers */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats a message into err when the caller gave a buffer. */
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The IEEE-754 bit pattern of d: how doubles live in _Atomic uint64_t fields. */
static uint64_t dbl_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* The double whose bit pattern is u. */
static double bits_dbl(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* Adds v to the double stored in *a with a compare-and-swap loop. */
static void atomic_add_double(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, dbl_bits(bits_dbl(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when p does not start one (overlong
 * forms, surrogates and code points past U+10FFFF are invalid). Never reads past a NUL. */
static size_t utf8_len(const unsigned char *p)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

/* True when s is valid UTF-8. */
static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        size_t n = utf8_len(p);
        if (n == 0)
            return false;
        p += n;
    }
    return true;
}

/* Copies the label value src into out (SN_METRICS_LABEL_VALUE_MAX bytes, NUL-terminated):
 * invalid UTF-8 bytes become U+FFFD and the copy stops before a character that would not fit.
 * Reads src only as far as it copies. Returns the length. */
static size_t sanitize_value(const char *src, char *out)
{
    static const char replacement[] = "\xef\xbf\xbd";
    const unsigned char *p = (const unsigned char *)(src ? src : "");
    size_t len = 0;
    while (*p != '\0') {
        size_t n = utf8_len(p);
        const char *from = (const char *)p;
        size_t take = n;
        if (n == 0) {
            from = replacement;
            take = 3;
            n = 1;
        }
        if (len + take >= SN_METRICS_LABEL_VALUE_MAX)
            break;
        memcpy(out + len, from, take);
        len += take;
        p += n;
    }
    out[len] = '\0';
    return len;
}

bool sn_metrics_name_valid(const char *name)
{
    if (name == NULL || name[0] == '\0' || (name[0] >= '0' && name[0] <= '9'))
        return false;
    size_t i = 0;
    for (; name[i] != '\0'; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == ':';
        if (!ok || i + 1 >= SN_METRICS_NAME_MAX)
            return false;
    }
    return true;
}

bool sn_metrics_label_name_valid(const char *name)
{
    if (!sn_metrics_name_valid(name) || strchr(name, ':') != NULL)
        return false;
    return !(name[0] == '_' && name[1] == '_');
}

/* True when name ends with suffix. */
static bool ends_with(const char *name, const char *suffix)
{
    size_t n = strlen(name), m = strlen(suffix);
    return n >= m && memcmp(name + n - m, suffix, m) == 0;
}

/* FNV-1a over the label values, each followed by a 0xff separator (never in UTF-8). */
static uint32_t hash_values(char vals[][SN_METRICS_LABEL_VALUE_MAX], unsigned n)
{
    uint32_t h = 2166136261u;
    for (unsigned i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)vals[i]; *p != '\0'; p++) {
            h ^= *p;
            h *= 16777619u;
        }
        h ^= 0xff;
        h *= 16777619u;
    }
    return h;
}

/* ---------------------------------------------------------------- families */

/* Frees a family, its series and its copies. NULL is allowed. */
static void family_free(sn_metrics_family *f)
{
    if (f == NULL)
        return;
    series *s = atomic_load_explicit(&f->head, memory_order_relaxed);
    while (s != NULL) {
        series *next = atomic_load_explicit(&s->next, memory_order_relaxed);
        free(s);
        s = next;
    }
    free(f->table);
    free(f->bounds);
    for (unsigned i = 0; i < f->nlabels; i++)
        free(f->labels[i]);
    free(f->help);
    free(f->name);
    free(f);
}

/* Writes the names a family of this type and name puts in an exposition (the family name and
 * its sample names) into out. Returns how many. */
static size_t family_names(sn_metrics_type type, const char *name,
                           char out[4][SN_METRICS_NAME_MAX + 8])
{
    snprintf(out[0], sizeof out[0], "%s", name);
    if (type != SN_METRICS_HISTOGRAM)
        return 1;
    snprintf(out[1], sizeof out[1], "%s_bucket", name);
    snprintf(out[2], sizeof out[2], "%s_sum", name);
    snprintf(out[3], sizeof out[3], "%s_count", name);
    return 4;
}

/* True when a family (type, name) would put a name in the exposition that f already does. */
static bool family_clashes(const sn_metrics_family *f, sn_metrics_type type, const char *name)
{
    char a[4][SN_METRICS_NAME_MAX + 8], b[4][SN_METRICS_NAME_MAX + 8];
    size_t na = family_names(f->type, f->name, a);
    size_t nb = family_names(type, name, b);
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            if (strcmp(a[i], b[j]) == 0)
                return true;
    return false;
}

/* Checks a description: names, HELP, labels and buckets. Returns 0 or -EINVAL with a message. */
static int desc_check(const sn_metrics_desc *d, unsigned *nlabels, size_t *nbounds, char *err,
                      size_t errlen)
{
    if (d->type != SN_METRICS_COUNTER && d->type != SN_METRICS_GAUGE &&
        d->type != SN_METRICS_HISTOGRAM) {
        set_err(err, errlen, "metric type %d is unknown", (int)d->type);
        return -EINVAL;
    }
    if (!sn_metrics_name_valid(d->name)) {
        set_err(err, errlen, "metric name '%.*s' is not [a-zA-Z_:][a-zA-Z0-9_:]* (< %u bytes)",
                (int)SN_METRICS_NAME_MAX, d->name ? d->name : "(null)", SN_METRICS_NAME_MAX);
        return -EINVAL;
    }
    bool total = ends_with(d->name, "_total");
    if (d->type == SN_METRICS_COUNTER && !total) {
        set_err(err, errlen, "counter '%s' must end in _total", d->name);
        return -EINVAL;
    }
    if (d->type != SN_METRICS_COUNTER && total) {
        set_err(err, errlen, "'%s' ends in _total, which only counters may", d->name);
        return -EINVAL;
    }
    if (d->help == NULL || d->help[0] == '\0' ||
        strnlen(d->help, SN_METRICS_HELP_MAX) >= SN_METRICS_HELP_MAX || !utf8_valid(d->help)) {
        set_err(err, errlen, "metric '%s' needs a HELP text of valid UTF-8 (< %u bytes)", d->name,
                SN_METRICS_HELP_MAX);
        return -EINVAL;
    }
    unsigned n = 0;
    while (n < SN_METRICS_MAX_LABELS && d->labels[n] != NULL)
        n++;
    for (unsigned i = n; i < SN_METRICS_MAX_LABELS; i++) {
        if (d->labels[i] != NULL) {
            set_err(err, errlen, "metric '%s': label names must be the leading entries", d->name);
            return -EINVAL;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        if (!sn_metrics_label_name_valid(d->labels[i])) {
            set_err(err, errlen,
                    "metric '%s': label name '%.*s' is not [a-zA-Z_][a-zA-Z0-9_]* without a "
                    "leading __",
                    d->name, (int)SN_METRICS_NAME_MAX, d->labels[i]);
            return -EINVAL;
        }
        if (d->type == SN_METRICS_HISTOGRAM && strcmp(d->labels[i], "le") == 0) {
            set_err(err, errlen, "histogram '%s' may not have a label 'le'", d->name);
            return -EINVAL;
        }
        for (unsigned j = 0; j < i; j++) {
            if (strcmp(d->labels[i], d->labels[j]) == 0) {
                set_err(err, errlen, "metric '%s': label '%s' appears twice", d->name,
                        d->labels[i]);
                return -EINVAL;
            }
        }
    }
    size_t nb = d->bucket_count;
    if (d->type != SN_METRICS_HISTOGRAM) {
        if (nb != 0 || d->buckets != NULL) {
            set_err(err, errlen, "metric '%s': only histograms have buckets", d->name);
            return -EINVAL;
        }
    } else {
        if (nb > 0 && d->buckets != NULL && isinf(d->buckets[nb - 1]) && d->buckets[nb - 1] > 0)
            nb--; /* +Inf is implied */
        if (nb == 0 || d->buckets == NULL || nb > SN_METRICS_MAX_BUCKETS) {
            set_err(err, errlen, "histogram '%s' needs 1 to %u finite bucket bounds", d->name,
                    SN_METRICS_MAX_BUCKETS);
            return -EINVAL;
        }
        for (size_t i = 0; i < nb; i++) {
            if (!isfinite(d->buckets[i]) || (i > 0 && !(d->buckets[i] > d->buckets[i - 1]))) {
                set_err(err, errlen,
                        "histogram '%s': bucket bounds must be finite and strictly increasing",
                        d->name);
                return -EINVAL;
            }
        }
    }
    if (d->max_series > SN_METRICS_SERIES_LIMIT) {
        set_err(err, errlen, "metric '%s': max_series %u is over %u", d->name, d->max_series,
                SN_METRICS_SERIES_LIMIT);
        return -EINVAL;
    }
    *nlabels = n;
    *nbounds = nb;
    return 0;
}

/* Allocates a series with room for its bucket counts and label values (already sanitised),
 * zeroed. Returns NULL when out of memory. */
static series *series_new(const sn_metrics_family *f, char vals[][SN_METRICS_LABEL_VALUE_MAX],
                          uint32_t hash)
{
    size_t ncounts = f->type == SN_METRICS_HISTOGRAM ? f->nbounds + 1 : 0;
    size_t head = sizeof(series) + ncounts * sizeof(_Atomic uint64_t);
    size_t size = head;
    for (unsigned i = 0; i < f->nlabels; i++)
        size += strlen(vals[i]) + 1;
    series *s = calloc(1, size);
    if (s == NULL)
        return NULL;
    atomic_init(&s->next, NULL);
    atomic_init(&s->n, 0);
    atomic_init(&s->bits, dbl_bits(0.0));
    for (size_t i = 0; i < ncounts; i++)
        atomic_init(&s->counts[i], 0);
    char *p = (char *)s + head;
    for (unsigned i = 0; i < f->nlabels; i++) {
        size_t n = strlen(vals[i]) + 1;
        memcpy(p, vals[i], n);
        s->values[i] = p;
        p += n;
    }
    s->family = f;
    s->hash = hash;
    return s;
}

/* Appends a series to the family's creation-order list and publishes it. Under the mutex. */
static void series_publish(sn_metrics_family *f, series *s)
{
    if (f->tail == NULL)
        atomic_store_explicit(&f->head, s, memory_order_release);
    else
        atomic_store_explicit(&f->tail->next, s, memory_order_release);
    f->tail = s;
    f->nseries++;
}

/* Builds a family from a checked description. Returns NULL when out of memory. */
static sn_metrics_family *family_new(sn_metrics *m, const sn_metrics_desc *d, unsigned nlabels,
                                     size_t nbounds)
{
    sn_metrics_family *f = calloc(1, sizeof *f);
    if (f == NULL)
        return NULL;
    atomic_init(&f->next, NULL);
    atomic_init(&f->head, NULL);
    atomic_init(&f->dropped, 0);
    f->reg = m;
    f->type = d->type;
    f->max_series = d->max_series ? d->max_series : m->lim.max_series;
    f->name = strdup(d->name);
    f->help = strdup(d->help);
    if (f->name == NULL || f->help == NULL)
        goto out_free_family;
    for (unsigned i = 0; i < nlabels; i++) {
        f->labels[i] = strdup(d->labels[i]);
        if (f->labels[i] == NULL)
            goto out_free_family;
        f->nlabels = i + 1;
    }
    if (nbounds > 0) {
        f->bounds = malloc(nbounds * sizeof *f->bounds);
        if (f->bounds == NULL)
            goto out_free_family;
        memcpy(f->bounds, d->buckets, nbounds * sizeof *f->bounds);
        f->nbounds = nbounds;
    }
    if (nlabels > 0) {
        /* About two series per chain at the limit; at most 4096 heads. */
        uint32_t heads = 16;
        while (heads < f->max_series / 2 && heads < 4096)
            heads *= 2;
        f->table = calloc(heads, sizeof *f->table);
        if (f->table == NULL)
            goto out_free_family;
        f->mask = heads - 1;
    } else {
        series *s = series_new(f, NULL, 0);
        if (s == NULL)
            goto out_free_family;
        series_publish(f, s);
    }
    return f;

out_free_family:
    family_free(f);
    return NULL;
}

/* Registers a checked family or a process family under the mutex. Returns 0, -EEXIST, -ENOSPC
 * or -ENOMEM with a message. */
static int family_add(sn_metrics *m, const sn_metrics_desc *d, unsigned nlabels, size_t nbounds,
                      proc_kind proc, sn_metrics_family **out, char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    for (sn_metrics_family *f = atomic_load_explicit(&m->head, memory_order_relaxed); f != NULL;
         f = atomic_load_explicit(&f->next, memory_order_relaxed)) {
        if (family_clashes(f, d->type, d->name)) {
            set_err(err, errlen, "metric '%s' clashes with the registered '%s'", d->name, f->name);
            rc = -EEXIST;
            goto out_unlock;
        }
    }
    if (m->nfamilies >= m->lim.max_families) {
        set_err(err, errlen, "metric '%s': the registry holds its maximum of %u families", d->name,
                m->lim.max_families);
        rc = -ENOSPC;
        goto out_unlock;
    }
    sn_metrics_family *f = family_new(m, d, nlabels, nbounds);
    if (f == NULL) {
        set_err(err, errlen, "metric '%s': out of memory", d->name);
        rc = -ENOMEM;
        goto out_unlock;
    }
    f->proc = proc;
    if (m->tail == NULL)
        atomic_store_explicit(&m->head, f, memory_order_release);
    else
        atomic_store_explicit(&m->tail->next, f, memory_order_release);
    m->tail = f;
    m->nfamilies++;
    if (out != NULL)
        *out = f;
out_unlock:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int sn_metrics_register(sn_metrics *m, const sn_metrics_desc *desc, sn_metrics_family **out,
                        char *err, size_t errlen)
{
    unsigned nlabels;
    size_t nbounds;
    if (out != NULL)
        *out = NULL;
    if (m == NULL || desc == NULL || out == NULL) {
        set_err(err, errlen, "metrics: registry, description and result are required");
        return -EINVAL;
    }
    int rc = desc_check(desc, &nlabels, &nbounds, err, errlen);
    if (rc != 0)
        return rc;
    return family_add(m, desc, nlabels, nbounds, PROC_NONE, out, err, errlen);
}

int sn_metrics_register_process(sn_metrics *m, char *err, size_t errlen)
{
    static const struct {
        sn_metrics_type type;
        const char *name;
        const char *help;
        proc_kind proc;
    } procs[] = {
        {SN_METRICS_COUNTER, "process_cpu_seconds_total",
         "Total user and system CPU time spent in seconds.", PROC_CPU},
        {SN_METRICS_GAUGE, "process_resident_memory_bytes", "Resident memory size in bytes.",
         PROC_RSS},
        {SN_METRICS_GAUGE, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
         PROC_VSIZE},
        {SN_METRICS_GAUGE, "process_open_fds", "Number of open file descriptors.", PROC_OPEN_FDS},
        {SN_METRICS_GAUGE, "process_max_fds", "Maximum number of open file descriptors.",
         PROC_MAX_FDS},
        {SN_METRICS_GAUGE, "process_start_time_seconds",
         "Start time of the process since unix epoch in seconds.", PROC_START},
    };
    if (m == NULL) {
        set_err(err, errlen, "metrics: registry is required");
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof procs / sizeof procs[0]; i++) {
        sn_metrics_desc d = {.type = procs[i].type, .name = procs[i].name, .help = procs[i].help};
        int rc = family_add(m, &d, 0, 0, procs[i].proc, NULL, err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- registry */

int sn_metrics_create(const sn_metrics_limits *limits, sn_metrics **out, char *err, size_t errlen)
{
    int rc;
    *out = NULL;
    sn_metrics_limits lim = {0};
    if (limits != NULL)
        lim = *limits;
    if (lim.max_families == 0)
        lim.max_families = SN_METRICS_DEFAULT_FAMILIES;
    if (lim.max_series == 0)
        lim.max_series = SN_METRICS_DEFAULT_SERIES;
    if (lim.max_render_bytes == 0)
        lim.max_render_bytes = SN_METRICS_DEFAULT_RENDER_MAX;
    if (lim.max_families > SN_METRICS_FAMILIES_LIMIT || lim.max_series > SN_METRICS_SERIES_LIMIT ||
        lim.max_render_bytes > SN_METRICS_RENDER_LIMIT || lim.max_render_bytes < 1024) {
        set_err(err, errlen,
                "metrics limits out of range (families <= %u, series <= %u, 1 KiB <= render "
                "bytes <= %u)",
                SN_METRICS_FAMILIES_LIMIT, SN_METRICS_SERIES_LIMIT, SN_METRICS_RENDER_LIMIT);
        return -EINVAL;
    }
    sn_metrics *m = calloc(1, sizeof *m);
    if (m == NULL) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rc = pthread_mutex_init(&m->mu, NULL);
    if (rc != 0) {
        free(m);
        set_err(err, errlen, "cannot create the metrics mutex: %s", strerror(rc));
        return -rc;
    }
    m->lim = lim;
    atomic_init(&m->head, NULL);
    sn_metrics_family *dropped;
    sn_metrics_desc d = {
        .type = SN_METRICS_COUNTER,
        .name = SN_METRICS_DROPPED_NAME,
        .help = "Label sets refused because their metric already had its maximum number of "
                "series (or memory ran out).",
    };
    rc = sn_metrics_register(m, &d, &dropped, err, errlen);
    if (rc != 0)
        goto out_free_registry;
    m->dropped = atomic_load_explicit(&dropped->head, memory_order_relaxed);
    *out = m;
    return 0;

out_free_registry:
    sn_metrics_destroy(m);
    return rc;
}

void sn_metrics_destroy(sn_metrics *m)
{
    if (m == NULL)
        return;
    sn_metrics_family *f = atomic_load_explicit(&m->head, memory_order_relaxed);
    while (f != NULL) {
        sn_metrics_family *next = atomic_load_explicit(&f->next, memory_order_relaxed);
        family_free(f);
        f = next;
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* ---------------------------------------------------------------- series */

/* Counts a refused lookup in the family and the registry. */
static void count_dropped(sn_metrics_family *f)
{
    atomic_fetch_add_explicit(&f->dropped, 1, memory_order_relaxed);
    if (f->reg->dropped != NULL)
        atomic_fetch_add_explicit(&f->reg->dropped->n, 1, memory_order_relaxed);
}

/* Finds or creates the series of a family for one tuple of label values. */
static series *series_get(sn_metrics_family *f, sn_metrics_type type, const char *const *values)
{
    if (f == NULL || f->type != type || f->proc != PROC_NONE)
        return NULL;
    if (f->nlabels == 0)
        return atomic_load_explicit(&f->head, memory_order_acquire);
    if (values == NULL)
        return NULL;

    char vals[SN_METRICS_MAX_LABELS][SN_METRICS_LABEL_VALUE_MAX];
    for (unsigned i = 0; i < f->nlabels; i++)
        sanitize_value(values[i], vals[i]);
    uint32_t h = hash_values(vals, f->nlabels);

    sn_metrics *m = f->reg;
    pthread_mutex_lock(&m->mu);
    series *s = f->table[h & f->mask];
    for (; s != NULL; s = s->chain) {
        if (s->hash != h)
            continue;
        unsigned i = 0;
        while (i < f->nlabels && strcmp(s->values[i], vals[i]) == 0)
            i++;
        if (i == f->nlabels)
            goto out_unlock;
    }
    if (f->nseries >= f->max_series || (s = series_new(f, vals, h)) == NULL) {
        count_dropped(f);
        goto out_unlock;
    }
    s->chain = f->table[h & f->mask];
    f->table[h & f->mask] = s;
    series_publish(f, s);
out_unlock:
    pthread_mutex_unlock(&m->mu);
    return s;
}

sn_counter *sn_metrics_counter(sn_metrics_family *f, const char *const *values)
{
    return (sn_counter *)series_get(f, SN_METRICS_COUNTER, values);
}

sn_gauge *sn_metrics_gauge(sn_metrics_family *f, const char *const *values)
{
    return (sn_gauge *)series_get(f, SN_METRICS_GAUGE, values);
}

int sn_metrics_register_gauge(sn_metrics *m, const char *name, const char *help, sn_gauge **out,
                              char *err, size_t errlen)
{
    sn_metrics_family *f = NULL;
    sn_metrics_desc d = {.type = SN_METRICS_GAUGE, .name = name, .help = help};
    int rc = sn_metrics_register(m, &d, &f, err, errlen);
    if (rc != 0)
        return rc;
    return (*out = sn_metrics_gauge(f, NULL)) == NULL ? -ENOMEM : 0;
}

sn_histogram *sn_metrics_histogram(sn_metrics_family *f, const char *const *values)
{
    return (sn_histogram *)series_get(f, SN_METRICS_HISTOGRAM, values);
}

size_t sn_metrics_family_series(sn_metrics_family *f)
{
    if (f == NULL)
        return 0;
    pthread_mutex_lock(&f->reg->mu);
    size_t n = f->nseries;
    pthread_mutex_unlock(&f->reg->mu);
    return n;
}

uint64_t sn_metrics_family_dropped(sn_metrics_family *f)
{
    return f ? atomic_load_explicit(&f->dropped, memory_order_relaxed) : 0;
}

/* ---------------------------------------------------------------- updates */

void sn_counter_add(sn_counter *c, uint64_t n)
{
    if (c != NULL)
        atomic_fetch_add_explicit(&((series *)c)->n, n, memory_order_relaxed);
}

void sn_counter_inc(sn_counter *c)
{
    sn_counter_add(c, 1);
}

void sn_counter_add_double(sn_counter *c, double v)
{
    if (c != NULL && isfinite(v) && v > 0)
        atomic_add_double(&((series *)c)->bits, v);
}

/* A counter series' value: integer part plus fractional part. */
static double counter_value(series *s)
{
    uint64_t n = atomic_load_explicit(&s->n, memory_order_relaxed);
    return (double)n + bits_dbl(atomic_load_explicit(&s->bits, memory_order_relaxed));
}

double sn_counter_value(const sn_counter *c)
{
    return c ? counter_value((series *)(uintptr_t)c) : 0.0;
}

void sn_gauge_set(sn_gauge *g, double v)
{
    if (g != NULL)
        atomic_store_explicit(&((series *)g)->bits, dbl_bits(v), memory_order_relaxed);
}

void sn_gauge_add(sn_gauge *g, double v)
{
    if (g != NULL)
        atomic_add_double(&((series *)g)->bits, v);
}

double sn_gauge_value(const sn_gauge *g)
{
    if (g == NULL)
        return 0.0;
    series *s = (series *)(uintptr_t)g;
    return bits_dbl(atomic_load_explicit(&s->bits, memory_order_relaxed));
}

void sn_histogram_observe(sn_histogram *h, double v)
{
    if (h == NULL || isnan(v))
        return;
    series *s = (series *)h;
    const double *b = s->family->bounds;
    size_t lo = 0, hi = s->family->nbounds; /* first bound >= v, in [lo, hi] */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b[mid] >= v)
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&s->counts[lo], 1, memory_order_relaxed);
    atomic_add_double(&s->bits, v);
}

uint64_t sn_histogram_count(const sn_histogram *h)
{
    if (h == NULL)
        return 0;
    series *s = (series *)(uintptr_t)h;
    uint64_t n = 0;
    for (size_t i = 0; i <= s->family->nbounds; i++)
        n += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
    return n;
}

/* ---------------------------------------------------------------- rendering */

/* Where an exposition goes: a fixed caller buffer or a malloc'd one growing up to max. */
typedef struct sink {
    char *buf;
    size_t len;
    size_t cap; /* bytes allocated or given, room for the NUL included */
    size_t max; /* the most text bytes allowed */
    bool grow;
    int err; /* 0, -ENOSPC/-E2BIG (over max), -ENOMEM */
} sink;

/* Appends n bytes, growing a growable buffer geometrically. Sets s->err instead of failing. */
static void put(sink *s, const char *p, size_t n)
{
    if (s->err != 0)
        return;
    if (n > s->max - s->len) {
        s->err = s->grow ? -E2BIG : -ENOSPC;
        return;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : RENDER_INITIAL;
        while (cap < s->len + n + 1)
            cap = cap > (s->max + 1) / 2 ? s->max + 1 : cap * 2;
        if (cap > s->max + 1)
            cap = s->max + 1;
        char *nb = realloc(s->buf, cap);
        if (nb == NULL) {
            s->err = -ENOMEM;
            return;
        }
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
}

/* Appends a NUL-terminated string. */
static void puts_(sink *s, const char *str)
{
    put(s, str, strlen(str));
}

/* Appends str escaped for a label value (\\, \", \n) or, when help is true, for HELP (\\, \n). */
static void put_escaped(sink *s, const char *str, bool help)
{
    const char *run = str;
    for (const char *p = str;; p++) {
        const char *esc = NULL;
        if (*p == '\\')
            esc = "\\\\";
        else if (*p == '\n')
            esc = "\\n";
        else if (*p == '"' && !help)
            esc = "\\\"";
        else if (*p != '\0')
            continue;
        put(s, run, (size_t)(p - run));
        if (esc == NULL)
            return;
        puts_(s, esc);
        run = p + 1;
    }
}

/* Formats a sample value the way Prometheus parses it: NaN, +Inf, -Inf, or the shortest
 * %g form that reads back as the same double. */
static void format_double(char out[NUM_MAX], double v)
{
    if (isnan(v)) {
        snprintf(out, NUM_MAX, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, NUM_MAX, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, NUM_MAX, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

/* Appends "{a="x",b="y"}" for a series, with le="..." last when le is not NULL; nothing when
 * there are no labels at all. */
static void put_labels(sink *s, const sn_metrics_family *f, const series *se, const char *le)
{
    if (f->nlabels == 0 && le == NULL)
        return;
    put(s, "{", 1);
    for (unsigned i = 0; i < f->nlabels; i++) {
        if (i > 0)
            put(s, ",", 1);
        puts_(s, f->labels[i]);
        put(s, "=\"", 2);
        put_escaped(s, se->values[i], false);
        put(s, "\"", 1);
    }
    if (le != NULL) {
        if (f->nlabels > 0)
            put(s, ",", 1);
        put(s, "le=\"", 4);
        puts_(s, le);
        put(s, "\"", 1);
    }
    put(s, "}", 1);
}

/* Appends "name[suffix]{labels} value\n". */
static void put_sample(sink *s, const sn_metrics_family *f, const char *suffix, const series *se,
                       const char *le, const char *value)
{
    puts_(s, f->name);
    puts_(s, suffix);
    put_labels(s, f, se, le);
    put(s, " ", 1);
    puts_(s, value);
    put(s, "\n", 1);
}

/* The /proc values of one exposition, read on first use. */
typedef struct proc_values {
    bool read;
    bool have[PROC_START + 1];
    double v[PROC_START + 1];
} proc_values;

/* Reads "btime" (boot time, Unix seconds) from /proc/stat. Returns 0 or -1. Only lines are
 * matched, even when a long line arrives in several pieces. */
static int read_btime(double *out)
{
    FILE *fp = fopen("/proc/stat", "re");
    if (fp == NULL)
        return -1;
    char line[256];
    bool at_start = true;
    int rc = -1;
    while (fgets(line, sizeof line, fp) != NULL) {
        size_t n = strlen(line);
        if (at_start && strncmp(line, "btime ", 6) == 0) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(line + 6, &end, 10);
            if (errno == 0 && end != line + 6) {
                *out = (double)v;
                rc = 0;
            }
            break;
        }
        at_start = n > 0 && line[n - 1] == '\n';
    }
    fclose(fp);
    return rc;
}

/* Reads CPU time, memory sizes and start time from /proc/self/stat (proc(5) fields 14, 15, 22,
 * 23 and 24), the open descriptors from /proc/self/fd and the limit from getrlimit. A value
 * that cannot be read is marked missing. */
static void proc_read(proc_values *pv)
{
    pv->read = true;
    long tick = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    char buf[PROC_STAT_MAX];
    FILE *fp = fopen("/proc/self/stat", "re");
    if (fp != NULL) {
        size_t n = fread(buf, 1, sizeof buf - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        /* The command name (field 2) is in parentheses and may hold anything: skip past the
         * last ')'; the next token is field 3. */
        char *p = strrchr(buf, ')');
        unsigned long long f[25] = {0};
        int field = 3;
        bool ok = p != NULL && tick > 0 && page > 0;
        if (ok)
            p++;
        while (ok && field <= 24) {
            while (*p == ' ')
                p++;
            if (*p == '\0') {
                ok = false;
                break;
            }
            char *end = p;
            unsigned long long v = 0;
            if (*p >= '0' && *p <= '9') {
                errno = 0;
                v = strtoull(p, &end, 10);
                if (errno != 0)
                    ok = false;
            }
            while (*end != ' ' && *end != '\0')
                end++;
            f[field++] = v;
            p = end;
        }
        if (ok) {
            pv->v[PROC_CPU] = (double)(f[14] + f[15]) / (double)tick;
            pv->v[PROC_VSIZE] = (double)f[23];
            pv->v[PROC_RSS] = (double)f[24] * (double)page;
            pv->have[PROC_CPU] = pv->have[PROC_VSIZE] = pv->have[PROC_RSS] = true;
            double btime;
            if (read_btime(&btime) == 0) {
                pv->v[PROC_START] = btime + (double)f[22] / (double)tick;
                pv->have[PROC_START] = true;
            }
        }
    }
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        unsigned long n = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                n++;
        closedir(d);
        pv->v[PROC_OPEN_FDS] = (double)(n > 0 ? n - 1 : 0); /* not the directory's own fd */
        pv->have[PROC_OPEN_FDS] = true;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        pv->v[PROC_MAX_FDS] = (double)rl.rlim_cur;
        pv->have[PROC_MAX_FDS] = true;
    }
}

/* Appends one family: HELP, TYPE and its samples. */
static void render_family(sink *s, const sn_metrics_family *f, proc_values *pv)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    char num[NUM_MAX];
    if (f->proc != PROC_NONE) {
        if (!pv->read)
            proc_read(pv);
        if (!pv->have[f->proc])
            return;
    }
    put(s, "# HELP ", 7);
    puts_(s, f->name);
    put(s, " ", 1);
    put_escaped(s, f->help, true);
    put(s, "\n# TYPE ", 8);
    puts_(s, f->name);
    put(s, " ", 1);
    puts_(s, type_names[f->type]);
    put(s, "\n", 1);
    if (f->proc != PROC_NONE) {
        format_double(num, pv->v[f->proc]);
        put_sample(s, f, "", NULL, NULL, num);
        return;
    }
    for (series *se = atomic_load_explicit(&f->head, memory_order_acquire); se != NULL;
         se = atomic_load_explicit(&se->next, memory_order_acquire)) {
        switch (f->type) {
        case SN_METRICS_COUNTER: {
            double frac = bits_dbl(atomic_load_explicit(&se->bits, memory_order_relaxed));
            uint64_t n = atomic_load_explicit(&se->n, memory_order_relaxed);
            if (frac == 0.0)
                snprintf(num, sizeof num, "%" PRIu64, n);
            else
                format_double(num, (double)n + frac);
            put_sample(s, f, "", se, NULL, num);
            break;
        }
        case SN_METRICS_GAUGE:
            format_double(num, bits_dbl(atomic_load_explicit(&se->bits, memory_order_relaxed)));
            put_sample(s, f, "", se, NULL, num);
            break;
        case SN_METRICS_HISTOGRAM: {
            char le[NUM_MAX];
            uint64_t cum = 0;
            for (size_t i = 0; i <= f->nbounds; i++) {
                cum += atomic_load_explicit(&se->counts[i], memory_order_relaxed);
                if (i < f->nbounds)
                    format_double(le, f->bounds[i]);
                else
                    snprintf(le, sizeof le, "+Inf");
                snprintf(num, sizeof num, "%" PRIu64, cum);
                put_sample(s, f, "_bucket", se, le, num);
            }
            format_double(num, bits_dbl(atomic_load_explicit(&se->bits, memory_order_relaxed)));
            put_sample(s, f, "_sum", se, NULL, num);
            snprintf(num, sizeof num, "%" PRIu64, cum);
            put_sample(s, f, "_count", se, NULL, num);
            break;
        }
        }
    }
}

/* Renders every family into the sink. */
static void render(sn_metrics *m, sink *s)
{
    proc_values pv;
    memset(&pv, 0, sizeof pv);
    for (sn_metrics_family *f = atomic_load_explicit(&m->head, memory_order_acquire);
         f != NULL && s->err == 0; f = atomic_load_explicit(&f->next, memory_order_acquire))
        render_family(s, f, &pv);
}

ssize_t sn_metrics_render(sn_metrics *m, char *buf, size_t cap)
{
    if (m == NULL || buf == NULL || cap == 0)
        return -EINVAL;
    sink s = {.buf = buf, .cap = cap, .max = cap - 1, .grow = false};
    if (s.max > m->lim.max_render_bytes)
        s.max = m->lim.max_render_bytes;
    render(m, &s);
    if (s.err != 0) {
        buf[0] = '\0';
        return s.err;
    }
    buf[s.len] = '\0';
    return (ssize_t)s.len;
}

int sn_metrics_render_alloc(sn_metrics *m, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (m == NULL)
        return -EINVAL;
    sink s = {.max = m->lim.max_render_bytes, .grow = true};
    render(m, &s);
    if (s.err == 0 && s.buf == NULL)
        put(&s, "", 0); /* an empty exposition still gets a buffer */
    if (s.err != 0) {
        free(s.buf);
        return s.err;
    }
    s.buf[s.len] = '\0';
    *out = s.buf;
    *len = s.len;
    return 0;
}
