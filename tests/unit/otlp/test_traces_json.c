/* Unit tests for shared/otlp/traces_json.c. */
#include "otlp/traces_json.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EVENTS 64

typedef struct sink {
    sn_event ev[MAX_EVENTS];
    int n;
} sink;

static void collect(const sn_event *ev, void *ud)
{
    sink *s = ud;
    ck_assert_int_lt(s->n, MAX_EVENTS);
    s->ev[s->n++] = *ev;
}

static int decode(const char *json, const sn_price_table *prices, sink *s, sn_otlp_trace_stats *st,
                  char *err)
{
    memset(s, 0, sizeof *s);
    return sn_otlp_decode_traces_json((const uint8_t *)json, strlen(json), prices, collect, s, st,
                                      err, SN_OTLP_ERR_MAX);
}

static const char *const price_yaml = "version: \"test-1\"\n"
                                      "currency: USD\n"
                                      "prices:\n"
                                      "  - model: '^test-model(-[0-9]+)?$'\n"
                                      "    input: 2.0\n"
                                      "    output: 8.0\n"
                                      "    effective: 2024-01-01\n";

/* One request, three resources' worth of conventions, every fact the decoder hands on. */
static const char *const full_request =
    "{\"resourceSpans\":["
    " {\"resource\":{\"attributes\":["
    "   {\"key\":\"service.name\",\"value\":{\"stringValue\":\"chatbot-api\"}},"
    "   {\"key\":\"service.version\",\"value\":{\"stringValue\":\"1.4.2\"}},"
    "   {\"key\":\"cloud.region\",\"value\":{\"stringValue\":\"us-east-1\"}},"
    "   {\"key\":\"k8s.pod.name\",\"value\":{\"stringValue\":\"chatbot-7f9c\"}}],"
    "  \"droppedAttributesCount\":0},"
    "  \"schemaUrl\":\"https://opentelemetry.io/schemas/1.24.0\","
    "  \"scopeSpans\":[{\"scope\":{\"name\":\"openai-instrumentation\",\"version\":\"0.1\"},"
    "   \"spans\":["
    /* OpenTelemetry GenAI, with int64 as strings and numbers, and the error status. */
    "    {\"traceId\":\"5B8EFFF798038103D269B633813FC60C\",\"spanId\":\"eee19b7ec3c1b174\","
    "     \"parentSpanId\":\"\",\"name\":\"chat test-model\",\"kind\":3,"
    "     \"startTimeUnixNano\":\"1700000000000000000\",\"endTimeUnixNano\":1700000002500000000,"
    "     \"attributes\":["
    "      {\"key\":\"gen_ai.operation.name\",\"value\":{\"stringValue\":\"chat\"}},"
    "      {\"key\":\"gen_ai.provider.name\",\"value\":{\"stringValue\":\"az.ai.openai\"}},"
    "      {\"key\":\"gen_ai.request.model\",\"value\":{\"stringValue\":\"test-model\"}},"
    "      {\"key\":\"gen_ai.response.model\",\"value\":{\"stringValue\":\"test-model-2\"}},"
    "      {\"key\":\"gen_ai.usage.input_tokens\",\"value\":{\"intValue\":\"1200\"}},"
    "      {\"key\":\"gen_ai.usage.output_tokens\",\"value\":{\"intValue\":300}},"
    "      {\"key\":\"gen_ai.response.finish_reasons\",\"value\":{\"arrayValue\":{\"values\":["
    "        {\"stringValue\":\"length\"},{\"stringValue\":\"stop\"}]}}},"
    "      {\"key\":\"gen_ai.response.time_to_first_chunk\",\"value\":{\"doubleValue\":0.25}},"
    "      {\"key\":\"error.type\",\"value\":{\"stringValue\":\"timeout\"}},"
    "      {\"key\":\"http.request.method\",\"value\":{\"stringValue\":\"POST\"}},"
    "      {\"key\":\"extra\",\"value\":{\"kvlistValue\":{\"values\":[{\"key\":\"a\","
    "        \"value\":{\"intValue\":\"1\"}}]}}}],"
    "     \"droppedAttributesCount\":0,\"events\":[{\"name\":\"x\",\"attributes\":[]}],"
    "     \"links\":[],\"status\":{\"code\":2,\"message\":\"deadline exceeded\"},"
    "     \"futureField\":{\"nested\":[1,2,3]}},"
    /* A plain HTTP span: not an LLM call. */
    "    {\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"0000000000000001\","
    "     \"startTimeUnixNano\":\"1\",\"endTimeUnixNano\":\"2\","
    "     \"attributes\":[{\"key\":\"http.route\",\"value\":{\"stringValue\":\"/\"}}]}"
    "   ]}]},"
    " {\"resource\":{\"attributes\":["
    "   {\"key\":\"service.name\",\"value\":{\"stringValue\":\"rag-svc\"}}]},"
    "  \"scopeSpans\":[{\"spans\":["
    /* OpenInference, with the span's own cost and status OK. */
    "    {\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"1112131415161718\","
    "     \"startTimeUnixNano\":1700000000000000000,\"endTimeUnixNano\":\"1700000001000000000\","
    "     \"status\":{\"code\":1},"
    "     \"attributes\":["
    "      {\"key\":\"openinference.span.kind\",\"value\":{\"stringValue\":\"LLM\"}},"
    "      {\"key\":\"llm.model_name\",\"value\":{\"stringValue\":\"gemini-1.5-pro\"}},"
    "      {\"key\":\"llm.provider\",\"value\":{\"stringValue\":\"vertex_ai\"}},"
    "      {\"key\":\"llm.token_count.prompt\",\"value\":{\"intValue\":100}},"
    "      {\"key\":\"llm.token_count.completion\",\"value\":{\"intValue\":\"50\"}},"
    "      {\"key\":\"llm.token_count.total\",\"value\":{\"intValue\":150}},"
    "      {\"key\":\"llm.cost.total\",\"value\":{\"doubleValue\":0.0123}}]},"
    /* OpenLLMetry, status by enum name. */
    "    {\"traceId\":\"a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0\",\"spanId\":\"b0b0b0b0b0b0b0b0\","
    "     "
    "\"startTimeUnixNano\":\"1700000000000000000\",\"endTimeUnixNano\":\"1700000000400000000\","
    "     \"status\":{\"code\":\"STATUS_CODE_ERROR\"},"
    "     \"attributes\":["
    "      {\"key\":\"llm.request.type\",\"value\":{\"stringValue\":\"chat\"}},"
    "      {\"key\":\"gen_ai.system\",\"value\":{\"stringValue\":\"openai\"}},"
    "      {\"key\":\"gen_ai.request.model\",\"value\":{\"stringValue\":\"unknown-model\"}},"
    "      {\"key\":\"gen_ai.usage.prompt_tokens\",\"value\":{\"intValue\":\"70\"}},"
    "      {\"key\":\"gen_ai.usage.completion_tokens\",\"value\":{\"intValue\":30}},"
    "      {\"key\":\"llm.usage.total_tokens\",\"value\":{\"intValue\":\"100\"}},"
    "      {\"key\":\"gen_ai.usage.cache_read_input_tokens\",\"value\":{\"intValue\":\"20\"}}]}"
    "  ]}]}"
    "]}";

