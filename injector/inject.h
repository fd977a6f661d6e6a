/*
 * inject.h -- the injection engine: what the injector changes in one Pod.
 *
 * Given a Pod (or a pod template: an object with "metadata" and "spec"), its namespace and the
 * injector's settings, sn_inject_pod() decides whether the pod gets the sentinel sidecar and, if
 * so, builds the JSON Patch (RFC 6902, paths relative to the pod) that adds it. The engine is
 * pure: no I/O, no clock, no global state, so the webhook and the offline `inject` command run
 * the same code and the tests can check every decision.
 *
 * Decisions, in order (the first that applies wins):
 *   invalid_pod       no "spec" object or no "spec.containers" array
 *   already_injected  the status annotation is present, or a container named sentinel-sidecar
 *   system_namespace  the namespace is in system_namespaces (kube-system, ...)
 *   opted_out         annotation (else label) sentinel.llm-devops.io/inject is "false"
 *   host_network      spec.hostNetwork is true (the sidecar's ports would be the node's)
 *   not_opted_in      policy OPT_IN, the pod does not say "true" and its namespace is not
 *                     in namespaces
 *   needs_native_sidecar  the sidecar would be a regular container and spec.restartPolicy is
 *                     Never or OnFailure (a Job's pod would never complete; warned)
 * Annotation values that are not valid are ignored (the default is used) and reported in
 * res->warnings; they never stop the pod from being admitted.
 */
#ifndef SN_INJECTOR_INJECT_H
#define SN_INJECTOR_INJECT_H

#include "config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define SN_INJECT_PREFIX            "sentinel.llm-devops.io/"
#define SN_INJECT_ANNOTATION        SN_INJECT_PREFIX "inject"
#define SN_INJECT_STATUS_ANNOTATION SN_INJECT_PREFIX "status"
#define SN_INJECT_INJECTED_LABEL    SN_INJECT_PREFIX "injected"
#define SN_INJECT_DEFAULT_CONTAINER "kubectl.kubernetes.io/default-container"
#define SN_INJECT_CONTAINER_NAME    "sentinel-sidecar"
#define SN_INJECT_VOLUME_NAME       "sentinel-spool"
#define SN_INJECT_SPOOL_PATH        "/var/lib/sentinel/spool"
#define SN_INJECT_ADMIN_PORT        8081
#define SN_INJECT_QUANTITY_MAX      32
#define SN_INJECT_IMAGE_MAX         512
#define SN_INJECT_ERROR_MAX         256

/* How the sidecar is added. */
typedef enum sn_inject_mode {
    SN_INJECT_MODE_AUTO = 0, /* native when kubernetes_version >= 1.29, else regular */
    SN_INJECT_MODE_NATIVE,   /* init container with restartPolicy: Always */
    SN_INJECT_MODE_REGULAR   /* one more entry in spec.containers */
} sn_inject_mode;

extern const char *const sn_inject_mode_names[]; /* "auto", "native", "regular", NULL */

/* Who gets the sidecar. */
typedef enum sn_inject_policy {
    SN_INJECT_OPT_IN = 0, /* pods saying "true", and pods of the configured namespaces */
    SN_INJECT_ENABLED     /* every pod asked about unless it opts out (the namespace opted in) */
} sn_inject_policy;

/* The injector's defaults (from its config; per-pod annotations override some of them). */
typedef struct sn_inject_config {
    char image[SN_INJECT_IMAGE_MAX];
    char pull_policy[32];
    char cpu_request[SN_INJECT_QUANTITY_MAX];
    char cpu_limit[SN_INJECT_QUANTITY_MAX];
    char memory_request[SN_INJECT_QUANTITY_MAX];
    char memory_limit[SN_INJECT_QUANTITY_MAX];
    char spool_size_limit[SN_INJECT_QUANTITY_MAX];
    char aggregator[SN_CONFIG_HOST_MAX + 8]; /* host:port */
    char log_level[16];                      /* "" = the sidecar's default */
    int mode;                                /* sn_inject_mode */
    char kubernetes_version[64];             /* "1.29", "v1.30.2"; "" = unknown */
    sn_config_list namespaces;               /* opted in without a namespace label */
    sn_config_list system_namespaces;        /* never injected */
} sn_inject_config;

