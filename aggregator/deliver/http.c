/*
 * http.c -- the sinks' HTTP POST through libcurl (see http.h).
 */
#include "http.h"

#include <stdio.h>
#include <string.h>

#define RESPONSE_KEEP 160 /* bytes of a response body kept for the reason */

typedef struct response {
    char text[RESPONSE_KEEP];
    size_t len;
} response;

/* Keeps the first RESPONSE_KEEP - 1 bytes of the response, discards the rest. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    response *r = ud;
    size_t n = size * nmemb;
    size_t room = sizeof r->text - 1 - r->len;
    size_t take = n < room ? n : room;
    memcpy(r->text + r->len, data, take);
    r->len += take;
    r->text[r->len] = '\0';
    return n;
}

sn_sink_result sn_deliver_http_classify(long status)
{
    if (status >= 200 && status < 300)
        return SN_SINK_OK;
    if (status == 408 || status == 429 || status >= 500 || status < 100)
        return SN_SINK_RETRY;
    return SN_SINK_PERMANENT;
}

sn_sink_result sn_deliver_http_post(CURL *h, const char *url, struct curl_slist *headers,
                                    const char *body, size_t len, int64_t timeout_ns, long *status,
                                    char *reason, size_t rlen)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    response resp = {.len = 0};
    long timeout_ms = (long)(timeout_ns / 1000000);
    *status = 0;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "llm-sentinel-aggregator");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        snprintf(reason, rlen, "%s", errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
        return SN_SINK_RETRY;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    sn_sink_result r = sn_deliver_http_classify(*status);
    if (r != SN_SINK_OK) {
        for (size_t i = 0; i < resp.len; i++) {
            if (resp.text[i] == '\n' || resp.text[i] == '\r')
                resp.text[i] = ' ';
        }
        snprintf(reason, rlen, "HTTP %ld: %s", *status, resp.text);
    }
    return r;
}
