/*
 * genai.c -- span and resource attributes to LLM facts (the conventions of contracts.md).
 *
 * Every attribute of every span passes through sn_genai_span_attr, so a key is found by a switch
 * on its length and one memcmp per candidate of that length, and nothing allocates. Each known key
 * names a fact (model, input tokens, ...) and a rank; a value replaces the fact only when its rank
 * is higher than the rank of whatever set the fact before (ranks live in ev->fact_ranks, 4 bits
 * per fact), so the outcome does not depend on attribute order:
 *
 *   current GenAI name > old GenAI name > OpenLLMetry name > OpenInference name
 *   gen_ai.response.model > llm.model_name > gen_ai.request.model
 *
 * Among values of equal rank the first wins (the first of gen_ai.response.finish_reasons).
 * Prompt and response text (gen_ai.prompt.*, llm.input_messages.*, input.value, ...) match no key
 * here and are never copied; sn_genai_is_content_key names them for whoever must drop them.
 * The table of keys and their facts is documented in docs/llm-facts.md.
 */
#include "genai.h"

#include <ctype.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The facts that can be set by more than one attribute, each with 4 bits in ev->fact_ranks. */
typedef enum fact {
    F_MODEL = 0,
    F_PROVIDER,
    F_OPERATION,
    F_INPUT,
    F_OUTPUT,
    F_TOTAL,
    F_CACHE_READ,
    F_CACHE_WRITE,
    F_REASONING,
    F_TTFT,
    F_USER,
    F_FINISH,
    F_COST,
    F_ERROR,
    F_KIND, /* not a rank: KIND_MODEL_CALL or KIND_NOT_LLM, see span_kind() */
    F_COUNT
} fact;
_Static_assert(F_COUNT <= 16, "fact_ranks holds 16 facts of 4 bits");

enum { KIND_MODEL_CALL = 1, KIND_NOT_LLM = 2 };

/* How an attribute's value is read. */
typedef enum value_kind {
    V_STRING,    /* copied (truncated) into the fact's string field */
    V_COUNT,     /* a non-negative integral token count */
    V_SECONDS,   /* a duration in seconds, kept in milliseconds */
    V_USD,       /* a non-negative amount in USD */
    V_OPERATION, /* gen_ai.operation.name: a string, and agent/tool operations are not LLM calls */
    V_REQUEST_TYPE, /* llm.request.type: OpenLLMetry's operation names, mapped to GenAI's */
    V_OI_KIND,      /* openinference.span.kind */
    V_TL_KIND       /* traceloop.span.kind */
} value_kind;

typedef enum attr_id {
    A_NONE = 0,
    A_GENAI_OPERATION,
    A_GENAI_PROVIDER,
    A_GENAI_SYSTEM,
    A_GENAI_REQUEST_MODEL,
    A_GENAI_RESPONSE_MODEL,
    A_GENAI_INPUT_TOKENS,
    A_GENAI_PROMPT_TOKENS,
    A_GENAI_OUTPUT_TOKENS,
    A_GENAI_COMPLETION_TOKENS,
    A_GENAI_CACHE_READ,
    A_GENAI_CACHE_CREATION,
    A_GENAI_CACHE_WRITE,
    A_GENAI_REASONING,
    A_GENAI_FINISH_REASONS,
    A_GENAI_TTFC,
    A_GENAI_SERVER_TTFT,
    A_GENAI_USAGE_COST,
    A_ERROR_TYPE,
    A_OI_MODEL_NAME,
    A_OI_PROVIDER,
    A_OI_SYSTEM,
    A_OI_PROMPT,
    A_OI_COMPLETION,
    A_OI_TOTAL,
    A_OI_CACHE_READ,
    A_OI_CACHE_WRITE,
    A_OI_REASONING,
    A_OI_COST_TOTAL,
    A_OI_SPAN_KIND,
    A_OLL_TOTAL,
    A_OLL_GENAI_TOTAL,
    A_OLL_REQUEST_TYPE,
    A_OLL_CACHE_READ,
    A_OLL_CACHE_CREATION,
    A_OLL_PROMPT,
    A_OLL_COMPLETION,
    A_OLL_REASONING,
    A_OLL_FINISH_REASON,
    A_OLL_USER,
    A_OLL_SPAN_KIND,
    A_USER_ID,
    A_ENDUSER_ID,
    A_COUNT
} attr_id;

typedef struct attr_def {
    uint8_t fact; /* enum fact */
    uint8_t rank; /* 1..15, higher wins */
    uint8_t kind; /* enum value_kind */
    uint8_t conv; /* SN_CONV_* bit the key marks; 0: not by itself a sign of an LLM call */
} attr_def;

#define G  SN_CONV_GENAI
#define OI SN_CONV_OPENINFERENCE
#define OL SN_CONV_OPENLLMETRY

