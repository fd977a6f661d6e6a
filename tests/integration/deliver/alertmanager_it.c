/*
 * alertmanager_it.c -- the Alertmanager sink against a real prometheus-alertmanager started on a
 * free loopback port (own config, storage in a temp dir, clustering off): the alert shows up in
 * GET /api/v2/alerts with its labels and annotations, leaves it when resolved, escalation keeps
 * one active label set, firing alerts are re-sent, a refused alert is dead-lettered while the
 * rest flow, and alerts raised while Alertmanager is down (and across an engine restart) arrive.
 */
#include "it_util.h"

#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define AM_BIN "/usr/bin/prometheus-alertmanager"

static char g_dir[128], g_log[200];
static int g_port;
static pid_t g_pid;

static void am_start(void)
{
    char cfg[200], data[200], listen[64], arg_cfg[240], arg_data[240];
    snprintf(cfg, sizeof cfg, "%s/alertmanager.yml", g_dir);
    snprintf(data, sizeof data, "%s/data", g_dir);
    it_write_file(cfg, "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n");
    snprintf(arg_cfg, sizeof arg_cfg, "--config.file=%s", cfg);
    snprintf(arg_data, sizeof arg_data, "--storage.path=%s", data);
    snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d", g_port);
    const char *argv[] = {
        AM_BIN, arg_cfg, arg_data, listen, "--cluster.listen-address=", "--log.level=warn", NULL};
    g_pid = it_spawn(argv, NULL, g_log);
    ck_assert_msg(it_wait_port(g_port, 15000), "alertmanager did not start (see %s)", g_log);
}

static void am_stop(void)
{
    it_stop(g_pid, 5000);
    g_pid = 0;
    ck_assert(it_wait_port_closed(g_port, 5000));
}

static void setup(void)
{
    it_tmpdir("sn-am-it", g_dir, sizeof g_dir);
    snprintf(g_log, sizeof g_log, "%s/alertmanager.log", g_dir);
    g_port = it_free_port();
    am_start();
}

static void teardown(void)
{
    it_stop(g_pid, 5000);
    it_rmrf(g_dir);
}

typedef struct buf {
    char data[1 << 20];
    size_t len;
} buf;

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    buf *b = ud;
    size_t k = size * n;
    if (b->len + k >= sizeof b->data)
        return 0;
    memcpy(b->data + b->len, p, k);
    b->len += k;
    b->data[b->len] = '\0';
    return k;
}

/* GET /api/v2/alerts (active, not silenced): the parsed array. */
static json_t *am_alerts(void)
{
    static buf b;
    b.len = 0;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/v2/alerts", g_port);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    ck_assert_int_eq(curl_easy_perform(h), CURLE_OK);
    long status;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    ck_assert_int_eq(status, 200);
    json_t *j = json_loads(b.data, 0, NULL);
    ck_assert(json_is_array(j));
    return j;
}

static const char *str(json_t *o, const char *a, const char *b)
{
    return json_string_value(json_object_get(json_object_get(o, a), b));
}

/* Active alerts whose annotation alert_id is id; *sev gets the severity label of the last. */
static unsigned active(const char *id, char *sev, size_t sevlen, char *updated, size_t ulen)
{
    json_t *arr = am_alerts();
    if (getenv("IT_DEBUG") != NULL) {
        char *t = json_dumps(arr, JSON_COMPACT);
        fprintf(stderr, "AM: %s\n", t);
        free(t);
    }
    unsigned n = 0;
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x)
    {
        const char *aid = str(x, "annotations", "alert_id");
        if (aid == NULL || strcmp(aid, id) != 0 || strcmp(str(x, "status", "state"), "active") != 0)
            continue;
        n++;
        if (sev != NULL)
            snprintf(sev, sevlen, "%s", str(x, "labels", "severity"));
        if (updated != NULL)
            snprintf(updated, ulen, "%s", json_string_value(json_object_get(x, "updatedAt")));
    }
    json_decref(arr);
    return n;
}

static bool wait_active(const char *id, unsigned want, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 100) {
        if (active(id, NULL, 0, NULL, 0) == want)
            return true;
        it_sleep_ms(100);
    }
    return false;
}

static sn_sink *sink(int64_t resend_ns)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", g_port);
    sn_alertmanager_config c = {.url = url,
                                .generator_url = "http://sentinel.test:8080",
                                .timeout_ns = IT_SEC,
                                .resend_ns = resend_ns};
    sn_sink *s;
    char err[256];
    int rc = sn_sink_alertmanager_create(&c, &s, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    return s;
}

