/*
 * tee.c -- the optional OTLP tee (see tee.h and docs/sidecar.md).
 *
 * Structure:
 *
 *   receiver threads --sn_tee_submit--> [ FIFO: max requests, max bytes; full -> drop head ]
 *                                              |  mu + cv
 *                                              v
 *                         workers (N threads): pop head -> deliver(): attempt, back off, retry
 *                                              |
 *                                              v
 *                         upstream: gRPC channel (one, shared; one CQ per worker) or
 *                                   libcurl (one multi + easy handle per worker)
 *
 * libcurl is not linked: an HTTP upstream loads libcurl.so.4 with dlopen at sn_tee_create
 * (curl_api), so a sidecar without a tee -- or with a gRPC one -- does not map libcurl and the
 * libraries it pulls in (Kerberos, LDAP, SSH, ...; about 1 MiB resident). The header gives the
 * types and constants only.
 *
 * A request lives in exactly one place: the FIFO (queued), a worker (in_flight), or it has
 * been counted in one final counter and freed. All counters and the FIFO are guarded by `mu`.
 *
 * Shutdown (sn_tee_destroy): `stopping` makes workers exit once the FIFO is empty; when the
 * grace period runs out `abort` is set: attempts in flight are cancelled (curl_multi_wakeup /
 * grpc_call_cancel), backoff waits end, and whatever a worker or the FIFO holds is dropped.
 *
 * Backoff: shared/backoff.h (full jitter with a floor: the delay is drawn from [backoff_ms,
 * ceiling], the ceiling doubling per failure up to max_backoff_ms); a delay the upstream asks for
 * (RetryInfo, Retry-After) replaces the drawn one.
 */
#include "tee.h"

#include "backoff.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CURL_DISABLE_TYPECHECK /* curl_easy_setopt is called through a pointer */
#include <curl/curl.h>
#include <dlfcn.h>
#include <grpc/byte_buffer.h>
#include <grpc/compression.h>
#include <grpc/grpc.h>
/* grpc_security.h declares `f()` prototypes, which -Wstrict-prototypes rejects in C. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <grpc/grpc_security.h>
#pragma GCC diagnostic pop
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <zlib.h>

/* The libcurl functions the tee uses, loaded by curl_load. */
typedef struct curl_api {
    CURLcode (*global_init)(long flags);
    void (*global_cleanup)(void);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *e, CURLoption opt, ...);
    CURLcode (*easy_getinfo)(CURL *e, CURLINFO info, ...);
    const char *(*easy_strerror)(CURLcode code);
    void (*easy_cleanup)(CURL *e);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_add_handle)(CURLM *m, CURL *e);
    CURLMcode (*multi_remove_handle)(CURLM *m, CURL *e);
    CURLMcode (*multi_perform)(CURLM *m, int *running);
    CURLMsg *(*multi_info_read)(CURLM *m, int *left);
    CURLMcode (*multi_poll)(CURLM *m, struct curl_waitfd fds[], unsigned n, int timeout_ms,
                            int *numfds);
    CURLMcode (*multi_wakeup)(CURLM *m);
    CURLMcode (*multi_cleanup)(CURLM *m);
    struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
    void (*slist_free_all)(struct curl_slist *l);
} curl_api;

static curl_api g_curl;
static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static char g_curl_error[256] = "libcurl not loaded"; /* empty once loaded */

/* Loads libcurl.so.4 and its functions, once per process (the library stays loaded). */
static void curl_load_once(void)
{
    void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *why = dlerror();
        snprintf(g_curl_error, sizeof g_curl_error, "cannot load libcurl.so.4: %s",
                 why != NULL ? why : "unknown error");
        return;
    }
    struct {
        const char *name;
        void **slot;
    } fns[] = {
        {"curl_global_init", (void **)&g_curl.global_init},
        {"curl_global_cleanup", (void **)&g_curl.global_cleanup},
        {"curl_easy_init", (void **)&g_curl.easy_init},
        {"curl_easy_setopt", (void **)&g_curl.easy_setopt},
        {"curl_easy_getinfo", (void **)&g_curl.easy_getinfo},
        {"curl_easy_strerror", (void **)&g_curl.easy_strerror},
        {"curl_easy_cleanup", (void **)&g_curl.easy_cleanup},
        {"curl_multi_init", (void **)&g_curl.multi_init},
        {"curl_multi_add_handle", (void **)&g_curl.multi_add_handle},
        {"curl_multi_remove_handle", (void **)&g_curl.multi_remove_handle},
        {"curl_multi_perform", (void **)&g_curl.multi_perform},
        {"curl_multi_info_read", (void **)&g_curl.multi_info_read},
        {"curl_multi_poll", (void **)&g_curl.multi_poll},
        {"curl_multi_wakeup", (void **)&g_curl.multi_wakeup},
        {"curl_multi_cleanup", (void **)&g_curl.multi_cleanup},
        {"curl_slist_append", (void **)&g_curl.slist_append},
        {"curl_slist_free_all", (void **)&g_curl.slist_free_all},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        /* POSIX: a function pointer may be read through a void * (dlsym's contract). */
        *fns[i].slot = dlsym(h, fns[i].name);
        if (*fns[i].slot == NULL) {
            snprintf(g_curl_error, sizeof g_curl_error, "libcurl.so.4 has no %s (too old?)",
                     fns[i].name);
            return;
        }
    }
    g_curl_error[0] = '\0';
}

/* Makes g_curl usable. Returns 0, or -ENOENT with the reason in err. Thread-safe. */
static int curl_load(char *err, size_t errlen)
{
    pthread_once(&g_curl_once, curl_load_once);
    if (g_curl_error[0] == '\0')
        return 0;
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "tee: an HTTP upstream needs libcurl: %s", g_curl_error);
    return -ENOENT;
}
#define SN_TEE_GRPC_PORT      4317u
#define SN_TEE_POLL_MS        50 /* gRPC: how often a waiting worker looks at `abort` */
#define SN_TEE_LOG_EVERY_NS   (10LL * 1000000000LL) /* at most one rejection log per 10 s */
#define SN_TEE_MAX_LIMIT_REQS (1u << 20)
#define SN_TEE_MAX_LIMIT_MS   (24u * 3600u * 1000u)
#define SN_RETRY_INFO_URL     "type.googleapis.com/google.rpc.RetryInfo"
#define SN_STATUS_BIN_KEY     "grpc-status-details-bin"
#define SN_TEE_USER_AGENT     "llm-sentinel-tee/" SENTINEL_VERSION

static const char *const sn_tee_methods[SN_OTLP_SIGNAL_COUNT] = {
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
};

