/*
 * memguard.h -- the sidecar's hard memory limit (`limits.memory`).
 *
 * A timer on the loop reads the process's resident set from /proc/self/statm (one pread, no
 * parsing of /proc/self/status) every `interval_ms`. While it is at or above `refuse_percent`
 * of the limit, sn_memguard_admit answers false and the transports refuse new requests with a
 * retryable status (gRPC UNAVAILABLE + RetryInfo, HTTP 503 + Retry-After) until the resident
 * set is back under; the rest of the limit is headroom for the requests already admitted, which
 * the transports and the pipeline bound by themselves (otlp.max_inflight_bytes per stage).
 *
 * Giving memory back: while over, and once after a burst when no request arrived for one tick,
 * the timer calls malloc_trim(0) (so freed request buffers leave the process instead of staying
 * in malloc's arenas); at most once per tick, and the idle trim only when the anonymous memory
 * grew by more than 1 MiB since the last trim.
 *
 * Metrics (when a registry is given): sentinel_sidecar_memory_refused_total{protocol},
 * sentinel_sidecar_memory_limit_bytes, sentinel_sidecar_memory_over_limit (0/1),
 * sentinel_sidecar_memory_trims_total. See docs/sidecar.md, "Memory".
 *
 * Threads: create, the timer and close on the loop thread; sn_memguard_admit and
 * sn_memguard_over from any thread (one atomic load, one atomic add).
 */
#ifndef SN_SIDECAR_MEMGUARD_H
#define SN_SIDECAR_MEMGUARD_H

#include "metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define SN_MEMGUARD_DEFAULT_PERCENT  75u
#define SN_MEMGUARD_DEFAULT_INTERVAL 100u /* ms */

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
} sn_memguard_config;

/* Opens /proc/self/statm and starts the timer on `loop`. Returns 0 and sets *out, or a negative
 * errno with a message in err (-EINVAL bad config, -ENOMEM, or the open/metrics error). The
 * caller releases the guard with sn_memguard_close. */
int sn_memguard_create(const sn_memguard_config *cfg, uv_loop_t *loop, sn_memguard **out, char *err,
                       size_t errlen);

/* True when a new request may be taken; false (and counted for `protocol`) while the resident
 * set is over the refusal threshold. Any thread. */
bool sn_memguard_admit(sn_memguard *g, sn_memguard_protocol protocol);

/* True while over the refusal threshold (for /readyz). Any thread. */
bool sn_memguard_over(const sn_memguard *g);

/* Stops the timer and frees the guard once the loop has closed its handle (so the loop must run
 * afterwards). Loop thread. NULL is a no-op. */
void sn_memguard_close(sn_memguard *g);

#endif
