/*
 * config.c -- descriptor-driven configuration: parsing, sources, dump and live changes.
 *
 * Every value from every source (default, YAML, environment, command line, API) is text that
 * goes through parse_value() into a scratch buffer of the field's size; only a value that parsed
 * is copied into the program's struct, together with where it came from (its origin). So a
 * failed assignment never leaves a half-written field, and errors can always say where a bad
 * value came from.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define ORIGIN_NAME_MAX 64
#define ENV_NAME_MAX    (SN_CONFIG_PATH_MAX + 16)
#define ECHO_MAX        48 /* bytes of a bad value quoted back in an error */

typedef struct origin {
    uint8_t source;             /* sn_config_source */
    uint32_t line;              /* file line, 1-based */
    uint32_t gen;               /* which file load set it (duplicate-key detection) */
    char name[ORIGIN_NAME_MAX]; /* flag name for SN_CONFIG_FROM_FLAG */
} origin;

struct sn_config {
    const sn_config_desc *descs;
    size_t n;
    unsigned char *target;
    origin *origins; /* one per descriptor */
    char *file;      /* the last file loaded (origins of SN_CONFIG_FROM_FILE refer to it) */
    uint32_t gen;
};

/* ---- small helpers ---- */

/* snprintf that appends at *pos and never overflows; *pos stops at len-1. */
static void appendf(char *buf, size_t len, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void appendf(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
    if (len == 0 || *pos >= len - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf + *pos, len - *pos, fmt, ap);
    va_end(ap);
    if (r < 0)
        return;
    *pos += (size_t)r;
    if (*pos > len - 1)
        *pos = len - 1;
}

static void set_error(sn_config_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_error(sn_config_error *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

/* Quotes text for an error message: printable ASCII kept, the rest as \xNN, cut after ECHO_MAX
 * bytes with "...". */
static void echo_value(const char *text, char *buf, size_t len)
{
    size_t pos = 0;
    appendf(buf, len, &pos, "\"");
    size_t i;
    for (i = 0; i < ECHO_MAX && text[i] != '\0'; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\')
            appendf(buf, len, &pos, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            appendf(buf, len, &pos, "%c", c);
        else
            appendf(buf, len, &pos, "\\x%02x", c);
    }
    appendf(buf, len, &pos, text[i] != '\0' ? "...\"" : "\"");
}

static void *field(const sn_config *cfg, size_t i)
{
    return cfg->target + cfg->descs[i].offset;
}

static size_t find_index(const sn_config *cfg, const char *path)
{
    for (size_t i = 0; i < cfg->n; i++)
        if (strcmp(cfg->descs[i].path, path) == 0)
            return i;
    return SIZE_MAX;
}

/* True when path names a section: some descriptor's path starts with path + ".". */
static bool is_section(const sn_config *cfg, const char *path)
{
    size_t len = strlen(path);
    for (size_t i = 0; i < cfg->n; i++) {
        const char *p = cfg->descs[i].path;
        if (strncmp(p, path, len) == 0 && p[len] == '.')
            return true;
    }
    return false;
}

/* Edit distance of two short strings (bounded by SN_CONFIG_PATH_MAX); used for suggestions. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strnlen(a, SN_CONFIG_PATH_MAX - 1), lb = strnlen(b, SN_CONFIG_PATH_MAX - 1);
    size_t prev[SN_CONFIG_PATH_MAX], cur[SN_CONFIG_PATH_MAX];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
    }
    return prev[lb];
}

/* Writes ` (did you mean "x"?)` into buf when a descriptor path is close to path, else "". */
static void suggest(const sn_config *cfg, const char *path, char *buf, size_t len)
{
    size_t best = SIZE_MAX, best_i = 0;
    for (size_t i = 0; i < cfg->n; i++) {
        size_t d = edit_distance(path, cfg->descs[i].path);
        if (d < best) {
            best = d;
            best_i = i;
        }
    }
    buf[0] = '\0';
    if (best != SIZE_MAX && best <= 3 && best * 4 <= strlen(path))
        snprintf(buf, len, " (did you mean \"%s\"?)", cfg->descs[best_i].path);
}

size_t sn_config_env_name(const sn_config_desc *d, char *buf, size_t len)
{
    if (d->env != NULL)
        return (size_t)snprintf(buf, len, "%s", d->env);
    size_t pos = 0;
    appendf(buf, len, &pos, "SENTINEL_");
    size_t want = pos;
    for (const char *p = d->path; *p != '\0'; p++, want++) {
        char c = *p == '.' || *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        appendf(buf, len, &pos, "%c", c);
    }
    return want;
}

/* ---- parsers ---- */

int sn_config_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

static int parse_int64(const char *text, int64_t *out)
{
    if (text[0] == '\0' || isspace((unsigned char)text[0]))
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (*end != '\0')
        return -EINVAL;
    if (errno == ERANGE)
        return -ERANGE;
    *out = (int64_t)v;
    return 0;
}

static int parse_double(const char *text, double *out)
{
    if (text[0] == '\0' || isspace((unsigned char)text[0]))
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (*end != '\0' || !isfinite(v))
        return -EINVAL;
    if (errno == ERANGE && fabs(v) > 1.0)
        return -ERANGE;
    *out = v;
    return 0;
}

/* Reads "digits[.digits]" at *p into an integer part and a fraction scaled to 1e18. Returns 0,
 * -EINVAL when there is no number, -ERANGE when the integer part overflows. */
static int parse_decimal(const char **p, uint64_t *whole, uint64_t *frac_e18)
{
    const char *s = *p;
    uint64_t w = 0, f = 0, scale = UINT64_C(100000000000000000); /* 1e17: first fraction digit */
    bool digits = false;
    while (isdigit((unsigned char)*s)) {
        if (__builtin_mul_overflow(w, 10, &w) ||
            __builtin_add_overflow(w, (uint64_t)(*s - '0'), &w))
            return -ERANGE;
        s++;
        digits = true;
    }
    if (*s == '.') {
        s++;
        bool fdigits = false;
        while (isdigit((unsigned char)*s)) {
            f += (uint64_t)(*s - '0') * scale;
            scale /= 10;
            s++;
            fdigits = true;
        }
        if (!fdigits)
            return -EINVAL;
        digits = true;
    }
    if (!digits)
        return -EINVAL;
    *p = s;
    *whole = w;
    *frac_e18 = f;
    return 0;
}

/* whole.frac x mult as an int64, truncating the fraction. -ERANGE on overflow. */
static int scale_decimal(uint64_t whole, uint64_t frac_e18, uint64_t mult, int64_t *out)
{
    uint64_t v;
    if (__builtin_mul_overflow(whole, mult, &v))
        return -ERANGE;
    /* frac * mult / 1e18 without overflow: split the multiplier. */
    unsigned __int128 part = (unsigned __int128)frac_e18 * mult / UINT64_C(1000000000000000000);
    if (__builtin_add_overflow(v, (uint64_t)part, &v) || v > (uint64_t)INT64_MAX)
        return -ERANGE;
    *out = (int64_t)v;
    return 0;
}

typedef struct unit {
    const char *name;
    uint64_t mult;
} unit;

int sn_config_parse_duration(const char *text, int64_t *ns)
{
    static const unit units[] = {
        {"ns", 1},
        {"us", 1000},
        {"\xc2\xb5s", 1000}, /* micro sign */
        {"\xce\xbcs", 1000}, /* Greek mu */
        {"ms", 1000000},
        {"s", UINT64_C(1000000000)},
        {"m", UINT64_C(60000000000)},
        {"h", UINT64_C(3600000000000)},
        {"d", UINT64_C(86400000000000)},
    };
    if (strcmp(text, "0") == 0) {
        *ns = 0;
        return 0;
    }
    const char *p = text;
    if (*p == '\0')
        return -EINVAL;
    int64_t total = 0;
    while (*p != '\0') {
        uint64_t whole, frac;
        int rc = parse_decimal(&p, &whole, &frac);
        if (rc != 0)
            return rc;
        const unit *u = NULL;
        size_t ulen = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t l = strlen(units[i].name);
            if (strncmp(p, units[i].name, l) == 0 && l > ulen) {
                u = &units[i];
                ulen = l;
            }
        }
        if (u == NULL)
            return -EINVAL; /* a number without a unit, or an unknown unit */
        p += ulen;
        int64_t part;
        rc = scale_decimal(whole, frac, u->mult, &part);
        if (rc != 0)
            return rc;
        if (__builtin_add_overflow(total, part, &total))
            return -ERANGE;
    }
    *ns = total;
    return 0;
}

int sn_config_parse_size(const char *text, int64_t *bytes)
{
    static const unit units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1000},
        {"kb", 1000},
        {"ki", 1024},
        {"kib", 1024},
        {"m", 1000000},
        {"mb", 1000000},
        {"mi", UINT64_C(1) << 20},
        {"mib", UINT64_C(1) << 20},
        {"g", 1000000000},
        {"gb", 1000000000},
        {"gi", UINT64_C(1) << 30},
        {"gib", UINT64_C(1) << 30},
        {"t", UINT64_C(1000000000000)},
        {"tb", UINT64_C(1000000000000)},
        {"ti", UINT64_C(1) << 40},
        {"tib", UINT64_C(1) << 40},
    };
    const char *p = text;
    uint64_t whole, frac;
    int rc = parse_decimal(&p, &whole, &frac);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(p, units[i].name) == 0) {
            if (units[i].mult == 1 && frac != 0)
                return -EINVAL; /* fractions of a byte */
            return scale_decimal(whole, frac, units[i].mult, bytes);
        }
    }
    return -EINVAL;
}

