/* Unit tests for aggregator/deliver/: routing, the token bucket, the circuit breaker, payloads
 * (webhook body, Alertmanager shape, HMAC), settings, and the engine with a scripted sink over a
 * real state store (retries, order, dead letters, rate limit, breaker, restart). */
#include "deliver.h"
#include "http.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEC INT64_C(1000000000)
#define MS  INT64_C(1000000)

static char g_dir[128];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/sn-deliver-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void teardown(void)
{
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static sn_alert make_alert(int i, const char *service, sn_severity sev)
{
    sn_alert a;
    memset(&a, 0, sizeof a);
    snprintf(a.alert_id, sizeof a.alert_id, "00000000-0000-4000-8000-%012d", i);
    a.timestamp_ns = INT64_C(1795000000) * SEC;
    a.last_seen_ns = a.timestamp_ns + 5 * SEC;
    a.severity = sev;
    a.anomaly_type = SN_ANOMALY_LATENCY_SPIKE;
    snprintf(a.service, sizeof a.service, "%s", service);
    snprintf(a.model, sizeof a.model, "gpt-4o");
    a.method = SN_DETECT_ZSCORE;
    a.confidence = 0.95;
    a.metric = SN_METRIC_LATENCY_MS;
    a.value = 12000;
    a.baseline = 2000;
    a.threshold = 6000;
    a.deviation_sigma = 5.2;
    snprintf(a.time_window, sizeof a.time_window, "last_5_minutes");
    snprintf(a.root_cause, sizeof a.root_cause, "provider slow");
    a.nremediation = 2;
    snprintf(a.remediation[0], sizeof a.remediation[0], "fail over");
    snprintf(a.remediation[1], sizeof a.remediation[1], "page the owner");
    snprintf(a.runbook_url, sizeof a.runbook_url, "https://runbooks.example/latency");
    a.status = SN_ALERT_FIRING;
    a.occurrences = 3;
    return a;
}

/* ---- routing ---- */

START_TEST(rule_matches_severity_services_and_changes)
{
    sn_deliver_rule r;
    sn_deliver_rule_all(&r);
    sn_alert a = make_alert(1, "chatbot", SN_SEV_LOW);
    for (int c = SN_ALERT_CHANGE_FIRED; c <= SN_ALERT_CHANGE_RESOLVED; c++)
        ck_assert(sn_deliver_rule_match(&r, (sn_alert_change)c, &a));

    r.min_severity = SN_SEV_HIGH;
    ck_assert(!sn_deliver_rule_match(&r, SN_ALERT_CHANGE_FIRED, &a));
    a.severity = SN_SEV_HIGH;
    ck_assert(sn_deliver_rule_match(&r, SN_ALERT_CHANGE_FIRED, &a));
    a.severity = SN_SEV_CRITICAL;
    ck_assert(sn_deliver_rule_match(&r, SN_ALERT_CHANGE_FIRED, &a));

    r.nservices = 2;
    snprintf(r.services[0], sizeof r.services[0], "search");
    snprintf(r.services[1], sizeof r.services[1], "chatbot");
    ck_assert(sn_deliver_rule_match(&r, SN_ALERT_CHANGE_FIRED, &a));
    snprintf(a.service, sizeof a.service, "chatbot-2");
    ck_assert(!sn_deliver_rule_match(&r, SN_ALERT_CHANGE_FIRED, &a));
    snprintf(a.service, sizeof a.service, "search");
    ck_assert(sn_deliver_rule_match(&r, SN_ALERT_CHANGE_FIRED, &a));

    r.changes = 1u << SN_ALERT_CHANGE_RESOLVED;
    ck_assert(!sn_deliver_rule_match(&r, SN_ALERT_CHANGE_FIRED, &a));
    ck_assert(!sn_deliver_rule_match(&r, SN_ALERT_CHANGE_UPDATED, &a));
    ck_assert(sn_deliver_rule_match(&r, SN_ALERT_CHANGE_RESOLVED, &a));
}
END_TEST

START_TEST(rule_from_settings_parses_and_refuses)
{
    sn_deliver_route_settings s;
    memset(&s, 0, sizeof s);
    s.min_severity = 2; /* high */
    s.changes.count = 2;
    snprintf(s.changes.items[0], sizeof s.changes.items[0], "fired");
    snprintf(s.changes.items[1], sizeof s.changes.items[1], "resolved");
    s.services.count = 1;
    snprintf(s.services.items[0], sizeof s.services.items[0], "chatbot");
    sn_deliver_rule r;
    char err[256];
    ck_assert_int_eq(sn_deliver_rule_from_settings(&s, &r, err, sizeof err), 0);
    ck_assert_int_eq(r.min_severity, SN_SEV_HIGH);
    ck_assert_uint_eq(r.changes, (1u << SN_ALERT_CHANGE_FIRED) | (1u << SN_ALERT_CHANGE_RESOLVED));
    ck_assert_uint_eq(r.nservices, 1);
    ck_assert_str_eq(r.services[0], "chatbot");

    snprintf(s.changes.items[1], sizeof s.changes.items[1], "exploded");
    ck_assert_int_eq(sn_deliver_rule_from_settings(&s, &r, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "exploded"));
    snprintf(s.changes.items[1], sizeof s.changes.items[1], "resolved");
    s.min_severity = 4;
    ck_assert_int_eq(sn_deliver_rule_from_settings(&s, &r, err, sizeof err), -EINVAL);
}
END_TEST

START_TEST(change_names_round_trip)
{
    for (int c = SN_ALERT_CHANGE_FIRED; c <= SN_ALERT_CHANGE_RESOLVED; c++) {
        sn_alert_change back;
        ck_assert_int_eq(sn_alert_change_from_name(sn_alert_change_name((sn_alert_change)c), &back),
                         0);
        ck_assert_int_eq(back, c);
    }
    ck_assert_str_eq(sn_alert_change_name(SN_ALERT_CHANGE_ESCALATED), "escalated");
    sn_alert_change x;
    ck_assert_int_eq(sn_alert_change_from_name("FIRED", &x), -EINVAL);
}
END_TEST

/* ---- token bucket ---- */

START_TEST(bucket_allows_a_burst_then_paces)
{
    sn_token_bucket b;
    int64_t t = 1000 * SEC;
    sn_token_bucket_init(&b, 2.0, 3.0, t);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(sn_token_bucket_take(&b, t), 0);
    int64_t wait = sn_token_bucket_take(&b, t);
    ck_assert_int_ge(wait, 500 * MS - MS);
    ck_assert_int_le(wait, 500 * MS + MS);
    ck_assert_int_gt(sn_token_bucket_take(&b, t + 400 * MS), 0);
    ck_assert_int_eq(sn_token_bucket_take(&b, t + 501 * MS), 0);
    /* a long idle refills only up to the burst */
    t += 100 * SEC;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(sn_token_bucket_take(&b, t), 0);
    ck_assert_int_gt(sn_token_bucket_take(&b, t), 0);
}
END_TEST

START_TEST(bucket_unlimited_and_minimum_burst)
{
    sn_token_bucket b;
    sn_token_bucket_init(&b, 0.0, 0.0, 0);
    for (int i = 0; i < 10000; i++)
        ck_assert_int_eq(sn_token_bucket_take(&b, 0), 0);
    sn_token_bucket_init(&b, 1.0, 0.0, 0);
    ck_assert_int_eq(sn_token_bucket_take(&b, 0), 0);
    ck_assert_int_gt(sn_token_bucket_take(&b, 0), 900 * MS);
}
END_TEST

/* ---- circuit breaker ---- */

START_TEST(breaker_opens_probes_and_closes)
{
    sn_breaker b;
    sn_breaker_init(&b, 3, 10 * SEC);
    int64_t t = 100 * SEC;
    ck_assert_int_eq(sn_breaker_allow(&b, t), 0);
    ck_assert(!sn_breaker_failure(&b, t));
    ck_assert(!sn_breaker_failure(&b, t));
    ck_assert_int_eq(b.state, SN_BREAKER_CLOSED);
    ck_assert(sn_breaker_failure(&b, t));
    ck_assert_int_eq(b.state, SN_BREAKER_OPEN);
    ck_assert_uint_eq(b.opened, 1);
    ck_assert_int_eq(sn_breaker_allow(&b, t + 4 * SEC), 6 * SEC);
    /* cooldown over: one probe, which fails: open again for a whole cooldown */
    ck_assert_int_eq(sn_breaker_allow(&b, t + 10 * SEC), 0);
    ck_assert_int_eq(b.state, SN_BREAKER_HALF_OPEN);
    ck_assert(sn_breaker_failure(&b, t + 11 * SEC));
    ck_assert_int_eq(b.state, SN_BREAKER_OPEN);
    ck_assert_uint_eq(b.opened, 2);
    ck_assert_int_eq(sn_breaker_allow(&b, t + 12 * SEC), 9 * SEC);
    /* the next probe succeeds: closed, failures forgotten */
    ck_assert_int_eq(sn_breaker_allow(&b, t + 21 * SEC), 0);
    sn_breaker_success(&b);
    ck_assert_int_eq(b.state, SN_BREAKER_CLOSED);
    ck_assert_uint_eq(b.failures, 0);
    ck_assert(!sn_breaker_failure(&b, t + 22 * SEC));
}
END_TEST

START_TEST(breaker_threshold_zero_never_opens)
{
    sn_breaker b;
    sn_breaker_init(&b, 0, SEC);
    for (int i = 0; i < 100; i++)
        ck_assert(!sn_breaker_failure(&b, 0));
    ck_assert_int_eq(sn_breaker_allow(&b, 0), 0);
}
END_TEST

/* ---- payloads ---- */

START_TEST(hmac_matches_rfc4231_vector)
{
    char sig[SN_WEBHOOK_SIGNATURE_MAX];
    const char *data = "what do ya want for nothing?";
    ck_assert_int_eq(sn_webhook_signature("Jefe", data, strlen(data), sig, sizeof sig), 0);
    ck_assert_str_eq(sig,
                     "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    ck_assert_int_eq(sn_webhook_signature("Jefe", data, strlen(data), sig, 10), -EINVAL);
}
END_TEST

START_TEST(webhook_body_is_the_alert_json)
{
    sn_webhook_config c = {.url = "http://127.0.0.1:1/hook", .timeout_ns = SEC};
    sn_sink *s;
    char err[256];
    ck_assert_int_eq(sn_sink_webhook_create(&c, &s, err, sizeof err), 0);
    ck_assert_str_eq(s->name, "webhook");
    sn_alert a = make_alert(7, "chatbot", SN_SEV_HIGH);
    size_t len = 0;
    char *body = s->ops->format(s, SN_ALERT_CHANGE_FIRED, &a, &len);
    ck_assert_ptr_nonnull(body);
    ck_assert_uint_eq(len, strlen(body));
    json_t *got = json_loads(body, 0, NULL), *want = sn_alert_to_json(&a);
    ck_assert_ptr_nonnull(got);
    ck_assert(json_equal(got, want));
    ck_assert_str_eq(json_string_value(json_object_get(got, "alert_id")), a.alert_id);
    ck_assert_str_eq(json_string_value(json_object_get(got, "status")), "firing");
    json_decref(got);
    json_decref(want);
    free(body);
    sn_sink_destroy(s);

    c.url = "ftp://x";
    ck_assert_int_eq(sn_sink_webhook_create(&c, &s, err, sizeof err), -EINVAL);
    c.url = "http://x";
    c.timeout_ns = 0;
    ck_assert_int_eq(sn_sink_webhook_create(&c, &s, err, sizeof err), -EINVAL);
}
END_TEST

START_TEST(http_status_classification)
{
    ck_assert_int_eq(sn_deliver_http_classify(200), SN_SINK_OK);
    ck_assert_int_eq(sn_deliver_http_classify(204), SN_SINK_OK);
    ck_assert_int_eq(sn_deliver_http_classify(408), SN_SINK_RETRY);
    ck_assert_int_eq(sn_deliver_http_classify(429), SN_SINK_RETRY);
    ck_assert_int_eq(sn_deliver_http_classify(500), SN_SINK_RETRY);
    ck_assert_int_eq(sn_deliver_http_classify(503), SN_SINK_RETRY);
    ck_assert_int_eq(sn_deliver_http_classify(400), SN_SINK_PERMANENT);
    ck_assert_int_eq(sn_deliver_http_classify(401), SN_SINK_PERMANENT);
    ck_assert_int_eq(sn_deliver_http_classify(404), SN_SINK_PERMANENT);
    ck_assert_int_eq(sn_deliver_http_classify(301), SN_SINK_PERMANENT);
}
END_TEST

static json_t *am_parse(const sn_alert *a, sn_alert_change change, const char *gen)
{
    size_t len = 0;
    char *text = sn_alertmanager_payload(a, change, gen, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(len, strlen(text));
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    ck_assert_ptr_nonnull(j);
    ck_assert(json_is_array(j));
    return j;
}

static const char *lbl(json_t *alert, const char *k)
{
    return json_string_value(json_object_get(json_object_get(alert, "labels"), k));
}

static const char *ann(json_t *alert, const char *k)
{
    return json_string_value(json_object_get(json_object_get(alert, "annotations"), k));
}

START_TEST(alertmanager_payload_shape)
{
    sn_alert a = make_alert(3, "chatbot", SN_SEV_HIGH);
    json_t *j = am_parse(&a, SN_ALERT_CHANGE_FIRED, "http://agg:8080");
    ck_assert_uint_eq(json_array_size(j), 1);
    json_t *x = json_array_get(j, 0);
    ck_assert_uint_eq(json_object_size(json_object_get(x, "labels")), 5);
    ck_assert_str_eq(lbl(x, "alertname"), "LLMLatencySpike");
    ck_assert_str_eq(lbl(x, "severity"), "high");
    ck_assert_str_eq(lbl(x, "service"), "chatbot");
    ck_assert_str_eq(lbl(x, "model"), "gpt-4o");
    ck_assert_str_eq(lbl(x, "anomaly_type"), "latency_spike");
    ck_assert_str_eq(ann(x, "alert_id"), a.alert_id);
    ck_assert_str_eq(ann(x, "root_cause"), "provider slow");
    ck_assert_str_eq(ann(x, "description"), "provider slow");
    ck_assert_str_eq(ann(x, "remediation"), "fail over; page the owner");
    ck_assert_str_eq(ann(x, "runbook_url"), "https://runbooks.example/latency");
    ck_assert_str_eq(ann(x, "value"), "12000");
    ck_assert_str_eq(ann(x, "baseline"), "2000");
    ck_assert_str_eq(ann(x, "detection_method"), "z_score");
    ck_assert_ptr_nonnull(strstr(ann(x, "summary"), "chatbot/gpt-4o"));
    char t[40];
    sn_alert_format_time(a.timestamp_ns, t, sizeof t);
    ck_assert_str_eq(json_string_value(json_object_get(x, "startsAt")), t);
    ck_assert_ptr_null(json_object_get(x, "endsAt"));
    char gen[128];
    snprintf(gen, sizeof gen, "http://agg:8080/api/v1/anomalies/%s", a.alert_id);
    ck_assert_str_eq(json_string_value(json_object_get(x, "generatorURL")), gen);
    json_decref(j);

    /* resolved: endsAt = resolved_at; no generatorURL without a base */
    a.status = SN_ALERT_RESOLVED;
    a.resolved_at_ns = a.last_seen_ns + 300 * SEC;
    j = am_parse(&a, SN_ALERT_CHANGE_RESOLVED, NULL);
    x = json_array_get(j, 0);
    sn_alert_format_time(a.resolved_at_ns, t, sizeof t);
    ck_assert_str_eq(json_string_value(json_object_get(x, "endsAt")), t);
    ck_assert_ptr_null(json_object_get(x, "generatorURL"));
    json_decref(j);
}
END_TEST

START_TEST(alertmanager_escalation_ends_lower_severities)
{
    sn_alert a = make_alert(4, "chatbot", SN_SEV_CRITICAL);
    a.deviation_sigma = NAN;
    json_t *j = am_parse(&a, SN_ALERT_CHANGE_ESCALATED, NULL);
    ck_assert_uint_eq(json_array_size(j), 4);
    ck_assert_str_eq(lbl(json_array_get(j, 0), "severity"), "critical");
    ck_assert_ptr_null(json_object_get(json_array_get(j, 0), "endsAt"));
    ck_assert_ptr_null(ann(json_array_get(j, 0), "deviation_sigma"));
    json_decref(j);
    a.value = NAN;
    j = am_parse(&a, SN_ALERT_CHANGE_ESCALATED, NULL);
    ck_assert_str_eq(ann(json_array_get(j, 0), "summary"),
                     "latency_spike on chatbot/gpt-4o: latency_ms");
    ck_assert_ptr_null(ann(json_array_get(j, 0), "value"));
    const char *lower[] = {"low", "medium", "high"};
    char t[40];
    sn_alert_format_time(a.last_seen_ns, t, sizeof t);
    for (int i = 0; i < 3; i++) {
        json_t *x = json_array_get(j, (size_t)i + 1);
        ck_assert_str_eq(lbl(x, "severity"), lower[i]);
        ck_assert_str_eq(lbl(x, "service"), "chatbot");
        ck_assert_str_eq(json_string_value(json_object_get(x, "endsAt")), t);
    }
    json_decref(j);
}
END_TEST

START_TEST(alertmanager_url_gets_the_api_path)
{
    sn_alertmanager_config c = {.url = "http://127.0.0.1:9093/", .timeout_ns = SEC};
    sn_sink *s;
    char err[256];
    ck_assert_int_eq(sn_sink_alertmanager_create(&c, &s, err, sizeof err), 0);
    ck_assert_int_eq(s->resend_ns, 0);
    sn_sink_destroy(s);
    c.resend_ns = 60 * SEC;
    c.url = "http://127.0.0.1:9093/api/v2/alerts";
    ck_assert_int_eq(sn_sink_alertmanager_create(&c, &s, err, sizeof err), 0);
    ck_assert_int_eq(s->resend_ns, 60 * SEC);
    sn_sink_destroy(s);
    c.url = "127.0.0.1:9093";
    ck_assert_int_eq(sn_sink_alertmanager_create(&c, &s, err, sizeof err), -EINVAL);
}
END_TEST

START_TEST(redis_url_parse)
{
    sn_redis_url u;
    ck_assert_int_eq(sn_redis_url_parse("redis://127.0.0.1:6390/3", &u), 0);
    ck_assert_str_eq(u.host, "127.0.0.1");
    ck_assert_int_eq(u.port, 6390);
    ck_assert_int_eq(u.db, 3);
    ck_assert_str_eq(u.password, "");
    ck_assert_int_eq(sn_redis_url_parse("redis://:s3cret@cache", &u), 0);
    ck_assert_str_eq(u.host, "cache");
    ck_assert_int_eq(u.port, 6379);
    ck_assert_str_eq(u.password, "s3cret");
    ck_assert_str_eq(u.user, "");
    ck_assert_int_eq(sn_redis_url_parse("redis://bob:pw@[::1]:7000/", &u), 0);
    ck_assert_str_eq(u.user, "bob");
    ck_assert_str_eq(u.host, "::1");
    ck_assert_int_eq(u.port, 7000);
    ck_assert_int_eq(sn_redis_url_parse("http://h", &u), -EINVAL);
    ck_assert_int_eq(sn_redis_url_parse("redis://h:0", &u), -EINVAL);
    ck_assert_int_eq(sn_redis_url_parse("redis://h:99999", &u), -EINVAL);
    ck_assert_int_eq(sn_redis_url_parse("redis://h/x", &u), -EINVAL);
    ck_assert_int_eq(sn_redis_url_parse("redis://pw@h", &u), -EINVAL);
    ck_assert_int_eq(sn_redis_url_parse("redis://", &u), -EINVAL);
}
END_TEST

START_TEST(amqp_and_redis_create_validate)
{
    sn_sink *s;
    char err[256];
    sn_amqp_config ac = {.url = "amqp://guest:guest@127.0.0.1:5672/", .timeout_ns = SEC};
    ck_assert_int_eq(sn_sink_amqp_create(&ac, &s, err, sizeof err), 0);
    ck_assert_str_eq(s->name, "amqp");
    sn_sink_destroy(s);
    ac.url = "http://x";
    ck_assert_int_eq(sn_sink_amqp_create(&ac, &s, err, sizeof err), -EINVAL);
    sn_redis_sink_config rc = {
        .url = "redis://127.0.0.1:1", .retention_ns = SEC, .timeout_ns = SEC};
    ck_assert_int_eq(sn_sink_redis_create(&rc, &s, err, sizeof err), 0);
    /* nobody listens on port 1: a retryable failure with the reason */
    sn_alert a = make_alert(1, "svc", SN_SEV_LOW);
    size_t len;
    char *body = s->ops->format(s, SN_ALERT_CHANGE_FIRED, &a, &len);
    sn_sink_msg m = {.delivery_id = 1,
                     .alert_id = a.alert_id,
                     .change = SN_ALERT_CHANGE_FIRED,
                     .severity = SN_SEV_LOW,
                     .body = body,
                     .len = len};
    char reason[256] = "";
    ck_assert_int_eq(s->ops->send(s, &m, reason, sizeof reason), SN_SINK_RETRY);
    ck_assert_ptr_nonnull(strstr(reason, "127.0.0.1:1"));
    free(body);
    sn_sink_destroy(s);
    rc.retention_ns = 0;
    ck_assert_int_eq(sn_sink_redis_create(&rc, &s, err, sizeof err), -EINVAL);
}
END_TEST

/* ---- settings ---- */

typedef struct target {
    sn_deliver_settings d;
} target;

static const sn_config_desc table[] = {SN_DELIVER_DESCRIPTORS(target, d)};

START_TEST(settings_defaults_env_and_secrets)
{
    static target t;
    sn_config *cfg;
    sn_config_error err;
    setenv("SENTINEL_WEBHOOK_URL", "http://hooks.example/alerts", 1);
    setenv("SENTINEL_AMQP_URL", "amqp://u:p@mq:5672/", 1);
    int rc = sn_config_create(&cfg, table, sizeof table / sizeof table[0], &t, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    ck_assert_int_eq(sn_config_load_env(cfg, &err), 0);
    ck_assert_str_eq(t.d.webhook.url, "http://hooks.example/alerts");
    ck_assert_int_eq(t.d.webhook.timeout_ns, 5 * SEC);
    ck_assert_int_eq(t.d.alertmanager.resend_ns, 60 * SEC);
    ck_assert_str_eq(t.d.amqp.exchange, "incidents");
    ck_assert_str_eq(t.d.redis.stream, "sentinel:alerts");
    ck_assert_int_eq(t.d.redis.retention_ns, 7 * 86400 * SEC);
    ck_assert_uint_eq(t.d.webhook.route.changes.count, 3);
    ck_assert_int_eq(t.d.breaker_failures, 5);
    ck_assert_int_eq(sn_config_set(cfg, "sinks.webhook.token", "tok-123", NULL, &err), 0);
    ck_assert_int_eq(sn_config_set(cfg, "sinks.webhook.min_severity", "high", NULL, &err), 0);
    ck_assert_int_eq(t.d.webhook.route.min_severity, 2);
    ck_assert_int_eq(sn_config_set(cfg, "sinks.webhook.min_severity", "urgent", NULL, &err),
                     -EINVAL);
    json_t *dump = sn_config_dump_json(cfg);
    char *text = json_dumps(dump, 0);
    ck_assert_ptr_null(strstr(text, "tok-123"));
    ck_assert_ptr_null(strstr(text, "u:p@mq"));
    ck_assert_ptr_nonnull(strstr(text, "hooks.example"));
    free(text);
    json_decref(dump);
    sn_config_destroy(cfg);
    unsetenv("SENTINEL_WEBHOOK_URL");
    unsetenv("SENTINEL_AMQP_URL");

    sn_deliver_options o;
    sn_deliver_options_init(&o);
    t.d.max_attempts = 7;
    sn_deliver_options_from_settings(&o, &t.d);
    ck_assert_uint_eq(o.max_attempts, 7);
    ck_assert_int_eq(o.poll_ns, SEC);
    ck_assert_uint_eq(o.busy_timeout_ms, 5000);

    size_t n;
    ck_assert_ptr_nonnull(sn_deliver_descriptors(&n));
    ck_assert_uint_eq(n, sizeof table / sizeof table[0]);
}
END_TEST

/* ---- the engine with a scripted sink ---- */

#define MAX_SENT 256

typedef struct test_sink {
    sn_sink base;
    pthread_mutex_t mu;
    sn_sink_result script[64]; /* results of the first calls; then `then` */
    unsigned nscript;
    sn_sink_result then;
    unsigned calls;
    unsigned nsent; /* acknowledged */
    char sent[MAX_SENT][SN_ALERT_ID_LEN + 16];
    int64_t sent_at[MAX_SENT];
} test_sink;

static char *ts_format(const sn_sink *s, sn_alert_change change, const sn_alert *a, size_t *len)
{
    (void)s;
    char *b = malloc(64);
    snprintf(b, 64, "%s/%s", a->alert_id, sn_alert_change_name(change));
    *len = strlen(b);
    return b;
}

static sn_sink_result ts_send(sn_sink *s, const sn_sink_msg *m, char *reason, size_t rlen)
{
    test_sink *t = (test_sink *)s;
    pthread_mutex_lock(&t->mu);
    sn_sink_result r = t->calls < t->nscript ? t->script[t->calls] : t->then;
    t->calls++;
    if (r == SN_SINK_OK && t->nsent < MAX_SENT) {
        snprintf(t->sent[t->nsent], sizeof t->sent[0], "%.*s", (int)m->len, m->body);
        t->sent_at[t->nsent++] = now_ns();
    }
    pthread_mutex_unlock(&t->mu);
    if (r != SN_SINK_OK)
        snprintf(reason, rlen, r == SN_SINK_RETRY ? "HTTP 503: busy" : "HTTP 400: bad alert");
    return r;
}

static void ts_destroy(sn_sink *s)
{
    test_sink *t = (test_sink *)s;
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static const sn_sink_ops ts_ops = {
    .kind = "test", .format = ts_format, .send = ts_send, .destroy = ts_destroy};

static test_sink *ts_new(const char *name)
{
    test_sink *t = calloc(1, sizeof *t);
    t->base.ops = &ts_ops;
    snprintf(t->base.name, sizeof t->base.name, "%s", name);
    pthread_mutex_init(&t->mu, NULL);
    t->then = SN_SINK_OK;
    return t;
}

static unsigned ts_count(test_sink *t)
{
    pthread_mutex_lock(&t->mu);
    unsigned n = t->nsent;
    pthread_mutex_unlock(&t->mu);
    return n;
}

static sn_store *open_store(void)
{
    sn_store *st;
    char err[256];
    int rc = sn_store_open(g_dir, NULL, &st, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    return st;
}

static sn_deliver *new_engine(sn_metrics *m)
{
    sn_deliver_options o;
    sn_deliver_options_init(&o);
    o.store_dir = g_dir;
    o.poll_ns = 20 * MS;
    o.metrics = m;
    sn_deliver *d;
    char err[256];
    int rc = sn_deliver_create(&o, &d, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    return d;
}

static sn_deliver_policy fast_policy(void)
{
    sn_deliver_policy p;
    sn_deliver_policy_init(&p);
    p.rate = 0;
    p.backoff.initial_ms = 20;
    p.backoff.max_ms = 40;
    p.breaker_failures = 0;
    return p;
}

static void add(sn_deliver *d, test_sink *t, const sn_deliver_rule *r, const sn_deliver_policy *p)
{
    char err[256];
    sn_deliver_rule all;
    sn_deliver_rule_all(&all);
    int rc = sn_deliver_add_sink(d, &t->base, r != NULL ? r : &all, p, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
}

/* Waits up to 10 s until the sink acknowledged n messages. */
static void wait_sent(test_sink *t, unsigned n)
{
    for (int i = 0; i < 1000 && ts_count(t) < n; i++)
        usleep(10000);
    ck_assert_uint_eq(ts_count(t), n);
}

static void depth(sn_store *st, const char *sink, uint64_t pend, uint64_t dead, uint64_t done)
{
    uint64_t p, de, dv;
    ck_assert_int_eq(sn_store_delivery_depth(st, sink, &p, &de, &dv), 0);
    ck_assert_uint_eq(p, pend);
    ck_assert_uint_eq(de, dead);
    ck_assert_uint_eq(dv, done);
}

START_TEST(engine_delivers_and_routes)
{
    sn_store *st = open_store();
    sn_metrics *m;
    char err[256];
    ck_assert_int_eq(sn_metrics_create(NULL, &m, err, sizeof err), 0);
    sn_deliver *d = new_engine(m);
    test_sink *all = ts_new("all"), *crit = ts_new("crit");
    sn_deliver_policy p = fast_policy();
    add(d, all, NULL, &p);
    sn_deliver_rule r;
    sn_deliver_rule_all(&r);
    r.min_severity = SN_SEV_CRITICAL;
    add(d, crit, &r, &p);
    sn_alert a1 = make_alert(1, "svc", SN_SEV_MEDIUM), a2 = make_alert(2, "svc", SN_SEV_CRITICAL);
    unsigned q = 0;
    ck_assert_int_eq(sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a1, now_ns(), &q), 1);
    ck_assert_uint_eq(q, 1);
    ck_assert_int_eq(sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a2, now_ns(), &q), 2);
    wait_sent(all, 2);
    wait_sent(crit, 1);
    ck_assert_str_eq(all->sent[0], "00000000-0000-4000-8000-000000000001/fired");
    ck_assert_str_eq(all->sent[1], "00000000-0000-4000-8000-000000000002/fired");
    ck_assert_str_eq(crit->sent[0], "00000000-0000-4000-8000-000000000002/fired");
    usleep(100000);
    depth(st, "all", 0, 0, 2);
    depth(st, "crit", 0, 0, 1);
    sn_deliver_sink_stats s;
    ck_assert_int_eq(sn_deliver_sink_stats_get(d, "all", &s), 0);
    ck_assert_uint_eq(s.delivered, 2);
    ck_assert_uint_eq(s.failed, 0);
    ck_assert_str_eq(s.last_error, ""); /* nothing failed */
    ck_assert_int_eq(sn_deliver_sink_stats_get(d, "nope", &s), -ENOENT);
    /* the sinks by index, in the order they were added */
    ck_assert_uint_eq(sn_deliver_sink_count(d), 2);
    ck_assert_str_eq(sn_deliver_sink_name(d, 0), "all");
    ck_assert_str_eq(sn_deliver_sink_name(d, 1), "crit");
    ck_assert_ptr_null(sn_deliver_sink_name(d, 2));
    ck_assert_uint_eq(sn_deliver_sink_count(NULL), 0);
    ck_assert_ptr_null(sn_deliver_sink_name(NULL, 0));
    char *text;
    size_t len;
    ck_assert_int_eq(sn_metrics_render_alloc(m, &text, &len), 0);
    ck_assert_ptr_nonnull(
        strstr(text, "sentinel_alerts_delivered_total{sink=\"all\",outcome=\"delivered\"} 2"));
    ck_assert_ptr_nonnull(strstr(text, "sentinel_alert_delivery_queue_depth{sink=\"all\"} 0"));
    ck_assert_ptr_nonnull(strstr(text, "sentinel_alert_delivery_seconds_count{sink=\"crit\"} 1"));
    free(text);
    /* the same registry cannot serve a second engine */
    sn_deliver_options o;
    sn_deliver_options_init(&o);
    o.store_dir = g_dir;
    o.metrics = m;
    sn_deliver *d2;
    ck_assert_int_eq(sn_deliver_create(&o, &d2, err, sizeof err), -EEXIST);
    /* a second sink of the same name is refused (and freed) */
    sn_deliver_rule all_r;
    sn_deliver_rule_all(&all_r);
    ck_assert_int_eq(sn_deliver_add_sink(d, &ts_new("all")->base, &all_r, &p, err, sizeof err),
                     -EEXIST);
    sn_deliver_destroy(d);
    sn_metrics_destroy(m);
    sn_store_close(st);
}
END_TEST

START_TEST(engine_retries_in_order_and_dead_letters)
{
    sn_store *st = open_store();
    sn_deliver *d = new_engine(NULL);
    test_sink *t = ts_new("hook");
    /* fired(1): 503, 503, then ok; then fired(2): 400 (dead); resolved(1): ok */
    t->script[0] = SN_SINK_RETRY;
    t->script[1] = SN_SINK_RETRY;
    t->script[2] = SN_SINK_OK;
    t->script[3] = SN_SINK_PERMANENT;
    t->nscript = 4;
    sn_deliver_policy p = fast_policy();
    add(d, t, NULL, &p);
    sn_alert a1 = make_alert(1, "svc", SN_SEV_HIGH), a2 = make_alert(2, "svc", SN_SEV_HIGH);
    int64_t now = now_ns();
    ck_assert_int_eq(sn_store_begin(st), 0);
    ck_assert_int_eq(sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a1, now, NULL), 1);
    ck_assert_int_eq(sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a2, now, NULL), 1);
    a1.status = SN_ALERT_RESOLVED;
    ck_assert_int_eq(sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_RESOLVED, &a1, now, NULL), 1);
    ck_assert_int_eq(sn_store_commit(st), 0);
    sn_deliver_kick(d);
    wait_sent(t, 2);
    ck_assert_str_eq(t->sent[0], "00000000-0000-4000-8000-000000000001/fired");
    ck_assert_str_eq(t->sent[1], "00000000-0000-4000-8000-000000000001/resolved");
    usleep(100000);
    ck_assert_uint_eq(t->calls, 5);
    depth(st, "hook", 0, 1, 2);
    sn_deliver_sink_stats s;
    sn_deliver_sink_stats_get(d, "hook", &s);
    ck_assert_uint_eq(s.delivered, 2);
    ck_assert_uint_eq(s.failed, 2);
    ck_assert_uint_eq(s.retried, 2);
    ck_assert_uint_eq(s.dead_lettered, 1);
    /* the last failure's reason: the 400 came after the two 503s */
    ck_assert_str_eq(s.last_error, "HTTP 400: bad alert");
    /* the dead letter keeps the receiver's reason */
    sn_store_delivery dl;
    int found = 0;
    for (int64_t id = 1; id <= 3; id++) {
        ck_assert_int_eq(sn_store_delivery_get(st, id, &dl), 0);
        if (dl.state == SN_DELIVERY_DEAD) {
            found++;
            ck_assert_str_eq(dl.reason, "HTTP 400: bad alert");
            ck_assert_str_eq(dl.alert_id, a2.alert_id);
        }
        sn_store_delivery_clear(&dl);
    }
    ck_assert_int_eq(found, 1);
    sn_deliver_destroy(d);
    sn_store_close(st);
}
END_TEST

START_TEST(engine_rate_limit_defers_without_dropping)
{
    sn_store *st = open_store();
    sn_deliver *d = new_engine(NULL);
    test_sink *t = ts_new("slow");
    sn_deliver_policy p = fast_policy();
    p.rate = 10.0;
    p.burst = 2.0;
    add(d, t, NULL, &p);
    int64_t t0 = now_ns();
    for (int i = 0; i < 8; i++) {
        sn_alert a = make_alert(i + 1, "svc", SN_SEV_LOW);
        ck_assert_int_eq(sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a, now_ns(), NULL), 1);
    }
    wait_sent(t, 8);
    /* 2 at once, then 6 at 10/s: the last no sooner than ~0.6 s after the first */
    int64_t span = t->sent_at[7] - t0;
    ck_assert_int_ge(span, 550 * MS);
    ck_assert_int_lt(t->sent_at[1] - t0, 300 * MS);
    for (int i = 0; i < 8; i++) {
        char want[64];
        snprintf(want, sizeof want, "00000000-0000-4000-8000-%012d/fired", i + 1);
        ck_assert_str_eq(t->sent[i], want);
    }
    sn_deliver_destroy(d);
    sn_store_close(st);
}
END_TEST

START_TEST(engine_breaker_opens_and_recovers)
{
    sn_store *st = open_store();
    sn_deliver *d = new_engine(NULL);
    test_sink *t = ts_new("flaky");
    for (unsigned i = 0; i < 3; i++)
        t->script[i] = SN_SINK_RETRY;
    t->nscript = 3;
    sn_deliver_policy p = fast_policy();
    p.breaker_failures = 3;
    p.breaker_cooldown_ns = 400 * MS;
    add(d, t, NULL, &p);
    sn_alert a = make_alert(1, "svc", SN_SEV_LOW);
    int64_t t0 = now_ns();
    ck_assert_int_eq(sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a, t0, NULL), 1);
    for (int i = 0; i < 200; i++) {
        sn_deliver_sink_stats s;
        sn_deliver_sink_stats_get(d, "flaky", &s);
        if (s.breaker_opened > 0)
            break;
        usleep(5000);
    }
    sn_deliver_sink_stats s;
    sn_deliver_sink_stats_get(d, "flaky", &s);
    ck_assert_uint_eq(s.breaker_opened, 1);
    ck_assert_int_eq(s.breaker, SN_BREAKER_OPEN);
    ck_assert_str_eq(s.last_error, "HTTP 503: busy");
    /* kicks do not get through an open breaker */
    for (int i = 0; i < 5; i++)
        sn_deliver_kick(d);
    usleep(150000);
    ck_assert_uint_eq(t->calls, 3);
    wait_sent(t, 1);
    ck_assert_int_ge(t->sent_at[0] - t0, 400 * MS);
    usleep(50000);
    sn_deliver_sink_stats_get(d, "flaky", &s);
    ck_assert_int_eq(s.breaker, SN_BREAKER_CLOSED);
    ck_assert_uint_eq(s.delivered, 1);
    sn_deliver_destroy(d);
    sn_store_close(st);
}
END_TEST

START_TEST(engine_restart_continues_pending_once)
{
    sn_store *st = open_store();
    sn_deliver *d = new_engine(NULL);
    test_sink *down = ts_new("hook");
    down->then = SN_SINK_RETRY; /* the receiver is down */
    sn_deliver_policy p = fast_policy();
    add(d, down, NULL, &p);
    for (int i = 0; i < 5; i++) {
        sn_alert a = make_alert(i + 1, "svc", SN_SEV_LOW);
        ck_assert_int_eq(sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a, now_ns(), NULL), 1);
    }
    usleep(200000);
    ck_assert_uint_gt(down->calls, 0);
    ck_assert_uint_eq(ts_count(down), 0);
    sn_deliver_destroy(d);
    depth(st, "hook", 5, 0, 0);

    /* a new engine on the same store, the receiver back */
    d = new_engine(NULL);
    test_sink *up = ts_new("hook");
    add(d, up, NULL, &p);
    wait_sent(up, 5);
    usleep(200000);
    ck_assert_uint_eq(ts_count(up), 5);
    ck_assert_uint_eq(up->calls, 5);
    for (int i = 0; i < 5; i++) {
        char want[64];
        snprintf(want, sizeof want, "00000000-0000-4000-8000-%012d/fired", i + 1);
        ck_assert_str_eq(up->sent[i], want);
    }
    depth(st, "hook", 0, 0, 5);
    sn_deliver_destroy(d);

    /* and a third engine sends nothing again */
    d = new_engine(NULL);
    test_sink *again = ts_new("hook");
    add(d, again, NULL, &p);
    usleep(200000);
    ck_assert_uint_eq(again->calls, 0);
    sn_deliver_destroy(d);
    sn_store_close(st);
}
END_TEST

