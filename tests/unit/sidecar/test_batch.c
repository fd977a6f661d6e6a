/* Unit tests for sidecar/batch.c: nanopb encoding checked by an independent decoder (protoc-c)
 * after decompression with libzstd; journal records round trip. */
#include "batch.h"

#include "sentinel/v1/sentinel.pb-c.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getFrameHeader */
#include <zstd.h>

#define ID "pod-a/0123456789abcdef"

/* Every field set, all distinct; strings at their longest in event 0 (UTF-8 intact). */
static void full_event(sn_event *ev, int i)
{
    sn_event_init(ev);
    ev->start_unix_nano = 1700000000000000000 + i;
    ev->end_unix_nano = 1700000000250000000 + i;
    if (i == 0) {
        memset(ev->service, 's', SN_NAME_MAX - 3);
        memcpy(ev->service + SN_NAME_MAX - 3, "\xc3\xa9", 2); /* é as the last character */
        memset(ev->model, 'm', SN_NAME_MAX - 1);
        memset(ev->finish_reason, 'f', SN_SHORT_MAX - 1);
    } else {
        snprintf(ev->service, sizeof ev->service, "chatbot-%d", i);
        snprintf(ev->model, sizeof ev->model, "gpt-4o-%d", i);
        snprintf(ev->finish_reason, sizeof ev->finish_reason, "stop");
    }
    snprintf(ev->service_version, sizeof ev->service_version, "1.2.%d", i);
    snprintf(ev->provider, sizeof ev->provider, "azure.ai.openai");
    snprintf(ev->operation, sizeof ev->operation, "chat");
    snprintf(ev->region, sizeof ev->region, "us-east-%d", i);
    snprintf(ev->pod, sizeof ev->pod, "pod-%d", i);
    snprintf(ev->user, sizeof ev->user, "user-%d", i);
    snprintf(ev->error_type, sizeof ev->error_type, "timeout");
    for (int k = 0; k < 16; k++)
        ev->trace_id[k] = (uint8_t)(0xa0 + k + i);
    for (int k = 0; k < 8; k++)
        ev->span_id[k] = (uint8_t)(0x10 + k + i);
    ev->latency_ms = 250.5 + i;
    ev->ttft_ms = 80.25 + i;
    ev->input_tokens = 1000 + i;
    ev->output_tokens = 500 + i;
    ev->total_tokens = 1500 + 2 * i;
    ev->cache_read_tokens = 300 + i;
    ev->cache_write_tokens = 7 + i;
    ev->reasoning_tokens = 40 + i;
    ev->cost_usd = 0.0125 * (i + 1);
    ev->cost_source = i % 2 == 0 ? SN_COST_PRICE_TABLE : SN_COST_SPAN;
    ev->is_error = i % 2 == 1;
    ev->conventions = SN_CONV_GENAI | SN_CONV_OPENLLMETRY;
}

static void full_alert(sn_local_alert *a, int i)
{
    memset(a, 0, sizeof *a);
    snprintf(a->alert_id, sizeof a->alert_id, "0f8fad5b-d9cb-469f-a165-70867728950%c",
             (char)('0' + i % 10));
    a->time_unix_nano = 1700000000250000000 + i;
    snprintf(a->service, sizeof a->service, "chatbot-%d", i);
    snprintf(a->model, sizeof a->model, "gpt-4o");
    snprintf(a->region, sizeof a->region, "eu-west-1");
    a->metric = SN_METRIC_LATENCY_MS;
    a->anomaly_type = SN_ANOMALY_LATENCY_SPIKE;
    a->detector = SN_DETECT_ZSCORE;
    a->severity = SN_SEV_HIGH;
    a->value = 12000.0 + i;
    a->baseline = 2000.0;
    a->threshold = 6000.0;
    a->deviation = 5.2;
    a->confidence = 0.95;
    for (int k = 0; k < 16; k++)
        a->trace_id[k] = (uint8_t)(0xc0 + k);
}

/* protoc-c's view of an IngestRequest: checks the envelope, decompresses, unpacks the Batch.
 * The caller frees with sentinel__v1__batch__free_unpacked. */
static Sentinel__V1__Batch *open_request(const uint8_t *req, size_t len, int want_compression,
                                         size_t want_batch_len)
{
    Sentinel__V1__IngestRequest *r = sentinel__v1__ingest_request__unpack(NULL, len, req);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->compression, want_compression);
    ck_assert_uint_eq(r->uncompressed_size, want_batch_len);
    uint8_t *plain = malloc(want_batch_len + 1);
    ck_assert_ptr_nonnull(plain);
    size_t plain_len;
    if (want_compression == SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD ||
        want_compression == SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD_GROUPS) {
        /* One frame that records its content size. */
        ck_assert_uint_eq(ZSTD_getFrameContentSize(r->payload.data, r->payload.len),
                          want_batch_len);
        plain_len = ZSTD_decompress(plain, want_batch_len + 1, r->payload.data, r->payload.len);
        ck_assert(!ZSTD_isError(plain_len));
    } else {
        memcpy(plain, r->payload.data, r->payload.len);
        plain_len = r->payload.len;
    }
    ck_assert_uint_eq(plain_len, want_batch_len);
    Sentinel__V1__Batch *b = sentinel__v1__batch__unpack(NULL, plain_len, plain);
    ck_assert_ptr_nonnull(b);
    free(plain);
    sentinel__v1__ingest_request__free_unpacked(r, NULL);
    return b;
}

