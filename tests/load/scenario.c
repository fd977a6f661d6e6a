/*
 * scenario.c -- parses scenario files (JSON, docs/scenarios.md) and generates their events in
 * simulated time.
 *
 * Generation: each (service, model) stream is a non-homogeneous Poisson process (thinning
 * against its highest possible rate) with its own splitmix64 generator seeded from the
 * scenario seed and the stream's index, so streams do not perturb one another. The generator
 * keeps each stream's next call ready and hands out the earliest (a linear scan: at most 64
 * streams). An event's time is the end of its call; its start is end - latency.
 */
#include "scenario.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NS            INT64_C(1000000000)
#define MAX_DURATION  (INT64_C(7) * 86400)
#define MAX_RATE      1e5
#define DEFAULT_START INT64_C(1767225600) /* 2026-01-01T00:00:00Z */
#define TWO_PI        6.283185307179586

/* A log-normal with an optional Pareto tail: median x exp(sigma N), and with probability
 * tail_prob also x U^(-1/tail_alpha) (>= 1), which makes the far tail heavy. */
typedef struct dist {
    double median;
    double sigma;
    double tail_prob;
    double tail_alpha;
} dist;

typedef struct stream {
    char service[SN_NAME_MAX];
    char model[SN_NAME_MAX];
    char provider[SN_SHORT_MAX];
    char region[SN_SHORT_MAX];
    double rate; /* calls per second before seasonality and incidents */
    dist latency, ttft, input, output;
    bool has_ttft;
    double price_in, price_out; /* USD per token */
    double error_rate;
    size_t nfinish;
    char finish[SN_SCENARIO_FINISH_MAX][SN_SHORT_MAX];
    double finish_w[SN_SCENARIO_FINISH_MAX];
} stream;

typedef struct incident {
    sn_scenario_label label;
    size_t stream;      /* index of the affected stream */
    uint32_t max_calls; /* "calls": only the first this many calls in the window; 0 = all */
    size_t nfinish;
    char finish[SN_SCENARIO_FINISH_MAX][SN_SHORT_MAX];
    double finish_w[SN_SCENARIO_FINISH_MAX];
} incident;

struct sn_scenario {
    char name[SN_NAME_MAX];
    uint64_t seed;
    int64_t start_ns;
    int64_t duration_ns;
    double season_period; /* seconds; 0 = none */
    double season_rate;   /* amplitude of the call rate */
    double season_latency;
    size_t nstreams;
    stream streams[SN_SCENARIO_STREAMS_MAX];
    size_t nincidents;
    incident incidents[SN_SCENARIO_INCIDENTS_MAX];
    json_t *engine; /* owned reference or NULL */
};

typedef struct gen_stream {
    uint64_t rng;
    int64_t next_ns; /* time of the next accepted arrival; INT64_MAX when done */
    double lambda_max;
} gen_stream;

struct sn_scenario_gen {
    const sn_scenario *s;
    uint64_t events;
    gen_stream st[SN_SCENARIO_STREAMS_MAX];
    uint32_t hits[SN_SCENARIO_INCIDENTS_MAX]; /* calls each incident affected so far */
};

/* ---------------------------------------------------------------- parsing */

/* Formats "name: path: message" into err; returns -EINVAL. */
static int fail(char *err, size_t errlen, const char *name, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(char *err, size_t errlen, const char *name, const char *path, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s: %s: %s", name, path, msg);
    return -EINVAL;
}

/* Reads number `key` of obj into *out within [lo, hi]; absent keeps *out (the default) unless
 * required. Fails with -EINVAL naming path.key. */
static int get_num(const json_t *obj, const char *key, double *out, double lo, double hi,
                   bool required, const char *name, const char *path, char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (required)
            return fail(err, errlen, name, path, "%s: missing", key);
        return 0;
    }
    if (!json_is_number(v))
        return fail(err, errlen, name, path, "%s: must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return fail(err, errlen, name, path, "%s: must be in [%g, %g]", key, lo, hi);
    *out = x;
    return 0;
}

/* Copies string `key` of obj into buf (non-empty, fits); absent keeps buf unless required. */
static int get_str(const json_t *obj, const char *key, char *buf, size_t len, bool required,
                   const char *name, const char *path, char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (required)
            return fail(err, errlen, name, path, "%s: missing", key);
        return 0;
    }
    const char *t = json_string_value(v);
    if (t == NULL || t[0] == '\0')
        return fail(err, errlen, name, path, "%s: must be a non-empty string", key);
    size_t n = strlen(t);
    if (n >= len)
        return fail(err, errlen, name, path, "%s: longer than %zu bytes", key, len - 1);
    memcpy(buf, t, n + 1);
    return 0;
}

