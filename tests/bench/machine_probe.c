/*
 * machine_probe.c -- sentinel-bench-machine: what this machine itself costs, without any of our
 * code or gRPC, so that the sidecar's latency figures can be read against a floor.
 *
 * Three measures, each the distribution of many samples:
 *   fault   an anonymous page's first write (mmap, touch every page, munmap; microseconds per
 *           page, one sample per round of --fault-mib MiB). On bare metal about 0.1-0.3 us; on
 *           a VM whose guest page faults trap to the hypervisor, tens of times more.
 *   tcp     a request of B bytes over a loopback TCP connection to a forked process that reads
 *           all B bytes into one reused buffer and answers 8 bytes (the count it read): the
 *           client's time from its first write to the answer. Nothing else touches the bytes,
 *           so this is the transport floor an Export of that size pays on this machine. The
 *           requests are paced (--pace-ms between them), like the benchmark's fixed rate, so
 *           each one meets idle threads, as a request at 10 000 spans/s does.
 *   wake    a thread woken through an eventfd by another thread of the same process: half
 *           the round trip of a ping-pong, paced like tcp; both threads on the server CPU
 *           (the sidecar's own hand-offs), then one on each CPU (a client and its server:
 *           the woken CPU was idle, as at a fixed rate).
 *
 *   sentinel-bench-machine [--bytes N[,N...]] [--rounds N] [--pace-ms N] [--fault-mib N]
 *                          [--server-cpu C] [--client-cpu C] [--json] [--quick]
 *
 * Defaults: --bytes 459000,29000,64 (the benchmark's 512- and 32-span requests, and a
 * request of almost nothing), --rounds 400,
 * --pace-ms 5, --fault-mib 16 (20 rounds), --server-cpu 0, --client-cpu 1 (-1: not pinned).
 * --quick: 20 rounds of each, for the test that checks the tool works (every answer carries
 * the byte count the server read; a short or failed transfer fails the run). Exit status: 0,
 * 1 when a measure failed, 2 for bad usage.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZES  8
#define MAX_ROUNDS 100000
#define IO_CHUNK   (1u << 20) /* the server's one reused read buffer */

typedef struct probe_opts {
    size_t sizes[MAX_SIZES];
    size_t nsizes;
    long rounds;
    long pace_ms;
    long fault_mib;
    int server_cpu, client_cpu;
    bool json;
} probe_opts;

