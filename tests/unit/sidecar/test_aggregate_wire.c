/*
 * GenAI metric aggregates and the local-alert suppressed count on the wire: what the sidecar's
 * encoder (sidecar/batch.c) writes is what the aggregator's decoder (aggregator/ingest.c)
 * reads, unknown values stay unknown, and either side refuses an invalid aggregate.
 */
#include "batch.h"
#include "ingest.h"
#include "spool.h"
#include "sentinel/v1/sentinel.pb-c.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sn_aggregate aggregate(sn_metric m)
{
    sn_aggregate g;
    memset(&g, 0, sizeof g);
    snprintf(g.service, sizeof g.service, "chat-api");
    snprintf(g.model, sizeof g.model, "gpt-4o-mini");
    snprintf(g.provider, sizeof g.provider, "openai");
    snprintf(g.operation, sizeof g.operation, "chat");
    snprintf(g.region, sizeof g.region, "us-east-1");
    g.metric = m;
    g.start_unix_nano = 1700000000000000000;
    g.end_unix_nano = 1700000010000000000;
    g.count = 12;
    g.sum = 13000.5;
    g.min = 700.25;
    g.max = 2100.0;
    g.cost_usd = NAN;
    return g;
}

/* Encodes b and decodes it as the aggregator does; returns the decoder's result. */
static int round_trip(const sn_batch *b, sn_ingest_decoded *d)
{
    sn_batch_config bc;
    sn_batch_config_init(&bc);
    sn_batch_encoder *enc = NULL;
    char err[256] = "";
    ck_assert_int_eq(sn_batch_encoder_create(&bc, &enc, err, sizeof err), 0);
    const uint8_t *out;
    size_t len;
    ck_assert_msg(sn_batch_encode(enc, b, &out, &len, NULL, err, sizeof err) == 0, "%s", err);
    sn_ingest_config ic;
    sn_ingest_config_init(&ic);
    int rc = sn_ingest_decode_request(out, len, &ic, d, NULL, err, sizeof err);
    sn_batch_encoder_destroy(enc);
    return rc;
}

START_TEST(aggregates_and_suppressed_arrive_as_sent)
{
    sn_aggregate g[2] = {aggregate(SN_METRIC_LATENCY_MS), aggregate(SN_METRIC_OUTPUT_TOKENS)};
    snprintf(g[0].error_type, sizeof g[0].error_type, "timeout");
    g[0].error_count = 12;
    g[1].min = g[1].max = NAN;
    g[1].sum = 4800.0;
    g[1].cost_usd = 0.00288;
    sn_local_alert al;
    memset(&al, 0, sizeof al);
    snprintf(al.service, sizeof al.service, "chat-api");
    snprintf(al.model, sizeof al.model, "gpt-4o-mini");
    al.metric = SN_METRIC_LATENCY_MS;
    al.anomaly_type = SN_ANOMALY_LATENCY_SPIKE;
    al.detector = SN_DETECT_ZSCORE;
    al.severity = SN_SEV_HIGH;
    al.suppressed = 41;
    sn_batch b = {.sidecar_id = "pod/1",
                  .sequence = 3,
                  .alerts = &al,
                  .n_alerts = 1,
                  .aggregates = g,
                  .n_aggregates = 2};
    sn_ingest_decoded d;
    ck_assert_int_eq(round_trip(&b, &d), 0);
    ck_assert_uint_eq(d.batch.nalerts, 1);
    ck_assert_uint_eq(d.batch.alerts[0].suppressed, 41);
    ck_assert_uint_eq(d.batch.naggregates, 2);
    ck_assert_ptr_eq(d.batch.aggregates, d.aggregates);
    const sn_aggregate *a = &d.batch.aggregates[0];
    ck_assert_str_eq(a->service, "chat-api");
    ck_assert_str_eq(a->model, "gpt-4o-mini");
    ck_assert_str_eq(a->provider, "openai");
    ck_assert_str_eq(a->operation, "chat");
    ck_assert_str_eq(a->region, "us-east-1");
    ck_assert_str_eq(a->error_type, "timeout");
    ck_assert_int_eq(a->metric, SN_METRIC_LATENCY_MS);
    ck_assert_int_eq(a->start_unix_nano, 1700000000000000000);
    ck_assert_int_eq(a->end_unix_nano, 1700000010000000000);
    ck_assert_uint_eq(a->count, 12);
    ck_assert_uint_eq(a->error_count, 12);
    ck_assert_double_eq(a->sum, 13000.5);
    ck_assert_double_eq(a->min, 700.25);
    ck_assert_double_eq(a->max, 2100.0);
    ck_assert(isnan(a->cost_usd));
    a = &d.batch.aggregates[1];
    ck_assert_int_eq(a->metric, SN_METRIC_OUTPUT_TOKENS);
    ck_assert_str_eq(a->error_type, "");
    ck_assert_uint_eq(a->error_count, 0);
    ck_assert(isnan(a->min) && isnan(a->max));
    ck_assert_double_eq(a->sum, 4800.0);
    ck_assert_double_eq(a->cost_usd, 0.00288);
    sn_ingest_decoded_free(&d);
    ck_assert_ptr_null(d.aggregates);
}
END_TEST