static const char *const sn_tee_paths[SN_OTLP_SIGNAL_COUNT] = {"/v1/traces", "/v1/metrics",
                                                               "/v1/logs"};

/* One queued request; the body follows the struct in the same allocation. */
typedef struct sn_tee_item {
    struct sn_tee_item *next;
    sn_otlp_signal signal;
    sn_otlp_encoding encoding;
    size_t len;
    uint8_t data[];
} sn_tee_item;

/* What one attempt came to. */
typedef enum sn_attempt {
    SN_ATTEMPT_OK = 0, /* the upstream accepted the request */
    SN_ATTEMPT_RETRY,  /* retryable failure; retry_ms >= 0 is the upstream's hint */
    SN_ATTEMPT_REJECT, /* non-retryable refusal */
    SN_ATTEMPT_ABORT   /* cancelled by the end of the grace period */
} sn_attempt;

/* The outcome label of sentinel_sidecar_tee_requests_total, one per final counter. */
typedef enum sn_out {
    SN_OUT_DELIVERED = 0,
    SN_OUT_QUEUE_FULL,
    SN_OUT_TOO_LARGE,
    SN_OUT_REJECTED,
    SN_OUT_EXPIRED,
    SN_OUT_SHUTDOWN,
    SN_OUT_NOT_FORWARDED,
    SN_OUT_COUNT
} sn_out;

static const char *const sn_out_names[SN_OUT_COUNT] = {
    "delivered", "queue_full", "too_large", "rejected", "expired", "shutdown", "not_forwarded"};

/* How a delivered-or-not request is finally counted. */
typedef enum sn_fate {
    SN_FATE_DELIVERED = 0,
    SN_FATE_REJECTED,
    SN_FATE_EXPIRED,
    SN_FATE_SHUTDOWN
} sn_fate;

typedef struct sn_tee_worker {
    struct sn_tee *tee;
    pthread_t thread;
    bool started;
    uint64_t rng;              /* xorshift64 state for jitter */
    CURLM *multi;              /* HTTP */
    CURL *easy;                /* HTTP */
    grpc_completion_queue *cq; /* gRPC */
    char detail[128];          /* the last failure, for logs */
} sn_tee_worker;

/* The parsed SENTINEL_UPSTREAM_OTLP. */
typedef struct sn_tee_target {
    sn_tee_protocol protocol;
    bool tls;
    uint16_t port;
    char host[256];                                       /* without IPv6 brackets */
    char grpc_target[300];                                /* "host:port" / "[v6]:port" */
    char urls[SN_OTLP_SIGNAL_COUNT][SN_TEE_URL_MAX + 16]; /* HTTP: base + /v1/<signal> */
} sn_tee_target;

struct sn_tee {
    sn_tee_config cfg;
    sn_tee_target target;

    pthread_mutex_t mu;
    pthread_cond_t cv;      /* work queued, stopping/abort; CLOCK_MONOTONIC for backoff waits */
    pthread_cond_t done_cv; /* a worker exited */
    pthread_cond_t stop_cv; /* abort: ends backoff waits (kept apart from cv so a worker in
                               backoff never swallows a wake-up meant for an idle one) */
    sn_tee_item *head;
    sn_tee_item *tail;
    bool stopping;
    atomic_bool abort;
    unsigned running; /* workers not yet exited */
    sn_tee_stats st;
    bool upstream_down; /* last attempt failed retryably: logged once per transition */
    int64_t last_reject_log_ns;
    bool json_logged; /* the one warning about JSON with a gRPC upstream */

    /* HTTP */
    struct curl_slist *headers[2][2]; /* by sn_otlp_encoding, then gzip'd body or not */
    bool curl_inited;
    /* gRPC */
    grpc_channel *channel;
    bool grpc_inited;

    /* metrics (all NULL without a registry; the update functions accept NULL) */
    sn_counter *m_outcome[SN_OUT_COUNT];
    sn_counter *m_retries;
    sn_gauge *m_queued;
    sn_gauge *m_queued_bytes;

    unsigned nworkers;
    sn_tee_worker workers[SN_TEE_MAX_WORKERS];
};

/* ---- small helpers ------------------------------------------------------------------------ */

/* CLOCK_MONOTONIC in nanoseconds. */
static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Writes a one-line message into err (if any). */
static void set_err(char *err, size_t errlen, const char *msg, const char *detail)
{
    if (err == NULL || errlen == 0)
        return;
    if (detail != NULL)
        snprintf(err, errlen, "SENTINEL_UPSTREAM_OTLP: %s (got \"%.200s\")", msg, detail);
    else
        snprintf(err, errlen, "SENTINEL_UPSTREAM_OTLP: %s", msg);
}

/* xorshift64: a fast per-worker generator for jitter (not for anything secret). */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

/* ---- URL ---------------------------------------------------------------------------------- */

static bool is_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

static bool is_v6_char(char c)
{
    return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || (c >= '0' && c <= '9') || c == ':' ||
           c == '.';
}

/* Parses `url` into *t: http(s)://host[:port][/path]. The protocol is `forced`, or gRPC for
 * port 4317 without a path, else HTTP. Returns 0, or -EINVAL with a message in err. */
