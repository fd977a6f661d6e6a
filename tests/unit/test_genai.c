/* Unit tests for shared/genai.c: attribute conventions to LLM facts. */
#include "genai.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- helpers: one attribute of each type --- */

static bool s_attr(sn_event *ev, const char *key, const char *val)
{
    sn_attr_value v = {.type = SN_ATTR_STRING, .str = val, .len = strlen(val)};
    return sn_genai_span_attr(ev, key, strlen(key), &v);
}

static bool i_attr(sn_event *ev, const char *key, int64_t val)
{
    sn_attr_value v = {.type = SN_ATTR_INT, .i = val};
    return sn_genai_span_attr(ev, key, strlen(key), &v);
}

static bool d_attr(sn_event *ev, const char *key, double val)
{
    sn_attr_value v = {.type = SN_ATTR_DOUBLE, .d = val};
    return sn_genai_span_attr(ev, key, strlen(key), &v);
}

static bool b_attr(sn_event *ev, const char *key, bool val)
{
    sn_attr_value v = {.type = SN_ATTR_BOOL, .b = val};
    return sn_genai_span_attr(ev, key, strlen(key), &v);
}

static void r_attr(sn_event *ev, const char *key, const char *val)
{
    sn_attr_value v = {.type = SN_ATTR_STRING, .str = val, .len = strlen(val)};
    sn_genai_resource_attr(ev, key, strlen(key), &v);
}

static sn_event fresh(void)
{
    sn_event ev;
    sn_event_init(&ev);
    ev.start_unix_nano = INT64_C(1750000000) * 1000000000;
    ev.end_unix_nano = ev.start_unix_nano + INT64_C(2500) * 1000000; /* 2.5 s */
    return ev;
}