static bool zero16(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

#define CHECK_COUNT(m, ev, name, CASE)                                                             \
    do {                                                                                           \
        if ((ev)->name >= 0) {                                                                     \
            ck_assert_int_eq((m)->_##name##_case, CASE);                                           \
            ck_assert_int_eq((m)->name, (ev)->name);                                               \
        } else {                                                                                   \
            ck_assert_int_eq((m)->_##name##_case, 0);                                              \
        }                                                                                          \
    } while (0)

/* Every field of a protoc-c-decoded LlmEvent against the event it came from. */
static void check_event(const Sentinel__V1__LlmEvent *m, const sn_event *ev)
{
    ck_assert_str_eq(m->service, ev->service);
    ck_assert_str_eq(m->model, ev->model);
    ck_assert_str_eq(m->provider, ev->provider);
    ck_assert_str_eq(m->operation, ev->operation);
    ck_assert_str_eq(m->region, ev->region);
    ck_assert_str_eq(m->service_version, ev->service_version);
    ck_assert_str_eq(m->pod, ev->pod);
    ck_assert_str_eq(m->user, ev->user);
    ck_assert_str_eq(m->error_type, ev->error_type);
    ck_assert_str_eq(m->finish_reason, ev->finish_reason);
    if (zero16(ev->trace_id, 16)) {
        ck_assert_uint_eq(m->trace_id.len, 0);
    } else {
        ck_assert_uint_eq(m->trace_id.len, 16);
        ck_assert_mem_eq(m->trace_id.data, ev->trace_id, 16);
    }
    if (zero16(ev->span_id, 8)) {
        ck_assert_uint_eq(m->span_id.len, 0);
    } else {
        ck_assert_uint_eq(m->span_id.len, 8);
        ck_assert_mem_eq(m->span_id.data, ev->span_id, 8);
    }
    ck_assert_int_eq(m->start_unix_nano, ev->start_unix_nano);
    ck_assert_int_eq(m->end_unix_nano, ev->end_unix_nano);
    if (isfinite(ev->latency_ms) && ev->latency_ms >= 0) {
        ck_assert_int_eq(m->_latency_ms_case, SENTINEL__V1__LLM_EVENT___LATENCY_MS_LATENCY_MS);
        ck_assert_double_eq(m->latency_ms, ev->latency_ms);
    } else {
        ck_assert_int_eq(m->_latency_ms_case, SENTINEL__V1__LLM_EVENT___LATENCY_MS__NOT_SET);
    }
    if (isfinite(ev->ttft_ms) && ev->ttft_ms >= 0) {
        ck_assert_int_eq(m->_ttft_ms_case, SENTINEL__V1__LLM_EVENT___TTFT_MS_TTFT_MS);
        ck_assert_double_eq(m->ttft_ms, ev->ttft_ms);
    } else {
        ck_assert_int_eq(m->_ttft_ms_case, SENTINEL__V1__LLM_EVENT___TTFT_MS__NOT_SET);
    }
    CHECK_COUNT(m, ev, input_tokens, SENTINEL__V1__LLM_EVENT___INPUT_TOKENS_INPUT_TOKENS);
    CHECK_COUNT(m, ev, output_tokens, SENTINEL__V1__LLM_EVENT___OUTPUT_TOKENS_OUTPUT_TOKENS);
    CHECK_COUNT(m, ev, total_tokens, SENTINEL__V1__LLM_EVENT___TOTAL_TOKENS_TOTAL_TOKENS);
    CHECK_COUNT(m, ev, cache_read_tokens,
                SENTINEL__V1__LLM_EVENT___CACHE_READ_TOKENS_CACHE_READ_TOKENS);
    CHECK_COUNT(m, ev, cache_write_tokens,
                SENTINEL__V1__LLM_EVENT___CACHE_WRITE_TOKENS_CACHE_WRITE_TOKENS);
    CHECK_COUNT(m, ev, reasoning_tokens,
                SENTINEL__V1__LLM_EVENT___REASONING_TOKENS_REASONING_TOKENS);
    if (ev->cost_source != SN_COST_UNKNOWN && isfinite(ev->cost_usd) && ev->cost_usd >= 0) {
        ck_assert_int_eq(m->_cost_usd_case, SENTINEL__V1__LLM_EVENT___COST_USD_COST_USD);
        ck_assert_double_eq(m->cost_usd, ev->cost_usd);
        ck_assert_int_eq(m->cost_source, ev->cost_source == SN_COST_SPAN
                                             ? SENTINEL__V1__COST_SOURCE__COST_SOURCE_SPAN
                                             : SENTINEL__V1__COST_SOURCE__COST_SOURCE_PRICE_TABLE);
    } else {
        ck_assert_int_eq(m->_cost_usd_case, SENTINEL__V1__LLM_EVENT___COST_USD__NOT_SET);
        ck_assert_int_eq(m->cost_source, SENTINEL__V1__COST_SOURCE__COST_SOURCE_UNKNOWN);
    }
    ck_assert_int_eq(m->is_error, ev->is_error);
    ck_assert_uint_eq(m->conventions, ev->conventions);
}

static void check_alert(const Sentinel__V1__LocalAlert *m, const sn_local_alert *a)
{
    ck_assert_str_eq(m->alert_id, a->alert_id);
    ck_assert_str_eq(m->detector, sn_detector_name(a->detector));
    ck_assert_str_eq(m->metric, sn_metric_name(a->metric));
    ck_assert_str_eq(m->anomaly_type, sn_anomaly_type_name(a->anomaly_type));
    ck_assert_int_eq(m->severity, (int)a->severity); /* the enums share their numbers */
    ck_assert_double_eq(m->value, a->value);
    ck_assert_double_eq(m->baseline, a->baseline);
    ck_assert_double_eq(m->threshold, a->threshold);
    if (isnan(a->deviation))
        ck_assert(isnan(m->deviation));
    else
        ck_assert_double_eq(m->deviation, a->deviation);
    ck_assert_double_eq(m->confidence, a->confidence);
    if (zero16(a->trace_id, 16)) {
        ck_assert_uint_eq(m->trace_id.len, 0);
    } else {
        ck_assert_uint_eq(m->trace_id.len, 16);
        ck_assert_mem_eq(m->trace_id.data, a->trace_id, 16);
    }
    ck_assert_int_eq(m->time_unix_nano, a->time_unix_nano);
    ck_assert_str_eq(m->service, a->service);
    ck_assert_str_eq(m->model, a->model);
    ck_assert_str_eq(m->region, a->region);
}

static sn_batch_encoder *encoder(int level, size_t max_events, size_t max_message)
{
    sn_batch_config cfg;
    sn_batch_config_init(&cfg);
    cfg.zstd_level = level;
    cfg.max_events = max_events;
    cfg.max_message_bytes = max_message;
    sn_batch_encoder *enc = NULL;
    char err[128];
    ck_assert_int_eq(sn_batch_encoder_create(&cfg, &enc, err, sizeof err), 0);
    return enc;
}

START_TEST(defaults_are_the_documented_ones)
{
    sn_batch_config cfg;
    sn_batch_config_init(&cfg);
    ck_assert_int_eq(cfg.zstd_level, -2);
    ck_assert(cfg.zstd_raw_literals);
    ck_assert_int_eq(cfg.zstd_hash_log, 0);
    ck_assert_uint_eq(cfg.max_message_bytes, 16u << 20);
    ck_assert_uint_eq(cfg.max_events, 10000);
    ck_assert_uint_eq(cfg.max_alerts, 1000);
}
END_TEST

START_TEST(full_batch_matches_protoc_c_field_by_field)
{
    enum { NE = 5, NA = 3 };
    sn_event ev[NE];
    for (int i = 0; i < NE; i++)
        full_event(&ev[i], i);
    sn_local_alert al[NA];
    for (int i = 0; i < NA; i++)
        full_alert(&al[i], i);
    al[1].detector = SN_DETECT_THRESHOLD;
    al[1].metric = SN_METRIC_COST_USD;
    al[1].anomaly_type = SN_ANOMALY_COST_SPIKE;
    al[1].severity = SN_SEV_CRITICAL;
    al[1].deviation = NAN;
    memset(al[1].trace_id, 0, sizeof al[1].trace_id);
    al[2].detector = SN_DETECT_CUSUM;
    al[2].metric = SN_METRIC_TOKENS_PER_SECOND;
    al[2].anomaly_type = SN_ANOMALY_THROUGHPUT_DROP;
    al[2].severity = SN_SEV_LOW;

    sn_batch_encoder *enc = encoder(3, 100, 1u << 20);
    sn_batch b = {.sidecar_id = ID,
                  .sequence = 42,
                  .events = ev,
                  .n_events = NE,
                  .alerts = al,
                  .n_alerts = NA,
                  .created_unix_nano = 1700000001000000000,
                  .dropped_events = 7};
    const uint8_t *out = NULL;
    size_t len = 0, blen = 0;
    char err[128] = "";
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, &blen, err, sizeof err), 0);
    ck_assert_uint_gt(blen, NE * 200); /* every event's strings are in there */
    ck_assert_uint_lt(len, blen);      /* and zstd made it smaller */

    Sentinel__V1__Batch *pb =
        open_request(out, len, SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD, blen);
    ck_assert_str_eq(pb->sidecar_id, ID);
    ck_assert_uint_eq(pb->sequence, 42);
    ck_assert_int_eq(pb->created_unix_nano, 1700000001000000000);
    ck_assert_uint_eq(pb->dropped_events, 7);
    ck_assert_uint_eq(pb->n_events, NE);
    ck_assert_uint_eq(pb->n_alerts, NA);
    for (int i = 0; i < NE; i++)
        check_event(pb->events[i], &ev[i]);
    for (int i = 0; i < NA; i++)
        check_alert(pb->alerts[i], &al[i]);

    /* Literal expectations, independent of the helpers' rules. */
    ck_assert_uint_eq(strlen(pb->events[0]->service), SN_NAME_MAX - 1);
    ck_assert_str_eq(pb->events[0]->service + SN_NAME_MAX - 3, "\xc3\xa9");
    ck_assert_str_eq(pb->events[1]->service, "chatbot-1");
    ck_assert_int_eq(pb->events[1]->input_tokens, 1001);
    ck_assert_double_eq(pb->events[1]->cost_usd, 0.025);
    ck_assert_int_eq(pb->events[1]->cost_source, SENTINEL__V1__COST_SOURCE__COST_SOURCE_SPAN);
    ck_assert_int_eq(pb->events[2]->cost_source,
                     SENTINEL__V1__COST_SOURCE__COST_SOURCE_PRICE_TABLE);
    ck_assert(pb->events[1]->is_error);
    ck_assert_uint_eq(pb->events[1]->conventions, 5);
    ck_assert_str_eq(pb->alerts[0]->detector, "z_score");
    ck_assert_str_eq(pb->alerts[0]->metric, "latency_ms");
    ck_assert_str_eq(pb->alerts[0]->anomaly_type, "latency_spike");
    ck_assert_int_eq(pb->alerts[0]->severity, SENTINEL__V1__SEVERITY__SEVERITY_HIGH);
    ck_assert_str_eq(pb->alerts[0]->alert_id, "0f8fad5b-d9cb-469f-a165-708677289500");
    ck_assert_str_eq(pb->alerts[1]->detector, "threshold");
    ck_assert_str_eq(pb->alerts[1]->metric, "cost_usd");
    ck_assert_str_eq(pb->alerts[1]->anomaly_type, "cost_spike");
    ck_assert_int_eq(pb->alerts[1]->severity, SENTINEL__V1__SEVERITY__SEVERITY_CRITICAL);
    ck_assert_uint_eq(pb->alerts[1]->trace_id.len, 0);
    ck_assert_str_eq(pb->alerts[2]->detector, "cusum");
    ck_assert_str_eq(pb->alerts[2]->metric, "tokens_per_second");
    ck_assert_str_eq(pb->alerts[2]->anomaly_type, "throughput_drop");
    ck_assert_int_eq(pb->alerts[2]->severity, SENTINEL__V1__SEVERITY__SEVERITY_LOW);
    sentinel__v1__batch__free_unpacked(pb, NULL);
    sn_batch_encoder_destroy(enc);
}
END_TEST

START_TEST(unknown_facts_are_absent_and_zero_is_a_value)
{
    sn_event ev[4];
    sn_event_init(&ev[0]); /* everything unknown */
    snprintf(ev[0].service, sizeof ev[0].service, "svc");
    ev[0].end_unix_nano = 5;
    ev[0].cost_source = SN_COST_SPAN; /* a negative cost is no cost */
    ev[0].cost_usd = -1.5;
    sn_event_init(&ev[1]);
    ev[1].input_tokens = 0; /* zero counts and reals are values */
    ev[1].output_tokens = 0;
    ev[1].latency_ms = 0.0;
    ev[1].cost_usd = 0.0;
    ev[1].cost_source = SN_COST_PRICE_TABLE;
    ev[1].trace_id[15] = 1; /* not all zero */
    sn_event_init(&ev[2]);
    ev[2].latency_ms = INFINITY; /* not a measurement */
    ev[2].ttft_ms = -INFINITY;
    ev[2].cost_source = SN_COST_SPAN; /* a source with no cost: both unknown */
    ev[2].total_tokens = -7;          /* any negative count is unknown */
    ev[1].ttft_ms = -3.0;             /* a skewed clock: no measurement */
    sn_event_init(&ev[3]);
    ev[3].cost_usd = 1.5; /* a cost with no source is unknown */

    sn_batch_encoder *enc = encoder(1, 10, 1u << 20);
    sn_batch b = {.sidecar_id = ID, .sequence = 1, .events = ev, .n_events = 4};
    const uint8_t *out;
    size_t len, blen;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, &blen, NULL, 0), 0);
    Sentinel__V1__Batch *pb =
        open_request(out, len, SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD, blen);
    ck_assert_uint_eq(pb->n_events, 4);
    ck_assert_int_eq(pb->events[3]->_cost_usd_case, SENTINEL__V1__LLM_EVENT___COST_USD__NOT_SET);
    ck_assert_int_eq(pb->events[3]->cost_source, SENTINEL__V1__COST_SOURCE__COST_SOURCE_UNKNOWN);
    const Sentinel__V1__LlmEvent *e0 = pb->events[0], *e1 = pb->events[1], *e2 = pb->events[2];
    ck_assert_str_eq(e0->service, "svc");
    ck_assert_int_eq(e0->_latency_ms_case, SENTINEL__V1__LLM_EVENT___LATENCY_MS__NOT_SET);
    ck_assert_int_eq(e0->_ttft_ms_case, SENTINEL__V1__LLM_EVENT___TTFT_MS__NOT_SET);
    ck_assert_int_eq(e0->_input_tokens_case, SENTINEL__V1__LLM_EVENT___INPUT_TOKENS__NOT_SET);
    ck_assert_int_eq(e0->_output_tokens_case, SENTINEL__V1__LLM_EVENT___OUTPUT_TOKENS__NOT_SET);
    ck_assert_int_eq(e0->_total_tokens_case, SENTINEL__V1__LLM_EVENT___TOTAL_TOKENS__NOT_SET);
    ck_assert_int_eq(e0->_cache_read_tokens_case,
                     SENTINEL__V1__LLM_EVENT___CACHE_READ_TOKENS__NOT_SET);
    ck_assert_int_eq(e0->_cache_write_tokens_case,
                     SENTINEL__V1__LLM_EVENT___CACHE_WRITE_TOKENS__NOT_SET);
    ck_assert_int_eq(e0->_reasoning_tokens_case,
                     SENTINEL__V1__LLM_EVENT___REASONING_TOKENS__NOT_SET);
    ck_assert_int_eq(e0->_cost_usd_case, SENTINEL__V1__LLM_EVENT___COST_USD__NOT_SET);
    ck_assert_int_eq(e0->cost_source, SENTINEL__V1__COST_SOURCE__COST_SOURCE_UNKNOWN);
    ck_assert_uint_eq(e0->trace_id.len, 0);
    ck_assert_uint_eq(e0->span_id.len, 0);

    ck_assert_int_eq(e1->_input_tokens_case, SENTINEL__V1__LLM_EVENT___INPUT_TOKENS_INPUT_TOKENS);
    ck_assert_int_eq(e1->input_tokens, 0);
    ck_assert_int_eq(e1->_output_tokens_case,
                     SENTINEL__V1__LLM_EVENT___OUTPUT_TOKENS_OUTPUT_TOKENS);
    ck_assert_int_eq(e1->_latency_ms_case, SENTINEL__V1__LLM_EVENT___LATENCY_MS_LATENCY_MS);
    ck_assert_double_eq(e1->latency_ms, 0.0);
    ck_assert_int_eq(e1->_cost_usd_case, SENTINEL__V1__LLM_EVENT___COST_USD_COST_USD);
    ck_assert_double_eq(e1->cost_usd, 0.0);
    ck_assert_int_eq(e1->cost_source, SENTINEL__V1__COST_SOURCE__COST_SOURCE_PRICE_TABLE);
    ck_assert_int_eq(e1->_total_tokens_case, SENTINEL__V1__LLM_EVENT___TOTAL_TOKENS__NOT_SET);
    ck_assert_int_eq(e1->_ttft_ms_case, SENTINEL__V1__LLM_EVENT___TTFT_MS__NOT_SET);
    ck_assert_uint_eq(e1->trace_id.len, 16);
    ck_assert_uint_eq(e1->trace_id.data[15], 1);

    ck_assert_int_eq(e2->_latency_ms_case, SENTINEL__V1__LLM_EVENT___LATENCY_MS__NOT_SET);
    ck_assert_int_eq(e2->_ttft_ms_case, SENTINEL__V1__LLM_EVENT___TTFT_MS__NOT_SET);
    ck_assert_int_eq(e2->_cost_usd_case, SENTINEL__V1__LLM_EVENT___COST_USD__NOT_SET);
    ck_assert_int_eq(e2->cost_source, SENTINEL__V1__COST_SOURCE__COST_SOURCE_UNKNOWN);
    ck_assert_int_eq(e2->_total_tokens_case, SENTINEL__V1__LLM_EVENT___TOTAL_TOKENS__NOT_SET);
    sentinel__v1__batch__free_unpacked(pb, NULL);
    sn_batch_encoder_destroy(enc);
}
END_TEST