/* A distribution object {median, sigma, tail_prob, tail_alpha} under key. */
static int get_dist(const json_t *obj, const char *key, dist *d, bool required, bool *present,
                    const char *name, const char *path, char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    if (present != NULL)
        *present = v != NULL;
    if (v == NULL)
        return required ? fail(err, errlen, name, path, "%s: missing", key) : 0;
    char p[128];
    snprintf(p, sizeof p, "%s.%s", path, key);
    if (!json_is_object(v))
        return fail(err, errlen, name, p, "must be an object {median, sigma}");
    d->sigma = 0.0;
    d->tail_prob = 0.0;
    d->tail_alpha = 2.0;
    int rc = get_num(v, "median", &d->median, 1e-9, 1e9, true, name, p, err, errlen);
    if (rc == 0)
        rc = get_num(v, "sigma", &d->sigma, 0.0, 5.0, false, name, p, err, errlen);
    if (rc == 0)
        rc = get_num(v, "tail_prob", &d->tail_prob, 0.0, 1.0, false, name, p, err, errlen);
    if (rc == 0)
        rc = get_num(v, "tail_alpha", &d->tail_alpha, 0.5, 100.0, false, name, p, err, errlen);
    return rc;
}

/* A finish-reason mix {"stop": 0.9, "length": 0.1} under key; weights need not sum to 1. */
static int get_finish(const json_t *obj, const char *key, char names[][SN_SHORT_MAX], double *w,
                      size_t *n, const char *name, const char *path, char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_object(v) || json_object_size(v) == 0 ||
        json_object_size(v) > SN_SCENARIO_FINISH_MAX)
        return fail(err, errlen, name, path, "%s: must be an object of 1 to %d weights", key,
                    SN_SCENARIO_FINISH_MAX);
    const char *k;
    const json_t *x;
    size_t i = 0;
    double sum = 0.0;
    json_object_foreach((json_t *)v, k, x)
    {
        if (!json_is_number(x) || json_number_value(x) < 0.0)
            return fail(err, errlen, name, path, "%s.%s: must be a number >= 0", key, k);
        if (strlen(k) == 0 || strlen(k) >= SN_SHORT_MAX)
            return fail(err, errlen, name, path, "%s: bad finish reason name", key);
        memcpy(names[i], k, strlen(k) + 1);
        w[i] = json_number_value(x);
        sum += w[i];
        i++;
    }
    if (!(sum > 0.0))
        return fail(err, errlen, name, path, "%s: weights sum to 0", key);
    *n = i;
    return 0;
}

/* Parses models[j] of service svc (named svc_name) into the next stream. Returns 0 or -EINVAL
 * with err naming path; the stream count grows only on success. */
