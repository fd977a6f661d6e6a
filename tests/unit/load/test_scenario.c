/* Unit tests for tests/load/scenario.c: parsing, errors, determinism and incident effects. */
#include "scenario.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NS INT64_C(1000000000)

/* Two streams; incidents are spliced in with %s. Rate 20/s and 10/s for 600 s. */
#define BASE_FMT                                                                                   \
    "{\"name\": \"t\", \"seed\": %d, \"start_unix\": 1767225600, \"duration_s\": 600,"             \
    " \"services\": [{\"name\": \"svc\", \"models\": ["                                            \
    "  {\"model\": \"m1\", \"rate\": 20, \"latency_ms\": {\"median\": 1000, \"sigma\": 0.2},"      \
    "   \"ttft_ms\": {\"median\": 100, \"sigma\": 0.2},"                                           \
    "   \"input_tokens\": {\"median\": 500, \"sigma\": 0.2},"                                      \
    "   \"output_tokens\": {\"median\": 200, \"sigma\": 0.2},"                                     \
    "   \"price\": {\"input_per_mtok\": 1, \"output_per_mtok\": 2}, \"error_rate\": 0.01,"         \
    "   \"finish_reasons\": {\"stop\": 1}},"                                                       \
    "  {\"model\": \"m2\", \"rate\": 10, \"latency_ms\": {\"median\": 500},"                       \
    "   \"input_tokens\": {\"median\": 100}, \"output_tokens\": {\"median\": 50}}]}],"             \
    " \"incidents\": [%s]}"

static sn_scenario *make(int seed, const char *incidents, char *err, size_t errlen, int *rc)
{
    char text[4096];
    snprintf(text, sizeof text, BASE_FMT, seed, incidents);
    sn_scenario *s = NULL;
    *rc = sn_scenario_parse(&s, text, strlen(text), "t.json", err, errlen);
    return s;
}

static sn_scenario *make_ok(int seed, const char *incidents)
{
    char err[256] = "";
    int rc;
    sn_scenario *s = make(seed, incidents, err, sizeof err, &rc);
    ck_assert_msg(rc == 0, "parse failed: %s", err);
    return s;
}

START_TEST(parses_streams_and_labels)
{
    sn_scenario *s = make_ok(3, "{\"id\": \"a\", \"type\": \"latency_spike\", \"service\": "
                                "\"svc\", \"model\": \"m1\", \"start_s\": 100, \"duration_s\": "
                                "30, \"magnitude\": 4}");
    ck_assert_str_eq(sn_scenario_name(s), "t");
    ck_assert_int_eq(sn_scenario_stream_count(s), 2);
    ck_assert_int_eq(sn_scenario_start(s), INT64_C(1767225600) * NS);
    ck_assert_int_eq(sn_scenario_duration(s), 600 * NS);
    ck_assert_int_eq(sn_scenario_label_count(s), 1);
    const sn_scenario_label *l = sn_scenario_label_at(s, 0);
    ck_assert_str_eq(l->id, "a");
    ck_assert_int_eq(l->type, SN_ANOMALY_LATENCY_SPIKE);
    ck_assert_int_eq(l->start_ns, (INT64_C(1767225600) + 100) * NS);
    ck_assert_int_eq(l->end_ns, (INT64_C(1767225600) + 130) * NS);
    ck_assert_int_eq(l->shape, SN_SHAPE_STEP);
    ck_assert_ptr_null(sn_scenario_engine_settings(s));
    char line[512];
    int n = sn_scenario_label_json(s, l, 0, 1.0, line, sizeof line);
    ck_assert_int_gt(n, 0);
    ck_assert_ptr_nonnull(strstr(line, "\"start\":\"2026-01-01T00:01:40.000Z\""));
    ck_assert_ptr_nonnull(strstr(line, "\"type\":\"latency_spike\""));
    /* Compressed 10x and moved: 100 s after the start becomes 10 s after the new start. */
    n = sn_scenario_label_json(s, l, 3600 * NS, 10.0, line, sizeof line);
    ck_assert_int_gt(n, 0);
    ck_assert_ptr_nonnull(strstr(line, "\"start\":\"2026-01-01T01:00:10.000Z\""));
    ck_assert_int_eq(sn_scenario_label_json(s, l, 0, 1.0, line, 20), -ENOSPC);
    sn_scenario_destroy(s);
}
END_TEST

