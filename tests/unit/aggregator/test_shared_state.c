/* Unit tests for aggregator/shared_state.c against a real redis-server that each test starts on
 * a free loopback port in its own temp dir (and kills at the end). */
#include "metrics.h"
#include "shared_state.h"

#include <check.h>
#include <fcntl.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MS INT64_C(1000000)

typedef struct redis_proc {
    pid_t pid;
    int port;
    char dir[64];
} redis_proc;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A raw client, for checking what is stored. NULL when the server does not answer. */
static redisContext *raw(int port)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c != NULL && c->err != 0) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Starts redis-server on r->port (a free one when 0) in r->dir and waits for PING. */
static void redis_start(redis_proc *r)
{
    if (r->dir[0] == '\0') {
        snprintf(r->dir, sizeof r->dir, "/tmp/sn-shared-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(r->dir));
    }
    if (r->port == 0)
        r->port = free_port();
    char port[16];
    snprintf(port, sizeof port, "%d", r->port);
    r->pid = fork();
    ck_assert_int_ge(r->pid, 0);
    if (r->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives a failed test */
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", r->dir, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        redisContext *c = raw(r->port);
        if (c != NULL) {
            redisReply *rep = redisCommand(c, "PING");
            bool ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
            if (rep != NULL)
                freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return;
        }
        sleep_ms(10);
    }
    ck_abort_msg("redis-server did not start on port %d", r->port);
}

static void redis_kill(redis_proc *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
}

static void redis_stop(redis_proc *r)
{
    redis_kill(r);
    if (r->dir[0] != '\0') {
        char path[128];
        snprintf(path, sizeof path, "%s/dump.rdb", r->dir);
        unlink(path);
        rmdir(r->dir);
    }
}

static sn_shared *replica(int port, const char *id, int64_t lease_ttl_ns)
{
    char url[64], err[256] = "";
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    sn_shared_config cfg;
    sn_shared_config_init(&cfg);
    cfg.url = url;
    cfg.replica_id = id;
    cfg.reconnect_ns = 50 * MS;
    if (lease_ttl_ns > 0)
        cfg.lease_ttl_ns = lease_ttl_ns;
    sn_shared *s = NULL;
    ck_assert_msg(sn_shared_create(&cfg, &s, err, sizeof err) == 0, "%s", err);
    return s;
}

/* GET key as a string into out ("" when absent). */
static void raw_get(int port, const char *key, char *out, size_t outlen)
{
    redisContext *c = raw(port);
    ck_assert_ptr_nonnull(c);
    redisReply *rep = redisCommand(c, "GET %s", key);
    ck_assert_ptr_nonnull(rep);
    snprintf(out, outlen, "%s", rep->type == REDIS_REPLY_STRING ? rep->str : "");
    freeReplyObject(rep);
    redisFree(c);
}

/* What the aggregator does with a batch it applies: claim, then commit when claimed. */
static int apply(sn_shared *s, const char *id, uint64_t seq, uint64_t *prev)
{
    int rc = sn_shared_seq_claim(s, id, seq, prev);
    if (rc == 0)
        ck_assert_int_eq(sn_shared_seq_commit(s, id, seq), 0);
    return rc;
}

START_TEST(sequences_only_go_up)
{
    redis_proc r = {0};
    redis_start(&r);
    sn_shared *a = replica(r.port, "a", 0);
    uint64_t prev = 99;
    ck_assert_int_eq(sn_shared_seq_claim(a, "sc-1", 5, &prev), 0);
    ck_assert_uint_eq(prev, 0);
    char v[32];
    raw_get(r.port, "sentinel:inflight:sc-1", v, sizeof v);
    ck_assert_str_eq(v, "5 a"); /* in flight until committed */
    raw_get(r.port, "sentinel:seq:sc-1", v, sizeof v);
    ck_assert_str_eq(v, "");
    ck_assert_int_eq(sn_shared_seq_claim(a, "sc-1", 5, &prev), 2); /* a replay meanwhile */
    ck_assert_int_eq(sn_shared_seq_commit(a, "sc-1", 5), 0);
    raw_get(r.port, "sentinel:inflight:sc-1", v, sizeof v);
    ck_assert_str_eq(v, "");
    ck_assert_int_eq(apply(a, "sc-1", 5, &prev), 1); /* replay */
    ck_assert_uint_eq(prev, 5);
    ck_assert_int_eq(apply(a, "sc-1", 3, &prev), 1); /* older */
    ck_assert_uint_eq(prev, 5);
    ck_assert_int_eq(apply(a, "sc-1", 6, &prev), 0);
    ck_assert_uint_eq(prev, 5);
    ck_assert_int_eq(apply(a, "sc-2", 1, &prev), 0); /* ids are independent */
    /* Compared as numbers, not as doubles or text: 10 > 9, and 2^64-1 > 2^64-2. */
    ck_assert_int_eq(apply(a, "sc-3", 9, &prev), 0);
    ck_assert_int_eq(apply(a, "sc-3", 10, &prev), 0);
    ck_assert_int_eq(apply(a, "sc-3", 9, &prev), 1);
    ck_assert_int_eq(apply(a, "sc-4", UINT64_MAX - 1, &prev), 0);
    ck_assert_int_eq(apply(a, "sc-4", UINT64_MAX, &prev), 0);
    ck_assert_uint_eq(prev, UINT64_MAX - 1);
    ck_assert_int_eq(apply(a, "sc-4", UINT64_MAX - 1, &prev), 1);
    ck_assert_uint_eq(prev, UINT64_MAX);
    raw_get(r.port, "sentinel:seq:sc-1", v, sizeof v);
    ck_assert_str_eq(v, "6");
    uint64_t got = 0;
    ck_assert_int_eq(sn_shared_seq_get(a, "sc-1", &got), 0);
    ck_assert_uint_eq(got, 6);
    ck_assert_int_eq(sn_shared_seq_get(a, "unknown", &got), 0);
    ck_assert_uint_eq(got, 0);
    sn_shared_stats st;
    sn_shared_stats_get(a, &st);
    ck_assert_uint_eq(st.seq_claimed, 7);
    ck_assert_uint_eq(st.seq_duplicates, 4);
    ck_assert_uint_eq(st.seq_in_flight, 1);
    ck_assert_uint_eq(st.fail_open, 0);
    sn_shared_destroy(a);
    redis_stop(&r);
}
END_TEST

START_TEST(release_gives_a_claim_back)
{
    redis_proc r = {0};
    redis_start(&r);
    sn_shared *a = replica(r.port, "a", 0), *b = replica(r.port, "b", 0);
    uint64_t prev;
    ck_assert_int_eq(apply(a, "sc", 5, &prev), 0);
    ck_assert_int_eq(sn_shared_seq_claim(a, "sc", 7, &prev), 0);
    ck_assert_uint_eq(prev, 5);
    ck_assert_int_eq(sn_shared_seq_claim(b, "sc", 7, &prev), 2); /* in flight on a */
    ck_assert_int_eq(sn_shared_seq_release(b, "sc", 7), 0);      /* not b's: no effect */
    ck_assert_int_eq(sn_shared_seq_claim(b, "sc", 7, &prev), 2);
    ck_assert_int_eq(sn_shared_seq_release(a, "sc", 7), 0); /* a's apply failed */
    uint64_t got;
    ck_assert_int_eq(sn_shared_seq_get(a, "sc", &got), 0);
    ck_assert_uint_eq(got, 5);
    ck_assert_int_eq(apply(b, "sc", 7, &prev), 0); /* the resend, to b, is applied */
    ck_assert_int_eq(sn_shared_seq_get(a, "sc", &got), 0);
    ck_assert_uint_eq(got, 7);
    ck_assert_int_eq(sn_shared_seq_claim(a, "sc", 7, &prev), 1);
    ck_assert_uint_eq(prev, 7);
    sn_shared_stats st;
    sn_shared_stats_get(a, &st);
    ck_assert_uint_eq(st.seq_released, 1);
    sn_shared_stats_get(b, &st);
    ck_assert_uint_eq(st.seq_released, 0);
    ck_assert_uint_eq(st.seq_in_flight, 2);
    sn_shared_destroy(a);
    sn_shared_destroy(b);
    redis_stop(&r);
}
END_TEST

START_TEST(a_dead_replicas_claim_expires)
{
    redis_proc r = {0};
    redis_start(&r);
    char url[64], err[256];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", r.port);
    sn_shared_config cfg;
    sn_shared_config_init(&cfg);
    cfg.url = url;
    cfg.replica_id = "dies";
    cfg.inflight_ttl_ns = 150 * MS;
    sn_shared *a = NULL;
    ck_assert_int_eq(sn_shared_create(&cfg, &a, err, sizeof err), 0);
    sn_shared *b = replica(r.port, "b", 0);
    uint64_t prev;
    ck_assert_int_eq(sn_shared_seq_claim(a, "sc", 20, &prev), 0);
    sn_shared_destroy(a); /* crashed between claim and commit */
    ck_assert_int_eq(sn_shared_seq_claim(b, "sc", 20, &prev), 2);
    sleep_ms(200);
    ck_assert_int_eq(apply(b, "sc", 20, &prev), 0);
    ck_assert_int_eq(sn_shared_seq_claim(b, "sc", 20, &prev), 1);
    sn_shared_destroy(b);
    redis_stop(&r);
}
END_TEST

typedef struct racer {
    sn_shared *s;
    unsigned char won[401];
} racer;

static void *race(void *arg)
{
    racer *x = arg;
    uint64_t prev;
    for (uint64_t seq = 1; seq <= 400; seq++)
        x->won[seq] = apply(x->s, "raced", seq, &prev) == 0;
    return NULL;
}

/* Runs fn on x and on y at the same time, each in a thread of its own. */
static void race_both(void *(*fn)(void *), racer *x, racer *y)
{
    pthread_t tx, ty;
    pthread_create(&tx, NULL, fn, x);
    pthread_create(&ty, NULL, fn, y);
    pthread_join(tx, NULL);
    pthread_join(ty, NULL);
}

START_TEST(two_replicas_race_one_wins)
{
    redis_proc r = {0};
    redis_start(&r);
    racer x = {.s = replica(r.port, "a", 0)}, y = {.s = replica(r.port, "b", 0)};
    race_both(race, &x, &y);
    unsigned wins = 0;
    for (int i = 1; i <= 400; i++) {
        ck_assert_msg(!(x.won[i] && y.won[i]), "sequence %d claimed by both replicas", i);
        wins += x.won[i] + y.won[i];
    }
    /* Each claim was answered claimed, applied or in flight; the last sequence was applied. */
    ck_assert_uint_ge(wins, 1);
    sn_shared_stats sa, sb;
    sn_shared_stats_get(x.s, &sa);
    sn_shared_stats_get(y.s, &sb);
    ck_assert_uint_eq(sa.seq_claimed + sb.seq_claimed, wins);
    ck_assert_uint_eq(sa.seq_claimed + sb.seq_claimed + sa.seq_duplicates + sb.seq_duplicates +
                          sa.seq_in_flight + sb.seq_in_flight,
                      800);
    uint64_t got;
    ck_assert_int_eq(sn_shared_seq_get(x.s, "raced", &got), 0);
    ck_assert_uint_eq(got, 400);
    sn_shared_destroy(x.s);
    sn_shared_destroy(y.s);
    redis_stop(&r);
}
END_TEST

START_TEST(alert_keys_have_one_owner_per_window)
{
    redis_proc r = {0};
    redis_start(&r);
    sn_shared *a = replica(r.port, "a", 0), *b = replica(r.port, "b", 0);
    int64_t window = 300 * MS;
    ck_assert_int_eq(sn_shared_alert_claim(a, "chat", "gpt-4o", "latency_spike", window), 1);
    ck_assert_int_eq(sn_shared_alert_claim(b, "chat", "gpt-4o", "latency_spike", window), 0);
    ck_assert_int_eq(sn_shared_alert_claim(a, "chat", "gpt-4o", "latency_spike", window), 1);
    /* Another type, model or service is another alert. */
    ck_assert_int_eq(sn_shared_alert_claim(b, "chat", "gpt-4o", "token_spike", window), 1);
    ck_assert_int_eq(sn_shared_alert_claim(b, "chat", "gpt-5", "latency_spike", window), 1);
    char v[32];
    raw_get(r.port, "sentinel:alert:chat:gpt-4o:latency_spike", v, sizeof v);
    ck_assert_str_eq(v, "a");
    /* The holder renews it while it fires; once it goes quiet for the window, b may take it. */
    sleep_ms(200);
    ck_assert_int_eq(sn_shared_alert_claim(a, "chat", "gpt-4o", "latency_spike", window), 1);
    sleep_ms(200);
    ck_assert_int_eq(sn_shared_alert_claim(b, "chat", "gpt-4o", "latency_spike", window), 0);
    sleep_ms(350);
    ck_assert_int_eq(sn_shared_alert_claim(b, "chat", "gpt-4o", "latency_spike", window), 1);
    ck_assert_int_eq(sn_shared_alert_claim(a, "chat", "gpt-4o", "latency_spike", window), 0);
    sn_shared_stats sa, sb;
    sn_shared_stats_get(a, &sa);
    sn_shared_stats_get(b, &sb);
    ck_assert_uint_eq(sa.alert_owned, 3);
    ck_assert_uint_eq(sa.alert_foreign, 1);
    ck_assert_uint_eq(sb.alert_owned, 3);
    ck_assert_uint_eq(sb.alert_foreign, 2);
    sn_shared_destroy(a);
    sn_shared_destroy(b);
    redis_stop(&r);
}
END_TEST

/* EVAL calls the server has run since the last CONFIG RESETSTAT. */
static long evals(int port)
{
    redisContext *c = raw(port);
    ck_assert_ptr_nonnull(c);
    redisReply *rep = redisCommand(c, "INFO commandstats");
    ck_assert_ptr_nonnull(rep);
    long n = 0;
    const char *p =
        rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "cmdstat_eval:calls=") : NULL;
    if (p != NULL)
        n = strtol(p + strlen("cmdstat_eval:calls="), NULL, 10);
    freeReplyObject(rep);
    redisFree(c);
    return n;
}

