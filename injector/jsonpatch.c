/*
 * jsonpatch.c -- JSON Pointer (RFC 6901) and JSON Patch (RFC 6902) on jansson values.
 */
#include "jsonpatch.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define TOKEN_MAX SN_JSONPATCH_POINTER_MAX

/* Writes a formatted one-line message into err when there is one. */
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

int sn_jsonpointer_escape(const char *token, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = token; *p != '\0'; p++) {
        const char *rep = NULL;
        if (*p == '~')
            rep = "~0";
        else if (*p == '/')
            rep = "~1";
        size_t need = rep != NULL ? 2 : 1;
        if (n + need >= cap) {
            if (cap > 0)
                out[0] = '\0';
            return -ENOSPC;
        }
        if (rep != NULL) {
            out[n++] = rep[0];
            out[n++] = rep[1];
        } else {
            out[n++] = *p;
        }
    }
    if (cap == 0)
        return -ENOSPC;
    out[n] = '\0';
    return (int)n;
}

int sn_jsonpointer_unescape(const char *token, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = token[i];
        if (c == '~') {
            if (i + 1 >= len || (token[i + 1] != '0' && token[i + 1] != '1'))
                return -EINVAL;
            c = token[i + 1] == '0' ? '~' : '/';
            i++;
        }
        if (n + 1 >= cap)
            return -ENOSPC;
        out[n++] = c;
    }
    if (cap == 0)
        return -ENOSPC;
    out[n] = '\0';
    return (int)n;
}

int sn_jsonpointer_append(char *buf, size_t cap, const char *token)
{
    size_t used = strnlen(buf, cap);
    if (used + 1 >= cap)
        return -ENOSPC;
    int n = sn_jsonpointer_escape(token, buf + used + 1, cap - used - 1);
    if (n < 0) {
        buf[used] = '\0';
        return -ENOSPC;
    }
    buf[used] = '/';
    return 0;
}

int sn_jsonpointer_append_index(char *buf, size_t cap, size_t index)
{
    char tok[32];
    snprintf(tok, sizeof tok, "%zu", index);
    return sn_jsonpointer_append(buf, cap, tok);
}

/* Parses an array index token: "0" or digits without a leading zero, within size_t. Returns 0
 * and sets *out, or -EINVAL. */
static int parse_index(const char *tok, size_t *out)
{
    if (tok[0] == '\0' || (tok[0] == '0' && tok[1] != '\0'))
        return -EINVAL;
    size_t v = 0;
    for (const char *p = tok; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        if (v > (SIZE_MAX - 9) / 10)
            return -EINVAL;
        v = v * 10 + (size_t)(*p - '0');
    }
    *out = v;
    return 0;
}

/* Walks pointer in doc. With want_parent, stops before the last token: *out is the parent
 * container and last holds the decoded last token (ptr must not be ""). Returns 0, or -EINVAL
 * (malformed pointer) / -ENOENT (names nothing). */
static int walk(json_t *doc, const char *pointer, bool want_parent, json_t **out, char *last,
                size_t lastcap)
{
    if (pointer[0] == '\0') {
        if (want_parent)
            return -EINVAL;
        *out = doc;
        return 0;
    }
    if (pointer[0] != '/')
        return -EINVAL;
    json_t *cur = doc;
    const char *p = pointer + 1;
    char tok[TOKEN_MAX];
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash != NULL ? (size_t)(slash - p) : strlen(p);
        if (sn_jsonpointer_unescape(p, len, tok, sizeof tok) < 0)
            return -EINVAL;
        if (slash == NULL && want_parent) {
            if (sn_jsonpointer_unescape(p, len, last, lastcap) < 0)
                return -EINVAL;
            *out = cur;
            return 0;
        }
        json_t *next = NULL;
        if (json_is_object(cur)) {
            next = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            size_t idx;
            if (parse_index(tok, &idx) == 0 && idx < json_array_size(cur))
                next = json_array_get(cur, idx);
        }
        if (next == NULL)
            return -ENOENT;
        cur = next;
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    *out = cur;
    return 0;
}

