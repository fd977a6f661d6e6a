/*
 * redis_it.c -- the Redis stream sink against a real redis-server started on a free loopback
 * port (password, database 2, no persistence): stream entries and their fields, trimming by
 * age, a refused command dead-lettered while the rest flow, an outage (server stopped while
 * alerts fire, then started again) and an engine restart with pending deliveries -- each alert
 * in the stream exactly once.
 */
#include "it_util.h"

#include <check.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PASSWORD "it-pass"

static char g_dir[128], g_srv[160], g_log[200];
static int g_port;
static pid_t g_pid;

static void redis_start(void)
{
    char port[16];
    snprintf(port, sizeof port, "%d", g_port);
    const char *argv[] = {"/usr/bin/redis-server",
                          "--port",
                          port,
                          "--bind",
                          "127.0.0.1",
                          "--requirepass",
                          PASSWORD,
                          "--save",
                          "",
                          "--appendonly",
                          "no",
                          "--dir",
                          g_srv,
                          "--stream-node-max-entries",
                          "1",
                          "--daemonize",
                          "no",
                          NULL};
    g_pid = it_spawn(argv, NULL, g_log);
    ck_assert_msg(it_wait_port(g_port, 10000), "redis-server did not start (see %s)", g_log);
}

static void redis_stop(void)
{
    it_stop(g_pid, 5000);
    g_pid = 0;
    ck_assert(it_wait_port_closed(g_port, 5000));
}

static void setup(void)
{
    it_tmpdir("sn-redis-it", g_dir, sizeof g_dir);
    snprintf(g_srv, sizeof g_srv, "%s/srv", g_dir);
    snprintf(g_log, sizeof g_log, "%s/redis.log", g_dir);
    ck_assert_int_eq(mkdir(g_srv, 0700), 0);
    g_port = it_free_port();
    redis_start();
}

static void teardown(void)
{
    it_stop(g_pid, 5000);
    it_rmrf(g_dir);
}

/* A checking client on database 2. */
static redisContext *client(void)
{
    redisContext *c = redisConnect("127.0.0.1", g_port);
    ck_assert(c != NULL && c->err == 0);
    redisReply *r = redisCommand(c, "AUTH %s", PASSWORD);
    ck_assert_int_eq(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = redisCommand(c, "SELECT 2");
    ck_assert_int_eq(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    return c;
}

static sn_sink *sink(int64_t retention_ns)
{
    char url[128];
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d/2", PASSWORD, g_port);
    sn_redis_sink_config c = {.url = url, .retention_ns = retention_ns, .timeout_ns = IT_SEC};
    sn_sink *s;
    char err[256];
    int rc = sn_sink_redis_create(&c, &s, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    return s;
}

/* The value of field in one XRANGE entry ([id, [k, v, ...]]), or NULL. */
static const char *field(const redisReply *entry, const char *name)
{
    const redisReply *kv = entry->element[1];
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        if (strcmp(kv->element[i]->str, name) == 0)
            return kv->element[i + 1]->str;
    }
    return NULL;
}

/* Entries of the stream for alert_id and change. */
static unsigned count(redisContext *c, const char *alert_id, const char *change)
{
    redisReply *r = redisCommand(c, "XRANGE sentinel:alerts - +");
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    unsigned n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const char *id = field(r->element[i], "alert_id"), *ch = field(r->element[i], "change");
        n += id != NULL && ch != NULL && strcmp(id, alert_id) == 0 && strcmp(ch, change) == 0;
    }
    freeReplyObject(r);
    return n;
}

static long long xlen(redisContext *c)
{
    redisReply *r = redisCommand(c, "XLEN sentinel:alerts");
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return n;
}

START_TEST(entries_carry_id_change_and_json)
{
    sn_store *st = it_store(g_dir);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, sink(7 * 86400 * IT_SEC));
    sn_alert a = it_alert(1, "chatbot", SN_SEV_CRITICAL);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a, it_now(), NULL);
    a.status = SN_ALERT_RESOLVED;
    a.resolved_at_ns = it_now();
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_RESOLVED, &a, it_now(), NULL);
    ck_assert(it_wait_done(d, "redis", 2, 10000));
    redisContext *c = client();
    redisReply *r = redisCommand(c, "XRANGE sentinel:alerts - +");
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(r->elements, 2);
    const char *changes[] = {"fired", "resolved"}, *status[] = {"firing", "resolved"};
    for (size_t i = 0; i < 2; i++) {
        const redisReply *e = r->element[i];
        ck_assert_str_eq(field(e, "alert_id"), a.alert_id);
        ck_assert_str_eq(field(e, "change"), changes[i]);
        ck_assert_str_eq(field(e, "severity"), "critical");
        ck_assert_ptr_nonnull(field(e, "delivery_id"));
        json_t *j = json_loads(field(e, "json"), 0, NULL);
        ck_assert_ptr_nonnull(j);
        ck_assert_str_eq(json_string_value(json_object_get(j, "alert_id")), a.alert_id);
        ck_assert_str_eq(json_string_value(json_object_get(j, "status")), status[i]);
        json_decref(j);
    }
    freeReplyObject(r);
    /* nothing in database 0 */
    r = redisCommand(c, "SELECT 0");
    freeReplyObject(r);
    ck_assert_int_eq(xlen(c), 0);
    redisFree(c);
    sn_deliver_destroy(d);
    sn_store_close(st);
}
END_TEST