START_TEST(level_zero_sends_the_batch_uncompressed)
{
    sn_event ev[2];
    full_event(&ev[0], 1);
    full_event(&ev[1], 2);
    sn_batch_encoder *enc = encoder(0, 10, 1u << 20);
    sn_batch b = {.sidecar_id = ID, .sequence = 9, .events = ev, .n_events = 2};
    const uint8_t *out;
    size_t len, blen;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, &blen, NULL, 0), 0);
    ck_assert_uint_gt(len, blen); /* the envelope adds a few bytes */
    ck_assert_uint_lt(len, blen + 16);
    Sentinel__V1__Batch *pb =
        open_request(out, len, SENTINEL__V1__COMPRESSION__COMPRESSION_NONE, blen);
    ck_assert_uint_eq(pb->sequence, 9);
    ck_assert_uint_eq(pb->n_events, 2);
    check_event(pb->events[0], &ev[0]);
    check_event(pb->events[1], &ev[1]);
    sentinel__v1__batch__free_unpacked(pb, NULL);
    sn_batch_encoder_destroy(enc);
}
END_TEST

/* ---- zstd parameters ---- */

enum { ZN = 300 }; /* events in the zstd parameter tests: about 60 KB of Batch */

/* What the zstd frame f[0..n) is made of: the frame header descriptor, the number of compressed
 * blocks and their literals sections by type (0 raw, 1 RLE, 2 Huffman, 3 Huffman with the
 * previous table; RFC 8878, 3.1.1 and 3.1.1.3.1). Asserts the frame is whole. */
typedef struct zframe_shape {
    uint8_t descriptor;
    unsigned compressed_blocks;
    unsigned literals[4];
} zframe_shape;

static zframe_shape zframe(const uint8_t *f, size_t n)
{
    zframe_shape z = {0};
    ck_assert_uint_ge(n, 6);
    ck_assert_uint_eq(f[0] | (uint32_t)f[1] << 8 | (uint32_t)f[2] << 16 | (uint32_t)f[3] << 24,
                      ZSTD_MAGICNUMBER);
    z.descriptor = f[4];
    unsigned fcs_flag = z.descriptor >> 6, single = (z.descriptor >> 5) & 1,
             did_flag = z.descriptor & 3;
    static const size_t did_size[4] = {0, 1, 2, 4}, fcs_size[4] = {0, 2, 4, 8};
    size_t pos = 5 + (single ? 0 : 1) + did_size[did_flag] +
                 (fcs_flag == 0 && single ? 1 : fcs_size[fcs_flag]);
    bool last = false;
    while (!last) {
        ck_assert_uint_le(pos + 3, n);
        uint32_t h = f[pos] | (uint32_t)f[pos + 1] << 8 | (uint32_t)f[pos + 2] << 16;
        last = h & 1;
        unsigned type = (h >> 1) & 3;
        size_t size = h >> 3;
        pos += 3;
        if (type == 2) {
            ck_assert_uint_ge(size, 1);
            ck_assert_uint_lt(pos, n);
            z.compressed_blocks++;
            z.literals[f[pos] & 3]++;
        }
        pos += type == 1 ? 1 : size;
    }
    pos += (z.descriptor & 4) ? 4 : 0; /* content checksum */
    ck_assert_uint_eq(pos, n);
    return z;
}

/* ZN events with random trace and span ids (as real ones are) and repeated strings (calloc'd:
 * the caller frees them); *cfg gets the default batch config. */
static sn_event *zstd_events(sn_batch_config *cfg)
{
    sn_batch_config_init(cfg);
    sn_event *ev = calloc(ZN, sizeof *ev);
    ck_assert_ptr_nonnull(ev);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < ZN; i++) {
        full_event(&ev[i], 1 + i % 7);
        for (int k = 0; k < 16; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ev[i].trace_id[k] = (uint8_t)(x >> 24);
            if (k < 8)
                ev[i].span_id[k] = (uint8_t)(x >> 40);
        }
        ev[i].input_tokens = 100 + (int64_t)(x % 5000);
        ev[i].latency_ms = 100.0 + (double)(x % 100000) / 37.0;
        /* Text no match covers, of a small alphabet: what Huffman coding shrinks. */
        snprintf(ev[i].user, sizeof ev[i].user, "user-%llu", (unsigned long long)(x % 99999991));
        snprintf(ev[i].pod, sizeof ev[i].pod, "chat-api-%c%c%c%c%c", 'a' + (int)(x % 7),
                 'a' + (int)(x / 7 % 11), 'a' + (int)(x / 77 % 13), 'a' + (int)(x / 1001 % 5),
                 'a' + (int)(x / 5005 % 9));
    }
    return ev;
}

/* Encodes ev[0..ZN) with cfg, checks the round trip field by field, and returns a copy of the
 * zstd payload (malloc'd; the caller frees it) with its size in *zlen and the Batch's in *blen. */
static uint8_t *zstd_payload(const sn_batch_config *cfg, const sn_event *ev, size_t *zlen,
                             size_t *blen)
{
    sn_batch_encoder *enc = NULL;
    char err[128] = "";
    ck_assert_int_eq(sn_batch_encoder_create(cfg, &enc, err, sizeof err), 0);
    sn_batch b = {.sidecar_id = ID, .sequence = 3, .events = ev, .n_events = ZN};
    const uint8_t *out;
    size_t len;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, blen, err, sizeof err), 0);
    Sentinel__V1__Batch *pb =
        open_request(out, len, SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD, *blen);
    ck_assert_uint_eq(pb->n_events, ZN);
    for (int i = 0; i < ZN; i++)
        check_event(pb->events[i], &ev[i]);
    sentinel__v1__batch__free_unpacked(pb, NULL);
    Sentinel__V1__IngestRequest *r = sentinel__v1__ingest_request__unpack(NULL, len, out);
    ck_assert_ptr_nonnull(r);
    uint8_t *copy = malloc(r->payload.len);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, r->payload.data, r->payload.len);
    *zlen = r->payload.len;
    sentinel__v1__ingest_request__free_unpacked(r, NULL);
    sn_batch_encoder_destroy(enc);
    return copy;
}

START_TEST(zstd_literals_setting_is_honoured)
{
    sn_batch_config cfg;
    sn_event *ev = zstd_events(&cfg);
    size_t raw_len, huf_len, blen, blen2;

    /* Default: raw literals -- no compressed block Huffman-codes its literals. */
    uint8_t *raw = zstd_payload(&cfg, ev, &raw_len, &blen);
    zframe_shape z = zframe(raw, raw_len);
    ck_assert_uint_gt(z.compressed_blocks, 0);
    ck_assert_uint_eq(z.literals[2] + z.literals[3], 0);
    ck_assert_uint_eq(z.descriptor & 4, 0);                            /* no checksum */
    ck_assert_uint_ne(z.descriptor >> 6 | (z.descriptor >> 5 & 1), 0); /* content size */

    /* huffman: zstd's own literals, Huffman-coded and smaller on this data. */
    cfg.zstd_raw_literals = false;
    uint8_t *huf = zstd_payload(&cfg, ev, &huf_len, &blen2);
    ck_assert_uint_eq(blen2, blen);
    z = zframe(huf, huf_len);
    ck_assert_uint_gt(z.literals[2] + z.literals[3], 0);
    ck_assert_uint_lt(huf_len, raw_len);
    ck_assert_uint_lt(raw_len, blen / 2); /* raw literals still compress the Batch */
    free(huf);
    free(raw);
    free(ev);
}
END_TEST

START_TEST(zstd_hash_log_setting_is_honoured)
{
    sn_batch_config cfg;
    sn_event *ev = zstd_events(&cfg);
    size_t auto_len, twelve_len, len, blen;

    /* 0 at level 1 is 12: the same bytes as asking for 12. */
    uint8_t *dflt = zstd_payload(&cfg, ev, &auto_len, &blen);
    cfg.zstd_hash_log = 12;
    uint8_t *twelve = zstd_payload(&cfg, ev, &twelve_len, &blen);
    ck_assert_uint_eq(twelve_len, auto_len);
    ck_assert_mem_eq(twelve, dflt, auto_len);

    /* The extremes round trip exactly (checked inside zstd_payload); 6 compresses worse. */
    cfg.zstd_hash_log = SN_BATCH_ZSTD_HASH_LOG_MIN;
    uint8_t *p = zstd_payload(&cfg, ev, &len, &blen);
    ck_assert_uint_gt(len, auto_len);
    free(p);
    cfg.zstd_hash_log = SN_BATCH_ZSTD_HASH_LOG_MAX;
    p = zstd_payload(&cfg, ev, &len, &blen);
    free(p);

    /* Above level 1, 0 leaves zstd's own parameters: level 3 with Huffman literals is exactly
     * ZSTD_compress at level 3 (what older sidecars sent at that level). */
    cfg.zstd_hash_log = 0;
    cfg.zstd_level = 3;
    cfg.zstd_raw_literals = false;
    p = zstd_payload(&cfg, ev, &len, &blen);
    uint8_t *plain = malloc(blen), *ref = malloc(ZSTD_compressBound(blen));
    ck_assert_ptr_nonnull(plain);
    ck_assert_ptr_nonnull(ref);
    ck_assert_uint_eq(ZSTD_decompress(plain, blen, p, len), blen);
    size_t rn = ZSTD_compress(ref, ZSTD_compressBound(blen), plain, blen, 3);
    ck_assert(!ZSTD_isError(rn));
    ck_assert_uint_eq(rn, len);
    ck_assert_mem_eq(ref, p, len);
    free(ref);
    free(plain);
    free(p);
    free(twelve);
    free(dflt);
    free(ev);
}
END_TEST

/* Level 1 and the fast levels (the default -2) compress with a 64 KiB window (the encoder's
 * context follows it): a Batch above that says so in its frame header; level 3 keeps zstd's own
 * (larger) window. */
START_TEST(zstd_window_is_64k_at_level_1)
{
    sn_batch_config cfg;
    sn_event *one = zstd_events(&cfg);
    enum { COPIES = 4 };
    sn_event *ev = calloc(COPIES * ZN, sizeof *ev);
    ck_assert_ptr_nonnull(ev);
    for (int c = 0; c < COPIES; c++)
        memcpy(ev + c * ZN, one, ZN * sizeof *ev);
    static const int levels[] = {SN_BATCH_ZSTD_LEVEL_MIN, -2, 1, 3};
    for (size_t k = 0; k < sizeof levels / sizeof levels[0]; k++) {
        int level = levels[k];
        cfg.zstd_level = level;
        sn_batch_encoder *enc = NULL;
        char err[128] = "";
        ck_assert_int_eq(sn_batch_encoder_create(&cfg, &enc, err, sizeof err), 0);
        sn_batch b = {.sidecar_id = ID, .sequence = 3, .events = ev, .n_events = COPIES * ZN};
        const uint8_t *out;
        size_t len, blen;
        ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, &blen, err, sizeof err), 0);
        ck_assert_uint_gt(blen, 1u << SN_BATCH_ZSTD_WINDOW_LOG_FAST);
        Sentinel__V1__IngestRequest *r = sentinel__v1__ingest_request__unpack(NULL, len, out);
        ck_assert_ptr_nonnull(r);
        ZSTD_frameHeader fh;
        ck_assert_uint_eq(ZSTD_getFrameHeader(&fh, r->payload.data, r->payload.len), 0);
        if (level <= 1)
            ck_assert_uint_eq(fh.windowSize, 1ull << SN_BATCH_ZSTD_WINDOW_LOG_FAST);
        else
            ck_assert_uint_gt(fh.windowSize, 1ull << SN_BATCH_ZSTD_WINDOW_LOG_FAST);
        sentinel__v1__ingest_request__free_unpacked(r, NULL);
        Sentinel__V1__Batch *pb =
            open_request(out, len, SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD, blen);
        ck_assert_uint_eq(pb->n_events, COPIES * ZN);
        check_event(pb->events[COPIES * ZN - 1], &ev[COPIES * ZN - 1]);
        sentinel__v1__batch__free_unpacked(pb, NULL);
        sn_batch_encoder_destroy(enc);
    }
    free(ev);
    free(one);
}
END_TEST

