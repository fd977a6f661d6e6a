/*
 * amqp_it.c -- the RabbitMQ sink against a real rabbitmq-server: a private node (own node name,
 * AMQP, distribution and epmd ports on loopback, database, logs, config and Erlang cookie in a
 * temp dir) started by the test and stopped afterwards. Checks routing keys through bound test
 * queues read with basic.get, message properties, dead-lettering of a rejected message into
 * incidents.dlq, and persistence across a broker restart combined with an outage (alerts raised
 * while the broker is down) and an engine restart with pending deliveries: every alert in the
 * queue exactly once.
 */
#include "it_util.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RABBIT_BIN "/usr/lib/rabbitmq/bin/rabbitmq-server"
#define EPMD_BIN   "/usr/bin/epmd"

static char g_dir[128], g_log[200];
static int g_port, g_dist, g_epmd;
static pid_t g_rabbit, g_epmd_pid;
static char g_env[12][300];

static void rabbit_start(void)
{
    const char *env[13];
    for (int i = 0; i < 12; i++)
        env[i] = g_env[i];
    env[12] = NULL;
    const char *argv[] = {RABBIT_BIN, NULL};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    g_rabbit = it_spawn(argv, env, g_log);
    ck_assert_msg(it_wait_port(g_port, 60000), "rabbitmq-server did not start (see %s)", g_log);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "amqp_it: broker up in %.1f s\n",
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
}

static void rabbit_stop(void)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    it_stop(g_rabbit, 30000);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "amqp_it: broker stopped in %.1f s\n",
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    g_rabbit = 0;
    ck_assert(it_wait_port_closed(g_port, 10000));
}

static void setup(void)
{
    it_tmpdir("sn-amqp-it", g_dir, sizeof g_dir);
    snprintf(g_log, sizeof g_log, "%s/rabbit.log", g_dir);
    g_port = it_free_port();
    g_dist = it_free_port();
    g_epmd = it_free_port();
    char home[160], path[200];
    snprintf(home, sizeof home, "%s/home", g_dir);
    ck_assert_int_eq(mkdir(home, 0700), 0);
    snprintf(path, sizeof path, "%s/rabbit.conf", g_dir);
    it_write_file(path, "log.console.level = warning\n");
    snprintf(path, sizeof path, "%s/enabled_plugins", g_dir);
    it_write_file(path, "[].\n");
    int i = 0;
    snprintf(g_env[i++], sizeof g_env[0], "HOME=%s", home);
    snprintf(g_env[i++], sizeof g_env[0], "RABBITMQ_NODENAME=sntest%d@localhost", (int)getpid());
    snprintf(g_env[i++], sizeof g_env[0], "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1");
    snprintf(g_env[i++], sizeof g_env[0], "RABBITMQ_NODE_PORT=%d", g_port);
    snprintf(g_env[i++], sizeof g_env[0], "RABBITMQ_DIST_PORT=%d", g_dist);
    snprintf(g_env[i++], sizeof g_env[0], "ERL_EPMD_PORT=%d", g_epmd);
    snprintf(g_env[i++], sizeof g_env[0], "ERL_EPMD_ADDRESS=127.0.0.1");
    snprintf(g_env[i++], sizeof g_env[0], "RABBITMQ_MNESIA_BASE=%s/mnesia", g_dir);
    snprintf(g_env[i++], sizeof g_env[0], "RABBITMQ_LOG_BASE=%s/log", g_dir);
    snprintf(g_env[i++], sizeof g_env[0], "RABBITMQ_CONFIG_FILE=%s/rabbit", g_dir);
    snprintf(g_env[i++], sizeof g_env[0], "RABBITMQ_ENABLED_PLUGINS_FILE=%s/enabled_plugins",
             g_dir);
    snprintf(g_env[i++], sizeof g_env[0], "RABBITMQ_PID_FILE=%s/rabbit.pid", g_dir);
    /* our own epmd, in the foreground, so that it is ours to stop */
    char port[16];
    snprintf(port, sizeof port, "%d", g_epmd);
    const char *eargv[] = {EPMD_BIN, "-port", port, "-address", "127.0.0.1", NULL};
    char elog[200];
    snprintf(elog, sizeof elog, "%s/epmd.log", g_dir);
    g_epmd_pid = it_spawn(eargv, NULL, elog);
    ck_assert(it_wait_port(g_epmd, 5000));
    rabbit_start();
}

static void teardown(void)
{
    it_stop(g_rabbit, 0); /* SIGKILL: the data is thrown away anyway */
    it_stop(g_epmd_pid, 5000);
    it_rmrf(g_dir);
}

/* ---- a checking client ---- */