static bool valid_hostname(const char *h, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0 || h[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!isalnum((unsigned char)c) && c != '-' && c != '_')
            return false;
        if (label == 0 && c == '-')
            return false;
        if (++label > 63)
            return false;
    }
    return h[len - 1] != '-';
}

int sn_config_parse_address(const char *text, bool allow_port0, sn_config_address *out)
{
    char host[SN_CONFIG_HOST_MAX];
    const char *port;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return -EINVAL;
        size_t hl = (size_t)(close - text - 1);
        if (hl == 0 || hl >= sizeof host)
            return -EINVAL;
        memcpy(host, text + 1, hl);
        host[hl] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return -EINVAL;
        port = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL)
            return -EINVAL;
        size_t hl = (size_t)(colon - text);
        if (hl == 0 || hl >= sizeof host || memchr(text, ':', hl) != NULL)
            return -EINVAL; /* empty host, too long, or IPv6 without brackets */
        memcpy(host, text, hl);
        host[hl] = '\0';
        if (strspn(host, "0123456789.") == hl) {
            struct in_addr a4;
            if (inet_pton(AF_INET, host, &a4) != 1)
                return -EINVAL;
        } else if (!valid_hostname(host, hl)) {
            return -EINVAL;
        }
        port = colon + 1;
    }
    size_t pl = strlen(port);
    if (pl == 0 || pl > 5 || strspn(port, "0123456789") != pl)
        return -EINVAL;
    long v = strtol(port, NULL, 10);
    if (v > 65535 || (v == 0 && !allow_port0))
        return -EINVAL;
    snprintf(out->host, sizeof out->host, "%s", host);
    out->port = (uint16_t)v;
    return 0;
}

/* Splits comma-separated text into a list, trimming blanks around items. */
static int parse_list_text(const char *text, sn_config_list *out)
{
    memset(out, 0, sizeof *out);
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '\0')
        return 0;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t l = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *s = p;
        while (l > 0 && isspace((unsigned char)*s)) {
            s++;
            l--;
        }
        while (l > 0 && isspace((unsigned char)s[l - 1]))
            l--;
        if (l == 0 || l >= SN_CONFIG_ITEM_MAX || out->count >= SN_CONFIG_LIST_MAX)
            return -EINVAL;
        memcpy(out->items[out->count], s, l);
        out->items[out->count][l] = '\0';
        out->count++;
        if (end == NULL)
            return 0;
        p = end + 1;
    }
}

static size_t bound_text(const sn_config_desc *d, bool is_min, char *buf, size_t len)
{
    switch (d->type) {
    case SN_CONFIG_DOUBLE:
        return (size_t)snprintf(buf, len, "%g", is_min ? d->dmin : d->dmax);
    case SN_CONFIG_DURATION:
        return sn_config_format_duration(is_min ? d->imin : d->imax, buf, len);
    case SN_CONFIG_SIZE:
        return sn_config_format_size(is_min ? d->imin : d->imax, buf, len);
    default:
        return (size_t)snprintf(buf, len, "%" PRId64, is_min ? d->imin : d->imax);
    }
}

