/*
 * shared_state.c -- the replicas' shared state in Redis through hiredis (shared_state.h).
 *
 * Every decision is one EVAL of a small Lua script, so it is atomic on the server and costs one
 * round trip. Sequences are compared as decimal strings (length, then bytes) because Lua
 * numbers are doubles and a uint64 sequence may not fit in 53 bits.
 */
#include "shared_state.h"

#include "log.h"
#include "metrics.h"
#include "sink.h" /* sn_redis_url_parse */

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_SEC  INT64_C(1000000000)
#define NS_PER_MS   INT64_C(1000000)
#define KEY_MAX     1024       /* longest key built here, NUL included */
#define ALERT_CACHE 512        /* alert keys whose last answer is remembered (direct-mapped) */
#define FOREIGN_MAX NS_PER_SEC /* a "not ours" answer is trusted at most this long */

/* Sequences compare as decimal strings: longer is larger, then byte order. */
#define SEQ_GE_LUA "local function ge(a, b) return #a > #b or (#a == #b and a >= b) end\n"

/* KEYS[1] applied sequence, KEYS[2] in-flight claim ("<seq> <replica>"); ARGV[1] sequence,
 * ARGV[2] in-flight ttl ms, ARGV[3] replica id. {1, applied}: claimed; {0, applied}: already
 * applied; {2, applied}: a claim at or above it is in flight (on any replica). */
static const char SEQ_CLAIM_LUA[] =
    SEQ_GE_LUA "local cur = redis.call('GET', KEYS[1])\n"
               "local new = ARGV[1]\n"
               "if cur and ge(cur, new) then return {0, cur} end\n"
               "local p = redis.call('GET', KEYS[2])\n"
               "local ps = p and string.match(p, '^(%d+) ')\n"
               "if ps and ge(ps, new) then return {2, cur or '0'} end\n"
               "redis.call('SET', KEYS[2], new .. ' ' .. ARGV[3], 'PX', ARGV[2])\n"
               "return {1, cur or '0'}\n";

/* KEYS as above; ARGV[1] sequence, ARGV[2] applied ttl ms, ARGV[3] replica id. Raises the
 * applied sequence (never lowers it) and ends our in-flight claim. */
static const char SEQ_COMMIT_LUA[] =
    SEQ_GE_LUA "local cur = redis.call('GET', KEYS[1])\n"
               "if not cur or not ge(cur, ARGV[1]) then\n"
               "  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
               "else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
               "if redis.call('GET', KEYS[2]) == ARGV[1] .. ' ' .. ARGV[3] then redis.call('DEL', "
               "KEYS[2]) end\n"
               "return 1\n";

/* KEYS as above; ARGV[1] sequence, ARGV[2] replica id. Ends our in-flight claim, if still ours. */
static const char SEQ_RELEASE_LUA[] =
    "if redis.call('GET', KEYS[2]) == ARGV[1] .. ' ' .. ARGV[2] then\n"
    "  redis.call('DEL', KEYS[2]) return 1 end\n"
    "return 0\n";