START_TEST(a_burst_of_anomalies_costs_one_round_trip)
{
    redis_proc r = {0};
    redis_start(&r);
    sn_shared *a = replica(r.port, "a", 0), *b = replica(r.port, "b", 0);
    redisContext *c = raw(r.port);
    freeReplyObject(redisCommand(c, "CONFIG RESETSTAT"));
    redisFree(c);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(sn_shared_alert_claim(a, "s", "m", "token_spike", 10000 * MS), 1);
    ck_assert_int_eq(evals(r.port), 1);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(sn_shared_alert_claim(b, "s", "m", "token_spike", 10000 * MS), 0);
    ck_assert_int_eq(evals(r.port), 2);
    /* Another key is asked for. */
    ck_assert_int_eq(sn_shared_alert_claim(b, "s", "m", "cost_spike", 10000 * MS), 1);
    ck_assert_int_eq(evals(r.port), 3);
    sn_shared_stats sa;
    sn_shared_stats_get(a, &sa);
    ck_assert_uint_eq(sa.alert_owned, 1000);
    sn_shared_destroy(a);
    sn_shared_destroy(b);
    redis_stop(&r);
}
END_TEST

START_TEST(lease_acquire_renew_expire_takeover)
{
    redis_proc r = {0};
    redis_start(&r);
    int64_t ttl = 400 * MS;
    sn_shared *a = replica(r.port, "a", ttl), *b = replica(r.port, "b", ttl);
    ck_assert(!sn_shared_is_leader(a));
    ck_assert_int_eq(sn_shared_lease_tick(a), 1);
    ck_assert(sn_shared_is_leader(a));
    ck_assert_int_eq(sn_shared_lease_tick(b), 0);
    ck_assert(!sn_shared_is_leader(b));
    /* Renewed past the first ttl. */
    for (int i = 0; i < 6; i++) {
        sleep_ms(100);
        ck_assert_int_eq(sn_shared_lease_tick(a), 1);
        ck_assert_int_eq(sn_shared_lease_tick(b), 0);
    }
    char v[32];
    raw_get(r.port, "sentinel:leader", v, sizeof v);
    ck_assert_str_eq(v, "a");
    /* a stops renewing (hung or killed): its own view ends first, then b takes over. */
    sleep_ms(320);
    ck_assert(!sn_shared_is_leader(a));
    sleep_ms(120);
    ck_assert_int_eq(sn_shared_lease_tick(b), 1);
    ck_assert(sn_shared_is_leader(b));
    ck_assert_int_eq(sn_shared_lease_tick(a), 0);
    ck_assert(!sn_shared_is_leader(a));
    /* A clean shutdown gives the lease back: a takes it at once. */
    sn_shared_destroy(b);
    raw_get(r.port, "sentinel:leader", v, sizeof v);
    ck_assert_str_eq(v, "");
    ck_assert_int_eq(sn_shared_lease_tick(a), 1);
    sn_shared_stats sa;
    sn_shared_stats_get(a, &sa);
    ck_assert_uint_eq(sa.leader_acquired, 2);
    ck_assert_uint_eq(sa.leader_lost, 1);
    sn_shared_destroy(a);
    redis_stop(&r);
}
END_TEST