START_TEST(full_request_all_conventions)
{
    char err[SN_OTLP_ERR_MAX];
    sn_price_table *prices =
        sn_price_table_parse(price_yaml, strlen(price_yaml), "test.yaml", err, sizeof err);
    ck_assert_msg(prices != NULL, "%s", err);
    sink s;
    sn_otlp_trace_stats st;
    ck_assert_msg(decode(full_request, prices, &s, &st, err) == 0, "%s", err);
    ck_assert_int_eq(st.resource_spans, 2);
    ck_assert_int_eq(st.scope_spans, 2);
    ck_assert_int_eq(st.spans, 4);
    ck_assert_int_eq(st.llm_events, 3);
    ck_assert_int_eq(st.rejected, 0);
    ck_assert_int_eq(st.values_ignored, 1); /* the kvlist */
    ck_assert_int_eq(s.n, 3);

    const sn_event *g = &s.ev[0];
    ck_assert_str_eq(g->service, "chatbot-api");
    ck_assert_str_eq(g->service_version, "1.4.2");
    ck_assert_str_eq(g->region, "us-east-1");
    ck_assert_str_eq(g->pod, "chatbot-7f9c");
    ck_assert_str_eq(g->operation, "chat");
    ck_assert_str_eq(g->provider, "azure.ai.openai");
    ck_assert_str_eq(g->model, "test-model-2");
    ck_assert_int_eq(g->input_tokens, 1200);
    ck_assert_int_eq(g->output_tokens, 300);
    ck_assert_int_eq(g->total_tokens, 1500);
    ck_assert_str_eq(g->error_type, "timeout");
    ck_assert(g->is_error);
    ck_assert(g->finish_reason[0] != '\0');
    ck_assert_int_eq(g->start_unix_nano, 1700000000000000000LL);
    ck_assert_int_eq(g->end_unix_nano, 1700000002500000000LL);
    ck_assert_double_eq_tol(g->latency_ms, 2500.0, 1e-6);
    ck_assert_double_eq_tol(g->ttft_ms, 250.0, 1e-6);
    const uint8_t tid[16] = {0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03,
                             0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c};
    const uint8_t sid[8] = {0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74};
    ck_assert_mem_eq(g->trace_id, tid, 16);
    ck_assert_mem_eq(g->span_id, sid, 8);
    ck_assert_int_eq(g->cost_source, SN_COST_PRICE_TABLE);
    ck_assert_double_eq_tol(g->cost_usd, 1200 * 2.0e-6 + 300 * 8.0e-6, 1e-12);
    ck_assert(g->conventions & SN_CONV_GENAI);

    const sn_event *oi = &s.ev[1];
    ck_assert_str_eq(oi->service, "rag-svc");
    ck_assert_str_eq(oi->service_version, ""); /* the template is per resource */
    ck_assert_str_eq(oi->region, "");
    ck_assert_str_eq(oi->model, "gemini-1.5-pro");
    ck_assert_str_eq(oi->provider, "gcp.vertex_ai");
    ck_assert_int_eq(oi->input_tokens, 100);
    ck_assert_int_eq(oi->output_tokens, 50);
    ck_assert_int_eq(oi->total_tokens, 150);
    ck_assert_int_eq(oi->cost_source, SN_COST_SPAN);
    ck_assert_double_eq_tol(oi->cost_usd, 0.0123, 1e-12);
    ck_assert(!oi->is_error);
    ck_assert_double_eq_tol(oi->latency_ms, 1000.0, 1e-6);
    ck_assert(oi->conventions & SN_CONV_OPENINFERENCE);

    const sn_event *ol = &s.ev[2];
    ck_assert_str_eq(ol->service, "rag-svc");
    ck_assert_str_eq(ol->provider, "openai");
    ck_assert_str_eq(ol->model, "unknown-model");
    ck_assert_int_eq(ol->input_tokens, 70);
    ck_assert_int_eq(ol->output_tokens, 30);
    ck_assert_int_eq(ol->total_tokens, 100);
    ck_assert_int_eq(ol->cache_read_tokens, 20);
    ck_assert(ol->is_error);
    ck_assert(isnan(ol->cost_usd)); /* unknown model: cost unknown, never 0 */
    ck_assert_int_eq(ol->cost_source, SN_COST_UNKNOWN);
    ck_assert(ol->conventions & SN_CONV_OPENLLMETRY);

    /* No callback, no stats, no error buffer: still fine. */
    ck_assert_int_eq(sn_otlp_decode_traces_json((const uint8_t *)full_request, strlen(full_request),
                                                NULL, NULL, NULL, NULL, NULL, 0),
                     0);
    sn_price_table_destroy(prices);
}
END_TEST