/* p50 / p99 / max of a sample set, in microseconds. */
typedef struct dist {
    double p50, p99, max;
} dist;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Pins the calling thread to cpu (< 0: leaves it). Returns 0 or -errno. */
static int pin(int cpu)
{
    if (cpu < 0)
        return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    return -rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v (n > 0 samples) in place and returns its p50 / p99 / max (nearest rank). */
static dist summarize(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    size_t i99 = (size_t)((double)n * 0.99 + 0.999999);
    i99 = i99 == 0 ? 0 : i99 - 1;
    return (dist){v[(n - 1) / 2], v[i99 < n ? i99 : n - 1], v[n - 1]};
}

/* ---- fault ------------------------------------------------------------------------------- */

/* Fills v[0..rounds) with microseconds per first-touched anonymous page. Returns 0 or -errno. */
static int probe_fault(const probe_opts *o, double *v, size_t rounds)
{
    size_t len = (size_t)o->fault_mib << 20;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        return -EINVAL;
    for (size_t r = 0; r < rounds; r++) {
        volatile unsigned char *p =
            mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return -errno;
        double t0 = now_us();
        for (size_t off = 0; off < len; off += (size_t)page)
            p[off] = 1;
        double t1 = now_us();
        munmap((void *)p, len);
        v[r] = (t1 - t0) / (double)(len / (size_t)page);
    }
    return 0;
}

/* ---- tcp --------------------------------------------------------------------------------- */

/* Writes all of buf. Returns 0 or -errno (-EPIPE when the peer is gone). */
static int write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EPIPE;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Reads exactly len bytes into buf. Returns 0, -EPIPE at end of stream, or -errno. */
static int read_all(int fd, void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -EPIPE;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

/* The forked server: for each request, an 8-byte length then that many bytes, read into one
 * reused buffer; answers the count it read. Never returns. */
static void tcp_server(int lfd, int cpu)
{
    int rc = 1;
    unsigned char *buf = NULL;
    int fd = -1;
    if (pin(cpu) != 0)
        goto out;
    buf = malloc(IO_CHUNK);
    if (buf == NULL)
        goto out;
    memset(buf, 0, IO_CHUNK); /* touched once: no page faults while measured */
    fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        goto out;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (;;) {
        uint64_t want;
        int r = read_all(fd, &want, sizeof want);
        if (r == -EPIPE) {
            rc = 0; /* the client is done */
            break;
        }
        if (r != 0)
            break;
        uint64_t got = 0;
        while (got < want) {
            size_t ask = want - got < IO_CHUNK ? (size_t)(want - got) : IO_CHUNK;
            ssize_t n = read(fd, buf, ask);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                goto out;
            got += (uint64_t)n;
        }
        if (write_all(fd, &got, sizeof got) != 0)
            break;
    }
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    _exit(rc);
}

/* Fills v[0..rounds) with the microseconds of paced `size`-byte requests to a forked server.
 * Returns 0, -EIO when an answer's count was not `size`, or -errno. */
static int probe_tcp(const probe_opts *o, size_t size, double *v, size_t rounds)
{
    int rc = 0, lfd = -1, fd = -1;
    pid_t child = -1;
    unsigned char *req = NULL;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 1) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) != 0) {
        rc = -errno;
        goto out;
    }
    child = fork();
    if (child < 0) {
        rc = -errno;
        goto out;
    }
    if (child == 0)
        tcp_server(lfd, o->server_cpu);
    req = malloc(sizeof(uint64_t) + size);
    if (req == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < sizeof(uint64_t) + size; i++)
        req[i] = (unsigned char)(i * 131u);
    uint64_t n64 = size;
    memcpy(req, &n64, sizeof n64);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        rc = -errno;
        goto out;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Two unmeasured requests first: connection warm-up (socket buffers, the server's first
     * read). */
    for (size_t r = 0; r < rounds + 2; r++) {
        double t0 = now_us();
        uint64_t got = 0;
        if ((rc = write_all(fd, req, sizeof(uint64_t) + size)) != 0 ||
            (rc = read_all(fd, &got, sizeof got)) != 0)
            goto out;
        double t1 = now_us();
        if (got != size) {
            rc = -EIO;
            goto out;
        }
        if (r >= 2)
            v[r - 2] = t1 - t0;
        sleep_ms(o->pace_ms);
    }
out:
    if (fd >= 0)
        close(fd); /* the server sees the end of the stream and exits 0 */
    if (lfd >= 0)
        close(lfd);
    if (child > 0) {
        int st = 0;
        if (rc != 0)
            kill(child, SIGKILL);
        if (waitpid(child, &st, 0) == child && rc == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
            rc = -EIO;
    }
    free(req);
    return rc;
}

/* ---- wake -------------------------------------------------------------------------------- */

typedef struct ponger {
    int ping, pong; /* eventfds */
    int cpu;
    int rc;
} ponger;

/* The woken thread: answers every ping until a ping of value 2 (stop). */
static void *pong_main(void *arg)
{
    ponger *p = arg;
    if ((p->rc = pin(p->cpu)) != 0)
        return NULL;
    for (;;) {
        uint64_t x;
        if (read(p->ping, &x, sizeof x) != (ssize_t)sizeof x) {
            p->rc = -errno;
            return NULL;
        }
        if (x >= 2)
            return NULL;
        uint64_t one = 1;
        if (write(p->pong, &one, sizeof one) != (ssize_t)sizeof one) {
            p->rc = -errno;
            return NULL;
        }
    }
}