static const attr_def attrs[A_COUNT] = {
    [A_GENAI_OPERATION] = {F_OPERATION, 3, V_OPERATION, G},
    [A_GENAI_PROVIDER] = {F_PROVIDER, 4, V_STRING, G},
    [A_GENAI_SYSTEM] = {F_PROVIDER, 3, V_STRING, G},
    [A_GENAI_REQUEST_MODEL] = {F_MODEL, 1, V_STRING, G},
    [A_GENAI_RESPONSE_MODEL] = {F_MODEL, 3, V_STRING, G},
    [A_GENAI_INPUT_TOKENS] = {F_INPUT, 4, V_COUNT, G},
    [A_GENAI_PROMPT_TOKENS] = {F_INPUT, 3, V_COUNT, G},
    [A_GENAI_OUTPUT_TOKENS] = {F_OUTPUT, 4, V_COUNT, G},
    [A_GENAI_COMPLETION_TOKENS] = {F_OUTPUT, 3, V_COUNT, G},
    [A_GENAI_CACHE_READ] = {F_CACHE_READ, 4, V_COUNT, G},
    [A_GENAI_CACHE_CREATION] = {F_CACHE_WRITE, 4, V_COUNT, G},
    [A_GENAI_CACHE_WRITE] = {F_CACHE_WRITE, 3, V_COUNT, G},
    [A_GENAI_REASONING] = {F_REASONING, 4, V_COUNT, G},
    [A_GENAI_FINISH_REASONS] = {F_FINISH, 3, V_STRING, G},
    [A_GENAI_TTFC] = {F_TTFT, 4, V_SECONDS, G},
    [A_GENAI_SERVER_TTFT] = {F_TTFT, 3, V_SECONDS, G},
    [A_GENAI_USAGE_COST] = {F_COST, 1, V_USD, G},
    [A_ERROR_TYPE] = {F_ERROR, 1, V_STRING, 0},
    [A_OI_MODEL_NAME] = {F_MODEL, 2, V_STRING, OI},
    [A_OI_PROVIDER] = {F_PROVIDER, 2, V_STRING, OI},
    [A_OI_SYSTEM] = {F_PROVIDER, 1, V_STRING, OI},
    [A_OI_PROMPT] = {F_INPUT, 1, V_COUNT, OI},
    [A_OI_COMPLETION] = {F_OUTPUT, 1, V_COUNT, OI},
    [A_OI_TOTAL] = {F_TOTAL, 1, V_COUNT, OI},
    [A_OI_CACHE_READ] = {F_CACHE_READ, 1, V_COUNT, OI},
    [A_OI_CACHE_WRITE] = {F_CACHE_WRITE, 1, V_COUNT, OI},
    [A_OI_REASONING] = {F_REASONING, 1, V_COUNT, OI},
    [A_OI_COST_TOTAL] = {F_COST, 2, V_USD, OI},
    [A_OI_SPAN_KIND] = {F_KIND, 0, V_OI_KIND, OI},
    [A_OLL_TOTAL] = {F_TOTAL, 2, V_COUNT, OL},
    [A_OLL_GENAI_TOTAL] = {F_TOTAL, 3, V_COUNT, OL},
    [A_OLL_REQUEST_TYPE] = {F_OPERATION, 1, V_REQUEST_TYPE, OL},
    [A_OLL_CACHE_READ] = {F_CACHE_READ, 2, V_COUNT, OL},
    [A_OLL_CACHE_CREATION] = {F_CACHE_WRITE, 2, V_COUNT, OL},
    [A_OLL_PROMPT] = {F_INPUT, 2, V_COUNT, OL},
    [A_OLL_COMPLETION] = {F_OUTPUT, 2, V_COUNT, OL},
    [A_OLL_REASONING] = {F_REASONING, 2, V_COUNT, OL},
    [A_OLL_FINISH_REASON] = {F_FINISH, 1, V_STRING, OL},
    [A_OLL_USER] = {F_USER, 1, V_STRING, 0},
    [A_OLL_SPAN_KIND] = {F_KIND, 0, V_TL_KIND, 0},
    [A_USER_ID] = {F_USER, 3, V_STRING, 0},
    [A_ENDUSER_ID] = {F_USER, 2, V_STRING, 0},
};

#undef G
#undef OI
#undef OL

