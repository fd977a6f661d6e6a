/*
 * pipeline.c -- the sidecar's loop: hand-off from the transports, the open batch, the journal,
 * local detection, sealing into the spool and shipping to the aggregator.
 *
 * A trace request is decoded once, on its transport thread, into a scratch (from a small pool):
 * the request's journal record (its LLM events, each encoded once as a Batch events entry) and,
 * per event, the few facts local detection needs (det_item). The loop appends the record bytes
 * to the journal and to the open batch as they are, answers and runs detection over the items;
 * sealing copies the open batch's bytes into a Batch (sn_batch.records) -- no event is
 * decoded or encoded again. A metrics request with GenAI points is checked on its transport
 * thread and waits there while the loop feeds its points (metric_feed.h) into a journal record
 * of Batch.aggregates entries, journals it and adds it to the open batch the same way; when the
 * journal write fails the points are taken back from the feed (process_metrics). Sealing runs on
 * the sealer thread (seal_async: the open batch's buffers are swapped into the one seal_job, the
 * loop appends the result to the spool when the sealer is done), or on the loop when it must be
 * immediate (seal_sync, recovery).
 *
 * A gRPC request (no tee) is answered later: its work item is heap-allocated, owns its scratch,
 * and the loop answers it through sn_otlp_later, then detects and frees. The transport thread
 * does not wait. Other requests are work items on the transport thread's stack:
 *
 * States of a work item (a transport thread's request waiting for the loop):
 *
 *   QUEUED --(loop takes the list)--> TAKEN --(loop answered)--> DONE
 *      \--(the transport thread timed out while still queued: unlinked, answered RETRY)
 *
 * A TAKEN item is always finished by the loop, so its transport thread waits for DONE without
 * a timeout: the request body it borrows stays alive until the loop is done with it.
 *
 * Invariants on the loop thread:
 *   - open[0..open_len) is the open batch: n_events events and n_aggs aggregates as
 *     journal-record bytes, every one of them already in the journal (a request whose journal
 *     write failed is refused and leaves nothing behind); n_events and n_aggs <=
 *     max_batch_events except after recovering a larger record;
 *   - a journal generation is retired only by the spool append that covers it (a reset after
 *     the append, or sn_spool_journal_next before the sealer runs, which leaves the generation
 *     in place until the append), so at every instant an accepted event is in the journal or in
 *     the spool (or in the caller's request, before the answer went out); the seal job's events
 *     are in a detached generation until its append, and go back into the open batch if the
 *     append fails;
 *   - at most one Ingest call is in flight, always for the spool's oldest record.
 */
#include "pipeline.h"

#include "backoff.h"
#include "log.h"
#include "otlp/logs.h"
#include "otlp/metrics.h"
#include "otlp/metrics_json.h"
#include "otlp/traces.h"
#include "otlp/traces_json.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum work_state { W_QUEUED = 0, W_TAKEN, W_DONE };

/* The sealer's nice value: below the threads that answer requests (a 2000-event batch is about
 * 1 ms of compression, which an answer waking meanwhile should not wait behind), but with
 * enough of a share to keep up under a flood on one core (about 14 % against two busy
 * transport threads; sealing needs about 7 % at 170 K spans/s). SCHED_IDLE or nice 19 would
 * starve it there, and the loop waits for the sealer when the next batch is full. */
#define SEALER_NICE 5

/* The few facts local detection needs about one event (sn_local_detect_event reads these and
 * nothing else), taken on the transport thread. */
typedef struct det_item {
    uint32_t ident; /* index of its service, model and region in the scratch's idents */
    uint8_t cost_source;
    bool is_error;
    uint8_t trace_id[16];
    int64_t end_unix_nano;
    double latency_ms, ttft_ms, cost_usd;
    int64_t input_tokens, output_tokens, total_tokens;
} det_item;

typedef struct det_ident {
    char service[SN_NAME_MAX];
    char model[SN_NAME_MAX];
    char region[SN_SHORT_MAX];
    uint64_t pair; /* local detection's token for (service, model): 0 until detection runs */
} det_ident;

/* One request decoded on a transport thread. Buffers grow to the largest request seen (bounded
 * by max_batch_events events) and are reused: scratches live in the pipeline's pool. */
typedef struct scratch {
    struct scratch *next; /* in the pool */
    size_t max_events;
    uint8_t *rec; /* the journal record: the LLM events as groups entries (one per resource run) */
    size_t rec_len, rec_cap;
    sn_batch_grouper grouper; /* the record's open group */
    det_item *items;
    size_t n_items, items_cap;
    det_ident *idents;
    size_t n_idents, idents_cap;
    int error; /* first failure while collecting (-ENOMEM, -EIO) */
} scratch;

#define SCRATCH_POOL_MAX   16             /* idle scratches kept; more are freed */
#define SCRATCH_KEEP_BYTES (512u * 1024u) /* an idle scratch's buffers above this are freed */
/* The idle scratches' memory at most: under steady load one or two are in use at a time, and
 * what a burst of concurrent large requests grew goes back to malloc (the idle trim returns it)
 * instead of staying here for good (about 0.2 MB per 512-span request). */
#define SCRATCH_POOL_BYTES (1024u * 1024u)

typedef struct work {
    struct work *next;
    const scratch *req; /* a trace request, decoded, borrowed from the transport thread */
    /* A metrics request (req NULL): its n_facts GenAI points, decoded once on the transport
     * thread and borrowed from it; the loop turns them into aggregates. */
    const sn_metric_fact *facts;
    size_t n_facts;
    enum work_state state;
    sn_otlp_result result;
    pthread_cond_t cond; /* a waiting transport thread only (later == NULL) */
    /* Answered later (the transport gave an sn_otlp_later): the item is heap-allocated, owns
     * its scratch, and the loop answers, counts, and frees both. */
    sn_otlp_later *later;
    scratch *owned;
    uint64_t rejected; /* spans rejected, for the partial success */
    size_t bytes;      /* memory it holds, counted in pending_bytes */
    sn_pipeline_protocol protocol;
    /* CLOCK_MONOTONIC ns (answered later only): when the transport thread began decoding it
     * and when it queued it for the loop. */
    int64_t t_start, t_submit;
} work;

/* A batch being sealed off the loop: the loop hands the open batch's buffers over (swapping
 * them with the job's), the sealer thread encodes and compresses, the loop appends the result
 * to the spool. One at a time; the loop touches the job only while no seal is in flight. */
typedef struct seal_job {
    uint8_t *records; /* journal-record bytes of its events (swapped with the open batch's) */
    size_t records_len, records_cap;
    size_t n_events;
    sn_local_alert *alerts; /* max_batch_alerts entries (swapped with the open batch's) */
    size_t n_alerts;
    size_t n_aggs; /* aggregates among its records */
    uint64_t sequence;
    uint64_t journal_gen; /* the generation its records are in; the append covers it */
    bool groups;          /* the aggregator reads groups: the records' groups go as they are */
    /* Set by the sealer. */
    int rc;
    const uint8_t *out; /* the IngestRequest, in the encoder's buffer */
    size_t out_len, batch_len;
    char err[256];
} seal_job;

typedef struct proto_ud {
    sn_pipeline *p;
    sn_pipeline_protocol protocol;
} proto_ud;

#define N_OUTCOMES (SN_OTLP_INTERNAL + 1)

/* The pipeline's stages of a trace request answered later (docs/sidecar.md, "Threads and
 * latency"). */
enum stage {
    STAGE_DECODE = 0, /* the transport thread: decode, until queued for the loop */
    STAGE_LOOP_WAIT,  /* queued until the loop takes the queue */
    STAGE_LOOP_AHEAD, /* taken until its turn: the requests ahead of it in the same take */
    STAGE_JOURNAL,    /* its turn until answered: journal write (and a seal wait, if any) */
    STAGE_SEAL_WAIT,  /* the loop waiting for the sealer (a full batch), when it does */
    STAGE_COUNT
};
static const char *const stage_names[STAGE_COUNT] = {"decode", "loop_wait", "loop_ahead", "journal",
                                                     "seal_wait"};

enum refusal {
    REFUSED_SPOOL_FULL = 0,
    REFUSED_QUEUE_FULL,
    REFUSED_STOPPING,
    REFUSED_TIMEOUT,
    REFUSED_COUNT
};
static const char *const refusal_names[REFUSED_COUNT] = {"spool_full", "queue_full", "stopping",
                                                         "timeout"};
enum ship_result {
    SHIP_ACKED = 0,
    SHIP_DUPLICATE,
    SHIP_RETRY_AFTER,
    SHIP_FAILED,
    SHIP_REJECTED,
    SHIP_UNDELIVERABLE, /* a grouped batch that cannot be converted for an older aggregator */
    SHIP_COUNT
};
static const char *const ship_result_names[SHIP_COUNT] = {"acked",  "duplicate", "retry_after",
                                                          "failed", "rejected",  "undeliverable"};
static const char *const signal_names[SN_OTLP_SIGNAL_COUNT] = {"traces", "metrics", "logs"};
static const char *const protocol_names[2] = {"grpc", "http"};
static const char *const outcome_names[N_OUTCOMES] = {
    "ok", "invalid", "retry", "resource_exhausted", "too_large", "internal"};

struct sn_pipeline {
    sn_pipeline_config cfg;
    char sidecar_id[SN_BATCH_ID_MAX];
    sn_pipeline_deps d;
    proto_ud uds[2];

    /* Shared with the transport threads, under mu. */
    pthread_mutex_t mu;
    work *head, *tail;
    size_t pending;
    size_t pending_bytes; /* scratch memory of the queued items answered later */
    bool stopping;
    atomic_bool spool_full; /* read by /readyz */

    /* The sealer thread: seal_mu guards posted/done/sealer_stop. */
    pthread_t sealer;
    bool sealer_started;
    pthread_mutex_t seal_mu;
    pthread_cond_t seal_cv;
    bool posted, done, sealer_stop;
    seal_job job;
    bool sealing;    /* loop: a job is out (posted, or done and not yet finished) */
    bool seal_again; /* loop: a seal was asked for while one was out */
    uv_async_t sealed_wake;

    /* libuv handles (loop thread). */
    uv_async_t wake;
    uv_timer_t flush_timer, sync_timer, ship_timer, drain_timer;
    int open_handles;

    /* Idle request scratches, under pool_mu; pool_bytes (their memory) is also read without
     * it (sn_pipeline_scratch_kept). */
    pthread_mutex_t pool_mu;
    scratch *pool;
    size_t pool_n;
    _Atomic size_t pool_bytes;

    /* The open batch (loop thread). */
    uint8_t *open; /* journal-record bytes of its events */
    size_t open_len, open_cap;
    size_t n_events;
    sn_local_alert *alerts;
    size_t n_alerts;
    bool urgent;       /* holds an alert: seal now */
    uint64_t next_seq; /* of the next sealed batch */
    sn_event det_ev;   /* what local detection reads, refilled from each det_item */
    sn_local_alert scratch_alerts[8];
    sn_alert_limit *limit;
    size_t n_aggs; /* GenAI metric aggregates among the open batch's records */
    /* GenAI metric points of pairs without spans (metric_feed.h), and what the loop uses to turn
     * one metrics request into a journal record: the record, and per point its outcome and
     * delta change (to take the request back when its journal write fails). Grown to the largest
     * request (at most max_batch_events points), reused. */
    sn_metric_feed *feed;
    uint8_t *mrec;
    size_t mrec_len, mrec_cap;
    sn_metric_feed_outcome *mout;
    sn_metric_delta_change *mch;
    size_t n_m, m_cap;
    int m_error;
    int64_t m_now; /* the receive time of the request being journaled */