/* Fills v[0..rounds) with half the microseconds of paced eventfd ping-pongs between the
 * caller's thread, pinned to the server CPU, and a thread pinned to other_cpu (the server CPU
 * too, or the client CPU: a wake-up of the other CPU). Returns 0 or -errno. */
static int probe_wake(const probe_opts *o, int other_cpu, double *v, size_t rounds)
{
    int rc = 0;
    bool started = false;
    pthread_t th;
    ponger p = {.ping = eventfd(0, EFD_CLOEXEC), .pong = eventfd(0, EFD_CLOEXEC), .cpu = other_cpu};
    if (p.ping < 0 || p.pong < 0) {
        rc = -errno;
        goto out;
    }
    if ((rc = pin(o->server_cpu)) != 0)
        goto out;
    if ((rc = -pthread_create(&th, NULL, pong_main, &p)) != 0)
        goto out;
    started = true;
    for (size_t r = 0; r < rounds + 2; r++) {
        uint64_t one = 1, x;
        double t0 = now_us();
        if (write(p.ping, &one, sizeof one) != (ssize_t)sizeof one ||
            read(p.pong, &x, sizeof x) != (ssize_t)sizeof x) {
            rc = -errno;
            goto out;
        }
        double t1 = now_us();
        if (r >= 2)
            v[r - 2] = (t1 - t0) / 2;
        sleep_ms(o->pace_ms);
    }
out:
    if (started) {
        uint64_t stop = 2;
        if (write(p.ping, &stop, sizeof stop) != (ssize_t)sizeof stop)
            pthread_cancel(th);
        pthread_join(th, NULL);
        if (rc == 0)
            rc = p.rc;
    }
    if (p.ping >= 0)
        close(p.ping);
    if (p.pong >= 0)
        close(p.pong);
    return rc;
}

/* ---- main -------------------------------------------------------------------------------- */

static int usage(const char *prog, const char *why)
{
    if (why != NULL)
        fprintf(stderr, "%s: %s\n", prog, why);
    fprintf(why != NULL ? stderr : stdout,
            "usage: %s [--bytes N[,N...]] [--rounds N] [--pace-ms N] [--fault-mib N]\n"
            "          [--server-cpu C] [--client-cpu C] [--json] [--quick]\n"
            "what this machine costs without our code: an anonymous page fault, a loopback TCP\n"
            "request of N bytes answered by another process, a thread wake-up on the same and on\n"
            "the other CPU\n"
            "(defaults: --bytes 459000,29000,64 --rounds 400 --pace-ms 5 --fault-mib 16\n"
            " --server-cpu 0 --client-cpu 1; a CPU of -1 is not pinned)\n",
            prog);
    return why != NULL ? 2 : 0;
}

/* Parses a decimal in [lo, hi] into *out. Returns false when v is not one. */
static bool parse_long(const char *v, long lo, long hi, long *out)
{
    char *end;
    if (v == NULL || *v == '\0')
        return false;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < lo || n > hi)
        return false;
    *out = n;
    return true;
}