START_TEST(zstd_hash_log_is_validated)
{
    sn_batch_config cfg;
    sn_batch_encoder *enc = NULL;
    char err[128];
    static const int bad[] = {-1, 1, SN_BATCH_ZSTD_HASH_LOG_MIN - 1,
                              SN_BATCH_ZSTD_HASH_LOG_MAX + 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sn_batch_config_init(&cfg);
        cfg.zstd_hash_log = bad[i];
        ck_assert_int_eq(sn_batch_encoder_create(&cfg, &enc, err, sizeof err), -EINVAL);
        ck_assert_str_eq(err, "batch: zstd_hash_log must be 0 (automatic) or 6 to 20");
        ck_assert_ptr_null(enc);
    }
    cfg.zstd_hash_log = SN_BATCH_ZSTD_HASH_LOG_MIN;
    ck_assert_int_eq(sn_batch_encoder_create(&cfg, &enc, err, sizeof err), 0);
    sn_batch_encoder_destroy(enc);
}
END_TEST

START_TEST(empty_batch_carries_id_and_sequence)
{
    sn_batch_encoder *enc = encoder(3, 10, 4096);
    sn_batch b = {.sidecar_id = ID, .sequence = UINT64_MAX, .dropped_events = 3};
    const uint8_t *out;
    size_t len, blen;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, &blen, NULL, 0), 0);
    Sentinel__V1__Batch *pb =
        open_request(out, len, SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD, blen);
    ck_assert_str_eq(pb->sidecar_id, ID);
    ck_assert_uint_eq(pb->sequence, UINT64_MAX);
    ck_assert_uint_eq(pb->dropped_events, 3);
    ck_assert_uint_eq(pb->n_events, 0);
    ck_assert_uint_eq(pb->n_alerts, 0);
    ck_assert_int_eq(pb->created_unix_nano, 0);
    sentinel__v1__batch__free_unpacked(pb, NULL);
    sn_batch_encoder_destroy(enc);
}
END_TEST

START_TEST(bad_batches_are_refused_with_a_reason)
{
    sn_event ev[3];
    for (int i = 0; i < 3; i++)
        full_event(&ev[i], i);
    sn_batch_encoder *enc = encoder(3, 2, 1u << 20);
    const uint8_t *out = (const uint8_t *)"untouched";
    size_t len = 0;
    char err[128];
    char long_id[SN_BATCH_ID_MAX + 1];
    memset(long_id, 'x', SN_BATCH_ID_MAX);
    long_id[SN_BATCH_ID_MAX] = '\0';

    sn_batch b = {.sidecar_id = ID, .sequence = 0};
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "batch: sequence must be >= 1 (0: alerts only)");
    /* Sequence 0 with alerts only: alerts ahead of their batch (alert_ship.h). */
    sn_local_alert ahead;
    memset(&ahead, 0, sizeof ahead);
    snprintf(ahead.alert_id, sizeof ahead.alert_id, "%s", "5c0ffee0-0000-4000-8000-000000000001");
    snprintf(ahead.service, sizeof ahead.service, "%s", "svc");
    ahead.metric = SN_METRIC_LATENCY_MS;
    ahead.anomaly_type = SN_ANOMALY_LATENCY_SPIKE;
    ahead.detector = SN_DETECT_ZSCORE;
    ahead.severity = SN_SEV_HIGH;
    b = (sn_batch){.sidecar_id = ID, .sequence = 0, .alerts = &ahead, .n_alerts = 1};
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), 0);
    ck_assert_uint_gt(len, 0);
    b.events = ev;
    b.n_events = 1;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "batch: sequence must be >= 1 (0: alerts only)");
    out = (const uint8_t *)"untouched";
    len = 0;
    b = (sn_batch){.sidecar_id = "", .sequence = 1};
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "batch: sidecar_id must be 1 to 128 bytes");
    b.sidecar_id = NULL;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    b.sidecar_id = long_id;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    long_id[SN_BATCH_ID_MAX - 1] = '\0'; /* 128 bytes: the longest accepted */
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), 0);
    out = (const uint8_t *)"untouched";

    b = (sn_batch){.sidecar_id = ID, .sequence = 1, .events = ev, .n_events = 3};
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "batch: 3 events, more than max_events 2");
    b = (sn_batch){.sidecar_id = ID, .sequence = 1, .events = NULL, .n_events = 1};
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "batch: NULL events or alerts with a count");
    sn_local_alert al[1];
    full_alert(&al[0], 0);
    b = (sn_batch){.sidecar_id = ID, .sequence = 1, .alerts = al, .n_alerts = 1001};
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "batch: 1001 alerts, more than max_alerts 1000");
    /* Alerts the aggregator would refuse are refused here, naming the alert. */
    sn_local_alert bad[3];
    for (int i = 0; i < 3; i++)
        full_alert(&bad[i], i);
    b = (sn_batch){.sidecar_id = ID, .sequence = 1, .alerts = bad, .n_alerts = 3};
    bad[2].severity = SN_SEV_NONE;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "batch: alert 2: severity must be low..critical");
    bad[2].severity = SN_SEV_LOW;
    bad[1].metric = SN_METRIC_COUNT;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "batch: alert 1: unknown metric");
    bad[1].metric = SN_METRIC_TTFT_MS;
    bad[0].detector = SN_DETECT_KIND_COUNT;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "batch: alert 0: unknown detector");
    bad[0].detector = SN_DETECT_MAD;
    bad[0].anomaly_type = SN_ANOMALY_TYPE_COUNT;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "batch: alert 0: unknown anomaly_type");
    ck_assert_str_eq((const char *)out, "untouched");
    sn_batch_encoder_destroy(enc);
}
END_TEST

START_TEST(config_is_validated)
{
    sn_batch_config cfg;
    sn_batch_encoder *enc = NULL;
    char err[128];
    sn_batch_config_init(&cfg);
    cfg.zstd_level = SN_BATCH_ZSTD_LEVEL_MIN - 1;
    ck_assert_int_eq(sn_batch_encoder_create(&cfg, &enc, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "zstd_level"));
    for (int level = SN_BATCH_ZSTD_LEVEL_MIN; level <= 0; level++) { /* zstd's fast levels */
        cfg.zstd_level = level;
        ck_assert_int_eq(sn_batch_encoder_create(&cfg, &enc, err, sizeof err), 0);
        sn_batch_encoder_destroy(enc);
        enc = NULL;
    }
    cfg.zstd_level = ZSTD_maxCLevel() + 1;
    ck_assert_int_eq(sn_batch_encoder_create(&cfg, &enc, err, sizeof err), -EINVAL);
    sn_batch_config_init(&cfg);
    cfg.max_events = 0;
    ck_assert_int_eq(sn_batch_encoder_create(&cfg, &enc, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "batch: max_events must be 1 to 1000000");
    sn_batch_config_init(&cfg);
    cfg.max_message_bytes = 1023;
    ck_assert_int_eq(sn_batch_encoder_create(&cfg, &enc, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "batch: max_message_bytes must be 1 KiB to 256 MiB");
    cfg.max_message_bytes = SN_BATCH_MAX_MESSAGE_LIMIT + 1;
    ck_assert_int_eq(sn_batch_encoder_create(&cfg, &enc, err, sizeof err), -EINVAL);
    sn_batch_config_init(&cfg);
    cfg.max_alerts = SN_BATCH_MAX_COUNT_LIMIT + 1;
    ck_assert_int_eq(sn_batch_encoder_create(&cfg, &enc, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(enc);
}
END_TEST

START_TEST(over_the_message_limit_is_emsgsize_and_the_encoder_survives)
{
    enum { NE = 20 }; /* about 4 KiB */
    sn_event ev[NE];
    for (int i = 0; i < NE; i++)
        full_event(&ev[i], i);
    sn_batch_encoder *enc = encoder(3, 100, 2048);
    sn_batch b = {.sidecar_id = ID, .sequence = 1, .events = ev, .n_events = NE};
    const uint8_t *out = NULL;
    size_t len, blen;
    char err[128];
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, &blen, err, sizeof err), -EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(err, "over max_message_bytes 2048"));
    ck_assert_ptr_null(out);
    /* A smaller batch still goes through. */
    b.n_events = 2;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, &blen, err, sizeof err), 0);
    ck_assert_uint_le(blen, 2048);
    Sentinel__V1__Batch *pb =
        open_request(out, len, SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD, blen);
    ck_assert_uint_eq(pb->n_events, 2);
    check_event(pb->events[1], &ev[1]);
    sentinel__v1__batch__free_unpacked(pb, NULL);
    sn_batch_encoder_destroy(enc);
}
END_TEST

START_TEST(uncompressed_request_over_the_limit_is_emsgsize)
{
    /* Find a sidecar id length for which the Batch is exactly the limit: it fits, but its
     * envelope (level 0: the Batch plus a few bytes) does not. */
    enum { MAX = 1024 };
    sn_event ev;
    sn_event_init(&ev);
    memset(ev.service, 's', 100); /* 103 bytes per event on the wire */
    sn_batch_encoder *big = encoder(0, 100, 1u << 20);
    sn_batch_encoder *enc = encoder(0, 100, MAX);
    char id[SN_BATCH_ID_MAX];
    bool hit = false;
    for (int events = 1; events <= 100 && !hit; events++) {
        sn_event many[100];
        for (int i = 0; i < events; i++)
            many[i] = ev;
        for (size_t idlen = 1; idlen < SN_BATCH_ID_MAX && !hit; idlen++) {
            memset(id, 'i', idlen);
            id[idlen] = '\0';
            sn_batch b = {.sidecar_id = id, .sequence = 1, .events = many, .n_events = events};
            const uint8_t *out;
            size_t len, blen;
            ck_assert_int_eq(sn_batch_encode(big, &b, &out, &len, &blen, NULL, 0), 0);
            if (blen != MAX)
                continue;
            hit = true;
            char err[128];
            ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, &blen, err, sizeof err),
                             -EMSGSIZE);
            ck_assert_ptr_nonnull(strstr(err, "request of"));
        }
    }
    ck_assert(hit);
    sn_batch_encoder_destroy(big);
    sn_batch_encoder_destroy(enc);
}
END_TEST