START_TEST(local_alert_claims)
{
    /* One atomic claim per copy: the first replica claims, the other skips; a copy ahead of its
     * batch is pending until confirmed (then a copy) or released (then claimable again). */
    redis_proc r = {0};
    redis_start(&r);
    sn_shared *a = replica(r.port, "a", 0), *b = replica(r.port, "b", 0);
    const int64_t ttl = 60000 * MS;
    char v[128];

    /* batch copies: one claim wins, the other replica's copy is skipped; one round trip each */
    redisContext *c = raw(r.port);
    ck_assert_ptr_nonnull(c);
    freeReplyObject(redisCommand(c, "CONFIG RESETSTAT"));
    ck_assert_int_eq(sn_shared_local_alert_claim(a, "id-1", false, ttl), 1);
    ck_assert_int_eq(evals(r.port), 1);
    ck_assert_int_eq(sn_shared_local_alert_claim(b, "id-1", false, ttl), 0);
    ck_assert_int_eq(evals(r.port), 2);
    ck_assert_int_eq(sn_shared_local_alert_claim(b, "id-1", true, ttl), 0);
    raw_get(r.port, "sentinel:lalert:id-1", v, sizeof v);
    ck_assert_str_eq(v, "a");
    ck_assert_int_eq(sn_shared_local_alert_release(b, "id-1", false), 0); /* not b's */
    raw_get(r.port, "sentinel:lalert:id-1", v, sizeof v);
    ck_assert_str_eq(v, "a");

    /* ahead, confirmed: pending while judged (the other copy is told to retry), then applied */
    ck_assert_int_eq(sn_shared_local_alert_claim(a, "id-2", true, ttl), 1);
    raw_get(r.port, "sentinel:lalert:id-2", v, sizeof v);
    ck_assert_str_eq(v, "ahead a");
    ck_assert_int_eq(sn_shared_local_alert_claim(b, "id-2", false, ttl), 2);
    ck_assert_int_eq(sn_shared_local_alert_claim(b, "id-2", true, ttl), 2);
    ck_assert_int_eq(sn_shared_local_alert_confirm(b, "id-2", ttl), 0); /* not b's claim */
    ck_assert_int_eq(sn_shared_local_alert_confirm(a, "id-2", ttl), 1);
    raw_get(r.port, "sentinel:lalert:id-2", v, sizeof v);
    ck_assert_str_eq(v, "a");
    ck_assert_int_eq(sn_shared_local_alert_claim(b, "id-2", false, ttl), 0);

    /* ahead, not confirmed: released, so the batch copy is claimed (by any replica) */
    ck_assert_int_eq(sn_shared_local_alert_claim(a, "id-3", true, ttl), 1);
    ck_assert_int_eq(sn_shared_local_alert_release(b, "id-3", true), 0);
    ck_assert_int_eq(sn_shared_local_alert_release(a, "id-3", true), 1);
    raw_get(r.port, "sentinel:lalert:id-3", v, sizeof v);
    ck_assert_str_eq(v, "");
    ck_assert_int_eq(sn_shared_local_alert_claim(b, "id-3", false, ttl), 1);
    ck_assert_int_eq(sn_shared_local_alert_claim(a, "id-3", false, ttl), 0);

    /* our own pending claim left behind (its settling failed) does not block us */
    ck_assert_int_eq(sn_shared_local_alert_claim(a, "id-4", true, ttl), 1);
    ck_assert_int_eq(sn_shared_local_alert_claim(a, "id-4", false, ttl), 1);
    raw_get(r.port, "sentinel:lalert:id-4", v, sizeof v);
    ck_assert_str_eq(v, "a");

    /* ttls: an applied claim lives ttl, a pending one inflight_ttl (30 s by default) */
    redisReply *rep = redisCommand(c, "PTTL sentinel:lalert:id-1");
    ck_assert(rep->integer > 50000 && rep->integer <= 60000);
    freeReplyObject(rep);
    ck_assert_int_eq(sn_shared_local_alert_claim(a, "id-5", true, ttl), 1);
    rep = redisCommand(c, "PTTL sentinel:lalert:id-5");
    ck_assert(rep->integer > 20000 && rep->integer <= 30000);
    freeReplyObject(rep);
    redisFree(c);

    sn_shared_stats sa, sb;
    sn_shared_stats_get(a, &sa);
    sn_shared_stats_get(b, &sb);
    ck_assert_uint_eq(sa.local_alert_claimed, 6);
    ck_assert_uint_eq(sa.local_alert_copies, 1);
    ck_assert_uint_eq(sa.local_alert_released, 1);
    ck_assert_uint_eq(sb.local_alert_claimed, 1);
    ck_assert_uint_eq(sb.local_alert_copies, 3);
    ck_assert_uint_eq(sb.local_alert_in_flight, 2);
    ck_assert_uint_eq(sa.fail_open + sb.fail_open, 0);
    sn_shared_destroy(a);
    sn_shared_destroy(b);
    redis_stop(&r);
}
END_TEST

