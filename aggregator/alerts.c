/*
 * alerts.c -- the alert lifecycle (see alerts.h for the state diagram).
 *
 * Slots: an array of max_alerts entries allocated at create. A slot is free, firing or resolved.
 * Lookups are linear scans comparing a 64-bit hash of (service, model, anomaly_type) before the
 * strings: anomalies are rare compared with events (the engine already de-noised them), and a
 * scan of a thousand integers costs less than keeping a hash table consistent with eviction.
 *
 * Invariants (checked by slot_ok in debug builds):
 *   - at most one firing slot per key;
 *   - a firing slot has resolved_at_ns == 0, a resolved slot has resolved_at_ns > 0;
 *   - nfiring == number of firing slots, nheld == number of used slots.
 */
#include "alerts.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef struct slot {
    sn_alert a;
    uint64_t key;
    bool used;
    int rule; /* index of the rule that gave root_cause (smaller = more specific) */
} slot;

struct sn_alerts {
    sn_alerts_config cfg;
    char runbook[SN_ALERT_URL_MAX];
    slot *slots;
    size_t nslots;
    size_t nfiring;
    size_t nheld;
    uint64_t rng; /* splitmix64 state when cfg.random is NULL */
    sn_alerts_stats st;
};

/* ---- rules ---- */

/* The documented rules (docs/aggregator.md "Alerts"), most specific first within a type; the
 * last rule of each type has no condition and is its fallback. */
