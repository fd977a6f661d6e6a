/*
 * server.c -- HTTPS for the webhook: libmicrohttpd + GnuTLS, certificates swapped on change.
 */
#include "server.h"

#include "admin.h"
#include "admission.h"
#include "config.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Reasons counted; the handles are looked up once at create. */
static const char *const skip_reasons[] = {
    "invalid_pod",  "already_injected", "system_namespace", "opted_out",
    "host_network", "not_opted_in",     "not_pod_create",   "needs_native_sidecar"};
static const char *const fail_reasons[] = {"internal",     "invalid_object", "parse",
                                           "not_a_review", "no_uid",         "too_large",
                                           "media_type",   "method"};
#define NSKIP (sizeof skip_reasons / sizeof skip_reasons[0])
#define NFAIL (sizeof fail_reasons / sizeof fail_reasons[0])

/* One certificate pair as read from the files. */
typedef struct cert_pair {
    char *cert;
    char *key;
    size_t cert_len, key_len;
} cert_pair;

struct sn_injector_server {
    char listen[SN_CONFIG_HOST_MAX + 16];
    char cert_file[4096];
    char key_file[4096];
    size_t max_body;
    unsigned threads, max_connections, timeout_s;
    const sn_inject_config *inject;
    sn_metrics *metrics;

    int fd; /* the listening socket, owned here */
    uint16_t port;
    struct MHD_Daemon *daemon;
    cert_pair current; /* the pair the daemon serves (its memory must outlive the daemon) */
    cert_pair refused; /* the last pair that did not load, not retried until it changes */
    cert_pair pending; /* a pair that did not load once: refused if seen again next poll */

    sn_counter *requests;
    sn_counter *injected_native, *injected_regular;
    sn_counter *skipped[NSKIP];
    sn_counter *failed[NFAIL];
    sn_counter *warnings;
    sn_histogram *duration;
    sn_counter *reload_ok, *reload_failed;
    sn_gauge *cert_expiry;
};

/* One request in progress. */
typedef struct request {
    struct timespec start;
    char *body;
    size_t len, cap;
    bool too_large;
} request;

static void cert_pair_free(cert_pair *p)
{
    free(p->cert);
    free(p->key);
    memset(p, 0, sizeof *p);
}

static bool cert_pair_equal(const cert_pair *a, const cert_pair *b)
{
    return a->cert != NULL && b->cert != NULL && a->cert_len == b->cert_len &&
           a->key_len == b->key_len && memcmp(a->cert, b->cert, a->cert_len) == 0 &&
           memcmp(a->key, b->key, a->key_len) == 0;
}

/* Reads a whole file (at most SN_INJECTOR_CERT_MAX bytes) into a malloc'd NUL-terminated
 * buffer. Returns 0 or a negative errno (-EFBIG when too large). */
static int read_file(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char *buf = malloc(SN_INJECTOR_CERT_MAX + 1);
    int rc = 0;
    size_t n = 0;
    if (buf == NULL) {
        rc = -ENOMEM;
        goto out_close;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, SN_INJECTOR_CERT_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > SN_INJECTOR_CERT_MAX) {
            rc = -EFBIG;
            break;
        }
    }
    if (rc != 0) {
        free(buf);
        goto out_close;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
out_close:
    close(fd);
    return rc;
}

/* Reads both files into p. */
static int read_pair(const sn_injector_server *s, cert_pair *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    int rc = read_file(s->cert_file, &p->cert, &p->cert_len);
    if (rc != 0) {
        snprintf(err, errlen, "tls.cert: cannot read %s: %s", s->cert_file, strerror(-rc));
        return rc;
    }
    rc = read_file(s->key_file, &p->key, &p->key_len);
    if (rc != 0) {
        snprintf(err, errlen, "tls.key: cannot read %s: %s", s->key_file, strerror(-rc));
        cert_pair_free(p);
        return rc;
    }
    return 0;
}

/* Checks with GnuTLS that the pair loads and the key matches; sets *expiry (Unix time of the
 * leaf's notAfter). Returns 0 or -EINVAL with a message. */
