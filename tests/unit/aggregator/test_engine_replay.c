/*
 * Replay tests for aggregator/engine.c's hot path: a recorded (deterministic) event stream with
 * incidents of every per-event and per-pair kind, run through the engine under three regimes --
 * steady keys, a memory budget that evicts keys all the time, and idle expiry that drops pairs
 * and keys between bursts -- must give exactly the anomalies and counters recorded before the
 * look-up and summary caches existed. The digests below were written by this test built
 * against an engine without those caches and with the current detection rules (spike
 * agreement, persistence 3, interval-mean drift: branch h/accuracy at 1e7da60, which the caches
 * had not reached), and the cached engine gives the same. The steady and expiry digests were
 * re-recorded when the default summary_refresh went from 16 to 32 samples (same anomalies
 * and counters, slightly different baselines in them; docs/benchmarks.md, "the engine's cost
 * per event"). A digest mismatch means a detector's result changed.
 * Under ASan the eviction and expiry regimes also catch a stale cached entry pointer.
 *
 * REPLAY_PRINT=1 prints the digests instead of checking them (to record new ones after an
 * intended change of results -- say why in the commit).
 */
#include "engine.h"

#include "test_rand.h"
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC INT64_C(1000000000)
#define T0  (INT64_C(1767225600) * SEC)

static sn_test_rand rng;

typedef struct digest {
    uint64_t h;
    unsigned anomalies;
} digest;

static void mix(digest *d, const char *s)
{
    for (; *s != '\0'; s++)
        d->h = (d->h ^ (unsigned char)*s) * 0x100000001b3ull;
    d->h = (d->h ^ 0xff) * 0x100000001b3ull;
}

static void on_anomaly(const sn_anomaly *a, void *ud)
{
    digest *d = ud;
    char line[512];
    snprintf(line, sizeof line, "%d %d %d %d %s %s %lld %.10g %.10g %.10g %.6g %.6g %u %s %s %s",
             (int)a->anomaly_type, (int)a->metric, (int)a->method, (int)a->severity, a->service,
             a->model, (long long)a->time_unix_nano, a->value, a->baseline, a->threshold,
             a->deviation_sigma, a->confidence, a->agreed, a->related_metric, a->time_window,
             a->error_type);
    mix(d, line);
    d->anomalies++;
}

/* The counters that say what every detector did. */
static void mix_stats(digest *d, const sn_engine *e)
{
    sn_engine_stats st;
    sn_engine_get_stats(e, &st);
    char line[256];
    for (int c = 0; c < SN_CHECK_COUNT; c++) {
        snprintf(line, sizeof line, "%d %llu %llu %llu", c, (unsigned long long)st.evaluations[c],
                 (unsigned long long)st.violations[c], (unsigned long long)st.anomalies[c]);
        mix(d, line);
    }
    snprintf(line, sizeof line, "%llu %llu %llu %llu %llu %llu %llu %llu %llu",
             (unsigned long long)st.events, (unsigned long long)st.values,
             (unsigned long long)st.suppressed, (unsigned long long)st.keys,
             (unsigned long long)st.evictions, (unsigned long long)st.expired,
             (unsigned long long)st.pairs, (unsigned long long)st.refused,
             (unsigned long long)st.relearned);
    mix(d, line);
}

typedef struct regime {
    unsigned pairs;
    unsigned events;
    int64_t step;          /* ns between events */
    int64_t memory_budget; /* 0: the default */
    int64_t idle_expiry;   /* 0: the default */
    bool bursts;           /* pairs >= pairs/2 only speak in every other minute */
    unsigned batch;        /* > 0: events go through sn_engine_observe_batch in runs of this
                              many (cut short at every tick); 0: sn_engine_observe each */
    bool refusals;         /* every 997th event has an empty service (refused) */
    unsigned run;          /* > 1: a pair speaks for this many events in a row (as a sidecar's
                              batch groups them), so a batch's events share their names */
} regime;

#define BATCH_MAX 512

/* Observes the events buffered for a batch regime. */
static void flush(sn_engine *e, sn_event *buf, unsigned *nbuf, digest *d)
{
    if (*nbuf > 0)
        sn_engine_observe_batch(e, buf, *nbuf, on_anomaly, d);
    *nbuf = 0;
}

static const char *const errs[] = {"timeout", "rate_limit", "server_error"};

