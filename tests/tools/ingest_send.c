/*
 * ingest_send.c -- sends one sentinel.v1 Ingest batch with one LLM event to an aggregator and
 * prints the answer's status (OK, DUPLICATE, RETRY_AFTER, ...) and acknowledged sequence, for
 * shell integration tests (tests/integration/aggregator/restart.sh).
 *
 * Usage: ingest_send HOST:PORT SIDECAR_ID SEQUENCE SERVICE MODEL LATENCY_MS [COST_USD]
 * With INGEST_SEND_ALERT_ID=<uuid> in the environment the batch also carries one local alert
 * with that alert_id (a critical latency_spike of SERVICE/MODEL at LATENCY_MS); with SEQUENCE 0
 * it carries that alert only (an alert ahead of its batch).
 * Exit status: 0 when an IngestResponse arrived, 1 otherwise, 2 on bad usage.
 */
#include "ingest_rpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>

/* Parses a whole decimal number; returns false when text is not one. */
static bool parse_u64(const char *text, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0')
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    uint64_t seq;
    char *end = NULL;
    if ((argc != 7 && argc != 8) || !parse_u64(argv[3], &seq)) {
        fprintf(stderr, "usage: ingest_send HOST:PORT SIDECAR_ID SEQUENCE SERVICE MODEL LATENCY_MS "
                        "[COST_USD]\n");
        return 2;
    }
    double cost = -1.0;
    if (argc == 8) {
        cost = strtod(argv[7], &end);
        if (end == argv[7] || *end != '\0' || !(cost >= 0.0)) {
            fprintf(stderr, "ingest_send: COST_USD must be a number >= 0\n");
            return 2;
        }
    }
    double latency = strtod(argv[6], &end);
    if (end == argv[6] || *end != '\0') {
        fprintf(stderr, "ingest_send: LATENCY_MS must be a number\n");
        return 2;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;

    static uint8_t trace[16] = {0x7e, 0x57, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    uint8_t span[8];
    memset(span, (int)(seq & 0xff) | 1, sizeof span);
    Sentinel__V1__LlmEvent ev;
    sentinel__v1__llm_event__init(&ev);
    ev.service = argv[4];
    ev.model = argv[5];
    ev.provider = "openai";
    ev.operation = "chat";
    ev.trace_id.data = trace;
    ev.trace_id.len = sizeof trace;
    ev.span_id.data = span;
    ev.span_id.len = sizeof span;
    ev.start_unix_nano = now - (int64_t)(latency * 1e6);
    ev.end_unix_nano = now;
    ev._latency_ms_case = SENTINEL__V1__LLM_EVENT___LATENCY_MS_LATENCY_MS;
    ev.latency_ms = latency;
    if (cost >= 0.0) {
        ev._cost_usd_case = SENTINEL__V1__LLM_EVENT___COST_USD_COST_USD;
        ev.cost_usd = cost;
        ev.cost_source = SENTINEL__V1__COST_SOURCE__COST_SOURCE_SPAN;
    }
    Sentinel__V1__LlmEvent *evp[1] = {&ev};
    Sentinel__V1__Batch b;
    sentinel__v1__batch__init(&b);
    b.sidecar_id = argv[2];
    b.sequence = seq;
    b.created_unix_nano = now;
    b.n_events = seq > 0 ? 1 : 0;
    b.events = evp;
    Sentinel__V1__LocalAlert al;
    Sentinel__V1__LocalAlert *alp[1] = {&al};
    const char *alert_id = getenv("INGEST_SEND_ALERT_ID");
    if (alert_id != NULL && alert_id[0] != '\0') {
        sentinel__v1__local_alert__init(&al);
        al.alert_id = (char *)alert_id;
        al.detector = "z_score";
        al.metric = "latency_ms";
        al.anomaly_type = "latency_spike";
        al.severity = SENTINEL__V1__SEVERITY__SEVERITY_CRITICAL;
        al.value = latency;
        al.baseline = latency / 10;
        al.threshold = latency / 5;
        al.deviation = 8;
        al.confidence = 0.9;
        al.time_unix_nano = now;
        al.service = argv[4];
        al.model = argv[5];
        b.n_alerts = 1;
        b.alerts = alp;
    }

    grpc_init();
    size_t len;
    uint8_t *req = ingest_rpc_request(&b, false, &len);
    ingest_rpc_result r;
    int rc = req != NULL ? ingest_rpc_call(argv[1], req, len, 10000, &r) : -1;
    free(req);
    grpc_shutdown();
    if (rc != 0 || !r.has_response) {
        fprintf(stderr, "ingest_send: no answer (grpc status %d: %s)\n",
                rc == 0 ? r.grpc_status : -1, rc == 0 ? r.details : "call failed");
        return 1;
    }
    static const char *const names[] = {"UNSPECIFIED", "OK", "DUPLICATE", "RETRY_AFTER"};
    printf("%s %llu\n", r.status >= 0 && r.status <= 3 ? names[r.status] : "UNKNOWN",
           (unsigned long long)r.ack);
    return 0;
}