static const sn_alert_rule g_rules[] = {
    /* latency_spike */
    {.type = SN_ANOMALY_LATENCY_SPIKE,
     .error_type_has = "timeout|timed out|deadline",
     .root_cause = "provider slowness or timeouts",
     .remediation =
         {"Check the provider's status page and its latency for this model",
          "Lower the client timeout and retry with backoff, or fail over to a fallback model",
          "Compare with input token counts: longer prompts take longer to answer"}},
    {.type = SN_ANOMALY_LATENCY_SPIKE,
     .related_metric = "error_rate",
     .root_cause = "provider degradation",
     .remediation =
         {"Check the provider's status page and incident feed",
          "Route traffic to a fallback model or region until error rate and latency recover",
          "Keep retries bounded so they do not add to the overload"}},
    {.type = SN_ANOMALY_LATENCY_SPIKE,
     .related_metric = "output_tokens|total_tokens|input_tokens",
     .root_cause = "longer prompts or responses (token counts rose with latency)",
     .remediation = {"Look at the token_spike alerts of the same service and model",
                     "Check max_tokens and recent prompt or template changes",
                     "Stream responses so users see the first tokens sooner"}},
    {.type = SN_ANOMALY_LATENCY_SPIKE,
     .metric = "ttft_ms",
     .root_cause = "provider queueing (time to first token rose)",
     .remediation = {"Check the provider's status page and rate-limit headroom",
                     "Consider provisioned throughput or another region for this model",
                     "Check whether prompt caching stopped hitting (cache_read tokens dropped)"}},
    {.type = SN_ANOMALY_LATENCY_SPIKE,
     .root_cause = "provider or network slowness",
     .remediation =
         {"Check the provider's status page and the network path to it",
          "Compare latency across models and regions to see whether one provider is affected",
          "Check recent deployments of the service (prompt, model or SDK changes)"}},
    /* latency_drift */
    {.type = SN_ANOMALY_LATENCY_DRIFT,
     .root_cause =
         "gradual slowdown (provider capacity, growing prompts or a model version change)",
     .remediation =
         {"Compare input token counts over the same period: prompts may be growing",
          "Check whether the provider moved the model alias to a new version",
          "Review the trend on the dashboard and reset the baseline if the new level is accepted"}},
    /* latency_drop */
    {.type = SN_ANOMALY_LATENCY_DROP,
     .root_cause = "calls ending early (truncated answers, cached or refused responses)",
     .remediation = {"Check finish reasons and output token counts of the fast calls",
                     "Check for content-filter refusals or empty responses",
                     "Check whether a cache or fallback path started answering"}},
    /* token_spike */
    {.type = SN_ANOMALY_TOKEN_SPIKE,
     .finish_reason = "length|max_tokens",
     .root_cause =
         "responses hitting max_tokens (possible prompt-injection loop or runaway generation)",
     .remediation =
         {"Inspect the traces of the spiking calls for repeated or injected instructions",
          "Lower max_tokens for this route and add a stop sequence",
          "Rate-limit or block the user or key behind the spike"}},
    {.type = SN_ANOMALY_TOKEN_SPIKE,
     .metric = "input_tokens",
     .root_cause =
         "prompt growth (retrieval returning too much context, conversation history not trimmed)",
     .remediation = {"Cap the number and size of retrieved chunks",
                     "Trim or summarise conversation history beyond a token budget",
                     "Check recent prompt template changes"}},
    {.type = SN_ANOMALY_TOKEN_SPIKE,
     .root_cause = "longer responses (prompt or model behaviour change)",
     .remediation = {"Check recent prompt and model version changes",
                     "Set or lower max_tokens for this route",
                     "Inspect the traces of the largest calls"}},
    /* token_drop */
    {.type = SN_ANOMALY_TOKEN_DROP,
     .root_cause =
         "truncated prompts or responses (failed retrieval, content filter or early stop)",
     .remediation = {"Check whether retrieval returns context (empty search results?)",
                     "Check finish reasons for content_filter or stop sequences",
                     "Check recent prompt template changes"}},
    /* cost_spike */
    {.type = SN_ANOMALY_COST_SPIKE,
     .related_metric = "input_tokens|output_tokens|total_tokens",
     .root_cause = "token usage spike driving cost",
     .remediation = {"Look at the token_spike alerts of the same service and model",
                     "Cap max_tokens and retrieved context for this route",
                     "Rate-limit the users or keys behind the spike"}},
    {.type = SN_ANOMALY_COST_SPIKE,
     .root_cause = "expensive calls (larger prompts or responses, or a pricier model)",
     .remediation =
         {"Check which model served the expensive calls (model routing or fallback changes)",
          "Check token counts of the expensive calls",
          "Set a budget for the service to be alerted before the bill grows"}},
    /* cost_drift */
    {.type = SN_ANOMALY_COST_DRIFT,
     .root_cause = "price change or model mix shift",
     .remediation = {"Check the provider's price list against the price table in use",
                     "Compare the share of calls per model over the drift period",
                     "Check whether prompt caching stopped hitting"}},
    /* error_rate */
    {.type = SN_ANOMALY_ERROR_RATE,
     .error_type_has = "429|rate_limit|rate limit|ratelimit|too many requests|quota",
     .root_cause = "provider rate limiting",
     .remediation =
         {"Check the rate limits (requests and tokens per minute) of the key and model",
          "Retry with exponential backoff honouring Retry-After",
          "Spread load over more keys, deployments or regions, or request a higher quota"}},
    {.type = SN_ANOMALY_ERROR_RATE,
     .error_type_has = "timeout|timed out|deadline",
     .root_cause = "provider timeouts",
     .remediation = {"Check the provider's status page",
                     "Check the client timeout against the model's usual latency",
                     "Fail over to a fallback model or region"}},
    {.type = SN_ANOMALY_ERROR_RATE,
     .error_type_has = "401|403|auth|permission|api key|api_key",
     .root_cause =
         "authentication or authorisation failures (key revoked, expired or without access)",
     .remediation = {"Check that the API key is valid and has access to the model",
                     "Check recent secret rotations and deployments",
                     "Check the provider account's billing status"}},
    {.type = SN_ANOMALY_ERROR_RATE,
     .error_type_has = "500|502|503|504|server|unavailable|overloaded|internal",
     .root_cause = "provider outage or degradation",
     .remediation = {"Check the provider's status page and incident feed",
                     "Fail over to a fallback model or region",
                     "Keep retries bounded so they do not add to the overload"}},
    {.type = SN_ANOMALY_ERROR_RATE,
     .error_type_has = "400|invalid|bad request|context_length|context length",
     .root_cause = "requests rejected as invalid (prompt too long or a changed API contract)",
     .remediation = {"Check the error messages of the failing calls",
                     "Check prompt length against the model's context window",
                     "Check recent SDK, model or request parameter changes"}},
    {.type = SN_ANOMALY_ERROR_RATE,
     .root_cause = "elevated error rate (provider or application errors)",
     .remediation = {"Group the failing calls by error.type in the traces",
                     "Check the provider's status page",
                     "Check recent deployments of the service"}},
    /* throughput */
    {.type = SN_ANOMALY_THROUGHPUT_DROP,
     .root_cause = "slower generation (provider throttling or degraded capacity)",
     .remediation =
         {"Check the provider's status page and rate-limit headroom",
          "Compare tokens per second across regions or deployments",
          "Consider provisioned throughput or a faster model for latency-sensitive routes"}},
    {.type = SN_ANOMALY_THROUGHPUT_SPIKE,
     .root_cause = "unusually fast generation (cached, truncated or a different model answering)",
     .remediation = {"Check whether the responding model changed",
                     "Check output token counts and finish reasons of the fast calls"}},
    /* distribution drift */
    {.type = SN_ANOMALY_TOKEN_DRIFT,
     .root_cause = "input token distribution moved (prompt template, retrieval or traffic change)",
     .remediation = {"Compare recent prompt template and retrieval changes with the drift start",
                     "Check whether a new client, user group or route sends different requests",
                     "Reset the baseline if the new distribution is expected"}},
    {.type = SN_ANOMALY_FINISH_REASON_DRIFT,
     .finish_reason = "length|max_tokens",
     .root_cause = "more responses hitting max_tokens (runaway generation or a lowered max_tokens)",
     .remediation = {"Check recent max_tokens and prompt changes",
                     "Inspect traces cut at max_tokens for loops or injected instructions",
                     "Add stop sequences or raise max_tokens where answers are legitimately long"}},
    {.type = SN_ANOMALY_FINISH_REASON_DRIFT,
     .finish_reason = "content_filter|safety|blocked|recitation",
     .root_cause =
         "more responses blocked by safety filters (injection attempts or a policy change)",
     .remediation = {"Inspect the filtered calls for prompt-injection or abuse",
                     "Check the provider's content policy and filter settings for changes",
                     "Rate-limit or block the users behind the filtered calls"}},
    {.type = SN_ANOMALY_FINISH_REASON_DRIFT,
     .root_cause = "the mix of finish reasons changed (model version or prompt change)",
     .remediation = {"Check whether the provider moved the model alias to a new version",
                     "Compare finish reasons before and after recent prompt changes"}},
    /* budget */
    {.type = SN_ANOMALY_BUDGET,
     .root_cause = "spending reached the budget limit",
     .remediation = {"Check which users, keys or routes spent the most this period",
                     "Rate-limit or switch expensive routes to a cheaper model",
                     "Raise the budget if the spending is expected"}},
};

#define NRULES (sizeof g_rules / sizeof g_rules[0])

const sn_alert_rule *sn_alert_rules(size_t *n)
{
    if (n != NULL)
        *n = NRULES;
    return g_rules;
}

/* True when s (NUL-terminated) matches one of the '|'-separated alternatives of pat:
 * as a substring (contains) or whole (!contains), ignoring case. */
