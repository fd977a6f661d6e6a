/*
 * main.c -- sentinel-sidecar: the per-pod OTLP receiver.
 *
 * Wires the pieces together and owns their lifetimes: configuration (shared/cli.h), the spool,
 * the batch encoder, the shipper, local detection, the optional tee, the metrics registry, the
 * pipeline (the loop's state), the admin endpoints and the two OTLP transports. SIGTERM/SIGINT
 * drain: new requests are refused with retryable statuses, the open batch is sealed, the spool
 * is shipped for up to shutdown.drain_timeout, and what is left stays spooled for the next
 * start. Exit status 0 after a clean shutdown, 1 when starting failed, 2 for bad usage/config.
 */
#include "admin.h"
#include "batch.h"
#include "cli.h"
#include "codepages.h"
#include "local_detect.h"
#include "log.h"
#include "memguard.h"
#include "metrics.h"
#include "otlp/grpc_server.h"
#include "otlp/http_server.h"
#include "pipeline.h"
#include "price.h"
#include "ship.h"
#include "spool.h"
#include "tee.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <uv.h>

#define SIDECAR_MIN_MEMORY_LIMIT ((int64_t)40 << 20)
/* AddressSanitizer's shadow memory and quarantine make the resident set several times larger
 * (35 MiB idle): sanitizer builds have no memory limit unless one is set. */
#if defined(__SANITIZE_ADDRESS__)
#define SIDECAR_DEFAULT_MEMORY_LIMIT "0"
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIDECAR_DEFAULT_MEMORY_LIMIT "0"
#endif
#endif
#ifndef SIDECAR_DEFAULT_MEMORY_LIMIT
#define SIDECAR_DEFAULT_MEMORY_LIMIT "64MiB"
#endif

static const char *const mode_names[] = {"sidecar", NULL};
/* batch.zstd_literals: raw (no Huffman coding of literals, the default) or huffman (zstd's own). */
static const char *const zstd_literal_names[] = {"raw", "huffman", NULL};

/* gRPC core's poll engines (GRPC_POLL_STRATEGY); the index is sidecar_settings.poll_strategy. */
static const char *const poll_names[] = {"poll", "epoll1", NULL};

typedef struct sidecar_settings {
    int mode;
    sn_config_address otlp_grpc;
    sn_config_address otlp_http;
    int64_t max_message_bytes;
    int64_t max_requests;
    int64_t max_inflight_bytes;
    int64_t grpc_streams;
    int64_t grpc_window;
    int64_t grpc_held;
    int64_t grpc_inline;

    int64_t http_body_bytes;
    int64_t http_bodies;
    int64_t http_body_wait, http_body_time; /* ns */
    int64_t memory_limit;
    int64_t memory_refuse_percent;
    int64_t malloc_arenas;
    int64_t malloc_mmap_threshold;
    bool release_startup_pages;
    int poll_strategy;
    bool grpc_read_chunks;
    sn_config_address admin;
    sn_config_address aggregator;
    int64_t ship_deadline;
    char spool_dir[1024];
    sn_spool_config spool;
    int64_t sync_interval;
    char upstream[1024];
    int64_t flush_interval;
    int64_t batch_max_events;
    int64_t zstd_level;
    int zstd_literals; /* index into zstd_literal_names */
    int64_t zstd_hash_log;
    char name[128];
    char prices_file[1024];
    int64_t drain_timeout;
    sn_local_detect_config local;
    int64_t alert_interval;
    bool alerts_ahead;
    int64_t alerts_ahead_queue;
    int64_t alerts_ahead_max_age;
    int64_t metrics_span_cover;
    sn_cli_log_settings log;
} sidecar_settings;