static void *race_alerts(void *arg)
{
    racer *x = arg;
    for (int i = 0; i < 300; i++) {
        char id[32];
        snprintf(id, sizeof id, "raced-%d", i);
        x->won[i] = sn_shared_local_alert_claim(x->s, id, false, 60000 * MS) == 1;
    }
    return NULL;
}

START_TEST(two_replicas_claim_a_local_alert_once)
{
    /* Both replicas get every alert at the same moment: each is claimed exactly once. */
    redis_proc r = {0};
    redis_start(&r);
    racer x = {.s = replica(r.port, "a", 0)}, y = {.s = replica(r.port, "b", 0)};
    race_both(race_alerts, &x, &y);
    for (int i = 0; i < 300; i++)
        ck_assert_msg(x.won[i] + y.won[i] == 1, "alert %d claimed %d times", i,
                      x.won[i] + y.won[i]);
    sn_shared_destroy(x.s);
    sn_shared_destroy(y.s);
    redis_stop(&r);
}
END_TEST

START_TEST(fail_open_when_redis_is_down)
{
    int port = free_port(); /* nothing listens there */
    sn_shared *a = replica(port, "a", 0);
    uint64_t prev = 7;
    ck_assert_int_lt(sn_shared_seq_claim(a, "sc", 1, &prev), 0);
    ck_assert_uint_eq(prev, 0);
    ck_assert_int_lt(sn_shared_alert_claim(a, "s", "m", "latency_spike", 1000 * MS), 0);
    ck_assert_int_lt(sn_shared_local_alert_claim(a, "id", false, 1000 * MS), 0);
    ck_assert_int_lt(sn_shared_lease_tick(a), 0);
    ck_assert(!sn_shared_is_leader(a));
    /* Within reconnect_ns no new attempt is made: answered at once. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(sn_shared_seq_claim(a, "sc", 1, &prev), -ENOTCONN);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_int_lt((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000, 40);
    sn_shared_stats st;
    sn_shared_stats_get(a, &st);
    ck_assert_uint_eq(st.fail_open, 104);
    ck_assert_uint_ge(st.connect_failures, 2); /* the ingest and the loop connection */
    ck_assert_uint_eq(st.connects, 0);
    ck_assert_uint_eq(st.seq_claimed, 0);
    sn_shared_destroy(a);
}
END_TEST