/* The attribute a key names, or A_NONE. A switch on the length leaves one to four candidates. */
static attr_id attr_lookup(const char *key, size_t len)
{
#define KEY(lit, id)                                                                               \
    do {                                                                                           \
        _Static_assert(sizeof(lit) - 1 <= 64, "key too long");                                     \
        if (len == sizeof(lit) - 1 && memcmp(key, lit, sizeof(lit) - 1) == 0)                      \
            return id;                                                                             \
    } while (0)
    switch (len) {
    case 7:
        KEY("user.id", A_USER_ID);
        break;
    case 8:
        KEY("llm.user", A_OLL_USER);
        break;
    case 10:
        KEY("error.type", A_ERROR_TYPE);
        KEY("llm.system", A_OI_SYSTEM);
        KEY("enduser.id", A_ENDUSER_ID);
        break;
    case 12:
        KEY("llm.provider", A_OI_PROVIDER);
        break;
    case 13:
        KEY("gen_ai.system", A_GENAI_SYSTEM);
        break;
    case 14:
        KEY("llm.model_name", A_OI_MODEL_NAME);
        KEY("llm.cost.total", A_OI_COST_TOTAL);
        break;
    case 16:
        KEY("llm.request.type", A_OLL_REQUEST_TYPE);
        break;
    case 17:
        KEY("gen_ai.usage.cost", A_GENAI_USAGE_COST);
        break;
    case 19:
        KEY("traceloop.span.kind", A_OLL_SPAN_KIND);
        break;
    case 20:
        KEY("gen_ai.provider.name", A_GENAI_PROVIDER);
        KEY("gen_ai.request.model", A_GENAI_REQUEST_MODEL);
        break;
    case 21:
        KEY("gen_ai.operation.name", A_GENAI_OPERATION);
        KEY("gen_ai.response.model", A_GENAI_RESPONSE_MODEL);
        KEY("llm.token_count.total", A_OI_TOTAL);
        break;
    case 22:
        KEY("llm.token_count.prompt", A_OI_PROMPT);
        KEY("llm.usage.total_tokens", A_OLL_TOTAL);
        break;
    case 23:
        KEY("openinference.span.kind", A_OI_SPAN_KIND);
        KEY("llm.usage.prompt_tokens", A_OLL_PROMPT);
        break;
    case 25:
        KEY("gen_ai.usage.input_tokens", A_GENAI_INPUT_TOKENS);
        KEY("gen_ai.usage.total_tokens", A_OLL_GENAI_TOTAL);
        break;
    case 26:
        KEY("gen_ai.usage.prompt_tokens", A_GENAI_PROMPT_TOKENS);
        KEY("gen_ai.usage.output_tokens", A_GENAI_OUTPUT_TOKENS);
        KEY("llm.token_count.completion", A_OI_COMPLETION);
        break;
    case 27:
        KEY("llm.usage.completion_tokens", A_OLL_COMPLETION);
        break;
    case 29:
        KEY("gen_ai.usage.reasoning_tokens", A_OLL_REASONING);
        break;
    case 30:
        KEY("gen_ai.usage.completion_tokens", A_GENAI_COMPLETION_TOKENS);
        KEY("gen_ai.response.finish_reasons", A_GENAI_FINISH_REASONS);
        break;
    case 33:
        KEY("gen_ai.server.time_to_first_token", A_GENAI_SERVER_TTFT);
        KEY("gen_ai.completion.0.finish_reason", A_OLL_FINISH_REASON);
        break;
    case 35:
        KEY("gen_ai.response.time_to_first_chunk", A_GENAI_TTFC);
        break;
    case 36:
        KEY("gen_ai.usage.cache_read.input_tokens", A_GENAI_CACHE_READ);
        KEY("gen_ai.usage.reasoning.output_tokens", A_GENAI_REASONING);
        KEY("gen_ai.usage.cache_read_input_tokens", A_OLL_CACHE_READ);
        break;
    case 37:
        KEY("gen_ai.usage.cache_write.input_tokens", A_GENAI_CACHE_WRITE);
        break;
    case 40:
        KEY("gen_ai.usage.cache_creation.input_tokens", A_GENAI_CACHE_CREATION);
        KEY("gen_ai.usage.cache_creation_input_tokens", A_OLL_CACHE_CREATION);
        break;
    case 41:
        KEY("llm.token_count.prompt_details.cache_read", A_OI_CACHE_READ);
        break;
    case 42:
        KEY("llm.token_count.prompt_details.cache_write", A_OI_CACHE_WRITE);
        break;
    case 44:
        KEY("llm.token_count.completion_details.reasoning", A_OI_REASONING);
        break;
    default:
        break;
    }

#undef KEY
    return A_NONE;
}

/* --- fact ranks --- */

static unsigned rank_of(const sn_event *ev, unsigned f)
{
    return (unsigned)(ev->fact_ranks >> (f * 4)) & 0xFu;
}

static void set_rank(sn_event *ev, unsigned f, unsigned r)
{
    ev->fact_ranks = (ev->fact_ranks & ~(UINT64_C(0xF) << (f * 4))) | ((uint64_t)r << (f * 4));
}

/* --- value readers --- */

/* Reads a token count: an INT >= 0, an integral DOUBLE in [0, 2^53], or a STRING of decimal
 * digits optionally followed by ".0...". Returns false for anything else. */
static bool read_count(const sn_attr_value *v, int64_t *out)
{
    switch (v->type) {
    case SN_ATTR_INT:
        if (v->i < 0)
            return false;
        *out = v->i;
        return true;
    case SN_ATTR_DOUBLE:
        if (!isfinite(v->d) || v->d < 0.0 || v->d > 9007199254740992.0 || v->d != floor(v->d))
            return false;
        *out = (int64_t)v->d;
        return true;
    case SN_ATTR_STRING: {
        size_t i = 0;
        int64_t n = 0;
        if (v->str == NULL || v->len == 0)
            return false;
        for (; i < v->len && isdigit((unsigned char)v->str[i]); i++) {
            if (i >= 18) /* 18 digits cannot overflow int64 */
                return false;
            n = n * 10 + (v->str[i] - '0');
        }
        if (i == 0)
            return false;
        if (i < v->len) {
            if (v->str[i] != '.')
                return false;
            for (i++; i < v->len; i++) {
                if (v->str[i] != '0')
                    return false;
            }
        }
        *out = n;
        return true;
    }
    default:
        return false;
    }
}