/* Runs the stream of regime r; fills *d and the engine's stats. */
static void replay(const regime *r, digest *d, sn_engine_stats *out)
{
    sn_engine_config c;
    sn_engine_config_defaults(&c);
    if (r->memory_budget > 0)
        c.memory_budget = r->memory_budget;
    if (r->idle_expiry > 0)
        c.idle_expiry = r->idle_expiry;
    snprintf(c.budgets.items[0], sizeof c.budgets.items[0], "svc-1:hour:0.05");
    c.budgets.count = 1;
    sn_engine *e = NULL;
    sn_config_error err = {{0}};
    ck_assert_int_eq(sn_engine_create(&e, &c, 42, &err), 0);
    rng.s = 0x2545f4914f6cdd1dull;
    d->h = 0xcbf29ce484222325ull;
    d->anomalies = 0;
    int64_t t = T0, last_tick = T0;
    ck_assert_uint_le(r->batch, BATCH_MAX);
    sn_event *buf = r->batch > 0 ? calloc(BATCH_MAX, sizeof *buf) : NULL;
    unsigned nbuf = 0, last_p = 0;
    for (unsigned k = 0; k < r->events; k++) {
        t += r->step;
        if (t - last_tick >= SEC) {
            last_tick = t;
            flush(e, buf, &nbuf, d);
            sn_engine_tick(e, t, on_anomaly, d);
        }
        unsigned p =
            r->run > 1 && k % r->run != 0 ? last_p : (unsigned)(sn_test_rand_u64(&rng) % r->pairs);
        last_p = p;
        bool quiet_period = ((t - T0) / (60 * SEC)) % 2 == 1;
        if (r->bursts && p >= r->pairs / 2 && quiet_period)
            continue;
        double phase = (double)k / r->events;
        sn_event ev;
        sn_event_init(&ev);
        if (r->run > 1) { /* names of 1..30 bytes: every length case of the name comparison */
            snprintf(ev.service, sizeof ev.service, "%.*s%u", (int)(p % 23),
                     "checkout-api-service-", p / 4);
            snprintf(ev.model, sizeof ev.model, "%.*s%u", (int)(p % 29), "gpt-4o-mini-2024-07-18-x",
                     p % 4);
        } else {
            snprintf(ev.service, sizeof ev.service, "svc-%u", p / 4);
            snprintf(ev.model, sizeof ev.model, "model-%u", p % 4);
        }
        snprintf(ev.region, sizeof ev.region, "eu-west-1");
        double lat = 1500.0 * (1.0 + 0.2 * (p % 3)) * exp(0.3 * sn_test_rand_normal(&rng));
        double in = 600.0 * exp(0.4 * sn_test_rand_normal(&rng)),
               out_tok = 200.0 * exp(0.4 * sn_test_rand_normal(&rng));
        /* incidents, each on one pair for a slice of the stream */
        if (p == 3 && phase > 0.50 && phase < 0.53)
            lat *= 6.0; /* latency spike */
        if (p == 7 && phase > 0.60 && phase < 0.62)
            in *= 25.0;               /* token blow-up */
        if (p == 9 && phase > 0.40) { /* slow drift of latency and cost */
            lat *= 1.0 + 2.0 * (phase - 0.40);
            out_tok *= 1.0 + 3.0 * (phase - 0.40);
        }
        if (p == 11 && phase > 0.70)
            continue; /* silence: throughput drop */
        ev.latency_ms = lat;
        ev.ttft_ms = lat * 0.15;
        ev.start_unix_nano = t - (int64_t)(lat * 1e6);
        ev.end_unix_nano = t;
        ev.input_tokens = (int64_t)in + 1;
        ev.output_tokens = (int64_t)out_tok + 1;
        ev.total_tokens = ev.input_tokens + ev.output_tokens;
        ev.cost_usd = (double)ev.input_tokens * 2.5e-6 + (double)ev.output_tokens * 1e-5;
        ev.cost_source = SN_COST_PRICE_TABLE;
        double perr = (p == 5 && phase > 0.30 && phase < 0.34) ? 0.5 : 0.01;
        ev.is_error = sn_test_rand_unit(&rng) < perr;
        if (ev.is_error)
            snprintf(ev.error_type, sizeof ev.error_type, "%s", errs[sn_test_rand_u64(&rng) % 3]);
        bool length = (p == 13 && phase > 0.55) ? sn_test_rand_unit(&rng) < 0.8
                                                : sn_test_rand_unit(&rng) < 0.1;
        if (!ev.is_error)
            snprintf(ev.finish_reason, sizeof ev.finish_reason, "%s", length ? "length" : "stop");
        snprintf(ev.user, sizeof ev.user, "u%u", (unsigned)(sn_test_rand_u64(&rng) % 5));
        if (r->refusals && k % 997 == 0)
            ev.service[0] = '\0';
        if (buf == NULL) {
            sn_engine_observe(e, &ev, on_anomaly, d);
            continue;
        }
        buf[nbuf++] = ev;
        if (nbuf == r->batch)
            flush(e, buf, &nbuf, d);
    }
    flush(e, buf, &nbuf, d);
    free(buf);
    mix_stats(d, e);
    sn_engine_get_stats(e, out);
    sn_engine_destroy(e);
}

