/*
 * logs_json.c -- OTLP/JSON ExportLogsServiceRequest -> counts (see logs.h).
 *
 * A byte scan bounds the document, jansson parses, one walk checks the structure and counts.
 * Nothing is counted into stats unless the whole document is well-formed.
 */
#include "otlp/logs.h"

#include "otlp/json_util.h"

#include <jansson.h>

#include <stdio.h>
#include <string.h>

/* An optional array member: absent or null is an empty array. Returns false, with err set,
 * when present and not an array. */
static bool optional_array(const json_t *obj, const char *name, const char *where,
                           const json_t **out, char *err, size_t errsize)
{
    const json_t *a = json_object_get(obj, name);
    *out = NULL;
    if (a == NULL || json_is_null(a))
        return true;
    if (!json_is_array(a)) {
        snprintf(err, errsize, "%s.%s is not an array", where, name);
        return false;
    }
    *out = a;
    return true;
}

/* True when the record names a GenAI event: eventName when present and non-empty, else an
 * event.name string attribute. Checks the attributes' structure on the way. */
static bool record(const json_t *rec, const char *where, bool *genai, char *err, size_t errsize)
{
    *genai = false;
    if (!json_is_object(rec)) {
        snprintf(err, errsize, "%s is not an object", where);
        return false;
    }
    const json_t *attrs;
    if (!optional_array(rec, "attributes", where, &attrs, err, errsize))
        return false;
    bool attr_genai = false;
    size_t i;
    const json_t *kv;
    json_array_foreach(attrs, i, kv)
    {
        if (!json_is_object(kv)) {
            snprintf(err, errsize, "%s.attributes[%zu] is not an object", where, i);
            return false;
        }
        const json_t *key = json_object_get(kv, "key");
        if (!json_is_string(key) || strcmp(json_string_value(key), "event.name") != 0)
            continue; /* never read: may be prompt or response text */
        const json_t *val = json_object_get(kv, "value");
        const json_t *str = json_is_object(val) ? json_object_get(val, "stringValue") : NULL;
        if (json_is_string(str))
            attr_genai = sn_otlp_is_genai_event(json_string_value(str), json_string_length(str));
    }
    const json_t *name = json_object_get(rec, "eventName");
    if (json_is_string(name) && json_string_length(name) > 0)
        *genai = sn_otlp_is_genai_event(json_string_value(name), json_string_length(name));
    else
        *genai = attr_genai;
    return true;
}

/* The walk over resourceLogs -> scopeLogs -> logRecords. */
static bool walk(const json_t *root, sn_otlp_log_stats *st, char *err, size_t errsize)
{
    const json_t *rls;
    if (!optional_array(root, "resourceLogs", "request", &rls, err, errsize))
        return false;
    size_t r, s, k;
    const json_t *rl, *sl, *rec;
    json_array_foreach(rls, r, rl)
    {
        char where[48];
        snprintf(where, sizeof where, "resourceLogs[%zu]", r);
        if (!json_is_object(rl)) {
            snprintf(err, errsize, "%s is not an object", where);
            return false;
        }
        st->resource_logs++;
        const json_t *sls;
        if (!optional_array(rl, "scopeLogs", where, &sls, err, errsize))
            return false;
        json_array_foreach(sls, s, sl)
        {
            char swhere[96];
            snprintf(swhere, sizeof swhere, "%s.scopeLogs[%zu]", where, s);
            if (!json_is_object(sl)) {
                snprintf(err, errsize, "%s is not an object", swhere);
                return false;
            }
            st->scope_logs++;
            const json_t *recs;
            if (!optional_array(sl, "logRecords", swhere, &recs, err, errsize))
                return false;
            json_array_foreach(recs, k, rec)
            {
                char rwhere[160];
                snprintf(rwhere, sizeof rwhere, "%s.logRecords[%zu]", swhere, k);
                bool genai;
                if (!record(rec, rwhere, &genai, err, errsize))
                    return false;
                st->log_records++;
                if (genai)
                    st->genai_events++;
            }
        }
    }
    return true;
}

int sn_otlp_decode_logs_json(const uint8_t *buf, size_t len, sn_otlp_log_stats *stats, char *err,
                             size_t errsize)
{
    sn_otlp_log_stats local;
    char scratch[SN_OTLP_ERR_MAX];
    if (err == NULL || errsize == 0) {
        err = scratch;
        errsize = sizeof scratch;
    }
    err[0] = '\0';
    if (stats == NULL)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    if (buf == NULL)
        buf = (const uint8_t *)"";
    json_t *root = sn_otlp_json_load_request(buf, len, err, errsize);
    if (root == NULL)
        return -1;
    int rc = -1;
    sn_otlp_log_stats counted = {0};
    if (!walk(root, &counted, err, errsize))
        goto out_free_root;
    *stats = counted;
    rc = 0;

out_free_root:
    json_decref(root);
    return rc;
}