static void check_same_event(const sn_event *a, const sn_event *b)
{
    ck_assert_str_eq(a->service, b->service);
    ck_assert_str_eq(a->model, b->model);
    ck_assert_str_eq(a->provider, b->provider);
    ck_assert_str_eq(a->operation, b->operation);
    ck_assert_str_eq(a->region, b->region);
    ck_assert_str_eq(a->service_version, b->service_version);
    ck_assert_str_eq(a->pod, b->pod);
    ck_assert_str_eq(a->user, b->user);
    ck_assert_str_eq(a->error_type, b->error_type);
    ck_assert_str_eq(a->finish_reason, b->finish_reason);
    ck_assert_mem_eq(a->trace_id, b->trace_id, 16);
    ck_assert_mem_eq(a->span_id, b->span_id, 8);
    ck_assert_int_eq(a->start_unix_nano, b->start_unix_nano);
    ck_assert_int_eq(a->end_unix_nano, b->end_unix_nano);
#define SAME_REAL(f) ck_assert(isnan(a->f) ? isnan(b->f) : a->f == b->f)
    SAME_REAL(latency_ms);
    SAME_REAL(ttft_ms);
    SAME_REAL(cost_usd);
#undef SAME_REAL
    ck_assert_int_eq(a->input_tokens, b->input_tokens);
    ck_assert_int_eq(a->output_tokens, b->output_tokens);
    ck_assert_int_eq(a->total_tokens, b->total_tokens);
    ck_assert_int_eq(a->cache_read_tokens, b->cache_read_tokens);
    ck_assert_int_eq(a->cache_write_tokens, b->cache_write_tokens);
    ck_assert_int_eq(a->reasoning_tokens, b->reasoning_tokens);
    ck_assert_int_eq(a->cost_source, b->cost_source);
    ck_assert_int_eq(a->is_error, b->is_error);
    ck_assert_uint_eq(a->conventions, b->conventions);
}

START_TEST(journal_record_round_trips)
{
    enum { NE = 4 };
    sn_event ev[NE];
    for (int i = 0; i < 3; i++)
        full_event(&ev[i], i);
    sn_event_init(&ev[3]);     /* all unknown */
    ev[0].fact_ranks = 0x1234; /* bookkeeping is not part of the record */

    size_t cap = sn_batch_event_record_bound(NE);
    uint8_t *buf = malloc(cap);
    size_t len = 0;
    ck_assert_int_eq(sn_batch_encode_event_record(ev, NE, buf, cap, &len), 0);
    ck_assert_uint_gt(len, 0);
    ck_assert_uint_le(len, cap);

    sn_event back[NE + 2];
    memset(back, 0xAB, sizeof back);
    size_t n = 0;
    char err[128];
    ck_assert_int_eq(sn_batch_decode_event_record(buf, len, back, NE + 2, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, NE);
    for (int i = 0; i < NE; i++)
        check_same_event(&back[i], &ev[i]);
    ck_assert_uint_eq(back[0].fact_ranks, 0);
    ck_assert_int_eq(back[3].input_tokens, SN_UNKNOWN_COUNT);
    ck_assert(isnan(back[3].latency_ms));

    /* The record is an ordinary Batch with only events, for any protobuf reader. */
    Sentinel__V1__Batch *pb = sentinel__v1__batch__unpack(NULL, len, buf);
    ck_assert_ptr_nonnull(pb);
    ck_assert_uint_eq(pb->n_events, NE);
    ck_assert_str_eq(pb->sidecar_id, "");
    ck_assert_uint_eq(pb->sequence, 0);
    for (int i = 0; i < NE; i++)
        check_event(pb->events[i], &ev[i]);
    sentinel__v1__batch__free_unpacked(pb, NULL);

    /* Too small a buffer says how much is needed; too few slots is -ENOBUFS. */
    size_t need = 0;
    ck_assert_int_eq(sn_batch_encode_event_record(ev, NE, buf, len - 1, &need), -ENOBUFS);
    ck_assert_uint_eq(need, len);
    ck_assert_int_eq(sn_batch_decode_event_record(buf, len, back, NE - 1, &n, err, sizeof err),
                     -ENOBUFS);
    ck_assert_ptr_nonnull(strstr(err, "more than 3 events"));
    ck_assert_int_eq(sn_batch_encode_event_record(NULL, 1, buf, cap, &need), -EINVAL);

    /* Nothing: an empty record. */
    ck_assert_int_eq(sn_batch_encode_event_record(NULL, 0, buf, cap, &len), 0);
    ck_assert_uint_eq(len, 0);
    n = 99;
    ck_assert_int_eq(sn_batch_decode_event_record(buf, 0, back, 1, &n, NULL, 0), 0);
    ck_assert_uint_eq(n, 0);
    free(buf);
}
END_TEST

START_TEST(malformed_journal_records_are_einval)
{
    sn_event ev[2];
    full_event(&ev[0], 1);
    full_event(&ev[1], 2);
    uint8_t buf[4096];
    size_t len;
    ck_assert_int_eq(sn_batch_encode_event_record(ev, 2, buf, sizeof buf, &len), 0);
    sn_event back[2];
    size_t n = 77;
    char err[128];
    /* Cut anywhere inside an event: never a silent partial event. (Cut exactly between two
     * events it is a shorter valid record -- the spool frames records, not this format.) */
    size_t first_len;
    ck_assert_int_eq(sn_batch_encode_event_record(ev, 1, buf, sizeof buf, &first_len), 0);
    ck_assert_int_eq(sn_batch_encode_event_record(ev, 2, buf, sizeof buf, &len), 0);
    ck_assert_int_eq(sn_batch_decode_event_record(buf, first_len, back, 2, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 1);
    n = 77;
    for (size_t cut = 1; cut < len; cut++) {
        if (cut == first_len)
            continue;
        int rc = sn_batch_decode_event_record(buf, cut, back, 2, &n, err, sizeof err);
        ck_assert_int_eq(rc, -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "journal record: "));
    }
    ck_assert_uint_eq(n, 77);

    /* A trace id of the wrong length, written by protoc-c. */
    Sentinel__V1__LlmEvent e = SENTINEL__V1__LLM_EVENT__INIT;
    uint8_t tid[5] = {1, 2, 3, 4, 5};
    e.trace_id.data = tid;
    e.trace_id.len = sizeof tid;
    Sentinel__V1__LlmEvent *ep = &e;
    Sentinel__V1__Batch bm = SENTINEL__V1__BATCH__INIT;
    bm.n_events = 1;
    bm.events = &ep;
    size_t plen = sentinel__v1__batch__pack(&bm, buf);
    ck_assert_int_eq(sn_batch_decode_event_record(buf, plen, back, 2, &n, err, sizeof err),
                     -EINVAL);
    ck_assert_str_eq(err, "journal record: trace_id is not 16 bytes");

    /* A string longer than the event's field. */
    char longsvc[200];
    memset(longsvc, 'a', sizeof longsvc - 1);
    longsvc[sizeof longsvc - 1] = '\0';
    e.trace_id.len = 0;
    e.service = longsvc;
    plen = sentinel__v1__batch__pack(&bm, buf);
    ck_assert_int_eq(sn_batch_decode_event_record(buf, plen, back, 2, &n, err, sizeof err),
                     -EINVAL);
    ck_assert_uint_eq(n, 77);
}
END_TEST

START_TEST(sealing_journal_records_equals_encoding_the_events)
{
    enum { NE = 5 };
    sn_event ev[NE];
    for (int i = 0; i < NE - 1; i++)
        full_event(&ev[i], i);
    sn_event_init(&ev[NE - 1]); /* all unknown */
    sn_local_alert al[2];
    full_alert(&al[0], 0);
    full_alert(&al[1], 1);

    /* Records built one event at a time, in two "requests" (records concatenate). */
    size_t cap = sn_batch_event_record_bound(NE);
    uint8_t *rec = malloc(cap);
    size_t len = 0;
    for (int i = 0; i < NE; i++)
        ck_assert_int_eq(sn_batch_append_event_record(&ev[i], rec, cap, &len), 0);
    /* The same bytes as the whole-record encoder. */
    uint8_t *whole = malloc(cap);
    size_t wlen = 0;
    ck_assert_int_eq(sn_batch_encode_event_record(ev, NE, whole, cap, &wlen), 0);
    ck_assert_uint_eq(wlen, len);
    ck_assert_mem_eq(whole, rec, len);

    sn_batch_config cfg;
    sn_batch_config_init(&cfg);
    cfg.zstd_level = 0;
    sn_batch_encoder *enc;
    char err[256];
    ck_assert_int_eq(sn_batch_encoder_create(&cfg, &enc, err, sizeof err), 0);
    sn_batch classic = {.sidecar_id = ID,
                        .sequence = 9,
                        .events = ev,
                        .n_events = NE,
                        .alerts = al,
                        .n_alerts = 2,
                        .created_unix_nano = 1700000001000000000,
                        .dropped_events = 3};
    const uint8_t *out;
    size_t out_len, blen;
    ck_assert_int_eq(sn_batch_encode(enc, &classic, &out, &out_len, &blen, err, sizeof err), 0);
    uint8_t *first = malloc(out_len);
    memcpy(first, out, out_len);
    size_t first_len = out_len;

    /* Events as records: byte for byte the same IngestRequest. */
    sn_batch raw = classic;
    raw.events = NULL;
    raw.n_events = 0;
    raw.records = rec;
    raw.records_len = len;
    raw.n_record_events = NE;
    ck_assert_int_eq(sn_batch_encode(enc, &raw, &out, &out_len, &blen, err, sizeof err), 0);
    ck_assert_uint_eq(out_len, first_len);
    ck_assert_mem_eq(out, first, out_len);
    /* ... which protoc-c reads field by field. */
    Sentinel__V1__Batch *pb =
        open_request(out, out_len, SENTINEL__V1__COMPRESSION__COMPRESSION_NONE, blen);
    ck_assert_str_eq(pb->sidecar_id, ID);
    ck_assert_uint_eq(pb->sequence, 9);
    ck_assert_uint_eq(pb->n_events, NE);
    for (int i = 0; i < NE; i++)
        check_event(pb->events[i], &ev[i]);
    ck_assert_uint_eq(pb->n_alerts, 2);
    ck_assert_uint_eq(pb->dropped_events, 3);
    sentinel__v1__batch__free_unpacked(pb, NULL);

    /* Mixed: two events as structs, three as records -- in that order. */
    size_t tail = 0;
    for (int i = 2; i < NE; i++)
        ck_assert_int_eq(sn_batch_append_event_record(&ev[i], rec, cap, &tail), 0);
    sn_batch mixed = classic;
    mixed.n_events = 2;
    mixed.records = rec;
    mixed.records_len = tail;
    mixed.n_record_events = NE - 2;
    ck_assert_int_eq(sn_batch_encode(enc, &mixed, &out, &out_len, &blen, err, sizeof err), 0);
    ck_assert_mem_eq(out, first, first_len);

    /* The count of record events counts towards max_events; NULL records with a length. */
    raw.n_record_events = cfg.max_events + 1;
    ck_assert_int_eq(sn_batch_encode(enc, &raw, &out, &out_len, &blen, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "more than max_events"));
    raw.n_record_events = NE;
    raw.records = NULL;
    ck_assert_int_eq(sn_batch_encode(enc, &raw, &out, &out_len, &blen, err, sizeof err), -EINVAL);

    /* Appending into too small a buffer leaves the length alone. */
    size_t small = 0;
    ck_assert_int_eq(sn_batch_append_event_record(&ev[0], rec, 10, &small), -ENOBUFS);
    ck_assert_uint_eq(small, 0);
    ck_assert_int_eq(
        sn_batch_append_event_record(&ev[0], rec, sn_batch_event_record_bound(1), &small), 0);
    sn_batch_encoder_destroy(enc);
    free(first);
    free(whole);
    free(rec);
}
END_TEST

/* Events of one resource, for the group tests: events 0..2 share one, 3 has another, 4 is back
 * to the first (a new run, so a new group). */
static void grouped_events(sn_event *ev, int n)
{
    for (int i = 0; i < n; i++) {
        full_event(&ev[i], i + 1);
        int res = i == 3 ? 2 : 1;
        snprintf(ev[i].service, sizeof ev[i].service, "checkout-%d", res);
        snprintf(ev[i].region, sizeof ev[i].region, "eu-west-%d", res);
        snprintf(ev[i].service_version, sizeof ev[i].service_version, "2.0.%d", res);
        snprintf(ev[i].pod, sizeof ev[i].pod, res == 2 ? "" : "checkout-7d9f"); /* may be empty */
    }
}

START_TEST(grouped_records_seal_as_groups_or_as_the_same_flat_events)
{
    enum { NE = 5 };
    sn_event ev[NE];
    grouped_events(ev, NE);
    size_t cap = sn_batch_grouped_record_bound(NE);
    uint8_t *rec = malloc(cap);
    size_t len = 0;
    sn_batch_grouper g;
    sn_batch_grouper_init(&g);
    for (int i = 0; i < NE; i++)
        ck_assert_int_eq(sn_batch_append_grouped_event(&g, &ev[i], rec, cap, &len), 0);
    ck_assert_int_eq(sn_batch_grouper_close(&g, rec, &len), 0);
    ck_assert_int_eq(sn_batch_grouper_close(&g, rec, &len), 0); /* nothing open: no-op */

    /* Smaller than the flat record: the strings once per run. */
    size_t flat_cap = sn_batch_event_record_bound(NE), flat_len = 0;
    uint8_t *flat = malloc(flat_cap);
    ck_assert_int_eq(sn_batch_encode_event_record(ev, NE, flat, flat_cap, &flat_len), 0);
    ck_assert_uint_lt(len, flat_len);

    /* protoc-c sees one group (the run of three) whose events carry no resource strings, and
     * the runs of one event as flat events (a group of one is written flat). */
    Sentinel__V1__Batch *pb = sentinel__v1__batch__unpack(NULL, len, rec);
    ck_assert_ptr_nonnull(pb);
    ck_assert_uint_eq(pb->n_groups, 1);
    ck_assert_uint_eq(pb->groups[0]->n_events, 3);
    ck_assert_str_eq(pb->groups[0]->service, "checkout-1");
    ck_assert_str_eq(pb->groups[0]->pod, "checkout-7d9f");
    ck_assert_str_eq(pb->groups[0]->events[1]->service, "");
    ck_assert_str_eq(pb->groups[0]->events[1]->pod, "");
    ck_assert_str_eq(pb->groups[0]->events[1]->model, ev[1].model);
    ck_assert_uint_eq(pb->n_events, 2);
    check_event(pb->events[0], &ev[3]);
    check_event(pb->events[1], &ev[4]);
    sentinel__v1__batch__free_unpacked(pb, NULL);

    /* Decoded and scanned like flat events. */
    sn_event back[NE];
    size_t n = 0, n_aggs = 9;
    char err[256];
    ck_assert_int_eq(sn_batch_decode_event_record(rec, len, back, NE, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, NE);
    for (int i = 0; i < NE; i++)
        check_same_event(&back[i], &ev[i]);
    ck_assert_int_eq(sn_batch_decode_event_record(rec, len, back, NE - 1, &n, err, sizeof err),
                     -ENOBUFS);
    ck_assert_int_eq(sn_batch_scan_record(rec, len, &n, &n_aggs, err, sizeof err), 0);
    ck_assert_uint_eq(n, NE);
    ck_assert_uint_eq(n_aggs, 0);

    /* Sealed for an aggregator that reads groups: copied, marked NONE_GROUPS / ZSTD_GROUPS. */
    for (int level = 0; level <= 1; level++) {
        sn_batch_encoder *enc = encoder(level, 100, SN_BATCH_MAX_MESSAGE_DEFAULT);
        sn_batch b = {.sidecar_id = ID,
                      .sequence = 4,
                      .records = rec,
                      .records_len = len,
                      .n_record_events = NE,
                      .groups = true,
                      .created_unix_nano = 1700000001000000000};
        const uint8_t *out;
        size_t out_len, blen;
        ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &out_len, &blen, err, sizeof err), 0);
        pb = open_request(out, out_len,
                          level == 0 ? SENTINEL__V1__COMPRESSION__COMPRESSION_NONE_GROUPS
                                     : SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD_GROUPS,
                          blen);
        ck_assert_uint_eq(pb->n_groups, 1);
        ck_assert_uint_eq(pb->n_events, 2);
        sentinel__v1__batch__free_unpacked(pb, NULL);

        /* A downgrade: the same request converted to flat events, which protoc-c reads with
         * the group's strings in each event (fields out of order) -- every field as sent. */
        sn_batch_config fc;
        sn_batch_config_init(&fc);
        fc.zstd_level = level;
        sn_batch_parts parts = {NULL, NULL, 0};
        ck_assert_int_eq(sn_batch_flatten_request(out, out_len, &fc, &parts, err, sizeof err), 0);
        ck_assert_uint_eq(parts.n, 1);
        uint8_t *conv = parts.data;
        size_t conv_len = parts.end[0];
        Sentinel__V1__IngestRequest *r = sentinel__v1__ingest_request__unpack(NULL, conv_len, conv);
        ck_assert_ptr_nonnull(r);
        size_t conv_blen = r->uncompressed_size;
        sentinel__v1__ingest_request__free_unpacked(r, NULL);
        pb = open_request(conv, conv_len,
                          level == 0 ? SENTINEL__V1__COMPRESSION__COMPRESSION_NONE
                                     : SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD,
                          conv_blen);
        ck_assert_str_eq(pb->sidecar_id, ID);
        ck_assert_uint_eq(pb->sequence, 4);
        ck_assert_int_eq(pb->created_unix_nano, 1700000001000000000);
        ck_assert_uint_eq(pb->n_groups, 0);
        ck_assert_uint_eq(pb->n_events, NE);
        for (int i = 0; i < NE; i++)
            check_event(pb->events[i], &ev[i]);
        sentinel__v1__batch__free_unpacked(pb, NULL);
        /* A flat request has nothing to convert. */
        sn_batch_parts none = {NULL, NULL, 0};
        ck_assert_int_eq(sn_batch_flatten_request(conv, conv_len, &fc, &none, err, sizeof err),
                         -ENOENT);
        ck_assert_ptr_null(none.data);
        sn_batch_parts_free(&parts);

        /* Sealed for an aggregator that does not announce groups: the same bytes as the flat
         * record's batch. */
        b.groups = false;
        ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &out_len, &blen, err, sizeof err), 0);
        pb = open_request(out, out_len,
                          level == 0 ? SENTINEL__V1__COMPRESSION__COMPRESSION_NONE
                                     : SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD,
                          blen);
        ck_assert_uint_eq(pb->n_groups, 0);
        ck_assert_uint_eq(pb->n_events, NE);
        for (int i = 0; i < NE; i++)
            check_event(pb->events[i], &ev[i]);
        sentinel__v1__batch__free_unpacked(pb, NULL);
        sn_batch_encoder_destroy(enc);
    }

    /* Too small a buffer: -ENOBUFS, the record untouched, the group still open. */
    sn_batch_grouper_init(&g);
    size_t small = 0;
    ck_assert_int_eq(sn_batch_append_grouped_event(&g, &ev[0], rec, 10, &small), -ENOBUFS);
    ck_assert_uint_eq(small, 0);
    ck_assert_int_eq(sn_batch_append_grouped_event(NULL, &ev[0], rec, cap, &small), -EINVAL);
    free(flat);
    free(rec);
}
END_TEST

