/*
 * yamljson.c -- YAML streams <-> jansson values through libyaml's event parser and emitter.
 */
#include "yamljson.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Writes a formatted message into err. */
static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool is_one_of(const char *s, const char *const *words)
{
    for (; *words != NULL; words++)
        if (strcmp(s, *words) == 0)
            return true;
    return false;
}

static const char *const null_words[] = {"", "~", "null", "Null", "NULL", NULL};
static const char *const true_words[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                         "on",   "On",   "ON",   "y",   "Y",   NULL};
static const char *const false_words[] = {"false", "False", "FALSE", "no", "No", "NO",
                                          "off",   "Off",   "OFF",   "n",  "N",  NULL};

/* Parses s as an integer per YAML 1.1 (sign, 0x, 0o, leading-zero octal, decimal). */
static bool parse_int(const char *s, long long *out)
{
    const char *p = s;
    bool neg = false;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    int base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    } else if (p[0] == '0' && p[1] == 'o') {
        base = 8;
        p += 2;
    } else if (p[0] == '0' && p[1] != '\0') {
        base = 8;
        p += 1;
    }
    if (*p == '\0')
        return false;
    unsigned long long v = 0;
    for (; *p != '\0'; p++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (base == 16 && *p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else if (base == 16 && *p >= 'A' && *p <= 'F')
            d = *p - 'A' + 10;
        else
            return false;
        if (d >= base || v > (9223372036854775808ULL - (unsigned)d) / (unsigned)base)
            return false;
        v = v * (unsigned)base + (unsigned)d;
    }
    if (!neg && v > 9223372036854775807ULL)
        return false;
    *out = neg ? (long long)(0 - v) : (long long)v;
    return true;
}

/* Parses s as a YAML float ([-+]?(.digits|digits[.digits])([eE][-+]?digits)?). */
static bool parse_float(const char *s, double *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    size_t nd = 0;
    while (*p >= '0' && *p <= '9') {
        p++;
        nd++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            p++;
            nd++;
        }
    }
    if (nd == 0)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p != '\0')
        return false;
    char *end;
    double v = strtod(s, &end);
    if (*end != '\0' || !isfinite(v))
        return false;
    *out = v;
    return true;
}

json_t *sn_yaml_resolve_plain(const char *s, size_t len)
{
    if (strlen(s) != len) /* an embedded NUL: keep the bytes as a string */
        return json_stringn(s, len);
    if (is_one_of(s, null_words))
        return json_null();
    if (is_one_of(s, true_words))
        return json_true();
    if (is_one_of(s, false_words))
        return json_false();
    long long i;
    if (parse_int(s, &i))
        return json_integer(i);
    double d;
    if (parse_float(s, &d))
        return json_real(d);
    return json_stringn(s, len);
}

bool sn_yaml_needs_quotes(const char *s)
{
    json_t *v = sn_yaml_resolve_plain(s, strlen(s));
    bool other = v == NULL || !json_is_string(v);
    json_decref(v);
    if (other)
        return true;
    /* Numbers, dates, .inf/.nan and the like: anything a YAML 1.1 or 1.2 reader might take as
     * another type starts with a digit, a sign or a dot. */
    return (s[0] >= '0' && s[0] <= '9') || s[0] == '+' || s[0] == '-' || s[0] == '.' ||
           strcmp(s, "=") == 0 || strcmp(s, "<<") == 0;
}

/* --- loading --- */

typedef struct loader {
    yaml_parser_t parser;
    char *err;
    size_t errlen;
} loader;

/* Reads the next event; on a parser error fills err and returns -EINVAL. */
static int next_event(loader *L, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&L->parser, ev)) {
        set_err(L->err, L->errlen, "line %zu: %s", L->parser.problem_mark.line + 1,
                L->parser.problem != NULL ? L->parser.problem : "YAML syntax error");
        return -EINVAL;
    }
    return 0;
}

