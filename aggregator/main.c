/*
 * main.c -- sentinel-aggregator: the central service. It receives sidecar batches
 * (aggregator/ingest.h) and applies them on its libuv loop: every event goes through the
 * detection engine (aggregator/engine.h) over global baselines, every sidecar local alert is
 * confirmed or discarded there, and the anomalies found become alerts (aggregator/alerts.h:
 * de-duplication, grouping, resolve) that are persisted in the embedded store
 * (aggregator/store.h, SQLite in WAL mode under SENTINEL_DATA_DIR) together with the ingest
 * de-duplication state, in one transaction per batch. A one-second tick lets the engine notice
 * silence (throughput drops) and resolves alerts that went quiet.
 *
 * Threads: the loop thread owns all state (engine, alerts, store, counters, the event log). The
 * ingest service's handler thread hands each batch over through a locked queue plus uv_async_send,
 * then waits on a condition variable until the loop has applied it. A batch still queued when
 * ingest.apply_timeout passes is taken back and answered RETRY_AFTER (never applied); one the
 * loop has started is always waited for, so an acknowledgement is only ever sent for a batch
 * that was applied.
 *
 * Shutdown (SIGTERM, SIGINT): the ingest service stops accepting calls and finishes those in
 * flight (a thread-pool job, since they need the loop to apply their batches), then the loop
 * closes its handles, the event log is flushed and closed, and the program exits 0.
 */
#include "agg_metrics.h"
#include "alerts.h"
#include "api.h"
#include "baseline.h"
#include "baseline_share.h"
#include "cli.h"
#include "dashboard.h"
#include "deliver/deliver.h"
#include "engine.h"
#include "grpc_unary.h" /* sn_grpc_unary_read_chunks, sn_grpc_unary_route_logs */
#include "ingest.h"
#include "live.h"
#include "log.h"
#include "loop_call.h"
#include "metrics.h"
#include "shared_state.h"
#include "sink.h" /* sn_redis_url_parse */
#include "recent.h"
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <uv.h>

#define SN_APPLY_QUEUE_MAX 64 /* batches waiting for the loop (one handler thread: at most 1) */

typedef struct agg_settings {
    sn_config_address ingest_endpoint;
    int64_t max_message_bytes;
    int64_t max_calls;
    int64_t grpc_window;
    bool grpc_read_chunks;
    int64_t max_batch_events;
    int64_t max_batch_alerts;
    int64_t max_sidecars;
    int64_t sidecar_idle_ns;
    int64_t apply_timeout_ns;
    int64_t retry_after_ns;
    int64_t shutdown_grace_ns;
    char event_log[1024];
    int64_t ingest_delay_ns;
    char data_dir[1024];
    int64_t retention_days;
    int64_t snapshot_interval_ns;
    int64_t snapshot_batch;
    bool reapply_api_config;
    int64_t alerts_max;
    int64_t dedup_window_ns;
    int64_t quiet_period_ns;
    int64_t group_window_ns;
    char runbook_url[512];
    sn_config_address http_endpoint;
    char api_token[256];
    char redis_url[1024];
    char redis_key_prefix[SN_SHARED_PREFIX_MAX + 1];
    char redis_replica_id[SN_SHARED_ID_MAX + 1];
    int64_t redis_timeout_ns;
    int64_t redis_lease_ttl_ns;
    bool redis_share_baselines;
    bool redis_share_budgets;
    int64_t redis_baseline_interval_ns;
    int64_t redis_baseline_ttl_ns;
    int64_t redis_baseline_batch;
    int64_t redis_baseline_max_pairs;
    sn_engine_config engine;
    sn_deliver_settings deliver;
    sn_cli_log_settings log;
} agg_settings;

static const sn_config_desc descriptors[] = {
    {SN__CFG("ingest.endpoint", SN_CONFIG_ADDRESS, agg_settings, ingest_endpoint, "0.0.0.0:9090",
             "sidecar ingest listen address (gRPC sentinel.v1.Aggregator); port 0 picks one"),
     .env = "SENTINEL_INGEST_ENDPOINT", .flags = SN_CONFIG_ANY_PORT},
    SN_CFG_SIZE("ingest.max_message_bytes", agg_settings, max_message_bytes, "16MiB", 1024,
                INT64_C(1) << 30, "largest ingest request, on the wire and after decompression"),
    SN_CFG_INT("ingest.max_calls", agg_settings, max_calls, "64", 1, 65536,
               "ingest calls admitted at once; more are refused with UNAVAILABLE + RetryInfo"),
    SN_CFG_SIZE("ingest.window", agg_settings, grpc_window, "64KiB", 0, INT64_C(64) << 20,
                "gRPC flow-control window per stream and largest TCP read (at least 65535; the "
                "read cap only with grpc.tcp_read_chunks false); a call moves at most this much "
                "per network round trip; 0: gRPC's own, which grows to megabytes per stream"),
    SN_CFG_INT("ingest.max_batch_events", agg_settings, max_batch_events, "16384", 1, 1 << 24,
               "most events in one batch"),
    SN_CFG_INT("ingest.max_batch_alerts", agg_settings, max_batch_alerts, "4096", 1, 1 << 24,
               "most local alerts in one batch"),
    SN_CFG_INT("ingest.max_sidecars", agg_settings, max_sidecars, "16384", 1, 1 << 24,
               "sidecar ids remembered for de-duplication (least recently seen evicted)"),
    SN_CFG_DURATION("ingest.sidecar_idle", agg_settings, sidecar_idle_ns, "7d", SN_NS_PER_SEC,
                    INT64_C(365) * 24 * 3600 * SN_NS_PER_SEC,
                    "a sidecar id not seen this long is forgotten by de-duplication"),
    SN_CFG_DURATION("ingest.apply_timeout", agg_settings, apply_timeout_ns, "5s", SN_NS_PER_MS,
                    600 * SN_NS_PER_SEC,
                    "how long a batch may wait for the loop before it is answered RETRY_AFTER"),
    SN_CFG_DURATION("ingest.retry_after", agg_settings, retry_after_ns, "1s", SN_NS_PER_MS,
                    3600 * SN_NS_PER_SEC,
                    "delay asked of sidecars in RETRY_AFTER and busy answers"),
    SN_CFG_DURATION("ingest.shutdown_grace", agg_settings, shutdown_grace_ns, "10s", 0,
                    600 * SN_NS_PER_SEC,
                    "on SIGTERM, how long calls in flight may take before they are cancelled"),
    SN_CFG_BOOL("grpc.tcp_read_chunks", agg_settings, grpc_read_chunks, "false",
                "gRPC core's tcp_read_chunks experiment (on in gRPC 1.51): each socket read gets "
                "buffers for the largest recent burst, megabytes under load whatever "
                "ingest.window says; off: reads of at most ingest.window (4 MiB with window 0); "
                "entries of GRPC_EXPERIMENTS in the environment win"),
    SN_CFG_STRING("debug.event_log", agg_settings, event_log, "",
                  "debugging aid: append every applied event and alert as a JSON line to this "
                  "file (empty: off)"),
    SN_CFG_DURATION("debug.ingest_delay", agg_settings, ingest_delay_ns, "0s", 0,
                    60 * SN_NS_PER_SEC,
                    "testing aid: hold every sequenced batch this long before applying it (a slow "
                    "aggregator; alerts ahead of their batch are not held, but wait behind the "
                    "batch in flight)"),
    {SN__CFG("state.data_dir", SN_CONFIG_STRING, agg_settings, data_dir, "/var/lib/sentinel",
             "directory of the embedded state (state.db: alerts, de-duplication, history)"),
     .env = "SENTINEL_DATA_DIR"},
    SN_CFG_INT("state.retention_days", agg_settings, retention_days, "365", 1, 36500,
               "anomaly history older than this many days is purged (checked daily)"),
    SN_CFG_DURATION("state.snapshot_interval", agg_settings, snapshot_interval_ns, "60s",
                    SN_NS_PER_SEC, INT64_C(24) * 3600 * SN_NS_PER_SEC,
                    "baselines that changed are written to the store this often (and at "
                    "shutdown), so a restart resumes them instead of starting cold"),
    SN_CFG_INT("state.snapshot_batch", agg_settings, snapshot_batch, "2000", 1, 1000000,
               "most baseline keys written per second while a snapshot is in progress"),
    SN_CFG_BOOL("state.reapply_api_config", agg_settings, reapply_api_config, "true",
                "at start, apply the settings last changed through POST /api/v1/config on top of "
                "file, environment and flags (false: drop them)"),
    SN_CFG_INT("alerts.max_active", agg_settings, alerts_max, "1024", 1, 1000000,
               "alerts held in memory (firing, and recently resolved for grouping)"),
    SN_CFG_DURATION("alerts.dedup_window", agg_settings, dedup_window_ns, "5m", SN_NS_PER_SEC,
                    INT64_C(24) * 3600 * SN_NS_PER_SEC,
                    "anomalies of one (service, model, type) within this window update one alert"),
    SN_CFG_DURATION("alerts.quiet_period", agg_settings, quiet_period_ns, "5m", SN_NS_PER_SEC,
                    INT64_C(24) * 3600 * SN_NS_PER_SEC,
                    "an alert resolves after its metric was normal for this long"),
    SN_CFG_DURATION("alerts.group_window", agg_settings, group_window_ns, "2m", 0,
                    INT64_C(24) * 3600 * SN_NS_PER_SEC,
                    "alerts of one service firing within this window are related (0: off)"),
    SN_CFG_STRING("alerts.runbook_url", agg_settings, runbook_url, "",
                  "runbook URL template; {anomaly_type}, {service} and {model} are replaced"),
    {SN__CFG("http.endpoint", SN_CONFIG_ADDRESS, agg_settings, http_endpoint, "0.0.0.0:8080",
             "REST API, /metrics, /health and dashboard listen address (off to disable)"),
     .env = "SENTINEL_HTTP_ENDPOINT", .flags = SN_CONFIG_OPTIONAL | SN_CONFIG_ANY_PORT},
    {SN__CFG("http.api_token", SN_CONFIG_STRING, agg_settings, api_token, "",
             "bearer token required on /api/ (empty: open); /health and /metrics stay open"),
     .env = "SENTINEL_API_TOKEN", .flags = SN_CONFIG_SECRET},
    {SN__CFG("redis.url", SN_CONFIG_STRING, agg_settings, redis_url, "",
             "shared state for several replicas: redis://[[user]:password@]host[:port][/db] "
             "(empty: embedded, one replica)"),
     .env = "SENTINEL_REDIS_URL", .flags = SN_CONFIG_SECRET},
    SN_CFG_STRING("redis.key_prefix", agg_settings, redis_key_prefix,
                  "sentinel:", "prefix of every shared-state key in Redis"),
    SN_CFG_STRING("redis.replica_id", agg_settings, redis_replica_id, "",
                  "this replica's name in Redis (empty: host name and a random suffix)"),
    SN_CFG_DURATION("redis.timeout", agg_settings, redis_timeout_ns, "250ms", SN_NS_PER_MS,
                    60 * SN_NS_PER_SEC,
                    "connect and command timeout; past it the replica falls back to local state"),
    SN_CFG_DURATION("redis.lease_ttl", agg_settings, redis_lease_ttl_ns, "10s", 2 * SN_NS_PER_SEC,
                    3600 * SN_NS_PER_SEC,
                    "leadership lease; a replica that stops renewing it is replaced after this"),
    SN_CFG_BOOL("redis.share_baselines", agg_settings, redis_share_baselines, "true",
                "score against the baselines of every replica merged (compact baselines only)"),
    SN_CFG_BOOL("redis.share_budgets", agg_settings, redis_share_budgets, "true",
                "cost budgets count the spend of every replica (a shared total per period)"),
    SN_CFG_DURATION("redis.baseline_interval", agg_settings, redis_baseline_interval_ns, "5s",
                    SN_NS_PER_SEC, 3600 * SN_NS_PER_SEC,
                    "each key scored here is published and merged with the others' this often"),
    SN_CFG_DURATION("redis.baseline_ttl", agg_settings, redis_baseline_ttl_ns, "30s",
                    2 * SN_NS_PER_SEC, INT64_C(24) * 3600 * SN_NS_PER_SEC,
                    "a replica's baselines not republished for this long leave the merged views"),
    SN_CFG_INT("redis.baseline_batch", agg_settings, redis_baseline_batch, "256", 1,
               SN_SHARED_EXCHANGE_MAX, "baseline keys exchanged with Redis per second at most"),
    SN_CFG_INT("redis.baseline_max_pairs", agg_settings, redis_baseline_max_pairs, "4096", 1,
               1 << 20, "(service, model) pairs shared per round; more wait for a later round"),
    SN_ENGINE_DESCRIPTORS("engine", agg_settings, engine),
    SN_DELIVER_DESCRIPTORS(agg_settings, deliver),
    SN_CLI_LOG_DESCRIPTORS(agg_settings, log),
};