/* Reads a non-negative finite real not above max: an INT, a DOUBLE, or a STRING holding a decimal
 * number (no hex, inf or nan). Returns false for anything else. */
static bool read_real(const sn_attr_value *v, double max, double *out)
{
    double d;
    switch (v->type) {
    case SN_ATTR_INT:
        d = (double)v->i;
        break;
    case SN_ATTR_DOUBLE:
        d = v->d;
        break;
    case SN_ATTR_STRING: {
        char buf[48];
        if (v->str == NULL || v->len == 0 || v->len >= sizeof buf)
            return false;
        for (size_t i = 0; i < v->len; i++) {
            char c = v->str[i];
            if (!isdigit((unsigned char)c) && c != '.' && c != 'e' && c != 'E' && c != '+' &&
                c != '-')
                return false;
        }
        memcpy(buf, v->str, v->len);
        buf[v->len] = '\0';
        char *end = NULL;
        d = strtod(buf, &end);
        if (end != buf + v->len)
            return false;
        break;
    }
    default:
        return false;
    }
    if (!isfinite(d) || d < 0.0 || d > max)
        return false;
    *out = d;
    return true;
}

/* Case-insensitive comparison of a counted string with a lower-case literal. */
static bool value_is(const sn_attr_value *v, const char *lit)
{
    size_t n = strlen(lit);
    if (v->len != n || v->str == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (tolower((unsigned char)v->str[i]) != lit[i])
            return false;
    }
    return true;
}

/* Where a fact is kept in the event: a string field (size > 0) or a count field (count). */
#define STRING_FACT(f, field)                                                                      \
    [f] = {offsetof(sn_event, field), sizeof(((sn_event *)0)->field), false}
#define COUNT_FACT(f, field) [f] = {offsetof(sn_event, field), 0, true}
static const struct {
    uint16_t off;
    uint8_t size;
    bool count;
} fact_fields[F_COUNT] = {
    STRING_FACT(F_MODEL, model),
    STRING_FACT(F_PROVIDER, provider),
    STRING_FACT(F_OPERATION, operation),
    STRING_FACT(F_USER, user),
    STRING_FACT(F_FINISH, finish_reason),
    STRING_FACT(F_ERROR, error_type),
    COUNT_FACT(F_INPUT, input_tokens),
    COUNT_FACT(F_OUTPUT, output_tokens),
    COUNT_FACT(F_TOTAL, total_tokens),
    COUNT_FACT(F_CACHE_READ, cache_read_tokens),
    COUNT_FACT(F_CACHE_WRITE, cache_write_tokens),
    COUNT_FACT(F_REASONING, reasoning_tokens),
};
#undef STRING_FACT
#undef COUNT_FACT
_Static_assert(SN_NAME_MAX <= UINT8_MAX && sizeof(sn_event) <= UINT16_MAX,
               "fact_fields holds the event's offsets and sizes");

/* The string field of the event a string fact is kept in, and its size. */
static char *string_field(sn_event *ev, unsigned f, size_t *size)
{
    if (f >= F_COUNT || fact_fields[f].size == 0)
        return NULL;
    *size = fact_fields[f].size;
    return (char *)ev + fact_fields[f].off;
}

/* The count field of the event a count fact is kept in. */
static int64_t *count_field(sn_event *ev, unsigned f)
{
    if (f >= F_COUNT || !fact_fields[f].count)
        return NULL;
    return (int64_t *)(void *)((char *)ev + fact_fields[f].off);
}

/* Copies a string value into a fact's field (an INT too, for user ids). Returns false for other
 * types and for empty strings, which then do not claim the fact. */
static bool set_string(sn_event *ev, unsigned f, const sn_attr_value *v)
{
    size_t size = 0;
    char *dst = string_field(ev, f, &size);
    if (dst == NULL)
        return false;
    if (v->type == SN_ATTR_INT && f == F_USER) {
        snprintf(dst, size, "%lld", (long long)v->i);
        return true;
    }
    if (v->type != SN_ATTR_STRING || v->str == NULL || v->len == 0)
        return false;
    if (v->len < size) { /* fits: what sn_copy_truncated does then */
        memcpy(dst, v->str, v->len);
        dst[v->len] = '\0';
    } else {
        sn_copy_truncated(dst, size, v->str, v->len);
    }
    return true;
}

/* Records an OpenInference or Traceloop span kind: a model call, or a kind (chain, agent, tool,
 * retriever, workflow, ...) whose span is not an LLM call even when it repeats LLM attributes --
 * such spans aggregate their children, and counting them would count tokens and cost twice.
 * KIND_NOT_LLM, once seen, stays. */
static void span_kind(sn_event *ev, value_kind kind, const sn_attr_value *v)
{
    if (v->type != SN_ATTR_STRING)
        return;
    unsigned k = 0;
    if (kind == V_OI_KIND) {
        if (value_is(v, "llm") || value_is(v, "embedding"))
            k = KIND_MODEL_CALL;
        else if (!value_is(v, "unknown") && v->len > 0)
            k = KIND_NOT_LLM;
    } else {
        if (value_is(v, "workflow") || value_is(v, "task") || value_is(v, "agent") ||
            value_is(v, "tool"))
            k = KIND_NOT_LLM;
    }
    if (k > rank_of(ev, F_KIND))
        set_rank(ev, F_KIND, k);
}