static const sn_config_desc descriptors[] = {
    {SN__CFG("mode", SN_CONFIG_ENUM, sidecar_settings, mode, "sidecar",
             "how this program runs (set by the injector)"),
     .env = "SENTINEL_MODE", .choices = mode_names},
    {SN__CFG("otlp.grpc_endpoint", SN_CONFIG_ADDRESS, sidecar_settings, otlp_grpc, "127.0.0.1:4317",
             "OTLP/gRPC listen address (off to disable)"),
     .env = "SENTINEL_OTLP_GRPC_ENDPOINT", .flags = SN_CONFIG_OPTIONAL | SN_CONFIG_ANY_PORT},
    {SN__CFG("otlp.http_endpoint", SN_CONFIG_ADDRESS, sidecar_settings, otlp_http, "127.0.0.1:4318",
             "OTLP/HTTP listen address (off to disable)"),
     .env = "SENTINEL_OTLP_HTTP_ENDPOINT", .flags = SN_CONFIG_OPTIONAL | SN_CONFIG_ANY_PORT},
    SN_CFG_SIZE("otlp.max_message_bytes", sidecar_settings, max_message_bytes, "16MiB", 65536,
                (int64_t)256 << 20,
                "largest OTLP request, on the wire and after decompression (over it: "
                "RESOURCE_EXHAUSTED / 413)"),
    SN_CFG_INT("otlp.max_concurrent_requests", sidecar_settings, max_requests, "64", 1, 10000,
               "OTLP requests in progress at once; more are refused with a retryable status"),
    SN_CFG_SIZE("otlp.max_inflight_bytes", sidecar_settings, max_inflight_bytes, "16MiB", 65536,
                (int64_t)1 << 30,
                "request memory at once, per stage: gRPC's buffers, gRPC messages waiting, "
                "HTTP bodies, decoded requests waiting for the loop; past it new requests get "
                "a retryable refusal (one request always fits)"),
    SN_CFG_INT("otlp.grpc.max_concurrent_streams", sidecar_settings, grpc_streams, "6", 1, 1000,
               "HTTP/2 streams a client may have open at once on one gRPC connection (gRPC holds "
               "a whole message per open stream); a client with more in flight queues them on "
               "its side"),
    SN_CFG_INT("otlp.http.max_concurrent_bodies", sidecar_settings, http_bodies, "8", 0, 10000,
               "OTLP/HTTP request bodies read at once; further requests wait, their bodies unread "
               "in the connection, until one is answered (0: no limit)"),
    SN_CFG_DURATION("otlp.http.body_wait", sidecar_settings, http_body_wait, "5s", 1000000,
                    3600LL * 1000000000,
                    "longest wait of an OTLP/HTTP request for a body slot; then 503 + Retry-After"),
    SN_CFG_DURATION("otlp.http.body_time", sidecar_settings, http_body_time, "30s", 1000000,
                    3600LL * 1000000000,
                    "longest arrival of an OTLP/HTTP body once it holds a slot; then the "
                    "connection is closed"),

    SN_CFG_SIZE("otlp.http.max_concurrent_body_bytes", sidecar_settings, http_body_bytes, "1MiB", 0,
                (int64_t)1 << 30,
                "and their bytes at once (Content-Length; a body of unknown length counts as all "
                "of it): past it a request waits as for max_concurrent_bodies, one body is always "
                "read (0: no byte bound)"),
    SN_CFG_SIZE("otlp.grpc.window", sidecar_settings, grpc_window, "64KiB", 0, (int64_t)64 << 20,
                "gRPC flow-control window per stream and largest TCP read (at least 65535); 0: "
                "gRPC's own, which grows to megabytes per stream"),
    SN_CFG_SIZE("otlp.grpc.max_held_bytes", sidecar_settings, grpc_held, "512KiB", 0,
                (int64_t)1 << 30,
                "request messages received and not yet decoded, at most: past it a call's message "
                "is not read yet (the call waits, its data within the stream window), one is "
                "always read (0: no bound)"),
    SN_CFG_SIZE("otlp.grpc.inline_decode", sidecar_settings, grpc_inline, "64KiB", 0,
                (int64_t)16 << 20,
                "uncompressed trace requests up to this size are decoded on gRPC's "
                "completion-queue thread when the handler thread is idle (one thread hand-off "
                "less); larger ones go to the handler thread; 0: always the handler thread"),
    {SN__CFG("limits.memory", SN_CONFIG_SIZE, sidecar_settings, memory_limit,
             SIDECAR_DEFAULT_MEMORY_LIMIT,
             "hard limit of the resident set; from limits.memory_refuse_percent of it on, new "
             "requests get a retryable refusal until it is back under (0: off; else at least "
             "40MiB)"),
     .env = "SENTINEL_MEMORY_LIMIT", .flags = SN_CONFIG_HAS_MIN | SN_CONFIG_HAS_MAX, .imin = 0,
     .imax = (int64_t)1 << 40},
    SN_CFG_INT("limits.memory_refuse_percent", sidecar_settings, memory_refuse_percent, "75", 1,
               100,
               "share of limits.memory from which new requests are refused; the rest is headroom "
               "for the requests already taken"),
    SN_CFG_INT("limits.malloc_arenas", sidecar_settings, malloc_arenas, "2", 0, 64,
               "malloc arenas (M_ARENA_MAX); fewer arenas keep less freed memory per thread "
               "(0: glibc's default, 8 per core)"),
    SN_CFG_SIZE("limits.malloc_mmap_threshold", sidecar_settings, malloc_mmap_threshold, "0", 0,
                (int64_t)32 << 20,
                "malloc blocks from this size on get their own mapping, given back when freed "
                "(M_MMAP_THRESHOLD, fixed): less memory under steady load, a page fault per 4 KiB "
                "of every request-sized buffer; 0: glibc's, which rises to the largest block "
                "freed so far and keeps request-sized buffers in the heap for reuse"),
    SN_CFG_BOOL("limits.release_startup_pages", sidecar_settings, release_startup_pages, "true",
                "once started, drop the program's and libraries' code and read-only data pages "
                "from the resident set (madvise); what runs later faults back in what it uses"),
    SN_CFG_ENUM("grpc.poll_strategy", sidecar_settings, poll_strategy, "poll", poll_names,
                "gRPC core's poll engine for the OTLP receiver and the shippers: poll (each "
                "completion queue thread reads its own connections) or epoll1 (gRPC's default: "
                "any gRPC thread reads any connection and hands the request over); "
                "GRPC_POLL_STRATEGY in the environment wins"),
    SN_CFG_BOOL("grpc.tcp_read_chunks", sidecar_settings, grpc_read_chunks, "false",
                "gRPC core's tcp_read_chunks experiment (on in gRPC 1.51): each socket read gets "
                "buffers for the largest recent burst, megabytes under a flood whatever "
                "otlp.grpc.window says; off: reads of at most otlp.grpc.window; entries of "
                "GRPC_EXPERIMENTS in the environment win"),
    {SN__CFG("admin.endpoint", SN_CONFIG_ADDRESS, sidecar_settings, admin, "0.0.0.0:8081",
             "/healthz, /readyz and /metrics listen address (off to disable)"),
     .env = "SENTINEL_ADMIN_ENDPOINT", .flags = SN_CONFIG_OPTIONAL | SN_CONFIG_ANY_PORT},
    {SN__CFG("aggregator.endpoint", SN_CONFIG_ADDRESS, sidecar_settings, aggregator,
             "localhost:9090", "the aggregator's sidecar ingest address (host:port)"),
     .env = "SENTINEL_AGGREGATOR"},
    SN_CFG_DURATION("aggregator.deadline", sidecar_settings, ship_deadline, "5s", 10000000,
                    600LL * 1000000000, "deadline of one Ingest call to the aggregator"),
    {SN__CFG("spool.dir", SN_CONFIG_STRING, sidecar_settings, spool_dir, "/var/lib/sentinel/spool",
             "directory of the on-disk spool and journal (one sidecar per directory)"),
     .env = "SENTINEL_SPOOL_DIR"},
    SN_SPOOL_DESCRIPTORS("spool", sidecar_settings, spool),
    SN_CFG_DURATION("spool.sync_interval", sidecar_settings, sync_interval, "1s", 1000000,
                    3600LL * 1000000000,
                    "how often the spool is fsynced (a process crash loses nothing either way)"),
    {SN__CFG("upstream.otlp", SN_CONFIG_STRING, sidecar_settings, upstream, "",
             "forward every accepted OTLP request unchanged to this collector "
             "(http://host:4317 gRPC, http://host:4318 HTTP); empty: off"),
     .env = "SENTINEL_UPSTREAM_OTLP"},
    SN_CFG_DURATION("batch.flush_interval", sidecar_settings, flush_interval, "200ms", 1000000,
                    60LL * 1000000000, "seal and ship the open batch this often"),
    SN_CFG_INT("batch.max_events", sidecar_settings, batch_max_events, "2000", 1, 100000,
               "LLM events per batch (and per OTLP request)"),
    SN_CFG_INT("batch.zstd_level", sidecar_settings, zstd_level, "-2", SN_BATCH_ZSTD_LEVEL_MIN, 19,
               "zstd level of batches (0: uncompressed; -1..-7: zstd's fast levels)"),
    SN_CFG_ENUM("batch.zstd_literals", sidecar_settings, zstd_literals, "raw", zstd_literal_names,
                "zstd literals of batches: raw (cheaper on both sides, ~7 % more bytes) or "
                "huffman"),
    SN_CFG_INT("batch.zstd_hash_log", sidecar_settings, zstd_hash_log, "0", 0,
               SN_BATCH_ZSTD_HASH_LOG_MAX,
               "log2 of zstd's hash table (0: 12 at level 1 and below, the level's own above; else "
               "6..20)"),
    {SN__CFG("sidecar.name", SN_CONFIG_STRING, sidecar_settings, name, "",
             "this sidecar's name in batches (default: $POD_NAME, else the host name)"),
     .env = "SENTINEL_SIDECAR_NAME"},
    {SN__CFG("prices.file", SN_CONFIG_STRING, sidecar_settings, prices_file, "",
             "model price table (YAML); empty: the built-in table"),
     .env = "SENTINEL_PRICES_FILE"},
    SN_CFG_DURATION("shutdown.drain_timeout", sidecar_settings, drain_timeout, "5s", 0,
                    600LL * 1000000000,
                    "on SIGTERM, how long to keep shipping the spool before exiting"),
    SN_LOCAL_DETECT_DESCRIPTORS("local", sidecar_settings, local),
    SN_CFG_DURATION("local.alert_interval", sidecar_settings, alert_interval, "10s", 0,
                    3600LL * 1000000000,
                    "at most one local alert per (service, model, metric, anomaly type) this "
                    "often; the ones held back are counted (0: no limit)"),
    SN_CFG_BOOL("local.send_ahead", sidecar_settings, alerts_ahead, "true",
                "send each new local alert to the aggregator at once in its own Ingest call, "
                "ahead of the batches (it also travels in its batch, as always)"),
    SN_CFG_INT("local.send_ahead_queue", sidecar_settings, alerts_ahead_queue, "256", 1, 65536,
               "local alerts waiting to be sent ahead; more go in their batches only"),
    SN_CFG_DURATION("local.send_ahead_max_age", sidecar_settings, alerts_ahead_max_age, "60s",
                    1000000, 3600LL * 1000000000,
                    "a local alert not delivered ahead this long is left to its batch"),
    SN_CFG_DURATION("metrics.span_cover", sidecar_settings, metrics_span_cover, "5m", 1000000000LL,
                    86400LL * 1000000000,
                    "GenAI metric points of a (service, model) that sent spans this recently are "
                    "not turned into facts (the spans already count those calls)"),
    SN_CLI_LOG_DESCRIPTORS(sidecar_settings, log),
};