START_TEST(old_entries_are_trimmed_by_age)
{
    redisContext *c = client();
    /* two entries from long ago (ids are milliseconds since the epoch) */
    redisReply *r = redisCommand(c, "XADD sentinel:alerts 1000-0 alert_id old1");
    freeReplyObject(r);
    r = redisCommand(c, "XADD sentinel:alerts 2000-0 alert_id old2");
    freeReplyObject(r);
    ck_assert_int_eq(xlen(c), 2);
    sn_store *st = it_store(g_dir);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, sink(3600 * IT_SEC)); /* keep an hour */
    sn_alert a = it_alert(2, "svc", SN_SEV_LOW);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a, it_now(), NULL);
    ck_assert(it_wait_done(d, "redis", 1, 10000));
    ck_assert_int_eq(xlen(c), 1);
    ck_assert_uint_eq(count(c, a.alert_id, "fired"), 1);
    redisFree(c);
    sn_deliver_destroy(d);
    sn_store_close(st);
}
END_TEST

START_TEST(refused_command_dead_letters_and_the_rest_flow)
{
    redisContext *c = client();
    redisReply *r = redisCommand(c, "SET sentinel:alerts not-a-stream");
    freeReplyObject(r);
    sn_store *st = it_store(g_dir);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, sink(86400 * IT_SEC));
    sn_alert a1 = it_alert(3, "svc", SN_SEV_LOW), a2 = it_alert(4, "svc", SN_SEV_LOW);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a1, it_now(), NULL);
    ck_assert(it_wait_done(d, "redis", 1, 10000));
    sn_store_delivery dl;
    ck_assert_int_eq(sn_store_delivery_get(st, 1, &dl), 0);
    ck_assert_int_eq(dl.state, SN_DELIVERY_DEAD);
    ck_assert_ptr_nonnull(strstr(dl.reason, "WRONGTYPE"));
    sn_store_delivery_clear(&dl);
    r = redisCommand(c, "DEL sentinel:alerts");
    freeReplyObject(r);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a2, it_now(), NULL);
    ck_assert(it_wait_done(d, "redis", 2, 10000));
    ck_assert_uint_eq(count(c, a2.alert_id, "fired"), 1);
    ck_assert_uint_eq(count(c, a1.alert_id, "fired"), 0);
    sn_deliver_sink_stats s;
    sn_deliver_sink_stats_get(d, "redis", &s);
    ck_assert_uint_eq(s.dead_lettered, 1);
    ck_assert_uint_eq(s.delivered, 1);
    redisFree(c);
    sn_deliver_destroy(d);
    sn_store_close(st);
}
END_TEST

