/* Unit tests for shared/metrics.c: the registry, its bounds, atomic updates and the text
 * exposition, which is parsed back line by line. */
#include "metrics.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static time_t g_main_started; /* when main() began */

/* ---------------------------------------------------------------- an exposition parser */

#define P_LABELS 5

/* One sample line: name{labels} value, label values unescaped. */
typedef struct sample {
    char name[200];
    unsigned nlabels;
    char lname[P_LABELS][64];
    char lval[P_LABELS][SN_METRICS_LABEL_VALUE_MAX];
    char value[64];
} sample;

/* Parses one sample line strictly per the 0.0.4 text format. Returns false on any deviation. */
static bool parse_sample(const char *line, sample *s)
{
    memset(s, 0, sizeof *s);
    size_t i = 0, n = 0;
    while (line[i] != '{' && line[i] != ' ' && line[i] != '\0' && n + 1 < sizeof s->name)
        s->name[n++] = line[i++];
    if (!sn_metrics_name_valid(s->name))
        return false;
    if (line[i] == '{') {
        i++;
        while (line[i] != '}') {
            if (s->nlabels == P_LABELS)
                return false;
            char *ln = s->lname[s->nlabels];
            n = 0;
            while (line[i] != '=' && line[i] != '\0' && n + 1 < 64)
                ln[n++] = line[i++];
            if (line[i] != '=' || line[i + 1] != '"' || !sn_metrics_label_name_valid(ln))
                return false;
            i += 2;
            char *lv = s->lval[s->nlabels];
            n = 0;
            while (line[i] != '"') {
                char c = line[i++];
                if (c == '\0' || c == '\n')
                    return false;
                if (c == '\\') {
                    c = line[i++];
                    if (c == 'n')
                        c = '\n';
                    else if (c != '\\' && c != '"')
                        return false;
                }
                if (n + 1 >= SN_METRICS_LABEL_VALUE_MAX)
                    return false;
                lv[n++] = c;
            }
            i++;
            s->nlabels++;
            if (line[i] == ',')
                i++;
            else if (line[i] != '}')
                return false;
        }
        i++;
    }
    if (line[i] != ' ')
        return false;
    i++;
    n = 0;
    while (line[i] != '\0' && n + 1 < sizeof s->value)
        s->value[n++] = line[i++];
    if (n == 0 || strchr(s->value, ' ') != NULL)
        return false;
    if (strcmp(s->value, "NaN") != 0 && strcmp(s->value, "+Inf") != 0 &&
        strcmp(s->value, "-Inf") != 0) {
        char *end;
        strtod(s->value, &end);
        if (*end != '\0')
            return false;
    }
    return true;
}

/* Splits an exposition into lines (a malloc'd copy, modified) and checks every line is a HELP,
 * a TYPE or a sample. Returns the line count; lines[] point into *copy. */
static size_t split_lines(const char *text, char **copy, char **lines, size_t max)
{
    *copy = strdup(text);
    ck_assert_ptr_nonnull(*copy);
    size_t len = strlen(*copy);
    ck_assert_msg(len == 0 || (*copy)[len - 1] == '\n', "exposition must end in a newline");
    size_t n = 0;
    char *p = *copy;
    while (*p != '\0') {
        char *nl = strchr(p, '\n');
        ck_assert_ptr_nonnull(nl);
        *nl = '\0';
        ck_assert_uint_lt(n, max);
        lines[n++] = p;
        sample s;
        if (strncmp(p, "# HELP ", 7) == 0 || strncmp(p, "# TYPE ", 7) == 0)
            ck_assert_msg(strchr(p + 7, ' ') != NULL, "bad comment line '%s'", p);
        else
            ck_assert_msg(parse_sample(p, &s), "bad sample line '%s'", p);
        p = nl + 1;
    }
    return n;
}

/* The value of the one sample named `name` whose labels are exactly the pairs in `labels`
 * ("k=v" strings, NULL-terminated; NULL for none). Fails the test when there is not exactly one. */
static double find_value(const char *text, const char *name, const char *const *labels)
{
    char *copy;
    static char *lines[20000];
    size_t n = split_lines(text, &copy, lines, 20000);
    int found = 0;
    double v = NAN;
    for (size_t i = 0; i < n; i++) {
        sample s;
        if (lines[i][0] == '#' || !parse_sample(lines[i], &s) || strcmp(s.name, name) != 0)
            continue;
        unsigned want = 0;
        bool match = true;
        for (; labels != NULL && labels[want] != NULL; want++) {
            const char *eq = strchr(labels[want], '=');
            size_t kl = (size_t)(eq - labels[want]);
            if (want >= s.nlabels || strlen(s.lname[want]) != kl ||
                memcmp(s.lname[want], labels[want], kl) != 0 || strcmp(s.lval[want], eq + 1) != 0)
                match = false;
        }
        if (match && want == s.nlabels) {
            found++;
            v = strtod(s.value, NULL);
        }
    }
    free(copy);
    ck_assert_msg(found == 1, "%s: %d matching samples", name, found);
    return v;
}

/* Renders with sn_metrics_render_alloc, which the tests free. */
static char *render(sn_metrics *m)
{
    char *text;
    size_t len;
    ck_assert_int_eq(sn_metrics_render_alloc(m, &text, &len), 0);
    ck_assert_uint_eq(strlen(text), len);
    return text;
}

