/*
 * test_rand.h -- the tests' and benchmarks' pseudo-random draws: xorshift64 from a fixed seed, so
 * that a run draws the same numbers every time (digests and replay tests depend on it). Not for
 * anything that must be unpredictable. Header-only: each program keeps its own state.
 */
#ifndef SN_TEST_RAND_H
#define SN_TEST_RAND_H

#include <math.h>
#include <stdint.h>

/* One stream of draws; its state must not be 0. */
typedef struct sn_test_rand {
    uint64_t s;
} sn_test_rand;

/* The next 64 random bits. */
static inline uint64_t sn_test_rand_u64(sn_test_rand *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

/* Uniform in (0, 1): never 0, so its logarithm is finite. */
static inline double sn_test_rand_unit(sn_test_rand *r)
{
    return ((double)(sn_test_rand_u64(r) >> 11) + 0.5) / 9007199254740992.0;
}

/* Standard normal (Box-Muller, one of the pair). */
static inline double sn_test_rand_normal(sn_test_rand *r)
{
    return sqrt(-2.0 * log(sn_test_rand_unit(r))) * cos(6.283185307179586 * sn_test_rand_unit(r));
}

#endif