static int parse_model(sn_scenario *s, const json_t *svc, const char *svc_name, const json_t *m,
                       const char *path, const char *name, char *err, size_t errlen)
{
    if (!json_is_object(m))
        return fail(err, errlen, name, path, "must be an object");
    if (s->nstreams == SN_SCENARIO_STREAMS_MAX)
        return fail(err, errlen, name, path, "more than %d (service, model) streams",
                    SN_SCENARIO_STREAMS_MAX);
    stream *st = &s->streams[s->nstreams];
    memset(st, 0, sizeof *st);
    memcpy(st->service, svc_name, strlen(svc_name) + 1);
    memcpy(st->provider, "openai", 7);
    int rc = get_str(m, "model", st->model, sizeof st->model, true, name, path, err, errlen);
    if (rc == 0)
        rc = get_str(m, "provider", st->provider, sizeof st->provider, false, name, path, err,
                     errlen);
    if (rc == 0)
        rc = get_str(svc, "region", st->region, sizeof st->region, false, name, path, err, errlen);
    if (rc == 0)
        rc = get_num(m, "rate", &st->rate, 1e-6, MAX_RATE, true, name, path, err, errlen);
    if (rc == 0)
        rc = get_dist(m, "latency_ms", &st->latency, true, NULL, name, path, err, errlen);
    if (rc == 0)
        rc = get_dist(m, "ttft_ms", &st->ttft, false, &st->has_ttft, name, path, err, errlen);
    if (rc == 0)
        rc = get_dist(m, "input_tokens", &st->input, true, NULL, name, path, err, errlen);
    if (rc == 0)
        rc = get_dist(m, "output_tokens", &st->output, true, NULL, name, path, err, errlen);
    double pin = 2.5, pout = 10.0; /* USD per million tokens */
    const json_t *price = json_object_get(m, "price");
    if (rc == 0 && price != NULL) {
        char p[192];
        snprintf(p, sizeof p, "%s.price", path);
        rc = get_num(price, "input_per_mtok", &pin, 0.0, 1e4, true, name, p, err, errlen);
        if (rc == 0)
            rc = get_num(price, "output_per_mtok", &pout, 0.0, 1e4, true, name, p, err, errlen);
    }
    st->price_in = pin / 1e6;
    st->price_out = pout / 1e6;
    if (rc == 0)
        rc = get_num(m, "error_rate", &st->error_rate, 0.0, 1.0, false, name, path, err, errlen);
    if (rc == 0)
        rc = get_finish(m, "finish_reasons", st->finish, st->finish_w, &st->nfinish, name, path,
                        err, errlen);
    if (rc == 0 && st->nfinish == 0) {
        memcpy(st->finish[0], "stop", 5);
        st->finish_w[0] = 1.0;
        st->nfinish = 1;
    }
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < s->nstreams; i++)
        if (strcmp(s->streams[i].service, st->service) == 0 &&
            strcmp(s->streams[i].model, st->model) == 0)
            return fail(err, errlen, name, path, "model \"%s\" twice in service \"%s\"", st->model,
                        st->service);
    s->nstreams++;
    return 0;
}

/* Parses one incident into the next label; its (service, model) must already be a stream.
 * Returns 0 or -EINVAL with err naming path; the incident count grows only on success. */