/* OpenLLMetry's llm.request.type names in GenAI's words ("completion" -> "text_completion",
 * "embedding" -> "embeddings"); other values are kept. */
static bool set_request_type(sn_event *ev, const sn_attr_value *v)
{
    if (v->type != SN_ATTR_STRING || v->len == 0)
        return false;
    const char *mapped = NULL;
    if (value_is(v, "completion"))
        mapped = "text_completion";
    else if (value_is(v, "embedding"))
        mapped = "embeddings";
    if (mapped == NULL)
        return set_string(ev, F_OPERATION, v);
    sn_copy_truncated(ev->operation, sizeof ev->operation, mapped, strlen(mapped));
    return true;
}

int sn_genai_span_key(const char *key, size_t keylen)
{
    attr_id id = attr_lookup(key, keylen);
    /* Of the known keys only OpenLLMetry's gen_ai.completion.0.finish_reason lies under a content
     * prefix (test_genai checks every key of docs/llm-facts.md against sn_genai_is_content_key). */
    if (id != A_NONE && id != A_OLL_FINISH_REASON)
        return (int)id;
    if (sn_genai_is_content_key(key, keylen))
        return SN_GENAI_KEY_CONTENT;
    return (int)id;
}

bool sn_genai_span_attr(sn_event *ev, const char *key, size_t keylen, const sn_attr_value *v)
{
    attr_id id = attr_lookup(key, keylen);
    if (id == A_NONE)
        return false;
    return sn_genai_span_attr_id(ev, (int)id, v);
}

bool sn_genai_span_attr_id(sn_event *ev, int id, const sn_attr_value *v)
{
    if (id <= A_NONE || id >= A_COUNT)
        return false;
    const attr_def *a = &attrs[id];
    bool marks = a->conv != 0;

    /* The usual cases first, as the general code below treats them: a token count sent as an int,
     * and a string fact sent as a string that fits its field. */
    if (a->kind == V_COUNT && v->type == SN_ATTR_INT) {
        ev->conventions |= a->conv;
        if (v->i >= 0 && a->rank > rank_of(ev, a->fact)) {
            *(int64_t *)(void *)((char *)ev + fact_fields[a->fact].off) = v->i;
            set_rank(ev, a->fact, a->rank);
        }
        return marks;
    }
    if (a->kind == V_SECONDS && v->type == SN_ATTR_DOUBLE) { /* read_real() of a DOUBLE */
        ev->conventions |= a->conv;
        if (a->rank > rank_of(ev, a->fact) && isfinite(v->d) && v->d >= 0.0 && v->d <= 86400.0) {
            ev->ttft_ms = v->d * 1000.0;
            set_rank(ev, a->fact, a->rank);
        }
        return marks;
    }
    /* An operation name of another length than the agent and tool operations' 12 bytes is
     * just a string here (see below). */
    if ((a->kind == V_STRING || (a->kind == V_OPERATION && v->len != 12)) &&
        v->type == SN_ATTR_STRING && v->str != NULL && v->len > 0 &&
        v->len < fact_fields[a->fact].size) {
        ev->conventions |= a->conv;
        if (a->rank > rank_of(ev, a->fact)) {
            char *dst = (char *)ev + fact_fields[a->fact].off;
            memcpy(dst, v->str, v->len);
            dst[v->len] = '\0';
            if (a->fact == F_ERROR)
                ev->is_error = true;
            set_rank(ev, a->fact, a->rank);
        }
        return marks;
    }

    if (a->kind == V_OI_KIND || a->kind == V_TL_KIND) {
        span_kind(ev, (value_kind)a->kind, v);
        /* The kind marks the span as OpenInference only when it names a model call; a CHAIN
         * span still has the bit so the caller sees the convention, and is vetoed in finish. */
        if (marks)
            ev->conventions |= a->conv;
        return marks;
    }
    if (marks)
        ev->conventions |= a->conv;
    _Static_assert(sizeof "execute_tool" == 13 && sizeof "invoke_agent" == 13 &&
                       sizeof "create_agent" == 13,
                   "the fast path above takes operation names of other lengths");
    if (a->kind == V_OPERATION && v->type == SN_ATTR_STRING &&
        (value_is(v, "execute_tool") || value_is(v, "invoke_agent") || value_is(v, "create_agent")))
        set_rank(ev, F_KIND, KIND_NOT_LLM);
    if (a->rank <= rank_of(ev, a->fact))
        return marks;

    bool taken = false;
    switch ((value_kind)a->kind) {
    case V_STRING:
    case V_OPERATION:
        taken = set_string(ev, a->fact, v);
        if (taken && a->fact == F_ERROR)
            ev->is_error = true;
        break;
    case V_REQUEST_TYPE:
        taken = set_request_type(ev, v);
        break;
    case V_COUNT: {
        int64_t n;
        taken = read_count(v, &n);
        if (taken)
            *count_field(ev, a->fact) = n;
        break;
    }
    case V_SECONDS: {
        double s;
        taken = read_real(v, 86400.0, &s);
        if (taken)
            ev->ttft_ms = s * 1000.0;
        break;
    }
    case V_USD: {
        double usd;
        taken = read_real(v, 1.0e6, &usd);
        if (taken) {
            ev->cost_usd = usd;
            ev->cost_source = SN_COST_SPAN;
        }
        break;
    }
    default:
        break;
    }
    if (taken)
        set_rank(ev, a->fact, a->rank);
    return marks;
}

