/*
 * Unit tests for the generated sentinel.v1 code (proto/sentinel/v1/sentinel.proto, protoc-c):
 * the batch contract's envelope round-trips through zstd, and values that may be unknown keep
 * their presence (a 0 that was set is not an unset field).
 */
#include "sentinel/v1/sentinel.pb-c.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* Packs a message into a malloc'd buffer the caller frees. */
static uint8_t *pack_batch(const Sentinel__V1__Batch *b, size_t *len)
{
    *len = sentinel__v1__batch__get_packed_size(b);
    uint8_t *buf = malloc(*len ? *len : 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(sentinel__v1__batch__pack(b, buf), *len);
    return buf;
}

START_TEST(presence_survives_the_wire)
{
    Sentinel__V1__LlmEvent ev = SENTINEL__V1__LLM_EVENT__INIT;
    ev.service = "chatbot-api";
    ev.model = "gpt-4o";
    ev._input_tokens_case = SENTINEL__V1__LLM_EVENT___INPUT_TOKENS_INPUT_TOKENS;
    ev.input_tokens = 0; /* known to be zero */
    ev._latency_ms_case = SENTINEL__V1__LLM_EVENT___LATENCY_MS_LATENCY_MS;
    ev.latency_ms = 0.0;
    /* output_tokens, ttft_ms and cost_usd are left unknown */
    Sentinel__V1__LlmEvent *evs[] = {&ev};
    Sentinel__V1__Batch b = SENTINEL__V1__BATCH__INIT;
    b.sidecar_id = "pod-a/0123456789abcdef";
    b.sequence = 42;
    b.n_events = 1;
    b.events = evs;

    size_t len;
    uint8_t *buf = pack_batch(&b, &len);
    Sentinel__V1__Batch *got = sentinel__v1__batch__unpack(NULL, len, buf);
    free(buf);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got->sidecar_id, "pod-a/0123456789abcdef");
    ck_assert_uint_eq(got->sequence, 42);
    ck_assert_uint_eq(got->n_events, 1);
    const Sentinel__V1__LlmEvent *e = got->events[0];
    ck_assert_int_eq(e->_input_tokens_case, SENTINEL__V1__LLM_EVENT___INPUT_TOKENS_INPUT_TOKENS);
    ck_assert_int_eq(e->input_tokens, 0);
    ck_assert_int_eq(e->_latency_ms_case, SENTINEL__V1__LLM_EVENT___LATENCY_MS_LATENCY_MS);
    ck_assert_int_eq(e->_output_tokens_case, SENTINEL__V1__LLM_EVENT___OUTPUT_TOKENS__NOT_SET);
    ck_assert_int_eq(e->_ttft_ms_case, SENTINEL__V1__LLM_EVENT___TTFT_MS__NOT_SET);
    ck_assert_int_eq(e->_cost_usd_case, SENTINEL__V1__LLM_EVENT___COST_USD__NOT_SET);
    ck_assert_int_eq(e->cost_source, SENTINEL__V1__COST_SOURCE__COST_SOURCE_UNKNOWN);
    sentinel__v1__batch__free_unpacked(got, NULL);
}
END_TEST

START_TEST(zstd_envelope_round_trip)
{
    Sentinel__V1__LlmEvent ev[100];
    Sentinel__V1__LlmEvent *evs[100];
    for (int i = 0; i < 100; i++) {
        sentinel__v1__llm_event__init(&ev[i]);
        ev[i].service = "chatbot-api";
        ev[i].model = "gpt-4o";
        ev[i]._output_tokens_case = SENTINEL__V1__LLM_EVENT___OUTPUT_TOKENS_OUTPUT_TOKENS;
        ev[i].output_tokens = i;
        evs[i] = &ev[i];
    }
    Sentinel__V1__LocalAlert alert = SENTINEL__V1__LOCAL_ALERT__INIT;
    alert.detector = "z_score";
    alert.metric = "latency_ms";
    alert.severity = SENTINEL__V1__SEVERITY__SEVERITY_HIGH;
    alert.deviation = 4.2;
    Sentinel__V1__LocalAlert *alerts[] = {&alert};
    Sentinel__V1__Batch b = SENTINEL__V1__BATCH__INIT;
    b.sidecar_id = "pod-b/feedface";
    b.sequence = 7;
    b.n_events = 100;
    b.events = evs;
    b.n_alerts = 1;
    b.alerts = alerts;
    size_t raw_len;
    uint8_t *raw = pack_batch(&b, &raw_len);

    size_t cap = ZSTD_compressBound(raw_len);
    uint8_t *z = malloc(cap);
    ck_assert_ptr_nonnull(z);
    size_t zlen = ZSTD_compress(z, cap, raw, raw_len, 3);
    ck_assert(!ZSTD_isError(zlen));
    ck_assert_uint_lt(zlen, raw_len);

    Sentinel__V1__IngestRequest req = SENTINEL__V1__INGEST_REQUEST__INIT;
    req.compression = SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD;
    req.uncompressed_size = raw_len;
    req.payload.data = z;
    req.payload.len = zlen;
    size_t wire_len = sentinel__v1__ingest_request__get_packed_size(&req);
    uint8_t *wire = malloc(wire_len);
    ck_assert_ptr_nonnull(wire);
    sentinel__v1__ingest_request__pack(&req, wire);

    /* The aggregator's side: envelope, size check, decompress, batch. */
    Sentinel__V1__IngestRequest *in = sentinel__v1__ingest_request__unpack(NULL, wire_len, wire);
    ck_assert_ptr_nonnull(in);
    ck_assert_int_eq(in->compression, SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD);
    ck_assert_uint_eq(in->uncompressed_size, raw_len);
    ck_assert_uint_eq(ZSTD_getFrameContentSize(in->payload.data, in->payload.len), raw_len);
    uint8_t *back = malloc(in->uncompressed_size);
    ck_assert_ptr_nonnull(back);
    size_t n = ZSTD_decompress(back, in->uncompressed_size, in->payload.data, in->payload.len);
    ck_assert(!ZSTD_isError(n));
    ck_assert_uint_eq(n, raw_len);
    Sentinel__V1__Batch *got = sentinel__v1__batch__unpack(NULL, n, back);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(got->sequence, 7);
    ck_assert_uint_eq(got->n_events, 100);
    ck_assert_int_eq(got->events[99]->output_tokens, 99);
    ck_assert_uint_eq(got->n_alerts, 1);
    ck_assert_str_eq(got->alerts[0]->detector, "z_score");
    ck_assert_int_eq(got->alerts[0]->severity, SENTINEL__V1__SEVERITY__SEVERITY_HIGH);

    sentinel__v1__batch__free_unpacked(got, NULL);
    sentinel__v1__ingest_request__free_unpacked(in, NULL);
    free(back);
    free(wire);
    free(z);
    free(raw);
}
END_TEST

START_TEST(default_response_is_not_ok)
{
    /* An empty (default) response must not read as success. */
    Sentinel__V1__IngestResponse *r = sentinel__v1__ingest_response__unpack(NULL, 0, NULL);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_UNSPECIFIED);
    ck_assert_int_ne(r->status, SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_OK);
    sentinel__v1__ingest_response__free_unpacked(r, NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sentinel_proto");
    TCase *tc = tcase_create("batch");
    tcase_add_test(tc, presence_survives_the_wire);
    tcase_add_test(tc, zstd_envelope_round_trip);
    tcase_add_test(tc, default_response_is_not_ok);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
