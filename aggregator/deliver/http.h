/*
 * http.h -- one JSON POST over a libcurl easy handle, classified for the sinks (internal to
 * aggregator/deliver/).
 */
#ifndef SN_DELIVER_HTTP_H
#define SN_DELIVER_HTTP_H

#include "sink.h"

#include <curl/curl.h>

/* POSTs body (len bytes) to url with the headers (Content-Type among them) and an overall
 * timeout. Returns OK for 2xx; RETRY for transport errors (reason: curl's message), 408, 429
 * and 5xx; PERMANENT for any other status (reason: "HTTP <status>: <start of the response>").
 * The handle is reset and reused (keep-alive); the caller owns it and the header list. */
sn_sink_result sn_deliver_http_post(CURL *h, const char *url, struct curl_slist *headers,
                                    const char *body, size_t len, int64_t timeout_ns, long *status,
                                    char *reason, size_t rlen);

/* Classifies an HTTP status like sn_deliver_http_post. */
sn_sink_result sn_deliver_http_classify(long status);

#endif