static int validate_settings(void *config, sn_config_error *err)
{
    agg_settings *s = config;
    if (s->data_dir[0] == '\0') {
        snprintf(err->msg, sizeof err->msg, "config: state.data_dir: must not be empty");
        return -EINVAL;
    }
    sn_redis_url ru;
    if (s->redis_url[0] != '\0' && sn_redis_url_parse(s->redis_url, &ru) != 0) {
        snprintf(err->msg, sizeof err->msg,
                 "config: redis.url: not a redis://[[user]:password@]host[:port][/db] URL");
        return -EINVAL;
    }
    return sn_engine_config_validate(&s->engine, "engine", err);
}

/* A batch waiting for the loop; lives on the handler thread's stack. */
typedef enum apply_state { APPLY_QUEUED = 0, APPLY_TAKEN, APPLY_DONE } apply_state;

typedef struct pending_apply {
    const sn_ingest_batch *batch;
    apply_state state;
    int rc;
    struct pending_apply *next;
} pending_apply;

typedef struct aggregator {
    const agg_settings *set;
    uv_loop_t loop;
    uv_async_t wake;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    uv_work_t stop_work;
    bool stopping;
    sn_ingest *ingest;
    sn_engine *engine;
    sn_alerts *alerts;
    sn_store *store;
    sn_config *config; /* the live configuration (sn_cli_load's handle) */
    sn_metrics *metrics;
    sn_agg_metrics *agg_metrics; /* the aggregator's own series in metrics */
    sn_loop_call *loop_call;
    sn_live *live; /* /ws/realtime */
    sn_api *api;
    sn_deliver *deliver;             /* alert sinks; NULL until started */
    sn_shared *shared;               /* replicas' shared state; NULL: embedded (redis.url empty) */
    sn_bshare *bshare;               /* shared baselines; NULL: off (embedded, or not wanted) */
    bool in_tick;                    /* on_tick is running: anomalies come from silence checks */
    uint64_t tick_anomalies_skipped; /* silence anomalies left to the leader */
    sn_recent *recent; /* recent values per key (GET /api/v1/series); NULL: none kept */
    uv_timer_t tick;
    int64_t next_purge_ns;
    /* baseline snapshots (loop thread) */
    int64_t next_snapshot_ns;
    int64_t snap_started_ns;             /* the round in progress began; 0: none */
    bool snap_force_all;                 /* a failed commit: the next round writes every key */
    uint64_t snap_written, snap_deleted; /* this round */
    uint64_t snap_written_total, snap_deleted_total, snap_failures;
    bool budgets_force_all; /* a failed save: the next one writes every budget state */

    /* the hand-off from the ingest handler thread: guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pending_apply *q_head;
    pending_apply *q_tail;
    size_t q_len;

    /* loop thread only */
    FILE *event_log;
    uint64_t batches;
    uint64_t events;
    uint64_t local_alerts;
    uint64_t local_alerts_ahead; /* alerts applied from alert-only batches (sequence 0) */
    uint64_t local_alert_copies; /* alert copies skipped: their alert_id was applied before */
    uint64_t anomalies;
    uint64_t store_errors;
} aggregator;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SN_NS_PER_SEC + ts.tv_nsec;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * SN_NS_PER_SEC + ts.tv_nsec;
}

/* ---- the event log (debug.event_log) ------------------------------------------------------ */

/* A JSON string, or a marker when the bytes are not valid UTF-8 (jansson refuses those). */
static json_t *jstr(const char *s)
{
    json_t *j = json_string(s);
    return j != NULL ? j : json_string("<invalid utf-8>");
}

/* A JSON number, or null when unknown (NAN / infinite). */
static json_t *jreal(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* A count, or null when unknown (negative). */
static json_t *jcount(int64_t v)
{
    return v >= 0 ? json_integer(v) : json_null();
}

/* Lower-case hex of n bytes, or "" when they are all zero (unknown id). */
static json_t *jhex(const uint8_t *p, size_t n)
{
    char buf[2 * 16 + 1];
    bool any = false;
    for (size_t i = 0; i < n && i < 16; i++) {
        static const char hex[] = "0123456789abcdef";
        buf[2 * i] = hex[p[i] >> 4];
        buf[2 * i + 1] = hex[p[i] & 15];
        any = any || p[i] != 0;
    }
    buf[any ? 2 * n : 0] = '\0';
    return json_string(buf);
}

static const char *const cost_source_names[] = {"unknown", "span", "price_table"};

/* One event as a JSON object with every fact (new reference; NULL when out of memory). */
static json_t *event_json(const sn_ingest_batch *b, size_t i)
{
    const sn_event *e = &b->events[i];
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "type", json_string("event"));
    json_object_set_new(o, "sidecar_id", jstr(b->sidecar_id));
    json_object_set_new(o, "sequence", json_integer((json_int_t)b->sequence));
    json_object_set_new(o, "index", json_integer((json_int_t)i));
    json_object_set_new(o, "start_unix_nano", json_integer(e->start_unix_nano));
    json_object_set_new(o, "end_unix_nano", json_integer(e->end_unix_nano));
    json_object_set_new(o, "service", jstr(e->service));
    json_object_set_new(o, "model", jstr(e->model));
    json_object_set_new(o, "provider", jstr(e->provider));
    json_object_set_new(o, "operation", jstr(e->operation));
    json_object_set_new(o, "region", jstr(e->region));
    json_object_set_new(o, "service_version", jstr(e->service_version));
    json_object_set_new(o, "pod", jstr(e->pod));
    json_object_set_new(o, "user", jstr(e->user));
    json_object_set_new(o, "error_type", jstr(e->error_type));
    json_object_set_new(o, "finish_reason", jstr(e->finish_reason));
    json_object_set_new(o, "trace_id", jhex(e->trace_id, sizeof e->trace_id));
    json_object_set_new(o, "span_id", jhex(e->span_id, sizeof e->span_id));
    json_object_set_new(o, "latency_ms", jreal(e->latency_ms));
    json_object_set_new(o, "ttft_ms", jreal(e->ttft_ms));
    json_object_set_new(o, "input_tokens", jcount(e->input_tokens));
    json_object_set_new(o, "output_tokens", jcount(e->output_tokens));
    json_object_set_new(o, "total_tokens", jcount(e->total_tokens));
    json_object_set_new(o, "cache_read_tokens", jcount(e->cache_read_tokens));
    json_object_set_new(o, "cache_write_tokens", jcount(e->cache_write_tokens));
    json_object_set_new(o, "reasoning_tokens", jcount(e->reasoning_tokens));
    json_object_set_new(o, "cost_usd", jreal(e->cost_usd));
    json_object_set_new(o, "cost_source",
                        json_string(e->cost_source <= SN_COST_PRICE_TABLE
                                        ? cost_source_names[e->cost_source]
                                        : "unknown"));
    json_object_set_new(o, "is_error", json_boolean(e->is_error));
    json_object_set_new(o, "conventions", json_integer(e->conventions));
    return o;
}

/* One local alert as a JSON object (new reference; NULL when out of memory). */
static json_t *alert_json(const sn_ingest_batch *b, size_t i)
{
    const sn_local_alert *a = &b->alerts[i];
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "type", json_string("alert"));
    json_object_set_new(o, "sidecar_id", jstr(b->sidecar_id));
    json_object_set_new(o, "sequence", json_integer((json_int_t)b->sequence));
    json_object_set_new(o, "index", json_integer((json_int_t)i));
    json_object_set_new(o, "alert_id", jstr(a->alert_id));
    json_object_set_new(o, "time_unix_nano", json_integer(a->time_unix_nano));
    json_object_set_new(o, "service", jstr(a->service));
    json_object_set_new(o, "model", jstr(a->model));
    json_object_set_new(o, "region", jstr(a->region));
    json_object_set_new(o, "metric", json_string(sn_metric_name(a->metric)));
    json_object_set_new(o, "anomaly_type", json_string(sn_anomaly_type_name(a->anomaly_type)));
    json_object_set_new(o, "detection_method", json_string(sn_detector_name(a->detector)));
    json_object_set_new(o, "severity", json_string(sn_severity_name(a->severity)));
    json_object_set_new(o, "value", jreal(a->value));
    json_object_set_new(o, "baseline", jreal(a->baseline));
    json_object_set_new(o, "threshold", jreal(a->threshold));
    json_object_set_new(o, "deviation", jreal(a->deviation));
    json_object_set_new(o, "confidence", jreal(a->confidence));
    json_object_set_new(o, "trace_id", jhex(a->trace_id, sizeof a->trace_id));
    json_object_set_new(o, "suppressed", json_integer((json_int_t)a->suppressed));
    return o;
}

/* One GenAI metric aggregate as a JSON object (new reference; NULL when out of memory). */
static json_t *aggregate_json(const sn_ingest_batch *b, size_t i)
{
    const sn_aggregate *g = &b->aggregates[i];
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "type", json_string("aggregate"));
    json_object_set_new(o, "sidecar_id", jstr(b->sidecar_id));
    json_object_set_new(o, "sequence", json_integer((json_int_t)b->sequence));
    json_object_set_new(o, "index", json_integer((json_int_t)i));
    json_object_set_new(o, "service", jstr(g->service));
    json_object_set_new(o, "model", jstr(g->model));
    json_object_set_new(o, "provider", jstr(g->provider));
    json_object_set_new(o, "operation", jstr(g->operation));
    json_object_set_new(o, "region", jstr(g->region));
    json_object_set_new(o, "error_type", jstr(g->error_type));
    json_object_set_new(o, "metric", json_string(sn_metric_name(g->metric)));
    json_object_set_new(o, "start_unix_nano", json_integer(g->start_unix_nano));
    json_object_set_new(o, "end_unix_nano", json_integer(g->end_unix_nano));
    json_object_set_new(o, "count", json_integer((json_int_t)g->count));
    json_object_set_new(o, "sum", jreal(g->sum));
    json_object_set_new(o, "min", jreal(g->min));
    json_object_set_new(o, "max", jreal(g->max));
    json_object_set_new(o, "error_count", json_integer((json_int_t)g->error_count));
    json_object_set_new(o, "cost_usd", jreal(g->cost_usd));
    return o;
}

/* Writes one object as a line and releases it. Returns 0 or -EIO / -ENOMEM. */
static int write_line(FILE *f, json_t *o)
{
    if (o == NULL)
        return -ENOMEM;
    int rc = json_dumpf(o, f, JSON_COMPACT) == 0 && fputc('\n', f) != EOF ? 0 : -EIO;
    json_decref(o);
    return rc;
}

/* Appends a batch line, then one line per event and per alert (but the alerts skip[] marks:
 * copies of alerts applied before; skip may be NULL), and flushes. Alerts ahead of their batch
 * (sequence 0) have no batch line: only their alert lines, with sequence 0. */
