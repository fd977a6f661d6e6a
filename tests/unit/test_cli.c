/* Unit tests for shared/cli.c. */
#include "cli.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct prog_cfg {
    char spool_dir[64];
    sn_config_address aggregator;
    double threshold;
    bool dry_run;
    sn_cli_log_settings log;
} prog_cfg;

static const sn_config_desc descs[] = {
    {.path = "spool.dir",
     .type = SN_CONFIG_STRING,
     .offset = offsetof(prog_cfg, spool_dir),
     .size = sizeof(((prog_cfg *)0)->spool_dir),
     .def = "/var/lib/sentinel/spool",
     .env = "SENTINEL_SPOOL_DIR",
     .help = "on-disk spool"},
    {.path = "aggregator.address",
     .type = SN_CONFIG_ADDRESS,
     .offset = offsetof(prog_cfg, aggregator),
     .size = sizeof(sn_config_address),
     .def = "localhost:9090",
     .env = "SENTINEL_AGGREGATOR",
     .help = "aggregator host:port"},
    SN_CFG_POSITIVE("detect.zscore.threshold", prog_cfg, threshold, "3", "z-score threshold"),
    SN_CFG_BOOL("dry_run", prog_cfg, dry_run, "false", "do not ship"),
    SN_CLI_LOG_DESCRIPTORS(prog_cfg, log),
};
#define NDESCS (sizeof descs / sizeof descs[0])

static int g_callback_calls;
static char g_callback_value[64];

static int on_mode(void *ud, const char *value, sn_config_error *err)
{
    (void)ud;
    g_callback_calls++;
    if (strcmp(value, "bad") == 0) {
        snprintf(err->msg, sizeof err->msg, "--mode: must be fast or slow (got \"bad\")");
        return -EINVAL;
    }
    snprintf(g_callback_value, sizeof g_callback_value, "%s", value);
    return 0;
}

static const sn_cli_flag flags[] = {
    {.name = "spool-dir", .takes_value = true, .metavar = "DIR", .path = "spool.dir"},
    {.name = "aggregator",
     .short_name = 'a',
     .takes_value = true,
     .metavar = "HOST:PORT",
     .path = "aggregator.address"},
    {.name = "dry-run", .path = "dry_run", .help = "decode but do not ship"},
    {.name = "mode", .takes_value = true, .cb = on_mode, .help = "fast or slow"},
};

static FILE *g_out;
static int g_logfd = -1;
static char g_logpath[64];

static void setup(void)
{
    g_out = tmpfile();
    snprintf(g_logpath, sizeof g_logpath, "/tmp/sn_test_cli_XXXXXX");
    g_logfd = mkstemp(g_logpath);
    sn_log_set_fd(g_logfd);
    sn_log_set_level(SN_LOG_INFO);
    sn_log_set_format(SN_LOG_JSON);
    unsetenv("SENTINEL_SPOOL_DIR");
    unsetenv("SENTINEL_AGGREGATOR");
    unsetenv("SENTINEL_CONFIG");
    unsetenv("SENTINEL_LOG_LEVEL");
    unsetenv("SENTINEL_LOG_FORMAT");
    unsetenv("SENTINEL_DETECT_ZSCORE_THRESHOLD");
    g_callback_calls = 0;
    g_callback_value[0] = '\0';
}

static void teardown(void)
{
    fclose(g_out);
    sn_log_set_fd(-1);
    close(g_logfd);
    unlink(g_logpath);
    sn_log_set_level(SN_LOG_INFO);
    sn_log_set_format(SN_LOG_JSON);
}

static char *read_file(FILE *f)
{
    fflush(f);
    long n = ftell(f);
    char *buf = calloc(1, (size_t)n + 1);
    rewind(f);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    return buf;
}

static char *read_log(void)
{
    off_t n = lseek(g_logfd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)n + 1);
    ck_assert_int_eq(pread(g_logfd, buf, (size_t)n, 0), n);
    return buf;
}

static const sn_program_info *info(void)
{
    static sn_program_info i = {.name = "sentinel-test",
                                .version = "1.2.3",
                                .component = "test",
                                .summary = "A program for the tests.",
                                .positional = "[FILE...]",
                                .flags = flags,
                                .nflags = sizeof flags / sizeof flags[0]};
    i.out = g_out;
    return &i;
}

/* Runs sn_cli_load on a NULL-terminated argument list. */
static int run(prog_cfg *c, sn_cli_result *res, const sn_program_info *pi, char **argv)
{
    int argc = 0;
    while (argv[argc] != NULL)
        argc++;
    memset(c, 0, sizeof *c);
    return sn_cli_load(argc, argv, pi, descs, NDESCS, c, res);
}

