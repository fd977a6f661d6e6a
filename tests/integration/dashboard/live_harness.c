/*
 * live_harness.c -- the live feed (aggregator/live.c) on the real REST API server, driven from
 * stdin so tests/integration/dashboard/live.mjs can publish alerts exactly when it wants.
 *
 *   live_harness [--heartbeat-ms N] [--backlog-msgs N] [--backlog-bytes N] [--token T]
 *                [--max-clients N] [--auth-ms N]
 *
 * Prints {"port":N} once listening on 127.0.0.1 (port 0: any), then answers one JSON line per
 * command line:
 *   publish CHANGE SERVICE MODEL SEVERITY COUNT PAD  -> {"published":COUNT,"max_us":...}
 *       COUNT alerts (fired|updated|escalated|resolved) whose root_cause is PAD bytes long
 *   stats                                            -> the hub's counters
 *   quit                                             -> {"bye":true}, then a clean exit 0
 */
#include "api.h"
#include "live.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(int clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Parses a decimal argument or exits 2. */
static unsigned long num(const char *s)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        fprintf(stderr, "live_harness: bad number '%s'\n", s);
        exit(2);
    }
    return v;
}

/* Fills a plausible alert; `i` makes the id unique. */
static void make_alert(sn_alert *al, unsigned long i, const char *svc, const char *model,
                       sn_severity sev, size_t pad)
{
    memset(al, 0, sizeof *al);
    snprintf(al->alert_id, sizeof al->alert_id, "00000000-0000-4000-8000-%012lx", i);
    al->timestamp_ns = al->last_seen_ns = now_ns(CLOCK_REALTIME);
    al->severity = sev;
    al->anomaly_type = SN_ANOMALY_LATENCY_SPIKE;
    snprintf(al->service, sizeof al->service, "%s", svc);
    snprintf(al->model, sizeof al->model, "%s", model);
    al->method = SN_DETECT_ZSCORE;
    al->confidence = 0.9;
    al->metric = SN_METRIC_LATENCY_MS;
    al->value = 12000;
    al->baseline = 1000;
    al->threshold = 4000;
    al->deviation_sigma = 9.5;
    if (pad >= sizeof al->root_cause)
        pad = sizeof al->root_cause - 1;
    memset(al->root_cause, 'x', pad);
    al->root_cause[pad] = '\0';
    al->status = SN_ALERT_FIRING;
    al->occurrences = 1;
}

int main(int argc, char **argv)
{
    sn_live_config lc = {0};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--heartbeat-ms") == 0)
            lc.heartbeat_ms = (unsigned)num(argv[i + 1]);
        else if (strcmp(argv[i], "--backlog-msgs") == 0)
            lc.max_backlog_msgs = (unsigned)num(argv[i + 1]);
        else if (strcmp(argv[i], "--backlog-bytes") == 0)
            lc.max_backlog_bytes = num(argv[i + 1]);
        else if (strcmp(argv[i], "--max-clients") == 0)
            lc.max_clients = (unsigned)num(argv[i + 1]);
        else if (strcmp(argv[i], "--auth-ms") == 0)
            lc.auth_timeout_ms = (unsigned)num(argv[i + 1]);
        else if (strcmp(argv[i], "--token") == 0)
            lc.api_token = argv[i + 1];
        else {
            fprintf(stderr, "live_harness: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    char err[256];
    sn_live *live = NULL;
    sn_api *api = NULL;
    if (sn_live_create(&lc, &live, err, sizeof err) != 0) {
        fprintf(stderr, "live_harness: %s\n", err);
        return 1;
    }
    sn_api_config ac = {.listen = "127.0.0.1:0", .api_token = lc.api_token, .live = live};
    if (sn_api_create(&ac, NULL, &api, err, sizeof err) != 0 ||
        sn_api_start(api, err, sizeof err) != 0) {
        fprintf(stderr, "live_harness: %s\n", err);
        sn_api_destroy(api);
        sn_live_destroy(live);
        return 1;
    }
    printf("{\"port\":%u}\n", (unsigned)sn_api_port(api));
    fflush(stdout);

    char line[512];
    unsigned long next_id = 1;
    while (fgets(line, sizeof line, stdin) != NULL) {
        char change[16], svc[SN_NAME_MAX], model[SN_NAME_MAX], sevname[16];
        unsigned long count = 0, pad = 0;
        if (strncmp(line, "quit", 4) == 0)
            break;
        if (strncmp(line, "stats", 5) == 0) {
            sn_live_stats st;
            sn_live_stats_get(live, &st);
            printf("{\"clients\":%u,\"accepted\":%llu,\"refused\":%llu,\"published\":%llu,"
                   "\"queued\":%llu,\"sent\":%llu,\"closed\":{\"peer\":%llu,\"slow\":%llu,"
                   "\"idle\":%llu,\"auth\":%llu,\"protocol\":%llu,\"shutdown\":%llu}}\n",
                   st.clients, (unsigned long long)st.accepted, (unsigned long long)st.refused,
                   (unsigned long long)st.published, (unsigned long long)st.queued,
                   (unsigned long long)st.sent, (unsigned long long)st.closed[SN_LIVE_CLOSED_PEER],
                   (unsigned long long)st.closed[SN_LIVE_CLOSED_SLOW],
                   (unsigned long long)st.closed[SN_LIVE_CLOSED_IDLE],
                   (unsigned long long)st.closed[SN_LIVE_CLOSED_AUTH],
                   (unsigned long long)st.closed[SN_LIVE_CLOSED_PROTOCOL],
                   (unsigned long long)st.closed[SN_LIVE_CLOSED_SHUTDOWN]);
            fflush(stdout);
            continue;
        }
        sn_severity sev;
        if (sscanf(line, "publish %15s %127s %127s %15s %lu %lu", change, svc, model, sevname,
                   &count, &pad) != 6 ||
            sn_severity_from_name(sevname, &sev) != 0) {
            printf("{\"error\":\"bad command\"}\n");
            fflush(stdout);
            continue;
        }
        sn_alert_change ch = strcmp(change, "resolved") == 0    ? SN_ALERT_CHANGE_RESOLVED
                             : strcmp(change, "updated") == 0   ? SN_ALERT_CHANGE_UPDATED
                             : strcmp(change, "escalated") == 0 ? SN_ALERT_CHANGE_ESCALATED
                                                                : SN_ALERT_CHANGE_FIRED;
        int64_t max_ns = 0;
        for (unsigned long i = 0; i < count; i++) {
            sn_alert al;
            make_alert(&al, next_id++, svc, model, sev, pad);
            if (ch == SN_ALERT_CHANGE_RESOLVED) {
                al.status = SN_ALERT_RESOLVED;
                al.resolved_at_ns = al.timestamp_ns;
            }
            int64_t t0 = now_ns(CLOCK_MONOTONIC);
            sn_live_publish(live, ch, &al);
            int64_t dt = now_ns(CLOCK_MONOTONIC) - t0;
            if (dt > max_ns)
                max_ns = dt;
        }
        printf("{\"published\":%lu,\"max_us\":%lld}\n", count, (long long)(max_ns / 1000));
        fflush(stdout);
    }
    sn_api_destroy(api); /* shuts the live feed down first */
    sn_live_destroy(live);
    printf("{\"bye\":true}\n");
    fflush(stdout);
    return 0;
}