START_TEST(reconnects_after_a_redis_restart)
{
    redis_proc r = {0};
    redis_start(&r);
    sn_shared *a = replica(r.port, "a", 2000 * MS);
    uint64_t prev;
    ck_assert_int_eq(apply(a, "sc", 1, &prev), 0);
    ck_assert_int_eq(sn_shared_lease_tick(a), 1);
    redis_kill(&r);
    ck_assert_int_lt(sn_shared_seq_claim(a, "sc", 2, &prev), 0);
    /* An unanswered renewal keeps the lease until its own validity ends. */
    ck_assert_int_lt(sn_shared_lease_tick(a), 0);
    ck_assert(sn_shared_is_leader(a));
    redis_start(&r); /* same port, empty (no persistence) */
    sleep_ms(80);    /* past reconnect_ns */
    ck_assert_int_eq(apply(a, "sc", 2, &prev), 0);
    ck_assert_uint_eq(prev, 0);
    ck_assert_int_eq(sn_shared_lease_tick(a), 1);
    char v[32];
    raw_get(r.port, "sentinel:seq:sc", v, sizeof v);
    ck_assert_str_eq(v, "2");
    sn_shared_stats st;
    sn_shared_stats_get(a, &st);
    ck_assert_uint_eq(st.fail_open, 2);
    ck_assert_uint_ge(st.connects, 4);
    sn_shared_destroy(a);
    redis_stop(&r);
}
END_TEST