static amqp_connection_state_t client(void)
{
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    ck_assert_int_eq(amqp_socket_open(s, "127.0.0.1", g_port), AMQP_STATUS_OK);
    amqp_rpc_reply_t r = amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
    ck_assert_int_eq(r.reply_type, AMQP_RESPONSE_NORMAL);
    amqp_channel_open(c, 1);
    ck_assert_int_eq(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    return c;
}

static void client_close(amqp_connection_state_t c)
{
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
}

/* Declares the sink's exchanges (the same arguments) and the test's queues. */
static void topology(amqp_connection_state_t c)
{
    amqp_exchange_declare(c, 1, amqp_cstring_bytes("incidents.dlx"), amqp_cstring_bytes("fanout"),
                          0, 1, 0, 0, amqp_empty_table);
    ck_assert_int_eq(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    amqp_table_entry_t ae = {.key = amqp_cstring_bytes("alternate-exchange"),
                             .value = {.kind = AMQP_FIELD_KIND_UTF8,
                                       .value.bytes = amqp_cstring_bytes("incidents.dlx")}};
    amqp_exchange_declare(c, 1, amqp_cstring_bytes("incidents"), amqp_cstring_bytes("topic"), 0, 1,
                          0, 0, (amqp_table_t){.num_entries = 1, .entries = &ae});
    ck_assert_int_eq(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    /* a consumer's queue: everything, rejected messages dead-lettered to incidents.dlx */
    amqp_table_entry_t dlx = {.key = amqp_cstring_bytes("x-dead-letter-exchange"),
                              .value = {.kind = AMQP_FIELD_KIND_UTF8,
                                        .value.bytes = amqp_cstring_bytes("incidents.dlx")}};
    amqp_queue_declare(c, 1, amqp_cstring_bytes("t.all"), 0, 1, 0, 0,
                       (amqp_table_t){.num_entries = 1, .entries = &dlx});
    ck_assert_int_eq(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    amqp_queue_bind(c, 1, amqp_cstring_bytes("t.all"), amqp_cstring_bytes("incidents"),
                    amqp_cstring_bytes("incidents.#"), amqp_empty_table);
    ck_assert_int_eq(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    /* pager: critical only */
    amqp_queue_declare(c, 1, amqp_cstring_bytes("t.crit"), 0, 1, 0, 0, amqp_empty_table);
    ck_assert_int_eq(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    amqp_queue_bind(c, 1, amqp_cstring_bytes("t.crit"), amqp_cstring_bytes("incidents"),
                    amqp_cstring_bytes("incidents.critical"), amqp_empty_table);
    ck_assert_int_eq(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
}

typedef struct got {
    bool any;
    uint64_t tag;
    char message_id[64];
    char routing_key[64];
    char content_type[64];
    char change[32];
    int delivery_mode;
    char alert_id[64]; /* from the JSON body */
} got;

/* basic.get one message of queue (not acknowledged yet). */
static got get(amqp_connection_state_t c, const char *queue)
{
    got g;
    memset(&g, 0, sizeof g);
    amqp_rpc_reply_t r = amqp_basic_get(c, 1, amqp_cstring_bytes(queue), 0);
    ck_assert_int_eq(r.reply_type, AMQP_RESPONSE_NORMAL);
    if (r.reply.id != AMQP_BASIC_GET_OK_METHOD)
        return g;
    amqp_basic_get_ok_t *ok = r.reply.decoded;
    g.any = true;
    g.tag = ok->delivery_tag;
    snprintf(g.routing_key, sizeof g.routing_key, "%.*s", (int)ok->routing_key.len,
             (const char *)ok->routing_key.bytes);
    amqp_message_t m;
    ck_assert_int_eq(amqp_read_message(c, 1, &m, 0).reply_type, AMQP_RESPONSE_NORMAL);
    amqp_basic_properties_t *p = &m.properties;
    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        snprintf(g.message_id, sizeof g.message_id, "%.*s", (int)p->message_id.len,
                 (const char *)p->message_id.bytes);
    if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
        snprintf(g.content_type, sizeof g.content_type, "%.*s", (int)p->content_type.len,
                 (const char *)p->content_type.bytes);
    if (p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG)
        g.delivery_mode = p->delivery_mode;
    if (p->_flags & AMQP_BASIC_HEADERS_FLAG) {
        for (int i = 0; i < p->headers.num_entries; i++) {
            amqp_table_entry_t *e = &p->headers.entries[i];
            if (e->key.len == 6 && memcmp(e->key.bytes, "change", 6) == 0 &&
                e->value.kind == AMQP_FIELD_KIND_UTF8)
                snprintf(g.change, sizeof g.change, "%.*s", (int)e->value.value.bytes.len,
                         (const char *)e->value.value.bytes.bytes);
        }
    }
    json_t *j = json_loadb(m.body.bytes, m.body.len, 0, NULL);
    ck_assert_ptr_nonnull(j);
    snprintf(g.alert_id, sizeof g.alert_id, "%s",
             json_string_value(json_object_get(j, "alert_id")));
    json_decref(j);
    amqp_destroy_message(&m);
    return g;
}

static void ack(amqp_connection_state_t c, uint64_t tag)
{
    ck_assert_int_eq(amqp_basic_ack(c, 1, tag, 0), 0);
}

static sn_sink *sink(void)
{
    char url[128];
    snprintf(url, sizeof url, "amqp://guest:guest@127.0.0.1:%d/", g_port);
    sn_amqp_config cfg = {.url = url, .timeout_ns = 2 * IT_SEC};
    sn_sink *s;
    char err[256];
    int rc = sn_sink_amqp_create(&cfg, &s, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    return s;
}

START_TEST(routing_dead_letters_persistence_outage_and_restart)
{
    amqp_connection_state_t c = client();
    topology(c);
    sn_store *st = it_store(g_dir);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, sink());
    sn_alert a1 = it_alert(1, "chatbot", SN_SEV_HIGH), a2 = it_alert(2, "chatbot", SN_SEV_CRITICAL);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a1, it_now(), NULL);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a2, it_now(), NULL);
    ck_assert(it_wait_done(d, "amqp", 2, 15000));

    /* routing: only the critical one reached the pager queue */
    got g = get(c, "t.crit");
    ck_assert(g.any);
    ck_assert_str_eq(g.message_id, a2.alert_id);
    ck_assert_str_eq(g.alert_id, a2.alert_id);
    ck_assert_str_eq(g.routing_key, "incidents.critical");
    ck_assert_str_eq(g.content_type, "application/json");
    ck_assert_int_eq(g.delivery_mode, 2);
    ck_assert_str_eq(g.change, "fired");
    ack(c, g.tag);
    ck_assert(!get(c, "t.crit").any);

    /* both in t.all, in order; the first rejected: dead-lettered into incidents.dlq */
    g = get(c, "t.all");
    ck_assert(g.any);
    ck_assert_str_eq(g.message_id, a1.alert_id);
    ck_assert_str_eq(g.routing_key, "incidents.high");
    ck_assert_int_eq(amqp_basic_reject(c, 1, g.tag, 0), 0);
    g = get(c, "t.all");
    ck_assert_str_eq(g.message_id, a2.alert_id);
    ack(c, g.tag);
    ck_assert(!get(c, "t.all").any);
    got dl = {0};
    for (int i = 0; i < 50 && !dl.any; i++) {
        dl = get(c, "incidents.dlq");
        if (!dl.any)
            it_sleep_ms(100);
    }
    ck_assert(dl.any);
    ck_assert_str_eq(dl.message_id, a1.alert_id);
    ack(c, dl.tag);

    /* a3 stays in t.all across the broker restart */
    sn_alert a3 = it_alert(3, "search", SN_SEV_MEDIUM);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a3, it_now(), NULL);
    ck_assert(it_wait_done(d, "amqp", 3, 15000));
    client_close(c);

    /* outage: the broker stops; a4 and a5 fire meanwhile; the aggregator restarts */
    rabbit_stop();
    sn_alert a4 = it_alert(4, "search", SN_SEV_LOW), a5 = it_alert(5, "search", SN_SEV_CRITICAL);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a4, it_now(), NULL);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a5, it_now(), NULL);
    it_sleep_ms(500);
    sn_deliver_sink_stats s;
    sn_deliver_sink_stats_get(d, "amqp", &s);
    ck_assert_uint_gt(s.failed, 0);
    ck_assert_uint_eq(s.delivered, 3);
    sn_deliver_destroy(d);
    uint64_t pend;
    sn_store_delivery_depth(st, "amqp", &pend, NULL, NULL);
    ck_assert_uint_eq(pend, 2);

    rabbit_start();
    d = it_engine(g_dir);
    it_add(d, sink());
    ck_assert(it_wait_done(d, "amqp", 2, 20000));
    it_sleep_ms(300);
    sn_deliver_sink_stats_get(d, "amqp", &s);
    ck_assert_uint_eq(s.delivered, 2);

    c = client();
    const char *want[] = {a3.alert_id, a4.alert_id, a5.alert_id};
    for (int i = 0; i < 3; i++) {
        g = get(c, "t.all");
        ck_assert_msg(g.any, "message %d missing after the restart", i);
        ck_assert_str_eq(g.message_id, want[i]);
        ack(c, g.tag);
    }
    ck_assert(!get(c, "t.all").any); /* nothing twice */
    g = get(c, "t.crit");
    ck_assert(g.any);
    ck_assert_str_eq(g.message_id, a5.alert_id);
    ack(c, g.tag);
    ck_assert(!get(c, "t.crit").any);
    client_close(c);
    sn_deliver_destroy(d);
    sn_store_close(st);
}
END_TEST

int main(void)
{
    if (access(RABBIT_BIN, X_OK) != 0 || access(EPMD_BIN, X_OK) != 0) {
        fprintf(stderr, "rabbitmq-server is not installed (deploy/local/install-deps.sh)\n");
        return 77;
    }
    Suite *s = suite_create("amqp_it");
    TCase *tc = tcase_create("rabbitmq");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, routing_dead_letters_persistence_outage_and_restart);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
