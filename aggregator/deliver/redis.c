/*
 * redis.c -- the Redis stream sink (sink.h) through hiredis: one XADD per delivery, trimmed by
 * age with MINID ~ so the stream keeps about `retention` of alerts.
 */
#include "sink.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct redis_sink {
    sn_sink base;
    sn_redis_url url;
    char stream[128];
    int64_t retention_ns;
    int64_t timeout_ns;
    redisContext *c; /* NULL while disconnected */
} redis_sink;

/* Copies [s, s+n) into out (outlen bytes); false when it does not fit. */
static bool copy_part(char *out, size_t outlen, const char *s, size_t n)
{
    if (n >= outlen)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

/* A decimal number in [lo, hi] spanning exactly [s, s+n). */
static bool parse_int(const char *s, size_t n, long lo, long hi, int *out)
{
    if (n == 0 || n > 9)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

int sn_redis_url_parse(const char *url, sn_redis_url *out)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (url == NULL || strncmp(url, "redis://", 8) != 0)
        return -EINVAL;
    const char *p = url + 8;
    const char *slash = strchr(p, '/');
    const char *end = slash != NULL ? slash : p + strlen(p);
    const char *at = memrchr(p, '@', (size_t)(end - p));
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL)
            return -EINVAL; /* user info needs ":password" */
        if (!copy_part(out->user, sizeof out->user, p, (size_t)(colon - p)) ||
            !copy_part(out->password, sizeof out->password, colon + 1, (size_t)(at - colon - 1)))
            return -EINVAL;
        p = at + 1;
    }
    const char *hend = end;
    if (*p == '[') { /* [IPv6]:port */
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (rb == NULL || !copy_part(out->host, sizeof out->host, p + 1, (size_t)(rb - p - 1)))
            return -EINVAL;
        if (rb + 1 < end &&
            (rb[1] != ':' || !parse_int(rb + 2, (size_t)(end - rb - 2), 1, 65535, &out->port)))
            return -EINVAL;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (colon != NULL) {
            hend = colon;
            if (!parse_int(colon + 1, (size_t)(end - colon - 1), 1, 65535, &out->port))
                return -EINVAL;
        }
        if (!copy_part(out->host, sizeof out->host, p, (size_t)(hend - p)))
            return -EINVAL;
    }
    if (out->host[0] == '\0')
        return -EINVAL;
    if (slash != NULL && slash[1] != '\0' &&
        !parse_int(slash + 1, strlen(slash + 1), 0, 1000000, &out->db))
        return -EINVAL;
    return 0;
}

static void disconnect(redis_sink *r)
{
    if (r->c != NULL)
        redisFree(r->c);
    r->c = NULL;
}

/* Runs one command; the reply (or NULL on a transport error, reason set) is the caller's. */
static redisReply *command(redis_sink *r, int argc, const char **argv, const size_t *lens,
                           char *reason, size_t rlen)
{
    redisReply *rep = redisCommandArgv(r->c, argc, argv, lens);
    if (rep == NULL) {
        snprintf(reason, rlen, "redis: %s", r->c->errstr[0] != '\0' ? r->c->errstr : "no reply");
        disconnect(r);
    }
    return rep;
}

/* Connects, AUTHs and SELECTs. Returns 0 or -EIO with the reason. */
static int connect_redis(redis_sink *r, char *reason, size_t rlen)
{
    struct timeval tv = {.tv_sec = (time_t)(r->timeout_ns / 1000000000),
                         .tv_usec = (suseconds_t)(r->timeout_ns % 1000000000 / 1000)};
    r->c = redisConnectWithTimeout(r->url.host, r->url.port, tv);
    if (r->c == NULL || r->c->err != 0) {
        snprintf(reason, rlen, "redis: connecting to %s:%d: %s", r->url.host, r->url.port,
                 r->c != NULL ? r->c->errstr : "out of memory");
        disconnect(r);
        return -EIO;
    }
    redisSetTimeout(r->c, tv);
    char db[16];
    snprintf(db, sizeof db, "%d", r->url.db);
    for (int step = 0; step < 2; step++) {
        const char *argv[3];
        int argc = 0;
        if (step == 0) {
            if (r->url.password[0] == '\0')
                continue;
            argv[argc++] = "AUTH";
            if (r->url.user[0] != '\0')
                argv[argc++] = r->url.user;
            argv[argc++] = r->url.password;
        } else {
            if (r->url.db == 0)
                continue;
            argv[argc++] = "SELECT";
            argv[argc++] = db;
        }
        redisReply *rep = command(r, argc, argv, NULL, reason, rlen);
        if (rep == NULL)
            return -EIO;
        bool bad = rep->type == REDIS_REPLY_ERROR;
        if (bad)
            snprintf(reason, rlen, "redis: %s: %s", argv[0], rep->str);
        freeReplyObject(rep);
        if (bad) {
            disconnect(r);
            return -EIO;
        }
    }
    return 0;
}