    /* Shipping (loop thread). */
    bool in_flight;
    /* The latest aggregator answer announced FEATURE_GROUPS: batches are sealed with groups
     * (false until an answer says so, and after a downgrade). */
    bool agg_groups;
    /* The spool's oldest record converted to flat events after an aggregator that does not read
     * groups refused it: one request or more (a split batch), sent in order instead of the
     * record -- flat_next is the next to send -- until the last is acknowledged and the record
     * popped. flat.n is 0 when there is none. */
    sn_batch_parts flat;
    size_t flat_next;
    uint64_t split_resumed; /* the record resume_split converted (or gave up on): not again */
    /* Converting the oldest record failed for want of memory (FLAT_RETRY): the next ship_kick
     * converts it again rather than resending the grouped record the aggregator refused. */
    bool flat_retry;
    uint64_t ship_started; /* uv_hrtime() of the call in flight */
    bool waiting;          /* a backoff or retry-after timer runs */
    sn_backoff backoff;
    sn_backoff_config backoff_cfg;

    /* Draining (loop thread). */
    bool draining;
    void (*drain_done)(void *ud);
    void *drain_ud;

    /* Metrics (series handles resolved at create). */
    sn_counter *requests[SN_OTLP_SIGNAL_COUNT][2][N_OUTCOMES];
    sn_counter *refused[REFUSED_COUNT];
    sn_counter *shipped[SHIP_COUNT];
    sn_counter *spans, *rejected_spans, *llm_events, *metric_points, *metric_facts, *log_records,
        *genai_log_events, *sealed, *journal_errors, *alerts_suppressed, *spool_sync_failures;
    uint64_t spool_sync_failures_seen; /* the spool's count already added to the counter */
    sn_metrics_family *alerts_family;
    sn_counter *metric_outcomes[SN_METRIC_FEED_OUTCOME_COUNT];
    sn_gauge *spool_bytes, *spool_batches, *journal_bytes, *baseline_keys, *pending_gauge,
        *spool_unsynced;
    sn_histogram *ship_seconds;
    /* sentinel_sidecar_export_stage_seconds: the loop's stages of a trace request answered
     * later; the transport's stages are series of the same family (sn_pipeline_stage_histogram). */
    sn_metrics_family *stage_family;
    sn_histogram *stage[STAGE_COUNT];
};

static void ship_kick(sn_pipeline *p);
static int seal(sn_pipeline *p, uint64_t journal_gen);
static int reserve_array(void **arr, size_t *cap, size_t need, size_t elem);

/* CLOCK_MONOTONIC in ns, for the stage histograms. */
static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Observes `to - from` ns in a stage's histogram. */
static void stage_observe(sn_pipeline *p, enum stage st, int64_t from, int64_t to)
{
    if (to >= from)
        sn_histogram_observe(p->stage[st], (double)(to - from) * 1e-9);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void sn_pipeline_config_defaults(sn_pipeline_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->flush_interval_ns = 200 * 1000000LL;
    cfg->sync_interval_ns = 1000 * 1000000LL;
    cfg->max_batch_events = 2000;
    cfg->max_batch_alerts = 256;
    cfg->max_pending = 256;
    cfg->max_pending_bytes = 8u << 20;
    cfg->retry_after_ms = 1000;
    cfg->wait_timeout_ns = 10LL * 1000000000;
    cfg->backoff_initial_ms = 100;
    cfg->backoff_max_ms = 30000;
    cfg->spool_max_bytes = 256ull << 20;
    cfg->journal_max_bytes = 64ull << 20;
    cfg->alert_interval_ms = 10000;
}

/* --- metrics --- */

static int register_counter(sn_pipeline *p, const char *name, const char *help, sn_counter **out,
                            char *err, size_t errlen)
{
    sn_metrics_family *f;
    sn_metrics_desc d = {.type = SN_METRICS_COUNTER, .name = name, .help = help};
    int rc = sn_metrics_register(p->d.metrics, &d, &f, err, errlen);
    if (rc != 0)
        return rc;
    *out = sn_metrics_counter(f, NULL);
    return *out == NULL ? -ENOMEM : 0;
}

/* Registers every family and resolves the series used on hot paths. */
static int register_metrics(sn_pipeline *p, char *err, size_t errlen)
{
    int rc;
    sn_metrics_family *f;
    sn_metrics_desc req = {.type = SN_METRICS_COUNTER,
                           .name = "sentinel_sidecar_otlp_requests_total",
                           .help = "OTLP export requests by signal, protocol and outcome",
                           .labels = {"signal", "protocol", "outcome"}};
    if ((rc = sn_metrics_register(p->d.metrics, &req, &f, err, errlen)) != 0)
        return rc;
    for (int s = 0; s < SN_OTLP_SIGNAL_COUNT; s++)
        for (int pr = 0; pr < 2; pr++)
            for (int o = 0; o < N_OUTCOMES; o++) {
                const char *v[] = {signal_names[s], protocol_names[pr], outcome_names[o]};
                if ((p->requests[s][pr][o] = sn_metrics_counter(f, v)) == NULL)
                    return -ENOMEM;
            }
    sn_metrics_desc ref = {.type = SN_METRICS_COUNTER,
                           .name = "sentinel_sidecar_refused_total",
                           .help = "requests refused with a retryable status, by reason",
                           .labels = {"reason"}};
    if ((rc = sn_metrics_register(p->d.metrics, &ref, &f, err, errlen)) != 0)
        return rc;
    for (int r = 0; r < REFUSED_COUNT; r++) {
        const char *v[] = {refusal_names[r]};
        if ((p->refused[r] = sn_metrics_counter(f, v)) == NULL)
            return -ENOMEM;
    }
    sn_metrics_desc sh = {.type = SN_METRICS_COUNTER,
                          .name = "sentinel_sidecar_batches_shipped_total",
                          .help = "Ingest calls to the aggregator by result",
                          .labels = {"result"}};
    if ((rc = sn_metrics_register(p->d.metrics, &sh, &f, err, errlen)) != 0)
        return rc;
    for (int r = 0; r < SHIP_COUNT; r++) {
        const char *v[] = {ship_result_names[r]};
        if ((p->shipped[r] = sn_metrics_counter(f, v)) == NULL)
            return -ENOMEM;
    }
    sn_metrics_desc mo = {.type = SN_METRICS_COUNTER,
                          .name = "sentinel_sidecar_genai_metric_facts_total",
                          .help = "GenAI metric points by what became of them: queued (shipped "
                                  "as aggregates), covered (the pair sent spans), baseline, "
                                  "unchanged, refused, dropped",
                          .labels = {"outcome"}};
    if ((rc = sn_metrics_register(p->d.metrics, &mo, &f, err, errlen)) != 0)
        return rc;
    for (int o = 0; o < SN_METRIC_FEED_OUTCOME_COUNT; o++) {
        const char *v[] = {sn_metric_feed_outcome_name((sn_metric_feed_outcome)o)};
        if ((p->metric_outcomes[o] = sn_metrics_counter(f, v)) == NULL)
            return -ENOMEM;
    }
    sn_metrics_desc al = {.type = SN_METRICS_COUNTER,
                          .name = "sentinel_sidecar_local_alerts_total",
                          .help = "local alerts raised, by anomaly type and severity",
                          .labels = {"type", "severity"}};
    if ((rc = sn_metrics_register(p->d.metrics, &al, &p->alerts_family, err, errlen)) != 0)
        return rc;
    static const double ship_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,   0.25,   0.5,   1,    2.5,   5};
    sn_metrics_desc hs = {.type = SN_METRICS_HISTOGRAM,
                          .name = "sentinel_sidecar_ship_duration_seconds",
                          .help = "time of one Ingest call to the aggregator",
                          .buckets = ship_buckets,
                          .bucket_count = sizeof ship_buckets / sizeof ship_buckets[0]};
    if ((rc = sn_metrics_register(p->d.metrics, &hs, &f, err, errlen)) != 0)
        return rc;
    if ((p->ship_seconds = sn_metrics_histogram(f, NULL)) == NULL)
        return -ENOMEM;
    static const double stage_buckets[] = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025,
                                           0.0005,  0.001,    0.0025,  0.005,  0.01,
                                           0.025,   0.05,     0.1,     0.25,   1};
    sn_metrics_desc ss = {
        .type = SN_METRICS_HISTOGRAM,
        .name = "sentinel_sidecar_export_stage_seconds",
        .help = "time of an OTLP trace export request in each stage on its way to the answer",
        .labels = {"stage"},
        .buckets = stage_buckets,
        .bucket_count = sizeof stage_buckets / sizeof stage_buckets[0]};
    if ((rc = sn_metrics_register(p->d.metrics, &ss, &p->stage_family, err, errlen)) != 0)
        return rc;
    for (int i = 0; i < STAGE_COUNT; i++) {
        const char *v[1] = {stage_names[i]};
        if ((p->stage[i] = sn_metrics_histogram(p->stage_family, v)) == NULL)
            return -ENOMEM;
    }

    struct {
        const char *name, *help;
        sn_counter **c;
    } counters[] = {
        {"sentinel_sidecar_spans_received_total", "spans received in trace requests", &p->spans},
        {"sentinel_sidecar_spans_rejected_total",
         "spans refused as invalid (bad ids or times) and reported as partial success",
         &p->rejected_spans},
        {"sentinel_sidecar_llm_events_total", "LLM calls extracted from spans and accepted",
         &p->llm_events},
        {"sentinel_sidecar_metric_points_total", "metric data points received", &p->metric_points},
        {"sentinel_sidecar_genai_metric_points_total",
         "GenAI histogram points (token usage, durations) received", &p->metric_facts},
        {"sentinel_sidecar_log_records_total", "log records received", &p->log_records},
        {"sentinel_sidecar_genai_log_events_total", "log records that are GenAI events",
         &p->genai_log_events},
        {"sentinel_sidecar_batches_sealed_total", "batches sealed into the spool", &p->sealed},
        {"sentinel_sidecar_journal_errors_total",
         "journal writes that failed (the request was refused with a retryable status)",
         &p->journal_errors},
        {"sentinel_sidecar_local_alerts_suppressed_total",
         "local alerts held back: one per (service, model, metric, anomaly type) per interval",
         &p->alerts_suppressed},
        {"sentinel_sidecar_spool_sync_failures_total",
         "spool fsync/fdatasync calls that failed (retried; docs/spool.md, Failed syncs)",
         &p->spool_sync_failures},
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        if ((rc = register_counter(p, counters[i].name, counters[i].help, counters[i].c, err,
                                   errlen)) != 0)
            return rc;
    struct {
        const char *name, *help;
        sn_gauge **g;
    } gauges[] = {
        {"sentinel_sidecar_spool_bytes", "bytes of sealed batches waiting for the aggregator",
         &p->spool_bytes},
        {"sentinel_sidecar_spool_batches", "sealed batches waiting for the aggregator",
         &p->spool_batches},
        {"sentinel_sidecar_journal_bytes", "bytes in the journal of the open batch",
         &p->journal_bytes},
        {"sentinel_sidecar_baseline_keys", "local baselines (service, model, metric)",
         &p->baseline_keys},
        {"sentinel_sidecar_pending_requests", "requests waiting for the loop", &p->pending_gauge},
        {"sentinel_sidecar_spool_unsynced_segments",
         "full spool segments whose failed sync is being retried (not durable yet)",
         &p->spool_unsynced},
    };
    for (size_t i = 0; i < sizeof gauges / sizeof gauges[0]; i++)
        if ((rc = sn_metrics_register_gauge(p->d.metrics, gauges[i].name, gauges[i].help,
                                            gauges[i].g, err, errlen)) != 0)
            return rc;
    return 0;
}

