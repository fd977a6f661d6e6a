/*
 * price.c -- the versioned model price table: YAML loading, rule lookup with a per-thread cache,
 * and the cost rule.
 *
 * Shape of a loaded table (immutable after sn_price_table_parse returns):
 *
 *   rules[0..nrules)        one per distinct (pattern, provider), in order of first appearance;
 *                           each owns a compiled sn_pattern (or a regex_t for a pattern
 *                           outside its subset) and a slice of versions
 *   versions[0..nentries)   every file entry, grouped by rule, each rule's slice sorted by
 *                           effective date, no two with the same date
 *
 * Invariant: rules[r].first + rules[r].count <= nentries, and the slices tile versions[] in rule
 * order. The lookup cache lives in thread-local storage and names tables by a process-unique id,
 * so a destroyed table's slots can never be hit by a later table at the same address.
 */
#include "price.h"

#include "bytes.h"
#include "pattern.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define PROVIDER_MAX 64 /* bytes of a rule's provider, including the NUL */
#define FIELD_MAX    48 /* bytes of a field path in an error message ("prices[1023].cache_write") */

/* The shipped prices.yaml, turned into a C array by cmake/EmbedFile.cmake at build time. */
extern const unsigned char sn_price_default_yaml[];
extern const size_t sn_price_default_yaml_len;

typedef struct price_version {
    sn_price price;
    uint32_t rule; /* index into rules[] */
    uint32_t line; /* where the entry starts in the file, for duplicate-date messages */
} price_version;

typedef struct price_rule {
    char pattern[SN_PRICE_MAX_PATTERN + 1];
    char provider[PROVIDER_MAX]; /* "" matches any provider */
    sn_pattern *pat;             /* the pattern in sn_pattern's subset, or NULL: re is used */
    regex_t re;
    bool re_compiled;
    uint32_t first; /* first index of this rule's versions */
    uint32_t count;
} price_rule;

struct sn_price_table {
    uint64_t id; /* process-unique, never 0: the cache's key for this table */
    char version[SN_PRICE_VERSION_MAX];
    price_rule *rules;
    size_t nrules;
    price_version *versions;
    size_t nentries;
};

/* --- per-thread lookup cache --- */

#define CACHE_MODEL_MAX 128 /* models this long or longer bypass the cache */

typedef struct cache_slot {
    uint64_t table_id; /* 0: empty */
    uint32_t hash;
    int32_t rule; /* -1: no rule matches */
    uint8_t model_len;
    uint8_t provider_len;
    char key[CACHE_MODEL_MAX + PROVIDER_MAX]; /* model bytes then provider bytes, no NULs */
} cache_slot;

static _Thread_local cache_slot cache_slots[SN_PRICE_CACHE_SLOTS];
static _Thread_local cache_slot *cache_last; /* the slot of the last look-up, or NULL */
static _Thread_local sn_price_cache_stats cache_stats;
static atomic_uint_fast64_t next_table_id = 1;

/* --- errors --- */

/* Writes "name:line: field: message" into err (at most errsize bytes, always terminated). A line
 * of 0 and a NULL field are left out. Messages quote the file's text, which may hold line breaks
 * (a quoted or block scalar): control characters become '?', so the message stays one line. */
__attribute__((format(printf, 6, 7))) static void set_error(char *err, size_t errsize,
                                                            const char *name, size_t line,
                                                            const char *field, const char *fmt, ...)
{
    if (err == NULL || errsize == 0)
        return;
    int n;
    if (line > 0 && field != NULL)
        n = snprintf(err, errsize, "%s:%zu: %s: ", name, line, field);
    else if (line > 0)
        n = snprintf(err, errsize, "%s:%zu: ", name, line);
    else
        n = snprintf(err, errsize, "%s: ", name);
    if (n < 0 || (size_t)n >= errsize)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errsize - (size_t)n, fmt, ap);
    va_end(ap);
    for (char *c = err; *c != '\0'; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
}

/* --- small parsers for scalar values --- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Parses exactly "YYYY-MM-DD" (1970-01-01 .. 2262-04-11, the last day whose midnight fits in int64
 * Unix nanoseconds) into UTC midnight in Unix nanoseconds. Returns false on any other text, an
 * impossible date or one out of that range. */