static int parse_incident(sn_scenario *s, const json_t *o, const char *path, const char *name,
                          char *err, size_t errlen)
{
    if (!json_is_object(o))
        return fail(err, errlen, name, path, "must be an object");
    if (s->nincidents == SN_SCENARIO_INCIDENTS_MAX)
        return fail(err, errlen, name, path, "more than %d incidents", SN_SCENARIO_INCIDENTS_MAX);
    incident *in = &s->incidents[s->nincidents];
    memset(in, 0, sizeof *in);
    sn_scenario_label *l = &in->label;
    char type[64] = "";
    int rc = get_str(o, "id", l->id, sizeof l->id, true, name, path, err, errlen);
    if (rc == 0)
        rc = get_str(o, "type", type, sizeof type, true, name, path, err, errlen);
    if (rc == 0 && sn_anomaly_type_from_name(type, &l->type) != 0)
        return fail(err, errlen, name, path, "type: unknown anomaly type \"%s\"", type);
    if (rc == 0)
        switch (l->type) {
        case SN_ANOMALY_LATENCY_SPIKE:
        case SN_ANOMALY_LATENCY_DRIFT:
        case SN_ANOMALY_TOKEN_SPIKE:
        case SN_ANOMALY_COST_SPIKE:
        case SN_ANOMALY_COST_DRIFT:
        case SN_ANOMALY_ERROR_RATE:
        case SN_ANOMALY_THROUGHPUT_DROP:
        case SN_ANOMALY_TOKEN_DRIFT:
        case SN_ANOMALY_FINISH_REASON_DRIFT:
            break;
        default:
            return fail(err, errlen, name, path, "type: \"%s\" cannot be generated", type);
        }
    if (rc == 0)
        rc = get_str(o, "service", l->service, sizeof l->service, true, name, path, err, errlen);
    if (rc == 0)
        rc = get_str(o, "model", l->model, sizeof l->model, true, name, path, err, errlen);
    double start = 0, dur = 0;
    if (rc == 0)
        rc =
            get_num(o, "start_s", &start, 0.0, (double)MAX_DURATION, true, name, path, err, errlen);
    if (rc == 0)
        rc = get_num(o, "duration_s", &dur, 1.0, (double)MAX_DURATION, true, name, path, err,
                     errlen);
    l->magnitude = 1.0;
    if (rc == 0)
        rc = get_num(o, "magnitude", &l->magnitude, 0.0, 1e6,
                     l->type != SN_ANOMALY_FINISH_REASON_DRIFT, name, path, err, errlen);
    if (rc == 0 && l->type == SN_ANOMALY_ERROR_RATE && l->magnitude > 1.0)
        return fail(err, errlen, name, path, "magnitude: an error rate is in [0, 1]");
    l->shape = (l->type == SN_ANOMALY_COST_DRIFT || l->type == SN_ANOMALY_LATENCY_DRIFT)
                   ? SN_SHAPE_RAMP
                   : SN_SHAPE_STEP;
    const json_t *shape = json_object_get(o, "shape");
    if (rc == 0 && shape != NULL) {
        const char *t = json_string_value(shape);
        if (t != NULL && strcmp(t, "step") == 0)
            l->shape = SN_SHAPE_STEP;
        else if (t != NULL && strcmp(t, "ramp") == 0)
            l->shape = SN_SHAPE_RAMP;
        else
            return fail(err, errlen, name, path, "shape: must be \"step\" or \"ramp\"");
    }
    double calls = 0;
    if (rc == 0)
        rc = get_num(o, "calls", &calls, 1.0, 1e9, false, name, path, err, errlen);
    in->max_calls = (uint32_t)calls;
    if (rc == 0)
        rc = get_finish(o, "finish_reasons", in->finish, in->finish_w, &in->nfinish, name, path,
                        err, errlen);
    if (rc != 0)
        return rc;
    if (l->type == SN_ANOMALY_FINISH_REASON_DRIFT && in->nfinish == 0)
        return fail(err, errlen, name, path, "finish_reasons: required for finish_reason_drift");
    size_t i;
    for (i = 0; i < s->nstreams; i++)
        if (strcmp(s->streams[i].service, l->service) == 0 &&
            strcmp(s->streams[i].model, l->model) == 0)
            break;
    if (i == s->nstreams)
        return fail(err, errlen, name, path, "no model \"%s\" in service \"%s\"", l->model,
                    l->service);
    in->stream = i;
    l->start_ns = s->start_ns + (int64_t)(start * (double)NS);
    l->end_ns = l->start_ns + (int64_t)(dur * (double)NS);
    for (size_t j = 0; j < s->nincidents; j++)
        if (strcmp(s->incidents[j].label.id, l->id) == 0)
            return fail(err, errlen, name, path, "id: \"%s\" used twice", l->id);
    s->nincidents++;
    return 0;
}