static int parse_url(const char *url, sn_tee_protocol forced, sn_tee_target *t, char *err,
                     size_t errlen)
{
    memset(t, 0, sizeof *t);
    if (url == NULL || url[0] == '\0') {
        set_err(err, errlen, "no upstream URL set", NULL);
        return -EINVAL;
    }
    size_t n = strnlen(url, SN_TEE_URL_MAX);
    if (n >= SN_TEE_URL_MAX) {
        set_err(err, errlen, "URL too long (at most 1023 bytes)", NULL);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7f) {
            set_err(err, errlen, "URL contains a space or a control or non-ASCII character", url);
            return -EINVAL;
        }
        if (c == '?' || c == '#') {
            set_err(err, errlen, "URL must not have a query or fragment", url);
            return -EINVAL;
        }
    }

    const char *p;
    if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        p = url + 8;
        t->tls = true;
    } else {
        set_err(err, errlen, "URL must start with http:// or https://", url);
        return -EINVAL;
    }

    const char *auth_end = strchr(p, '/');
    if (auth_end == NULL)
        auth_end = url + n;
    if (memchr(p, '@', (size_t)(auth_end - p)) != NULL) {
        set_err(err, errlen, "user names and passwords in the URL are not supported", url);
        return -EINVAL;
    }

    /* host */
    const char *h = p, *h_end;
    bool v6 = false;
    if (*p == '[') {
        h = p + 1;
        h_end = memchr(h, ']', (size_t)(auth_end - h));
        if (h_end == NULL || h_end == h) {
            set_err(err, errlen, "bad IPv6 address in URL", url);
            return -EINVAL;
        }
        for (const char *c = h; c < h_end; c++)
            if (!is_v6_char(*c)) {
                set_err(err, errlen, "bad IPv6 address in URL", url);
                return -EINVAL;
            }
        p = h_end + 1;
        v6 = true;
    } else {
        while (p < auth_end && *p != ':') {
            if (!is_host_char(*p)) {
                set_err(err, errlen, "bad host name in URL", url);
                return -EINVAL;
            }
            p++;
        }
        h_end = p;
        if (h_end == h) {
            set_err(err, errlen, "URL has no host", url);
            return -EINVAL;
        }
    }
    size_t hlen = (size_t)(h_end - h);
    if (hlen >= sizeof t->host) {
        set_err(err, errlen, "host name too long", url);
        return -EINVAL;
    }
    memcpy(t->host, h, hlen);
    t->host[hlen] = '\0';

    /* port */
    t->port = t->tls ? 443 : 80;
    if (p < auth_end) {
        if (*p != ':' || p + 1 == auth_end) {
            set_err(err, errlen, "bad port in URL", url);
            return -EINVAL;
        }
        unsigned long port = 0;
        for (p++; p < auth_end; p++) {
            if (*p < '0' || *p > '9' || port > 65535) {
                set_err(err, errlen, "bad port in URL", url);
                return -EINVAL;
            }
            port = port * 10 + (unsigned long)(*p - '0');
        }
        if (port == 0 || port > 65535) {
            set_err(err, errlen, "port must be 1..65535", url);
            return -EINVAL;
        }
        t->port = (uint16_t)port;
    }

    /* path: kept without trailing slashes; the signal's /v1/<signal> is appended */
    const char *path = auth_end;
    size_t plen = strlen(path);
    while (plen > 0 && path[plen - 1] == '/')
        plen--;

    t->protocol = forced;
    if (t->protocol == SN_TEE_AUTO)
        t->protocol = (t->port == SN_TEE_GRPC_PORT && plen == 0) ? SN_TEE_GRPC : SN_TEE_HTTP;
    if (t->protocol == SN_TEE_GRPC && plen > 0) {
        set_err(err, errlen, "a gRPC upstream URL takes no path", url);
        return -EINVAL;
    }

    snprintf(t->grpc_target, sizeof t->grpc_target, v6 ? "[%s]:%u" : "%s:%u", t->host,
             (unsigned)t->port);
    for (int s = 0; s < SN_OTLP_SIGNAL_COUNT; s++)
        snprintf(t->urls[s], sizeof t->urls[s], "%.*s%.*s%s", (int)(auth_end - url), url, (int)plen,
                 path, sn_tee_paths[s]);
    return 0;
}

/* ---- bookkeeping (all under mu) ------------------------------------------------------------ */

/* Drops the oldest queued request, counted as an overflow. */
static void drop_head_locked(sn_tee *t)
{
    sn_tee_item *it = t->head;
    t->head = it->next;
    if (t->head == NULL)
        t->tail = NULL;
    t->st.queued--;
    t->st.queued_bytes -= it->len;
    t->st.dropped_overflow++;
    sn_counter_inc(t->m_outcome[SN_OUT_QUEUE_FULL]);
    free(it);
}

/* Brings the queue gauges up to date with the counters. */
static void queue_gauges_locked(sn_tee *t)
{
    sn_gauge_set(t->m_queued, (double)t->st.queued);
    sn_gauge_set(t->m_queued_bytes, (double)t->st.queued_bytes);
}

/* Counts a request that left a worker. */
static void count_fate_locked(sn_tee *t, sn_fate fate)
{
    t->st.in_flight--;
    switch (fate) {
    case SN_FATE_DELIVERED:
        t->st.delivered++;
        sn_counter_inc(t->m_outcome[SN_OUT_DELIVERED]);
        break;
    case SN_FATE_REJECTED:
        t->st.dropped_rejected++;
        sn_counter_inc(t->m_outcome[SN_OUT_REJECTED]);
        break;
    case SN_FATE_EXPIRED:
        t->st.dropped_expired++;
        sn_counter_inc(t->m_outcome[SN_OUT_EXPIRED]);
        break;
    case SN_FATE_SHUTDOWN:
        t->st.dropped_shutdown++;
        sn_counter_inc(t->m_outcome[SN_OUT_SHUTDOWN]);
        break;
    }
}

/* Notes the outcome of an attempt for the logs: one warning when the upstream starts failing
 * retryably, one info when it recovers, and rejections at most once per 10 s. */
static void note_attempt(sn_tee *t, sn_tee_worker *w, sn_attempt a)
{
    bool log_down = false, log_up = false, log_reject = false;
    pthread_mutex_lock(&t->mu);
    if (a == SN_ATTEMPT_RETRY && !t->upstream_down) {
        t->upstream_down = true;
        log_down = true;
    } else if (a == SN_ATTEMPT_OK && t->upstream_down) {
        t->upstream_down = false;
        log_up = true;
    } else if (a == SN_ATTEMPT_REJECT) {
        int64_t now = now_ns();
        if (t->last_reject_log_ns == 0 || now - t->last_reject_log_ns >= SN_TEE_LOG_EVERY_NS) {
            t->last_reject_log_ns = now;
            log_reject = true;
        }
    }
    pthread_mutex_unlock(&t->mu);
    if (log_down)
        sn_log_warn("tee: upstream collector failing, retrying", SN_LOG_STR("upstream", t->cfg.url),
                    SN_LOG_STR("reason", w->detail));
    if (log_up)
        sn_log_info("tee: upstream collector reachable again", SN_LOG_STR("upstream", t->cfg.url));
    if (log_reject)
        sn_log_warn("tee: upstream collector refused a request, dropped",
                    SN_LOG_STR("upstream", t->cfg.url), SN_LOG_STR("reason", w->detail));
}

/* ---- HTTP --------------------------------------------------------------------------------- */

/* Discards the response body: the tee only needs the status. */
static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    (void)ptr;
    (void)ud;
    return size * nmemb;
}

/* Compresses `in` with gzip into a new buffer (*out, freed by the caller). Returns 0, or -1
 * (the caller then sends the request uncompressed). */
static int gzip_body(const uint8_t *in, size_t len, uint8_t **out, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    uLong cap = deflateBound(&zs, (uLong)len) + 32;
    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        goto out_end;
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = buf;
    zs.avail_out = (uInt)cap;
    if (len > UINT32_MAX || deflate(&zs, Z_FINISH) != Z_STREAM_END)
        goto out_free_buf;
    *out = buf;
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return 0;
out_free_buf:
    free(buf);
out_end:
    deflateEnd(&zs);
    return -1;
}

