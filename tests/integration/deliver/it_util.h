/*
 * it_util.h -- helpers of the alert-delivery integration tests: free loopback ports, receivers
 * started as child processes in their own process group (stopped by that group's id), temp
 * directories, alerts and waits.
 */
#ifndef SN_IT_DELIVER_UTIL_H
#define SN_IT_DELIVER_UTIL_H

#include "deliver.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define IT_SEC INT64_C(1000000000)
#define IT_MS  INT64_C(1000000)

/* A TCP port on 127.0.0.1 nobody listens on right now. Aborts the test when none. */
int it_free_port(void);

/* Starts argv[0] (a path) with extra environment entries ("K=V", NULL-terminated; may be NULL)
 * in a new session, stdout and stderr appended to log. Returns the pid (= process group id). */
pid_t it_spawn(const char *const *argv, const char *const *env, const char *log);

/* True once 127.0.0.1:port accepts a connection, false after timeout_ms. */
bool it_wait_port(int port, int timeout_ms);

/* True once nothing accepts on 127.0.0.1:port any more. */
bool it_wait_port_closed(int port, int timeout_ms);

/* SIGTERM to the process group, waits for pid up to timeout_ms, then SIGKILLs the group. */
void it_stop(pid_t pid, int timeout_ms);

/* mkdtemp under /tmp with the prefix; out gets the path. */
void it_tmpdir(const char *prefix, char *out, size_t outlen);

/* Removes a directory tree. */
void it_rmrf(const char *dir);

/* Writes text to path (aborts the test on failure). */
void it_write_file(const char *path, const char *text);

/* An alert with id ...-<i>, the given service and severity, firing. */
sn_alert it_alert(int i, const char *service, sn_severity sev);

/* Wall-clock ns. */
int64_t it_now(void);

/* Sleeps ms milliseconds. */
void it_sleep_ms(int ms);

/* Opens the loop's store in dir. */
sn_store *it_store(const char *dir);

/* An engine on dir (no metrics, poll 50 ms). */
sn_deliver *it_engine(const char *dir);

/* A fast policy for tests: unlimited rate, backoff 50..200 ms, breaker after 5 failures for
 * 300 ms. */
sn_deliver_policy it_policy(void);

/* Adds the sink with a rule that sends every change (aborts the test on failure). */
void it_add(sn_deliver *d, sn_sink *s);

/* Waits up to timeout_ms until the sink's delivered + dead_lettered counters reach n. */
bool it_wait_done(sn_deliver *d, const char *sink, uint64_t n, int timeout_ms);

#endif