/* Runs a scenario and returns per-stream means of latency over events with/without a label. */
typedef struct stats {
    uint64_t n[2];     /* events outside / inside an incident */
    double latency[2]; /* sum of ln latency */
    double cost_ratio[2];
    uint64_t errors[2];
    uint64_t length[2]; /* finish reason "length" */
    int64_t last;
    int64_t first_in, last_in;
    uint64_t total;
} stats;

static void run(const sn_scenario *s, const char *model, stats *st)
{
    memset(st, 0, sizeof *st);
    sn_scenario_gen *g = NULL;
    ck_assert_int_eq(sn_scenario_gen_create(&g, s), 0);
    sn_event ev;
    uint64_t active;
    st->first_in = INT64_MAX;
    while (sn_scenario_next(g, &ev, &active)) {
        ck_assert_int_ge(ev.end_unix_nano, st->last); /* in time order */
        st->last = ev.end_unix_nano;
        st->total++;
        if (strcmp(ev.model, model) != 0) {
            ck_assert_int_eq(active, 0); /* labels are per (service, model) */
            continue;
        }
        int in = active != 0;
        if (in) {
            if (ev.end_unix_nano < st->first_in)
                st->first_in = ev.end_unix_nano;
            st->last_in = ev.end_unix_nano;
        }
        st->n[in]++;
        st->latency[in] += log(ev.latency_ms);
        if (ev.is_error) {
            st->errors[in]++;
            continue;
        }
        st->cost_ratio[in] +=
            ev.cost_usd / ((double)ev.input_tokens * 1e-6 + (double)ev.output_tokens * 2e-6);
        if (strcmp(ev.finish_reason, "length") == 0)
            st->length[in]++;
    }
    ck_assert_uint_eq(sn_scenario_gen_events(g), st->total);
    sn_scenario_gen_destroy(g);
}