/* Prepares a worker's libcurl handles. Returns 0 or -ENOMEM. */
static int http_worker_init(sn_tee *t, sn_tee_worker *w)
{
    w->multi = g_curl.multi_init();
    w->easy = g_curl.easy_init();
    if (w->multi == NULL || w->easy == NULL)
        return -ENOMEM;
    CURL *e = w->easy;
    g_curl.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    g_curl.easy_setopt(e, CURLOPT_POST, 1L);
    g_curl.easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body);
    g_curl.easy_setopt(e, CURLOPT_USERAGENT, SN_TEE_USER_AGENT);
    g_curl.easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)t->cfg.timeout_ms);
    g_curl.easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)t->cfg.timeout_ms);
    g_curl.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    g_curl.easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    return 0;
}

/* One HTTP attempt. `body` is the item's own bytes or their gzip'd copy (then sent with
 * Content-Encoding: gzip). Returns the outcome; *retry_ms is the Retry-After hint or -1. */
static sn_attempt http_attempt(sn_tee *t, sn_tee_worker *w, const sn_tee_item *it,
                               const uint8_t *body, size_t len, int64_t *retry_ms)
{
    CURL *e = w->easy;
    *retry_ms = -1;
    g_curl.easy_setopt(e, CURLOPT_URL, t->target.urls[it->signal]);
    g_curl.easy_setopt(e, CURLOPT_HTTPHEADER, t->headers[it->encoding][body != it->data]);
    g_curl.easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    g_curl.easy_setopt(e, CURLOPT_POSTFIELDS, (const char *)body);

    if (g_curl.multi_add_handle(w->multi, e) != CURLM_OK) {
        snprintf(w->detail, sizeof w->detail, "libcurl: cannot start a transfer");
        return SN_ATTEMPT_RETRY;
    }
    CURLcode cc = CURLE_OK;
    bool done = false, aborted = false;
    while (!done) {
        int running = 0;
        if (g_curl.multi_perform(w->multi, &running) != CURLM_OK) {
            cc = CURLE_FAILED_INIT;
            break;
        }
        int left;
        CURLMsg *m;
        while ((m = g_curl.multi_info_read(w->multi, &left)) != NULL)
            if (m->msg == CURLMSG_DONE) {
                cc = m->data.result;
                done = true;
            }
        if (done || running == 0)
            break;
        if (atomic_load(&t->abort)) {
            aborted = true;
            break;
        }
        g_curl.multi_poll(w->multi, NULL, 0, 1000, NULL);
    }
    g_curl.multi_remove_handle(w->multi, e);
    if (aborted)
        return SN_ATTEMPT_ABORT;
    if (!done || cc != CURLE_OK) {
        snprintf(w->detail, sizeof w->detail, "%s",
                 done ? g_curl.easy_strerror(cc) : "libcurl: transfer failed");
        return SN_ATTEMPT_RETRY; /* connection refused, timeout, reset: all worth a retry */
    }
    long code = 0;
    g_curl.easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && code < 300)
        return SN_ATTEMPT_OK;
    snprintf(w->detail, sizeof w->detail, "HTTP status %ld", code);
    if (code == 429 || code == 502 || code == 503 || code == 504) {
        curl_off_t after = -1;
        if (g_curl.easy_getinfo(e, CURLINFO_RETRY_AFTER, &after) == CURLE_OK && after > 0)
            *retry_ms = after > INT32_MAX / 1000 ? (int64_t)INT32_MAX : (int64_t)after * 1000;
        return SN_ATTEMPT_RETRY;
    }
    return SN_ATTEMPT_REJECT;
}

/* ---- gRPC --------------------------------------------------------------------------------- */

/* Reads a protobuf varint at *p (< end). Returns false when truncated or too long. */
static bool pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* Reads the next field's tag and, for wire type 2, its payload (*data, *dlen); for wire type
 * 0 the value in *v. Other wire types are skipped. Returns false on malformed input. */
static bool pb_field(const uint8_t **p, const uint8_t *end, uint32_t *field, unsigned *wt,
                     const uint8_t **data, size_t *dlen, uint64_t *v)
{
    uint64_t tag;
    if (!pb_varint(p, end, &tag))
        return false;
    *field = (uint32_t)(tag >> 3);
    *wt = (unsigned)(tag & 7);
    switch (*wt) {
    case 0:
        return pb_varint(p, end, v);
    case 1:
        if (end - *p < 8)
            return false;
        *p += 8;
        return true;
    case 2: {
        uint64_t n;
        if (!pb_varint(p, end, &n) || n > (uint64_t)(end - *p))
            return false;
        *data = *p;
        *dlen = (size_t)n;
        *p += n;
        return true;
    }
    case 5:
        if (end - *p < 4)
            return false;
        *p += 4;
        return true;
    default:
        return false;
    }
}

/* Finds google.rpc.RetryInfo.retry_delay in a serialized google.rpc.Status (the
 * grpc-status-details-bin trailer). Returns the delay in ms, or -1 if there is none. */
static int64_t parse_retry_info(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len, *d = NULL;
    size_t dl = 0;
    uint32_t f;
    unsigned wt;
    uint64_t v = 0;
    while (p < end) {
        if (!pb_field(&p, end, &f, &wt, &d, &dl, &v))
            return -1;
        if (f != 3 || wt != 2) /* Status.details: repeated Any */
            continue;
        const uint8_t *a = d, *aend = d + dl, *type = NULL, *val = NULL;
        size_t tlen = 0, vlen = 0;
        while (a < aend) {
            const uint8_t *x = NULL;
            size_t xl = 0;
            if (!pb_field(&a, aend, &f, &wt, &x, &xl, &v))
                return -1;
            if (f == 1 && wt == 2) {
                type = x;
                tlen = xl;
            } else if (f == 2 && wt == 2) {
                val = x;
                vlen = xl;
            }
        }
        if (type == NULL || tlen != strlen(SN_RETRY_INFO_URL) ||
            memcmp(type, SN_RETRY_INFO_URL, tlen) != 0 || val == NULL)
            continue;
        /* RetryInfo{retry_delay = 1: Duration{seconds = 1, nanos = 2}} */
        const uint8_t *r = val, *rend = val + vlen;
        while (r < rend) {
            const uint8_t *dur = NULL;
            size_t durl = 0;
            if (!pb_field(&r, rend, &f, &wt, &dur, &durl, &v))
                return -1;
            if (f != 1 || wt != 2)
                continue;
            int64_t secs = 0, nanos = 0;
            const uint8_t *q = dur, *qend = dur + durl;
            while (q < qend) {
                const uint8_t *y = NULL;
                size_t yl = 0;
                if (!pb_field(&q, qend, &f, &wt, &y, &yl, &v))
                    return -1;
                if (f == 1 && wt == 0)
                    secs = (int64_t)v;
                else if (f == 2 && wt == 0)
                    nanos = (int64_t)(int32_t)v;
            }
            if (secs < 0 || nanos < 0 || secs > INT32_MAX / 1000)
                return -1;
            return secs * 1000 + nanos / 1000000;
        }
    }
    return -1;
}