START_TEST(engine_max_attempts_dead_letters)
{
    sn_store *st = open_store();
    sn_deliver_options o;
    sn_deliver_options_init(&o);
    o.store_dir = g_dir;
    o.poll_ns = 20 * MS;
    o.max_attempts = 2;
    sn_deliver *d;
    char err[256];
    ck_assert_int_eq(sn_deliver_create(&o, &d, err, sizeof err), 0);
    test_sink *t = ts_new("hook");
    t->script[0] = SN_SINK_RETRY;
    t->script[1] = SN_SINK_RETRY;
    t->nscript = 2;
    sn_deliver_policy p = fast_policy();
    add(d, t, NULL, &p);
    sn_alert a1 = make_alert(1, "svc", SN_SEV_LOW), a2 = make_alert(2, "svc", SN_SEV_LOW);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a1, now_ns(), NULL);
    sn_deliver_enqueue(d, st, SN_ALERT_CHANGE_FIRED, &a2, now_ns(), NULL);
    wait_sent(t, 1);
    ck_assert_str_eq(t->sent[0], "00000000-0000-4000-8000-000000000002/fired");
    usleep(50000);
    depth(st, "hook", 0, 1, 1);
    sn_deliver_destroy(d);
    sn_store_close(st);
}
END_TEST