static sn_price_table *prices(void)
{
    char err[256];
    sn_price_table *t = sn_price_table_default(err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    return t;
}

/* --- one test per convention, every attribute --- */

START_TEST(genai_convention_every_attribute)
{
    sn_event ev = fresh();
    ck_assert(s_attr(&ev, "gen_ai.operation.name", "chat"));
    ck_assert(s_attr(&ev, "gen_ai.provider.name", "openai"));
    ck_assert(s_attr(&ev, "gen_ai.request.model", "gpt-4o"));
    ck_assert(s_attr(&ev, "gen_ai.response.model", "gpt-4o-2024-08-06"));
    ck_assert(i_attr(&ev, "gen_ai.usage.input_tokens", 1200));
    ck_assert(i_attr(&ev, "gen_ai.usage.output_tokens", 300));
    ck_assert(i_attr(&ev, "gen_ai.usage.cache_read.input_tokens", 1000));
    ck_assert(i_attr(&ev, "gen_ai.usage.cache_creation.input_tokens", 100));
    ck_assert(i_attr(&ev, "gen_ai.usage.reasoning.output_tokens", 50));
    ck_assert(s_attr(&ev, "gen_ai.response.finish_reasons", "stop"));
    ck_assert(s_attr(&ev, "gen_ai.response.finish_reasons", "length")); /* 2nd element */
    ck_assert(d_attr(&ev, "gen_ai.response.time_to_first_chunk", 0.35));
    ck_assert(!s_attr(&ev, "error.type", "timeout")); /* not an LLM convention by itself */
    ck_assert_uint_eq(ev.conventions, SN_CONV_GENAI);

    sn_price_table *t = prices();
    ck_assert(sn_genai_finish(&ev, t));
    ck_assert_str_eq(ev.operation, "chat");
    ck_assert_str_eq(ev.provider, "openai");
    ck_assert_str_eq(ev.model, "gpt-4o-2024-08-06");
    ck_assert(sn_genai_model_from_response(&ev));
    ck_assert_int_eq(ev.input_tokens, 1200);
    ck_assert_int_eq(ev.output_tokens, 300);
    ck_assert_int_eq(ev.total_tokens, 1500); /* derived */
    ck_assert_int_eq(ev.cache_read_tokens, 1000);
    ck_assert_int_eq(ev.cache_write_tokens, 100);
    ck_assert_int_eq(ev.reasoning_tokens, 50);
    ck_assert_str_eq(ev.finish_reason, "stop");
    ck_assert_double_eq_tol(ev.ttft_ms, 350.0, 1e-9);
    ck_assert_str_eq(ev.error_type, "timeout");
    ck_assert(ev.is_error);
    ck_assert_double_eq_tol(ev.latency_ms, 2500.0, 1e-9);
    /* gpt-4o-2024-08-06: in 2.50, cache read 1.25, no cache write price (input), out 10. */
    ck_assert_int_eq(ev.cost_source, SN_COST_PRICE_TABLE);
    ck_assert_double_eq_tol(ev.cost_usd, (100 * 2.5 + 1000 * 1.25 + 100 * 2.5 + 300 * 10.0) / 1e6,
                            1e-12);
    sn_price_table_destroy(t);
}
END_TEST

START_TEST(genai_old_names)
{
    sn_event ev = fresh();
    ck_assert(s_attr(&ev, "gen_ai.system", "az.ai.openai"));
    ck_assert(i_attr(&ev, "gen_ai.usage.prompt_tokens", 10));
    ck_assert(i_attr(&ev, "gen_ai.usage.completion_tokens", 20));
    ck_assert(i_attr(&ev, "gen_ai.usage.cache_write.input_tokens", 5));
    ck_assert(d_attr(&ev, "gen_ai.server.time_to_first_token", 1.5));
    ck_assert(d_attr(&ev, "gen_ai.usage.cost", 0.01));
    ck_assert(sn_genai_finish(&ev, NULL));
    ck_assert_str_eq(ev.provider, "azure.ai.openai");
    ck_assert_int_eq(ev.input_tokens, 10);
    ck_assert_int_eq(ev.output_tokens, 20);
    ck_assert_int_eq(ev.total_tokens, 30);
    ck_assert_int_eq(ev.cache_write_tokens, 5);
    ck_assert_double_eq_tol(ev.ttft_ms, 1500.0, 1e-9);
    ck_assert_int_eq(ev.cost_source, SN_COST_SPAN);
    ck_assert_double_eq(ev.cost_usd, 0.01);
    ck_assert(!ev.is_error);
}
END_TEST

START_TEST(openinference_every_attribute)
{
    sn_event ev = fresh();
    ck_assert(s_attr(&ev, "openinference.span.kind", "LLM"));
    ck_assert(s_attr(&ev, "llm.model_name", "claude-3-5-sonnet-20241022"));
    ck_assert(s_attr(&ev, "llm.system", "anthropic"));
    ck_assert(s_attr(&ev, "llm.provider", "anthropic"));
    ck_assert(i_attr(&ev, "llm.token_count.prompt", 5000));
    ck_assert(i_attr(&ev, "llm.token_count.completion", 400));
    ck_assert(i_attr(&ev, "llm.token_count.total", 5400));
    ck_assert(i_attr(&ev, "llm.token_count.prompt_details.cache_read", 3000));
    ck_assert(i_attr(&ev, "llm.token_count.prompt_details.cache_write", 1000));
    ck_assert(i_attr(&ev, "llm.token_count.completion_details.reasoning", 0));
    ck_assert(d_attr(&ev, "llm.cost.total", 0.0123));
    ck_assert(!s_attr(&ev, "user.id", "user-42"));
    ck_assert_uint_eq(ev.conventions, SN_CONV_OPENINFERENCE);

    sn_price_table *t = prices();
    ck_assert(sn_genai_finish(&ev, t));
    ck_assert_str_eq(ev.model, "claude-3-5-sonnet-20241022");
    ck_assert_str_eq(ev.provider, "anthropic");
    ck_assert_int_eq(ev.input_tokens, 5000);
    ck_assert_int_eq(ev.output_tokens, 400);
    ck_assert_int_eq(ev.total_tokens, 5400);
    ck_assert_int_eq(ev.cache_read_tokens, 3000);
    ck_assert_int_eq(ev.cache_write_tokens, 1000);
    ck_assert_int_eq(ev.reasoning_tokens, 0);
    ck_assert_str_eq(ev.user, "user-42");
    /* The span's own cost wins over the price table. */
    ck_assert_int_eq(ev.cost_source, SN_COST_SPAN);
    ck_assert_double_eq(ev.cost_usd, 0.0123);
    sn_price_table_destroy(t);

    /* EMBEDDING is a model call too; llm.provider beats llm.system. */
    ev = fresh();
    ck_assert(s_attr(&ev, "openinference.span.kind", "EMBEDDING"));
    ck_assert(s_attr(&ev, "llm.provider", "azure"));
    ck_assert(s_attr(&ev, "llm.system", "openai"));
    ck_assert(sn_genai_finish(&ev, NULL));
    ck_assert_str_eq(ev.provider, "azure.ai.openai");
}
END_TEST

START_TEST(openllmetry_every_attribute)
{
    sn_event ev = fresh();
    ck_assert(s_attr(&ev, "llm.request.type", "completion"));
    ck_assert(s_attr(&ev, "gen_ai.system", "OpenAI"));
    ck_assert(s_attr(&ev, "gen_ai.request.model", "gpt-4o-mini"));
    ck_assert(i_attr(&ev, "gen_ai.usage.prompt_tokens", 2000));
    ck_assert(i_attr(&ev, "gen_ai.usage.completion_tokens", 100));
    ck_assert(i_attr(&ev, "llm.usage.total_tokens", 2100));
    ck_assert(i_attr(&ev, "gen_ai.usage.cache_read_input_tokens", 1500));
    ck_assert(i_attr(&ev, "gen_ai.usage.cache_creation_input_tokens", 0));
    ck_assert(i_attr(&ev, "gen_ai.usage.reasoning_tokens", 7));
    ck_assert(s_attr(&ev, "gen_ai.completion.0.finish_reason", "stop"));
    ck_assert(!s_attr(&ev, "llm.user", "alice"));
    ck_assert(!s_attr(&ev, "traceloop.span.kind", "llm")); /* not an agent/tool kind: no veto */
    ck_assert_uint_eq(ev.conventions, SN_CONV_GENAI | SN_CONV_OPENLLMETRY);

    sn_price_table *t = prices();
    ck_assert(sn_genai_finish(&ev, t));
    ck_assert_str_eq(ev.operation, "text_completion");
    ck_assert_str_eq(ev.provider, "openai");
    ck_assert_str_eq(ev.model, "gpt-4o-mini");
    ck_assert(!sn_genai_model_from_response(&ev));
    ck_assert_int_eq(ev.input_tokens, 2000);
    ck_assert_int_eq(ev.output_tokens, 100);
    ck_assert_int_eq(ev.total_tokens, 2100);
    ck_assert_int_eq(ev.cache_read_tokens, 1500);
    ck_assert_int_eq(ev.cache_write_tokens, 0);
    ck_assert_int_eq(ev.reasoning_tokens, 7);
    ck_assert_str_eq(ev.finish_reason, "stop");
    ck_assert_str_eq(ev.user, "alice");
    ck_assert_int_eq(ev.cost_source, SN_COST_PRICE_TABLE);
    ck_assert_double_eq_tol(ev.cost_usd, (500 * 0.15 + 1500 * 0.075 + 100 * 0.60) / 1e6, 1e-12);
    sn_price_table_destroy(t);

    /* The newer OpenLLMetry total and the older llm.usage.* counts. */
    ev = fresh();
    ck_assert(i_attr(&ev, "gen_ai.usage.total_tokens", 99));
    ck_assert(i_attr(&ev, "llm.usage.total_tokens", 11));
    ck_assert(i_attr(&ev, "llm.usage.prompt_tokens", 60));
    ck_assert(i_attr(&ev, "llm.usage.completion_tokens", 39));
    ck_assert(s_attr(&ev, "llm.request.type", "embedding"));
    ck_assert(sn_genai_finish(&ev, NULL));
    ck_assert_int_eq(ev.total_tokens, 99);
    ck_assert_int_eq(ev.input_tokens, 60);
    ck_assert_int_eq(ev.output_tokens, 39);
    ck_assert_str_eq(ev.operation, "embeddings");
    ck_assert_uint_eq(ev.conventions, SN_CONV_OPENLLMETRY);
}
END_TEST

START_TEST(resource_attributes)
{
    sn_event tmpl;
    sn_event_init(&tmpl);
    r_attr(&tmpl, "service.name", "chatbot-api");
    r_attr(&tmpl, "service.version", "1.4.2");
    r_attr(&tmpl, "cloud.region", "us-east-1");
    r_attr(&tmpl, "k8s.pod.name", "chatbot-api-7d9f-abcde");
    r_attr(&tmpl, "host.name", "ignored");
    sn_attr_value iv = {.type = SN_ATTR_INT, .i = 3};
    sn_genai_resource_attr(&tmpl, "service.version", 15, &iv); /* wrong type: ignored */
    ck_assert_str_eq(tmpl.service, "chatbot-api");
    ck_assert_str_eq(tmpl.service_version, "1.4.2");
    ck_assert_str_eq(tmpl.region, "us-east-1");
    ck_assert_str_eq(tmpl.pod, "chatbot-api-7d9f-abcde");
    ck_assert_uint_eq(tmpl.conventions, 0);
}
END_TEST

/* --- precedence --- */

START_TEST(response_model_beats_request_model_in_any_order)
{
    const char *keys[3] = {"gen_ai.request.model", "llm.model_name", "gen_ai.response.model"};
    const char *vals[3] = {"req", "oi", "resp"};
    /* Every order of the three names ends with the response model. */
    static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                     {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int o = 0; o < 6; o++) {
        sn_event ev = fresh();
        for (int j = 0; j < 3; j++)
            s_attr(&ev, keys[orders[o][j]], vals[orders[o][j]]);
        ck_assert(sn_genai_finish(&ev, NULL));
        ck_assert_str_eq(ev.model, "resp");
        ck_assert(sn_genai_model_from_response(&ev));
    }
    /* OpenInference's model name beats the request model. */
    sn_event ev = fresh();
    s_attr(&ev, "llm.model_name", "oi");
    s_attr(&ev, "gen_ai.request.model", "req");
    ck_assert_str_eq(ev.model, "oi");
    ev = fresh();
    s_attr(&ev, "gen_ai.request.model", "req");
    ck_assert_str_eq(ev.model, "req");
    ck_assert(!sn_genai_model_from_response(&ev));
    /* An empty response model does not erase the request model. */
    s_attr(&ev, "gen_ai.response.model", "");
    ck_assert_str_eq(ev.model, "req");
}
END_TEST

START_TEST(new_genai_names_beat_old_ones_in_any_order)
{
    for (int order = 0; order < 2; order++) {
        sn_event ev = fresh();
        if (order == 0) {
            i_attr(&ev, "gen_ai.usage.input_tokens", 100);
            i_attr(&ev, "gen_ai.usage.prompt_tokens", 1);
            i_attr(&ev, "gen_ai.usage.output_tokens", 200);
            i_attr(&ev, "gen_ai.usage.completion_tokens", 2);
            s_attr(&ev, "gen_ai.provider.name", "gcp.vertex_ai");
            s_attr(&ev, "gen_ai.system", "vertex_ai_old");
            i_attr(&ev, "gen_ai.usage.cache_creation.input_tokens", 30);
            i_attr(&ev, "gen_ai.usage.cache_write.input_tokens", 3);
            i_attr(&ev, "gen_ai.usage.cache_read.input_tokens", 40);
            i_attr(&ev, "gen_ai.usage.cache_read_input_tokens", 4);
            d_attr(&ev, "gen_ai.response.time_to_first_chunk", 0.5);
            d_attr(&ev, "gen_ai.server.time_to_first_token", 9.0);
            s_attr(&ev, "gen_ai.operation.name", "chat");
            s_attr(&ev, "llm.request.type", "completion");
            s_attr(&ev, "user.id", "u-new");
            s_attr(&ev, "enduser.id", "u-old");
            s_attr(&ev, "llm.user", "u-oldest");
        } else {
            s_attr(&ev, "llm.user", "u-oldest");
            s_attr(&ev, "enduser.id", "u-old");
            s_attr(&ev, "user.id", "u-new");
            s_attr(&ev, "llm.request.type", "completion");
            s_attr(&ev, "gen_ai.operation.name", "chat");
            d_attr(&ev, "gen_ai.server.time_to_first_token", 9.0);
            d_attr(&ev, "gen_ai.response.time_to_first_chunk", 0.5);
            i_attr(&ev, "gen_ai.usage.cache_read_input_tokens", 4);
            i_attr(&ev, "gen_ai.usage.cache_read.input_tokens", 40);
            i_attr(&ev, "gen_ai.usage.cache_write.input_tokens", 3);
            i_attr(&ev, "gen_ai.usage.cache_creation.input_tokens", 30);
            s_attr(&ev, "gen_ai.system", "vertex_ai_old");
            s_attr(&ev, "gen_ai.provider.name", "gcp.vertex_ai");
            i_attr(&ev, "gen_ai.usage.completion_tokens", 2);
            i_attr(&ev, "gen_ai.usage.output_tokens", 200);
            i_attr(&ev, "gen_ai.usage.prompt_tokens", 1);
            i_attr(&ev, "gen_ai.usage.input_tokens", 100);
        }
        ck_assert(sn_genai_finish(&ev, NULL));
        ck_assert_int_eq(ev.input_tokens, 100);
        ck_assert_int_eq(ev.output_tokens, 200);
        ck_assert_str_eq(ev.provider, "gcp.vertex_ai");
        ck_assert_int_eq(ev.cache_write_tokens, 30);
        ck_assert_int_eq(ev.cache_read_tokens, 40);
        ck_assert_double_eq_tol(ev.ttft_ms, 500.0, 1e-9);
        ck_assert_str_eq(ev.operation, "chat");
        ck_assert_str_eq(ev.user, "u-new");
    }
    /* GenAI counts beat OpenInference ones whatever the order. */
    sn_event ev = fresh();
    i_attr(&ev, "gen_ai.usage.input_tokens", 7);
    i_attr(&ev, "llm.token_count.prompt", 8);
    ck_assert_int_eq(ev.input_tokens, 7);
    ev = fresh();
    i_attr(&ev, "llm.token_count.prompt", 8);
    i_attr(&ev, "gen_ai.usage.input_tokens", 7);
    ck_assert_int_eq(ev.input_tokens, 7);
    /* A span cost attribute: OpenInference's llm.cost.total beats gen_ai.usage.cost. */
    ev = fresh();
    d_attr(&ev, "llm.cost.total", 0.5);
    d_attr(&ev, "gen_ai.usage.cost", 0.7);
    ck_assert_double_eq(ev.cost_usd, 0.5);
}
END_TEST

/* --- value types --- */

START_TEST(token_counts_accept_numeric_strings_and_integral_doubles)
{
    sn_event ev = fresh();
    s_attr(&ev, "gen_ai.usage.input_tokens", "123");
    d_attr(&ev, "gen_ai.usage.output_tokens", 45.0);
    s_attr(&ev, "gen_ai.usage.cache_read.input_tokens", "100.00");
    s_attr(&ev, "gen_ai.usage.reasoning.output_tokens", "0");
    ck_assert_int_eq(ev.input_tokens, 123);
    ck_assert_int_eq(ev.output_tokens, 45);
    ck_assert_int_eq(ev.cache_read_tokens, 100);
    ck_assert_int_eq(ev.reasoning_tokens, 0);
    /* TTFT and cost also from strings. */
    s_attr(&ev, "gen_ai.response.time_to_first_chunk", "0.25");
    s_attr(&ev, "llm.cost.total", "1.5e-3");
    ck_assert_double_eq_tol(ev.ttft_ms, 250.0, 1e-9);
    ck_assert_double_eq_tol(ev.cost_usd, 0.0015, 1e-15);
    ck_assert_int_eq(ev.cost_source, SN_COST_SPAN);
    /* An int TTFT in seconds. */
    ev = fresh();
    i_attr(&ev, "gen_ai.response.time_to_first_chunk", 2);
    ck_assert_double_eq(ev.ttft_ms, 2000.0);
}
END_TEST

START_TEST(wrong_types_and_bad_values_are_ignored)
{
    sn_event ev = fresh();
    /* Negative, fractional, non-numeric, boolean, bytes, overflowing, non-finite: ignored. */
    i_attr(&ev, "gen_ai.usage.input_tokens", -5);
    s_attr(&ev, "gen_ai.usage.input_tokens", "-5");
    d_attr(&ev, "gen_ai.usage.input_tokens", 12.5);
    d_attr(&ev, "gen_ai.usage.input_tokens", -1.0);
    d_attr(&ev, "gen_ai.usage.input_tokens", NAN);
    d_attr(&ev, "gen_ai.usage.input_tokens", INFINITY);
    d_attr(&ev, "gen_ai.usage.input_tokens", 1e300);
    s_attr(&ev, "gen_ai.usage.input_tokens", "12a");
    s_attr(&ev, "gen_ai.usage.input_tokens", "");
    s_attr(&ev, "gen_ai.usage.input_tokens", " 12");
    s_attr(&ev, "gen_ai.usage.input_tokens", "12.5");
    s_attr(&ev, "gen_ai.usage.input_tokens", "99999999999999999999999");
    s_attr(&ev, "gen_ai.usage.input_tokens", "0x10");
    b_attr(&ev, "gen_ai.usage.input_tokens", true);
    sn_attr_value bytes = {.type = SN_ATTR_BYTES, .str = "12", .len = 2};
    sn_genai_span_attr(&ev, "gen_ai.usage.input_tokens", 25, &bytes);
    ck_assert_int_eq(ev.input_tokens, SN_UNKNOWN_COUNT);
    /* ...and leave the fact to a lower-ranked valid value. */
    i_attr(&ev, "llm.token_count.prompt", 77);
    ck_assert_int_eq(ev.input_tokens, 77);

    /* A model, provider or finish reason that is not a string. */
    i_attr(&ev, "gen_ai.request.model", 4);
    b_attr(&ev, "gen_ai.provider.name", true);
    d_attr(&ev, "gen_ai.response.finish_reasons", 1.0);
    ck_assert_str_eq(ev.model, "");
    ck_assert_str_eq(ev.provider, "");
    ck_assert_str_eq(ev.finish_reason, "");
    /* Negative or absurd durations and costs. */
    d_attr(&ev, "gen_ai.response.time_to_first_chunk", -0.1);
    d_attr(&ev, "gen_ai.response.time_to_first_chunk", 1e9);
    s_attr(&ev, "gen_ai.response.time_to_first_chunk", "nan");
    s_attr(&ev, "gen_ai.response.time_to_first_chunk", "inf");
    d_attr(&ev, "llm.cost.total", -1.0);
    b_attr(&ev, "llm.cost.total", true);
    ck_assert(isnan(ev.ttft_ms));
    ck_assert(isnan(ev.cost_usd));
    ck_assert_int_eq(ev.cost_source, SN_COST_UNKNOWN);
    /* A numeric user id is kept as text. */
    i_attr(&ev, "user.id", 1234);
    ck_assert_str_eq(ev.user, "1234");
    /* Keys are matched exactly. */
    ck_assert(!s_attr(&ev, "gen_ai.request.model.extra", "x"));
    ck_assert(!s_attr(&ev, "Gen_ai.request.model", "x"));
    ck_assert(!s_attr(&ev, "gen_ai.request.mode", "x"));
    ck_assert_str_eq(ev.model, "");
}
END_TEST

START_TEST(long_values_are_truncated_on_utf8_boundaries)
{
    char model[400];
    memset(model, 'm', sizeof model);
    /* A 2-byte character straddling the 127-byte limit is dropped whole. */
    model[126] = (char)0xc3;
    model[127] = (char)0xa9;
    model[sizeof model - 1] = '\0';
    sn_event ev = fresh();
    s_attr(&ev, "gen_ai.request.model", model);
    ck_assert_uint_eq(strlen(ev.model), 126);
    char longp[200];
    memset(longp, 'p', sizeof longp);
    longp[sizeof longp - 1] = '\0';
    s_attr(&ev, "gen_ai.provider.name", longp);
    s_attr(&ev, "error.type", longp);
    s_attr(&ev, "gen_ai.response.finish_reasons", longp);
    s_attr(&ev, "user.id", longp);
    s_attr(&ev, "gen_ai.operation.name", longp);
    ck_assert_uint_eq(strlen(ev.provider), SN_SHORT_MAX - 1);
    ck_assert_uint_eq(strlen(ev.error_type), SN_SHORT_MAX - 1);
    ck_assert_uint_eq(strlen(ev.finish_reason), SN_SHORT_MAX - 1);
    ck_assert_uint_eq(strlen(ev.user), SN_SHORT_MAX - 1);
    ck_assert_uint_eq(strlen(ev.operation), SN_SHORT_MAX - 1);
    sn_event tmpl;
    sn_event_init(&tmpl);
    r_attr(&tmpl, "service.name", model);
    r_attr(&tmpl, "k8s.pod.name", longp);
    ck_assert_uint_eq(strlen(tmpl.service), 126);
    ck_assert_uint_eq(strlen(tmpl.pod), SN_SHORT_MAX - 1);
}
END_TEST

/* --- content --- */

START_TEST(prompt_and_response_text_is_never_copied)
{
    static const char *const content_keys[] = {
        "gen_ai.prompt.0.content",
        "gen_ai.prompt.0.role",
        "gen_ai.completion.0.content",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "llm.input_messages.0.message.content",
        "llm.output_messages.0.message.content",
        "llm.prompts",
        "llm.prompt_template.template",
        "input.value",
        "output.value",
        "traceloop.entity.input",
        "traceloop.entity.output",
        "retrieval.documents.0.document.content",
        /* every prefix of the table, so each first-byte group is covered */
        "gen_ai.completion",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.content.0",
        "llm.completions.0.text",
        "reranker.input_documents",
        "reranker.output_documents[0]",
        "reranker.query",
        "embedding.embeddings.0.text",
        "tool.parameters",
        "tool_call.function.arguments",
    };
    const char *secret = "SECRET-PROMPT-7f3a: my password is hunter2";
    sn_event ev = fresh();
    s_attr(&ev, "gen_ai.request.model", "gpt-4o");
    for (size_t i = 0; i < sizeof content_keys / sizeof content_keys[0]; i++) {
        const char *k = content_keys[i];
        ck_assert_msg(!s_attr(&ev, k, secret), "%s counted as a fact", k);
        ck_assert_msg(sn_genai_is_content_key(k, strlen(k)), "%s not content", k);
    }
    sn_price_table *t = prices();
    ck_assert(sn_genai_finish(&ev, t));
    sn_price_table_destroy(t);
    ck_assert_ptr_null(memmem(&ev, sizeof ev, "SECRET", 6));
    ck_assert_ptr_null(memmem(&ev, sizeof ev, "hunter2", 7));
    /* Fact keys and look-alikes are not content. */
    ck_assert(!sn_genai_is_content_key("gen_ai.request.model", 20));
    ck_assert(!sn_genai_is_content_key("gen_ai.prompts_cached", 21));
    ck_assert(!sn_genai_is_content_key("input.values_count", 18));
}
END_TEST

/* --- the key table: every key maps to its fact, near misses to nothing --- */

/* One bit per event field a span attribute can set. */
enum {
    FB_MODEL = 1 << 0,
    FB_PROVIDER = 1 << 1,
    FB_OPERATION = 1 << 2,
    FB_USER = 1 << 3,
    FB_FINISH = 1 << 4,
    FB_ERROR = 1 << 5,
    FB_INPUT = 1 << 6,
    FB_OUTPUT = 1 << 7,
    FB_TOTAL = 1 << 8,
    FB_CACHE_READ = 1 << 9,
    FB_CACHE_WRITE = 1 << 10,
    FB_REASONING = 1 << 11,
    FB_TTFT = 1 << 12,
    FB_COST = 1 << 13,
    FB_KIND = 1 << 14 /* only fact_ranks changed: a span kind */
};

/* The fields of ev that differ from a fresh event, as FB_* bits; *marked gets the conventions. */
static unsigned changed_fields(const sn_event *ev, uint32_t *marked)
{
    sn_event f = fresh();
    unsigned m = 0;
    m |= strcmp(ev->model, f.model) != 0 ? FB_MODEL : 0;
    m |= strcmp(ev->provider, f.provider) != 0 ? FB_PROVIDER : 0;
    m |= strcmp(ev->operation, f.operation) != 0 ? FB_OPERATION : 0;
    m |= strcmp(ev->user, f.user) != 0 ? FB_USER : 0;
    m |= strcmp(ev->finish_reason, f.finish_reason) != 0 ? FB_FINISH : 0;
    m |= strcmp(ev->error_type, f.error_type) != 0 || ev->is_error != f.is_error ? FB_ERROR : 0;
    m |= ev->input_tokens != f.input_tokens ? FB_INPUT : 0;
    m |= ev->output_tokens != f.output_tokens ? FB_OUTPUT : 0;
    m |= ev->total_tokens != f.total_tokens ? FB_TOTAL : 0;
    m |= ev->cache_read_tokens != f.cache_read_tokens ? FB_CACHE_READ : 0;
    m |= ev->cache_write_tokens != f.cache_write_tokens ? FB_CACHE_WRITE : 0;
    m |= ev->reasoning_tokens != f.reasoning_tokens ? FB_REASONING : 0;
    m |= !isnan(ev->ttft_ms) ? FB_TTFT : 0;
    m |= !isnan(ev->cost_usd) || ev->cost_source != f.cost_source ? FB_COST : 0;
    if (m == 0 && ev->fact_ranks != f.fact_ranks)
        m = FB_KIND;
    *marked = ev->conventions;
    return m;
}

/* Applies key with a string ("tool"), an int (7) and a double (0.5), each to a fresh event, and
 * returns the union of the fields they set; *claimed is true when any call returned true. */
static unsigned probe_key(const char *key, size_t keylen, bool *claimed, uint32_t *marked)
{
    sn_attr_value vals[3] = {
        {.type = SN_ATTR_STRING, .str = "tool", .len = 4},
        {.type = SN_ATTR_INT, .i = 7},
        {.type = SN_ATTR_DOUBLE, .d = 0.5},
    };
    unsigned m = 0;
    *claimed = false;
    *marked = 0;
    for (size_t i = 0; i < 3; i++) {
        sn_event ev = fresh();
        uint32_t conv = 0;
        *claimed |= sn_genai_span_attr(&ev, key, keylen, &vals[i]);
        m |= changed_fields(&ev, &conv);
        *marked |= conv;
    }
    return m;
}

static const struct {
    const char *key;
    unsigned field;
    uint32_t conv; /* 0: the key sets its fact but is not by itself a sign of an LLM call */
} span_keys[] = {
    {"gen_ai.operation.name", FB_OPERATION, SN_CONV_GENAI},
    {"gen_ai.provider.name", FB_PROVIDER, SN_CONV_GENAI},
    {"gen_ai.system", FB_PROVIDER, SN_CONV_GENAI},
    {"gen_ai.request.model", FB_MODEL, SN_CONV_GENAI},
    {"gen_ai.response.model", FB_MODEL, SN_CONV_GENAI},
    {"gen_ai.usage.input_tokens", FB_INPUT, SN_CONV_GENAI},
    {"gen_ai.usage.prompt_tokens", FB_INPUT, SN_CONV_GENAI},
    {"gen_ai.usage.output_tokens", FB_OUTPUT, SN_CONV_GENAI},
    {"gen_ai.usage.completion_tokens", FB_OUTPUT, SN_CONV_GENAI},
    {"gen_ai.usage.cache_read.input_tokens", FB_CACHE_READ, SN_CONV_GENAI},
    {"gen_ai.usage.cache_creation.input_tokens", FB_CACHE_WRITE, SN_CONV_GENAI},
    {"gen_ai.usage.cache_write.input_tokens", FB_CACHE_WRITE, SN_CONV_GENAI},
    {"gen_ai.usage.reasoning.output_tokens", FB_REASONING, SN_CONV_GENAI},
    {"gen_ai.response.finish_reasons", FB_FINISH, SN_CONV_GENAI},
    {"gen_ai.response.time_to_first_chunk", FB_TTFT, SN_CONV_GENAI},
    {"gen_ai.server.time_to_first_token", FB_TTFT, SN_CONV_GENAI},
    {"gen_ai.usage.cost", FB_COST, SN_CONV_GENAI},
    {"error.type", FB_ERROR, 0},
    {"llm.model_name", FB_MODEL, SN_CONV_OPENINFERENCE},
    {"llm.provider", FB_PROVIDER, SN_CONV_OPENINFERENCE},
    {"llm.system", FB_PROVIDER, SN_CONV_OPENINFERENCE},
    {"llm.token_count.prompt", FB_INPUT, SN_CONV_OPENINFERENCE},
    {"llm.token_count.completion", FB_OUTPUT, SN_CONV_OPENINFERENCE},
    {"llm.token_count.total", FB_TOTAL, SN_CONV_OPENINFERENCE},
    {"llm.token_count.prompt_details.cache_read", FB_CACHE_READ, SN_CONV_OPENINFERENCE},
    {"llm.token_count.prompt_details.cache_write", FB_CACHE_WRITE, SN_CONV_OPENINFERENCE},
    {"llm.token_count.completion_details.reasoning", FB_REASONING, SN_CONV_OPENINFERENCE},
    {"llm.cost.total", FB_COST, SN_CONV_OPENINFERENCE},
    {"openinference.span.kind", FB_KIND, SN_CONV_OPENINFERENCE},
    {"llm.usage.total_tokens", FB_TOTAL, SN_CONV_OPENLLMETRY},
    {"gen_ai.usage.total_tokens", FB_TOTAL, SN_CONV_OPENLLMETRY},
    {"llm.request.type", FB_OPERATION, SN_CONV_OPENLLMETRY},
    {"gen_ai.usage.cache_read_input_tokens", FB_CACHE_READ, SN_CONV_OPENLLMETRY},
    {"gen_ai.usage.cache_creation_input_tokens", FB_CACHE_WRITE, SN_CONV_OPENLLMETRY},
    {"llm.usage.prompt_tokens", FB_INPUT, SN_CONV_OPENLLMETRY},
    {"llm.usage.completion_tokens", FB_OUTPUT, SN_CONV_OPENLLMETRY},
    {"gen_ai.usage.reasoning_tokens", FB_REASONING, SN_CONV_OPENLLMETRY},
    {"gen_ai.completion.0.finish_reason", FB_FINISH, SN_CONV_OPENLLMETRY},
    {"llm.user", FB_USER, 0},
    {"traceloop.span.kind", FB_KIND, 0},
    {"user.id", FB_USER, 0},
    {"enduser.id", FB_USER, 0},
};
enum { N_SPAN_KEYS = sizeof span_keys / sizeof span_keys[0] };

static bool is_span_key(const char *key, size_t keylen)
{
    for (size_t i = 0; i < N_SPAN_KEYS; i++) {
        if (strlen(span_keys[i].key) == keylen && memcmp(span_keys[i].key, key, keylen) == 0)
            return true;
    }
    return false;
}

START_TEST(every_span_key_maps_to_its_fact)
{
    ck_assert_int_eq(N_SPAN_KEYS, 42); /* every row of genai.c's attrs[] table (A_COUNT - 1) */
    for (size_t i = 0; i < N_SPAN_KEYS; i++) {
        bool claimed = false;
        uint32_t marked = 0;
        const char *k = span_keys[i].key;
        unsigned m = probe_key(k, strlen(k), &claimed, &marked);
        ck_assert_msg(m == span_keys[i].field, "%s sets fields 0x%x, want 0x%x", k, m,
                      span_keys[i].field);
        ck_assert_msg(claimed == (span_keys[i].conv != 0), "%s: claimed %d", k, claimed);
        ck_assert_msg(marked == span_keys[i].conv, "%s: conventions 0x%x", k, (unsigned)marked);
        /* The key is read by its length, not up to a NUL: a longer buffer matches too. */
        char buf[128];
        snprintf(buf, sizeof buf, "%s.tail", k);
        ck_assert_uint_eq(probe_key(buf, strlen(k), &claimed, &marked), span_keys[i].field);
    }
}
END_TEST

/* Checks that a key that is not in the table sets nothing and claims nothing. */
static void assert_no_fact(const char *key, size_t keylen, const char *from)
{
    if (is_span_key(key, keylen))
        return; /* a near miss of one key that is another key */
    bool claimed = true;
    uint32_t marked = 1;
    unsigned m = probe_key(key, keylen, &claimed, &marked);
    ck_assert_msg(m == 0 && !claimed && marked == 0, "near miss '%.*s' of %s sets 0x%x",
                  (int)keylen, key, from, m);
}

START_TEST(near_miss_span_keys_map_to_nothing)
{
    for (size_t i = 0; i < N_SPAN_KEYS; i++) {
        const char *k = span_keys[i].key;
        size_t n = strlen(k);
        char buf[128];
        ck_assert_uint_lt(n + 2, sizeof buf);
        /* One character longer (at the end and at the start), one shorter (either end). */
        snprintf(buf, sizeof buf, "%sx", k);
        assert_no_fact(buf, n + 1, k);
        snprintf(buf, sizeof buf, "x%s", k);
        assert_no_fact(buf, n + 1, k);
        assert_no_fact(k, n - 1, k);
        assert_no_fact(k + 1, n - 1, k);
        /* One character different, at every position; and upper case at every position. */
        for (size_t j = 0; j < n; j++) {
            memcpy(buf, k, n + 1);
            buf[j] = buf[j] == '#' ? '$' : '#';
            assert_no_fact(buf, n, k);
            memcpy(buf, k, n + 1);
            if (buf[j] >= 'a' && buf[j] <= 'z') {
                buf[j] = (char)(buf[j] - 'a' + 'A');
                assert_no_fact(buf, n, k);
            }
        }
        /* The whole key in upper case. */
        for (size_t j = 0; j <= n; j++)
            buf[j] = (k[j] >= 'a' && k[j] <= 'z') ? (char)(k[j] - 'a' + 'A') : k[j];
        assert_no_fact(buf, n, k);
    }
    assert_no_fact("", 0, "the empty key");
}
END_TEST

/* sn_genai_span_key() + sn_genai_span_attr_id() must do what sn_genai_span_attr() does, and a
 * content key must be classified as content (the trace decoder then never reads its value). */
static void check_span_key(const char *key, size_t keylen)
{
    int id = sn_genai_span_key(key, keylen);
    if (sn_genai_is_content_key(key, keylen)) {
        ck_assert_msg(id == SN_GENAI_KEY_CONTENT, "'%.*s': content, got %d", (int)keylen, key, id);
        return;
    }
    ck_assert_msg(id != SN_GENAI_KEY_CONTENT, "'%.*s' is not content", (int)keylen, key);
    ck_assert_msg((id > SN_GENAI_KEY_OTHER) == is_span_key(key, keylen), "'%.*s': id %d",
                  (int)keylen, key, id);
    sn_attr_value vals[] = {
        {.type = SN_ATTR_STRING, .str = "llm", .len = 3},
        {.type = SN_ATTR_STRING, .str = "12", .len = 2},
        {.type = SN_ATTR_INT, .i = 7},
        {.type = SN_ATTR_DOUBLE, .d = 0.5},
        {.type = SN_ATTR_BOOL, .b = true},
    };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        sn_event a = fresh(), b = fresh();
        bool ra = sn_genai_span_attr(&a, key, keylen, &vals[i]);
        bool rb = id > SN_GENAI_KEY_OTHER && sn_genai_span_attr_id(&b, id, &vals[i]);
        ck_assert_msg(ra == rb, "'%.*s' value %zu: %d vs %d", (int)keylen, key, i, ra, rb);
        ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "'%.*s' value %zu: events differ", (int)keylen,
                      key, i);
    }
}