/* Waits for the call's one batch on the worker's queue, cancelling the call if the grace
 * period runs out meanwhile. Returns true if the call was cancelled that way. */
static bool grpc_wait(sn_tee *t, sn_tee_worker *w, grpc_call *call, void *tag)
{
    bool cancelled = false;
    for (;;) {
        gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                          gpr_time_from_millis(SN_TEE_POLL_MS, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(w->cq, until, NULL);
        if (ev.type == GRPC_OP_COMPLETE && ev.tag == tag)
            return cancelled;
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return cancelled; /* not reached: the queue is shut down only after the worker */
        if (!cancelled && atomic_load(&t->abort)) {
            grpc_call_cancel(call, NULL);
            cancelled = true;
        }
    }
}

/* One gRPC attempt with the request in `msg`. Returns the outcome; *retry_ms is the RetryInfo
 * delay or -1. Status rules follow the OTLP specification: UNAVAILABLE, CANCELLED,
 * DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE and DATA_LOSS are retryable, RESOURCE_EXHAUSTED
 * only with RetryInfo, everything else is a refusal. */
static sn_attempt grpc_attempt(sn_tee *t, sn_tee_worker *w, const sn_tee_item *it, grpc_slice msg,
                               int64_t *retry_ms)
{
    *retry_ms = -1;
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                     gpr_time_from_millis((int64_t)t->cfg.timeout_ms, GPR_TIMESPAN));
    grpc_slice method = grpc_slice_from_static_string(sn_tee_methods[it->signal]);
    grpc_call *call = grpc_channel_create_call(t->channel, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq,
                                               method, NULL, deadline, NULL);
    if (call == NULL) {
        snprintf(w->detail, sizeof w->detail, "gRPC: cannot create a call");
        return SN_ATTEMPT_RETRY;
    }
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&msg, 1);
    grpc_byte_buffer *recv = NULL;
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    const char *error_string = NULL;

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    ops[5].data.recv_status_on_client.error_string = &error_string;

    sn_attempt a;
    bool cancelled = false;
    if (grpc_call_start_batch(call, ops, 6, w, NULL) != GRPC_CALL_OK) {
        snprintf(w->detail, sizeof w->detail, "gRPC: cannot start the call");
        a = SN_ATTEMPT_RETRY;
        goto out_free_call;
    }
    cancelled = grpc_wait(t, w, call, w);

    if (cancelled) {
        a = SN_ATTEMPT_ABORT;
    } else if (status == GRPC_STATUS_OK) {
        a = SN_ATTEMPT_OK;
    } else {
        char *d = grpc_slice_to_c_string(details);
        snprintf(w->detail, sizeof w->detail, "gRPC status %d: %.100s", (int)status,
                 d != NULL ? d : "");
        gpr_free(d);
        for (size_t i = 0; i < trailing_md.count; i++)
            if (grpc_slice_str_cmp(trailing_md.metadata[i].key, SN_STATUS_BIN_KEY) == 0)
                *retry_ms = parse_retry_info(GRPC_SLICE_START_PTR(trailing_md.metadata[i].value),
                                             GRPC_SLICE_LENGTH(trailing_md.metadata[i].value));
        switch (status) {
        case GRPC_STATUS_CANCELLED:
        case GRPC_STATUS_DEADLINE_EXCEEDED:
        case GRPC_STATUS_ABORTED:
        case GRPC_STATUS_OUT_OF_RANGE:
        case GRPC_STATUS_UNAVAILABLE:
        case GRPC_STATUS_DATA_LOSS:
            a = SN_ATTEMPT_RETRY;
            break;
        case GRPC_STATUS_RESOURCE_EXHAUSTED:
            a = *retry_ms >= 0 ? SN_ATTEMPT_RETRY : SN_ATTEMPT_REJECT;
            break;
        default:
            a = SN_ATTEMPT_REJECT;
            break;
        }
    }

out_free_call:
    if (recv != NULL)
        grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    grpc_slice_unref(details);
    gpr_free((void *)error_string);
    grpc_call_unref(call);
    return a;
}

/* ---- workers ------------------------------------------------------------------------------ */

/* Waits until `until_ns` (CLOCK_MONOTONIC) or the grace period's end. Returns false when
 * woken by abort. */
static bool backoff_wait(sn_tee *t, int64_t until_ns)
{
    struct timespec ts = {(time_t)(until_ns / 1000000000LL), (long)(until_ns % 1000000000LL)};
    pthread_mutex_lock(&t->mu);
    while (!atomic_load(&t->abort) && now_ns() < until_ns)
        if (pthread_cond_timedwait(&t->stop_cv, &t->mu, &ts) == ETIMEDOUT)
            break;
    bool ok = !atomic_load(&t->abort);
    pthread_mutex_unlock(&t->mu);
    return ok;
}

/* Sends one request until it is delivered, refused, out of retry time or cut off by the end
 * of the grace period. Returns how it ended. */
