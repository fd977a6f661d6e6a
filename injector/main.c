/*
 * main.c -- sentinel-injector: the Kubernetes mutating admission webhook (`serve`) and the
 * offline manifest injector (`inject`).
 *
 *   sentinel-injector serve            HTTPS on SENTINEL_INJECTOR_ENDPOINT (0.0.0.0:8443) with
 *                                      SENTINEL_TLS_CERT / SENTINEL_TLS_KEY, re-read on change
 *   sentinel-injector inject [-f FILE] [-o FILE] [-n NAMESPACE]
 *                                      reads manifests (stdin by default), writes them injected
 *
 * Exit status: 0 after a clean shutdown (SIGTERM/SIGINT) or a successful inject, 1 on a runtime
 * failure (cannot listen, input that does not parse), 2 on bad usage or configuration.
 */
#include "cli.h"
#include "config.h"
#include "inject.h"
#include "inject_cli.h"
#include "log.h"
#include "metrics.h"
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct injector_settings {
    sn_config_address endpoint;
    char tls_cert[4096];
    char tls_key[4096];
    int64_t reload_interval;
    int64_t max_body;
    int64_t threads;
    int64_t max_connections;
    int64_t drain_timeout;
    sn_inject_config inject;
    sn_cli_log_settings log;
} injector_settings;

static const sn_config_desc descriptors[] = {
    {SN__CFG("injector.endpoint", SN_CONFIG_ADDRESS, injector_settings, endpoint, "0.0.0.0:8443",
             "webhook HTTPS listen address (serve)"),
     .env = "SENTINEL_INJECTOR_ENDPOINT", .flags = SN_CONFIG_ANY_PORT},
    {SN__CFG("tls.cert", SN_CONFIG_STRING, injector_settings, tls_cert, "",
             "PEM certificate chain of the webhook (required for serve; re-read on change)"),
     .env = "SENTINEL_TLS_CERT"},
    {SN__CFG("tls.key", SN_CONFIG_STRING, injector_settings, tls_key, "",
             "PEM private key of the webhook (required for serve; re-read on change)"),
     .env = "SENTINEL_TLS_KEY"},
    SN_CFG_DURATION("tls.reload_interval", injector_settings, reload_interval, "5s",
                    50 * SN_NS_PER_MS, 3600 * SN_NS_PER_SEC,
                    "how often the certificate files are checked for changes"),
    SN_CFG_SIZE("injector.max_body_bytes", injector_settings, max_body, "4MiB", 65536,
                (int64_t)64 << 20, "largest AdmissionReview accepted (over it: 413)"),
    SN_CFG_INT("injector.threads", injector_settings, threads, "2", 1, 64, "HTTPS worker threads"),
    SN_CFG_INT("injector.max_connections", injector_settings, max_connections, "256", 1, 65536,
               "connections served at once"),
    SN_CFG_DURATION("shutdown.drain_timeout", injector_settings, drain_timeout, "5s", 0,
                    600 * SN_NS_PER_SEC,
                    "on SIGTERM, how long requests in progress may take to finish"),
    SN_INJECT_DESCRIPTORS("sidecar", injector_settings, inject),
    SN_CLI_LOG_DESCRIPTORS(injector_settings, log),
};

/* The offline command's own flags. */
static struct {
    const char *file;
    const char *output;
    const char *ns;
    sn_inject_format format;
} offline;

static int set_file(void *ud, const char *value, sn_config_error *err)
{
    (void)ud;
    (void)err;
    offline.file = value;
    return 0;
}

static int set_output(void *ud, const char *value, sn_config_error *err)
{
    (void)ud;
    (void)err;
    offline.output = value;
    return 0;
}

static int set_namespace(void *ud, const char *value, sn_config_error *err)
{
    (void)ud;
    if (value[0] == '\0' || strlen(value) > 253) {
        snprintf(err->msg, sizeof err->msg, "--namespace: must be a namespace name");
        return -EINVAL;
    }
    offline.ns = value;
    return 0;
}

static int set_format(void *ud, const char *value, sn_config_error *err)
{
    (void)ud;
    if (strcmp(value, "yaml") == 0) {
        offline.format = SN_INJECT_FORMAT_YAML;
    } else if (strcmp(value, "json") == 0) {
        offline.format = SN_INJECT_FORMAT_JSON;
    } else {
        snprintf(err->msg, sizeof err->msg, "--output-format: must be yaml or json (got \"%s\")",
                 value);
        return -EINVAL;
    }
    return 0;
}