START_TEST(the_encoder_refuses_invalid_aggregates)
{
    sn_batch_config bc;
    sn_batch_config_init(&bc);
    sn_batch_encoder *enc = NULL;
    char err[256] = "";
    ck_assert_int_eq(sn_batch_encoder_create(&bc, &enc, err, sizeof err), 0);
    sn_aggregate g = aggregate(SN_METRIC_TOTAL_TOKENS);
    sn_batch b = {.sidecar_id = "pod/1", .sequence = 1, .aggregates = &g, .n_aggregates = 1};
    const uint8_t *out;
    size_t len;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "aggregate 0"));
    g = aggregate(SN_METRIC_LATENCY_MS);
    g.count = 0;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    g.count = 2;
    g.error_count = 3;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    b.aggregates = NULL;
    ck_assert_int_eq(sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err), -EINVAL);
    sn_batch_encoder_destroy(enc);
}
END_TEST

/* Aggregates journaled as records (the metrics path): the record bytes are the aggregates
 * entries sn_batch_encode writes, a sealed batch copies them unchanged, the aggregator reads
 * them, the scan used by recovery counts them and refuses what the aggregator would. */
START_TEST(aggregates_in_journal_records_round_trip)
{
    sn_aggregate g[2] = {aggregate(SN_METRIC_LATENCY_MS), aggregate(SN_METRIC_INPUT_TOKENS)};
    g[1].cost_usd = 0.5;
    g[1].min = NAN;
    size_t cap = sn_batch_aggregate_record_bound(2), len = 0;
    uint8_t *rec = malloc(cap);
    ck_assert_ptr_nonnull(rec);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(sn_batch_append_aggregate_record(&g[i], rec, cap, &len), 0);
    size_t ne = 9, na = 9;
    char err[256] = "";
    ck_assert_int_eq(sn_batch_scan_record(rec, len, &ne, &na, err, sizeof err), 0);
    ck_assert_uint_eq(ne, 0);
    ck_assert_uint_eq(na, 2);

    /* The same IngestRequest whether the aggregates come as structs or as record bytes. */
    sn_batch_config bc;
    sn_batch_config_init(&bc);
    sn_batch_encoder *enc = NULL;
    ck_assert_int_eq(sn_batch_encoder_create(&bc, &enc, err, sizeof err), 0);
    sn_batch as_structs = {
        .sidecar_id = "pod/1", .sequence = 4, .aggregates = g, .n_aggregates = 2};
    const uint8_t *out;
    size_t out_len;
    ck_assert_int_eq(sn_batch_encode(enc, &as_structs, &out, &out_len, NULL, err, sizeof err), 0);
    uint8_t *first = malloc(out_len);
    ck_assert_ptr_nonnull(first);
    memcpy(first, out, out_len);
    size_t first_len = out_len;
    sn_batch as_records = {.sidecar_id = "pod/1",
                           .sequence = 4,
                           .records = rec,
                           .records_len = len,
                           .n_record_aggregates = 2};
    ck_assert_int_eq(sn_batch_encode(enc, &as_records, &out, &out_len, NULL, err, sizeof err), 0);
    ck_assert_uint_eq(out_len, first_len);
    ck_assert_mem_eq(out, first, out_len);
    /* The aggregate limit counts record aggregates. */
    as_records.n_record_aggregates = bc.max_events + 1;
    ck_assert_int_eq(sn_batch_encode(enc, &as_records, &out, &out_len, NULL, err, sizeof err),
                     -EINVAL);
    as_records.n_record_aggregates = 2;
    sn_batch_encoder_destroy(enc);

    sn_ingest_decoded d;
    ck_assert_int_eq(round_trip(&as_records, &d), 0);
    ck_assert_uint_eq(d.batch.naggregates, 2);
    ck_assert_uint_eq(d.batch.aggregates[0].count, 12);
    ck_assert_double_eq(d.batch.aggregates[0].min, 700.25);
    ck_assert_int_eq(d.batch.aggregates[1].metric, SN_METRIC_INPUT_TOKENS);
    ck_assert_double_eq(d.batch.aggregates[1].cost_usd, 0.5);
    ck_assert(isnan(d.batch.aggregates[1].min));
    sn_ingest_decoded_free(&d);

    /* Cut anywhere inside an entry: refused. */
    size_t one = 0;
    ck_assert_int_eq(sn_batch_append_aggregate_record(&g[0], first, first_len, &one), 0);
    for (size_t cut = 1; cut < len; cut++) {
        if (cut == one)
            continue;
        ck_assert_int_eq(sn_batch_scan_record(rec, cut, &ne, &na, err, sizeof err), -EINVAL);
    }
    /* What the aggregator refuses is refused, by the encoder and by the scan. */
    sn_aggregate bad = aggregate(SN_METRIC_LATENCY_MS);
    bad.count = 0;
    size_t blen = 0;
    ck_assert_int_eq(sn_batch_append_aggregate_record(&bad, rec, cap, &blen), -EINVAL);
    ck_assert_uint_eq(blen, 0);
    Sentinel__V1__LlmAggregate pa = SENTINEL__V1__LLM_AGGREGATE__INIT;
    pa.metric = "latency_ms";
    pa.count = 2;
    pa.error_count = 3;
    Sentinel__V1__LlmAggregate *list[1] = {&pa};
    Sentinel__V1__Batch pb = SENTINEL__V1__BATCH__INIT;
    pb.n_aggregates = 1;
    pb.aggregates = list;
    size_t plen = sentinel__v1__batch__pack(&pb, rec);
    ck_assert_int_eq(sn_batch_scan_record(rec, plen, &ne, &na, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "count"));
    pa.error_count = 0;
    pa.metric = "total_tokens";
    plen = sentinel__v1__batch__pack(&pb, rec);
    ck_assert_int_eq(sn_batch_scan_record(rec, plen, &ne, &na, err, sizeof err), -EINVAL);
    pa.metric = "ttft_ms";
    pa._sum_case = SENTINEL__V1__LLM_AGGREGATE___SUM_SUM;
    pa.sum = -1.0;
    plen = sentinel__v1__batch__pack(&pb, rec);
    ck_assert_int_eq(sn_batch_scan_record(rec, plen, &ne, &na, err, sizeof err), -EINVAL);
    pa.sum = 1.0;
    plen = sentinel__v1__batch__pack(&pb, rec);
    ck_assert_int_eq(sn_batch_scan_record(rec, plen, &ne, &na, err, sizeof err), 0);
    ck_assert_uint_eq(na, 1);
    /* Too little room: -ENOBUFS, the length untouched. */
    blen = 0;
    ck_assert_int_eq(sn_batch_append_aggregate_record(&g[0], rec, 20, &blen), -ENOBUFS);
    ck_assert_uint_eq(blen, 0);
    free(first);
    free(rec);
}
END_TEST

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* What recovery collects: the records' bytes, as the pipeline's on_recovered adds them to the
 * open batch, and their counts from sn_batch_scan_record. */
