/*
 * admission.c -- AdmissionReview v1 in, AdmissionReview v1 out (fail open).
 */
#include "admission.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *sn_base64_encode(const unsigned char *data, size_t len)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (len > (SIZE_MAX / 4) * 3 - 3)
        return NULL;
    size_t olen = (len + 2) / 3 * 4;
    char *out = malloc(olen + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len)
            v |= data[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* Copies s (or "") into dst. */
static void copy_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s != NULL ? s : "");
}

/* The 400 answer: a Kubernetes Status object naming what is wrong. */
static int bad_request(const char *msg, char **out, size_t *outlen, sn_admission_outcome *oc)
{
    oc->http_status = 400;
    oc->result = "bad_request";
    json_t *st = json_pack("{s:s, s:s, s:{}, s:s, s:s, s:s, s:i}", "kind", "Status", "apiVersion",
                           "v1", "metadata", "status", "Failure", "message", msg, "reason",
                           "BadRequest", "code", 400);
    char *text = st != NULL ? json_dumps(st, JSON_COMPACT) : NULL;
    json_decref(st);
    if (text == NULL)
        return -ENOMEM;
    *out = text;
    *outlen = strlen(text);
    return 0;
}

/* Serialises the response review. patch may be NULL (no patch); message (or NULL) goes into
 * response.status.message. */
static int answer(const char *uid, const json_t *patch, const json_t *warnings, const char *message,
                  char **out, size_t *outlen)
{
    json_t *resp = json_pack("{s:s, s:b}", "uid", uid, "allowed", 1);
    if (resp == NULL)
        return -ENOMEM;
    int rc = -ENOMEM;
    if (patch != NULL) {
        char *ptext = json_dumps(patch, JSON_COMPACT);
        char *b64 =
            ptext != NULL ? sn_base64_encode((const unsigned char *)ptext, strlen(ptext)) : NULL;
        free(ptext);
        if (b64 == NULL)
            goto out_free_resp;
        json_object_set_new(resp, "patchType", json_string("JSONPatch"));
        int setrc = json_object_set_new(resp, "patch", json_string(b64));
        free(b64);
        if (setrc != 0)
            goto out_free_resp;
    }
    if (warnings != NULL && json_array_size(warnings) > 0)
        json_object_set(resp, "warnings", (json_t *)warnings);
    if (message != NULL)
        json_object_set_new(resp, "status",
                            json_pack("{s:s, s:i}", "message", message, "code", 200));
    json_t *review = json_pack("{s:s, s:s, s:O}", "apiVersion", "admission.k8s.io/v1", "kind",
                               "AdmissionReview", "response", resp);
    char *text = review != NULL ? json_dumps(review, JSON_COMPACT) : NULL;
    json_decref(review);
    if (text == NULL)
        goto out_free_resp;
    *out = text;
    *outlen = strlen(text);
    rc = 0;
out_free_resp:
    json_decref(resp);
    return rc;
}

int sn_admission_handle(const sn_inject_config *cfg, sn_inject_policy policy, const char *body,
                        size_t len, char **out, size_t *outlen, sn_admission_outcome *oc)
{
    memset(oc, 0, sizeof *oc);
    oc->http_status = 200;
    oc->reason = "";
    *out = NULL;
    *outlen = 0;
    json_error_t jerr;
    json_t *review = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    char msg[512];
    if (review == NULL) {
        oc->reason = "parse";
        snprintf(msg, sizeof msg, "the body is not JSON: %s (line %d, column %d)", jerr.text,
                 jerr.line, jerr.column);
        return bad_request(msg, out, outlen, oc);
    }
    int rc;
    const char *api = json_string_value(json_object_get(review, "apiVersion"));
    const char *kind = json_string_value(json_object_get(review, "kind"));
    json_t *req = json_object_get(review, "request");
    const char *uid = json_string_value(json_object_get(req, "uid"));
    if (api == NULL || strcmp(api, "admission.k8s.io/v1") != 0 || kind == NULL ||
        strcmp(kind, "AdmissionReview") != 0) {
        oc->reason = "not_a_review";
        rc = bad_request("expected an AdmissionReview of apiVersion admission.k8s.io/v1 "
                         "(set admissionReviewVersions: [\"v1\"])",
                         out, outlen, oc);
        goto out_free_review;
    }
    if (!json_is_object(req) || uid == NULL || uid[0] == '\0') {
        oc->reason = "no_uid";
        rc = bad_request("the AdmissionReview has no request.uid", out, outlen, oc);
        goto out_free_review;
    }
    copy_str(oc->uid, sizeof oc->uid, uid);
    copy_str(oc->ns, sizeof oc->ns, json_string_value(json_object_get(req, "namespace")));
    oc->dry_run = json_is_true(json_object_get(req, "dryRun"));

    const json_t *rk = json_object_get(req, "kind");
    const json_t *rr = json_object_get(req, "resource");
    const char *k = json_string_value(json_object_get(rk, "kind"));
    const char *group = json_string_value(json_object_get(rk, "group"));
    const char *res_name = json_string_value(json_object_get(rr, "resource"));
    const char *sub = json_string_value(json_object_get(req, "subResource"));
    const char *op = json_string_value(json_object_get(req, "operation"));
    bool pod_create = k != NULL && strcmp(k, "Pod") == 0 && (group == NULL || group[0] == '\0') &&
                      (res_name == NULL || strcmp(res_name, "pods") == 0) &&
                      (sub == NULL || sub[0] == '\0') && op != NULL && strcmp(op, "CREATE") == 0;
    if (!pod_create) {
        oc->result = "skipped";
        oc->reason = "not_pod_create";
        rc = answer(uid, NULL, NULL, NULL, out, outlen);
        goto out_free_review;
    }
    const json_t *pod = json_object_get(req, "object");
    if (!json_is_object(pod)) {
        oc->result = "failed";
        oc->reason = "invalid_object";
        rc = answer(uid, NULL, NULL,
                    "sentinel injector: request.object is not a Pod; admitted unchanged", out,
                    outlen);
        goto out_free_review;
    }
    const json_t *meta = json_object_get(pod, "metadata");
    const char *name = json_string_value(json_object_get(meta, "name"));
    if (name != NULL && name[0] != '\0') {
        copy_str(oc->pod, sizeof oc->pod, name);
    } else {
        const char *gen = json_string_value(json_object_get(meta, "generateName"));
        snprintf(oc->pod, sizeof oc->pod, "%s*", gen != NULL ? gen : "");
    }
    if (oc->ns[0] == '\0')
        copy_str(oc->ns, sizeof oc->ns, json_string_value(json_object_get(meta, "namespace")));

    sn_inject_result ir;
    char ierr[SN_INJECT_ERROR_MAX];
    rc = sn_inject_pod(cfg, pod, oc->ns, policy, &ir, ierr, sizeof ierr);
    if (rc != 0) {
        oc->result = "failed";
        oc->reason = "internal";
        snprintf(msg, sizeof msg, "sentinel injector: %s; admitted without the sidecar", ierr);
        rc = answer(uid, NULL, NULL, msg, out, outlen);
    } else if (!ir.inject) {
        oc->result = "skipped";
        oc->reason = ir.skip_reason;
        rc = answer(uid, NULL, ir.warnings, NULL, out, outlen);
    } else {
        oc->result = "injected";
        oc->reason = ir.native ? "native" : "regular";
        rc = answer(uid, ir.patch, ir.warnings, NULL, out, outlen);
    }
    oc->warnings = json_array_size(ir.warnings);
    sn_inject_result_cleanup(&ir);
out_free_review:
    json_decref(review);
    return rc;
}
