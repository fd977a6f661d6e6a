/*
 * genai.h -- turns span and resource attributes into LLM facts.
 *
 * Accepts the three conventions of contracts.md (OpenTelemetry GenAI, old names included;
 * OpenInference; OpenLLMetry). The OTLP decoder streams attributes through these calls one at a
 * time, so nothing here allocates or keeps a pointer to the caller's bytes: values are copied
 * (truncated) into the event.
 *
 * Order of use for one span:
 *   sn_event ev = resource template (sn_genai_resource_attr applied to a fresh sn_event);
 *   the decoder sets start/end time, ids, and is_error from the span status;
 *   sn_genai_span_attr() for each span attribute;
 *   if (sn_genai_finish(&ev, prices)) -> ev is an LLM event.
 */
#ifndef SN_GENAI_H
#define SN_GENAI_H

#include "event.h"
#include "price.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sn_attr_type {
    SN_ATTR_STRING = 0,
    SN_ATTR_BOOL,
    SN_ATTR_INT,
    SN_ATTR_DOUBLE,
    SN_ATTR_BYTES /* passed for completeness; no LLM fact is bytes */
} sn_attr_type;

/* One attribute value as the decoder sees it. Strings are not NUL-terminated. An array value is
 * delivered as one call per element with the same key (e.g. gen_ai.response.finish_reasons). */
typedef struct sn_attr_value {
    sn_attr_type type;
    const char *str; /* STRING and BYTES: the bytes, borrowed for the call only */
    size_t len;
    int64_t i; /* INT */
    double d;  /* DOUBLE */
    bool b;    /* BOOL */
} sn_attr_value;

/* Applies one resource attribute (service.name, service.version, cloud.region, k8s.pod.name) to
 * a template event that every span of that resource starts from. Unknown keys are ignored. */
void sn_genai_resource_attr(sn_event *tmpl, const char *key, size_t keylen, const sn_attr_value *v);

/* Applies one span attribute. Returns true when the key belongs to an LLM convention (the bit is
 * then set in ev->conventions). Values of the wrong type that can be read sensibly are converted
 * (an integer-valued string for a token count, an int for a double); others are ignored. */
bool sn_genai_span_attr(sn_event *ev, const char *key, size_t keylen, const sn_attr_value *v);

/* A span attribute key classified once, for decoders that see every key: SN_GENAI_KEY_CONTENT
 * when sn_genai_is_content_key() holds (the value must not be read), SN_GENAI_KEY_OTHER when the
 * key names no LLM fact (sn_genai_span_attr would ignore it), else a positive id to pass to
 * sn_genai_span_attr_id(), which then does what sn_genai_span_attr() does for that key without
 * looking the key up again. */
enum { SN_GENAI_KEY_CONTENT = -1, SN_GENAI_KEY_OTHER = 0 };
int sn_genai_span_key(const char *key, size_t keylen);

/* sn_genai_span_attr() for a key already classified by sn_genai_span_key() (id > 0). */
bool sn_genai_span_attr_id(sn_event *ev, int id, const sn_attr_value *v);

/* What sn_genai_finish_memo() remembers between the spans of one request: the last
 * SN_GENAI_MEMO_WAYS provider names with their normalised forms (a request mixes a few; the
 * oldest entry is replaced). Price rules are not kept here: sn_price_rule()'s per-thread cache
 * remembers them. A plain value (no pointers into spans, nothing allocated; about 1 KiB); empty
 * it with sn_genai_memo_init() before the first span. One thread at a time. */
#define SN_GENAI_MEMO_WAYS 8

typedef struct sn_genai_memo_provider {
    uint8_t raw_len, norm_len;
    bool same;               /* norm is raw: nothing to copy */
    char raw[SN_SHORT_MAX];  /* a provider name as the span gave it */
    char norm[SN_SHORT_MAX]; /* sn_genai_normalize_provider() of it */
} sn_genai_memo_provider;

typedef struct sn_genai_memo {
    uint8_t nprov, prov_last, prov_next; /* entries used, the last hit, the next to replace */
    sn_genai_memo_provider prov[SN_GENAI_MEMO_WAYS];
} sn_genai_memo;

/* Empties a memo (the caller's storage; nothing is allocated, nothing to free). */
void sn_genai_memo_init(sn_genai_memo *m);

/* Completes an event after all attributes: latency from start/end, provider normalisation,
 * total tokens when only parts are known, the model from request/response names, and cost from
 * the price table when the span carried none (prices may be NULL: cost stays unknown).
 * Returns true when the span is an LLM call (some convention was seen). */
bool sn_genai_finish(sn_event *ev, const sn_price_table *prices);

/* sn_genai_finish() with a memo (may be NULL) of the request's earlier spans: the same result,
 * without normalising a provider name seen just before. */
bool sn_genai_finish_memo(sn_event *ev, const sn_price_table *prices, sn_genai_memo *memo);

/* Normalises a provider name in place ("az.ai.openai" -> "azure.ai.openai",
 * "vertex_ai" -> "gcp.vertex_ai", ...). */
void sn_genai_normalize_provider(char *provider, size_t size);

/* True when the key carries prompt or response text (gen_ai.prompt.*, gen_ai.input.messages,
 * llm.input_messages.*, input.value, ...): such values are never LLM facts, and whoever forwards
 * spans must drop them unless content export is enabled. */
bool sn_genai_is_content_key(const char *key, size_t keylen);

/* True when ev->model came from the response (gen_ai.response.model, or OpenInference's
 * llm.model_name), false when from the request or unknown. Valid during and after the span's
 * attributes, until the event is re-initialised. */
bool sn_genai_model_from_response(const sn_event *ev);

#endif
