/* Unit tests for shared/pattern.c: the price patterns' matcher gives glibc regexec()'s answers
 * (REG_EXTENDED | REG_ICASE | REG_NOSUB) on the shipped patterns, hand-picked edge cases and
 * random patterns, and refuses what is outside its subset. */
#include "pattern.h"

#include <check.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PATTERNS 256

/* A small deterministic generator (xorshift64*). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (unsigned)((rng_state * 0x2545f4914f6cdd1dull) >> 33) % n;
}

/* Compares sn_pattern_match with regexec for one subject; fails the test on a difference. */
static void same_answer(const char *re, const regex_t *rx, const sn_pattern *p, const char *s)
{
    bool want = regexec(rx, s, 0, NULL, 0) == 0;
    bool got = sn_pattern_match(p, s, strlen(s));
    ck_assert_msg(want == got, "pattern \"%s\" on \"%s\": regexec %d, sn_pattern %d", re, s, want,
                  got);
}

/* The model patterns of the shipped price table (the quoted text after "model:"). Returns how
 * many were read into out (each malloc'd; the caller frees). */
static size_t shipped_patterns(char **out, size_t max)
{
    FILE *f = fopen(SN_SOURCE_DIR "/shared/data/prices.yaml", "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    size_t n = 0;
    while (fgets(line, sizeof line, f) != NULL && n < max) {
        char *m = strstr(line, "model: '");
        if (m == NULL)
            continue;
        m += 8;
        char *end = strrchr(m, '\'');
        ck_assert_ptr_nonnull(end);
        *end = '\0';
        out[n] = strdup(m);
        ck_assert_ptr_nonnull(out[n]);
        n++;
    }
    fclose(f);
    return n;
}

static const char *const model_names[] = {"gpt-4o",
                                          "GPT-4o",
                                          "openai/gpt-4o",
                                          "gpt-4o-mini",
                                          "gpt-4o-mini-2024-07-18",
                                          "gpt-4o-2024-08-06",
                                          "gpt-4o-2024-05-13",
                                          "chatgpt-4o-latest",
                                          "gpt-4",
                                          "gpt-4-0613",
                                          "gpt-4-turbo",
                                          "gpt-4-turbo-2024-04-09",
                                          "gpt-4-1106-preview",
                                          "gpt-4.1",
                                          "gpt-4.1-mini",
                                          "gpt-4.1-nano-2025-04-14",
                                          "gpt-41",
                                          "gpt-3.5-turbo",
                                          "gpt-3.5-turbo-0125",
                                          "gpt-5",
                                          "gpt-5-chat-latest",
                                          "gpt-5-mini",
                                          "gpt-5-nano-2025-08-07",
                                          "o1",
                                          "o1-preview-2024-09-12",
                                          "o1-mini",
                                          "o1-pro",
                                          "o3",
                                          "o3-mini",
                                          "o3-pro-2025-06-10",
                                          "o4-mini",
                                          "o4",
                                          "x/y/o3",
                                          "text-embedding-3-small",
                                          "text-embedding-ada-002",
                                          "claude-3-5-sonnet-20241022",
                                          "anthropic.claude-3-5-sonnet-20240620-v1:0",
                                          "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
                                          "claude-sonnet-4@20250514",
                                          "claude-opus-4-5",
                                          "claude-opus-4-1",
                                          "claude-haiku-4-5-20251001",
                                          "Claude-3-Haiku",
                                          "claude-3-opus",
                                          "claude-3-opusx",
                                          "eu.anthropic.claude-opus-4",
                                          "europe.anthropic.claude-opus-4",
                                          "gemini-1.5-pro",
                                          "gemini-1.5-pro-002",
                                          "gemini-1.5-flash-8b",
                                          "gemini-1.5-flash-latest",
                                          "gemini-2.0-flash",
                                          "gemini-2.0-flash-exp",
                                          "gemini-2.0-flash-lite",
                                          "gemini-2.5-pro-preview-05-06",
                                          "gemini-2.5-flash-lite-preview-06-17",
                                          "models/gemini-2.5-pro",
                                          "gemini-1x5-pro",
                                          "deepseek-chat",
                                          "deepseek-reasoner",
                                          "deepseek-chat-v3",
                                          "meta.llama3-1-70b-instruct-v1:0",
                                          "us.meta.llama3-2-90b-instruct-v1:0",
                                          "us.meta.llama4-scout-17b-instruct-v1:0",
                                          "meta.llama3-1-405b-instruct",
                                          "mistral-large-latest",
                                          "mistral-large-2411",
                                          "mistral.mistral-large-2407-v1:0",
                                          "open-mistral-nemo",
                                          "mistral-nemo",
                                          "codestral-2501",
                                          "ministral-8b-latest",
                                          "pixtral-large",
                                          "mistral-medium-3",
                                          "mistral-small",
                                          "Mistral-Small-Latest",
                                          "a/b",
                                          "",
                                          "-",
                                          "/",
                                          ".",
                                          "x",
                                          "unknown-model",
                                          "gpt-4o\n",
                                          "gpt-4o-2024-13-99",
                                          "GEMINI-2.5-FLASH"};

START_TEST(shipped_patterns_compile_and_agree_with_regexec)
{
    char *pats[MAX_PATTERNS];
    size_t n = shipped_patterns(pats, MAX_PATTERNS);
    ck_assert_uint_ge(n, 50);
    char buf[160];
    for (size_t i = 0; i < n; i++) {
        regex_t rx;
        ck_assert_int_eq(regcomp(&rx, pats[i], REG_EXTENDED | REG_ICASE | REG_NOSUB), 0);
        sn_pattern *p = sn_pattern_compile(pats[i]);
        ck_assert_msg(p != NULL, "shipped pattern \"%s\" is outside the subset", pats[i]);
        ck_assert_uint_lt(sn_pattern_size(p), 2048);
        for (size_t k = 0; k < sizeof model_names / sizeof model_names[0]; k++) {
            same_answer(pats[i], &rx, p, model_names[k]);
            /* and with a prefix, a suffix and a changed byte */
            snprintf(buf, sizeof buf, "azure/%s", model_names[k]);
            same_answer(pats[i], &rx, p, buf);
            snprintf(buf, sizeof buf, "%s-x", model_names[k]);
            same_answer(pats[i], &rx, p, buf);
            size_t len = strlen(model_names[k]);
            if (len > 0) {
                memcpy(buf, model_names[k], len + 1);
                buf[rnd((unsigned)len)] = "-._/@9aZ"[rnd(8)];
                same_answer(pats[i], &rx, p, buf);
            }
        }
        sn_pattern_free(p);
        regfree(&rx);
        free(pats[i]);
    }
}
END_TEST

/* Edge cases of the subset, each compiled by both and compared on a set of short subjects. */
START_TEST(edge_cases_agree_with_regexec)
{
    static const char *const pats[] = {"a",
                                       "^a$",
                                       "A",
                                       "[A-Z]+",
                                       "^[a-c]*$",
                                       "[^a]",
                                       "^[^a]$",
                                       "^[^A-C]+$",
                                       "[]a]",
                                       "[^]a]",
                                       "[a-]",
                                       "[-a]",
                                       "^[.]$",
                                       "^.$",
                                       "a.c",
                                       "\\.",
                                       "a\\|b",
                                       "\\(a\\)",
                                       "a|b|c",
                                       "^(a|bc)+$",
                                       "(a*)*b",
                                       "(a|b)*abb$",
                                       "x{3}",
                                       "^x{2,}$",
                                       "^x{1,3}$",
                                       "^(ab){0,2}$",
                                       "a{0}b",
                                       "^(a?){3}a{3}$",
                                       "^a|b$|^c$",
                                       "^$",
                                       "^ab|cd$",
                                       "^([a-z]{2,4}\\.)?meta\\.x.*$",
                                       "[A-z]",
                                       "[a-Z]",
                                       "^[[]$",
                                       "^[\\]+$",
                                       "]",
                                       "-",
                                       "[/.]x",
                                       "^[0-9]{2}$",
                                       "o1(-preview)?(-[0-9]{2})?$",
                                       "([a-z0-9_.-]+/)?gpt$",
                                       "((a|b)(c|d))+e",
                                       "[_-~]",
                                       "^[ -~]+$",
                                       "^[!-~]$",
                                       "^[^_-~]$"};
    static const char *const subjects[] = {
        "",       "a",          "A",      "b",      "B",       "c",     "ab",    "AB",
        "aB",     "abb",        "aabb",   "babb",   "abc",     "aXc",   "a.c",   ".",
        "a|b",    "(a)",        "x",      "xx",     "xxx",     "XXXX",  "xxxxx", "abab",
        "ababab", "aaa",        "aaaa",   "aaaaaa", "ba",      "a^b",   "a$b",   "]",
        "-",      "^",          "[",      "\\",     "\\\\",    "_",     "`",     "Z",
        "z",      "/x",         ".x",     "12",     "1",       "123",   "o1",    "o1-preview-12",
        "o1-12",  "us.meta.x1", "meta.x", "gpt",    "a/b/gpt", "A/GPT", "ace",   "bde",
        "acbde",  "e",          "~",      "{",      "Ab{"};
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++) {
        regex_t rx;
        ck_assert_msg(regcomp(&rx, pats[i], REG_EXTENDED | REG_ICASE | REG_NOSUB) == 0, "%s",
                      pats[i]);
        sn_pattern *p = sn_pattern_compile(pats[i]);
        ck_assert_msg(p != NULL, "\"%s\" should be in the subset", pats[i]);
        for (size_t k = 0; k < sizeof subjects / sizeof subjects[0]; k++)
            same_answer(pats[i], &rx, p, subjects[k]);
        sn_pattern_free(p);
        regfree(&rx);
    }
}
END_TEST

