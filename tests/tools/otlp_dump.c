/*
 * otlp_dump -- decodes OTLP/protobuf trace requests from files and prints the LLM events.
 *
 *   otlp_dump [--prices default|none|FILE] FILE...
 *
 * One JSON object per LLM event on stdout (unknown numbers are null, ids are lower-case hex),
 * then one line of decoder counts per file on stderr. Exit status: 0 when every file decoded,
 * 1 when a file could not be read or was malformed (the decoder's message on stderr), 2 on bad
 * usage. A test tool: it reads each file whole (at most 64 MiB).
 */
#include "otlp/traces.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DUMP_MAX_FILE (64u * 1024u * 1024u)

/* Reads a whole file into a malloc'd buffer the caller frees. Returns NULL (message on stderr)
 * when it cannot be opened or read, or exceeds DUMP_MAX_FILE. */
static uint8_t *read_file(const char *path, size_t *len)
{
    uint8_t *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "otlp_dump: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 64 * 1024, n = 0;
    buf = malloc(cap);
    if (!buf)
        goto out_oom;
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) {
            if (ferror(f)) {
                fprintf(stderr, "otlp_dump: %s: read error\n", path);
                goto out_free_buf;
            }
            break;
        }
        if (cap >= DUMP_MAX_FILE) {
            fprintf(stderr, "otlp_dump: %s: larger than %u bytes\n", path, DUMP_MAX_FILE);
            goto out_free_buf;
        }
        uint8_t *bigger = realloc(buf, cap * 2);
        if (!bigger)
            goto out_oom;
        buf = bigger;
        cap *= 2;
    }
    fclose(f);
    *len = n;
    return buf;

out_oom:
    fprintf(stderr, "otlp_dump: %s: out of memory\n", path);
out_free_buf:
    free(buf);
    fclose(f);
    return NULL;
}

/* Lower-case hex of n bytes into out (2n+1 bytes). */
static void hex(char *out, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* A count, or null when unknown. */
static json_t *count_or_null(int64_t v)
{
    return v < 0 ? json_null() : json_integer(v);
}

/* A real, or null when unknown (NAN). */
static json_t *real_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static const char *cost_source_name(uint8_t s)
{
    switch (s) {
    case SN_COST_SPAN:
        return "span";
    case SN_COST_PRICE_TABLE:
        return "price_table";
    default:
        return "unknown";
    }
}

/* Prints one event as a JSON line. Exits the program when out of memory. */
static void print_event(const sn_event *ev, void *ud)
{
    (void)ud;
    char tid[33], sid[17];
    hex(tid, ev->trace_id, sizeof(ev->trace_id));
    hex(sid, ev->span_id, sizeof(ev->span_id));
    json_t *conv = json_array();
    if (conv && (ev->conventions & SN_CONV_GENAI))
        json_array_append_new(conv, json_string("genai"));
    if (conv && (ev->conventions & SN_CONV_OPENINFERENCE))
        json_array_append_new(conv, json_string("openinference"));
    if (conv && (ev->conventions & SN_CONV_OPENLLMETRY))
        json_array_append_new(conv, json_string("openllmetry"));
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:o, s:o, s:o, "
        "s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:b, s:o}",
        "service", ev->service, "model", ev->model, "provider", ev->provider, "operation",
        ev->operation, "region", ev->region, "service_version", ev->service_version, "pod", ev->pod,
        "user", ev->user, "error_type", ev->error_type, "finish_reason", ev->finish_reason,
        "trace_id", tid, "span_id", sid, "start_unix_nano", (json_int_t)ev->start_unix_nano,
        "end_unix_nano", (json_int_t)ev->end_unix_nano, "latency_ms", real_or_null(ev->latency_ms),
        "ttft_ms", real_or_null(ev->ttft_ms), "input_tokens", count_or_null(ev->input_tokens),
        "output_tokens", count_or_null(ev->output_tokens), "total_tokens",
        count_or_null(ev->total_tokens), "cache_read_tokens", count_or_null(ev->cache_read_tokens),
        "cache_write_tokens", count_or_null(ev->cache_write_tokens), "reasoning_tokens",
        count_or_null(ev->reasoning_tokens), "cost_usd",
        ev->cost_source == SN_COST_UNKNOWN ? json_null() : real_or_null(ev->cost_usd),
        "cost_source", cost_source_name(ev->cost_source), "is_error", ev->is_error, "conventions",
        conv);
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    if (!line) {
        fprintf(stderr, "otlp_dump: out of memory\n");
        exit(1);
    }
    puts(line);
    free(line);
    json_decref(o);
}

/* Prints a file's decoder counts as a JSON line on stderr. */
static void print_stats(const char *path, const sn_otlp_trace_stats *st)
{
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "file",
                          path, "resource_spans", (json_int_t)st->resource_spans, "scope_spans",
                          (json_int_t)st->scope_spans, "spans", (json_int_t)st->spans, "llm_events",
                          (json_int_t)st->llm_events, "rejected", (json_int_t)st->rejected,
                          "rejected_trace_id", (json_int_t)st->rejected_by[SN_OTLP_REJECT_TRACE_ID],
                          "rejected_span_id", (json_int_t)st->rejected_by[SN_OTLP_REJECT_SPAN_ID],
                          "rejected_time", (json_int_t)st->rejected_by[SN_OTLP_REJECT_TIME],
                          "keys_skipped", (json_int_t)st->keys_skipped, "values_truncated",
                          (json_int_t)st->values_truncated, "values_ignored",
                          (json_int_t)st->values_ignored);
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (line)
        fprintf(stderr, "%s\n", line);
    free(line);
    json_decref(o);
}

static void usage(FILE *to)
{
    fprintf(to, "usage: otlp_dump [--prices default|none|FILE] FILE...\n");
}

int main(int argc, char **argv)
{
    const char *prices_arg = "default";
    int first = 1;
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc > 2 && strcmp(argv[1], "--prices") == 0) {
        prices_arg = argv[2];
        first = 3;
    }
    if (first >= argc) {
        usage(stderr);
        return 2;
    }

    sn_price_table *prices = NULL;
    char perr[256];
    if (strcmp(prices_arg, "default") == 0)
        prices = sn_price_table_default(perr, sizeof(perr));
    else if (strcmp(prices_arg, "none") != 0)
        prices = sn_price_table_load(prices_arg, perr, sizeof(perr));
    if (!prices && strcmp(prices_arg, "none") != 0) {
        fprintf(stderr, "otlp_dump: prices: %s\n", perr);
        return 2;
    }

    int status = 0;
    for (int i = first; i < argc; i++) {
        size_t len;
        uint8_t *buf = read_file(argv[i], &len);
        if (!buf) {
            status = 1;
            continue;
        }
        sn_otlp_trace_stats st;
        char err[SN_OTLP_ERR_MAX];
        if (sn_otlp_decode_traces(buf, len, prices, print_event, NULL, &st, err, sizeof(err)) !=
            0) {
            fprintf(stderr, "otlp_dump: %s: %s\n", argv[i], err);
            status = 1;
        }
        print_stats(argv[i], &st);
        free(buf);
    }
    fflush(stdout);
    sn_price_table_destroy(prices);
    return status;
}