START_TEST(engine_create_and_add_failures)
{
    sn_deliver_options o;
    sn_deliver_options_init(&o);
    sn_deliver *d;
    char err[256];
    ck_assert_int_eq(sn_deliver_create(&o, &d, err, sizeof err), -EINVAL);
    o.store_dir = g_dir;
    o.poll_ns = 0;
    ck_assert_int_eq(sn_deliver_create(&o, &d, err, sizeof err), -EINVAL);
    /* a store directory that cannot be created */
    o.poll_ns = SEC;
    o.store_dir = "/proc/no-such/dir";
    ck_assert_int_eq(sn_deliver_create(&o, &d, err, sizeof err), 0);
    sn_deliver_policy p = fast_policy();
    sn_deliver_rule r;
    sn_deliver_rule_all(&r);
    ck_assert_int_lt(sn_deliver_add_sink(d, &ts_new("x")->base, &r, &p, err, sizeof err), 0);
    ck_assert_ptr_nonnull(strstr(err, "sink x"));
    sn_deliver_destroy(d);
    /* a bad backoff and a nameless sink */
    o.store_dir = g_dir;
    ck_assert_int_eq(sn_deliver_create(&o, &d, err, sizeof err), 0);
    p.backoff.max_ms = 1;
    ck_assert_int_eq(sn_deliver_add_sink(d, &ts_new("y")->base, &r, &p, err, sizeof err), -EINVAL);
    p = fast_policy();
    ck_assert_int_eq(sn_deliver_add_sink(d, &ts_new("")->base, &r, &p, err, sizeof err), -EINVAL);
    /* configured sinks: none without URLs, an unknown change refused */
    static sn_deliver_settings s;
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(sn_deliver_add_configured(d, &s, err, sizeof err), 0);
    snprintf(s.webhook.url, sizeof s.webhook.url, "http://127.0.0.1:1/");
    s.webhook.timeout_ns = SEC;
    s.webhook.route.changes.count = 1;
    snprintf(s.webhook.route.changes.items[0], SN_CONFIG_ITEM_MAX, "bogus");
    s.backoff_initial_ns = SEC;
    s.backoff_max_ns = 2 * SEC;
    ck_assert_int_eq(sn_deliver_add_configured(d, &s, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "sinks.webhook"));
    snprintf(s.webhook.route.changes.items[0], SN_CONFIG_ITEM_MAX, "fired");
    ck_assert_int_eq(sn_deliver_add_configured(d, &s, err, sizeof err), 1);
    sn_deliver_destroy(d);
}
END_TEST