/* Refreshes the gauges that mirror loop state. Loop thread. */
static void update_gauges(sn_pipeline *p)
{
    sn_spool_stats st;
    sn_spool_get_stats(p->d.spool, &st);
    sn_gauge_set(p->spool_bytes, (double)st.bytes);
    sn_gauge_set(p->spool_batches, (double)st.count);
    sn_gauge_set(p->journal_bytes, (double)st.journal_bytes);
    sn_gauge_set(p->spool_unsynced, (double)st.unsynced_segments);
    if (st.sync_failures > p->spool_sync_failures_seen) {
        sn_counter_add(p->spool_sync_failures, st.sync_failures - p->spool_sync_failures_seen);
        p->spool_sync_failures_seen = st.sync_failures;
    }
    uint64_t keys, bytes;
    sn_local_detect_usage(p->d.detect, &keys, &bytes);
    sn_gauge_set(p->baseline_keys, (double)keys);
}

/* --- the open batch (loop thread) --- */

/* Makes *buf hold at least need bytes (doubling). Returns 0 or -ENOMEM (buffer untouched). */
static int reserve_bytes(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return 0;
    size_t want = *cap < 4096 ? 4096 : *cap;
    while (want < need)
        want = want > SIZE_MAX / 2 ? need : want * 2;
    uint8_t *nb = realloc(*buf, want);
    if (nb == NULL)
        return -ENOMEM;
    *buf = nb;
    *cap = want;
    return 0;
}

/* Moves the open batch into the job (the buffers are swapped, nothing is copied), which covers
 * journal_gen; the open batch is empty after. Loop thread, no job out. */
static void seal_take(sn_pipeline *p, uint64_t journal_gen)
{
    seal_job *j = &p->job;
    uint8_t *t = j->records;
    size_t tcap = j->records_cap;
    j->records = p->open;
    j->records_cap = p->open_cap;
    j->records_len = p->open_len;
    j->n_events = p->n_events;
    p->open = t;
    p->open_cap = tcap;
    sn_local_alert *ta = j->alerts;
    j->alerts = p->alerts;
    j->n_alerts = p->n_alerts;
    p->alerts = ta;
    j->n_aggs = p->n_aggs;
    p->n_aggs = 0;
    j->sequence = p->next_seq;
    j->journal_gen = journal_gen;
    j->groups = p->agg_groups;
    p->open_len = 0;
    p->n_events = 0;
    p->n_alerts = 0;
    p->urgent = false;
}

/* Encodes and compresses the job into the encoder's buffer: on the sealer thread, or on the loop
 * when sealing there. */
static void seal_encode(sn_pipeline *p, seal_job *j)
{
    sn_batch b = {
        .sidecar_id = p->sidecar_id,
        .sequence = j->sequence,
        .records = j->records,
        .records_len = j->records_len,
        .n_record_events = j->n_events,
        .n_record_aggregates = j->n_aggs,
        .groups = j->groups,
        .alerts = j->alerts,
        .n_alerts = j->n_alerts,
        .created_unix_nano = now_ns(),
    };
    j->err[0] = '\0';
    j->rc = sn_batch_encode(p->d.encoder, &b, &j->out, &j->out_len, &j->batch_len, j->err,
                            sizeof j->err);
}

/* The sealer thread: encodes and compresses each posted job (the encoder is used by no one
 * else while a job is out) and wakes the loop. */
static void *sealer_main(void *arg)
{
    sn_pipeline *p = arg;
    pthread_setname_np(pthread_self(), "sn-sealer");
    /* Per thread on Linux; raising one's own nice value is always allowed, and a failure
     * (another system) only leaves the priority as it was. */
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), SEALER_NICE);
    pthread_mutex_lock(&p->seal_mu);
    for (;;) {
        while (!p->posted && !p->sealer_stop)
            pthread_cond_wait(&p->seal_cv, &p->seal_mu);
        if (!p->posted)
            break;
        pthread_mutex_unlock(&p->seal_mu);
        seal_encode(p, &p->job);
        pthread_mutex_lock(&p->seal_mu);
        p->posted = false;
        p->done = true;
        pthread_cond_broadcast(&p->seal_cv);
        uv_async_send(&p->sealed_wake);
    }
    pthread_mutex_unlock(&p->seal_mu);
    return NULL;
}

/* Puts a failed job's events and alerts back into the open batch (ahead of what came in since),
 * so the next seal takes them; their journal generation stays uncovered until then. */
static void seal_merge_back(sn_pipeline *p)
{
    seal_job *j = &p->job;
    if (reserve_bytes(&j->records, &j->records_cap, j->records_len + p->open_len) != 0) {
        /* Still in the journal (uncovered): a restart seals them. Cannot happen short of
         * memory for one batch. */
        sn_log_error("out of memory keeping a batch that could not be sealed; its events and "
                     "aggregates stay in the journal until the next start",
                     SN_LOG_UINT("events", j->n_events), SN_LOG_UINT("aggregates", j->n_aggs));
    } else {
        memcpy(j->records + j->records_len, p->open, p->open_len);
        uint8_t *t = p->open;
        size_t tcap = p->open_cap;
        p->open = j->records;
        p->open_cap = j->records_cap;
        p->open_len += j->records_len;
        p->n_events += j->n_events;
        p->n_aggs += j->n_aggs;
        j->records = t;
        j->records_cap = tcap;
    }
    size_t room = p->cfg.max_batch_alerts - j->n_alerts;
    size_t keep = p->n_alerts < room ? p->n_alerts : room;
    if (keep < p->n_alerts)
        sn_log_error("alerts dropped: the open batch is full of alerts and cannot be sealed",
                     SN_LOG_UINT("alerts", p->n_alerts - keep));
    memcpy(j->alerts + j->n_alerts, p->alerts, keep * sizeof *p->alerts);
    sn_local_alert *ta = p->alerts;
    p->alerts = j->alerts;
    p->n_alerts = j->n_alerts + keep;
    j->alerts = ta;
    if (p->n_alerts > 0)
        p->urgent = true;
}

/* Finishes an encoded job: appends it to the spool (which covers, and for a detached generation
 * retires, its journal generation), or puts it back into the open batch when that fails. Loop
 * thread; returns 0 or the error. */
static int seal_finish(sn_pipeline *p)
{
    seal_job *j = &p->job;
    p->sealing = false;
    pthread_mutex_lock(&p->seal_mu);
    p->done = false;
    pthread_mutex_unlock(&p->seal_mu);
    int rc = j->rc;
    if (rc != 0)
        sn_log_error("cannot encode a batch", SN_LOG_STR("error", j->err));
    else
        rc = sn_spool_append(p->d.spool, j->out, j->out_len, j->journal_gen);
    if (rc == 0) {
        sn_log_debug("batch sealed", SN_LOG_UINT("sequence", j->sequence),
                     SN_LOG_UINT("events", j->n_events), SN_LOG_UINT("alerts", j->n_alerts),
                     SN_LOG_UINT("bytes", j->out_len), SN_LOG_UINT("uncompressed", j->batch_len));
        sn_counter_inc(p->sealed);
        p->next_seq++;
        ship_kick(p);
    } else {
        if (rc == -ENOSPC) {
            if (!atomic_exchange(&p->spool_full, true))
                sn_log_warn("spool full: refusing new data until the aggregator catches up",
                            SN_LOG_UINT("spool_bytes", sn_spool_bytes(p->d.spool)));
        } else if (j->rc == 0) {
            sn_log_error("cannot append a batch to the spool", SN_LOG_ERRNO(rc));
        }
        seal_merge_back(p);
    }
    j->records_len = 0;
    j->n_events = 0;
    j->n_alerts = 0;
    j->n_aggs = 0;
    return rc;
}

/* Seals the open batch into the spool on the loop, at once (no job may be out: see seal_sync).
 * journal_gen is the journal generation the sealed record covers (the current one, which is
 * then reset, or 0 while re-sealing recovered records). Returns 0 (also when there was nothing
 * to seal) or the error, in which case the batch stays open. */
static int seal(sn_pipeline *p, uint64_t journal_gen)
{
    if (p->n_events == 0 && p->n_alerts == 0 && p->n_aggs == 0)
        return 0;
    seal_take(p, journal_gen);
    seal_encode(p, &p->job);
    int rc = seal_finish(p);
    if (rc == 0 && journal_gen != 0) {
        int jrc = sn_spool_journal_reset(p->d.spool);
        if (jrc != 0)
            sn_log_error("cannot start a new journal generation", SN_LOG_ERRNO(jrc));
    }
    return rc;
}

/* Waits for the job that is out, if any, and finishes it. Loop thread. */
static int seal_wait(sn_pipeline *p)
{
    if (!p->sealing)
        return 0;
    pthread_mutex_lock(&p->seal_mu);
    if (!p->done) {
        int64_t t0 = mono_ns();
        while (!p->done)
            pthread_cond_wait(&p->seal_cv, &p->seal_mu);
        stage_observe(p, STAGE_SEAL_WAIT, t0, mono_ns());
    }
    pthread_mutex_unlock(&p->seal_mu);
    return seal_finish(p);
}

/* Seals the open batch now, on the loop (after the job that is out, if any). */
static int seal_sync(sn_pipeline *p)
{
    (void)seal_wait(p);
    return seal(p, sn_spool_journal_generation(p->d.spool));
}

/* Starts sealing the open batch off the loop: the journal moves to a new generation, the open
 * batch's buffers go to the sealer, and the loop goes on journaling new requests into an empty
 * batch. With a job already out it only notes that another seal is wanted. Falls back to
 * sealing on the loop when the journal cannot start a new generation. Returns 0 or the error
 * of that fallback. */
static int seal_async(sn_pipeline *p)
{
    if (p->sealing) {
        p->seal_again = true;
        return 0;
    }
    if (p->n_events == 0 && p->n_alerts == 0 && p->n_aggs == 0)
        return 0;
    uint64_t gen = sn_spool_journal_generation(p->d.spool);
    if (!p->sealer_started || sn_spool_journal_next(p->d.spool) != 0)
        return seal(p, gen);
    seal_take(p, gen);
    p->seal_again = false;
    p->sealing = true;
    pthread_mutex_lock(&p->seal_mu);
    p->posted = true;
    pthread_cond_broadcast(&p->seal_cv);
    pthread_mutex_unlock(&p->seal_mu);
    return 0;
}

static void maybe_finish_drain(sn_pipeline *p);

/* The sealer is done: finish its job, and start the next seal if one was asked for meanwhile. */
static void on_sealed(uv_async_t *h)
{
    sn_pipeline *p = h->data;
    if (!p->sealing)
        return; /* finished by seal_wait already */
    pthread_mutex_lock(&p->seal_mu);
    bool done = p->done;
    pthread_mutex_unlock(&p->seal_mu);
    if (!done)
        return;
    int rc = seal_finish(p);
    if (rc == 0 && (p->seal_again || p->urgent))
        (void)seal_async(p);
    update_gauges(p);
    maybe_finish_drain(p);
}

