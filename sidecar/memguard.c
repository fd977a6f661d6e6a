/*
 * memguard.c -- the sidecar's hard memory limit: resident set from /proc/self/statm on a loop
 * timer, an atomic "over" flag the transports read, malloc_trim when over or idle after a
 * burst. See memguard.h and docs/sidecar.md ("Memory").
 */
#include "memguard.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SN_MEMGUARD_TRIM_GROWTH (1024u * 1024u) /* idle trim only after this much new anon */

static const char *const protocol_names[SN_MEMGUARD_PROTOCOLS] = {"grpc", "http"};

struct sn_memguard {
    uv_timer_t timer;
    int fd; /* /proc/self/statm */
    uint64_t page;
    uint64_t limit;
    uint64_t refuse_at; /* bytes of resident set */
    atomic_bool over;
    _Atomic uint64_t admitted; /* requests let in, for the idle check */
    uint64_t admitted_seen;    /* at the previous tick (loop thread) */
    uint64_t anon_trimmed;     /* anonymous bytes after the last trim (loop thread) */
    sn_counter *refused[SN_MEMGUARD_PROTOCOLS];
    sn_gauge *over_gauge;
    sn_counter *trims;
};

/* Reads the resident and anonymous (resident - file-backed/shared) bytes. Returns false when
 * statm cannot be read. */
