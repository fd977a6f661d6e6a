/* Unit tests for shared/config.c. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct test_cfg {
    bool enabled;
    int64_t workers;
    double threshold;
    double ratio;
    char name[16];
    char token[32];
    int mode;
    int64_t window;
    int64_t max_bytes;
    sn_config_address listen;
    sn_config_address upstream;
    sn_config_list models;
    struct {
        char dir[64];
    } spool;
} test_cfg;

static const char *const modes[] = {"zscore", "iqr", "mad", NULL};

static const sn_config_desc descs[] = {
    SN_CFG_BOOL("enabled", test_cfg, enabled, "true", "turn it on"),
    SN_CFG_INT("workers", test_cfg, workers, "4", 1, 64, "worker threads"),
    SN_CFG_POSITIVE("detect.zscore.threshold", test_cfg, threshold, "3.0", "z-score threshold"),
    {.path = "detect.ratio",
     .type = SN_CONFIG_DOUBLE,
     .offset = offsetof(test_cfg, ratio),
     .size = sizeof(double),
     .def = "0.5",
     .flags = SN_CONFIG_HAS_MIN | SN_CONFIG_HAS_MAX | SN_CONFIG_MAX_EXCL | SN_CONFIG_LIVE,
     .dmin = 0.0,
     .dmax = 1.0,
     .help = "a ratio"},
    SN_CFG_STRING("name", test_cfg, name, "sentinel", "a name"),
    {.path = "api.token",
     .type = SN_CONFIG_STRING,
     .offset = offsetof(test_cfg, token),
     .size = sizeof(((test_cfg *)0)->token),
     .env = "SENTINEL_API_TOKEN",
     .flags = SN_CONFIG_SECRET | SN_CONFIG_LIVE,
     .help = "bearer token"},
    SN_CFG_ENUM("detect.mode", test_cfg, mode, "zscore", modes, "detector"),
    SN_CFG_DURATION("detect.window", test_cfg, window, "5m", SN_NS_PER_MS,
                    7 * 86400 * SN_NS_PER_SEC, "window"),
    SN_CFG_SIZE("spool.max_bytes", test_cfg, max_bytes, "16MiB", 0, INT64_MAX, "spool size"),
    {.path = "otlp.grpc_endpoint",
     .type = SN_CONFIG_ADDRESS,
     .offset = offsetof(test_cfg, listen),
     .size = sizeof(sn_config_address),
     .def = "127.0.0.1:4317",
     .env = "SENTINEL_OTLP_GRPC_ENDPOINT",
     .help = "listen"},
    {.path = "aggregator.address",
     .type = SN_CONFIG_ADDRESS,
     .offset = offsetof(test_cfg, upstream),
     .size = sizeof(sn_config_address),
     .env = "SENTINEL_AGGREGATOR",
     .flags = SN_CONFIG_OPTIONAL,
     .help = "aggregator"},
    {.path = "detect.models",
     .type = SN_CONFIG_LIST,
     .offset = offsetof(test_cfg, models),
     .size = sizeof(sn_config_list),
     .def = "gpt-4o, claude",
     .flags = SN_CONFIG_LIVE,
     .help = "models"},
    SN_CFG_STRING("spool.dir", test_cfg, spool.dir, "/var/lib/sentinel/spool", "spool dir"),
};
#define NDESCS (sizeof descs / sizeof descs[0])

static const char *const all_env[] = {"SENTINEL_ENABLED",
                                      "SENTINEL_WORKERS",
                                      "SENTINEL_DETECT_ZSCORE_THRESHOLD",
                                      "SENTINEL_DETECT_RATIO",
                                      "SENTINEL_NAME",
                                      "SENTINEL_API_TOKEN",
                                      "SENTINEL_DETECT_MODE",
                                      "SENTINEL_DETECT_WINDOW",
                                      "SENTINEL_SPOOL_MAX_BYTES",
                                      "SENTINEL_OTLP_GRPC_ENDPOINT",
                                      "SENTINEL_AGGREGATOR",
                                      "SENTINEL_DETECT_MODELS",
                                      "SENTINEL_SPOOL_DIR",
                                      NULL};

static void clear_env(void)
{
    for (size_t i = 0; all_env[i] != NULL; i++)
        unsetenv(all_env[i]);
}

static sn_config *make(test_cfg *c)
{
    sn_config *cfg = NULL;
    sn_config_error err;
    memset(c, 0xAB, sizeof *c);
    int rc = sn_config_create(&cfg, descs, NDESCS, c, &err);
    ck_assert_msg(rc == 0, "create: %s", err.msg);
    return cfg;
}

/* Writes text to a fresh temporary file; path receives its name. */
static void temp_yaml(char *path, size_t len, const char *text)
{
    snprintf(path, len, "/tmp/sn_test_config_XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    size_t n = strlen(text);
    ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
}

static int load_text(sn_config *cfg, const char *text, sn_config_error *err)
{
    return sn_config_load_yaml(cfg, text, strlen(text), "t.yaml", err);
}

START_TEST(defaults_are_applied)
{
    test_cfg c;
    sn_config *cfg = make(&c);
    ck_assert(c.enabled);
    ck_assert_int_eq(c.workers, 4);
    ck_assert_double_eq(c.threshold, 3.0);
    ck_assert_str_eq(c.name, "sentinel");
    ck_assert_str_eq(c.token, "");
    ck_assert_int_eq(c.mode, 0);
    ck_assert_int_eq(c.window, 300 * SN_NS_PER_SEC);
    ck_assert_int_eq(c.max_bytes, 16 * 1024 * 1024);
    ck_assert_str_eq(c.listen.host, "127.0.0.1");
    ck_assert_int_eq(c.listen.port, 4317);
    ck_assert_str_eq(c.upstream.host, "");
    ck_assert_int_eq(c.models.count, 2);
    ck_assert_str_eq(c.models.items[0], "gpt-4o");
    ck_assert_str_eq(c.models.items[1], "claude");
    ck_assert_str_eq(c.spool.dir, "/var/lib/sentinel/spool");
    char buf[64];
    ck_assert_int_eq(sn_config_origin(cfg, "workers", buf, sizeof buf), SN_CONFIG_FROM_DEFAULT);
    ck_assert_str_eq(buf, "default");
    sn_config_destroy(cfg);
}
END_TEST

START_TEST(durations_parse)
{
    int64_t ns;
    ck_assert_int_eq(sn_config_parse_duration("200ms", &ns), 0);
    ck_assert_int_eq(ns, 200 * SN_NS_PER_MS);
    ck_assert_int_eq(sn_config_parse_duration("5s", &ns), 0);
    ck_assert_int_eq(ns, 5 * SN_NS_PER_SEC);
    ck_assert_int_eq(sn_config_parse_duration("1h", &ns), 0);
    ck_assert_int_eq(ns, 3600 * SN_NS_PER_SEC);
    ck_assert_int_eq(sn_config_parse_duration("7d", &ns), 0);
    ck_assert_int_eq(ns, 7 * 86400 * SN_NS_PER_SEC);
    ck_assert_int_eq(sn_config_parse_duration("1h30m", &ns), 0);
    ck_assert_int_eq(ns, 5400 * SN_NS_PER_SEC);
    ck_assert_int_eq(sn_config_parse_duration("1.5s", &ns), 0);
    ck_assert_int_eq(ns, 1500 * SN_NS_PER_MS);
    ck_assert_int_eq(sn_config_parse_duration("250us", &ns), 0);
    ck_assert_int_eq(ns, 250000);
    ck_assert_int_eq(sn_config_parse_duration("10ns", &ns), 0);
    ck_assert_int_eq(ns, 10);
    ck_assert_int_eq(sn_config_parse_duration("0", &ns), 0);
    ck_assert_int_eq(ns, 0);
    ck_assert_int_eq(sn_config_parse_duration("5", &ns), -EINVAL); /* no unit */
    ck_assert_int_eq(sn_config_parse_duration("", &ns), -EINVAL);
    ck_assert_int_eq(sn_config_parse_duration("-5s", &ns), -EINVAL); /* negative */
    ck_assert_int_eq(sn_config_parse_duration("5x", &ns), -EINVAL);
    ck_assert_int_eq(sn_config_parse_duration("s", &ns), -EINVAL);
    ck_assert_int_eq(sn_config_parse_duration("5 s", &ns), -EINVAL);
    ck_assert_int_eq(sn_config_parse_duration("1.s", &ns), -EINVAL);
    ck_assert_int_eq(sn_config_parse_duration("300000d", &ns), -ERANGE);
    ck_assert_int_eq(sn_config_parse_duration("99999999999999999999ns", &ns), -ERANGE);
    char buf[32];
    sn_config_format_duration(5400 * SN_NS_PER_SEC, buf, sizeof buf);
    ck_assert_str_eq(buf, "1h30m");
    sn_config_format_duration(200 * SN_NS_PER_MS, buf, sizeof buf);
    ck_assert_str_eq(buf, "200ms");
    sn_config_format_duration(0, buf, sizeof buf);
    ck_assert_str_eq(buf, "0s");
    sn_config_format_duration(7 * 86400 * SN_NS_PER_SEC, buf, sizeof buf);
    ck_assert_str_eq(buf, "7d");
}
END_TEST

START_TEST(sizes_parse)
{
    int64_t b;
    ck_assert_int_eq(sn_config_parse_size("16MiB", &b), 0);
    ck_assert_int_eq(b, 16 << 20);
    ck_assert_int_eq(sn_config_parse_size("512KiB", &b), 0);
    ck_assert_int_eq(b, 512 << 10);
    ck_assert_int_eq(sn_config_parse_size("1GB", &b), 0);
    ck_assert_int_eq(b, 1000000000);
    ck_assert_int_eq(sn_config_parse_size("64Mi", &b), 0);
    ck_assert_int_eq(b, 64 << 20);
    ck_assert_int_eq(sn_config_parse_size("1.5KiB", &b), 0);
    ck_assert_int_eq(b, 1536);
    ck_assert_int_eq(sn_config_parse_size("100", &b), 0);
    ck_assert_int_eq(b, 100);
    ck_assert_int_eq(sn_config_parse_size("100B", &b), 0);
    ck_assert_int_eq(b, 100);
    ck_assert_int_eq(sn_config_parse_size("2tib", &b), 0);
    ck_assert_int_eq(b, INT64_C(2) << 40);
    ck_assert_int_eq(sn_config_parse_size("-1MiB", &b), -EINVAL);
    ck_assert_int_eq(sn_config_parse_size("1.5", &b), -EINVAL);
    ck_assert_int_eq(sn_config_parse_size("12XB", &b), -EINVAL);
    ck_assert_int_eq(sn_config_parse_size("", &b), -EINVAL);
    ck_assert_int_eq(sn_config_parse_size("MiB", &b), -EINVAL);
    ck_assert_int_eq(sn_config_parse_size("9000000TiB", &b), -ERANGE);
    ck_assert_int_eq(sn_config_parse_size("99999999999999999999", &b), -ERANGE);
    char buf[32];
    sn_config_format_size(16 << 20, buf, sizeof buf);
    ck_assert_str_eq(buf, "16MiB");
    sn_config_format_size(1000000000, buf, sizeof buf);
    ck_assert_str_eq(buf, "1GB");
    sn_config_format_size(1001, buf, sizeof buf);
    ck_assert_str_eq(buf, "1001B");
}
END_TEST

START_TEST(addresses_parse)
{
    sn_config_address a;
    ck_assert_int_eq(sn_config_parse_address("127.0.0.1:4317", false, &a), 0);
    ck_assert_str_eq(a.host, "127.0.0.1");
    ck_assert_int_eq(a.port, 4317);
    ck_assert_int_eq(sn_config_parse_address("localhost:9090", false, &a), 0);
    ck_assert_str_eq(a.host, "localhost");
    ck_assert_int_eq(sn_config_parse_address("sentinel-aggregator.ns.svc:9090", false, &a), 0);
    ck_assert_int_eq(sn_config_parse_address("[::1]:4317", false, &a), 0);
    ck_assert_str_eq(a.host, "::1");
    ck_assert_int_eq(sn_config_parse_address("[fe80::1:2]:65535", false, &a), 0);
    ck_assert_int_eq(a.port, 65535);
    ck_assert_int_eq(sn_config_parse_address("::1:4317", false, &a), -EINVAL); /* no brackets */
    ck_assert_int_eq(sn_config_parse_address("[::1]", false, &a), -EINVAL);
    ck_assert_int_eq(sn_config_parse_address("[zz::1]:80", false, &a), -EINVAL);
    ck_assert_int_eq(sn_config_parse_address("host", false, &a), -EINVAL);
    ck_assert_int_eq(sn_config_parse_address(":4317", false, &a), -EINVAL);
    ck_assert_int_eq(sn_config_parse_address("host:", false, &a), -EINVAL);
    ck_assert_int_eq(sn_config_parse_address("host:65536", false, &a), -EINVAL);
    ck_assert_int_eq(sn_config_parse_address("host:-1", false, &a), -EINVAL);
    ck_assert_int_eq(sn_config_parse_address("host:http", false, &a), -EINVAL);
    ck_assert_int_eq(sn_config_parse_address("host:0", false, &a), -EINVAL);
    ck_assert_int_eq(sn_config_parse_address("host:0", true, &a), 0);
    ck_assert_int_eq(sn_config_parse_address("999.1.1.1:80", false, &a), -EINVAL);
    ck_assert_int_eq(sn_config_parse_address("bad host:80", false, &a), -EINVAL);
    ck_assert_int_eq(sn_config_parse_address("-bad:80", false, &a), -EINVAL);
    char buf[64];
    sn_config_parse_address("[::1]:4317", false, &a);
    sn_config_format_address(&a, buf, sizeof buf);
    ck_assert_str_eq(buf, "[::1]:4317");
}
END_TEST

START_TEST(bools_ints_doubles_enums_strings)
{
    test_cfg c;
    sn_config *cfg = make(&c);
    sn_config_error err;
    ck_assert_int_eq(sn_config_set(cfg, "enabled", "off", NULL, &err), 0);
    ck_assert(!c.enabled);
    ck_assert_int_eq(sn_config_set(cfg, "enabled", "YES", NULL, &err), 0);
    ck_assert(c.enabled);
    ck_assert_int_eq(sn_config_set(cfg, "enabled", "maybe", NULL, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: enabled: must be true or false (got \"maybe\") from --set");

    ck_assert_int_eq(sn_config_set(cfg, "workers", "64", NULL, &err), 0);
    ck_assert_int_eq(c.workers, 64);
    ck_assert_int_eq(sn_config_set(cfg, "workers", "65", NULL, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: workers: must be an integer between 1 and 64 (got \"65\") "
                              "from --set");
    ck_assert_int_eq(sn_config_set(cfg, "workers", "0", NULL, &err), -EINVAL);
    ck_assert_int_eq(sn_config_set(cfg, "workers", "-3", NULL, &err), -EINVAL);
    ck_assert_int_eq(sn_config_set(cfg, "workers", "4x", NULL, &err), -EINVAL);
    ck_assert_int_eq(sn_config_set(cfg, "workers", " 4", NULL, &err), -EINVAL);
    ck_assert_int_eq(sn_config_set(cfg, "workers", "99999999999999999999", NULL, &err), -EINVAL);
    ck_assert_int_eq(c.workers, 64); /* unchanged by the failures */

    ck_assert_int_eq(sn_config_set(cfg, "detect.zscore.threshold", "4.5", NULL, &err), 0);
    ck_assert_double_eq(c.threshold, 4.5);
    ck_assert_int_eq(sn_config_set(cfg, "detect.zscore.threshold", "abc", NULL, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: detect.zscore.threshold: must be a number > 0 "
                              "(got \"abc\") from --set");
    ck_assert_int_eq(sn_config_set(cfg, "detect.zscore.threshold", "0", NULL, &err), -EINVAL);
    ck_assert_int_eq(sn_config_set(cfg, "detect.zscore.threshold", "nan", NULL, &err), -EINVAL);
    ck_assert_int_eq(sn_config_set(cfg, "detect.zscore.threshold", "inf", NULL, &err), -EINVAL);
    ck_assert_int_eq(sn_config_set(cfg, "detect.zscore.threshold", "1e999", NULL, &err), -EINVAL);
    ck_assert_int_eq(sn_config_set(cfg, "detect.ratio", "0", NULL, &err), 0);
    ck_assert_int_eq(sn_config_set(cfg, "detect.ratio", "1", NULL, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: detect.ratio: must be a number >= 0 and < 1 (got \"1\") "
                              "from --set");
    ck_assert_int_eq(sn_config_set(cfg, "detect.ratio", "0.999", NULL, &err), 0);

    ck_assert_int_eq(sn_config_set(cfg, "detect.mode", "mad", NULL, &err), 0);
    ck_assert_int_eq(c.mode, 2);
    ck_assert_int_eq(sn_config_set(cfg, "detect.mode", "IQR", NULL, &err), 0);
    ck_assert_int_eq(c.mode, 1);
    ck_assert_int_eq(sn_config_set(cfg, "detect.mode", "cusum", NULL, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: detect.mode: must be one of zscore, iqr, mad "
                              "(got \"cusum\") from --set");

    ck_assert_int_eq(sn_config_set(cfg, "name", "fifteen-bytes!!", NULL, &err), 0);
    ck_assert_str_eq(c.name, "fifteen-bytes!!");
    ck_assert_int_eq(sn_config_set(cfg, "name", "sixteen-bytes!!!", NULL, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: name: must be a string of at most 15 bytes "
                              "(got \"sixteen-bytes!!!\") from --set");
    ck_assert_str_eq(c.name, "fifteen-bytes!!");

    ck_assert_int_eq(sn_config_set(cfg, "detect.window", "0s", NULL, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: detect.window: must be a duration like 200ms, 5s or 1h "
                              "between 1ms and 7d (got \"0s\") from --set");
    ck_assert_int_eq(sn_config_set(cfg, "detect.window", "8d", NULL, &err), -EINVAL);
    ck_assert_int_eq(sn_config_set(cfg, "detect.window", "-1s", NULL, &err), -EINVAL);
    ck_assert_int_eq(sn_config_set(cfg, "detect.window", "90s", NULL, &err), 0);
    ck_assert_int_eq(c.window, 90 * SN_NS_PER_SEC);

    ck_assert_int_eq(sn_config_set(cfg, "spool.max_bytes", "1GB", NULL, &err), 0);
    ck_assert_int_eq(c.max_bytes, 1000000000);
    ck_assert_int_eq(sn_config_set(cfg, "spool.max_bytes", "-1", NULL, &err), -EINVAL);

    ck_assert_int_eq(sn_config_set(cfg, "aggregator.address", "[2001:db8::1]:9090", NULL, &err), 0);
    ck_assert_str_eq(c.upstream.host, "2001:db8::1");
    ck_assert_int_eq(sn_config_set(cfg, "aggregator.address", "off", NULL, &err), 0);
    ck_assert_str_eq(c.upstream.host, "");
    ck_assert_int_eq(sn_config_set(cfg, "otlp.grpc_endpoint", "", NULL, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: otlp.grpc_endpoint: must be host:port (IPv6 in brackets) "
                              "(got \"\") from --set");

    ck_assert_int_eq(sn_config_set(cfg, "detect.models", " a ,b,c ", NULL, &err), 0);
    ck_assert_int_eq(c.models.count, 3);
    ck_assert_str_eq(c.models.items[0], "a");
    ck_assert_str_eq(c.models.items[2], "c");
    ck_assert_int_eq(sn_config_set(cfg, "detect.models", "a,,b", NULL, &err), -EINVAL);
    ck_assert_int_eq(sn_config_set(cfg, "detect.models", "", NULL, &err), 0);
    ck_assert_int_eq(c.models.count, 0);

    ck_assert_int_eq(sn_config_set(cfg, "detect.zscore.treshold", "4", NULL, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: unknown setting \"detect.zscore.treshold\" (did you mean "
                              "\"detect.zscore.threshold\"?) from --set");
    ck_assert_int_eq(sn_config_set_assignment(cfg, "workers=8", &err), 0);
    ck_assert_int_eq(c.workers, 8);
    ck_assert_int_eq(sn_config_set_assignment(cfg, "workers", &err), -EINVAL);
    ck_assert_int_eq(sn_config_set_assignment(cfg, "=8", &err), -EINVAL);
    ck_assert_int_eq(sn_config_set_assignment(cfg, "name=a=b", &err), 0);
    ck_assert_str_eq(c.name, "a=b");
    sn_config_destroy(cfg);
}
END_TEST

START_TEST(secrets_are_not_echoed)
{
    test_cfg c;
    sn_config *cfg = make(&c);
    sn_config_error err;
    char big[64];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ck_assert_int_eq(sn_config_set(cfg, "api.token", big, NULL, &err), -EINVAL);
    ck_assert_ptr_null(strstr(err.msg, "xxxx"));
    ck_assert_ptr_nonnull(strstr(err.msg, "<redacted>"));
    sn_config_destroy(cfg);
}
END_TEST

START_TEST(env_names_derived_and_explicit)
{
    char buf[128];
    sn_config_env_name(&descs[2], buf, sizeof buf);
    ck_assert_str_eq(buf, "SENTINEL_DETECT_ZSCORE_THRESHOLD");
    sn_config_env_name(&descs[5], buf, sizeof buf);
    ck_assert_str_eq(buf, "SENTINEL_API_TOKEN");
    sn_config_env_name(&descs[12], buf, sizeof buf);
    ck_assert_str_eq(buf, "SENTINEL_SPOOL_DIR");

    clear_env();
    setenv("SENTINEL_DETECT_ZSCORE_THRESHOLD", "5", 1);
    setenv("SENTINEL_AGGREGATOR", "agg.svc:9090", 1);
    setenv("SENTINEL_SPOOL_DIR", "/data/spool", 1);
    setenv("SENTINEL_DETECT_MODELS", "x,y", 1);
    test_cfg c;
    sn_config *cfg = make(&c);
    sn_config_error err;
    ck_assert_int_eq(sn_config_load_env(cfg, &err), 0);
    ck_assert_double_eq(c.threshold, 5.0);
    ck_assert_str_eq(c.upstream.host, "agg.svc");
    ck_assert_int_eq(c.upstream.port, 9090);
    ck_assert_str_eq(c.spool.dir, "/data/spool");
    ck_assert_int_eq(c.models.count, 2);
    ck_assert_int_eq(sn_config_origin(cfg, "aggregator.address", buf, sizeof buf),
                     SN_CONFIG_FROM_ENV);
    ck_assert_str_eq(buf, "environment SENTINEL_AGGREGATOR");

    setenv("SENTINEL_DETECT_ZSCORE_THRESHOLD", "abc", 1);
    ck_assert_int_eq(sn_config_load_env(cfg, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: detect.zscore.threshold: must be a number > 0 (got \"abc\") "
                              "from environment SENTINEL_DETECT_ZSCORE_THRESHOLD");
    clear_env();
    sn_config_destroy(cfg);
}
END_TEST

START_TEST(precedence_defaults_file_env_flags)
{
    clear_env();
    char path[64];
    temp_yaml(path, sizeof path,
              "workers: 8\n"
              "name: from-file\n"
              "detect:\n"
              "  zscore:\n"
              "    threshold: 4\n"
              "  mode: iqr\n");
    test_cfg c;
    sn_config *cfg = make(&c);
    sn_config_error err;
    ck_assert_int_eq(sn_config_load_file(cfg, path, &err), 0);
    ck_assert_int_eq(c.workers, 8);
    ck_assert_double_eq(c.threshold, 4.0);
    ck_assert_int_eq(c.mode, 1);
    ck_assert_str_eq(c.name, "from-file");
    setenv("SENTINEL_WORKERS", "16", 1);
    setenv("SENTINEL_NAME", "from-env", 1);
    ck_assert_int_eq(sn_config_load_env(cfg, &err), 0);
    ck_assert_int_eq(c.workers, 16);
    ck_assert_int_eq(sn_config_set(cfg, "workers", "32", NULL, &err), 0);
    ck_assert_int_eq(c.workers, 32);
    ck_assert_str_eq(c.name, "from-env");
    ck_assert_double_eq(c.threshold, 4.0);
    ck_assert(c.enabled); /* default */

    char where[256], expect[256];
    ck_assert_int_eq(sn_config_origin(cfg, "detect.zscore.threshold", where, sizeof where),
                     SN_CONFIG_FROM_FILE);
    snprintf(expect, sizeof expect, "%s:5", path);
    ck_assert_str_eq(where, expect);
    ck_assert_int_eq(sn_config_origin(cfg, "workers", where, sizeof where), SN_CONFIG_FROM_FLAG);
    ck_assert_str_eq(where, "--set");
    ck_assert_int_eq(sn_config_origin(cfg, "nope", where, sizeof where), -1);
    clear_env();
    unlink(path);
    sn_config_destroy(cfg);
}
END_TEST

START_TEST(yaml_errors_name_the_line)
{
    test_cfg c;
    sn_config *cfg = make(&c);
    sn_config_error err;

    ck_assert_int_eq(load_text(cfg, "workers: 4\ndetect:\n  zscore:\n    treshold: 4\n", &err),
                     -EINVAL);
    ck_assert_str_eq(err.msg, "config: unknown key \"detect.zscore.treshold\" (did you mean "
                              "\"detect.zscore.threshold\"?) at t.yaml:4");

    ck_assert_int_eq(load_text(cfg, "workers: 4\nbogus: 1\n", &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: unknown key \"bogus\" at t.yaml:2");

    ck_assert_int_eq(load_text(cfg, "workers: 4\nname: x\n}\n", &err), -EINVAL);
    ck_assert_msg(strncmp(err.msg, "config: YAML syntax error: ", 27) == 0, "%s", err.msg);
    ck_assert_msg(strstr(err.msg, " at t.yaml:3") != NULL, "%s", err.msg);

    ck_assert_int_eq(load_text(cfg, "detect:\n  mode: iqr\n bad: 1\n", &err), -EINVAL);
    ck_assert_msg(strstr(err.msg, "syntax error") != NULL && strstr(err.msg, "t.yaml:3"), "%s",
                  err.msg);

    ck_assert_int_eq(load_text(cfg, "\n\nworkers: many\n", &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: workers: must be an integer between 1 and 64 "
                              "(got \"many\") at t.yaml:3");

    ck_assert_int_eq(load_text(cfg, "name: this-is-far-too-long-for-sixteen\n", &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: name: must be a string of at most 15 bytes "
                              "(got \"this-is-far-too-long-for-sixteen\") at t.yaml:1");

    ck_assert_int_eq(load_text(cfg, "workers:\n  count: 3\n", &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: workers: must be an integer between 1 and 64, not a "
                              "mapping at t.yaml:2");

    ck_assert_int_eq(load_text(cfg, "workers: [1, 2]\n", &err), -EINVAL);
    ck_assert_msg(strstr(err.msg, "not a list at t.yaml:1") != NULL, "%s", err.msg);

    ck_assert_int_eq(load_text(cfg, "detect: 3\n", &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: detect: is a section and needs a mapping, not a value at "
                              "t.yaml:1");

    ck_assert_int_eq(load_text(cfg, "workers: 2\nworkers: 3\n", &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: workers: duplicate key at t.yaml:2 (first at line 1)");

    ck_assert_int_eq(load_text(cfg, "- a\n- b\n", &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: the top level must be a mapping at t.yaml:1");

    ck_assert_int_eq(load_text(cfg, "a: &x 1\nworkers: *x\n", &err), -EINVAL);

    ck_assert_int_eq(load_text(cfg, "workers: 2\n---\nworkers: 3\n", &err), -EINVAL);
    ck_assert_msg(strstr(err.msg, "one YAML document") != NULL, "%s", err.msg);

    /* Dotted keys, lists, empty documents and null sections are fine. */
    ck_assert_int_eq(load_text(cfg, "", &err), 0);
    ck_assert_int_eq(load_text(cfg, "# only a comment\n", &err), 0);
    ck_assert_int_eq(load_text(cfg,
                               "detect.zscore.threshold: 7\n"
                               "detect:\n"
                               "  models:\n"
                               "    - gpt-4o\n"
                               "    - \"claude-3\"\n"
                               "spool:\n"
                               "otlp: {grpc_endpoint: \"[::1]:4317\"}\n",
                               &err),
                     0);
    ck_assert_double_eq(c.threshold, 7.0);
    ck_assert_int_eq(c.models.count, 2);
    ck_assert_str_eq(c.models.items[1], "claude-3");
    ck_assert_str_eq(c.listen.host, "::1");
    ck_assert_int_eq(load_text(cfg, "detect:\n  models: [a, {b: c}]\n", &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: detect.models: list items must be strings at t.yaml:2");

    /* Quoted "null" is a string; a plain empty value clears a string. */
    ck_assert_int_eq(load_text(cfg, "name: \"null\"\n", &err), 0);
    ck_assert_str_eq(c.name, "null");
    ck_assert_int_eq(load_text(cfg, "name:\n", &err), 0);
    ck_assert_str_eq(c.name, "");
    sn_config_destroy(cfg);
}
END_TEST

START_TEST(file_limits)
{
    test_cfg c;
    sn_config *cfg = make(&c);
    sn_config_error err;
    ck_assert_int_eq(sn_config_load_file(cfg, "/nonexistent/sentinel.yaml", &err), -ENOENT);
    ck_assert_str_eq(err.msg,
                     "config: cannot read /nonexistent/sentinel.yaml: No such file or directory");

    /* Too deep. */
    char deep[512];
    size_t pos = 0;
    for (int i = 0; i < 20; i++)
        pos += (size_t)snprintf(deep + pos, sizeof deep - pos, "%*sdetect:\n", i * 2, "");
    ck_assert_int_eq(load_text(cfg, deep, &err), -EINVAL);

    /* Too big. */
    size_t big = SN_CONFIG_FILE_MAX + 10;
    char *text = malloc(big + 1);
    ck_assert_ptr_nonnull(text);
    memset(text, '#', big);
    text[big] = '\0';
    char path[64];
    temp_yaml(path, sizeof path, text);
    ck_assert_int_eq(sn_config_load_file(cfg, path, &err), -EFBIG);
    ck_assert_msg(strstr(err.msg, "larger than") != NULL, "%s", err.msg);
    unlink(path);
    free(text);

    /* Values longer than the value limit. */
    char *longval = malloc(SN_CONFIG_VALUE_MAX + 16);
    memset(longval, 'a', SN_CONFIG_VALUE_MAX + 10);
    longval[SN_CONFIG_VALUE_MAX + 10] = '\0';
    ck_assert_int_eq(sn_config_set(cfg, "detect.models", longval, NULL, &err), -EINVAL);
    ck_assert_msg(strstr(err.msg, "value longer than") != NULL, "%s", err.msg);
    free(longval);
    sn_config_destroy(cfg);
}
END_TEST

START_TEST(bad_tables_are_refused)
{
    test_cfg c;
    sn_config *cfg;
    sn_config_error err;
    sn_config_desc dup[] = {descs[0], descs[0]};
    ck_assert_int_eq(sn_config_create(&cfg, dup, 2, &c, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: enabled: declared twice");
    sn_config_desc section[] = {
        SN_CFG_STRING("spool", test_cfg, name, "", "x"),
        SN_CFG_STRING("spool.dir", test_cfg, spool.dir, "", "x"),
    };
    ck_assert_int_eq(sn_config_create(&cfg, section, 2, &c, &err), -EINVAL);
    sn_config_desc wrong_size[] = {{.path = "x", .type = SN_CONFIG_INT, .size = 4}};
    ck_assert_int_eq(sn_config_create(&cfg, wrong_size, 1, &c, &err), -EINVAL);
    sn_config_desc bad_path[] = {SN_CFG_STRING("Spool..dir", test_cfg, name, "", "x")};
    ck_assert_int_eq(sn_config_create(&cfg, bad_path, 1, &c, &err), -EINVAL);
    sn_config_desc same_env[] = {
        SN_CFG_STRING("a.b", test_cfg, name, "", "x"),
        SN_CFG_STRING("a_b", test_cfg, spool.dir, "", "x"),
    };
    ck_assert_int_eq(sn_config_create(&cfg, same_env, 2, &c, &err), -EINVAL);
    ck_assert_msg(strstr(err.msg, "SENTINEL_A_B") != NULL, "%s", err.msg);
    sn_config_desc bad_default[] = {SN_CFG_INT("n", test_cfg, workers, "zero", 1, 2, "x")};
    ck_assert_int_eq(sn_config_create(&cfg, bad_default, 1, &c, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: n: must be an integer between 1 and 2 (got \"zero\") in the "
                              "default");
}
END_TEST

START_TEST(runtime_built_descriptors)
{
    /* One threshold per metric, paths built at run time. */
    static const char *const metrics[] = {"latency_ms", "ttft_ms", "cost_usd"};
    double thresholds[3];
    char paths[3][SN_CONFIG_PATH_MAX];
    sn_config_desc d[3];
    for (int i = 0; i < 3; i++) {
        snprintf(paths[i], sizeof paths[i], "detect.metrics.%s.zscore.threshold", metrics[i]);
        d[i] = (sn_config_desc){.path = paths[i],
                                .type = SN_CONFIG_DOUBLE,
                                .offset = (size_t)i * sizeof(double),
                                .size = sizeof(double),
                                .def = "3",
                                .flags = SN_CONFIG_HAS_MIN | SN_CONFIG_MIN_EXCL,
                                .help = "z threshold"};
    }
    sn_config *cfg;
    sn_config_error err;
    ck_assert_int_eq(sn_config_create(&cfg, d, 3, thresholds, &err), 0);
    ck_assert_int_eq(load_text(cfg,
                               "detect:\n  metrics:\n    ttft_ms:\n      zscore:\n"
                               "        threshold: 6\n",
                               &err),
                     0);
    ck_assert_double_eq(thresholds[0], 3.0);
    ck_assert_double_eq(thresholds[1], 6.0);
    setenv("SENTINEL_DETECT_METRICS_COST_USD_ZSCORE_THRESHOLD", "4.5", 1);
    ck_assert_int_eq(sn_config_load_env(cfg, &err), 0);
    unsetenv("SENTINEL_DETECT_METRICS_COST_USD_ZSCORE_THRESHOLD");
    ck_assert_double_eq(thresholds[2], 4.5);
    sn_config_destroy(cfg);
}
END_TEST

START_TEST(dump_redacts_secrets)
{
    test_cfg c;
    sn_config *cfg = make(&c);
    sn_config_error err;
    json_t *j = sn_config_dump_json(cfg);
    ck_assert_ptr_nonnull(j);
    /* An unset secret shows as empty. */
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "api"), "token")), "");
    json_decref(j);

    ck_assert_int_eq(sn_config_set(cfg, "api.token", "s3cr3t", NULL, &err), 0);
    ck_assert_int_eq(sn_config_set(cfg, "aggregator.address", "[::1]:9090", NULL, &err), 0);
    j = sn_config_dump_json(cfg);
    char *text = json_dumps(j, JSON_SORT_KEYS);
    ck_assert_ptr_null(strstr(text, "s3cr3t"));
    free(text);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "api"), "token")),
                     "<redacted>");
    json_t *detect = json_object_get(j, "detect");
    ck_assert_double_eq(
        json_real_value(json_object_get(json_object_get(detect, "zscore"), "threshold")), 3.0);
    ck_assert_str_eq(json_string_value(json_object_get(detect, "window")), "5m");
    ck_assert_str_eq(json_string_value(json_object_get(detect, "mode")), "zscore");
    ck_assert_int_eq(json_array_size(json_object_get(detect, "models")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "spool"), "max_bytes")),
                     "16MiB");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(j, "aggregator"), "address")),
        "[::1]:9090");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "workers")), 4);
    ck_assert(json_is_true(json_object_get(j, "enabled")));
    json_decref(j);
    sn_config_destroy(cfg);
}
END_TEST

START_TEST(apply_json_is_atomic)
{
    test_cfg c;
    sn_config *cfg = make(&c);
    sn_config_error err;
    size_t changed = 99;
    json_error_t jerr;

    /* One bad value: nothing changes. */
    json_t *j = json_loads("{\"detect\":{\"ratio\":0.25,\"models\":[\"a\"]},"
                           "\"api.token\":\"new\",\"detect.ratio\":7}",
                           0, &jerr);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(sn_config_apply_json(cfg, j, &changed, &err), -EINVAL);
    json_decref(j);
    ck_assert_double_eq(c.ratio, 0.5);
    ck_assert_int_eq(c.models.count, 2);
    ck_assert_str_eq(c.token, "");
    ck_assert_int_eq(changed, 99);

    j = json_loads("{\"detect\":{\"ratio\":0.25,\"models\":[\"a\"]},\"api.token\":\"new\","
                   "\"detect.models\":\"x\"}",
                   0, &jerr);
    ck_assert_int_eq(sn_config_apply_json(cfg, j, &changed, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: detect.models: set twice in the API request");
    json_decref(j);

    j = json_loads("{\"detect\":{\"ratio\":\"abc\"}}", 0, &jerr);
    ck_assert_int_eq(sn_config_apply_json(cfg, j, NULL, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: detect.ratio: must be a number >= 0 and < 1 (got \"abc\") "
                              "in the API request");
    json_decref(j);

    j = json_loads("{\"workers\":8}", 0, &jerr);
    ck_assert_int_eq(sn_config_apply_json(cfg, j, NULL, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: workers: cannot be changed at run time (restart needed)");
    json_decref(j);

    j = json_loads("{\"detect\":{\"nope\":1}}", 0, &jerr);
    ck_assert_int_eq(sn_config_apply_json(cfg, j, NULL, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: unknown setting \"detect.nope\" (did you mean "
                              "\"detect.mode\"?) in the API request");
    json_decref(j);

    j = json_loads("{\"detect\":{\"ratio\":{\"x\":1}}}", 0, &jerr);
    ck_assert_int_eq(sn_config_apply_json(cfg, j, NULL, &err), -EINVAL);
    json_decref(j);

    /* All good: everything applies. */
    j = json_loads("{\"detect\":{\"ratio\":0.25,\"models\":[\"a\",\"b\",\"c\"]},"
                   "\"api.token\":\"new\"}",
                   0, &jerr);
    ck_assert_int_eq(sn_config_apply_json(cfg, j, &changed, &err), 0);
    json_decref(j);
    ck_assert_int_eq(changed, 3);
    ck_assert_double_eq(c.ratio, 0.25);
    ck_assert_int_eq(c.models.count, 3);
    ck_assert_str_eq(c.token, "new");
    char where[64];
    ck_assert_int_eq(sn_config_origin(cfg, "detect.ratio", where, sizeof where),
                     SN_CONFIG_FROM_API);
    /* Same values again: applied, nothing changed. */
    j = json_loads("{\"detect.ratio\":0.25}", 0, &jerr);
    ck_assert_int_eq(sn_config_apply_json(cfg, j, &changed, &err), 0);
    ck_assert_int_eq(changed, 0);
    json_decref(j);
    /* A dump posted back applies and changes nothing, the redacted secret included. */
    j = sn_config_dump_json(cfg);
    ck_assert_int_eq(sn_config_apply_json(cfg, j, &changed, &err), 0);
    ck_assert_int_eq(changed, 0);
    ck_assert_str_eq(c.token, "new");
    /* ... and a change to a restart-only setting in it is still refused. */
    json_object_set_new(j, "workers", json_integer(9));
    ck_assert_int_eq(sn_config_apply_json(cfg, j, &changed, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "config: workers: cannot be changed at run time (restart needed)");
    json_decref(j);
    j = json_array();
    ck_assert_int_eq(sn_config_apply_json(cfg, j, NULL, &err), -EINVAL);
    json_decref(j);
    sn_config_destroy(cfg);
}
END_TEST

START_TEST(describe_and_format)
{
    char buf[256];
    sn_config_describe(&descs[2], buf, sizeof buf);
    ck_assert_str_eq(buf, "a number > 0");
    sn_config_describe(&descs[10], buf, sizeof buf);
    ck_assert_str_eq(buf, "host:port (IPv6 in brackets) or \"\" for none");
    test_cfg c;
    sn_config *cfg = make(&c);
    sn_config_format_value(&descs[7], &c, buf, sizeof buf);
    ck_assert_str_eq(buf, "5m");
    sn_config_format_value(&descs[11], &c, buf, sizeof buf);
    ck_assert_str_eq(buf, "gpt-4o,claude");
    sn_config_format_value(&descs[2], &c, buf, sizeof buf);
    ck_assert_str_eq(buf, "3");
    size_t n;
    ck_assert_ptr_eq(sn_config_descriptors(cfg, &n), descs);
    ck_assert_int_eq(n, NDESCS);
    ck_assert_ptr_eq(sn_config_find(cfg, "spool.dir"), &descs[12]);
    ck_assert_ptr_null(sn_config_find(cfg, "spool"));
    sn_config_destroy(cfg);
}
END_TEST

START_TEST(mutated_yaml_never_crashes)
{
    /* Byte mutations of a valid file: every outcome is 0 or -EINVAL with a message, never a
     * crash (the sanitizer build checks memory safety). Deterministic seed. */
    static const char base[] = "workers: 8\n"
                               "detect:\n"
                               "  zscore: {threshold: 4}\n"
                               "  models: [a, \"b\"]\n"
                               "  window: 1m30s\n"
                               "otlp.grpc_endpoint: \"[::1]:4317\"\n"
                               "spool: {max_bytes: 1GiB, dir: /x}\n";
    static const char alphabet[] = " \n\t:-[]{},\"'&*!|>#%@`?\\\x01\xff"
                                   "0a.";
    unsigned seed = 12345;
    char buf[sizeof base];
    for (int round = 0; round < 3000; round++) {
        memcpy(buf, base, sizeof base);
        int edits = 1 + round % 4;
        for (int e = 0; e < edits; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % (sizeof base - 1);
            seed = seed * 1103515245u + 12345u;
            buf[at] = alphabet[(seed >> 8) % (sizeof alphabet - 1)];
        }
        test_cfg c;
        sn_config *cfg = make(&c);
        sn_config_error err = {{0}};
        int rc = sn_config_load_yaml(cfg, buf, sizeof base - 1, "fuzz.yaml", &err);
        ck_assert(rc == 0 || rc == -EINVAL);
        if (rc != 0)
            ck_assert_msg(strncmp(err.msg, "config: ", 8) == 0 && strchr(err.msg, '\n') == NULL,
                          "%s", err.msg);
        sn_config_destroy(cfg);
    }
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, defaults_are_applied);
    tcase_add_test(tc, durations_parse);
    tcase_add_test(tc, sizes_parse);
    tcase_add_test(tc, addresses_parse);
    tcase_add_test(tc, bools_ints_doubles_enums_strings);
    tcase_add_test(tc, secrets_are_not_echoed);
    tcase_add_test(tc, env_names_derived_and_explicit);
    tcase_add_test(tc, precedence_defaults_file_env_flags);
    tcase_add_test(tc, yaml_errors_name_the_line);
    tcase_add_test(tc, file_limits);
    tcase_add_test(tc, bad_tables_are_refused);
    tcase_add_test(tc, runtime_built_descriptors);
    tcase_add_test(tc, dump_redacts_secrets);
    tcase_add_test(tc, apply_json_is_atomic);
    tcase_add_test(tc, describe_and_format);
    tcase_add_test(tc, mutated_yaml_never_crashes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
