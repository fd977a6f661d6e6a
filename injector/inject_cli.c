/*
 * inject_cli.c -- offline injection of manifests.
 */
#include "inject_cli.h"

#include "jsonpatch.h"
#include "log.h"
#include "yamljson.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where each workload kind keeps its pod template ("" = the document is the pod). */
static const struct {
    const char *kind;
    const char *pointer;
} templates[] = {
    {"Pod", ""},
    {"Deployment", "/spec/template"},
    {"StatefulSet", "/spec/template"},
    {"DaemonSet", "/spec/template"},
    {"ReplicaSet", "/spec/template"},
    {"ReplicationController", "/spec/template"},
    {"Job", "/spec/template"},
    {"CronJob", "/spec/jobTemplate/spec/template"},
};

int sn_inject_document(const sn_inject_config *cfg, json_t **doc, const char *ns,
                       sn_inject_stats *stats, char *err, size_t errlen)
{
    const char *kind = json_string_value(json_object_get(*doc, "kind"));
    if (kind == NULL)
        return 0;
    if (strcmp(kind, "List") == 0 ||
        (strlen(kind) > 4 && strcmp(kind + strlen(kind) - 4, "List") == 0)) {
        json_t *items = json_object_get(*doc, "items");
        for (size_t i = 0; i < json_array_size(items); i++) {
            json_t *item = json_incref(json_array_get(items, i));
            int rc = sn_inject_document(cfg, &item, ns, stats, err, errlen);
            if (rc == 0 && json_array_set(items, i, item) != 0)
                rc = -ENOMEM;
            json_decref(item);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    const char *pointer = NULL;
    for (size_t i = 0; i < sizeof templates / sizeof templates[0]; i++)
        if (strcmp(kind, templates[i].kind) == 0)
            pointer = templates[i].pointer;
    if (pointer == NULL)
        return 0;
    json_t *tmpl = sn_jsonpointer_get(*doc, pointer);
    if (!json_is_object(tmpl))
        return 0;
    stats->templates++;
    const json_t *meta = json_object_get(*doc, "metadata");
    const char *name = json_string_value(json_object_get(meta, "name"));
    if (ns == NULL || ns[0] == '\0')
        ns = json_string_value(json_object_get(meta, "namespace"));
    sn_inject_result res;
    int rc = sn_inject_pod(cfg, tmpl, ns, SN_INJECT_ENABLED, &res, err, errlen);
    if (rc != 0)
        goto out_cleanup;
    size_t i;
    json_t *w;
    json_array_foreach(res.warnings, i, w)
    {
        sn_log_warn("annotation ignored", SN_LOG_STR("kind", kind), SN_LOG_STR("name", name),
                    SN_LOG_STR("detail", json_string_value(w)));
    }
    stats->warnings += json_array_size(res.warnings);
    if (!res.inject) {
        stats->skipped++;
        sn_log_info("not injected", SN_LOG_STR("kind", kind), SN_LOG_STR("name", name),
                    SN_LOG_STR("reason", res.skip_reason));
        goto out_cleanup;
    }
    rc = sn_jsonpatch_prefix(res.patch, pointer);
    if (rc == 0)
        rc = sn_jsonpatch_apply(doc, res.patch, err, errlen);
    else
        snprintf(err, errlen, "a path of the patch grew too long");
    if (rc == 0)
        stats->injected++;
out_cleanup:
    sn_inject_result_cleanup(&res);
    return rc;
}

/* True when the first non-space byte opens a JSON value. */
static bool looks_like_json(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n')
            continue;
        return text[i] == '{' || text[i] == '[';
    }
    return false;
}

/* Parses one or more concatenated JSON values. */
static int load_json(const char *text, size_t len, json_t **docs, char *err, size_t errlen)
{
    json_t *arr = json_array();
    if (arr == NULL)
        return -ENOMEM;
    size_t off = 0;
    while (off < len) {
        while (off < len &&
               (text[off] == ' ' || text[off] == '\n' || text[off] == '\r' || text[off] == '\t'))
            off++;
        if (off >= len)
            break;
        json_error_t je;
        json_t *v =
            json_loadb(text + off, len - off, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &je);
        if (v == NULL) {
            snprintf(err, errlen, "JSON: %s (line %d)", je.text, je.line);
            json_decref(arr);
            return -EINVAL;
        }
        off += je.position;
        if (json_array_append_new(arr, v) != 0) {
            json_decref(arr);
            return -ENOMEM;
        }
    }
    *docs = arr;
    return 0;
}

int sn_inject_stream(const sn_inject_config *cfg, const char *text, size_t len, const char *ns,
                     sn_inject_format format, char **out, size_t *outlen, sn_inject_stats *stats,
                     char *err, size_t errlen)
{
    memset(stats, 0, sizeof *stats);
    *out = NULL;
    *outlen = 0;
    bool json = looks_like_json(text, len);
    json_t *docs = NULL;
    int rc = json ? load_json(text, len, &docs, err, errlen)
                  : sn_yaml_load(text, len, &docs, err, errlen);
    if (rc != 0)
        return rc;
    stats->documents = json_array_size(docs);
    for (size_t i = 0; i < json_array_size(docs); i++) {
        json_t *doc = json_incref(json_array_get(docs, i));
        rc = sn_inject_document(cfg, &doc, ns, stats, err, errlen);
        if (rc == 0 && json_array_set(docs, i, doc) != 0)
            rc = -ENOMEM;
        json_decref(doc);
        if (rc != 0)
            goto out_free_docs;
    }
    if (format == SN_INJECT_FORMAT_YAML || (format == SN_INJECT_FORMAT_AUTO && !json)) {
        rc = sn_yaml_dump(docs, out, outlen, err, errlen);
        goto out_free_docs;
    }
    /* JSON: each document on its own, two-space indented, as kubectl prints it. */
    size_t cap = 0, used = 0;
    char *buf = NULL;
    for (size_t i = 0; i < json_array_size(docs); i++) {
        char *t = json_dumps(json_array_get(docs, i), JSON_INDENT(2) | JSON_ENCODE_ANY);
        if (t == NULL) {
            rc = -ENOMEM;
            break;
        }
        size_t tl = strlen(t);
        if (used + tl + 2 > cap) {
            size_t ncap = (used + tl + 2) * 2;
            char *n = realloc(buf, ncap);
            if (n == NULL) {
                free(t);
                rc = -ENOMEM;
                break;
            }
            buf = n;
            cap = ncap;
        }
        memcpy(buf + used, t, tl);
        used += tl;
        buf[used++] = '\n';
        buf[used] = '\0';
        free(t);
    }
    if (rc != 0) {
        free(buf);
        snprintf(err, errlen, "out of memory");
        goto out_free_docs;
    }
    if (buf == NULL)
        buf = calloc(1, 1);
    *out = buf;
    *outlen = used;
    rc = buf != NULL ? 0 : -ENOMEM;
out_free_docs:
    json_decref(docs);
    return rc;
}
