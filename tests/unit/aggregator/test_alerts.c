/* Unit tests for aggregator/alerts.c: lifecycle, rules, JSON. */
#include "alerts.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define SEC  INT64_C(1000000000)
#define T0   (INT64_C(1795000000) * SEC) /* 2026-11-18T11:06:40Z */
#define MAXC 64

/* ---- helpers ---- */

/* Every callback, in order. */
typedef struct recorder {
    size_t n;
    sn_alert_change change[MAXC];
    sn_alert alert[MAXC];
} recorder;

static recorder g_rec;

static void record(sn_alert_change c, const sn_alert *a, void *ud)
{
    recorder *r = ud;
    ck_assert_uint_lt(r->n, MAXC);
    r->change[r->n] = c;
    r->alert[r->n] = *a;
    r->n++;
}

static sn_alerts *make(size_t max, const char *runbook)
{
    sn_alerts_config cfg;
    sn_alerts_config_init(&cfg);
    cfg.max_alerts = max;
    cfg.on_change = record;
    cfg.cb_ud = &g_rec;
    cfg.seed = 42;
    cfg.runbook_template = runbook;
    memset(&g_rec, 0, sizeof g_rec);
    sn_alerts *m = NULL;
    char err[128];
    ck_assert_int_eq(sn_alerts_create(&cfg, &m, err, sizeof err), 0);
    return m;
}

static sn_anomaly anomaly(const char *service, const char *model, sn_anomaly_type t,
                          sn_severity sev)
{
    sn_anomaly an;
    memset(&an, 0, sizeof an);
    an.time_unix_nano = T0;
    an.severity = sev;
    an.anomaly_type = t;
    snprintf(an.service, sizeof an.service, "%s", service);
    snprintf(an.model, sizeof an.model, "%s", model);
    an.method = SN_DETECT_ZSCORE;
    an.confidence = 0.9;
    an.metric = SN_METRIC_LATENCY_MS;
    an.value = 12000;
    an.baseline = 2000;
    an.threshold = 6000;
    an.deviation_sigma = 5.2;
    snprintf(an.region, sizeof an.region, "us-east-1");
    snprintf(an.time_window, sizeof an.time_window, "last_5_minutes");
    an.source = SN_SOURCE_AGGREGATOR;
    return an;
}

static bool uuid_v4(const char *s)
{
    if (strlen(s) != 36 || s[14] != '4' || strchr("89ab", s[19]) == NULL)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : strchr("0123456789abcdef", s[i]) == NULL)
            return false;
    }
    return true;
}

/* ---- configuration ---- */

START_TEST(create_refuses_bad_config)
{
    sn_alerts_config cfg;
    sn_alerts *m = NULL;
    char err[128];
    static const struct {
        int field;
        const char *word;
    } cases[] = {{0, "max_alerts"},
                 {1, "dedup_window"},
                 {2, "quiet_period"},
                 {3, "group_window"},
                 {4, "runbook_template"}};
    char longtpl[600];
    memset(longtpl, 'x', sizeof longtpl - 1);
    longtpl[sizeof longtpl - 1] = '\0';
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sn_alerts_config_init(&cfg);
        switch (cases[i].field) {
        case 0:
            cfg.max_alerts = 0;
            break;
        case 1:
            cfg.dedup_window_ns = 0;
            break;
        case 2:
            cfg.quiet_period_ns = -1;
            break;
        case 3:
            cfg.group_window_ns = -1;
            break;
        default:
            cfg.runbook_template = longtpl;
        }
        err[0] = '\0';
        ck_assert_int_eq(sn_alerts_create(&cfg, &m, err, sizeof err), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, cases[i].word));
    }
    sn_alerts_config_init(&cfg);
    ck_assert_int_eq(sn_alerts_create(&cfg, &m, err, sizeof err), 0);
    sn_alerts_destroy(m);
    sn_alerts_destroy(NULL);
}
END_TEST

/* ---- lifecycle ---- */

START_TEST(dedup_within_window_updates_one_alert)
{
    sn_alerts *m = make(16, NULL);
    sn_anomaly an = anomaly("chatbot-api", "gpt-4o", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_MEDIUM);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
    ck_assert_uint_eq(g_rec.n, 1);
    ck_assert_int_eq(g_rec.change[0], SN_ALERT_CHANGE_FIRED);
    char id[SN_ALERT_ID_LEN + 1];
    memcpy(id, g_rec.alert[0].alert_id, sizeof id);
    ck_assert(uuid_v4(id));
    ck_assert_int_eq(g_rec.alert[0].occurrences, 1);
    ck_assert_int_eq(g_rec.alert[0].status, SN_ALERT_FIRING);

    an.value = 15000;
    an.confidence = 0.95;
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + 60 * SEC), 0);
    /* Exactly at the window's edge still folds in. */
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + 360 * SEC), 0);
    ck_assert_uint_eq(g_rec.n, 3);
    ck_assert_int_eq(g_rec.change[1], SN_ALERT_CHANGE_UPDATED);
    ck_assert_int_eq(g_rec.change[2], SN_ALERT_CHANGE_UPDATED);
    const sn_alert *a = sn_alerts_get(m, id);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->occurrences, 3);
    ck_assert_int_eq(a->timestamp_ns, T0);
    ck_assert_int_eq(a->last_seen_ns, T0 + 360 * SEC);
    ck_assert_double_eq(a->value, 15000);
    ck_assert_double_eq(a->confidence, 0.95);
    sn_alerts_stats st;
    sn_alerts_stats_get(m, &st);
    ck_assert_uint_eq(st.fired, 1);
    ck_assert_uint_eq(st.updates, 2);
    ck_assert_uint_eq(st.firing, 1);
    sn_alerts_destroy(m);
}
END_TEST

START_TEST(severity_is_the_maximum_seen)
{
    sn_alerts *m = make(16, NULL);
    sn_anomaly an = anomaly("svc", "m", SN_ANOMALY_ERROR_RATE, SN_SEV_MEDIUM);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
    an.severity = SN_SEV_CRITICAL;
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + SEC), 0);
    an.severity = SN_SEV_LOW;
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + 2 * SEC), 0);
    ck_assert_uint_eq(g_rec.n, 3);
    ck_assert_int_eq(g_rec.change[1], SN_ALERT_CHANGE_ESCALATED);
    ck_assert_int_eq(g_rec.alert[1].severity, SN_SEV_CRITICAL);
    ck_assert_int_eq(g_rec.change[2], SN_ALERT_CHANGE_UPDATED);
    ck_assert_int_eq(g_rec.alert[2].severity, SN_SEV_CRITICAL);
    ck_assert_int_eq(g_rec.alert[2].occurrences, 3);
    sn_alerts_destroy(m);
}
END_TEST

