/*
 * compress_bench.c -- sentinel-bench-compress: how well and how fast the sidecar's event batches
 * compress, with zstd at several levels and gzip for comparison.
 *
 *   sentinel-bench-compress [--quick] [--runs N] [--reps N] [--events N] [--method NAME]
 *                           [--scenario FILE]
 *
 * The batches are the real wire format: sentinel.v1.Batch messages made by the sidecar's own
 * encoder (sidecar/batch.h, sn_batch_encode with compression off) from 64, 512 and 2000
 * consecutive events of a labelled scenario (default tests/data/scenarios/mixed.json: two
 * services, three models, heavy-tailed tokens, incidents), each event given the pod and service
 * version a real sidecar takes from the span's resource. For every batch and method (zstd's fast
 * levels -5 and -1; levels 1, 2, 3 and 6; level 1 with advanced parameters -- raw literals, hash
 * log, window log, minimum match, target length, checksum -- set once on the context as the
 * sidecar sets them; gzip level 6 through zlib) it reports the compressed size and ratio, and
 * compress / decompress speed in MB/s of uncompressed Batch and microseconds per batch: the
 * median of --runs runs (default 5), each timing enough repetitions to take about 50 ms of this
 * thread's CPU time (CPU time, not wall time: the machine may be shared), or exactly --reps
 * repetitions. Every decompression is compared with the original bytes, and the sidecar
 * encoder's own zstd output with its default settings (the row marked "sidecar default") is
 * checked to be byte for byte what this benchmark compresses, so the figures are those of the
 * sidecar's batches.
 *
 * --events N: only batches of N events; --method NAME: only that row. For exact instruction
 * counts: valgrind --tool=callgrind --toggle-collect='timed_compress*'
 * --toggle-collect='timed_decompress*' with --reps N --runs 1 (N calls of each).
 *
 * --quick: one repetition of each (no timing worth reading), same checks. Prints a Markdown
 * table on stdout. Exit status: 0, 1 when a round trip or a check fails, 2 on bad usage.
 */
#include "batch.h"
#include "scenario.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_c_literalCompressionMode (parameter values only) */
#include <zstd.h>

#ifndef SN_BENCH_SCENARIO
#define SN_BENCH_SCENARIO "tests/data/scenarios/mixed.json"
#endif

#define CB_MAX_EVENTS 2000
#define CB_MAX_RUNS   21
#define CB_MIN_CPU_S  0.05

static const size_t batch_sizes[] = {64, 512, 2000};

typedef enum { M_ZSTD, M_GZIP } cb_kind;
/* One way to compress. For zstd, the advanced parameters are 0 for "the level's own value";
 * raw_literals sets ZSTD_c_literalCompressionMode to ZSTD_ps_disable; checksum adds the frame
 * checksum. */
typedef struct cb_method {
    const char *name;
    cb_kind kind;
    int level;
    bool raw_literals;
    int hash_log, window_log, min_match, target_length;
    bool checksum;
} cb_method;

#define Z(lvl) .kind = M_ZSTD, .level = (lvl)
/* zstd's fast (negative) levels (also with the sidecar's hash and window logs for them), 1 to 3,
 * 6, level 1 with advanced parameters, and gzip; the rows of the sidecar's default
 * (SN_BATCH_ZSTD_LEVEL_DEFAULT, SN_BATCH_ZSTD_RAW_LITERALS_DEFAULT, the hash and window logs of
 * level 1 and the fast levels)
 * are marked in the table. */