static const sn_cli_flag flags[] = {
    {.name = "aggregator",
     .takes_value = true,
     .metavar = "HOST:PORT",
     .path = "aggregator.endpoint"},
    {.name = "spool-dir", .takes_value = true, .metavar = "DIR", .path = "spool.dir"},
};

static int validate_settings(void *config, sn_config_error *err)
{
    sidecar_settings *s = config;
    if (s->otlp_grpc.host[0] == '\0' && s->otlp_http.host[0] == '\0') {
        snprintf(err->msg, sizeof err->msg,
                 "config: otlp.grpc_endpoint: OTLP/gRPC and OTLP/HTTP are both off; enable one");
        return -EINVAL;
    }
    if (s->aggregator.host[0] == '\0' || s->aggregator.port == 0) {
        snprintf(err->msg, sizeof err->msg, "config: aggregator.endpoint: must be host:port");
        return -EINVAL;
    }
    if (s->memory_limit != 0 && s->memory_limit < SIDECAR_MIN_MEMORY_LIMIT) {
        /* Below it the resident set after a burst (libraries, gRPC's and malloc's keep) can
         * stay over the refusal threshold: the sidecar would refuse for good. */
        snprintf(err->msg, sizeof err->msg,
                 "config: limits.memory: at least 40MiB (or 0 for no limit)");
        return -EINVAL;
    }
    if (s->spool_dir[0] == '\0') {
        snprintf(err->msg, sizeof err->msg, "config: spool.dir: must not be empty");
        return -EINVAL;
    }
    if (s->spool.max_record_bytes < (int64_t)SN_BATCH_PART_FLOOR) {
        /* A batch is sealed under min(otlp.max_message_bytes, this); converted to flat events
         * for an older aggregator, it is split into parts of up to 64 KiB (a function of the
         * batch alone): a smaller limit could refuse a part and lose its events. */
        snprintf(err->msg, sizeof err->msg,
                 "config: spool.max_record_bytes: at least 64KiB (the smallest "
                 "otlp.max_message_bytes)");
        return -EINVAL;
    }
    return sn_local_detect_config_validate(&s->local, "local", err);
}