START_TEST(keys_are_service_model_and_type)
{
    sn_alerts *m = make(16, NULL);
    sn_anomaly a1 = anomaly("svc", "gpt-4o", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    sn_anomaly a2 = anomaly("svc", "gpt-4o-mini", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    sn_anomaly a3 = anomaly("svc", "gpt-4o", SN_ANOMALY_TOKEN_SPIKE, SN_SEV_HIGH);
    sn_anomaly a4 = anomaly("svc2", "gpt-4o", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    ck_assert_int_eq(sn_alerts_observe(m, &a1, T0), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &a2, T0), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &a3, T0), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &a4, T0), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &a1, T0 + SEC), 0);
    sn_alerts_stats st;
    sn_alerts_stats_get(m, &st);
    ck_assert_uint_eq(st.fired, 4);
    ck_assert_uint_eq(st.firing, 4);
    ck_assert_uint_eq(st.updates, 1);
    sn_alerts_destroy(m);
}
END_TEST

START_TEST(new_alert_after_the_dedup_window)
{
    sn_alerts_config cfg;
    sn_alerts_config_init(&cfg);
    cfg.dedup_window_ns = 60 * SEC; /* shorter than the quiet period */
    cfg.on_change = record;
    cfg.cb_ud = &g_rec;
    memset(&g_rec, 0, sizeof g_rec);
    sn_alerts *m = NULL;
    char err[128];
    ck_assert_int_eq(sn_alerts_create(&cfg, &m, err, sizeof err), 0);
    sn_anomaly an = anomaly("svc", "m", SN_ANOMALY_COST_SPIKE, SN_SEV_HIGH);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + 61 * SEC), 0);
    ck_assert_uint_eq(g_rec.n, 3);
    ck_assert_int_eq(g_rec.change[1], SN_ALERT_CHANGE_RESOLVED);
    ck_assert_str_eq(g_rec.alert[1].alert_id, g_rec.alert[0].alert_id);
    ck_assert_int_eq(g_rec.alert[1].resolved_at_ns, T0 + 61 * SEC);
    ck_assert_int_eq(g_rec.change[2], SN_ALERT_CHANGE_FIRED);
    ck_assert_str_ne(g_rec.alert[2].alert_id, g_rec.alert[0].alert_id);
    ck_assert_int_eq(g_rec.alert[2].occurrences, 1);
    ck_assert_int_eq(g_rec.alert[2].timestamp_ns, T0 + 61 * SEC);
    /* The old one is kept, resolved, and the two are not related (the old one no longer fires). */
    const sn_alert *old = sn_alerts_get(m, g_rec.alert[0].alert_id);
    ck_assert_ptr_nonnull(old);
    ck_assert_int_eq(old->status, SN_ALERT_RESOLVED);
    ck_assert_uint_eq(g_rec.alert[2].nrelated, 0);
    sn_alerts_destroy(m);
}
END_TEST

START_TEST(resolves_after_the_quiet_period_and_refires)
{
    sn_alerts *m = make(16, NULL);
    sn_anomaly an = anomaly("svc", "m", SN_ANOMALY_THROUGHPUT_DROP, SN_SEV_HIGH);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + 100 * SEC), 0);
    char id[SN_ALERT_ID_LEN + 1];
    memcpy(id, g_rec.alert[0].alert_id, sizeof id);
    /* Quiet is measured from the last anomaly, not the first. */
    ck_assert_uint_eq(sn_alerts_tick(m, T0 + 300 * SEC), 0);
    ck_assert_uint_eq(sn_alerts_tick(m, T0 + 399 * SEC), 0);
    ck_assert_uint_eq(g_rec.n, 2);
    ck_assert_uint_eq(sn_alerts_tick(m, T0 + 400 * SEC), 1);
    ck_assert_uint_eq(g_rec.n, 3);
    ck_assert_int_eq(g_rec.change[2], SN_ALERT_CHANGE_RESOLVED);
    ck_assert_int_eq(g_rec.alert[2].status, SN_ALERT_RESOLVED);
    ck_assert_int_eq(g_rec.alert[2].resolved_at_ns, T0 + 400 * SEC);
    ck_assert_int_eq(g_rec.alert[2].occurrences, 2);
    /* A second tick resolves nothing again. */
    ck_assert_uint_eq(sn_alerts_tick(m, T0 + 500 * SEC), 0);
    ck_assert_uint_eq(g_rec.n, 3);

    /* The key fires again: a new alert. */
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + 401 * SEC), 0);
    ck_assert_uint_eq(g_rec.n, 4);
    ck_assert_int_eq(g_rec.change[3], SN_ALERT_CHANGE_FIRED);
    ck_assert_str_ne(g_rec.alert[3].alert_id, id);
    ck_assert_int_eq(g_rec.alert[3].occurrences, 1);
    ck_assert_int_eq(sn_alerts_get(m, id)->status, SN_ALERT_RESOLVED);
    sn_alerts_stats st;
    sn_alerts_stats_get(m, &st);
    ck_assert_uint_eq(st.resolved, 1);
    ck_assert_uint_eq(st.firing, 1);
    ck_assert_uint_eq(st.held, 2);
    sn_alerts_destroy(m);
}
END_TEST

START_TEST(grouping_links_alerts_of_a_service)
{
    sn_alerts *m = make(32, NULL);
    sn_anomaly a1 = anomaly("svc", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    sn_anomaly a2 = anomaly("svc", "m", SN_ANOMALY_ERROR_RATE, SN_SEV_HIGH);
    sn_anomaly other = anomaly("other", "m", SN_ANOMALY_ERROR_RATE, SN_SEV_HIGH);
    sn_anomaly late = anomaly("svc", "m2", SN_ANOMALY_COST_SPIKE, SN_SEV_HIGH);
    ck_assert_int_eq(sn_alerts_observe(m, &a1, T0), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &other, T0 + SEC), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &a2, T0 + 60 * SEC), 0);
    /* FIRED a1, FIRED other, UPDATED a1 (related added), FIRED a2 */
    ck_assert_uint_eq(g_rec.n, 4);
    const char *id1 = g_rec.alert[0].alert_id;
    ck_assert_int_eq(g_rec.change[2], SN_ALERT_CHANGE_UPDATED);
    ck_assert_str_eq(g_rec.alert[2].alert_id, id1);
    ck_assert_uint_eq(g_rec.alert[2].nrelated, 1);
    ck_assert_str_eq(g_rec.alert[2].related[0], g_rec.alert[3].alert_id);
    ck_assert_int_eq(g_rec.change[3], SN_ALERT_CHANGE_FIRED);
    ck_assert_uint_eq(g_rec.alert[3].nrelated, 1);
    ck_assert_str_eq(g_rec.alert[3].related[0], id1);
    ck_assert_uint_eq(sn_alerts_get(m, g_rec.alert[1].alert_id)->nrelated, 0);

    /* Beyond the group window of both: not related. */
    ck_assert_int_eq(sn_alerts_observe(m, &late, T0 + 60 * SEC + 121 * SEC), 0);
    ck_assert_uint_eq(g_rec.n, 5);
    ck_assert_uint_eq(g_rec.alert[4].nrelated, 0);
    sn_alerts_destroy(m);
}
END_TEST