static int log_batch(FILE *f, const sn_ingest_batch *b, const bool *skip)
{
    json_t *o = b->sequence > 0 ? json_object() : NULL;
    if (o != NULL) {
        json_object_set_new(o, "type", json_string("batch"));
        json_object_set_new(o, "sidecar_id", jstr(b->sidecar_id));
        json_object_set_new(o, "sequence", json_integer((json_int_t)b->sequence));
        json_object_set_new(o, "created_unix_nano", json_integer(b->created_unix_nano));
        json_object_set_new(o, "dropped_events", json_integer((json_int_t)b->dropped_events));
        json_object_set_new(o, "events", json_integer((json_int_t)b->nevents));
        size_t nalerts = 0;
        for (size_t i = 0; i < b->nalerts; i++)
            nalerts += skip == NULL || !skip[i];
        json_object_set_new(o, "alerts", json_integer((json_int_t)nalerts));
        json_object_set_new(o, "aggregates", json_integer((json_int_t)b->naggregates));
    }
    int rc = b->sequence > 0 ? write_line(f, o) : 0;
    for (size_t i = 0; rc == 0 && i < b->nevents; i++)
        rc = write_line(f, event_json(b, i));
    for (size_t i = 0; rc == 0 && i < b->nalerts; i++)
        if (skip == NULL || !skip[i])
            rc = write_line(f, alert_json(b, i));
    for (size_t i = 0; rc == 0 && i < b->naggregates; i++)
        rc = write_line(f, aggregate_json(b, i));
    if (rc == 0 && fflush(f) != 0)
        rc = -EIO;
    return rc;
}

/* ---- applying batches on the loop ------------------------------------------------------------ */

/* Engine callback (loop thread): an anomaly becomes or updates an alert. */
static void on_anomaly(const sn_anomaly *an, void *ud)
{
    aggregator *a = ud;
    if (a->shared != NULL) {
        /* Several replicas: silence checks are the leader's; an alert belongs to the replica
         * holding its de-dup key (fail open: a Redis error raises it here). */
        if (a->in_tick && !sn_shared_is_leader(a->shared)) {
            a->tick_anomalies_skipped++;
            return;
        }
        if (sn_shared_alert_claim(a->shared, an->service, an->model,
                                  sn_anomaly_type_name(an->anomaly_type),
                                  a->set->dedup_window_ns) == 0)
            return;
    }
    a->anomalies++;
    int64_t now = now_ns();
    sn_agg_metrics_anomaly(a->agg_metrics, an, now);
    int rc = sn_alerts_observe(a->alerts, an, now);
    if (rc != 0)
        sn_log_warn("anomaly not turned into an alert", SN_LOG_ERRNO(rc),
                    SN_LOG_STR("anomaly_type", sn_anomaly_type_name(an->anomaly_type)));
}

static const char *const change_names[] = {"fired", "updated", "escalated", "resolved"};

/* Alert lifecycle callback (loop thread): persist the alert and say so on the log, one JSON line
 * per change (what `make demo` shows). */
static void on_alert_change(sn_alert_change change, const sn_alert *al, void *ud)
{
    aggregator *a = ud;
    if (sn_store_alert_upsert(a->store, al) != 0) {
        a->store_errors++;
        sn_log_error("cannot store an alert", SN_LOG_STR("alert_id", al->alert_id),
                     SN_LOG_STR("error", sn_store_errmsg(a->store)));
    }
    /* Queued in the same transaction as the alert (the caller commits), so a restart can lose
     * neither; the workers are woken after the commit. */
    if (a->deliver != NULL &&
        sn_deliver_enqueue(a->deliver, a->store, change, al, now_ns(), NULL) < 0)
        sn_log_error("cannot queue an alert for delivery", SN_LOG_STR("alert_id", al->alert_id),
                     SN_LOG_STR("error", sn_store_errmsg(a->store)));
    sn_log_level lvl = change == SN_ALERT_CHANGE_UPDATED ? SN_LOG_DEBUG : SN_LOG_WARN;
    sn_log(lvl, "alert", SN_LOG_STR("change", change_names[change]),
           SN_LOG_STR("status", al->status == SN_ALERT_FIRING ? "firing" : "resolved"),
           SN_LOG_STR("alert_id", al->alert_id),
           SN_LOG_STR("anomaly_type", sn_anomaly_type_name(al->anomaly_type)),
           SN_LOG_STR("severity", sn_severity_name(al->severity)),
           SN_LOG_STR("service", al->service), SN_LOG_STR("model", al->model),
           SN_LOG_STR("metric", sn_metric_name(al->metric)), SN_LOG_DBL("value", al->value),
           SN_LOG_DBL("baseline", al->baseline), SN_LOG_DBL("threshold", al->threshold),
           SN_LOG_STR("detection_method", sn_detector_name(al->method)),
           SN_LOG_DBL("confidence", al->confidence), SN_LOG_UINT("occurrences", al->occurrences),
           SN_LOG_STR("source", al->source == SN_SOURCE_SIDECAR ? "sidecar" : "aggregator"),
           SN_LOG_STR("root_cause", al->root_cause));
    sn_live_publish(a->live, change, al);
}

/* How a local alert of a batch stands in Redis (shared state) while the batch is applied. */
typedef enum lalert_claim {
    LALERT_UNCLAIMED = 0, /* no claim of ours: no Redis, a copy, or Redis failed (fail open) */
    LALERT_CLAIMED,       /* claimed as applied (a copy in its batch) */
    LALERT_PENDING        /* claimed pending (a copy ahead of its batch): confirm or release */
} lalert_claim;

#define LALERT_TTL_NS ((int64_t)SN_STORE_LAID_DAYS * 86400 * SN_NS_PER_SEC)

/* Gives back the Redis claims in claim[] (a batch not applied), so its resend can claim them. */
static void release_alert_claims(aggregator *a, const sn_ingest_batch *b, uint8_t *claim)
{
    for (size_t i = 0; i < b->nalerts; i++) {
        if (claim[i] != LALERT_UNCLAIMED)
            (void)sn_shared_local_alert_release(a->shared, b->alerts[i].alert_id,
                                                claim[i] == LALERT_PENDING);
        claim[i] = LALERT_UNCLAIMED;
    }
}

/* Loop thread: marks in skip[] the local alerts of b whose alert_id was applied before (a copy:
 * every local alert comes ahead of its batch, sequence 0, and in it) -- by this replica (the
 * store) or, with Redis, by any replica: there each other alert is claimed in one atomic round
 * trip (claim[] says which; a copy ahead of its batch as pending). A store or Redis error is
 * logged or counted and the alert taken as new (applying a copy twice beats losing an alert).
 * Returns how many are marked, or -EAGAIN (claims given back) when a copy ahead of its batch is
 * being judged on another replica: answered RETRY_AFTER, its outcome decides the resend. */
static int mark_alert_copies(aggregator *a, const sn_ingest_batch *b, bool *skip, uint8_t *claim)
{
    int n = 0;
    for (size_t i = 0; i < b->nalerts; i++) {
        const char *id = b->alerts[i].alert_id;
        claim[i] = LALERT_UNCLAIMED;
        int seen = id[0] != '\0' ? sn_store_local_alert_seen(a->store, id) : 0;
        if (seen < 0)
            sn_log_error("cannot look up a local alert id", SN_LOG_STR("alert_id", id),
                         SN_LOG_STR("error", sn_store_errmsg(a->store)));
        if (seen != 1 && id[0] != '\0' && a->shared != NULL) {
            bool ahead = b->sequence == 0;
            int c = sn_shared_local_alert_claim(a->shared, id, ahead, LALERT_TTL_NS);
            if (c == 2) {
                release_alert_claims(a, b, claim);
                return -EAGAIN;
            }
            seen = c == 0; /* another replica's copy */
            if (c == 1)
                claim[i] = ahead ? LALERT_PENDING : LALERT_CLAIMED;
        }
        skip[i] = seen == 1;
        n += skip[i];
    }
    return n;
}

/* Loop thread, in the batch's transaction: judges local alert i of b (not a copy) and records
 * its alert_id as applied -- except for an alert ahead of its batch (sequence 0) that the
 * engine did not confirm: judged before its batch's events were observed, it is judged again
 * (and counted, sn_engine_local_alert_ahead) when the batch brings it, so its pending claim in
 * Redis is released; a confirmed one's is made an applied claim. Returns whether the alert
 * counts as applied (false for that unconfirmed early copy). */
static bool apply_local_alert(aggregator *a, const sn_ingest_batch *b, size_t i, uint8_t *claim,
                              int64_t now)
{
    const sn_local_alert *al = &b->alerts[i];
    int emitted = b->sequence == 0 ? sn_engine_local_alert_ahead(a->engine, al, now, on_anomaly, a)
                                   : sn_engine_local_alert(a->engine, al, now, on_anomaly, a);
    if (b->sequence == 0 && emitted == 0) {
        if (claim[i] == LALERT_PENDING)
            (void)sn_shared_local_alert_release(a->shared, al->alert_id, true);
        claim[i] = LALERT_UNCLAIMED;
        return false;
    }
    if (al->alert_id[0] == '\0')
        return true;
    if (claim[i] == LALERT_PENDING &&
        sn_shared_local_alert_confirm(a->shared, al->alert_id, LALERT_TTL_NS) == 0)
        sn_log_warn("the Redis claim of a local alert ahead of its batch expired before it was "
                    "confirmed; its batch copy may be applied again elsewhere",
                    SN_LOG_STR("alert_id", al->alert_id));
    /* settled: the claim stays even if the batch's commit fails after this -- the engine has
     * emitted the alert, so its resend must skip this copy, not apply it again */
    claim[i] = LALERT_UNCLAIMED;
    if (sn_store_local_alert_claim(a->store, al->alert_id, now) < 0) {
        a->store_errors++;
        sn_log_error("cannot store a local alert id", SN_LOG_STR("alert_id", al->alert_id),
                     SN_LOG_STR("error", sn_store_errmsg(a->store)));
    }
    return true;
}

/* Writes b to debug.event_log without the alerts marked in skip. Returns 0 or the error. */
static int log_marked(aggregator *a, const sn_ingest_batch *b, const bool *skip)
{
    int rc = log_batch(a->event_log, b, skip);
    if (rc != 0)
        sn_log_error("cannot write the event log", SN_LOG_STR("path", a->set->event_log),
                     SN_LOG_ERRNO(rc));
    return rc;
}

/* apply_on_loop's work once the alert copies are marked in skip[]. A batch is logged (with
 * debug.event_log) before it is applied; alerts ahead of their batch (sequence 0) after, without
 * the ones not applied (those are logged with their batch). */
static int apply_marked(aggregator *a, const sn_ingest_batch *b, bool *skip, uint8_t *claim,
                        int64_t now)
{
    int rc;
    if (a->event_log != NULL && b->sequence > 0 && (rc = log_marked(a, b, skip)) != 0)
        return rc;
    rc = sn_store_begin(a->store);
    if (rc != 0) {
        sn_log_error("cannot begin a store transaction",
                     SN_LOG_STR("error", sn_store_errmsg(a->store)));
        return rc;
    }
    /* the whole batch at once: with many keys the engine loads pairs a few events ahead */
    sn_engine_observe_batch(a->engine, b->events, b->nevents, on_anomaly, a);
    for (size_t i = 0; i < b->nevents; i++) {
        if (a->recent != NULL)
            sn_recent_add_event(a->recent, &b->events[i]);
        if (a->bshare != NULL)
            sn_bshare_touch(a->bshare, b->events[i].service, b->events[i].model);
    }
    size_t applied = 0;
    for (size_t i = 0; i < b->nalerts; i++) {
        if (skip[i])
            continue;
        bool ok = apply_local_alert(a, b, i, claim, now);
        applied += ok;
        if (b->sequence == 0)
            skip[i] = !ok;
    }
    for (size_t i = 0; i < b->naggregates; i++)
        sn_engine_aggregate(a->engine, &b->aggregates[i], on_anomaly, a);
    rc = b->sequence > 0 ? sn_store_seq_put(a->store, b->sidecar_id, b->sequence, now) : 0;
    if (rc == 0)
        rc = sn_store_commit(a->store);
    if (rc == 0 && a->deliver != NULL)
        sn_deliver_kick(a->deliver); /* what the batch queued is durable now */
    if (rc != 0) {
        /* The detection already happened; only the persistence failed. Counted and logged:
         * refusing the batch now would apply its events twice when the sidecar resends. */
        a->store_errors++;
        sn_log_error("cannot commit a batch's state", SN_LOG_STR("sidecar_id", b->sidecar_id),
                     SN_LOG_STR("error", sn_store_errmsg(a->store)));
        sn_store_rollback(a->store);
    }
    a->batches += b->sequence > 0;
    a->events += b->nevents;
    a->local_alerts += applied;
    if (b->sequence == 0)
        a->local_alerts_ahead += applied;
    if (a->event_log != NULL && b->sequence == 0)
        (void)log_marked(a, b, skip); /* applied already: a resend would find copies */
    sn_agg_metrics_batch(a->agg_metrics, (double)(now_ns() - now) / 1e9);
    return 0;
}

