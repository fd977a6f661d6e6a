/*
 * accuracy.c -- sentinel-accuracy: detection accuracy of the aggregator's engine on labelled
 * scenarios (tests/load/scenario.h, docs/scenarios.md).
 *
 *   sentinel-accuracy [--json] [--grace SEC] [--dedup SEC] [--window SEC] [--require-detected]
 *                     [--sidecar] [--verbose] [--set engine.PATH=VALUE]... FILE|DIR ...
 *
 * Each scenario's events go through the REAL engine in simulated time, exactly as the
 * aggregator feeds it: sn_engine_observe per event, sn_engine_tick at every simulated second
 * up to the scenario's end. With --sidecar each event also goes through the sidecar's local
 * detection (sidecar/local_detect.h, defaults; one alert per key per 10 s as the sidecar's
 * limiter lets through) and its alerts are confirmed by sn_engine_local_alert after the
 * event, as the aggregator applies a sidecar batch. The engine's defaults are
 * used, plus the scenario's "engine" settings (the aggregator's engine.* paths).
 *
 * Matching (docs/benchmarks.md states the same definitions):
 *   - an anomaly of the incident's type for the labelled (service, model) between its start and
 *     end + grace detects the incident; the first one gives the detection delay;
 *   - an anomaly of another type inside a labelled window of its (service, model) is "related"
 *     (the incident really moves that metric too) and counts neither way;
 *   - any other anomaly is false.
 *   Anomalies are grouped into alerts as the alert manager does: a (service, model, type)
 *   with no anomaly for --dedup seconds starts a new alert. Precision = true alerts / (true +
 *   false alerts); recall = detected incidents / incidents; F1 their harmonic mean.
 *   FP rate = the share of clean windows (--window seconds of one (service, model) stream with
 *   no incident on it, grace included) holding at least one false anomaly of the type;
 *   FP/Mcall = false anomalies of the type per million calls in clean windows (JSON:
 *   fp_per_call, the fraction).
 *
 * Exit status: 0; 1 with --require-detected when an incident was missed, or on a bad scenario;
 * 2 on bad usage.
 */
#include "alert_limit.h"
#include "config.h"
#include "engine.h"
#include "local_detect.h"
#include "scenario.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC                     INT64_C(1000000000)
#define DELAYS_MAX              4096 /* detected incidents kept for delay percentiles, per type */
#define FILES_MAX               256
#define PATH_MAX_SZ             1024
#define SETS_MAX                32
#define LOCAL_ALERTS_MAX        16    /* local alerts kept per event (one per metric at most) */
#define LOCAL_ALERT_INTERVAL_MS 10000 /* the sidecar's default: one per key per 10 s */

typedef struct acc_settings {
    sn_engine_config engine;
} acc_settings;

/* The aggregator's engine settings, so scenarios and --set use its paths and checks. */
static const sn_config_desc descriptors[] = {
    SN_ENGINE_DESCRIPTORS("engine", acc_settings, engine),
};

typedef struct acc_options {
    bool json;
    bool require;
    bool verbose;
    bool sidecar;
    int64_t grace;
    int64_t dedup;
    int64_t window;
    size_t nsets;
    const char *sets[SETS_MAX]; /* --set engine.PATH=VALUE, applied after the scenario's */
} acc_options;

/* Totals per anomaly type (and one more row: every type). */
typedef struct acc_type {
    unsigned labels;
    unsigned detected;
    unsigned tp_alerts;
    unsigned fp_alerts;
    unsigned related;      /* related anomalies */
    uint64_t fp_anomalies; /* raw false anomalies */
    uint64_t fp_windows;   /* clean windows with a false anomaly */
    unsigned ndelays;
    double delays[DELAYS_MAX];
} acc_type;

#define ROW_ALL SN_ANOMALY_TYPE_COUNT

typedef struct acc_totals {
    acc_type t[SN_ANOMALY_TYPE_COUNT + 1];
    uint64_t clean_windows;
    uint64_t clean_events;
    uint64_t events;
    double clean_hours; /* stream-hours outside incidents */
    unsigned scenarios;
    unsigned missed;
    json_t *incidents; /* --json: one object per incident (owned; NULL otherwise) */
    json_t *per_scenario;
} acc_totals;