/* Everything the program owns, torn down in reverse order. */
typedef struct sidecar {
    sidecar_settings s;
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    sn_price_table *prices;
    sn_spool *spool;
    sn_batch_encoder *encoder;
    sn_ship *ship;
    sn_alert_ship *alert_ship; /* NULL: local.send_ahead off */
    sn_local_detect *detect;
    sn_tee *tee;
    sn_metrics *metrics;
    sn_pipeline *pipeline;
    sn_admin *admin;
    sn_grpc_server *grpc;
    sn_http_server *http;
    sn_counter *http_timeouts[2]; /* [0] a body arrived too slowly, [1] a slot wait expired */
    sn_memguard *memguard;
    bool shutting_down;
} sidecar;

/* The OTLP/HTTP server's slot timeouts (on_timeout): counted by kind. */
static void count_http_timeout(void *ud, bool waited)
{
    sidecar *sc = ud;
    sn_counter_inc(sc->http_timeouts[waited ? 1 : 0]);
}

/* Registers sentinel_sidecar_http_body_timeouts_total{kind}. Returns 0 or a negative errno. */
static int register_http_timeouts(sidecar *sc, char *err, size_t errlen)
{
    sn_metrics_desc d = {.type = SN_METRICS_COUNTER,
                         .name = "sentinel_sidecar_http_body_timeouts_total",
                         .help = "OTLP/HTTP requests cut for a body arriving too slowly (slow) or "
                                 "refused for waiting too long for a body slot (wait)",
                         .labels = {"kind"}};
    sn_metrics_family *f;
    int rc = sn_metrics_register(sc->metrics, &d, &f, err, errlen);
    if (rc != 0)
        return rc;
    static const char *const kinds[2] = {"slow", "wait"};
    for (int k = 0; k < 2; k++)
        if ((sc->http_timeouts[k] = sn_metrics_counter(f, &kinds[k])) == NULL)
            return -ENOMEM;
    return 0;
}

/* The memory guard's view of the pipeline's idle request scratches (memguard.h, `kept`). */
static size_t scratch_kept(void *ud)
{
    return sn_pipeline_scratch_kept(ud);
}

/* Frees them when the guard needs the room (memguard.h, `reclaim`). */
static void scratch_reclaim(void *ud)
{
    sn_pipeline_scratch_reclaim(ud);
}