/* Loop thread: applies one batch -- detection on every event and local alert (each alert_id
 * once, whichever copy comes first), the alerts that follow, the applied alert ids and the
 * sidecar's sequence (not for sequence 0: alerts ahead of their batch) stored in one transaction
 * (and, with debug.event_log, the batch logged, without the alert copies). Returns 0, -EALREADY
 * for an alert-only batch whose every alert was applied before, -EAGAIN (RETRY_AFTER) when a
 * copy of one of its alerts is being judged ahead of its batch on another replica, or a
 * negative errno (answered INTERNAL, so the sidecar resends). */
static int apply_on_loop(aggregator *a, const sn_ingest_batch *b)
{
    int64_t now = now_ns();
    bool skip_one, *skip = &skip_one;
    uint8_t claim_one = 0, *claim = &claim_one;
    if (b->nalerts > 1) {
        /* one block: the flags, then the claims -- zeroed: a refusal part way through
         * (mark_alert_copies stops at the first copy pending elsewhere) releases every claim
         * set, so the ones after it must read as "not claimed" */
        skip = calloc(b->nalerts, sizeof *skip + sizeof *claim);
        if (skip == NULL)
            return -ENOMEM;
        claim = (uint8_t *)(skip + b->nalerts);
    }
    int copies = mark_alert_copies(a, b, skip, claim);
    int rc = copies < 0 ? copies : apply_marked(a, b, skip, claim, now);
    if (rc != 0 && copies >= 0)
        /* not applied: the resend claims them again (alerts already emitted stay claimed) */
        release_alert_claims(a, b, claim);
    if (skip != &skip_one)
        free(skip);
    if (rc != 0)
        return rc;
    a->local_alert_copies += (uint64_t)copies;
    if (b->sequence == 0 && (size_t)copies == b->nalerts)
        return -EALREADY;
    return 0;
}

/* ---- baseline snapshots ------------------------------------------------------------------------
 */

/* Engine snapshot callback: stores a key's blob, or deletes the snapshot of a dropped key. */
static int snapshot_write(const char *key, const void *blob, size_t len, void *ud)
{
    aggregator *a = ud;
    if (blob == NULL) {
        a->snap_deleted++;
        return sn_store_baseline_delete(a->store, key);
    }
    a->snap_written++;
    return sn_store_baseline_put(a->store, key, blob, len, now_ns());
}

/* Store visitor after the engine's dropped-key queue overflowed: deletes every snapshot of a
 * key the engine no longer holds. */
static int snapshot_reconcile(const char *key, const void *blob, size_t len, int64_t updated_ns,
                              void *ud)
{
    (void)blob, (void)len, (void)updated_ns;
    aggregator *a = ud;
    if (sn_engine_snapshot_live(a->engine, key))
        return 0;
    a->snap_deleted++;
    return sn_store_baseline_delete(a->store, key);
}

/* Writes at most max_keys changed baselines (0: all) and pending deletions in one transaction.
 * Returns 1 when nothing is left to write, 0 when more remains, -1 after a failure (logged; the
 * transaction is rolled back and the next round rewrites every key, since the engine already
 * counted the failed ones as written). */
static int snapshot_step(aggregator *a, size_t max_keys)
{
    if (sn_store_begin(a->store) != 0) {
        a->snap_failures++;
        sn_log_error("cannot begin a snapshot", SN_LOG_STR("error", sn_store_errmsg(a->store)));
        return -1;
    }
    sn_engine_snapshot_result res;
    int rc = sn_engine_snapshot(a->engine, a->snap_force_all, max_keys, snapshot_write, a, &res);
    a->snap_force_all = false;
    if (rc == 0 && res.lost_drops) {
        sn_log_warn("baseline snapshot: too many keys dropped at once; checking every stored key");
        rc = sn_store_baseline_foreach(a->store, NULL, snapshot_reconcile, a);
    }
    if (rc == 0)
        rc = sn_store_commit(a->store);
    if (rc != 0) {
        sn_log_error(
            "cannot write the baseline snapshot",
            SN_LOG_STR("error", rc == -ENOMEM ? "out of memory" : sn_store_errmsg(a->store)));
        sn_store_rollback(a->store);
        a->snap_failures++;
        a->snap_force_all = true;
        a->snap_written = a->snap_deleted = 0;
        return -1;
    }
    return res.complete ? 1 : 0;
}

/* ---- budget spend (saved with every snapshot round, restored at start) ---------------------- */

static int budget_write(const sn_engine_budget *b, void *ud)
{
    aggregator *a = ud;
    sn_store_budget row = {.rule_service = b->rule_service,
                           .period = sn_period_name(b->period),
                           .per_user = b->per_user,
                           .service = b->service,
                           .user = b->user,
                           .period_index = b->period_index,
                           .spent = b->spent,
                           .soft_fired = b->soft_fired,
                           .hard_fired = b->hard_fired,
                           .updated_ns = now_ns()};
    return sn_store_budget_put(a->store, &row);
}

/* Writes the budget states that spent since the last call, in one transaction (a failure is
 * logged and the next call writes them all). */
static void budgets_save(aggregator *a)
{
    if (sn_engine_get_config(a->engine)->budgets.count == 0 && !a->budgets_force_all)
        return;
    int rc = sn_store_begin(a->store);
    if (rc == 0)
        rc = sn_engine_budgets_export(a->engine, a->budgets_force_all, budget_write, a);
    if (rc == 0)
        rc = sn_store_commit(a->store);
    a->budgets_force_all = rc != 0;
    if (rc != 0) {
        sn_log_error("cannot save the budget spend",
                     SN_LOG_STR("error", sn_store_errmsg(a->store)));
        sn_store_rollback(a->store);
    }
}

typedef struct budget_counts {
    aggregator *a;
    int64_t now;
    uint64_t restored, other_period, no_rule, failed;
} budget_counts;

static int budget_restore(const sn_store_budget *row, void *ud)
{
    budget_counts *c = ud;
    int p = 0;
    while (p <= SN_PERIOD_MONTH && strcmp(sn_period_name((sn_period)p), row->period) != 0)
        p++;
    sn_engine_budget b = {.rule_service = row->rule_service,
                          .period = (sn_period)p,
                          .per_user = row->per_user,
                          .service = row->service,
                          .user = row->user,
                          .period_index = row->period_index,
                          .spent = row->spent,
                          .soft_fired = row->soft_fired,
                          .hard_fired = row->hard_fired};
    int rc = p <= SN_PERIOD_MONTH ? sn_engine_budget_restore(c->a->engine, &b, c->now) : -ENOENT;
    if (rc == 0)
        c->restored++;
    else if (rc == -ESTALE)
        c->other_period++;
    else if (rc == -ENOENT)
        c->no_rule++;
    else
        c->failed++;
    return 0;
}

/* At start, before ingest: the spend of the current periods comes back (rows of periods that
 * are over, or of rules that no longer exist, are not restored; rows not written for 32 days
 * are deleted). */
static void restore_budgets(aggregator *a)
{
    budget_counts c = {.a = a, .now = now_ns()};
    uint64_t purged = 0;
    int rc = sn_store_budget_purge(a->store, c.now - INT64_C(32) * 86400 * SN_NS_PER_SEC, &purged);
    if (rc == 0)
        rc = sn_store_budget_foreach(a->store, budget_restore, &c);
    if (rc != 0)
        sn_log_error("cannot read the budget spend",
                     SN_LOG_STR("error", sn_store_errmsg(a->store)));
    if (c.restored + c.other_period + c.no_rule + c.failed + purged > 0)
        sn_log_info("budget spend restored", SN_LOG_UINT("budgets", c.restored),
                    SN_LOG_UINT("other_period", c.other_period),
                    SN_LOG_UINT("without_rule", c.no_rule), SN_LOG_UINT("failed", c.failed),
                    SN_LOG_UINT("purged", purged));
}

/* With Redis, once a second: what each budget state spent since its last sync is added to the
 * shared total of its period, and the total becomes its spend (at most BUDGET_SYNC_MAX states
 * a second; the rest wait). Redis down: each replica keeps counting its own spend. */
#define BUDGET_SYNC_MAX 64
#define BUDGET_KEY_MAX  (3 * SN_NAME_MAX + 96)

static void budgets_sync(aggregator *a)
{
    static sn_engine_budget_sync items[BUDGET_SYNC_MAX];
    static char text[BUDGET_SYNC_MAX][BUDGET_KEY_MAX];
    const char *keys[BUDGET_SYNC_MAX];
    double delta[BUDGET_SYNC_MAX], totals[BUDGET_SYNC_MAX];
    int64_t ttl[BUDGET_SYNC_MAX];
    size_t n = sn_engine_budgets_sync_collect(a->engine, BUDGET_SYNC_MAX, items);
    if (n == 0)
        return;
    int64_t now = now_ns();
    for (size_t i = 0; i < n; i++) {
        const sn_engine_budget *b = &items[i].b;
        /* Lengths make the key unambiguous whatever the names hold. */
        snprintf(text[i], sizeof text[i], "%s:%d:%" PRId64 ":%zu:%s%zu:%s%s",
                 sn_period_name(b->period), b->per_user ? 1 : 0, b->period_index,
                 strlen(b->rule_service), b->rule_service, strlen(b->service), b->service, b->user);
        keys[i] = text[i];
        delta[i] = items[i].delta;
        /* the period, plus a day for clocks and late events */
        ttl[i] = sn_period_start_ns(b->period, b->period_index + 1) - now +
                 INT64_C(86400) * SN_NS_PER_SEC;
    }
    if (sn_shared_budget_add(a->shared, n, keys, delta, ttl, totals) != 0)
        return; /* fail open (counted): the states stay unsynced and are added next time */
    for (size_t i = 0; i < n; i++)
        sn_engine_budgets_sync_apply(a->engine, &items[i], totals[i]);
}

/* Ends a snapshot round: totals and one log line. */
static void snapshot_done(aggregator *a, int64_t now, const char *why)
{
    budgets_save(a);
    a->snap_written_total += a->snap_written;
    a->snap_deleted_total += a->snap_deleted;
    if (a->snap_written > 0 || a->snap_deleted > 0 || strcmp(why, "shutdown") == 0) {
        sn_engine_stats es;
        sn_engine_get_stats(a->engine, &es);
        sn_log_info("baselines snapshot written", SN_LOG_STR("when", why),
                    SN_LOG_UINT("written", a->snap_written),
                    SN_LOG_UINT("deleted", a->snap_deleted), SN_LOG_UINT("keys", es.keys),
                    SN_LOG_DBL("seconds", (double)(now_ns() - a->snap_started_ns) / 1e9));
    }
    a->snap_written = a->snap_deleted = 0;
    a->snap_started_ns = 0;
    a->next_snapshot_ns = now + a->set->snapshot_interval_ns;
}

/* Loop tick: every snapshot_interval a round starts; each tick writes at most snapshot_batch
 * keys until the round is complete, so a large table never stalls the loop. */