START_TEST(related_alerts_are_bounded)
{
    sn_alerts *m = make(64, NULL);
    char model[16];
    for (int i = 0; i < 12; i++) {
        snprintf(model, sizeof model, "m%d", i);
        sn_anomaly an = anomaly("svc", model, SN_ANOMALY_LATENCY_SPIKE, SN_SEV_LOW);
        ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + i * SEC), 0);
    }
    sn_alerts_stats st;
    sn_alerts_stats_get(m, &st);
    ck_assert_uint_eq(st.fired, 12);
    /* The first alert was linked to the next 8 only; the last one to 8 earlier ones. */
    ck_assert_int_eq(g_rec.change[g_rec.n - 1], SN_ALERT_CHANGE_FIRED);
    ck_assert_uint_eq(g_rec.alert[g_rec.n - 1].nrelated, SN_ALERT_RELATED_MAX);
    ck_assert_uint_eq(g_rec.alert[0].nrelated, 0);
    bool found_full = false;
    for (size_t i = 0; i < g_rec.n; i++)
        if (g_rec.alert[i].nrelated == SN_ALERT_RELATED_MAX &&
            strcmp(g_rec.alert[i].alert_id, g_rec.alert[0].alert_id) == 0)
            found_full = true;
    ck_assert(found_full);
    sn_alerts_destroy(m);
}
END_TEST

static int count_unrelated(const sn_alert *a, void *ud)
{
    int *n = ud;
    if (a->nrelated == 0)
        (*n)++;
    return 0;
}

START_TEST(grouping_can_be_turned_off)
{
    sn_alerts_config cfg;
    sn_alerts_config_init(&cfg);
    cfg.group_window_ns = 0;
    sn_alerts *m = NULL;
    char err[128];
    ck_assert_int_eq(sn_alerts_create(&cfg, &m, err, sizeof err), 0);
    sn_anomaly a1 = anomaly("svc", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    sn_anomaly a2 = anomaly("svc", "m", SN_ANOMALY_ERROR_RATE, SN_SEV_HIGH);
    ck_assert_int_eq(sn_alerts_observe(m, &a1, T0), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &a2, T0), 0);
    sn_alerts_stats st;
    sn_alerts_stats_get(m, &st);
    ck_assert_uint_eq(st.fired, 2);
    /* Both alerts exist and neither lists the other. */
    int unrelated = 0;
    ck_assert_int_eq(sn_alerts_foreach(m, count_unrelated, &unrelated), 0);
    ck_assert_int_eq(unrelated, 2);
    sn_alerts_destroy(m);
}
END_TEST

START_TEST(bounded_slots_refuse_then_reuse_resolved)
{
    sn_alerts *m = make(2, NULL);
    sn_anomaly a1 = anomaly("s1", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    sn_anomaly a2 = anomaly("s2", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    sn_anomaly a3 = anomaly("s3", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    ck_assert_int_eq(sn_alerts_observe(m, &a1, T0), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &a2, T0 + 200 * SEC), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &a3, T0 + 200 * SEC), -ENOSPC);
    sn_alerts_stats st;
    sn_alerts_stats_get(m, &st);
    ck_assert_uint_eq(st.refused, 1);
    ck_assert_uint_eq(st.fired, 2);
    /* A firing alert still takes updates when full. */
    ck_assert_int_eq(sn_alerts_observe(m, &a1, T0 + 201 * SEC), 0);
    char id1[SN_ALERT_ID_LEN + 1];
    memcpy(id1, g_rec.alert[0].alert_id, sizeof id1);
    ck_assert_uint_eq(sn_alerts_tick(m, T0 + 501 * SEC), 2);
    /* Both resolved; the one resolved first... both at the same time: either goes. Fire two. */
    ck_assert_int_eq(sn_alerts_observe(m, &a3, T0 + 502 * SEC), 0);
    sn_alerts_stats_get(m, &st);
    ck_assert_uint_eq(st.dropped, 1);
    ck_assert_uint_eq(st.held, 2);
    ck_assert_uint_eq(st.firing, 1);
    int unrelated = 0;
    ck_assert_int_eq(sn_alerts_foreach(m, count_unrelated, &unrelated), 0);
    ck_assert_int_eq(unrelated, 2);
    sn_alerts_destroy(m);
}
END_TEST

START_TEST(oldest_resolved_is_dropped_first)
{
    sn_alerts *m = make(3, NULL);
    sn_anomaly a1 = anomaly("s1", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    sn_anomaly a2 = anomaly("s2", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    sn_anomaly a3 = anomaly("s3", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    sn_anomaly a4 = anomaly("s4", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    ck_assert_int_eq(sn_alerts_observe(m, &a1, T0), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &a2, T0 + 100 * SEC), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &a3, T0 + 1000 * SEC), 0);
    ck_assert_uint_eq(sn_alerts_tick(m, T0 + 300 * SEC), 1); /* a1 */
    ck_assert_uint_eq(sn_alerts_tick(m, T0 + 400 * SEC), 1); /* a2 */
    char id1[SN_ALERT_ID_LEN + 1], id2[SN_ALERT_ID_LEN + 1];
    memcpy(id1, g_rec.alert[0].alert_id, sizeof id1);
    memcpy(id2, g_rec.alert[1].alert_id, sizeof id2);
    ck_assert_int_eq(sn_alerts_observe(m, &a4, T0 + 1001 * SEC), 0);
    ck_assert_ptr_null(sn_alerts_get(m, id1));
    ck_assert_ptr_nonnull(sn_alerts_get(m, id2));
    sn_alerts_destroy(m);
}
END_TEST

START_TEST(invalid_anomalies_are_refused)
{
    sn_alerts *m = make(4, NULL);
    sn_anomaly an = anomaly("svc", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_NONE);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), -EINVAL);
    an = anomaly("svc", "m", SN_ANOMALY_TYPE_COUNT, SN_SEV_LOW);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), -EINVAL);
    an = anomaly("", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_LOW);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), -EINVAL);
    an = anomaly("svc", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_LOW);
    an.metric = SN_METRIC_COUNT;
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), -EINVAL);
    an = anomaly("svc", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_LOW);
    an.method = SN_DETECT_KIND_COUNT;
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), -EINVAL);
    an = anomaly("svc", "m", SN_ANOMALY_LATENCY_SPIKE, (sn_severity)9);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), -EINVAL);
    an = anomaly("svc", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_LOW);
    memset(an.error_type, 'x', sizeof an.error_type); /* no NUL: never read past it */
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), -EINVAL);
    sn_alerts_stats st;
    sn_alerts_stats_get(m, &st);
    ck_assert_uint_eq(st.invalid, 7);
    ck_assert_uint_eq(st.fired, 0);
    ck_assert_uint_eq(g_rec.n, 0);
    /* A NaN confidence is kept as 0.5 rather than losing the alert. */
    an = anomaly("svc", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_LOW);
    an.confidence = NAN;
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
    ck_assert_double_eq(g_rec.alert[0].confidence, 0.5);
    sn_alerts_destroy(m);
}
END_TEST