static const sn_cli_flag flags[] = {
    {.name = "filename",
     .short_name = 'f',
     .takes_value = true,
     .metavar = "FILE",
     .cb = set_file,
     .help = "inject: manifest file to read (\"-\" or none: stdin)"},
    {.name = "output",
     .short_name = 'o',
     .takes_value = true,
     .metavar = "FILE",
     .cb = set_output,
     .help = "inject: write here instead of stdout"},
    {.name = "output-format",
     .takes_value = true,
     .metavar = "yaml|json",
     .cb = set_format,
     .help = "inject: output format (default: the input's)"},
    {.name = "namespace",
     .short_name = 'n',
     .takes_value = true,
     .metavar = "NAMESPACE",
     .cb = set_namespace,
     .help = "inject: namespace to assume (default: each manifest's own)"},
    {.name = "endpoint", .takes_value = true, .metavar = "HOST:PORT", .path = "injector.endpoint"},
    {.name = "tls-cert", .takes_value = true, .metavar = "FILE", .path = "tls.cert"},
    {.name = "tls-key", .takes_value = true, .metavar = "FILE", .path = "tls.key"},
};

static int validate_settings(void *config, sn_config_error *err)
{
    injector_settings *s = config;
    return sn_inject_config_check(&s->inject, "sidecar", err);
}

