/*
 * memguard.h -- the sidecar's hard memory limit (`limits.memory`).
 *
 * A timer on the loop reads the process's resident set from /proc/self/statm (one pread, no
 * parsing of /proc/self/status) every `interval_ms` (20 ms) while there is traffic; once a check
 * finds nothing to follow (no request since the previous one, nothing reserved, under the
 * threshold, no trim pending), the next waits twice as long, up to SN_MEMGUARD_IDLE_INTERVAL
 * (1 s), and the first request after that (sn_memguard_reserve, any thread) wakes the timer
 * through a uv_async for a check at once. While it is at or above `refuse_percent` of the
 * limit, every reservation is refused for now and the transports refuse new requests (and
 * requests that grow) with a retryable status (gRPC UNAVAILABLE + RetryInfo, HTTP 503 +
 * Retry-After) until the resident set is back under; the rest of the limit is headroom for the
 * requests already admitted, which the transports and the pipeline bound by themselves
 * (otlp.max_inflight_bytes per stage).
 *
 * Giving memory back: while over, after a reservation was refused for now, and once after a
 * burst when no request arrived for 100 ms, the timer calls malloc_trim(0) (so freed request
 * buffers leave the process instead of staying in malloc's arenas); while over and after a
 * refusal that freeing it can help (below) it first has the kept memory freed
 * (config.reclaim); at most once per 100 ms, and the
 * idle trim only when the anonymous memory grew by more than 1 MiB since the last trim.
 *
 * Besides the resident set, the guard keeps a request budget (below) that the transports reserve
 * from before they hold a request's bytes, so a burst admitted before the timer's next look
 * cannot overshoot the limit.
 *
 * Metrics (when a registry is given): sentinel_sidecar_memory_refused_total{protocol},
 * sentinel_sidecar_memory_limit_bytes, sentinel_sidecar_memory_over_limit (0/1),
 * sentinel_sidecar_memory_trims_total, sentinel_sidecar_memory_budget_bytes,
 * sentinel_sidecar_memory_reserved_bytes, sentinel_sidecar_memory_baseline_bytes,
 * sentinel_sidecar_memory_request_max_bytes (the ceiling, below),
 * sentinel_sidecar_memory_kept_bytes (config.kept). See
 * docs/sidecar.md, "Memory".
 *
 * Threads: create, the timer and close on the loop thread; sn_memguard_over, sn_memguard_reserve
 * and sn_memguard_release from any thread (atomics only).
 */
#ifndef SN_SIDECAR_MEMGUARD_H
#define SN_SIDECAR_MEMGUARD_H

#include "metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define SN_MEMGUARD_DEFAULT_PERCENT  75u
#define SN_MEMGUARD_DEFAULT_INTERVAL 20u   /* ms */
#define SN_MEMGUARD_IDLE_INTERVAL    1000u /* ms between checks when idle, at most */

typedef struct sn_memguard sn_memguard;

typedef enum sn_memguard_protocol {
    SN_MEMGUARD_GRPC = 0,
    SN_MEMGUARD_HTTP,
    SN_MEMGUARD_PROTOCOLS
} sn_memguard_protocol;

typedef struct sn_memguard_config {
    uint64_t limit_bytes;    /* 0: no limit (the timer still trims after bursts) */
    unsigned refuse_percent; /* 1..100; 0: SN_MEMGUARD_DEFAULT_PERCENT */
    unsigned interval_ms;    /* 0: SN_MEMGUARD_DEFAULT_INTERVAL */
    sn_metrics *metrics;     /* optional; borrowed, must outlive the guard */
    /* Optional: memory that other modules keep between requests for reuse (the pipeline's
     * idle request scratches). kept(ud) says how much it is now (loop thread, every check);
     * reclaim(ud) frees it (loop thread), when a reservation was refused for now or the
     * resident set is over the threshold, before a malloc_trim. Both must be set or neither. */
    size_t (*kept)(void *ud);
    void (*reclaim)(void *ud);
    void *kept_ud;
} sn_memguard_config;

/* Opens /proc/self/statm and starts the timer on `loop`. Returns 0 and sets *out, or a negative
 * errno with a message in err (-EINVAL bad config, -ENOMEM, or the open/metrics error). The
 * caller releases the guard with sn_memguard_close. */
int sn_memguard_create(const sn_memguard_config *cfg, uv_loop_t *loop, sn_memguard **out, char *err,
                       size_t errlen);