/* A one-span request with the given id/time members and GenAI attributes. */
static void one_span(char *out, size_t size, const char *members)
{
    snprintf(out, size,
             "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{%s,\"attributes\":["
             "{\"key\":\"gen_ai.request.model\",\"value\":{\"stringValue\":\"m\"}},"
             "{\"key\":\"gen_ai.usage.input_tokens\",\"value\":{\"intValue\":\"5\"}}]}]}]}]}",
             members);
}

START_TEST(int64_as_string_or_number)
{
    const char *forms[] = {
        "\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405060708\","
        "\"startTimeUnixNano\":\"9000000000000000000\",\"endTimeUnixNano\":9000000000000000001",
        "\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405060708\","
        "\"startTimeUnixNano\":9000000000000000000,\"endTimeUnixNano\":\"9000000000000000001\"",
    };
    for (int i = 0; i < 2; i++) {
        char json[1024], err[SN_OTLP_ERR_MAX];
        one_span(json, sizeof json, forms[i]);
        sink s;
        sn_otlp_trace_stats st;
        ck_assert_msg(decode(json, NULL, &s, &st, err) == 0, "%s", err);
        ck_assert_int_eq(s.n, 1);
        ck_assert_int_eq(s.ev[0].start_unix_nano, 9000000000000000000LL);
        ck_assert_int_eq(s.ev[0].end_unix_nano, 9000000000000000001LL);
        ck_assert_int_eq(s.ev[0].input_tokens, 5);
    }
    /* Past int64, negative, or not a number: the span's time is refused. */
    const char *bad[] = {
        "\"9223372036854775808\"", "-1", "\"-5\"", "\"12x\"", "\"\"", "1.5", "true"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char members[256], json[1024], err[SN_OTLP_ERR_MAX];
        snprintf(members, sizeof members,
                 "\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":"
                 "\"0102030405060708\",\"startTimeUnixNano\":%s,\"endTimeUnixNano\":\"5\"",
                 bad[i]);
        one_span(json, sizeof json, members);
        sink s;
        sn_otlp_trace_stats st;
        ck_assert_msg(decode(json, NULL, &s, &st, err) == 0, "%s", err);
        ck_assert_msg(st.rejected_by[SN_OTLP_REJECT_TIME] == 1, "%s accepted", bad[i]);
        ck_assert_int_eq(s.n, 0);
    }
    /* An LLM span that ends before it starts is refused too. */
    char json[1024], err[SN_OTLP_ERR_MAX];
    one_span(json, sizeof json,
             "\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405060708\","
             "\"startTimeUnixNano\":\"10\",\"endTimeUnixNano\":\"9\"");
    sink s;
    sn_otlp_trace_stats st;
    ck_assert_int_eq(decode(json, NULL, &s, &st, err), 0);
    ck_assert_int_eq(st.rejected_by[SN_OTLP_REJECT_TIME], 1);
}
END_TEST