/* /readyz: not ready while over limits.memory, else the pipeline's readiness. */
static bool sidecar_ready(char *reason, size_t reasonlen, void *ud)
{
    sidecar *sc = ud;
    if (sc->memguard != NULL && sn_memguard_over(sc->memguard)) {
        snprintf(reason, reasonlen, "over the memory limit (limits.memory)");
        return false;
    }
    return sn_pipeline_ready(reason, reasonlen, sc->pipeline);
}

static void on_drained(void *ud)
{
    sidecar *sc = ud;
    int rc = sn_spool_sync(sc->spool);
    if (rc != 0)
        sn_log_error("final spool fsync failed", SN_LOG_ERRNO(rc));
    sn_log_info("drained", SN_LOG_UINT("batches_left", sn_spool_count(sc->spool)));
    /* The shippers first: their last callbacks still find the pipeline. */
    sn_alert_ship_destroy(sc->alert_ship);
    sc->alert_ship = NULL;
    sn_ship_destroy(sc->ship);
    sc->ship = NULL;
    sn_pipeline_destroy(sc->pipeline);
    sc->pipeline = NULL;
    uv_close((uv_handle_t *)&sc->sigterm, NULL);
    uv_close((uv_handle_t *)&sc->sigint, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    sidecar *sc = h->data;
    if (sc->shutting_down) {
        sn_log_warn("second signal: shutting down without waiting");
        return;
    }
    sc->shutting_down = true;
    sn_log_info("shutting down", SN_LOG_STR("signal", signum == SIGTERM ? "SIGTERM" : "SIGINT"));
    /* Refuse new work first, so no transport thread waits for the loop while the transports
     * are stopped below (that stop blocks this thread). */
    sn_pipeline_drain(sc->pipeline, (uint64_t)(sc->s.drain_timeout / 1000000), on_drained, sc);
    if (sc->grpc != NULL)
        sn_grpc_server_shutdown(sc->grpc, 2000);
    if (sc->http != NULL)
        sn_http_server_stop(sc->http);
    if (sc->admin != NULL)
        sn_admin_stop(sc->admin);
}

/* The poll engine gRPC core was told to use (GRPC_POLL_STRATEGY, set from grpc.poll_strategy
 * unless the environment had it); a static or environment string, not to be freed. */
static const char *poll_in_effect(void)
{
    const char *v = getenv("GRPC_POLL_STRATEGY");
    return v != NULL && v[0] != '\0' ? v : "default";
}

/* "<name>/<16 hex digits>": a new id per start, so sequences restart at 1 without colliding
 * with batches an earlier run left in the spool. */
static void make_sidecar_id(const char *name, char *out, size_t len)
{
    char host[128] = "";
    if (name[0] == '\0') {
        const char *pod = getenv("POD_NAME");
        if (pod != NULL && pod[0] != '\0')
            snprintf(host, sizeof host, "%s", pod);
        else if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
            snprintf(host, sizeof host, "sidecar");
        host[sizeof host - 1] = '\0';
        name = host;
    }
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r = (uint64_t)getpid() ^ (uint64_t)uv_hrtime();
    /* The aggregator accepts ids of up to 128 bytes: keep the name to 100. */
    snprintf(out, len, "%.100s/%016" PRIx64, name, r);
}

/* Starts everything. Returns 0, or 1 after logging what failed. */
static int start(sidecar *sc)
{
    char err[512];
    char addr[300];
    sidecar_settings *s = &sc->s;
    int rc;

    if (s->prices_file[0] != '\0')
        sc->prices = sn_price_table_load(s->prices_file, err, sizeof err);
    else
        sc->prices = sn_price_table_default(err, sizeof err);
    if (sc->prices == NULL) {
        sn_log_error("cannot load the price table", SN_LOG_STR("error", err));
        return 1;
    }

    /* Ack rewrites, deletions and the interval's fsyncs on the spool's own thread, never in
     * front of an answer on the loop (docs/sidecar.md, "What happens to a request"). */
    s->spool.background_io = true;
    if ((rc = sn_spool_open(s->spool_dir, &s->spool, &sc->spool, err, sizeof err)) != 0) {
        sn_log_error("cannot open the spool", SN_LOG_STR("dir", s->spool_dir),
                     SN_LOG_STR("error", err));
        return 1;
    }

    sn_batch_config bc;
    sn_batch_config_init(&bc);
    bc.zstd_level = (int)s->zstd_level;
    bc.zstd_raw_literals = s->zstd_literals == 0;
    bc.zstd_hash_log = (int)s->zstd_hash_log;
    bc.max_events = (size_t)s->batch_max_events * 2;
    bc.max_message_bytes = (size_t)s->max_message_bytes;
    if (bc.max_message_bytes > (size_t)s->spool.max_record_bytes)
        bc.max_message_bytes = (size_t)s->spool.max_record_bytes;
    if ((rc = sn_batch_encoder_create(&bc, &sc->encoder, err, sizeof err)) != 0) {
        sn_log_error("cannot create the batch encoder", SN_LOG_STR("error", err));
        return 1;
    }

    sn_config_format_address(&s->aggregator, addr, sizeof addr);
    sn_ship_config shc;
    sn_ship_config_init(&shc);
    shc.aggregator = addr;
    shc.deadline_ms = (uint32_t)(s->ship_deadline / 1000000);
    shc.max_message_bytes = bc.max_message_bytes + 4096;
    if ((rc = sn_ship_create(&shc, &sc->loop, &sc->ship, err, sizeof err)) != 0) {
        sn_log_error("cannot create the aggregator client", SN_LOG_STR("aggregator", addr),
                     SN_LOG_STR("error", err));
        return 1;
    }

    uint64_t seed = 0;
    (void)getrandom(&seed, sizeof seed, 0);
    if ((rc = sn_local_detect_create(&s->local, seed, &sc->detect)) != 0) {
        sn_log_error("cannot create local detection", SN_LOG_ERRNO(rc));
        return 1;
    }

    if ((rc = sn_metrics_create(NULL, &sc->metrics, err, sizeof err)) != 0 ||
        (rc = sn_metrics_register_process(sc->metrics, err, sizeof err)) != 0) {
        sn_log_error("cannot create the metrics registry", SN_LOG_STR("error", err));
        return 1;
    }

    if (s->upstream[0] != '\0') {
        sn_tee_config tc;
        sn_tee_config_init(&tc);
        tc.url = s->upstream;
        tc.metrics = sc->metrics;
        if ((rc = sn_tee_create(&tc, &sc->tee, err, sizeof err)) != 0) {
            sn_log_error("cannot set up the upstream tee", SN_LOG_STR("error", err));
            return 1;
        }
    }

    char sidecar_id[SN_BATCH_ID_MAX];
    make_sidecar_id(s->name, sidecar_id, sizeof sidecar_id);
    sn_pipeline_config pc;
    sn_pipeline_config_defaults(&pc);
    pc.sidecar_id = sidecar_id;
    pc.flush_interval_ns = s->flush_interval;
    pc.sync_interval_ns = s->sync_interval;
    pc.max_batch_events = (size_t)s->batch_max_events;
    pc.spool_max_bytes = (uint64_t)s->spool.max_bytes;
    pc.journal_max_bytes = (uint64_t)s->spool.journal_max_bytes;
    pc.max_pending_bytes = (size_t)s->max_inflight_bytes;
    pc.alert_interval_ms = (uint64_t)(s->alert_interval / 1000000);
    pc.metric_cover_ns = s->metrics_span_cover;
    if (s->alerts_ahead) {
        sn_alert_ship_config ac;
        sn_alert_ship_config_init(&ac);
        ac.sidecar_id = sidecar_id;
        ac.ship = shc; /* its aggregator is addr, copied by create */
        ac.max_pending = (size_t)s->alerts_ahead_queue;
        if (ac.max_per_call > ac.max_pending)
            ac.max_per_call = ac.max_pending;
        ac.max_age_ms = (uint64_t)(s->alerts_ahead_max_age / 1000000);
        ac.metrics = sc->metrics;
        if ((rc = sn_alert_ship_create(&ac, &sc->loop, &sc->alert_ship, err, sizeof err)) != 0) {
            sn_log_error("cannot create the alert sender", SN_LOG_STR("error", err));
            return 1;
        }
    }
    sn_pipeline_deps deps = {
        .loop = &sc->loop,
        .spool = sc->spool,
        .encoder = sc->encoder,
        .ship = sc->ship,
        .detect = sc->detect,
        .tee = sc->tee,
        .metrics = sc->metrics,
        .prices = sc->prices,
        .alert_ship = sc->alert_ship,
    };
    if ((rc = sn_pipeline_create(&pc, &deps, &sc->pipeline, err, sizeof err)) != 0) {
        sn_log_error("cannot start the pipeline", SN_LOG_STR("error", err));
        return 1;
    }

    sn_memguard_config mc = {.limit_bytes = (uint64_t)s->memory_limit,
                             .refuse_percent = (unsigned)s->memory_refuse_percent,
                             .metrics = sc->metrics,
                             .kept = scratch_kept,
                             .reclaim = scratch_reclaim,
                             .kept_ud = sc->pipeline};
    if ((rc = sn_memguard_create(&mc, &sc->loop, &sc->memguard, err, sizeof err)) != 0) {
        sn_log_error("cannot watch the memory limit", SN_LOG_STR("error", err));
        return 1;
    }

    if (s->admin.host[0] != '\0') {
        sn_config_format_address(&s->admin, addr, sizeof addr);
        sn_admin_config ac = {
            .listen = addr, .metrics = sc->metrics, .ready = sidecar_ready, .ready_ud = sc};
        if ((rc = sn_admin_create(&ac, &sc->admin, err, sizeof err)) != 0 ||
            (rc = sn_admin_start(sc->admin, err, sizeof err)) != 0) {
            sn_log_error("cannot serve the admin endpoints", SN_LOG_STR("listen", addr),
                         SN_LOG_STR("error", err));
            return 1;
        }
        sn_log_info("admin endpoints listening", SN_LOG_STR("listen", addr),
                    SN_LOG_UINT("port", sn_admin_port(sc->admin)));
    }

    if (s->otlp_grpc.host[0] != '\0') {
        sn_config_format_address(&s->otlp_grpc, addr, sizeof addr);
        sn_grpc_server_config gc;
        sn_grpc_server_config_init(&gc);
        gc.listen = addr;
        gc.max_message_bytes = (size_t)s->max_message_bytes;
        gc.max_calls = (unsigned)s->max_requests;
        gc.max_streams = (unsigned)s->grpc_streams;
        gc.window_bytes = (size_t)s->grpc_window;
        gc.max_held_bytes = (size_t)s->grpc_held;
        gc.inline_max_bytes = (size_t)s->grpc_inline;
        for (unsigned i = 0; i < SN_GRPC_STAGE_COUNT; i++)
            gc.stage_seconds[i] = sn_pipeline_stage_histogram(sc->pipeline, sn_grpc_stage_names[i]);
        gc.allow_deferred = true; /* the loop answers; the handler thread decodes the next one */
        gc.max_queued_bytes = (size_t)s->max_inflight_bytes;
        gc.handler = sn_pipeline_otlp_handler;
        gc.handler_ud = sn_pipeline_handler_ud(sc->pipeline, SN_PIPELINE_GRPC);
        /* One admission decision per call: the budget's reservation, which also refuses while
         * over the resident-set threshold (no separate admit gate). */
        gc.budget = (sn_grpc_budget){sn_memguard_reserve_grpc, sn_memguard_release_cb,
                                     sn_memguard_available_cb, sc->memguard,
                                     sn_memguard_budget(sc->memguard)};
        if ((rc = sn_grpc_server_create(&gc, &sc->grpc, err, sizeof err)) != 0 ||
            (rc = sn_grpc_server_start(sc->grpc)) != 0) {
            sn_log_error("cannot serve OTLP/gRPC", SN_LOG_STR("listen", addr),
                         SN_LOG_STR("error", err));
            return 1;
        }
        sn_log_info("OTLP/gRPC listening", SN_LOG_STR("listen", addr),
                    SN_LOG_INT("port", sn_grpc_server_port(sc->grpc)),
                    SN_LOG_INT("max_streams", s->grpc_streams));
    }
    if (s->otlp_http.host[0] != '\0') {
        sn_config_format_address(&s->otlp_http, addr, sizeof addr);
        sn_http_server_config hc = {
            .listen = addr,
            .max_body_bytes = (size_t)s->max_message_bytes,
            .max_connections = (unsigned)s->max_requests,
            .max_buffered_bytes = (size_t)s->max_inflight_bytes,
            .max_bodies = (unsigned)s->http_bodies,
            .max_bodies_bytes = (size_t)s->http_body_bytes,
            /* One admission decision per request, as for gRPC: the body's reservation (which
             * also refuses while over the resident-set threshold). An empty body reserves
             * nothing and holds no memory: it is answered whatever the limit. */
            .handler = sn_pipeline_otlp_handler,
            .handler_ud = sn_pipeline_handler_ud(sc->pipeline, SN_PIPELINE_HTTP),
            .budget = {sn_memguard_reserve_http, sn_memguard_release_cb, sc->memguard},
            .body_wait_ms = (unsigned)(s->http_body_wait / 1000000),
            .body_time_ms = (unsigned)(s->http_body_time / 1000000),
            .on_timeout = count_http_timeout,
            .timeout_ud = sc,
        };
        if ((rc = register_http_timeouts(sc, err, sizeof err)) != 0) {
            sn_log_error("cannot register metrics", SN_LOG_STR("error", err));
            return 1;
        }
        if ((rc = sn_http_server_create(&hc, &sc->http, err, sizeof err)) != 0 ||
            (rc = sn_http_server_start(sc->http, err, sizeof err)) != 0) {
            sn_log_error("cannot serve OTLP/HTTP", SN_LOG_STR("listen", addr),
                         SN_LOG_STR("error", err));
            return 1;
        }
        sn_log_info("OTLP/HTTP listening", SN_LOG_STR("listen", addr),
                    SN_LOG_UINT("port", sn_http_server_port(sc->http)),
                    SN_LOG_INT("max_bodies", s->http_bodies),
                    SN_LOG_INT("max_body_bytes", s->http_body_bytes));
    }

    uv_signal_init(&sc->loop, &sc->sigterm);
    uv_signal_init(&sc->loop, &sc->sigint);
    sc->sigterm.data = sc->sigint.data = sc;
    uv_signal_start(&sc->sigterm, on_signal, SIGTERM);
    uv_signal_start(&sc->sigint, on_signal, SIGINT);
    sn_config_format_address(&s->aggregator, addr, sizeof addr);
    sn_log_info("sentinel-sidecar started", SN_LOG_STR("version", SENTINEL_VERSION),
                SN_LOG_STR("sidecar_id", sidecar_id), SN_LOG_STR("aggregator", addr),
                SN_LOG_STR("spool", s->spool_dir),
                SN_LOG_UINT("spooled_batches", sn_spool_count(sc->spool)),
                SN_LOG_STR("grpc_poll_strategy", poll_in_effect()),
                SN_LOG_STR("grpc_experiments",
                           getenv("GRPC_EXPERIMENTS") != NULL ? getenv("GRPC_EXPERIMENTS") : ""));
    if (s->release_startup_pages) {
        size_t advised = 0;
        rc = sn_codepages_release(&advised);
        if (rc != 0)
            sn_log_warn("cannot drop the start-up code pages", SN_LOG_STR("error", strerror(-rc)));
    }
    return 0;
}

/* Frees whatever start() created, in reverse order; safe on a partly started sidecar. */
static void teardown(sidecar *sc)
{
    if (sc->grpc != NULL)
        sn_grpc_server_destroy(sc->grpc);
    if (sc->http != NULL)
        sn_http_server_destroy(sc->http);
    if (sc->admin != NULL)
        sn_admin_destroy(sc->admin);
    sn_alert_ship_destroy(sc->alert_ship);
    sc->alert_ship = NULL;
    if (sc->ship != NULL)
        sn_ship_destroy(sc->ship);
    if (sc->pipeline != NULL)
        sn_pipeline_destroy(sc->pipeline);
    sn_memguard_close(sc->memguard);
    sc->memguard = NULL;
    /* Let the closed handles' callbacks run (the pipeline frees itself in them). */
    uv_run(&sc->loop, UV_RUN_DEFAULT);
    if (sc->tee != NULL)
        sn_tee_destroy(sc->tee, 2000, NULL);
    sn_metrics_destroy(sc->metrics);
    sn_local_detect_destroy(sc->detect);
    sn_batch_encoder_destroy(sc->encoder);
    if (sc->spool != NULL) {
        (void)sn_spool_sync(sc->spool);
        sn_spool_close(sc->spool);
    }
    sn_price_table_destroy(sc->prices);
}

int main(int argc, char **argv)
{
    static const sn_program_info info = {
        .name = "sentinel-sidecar",
        .version = SENTINEL_VERSION,
        .component = "sidecar",
        .summary = "per-pod OTLP receiver: LLM facts, local detection, batches to the aggregator",
        .flags = flags,
        .nflags = sizeof flags / sizeof flags[0],
        .validate = validate_settings,
    };
    static sidecar sc; /* large (settings); zeroed */
    sn_local_detect_config_defaults(&sc.s.local);
    sn_cli_result res;
    int outcome = sn_cli_load(argc, argv, &info, descriptors,
                              sizeof descriptors / sizeof descriptors[0], &sc.s, &res);
    if (outcome != SN_CLI_RUN)
        return sn_cli_exit_status(outcome);
    signal(SIGPIPE, SIG_IGN);
    sn_grpc_unary_route_logs(); /* gRPC's own lines as ours (e.g. unknown grpc-encoding values) */
    /* Before any thread exists; MALLOC_ARENA_MAX in the environment wins. */
    if (sc.s.malloc_arenas > 0 && getenv("MALLOC_ARENA_MAX") == NULL)
        (void)mallopt(M_ARENA_MAX, (int)sc.s.malloc_arenas);
    /* A fixed threshold also fixes the trim threshold (128 KiB); glibc's dynamic one keeps every
     * later request-sized buffer in the heap once one was freed (docs/sidecar.md, "Memory").
     * MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES in the environment win. */
    if (sc.s.malloc_mmap_threshold > 0 && getenv("MALLOC_MMAP_THRESHOLD_") == NULL &&
        getenv("GLIBC_TUNABLES") == NULL)
        (void)mallopt(M_MMAP_THRESHOLD, (int)sc.s.malloc_mmap_threshold);
    /* Before the first grpc_init, which reads it (docs/sidecar.md, "Threads and latency"). */
    if (getenv("GRPC_POLL_STRATEGY") == NULL)
        (void)setenv("GRPC_POLL_STRATEGY", poll_names[sc.s.poll_strategy], 0);
    /* Also before it: gRPC reads its experiments once (docs/sidecar.md, "Memory"). */
    if (sn_grpc_unary_read_chunks(sc.s.grpc_read_chunks) != 0) {
        fprintf(stderr, "sentinel-sidecar: cannot set GRPC_EXPERIMENTS: %s\n", strerror(errno));
        return 1;
    }

    int rc = 1;
    if (uv_loop_init(&sc.loop) != 0) {
        sn_log_error("cannot create the event loop");
        goto out_cleanup;
    }
    if (start(&sc) == 0) {
        uv_run(&sc.loop, UV_RUN_DEFAULT);
        rc = 0;
    }
    teardown(&sc);
    uv_loop_close(&sc.loop);
    if (rc == 0)
        sn_log_info("sentinel-sidecar stopped");
out_cleanup:
    sn_cli_result_cleanup(&res);
    return rc;
}