/* Parses "N[,N...]" into o->sizes. Returns false on a bad or missing list. */
static bool parse_sizes(const char *v, probe_opts *o)
{
    char tmp[256];
    if (v == NULL || strlen(v) >= sizeof tmp)
        return false;
    strcpy(tmp, v);
    o->nsizes = 0;
    char *save = NULL;
    for (char *t = strtok_r(tmp, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        long n;
        if (o->nsizes == MAX_SIZES || !parse_long(t, 1, 64L << 20, &n))
            return false;
        o->sizes[o->nsizes++] = (size_t)n;
    }
    return o->nsizes > 0;
}

static void print_dist(const probe_opts *o, const char *name, const char *unit, dist d, bool *first)
{
    if (o->json) {
        printf("%s\"%s\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f}", *first ? "" : ",", name, d.p50,
               d.p99, d.max);
        *first = false;
    } else {
        printf("  %-26s p50 %9.2f  p99 %9.2f  max %9.2f %s\n", name, d.p50, d.p99, d.max, unit);
    }
}

int main(int argc, char **argv)
{
    probe_opts o = {.sizes = {459000, 29000, 64},
                    .nsizes = 3,
                    .rounds = 400,
                    .pace_ms = 5,
                    .fault_mib = 16,
                    .server_cpu = 0,
                    .client_cpu = 1};
    bool quick = false;
    long n;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return usage(argv[0], NULL);
        else if (strcmp(a, "--json") == 0)
            o.json = true;
        else if (strcmp(a, "--quick") == 0)
            quick = true;
        else if (strcmp(a, "--bytes") == 0 && parse_sizes(v, &o))
            i++;
        else if (strcmp(a, "--rounds") == 0 && parse_long(v, 1, MAX_ROUNDS, &o.rounds))
            i++;
        else if (strcmp(a, "--pace-ms") == 0 && parse_long(v, 0, 10000, &o.pace_ms))
            i++;
        else if (strcmp(a, "--fault-mib") == 0 && parse_long(v, 1, 1024, &o.fault_mib))
            i++;
        else if (strcmp(a, "--server-cpu") == 0 && parse_long(v, -1, CPU_SETSIZE - 1, &n))
            o.server_cpu = (int)n, i++;
        else if (strcmp(a, "--client-cpu") == 0 && parse_long(v, -1, CPU_SETSIZE - 1, &n))
            o.client_cpu = (int)n, i++;
        else
            return usage(argv[0], "bad or unknown option (see --help)");
    }
    if (quick)
        o.rounds = 20;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (o.server_cpu >= ncpu || o.client_cpu >= ncpu) {
        o.server_cpu = -1; /* fewer CPUs than asked for: nothing pinned */
        o.client_cpu = -1;
    }

    int rc = 1;
    size_t rounds = (size_t)o.rounds;
    double *v = malloc(rounds * sizeof *v);
    if (v == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    bool first = true;
    if (o.json)
        printf("{\"server_cpu\":%d,\"client_cpu\":%d,\"rounds\":%ld,\"pace_ms\":%ld,", o.server_cpu,
               o.client_cpu, o.rounds, o.pace_ms);
    else
        printf("sentinel-bench-machine: server CPU %d, client CPU %d, %ld rounds, %ld ms apart\n",
               o.server_cpu, o.client_cpu, o.rounds, o.pace_ms);

    size_t frounds = quick ? 5 : 20;
    int err = probe_fault(&o, v, frounds);
    if (err != 0) {
        fprintf(stderr, "fault: %s\n", strerror(-err));
        goto out;
    }
    print_dist(&o, "fault_us_per_page", "us", summarize(v, frounds), &first);

    /* The client side of tcp runs on this thread: pinned to the client CPU for tcp, then to
     * the server CPU for wake. */
    if ((err = pin(o.client_cpu)) != 0) {
        fprintf(stderr, "pin: %s\n", strerror(-err));
        goto out;
    }
    for (size_t s = 0; s < o.nsizes; s++) {
        if ((err = probe_tcp(&o, o.sizes[s], v, rounds)) != 0) {
            fprintf(stderr, "tcp %zu bytes: %s\n", o.sizes[s],
                    err == -EIO ? "answer did not match the request" : strerror(-err));
            goto out;
        }
        char name[64];
        snprintf(name, sizeof name, "tcp_%zu_us", o.sizes[s]);
        print_dist(&o, name, "us", summarize(v, rounds), &first);
    }
    if ((err = probe_wake(&o, o.server_cpu, v, rounds)) != 0) {
        fprintf(stderr, "wake: %s\n", strerror(-err));
        goto out;
    }
    print_dist(&o, "wake_same_cpu_us", "us", summarize(v, rounds), &first);
    if ((err = probe_wake(&o, o.client_cpu, v, rounds)) != 0) {
        fprintf(stderr, "wake: %s\n", strerror(-err));
        goto out;
    }
    print_dist(&o, "wake_other_cpu_us", "us", summarize(v, rounds), &first);
    rc = 0;
out:
    if (o.json)
        printf("}\n");
    free(v);
    return rc;
}