int sn_scenario_parse(sn_scenario **out, const char *text, size_t len, const char *name, char *err,
                      size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s:%d: %s", name, jerr.line, jerr.text);
        return -EINVAL;
    }
    int rc = 0;
    sn_scenario *s = calloc(1, sizeof *s);
    if (s == NULL) {
        rc = -ENOMEM;
        goto out_free_root;
    }
    if (!json_is_object(root)) {
        rc = fail(err, errlen, name, "(top)", "must be an object");
        goto out_free_scenario;
    }
    const char *base = strrchr(name, '/');
    base = base != NULL ? base + 1 : name;
    snprintf(s->name, sizeof s->name, "%s", base);
    double seed = 1, start = (double)DEFAULT_START, dur = 0;
    rc = get_str(root, "name", s->name, sizeof s->name, false, name, "(top)", err, errlen);
    if (rc == 0)
        rc = get_num(root, "seed", &seed, 0.0, 9007199254740992.0, false, name, "(top)", err,
                     errlen);
    if (rc == 0)
        rc = get_num(root, "start_unix", &start, 0.0, 4e9, false, name, "(top)", err, errlen);
    if (rc == 0)
        rc = get_num(root, "duration_s", &dur, 1.0, (double)MAX_DURATION, true, name, "(top)", err,
                     errlen);
    if (rc != 0)
        goto out_free_scenario;
    s->seed = (uint64_t)seed;
    s->start_ns = (int64_t)start * NS;
    s->duration_ns = (int64_t)(dur * (double)NS);
    const json_t *season = json_object_get(root, "seasonality");
    if (season != NULL) {
        rc = get_num(season, "period_s", &s->season_period, 1.0, (double)MAX_DURATION, true, name,
                     "seasonality", err, errlen);
        if (rc == 0)
            rc = get_num(season, "rate_amplitude", &s->season_rate, 0.0, 1.0, false, name,
                         "seasonality", err, errlen);
        if (rc == 0)
            rc = get_num(season, "latency_amplitude", &s->season_latency, 0.0, 0.99, false, name,
                         "seasonality", err, errlen);
        if (rc != 0)
            goto out_free_scenario;
    }
    const json_t *svcs = json_object_get(root, "services");
    if (!json_is_array(svcs) || json_array_size(svcs) == 0) {
        rc = fail(err, errlen, name, "services", "must be a non-empty array");
        goto out_free_scenario;
    }
    size_t i, j;
    const json_t *svc, *m;
    json_array_foreach(svcs, i, svc)
    {
        char path[96], sname[SN_NAME_MAX] = "";
        snprintf(path, sizeof path, "services[%zu]", i);
        rc = get_str(svc, "name", sname, sizeof sname, true, name, path, err, errlen);
        if (rc != 0)
            goto out_free_scenario;
        const json_t *models = json_object_get(svc, "models");
        if (!json_is_array(models) || json_array_size(models) == 0) {
            rc = fail(err, errlen, name, path, "models: must be a non-empty array");
            goto out_free_scenario;
        }
        json_array_foreach(models, j, m)
        {
            char mpath[128];
            snprintf(mpath, sizeof mpath, "%s.models[%zu]", path, j);
            rc = parse_model(s, svc, sname, m, mpath, name, err, errlen);
            if (rc != 0)
                goto out_free_scenario;
        }
    }
    const json_t *incs = json_object_get(root, "incidents");
    if (incs != NULL && !json_is_array(incs)) {
        rc = fail(err, errlen, name, "incidents", "must be an array");
        goto out_free_scenario;
    }
    json_array_foreach(incs, i, m)
    {
        char path[64];
        snprintf(path, sizeof path, "incidents[%zu]", i);
        rc = parse_incident(s, m, path, name, err, errlen);
        if (rc != 0)
            goto out_free_scenario;
    }
    json_t *eng = json_object_get(root, "engine");
    if (eng != NULL) {
        if (!json_is_object(eng)) {
            rc = fail(err, errlen, name, "engine", "must be an object of settings");
            goto out_free_scenario;
        }
        s->engine = json_incref(eng);
    }
    json_decref(root);
    *out = s;
    return 0;

out_free_scenario:
    free(s);
out_free_root:
    json_decref(root);
    return rc;
}

int sn_scenario_load(sn_scenario **out, const char *path, char *err, size_t errlen)
{
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    char *buf = malloc(SN_SCENARIO_FILE_MAX + 1);
    if (buf == NULL) {
        rc = -ENOMEM;
        goto out_close_fd;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, SN_SCENARIO_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            snprintf(err, errlen, "%s: %s", path, strerror(-rc));
            goto out_free_buf;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > SN_SCENARIO_FILE_MAX) {
            rc = -EFBIG;
            snprintf(err, errlen, "%s: larger than %d bytes", path, SN_SCENARIO_FILE_MAX);
            goto out_free_buf;
        }
    }
    rc = sn_scenario_parse(out, buf, n, path, err, errlen);