START_TEST(span_key_classification_matches_the_lookup)
{
    static const char *const others[] = {
        "",
        "g",
        "gen_ai.",
        "gen_ai.prompt",
        "gen_ai.prompt.0.content",
        "gen_ai.promptx",
        "gen_ai.completion",
        "gen_ai.completion.0.content",
        "gen_ai.input.messages",
        "gen_ai.content.prompt",
        "llm.input_messages.0.message.content",
        "llm.prompts",
        "input.value",
        "output.value",
        "retrieval.documents.0.document.content",
        "tool.parameters",
        "traceloop.entity.input",
        "embedding.embeddings.0.embedding.text",
        "server.address",
        "http.response.status_code",
        "gen_ai.response.id",
        "gen_ai.conversation.id",
        "gen_ai.output.type",
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        check_span_key(others[i], strlen(others[i]));
    for (size_t i = 0; i < N_SPAN_KEYS; i++) {
        const char *k = span_keys[i].key;
        size_t n = strlen(k);
        char buf[128];
        check_span_key(k, n);
        check_span_key(k, n - 1);
        snprintf(buf, sizeof buf, "%s.0", k);
        check_span_key(buf, strlen(buf));
        memcpy(buf, k, n + 1);
        buf[n - 1] = '#';
        check_span_key(buf, n);
    }
    /* gen_ai.completion.0.finish_reason is a key of the table under a content prefix. */
    ck_assert_int_eq(sn_genai_span_key("gen_ai.completion.0.finish_reason", 33),
                     SN_GENAI_KEY_CONTENT);
    ck_assert(!sn_genai_span_attr_id(NULL, SN_GENAI_KEY_OTHER, NULL));
    ck_assert(!sn_genai_span_attr_id(NULL, 1000, NULL));
}
END_TEST

START_TEST(resource_keys_exact_and_near_misses)
{
    static const char *keys[] = {"service.name", "service.version", "cloud.region", "k8s.pod.name"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *k = keys[i];
        size_t n = strlen(k);
        sn_attr_value v = {.type = SN_ATTR_STRING, .str = "x1", .len = 2};
        sn_event ev = fresh(), f = fresh();
        sn_genai_resource_attr(&ev, k, n, &v);
        unsigned set = (strcmp(ev.service, "x1") == 0) + (strcmp(ev.service_version, "x1") == 0) +
                       (strcmp(ev.region, "x1") == 0) + (strcmp(ev.pod, "x1") == 0);
        ck_assert_msg(set == 1, "%s sets %u fields", k, set);
        char buf[64];
        const char *variants[4];
        size_t lens[4] = {n + 1, n - 1, n, n};
        snprintf(buf, sizeof buf, "%sx", k);
        char upper[64], other[64];
        for (size_t j = 0; j <= n; j++) {
            upper[j] = (k[j] >= 'a' && k[j] <= 'z') ? (char)(k[j] - 'a' + 'A') : k[j];
            other[j] = k[j];
        }
        other[n / 2] = '#';
        variants[0] = buf;
        variants[1] = k;
        variants[2] = upper;
        variants[3] = other;
        for (size_t j = 0; j < 4; j++) {
            ev = fresh();
            sn_genai_resource_attr(&ev, variants[j], lens[j], &v);
            ck_assert_msg(strcmp(ev.service, f.service) == 0 &&
                              strcmp(ev.service_version, f.service_version) == 0 &&
                              strcmp(ev.region, f.region) == 0 && strcmp(ev.pod, f.pod) == 0,
                          "near miss '%.*s' of %s sets a field", (int)lens[j], variants[j], k);
        }
    }
}
END_TEST

/* --- providers --- */

START_TEST(provider_normalisation_table)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"az.ai.openai", "azure.ai.openai"},
        {"azure", "azure.ai.openai"},
        {"Azure", "azure.ai.openai"},
        {"AzureOpenAI", "azure.ai.openai"},
        {"azure_openai", "azure.ai.openai"},
        {"az.ai.inference", "azure.ai.inference"},
        {"vertex_ai", "gcp.vertex_ai"},
        {"VertexAI", "gcp.vertex_ai"},
        {"gemini", "gcp.gemini"},
        {"Google", "gcp.gen_ai"},
        {"bedrock", "aws.bedrock"},
        {"AWS", "aws.bedrock"},
        {"aws.bedrock", "aws.bedrock"},
        {"OpenAI", "openai"},
        {"openai", "openai"},
        {"Anthropic", "anthropic"},
        {"MistralAI", "mistral_ai"},
        {"mistral", "mistral_ai"},
        {"xai", "x_ai"},
        {"Watsonx", "ibm.watsonx.ai"},
        {"  Cohere ", "cohere"},
        {"groq", "groq"},
        {"my-gateway", "my-gateway"},
        /* Near misses of aliases (a prefix, one more character) are kept as they are. */
        {"azur", "azur"},
        {"azure_", "azure_"},
        {"Bedrock2", "bedrock2"},
        {"gemin", "gemin"},
        {"ibm.watsonx.a", "ibm.watsonx.a"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[SN_SHORT_MAX];
        snprintf(buf, sizeof buf, "%s", cases[i].in);
        sn_genai_normalize_provider(buf, sizeof buf);
        ck_assert_msg(strcmp(buf, cases[i].out) == 0, "%s -> %s, want %s", cases[i].in, buf,
                      cases[i].out);
        /* Idempotent. */
        sn_genai_normalize_provider(buf, sizeof buf);
        ck_assert_str_eq(buf, cases[i].out);
    }
    /* A normalised name that does not fit the buffer leaves the lower-cased input. */
    char small[8] = "AZURE";
    sn_genai_normalize_provider(small, sizeof small);
    ck_assert_str_eq(small, "azure");
}
END_TEST