START_TEST(incidents_change_what_they_label)
{
    stats st;
    sn_scenario *s = make_ok(
        1, "{\"id\": \"a\", \"type\": \"latency_spike\", \"service\": \"svc\", \"model\": \"m1\","
           " \"start_s\": 300, \"duration_s\": 60, \"magnitude\": 4}");
    run(s, "m1", &st);
    /* About 20/s x 600 s on m1 and 10/s on m2 (Poisson: wide bounds). */
    ck_assert_uint_gt(st.total, 15000);
    ck_assert_uint_lt(st.total, 21000);
    ck_assert_uint_gt(st.n[1], 1000);
    ck_assert_int_ge(st.first_in, sn_scenario_label_at(s, 0)->start_ns);
    ck_assert_int_lt(st.last_in, sn_scenario_label_at(s, 0)->end_ns);
    double diff = st.latency[1] / (double)st.n[1] - st.latency[0] / (double)st.n[0];
    ck_assert_double_eq_tol(diff, log(4.0), 0.05);
    sn_scenario_destroy(s);

    s = make_ok(1, "{\"id\": \"c\", \"type\": \"cost_spike\", \"service\": \"svc\", \"model\": "
                   "\"m1\", \"start_s\": 300, \"duration_s\": 60, \"magnitude\": 5}");
    run(s, "m1", &st);
    ck_assert_double_eq_tol(st.cost_ratio[0] / (double)(st.n[0] - st.errors[0]), 1.0, 1e-9);
    ck_assert_double_eq_tol(st.cost_ratio[1] / (double)(st.n[1] - st.errors[1]), 5.0, 1e-9);
    sn_scenario_destroy(s);

    /* "calls": only the first call of the window is affected (a one-call blow-up) */
    s = make_ok(1, "{\"id\": \"c1\", \"type\": \"cost_spike\", \"service\": \"svc\", \"model\": "
                   "\"m1\", \"start_s\": 300, \"duration_s\": 60, \"magnitude\": 5, \"calls\": 1}");
    run(s, "m1", &st);
    ck_assert_uint_eq(st.n[1], 1);
    ck_assert_double_eq_tol(st.cost_ratio[1], 5.0, 1e-9);
    sn_scenario_destroy(s);

    s = make_ok(1, "{\"id\": \"e\", \"type\": \"error_rate\", \"service\": \"svc\", \"model\": "
                   "\"m1\", \"start_s\": 300, \"duration_s\": 60, \"magnitude\": 0.5}");
    run(s, "m1", &st);
    ck_assert_double_eq_tol((double)st.errors[1] / (double)st.n[1], 0.5, 0.05);
    ck_assert_double_eq_tol((double)st.errors[0] / (double)st.n[0], 0.01, 0.005);
    sn_scenario_destroy(s);

    s = make_ok(1, "{\"id\": \"t\", \"type\": \"throughput_drop\", \"service\": \"svc\", "
                   "\"model\": \"m1\", \"start_s\": 300, \"duration_s\": 100, \"magnitude\": 0.1}");
    run(s, "m1", &st);
    ck_assert_double_eq_tol((double)st.n[1] / 100.0, 2.0, 0.6); /* 20/s x 0.1 */
    sn_scenario_destroy(s);

    s = make_ok(1, "{\"id\": \"f\", \"type\": \"finish_reason_drift\", \"service\": \"svc\", "
                   "\"model\": \"m1\", \"start_s\": 300, \"duration_s\": 60, "
                   "\"finish_reasons\": {\"stop\": 1, \"length\": 1}}");
    run(s, "m1", &st);
    ck_assert_uint_eq(st.length[0], 0);
    ck_assert_double_eq_tol((double)st.length[1] / (double)(st.n[1] - st.errors[1]), 0.5, 0.05);
    sn_scenario_destroy(s);
}
END_TEST

START_TEST(same_seed_same_events_other_seed_other_events)
{
    sn_scenario *a = make_ok(7, ""), *b = make_ok(7, ""), *c = make_ok(8, "");
    sn_scenario_gen *ga, *gb, *gc;
    ck_assert_int_eq(sn_scenario_gen_create(&ga, a), 0);
    ck_assert_int_eq(sn_scenario_gen_create(&gb, b), 0);
    ck_assert_int_eq(sn_scenario_gen_create(&gc, c), 0);
    sn_event x, y, z;
    uint64_t m;
    bool differs = false;
    for (int i = 0; i < 1000; i++) {
        ck_assert(sn_scenario_next(ga, &x, &m));
        ck_assert(sn_scenario_next(gb, &y, &m));
        ck_assert(sn_scenario_next(gc, &z, &m));
        ck_assert(memcmp(&x, &y, sizeof x) == 0);
        differs |= x.end_unix_nano != z.end_unix_nano;
    }
    ck_assert(differs);
    sn_scenario_gen_destroy(ga);
    sn_scenario_gen_destroy(gb);
    sn_scenario_gen_destroy(gc);
    sn_scenario_destroy(a);
    sn_scenario_destroy(b);
    sn_scenario_destroy(c);
}
END_TEST

