/*
 * Differential tests of aggregator/ingest.c's hand-written Batch reader against protobuf-c:
 * valid Batches and tens of thousands of mutated ones (bytes flipped, set, inserted, deleted,
 * truncated) must be refused as malformed exactly when protobuf-c's unpack refuses them, and
 * otherwise give the events, alerts and batch fields (or the rule refusal) that protobuf-c's
 * message implies under the documented conversion rules (docs/aggregator.md).
 */
#include "ingest.h"
#include "sentinel/v1/sentinel.pb-c.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x853c49e6748fea9bull;

static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A Batch of n events (every field of the first ones set, fewer later) and two alerts,
 * serialized with protobuf-c into a malloc'ed buffer (*len bytes). */
static uint8_t *base_batch_of(size_t n, bool grouped, size_t *len)
{
    static Sentinel__V1__LlmEvent ev[8];
    static Sentinel__V1__LlmEvent *evp[8];
    static Sentinel__V1__LocalAlert al[2];
    static Sentinel__V1__LocalAlert *alp[2];
    static uint8_t trace[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    static uint8_t span[8] = {8, 7, 6, 5, 4, 3, 2, 1};
    static char svc[8][16];
    ck_assert_uint_le(n, 8);
    for (size_t i = 0; i < n; i++) {
        sentinel__v1__llm_event__init(&ev[i]);
        snprintf(svc[i], sizeof svc[i], "svc-%zu", i);
        ev[i].service = svc[i];
        ev[i].model = i % 2 ? "gpt-4o" : "claude-3-5-sonnet";
        ev[i].provider = "openai";
        ev[i].operation = "chat";
        ev[i].region = "eu-west-1";
        ev[i].service_version = "1.2.3";
        ev[i].pod = "pod-a";
        ev[i].user = "user-7";
        ev[i].error_type = i == 3 ? "timeout" : "";
        ev[i].finish_reason = "stop";
        if (i < 5) {
            ev[i].trace_id = (ProtobufCBinaryData){16, trace};
            ev[i].span_id = (ProtobufCBinaryData){8, span};
        }
        ev[i].start_unix_nano = INT64_C(1767225600000000000) + (int64_t)i;
        ev[i].end_unix_nano = ev[i].start_unix_nano + 1500000000;
        ev[i]._latency_ms_case = SENTINEL__V1__LLM_EVENT___LATENCY_MS_LATENCY_MS;
        ev[i].latency_ms = 1500.0 + (double)i;
        if (i % 2 == 0) {
            ev[i]._ttft_ms_case = SENTINEL__V1__LLM_EVENT___TTFT_MS_TTFT_MS;
            ev[i].ttft_ms = 200.25;
        }
        ev[i]._input_tokens_case = SENTINEL__V1__LLM_EVENT___INPUT_TOKENS_INPUT_TOKENS;
        ev[i].input_tokens = 500 + (int64_t)i;
        ev[i]._output_tokens_case = SENTINEL__V1__LLM_EVENT___OUTPUT_TOKENS_OUTPUT_TOKENS;
        ev[i].output_tokens = 200;
        ev[i]._total_tokens_case = SENTINEL__V1__LLM_EVENT___TOTAL_TOKENS_TOTAL_TOKENS;
        ev[i].total_tokens = 700 + (int64_t)i;
        if (i == 1) {
            ev[i]._cache_read_tokens_case =
                SENTINEL__V1__LLM_EVENT___CACHE_READ_TOKENS_CACHE_READ_TOKENS;
            ev[i].cache_read_tokens = 128;
            ev[i]._reasoning_tokens_case =
                SENTINEL__V1__LLM_EVENT___REASONING_TOKENS_REASONING_TOKENS;
            ev[i].reasoning_tokens = 64;
        }
        if (i != 2) {
            ev[i]._cost_usd_case = SENTINEL__V1__LLM_EVENT___COST_USD_COST_USD;
            ev[i].cost_usd = 0.0031;
            ev[i].cost_source = SENTINEL__V1__COST_SOURCE__COST_SOURCE_PRICE_TABLE;
        }
        ev[i].is_error = i == 3;
        ev[i].conventions = 1;
        evp[i] = &ev[i];
    }
    for (int i = 0; i < 2; i++) {
        sentinel__v1__local_alert__init(&al[i]);
        al[i].detector = "z_score";
        al[i].metric = "latency_ms";
        al[i].anomaly_type = "latency_spike";
        al[i].severity = SENTINEL__V1__SEVERITY__SEVERITY_HIGH;
        al[i].service = "svc-0";
        al[i].model = "gpt-4o";
        al[i].value = 9000.0;
        al[i].alert_id = "123e4567-e89b-12d3-a456-426614174000";
        alp[i] = &al[i];
    }
    Sentinel__V1__Batch b = SENTINEL__V1__BATCH__INIT;
    b.sidecar_id = "pod-a/0123abcd";
    b.sequence = 42;
    b.n_events = n;
    b.events = evp;
    /* Grouped: events 2.. in two groups (2..4 and 5..), which carry their resource strings. */
    static Sentinel__V1__EventGroup g[2];
    static Sentinel__V1__EventGroup *gp[2] = {&g[0], &g[1]};
    if (grouped && n > 2) {
        b.n_events = 2;
        size_t split = n < 5 ? n : 5;
        for (int k = 0; k < 2; k++) {
            sentinel__v1__event_group__init(&g[k]);
            g[k].service = k ? "svc-group-b" : "svc-group-a";
            g[k].region = "eu-west-1";
            g[k].service_version = k ? "" : "2.0.0";
            g[k].pod = "pod-b";
        }
        g[0].events = evp + 2;
        g[0].n_events = split - 2;
        g[1].events = evp + split;
        g[1].n_events = n - split;
        for (size_t i = 2; i < n; i++)
            ev[i].service = ev[i].region = ev[i].service_version = ev[i].pod = "";
        b.n_groups = n > split ? 2 : 1;
        b.groups = gp;
    }
    b.n_alerts = 2;
    b.alerts = alp;
    b.created_unix_nano = INT64_C(1767225601000000000);
    b.dropped_events = 3;
    *len = sentinel__v1__batch__get_packed_size(&b);
    uint8_t *buf = malloc(*len);
    ck_assert_ptr_nonnull(buf);
    sentinel__v1__batch__pack(&b, buf);
    return buf;
}

/* An IngestRequest (COMPRESSION_NONE) around payload; malloc'ed. */
static uint8_t *envelope(const uint8_t *payload, size_t plen, size_t *len)
{
    Sentinel__V1__IngestRequest r = SENTINEL__V1__INGEST_REQUEST__INIT;
    r.compression = SENTINEL__V1__COMPRESSION__COMPRESSION_NONE;
    r.uncompressed_size = plen;
    r.payload = (ProtobufCBinaryData){plen, (uint8_t *)payload};
    *len = sentinel__v1__ingest_request__get_packed_size(&r);
    uint8_t *buf = malloc(*len + 1);
    ck_assert_ptr_nonnull(buf);
    sentinel__v1__ingest_request__pack(&r, buf);
    return buf;
}

/* What the aggregator's rules make of one protobuf-c event: false when it breaks one. */
static bool ref_event(const Sentinel__V1__LlmEvent *m, sn_event *ev)
{
    sn_event_init(ev);
    const char *src[10] = {m->service,    m->model,           m->provider, m->operation,
                           m->region,     m->service_version, m->pod,      m->user,
                           m->error_type, m->finish_reason};
    char *dst[10] = {ev->service,    ev->model,           ev->provider, ev->operation,
                     ev->region,     ev->service_version, ev->pod,      ev->user,
                     ev->error_type, ev->finish_reason};
    size_t size[10] = {SN_NAME_MAX,  SN_NAME_MAX,  SN_SHORT_MAX, SN_SHORT_MAX, SN_SHORT_MAX,
                       SN_SHORT_MAX, SN_SHORT_MAX, SN_SHORT_MAX, SN_SHORT_MAX, SN_SHORT_MAX};
    for (int i = 0; i < 10; i++)
        sn_copy_truncated(dst[i], size[i], src[i], strlen(src[i]));
    if ((m->trace_id.len != 0 && m->trace_id.len != 16) ||
        (m->span_id.len != 0 && m->span_id.len != 8))
        return false;
    if (m->trace_id.len == 16)
        memcpy(ev->trace_id, m->trace_id.data, 16);
    if (m->span_id.len == 8)
        memcpy(ev->span_id, m->span_id.data, 8);
    ev->start_unix_nano = m->start_unix_nano;
    ev->end_unix_nano = m->end_unix_nano;
    if (m->_latency_ms_case != 0)
        ev->latency_ms = m->latency_ms;
    if (m->_ttft_ms_case != 0)
        ev->ttft_ms = m->ttft_ms;
    if ((!isnan(ev->latency_ms) && ev->latency_ms < 0) || (!isnan(ev->ttft_ms) && ev->ttft_ms < 0))
        return false;
    struct {
        int present;
        int64_t v;
        int64_t *dst;
    } c[] = {{m->_input_tokens_case, m->input_tokens, &ev->input_tokens},
             {m->_output_tokens_case, m->output_tokens, &ev->output_tokens},
             {m->_total_tokens_case, m->total_tokens, &ev->total_tokens},
             {m->_cache_read_tokens_case, m->cache_read_tokens, &ev->cache_read_tokens},
             {m->_cache_write_tokens_case, m->cache_write_tokens, &ev->cache_write_tokens},
             {m->_reasoning_tokens_case, m->reasoning_tokens, &ev->reasoning_tokens}};
    for (int i = 0; i < 6; i++) {
        if (!c[i].present)
            continue;
        if (c[i].v < 0)
            return false;
        *c[i].dst = c[i].v;
    }
    bool has_cost = m->_cost_usd_case != 0;
    if (m->cost_source == 0) {
        if (has_cost)
            return false;
    } else if (m->cost_source == 1 || m->cost_source == 2) {
        if (!has_cost || !isfinite(m->cost_usd) || m->cost_usd < 0)
            return false;
        ev->cost_usd = m->cost_usd;
        ev->cost_source = (uint8_t)m->cost_source;
    } else {
        return false;
    }
    ev->is_error = m->is_error != 0;
    ev->conventions = m->conventions;
    return true;
}

static void same_event(const sn_event *a, const sn_event *b)
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
    /* bit patterns: NAN (unknown) must stay NAN, values must be exact */
    ck_assert_mem_eq(&a->latency_ms, &b->latency_ms, sizeof(double));
    ck_assert_mem_eq(&a->ttft_ms, &b->ttft_ms, sizeof(double));
    ck_assert_mem_eq(&a->cost_usd, &b->cost_usd, sizeof(double));
    ck_assert_int_eq(a->input_tokens, b->input_tokens);
    ck_assert_int_eq(a->output_tokens, b->output_tokens);
    ck_assert_int_eq(a->total_tokens, b->total_tokens);
    ck_assert_int_eq(a->cache_read_tokens, b->cache_read_tokens);
    ck_assert_int_eq(a->cache_write_tokens, b->cache_write_tokens);
    ck_assert_int_eq(a->reasoning_tokens, b->reasoning_tokens);
    ck_assert_int_eq(a->cost_source, b->cost_source);
    ck_assert_int_eq(a->is_error, b->is_error);
    ck_assert_uint_eq(a->conventions, b->conventions);
    /* and every byte: the reader copies strings a word at a time into a zeroed event, so the
     * bytes after each string's NUL must stay zero as sn_event_init left them */
    ck_assert_mem_eq(a, b, sizeof *a);
}