START_TEST(bad_ids_reject_only_their_span)
{
    static const struct {
        const char *trace, *span;
        sn_otlp_reject why;
    } cases[] = {
        {"0102030405060708090a0b0c0d0e0f1", "0102030405060708", SN_OTLP_REJECT_TRACE_ID},
        {"0102030405060708090a0b0c0d0e0f1z", "0102030405060708", SN_OTLP_REJECT_TRACE_ID},
        {"00000000000000000000000000000000", "0102030405060708", SN_OTLP_REJECT_TRACE_ID},
        {"AQIDBAUGBwgJCgsMDQ4PEA==", "0102030405060708", SN_OTLP_REJECT_TRACE_ID}, /* base64 */
        {"0102030405060708090a0b0c0d0e0f10", "010203040506070", SN_OTLP_REJECT_SPAN_ID},
        {"0102030405060708090a0b0c0d0e0f10", "01020304050607080", SN_OTLP_REJECT_SPAN_ID},
        {"0102030405060708090a0b0c0d0e0f10", "0000000000000000", SN_OTLP_REJECT_SPAN_ID},
        {"0102030405060708090a0b0c0d0e0f10", " 102030405060708", SN_OTLP_REJECT_SPAN_ID},
    };
    size_t n = sizeof cases / sizeof cases[0];
    /* Each bad span sits between two good ones in the same request. */
    size_t cap = 64 * 1024, pos = 0;
    char *json = malloc(cap);
    const char *attrs = "\"attributes\":[{\"key\":\"gen_ai.request.model\",\"value\":"
                        "{\"stringValue\":\"m\"}}]";
    pos += (size_t)snprintf(json + pos, cap - pos,
                            "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[");
    for (size_t i = 0; i < n; i++) {
        pos += (size_t)snprintf(json + pos, cap - pos,
                                "{\"traceId\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"spanId\":"
                                "\"bbbbbbbbbbbbbbbb\",%s},"
                                "{\"traceId\":\"%s\",\"spanId\":\"%s\",%s},",
                                attrs, cases[i].trace, cases[i].span, attrs);
    }
    pos += (size_t)snprintf(json + pos, cap - pos,
                            "{\"spanId\":\"bbbbbbbbbbbbbbbb\",%s},"
                            "{\"traceId\":42,\"spanId\":\"bbbbbbbbbbbbbbbb\",%s},"
                            "{\"traceId\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"spanId\":"
                            "\"BBBBBBBBBBBBBBBB\",%s}]}]}]}",
                            attrs, attrs, attrs);
    ck_assert_uint_lt(pos, cap);
    char err[SN_OTLP_ERR_MAX];
    sink s;
    sn_otlp_trace_stats st;
    ck_assert_msg(decode(json, NULL, &s, &st, err) == 0, "%s", err);
    ck_assert_int_eq(st.spans, 2 * n + 3);
    ck_assert_int_eq(st.llm_events, n + 1);
    ck_assert_int_eq(st.rejected, n + 2);
    ck_assert_int_eq(st.rejected_by[SN_OTLP_REJECT_TRACE_ID], 4 + 2);
    ck_assert_int_eq(st.rejected_by[SN_OTLP_REJECT_SPAN_ID], 4);
    ck_assert_int_eq(s.n, (int)n + 1);
    for (int i = 0; i < s.n; i++)
        ck_assert_int_eq(s.ev[i].span_id[0], 0xbb); /* upper-case hex works too */
    free(json);
}
END_TEST