static int check_pair(const cert_pair *p, double *expiry, char *err, size_t errlen)
{
    gnutls_certificate_credentials_t cred;
    if (gnutls_certificate_allocate_credentials(&cred) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    gnutls_datum_t c = {(unsigned char *)p->cert, (unsigned)p->cert_len};
    gnutls_datum_t k = {(unsigned char *)p->key, (unsigned)p->key_len};
    int g = gnutls_certificate_set_x509_key_mem(cred, &c, &k, GNUTLS_X509_FMT_PEM);
    gnutls_certificate_free_credentials(cred);
    if (g < 0) {
        snprintf(err, errlen, "the certificate and key do not load: %s", gnutls_strerror(g));
        return -EINVAL;
    }
    gnutls_x509_crt_t crt;
    *expiry = 0;
    if (gnutls_x509_crt_init(&crt) == 0) {
        if (gnutls_x509_crt_import(crt, &c, GNUTLS_X509_FMT_PEM) == 0)
            *expiry = (double)gnutls_x509_crt_get_expiration_time(crt);
        gnutls_x509_crt_deinit(crt);
    }
    return 0;
}

/* libmicrohttpd's own messages (TLS handshake failures, mostly): debug level. */
static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    sn_log_debug("libmicrohttpd", SN_LOG_STR("detail", buf));
}

