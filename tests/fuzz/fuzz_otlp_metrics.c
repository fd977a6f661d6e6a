/*
 * libFuzzer target for the streaming OTLP metrics protobuf decoder (shared/otlp/metrics.c).
 *
 * Every input must decode to 0 or to -1 with a one-line message, without a sanitizer finding.
 * Facts handed out keep the decoder's promises (metrics.h): strings terminated, temporality
 * DELTA or CUMULATIVE, a known fact metric, sums and bounds NAN or finite and >= 0, an interval
 * that does not end before it starts; their number matches the stats.
 */
#include "fuzz_metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sn_otlp_metric_stats st;
    char err[SN_OTLP_ERR_MAX];
    size_t n = 0;
    err[0] = '\0';
    int rc = sn_otlp_decode_metrics(data, size, sn_fuzz_check_fact, &n, &st, err, sizeof err);
    if (rc == -1)
        sn_fuzz_check_err(err, sizeof err);
    else if (rc != 0)
        abort();
    if (n != st.facts)
        abort();
    uint64_t by = 0;
    for (int i = 0; i < SN_METRIC_REJECT_COUNT; i++)
        by += st.rejected_by[i];
    if (by != st.rejected)
        abort();
    return 0;
}