static void snapshot_tick(aggregator *a, int64_t now)
{
    if (a->snap_started_ns == 0) {
        if (now < a->next_snapshot_ns)
            return;
        a->snap_started_ns = now_ns();
    }
    int rc = snapshot_step(a, (size_t)a->set->snapshot_batch);
    if (rc < 0) {
        a->snap_started_ns = 0;
        a->next_snapshot_ns = now + a->set->snapshot_interval_ns;
    } else if (rc == 1) {
        snapshot_done(a, now, "interval");
    }
}

/* At shutdown, after the last batch: every changed key, whatever the batch size. */
static void snapshot_final(aggregator *a)
{
    if (a->engine == NULL || a->store == NULL)
        return;
    if (a->snap_started_ns == 0)
        a->snap_started_ns = now_ns();
    if (snapshot_step(a, 0) == 1)
        snapshot_done(a, now_ns(), "shutdown");
    else
        budgets_save(a);
}

/* Store visitor at start: restores one key, counting the outcome; never stops the walk. */
typedef struct restore_counts {
    aggregator *a;
    uint64_t restored, upgraded, corrupt, incompatible, other;
} restore_counts;

static int restore_baseline(const char *key, const void *blob, size_t len, int64_t updated_ns,
                            void *ud)
{
    (void)updated_ns;
    restore_counts *c = ud;
    int rc = sn_engine_restore(c->a->engine, key, blob, len);
    if (rc >= 0) {
        c->restored++;
        c->upgraded += rc == 1;
        return 0;
    }
    uint64_t *n = rc == -EBADMSG ? &c->corrupt : rc == -EPROTO ? &c->incompatible : &c->other;
    if (++*n <= 5) /* a few examples; the counts say the rest */
        sn_log_warn("baseline snapshot skipped", SN_LOG_STR("key", key), SN_LOG_ERRNO(rc));
    return 0;
}

/* Restores every stored baseline into the engine (before ingest starts). Snapshots that were
 * skipped stay in the store until the key is written again or dropped. */
static void restore_baselines(aggregator *a)
{
    restore_counts c = {.a = a};
    int64_t t0 = now_ns();
    int rc = sn_store_baseline_foreach(a->store, NULL, restore_baseline, &c);
    if (rc != 0)
        sn_log_error("cannot read the baseline snapshots",
                     SN_LOG_STR("error", sn_store_errmsg(a->store)));
    sn_log_info("baselines restored", SN_LOG_UINT("keys", c.restored),
                SN_LOG_UINT("from_older_format", c.upgraded), SN_LOG_UINT("corrupt", c.corrupt),
                SN_LOG_UINT("incompatible", c.incompatible), SN_LOG_UINT("failed", c.other),
                SN_LOG_DBL("seconds", (double)(now_ns() - t0) / 1e9));
    a->next_snapshot_ns = now_ns() + a->set->snapshot_interval_ns;
}

/* Loop thread, every second: silence-driven detection, alerts going quiet, daily purge. */
static void on_tick(uv_timer_t *t)
{
    aggregator *a = t->data;
    int64_t now = now_ns();
    if (a->shared != NULL)
        (void)sn_shared_lease_tick(a->shared); /* logs changes; is_leader says the outcome */
    if (sn_store_begin(a->store) != 0)
        return;
    a->in_tick = true;
    sn_engine_tick(a->engine, now, on_anomaly, a);
    a->in_tick = false;
    sn_alerts_tick(a->alerts, now);
    if (a->agg_metrics != NULL && a->ingest != NULL) {
        sn_ingest_stats ist;
        sn_engine_stats est;
        sn_alerts_stats ast;
        sn_ingest_stats_get(a->ingest, &ist);
        sn_engine_get_stats(a->engine, &est);
        sn_alerts_stats_get(a->alerts, &ast);
        sn_agg_metrics_refresh(a->agg_metrics, &ist, &est, &ast, a->store_errors);
    }
    if (now >= a->next_purge_ns) {
        sn_store_purged purged;
        if (sn_store_purge(a->store, now, (unsigned)a->set->retention_days, &purged) != 0)
            sn_log_error("purge failed", SN_LOG_STR("error", sn_store_errmsg(a->store)));
        a->next_purge_ns = now + INT64_C(24) * 3600 * SN_NS_PER_SEC;
    }
    if (a->deliver != NULL)
        sn_deliver_kick(a->deliver);
    if (sn_store_commit(a->store) != 0) {
        a->store_errors++;
        sn_log_error("cannot commit the tick's state",
                     SN_LOG_STR("error", sn_store_errmsg(a->store)));
        sn_store_rollback(a->store);
    }
    snapshot_tick(a, now);
    if (a->bshare != NULL)
        sn_bshare_tick(a->bshare, mono_ns());
    if (a->shared != NULL && a->set->redis_share_budgets)
        budgets_sync(a);
}

/* Loop thread: takes every queued batch (libuv coalesces wake-ups) and applies each. */
static void on_wake(uv_async_t *h)
{
    aggregator *a = h->data;
    pthread_mutex_lock(&a->mu);
    pending_apply *p = a->q_head;
    a->q_head = a->q_tail = NULL;
    a->q_len = 0;
    for (pending_apply *x = p; x != NULL; x = x->next)
        x->state = APPLY_TAKEN;
    pthread_mutex_unlock(&a->mu);

    while (p != NULL) {
        pending_apply *next = p->next; /* p is gone once marked done */
        int rc = apply_on_loop(a, p->batch);
        pthread_mutex_lock(&a->mu);
        p->rc = rc;
        p->state = APPLY_DONE;
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
        p = next;
    }
}

/* Ingest handler thread: hands the batch to the loop and waits until it was applied, or until
 * ingest.apply_timeout passed while it was still queued (then it is taken back: -EAGAIN). */
static int apply_from_ingest(const sn_ingest_batch *b, void *ud)
{
    aggregator *a = ud;
    pending_apply p = {.batch = b, .state = APPLY_QUEUED, .rc = 0, .next = NULL};
    if (a->set->ingest_delay_ns > 0 && b->sequence > 0) {
        struct timespec d = {(time_t)(a->set->ingest_delay_ns / SN_NS_PER_SEC),
                             (long)(a->set->ingest_delay_ns % SN_NS_PER_SEC)};
        while (nanosleep(&d, &d) != 0 && errno == EINTR) {
        }
    }

    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    int64_t ns = until.tv_nsec + a->set->apply_timeout_ns % SN_NS_PER_SEC;
    until.tv_sec += (time_t)(a->set->apply_timeout_ns / SN_NS_PER_SEC + ns / SN_NS_PER_SEC);
    until.tv_nsec = (long)(ns % SN_NS_PER_SEC);

    pthread_mutex_lock(&a->mu);
    if (a->q_len >= SN_APPLY_QUEUE_MAX) {
        pthread_mutex_unlock(&a->mu);
        return -EAGAIN;
    }
    bool was_empty = a->q_head == NULL;
    if (a->q_tail != NULL)
        a->q_tail->next = &p;
    else
        a->q_head = &p;
    a->q_tail = &p;
    a->q_len++;
    pthread_mutex_unlock(&a->mu);
    if (was_empty) /* otherwise a wake-up is already pending and drains the whole queue */
        uv_async_send(&a->wake);

    pthread_mutex_lock(&a->mu);
    while (p.state != APPLY_DONE) {
        if (p.state == APPLY_TAKEN) {
            pthread_cond_wait(&a->cv, &a->mu); /* being applied: always wait for the outcome */
            continue;
        }
        if (pthread_cond_timedwait(&a->cv, &a->mu, &until) == ETIMEDOUT &&
            p.state == APPLY_QUEUED) {
            /* Take it back: the loop has not seen it and never will. */
            pending_apply **link = &a->q_head, *prev = NULL;
            while (*link != &p) {
                prev = *link;
                link = &(*link)->next;
            }
            *link = p.next;
            if (a->q_tail == &p)
                a->q_tail = prev;
            a->q_len--;
            pthread_mutex_unlock(&a->mu);
            sn_log_warn("batch not applied in time; answered RETRY_AFTER",
                        SN_LOG_STR("sidecar_id", b->sidecar_id),
                        SN_LOG_UINT("sequence", b->sequence));
            return -EAGAIN;
        }
    }
    pthread_mutex_unlock(&a->mu);
    return p.rc;
}

/* Ingest handler thread, with shared state: claims the batch's sequence in Redis first (one
 * round trip), so a batch another replica already applied is answered DUPLICATE (-EALREADY) and
 * one in flight there RETRY_AFTER (-EAGAIN); after the apply the claim is committed (the
 * applied sequence raised) or, when the batch was not applied, released. Redis unreachable:
 * fails open to the local de-duplication table (counted). */
static int apply_claimed(const sn_ingest_batch *b, void *ud)
{
    aggregator *a = ud;
    if (b->sequence == 0)
        return apply_from_ingest(b, ud); /* alerts ahead of their batch: no sequence to claim */
    uint64_t applied = 0;
    int claim = sn_shared_seq_claim(a->shared, b->sidecar_id, b->sequence, &applied);
    if (claim == 1)
        return -EALREADY;
    if (claim == 2)
        return -EAGAIN;
    int rc = apply_from_ingest(b, ud);
    if (claim == 0) {
        if (rc == 0)
            (void)sn_shared_seq_commit(a->shared, b->sidecar_id, b->sequence);
        else
            (void)sn_shared_seq_release(a->shared, b->sidecar_id, b->sequence);
    }
    return rc;
}

/* ---- shutdown
 * ------------------------------------------------------------------------------------ */

/* Thread pool: stops the ingest service; its calls in flight still need the loop. */
static void stop_ingest(uv_work_t *w)
{
    aggregator *a = w->data;
    /* Off the loop: both wait for requests that may need the loop to answer. */
    if (a->api != NULL)
        sn_api_stop(a->api);
    sn_ingest_shutdown(a->ingest, (uint32_t)(a->set->shutdown_grace_ns / SN_NS_PER_MS));
}