/* KEYS[1] key; ARGV[1] our id, ARGV[2] ttl ms. 1: ours (taken or renewed), 0: someone else's. */
static const char CLAIM_LUA[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end\n"
    "if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end\n"
    "return 0\n";

/* KEYS[1] key; ARGV[1] our id. Deletes the key only while it is ours. */
static const char RELEASE_LUA[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                  "  return redis.call('DEL', KEYS[1]) end\n"
                                  "return 0\n";

/* Local alert ids. KEYS[1] lalert:<alert_id>; ARGV[1] the claim's value (our id, or "ahead " ..
 * our id for a copy ahead of its batch, not yet confirmed), ARGV[2] its ttl ms, ARGV[3] our
 * pending value. 1: claimed by this call (SET NX, or our own stale pending claim taken again);
 * 2: a copy is being judged ahead of its batch on another replica; 0: applied by some replica. */
static const char LALERT_CLAIM_LUA[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end\n"
    "local v = redis.call('GET', KEYS[1])\n"
    "if v == ARGV[3] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end\n"
    "if v and string.sub(v, 1, 6) == 'ahead ' then return 2 end\n"
    "return 0\n";

/* KEYS[1] lalert:<alert_id>; ARGV[1] our pending value, ARGV[2] our id, ARGV[3] ttl ms. Turns
 * our pending claim into an applied one. 1: done, 0: the claim was no longer ours. */
static const char LALERT_CONFIRM_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end\n"
    "return 0\n";

typedef enum shared_count {
    C_SEQ_CLAIMED,
    C_SEQ_DUPLICATES,
    C_SEQ_RELEASED,
    C_SEQ_IN_FLIGHT,
    C_ALERT_OWNED,
    C_ALERT_FOREIGN,
    C_LEADER_ACQUIRED,
    C_LEADER_LOST,
    C_FAIL_OPEN,
    C_CONNECTS,
    C_CONNECT_FAILURES,
    C_BASELINE_PUBLISHED,
    C_BASELINE_READ,
    C_BASELINE_EXPIRED,
    C_BUDGET_ADDED,
    C_LALERT_CLAIMED,
    C_LALERT_COPIES,
    C_LALERT_IN_FLIGHT,
    C_LALERT_RELEASED,
    C_COUNT
} shared_count;

/* The counters' labels in sentinel_aggregator_shared_state_total{operation, outcome}. */
static const char *const count_labels[C_COUNT][2] = {
    [C_SEQ_CLAIMED] = {"seq", "claimed"},
    [C_SEQ_DUPLICATES] = {"seq", "duplicate"},
    [C_SEQ_RELEASED] = {"seq", "released"},
    [C_SEQ_IN_FLIGHT] = {"seq", "in_flight"},
    [C_ALERT_OWNED] = {"alert", "owned"},
    [C_ALERT_FOREIGN] = {"alert", "foreign"},
    [C_LEADER_ACQUIRED] = {"lease", "acquired"},
    [C_LEADER_LOST] = {"lease", "lost"},
    [C_FAIL_OPEN] = {"any", "fail_open"},
    [C_CONNECTS] = {"connect", "ok"},
    [C_CONNECT_FAILURES] = {"connect", "failed"},
    [C_BASELINE_PUBLISHED] = {"baseline", "published"},
    [C_BASELINE_READ] = {"baseline", "read"},
    [C_BASELINE_EXPIRED] = {"baseline", "expired"},
    [C_BUDGET_ADDED] = {"budget", "added"},
    [C_LALERT_CLAIMED] = {"local_alert", "claimed"},
    [C_LALERT_COPIES] = {"local_alert", "copy"},
    [C_LALERT_IN_FLIGHT] = {"local_alert", "in_flight"},
    [C_LALERT_RELEASED] = {"local_alert", "released"},
};

/* One connection and the mutex that serialises its users. */
typedef struct shared_conn {
    pthread_mutex_t mu;
    redisContext *c;         /* NULL while disconnected */
    int64_t next_connect_ns; /* monotonic; no attempt before */
    const char *name;        /* "ingest" or "loop", for the log */
    bool warned;             /* a failure was logged since the last success */
} shared_conn;

struct sn_shared {
    sn_redis_url url;
    char prefix[SN_SHARED_PREFIX_MAX + 1];
    char id[SN_SHARED_ID_MAX + 1];
    int64_t timeout_ns, reconnect_ns, lease_ttl_ns, seq_ttl_ns, inflight_ttl_ns;
    shared_conn ingest; /* sequences (ingest handler thread) */
    shared_conn loop;   /* alerts and lease (loop thread) */

    /* The last answers for alert keys, so a burst of anomalies costs one round trip per key and
     * interval, not one per anomaly: "ours" is trusted for half the window (the key is then
     * renewed long before it expires), "not ours" for a quarter of it, at most FOREIGN_MAX.
     * Guarded by loop.mu. */
    struct {
        uint64_t hash; /* FNV-1a of the key; 0: empty */
        int64_t until_ns;
        bool owned;
    } alert_cache[ALERT_CACHE];

    /* lease: guarded by loop.mu */
    bool leader;
    int64_t lease_valid_until_ns; /* monotonic */

    /* baseline exchange (loop thread, under loop.mu): one "<8-byte time><blob>" value */
    uint8_t *vbuf;
    size_t vcap;

    _Atomic uint64_t st[C_COUNT];
    sn_counter *mc[C_COUNT]; /* NULL until sn_shared_register_metrics */
    sn_gauge *m_leader;
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

/* Counts one outcome, and on /metrics once registered. Any thread. */
static void count(sn_shared *s, shared_count c)
{
    atomic_fetch_add(&s->st[c], 1);
    sn_counter_inc(s->mc[c]);
}

void sn_shared_config_init(sn_shared_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->key_prefix = "sentinel:";
    cfg->timeout_ns = 250 * NS_PER_MS;
    cfg->reconnect_ns = NS_PER_SEC;
    cfg->lease_ttl_ns = 10 * NS_PER_SEC;
    cfg->seq_ttl_ns = INT64_C(7) * 24 * 3600 * NS_PER_SEC;
    cfg->inflight_ttl_ns = 30 * NS_PER_SEC;
}

/* Drops the connection; the next call may reconnect after reconnect_ns. Caller holds mu. */
static void conn_drop(sn_shared *s, shared_conn *k, const char *why)
{
    if (!k->warned)
        sn_log_warn("shared state: Redis unavailable; falling back to local state",
                    SN_LOG_STR("connection", k->name), SN_LOG_STR("reason", why));
    k->warned = true;
    if (k->c != NULL)
        redisFree(k->c);
    k->c = NULL;
    k->next_connect_ns = mono_ns() + s->reconnect_ns;
}

/* Connects (AUTH, SELECT) when disconnected and allowed to try. Caller holds mu. Returns 0 or
 * -ENOTCONN (too soon after a failure, or the attempt failed; logged once per outage). */
static int conn_ensure(sn_shared *s, shared_conn *k)
{
    if (k->c != NULL)
        return 0;
    if (mono_ns() < k->next_connect_ns)
        return -ENOTCONN;
    struct timeval tv = {.tv_sec = (time_t)(s->timeout_ns / NS_PER_SEC),
                         .tv_usec = (suseconds_t)(s->timeout_ns % NS_PER_SEC / 1000)};
    k->c = redisConnectWithTimeout(s->url.host, s->url.port, tv);
    if (k->c == NULL || k->c->err != 0) {
        char why[512];
        snprintf(why, sizeof why, "connecting to %s:%d: %s", s->url.host, s->url.port,
                 k->c != NULL ? k->c->errstr : "out of memory");
        count(s, C_CONNECT_FAILURES);
        conn_drop(s, k, why);
        return -ENOTCONN;
    }
    redisSetTimeout(k->c, tv);
    char db[16];
    snprintf(db, sizeof db, "%d", s->url.db);
    for (int step = 0; step < 2; step++) {
        const char *argv[3];
        int argc = 0;
        if (step == 0 && s->url.password[0] != '\0') {
            argv[argc++] = "AUTH";
            if (s->url.user[0] != '\0')
                argv[argc++] = s->url.user;
            argv[argc++] = s->url.password;
        } else if (step == 1 && s->url.db != 0) {
            argv[argc++] = "SELECT";
            argv[argc++] = db;
        } else {
            continue;
        }
        redisReply *rep = redisCommandArgv(k->c, argc, argv, NULL);
        bool bad = rep == NULL || rep->type == REDIS_REPLY_ERROR;
        char why[512];
        if (bad)
            snprintf(why, sizeof why, "%s: %s", argv[0], rep != NULL ? rep->str : k->c->errstr);
        if (rep != NULL)
            freeReplyObject(rep);
        if (bad) {
            count(s, C_CONNECT_FAILURES);
            conn_drop(s, k, why);
            return -ENOTCONN;
        }
    }
    count(s, C_CONNECTS);
    if (k->warned)
        sn_log_info("shared state: Redis reachable again", SN_LOG_STR("connection", k->name));
    k->warned = false;
    return 0;
}

/* Runs EVAL script with nkeys keys then args (argv[0..argc)) on k. Caller holds mu. Returns the
 * reply (the caller frees it) or NULL after dropping the connection (error replies too: the
 * caller only sees well-formed answers). */
static redisReply *eval(sn_shared *s, shared_conn *k, const char *script, int nkeys, int argc,
                        const char **args)
{
    if (conn_ensure(s, k) != 0)
        return NULL;
    const char *argv[8];
    argv[0] = "EVAL";
    argv[1] = script;
    argv[2] = nkeys == 2 ? "2" : "1";
    for (int i = 0; i < argc && i < 5; i++)
        argv[3 + i] = args[i];
    redisReply *rep = redisCommandArgv(k->c, 3 + argc, argv, NULL);
    if (rep == NULL) {
        conn_drop(s, k, k->c->errstr[0] != '\0' ? k->c->errstr : "no reply");
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        char why[512];
        snprintf(why, sizeof why, "%s", rep->str != NULL ? rep->str : "error reply");
        freeReplyObject(rep);
        conn_drop(s, k, why);
        return NULL;
    }
    return rep;
}

/* prefix + parts joined by ':' into out; -ENAMETOOLONG when it does not fit. */
static int make_key(const sn_shared *s, char *out, size_t outlen, const char *a, const char *b,
                    const char *c, const char *d)
{
    int n = snprintf(out, outlen, "%s%s%s%s%s%s%s%s", s->prefix, a, b != NULL ? ":" : "",
                     b != NULL ? b : "", c != NULL ? ":" : "", c != NULL ? c : "",
                     d != NULL ? ":" : "", d != NULL ? d : "");
    return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

/* A whole decimal uint64 from a reply string; false when it is not one. */
static bool parse_seq(const char *str, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (str[i] < '0' || str[i] > '9')
            return false;
        uint64_t d = (uint64_t)(str[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* The default replica id: hostname-<8 hex>, cut to fit. */
static void default_id(char *out, size_t outlen)
{
    char host[SN_SHARED_ID_MAX];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "aggregator");
    host[sizeof host - 1] = '\0';
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r = (uint32_t)mono_ns() ^ (uint32_t)getpid();
    snprintf(out, outlen, "%.54s-%08" PRIx32, host, r);
}

int sn_shared_create(const sn_shared_config *cfg, sn_shared **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *prefix =
        cfg->key_prefix != NULL && cfg->key_prefix[0] != '\0' ? cfg->key_prefix : "sentinel:";
    if (cfg->timeout_ns <= 0 || cfg->reconnect_ns < 0 || cfg->lease_ttl_ns < NS_PER_MS ||
        cfg->seq_ttl_ns < NS_PER_MS || cfg->inflight_ttl_ns < NS_PER_MS) {
        snprintf(err, errlen, "redis: timeouts and ttls must be positive");
        return -EINVAL;
    }
    if (strlen(prefix) > SN_SHARED_PREFIX_MAX) {
        snprintf(err, errlen, "redis.key_prefix: longer than %d bytes", SN_SHARED_PREFIX_MAX);
        return -EINVAL;
    }
    if (cfg->replica_id != NULL && strlen(cfg->replica_id) > SN_SHARED_ID_MAX) {
        snprintf(err, errlen, "redis.replica_id: longer than %d bytes", SN_SHARED_ID_MAX);
        return -EINVAL;
    }
    sn_shared *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "redis: out of memory");
        return -ENOMEM;
    }
    if (sn_redis_url_parse(cfg->url, &s->url) != 0) {
        snprintf(err, errlen, "redis.url: not a redis://[[user]:password@]host[:port][/db] URL");
        free(s);
        return -EINVAL;
    }
    snprintf(s->prefix, sizeof s->prefix, "%s", prefix);
    if (cfg->replica_id != NULL && cfg->replica_id[0] != '\0')
        snprintf(s->id, sizeof s->id, "%s", cfg->replica_id);
    else
        default_id(s->id, sizeof s->id);
    s->timeout_ns = cfg->timeout_ns;
    s->reconnect_ns = cfg->reconnect_ns;
    s->lease_ttl_ns = cfg->lease_ttl_ns;
    s->seq_ttl_ns = cfg->seq_ttl_ns;
    s->inflight_ttl_ns = cfg->inflight_ttl_ns;
    pthread_mutex_init(&s->ingest.mu, NULL);
    pthread_mutex_init(&s->loop.mu, NULL);
    s->ingest.name = "ingest";
    s->loop.name = "loop";
    *out = s;
    return 0;
}

void sn_shared_destroy(sn_shared *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->loop.mu);
    if (s->leader && s->loop.c != NULL) {
        char key[KEY_MAX];
        if (make_key(s, key, sizeof key, "leader", NULL, NULL, NULL) == 0) {
            const char *args[] = {key, s->id};
            redisReply *rep = eval(s, &s->loop, RELEASE_LUA, 1, 2, args);
            if (rep != NULL)
                freeReplyObject(rep);
        }
        s->leader = false;
    }
    pthread_mutex_unlock(&s->loop.mu);
    if (s->ingest.c != NULL)
        redisFree(s->ingest.c);
    if (s->loop.c != NULL)
        redisFree(s->loop.c);
    pthread_mutex_destroy(&s->ingest.mu);
    pthread_mutex_destroy(&s->loop.mu);
    free(s->vbuf);
    free(s);
}

const char *sn_shared_replica_id(const sn_shared *s)
{
    return s->id;
}

/* The applied and in-flight keys of sidecar_id. */
static int seq_keys(const sn_shared *s, const char *sidecar_id, char *applied, char *inflight)
{
    if (make_key(s, applied, KEY_MAX, "seq", sidecar_id, NULL, NULL) != 0 ||
        make_key(s, inflight, KEY_MAX, "inflight", sidecar_id, NULL, NULL) != 0)
        return -ENAMETOOLONG;
    return 0;
}

int sn_shared_seq_claim(sn_shared *s, const char *sidecar_id, uint64_t seq, uint64_t *prev)
{
    char key[KEY_MAX], pkey[KEY_MAX], num[24], ttl[24];
    *prev = 0;
    if (seq_keys(s, sidecar_id, key, pkey) != 0)
        return -ENAMETOOLONG;
    snprintf(num, sizeof num, "%" PRIu64, seq);
    snprintf(ttl, sizeof ttl, "%" PRId64, s->inflight_ttl_ns / NS_PER_MS);
    const char *args[] = {key, pkey, num, ttl, s->id};
    pthread_mutex_lock(&s->ingest.mu);
    redisReply *rep = eval(s, &s->ingest, SEQ_CLAIM_LUA, 2, 5, args);
    int rc = -EPROTO;
    if (rep == NULL) {
        rc = -ENOTCONN;
    } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
               rep->element[0]->type == REDIS_REPLY_INTEGER &&
               rep->element[1]->type == REDIS_REPLY_STRING &&
               parse_seq(rep->element[1]->str, rep->element[1]->len, prev)) {
        long long v = rep->element[0]->integer;
        rc = v == 1 ? 0 : v == 0 ? 1 : 2;
    }
    if (rep != NULL)
        freeReplyObject(rep);
    pthread_mutex_unlock(&s->ingest.mu);
    count(s, rc == 0   ? C_SEQ_CLAIMED
             : rc == 1 ? C_SEQ_DUPLICATES
             : rc == 2 ? C_SEQ_IN_FLIGHT
                       : C_FAIL_OPEN);
    return rc;
}

int sn_shared_seq_commit(sn_shared *s, const char *sidecar_id, uint64_t seq)
{
    char key[KEY_MAX], pkey[KEY_MAX], num[24], ttl[24];
    if (seq_keys(s, sidecar_id, key, pkey) != 0)
        return -ENAMETOOLONG;
    snprintf(num, sizeof num, "%" PRIu64, seq);
    snprintf(ttl, sizeof ttl, "%" PRId64, s->seq_ttl_ns / NS_PER_MS);
    const char *args[] = {key, pkey, num, ttl, s->id};
    pthread_mutex_lock(&s->ingest.mu);
    redisReply *rep = eval(s, &s->ingest, SEQ_COMMIT_LUA, 2, 5, args);
    int rc = rep == NULL ? -ENOTCONN : rep->type == REDIS_REPLY_INTEGER ? 0 : -EPROTO;
    if (rep != NULL)
        freeReplyObject(rep);
    pthread_mutex_unlock(&s->ingest.mu);
    if (rc != 0)
        count(s, C_FAIL_OPEN);
    return rc;
}

int sn_shared_seq_release(sn_shared *s, const char *sidecar_id, uint64_t seq)
{
    char key[KEY_MAX], pkey[KEY_MAX], num[24];
    if (seq_keys(s, sidecar_id, key, pkey) != 0)
        return -ENAMETOOLONG;
    snprintf(num, sizeof num, "%" PRIu64, seq);
    const char *args[] = {key, pkey, num, s->id};
    pthread_mutex_lock(&s->ingest.mu);
    redisReply *rep = eval(s, &s->ingest, SEQ_RELEASE_LUA, 2, 4, args);
    int rc = rep == NULL ? -ENOTCONN : rep->type == REDIS_REPLY_INTEGER ? 0 : -EPROTO;
    bool released = rc == 0 && rep->integer == 1;
    if (rep != NULL)
        freeReplyObject(rep);
    pthread_mutex_unlock(&s->ingest.mu);
    if (released)
        count(s, C_SEQ_RELEASED);
    return rc;
}

int sn_shared_seq_get(sn_shared *s, const char *sidecar_id, uint64_t *out)
{
    char key[KEY_MAX];
    *out = 0;
    if (make_key(s, key, sizeof key, "seq", sidecar_id, NULL, NULL) != 0)
        return -ENAMETOOLONG;
    pthread_mutex_lock(&s->ingest.mu);
    int rc = conn_ensure(s, &s->ingest);
    if (rc == 0) {
        const char *argv[] = {"GET", key};
        redisReply *rep = redisCommandArgv(s->ingest.c, 2, argv, NULL);
        if (rep == NULL) {
            conn_drop(s, &s->ingest, s->ingest.c->errstr);
            rc = -ENOTCONN;
        } else {
            if (rep->type == REDIS_REPLY_STRING)
                rc = parse_seq(rep->str, rep->len, out) ? 0 : -EPROTO;
            else if (rep->type != REDIS_REPLY_NIL)
                rc = -EPROTO;
            freeReplyObject(rep);
        }
    }
    pthread_mutex_unlock(&s->ingest.mu);
    return rc;
}

/* Runs CLAIM_LUA for key on the loop connection. 1 ours, 0 theirs, negative: no answer. */
static int claim_locked(sn_shared *s, const char *key, int64_t ttl_ns)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%" PRId64, ttl_ns / NS_PER_MS > 0 ? ttl_ns / NS_PER_MS : 1);
    const char *args[] = {key, s->id, ttl};
    redisReply *rep = eval(s, &s->loop, CLAIM_LUA, 1, 3, args);
    if (rep == NULL)
        return -ENOTCONN;
    int rc = rep->type == REDIS_REPLY_INTEGER ? (rep->integer == 1 ? 1 : 0) : -EPROTO;
    freeReplyObject(rep);
    return rc;
}

int sn_shared_alert_claim(sn_shared *s, const char *service, const char *model, const char *type,
                          int64_t window_ns)
{
    char key[KEY_MAX];
    if (make_key(s, key, sizeof key, "alert", service, model, type) != 0)
        return -ENAMETOOLONG;
    uint64_t h = UINT64_C(1469598103934665603);
    for (const char *p = key; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * UINT64_C(1099511628211);
    h |= 1; /* never 0 (empty) */
    pthread_mutex_lock(&s->loop.mu);
    int64_t now = mono_ns();
    size_t slot = (size_t)(h % ALERT_CACHE);
    int rc;
    if (s->alert_cache[slot].hash == h && now < s->alert_cache[slot].until_ns) {
        rc = s->alert_cache[slot].owned ? 1 : 0;
    } else {
        rc = claim_locked(s, key, window_ns);
        if (rc >= 0) {
            int64_t keep = rc == 1 ? window_ns / 2 : window_ns / 4;
            if (rc == 0 && keep > FOREIGN_MAX)
                keep = FOREIGN_MAX;
            s->alert_cache[slot].hash = h;
            s->alert_cache[slot].until_ns = now + keep;
            s->alert_cache[slot].owned = rc == 1;
        }
    }
    pthread_mutex_unlock(&s->loop.mu);
    if (rc == 1)
        count(s, C_ALERT_OWNED);
    else if (rc == 0)
        count(s, C_ALERT_FOREIGN);
    else
        count(s, C_FAIL_OPEN);
    return rc;
}

/* The key of a local alert id and this replica's pending value ("ahead <id>") into key and
 * pending (KEY_MAX and SN_SHARED_ID_MAX + 7 bytes). 0 or -ENAMETOOLONG. */
static int lalert_key(const sn_shared *s, const char *alert_id, char *key, char *pending)
{
    snprintf(pending, SN_SHARED_ID_MAX + 7, "ahead %s", s->id);
    return make_key(s, key, KEY_MAX, "lalert", alert_id, NULL, NULL);
}

/* Runs one local-alert script on the loop connection: its integer answer, or a negative errno
 * (counted as fail-open). */
static int lalert_eval(sn_shared *s, const char *script, int argc, const char **args)
{
    pthread_mutex_lock(&s->loop.mu);
    redisReply *rep = eval(s, &s->loop, script, 1, argc, args);
    int rc = rep == NULL                        ? -ENOTCONN
             : rep->type == REDIS_REPLY_INTEGER ? (int)rep->integer
                                                : -EPROTO;
    if (rep != NULL)
        freeReplyObject(rep);
    pthread_mutex_unlock(&s->loop.mu);
    if (rc < 0)
        count(s, C_FAIL_OPEN);
    return rc;
}

int sn_shared_local_alert_claim(sn_shared *s, const char *alert_id, bool ahead, int64_t ttl_ns)
{
    char key[KEY_MAX], pending[SN_SHARED_ID_MAX + 7], ttl[24];
    if (lalert_key(s, alert_id, key, pending) != 0)
        return -ENAMETOOLONG;
    int64_t ms = (ahead ? s->inflight_ttl_ns : ttl_ns) / NS_PER_MS;
    snprintf(ttl, sizeof ttl, "%" PRId64, ms > 0 ? ms : 1);
    const char *args[] = {key, ahead ? pending : s->id, ttl, pending};
    int rc = lalert_eval(s, LALERT_CLAIM_LUA, 4, args);
    if (rc > 2)
        rc = -EPROTO;
    if (rc >= 0)
        count(s, rc == 1 ? C_LALERT_CLAIMED : rc == 2 ? C_LALERT_IN_FLIGHT : C_LALERT_COPIES);
    return rc;
}

int sn_shared_local_alert_confirm(sn_shared *s, const char *alert_id, int64_t ttl_ns)
{
    char key[KEY_MAX], pending[SN_SHARED_ID_MAX + 7], ttl[24];
    if (lalert_key(s, alert_id, key, pending) != 0)
        return -ENAMETOOLONG;
    snprintf(ttl, sizeof ttl, "%" PRId64, ttl_ns / NS_PER_MS > 0 ? ttl_ns / NS_PER_MS : 1);
    const char *args[] = {key, pending, s->id, ttl};
    int rc = lalert_eval(s, LALERT_CONFIRM_LUA, 4, args);
    return rc < 0 ? rc : rc == 1 ? 1 : 0;
}

int sn_shared_local_alert_release(sn_shared *s, const char *alert_id, bool ahead)
{
    char key[KEY_MAX], pending[SN_SHARED_ID_MAX + 7];
    if (lalert_key(s, alert_id, key, pending) != 0)
        return -ENAMETOOLONG;
    const char *args[] = {key, ahead ? pending : s->id};
    int rc = lalert_eval(s, RELEASE_LUA, 2, args);
    if (rc == 1)
        count(s, C_LALERT_RELEASED);
    return rc < 0 ? rc : rc == 1 ? 1 : 0;
}

int sn_shared_lease_tick(sn_shared *s)
{
    char key[KEY_MAX];
    if (make_key(s, key, sizeof key, "leader", NULL, NULL, NULL) != 0)
        return -ENAMETOOLONG;
    pthread_mutex_lock(&s->loop.mu);
    int64_t sent = mono_ns();
    int rc = claim_locked(s, key, s->lease_ttl_ns);
    bool was = s->leader; /* what the last tick said */
    if (rc == 1) {
        /* Counted from before the request: the server's expiry is at least this late. A
         * quarter of the ttl is kept as a margin for clock rate differences. */
        s->lease_valid_until_ns = sent + s->lease_ttl_ns - s->lease_ttl_ns / 4;
        s->leader = true;
    } else if (rc == 0) {
        s->leader = false;
    } else {
        /* Unanswered: keep what we had until its own validity ends (is_leader checks it). */
        count(s, C_FAIL_OPEN);
    }
    bool now_leader = s->leader && mono_ns() < s->lease_valid_until_ns;
    if (!now_leader)
        s->leader = false;
    pthread_mutex_unlock(&s->loop.mu);
    sn_gauge_set(s->m_leader, now_leader ? 1.0 : 0.0);
    if (now_leader && !was) {
        count(s, C_LEADER_ACQUIRED);
        sn_log_info("shared state: this replica leads", SN_LOG_STR("replica_id", s->id));
    } else if (!now_leader && was) {
        count(s, C_LEADER_LOST);
        sn_log_warn("shared state: leadership lost", SN_LOG_STR("replica_id", s->id),
                    SN_LOG_STR("reason", rc == 0 ? "another replica holds the lease"
                                                 : "the lease could not be renewed"));
    }
    return rc < 0 ? rc : now_leader ? 1 : 0;
}

bool sn_shared_is_leader(sn_shared *s)
{
    pthread_mutex_lock(&s->loop.mu);
    bool l = s->leader && mono_ns() < s->lease_valid_until_ns;
    pthread_mutex_unlock(&s->loop.mu);
    return l;
}

void sn_shared_stats_get(sn_shared *s, sn_shared_stats *out)
{
    out->seq_claimed = atomic_load(&s->st[C_SEQ_CLAIMED]);
    out->seq_duplicates = atomic_load(&s->st[C_SEQ_DUPLICATES]);
    out->seq_released = atomic_load(&s->st[C_SEQ_RELEASED]);
    out->seq_in_flight = atomic_load(&s->st[C_SEQ_IN_FLIGHT]);
    out->alert_owned = atomic_load(&s->st[C_ALERT_OWNED]);
    out->alert_foreign = atomic_load(&s->st[C_ALERT_FOREIGN]);
    out->leader_acquired = atomic_load(&s->st[C_LEADER_ACQUIRED]);
    out->leader_lost = atomic_load(&s->st[C_LEADER_LOST]);
    out->fail_open = atomic_load(&s->st[C_FAIL_OPEN]);
    out->connects = atomic_load(&s->st[C_CONNECTS]);
    out->connect_failures = atomic_load(&s->st[C_CONNECT_FAILURES]);
    out->baseline_published = atomic_load(&s->st[C_BASELINE_PUBLISHED]);
    out->baseline_read = atomic_load(&s->st[C_BASELINE_READ]);
    out->baseline_expired = atomic_load(&s->st[C_BASELINE_EXPIRED]);
    out->budget_added = atomic_load(&s->st[C_BUDGET_ADDED]);
    out->local_alert_claimed = atomic_load(&s->st[C_LALERT_CLAIMED]);
    out->local_alert_copies = atomic_load(&s->st[C_LALERT_COPIES]);
    out->local_alert_in_flight = atomic_load(&s->st[C_LALERT_IN_FLIGHT]);
    out->local_alert_released = atomic_load(&s->st[C_LALERT_RELEASED]);
}

int sn_shared_register_metrics(sn_shared *s, sn_metrics *m, char *err, size_t errlen)
{
    sn_metrics_desc cd = {
        .type = SN_METRICS_COUNTER,
        .name = "sentinel_aggregator_shared_state_total",
        .help = "shared-state decisions in Redis by operation (seq, alert, "
                "local_alert, lease, connect, any) and outcome; fail_open: answered locally",
        .labels = {"operation", "outcome"}};
    sn_metrics_desc gd = {.type = SN_METRICS_GAUGE,
                          .name = "sentinel_aggregator_leader",
                          .help = "1 while this replica holds the leadership lease in Redis"};
    sn_metrics_family *fc = NULL, *fg = NULL;
    int rc = sn_metrics_register(m, &cd, &fc, err, errlen);
    if (rc == 0)
        rc = sn_metrics_register(m, &gd, &fg, err, errlen);
    if (rc != 0)
        return rc;
    for (int c = 0; c < C_COUNT; c++) {
        s->mc[c] = sn_metrics_counter(fc, count_labels[c]);
        sn_counter_add(s->mc[c], atomic_load(&s->st[c])); /* what happened before */
    }
    s->m_leader = sn_metrics_gauge(fg, NULL);
    sn_gauge_set(s->m_leader, sn_shared_is_leader(s) ? 1.0 : 0.0);
    return 0;
}

/* ---- baselines ------------------------------------------------------------------------------ */

#define EXCHANGE_STALE_MAX 32 /* stale fields removed per exchange */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / NS_PER_MS;
}

/* Reads one pipelined reply within the exchange's deadline. Caller holds loop.mu. Returns the
 * reply (caller frees) or NULL after dropping the connection (no reply, an error reply, or
 * the deadline passed). */
static redisReply *exchange_reply(sn_shared *s, int64_t deadline)
{
    redisReply *rep = NULL;
    if (redisGetReply(s->loop.c, (void **)&rep) != REDIS_OK || rep == NULL) {
        conn_drop(s, &s->loop, s->loop.c->errstr[0] != '\0' ? s->loop.c->errstr : "no reply");
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR || mono_ns() > deadline) {
        char why[256];
        snprintf(why, sizeof why, "%s",
                 rep->type == REDIS_REPLY_ERROR && rep->str != NULL ? rep->str
                                                                    : "baseline exchange too slow");
        freeReplyObject(rep);
        conn_drop(s, &s->loop, why);
        return NULL;
    }
    return rep;
}

/* Builds "<8-byte little-endian wall ms><blob>" in s->vbuf. 0 or -ENOMEM / -EMSGSIZE. */
static int exchange_value(sn_shared *s, int64_t now_ms, const void *blob, size_t len)
{
    if (len > SN_SHARED_BLOB_MAX)
        return -EMSGSIZE;
    if (s->vcap < len + 8) {
        uint8_t *b = realloc(s->vbuf, len + 8);
        if (b == NULL)
            return -ENOMEM;
        s->vbuf = b;
        s->vcap = len + 8;
    }
    for (int k = 0; k < 8; k++)
        s->vbuf[k] = (uint8_t)((uint64_t)now_ms >> (8 * k));
    memcpy(s->vbuf + 8, blob, len);
    return 0;
}

int sn_shared_baselines_exchange(sn_shared *s, size_t n, int64_t ttl_ns, sn_shared_blob_get_fn get,
                                 sn_shared_blob_put_fn put, void *ud,
                                 sn_shared_exchange_result *res)
{
    memset(res, 0, sizeof *res);
    if (n > SN_SHARED_EXCHANGE_MAX || ttl_ns < NS_PER_MS)
        return -EINVAL;
    bool sent[SN_SHARED_EXCHANGE_MAX];
    char stale_key[EXCHANGE_STALE_MAX][KEY_MAX > 512 ? 512 : KEY_MAX];
    char stale_field[EXCHANGE_STALE_MAX][SN_SHARED_ID_MAX + 1];
    unsigned nstale = 0;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%" PRId64, ttl_ns / NS_PER_MS);
    int64_t now_ms = wall_ms(), ttl_ms = ttl_ns / NS_PER_MS;
    int rc = 0;

    pthread_mutex_lock(&s->loop.mu);
    int64_t deadline = mono_ns() + 2 * s->timeout_ns;
    if (conn_ensure(s, &s->loop) != 0) {
        rc = -ENOTCONN;
        goto out_unlock;
    }
    /* Every command first (one write), then every reply. */
    for (size_t i = 0; i < n; i++) {
        const char *text;
        const void *blob;
        size_t len;
        char key[KEY_MAX];
        sent[i] = false;
        if (get(ud, i, &text, &blob, &len) != 0 ||
            make_key(s, key, sizeof key, "baseline", text, NULL, NULL) != 0 ||
            exchange_value(s, now_ms, blob, len) != 0)
            continue;
        const char *hset[] = {"HSET", key, s->id, (const char *)s->vbuf};
        size_t hsetl[] = {4, strlen(key), strlen(s->id), len + 8};
        const char *pexp[] = {"PEXPIRE", key, ttl};
        const char *hget[] = {"HGETALL", key};
        if (redisAppendCommandArgv(s->loop.c, 4, hset, hsetl) != REDIS_OK ||
            redisAppendCommandArgv(s->loop.c, 3, pexp, NULL) != REDIS_OK ||
            redisAppendCommandArgv(s->loop.c, 2, hget, NULL) != REDIS_OK) {
            conn_drop(s, &s->loop, "out of memory");
            rc = -ENOMEM;
            goto out_unlock;
        }
        sent[i] = true;
    }
    for (size_t i = 0; i < n; i++) {
        if (!sent[i])
            continue;
        redisReply *rep = NULL;
        for (int k = 0; k < 3; k++) {
            if (rep != NULL)
                freeReplyObject(rep);
            rep = exchange_reply(s, deadline);
            if (rep == NULL) {
                rc = -ETIMEDOUT;
                goto out_unlock;
            }
        }
        res->published++;
        count(s, C_BASELINE_PUBLISHED);
        const void *blobs[SN_SHARED_VIEW_MAX];
        size_t lens[SN_SHARED_VIEW_MAX];
        unsigned nb = 0;
        for (size_t f = 0; rep->type == REDIS_REPLY_ARRAY && f + 1 < rep->elements; f += 2) {
            const redisReply *field = rep->element[f], *val = rep->element[f + 1];
            if (field->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING ||
                (field->len == strlen(s->id) && memcmp(field->str, s->id, field->len) == 0))
                continue;
            int64_t t = 0;
            for (int k = 0; val->len >= 8 && k < 8; k++)
                t |= (int64_t)((uint64_t)(uint8_t)val->str[k] << (8 * k));
            if (val->len < 8 || now_ms - t > ttl_ms) {
                /* A replica that stopped publishing (or garbage): removed below. */
                char key[KEY_MAX];
                const char *text;
                const void *blob;
                size_t len;
                if (nstale < EXCHANGE_STALE_MAX && field->len <= SN_SHARED_ID_MAX &&
                    get(ud, i, &text, &blob, &len) == 0 &&
                    make_key(s, key, sizeof key, "baseline", text, NULL, NULL) == 0 &&
                    strlen(key) < sizeof stale_key[0]) {
                    memcpy(stale_key[nstale], key, strlen(key) + 1);
                    memcpy(stale_field[nstale], field->str, field->len);
                    stale_field[nstale][field->len] = '\0';
                    nstale++;
                }
                continue;
            }
            if (nb < SN_SHARED_VIEW_MAX) {
                blobs[nb] = val->str + 8;
                lens[nb] = val->len - 8;
                nb++;
            }
        }
        res->remote_blobs += nb;
        for (unsigned k = 0; k < nb; k++)
            count(s, C_BASELINE_READ);
        put(ud, i, nb, blobs, lens);
        freeReplyObject(rep);
    }
    /* Fields of replicas silent for longer than the ttl (the hash itself lives while anyone
     * publishes). A replica that published again in between loses its field until its next
     * round; it is not read as stale meanwhile, only missing. */
    for (unsigned k = 0; k < nstale; k++) {
        const char *argv[] = {"HDEL", stale_key[k], stale_field[k]};
        if (redisAppendCommandArgv(s->loop.c, 3, argv, NULL) != REDIS_OK) {
            conn_drop(s, &s->loop, "out of memory");
            rc = -ENOMEM;
            goto out_unlock;
        }
    }
    for (unsigned k = 0; k < nstale; k++) {
        redisReply *rep = exchange_reply(s, deadline);
        if (rep == NULL) {
            rc = -ETIMEDOUT;
            goto out_unlock;
        }
        freeReplyObject(rep);
        res->stale_removed++;
        count(s, C_BASELINE_EXPIRED);
    }

out_unlock:
    pthread_mutex_unlock(&s->loop.mu);
    if (rc != 0)
        count(s, C_FAIL_OPEN);
    return rc;
}

/* ---- budgets ----------------------------------------------------------------------------------
 */

int sn_shared_budget_add(sn_shared *s, size_t n, const char *const *keys, const double *delta,
                         const int64_t *ttl_ns, double *totals)
{
    if (n > SN_SHARED_EXCHANGE_MAX)
        return -EINVAL;
    int rc = 0;
    pthread_mutex_lock(&s->loop.mu);
    int64_t deadline = mono_ns() + 2 * s->timeout_ns;
    if (conn_ensure(s, &s->loop) != 0) {
        rc = -ENOTCONN;
        goto out_unlock;
    }
    for (size_t i = 0; i < n; i++) {
        char key[KEY_MAX], d[40], ttl[24];
        if (make_key(s, key, sizeof key, "budget", keys[i], NULL, NULL) != 0) {
            rc = -ENAMETOOLONG;
            goto out_unlock; /* nothing sent yet for this item: the pipeline is dropped below */
        }
        snprintf(d, sizeof d, "%.17g", delta[i]);
        snprintf(ttl, sizeof ttl, "%" PRId64,
                 ttl_ns[i] / NS_PER_MS > 0 ? ttl_ns[i] / NS_PER_MS : 1);
        const char *incr[] = {"INCRBYFLOAT", key, d};
        const char *pexp[] = {"PEXPIRE", key, ttl};
        if (redisAppendCommandArgv(s->loop.c, 3, incr, NULL) != REDIS_OK ||
            redisAppendCommandArgv(s->loop.c, 3, pexp, NULL) != REDIS_OK) {
            rc = -ENOMEM;
            goto out_unlock;
        }
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *rep = exchange_reply(s, deadline);
        if (rep == NULL) {
            rc = -ETIMEDOUT;
            goto out_unlock;
        }
        char *end = NULL;
        totals[i] = rep->type == REDIS_REPLY_STRING ? strtod(rep->str, &end) : NAN;
        if (end == NULL || *end != '\0')
            totals[i] = NAN;
        freeReplyObject(rep);
        rep = exchange_reply(s, deadline);
        if (rep == NULL) {
            rc = -ETIMEDOUT;
            goto out_unlock;
        }
        freeReplyObject(rep);
        count(s, C_BUDGET_ADDED);
    }

out_unlock:
    if (rc == -ENAMETOOLONG || rc == -ENOMEM)
        conn_drop(s, &s->loop, "cannot queue the budget commands"); /* drops what was queued */
    pthread_mutex_unlock(&s->loop.mu);
    if (rc != 0)
        count(s, C_FAIL_OPEN);
    return rc;
}
