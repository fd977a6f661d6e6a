/*
 * backoff.h -- exponential backoff with full jitter, as a pure function.
 *
 * Used by everything that retries a remote peer: the sidecar's shipper (batches to the
 * aggregator), the OTLP tee and alert delivery. sn_backoff_next reads no clock and draws no
 * random numbers: the caller passes 64 random bits to each call (sn_backoff_random gives some)
 * and sleeps (arms a timer) for the delay it returns, so tests are exact and the same code
 * serves every thread.
 *
 * The schedule is "full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter") with
 * a floor: after the n-th consecutive failure the ceiling is
 *
 *     ceiling(n) = min(max, initial x multiplier^(n-1))
 *
 * and the delay is drawn uniformly from [initial, ceiling(n)]. So the first retry waits exactly
 * `initial`, the ceiling grows geometrically whatever the draws were (unlike "decorrelated"
 * jitter, whose delays with a multiplier of 2 drift back towards `initial`), a crowd of clients
 * that failed together spreads over the whole range, and no retry comes sooner than `initial`,
 * so a peer that just refused is not hammered. A success resets the state.
 */
#ifndef SN_BACKOFF_H
#define SN_BACKOFF_H

#include <stdint.h>

#define SN_BACKOFF_INITIAL_MS_DEFAULT 100u
#define SN_BACKOFF_MAX_MS_DEFAULT     30000u
#define SN_BACKOFF_MULTIPLIER_DEFAULT 2.0
#define SN_BACKOFF_MS_LIMIT           (24u * 3600u * 1000u) /* the largest max accepted: a day */

typedef struct sn_backoff_config {
    uint32_t initial_ms; /* the first delay and the floor of every delay; > 0 */
    uint32_t max_ms;     /* the cap; >= initial_ms, <= SN_BACKOFF_MS_LIMIT */
    double multiplier;   /* growth of the ceiling per failure; >= 1.0 (1.0: constant delay) */
} sn_backoff_config;

/* The state of one retrying peer. Zero-initialised (or sn_backoff_reset) means "no failure
 * since the last success". Plain data: copy it, keep it in any struct. */
typedef struct sn_backoff {
    uint32_t attempts;   /* failures since the last reset (saturates) */
    uint32_t ceiling_ms; /* the current ceiling; 0 before the first failure */
} sn_backoff;

/* Fills cfg with the defaults: 100 ms, 30 s, x2. */
void sn_backoff_config_defaults(sn_backoff_config *cfg);

/* NULL when cfg is usable, else a static one-line message naming the bad field
 * ("backoff: max_ms must be >= initial_ms"). */
const char *sn_backoff_config_validate(const sn_backoff_config *cfg);

/* Forgets past failures (call on success). */
void sn_backoff_reset(sn_backoff *st);

/* Records one more failure and returns how long to wait before the next attempt, in
 * milliseconds, always within [initial_ms, max_ms]. `random` is 64 uniformly random bits from
 * the caller (e.g. a per-thread xorshift seeded from getrandom). With an invalid cfg the
 * values are clamped (initial 0 -> 1, max < initial -> initial, multiplier < 1 -> 1) rather
 * than failing: a retry loop always gets a usable delay. Never fails. */
uint32_t sn_backoff_next(sn_backoff *st, const sn_backoff_config *cfg, uint64_t random);

/* 64 random bits for sn_backoff_next (or any jitter): from getrandom without blocking, else the
 * clock scrambled. Any thread; never fails. */
uint64_t sn_backoff_random(void);

#endif
