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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SN_MEMGUARD_TRIM_GROWTH   (1024u * 1024u) /* idle trim only after this much new anon */
#define SN_MEMGUARD_TRIM_INTERVAL 100u            /* ms between trim decisions */
#define SN_MEMGUARD_SETTLED_SLACK (1024u * 1024u) /* unaccounted within this of now: settled */
#define SN_MEMGUARD_FLOOR_SLOTS   8u              /* the floor: lowest idle reading of 8 slots */
#define SN_MEMGUARD_FLOOR_SLOT_MS 500u            /* of 500 ms each (a 4 s window) */

static const char *const protocol_names[SN_MEMGUARD_PROTOCOLS] = {"grpc", "http"};

struct sn_memguard {
    uv_timer_t timer;
    uv_async_t wake;  /* another thread's first request after an idle stretch */
    int open_handles; /* the guard is freed when both handles are closed */
    int fd;           /* /proc/self/statm */
    uint64_t page;
    uint64_t limit;
    uint64_t refuse_at; /* bytes of resident set */
    atomic_bool over;
    uint64_t baseline;           /* resident bytes at create */
    uint64_t margin;             /* the limit's part no request may use */
    uint64_t budget;             /* request bytes at once, at most (UINT64_MAX: no limit) */
    _Atomic uint64_t budget_now; /* request bytes at once, now: budget less unaccounted growth */
    _Atomic uint64_t ceiling;    /* the largest request: budget less what no request can use */
    uint64_t unaccounted;        /* resident bytes no reservation stands for (decaying maximum) */
    uint64_t floor;              /* resident bytes besides kept memory with nothing reserved */
    uint64_t floor_sample;       /* the last sample of it */
    uint64_t floor_min[SN_MEMGUARD_FLOOR_SLOTS]; /* lowest sample per slot (UINT64_MAX: none) */
    uint64_t floor_slot;                         /* loop time / SN_MEMGUARD_FLOOR_SLOT_MS */
    _Atomic uint64_t reserved;                   /* request bytes reserved now */
    size_t (*kept)(void *ud); /* memory kept for reuse that reclaim frees (optional) */
    void (*reclaim)(void *ud);
    void *kept_ud;
    atomic_bool want_reclaim;  /* a reservation was refused for now: free the kept memory */
    unsigned interval;         /* ms between checks while there is traffic */
    unsigned period;           /* ms between checks now: interval, doubling while idle */
    atomic_bool asleep;        /* period > interval: the next request wakes the timer */
    uint64_t trim_checked;     /* loop time (ms) of the last trim decision */
    _Atomic uint64_t samples;  /* resident-set reads */
    _Atomic uint64_t admitted; /* requests let in, for the idle check */
    uint64_t admitted_seen;    /* at the previous trim decision (loop thread) */
    uint64_t admitted_tick;    /* at the previous tick (loop thread) */
    uint64_t anon_trimmed;     /* anonymous bytes after the last trim (loop thread) */
    bool trim_due;             /* requests came since the last trim with the process idle */
    sn_counter *refused[SN_MEMGUARD_PROTOCOLS];
    sn_gauge *over_gauge;
    sn_gauge *reserved_gauge;
    sn_gauge *budget_gauge;
    sn_gauge *ceiling_gauge;
    sn_gauge *kept_gauge;
    sn_counter *trims;
};

/* Reads the resident and anonymous (resident - file-backed/shared) bytes. Returns false when
 * statm cannot be read. */
