/*
 * log.h -- structured logging for every LLM-Sentinel program.
 *
 * One line per message on stderr (or the fd set with sn_log_set_fd):
 *   json: {"ts":"2026-11-27T13:45:01.123Z","level":"info","component":"sidecar","msg":"listening",
 *          "addr":"127.0.0.1","port":4317}
 *   text: 2026-11-27T13:45:01.123Z INFO  sidecar: listening addr=127.0.0.1 port=4317
 *
 * Fields are typed values in a compound-literal array built by the macros below, so there is no
 * format string to get wrong:
 *   sn_log_info("listening", SN_LOG_STR("addr", host), SN_LOG_INT("port", port));
 *
 * Every string (message, keys, values) is escaped; invalid UTF-8 becomes U+FFFD. A line is
 * formatted into a stack buffer of SN_LOG_LINE_MAX bytes (no allocation) and written with a
 * single write(2) under a mutex, so lines from several threads never interleave. A line that
 * does not fit is cut: the string being written ends in "...", and the JSON object gets
 * "truncated":true (text lines end in " [truncated]"); the line stays valid JSON.
 *
 * The logger is process-wide. Configure it once at start-up (sn_cli_load does); the level may be
 * changed later from any thread.
 */
#ifndef SN_LOG_H
#define SN_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_LOG_LINE_MAX 4096 /* bytes per line, newline included (PIPE_BUF: atomic on pipes) */

typedef enum sn_log_level {
    SN_LOG_DEBUG = 0,
    SN_LOG_INFO,
    SN_LOG_WARN,
    SN_LOG_ERROR,
    SN_LOG_OFF /* as a minimum level: log nothing */
} sn_log_level;

typedef enum sn_log_format { SN_LOG_JSON = 0, SN_LOG_TEXT } sn_log_format;

typedef enum sn_log_field_type {
    SN_LOG_T_END = 0, /* terminates a field array */
    SN_LOG_T_STR,     /* NUL-terminated string; NULL logs as null */
    SN_LOG_T_STRN,    /* string of len bytes */
    SN_LOG_T_INT,
    SN_LOG_T_UINT,
    SN_LOG_T_DBL, /* non-finite values log as null (JSON) / NaN, Inf (text) */
    SN_LOG_T_BOOL,
    SN_LOG_T_ERRNO /* int errno value (positive or negative), logged as its message */
} sn_log_field_type;

typedef struct sn_log_field {
    sn_log_field_type type;
    const char *key;
    union {
        const char *s;
        int64_t i;
        uint64_t u;
        double d;
        bool b;
    } v;
    size_t len; /* SN_LOG_T_STRN only */
} sn_log_field;

#define SN_LOG_STR(k, x) ((sn_log_field){.type = SN_LOG_T_STR, .key = (k), .v.s = (x)})
#define SN_LOG_STRN(k, x, n)                                                                       \
    ((sn_log_field){.type = SN_LOG_T_STRN, .key = (k), .v.s = (x), .len = (n)})
#define SN_LOG_INT(k, x)  ((sn_log_field){.type = SN_LOG_T_INT, .key = (k), .v.i = (int64_t)(x)})
#define SN_LOG_UINT(k, x) ((sn_log_field){.type = SN_LOG_T_UINT, .key = (k), .v.u = (uint64_t)(x)})
#define SN_LOG_DBL(k, x)  ((sn_log_field){.type = SN_LOG_T_DBL, .key = (k), .v.d = (double)(x)})
#define SN_LOG_BOOL(k, x) ((sn_log_field){.type = SN_LOG_T_BOOL, .key = (k), .v.b = (x)})
/* An errno value as key "error" with its message, e.g. SN_LOG_ERRNO(errno) or SN_LOG_ERRNO(rc)
 * for a negative return code. */
#define SN_LOG_ERRNO(e) ((sn_log_field){.type = SN_LOG_T_ERRNO, .key = "error", .v.i = (e)})
#define SN_LOG_END      ((sn_log_field){.type = SN_LOG_T_END})

/* sn_log(level, msg, fields...): fields are SN_LOG_* values; the array is terminated for you.
 * The fields are not evaluated when the level is filtered out. */
#define sn_log(level, msg, ...)                                                                    \
    do {                                                                                           \
        if (sn_log_enabled(level))                                                                 \
            sn_log_emit((level), (msg),                                                            \
                        (const sn_log_field[]){__VA_ARGS__ __VA_OPT__(, ) SN_LOG_END});            \
    } while (0)
#define sn_log_debug(msg, ...) sn_log(SN_LOG_DEBUG, msg __VA_OPT__(, ) __VA_ARGS__)
#define sn_log_info(msg, ...)  sn_log(SN_LOG_INFO, msg __VA_OPT__(, ) __VA_ARGS__)
#define sn_log_warn(msg, ...)  sn_log(SN_LOG_WARN, msg __VA_OPT__(, ) __VA_ARGS__)
#define sn_log_error(msg, ...) sn_log(SN_LOG_ERROR, msg __VA_OPT__(, ) __VA_ARGS__)

/* Writes one line if level passes the minimum. fields ends with an SN_LOG_T_END entry (NULL
 * means no fields). Never fails visibly: a write error is ignored (there is nowhere to report
 * it). Thread-safe. */
void sn_log_emit(sn_log_level level, const char *msg, const sn_log_field *fields);

/* Formats a line exactly as sn_log_emit would, into buf (at most len bytes, len capped at
 * SN_LOG_LINE_MAX, newline included, NUL-terminated when room remains). Returns its length.
 * For tests and for callers that send log lines elsewhere. */
size_t sn_log_format_line(char *buf, size_t len, sn_log_level level, const char *msg,
                          const sn_log_field *fields);

/* True when a message at level would be written. */
bool sn_log_enabled(sn_log_level level);

/* Process-wide settings; safe to call from any thread. component is copied (at most 63 bytes);
 * NULL or "" leaves it out. The default is level info, JSON, fd 2, no component. */
void sn_log_set_level(sn_log_level level);
sn_log_level sn_log_get_level(void);
void sn_log_set_format(sn_log_format format);
void sn_log_set_component(const char *component);
/* Sends lines to fd (not closed by the logger); -1 restores stderr. */
void sn_log_set_fd(int fd);

/* Names: "debug", "info", "warn" (also "warning"), "error", "off"; "json", "text". Return 0 and
 * set *out, or -1 for an unknown name. */
int sn_log_level_from_name(const char *name, sn_log_level *out);
const char *sn_log_level_name(sn_log_level level);
int sn_log_format_from_name(const char *name, sn_log_format *out);

/* Names for config enums: {"debug","info","warn","error",NULL} and {"json","text",NULL}, in
 * the order of the enums above. */
extern const char *const sn_log_level_names[];
extern const char *const sn_log_format_names[];

#endif