static bool match_alternatives(const char *s, const char *pat, bool contains)
{
    size_t slen = strlen(s);
    if (slen == 0)
        return false;
    const char *p = pat;
    while (*p != '\0') {
        const char *bar = strchr(p, '|');
        size_t plen = bar != NULL ? (size_t)(bar - p) : strlen(p);
        if (plen > 0) {
            if (!contains) {
                if (plen == slen && strncasecmp(s, p, plen) == 0)
                    return true;
            } else {
                for (size_t i = 0; i + plen <= slen; i++)
                    if (strncasecmp(s + i, p, plen) == 0)
                        return true;
            }
        }
        if (bar == NULL)
            break;
        p = bar + 1;
    }
    return false;
}

int sn_alert_rule_match(const sn_anomaly *an)
{
    for (size_t i = 0; i < NRULES; i++) {
        const sn_alert_rule *r = &g_rules[i];
        if (r->type != an->anomaly_type)
            continue;
        if (r->metric != NULL && !match_alternatives(sn_metric_name(an->metric), r->metric, false))
            continue;
        if (r->error_type_has != NULL &&
            !match_alternatives(an->error_type, r->error_type_has, true))
            continue;
        if (r->finish_reason != NULL &&
            !match_alternatives(an->finish_reason, r->finish_reason, false))
            continue;
        if (r->related_metric != NULL &&
            !match_alternatives(an->related_metric, r->related_metric, false))
            continue;
        return (int)i;
    }
    return -1;
}

/* Copies rule i's text into the alert. */
static void apply_rule(sn_alert *a, int i)
{
    const sn_alert_rule *r = &g_rules[i];
    snprintf(a->root_cause, sizeof a->root_cause, "%s", r->root_cause);
    a->nremediation = 0;
    for (unsigned k = 0; k < SN_ALERT_REMEDIATION_MAX && r->remediation[k] != NULL; k++) {
        snprintf(a->remediation[k], sizeof a->remediation[k], "%s", r->remediation[k]);
        a->nremediation++;
    }
}

/* ---- helpers ---- */

/* splitmix64 (Steele, Lea, Flood 2014): the internal id generator when no random source is set. */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* FNV-1a of (service, model, type): the slot key. */
static uint64_t key_hash(const char *service, const char *model, sn_anomaly_type t)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (const char *p = service; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * UINT64_C(0x100000001b3);
    h = (h ^ 0xFF) * UINT64_C(0x100000001b3);
    for (const char *p = model; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * UINT64_C(0x100000001b3);
    h = (h ^ 0xFF) * UINT64_C(0x100000001b3);
    return (h ^ (uint64_t)t) * UINT64_C(0x100000001b3);
}

/* Copies a NUL-terminated string into a fixed field, cut at a UTF-8 boundary. */
static void copy_field(char *dst, size_t dstsize, const char *src)
{
    (void)sn_copy_truncated(dst, dstsize, src, strnlen(src, dstsize * 4));
}

/* Appends src to out (at *o, capacity cap) percent-encoding all but RFC 3986 unreserved
 * characters when `encode`. Returns false when it does not fit. */
static bool append_url(char *out, size_t cap, size_t *o, const char *src, bool encode)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const char *p = src; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        bool plain = !encode || isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
        size_t need = plain ? 1 : 3;
        if (*o + need >= cap)
            return false;
        if (plain) {
            out[(*o)++] = (char)c;
        } else {
            out[(*o)++] = '%';
            out[(*o)++] = hex[c >> 4];
            out[(*o)++] = hex[c & 0x0F];
        }
    }
    return true;
}

/* Expands the runbook template for alert a into a->runbook_url ("" when none or too long). */
static void expand_runbook(const sn_alerts *m, sn_alert *a)
{
    static const char *const names[] = {"{anomaly_type}", "{service}", "{model}"};
    char *out = a->runbook_url;
    size_t cap = sizeof a->runbook_url, o = 0;
    const char *p = m->runbook;
    out[0] = '\0';
    while (*p != '\0') {
        int which = -1;
        if (*p == '{')
            for (int i = 0; i < 3; i++)
                if (strncmp(p, names[i], strlen(names[i])) == 0)
                    which = i;
        bool ok;
        if (which == 0)
            ok = append_url(out, cap, &o, sn_anomaly_type_name(a->anomaly_type), true);
        else if (which == 1)
            ok = append_url(out, cap, &o, a->service, true);
        else if (which == 2)
            ok = append_url(out, cap, &o, a->model, true);
        else {
            char one[2] = {*p, '\0'};
            ok = append_url(out, cap, &o, one, false);
        }
        if (!ok) {
            out[0] = '\0';
            return;
        }
        p += which >= 0 ? strlen(names[which]) : 1;
    }
    out[o] = '\0';
}

/* Confidence as kept: within [0, 1]; not finite -> 0.5 (the floor of a verdict's confidence). */
static double clamp_confidence(double c)
{
    if (!isfinite(c))
        return 0.5;
    return c < 0.0 ? 0.0 : c > 1.0 ? 1.0 : c;
}

/* True when a fixed-size string field holds its NUL. */
#define TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

/* True when the anomaly's enums and names are usable (every string terminated). */
static bool anomaly_valid(const sn_anomaly *an)
{
    return an->severity >= SN_SEV_LOW && an->severity <= SN_SEV_CRITICAL &&
           (unsigned)an->anomaly_type < SN_ANOMALY_TYPE_COUNT &&
           (unsigned)an->metric < SN_METRIC_COUNT && (unsigned)an->method < SN_DETECT_KIND_COUNT &&
           (an->source == SN_SOURCE_AGGREGATOR || an->source == SN_SOURCE_SIDECAR) &&
           an->service[0] != '\0' && TERMINATED(an->service) && TERMINATED(an->model) &&
           TERMINATED(an->region) && TERMINATED(an->time_window) && TERMINATED(an->error_type) &&
           TERMINATED(an->finish_reason) && TERMINATED(an->related_metric);
}

