/* Unit tests for shared/log.c. */
#include "log.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_fd = -1;
static char g_path[64];

/* Points the logger at a fresh temporary file. */
static void capture_start(void)
{
    snprintf(g_path, sizeof g_path, "/tmp/sn_test_log_XXXXXX");
    g_fd = mkstemp(g_path);
    ck_assert_int_ge(g_fd, 0);
    sn_log_set_fd(g_fd);
    sn_log_set_format(SN_LOG_JSON);
    sn_log_set_level(SN_LOG_DEBUG);
    sn_log_set_component("test");
}

/* Everything written since capture_start; caller frees. */
static char *capture_read(size_t *len)
{
    off_t size = lseek(g_fd, 0, SEEK_END);
    ck_assert_int_ge(size, 0);
    char *buf = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(pread(g_fd, buf, (size_t)size, 0), size);
    buf[size] = '\0';
    if (len != NULL)
        *len = (size_t)size;
    return buf;
}

static void capture_stop(void)
{
    sn_log_set_fd(-1);
    close(g_fd);
    unlink(g_path);
    g_fd = -1;
}

/* Parses the single line in text as JSON; fails the test when it is not exactly one object. */
static json_t *one_json_line(const char *text)
{
    size_t len = strlen(text);
    ck_assert_uint_gt(len, 0);
    ck_assert_int_eq(text[len - 1], '\n');
    ck_assert_ptr_eq(strchr(text, '\n'), text + len - 1);
    json_error_t jerr;
    json_t *j = json_loadb(text, len - 1, 0, &jerr);
    ck_assert_msg(j != NULL, "not JSON: %s (%s)", text, jerr.text);
    ck_assert(json_is_object(j));
    return j;
}

START_TEST(json_line_has_typed_fields)
{
    capture_start();
    sn_log_info("listening", SN_LOG_STR("addr", "127.0.0.1"), SN_LOG_INT("port", 4317),
                SN_LOG_INT("neg", -5), SN_LOG_UINT("big", UINT64_C(1) << 40),
                SN_LOG_DBL("ratio", 0.25), SN_LOG_BOOL("tls", false), SN_LOG_STR("none", NULL),
                SN_LOG_STRN("part", "abcdef", 3), SN_LOG_DBL("nan", NAN), SN_LOG_ERRNO(-ENOENT));
    char *text = capture_read(NULL);
    json_t *j = one_json_line(text);
    const char *ts = json_string_value(json_object_get(j, "ts"));
    ck_assert_ptr_nonnull(ts);
    /* 2026-11-27T13:45:01.123Z */
    ck_assert_int_eq(strlen(ts), 24);
    ck_assert_int_eq(ts[10], 'T');
    ck_assert_int_eq(ts[19], '.');
    ck_assert_int_eq(ts[23], 'Z');
    ck_assert_str_eq(json_string_value(json_object_get(j, "level")), "info");
    ck_assert_str_eq(json_string_value(json_object_get(j, "component")), "test");
    ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), "listening");
    ck_assert_str_eq(json_string_value(json_object_get(j, "addr")), "127.0.0.1");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "port")), 4317);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "neg")), -5);
    ck_assert(json_is_number(json_object_get(j, "big")));
    ck_assert_double_eq(json_number_value(json_object_get(j, "ratio")), 0.25);
    ck_assert(json_is_false(json_object_get(j, "tls")));
    ck_assert(json_is_null(json_object_get(j, "none")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "part")), "abc");
    ck_assert(json_is_null(json_object_get(j, "nan")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "error")), "No such file or directory");
    ck_assert_ptr_null(json_object_get(j, "truncated"));
    /* Field order follows the call. */
    ck_assert_ptr_nonnull(strstr(text, "\"msg\":\"listening\",\"addr\":"));
    json_decref(j);
    free(text);
    capture_stop();
}
END_TEST