size_t sn_config_describe(const sn_config_desc *d, char *buf, size_t len)
{
    size_t pos = 0;
    bool bounded = false;
    switch (d->type) {
    case SN_CONFIG_BOOL:
        appendf(buf, len, &pos, "true or false");
        break;
    case SN_CONFIG_INT:
        appendf(buf, len, &pos, "an integer");
        bounded = true;
        break;
    case SN_CONFIG_DOUBLE:
        appendf(buf, len, &pos, "a number");
        if (d->flags & SN_CONFIG_OPTIONAL)
            appendf(buf, len, &pos, " (or off)");
        bounded = true;
        break;
    case SN_CONFIG_STRING:
        appendf(buf, len, &pos, "a string of at most %zu bytes", d->size > 0 ? d->size - 1 : 0);
        break;
    case SN_CONFIG_ENUM:
        appendf(buf, len, &pos, "one of ");
        for (size_t i = 0; d->choices != NULL && d->choices[i] != NULL; i++)
            appendf(buf, len, &pos, "%s%s", i > 0 ? ", " : "", d->choices[i]);
        break;
    case SN_CONFIG_DURATION:
        appendf(buf, len, &pos, "a duration like 200ms, 5s or 1h");
        bounded = true;
        break;
    case SN_CONFIG_SIZE:
        appendf(buf, len, &pos, "a size like 512KiB, 16MiB or 1GB");
        bounded = true;
        break;
    case SN_CONFIG_ADDRESS:
        appendf(buf, len, &pos, "host:port (IPv6 in brackets)");
        if (d->flags & SN_CONFIG_OPTIONAL)
            appendf(buf, len, &pos, " or \"\" for none");
        break;
    case SN_CONFIG_LIST:
        appendf(buf, len, &pos, "a list of at most %d strings of at most %d bytes",
                SN_CONFIG_LIST_MAX, SN_CONFIG_ITEM_MAX - 1);
        break;
    }
    if (bounded) {
        char lo[48], hi[48];
        bool has_min = d->flags & SN_CONFIG_HAS_MIN, has_max = d->flags & SN_CONFIG_HAS_MAX;
        bool min_ex = d->flags & SN_CONFIG_MIN_EXCL, max_ex = d->flags & SN_CONFIG_MAX_EXCL;
        bound_text(d, true, lo, sizeof lo);
        bound_text(d, false, hi, sizeof hi);
        if (has_min && has_max && !min_ex && !max_ex)
            appendf(buf, len, &pos, " between %s and %s", lo, hi);
        else {
            if (has_min)
                appendf(buf, len, &pos, " %s %s", min_ex ? ">" : ">=", lo);
            if (has_min && has_max)
                appendf(buf, len, &pos, " and");
            if (has_max)
                appendf(buf, len, &pos, " %s %s", max_ex ? "<" : "<=", hi);
        }
    }
    return pos;
}

static bool int_in_bounds(const sn_config_desc *d, int64_t v)
{
    if ((d->flags & SN_CONFIG_HAS_MIN) &&
        (v < d->imin || (v == d->imin && (d->flags & SN_CONFIG_MIN_EXCL))))
        return false;
    if ((d->flags & SN_CONFIG_HAS_MAX) &&
        (v > d->imax || (v == d->imax && (d->flags & SN_CONFIG_MAX_EXCL))))
        return false;
    return true;
}

static bool double_in_bounds(const sn_config_desc *d, double v)
{
    if ((d->flags & SN_CONFIG_HAS_MIN) &&
        (v < d->dmin || (v == d->dmin && (d->flags & SN_CONFIG_MIN_EXCL))))
        return false;
    if ((d->flags & SN_CONFIG_HAS_MAX) &&
        (v > d->dmax || (v == d->dmax && (d->flags & SN_CONFIG_MAX_EXCL))))
        return false;
    return true;
}

/* Parses text for d into dst (d->size bytes). Returns 0 or -EINVAL; the caller words the error
 * from sn_config_describe. */
static int parse_value(const sn_config_desc *d, const char *text, void *dst)
{
    switch (d->type) {
    case SN_CONFIG_BOOL:
        return sn_config_parse_bool(text, dst);
    case SN_CONFIG_INT:
    case SN_CONFIG_DURATION:
    case SN_CONFIG_SIZE: {
        int64_t v;
        int rc = d->type == SN_CONFIG_INT        ? parse_int64(text, &v)
                 : d->type == SN_CONFIG_DURATION ? sn_config_parse_duration(text, &v)
                                                 : sn_config_parse_size(text, &v);
        if (rc != 0 || !int_in_bounds(d, v))
            return -EINVAL;
        memcpy(dst, &v, sizeof v);
        return 0;
    }
    case SN_CONFIG_DOUBLE: {
        double v;
        if ((d->flags & SN_CONFIG_OPTIONAL) && (text[0] == '\0' || strcasecmp(text, "off") == 0)) {
            v = NAN;
            memcpy(dst, &v, sizeof v);
            return 0;
        }
        if (parse_double(text, &v) != 0 || !double_in_bounds(d, v))
            return -EINVAL;
        memcpy(dst, &v, sizeof v);
        return 0;
    }
    case SN_CONFIG_STRING: {
        size_t l = strlen(text);
        if (l >= d->size)
            return -EINVAL;
        memset(dst, 0, d->size);
        memcpy(dst, text, l);
        return 0;
    }
    case SN_CONFIG_ENUM:
        for (int i = 0; d->choices[i] != NULL; i++) {
            if (strcasecmp(text, d->choices[i]) == 0) {
                memcpy(dst, &i, sizeof i);
                return 0;
            }
        }
        return -EINVAL;
    case SN_CONFIG_ADDRESS: {
        sn_config_address *a = dst;
        memset(a, 0, sizeof *a);
        if ((d->flags & SN_CONFIG_OPTIONAL) && (text[0] == '\0' || strcasecmp(text, "off") == 0))
            return 0;
        return sn_config_parse_address(text, d->flags & SN_CONFIG_ANY_PORT, a);
    }
    case SN_CONFIG_LIST:
        return parse_list_text(text, dst);
    }
    return -EINVAL;
}

/* ---- formatting ---- */

size_t sn_config_format_duration(int64_t ns, char *buf, size_t len)
{
    static const unit units[] = {
        {"d", UINT64_C(86400000000000)},
        {"h", UINT64_C(3600000000000)},
        {"m", UINT64_C(60000000000)},
        {"s", UINT64_C(1000000000)},
        {"ms", 1000000},
        {"us", 1000},
        {"ns", 1},
    };
    size_t pos = 0;
    if (ns <= 0) {
        appendf(buf, len, &pos, ns == 0 ? "0s" : "-%" PRIu64 "ns", (uint64_t)0 - (uint64_t)ns);
        return pos;
    }
    uint64_t rest = (uint64_t)ns;
    for (size_t i = 0; i < sizeof units / sizeof units[0] && rest > 0; i++) {
        uint64_t q = rest / units[i].mult;
        if (q > 0) {
            appendf(buf, len, &pos, "%" PRIu64 "%s", q, units[i].name);
            rest -= q * units[i].mult;
        }
    }
    return pos;
}

size_t sn_config_format_size(int64_t bytes, char *buf, size_t len)
{
    static const unit units[] = {
        {"TiB", UINT64_C(1) << 40},
        {"GiB", UINT64_C(1) << 30},
        {"MiB", UINT64_C(1) << 20},
        {"KiB", 1024},
        {"TB", UINT64_C(1000000000000)},
        {"GB", 1000000000},
        {"MB", 1000000},
        {"KB", 1000},
    };
    if (bytes > 0) {
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
            if ((uint64_t)bytes % units[i].mult == 0)
                return (size_t)snprintf(buf, len, "%" PRIu64 "%s", (uint64_t)bytes / units[i].mult,
                                        units[i].name);
    }
    return (size_t)snprintf(buf, len, "%" PRId64 "B", bytes);
}