/* What one scenario run collects from the engine's callback. */
typedef struct acc_run {
    const sn_scenario *s;
    const acc_options *o;
    acc_totals *tot;
    size_t nlabels;
    int64_t first[SN_SCENARIO_INCIDENTS_MAX];     /* first matching anomaly; INT64_MAX = none */
    int64_t last_true[SN_SCENARIO_INCIDENTS_MAX]; /* dedup state of true alerts, per label */
    int64_t last[SN_SCENARIO_STREAMS_MAX + 1][SN_ANOMALY_TYPE_COUNT]; /* ... of false alerts */
    size_t nwindows;
    uint16_t *win_fp;   /* per stream and window: bits of types with a false anomaly */
    uint8_t *win_clean; /* per stream and window: 1 when no incident touches it */
    unsigned fp_here;   /* false alerts in this scenario */
    unsigned related_here;
    unsigned from_sidecar; /* anomalies that came from a sidecar's local alert */
} acc_run;

/* Index of the (service, model) stream, or the stream count when it is not one. */
static size_t stream_of(const sn_scenario *s, const char *service, const char *model)
{
    size_t n = sn_scenario_stream_count(s);
    for (size_t i = 0; i < n; i++) {
        const char *sv, *m;
        sn_scenario_stream_names(s, i, &sv, &m);
        if (strcmp(sv, service) == 0 && strcmp(m, model) == 0)
            return i;
    }
    return n; /* not a stream: e.g. a per-service budget */
}

/* True when label l covers (service, model) at time t (grace included). */
static bool covers(const sn_scenario_label *l, const char *service, const char *model, int64_t t,
                   int64_t grace)
{
    return strcmp(l->service, service) == 0 && (model[0] == '\0' || strcmp(l->model, model) == 0) &&
           t >= l->start_ns && t <= l->end_ns + grace;
}

/* The engine's callback: classifies one anomaly against the labels. */
static void on_anomaly(const sn_anomaly *a, void *ud)
{
    acc_run *r = ud;
    const sn_scenario *s = r->s;
    sn_anomaly_type type = a->anomaly_type;
    if ((unsigned)type >= SN_ANOMALY_TYPE_COUNT)
        return;
    if (a->source == SN_SOURCE_SIDECAR)
        r->from_sidecar++;
    acc_type *row = &r->tot->t[type], *all = &r->tot->t[ROW_ALL];
    bool match = false, inside = false;
    for (size_t i = 0; i < r->nlabels; i++) {
        const sn_scenario_label *l = sn_scenario_label_at(s, i);
        if (!covers(l, a->service, a->model, a->time_unix_nano, r->o->grace))
            continue;
        inside = true;
        if (l->type != type)
            continue;
        if (a->time_unix_nano < r->first[i])
            r->first[i] = a->time_unix_nano;
        if (!match &&
            (r->last_true[i] == INT64_MIN || a->time_unix_nano - r->last_true[i] > r->o->dedup)) {
            row->tp_alerts++;
            all->tp_alerts++;
        }
        if (!match)
            r->last_true[i] = a->time_unix_nano;
        match = true;
    }
    if (match)
        return;
    if (inside) {
        row->related++;
        all->related++;
        r->related_here++;
        return;
    }
    size_t si = stream_of(s, a->service, a->model);
    int64_t *last = &r->last[si][type];
    bool new_alert = *last == INT64_MIN || a->time_unix_nano - *last > r->o->dedup;
    *last = a->time_unix_nano;
    row->fp_anomalies++;
    all->fp_anomalies++;
    if (new_alert) {
        row->fp_alerts++;
        all->fp_alerts++;
        r->fp_here++;
        if (r->o->verbose)
            fprintf(stderr,
                    "  false %s %s/%s at +%.1fs metric=%s value=%g baseline=%g method=%s "
                    "severity=%s agreed=%u sigma=%.2f%s\n",
                    sn_anomaly_type_name(type), a->service, a->model,
                    (double)(a->time_unix_nano - sn_scenario_start(s)) / (double)SEC,
                    sn_metric_name(a->metric), a->value, a->baseline, sn_detector_name(a->method),
                    sn_severity_name(a->severity), a->agreed, a->deviation_sigma,
                    a->source == SN_SOURCE_SIDECAR ? " (sidecar)" : "");
    }
    if (si < sn_scenario_stream_count(s)) {
        int64_t off = a->time_unix_nano - sn_scenario_start(s);
        size_t w = off < 0 ? 0 : (size_t)(off / r->o->window);
        if (w < r->nwindows)
            r->win_fp[si * r->nwindows + w] |= (uint16_t)(1u << type);
    }
}