static bool parse_date(const char *s, size_t len, int64_t *out)
{
    static const unsigned mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (len != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (size_t i = 0; i < 10; i++) {
        if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
            return false;
    }
    int64_t y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    unsigned m = (unsigned)((s[5] - '0') * 10 + (s[6] - '0'));
    unsigned d = (unsigned)((s[8] - '0') * 10 + (s[9] - '0'));
    if (y < 1970 || y > 2999 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (m == 2 && d == 29 && !leap)
        return false;
    int64_t days = days_from_civil(y, m, d);
    if (days > INT64_MAX / (86400 * INT64_C(1000000000)))
        return false;
    *out = days * 86400 * INT64_C(1000000000);
    return true;
}

/* Parses a price in USD per million tokens: a finite decimal number in [0, SN_PRICE_MAX_USD_PER_M]
 * and nothing else. Returns false otherwise. */
static bool parse_price(const char *s, size_t len, double *out)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    /* strtod would also take hex, "inf" and "nan": allow only digits, one dot and an exponent. */
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (!isdigit((unsigned char)c) && c != '.' && c != 'e' && c != 'E' && c != '+' && c != '-')
            return false;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(buf, &end);
    if (errno != 0 || end != buf + len || !isfinite(v) || v < 0.0 || v > SN_PRICE_MAX_USD_PER_M)
        return false;
    *out = v;
    return true;
}

/* --- YAML document walking --- */

typedef struct parse_ctx {
    yaml_document_t *doc;
    const char *name;
    char *err;
    size_t errsize;
} parse_ctx;

/* 1-based line of a node. */
static size_t node_line(const yaml_node_t *n)
{
    return n->start_mark.line + 1;
}

/* The scalar text of node n, or false (with an error naming field) when n is not a scalar. */
static bool scalar(parse_ctx *c, const yaml_node_t *n, const char *field, const char **s,
                   size_t *len)
{
    if (n == NULL || n->type != YAML_SCALAR_NODE) {
        set_error(c->err, c->errsize, c->name, n ? node_line(n) : 0, field,
                  "expected a single value");
        return false;
    }
    *s = (const char *)n->data.scalar.value;
    *len = n->data.scalar.length;
    return true;
}

/* Compares a scalar key node with a literal. */
static bool key_is(const yaml_node_t *k, const char *lit)
{
    size_t n = strlen(lit);
    return k->data.scalar.length == n && memcmp(k->data.scalar.value, lit, n) == 0;
}

/* One file entry while parsing: its pattern and provider before they become a rule. */
typedef struct raw_entry {
    char pattern[SN_PRICE_MAX_PATTERN + 1];
    char provider[PROVIDER_MAX];
    sn_price price;
    uint32_t line;
} raw_entry;

/* Reads a string field into dst (dstsize bytes, at least 1 byte of text). */
static bool string_field(parse_ctx *c, const yaml_node_t *v, const char *field, char *dst,
                         size_t dstsize)
{
    const char *s;
    size_t len;
    if (!scalar(c, v, field, &s, &len))
        return false;
    if (len == 0) {
        set_error(c->err, c->errsize, c->name, node_line(v), field, "must not be empty");
        return false;
    }
    if (len >= dstsize || memchr(s, '\0', len) != NULL) {
        set_error(c->err, c->errsize, c->name, node_line(v), field,
                  "longer than %zu bytes or not text", dstsize - 1);
        return false;
    }
    memcpy(dst, s, len);
    dst[len] = '\0';
    return true;
}

/* Reads a price field into *out. */
static bool price_field(parse_ctx *c, const yaml_node_t *v, const char *field, double *out)
{
    const char *s;
    size_t len;
    if (!scalar(c, v, field, &s, &len))
        return false;
    if (!parse_price(s, len, out)) {
        set_error(c->err, c->errsize, c->name, node_line(v), field,
                  "not a price in USD per million tokens (a number from 0 to %g): \"%.*s\"",
                  SN_PRICE_MAX_USD_PER_M, (int)(len > 40 ? 40 : len), s);
        return false;
    }
    return true;
}

/* Reads a date field (YYYY-MM-DD) into *out. */
static bool date_field(parse_ctx *c, const yaml_node_t *v, const char *field, int64_t *out)
{
    const char *s;
    size_t len;
    if (!scalar(c, v, field, &s, &len))
        return false;
    if (!parse_date(s, len, out)) {
        set_error(c->err, c->errsize, c->name, node_line(v), field,
                  "not a date YYYY-MM-DD: \"%.*s\"", (int)(len > 40 ? 40 : len), s);
        return false;
    }
    return true;
}

/* Parses one entry of `prices:` (index i) into *e. Fails with an error naming the entry's line and
 * field: a field of the wrong shape, an unknown or repeated key, or a required one missing. */
static bool parse_entry(parse_ctx *c, const yaml_node_t *n, size_t i, raw_entry *e)
{
    char field[FIELD_MAX];
    enum {
        F_MODEL = 1,
        F_PROVIDER = 2,
        F_INPUT = 4,
        F_OUTPUT = 8,
        F_READ = 16,
        F_WRITE = 32,
        F_EFFECTIVE = 64,
        F_NOTE = 128
    };
    unsigned seen = 0;

    snprintf(field, sizeof field, "prices[%zu]", i);
    if (n->type != YAML_MAPPING_NODE) {
        set_error(c->err, c->errsize, c->name, node_line(n), field,
                  "expected a mapping with model, input, output and effective");
        return false;
    }
    memset(e, 0, sizeof *e);
    e->price.cache_read = NAN;
    e->price.cache_write = NAN;
    e->line = (uint32_t)node_line(n);

    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (k == NULL || k->type != YAML_SCALAR_NODE) {
            set_error(c->err, c->errsize, c->name, k ? node_line(k) : e->line, field,
                      "keys must be plain names");
            return false;
        }
        static const struct {
            const char *name;
            unsigned bit;
        } keys[] = {{"model", F_MODEL},         {"provider", F_PROVIDER}, {"input", F_INPUT},
                    {"output", F_OUTPUT},       {"cache_read", F_READ},   {"cache_write", F_WRITE},
                    {"effective", F_EFFECTIVE}, {"note", F_NOTE}};
        unsigned bit = 0;
        for (size_t j = 0; j < sizeof keys / sizeof keys[0]; j++) {
            if (key_is(k, keys[j].name)) {
                bit = keys[j].bit;
                snprintf(field, sizeof field, "prices[%zu].%s", i, keys[j].name);
                break;
            }
        }
        if (bit == 0) {
            snprintf(field, sizeof field, "prices[%zu].%.*s", i,
                     (int)(k->data.scalar.length > 24 ? 24 : k->data.scalar.length),
                     (const char *)k->data.scalar.value);
            set_error(c->err, c->errsize, c->name, node_line(k), field,
                      "unknown key (known: model, provider, input, output, cache_read, "
                      "cache_write, effective, note)");
            return false;
        }
        if (seen & bit) {
            set_error(c->err, c->errsize, c->name, node_line(k), field, "given twice");
            return false;
        }
        seen |= bit;
        bool ok = true;
        const char *s;
        size_t len;
        switch (bit) {
        case F_MODEL:
            ok = string_field(c, v, field, e->pattern, sizeof e->pattern);
            break;
        case F_PROVIDER:
            ok = string_field(c, v, field, e->provider, sizeof e->provider);
            break;
        case F_INPUT:
            ok = price_field(c, v, field, &e->price.input);
            break;
        case F_OUTPUT:
            ok = price_field(c, v, field, &e->price.output);
            break;
        case F_READ:
            ok = price_field(c, v, field, &e->price.cache_read);
            break;
        case F_WRITE:
            ok = price_field(c, v, field, &e->price.cache_write);
            break;
        case F_EFFECTIVE:
            ok = date_field(c, v, field, &e->price.effective_unix_nano);
            break;
        case F_NOTE:
            ok = scalar(c, v, field, &s, &len);
            break;
        default:
            break;
        }
        if (!ok)
            return false;
    }
    static const struct {
        unsigned bit;
        const char *name;
    } required[] = {
        {F_MODEL, "model"}, {F_INPUT, "input"}, {F_OUTPUT, "output"}, {F_EFFECTIVE, "effective"}};
    for (size_t j = 0; j < sizeof required / sizeof required[0]; j++) {
        if (!(seen & required[j].bit)) {
            snprintf(field, sizeof field, "prices[%zu].%s", i, required[j].name);
            set_error(c->err, c->errsize, c->name, e->line, field, "missing (required)");
            return false;
        }
    }
    return true;
}

