/*
 * event.c -- the LLM event value type and its metric accessors.
 */
#include "event.h"

#include <math.h>
#include <string.h>

static const char *const metric_names[SN_METRIC_COUNT] = {
    [SN_METRIC_LATENCY_MS] = "latency_ms",
    [SN_METRIC_TTFT_MS] = "ttft_ms",
    [SN_METRIC_INPUT_TOKENS] = "input_tokens",
    [SN_METRIC_OUTPUT_TOKENS] = "output_tokens",
    [SN_METRIC_TOTAL_TOKENS] = "total_tokens",
    [SN_METRIC_COST_USD] = "cost_usd",
    [SN_METRIC_ERROR_RATE] = "error_rate",
    [SN_METRIC_TOKENS_PER_SECOND] = "tokens_per_second",
};

void sn_event_init(sn_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->latency_ms = NAN;
    ev->ttft_ms = NAN;
    ev->input_tokens = SN_UNKNOWN_COUNT;
    ev->output_tokens = SN_UNKNOWN_COUNT;
    ev->total_tokens = SN_UNKNOWN_COUNT;
    ev->cache_read_tokens = SN_UNKNOWN_COUNT;
    ev->cache_write_tokens = SN_UNKNOWN_COUNT;
    ev->reasoning_tokens = SN_UNKNOWN_COUNT;
    ev->cost_usd = NAN;
    ev->cost_source = SN_COST_UNKNOWN;
    ev->fact_ranks = 0;
}

static bool count_metric(int64_t v, double *out)
{
    if (v < 0)
        return false;
    *out = (double)v;
    return true;
}

static bool real_metric(double v, double *out)
{
    if (!isfinite(v))
        return false;
    *out = v;
    return true;
}

bool sn_event_metric(const sn_event *ev, sn_metric m, double *out)
{
    switch (m) {
    case SN_METRIC_LATENCY_MS:
        return real_metric(ev->latency_ms, out);
    case SN_METRIC_TTFT_MS:
        return real_metric(ev->ttft_ms, out);
    case SN_METRIC_INPUT_TOKENS:
        return count_metric(ev->input_tokens, out);
    case SN_METRIC_OUTPUT_TOKENS:
        return count_metric(ev->output_tokens, out);
    case SN_METRIC_TOTAL_TOKENS:
        return count_metric(ev->total_tokens, out);
    case SN_METRIC_COST_USD:
        return ev->cost_source != SN_COST_UNKNOWN && real_metric(ev->cost_usd, out);
    case SN_METRIC_ERROR_RATE:
        *out = ev->is_error ? 1.0 : 0.0;
        return true;
    case SN_METRIC_TOKENS_PER_SECOND:
        if (ev->output_tokens < 0 || !isfinite(ev->latency_ms) || ev->latency_ms <= 0.0)
            return false;
        *out = (double)ev->output_tokens * 1000.0 / ev->latency_ms;
        return true;
    case SN_METRIC_COUNT:
        break;
    }
    return false;
}

unsigned sn_event_metrics(const sn_event *ev, double out[SN_METRIC_COUNT])
{
    unsigned have = 0;
    have |= (unsigned)real_metric(ev->latency_ms, &out[SN_METRIC_LATENCY_MS])
            << SN_METRIC_LATENCY_MS;
    have |= (unsigned)real_metric(ev->ttft_ms, &out[SN_METRIC_TTFT_MS]) << SN_METRIC_TTFT_MS;
    have |= (unsigned)count_metric(ev->input_tokens, &out[SN_METRIC_INPUT_TOKENS])
            << SN_METRIC_INPUT_TOKENS;
    have |= (unsigned)count_metric(ev->output_tokens, &out[SN_METRIC_OUTPUT_TOKENS])
            << SN_METRIC_OUTPUT_TOKENS;
    have |= (unsigned)count_metric(ev->total_tokens, &out[SN_METRIC_TOTAL_TOKENS])
            << SN_METRIC_TOTAL_TOKENS;
    if (ev->cost_source != SN_COST_UNKNOWN)
        have |= (unsigned)real_metric(ev->cost_usd, &out[SN_METRIC_COST_USD]) << SN_METRIC_COST_USD;
    out[SN_METRIC_ERROR_RATE] = ev->is_error ? 1.0 : 0.0;
    have |= 1u << SN_METRIC_ERROR_RATE;
    if (ev->output_tokens >= 0 && isfinite(ev->latency_ms) && ev->latency_ms > 0.0) {
        out[SN_METRIC_TOKENS_PER_SECOND] = (double)ev->output_tokens * 1000.0 / ev->latency_ms;
        have |= 1u << SN_METRIC_TOKENS_PER_SECOND;
    }
    return have;
}

const char *sn_metric_name(sn_metric m)
{
    if ((int)m < 0 || m >= SN_METRIC_COUNT)
        return "unknown";
    return metric_names[m];
}

int sn_metric_from_name(const char *name, sn_metric *out)
{
    for (int i = 0; i < SN_METRIC_COUNT; i++) {
        if (strcmp(name, metric_names[i]) == 0) {
            *out = (sn_metric)i;
            return 0;
        }
    }
    return -1;
}

bool sn_copy_truncated(char *dst, size_t dstsize, const char *src, size_t len)
{
    if (dstsize == 0)
        return len == 0;
    size_t n = len;
    bool whole = true;
    if (n > dstsize - 1) {
        n = dstsize - 1;
        whole = false;
        /* Step back over continuation bytes so a multi-byte sequence is not split. */
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
    return whole;
}
