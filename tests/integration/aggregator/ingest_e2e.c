/*
 * ingest_e2e.c -- integration test of the real sentinel-aggregator's ingest:
 *
 *   1. starts it on 127.0.0.1:0 with debug.event_log in a temporary directory and reads the
 *      bound port from its "ingest listening" log line;
 *   2. sends batches from two sidecar ids (zstd and plain), replays some, and checks every answer
 *      (OK / DUPLICATE and the acknowledged sequence);
 *   3. sends SIGTERM and expects exit status 0 and a "stopped" line;
 *   4. checks the event log has every event and alert exactly once, with its facts;
 *   5. checks bad configurations exit 2 with one line naming the setting.
 *
 * Usage: ingest_e2e PATH/TO/sentinel-aggregator. Exit 0 when everything held.
 */
#include "ingest_rpc.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>

static int g_failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

typedef struct child {
    pid_t pid;
    int err_fd; /* its stderr */
    char log[65536];
    size_t log_len;
} child;

/* Starts the aggregator with argv (NULL-terminated, argv[0] is the binary) and `env` added. */
static int spawn(child *c, char *const argv[], const char *env)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    memset(c, 0, sizeof *c);
    c->pid = fork();
    if (c->pid < 0)
        return -1;
    if (c->pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        if (env != NULL)
            putenv((char *)env);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    c->err_fd = fds[0];
    return 0;
}