static unsigned n_ok, n_malformed, n_rule;

/* Decodes payload both ways and checks they agree. */
static void compare(const uint8_t *payload, size_t plen)
{
    sn_ingest_config cfg;
    sn_ingest_config_init(&cfg);
    cfg.max_batch_events = 7; /* the base's count: a mutation that adds an event is over it */
    size_t elen;
    uint8_t *env = envelope(payload, plen, &elen);
    sn_ingest_decoded d;
    sn_ingest_refusal why = SN_INGEST_REFUSED_COUNT;
    char err[256] = "";
    int rc = sn_ingest_decode_request(env, elen, &cfg, &d, &why, err, sizeof err);
    Sentinel__V1__Batch *ref = sentinel__v1__batch__unpack(NULL, plen, payload);
    if (ref == NULL) {
        ck_assert_msg(rc != 0 && why == SN_INGEST_REFUSED_MALFORMED,
                      "protobuf-c refused a payload the reader took (rc %d, why %d: %s)", rc,
                      (int)why, err);
        n_malformed++;
        free(env);
        return;
    }
    ck_assert_msg(rc == 0 || why != SN_INGEST_REFUSED_MALFORMED,
                  "the reader refused a payload protobuf-c took: %s", err);
    /* the rules on protobuf-c's message */
    /* Events in wire order: the flat ones, then the groups' (the base writes them so; a
     * mutation that interleaves them would make the comparison below fail, loudly). */
    size_t n_all = ref->n_events;
    for (size_t k = 0; k < ref->n_groups; k++)
        n_all += ref->groups[k]->n_events;
    bool valid = strlen(ref->sidecar_id) >= 1 && strlen(ref->sidecar_id) <= SN_SEQ_ID_MAX &&
                 ref->sequence >= 1 && n_all <= cfg.max_batch_events &&
                 ref->n_alerts <= cfg.max_batch_alerts;
    static sn_event want[64];
    for (size_t i = 0; valid && i < ref->n_events && i < 64; i++)
        valid = ref_event(ref->events[i], &want[i]);
    size_t w = ref->n_events;
    for (size_t k = 0; valid && k < ref->n_groups; k++) {
        const Sentinel__V1__EventGroup *g = ref->groups[k];
        for (size_t i = 0; valid && i < g->n_events && w < 64; i++) {
            Sentinel__V1__LlmEvent e = *g->events[i];
            if (e.service[0] != '\0' || e.region[0] != '\0' || e.service_version[0] != '\0' ||
                e.pod[0] != '\0') {
                valid = false; /* an event in a group names its resource */
                break;
            }
            e.service = g->service;
            e.region = g->region;
            e.service_version = g->service_version;
            e.pod = g->pod;
            valid = ref_event(&e, &want[w++]);
        }
    }
    if (valid && rc != 0 && strstr(err, "alert") != NULL)
        valid = false; /* an alert broke a rule: the alert conversion is shared, not re-derived */
    ck_assert_msg((rc == 0) == valid, "reader rc %d (%s), rules say %s", rc, err,
                  valid ? "valid" : "invalid");
    if (rc == 0) {
        ck_assert_str_eq(d.batch.sidecar_id, ref->sidecar_id);
        ck_assert_uint_eq(d.batch.sequence, ref->sequence);
        ck_assert_int_eq(d.batch.created_unix_nano, ref->created_unix_nano);
        ck_assert_uint_eq(d.batch.dropped_events, ref->dropped_events);
        ck_assert_uint_eq(d.batch.nevents, n_all);
        ck_assert_uint_eq(d.batch.nalerts, ref->n_alerts);
        for (size_t i = 0; i < n_all; i++)
            same_event(&d.batch.events[i], &want[i]);
        sn_ingest_decoded_free(&d);
        n_ok++;
    } else {
        n_rule++;
    }
    sentinel__v1__batch__free_unpacked(ref, NULL);
    free(env);
}

