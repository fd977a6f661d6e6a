/*
 * admission.h -- one admission.k8s.io/v1 AdmissionReview in, one AdmissionReview out.
 *
 * sn_admission_handle() is the whole of POST /mutate apart from HTTP: it parses the review,
 * runs the injection engine (inject.h) on the Pod and writes the response review:
 *
 *   {"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",
 *    "response":{"uid":<request.uid>,"allowed":true,"patchType":"JSONPatch",
 *                "patch":<base64 of the JSON Patch>,"warnings":[...]}}
 *
 * The injector fails open: every review it can answer is answered with allowed: true -- skipped
 * pods without a patch, internal errors without a patch (and with a status message). Only a body
 * that is not an admission.k8s.io/v1 AdmissionReview with a request uid cannot be answered (there
 * is no uid to answer to); it gets HTTP 400 with a Kubernetes Status object, which the API server
 * treats as a failed call and handles by the webhook's failurePolicy (Ignore: fail open).
 */
#ifndef SN_INJECTOR_ADMISSION_H
#define SN_INJECTOR_ADMISSION_H

#include "inject.h"

#include <stddef.h>

#define SN_ADMISSION_NAME_MAX 256

/* What happened, for metrics and logs. */
typedef struct sn_admission_outcome {
    unsigned http_status; /* 200, or 400 for a body that is not a review */
    const char *result;   /* "injected", "skipped", "failed" (answered, allowed, no patch) or
                             "bad_request" (400) */
    const char *reason;   /* skip reason (inject.h), or "not_pod_create", "invalid_object",
                             "internal", "parse", ... */
    size_t warnings;      /* warnings sent back */
    bool dry_run;
    char uid[SN_ADMISSION_NAME_MAX];
    char pod[SN_ADMISSION_NAME_MAX]; /* name, else generateName + "*" */
    char ns[SN_ADMISSION_NAME_MAX];
} sn_admission_outcome;

/* Handles one request body (len bytes, not NUL-terminated) under policy. On return 0, *out is a
 * malloc'd JSON body (caller frees) of *outlen bytes to send with oc->http_status. Returns -ENOMEM
 * when not even an answer could be built (the caller answers 500). */
int sn_admission_handle(const sn_inject_config *cfg, sn_inject_policy policy, const char *body,
                        size_t len, char **out, size_t *outlen, sn_admission_outcome *oc);

/* Standard base64 (RFC 4648, with padding) of len bytes into a malloc'd NUL-terminated string,
 * or NULL when out of memory. */
char *sn_base64_encode(const unsigned char *data, size_t len);

#endif