/* Frees a table's rules (their compiled patterns) and arrays; t itself stays. */
static void free_contents(sn_price_table *t)
{
    for (size_t r = 0; r < t->nrules; r++) {
        sn_pattern_free(t->rules[r].pat);
        if (t->rules[r].re_compiled)
            regfree(&t->rules[r].re);
    }
    free(t->rules);
    free(t->versions);
    t->rules = NULL;
    t->versions = NULL;
    t->nrules = 0;
}

/* Turns the parsed entries into rules and version slices: groups entries by (pattern, provider),
 * compiles each distinct pattern once, and sorts each rule's prices by date. Fails on a bad
 * pattern or two prices of one rule with the same date. */
static bool build_rules(parse_ctx *c, sn_price_table *t, const raw_entry *e, size_t n)
{
    char field[FIELD_MAX];
    uint32_t *rule_of = NULL;
    bool ok = false;

    t->rules = calloc(n ? n : 1, sizeof *t->rules);
    t->versions = calloc(n ? n : 1, sizeof *t->versions);
    rule_of = calloc(n ? n : 1, sizeof *rule_of);
    if (t->rules == NULL || t->versions == NULL || rule_of == NULL) {
        set_error(c->err, c->errsize, c->name, 0, NULL, "out of memory");
        goto out_free_rule_of;
    }
    for (size_t i = 0; i < n; i++) {
        size_t r = 0;
        while (r < t->nrules && (strcmp(t->rules[r].pattern, e[i].pattern) != 0 ||
                                 strcasecmp(t->rules[r].provider, e[i].provider) != 0))
            r++;
        if (r == t->nrules) {
            price_rule *rule = &t->rules[t->nrules];
            memcpy(rule->pattern, e[i].pattern, sizeof rule->pattern);
            memcpy(rule->provider, e[i].provider, sizeof rule->provider);
            int rc = regcomp(&rule->re, rule->pattern, REG_EXTENDED | REG_ICASE | REG_NOSUB);
            if (rc != 0) {
                char msg[128];
                regerror(rc, &rule->re, msg, sizeof msg);
                snprintf(field, sizeof field, "prices[%zu].model", i);
                set_error(c->err, c->errsize, c->name, e[i].line, field,
                          "bad regular expression \"%s\": %s", e[i].pattern, msg);
                goto out_free_rule_of;
            }
            /* regcomp() above checked the pattern (its errors are the ones users see); a pattern
             * in sn_pattern's subset is matched by it instead, which keeps no DFA tables. */
            rule->pat = sn_pattern_compile(rule->pattern);
            if (rule->pat != NULL)
                regfree(&rule->re);
            else
                rule->re_compiled = true;
            t->nrules++;
        }
        rule_of[i] = (uint32_t)r;
        t->rules[r].count++;
    }
    /* Slices in rule order, then entries placed in file order and sorted by date (insertion
     * sort: a rule has a handful of dates). */
    uint32_t at = 0;
    for (size_t r = 0; r < t->nrules; r++) {
        t->rules[r].first = at;
        at += t->rules[r].count;
        t->rules[r].count = 0;
    }
    for (size_t i = 0; i < n; i++) {
        price_rule *rule = &t->rules[rule_of[i]];
        price_version *vs = &t->versions[rule->first];
        size_t j = rule->count++;
        while (j > 0 && vs[j - 1].price.effective_unix_nano > e[i].price.effective_unix_nano) {
            vs[j] = vs[j - 1];
            j--;
        }
        if (j > 0 && vs[j - 1].price.effective_unix_nano == e[i].price.effective_unix_nano) {
            snprintf(field, sizeof field, "prices[%zu].effective", i);
            set_error(c->err, c->errsize, c->name, e[i].line, field,
                      "this model already has a price from that date (line %u)", vs[j - 1].line);
            goto out_free_rule_of;
        }
        vs[j].price = e[i].price;
        vs[j].rule = rule_of[i];
        vs[j].line = e[i].line;
    }
    t->nentries = n;
    ok = true;
out_free_rule_of:
    free(rule_of);
    return ok;
}

