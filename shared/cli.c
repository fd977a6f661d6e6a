/*
 * cli.c -- argument parsing, help text and the defaults -> file -> env -> flags chain.
 *
 * Parsing happens in two passes over argv. The first recognises every option (so an unknown
 * flag or a missing value is reported before anything is loaded), handles --help and --version,
 * and records the config file and log options. The second applies --set and the program's flags
 * to the config in the order written, after the file and the environment.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef enum builtin {
    OPT_NONE = 0,
    OPT_HELP,
    OPT_VERSION,
    OPT_CONFIG,
    OPT_SET,
    OPT_LOG_FORMAT,
    OPT_LOG_LEVEL,
    OPT_PROGRAM /* an entry of info->flags */
} builtin;

typedef struct option_ref {
    builtin kind;
    const sn_cli_flag *flag; /* OPT_PROGRAM */
} option_ref;

static const struct {
    const char *name;
    char short_name;
    bool takes_value;
    builtin kind;
    const char *metavar;
    const char *help;
} builtins[] = {
    {"help", 'h', false, OPT_HELP, NULL, "show this help and exit"},
    {"version", 0, false, OPT_VERSION, NULL, "print the version and exit"},
    {"config", 'c', true, OPT_CONFIG, "FILE",
     "read settings from a YAML file (env SENTINEL_CONFIG)"},
    {"set", 0, true, OPT_SET, "PATH=VALUE", "set one setting; repeatable; wins over file and env"},
    {"log-format", 0, true, OPT_LOG_FORMAT, "FORMAT", "log format: json (default) or text"},
    {"log-level", 0, true, OPT_LOG_LEVEL, "LEVEL", "minimum log level: debug, info, warn, error"},
};
#define NBUILTINS (sizeof builtins / sizeof builtins[0])

static void set_msg(sn_cli_result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_msg(sn_cli_result *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->error, sizeof res->error, fmt, ap);
    va_end(ap);
}

static bool takes_value(const option_ref *o)
{
    if (o->kind == OPT_PROGRAM)
        return o->flag->takes_value;
    for (size_t i = 0; i < NBUILTINS; i++)
        if (builtins[i].kind == o->kind)
            return builtins[i].takes_value;
    return false;
}

/* Finds an option by long name (len bytes) or short letter. Program flags may not shadow the
 * built-in ones: built-ins are searched first. */
static option_ref find_option(const sn_program_info *info, const char *name, size_t len,
                              char short_name)
{
    option_ref r = {OPT_NONE, NULL};
    for (size_t i = 0; i < NBUILTINS; i++) {
        if ((name != NULL && strlen(builtins[i].name) == len &&
             strncmp(builtins[i].name, name, len) == 0) ||
            (name == NULL && short_name != 0 && builtins[i].short_name == short_name)) {
            r.kind = builtins[i].kind;
            return r;
        }
    }
    for (size_t i = 0; i < info->nflags; i++) {
        const sn_cli_flag *f = &info->flags[i];
        if ((name != NULL && strlen(f->name) == len && strncmp(f->name, name, len) == 0) ||
            (name == NULL && short_name != 0 && f->short_name == short_name)) {
            r.kind = OPT_PROGRAM;
            r.flag = f;
            return r;
        }
    }
    return r;
}

/* One parsed option occurrence. */
typedef struct occurrence {
    option_ref opt;
    const char *value;   /* NULL for options without a value */
    const char *spelled; /* argv element as written, for messages */
} occurrence;

/* Reads the option at argv[*i] into *occ, advancing *i past a separate value. Returns 0, 1 when
 * argv[*i] is not an option (positional or after "--"), or -EINVAL with res->error set. */