/* The request budget: what the transports may hold for requests at once. At create the guard
 * reads the resident set (the baseline: libraries, threads, the pipeline's tables); then
 *
 *     budget     = limit - baseline - margin,      margin = max(8 MiB, (limit - baseline) / 3)
 *     budget_now = min(budget, limit - unaccounted - margin)
 *
 * where `unaccounted` is what the resident set holds besides the reservations -- gRPC's
 * per-connection and per-stream buffers, the pipeline's kept scratch buffers, batches, malloc's
 * arenas --, measured on every check (resident set minus reserved bytes; its maximum, decaying
 * by 1/16 per check, never below the baseline). Memory that no reservation counts thus shrinks
 * what requests may reserve, and the margin covers what grows between two checks.
 *
 * "Too large" and "not now" are judged against the same memory. The kept memory (config.kept:
 * scratch grown by earlier requests, and malloc's free arenas) is given back on demand: a
 * reservation refused for now that would fit beside the others' reservations if the memory
 * outside them were back at the floor (reserved + more <= ceiling) asks for a reclaim and a
 * malloc_trim at the next trim decision (at most 100 ms later); one refused because the others'
 * reservations fill the ceiling asks for nothing (freeing kept memory would not help it). What
 * remains with nothing reserved -- the resident set less the kept memory, never below the baseline
 * -- is the floor, which no request can use:
 *
 *     ceiling    = max(budget / 4, min(budget, limit - floor - margin))  (the largest request)
 *     budget_now = min(ceiling, limit - unaccounted - margin)
 *
 * A request larger than the ceiling is refused as too large at once (but while over the
 * resident-set threshold every request is refused for now); one that fits it is refused for
 * now only while others hold reservations or memory the next checks give back (budget_now
 * returns to the ceiling when the process is idle), so its retries get in. The floor is the
 * lowest reading of the last 4 s (taken with nothing reserved and nothing left to trim), so
 * memory held only for a while does not make requests too large; a 4 s window without such a
 * reading (continuous traffic) returns it to the baseline, so a request up to the start budget
 * is then judged by budget_now alone (refused for now while memory is held, never too large). The
 * exception: while the floor leaves less than a quarter of the budget, requests between the two are
 * refused for now (memory is short for everyone, and it may come back).
 *
 * A transport reserves a request's bytes before it holds them (an HTTP body's Content-Length
 * before reading it, or each growth of its buffer; a gRPC message's estimated size before
 * reading it, its real size and its decompressed output as they arrive) and releases them when
 * the request is answered. A reservation that does not fit is refused, and the transport
 * answers with a retryable refusal, so the reservations never exceed budget_now. A request that
 * would not fit even alone (larger than `budget`) is refused as too large (413 /
 * RESOURCE_EXHAUSTED, not retryable): under a small limit the largest request taken is below
 * otlp.max_message_bytes. No limit: every reservation fits. See docs/sidecar.md, "Memory". */
#define SN_MEMGUARD_MIN_MARGIN (8u * 1024u * 1024u)

/* Reserves `more` bytes for a request of `protocol` that already holds `held` bytes of the
 * budget. Returns 0 when they fit (the caller then owns them and gives them back with
 * sn_memguard_release); -EAGAIN while over the resident-set threshold or when they do not fit
 * now (and asks for a reclaim when that can help, above); -E2BIG when held + more is above the
 * ceiling (the request does not fit even with nothing else reserved) or the start budget (then also
 * while over). Refusals are counted in sentinel_sidecar_memory_refused_total{protocol}. Any thread
 * (atomics, no lock; the first request after an idle stretch also wakes the timer). */
int sn_memguard_reserve(sn_memguard *g, sn_memguard_protocol protocol, size_t more, size_t held);

/* Gives back `bytes` reserved with sn_memguard_reserve. Any thread. */
void sn_memguard_release(sn_memguard *g, size_t bytes);

/* What may still be reserved now, e.g. to bound a decompression: the budget not reserved, or
 * SIZE_MAX without a limit. Any thread. */
size_t sn_memguard_available(const sn_memguard *g);

/* The largest budget, with nothing unaccounted beyond the baseline (SIZE_MAX without a limit):
 * the ceiling at start, which it never exceeds. */
size_t sn_memguard_budget(const sn_memguard *g);

/* Callback adapters for the transports' reservation hooks (grpc_unary.h, http_server.h); `ud`
 * is the sn_memguard. */
int sn_memguard_reserve_grpc(void *ud, size_t more, size_t held);
int sn_memguard_reserve_http(void *ud, size_t more, size_t held);
void sn_memguard_release_cb(void *ud, size_t bytes);
size_t sn_memguard_available_cb(void *ud);

/* How many times the guard has read the resident set (to see that it spaces its checks out
 * while idle). Any thread. */
uint64_t sn_memguard_samples(const sn_memguard *g);

/* True while over the refusal threshold (for /readyz). Any thread. */
bool sn_memguard_over(const sn_memguard *g);

/* Stops the timer and frees the guard once the loop has closed its handle (so the loop must run
 * afterwards). Loop thread. NULL is a no-op. */
void sn_memguard_close(sn_memguard *g);

#endif
