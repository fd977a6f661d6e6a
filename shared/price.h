/*
 * price.h -- the versioned model price table: what one LLM call costs in USD.
 *
 * A table is loaded once (from the YAML file format of docs/llm-facts.md, or from the copy of
 * shared/data/prices.yaml built into the library) and is immutable afterwards, so one table may be
 * shared by every thread. It is a list of rules; a rule is a POSIX extended regular expression on
 * the model name (matched case-insensitively, anchored only as written), an optional provider, and
 * one or more prices each with the date from which it applies. Patterns are checked with regcomp()
 * at load; those in the subset of shared/pattern.h (the shipped table's all are) are then matched
 * by sn_pattern, which keeps none of glibc's DFA tables, the rest by regexec(). The first rule in
 * file order whose pattern (and provider) matches decides; within it the latest price whose
 * effective date is at or before the event's time applies.
 *
 * Looking a model up would mean running every pattern on every event; each thread instead keeps a
 * small fixed-size cache (SN_PRICE_CACHE_SLOTS entries, direct-mapped by a hash of model and
 * provider) of which rule a model resolved to, misses included.
 */
#ifndef SN_PRICE_H
#define SN_PRICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_PRICE_MAX_ENTRIES   1024          /* price entries in one file */
#define SN_PRICE_MAX_PATTERN   256           /* bytes of one model pattern */
#define SN_PRICE_MAX_FILE      (1024 * 1024) /* bytes of one price file */
#define SN_PRICE_VERSION_MAX   64            /* bytes of the table's version, including the NUL */
#define SN_PRICE_CACHE_SLOTS   64            /* per-thread lookup cache entries */
#define SN_PRICE_MAX_USD_PER_M 1.0e6         /* a price above this per million tokens is an error */

/* An opaque, immutable price table. */
typedef struct sn_price_table sn_price_table;

/* One price: USD per million tokens. A cache price the file does not list is NAN, and such tokens
 * are charged at the input price. */
typedef struct sn_price {
    double input;
    double output;
    double cache_read;
    double cache_write;
    int64_t effective_unix_nano; /* the day this price started to apply (UTC midnight) */
} sn_price;

/* Counters of the calling thread's lookup cache (for tests and metrics). */
typedef struct sn_price_cache_stats {
    uint64_t hits;
    uint64_t misses;    /* lookups that ran the patterns (then stored in the cache) */
    uint64_t evictions; /* misses that replaced another model's slot */
} sn_price_cache_stats;

/* Parses a price table from YAML text of len bytes; name is used in error messages (e.g. the
 * file name). Returns a table to free with sn_price_table_destroy, or NULL with a one-line message
 * "name:line: field: what is wrong" in err (errsize bytes, may be 0). */
sn_price_table *sn_price_table_parse(const char *yaml, size_t len, const char *name, char *err,
                                     size_t errsize);

/* Reads and parses the price file at path (at most SN_PRICE_MAX_FILE bytes). Returns a table to
 * free with sn_price_table_destroy, or NULL with a message in err as sn_price_table_parse. */
sn_price_table *sn_price_table_load(const char *path, char *err, size_t errsize);

/* Parses the price table built into the library from shared/data/prices.yaml. Returns a table to
 * free with sn_price_table_destroy, or NULL with a message in err (only if that file is broken,
 * which its unit test rules out). */
sn_price_table *sn_price_table_default(char *err, size_t errsize);

/* Frees a table; NULL is allowed. Cached lookups of it in any thread become unreachable (each
 * table has a unique id, never reused). */
void sn_price_table_destroy(sn_price_table *t);

/* The table's `version:` string; the table owns it. */
const char *sn_price_table_version(const sn_price_table *t);

/* Number of price entries (rule x effective date) in the table. */
size_t sn_price_table_entries(const sn_price_table *t);

/* Finds the price of model (NUL-terminated) offered by provider (normalised name, NULL or "" when
 * unknown) for a call at time_unix_nano (0 when unknown: the latest price applies; before a rule's
 * first date: its first price applies). Returns true and fills *out, or false when no rule
 * matches (model unknown) or model is empty. Uses the calling thread's cache; never allocates. */
bool sn_price_lookup(const sn_price_table *t, const char *model, const char *provider,
                     int64_t time_unix_nano, sn_price *out);

/* sn_price_lookup() in two steps, for callers that remember the rule of a (model, provider)
 * across calls with the same table: the rule's index (through the calling thread's cache), or -1
 * when none matches or model is empty; then the price of a rule (index >= 0 from this table) at
 * time_unix_nano, by sn_price_lookup()'s date rules. */
int32_t sn_price_rule(const sn_price_table *t, const char *model, const char *provider);
void sn_price_rule_price(const sn_price_table *t, int32_t rule, int64_t time_unix_nano,
                         sn_price *out);

/* sn_price_rule() for a caller that knows the lengths: model and provider (both non-NULL,
 * NUL-terminated) with mlen == strlen(model) and plen == strlen(provider). The same result, without
 * measuring them again. */
int32_t sn_price_rule_n(const sn_price_table *t, const char *model, size_t mlen,
                        const char *provider, size_t plen);

/* The cost in USD of one call at price p. Token counts below 0 are unknown. input counts every
 * input token, cached ones included (the OpenTelemetry GenAI rule); cache reads and cache writes
 * are taken out of it and charged at their own prices (the input price when p lists none), so no
 * token is charged twice. Reasoning tokens are part of output. Returns NAN when neither input nor
 * output is known; an unknown part otherwise counts 0. */
double sn_price_cost(const sn_price *p, int64_t input, int64_t output, int64_t cache_read,
                     int64_t cache_write);

/* The calling thread's cache counters since the thread started (or the last reset). */
sn_price_cache_stats sn_price_cache_stats_get(void);

/* Empties the calling thread's cache and zeroes its counters. */
void sn_price_cache_reset(void);

#endif