static const cb_method methods[] = {
    {"zstd--5", Z(-5)},
    {"zstd--1", Z(-1)},
    {"zstd-1", Z(1)},
    {"zstd-1 raw-lit", Z(1), .raw_literals = true},
    {"zstd-1 hlog12", Z(1), .hash_log = 12},
    {"zstd-1 hlog11", Z(1), .hash_log = 11},
    {"zstd-1 hlog10", Z(1), .hash_log = 10},
    {"zstd-1 hlog13 raw-lit", Z(1), .hash_log = 13, .raw_literals = true},
    {"zstd-1 hlog12 raw-lit", Z(1), .hash_log = 12, .raw_literals = true},
    {"zstd-1 wlog17", Z(1), .window_log = 17},
    {"zstd-1 hlog12 raw-lit wlog16", Z(1), .hash_log = 12, .raw_literals = true, .window_log = 16},
    {"zstd-1 hlog12 raw-lit wlog15", Z(1), .hash_log = 12, .raw_literals = true, .window_log = 15},
    {"zstd-1 mml4", Z(1), .min_match = 4},
    {"zstd-1 mml5", Z(1), .min_match = 5},
    {"zstd-1 mml6", Z(1), .min_match = 6},
    {"zstd-1 mml7", Z(1), .min_match = 7},
    {"zstd-1 mml5 raw-lit", Z(1), .min_match = 5, .raw_literals = true},
    {"zstd-1 hlog12 mml5 raw-lit", Z(1), .hash_log = 12, .min_match = 5, .raw_literals = true},
    {"zstd--1 hlog12 wlog16", Z(-1), .hash_log = 12, .window_log = 16, .raw_literals = true},
    {"zstd--2 hlog12 wlog16", Z(-2), .hash_log = 12, .window_log = 16, .raw_literals = true},
    {"zstd--3 hlog12 wlog16", Z(-3), .hash_log = 12, .window_log = 16, .raw_literals = true},
    {"zstd--2 hlog12 wlog16 mml6", Z(-2), .hash_log = 12, .window_log = 16, .raw_literals = true,
     .min_match = 6},
    {"zstd--2 hlog12 wlog16 mml4", Z(-2), .hash_log = 12, .window_log = 16, .raw_literals = true,
     .min_match = 4},
    {"zstd--4 hlog12 wlog16", Z(-4), .hash_log = 12, .window_log = 16, .raw_literals = true},
    {"zstd-1 tlen2", Z(1), .target_length = 2},
    {"zstd-1 tlen4", Z(1), .target_length = 4},
    {"zstd-1 checksum", Z(1), .checksum = true},
    {"zstd-2", Z(2)},
    {"zstd-2 raw-lit", Z(2), .raw_literals = true},
    {"zstd-3", Z(3)},
    {"zstd-3 raw-lit", Z(3), .raw_literals = true},
    {"zstd-6", Z(6)},
    {"gzip-6", .kind = M_GZIP, .level = 6},
};
#undef Z

/* The compressors' state, reused from batch to batch as the sidecar reuses its context. */
typedef struct cb_codec {
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
    z_stream gz, gunz;
    bool gz_ok, gunz_ok;
} cb_codec;

/* This thread's CPU time in seconds. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The row of the sidecar's default batch settings (sn_batch_config_init). */
static const cb_method *sidecar_default(void)
{
    for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++) {
        const cb_method *m = &methods[k];
        if (m->kind == M_ZSTD && m->level == SN_BATCH_ZSTD_LEVEL_DEFAULT &&
            m->raw_literals == SN_BATCH_ZSTD_RAW_LITERALS_DEFAULT &&
            m->hash_log == (SN_BATCH_ZSTD_LEVEL_DEFAULT <= 1 ? SN_BATCH_ZSTD_HASH_LOG_FAST : 0) &&
            m->window_log ==
                (SN_BATCH_ZSTD_LEVEL_DEFAULT <= 1 ? SN_BATCH_ZSTD_WINDOW_LOG_FAST : 0) &&
            m->min_match == 0 && m->target_length == 0 && !m->checksum)
            return m;
    }
    return NULL;
}

/* Sets m's parameters on c's zstd context (sticky, as the sidecar sets them once). Returns 0,
 * or -1 when zstd refuses one. No-op for gzip. */
static int set_params(cb_codec *c, const cb_method *m)
{
    if (m->kind != M_ZSTD)
        return 0;
    ZSTD_CCtx *z = c->zc;
    size_t r = ZSTD_CCtx_reset(z, ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, m->level);
    if (!ZSTD_isError(r) && m->raw_literals)
        r = ZSTD_CCtx_setParameter(z, ZSTD_c_literalCompressionMode, ZSTD_ps_disable);
    if (!ZSTD_isError(r) && m->hash_log > 0)
        r = ZSTD_CCtx_setParameter(z, ZSTD_c_hashLog, m->hash_log);
    if (!ZSTD_isError(r) && m->window_log > 0)
        r = ZSTD_CCtx_setParameter(z, ZSTD_c_windowLog, m->window_log);
    if (!ZSTD_isError(r) && m->min_match > 0)
        r = ZSTD_CCtx_setParameter(z, ZSTD_c_minMatch, m->min_match);
    if (!ZSTD_isError(r) && m->target_length > 0)
        r = ZSTD_CCtx_setParameter(z, ZSTD_c_targetLength, m->target_length);
    if (!ZSTD_isError(r) && m->checksum)
        r = ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
    if (ZSTD_isError(r)) {
        fprintf(stderr, "sentinel-bench-compress: %s: %s\n", m->name, ZSTD_getErrorName(r));
        return -1;
    }
    return 0;
}