/* Gives each new local alert that the rate limit lets through an id, logs and counts it, and
 * puts it in the open batch; the ones held back are counted (and their number goes with the
 * next alert of the same key). */
static void take_alerts(sn_pipeline *p, const sn_local_alert *found, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t held = 0;
        if (!sn_alert_limit_admit(p->limit, &found[i], uv_now(p->d.loop), &held)) {
            sn_counter_inc(p->alerts_suppressed);
            continue;
        }
        if (p->n_alerts >= p->cfg.max_batch_alerts && seal_sync(p) != 0)
            return; /* the spool is full: seal() said so; the alert is lost, the events are not */
        sn_local_alert *a = &p->alerts[p->n_alerts++];
        *a = found[i];
        a->suppressed = held;
        uint8_t r[16];
        uint64_t r1 = sn_backoff_random(), r2 = sn_backoff_random();
        memcpy(r, &r1, 8);
        memcpy(r + 8, &r2, 8);
        sn_uuid_format(r, a->alert_id);
        const char *labels[] = {sn_anomaly_type_name(a->anomaly_type),
                                sn_severity_name(a->severity)};
        sn_counter_inc(sn_metrics_counter(p->alerts_family, labels));
        sn_log_warn("local alert", SN_LOG_STR("alert_id", a->alert_id),
                    SN_LOG_STR("anomaly_type", sn_anomaly_type_name(a->anomaly_type)),
                    SN_LOG_STR("severity", sn_severity_name(a->severity)),
                    SN_LOG_STR("service", a->service), SN_LOG_STR("model", a->model),
                    SN_LOG_STR("metric", sn_metric_name(a->metric)),
                    SN_LOG_STR("detector", sn_detector_name(a->detector)),
                    SN_LOG_DBL("value", a->value), SN_LOG_DBL("baseline", a->baseline),
                    SN_LOG_DBL("threshold", a->threshold), SN_LOG_UINT("suppressed", held));
        p->urgent = true;
        if (p->d.alert_ship != NULL) /* and ahead of the batch (alert_ship.h) */
            sn_alert_ship_push(p->d.alert_ship, a);
    }
}

/* Runs local detection over a request's events, in order; each ident keeps its pair token for
 * the next of its events (written into req's idents: the request is borrowed from the transport
 * thread, which waits meanwhile, so only the loop touches it). */
static void detect_request(sn_pipeline *p, const scratch *req)
{
    sn_event *ev = &p->det_ev;
    uint32_t shown = UINT32_MAX; /* the ident ev holds now */
    const size_t max_found = sizeof p->scratch_alerts / sizeof p->scratch_alerts[0];
    for (size_t i = 0; i < req->n_items; i++) {
        const det_item *it = &req->items[i];
        if (it->ident != shown) {
            const det_ident *id = &req->idents[it->ident];
            memcpy(ev->service, id->service, sizeof ev->service);
            memcpy(ev->model, id->model, sizeof ev->model);
            memcpy(ev->region, id->region, sizeof ev->region);
            shown = it->ident;
        }
        memcpy(ev->trace_id, it->trace_id, sizeof ev->trace_id);
        ev->end_unix_nano = it->end_unix_nano;
        ev->latency_ms = it->latency_ms;
        ev->ttft_ms = it->ttft_ms;
        ev->cost_usd = it->cost_usd;
        ev->cost_source = it->cost_source;
        ev->is_error = it->is_error;
        ev->input_tokens = it->input_tokens;
        ev->output_tokens = it->output_tokens;
        ev->total_tokens = it->total_tokens;
        size_t n = sn_local_detect_event_pair(p->d.detect, ev, &req->idents[it->ident].pair,
                                              p->scratch_alerts, max_found);
        if (n > 0)
            take_alerts(p, p->scratch_alerts, n < max_found ? n : max_found);
    }
}

/* Whether a request whose journal record is rec_len bytes can be taken without risking a
 * refusal half way: the journal must have room for its record and the spool for the batches it
 * may seal (a sealed batch is never larger than its uncompressed event records, so two of those
 * bound it). */
static bool capacity_ok(sn_pipeline *p, size_t rec_len)
{
    if (atomic_load(&p->spool_full))
        return false;
    sn_spool_stats st;
    sn_spool_get_stats(p->d.spool, &st);
    uint64_t record = (uint64_t)rec_len + 4096;
    /* The bound counts a full batch of events; a batch that also holds GenAI aggregates (at
     * most about 630 bytes each, usually a few per request) may pass it by their share, which
     * the spool's own limit catches (seal_finish: -ENOSPC, spool full). */
    uint64_t batch = (uint64_t)sn_batch_event_record_bound(p->cfg.max_batch_events) +
                     (uint64_t)p->cfg.max_batch_alerts * 1024 + 65536;
    if (st.journal_bytes + record > p->cfg.journal_max_bytes)
        return false; /* the next seal empties the journal: not a reason to turn unready */
    if (st.bytes + 2 * batch <= p->cfg.spool_max_bytes)
        return true;
    /* The spool cannot take what this request may seal: refuse until the aggregator catches up,
     * and say so on /readyz (cleared by the next acknowledgement). */
    if (!atomic_exchange(&p->spool_full, true))
        sn_log_warn("spool full: refusing new data until the aggregator catches up",
                    SN_LOG_UINT("spool_bytes", st.bytes));
    return false;
}

/* Answers a queued request with a retryable refusal. */
static void refuse_work(sn_pipeline *p, work *w, enum refusal why, const char *msg)
{
    w->result.outcome = SN_OTLP_RETRY;
    w->result.retry_after_ms = p->cfg.retry_after_ms;
    snprintf(w->result.message, sizeof w->result.message, "%s", msg);
    sn_counter_inc(p->refused[why]);
}

/* Whether n_events more events and n_aggs more aggregates would take the open batch past
 * max_batch_events (of either). */
static bool over_limit(const sn_pipeline *p, size_t n_events, size_t n_aggs)
{
    size_t max = p->cfg.max_batch_events;
    return (p->n_events > 0 && p->n_events + n_events > max) ||
           (p->n_aggs > 0 && p->n_aggs + n_aggs > max);
}

/* A batch never passes max_batch_events events or aggregates: seals first when a request of
 * n_events events and n_aggs aggregates would. Returns false when that seal failed. */
static bool make_room(sn_pipeline *p, size_t n_events, size_t n_aggs)
{
    if (!over_limit(p, n_events, n_aggs))
        return true;
    (void)seal_wait(p); /* the previous batch must be out of the way first */
    return !over_limit(p, n_events, n_aggs) || seal_async(p) == 0;
}

/* Handles one queued trace request on the loop thread: its record goes to the journal, then
 * into the open batch as it is; detection runs on its items; then the answer. */
static void process_traces(sn_pipeline *p, work *w)
{
    const scratch *req = w->req;
    if (p->draining) {
        refuse_work(p, w, REFUSED_STOPPING, "sidecar is shutting down");
        return;
    }
    if (!capacity_ok(p, req->rec_len)) {
        refuse_work(p, w, REFUSED_SPOOL_FULL,
                    "sidecar spool is full (aggregator unreachable?); retry later");
        return;
    }
    if (!make_room(p, req->n_items, 0)) {
        refuse_work(p, w, REFUSED_SPOOL_FULL, "sidecar cannot seal its batch; retry later");
        return;
    }
    if (reserve_bytes(&p->open, &p->open_cap, p->open_len + req->rec_len) != 0) {
        refuse_work(p, w, REFUSED_SPOOL_FULL, "sidecar out of memory; retry later");
        return;
    }
    int rc = sn_spool_journal_append(p->d.spool, req->rec, req->rec_len);
    if (rc != 0) {
        /* Nothing of it is in the journal or the batch: the client sends it again. */
        sn_counter_inc(p->journal_errors);
        sn_log_error("journal write failed; request refused (retryable)",
                     SN_LOG_UINT("events", req->n_items), SN_LOG_ERRNO(rc));
        refuse_work(p, w, REFUSED_SPOOL_FULL, "sidecar cannot write its journal; retry later");
        return;
    }
    memcpy(p->open + p->open_len, req->rec, req->rec_len);
    p->open_len += req->rec_len;
    p->n_events += req->n_items;
    sn_counter_add(p->llm_events, req->n_items);
    w->result.outcome = SN_OTLP_OK;
}

/* The metrics decoder's callback on the loop: one GenAI point through the feed; an aggregate
 * becomes an aggregates entry of the request's journal record (p->mrec). The first failure is
 * kept in p->m_error. */
static void journal_fact(const sn_metric_fact *f, void *ud)
{
    sn_pipeline *p = ud;
    if (p->m_error != 0)
        return;
    if (p->n_m >= p->m_cap) {
        p->m_error = -EIO; /* cannot happen: the arrays were reserved for every point */
        return;
    }
    sn_aggregate g;
    sn_metric_feed_outcome o = sn_metric_feed_add(p->feed, f, p->m_now, &g, &p->mch[p->n_m]);
    p->mout[p->n_m++] = o;
    if (o == SN_METRIC_FEED_QUEUED)
        p->m_error = sn_batch_append_aggregate_record(&g, p->mrec, p->mrec_cap, &p->mrec_len);
}

/* Handles one queued metrics request on the loop thread: its GenAI points go through the feed
 * into a journal record of aggregates, which goes to the journal and then into the open batch
 * like a trace request's events. When it is refused after its points went through the feed,
 * they are taken back (sn_metric_feed_undo): the client's retry counts them once. */
static void process_metrics(sn_pipeline *p, work *w)
{
    if (p->draining) {
        refuse_work(p, w, REFUSED_STOPPING, "sidecar is shutting down");
        return;
    }
    size_t bound = sn_batch_aggregate_record_bound(w->n_facts);
    if (!capacity_ok(p, bound)) {
        refuse_work(p, w, REFUSED_SPOOL_FULL,
                    "sidecar spool is full (aggregator unreachable?); retry later");
        return;
    }
    if (!make_room(p, 0, w->n_facts)) {
        refuse_work(p, w, REFUSED_SPOOL_FULL, "sidecar cannot seal its batch; retry later");
        return;
    }
    size_t mc = p->m_cap, cc = p->m_cap;
    if (reserve_bytes(&p->open, &p->open_cap, p->open_len + bound) != 0 ||
        reserve_bytes(&p->mrec, &p->mrec_cap, bound) != 0 ||
        reserve_array((void **)&p->mout, &mc, w->n_facts, sizeof *p->mout) != 0 ||
        reserve_array((void **)&p->mch, &cc, w->n_facts, sizeof *p->mch) != 0) {
        p->m_cap = mc < cc ? mc : cc;
        refuse_work(p, w, REFUSED_SPOOL_FULL, "sidecar out of memory; retry later");
        return;
    }
    p->m_cap = mc < cc ? mc : cc;
    p->mrec_len = 0;
    p->n_m = 0;
    p->m_error = 0;
    p->m_now = now_ns();
    for (size_t i = 0; i < w->n_facts && p->m_error == 0; i++)
        journal_fact(&w->facts[i], p);
    int rc = p->m_error;
    size_t n_aggs = 0;
    for (size_t i = 0; i < p->n_m; i++)
        n_aggs += p->mout[i] == SN_METRIC_FEED_QUEUED;
    if (rc == 0 && p->mrec_len > 0) {
        rc = sn_spool_journal_append(p->d.spool, p->mrec, p->mrec_len);
        if (rc != 0)
            sn_counter_inc(p->journal_errors);
    }
    if (rc != 0) {
        /* Nothing of it is in the journal or the batch, nor in the feed's delta state. */
        for (size_t i = p->n_m; i-- > 0;)
            sn_metric_feed_undo(p->feed, p->mout[i], &p->mch[i]);
        sn_log_error("cannot journal a metrics request; refused (retryable)",
                     SN_LOG_UINT("aggregates", n_aggs), SN_LOG_ERRNO(rc));
        refuse_work(p, w, REFUSED_SPOOL_FULL, "sidecar cannot write its journal; retry later");
        return;
    }
    memcpy(p->open + p->open_len, p->mrec, p->mrec_len);
    p->open_len += p->mrec_len;
    p->n_aggs += n_aggs;
    for (size_t i = 0; i < p->n_m; i++)
        sn_counter_inc(p->metric_outcomes[p->mout[i]]);
    w->result.outcome = SN_OTLP_OK;
}