/* Walks the root mapping: version, currency, as_of, source, prices. Fills t or fails with an
 * error naming the line and field. */
static bool parse_root(parse_ctx *c, sn_price_table *t)
{
    raw_entry *entries = NULL;
    size_t nentries = 0;
    bool have_version = false, have_prices = false, ok = false;
    yaml_node_t *root = yaml_document_get_root_node(c->doc);

    if (root == NULL || root->type != YAML_MAPPING_NODE) {
        set_error(c->err, c->errsize, c->name, root ? node_line(root) : 1, NULL,
                  "expected a mapping with version and prices");
        return false;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        const char *s;
        size_t len;
        if (k == NULL || k->type != YAML_SCALAR_NODE) {
            set_error(c->err, c->errsize, c->name, k ? node_line(k) : 1, NULL,
                      "keys must be plain names");
            goto out_free_entries;
        }
        if (key_is(k, "version")) {
            if (have_version) {
                set_error(c->err, c->errsize, c->name, node_line(k), "version", "given twice");
                goto out_free_entries;
            }
            if (!string_field(c, v, "version", t->version, sizeof t->version))
                goto out_free_entries;
            have_version = true;
        } else if (key_is(k, "currency")) {
            if (!scalar(c, v, "currency", &s, &len))
                goto out_free_entries;
            if (len != 3 || memcmp(s, "USD", 3) != 0) {
                set_error(c->err, c->errsize, c->name, node_line(v), "currency",
                          "only USD is supported");
                goto out_free_entries;
            }
        } else if (key_is(k, "as_of")) {
            int64_t ignored;
            if (!date_field(c, v, "as_of", &ignored))
                goto out_free_entries;
        } else if (key_is(k, "source")) {
            if (!scalar(c, v, "source", &s, &len))
                goto out_free_entries;
        } else if (key_is(k, "prices")) {
            if (have_prices) {
                set_error(c->err, c->errsize, c->name, node_line(k), "prices", "given twice");
                goto out_free_entries;
            }
            have_prices = true;
            if (v == NULL || v->type != YAML_SEQUENCE_NODE) {
                set_error(c->err, c->errsize, c->name, v ? node_line(v) : node_line(k), "prices",
                          "expected a list of entries");
                goto out_free_entries;
            }
            size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
            if (n > SN_PRICE_MAX_ENTRIES) {
                set_error(c->err, c->errsize, c->name, node_line(v), "prices",
                          "%zu entries, more than the limit of %d", n, SN_PRICE_MAX_ENTRIES);
                goto out_free_entries;
            }
            entries = calloc(n ? n : 1, sizeof *entries);
            if (entries == NULL) {
                set_error(c->err, c->errsize, c->name, 0, NULL, "out of memory");
                goto out_free_entries;
            }
            for (size_t i = 0; i < n; i++) {
                yaml_node_t *item = yaml_document_get_node(c->doc, v->data.sequence.items.start[i]);
                if (item == NULL || !parse_entry(c, item, i, &entries[i]))
                    goto out_free_entries;
            }
            nentries = n;
        } else {
            set_error(c->err, c->errsize, c->name, node_line(k), "(top level)",
                      "unknown key \"%.*s\" (known: version, currency, as_of, source, prices)",
                      (int)(k->data.scalar.length > 40 ? 40 : k->data.scalar.length),
                      (const char *)k->data.scalar.value);
            goto out_free_entries;
        }
    }
    if (!have_version) {
        set_error(c->err, c->errsize, c->name, node_line(root), "version", "missing (required)");
        goto out_free_entries;
    }
    if (!have_prices) {
        set_error(c->err, c->errsize, c->name, node_line(root), "prices", "missing (required)");
        goto out_free_entries;
    }
    ok = build_rules(c, t, entries, nentries);
out_free_entries:
    free(entries);
    return ok;
}