/* Compares a replay's digest with the recorded one (or prints it, REPLAY_PRINT). */
static void check(const char *name, const digest *d, const sn_engine_stats *st, uint64_t want_h,
                  unsigned want_n)
{
    if (getenv("REPLAY_PRINT") != NULL) {
        printf("%s: digest 0x%016llxull anomalies %u evictions %llu expired %llu\n", name,
               (unsigned long long)d->h, d->anomalies, (unsigned long long)st->evictions,
               (unsigned long long)st->expired);
        return;
    }
    ck_assert_uint_eq(d->anomalies, want_n);
    ck_assert_uint_eq(d->h, want_h);
}

/* 48 pairs, every key steady: anomalies of every kind on the incident pairs. */
START_TEST(steady_keys_give_the_recorded_results)
{
    regime r = {.pairs = 48, .events = 120000, .step = 5 * SEC / 1000};
    digest d;
    sn_engine_stats st;
    replay(&r, &d, &st);
    /* the stream has incidents of these kinds: the digest covers what they gave */
    ck_assert_uint_gt(st.anomalies[SN_CHECK_ERROR_RATE], 0);
    ck_assert_uint_gt(st.anomalies[SN_CHECK_THROUGHPUT], 0);
    ck_assert_uint_gt(st.anomalies[SN_CHECK_FINISH_DRIFT], 0);
    ck_assert_uint_gt(st.anomalies[SN_CHECK_BUDGET], 0);
    ck_assert_uint_gt(st.anomalies[SN_CHECK_ZSCORE] + st.anomalies[SN_CHECK_IQR] +
                          st.anomalies[SN_CHECK_MAD] + st.anomalies[SN_CHECK_CUSUM],
                      0);
    check("steady", &d, &st, 0x7d20ca685b90f814ull, 292);
}
END_TEST

/* 160 pairs (1280 keys) in a 1 MiB budget: keys are evicted all the time while their pairs
 * live on, so cached entry pointers must be forgotten on eviction. */
START_TEST(evicting_budget_gives_the_recorded_results)
{
    regime r = {.pairs = 160, .events = 60000, .step = 5 * SEC / 1000, .memory_budget = 1 << 20};
    digest d;
    sn_engine_stats st;
    replay(&r, &d, &st);
    ck_assert_uint_gt(st.evictions, 1000);
    check("evicting", &d, &st, 0x36e68f8dce9c9a34ull, 3);
}
END_TEST

/* Half the pairs speak only every other minute, idle expiry 5 s (checked once a minute): their
 * pairs and keys expire and come back. */
START_TEST(idle_expiry_gives_the_recorded_results)
{
    regime r = {.pairs = 64,
                .events = 150000,
                .step = 5 * SEC / 1000,
                .idle_expiry = 5 * SEC,
                .bursts = true};
    digest d;
    sn_engine_stats st;
    replay(&r, &d, &st);
    ck_assert_uint_gt(st.expired, 50);
    check("expiry", &d, &st, 0x53b5a3326168bca0ull, 475);
}
END_TEST

/* sn_engine_observe_batch gives exactly what sn_engine_observe gives event by event: with few
 * pairs (no pipeline) and with more than the 1 024 pairs from which it looks ahead, in batches of
 * 512, of 7 and of 1, refused events included; with each event's pair drawn anew, and in runs of
 * 6 events of one pair (whose key the batch finds once), refusals inside the runs. */
START_TEST(batches_give_the_same_results)
{
    const unsigned pairs[] = {48, 3000, 48, 3000};
    const unsigned runs[] = {0, 0, 6, 6};
    const unsigned batches[] = {512, 7, 1};
    for (int pi = 0; pi < 4; pi++) {
        regime r = {.pairs = pairs[pi],
                    .events = 60000,
                    .step = 5 * SEC / 1000,
                    .refusals = true,
                    .run = runs[pi]};
        digest want, got;
        sn_engine_stats wst, gst;
        replay(&r, &want, &wst);
        ck_assert_uint_gt(wst.refused, 50);
        if (pairs[pi] > 2048)
            ck_assert_uint_ge(wst.pairs, 2048); /* the look-ahead path ran */
        for (int bi = 0; bi < 3; bi++) {
            r.batch = batches[bi];
            replay(&r, &got, &gst);
            ck_assert_msg(got.h == want.h, "pairs %u batch %u: digest differs", r.pairs, r.batch);
            ck_assert_uint_eq(got.anomalies, want.anomalies);
            ck_assert_uint_eq(gst.events, wst.events);
            ck_assert_uint_eq(gst.pairs, wst.pairs);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("engine_replay");
    TCase *tc = tcase_create("replay");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, steady_keys_give_the_recorded_results);
    tcase_add_test(tc, evicting_budget_gives_the_recorded_results);
    tcase_add_test(tc, idle_expiry_gives_the_recorded_results);
    tcase_add_test(tc, batches_give_the_same_results);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