/* --- which spans are LLM calls --- */

START_TEST(non_llm_spans_are_rejected)
{
    sn_price_table *t = prices();
    /* No attributes at all; only generic ones. */
    sn_event ev = fresh();
    ck_assert(!sn_genai_finish(&ev, t));
    ck_assert(!s_attr(&ev, "http.request.method", "POST"));
    ck_assert(!s_attr(&ev, "error.type", "500"));
    ck_assert(!s_attr(&ev, "user.id", "u1"));
    ck_assert(!s_attr(&ev, "gen_ai.conversation.id", "c1"));
    ck_assert(!sn_genai_finish(&ev, t));

    /* An OpenInference CHAIN span -- even one repeating its children's token counts. */
    ev = fresh();
    ck_assert(s_attr(&ev, "openinference.span.kind", "CHAIN"));
    ck_assert(!sn_genai_finish(&ev, t));
    ck_assert_uint_eq(ev.conventions, 0);
    static const char *const kinds[] = {"CHAIN",    "AGENT",     "TOOL",     "RETRIEVER",
                                        "RERANKER", "GUARDRAIL", "EVALUATOR"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        ev = fresh();
        s_attr(&ev, "llm.model_name", "gpt-4o");
        i_attr(&ev, "llm.token_count.total", 500);
        s_attr(&ev, "openinference.span.kind", kinds[i]);
        ck_assert_msg(!sn_genai_finish(&ev, t), "%s accepted", kinds[i]);
    }
    /* GenAI agent and tool operations. */
    static const char *const ops[] = {"execute_tool", "invoke_agent", "create_agent"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        ev = fresh();
        i_attr(&ev, "gen_ai.usage.input_tokens", 100);
        s_attr(&ev, "gen_ai.operation.name", ops[i]);
        ck_assert_msg(!sn_genai_finish(&ev, t), "%s accepted", ops[i]);
    }
    /* Traceloop workflow/task/agent/tool spans. */
    ev = fresh();
    s_attr(&ev, "traceloop.span.kind", "workflow");
    i_attr(&ev, "llm.usage.total_tokens", 100);
    ck_assert(!sn_genai_finish(&ev, t));

    /* The LLM kind alone is enough; UNKNOWN neither marks nor vetoes. */
    ev = fresh();
    ck_assert(s_attr(&ev, "openinference.span.kind", "LLM"));
    ck_assert(sn_genai_finish(&ev, t));
    ev = fresh();
    s_attr(&ev, "openinference.span.kind", "UNKNOWN");
    s_attr(&ev, "llm.model_name", "gpt-4o");
    ck_assert(sn_genai_finish(&ev, t));
    sn_price_table_destroy(t);
}
END_TEST

