/*
 * local_stream.c -- the seeded event stream of local_stream.h.
 */
#include "local_stream.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const services[] = {"chatbot", "search-assistant", "summariser",
                                       "support-agent-backend"};

/* Medians like tests/load's models: latency ms, input and output tokens, USD per token in/out. */
static const struct {
    const char *name;
    double latency, input, output, price_in, price_out;
} models[] = {
    {"gpt-4o-2024-08-06", 1800, 900, 250, 2.5e-6, 10e-6},
    {"gpt-4o-mini-2024-07-18", 900, 700, 180, 0.15e-6, 0.6e-6},
    {"claude-sonnet-4-20250514", 2400, 1200, 320, 3e-6, 15e-6},
    {"gemini-2.0-flash-001", 700, 800, 200, 0.1e-6, 0.4e-6},
    {"meta.llama3-1-70b-instruct-v1:0", 1500, 600, 220, 0.72e-6, 0.72e-6},
};

#define NSERVICES (sizeof services / sizeof services[0])
#define NMODELS   (sizeof models / sizeof models[0])

static uint64_t next_u64(local_stream *s)
{
    /* xorshift64* */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 0x2545f4914f6cdd1dull;
}

static double unit(local_stream *s)
{
    return ((double)(next_u64(s) >> 11) + 0.5) / 9007199254740992.0;
}

static double lognormal(local_stream *s, double median, double sigma)
{
    double n = sqrt(-2.0 * log(unit(s))) * cos(6.283185307179586 * unit(s));
    return median * exp(sigma * n);
}

void local_stream_init(local_stream *s, uint64_t seed)
{
    memset(s, 0, sizeof(*s));
    s->rng = seed * 0x9e3779b97f4a7c15ull + 1;
    s->services = 4;
    s->models = 5;
    s->spike_rate = 0.005;
    s->error_rate = 0.02;
    s->t = INT64_C(1700000000000000000);
}

void local_stream_next(local_stream *s, sn_event *ev)
{
    sn_event_init(ev);
    unsigned nm = s->models >= 1 && s->models <= NMODELS ? s->models : NMODELS;
    unsigned ns = s->services >= 1 ? s->services : 1;
    unsigned svc = (unsigned)(next_u64(s) % ns), mi = (unsigned)(next_u64(s) % nm);
    if (svc < NSERVICES)
        snprintf(ev->service, sizeof ev->service, "%s", services[svc]);
    else
        snprintf(ev->service, sizeof ev->service, "service-%u", svc);
    snprintf(ev->model, sizeof ev->model, "%s", models[mi].name);
    snprintf(ev->region, sizeof ev->region, "us-east-1");
    s->t += (int64_t)(next_u64(s) % 2000000);
    ev->end_unix_nano = s->t;
    ev->latency_ms = lognormal(s, models[mi].latency, 0.35);
    if (unit(s) < 0.9)
        ev->ttft_ms = ev->latency_ms * (0.2 + 0.1 * unit(s));
    ev->input_tokens = (int64_t)lognormal(s, models[mi].input, 0.5) + 1;
    ev->output_tokens = (int64_t)lognormal(s, models[mi].output, 0.4) + 1;
    ev->total_tokens = ev->input_tokens + ev->output_tokens;
    ev->is_error = unit(s) < s->error_rate;

    double u = unit(s);
    if (u < s->spike_rate) {
        switch ((int)(u / s->spike_rate * 5.0)) {
        case 0:
            ev->latency_ms *= 8.0 + 4.0 * unit(s); /* and tokens per second drops */
            break;
        case 1:
            ev->ttft_ms = ev->latency_ms * 0.95;
            break;
        case 2:
            ev->output_tokens *= 12;
            ev->total_tokens = ev->input_tokens + ev->output_tokens;
            break;
        case 3:
            ev->input_tokens *= 30;
            ev->total_tokens = ev->input_tokens + ev->output_tokens;
            break;
        default:
            ev->latency_ms = 1.0 + unit(s); /* a cached answer: tokens per second soars */
            break;
        }
    }
    if (unit(s) < 0.95) {
        ev->cost_usd = (double)ev->input_tokens * models[mi].price_in +
                       (double)ev->output_tokens * models[mi].price_out;
        ev->cost_source = SN_COST_PRICE_TABLE;
    }
    if (unit(s) < 0.001)
        ev->service[0] = '\0'; /* no service: static levels only */
}

static uint64_t fold(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t fold_double(uint64_t h, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return fold(h, &bits, sizeof bits);
}

uint64_t local_stream_digest(uint64_t h, size_t n, const sn_local_alert *a, size_t max)
{
    uint64_t count = n;
    h = fold(h, &count, sizeof count);
    for (size_t i = 0; i < n && i < max; i++) {
        int32_t ints[4] = {(int32_t)a[i].metric, (int32_t)a[i].anomaly_type, (int32_t)a[i].detector,
                           (int32_t)a[i].severity};
        h = fold(h, ints, sizeof ints);
        h = fold(h, &a[i].time_unix_nano, sizeof a[i].time_unix_nano);
        h = fold(h, a[i].service, strlen(a[i].service) + 1);
        h = fold(h, a[i].model, strlen(a[i].model) + 1);
        h = fold(h, a[i].region, strlen(a[i].region) + 1);
        h = fold_double(h, a[i].value);
        h = fold_double(h, a[i].baseline);
        h = fold_double(h, a[i].threshold);
        h = fold_double(h, a[i].deviation);
        h = fold_double(h, a[i].confidence);
        h = fold(h, a[i].trace_id, sizeof a[i].trace_id);
    }
    return h;
}