static sn_fate deliver(sn_tee *t, sn_tee_worker *w, const sn_tee_item *it)
{
    const int64_t first = now_ns();
    const int64_t expiry = first + (int64_t)t->cfg.max_retry_ms * 1000000LL;
    const sn_backoff_config bcfg = {t->cfg.backoff_ms, t->cfg.max_backoff_ms, 2.0};
    sn_backoff bo = {0};
    const uint8_t *body = it->data;
    size_t len = it->len;
    uint8_t *gz = NULL;
    size_t gz_len = 0;
    grpc_slice msg = grpc_empty_slice();
    sn_fate fate = SN_FATE_SHUTDOWN;

    if (t->target.protocol == SN_TEE_HTTP) {
        if (t->cfg.gzip && gzip_body(it->data, it->len, &gz, &gz_len) == 0) {
            body = gz;
            len = gz_len;
        }
    } else {
        msg = grpc_slice_from_copied_buffer((const char *)it->data, it->len);
    }

    for (unsigned retry = 0;; retry++) {
        if (atomic_load(&t->abort))
            break;
        pthread_mutex_lock(&t->mu);
        t->st.attempts++;
        if (retry > 0) {
            t->st.retries++;
            sn_counter_inc(t->m_retries);
        }
        pthread_mutex_unlock(&t->mu);

        int64_t hint = -1;
        sn_attempt a = t->target.protocol == SN_TEE_HTTP ? http_attempt(t, w, it, body, len, &hint)
                                                         : grpc_attempt(t, w, it, msg, &hint);
        note_attempt(t, w, a);
        if (a == SN_ATTEMPT_OK) {
            fate = SN_FATE_DELIVERED;
            break;
        }
        if (a == SN_ATTEMPT_REJECT) {
            fate = SN_FATE_REJECTED;
            break;
        }
        if (a == SN_ATTEMPT_ABORT)
            break;
        /* retryable: wait the upstream's hint, else the backoff; give up past max_retry_ms */
        uint64_t drawn = sn_backoff_next(&bo, &bcfg, rng_next(&w->rng));
        uint64_t delay_ms = hint >= 0 ? (uint64_t)hint : drawn;
        int64_t at = now_ns() + (int64_t)delay_ms * 1000000LL;
        if (at > expiry) {
            fate = SN_FATE_EXPIRED;
            break;
        }
        if (!backoff_wait(t, at))
            break;
    }

    free(gz);
    if (t->target.protocol == SN_TEE_GRPC)
        grpc_slice_unref(msg);
    return fate;
}

/* A worker thread: takes the oldest queued request and delivers it, until the tee stops and
 * the queue is empty, or the grace period ends. */
static void *worker_main(void *arg)
{
    sn_tee_worker *w = arg;
    sn_tee *t = w->tee;

    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (t->head == NULL && !t->stopping && !atomic_load(&t->abort))
            pthread_cond_wait(&t->cv, &t->mu);
        if (atomic_load(&t->abort) || t->head == NULL)
            break;
        sn_tee_item *it = t->head;
        t->head = it->next;
        if (t->head == NULL)
            t->tail = NULL;
        t->st.queued--;
        t->st.queued_bytes -= it->len;
        t->st.in_flight++;
        queue_gauges_locked(t);
        pthread_mutex_unlock(&t->mu);

        sn_fate fate = deliver(t, w, it);
        free(it);

        pthread_mutex_lock(&t->mu);
        count_fate_locked(t, fate);
    }
    t->running--;
    pthread_cond_broadcast(&t->done_cv);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---- public API ---------------------------------------------------------------------------- */

void sn_tee_config_init(sn_tee_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->protocol = SN_TEE_AUTO;
    cfg->max_queue_requests = SN_TEE_DEFAULT_MAX_REQUESTS;
    cfg->max_queue_bytes = SN_TEE_DEFAULT_MAX_BYTES;
    cfg->timeout_ms = SN_TEE_DEFAULT_TIMEOUT_MS;
    cfg->backoff_ms = SN_TEE_DEFAULT_BACKOFF_MS;
    cfg->max_backoff_ms = SN_TEE_DEFAULT_MAX_BACKOFF_MS;
    cfg->max_retry_ms = SN_TEE_DEFAULT_MAX_RETRY_MS;
    cfg->workers = SN_TEE_DEFAULT_WORKERS;
}

/* Fills zero limits with defaults and checks ranges. Returns 0 or -EINVAL with err. */
static int check_config(sn_tee_config *c, char *err, size_t errlen)
{
    if (c->max_queue_requests == 0)
        c->max_queue_requests = SN_TEE_DEFAULT_MAX_REQUESTS;
    if (c->max_queue_bytes == 0)
        c->max_queue_bytes = SN_TEE_DEFAULT_MAX_BYTES;
    if (c->timeout_ms == 0)
        c->timeout_ms = SN_TEE_DEFAULT_TIMEOUT_MS;
    if (c->backoff_ms == 0)
        c->backoff_ms = SN_TEE_DEFAULT_BACKOFF_MS;
    if (c->max_backoff_ms == 0)
        c->max_backoff_ms = SN_TEE_DEFAULT_MAX_BACKOFF_MS;
    if (c->max_retry_ms == 0)
        c->max_retry_ms = SN_TEE_DEFAULT_MAX_RETRY_MS;
    if (c->workers == 0)
        c->workers = SN_TEE_DEFAULT_WORKERS;
    const char *bad = NULL;
    if (c->max_queue_requests > SN_TEE_MAX_LIMIT_REQS)
        bad = "tee queue: at most 1048576 requests";
    else if (c->max_queue_bytes > SIZE_MAX / 2)
        bad = "tee queue: byte limit too large";
    else if (c->timeout_ms > SN_TEE_MAX_LIMIT_MS || c->max_backoff_ms > SN_TEE_MAX_LIMIT_MS ||
             c->max_retry_ms > SN_TEE_MAX_LIMIT_MS)
        bad = "tee: timeouts and backoffs must be at most 24 h";
    else if (c->backoff_ms > c->max_backoff_ms)
        bad = "tee: first backoff above the maximum backoff";
    else if (c->workers > SN_TEE_MAX_WORKERS)
        bad = "tee: at most 16 workers";
    else if (c->protocol != SN_TEE_AUTO && c->protocol != SN_TEE_GRPC && c->protocol != SN_TEE_HTTP)
        bad = "tee: unknown protocol";
    if (bad != NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s", bad);
        return -EINVAL;
    }
    return 0;
}

/* Creates the gRPC channel. Returns 0 or -ENOMEM. */
static int grpc_channel_open(sn_tee *t)
{
    grpc_init();
    t->grpc_inited = true;
    grpc_arg args[6];
    int na = 0;
    args[na].type = GRPC_ARG_INTEGER;
    args[na].key = GRPC_ARG_ENABLE_RETRIES; /* retries are ours, with our limits */
    args[na++].value.integer = 0;
    args[na].type = GRPC_ARG_INTEGER;
    args[na].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
    args[na++].value.integer = (int)t->cfg.backoff_ms;
    args[na].type = GRPC_ARG_INTEGER;
    args[na].key = GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
    args[na++].value.integer = (int)t->cfg.backoff_ms;
    args[na].type = GRPC_ARG_INTEGER;
    args[na].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    args[na++].value.integer = (int)t->cfg.max_backoff_ms;
    args[na].type = GRPC_ARG_STRING;
    args[na].key = GRPC_ARG_PRIMARY_USER_AGENT_STRING;
    args[na++].value.string = SN_TEE_USER_AGENT;
    if (t->cfg.gzip) {
        args[na].type = GRPC_ARG_INTEGER;
        args[na].key = GRPC_COMPRESSION_CHANNEL_DEFAULT_ALGORITHM;
        args[na++].value.integer = GRPC_COMPRESS_GZIP;
    }
    grpc_channel_args chargs = {(size_t)na, args};
    grpc_channel_credentials *creds = t->target.tls
                                          ? grpc_ssl_credentials_create(NULL, NULL, NULL, NULL)
                                          : grpc_insecure_credentials_create();
    if (creds == NULL)
        return -ENOMEM;
    t->channel = grpc_channel_create(t->target.grpc_target, creds, &chargs);
    grpc_channel_credentials_release(creds);
    return t->channel != NULL ? 0 : -ENOMEM;
}