/* Reads the child's stderr for up to timeout_ms; returns false at EOF. */
static bool read_some(child *c, int timeout_ms)
{
    struct pollfd p = {c->err_fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
        return true;
    if (c->log_len + 1 >= sizeof c->log)
        c->log_len = 0; /* keep the tail only */
    ssize_t n = read(c->err_fd, c->log + c->log_len, sizeof c->log - 1 - c->log_len);
    if (n <= 0)
        return false;
    c->log_len += (size_t)n;
    c->log[c->log_len] = '\0';
    return true;
}

/* Waits for the "ingest listening" line and returns its port, or -1 after 20 s. */
static int wait_port(child *c)
{
    for (int i = 0; i < 200; i++) {
        const char *hit = strstr(c->log, "\"msg\":\"ingest listening\"");
        if (hit != NULL) {
            const char *line = hit;
            while (line > c->log && line[-1] != '\n')
                line--;
            const char *end = strchr(hit, '\n');
            if (end != NULL) {
                json_t *j = json_loadb(line, (size_t)(end - line), 0, NULL);
                int port = j != NULL ? (int)json_integer_value(json_object_get(j, "port")) : -1;
                json_decref(j);
                return port;
            }
        }
        if (!read_some(c, 100))
            return -1;
    }
    return -1;
}

/* Reads to EOF and reaps the child; returns its exit status or -1 (killed / timeout). */
static int finish(child *c, int timeout_ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (!read_some(c, 100))
            break;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > timeout_ms) {
            kill(c->pid, SIGKILL);
            break;
        }
    }
    close(c->err_fd);
    int st;
    if (waitpid(c->pid, &st, 0) != c->pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- batches --------------------------------------------------------------------------- */

typedef struct sent_batch {
    Sentinel__V1__Batch b;
    Sentinel__V1__LlmEvent ev[4];
    Sentinel__V1__LlmEvent *evp[4];
    Sentinel__V1__LocalAlert al[1];
    Sentinel__V1__LocalAlert *alp[1];
    char users[4][32];
    uint8_t span[4][8];
} sent_batch;

static uint8_t trace[16] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

/* A batch of nev events; each event's user is "u-<id>-<seq>-<i>" so the log can be matched. */
static Sentinel__V1__Batch *make_batch(sent_batch *s, const char *id, uint64_t seq, size_t nev,
                                       bool alert)
{
    sentinel__v1__batch__init(&s->b);
    s->b.sidecar_id = (char *)id;
    s->b.sequence = seq;
    s->b.created_unix_nano = 1700000000000000000 + (int64_t)seq;
    for (size_t i = 0; i < nev; i++) {
        Sentinel__V1__LlmEvent *e = &s->ev[i];
        sentinel__v1__llm_event__init(e);
        snprintf(s->users[i], sizeof s->users[i], "u-%s-%llu-%zu", id, (unsigned long long)seq, i);
        e->user = s->users[i];
        e->service = "chatbot-api";
        e->model = "gpt-4o";
        e->provider = "openai";
        e->operation = "chat";
        e->trace_id.data = trace;
        e->trace_id.len = 16;
        memset(s->span[i], (int)(seq * 16 + i + 1), 8);
        e->span_id.data = s->span[i];
        e->span_id.len = 8;
        e->end_unix_nano = 1700000001000000000;
        e->_latency_ms_case = SENTINEL__V1__LLM_EVENT___LATENCY_MS_LATENCY_MS;
        e->latency_ms = 100.5 + (double)i;
        e->_input_tokens_case = SENTINEL__V1__LLM_EVENT___INPUT_TOKENS_INPUT_TOKENS;
        e->input_tokens = 1000 + (int64_t)i;
        e->_cost_usd_case = SENTINEL__V1__LLM_EVENT___COST_USD_COST_USD;
        e->cost_usd = 0.25;
        e->cost_source = SENTINEL__V1__COST_SOURCE__COST_SOURCE_SPAN;
        e->conventions = 1;
        s->evp[i] = e;
    }
    s->b.n_events = nev;
    s->b.events = s->evp;
    if (alert) {
        Sentinel__V1__LocalAlert *a = &s->al[0];
        sentinel__v1__local_alert__init(a);
        a->alert_id = "5c0ffee0-0000-4000-8000-000000000001";
        a->detector = "threshold";
        a->metric = "cost_usd";
        a->anomaly_type = "cost_spike";
        a->severity = SENTINEL__V1__SEVERITY__SEVERITY_CRITICAL;
        a->value = 3.5;
        a->threshold = 1.0;
        a->confidence = 0.9;
        a->service = "chatbot-api";
        a->model = "gpt-4o";
        s->alp[0] = a;
        s->b.n_alerts = 1;
        s->b.alerts = s->alp;
    }
    return &s->b;
}

/* Sends a batch and checks the answer's status and acknowledged sequence. */
static void send_expect(const char *target, const Sentinel__V1__Batch *b, bool zstd, int status,
                        uint64_t ack)
{
    size_t len;
    uint8_t *req = ingest_rpc_request(b, zstd, &len);
    ingest_rpc_result r;
    int rc = ingest_rpc_call(target, req, len, 10000, &r);
    free(req);
    CHECK(rc == 0, "call failed");
    CHECK(r.grpc_status == 0, "grpc status %d: %s", r.grpc_status, r.details);
    CHECK(r.has_response && r.status == status, "%s seq %llu: status %d, want %d", b->sidecar_id,
          (unsigned long long)b->sequence, r.status, status);
    CHECK(r.ack == ack, "%s seq %llu: ack %llu, want %llu", b->sidecar_id,
          (unsigned long long)b->sequence, (unsigned long long)r.ack, (unsigned long long)ack);
}

/* ---- the event log -------------------------------------------------------------------- */

/* Checks the log: every expected user exactly once, no other events, the alert once. */
static void check_event_log(const char *path, const char *const *users, size_t nusers)
{
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (f == NULL)
        return;
    int seen[16] = {0};
    int events = 0, alerts = 0, batches = 0;
    char line[8192];
    while (fgets(line, sizeof line, f) != NULL) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        CHECK(j != NULL, "bad JSON line: %s", line);
        if (j == NULL)
            continue;
        const char *type = json_string_value(json_object_get(j, "type"));
        if (type != NULL && strcmp(type, "event") == 0) {
            events++;
            const char *user = json_string_value(json_object_get(j, "user"));
            size_t k = 0;
            while (k < nusers && (user == NULL || strcmp(users[k], user) != 0))
                k++;
            CHECK(k < nusers, "unexpected event %s", user ? user : "(no user)");
            if (k < nusers)
                seen[k]++;
            /* Every fact came through. */
            CHECK(strcmp(json_string_value(json_object_get(j, "service")), "chatbot-api") == 0,
                  "service");
            CHECK(strcmp(json_string_value(json_object_get(j, "model")), "gpt-4o") == 0, "model");
            CHECK(strcmp(json_string_value(json_object_get(j, "trace_id")),
                         "deadbeef0102030405060708090a0b0c") == 0,
                  "trace_id");
            CHECK(strlen(json_string_value(json_object_get(j, "span_id"))) == 16, "span_id");
            CHECK(json_integer_value(json_object_get(j, "input_tokens")) >= 1000, "input_tokens");
            CHECK(json_is_null(json_object_get(j, "output_tokens")), "unknown output_tokens");
            CHECK(json_real_value(json_object_get(j, "cost_usd")) == 0.25, "cost_usd");
            CHECK(strcmp(json_string_value(json_object_get(j, "cost_source")), "span") == 0,
                  "cost_source");
            CHECK(json_real_value(json_object_get(j, "latency_ms")) >= 100.5, "latency_ms");
            CHECK(json_is_null(json_object_get(j, "ttft_ms")), "unknown ttft_ms");
        } else if (type != NULL && strcmp(type, "alert") == 0) {
            alerts++;
            CHECK(strcmp(json_string_value(json_object_get(j, "alert_id")),
                         "5c0ffee0-0000-4000-8000-000000000001") == 0,
                  "alert_id");
            CHECK(strcmp(json_string_value(json_object_get(j, "severity")), "critical") == 0,
                  "severity");
            CHECK(strcmp(json_string_value(json_object_get(j, "anomaly_type")), "cost_spike") == 0,
                  "anomaly_type");
            CHECK(strcmp(json_string_value(json_object_get(j, "detection_method")), "threshold") ==
                      0,
                  "detection_method");
        } else if (type != NULL && strcmp(type, "batch") == 0) {
            batches++;
        } else {
            CHECK(0, "unknown line type in %s", line);
        }
        json_decref(j);
    }
    fclose(f);
    for (size_t k = 0; k < nusers; k++)
        CHECK(seen[k] == 1, "event %s logged %d times", users[k], seen[k]);
    CHECK(events == (int)nusers, "%d events logged, want %zu", events, nusers);
    CHECK(alerts == 1, "%d alerts logged, want 1", alerts);
    CHECK(batches == 4, "%d batches logged, want 4", batches);
}