static sn_metrics *new_registry(unsigned max_series)
{
    char err[256];
    sn_metrics *m;
    sn_metrics_limits lim = {.max_series = max_series};
    ck_assert_msg(sn_metrics_create(&lim, &m, err, sizeof err) == 0, "%s", err);
    return m;
}

/* ---------------------------------------------------------------- tests */

START_TEST(exposition_is_exact)
{
    sn_metrics *m = new_registry(0);
    char err[256];
    sn_metrics_family *req, *spool, *lat;
    ck_assert_int_eq(sn_metrics_register(m,
                                         &(sn_metrics_desc){
                                             .type = SN_METRICS_COUNTER,
                                             .name = "sentinel_test_requests_total",
                                             .help = "Requests by outcome.",
                                             .labels = {"signal", "outcome"},
                                         },
                                         &req, err, sizeof err),
                     0);
    ck_assert_int_eq(sn_metrics_register(m,
                                         &(sn_metrics_desc){
                                             .type = SN_METRICS_GAUGE,
                                             .name = "sentinel_test_spool_bytes",
                                             .help = "Bytes in the spool.",
                                         },
                                         &spool, err, sizeof err),
                     0);
    static const double bounds[] = {0.005, 0.1, 2.5};
    ck_assert_int_eq(sn_metrics_register(m,
                                         &(sn_metrics_desc){
                                             .type = SN_METRICS_HISTOGRAM,
                                             .name = "sentinel_test_duration_seconds",
                                             .help = "Duration.",
                                             .labels = {"detector"},
                                             .buckets = bounds,
                                             .bucket_count = 3,
                                         },
                                         &lat, err, sizeof err),
                     0);
    sn_counter *ok = sn_metrics_counter(req, (const char *[]){"traces", "ok"});
    sn_counter *bad = sn_metrics_counter(req, (const char *[]){"logs", "invalid"});
    ck_assert_ptr_nonnull(ok);
    ck_assert_ptr_nonnull(bad);
    ck_assert_ptr_eq(sn_metrics_counter(req, (const char *[]){"traces", "ok"}), ok);
    sn_counter_add(ok, 41);
    sn_counter_inc(ok);
    sn_counter_inc(bad);
    sn_gauge_set(sn_metrics_gauge(spool, NULL), 1048576);
    sn_histogram *z = sn_metrics_histogram(lat, (const char *[]){"zscore"});
    sn_histogram_observe(z, 0.001);
    sn_histogram_observe(z, 0.25);
    sn_histogram_observe(z, 3);

    static const char want[] =
        "# HELP sentinel_metrics_series_dropped_total Label sets refused because their metric "
        "already had its maximum number of series (or memory ran out).\n"
        "# TYPE sentinel_metrics_series_dropped_total counter\n"
        "sentinel_metrics_series_dropped_total 0\n"
        "# HELP sentinel_test_requests_total Requests by outcome.\n"
        "# TYPE sentinel_test_requests_total counter\n"
        "sentinel_test_requests_total{signal=\"traces\",outcome=\"ok\"} 42\n"
        "sentinel_test_requests_total{signal=\"logs\",outcome=\"invalid\"} 1\n"
        "# HELP sentinel_test_spool_bytes Bytes in the spool.\n"
        "# TYPE sentinel_test_spool_bytes gauge\n"
        "sentinel_test_spool_bytes 1048576\n"
        "# HELP sentinel_test_duration_seconds Duration.\n"
        "# TYPE sentinel_test_duration_seconds histogram\n"
        "sentinel_test_duration_seconds_bucket{detector=\"zscore\",le=\"0.005\"} 1\n"
        "sentinel_test_duration_seconds_bucket{detector=\"zscore\",le=\"0.1\"} 1\n"
        "sentinel_test_duration_seconds_bucket{detector=\"zscore\",le=\"2.5\"} 2\n"
        "sentinel_test_duration_seconds_bucket{detector=\"zscore\",le=\"+Inf\"} 3\n"
        "sentinel_test_duration_seconds_sum{detector=\"zscore\"} 3.251\n"
        "sentinel_test_duration_seconds_count{detector=\"zscore\"} 3\n";
    char *text = render(m);
    char *copy;
    char *lines[64];
    size_t n = split_lines(text, &copy, lines, 64);
    ck_assert_uint_eq(n, 18);
    /* Line by line first, so a failure names the line. */
    const char *w = want;
    for (size_t i = 0; i < n; i++) {
        const char *nl = strchr(w, '\n');
        ck_assert_msg(strlen(lines[i]) == (size_t)(nl - w) && memcmp(lines[i], w, nl - w) == 0,
                      "line %zu: got '%s', want '%.*s'", i, lines[i], (int)(nl - w), w);
        w = nl + 1;
    }
    ck_assert_str_eq(text, want);
    free(copy);

    /* The fixed-buffer form gives the same bytes, and refuses a buffer one byte short. */
    size_t len = strlen(want);
    char *buf = malloc(len + 1);
    ck_assert_int_eq(sn_metrics_render(m, buf, len + 1), (ssize_t)len);
    ck_assert_str_eq(buf, want);
    ck_assert_int_eq(sn_metrics_render(m, buf, len), -ENOSPC);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(sn_metrics_render(m, buf, 0), -EINVAL);
    free(buf);
    free(text);
    sn_metrics_destroy(m);
}
END_TEST