/* Queues a response with body (copied) and content type. */
static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *ctype,
                               const char *body, size_t len, const char *allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (allow != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* A 4xx refusal of /mutate as a Kubernetes Status object; counted as failed. */
static enum MHD_Result refuse(sn_injector_server *s, struct MHD_Connection *conn, unsigned status,
                              const char *reason, const char *msg, const char *allow)
{
    for (size_t i = 0; i < NFAIL; i++)
        if (strcmp(fail_reasons[i], reason) == 0)
            sn_counter_inc(s->failed[i]);
    json_t *st = json_pack("{s:s, s:s, s:{}, s:s, s:s, s:s, s:i}", "kind", "Status", "apiVersion",
                           "v1", "metadata", "status", "Failure", "message", msg, "reason",
                           status == 413   ? "RequestEntityTooLarge"
                           : status == 415 ? "UnsupportedMediaType"
                           : status == 405 ? "MethodNotAllowed"
                                           : "BadRequest",
                           "code", (int)status);
    char *text = st != NULL ? json_dumps(st, JSON_COMPACT) : NULL;
    json_decref(st);
    enum MHD_Result ret = respond(conn, status, "application/json", text != NULL ? text : "{}",
                                  text != NULL ? strlen(text) : 2, allow);
    free(text);
    sn_log_warn("admission request refused", SN_LOG_INT("status", status),
                SN_LOG_STR("reason", reason), SN_LOG_STR("detail", msg));
    return ret;
}

/* True for "application/json" with optional parameters, any case. */
static bool is_json_type(const char *ct)
{
    if (ct == NULL)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strlen("application/json");
    return strncasecmp(ct, "application/json", n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* Records the outcome of one admission in the metrics and the log. */
static void account(sn_injector_server *s, const sn_admission_outcome *oc, double seconds)
{
    sn_histogram_observe(s->duration, seconds);
    sn_counter_add(s->warnings, oc->warnings);
    if (strcmp(oc->result, "injected") == 0) {
        sn_counter_inc(strcmp(oc->reason, "native") == 0 ? s->injected_native
                                                         : s->injected_regular);
    } else {
        const char *const *names = strcmp(oc->result, "skipped") == 0 ? skip_reasons : fail_reasons;
        size_t n = names == skip_reasons ? NSKIP : NFAIL;
        sn_counter **c = names == skip_reasons ? s->skipped : s->failed;
        for (size_t i = 0; i < n; i++)
            if (strcmp(names[i], oc->reason) == 0)
                sn_counter_inc(c[i]);
    }
    sn_log_level lvl = strcmp(oc->result, "injected") == 0 || strcmp(oc->result, "skipped") == 0
                           ? SN_LOG_INFO
                           : SN_LOG_WARN;
    sn_log(lvl, "admission", SN_LOG_STR("uid", oc->uid), SN_LOG_STR("namespace", oc->ns),
           SN_LOG_STR("pod", oc->pod), SN_LOG_STR("result", oc->result),
           SN_LOG_STR("reason", oc->reason), SN_LOG_BOOL("dry_run", oc->dry_run),
           SN_LOG_UINT("warnings", oc->warnings), SN_LOG_DBL("seconds", seconds));
}

static double since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Answers POST /mutate[/namespace] once the body is in. */
static enum MHD_Result mutate(sn_injector_server *s, struct MHD_Connection *conn, request *rq,
                              sn_inject_policy policy)
{
    sn_counter_inc(s->requests);
    if (rq->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the body is larger than %zu bytes", s->max_body);
        return refuse(s, conn, 413, "too_large", msg, NULL);
    }
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (!is_json_type(ct))
        return refuse(s, conn, 415, "media_type", "Content-Type must be application/json", NULL);
    char *out = NULL;
    size_t outlen = 0;
    sn_admission_outcome oc;
    int rc = sn_admission_handle(s->inject, policy, rq->body != NULL ? rq->body : "", rq->len, &out,
                                 &outlen, &oc);
    if (rc != 0) {
        sn_counter_inc(s->failed[0]);
        sn_log_error("admission: out of memory");
        return respond(conn, 500, "application/json", "{}", 2, NULL);
    }
    if (oc.http_status != 200) {
        for (size_t i = 0; i < NFAIL; i++)
            if (strcmp(fail_reasons[i], oc.reason) == 0)
                sn_counter_inc(s->failed[i]);
        sn_log_warn("admission request refused", SN_LOG_INT("status", oc.http_status),
                    SN_LOG_STR("reason", oc.reason));
    } else {
        account(s, &oc, since(&rq->start));
    }
    enum MHD_Result ret = respond(conn, oc.http_status, "application/json", out, outlen, NULL);
    free(out);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    (void)version;
    sn_injector_server *s = cls;
    request *rq = *con_cls;
    if (rq == NULL) {
        rq = calloc(1, sizeof *rq);
        if (rq == NULL)
            return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &rq->start);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl != NULL) {
            char *end;
            unsigned long long v = strtoull(cl, &end, 10);
            if (*end == '\0' && v > s->max_body)
                rq->too_large = true;
        }
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->too_large || rq->len + n > s->max_body) {
            rq->too_large = true;
            return MHD_YES;
        }
        if (rq->len + n + 1 > rq->cap) {
            size_t ncap = rq->cap == 0 ? 16384 : rq->cap;
            while (ncap < rq->len + n + 1)
                ncap *= 2;
            char *b = realloc(rq->body, ncap);
            if (b == NULL)
                return MHD_NO;
            rq->body = b;
            rq->cap = ncap;
        }
        memcpy(rq->body + rq->len, upload_data, n);
        rq->len += n;
        return MHD_YES;
    }
    sn_inject_policy policy = SN_INJECT_OPT_IN;
    bool is_mutate = strcmp(url, "/mutate") == 0;
    if (strcmp(url, "/mutate/namespace") == 0) {
        is_mutate = true;
        policy = SN_INJECT_ENABLED;
    }
    if (is_mutate) {
        if (strcmp(method, "POST") != 0)
            return refuse(s, conn, 405, "method", "use POST", "POST");
        return mutate(s, conn, rq, policy);
    }
    sn_http_reply reply = {.status = 200};
    snprintf(reply.content_type, sizeof reply.content_type, "text/plain; charset=utf-8");
    if (sn_admin_route(s->metrics, NULL, NULL, method, url, &reply)) {
        enum MHD_Result ret = respond(conn, reply.status, reply.content_type,
                                      reply.body != NULL ? reply.body : "", reply.len, reply.allow);
        free(reply.body);
        return ret;
    }
    static const char nf[] = "not found\n";
    return respond(conn, 404, "text/plain; charset=utf-8", nf, sizeof nf - 1, NULL);
}

static void request_done(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    request *rq = *con_cls;
    if (rq != NULL) {
        free(rq->body);
        free(rq);
        *con_cls = NULL;
    }
}

