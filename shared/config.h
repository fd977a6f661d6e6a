/*
 * config.h -- descriptor-driven configuration shared by every LLM-Sentinel program.
 *
 * A program describes each of its settings with an sn_config_desc: a dotted path
 * ("detect.zscore.threshold"), a type, where the value lives in the program's own config struct
 * (offsetof), a default written as text, an optional explicit environment variable and a line
 * of help. The table is plain data, so parts of it can be built at run time (one set of
 * thresholds per metric, say).
 *
 * An sn_config binds one table to one config struct and fills it from, in order (later wins):
 *   defaults -> YAML file -> environment -> command line (--set path=value, dedicated flags).
 * Every value, whatever its source, goes through the same parser, and every error is one line
 * naming the setting and where the bad value came from:
 *   config: detect.zscore.threshold: must be a number > 0 (got "abc") at /etc/sentinel.yaml:12
 *
 * Storage per type (the field the descriptor's offset points at):
 *   SN_CONFIG_BOOL      bool
 *   SN_CONFIG_INT       int64_t
 *   SN_CONFIG_DOUBLE    double (finite)
 *   SN_CONFIG_STRING    char[N], N = the descriptor's size (at most N-1 bytes)
 *   SN_CONFIG_ENUM      int, the index into choices
 *   SN_CONFIG_DURATION  int64_t nanoseconds ("200ms", "5s", "1h30m", "7d")
 *   SN_CONFIG_SIZE      int64_t bytes ("512KiB", "16MiB", "1GB", "64Mi")
 *   SN_CONFIG_ADDRESS   sn_config_address (host and port; "" = not set when SN_CONFIG_OPTIONAL)
 *   SN_CONFIG_LIST      sn_config_list (strings; YAML sequence, else comma-separated text)
 *
 * An sn_config is not thread-safe: it belongs to the thread that owns the program's config
 * struct (the loop thread).
 */
#ifndef SN_CONFIG_H
#define SN_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_CONFIG_PATH_MAX  128          /* longest dotted path, including the NUL */
#define SN_CONFIG_VALUE_MAX 4096         /* longest value text from any source */
#define SN_CONFIG_FILE_MAX  1048576      /* largest YAML file read */
#define SN_CONFIG_DEPTH_MAX 16           /* deepest YAML nesting */
#define SN_CONFIG_ERROR_MAX 512          /* error message buffer */
#define SN_CONFIG_HOST_MAX  256          /* host name or address, including the NUL */
#define SN_CONFIG_LIST_MAX  32           /* items in a list setting */
#define SN_CONFIG_ITEM_MAX  128          /* bytes of one list item, including the NUL */
#define SN_CONFIG_REDACTED  "<redacted>" /* what dumps show for a secret that is set */

typedef enum sn_config_type {
    SN_CONFIG_BOOL = 1,
    SN_CONFIG_INT,
    SN_CONFIG_DOUBLE,
    SN_CONFIG_STRING,
    SN_CONFIG_ENUM,
    SN_CONFIG_DURATION,
    SN_CONFIG_SIZE,
    SN_CONFIG_ADDRESS,
    SN_CONFIG_LIST
} sn_config_type;

/* Descriptor flags. */
enum {
    SN_CONFIG_SECRET = 1u << 0,   /* never shown: redacted in dumps and error messages */
    SN_CONFIG_HAS_MIN = 1u << 1,  /* imin / dmin is a lower bound */
    SN_CONFIG_HAS_MAX = 1u << 2,  /* imax / dmax is an upper bound */
    SN_CONFIG_MIN_EXCL = 1u << 3, /* the lower bound itself is not allowed (doubles) */
    SN_CONFIG_MAX_EXCL = 1u << 4, /* the upper bound itself is not allowed (doubles) */
    SN_CONFIG_OPTIONAL = 1u << 5, /* addresses and numbers: "" or "off" = unset (NAN) */
    SN_CONFIG_LIVE = 1u << 6,     /* may be changed at run time by sn_config_apply_json */
    SN_CONFIG_ANY_PORT = 1u << 7  /* addresses: port 0 (any free port) is allowed */
};

typedef struct sn_config_address {
    char host[SN_CONFIG_HOST_MAX]; /* name, IPv4 or IPv6 (without brackets); "" when unset */
    uint16_t port;
} sn_config_address;

typedef struct sn_config_list {
    uint32_t count;
    char items[SN_CONFIG_LIST_MAX][SN_CONFIG_ITEM_MAX];
} sn_config_list;