START_TEST(an_event_in_a_group_may_not_name_its_resource)
{
    sn_event ev[2];
    grouped_events(ev, 2);
    size_t cap = sn_batch_grouped_record_bound(2);
    uint8_t *rec = malloc(cap);
    size_t len = 0;
    sn_batch_grouper g;
    sn_batch_grouper_init(&g);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(sn_batch_append_grouped_event(&g, &ev[i], rec, cap, &len), 0);
    ck_assert_int_eq(sn_batch_grouper_close(&g, rec, &len), 0);
    /* A group holding an event that sets its own service (field 1). */
    Sentinel__V1__Batch *pb = sentinel__v1__batch__unpack(NULL, len, rec);
    ck_assert_ptr_nonnull(pb);
    pb->groups[0]->events[1]->service = "intruder";
    size_t blen = sentinel__v1__batch__get_packed_size(pb);
    uint8_t *bad = malloc(blen);
    sentinel__v1__batch__pack(pb, bad);
    pb->groups[0]->events[1]->service = NULL; /* not ours to free */
    sentinel__v1__batch__free_unpacked(pb, NULL);
    size_t n = 0, n_aggs = 0;
    char err[256];
    ck_assert_int_eq(sn_batch_scan_record(bad, blen, &n, &n_aggs, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "must not set service, region, service_version or pod"));
    sn_event back[2];
    ck_assert_int_eq(sn_batch_decode_event_record(bad, blen, back, 2, &n, err, sizeof err),
                     -EINVAL);
    /* Truncated group records are refused, never read past. */
    for (size_t cut = 1; cut < len; cut++)
        ck_assert_int_eq(sn_batch_scan_record(rec, cut, &n, &n_aggs, NULL, 0), -EINVAL);
    free(bad);
    free(rec);
}
END_TEST