/* Copies the latest anomaly's details and context into the alert. */
static void take_details(sn_alert *a, const sn_anomaly *an)
{
    a->method = an->method;
    a->confidence = clamp_confidence(an->confidence);
    a->metric = an->metric;
    a->value = an->value;
    a->baseline = an->baseline;
    a->threshold = an->threshold;
    a->deviation_sigma = an->deviation_sigma;
    memcpy(a->trace_id, an->trace_id, sizeof a->trace_id);
    copy_field(a->region, sizeof a->region, an->region);
    copy_field(a->time_window, sizeof a->time_window, an->time_window);
    a->source = an->source;
    a->calls = an->calls;
}

/* Folds one anomaly into the alert's occurrence counts: itself and what a sidecar held back. */
static void add_occurrences(sn_alert *a, const sn_anomaly *an)
{
    uint64_t n = (uint64_t)a->occurrences + 1 + an->suppressed;
    a->occurrences = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    a->sidecar_suppressed += an->suppressed;
}

static void notify(sn_alerts *m, sn_alert_change c, const sn_alert *a)
{
    if (m->cfg.on_change != NULL)
        m->cfg.on_change(c, a, m->cfg.cb_ud);
}

/* The firing slot of a key, or NULL. */
static slot *find_firing(sn_alerts *m, uint64_t key, const char *service, const char *model,
                         sn_anomaly_type t)
{
    for (size_t i = 0; i < m->nslots; i++) {
        slot *s = &m->slots[i];
        if (s->used && s->key == key && s->a.status == SN_ALERT_FIRING && s->a.anomaly_type == t &&
            strcmp(s->a.service, service) == 0 && strcmp(s->a.model, model) == 0)
            return s;
    }
    return NULL;
}

static void resolve_slot(sn_alerts *m, slot *s, int64_t now_ns)
{
    assert(s->used && s->a.status == SN_ALERT_FIRING);
    s->a.status = SN_ALERT_RESOLVED;
    s->a.resolved_at_ns = now_ns > 0 ? now_ns : 1;
    m->nfiring--;
    m->st.resolved++;
    notify(m, SN_ALERT_CHANGE_RESOLVED, &s->a);
}

/* A slot for a new alert: a free one, else the one resolved longest ago (dropped, counted), else
 * NULL. */
static slot *take_slot(sn_alerts *m)
{
    slot *oldest = NULL;
    for (size_t i = 0; i < m->nslots; i++) {
        slot *s = &m->slots[i];
        if (!s->used)
            return s;
        if (s->a.status == SN_ALERT_RESOLVED &&
            (oldest == NULL || s->a.resolved_at_ns < oldest->a.resolved_at_ns))
            oldest = s;
    }
    if (oldest != NULL) {
        oldest->used = false;
        m->nheld--;
        m->st.dropped++;
    }
    return oldest;
}

/* Adds id to a's related list unless present or full. Returns true when added. */
static bool add_related(sn_alert *a, const char *id)
{
    for (unsigned i = 0; i < a->nrelated; i++)
        if (strcmp(a->related[i], id) == 0)
            return false;
    if (a->nrelated >= SN_ALERT_RELATED_MAX)
        return false;
    memcpy(a->related[a->nrelated++], id, SN_ALERT_ID_LEN + 1);
    return true;
}

/* Links a new alert with the other firing alerts of its service seen within the group window;
 * the others report UPDATED. */
static void group(sn_alerts *m, slot *fresh, int64_t now_ns)
{
    if (m->cfg.group_window_ns <= 0)
        return;
    for (size_t i = 0; i < m->nslots; i++) {
        slot *s = &m->slots[i];
        if (s == fresh || !s->used || s->a.status != SN_ALERT_FIRING ||
            strcmp(s->a.service, fresh->a.service) != 0 ||
            s->a.last_seen_ns < now_ns - m->cfg.group_window_ns)
            continue;
        add_related(&fresh->a, s->a.alert_id);
        if (add_related(&s->a, fresh->a.alert_id))
            notify(m, SN_ALERT_CHANGE_UPDATED, &s->a);
    }
}

static void new_id(sn_alerts *m, char out[SN_ALERT_ID_LEN + 1])
{
    uint8_t r[16];
    if (m->cfg.random != NULL) {
        m->cfg.random(r, m->cfg.random_ud);
    } else {
        uint64_t a = splitmix64(&m->rng), b = splitmix64(&m->rng);
        memcpy(r, &a, 8);
        memcpy(r + 8, &b, 8);
    }
    sn_uuid_format(r, out);
}

/* ---- lifecycle ---- */

void sn_alerts_config_init(sn_alerts_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_alerts = SN_ALERTS_DEFAULT_MAX;
    cfg->dedup_window_ns = SN_ALERTS_DEFAULT_DEDUP;
    cfg->quiet_period_ns = SN_ALERTS_DEFAULT_QUIET;
    cfg->group_window_ns = SN_ALERTS_DEFAULT_GROUP;
    cfg->runbook_template = "";
}

int sn_alerts_create(const sn_alerts_config *cfg, sn_alerts **out, char *err, size_t errlen)
{
    const char *bad = NULL;
    if (cfg->max_alerts < 1 || cfg->max_alerts > SIZE_MAX / sizeof(slot))
        bad = "alerts: max_alerts must be >= 1";
    else if (cfg->dedup_window_ns <= 0)
        bad = "alerts: dedup_window must be > 0";
    else if (cfg->quiet_period_ns <= 0)
        bad = "alerts: quiet_period must be > 0";
    else if (cfg->group_window_ns < 0)
        bad = "alerts: group_window must be >= 0";
    else if (cfg->runbook_template != NULL &&
             strnlen(cfg->runbook_template, SN_ALERT_URL_MAX) >= SN_ALERT_URL_MAX)
        bad = "alerts: runbook_template is longer than 511 bytes";
    if (bad != NULL) {
        snprintf(err, errlen, "%s", bad);
        return -EINVAL;
    }
    sn_alerts *m = calloc(1, sizeof *m);
    if (m == NULL)
        goto out_nomem;
    m->slots = calloc(cfg->max_alerts, sizeof *m->slots);
    if (m->slots == NULL)
        goto out_free_m;
    m->cfg = *cfg;
    snprintf(m->runbook, sizeof m->runbook, "%s",
             cfg->runbook_template != NULL ? cfg->runbook_template : "");
    m->cfg.runbook_template = m->runbook;
    m->nslots = cfg->max_alerts;
    m->rng = cfg->seed;
    *out = m;
    return 0;

out_free_m:
    free(m);
out_nomem:
    snprintf(err, errlen, "alerts: out of memory");
    return -ENOMEM;
}

