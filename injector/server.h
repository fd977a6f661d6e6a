/*
 * server.h -- the webhook's HTTPS server: libmicrohttpd with GnuTLS.
 *
 *   POST /mutate            AdmissionReview v1 (admission.h), policy opt-in
 *   POST /mutate/namespace  the same for a webhook whose namespaceSelector already chose the
 *                           namespace (label sentinel.llm-devops.io/inject=enabled): every pod
 *                           is injected unless it opts out
 *   GET  /healthz, /readyz, /metrics   shared/admin.h (sn_admin_route)
 *
 * /mutate answers 405 (Allow: POST) to other methods, 415 to a Content-Type other than
 * application/json, 413 to a body over max_body_bytes (Content-Length checked before reading).
 *
 * Certificates. The certificate chain and key are read from files at start and again by
 * sn_injector_server_reload(), which the program calls every few seconds: when either file's
 * content changed and the new pair is valid (GnuTLS loads it and the key matches), a new daemon
 * is started on the same listening socket (the old one is quiesced first, so no connection is
 * refused), the old daemon gets up to two seconds to finish its requests and is stopped.
 * A pair that does not load on two polls in a row (files written one after the other do not
 * match for a moment) is logged and counted once per content, and the old certificate stays
 * in use.
 *
 * Threads: libmicrohttpd's thread pool; request handlers only read the immutable settings and
 * update metrics (atomics). create/start/reload/stop/destroy belong to one thread (main).
 */
#ifndef SN_INJECTOR_SERVER_H
#define SN_INJECTOR_SERVER_H

#include "inject.h"
#include "metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_INJECTOR_DEFAULT_MAX_BODY (4u * 1024 * 1024)
#define SN_INJECTOR_CERT_MAX         (1u * 1024 * 1024) /* bytes of a certificate or key file */

typedef struct sn_injector_server sn_injector_server;

typedef struct sn_injector_server_config {
    const char *listen;             /* "host:port"; port 0 = any */
    const char *cert_file;          /* PEM certificate chain (leaf first) */
    const char *key_file;           /* PEM private key */
    size_t max_body_bytes;          /* 0: SN_INJECTOR_DEFAULT_MAX_BODY */
    unsigned threads;               /* 0: 2 */
    unsigned max_connections;       /* 0: 256 */
    unsigned connection_timeout_s;  /* 0: 30 */
    const sn_inject_config *inject; /* borrowed, must outlive the server */
    sn_metrics *metrics;            /* borrowed; its families are registered by create */
} sn_injector_server_config;

/* Copies the configuration, registers the injector's metric families in cfg->metrics and reads
 * and checks the certificate pair. Returns 0 and sets *out, or -EINVAL (bad listen address,
 * certificate or key that does not load), -ENOENT and friends (a file cannot be read) or
 * -ENOMEM, with a message in err. Free with sn_injector_server_destroy(). */
int sn_injector_server_create(const sn_injector_server_config *cfg, sn_injector_server **out,
                              char *err, size_t errlen);

/* Binds the listening socket and starts serving. Returns 0, or a negative errno with a message. */
int sn_injector_server_start(sn_injector_server *s, char *err, size_t errlen);

/* The bound port once started; 0 before. */
uint16_t sn_injector_server_port(const sn_injector_server *s);

/* Re-reads both files; when their content changed and the pair loads, switches to it. Returns 1
 * when switched, 0 when nothing changed (or the new pair was refused, which is logged and
 * counted), or a negative errno when the server could not be restarted at all (then nothing is
 * serving; the caller exits). */
int sn_injector_server_reload(sn_injector_server *s);

/* Stops accepting, lets requests in progress finish (up to drain_ms) and stops. Safe when not
 * started. */
void sn_injector_server_stop(sn_injector_server *s, unsigned drain_ms);

/* Stops if needed and frees the server (not the metrics registry). NULL is allowed. */
void sn_injector_server_destroy(sn_injector_server *s);

#endif