/* Compresses src[0..n) with m into dst (cap bytes). Returns the compressed size, or 0 on error. */
static size_t compress_one(cb_codec *c, const cb_method *m, const uint8_t *src, size_t n,
                           uint8_t *dst, size_t cap)
{
    if (m->kind == M_ZSTD) {
        size_t r = ZSTD_compress2(c->zc, dst, cap, src, n);
        return ZSTD_isError(r) ? 0 : r;
    }
    if (deflateReset(&c->gz) != Z_OK)
        return 0;
    c->gz.next_in = (Bytef *)src;
    c->gz.avail_in = (uInt)n;
    c->gz.next_out = dst;
    c->gz.avail_out = (uInt)cap;
    if (deflate(&c->gz, Z_FINISH) != Z_STREAM_END)
        return 0;
    return cap - c->gz.avail_out;
}

/* Decompresses src[0..n) (made by m) into dst (cap bytes). Returns the size, or 0 on error. */
static size_t decompress_one(cb_codec *c, const cb_method *m, const uint8_t *src, size_t n,
                             uint8_t *dst, size_t cap)
{
    if (m->kind == M_ZSTD) {
        size_t r = ZSTD_decompressDCtx(c->zd, dst, cap, src, n);
        return ZSTD_isError(r) ? 0 : r;
    }
    if (inflateReset(&c->gunz) != Z_OK)
        return 0;
    c->gunz.next_in = (Bytef *)src;
    c->gunz.avail_in = (uInt)n;
    c->gunz.next_out = dst;
    c->gunz.avail_out = (uInt)cap;
    if (inflate(&c->gunz, Z_FINISH) != Z_STREAM_END)
        return 0;
    return cap - c->gunz.avail_out;
}

/* Reads the first CB_MAX_EVENTS events of the scenario at path into evs, with the pod and
 * service version a sidecar would add. Returns 0, or -1 with a message on stderr. */