START_TEST(histogram_buckets_are_cumulative_and_le_inclusive)
{
    sn_metrics *m = new_registry(0);
    char err[256];
    sn_metrics_family *f;
    static const double bounds[] = {0.1, 1, 10, INFINITY}; /* the final +Inf is implied */
    ck_assert_int_eq(sn_metrics_register(m,
                                         &(sn_metrics_desc){.type = SN_METRICS_HISTOGRAM,
                                                            .name = "h_seconds",
                                                            .help = "h",
                                                            .buckets = bounds,
                                                            .bucket_count = 4},
                                         &f, err, sizeof err),
                     0);
    sn_histogram *h = sn_metrics_histogram(f, NULL);
    const double obs[] = {0.05, 0.1, 0.5, 1, 5, 50, -3};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        sn_histogram_observe(h, obs[i]);
    sn_histogram_observe(h, NAN); /* ignored */
    sn_histogram_observe(h, INFINITY);
    ck_assert_uint_eq(sn_histogram_count(h), 8);
    char *text = render(m);
    /* -3, 0.05 and 0.1 (inclusive) <= 0.1; 0.5 and 1 <= 1; 5 <= 10; 50 and +Inf above. */
    ck_assert_double_eq(find_value(text, "h_seconds_bucket", (const char *[]){"le=0.1", NULL}), 3);
    ck_assert_double_eq(find_value(text, "h_seconds_bucket", (const char *[]){"le=1", NULL}), 5);
    ck_assert_double_eq(find_value(text, "h_seconds_bucket", (const char *[]){"le=10", NULL}), 6);
    ck_assert_double_eq(find_value(text, "h_seconds_bucket", (const char *[]){"le=+Inf", NULL}), 8);
    ck_assert_double_eq(find_value(text, "h_seconds_count", NULL), 8);
    ck_assert(isinf(find_value(text, "h_seconds_sum", NULL)));
    /* Exactly one +Inf bucket although the bounds listed one. */
    ck_assert_ptr_null(strstr(strstr(text, "le=\"+Inf\"") + 1, "le=\"+Inf\""));
    free(text);
    sn_metrics_destroy(m);
}
END_TEST