/* Builds the engine config: defaults, then the scenario's "engine" settings. */
static int make_engine(const sn_scenario *s, const acc_options *o, sn_engine **out, char *err,
                       size_t errlen)
{
    static acc_settings set; /* static: the config handle binds it; one scenario at a time */
    memset(&set, 0, sizeof set);
    sn_engine_config_defaults(&set.engine);
    sn_config *cfg = NULL;
    sn_config_error cerr = {{0}};
    int rc = sn_config_create(&cfg, descriptors, sizeof descriptors / sizeof descriptors[0], &set,
                              &cerr);
    if (rc != 0) {
        snprintf(err, errlen, "%s", cerr.msg);
        return rc;
    }
    const json_t *eng = sn_scenario_engine_settings(s);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)eng, key, v)
    {
        char path[256], text[128];
        snprintf(path, sizeof path, "engine.%s", key);
        if (json_is_string(v))
            snprintf(text, sizeof text, "%s", json_string_value(v));
        else if (json_is_integer(v))
            snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else if (json_is_real(v))
            snprintf(text, sizeof text, "%.17g", json_real_value(v));
        else if (json_is_boolean(v))
            snprintf(text, sizeof text, "%s", json_is_true(v) ? "true" : "false");
        else {
            snprintf(err, errlen, "%s: engine.%s: must be a scalar", sn_scenario_name(s), key);
            rc = -EINVAL;
            goto out_free_cfg;
        }
        rc = sn_config_set(cfg, path, text, sn_scenario_name(s), &cerr);
        if (rc != 0) {
            snprintf(err, errlen, "%s", cerr.msg);
            goto out_free_cfg;
        }
    }
    for (size_t i = 0; i < o->nsets; i++) {
        rc = sn_config_set_assignment(cfg, o->sets[i], &cerr);
        if (rc != 0) {
            snprintf(err, errlen, "%s", cerr.msg);
            goto out_free_cfg;
        }
    }
    rc = sn_engine_create(out, &set.engine, 7, &cerr);
    if (rc != 0)
        snprintf(err, errlen, "%s", cerr.msg);
out_free_cfg:
    sn_config_destroy(cfg);
    return rc;
}

/* NAN-safe JSON number: null for NAN. */
static json_t *num(double x)
{
    return isnan(x) ? json_null() : json_real(x);
}

/* Runs one scenario through the engine and adds its counts to tot. Returns 0, or a negative
 * errno with err filled (bad scenario or engine settings, out of memory). */