out_free_buf:
    free(buf);
out_close_fd:
    close(fd);
    return rc;
}

/* Accessors: documented in scenario.h. */
void sn_scenario_destroy(sn_scenario *s)
{
    if (s == NULL)
        return;
    json_decref(s->engine);
    free(s);
}

const char *sn_scenario_name(const sn_scenario *s)
{
    return s->name;
}
int64_t sn_scenario_start(const sn_scenario *s)
{
    return s->start_ns;
}
int64_t sn_scenario_duration(const sn_scenario *s)
{
    return s->duration_ns;
}
size_t sn_scenario_label_count(const sn_scenario *s)
{
    return s->nincidents;
}
const sn_scenario_label *sn_scenario_label_at(const sn_scenario *s, size_t i)
{
    return &s->incidents[i].label;
}
size_t sn_scenario_stream_count(const sn_scenario *s)
{
    return s->nstreams;
}
void sn_scenario_stream_names(const sn_scenario *s, size_t i, const char **service,
                              const char **model)
{
    *service = s->streams[i].service;
    *model = s->streams[i].model;
}
const void *sn_scenario_engine_settings(const sn_scenario *s)
{
    return s->engine;
}

/* Formats unix nanoseconds as RFC 3339 with milliseconds into buf (>= 32 bytes). */
static void rfc3339(int64_t ns, char *buf, size_t len)
{
    time_t sec = (time_t)(ns / NS);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", day, (int)((ns % NS) / 1000000));
}

int sn_scenario_label_json(const sn_scenario *s, const sn_scenario_label *l, int64_t offset_ns,
                           double compress, char *buf, size_t len)
{
    if (!(compress > 0.0))
        compress = 1.0;
    int64_t a = s->start_ns + offset_ns + (int64_t)((double)(l->start_ns - s->start_ns) / compress);
    int64_t b = s->start_ns + offset_ns + (int64_t)((double)(l->end_ns - s->start_ns) / compress);
    char ta[40], tb[40];
    rfc3339(a, ta, sizeof ta);
    rfc3339(b, tb, sizeof tb);
    /* Names come from the scenario file, which jansson has validated as UTF-8; escape anyway. */
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:f, s:s, s:s}", "id", l->id,
                          "type", sn_anomaly_type_name(l->type), "service", l->service, "model",
                          l->model, "start", ta, "end", tb, "start_unix_nano", (json_int_t)a,
                          "end_unix_nano", (json_int_t)b, "magnitude", l->magnitude, "shape",
                          l->shape == SN_SHAPE_RAMP ? "ramp" : "step", "scenario", s->name);
    if (o == NULL)
        return -ENOMEM;
    size_t need = json_dumpb(o, buf, len > 0 ? len - 1 : 0, JSON_COMPACT);
    json_decref(o);
    if (need == 0 || need >= len) {
        if (len > 0)
            buf[0] = '\0';
        return -ENOSPC;
    }
    buf[need] = '\0';
    return (int)need;
}

/* ---------------------------------------------------------------- generation */

/* splitmix64. */
static uint64_t rng_next(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1). */
static double unit(uint64_t *x)
{
    return ((double)(rng_next(x) >> 11) + 0.5) / 9007199254740992.0;
}

/* Standard normal (Box-Muller). */
static double normal(uint64_t *x)
{
    return sqrt(-2.0 * log(unit(x))) * cos(TWO_PI * unit(x));
}

/* One draw of distribution d with its median scaled by `scale` (an incident or season). */
static double sample(uint64_t *x, const dist *d, double scale)
{
    double v = d->median * scale * exp(d->sigma * normal(x));
    if (d->tail_prob > 0.0 && unit(x) < d->tail_prob)
        v *= pow(unit(x), -1.0 / d->tail_alpha);
    return v;
}

/* The incident's effect now: 0 (none) .. 1 (full), following its shape; -1 when inactive. */
static double progress(const incident *in, int64_t t)
{
    const sn_scenario_label *l = &in->label;
    if (t < l->start_ns || t >= l->end_ns)
        return -1.0;
    if (l->shape == SN_SHAPE_STEP)
        return 1.0;
    return (double)(t - l->start_ns) / (double)(l->end_ns - l->start_ns);
}