/* Local detection over an accepted request; a local alert seals the batch at once. */
static void detect_accepted(sn_pipeline *p, const scratch *req)
{
    detect_request(p, req);
    if (p->urgent)
        (void)seal_async(p);
}

static void note_rejected(sn_pipeline *p, sn_otlp_result *res, uint64_t rejected);
static void scratch_put(sn_pipeline *p, scratch *s);

/* Answers an item the transport left to us (sn_otlp_later) -- its events are journaled, so
 * before detection runs -- and counts it like the handler counts the others; then runs detection
 * and frees the item and its scratch. Loop thread. */
static void answer_later(sn_pipeline *p, work *w)
{
    sn_otlp_result res = w->result;
    res.later = NULL;
    res.deferred = false;
    note_rejected(p, &res, w->rejected);
    if ((int)res.outcome >= 0 && res.outcome < N_OUTCOMES)
        sn_counter_inc(p->requests[SN_OTLP_TRACES][w->protocol][res.outcome]);
    w->later->finish(w->later, &res);
    if (res.outcome == SN_OTLP_OK)
        detect_accepted(p, w->req);
    scratch_put(p, w->owned);
    free(w);
}

/* The async callback: takes every queued item, answers each. */
static void on_wake(uv_async_t *h)
{
    sn_pipeline *p = h->data;
    pthread_mutex_lock(&p->mu);
    work *list = p->head;
    p->head = p->tail = NULL;
    for (work *w = list; w != NULL; w = w->next)
        w->state = W_TAKEN;
    pthread_mutex_unlock(&p->mu);

    int64_t t_take = mono_ns();
    while (list != NULL) {
        work *w = list;
        list = w->next;
        if (w->later != NULL) {
            int64_t t_turn = mono_ns();
            /* Every stage of the item is observed here, before its answer: a client that has
             * its answer finds it counted in each (the transport thread, once it queued the
             * item, may not run again before the answer is out). */
            stage_observe(p, STAGE_DECODE, w->t_start, w->t_submit);
            stage_observe(p, STAGE_LOOP_WAIT, w->t_submit, t_take);
            stage_observe(p, STAGE_LOOP_AHEAD, t_take, t_turn);
            process_traces(p, w);
            stage_observe(p, STAGE_JOURNAL, t_turn, mono_ns());
        } else if (w->req != NULL) {
            process_traces(p, w);
        } else {
            process_metrics(p, w);
        }
        /* A waiting transport thread frees the scratch once answered: detect first. */
        if (w->later == NULL && w->req != NULL && w->result.outcome == SN_OTLP_OK)
            detect_accepted(p, w->req);
        pthread_mutex_lock(&p->mu);
        p->pending--;
        if (w->later != NULL) {
            p->pending_bytes -= w->bytes;
            pthread_mutex_unlock(&p->mu);
            answer_later(p, w);
            continue;
        }
        w->state = W_DONE;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&p->mu);
    }
    sn_gauge_set(p->pending_gauge, (double)p->pending);
}

/* --- shipping (loop thread) --- */

static void on_ship_timer(uv_timer_t *t)
{
    sn_pipeline *p = t->data;
    p->waiting = false;
    ship_kick(p);
}

static void wait_then_ship(sn_pipeline *p, uint64_t delay_ms)
{
    p->waiting = true;
    uv_timer_start(&p->ship_timer, on_ship_timer, delay_ms, 0);
}

/* Remembers whether the aggregator's latest answer announced FEATURE_GROUPS (the next seal
 * writes groups or flat events accordingly). */
static void note_features(sn_pipeline *p, uint32_t features)
{
    bool groups = (features & SN_BATCH_FEATURE_GROUPS) != 0;
    if (groups != p->agg_groups)
        sn_log_info(groups ? "the aggregator reads event groups: sealing batches with groups"
                           : "the aggregator does not read event groups: sealing flat events");
    p->agg_groups = groups;
}

/* Drops the spool's oldest record (acknowledged, or refused for good) and its flat copy. */
static void ship_pop(sn_pipeline *p)
{
    sn_spool_pop(p->d.spool);
    sn_batch_parts_free(&p->flat);
    p->flat_next = 0;
    p->flat_retry = false;
}

/* The spool's oldest record is done with (acknowledged, or refused for good): with a flat copy
 * in parts, the next part is sent; after the last (or without parts) the record is popped. */
static void ship_advance(sn_pipeline *p)
{
    if (p->flat.n > 0 && p->flat_next + 1 < p->flat.n)
        p->flat_next++;
    else
        ship_pop(p);
}

/* What flatten_head did. */
enum flatten_outcome {
    FLAT_NONE,         /* the record holds no groups: the refusal was about something else */
    FLAT_READY,        /* p->flat holds the record as flat events: send it */
    FLAT_RETRY,        /* out of memory: try again after a backoff (the record stays) */
    FLAT_UNDELIVERABLE /* cannot be converted: dropped, logged and counted */
};

/* After an INVALID_ARGUMENT: when the spool's oldest record carries groups, the aggregator does
 * not read them (a downgrade): converts the record to flat events (p->flat, sent instead of it;
 * split over several requests when the flat batch is over the part budget, which depends on the
 * record alone, see sn_batch_flatten_request) and seals flat from now on. A record that cannot be
 * converted (an event alone over the part budget; a request over today's max_message_bytes;
 * malformed) would be refused again forever and block the spool: it is dropped with an error and
 * counted as undeliverable. Out of memory: FLAT_RETRY, p->flat_retry set (ship_kick converts
 * again). */
static enum flatten_outcome flatten_head(sn_pipeline *p)
{
    const uint8_t *data;
    size_t len;
    uint64_t id;
    if (sn_spool_peek(p->d.spool, &data, &len, &id) != 0)
        return FLAT_NONE;
    char err[256];
    int rc = sn_batch_flatten_request(data, len, sn_batch_encoder_config(p->d.encoder), &p->flat,
                                      err, sizeof err);
    if (rc == -ENOENT)
        return FLAT_NONE;
    note_features(p, 0);
    if (rc == -ENOMEM) {
        sn_log_error("out of memory converting a grouped batch to flat events; retrying",
                     SN_LOG_STR("error", err));
        p->flat_retry = true;
        return FLAT_RETRY;
    }
    p->flat_retry = false;
    if (rc != 0) {
        sn_counter_inc(p->shipped[SHIP_UNDELIVERABLE]);
        sn_log_error("the aggregator does not read event groups and this batch cannot be sent as "
                     "flat events; dropping it from the spool",
                     SN_LOG_STR("error", err));
        ship_pop(p);
        return FLAT_UNDELIVERABLE;
    }
    p->flat_next = 0;
    sn_log_warn("the aggregator refused a batch with event groups; resending it as flat events",
                SN_LOG_UINT("requests", p->flat.n));
    /* Parts are applied one by one: a restart half-way must send the same parts again, not the
     * record whole (which an aggregator upgraded meanwhile would apply on top of them). */
    if (p->flat.n > 1 && (rc = sn_spool_mark_split(p->d.spool, id)) != 0)
        sn_log_warn("cannot note in the spool that a batch is sent in parts; after a restart "
                    "before its last part, an upgraded aggregator may apply the first parts twice",
                    SN_LOG_ERRNO(rc));
    return FLAT_READY;
}

/* After a restart: the spool's oldest record (id) was being sent in parts when the sidecar
 * stopped (sn_spool_mark_split), so it is converted again -- the same parts, a function of the
 * record alone -- and sent from its first part on; the aggregator skips the parts it applied.
 * Returns 0 when p->flat holds the parts (or the record is to go whole after all: a conversion
 * that fails now, logged -- the old behaviour, never a loss), -ENOMEM to retry later. */
static int resume_split(sn_pipeline *p, const uint8_t *data, size_t len, uint64_t id)
{
    char err[256];
    int rc = sn_batch_flatten_request(data, len, sn_batch_encoder_config(p->d.encoder), &p->flat,
                                      err, sizeof err);
    if (rc == -ENOMEM)
        return rc;
    p->split_resumed = id;
    if (rc != 0) {
        sn_log_warn("a batch sent in parts before the restart cannot be split again; sending it "
                    "whole",
                    SN_LOG_UINT("record", id), SN_LOG_STR("error", err));
        return 0;
    }
    p->flat_next = 0;
    sn_log_info("resuming a batch that was being sent in parts before the restart",
                SN_LOG_UINT("record", id), SN_LOG_UINT("requests", p->flat.n));
    return 0;
}

static void on_ship_done(sn_ship *ship, const sn_ship_result *r, void *ud)
{
    (void)ship;
    sn_pipeline *p = ud;
    p->in_flight = false;
    sn_histogram_observe(p->ship_seconds, (double)(uv_hrtime() - p->ship_started) / 1e9);
    if (r->outcome != SN_SHIP_FAILED)
        note_features(p, r->features);
    switch (r->outcome) {
    case SN_SHIP_ACKED:
    case SN_SHIP_DUPLICATE:
        sn_counter_inc(p->shipped[r->outcome == SN_SHIP_ACKED ? SHIP_ACKED : SHIP_DUPLICATE]);
        ship_advance(p);
        sn_backoff_reset(&p->backoff);
        if (atomic_load(&p->spool_full) && seal_sync(p) == 0) {
            atomic_store(&p->spool_full, false);
            sn_log_info("spool has room again: accepting data");
        }
        ship_kick(p);
        break;
    case SN_SHIP_RETRY_AFTER:
        sn_counter_inc(p->shipped[SHIP_RETRY_AFTER]);
        wait_then_ship(p, r->retry_after_ms > 0
                              ? r->retry_after_ms
                              : sn_backoff_next(&p->backoff, &p->backoff_cfg, sn_backoff_random()));
        break;
    default:
        sn_counter_inc(p->shipped[SHIP_FAILED]);
        if (r->grpc_status == 3 /* INVALID_ARGUMENT */ && p->flat.n == 0) {
            enum flatten_outcome fo = flatten_head(p);
            if (fo == FLAT_READY || fo == FLAT_UNDELIVERABLE) {
                ship_kick(p); /* resent with flat events, or the next record */
                break;
            }
            if (fo == FLAT_RETRY) {
                wait_then_ship(p,
                               sn_backoff_next(&p->backoff, &p->backoff_cfg, sn_backoff_random()));
                break;
            }
        }
        if (r->grpc_status == 3 /* INVALID_ARGUMENT */ ||
            (r->grpc_status == 8 /* RESOURCE_EXHAUSTED */ && r->retry_after_ms == 0)) {
            /* Refused for good: resending the same bytes can never succeed, and keeping the
             * record would block every batch behind it. */
            sn_counter_inc(p->shipped[SHIP_REJECTED]);
            sn_log_error("the aggregator refused a batch for good; dropping it from the spool",
                         SN_LOG_INT("grpc_status", r->grpc_status), SN_LOG_STR("error", r->message),
                         SN_LOG_UINT("part", p->flat_next + 1), SN_LOG_UINT("parts", p->flat.n));
            ship_advance(p);
            ship_kick(p);
            break;
        }
        if (r->retry_after_ms > 0) {
            wait_then_ship(p, r->retry_after_ms);
            break;
        }
        if (p->backoff.attempts == 0)
            sn_log_warn("cannot reach the aggregator; spooling and retrying",
                        SN_LOG_STR("error", r->message));
        wait_then_ship(p, sn_backoff_next(&p->backoff, &p->backoff_cfg, sn_backoff_random()));
        break;
    }
    update_gauges(p);
    maybe_finish_drain(p);
}