START_TEST(counters_on_metrics)
{
    redis_proc r = {0};
    redis_start(&r);
    sn_shared *a = replica(r.port, "a", 0);
    uint64_t prev;
    ck_assert_int_eq(apply(a, "sc", 1, &prev), 0); /* before registering */
    sn_metrics *m = NULL;
    char err[256];
    ck_assert_int_eq(sn_metrics_create(NULL, &m, err, sizeof err), 0);
    ck_assert_int_eq(sn_shared_register_metrics(a, m, err, sizeof err), 0);
    ck_assert_int_eq(sn_shared_register_metrics(a, m, err, sizeof err), -EEXIST);
    ck_assert_int_eq(apply(a, "sc", 1, &prev), 1);
    ck_assert_int_eq(apply(a, "sc", 2, &prev), 0);
    ck_assert_int_eq(sn_shared_lease_tick(a), 1);
    char *text = NULL;
    size_t len = 0;
    ck_assert_int_eq(sn_metrics_render_alloc(m, &text, &len), 0);
    ck_assert_ptr_nonnull(strstr(
        text, "sentinel_aggregator_shared_state_total{operation=\"seq\",outcome=\"claimed\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(
        text,
        "sentinel_aggregator_shared_state_total{operation=\"seq\",outcome=\"duplicate\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(
        text,
        "sentinel_aggregator_shared_state_total{operation=\"lease\",outcome=\"acquired\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "sentinel_aggregator_leader 1\n"));
    free(text);
    redis_kill(&r);
    ck_assert_int_lt(sn_shared_seq_claim(a, "sc", 3, &prev), 0);
    ck_assert_int_eq(sn_metrics_render_alloc(m, &text, &len), 0);
    ck_assert_ptr_nonnull(strstr(
        text,
        "sentinel_aggregator_shared_state_total{operation=\"any\",outcome=\"fail_open\"} 1\n"));
    free(text);
    sn_shared_destroy(a);
    sn_metrics_destroy(m);
    redis_stop(&r);
}
END_TEST

START_TEST(settings_are_checked)
{
    char err[256] = "";
    sn_shared_config cfg;
    sn_shared_config_init(&cfg);
    sn_shared *s = NULL;
    cfg.url = "http://127.0.0.1:6379";
    ck_assert_int_eq(sn_shared_create(&cfg, &s, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(err, "redis.url"));
    cfg.url = "redis://127.0.0.1:1";
    cfg.key_prefix = "a-prefix-that-is-much-longer-than-sixty-four-bytes-which-is-the-limit:";
    ck_assert_int_eq(sn_shared_create(&cfg, &s, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "redis.key_prefix"));
    cfg.key_prefix = "t:";
    cfg.lease_ttl_ns = 0;
    ck_assert_int_eq(sn_shared_create(&cfg, &s, err, sizeof err), -EINVAL);
    cfg.lease_ttl_ns = 1000 * MS;
    ck_assert_int_eq(sn_shared_create(&cfg, &s, err, sizeof err), 0);
    /* A default id: the host name and a random suffix; two replicas never share one. */
    sn_shared *t = NULL;
    ck_assert_int_eq(sn_shared_create(&cfg, &t, err, sizeof err), 0);
    ck_assert_uint_gt(strlen(sn_shared_replica_id(s)), 9);
    ck_assert_str_ne(sn_shared_replica_id(s), sn_shared_replica_id(t));
    sn_shared_destroy(s);
    sn_shared_destroy(t);
    sn_shared_destroy(NULL);
}
END_TEST

START_TEST(key_prefix_is_used)
{
    redis_proc r = {0};
    redis_start(&r);
    char url[64], err[256];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/3", r.port);
    sn_shared_config cfg;
    sn_shared_config_init(&cfg);
    cfg.url = url;
    cfg.key_prefix = "blue:";
    cfg.replica_id = "x";
    sn_shared *s = NULL;
    ck_assert_int_eq(sn_shared_create(&cfg, &s, err, sizeof err), 0);
    uint64_t prev;
    ck_assert_int_eq(apply(s, "sc", 4, &prev), 0);
    ck_assert_int_eq(sn_shared_lease_tick(s), 1);
    redisContext *c = raw(r.port);
    ck_assert_ptr_nonnull(c);
    redisReply *rep = redisCommand(c, "SELECT 3");
    freeReplyObject(rep);
    rep = redisCommand(c, "MGET blue:seq:sc blue:leader sentinel:leader");
    ck_assert_int_eq(rep->type, REDIS_REPLY_ARRAY);
    ck_assert_str_eq(rep->element[0]->str, "4");
    ck_assert_str_eq(rep->element[1]->str, "x");
    ck_assert_int_eq(rep->element[2]->type, REDIS_REPLY_NIL);
    freeReplyObject(rep);
    redisFree(c);
    sn_shared_destroy(s);
    redis_stop(&r);
}
END_TEST

/* An exchange's items and what put() received. */
typedef struct exchange {
    const char *keys[3];
    const char *blobs[3];
    unsigned got_n[3];
    char got[3][4][32];
    unsigned puts;
} exchange;

static int ex_get(void *ud, size_t i, const char **key, const void **blob, size_t *len)
{
    exchange *x = ud;
    if (x->blobs[i] == NULL)
        return -ENOENT; /* skipped */
    *key = x->keys[i];
    *blob = x->blobs[i];
    *len = strlen(x->blobs[i]);
    return 0;
}

static void ex_put(void *ud, size_t i, unsigned n, const void *const *blobs, const size_t *lens)
{
    exchange *x = ud;
    x->puts++;
    x->got_n[i] = n;
    for (unsigned k = 0; k < n && k < 4; k++)
        snprintf(x->got[i][k], sizeof x->got[i][k], "%.*s", (int)lens[k], (const char *)blobs[k]);
}

START_TEST(baselines_are_exchanged_between_replicas)
{
    redis_proc r = {0};
    redis_start(&r);
    sn_shared *a = replica(r.port, "agg-a", 0), *b = replica(r.port, "agg-b", 0);
    sn_shared_exchange_result res;
    /* a publishes first: nobody else yet. */
    exchange xa = {.keys = {"g/latency_ms/1/sm", "g/cost_usd/1/sm"}, .blobs = {"A-lat", "A-cost"}};
    ck_assert_int_eq(sn_shared_baselines_exchange(a, 2, 5000 * MS, ex_get, ex_put, &xa, &res), 0);
    ck_assert_uint_eq(res.published, 2);
    ck_assert_uint_eq(xa.puts, 2);
    ck_assert_uint_eq(xa.got_n[0] + xa.got_n[1], 0);
    /* b reads a's latency blob (never its own); a skipped item is neither written nor read. */
    exchange xb = {.keys = {"g/latency_ms/1/sm", "g/cost_usd/1/sm"}, .blobs = {"B-lat", NULL}};
    ck_assert_int_eq(sn_shared_baselines_exchange(b, 2, 5000 * MS, ex_get, ex_put, &xb, &res), 0);
    ck_assert_uint_eq(res.published, 1);
    ck_assert_uint_eq(res.remote_blobs, 1);
    ck_assert_uint_eq(xb.puts, 1);
    ck_assert_uint_eq(xb.got_n[0], 1);
    ck_assert_str_eq(xb.got[0][0], "A-lat");
    /* The hash holds both fields and expires with the ttl. */
    redisContext *c = raw(r.port);
    redisReply *rep = redisCommand(c, "HLEN sentinel:baseline:g/latency_ms/1/sm");
    ck_assert_int_eq(rep->integer, 2);
    freeReplyObject(rep);
    rep = redisCommand(c, "PTTL sentinel:baseline:g/latency_ms/1/sm");
    ck_assert_int_gt(rep->integer, 0);
    ck_assert_int_le(rep->integer, 5000);
    freeReplyObject(rep);
    /* A replica that stopped publishing long ago: ignored and its field deleted; garbage too. */
    const char old[] = "\x01\x00\x00\x00\x00\x00\x00\x00old-blob"; /* 1 ms after the epoch */
    rep = redisCommand(c, "HSET sentinel:baseline:g/latency_ms/1/sm agg-gone %b agg-junk x", old,
                       sizeof old - 1);
    freeReplyObject(rep);
    memset(&xb, 0, sizeof xb);
    xb.keys[0] = "g/latency_ms/1/sm";
    xb.blobs[0] = "B-lat2";
    ck_assert_int_eq(sn_shared_baselines_exchange(b, 1, 5000 * MS, ex_get, ex_put, &xb, &res), 0);
    ck_assert_uint_eq(xb.got_n[0], 1);
    ck_assert_str_eq(xb.got[0][0], "A-lat");
    ck_assert_uint_eq(res.stale_removed, 2);
    rep = redisCommand(c, "HLEN sentinel:baseline:g/latency_ms/1/sm");
    ck_assert_int_eq(rep->integer, 2);
    freeReplyObject(rep);
    /* a now reads b's latest. */
    memset(&xa, 0, sizeof xa);
    xa.keys[0] = "g/latency_ms/1/sm";
    xa.blobs[0] = "A-lat";
    ck_assert_int_eq(sn_shared_baselines_exchange(a, 1, 5000 * MS, ex_get, ex_put, &xa, &res), 0);
    ck_assert_str_eq(xa.got[0][0], "B-lat2");
    sn_shared_stats st;
    sn_shared_stats_get(b, &st);
    ck_assert_uint_eq(st.baseline_published, 2);
    ck_assert_uint_eq(st.baseline_read, 2);
    ck_assert_uint_eq(st.baseline_expired, 2);
    /* Redis down: an error, nothing handed to put, counted as fail-open. */
    redis_kill(&r);
    memset(&xa, 0, sizeof xa);
    xa.keys[0] = "g/latency_ms/1/sm";
    xa.blobs[0] = "A-lat";
    ck_assert_int_lt(sn_shared_baselines_exchange(a, 1, 5000 * MS, ex_get, ex_put, &xa, &res), 0);
    ck_assert_uint_eq(xa.puts, 0);
    sn_shared_stats_get(a, &st);
    ck_assert_uint_ge(st.fail_open, 1);
    /* Bad arguments. */
    ck_assert_int_eq(sn_shared_baselines_exchange(a, SN_SHARED_EXCHANGE_MAX + 1, 5000 * MS, ex_get,
                                                  ex_put, &xa, &res),
                     -EINVAL);
    redisFree(c);
    sn_shared_destroy(a);
    sn_shared_destroy(b);
    redis_stop(&r);
}
END_TEST

START_TEST(budget_totals_are_shared)
{
    redis_proc r = {0};
    redis_start(&r);
    sn_shared *a = replica(r.port, "agg-a", 0), *b = replica(r.port, "agg-b", 0);
    const char *keys[] = {"day:0:20000:4:chat4:chat", "day:1:20000:1:*4:chatalice"};
    double d1[] = {0.45, 0.1}, d2[] = {0.45, 0.2}, tot[2];
    int64_t ttl[] = {60000 * MS, 60000 * MS};
    ck_assert_int_eq(sn_shared_budget_add(a, 2, keys, d1, ttl, tot), 0);
    ck_assert_double_eq_tol(tot[0], 0.45, 1e-12);
    ck_assert_int_eq(sn_shared_budget_add(b, 2, keys, d2, ttl, tot), 0);
    ck_assert_double_eq_tol(tot[0], 0.9, 1e-12);
    ck_assert_double_eq_tol(tot[1], 0.3, 1e-12);
    redisContext *c = raw(r.port);
    redisReply *rep = redisCommand(c, "PTTL sentinel:budget:%s", keys[0]);
    ck_assert_int_gt(rep->integer, 50000);
    ck_assert_int_le(rep->integer, 60000);
    freeReplyObject(rep);
    redisFree(c);
    sn_shared_stats st;
    sn_shared_stats_get(b, &st);
    ck_assert_uint_eq(st.budget_added, 2);
    redis_kill(&r);
    ck_assert_int_lt(sn_shared_budget_add(a, 1, keys, d1, ttl, tot), 0);
    sn_shared_destroy(a);
    sn_shared_destroy(b);
    redis_stop(&r);
}
END_TEST

static Suite *shared_suite(void)
{
    Suite *s = suite_create("shared_state");
    TCase *tc = tcase_create("redis");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, sequences_only_go_up);
    tcase_add_test(tc, release_gives_a_claim_back);
    tcase_add_test(tc, a_dead_replicas_claim_expires);
    tcase_add_test(tc, two_replicas_race_one_wins);
    tcase_add_test(tc, alert_keys_have_one_owner_per_window);
    tcase_add_test(tc, local_alert_claims);
    tcase_add_test(tc, two_replicas_claim_a_local_alert_once);
    tcase_add_test(tc, a_burst_of_anomalies_costs_one_round_trip);
    tcase_add_test(tc, lease_acquire_renew_expire_takeover);
    tcase_add_test(tc, fail_open_when_redis_is_down);
    tcase_add_test(tc, reconnects_after_a_redis_restart);
    tcase_add_test(tc, counters_on_metrics);
    tcase_add_test(tc, settings_are_checked);
    tcase_add_test(tc, key_prefix_is_used);
    tcase_add_test(tc, baselines_are_exchanged_between_replicas);
    tcase_add_test(tc, budget_totals_are_shared);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(shared_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
