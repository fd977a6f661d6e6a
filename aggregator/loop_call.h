/*
 * loop_call.h -- run a function on the libuv loop thread and wait for it: the hand-off that
 * lets other threads (the REST API's HTTP threads) read or change state the loop owns.
 *
 *   caller thread                          loop thread
 *   sn_loop_call_run(lc, fn, arg)
 *     queue full            -> -EAGAIN
 *     append to the locked queue,
 *     uv_async_send when it was empty ---> drain the whole queue (libuv coalesces sends):
 *     wait on the condition variable         mark each call taken, run fn(arg), mark done,
 *                                            broadcast
 *     done                  -> 0
 *     still queued at the deadline -> taken back, -ETIMEDOUT (fn never runs)
 *     taken by the loop     -> always waited for (fn runs with the caller's arg, which must
 *                              stay valid until it returns)
 *     closed                -> -ESHUTDOWN (queued calls are failed, never run)
 *
 * fn must be quick (it runs on the loop, between I/O callbacks) and must not call
 * sn_loop_call_run itself. sn_loop_call_run called on the loop thread runs fn directly.
 *
 * Lifetime: create on the loop thread; at shutdown, stop every caller thread that may still
 * call (e.g. sn_api_stop) while the loop runs, then sn_loop_call_close on the loop thread, let
 * the loop run its close callbacks (uv_run), then sn_loop_call_destroy.
 */
#ifndef SN_LOOP_CALL_H
#define SN_LOOP_CALL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define SN_LOOP_CALL_DEFAULT_QUEUE   64u
#define SN_LOOP_CALL_DEFAULT_TIMEOUT (INT64_C(2) * 1000000000) /* 2 s, in nanoseconds */
#define SN_LOOP_CALL_QUEUE_LIMIT     65536u

typedef struct sn_loop_call sn_loop_call;

/* The function run on the loop thread with the caller's argument. */
typedef void (*sn_loop_fn)(void *arg);

typedef struct sn_loop_call_config {
    size_t max_queue;   /* calls waiting for the loop; 0: SN_LOOP_CALL_DEFAULT_QUEUE */
    int64_t timeout_ns; /* how long a call may wait in the queue; 0: the default */
} sn_loop_call_config;

typedef struct sn_loop_call_stats {
    uint64_t calls;     /* functions run on the loop */
    uint64_t refused;   /* -EAGAIN: the queue was full */
    uint64_t timed_out; /* -ETIMEDOUT: still queued at the deadline */
    size_t queued;      /* waiting now */
} sn_loop_call_stats;

/* Creates the hand-off on `loop` (an uv_async_t; call on the loop thread, cfg may be NULL for
 * the defaults). Returns 0 and sets *out, or -EINVAL (a limit out of range) / -ENOMEM / a libuv
 * error with a message in err (errlen bytes, may be NULL). Free with sn_loop_call_close +
 * sn_loop_call_destroy (see above). */
int sn_loop_call_create(uv_loop_t *loop, const sn_loop_call_config *cfg, sn_loop_call **out,
                        char *err, size_t errlen);

/* Runs fn(arg) on the loop thread and returns once it has run: 0. Fails without running fn:
 * -EAGAIN when max_queue calls are already waiting, -ETIMEDOUT when the loop did not take the
 * call within timeout_ns, -ESHUTDOWN once closed, -EINVAL for a NULL fn. Thread-safe. */
int sn_loop_call_run(sn_loop_call *lc, sn_loop_fn fn, void *arg);

/* Loop thread: fails every queued call with -ESHUTDOWN (and every later one), and closes the
 * async handle. The object stays valid for callers until sn_loop_call_destroy. NULL or a second
 * call is a no-op. */
void sn_loop_call_close(sn_loop_call *lc);

/* Frees the object; it must be closed and the loop must have run the close callback since
 * (uv_run), and no thread may still call it. NULL is a no-op. */
void sn_loop_call_destroy(sn_loop_call *lc);

/* Counters, thread-safe. */
void sn_loop_call_stats_get(sn_loop_call *lc, sn_loop_call_stats *out);

#endif