START_TEST(help_prints_usage_and_settings)
{
    prog_cfg c;
    sn_cli_result res;
    char *argv[] = {"sentinel-test", "--bogus", "--help", NULL};
    ck_assert_int_eq(run(&c, &res, info(), argv), SN_CLI_EXIT);
    ck_assert_int_eq(sn_cli_exit_status(SN_CLI_EXIT), 0);
    char *out = read_file(g_out);
    ck_assert_ptr_nonnull(strstr(out, "Usage: sentinel-test [OPTIONS] [FILE...]\n"));
    ck_assert_ptr_nonnull(strstr(out, "A program for the tests."));
    ck_assert_ptr_nonnull(strstr(out, "-h, --help"));
    ck_assert_ptr_nonnull(strstr(out, "--set PATH=VALUE"));
    ck_assert_ptr_nonnull(strstr(out, "--spool-dir DIR"));
    ck_assert_ptr_nonnull(strstr(out, "on-disk spool (spool.dir)"));
    ck_assert_ptr_nonnull(strstr(out, "-a, --aggregator HOST:PORT"));
    ck_assert_ptr_nonnull(strstr(out, "spool.dir  SENTINEL_SPOOL_DIR"));
    ck_assert_ptr_nonnull(strstr(out, "detect.zscore.threshold  SENTINEL_DETECT_ZSCORE_THRESHOLD"));
    ck_assert_ptr_nonnull(strstr(out, "a number > 0; default 3"));
    ck_assert_ptr_nonnull(strstr(out, "log.level  SENTINEL_LOG_LEVEL"));
    free(out);
    sn_cli_result_cleanup(&res);
}
END_TEST

START_TEST(version_prints_name_and_version)
{
    prog_cfg c;
    sn_cli_result res;
    char *argv[] = {"sentinel-test", "--version", NULL};
    ck_assert_int_eq(run(&c, &res, info(), argv), SN_CLI_EXIT);
    char *out = read_file(g_out);
    ck_assert_str_eq(out, "sentinel-test 1.2.3\n");
    free(out);
    sn_cli_result_cleanup(&res);
}
END_TEST

/* Checks the outcome is a usage error with message msg, logged as one JSON error line. */
static void expect_usage(char **argv, const char *msg)
{
    prog_cfg c;
    sn_cli_result res;
    ck_assert_int_eq(run(&c, &res, info(), argv), SN_CLI_USAGE);
    ck_assert_int_eq(sn_cli_exit_status(SN_CLI_USAGE), 2);
    ck_assert_str_eq(res.error, msg);
    ck_assert_ptr_null(res.config);
    char *log = read_log();
    ck_assert_ptr_eq(strchr(log, '\n'), log + strlen(log) - 1);
    json_error_t jerr;
    json_t *j = json_loads(log, 0, &jerr);
    ck_assert_msg(j != NULL, "%s", log);
    ck_assert_str_eq(json_string_value(json_object_get(j, "level")), "error");
    ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), msg);
    ck_assert_str_eq(json_string_value(json_object_get(j, "program")), "sentinel-test");
    json_decref(j);
    free(log);
    char *out = read_file(g_out);
    ck_assert_str_eq(out, ""); /* nothing on stdout */
    free(out);
    sn_cli_result_cleanup(&res);
}

START_TEST(unknown_flag)
{
    char *argv[] = {"sentinel-test", "--bogus=1", NULL};
    expect_usage(argv, "unknown option \"--bogus\"");
}
END_TEST

START_TEST(unknown_short_flag)
{
    char *argv[] = {"sentinel-test", "-z", NULL};
    expect_usage(argv, "unknown option \"-z\"");
}
END_TEST

START_TEST(missing_value)
{
    char *argv[] = {"sentinel-test", "--config", NULL};
    expect_usage(argv, "option \"--config\" needs a value");
}
END_TEST

START_TEST(value_for_a_switch)
{
    char *argv[] = {"sentinel-test", "--dry-run=yes", NULL};
    expect_usage(argv, "option \"--dry-run\" takes no value");
}
END_TEST

START_TEST(set_unknown_path)
{
    char *argv[] = {"sentinel-test", "--set", "spool.dri=/x", NULL};
    expect_usage(argv, "config: unknown setting \"spool.dri\" (did you mean \"spool.dir\"?) from "
                       "--set");
}
END_TEST

START_TEST(set_bad_value)
{
    char *argv[] = {"sentinel-test", "--set", "detect.zscore.threshold=-1", NULL};
    expect_usage(argv, "config: detect.zscore.threshold: must be a number > 0 (got \"-1\") from "
                       "--set");
}
END_TEST

START_TEST(set_without_equals)
{
    char *argv[] = {"sentinel-test", "--set", "spool.dir", NULL};
    expect_usage(argv, "config: --set needs PATH=VALUE (got \"spool.dir\")");
}
END_TEST

