/*
 * libFuzzer target for the streaming OTLP trace decoder (shared/otlp/traces.c).
 *
 * Every input must decode to 0 or -1 without a sanitizer finding; a -1 must come with a message.
 * Events handed to the callback are checked for the invariants the rest of LLM-Sentinel relies on.
 */
#include "otlp/traces.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts (a finding) when an event breaks an invariant of event.h. */
static void check_event(const sn_event *ev, void *ud)
{
    size_t *n = ud;
    (*n)++;
    if (memchr(ev->service, '\0', sizeof(ev->service)) == NULL ||
        memchr(ev->model, '\0', sizeof(ev->model)) == NULL ||
        memchr(ev->finish_reason, '\0', sizeof(ev->finish_reason)) == NULL)
        abort();
    if (ev->end_unix_nano < ev->start_unix_nano)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sn_otlp_trace_stats st;
    char err[SN_OTLP_ERR_MAX];
    size_t n = 0;
    err[0] = '\0';
    int rc = sn_otlp_decode_traces(data, size, NULL, check_event, &n, &st, err, sizeof(err));
    if (rc != 0 && (rc != -1 || err[0] == '\0'))
        abort();
    if (n != st.llm_events)
        abort();
    return 0;
}
