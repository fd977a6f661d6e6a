/*
 * log.c -- one JSON (or text) line per message, formatted on the stack, one write(2) each.
 *
 * The line builder keeps SN_LOG_RESERVE bytes free at the end of the buffer until the line is
 * finished, so there is always room to close an open string, mark the line truncated and add
 * the newline. Settings are atomics so any thread may read them without a lock; the mutex only
 * serialises the write loop (a short write is continued before another thread writes).
 */
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SN_LOG_RESERVE 40 /* room for `...","truncated":true}\n` and friends */
#define COMPONENT_MAX  64

const char *const sn_log_level_names[] = {"debug", "info", "warn", "error", NULL};
const char *const sn_log_format_names[] = {"json", "text", NULL};

static atomic_int g_level = SN_LOG_INFO;
static atomic_int g_format = SN_LOG_JSON;
static atomic_int g_fd = 2;
static pthread_mutex_t g_write_lock = PTHREAD_MUTEX_INITIALIZER;
/* The component is set once at start-up; a seqlock would be overkill, so it is copied under
 * the write lock and read under it too. */
static char g_component[COMPONENT_MAX];

typedef struct line {
    char *buf;
    size_t cap; /* usable bytes before the reserve */
    size_t len;
    bool truncated;
} line;

static bool put_raw(line *l, const char *s, size_t n)
{
    if (l->truncated || l->len + n > l->cap) {
        l->truncated = true;
        return false;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return true;
}

static bool put_str(line *l, const char *s)
{
    return put_raw(l, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 when it is invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t need;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((need == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return need;
}

/* Appends s[0..n) escaped for a JSON string (without the quotes). When it does not fit, ends
 * with "..." and marks the line truncated; the caller still closes the quote from the reserve.
 * With quotes false, '"' and '\\' are kept as they are (text-format messages). */
static void put_escaped(line *l, const char *s, size_t n, bool quotes)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n && !l->truncated) {
        char tmp[8];
        size_t tl;
        size_t step = 1;
        unsigned char c = p[i];
        if (quotes && (c == '"' || c == '\\')) {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            tl = 2;
        } else if (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') {
            tmp[0] = '\\';
            tmp[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : c == '\b' ? 'b' : 'f';
            tl = 2;
        } else if (c < 0x20 || c == 0x7F) {
            memcpy(tmp, "\\u00", 4);
            tmp[4] = hex[c >> 4];
            tmp[5] = hex[c & 0xF];
            tl = 6;
        } else if (c < 0x80) {
            tmp[0] = (char)c;
            tl = 1;
        } else {
            step = utf8_seq(p + i, n - i);
            if (step == 0) {
                memcpy(tmp, "\xEF\xBF\xBD", 3); /* U+FFFD for one bad byte */
                tl = 3;
                step = 1;
            } else {
                memcpy(tmp, p + i, step);
                tl = step;
            }
        }
        if (l->len + tl > l->cap) {
            l->truncated = true;
            break;
        }
        memcpy(l->buf + l->len, tmp, tl);
        l->len += tl;
        i += step;
    }
    if (l->truncated) {
        /* From the reserve: the cut is visible in the value itself. */
        memcpy(l->buf + l->len, "...", 3);
        l->len += 3;
    }
}

/* A JSON string value: "..." (closing quote written even when truncated). */
static void put_json_string(line *l, const char *s, size_t n)
{
    if (!put_raw(l, "\"", 1))
        return;
    put_escaped(l, s, n, true);
    l->buf[l->len++] = '"'; /* from the reserve when truncated */
}

/* True when a text-format value needs quotes to read back unambiguously. */
static bool text_needs_quotes(const char *s, size_t n)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7F)
            return true;
    }
    return false;
}

static void put_text_string(line *l, const char *s, size_t n)
{
    if (!text_needs_quotes(s, n)) {
        size_t before = l->len;
        if (!put_raw(l, s, n)) {
            l->len = before;
            l->truncated = false;
            put_escaped(l, s, n, true); /* cuts at a character boundary and adds "..." */
        }
        return;
    }
    put_json_string(l, s, n);
}