START_TEST(outage_and_engine_restart_deliver_each_once)
{
    sn_store *st = it_store(g_dir);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, sink(86400 * IT_SEC));
    redis_stop(); /* the receiver goes down */
    sn_alert a[6];
    for (int i = 0; i < 3; i++) {
        a[i] = it_alert(10 + i, "svc", SN_SEV_HIGH);
        sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a[i], it_now(), NULL);
    }
    it_sleep_ms(600);
    sn_deliver_sink_stats s;
    sn_deliver_sink_stats_get(d, "redis", &s);
    ck_assert_uint_gt(s.failed, 0);
    ck_assert_uint_eq(s.delivered, 0);
    redis_start(); /* back up: the three arrive */
    ck_assert(it_wait_done(d, "redis", 3, 10000));
    /* down again; the aggregator restarts with three more pending */
    redis_stop();
    for (int i = 3; i < 6; i++) {
        a[i] = it_alert(10 + i, "svc", SN_SEV_HIGH);
        sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a[i], it_now(), NULL);
    }
    it_sleep_ms(300);
    sn_deliver_destroy(d);
    uint64_t pend;
    sn_store_delivery_depth(st, "redis", &pend, NULL, NULL);
    ck_assert_uint_eq(pend, 3);
    redis_start(); /* a fresh server: only the three pending may appear */
    d = it_engine(g_dir);
    it_add(d, sink(86400 * IT_SEC));
    ck_assert(it_wait_done(d, "redis", 3, 10000));
    it_sleep_ms(300);
    redisContext *c = client();
    ck_assert_int_eq(xlen(c), 3);
    for (int i = 3; i < 6; i++)
        ck_assert_uint_eq(count(c, a[i].alert_id, "fired"), 1);
    redisFree(c);
    sn_deliver_destroy(d);
    uint64_t done;
    sn_store_delivery_depth(st, "redis", &pend, NULL, &done);
    ck_assert_uint_eq(pend, 0);
    ck_assert_uint_eq(done, 6);
    sn_store_close(st);
}
END_TEST

START_TEST(wrong_password_is_retried_not_dead_lettered)
{
    char url[128];
    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d/2", g_port);
    sn_redis_sink_config cfg = {.url = url, .retention_ns = IT_SEC, .timeout_ns = IT_SEC};
    sn_sink *s;
    char err[256];
    ck_assert_int_eq(sn_sink_redis_create(&cfg, &s, err, sizeof err), 0);
    sn_store *st = it_store(g_dir);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, s);
    sn_alert a = it_alert(30, "svc", SN_SEV_LOW);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a, it_now(), NULL);
    it_sleep_ms(500);
    sn_deliver_sink_stats stats;
    sn_deliver_sink_stats_get(d, "redis", &stats);
    ck_assert_uint_gt(stats.failed, 0);
    ck_assert_uint_eq(stats.dead_lettered, 0);
    sn_store_delivery dl;
    ck_assert_int_eq(sn_store_delivery_get(st, 1, &dl), 0);
    ck_assert_int_eq(dl.state, SN_DELIVERY_PENDING);
    ck_assert_ptr_nonnull(strstr(dl.reason, "AUTH"));
    sn_store_delivery_clear(&dl);
    sn_deliver_destroy(d);
    sn_store_close(st);
}
END_TEST

int main(void)
{
    if (access("/usr/bin/redis-server", X_OK) != 0) {
        fprintf(stderr, "redis-server is not installed (deploy/local/install-deps.sh)\n");
        return 77;
    }
    Suite *s = suite_create("redis_it");
    TCase *tc = tcase_create("redis");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, entries_carry_id_change_and_json);
    tcase_add_test(tc, old_entries_are_trimmed_by_age);
    tcase_add_test(tc, refused_command_dead_letters_and_the_rest_flow);
    tcase_add_test(tc, outage_and_engine_restart_deliver_each_once);
    tcase_add_test(tc, wrong_password_is_retried_not_dead_lettered);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