static int run_scenario(const char *path, const acc_options *o, acc_totals *tot, char *err,
                        size_t errlen)
{
    sn_scenario *s = NULL;
    int rc = sn_scenario_load(&s, path, err, errlen);
    if (rc != 0)
        return rc;
    sn_engine *e = NULL;
    rc = make_engine(s, o, &e, err, errlen);
    if (rc != 0)
        goto out_free_scenario;
    sn_local_detect *ld = NULL;
    sn_alert_limit *limit = NULL;
    sn_scenario_gen *g = NULL;
    static acc_run r; /* static: ~8 KiB of dedup state, one scenario at a time */
    memset(&r, 0, sizeof r);
    if (o->sidecar) {
        sn_local_detect_config lc;
        sn_local_detect_config_defaults(&lc);
        rc = sn_local_detect_create(&lc, 7, &ld);
        if (rc == 0)
            rc = sn_alert_limit_create(SN_ALERT_LIMIT_SLOTS_DEFAULT, LOCAL_ALERT_INTERVAL_MS, 7,
                                       &limit);
        if (rc != 0) {
            snprintf(err, errlen, "cannot create the sidecar's local detection");
            goto out_free_windows;
        }
    }
    rc = sn_scenario_gen_create(&g, s);
    if (rc != 0)
        goto out_free_windows;
    r.s = s;
    r.o = o;
    r.tot = tot;
    r.nlabels = sn_scenario_label_count(s);
    for (size_t i = 0; i < SN_SCENARIO_INCIDENTS_MAX; i++) {
        r.first[i] = INT64_MAX;
        r.last_true[i] = INT64_MIN;
    }
    for (size_t i = 0; i <= SN_SCENARIO_STREAMS_MAX; i++)
        for (size_t t = 0; t < SN_ANOMALY_TYPE_COUNT; t++)
            r.last[i][t] = INT64_MIN;
    size_t nstreams = sn_scenario_stream_count(s);
    int64_t start = sn_scenario_start(s), dur = sn_scenario_duration(s);
    r.nwindows = (size_t)((dur + o->window - 1) / o->window);
    r.win_fp = calloc(nstreams * r.nwindows, sizeof *r.win_fp);
    r.win_clean = calloc(nstreams * r.nwindows, 1);
    if (r.win_fp == NULL || r.win_clean == NULL) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out_free_windows;
    }
    uint64_t clean_windows = 0;
    double clean_s = 0.0;
    for (size_t si = 0; si < nstreams; si++) {
        const char *sv, *m;
        sn_scenario_stream_names(s, si, &sv, &m);
        for (size_t w = 0; w < r.nwindows; w++) {
            int64_t a = start + (int64_t)w * o->window, b = a + o->window;
            bool clean = b <= start + dur;
            for (size_t i = 0; i < r.nlabels && clean; i++) {
                const sn_scenario_label *l = sn_scenario_label_at(s, i);
                if (strcmp(l->service, sv) == 0 && strcmp(l->model, m) == 0 &&
                    a <= l->end_ns + o->grace && b > l->start_ns)
                    clean = false;
            }
            r.win_clean[si * r.nwindows + w] = clean;
            if (clean) {
                clean_windows++;
                clean_s += (double)o->window / (double)SEC;
            }
        }
    }
    /* The aggregator's loop: every event observed, tick every second. */
    sn_event ev;
    uint64_t active = 0, clean_events = 0;
    int64_t next_tick = start + SEC;
    while (sn_scenario_next(g, &ev, &active)) {
        while (ev.end_unix_nano >= next_tick) {
            sn_engine_tick(e, next_tick, on_anomaly, &r);
            next_tick += SEC;
        }
        sn_local_alert found[LOCAL_ALERTS_MAX];
        size_t nfound = 0;
        if (ld != NULL) {
            nfound = sn_local_detect_event(ld, &ev, found, LOCAL_ALERTS_MAX);
            if (nfound > LOCAL_ALERTS_MAX)
                nfound = LOCAL_ALERTS_MAX;
        }
        /* The aggregator applies a sidecar batch's events, then its alerts. */
        sn_engine_observe(e, &ev, on_anomaly, &r);
        for (size_t k = 0; k < nfound; k++)
            if (sn_alert_limit_admit(limit, &found[k], (uint64_t)(ev.end_unix_nano / 1000000),
                                     NULL))
                sn_engine_local_alert(e, &found[k], ev.end_unix_nano, on_anomaly, &r);
        size_t si = stream_of(s, ev.service, ev.model);
        size_t w = (size_t)((ev.end_unix_nano - start) / o->window);
        if (si < nstreams && w < r.nwindows && r.win_clean[si * r.nwindows + w])
            clean_events++;
    }
    /* Up to the end of the traffic only: silence after it is not part of the scenario. */
    for (int64_t end = start + dur; next_tick <= end; next_tick += SEC)
        sn_engine_tick(e, next_tick, on_anomaly, &r);

    uint64_t events = sn_scenario_gen_events(g);
    tot->events += events;
    tot->clean_events += clean_events;
    tot->clean_windows += clean_windows;
    tot->clean_hours += clean_s / 3600.0;
    tot->scenarios++;
    for (size_t i = 0; i < nstreams * r.nwindows; i++) {
        if (!r.win_clean[i] || r.win_fp[i] == 0)
            continue;
        tot->t[ROW_ALL].fp_windows++;
        for (unsigned t = 0; t < SN_ANOMALY_TYPE_COUNT; t++)
            if (r.win_fp[i] & (1u << t))
                tot->t[t].fp_windows++;
    }
    unsigned detected = 0;
    for (size_t i = 0; i < r.nlabels; i++) {
        const sn_scenario_label *l = sn_scenario_label_at(s, i);
        acc_type *row = &tot->t[l->type], *all = &tot->t[ROW_ALL];
        row->labels++;
        all->labels++;
        bool hit = r.first[i] != INT64_MAX;
        double delay = hit ? (double)(r.first[i] - l->start_ns) / (double)SEC : NAN;
        if (hit) {
            detected++;
            row->detected++;
            all->detected++;
            if (row->ndelays < DELAYS_MAX)
                row->delays[row->ndelays++] = delay;
            if (all->ndelays < DELAYS_MAX)
                all->delays[all->ndelays++] = delay;
        } else {
            tot->missed++;
        }
        if (tot->incidents != NULL)
            json_array_append_new(
                tot->incidents,
                json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:o}", "scenario", sn_scenario_name(s),
                          "id", l->id, "type", sn_anomaly_type_name(l->type), "service", l->service,
                          "model", l->model, "detected", hit, "delay_s", num(delay)));
        if (!o->json)
            printf("    %-24s %-24s %s/%s  %s", l->id, sn_anomaly_type_name(l->type), l->service,
                   l->model, hit ? "detected" : "MISSED");
        if (!o->json && hit)
            printf(" after %.2f s", delay);
        if (!o->json)
            printf("\n");
    }
    if (tot->per_scenario != NULL)
        json_array_append_new(
            tot->per_scenario,
            json_pack("{s:s, s:I, s:i, s:i, s:i, s:i, s:I, s:i}", "scenario", sn_scenario_name(s),
                      "events", (json_int_t)events, "incidents", (int)r.nlabels, "detected",
                      (int)detected, "false_alerts", (int)r.fp_here, "related_anomalies",
                      (int)r.related_here, "clean_windows", (json_int_t)clean_windows,
                      "from_sidecar", (int)r.from_sidecar));
    if (!o->json)
        printf("  %-28s events=%" PRIu64 " incidents=%zu detected=%u false_alerts=%u "
               "related_anomalies=%u clean_windows=%" PRIu64 " from_sidecar=%u\n",
               sn_scenario_name(s), events, r.nlabels, detected, r.fp_here, r.related_here,
               clean_windows, r.from_sidecar);
    rc = 0;
