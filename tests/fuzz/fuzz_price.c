/*
 * libFuzzer target for the price table parser (shared/price.c, sn_price_table_parse).
 *
 * Every input must give a table or NULL with a one-line "name:line: ..." message, without a
 * sanitizer finding or a leak. A table answers lookups (regular expressions compiled from the
 * input run here) with prices that are finite, >= 0 and within SN_PRICE_MAX_USD_PER_M.
 */
#include "fuzz_common.h"
#include "price.h"

/* Aborts unless p is a price the parser may accept. */
static void check_price(const sn_price *p)
{
    const double v[] = {p->input, p->output, p->cache_read, p->cache_write};
    for (int i = 0; i < 4; i++) {
        if (i >= 2 && isnan(v[i]))
            continue; /* cache prices may be absent */
        if (!isfinite(v[i]) || v[i] < 0 || v[i] > SN_PRICE_MAX_USD_PER_M)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    err[0] = '\0';
    sn_price_table *t =
        sn_price_table_parse((const char *)data, size, "fuzz.yaml", err, sizeof err);
    if (t == NULL) {
        sn_fuzz_check_err(err, sizeof err);
        return 0;
    }
    sn_fuzz_check_str(sn_price_table_version(t), SN_PRICE_VERSION_MAX);
    if (sn_price_table_entries(t) > SN_PRICE_MAX_ENTRIES)
        abort();
    static const char *const models[] = {
        "gpt-4o", "gpt-4o-mini-2024-07-18", "claude-3-5-sonnet", "gemini-1.5-pro", "a", ""};
    static const char *const providers[] = {NULL, "openai", "anthropic"};
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        for (size_t p = 0; p < sizeof providers / sizeof providers[0]; p++) {
            sn_price pr;
            if (sn_price_lookup(t, models[m], providers[p], 0, &pr))
                check_price(&pr);
            if (sn_price_lookup(t, models[m], providers[p], INT64_C(1700000000000000000), &pr)) {
                check_price(&pr);
                double cost = sn_price_cost(&pr, 1000, 500, 100, 10);
                if (!isfinite(cost) || cost < 0)
                    abort();
            }
        }
    }
    sn_price_table_destroy(t);
    return 0;
}