START_TEST(strings_are_escaped)
{
    capture_start();
    const char *nasty = "quote\" back\\slash\nnew\rline\ttab\x01\x1f\x7f end";
    const char *bad_utf8 = "ok \xc3\xa9 bad \xff \xc3 \xed\xa0\x80 \xe2\x82\xac";
    sn_log_warn(nasty, SN_LOG_STR("v", nasty), SN_LOG_STR("k\"ey", bad_utf8));
    char *text = capture_read(NULL);
    json_t *j = one_json_line(text);
    ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), nasty);
    ck_assert_str_eq(json_string_value(json_object_get(j, "v")), nasty);
    ck_assert_str_eq(json_string_value(json_object_get(j, "level")), "warn");
    /* Each invalid byte becomes U+FFFD; valid sequences survive. */
    ck_assert_str_eq(
        json_string_value(json_object_get(j, "k\"ey")),
        "ok \xc3\xa9 bad \xef\xbf\xbd \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
        "\xe2\x82\xac");
    ck_assert_ptr_nonnull(strstr(text, "\\u0001"));
    ck_assert_ptr_nonnull(strstr(text, "\\u007f"));
    json_decref(j);
    free(text);
    capture_stop();
}
END_TEST

START_TEST(long_lines_are_truncated_and_stay_valid)
{
    capture_start();
    size_t big = 10000;
    char *s = malloc(big + 1);
    memset(s, 'x', big);
    s[big] = '\0';
    sn_log_error("big", SN_LOG_STR("payload", s), SN_LOG_INT("after", 1));
    /* A string of escapes (6 bytes each) cut mid-way still parses. */
    memset(s, '\x01', big);
    sn_log_error("ctl", SN_LOG_STR("payload", s));
    /* A long message. */
    memset(s, 'm', big);
    sn_log_error(s, SN_LOG_INT("n", 1));
    size_t len;
    char *text = capture_read(&len);
    char *line = text;
    for (int i = 0; i < 3; i++) {
        char *nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        ck_assert_int_le(nl - line + 1, SN_LOG_LINE_MAX);
        char save = nl[1];
        nl[1] = '\0';
        json_t *j = one_json_line(line);
        nl[1] = save;
        ck_assert(json_is_true(json_object_get(j, "truncated")));
        if (i == 0) {
            const char *p = json_string_value(json_object_get(j, "payload"));
            ck_assert_ptr_nonnull(p);
            ck_assert_str_eq(p + strlen(p) - 3, "...");
            ck_assert_ptr_null(json_object_get(j, "after"));
        }
        if (i == 2) {
            const char *m = json_string_value(json_object_get(j, "msg"));
            ck_assert_str_eq(m + strlen(m) - 3, "...");
        }
        json_decref(j);
        line = nl + 1;
    }
    ck_assert_int_eq(*line, '\0');
    /* Multi-byte characters are not split. */
    for (size_t i = 0; i + 3 <= big; i += 3)
        memcpy(s + i, "\xe2\x82\xac", 3);
    s[big - big % 3] = '\0';
    char buf[SN_LOG_LINE_MAX];
    size_t n = sn_log_format_line(buf, sizeof buf, SN_LOG_INFO, "euro",
                                  (const sn_log_field[]){SN_LOG_STR("e", s), SN_LOG_END});
    ck_assert_uint_le(n, SN_LOG_LINE_MAX);
    json_error_t jerr;
    json_t *j = json_loadb(buf, n, 0, &jerr);
    ck_assert_msg(j != NULL, "%s", jerr.text);
    json_decref(j);
    free(text);
    free(s);
    capture_stop();
}
END_TEST

START_TEST(text_format)
{
    capture_start();
    sn_log_set_format(SN_LOG_TEXT);
    sn_log_info("spool \"full\"\nnow", SN_LOG_STR("dir", "/var/spool"),
                SN_LOG_STR("why", "no space"), SN_LOG_INT("files", 3), SN_LOG_STR("empty", ""));
    char *text = capture_read(NULL);
    ck_assert_ptr_eq(strchr(text, '\n'), text + strlen(text) - 1);
    ck_assert_ptr_nonnull(strstr(text, "Z INFO  test: spool \"full\"\\nnow dir=/var/spool "
                                       "why=\"no space\" files=3 empty=\"\"\n"));
    free(text);
    capture_stop();
    sn_log_set_format(SN_LOG_JSON);
}
END_TEST