void sn_genai_resource_attr(sn_event *tmpl, const char *key, size_t keylen, const sn_attr_value *v)
{
    if (v->type != SN_ATTR_STRING || v->str == NULL || v->len == 0)
        return;
    char *dst = NULL;
    size_t size = 0;
    switch (keylen) {
    case 12:
        if (memcmp(key, "service.name", 12) == 0) {
            dst = tmpl->service;
            size = sizeof tmpl->service;
        } else if (memcmp(key, "cloud.region", 12) == 0) {
            dst = tmpl->region;
            size = sizeof tmpl->region;
        } else if (memcmp(key, "k8s.pod.name", 12) == 0) {
            dst = tmpl->pod;
            size = sizeof tmpl->pod;
        }
        break;
    case 15:
        if (memcmp(key, "service.version", 15) == 0) {
            dst = tmpl->service_version;
            size = sizeof tmpl->service_version;
        }
        break;
    default:
        break;
    }
    if (dst != NULL)
        sn_copy_truncated(dst, size, v->str, v->len);
}

/* --- provider names --- */

typedef struct provider_alias {
    const char *from;
    const char *to;
    uint8_t from_len; /* strlen(from), computed at compile time */
    uint8_t to_len;   /* strlen(to) */
} provider_alias;

#define ALIAS(f, t)                                                                                \
    {                                                                                              \
        f, t, sizeof(f) - 1, sizeof(t) - 1                                                         \
    }

/* Values seen in the wild (old GenAI names, OpenInference's llm.provider/llm.system, OpenLLMetry's
 * gen_ai.system, LiteLLM prefixes), lower-cased, and the GenAI well-known name they mean. Every
 * span's provider is looked up here, and most (openai, anthropic) are in no row: the lengths are
 * compared first, so only rows of the same length cost a memcmp. */
static const provider_alias provider_aliases[] = {
    ALIAS("az.ai.openai", "azure.ai.openai"),
    ALIAS("azure", "azure.ai.openai"),
    ALIAS("azure_openai", "azure.ai.openai"),
    ALIAS("azure-openai", "azure.ai.openai"),
    ALIAS("azureopenai", "azure.ai.openai"),
    ALIAS("azure.openai", "azure.ai.openai"),
    ALIAS("az.ai.inference", "azure.ai.inference"),
    ALIAS("azure_ai", "azure.ai.inference"),
    ALIAS("azure_ai_inference", "azure.ai.inference"),
    ALIAS("vertex_ai", "gcp.vertex_ai"),
    ALIAS("vertexai", "gcp.vertex_ai"),
    ALIAS("vertex", "gcp.vertex_ai"),
    ALIAS("vertex_ai_beta", "gcp.vertex_ai"),
    ALIAS("google_vertex_ai", "gcp.vertex_ai"),
    ALIAS("gcp.vertexai", "gcp.vertex_ai"),
    ALIAS("gemini", "gcp.gemini"),
    ALIAS("google_gemini", "gcp.gemini"),
    ALIAS("google.gemini", "gcp.gemini"),
    ALIAS("google_ai_studio", "gcp.gemini"),
    ALIAS("google", "gcp.gen_ai"),
    ALIAS("google_genai", "gcp.gen_ai"),
    ALIAS("google.genai", "gcp.gen_ai"),
    ALIAS("bedrock", "aws.bedrock"),
    ALIAS("aws", "aws.bedrock"),
    ALIAS("aws_bedrock", "aws.bedrock"),
    ALIAS("aws-bedrock", "aws.bedrock"),
    ALIAS("amazon_bedrock", "aws.bedrock"),
    ALIAS("amazon-bedrock", "aws.bedrock"),
    ALIAS("mistral", "mistral_ai"),
    ALIAS("mistralai", "mistral_ai"),
    ALIAS("mistral-ai", "mistral_ai"),
    ALIAS("xai", "x_ai"),
    ALIAS("x-ai", "x_ai"),
    ALIAS("watsonx", "ibm.watsonx.ai"),
    ALIAS("ibm", "ibm.watsonx.ai"),
    ALIAS("ibm_watsonx", "ibm.watsonx.ai"),
    ALIAS("ibm.watsonx", "ibm.watsonx.ai"),
    ALIAS("watsonx.ai", "ibm.watsonx.ai"),
};
#undef ALIAS

/* Lower-cases and trims a provider name in place, then replaces a known alias by its GenAI name
 * when that fits. Nothing is allocated; the caller owns the buffer. */