START_TEST(restore_continues_dedup_across_restarts)
{
    sn_alerts *m = make(4, NULL);
    sn_anomaly an = anomaly("svc", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    snprintf(an.error_type, sizeof an.error_type, "Timeout");
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
    sn_alert kept = g_rec.alert[0];
    sn_alerts_destroy(m);

    m = make(4, NULL);
    ck_assert_int_eq(sn_alerts_restore(m, &kept), 0);
    ck_assert_int_eq(sn_alerts_restore(m, &kept), -EEXIST);
    sn_alert other = kept;
    other.alert_id[0] = other.alert_id[0] == 'a' ? 'b' : 'a';
    ck_assert_int_eq(sn_alerts_restore(m, &other), -EEXIST); /* same key fires */
    other.status = SN_ALERT_RESOLVED;
    ck_assert_int_eq(sn_alerts_restore(m, &other), -EINVAL);
    ck_assert_uint_eq(g_rec.n, 0);
    /* A later anomaly without hints keeps the more specific root cause. */
    an.error_type[0] = '\0';
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + 10 * SEC), 0);
    ck_assert_uint_eq(g_rec.n, 1);
    ck_assert_int_eq(g_rec.change[0], SN_ALERT_CHANGE_UPDATED);
    ck_assert_str_eq(g_rec.alert[0].alert_id, kept.alert_id);
    ck_assert_int_eq(g_rec.alert[0].occurrences, 2);
    ck_assert_str_eq(g_rec.alert[0].root_cause, "provider slowness or timeouts");
    sn_alerts_stats st;
    sn_alerts_stats_get(m, &st);
    ck_assert_uint_eq(st.restored, 1);
    ck_assert_uint_eq(sn_alerts_tick(m, T0 + 310 * SEC), 1);
    sn_alerts_destroy(m);
}
END_TEST

static void fixed_random(uint8_t out[16], void *ud)
{
    int *calls = ud;
    memset(out, 0xAB, 16);
    out[15] = (uint8_t)(*calls)++;
}