sn_price_table *sn_price_table_parse(const char *yaml, size_t len, const char *name, char *err,
                                     size_t errsize)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    sn_price_table *t = NULL;
    parse_ctx c = {.doc = &doc, .name = name ? name : "prices", .err = err, .errsize = errsize};

    if (err != NULL && errsize > 0)
        err[0] = '\0';
    if (len > SN_PRICE_MAX_FILE) {
        set_error(err, errsize, c.name, 0, NULL, "larger than %d bytes", SN_PRICE_MAX_FILE);
        return NULL;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        set_error(err, errsize, c.name, 0, NULL, "out of memory");
        return NULL;
    }
    t->id = atomic_fetch_add(&next_table_id, 1);
    if (!yaml_parser_initialize(&parser)) {
        set_error(err, errsize, c.name, 0, NULL, "out of memory");
        goto out_free_table;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        set_error(err, errsize, c.name, parser.problem_mark.line + 1, NULL, "YAML: %s%s%s",
                  parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                  parser.context ? parser.context : "");
        goto out_delete_parser;
    }
    if (!parse_root(&c, t))
        goto out_delete_document;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return t;

out_delete_document:
    yaml_document_delete(&doc);
out_delete_parser:
    yaml_parser_delete(&parser);
out_free_table:
    free_contents(t);
    free(t);
    return NULL;
}

