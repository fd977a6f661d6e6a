/*
 * alert_limit.h -- rate limit for the sidecar's local alerts: at most one alert per key
 * (service, model, metric, anomaly type) per interval; the ones held back are counted and the
 * count is handed to the next alert of that key.
 *
 * Heavy-tailed production data crosses a 3-sigma line often (about one span in four in the
 * benchmark's load), and every local alert is a log line, a UUID, a metric update and an
 * immediate seal of the open batch. The aggregator sees every event anyway and does its own
 * de-duplication over five minutes; the sidecar's local alert is the early signal, and one per
 * key per interval says all it has to say.
 *
 * Bounded: a fixed table of `slots` keys (a power of two), open addressing over a short probe
 * window; when the window is full, the key seen longest ago is forgotten (its next alert passes
 * at once, so forgetting never hides an alert -- it only lets one more through). Keys are 64-bit
 * hashes of the fields. No allocation after create, no clock (the caller passes the time), no
 * locking: owned by one thread (the loop).
 */
#ifndef SN_SIDECAR_ALERT_LIMIT_H
#define SN_SIDECAR_ALERT_LIMIT_H

#include "alert.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_ALERT_LIMIT_SLOTS_DEFAULT 4096u
#define SN_ALERT_LIMIT_SLOTS_MAX     (1u << 20)

typedef struct sn_alert_limit sn_alert_limit;

/* Creates a limiter of `slots` keys (rounded up to a power of two, 16..SN_ALERT_LIMIT_SLOTS_MAX)
 * that lets one alert per key through every interval_ms (0: every alert passes, nothing is
 * kept). hash_seed varies the key hash per process. Returns 0 and sets *out, -EINVAL for slots
 * out of range, -ENOMEM. Free with sn_alert_limit_destroy. */
int sn_alert_limit_create(size_t slots, uint64_t interval_ms, uint64_t hash_seed,
                          sn_alert_limit **out);

/* Frees the limiter. NULL is a no-op. */
void sn_alert_limit_destroy(sn_alert_limit *l);

/* Decides whether alert a may be raised at now_ms (a monotonic clock in milliseconds). true:
 * raise it; *suppressed (may be NULL) gets how many alerts of its key were held back since the
 * previous one was raised, and the key's interval starts again. false: hold it back (it is
 * counted for the next one). Never fails. */
bool sn_alert_limit_admit(sn_alert_limit *l, const sn_local_alert *a, uint64_t now_ms,
                          uint64_t *suppressed);

/* Alerts held back since create (all keys). */
uint64_t sn_alert_limit_suppressed_total(const sn_alert_limit *l);

#endif