static int load_node(loader *L, yaml_event_t *ev, int depth, json_t **out);

/* Builds the scalar of ev. */
static json_t *scalar_value(const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    if (tag != NULL && strcmp(tag, YAML_STR_TAG) == 0)
        return json_stringn(v, len);
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || ev->data.scalar.quoted_implicit)
        if (tag == NULL || strcmp(tag, "!") == 0)
            return json_stringn(v, len);
    return sn_yaml_resolve_plain(v, len);
}

/* Loads a mapping whose start event has been read. */
static int load_mapping(loader *L, int depth, json_t **out)
{
    json_t *obj = json_object();
    int rc;
    if (obj == NULL)
        return -ENOMEM;
    for (;;) {
        yaml_event_t kev;
        rc = next_event(L, &kev);
        if (rc != 0)
            goto out_free_obj;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            *out = obj;
            return 0;
        }
        if (kev.type != YAML_SCALAR_EVENT) {
            set_err(L->err, L->errlen, "line %zu: mapping keys must be scalars",
                    kev.start_mark.line + 1);
            yaml_event_delete(&kev);
            rc = -EINVAL;
            goto out_free_obj;
        }
        char *key = strndup((const char *)kev.data.scalar.value, kev.data.scalar.length);
        size_t line = kev.start_mark.line + 1;
        yaml_event_delete(&kev);
        if (key == NULL) {
            rc = -ENOMEM;
            goto out_free_obj;
        }
        if (json_object_get(obj, key) != NULL) {
            set_err(L->err, L->errlen, "line %zu: duplicate key \"%.80s\"", line, key);
            free(key);
            rc = -EINVAL;
            goto out_free_obj;
        }
        yaml_event_t vev;
        json_t *val = NULL;
        rc = next_event(L, &vev);
        if (rc == 0)
            rc = load_node(L, &vev, depth + 1, &val);
        if (rc == 0 && json_object_set_new(obj, key, val) != 0)
            rc = -ENOMEM;
        free(key);
        if (rc != 0)
            goto out_free_obj;
    }
out_free_obj:
    json_decref(obj);
    return rc;
}

/* Loads a sequence whose start event has been read. */
static int load_sequence(loader *L, int depth, json_t **out)
{
    json_t *arr = json_array();
    if (arr == NULL)
        return -ENOMEM;
    for (;;) {
        yaml_event_t ev;
        int rc = next_event(L, &ev);
        if (rc != 0) {
            json_decref(arr);
            return rc;
        }
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            *out = arr;
            return 0;
        }
        json_t *val = NULL;
        rc = load_node(L, &ev, depth + 1, &val);
        if (rc == 0 && json_array_append_new(arr, val) != 0)
            rc = -ENOMEM;
        if (rc != 0) {
            json_decref(arr);
            return rc;
        }
    }
}

/* Loads the node starting with ev (consumed). */
static int load_node(loader *L, yaml_event_t *ev, int depth, json_t **out)
{
    int rc = 0;
    if (depth > SN_YAML_MAX_DEPTH) {
        set_err(L->err, L->errlen, "line %zu: nested deeper than %d", ev->start_mark.line + 1,
                SN_YAML_MAX_DEPTH);
        yaml_event_delete(ev);
        return -EINVAL;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        *out = scalar_value(ev);
        rc = *out != NULL ? 0 : -ENOMEM;
        break;
    case YAML_MAPPING_START_EVENT:
        rc = load_mapping(L, depth, out);
        break;
    case YAML_SEQUENCE_START_EVENT:
        rc = load_sequence(L, depth, out);
        break;
    case YAML_ALIAS_EVENT:
        set_err(L->err, L->errlen, "line %zu: aliases (*name) are not supported",
                ev->start_mark.line + 1);
        rc = -EINVAL;
        break;
    default:
        set_err(L->err, L->errlen, "line %zu: unexpected YAML event", ev->start_mark.line + 1);
        rc = -EINVAL;
        break;
    }
    yaml_event_delete(ev);
    return rc;
}