/* Frees everything sn_tee_create may have set up; workers must have been joined. */
static void tee_free(sn_tee *t)
{
    for (unsigned i = 0; i < t->nworkers; i++) {
        sn_tee_worker *w = &t->workers[i];
        if (w->easy != NULL)
            g_curl.easy_cleanup(w->easy);
        if (w->multi != NULL)
            g_curl.multi_cleanup(w->multi);
        if (w->cq != NULL) {
            grpc_completion_queue_shutdown(w->cq);
            while (
                grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
                GRPC_QUEUE_SHUTDOWN)
                ;
            grpc_completion_queue_destroy(w->cq);
        }
    }
    for (int e = 0; e < 2; e++)
        for (int z = 0; z < 2; z++)
            if (t->headers[e][z] != NULL) /* none without an HTTP upstream (nor libcurl) */
                g_curl.slist_free_all(t->headers[e][z]);
    if (t->channel != NULL)
        grpc_channel_destroy(t->channel);
    if (t->grpc_inited)
        grpc_shutdown();
    if (t->curl_inited)
        g_curl.global_cleanup();
    while (t->head != NULL) {
        sn_tee_item *it = t->head;
        t->head = it->next;
        free(it);
    }
    pthread_cond_destroy(&t->stop_cv);
    pthread_cond_destroy(&t->done_cv);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free((char *)t->cfg.url);
    free(t);
}

/* Registers the tee's metric families in `m` and looks up every series once. Returns 0, or the
 * registry's negative errno (-EEXIST when a tee already registered them) with a message. */
static int metrics_register(sn_tee *t, sn_metrics *m, char *err, size_t errlen)
{
    sn_metrics_family *req, *retries, *queued, *bytes;
    int rc;
    if ((rc = sn_metrics_register(
             m,
             &(sn_metrics_desc){.type = SN_METRICS_COUNTER,
                                .name = "sentinel_sidecar_tee_requests_total",
                                .help = "OTLP requests given to the tee, by how they ended: "
                                        "delivered upstream or why not.",
                                .labels = {"outcome"}},
             &req, err, errlen)) != 0 ||
        (rc = sn_metrics_register(
             m,
             &(sn_metrics_desc){.type = SN_METRICS_COUNTER,
                                .name = "sentinel_sidecar_tee_retries_total",
                                .help = "Tee attempts made after a retryable failure."},
             &retries, err, errlen)) != 0 ||
        (rc = sn_metrics_register(
             m,
             &(sn_metrics_desc){.type = SN_METRICS_GAUGE,
                                .name = "sentinel_sidecar_tee_queue_requests",
                                .help = "OTLP requests waiting in the tee's queue."},
             &queued, err, errlen)) != 0 ||
        (rc = sn_metrics_register(
             m,
             &(sn_metrics_desc){.type = SN_METRICS_GAUGE,
                                .name = "sentinel_sidecar_tee_queue_bytes",
                                .help = "Bytes of the OTLP requests waiting in the tee's queue."},
             &bytes, err, errlen)) != 0)
        return rc;
    for (int i = 0; i < SN_OUT_COUNT; i++)
        t->m_outcome[i] = sn_metrics_counter(req, (const char *[]){sn_out_names[i]});
    t->m_retries = sn_metrics_counter(retries, NULL);
    t->m_queued = sn_metrics_gauge(queued, NULL);
    t->m_queued_bytes = sn_metrics_gauge(bytes, NULL);
    return 0;
}

/* Builds the HTTP header lists: Content-Type by encoding, Content-Encoding: gzip for the
 * compressed variant, and no "Expect: 100-continue" (a round trip for nothing). Returns 0 or
 * -ENOMEM (lists built so far are freed by tee_free). */
static int http_headers(sn_tee *t)
{
    static const char *const types[2] = {"Content-Type: application/x-protobuf",
                                         "Content-Type: application/json"};
    for (int e = 0; e < 2; e++)
        for (int z = 0; z < 2; z++) {
            struct curl_slist *l = g_curl.slist_append(NULL, types[e]);
            struct curl_slist *l2 = l != NULL ? g_curl.slist_append(l, "Expect:") : NULL;
            if (l2 != NULL && z == 1)
                l2 = g_curl.slist_append(l2, "Content-Encoding: gzip");
            if (l2 == NULL) {
                g_curl.slist_free_all(l);
                return -ENOMEM;
            }
            t->headers[e][z] = l2;
        }
    return 0;
}

int sn_tee_create(const sn_tee_config *cfg_in, sn_tee **out, char *err, size_t errlen)
{
    sn_tee_config cfg = *cfg_in;
    sn_tee_target target;
    *out = NULL;
    int rc = check_config(&cfg, err, errlen);
    if (rc != 0)
        return rc;
    rc = parse_url(cfg.url, cfg.protocol, &target, err, errlen);
    if (rc != 0)
        return rc;

    sn_tee *t = calloc(1, sizeof *t);
    if (t == NULL)
        goto out_nomem;
    t->cfg = cfg;
    t->target = target;
    t->cfg.url = strdup(cfg.url);
    if (t->cfg.url == NULL) {
        free(t);
        goto out_nomem;
    }
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cv, &ca);
    pthread_cond_init(&t->done_cv, &ca);
    pthread_cond_init(&t->stop_cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&t->abort, false);

    if (cfg.metrics != NULL && (rc = metrics_register(t, cfg.metrics, err, errlen)) != 0) {
        tee_free(t);
        return rc;
    }

    t->nworkers = cfg.workers;
    if (target.protocol == SN_TEE_HTTP) {
        if ((rc = curl_load(err, errlen)) != 0) {
            tee_free(t);
            return rc;
        }
        if (g_curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            goto out_free_tee_nomem;
        t->curl_inited = true;
        if (http_headers(t) != 0)
            goto out_free_tee_nomem;
        for (unsigned i = 0; i < t->nworkers; i++)
            if (http_worker_init(t, &t->workers[i]) != 0)
                goto out_free_tee_nomem;
    } else {
        if (grpc_channel_open(t) != 0)
            goto out_free_tee_nomem;
        for (unsigned i = 0; i < t->nworkers; i++) {
            t->workers[i].cq = grpc_completion_queue_create_for_next(NULL);
            if (t->workers[i].cq == NULL)
                goto out_free_tee_nomem;
        }
    }

    uint64_t seed = (uint64_t)now_ns() ^ (uint64_t)(uintptr_t)t;
    for (unsigned i = 0; i < t->nworkers; i++) {
        sn_tee_worker *w = &t->workers[i];
        w->tee = t;
        w->rng = (seed + 0x9E3779B97F4A7C15ull * (i + 1)) | 1u;
        pthread_mutex_lock(&t->mu);
        t->running++;
        pthread_mutex_unlock(&t->mu);
        rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            pthread_mutex_lock(&t->mu);
            t->running--;
            pthread_mutex_unlock(&t->mu);
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "tee: cannot start a worker thread: %s", strerror(rc));
            sn_tee_destroy(t, 0, NULL); /* joins the ones started */
            return -rc;
        }
        w->started = true;
    }
    sn_log_info("tee: forwarding OTLP to the upstream collector", SN_LOG_STR("upstream", cfg.url),
                SN_LOG_STR("protocol", target.protocol == SN_TEE_GRPC ? "grpc" : "http"));
    *out = t;
    return 0;