START_TEST(valid_batches_decode_like_protobuf_c)
{
    for (int grouped = 0; grouped <= 1; grouped++) {
        for (size_t n = 0; n <= 7; n++) {
            size_t len;
            uint8_t *p = base_batch_of(n, grouped, &len);
            n_ok = 0;
            compare(p, len);
            ck_assert_uint_eq(n_ok, 1);
            free(p);
        }
    }
}
END_TEST

/* protobuf-c's corners, each once: a one-byte tag of field 0 is refused but a longer one is an
 * unknown field; a bool is read from any wire type; a known field with another wire type, a
 * group, a length past the end and a 6-byte length prefix are refused. */
START_TEST(protobuf_c_corners)
{
    static const struct {
        uint8_t b[16];
        size_t n;
    } ev[] = {
        {{0x0a, 0x01, 's', 0x00, 0x00}, 5},                          /* field 0, one-byte tag */
        {{0x0a, 0x01, 's', 0x81, 0x00, 1, 2, 3, 4, 5, 6, 7, 8}, 13}, /* field 0, two bytes */
        {{0x0a, 0x01, 's', 0xc9, 0x01, 0, 0, 0, 0, 0, 0, 0, 1}, 13}, /* is_error as I64 */
        {{0x0a, 0x01, 's', 0xca, 0x01, 0x01, 0x00}, 7},              /* is_error as LEN */
        {{0x0a, 0x01, 's', 0xcd, 0x01, 0x80, 0, 0, 0}, 9},           /* is_error as I32, 0 */
        {{0x0a, 0x01, 's', 0x10, 0x01}, 5},                          /* model as a varint */
        {{0x0a, 0x01, 's', 0x0b, 0x0c}, 5},                          /* a group */
        {{0x0a, 0x05, 's'}, 3},                                      /* past the end */
        {{0x0a, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 's'}, 8},        /* 6-byte length */
        {{0x0a, 0x01, 's', 0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01}, 9},  /* field 2^32-1 */
    };
    for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++) {
        uint8_t batch[64] = {0x0a, 0x01, 'x', 0x10, 0x01, 0x1a, (uint8_t)ev[i].n};
        memcpy(batch + 7, ev[i].b, ev[i].n);
        compare(batch, 7 + ev[i].n);
    }
}
END_TEST

