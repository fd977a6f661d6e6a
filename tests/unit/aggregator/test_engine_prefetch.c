/*
 * Tests of aggregator/engine.h's prefetch hints (sn_engine_pair_hint, sn_engine_prefetch): the
 * hint depends on the pair only, and an engine fed the hints for events ahead -- every stage,
 * pairs known and not yet known, pairs expired between bursts -- raises exactly the anomalies
 * and counters of an engine fed the same events without them (a hint changes nothing). Under
 * ASan the expiry bursts also check that the hints read only live pair states.
 */
#include "engine.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC   INT64_C(1000000000)
#define T0    (INT64_C(1767225600) * SEC)
#define PAIRS 40
#define N     24000
#define AHEAD 4

static uint64_t rng;

static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

typedef struct digest {
    uint64_t h;
    unsigned anomalies;
} digest;

static void on_anomaly(const sn_anomaly *a, void *ud)
{
    digest *d = ud;
    char line[512];
    int n = snprintf(line, sizeof line, "%lld %d %d %s %s %d %.17g", (long long)a->time_unix_nano,
                     (int)a->anomaly_type, (int)a->severity, a->service, a->model, (int)a->metric,
                     a->value);
    for (int i = 0; i < n && i < (int)sizeof line; i++)
        d->h = (d->h ^ (unsigned char)line[i]) * 0x100000001b3ull;
    d->anomalies++;
}

/* Event i of the stream: PAIRS pairs (the last ten only from i >= N / 2, so their first hints
 * find no pair), a latency spike on pair 3 now and then, bursts with idle gaps between them. */
static void make_event(sn_event *ev, size_t i)
{
    unsigned pair = (unsigned)(next_u64() % (i < N / 2 ? PAIRS - 10 : PAIRS));
    sn_event_init(ev);
    snprintf(ev->service, sizeof ev->service, "svc-%u", pair / 4);
    snprintf(ev->model, sizeof ev->model, "model-%u", pair % 4);
    snprintf(ev->region, sizeof ev->region, "eu-west-1");
    int64_t burst = (int64_t)(i / 6000) * 3 * 3600 * SEC; /* 3 h apart: idle expiry 1 h */
    ev->end_unix_nano = T0 + burst + (int64_t)(i % 6000) * (SEC / 50);
    double u = (double)(next_u64() >> 11) / 9007199254740992.0;
    ev->latency_ms = 800.0 * (0.8 + 0.4 * u);
    if (pair == 3 && i % 1500 > 1490)
        ev->latency_ms *= 20.0;
    ev->start_unix_nano = ev->end_unix_nano - (int64_t)(ev->latency_ms * 1e6);
    ev->input_tokens = 200 + (int64_t)(next_u64() % 100);
    ev->output_tokens = 100 + (int64_t)(next_u64() % 50);
    ev->total_tokens = ev->input_tokens + ev->output_tokens;
    ev->is_error = next_u64() % 100 == 0;
    snprintf(ev->finish_reason, sizeof ev->finish_reason, "stop");
}

static sn_engine *new_engine(void)
{
    sn_engine_config c;
    sn_engine_config_defaults(&c);
    c.idle_expiry = 3600 * SEC;
    sn_engine *e = NULL;
    sn_config_error err = {{0}};
    ck_assert_int_eq(sn_engine_create(&e, &c, 11, &err), 0);
    return e;
}

/* Runs the stream through e, with hints `ahead` events ahead (0: none). */
static digest run(sn_engine *e, const sn_event *evs, unsigned ahead)
{
    digest d = {0xcbf29ce484222325ull, 0};
    int64_t last_tick = T0;
    for (size_t i = 0; i < N; i++) {
        if (ahead > 0) {
            if (i + 3 * ahead < N)
                sn_engine_prefetch(e, sn_engine_pair_hint(e, &evs[i + 3 * ahead]), 0);
            if (i + 2 * ahead < N)
                sn_engine_prefetch(e, sn_engine_pair_hint(e, &evs[i + 2 * ahead]), 1);
            if (i + ahead < N)
                sn_engine_prefetch(e, sn_engine_pair_hint(e, &evs[i + ahead]), 2);
        }
        sn_engine_observe(e, &evs[i], on_anomaly, &d);
        if (evs[i].end_unix_nano - last_tick >= 10 * SEC) {
            last_tick = evs[i].end_unix_nano;
            sn_engine_tick(e, last_tick, on_anomaly, &d);
        }
    }
    return d;
}

START_TEST(hint_depends_on_the_pair_only)
{
    sn_engine *e = new_engine();
    sn_event a, b, c;
    sn_event_init(&a);
    snprintf(a.service, sizeof a.service, "checkout");
    snprintf(a.model, sizeof a.model, "gpt-4o");
    b = a;
    b.latency_ms = 12.0;
    snprintf(b.region, sizeof b.region, "us-east-1");
    c = a;
    snprintf(c.model, sizeof c.model, "gpt-4o-mini");
    ck_assert_uint_eq(sn_engine_pair_hint(e, &a), sn_engine_pair_hint(e, &b));
    ck_assert_uint_ne(sn_engine_pair_hint(e, &a), sn_engine_pair_hint(e, &c));
    /* an unknown pair and an empty engine: every stage is a no-op */
    for (unsigned stage = 0; stage <= 2; stage++)
        sn_engine_prefetch(e, sn_engine_pair_hint(e, &a), stage);
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    ck_assert_uint_eq(st.events, 0);
    ck_assert_uint_eq(st.keys, 0);
    sn_engine_destroy(e);
}
END_TEST

START_TEST(hints_change_nothing)
{
    sn_event *evs = malloc(N * sizeof *evs);
    ck_assert_ptr_nonnull(evs);
    rng = 0x2545f4914f6cdd1dull;
    for (size_t i = 0; i < N; i++)
        make_event(&evs[i], i);
    sn_engine *plain = new_engine(), *hinted = new_engine();
    digest want = run(plain, evs, 0);
    digest got = run(hinted, evs, AHEAD);
    ck_assert_uint_gt(want.anomalies, 0); /* the stream raises some */
    ck_assert_uint_eq(got.anomalies, want.anomalies);
    ck_assert_uint_eq(got.h, want.h);
    sn_engine_stats a, b;
    sn_engine_get_stats(plain, &a);
    sn_engine_get_stats(hinted, &b);
    ck_assert_uint_gt(a.expired, 0); /* pairs were dropped between bursts */
    ck_assert_uint_eq(b.expired, a.expired);
    ck_assert_uint_eq(b.keys, a.keys);
    ck_assert_uint_eq(b.events, a.events);
    sn_engine_destroy(plain);
    sn_engine_destroy(hinted);
    free(evs);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("engine_prefetch");
    TCase *tc = tcase_create("hints");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, hint_depends_on_the_pair_only);
    tcase_add_test(tc, hints_change_nothing);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