static Suite *deliver_suite(void)
{
    Suite *s = suite_create("deliver");
    TCase *pure = tcase_create("pure");
    tcase_add_test(pure, rule_matches_severity_services_and_changes);
    tcase_add_test(pure, rule_from_settings_parses_and_refuses);
    tcase_add_test(pure, change_names_round_trip);
    tcase_add_test(pure, bucket_allows_a_burst_then_paces);
    tcase_add_test(pure, bucket_unlimited_and_minimum_burst);
    tcase_add_test(pure, breaker_opens_probes_and_closes);
    tcase_add_test(pure, breaker_threshold_zero_never_opens);
    tcase_add_test(pure, hmac_matches_rfc4231_vector);
    tcase_add_test(pure, webhook_body_is_the_alert_json);
    tcase_add_test(pure, http_status_classification);
    tcase_add_test(pure, alertmanager_payload_shape);
    tcase_add_test(pure, alertmanager_escalation_ends_lower_severities);
    tcase_add_test(pure, alertmanager_url_gets_the_api_path);
    tcase_add_test(pure, redis_url_parse);
    tcase_add_test(pure, amqp_and_redis_create_validate);
    tcase_add_test(pure, settings_defaults_env_and_secrets);
    suite_add_tcase(s, pure);
    TCase *eng = tcase_create("engine");
    tcase_add_checked_fixture(eng, setup, teardown);
    tcase_set_timeout(eng, 60);
    tcase_add_test(eng, engine_delivers_and_routes);
    tcase_add_test(eng, engine_retries_in_order_and_dead_letters);
    tcase_add_test(eng, engine_rate_limit_defers_without_dropping);
    tcase_add_test(eng, engine_breaker_opens_and_recovers);
    tcase_add_test(eng, engine_restart_continues_pending_once);
    tcase_add_test(eng, engine_max_attempts_dead_letters);
    tcase_add_test(eng, engine_create_and_add_failures);
    suite_add_tcase(s, eng);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(deliver_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