START_TEST(malformed_documents_are_errors)
{
    static const struct {
        const char *json;
        const char *says;
    } cases[] = {
        {"", "invalid JSON"},
        {"{", "invalid JSON"},
        {"{}x", "invalid JSON"},
        {"null", "invalid JSON"}, /* jansson refuses a non-container root */
        {"[]", "not a JSON object"},
        {"{\"resourceSpans\":{}}", "resourceSpans is not an array"},
        {"{\"resourceSpans\":[1]}", "resourceSpans[0] is not an object"},
        {"{\"resourceSpans\":[{\"resource\":[]}]}", "resource is not an object"},
        {"{\"resourceSpans\":[{\"resource\":{\"attributes\":{}}}]}", "attributes is not an array"},
        {"{\"resourceSpans\":[{\"resource\":{\"attributes\":[\"k\"]}}]}",
         "attributes[0] is not an object"},
        {"{\"resourceSpans\":[{\"scopeSpans\":\"x\"}]}", "scopeSpans is not an array"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[[]]}]}", "scopeSpans[0] is not an object"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":7}]}]}", "spans is not an array"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[[]]}]}]}", "spans[0] is not an object"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"status\":\"x\"}]}]}]}",
         "status is not an object"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"attributes\":[{}, 5]}]}]}]}",
         "spans[0].attributes[1] is not an object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[SN_OTLP_ERR_MAX];
        sink s;
        sn_otlp_trace_stats st;
        ck_assert_msg(decode(cases[i].json, NULL, &s, &st, err) == -1, "accepted %s",
                      cases[i].json);
        ck_assert_msg(strstr(err, cases[i].says) != NULL, "'%s': '%s'", cases[i].json, err);
    }
    /* A malformed part later in the request: no event was delivered before the error. */
    const char *late = "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{"
                       "\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":"
                       "\"0102030405060708\",\"attributes\":[{\"key\":\"gen_ai.request.model\","
                       "\"value\":{\"stringValue\":\"m\"}}]}]}]},7]}";
    char err[SN_OTLP_ERR_MAX];
    sink s;
    ck_assert_int_eq(decode(late, NULL, &s, NULL, err), -1);
    ck_assert_int_eq(s.n, 0);
    /* Empty and null members are empty requests. */
    const char *empty[] = {"{}", "{\"resourceSpans\":null}", "{\"resourceSpans\":[]}",
                           "{\"resourceSpans\":[{}]}",
                           "{\"resourceSpans\":[{\"scopeSpans\":"
                           "[{\"spans\":null}]}]}"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        sn_otlp_trace_stats st;
        ck_assert_msg(decode(empty[i], NULL, &s, &st, err) == 0, "%s: %s", empty[i], err);
        ck_assert_int_eq(st.spans, 0);
    }
}
END_TEST

