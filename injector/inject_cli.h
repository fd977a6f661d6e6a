/*
 * inject_cli.h -- offline injection of manifests (`sentinel-injector inject`), like
 * `istioctl kube-inject`.
 *
 * A stream of documents (YAML, multi-document YAML, or JSON) is read; every Pod and every pod
 * template of a Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job or
 * CronJob (and of the items of a List) goes through the same engine as the webhook (inject.h)
 * with policy "enabled" -- the user asked for this manifest to be injected, so only an explicit
 * opt-out, a system namespace, hostNetwork or an earlier injection leave a pod as it is. The
 * engine's JSON Patch is prefixed with the template's pointer and applied to the document with
 * sn_jsonpatch_apply(). Other kinds pass through unchanged. Output is in the input's format.
 */
#ifndef SN_INJECTOR_INJECT_CLI_H
#define SN_INJECTOR_INJECT_CLI_H

#include "inject.h"

#include <stddef.h>

#define SN_INJECT_INPUT_MAX (64u * 1024 * 1024) /* bytes read from a file or stdin */

typedef struct sn_inject_stats {
    size_t documents; /* documents read */
    size_t templates; /* pods and pod templates found */
    size_t injected;
    size_t skipped;
    size_t warnings;
} sn_inject_stats;

/* Injects the pod template(s) of one document in place. ns (NULL: the document's own namespace,
 * else "default") is the namespace the decisions assume. Warnings and skips are logged. Returns
 * 0, or a negative errno with a message in err (the document may be partly changed only when
 * it holds several templates, e.g. a List). */
int sn_inject_document(const sn_inject_config *cfg, json_t **doc, const char *ns,
                       sn_inject_stats *stats, char *err, size_t errlen);

/* Output format of sn_inject_stream. */
typedef enum sn_inject_format {
    SN_INJECT_FORMAT_AUTO = 0, /* the input's */
    SN_INJECT_FORMAT_YAML,
    SN_INJECT_FORMAT_JSON /* each document two-space indented, one after the other */
} sn_inject_format;

/* The whole command on a buffer: parses text (len bytes), injects every document and writes
 * the result in format into a malloc'd buffer (caller frees). Returns 0, or -EINVAL (input that
 * does not parse), -E2BIG, -ENOMEM, with a message in err. */
int sn_inject_stream(const sn_inject_config *cfg, const char *text, size_t len, const char *ns,
                     sn_inject_format format, char **out, size_t *outlen, sn_inject_stats *stats,
                     char *err, size_t errlen);

#endif