START_TEST(alert_shows_up_with_labels_and_resolves)
{
    sn_store *st = it_store(g_dir);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, sink(0));
    sn_alert a = it_alert(1, "chatbot", SN_SEV_HIGH);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a, it_now(), NULL);
    ck_assert(it_wait_done(d, "alertmanager", 1, 10000));
    ck_assert(wait_active(a.alert_id, 1, 5000));
    json_t *arr = am_alerts();
    size_t i;
    json_t *x;
    bool seen = false;
    json_array_foreach(arr, i, x)
    {
        if (strcmp(str(x, "annotations", "alert_id"), a.alert_id) != 0)
            continue;
        seen = true;
        ck_assert_str_eq(str(x, "labels", "alertname"), "LLMLatencySpike");
        ck_assert_str_eq(str(x, "labels", "severity"), "high");
        ck_assert_str_eq(str(x, "labels", "service"), "chatbot");
        ck_assert_str_eq(str(x, "labels", "model"), "gpt-4o");
        ck_assert_str_eq(str(x, "labels", "anomaly_type"), "latency_spike");
        ck_assert_str_eq(str(x, "annotations", "root_cause"), "provider latency");
        ck_assert_ptr_nonnull(
            strstr(json_string_value(json_object_get(x, "generatorURL")), a.alert_id));
    }
    ck_assert(seen);
    json_decref(arr);
    a.status = SN_ALERT_RESOLVED;
    a.resolved_at_ns = it_now();
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_RESOLVED, &a, it_now(), NULL);
    ck_assert(it_wait_done(d, "alertmanager", 2, 10000));
    ck_assert(wait_active(a.alert_id, 0, 5000));
    sn_deliver_destroy(d);
    sn_store_close(st);
}
END_TEST

START_TEST(escalation_leaves_one_active_label_set)
{
    sn_store *st = it_store(g_dir);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, sink(0));
    sn_alert a = it_alert(2, "search", SN_SEV_MEDIUM);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a, it_now(), NULL);
    ck_assert(it_wait_done(d, "alertmanager", 1, 10000));
    ck_assert(wait_active(a.alert_id, 1, 5000));
    a.severity = SN_SEV_CRITICAL;
    a.last_seen_ns = it_now();
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_ESCALATED, &a, it_now(), NULL);
    ck_assert(it_wait_done(d, "alertmanager", 2, 10000));
    it_sleep_ms(200);
    char sev[32];
    ck_assert_uint_eq(active(a.alert_id, sev, sizeof sev, NULL, 0), 1);
    ck_assert_str_eq(sev, "critical");
    sn_deliver_destroy(d);
    sn_store_close(st);
}
END_TEST

START_TEST(firing_alerts_are_resent)
{
    sn_store *st = it_store(g_dir);
    sn_alert a = it_alert(3, "chatbot", SN_SEV_LOW), gone = it_alert(4, "chatbot", SN_SEV_LOW);
    ck_assert_int_eq(sn_store_alert_upsert(st, &a), 0);
    gone.status = SN_ALERT_RESOLVED;
    gone.resolved_at_ns = it_now();
    ck_assert_int_eq(sn_store_alert_upsert(st, &gone), 0);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, sink(IT_SEC));
    /* nothing queued: the first re-send round alone puts the firing alert there */
    ck_assert(wait_active(a.alert_id, 1, 5000));
    char first[64], later[64];
    active(a.alert_id, NULL, 0, first, sizeof first);
    it_sleep_ms(2300);
    active(a.alert_id, NULL, 0, later, sizeof later);
    ck_assert_str_ne(first, later);
    ck_assert_uint_eq(active(gone.alert_id, NULL, 0, NULL, 0), 0);
    sn_deliver_sink_stats s;
    sn_deliver_sink_stats_get(d, "alertmanager", &s);
    ck_assert_uint_ge(s.resent, 2);
    ck_assert_uint_eq(s.delivered, 0);
    sn_deliver_destroy(d);
    sn_store_close(st);
}
END_TEST

