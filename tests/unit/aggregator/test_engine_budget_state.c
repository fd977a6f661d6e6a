/* Unit tests for the engine's budget state across a restart (aggregator/engine.c,
 * sn_engine_budgets_export / sn_engine_budget_restore): only states that spent are handed out,
 * a restored state keeps its spend and fired levels in the same period, and is refused for
 * another period, a rule that no longer exists, or bad values. */
#include "engine.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC SN_NS_PER_SEC
#define T0  (INT64_C(1795000000) * SEC) /* 2026-11-18, mid-month */

static unsigned budget_alerts;
static sn_severity last_severity;
static void count(const sn_anomaly *a, void *ud)
{
    (void)ud;
    if (a->anomaly_type == SN_ANOMALY_BUDGET) {
        budget_alerts++;
        last_severity = a->severity;
    }
}

static sn_engine *engine(const char *rule1, const char *rule2)
{
    sn_engine_config cfg;
    sn_engine_config_defaults(&cfg);
    cfg.throughput_enabled = false;
    snprintf(cfg.budgets.items[0], sizeof cfg.budgets.items[0], "%s", rule1);
    cfg.budgets.count = 1;
    if (rule2 != NULL) {
        snprintf(cfg.budgets.items[1], sizeof cfg.budgets.items[1], "%s", rule2);
        cfg.budgets.count = 2;
    }
    sn_engine *e = NULL;
    sn_config_error err;
    ck_assert_msg(sn_engine_create(&e, &cfg, 3, &err) == 0, "%s", err.msg);
    return e;
}

static void spend(sn_engine *e, const char *svc, const char *user, int64_t t, double usd)
{
    sn_event ev;
    sn_event_init(&ev);
    snprintf(ev.service, sizeof ev.service, "%s", svc);
    snprintf(ev.model, sizeof ev.model, "gpt-4o");
    snprintf(ev.user, sizeof ev.user, "%s", user);
    ev.end_unix_nano = t;
    ev.start_unix_nano = t - SEC;
    ev.cost_usd = usd;
    ev.cost_source = SN_COST_SPAN;
    sn_engine_observe(e, &ev, count, NULL);
}

/* What an export handed out (strings copied). */
typedef struct saved {
    int n;
    char rule[4][64], svc[4][64], user[4][64];
    sn_engine_budget b[4];
} saved;

static int save(const sn_engine_budget *b, void *ud)
{
    saved *s = ud;
    ck_assert_int_lt(s->n, 4);
    int i = s->n++;
    snprintf(s->rule[i], sizeof s->rule[i], "%s", b->rule_service);
    snprintf(s->svc[i], sizeof s->svc[i], "%s", b->service);
    snprintf(s->user[i], sizeof s->user[i], "%s", b->user);
    s->b[i] = *b;
    s->b[i].rule_service = s->rule[i];
    s->b[i].service = s->svc[i];
    s->b[i].user = s->user[i];
    return 0;
}