out_free_tee_nomem:
    tee_free(t);
out_nomem:
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "tee: out of memory setting up the upstream client");
    return -ENOMEM;
}

int sn_tee_submit(sn_tee *t, sn_otlp_signal signal, sn_otlp_encoding encoding, const uint8_t *body,
                  size_t len)
{
    if ((unsigned)signal >= SN_OTLP_SIGNAL_COUNT || (unsigned)encoding > SN_OTLP_JSON)
        return -EINVAL;
    if (encoding == SN_OTLP_JSON && t->target.protocol == SN_TEE_GRPC) {
        pthread_mutex_lock(&t->mu);
        t->st.submitted++;
        t->st.not_forwarded++;
        sn_counter_inc(t->m_outcome[SN_OUT_NOT_FORWARDED]);
        bool log = !t->json_logged;
        t->json_logged = true;
        pthread_mutex_unlock(&t->mu);
        if (log)
            sn_log_warn("tee: OTLP/JSON requests are not forwarded to a gRPC upstream; point "
                        "SENTINEL_UPSTREAM_OTLP at the collector's OTLP/HTTP port to keep them",
                        SN_LOG_STR("upstream", t->cfg.url));
        return -ENOTSUP;
    }
    if (len > t->cfg.max_queue_bytes) {
        pthread_mutex_lock(&t->mu);
        t->st.submitted++;
        t->st.dropped_too_large++;
        sn_counter_inc(t->m_outcome[SN_OUT_TOO_LARGE]);
        pthread_mutex_unlock(&t->mu);
        return -EMSGSIZE;
    }
    /* Copy outside the lock: the lock is held only for the list operations. */
    sn_tee_item *it = malloc(sizeof *it + len);
    if (it != NULL) {
        it->next = NULL;
        it->signal = signal;
        it->encoding = encoding;
        it->len = len;
        if (len > 0)
            memcpy(it->data, body, len);
    }

    int rc = 0;
    pthread_mutex_lock(&t->mu);
    t->st.submitted++;
    if (it == NULL) {
        t->st.dropped_overflow++; /* no memory: counted like a full queue */
        sn_counter_inc(t->m_outcome[SN_OUT_QUEUE_FULL]);
        rc = -ENOMEM;
    } else if (t->stopping) {
        t->st.dropped_shutdown++;
        sn_counter_inc(t->m_outcome[SN_OUT_SHUTDOWN]);
        rc = -ESHUTDOWN;
    } else {
        while (t->head != NULL && (t->st.queued + 1 > t->cfg.max_queue_requests ||
                                   t->st.queued_bytes + len > t->cfg.max_queue_bytes))
            drop_head_locked(t);
        if (t->tail != NULL)
            t->tail->next = it;
        else
            t->head = it;
        t->tail = it;
        t->st.queued++;
        t->st.queued_bytes += len;
        queue_gauges_locked(t);
        pthread_cond_signal(&t->cv);
        it = NULL;
    }
    pthread_mutex_unlock(&t->mu);
    free(it);
    return rc;
}

void sn_tee_stats_get(sn_tee *t, sn_tee_stats *out)
{
    pthread_mutex_lock(&t->mu);
    *out = t->st;
    pthread_mutex_unlock(&t->mu);
}

sn_tee_protocol sn_tee_protocol_of(const sn_tee *t)
{
    return t->target.protocol;
}

void sn_tee_destroy(sn_tee *t, uint32_t grace_ms, sn_tee_stats *final)
{
    if (t == NULL)
        return;
    int64_t deadline = now_ns() + (int64_t)grace_ms * 1000000LL;
    struct timespec ts = {(time_t)(deadline / 1000000000LL), (long)(deadline % 1000000000LL)};

    pthread_mutex_lock(&t->mu);
    t->stopping = true;
    pthread_cond_broadcast(&t->cv);
    while (t->running > 0 && now_ns() < deadline)
        if (pthread_cond_timedwait(&t->done_cv, &t->mu, &ts) == ETIMEDOUT)
            break;
    bool cut = t->running > 0;
    if (cut) {
        atomic_store(&t->abort, true);
        pthread_cond_broadcast(&t->cv);
        pthread_cond_broadcast(&t->stop_cv);
    }
    pthread_mutex_unlock(&t->mu);
    if (cut)
        for (unsigned i = 0; i < t->nworkers; i++)
            if (t->workers[i].multi != NULL)
                g_curl.multi_wakeup(t->workers[i].multi);

    for (unsigned i = 0; i < t->nworkers; i++)
        if (t->workers[i].started)
            pthread_join(t->workers[i].thread, NULL);

    /* What is still queued is dropped and counted. */
    pthread_mutex_lock(&t->mu);
    while (t->head != NULL) {
        sn_tee_item *it = t->head;
        t->head = it->next;
        t->st.queued--;
        t->st.queued_bytes -= it->len;
        t->st.dropped_shutdown++;
        sn_counter_inc(t->m_outcome[SN_OUT_SHUTDOWN]);
        free(it);
    }
    t->tail = NULL;
    queue_gauges_locked(t);
    sn_tee_stats st = t->st;
    pthread_mutex_unlock(&t->mu);
    if (st.dropped_shutdown > 0)
        sn_log_warn("tee: stopped with requests not forwarded",
                    SN_LOG_UINT("dropped", st.dropped_shutdown));
    if (final != NULL)
        *final = st;
    tee_free(t);
}