START_TEST(ids_come_from_the_random_source)
{
    sn_alerts_config cfg;
    sn_alerts_config_init(&cfg);
    int calls = 0;
    cfg.random = fixed_random;
    cfg.random_ud = &calls;
    cfg.on_change = record;
    cfg.cb_ud = &g_rec;
    memset(&g_rec, 0, sizeof g_rec);
    sn_alerts *m = NULL;
    char err[128];
    ck_assert_int_eq(sn_alerts_create(&cfg, &m, err, sizeof err), 0);
    sn_anomaly an = anomaly("svc", "m", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
    ck_assert_str_eq(g_rec.alert[0].alert_id, "abababab-abab-4bab-abab-ababababab00");
    ck_assert_int_eq(calls, 1);
    sn_alerts_destroy(m);

    /* The internal generator: the same seed gives the same ids, another seed others. */
    char first[2][SN_ALERT_ID_LEN + 1];
    for (int k = 0; k < 2; k++) {
        sn_alerts *g = make(4, NULL);
        ck_assert_int_eq(sn_alerts_observe(g, &an, T0), 0);
        ck_assert(uuid_v4(g_rec.alert[0].alert_id));
        memcpy(first[k], g_rec.alert[0].alert_id, sizeof first[k]);
        sn_anomaly b = anomaly("svc", "m", SN_ANOMALY_ERROR_RATE, SN_SEV_HIGH);
        ck_assert_int_eq(sn_alerts_observe(g, &b, T0), 0);
        ck_assert_str_ne(g_rec.alert[g_rec.n - 1].alert_id, first[k]);
        sn_alerts_destroy(g);
    }
    ck_assert_str_eq(first[0], first[1]);
    sn_alerts_config_init(&cfg);
    cfg.seed = 7;
    cfg.on_change = record;
    cfg.cb_ud = &g_rec;
    memset(&g_rec, 0, sizeof g_rec);
    ck_assert_int_eq(sn_alerts_create(&cfg, &m, err, sizeof err), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
    ck_assert_str_ne(g_rec.alert[0].alert_id, first[0]);
    sn_alerts_destroy(m);
}
END_TEST

START_TEST(runbook_template_is_expanded)
{
    sn_alerts *m =
        make(4, "https://runbooks.example/{anomaly_type}?service={service}&model={model}&x={y}");
    sn_anomaly an = anomaly("chat api/v1", "gpt-4o", SN_ANOMALY_TOKEN_SPIKE, SN_SEV_HIGH);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
    ck_assert_str_eq(g_rec.alert[0].runbook_url,
                     "https://runbooks.example/token_spike?service=chat%20api%2Fv1&model=gpt-4o"
                     "&x={y}");
    sn_alerts_destroy(m);

    /* An expansion that does not fit gives an empty URL, never a cut one. */
    char tpl[500];
    memset(tpl, 'a', sizeof tpl);
    memcpy(tpl + 480, "{service}", 10);
    m = make(4, tpl);
    char svc[120];
    memset(svc, '/', sizeof svc - 1);
    svc[sizeof svc - 1] = '\0';
    an = anomaly(svc, "m", SN_ANOMALY_TOKEN_SPIKE, SN_SEV_HIGH);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
    ck_assert_str_eq(g_rec.alert[0].runbook_url, "");
    sn_alerts_destroy(m);

    /* No template: empty. */
    m = make(4, NULL);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
    ck_assert_str_eq(g_rec.alert[0].runbook_url, "");
    sn_alerts_destroy(m);
}
END_TEST

/* ---- rules ---- */

/* A metric that no metric-specific rule of the type names. */
static sn_metric neutral_metric(sn_anomaly_type t)
{
    switch (t) {
    case SN_ANOMALY_TOKEN_SPIKE:
    case SN_ANOMALY_TOKEN_DROP:
        return SN_METRIC_OUTPUT_TOKENS;
    case SN_ANOMALY_COST_SPIKE:
    case SN_ANOMALY_COST_DRIFT:
    case SN_ANOMALY_BUDGET:
        return SN_METRIC_COST_USD;
    case SN_ANOMALY_ERROR_RATE:
        return SN_METRIC_ERROR_RATE;
    case SN_ANOMALY_THROUGHPUT_DROP:
    case SN_ANOMALY_THROUGHPUT_SPIKE:
        return SN_METRIC_TOKENS_PER_SECOND;
    default:
        return SN_METRIC_LATENCY_MS;
    }
}

/* Copies the first '|' alternative of pat into dst. */
static void first_alt(char *dst, size_t n, const char *pat)
{
    size_t len = strcspn(pat, "|");
    snprintf(dst, n, "%.*s", (int)len, pat);
}

START_TEST(every_rule_is_reachable_and_complete)
{
    size_t n;
    const sn_alert_rule *rules = sn_alert_rules(&n);
    ck_assert_uint_ge(n, 20);
    bool fallback[SN_ANOMALY_TYPE_COUNT] = {false};
    for (size_t i = 0; i < n; i++) {
        const sn_alert_rule *r = &rules[i];
        sn_anomaly an = anomaly("svc", "m", r->type, SN_SEV_HIGH);
        an.metric = neutral_metric(r->type);
        if (r->metric != NULL) {
            char name[32];
            first_alt(name, sizeof name, r->metric);
            ck_assert_int_eq(sn_metric_from_name(name, &an.metric), 0);
        }
        if (r->error_type_has != NULL)
            first_alt(an.error_type, sizeof an.error_type, r->error_type_has);
        if (r->finish_reason != NULL)
            first_alt(an.finish_reason, sizeof an.finish_reason, r->finish_reason);
        if (r->related_metric != NULL)
            first_alt(an.related_metric, sizeof an.related_metric, r->related_metric);
        ck_assert_msg(sn_alert_rule_match(&an) == (int)i, "rule %zu (%s) is shadowed", i,
                      r->root_cause);
        if (r->metric == NULL && r->error_type_has == NULL && r->finish_reason == NULL &&
            r->related_metric == NULL)
            fallback[r->type] = true;
        /* 2 to 4 remediation steps, each fitting an alert. */
        int steps = 0;
        for (int k = 0; k < SN_ALERT_REMEDIATION_MAX && r->remediation[k] != NULL; k++) {
            ck_assert_uint_lt(strlen(r->remediation[k]), SN_ALERT_TEXT_MAX);
            steps++;
        }
        ck_assert_int_ge(steps, 2);
        ck_assert_uint_lt(strlen(r->root_cause), SN_ALERT_TEXT_MAX);

        /* And the alert carries the rule's text. */
        sn_alerts *m = make(4, NULL);
        ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
        ck_assert_str_eq(g_rec.alert[0].root_cause, r->root_cause);
        ck_assert_int_eq((int)g_rec.alert[0].nremediation, steps);
        ck_assert_str_eq(g_rec.alert[0].remediation[0], r->remediation[0]);
        sn_alerts_destroy(m);
    }
    for (int t = 0; t < SN_ANOMALY_TYPE_COUNT; t++)
        ck_assert_msg(fallback[t], "type %s has no fallback rule",
                      sn_anomaly_type_name((sn_anomaly_type)t));
}
END_TEST

/* The documented examples, spelled as users' data spells them. */
START_TEST(documented_root_causes)
{
    static const struct {
        sn_anomaly_type type;
        sn_metric metric;
        const char *error_type;
        const char *finish_reason;
        const char *related;
        const char *want;
    } cases[] = {
        {SN_ANOMALY_LATENCY_SPIKE, SN_METRIC_LATENCY_MS, "openai.APITimeoutError", "", "",
         "provider slowness or timeouts"},
        {SN_ANOMALY_LATENCY_SPIKE, SN_METRIC_LATENCY_MS, "", "", "error_rate",
         "provider degradation"},
        {SN_ANOMALY_LATENCY_SPIKE, SN_METRIC_TTFT_MS, "", "", "",
         "provider queueing (time to first token rose)"},
        {SN_ANOMALY_LATENCY_SPIKE, SN_METRIC_LATENCY_MS, "", "", "",
         "provider or network slowness"},
        {SN_ANOMALY_TOKEN_SPIKE, SN_METRIC_OUTPUT_TOKENS, "", "length", "",
         "responses hitting max_tokens (possible prompt-injection loop or runaway generation)"},
        {SN_ANOMALY_TOKEN_SPIKE, SN_METRIC_TOTAL_TOKENS, "", "MAX_TOKENS", "",
         "responses hitting max_tokens (possible prompt-injection loop or runaway generation)"},
        {SN_ANOMALY_TOKEN_SPIKE, SN_METRIC_INPUT_TOKENS, "", "stop", "",
         "prompt growth (retrieval returning too much context, conversation history not "
         "trimmed)"},
        {SN_ANOMALY_COST_DRIFT, SN_METRIC_COST_USD, "", "", "", "price change or model mix shift"},
        {SN_ANOMALY_COST_SPIKE, SN_METRIC_COST_USD, "", "", "output_tokens",
         "token usage spike driving cost"},
        {SN_ANOMALY_ERROR_RATE, SN_METRIC_ERROR_RATE, "429", "", "", "provider rate limiting"},
        {SN_ANOMALY_ERROR_RATE, SN_METRIC_ERROR_RATE, "RateLimitError", "", "",
         "provider rate limiting"},
        {SN_ANOMALY_ERROR_RATE, SN_METRIC_ERROR_RATE, "rate_limit_exceeded", "", "",
         "provider rate limiting"},
        {SN_ANOMALY_ERROR_RATE, SN_METRIC_ERROR_RATE, "503", "", "",
         "provider outage or degradation"},
        {SN_ANOMALY_ERROR_RATE, SN_METRIC_ERROR_RATE, "AuthenticationError", "", "",
         "authentication or authorisation failures (key revoked, expired or without access)"},
        {SN_ANOMALY_ERROR_RATE, SN_METRIC_ERROR_RATE, "weird", "", "",
         "elevated error rate (provider or application errors)"},
        {SN_ANOMALY_BUDGET, SN_METRIC_COST_USD, "", "", "", "spending reached the budget limit"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sn_anomaly an = anomaly("svc", "m", cases[i].type, SN_SEV_HIGH);
        an.metric = cases[i].metric;
        snprintf(an.error_type, sizeof an.error_type, "%s", cases[i].error_type);
        snprintf(an.finish_reason, sizeof an.finish_reason, "%s", cases[i].finish_reason);
        snprintf(an.related_metric, sizeof an.related_metric, "%s", cases[i].related);
        sn_alerts *m = make(4, NULL);
        ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
        ck_assert_msg(strcmp(g_rec.alert[0].root_cause, cases[i].want) == 0, "case %zu: got \"%s\"",
                      i, g_rec.alert[0].root_cause);
        ck_assert_uint_ge(g_rec.alert[0].nremediation, 2);
        sn_alerts_destroy(m);
    }
    /* "finish_reason" matches whole values only: "lengthy" is not "length". */
    sn_anomaly an = anomaly("svc", "m", SN_ANOMALY_TOKEN_SPIKE, SN_SEV_HIGH);
    an.metric = SN_METRIC_OUTPUT_TOKENS;
    snprintf(an.finish_reason, sizeof an.finish_reason, "lengthy");
    size_t n;
    const sn_alert_rule *rules = sn_alert_rules(&n);
    ck_assert_str_eq(rules[sn_alert_rule_match(&an)].root_cause,
                     "longer responses (prompt or model behaviour change)");
    an.anomaly_type = SN_ANOMALY_TYPE_COUNT;
    ck_assert_int_eq(sn_alert_rule_match(&an), -1);
}
END_TEST

START_TEST(more_specific_root_cause_wins_while_firing)
{
    sn_alerts *m = make(4, NULL);
    sn_anomaly an = anomaly("svc", "m", SN_ANOMALY_ERROR_RATE, SN_SEV_HIGH);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
    ck_assert_str_eq(g_rec.alert[0].root_cause,
                     "elevated error rate (provider or application errors)");
    snprintf(an.error_type, sizeof an.error_type, "429");
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + SEC), 0);
    ck_assert_str_eq(g_rec.alert[1].root_cause, "provider rate limiting");
    ck_assert_str_eq(g_rec.alert[1].remediation[1],
                     "Retry with exponential backoff honouring Retry-After");
    an.error_type[0] = '\0';
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + 2 * SEC), 0);
    ck_assert_str_eq(g_rec.alert[2].root_cause, "provider rate limiting");
    sn_alerts_destroy(m);
}
END_TEST