/* Descriptor initialisers for an sn_inject_config member F of config struct T, under P. */
#define SN_INJECT_DESCRIPTORS(P, T, F)                                                             \
    SN_CFG_STRING(P ".image", T, F.image, "ghcr.io/llm-devops/sentinel-sidecar:" SENTINEL_VERSION, \
                  "sidecar image"),                                                                \
        SN_CFG_STRING(P ".image_pull_policy", T, F.pull_policy, "IfNotPresent",                    \
                      "sidecar imagePullPolicy: Always, IfNotPresent or Never"),                   \
        SN_CFG_STRING(P ".cpu_request", T, F.cpu_request, "50m", "sidecar CPU request"),           \
        SN_CFG_STRING(P ".cpu_limit", T, F.cpu_limit, "500m", "sidecar CPU limit (\"\": none)"),   \
        SN_CFG_STRING(P ".memory_request", T, F.memory_request, "32Mi", "sidecar memory request"), \
        SN_CFG_STRING(P ".memory_limit", T, F.memory_limit, "128Mi",                               \
                      "sidecar memory limit (\"\": none)"),                                        \
        SN_CFG_STRING(P ".spool_size_limit", T, F.spool_size_limit, "256Mi",                       \
                      "sizeLimit of the spool emptyDir (\"\": none)"),                             \
        SN_CFG_STRING(P ".aggregator", T, F.aggregator,                                            \
                      "sentinel-aggregator.sentinel-system.svc:9090",                              \
                      "aggregator host:port the sidecars ship to"),                                \
        SN_CFG_STRING(P ".log_level", T, F.log_level, "",                                          \
                      "sidecar log level (debug, info, warn, error; \"\": its default)"),          \
        SN_CFG_ENUM(P ".mode", T, F.mode, "auto", sn_inject_mode_names,                            \
                    "native (init container, restartPolicy Always), regular, or auto by "          \
                    "kubernetes.version"),                                                         \
        {SN__CFG("kubernetes.version", SN_CONFIG_STRING, T, F.kubernetes_version, "",              \
                 "the cluster's Kubernetes version (\"1.29\"); auto mode injects native "          \
                 "sidecars from 1.29"),                                                            \
         .env = "SENTINEL_KUBERNETES_VERSION"},                                                    \
        SN_CFG_LIST("inject.namespaces", T, F.namespaces, "",                                      \
                    "namespaces whose pods are injected without opting in (for clusters "          \
                    "without the namespaceSelector)"),                                             \
        SN_CFG_LIST("inject.system_namespaces", T, F.system_namespaces,                            \
                    "kube-system,kube-public,kube-node-lease", "namespaces never injected")

/* What sn_inject_pod() decided. */
typedef struct sn_inject_result {
    bool inject;             /* true: patch holds the changes */
    const char *skip_reason; /* when !inject: a static reason name (see above) */
    json_t *patch;           /* JSON Patch array relative to the pod; NULL when skipped */
    json_t *warnings;        /* array of strings, one per ignored annotation (never NULL) */
    bool native;             /* the sidecar went in as a native sidecar */
} sn_inject_result;

/* Validates the settings (image, quantities, aggregator address, log level, version). Returns 0
 * or -EINVAL with "config: <path>: ..." in err (prefix P names the section, e.g. "sidecar"). */
int sn_inject_config_check(const sn_inject_config *cfg, const char *prefix, sn_config_error *err);

/* Decides and builds the patch for pod (borrowed; not changed) in namespace ns (NULL or "" =
 * "default"). Fills res (the caller releases it with sn_inject_result_cleanup, also after a
 * failure). Returns 0, or -ENOMEM / -E2BIG with a message in err (errlen bytes): an internal
 * error, after which res holds no patch. */
int sn_inject_pod(const sn_inject_config *cfg, const json_t *pod, const char *ns,
                  sn_inject_policy policy, sn_inject_result *res, char *err, size_t errlen);

/* Releases the patch and the warnings. */
void sn_inject_result_cleanup(sn_inject_result *res);

/* True when mode (with the configured version) means native sidecars. */
bool sn_inject_native(const sn_inject_config *cfg);

/* Parses a Kubernetes version ("1.29", "v1.30.2", "1.28.3-eks-1234") into major and minor.
 * Returns 0, or -EINVAL. */
int sn_inject_parse_version(const char *text, int *major, int *minor);

/* Parses a resource quantity ("500m", "1.5", "128Mi", "1e3", "2G") into its value in base units.
 * Returns 0, or -EINVAL for anything Kubernetes would not accept (negative included). */
int sn_inject_parse_quantity(const char *text, double *out);

#endif