size_t sn_config_format_address(const sn_config_address *a, char *buf, size_t len)
{
    if (a->host[0] == '\0')
        return (size_t)snprintf(buf, len, "%s", "");
    if (strchr(a->host, ':') != NULL)
        return (size_t)snprintf(buf, len, "[%s]:%u", a->host, (unsigned)a->port);
    return (size_t)snprintf(buf, len, "%s:%u", a->host, (unsigned)a->port);
}

size_t sn_config_format_value(const sn_config_desc *d, const void *target, char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)target + d->offset;
    switch (d->type) {
    case SN_CONFIG_BOOL: {
        bool v;
        memcpy(&v, p, sizeof v);
        return (size_t)snprintf(buf, len, "%s", v ? "true" : "false");
    }
    case SN_CONFIG_INT: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        return (size_t)snprintf(buf, len, "%" PRId64, v);
    }
    case SN_CONFIG_DURATION: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        return sn_config_format_duration(v, buf, len);
    }
    case SN_CONFIG_SIZE: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        return sn_config_format_size(v, buf, len);
    }
    case SN_CONFIG_DOUBLE: {
        double v;
        memcpy(&v, p, sizeof v);
        if (isnan(v))
            return (size_t)snprintf(buf, len, "off");
        int r = snprintf(buf, len, "%.15g", v);
        if (r > 0 && (size_t)r < len && strtod(buf, NULL) != v)
            r = snprintf(buf, len, "%.17g", v);
        return (size_t)r;
    }
    case SN_CONFIG_STRING:
        return (size_t)snprintf(buf, len, "%.*s", (int)strnlen((const char *)p, d->size), p);
    case SN_CONFIG_ENUM: {
        int v;
        memcpy(&v, p, sizeof v);
        for (int k = 0; k <= v; k++)
            if (d->choices[k] == NULL)
                return (size_t)snprintf(buf, len, "%d", v); /* not a valid index */
        return (size_t)snprintf(buf, len, "%s", v >= 0 ? d->choices[v] : "?");
    }
    case SN_CONFIG_ADDRESS:
        return sn_config_format_address((const sn_config_address *)p, buf, len);
    case SN_CONFIG_LIST: {
        const sn_config_list *l = (const sn_config_list *)p;
        size_t pos = 0;
        for (uint32_t i = 0; i < l->count; i++)
            appendf(buf, len, &pos, "%s%s", i > 0 ? "," : "", l->items[i]);
        return pos;
    }
    }
    return 0;
}

/* ---- assignment ---- */

/* Writes where o says a value came from, as the tail of an error message. */
static void origin_text(const sn_config *cfg, size_t i, const origin *o, bool as_suffix, char *buf,
                        size_t len)
{
    char env[ENV_NAME_MAX];
    switch (o->source) {
    case SN_CONFIG_FROM_DEFAULT:
        snprintf(buf, len, "%s", as_suffix ? " in the default" : "default");
        break;
    case SN_CONFIG_FROM_FILE:
        snprintf(buf, len, "%s%s:%" PRIu32, as_suffix ? " at " : "", cfg->file ? cfg->file : "?",
                 o->line);
        break;
    case SN_CONFIG_FROM_ENV:
        sn_config_env_name(&cfg->descs[i], env, sizeof env);
        snprintf(buf, len, "%s%s", as_suffix ? " from environment " : "environment ", env);
        break;
    case SN_CONFIG_FROM_FLAG:
        snprintf(buf, len, "%s%s", as_suffix ? " from " : "", o->name);
        break;
    case SN_CONFIG_FROM_API:
        snprintf(buf, len, "%s", as_suffix ? " in the API request" : "API");
        break;
    default:
        buf[0] = '\0';
    }
}

/* Sets err to `config: PATH: must be DESCRIPTION (got VALUE) WHERE`. */
static void value_error(const sn_config *cfg, size_t i, const char *text, const origin *o,
                        sn_config_error *err)
{
    const sn_config_desc *d = &cfg->descs[i];
    char what[256], got[ECHO_MAX * 4 + 16], where[SN_CONFIG_PATH_MAX + 256];
    sn_config_describe(d, what, sizeof what);
    if (d->flags & SN_CONFIG_SECRET)
        snprintf(got, sizeof got, "<redacted>");
    else if ((d->type == SN_CONFIG_STRING || d->type == SN_CONFIG_LIST) && strlen(text) > ECHO_MAX)
        snprintf(got, sizeof got, "%zu bytes", strlen(text));
    else
        echo_value(text, got, sizeof got);
    origin_text(cfg, i, o, true, where, sizeof where);
    set_error(err, "config: %s: must be %s (got %s)%s", d->path, what, got, where);
}

/* Parses text into a scratch copy of descriptor i's field and, when it is valid, stores it and
 * the origin. Returns 0 or -EINVAL/-ENOMEM with err set; the field is unchanged on failure. */
static int assign(sn_config *cfg, size_t i, const char *text, const origin *o, sn_config_error *err)
{
    const sn_config_desc *d = &cfg->descs[i];
    char where[SN_CONFIG_PATH_MAX + 256];
    if (strnlen(text, SN_CONFIG_VALUE_MAX + 1) > SN_CONFIG_VALUE_MAX) {
        origin_text(cfg, i, o, true, where, sizeof where);
        set_error(err, "config: %s: value longer than %d bytes%s", d->path, SN_CONFIG_VALUE_MAX,
                  where);
        return -EINVAL;
    }
    void *scratch = malloc(d->size);
    if (scratch == NULL) {
        set_error(err, "config: %s: out of memory", d->path);
        return -ENOMEM;
    }
    int rc = parse_value(d, text, scratch);
    if (rc != 0) {
        value_error(cfg, i, text, o, err);
        rc = -EINVAL;
        goto out_free_scratch;
    }
    memcpy(field(cfg, i), scratch, d->size);
    cfg->origins[i] = *o;
out_free_scratch:
    free(scratch);
    return rc;
}

/* ---- create / destroy ---- */

static bool valid_path(const char *path)
{
    size_t len = strnlen(path, SN_CONFIG_PATH_MAX);
    if (len == 0 || len >= SN_CONFIG_PATH_MAX || path[0] == '.' || path[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = path[i];
        if (c == '.' && path[i + 1] == '.')
            return false;
        if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '_' || c == '-' ||
              c == '.'))
            return false;
    }
    return true;
}

