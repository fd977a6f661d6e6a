/*
 * alerts.h -- the alert lifecycle: turns the engine's anomalies (anomaly.h) into alerts as the
 * alert JSON of contracts.md describes them, and keeps them until they resolve.
 *
 * Pure: no I/O, no clock, no locks. Time is passed in (`now_ns`, nanoseconds since the Unix
 * epoch on the caller's clock, normally the loop's CLOCK_REALTIME). One owner (the loop thread).
 * Every alert lives in a slot allocated at create: no allocation per anomaly.
 *
 *   anomaly (service, model, anomaly_type)
 *     no firing alert for the key          -> new alert, FIRED (related_alerts filled, and the
 *                                             related alerts report UPDATED)
 *     firing, last seen <= dedup_window ago -> same alert: occurrences++, severity = max,
 *                                             latest details/confidence; UPDATED, or
 *                                             ESCALATED when the severity went up
 *     firing, last seen longer ago          -> the old alert RESOLVED, a new one FIRED
 *   sn_alerts_tick(now): every firing alert not seen for quiet_period -> RESOLVED
 *
 * A resolved alert keeps its slot (so the API and grouping still see it) until the slot is
 * needed: when every slot is taken, the alert resolved longest ago is dropped; when all are
 * firing, a new alert is refused and counted (`refused`), never silently lost.
 *
 * Root cause and remediation come from a documented table of rules (sn_alert_rules(),
 * docs/aggregator.md "Alerts"): the first rule whose anomaly type and conditions match the
 * anomaly's hints (metric, error_type, finish_reason, related_metric) wins; every type has a
 * fallback rule. While an alert fires, a later anomaly that matches a more specific rule (one
 * earlier in the table) replaces the root cause.
 */
#ifndef SN_ALERTS_H
#define SN_ALERTS_H

#include "alert.h"
#include "anomaly.h"
#include "detect/detect.h"
#include "event.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_ALERT_TEXT_MAX        256  /* root_cause and each remediation step, NUL included */
#define SN_ALERT_URL_MAX         512  /* runbook_url, NUL included */
#define SN_ALERT_REMEDIATION_MAX 4    /* remediation steps per alert */
#define SN_ALERT_RELATED_MAX     8    /* related_alerts per alert */
#define SN_ALERTS_DEFAULT_MAX    1024 /* slots (firing + resolved kept), ~3 KiB each */
#define SN_ALERTS_DEFAULT_DEDUP  (INT64_C(300) * 1000000000) /* 5 minutes */
#define SN_ALERTS_DEFAULT_QUIET  (INT64_C(300) * 1000000000) /* 5 minutes */
#define SN_ALERTS_DEFAULT_GROUP  (INT64_C(120) * 1000000000) /* 2 minutes */

typedef enum sn_alert_status { SN_ALERT_FIRING = 0, SN_ALERT_RESOLVED } sn_alert_status;

/* One alert: the alert JSON of contracts.md plus last_seen and resolved_at. Plain value. */
typedef struct sn_alert {
    char alert_id[SN_ALERT_ID_LEN + 1]; /* UUID v4 text */
    int64_t timestamp_ns;               /* first seen */
    int64_t last_seen_ns;               /* the latest anomaly of the key */
    int64_t resolved_at_ns;             /* 0 while firing */
    sn_severity severity;               /* the highest seen while firing */
    sn_anomaly_type anomaly_type;
    char service[SN_NAME_MAX];
    char model[SN_NAME_MAX];
    sn_detector_kind method; /* detection_method of the latest anomaly */
    double confidence;       /* of the latest anomaly */
    /* details, of the latest anomaly; NAN (not finite) values are left out of the JSON */
    sn_metric metric;
    double value;
    double baseline;
    double threshold;
    double deviation_sigma;
    /* context */
    uint8_t trace_id[16]; /* all zero: left out of the JSON */
    char region[SN_SHORT_MAX];
    char time_window[SN_ANOMALY_WINDOW_MAX];
    sn_anomaly_source source;
    char root_cause[SN_ALERT_TEXT_MAX];
    unsigned nremediation;
    char remediation[SN_ALERT_REMEDIATION_MAX][SN_ALERT_TEXT_MAX];
    unsigned nrelated;
    char related[SN_ALERT_RELATED_MAX][SN_ALERT_ID_LEN + 1];
    char runbook_url[SN_ALERT_URL_MAX]; /* "" when no template is configured */
    sn_alert_status status;
    uint32_t occurrences; /* anomalies folded into this alert, sidecar-suppressed ones included
                             (saturates) */
    uint64_t calls;       /* of the latest anomaly (sn_anomaly.calls); 0: one call */
    uint64_t sidecar_suppressed; /* local alerts held back by sidecars, folded in (occurrences
                                    counts them too); details.sidecar_suppressed */
} sn_alert;