/* Loop thread: ingest has stopped; apply what is left and let the loop end. */
static void stopped_ingest(uv_work_t *w, int status)
{
    (void)status;
    aggregator *a = w->data;
    on_wake(&a->wake);
    snapshot_final(a);
    if (a->loop_call != NULL)
        sn_loop_call_close(a->loop_call);
    uv_close((uv_handle_t *)&a->tick, NULL);
    uv_close((uv_handle_t *)&a->wake, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
}

/* Loop thread: SIGTERM or SIGINT starts the graceful shutdown once. */
static void on_signal(uv_signal_t *h, int signum)
{
    aggregator *a = h->data;
    if (a->stopping)
        return;
    a->stopping = true;
    sn_log_info("shutting down", SN_LOG_STR("signal", signum == SIGTERM ? "SIGTERM" : "SIGINT"));
    uv_signal_stop(&a->sigterm);
    uv_signal_stop(&a->sigint);
    a->stop_work.data = a;
    int rc = uv_queue_work(&a->loop, &a->stop_work, stop_ingest, stopped_ingest);
    if (rc != 0) { /* no thread pool: stop inline (calls in flight are then cancelled) */
        sn_ingest_shutdown(a->ingest, 0);
        stopped_ingest(&a->stop_work, rc);
    }
}

/* ---- main
 * ------------------------------------------------------------------------------------------ */

/* Opens the event log for appending. Returns 0, or 2 after logging a config error. */
static int open_event_log(aggregator *a)
{
    if (a->set->event_log[0] == '\0')
        return 0;
    a->event_log = fopen(a->set->event_log, "a");
    if (a->event_log == NULL) {
        int e = errno;
        sn_log_error("config: debug.event_log: cannot open the file",
                     SN_LOG_STR("path", a->set->event_log), SN_LOG_ERRNO(e));
        return 2;
    }
    return 0;
}

static int import_sequence(const char *sidecar_id, uint64_t seq, int64_t last_seen_ns, void *ud)
{
    aggregator *a = ud;
    return sn_ingest_sequences_import(a->ingest, sidecar_id, seq, last_seen_ns);
}

static int restore_alert(const sn_alert *al, void *ud)
{
    aggregator *a = ud;
    return sn_alerts_restore(a->alerts, al);
}

static void random_bytes(uint8_t out[16], void *ud)
{
    (void)ud;
    if (getrandom(out, 16, 0) != 16) {
        uint64_t x = (uint64_t)now_ns() * 0x9E3779B97F4A7C15ull;
        memcpy(out, &x, 8);
        x ^= (uint64_t)(uintptr_t)out;
        memcpy(out + 8, &x, 8);
    }
}

/* ---- the REST API's view of the loop's state (called on the loop through sn_loop_call) ---- */

typedef struct baseline_query {
    aggregator *a;
    const char *service, *model, *metric;
    json_t *list;
} baseline_query;

static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static int visit_baseline(const sn_baseline_entry *e, void *arg)
{
    baseline_query *q = arg;
    const char *svc = sn_baseline_entry_service(e), *mdl = sn_baseline_entry_model(e);
    const char *met = sn_metric_name(sn_baseline_entry_metric(e));
    if ((q->service != NULL && strcmp(q->service, svc) != 0) ||
        (q->model != NULL && strcmp(q->model, mdl) != 0) ||
        (q->metric != NULL && strcmp(q->metric, met) != 0))
        return 0;
    if (json_array_size(q->list) >= 1000)
        return 1; /* bounded answer */
    /* With shared baselines, the merged view this replica scores against (samples of every
     * replica), else the local window. */
    sn_summary sm;
    sn_engine_view view = {.replicas = 1};
    if (q->a->bshare != NULL && sn_bshare_view_get(q->a->bshare, e, &view))
        sm = view.raw;
    else
        sn_baseline_summary(sn_engine_baselines(q->a->engine), e, &sm);
    if (view.replicas == 1)
        view.local_n = sm.n;
    char last[40] = "";
    sn_alert_format_time(sn_baseline_entry_last_seen(e), last, sizeof last);
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
                  "s:o, s:o, s:s}",
                  "service", svc, "model", mdl, "metric", met, "samples", (json_int_t)sm.n, "seen",
                  (json_int_t)sn_baseline_entry_seen(e), "mean", jnum(sm.mean), "stddev",
                  jnum(sm.stddev), "min", jnum(sm.min), "max", jnum(sm.max), "median",
                  jnum(sm.median), "q1", jnum(sm.q1), "q3", jnum(sm.q3), "p95", jnum(sm.p95), "p99",
                  jnum(sm.p99), "mad", jnum(sm.mad), "last_seen", last);
    if (o != NULL) {
        json_object_set_new(o, "replicas", json_integer((json_int_t)view.replicas));
        json_object_set_new(o, "local_samples", json_integer((json_int_t)view.local_n));
        json_array_append_new(q->list, o);
    }
    return 0;
}

static int api_baselines(void *ud, const char *service, const char *model, const char *metric,
                         json_t **out)
{
    baseline_query q = {ud, service, model, metric, json_array()};
    if (q.list == NULL)
        return -ENOMEM;
    sn_baseline_foreach(sn_engine_baselines(q.a->engine), visit_baseline, &q);
    *out =
        json_pack("{s:o, s:I}", "baselines", q.list, "count", (json_int_t)json_array_size(q.list));
    return *out == NULL ? -ENOMEM : 0;
}

typedef struct health_query {
    const char *service;
    bool known;
    unsigned firing[SN_SEV_CRITICAL + 1];
    json_t *alerts;
} health_query;

static int visit_service_key(const sn_baseline_entry *e, void *arg)
{
    health_query *q = arg;
    if (strcmp(sn_baseline_entry_service(e), q->service) == 0) {
        q->known = true;
        return 1;
    }
    return 0;
}

static int visit_service_alert(const sn_alert *al, void *arg)
{
    health_query *q = arg;
    if (strcmp(al->service, q->service) != 0)
        return 0;
    q->known = true;
    if (al->status != SN_ALERT_FIRING)
        return 0;
    q->firing[al->severity]++;
    if (json_array_size(q->alerts) < 100)
        json_array_append_new(q->alerts, sn_alert_to_json(al));
    return 0;
}

/* Health 0-100: 100 minus a weight per firing alert (critical 40, high 20, medium 10, low 5). */
static int api_service_health(void *ud, const char *name, json_t **out)
{
    aggregator *a = ud;
    health_query q = {.service = name, .alerts = json_array()};
    if (q.alerts == NULL)
        return -ENOMEM;
    sn_alerts_foreach(a->alerts, visit_service_alert, &q);
    if (!q.known)
        sn_baseline_foreach(sn_engine_baselines(a->engine), visit_service_key, &q);
    if (!q.known) {
        json_decref(q.alerts);
        return -ENOENT;
    }
    int score = 100 - 40 * (int)q.firing[SN_SEV_CRITICAL] - 20 * (int)q.firing[SN_SEV_HIGH] -
                10 * (int)q.firing[SN_SEV_MEDIUM] - 5 * (int)q.firing[SN_SEV_LOW];
    if (score < 0)
        score = 0;
    const char *status = score >= 90 ? "healthy" : score >= 60 ? "degraded" : "unhealthy";
    *out = json_pack("{s:s, s:i, s:s, s:{s:i, s:i, s:i, s:i}, s:o}", "service", name, "health",
                     score, "status", status, "firing", "critical", (int)q.firing[SN_SEV_CRITICAL],
                     "high", (int)q.firing[SN_SEV_HIGH], "medium", (int)q.firing[SN_SEV_MEDIUM],
                     "low", (int)q.firing[SN_SEV_LOW], "alerts", q.alerts);
    return *out == NULL ? -ENOMEM : 0;
}

typedef struct summary_query {
    json_t *by_type;
    json_t *by_severity;
} summary_query;

static int visit_summary_alert(const sn_alert *al, void *arg)
{
    summary_query *q = arg;
    if (al->status != SN_ALERT_FIRING)
        return 0;
    const char *t = sn_anomaly_type_name(al->anomaly_type);
    const char *sv = sn_severity_name(al->severity);
    json_object_set_new(q->by_type, t,
                        json_integer(json_integer_value(json_object_get(q->by_type, t)) + 1));
    json_object_set_new(q->by_severity, sv,
                        json_integer(json_integer_value(json_object_get(q->by_severity, sv)) + 1));
    return 0;
}

static const char *const breaker_names[] = {"closed", "open", "half_open"};

/* Every configured sink's delivery counters, in the order they were added (new reference; an
 * empty array without sinks; NULL when out of memory). */
static json_t *sinks_json(sn_deliver *d)
{
    json_t *list = json_array();
    unsigned n = sn_deliver_sink_count(d);
    for (unsigned i = 0; list != NULL && i < n; i++) {
        const char *name = sn_deliver_sink_name(d, i);
        sn_deliver_sink_stats st;
        if (name == NULL || sn_deliver_sink_stats_get(d, name, &st) != 0)
            continue;
        unsigned b = (unsigned)st.breaker < 3 ? (unsigned)st.breaker : 0;
        json_array_append_new(
            list, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:s, s:I, s:o}", "name", name,
                            "delivered", (json_int_t)st.delivered, "failed", (json_int_t)st.failed,
                            "retried", (json_int_t)st.retried, "dead_lettered",
                            (json_int_t)st.dead_lettered, "queue_depth", (json_int_t)st.pending,
                            "breaker_open", st.breaker == SN_BREAKER_OPEN, "breaker",
                            breaker_names[b], "breaker_opened", (json_int_t)st.breaker_opened,
                            "last_error", st.last_error[0] ? jstr(st.last_error) : json_null()));
    }
    return list;
}

static int api_summary(void *ud, json_t **out)
{
    aggregator *a = ud;
    summary_query q = {json_object(), json_object()};
    sn_alerts_foreach(a->alerts, visit_summary_alert, &q);
    sn_alerts_stats as;
    sn_alerts_stats_get(a->alerts, &as);
    sn_engine_stats es;
    sn_engine_get_stats(a->engine, &es);
    sn_baseline_stats bs;
    sn_baseline_get_stats(sn_engine_baselines(a->engine), &bs);
    sn_agg_delay dl;
    sn_agg_metrics_delay(a->agg_metrics, &dl);
    *out = json_pack("{s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:o, s:o}, s:{s:I, s:I}, "
                     "s:{s:o, s:o, s:o, s:I, s:I}, s:o}",
                     "batches", (json_int_t)a->batches, "events", (json_int_t)a->events,
                     "local_alerts", (json_int_t)a->local_alerts, "anomalies",
                     (json_int_t)a->anomalies, "alerts", "firing", (json_int_t)as.firing,
                     "fired_total", (json_int_t)as.fired, "resolved_total", (json_int_t)as.resolved,
                     "firing_by_type", q.by_type, "firing_by_severity", q.by_severity, "baselines",
                     "keys", (json_int_t)bs.keys, "bytes", (json_int_t)bs.bytes_used,
                     "detection_delay_seconds", "p50", jnum(dl.p50), "p95", jnum(dl.p95), "p99",
                     jnum(dl.p99), "count", (json_int_t)dl.count, "window", (json_int_t)dl.window,
                     "sinks", sinks_json(a->deliver));
    if (*out != NULL) {
        json_object_set_new(*out, "local_alerts_ahead",
                            json_integer((json_int_t)a->local_alerts_ahead));
        json_object_set_new(*out, "local_alert_copies_skipped",
                            json_integer((json_int_t)a->local_alert_copies));
    }
    return *out == NULL ? -ENOMEM : 0;
}

/* GET /api/v1/series: the key's newest `limit` values (oldest first) and its baseline now. */
static int api_series(void *ud, const char *service, const char *model, const char *metric,
                      unsigned limit, json_t **out)
{
    aggregator *a = ud;
    sn_metric m;
    if (sn_metric_from_name(metric, &m) != 0)
        return -EINVAL;
    sn_baseline *bl = sn_engine_baselines(a->engine);
    sn_baseline_entry *e = sn_baseline_find(bl, service, model, m);
    long n = -ENOENT;
    sn_recent_point *pts = NULL;
    size_t held = a->recent != NULL ? sn_recent_points_per_key(a->recent) : 0;
    if (limit > held)
        limit = (unsigned)held;
    if (a->recent != NULL && limit > 0) {
        pts = malloc(limit * sizeof *pts);
        if (pts == NULL)
            return -ENOMEM;
        n = sn_recent_get(a->recent, service, model, m, pts, limit);
    }
    if (n < 0 && e == NULL) {
        free(pts);
        return -ENOENT;
    }
    json_t *points = json_array(), *base = json_null();
    for (long i = 0; points != NULL && i < n; i++) {
        char t[40] = "";
        sn_alert_format_time(pts[i].time_unix_nano, t, sizeof t);
        json_array_append_new(points,
                              json_pack("{s:s, s:o}", "time", t, "value", jnum(pts[i].value)));
    }
    free(pts);
    if (e != NULL) {
        sn_summary sm;
        sn_baseline_summary(bl, e, &sm);
        base = json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o}", "samples", (json_int_t)sm.n, "mean",
                         jnum(sm.mean), "stddev", jnum(sm.stddev), "median", jnum(sm.median), "q1",
                         jnum(sm.q1), "q3", jnum(sm.q3), "p95", jnum(sm.p95));
    }
    *out = json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:o}", "service", service, "model", model,
                     "metric", sn_metric_name(m), "points", points, "count",
                     (json_int_t)(n > 0 ? n : 0), "retained", (json_int_t)held, "baseline", base);
    return *out == NULL ? -ENOMEM : 0;
}

static int api_config_get(void *ud, json_t **out)
{
    aggregator *a = ud;
    *out = sn_config_dump_json(a->config);
    return *out == NULL ? -ENOMEM : 0;
}

/* ---- configuration changed through the API, kept across restarts ---------------------------- */

#define API_OVERLAY_SOURCE "api-overlay"

/* The API overlay: every setting whose value now comes from the API, as {"path": value} (lists
 * as arrays, the rest as canonical text; secrets left out). New reference, or NULL when out of
 * memory. */
