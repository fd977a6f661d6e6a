/*
 * libFuzzer target for the cumulative-to-delta table (shared/otlp/metrics_delta.c), fed with
 * the facts the protobuf metrics decoder makes of the input -- the way the sidecar uses it.
 *
 * The request is applied twice to a small table (8 series, so -ENOSPC is reached): the second
 * pass repeats every point. Each answer must be one of the documented results; an emitted point
 * must be a usable delta (count not above the cumulative one, times in order); the table never
 * tracks more series than its limit, and expire() accounts for every series it forgets.
 */
#include "fuzz_metrics.h"
#include "otlp/metrics_delta.h"

#include <errno.h>

#define FUZZ_MAX_SERIES 8

typedef struct apply_ctx {
    sn_metric_delta *t;
    size_t facts;
} apply_ctx;

/* Applies one decoded fact and checks the answer. */
static void apply_fact(const sn_metric_fact *f, void *ud)
{
    apply_ctx *c = ud;
    sn_fuzz_check_fact(f, &c->facts);
    sn_metric_fact out;
    int rc = sn_metric_delta_apply(c->t, f, &out);
    switch (rc) {
    case SN_METRIC_DELTA_EMIT:
        if (out.temporality != SN_METRIC_TEMPORALITY_DELTA || out.count > f->count ||
            out.series_id != f->series_id || out.metric != f->metric)
            abort();
        if (out.start_unix_nano != 0 && out.end_unix_nano < out.start_unix_nano)
            abort();
        if (!isnan(out.sum) && !isfinite(out.sum))
            abort();
        break;
    case SN_METRIC_DELTA_BASELINE:
    case SN_METRIC_DELTA_UNCHANGED:
    case SN_METRIC_DELTA_OUT_OF_ORDER:
        if (f->temporality != SN_METRIC_TEMPORALITY_CUMULATIVE)
            abort();
        break;
    case -ENOSPC:
        break;
    default:
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apply_ctx c = {NULL, 0};
    /* The first byte picks the "since" time: every first point emitted in full, or none. */
    int64_t since = size > 0 && (data[0] & 1) ? INT64_MAX : 0;
    if (sn_metric_delta_create(FUZZ_MAX_SERIES, since, &c.t) != 0)
        abort();
    char err[SN_OTLP_ERR_MAX];
    for (int pass = 0; pass < 2; pass++) {
        /* Streaming: facts before a malformed part are applied too, as in the sidecar. */
        (void)sn_otlp_decode_metrics(data, size, apply_fact, &c, NULL, err, sizeof err);
        sn_metric_delta_stats st;
        sn_metric_delta_get_stats(c.t, &st);
        if (st.series > FUZZ_MAX_SERIES)
            abort();
    }
    /* Expiry forgets series idle before the time given (a point at INT64_MAX is not). */
    sn_metric_delta_stats st;
    sn_metric_delta_get_stats(c.t, &st);
    uint64_t before = st.series;
    size_t gone = sn_metric_delta_expire(c.t, INT64_MAX);
    sn_metric_delta_get_stats(c.t, &st);
    if (gone + st.series != before)
        abort();
    sn_metric_delta_destroy(c.t);
    return 0;
}