/* Reads all of fd (at most SN_INJECT_INPUT_MAX bytes) into a malloc'd buffer. */
static int read_all(int fd, char **out, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return -ENOMEM;
    for (;;) {
        if (n == cap) {
            if (cap >= SN_INJECT_INPUT_MAX) {
                free(buf);
                return -EFBIG;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                return -ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            return -e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Writes all of buf to fd. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* `inject`: returns the exit status. */
static int run_inject(const injector_settings *s)
{
    int in = STDIN_FILENO;
    const char *name = "stdin";
    if (offline.file != NULL && strcmp(offline.file, "-") != 0) {
        name = offline.file;
        in = open(offline.file, O_RDONLY | O_CLOEXEC);
        if (in < 0) {
            sn_log_error("cannot open the manifest", SN_LOG_STR("file", name), SN_LOG_ERRNO(errno));
            return 1;
        }
    }
    char *text = NULL;
    size_t len = 0;
    int rc = read_all(in, &text, &len);
    if (in != STDIN_FILENO)
        close(in);
    if (rc != 0) {
        sn_log_error("cannot read the manifest", SN_LOG_STR("file", name), SN_LOG_ERRNO(rc));
        return 1;
    }
    char *out = NULL;
    size_t outlen = 0;
    sn_inject_stats st;
    char err[512];
    rc = sn_inject_stream(&s->inject, text, len, offline.ns, offline.format, &out, &outlen, &st,
                          err, sizeof err);
    free(text);
    if (rc != 0) {
        sn_log_error("cannot inject the manifest", SN_LOG_STR("file", name),
                     SN_LOG_STR("detail", err));
        return 1;
    }
    int fd = STDOUT_FILENO;
    if (offline.output != NULL && strcmp(offline.output, "-") != 0) {
        fd = open(offline.output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            sn_log_error("cannot create the output", SN_LOG_STR("file", offline.output),
                         SN_LOG_ERRNO(errno));
            free(out);
            return 1;
        }
    }
    rc = write_all(fd, out, outlen);
    if (fd != STDOUT_FILENO && close(fd) != 0 && rc == 0)
        rc = -errno;
    free(out);
    if (rc != 0) {
        sn_log_error("cannot write the output", SN_LOG_ERRNO(rc));
        return 1;
    }
    sn_log_debug("inject done", SN_LOG_UINT("documents", st.documents),
                 SN_LOG_UINT("templates", st.templates), SN_LOG_UINT("injected", st.injected),
                 SN_LOG_UINT("skipped", st.skipped), SN_LOG_UINT("warnings", st.warnings));
    return 0;
}

/* `serve`: returns the exit status. */
static int run_serve(const injector_settings *s)
{
    if (s->tls_cert[0] == '\0' || s->tls_key[0] == '\0') {
        sn_log_error(s->tls_cert[0] == '\0'
                         ? "config: tls.cert: required for serve (set SENTINEL_TLS_CERT)"
                         : "config: tls.key: required for serve (set SENTINEL_TLS_KEY)");
        return 2;
    }
    /* Signals are taken synchronously by this thread; the server threads inherit the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status = 1;
    char err[512];
    sn_metrics *metrics = NULL;
    if (sn_metrics_create(NULL, &metrics, err, sizeof err) != 0 ||
        sn_metrics_register_process(metrics, err, sizeof err) != 0) {
        sn_log_error("cannot create the metrics", SN_LOG_STR("detail", err));
        goto out_free_metrics;
    }
    char listen[SN_CONFIG_HOST_MAX + 16];
    sn_config_format_address(&s->endpoint, listen, sizeof listen);
    sn_injector_server_config sc = {
        .listen = listen,
        .cert_file = s->tls_cert,
        .key_file = s->tls_key,
        .max_body_bytes = (size_t)s->max_body,
        .threads = (unsigned)s->threads,
        .max_connections = (unsigned)s->max_connections,
        .inject = &s->inject,
        .metrics = metrics,
    };
    sn_injector_server *srv = NULL;
    int rc = sn_injector_server_create(&sc, &srv, err, sizeof err);
    if (rc != 0) {
        sn_log_error("config: cannot set up the webhook", SN_LOG_STR("detail", err));
        status = rc == -ENOMEM ? 1 : 2;
        goto out_free_metrics;
    }
    rc = sn_injector_server_start(srv, err, sizeof err);
    if (rc != 0) {
        sn_log_error("cannot start the webhook", SN_LOG_STR("detail", err));
        goto out_free_server;
    }
    sn_log_info("listening", SN_LOG_STR("endpoint", listen),
                SN_LOG_UINT("port", sn_injector_server_port(srv)),
                SN_LOG_STR("sidecar_image", s->inject.image),
                SN_LOG_STR("sidecar_mode", sn_inject_native(&s->inject) ? "native" : "regular"));
    struct timespec tick = {.tv_sec = s->reload_interval / SN_NS_PER_SEC,
                            .tv_nsec = s->reload_interval % SN_NS_PER_SEC};
    for (;;) {
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGINT || sig == SIGTERM) {
            sn_log_info("shutting down", SN_LOG_INT("signal", sig));
            break;
        }
        if (sig < 0 && errno != EAGAIN && errno != EINTR) {
            sn_log_error("sigtimedwait failed", SN_LOG_ERRNO(errno));
            goto out_free_server;
        }
        if (sn_injector_server_reload(srv) < 0)
            goto out_free_server;
    }
    sn_injector_server_stop(srv, (unsigned)(s->drain_timeout / SN_NS_PER_MS));
    status = 0;
    sn_log_info("sentinel-injector stopped");
out_free_server:
    sn_injector_server_destroy(srv);
out_free_metrics:
    sn_metrics_destroy(metrics);
    return status;
}

int main(int argc, char **argv)
{
    static const sn_program_info info = {
        .name = "sentinel-injector",
        .version = SENTINEL_VERSION,
        .component = "injector",
        .summary = "adds the sentinel sidecar to Kubernetes pods: admission webhook (serve) "
                   "and offline manifests (inject)",
        .positional = "serve|inject",
        .flags = flags,
        .nflags = sizeof flags / sizeof flags[0],
        .validate = validate_settings,
    };
    static injector_settings s;
    sn_cli_result res;
    int outcome = sn_cli_load(argc, argv, &info, descriptors,
                              sizeof descriptors / sizeof descriptors[0], &s, &res);
    if (outcome != SN_CLI_RUN)
        return sn_cli_exit_status(outcome);
    int status;
    if (res.nargs != 1 ||
        (strcmp(res.args[0], "serve") != 0 && strcmp(res.args[0], "inject") != 0)) {
        sn_log_error("usage: sentinel-injector [OPTIONS] serve|inject (see --help)");
        status = 2;
    } else if (strcmp(res.args[0], "serve") == 0) {
        status = run_serve(&s);
    } else {
        status = run_inject(&s);
    }
    sn_cli_result_cleanup(&res);
    return status;
}