/* Sends the spool's oldest record when nothing is in flight and no timer is pending. */
static void ship_kick(sn_pipeline *p)
{
    if (p->in_flight || p->waiting)
        return;
    const uint8_t *data;
    size_t len;
    uint64_t id;
    int rc = sn_spool_peek(p->d.spool, &data, &len, &id);
    if (rc == -ENOENT) {
        maybe_finish_drain(p);
        return;
    }
    if (rc != 0) {
        sn_log_error("cannot read the spool", SN_LOG_ERRNO(rc));
        wait_then_ship(p, sn_backoff_next(&p->backoff, &p->backoff_cfg, sn_backoff_random()));
        return;
    }
    if (p->flat_retry && p->flat.n == 0) { /* a conversion to retry (FLAT_RETRY) */
        enum flatten_outcome fo = flatten_head(p);
        if (fo == FLAT_RETRY) {
            wait_then_ship(p, sn_backoff_next(&p->backoff, &p->backoff_cfg, sn_backoff_random()));
            return;
        }
        p->flat_retry = false;
        if (fo == FLAT_UNDELIVERABLE) { /* popped: the next record */
            ship_kick(p);
            return;
        }
        rc = sn_spool_peek(p->d.spool, &data, &len, &id);
        if (rc != 0) {
            ship_kick(p);
            return;
        }
    }
    if (p->flat.n == 0 && !p->flat_retry && id != p->split_resumed &&
        id == sn_spool_split_mark(p->d.spool) && resume_split(p, data, len, id) != 0) {
        wait_then_ship(p, sn_backoff_next(&p->backoff, &p->backoff_cfg, sn_backoff_random()));
        return;
    }
    if (p->flat.n > 0) { /* the oldest record, converted to flat events (flatten_head) */
        size_t from = p->flat_next > 0 ? p->flat.end[p->flat_next - 1] : 0;
        data = p->flat.data + from;
        len = p->flat.end[p->flat_next] - from;
    }
    rc = sn_ship_send(p->d.ship, data, len, on_ship_done, p);
    if (rc != 0) {
        sn_log_error("cannot start an Ingest call", SN_LOG_ERRNO(rc));
        wait_then_ship(p, sn_backoff_next(&p->backoff, &p->backoff_cfg, sn_backoff_random()));
        return;
    }
    p->in_flight = true;
    p->ship_started = uv_hrtime();
}

/* --- timers --- */

static void on_flush_timer(uv_timer_t *t)
{
    sn_pipeline *p = t->data;
    (void)seal_async(p);
    update_gauges(p);
}

static void on_sync_timer(uv_timer_t *t)
{
    sn_pipeline *p = t->data;
    /* Queued for the spool's thread (background_io): an fsync can take tens of milliseconds
     * on a busy disk, which the answers behind it would wait for on the loop. */
    int rc = sn_spool_sync_start(p->d.spool);
    if (rc != 0)
        sn_log_error("spool fsync failed", SN_LOG_ERRNO(rc));
    sn_metric_feed_expire(p->feed, now_ns());
}

/* --- draining --- */

static void drain_finished(sn_pipeline *p)
{
    if (p->drain_done == NULL)
        return;
    void (*done)(void *) = p->drain_done;
    p->drain_done = NULL;
    uv_timer_stop(&p->drain_timer);
    done(p->drain_ud);
}

static void maybe_finish_drain(sn_pipeline *p)
{
    if (p->draining && !p->in_flight && !p->sealing && sn_spool_count(p->d.spool) == 0 &&
        p->n_events == 0 && p->n_alerts == 0 && p->n_aggs == 0)
        drain_finished(p);
}

static void on_drain_timeout(uv_timer_t *t)
{
    sn_pipeline *p = t->data;
    sn_log_warn("drain timed out; the rest stays in the spool for the next start",
                SN_LOG_UINT("batches", sn_spool_count(p->d.spool)));
    drain_finished(p);
}

void sn_pipeline_drain(sn_pipeline *p, uint64_t timeout_ms, void (*done)(void *ud), void *ud)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_mutex_unlock(&p->mu);
    p->draining = true;
    p->drain_done = done;
    p->drain_ud = ud;
    on_wake(&p->wake); /* answer whatever is queued (refused: stopping) */
    (void)seal_sync(p);
    uv_timer_stop(&p->flush_timer);
    uv_timer_start(&p->drain_timer, on_drain_timeout, timeout_ms, 0);
    /* Skip a pending backoff: the drain is the last chance to ship. */
    if (p->waiting) {
        uv_timer_stop(&p->ship_timer);
        p->waiting = false;
    }
    ship_kick(p);
    maybe_finish_drain(p);
}

/* --- the transport side --- */

static void answer_refusal(sn_pipeline *p, sn_otlp_result *res, enum refusal why)
{
    res->outcome = SN_OTLP_RETRY;
    res->retry_after_ms = p->cfg.retry_after_ms;
    snprintf(res->message, sizeof res->message, "sidecar busy (%s); retry later",
             refusal_names[why]);
    sn_counter_inc(p->refused[why]);
}

/* Appends an item to the loop's queue. Returns true when the queue was empty: the loop must then
 * be woken (uv_async_send; the loop takes every queued item per wake-up, so one wake-up covers
 * the items queued behind it). Caller holds p->mu. */
static bool enqueue_locked(sn_pipeline *p, work *w)
{
    bool was_empty = p->head == NULL;
    if (p->tail != NULL)
        p->tail->next = w;
    else
        p->head = w;
    p->tail = w;
    p->pending++;
    return was_empty;
}

/* The memory a scratch holds. */
static size_t scratch_bytes(const scratch *s)
{
    return s->rec_cap + s->items_cap * sizeof *s->items + s->idents_cap * sizeof *s->idents;
}

/* Queues a decoded trace request for the loop, which answers it through res->later; the
 * transport thread returns at once. The item takes `req` (freed by the loop). Returns true when
 * queued (res->deferred set); false when refused at once (res filled, `req` still the
 * caller's). Bounded by max_pending items and max_pending_bytes of scratch memory. */
static bool submit_later(sn_pipeline *p, sn_pipeline_protocol protocol, scratch *req,
                         uint64_t rejected, int64_t t_start, sn_otlp_result *res)
{
    work *w = calloc(1, sizeof *w);
    if (w == NULL) {
        answer_refusal(p, res, REFUSED_QUEUE_FULL);
        return false;
    }
    w->req = w->owned = req;
    w->later = res->later;
    w->rejected = rejected;
    w->bytes = scratch_bytes(req);
    w->protocol = protocol;
    pthread_mutex_lock(&p->mu);
    enum refusal why = REFUSED_COUNT;
    if (p->stopping)
        why = REFUSED_STOPPING;
    else if (p->pending >= p->cfg.max_pending ||
             (p->pending_bytes > 0 && p->pending_bytes + w->bytes > p->cfg.max_pending_bytes))
        why = REFUSED_QUEUE_FULL;
    if (why != REFUSED_COUNT) {
        pthread_mutex_unlock(&p->mu);
        free(w);
        answer_refusal(p, res, why);
        return false;
    }
    p->pending_bytes += w->bytes;
    w->t_start = t_start;
    w->t_submit = mono_ns();
    bool wake = enqueue_locked(p, w);
    pthread_mutex_unlock(&p->mu); /* w may be the loop's from here on, or gone */
    /* Woken after the unlock, so the loop does not run into p->mu still held here (on one core
     * that is two more context switches). The handle outlives this call: the pipeline is
     * destroyed on the loop thread, whose handle close callbacks run only after the transports
     * (and so this thread) have stopped. */
    if (wake)
        uv_async_send(&p->wake);
    res->deferred = true;
    return true;
}