void sn_genai_normalize_provider(char *provider, size_t size)
{
    if (provider == NULL || size == 0)
        return;
    size_t n = strnlen(provider, size - 1);
    provider[n] = '\0';
    /* Trim surrounding blanks, lower-case ASCII. */
    size_t b = 0;
    while (b < n && isspace((unsigned char)provider[b]))
        b++;
    while (n > b && isspace((unsigned char)provider[n - 1]))
        n--;
    memmove(provider, provider + b, n - b);
    n -= b;
    provider[n] = '\0';
    for (size_t i = 0; i < n; i++)
        provider[i] = (char)tolower((unsigned char)provider[i]);
    for (size_t i = 0; i < sizeof provider_aliases / sizeof provider_aliases[0]; i++) {
        const provider_alias *a = &provider_aliases[i];
        if (n == a->from_len && memcmp(provider, a->from, n) == 0) {
            if (a->to_len < size)
                memcpy(provider, a->to, (size_t)a->to_len + 1);
            return;
        }
    }
}

/* --- content keys --- */

/* Key prefixes that carry prompt or response text (or tool arguments, retrieved documents),
 * with their lengths: this runs for every attribute of every span, so no strlen per call. */
#define CONTENT_PREFIX(s)                                                                          \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }
static const struct {
    const char *s;
    size_t n;
} content_prefixes[] = {
    /* Grouped by first byte (content_range relies on it). */
    CONTENT_PREFIX("embedding.embeddings"),         /* 0: e */
    CONTENT_PREFIX("gen_ai.prompt"),                /* 1: g */
    CONTENT_PREFIX("gen_ai.completion"),            /* 2 */
    CONTENT_PREFIX("gen_ai.input.messages"),        /* 3 */
    CONTENT_PREFIX("gen_ai.output.messages"),       /* 4 */
    CONTENT_PREFIX("gen_ai.system_instructions"),   /* 5 */
    CONTENT_PREFIX("gen_ai.tool.call.arguments"),   /* 6 */
    CONTENT_PREFIX("gen_ai.tool.call.result"),      /* 7 */
    CONTENT_PREFIX("gen_ai.content"),               /* 8 */
    CONTENT_PREFIX("input.value"),                  /* 9: i */
    CONTENT_PREFIX("llm.input_messages"),           /* 10: l */
    CONTENT_PREFIX("llm.output_messages"),          /* 11 */
    CONTENT_PREFIX("llm.prompts"),                  /* 12 */
    CONTENT_PREFIX("llm.prompt_template"),          /* 13 */
    CONTENT_PREFIX("llm.completions"),              /* 14 */
    CONTENT_PREFIX("output.value"),                 /* 15: o */
    CONTENT_PREFIX("retrieval.documents"),          /* 16: r */
    CONTENT_PREFIX("reranker.input_documents"),     /* 17 */
    CONTENT_PREFIX("reranker.output_documents"),    /* 18 */
    CONTENT_PREFIX("reranker.query"),               /* 19 */
    CONTENT_PREFIX("traceloop.entity.input"),       /* 20: t */
    CONTENT_PREFIX("traceloop.entity.output"),      /* 21 */
    CONTENT_PREFIX("tool.parameters"),              /* 22 */
    CONTENT_PREFIX("tool_call.function.arguments"), /* 23 */
};
#undef CONTENT_PREFIX
enum { N_CONTENT_PREFIXES = sizeof content_prefixes / sizeof content_prefixes[0] };
_Static_assert(N_CONTENT_PREFIXES == 24, "content_range covers exactly these prefixes");

/* The slice [*lo, *hi) of content_prefixes that can match key (keylen >= 1): this runs for every
 * attribute of every span, and most keys start with a byte no prefix has, or share only
 * "gen_ai." with some, so the byte after "gen_ai." picks among those. */
static void content_range(const char *key, size_t keylen, size_t *lo, size_t *hi)
{
    *lo = *hi = 0;
    switch (key[0]) {
    case 'e':
        *lo = 0, *hi = 1;
        break;
    case 'g':
        if (keylen < 8 || memcmp(key, "gen_ai.", 7) != 0)
            break;
        switch (key[7]) {
        case 'p':
            *lo = 1, *hi = 2;
            break;
        case 'c':
            *lo = 2, *hi = 9;
            break; /* completion .. content: 2 and 8 */
        case 'i':
            *lo = 3, *hi = 4;
            break;
        case 'o':
            *lo = 4, *hi = 5;
            break;
        case 's':
            *lo = 5, *hi = 6;
            break;
        case 't':
            *lo = 6, *hi = 8;
            break;
        default:
            break;
        }
        break;
    case 'i':
        *lo = 9, *hi = 10;
        break;
    case 'l':
        *lo = 10, *hi = 15;
        break;
    case 'o':
        *lo = 15, *hi = 16;
        break;
    case 'r':
        *lo = 16, *hi = 20;
        break;
    case 't':
        *lo = 20, *hi = 24;
        break;
    default:
        break;
    }
}

bool sn_genai_is_content_key(const char *key, size_t keylen)
{
    if (keylen == 0)
        return false;
    size_t lo, hi;
    content_range(key, keylen, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        size_t n = content_prefixes[i].n;
        /* Last byte first: most keys differ from most prefixes there. */
        if (keylen >= n && key[n - 1] == content_prefixes[i].s[n - 1] &&
            memcmp(key, content_prefixes[i].s, n) == 0 &&
            (keylen == n || key[n] == '.' || key[n] == '['))
            return true;
    }
    return false;
}