void sn_alerts_destroy(sn_alerts *m)
{
    if (m == NULL)
        return;
    free(m->slots);
    free(m);
}

int sn_alerts_observe(sn_alerts *m, const sn_anomaly *an, int64_t now_ns)
{
    if (!anomaly_valid(an)) {
        m->st.invalid++;
        return -EINVAL;
    }
    int rule = sn_alert_rule_match(an);
    assert(rule >= 0); /* every valid type has a fallback rule */
    uint64_t key = key_hash(an->service, an->model, an->anomaly_type);
    slot *s = find_firing(m, key, an->service, an->model, an->anomaly_type);
    if (s != NULL && now_ns - s->a.last_seen_ns <= m->cfg.dedup_window_ns) {
        bool escalated = an->severity > s->a.severity;
        if (escalated)
            s->a.severity = an->severity;
        add_occurrences(&s->a, an);
        if (now_ns > s->a.last_seen_ns)
            s->a.last_seen_ns = now_ns;
        take_details(&s->a, an);
        if (rule < s->rule) {
            apply_rule(&s->a, rule);
            s->rule = rule;
        }
        m->st.updates++;
        notify(m, escalated ? SN_ALERT_CHANGE_ESCALATED : SN_ALERT_CHANGE_UPDATED, &s->a);
        return 0;
    }
    if (s != NULL) /* quiet for longer than the dedup window: this is a new incident */
        resolve_slot(m, s, now_ns);

    s = take_slot(m);
    if (s == NULL) {
        m->st.refused++;
        return -ENOSPC;
    }
    memset(s, 0, sizeof *s);
    s->used = true;
    s->key = key;
    s->rule = rule;
    sn_alert *a = &s->a;
    new_id(m, a->alert_id);
    a->timestamp_ns = now_ns;
    a->last_seen_ns = now_ns;
    a->resolved_at_ns = 0;
    a->severity = an->severity;
    a->anomaly_type = an->anomaly_type;
    copy_field(a->service, sizeof a->service, an->service);
    copy_field(a->model, sizeof a->model, an->model);
    take_details(a, an);
    apply_rule(a, rule);
    expand_runbook(m, a);
    a->status = SN_ALERT_FIRING;
    a->occurrences = 0;
    add_occurrences(a, an);
    m->nheld++;
    m->nfiring++;
    m->st.fired++;
    group(m, s, now_ns);
    notify(m, SN_ALERT_CHANGE_FIRED, a);
    return 0;
}

size_t sn_alerts_tick(sn_alerts *m, int64_t now_ns)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nslots && m->nfiring > 0; i++) {
        slot *s = &m->slots[i];
        if (s->used && s->a.status == SN_ALERT_FIRING &&
            now_ns - s->a.last_seen_ns >= m->cfg.quiet_period_ns) {
            resolve_slot(m, s, now_ns);
            n++;
        }
    }
    return n;
}

/* The index of the rule whose root cause is this text, or NRULES (least specific). */
static int rule_of_text(sn_anomaly_type t, const char *root_cause)
{
    for (size_t i = 0; i < NRULES; i++)
        if (g_rules[i].type == t && strcmp(g_rules[i].root_cause, root_cause) == 0)
            return (int)i;
    return (int)NRULES;
}

int sn_alerts_restore(sn_alerts *m, const sn_alert *a)
{
    if (a->status != SN_ALERT_FIRING || (unsigned)a->anomaly_type >= SN_ANOMALY_TYPE_COUNT ||
        a->service[0] == '\0' || memchr(a->service, '\0', sizeof a->service) == NULL ||
        memchr(a->model, '\0', sizeof a->model) == NULL ||
        strnlen(a->alert_id, sizeof a->alert_id) != SN_ALERT_ID_LEN)
        return -EINVAL;
    uint64_t key = key_hash(a->service, a->model, a->anomaly_type);
    if (find_firing(m, key, a->service, a->model, a->anomaly_type) != NULL ||
        sn_alerts_get(m, a->alert_id) != NULL)
        return -EEXIST;
    slot *s = take_slot(m);
    if (s == NULL)
        return -ENOSPC;
    memset(s, 0, sizeof *s);
    s->used = true;
    s->key = key;
    s->a = *a;
    s->a.resolved_at_ns = 0;
    if (s->a.nremediation > SN_ALERT_REMEDIATION_MAX)
        s->a.nremediation = SN_ALERT_REMEDIATION_MAX;
    if (s->a.nrelated > SN_ALERT_RELATED_MAX)
        s->a.nrelated = SN_ALERT_RELATED_MAX;
    s->rule = rule_of_text(a->anomaly_type, a->root_cause);
    m->nheld++;
    m->nfiring++;
    m->st.restored++;
    return 0;
}

const sn_alert *sn_alerts_get(const sn_alerts *m, const char *id)
{
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i].used && strcmp(m->slots[i].a.alert_id, id) == 0)
            return &m->slots[i].a;
    return NULL;
}