static void format_double(char *buf, size_t len, double d)
{
    int r = snprintf(buf, len, "%.15g", d);
    if (r > 0 && (size_t)r < len && strtod(buf, NULL) != d)
        snprintf(buf, len, "%.17g", d);
}

/* Writes the value of one field. */
static void put_value(line *l, const sn_log_field *f, bool json)
{
    char num[64];
    const char *s = NULL;
    size_t n = 0;
    switch (f->type) {
    case SN_LOG_T_STR:
        if (f->v.s == NULL) {
            put_str(l, "null");
            return;
        }
        s = f->v.s;
        n = strlen(s);
        break;
    case SN_LOG_T_STRN:
        if (f->v.s == NULL) {
            put_str(l, "null");
            return;
        }
        s = f->v.s;
        n = f->len;
        break;
    case SN_LOG_T_ERRNO: {
        int64_t e64 = f->v.i < 0 ? (f->v.i < -INT_MAX ? 0 : -f->v.i) : f->v.i;
        int e = e64 > INT_MAX ? 0 : (int)e64;
        char ebuf[128];
        s = strerror_r(e, ebuf, sizeof ebuf);
        n = strlen(s);
        if (json)
            put_json_string(l, s, n);
        else
            put_text_string(l, s, n);
        return;
    }
    case SN_LOG_T_INT:
        snprintf(num, sizeof num, "%" PRId64, f->v.i);
        put_str(l, num);
        return;
    case SN_LOG_T_UINT:
        snprintf(num, sizeof num, "%" PRIu64, f->v.u);
        put_str(l, num);
        return;
    case SN_LOG_T_DBL:
        if (!isfinite(f->v.d)) {
            put_str(l, json ? "null" : isnan(f->v.d) ? "NaN" : f->v.d > 0 ? "Inf" : "-Inf");
            return;
        }
        format_double(num, sizeof num, f->v.d);
        put_str(l, num);
        return;
    case SN_LOG_T_BOOL:
        put_str(l, f->v.b ? "true" : "false");
        return;
    case SN_LOG_T_END:
        return;
    }
    if (json)
        put_json_string(l, s, n);
    else
        put_text_string(l, s, n);
}