START_TEST(spend_survives_in_the_same_period)
{
    sn_engine *e = engine("chat:day:10", "*:hour:1:per_user");
    spend(e, "chat", "", T0, 7.0);
    spend(e, "chat", "alice", T0 + SEC, 0.9); /* alice: soft (80 %) fired */
    ck_assert_uint_eq(budget_alerts, 1);
    saved s = {0};
    ck_assert_int_eq(sn_engine_budgets_export(e, false, save, &s), 0);
    ck_assert_int_eq(s.n, 2); /* chat/day (7.9 with alice's call) and alice/hour (0.9) */
    saved again = {0};
    ck_assert_int_eq(sn_engine_budgets_export(e, false, save, &again), 0);
    ck_assert_int_eq(again.n, 0); /* nothing spent since */
    ck_assert_int_eq(sn_engine_budgets_export(e, true, save, &again), 0);
    ck_assert_int_eq(again.n, 2); /* all */
    sn_engine_destroy(e);

    /* A new engine (the restart) gets the spend back: 2.5 more crosses the day's soft level
     * (8 of 10) only with the 7.9 kept; alice's soft level does not fire twice. */
    e = engine("chat:day:10", "*:hour:1:per_user");
    for (int i = 0; i < s.n; i++) {
        int rc = sn_engine_budget_restore(e, &s.b[i], T0 + 60 * SEC);
        ck_assert_msg(rc == 0, "%s/%s/%s: %d", s.rule[i], s.svc[i], s.user[i], rc);
    }
    budget_alerts = 0;
    spend(e, "chat", "", T0 + 120 * SEC, 0.2);
    ck_assert_uint_eq(budget_alerts, 1);
    ck_assert_int_eq(last_severity, SN_SEV_HIGH); /* soft */
    budget_alerts = 0;
    spend(e, "chat", "alice", T0 + 130 * SEC, 0.01);
    ck_assert_uint_eq(budget_alerts, 0);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(restore_refusals)
{
    sn_engine *e = engine("chat:day:10", NULL);
    spend(e, "chat", "", T0, 3.0);
    saved s = {0};
    ck_assert_int_eq(sn_engine_budgets_export(e, false, save, &s), 0);
    ck_assert_int_eq(s.n, 1);
    sn_engine_destroy(e);

    e = engine("chat:day:10", NULL);
    /* the next day: that spend is over */
    ck_assert_int_eq(sn_engine_budget_restore(e, &s.b[0], T0 + 86400 * SEC), -ESTALE);
    sn_engine_budget bad = s.b[0];
    bad.spent = NAN;
    ck_assert_int_eq(sn_engine_budget_restore(e, &bad, T0), -EINVAL);
    bad = s.b[0];
    bad.period = SN_PERIOD_HOUR; /* no such rule */
    ck_assert_int_eq(sn_engine_budget_restore(e, &bad, T0), -ENOENT);
    bad = s.b[0];
    bad.service = "other"; /* the rule names chat */
    ck_assert_int_eq(sn_engine_budget_restore(e, &bad, T0), -ENOENT);
    bad = s.b[0];
    bad.user = "bob"; /* not a per-user rule */
    ck_assert_int_eq(sn_engine_budget_restore(e, &bad, T0), -ENOENT);
    ck_assert_int_eq(sn_engine_budget_restore(e, &s.b[0], T0), 0);
    ck_assert_int_eq(sn_engine_budget_restore(e, &s.b[0], T0), -EEXIST);
    sn_engine_destroy(e);

    /* The amount changed (the rule is the same): the spend is kept, judged on the new amount. */
    e = engine("chat:day:3.5", NULL);
    ck_assert_int_eq(sn_engine_budget_restore(e, &s.b[0], T0), 0);
    budget_alerts = 0;
    spend(e, "chat", "", T0 + SEC, 0.6);
    ck_assert_uint_eq(budget_alerts, 1);
    ck_assert_int_eq(last_severity, SN_SEV_CRITICAL); /* 3.6 of 3.5: hard */
    sn_engine_destroy(e);
}
END_TEST

START_TEST(sync_takes_the_shared_total)
{
    /* Two replicas of one rule; a plain double stands for the shared total in Redis. */
    sn_engine *a = engine("chat:day:1", NULL), *b = engine("chat:day:1", NULL);
    double total = 0.0;
    sn_engine_budget_sync it[4];
    budget_alerts = 0;
    spend(a, "chat", "", T0, 0.45);
    spend(b, "chat", "", T0, 0.45);
    sn_engine *order[] = {a, b};
    for (int r = 0; r < 2; r++) {
        size_t n = sn_engine_budgets_sync_collect(order[r], 4, it);
        ck_assert_uint_eq(n, 1);
        ck_assert_double_eq_tol(it[0].delta, 0.45, 1e-12);
        ck_assert_str_eq(it[0].b.service, "chat");
        total += it[0].delta;
        sn_engine_budgets_sync_apply(order[r], &it[0], total);
    }
    ck_assert_uint_eq(sn_engine_budgets_sync_collect(b, 4, it), 0); /* nothing new */
    /* b holds the total (0.90): a small spend crosses the soft level there. */
    spend(b, "chat", "", T0 + SEC, 0.01);
    ck_assert_uint_eq(budget_alerts, 1);
    ck_assert_int_eq(last_severity, SN_SEV_HIGH);
    /* Only the new spend is added next time, and a lower total never lowers the spend. */
    ck_assert_uint_eq(sn_engine_budgets_sync_collect(b, 4, it), 1);
    ck_assert_double_eq_tol(it[0].delta, 0.01, 1e-12);
    sn_engine_budgets_sync_apply(b, &it[0], 0.01); /* a Redis that lost the key */
    saved s = {0};
    ck_assert_int_eq(sn_engine_budgets_export(b, true, save, &s), 0);
    ck_assert_double_eq_tol(s.b[0].spent, 0.91, 1e-12);
    /* A new period: the first sync adds all of that period's spend. */
    spend(a, "chat", "", T0 + 86400 * SEC, 0.3);
    ck_assert_uint_eq(sn_engine_budgets_sync_collect(a, 4, it), 1);
    ck_assert_double_eq_tol(it[0].delta, 0.3, 1e-12);
    ck_assert_int_eq(it[0].b.period_index, s.b[0].period_index + 1);
    sn_engine_destroy(a);
    sn_engine_destroy(b);
}
END_TEST

static Suite *budget_suite(void)
{
    Suite *s = suite_create("engine_budget_state");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, spend_survives_in_the_same_period);
    tcase_add_test(tc, restore_refusals);
    tcase_add_test(tc, sync_takes_the_shared_total);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(budget_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