/* What happened to an alert (the callback's `change`). */
typedef enum sn_alert_change {
    SN_ALERT_CHANGE_FIRED = 0, /* a new alert */
    SN_ALERT_CHANGE_UPDATED,   /* another occurrence, or a related alert was added */
    SN_ALERT_CHANGE_ESCALATED, /* another occurrence that raised the severity */
    SN_ALERT_CHANGE_RESOLVED   /* quiet for quiet_period (or replaced after the dedup window) */
} sn_alert_change;

/* Called for every change, synchronously inside sn_alerts_observe / sn_alerts_tick. The alert
 * is borrowed for the call (copy what you keep). The callback must not call back into the
 * manager. */
typedef void (*sn_alerts_cb)(sn_alert_change change, const sn_alert *a, void *ud);

/* Fills out[16] with random bytes for a new alert id. */
typedef void (*sn_alerts_random_fn)(uint8_t out[16], void *ud);

typedef struct sn_alerts_config {
    size_t max_alerts;       /* slots; >= 1 */
    int64_t dedup_window_ns; /* > 0 */
    int64_t quiet_period_ns; /* > 0 */
    int64_t group_window_ns; /* >= 0; 0 turns grouping off */
    /* Template of runbook_url: {anomaly_type}, {service} and {model} are replaced (service and
     * model percent-encoded); NULL or "" (the default) gives an empty runbook_url, as does an
     * expansion longer than SN_ALERT_URL_MAX - 1. Copied at create. */
    const char *runbook_template;
    sn_alerts_cb on_change; /* may be NULL */
    void *cb_ud;
    /* Random bytes for alert ids; NULL: an internal generator seeded with `seed` (give it
     * getrandom() bytes in production, a constant in tests). */
    sn_alerts_random_fn random;
    void *random_ud;
    uint64_t seed;
} sn_alerts_config;

typedef struct sn_alerts_stats {
    size_t firing;     /* firing now */
    size_t held;       /* slots in use (firing + resolved kept) */
    uint64_t fired;    /* alerts created */
    uint64_t updates;  /* anomalies folded into a firing alert */
    uint64_t resolved; /* alerts resolved */
    uint64_t refused;  /* anomalies refused: every slot held a firing alert */
    uint64_t dropped;  /* resolved alerts dropped to make room */
    uint64_t invalid;  /* anomalies refused as invalid (bad enum, empty service) */
    uint64_t restored; /* alerts taken back with sn_alerts_restore */
} sn_alerts_stats;

typedef struct sn_alerts sn_alerts;

/* Fills the defaults above; no callback, seed 0. Never fails. */
void sn_alerts_config_init(sn_alerts_config *cfg);

/* Creates a manager. Returns 0 and sets *out, or -EINVAL with a one-line reason naming the bad
 * field in err (max_alerts, dedup_window, quiet_period, group_window, runbook_template longer
 * than SN_ALERT_URL_MAX), or -ENOMEM. Free with sn_alerts_destroy. */
int sn_alerts_create(const sn_alerts_config *cfg, sn_alerts **out, char *err, size_t errlen);