START_TEST(values_are_formatted_for_prometheus)
{
    sn_metrics *m = new_registry(0);
    char err[256];
    sn_metrics_family *g, *c;
    ck_assert_int_eq(
        sn_metrics_register(
            m,
            &(sn_metrics_desc){.type = SN_METRICS_GAUGE, .name = "g", .help = "g", .labels = {"k"}},
            &g, err, sizeof err),
        0);
    ck_assert_int_eq(
        sn_metrics_register(
            m,
            &(sn_metrics_desc){.type = SN_METRICS_COUNTER, .name = "cost_usd_total", .help = "c"},
            &c, err, sizeof err),
        0);
    const struct {
        const char *key;
        double v;
        const char *text;
    } cases[] = {
        {"a", 0.1, "0.1"},
        {"b", -2.5, "-2.5"},
        {"c", 1e-9, "1e-09"},
        {"d", NAN, "NaN"},
        {"e", INFINITY, "+Inf"},
        {"f", -INFINITY, "-Inf"},
        {"g", 1.0 / 3, "0.3333333333333333"},
        {"h", 123456789, "123456789"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        sn_gauge_set(sn_metrics_gauge(g, (const char *[]){cases[i].key}), cases[i].v);
    sn_gauge *a = sn_metrics_gauge(g, (const char *[]){"a"});
    sn_gauge_add(a, 0.2);
    sn_gauge_add(a, -0.3);
    sn_counter *cost = sn_metrics_counter(c, NULL);
    sn_counter_add(cost, 2);
    sn_counter_add_double(cost, 0.25);
    sn_counter_add_double(cost, -1);       /* ignored */
    sn_counter_add_double(cost, NAN);      /* ignored */
    sn_counter_add_double(cost, INFINITY); /* ignored */
    ck_assert_double_eq(sn_counter_value(cost), 2.25);
    char *text = render(m);
    char line[128];
    for (size_t i = 1; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(line, sizeof line, "\ng{k=\"%s\"} %s\n", cases[i].key, cases[i].text);
        ck_assert_msg(strstr(text, line) != NULL, "missing %s", line);
    }
    /* 0.1 + 0.2 - 0.3 in doubles, printed so that it reads back exactly. */
    double got = find_value(text, "g", (const char *[]){"k=a", NULL});
    ck_assert(got == 0.1 + 0.2 - 0.3);
    ck_assert_ptr_nonnull(strstr(text, "\ncost_usd_total 2.25\n"));
    free(text);
    sn_metrics_destroy(m);
}
END_TEST

START_TEST(label_values_and_help_are_escaped)
{
    sn_metrics *m = new_registry(0);
    char err[256];
    sn_metrics_family *f;
    ck_assert_int_eq(
        sn_metrics_register(m,
                            &(sn_metrics_desc){.type = SN_METRICS_COUNTER,
                                               .name = "esc_total",
                                               .help = "back\\slash \"quoted\"\nsecond line",
                                               .labels = {"model", "other"}},
                            &f, err, sizeof err),
        0);
    const char *tricky = "a\\b\"c\nd}e,f=g";
    sn_counter_add(sn_metrics_counter(f, (const char *[]){tricky, ""}), 7);
    /* Invalid UTF-8 becomes U+FFFD; valid multi-byte text passes. */
    sn_counter_add(sn_metrics_counter(f, (const char *[]){"x\xff\xc3(y", "gpt-4o \xe2\x82\xac"}),
                   1);
    /* NULL is the empty value, the same series as "". */
    sn_counter_inc(sn_metrics_counter(f, (const char *[]){tricky, NULL}));
    char *text = render(m);
    ck_assert_ptr_nonnull(
        strstr(text, "# HELP esc_total back\\\\slash \"quoted\"\\nsecond line\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "\nesc_total{model=\"a\\\\b\\\"c\\nd}e,f=g\",other=\"\"} 8\n"));
    ck_assert_double_eq(
        find_value(text, "esc_total", (const char *[]){"model=a\\b\"c\nd}e,f=g", "other=", NULL}),
        8);
    ck_assert_double_eq(find_value(text, "esc_total",
                                   (const char *[]){"model=x\xef\xbf\xbd\xef\xbf\xbd(y",
                                                    "other=gpt-4o \xe2\x82\xac", NULL}),
                        1);
    ck_assert_uint_eq(sn_metrics_family_series(f), 2);
    free(text);
    sn_metrics_destroy(m);
}
END_TEST

START_TEST(long_label_values_are_cut_at_a_character)
{
    sn_metrics *m = new_registry(0);
    char err[256];
    sn_metrics_family *f;
    ck_assert_int_eq(
        sn_metrics_register(
            m,
            &(sn_metrics_desc){.type = SN_METRICS_GAUGE, .name = "g", .help = "g", .labels = {"k"}},
            &f, err, sizeof err),
        0);
    /* 254 ASCII bytes then a 2-byte character: 256 bytes do not fit in 255, so the character
     * goes whole and the value stays 254 bytes. */
    char v[1000];
    memset(v, 'a', 254);
    memcpy(v + 254, "\xc3\xa9", 3);
    sn_gauge *g1 = sn_metrics_gauge(f, (const char *[]){v});
    v[254] = 'b';
    memset(v + 255, 'c', 700);
    v[955] = '\0';
    sn_gauge *g2 = sn_metrics_gauge(f, (const char *[]){v}); /* cut to 255 bytes */
    v[254] = '\0';
    ck_assert_ptr_eq(sn_metrics_gauge(f, (const char *[]){v}), g1);
    ck_assert_ptr_ne(g1, g2);
    sn_gauge_set(g1, 1);
    sn_gauge_set(g2, 2);
    char *text = render(m);
    char want[1100];
    snprintf(want, sizeof want, "k=%s", v);
    ck_assert_double_eq(find_value(text, "g", (const char *[]){want, NULL}), 1);
    v[254] = 'b';
    v[255] = '\0';
    snprintf(want, sizeof want, "k=%s", v);
    ck_assert_double_eq(find_value(text, "g", (const char *[]){want, NULL}), 2);
    free(text);
    sn_metrics_destroy(m);
}
END_TEST

START_TEST(series_per_family_are_capped_and_refusals_counted)
{
    sn_metrics *m = new_registry(3);
    char err[256];
    sn_metrics_family *f, *big;
    ck_assert_int_eq(sn_metrics_register(m,
                                         &(sn_metrics_desc){.type = SN_METRICS_COUNTER,
                                                            .name = "capped_total",
                                                            .help = "c",
                                                            .labels = {"model"}},
                                         &f, err, sizeof err),
                     0);
    ck_assert_int_eq(sn_metrics_register(m,
                                         &(sn_metrics_desc){.type = SN_METRICS_COUNTER,
                                                            .name = "big_total",
                                                            .help = "c",
                                                            .labels = {"model"},
                                                            .max_series = 5},
                                         &big, err, sizeof err),
                     0);
    const char *models[] = {"m0", "m1", "m2", "m3", "m4", "m5", "m6"};
    sn_counter *c[7];
    for (int i = 0; i < 7; i++) {
        c[i] = sn_metrics_counter(f, (const char *[]){models[i]});
        sn_counter_inc(c[i]); /* NULL handles are ignored */
        sn_counter_inc(sn_metrics_counter(big, (const char *[]){models[i]}));
    }
    ck_assert_ptr_nonnull(c[2]);
    ck_assert_ptr_null(c[3]);
    ck_assert_ptr_null(c[6]);
    /* Existing series are still found when the family is full. */
    ck_assert_ptr_eq(sn_metrics_counter(f, (const char *[]){"m1"}), c[1]);
    ck_assert_uint_eq(sn_metrics_family_series(f), 3);
    ck_assert_uint_eq(sn_metrics_family_dropped(f), 4);
    ck_assert_uint_eq(sn_metrics_family_series(big), 5);
    ck_assert_uint_eq(sn_metrics_family_dropped(big), 2);
    char *text = render(m);
    ck_assert_double_eq(find_value(text, SN_METRICS_DROPPED_NAME, NULL), 6);
    ck_assert_double_eq(find_value(text, "capped_total", (const char *[]){"model=m2", NULL}), 1);
    size_t capped = 0;
    for (const char *p = text; (p = strstr(p, "\ncapped_total{")) != NULL; p++)
        capped++;
    ck_assert_uint_eq(capped, 3);
    free(text);
    /* A handle of the wrong type is refused without counting as a drop. */
    ck_assert_ptr_null(sn_metrics_gauge(f, (const char *[]){"m0"}));
    ck_assert_ptr_null(sn_metrics_histogram(f, (const char *[]){"m0"}));
    ck_assert_ptr_null(sn_metrics_counter(f, NULL));
    ck_assert_ptr_null(sn_metrics_counter(NULL, NULL));
    ck_assert_uint_eq(sn_metrics_family_dropped(f), 4);
    sn_metrics_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------- threads */

#define THREADS    8
#define PER_THREAD 200000

typedef struct worker {
    sn_metrics_family *counters;
    sn_metrics_family *hist;
    sn_gauge *gauge;
    sn_counter *shared;
    int id;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    /* Each thread looks the same series up itself, plus one of its own. */
    sn_counter *mine =
        sn_metrics_counter(w->counters, (const char *[]){w->id % 2 ? "odd" : "even"});
    sn_histogram *h = sn_metrics_histogram(w->hist, NULL);
    for (int i = 0; i < PER_THREAD; i++) {
        sn_counter_inc(w->shared);
        sn_counter_inc(mine);
        sn_gauge_add(w->gauge, 1.0);
        sn_gauge_add(w->gauge, -0.5);
        sn_histogram_observe(h, (double)(i % 4)); /* 0, 1, 2, 3 */
    }
    return NULL;
}

typedef struct scraper {
    sn_metrics *m;
    _Atomic int stop;
    int renders;
} scraper;

static void *scrape(void *arg)
{
    scraper *s = arg;
    while (!atomic_load(&s->stop)) {
        char *text;
        size_t len;
        ck_assert_int_eq(sn_metrics_render_alloc(s->m, &text, &len), 0);
        free(text);
        s->renders++;
    }
    return NULL;
}

START_TEST(concurrent_updates_sum_exactly)
{
    sn_metrics *m = new_registry(0);
    char err[256];
    sn_metrics_family *cf, *gf, *hf;
    ck_assert_int_eq(sn_metrics_register(m,
                                         &(sn_metrics_desc){.type = SN_METRICS_COUNTER,
                                                            .name = "events_total",
                                                            .help = "e",
                                                            .labels = {"parity"}},
                                         &cf, err, sizeof err),
                     0);
    ck_assert_int_eq(sn_metrics_register(
                         m,
                         &(sn_metrics_desc){.type = SN_METRICS_GAUGE, .name = "level", .help = "l"},
                         &gf, err, sizeof err),
                     0);
    static const double bounds[] = {0.5, 1.5, 2.5};
    ck_assert_int_eq(sn_metrics_register(m,
                                         &(sn_metrics_desc){.type = SN_METRICS_HISTOGRAM,
                                                            .name = "obs",
                                                            .help = "o",
                                                            .buckets = bounds,
                                                            .bucket_count = 3},
                                         &hf, err, sizeof err),
                     0);
    sn_counter *shared = sn_metrics_counter(cf, (const char *[]){"all"});
    scraper sc = {.m = m};
    pthread_t st;
    ck_assert_int_eq(pthread_create(&st, NULL, scrape, &sc), 0);
    pthread_t t[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.counters = cf,
                        .hist = hf,
                        .gauge = sn_metrics_gauge(gf, NULL),
                        .shared = shared,
                        .id = i};
        ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    atomic_store(&sc.stop, 1);
    pthread_join(st, NULL);
    ck_assert_int_gt(sc.renders, 0);

    const double total = (double)THREADS * PER_THREAD;
    char *text = render(m);
    ck_assert_double_eq(find_value(text, "events_total", (const char *[]){"parity=all", NULL}),
                        total);
    ck_assert_double_eq(find_value(text, "events_total", (const char *[]){"parity=odd", NULL}),
                        total / 2);
    ck_assert_double_eq(find_value(text, "events_total", (const char *[]){"parity=even", NULL}),
                        total / 2);
    ck_assert_double_eq(find_value(text, "level", NULL), total / 2);
    ck_assert_double_eq(find_value(text, "obs_count", NULL), total);
    ck_assert_double_eq(find_value(text, "obs_bucket", (const char *[]){"le=0.5", NULL}),
                        total / 4);
    ck_assert_double_eq(find_value(text, "obs_bucket", (const char *[]){"le=2.5", NULL}),
                        total * 3 / 4);
    /* 0 + 1 + 2 + 3 per four observations. */
    ck_assert_double_eq(find_value(text, "obs_sum", NULL), total / 4 * 6);
    ck_assert_uint_eq(sn_metrics_family_series(cf), 3);
    free(text);
    sn_metrics_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------- validation */

START_TEST(names_labels_and_buckets_are_validated)
{
    const char *good[] = {"a", "_x", "sentinel:rate5m", "A_b9:c", "process_open_fds"};
    const char *bad[] = {"", "9lives", "a-b", "a b", "é", "a.b", NULL};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ck_assert_msg(sn_metrics_name_valid(good[i]), "%s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert(!sn_metrics_name_valid(bad[i]));
    char longname[SN_METRICS_NAME_MAX + 1];
    memset(longname, 'a', sizeof longname - 1);
    longname[SN_METRICS_NAME_MAX - 1] = '\0'; /* 127 bytes: fits */
    ck_assert(sn_metrics_name_valid(longname));
    longname[SN_METRICS_NAME_MAX - 1] = 'a';
    longname[SN_METRICS_NAME_MAX] = '\0';
    ck_assert(!sn_metrics_name_valid(longname));
    ck_assert(sn_metrics_label_name_valid("_private"));
    ck_assert(!sn_metrics_label_name_valid("__name__"));
    ck_assert(!sn_metrics_label_name_valid("a:b"));

    sn_metrics *m = new_registry(0);
    char err[256];
    sn_metrics_family *f = (sn_metrics_family *)1;
    static const double ok_b[] = {1, 2};
    static const double dup_b[] = {1, 1};
    static const double down_b[] = {2, 1};
    static const double nan_b[] = {1, NAN};
    static const double ninf_b[] = {-INFINITY, 1};
    static const double many_b[SN_METRICS_MAX_BUCKETS + 1] = {0};
    const struct {
        sn_metrics_desc d;
        const char *msg; /* a word the message must hold */
    } cases[] = {
        {{.type = SN_METRICS_COUNTER, .name = "requests", .help = "h"}, "_total"},
        {{.type = SN_METRICS_GAUGE, .name = "queue_total", .help = "h"}, "_total"},
        {{.type = SN_METRICS_HISTOGRAM,
          .name = "x_total",
          .help = "h",
          .buckets = ok_b,
          .bucket_count = 2},
         "_total"},
        {{.type = SN_METRICS_GAUGE, .name = "bad-name", .help = "h"}, "bad-name"},
        {{.type = SN_METRICS_GAUGE, .name = NULL, .help = "h"}, "(null)"},
        {{.type = (sn_metrics_type)7, .name = "g", .help = "h"}, "type"},
        {{.type = SN_METRICS_GAUGE, .name = "g", .help = ""}, "HELP"},
        {{.type = SN_METRICS_GAUGE, .name = "g", .help = NULL}, "HELP"},
        {{.type = SN_METRICS_GAUGE, .name = "g", .help = "bad \xff utf-8"}, "HELP"},
        {{.type = SN_METRICS_GAUGE, .name = "g", .help = "h", .labels = {"a", "a"}}, "twice"},
        {{.type = SN_METRICS_GAUGE, .name = "g", .help = "h", .labels = {"__a"}}, "__a"},
        {{.type = SN_METRICS_GAUGE, .name = "g", .help = "h", .labels = {"a-b"}}, "a-b"},
        {{.type = SN_METRICS_GAUGE, .name = "g", .help = "h", .labels = {"a", NULL, "b"}},
         "leading"},
        {{.type = SN_METRICS_HISTOGRAM,
          .name = "h",
          .help = "h",
          .labels = {"le"},
          .buckets = ok_b,
          .bucket_count = 2},
         "'le'"},
        {{.type = SN_METRICS_HISTOGRAM, .name = "h", .help = "h"}, "bucket"},
        {{.type = SN_METRICS_HISTOGRAM,
          .name = "h",
          .help = "h",
          .buckets = dup_b,
          .bucket_count = 2},
         "increasing"},
        {{.type = SN_METRICS_HISTOGRAM,
          .name = "h",
          .help = "h",
          .buckets = down_b,
          .bucket_count = 2},
         "increasing"},
        {{.type = SN_METRICS_HISTOGRAM,
          .name = "h",
          .help = "h",
          .buckets = nan_b,
          .bucket_count = 2},
         "finite"},
        {{.type = SN_METRICS_HISTOGRAM,
          .name = "h",
          .help = "h",
          .buckets = ninf_b,
          .bucket_count = 2},
         "finite"},
        {{.type = SN_METRICS_HISTOGRAM,
          .name = "h",
          .help = "h",
          .buckets = many_b,
          .bucket_count = SN_METRICS_MAX_BUCKETS + 1},
         "bucket"},
        {{.type = SN_METRICS_GAUGE, .name = "g", .help = "h", .buckets = ok_b, .bucket_count = 2},
         "only histograms"},
        {{.type = SN_METRICS_GAUGE,
          .name = "g",
          .help = "h",
          .max_series = SN_METRICS_SERIES_LIMIT + 1},
         "max_series"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        ck_assert_int_eq(sn_metrics_register(m, &cases[i].d, &f, err, sizeof err), -EINVAL);
        ck_assert_ptr_null(f);
        ck_assert_msg(strstr(err, cases[i].msg) != NULL, "case %zu: '%s' lacks '%s'", i, err,
                      cases[i].msg);
    }
    ck_assert_int_eq(sn_metrics_register(m, NULL, &f, err, sizeof err), -EINVAL);
    ck_assert_int_eq(sn_metrics_register(NULL, &cases[0].d, &f, err, sizeof err), -EINVAL);

    /* A HELP of SN_METRICS_HELP_MAX - 1 bytes is the longest accepted. */
    char help[SN_METRICS_HELP_MAX + 1];
    memset(help, 'h', sizeof help - 1);
    help[SN_METRICS_HELP_MAX] = '\0';
    sn_metrics_desc d = {.type = SN_METRICS_GAUGE, .name = "long_help", .help = help};
    ck_assert_int_eq(sn_metrics_register(m, &d, &f, err, sizeof err), -EINVAL);
    help[SN_METRICS_HELP_MAX - 1] = '\0';
    ck_assert_int_eq(sn_metrics_register(m, &d, &f, err, sizeof err), 0);

    /* Nothing invalid was registered: the exposition holds the built-in family and long_help. */
    char *text = render(m);
    char *copy;
    char *lines[16];
    ck_assert_uint_eq(split_lines(text, &copy, lines, 16), 6);
    free(copy);
    free(text);
    sn_metrics_destroy(m);
}
END_TEST

START_TEST(clashing_names_and_family_limit)
{
    char err[256];
    sn_metrics *m;
    sn_metrics_limits lim = {.max_families = 4};
    ck_assert_int_eq(sn_metrics_create(&lim, &m, err, sizeof err), 0);
    sn_metrics_family *f;
    static const double b[] = {1};
    sn_metrics_desc hist = {.type = SN_METRICS_HISTOGRAM,
                            .name = "lat_seconds",
                            .help = "h",
                            .buckets = b,
                            .bucket_count = 1};
    ck_assert_int_eq(sn_metrics_register(m, &hist, &f, err, sizeof err), 0);
    const char *clash[] = {"lat_seconds", "lat_seconds_count", "lat_seconds_sum",
                           "lat_seconds_bucket"};
    for (size_t i = 0; i < 4; i++) {
        sn_metrics_desc g = {.type = SN_METRICS_GAUGE, .name = clash[i], .help = "g"};
        ck_assert_int_eq(sn_metrics_register(m, &g, &f, err, sizeof err), -EEXIST);
        ck_assert_ptr_nonnull(strstr(err, "lat_seconds"));
    }
    /* A histogram whose _count is an existing gauge. */
    sn_metrics_desc g = {.type = SN_METRICS_GAUGE, .name = "q_count", .help = "g"};
    ck_assert_int_eq(sn_metrics_register(m, &g, &f, err, sizeof err), 0);
    hist.name = "q";
    ck_assert_int_eq(sn_metrics_register(m, &hist, &f, err, sizeof err), -EEXIST);
    sn_metrics_desc dropped = {
        .type = SN_METRICS_COUNTER, .name = SN_METRICS_DROPPED_NAME, .help = "d"};
    ck_assert_int_eq(sn_metrics_register(m, &dropped, &f, err, sizeof err), -EEXIST);
    /* Families: the built-in one, lat_seconds, q_count, and room for one more. */
    g.name = "fourth";
    ck_assert_int_eq(sn_metrics_register(m, &g, &f, err, sizeof err), 0);
    g.name = "fifth";
    ck_assert_int_eq(sn_metrics_register(m, &g, &f, err, sizeof err), -ENOSPC);
    ck_assert_ptr_nonnull(strstr(err, "fifth"));
    ck_assert_int_eq(sn_metrics_register_process(m, err, sizeof err), -ENOSPC);
    sn_metrics_destroy(m);

    /* Limits out of range. */
    const sn_metrics_limits bad[] = {
        {.max_families = SN_METRICS_FAMILIES_LIMIT + 1},
        {.max_series = SN_METRICS_SERIES_LIMIT + 1},
        {.max_render_bytes = SN_METRICS_RENDER_LIMIT + 1},
        {.max_render_bytes = 100},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = (sn_metrics *)1;
        ck_assert_int_eq(sn_metrics_create(&bad[i], &m, err, sizeof err), -EINVAL);
        ck_assert_ptr_null(m);
    }
    sn_metrics_destroy(NULL);
}
END_TEST

START_TEST(render_limit_is_enforced)
{
    char err[256];
    sn_metrics *m;
    sn_metrics_limits lim = {.max_render_bytes = 4096};
    ck_assert_int_eq(sn_metrics_create(&lim, &m, err, sizeof err), 0);
    sn_metrics_family *f;
    ck_assert_int_eq(
        sn_metrics_register(
            m,
            &(sn_metrics_desc){.type = SN_METRICS_GAUGE, .name = "g", .help = "g", .labels = {"k"}},
            &f, err, sizeof err),
        0);
    char key[32];
    int i = 0;
    char *text;
    size_t len;
    /* Grow until the exposition no longer fits in 4096 bytes. */
    for (;; i++) {
        snprintf(key, sizeof key, "key-%04d", i);
        sn_gauge_set(sn_metrics_gauge(f, (const char *[]){key}), i);
        int rc = sn_metrics_render_alloc(m, &text, &len);
        if (rc != 0) {
            ck_assert_int_eq(rc, -E2BIG);
            ck_assert_ptr_null(text);
            ck_assert_uint_eq(len, 0);
            break;
        }
        ck_assert_uint_le(len, 4096);
        free(text);
        ck_assert_int_lt(i, 1000);
    }
    ck_assert_int_gt(i, 50);
    /* A caller buffer larger than the limit does not lift it. */
    char *big = malloc(1 << 20);
    ck_assert_int_eq(sn_metrics_render(m, big, 1 << 20), -ENOSPC);
    free(big);
    sn_metrics_destroy(m);
}
END_TEST

START_TEST(process_metrics_come_from_proc)
{
    sn_metrics *m = new_registry(0);
    char err[256];
    ck_assert_msg(sn_metrics_register_process(m, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(sn_metrics_register_process(m, err, sizeof err), -EEXIST);
    char *text = render(m);
    double fds = find_value(text, "process_open_fds", NULL);
    FILE *extra[3];
    for (int i = 0; i < 3; i++)
        extra[i] = fopen("/dev/null", "r");
    char *text2 = render(m);
    ck_assert_double_eq(find_value(text2, "process_open_fds", NULL), fds + 3);
    for (int i = 0; i < 3; i++)
        fclose(extra[i]);
    ck_assert_double_ge(fds, 3); /* stdin, stdout, stderr at least */
    /* The same count found another way: every descriptor fcntl knows. */
    int open_fds = 0;
    for (int fd = 0; fd < 65536; fd++)
        if (fcntl(fd, F_GETFD) != -1)
            open_fds++;
    ck_assert_double_eq(fds, open_fds);
    /* Memory sizes agree with /proc/self/statm (pages), within what the test allocates. */
    unsigned long size_pages = 0, resident_pages = 0;
    FILE *statm = fopen("/proc/self/statm", "r");
    ck_assert_ptr_nonnull(statm);
    ck_assert_int_eq(fscanf(statm, "%lu %lu", &size_pages, &resident_pages), 2);
    fclose(statm);
    double page = (double)sysconf(_SC_PAGESIZE);
    double rss = find_value(text, "process_resident_memory_bytes", NULL);
    double vsize = find_value(text, "process_virtual_memory_bytes", NULL);
    ck_assert_double_gt(rss, 1 << 20);
    ck_assert_double_eq_tol(rss, resident_pages * page, 2 << 20);
    ck_assert_double_eq_tol(vsize, size_pages * page, 2 << 20);
    ck_assert_double_ge(vsize, rss);
    ck_assert_double_gt(find_value(text, "process_max_fds", NULL), fds);
    double cpu = find_value(text, "process_cpu_seconds_total", NULL);
    ck_assert_double_ge(cpu, 0);
    /* Burn user time (arithmetic) and system time (reading /dev/zero): the counter moves
     * forward and agrees with getrusage, which counts both, to within the clock tick. */
    volatile double x = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    do {
        for (int i = 0; i < 100000; i++)
            x += i;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    } while ((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9 < 0.1);
    static char zeros[1 << 20];
    FILE *zero = fopen("/dev/zero", "r");
    ck_assert_ptr_nonnull(zero);
    setvbuf(zero, NULL, _IONBF, 0);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double sys0 = ru0.ru_stime.tv_sec + ru0.ru_stime.tv_usec / 1e6;
    do {
        ck_assert_uint_eq(fread(zeros, 1, sizeof zeros, zero), sizeof zeros);
        getrusage(RUSAGE_SELF, &ru1);
    } while (ru1.ru_stime.tv_sec + ru1.ru_stime.tv_usec / 1e6 - sys0 < 0.1);
    fclose(zero);
    getrusage(RUSAGE_SELF, &ru0);
    char *text3 = render(m);
    getrusage(RUSAGE_SELF, &ru1);
    double cpu3 = find_value(text3, "process_cpu_seconds_total", NULL);
    double before = ru0.ru_utime.tv_sec + ru0.ru_utime.tv_usec / 1e6 + ru0.ru_stime.tv_sec +
                    ru0.ru_stime.tv_usec / 1e6;
    double after = ru1.ru_utime.tv_sec + ru1.ru_utime.tv_usec / 1e6 + ru1.ru_stime.tv_sec +
                   ru1.ru_stime.tv_usec / 1e6;
    ck_assert_double_gt(cpu3, cpu);
    ck_assert_msg(cpu3 >= before - 0.03 && cpu3 <= after + 0.03, "cpu %g, getrusage %g..%g", cpu3,
                  before, after);
    /* Started when this test process did (Check forks one per test; btime is whole seconds),
     * not in the future. */
    double start = find_value(text, "process_start_time_seconds", NULL);
    double now = (double)time(NULL);
    ck_assert_double_le(start, now + 1);
    ck_assert_double_ge(start, (double)g_main_started - 2);
    ck_assert_ptr_nonnull(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE process_open_fds gauge\n"));
    free(text);
    free(text2);
    free(text3);
    sn_metrics_destroy(m);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("registry");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, exposition_is_exact);
    tcase_add_test(tc, histogram_buckets_are_cumulative_and_le_inclusive);
    tcase_add_test(tc, values_are_formatted_for_prometheus);
    tcase_add_test(tc, label_values_and_help_are_escaped);
    tcase_add_test(tc, long_label_values_are_cut_at_a_character);
    tcase_add_test(tc, series_per_family_are_capped_and_refusals_counted);
    tcase_add_test(tc, concurrent_updates_sum_exactly);
    tcase_add_test(tc, names_labels_and_buckets_are_validated);
    tcase_add_test(tc, clashing_names_and_family_limit);
    tcase_add_test(tc, render_limit_is_enforced);
    tcase_add_test(tc, process_metrics_come_from_proc);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    g_main_started = time(NULL);
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