static bool read_statm(sn_memguard *g, uint64_t *rss, uint64_t *anon)
{
    char buf[128];
    ssize_t n = pread(g->fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    char *p = buf, *end = NULL;
    (void)strtoull(p, &end, 10); /* size */
    if (end == p)
        return false;
    p = end;
    unsigned long long resident = strtoull(p, &end, 10);
    if (end == p)
        return false;
    p = end;
    unsigned long long shared = strtoull(p, &end, 10);
    if (end == p)
        return false;
    *rss = (uint64_t)resident * g->page;
    *anon = resident > shared ? (uint64_t)(resident - shared) * g->page : 0;
    return true;
}

/* Gives freed heap memory back to the system and remembers the anonymous size after it. */
static void trim(sn_memguard *g)
{
    uint64_t rss = 0, anon = 0;
    malloc_trim(0);
    if (read_statm(g, &rss, &anon))
        g->anon_trimmed = anon;
    sn_counter_inc(g->trims);
}

static void on_tick(uv_timer_t *t)
{
    sn_memguard *g = t->data;
    uint64_t rss = 0, anon = 0;
    if (!read_statm(g, &rss, &anon))
        return;
    uint64_t admitted = atomic_load(&g->admitted);
    bool idle = admitted == g->admitted_seen;
    g->admitted_seen = admitted;
    bool over = g->limit > 0 && rss >= g->refuse_at;
    if (over || (idle && anon > g->anon_trimmed + SN_MEMGUARD_TRIM_GROWTH)) {
        trim(g);
        if (over && read_statm(g, &rss, &anon))
            over = rss >= g->refuse_at;
    }
    atomic_store(&g->over, over);
    sn_gauge_set(g->over_gauge, over ? 1.0 : 0.0);
}

/* Registers the guard's metrics. Returns 0 or the registry's error. */
static int register_metrics(sn_memguard *g, sn_metrics *m, char *err, size_t errlen)
{
    sn_metrics_family *f = NULL;
    int rc;
    sn_metrics_desc rd = {.type = SN_METRICS_COUNTER,
                          .name = "sentinel_sidecar_memory_refused_total",
                          .help = "requests refused (retryable) while over limits.memory",
                          .labels = {"protocol"}};
    if ((rc = sn_metrics_register(m, &rd, &f, err, errlen)) != 0)
        return rc;
    for (int i = 0; i < SN_MEMGUARD_PROTOCOLS; i++) {
        const char *v[] = {protocol_names[i]};
        if ((g->refused[i] = sn_metrics_counter(f, v)) == NULL)
            return -ENOMEM;
    }
    sn_metrics_desc ld = {.type = SN_METRICS_GAUGE,
                          .name = "sentinel_sidecar_memory_limit_bytes",
                          .help = "limits.memory (0: none)"};
    if ((rc = sn_metrics_register(m, &ld, &f, err, errlen)) != 0)
        return rc;
    sn_gauge *limit = sn_metrics_gauge(f, NULL);
    if (limit == NULL)
        return -ENOMEM;
    sn_gauge_set(limit, (double)g->limit);
    sn_metrics_desc od = {.type = SN_METRICS_GAUGE,
                          .name = "sentinel_sidecar_memory_over_limit",
                          .help = "1 while the resident set is over the refusal threshold"};
    if ((rc = sn_metrics_register(m, &od, &f, err, errlen)) != 0)
        return rc;
    if ((g->over_gauge = sn_metrics_gauge(f, NULL)) == NULL)
        return -ENOMEM;
    sn_metrics_desc td = {.type = SN_METRICS_COUNTER,
                          .name = "sentinel_sidecar_memory_trims_total",
                          .help = "malloc_trim calls (over the threshold, or idle after a burst)"};
    if ((rc = sn_metrics_register(m, &td, &f, err, errlen)) != 0)
        return rc;
    if ((g->trims = sn_metrics_counter(f, NULL)) == NULL)
        return -ENOMEM;
    return 0;
}

int sn_memguard_create(const sn_memguard_config *cfg, uv_loop_t *loop, sn_memguard **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    unsigned pct = cfg->refuse_percent != 0 ? cfg->refuse_percent : SN_MEMGUARD_DEFAULT_PERCENT;
    unsigned interval = cfg->interval_ms != 0 ? cfg->interval_ms : SN_MEMGUARD_DEFAULT_INTERVAL;
    if (pct > 100) {
        snprintf(err, errlen, "memory guard: refusal threshold above 100 %%");
        return -EINVAL;
    }
    sn_memguard *g = calloc(1, sizeof *g);
    if (g == NULL) {
        snprintf(err, errlen, "memory guard: out of memory");
        return -ENOMEM;
    }
    long page = sysconf(_SC_PAGESIZE);
    g->page = page > 0 ? (uint64_t)page : 4096u;
    g->limit = cfg->limit_bytes;
    g->refuse_at = cfg->limit_bytes / 100u * pct;
    atomic_init(&g->over, false);
    atomic_init(&g->admitted, 0);
    int rc;
    g->fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (g->fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "memory guard: cannot open /proc/self/statm: %s", strerror(errno));
        goto out_free;
    }
    if (cfg->metrics != NULL && (rc = register_metrics(g, cfg->metrics, err, errlen)) != 0)
        goto out_close;
    uint64_t rss = 0;
    (void)read_statm(g, &rss, &g->anon_trimmed);
    uv_timer_init(loop, &g->timer);
    g->timer.data = g;
    uv_timer_start(&g->timer, on_tick, interval, interval);
    uv_unref((uv_handle_t *)&g->timer); /* never keeps the loop alive on its own */
    *out = g;
    return 0;

out_close:
    close(g->fd);
out_free:
    free(g);
    return rc;
}

bool sn_memguard_admit(sn_memguard *g, sn_memguard_protocol protocol)
{
    if (atomic_load(&g->over)) {
        sn_counter_inc(g->refused[protocol]);
        return false;
    }
    atomic_fetch_add(&g->admitted, 1);
    return true;
}

bool sn_memguard_over(const sn_memguard *g)
{
    return atomic_load(&((sn_memguard *)g)->over);
}

/* The timer's close callback: frees the guard. */
static void on_closed(uv_handle_t *h)
{
    sn_memguard *g = h->data;
    close(g->fd);
    free(g);
}

void sn_memguard_close(sn_memguard *g)
{
    if (g == NULL)
        return;
    uv_timer_stop(&g->timer);
    uv_close((uv_handle_t *)&g->timer, on_closed);
}