json_t *sn_jsonpointer_get(json_t *doc, const char *pointer)
{
    json_t *v = NULL;
    if (doc == NULL || pointer == NULL || walk(doc, pointer, false, &v, NULL, 0) != 0)
        return NULL;
    return v;
}

int sn_jsonpatch_add_op(json_t *patch, const char *op, const char *path, json_t *value)
{
    if (json_array_size(patch) >= SN_JSONPATCH_MAX_OPS) {
        json_decref(value);
        return -E2BIG;
    }
    json_t *o = json_object();
    if (o == NULL || json_object_set_new(o, "op", json_string(op)) != 0 ||
        json_object_set_new(o, "path", json_string(path)) != 0)
        goto out_free_op;
    if (value != NULL && json_object_set_new(o, "value", value) != 0) {
        value = NULL; /* set_new consumed it */
        goto out_free_op;
    }
    value = NULL;
    if (json_array_append_new(patch, o) != 0)
        return -ENOMEM;
    return 0;
out_free_op:
    json_decref(value);
    json_decref(o);
    return -ENOMEM;
}

int sn_jsonpatch_prefix(json_t *patch, const char *prefix)
{
    size_t i;
    json_t *op;
    json_array_foreach(patch, i, op)
    {
        static const char *const keys[] = {"path", "from"};
        for (size_t k = 0; k < 2; k++) {
            const char *old = json_string_value(json_object_get(op, keys[k]));
            if (old == NULL)
                continue;
            char buf[SN_JSONPATCH_POINTER_MAX];
            int n = snprintf(buf, sizeof buf, "%s%s", prefix, old);
            if (n < 0 || (size_t)n >= sizeof buf)
                return -ENOSPC;
            if (json_object_set_new(op, keys[k], json_string(buf)) != 0)
                return -ENOMEM;
        }
    }
    return 0;
}

/* RFC 6902 section 4.6 equality: numbers by value (1 equals 1.0), objects ignoring order. */
static bool values_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    if (json_typeof(a) != json_typeof(b))
        return false;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!values_equal(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v)
        {
            json_t *w = json_object_get(b, k);
            if (w == NULL || !values_equal(v, w))
                return false;
        }
        return true;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

/* Adds value (stolen) at path in *root (RFC 6902 4.1). Returns 0, -EINVAL, -ENOENT, -ENOMEM. */
static int op_add(json_t **root, const char *path, json_t *value)
{
    if (path[0] == '\0') {
        json_decref(*root);
        *root = value;
        return 0;
    }
    json_t *parent;
    char last[TOKEN_MAX];
    int rc = walk(*root, path, true, &parent, last, sizeof last);
    if (rc != 0)
        goto out_free_value;
    if (json_is_object(parent))
        return json_object_set_new(parent, last, value) == 0 ? 0 : -ENOMEM;
    if (json_is_array(parent)) {
        if (strcmp(last, "-") == 0)
            return json_array_append_new(parent, value) == 0 ? 0 : -ENOMEM;
        size_t idx;
        if (parse_index(last, &idx) != 0 || idx > json_array_size(parent)) {
            rc = -ENOENT;
            goto out_free_value;
        }
        return json_array_insert_new(parent, idx, value) == 0 ? 0 : -ENOMEM;
    }
    rc = -ENOENT;
out_free_value:
    json_decref(value);
    return rc;
}

/* Removes the value at path (4.2); when taken is not NULL, hands it over (a new reference)
 * instead of dropping it. */
static int op_remove(json_t *root, const char *path, json_t **taken)
{
    json_t *parent;
    char last[TOKEN_MAX];
    int rc = walk(root, path, true, &parent, last, sizeof last);
    if (rc != 0)
        return rc;
    if (json_is_object(parent)) {
        json_t *v = json_object_get(parent, last);
        if (v == NULL)
            return -ENOENT;
        if (taken != NULL)
            *taken = json_incref(v);
        json_object_del(parent, last);
        return 0;
    }
    size_t idx;
    if (!json_is_array(parent) || parse_index(last, &idx) != 0 || idx >= json_array_size(parent))
        return -ENOENT;
    if (taken != NULL)
        *taken = json_incref(json_array_get(parent, idx));
    json_array_remove(parent, idx);
    return 0;
}

