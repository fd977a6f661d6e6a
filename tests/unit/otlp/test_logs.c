/*
 * Unit tests for shared/otlp/logs.c and logs_json.c: requests built with protoc-c (an encoder
 * independent of the nanopb decoder under test) or by hand; counts checked exactly; malformed
 * input refused cleanly.
 */
#include "otlp/logs.h"

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Logs__V1__LogRecord LogRecord;
typedef Opentelemetry__Proto__Logs__V1__ScopeLogs ScopeLogs;
typedef Opentelemetry__Proto__Logs__V1__ResourceLogs ResourceLogs;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest Request;

typedef struct pool {
    void *ptr[1024];
    size_t n;
} pool;

static pool P;

static void *palloc(size_t size)
{
    ck_assert_uint_lt(P.n, sizeof(P.ptr) / sizeof(P.ptr[0]));
    void *p = calloc(1, size);
    ck_assert_ptr_nonnull(p);
    P.ptr[P.n++] = p;
    return p;
}

static void teardown(void)
{
    for (size_t i = 0; i < P.n; i++)
        free(P.ptr[i]);
    P.n = 0;
}

static void *pdup(const void *src, size_t n)
{
    void *p = palloc(n + 1);
    if (n > 0)
        memcpy(p, src, n);
    return p;
}

static AnyValue *v_str(const char *s)
{
    AnyValue *v = palloc(sizeof(*v));
    opentelemetry__proto__common__v1__any_value__init(v);
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    v->string_value = (char *)s;
    return v;
}

static KeyValue *kv(const char *key, AnyValue *v)
{
    KeyValue *p = palloc(sizeof(*p));
    opentelemetry__proto__common__v1__key_value__init(p);
    p->key = (char *)key;
    p->value = v;
    return p;
}

/* A record with an optional event_name field, an optional event.name attribute and a body. */
static LogRecord *record(const char *event_name, const char *event_attr, const char *body)
{
    LogRecord *r = palloc(sizeof(*r));
    opentelemetry__proto__logs__v1__log_record__init(r);
    r->time_unix_nano = 1700000000000000000ULL;
    r->observed_time_unix_nano = 1700000000000000001ULL;
    r->severity_number = OPENTELEMETRY__PROTO__LOGS__V1__SEVERITY_NUMBER__SEVERITY_NUMBER_INFO;
    r->severity_text = "INFO";
    r->body = v_str(body);
    KeyValue *a[3];
    size_t n = 0;
    a[n++] = kv("gen_ai.provider.name", v_str("openai"));
    if (event_attr)
        a[n++] = kv("event.name", v_str(event_attr));
    a[n++] = kv("gen_ai.input.messages", v_str("[{\"role\":\"user\",\"content\":\"secret\"}]"));
    r->n_attributes = n;
    r->attributes = pdup(a, n * sizeof(*a));
    static uint8_t tid[16] = {1, 2, 3}, sid[8] = {4, 5, 6};
    r->trace_id.data = tid;
    r->trace_id.len = 16;
    r->span_id.data = sid;
    r->span_id.len = 8;
    r->flags = 1;
    if (event_name)
        r->event_name = (char *)event_name;
    return r;
}

static ResourceLogs *rlogs(size_t nscopes, size_t *nrec, LogRecord ***recs)
{
    ResourceLogs *rl = palloc(sizeof(*rl));
    opentelemetry__proto__logs__v1__resource_logs__init(rl);
    Opentelemetry__Proto__Resource__V1__Resource *res = palloc(sizeof(*res));
    opentelemetry__proto__resource__v1__resource__init(res);
    KeyValue *ra[] = {kv("service.name", v_str("chatbot-api"))};
    res->n_attributes = 1;
    res->attributes = pdup(ra, sizeof ra);
    rl->resource = res;
    rl->n_scope_logs = nscopes;
    rl->scope_logs = palloc(nscopes * sizeof(*rl->scope_logs) + 1);
    for (size_t i = 0; i < nscopes; i++) {
        ScopeLogs *sl = palloc(sizeof(*sl));
        opentelemetry__proto__logs__v1__scope_logs__init(sl);
        sl->n_log_records = nrec[i];
        sl->log_records = pdup(recs[i], nrec[i] * sizeof(*recs[i]));
        sl->schema_url = "https://opentelemetry.io/schemas/1.37.0";
        rl->scope_logs[i] = sl;
    }
    return rl;
}