static int parse_one(int argc, char **argv, int *i, const sn_program_info *info, occurrence *occ,
                     sn_cli_result *res)
{
    const char *a = argv[*i];
    const char *inline_value = NULL;
    if (a[0] != '-' || a[1] == '\0')
        return 1;
    if (a[1] == '-') {
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        occ->opt = find_option(info, name, len, 0);
        if (eq != NULL)
            inline_value = eq + 1;
    } else {
        if (a[2] != '\0') {
            set_msg(res, "unknown option \"%s\" (options are --name or a single -x)", a);
            return -EINVAL;
        }
        occ->opt = find_option(info, NULL, 0, a[1]);
    }
    occ->spelled = a;
    if (occ->opt.kind == OPT_NONE) {
        set_msg(res, "unknown option \"%.*s\"", (int)strcspn(a, "="), a);
        return -EINVAL;
    }
    if (!takes_value(&occ->opt)) {
        if (inline_value != NULL) {
            set_msg(res, "option \"%.*s\" takes no value", (int)strcspn(a, "="), a);
            return -EINVAL;
        }
        occ->value = NULL;
        return 0;
    }
    if (inline_value != NULL) {
        occ->value = inline_value;
        return 0;
    }
    if (*i + 1 >= argc) {
        set_msg(res, "option \"%s\" needs a value", a);
        return -EINVAL;
    }
    *i += 1;
    occ->value = argv[*i];
    return 0;
}

static void flag_usage(const char *long_name, char short_name, bool takes, const char *metavar,
                       char *buf, size_t len)
{
    if (short_name != 0)
        snprintf(buf, len, "-%c, --%s%s%s", short_name, long_name, takes ? " " : "",
                 takes ? (metavar ? metavar : "VALUE") : "");
    else
        snprintf(buf, len, "    --%s%s%s", long_name, takes ? " " : "",
                 takes ? (metavar ? metavar : "VALUE") : "");
}

void sn_cli_print_help(FILE *out, const sn_program_info *info, const sn_config_desc *descs,
                       size_t ndescs)
{
    char left[160];
    fprintf(out, "Usage: %s [OPTIONS]%s%s\n", info->name, info->positional ? " " : "",
            info->positional ? info->positional : "");
    if (info->summary != NULL)
        fprintf(out, "%s\n", info->summary);
    fprintf(out, "\nOptions:\n");
    for (size_t i = 0; i < NBUILTINS; i++) {
        flag_usage(builtins[i].name, builtins[i].short_name, builtins[i].takes_value,
                   builtins[i].metavar, left, sizeof left);
        fprintf(out, "  %-28s %s\n", left, builtins[i].help);
    }
    for (size_t i = 0; i < info->nflags; i++) {
        const sn_cli_flag *f = &info->flags[i];
        const char *help = f->help;
        if (help == NULL && f->path != NULL) {
            for (size_t k = 0; k < ndescs; k++)
                if (strcmp(descs[k].path, f->path) == 0)
                    help = descs[k].help;
        }
        flag_usage(f->name, f->short_name, f->takes_value, f->metavar, left, sizeof left);
        fprintf(out, "  %-28s %s", left, help ? help : "");
        if (f->path != NULL)
            fprintf(out, " (%s)", f->path);
        fprintf(out, "\n");
    }
    if (ndescs == 0)
        return;
    fprintf(out, "\nSettings (YAML path, environment variable; sources in increasing priority:\n"
                 "defaults, --config file, environment, --set and flags):\n");
    for (size_t i = 0; i < ndescs; i++) {
        const sn_config_desc *d = &descs[i];
        char env[SN_CONFIG_PATH_MAX + 16], what[256];
        sn_config_env_name(d, env, sizeof env);
        sn_config_describe(d, what, sizeof what);
        fprintf(out, "  %s  %s\n      %s; %s", d->path, env, d->help ? d->help : "", what);
        if (d->def != NULL && d->def[0] != '\0' && !(d->flags & SN_CONFIG_SECRET))
            fprintf(out, "; default %s", d->def);
        fprintf(out, "\n");
    }
}