static size_t type_size(const sn_config_desc *d)
{
    switch (d->type) {
    case SN_CONFIG_BOOL:
        return sizeof(bool);
    case SN_CONFIG_INT:
    case SN_CONFIG_DURATION:
    case SN_CONFIG_SIZE:
        return sizeof(int64_t);
    case SN_CONFIG_DOUBLE:
        return sizeof(double);
    case SN_CONFIG_ENUM:
        return sizeof(int);
    case SN_CONFIG_ADDRESS:
        return sizeof(sn_config_address);
    case SN_CONFIG_LIST:
        return sizeof(sn_config_list);
    case SN_CONFIG_STRING:
        return d->size > 0 ? d->size : 1; /* any buffer with room for the NUL */
    }
    return 0;
}

/* Checks one table for the mistakes a program can make in it. The environment names are made
 * once each into a scratch array freed here (comparing every pair made them n^2 times: 76 000
 * calls, about 37 M instructions, at every start of the sidecar). Returns 0, -EINVAL with the
 * mistake in err, or -ENOMEM. */
static int check_table(const sn_config_desc *descs, size_t n, sn_config_error *err)
{
    int rc = 0;
    char(*envs)[ENV_NAME_MAX] = calloc(n > 0 ? n : 1, sizeof *envs);
    if (envs == NULL) {
        set_error(err, "config: out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const sn_config_desc *d = &descs[i];
        if (d->path == NULL || !valid_path(d->path)) {
            set_error(err, "config: descriptor %zu: bad path \"%s\"", i, d->path ? d->path : "");
            rc = -EINVAL;
            goto out;
        }
        if (type_size(d) == 0 || d->size != type_size(d)) {
            set_error(err, "config: %s: field size %zu does not fit the type", d->path, d->size);
            rc = -EINVAL;
            goto out;
        }
        if (d->type == SN_CONFIG_ENUM && (d->choices == NULL || d->choices[0] == NULL)) {
            set_error(err, "config: %s: enum without choices", d->path);
            rc = -EINVAL;
            goto out;
        }
        char *env_i = envs[i];
        if (sn_config_env_name(d, env_i, ENV_NAME_MAX) >= ENV_NAME_MAX) {
            set_error(err, "config: %s: environment name too long", d->path);
            rc = -EINVAL;
            goto out;
        }
        size_t li = strlen(d->path);
        for (size_t j = 0; j < i; j++) {
            const char *pj = descs[j].path;
            size_t lj = strlen(pj);
            if (strcmp(pj, d->path) == 0) {
                set_error(err, "config: %s: declared twice", d->path);
                rc = -EINVAL;
                goto out;
            }
            if ((lj < li && strncmp(pj, d->path, lj) == 0 && d->path[lj] == '.') ||
                (li < lj && strncmp(pj, d->path, li) == 0 && pj[li] == '.')) {
                set_error(err, "config: %s and %s: a setting cannot also be a section", pj,
                          d->path);
                rc = -EINVAL;
                goto out;
            }
            if (strcmp(env_i, envs[j]) == 0) {
                set_error(err, "config: %s and %s: both read environment %s", pj, d->path, env_i);
                rc = -EINVAL;
                goto out;
            }
        }
    }
out:
    free(envs);
    return rc;
}

int sn_config_create(sn_config **out, const sn_config_desc *descs, size_t n, void *target,
                     sn_config_error *err)
{
    int rc;
    *out = NULL;
    if (err != NULL)
        err->msg[0] = '\0';
    rc = check_table(descs, n, err);
    if (rc != 0)
        return rc;
    sn_config *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL)
        goto out_nomem;
    cfg->origins = calloc(n > 0 ? n : 1, sizeof *cfg->origins);
    if (cfg->origins == NULL)
        goto out_free_cfg;
    cfg->descs = descs;
    cfg->n = n;
    cfg->target = target;
    const origin def = {.source = SN_CONFIG_FROM_DEFAULT};
    for (size_t i = 0; i < n; i++) {
        rc = assign(cfg, i, descs[i].def != NULL ? descs[i].def : "", &def, err);
        if (rc != 0)
            goto out_destroy;
    }
    *out = cfg;
    return 0;

out_destroy:
    sn_config_destroy(cfg);
    return rc;
out_free_cfg:
    free(cfg);
out_nomem:
    set_error(err, "config: out of memory");
    return -ENOMEM;
}

void sn_config_destroy(sn_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->origins);
    free(cfg->file);
    free(cfg);
}

const sn_config_desc *sn_config_find(const sn_config *cfg, const char *path)
{
    size_t i = find_index(cfg, path);
    return i == SIZE_MAX ? NULL : &cfg->descs[i];
}

const sn_config_desc *sn_config_descriptors(const sn_config *cfg, size_t *n)
{
    *n = cfg->n;
    return cfg->descs;
}

int sn_config_origin(const sn_config *cfg, const char *path, char *buf, size_t len)
{
    size_t i = find_index(cfg, path);
    if (i == SIZE_MAX)
        return -1;
    origin_text(cfg, i, &cfg->origins[i], false, buf, len);
    return cfg->origins[i].source;
}

/* ---- environment and command line ---- */