int sn_yaml_load(const char *text, size_t len, json_t **docs, char *err, size_t errlen)
{
    loader L = {.err = err, .errlen = errlen};
    *docs = NULL;
    if (!yaml_parser_initialize(&L.parser)) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    yaml_parser_set_input_string(&L.parser, (const unsigned char *)text, len);
    json_t *arr = json_array();
    int rc = arr != NULL ? 0 : -ENOMEM;
    while (rc == 0) {
        yaml_event_t ev;
        rc = next_event(&L, &ev);
        if (rc != 0)
            break;
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            yaml_event_t root;
            json_t *doc = NULL;
            rc = next_event(&L, &root);
            if (rc == 0)
                rc = load_node(&L, &root, 0, &doc);
            if (rc != 0)
                break;
            if (json_is_null(doc))
                json_decref(doc); /* an empty document */
            else if (json_array_append_new(arr, doc) != 0)
                rc = -ENOMEM;
            yaml_event_t end;
            if (rc == 0 && (rc = next_event(&L, &end)) == 0)
                yaml_event_delete(&end); /* DOCUMENT_END */
            continue;
        }
        yaml_event_delete(&ev); /* STREAM_START */
    }
    yaml_parser_delete(&L.parser);
    if (rc != 0) {
        if (rc == -ENOMEM)
            set_err(err, errlen, "out of memory");
        json_decref(arr);
        return rc;
    }
    *docs = arr;
    return 0;
}

/* --- dumping --- */

typedef struct outbuf {
    char *data;
    size_t len, cap;
    bool overflow;
} outbuf;

/* libyaml's write handler: appends to the bounded buffer. */
static int write_handler(void *ud, unsigned char *buf, size_t size)
{
    outbuf *o = ud;
    if (o->len + size + 1 > SN_YAML_MAX_OUTPUT) {
        o->overflow = true;
        return 0;
    }
    if (o->len + size + 1 > o->cap) {
        size_t ncap = o->cap == 0 ? 4096 : o->cap;
        while (ncap < o->len + size + 1)
            ncap *= 2;
        char *n = realloc(o->data, ncap);
        if (n == NULL)
            return 0;
        o->data = n;
        o->cap = ncap;
    }
    memcpy(o->data + o->len, buf, size);
    o->len += size;
    o->data[o->len] = '\0';
    return 1;
}

/* Emits one scalar. */
static int emit_scalar(yaml_emitter_t *em, const char *text, yaml_scalar_style_t style)
{
    yaml_event_t ev;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text), 1, 1,
                                      style))
        return -ENOMEM;
    return yaml_emitter_emit(em, &ev) ? 0 : -EIO;
}

/* Formats a finite double as the shortest text that reads back exactly, always with "." or
 * an exponent so that it stays a float. */
static void format_real(double v, char *buf, size_t cap)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    if (strpbrk(buf, ".eE") == NULL) {
        size_t n = strlen(buf);
        if (n + 3 <= cap)
            memcpy(buf + n, ".0", 3);
    }
}

