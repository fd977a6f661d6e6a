/* Unit tests for shared/price.c: loading, lookup, effective dates, the cost rule, the cache. */
#include "price.h"

#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define NS_PER_DAY (86400 * INT64_C(1000000000))

/* Unix nanoseconds of a UTC date (for dates after 2000). */
static int64_t day(int y, int m, int d)
{
    /* Days from 1970-01-01, counted the slow way: fine for tests. */
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t days = 0;
    for (int yy = 1970; yy < y; yy++)
        days += ((yy % 4 == 0 && yy % 100 != 0) || yy % 400 == 0) ? 366 : 365;
    for (int mm = 1; mm < m; mm++)
        days += mdays[mm - 1] + (mm == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
    return (days + d - 1) * NS_PER_DAY;
}

static sn_price_table *parse(const char *yaml, char *err, size_t errsize)
{
    return sn_price_table_parse(yaml, strlen(yaml), "test.yaml", err, errsize);
}

/* Parses yaml that must load (the test fails otherwise) and empties the thread's cache. The
 * caller frees the table. */
static sn_price_table *parse_fresh(const char *yaml)
{
    char err[256];
    sn_price_table *t = parse(yaml, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    sn_price_cache_reset();
    return t;
}

/* Parses yaml that must fail; checks the message starts with "test.yaml:<line>:" and names
 * field. */
static void expect_error(const char *yaml, int line, const char *field)
{
    char err[256];
    sn_price_table *t = parse(yaml, err, sizeof err);
    ck_assert_msg(t == NULL, "accepted: %s", yaml);
    char want[64];
    snprintf(want, sizeof want, "test.yaml:%d: ", line);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "error \"%s\" does not start with \"%s\"",
                  err, want);
    if (field != NULL)
        ck_assert_msg(strstr(err, field) != NULL, "error \"%s\" does not name %s", err, field);
}

START_TEST(shipped_table_loads_and_covers_common_models)
{
    char err[256] = "";
    sn_price_table *t = sn_price_table_default(err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    ck_assert_str_eq(sn_price_table_version(t), "2025.11.1");
    ck_assert_uint_gt(sn_price_table_entries(t), 50);

    static const struct {
        const char *model;
        const char *provider;
        double input, output;
    } cases[] = {
        {"gpt-4o", "openai", 2.50, 10.00},
        {"gpt-4o-2024-08-06", "openai", 2.50, 10.00},
        {"gpt-4o-mini", "openai", 0.15, 0.60},
        {"gpt-4o-mini-2024-07-18", "azure.ai.openai", 0.15, 0.60},
        {"openai/gpt-4.1", "", 2.00, 8.00},
        {"gpt-4.1-mini", "openai", 0.40, 1.60},
        {"gpt-4.1-nano-2025-04-14", "openai", 0.10, 0.40},
        {"o1", "openai", 15.00, 60.00},
        {"o3", "openai", 2.00, 8.00},
        {"o3-mini", "openai", 1.10, 4.40},
        {"o4-mini-2025-04-16", "openai", 1.10, 4.40},
        {"gpt-5-mini", "openai", 0.25, 2.00},
        {"text-embedding-3-small", "openai", 0.02, 0.0},
        {"claude-3-5-sonnet-20241022", "anthropic", 3.00, 15.00},
        {"claude-3-5-sonnet-v2@20241022", "gcp.vertex_ai", 3.00, 15.00},
        {"us.anthropic.claude-3-7-sonnet-20250219-v1:0", "aws.bedrock", 3.00, 15.00},
        {"claude-sonnet-4-20250514", "anthropic", 3.00, 15.00},
        {"claude-sonnet-4-5", "anthropic", 3.00, 15.00},
        {"claude-opus-4-1-20250805", "anthropic", 15.00, 75.00},
        {"claude-opus-4-5-20251101", "anthropic", 5.00, 25.00},
        {"claude-3-5-haiku-latest", "anthropic", 0.80, 4.00},
        {"claude-haiku-4-5", "anthropic", 1.00, 5.00},
        {"claude-3-opus-20240229", "anthropic", 15.00, 75.00},
        {"gemini-1.5-pro-002", "gcp.vertex_ai", 1.25, 5.00},
        {"models/gemini-1.5-flash", "gcp.gemini", 0.075, 0.30},
        {"gemini-2.0-flash-001", "gcp.gemini", 0.10, 0.40},
        {"gemini-2.0-flash-lite", "gcp.gemini", 0.075, 0.30},
        {"gemini-2.5-pro", "gcp.gemini", 1.25, 10.00},
        {"gemini-2.5-flash", "gcp.gemini", 0.30, 2.50},
        {"gemini-2.5-flash-lite", "gcp.gemini", 0.10, 0.40},
        {"mistral-large-latest", "mistral_ai", 2.00, 6.00},
        {"mistral-small-2503", "mistral_ai", 0.10, 0.30},
        {"mistral.mistral-large-2407-v1:0", "aws.bedrock", 2.00, 6.00},
        {"meta.llama3-1-70b-instruct-v1:0", "aws.bedrock", 0.72, 0.72},
        {"us.meta.llama3-3-70b-instruct-v1:0", "aws.bedrock", 0.72, 0.72},
        {"meta.llama3-1-8b-instruct-v1:0", "aws.bedrock", 0.22, 0.22},
        {"deepseek-chat", "deepseek", 0.27, 1.10},
    };
    int64_t now = day(2025, 12, 1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sn_price p;
        ck_assert_msg(sn_price_lookup(t, cases[i].model, cases[i].provider, now, &p),
                      "no price for %s", cases[i].model);
        ck_assert_msg(fabs(p.input - cases[i].input) < 1e-9 &&
                          fabs(p.output - cases[i].output) < 1e-9,
                      "%s: got %g/%g, want %g/%g", cases[i].model, p.input, p.output,
                      cases[i].input, cases[i].output);
    }
    /* Llama entries are restricted to Bedrock; unknown names stay unknown. */
    sn_price p;
    ck_assert(!sn_price_lookup(t, "meta.llama3-1-70b-instruct-v1:0", "openai", now, &p));
    ck_assert(!sn_price_lookup(t, "gpt-4o-mini-turbo-ultra", "openai", now, &p));
    ck_assert(!sn_price_lookup(t, "my-finetune", NULL, now, &p));
    sn_price_table_destroy(t);
}
END_TEST

START_TEST(shipped_file_on_disk_matches_the_built_in_copy)
{
    char err[256] = "";
    sn_price_table *file =
        sn_price_table_load(SN_SOURCE_DIR "/shared/data/prices.yaml", err, sizeof err);
    ck_assert_msg(file != NULL, "%s", err);
    sn_price_table *builtin = sn_price_table_default(err, sizeof err);
    ck_assert_msg(builtin != NULL, "%s", err);
    ck_assert_uint_eq(sn_price_table_entries(file), sn_price_table_entries(builtin));
    ck_assert_str_eq(sn_price_table_version(file), sn_price_table_version(builtin));
    sn_price_table_destroy(file);
    sn_price_table_destroy(builtin);
}
END_TEST

START_TEST(load_reports_missing_and_reads_files)
{
    char err[256];
    ck_assert(sn_price_table_load("/nonexistent/prices.yaml", err, sizeof err) == NULL);
    ck_assert(strstr(err, "/nonexistent/prices.yaml") != NULL);
    ck_assert(strstr(err, "cannot open") != NULL);

    char path[] = "/tmp/sn_price_testXXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *yaml = "version: mine\nprices:\n"
                       "  - {model: '^m$', input: 1, output: 2, effective: 2025-01-01}\n";
    ck_assert_int_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    sn_price_table *t = sn_price_table_load(path, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    ck_assert_str_eq(sn_price_table_version(t), "mine");
    sn_price p;
    ck_assert(sn_price_lookup(t, "m", NULL, 0, &p));
    ck_assert_double_eq(p.output, 2.0);
    sn_price_table_destroy(t);
    unlink(path);
}
END_TEST

static const char *const rules_yaml =
    "version: \"test-1\"\n"
    "prices:\n"
    "  - model: '^gpt-4o-mini$'\n"
    "    input: 0.15\n"
    "    output: 0.60\n"
    "    effective: 2024-07-18\n"
    "  - model: '^gpt-4o.*$'\n" /* after -mini: the first match wins */
    "    input: 2.5\n"
    "    output: 10\n"
    "    effective: 2024-08-06\n"
    "  - model: 'llama'\n" /* unanchored: matches anywhere */
    "    provider: aws.bedrock\n"
    "    input: 0.72\n"
    "    output: 0.72\n"
    "    effective: 2024-07-23\n"
    "  - model: 'llama'\n" /* the same pattern elsewhere: a separate rule */
    "    input: 0.9\n"
    "    output: 0.9\n"
    "    effective: 2024-07-23\n";

START_TEST(lookup_matches_patterns_in_file_order)
{
    char err[256];
    sn_price_table *t = parse(rules_yaml, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    ck_assert_uint_eq(sn_price_table_entries(t), 4);
    sn_price p;
    ck_assert(sn_price_lookup(t, "gpt-4o-mini", "openai", 0, &p));
    ck_assert_double_eq(p.input, 0.15);
    ck_assert(sn_price_lookup(t, "gpt-4o-2024-11-20", "openai", 0, &p));
    ck_assert_double_eq(p.input, 2.5);
    /* Case-insensitive. */
    ck_assert(sn_price_lookup(t, "GPT-4O-MINI", "openai", 0, &p));
    ck_assert_double_eq(p.input, 0.15);
    /* Anchored only as written. */
    ck_assert(!sn_price_lookup(t, "my-gpt-4o", "openai", 0, &p));
    ck_assert(sn_price_lookup(t, "us.meta.llama3-70b", "aws.bedrock", 0, &p));
    ck_assert_double_eq(p.input, 0.72);
    ck_assert(sn_price_lookup(t, "us.meta.llama3-70b", "AWS.Bedrock", 0, &p));
    ck_assert_double_eq(p.input, 0.72);
    /* Other providers fall through to the provider-less rule. */
    ck_assert(sn_price_lookup(t, "llama-3-70b", "groq", 0, &p));
    ck_assert_double_eq(p.input, 0.9);
    ck_assert(sn_price_lookup(t, "llama-3-70b", NULL, 0, &p));
    ck_assert_double_eq(p.input, 0.9);
    /* Not cache prices listed: NAN. */
    ck_assert(isnan(p.cache_read) && isnan(p.cache_write));
    sn_price_table_destroy(t);
}
END_TEST

START_TEST(unknown_model_has_no_price)
{
    char err[256];
    sn_price_table *t = parse(rules_yaml, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    sn_price p = {.input = 42.0};
    ck_assert(!sn_price_lookup(t, "claude-3-opus", "anthropic", day(2025, 1, 1), &p));
    ck_assert(!sn_price_lookup(t, "", "openai", 0, &p));
    ck_assert(!sn_price_lookup(t, NULL, "openai", 0, &p));
    ck_assert(!sn_price_lookup(NULL, "gpt-4o", "openai", 0, &p));
    ck_assert_double_eq(p.input, 42.0);
    /* Asking twice (the second time from the cache) gives the same answer. */
    ck_assert(!sn_price_lookup(t, "claude-3-opus", "anthropic", day(2025, 1, 1), &p));
    sn_price_table_destroy(t);
}
END_TEST

START_TEST(later_effective_dates_supersede)
{
    const char *yaml = "version: v\n"
                       "prices:\n"
                       "  - model: '^o3$'\n"
                       "    input: 2\n"
                       "    output: 8\n"
                       "    effective: 2025-06-10\n" /* listed out of order on purpose */
                       "  - model: '^o3$'\n"
                       "    input: 10\n"
                       "    output: 40\n"
                       "    effective: 2025-04-16\n"
                       "  - model: '^o3$'\n"
                       "    input: 1\n"
                       "    output: 4\n"
                       "    effective: 2026-01-01\n";
    char err[256];
    sn_price_table *t = parse(yaml, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    sn_price p;
    ck_assert(sn_price_lookup(t, "o3", NULL, day(2025, 5, 1), &p));
    ck_assert_double_eq(p.input, 10.0);
    ck_assert_int_eq(p.effective_unix_nano, day(2025, 4, 16));
    /* At the very start of the day the new price applies; a nanosecond before, the old one. */
    ck_assert(sn_price_lookup(t, "o3", NULL, day(2025, 6, 10), &p));
    ck_assert_double_eq(p.input, 2.0);
    ck_assert(sn_price_lookup(t, "o3", NULL, day(2025, 6, 10) - 1, &p));
    ck_assert_double_eq(p.input, 10.0);
    ck_assert(sn_price_lookup(t, "o3", NULL, day(2025, 12, 31), &p));
    ck_assert_double_eq(p.input, 2.0);
    ck_assert(sn_price_lookup(t, "o3", NULL, day(2026, 3, 1), &p));
    ck_assert_double_eq(p.input, 1.0);
    /* Before the first date: the first price. Unknown time (0): the latest. */
    ck_assert(sn_price_lookup(t, "o3", NULL, day(2024, 1, 1), &p));
    ck_assert_double_eq(p.input, 10.0);
    ck_assert(sn_price_lookup(t, "o3", NULL, 0, &p));
    ck_assert_double_eq(p.input, 1.0);
    /* The two-step look-up (rule, then its price at a time) gives the same prices. */
    int32_t rule = sn_price_rule(t, "o3", NULL);
    ck_assert_int_ge(rule, 0);
    const int64_t times[] = {0,
                             day(2024, 1, 1),
                             day(2025, 5, 1),
                             day(2025, 6, 10) - 1,
                             day(2025, 6, 10),
                             day(2026, 3, 1)};
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        sn_price q;
        ck_assert(sn_price_lookup(t, "o3", NULL, times[i], &p));
        sn_price_rule_price(t, rule, times[i], &q);
        ck_assert(memcmp(&p, &q, sizeof p) == 0);
    }
    ck_assert_int_eq(sn_price_rule(t, "o4", NULL), -1);
    ck_assert_int_eq(sn_price_rule(t, "", NULL), -1);
    ck_assert_int_eq(sn_price_rule(NULL, "o3", NULL), -1);
    sn_price_table_destroy(t);

    /* The shipped table's own history: gpt-4o's alias price cut of 2024-10-02. */
    t = sn_price_table_default(err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    ck_assert(sn_price_lookup(t, "gpt-4o", "openai", day(2024, 9, 1), &p));
    ck_assert_double_eq_tol(p.input, 5.0, 1e-9);
    ck_assert(sn_price_lookup(t, "gpt-4o", "openai", day(2024, 11, 1), &p));
    ck_assert_double_eq_tol(p.input, 2.5, 1e-9);
    sn_price_table_destroy(t);
}
END_TEST

START_TEST(cost_charges_cached_tokens_once)
{
    sn_price p = {.input = 2.0, .output = 8.0, .cache_read = 0.5, .cache_write = 2.5};
    /* 1000 input tokens of which 800 were cache reads and 100 cache writes: 100 uncached. */
    double c = sn_price_cost(&p, 1000, 200, 800, 100);
    ck_assert_double_eq_tol(c, (100 * 2.0 + 800 * 0.5 + 100 * 2.5 + 200 * 8.0) / 1e6, 1e-15);
    /* No cache counts: plain input x price + output x price. */
    c = sn_price_cost(&p, 1000, 200, -1, -1);
    ck_assert_double_eq_tol(c, (1000 * 2.0 + 200 * 8.0) / 1e6, 1e-15);
    /* A price without cache prices charges cache tokens as input: the sum is unchanged. */
    sn_price plain = {.input = 2.0, .output = 8.0, .cache_read = NAN, .cache_write = NAN};
    c = sn_price_cost(&plain, 1000, 200, 800, 100);
    ck_assert_double_eq_tol(c, (1000 * 2.0 + 200 * 8.0) / 1e6, 1e-15);
    /* Input smaller than the cached tokens evidently excluded them (a provider's raw count). */
    c = sn_price_cost(&p, 50, 10, 800, 0);
    ck_assert_double_eq_tol(c, (50 * 2.0 + 800 * 0.5 + 10 * 8.0) / 1e6, 1e-15);
    /* Embeddings: output unknown counts 0. */
    c = sn_price_cost(&p, 1000, -1, -1, -1);
    ck_assert_double_eq_tol(c, 1000 * 2.0 / 1e6, 1e-15);
    /* Nothing known: unknown, not 0. */
    ck_assert(isnan(sn_price_cost(&p, -1, -1, 5, 5)));
    ck_assert(isnan(sn_price_cost(NULL, 10, 10, -1, -1)));
    /* Zero tokens known: a real 0. */
    ck_assert_double_eq(sn_price_cost(&p, 0, 0, -1, -1), 0.0);
}
END_TEST

START_TEST(malformed_files_name_line_and_field)
{
    /* bad number */
    expect_error("version: v\nprices:\n"
                 "  - model: '^a$'\n    input: cheap\n    output: 1\n    effective: 2025-01-01\n",
                 4, "prices[0].input");
    expect_error("version: v\nprices:\n"
                 "  - model: '^a$'\n    input: 1\n    output: -3\n    effective: 2025-01-01\n",
                 5, "prices[0].output");
    expect_error("version: v\nprices:\n"
                 "  - model: '^a$'\n    input: 1\n    output: 1\n    cache_read: nan\n"
                 "    effective: 2025-01-01\n",
                 6, "prices[0].cache_read");
    expect_error("version: v\nprices:\n"
                 "  - model: '^a$'\n    input: 1\n    output: 1\n    cache_write: 0x10\n"
                 "    effective: 2025-01-01\n",
                 6, "prices[0].cache_write");
    /* missing field: reported at the entry's line */
    expect_error("version: v\nprices:\n"
                 "  - model: '^a$'\n    input: 1\n    output: 1\n    effective: 2025-01-01\n"
                 "  - model: '^b$'\n    input: 1\n    effective: 2025-01-01\n",
                 7, "prices[1].output");
    expect_error("version: v\nprices:\n"
                 "  - model: '^a$'\n    input: 1\n    output: 1\n",
                 3, "prices[0].effective");
    expect_error("prices: []\n", 1, "version");
    expect_error("version: v\n", 1, "prices");
    /* bad regex */
    expect_error("version: v\nprices:\n"
                 "  - model: 'gpt-(4o'\n    input: 1\n    output: 1\n    effective: 2025-01-01\n",
                 3, "prices[0].model");
    /* unknown key, in an entry and at the top */
    expect_error("version: v\nprices:\n"
                 "  - model: '^a$'\n    inptu: 1\n    output: 1\n    effective: 2025-01-01\n",
                 4, "prices[0].inptu");
    expect_error("version: v\ncurency: USD\nprices: []\n", 2, "curency");
    /* bad date, unsupported currency, wrong shapes, duplicates */
    expect_error("version: v\nprices:\n"
                 "  - model: '^a$'\n    input: 1\n    output: 1\n    effective: 2025-02-30\n",
                 6, "prices[0].effective");
    expect_error("version: v\ncurrency: EUR\nprices: []\n", 2, "currency");
    expect_error("version: v\nprices:\n  model: a\n", 3, "prices");
    expect_error("version: v\nprices:\n  - just-a-string\n", 3, "prices[0]");
    expect_error("version: v\nprices:\n"
                 "  - model: '^a$'\n    model: '^b$'\n    input: 1\n    output: 1\n"
                 "    effective: 2025-01-01\n",
                 4, "prices[0].model");
    expect_error("version: v\nprices:\n"
                 "  - {model: '^a$', input: 1, output: 1, effective: 2025-01-01}\n"
                 "  - {model: '^a$', input: 2, output: 2, effective: 2025-01-01}\n",
                 4, "prices[1].effective");
    expect_error("version: v\nprices:\n"
                 "  - {model: [a, b], input: 1, output: 1, effective: 2025-01-01}\n",
                 3, "prices[0].model");
    /* YAML syntax error */
    expect_error("version: v\nprices:\n  - model: 'unterminated\n", 4, NULL);
    expect_error("version: v\nprices: [\n", 3, NULL);
    /* empty document */
    expect_error("", 1, NULL);
}
END_TEST

START_TEST(bounds_are_enforced)
{
    char err[256];
    /* A pattern longer than SN_PRICE_MAX_PATTERN. */
    char *yaml = malloc(SN_PRICE_MAX_PATTERN + 200);
    ck_assert_ptr_nonnull(yaml);
    int n = snprintf(yaml, SN_PRICE_MAX_PATTERN + 200, "version: v\nprices:\n  - model: '");
    for (int i = 0; i < SN_PRICE_MAX_PATTERN + 1; i++)
        yaml[n++] = 'a';
    snprintf(yaml + n, 100, "'\n    input: 1\n    output: 1\n    effective: 2025-01-01\n");
    sn_price_table *t = parse(yaml, err, sizeof err);
    ck_assert(t == NULL);
    ck_assert_msg(strstr(err, "test.yaml:3: prices[0].model") != NULL, "%s", err);
    free(yaml);

    /* More entries than SN_PRICE_MAX_ENTRIES. */
    size_t cap = (size_t)(SN_PRICE_MAX_ENTRIES + 1) * 80 + 64;
    char *big = malloc(cap);
    ck_assert_ptr_nonnull(big);
    size_t len = (size_t)snprintf(big, cap, "version: v\nprices:\n");
    for (int i = 0; i <= SN_PRICE_MAX_ENTRIES; i++)
        len += (size_t)snprintf(
            big + len, cap - len,
            "  - {model: '^m%d$', input: 1, output: 1, effective: 2025-01-01}\n", i);
    t = sn_price_table_parse(big, len, "test.yaml", err, sizeof err);
    ck_assert(t == NULL);
    ck_assert_msg(strstr(err, "test.yaml:3: prices:") != NULL, "%s", err);
    free(big);

    /* Too large a buffer is refused before parsing. */
    t = sn_price_table_parse("version: v", (size_t)SN_PRICE_MAX_FILE + 1, "test.yaml", err,
                             sizeof err);
    ck_assert(t == NULL);
    ck_assert(strstr(err, "larger than") != NULL);
}
END_TEST

/* Found by fuzz_price: a date past 2262-04-11 overflowed int64 nanoseconds (UBSan). Such a date is
 * refused; the last representable day is accepted. */
START_TEST(dates_past_int64_nanoseconds_are_refused)
{
    char err[256];
    sn_price_table *t = parse("version: v\nprices:\n"
                              "  - {model: m, input: 1, output: 1, effective: 2571-07-26}\n",
                              err, sizeof err);
    ck_assert(t == NULL);
    ck_assert_msg(strstr(err, "test.yaml:3: prices[0].effective: not a date") != NULL, "%s", err);
    t = parse("version: v\nprices:\n"
              "  - {model: m, input: 1, output: 1, effective: 2262-04-12}\n",
              err, sizeof err);
    ck_assert(t == NULL);
    t = parse("version: v\nprices:\n"
              "  - {model: m, input: 1, output: 2, effective: 2262-04-11}\n",
              err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    sn_price p;
    ck_assert(sn_price_lookup(t, "m", NULL, 0, &p));
    ck_assert_int_eq(p.effective_unix_nano, INT64_C(9223286400000000000));
    sn_price_table_destroy(t);
}
END_TEST

/* Found by fuzz_price: an error quoting a value with line breaks (a bad pattern in a quoted
 * scalar) was not one line. */
START_TEST(errors_quoting_line_breaks_stay_one_line)
{
    char err[256];
    sn_price_table *t = parse("version: v\nprices:\n"
                              "  - model: \"^(a\n\n\tb\"\n    input: 1\n    output: 1\n"
                              "    effective: 2025-01-01\n",
                              err, sizeof err);
    ck_assert(t == NULL);
    ck_assert_msg(strstr(err, "prices[0].model: bad regular expression") != NULL, "%s", err);
    for (const char *c = err; *c != '\0'; c++)
        ck_assert_msg((unsigned char)*c >= 0x20 && *c != 0x7f, "byte 0x%02x in '%s'",
                      (unsigned char)*c, err);
}
END_TEST

START_TEST(cache_is_bounded_and_correct_beyond_its_size)
{
    const char *yaml = "version: v\nprices:\n"
                       "  - {model: '^even-[0-9]*[02468]$', input: 2, output: 2, "
                       "effective: 2025-01-01}\n"
                       "  - {model: '^odd-[0-9]*[13579]$', input: 1, output: 1, "
                       "effective: 2025-01-01}\n";
    char err[256];
    sn_price_table *t = parse_fresh(yaml);

    enum { MODELS = SN_PRICE_CACHE_SLOTS * 4 };
    char name[32];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < MODELS; i++) {
            sn_price p;
            /* Even numbers have an even rule, odd ones an odd rule, every tenth is unknown. */
            if (i % 10 == 0) {
                snprintf(name, sizeof name, "unknown-%d", i);
                ck_assert(!sn_price_lookup(t, name, NULL, 0, &p));
                continue;
            }
            snprintf(name, sizeof name, "%s-%d", i % 2 ? "odd" : "even", i);
            ck_assert_msg(sn_price_lookup(t, name, NULL, 0, &p), "%s", name);
            ck_assert_double_eq(p.input, i % 2 ? 1.0 : 2.0);
        }
    }
    sn_price_cache_stats s = sn_price_cache_stats_get();
    ck_assert_uint_eq(s.hits + s.misses, 3 * MODELS);
    /* More models than slots: the cache could not have kept them all, and replaced some. */
    ck_assert_uint_gt(s.misses, MODELS);
    ck_assert_uint_gt(s.evictions, 0);

    /* A model asked for repeatedly is served from the cache. */
    sn_price p;
    ck_assert(sn_price_lookup(t, "odd-1", NULL, 0, &p));
    s = sn_price_cache_stats_get();
    for (int i = 0; i < 100; i++)
        ck_assert(sn_price_lookup(t, "odd-1", NULL, 0, &p));
    sn_price_cache_stats s2 = sn_price_cache_stats_get();
    ck_assert_uint_eq(s2.hits - s.hits, 100);
    ck_assert_uint_eq(s2.misses, s.misses);

    /* A provider is part of the key: the same model with another provider is another entry. */
    ck_assert(sn_price_lookup(t, "odd-1", "openai", 0, &p));
    ck_assert_uint_eq(sn_price_cache_stats_get().misses, s2.misses + 1);

    /* A new table never sees the old one's cached answers, even at the same address. */
    sn_price_table_destroy(t);
    t = parse("version: w\nprices:\n"
              "  - {model: '^odd-1$', input: 7, output: 7, effective: 2025-01-01}\n",
              err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    ck_assert(sn_price_lookup(t, "odd-1", NULL, 0, &p));
    ck_assert_double_eq(p.input, 7.0);
    ck_assert(!sn_price_lookup(t, "odd-3", NULL, 0, &p));
    sn_price_table_destroy(t);

    /* Model names too long for a cache slot still resolve (uncached). */
    t = parse(yaml, err, sizeof err);
    char longname[300];
    memset(longname, '1', sizeof longname);
    memcpy(longname, "odd-", 4);
    longname[sizeof longname - 1] = '\0';
    ck_assert(sn_price_lookup(t, longname, NULL, 0, &p));
    ck_assert_double_eq(p.input, 1.0);
    sn_price_table_destroy(t);
}
END_TEST

/* The cache takes a provider in any case (the patterns' rule, strcasecmp), and sn_price_rule_n
 * answers what sn_price_rule answers, for names of every length class of the cache's hash (under
 * 4, 4 to 7, 8 and over bytes), with and without providers. */
START_TEST(cache_keys_ignore_provider_case_and_rule_n_agrees)
{
    const char *yaml =
        "version: v\nprices:\n"
        "  - {model: '^a', provider: openai, input: 1, output: 1, effective: 2025-01-01}\n"
        "  - {model: '^a', input: 2, output: 2, effective: 2025-01-01}\n"
        "  - {model: '^gpt', provider: azure.ai.openai, input: 3, output: 3, "
        "effective: 2025-01-01}\n";
    sn_price_table *t = parse_fresh(yaml);
    static const char *models[] = {"a",
                                   "ab",
                                   "abc",
                                   "abcd",
                                   "abcdefg",
                                   "abcdefgh",
                                   "abcdefghijklmnopq",
                                   "gpt-4o",
                                   "gpt-4o-2024-08-06",
                                   "zz"};
    static const char *providers[] = {"",
                                      "x",
                                      "openai",
                                      "OpenAI",
                                      "OPENAI",
                                      "azure.ai.openai",
                                      "Azure.AI.OpenAI",
                                      "azure_ai_openai"};
    for (int round = 0; round < 2; round++) {
        for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
            for (size_t p = 0; p < sizeof providers / sizeof *providers; p++) {
                int32_t r = sn_price_rule(t, models[m], providers[p]);
                ck_assert_int_eq(sn_price_rule_n(t, models[m], strlen(models[m]), providers[p],
                                                 strlen(providers[p])),
                                 r);
                int32_t want = models[m][0] == 'a'
                                   ? (strcasecmp(providers[p], "openai") == 0 ? 0 : 1)
                               : strncmp(models[m], "gpt", 3) == 0 &&
                                       strcasecmp(providers[p], "azure.ai.openai") == 0
                                   ? 2
                                   : -1;
                ck_assert_msg(r == want, "%s/%s: %d, want %d", models[m], providers[p], (int)r,
                              (int)want);
            }
        }
    }
    /* "openai" in another case is the same key: served from the cache once it was asked. */
    ck_assert_int_eq(sn_price_rule(t, "a", "openai"), 0);
    sn_price_cache_stats s = sn_price_cache_stats_get();
    ck_assert_int_eq(sn_price_rule(t, "a", "oPeNaI"), 0);
    ck_assert_uint_eq(sn_price_cache_stats_get().hits, s.hits + 1);
    ck_assert_int_eq(sn_price_rule_n(t, "", 0, "openai", 6), -1);
    sn_price_table_destroy(t);
}
END_TEST

/* Threads share one table; each has its own cache. */
static void *lookup_worker(void *arg)
{
    const sn_price_table *t = arg;
    char name[32];
    for (int i = 0; i < 5000; i++) {
        sn_price p;
        snprintf(name, sizeof name, "%s-%d", i % 2 ? "odd" : "even", i % 300);
        if (!sn_price_lookup(t, name, NULL, 0, &p) || p.input != (i % 2 ? 1.0 : 2.0))
            return (void *)1;
    }
    sn_price_cache_stats s = sn_price_cache_stats_get();
    return s.hits + s.misses == 5000 ? NULL : (void *)1;
}

START_TEST(threads_share_a_table_with_their_own_caches)
{
    const char *yaml = "version: v\nprices:\n"
                       "  - {model: '^even-[0-9]*$', input: 2, output: 2, effective: 2025-01-01}\n"
                       "  - {model: '^odd-[0-9]*$', input: 1, output: 1, effective: 2025-01-01}\n";
    char err[256];
    sn_price_table *t = parse(yaml, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, lookup_worker, t), 0);
    for (int i = 0; i < 4; i++) {
        void *rc = (void *)1;
        ck_assert_int_eq(pthread_join(th[i], &rc), 0);
        ck_assert_ptr_null(rc);
    }
    sn_price_table_destroy(t);
}
END_TEST

static Suite *price_suite(void)
{
    Suite *s = suite_create("price");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, shipped_table_loads_and_covers_common_models);
    tcase_add_test(tc, shipped_file_on_disk_matches_the_built_in_copy);
    tcase_add_test(tc, load_reports_missing_and_reads_files);
    tcase_add_test(tc, lookup_matches_patterns_in_file_order);
    tcase_add_test(tc, unknown_model_has_no_price);
    tcase_add_test(tc, later_effective_dates_supersede);
    tcase_add_test(tc, cost_charges_cached_tokens_once);
    tcase_add_test(tc, malformed_files_name_line_and_field);
    tcase_add_test(tc, bounds_are_enforced);
    tcase_add_test(tc, dates_past_int64_nanoseconds_are_refused);
    tcase_add_test(tc, errors_quoting_line_breaks_stay_one_line);
    tcase_add_test(tc, cache_is_bounded_and_correct_beyond_its_size);
    tcase_add_test(tc, cache_keys_ignore_provider_case_and_rule_n_agrees);
    tcase_add_test(tc, threads_share_a_table_with_their_own_caches);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(price_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