/* Queues a request for the loop (w, on the caller's stack, holds it) and waits for its answer. */
static void submit_and_wait(sn_pipeline *p, work *w, sn_otlp_result *res)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);

    pthread_mutex_lock(&p->mu);
    if (p->stopping) {
        pthread_mutex_unlock(&p->mu);
        answer_refusal(p, res, REFUSED_STOPPING);
        goto out_destroy_cond;
    }
    if (p->pending >= p->cfg.max_pending) {
        pthread_mutex_unlock(&p->mu);
        answer_refusal(p, res, REFUSED_QUEUE_FULL);
        goto out_destroy_cond;
    }
    /* Woken under the lock: this thread sleeps on w->cond right after, which unlocks. */
    if (enqueue_locked(p, w))
        uv_async_send(&p->wake);

    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    int64_t ns = deadline.tv_nsec + p->cfg.wait_timeout_ns;
    deadline.tv_sec += ns / 1000000000;
    deadline.tv_nsec = ns % 1000000000;
    while (w->state != W_DONE) {
        if (w->state == W_QUEUED &&
            pthread_cond_timedwait(&w->cond, &p->mu, &deadline) == ETIMEDOUT &&
            w->state == W_QUEUED) {
            /* Still queued: unlink it, so the loop never touches it. */
            work **pp = &p->head;
            work *prev = NULL;
            while (*pp != w) {
                prev = *pp;
                pp = &(*pp)->next;
            }
            *pp = w->next;
            if (p->tail == w)
                p->tail = prev;
            p->pending--;
            pthread_mutex_unlock(&p->mu);
            answer_refusal(p, res, REFUSED_TIMEOUT);
            goto out_destroy_cond;
        }
        if (w->state == W_TAKEN)
            pthread_cond_wait(&w->cond, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    *res = w->result;

out_destroy_cond:
    pthread_cond_destroy(&w->cond);
}

/* --- request scratches (transport threads) --- */

/* Takes an idle scratch from the pool, or makes one. NULL when out of memory. */
static scratch *scratch_take(sn_pipeline *p)
{
    pthread_mutex_lock(&p->pool_mu);
    scratch *s = p->pool;
    if (s != NULL) {
        p->pool = s->next;
        p->pool_n--;
        atomic_fetch_sub(&p->pool_bytes, scratch_bytes(s));
    }
    pthread_mutex_unlock(&p->pool_mu);
    if (s == NULL && (s = calloc(1, sizeof *s)) == NULL)
        return NULL;
    s->next = NULL;
    s->max_events = p->cfg.max_batch_events;
    s->rec_len = s->n_items = s->n_idents = 0;
    sn_batch_grouper_init(&s->grouper);
    s->error = 0;
    return s;
}

static void scratch_free(scratch *s)
{
    free(s->rec);
    free(s->items);
    free(s->idents);
    free(s);
}

/* Gives a scratch back to the pool (freed when the pool holds enough: SCRATCH_POOL_MAX
 * scratches or SCRATCH_POOL_BYTES). */
static void scratch_put(sn_pipeline *p, scratch *s)
{
    if (s->rec_cap > SCRATCH_KEEP_BYTES) {
        free(s->rec);
        s->rec = NULL;
        s->rec_cap = 0;
    }
    if (s->items_cap * sizeof *s->items > SCRATCH_KEEP_BYTES) {
        free(s->items);
        s->items = NULL;
        s->items_cap = 0;
    }
    size_t bytes = scratch_bytes(s);
    pthread_mutex_lock(&p->pool_mu);
    if (p->pool_n < SCRATCH_POOL_MAX && atomic_load(&p->pool_bytes) + bytes <= SCRATCH_POOL_BYTES) {
        s->next = p->pool;
        p->pool = s;
        p->pool_n++;
        atomic_fetch_add(&p->pool_bytes, bytes);
        s = NULL;
    }
    pthread_mutex_unlock(&p->pool_mu);
    if (s != NULL)
        scratch_free(s);
}

size_t sn_pipeline_scratch_kept(const sn_pipeline *p)
{
    return atomic_load(&((sn_pipeline *)p)->pool_bytes);
}

void sn_pipeline_scratch_reclaim(sn_pipeline *p)
{
    pthread_mutex_lock(&p->pool_mu);
    scratch *s = p->pool;
    p->pool = NULL;
    p->pool_n = 0;
    atomic_store(&p->pool_bytes, 0);
    pthread_mutex_unlock(&p->pool_mu);
    while (s != NULL) {
        scratch *next = s->next;
        scratch_free(s);
        s = next;
    }
}

/* Makes an array of elem-sized entries hold at least need of them (doubling, from 64). */
static int reserve_array(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (*cap >= need)
        return 0;
    size_t want = *cap < 64 ? 64 : *cap * 2;
    if (want < need)
        want = need;
    void *na = realloc(*arr, want * elem);
    if (na == NULL)
        return -ENOMEM;
    *arr = na;
    *cap = want;
    return 0;
}

/* The idents scratch_ident() looks back at: more than the (service, model) pairs a request
 * usually mixes (loadgen's five models in random order missed one time in five with 4). */
#define IDENT_LOOKBACK 8

/* The first eight bytes of a name field (every name field is at least that large). */
static uint64_t name_word(const char *field)
{
    _Static_assert(sizeof(((det_ident *)0)->model) >= 8, "a model field holds a word");
    uint64_t w;
    memcpy(&w, field, sizeof w);
    return w;
}

/* The index of ev's (service, model, region) in the scratch, added when it is not among the
 * last few (events of one resource and model come in runs; a miss only costs a duplicate). A
 * model field whose first word differs is another model, or the same one with other bytes after
 * its NUL in those eight -- then only a duplicate -- so most other idents cost one compare. */
static int scratch_ident(scratch *s, const sn_event *ev, uint32_t *out)
{
    size_t look = s->n_idents < IDENT_LOOKBACK ? s->n_idents : IDENT_LOOKBACK;
    uint64_t model_word = name_word(ev->model);
    for (size_t k = 1; k <= look; k++) {
        const det_ident *id = &s->idents[s->n_idents - k];
        if (name_word(id->model) == model_word && strcmp(id->model, ev->model) == 0 &&
            strcmp(id->service, ev->service) == 0 && strcmp(id->region, ev->region) == 0) {
            *out = (uint32_t)(s->n_idents - k);
            return 0;
        }
    }
    if (reserve_array((void **)&s->idents, &s->idents_cap, s->n_idents + 1, sizeof *s->idents))
        return -ENOMEM;
    det_ident *id = &s->idents[s->n_idents];
    memcpy(id->service, ev->service, sizeof id->service);
    memcpy(id->model, ev->model, sizeof id->model);
    memcpy(id->region, ev->region, sizeof id->region);
    id->pair = 0;
    *out = (uint32_t)s->n_idents++;
    return 0;
}

/* The decoder's callback on the transport thread: one LLM event joins the request's journal
 * record (in the group of its resource: a ResourceSpans gives one run; collect_done closes the
 * last group) and becomes a det_item. Past max_events nothing is kept (the request is refused
 * as too large); a failure is kept in s->error and stops the collection. */
static void collect_event(const sn_event *ev, void *ud)
{
    scratch *s = ud;
    if (s->error != 0 || s->n_items >= s->max_events)
        return;
    size_t per = sn_batch_grouped_record_bound(1);
    int rc = reserve_bytes(&s->rec, &s->rec_cap, s->rec_len + per);
    if (rc == 0)
        rc = sn_batch_append_grouped_event(&s->grouper, ev, s->rec, s->rec_cap, &s->rec_len);
    if (rc == 0)
        rc = reserve_array((void **)&s->items, &s->items_cap, s->n_items + 1, sizeof *s->items);
    uint32_t ident = 0;
    if (rc == 0)
        rc = scratch_ident(s, ev, &ident);
    if (rc != 0) {
        s->error = rc;
        return;
    }
    det_item *it = &s->items[s->n_items++];
    it->ident = ident;
    it->cost_source = ev->cost_source;
    it->is_error = ev->is_error;
    memcpy(it->trace_id, ev->trace_id, sizeof it->trace_id);
    it->end_unix_nano = ev->end_unix_nano;
    it->latency_ms = ev->latency_ms;
    it->ttft_ms = ev->ttft_ms;
    it->cost_usd = ev->cost_usd;
    it->input_tokens = ev->input_tokens;
    it->output_tokens = ev->output_tokens;
    it->total_tokens = ev->total_tokens;
}

/* Completes the journal record of a decoded request: closes its last group. */
static void collect_done(scratch *s)
{
    if (s->error == 0) {
        int rc = sn_batch_grouper_close(&s->grouper, s->rec, &s->rec_len);
        if (rc != 0)
            s->error = rc;
    }
}

/* Answers a request holding n items (what names them) as too large when n is more than a batch
 * may hold. Returns whether it did. */
static bool too_large(sn_pipeline *p, sn_otlp_result *res, uint64_t n, const char *what)
{
    if (n <= p->cfg.max_batch_events)
        return false;
    res->outcome = SN_OTLP_TOO_LARGE;
    snprintf(res->message, sizeof res->message,
             "request holds %" PRIu64 " %s; at most %zu per request (split the export batch)", n,
             what, p->cfg.max_batch_events);
    return true;
}

/* Decodes a trace request once, on the transport thread, into a scratch; malformed and too
 * large requests are answered here, the rest go to the loop. */
static void handle_traces(sn_pipeline *p, sn_pipeline_protocol protocol, sn_otlp_encoding encoding,
                          const uint8_t *body, size_t len, sn_otlp_result *res)
{
    int64_t t_start = res->later != NULL ? mono_ns() : 0;
    scratch *req = scratch_take(p);
    if (req == NULL) {
        answer_refusal(p, res, REFUSED_QUEUE_FULL);
        return;
    }
    sn_otlp_trace_stats st;
    char err[SN_OTLP_ERR_MAX];
    int rc = encoding == SN_OTLP_JSON
                 ? sn_otlp_decode_traces_json(body, len, p->d.prices, collect_event, req, &st, err,
                                              sizeof err)
                 : sn_otlp_decode_traces(body, len, p->d.prices, collect_event, req, &st, err,
                                         sizeof err);
    collect_done(req);
    if (rc != 0) {
        res->outcome = SN_OTLP_INVALID;
        snprintf(res->message, sizeof res->message, "%s", err);
        goto out_put_scratch;
    }
    sn_counter_add(p->spans, st.spans);
    /* Pairs with spans: their metric points are not turned into facts (metric_feed.h). */
    int64_t now = now_ns();
    for (size_t i = 0; i < req->n_idents; i++)
        sn_metric_feed_note_span(p->feed, req->idents[i].service, req->idents[i].model, now);
    if (too_large(p, res, st.llm_events, "LLM spans"))
        goto out_put_scratch;
    if (req->error != 0) {
        /* Out of memory (or an encoder bug): nothing was taken; the client may retry. */
        sn_log_error("cannot collect a request's events", SN_LOG_ERRNO(req->error));
        answer_refusal(p, res, REFUSED_QUEUE_FULL);
        goto out_put_scratch;
    }
    /* Answered by the loop when the transport can (the tee needs the body after the answer,
     * which only a waiting transport thread still has). */
    if (req->n_items > 0 && res->later != NULL && p->d.tee == NULL) {
        if (submit_later(p, protocol, req, st.rejected, t_start, res))
            return; /* req is the loop's now */
        goto out_put_scratch;
    }
    if (req->n_items > 0) {
        work w = {.req = req};
        submit_and_wait(p, &w, res);
    }
    note_rejected(p, res, st.rejected);

out_put_scratch:
    scratch_put(p, req);
}

/* Makes an accepted answer a partial success when spans were rejected, and counts them. */
static void note_rejected(sn_pipeline *p, sn_otlp_result *res, uint64_t rejected)
{
    if (res->outcome != SN_OTLP_OK || rejected == 0)
        return;
    res->rejected = (int64_t)rejected;
    snprintf(res->message, sizeof res->message,
             "%" PRIu64 " spans rejected: invalid trace id, span id or times", rejected);
    sn_counter_add(p->rejected_spans, rejected);
}

/* The GenAI points of one metrics request, collected by the transport thread's decode. */
typedef struct fact_buf {
    sn_metric_fact *facts; /* malloc'ed; freed by the handler */
    size_t n, cap, max;    /* max: more are not kept (the request is too large anyway) */
    bool oom;
} fact_buf;

/* The metrics decoder's callback on the transport thread: keeps a copy of the point. */
static void collect_fact(const sn_metric_fact *f, void *ud)
{
    fact_buf *fb = ud;
    if (fb->oom || fb->n >= fb->max)
        return;
    if (fb->n == fb->cap) {
        size_t cap = fb->cap == 0 ? 16 : fb->cap * 2;
        if (cap > fb->max)
            cap = fb->max;
        sn_metric_fact *nf = realloc(fb->facts, cap * sizeof *nf);
        if (nf == NULL) {
            fb->oom = true;
            return;
        }
        fb->facts = nf;
        fb->cap = cap;
    }
    fb->facts[fb->n++] = *f;
}

/* Decodes a metrics request once, on the transport thread, keeping a copy of its GenAI points
 * (at most batch.max_events of them; a request with more is answered too large); one with
 * points goes to the loop, which journals their aggregates (process_metrics) before the
 * answer. A point array that cannot be allocated is a retryable refusal. */
static void handle_metrics(sn_pipeline *p, sn_otlp_encoding encoding, const uint8_t *body,
                           size_t len, sn_otlp_result *res)
{
    sn_otlp_metric_stats st;
    char err[SN_OTLP_ERR_MAX];
    fact_buf fb = {.max = p->cfg.max_batch_events};
    int rc = encoding == SN_OTLP_JSON
                 ? sn_otlp_decode_metrics_json(body, len, collect_fact, &fb, &st, err, sizeof err)
                 : sn_otlp_decode_metrics(body, len, collect_fact, &fb, &st, err, sizeof err);
    if (rc != 0) {
        res->outcome = SN_OTLP_INVALID;
        snprintf(res->message, sizeof res->message, "%s", err);
        goto out_free;
    }
    if (too_large(p, res, st.facts, "GenAI data points"))
        goto out_free;
    if (st.facts > 0) {
        if (fb.oom) {
            answer_refusal(p, res, REFUSED_QUEUE_FULL);
            goto out_free;
        }
        work w = {.facts = fb.facts, .n_facts = fb.n};
        submit_and_wait(p, &w, res);
        if (res->outcome != SN_OTLP_OK)
            goto out_free;
    }
    sn_counter_add(p->metric_points, st.data_points);
    sn_counter_add(p->metric_facts, st.facts);
    if (st.rejected > 0) {
        res->rejected = (int64_t)st.rejected;
        snprintf(res->message, sizeof res->message, "%" PRIu64 " GenAI data points rejected",
                 st.rejected);
    }
out_free:
    free(fb.facts);
}

static void handle_logs(sn_pipeline *p, sn_otlp_encoding encoding, const uint8_t *body, size_t len,
                        sn_otlp_result *res)
{
    sn_otlp_log_stats st;
    char err[SN_OTLP_ERR_MAX];
    int rc = encoding == SN_OTLP_JSON ? sn_otlp_decode_logs_json(body, len, &st, err, sizeof err)
                                      : sn_otlp_decode_logs(body, len, &st, err, sizeof err);
    if (rc != 0) {
        res->outcome = SN_OTLP_INVALID;
        snprintf(res->message, sizeof res->message, "%s", err);
        return;
    }
    sn_counter_add(p->log_records, st.log_records);
    sn_counter_add(p->genai_log_events, st.genai_events);
}

void sn_pipeline_otlp_handler(sn_otlp_signal signal, sn_otlp_encoding encoding, const uint8_t *body,
                              size_t len, sn_otlp_result *res, void *ud)
{
    proto_ud *pu = ud;
    sn_pipeline *p = pu->p;
    switch (signal) {
    case SN_OTLP_TRACES:
        handle_traces(p, pu->protocol, encoding, body, len, res);
        if (res->deferred)
            return; /* answered and counted by the loop */
        break;
    case SN_OTLP_METRICS:
        handle_metrics(p, encoding, body, len, res);
        break;
    case SN_OTLP_LOGS:
        handle_logs(p, encoding, body, len, res);
        break;
    default:
        res->outcome = SN_OTLP_INVALID;
        snprintf(res->message, sizeof res->message, "unknown signal");
        return;
    }
    if ((int)res->outcome >= 0 && res->outcome < N_OUTCOMES)
        sn_counter_inc(p->requests[signal][pu->protocol][res->outcome]);
    /* The user's collector gets what we accepted, unchanged; a refused request comes back. */
    if (p->d.tee != NULL && res->outcome == SN_OTLP_OK)
        (void)sn_tee_submit(p->d.tee, signal, encoding, body, len);
}

sn_histogram *sn_pipeline_stage_histogram(sn_pipeline *p, const char *stage)
{
    const char *v[1] = {stage};
    return sn_metrics_histogram(p->stage_family, v);
}

void *sn_pipeline_handler_ud(sn_pipeline *p, sn_pipeline_protocol protocol)
{
    return &p->uds[protocol == SN_PIPELINE_HTTP ? 1 : 0];
}

bool sn_pipeline_ready(char *reason, size_t reasonlen, void *ud)
{
    sn_pipeline *p = ud;
    pthread_mutex_lock(&p->mu);
    bool stopping = p->stopping;
    pthread_mutex_unlock(&p->mu);
    if (stopping) {
        snprintf(reason, reasonlen, "shutting down");
        return false;
    }
    if (atomic_load(&p->spool_full)) {
        snprintf(reason, reasonlen, "spool full: the aggregator is unreachable or slow");
        return false;
    }
    if (sn_spool_sync_failing(p->d.spool)) {
        snprintf(reason, reasonlen, "spool disk failing: its fsyncs keep failing");
        return false;
    }
    return true;
}

/* --- recovery, create, destroy --- */

/* Re-seals the events and aggregates of one journal record a previous run accepted but did not
 * seal: the record is checked and its bytes join the open batch as they are. */
static int on_recovered(void *ud, const uint8_t *data, size_t len, uint64_t generation)
{
    sn_pipeline *p = ud;
    char err[256];
    size_t n, n_aggs;
    int rc = sn_batch_scan_record(data, len, &n, &n_aggs, err, sizeof err);
    if (rc != 0) {
        sn_log_error("unreadable journal record skipped", SN_LOG_UINT("generation", generation),
                     SN_LOG_STR("error", err));
        return 0;
    }
    if (over_limit(p, n, n_aggs) && seal(p, 0) != 0)
        return -ENOSPC;
    if (reserve_bytes(&p->open, &p->open_cap, p->open_len + len) != 0)
        return -ENOMEM;
    memcpy(p->open + p->open_len, data, len);
    p->open_len += len;
    p->n_events += n;
    p->n_aggs += n_aggs;
    return 0;
}

/* Frees what create allocated (handles aside). */
static void free_pipeline(sn_pipeline *p)
{
    while (p->pool != NULL) {
        scratch *s = p->pool;
        p->pool = s->next;
        scratch_free(s);
    }
    pthread_mutex_destroy(&p->pool_mu);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->seal_cv);
    pthread_mutex_destroy(&p->seal_mu);
    sn_alert_limit_destroy(p->limit);
    sn_metric_feed_destroy(p->feed);
    free(p->mrec);
    free(p->mout);
    free(p->mch);
    free(p->open);
    free(p->alerts);
    free(p->job.records);
    free(p->job.alerts);
    sn_batch_parts_free(&p->flat);
    free(p);
}