/* A multiplicative effect of strength p towards magnitude m. */
static double factor(double m, double p)
{
    return 1.0 + (m - 1.0) * p;
}

/* Call rate of stream i at t: seasonality and throughput incidents applied. */
static double rate_at(const sn_scenario *s, size_t i, int64_t t)
{
    double r = s->streams[i].rate;
    if (s->season_period > 0.0) {
        double x = (double)(t - s->start_ns) / (double)NS / s->season_period;
        r *= 1.0 + s->season_rate * sin(TWO_PI * x);
    }
    for (size_t k = 0; k < s->nincidents; k++) {
        const incident *in = &s->incidents[k];
        double p;
        if (in->stream == i && in->label.type == SN_ANOMALY_THROUGHPUT_DROP &&
            (p = progress(in, t)) >= 0.0)
            r *= factor(in->label.magnitude, p);
    }
    return r;
}

/* The highest rate stream i can reach: the bound for thinning. */
static double rate_max(const sn_scenario *s, size_t i)
{
    double r = s->streams[i].rate * (1.0 + s->season_rate);
    double boost = 1.0;
    for (size_t k = 0; k < s->nincidents; k++) {
        const incident *in = &s->incidents[k];
        if (in->stream == i && in->label.type == SN_ANOMALY_THROUGHPUT_DROP &&
            in->label.magnitude > boost)
            boost = in->label.magnitude;
    }
    return r * boost;
}

/* Draws stream i's next accepted arrival after its current one. */
static void advance(sn_scenario_gen *g, size_t i)
{
    const sn_scenario *s = g->s;
    gen_stream *gs = &g->st[i];
    int64_t end = s->start_ns + s->duration_ns;
    int64_t t = gs->next_ns;
    for (;;) {
        double gap = -log(unit(&gs->rng)) / gs->lambda_max;
        t += (int64_t)(gap * (double)NS) + 1;
        if (t >= end) {
            gs->next_ns = INT64_MAX;
            return;
        }
        if (unit(&gs->rng) * gs->lambda_max <= rate_at(s, i, t)) {
            gs->next_ns = t;
            return;
        }
    }
}

int sn_scenario_gen_create(sn_scenario_gen **out, const sn_scenario *s)
{
    sn_scenario_gen *g = calloc(1, sizeof *g);
    if (g == NULL)
        return -ENOMEM;
    g->s = s;
    for (size_t i = 0; i < s->nstreams; i++) {
        uint64_t x = s->seed * 0x100000001b3ull + i;
        g->st[i].rng = rng_next(&x);
        g->st[i].lambda_max = rate_max(s, i);
        g->st[i].next_ns = s->start_ns;
        advance(g, i);
    }
    *out = g;
    return 0;
}

void sn_scenario_gen_destroy(sn_scenario_gen *g)
{
    free(g);
}

uint64_t sn_scenario_gen_events(const sn_scenario_gen *g)
{
    return g->events;
}

/* Draws an index in [0, n) with the given weights (n >= 1, weights sum > 0). */
static size_t pick(uint64_t *x, const double *w, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += w[i];
    double u = unit(x) * sum;
    for (size_t i = 0; i < n; i++) {
        if (u < w[i])
            return i;
        u -= w[i];
    }
    return n - 1;
}

/* A sampled token count as an integer in [1, 10^9]. */
static int64_t tokens(double v)
{
    if (v < 1.0)
        return 1;
    if (v > 1e9)
        return INT64_C(1000000000);
    return (int64_t)llround(v);
}