START_TEST(scanning_a_record_counts_and_refuses_what_is_not_an_event)
{
    sn_event ev[3];
    for (int i = 0; i < 3; i++)
        full_event(&ev[i], i + 1);
    uint8_t buf[8192];
    size_t len = 0;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(sn_batch_append_event_record(&ev[i], buf, sizeof buf, &len), 0);
    size_t n = 0, na = 0;
    char err[128];
    ck_assert_int_eq(sn_batch_scan_record(buf, len, &n, &na, err, sizeof err), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(na, 0);
    ck_assert_int_eq(sn_batch_scan_record(buf, 0, &n, &na, err, sizeof err), 0);
    ck_assert_uint_eq(n, 0);

    /* A record holding events and an aggregate: each counted; the event decoder skips it. */
    sn_aggregate g;
    memset(&g, 0, sizeof g);
    snprintf(g.service, sizeof g.service, "chat");
    g.metric = SN_METRIC_OUTPUT_TOKENS;
    g.count = 3;
    g.sum = 90;
    g.min = g.max = g.cost_usd = NAN;
    uint8_t mixed[8192];
    size_t mlen = 0;
    ck_assert_int_eq(sn_batch_append_event_record(&ev[0], mixed, sizeof mixed, &mlen), 0);
    ck_assert_int_eq(sn_batch_append_aggregate_record(&g, mixed, sizeof mixed, &mlen), 0);
    ck_assert_int_eq(sn_batch_append_event_record(&ev[1], mixed, sizeof mixed, &mlen), 0);
    ck_assert_int_eq(sn_batch_scan_record(mixed, mlen, &n, &na, err, sizeof err), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(na, 1);
    sn_event back[4];
    ck_assert_int_eq(sn_batch_decode_event_record(mixed, mlen, back, 4, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(back[1].model, ev[1].model);

    /* Cut inside any event: refused (between two events it is a shorter valid record). */
    size_t b1 = 0, b2 = 0;
    uint8_t tmp[8192];
    ck_assert_int_eq(sn_batch_append_event_record(&ev[0], tmp, sizeof tmp, &b1), 0);
    b2 = b1;
    ck_assert_int_eq(sn_batch_append_event_record(&ev[1], tmp, sizeof tmp, &b2), 0);
    n = 77;
    for (size_t cut = 1; cut < len; cut++) {
        if (cut == b1 || cut == b2)
            continue;
        ck_assert_int_eq(sn_batch_scan_record(buf, cut, &n, &na, err, sizeof err), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "journal record: "));
    }
    ck_assert_int_eq(sn_batch_scan_record(buf, len - 1, &n, &na, err, sizeof err), -EINVAL);
    ck_assert_int_eq(sn_batch_scan_record(buf, 2, &n, &na, err, sizeof err), -EINVAL);
    ck_assert_uint_eq(n, 77);

    /* Any field but events (a sidecar_id or a sequence would override the batch's own). */
    Sentinel__V1__Batch bm = SENTINEL__V1__BATCH__INIT;
    bm.sequence = 5;
    size_t plen = sentinel__v1__batch__pack(&bm, buf);
    ck_assert_int_eq(sn_batch_scan_record(buf, plen, &n, &na, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "journal record: field 2 is not an event, an aggregate or a group");
    bm.sequence = 0;
    bm.sidecar_id = "x/1";
    plen = sentinel__v1__batch__pack(&bm, buf);
    ck_assert_int_eq(sn_batch_scan_record(buf, plen, &n, &na, err, sizeof err), -EINVAL);

    /* An event the decoder would refuse (trace id of 5 bytes). */
    Sentinel__V1__LlmEvent e = SENTINEL__V1__LLM_EVENT__INIT;
    uint8_t tid[5] = {1, 2, 3, 4, 5};
    e.trace_id.data = tid;
    e.trace_id.len = sizeof tid;
    Sentinel__V1__LlmEvent *ep = &e;
    Sentinel__V1__Batch eb = SENTINEL__V1__BATCH__INIT;
    eb.n_events = 1;
    eb.events = &ep;
    plen = sentinel__v1__batch__pack(&eb, buf);
    ck_assert_int_eq(sn_batch_scan_record(buf, plen, &n, &na, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "journal record: trace_id is not 16 bytes");
    ck_assert_uint_eq(n, 77);
}
END_TEST

/* The journal-record path writes LlmEvent by hand: byte for byte what nanopb writes, for every
 * kind of value (known, unknown, zero, edge). */
START_TEST(hand_encoded_events_are_nanopbs_bytes)
{
    enum { NE = 12 };
    sn_event ev[NE];
    for (int i = 0; i < NE; i++)
        full_event(&ev[i], i);
    sn_event_init(&ev[1]);  /* everything unknown */
    ev[2].input_tokens = 0; /* zero is a value */
    ev[2].output_tokens = 0;
    ev[2].latency_ms = 0.0;
    ev[2].is_error = false;
    ev[2].conventions = 0;
    ev[3].latency_ms = -0.0;               /* a negative zero is >= 0 */
    ev[3].ttft_ms = INFINITY;              /* not a measurement */
    ev[3].cost_usd = NAN;                  /* cost unknown with a source */
    ev[4].latency_ms = -5.0;               /* a skewed clock */
    ev[4].cost_source = SN_COST_UNKNOWN;   /* a cost without a source is not sent */
    ev[4].total_tokens = (int64_t)1 << 62; /* a ten-byte varint */
    ev[5].cost_usd = -1.0;
    ev[5].conventions = 0xFFFFFFFFu;
    ev[6].start_unix_nano = 0;
    ev[6].end_unix_nano = -1; /* sfixed64 of a negative value */
    memset(ev[7].trace_id, 0, sizeof ev[7].trace_id);
    memset(ev[7].span_id, 0, sizeof ev[7].span_id);
    ev[8].service[0] = '\0';
    ev[8].model[0] = '\0';
    memset(ev[9].user, 'u', sizeof ev[9].user - 1); /* strings at their longest */
    memset(ev[9].region, 'r', sizeof ev[9].region - 1);
    ev[10].cost_usd = 0.0;
    ev[10].cost_source = SN_COST_SPAN;
    ev[11].reasoning_tokens = SN_UNKNOWN_COUNT;
    ev[11].cache_read_tokens = 127; /* one and two varint bytes */
    ev[11].cache_write_tokens = 128;

    size_t cap = sn_batch_event_record_bound(NE);
    uint8_t *byhand = malloc(cap), *bynanopb = malloc(cap);
    for (int i = 0; i < NE; i++) {
        size_t a = 0, b = 0;
        ck_assert_int_eq(sn_batch_append_event_record(&ev[i], byhand, cap, &a), 0);
        ck_assert_int_eq(sn_batch_encode_event_record(&ev[i], 1, bynanopb, cap, &b), 0);
        ck_assert_msg(a == b, "event %d: %zu bytes by hand, %zu by nanopb", i, a, b);
        ck_assert_msg(memcmp(byhand, bynanopb, a) == 0, "event %d: bytes differ", i);
        /* With less room than an event's bound, nanopb writes it: the same bytes. */
        size_t c = 0;
        uint8_t *tight = malloc(b);
        ck_assert_int_eq(sn_batch_append_event_record(&ev[i], tight, b, &c), 0);
        ck_assert_uint_eq(c, b);
        ck_assert_mem_eq(tight, bynanopb, b);
        free(tight);
    }
    free(byhand);
    free(bynanopb);
}
END_TEST

/* A grouped record of n events of one resource with the longest resource strings (what the
 * flat copy repeats in every event), for the flattening tests; the caller frees it. */
static uint8_t *long_resource_record(sn_event *ev, int n, size_t *len)
{
    for (int i = 0; i < n; i++) {
        full_event(&ev[i], i + 1);
        memset(ev[i].service, 's', SN_NAME_MAX - 1);
        memset(ev[i].region, 'r', SN_SHORT_MAX - 1);
        memset(ev[i].service_version, 'v', SN_SHORT_MAX - 1);
        memset(ev[i].pod, 'p', SN_SHORT_MAX - 1);
    }
    size_t cap = sn_batch_grouped_record_bound((size_t)n);
    uint8_t *rec = malloc(cap);
    ck_assert_ptr_nonnull(rec);
    sn_batch_grouper g;
    sn_batch_grouper_init(&g);
    *len = 0;
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(sn_batch_append_grouped_event(&g, &ev[i], rec, cap, len), 0);
    ck_assert_int_eq(sn_batch_grouper_close(&g, rec, len), 0);
    return rec;
}

/* The flat copy of a grouped request is compressed as sealing compresses (zstd_level,
 * zstd_literals, zstd_hash_log): byte for byte the request sealing the same events flat makes. */
START_TEST(flattening_uses_the_configured_zstd_parameters)
{
    enum { NE = 5 };
    sn_event ev[NE];
    grouped_events(ev, NE);
    size_t cap = sn_batch_grouped_record_bound(NE), len = 0;
    uint8_t *rec = malloc(cap);
    sn_batch_grouper g;
    sn_batch_grouper_init(&g);
    for (int i = 0; i < NE; i++)
        ck_assert_int_eq(sn_batch_append_grouped_event(&g, &ev[i], rec, cap, &len), 0);
    ck_assert_int_eq(sn_batch_grouper_close(&g, rec, &len), 0);
    struct {
        int level;
        bool raw;
        int hash_log;
    } cases[] = {{1, true, 0},
                 {1, false, 14},
                 {3, false, 0},
                 {5, true, 8},
                 {0, true, 0},
                 {-2, true, 0},
                 {SN_BATCH_ZSTD_LEVEL_MIN, false, 13}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        sn_batch_config cfg;
        sn_batch_config_init(&cfg);
        cfg.zstd_level = cases[k].level;
        cfg.zstd_raw_literals = cases[k].raw;
        cfg.zstd_hash_log = cases[k].hash_log;
        sn_batch_encoder *enc = NULL;
        char err[256];
        ck_assert_int_eq(sn_batch_encoder_create(&cfg, &enc, err, sizeof err), 0);
        ck_assert_int_eq(sn_batch_encoder_config(enc)->zstd_hash_log, cases[k].hash_log);
        sn_batch b = {.sidecar_id = ID,
                      .sequence = 9,
                      .records = rec,
                      .records_len = len,
                      .n_record_events = NE,
                      .groups = true,
                      .created_unix_nano = 1700000002000000000};
        const uint8_t *out;
        size_t out_len;
        ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &out_len, NULL, err, sizeof err), 0);
        sn_batch_parts parts = {NULL, NULL, 0};
        ck_assert_int_eq(sn_batch_flatten_request(out, out_len, sn_batch_encoder_config(enc),
                                                  &parts, err, sizeof err),
                         0);
        ck_assert_uint_eq(parts.n, 1);
        b.groups = false;
        ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &out_len, NULL, err, sizeof err), 0);
        ck_assert_uint_eq(parts.end[0], out_len);
        ck_assert_mem_eq(parts.data, out, out_len);
        sn_batch_parts_free(&parts);
        sn_batch_parts_free(&parts); /* freed: a no-op */
        sn_batch_encoder_destroy(enc);
    }
    free(rec);
}
END_TEST

/* The split is a wire contract between sidecar versions: a sidecar restarted (or upgraded)
 * while a split batch is half sent makes the parts again from the record, and the aggregator
 * skips the ones it applied by their (id, sequence) -- so the same record must give the same
 * parts in every version. This pins the boundaries of one fixed record (uncompressed, so only
 * the project's own encoding counts). A change that moves them is a format change
 * (docs/wire-formats.md): a new sidecar must keep splitting marked records the old way. */
START_TEST(split_boundaries_are_pinned)
{
    enum { NE = 40 };
    sn_event ev[NE];
    size_t len = 0;
    uint8_t *rec = long_resource_record(ev, NE, &len);
    sn_batch_config cfg;
    sn_batch_config_init(&cfg);
    cfg.zstd_level = 0;
    sn_batch_encoder *enc = NULL;
    char err[256];
    ck_assert_int_eq(sn_batch_encoder_create(&cfg, &enc, err, sizeof err), 0);
    sn_batch b = {.sidecar_id = ID,
                  .sequence = 77,
                  .records = rec,
                  .records_len = len,
                  .n_record_events = NE,
                  .groups = true,
                  .created_unix_nano = 1700000003000000000};
    const uint8_t *out;
    size_t out_len;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &out_len, NULL, err, sizeof err), 0);
    sn_batch_parts parts = {NULL, NULL, 0};
    ck_assert_int_eq(
        sn_batch_flatten_request_floor(out, out_len, &cfg, 4096, &parts, err, sizeof err), 0);
    static const size_t want[] = {6387, 12789, 19194, 19723};
    ck_assert_uint_eq(parts.n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < parts.n; i++)
        ck_assert_msg(parts.end[i] == want[i], "part %zu ends at %zu, pinned %zu", i, parts.end[i],
                      want[i]);
    sn_batch_parts_free(&parts);
    sn_batch_encoder_destroy(enc);
    free(rec);
}
END_TEST

/* The flattener's zstd allocations fail after `left` of them: -ENOMEM (retried by the
 * pipeline), never an error that drops the batch. */
static int g_allocs_left;

static void *limited_alloc(void *ud, size_t n)
{
    (void)ud;
    if (g_allocs_left == 0)
        return NULL;
    g_allocs_left--;
    return malloc(n);
}

static void limited_release(void *ud, void *p)
{
    (void)ud;
    free(p);
}