/* Logs the one-line error and returns SN_CLI_USAGE. */
static int usage_error(const sn_program_info *info, sn_cli_result *res)
{
    sn_log_error(res->error, SN_LOG_STR("program", info->name), SN_LOG_STR("hint", "see --help"));
    if (res->config != NULL) {
        sn_config_destroy(res->config);
        res->config = NULL;
    }
    return SN_CLI_USAGE;
}

/* Applies one command-line option to the config (second pass). */
static int apply_option(sn_config *cfg, const occurrence *occ, sn_config_error *err)
{
    char origin[80];
    switch (occ->opt.kind) {
    case OPT_SET:
        return sn_config_set_assignment(cfg, occ->value, err);
    case OPT_LOG_FORMAT:
    case OPT_LOG_LEVEL: {
        const char *path = occ->opt.kind == OPT_LOG_FORMAT ? "log.format" : "log.level";
        if (sn_config_find(cfg, path) == NULL)
            return 0; /* the program keeps no log settings: applied directly */
        snprintf(origin, sizeof origin, "--%s",
                 occ->opt.kind == OPT_LOG_FORMAT ? "log-format" : "log-level");
        return sn_config_set(cfg, path, occ->value, origin, err);
    }
    case OPT_PROGRAM: {
        const sn_cli_flag *f = occ->opt.flag;
        snprintf(origin, sizeof origin, "--%s", f->name);
        if (f->path != NULL)
            return sn_config_set(
                cfg, f->path, f->takes_value ? occ->value : (f->set_value ? f->set_value : "true"),
                origin, err);
        if (f->cb != NULL) {
            int rc = f->cb(f->ud, occ->value, err);
            if (rc != 0 && err->msg[0] == '\0')
                snprintf(err->msg, sizeof err->msg, "%s: invalid value", origin);
            return rc;
        }
        return 0;
    }
    default:
        return 0;
    }
}

/* Reads an enum setting stored as int, if the program has it. */
static bool read_enum(const sn_config *cfg, const void *config, const char *path, int *out)
{
    const sn_config_desc *d = sn_config_find(cfg, path);
    if (d == NULL || d->type != SN_CONFIG_ENUM)
        return false;
    memcpy(out, (const unsigned char *)config + d->offset, sizeof *out);
    return true;
}

