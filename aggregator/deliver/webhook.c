/*
 * webhook.c -- the webhook sink (sink.h): the alert JSON POSTed with bearer token and an
 * HMAC-SHA256 signature header (GnuTLS's gnutls_hmac_fast).
 */
#include "http.h"
#include "sink.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct webhook {
    sn_sink base;
    CURL *h;
    char *url;
    char *auth_header; /* "Authorization: Bearer <token>" or NULL */
    char *secret;      /* NULL: unsigned */
    int64_t timeout_ns;
} webhook;

int sn_webhook_signature(const char *secret, const void *body, size_t len, char *out, size_t outlen)
{
    unsigned char mac[32];
    if (outlen < SN_WEBHOOK_SIGNATURE_MAX)
        return -EINVAL;
    if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, secret, strlen(secret), body, len, mac) != 0)
        return -EIO;
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "sha256=", 7);
    for (size_t i = 0; i < sizeof mac; i++) {
        out[7 + 2 * i] = hex[mac[i] >> 4];
        out[8 + 2 * i] = hex[mac[i] & 15];
    }
    out[7 + 64] = '\0';
    return 0;
}

static char *webhook_format(const sn_sink *s, sn_alert_change change, const sn_alert *a,
                            size_t *len)
{
    (void)s;
    (void)change;
    return sn_sink_alert_json(a, len);
}

/* Appends "Name: value" to the list; false when out of memory (the list is kept). */
static bool add_header(struct curl_slist **list, const char *name, const char *value)
{
    char line[1024];
    snprintf(line, sizeof line, "%s: %s", name, value);
    struct curl_slist *n = curl_slist_append(*list, line);
    if (n == NULL)
        return false;
    *list = n;
    return true;
}

static sn_sink_result webhook_send(sn_sink *s, const sn_sink_msg *m, char *reason, size_t rlen)
{
    webhook *w = (webhook *)s;
    struct curl_slist *hdr = NULL;
    char id[32], sig[SN_WEBHOOK_SIGNATURE_MAX];
    snprintf(id, sizeof id, "%lld", (long long)m->delivery_id);
    bool ok = add_header(&hdr, "Content-Type", "application/json") &&
              add_header(&hdr, "X-Sentinel-Alert-Id", m->alert_id) &&
              add_header(&hdr, "X-Sentinel-Delivery-Id", id) &&
              add_header(&hdr, "X-Sentinel-Change", sn_alert_change_name(m->change)) &&
              add_header(&hdr, "Expect", "");
    if (ok && w->auth_header != NULL) {
        struct curl_slist *n = curl_slist_append(hdr, w->auth_header);
        ok = n != NULL;
        hdr = n != NULL ? n : hdr;
    }
    if (ok && w->secret != NULL) {
        ok = sn_webhook_signature(w->secret, m->body, m->len, sig, sizeof sig) == 0 &&
             add_header(&hdr, "X-Sentinel-Signature", sig);
    }
    if (!ok) {
        curl_slist_free_all(hdr);
        snprintf(reason, rlen, "out of memory building the request");
        return SN_SINK_RETRY;
    }
    long status;
    sn_sink_result r = sn_deliver_http_post(w->h, w->url, hdr, m->body, m->len, w->timeout_ns,
                                            &status, reason, rlen);
    curl_slist_free_all(hdr);
    return r;
}

static void webhook_destroy(sn_sink *s)
{
    webhook *w = (webhook *)s;
    if (w->h != NULL)
        curl_easy_cleanup(w->h);
    free(w->url);
    free(w->auth_header);
    free(w->secret);
    free(w);
    curl_global_cleanup();
}

static const sn_sink_ops webhook_ops = {
    .kind = "webhook", .format = webhook_format, .send = webhook_send, .destroy = webhook_destroy};

int sn_sink_webhook_create(const sn_webhook_config *cfg, sn_sink **out, char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->url == NULL ||
        (strncmp(cfg->url, "http://", 7) != 0 && strncmp(cfg->url, "https://", 8) != 0)) {
        snprintf(err, errlen, "webhook: url must start with http:// or https://");
        return -EINVAL;
    }
    if (cfg->timeout_ns <= 0) {
        snprintf(err, errlen, "webhook: timeout must be > 0");
        return -EINVAL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "webhook: libcurl initialisation failed");
        return -ENOMEM;
    }
    webhook *w = calloc(1, sizeof *w);
    if (w == NULL)
        goto out_nomem;
    w->base.ops = &webhook_ops;
    snprintf(w->base.name, sizeof w->base.name, "%s",
             cfg->sink_name != NULL ? cfg->sink_name : "webhook");
    w->timeout_ns = cfg->timeout_ns;
    w->h = curl_easy_init();
    w->url = strdup(cfg->url);
    if (w->h == NULL || w->url == NULL)
        goto out_free_w;
    if (cfg->token != NULL && cfg->token[0] != '\0') {
        size_t n = strlen("Authorization: Bearer ") + strlen(cfg->token) + 1;
        if ((w->auth_header = malloc(n)) == NULL)
            goto out_free_w;
        snprintf(w->auth_header, n, "Authorization: Bearer %s", cfg->token);
    }
    if (cfg->secret != NULL && cfg->secret[0] != '\0' && (w->secret = strdup(cfg->secret)) == NULL)
        goto out_free_w;
    *out = &w->base;
    return 0;

out_free_w:
    webhook_destroy(&w->base); /* also releases the global init */
    snprintf(err, errlen, "webhook: out of memory");
    return -ENOMEM;
out_nomem:
    curl_global_cleanup();
    snprintf(err, errlen, "webhook: out of memory");
    return -ENOMEM;
}