int sn_config_load_env(sn_config *cfg, sn_config_error *err)
{
    const origin env = {.source = SN_CONFIG_FROM_ENV};
    for (size_t i = 0; i < cfg->n; i++) {
        char name[ENV_NAME_MAX];
        sn_config_env_name(&cfg->descs[i], name, sizeof name);
        const char *v = getenv(name);
        if (v == NULL)
            continue;
        int rc = assign(cfg, i, v, &env, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int sn_config_set(sn_config *cfg, const char *path, const char *value, const char *origin_name,
                  sn_config_error *err)
{
    origin o = {.source = SN_CONFIG_FROM_FLAG};
    snprintf(o.name, sizeof o.name, "%s", origin_name != NULL ? origin_name : "--set");
    size_t i = find_index(cfg, path);
    if (i == SIZE_MAX) {
        char hint[SN_CONFIG_PATH_MAX + 32];
        suggest(cfg, path, hint, sizeof hint);
        set_error(err, "config: unknown setting \"%.*s\"%s from %s", SN_CONFIG_PATH_MAX, path, hint,
                  o.name);
        return -EINVAL;
    }
    return assign(cfg, i, value, &o, err);
}

int sn_config_set_assignment(sn_config *cfg, const char *assignment, sn_config_error *err)
{
    const char *eq = strchr(assignment, '=');
    if (eq == NULL || eq == assignment || (size_t)(eq - assignment) >= SN_CONFIG_PATH_MAX) {
        set_error(err, "config: --set needs PATH=VALUE (got \"%.*s\")", SN_CONFIG_PATH_MAX,
                  assignment);
        return -EINVAL;
    }
    char path[SN_CONFIG_PATH_MAX];
    memcpy(path, assignment, (size_t)(eq - assignment));
    path[eq - assignment] = '\0';
    return sn_config_set(cfg, path, eq + 1, "--set", err);
}

/* ---- YAML ---- */

typedef struct yaml_ctx {
    sn_config *cfg;
    yaml_parser_t parser;
    const char *name;
    sn_config_error *err;
} yaml_ctx;

static unsigned long event_line(const yaml_event_t *ev)
{
    return (unsigned long)ev->start_mark.line + 1;
}

/* Fetches the next event; a syntax error becomes a config error naming the line. */
static int next_event(yaml_ctx *y, yaml_event_t *ev)
{
    if (yaml_parser_parse(&y->parser, ev))
        return 0;
    set_error(y->err, "config: YAML syntax error: %s at %s:%lu",
              y->parser.problem ? y->parser.problem : "unknown", y->name,
              (unsigned long)y->parser.problem_mark.line + 1);
    return -EINVAL;
}

static bool is_null_scalar(const yaml_event_t *ev)
{
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)ev->data.scalar.value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static int yaml_assign(yaml_ctx *y, size_t i, const char *text, unsigned long line)
{
    origin *cur = &y->cfg->origins[i];
    if (cur->source == SN_CONFIG_FROM_FILE && cur->gen == y->cfg->gen) {
        set_error(y->err, "config: %s: duplicate key at %s:%lu (first at line %" PRIu32 ")",
                  y->cfg->descs[i].path, y->name, line, cur->line);
        return -EINVAL;
    }
    origin o = {.source = SN_CONFIG_FROM_FILE, .line = (uint32_t)line, .gen = y->cfg->gen};
    return assign(y->cfg, i, text, &o, y->err);
}

/* Reads a sequence of scalars (the SEQUENCE_START already consumed) into list setting i. */
static int yaml_list(yaml_ctx *y, size_t i, unsigned long line)
{
    const sn_config_desc *d = &y->cfg->descs[i];
    sn_config_list *l = calloc(1, sizeof *l);
    int rc = 0;
    if (l == NULL) {
        set_error(y->err, "config: out of memory");
        return -ENOMEM;
    }
    for (;;) {
        yaml_event_t ev;
        rc = next_event(y, &ev);
        if (rc != 0)
            goto out_free_list;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            set_error(y->err, "config: %s: list items must be strings at %s:%lu", d->path, y->name,
                      event_line(&ev));
            yaml_event_delete(&ev);
            rc = -EINVAL;
            goto out_free_list;
        }
        size_t vl = ev.data.scalar.length;
        if (vl == 0 || vl >= SN_CONFIG_ITEM_MAX || l->count >= SN_CONFIG_LIST_MAX) {
            char what[128];
            sn_config_describe(d, what, sizeof what);
            set_error(y->err, "config: %s: must be %s at %s:%lu", d->path, what, y->name,
                      event_line(&ev));
            yaml_event_delete(&ev);
            rc = -EINVAL;
            goto out_free_list;
        }
        memcpy(l->items[l->count++], ev.data.scalar.value, vl);
        yaml_event_delete(&ev);
    }
    origin *cur = &y->cfg->origins[i];
    if (cur->source == SN_CONFIG_FROM_FILE && cur->gen == y->cfg->gen) {
        set_error(y->err, "config: %s: duplicate key at %s:%lu (first at line %" PRIu32 ")",
                  d->path, y->name, line, cur->line);
        rc = -EINVAL;
        goto out_free_list;
    }
    memcpy(field(y->cfg, i), l, sizeof *l);
    *cur = (origin){.source = SN_CONFIG_FROM_FILE, .line = (uint32_t)line, .gen = y->cfg->gen};
out_free_list:
    free(l);
    return rc;
}

static int yaml_node(yaml_ctx *y, const char *path, yaml_event_t *ev, int depth);

/* Walks a mapping (MAPPING_START consumed) whose keys extend path. */
static int yaml_mapping(yaml_ctx *y, const char *path, int depth)
{
    for (;;) {
        yaml_event_t key;
        int rc = next_event(y, &key);
        if (rc != 0)
            return rc;
        if (key.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&key);
            return 0;
        }
        unsigned long line = event_line(&key);
        if (key.type != YAML_SCALAR_EVENT) {
            set_error(y->err, "config: keys must be plain names at %s:%lu", y->name, line);
            yaml_event_delete(&key);
            return -EINVAL;
        }
        char child[SN_CONFIG_PATH_MAX];
        int cl = snprintf(child, sizeof child, "%s%s%s", path, path[0] ? "." : "",
                          (const char *)key.data.scalar.value);
        bool known = cl > 0 && (size_t)cl < sizeof child && key.data.scalar.length > 0 &&
                     (find_index(y->cfg, child) != SIZE_MAX || is_section(y->cfg, child));
        if (!known) {
            char hint[SN_CONFIG_PATH_MAX + 32], shown[ECHO_MAX * 4 + 16];
            suggest(y->cfg, child, hint, sizeof hint);
            echo_value(child, shown, sizeof shown);
            set_error(y->err, "config: unknown key %s%s at %s:%lu", shown, hint, y->name, line);
            yaml_event_delete(&key);
            return -EINVAL;
        }
        yaml_event_delete(&key);
        yaml_event_t val;
        rc = next_event(y, &val);
        if (rc != 0)
            return rc;
        rc = yaml_node(y, child, &val, depth + 1);
        yaml_event_delete(&val);
        if (rc != 0)
            return rc;
    }
}

/* Handles the node that starts with ev, found at path ("" for the document root). */
static int yaml_node(yaml_ctx *y, const char *path, yaml_event_t *ev, int depth)
{
    unsigned long line = event_line(ev);
    size_t i = path[0] ? find_index(y->cfg, path) : SIZE_MAX;
    char what[256];
    if (depth > SN_CONFIG_DEPTH_MAX) {
        set_error(y->err, "config: nesting deeper than %d at %s:%lu", SN_CONFIG_DEPTH_MAX, y->name,
                  line);
        return -EINVAL;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (i != SIZE_MAX) {
            const char *v = is_null_scalar(ev) ? "" : (const char *)ev->data.scalar.value;
            if (strlen(v) != ev->data.scalar.length) {
                set_error(y->err, "config: %s: value contains a NUL byte at %s:%lu", path, y->name,
                          line);
                return -EINVAL;
            }
            return yaml_assign(y, i, v, line);
        }
        if (is_null_scalar(ev))
            return 0; /* an empty section, or an empty document */
        if (path[0] == '\0')
            set_error(y->err, "config: the top level must be a mapping at %s:%lu", y->name, line);
        else
            set_error(y->err,
                      "config: %s: is a section and needs a mapping, not a value at "
                      "%s:%lu",
                      path, y->name, line);
        return -EINVAL;
    case YAML_MAPPING_START_EVENT:
        if (i != SIZE_MAX) {
            sn_config_describe(&y->cfg->descs[i], what, sizeof what);
            set_error(y->err, "config: %s: must be %s, not a mapping at %s:%lu", path, what,
                      y->name, line);
            return -EINVAL;
        }
        return yaml_mapping(y, path, depth);
    case YAML_SEQUENCE_START_EVENT:
        if (i != SIZE_MAX && y->cfg->descs[i].type == SN_CONFIG_LIST)
            return yaml_list(y, i, line);
        if (i != SIZE_MAX) {
            sn_config_describe(&y->cfg->descs[i], what, sizeof what);
            set_error(y->err, "config: %s: must be %s, not a list at %s:%lu", path, what, y->name,
                      line);
        } else if (path[0] == '\0') {
            set_error(y->err, "config: the top level must be a mapping at %s:%lu", y->name, line);
        } else {
            set_error(y->err,
                      "config: %s: is a section and needs a mapping, not a list at "
                      "%s:%lu",
                      path, y->name, line);
        }
        return -EINVAL;
    case YAML_ALIAS_EVENT:
        set_error(y->err, "config: YAML aliases are not supported at %s:%lu", y->name, line);
        return -EINVAL;
    default:
        set_error(y->err, "config: unexpected YAML at %s:%lu", y->name, line);
        return -EINVAL;
    }
}

int sn_config_load_yaml(sn_config *cfg, const char *yaml, size_t len, const char *name,
                        sn_config_error *err)
{
    yaml_ctx y = {.cfg = cfg, .name = name, .err = err};
    yaml_event_t ev;
    int rc;
    if (len > SN_CONFIG_FILE_MAX) {
        set_error(err, "config: %s: larger than %d bytes", name, SN_CONFIG_FILE_MAX);
        return -EFBIG;
    }
    /* Origins of file values print cfg->file; keep this load's name there. */
    char *copy = strdup(name);
    if (copy == NULL) {
        set_error(err, "config: out of memory");
        return -ENOMEM;
    }
    free(cfg->file);
    cfg->file = copy;
    y.name = cfg->file;
    cfg->gen++;
    if (!yaml_parser_initialize(&y.parser)) {
        set_error(err, "config: out of memory");
        return -ENOMEM;
    }
    yaml_parser_set_input_string(&y.parser, (const unsigned char *)yaml, len);
    int documents = 0;
    for (;;) {
        rc = next_event(&y, &ev);
        if (rc != 0)
            goto out_parser;
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT && ++documents > 1) {
            set_error(err, "config: only one YAML document is allowed at %s:%lu", y.name,
                      event_line(&ev));
            yaml_event_delete(&ev);
            rc = -EINVAL;
            goto out_parser;
        }
        yaml_event_delete(&ev);
        if (t != YAML_DOCUMENT_START_EVENT)
            continue; /* stream start, document end */
        rc = next_event(&y, &ev);
        if (rc != 0)
            goto out_parser;
        rc = yaml_node(&y, "", &ev, 0);
        yaml_event_delete(&ev);
        if (rc != 0)
            goto out_parser;
    }
    rc = 0;
out_parser:
    yaml_parser_delete(&y.parser);
    return rc;
}

