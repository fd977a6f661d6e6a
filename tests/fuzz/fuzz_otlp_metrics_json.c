/*
 * libFuzzer target for the OTLP/JSON metrics decoder (shared/otlp/metrics_json.c).
 *
 * The same checks as fuzz_otlp_metrics.c, and the JSON
 * decoder's promise that a -1 comes before any callback.
 */
#include "fuzz_metrics.h"
#include "otlp/metrics_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sn_otlp_metric_stats st;
    char err[SN_OTLP_ERR_MAX];
    size_t n = 0;
    err[0] = '\0';
    int rc = sn_otlp_decode_metrics_json(data, size, sn_fuzz_check_fact, &n, &st, err, sizeof err);
    if (rc == -1) {
        sn_fuzz_check_err(err, sizeof err);
        if (n != 0)
            abort();
        return 0;
    }
    if (rc != 0 || n != st.facts)
        abort();
    uint64_t by = 0;
    for (int i = 0; i < SN_METRIC_REJECT_COUNT; i++)
        by += st.rejected_by[i];
    if (by != st.rejected)
        abort();
    return 0;
}