/* Starts a daemon on the listening socket with pair p. NULL on failure. poll(), not epoll
 * (MHD_USE_AUTO's choice on Linux): the daemon is quiesced (certificate reload, stop), and
 * libmicrohttpd 0.9.75 quiescing an epoll daemon with a thread pool races its workers, which
 * take the listening socket out of their epoll sets too, and aborts the process when it loses
 * ("Failed to remove listen FD from epoll set"); with poll() the workers are told through
 * their ITC channel instead. An admission webhook has few connections. */
static struct MHD_Daemon *start_daemon(sn_injector_server *s, const cert_pair *p)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | MHD_USE_POLL;
    return MHD_start_daemon(
        flags, 0, NULL, NULL, handle, s, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)s->fd,
        MHD_OPTION_HTTPS_MEM_CERT, p->cert, MHD_OPTION_HTTPS_MEM_KEY, p->key,
        MHD_OPTION_THREAD_POOL_SIZE, s->threads, MHD_OPTION_CONNECTION_LIMIT, s->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, s->timeout_s, MHD_OPTION_NOTIFY_COMPLETED, request_done, s,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL, MHD_OPTION_END);
}

/* Waits (up to ms) for a quiesced daemon's connections to end, then stops it. */
static void drain_and_stop(struct MHD_Daemon *d, unsigned ms)
{
    for (unsigned waited = 0; waited < ms; waited += 20) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (info == NULL || info->num_connections == 0)
            break;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(d);
}

static int register_metrics(sn_injector_server *s, char *err, size_t errlen)
{
    static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                     0.05,   0.1,   0.25,   0.5,   1.0};
    sn_metrics_family *f;
    sn_metrics_desc d = {.type = SN_METRICS_COUNTER,
                         .name = "sentinel_injector_admission_requests_total",
                         .help = "POST /mutate requests received"};
    if (sn_metrics_register(s->metrics, &d, &f, err, errlen) != 0)
        return -EINVAL;
    s->requests = sn_metrics_counter(f, NULL);
    d = (sn_metrics_desc){.type = SN_METRICS_COUNTER,
                          .name = "sentinel_injector_injected_total",
                          .help = "pods the sidecar was injected into, by mode (native, regular)",
                          .labels = {"mode"}};
    if (sn_metrics_register(s->metrics, &d, &f, err, errlen) != 0)
        return -EINVAL;
    s->injected_native = sn_metrics_counter(f, (const char *const[]){"native"});
    s->injected_regular = sn_metrics_counter(f, (const char *const[]){"regular"});
    d = (sn_metrics_desc){.type = SN_METRICS_COUNTER,
                          .name = "sentinel_injector_skipped_total",
                          .help = "admission requests answered without injecting, by reason",
                          .labels = {"reason"}};
    if (sn_metrics_register(s->metrics, &d, &f, err, errlen) != 0)
        return -EINVAL;
    for (size_t i = 0; i < NSKIP; i++)
        s->skipped[i] = sn_metrics_counter(f, (const char *const[]){skip_reasons[i]});
    d = (sn_metrics_desc){.type = SN_METRICS_COUNTER,
                          .name = "sentinel_injector_failed_total",
                          .help = "admission requests that failed (internal errors are still "
                                  "admitted), by reason",
                          .labels = {"reason"}};
    if (sn_metrics_register(s->metrics, &d, &f, err, errlen) != 0)
        return -EINVAL;
    for (size_t i = 0; i < NFAIL; i++)
        s->failed[i] = sn_metrics_counter(f, (const char *const[]){fail_reasons[i]});
    d = (sn_metrics_desc){.type = SN_METRICS_COUNTER,
                          .name = "sentinel_injector_override_warnings_total",
                          .help = "invalid or unknown sentinel annotations ignored and reported "
                                  "as admission warnings"};
    if (sn_metrics_register(s->metrics, &d, &f, err, errlen) != 0)
        return -EINVAL;
    s->warnings = sn_metrics_counter(f, NULL);
    d = (sn_metrics_desc){.type = SN_METRICS_HISTOGRAM,
                          .name = "sentinel_injector_admission_duration_seconds",
                          .help = "time to answer one AdmissionReview",
                          .buckets = buckets,
                          .bucket_count = sizeof buckets / sizeof buckets[0]};
    if (sn_metrics_register(s->metrics, &d, &f, err, errlen) != 0)
        return -EINVAL;
    s->duration = sn_metrics_histogram(f, NULL);
    d = (sn_metrics_desc){.type = SN_METRICS_COUNTER,
                          .name = "sentinel_injector_tls_reloads_total",
                          .help = "certificate changes seen, by outcome (success, failure)",
                          .labels = {"outcome"}};
    if (sn_metrics_register(s->metrics, &d, &f, err, errlen) != 0)
        return -EINVAL;
    s->reload_ok = sn_metrics_counter(f, (const char *const[]){"success"});
    s->reload_failed = sn_metrics_counter(f, (const char *const[]){"failure"});
    d = (sn_metrics_desc){.type = SN_METRICS_GAUGE,
                          .name = "sentinel_injector_tls_certificate_expiry_timestamp_seconds",
                          .help = "notAfter of the serving certificate (Unix time)"};
    if (sn_metrics_register(s->metrics, &d, &f, err, errlen) != 0)
        return -EINVAL;
    s->cert_expiry = sn_metrics_gauge(f, NULL);
    return 0;
}