static int emit_value(yaml_emitter_t *em, const json_t *v, int depth)
{
    yaml_event_t ev;
    char num[64];
    if (depth > SN_YAML_MAX_DEPTH)
        return -EINVAL;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        bool empty = json_object_size(v) == 0;
        if (!yaml_mapping_start_event_initialize(
                &ev, NULL, NULL, 1, empty ? YAML_FLOW_MAPPING_STYLE : YAML_BLOCK_MAPPING_STYLE))
            return -ENOMEM;
        if (!yaml_emitter_emit(em, &ev))
            return -EIO;
        const char *k;
        json_t *item;
        json_object_foreach((json_t *)v, k, item)
        {
            int rc = emit_scalar(em, k,
                                 sn_yaml_needs_quotes(k) ? YAML_DOUBLE_QUOTED_SCALAR_STYLE
                                                         : YAML_ANY_SCALAR_STYLE);
            if (rc == 0)
                rc = emit_value(em, item, depth + 1);
            if (rc != 0)
                return rc;
        }
        yaml_mapping_end_event_initialize(&ev);
        return yaml_emitter_emit(em, &ev) ? 0 : -EIO;
    }
    case JSON_ARRAY: {
        bool empty = json_array_size(v) == 0;
        if (!yaml_sequence_start_event_initialize(
                &ev, NULL, NULL, 1, empty ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE))
            return -ENOMEM;
        if (!yaml_emitter_emit(em, &ev))
            return -EIO;
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            int rc = emit_value(em, item, depth + 1);
            if (rc != 0)
                return rc;
        }
        yaml_sequence_end_event_initialize(&ev);
        return yaml_emitter_emit(em, &ev) ? 0 : -EIO;
    }
    case JSON_STRING: {
        const char *s = json_string_value(v);
        if (strlen(s) != json_string_length(v))
            return -EINVAL; /* an embedded NUL */
        yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
        if (sn_yaml_needs_quotes(s))
            style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        else if (strchr(s, '\n') != NULL)
            style = YAML_LITERAL_SCALAR_STYLE;
        return emit_scalar(em, s, style);
    }
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return emit_scalar(em, num, YAML_PLAIN_SCALAR_STYLE);
    case JSON_REAL:
        if (!isfinite(json_real_value(v)))
            return -EINVAL;
        format_real(json_real_value(v), num, sizeof num);
        return emit_scalar(em, num, YAML_PLAIN_SCALAR_STYLE);
    case JSON_TRUE:
        return emit_scalar(em, "true", YAML_PLAIN_SCALAR_STYLE);
    case JSON_FALSE:
        return emit_scalar(em, "false", YAML_PLAIN_SCALAR_STYLE);
    case JSON_NULL:
    default:
        return emit_scalar(em, "null", YAML_PLAIN_SCALAR_STYLE);
    }
}

int sn_yaml_dump(const json_t *docs, char **out, size_t *outlen, char *err, size_t errlen)
{
    yaml_emitter_t em;
    outbuf o = {0};
    yaml_event_t ev;
    int rc = 0;
    *out = NULL;
    *outlen = 0;
    if (!yaml_emitter_initialize(&em)) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    yaml_emitter_set_output(&em, write_handler, &o);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, -1);
    yaml_emitter_set_indent(&em, 2);
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    if (!yaml_emitter_emit(&em, &ev))
        rc = -EIO;
    size_t i;
    const json_t *doc;
    json_array_foreach(docs, i, doc)
    {
        if (rc != 0)
            break;
        yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, i == 0);
        if (!yaml_emitter_emit(&em, &ev)) {
            rc = -EIO;
            break;
        }
        rc = emit_value(&em, doc, 0);
        if (rc != 0)
            break;
        yaml_document_end_event_initialize(&ev, 1);
        if (!yaml_emitter_emit(&em, &ev))
            rc = -EIO;
    }
    if (rc == 0) {
        yaml_stream_end_event_initialize(&ev);
        if (!yaml_emitter_emit(&em, &ev) || !yaml_emitter_flush(&em))
            rc = -EIO;
    }
    yaml_emitter_delete(&em);
    if (rc != 0 || o.data == NULL) {
        if (o.overflow)
            rc = -E2BIG;
        else if (rc == -EIO || rc == 0)
            rc = -ENOMEM;
        set_err(err, errlen, "%s",
                rc == -E2BIG    ? "the output is larger than 64 MiB"
                : rc == -EINVAL ? "a value YAML cannot hold (a non-finite number or a NUL byte)"
                                : "out of memory");
        free(o.data);
        return rc;
    }
    *out = o.data;
    *outlen = o.len;
    return 0;
}