START_TEST(dedicated_flag_bad_value)
{
    char *argv[] = {"sentinel-test", "-a", "[::1]:99999", NULL};
    expect_usage(argv, "config: aggregator.address: must be host:port (IPv6 in brackets) "
                       "(got \"[::1]:99999\") from --aggregator");
}
END_TEST

START_TEST(env_bad_value)
{
    setenv("SENTINEL_AGGREGATOR", "nohost", 1);
    char *argv[] = {"sentinel-test", NULL};
    expect_usage(argv, "config: aggregator.address: must be host:port (IPv6 in brackets) "
                       "(got \"nohost\") from environment SENTINEL_AGGREGATOR");
    unsetenv("SENTINEL_AGGREGATOR");
}
END_TEST

START_TEST(callback_error)
{
    char *argv[] = {"sentinel-test", "--mode", "bad", NULL};
    expect_usage(argv, "--mode: must be fast or slow (got \"bad\")");
}
END_TEST

START_TEST(bad_log_level)
{
    char *argv[] = {"sentinel-test", "--log-level", "loud", NULL};
    expect_usage(argv, "config: log.level: must be one of debug, info, warn, error (got \"loud\") "
                       "from --log-level");
}
END_TEST

START_TEST(missing_config_file)
{
    char *argv[] = {"sentinel-test", "-c", "/nonexistent.yaml", NULL};
    expect_usage(argv, "config: cannot read /nonexistent.yaml: No such file or directory");
}
END_TEST

START_TEST(unexpected_positional)
{
    sn_program_info pi = *info();
    pi.positional = NULL;
    prog_cfg c;
    sn_cli_result res;
    char *argv[] = {"sentinel-test", "extra", NULL};
    ck_assert_int_eq(run(&c, &res, &pi, argv), SN_CLI_USAGE);
    ck_assert_str_eq(res.error, "unexpected argument \"extra\"");
    sn_cli_result_cleanup(&res);
}
END_TEST

static int reject_dry_run(void *config, sn_config_error *err)
{
    const prog_cfg *c = config;
    if (c->dry_run && c->threshold > 5) {
        snprintf(err->msg, sizeof err->msg,
                 "config: dry_run: cannot be combined with a threshold "
                 "above 5");
        return -EINVAL;
    }
    return 0;
}

START_TEST(validate_callback)
{
    sn_program_info pi = *info();
    pi.validate = reject_dry_run;
    prog_cfg c;
    sn_cli_result res;
    char *argv[] = {"sentinel-test", "--dry-run", "--set", "detect.zscore.threshold=6", NULL};
    ck_assert_int_eq(run(&c, &res, &pi, argv), SN_CLI_USAGE);
    ck_assert_str_eq(res.error, "config: dry_run: cannot be combined with a threshold above 5");
    sn_cli_result_cleanup(&res);
}
END_TEST