START_TEST(refused_alert_is_dead_lettered_and_the_rest_flow)
{
    sn_store *st = it_store(g_dir);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, sink(0));
    sn_alert bad = it_alert(5, "svc", SN_SEV_LOW), good = it_alert(6, "svc", SN_SEV_LOW);
    bad.status = SN_ALERT_RESOLVED;
    bad.resolved_at_ns = bad.timestamp_ns - 3600 * IT_SEC; /* ends before it starts */
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_RESOLVED, &bad, it_now(), NULL);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &good, it_now(), NULL);
    ck_assert(it_wait_done(d, "alertmanager", 2, 10000));
    ck_assert(wait_active(good.alert_id, 1, 5000));
    sn_store_delivery dl;
    ck_assert_int_eq(sn_store_delivery_get(st, 1, &dl), 0);
    ck_assert_int_eq(dl.state, SN_DELIVERY_DEAD);
    ck_assert_ptr_nonnull(strstr(dl.reason, "HTTP 400"));
    sn_store_delivery_clear(&dl);
    sn_deliver_destroy(d);
    sn_store_close(st);
}
END_TEST

START_TEST(outage_and_engine_restart_deliver_everything)
{
    am_stop();
    sn_store *st = it_store(g_dir);
    sn_deliver *d = it_engine(g_dir);
    it_add(d, sink(0));
    sn_alert a[4];
    char svc[4][16]; /* one service each: Alertmanager keys alerts by their labels */
    for (int i = 0; i < 4; i++)
        snprintf(svc[i], sizeof svc[i], "svc-%d", i);
    for (int i = 0; i < 2; i++) {
        a[i] = it_alert(10 + i, svc[i], SN_SEV_HIGH);
        sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a[i], it_now(), NULL);
    }
    it_sleep_ms(500);
    sn_deliver_sink_stats s;
    sn_deliver_sink_stats_get(d, "alertmanager", &s);
    ck_assert_uint_gt(s.failed, 0);
    ck_assert_uint_eq(s.delivered, 0);
    am_start();
    ck_assert(it_wait_done(d, "alertmanager", 2, 10000));
    sn_deliver_sink_stats_get(d, "alertmanager", &s);
    ck_assert_uint_eq(s.delivered, 2);
    for (int i = 0; i < 2; i++)
        ck_assert(wait_active(a[i].alert_id, 1, 5000));
    /* down again, two more, the aggregator restarts */
    am_stop();
    for (int i = 2; i < 4; i++) {
        a[i] = it_alert(10 + i, svc[i], SN_SEV_HIGH);
        sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a[i], it_now(), NULL);
    }
    it_sleep_ms(300);
    sn_deliver_destroy(d);
    am_start();
    d = it_engine(g_dir);
    it_add(d, sink(0));
    ck_assert(it_wait_done(d, "alertmanager", 2, 10000));
    it_sleep_ms(300);
    sn_deliver_sink_stats_get(d, "alertmanager", &s);
    ck_assert_uint_eq(s.delivered, 2); /* only the two pending: the first two not again */
    for (int i = 2; i < 4; i++)
        ck_assert(wait_active(a[i].alert_id, 1, 5000));
    /* Alertmanager keeps alerts in memory only: the first two went with its restart, and come
     * back with the periodic re-send of the alerts the store has firing */
    ck_assert_uint_eq(active(a[0].alert_id, NULL, 0, NULL, 0), 0);
    sn_deliver_destroy(d);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(sn_store_alert_upsert(st, &a[i]), 0);
    d = it_engine(g_dir);
    it_add(d, sink(IT_SEC));
    for (int i = 0; i < 4; i++)
        ck_assert(wait_active(a[i].alert_id, 1, 5000));
    sn_deliver_sink_stats_get(d, "alertmanager", &s);
    ck_assert_uint_eq(s.delivered, 0);
    ck_assert_uint_ge(s.resent, 4);
    uint64_t pend, done;
    sn_store_delivery_depth(st, "alertmanager", &pend, NULL, &done);
    ck_assert_uint_eq(pend, 0);
    ck_assert_uint_eq(done, 4);
    sn_deliver_destroy(d);
    sn_store_close(st);
}
END_TEST

int main(void)
{
    if (access(AM_BIN, X_OK) != 0) {
        fprintf(stderr,
                "prometheus-alertmanager is not installed (deploy/local/install-deps.sh)\n");
        return 77;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("alertmanager_it");
    TCase *tc = tcase_create("alertmanager");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, alert_shows_up_with_labels_and_resolves);
    tcase_add_test(tc, escalation_leaves_one_active_label_set);
    tcase_add_test(tc, firing_alerts_are_resent);
    tcase_add_test(tc, refused_alert_is_dead_lettered_and_the_rest_flow);
    tcase_add_test(tc, outage_and_engine_restart_deliver_everything);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