static int load_events(const char *path, sn_event *evs)
{
    char err[512];
    sn_scenario *sc = NULL;
    sn_scenario_gen *gen = NULL;
    int rc = -1;
    if (sn_scenario_load(&sc, path, err, sizeof err) != 0) {
        fprintf(stderr, "sentinel-bench-compress: %s\n", err);
        goto out;
    }
    if (sn_scenario_gen_create(&gen, sc) != 0) {
        fprintf(stderr, "sentinel-bench-compress: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < CB_MAX_EVENTS; i++) {
        if (!sn_scenario_next(gen, &evs[i], NULL)) {
            fprintf(stderr, "sentinel-bench-compress: %s has fewer than %d events\n", path,
                    CB_MAX_EVENTS);
            goto out;
        }
        snprintf(evs[i].pod, sizeof evs[i].pod, "%.40s-7f9c4d5b8-%c%c2k9", evs[i].service,
                 'a' + (int)(i % 3), 'p' + (int)(i % 5));
        snprintf(evs[i].service_version, sizeof evs[i].service_version, "1.4.2");
    }
    rc = 0;
out:
    sn_scenario_gen_destroy(gen);
    sn_scenario_destroy(sc);
    return rc;
}

/* The serialized Batch of evs[0..n) as the sidecar encodes it, into *raw (malloc'd, the caller
 * frees it). Also checks that the encoder's zstd output at the default level equals zstd_ref's
 * compression of those bytes. Returns the size, or 0 with a message on stderr. */
static size_t encode_batch(const sn_event *evs, size_t n, uint8_t **raw, cb_codec *c)
{
    sn_batch_config cfg;
    sn_batch_config_init(&cfg);
    sn_batch b = {.sidecar_id = "chatbot-api-7f9c4d5b8-x2k9p/5e1d0c3a",
                  .sequence = 4711,
                  .events = evs,
                  .n_events = n,
                  .created_unix_nano = evs[n - 1].end_unix_nano};
    sn_batch_encoder *plain = NULL, *zenc = NULL;
    char err[256];
    size_t out = 0;
    uint8_t *ref = NULL;
    const uint8_t *bytes;
    size_t len, blen;
    cfg.zstd_level = 0;
    if (sn_batch_encoder_create(&cfg, &plain, err, sizeof err) != 0)
        goto fail;
    cfg.zstd_level = SN_BATCH_ZSTD_LEVEL_DEFAULT;
    if (sn_batch_encoder_create(&cfg, &zenc, err, sizeof err) != 0)
        goto fail;
    if (sn_batch_encode(plain, &b, &bytes, &len, &blen, err, sizeof err) != 0)
        goto fail;
    /* payload (field 3) is the IngestRequest's last field: the Batch is its last blen bytes. */
    if (blen == 0 || blen > len) {
        snprintf(err, sizeof err, "unexpected IngestRequest layout");
        goto fail;
    }
    *raw = malloc(blen);
    ref = malloc(ZSTD_compressBound(blen));
    if (*raw == NULL || ref == NULL) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    memcpy(*raw, bytes + len - blen, blen);
    const cb_method *dflt = sidecar_default();
    if (dflt == NULL) {
        snprintf(err, sizeof err, "no row of this benchmark has the sidecar's default parameters");
        goto fail;
    }
    size_t zn = set_params(c, dflt) == 0
                    ? compress_one(c, dflt, *raw, blen, ref, ZSTD_compressBound(blen))
                    : 0;
    if (sn_batch_encode(zenc, &b, &bytes, &len, NULL, err, sizeof err) != 0)
        goto fail;
    if (zn == 0 || zn > len || memcmp(bytes + len - zn, ref, zn) != 0) {
        snprintf(err, sizeof err, "the sidecar's zstd payload differs from this benchmark's");
        goto fail;
    }
    out = blen;
    goto done;
fail:
    fprintf(stderr, "sentinel-bench-compress: batch of %zu events: %s\n", n, err);
    free(*raw);
    *raw = NULL;
done:
    free(ref);
    sn_batch_encoder_destroy(zenc);
    sn_batch_encoder_destroy(plain);
    return out;
}

/* The timed calls, apart from the checks' (for callgrind: --toggle-collect=timed_compress
 * --toggle-collect=timed_decompress with --reps N --runs 1 counts exactly N calls of each). */
__attribute__((noinline)) static size_t timed_compress(cb_codec *c, const cb_method *m,
                                                       const uint8_t *src, size_t n, uint8_t *dst,
                                                       size_t cap)
{
    return compress_one(c, m, src, n, dst, cap);
}

__attribute__((noinline)) static size_t timed_decompress(cb_codec *c, const cb_method *m,
                                                         const uint8_t *src, size_t n, uint8_t *dst,
                                                         size_t cap)
{
    return decompress_one(c, m, src, n, dst, cap);
}

/* Seconds of CPU per call of compress (decomp false) or decompress (true): the median of runs
 * runs of reps repetitions (reps 0: as many as take CB_MIN_CPU_S, found in the first run).
 * Every decompression is compared with raw. Returns -1 on an error or a mismatch. */
static double time_op(cb_codec *c, const cb_method *m, bool decomp, const uint8_t *raw, size_t n,
                      const uint8_t *comp, size_t clen, uint8_t *buf, size_t cap, int runs,
                      long reps)
{
    double per[CB_MAX_RUNS];
    for (int r = 0; r < runs; r++) {
        long done = 0;
        double t0 = cpu_s(), t;
        do {
            if (decomp) {
                if (timed_decompress(c, m, comp, clen, buf, cap) != n || memcmp(buf, raw, n) != 0)
                    return -1;
            } else if (timed_compress(c, m, raw, n, buf, cap) != clen) {
                return -1;
            }
            done++;
            t = cpu_s() - t0;
        } while (reps > 0 ? done < reps : t < CB_MIN_CPU_S);
        per[r] = t / (double)done;
    }
    qsort(per, (size_t)runs, sizeof per[0], cmp_double);
    return per[runs / 2];
}

/* Parses a decimal in [lo, hi] into *v. Returns 0, or -1. */
static int parse_long(const char *s, long lo, long hi, long *v)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || x < lo || x > hi)
        return -1;
    *v = x;
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: sentinel-bench-compress [--quick] [--runs N (1..%d)] [--reps N] "
            "[--events N (1..%d)] [--method NAME] [--scenario FILE]\n",
            CB_MAX_RUNS, CB_MAX_EVENTS);
}

