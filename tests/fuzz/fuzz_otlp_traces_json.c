/*
 * libFuzzer target for the OTLP/JSON trace decoder (shared/otlp/traces_json.c).
 *
 * Every input must decode to 0 or to -1 with a one-line message, without a sanitizer finding,
 * and a -1 must come before any callback (the decoder checks the structure first). Events
 * handed out keep the invariants of event.h; their number matches the stats.
 */
#include "fuzz_common.h"
#include "otlp/traces_json.h"

typedef struct seen {
    size_t events;
} seen;

/* Checks one event and counts it. */
static void on_event(const sn_event *ev, void *ud)
{
    seen *s = ud;
    s->events++;
    sn_fuzz_check_event(ev);
    if (ev->end_unix_nano < ev->start_unix_nano)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sn_otlp_trace_stats st;
    char err[SN_OTLP_ERR_MAX];
    seen s = {0};
    err[0] = '\0';
    int rc = sn_otlp_decode_traces_json(data, size, NULL, on_event, &s, &st, err, sizeof err);
    if (rc == -1) {
        sn_fuzz_check_err(err, sizeof err);
        if (s.events != 0)
            abort();
        return 0;
    }
    if (rc != 0 || s.events != st.llm_events)
        abort();
    return 0;
}