START_TEST(odd_values_are_ignored_not_fatal)
{
    char long_key[SN_OTLP_KEY_MAX + 8];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = 0;
    char *long_val = malloc(4 * SN_OTLP_VALUE_MAX);
    memset(long_val, 'm', 4 * SN_OTLP_VALUE_MAX - 1);
    long_val[4 * SN_OTLP_VALUE_MAX - 1] = 0;
    size_t cap = 16 * SN_OTLP_VALUE_MAX;
    char *json = malloc(cap);
    snprintf(
        json, cap,
        "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{"
        "\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405060708\","
        "\"attributes\":["
        "{\"key\":\"%s\",\"value\":{\"stringValue\":\"x\"}},"
        "{\"key\":\"gen_ai.request.model\",\"value\":{\"stringValue\":\"%s\"}},"
        "{\"key\":\"gen_ai.usage.input_tokens\",\"value\":{\"intValue\":\"12abc\"}},"
        "{\"key\":\"gen_ai.usage.output_tokens\",\"value\":{\"intValue\":{}}},"
        "{\"key\":\"gen_ai.response.finish_reasons\",\"value\":{\"arrayValue\":{\"values\":"
        "[{\"arrayValue\":{\"values\":[]}},{\"kvlistValue\":{}},{\"stringValue\":\"stop\"}]}}},"
        "{\"key\":\"blob\",\"value\":{\"bytesValue\":\"aGVsbG8=\"}},"
        "{\"key\":\"badblob\",\"value\":{\"bytesValue\":\"***\"}},"
        "{\"key\":\"d\",\"value\":{\"doubleValue\":\"NaN\"}},"
        "{\"key\":\"d2\",\"value\":{\"doubleValue\":\"-Infinity\"}},"
        "{\"value\":{\"stringValue\":\"no key\"}},"
        "{\"key\":7,\"value\":{\"stringValue\":\"numeric key\"}},"
        "{\"key\":\"nothing\"},"
        "{\"key\":\"empty\",\"value\":{}},"
        "{\"key\":\"b\",\"value\":{\"boolValue\":\"yes\"}}"
        "]}]}]}]}",
        long_key, long_val);
    char err[SN_OTLP_ERR_MAX];
    sink s;
    sn_otlp_trace_stats st;
    ck_assert_msg(decode(json, NULL, &s, &st, err) == 0, "%s", err);
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(st.keys_skipped, 1);
    ck_assert_int_eq(st.values_truncated, 1);
    ck_assert_int_eq(st.values_ignored, 2);
    ck_assert_int_eq(s.ev[0].input_tokens, SN_UNKNOWN_COUNT);
    ck_assert_int_eq(s.ev[0].output_tokens, SN_UNKNOWN_COUNT);
    ck_assert_str_eq(s.ev[0].finish_reason, "stop");
    ck_assert_uint_eq(strlen(s.ev[0].model), SN_NAME_MAX - 1); /* truncated into the field */
    free(json);
    free(long_val);
}
END_TEST

START_TEST(deep_nesting_and_huge_documents_are_bounded)
{
    char err[SN_OTLP_ERR_MAX];
    sink s;
    /* 200000 levels of arrays: refused before jansson recurses. */
    size_t depth = 200000;
    char *deep = malloc(2 * depth + 32);
    size_t pos = 0;
    pos += (size_t)snprintf(deep, 32, "{\"x\":");
    memset(deep + pos, '[', depth);
    pos += depth;
    memset(deep + pos, ']', depth);
    pos += depth;
    deep[pos++] = '}';
    deep[pos] = 0;
    ck_assert_int_eq(decode(deep, NULL, &s, NULL, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "nested deeper"));
    free(deep);

    /* Just inside the depth limit is fine. */
    char *ok = malloc(4 * SN_OTLP_JSON_MAX_DEPTH + 32);
    pos = (size_t)snprintf(ok, 32, "{\"x\":");
    memset(ok + pos, '[', SN_OTLP_JSON_MAX_DEPTH - 1);
    pos += SN_OTLP_JSON_MAX_DEPTH - 1;
    memset(ok + pos, ']', SN_OTLP_JSON_MAX_DEPTH - 1);
    pos += SN_OTLP_JSON_MAX_DEPTH - 1;
    ok[pos++] = '}';
    ok[pos] = 0;
    ck_assert_msg(decode(ok, NULL, &s, NULL, err) == 0, "%s", err);
    free(ok);

    /* Four million tiny values in an unknown field: refused by the node budget. */
    size_t count = 4u << 20;
    char *huge = malloc(2 * count + 64);
    pos = (size_t)snprintf(huge, 64, "{\"unknown\":[0");
    for (size_t i = 1; i < count; i++) {
        huge[pos++] = ',';
        huge[pos++] = '0';
    }
    pos += (size_t)snprintf(huge + pos, 64, "]}");
    ck_assert_int_eq(decode(huge, NULL, &s, NULL, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "too many values"));
    free(huge);

    /* Commas and brackets inside strings do not count. */
    size_t slen = 3u << 20;
    char *str = malloc(slen + 64);
    pos = (size_t)snprintf(str, 64, "{\"unknown\":\"");
    for (size_t i = 0; i < slen; i++)
        str[pos++] = (i % 3 == 0) ? ',' : (i % 3 == 1) ? '[' : '{';
    pos += (size_t)snprintf(str + pos, 64, "\"}");
    ck_assert_msg(decode(str, NULL, &s, NULL, err) == 0, "%s", err);
    free(str);
}
END_TEST