out_free_windows:
    free(r.win_fp);
    free(r.win_clean);
    sn_scenario_gen_destroy(g);
    sn_alert_limit_destroy(limit);
    sn_local_detect_destroy(ld);
    sn_engine_destroy(e);
out_free_scenario:
    sn_scenario_destroy(s);
    return rc;
}

/* qsort order of doubles, ascending. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentile p (0..1) of the sorted values; NAN when empty. */
static double pct(const double *v, unsigned n, double p)
{
    if (n == 0)
        return NAN;
    size_t i = (size_t)ceil(p * n);
    return v[i == 0 ? 0 : i - 1];
}

/* Prints the table (or --json) of every type with incidents or alerts, and the totals row.
 * Sorts the delays in place. */
static void report(acc_totals *tot, const acc_options *o)
{
    json_t *rows = o->json ? json_array() : NULL;
    if (!o->json)
        printf("\n%-26s %6s %8s %7s %7s %7s %9s %6s %9s %9s %8s %8s %8s\n", "anomaly type",
               "incid.", "detected", "recall", "alerts", "false", "precision", "F1", "FP rate",
               "FP/Mcall", "FP/hour", "delay50", "delaymax");
    for (unsigned t = 0; t <= SN_ANOMALY_TYPE_COUNT; t++) {
        acc_type *a = &tot->t[t];
        if (t != ROW_ALL && a->labels == 0 && a->fp_alerts == 0 && a->tp_alerts == 0)
            continue;
        qsort(a->delays, a->ndelays, sizeof a->delays[0], cmp_double);
        double recall = a->labels ? (double)a->detected / a->labels : NAN;
        double prec = a->tp_alerts + a->fp_alerts
                          ? (double)a->tp_alerts / (a->tp_alerts + a->fp_alerts)
                          : NAN;
        double f1 = (recall + prec > 0.0) ? 2.0 * recall * prec / (recall + prec) : NAN;
        double fpr = tot->clean_windows ? (double)a->fp_windows / (double)tot->clean_windows : NAN;
        double fph = tot->clean_hours > 0.0 ? a->fp_alerts / tot->clean_hours : NAN;
        double fpc = tot->clean_events ? (double)a->fp_anomalies / (double)tot->clean_events : NAN;
        double p50 = pct(a->delays, a->ndelays, 0.5);
        double dmax = a->ndelays ? a->delays[a->ndelays - 1] : NAN;
        const char *name = t == ROW_ALL ? "all" : sn_anomaly_type_name((sn_anomaly_type)t);
        if (o->json) {
            json_t *r = json_pack(
                "{s:s, s:i, s:i, s:o, s:i, s:i, s:o, s:o, s:I, s:o, s:o, s:o, "
                "s:o, s:i, s:o}",
                "type", name, "incidents", a->labels, "detected", a->detected, "recall",
                num(recall), "true_alerts", a->tp_alerts, "false_alerts", a->fp_alerts, "precision",
                num(prec), "f1", num(f1), "false_anomalies", (json_int_t)a->fp_anomalies, "fp_rate",
                num(fpr), "fp_per_hour", num(fph), "delay_p50_s", num(p50), "delay_max_s",
                num(dmax), "related_anomalies", a->related, "fp_per_call", num(fpc));
            if (r != NULL)
                json_array_append_new(rows, r);
            continue;
        }
        printf("%-26s %6u %8u %7.3f %7u %7u %9.3f %6.3f %8.3f%% %9.2f %8.3f %8.2f %8.2f\n", name,
               a->labels, a->detected, recall, a->tp_alerts, a->fp_alerts, prec, f1, 100.0 * fpr,
               1e6 * fpc, fph, p50, dmax);
    }
    if (o->json) {
        json_t *root = json_pack("{s:o, s:i, s:I, s:I, s:I, s:f, s:f, s:f, s:f}", "types", rows,
                                 "scenarios", tot->scenarios, "events", (json_int_t)tot->events,
                                 "clean_events", (json_int_t)tot->clean_events, "clean_windows",
                                 (json_int_t)tot->clean_windows, "clean_stream_hours",
                                 tot->clean_hours, "grace_s", (double)o->grace / SEC, "dedup_s",
                                 (double)o->dedup / SEC, "window_s", (double)o->window / SEC);
        if (root != NULL && tot->incidents != NULL && tot->per_scenario != NULL) {
            json_object_set(root, "incidents", tot->incidents);
            json_object_set(root, "scenarios_detail", tot->per_scenario);
        }
        if (root != NULL) {
            json_dumpf(root, stdout, JSON_INDENT(2));
            printf("\n");
            json_decref(root);
        }
        return;
    }
    printf("\n%u scenarios, %" PRIu64 " events (%" PRIu64 " in clean windows), %" PRIu64
           " clean windows of %.0f s (%.2f stream-hours); grace %.0f s, alert dedup %.0f s\n",
           tot->scenarios, tot->events, tot->clean_events, tot->clean_windows,
           (double)o->window / SEC, tot->clean_hours, (double)o->grace / SEC,
           (double)o->dedup / SEC);
}