sn_price_table *sn_price_table_load(const char *path, char *err, size_t errsize)
{
    sn_price_table *t = NULL;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        set_error(err, errsize, path, 0, NULL, "cannot open: %s", strerror(errno));
        return NULL;
    }
    buf = malloc((size_t)SN_PRICE_MAX_FILE + 1);
    if (buf == NULL) {
        set_error(err, errsize, path, 0, NULL, "out of memory");
        goto out_close;
    }
    size_t n = fread(buf, 1, (size_t)SN_PRICE_MAX_FILE + 1, f);
    if (ferror(f)) {
        set_error(err, errsize, path, 0, NULL, "read error");
        goto out_free_buf;
    }
    if (n > SN_PRICE_MAX_FILE) {
        set_error(err, errsize, path, 0, NULL, "larger than %d bytes", SN_PRICE_MAX_FILE);
        goto out_free_buf;
    }
    t = sn_price_table_parse(buf, n, path, err, errsize);
out_free_buf:
    free(buf);
out_close:
    fclose(f);
    return t;
}

sn_price_table *sn_price_table_default(char *err, size_t errsize)
{
    return sn_price_table_parse((const char *)sn_price_default_yaml, sn_price_default_yaml_len,
                                "built-in prices.yaml", err, errsize);
}

void sn_price_table_destroy(sn_price_table *t)
{
    if (t == NULL)
        return;
    free_contents(t);
    free(t);
}

const char *sn_price_table_version(const sn_price_table *t)
{
    return t->version;
}

size_t sn_price_table_entries(const sn_price_table *t)
{
    return t->nentries;
}

/* --- lookup --- */

/* The cache's hash of a model (mlen bytes, exact) and a provider (plen bytes, any case: or-ing
 * 0x20 into each byte makes the cases of a letter one, and a few other pairs too, which only
 * costs a comparison). */
static uint32_t key_hash(const char *model, size_t mlen, const char *provider, size_t plen)
{
    uint64_t h = sn_hash_bytes((uint64_t)mlen << 32 | plen, model, mlen, 0);
    h = sn_hash_bytes(h, provider, plen, 0x2020202020202020ull);
    return (uint32_t)(h ^ (h >> 32));
}

/* Runs the patterns: the first rule whose provider (if any) equals provider and whose pattern
 * matches model (mlen bytes, NUL-terminated). Returns its index or -1. */
static int32_t match_rule(const sn_price_table *t, const char *model, size_t mlen,
                          const char *provider)
{
    for (size_t r = 0; r < t->nrules; r++) {
        const price_rule *rule = &t->rules[r];
        if (rule->provider[0] != '\0' && strcasecmp(rule->provider, provider) != 0)
            continue;
        if (rule->pat != NULL ? sn_pattern_match(rule->pat, model, mlen)
                              : regexec(&rule->re, model, 0, NULL, 0) == 0)
            return (int32_t)r;
    }
    return -1;
}

/* Whether slot s holds the rule of (model, provider) in table t: the same model bytes, the
 * provider in any case (usually the same bytes: normalised names; else strncasecmp). */
static inline bool slot_holds(const cache_slot *s, const sn_price_table *t, const char *model,
                              size_t mlen, const char *provider, size_t plen)
{
    return s->table_id == t->id && s->model_len == mlen && s->provider_len == plen &&
           memcmp(s->key, model, mlen) == 0 &&
           (memcmp(s->key + mlen, provider, plen) == 0 ||
            strncasecmp(s->key + mlen, provider, plen) == 0);
}