/* ---- JSON ---- */

static sn_alert full_alert(void)
{
    sn_alerts *m = make(8, "https://rb.example/{anomaly_type}");
    sn_anomaly a0 = anomaly("chatbot-api", "gpt-4o", SN_ANOMALY_ERROR_RATE, SN_SEV_MEDIUM);
    ck_assert_int_eq(sn_alerts_observe(m, &a0, T0), 0);
    sn_anomaly an = anomaly("chatbot-api", "gpt-4o", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_CRITICAL);
    for (int i = 0; i < 16; i++)
        an.trace_id[i] = (uint8_t)(0xA0 + i);
    snprintf(an.error_type, sizeof an.error_type, "timeout");
    an.source = SN_SOURCE_SIDECAR;
    an.method = SN_DETECT_IQR;
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + 1500 * 1000000), 0);
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + 2 * SEC), 0);
    sn_alert a = g_rec.alert[g_rec.n - 1];
    sn_alerts_destroy(m);
    return a;
}

static void check_keys(json_t *o, const char *const *keys, size_t n)
{
    ck_assert_uint_eq(json_object_size(o), n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(json_object_get(o, keys[i]) != NULL, "missing %s", keys[i]);
}

START_TEST(json_has_the_contract_shape)
{
    sn_alert a = full_alert();
    json_t *j = sn_alert_to_json(&a);
    ck_assert_ptr_nonnull(j);
    /* Through text and back, as a webhook receiver sees it. */
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    free(text);
    ck_assert_ptr_nonnull(o);
    static const char *const top[] = {
        "alert_id",    "timestamp",        "severity",       "anomaly_type", "service_name",
        "model",       "detection_method", "confidence",     "details",      "context",
        "root_cause",  "remediation",      "related_alerts", "runbook_url",  "status",
        "occurrences", "last_seen"};
    check_keys(o, top, sizeof top / sizeof top[0]);
    ck_assert(uuid_v4(json_string_value(json_object_get(o, "alert_id"))));
    ck_assert_str_eq(json_string_value(json_object_get(o, "timestamp")),
                     "2026-11-18T11:06:41.500Z");
    ck_assert_str_eq(json_string_value(json_object_get(o, "last_seen")),
                     "2026-11-18T11:06:42.000Z");
    ck_assert_str_eq(json_string_value(json_object_get(o, "severity")), "critical");
    ck_assert_str_eq(json_string_value(json_object_get(o, "anomaly_type")), "latency_spike");
    ck_assert_str_eq(json_string_value(json_object_get(o, "service_name")), "chatbot-api");
    ck_assert_str_eq(json_string_value(json_object_get(o, "model")), "gpt-4o");
    ck_assert_str_eq(json_string_value(json_object_get(o, "detection_method")), "iqr");
    ck_assert(json_is_real(json_object_get(o, "confidence")));
    ck_assert_double_eq_tol(json_real_value(json_object_get(o, "confidence")), 0.9, 1e-12);
    json_t *d = json_object_get(o, "details");
    static const char *const dk[] = {"metric", "value", "baseline", "threshold", "deviation_sigma"};
    check_keys(d, dk, 5);
    ck_assert_str_eq(json_string_value(json_object_get(d, "metric")), "latency_ms");
    ck_assert_double_eq(json_number_value(json_object_get(d, "value")), 12000);
    ck_assert_double_eq(json_number_value(json_object_get(d, "baseline")), 2000);
    ck_assert_double_eq(json_number_value(json_object_get(d, "threshold")), 6000);
    ck_assert_double_eq(json_number_value(json_object_get(d, "deviation_sigma")), 5.2);
    json_t *c = json_object_get(o, "context");
    static const char *const ck[] = {"trace_id", "region", "time_window", "source"};
    check_keys(c, ck, 4);
    ck_assert_str_eq(json_string_value(json_object_get(c, "trace_id")),
                     "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
    ck_assert_str_eq(json_string_value(json_object_get(c, "region")), "us-east-1");
    ck_assert_str_eq(json_string_value(json_object_get(c, "time_window")), "last_5_minutes");
    ck_assert_str_eq(json_string_value(json_object_get(c, "source")), "sidecar");
    ck_assert_str_eq(json_string_value(json_object_get(o, "root_cause")),
                     "provider slowness or timeouts");
    json_t *rem = json_object_get(o, "remediation");
    ck_assert(json_is_array(rem));
    ck_assert_uint_eq(json_array_size(rem), 3);
    for (size_t i = 0; i < json_array_size(rem); i++)
        ck_assert(json_is_string(json_array_get(rem, i)));
    json_t *rel = json_object_get(o, "related_alerts");
    ck_assert(json_is_array(rel));
    ck_assert_uint_eq(json_array_size(rel), 1);
    ck_assert(uuid_v4(json_string_value(json_array_get(rel, 0))));
    ck_assert_str_eq(json_string_value(json_object_get(o, "runbook_url")),
                     "https://rb.example/latency_spike");
    ck_assert_str_eq(json_string_value(json_object_get(o, "status")), "firing");
    ck_assert(json_is_integer(json_object_get(o, "occurrences")));
    ck_assert_int_eq(json_integer_value(json_object_get(o, "occurrences")), 2);
    json_decref(o);
}
END_TEST

START_TEST(json_leaves_out_nan_and_zero_trace)
{
    sn_alert a = full_alert();
    a.deviation_sigma = NAN;
    a.baseline = INFINITY;
    memset(a.trace_id, 0, sizeof a.trace_id);
    a.status = SN_ALERT_RESOLVED;
    a.resolved_at_ns = T0 + 400 * SEC;
    a.nrelated = 0;
    json_t *o = sn_alert_to_json(&a);
    ck_assert_ptr_nonnull(o);
    json_t *d = json_object_get(o, "details");
    static const char *const dk[] = {"metric", "value", "threshold"};
    check_keys(d, dk, 3);
    json_t *c = json_object_get(o, "context");
    ck_assert_ptr_null(json_object_get(c, "trace_id"));
    ck_assert_uint_eq(json_object_size(c), 3);
    ck_assert_str_eq(json_string_value(json_object_get(o, "status")), "resolved");
    ck_assert_str_eq(json_string_value(json_object_get(o, "resolved_at")),
                     "2026-11-18T11:13:20.000Z");
    ck_assert_uint_eq(json_object_size(o), 18);
    ck_assert_uint_eq(json_array_size(json_object_get(o, "related_alerts")), 0);
    /* It is still valid JSON text (no NaN tokens). */
    char *text = json_dumps(o, JSON_COMPACT);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_null(strstr(text, "nan"));
    free(text);
    json_decref(o);
}
END_TEST

/* A sidecar's held-back alerts count as occurrences and show in details.sidecar_suppressed; an
 * anomaly from a metric interval says so in context.signal and details.calls; both round-trip. */
START_TEST(sidecar_suppressed_and_metric_calls_are_shown)
{
    sn_alerts *m = make(16, NULL);
    sn_anomaly an = anomaly("chatbot-api", "gpt-4o", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    an.source = SN_SOURCE_SIDECAR;
    an.suppressed = 3;
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0), 0);
    ck_assert_uint_eq(g_rec.alert[0].occurrences, 4);
    ck_assert_uint_eq(g_rec.alert[0].sidecar_suppressed, 3);
    an.suppressed = 2;
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + 1000000000), 0);
    an = anomaly("chatbot-api", "gpt-4o", SN_ANOMALY_LATENCY_SPIKE, SN_SEV_HIGH);
    an.calls = 25;
    ck_assert_int_eq(sn_alerts_observe(m, &an, T0 + 2000000000), 0);
    const sn_alert *a = &g_rec.alert[g_rec.n - 1];
    ck_assert_uint_eq(a->occurrences, 8); /* 3 anomalies + 3 + 2 held back */
    ck_assert_uint_eq(a->sidecar_suppressed, 5);
    ck_assert_uint_eq(a->calls, 25);
    json_t *o = sn_alert_to_json(a);
    ck_assert_ptr_nonnull(o);
    json_t *det = json_object_get(o, "details");
    ck_assert_int_eq(json_integer_value(json_object_get(det, "sidecar_suppressed")), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(det, "calls")), 25);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "context"), "signal")),
                     "metrics");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "occurrences")), 8);
    sn_alert b;
    char err[128];
    ck_assert_int_eq(sn_alert_from_json(o, &b, err, sizeof err), 0);
    ck_assert_uint_eq(b.sidecar_suppressed, 5);
    ck_assert_uint_eq(b.calls, 25);
    json_object_set_new(det, "calls", json_integer(-1));
    ck_assert_int_eq(sn_alert_from_json(o, &b, err, sizeof err), -EINVAL);
    json_decref(o);
    /* a plain span anomaly has neither */
    sn_alert plain = *a;
    plain.calls = 0;
    plain.sidecar_suppressed = 0;
    o = sn_alert_to_json(&plain);
    ck_assert_ptr_null(json_object_get(json_object_get(o, "details"), "calls"));
    ck_assert_ptr_null(json_object_get(json_object_get(o, "details"), "sidecar_suppressed"));
    ck_assert_ptr_null(json_object_get(json_object_get(o, "context"), "signal"));
    json_decref(o);
    sn_alerts_destroy(m);
}
END_TEST