bool sn_scenario_next(sn_scenario_gen *g, sn_event *ev, uint64_t *active)
{
    const sn_scenario *s = g->s;
    size_t best = SIZE_MAX;
    int64_t bt = INT64_MAX;
    for (size_t i = 0; i < s->nstreams; i++)
        if (g->st[i].next_ns < bt) {
            bt = g->st[i].next_ns;
            best = i;
        }
    if (best == SIZE_MAX)
        return false;
    const stream *st = &s->streams[best];
    uint64_t *x = &g->st[best].rng;
    double lat = 1.0, tok_in = 1.0, tok_out = 1.0, price = 1.0, err = st->error_rate;
    const incident *finish = NULL;
    uint64_t mask = 0;
    if (s->season_period > 0.0) {
        double ph = (double)(bt - s->start_ns) / (double)NS / s->season_period;
        lat *= 1.0 + s->season_latency * sin(TWO_PI * ph);
    }
    for (size_t k = 0; k < s->nincidents; k++) {
        const incident *in = &s->incidents[k];
        double p;
        if (in->stream != best || (p = progress(in, bt)) < 0.0)
            continue;
        if (in->max_calls > 0 && g->hits[k] >= in->max_calls)
            continue;
        g->hits[k]++;
        mask |= UINT64_C(1) << k;
        double f = factor(in->label.magnitude, p);
        switch (in->label.type) {
        case SN_ANOMALY_LATENCY_SPIKE:
        case SN_ANOMALY_LATENCY_DRIFT:
            lat *= f;
            break;
        case SN_ANOMALY_TOKEN_SPIKE:
            tok_in *= f;
            tok_out *= f;
            break;
        case SN_ANOMALY_COST_SPIKE:
        case SN_ANOMALY_COST_DRIFT:
            price *= f;
            break;
        case SN_ANOMALY_ERROR_RATE:
            err = st->error_rate + (in->label.magnitude - st->error_rate) * p;
            break;
        case SN_ANOMALY_TOKEN_DRIFT:
            tok_in *= f;
            break;
        case SN_ANOMALY_FINISH_REASON_DRIFT:
            finish = in;
            break;
        default:
            break;
        }
    }
    sn_event_init(ev);
    ev->end_unix_nano = bt;
    memcpy(ev->service, st->service, sizeof ev->service);
    memcpy(ev->model, st->model, sizeof ev->model);
    memcpy(ev->provider, st->provider, sizeof ev->provider);
    memcpy(ev->region, st->region, sizeof ev->region);
    memcpy(ev->operation, "chat", 5);
    uint64_t id = ++g->events;
    uint64_t hi = s->seed ^ 0x5c3a9e1f00000000ull, lo = id;
    for (int b = 0; b < 8; b++) {
        ev->trace_id[b] = (uint8_t)(hi >> (56 - 8 * b));
        ev->trace_id[8 + b] = (uint8_t)(lo >> (56 - 8 * b));
        ev->span_id[b] = (uint8_t)(lo >> (56 - 8 * b));
    }
    ev->span_id[0] |= 0x80; /* never all zero */
    ev->latency_ms = sample(x, &st->latency, lat);
    if (st->has_ttft)
        ev->ttft_ms = fmin(sample(x, &st->ttft, lat), ev->latency_ms);
    ev->start_unix_nano = bt - (int64_t)(ev->latency_ms * 1e6);
    ev->input_tokens = tokens(sample(x, &st->input, tok_in));
    ev->is_error = unit(x) < err;
    ev->conventions = SN_CONV_GENAI;
    if (ev->is_error) {
        /* A failed call reports no usage: its token and cost facts stay unknown. */
        ev->input_tokens = SN_UNKNOWN_COUNT;
        memcpy(ev->error_type, "server_error", 13);
    } else {
        ev->output_tokens = tokens(sample(x, &st->output, tok_out));
        const char(*names)[SN_SHORT_MAX] = finish != NULL ? finish->finish : st->finish;
        size_t fi = finish != NULL ? pick(x, finish->finish_w, finish->nfinish)
                                   : pick(x, st->finish_w, st->nfinish);
        memcpy(ev->finish_reason, names[fi], sizeof ev->finish_reason);
        ev->total_tokens = ev->input_tokens + ev->output_tokens;
        ev->cost_usd = price * ((double)ev->input_tokens * st->price_in +
                                (double)ev->output_tokens * st->price_out);
        ev->cost_source = SN_COST_PRICE_TABLE;
    }
    advance(g, best);
    if (active != NULL)
        *active = mask;
    return true;
}