int sn_cli_load(int argc, char **argv, const sn_program_info *info, const sn_config_desc *descs,
                size_t ndescs, void *config, sn_cli_result *res)
{
    FILE *out = info->out != NULL ? info->out : stdout;
    sn_config_error err = {{0}};
    int rc;
    memset(res, 0, sizeof *res);
    res->log_format = SN_LOG_JSON;
    res->log_level = SN_LOG_INFO;
    sn_log_set_component(info->component);
    /* Errors found before the config is loaded follow SENTINEL_LOG_FORMAT already; programs
     * without log.* settings still honour both variables (with them, the config checks them). */
    const char *env_format = getenv("SENTINEL_LOG_FORMAT");
    const char *env_level = getenv("SENTINEL_LOG_LEVEL");
    if (env_format != NULL && sn_log_format_from_name(env_format, &res->log_format) == 0)
        sn_log_set_format(res->log_format);
    if (env_level != NULL && sn_log_level_from_name(env_level, &res->log_level) != 0)
        res->log_level = SN_LOG_INFO;

    occurrence *occs = calloc((size_t)(argc > 0 ? argc : 1), sizeof *occs);
    res->args = calloc((size_t)(argc > 0 ? argc : 1), sizeof *res->args);
    if (occs == NULL || res->args == NULL) {
        set_msg(res, "out of memory");
        rc = usage_error(info, res);
        goto out_free;
    }

    /* Pass 1: recognise everything; help and version win over any other problem. */
    size_t nocc = 0;
    bool help = false, version = false, options_done = false;
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        if (!options_done && strcmp(argv[i], "--") == 0) {
            options_done = true;
            continue;
        }
        int r = options_done ? 1 : parse_one(argc, argv, &i, info, &occs[nocc], res);
        if (r == 1) {
            res->args[res->nargs++] = argv[i];
            continue;
        }
        if (r != 0) {
            bad = bad != 0 ? bad : r; /* keep the first message; look on for --help */
            continue;
        }
        occurrence *o = &occs[nocc++];
        if (o->opt.kind == OPT_HELP)
            help = true;
        else if (o->opt.kind == OPT_VERSION)
            version = true;
        else if (o->opt.kind == OPT_CONFIG)
            res->config_file = o->value;
        else if (o->opt.kind == OPT_LOG_FORMAT) {
            if (sn_log_format_from_name(o->value, &res->log_format) != 0) {
                if (bad == 0)
                    set_msg(res,
                            "config: log.format: must be one of json, text (got \"%.32s\")"
                            " from --log-format",
                            o->value);
                bad = bad != 0 ? bad : -EINVAL;
            } else {
                sn_log_set_format(res->log_format);
            }
        } else if (o->opt.kind == OPT_LOG_LEVEL) {
            if (sn_log_level_from_name(o->value, &res->log_level) != 0) {
                if (bad == 0)
                    set_msg(res,
                            "config: log.level: must be one of debug, info, warn, error"
                            " (got \"%.32s\") from --log-level",
                            o->value);
                bad = bad != 0 ? bad : -EINVAL;
            }
        }
    }
    if (help) {
        sn_cli_print_help(out, info, descs, ndescs);
        rc = SN_CLI_EXIT;
        goto out_free;
    }
    if (version) {
        fprintf(out, "%s %s\n", info->name, info->version ? info->version : "unknown");
        rc = SN_CLI_EXIT;
        goto out_free;
    }
    if (bad != 0) {
        rc = usage_error(info, res);
        goto out_free;
    }
    if (res->nargs > 0 && info->positional == NULL) {
        set_msg(res, "unexpected argument \"%.64s\"", res->args[0]);
        rc = usage_error(info, res);
        goto out_free;
    }

    /* Pass 2: defaults -> file -> environment -> command line. */
    if (sn_config_create(&res->config, descs, ndescs, config, &err) != 0)
        goto out_config_error;
    if (res->config_file == NULL) {
        const char *env = getenv("SENTINEL_CONFIG");
        if (env != NULL && env[0] != '\0')
            res->config_file = env;
    }
    if (res->config_file != NULL && sn_config_load_file(res->config, res->config_file, &err) != 0)
        goto out_config_error;
    if (sn_config_load_env(res->config, &err) != 0)
        goto out_config_error;
    for (size_t k = 0; k < nocc; k++)
        if (apply_option(res->config, &occs[k], &err) != 0)
            goto out_config_error;
    if (info->validate != NULL && info->validate(config, &err) != 0)
        goto out_config_error;

    /* The logger follows the config when the program keeps log settings. */
    int v;
    if (read_enum(res->config, config, "log.level", &v))
        res->log_level = (sn_log_level)v;
    if (read_enum(res->config, config, "log.format", &v))
        res->log_format = (sn_log_format)v;
    sn_log_set_format(res->log_format);
    sn_log_set_level(res->log_level);
    rc = SN_CLI_RUN;
    goto out_free;

out_config_error:
    if (err.msg[0] == '\0')
        snprintf(err.msg, sizeof err.msg, "config: invalid configuration");
    set_msg(res, "%s", err.msg);
    rc = usage_error(info, res);
out_free:
    free(occs);
    if (rc != SN_CLI_RUN) {
        free(res->args);
        res->args = NULL;
        res->nargs = 0;
    }
    return rc;
}

int sn_cli_exit_status(int outcome)
{
    return outcome == SN_CLI_USAGE ? 2 : 0;
}

void sn_cli_result_cleanup(sn_cli_result *res)
{
    sn_config_destroy(res->config);
    res->config = NULL;
    free(res->args);
    res->args = NULL;
    res->nargs = 0;
}