/* Frees the manager and every alert it holds (no callbacks). NULL is a no-op. */
void sn_alerts_destroy(sn_alerts *m);

/* Folds one anomaly into the alerts at now_ns (see the diagram above); callbacks run before it
 * returns. Returns 0, -EINVAL for an invalid anomaly (severity NONE or out of range, unknown
 * type, metric or method, empty service; counted), or -ENOSPC when a new alert was needed but
 * every slot holds a firing alert (counted as refused). */
int sn_alerts_observe(sn_alerts *m, const sn_anomaly *an, int64_t now_ns);

/* Resolves every firing alert not seen since now_ns - quiet_period (RESOLVED callbacks). Returns
 * how many resolved. Call it periodically (e.g. every second). */
size_t sn_alerts_tick(sn_alerts *m, int64_t now_ns);

/* Takes back a firing alert kept by a state store across a restart, so de-duplication and
 * resolve carry on (no callback). Returns 0; -EINVAL when a is not firing or invalid; -EEXIST
 * when its id or its key already fires here; -ENOSPC when every slot fires. */
int sn_alerts_restore(sn_alerts *m, const sn_alert *a);

/* The alert with this id (firing or resolved and still held), or NULL. Borrowed until the next
 * call that changes the manager. */
const sn_alert *sn_alerts_get(const sn_alerts *m, const char *id);

/* Calls cb for every alert held, firing first then resolved, each in no particular order. Stops
 * at (and returns) the first non-zero return of cb. */
typedef int (*sn_alerts_visit)(const sn_alert *a, void *ud);
int sn_alerts_foreach(const sn_alerts *m, sn_alerts_visit cb, void *ud);

/* Counters. */
void sn_alerts_stats_get(const sn_alerts *m, sn_alerts_stats *out);

/* ---- rules ---- */

/* One documented root-cause rule. A condition that is NULL always matches; conditions are
 * case-insensitive and a '|' separates alternatives: metric: equal to the anomaly's metric name;
 * error_type_has: a substring of its error_type; finish_reason, related_metric: equal to them. */
typedef struct sn_alert_rule {
    sn_anomaly_type type;
    const char *metric;
    const char *error_type_has;
    const char *finish_reason;
    const char *related_metric;
    const char *root_cause;
    const char *remediation[SN_ALERT_REMEDIATION_MAX]; /* NULL-terminated when fewer */
} sn_alert_rule;

/* The rule table, in matching order; *n gets its length. Static storage. */
const sn_alert_rule *sn_alert_rules(size_t *n);

/* The index of the first rule matching the anomaly (every type has a fallback, so this is
 * always found for a valid type), or -1 for an unknown type. */
int sn_alert_rule_match(const sn_anomaly *an);

/* ---- JSON ---- */

/* The alert as a jansson object in the contracts.md shape, plus "last_seen" and, once resolved,
 * "resolved_at" (RFC 3339, UTC, milliseconds). Left out: details values that are not finite,
 * context.trace_id when all zero. Returns a new reference (the caller
 * json_decref's it), or NULL when out of memory. */
json_t *sn_alert_to_json(const sn_alert *a);

/* Parses and validates an alert object (as sn_alert_to_json writes it; unknown keys ignored).
 * Returns 0 and fills *out, or -EINVAL with a one-line reason naming the bad field in err. */
int sn_alert_from_json(const json_t *obj, sn_alert *out, char *err, size_t errlen);

/* Writes ns as RFC 3339 UTC with milliseconds ("2026-11-27T13:45:01.123Z") into out (at least
 * 32 bytes). Returns 0, or -EINVAL when it does not fit or the time is out of range. */
int sn_alert_format_time(int64_t ns, char *out, size_t outlen);

/* Parses RFC 3339 ("Z" or a +hh:mm offset, optional fraction down to nanoseconds). Returns 0 and
 * sets *ns, or -EINVAL. */
int sn_alert_parse_time(const char *s, int64_t *ns);

#endif