typedef struct sn_config_desc {
    const char *path; /* dotted, [a-z0-9_-] segments; unique in the table */
    sn_config_type type;
    size_t offset;              /* of the field in the config struct */
    size_t size;                /* sizeof the field; checked against the type */
    const char *def;            /* default as text, parsed like any other source; NULL = "" */
    const char *env;            /* explicit environment name; NULL = SENTINEL_ + PATH */
    const char *help;           /* one line */
    unsigned flags;             /* SN_CONFIG_* */
    int64_t imin, imax;         /* bounds of INT, DURATION (ns) and SIZE (bytes) */
    double dmin, dmax;          /* bounds of DOUBLE */
    const char *const *choices; /* ENUM names, NULL-terminated */
} sn_config_desc;

/* Where a setting's current value came from. */
typedef enum sn_config_source {
    SN_CONFIG_FROM_DEFAULT = 0,
    SN_CONFIG_FROM_FILE,
    SN_CONFIG_FROM_ENV,
    SN_CONFIG_FROM_FLAG, /* --set or a dedicated flag */
    SN_CONFIG_FROM_API   /* sn_config_apply_json */
} sn_config_source;

typedef struct sn_config_error {
    char msg[SN_CONFIG_ERROR_MAX]; /* one line, no trailing newline; "" when no error */
} sn_config_error;

typedef struct sn_config sn_config;

/* Descriptor helpers. T is the config struct type, F the (possibly nested) field. */
#define SN__CFG(p, ty, T, F, d, h)                                                                 \
    .path = (p), .type = (ty), .offset = offsetof(T, F), .size = sizeof(((T *)0)->F), .def = (d),  \
    .help = (h)
#define SN_CFG_BOOL(p, T, F, d, h)                                                                 \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_BOOL, T, F, d, h)                                                     \
    }
#define SN_CFG_INT(p, T, F, d, lo, hi, h)                                                          \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_INT, T, F, d, h), .flags = SN_CONFIG_HAS_MIN | SN_CONFIG_HAS_MAX,     \
                                               .imin = (lo), .imax = (hi)                          \
    }
#define SN_CFG_DOUBLE(p, T, F, d, lo, hi, h)                                                       \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_DOUBLE, T, F, d, h), .flags = SN_CONFIG_HAS_MIN | SN_CONFIG_HAS_MAX,  \
                                                  .dmin = (lo), .dmax = (hi)                       \
    }
/* A double that must be > 0, with no upper bound ("must be a number > 0"). */
#define SN_CFG_POSITIVE(p, T, F, d, h)                                                             \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_DOUBLE, T, F, d, h), .flags = SN_CONFIG_HAS_MIN | SN_CONFIG_MIN_EXCL, \
                                                  .dmin = 0.0                                      \
    }
#define SN_CFG_STRING(p, T, F, d, h)                                                               \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_STRING, T, F, d, h)                                                   \
    }
#define SN_CFG_ENUM(p, T, F, d, c, h)                                                              \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_ENUM, T, F, d, h), .choices = (c)                                     \
    }
#define SN_CFG_DURATION(p, T, F, d, lo, hi, h)                                                     \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_DURATION, T, F, d, h),                                                \
            .flags = SN_CONFIG_HAS_MIN | SN_CONFIG_HAS_MAX, .imin = (lo), .imax = (hi)             \
    }
#define SN_CFG_SIZE(p, T, F, d, lo, hi, h)                                                         \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_SIZE, T, F, d, h), .flags = SN_CONFIG_HAS_MIN | SN_CONFIG_HAS_MAX,    \
                                                .imin = (lo), .imax = (hi)                         \
    }
#define SN_CFG_ADDRESS(p, T, F, d, h)                                                              \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_ADDRESS, T, F, d, h)                                                  \
    }
#define SN_CFG_LIST(p, T, F, d, h)                                                                 \
    {                                                                                              \
        SN__CFG(p, SN_CONFIG_LIST, T, F, d, h)                                                     \
    }

#define SN_NS_PER_MS  INT64_C(1000000)
#define SN_NS_PER_SEC INT64_C(1000000000)

/* Checks the table (unique paths and env names, valid paths, field sizes that match the types,
 * no path that is both a setting and a section), binds it to target and applies every default.
 * Returns 0 and sets *out; or a negative errno (-EINVAL for a bad table or default, -ENOMEM)
 * with err filled. The table and its strings must outlive the handle; target is written
 * only by this module's functions. Free the handle with sn_config_destroy. */
int sn_config_create(sn_config **out, const sn_config_desc *descs, size_t n, void *target,
                     sn_config_error *err);

/* Frees the handle (not the table, not the target). NULL is allowed. */
void sn_config_destroy(sn_config *cfg);