static json_t *api_overlay(const sn_config *cfg, const void *target)
{
    json_t *o = json_object();
    size_t n = 0;
    const sn_config_desc *d = sn_config_descriptors(cfg, &n);
    char origin[64], text[SN_CONFIG_VALUE_MAX + 1];
    for (size_t i = 0; o != NULL && i < n; i++) {
        if ((d[i].flags & SN_CONFIG_SECRET) ||
            sn_config_origin(cfg, d[i].path, origin, sizeof origin) != SN_CONFIG_FROM_API)
            continue;
        json_t *v;
        if (d[i].type == SN_CONFIG_LIST) {
            const sn_config_list *l = (const sn_config_list *)((const char *)target + d[i].offset);
            v = json_array();
            for (uint32_t k = 0; v != NULL && k < l->count; k++)
                json_array_append_new(v, json_string(l->items[k]));
        } else {
            sn_config_format_value(&d[i], target, text, sizeof text);
            v = json_string(text);
        }
        if (v == NULL || json_object_set_new(o, d[i].path, v) != 0) {
            json_decref(o);
            o = NULL;
        }
    }
    return o;
}

/* Records the overlay (source api-overlay) so that the next start can re-apply it. */
static void api_overlay_record(aggregator *a)
{
    json_t *o = api_overlay(a->config, a->set);
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (text == NULL || sn_store_config_append(a->store, now_ns(), API_OVERLAY_SOURCE, text) != 0)
        sn_log_error(
            "cannot record the configuration changed through the API",
            SN_LOG_STR("error", text == NULL ? "out of memory" : sn_store_errmsg(a->store)));
    free(text);
    json_decref(o);
}

/* Applies a JSON object of changes atomically and validates the engine's settings as a whole,
 * then hands them to the engine when it exists. Returns 0, or -EINVAL with err filled and the
 * settings as they were. */
static int apply_changes(aggregator *a, const json_t *changes, size_t *n, sn_config_error *err)
{
    agg_settings *s = (agg_settings *)a->set;
    agg_settings before = *s;
    int rc = sn_config_apply_json(a->config, changes, n, err);
    if (rc == 0)
        rc = sn_engine_config_validate(&s->engine, "engine", err);
    if (rc == 0 && a->engine != NULL)
        rc = sn_engine_set_config(a->engine, &s->engine, err);
    if (rc != 0)
        *s = before; /* the engine refused what the config accepted: keep both as they were */
    return rc != 0 ? -EINVAL : 0;
}

typedef struct overlay_find {
    char *json; /* the newest overlay (malloc'd), or NULL */
    int64_t ts;
} overlay_find;

static int find_overlay(int64_t ts_ns, const char *source, const char *json, void *ud)
{
    overlay_find *f = ud;
    if (strcmp(source, API_OVERLAY_SOURCE) != 0)
        return 0;
    f->json = strdup(json);
    f->ts = ts_ns;
    return 1; /* newest first: done */
}

/* At start, before the engine is created: with state.reapply_api_config, the newest API overlay
 * is applied on top of file, environment and flags (atomically; refused as a whole when a value
 * no longer validates, which is logged and the file's configuration runs). Without it, a
 * non-empty overlay is replaced by an empty one, so the API's changes do not come back later. */
static void reapply_api_config(aggregator *a)
{
    overlay_find f = {NULL, 0};
    if (sn_store_config_history(a->store, 0, find_overlay, &f) < 0) {
        sn_log_error("cannot read the configuration history",
                     SN_LOG_STR("error", sn_store_errmsg(a->store)));
        return;
    }
    json_error_t jerr;
    json_t *o = f.json != NULL ? json_loads(f.json, 0, &jerr) : NULL;
    free(f.json);
    if (o == NULL || !json_is_object(o) || json_object_size(o) == 0) {
        json_decref(o);
        return;
    }
    char when[40] = "";
    sn_alert_format_time(f.ts, when, sizeof when);
    if (!a->set->reapply_api_config) {
        if (sn_store_config_append(a->store, now_ns(), API_OVERLAY_SOURCE, "{}") == 0)
            sn_log_info("configuration from the API dropped (state.reapply_api_config=false)",
                        SN_LOG_UINT("settings", json_object_size(o)), SN_LOG_STR("recorded", when));
        json_decref(o);
        return;
    }
    sn_config_error cerr = {{0}};
    size_t n = 0;
    if (apply_changes(a, o, &n, &cerr) != 0) {
        sn_log_error("configuration from the API not re-applied", SN_LOG_STR("error", cerr.msg),
                     SN_LOG_STR("recorded", when));
    } else {
        char *keys = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        sn_log_info("configuration from the API re-applied", SN_LOG_UINT("settings", n),
                    SN_LOG_STR("recorded", when), SN_LOG_STR("values", keys != NULL ? keys : ""));
        free(keys);
    }
    json_decref(o);
}

/* Applies changes atomically (sn_config_apply_json validates every value first), hands the new
 * detection settings to the engine, and records the result in the configuration history (the
 * API overlay for the next start, then the whole configuration for the audit). */
