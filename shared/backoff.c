/*
 * backoff.c -- full-jitter exponential backoff (see backoff.h).
 */
#include "backoff.h"

#include <math.h>
#include <stddef.h>
#include <sys/random.h>
#include <time.h>

void sn_backoff_config_defaults(sn_backoff_config *cfg)
{
    cfg->initial_ms = SN_BACKOFF_INITIAL_MS_DEFAULT;
    cfg->max_ms = SN_BACKOFF_MAX_MS_DEFAULT;
    cfg->multiplier = SN_BACKOFF_MULTIPLIER_DEFAULT;
}

const char *sn_backoff_config_validate(const sn_backoff_config *cfg)
{
    if (cfg->initial_ms == 0)
        return "backoff: initial_ms must be > 0";
    if (cfg->max_ms > SN_BACKOFF_MS_LIMIT)
        return "backoff: max_ms must be <= 86400000 (a day)";
    if (cfg->max_ms < cfg->initial_ms)
        return "backoff: max_ms must be >= initial_ms";
    if (!(cfg->multiplier >= 1.0) || !isfinite(cfg->multiplier))
        return "backoff: multiplier must be a finite number >= 1";
    return NULL;
}

void sn_backoff_reset(sn_backoff *st)
{
    st->attempts = 0;
    st->ceiling_ms = 0;
}

uint32_t sn_backoff_next(sn_backoff *st, const sn_backoff_config *cfg, uint64_t random)
{
    uint32_t lo = cfg->initial_ms > 0 ? cfg->initial_ms : 1;
    uint32_t cap = cfg->max_ms;
    if (cap > SN_BACKOFF_MS_LIMIT)
        cap = SN_BACKOFF_MS_LIMIT;
    if (cap < lo)
        cap = lo;
    double mult = cfg->multiplier >= 1.0 && isfinite(cfg->multiplier) ? cfg->multiplier : 1.0;

    if (st->attempts < UINT32_MAX)
        st->attempts++;
    if (st->ceiling_ms == 0) {
        st->ceiling_ms = lo; /* the first failure waits exactly `initial` */
    } else {
        /* previous ceiling x multiplier, in double so it cannot wrap; the cap bounds it. */
        double next = (double)st->ceiling_ms * mult;
        st->ceiling_ms = next >= (double)cap ? cap : (uint32_t)next;
    }
    if (st->ceiling_ms < lo)
        st->ceiling_ms = lo; /* a config changed between calls */
    if (st->ceiling_ms > cap)
        st->ceiling_ms = cap;
    uint64_t span = (uint64_t)(st->ceiling_ms - lo) + 1u;
    return lo + (uint32_t)(random % span);
}

uint64_t sn_backoff_random(void)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) * 0x9E3779B97F4A7C15ull;
    }
    return r;
}