static bool read_statm(sn_memguard *g, uint64_t *rss, uint64_t *anon)
{
    char buf[128];
    atomic_fetch_add(&g->samples, 1);
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

/* Gives freed heap memory back to the system and remembers the anonymous size after it; the
 * resident and anonymous sizes after it are in *rss and *anon (unchanged when unreadable).
 * Returns whether they were read. */
static bool trim(sn_memguard *g, uint64_t *rss, uint64_t *anon)
{
    malloc_trim(0);
    sn_counter_inc(g->trims);
    if (!read_statm(g, rss, anon))
        return false;
    g->anon_trimmed = *anon;
    return true;
}

/* Follows what the resident set holds besides the reservations (gRPC's stream buffers, kept
 * scratch and malloc arenas, batches): its maximum, decaying by 1/16 per check, never below the
 * baseline; and shrinks the budget by what it grew since the start. With nothing reserved, the
 * resident set less the kept memory (which a reclaim frees) is what no request can use (the
 * floor: the lowest such reading of the last 4 s, the baseline when there was none, so memory
 * that stays only for a while -- a shipping backlog, batches being sealed -- does not make
 * requests too large); the largest request is the budget less the floor's growth (but at least
 * a quarter of the budget: with less, memory is short for every request, which is "not now"),
 * and the budget of the moment never exceeds it, so "too large" and "not now" are judged
 * against the same memory. `kept` is the holders' kept
 * memory now; `trimmed`: the heap has not grown since the last trim (freed request buffers that
 * the next trim gives back are no floor -- a floor too high would refuse requests for good). */
static void update_budget(sn_memguard *g, uint64_t rss, uint64_t kept, bool trimmed, uint64_t ms)
{
    if (g->limit == 0)
        return;
    uint64_t reserved = atomic_load(&g->reserved);
    uint64_t now = rss > reserved ? rss - reserved : 0;
    uint64_t u = g->unaccounted - g->unaccounted / 16;
    if (u < now)
        u = now;
    if (u < g->baseline)
        u = g->baseline;
    g->unaccounted = u;
    uint64_t slot = ms / SN_MEMGUARD_FLOOR_SLOT_MS;
    if (slot - g->floor_slot >= SN_MEMGUARD_FLOOR_SLOTS) { /* the whole window passed */
        for (unsigned i = 0; i < SN_MEMGUARD_FLOOR_SLOTS; i++)
            g->floor_min[i] = UINT64_MAX;
        g->floor_slot = slot;
    }
    while (g->floor_slot < slot) /* slots the clock has entered start empty */
        g->floor_min[++g->floor_slot % SN_MEMGUARD_FLOOR_SLOTS] = UINT64_MAX;
    if (reserved == 0 && trimmed) {
        uint64_t sample = now > kept ? now - kept : 0;
        if (sample < g->baseline)
            sample = g->baseline;
        uint64_t *m = &g->floor_min[slot % SN_MEMGUARD_FLOOR_SLOTS];
        if (sample < *m)
            *m = sample;
        g->floor_sample = sample;
    }
    /* The lowest sample still in the window; none (continuous traffic leaves no moment with
     * nothing reserved): the baseline -- a floor nobody measured must not refuse requests for
     * good, and memory that is really held keeps `unaccounted` (so budget_now) down: "not now". */
    uint64_t f = UINT64_MAX;
    for (unsigned i = 0; i < SN_MEMGUARD_FLOOR_SLOTS; i++)
        f = g->floor_min[i] < f ? g->floor_min[i] : f;
    g->floor = f != UINT64_MAX ? f : g->baseline;
    uint64_t c = g->limit > g->floor + g->margin ? g->limit - g->floor - g->margin : 0;
    if (c > g->budget)
        c = g->budget;
    if (c < g->budget / 4) /* below: memory is short for every request, which is "not now" */
        c = g->budget / 4;
    uint64_t b = g->limit > u + g->margin ? g->limit - u - g->margin : 0;
    if (b > c)
        b = c;
    atomic_store(&g->ceiling, c);
    atomic_store(&g->budget_now, b);
}

/* True when the next check can wait longer: no request since the last one, nothing reserved,
 * under the threshold, no reclaim or idle trim pending and the unaccounted maximum settled. */
static bool quiet(sn_memguard *g, uint64_t rss, uint64_t anon, bool over)
{
    uint64_t admitted = atomic_load(&g->admitted);
    bool idle = admitted == g->admitted_tick;
    g->admitted_tick = admitted;
    uint64_t reserved = atomic_load(&g->reserved);
    uint64_t now = rss > reserved ? rss - reserved : 0;
    return idle && !over && reserved == 0 && !atomic_load(&g->want_reclaim) && !g->trim_due &&
           anon <= g->anon_trimmed + SN_MEMGUARD_TRIM_GROWTH &&
           (g->limit == 0 || (g->unaccounted <= now + SN_MEMGUARD_SETTLED_SLACK &&
                              g->floor_sample <= g->floor + SN_MEMGUARD_SETTLED_SLACK));
}

static void on_tick(uv_timer_t *t);

/* Sets the timer to check every `period` ms, the first check after `first` ms. */
static void set_period(sn_memguard *g, unsigned period, unsigned first)
{
    g->period = period;
    atomic_store(&g->asleep, period > g->interval);
    uv_timer_start(&g->timer, on_tick, first, period);
}

static void on_tick(uv_timer_t *t)
{
    sn_memguard *g = t->data;
    uint64_t rss = 0, anon = 0;
    if (!read_statm(g, &rss, &anon))
        return;
    bool over = g->limit > 0 && rss >= g->refuse_at;
    /* The trim policy (and a reclaim) runs at most every SN_MEMGUARD_TRIM_INTERVAL. */
    uint64_t ms = uv_now(t->loop);
    if (ms - g->trim_checked >= SN_MEMGUARD_TRIM_INTERVAL) {
        g->trim_checked = ms;
        uint64_t admitted = atomic_load(&g->admitted);
        bool idle = admitted == g->admitted_seen;
        g->admitted_seen = admitted;
        /* A refusal for now, or over the threshold: free the kept memory first. */
        bool reclaim = atomic_exchange(&g->want_reclaim, false) || over;
        if (reclaim && g->reclaim != NULL)
            g->reclaim(g->kept_ud);
        /* Once idle after requests (a trim under load, for a refusal, leaves the buffers
         * freed after it), or when the heap grew without requests. */
        bool settle = idle && (g->trim_due || anon > g->anon_trimmed + SN_MEMGUARD_TRIM_GROWTH);
        if (!idle)
            g->trim_due = true;
        if (reclaim || settle) {
            if (trim(g, &rss, &anon))
                over = g->limit > 0 && rss >= g->refuse_at;
            if (idle)
                g->trim_due = false;
        }
    }
    uint64_t kept = g->kept != NULL ? g->kept(g->kept_ud) : 0;
    sn_gauge_set(g->kept_gauge, (double)kept);
    update_budget(g, rss, kept, !g->trim_due && anon <= g->anon_trimmed + SN_MEMGUARD_TRIM_GROWTH,
                  ms);
    atomic_store(&g->over, over);
    sn_gauge_set(g->over_gauge, over ? 1.0 : 0.0);
    sn_gauge_set(g->reserved_gauge, (double)atomic_load(&g->reserved));
    sn_gauge_set(g->budget_gauge, g->limit > 0 ? (double)atomic_load(&g->budget_now) : 0.0);
    sn_gauge_set(g->ceiling_gauge, g->limit > 0 ? (double)atomic_load(&g->ceiling) : 0.0);
    /* Idle: the period doubles up to SN_MEMGUARD_IDLE_INTERVAL; any traffic brings it back. */
    unsigned period = g->interval;
    if (quiet(g, rss, anon, over)) {
        period =
            g->period >= SN_MEMGUARD_IDLE_INTERVAL / 2 ? SN_MEMGUARD_IDLE_INTERVAL : 2 * g->period;
        if (period < g->interval)
            period = g->interval;
    }
    if (period != g->period)
        set_period(g, period, period);
}

/* The loop side of a wake-up: a request arrived while the checks were spaced out; check now
 * and every interval_ms from then on. */
static void on_wake(uv_async_t *a)
{
    sn_memguard *g = a->data;
    if (g->period != g->interval || atomic_load(&g->want_reclaim))
        set_period(g, g->interval, 0);
}

/* Any thread: brings the checks back to interval_ms if they were spaced out while idle. */
static void wake(sn_memguard *g)
{
    if (atomic_load(&g->asleep) && atomic_exchange(&g->asleep, false))
        uv_async_send(&g->wake);
}

/* Registers the guard's metrics. Returns 0 or the registry's error. */
static int register_metrics(sn_memguard *g, sn_metrics *m, char *err, size_t errlen)
{
    sn_metrics_family *f = NULL;
    int rc;
    sn_metrics_desc rd = {.type = SN_METRICS_COUNTER,
                          .name = "sentinel_sidecar_memory_refused_total",
                          .help = "requests refused while over limits.memory or the request budget "
                                  "(retryable), or too large for the budget",
                          .labels = {"protocol"}};
    if ((rc = sn_metrics_register(m, &rd, &f, err, errlen)) != 0)
        return rc;
    for (int i = 0; i < SN_MEMGUARD_PROTOCOLS; i++) {
        const char *v[] = {protocol_names[i]};
        if ((g->refused[i] = sn_metrics_counter(f, v)) == NULL)
            return -ENOMEM;
    }
    sn_gauge *limit = NULL;
    if ((rc = sn_metrics_register_gauge(m, "sentinel_sidecar_memory_limit_bytes",
                                        "limits.memory (0: none)", &limit, err, errlen)) != 0 ||
        (rc = sn_metrics_register_gauge(m, "sentinel_sidecar_memory_over_limit",
                                        "1 while the resident set is over the refusal threshold",
                                        &g->over_gauge, err, errlen)) != 0)
        return rc;
    sn_gauge_set(limit, (double)g->limit);
    sn_metrics_desc td = {.type = SN_METRICS_COUNTER,
                          .name = "sentinel_sidecar_memory_trims_total",
                          .help = "malloc_trim calls (over the threshold, or idle after a burst)"};
    if ((rc = sn_metrics_register(m, &td, &f, err, errlen)) != 0)
        return rc;
    if ((g->trims = sn_metrics_counter(f, NULL)) == NULL)
        return -ENOMEM;
    sn_gauge *baseline = NULL;
    if ((rc = sn_metrics_register_gauge(
             m, "sentinel_sidecar_memory_budget_bytes",
             "request bytes the transports may hold at once now (limits.memory "
             "minus the memory no request holds and a margin; 0: no limit)",
             &g->budget_gauge, err, errlen)) != 0 ||
        (rc = sn_metrics_register_gauge(m, "sentinel_sidecar_memory_baseline_bytes",
                                        "resident set when the memory guard started", &baseline,
                                        err, errlen)) != 0 ||
        (rc = sn_metrics_register_gauge(
             m, "sentinel_sidecar_memory_request_max_bytes",
             "the largest request reservation taken now: the budget less the memory no request "
             "can use (more is refused as too large; 0: no limit)",
             &g->ceiling_gauge, err, errlen)) != 0 ||
        (rc = sn_metrics_register_gauge(
             m, "sentinel_sidecar_memory_kept_bytes",
             "memory kept for reuse between requests (idle request scratches), freed when a "
             "request needs the room",
             &g->kept_gauge, err, errlen)) != 0 ||
        (rc = sn_metrics_register_gauge(
             m, "sentinel_sidecar_memory_reserved_bytes",
             "request bytes reserved against the budget (sampled every check)", &g->reserved_gauge,
             err, errlen)) != 0)
        return rc;
    sn_gauge_set(g->budget_gauge, g->limit > 0 ? (double)g->budget : 0.0);
    sn_gauge_set(g->ceiling_gauge, g->limit > 0 ? (double)g->budget : 0.0);
    sn_gauge_set(baseline, (double)g->baseline);
    return 0;
}

/* Sets the baseline from the resident set now and derives the request budget (memguard.h). */
static void set_budget(sn_memguard *g, uint64_t rss)
{
    g->baseline = rss;
    g->unaccounted = rss;
    g->floor = g->floor_sample = rss;
    for (unsigned i = 0; i < SN_MEMGUARD_FLOOR_SLOTS; i++)
        g->floor_min[i] = UINT64_MAX;
    if (g->limit == 0) {
        g->budget = UINT64_MAX;
        atomic_init(&g->budget_now, UINT64_MAX);
        atomic_init(&g->ceiling, UINT64_MAX);
        return;
    }
    uint64_t above = g->limit > rss ? g->limit - rss : 0;
    g->margin = above / 3 > SN_MEMGUARD_MIN_MARGIN ? above / 3 : SN_MEMGUARD_MIN_MARGIN;
    g->budget = above > g->margin ? above - g->margin : 0;
    atomic_init(&g->budget_now, g->budget);
    atomic_init(&g->ceiling, g->budget);
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
    if ((cfg->kept == NULL) != (cfg->reclaim == NULL)) {
        snprintf(err, errlen, "memory guard: kept memory needs both kept and reclaim");
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
    g->interval = g->period = interval;
    g->kept = cfg->kept;
    g->reclaim = cfg->reclaim;
    g->kept_ud = cfg->kept_ud;
    atomic_init(&g->want_reclaim, false);
    atomic_init(&g->asleep, false);
    atomic_init(&g->samples, 0);
    atomic_init(&g->over, false);
    atomic_init(&g->admitted, 0);
    atomic_init(&g->reserved, 0);
    int rc;
    g->fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (g->fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "memory guard: cannot open /proc/self/statm: %s", strerror(errno));
        goto out_free;
    }
    uint64_t rss = 0;
    (void)read_statm(g, &rss, &g->anon_trimmed);
    set_budget(g, rss);
    g->floor_slot = uv_now(loop) / SN_MEMGUARD_FLOOR_SLOT_MS;
    g->floor_min[g->floor_slot % SN_MEMGUARD_FLOOR_SLOTS] = rss;
    if (cfg->metrics != NULL && (rc = register_metrics(g, cfg->metrics, err, errlen)) != 0)
        goto out_close;
    if ((rc = uv_async_init(loop, &g->wake, on_wake)) != 0) {
        snprintf(err, errlen, "memory guard: %s", uv_strerror(rc));
        goto out_close;
    }
    g->wake.data = g;
    uv_unref((uv_handle_t *)&g->wake);
    uv_timer_init(loop, &g->timer);
    g->timer.data = g;
    g->open_handles = 2;
    g->trim_checked = uv_now(loop);
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

int sn_memguard_reserve(sn_memguard *g, sn_memguard_protocol protocol, size_t more, size_t held)
{
    int rc = -EAGAIN;
    if (more == 0)
        return 0;
    wake(g);
    /* Never, not even at start; not now while over the threshold; never while the process
     * holds what it holds with nothing reserved (the ceiling); not now (the budget of now). */
    if (g->limit > 0 && (held > g->budget || more > g->budget - held)) {
        rc = -E2BIG;
        goto refuse;
    }
    if (atomic_load(&g->over))
        goto refuse;
    uint64_t ceiling = atomic_load(&g->ceiling);
    if (g->limit > 0 && (held > ceiling || more > ceiling - held)) {
        rc = -E2BIG;
        goto refuse;
    }
    uint64_t before = atomic_fetch_add(&g->reserved, (uint64_t)more);
    if (g->limit > 0 && before + more > atomic_load(&g->budget_now)) {
        atomic_fetch_sub(&g->reserved, (uint64_t)more);
        /* It fits the ceiling: a retry fits once the requests in flight are answered or the
         * memory outside the reservations shrinks. Only in the second case -- it would fit
         * now beside the others' reservations if that memory were back at the floor -- does
         * freeing the kept memory help (the next trim decision reclaims and trims); a refusal
         * because others hold the budget asks for nothing. */
        if (before + more <= ceiling)
            atomic_store(&g->want_reclaim, true);
        goto refuse;
    }
    if (held == 0)
        atomic_fetch_add(&g->admitted, 1);
    return 0;

refuse:
    sn_counter_inc(g->refused[protocol]);
    return rc;
}

void sn_memguard_release(sn_memguard *g, size_t bytes)
{
    if (bytes > 0)
        atomic_fetch_sub(&g->reserved, (uint64_t)bytes);
}

size_t sn_memguard_available(const sn_memguard *g)
{
    uint64_t used = atomic_load(&((sn_memguard *)g)->reserved);
    if (g->limit == 0)
        return SIZE_MAX;
    uint64_t now = atomic_load(&((sn_memguard *)g)->budget_now);
    uint64_t left = used < now ? now - used : 0;
    return left > SIZE_MAX ? SIZE_MAX : (size_t)left;
}

size_t sn_memguard_budget(const sn_memguard *g)
{
    return g->budget > SIZE_MAX ? SIZE_MAX : (size_t)g->budget;
}

int sn_memguard_reserve_grpc(void *ud, size_t more, size_t held)
{
    return sn_memguard_reserve(ud, SN_MEMGUARD_GRPC, more, held);
}

int sn_memguard_reserve_http(void *ud, size_t more, size_t held)
{
    return sn_memguard_reserve(ud, SN_MEMGUARD_HTTP, more, held);
}

void sn_memguard_release_cb(void *ud, size_t bytes)
{
    sn_memguard_release(ud, bytes);
}

size_t sn_memguard_available_cb(void *ud)
{
    return sn_memguard_available(ud);
}

bool sn_memguard_over(const sn_memguard *g)
{
    return atomic_load(&((sn_memguard *)g)->over);
}

uint64_t sn_memguard_samples(const sn_memguard *g)
{
    return atomic_load(&((sn_memguard *)g)->samples);
}

/* The handles' close callback: frees the guard after the second. */
static void on_closed(uv_handle_t *h)
{
    sn_memguard *g = h->data;
    if (--g->open_handles > 0)
        return;
    close(g->fd);
    free(g);
}

void sn_memguard_close(sn_memguard *g)
{
    if (g == NULL)
        return;
    uv_timer_stop(&g->timer);
    uv_close((uv_handle_t *)&g->timer, on_closed);
    uv_close((uv_handle_t *)&g->wake, on_closed);
}