/* qsort order of C strings. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds path, or the *.json files of directory path in name order, to files. Returns 0 or -1
 * (too many files, unreadable directory, out of memory; message on stderr). */
static int add_path(const char *path, char **files, size_t *n)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        if (errno != ENOTDIR) {
            fprintf(stderr, "sentinel-accuracy: %s: %s\n", path, strerror(errno));
            return -1;
        }
        if (*n == FILES_MAX)
            goto out_too_many;
        files[*n] = strdup(path);
        if (files[*n] == NULL)
            return -1;
        (*n)++;
        return 0;
    }
    size_t first = *n;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        if (*n == FILES_MAX) {
            closedir(d);
            goto out_too_many;
        }
        char buf[PATH_MAX_SZ];
        if ((size_t)snprintf(buf, sizeof buf, "%s/%s", path, de->d_name) >= sizeof buf)
            continue;
        files[*n] = strdup(buf);
        if (files[*n] == NULL) {
            closedir(d);
            return -1;
        }
        (*n)++;
    }
    closedir(d);
    qsort(files + first, *n - first, sizeof files[0], cmp_str);
    return 0;
out_too_many:
    fprintf(stderr, "sentinel-accuracy: more than %d scenario files\n", FILES_MAX);
    return -1;
}

/* Prints the usage on stderr; returns the exit status of bad usage (2). */
static int usage(void)
{
    fprintf(stderr,
            "usage: sentinel-accuracy [--json] [--grace SEC] [--dedup SEC] [--window SEC]\n"
            "                         [--require-detected] [--sidecar] [--verbose]\n"
            "                         [--set engine.PATH=VALUE]...\n"
            "                         FILE|DIR ...\n"
            "Runs labelled scenarios (docs/scenarios.md) through the detection engine in\n"
            "simulated time and reports precision, recall, F1, false-positive rate and\n"
            "detection delay per anomaly type (docs/benchmarks.md).\n"
            "  --grace SEC        an anomaly this long after an incident still counts (30)\n"
            "  --dedup SEC        anomalies of a (service, model, type) closer than this are one\n"
            "                     alert (300, the alert manager's default)\n"
            "  --window SEC       clean-window length for the FP rate (60)\n"
            "  --require-detected exit 1 unless every incident was detected\n"
            "  --set engine.PATH=VALUE  an engine setting for every scenario (after the\n"
            "                     scenario's own), e.g. engine.detect.cusum.h=8\n"
            "  --sidecar          also run the sidecar's local detection (defaults, one alert\n"
            "                     per key per 10 s) and confirm its alerts in the engine\n"
            "  --verbose          print every false alert on stderr\n");
    return 2;
}

