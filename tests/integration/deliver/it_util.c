/* it_util.c -- see it_util.h. */
#include "it_util.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Receivers still running: stopped at exit, so a failed assertion leaves none behind. */
static pid_t g_live[16];

static void kill_live(void)
{
    for (size_t i = 0; i < sizeof g_live / sizeof g_live[0]; i++) {
        if (g_live[i] > 0) {
            kill(-g_live[i], SIGKILL);
            waitpid(g_live[i], NULL, 0);
            g_live[i] = 0;
        }
    }
}

static void track(pid_t pid, bool add)
{
    static bool registered;
    if (!registered) {
        atexit(kill_live);
        registered = true;
    }
    for (size_t i = 0; i < sizeof g_live / sizeof g_live[0]; i++) {
        if (add ? g_live[i] == 0 : g_live[i] == pid) {
            g_live[i] = add ? pid : 0;
            return;
        }
    }
}

int it_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* The supervisor's SIGUSR1 (its parent, the test, died): kill the whole group. */
static void on_orphaned(int sig)
{
    (void)sig;
    kill(0, SIGKILL);
}

pid_t it_spawn(const char *const *argv, const char *const *env, const char *log)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid != 0) {
        track(pid, true);
        return pid;
    }
    /* The supervisor: leads a new process group, ignores the group's SIGTERM (the program
     * handles it), and kills the group when the test process dies, however it dies (programs
     * like rabbitmq-server fork, so the death signal of the direct child alone is not enough). */
    setsid();
    signal(SIGTERM, SIG_IGN);
    signal(SIGUSR1, on_orphaned);
    prctl(PR_SET_PDEATHSIG, SIGUSR1);
    if (getppid() == 1)
        kill(0, SIGKILL);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    pid_t child = fork();
    if (child < 0)
        _exit(127);
    if (child == 0) {
        signal(SIGTERM, SIG_DFL);
        signal(SIGUSR1, SIG_DFL);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        for (const char *const *e = env; e != NULL && *e != NULL; e++)
            putenv((char *)(uintptr_t)*e);
        execv(argv[0], (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

bool it_wait_port(int port, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 50) {
        if (port_open(port))
            return true;
        it_sleep_ms(50);
    }
    return false;
}

bool it_wait_port_closed(int port, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 50) {
        if (!port_open(port))
            return true;
        it_sleep_ms(50);
    }
    return false;
}

void it_stop(pid_t pid, int timeout_ms)
{
    if (pid <= 0)
        return;
    track(pid, false);
    kill(-pid, SIGTERM);
    for (int t = 0; t < timeout_ms; t += 20) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            kill(-pid, SIGKILL); /* anything of its group still around */
            return;
        }
        it_sleep_ms(20);
    }
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static char g_tmp[256];

/* At exit: the temp dir of a test that failed before its teardown. */
static void rm_tmp(void)
{
    it_rmrf(g_tmp);
}

void it_tmpdir(const char *prefix, char *out, size_t outlen)
{
    snprintf(out, outlen, "/tmp/%s-XXXXXX", prefix);
    ck_assert_ptr_nonnull(mkdtemp(out));
    if (g_tmp[0] == '\0')
        atexit(rm_tmp);
    snprintf(g_tmp, sizeof g_tmp, "%s", out);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void it_rmrf(const char *dir)
{
    if (dir != NULL && dir[0] != '\0')
        nftw(dir, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

void it_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
}

sn_alert it_alert(int i, const char *service, sn_severity sev)
{
    sn_alert a;
    memset(&a, 0, sizeof a);
    snprintf(a.alert_id, sizeof a.alert_id, "00000000-0000-4000-8000-%012d", i);
    a.timestamp_ns = it_now() - 10 * IT_SEC;
    a.last_seen_ns = it_now();
    a.severity = sev;
    a.anomaly_type = SN_ANOMALY_LATENCY_SPIKE;
    snprintf(a.service, sizeof a.service, "%s", service);
    snprintf(a.model, sizeof a.model, "gpt-4o");
    a.method = SN_DETECT_ZSCORE;
    a.confidence = 0.9;
    a.metric = SN_METRIC_LATENCY_MS;
    a.value = 12000 + i;
    a.baseline = 2000;
    a.threshold = 6000;
    a.deviation_sigma = 5.0;
    snprintf(a.time_window, sizeof a.time_window, "last_5_minutes");
    snprintf(a.root_cause, sizeof a.root_cause, "provider latency");
    a.status = SN_ALERT_FIRING;
    a.occurrences = 1;
    return a;
}

int64_t it_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * IT_SEC + ts.tv_nsec;
}

void it_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

sn_store *it_store(const char *dir)
{
    sn_store *st;
    char err[256];
    int rc = sn_store_open(dir, NULL, &st, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    return st;
}

sn_deliver *it_engine(const char *dir)
{
    sn_deliver_options o;
    sn_deliver_options_init(&o);
    o.store_dir = dir;
    o.poll_ns = 50 * IT_MS;
    sn_deliver *d;
    char err[256];
    int rc = sn_deliver_create(&o, &d, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    return d;
}

sn_deliver_policy it_policy(void)
{
    sn_deliver_policy p;
    sn_deliver_policy_init(&p);
    p.rate = 0;
    p.backoff.initial_ms = 50;
    p.backoff.max_ms = 200;
    p.breaker_failures = 5;
    p.breaker_cooldown_ns = 300 * IT_MS;
    return p;
}

void it_add(sn_deliver *d, sn_sink *s)
{
    sn_deliver_rule r;
    sn_deliver_rule_all(&r);
    sn_deliver_policy p = it_policy();
    char err[256];
    int rc = sn_deliver_add_sink(d, s, &r, &p, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
}

bool it_wait_done(sn_deliver *d, const char *sink, uint64_t n, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 20) {
        sn_deliver_sink_stats s;
        if (sn_deliver_sink_stats_get(d, sink, &s) == 0 && s.delivered + s.dead_lettered >= n)
            return true;
        it_sleep_ms(20);
    }
    return false;
}