int sn_alerts_foreach(const sn_alerts *m, sn_alerts_visit cb, void *ud)
{
    for (int pass = 0; pass < 2; pass++) {
        sn_alert_status want = pass == 0 ? SN_ALERT_FIRING : SN_ALERT_RESOLVED;
        for (size_t i = 0; i < m->nslots; i++) {
            const slot *s = &m->slots[i];
            if (!s->used || s->a.status != want)
                continue;
            int rc = cb(&s->a, ud);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

void sn_alerts_stats_get(const sn_alerts *m, sn_alerts_stats *out)
{
    *out = m->st;
    out->firing = m->nfiring;
    out->held = m->nheld;
}

/* ---- time ---- */

int sn_alert_format_time(int64_t ns, char *out, size_t outlen)
{
    if (ns < 0)
        return -EINVAL;
    time_t secs = (time_t)(ns / 1000000000);
    int ms = (int)((ns % 1000000000) / 1000000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL)
        return -EINVAL;
    int n = snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return n > 0 && (size_t)n < outlen ? 0 : -EINVAL;
}

/* Reads exactly n digits at *p into *v. */
static bool digits(const char **p, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        x = x * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *v = x;
    return true;
}

int sn_alert_parse_time(const char *s, int64_t *ns)
{
    int y, mo, d, h, mi, sec;
    const char *p = s;
    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return -EINVAL;
    p++;
    if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' ||
        !digits(&p, 2, &sec))
        return -EINVAL;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -EINVAL;
    int64_t frac = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        int64_t scale = 100000000;
        while (isdigit((unsigned char)*p)) {
            if (nd < 9) {
                frac += (*p - '0') * scale;
                scale /= 10;
            }
            nd++;
            p++;
        }
        if (nd == 0)
            return -EINVAL;
    }
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om) || oh > 23 || om > 59)
            return -EINVAL;
        offset = sign * (int64_t)(oh * 3600 + om * 60);
    } else {
        return -EINVAL;
    }
    if (*p != '\0')
        return -EINVAL;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || tm.tm_mday != d) /* 2026-02-31 normalises to March */
        return -EINVAL;
    int64_t secs = (int64_t)t - offset;
    if (secs < 0 || secs > INT64_MAX / 1000000000 - 1)
        return -EINVAL;
    *ns = secs * 1000000000 + frac;
    return 0;
}

/* ---- JSON ---- */

static const char *status_name(sn_alert_status s)
{
    return s == SN_ALERT_RESOLVED ? "resolved" : "firing";
}

static const char *source_name(sn_anomaly_source s)
{
    return s == SN_SOURCE_SIDECAR ? "sidecar" : "aggregator";
}

/* A JSON string of s; bytes that are not valid UTF-8 (jansson refuses them) become '?'. */
static json_t *jstr(const char *s)
{
    json_t *v = json_string(s);
    if (v != NULL)
        return v;
    char buf[SN_ALERT_URL_MAX];
    size_t n = 0;
    for (; s[n] != '\0' && n + 1 < sizeof buf; n++)
        buf[n] = (unsigned char)s[n] < 0x80 ? s[n] : '?';
    buf[n] = '\0';
    return json_string(buf);
}

/* Sets key to a JSON string of the time, or fails. */
static int set_time(json_t *o, const char *key, int64_t ns)
{
    char buf[40];
    if (sn_alert_format_time(ns, buf, sizeof buf) != 0)
        snprintf(buf, sizeof buf, "1970-01-01T00:00:00.000Z");
    return json_object_set_new(o, key, json_string(buf));
}

/* Sets key to the number when it is finite; leaves it out otherwise. */
static int set_finite(json_t *o, const char *key, double v)
{
    if (!isfinite(v))
        return 0;
    return json_object_set_new(o, key, json_real(v));
}

json_t *sn_alert_to_json(const sn_alert *a)
{
    json_t *o = json_object();
    json_t *details = json_object();
    json_t *ctx = json_object();
    json_t *rem = json_array();
    json_t *rel = json_array();
    if (o == NULL || details == NULL || ctx == NULL || rem == NULL || rel == NULL)
        goto out_free_all;
    int rc = 0;
    rc |= json_object_set_new(o, "alert_id", jstr(a->alert_id));
    rc |= set_time(o, "timestamp", a->timestamp_ns);
    rc |= json_object_set_new(o, "severity", json_string(sn_severity_name(a->severity)));
    rc |=
        json_object_set_new(o, "anomaly_type", json_string(sn_anomaly_type_name(a->anomaly_type)));
    rc |= json_object_set_new(o, "service_name", jstr(a->service));
    rc |= json_object_set_new(o, "model", jstr(a->model));
    rc |= json_object_set_new(o, "detection_method", json_string(sn_detector_name(a->method)));
    rc |= json_object_set_new(o, "confidence", json_real(clamp_confidence(a->confidence)));

    rc |= json_object_set_new(details, "metric", json_string(sn_metric_name(a->metric)));
    rc |= set_finite(details, "value", a->value);
    rc |= set_finite(details, "baseline", a->baseline);
    rc |= set_finite(details, "threshold", a->threshold);
    rc |= set_finite(details, "deviation_sigma", a->deviation_sigma);
    if (a->calls > 0)
        rc |= json_object_set_new(details, "calls", json_integer((json_int_t)a->calls));
    if (a->sidecar_suppressed > 0)
        rc |= json_object_set_new(details, "sidecar_suppressed",
                                  json_integer((json_int_t)a->sidecar_suppressed));

    static const uint8_t zero[16];
    if (memcmp(a->trace_id, zero, sizeof zero) != 0) {
        static const char hex[] = "0123456789abcdef";
        char t[33];
        for (int i = 0; i < 16; i++) {
            t[2 * i] = hex[a->trace_id[i] >> 4];
            t[2 * i + 1] = hex[a->trace_id[i] & 0x0F];
        }
        t[32] = '\0';
        rc |= json_object_set_new(ctx, "trace_id", json_string(t));
    }
    rc |= json_object_set_new(ctx, "region", jstr(a->region));
    rc |= json_object_set_new(ctx, "time_window", jstr(a->time_window));
    rc |= json_object_set_new(ctx, "source", json_string(source_name(a->source)));
    if (a->calls > 0)
        rc |= json_object_set_new(ctx, "signal", json_string("metrics"));

    for (unsigned i = 0; i < a->nremediation && i < SN_ALERT_REMEDIATION_MAX; i++)
        rc |= json_array_append_new(rem, jstr(a->remediation[i]));
    for (unsigned i = 0; i < a->nrelated && i < SN_ALERT_RELATED_MAX; i++)
        rc |= json_array_append_new(rel, jstr(a->related[i]));

    rc |= json_object_set_new(o, "details", details);
    rc |= json_object_set_new(o, "context", ctx);
    rc |= json_object_set_new(o, "root_cause", jstr(a->root_cause));
    rc |= json_object_set_new(o, "remediation", rem);
    rc |= json_object_set_new(o, "related_alerts", rel);
    rc |= json_object_set_new(o, "runbook_url", jstr(a->runbook_url));
    rc |= json_object_set_new(o, "status", json_string(status_name(a->status)));
    rc |= json_object_set_new(o, "occurrences", json_integer(a->occurrences));
    rc |= set_time(o, "last_seen", a->last_seen_ns);
    if (a->status == SN_ALERT_RESOLVED)
        rc |= set_time(o, "resolved_at", a->resolved_at_ns);
    if (rc != 0) {
        /* details, ctx, rem and rel were stolen by o (set_new steals even on failure). */
        json_decref(o);
        return NULL;
    }
    return o;

out_free_all:
    json_decref(o);
    json_decref(details);
    json_decref(ctx);
    json_decref(rem);
    json_decref(rel);
    return NULL;
}

