/*
 * cli.h -- the command line every LLM-Sentinel program shares.
 *
 * Common options: -h/--help, --version, -c/--config FILE (else $SENTINEL_CONFIG),
 * --log-format json|text, --log-level LEVEL, and repeated --set PATH=VALUE; plus the program's
 * own flags from an sn_cli_flag table, each mapped onto a config path or a callback. Options may
 * be written "--name value" or "--name=value"; "--" ends them; the rest are positional arguments.
 *
 * sn_cli_load() runs the whole chain -- defaults, YAML file, environment, then the command line
 * in the order written -- configures the logger, and tells main what to do:
 *
 *   sn_cli_result res;
 *   int rc = sn_cli_load(argc, argv, &info, descs, n, &cfg, &res);
 *   if (rc != SN_CLI_RUN)
 *       return sn_cli_exit_status(rc); // 0 after --help/--version, 2 after a usage/config error
 *   ...
 *   sn_cli_result_cleanup(&res);
 *
 * The library never calls exit(). Help and version go to info->out (stdout by default); a usage
 * or config error is logged as one error line naming the bad setting (JSON unless
 * --log-format text came first) and kept in res.error.
 */
#ifndef SN_CLI_H
#define SN_CLI_H

#include "config.h"
#include "log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* What sn_cli_load tells main. */
typedef enum sn_cli_outcome {
    SN_CLI_RUN = 0,  /* configured: run the program */
    SN_CLI_EXIT = 1, /* --help or --version was printed: exit 0 */
    SN_CLI_USAGE = 2 /* bad usage or config, logged: exit 2 */
} sn_cli_outcome;

/* A flag's callback, for flags that are not simply a config path. value is NULL for flags
 * without a value. Return 0, or -EINVAL with a one-line message in err (no "config: " prefix
 * needed). */
typedef int (*sn_cli_callback)(void *ud, const char *value, sn_config_error *err);

typedef struct sn_cli_flag {
    const char *name; /* long name without the dashes: "spool-dir" */
    char short_name;  /* 0 for none */
    bool takes_value;
    const char *metavar;   /* "DIR" in the help; "VALUE" when NULL */
    const char *path;      /* config path the value goes to, or NULL */
    const char *set_value; /* for flags without a value mapped to a path: the value set ("true") */
    sn_cli_callback cb;    /* used when path is NULL */
    void *ud;
    const char *help; /* one line; NULL = the descriptor's help */
} sn_cli_flag;

/* Validates the loaded config as a whole (cross-field rules). Return 0, or -EINVAL with a
 * message naming the setting in err ("config: spool.max_bytes: must be >= ..."). */
typedef int (*sn_cli_validate)(void *config, sn_config_error *err);

typedef struct sn_program_info {
    const char *name;       /* "sentinel-sidecar" */
    const char *version;    /* "0.1.0" */
    const char *component;  /* logger component: "sidecar" */
    const char *summary;    /* one line for the help */
    const char *positional; /* "FILE..." in the usage line; NULL = no positional arguments */
    const sn_cli_flag *flags;
    size_t nflags;
    sn_cli_validate validate; /* optional */
    FILE *out;                /* help and version; NULL = stdout */
} sn_program_info;

typedef struct sn_cli_result {
    sn_config *config; /* bound to the program's struct; freed by sn_cli_result_cleanup */
    char **args;       /* positional arguments (pointers into argv) */
    int nargs;
    const char *config_file; /* the file loaded, or NULL (points into argv or the environment) */
    sn_log_format log_format;
    sn_log_level log_level;
    char error[SN_CONFIG_ERROR_MAX]; /* the one-line error after SN_CLI_USAGE */
} sn_cli_result;

/* Settings for the logger that a program can put in its own table so that log.level and
 * log.format also come from YAML and SENTINEL_LOG_LEVEL / SENTINEL_LOG_FORMAT; --log-level and
 * --log-format then map onto them. T is the config struct, F an sn_cli_log_settings member. */
typedef struct sn_cli_log_settings {
    int level;  /* sn_log_level */
    int format; /* sn_log_format */
} sn_cli_log_settings;

#define SN_CLI_LOG_DESCRIPTORS(T, F)                                                               \
    SN_CFG_ENUM("log.level", T, F.level, "info", sn_log_level_names,                               \
                "minimum level logged: debug, info, warn or error"),                               \
        SN_CFG_ENUM("log.format", T, F.format, "json", sn_log_format_names,                        \
                    "log line format: json (one object per line) or text")

/* Parses argv, loads the configuration into config from every source and configures the
 * logger. Returns an sn_cli_outcome; on SN_CLI_RUN, res->config is the live handle (for dumps
 * and API changes) and must be released with sn_cli_result_cleanup. On the other outcomes
 * nothing needs releasing (cleanup is still safe). The tables must outlive res->config. */
int sn_cli_load(int argc, char **argv, const sn_program_info *info, const sn_config_desc *descs,
                size_t ndescs, void *config, sn_cli_result *res);

/* The exit status for an outcome: 0 for SN_CLI_RUN and SN_CLI_EXIT, 2 for SN_CLI_USAGE. */
int sn_cli_exit_status(int outcome);

/* Writes the help text (usage, options, settings with their environment names and defaults)
 * to out. */
void sn_cli_print_help(FILE *out, const sn_program_info *info, const sn_config_desc *descs,
                       size_t ndescs);

/* Frees res->config; res can be reused afterwards. */
void sn_cli_result_cleanup(sn_cli_result *res);

#endif