START_TEST(whole_chain_with_precedence)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/sn_test_cli_yaml_XXXXXX");
    int fd = mkstemp(path);
    const char *yaml = "spool:\n  dir: /from/file\n"
                       "aggregator:\n  address: file-host:9090\n"
                       "detect:\n  zscore:\n    threshold: 4\n"
                       "log:\n  level: warn\n";
    ck_assert_int_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    setenv("SENTINEL_CONFIG", path, 1);
    setenv("SENTINEL_AGGREGATOR", "env-host:9091", 1);
    setenv("SENTINEL_SPOOL_DIR", "/from/env", 1);
    setenv("SENTINEL_LOG_LEVEL", "debug", 1);

    prog_cfg c;
    sn_cli_result res;
    char *argv[] = {"sentinel-test",
                    "in.csv",
                    "--spool-dir=/from/flag",
                    "--set",
                    "spool.dir=/from/set",
                    "--mode",
                    "fast",
                    "--log-format",
                    "text",
                    "--dry-run",
                    "--",
                    "--not-a-flag",
                    NULL};
    int rc = run(&c, &res, info(), argv);
    ck_assert_msg(rc == SN_CLI_RUN, "%s", res.error);
    ck_assert_str_eq(c.spool_dir, "/from/set"); /* flags in order: the later --set wins */
    ck_assert_str_eq(c.aggregator.host, "env-host");
    ck_assert_int_eq(c.aggregator.port, 9091);
    ck_assert_double_eq(c.threshold, 4.0);
    ck_assert(c.dry_run);
    ck_assert_int_eq(c.log.level, SN_LOG_DEBUG);
    ck_assert_int_eq(c.log.format, SN_LOG_TEXT);
    ck_assert_int_eq(sn_log_get_level(), SN_LOG_DEBUG);
    ck_assert_int_eq(res.log_format, SN_LOG_TEXT);
    ck_assert_int_eq(g_callback_calls, 1);
    ck_assert_str_eq(g_callback_value, "fast");
    ck_assert_str_eq(res.config_file, path);
    ck_assert_int_eq(res.nargs, 2);
    ck_assert_str_eq(res.args[0], "in.csv");
    ck_assert_str_eq(res.args[1], "--not-a-flag");
    ck_assert_ptr_nonnull(res.config);
    char where[128];
    ck_assert_int_eq(sn_config_origin(res.config, "spool.dir", where, sizeof where),
                     SN_CONFIG_FROM_FLAG);
    ck_assert_str_eq(where, "--set");
    ck_assert_int_eq(sn_config_origin(res.config, "log.format", where, sizeof where),
                     SN_CONFIG_FROM_FLAG);
    ck_assert_str_eq(where, "--log-format");

    /* The dump is available for the REST API. */
    json_t *j = sn_config_dump_json(res.config);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "log"), "format")),
                     "text");
    json_decref(j);
    sn_cli_result_cleanup(&res);
    ck_assert_ptr_null(res.config);
    unsetenv("SENTINEL_CONFIG");
    unsetenv("SENTINEL_AGGREGATOR");
    unsetenv("SENTINEL_SPOOL_DIR");
    unsetenv("SENTINEL_LOG_LEVEL");

    /* Without the environment the file wins over the defaults; --config beats SENTINEL_CONFIG. */
    setenv("SENTINEL_CONFIG", "/nonexistent.yaml", 1);
    char *argv2[] = {"sentinel-test", "--config", path, "--spool-dir", "/from/flag", NULL};
    rc = run(&c, &res, info(), argv2);
    ck_assert_msg(rc == SN_CLI_RUN, "%s", res.error);
    ck_assert_str_eq(c.spool_dir, "/from/flag");
    ck_assert_str_eq(c.aggregator.host, "file-host");
    ck_assert_int_eq(c.log.level, SN_LOG_WARN);
    ck_assert_int_eq(sn_log_get_level(), SN_LOG_WARN);
    ck_assert_int_eq(c.log.format, SN_LOG_JSON);
    sn_cli_result_cleanup(&res);
    unsetenv("SENTINEL_CONFIG");
    unlink(path);
}
END_TEST

START_TEST(defaults_only)
{
    prog_cfg c;
    sn_cli_result res;
    char *argv[] = {"sentinel-test", NULL};
    ck_assert_int_eq(run(&c, &res, info(), argv), SN_CLI_RUN);
    ck_assert_str_eq(c.spool_dir, "/var/lib/sentinel/spool");
    ck_assert_str_eq(c.aggregator.host, "localhost");
    ck_assert_int_eq(c.aggregator.port, 9090);
    ck_assert(!c.dry_run);
    ck_assert_int_eq(res.nargs, 0);
    ck_assert_ptr_null(res.config_file);
    sn_cli_result_cleanup(&res);
}
END_TEST

START_TEST(early_errors_follow_env_log_format)
{
    setenv("SENTINEL_LOG_FORMAT", "text", 1);
    prog_cfg c;
    sn_cli_result res;
    char *argv[] = {"sentinel-test", "--bogus", NULL};
    ck_assert_int_eq(run(&c, &res, info(), argv), SN_CLI_USAGE);
    char *log = read_log();
    ck_assert_ptr_nonnull(strstr(log, "Z ERROR test: unknown option \"--bogus\" "
                                      "program=sentinel-test"));
    free(log);
    sn_cli_result_cleanup(&res);
    unsetenv("SENTINEL_LOG_FORMAT");
}
END_TEST

static Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, help_prints_usage_and_settings);
    tcase_add_test(tc, version_prints_name_and_version);
    tcase_add_test(tc, unknown_flag);
    tcase_add_test(tc, unknown_short_flag);
    tcase_add_test(tc, missing_value);
    tcase_add_test(tc, value_for_a_switch);
    tcase_add_test(tc, set_unknown_path);
    tcase_add_test(tc, set_bad_value);
    tcase_add_test(tc, set_without_equals);
    tcase_add_test(tc, dedicated_flag_bad_value);
    tcase_add_test(tc, env_bad_value);
    tcase_add_test(tc, callback_error);
    tcase_add_test(tc, bad_log_level);
    tcase_add_test(tc, missing_config_file);
    tcase_add_test(tc, unexpected_positional);
    tcase_add_test(tc, validate_callback);
    tcase_add_test(tc, whole_chain_with_precedence);
    tcase_add_test(tc, defaults_only);
    tcase_add_test(tc, early_errors_follow_env_log_format);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cli_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