static void on_close(uv_handle_t *h)
{
    sn_pipeline *p = h->data;
    if (--p->open_handles == 0)
        free_pipeline(p);
}

int sn_pipeline_create(const sn_pipeline_config *cfg, const sn_pipeline_deps *deps,
                       sn_pipeline **out, char *err, size_t errlen)
{
    int rc = -ENOMEM;
    sn_pipeline *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    p->cfg = *cfg;
    p->d = *deps;
    snprintf(p->sidecar_id, sizeof p->sidecar_id, "%s", cfg->sidecar_id);
    p->uds[0] = (proto_ud){p, SN_PIPELINE_GRPC};
    p->uds[1] = (proto_ud){p, SN_PIPELINE_HTTP};
    p->next_seq = 1;
    atomic_init(&p->spool_full, false);
    pthread_mutex_init(&p->mu, NULL);
    sn_backoff_config_defaults(&p->backoff_cfg);
    p->backoff_cfg.initial_ms = cfg->backoff_initial_ms;
    p->backoff_cfg.max_ms = cfg->backoff_max_ms;
    pthread_mutex_init(&p->pool_mu, NULL);
    atomic_init(&p->pool_bytes, 0);
    pthread_mutex_init(&p->seal_mu, NULL);
    pthread_cond_init(&p->seal_cv, NULL);
    sn_event_init(&p->det_ev);
    p->alerts = calloc(cfg->max_batch_alerts, sizeof(*p->alerts));
    p->job.alerts = calloc(cfg->max_batch_alerts, sizeof(*p->job.alerts));
    if (p->alerts == NULL || p->job.alerts == NULL) {
        snprintf(err, errlen, "out of memory for %zu alerts", cfg->max_batch_alerts);
        goto out_free;
    }
    if ((rc = sn_alert_limit_create(SN_ALERT_LIMIT_SLOTS_DEFAULT, cfg->alert_interval_ms,
                                    sn_backoff_random(), &p->limit)) != 0) {
        snprintf(err, errlen, "cannot create the local alert limit: %s", strerror(-rc));
        goto out_free;
    }
    sn_metric_feed_config fc;
    sn_metric_feed_config_defaults(&fc);
    fc.since_unix_nano = now_ns();
    if (cfg->metric_cover_ns > 0)
        fc.cover_ns = cfg->metric_cover_ns;
    if ((rc = sn_metric_feed_create(&fc, deps->prices, &p->feed)) != 0) {
        snprintf(err, errlen, "cannot create the metric feed: %s", strerror(-rc));
        goto out_free;
    }
    if ((rc = register_metrics(p, err, errlen)) != 0)
        goto out_free;

    /* Journal records a previous run accepted but never sealed: seal them now. */
    rc = sn_spool_recover_journal(p->d.spool, on_recovered, p);
    if (rc != 0) {
        snprintf(err, errlen, "cannot recover the journal: %s", strerror(-rc));
        goto out_free;
    }
    if (p->n_events > 0 || p->n_aggs > 0) {
        sn_log_info("re-sealing events and aggregates a previous run accepted",
                    SN_LOG_UINT("events", p->n_events), SN_LOG_UINT("aggregates", p->n_aggs));
        if ((rc = seal(p, sn_spool_journal_generation(p->d.spool))) != 0) {
            snprintf(err, errlen, "cannot seal recovered events: %s", strerror(-rc));
            goto out_free;
        }
    }

    uv_async_init(deps->loop, &p->wake, on_wake);
    uv_async_init(deps->loop, &p->sealed_wake, on_sealed);
    uv_timer_init(deps->loop, &p->flush_timer);
    uv_timer_init(deps->loop, &p->sync_timer);
    uv_timer_init(deps->loop, &p->ship_timer);
    uv_timer_init(deps->loop, &p->drain_timer);
    p->wake.data = p->sealed_wake.data = p->flush_timer.data = p->sync_timer.data =
        p->ship_timer.data = p->drain_timer.data = p;
    p->open_handles = 6;
    /* The sealer takes no signals: the loop thread handles them. Without it batches are sealed
     * on the loop. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    p->sealer_started = pthread_create(&p->sealer, NULL, sealer_main, p) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!p->sealer_started)
        sn_log_warn("cannot start the sealer thread; sealing batches on the loop");
    uint64_t flush_ms = (uint64_t)(cfg->flush_interval_ns / 1000000);
    uint64_t sync_ms = (uint64_t)(cfg->sync_interval_ns / 1000000);
    uv_timer_start(&p->flush_timer, on_flush_timer, flush_ms ? flush_ms : 1,
                   flush_ms ? flush_ms : 1);
    uv_timer_start(&p->sync_timer, on_sync_timer, sync_ms ? sync_ms : 1, sync_ms ? sync_ms : 1);
    update_gauges(p);
    ship_kick(p);
    *out = p;
    return 0;

out_free:
    free_pipeline(p);
    return rc;
}

void sn_pipeline_destroy(sn_pipeline *p)
{
    if (p == NULL)
        return;
    if (p->sealer_started) {
        /* A job still out (only if the drain was cut short) stays in the journal, uncovered:
         * the next start seals it again. */
        pthread_mutex_lock(&p->seal_mu);
        p->sealer_stop = true;
        pthread_cond_broadcast(&p->seal_cv);
        pthread_mutex_unlock(&p->seal_mu);
        pthread_join(p->sealer, NULL);
        p->sealer_started = false;
    }
    uv_close((uv_handle_t *)&p->wake, on_close);
    uv_close((uv_handle_t *)&p->sealed_wake, on_close);
    uv_close((uv_handle_t *)&p->flush_timer, on_close);
    uv_close((uv_handle_t *)&p->sync_timer, on_close);
    uv_close((uv_handle_t *)&p->ship_timer, on_close);
    uv_close((uv_handle_t *)&p->drain_timer, on_close);
}