START_TEST(json_round_trips)
{
    sn_alert a = full_alert();
    json_t *o = sn_alert_to_json(&a);
    sn_alert b;
    char err[128];
    ck_assert_int_eq(sn_alert_from_json(o, &b, err, sizeof err), 0);
    json_decref(o);
    ck_assert_str_eq(b.alert_id, a.alert_id);
    ck_assert_int_eq(b.timestamp_ns, a.timestamp_ns);
    ck_assert_int_eq(b.last_seen_ns, a.last_seen_ns);
    ck_assert_int_eq(b.severity, a.severity);
    ck_assert_int_eq(b.anomaly_type, a.anomaly_type);
    ck_assert_str_eq(b.service, a.service);
    ck_assert_str_eq(b.model, a.model);
    ck_assert_int_eq(b.method, a.method);
    ck_assert_double_eq(b.confidence, a.confidence);
    ck_assert_int_eq(b.metric, a.metric);
    ck_assert_double_eq(b.value, a.value);
    ck_assert_double_eq(b.deviation_sigma, a.deviation_sigma);
    ck_assert_mem_eq(b.trace_id, a.trace_id, 16);
    ck_assert_str_eq(b.region, a.region);
    ck_assert_str_eq(b.time_window, a.time_window);
    ck_assert_int_eq(b.source, a.source);
    ck_assert_str_eq(b.root_cause, a.root_cause);
    ck_assert_uint_eq(b.nremediation, a.nremediation);
    ck_assert_str_eq(b.remediation[2], a.remediation[2]);
    ck_assert_uint_eq(b.nrelated, a.nrelated);
    ck_assert_str_eq(b.related[0], a.related[0]);
    ck_assert_str_eq(b.runbook_url, a.runbook_url);
    ck_assert_int_eq(b.status, a.status);
    ck_assert_int_eq(b.occurrences, a.occurrences);
    ck_assert_int_eq(b.resolved_at_ns, 0);

    a.deviation_sigma = NAN;
    a.status = SN_ALERT_RESOLVED;
    a.resolved_at_ns = T0 + 500 * SEC;
    o = sn_alert_to_json(&a);
    ck_assert_int_eq(sn_alert_from_json(o, &b, err, sizeof err), 0);
    json_decref(o);
    ck_assert(isnan(b.deviation_sigma));
    ck_assert_int_eq(b.status, SN_ALERT_RESOLVED);
    ck_assert_int_eq(b.resolved_at_ns, T0 + 500 * SEC);
}
END_TEST

