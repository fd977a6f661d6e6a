/*
 * libFuzzer target for the streaming OTLP trace decoder (shared/otlp/traces.c), differential:
 * every input is also decoded by the nanopb decoder it replaced (tests/tools/otlp_ref_nanopb.c),
 * and the two must agree on everything -- the result, every count, every event (in order) and
 * the error message. Events are also checked for the invariants the rest of LLM-Sentinel relies
 * on; a -1 must come with a message.
 */
#include "otlp/traces.h"
#include "otlp_ref.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define EV_MAX 64

typedef struct record {
    size_t n;    /* events seen */
    size_t kept; /* of them kept for the comparison */
    sn_event ev[EV_MAX];
} record;

/* Aborts (a finding) when an event breaks an invariant of event.h; keeps the first EV_MAX. */
static void check_event(const sn_event *ev, void *ud)
{
    record *r = ud;
    r->n++;
    if (memchr(ev->service, '\0', sizeof(ev->service)) == NULL ||
        memchr(ev->model, '\0', sizeof(ev->model)) == NULL ||
        memchr(ev->finish_reason, '\0', sizeof(ev->finish_reason)) == NULL)
        abort();
    if (ev->end_unix_nano < ev->start_unix_nano)
        abort();
    if (r->kept < EV_MAX)
        r->ev[r->kept++] = *ev;
}

static void differ(const char *what, const char *detail)
{
    fprintf(stderr, "hand reader and nanopb reference differ: %s %s\n", what, detail);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static record hand, ref; /* large: not on the stack */
    /* Both decoders price the spans with the built-in table (the sidecar's default), so the
     * hand decoder's per-request memo of provider names is compared with plain normalisation. */
    static sn_price_table *prices;
    if (!prices && !(prices = sn_price_table_default(NULL, 0)))
        abort();
    sn_otlp_trace_stats st, ref_st;
    char err[SN_OTLP_ERR_MAX], ref_err[SN_OTLP_ERR_MAX];
    const char *field = "";
    hand.n = hand.kept = ref.n = ref.kept = 0;
    err[0] = ref_err[0] = '\0';
    int rc = sn_otlp_decode_traces(data, size, prices, check_event, &hand, &st, err, sizeof(err));
    if (rc != 0 && (rc != -1 || err[0] == '\0'))
        abort();
    if (hand.n != st.llm_events)
        abort();

    int ref_rc = sn_ref_decode_traces_nanopb(data, size, prices, check_event, &ref, &ref_st, ref_err,
                                             sizeof(ref_err));
    if (rc != ref_rc)
        differ("result:", rc == 0 ? ref_err : err);
    if (strcmp(err, ref_err) != 0)
        differ(err, ref_err);
    if (!sn_ref_stats_equal(&st, &ref_st, &field))
        differ("count", field);
    if (hand.n != ref.n)
        differ("event count", "");
    for (size_t i = 0; i < hand.kept; i++)
        if (!sn_ref_event_equal(&hand.ev[i], &ref.ev[i], &field))
            differ("event field", field);
    return 0;
}
