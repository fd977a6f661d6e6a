/* Sidecar -> aggregator contract, in one process on 127.0.0.1: batches encoded by
 * sidecar/batch.c and sent by sidecar/ship.c to the aggregator's real Ingest service
 * (aggregator/ingest.c: protobuf-c decoding, zstd, validation, de-duplication). Every event
 * and alert the aggregator applies must equal what the sidecar sealed; replays are DUPLICATE;
 * an aggregator that cannot apply now answers RETRY_AFTER and the resend of the same bytes is
 * applied once. Local alerts sent ahead by sidecar/alert_ship.c arrive alone with sequence 0,
 * are retried after RETRY_AFTER, and fall back to their batches (counted) when refused. */
#include "alert_ship.h"
#include "batch.h"
#include "ingest.h"
#include "metrics.h"
#include "ship.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ID "pod-a/00c0ffee00c0ffee"
#define NE 6
#define NA 2

typedef struct applied {
    pthread_mutex_t mu;
    int calls;
    int rc; /* what apply answers */
    char sidecar_id[SN_BATCH_ID_MAX];
    uint64_t sequence;
    int64_t created;
    uint64_t dropped;
    size_t nevents, nalerts;
    sn_event events[NE];
    sn_local_alert alerts[NA];
} applied;

static int apply(const sn_ingest_batch *b, void *ud)
{
    applied *a = ud;
    pthread_mutex_lock(&a->mu);
    a->calls++;
    int rc = a->rc;
    if (rc == 0) {
        snprintf(a->sidecar_id, sizeof a->sidecar_id, "%s", b->sidecar_id);
        a->sequence = b->sequence;
        a->created = b->created_unix_nano;
        a->dropped = b->dropped_events;
        a->nevents = b->nevents;
        a->nalerts = b->nalerts;
        if (b->nevents > 0 && b->nevents <= NE) /* alerts ahead: no events, NULL */
            memcpy(a->events, b->events, b->nevents * sizeof *b->events);
        if (b->nalerts > 0 && b->nalerts <= NA)
            memcpy(a->alerts, b->alerts, b->nalerts * sizeof *b->alerts);
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

static void make_events(sn_event *ev)
{
    for (int i = 0; i < NE; i++) {
        sn_event *e = &ev[i];
        sn_event_init(e);
        e->start_unix_nano = 1700000000000000000 + i;
        e->end_unix_nano = 1700000001500000000 + i;
        snprintf(e->service, sizeof e->service, "chatbot-%d", i);
        snprintf(e->model, sizeof e->model, "gpt-4o");
        snprintf(e->provider, sizeof e->provider, "openai");
        snprintf(e->operation, sizeof e->operation, "chat");
        snprintf(e->region, sizeof e->region, "us-east-1");
        snprintf(e->service_version, sizeof e->service_version, "1.2.%d", i);
        snprintf(e->pod, sizeof e->pod, "chatbot-7f9c");
        snprintf(e->finish_reason, sizeof e->finish_reason, "stop");
        for (int k = 0; k < 16; k++)
            e->trace_id[k] = (uint8_t)(k + 1 + i);
        for (int k = 0; k < 8; k++)
            e->span_id[k] = (uint8_t)(0xa0 + k + i);
        e->latency_ms = 1500.25 + i;
        e->input_tokens = 1200 + i;
        e->output_tokens = 345;
        e->total_tokens = 1545 + i;
        e->cost_usd = 0.0123 * (i + 1);
        e->cost_source = SN_COST_PRICE_TABLE;
        e->conventions = SN_CONV_GENAI;
    }
    /* Unknowns, zeros and the longest strings travel too. */
    memset(ev[1].service, 'S', SN_NAME_MAX - 1);
    memset(ev[1].model, 'M', SN_NAME_MAX - 1);
    memset(ev[1].error_type, 'E', SN_SHORT_MAX - 1);
    ev[1].is_error = true;
    ev[2].latency_ms = NAN;
    ev[2].input_tokens = SN_UNKNOWN_COUNT;
    ev[2].cost_usd = NAN;
    ev[2].cost_source = SN_COST_UNKNOWN;
    memset(ev[2].trace_id, 0, 16);
    memset(ev[2].span_id, 0, 8);
    ev[3].output_tokens = 0;
    ev[3].ttft_ms = 210.5;
    ev[3].cache_read_tokens = 64;
    ev[3].cache_write_tokens = 0;
    ev[3].reasoning_tokens = 12;
    ev[3].cost_source = SN_COST_SPAN;
    ev[3].conventions = SN_CONV_OPENINFERENCE | SN_CONV_OPENLLMETRY;
    sn_event_init(&ev[4]);
    ev[5].cost_usd = 0.0;
}

static void make_alerts(sn_local_alert *al, const sn_event *ev)
{
    for (int i = 0; i < NA; i++) {
        sn_verdict v;
        sn_verdict_init(&v, i == 0 ? SN_DETECT_ZSCORE : SN_DETECT_THRESHOLD, 12000.0);
        v.ready = v.anomaly = true;
        v.severity = i == 0 ? SN_SEV_HIGH : SN_SEV_CRITICAL;
        v.baseline = 2000.0;
        v.threshold = 6000.0;
        v.deviation = i == 0 ? 5.2 : NAN;
        v.confidence = 0.95;
        v.direction = 1;
        uint8_t rnd[16];
        for (int k = 0; k < 16; k++)
            rnd[k] = (uint8_t)(31 * k + i);
        char id[SN_ALERT_ID_LEN + 1];
        sn_uuid_format(rnd, id);
        sn_local_alert_fill(&al[i], &ev[i], i == 0 ? SN_METRIC_LATENCY_MS : SN_METRIC_COST_USD, &v,
                            id);
    }
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

static void same_alert(const sn_local_alert *a, const sn_local_alert *b)
{
    ck_assert_str_eq(a->alert_id, b->alert_id);
    ck_assert_int_eq(a->time_unix_nano, b->time_unix_nano);
    ck_assert_str_eq(a->service, b->service);
    ck_assert_str_eq(a->model, b->model);
    ck_assert_str_eq(a->region, b->region);
    ck_assert_int_eq(a->metric, b->metric);
    ck_assert_int_eq(a->anomaly_type, b->anomaly_type);
    ck_assert_int_eq(a->detector, b->detector);
    ck_assert_int_eq(a->severity, b->severity);
    ck_assert_double_eq(a->value, b->value);
    ck_assert_double_eq(a->baseline, b->baseline);
    ck_assert_double_eq(a->threshold, b->threshold);
    ck_assert(isnan(a->deviation) ? isnan(b->deviation) : a->deviation == b->deviation);
    ck_assert_double_eq(a->confidence, b->confidence);
    ck_assert_mem_eq(a->trace_id, b->trace_id, 16);
}

typedef struct done {
    int calls;
    sn_ship_result res;
} done;

static void on_done(sn_ship *ship, const sn_ship_result *res, void *ud)
{
    (void)ship;
    done *d = ud;
    d->calls++;
    d->res = *res;
}

static sn_ship_result ship_once(sn_ship *ship, uv_loop_t *loop, const uint8_t *req, size_t len)
{
    done d = {0};
    ck_assert_int_eq(sn_ship_send(ship, req, len, on_done, &d), 0);
    ck_assert_int_eq(uv_run(loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(d.calls, 1);
    return d.res;
}

/* Starts the real Ingest service on a free loopback port, applying into ap; target gets its
 * "127.0.0.1:port" (64 bytes). Free with sn_ingest_destroy. */
static sn_ingest *start_ingest(applied *ap, uint32_t retry_after_ms, size_t max_alerts,
                               char *target)
{
    sn_ingest_config icfg;
    sn_ingest_config_init(&icfg);
    icfg.listen = "127.0.0.1:0";
    icfg.retry_after_ms = retry_after_ms;
    icfg.max_batch_alerts = max_alerts;
    icfg.apply = apply;
    icfg.apply_ud = ap;
    sn_ingest *in = NULL;
    char err[256];
    ck_assert_msg(sn_ingest_create(&icfg, &in, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(sn_ingest_start(in), 0);
    snprintf(target, 64, "127.0.0.1:%d", sn_ingest_port(in));
    return in;
}

START_TEST(batches_reach_the_aggregator_intact_once_and_in_order)
{
    static applied ap = {.mu = PTHREAD_MUTEX_INITIALIZER};
    char target[64], err[256];
    sn_ingest *in = start_ingest(&ap, 250, SN_INGEST_DEFAULT_MAX_ALERTS, target);

    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    sn_ship_config scfg;
    sn_ship_config_init(&scfg);
    scfg.aggregator = target;
    sn_ship *ship = NULL;
    ck_assert_msg(sn_ship_create(&scfg, &loop, &ship, err, sizeof err) == 0, "%s", err);

    sn_batch_config bcfg;
    sn_batch_config_init(&bcfg);
    sn_batch_encoder *zenc = NULL, *plain = NULL;
    ck_assert_int_eq(sn_batch_encoder_create(&bcfg, &zenc, err, sizeof err), 0);
    bcfg.zstd_level = 0;
    ck_assert_int_eq(sn_batch_encoder_create(&bcfg, &plain, err, sizeof err), 0);

    sn_event ev[NE];
    make_events(ev);
    sn_local_alert al[NA];
    make_alerts(al, ev);

    /* 1: zstd, applied and acknowledged; everything arrives as sealed. */
    sn_batch b = {.sidecar_id = ID,
                  .sequence = 1,
                  .events = ev,
                  .n_events = NE,
                  .alerts = al,
                  .n_alerts = NA,
                  .created_unix_nano = 1700000002000000000,
                  .dropped_events = 3};
    const uint8_t *out;
    size_t len;
    ck_assert_msg(sn_batch_encode(zenc, &b, &out, &len, NULL, err, sizeof err) == 0, "%s", err);
    uint8_t *first = malloc(len);
    memcpy(first, out, len);
    size_t first_len = len;
    sn_ship_result r = ship_once(ship, &loop, first, first_len);
    ck_assert_msg(r.outcome == SN_SHIP_ACKED, "outcome %d status %d: %s", r.outcome, r.grpc_status,
                  r.message);
    ck_assert_uint_eq(r.acknowledged_sequence, 1);
    ck_assert_int_eq(ap.calls, 1);
    ck_assert_str_eq(ap.sidecar_id, ID);
    ck_assert_uint_eq(ap.sequence, 1);
    ck_assert_int_eq(ap.created, 1700000002000000000);
    ck_assert_uint_eq(ap.dropped, 3);
    ck_assert_uint_eq(ap.nevents, NE);
    ck_assert_uint_eq(ap.nalerts, NA);
    for (int i = 0; i < NE; i++)
        same_event(&ap.events[i], &ev[i]);
    for (int i = 0; i < NA; i++)
        same_alert(&ap.alerts[i], &al[i]);

    /* The same bytes again (an answer lost): DUPLICATE, not applied again. */
    r = ship_once(ship, &loop, first, first_len);
    ck_assert_int_eq(r.outcome, SN_SHIP_DUPLICATE);
    ck_assert_uint_eq(r.acknowledged_sequence, 1);
    ck_assert_int_eq(ap.calls, 1);

    /* 2: the aggregator cannot apply now -> RETRY_AFTER; the resend is applied. */
    b.sequence = 2;
    b.n_events = 2;
    b.n_alerts = 0;
    ck_assert_int_eq(sn_batch_encode(zenc, &b, &out, &len, NULL, err, sizeof err), 0);
    pthread_mutex_lock(&ap.mu);
    ap.rc = -EAGAIN;
    pthread_mutex_unlock(&ap.mu);
    r = ship_once(ship, &loop, out, len);
    ck_assert_int_eq(r.outcome, SN_SHIP_RETRY_AFTER);
    ck_assert_uint_eq(r.retry_after_ms, 250);
    ck_assert_uint_eq(r.acknowledged_sequence, 1);
    pthread_mutex_lock(&ap.mu);
    ap.rc = 0;
    pthread_mutex_unlock(&ap.mu);
    r = ship_once(ship, &loop, out, len);
    ck_assert_int_eq(r.outcome, SN_SHIP_ACKED);
    ck_assert_uint_eq(r.acknowledged_sequence, 2);
    ck_assert_int_eq(ap.calls, 3);
    ck_assert_uint_eq(ap.nevents, 2);
    same_event(&ap.events[1], &ev[1]);

    /* 3: uncompressed, and empty. */
    b = (sn_batch){.sidecar_id = ID, .sequence = 3};
    ck_assert_int_eq(sn_batch_encode(plain, &b, &out, &len, NULL, err, sizeof err), 0);
    r = ship_once(ship, &loop, out, len);
    ck_assert_int_eq(r.outcome, SN_SHIP_ACKED);
    ck_assert_uint_eq(r.acknowledged_sequence, 3);
    ck_assert_uint_eq(ap.nevents, 0);

    /* An old batch after newer ones is still a duplicate. */
    r = ship_once(ship, &loop, first, first_len);
    ck_assert_int_eq(r.outcome, SN_SHIP_DUPLICATE);
    ck_assert_uint_eq(r.acknowledged_sequence, 3);

    /* A batch the aggregator refuses for good is FAILED with INVALID_ARGUMENT. */
    static const uint8_t junk[] = {0x08, 0x01, 0x10, 0x05, 0x1a, 0x03, 'x', 'y', 'z'};
    r = ship_once(ship, &loop, junk, sizeof junk);
    ck_assert_int_eq(r.outcome, SN_SHIP_FAILED);
    ck_assert_int_eq(r.grpc_status, 3);

    sn_ingest_stats st;
    sn_ingest_stats_get(in, &st);
    ck_assert_uint_eq(st.batches, 3);
    ck_assert_uint_eq(st.duplicates, 2);
    ck_assert_uint_eq(st.events, NE + 2);
    ck_assert_uint_eq(st.alerts, NA);

    free(first);
    sn_batch_encoder_destroy(zenc);
    sn_batch_encoder_destroy(plain);
    sn_ship_destroy(ship);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    sn_ingest_destroy(in);
}
END_TEST

/* Sets what apply answers from now on. */
static void set_rc(applied *ap, int rc)
{
    pthread_mutex_lock(&ap->mu);
    ap->rc = rc;
    pthread_mutex_unlock(&ap->mu);
}

/* Runs the loop until the alert sender has nothing pending (polled: the loop may have nothing
 * referenced between a push and its call), at most ~10 s. */
#define run_until_sent(loop, as) run_until_sent_at(loop, as, __LINE__)
static void run_until_sent_at(uv_loop_t *loop, sn_alert_ship *as, int line)
{
    for (int i = 0; i < 2000 && sn_alert_ship_pending(as) > 0; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        struct timespec d = {0, 5 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    ck_assert_msg(sn_alert_ship_pending(as) == 0, "line %d: %zu alerts still pending", line,
                  sn_alert_ship_pending(as));
}

/* The value of one series in the exposition, or -1. */
static double series(sn_metrics *m, const char *name)
{
    char *text;
    size_t len;
    ck_assert_int_eq(sn_metrics_render_alloc(m, &text, &len), 0);
    double v = -1;
    size_t n = strlen(name);
    for (const char *p = text; (p = strstr(p, name)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
    free(text);
    return v;
}

START_TEST(local_alerts_go_ahead_alone_and_fall_back_when_refused)
{
    static applied ap = {.mu = PTHREAD_MUTEX_INITIALIZER};
    char target[64], err[256];
    /* At most one alert per batch: two alerts in one call are refused for good (no delay). */
    sn_ingest *in = start_ingest(&ap, 50, 1, target);

    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    sn_metrics *m = NULL;
    ck_assert_int_eq(sn_metrics_create(NULL, &m, err, sizeof err), 0);
    sn_alert_ship_config acfg;
    sn_alert_ship_config_init(&acfg);
    acfg.sidecar_id = ID;
    acfg.ship.aggregator = target;
    acfg.metrics = m;
    sn_alert_ship *as = NULL;
    ck_assert_msg(sn_alert_ship_create(&acfg, &loop, &as, err, sizeof err) == 0, "%s", err);

    sn_event ev[NE];
    make_events(ev);
    sn_local_alert al[NA];
    make_alerts(al, ev);

    /* Sent at once, alone: sequence 0, the alert as raised, nothing else. */
    sn_alert_ship_push(as, &al[0]);
    ck_assert_uint_eq(sn_alert_ship_pending(as), 1);
    run_until_sent(&loop, as);
    ck_assert_int_eq(ap.calls, 1);
    ck_assert_str_eq(ap.sidecar_id, ID);
    ck_assert_uint_eq(ap.sequence, 0);
    ck_assert_uint_eq(ap.nevents, 0);
    ck_assert_uint_eq(ap.nalerts, 1);
    same_alert(&ap.alerts[0], &al[0]);
    ck_assert_double_eq(series(m, "sentinel_sidecar_local_alerts_ahead_total"), 1);

    /* RETRY_AFTER: resent after the delay, then applied. */
    set_rc(&ap, -EAGAIN);
    sn_alert_ship_push(as, &al[1]);
    for (int i = 0; i < 2000 && ap.calls < 2; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        struct timespec d = {0, 1000 * 1000};
        nanosleep(&d, NULL);
    }
    set_rc(&ap, 0);
    run_until_sent(&loop, as);
    ck_assert_int_ge(ap.calls, 3);
    same_alert(&ap.alerts[0], &al[1]);
    ck_assert_double_eq(series(m, "sentinel_sidecar_local_alerts_ahead_total"), 2);

    /* Applied before (the batch copy won): DUPLICATE, counted as fallen back. */
    set_rc(&ap, -EALREADY);
    sn_alert_ship_push(as, &al[0]);
    run_until_sent(&loop, as);
    ck_assert_double_eq(
        series(m, "sentinel_sidecar_local_alerts_fallback_total{reason=\"batch_first\"}"), 1);
    set_rc(&ap, 0);

    /* Refused for good (here two alerts over the aggregator's limit of one; an older aggregator
     * refuses sequence 0 with INVALID_ARGUMENT the same way): dropped, left to the batches. */
    int calls = ap.calls;
    sn_alert_ship_push(as, &al[0]); /* in flight alone */
    sn_alert_ship_push(as, &al[1]); /* these two wait, then go together */
    sn_alert_ship_push(as, &al[0]);
    run_until_sent(&loop, as);
    ck_assert_int_eq(ap.calls, calls + 1);
    ck_assert_double_eq(series(m, "sentinel_sidecar_local_alerts_ahead_total"), 3);
    ck_assert_double_eq(
        series(m, "sentinel_sidecar_local_alerts_fallback_total{reason=\"refused\"}"), 2);

    /* The sequence table was never touched. */
    sn_ingest_stats st;
    sn_ingest_stats_get(in, &st);
    ck_assert_uint_eq(st.batches, 0);
    ck_assert_uint_eq(st.sidecars, 0);

    /* Destroy drops what waits (the aggregator is gone: the call fails and is retried). */
    sn_ingest_destroy(in);
    sn_alert_ship_push(as, &al[0]);
    sn_alert_ship_destroy(as);
    ck_assert_double_eq(
        series(m, "sentinel_sidecar_local_alerts_fallback_total{reason=\"stopped\"}"), 1);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    sn_metrics_destroy(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sidecar_ship_ingest");
    TCase *tc = tcase_create("contract");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, batches_reach_the_aggregator_intact_once_and_in_order);
    tcase_add_test(tc, local_alerts_go_ahead_alone_and_fall_back_when_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
