/*
 * libFuzzer target for the YAML configuration loader (shared/config.c, sn_config_load_yaml)
 * with a small descriptor table holding every setting type, nested and dotted paths, a secret
 * and a list.
 *
 * Every input must load (0) or fail with -EINVAL and a one-line message, without a sanitizer
 * finding or a leak; whatever loaded must dump to JSON and keep string settings terminated.
 */
#include "config.h"
#include "fuzz_common.h"

#include <errno.h>

typedef struct fuzz_cfg {
    bool enabled;
    int64_t workers;
    double threshold;
    char name[16];
    char token[32];
    int mode;
    int64_t window;
    int64_t max_bytes;
    sn_config_address listen;
    sn_config_address upstream;
    sn_config_list models;
} fuzz_cfg;

static const char *const modes[] = {"zscore", "iqr", "mad", NULL};

static const sn_config_desc descs[] = {
    SN_CFG_BOOL("enabled", fuzz_cfg, enabled, "true", "turn it on"),
    SN_CFG_INT("workers", fuzz_cfg, workers, "4", 1, 64, "worker threads"),
    SN_CFG_POSITIVE("detect.zscore.threshold", fuzz_cfg, threshold, "3.0", "threshold"),
    SN_CFG_STRING("name", fuzz_cfg, name, "sentinel", "a name"),
    {.path = "api.token",
     .type = SN_CONFIG_STRING,
     .offset = offsetof(fuzz_cfg, token),
     .size = sizeof(((fuzz_cfg *)0)->token),
     .flags = SN_CONFIG_SECRET,
     .help = "bearer token"},
    SN_CFG_ENUM("detect.mode", fuzz_cfg, mode, "zscore", modes, "detector"),
    SN_CFG_DURATION("detect.window", fuzz_cfg, window, "5m", SN_NS_PER_MS,
                    7 * 86400 * SN_NS_PER_SEC, "window"),
    SN_CFG_SIZE("spool.max_bytes", fuzz_cfg, max_bytes, "16MiB", 0, INT64_MAX, "spool size"),
    SN_CFG_ADDRESS("otlp.grpc_endpoint", fuzz_cfg, listen, "127.0.0.1:4317", "listen"),
    {.path = "aggregator.address",
     .type = SN_CONFIG_ADDRESS,
     .offset = offsetof(fuzz_cfg, upstream),
     .size = sizeof(sn_config_address),
     .flags = SN_CONFIG_OPTIONAL,
     .help = "aggregator"},
    SN_CFG_LIST("detect.models", fuzz_cfg, models, "gpt-4o, claude", "models"),
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_cfg target;
    sn_config *cfg;
    sn_config_error err;
    if (sn_config_create(&cfg, descs, sizeof descs / sizeof descs[0], &target, &err) != 0)
        abort();
    err.msg[0] = '\0';
    int rc = sn_config_load_yaml(cfg, (const char *)data, size, "fuzz.yaml", &err);
    if (rc == -EINVAL || rc == -EFBIG)
        sn_fuzz_check_err(err.msg, sizeof err.msg);
    else if (rc != 0)
        abort();
    /* Whatever was applied is a valid value of its type. */
    sn_fuzz_check_str(target.name, sizeof target.name);
    sn_fuzz_check_str(target.token, sizeof target.token);
    sn_fuzz_check_str(target.listen.host, sizeof target.listen.host);
    sn_fuzz_check_str(target.upstream.host, sizeof target.upstream.host);
    if (target.models.count > SN_CONFIG_LIST_MAX)
        abort();
    for (uint32_t i = 0; i < target.models.count; i++)
        sn_fuzz_check_str(target.models.items[i], SN_CONFIG_ITEM_MAX);
    if (target.workers < 1 || target.workers > 64 || !(target.threshold > 0) || target.mode < 0 ||
        target.mode > 2)
        abort();
    json_t *dump = sn_config_dump_json(cfg);
    if (dump == NULL)
        abort();
    json_decref(dump);
    sn_config_destroy(cfg);
    return 0;
}