/* --- completing an event --- */

bool sn_genai_model_from_response(const sn_event *ev)
{
    return rank_of(ev, F_MODEL) >= attrs[A_OI_MODEL_NAME].rank;
}

void sn_genai_memo_init(sn_genai_memo *m)
{
    m->nprov = m->prov_last = m->prov_next = 0;
}

/* The slot for a new memo entry among *used of SN_GENAI_MEMO_WAYS: a free one, else the oldest
 * (round robin through *next). */
static uint8_t memo_slot(uint8_t *used, uint8_t *next)
{
    if (*used < SN_GENAI_MEMO_WAYS)
        return (*used)++;
    uint8_t i = *next;
    *next = (uint8_t)((i + 1) % SN_GENAI_MEMO_WAYS);
    return i;
}

/* The provider's normalisation through the memo: copied when the raw name is a remembered one
 * (the last hit is tried first, without measuring the name). Returns the normalised length. */
static size_t normalize_provider_memo(sn_event *ev, sn_genai_memo *m)
{
    _Static_assert(sizeof m->prov[0].raw == sizeof ev->provider &&
                       sizeof m->prov[0].norm == sizeof ev->provider,
                   "the memo holds any provider name");
    _Static_assert(SN_GENAI_MEMO_WAYS < 256, "memo indexes are bytes");
    const sn_genai_memo_provider *e = &m->prov[m->prov_last];
    /* The same string: the same bytes up to and with the entry's NUL (raw_len < the size). */
    if (m->nprov > 0 && memcmp(ev->provider, e->raw, (size_t)e->raw_len + 1) == 0) {
        if (!e->same)
            memcpy(ev->provider, e->norm, (size_t)e->norm_len + 1);
        return e->norm_len;
    }
    size_t n = strnlen(ev->provider, sizeof ev->provider - 1);
    for (uint8_t i = 0; i < m->nprov; i++) {
        e = &m->prov[i];
        if (e->raw_len == n && memcmp(ev->provider, e->raw, n + 1) == 0) {
            m->prov_last = i;
            if (!e->same)
                memcpy(ev->provider, e->norm, (size_t)e->norm_len + 1);
            return e->norm_len;
        }
    }
    uint8_t i = memo_slot(&m->nprov, &m->prov_next);
    sn_genai_memo_provider *w = &m->prov[i];
    memcpy(w->raw, ev->provider, n);
    w->raw[n] = '\0';
    w->raw_len = (uint8_t)n;
    sn_genai_normalize_provider(ev->provider, sizeof ev->provider);
    w->norm_len = (uint8_t)strnlen(ev->provider, sizeof ev->provider - 1);
    memcpy(w->norm, ev->provider, (size_t)w->norm_len + 1);
    w->same = w->norm_len == n && memcmp(w->norm, w->raw, n) == 0;
    m->prov_last = i;
    return w->norm_len;
}

bool sn_genai_finish(sn_event *ev, const sn_price_table *prices)
{
    return sn_genai_finish_memo(ev, prices, NULL);
}

bool sn_genai_finish_memo(sn_event *ev, const sn_price_table *prices, sn_genai_memo *memo)
{
    if (rank_of(ev, F_KIND) == KIND_NOT_LLM) {
        ev->conventions = 0;
        return false;
    }
    if (ev->conventions == 0)
        return false;

    if (ev->start_unix_nano > 0 && ev->end_unix_nano >= ev->start_unix_nano)
        ev->latency_ms = (double)(ev->end_unix_nano - ev->start_unix_nano) / 1e6;
    size_t plen;
    if (memo) {
        plen = normalize_provider_memo(ev, memo);
    } else {
        sn_genai_normalize_provider(ev->provider, sizeof ev->provider);
        plen = strnlen(ev->provider, sizeof ev->provider - 1);
    }
    if (ev->error_type[0] != '\0')
        ev->is_error = true;
    if (ev->total_tokens < 0 && ev->input_tokens >= 0 && ev->output_tokens >= 0 &&
        ev->input_tokens <= INT64_MAX - ev->output_tokens)
        ev->total_tokens = ev->input_tokens + ev->output_tokens;

    if (ev->cost_source != SN_COST_SPAN && prices != NULL && ev->model[0] != '\0') {
        /* Both strings end inside their fields (set_string, normalisation). */
        int32_t rule = sn_price_rule_n(prices, ev->model, strnlen(ev->model, sizeof ev->model),
                                       ev->provider, plen);
        if (rule >= 0) {
            sn_price p;
            sn_price_rule_price(prices, rule, ev->end_unix_nano, &p);
            double cost = sn_price_cost(&p, ev->input_tokens, ev->output_tokens,
                                        ev->cache_read_tokens, ev->cache_write_tokens);
            if (!isnan(cost)) {
                ev->cost_usd = cost;
                ev->cost_source = SN_COST_PRICE_TABLE;
            }
        }
    }
    return true;
}