/* --- finishing --- */

START_TEST(finish_derives_latency_total_and_cost)
{
    sn_price_table *t = prices();
    /* Unknown model: tokens counted, cost unknown -- never 0. */
    sn_event ev = fresh();
    s_attr(&ev, "gen_ai.request.model", "my-private-finetune");
    i_attr(&ev, "gen_ai.usage.input_tokens", 10);
    i_attr(&ev, "gen_ai.usage.output_tokens", 5);
    ck_assert(sn_genai_finish(&ev, t));
    ck_assert_int_eq(ev.total_tokens, 15);
    ck_assert(isnan(ev.cost_usd));
    ck_assert_int_eq(ev.cost_source, SN_COST_UNKNOWN);
    double v;
    ck_assert(!sn_event_metric(&ev, SN_METRIC_COST_USD, &v));

    /* No price table: cost unknown. */
    ev = fresh();
    s_attr(&ev, "gen_ai.request.model", "gpt-4o");
    i_attr(&ev, "gen_ai.usage.input_tokens", 10);
    ck_assert(sn_genai_finish(&ev, NULL));
    ck_assert(isnan(ev.cost_usd));
    /* No tokens at all: cost unknown even for a known model. */
    ev = fresh();
    s_attr(&ev, "gen_ai.request.model", "gpt-4o");
    ck_assert(sn_genai_finish(&ev, t));
    ck_assert(isnan(ev.cost_usd));
    ck_assert_int_eq(ev.cost_source, SN_COST_UNKNOWN);

    /* Total only when both parts are known; a given total is kept. */
    ev = fresh();
    s_attr(&ev, "gen_ai.request.model", "gpt-4o");
    i_attr(&ev, "gen_ai.usage.input_tokens", 10);
    ck_assert(sn_genai_finish(&ev, t));
    ck_assert_int_eq(ev.total_tokens, SN_UNKNOWN_COUNT);
    ev = fresh();
    i_attr(&ev, "llm.token_count.total", 1000);
    i_attr(&ev, "llm.token_count.prompt", 10);
    i_attr(&ev, "llm.token_count.completion", 10);
    ck_assert(sn_genai_finish(&ev, t));
    ck_assert_int_eq(ev.total_tokens, 1000);

    /* The price used is the one in force at the span's end: gpt-4o before/after 2024-10-02. */
    ev = fresh();
    ev.end_unix_nano = INT64_C(1725148800) * 1000000000; /* 2024-09-01 */
    ev.start_unix_nano = ev.end_unix_nano - 1000000000;
    s_attr(&ev, "gen_ai.response.model", "gpt-4o");
    i_attr(&ev, "gen_ai.usage.input_tokens", 1000000);
    i_attr(&ev, "gen_ai.usage.output_tokens", 0);
    ck_assert(sn_genai_finish(&ev, t));
    ck_assert_double_eq_tol(ev.cost_usd, 5.0, 1e-9);
    ck_assert_double_eq_tol(ev.latency_ms, 1000.0, 1e-9);
    ev.end_unix_nano = INT64_C(1730419200) * 1000000000; /* 2024-11-01 */
    ev.cost_source = SN_COST_UNKNOWN;
    ck_assert(sn_genai_finish(&ev, t));
    ck_assert_double_eq_tol(ev.cost_usd, 2.5, 1e-9);

    /* Latency stays unknown without a start, or with an end before the start. */
    ev = fresh();
    ev.start_unix_nano = 0;
    s_attr(&ev, "gen_ai.request.model", "x");
    ck_assert(sn_genai_finish(&ev, NULL));
    ck_assert(isnan(ev.latency_ms));
    ev = fresh();
    ev.end_unix_nano = ev.start_unix_nano - 1;
    s_attr(&ev, "gen_ai.request.model", "x");
    ck_assert(sn_genai_finish(&ev, NULL));
    ck_assert(isnan(ev.latency_ms));

    /* Bedrock Llama: priced only with the Bedrock provider, which old names normalise to. */
    ev = fresh();
    s_attr(&ev, "gen_ai.system", "AWS");
    s_attr(&ev, "gen_ai.request.model", "meta.llama3-1-70b-instruct-v1:0");
    i_attr(&ev, "gen_ai.usage.input_tokens", 1000);
    i_attr(&ev, "gen_ai.usage.output_tokens", 1000);
    ck_assert(sn_genai_finish(&ev, t));
    ck_assert_str_eq(ev.provider, "aws.bedrock");
    ck_assert_double_eq_tol(ev.cost_usd, 2000 * 0.72 / 1e6, 1e-12);
    sn_price_table_destroy(t);
}
END_TEST