/* Copies the string member key (required unless `optional`) into dst; empty allowed unless
 * `nonempty`. Returns false (with err) when missing, not a string or too long. */
static bool get_str(const json_t *o, const char *key, char *dst, size_t dstsize, bool optional,
                    bool nonempty, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL && optional) {
        dst[0] = '\0';
        return true;
    }
    if (!json_is_string(v)) {
        snprintf(err, errlen, "alert: %s must be a string", key);
        return false;
    }
    size_t len = json_string_length(v);
    if (len >= dstsize || memchr(json_string_value(v), '\0', len) != NULL) {
        snprintf(err, errlen, "alert: %s is longer than %zu bytes", key, dstsize - 1);
        return false;
    }
    if (nonempty && len == 0) {
        snprintf(err, errlen, "alert: %s must not be empty", key);
        return false;
    }
    memcpy(dst, json_string_value(v), len + 1);
    return true;
}

/* Reads an optional number member into *out (NAN when absent). */
static bool get_num(const json_t *o, const char *key, double *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL) {
        *out = NAN;
        return true;
    }
    if (!json_is_number(v)) {
        snprintf(err, errlen, "alert: details.%s must be a number", key);
        return false;
    }
    *out = json_number_value(v);
    return true;
}

static bool get_time(const json_t *o, const char *key, int64_t *ns, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || sn_alert_parse_time(json_string_value(v), ns) != 0) {
        snprintf(err, errlen, "alert: %s must be an RFC 3339 time", key);
        return false;
    }
    return true;
}