START_TEST(bad_files_name_the_field)
{
    static const struct {
        const char *incidents;
        const char *want;
    } cases[] = {
        {"{\"id\": \"a\", \"type\": \"nope\", \"service\": \"svc\", \"model\": \"m1\", "
         "\"start_s\": 1, \"duration_s\": 1, \"magnitude\": 2}",
         "incidents[0]: type"},
        {"{\"id\": \"a\", \"type\": \"budget\", \"service\": \"svc\", \"model\": \"m1\", "
         "\"start_s\": 1, \"duration_s\": 1, \"magnitude\": 2}",
         "cannot be generated"},
        {"{\"id\": \"a\", \"type\": \"latency_spike\", \"service\": \"svc\", \"model\": \"mx\", "
         "\"start_s\": 1, \"duration_s\": 1, \"magnitude\": 2}",
         "no model \"mx\""},
        {"{\"id\": \"a\", \"type\": \"error_rate\", \"service\": \"svc\", \"model\": \"m1\", "
         "\"start_s\": 1, \"duration_s\": 1, \"magnitude\": 2}",
         "magnitude"},
        {"{\"id\": \"a\", \"type\": \"finish_reason_drift\", \"service\": \"svc\", \"model\": "
         "\"m1\", \"start_s\": 1, \"duration_s\": 1}",
         "finish_reasons"},
        {"{\"id\": \"a\", \"type\": \"latency_spike\", \"service\": \"svc\", \"model\": \"m1\", "
         "\"start_s\": 1, \"duration_s\": 1, \"magnitude\": 2}, {\"id\": \"a\", \"type\": "
         "\"latency_spike\", \"service\": \"svc\", \"model\": \"m1\", \"start_s\": 1, "
         "\"duration_s\": 1, \"magnitude\": 2}",
         "used twice"},
        {"{\"id\": \"a\", \"type\": \"latency_spike\", \"service\": \"svc\", \"model\": \"m1\", "
         "\"start_s\": 1, \"magnitude\": 2}",
         "duration_s: missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        int rc;
        sn_scenario *s = make(1, cases[i].incidents, err, sizeof err, &rc);
        ck_assert_int_eq(rc, -EINVAL);
        ck_assert_ptr_null(s);
        ck_assert_msg(strstr(err, cases[i].want) != NULL, "case %zu: \"%s\"", i, err);
        ck_assert_msg(strncmp(err, "t.json", 6) == 0, "case %zu: \"%s\"", i, err);
    }
    char err[256] = "";
    sn_scenario *s = NULL;
    ck_assert_int_eq(sn_scenario_parse(&s, "{", 1, "x.json", err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "x.json:1"));
    ck_assert_int_eq(sn_scenario_parse(&s, "{\"duration_s\": 10}", 18, "x.json", err, sizeof err),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "services"));
    ck_assert_ptr_null(s);
}
END_TEST

START_TEST(load_reads_files_and_refuses_missing_and_huge)
{
    char dir[] = "/tmp/sn_scenario_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/s.json", dir);
    sn_scenario *s = NULL;
    ck_assert_int_eq(sn_scenario_load(&s, path, err, sizeof err), -ENOENT);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, BASE_FMT, 1, "");
    fclose(f);
    ck_assert_int_eq(sn_scenario_load(&s, path, err, sizeof err), 0);
    ck_assert_int_eq(sn_scenario_stream_count(s), 2);
    sn_scenario_destroy(s);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < SN_SCENARIO_FILE_MAX / 8 + 1; i++)
        fputs("        ", f);
    fclose(f);
    s = NULL;
    ck_assert_int_eq(sn_scenario_load(&s, path, err, sizeof err), -EFBIG);
    ck_assert_ptr_null(s);
    unlink(path);
    rmdir(dir);
}
END_TEST

static Suite *scenario_suite(void)
{
    Suite *s = suite_create("scenario");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, parses_streams_and_labels);
    tcase_add_test(tc, incidents_change_what_they_label);
    tcase_add_test(tc, same_seed_same_events_other_seed_other_events);
    tcase_add_test(tc, bad_files_name_the_field);
    tcase_add_test(tc, load_reads_files_and_refuses_missing_and_huge);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(scenario_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