static uint8_t *pack(size_t n, ResourceLogs **rls, size_t *len)
{
    Request req;
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__init(&req);
    req.n_resource_logs = n;
    req.resource_logs = rls;
    *len = opentelemetry__proto__collector__logs__v1__export_logs_service_request__get_packed_size(
        &req);
    uint8_t *buf = palloc(*len + 1);
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__pack(&req, buf);
    return buf;
}

/* Two resources, three scopes, seven records of which three are GenAI events. */
static uint8_t *full_request(size_t *len)
{
    LogRecord *s0[] = {
        record("gen_ai.client.inference.operation.details", NULL, "{\"messages\":[]}"),
        record(NULL, "gen_ai.user.message", "hello"),                 /* by attribute */
        record(NULL, "http.request", "GET /"),                        /* not GenAI */
        record("app.started", "gen_ai.choice", "gen_ai.choice body"), /* event_name wins */
    };
    LogRecord *s1[] = {record(NULL, NULL, "gen_ai.user.message plain log"),
                       record("gen_ai.choice", "other", "x")};
    LogRecord *s2[] = {record("", "gen_ai.tool.message", "")}; /* empty event_name: attribute */
    size_t n0[] = {4, 2};
    LogRecord **r0[] = {s0, s1};
    size_t n1[] = {1};
    LogRecord **r1[] = {s2};
    ResourceLogs *rl[] = {rlogs(2, n0, r0), rlogs(1, n1, r1)};
    return pack(2, rl, len);
}

