/*
 * json_util.c -- shared pieces of the OTLP/JSON metrics and logs decoders (see json_util.h).
 */
#include "otlp/json_util.h"

#include "otlp/traces_json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void sn_otlp_json_syntax_error(const json_error_t *e, char *err, size_t errsize)
{
    if (errsize == 0)
        return;
    int n = snprintf(err, errsize, "invalid JSON at line %d column %d: ", e->line, e->column);
    if (n < 0 || (size_t)n >= errsize)
        return;
    size_t i = (size_t)n;
    for (const char *t = e->text; *t != '\0' && i + 1 < errsize; t++, i++) {
        unsigned char c = (unsigned char)*t;
        err[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    err[i] = '\0';
}

int sn_otlp_json_prescan(const uint8_t *p, size_t len, char *err, size_t errsize)
{
    size_t depth = 0, nodes = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = p[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
            continue;
        }
        switch (c) {
        case '"':
            in_string = true;
            nodes++;
            break;
        case '{':
            nodes += SN_OTLP_JSON_OBJECT_WEIGHT;
            /* fall through */
        case '[':
            nodes++;
            if (++depth > SN_OTLP_JSON_MAX_DEPTH) {
                snprintf(err, errsize, "JSON nested deeper than %d levels", SN_OTLP_JSON_MAX_DEPTH);
                return -1;
            }
            break;
        case ']':
        case '}':
            if (depth > 0)
                depth--;
            break;
        case ',':
            nodes++;
            break;
        default:
            break;
        }
        if (nodes > SN_OTLP_JSON_MAX_NODES) {
            snprintf(err, errsize, "JSON document has too many values (limit %u)",
                     SN_OTLP_JSON_MAX_NODES);
            return -1;
        }
    }
    return 0;
}

/* Parses the decimal digits s[0..n) into *out; false on a non-digit, no digits, or overflow. */
static bool parse_digits(const char *s, size_t n, uint64_t *out)
{
    if (n == 0)
        return false;
    uint64_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t dgt = (uint64_t)(s[i] - '0');
        if (acc > (UINT64_MAX - dgt) / 10)
            return false;
        acc = acc * 10 + dgt;
    }
    *out = acc;
    return true;
}

bool sn_otlp_json_int64(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= -9.2233720368547758e18 && d < 9.2233720368547758e18) || d != floor(d))
            return false;
        *out = (int64_t)d;
        return true;
    }
    if (!json_is_string(v))
        return false;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    bool neg = n > 0 && s[0] == '-';
    uint64_t acc;
    if (!parse_digits(s + neg, n - neg, &acc))
        return false;
    if (neg) {
        if (acc > (uint64_t)INT64_MAX + 1)
            return false;
        *out = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
    } else {
        if (acc > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)acc;
    }
    return true;
}

bool sn_otlp_json_uint64(const json_t *v, uint64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0)
            return false;
        *out = (uint64_t)i;
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= 0 && d < 1.8446744073709552e19) || d != floor(d))
            return false;
        *out = (uint64_t)d;
        return true;
    }
    if (!json_is_string(v))
        return false;
    return parse_digits(json_string_value(v), json_string_length(v), out);
}

bool sn_otlp_json_double(const json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return true;
    }
    if (!json_is_string(v))
        return false;
    const char *s = json_string_value(v);
    if (strcmp(s, "NaN") == 0)
        *out = NAN;
    else if (strcmp(s, "Infinity") == 0)
        *out = INFINITY;
    else if (strcmp(s, "-Infinity") == 0)
        *out = -INFINITY;
    else
        return false;
    return true;
}

bool sn_otlp_json_scalar(const json_t *val, size_t max, sn_attr_value *out, bool *truncated)
{
    memset(out, 0, sizeof *out);
    *truncated = false;
    if (!json_is_object(val))
        return false;
    const json_t *x;
    if ((x = json_object_get(val, "stringValue")) != NULL && json_is_string(x)) {
        size_t n = json_string_length(x);
        const char *s = json_string_value(x);
        if (n > max) {
            n = max;
            *truncated = true;
            while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
                n--; /* cut before a UTF-8 continuation byte */
        }
        out->type = SN_ATTR_STRING;
        out->str = s;
        out->len = n;
        return true;
    }
    if ((x = json_object_get(val, "boolValue")) != NULL && json_is_boolean(x)) {
        out->type = SN_ATTR_BOOL;
        out->b = json_is_true(x);
        return true;
    }
    if ((x = json_object_get(val, "intValue")) != NULL && !json_is_null(x)) {
        out->type = SN_ATTR_INT;
        return sn_otlp_json_int64(x, &out->i);
    }
    if ((x = json_object_get(val, "doubleValue")) != NULL && !json_is_null(x)) {
        out->type = SN_ATTR_DOUBLE;
        return sn_otlp_json_double(x, &out->d);
    }
    return false;
}

json_t *sn_otlp_json_load_request(const uint8_t *buf, size_t len, char *err, size_t errsize)
{
    if (sn_otlp_json_prescan(buf, len, err, errsize) != 0)
        return NULL;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf, len, 0, &jerr);
    if (root == NULL) {
        sn_otlp_json_syntax_error(&jerr, err, errsize);
        return NULL;
    }
    if (!json_is_object(root)) {
        snprintf(err, errsize, "request is not a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}