/* True when s is a UUID in 8-4-4-4-12 hex form. */
static bool uuid_shaped(const char *s)
{
    if (strlen(s) != SN_ALERT_ID_LEN)
        return false;
    for (int i = 0; i < SN_ALERT_ID_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int sn_alert_from_json(const json_t *obj, sn_alert *out, char *err, size_t errlen)
{
    sn_alert a;
    memset(&a, 0, sizeof a);
    char name[64];
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "alert: not a JSON object");
        return -EINVAL;
    }
    if (!get_str(obj, "alert_id", a.alert_id, sizeof a.alert_id, false, true, err, errlen))
        return -EINVAL;
    if (!uuid_shaped(a.alert_id)) {
        snprintf(err, errlen, "alert: alert_id must be a UUID");
        return -EINVAL;
    }
    if (!get_time(obj, "timestamp", &a.timestamp_ns, err, errlen))
        return -EINVAL;
    if (!get_str(obj, "severity", name, sizeof name, false, true, err, errlen))
        return -EINVAL;
    if (sn_severity_from_name(name, &a.severity) != 0 || a.severity == SN_SEV_NONE) {
        snprintf(err, errlen, "alert: severity must be low, medium, high or critical");
        return -EINVAL;
    }
    if (!get_str(obj, "anomaly_type", name, sizeof name, false, true, err, errlen))
        return -EINVAL;
    if (sn_anomaly_type_from_name(name, &a.anomaly_type) != 0) {
        snprintf(err, errlen, "alert: anomaly_type is unknown");
        return -EINVAL;
    }
    if (!get_str(obj, "service_name", a.service, sizeof a.service, false, true, err, errlen) ||
        !get_str(obj, "model", a.model, sizeof a.model, false, false, err, errlen) ||
        !get_str(obj, "detection_method", name, sizeof name, false, true, err, errlen))
        return -EINVAL;
    if (sn_detector_from_name(name, &a.method) != 0) {
        snprintf(err, errlen, "alert: detection_method is unknown");
        return -EINVAL;
    }
    json_t *conf = json_object_get(obj, "confidence");
    if (!json_is_number(conf) || !(json_number_value(conf) >= 0.0) ||
        json_number_value(conf) > 1.0) {
        snprintf(err, errlen, "alert: confidence must be a number in [0, 1]");
        return -EINVAL;
    }
    a.confidence = json_number_value(conf);

    json_t *det = json_object_get(obj, "details");
    if (!json_is_object(det)) {
        snprintf(err, errlen, "alert: details must be an object");
        return -EINVAL;
    }
    if (!get_str(det, "metric", name, sizeof name, false, true, err, errlen))
        return -EINVAL;
    if (sn_metric_from_name(name, &a.metric) != 0) {
        snprintf(err, errlen, "alert: details.metric is unknown");
        return -EINVAL;
    }
    if (!get_num(det, "value", &a.value, err, errlen) ||
        !get_num(det, "baseline", &a.baseline, err, errlen) ||
        !get_num(det, "threshold", &a.threshold, err, errlen) ||
        !get_num(det, "deviation_sigma", &a.deviation_sigma, err, errlen))
        return -EINVAL;
    json_t *calls = json_object_get(det, "calls");
    json_t *held = json_object_get(det, "sidecar_suppressed");
    if ((calls != NULL && (!json_is_integer(calls) || json_integer_value(calls) < 0)) ||
        (held != NULL && (!json_is_integer(held) || json_integer_value(held) < 0))) {
        snprintf(err, errlen,
                 "alert: details.calls and details.sidecar_suppressed must be "
                 "integers >= 0");
        return -EINVAL;
    }
    a.calls = calls != NULL ? (uint64_t)json_integer_value(calls) : 0;
    a.sidecar_suppressed = held != NULL ? (uint64_t)json_integer_value(held) : 0;

    json_t *ctx = json_object_get(obj, "context");
    if (!json_is_object(ctx)) {
        snprintf(err, errlen, "alert: context must be an object");
        return -EINVAL;
    }
    json_t *tid = json_object_get(ctx, "trace_id");
    if (tid != NULL) {
        const char *t = json_string_value(tid);
        bool ok = t != NULL && json_string_length(tid) == 32;
        for (int i = 0; ok && i < 16; i++) {
            int hi = hexval(t[2 * i]), lo = hexval(t[2 * i + 1]);
            ok = hi >= 0 && lo >= 0;
            a.trace_id[i] = (uint8_t)(ok ? hi << 4 | lo : 0);
        }
        if (!ok) {
            snprintf(err, errlen, "alert: context.trace_id must be 32 hex digits");
            return -EINVAL;
        }
    }
    if (!get_str(ctx, "region", a.region, sizeof a.region, true, false, err, errlen) ||
        !get_str(ctx, "time_window", a.time_window, sizeof a.time_window, true, false, err,
                 errlen) ||
        !get_str(ctx, "source", name, sizeof name, false, true, err, errlen))
        return -EINVAL;
    if (strcmp(name, "sidecar") == 0)
        a.source = SN_SOURCE_SIDECAR;
    else if (strcmp(name, "aggregator") == 0)
        a.source = SN_SOURCE_AGGREGATOR;
    else {
        snprintf(err, errlen, "alert: context.source must be sidecar or aggregator");
        return -EINVAL;
    }

    if (!get_str(obj, "root_cause", a.root_cause, sizeof a.root_cause, false, false, err, errlen))
        return -EINVAL;
    json_t *rem = json_object_get(obj, "remediation");
    if (!json_is_array(rem) || json_array_size(rem) > SN_ALERT_REMEDIATION_MAX) {
        snprintf(err, errlen, "alert: remediation must be an array of at most %d strings",
                 SN_ALERT_REMEDIATION_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < json_array_size(rem); i++) {
        json_t *v = json_array_get(rem, i);
        if (!json_is_string(v) || json_string_length(v) >= SN_ALERT_TEXT_MAX) {
            snprintf(err, errlen, "alert: remediation[%zu] must be a string under %d bytes", i,
                     SN_ALERT_TEXT_MAX);
            return -EINVAL;
        }
        memcpy(a.remediation[i], json_string_value(v), json_string_length(v) + 1);
        a.nremediation++;
    }
    json_t *rel = json_object_get(obj, "related_alerts");
    if (!json_is_array(rel) || json_array_size(rel) > SN_ALERT_RELATED_MAX) {
        snprintf(err, errlen, "alert: related_alerts must be an array of at most %d ids",
                 SN_ALERT_RELATED_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < json_array_size(rel); i++) {
        const char *id = json_string_value(json_array_get(rel, i));
        if (id == NULL || !uuid_shaped(id)) {
            snprintf(err, errlen, "alert: related_alerts[%zu] must be a UUID", i);
            return -EINVAL;
        }
        memcpy(a.related[i], id, SN_ALERT_ID_LEN + 1);
        a.nrelated++;
    }
    if (!get_str(obj, "runbook_url", a.runbook_url, sizeof a.runbook_url, true, false, err,
                 errlen) ||
        !get_str(obj, "status", name, sizeof name, false, true, err, errlen))
        return -EINVAL;
    if (strcmp(name, "firing") == 0)
        a.status = SN_ALERT_FIRING;
    else if (strcmp(name, "resolved") == 0)
        a.status = SN_ALERT_RESOLVED;
    else {
        snprintf(err, errlen, "alert: status must be firing or resolved");
        return -EINVAL;
    }
    json_t *occ = json_object_get(obj, "occurrences");
    if (!json_is_integer(occ) || json_integer_value(occ) < 1 ||
        json_integer_value(occ) > UINT32_MAX) {
        snprintf(err, errlen, "alert: occurrences must be an integer >= 1");
        return -EINVAL;
    }
    a.occurrences = (uint32_t)json_integer_value(occ);
    a.last_seen_ns = a.timestamp_ns;
    if (json_object_get(obj, "last_seen") != NULL &&
        !get_time(obj, "last_seen", &a.last_seen_ns, err, errlen))
        return -EINVAL;
    if (a.status == SN_ALERT_RESOLVED) {
        a.resolved_at_ns = a.last_seen_ns;
        if (json_object_get(obj, "resolved_at") != NULL &&
            !get_time(obj, "resolved_at", &a.resolved_at_ns, err, errlen))
            return -EINVAL;
        if (a.resolved_at_ns <= 0)
            a.resolved_at_ns = 1;
    }
    *out = a;
    return 0;
}