/* Appends str to out (cap bytes with the NUL) when it fits. */
static void append(char *out, size_t cap, const char *str)
{
    size_t len = strlen(out), add = strlen(str);
    if (len + add < cap) {
        memcpy(out + len, str, add + 1);
    }
}

/* Appends a random expression of about depth levels to out (at most cap bytes with the NUL). */
static void random_expr(char *out, size_t cap, int depth)
{
    static const char *const atoms[] = {"a",     "b",     "A",   "-", ".",    "[ab]",  "[^a]",
                                        "[a-c]", "[A-B]", "\\.", "/", "[-.]", "[b-C]", "[_-~]"};
    static const char *const quants[] = {"", "", "", "*", "+", "?", "{2}", "{0,2}", "{1,}"};
    int parts = 1 + (int)rnd(3);
    for (int i = 0; i < parts; i++) {
        size_t len = strlen(out);
        if (len + 40 >= cap)
            return;
        if (depth > 0 && rnd(3) == 0) {
            append(out, cap, "(");
            random_expr(out, cap, depth - 1);
            if (rnd(2) == 0 && strlen(out) + 20 < cap) {
                append(out, cap, "|");
                random_expr(out, cap, depth - 1);
            }
            append(out, cap, ")");
        } else {
            append(out, cap, atoms[rnd(sizeof atoms / sizeof atoms[0])]);
        }
        append(out, cap, quants[rnd(sizeof quants / sizeof quants[0])]);
    }
}

