/*
 * logs.h -- the streaming OTLP logs decoder: ExportLogsServiceRequest bytes in, counts out.
 *
 * The sidecar accepts logs so that applications exporting all three signals to it work, but no
 * LLM fact is taken from a log record: the request is walked once to check that it is
 * well-formed and to count its records. Records that are GenAI events -- the LogRecord
 * event_name field (12), or else an `event.name` attribute, starting with "gen_ai." (e.g.
 * gen_ai.client.inference.operation.details, gen_ai.user.message, gen_ai.choice) -- are counted
 * separately. Record bodies, where GenAI events carry prompt and response text, are skipped on
 * the wire and never read; so are resources, scopes, ids and every attribute but event.name.
 *
 * No allocation, no object tree; recursion depth fixed by the schema. Thread safety: no global
 * state; any number of threads may decode at once.
 */
#ifndef SN_OTLP_LOGS_H
#define SN_OTLP_LOGS_H

#include "otlp/traces.h" /* SN_OTLP_ERR_MAX */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What one call saw. Filled from zero by every call, also when it fails. */
typedef struct sn_otlp_log_stats {
    uint64_t resource_logs;
    uint64_t scope_logs;
    uint64_t log_records;  /* records seen */
    uint64_t genai_events; /* of which GenAI events */
} sn_otlp_log_stats;

/* Decodes an ExportLogsServiceRequest (or a LogsData) from buf[0..len) and fills stats (may be
 * NULL). Returns 0 when the request is well-formed, or -1 for malformed input (truncated, a
 * wrong wire type, a bad varint, a length past its message, field number 0) with a one-line
 * message in err (errsize bytes; SN_OTLP_ERR_MAX is enough). */
int sn_otlp_decode_logs(const uint8_t *buf, size_t len, sn_otlp_log_stats *stats, char *err,
                        size_t errsize);

/* The same for the OTLP/JSON encoding (resourceLogs, scopeLogs, logRecords, eventName,
 * attributes; unknown fields ignored, null is absent). A wrong type where the structure is
 * expected (the root, resourceLogs, scopeLogs, logRecords, attributes and their elements) makes
 * the request malformed; bodies are never looked at. Bounds: those of traces_json.h. */
int sn_otlp_decode_logs_json(const uint8_t *buf, size_t len, sn_otlp_log_stats *stats, char *err,
                             size_t errsize);

/* True when name[0..len) names a GenAI event (starts with "gen_ai."). */
bool sn_otlp_is_genai_event(const char *name, size_t len);

#endif