/* sn_genai_finish_memo() over a run of spans must give what sn_genai_finish() gives each. */
START_TEST(finish_memo_matches_finish)
{
    sn_price_table *t = prices();
    static const struct {
        const char *model, *provider;
    } runs[] = {
        {"gpt-4o", "openai"},
        {"gpt-4o", "openai"},
        {"gpt-4o", " OpenAI "},
        {"gpt-4o", "az.ai.openai"},
        {"gpt-4o", "azure"},
        {"gpt-4o-mini", "azure"},
        {"claude-3-5-sonnet-20241022", "anthropic"},
        {"claude-3-5-sonnet-20241022", ""},
        {"my-private-finetune", "openai"},
        {"gpt-4o", ""},
        {"gpt-4o", "openai"},
        {"gemini-1.5-pro", "vertex_ai"},
        {"gemini-1.5-pro", "VERTEX_AI"},
        {"", "openai"},
    };
    sn_genai_memo memo;
    sn_genai_memo_init(&memo);
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
            sn_event a = fresh();
            if (runs[i].model[0])
                s_attr(&a, "gen_ai.request.model", runs[i].model);
            if (runs[i].provider[0])
                s_attr(&a, "gen_ai.provider.name", runs[i].provider);
            else
                s_attr(&a, "gen_ai.operation.name", "chat");
            i_attr(&a, "gen_ai.usage.input_tokens", 1000 + (int64_t)i);
            i_attr(&a, "gen_ai.usage.output_tokens", 100);
            sn_event b = a;
            /* The second round without a table: the memo must not price from the first. */
            const sn_price_table *pt = round == 0 ? t : NULL;
            ck_assert(sn_genai_finish(&a, pt) == sn_genai_finish_memo(&b, pt, &memo));
            ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "run %zu round %d: events differ", i,
                          round);
        }
    }
    sn_price_table_destroy(t);
}
END_TEST

