/*
 * libFuzzer target for the OTLP logs decoders (shared/otlp/logs.c, logs_json.c): protobuf, or
 * JSON when built with SN_FUZZ_LOGS_JSON (target fuzz_otlp_logs_json).
 *
 * Every input must decode to 0 or to -1 with a one-line message, without a sanitizer finding;
 * GenAI events are a subset of the records counted.
 */
#include "fuzz_common.h"
#include "otlp/logs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sn_otlp_log_stats st;
    char err[SN_OTLP_ERR_MAX];
    err[0] = '\0';
#ifdef SN_FUZZ_LOGS_JSON
    int rc = sn_otlp_decode_logs_json(data, size, &st, err, sizeof err);
#else
    int rc = sn_otlp_decode_logs(data, size, &st, err, sizeof err);
#endif
    if (rc == -1)
        sn_fuzz_check_err(err, sizeof err);
    else if (rc != 0)
        abort();
    if (st.genai_events > st.log_records)
        abort();
    return 0;
}