/* Parses a positive number of seconds; false when it is not one. */
static bool seconds(const char *text, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v > 0.0) || v > 86400.0)
        return false;
    *out = (int64_t)(v * (double)SEC);
    return true;
}

/* Runs every scenario given (files, or the *.json of directories, in name order) and reports
 * the totals; exit status as in the header. */
int main(int argc, char **argv)
{
    acc_options o = {.grace = 30 * SEC, .dedup = 300 * SEC, .window = 60 * SEC};
    static char *files[FILES_MAX];
    size_t nfiles = 0;
    int status = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0)
            o.json = true;
        else if (strcmp(a, "--require-detected") == 0)
            o.require = true;
        else if (strcmp(a, "--verbose") == 0)
            o.verbose = true;
        else if (strcmp(a, "--sidecar") == 0)
            o.sidecar = true;
        else if (strcmp(a, "--set") == 0 && i + 1 < argc) {
            if (o.nsets == SETS_MAX) {
                fprintf(stderr, "sentinel-accuracy: more than %d --set\n", SETS_MAX);
                status = 2;
                goto out_free_files;
            }
            o.sets[o.nsets++] = argv[++i];
        } else if (strcmp(a, "--help") == 0) {
            usage();
            return 0;
        } else if ((strcmp(a, "--grace") == 0 || strcmp(a, "--dedup") == 0 ||
                    strcmp(a, "--window") == 0) &&
                   i + 1 < argc) {
            int64_t *dst = a[2] == 'g' ? &o.grace : a[2] == 'd' ? &o.dedup : &o.window;
            if (!seconds(argv[++i], dst)) {
                fprintf(stderr, "sentinel-accuracy: %s: must be seconds in (0, 86400]\n", a);
                status = 2;
                goto out_free_files;
            }
        } else if (a[0] == '-') {
            status = usage();
            goto out_free_files;
        } else if (add_path(a, files, &nfiles) != 0) {
            status = 1;
            goto out_free_files;
        }
    }
    if (nfiles == 0) {
        status = usage();
        goto out_free_files;
    }
    static acc_totals tot;
    if (o.json) {
        tot.incidents = json_array();
        tot.per_scenario = json_array();
        if (tot.incidents == NULL || tot.per_scenario == NULL) {
            fprintf(stderr, "sentinel-accuracy: out of memory\n");
            status = 1;
            goto out_free_json;
        }
    }
    for (size_t i = 0; i < nfiles; i++) {
        char err[512] = "";
        if (!o.json)
            printf("%s\n", files[i]);
        if (run_scenario(files[i], &o, &tot, err, sizeof err) != 0) {
            fprintf(stderr, "sentinel-accuracy: %s\n", err);
            status = 1;
            goto out_free_json;
        }
    }
    report(&tot, &o);
    if (o.require && tot.missed > 0) {
        fprintf(stderr, "sentinel-accuracy: %u incident(s) not detected\n", tot.missed);
        status = 1;
    }
out_free_json:
    json_decref(tot.incidents);
    json_decref(tot.per_scenario);
out_free_files:
    for (size_t i = 0; i < nfiles; i++)
        free(files[i]);
    return status;
}