int sn_config_load_file(sn_config *cfg, const char *path, sn_config_error *err)
{
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        set_error(err, "config: cannot read %s: %s", path, strerror(-rc));
        return rc;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        rc = -ENOMEM;
        set_error(err, "config: out of memory");
        goto out_close;
    }
    for (;;) {
        if (len == cap) {
            if (cap > SN_CONFIG_FILE_MAX) {
                rc = -EFBIG;
                set_error(err, "config: %s: larger than %d bytes", path, SN_CONFIG_FILE_MAX);
                goto out_free_buf;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                rc = -ENOMEM;
                set_error(err, "config: out of memory");
                goto out_free_buf;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            set_error(err, "config: cannot read %s: %s", path, strerror(-rc));
            goto out_free_buf;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (len > SN_CONFIG_FILE_MAX) {
        rc = -EFBIG;
        set_error(err, "config: %s: larger than %d bytes", path, SN_CONFIG_FILE_MAX);
        goto out_free_buf;
    }
    rc = sn_config_load_yaml(cfg, buf, len, path, err);
out_free_buf:
    free(buf);
out_close:
    close(fd);
    return rc;
}

/* ---- JSON dump and live changes ---- */

static json_t *value_json(const sn_config_desc *d, const void *target)
{
    const unsigned char *p = (const unsigned char *)target + d->offset;
    char text[SN_CONFIG_HOST_MAX + 16];
    switch (d->type) {
    case SN_CONFIG_BOOL: {
        bool v;
        memcpy(&v, p, sizeof v);
        return json_boolean(v);
    }
    case SN_CONFIG_INT: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        return json_integer((json_int_t)v);
    }
    case SN_CONFIG_DOUBLE: {
        double v;
        memcpy(&v, p, sizeof v);
        if (isnan(v))
            return json_null(); /* an optional number that is off */
        return json_real(v);
    }
    case SN_CONFIG_STRING:
        return json_stringn((const char *)p, strnlen((const char *)p, d->size));
    case SN_CONFIG_LIST: {
        const sn_config_list *l = (const sn_config_list *)p;
        json_t *a = json_array();
        for (uint32_t i = 0; a != NULL && i < l->count; i++) {
            if (json_array_append_new(a, json_string(l->items[i])) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    default:
        sn_config_format_value(d, target, text, sizeof text);
        return json_string(text);
    }
}

static bool value_is_empty(const sn_config_desc *d, const void *target)
{
    const unsigned char *p = (const unsigned char *)target + d->offset;
    if (d->type == SN_CONFIG_STRING)
        return p[0] == '\0';
    if (d->type == SN_CONFIG_ADDRESS)
        return ((const sn_config_address *)p)->host[0] == '\0';
    if (d->type == SN_CONFIG_LIST)
        return ((const sn_config_list *)p)->count == 0;
    return false;
}

/* Sets root[a][b]...[leaf] = v for the dotted path; steals v. */
static int json_set_path(json_t *root, const char *path, json_t *v)
{
    json_t *obj = root;
    const char *seg = path;
    for (;;) {
        const char *dot = strchr(seg, '.');
        if (dot == NULL)
            return json_object_set_new(obj, seg, v);
        char key[SN_CONFIG_PATH_MAX];
        snprintf(key, sizeof key, "%.*s", (int)(dot - seg), seg);
        json_t *next = json_object_get(obj, key);
        if (next == NULL) {
            next = json_object();
            if (next == NULL || json_object_set_new(obj, key, next) != 0) {
                json_decref(v);
                return -1;
            }
        }
        obj = next;
        seg = dot + 1;
    }
}

json_t *sn_config_dump_json(const sn_config *cfg)
{
    json_t *root = json_object();
    if (root == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->n; i++) {
        const sn_config_desc *d = &cfg->descs[i];
        json_t *v;
        if ((d->flags & SN_CONFIG_SECRET) && !value_is_empty(d, cfg->target))
            v = json_string(SN_CONFIG_REDACTED);
        else
            v = value_json(d, cfg->target);
        if (v == NULL || json_set_path(root, d->path, v) != 0) {
            json_decref(root);
            return NULL;
        }
    }
    return root;
}

typedef struct pending {
    size_t idx;
    void *value; /* d->size bytes */
} pending;

typedef struct apply_ctx {
    sn_config *cfg;
    pending *items;
    size_t count;
    sn_config_error *err;
} apply_ctx;

/* Turns one JSON value for setting i into a parsed scratch value appended to a->items. */
static int apply_leaf(apply_ctx *a, size_t i, const json_t *v)
{
    const sn_config_desc *d = &a->cfg->descs[i];
    const origin api = {.source = SN_CONFIG_FROM_API};
    char what[256], text[64];
    const char *s = text;
    for (size_t k = 0; k < a->count; k++) {
        if (a->items[k].idx == i) {
            set_error(a->err, "config: %s: set twice in the API request", d->path);
            return -EINVAL;
        }
    }
    /* A dump posted back unchanged must apply: the redaction marker keeps a secret as it is. */
    if ((d->flags & SN_CONFIG_SECRET) && json_is_string(v) &&
        strcmp(json_string_value(v), SN_CONFIG_REDACTED) == 0)
        return 0;
    void *scratch = calloc(1, d->size);
    if (scratch == NULL) {
        set_error(a->err, "config: out of memory");
        return -ENOMEM;
    }
    int rc = 0;
    if (json_is_array(v) && d->type == SN_CONFIG_LIST) {
        sn_config_list *l = scratch;
        size_t k;
        json_t *item;
        json_array_foreach(v, k, item)
        {
            if (!json_is_string(item) || json_string_length(item) == 0 ||
                json_string_length(item) >= SN_CONFIG_ITEM_MAX || l->count >= SN_CONFIG_LIST_MAX) {
                sn_config_describe(d, what, sizeof what);
                set_error(a->err, "config: %s: must be %s in the API request", d->path, what);
                rc = -EINVAL;
                goto out_free_scratch;
            }
            memcpy(l->items[l->count++], json_string_value(item), json_string_length(item));
        }
    } else if (json_is_array(v) || json_is_object(v)) {
        sn_config_describe(d, what, sizeof what);
        set_error(a->err, "config: %s: must be %s, not a%s in the API request", d->path, what,
                  json_is_array(v) ? " list" : "n object");
        rc = -EINVAL;
        goto out_free_scratch;
    } else {
        if (json_is_string(v)) {
            s = json_string_value(v);
            if (strlen(s) != json_string_length(v)) {
                set_error(a->err, "config: %s: value contains a NUL byte in the API request",
                          d->path);
                rc = -EINVAL;
                goto out_free_scratch;
            }
        } else if (json_is_integer(v)) {
            snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        } else if (json_is_real(v)) {
            snprintf(text, sizeof text, "%.17g", json_real_value(v));
        } else if (json_is_boolean(v)) {
            snprintf(text, sizeof text, "%s", json_is_true(v) ? "true" : "false");
        } else {
            text[0] = '\0'; /* null */
        }
        if (strnlen(s, SN_CONFIG_VALUE_MAX + 1) > SN_CONFIG_VALUE_MAX ||
            parse_value(d, s, scratch) != 0) {
            value_error(a->cfg, i, s, &api, a->err);
            rc = -EINVAL;
            goto out_free_scratch;
        }
    }
    if (!(d->flags & SN_CONFIG_LIVE)) {
        /* Restating the current value is fine; changing it needs a restart. */
        if (memcmp(scratch, field(a->cfg, i), d->size) == 0) {
            free(scratch);
            return 0;
        }
        set_error(a->err, "config: %s: cannot be changed at run time (restart needed)", d->path);
        rc = -EINVAL;
        goto out_free_scratch;
    }
    a->items[a->count++] = (pending){.idx = i, .value = scratch};
    return 0;
out_free_scratch:
    free(scratch);
    return rc;
}

/* Collects the changes in obj (whose keys extend prefix) into a->items. */
static int apply_object(apply_ctx *a, const char *prefix, const json_t *obj, int depth)
{
    const char *key;
    json_t *v;
    if (depth > SN_CONFIG_DEPTH_MAX) {
        set_error(a->err, "config: API request nested deeper than %d", SN_CONFIG_DEPTH_MAX);
        return -EINVAL;
    }
    json_object_foreach((json_t *)obj, key, v)
    {
        char path[SN_CONFIG_PATH_MAX];
        int pl = snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", key);
        if (pl <= 0 || (size_t)pl >= sizeof path) {
            set_error(a->err, "config: unknown setting \"%.*s...\" in the API request", 64, key);
            return -EINVAL;
        }
        size_t i = find_index(a->cfg, path);
        int rc;
        if (i != SIZE_MAX)
            rc = apply_leaf(a, i, v);
        else if (is_section(a->cfg, path) && json_is_object(v))
            rc = apply_object(a, path, v, depth + 1);
        else if (is_section(a->cfg, path)) {
            set_error(a->err, "config: %s: is a section and needs an object", path);
            rc = -EINVAL;
        } else {
            char hint[SN_CONFIG_PATH_MAX + 32];
            suggest(a->cfg, path, hint, sizeof hint);
            set_error(a->err, "config: unknown setting \"%s\"%s in the API request", path, hint);
            rc = -EINVAL;
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

int sn_config_apply_json(sn_config *cfg, const json_t *changes, size_t *nchanged,
                         sn_config_error *err)
{
    if (!json_is_object(changes)) {
        set_error(err, "config: the change must be a JSON object");
        return -EINVAL;
    }
    apply_ctx a = {.cfg = cfg, .err = err};
    a.items = calloc(cfg->n > 0 ? cfg->n : 1, sizeof *a.items);
    if (a.items == NULL) {
        set_error(err, "config: out of memory");
        return -ENOMEM;
    }
    int rc = apply_object(&a, "", changes, 0);
    if (rc == 0) {
        size_t changed = 0;
        for (size_t k = 0; k < a.count; k++) {
            size_t i = a.items[k].idx;
            void *dst = field(cfg, i);
            if (memcmp(dst, a.items[k].value, cfg->descs[i].size) != 0)
                changed++;
            memcpy(dst, a.items[k].value, cfg->descs[i].size);
            cfg->origins[i] = (origin){.source = SN_CONFIG_FROM_API};
        }
        if (nchanged != NULL)
            *nchanged = changed;
    }
    for (size_t k = 0; k < a.count; k++)
        free(a.items[k].value);
    free(a.items);
    return rc;
}