int main(int argc, char **argv)
{
    bool quick = false;
    long runs = 5, reps = 0, events = 0;
    const char *scenario = SN_BENCH_SCENARIO, *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            if (parse_long(argv[++i], 1, CB_MAX_RUNS, &runs) != 0) {
                usage();
                return 2;
            }
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            if (parse_long(argv[++i], 1, 1000000, &reps) != 0) {
                usage();
                return 2;
            }
        } else if (strcmp(argv[i], "--events") == 0 && i + 1 < argc) {
            if (parse_long(argv[++i], 1, CB_MAX_EVENTS, &events) != 0) {
                usage();
                return 2;
            }
        } else if (strcmp(argv[i], "--method") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--scenario") == 0 && i + 1 < argc) {
            scenario = argv[++i];
        } else {
            usage();
            return 2;
        }
    }
    if (quick) {
        runs = 1;
        reps = 1;
    }

    int status = 1;
    cb_codec c;
    memset(&c, 0, sizeof c);
    sn_event *evs = calloc(CB_MAX_EVENTS, sizeof *evs);
    c.zc = ZSTD_createCCtx();
    c.zd = ZSTD_createDCtx();
    c.gz_ok = deflateInit2(&c.gz, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK;
    c.gunz_ok = inflateInit2(&c.gunz, 15 + 16) == Z_OK;
    if (evs == NULL || c.zc == NULL || c.zd == NULL || !c.gz_ok || !c.gunz_ok) {
        fprintf(stderr, "sentinel-bench-compress: out of memory\n");
        goto out;
    }
    if (load_events(scenario, evs) != 0)
        goto out;

    printf("| events | Batch bytes | bytes/event | method | compressed | ratio | compress MB/s | "
           "us/batch | decompress MB/s | us/batch |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    size_t n_sizes = events > 0 ? 1 : sizeof batch_sizes / sizeof batch_sizes[0];
    for (size_t b = 0; b < n_sizes; b++) {
        size_t n = events > 0 ? (size_t)events : batch_sizes[b];
        uint8_t *raw = NULL;
        size_t blen = encode_batch(evs, n, &raw, &c);
        if (blen == 0)
            goto out;
        size_t cap = ZSTD_compressBound(blen) + compressBound((uLong)blen) + 64;
        uint8_t *comp = malloc(cap), *buf = malloc(cap);
        bool ok = comp != NULL && buf != NULL;
        size_t rows = 0;
        for (size_t k = 0; ok && k < sizeof methods / sizeof methods[0]; k++) {
            const cb_method *m = &methods[k];
            if (only != NULL && strcmp(only, m->name) != 0)
                continue;
            rows++;
            if (set_params(&c, m) != 0) {
                ok = false;
                break;
            }
            size_t clen = compress_one(&c, m, raw, blen, comp, cap);
            double tc =
                clen > 0 ? time_op(&c, m, false, raw, blen, comp, clen, buf, cap, (int)runs, reps)
                         : -1;
            double td = tc >= 0
                            ? time_op(&c, m, true, raw, blen, comp, clen, buf, cap, (int)runs, reps)
                            : -1;
            if (tc < 0 || td < 0) {
                fprintf(stderr, "sentinel-bench-compress: %s on %zu events: %s\n", m->name, n,
                        clen == 0 ? "compression failed" : "round trip failed");
                ok = false;
                break;
            }
            bool dflt = m == sidecar_default();
            printf("| %zu | %zu | %.1f | %s%s | %zu | %.2f | %.0f | %.1f | %.0f | %.1f |\n", n,
                   blen, (double)blen / (double)n, m->name, dflt ? " (sidecar default)" : "", clen,
                   (double)blen / (double)clen, (double)blen / tc / 1e6, tc * 1e6,
                   (double)blen / td / 1e6, td * 1e6);
        }
        free(buf);
        free(comp);
        free(raw);
        if (ok && rows == 0) {
            fprintf(stderr, "sentinel-bench-compress: no method named %s\n", only);
            ok = false;
        }
        if (!ok)
            goto out;
    }
    fflush(stdout);
    fprintf(stderr, "sentinel-bench-compress: %s: every round trip matched (%ld run(s) each)\n",
            scenario, runs);
    status = 0;
out:
    if (c.gz_ok)
        deflateEnd(&c.gz);
    if (c.gunz_ok)
        inflateEnd(&c.gunz);
    ZSTD_freeDCtx(c.zd);
    ZSTD_freeCCtx(c.zc);
    free(evs);
    return status;
}