/* Reads a YAML file (at most SN_CONFIG_FILE_MAX bytes) and applies every key in it. Nested
 * mappings become dotted paths; a key may also be written dotted. Unknown keys, duplicate keys,
 * bad values and YAML syntax errors fail with the file and line in err. Returns 0, -ENOENT and
 * friends when the file cannot be read, -EFBIG when too large, -EINVAL on a config error.
 * Settings applied before a failure keep their new values: callers treat failure as fatal. */
int sn_config_load_file(sn_config *cfg, const char *path, sn_config_error *err);

/* Like sn_config_load_file for YAML held in memory; name is used in error messages. */
int sn_config_load_yaml(sn_config *cfg, const char *yaml, size_t len, const char *name,
                        sn_config_error *err);

/* Applies every descriptor's environment variable that is set (an empty value counts as set).
 * Returns 0 or -EINVAL with the variable named in err. */
int sn_config_load_env(sn_config *cfg, sn_config_error *err);

/* Sets one setting from text, as if from the command line. origin names the source in error
 * messages (e.g. "--set" or "--spool-dir"); NULL means "--set". Returns 0, or -EINVAL when
 * the path is unknown or the value bad (nothing changed). */
int sn_config_set(sn_config *cfg, const char *path, const char *value, const char *origin,
                  sn_config_error *err);

/* Parses "path=value" and applies it like sn_config_set. */
int sn_config_set_assignment(sn_config *cfg, const char *assignment, sn_config_error *err);

/* The effective configuration as a JSON object nested by path; secrets that are set appear as
 * "<redacted>". Durations and sizes are strings ("5s", "16MiB"), addresses "host:port".
 * Returns a new reference (caller json_decref's it) or NULL when out of memory. */
json_t *sn_config_dump_json(const sn_config *cfg);

/* Applies a JSON object of changes atomically: keys nested or dotted, values as JSON scalars
 * (or arrays for lists). All are validated first; if any is unknown, bad, or a change to a
 * setting without SN_CONFIG_LIVE, nothing changes and -EINVAL is returned with the first
 * problem in err. So that a dump can be edited and posted back, a non-live setting restated
 * with its current value and a secret given as SN_CONFIG_REDACTED are accepted and left as
 * they are. On success
 * returns 0 and, when nchanged is not NULL, sets it to the number of settings whose value
 * changed. */
int sn_config_apply_json(sn_config *cfg, const json_t *changes, size_t *nchanged,
                         sn_config_error *err);

/* The descriptor for a path, or NULL. The pointer is into the caller's table. */
const sn_config_desc *sn_config_find(const sn_config *cfg, const char *path);

/* The descriptor table and its length as given to sn_config_create. */
const sn_config_desc *sn_config_descriptors(const sn_config *cfg, size_t *n);

/* Writes where path's value came from ("default", "/etc/x.yaml:12", "environment
 * SENTINEL_X", "--set", "API") into buf. Returns the source, or -1 when path is unknown. */
int sn_config_origin(const sn_config *cfg, const char *path, char *buf, size_t len);

/* Writes d's environment variable name into buf (explicit, else SENTINEL_ + path upper-cased
 * with '.' and '-' turned into '_'). Returns the name's length; truncated if >= len. */
size_t sn_config_env_name(const sn_config_desc *d, char *buf, size_t len);

/* Formats the value stored for d in target as canonical text (what the parser accepts back);
 * secrets are not redacted here. Returns the length, truncated if >= len. */
size_t sn_config_format_value(const sn_config_desc *d, const void *target, char *buf, size_t len);

/* Describes the values d accepts ("a number > 0", "a duration like 5s or 200ms >= 1ms"), for
 * help text and errors. Returns the length, truncated if >= len. */
size_t sn_config_describe(const sn_config_desc *d, char *buf, size_t len);

/* Parsers used by the setting types, exposed for programs and tests. Each parses the whole
 * NUL-terminated text and returns 0, or -EINVAL (bad syntax) / -ERANGE (overflow). */
int sn_config_parse_duration(const char *text, int64_t *ns);
int sn_config_parse_size(const char *text, int64_t *bytes);
int sn_config_parse_address(const char *text, bool allow_port0, sn_config_address *out);
int sn_config_parse_bool(const char *text, bool *out);

/* Canonical text of a duration ("1h30m", "200ms", "0s") or a size ("16MiB", "1500B"). */
size_t sn_config_format_duration(int64_t ns, char *buf, size_t len);
size_t sn_config_format_size(int64_t bytes, char *buf, size_t len);

/* "host:port", with the host in brackets when it is IPv6; "" when unset. */
size_t sn_config_format_address(const sn_config_address *a, char *buf, size_t len);

#endif