/* Runs one operation on *root. Returns 0 or a negative errno with a message in err. */
static int apply_one(json_t **root, const json_t *op, size_t i, char *err, size_t errlen)
{
    const char *name = json_string_value(json_object_get(op, "op"));
    const char *path = json_string_value(json_object_get(op, "path"));
    const char *from = json_string_value(json_object_get(op, "from"));
    json_t *value = json_object_get(op, "value");
    if (!json_is_object(op) || name == NULL || path == NULL) {
        set_err(err, errlen, "operation %zu: needs string members \"op\" and \"path\"", i);
        return -EINVAL;
    }
    int rc;
    if (strcmp(name, "add") == 0 || strcmp(name, "replace") == 0) {
        if (value == NULL) {
            set_err(err, errlen, "operation %zu (%s %s): no \"value\"", i, name, path);
            return -EINVAL;
        }
        if (name[0] == 'r' && sn_jsonpointer_get(*root, path) == NULL) {
            rc = -ENOENT;
        } else {
            json_t *copy = json_deep_copy(value);
            if (copy == NULL)
                return -ENOMEM;
            if (name[0] == 'r' && path[0] != '\0')
                (void)op_remove(*root, path, NULL);
            rc = op_add(root, path, copy);
        }
    } else if (strcmp(name, "remove") == 0) {
        rc = path[0] == '\0' ? -EINVAL : op_remove(*root, path, NULL);
    } else if (strcmp(name, "test") == 0) {
        json_t *cur = sn_jsonpointer_get(*root, path);
        if (value == NULL) {
            set_err(err, errlen, "operation %zu (test %s): no \"value\"", i, path);
            return -EINVAL;
        }
        if (cur == NULL || !values_equal(cur, value)) {
            set_err(err, errlen, "operation %zu (test %s): the value differs", i, path);
            return -EINVAL;
        }
        rc = 0;
    } else if (strcmp(name, "move") == 0 || strcmp(name, "copy") == 0) {
        if (from == NULL) {
            set_err(err, errlen, "operation %zu (%s %s): no \"from\"", i, name, path);
            return -EINVAL;
        }
        json_t *src = sn_jsonpointer_get(*root, from);
        if (src == NULL) {
            set_err(err, errlen, "operation %zu (%s from %s): names nothing", i, name, from);
            return -EINVAL;
        }
        if (name[0] == 'm') {
            size_t fl = strlen(from);
            if (strcmp(from, path) == 0)
                return 0;
            if (strncmp(path, from, fl) == 0 && path[fl] == '/') {
                set_err(err, errlen, "operation %zu (move %s): into its own child %s", i, from,
                        path);
                return -EINVAL;
            }
            json_t *taken = NULL;
            if (from[0] == '\0') {
                rc = -EINVAL;
            } else {
                rc = op_remove(*root, from, &taken);
                if (rc == 0)
                    rc = op_add(root, path, taken);
            }
        } else {
            json_t *copy = json_deep_copy(src);
            if (copy == NULL)
                return -ENOMEM;
            rc = op_add(root, path, copy);
        }
    } else {
        set_err(err, errlen, "operation %zu: unknown op \"%s\"", i, name);
        return -EINVAL;
    }
    if (rc == -ENOMEM) {
        set_err(err, errlen, "operation %zu (%s %s): out of memory", i, name, path);
        return rc;
    }
    if (rc != 0) {
        set_err(err, errlen, "operation %zu (%s %s): %s", i, name, path,
                rc == -EINVAL ? "malformed path" : "the path names nothing");
        return -EINVAL;
    }
    return 0;
}

int sn_jsonpatch_apply(json_t **doc, const json_t *patch, char *err, size_t errlen)
{
    if (!json_is_array(patch)) {
        set_err(err, errlen, "a JSON Patch is an array of operations");
        return -EINVAL;
    }
    json_t *work = json_deep_copy(*doc);
    if (work == NULL && *doc != NULL) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t i;
    const json_t *op;
    json_array_foreach(patch, i, op)
    {
        int rc = apply_one(&work, op, i, err, errlen);
        if (rc != 0) {
            json_decref(work);
            return rc;
        }
    }
    json_decref(*doc);
    *doc = work;
    return 0;
}