START_TEST(random_patterns_agree_with_regexec)
{
    static const char alphabet[] = "abcAB-./x";
    int compared = 0;
    for (int i = 0; i < 400; i++) {
        /* one or two top-level alternatives, each maybe anchored at either end */
        char re[200] = "";
        for (int alt = 0; alt < 1 + (int)(rnd(4) == 0); alt++) {
            if (alt > 0)
                append(re, sizeof re, "|");
            if (rnd(2) == 0)
                append(re, sizeof re, "^");
            random_expr(re, sizeof re, 3);
            if (rnd(2) == 0)
                append(re, sizeof re, "$");
        }
        regex_t rx;
        if (regcomp(&rx, re, REG_EXTENDED | REG_ICASE | REG_NOSUB) != 0)
            continue;
        sn_pattern *p = sn_pattern_compile(re);
        if (p != NULL) {
            compared++;
            for (int k = 0; k < 200; k++) {
                char s[12];
                size_t len = rnd(sizeof s);
                for (size_t j = 0; j < len; j++)
                    s[j] = alphabet[rnd(sizeof alphabet - 1)];
                s[len] = '\0';
                same_answer(re, &rx, p, s);
            }
        }
        sn_pattern_free(p);
        regfree(&rx);
    }
    ck_assert_int_ge(compared, 300);
}
END_TEST

START_TEST(outside_the_subset_is_refused)
{
    static const char *const refused[] = {
        "(a)\\1", "\\w+",        "a\\b", "[[:alpha:]]", "[[=a=]]", "[[.a.]]", "()",
        "a||b",   "(|a)",        "a**",  "a+?",         "*a",      "a{,3}",   "a{2",
        "a{3,2}", "x{65}",       "^*",   "a$?",         "(a",      "a)",      "[a",
        "",       "caf\xc3\xa9", "a\tb", "a{1}{2}",     "[z-a]",   "{1}",     "a}",
        "a^b",    "a$b",         "(^a)", "(a$)",        "(a|^b)",  "[_-a]",   NULL};
    for (size_t i = 0; refused[i] != NULL; i++) {
        sn_pattern *p = sn_pattern_compile(refused[i]);
        ck_assert_msg(p == NULL, "\"%s\" should be refused", refused[i]);
    }
    /* too large a program: 70 copies of a 10-instruction group */
    ck_assert_ptr_null(sn_pattern_compile("((a|b|c|d)x){60}((a|b|c|d)x){60}"));
    ck_assert_ptr_null(sn_pattern_compile(NULL));
}
END_TEST

START_TEST(long_subjects_stay_linear)
{
    /* A pattern that backtracking matchers take exponential time on. */
    sn_pattern *p = sn_pattern_compile("^(a|a)*(a|a)*(a|a)*b$");
    ck_assert_ptr_nonnull(p);
    char s[4001];
    memset(s, 'a', 4000);
    s[4000] = '\0';
    ck_assert(!sn_pattern_match(p, s, 4000));
    s[3999] = 'b';
    ck_assert(sn_pattern_match(p, s, 4000));
    sn_pattern_free(p);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("price_pattern");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, shipped_patterns_compile_and_agree_with_regexec);
    tcase_add_test(tc, edge_cases_agree_with_regexec);
    tcase_add_test(tc, random_patterns_agree_with_regexec);
    tcase_add_test(tc, outside_the_subset_is_refused);
    tcase_add_test(tc, long_subjects_stay_linear);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