/* A request mixing more (model, provider) pairs and provider names than the memo holds, in an
 * order that hits entries other than the last and replaces the oldest: the same events as
 * sn_genai_finish(), and a second table drops the first table's rules. */
START_TEST(finish_memo_with_many_pairs_matches_finish)
{
    sn_price_table *t = prices(), *t2 = prices();
    static const char *const models[] = {
        "gpt-4o",
        "gpt-4o-mini",
        "claude-3-5-sonnet-20241022",
        "gemini-1.5-pro",
        "gpt-4o-2024-08-06",
        "o1-mini",
        "gpt-4-turbo",
        "claude-3-haiku",
        "my-finetune",
        "gemini-2.0-flash",
        "gpt-4o-mini-2024-07-18",
    };
    static const char *const providers[] = {
        "openai", "az.ai.openai", "anthropic", "vertex_ai",  "gcp.gemini", "aws.bedrock",
        "azure",  "OPENAI",       "cohere",    "mistral_ai", "",
    };
    enum { NM = sizeof models / sizeof *models, NP = sizeof providers / sizeof *providers };
    ck_assert_int_gt(NM, SN_GENAI_MEMO_WAYS);
    ck_assert_int_gt(NP, SN_GENAI_MEMO_WAYS);
    sn_genai_memo memo;
    sn_genai_memo_init(&memo);
    for (int i = 0; i < 400; i++) {
        /* runs of a few spans on a small set, then a drift to other pairs */
        int m = (i / 3 + (i % 3) * 2 + i / 50) % NM, p = (i / 5 + i % 2 + i / 40) % NP;
        sn_event a = fresh();
        s_attr(&a, "gen_ai.request.model", models[m]);
        if (providers[p][0])
            s_attr(&a, "gen_ai.provider.name", providers[p]);
        else
            s_attr(&a, "gen_ai.operation.name", "chat");
        i_attr(&a, "gen_ai.usage.input_tokens", 1000 + i);
        i_attr(&a, "gen_ai.usage.output_tokens", 100);
        sn_event b = a;
        const sn_price_table *pt = i < 300 ? t : t2;
        ck_assert(sn_genai_finish(&a, pt) == sn_genai_finish_memo(&b, pt, &memo));
        ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "span %d (%s, %s): events differ", i,
                      models[m], providers[p]);
    }
    sn_price_table_destroy(t2);
    sn_price_table_destroy(t);
}
END_TEST