START_TEST(levels_filter)
{
    capture_start();
    sn_log_set_level(SN_LOG_WARN);
    ck_assert(!sn_log_enabled(SN_LOG_INFO));
    ck_assert(sn_log_enabled(SN_LOG_ERROR));
    int evaluated = 0;
    sn_log_debug("no", SN_LOG_INT("x", ++evaluated));
    sn_log_info("no");
    ck_assert_int_eq(evaluated, 0); /* fields of filtered messages are not evaluated */
    sn_log_warn("yes");
    sn_log_error("yes too");
    char *text = capture_read(NULL);
    ck_assert_ptr_null(strstr(text, "\"no\""));
    ck_assert_ptr_nonnull(strstr(text, "\"level\":\"warn\""));
    ck_assert_ptr_nonnull(strstr(text, "\"level\":\"error\""));
    free(text);
    sn_log_set_level(SN_LOG_OFF);
    ck_assert(!sn_log_enabled(SN_LOG_ERROR));
    ck_assert_int_eq(sn_log_get_level(), SN_LOG_OFF);
    capture_stop();
    sn_log_set_level(SN_LOG_INFO);

    sn_log_level l;
    ck_assert_int_eq(sn_log_level_from_name("warning", &l), 0);
    ck_assert_int_eq(l, SN_LOG_WARN);
    ck_assert_int_eq(sn_log_level_from_name("loud", &l), -1);
    ck_assert_str_eq(sn_log_level_name(SN_LOG_DEBUG), "debug");
    sn_log_format f;
    ck_assert_int_eq(sn_log_format_from_name("text", &f), 0);
    ck_assert_int_eq(f, SN_LOG_TEXT);
    ck_assert_int_eq(sn_log_format_from_name("xml", &f), -1);
}
END_TEST

START_TEST(no_component_is_left_out)
{
    capture_start();
    sn_log_set_component(NULL);
    sn_log_info("x");
    char *text = capture_read(NULL);
    json_t *j = one_json_line(text);
    ck_assert_ptr_null(json_object_get(j, "component"));
    json_decref(j);
    free(text);
    capture_stop();
}
END_TEST

#define THREADS 8
#define LINES   500

static void *writer(void *arg)
{
    long id = (long)arg;
    char pad[300];
    memset(pad, 'a' + (int)id, sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < LINES; i++)
        sn_log_info("from thread", SN_LOG_INT("thread", id), SN_LOG_INT("i", i),
                    SN_LOG_STR("pad", pad));
    return NULL;
}

START_TEST(threads_do_not_interleave)
{
    capture_start();
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, writer, (void *)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    char *text = capture_read(NULL);
    int count[THREADS] = {0};
    int lines = 0;
    for (char *line = text; *line != '\0';) {
        char *nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        json_error_t jerr;
        json_t *j = json_loadb(line, (size_t)(nl - line), 0, &jerr);
        ck_assert_msg(j != NULL, "line %d: %s", lines, jerr.text);
        json_int_t id = json_integer_value(json_object_get(j, "thread"));
        ck_assert(id >= 0 && id < THREADS);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "i")), count[id]);
        count[id]++;
        json_decref(j);
        lines++;
        line = nl + 1;
    }
    ck_assert_int_eq(lines, THREADS * LINES);
    free(text);
    capture_stop();
}
END_TEST

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, json_line_has_typed_fields);
    tcase_add_test(tc, strings_are_escaped);
    tcase_add_test(tc, long_lines_are_truncated_and_stay_valid);
    tcase_add_test(tc, text_format);
    tcase_add_test(tc, levels_filter);
    tcase_add_test(tc, no_component_is_left_out);
    tcase_add_test(tc, threads_do_not_interleave);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(log_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