typedef struct recovered {
    uint8_t buf[4096];
    size_t len, n_events, n_aggs, records;
} recovered;

static int collect_record(void *ud, const uint8_t *data, size_t len, uint64_t generation)
{
    (void)generation;
    recovered *r = ud;
    size_t ne = 0, na = 0;
    char err[256] = "";
    ck_assert_msg(sn_batch_scan_record(data, len, &ne, &na, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_le(r->len + len, sizeof r->buf);
    memcpy(r->buf + r->len, data, len);
    r->len += len;
    r->n_events += ne;
    r->n_aggs += na;
    r->records++;
    return 0;
}

/* A journal holding aggregate records and no sealed batch (a kill -9 before the seal): the next
 * open hands the records back, the scan counts their aggregates, and the batch sealed from their
 * bytes carries every aggregate to the aggregator. */
START_TEST(journaled_aggregates_are_recovered_and_resealed)
{
    char dir[] = "/tmp/sn-aggwire-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    sn_spool_config sc;
    sn_spool_config_defaults(&sc);
    char err[256] = "";
    sn_spool *sp = NULL;
    ck_assert_msg(sn_spool_open(dir, &sc, &sp, err, sizeof err) == 0, "%s", err);
    sn_aggregate g[3] = {aggregate(SN_METRIC_LATENCY_MS), aggregate(SN_METRIC_INPUT_TOKENS),
                         aggregate(SN_METRIC_OUTPUT_TOKENS)};
    g[2].count = 5;
    uint8_t rec[2048];
    size_t len = 0;
    ck_assert_int_eq(sn_batch_append_aggregate_record(&g[0], rec, sizeof rec, &len), 0);
    ck_assert_int_eq(sn_batch_append_aggregate_record(&g[1], rec, sizeof rec, &len), 0);
    ck_assert_int_eq(sn_spool_journal_append(sp, rec, len), 0); /* one request */
    len = 0;
    ck_assert_int_eq(sn_batch_append_aggregate_record(&g[2], rec, sizeof rec, &len), 0);
    ck_assert_int_eq(sn_spool_journal_append(sp, rec, len), 0); /* another */
    sn_spool_close(sp);                                         /* no seal */

    ck_assert_msg(sn_spool_open(dir, &sc, &sp, err, sizeof err) == 0, "%s", err);
    static recovered r;
    memset(&r, 0, sizeof r);
    ck_assert_int_eq(sn_spool_recover_journal(sp, collect_record, &r), 0);
    ck_assert_uint_eq(r.records, 2);
    ck_assert_uint_eq(r.n_events, 0);
    ck_assert_uint_eq(r.n_aggs, 3);
    sn_batch b = {.sidecar_id = "pod/1",
                  .sequence = 1,
                  .records = r.buf,
                  .records_len = r.len,
                  .n_record_aggregates = r.n_aggs};
    sn_ingest_decoded d;
    ck_assert_int_eq(round_trip(&b, &d), 0);
    ck_assert_uint_eq(d.batch.naggregates, 3);
    ck_assert_int_eq(d.batch.aggregates[0].metric, SN_METRIC_LATENCY_MS);
    ck_assert_int_eq(d.batch.aggregates[1].metric, SN_METRIC_INPUT_TOKENS);
    ck_assert_int_eq(d.batch.aggregates[2].metric, SN_METRIC_OUTPUT_TOKENS);
    ck_assert_uint_eq(d.batch.aggregates[2].count, 5);
    sn_ingest_decoded_free(&d);
    sn_spool_close(sp);
    ck_assert_int_eq(nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}
END_TEST

/* A Batch with one hand-made aggregate, wrapped in an uncompressed IngestRequest. */
static int decode_one(Sentinel__V1__LlmAggregate *a, char *err, size_t errlen)
{
    Sentinel__V1__LlmAggregate *list[1] = {a};
    Sentinel__V1__Batch b = SENTINEL__V1__BATCH__INIT;
    b.sidecar_id = "pod/1";
    b.sequence = 1;
    b.n_aggregates = 1;
    b.aggregates = list;
    size_t blen = sentinel__v1__batch__get_packed_size(&b);
    uint8_t *payload = malloc(blen);
    sentinel__v1__batch__pack(&b, payload);
    Sentinel__V1__IngestRequest r = SENTINEL__V1__INGEST_REQUEST__INIT;
    r.payload.data = payload;
    r.payload.len = blen;
    r.uncompressed_size = blen;
    size_t len = sentinel__v1__ingest_request__get_packed_size(&r);
    uint8_t *req = malloc(len);
    sentinel__v1__ingest_request__pack(&r, req);
    sn_ingest_config ic;
    sn_ingest_config_init(&ic);
    sn_ingest_decoded d;
    int rc = sn_ingest_decode_request(req, len, &ic, &d, NULL, err, errlen);
    if (rc == 0)
        sn_ingest_decoded_free(&d);
    free(req);
    free(payload);
    return rc;
}

START_TEST(the_decoder_refuses_invalid_aggregates)
{
    char err[256];
    Sentinel__V1__LlmAggregate a = SENTINEL__V1__LLM_AGGREGATE__INIT;
    a.service = "chat";
    a.metric = "latency_ms";
    a.count = 3;
    ck_assert_int_eq(decode_one(&a, err, sizeof err), 0);
    a.metric = "cost_usd";
    ck_assert_int_eq(decode_one(&a, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "aggregate 0"));
    a.metric = "latency_ms";
    a.count = 0;
    ck_assert_int_eq(decode_one(&a, err, sizeof err), -EINVAL);
    a.count = 3;
    a.error_count = 4;
    ck_assert_int_eq(decode_one(&a, err, sizeof err), -EINVAL);
    a.error_count = 0;
    a._sum_case = SENTINEL__V1__LLM_AGGREGATE___SUM_SUM;
    a.sum = -1.0;
    ck_assert_int_eq(decode_one(&a, err, sizeof err), -EINVAL);
    a.sum = INFINITY;
    ck_assert_int_eq(decode_one(&a, err, sizeof err), -EINVAL);
    a.sum = 3000.0;
    ck_assert_int_eq(decode_one(&a, err, sizeof err), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("aggregate_wire");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, aggregates_and_suppressed_arrive_as_sent);
    tcase_add_test(tc, the_encoder_refuses_invalid_aggregates);
    tcase_add_test(tc, aggregates_in_journal_records_round_trip);
    tcase_add_test(tc, journaled_aggregates_are_recovered_and_resealed);
    tcase_add_test(tc, the_decoder_refuses_invalid_aggregates);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