static Suite *genai_suite(void)
{
    Suite *s = suite_create("genai");
    TCase *tc = tcase_create("conventions");
    tcase_add_test(tc, genai_convention_every_attribute);
    tcase_add_test(tc, genai_old_names);
    tcase_add_test(tc, openinference_every_attribute);
    tcase_add_test(tc, openllmetry_every_attribute);
    tcase_add_test(tc, resource_attributes);
    tcase_add_test(tc, every_span_key_maps_to_its_fact);
    tcase_add_test(tc, near_miss_span_keys_map_to_nothing);
    tcase_add_test(tc, resource_keys_exact_and_near_misses);
    tcase_add_test(tc, span_key_classification_matches_the_lookup);
    tcase_add_test(tc, finish_memo_matches_finish);
    tcase_add_test(tc, finish_memo_with_many_pairs_matches_finish);
    suite_add_tcase(s, tc);
    tc = tcase_create("precedence");
    tcase_add_test(tc, response_model_beats_request_model_in_any_order);
    tcase_add_test(tc, new_genai_names_beat_old_ones_in_any_order);
    suite_add_tcase(s, tc);
    tc = tcase_create("values");
    tcase_add_test(tc, token_counts_accept_numeric_strings_and_integral_doubles);
    tcase_add_test(tc, wrong_types_and_bad_values_are_ignored);
    tcase_add_test(tc, long_values_are_truncated_on_utf8_boundaries);
    tcase_add_test(tc, prompt_and_response_text_is_never_copied);
    tcase_add_test(tc, provider_normalisation_table);
    suite_add_tcase(s, tc);
    tc = tcase_create("finish");
    tcase_add_test(tc, non_llm_spans_are_rejected);
    tcase_add_test(tc, finish_derives_latency_total_and_cost);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(genai_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