START_TEST(json_parser_names_the_bad_field)
{
    sn_alert a = full_alert();
    static const struct {
        const char *path; /* "key" or "object.key" */
        const char *bad;  /* JSON value to put there; NULL deletes the key */
        const char *word; /* expected in the message */
    } cases[] = {
        {"alert_id", "\"not-a-uuid\"", "alert_id"},
        {"alert_id", NULL, "alert_id"},
        {"timestamp", "\"yesterday\"", "timestamp"},
        {"timestamp", "\"2026-02-31T00:00:00Z\"", "timestamp"},
        {"severity", "\"none\"", "severity"},
        {"severity", "3", "severity"},
        {"anomaly_type", "\"meltdown\"", "anomaly_type"},
        {"service_name", "\"\"", "service_name"},
        {"model", "null", "model"},
        {"detection_method", "\"vibes\"", "detection_method"},
        {"confidence", "1.5", "confidence"},
        {"confidence", "\"high\"", "confidence"},
        {"details", "[]", "details"},
        {"details.metric", "\"latency\"", "details.metric"},
        {"details.value", "\"12\"", "details.value"},
        {"context", NULL, "context"},
        {"context.trace_id", "\"abc\"", "context.trace_id"},
        {"context.source", "\"cloud\"", "context.source"},
        {"root_cause", "1", "root_cause"},
        {"remediation", "\"do something\"", "remediation"},
        {"remediation", "[\"a\",\"b\",\"c\",\"d\",\"e\"]", "remediation"},
        {"remediation", "[1]", "remediation[0]"},
        {"related_alerts", "[\"x\"]", "related_alerts[0]"},
        {"status", "\"pending\"", "status"},
        {"occurrences", "0", "occurrences"},
        {"occurrences", "1.5", "occurrences"},
        {"last_seen", "\"soon\"", "last_seen"},
    };
    char err[128];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *o = sn_alert_to_json(&a);
        json_t *parent = o;
        const char *key = cases[i].path;
        const char *dot = strchr(key, '.');
        char head[32];
        if (dot != NULL) {
            snprintf(head, sizeof head, "%.*s", (int)(dot - key), key);
            parent = json_object_get(o, head);
            key = dot + 1;
        }
        if (cases[i].bad == NULL) {
            json_object_del(parent, key);
        } else {
            json_error_t jerr;
            json_t *v = json_loads(cases[i].bad, JSON_DECODE_ANY, &jerr);
            ck_assert_ptr_nonnull(v);
            json_object_set_new(parent, key, v);
        }
        sn_alert b;
        err[0] = '\0';
        ck_assert_msg(sn_alert_from_json(o, &b, err, sizeof err) == -EINVAL, "case %zu", i);
        ck_assert_msg(strstr(err, cases[i].word) != NULL, "case %zu: \"%s\"", i, err);
        json_decref(o);
    }
    json_t *arr = json_array();
    sn_alert b;
    ck_assert_int_eq(sn_alert_from_json(arr, &b, err, sizeof err), -EINVAL);
    json_decref(arr);
}
END_TEST

START_TEST(times_format_and_parse)
{
    char buf[40];
    ck_assert_int_eq(sn_alert_format_time(0, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "1970-01-01T00:00:00.000Z");
    ck_assert_int_eq(sn_alert_format_time(T0 + 123456789, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "2026-11-18T11:06:40.123Z");
    ck_assert_int_eq(sn_alert_format_time(-1, buf, sizeof buf), -EINVAL);
    ck_assert_int_eq(sn_alert_format_time(T0, buf, 10), -EINVAL);
    int64_t ns;
    ck_assert_int_eq(sn_alert_parse_time("2026-11-18T11:06:40.123Z", &ns), 0);
    ck_assert_int_eq(ns, T0 + 123000000);
    ck_assert_int_eq(sn_alert_parse_time("2026-11-18T11:06:40.123456789Z", &ns), 0);
    ck_assert_int_eq(ns, T0 + 123456789);
    ck_assert_int_eq(sn_alert_parse_time("2026-11-18T13:06:40+02:00", &ns), 0);
    ck_assert_int_eq(ns, T0);
    ck_assert_int_eq(sn_alert_parse_time("2026-11-18T06:06:40-05:00", &ns), 0);
    ck_assert_int_eq(ns, T0);
    static const char *const bad[] = {"",
                                      "2026-11-18",
                                      "2026-11-18T08:26:40",
                                      "2026-11-18T08:26:40.Z",
                                      "2026-13-18T08:26:40Z",
                                      "2026-11-18T24:26:40Z",
                                      "2026-11-18T08:26:40Zjunk",
                                      "1969-12-31T23:59:59Z",
                                      "2026-11-18T08:26:40+0200"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(sn_alert_parse_time(bad[i], &ns) == -EINVAL, "%s", bad[i]);
}
END_TEST

static Suite *alerts_suite(void)
{
    Suite *s = suite_create("alerts");
    TCase *tc = tcase_create("lifecycle");
    tcase_add_test(tc, create_refuses_bad_config);
    tcase_add_test(tc, dedup_within_window_updates_one_alert);
    tcase_add_test(tc, severity_is_the_maximum_seen);
    tcase_add_test(tc, keys_are_service_model_and_type);
    tcase_add_test(tc, new_alert_after_the_dedup_window);
    tcase_add_test(tc, resolves_after_the_quiet_period_and_refires);
    tcase_add_test(tc, grouping_links_alerts_of_a_service);
    tcase_add_test(tc, related_alerts_are_bounded);
    tcase_add_test(tc, grouping_can_be_turned_off);
    tcase_add_test(tc, bounded_slots_refuse_then_reuse_resolved);
    tcase_add_test(tc, oldest_resolved_is_dropped_first);
    tcase_add_test(tc, invalid_anomalies_are_refused);
    tcase_add_test(tc, restore_continues_dedup_across_restarts);
    tcase_add_test(tc, ids_come_from_the_random_source);
    tcase_add_test(tc, runbook_template_is_expanded);
    suite_add_tcase(s, tc);
    TCase *tr = tcase_create("rules");
    tcase_add_test(tr, every_rule_is_reachable_and_complete);
    tcase_add_test(tr, documented_root_causes);
    tcase_add_test(tr, more_specific_root_cause_wins_while_firing);
    suite_add_tcase(s, tr);
    TCase *tj = tcase_create("json");
    tcase_add_test(tj, json_has_the_contract_shape);
    tcase_add_test(tj, json_leaves_out_nan_and_zero_trace);
    tcase_add_test(tj, json_round_trips);
    tcase_add_test(tj, sidecar_suppressed_and_metric_calls_are_shown);
    tcase_add_test(tj, json_parser_names_the_bad_field);
    tcase_add_test(tj, times_format_and_parse);
    suite_add_tcase(s, tj);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(alerts_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