/* Mutations of a flat batch (_i 0) and of one with event groups (_i 1). */
START_TEST(mutated_batches_decode_like_protobuf_c)
{
    size_t len;
    uint8_t *base = base_batch_of(7, _i == 1, &len);
    uint8_t *buf = malloc(len + 64);
    ck_assert_ptr_nonnull(buf);
    n_ok = n_malformed = n_rule = 0;
    for (int it = 0; it < 40000; it++) {
        memcpy(buf, base, len);
        size_t n = len;
        int muts = 1 + (int)(next_u64() % 3);
        for (int k = 0; k < muts && n > 0; k++) {
            size_t at = (size_t)(next_u64() % n);
            switch (next_u64() % 6) {
            case 0: /* flip a bit */
                buf[at] ^= (uint8_t)(1u << (next_u64() % 8));
                break;
            case 1: /* any byte */
                buf[at] = (uint8_t)next_u64();
                break;
            case 2: /* a small or boundary value */
                buf[at] = (uint8_t[]){0x00, 0x01, 0x7f, 0x80, 0xff, 0x08, 0x0a}[next_u64() % 7];
                break;
            case 3: /* insert */
                if (n < len + 60) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = (uint8_t)next_u64();
                    n++;
                }
                break;
            case 4: /* delete */
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default: /* truncate */
                n = at;
            }
        }
        compare(buf, n);
    }
    /* the mutations reach every outcome */
    ck_assert_uint_gt(n_ok, 1000);
    ck_assert_uint_gt(n_malformed, 1000);
    ck_assert_uint_gt(n_rule, 100);
    free(buf);
    free(base);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ingest_decode");
    TCase *tc = tcase_create("differential");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, valid_batches_decode_like_protobuf_c);
    tcase_add_test(tc, protobuf_c_corners);
    tcase_add_loop_test(tc, mutated_batches_decode_like_protobuf_c, 0, 2);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