int sn_injector_server_create(const sn_injector_server_config *cfg, sn_injector_server **out,
                              char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->listen == NULL || cfg->cert_file == NULL || cfg->key_file == NULL ||
        cfg->inject == NULL || cfg->metrics == NULL) {
        snprintf(err, errlen, "listen, cert_file, key_file, inject and metrics are required");
        return -EINVAL;
    }
    sn_injector_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->fd = -1;
    int rc = -EINVAL;
    if ((size_t)snprintf(s->listen, sizeof s->listen, "%s", cfg->listen) >= sizeof s->listen ||
        (size_t)snprintf(s->cert_file, sizeof s->cert_file, "%s", cfg->cert_file) >=
            sizeof s->cert_file ||
        (size_t)snprintf(s->key_file, sizeof s->key_file, "%s", cfg->key_file) >=
            sizeof s->key_file) {
        snprintf(err, errlen, "a listen address or file name is too long");
        goto out_free_server;
    }
    s->max_body = cfg->max_body_bytes != 0 ? cfg->max_body_bytes : SN_INJECTOR_DEFAULT_MAX_BODY;
    s->threads = cfg->threads != 0 ? cfg->threads : 2;
    s->max_connections = cfg->max_connections != 0 ? cfg->max_connections : 256;
    s->timeout_s = cfg->connection_timeout_s != 0 ? cfg->connection_timeout_s : 30;
    s->inject = cfg->inject;
    s->metrics = cfg->metrics;
    rc = register_metrics(s, err, errlen);
    if (rc != 0)
        goto out_free_server;
    rc = read_pair(s, &s->current, err, errlen);
    if (rc != 0)
        goto out_free_server;
    double expiry;
    char why[256];
    rc = check_pair(&s->current, &expiry, why, sizeof why);
    if (rc != 0) {
        snprintf(err, errlen, "tls.cert: %s (%s, %s)", why, s->cert_file, s->key_file);
        goto out_free_pair;
    }
    sn_gauge_set(s->cert_expiry, expiry);
    *out = s;
    return 0;
out_free_pair:
    cert_pair_free(&s->current);
out_free_server:
    free(s);
    return rc;
}

/* Creates, binds and listens on the configured address. */
static int open_listener(sn_injector_server *s, char *err, size_t errlen)
{
    sn_config_address a;
    if (sn_config_parse_address(s->listen, true, &a) != 0) {
        snprintf(err, errlen, "injector.endpoint: not host:port (got \"%s\")", s->listen);
        return -EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)a.port);
    int g = getaddrinfo(a.host[0] != '\0' ? a.host : NULL, port, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "injector.endpoint: cannot resolve %s: %s", a.host, gai_strerror(g));
        return -EADDRNOTAVAIL;
    }
    int rc = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
            rc = -errno;
            close(fd);
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
        s->fd = fd;
        rc = 0;
        break;
    }
    freeaddrinfo(res);
    if (rc != 0)
        snprintf(err, errlen, "injector.endpoint: cannot listen on %s: %s", s->listen,
                 strerror(-rc));
    return rc;
}