static char *redis_format(const sn_sink *s, sn_alert_change change, const sn_alert *a, size_t *len)
{
    (void)s;
    (void)change;
    return sn_sink_alert_json(a, len);
}

/* Error replies that mean "try later" rather than "this command is wrong". */
static bool transient_error(const char *msg)
{
    static const char *const prefixes[] = {"LOADING",    "BUSY",     "TRYAGAIN", "READONLY",
                                           "MASTERDOWN", "NOAUTH",   "OOM",      "CLUSTERDOWN",
                                           "NOREPLICAS", "WRONGPASS"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        if (strncmp(msg, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    }
    return false;
}

static sn_sink_result redis_send(sn_sink *s, const sn_sink_msg *m, char *reason, size_t rlen)
{
    redis_sink *r = (redis_sink *)s;
    if (r->c == NULL && connect_redis(r, reason, rlen) != 0)
        return SN_SINK_RETRY;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t min_ms = now_ms - r->retention_ns / 1000000;
    char minid[32], did[32];
    snprintf(minid, sizeof minid, "%lld-0", (long long)(min_ms > 0 ? min_ms : 0));
    snprintf(did, sizeof did, "%lld", (long long)m->delivery_id);
    const char *argv[] = {"XADD",        r->stream,
                          "MINID",       "~",
                          minid,         "*",
                          "alert_id",    m->alert_id,
                          "change",      sn_alert_change_name(m->change),
                          "severity",    sn_severity_name(m->severity),
                          "delivery_id", did,
                          "json",        m->body};
    size_t lens[sizeof argv / sizeof argv[0]];
    for (size_t i = 0; i < sizeof argv / sizeof argv[0]; i++)
        lens[i] = strlen(argv[i]);
    lens[sizeof argv / sizeof argv[0] - 1] = m->len;
    redisReply *rep = command(r, (int)(sizeof argv / sizeof argv[0]), argv, lens, reason, rlen);
    if (rep == NULL)
        return SN_SINK_RETRY;
    sn_sink_result res = SN_SINK_OK;
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(reason, rlen, "redis: XADD: %s", rep->str);
        res = transient_error(rep->str) ? SN_SINK_RETRY : SN_SINK_PERMANENT;
        if (res == SN_SINK_RETRY)
            disconnect(r);
    } else if (rep->type != REDIS_REPLY_STRING) {
        snprintf(reason, rlen, "redis: XADD: unexpected reply type %d", rep->type);
        res = SN_SINK_RETRY;
        disconnect(r);
    }
    freeReplyObject(rep);
    return res;
}

static void redis_destroy(sn_sink *s)
{
    redis_sink *r = (redis_sink *)s;
    disconnect(r);
    free(r);
}

static const sn_sink_ops redis_ops = {
    .kind = "redis", .format = redis_format, .send = redis_send, .destroy = redis_destroy};

int sn_sink_redis_create(const sn_redis_sink_config *cfg, sn_sink **out, char *err, size_t errlen)
{
    *out = NULL;
    redis_sink *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(err, errlen, "redis sink: out of memory");
        return -ENOMEM;
    }
    const char *stream =
        cfg->stream != NULL && cfg->stream[0] != '\0' ? cfg->stream : "sentinel:alerts";
    if (sn_redis_url_parse(cfg->url, &r->url) != 0 || strlen(stream) >= sizeof r->stream ||
        cfg->retention_ns <= 0 || cfg->timeout_ns <= 0) {
        free(r);
        snprintf(err, errlen,
                 "redis sink: needs url redis://[[user]:password@]host[:port][/db], a stream "
                 "name under 128 bytes, retention and timeout > 0");
        return -EINVAL;
    }
    r->base.ops = &redis_ops;
    snprintf(r->base.name, sizeof r->base.name, "%s",
             cfg->sink_name != NULL ? cfg->sink_name : "redis");
    memcpy(r->stream, stream, strlen(stream) + 1);
    r->retention_ns = cfg->retention_ns;
    r->timeout_ns = cfg->timeout_ns;
    *out = &r->base;
    return 0;
}