START_TEST(flattening_out_of_zstd_memory_is_enomem)
{
    enum { NE = 40 };
    sn_event ev[NE];
    size_t len = 0;
    uint8_t *rec = long_resource_record(ev, NE, &len);
    sn_batch_config cfg;
    sn_batch_config_init(&cfg); /* zstd level 1: decompress, then compress */
    sn_batch_encoder *enc = NULL;
    char err[256];
    ck_assert_int_eq(sn_batch_encoder_create(&cfg, &enc, err, sizeof err), 0);
    sn_batch b = {.sidecar_id = ID,
                  .sequence = 3,
                  .records = rec,
                  .records_len = len,
                  .n_record_events = NE,
                  .groups = true};
    const uint8_t *out;
    size_t out_len;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &out_len, NULL, err, sizeof err), 0);
    int enomem = 0, ok_at = -1;
    for (int left = 0; left < 64 && ok_at < 0; left++) {
        g_allocs_left = left;
        sn_batch_flatten_alloc_for_tests(limited_alloc, limited_release, NULL);
        sn_batch_parts parts = {NULL, NULL, 0};
        int rc = sn_batch_flatten_request(out, out_len, &cfg, &parts, err, sizeof err);
        sn_batch_flatten_alloc_for_tests(NULL, NULL, NULL);
        ck_assert_msg(rc == 0 || rc == -ENOMEM, "%d allocations: rc %d (%s)", left, rc, err);
        if (rc == -ENOMEM)
            enomem++;
        else
            ok_at = left;
        sn_batch_parts_free(&parts);
    }
    /* the decompression context, the compression context and its workspace each failed once */
    ck_assert_int_ge(enomem, 3);
    ck_assert_int_ge(ok_at, 3);
    sn_batch_encoder_destroy(enc);
    free(rec);
}
END_TEST

/* Checks the parts of the split of the batch of sequence 12 holding ev[0..ne) and al[0..na):
 * "<id>/part" with sequence (12 << 20) | k but the last, under id and 12; every event and alert
 * once, in order; each request at most `most` bytes. Returns the number of parts. */
static size_t check_parts(const sn_batch_parts *parts, const char *id, int level, size_t most,
                          const sn_event *ev, int ne, const sn_local_alert *al, int na)
{
    int next_event = 0, alerts = 0;
    for (size_t k = 0; k < parts->n; k++) {
        size_t from = k > 0 ? parts->end[k - 1] : 0, plen = parts->end[k] - from;
        ck_assert_uint_le(plen, most);
        Sentinel__V1__IngestRequest *r =
            sentinel__v1__ingest_request__unpack(NULL, plen, parts->data + from);
        ck_assert_ptr_nonnull(r);
        size_t pblen = r->uncompressed_size;
        sentinel__v1__ingest_request__free_unpacked(r, NULL);
        Sentinel__V1__Batch *pb =
            open_request(parts->data + from, plen,
                         level == 0 ? SENTINEL__V1__COMPRESSION__COMPRESSION_NONE
                                    : SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD,
                         pblen);
        char want_id[SN_BATCH_ID_MAX];
        snprintf(want_id, sizeof want_id, "%s%s", id, k + 1 < parts->n ? SN_BATCH_PART_SUFFIX : "");
        ck_assert_str_eq(pb->sidecar_id, want_id);
        ck_assert_uint_eq(pb->sequence,
                          k + 1 < parts->n ? ((uint64_t)12 << SN_BATCH_PART_BITS) | (k + 1) : 12);
        ck_assert_uint_eq(pb->n_groups, 0);
        /* created and dropped once, in the last part */
        ck_assert_uint_eq(pb->dropped_events, k + 1 == parts->n ? 7 : 0);
        ck_assert_int_eq(pb->created_unix_nano, k + 1 == parts->n ? 1700000003000000000 : 0);
        for (size_t i = 0; i < pb->n_events; i++) {
            ck_assert_int_lt(next_event, ne);
            check_event(pb->events[i], &ev[next_event++]);
        }
        for (size_t i = 0; i < pb->n_alerts; i++)
            check_alert(pb->alerts[i], &al[alerts++]);
        sentinel__v1__batch__free_unpacked(pb, NULL);
    }
    ck_assert_int_eq(next_event, ne);
    ck_assert_int_eq(alerts, na);
    return parts->n;
}

/* A grouped batch whose flat copy is over the part budget: split, in order, into requests --
 * the last under the batch's own id, the others under "<id>/part" -- holding every event and
 * alert once. The split depends on the record only: whatever max_message_bytes and zstd say
 * when it is converted (a restart may change them while a split batch is half sent), the same
 * parts with the same ids, sequences and events; a limit lowered under a part is a clear error. */
START_TEST(a_flat_copy_over_the_part_budget_is_split_the_same_whatever_the_settings)
{
    enum { NE = 500, NA = 3 };
    sn_event *ev = calloc(NE, sizeof *ev);
    ck_assert_ptr_nonnull(ev);
    size_t len;
    uint8_t *rec = long_resource_record(ev, NE, &len);
    sn_local_alert al[NA];
    for (int i = 0; i < NA; i++)
        full_alert(&al[i], i);
    sn_batch_encoder *enc = encoder(1, NE, SN_BATCH_MAX_MESSAGE_DEFAULT);
    sn_batch b = {.sidecar_id = ID,
                  .sequence = 12,
                  .records = rec,
                  .records_len = len,
                  .n_record_events = NE,
                  .groups = true,
                  .alerts = al,
                  .n_alerts = NA,
                  .dropped_events = 7,
                  .created_unix_nano = 1700000003000000000};
    const uint8_t *out;
    size_t out_len, glen, blen, flat_blen;
    char err[256];
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &glen, &blen, err, sizeof err), 0);
    uint8_t *grouped = malloc(glen);
    memcpy(grouped, out, glen);
    b.groups = false;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &out_len, &flat_blen, err, sizeof err), 0);
    size_t unit = blen > SN_BATCH_PART_FLOOR ? blen : SN_BATCH_PART_FLOOR;
    ck_assert_uint_gt(flat_blen, 2 * unit);

    /* Converted under the sealing limit or a raised one, with zstd on or off: the same parts. */
    size_t limits[] = {blen + 256, SN_BATCH_MAX_MESSAGE_DEFAULT}, n_parts = 0;
    for (int level = 0; level <= 1; level++) {
        for (size_t lim = 0; lim < sizeof limits / sizeof limits[0]; lim++) {
            sn_batch_config cfg = *sn_batch_encoder_config(enc);
            cfg.zstd_level = level;
            cfg.max_message_bytes = limits[lim];
            sn_batch_parts parts = {NULL, NULL, 0};
            ck_assert_int_eq(sn_batch_flatten_request(grouped, glen, &cfg, &parts, err, sizeof err),
                             0);
            size_t n = check_parts(&parts, ID, level, unit, ev, NE, al, NA);
            ck_assert_uint_ge(n, 3);
            if (n_parts == 0)
                n_parts = n;
            ck_assert_uint_eq(n, n_parts);
            sn_batch_parts_free(&parts);
        }
    }
    /* A limit lowered under a part since: a clear error, not a different split. */
    sn_batch_config cfg = *sn_batch_encoder_config(enc);
    cfg.zstd_level = 0;
    cfg.max_message_bytes = unit / 2;
    sn_batch_parts none = {NULL, NULL, 0};
    ck_assert_int_eq(sn_batch_flatten_request(grouped, glen, &cfg, &none, err, sizeof err),
                     -EMSGSIZE);
    ck_assert_ptr_null(none.data);
    ck_assert_ptr_nonnull(strstr(err, "max_message_bytes"));
    cfg = *sn_batch_encoder_config(enc);

    /* The longest id the part suffix leaves room for (128 bytes with it): split as any other. */
    char long_id[SN_BATCH_ID_MAX];
    size_t most = SN_BATCH_ID_MAX - 1 - (sizeof SN_BATCH_PART_SUFFIX - 1);
    memset(long_id, 'i', most);
    long_id[most] = '\0';
    b.sidecar_id = long_id;
    b.groups = true;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &out_len, NULL, err, sizeof err), 0);
    sn_batch_parts parts = {NULL, NULL, 0};
    ck_assert_int_eq(sn_batch_flatten_request(out, out_len, &cfg, &parts, err, sizeof err), 0);
    check_parts(&parts, long_id, 1, SN_BATCH_MAX_MESSAGE_DEFAULT, ev, NE, al, NA);
    sn_batch_parts_free(&parts);
    /* One byte longer: the batch cannot be delivered flat, -EMSGSIZE. */
    long_id[most] = 'i';
    long_id[most + 1] = '\0';
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &out_len, NULL, err, sizeof err), 0);
    ck_assert_int_eq(sn_batch_flatten_request(out, out_len, &cfg, &none, err, sizeof err),
                     -EMSGSIZE);
    ck_assert_ptr_null(none.data);
    ck_assert_ptr_nonnull(strstr(err, "sidecar_id"));
    /* A sequence with no room for the part number: -EMSGSIZE. */
    b.sidecar_id = ID;
    b.sequence = (uint64_t)1 << (64 - SN_BATCH_PART_BITS);
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &out_len, NULL, err, sizeof err), 0);
    ck_assert_int_eq(sn_batch_flatten_request(out, out_len, &cfg, &none, err, sizeof err),
                     -EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(err, "sequence"));
    /* Few events: one request, whatever the id. */
    size_t few_len;
    uint8_t *few = long_resource_record(ev, 5, &few_len);
    b.sidecar_id = long_id;
    b.n_record_events = 5;
    b.records = few;
    b.records_len = few_len;
    b.sequence = 12;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &out_len, NULL, err, sizeof err), 0);
    ck_assert_int_eq(sn_batch_flatten_request(out, out_len, &cfg, &none, err, sizeof err), 0);
    ck_assert_uint_eq(none.n, 1);
    sn_batch_parts_free(&none);
    free(few);
    /* Truncated: malformed, -EINVAL. */
    ck_assert_int_eq(sn_batch_flatten_request(grouped, glen - 1, &cfg, &none, err, sizeof err),
                     -EINVAL);
    free(grouped);
    sn_batch_encoder_destroy(enc);
    free(rec);
    free(ev);
}
END_TEST

static Suite *batch_suite(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, defaults_are_the_documented_ones);
    tcase_add_test(tc, full_batch_matches_protoc_c_field_by_field);
    tcase_add_test(tc, unknown_facts_are_absent_and_zero_is_a_value);
    tcase_add_test(tc, level_zero_sends_the_batch_uncompressed);
    tcase_add_test(tc, zstd_literals_setting_is_honoured);
    tcase_add_test(tc, zstd_hash_log_setting_is_honoured);
    tcase_add_test(tc, zstd_hash_log_is_validated);
    tcase_add_test(tc, zstd_window_is_64k_at_level_1);
    tcase_add_test(tc, empty_batch_carries_id_and_sequence);
    tcase_add_test(tc, bad_batches_are_refused_with_a_reason);
    tcase_add_test(tc, config_is_validated);
    tcase_add_test(tc, over_the_message_limit_is_emsgsize_and_the_encoder_survives);
    tcase_add_test(tc, uncompressed_request_over_the_limit_is_emsgsize);
    tcase_add_test(tc, journal_record_round_trips);
    tcase_add_test(tc, malformed_journal_records_are_einval);
    tcase_add_test(tc, sealing_journal_records_equals_encoding_the_events);
    tcase_add_test(tc, hand_encoded_events_are_nanopbs_bytes);
    tcase_add_test(tc, scanning_a_record_counts_and_refuses_what_is_not_an_event);
    tcase_add_test(tc, grouped_records_seal_as_groups_or_as_the_same_flat_events);
    tcase_add_test(tc, an_event_in_a_group_may_not_name_its_resource);
    tcase_add_test(tc, flattening_uses_the_configured_zstd_parameters);
    tcase_add_test(tc, flattening_out_of_zstd_memory_is_enomem);
    tcase_add_test(tc, split_boundaries_are_pinned);
    tcase_add_test(tc, a_flat_copy_over_the_part_budget_is_split_the_same_whatever_the_settings);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(batch_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