static int api_config_post(void *ud, const json_t *changes, json_t **out, char *err, size_t errlen)
{
    aggregator *a = ud;
    sn_config_error cerr = {{0}};
    size_t n = 0;
    if (apply_changes(a, changes, &n, &cerr) != 0) {
        snprintf(err, errlen, "%s", cerr.msg);
        return -EINVAL;
    }
    api_overlay_record(a);
    json_t *dump = sn_config_dump_json(a->config);
    char *text = dump != NULL ? json_dumps(dump, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (text != NULL && sn_store_config_append(a->store, now_ns(), "api", text) != 0)
        sn_log_error("cannot record the configuration change",
                     SN_LOG_STR("error", sn_store_errmsg(a->store)));
    free(text);
    sn_log_info("configuration changed through the API", SN_LOG_UINT("settings", n));
    *out = json_pack("{s:I, s:o}", "applied", (json_int_t)n, "config", dump);
    return *out == NULL ? -ENOMEM : 0;
}

/* Creates the metrics registry and starts alert delivery: one worker per configured sink, with
 * its own store connection; deliveries pending from an earlier run continue. Runs before ingest,
 * so no alert is raised before it can be queued. Returns 0, or 1 after logging why. */
static int start_deliver(aggregator *a)
{
    const agg_settings *s = a->set;
    char err[256];
    if (sn_metrics_create(NULL, &a->metrics, err, sizeof err) != 0 ||
        sn_metrics_register_process(a->metrics, err, sizeof err) != 0) {
        sn_log_error("cannot create the metrics registry", SN_LOG_STR("error", err));
        return 1;
    }
    if (sn_agg_metrics_create(a->metrics, &a->agg_metrics, err, sizeof err) != 0) {
        sn_log_error("cannot register the aggregator's metrics", SN_LOG_STR("error", err));
        return 1;
    }
    sn_deliver_options dopt;
    sn_deliver_options_init(&dopt);
    sn_deliver_options_from_settings(&dopt, &s->deliver);
    dopt.store_dir = s->data_dir;
    dopt.metrics = a->metrics;
    int n = -1;
    if (sn_deliver_create(&dopt, &a->deliver, err, sizeof err) != 0 ||
        (n = sn_deliver_add_configured(a->deliver, &s->deliver, err, sizeof err)) < 0) {
        sn_log_error("cannot start alert delivery", SN_LOG_STR("error", err));
        return 1;
    }
    sn_log_info("alert delivery", SN_LOG_INT("sinks", n));
    sn_deliver_kick(a->deliver);
    return 0;
}

/* Starts the REST API (with /metrics and /health) when http.endpoint is set. Returns 0, or 1
 * after logging why. */
static int start_api(aggregator *a)
{
    const agg_settings *s = a->set;
    char err[256], addr[SN_CONFIG_HOST_MAX + 16];
    if (s->http_endpoint.host[0] == '\0')
        return 0;
    sn_loop_call_config lc;
    memset(&lc, 0, sizeof lc);
    lc.max_queue = 64;
    lc.timeout_ns = 2 * SN_NS_PER_SEC;
    if (sn_loop_call_create(&a->loop, &lc, &a->loop_call, err, sizeof err) != 0) {
        sn_log_error("cannot create the API hand-off", SN_LOG_STR("error", err));
        return 1;
    }
    static sn_api_backend backend;
    backend = (sn_api_backend){
        .baselines = api_baselines,
        .service_health = api_service_health,
        .summary = api_summary,
        .series = api_series,
        .config_get = api_config_get,
        .config_post = api_config_post,
        .ud = a,
        .loop = a->loop_call,
    };
    sn_config_format_address(&s->http_endpoint, addr, sizeof addr);
    sn_api_config ac;
    memset(&ac, 0, sizeof ac);
    ac.listen = addr;
    ac.api_token = s->api_token;
    ac.store_dir = s->data_dir;
    ac.metrics = a->metrics;
    sn_live_config lv = {.api_token = s->api_token, .metrics = a->metrics};
    if (sn_live_create(&lv, &a->live, err, sizeof err) != 0) {
        sn_log_error("cannot create the live feed", SN_LOG_STR("error", err));
        return 1;
    }
    ac.live = a->live;
    ac.assets = sn_dashboard_assets(&ac.nassets);
    int rc = sn_api_create(&ac, &backend, &a->api, err, sizeof err);
    if (rc == 0)
        rc = sn_api_start(a->api, err, sizeof err);
    if (rc != 0) {
        sn_log_error("cannot serve the REST API", SN_LOG_STR("listen", addr),
                     SN_LOG_STR("error", err));
        return 1;
    }
    sn_log_info("REST API listening", SN_LOG_STR("listen", addr),
                SN_LOG_UINT("port", sn_api_port(a->api)));
    return 0;
}

/* Opens the store and creates the engine and the alert manager; restores firing alerts.
 * Returns 0, or 1 after logging why. */
static int start_detection(aggregator *a)
{
    const agg_settings *s = a->set;
    char err[512];
    sn_store_options so;
    sn_store_options_init(&so);
    int rc = sn_store_open(s->data_dir, &so, &a->store, err, sizeof err);
    if (rc != 0) {
        sn_log_error("cannot open the state store", SN_LOG_STR("data_dir", s->data_dir),
                     SN_LOG_STR("error", err));
        return 1;
    }
    reapply_api_config(a);
    uint64_t seed = 0;
    (void)getrandom(&seed, sizeof seed, 0);
    sn_config_error cerr = {{0}};
    rc = sn_engine_create(&a->engine, &s->engine, seed, &cerr);
    if (rc != 0) {
        sn_log_error("cannot create the detection engine", SN_LOG_STR("error", cerr.msg));
        return 1;
    }
    restore_baselines(a);
    restore_budgets(a);
    sn_alerts_config ac;
    sn_alerts_config_init(&ac);
    ac.max_alerts = (size_t)s->alerts_max;
    ac.dedup_window_ns = s->dedup_window_ns;
    ac.quiet_period_ns = s->quiet_period_ns;
    ac.group_window_ns = s->group_window_ns;
    ac.runbook_template = s->runbook_url;
    ac.on_change = on_alert_change;
    ac.cb_ud = a;
    ac.random = random_bytes;
    rc = sn_alerts_create(&ac, &a->alerts, err, sizeof err);
    if (rc != 0) {
        sn_log_error("cannot create the alert manager", SN_LOG_STR("error", err));
        return 1;
    }
    size_t skipped = 0;
    rc = sn_store_alerts_firing(a->store, restore_alert, a, &skipped);
    if (rc != 0)
        sn_log_warn("cannot restore firing alerts", SN_LOG_STR("error", sn_store_errmsg(a->store)));
    sn_alerts_stats ast;
    sn_alerts_stats_get(a->alerts, &ast);
    sn_log_info("state opened", SN_LOG_STR("data_dir", s->data_dir),
                SN_LOG_UINT("firing_alerts", ast.firing), SN_LOG_UINT("skipped_alerts", skipped));
    sn_recent_config rc_cfg = {0}; /* 300 points per key, 2048 keys, within 16 MiB */
    rc = sn_recent_create(&rc_cfg, &a->recent, err, sizeof err);
    if (rc != 0) {
        sn_log_error("cannot keep recent values", SN_LOG_STR("error", err));
        return 1;
    }
    uv_timer_init(&a->loop, &a->tick);
    a->tick.data = a;
    uv_timer_start(&a->tick, on_tick, 1000, 1000);
    return 0;
}

/* Connects the replicas' shared state when redis.url is set (Redis need not be up yet: calls
 * fail open until it is). Returns 0, or 2 after logging a config error. */
static int start_shared(aggregator *a)
{
    const agg_settings *s = a->set;
    if (s->redis_url[0] == '\0')
        return 0;
    sn_shared_config sc;
    sn_shared_config_init(&sc);
    sc.url = s->redis_url;
    sc.key_prefix = s->redis_key_prefix;
    sc.replica_id = s->redis_replica_id;
    sc.timeout_ns = s->redis_timeout_ns;
    sc.lease_ttl_ns = s->redis_lease_ttl_ns;
    sc.seq_ttl_ns = s->sidecar_idle_ns;
    /* A batch waits at most apply_timeout for the loop, then is applied in well under that. */
    sc.inflight_ttl_ns = 2 * s->apply_timeout_ns + 5 * SN_NS_PER_SEC;
    char err[256];
    if (sn_shared_create(&sc, &a->shared, err, sizeof err) != 0) {
        sn_log_error("config: cannot use the shared state", SN_LOG_STR("error", err));
        return 2;
    }
    if (a->metrics != NULL &&
        sn_shared_register_metrics(a->shared, a->metrics, err, sizeof err) != 0) {
        sn_log_error("cannot register the shared state's metrics", SN_LOG_STR("error", err));
        return 1;
    }
    if (s->redis_share_baselines) {
        if (s->engine.baseline_mode != SN_BASELINE_COMPACT) {
            sn_log_warn("shared baselines need engine.baseline.mode compact; scoring locally");
        } else {
            sn_bshare_config bc;
            sn_bshare_config_init(&bc);
            bc.interval_ns = s->redis_baseline_interval_ns;
            bc.ttl_ns = s->redis_baseline_ttl_ns;
            bc.batch = (size_t)s->redis_baseline_batch;
            bc.max_pairs = (size_t)s->redis_baseline_max_pairs;
            if (sn_bshare_create(&bc, a->engine, a->shared, &a->bshare, err, sizeof err) != 0) {
                sn_log_error("config: cannot share baselines", SN_LOG_STR("error", err));
                return 2;
            }
        }
    }
    int lead = sn_shared_lease_tick(a->shared);
    sn_log_info("shared state in Redis", SN_LOG_STR("replica_id", sn_shared_replica_id(a->shared)),
                SN_LOG_STR("key_prefix", s->redis_key_prefix),
                SN_LOG_STR("leader", lead == 1   ? "yes"
                                     : lead == 0 ? "no"
                                                 : "unknown"));
    return 0;
}

/* Creates and starts the ingest service. Returns 0, or 1 after logging why. */
static int start_ingest(aggregator *a)
{
    const agg_settings *s = a->set;
    char addr[SN_CONFIG_HOST_MAX + 16], err[256];
    sn_config_format_address(&s->ingest_endpoint, addr, sizeof addr);
    sn_ingest_config cfg;
    sn_ingest_config_init(&cfg);
    cfg.listen = addr;
    cfg.max_message_bytes = (size_t)s->max_message_bytes;
    cfg.max_calls = (unsigned)s->max_calls;
    cfg.window_bytes = (size_t)s->grpc_window;
    cfg.max_batch_events = (size_t)s->max_batch_events;
    cfg.max_batch_alerts = (size_t)s->max_batch_alerts;
    cfg.max_sidecars = (size_t)s->max_sidecars;
    cfg.sidecar_idle_ns = s->sidecar_idle_ns;
    cfg.retry_after_ms = (uint32_t)(s->retry_after_ns / SN_NS_PER_MS);
    cfg.apply = a->shared != NULL ? apply_claimed : apply_from_ingest;
    cfg.apply_ud = a;
    int rc = sn_ingest_create(&cfg, &a->ingest, err, sizeof err);
    if (rc == 0) {
        /* The de-duplication state of the last run: a batch a sidecar replays after our restart
         * is then recognised and not applied twice. */
        rc = sn_store_seq_load_all(a->store, import_sequence, a);
        if (rc != 0)
            snprintf(err, sizeof err, "cannot load the de-duplication state: %s",
                     sn_store_errmsg(a->store));
    }
    if (rc == 0)
        rc = sn_ingest_start(a->ingest);
    if (rc != 0) {
        sn_log_error("cannot start the ingest service",
                     SN_LOG_STR("reason", err[0] != '\0' ? err : strerror(-rc)),
                     SN_LOG_STR("endpoint", addr));
        return 1;
    }
    sn_log_info("ingest listening", SN_LOG_STR("host", s->ingest_endpoint.host),
                SN_LOG_INT("port", sn_ingest_port(a->ingest)), SN_LOG_INT("window", s->grpc_window),
                SN_LOG_STR("grpc_experiments",
                           getenv("GRPC_EXPERIMENTS") != NULL ? getenv("GRPC_EXPERIMENTS") : ""));
    return 0;
}

int main(int argc, char **argv)
{
    static const sn_program_info info = {
        .name = "sentinel-aggregator",
        .version = SENTINEL_VERSION,
        .component = "aggregator",
        .summary = "central LLM-Sentinel service: global baselines, detection and alerts over "
                   "the batches of every sidecar",
        .validate = validate_settings,
    };
    static agg_settings s;
    static aggregator a;
    sn_engine_config_defaults(&s.engine); /* settings the descriptors do not expose */
    sn_cli_result res;
    int outcome = sn_cli_load(argc, argv, &info, descriptors,
                              sizeof descriptors / sizeof descriptors[0], &s, &res);
    if (outcome != SN_CLI_RUN)
        return sn_cli_exit_status(outcome);
    /* Before the ingest service's grpc_init: gRPC's own log lines become ours (JSON, msg
     * "grpc"), and gRPC reads its experiments once (docs/aggregator.md, "gRPC's read buffers"). */
    sn_grpc_unary_route_logs();
    if (sn_grpc_unary_read_chunks(s.grpc_read_chunks) != 0) {
        fprintf(stderr, "sentinel-aggregator: cannot set GRPC_EXPERIMENTS: %s\n", strerror(errno));
        sn_cli_result_cleanup(&res);
        return 1;
    }

    int rc = 1;
    a.set = &s;
    pthread_mutex_init(&a.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (uv_loop_init(&a.loop) != 0) {
        sn_log_error("cannot create the event loop");
        goto out_destroy_sync;
    }
    a.wake.data = a.sigterm.data = a.sigint.data = &a;
    uv_async_init(&a.loop, &a.wake, on_wake);
    uv_signal_init(&a.loop, &a.sigterm);
    uv_signal_init(&a.loop, &a.sigint);
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);

    a.config = res.config; /* start_detection re-applies the API's changes through it */
    rc = open_event_log(&a);
    if (rc == 0)
        rc = start_detection(&a);
    if (rc == 0)
        rc = start_deliver(&a);
    if (rc == 0)
        rc = start_shared(&a);
    if (rc == 0)
        rc = start_ingest(&a);
    if (rc == 0)
        rc = start_api(&a);
    if (rc != 0) {
        if (a.api != NULL)
            sn_api_stop(a.api);
        if (a.loop_call != NULL)
            sn_loop_call_close(a.loop_call);
        if (uv_is_active((uv_handle_t *)&a.tick))
            uv_close((uv_handle_t *)&a.tick, NULL);
        uv_close((uv_handle_t *)&a.wake, NULL);
        uv_close((uv_handle_t *)&a.sigterm, NULL);
        uv_close((uv_handle_t *)&a.sigint, NULL);
        uv_run(&a.loop, UV_RUN_DEFAULT);
        goto out_close_loop;
    }

    uv_run(&a.loop, UV_RUN_DEFAULT);

    sn_ingest_stats st;
    sn_ingest_stats_get(a.ingest, &st);
    sn_log_info("stopped", SN_LOG_UINT("batches", a.batches), SN_LOG_UINT("events", a.events),
                SN_LOG_UINT("alerts", a.local_alerts),
                SN_LOG_UINT("alerts_ahead", a.local_alerts_ahead),
                SN_LOG_UINT("alert_copies_skipped", a.local_alert_copies),
                SN_LOG_UINT("anomalies", a.anomalies), SN_LOG_UINT("store_errors", a.store_errors),
                SN_LOG_UINT("duplicates", st.duplicates),
                SN_LOG_UINT("refused_malformed", st.refused[SN_INGEST_REFUSED_MALFORMED]),
                SN_LOG_UINT("refused_invalid", st.refused[SN_INGEST_REFUSED_INVALID]),
                SN_LOG_UINT("refused_too_large", st.refused[SN_INGEST_REFUSED_TOO_LARGE]),
                SN_LOG_UINT("refused_decompress", st.refused[SN_INGEST_REFUSED_DECOMPRESS]),
                SN_LOG_UINT("retry_after", st.refused[SN_INGEST_REFUSED_RETRY]),
                SN_LOG_UINT("refused_internal", st.refused[SN_INGEST_REFUSED_INTERNAL]));
    if (a.shared != NULL) {
        sn_shared_stats sst;
        sn_shared_stats_get(a.shared, &sst);
        sn_log_info("shared state", SN_LOG_UINT("batches_claimed", sst.seq_claimed),
                    SN_LOG_UINT("duplicates_from_replicas", sst.seq_duplicates),
                    SN_LOG_UINT("claims_released", sst.seq_released),
                    SN_LOG_UINT("alerts_owned", sst.alert_owned),
                    SN_LOG_UINT("alerts_left_to_replicas", sst.alert_foreign),
                    SN_LOG_UINT("local_alerts_claimed", sst.local_alert_claimed),
                    SN_LOG_UINT("local_alert_copies_from_replicas", sst.local_alert_copies),
                    SN_LOG_UINT("silence_anomalies_left_to_leader", a.tick_anomalies_skipped),
                    SN_LOG_UINT("leader_acquired", sst.leader_acquired),
                    SN_LOG_UINT("leader_lost", sst.leader_lost),
                    SN_LOG_UINT("fail_open", sst.fail_open));
    }
    if (a.bshare != NULL) {
        sn_bshare_stats bst;
        sn_bshare_stats_get(a.bshare, &bst);
        sn_log_info(
            "shared baselines", SN_LOG_UINT("rounds", bst.rounds),
            SN_LOG_UINT("keys_exchanged", bst.exchanged), SN_LOG_UINT("views_merged", bst.merged),
            SN_LOG_UINT("blobs_skipped", bst.skipped),
            SN_LOG_UINT("pairs_dropped", bst.pairs_dropped), SN_LOG_UINT("failures", bst.failures));
    }
    rc = 0;

out_close_loop:
    sn_api_destroy(a.api);
    sn_deliver_destroy(a.deliver);
    sn_live_destroy(a.live);
    sn_loop_call_destroy(a.loop_call);
    sn_ingest_destroy(a.ingest);
    sn_bshare_destroy(a.bshare);
    sn_shared_destroy(a.shared); /* gives the lease back */
    sn_alerts_destroy(a.alerts);
    sn_engine_destroy(a.engine);
    sn_recent_destroy(a.recent);
    sn_store_close(a.store);
    sn_agg_metrics_destroy(a.agg_metrics);
    sn_metrics_destroy(a.metrics);
    if (a.event_log != NULL && fclose(a.event_log) != 0 && rc == 0) {
        sn_log_error("cannot close the event log", SN_LOG_ERRNO(errno));
        rc = 1;
    }
    uv_loop_close(&a.loop);
out_destroy_sync:
    pthread_cond_destroy(&a.cv);
    pthread_mutex_destroy(&a.mu);
    sn_cli_result_cleanup(&res);
    return rc;
}