int sn_injector_server_start(sn_injector_server *s, char *err, size_t errlen)
{
    if (s->daemon != NULL) {
        snprintf(err, errlen, "already started");
        return -EALREADY;
    }
    int rc = open_listener(s, err, errlen);
    if (rc != 0)
        return rc;
    s->daemon = start_daemon(s, &s->current);
    if (s->daemon == NULL) {
        snprintf(err, errlen, "cannot start the HTTPS server (libmicrohttpd with TLS)");
        close(s->fd);
        s->fd = -1;
        s->port = 0;
        return -EIO;
    }
    return 0;
}

uint16_t sn_injector_server_port(const sn_injector_server *s)
{
    return s->daemon != NULL ? s->port : 0;
}

int sn_injector_server_reload(sn_injector_server *s)
{
    cert_pair p;
    char why[512];
    if (read_pair(s, &p, why, sizeof why) != 0) {
        /* A file briefly missing while a Secret volume is updated: try again next time. */
        sn_log_debug("certificate files not readable", SN_LOG_STR("detail", why));
        return 0;
    }
    if (cert_pair_equal(&p, &s->current) || cert_pair_equal(&p, &s->refused)) {
        cert_pair_free(&p);
        return 0;
    }
    double expiry;
    if (check_pair(&p, &expiry, why, sizeof why) != 0) {
        /* Files written one after the other do not match for a moment: give the pair one more
         * poll before calling it bad. */
        if (!cert_pair_equal(&p, &s->pending)) {
            cert_pair_free(&s->pending);
            s->pending = p;
            return 0;
        }
        cert_pair_free(&s->pending);
        sn_counter_inc(s->reload_failed);
        sn_log_warn("new certificate refused; still serving the old one",
                    SN_LOG_STR("cert", s->cert_file), SN_LOG_STR("key", s->key_file),
                    SN_LOG_STR("detail", why));
        cert_pair_free(&s->refused);
        s->refused = p;
        return 0;
    }
    if (s->daemon == NULL) { /* not started: just take it */
        cert_pair_free(&s->current);
        s->current = p;
        sn_gauge_set(s->cert_expiry, expiry);
        return 1;
    }
    struct MHD_Daemon *old = s->daemon;
    MHD_quiesce_daemon(old); /* the socket stays open, owned by us */
    struct MHD_Daemon *d = start_daemon(s, &p);
    if (d == NULL) {
        sn_counter_inc(s->reload_failed);
        sn_log_warn("cannot start the server with the new certificate; keeping the old one",
                    SN_LOG_STR("cert", s->cert_file));
        d = start_daemon(s, &s->current);
        drain_and_stop(old, 2000);
        cert_pair_free(&s->refused);
        s->refused = p;
        s->daemon = d;
        if (d == NULL) {
            sn_log_error("cannot restart the HTTPS server");
            return -EIO;
        }
        return 0;
    }
    s->daemon = d;
    drain_and_stop(old, 2000);
    cert_pair_free(&s->current);
    s->current = p;
    cert_pair_free(&s->refused);
    cert_pair_free(&s->pending);
    sn_counter_inc(s->reload_ok);
    sn_gauge_set(s->cert_expiry, expiry);
    sn_log_info("certificate reloaded", SN_LOG_STR("cert", s->cert_file),
                SN_LOG_DBL("not_after", expiry));
    return 1;
}

void sn_injector_server_stop(sn_injector_server *s, unsigned drain_ms)
{
    if (s->daemon != NULL) {
        MHD_quiesce_daemon(s->daemon);
        drain_and_stop(s->daemon, drain_ms);
        s->daemon = NULL;
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    s->port = 0;
}

void sn_injector_server_destroy(sn_injector_server *s)
{
    if (s == NULL)
        return;
    sn_injector_server_stop(s, 0);
    cert_pair_free(&s->current);
    cert_pair_free(&s->refused);
    cert_pair_free(&s->pending);
    free(s);
}