static void put_timestamp(line *l)
{
    struct timespec ts;
    struct tm tm;
    char buf[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03ldZ", ts.tv_nsec / 1000000);
    put_str(l, buf);
}

static const char *level_upper(sn_log_level level)
{
    static const char *const names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    return (int)level >= 0 && level < SN_LOG_OFF ? names[level] : "?    ";
}

size_t sn_log_format_line(char *buf, size_t len, sn_log_level level, const char *msg,
                          const sn_log_field *fields)
{
    if (len > SN_LOG_LINE_MAX)
        len = SN_LOG_LINE_MAX;
    if (len < SN_LOG_RESERVE + 8) {
        if (len > 0)
            buf[0] = '\0';
        return 0;
    }
    line l = {.buf = buf, .cap = len - SN_LOG_RESERVE, .len = 0};
    bool json = atomic_load_explicit(&g_format, memory_order_relaxed) == SN_LOG_JSON;
    char component[COMPONENT_MAX];
    pthread_mutex_lock(&g_write_lock);
    memcpy(component, g_component, sizeof component);
    pthread_mutex_unlock(&g_write_lock);
    if (msg == NULL)
        msg = "";

    if (json) {
        put_str(&l, "{\"ts\":\"");
        put_timestamp(&l);
        put_str(&l, "\",\"level\":\"");
        put_str(&l, sn_log_level_name(level));
        put_str(&l, "\"");
        if (component[0] != '\0') {
            put_str(&l, ",\"component\":");
            put_json_string(&l, component, strlen(component));
        }
        put_str(&l, ",\"msg\":");
        put_json_string(&l, msg, strlen(msg));
        for (const sn_log_field *f = fields; f != NULL && f->type != SN_LOG_T_END; f++) {
            if (l.truncated)
                break;
            size_t mark = l.len;
            put_str(&l, ",");
            put_json_string(&l, f->key ? f->key : "", f->key ? strlen(f->key) : 0);
            put_str(&l, ":");
            if (l.truncated) {
                l.len = mark; /* drop a key without its value */
                break;
            }
            put_value(&l, f, true);
            if (l.truncated && (f->type != SN_LOG_T_STR && f->type != SN_LOG_T_STRN &&
                                f->type != SN_LOG_T_ERRNO)) {
                l.len = mark; /* a number cut in half: drop the field */
            } else if (l.truncated && l.buf[l.len - 1] != '"') {
                l.len = mark; /* "null" that did not fit */
            }
        }
        if (l.truncated) {
            const char *mark = ",\"truncated\":true";
            memcpy(l.buf + l.len, mark, strlen(mark));
            l.len += strlen(mark);
        }
        l.buf[l.len++] = '}';
    } else {
        put_timestamp(&l);
        put_str(&l, " ");
        put_str(&l, level_upper(level));
        put_str(&l, " ");
        if (component[0] != '\0') {
            put_str(&l, component);
            put_str(&l, ": ");
        }
        put_escaped(&l, msg, strlen(msg), false); /* one line: newlines become \n */
        for (const sn_log_field *f = fields; f != NULL && f->type != SN_LOG_T_END; f++) {
            if (l.truncated)
                break;
            put_str(&l, " ");
            put_str(&l, f->key ? f->key : "");
            put_str(&l, "=");
            put_value(&l, f, false);
        }
        if (l.truncated) {
            const char *mark = " [truncated]";
            memcpy(l.buf + l.len, mark, strlen(mark));
            l.len += strlen(mark);
        }
    }
    l.buf[l.len++] = '\n';
    if (l.len < len)
        l.buf[l.len] = '\0';
    return l.len;
}

void sn_log_emit(sn_log_level level, const char *msg, const sn_log_field *fields)
{
    if (!sn_log_enabled(level))
        return;
    char buf[SN_LOG_LINE_MAX];
    size_t n = sn_log_format_line(buf, sizeof buf, level, msg, fields);
    int saved = errno;
    pthread_mutex_lock(&g_write_lock);
    int fd = atomic_load(&g_fd);
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, buf + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    pthread_mutex_unlock(&g_write_lock);
    errno = saved;
}

bool sn_log_enabled(sn_log_level level)
{
    int min = atomic_load_explicit(&g_level, memory_order_relaxed);
    return (int)level >= min && level < SN_LOG_OFF;
}

void sn_log_set_level(sn_log_level level)
{
    atomic_store(&g_level, (int)level);
}

sn_log_level sn_log_get_level(void)
{
    return (sn_log_level)atomic_load(&g_level);
}

void sn_log_set_format(sn_log_format format)
{
    atomic_store(&g_format, (int)format);
}

void sn_log_set_component(const char *component)
{
    pthread_mutex_lock(&g_write_lock);
    snprintf(g_component, sizeof g_component, "%s", component != NULL ? component : "");
    pthread_mutex_unlock(&g_write_lock);
}

void sn_log_set_fd(int fd)
{
    atomic_store(&g_fd, fd < 0 ? 2 : fd);
}

int sn_log_level_from_name(const char *name, sn_log_level *out)
{
    static const struct {
        const char *name;
        sn_log_level level;
    } names[] = {{"debug", SN_LOG_DEBUG},  {"info", SN_LOG_INFO},   {"warn", SN_LOG_WARN},
                 {"warning", SN_LOG_WARN}, {"error", SN_LOG_ERROR}, {"off", SN_LOG_OFF}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].level;
            return 0;
        }
    }
    return -1;
}

const char *sn_log_level_name(sn_log_level level)
{
    if ((int)level >= 0 && level < SN_LOG_OFF)
        return sn_log_level_names[level];
    return level == SN_LOG_OFF ? "off" : "unknown";
}

int sn_log_format_from_name(const char *name, sn_log_format *out)
{
    for (int i = 0; sn_log_format_names[i] != NULL; i++) {
        if (strcmp(name, sn_log_format_names[i]) == 0) {
            *out = (sn_log_format)i;
            return 0;
        }
    }
    return -1;
}