/* ---- bad configurations ---------------------------------------------------------------- */

/* "state.data_dir=<the test's temp dir>/state": no test state in /var/lib/sentinel. */
static char g_setstate[300];

/* Runs the aggregator with one bad setting; expects exit 2 and `name` in its error line. */
static void expect_bad_config(const char *bin, const char *set, const char *env, const char *name)
{
    char *argv[12];
    int n = 0;
    argv[n++] = (char *)bin;
    argv[n++] = "--set";
    argv[n++] = "ingest.endpoint=127.0.0.1:0";
    argv[n++] = "--set";
    argv[n++] = "http.endpoint=off";
    argv[n++] = "--set";
    argv[n++] = g_setstate;
    if (set != NULL) {
        argv[n++] = "--set";
        argv[n++] = (char *)set;
    }
    argv[n] = NULL;
    child c;
    CHECK(spawn(&c, argv, env) == 0, "spawn");
    int st = finish(&c, 20000);
    CHECK(st == 2, "%s%s: exit %d, want 2", set ? set : "", env ? env : "", st);
    const char *err = strstr(c.log, "\"level\":\"error\"");
    CHECK(err != NULL && strstr(err, name) != NULL, "error line does not name %s: %s", name, c.log);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH/TO/sentinel-aggregator\n", argv[0]);
        return 2;
    }
    const char *bin = argv[1];
    signal(SIGPIPE, SIG_IGN);
    char dir[] = "/tmp/sentinel-ingest-e2e-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    char logpath[256], setlog[300];
    snprintf(logpath, sizeof logpath, "%s/events.jsonl", dir);
    snprintf(setlog, sizeof setlog, "debug.event_log=%s", logpath);

    snprintf(g_setstate, sizeof g_setstate, "state.data_dir=%s/state", dir);
    char *args[] = {(char *)bin, "--set", "ingest.endpoint=127.0.0.1:0", "--set",
                    setlog,      "--set", "http.endpoint=off",           "--set",
                    g_setstate,  NULL};
    child c;
    CHECK(spawn(&c, args, NULL) == 0, "spawn");
    int port = wait_port(&c);
    CHECK(port > 0, "no listening line: %s", c.log);
    if (port > 0) {
        grpc_init();
        char target[64];
        snprintf(target, sizeof target, "127.0.0.1:%d", port);
        sent_batch a1, a2, a3, b1;
        send_expect(target, make_batch(&a1, "e2e-A", 1, 3, true), true, 1, 1);
        send_expect(target, make_batch(&a2, "e2e-A", 2, 2, false), false, 1, 2);
        send_expect(target, &a2.b, true, 2, 2); /* replay of the same batch */
        send_expect(target, &a1.b, true, 2, 2); /* an older one */
        send_expect(target, make_batch(&a3, "e2e-A", 3, 1, false), true, 1, 3);
        send_expect(target, make_batch(&b1, "e2e-B", 1, 2, false), true, 1, 1);
        send_expect(target, &b1.b, false, 2, 1);
        grpc_shutdown_blocking();
    }
    kill(c.pid, SIGTERM);
    int st = finish(&c, 20000);
    CHECK(st == 0, "exit status after SIGTERM %d; log: %s", st, c.log);
    CHECK(strstr(c.log, "\"msg\":\"stopped\"") != NULL, "no stopped line");
    CHECK(strstr(c.log, "\"batches\":4") != NULL, "stopped line does not count 4 batches");
    CHECK(strstr(c.log, "\"duplicates\":3") != NULL, "stopped line does not count 3 duplicates");

    static const char *const users[] = {"u-e2e-A-1-0", "u-e2e-A-1-1", "u-e2e-A-1-2", "u-e2e-A-2-0",
                                        "u-e2e-A-2-1", "u-e2e-A-3-0", "u-e2e-B-1-0", "u-e2e-B-1-1"};
    check_event_log(logpath, users, sizeof users / sizeof users[0]);

    /* Bad configuration: exit 2, one error line naming the setting. */
    expect_bad_config(bin, "ingest.max_message_bytes=lots", NULL, "ingest.max_message_bytes");
    expect_bad_config(bin, "ingest.max_calls=0", NULL, "ingest.max_calls");
    expect_bad_config(bin, NULL, "SENTINEL_INGEST_APPLY_TIMEOUT=soon", "ingest.apply_timeout");
    char badlog[300];
    snprintf(badlog, sizeof badlog, "debug.event_log=%s/missing/events.jsonl", dir);
    expect_bad_config(bin, badlog, NULL, "debug.event_log");

    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    if (g_failures > 0) {
        fprintf(stderr, "%d check(s) failed\n", g_failures);
        return 1;
    }
    printf("ingest_e2e: all checks passed\n");
    return 0;
}