START_TEST(records_and_genai_events_are_counted)
{
    size_t len;
    uint8_t *buf = full_request(&len);
    sn_otlp_log_stats st;
    char err[SN_OTLP_ERR_MAX] = "";
    ck_assert_msg(sn_otlp_decode_logs(buf, len, &st, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(st.resource_logs, 2);
    ck_assert_uint_eq(st.scope_logs, 3);
    ck_assert_uint_eq(st.log_records, 7);
    ck_assert_uint_eq(st.genai_events, 4);
    ck_assert_int_eq(sn_otlp_decode_logs(buf, len, NULL, NULL, 0), 0);
    ck_assert_int_eq(sn_otlp_decode_logs(NULL, 0, &st, err, sizeof err), 0);
    ck_assert_uint_eq(st.log_records, 0);
    ck_assert(sn_otlp_is_genai_event("gen_ai.", 7));
    ck_assert(!sn_otlp_is_genai_event("gen_ai", 6));
    ck_assert(!sn_otlp_is_genai_event("gen-ai.x", 8));
}
END_TEST

/* Hand-built bytes: a tag + length prefix around a body (pool-owned). */
static uint8_t *wrap(uint32_t field, const uint8_t *body, size_t n, size_t *out_len)
{
    uint8_t *b = palloc(n + 16);
    size_t o = 0;
    b[o++] = (uint8_t)(field << 3 | 2);
    size_t v = n;
    do {
        b[o] = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v)
            b[o] |= 0x80;
        o++;
    } while (v);
    memcpy(b + o, body, n);
    *out_len = o + n;
    return b;
}

/* Wraps a LogRecord body into request{resource_logs{scope_logs{log_records}}}. */
static uint8_t *in_request(const uint8_t *rec, size_t n, size_t *len)
{
    size_t a, b;
    uint8_t *r = wrap(2, rec, n, &a);
    uint8_t *s = wrap(2, r, a, &b);
    return wrap(1, s, b, len);
}

START_TEST(value_before_key)
{
    /* KeyValue{value: AnyValue{string_value "gen_ai.choice"}, key: "event.name"} */
    size_t a, b, c, kvlen, reclen;
    uint8_t *sv = wrap(1, (const uint8_t *)"gen_ai.choice", 13, &a);
    uint8_t *val = wrap(2, sv, a, &b);
    uint8_t *key = wrap(1, (const uint8_t *)"event.name", 10, &c);
    uint8_t kvb[128];
    memcpy(kvb, val, b);
    memcpy(kvb + b, key, c);
    kvlen = b + c;
    uint8_t *rec = wrap(6, kvb, kvlen, &reclen);
    size_t len;
    uint8_t *req = in_request(rec, reclen, &len);
    sn_otlp_log_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(sn_otlp_decode_logs(req, len, &st, err, sizeof err), 0);
    ck_assert_uint_eq(st.log_records, 1);
    ck_assert_uint_eq(st.genai_events, 1);
}
END_TEST

static int decode_exact(const uint8_t *data, size_t len, char *err)
{
    uint8_t *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    if (len)
        memcpy(copy, data, len);
    sn_otlp_log_stats st;
    err[0] = '\0';
    int rc = sn_otlp_decode_logs(copy, len, &st, err, SN_OTLP_ERR_MAX);
    free(copy);
    return rc;
}

static void expect_malformed(const uint8_t *data, size_t len, const char *what)
{
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(decode_exact(data, len, err), -1);
    ck_assert_msg(strncmp(err, "malformed OTLP logs request: ", 29) == 0, "%s", err);
    if (what)
        ck_assert_msg(strstr(err, what) != NULL, "'%s' lacks '%s'", err, what);
}

START_TEST(truncated_and_corrupted)
{
    size_t len;
    uint8_t *buf = full_request(&len);
    char err[SN_OTLP_ERR_MAX];
    /* The request is two resource_logs fields: a cut is valid only at the boundary. */
    size_t first = 0, boundaries = 0;
    for (size_t cut = 1; cut < len; cut++) {
        if (decode_exact(buf, cut, err) == 0) {
            boundaries++;
            first = cut;
        } else {
            ck_assert_msg(strncmp(err, "malformed OTLP logs request: ", 29) == 0, "%s", err);
        }
    }
    ck_assert_uint_eq(boundaries, 1);
    sn_otlp_log_stats st;
    ck_assert_int_eq(sn_otlp_decode_logs(buf, first, &st, err, sizeof err), 0);
    ck_assert_uint_eq(st.log_records, 6);

    uint8_t *copy = malloc(len);
    ck_assert_ptr_nonnull(copy);
    static const uint8_t flips[] = {0x00, 0x01, 0x07, 0x80, 0xFF};
    for (size_t i = 0; i < len; i++)
        for (size_t f = 0; f < sizeof flips; f++) {
            memcpy(copy, buf, len);
            copy[i] = flips[f];
            err[0] = '\0';
            int rc = sn_otlp_decode_logs(copy, len, &st, err, sizeof err);
            ck_assert(rc == 0 || (rc == -1 && err[0] != '\0'));
        }
    free(copy);
}
END_TEST

START_TEST(wrong_wire_types_and_lengths)
{
    static const uint8_t rl_varint[] = {0x08, 0x01};
    expect_malformed(rl_varint, sizeof rl_varint, "resource_logs: wrong wire type");
    /* event_name (field 12) as a varint */
    static const uint8_t en_varint[] = {0x60, 0x01};
    size_t len;
    uint8_t *req = in_request(en_varint, sizeof en_varint, &len);
    expect_malformed(req, len, "event_name: wrong wire type");
    /* time_unix_nano (fixed64, field 1) as length-delimited */
    static const uint8_t time_len[] = {0x0A, 0x00};
    req = in_request(time_len, sizeof time_len, &len);
    expect_malformed(req, len, "log record: wrong wire type");
    /* the event.name value's string as a varint */
    static const uint8_t bad_value[] = {0x32, 0x10, 0x0A, 0x0A, 'e', 'v',  'e',  'n',  't',
                                        '.',  'n',  'a',  'm',  'e', 0x12, 0x02, 0x08, 0x01};
    req = in_request(bad_value, sizeof bad_value, &len);
    expect_malformed(req, len, "attribute value: wrong wire type");
    /* body (ignored, never read) with a length past its record */
    static const uint8_t body_long[] = {0x2A, 0x7F, 0x00};
    req = in_request(body_long, sizeof body_long, &len);
    expect_malformed(req, len, NULL);
    static const uint8_t huge[] = {0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F};
    expect_malformed(huge, sizeof huge, NULL);
    static const uint8_t zero_tag[] = {0x0A, 0x04, 0x12, 0x02, 0x00, 0x00};
    expect_malformed(zero_tag, sizeof zero_tag, "field number 0");
}
END_TEST

/* --- JSON --- */

static const char *const full_json =
    "{\"resourceLogs\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
    "  \"value\":{\"stringValue\":\"chatbot-api\"}}]},"
    " \"scopeLogs\":[{\"scope\":{\"name\":\"x\"},\"logRecords\":["
    "  {\"timeUnixNano\":\"1700000000000000000\",\"eventName\":"
    "   \"gen_ai.client.inference.operation.details\",\"body\":{\"stringValue\":\"secret\"}},"
    "  "
    "{\"attributes\":[{\"key\":\"event.name\",\"value\":{\"stringValue\":\"gen_ai.user.message\"}}]"
    ","
    "   \"body\":{\"kvlistValue\":{\"values\":[]}}},"
    "  {\"attributes\":[{\"key\":\"event.name\",\"value\":{\"stringValue\":\"http.request\"}}]},"
    "  {\"eventName\":\"app.started\",\"attributes\":[{\"key\":\"event.name\","
    "   \"value\":{\"stringValue\":\"gen_ai.choice\"}}]},"
    "  {\"body\":{\"stringValue\":\"gen_ai.user.message plain log\"}},"
    "  {\"eventName\":\"\",\"attributes\":[{\"key\":\"event.name\","
    "   \"value\":{\"stringValue\":\"gen_ai.tool.message\"}}]}"
    " ]}]},{\"scopeLogs\":[{\"logRecords\":[{\"eventName\":\"gen_ai.choice\"}]},{}]}]}";

START_TEST(json_counts_and_errors)
{
    sn_otlp_log_stats st;
    char err[SN_OTLP_ERR_MAX];
    ck_assert_msg(sn_otlp_decode_logs_json((const uint8_t *)full_json, strlen(full_json), &st, err,
                                           sizeof err) == 0,
                  "%s", err);
    ck_assert_uint_eq(st.resource_logs, 2);
    ck_assert_uint_eq(st.scope_logs, 3);
    ck_assert_uint_eq(st.log_records, 7);
    ck_assert_uint_eq(st.genai_events, 4);

    static const struct {
        const char *json;
        const char *msg;
    } cases[] = {
        {"[7]", "not a JSON object"},
        {"{\"resourceLogs\":{}}", "request.resourceLogs is not an array"},
        {"{\"resourceLogs\":[null]}", "resourceLogs[0] is not an object"},
        {"{\"resourceLogs\":[{\"scopeLogs\":[[]]}]}", "scopeLogs[0] is not an object"},
        {"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":\"x\"}]}]}",
         "logRecords is not an array"},
        {"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"attributes\":[1]}]}]}]}",
         "attributes[0] is not an object"},
        {"{\"resourceLogs\":[{", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(sn_otlp_decode_logs_json((const uint8_t *)cases[i].json,
                                                  strlen(cases[i].json), &st, err, sizeof err),
                         -1);
        ck_assert_msg(strstr(err, cases[i].msg) != NULL, "case %zu: '%s'", i, err);
        ck_assert_uint_eq(st.log_records, 0);
    }
    /* Every cut of the document is an error, never a crash. */
    size_t len = strlen(full_json);
    for (size_t cut = 0; cut < len; cut++) {
        char *copy = malloc(cut + 1);
        ck_assert_ptr_nonnull(copy);
        memcpy(copy, full_json, cut);
        int rc = sn_otlp_decode_logs_json((const uint8_t *)copy, cut, &st, err, sizeof err);
        free(copy);
        ck_assert_int_eq(rc, -1);
    }
    ck_assert_int_eq(sn_otlp_decode_logs_json((const uint8_t *)"{}", 2, NULL, NULL, 0), 0);
}
END_TEST

/* Found by fuzz_otlp_logs_json: jansson's error text quotes the input, so a line break or a raw
 * byte near a syntax error reached the one-line message (and the log and the HTTP 400 body). */
START_TEST(json_syntax_errors_are_one_line_of_ascii)
{
    static const uint8_t crash[] = {'"', '\\', '\n', 0xa5, '\r', 'b'};
    char err[SN_OTLP_ERR_MAX];
    ck_assert_int_eq(sn_otlp_decode_logs_json(crash, sizeof crash, NULL, err, sizeof err), -1);
    ck_assert_msg(strncmp(err, "invalid JSON at line 2", 22) == 0, "%s", err);
    for (const char *c = err; *c != '\0'; c++)
        ck_assert_msg(*c >= 0x20 && *c < 0x7f, "byte 0x%02x in '%s'", (unsigned char)*c, err);
    /* Cut to a small buffer: still terminated. */
    char small[24];
    ck_assert_int_eq(sn_otlp_decode_logs_json(crash, sizeof crash, NULL, small, sizeof small), -1);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
}
END_TEST

static Suite *logs_suite(void)
{
    Suite *s = suite_create("otlp_logs");
    TCase *tc = tcase_create("logs");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, records_and_genai_events_are_counted);
    tcase_add_test(tc, value_before_key);
    tcase_add_test(tc, truncated_and_corrupted);
    tcase_add_test(tc, wrong_wire_types_and_lengths);
    tcase_add_test(tc, json_counts_and_errors);
    tcase_add_test(tc, json_syntax_errors_are_one_line_of_ascii);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(logs_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