START_TEST(a_large_real_request_decodes)
{
    /* 2000 spans of 12 attributes each, ~1.6 MB: inside every bound. */
    enum { SPANS = 2000 };
    size_t cap = SPANS * 1024 + 256, pos = 0;
    char *json = malloc(cap);
    pos += (size_t)snprintf(json, cap,
                            "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":"
                            "\"service.name\",\"value\":{\"stringValue\":\"bulk\"}}]},"
                            "\"scopeSpans\":[{\"spans\":[");
    for (int i = 0; i < SPANS; i++) {
        pos += (size_t)snprintf(
            json + pos, cap - pos,
            "%s{\"traceId\":\"%032x\",\"spanId\":\"%016x\",\"startTimeUnixNano\":\"%d\","
            "\"endTimeUnixNano\":\"%d\",\"attributes\":["
            "{\"key\":\"gen_ai.operation.name\",\"value\":{\"stringValue\":\"chat\"}},"
            "{\"key\":\"gen_ai.request.model\",\"value\":{\"stringValue\":\"gpt-4o\"}},"
            "{\"key\":\"gen_ai.usage.input_tokens\",\"value\":{\"intValue\":\"%d\"}},"
            "{\"key\":\"gen_ai.usage.output_tokens\",\"value\":{\"intValue\":%d}},"
            "{\"key\":\"a1\",\"value\":{\"stringValue\":\"v\"}},"
            "{\"key\":\"a2\",\"value\":{\"stringValue\":\"v\"}},"
            "{\"key\":\"a3\",\"value\":{\"stringValue\":\"v\"}},"
            "{\"key\":\"a4\",\"value\":{\"stringValue\":\"v\"}},"
            "{\"key\":\"a5\",\"value\":{\"stringValue\":\"v\"}},"
            "{\"key\":\"a6\",\"value\":{\"stringValue\":\"v\"}},"
            "{\"key\":\"a7\",\"value\":{\"stringValue\":\"v\"}},"
            "{\"key\":\"a8\",\"value\":{\"boolValue\":true}}]}",
            i ? "," : "", i + 1, i + 1, i * 10, i * 10 + 5, i, i % 50);
    }
    pos += (size_t)snprintf(json + pos, cap - pos, "]}]}]}");
    ck_assert_uint_lt(pos, cap);
    sn_otlp_trace_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_msg(sn_otlp_decode_traces_json((uint8_t *)json, pos, NULL, NULL, NULL, &st, err,
                                             sizeof err) == 0,
                  "%s", err);
    ck_assert_int_eq(st.spans, SPANS);
    ck_assert_int_eq(st.llm_events, SPANS);
    ck_assert_int_eq(st.rejected, 0);
    free(json);
}
END_TEST

/* Found by fuzz_otlp_logs_json (the JSON decoders share the message): a line break or a raw byte
 * of the input quoted by jansson's error text reached the one-line message. */
START_TEST(syntax_errors_are_one_line_of_ascii)
{
    static const uint8_t crash[] = {'{', '"', '\\', '\n', 0xa5, '\r', 'b'};
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(
        sn_otlp_decode_traces_json(crash, sizeof crash, NULL, NULL, NULL, NULL, err, sizeof err),
        -1);
    ck_assert_msg(strncmp(err, "invalid JSON at line", 20) == 0, "%s", err);
    for (const char *c = err; *c != '\0'; c++)
        ck_assert_msg(*c >= 0x20 && *c < 0x7f, "byte 0x%02x in '%s'", (unsigned char)*c, err);
}
END_TEST

static Suite *json_suite(void)
{
    Suite *s = suite_create("otlp_json");
    TCase *tc = tcase_create("decode");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, full_request_all_conventions);
    tcase_add_test(tc, int64_as_string_or_number);
    tcase_add_test(tc, bad_ids_reject_only_their_span);
    tcase_add_test(tc, malformed_documents_are_errors);
    tcase_add_test(tc, syntax_errors_are_one_line_of_ascii);
    tcase_add_test(tc, odd_values_are_ignored_not_fatal);
    tcase_add_test(tc, deep_nesting_and_huge_documents_are_bounded);
    tcase_add_test(tc, a_large_real_request_decodes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(json_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