/* The rule for (model, provider) through the thread's cache; -1 when none matches. mlen and plen
 * are their lengths. */
static int32_t find_rule(const sn_price_table *t, const char *model, size_t mlen,
                         const char *provider, size_t plen)
{
    if (mlen >= CACHE_MODEL_MAX || plen >= PROVIDER_MAX) {
        cache_stats.misses++; /* mlen may be capped (sn_price_rule): the whole name */
        return match_rule(t, model, strlen(model), provider);
    }
    /* The slot of the last look-up first: runs of one model cost no hash. */
    cache_slot *s = cache_last;
    if (s != NULL && slot_holds(s, t, model, mlen, provider, plen)) {
        cache_stats.hits++;
        return s->rule;
    }
    uint32_t h = key_hash(model, mlen, provider, plen);
    s = &cache_slots[h % SN_PRICE_CACHE_SLOTS];
    cache_last = s;
    if (s->hash == h && slot_holds(s, t, model, mlen, provider, plen)) {
        cache_stats.hits++;
        return s->rule;
    }
    cache_stats.misses++;
    if (s->table_id != 0)
        cache_stats.evictions++;
    int32_t r = match_rule(t, model, mlen, provider);
    s->table_id = t->id;
    s->hash = h;
    s->rule = r;
    s->model_len = (uint8_t)mlen;
    s->provider_len = (uint8_t)plen;
    memcpy(s->key, model, mlen);
    memcpy(s->key + mlen, provider, plen);
    return r;
}

int32_t sn_price_rule(const sn_price_table *t, const char *model, const char *provider)
{
    if (t == NULL || model == NULL || model[0] == '\0')
        return -1;
    if (provider == NULL)
        provider = "";
    return find_rule(t, model, strnlen(model, CACHE_MODEL_MAX), provider,
                     strnlen(provider, PROVIDER_MAX));
}

int32_t sn_price_rule_n(const sn_price_table *t, const char *model, size_t mlen,
                        const char *provider, size_t plen)
{
    if (t == NULL || mlen == 0)
        return -1;
    return find_rule(t, model, mlen, provider, plen);
}

void sn_price_rule_price(const sn_price_table *t, int32_t rule, int64_t time_unix_nano,
                         sn_price *out)
{
    const price_rule *r = &t->rules[rule];
    const price_version *vs = &t->versions[r->first];
    /* Latest date at or before the call; the first price for earlier calls; the last for 0. */
    size_t pick = r->count - 1;
    if (time_unix_nano != 0) {
        pick = 0;
        for (size_t i = 1; i < r->count; i++) {
            if (vs[i].price.effective_unix_nano <= time_unix_nano)
                pick = i;
        }
    }
    *out = vs[pick].price;
}

bool sn_price_lookup(const sn_price_table *t, const char *model, const char *provider,
                     int64_t time_unix_nano, sn_price *out)
{
    int32_t r = sn_price_rule(t, model, provider);
    if (r < 0)
        return false;
    sn_price_rule_price(t, r, time_unix_nano, out);
    return true;
}

double sn_price_cost(const sn_price *p, int64_t input, int64_t output, int64_t cache_read,
                     int64_t cache_write)
{
    if (p == NULL || (input < 0 && output < 0))
        return NAN;
    double in = input > 0 ? (double)input : 0.0;
    double out = output > 0 ? (double)output : 0.0;
    double rd = cache_read > 0 ? (double)cache_read : 0.0;
    double wr = cache_write > 0 ? (double)cache_write : 0.0;
    /* input includes cached tokens; when it is smaller than the cached ones it evidently did not
     * (a provider's raw count), and all of it is uncached. */
    double uncached = in >= rd + wr ? in - rd - wr : in;
    double read_price = isnan(p->cache_read) ? p->input : p->cache_read;
    double write_price = isnan(p->cache_write) ? p->input : p->cache_write;
    return (uncached * p->input + rd * read_price + wr * write_price + out * p->output) / 1e6;
}

sn_price_cache_stats sn_price_cache_stats_get(void)
{
    return cache_stats;
}

void sn_price_cache_reset(void)
{
    memset(cache_slots, 0, sizeof cache_slots);
    cache_last = NULL;
    memset(&cache_stats, 0, sizeof cache_stats);
}
