/*
 * spool.c -- the sidecar's durable on-disk state: ordered segments of sealed records, the ack
 * cursor and the write-ahead journal of the open batch. Layout and rules: docs/spool.md.
 *
 * Invariants (checked where they matter):
 *   - segs[] is ordered by record id; every segment in it holds at least one record not yet
 *     popped, except a segment created by an append that is still in progress;
 *   - segs[0].first_off is the offset of the oldest record not yet popped (the head);
 *   - only the last segment takes appends, and only when it is not `broken`;
 *   - count/bytes are the sums of the segments' nrec/nbytes;
 *   - every journal generation <= covered_gen is covered by a sealed record (appended, found
 *     at open or popped); journal files of such generations are never read back.
 */
#include "spool.h"

#include "backoff.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>
#if defined(__x86_64__)
#include <nmmintrin.h>
#define SPOOL_CRC32C_HW 1
#endif

/* "SPR1", "SPR2", "JNR1", "SNJ1", "SNA1" as little-endian 32-bit words. */
#define SEG_MAGIC      0x31525053u /* a sealed record checked with zlib's CRC-32 (read only) */
#define SEG_MAGIC_C    0x32525053u /* a sealed record checked with CRC-32C (what appends write) */
#define JREC_MAGIC     0x31524e4au
#define JFILE_MAGIC    0x314a4e53u
#define ACK_MAGIC      0x31414e53u
#define FORMAT_VERSION 1u
/* Journal files written since recycling: each record carries its generation's low 32 bits and
 * its CRC starts with the 8-byte generation, so records left over from the file's earlier life
 * (a recycled spare) never read as records of the new generation. Version 1 files are read. */
#define JOURNAL_VERSION_TAGGED 2u
#define ACK_SIZE               32u    /* one slot of the ack file */
#define ACK_SLOTS              2u     /* written in turn, in place; the newest good one counts */
#define SCRATCH_BYTES          65536u /* recovery reads payloads in chunks of this size */
#define PENDING_MAX            32u    /* journal files waiting for a sync before deletion */
#define HANDOFF_MAX            16u    /* closed segments' descriptors waiting for the next sync */
#define BG_QUEUE_MAX           256u   /* background operations queued; past it the caller waits */
#define RETRY_MAX              32u    /* handed-off segments whose failed sync is being retried */
#define DEFERRED_MAX           64u    /* covered journal files waiting for the retries to finish */
#define SPARE_MAX              128u /* covered journal files kept (emptied, renamed spare-*) for reuse */
#define FAILING_AFTER          5u /* failed sync attempts in a row: the disk is failing (sync_failing) */
#define NO_SEGMENT             UINT64_MAX /* bg_op.bases: the descriptor is not a handed-off segment */
#define NAME_DIGITS            20u        /* decimal digits of a uint64_t in file names */
#define NAME_MAX_LEN           40u
#define ACK_NAME               "ack"
#define ACK_TMP_NAME           "ack.tmp"
#define LOCK_NAME              "LOCK"
#define SPLIT_NAME             "split"
#define SPLIT_MAGIC            0x50534e53u /* "SNSP" */
#define SPLIT_SIZE             24u
#define SEG_PREFIX             "seg-"
#define SEG_SUFFIX             ".log"
#define JOURNAL_PREFIX         "journal-"
#define SPARE_PREFIX           "spare-"
/* Record ids and journal generations on disk go up to this; a larger one is corrupt (its
 * successor could wrap to 0, which means "none"). 2^63 appends are never reached. */
#define SPOOL_COUNTER_MAX ((uint64_t)INT64_MAX)

const char *const sn_spool_fsync_names[] = {"interval", "always", NULL};

typedef struct seg {
    uint64_t base;      /* the id in the file name: the id of its first record */
    int fd;             /* -1 when closed */
    uint64_t size;      /* bytes in the file (where the next append goes) */
    uint64_t end;       /* end of the readable records (< size after a skipped bad record) */
    uint64_t first_off; /* offset of the oldest record not yet popped */
    uint64_t nrec;      /* records not yet popped */
    uint64_t nbytes;    /* their bytes, headers included */
    uint64_t last_id;   /* id of the last readable record */
    bool broken;        /* takes no appends: a bad record was skipped or a write not undone */
    bool dirty;         /* written since the last fdatasync */
    bool rewrite;       /* a sync failed: rewritten before the next sync counts (sync_file) */
} seg;

typedef struct jfile {
    uint64_t gen;
    uint32_t version; /* FORMAT_VERSION or JOURNAL_VERSION_TAGGED */
    uint64_t end;     /* bytes recovered at open: the records sn_spool_recover_journal replays */
} jfile;

/* A generation sn_spool_journal_next rotated out before a sealed record covered it: its file
 * stays open (synced by sn_spool_sync) and counted until an append covers it. */
typedef struct jdetached {
    uint64_t gen;
    int fd;
    uint64_t size;
    uint64_t records;
    bool dirty;
    bool rewrite; /* as seg.rewrite */
} jdetached;

/* One operation for the background thread (background_io), run in the order queued. */
typedef enum bg_kind {
    BG_ACK,    /* rewrite the ack file with id/gen */
    BG_UNLINK, /* delete the file `name` */
    BG_DROP,   /* keep the covered journal file of generation `gen` as a spare, or delete it */
    BG_SYNC    /* fdatasync and close fds, fsync the directory, then delete the gens' journals */
} bg_kind;

typedef struct bg_op {
    struct bg_op *next;
    bg_kind kind;
    uint64_t id, gen;        /* BG_ACK; gen also BG_DROP */
    char name[NAME_MAX_LEN]; /* BG_UNLINK */
    bool dir;                /* BG_SYNC: fsync the directory too */
    size_t nfds, ngens;      /* BG_SYNC: the arrays below */
    int *fds;                /* BG_SYNC: descriptors the op owns (dup'ed or handed over) */
    uint64_t *bases;         /* BG_SYNC: per fd, the handed-off segment's base or NO_SEGMENT */
    bool retry_all;          /* BG_SYNC: retry every failed segment now, not when due */
    bool resynced;           /* BG_SYNC: carries every open file (after a failed sync) */
    uint64_t *gens;          /* BG_SYNC: covered journal generations deleted after the syncs */
} bg_op;

/* A closed (handed-off) segment whose background fdatasync failed: its descriptor is kept and
 * the sync retried -- the file rewritten from what it holds, then fdatasync'ed -- with backoff
 * (shared/backoff.h: 100 ms, then up to 30 s with full jitter), until it works or the segment's
 * file is found deleted (every record popped). Background thread only. */
typedef struct sync_retry {
    int fd;
    uint64_t base;
    sn_backoff backoff; /* failures so far (the first is the background sync's) */
    int64_t due_ns;     /* monotonic: next attempt */
} sync_retry;

struct sn_spool {
    sn_spool_config cfg;
    char *dir; /* for messages */
    int dirfd;
    int lockfd;
    int ackfd;    /* the ack file, opened at its first write; -1 until then */
    int ack_slot; /* the slot the next ack write goes to (the other holds the newest) */

    seg *segs;
    size_t nsegs, capsegs;
    uint64_t count, bytes;
    uint64_t next_id;
    uint64_t acked_id, acked_gen; /* what the ack file says (or will say) */
    uint64_t split_id;            /* the record being sent in parts (the split file), 0 for none */
    uint64_t covered_gen;

    uint8_t *buf; /* peek and journal replay buffer, grown to the largest record read */
    size_t bufcap;
    bool peeked; /* buf holds the head record */
    uint64_t peek_id, peek_gen;
    size_t peek_len;

    uint64_t jgen;     /* current generation */
    int jfd;           /* its file */
    uint32_t jversion; /* its format version (an old file recovered at open keeps its own) */
    uint64_t jsize;    /* bytes in its file */
    uint64_t jbytes;   /* bytes in files of uncovered generations (limit: journal_max_bytes) */
    uint64_t jrecords; /* records in them */
    bool jdirty;       /* current file written since the last fdatasync */
    bool jrewrite;     /* as seg.rewrite, for the current file */
    int jstale;        /* non-zero: a reset failed with this error and must be redone */
    jfile *recovered;  /* files of uncovered generations found at open, oldest first */
    size_t nrecovered;
    jdetached detached[SN_SPOOL_DETACHED_MAX]; /* oldest first */
    size_t ndetached;
    uint64_t pending[PENDING_MAX]; /* covered generations whose files wait for a sync */
    size_t npending;
    bool dir_dirty;    /* entries created, renamed or removed since the last directory fsync */
    bool keep_covered; /* a recovered segment could not be synced: keep covered journals */
    int handoff[HANDOFF_MAX]; /* descriptors of full segments, synced and closed by the next sync */
    bool handoff_rewrite[HANDOFF_MAX]; /* its sync failed: rewritten (rewrite_file) before the next
                                        */

    /* Spare journal files (spare-<old generation>): covered files whose deletion was due, kept
     * for journal_create to reuse -- no inode allocated and freed per generation. Filled by
     * whichever thread drops covered files, taken by the loop; spare_mu guards the three. */
    pthread_mutex_t spare_mu;
    uint64_t spares[SPARE_MAX];
    size_t nspares, spare_reserved; /* reserved: slots held for a rename in progress */
    bool spares_off; /* renameat2(RENAME_NOREPLACE) unsupported here: covered files deleted */
    size_t nhandoff;

    /* The background thread (cfg.background_io): bg_mu guards the queue, bg_syncs and bg_stop. */
    pthread_t bg_thread;
    bool bg_started;
    pthread_mutex_t bg_mu;
    pthread_cond_t bg_cv, bg_idle_cv;
    bg_op *bg_head, *bg_tail;
    size_t bg_queued;
    size_t bg_syncs; /* BG_SYNC ops queued or running: segments are not durable before */
    bool bg_running; /* an op is being run */
    bool bg_stop;
    atomic_bool bg_dir_dirty; /* the thread renamed or deleted entries since its last dir fsync */
    atomic_bool ack_dirty;    /* an ack slot was written since the ack file's last fdatasync */
    atomic_bool bg_resync;    /* a background sync failed: the next one syncs every open file */
    uint64_t handoff_base[HANDOFF_MAX]; /* the segment of each handoff[] descriptor */
    sync_retry retry[RETRY_MAX];        /* the background thread's (the owner's after close) */
    size_t nretry;
    uint64_t deferred[DEFERRED_MAX]; /* covered journal generations deleted when nretry is 0 */
    size_t ndeferred;                /* (the background thread's, like retry[]) */
    /* A background sync failed: the thread deletes no covered journal file until a sync of
     * every open file works (a BG_SYNC with resynced, or sn_spool_sync on the loop). */
    atomic_bool bg_tainted;
    atomic_uint_least64_t unsynced;        /* nretry, for other threads */
    atomic_uint_least64_t sync_failures;   /* failed fdatasync/fsync calls */
    atomic_uint_least64_t sync_retries;    /* retried syncs of handed-off segments */
    atomic_uint fail_streak;               /* failed sync attempts since the last good one */
    atomic_bool sync_lost;                 /* a segment's sync was given up (retry list full) */
    _Atomic(sn_spool_sync_hook) sync_hook; /* tests: replaces fsync/fdatasync */
    void *sync_hook_ud;

    sn_spool_stats st;
    atomic_uint_least64_t fsyncs, ack_errors; /* counted on both threads */
};

/* ---- small helpers ---- */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* CRC-32 (zlib, IEEE polynomial) continued over p[0..n). */
static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n)
{
    return (uint32_t)crc32_z(crc, p, n);
}

/* ---- CRC-32C (Castagnoli), the checksum of version 2 journal records ---- */

#define CRC32C_POLY 0x82f63b78u /* reflected */

static uint32_t crc32c_tab[8][256]; /* slicing-by-8 tables, filled once */
#ifdef SPOOL_CRC32C_HW
static bool crc32c_hw_ok; /* the CPU has SSE4.2's crc32 instruction */
#endif
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc32c_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++)
            crc32c_tab[k][i] =
                (crc32c_tab[k - 1][i] >> 8) ^ crc32c_tab[0][crc32c_tab[k - 1][i] & 0xff];
#ifdef SPOOL_CRC32C_HW
    __builtin_cpu_init();
    crc32c_hw_ok = __builtin_cpu_supports("sse4.2");
#endif
}

/* The table path; the tables must be filled (crc32c_once). */
static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t n)
{
    uint32_t c = ~crc;
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo = get_u32(p) ^ c, hi = get_u32(p + 4);
        c = crc32c_tab[7][lo & 0xff] ^ crc32c_tab[6][(lo >> 8) & 0xff] ^
            crc32c_tab[5][(lo >> 16) & 0xff] ^ crc32c_tab[4][lo >> 24] ^ crc32c_tab[3][hi & 0xff] ^
            crc32c_tab[2][(hi >> 8) & 0xff] ^ crc32c_tab[1][(hi >> 16) & 0xff] ^
            crc32c_tab[0][hi >> 24];
    }
    while (n-- > 0)
        c = crc32c_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

#ifdef SPOOL_CRC32C_HW
/* One stream of SSE4.2 crc32 instructions, 8 bytes at a time. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
                                                            size_t n)
{
    uint64_t c = ~crc;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, sizeof w);
        c = _mm_crc32_u64(c, w);
    }
    uint32_t c32 = (uint32_t)c;
    while (n-- > 0)
        c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#endif

/* CRC-32C without the once-check: sn_spool_open fills the tables (and the CPU flag) before any
 * spool computes one, so the record paths pay no pthread_once per call. */
static uint32_t crc32c_fast(uint32_t crc, const uint8_t *p, size_t n)
{
#ifdef SPOOL_CRC32C_HW
    if (crc32c_hw_ok)
        return crc32c_hw(crc, p, n);
#endif
    return crc32c_sw(crc, p, n);
}

uint32_t sn_spool_crc32c_portable(uint32_t crc, const void *buf, size_t n)
{
    pthread_once(&crc32c_once, crc32c_init);
    return crc32c_sw(crc, buf, n);
}

uint32_t sn_spool_crc32c(uint32_t crc, const void *buf, size_t n)
{
    pthread_once(&crc32c_once, crc32c_init);
    return crc32c_fast(crc, buf, n);
}

/* Continues a CRC over p[0..n): CRC-32C when castagnoli, else zlib's CRC-32. */
static uint32_t crc_any_update(bool castagnoli, uint32_t crc, const uint8_t *p, size_t n)
{
    return castagnoli ? crc32c_fast(crc, p, n) : crc_update(crc, p, n);
}

/* Continues a journal record's CRC over p[0..n): CRC-32C in a version 2 file, else zlib's. */
static uint32_t jcrc_update(uint32_t version, uint32_t crc, const uint8_t *p, size_t n)
{
    return crc_any_update(version == JOURNAL_VERSION_TAGGED, crc, p, n);
}

/* True when magic starts a sealed record ("SPR1" or "SPR2"); *castagnoli says which CRC it has. */
static bool seg_magic_ok(uint32_t magic, bool *castagnoli)
{
    *castagnoli = magic == SEG_MAGIC_C;
    return magic == SEG_MAGIC || magic == SEG_MAGIC_C;
}

/* The CRC of a journal record: over its first 12 header bytes and the payload; in a version 2
 * (tagged) file CRC-32C, preceded by the 8-byte generation. */
static uint32_t jrec_crc(uint32_t version, uint64_t gen, const uint8_t *h, const uint8_t *data,
                         size_t len)
{
    uint32_t crc = 0;
    if (version == JOURNAL_VERSION_TAGGED) {
        uint8_t g[8];
        put_u64(g, gen);
        crc = jcrc_update(version, crc, g, sizeof g);
    }
    crc = jcrc_update(version, crc, h, 12);
    return len > 0 ? jcrc_update(version, crc, data, len) : crc;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes one line into err (when given). */
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Reads up to len bytes at off, retrying short reads. Returns the bytes read (fewer only at end
 * of file) or a negative errno. */
static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* Writes a then b at off, retrying short writes. Returns 0 or a negative errno (some bytes may
 * have been written: the caller truncates them away). */
static int pwrite2(int fd, const void *a, size_t alen, const void *b, size_t blen, uint64_t off)
{
    struct iovec iov[2] = {{(void *)a, alen}, {(void *)b, blen}};
    int i = 0;
    while (i < 2) {
        if (iov[i].iov_len == 0) {
            i++;
            continue;
        }
        ssize_t n = pwritev(fd, &iov[i], 2 - i, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        off += (uint64_t)n;
        size_t left = (size_t)n;
        while (i < 2 && left >= iov[i].iov_len) {
            left -= iov[i].iov_len;
            iov[i].iov_len = 0;
            i++;
        }
        if (i < 2) {
            iov[i].iov_base = (uint8_t *)iov[i].iov_base + left;
            iov[i].iov_len -= left;
        }
    }
    return 0;
}

/* fdatasync (or fsync for directories) counted in the stats. Returns 0 or a negative errno. */
static int sync_fd(sn_spool *s, int fd, bool full)
{
    atomic_fetch_add(&s->fsyncs, 1);
    sn_spool_sync_hook hook = atomic_load(&s->sync_hook);
    int rc = hook != NULL ? hook(fd, full, s->sync_hook_ud) : (full ? fsync(fd) : fdatasync(fd));
    if (hook == NULL && rc != 0)
        rc = -errno;
    if (rc != 0)
        atomic_fetch_add(&s->sync_failures, 1);
    return rc;
}

static void seg_name(char *buf, size_t len, uint64_t base)
{
    snprintf(buf, len, SEG_PREFIX "%020" PRIu64 SEG_SUFFIX, base);
}

static void journal_name(char *buf, size_t len, uint64_t gen)
{
    snprintf(buf, len, JOURNAL_PREFIX "%020" PRIu64, gen);
}

static void spare_name(char *buf, size_t len, uint64_t gen)
{
    snprintf(buf, len, SPARE_PREFIX "%020" PRIu64, gen);
}

/* Parses exactly NAME_DIGITS decimal digits at p into a value up to SPOOL_COUNTER_MAX. Returns 0
 * or -1. */
static int parse_digits(const char *p, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < NAME_DIGITS; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v > SPOOL_COUNTER_MAX)
        return -1;
    *out = v;
    return 0;
}

/* Makes buf hold at least len bytes. Returns 0 or -ENOMEM (buf unchanged). */
static int buf_reserve(sn_spool *s, size_t len)
{
    if (len <= s->bufcap && s->buf != NULL)
        return 0;
    size_t cap = len < 4096 ? 4096 : len;
    uint8_t *nb = realloc(s->buf, cap);
    if (nb == NULL)
        return -ENOMEM;
    s->buf = nb;
    s->bufcap = cap;
    return 0;
}

/* CRC over len bytes of fd at off, continued from crc, read through scratch (CRC-32C when
 * castagnoli: version 2 journals and "SPR2" sealed records; else zlib's CRC-32). Returns 0, 1
 * when the file ends first, or a negative errno. */
static int crc_file_range(int fd, uint64_t off, uint64_t len, uint32_t *crc, uint8_t *scratch,
                          bool castagnoli)
{
    while (len > 0) {
        size_t chunk = len > SCRATCH_BYTES ? SCRATCH_BYTES : (size_t)len;
        ssize_t n = pread_full(fd, scratch, chunk, off);
        if (n < 0)
            return (int)n;
        if ((size_t)n < chunk)
            return 1;
        *crc = crc_any_update(castagnoli, *crc, scratch, chunk);
        off += chunk;
        len -= chunk;
    }
    return 0;
}

/* True when every byte of fd in [off, size) is zero (a tail the file system extended but never
 * wrote, as after a power loss). Errors count as not zero. */
static bool rest_is_zero(int fd, uint64_t off, uint64_t size, uint8_t *scratch)
{
    while (off < size) {
        size_t chunk = size - off > SCRATCH_BYTES ? SCRATCH_BYTES : (size_t)(size - off);
        ssize_t n = pread_full(fd, scratch, chunk, off);
        if (n <= 0)
            return false;
        for (ssize_t i = 0; i < n; i++)
            if (scratch[i] != 0)
                return false;
        off += (uint64_t)n;
    }
    return true;
}

static uint64_t file_size(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 0)
        return 0;
    return (uint64_t)st.st_size;
}

/* ---- configuration ---- */

void sn_spool_config_defaults(sn_spool_config *cfg)
{
    cfg->max_bytes = SN_SPOOL_DEFAULT_MAX_BYTES;
    cfg->segment_bytes = SN_SPOOL_DEFAULT_SEGMENT_BYTES;
    cfg->max_record_bytes = SN_SPOOL_DEFAULT_MAX_RECORD;
    cfg->journal_max_bytes = SN_SPOOL_DEFAULT_JOURNAL_MAX;
    cfg->fsync = SN_SPOOL_FSYNC_INTERVAL;
    cfg->background_io = false;
}

/* Checks one setting's range. Returns 0 or -EINVAL with err naming it. */
static int check_range(const char *name, int64_t v, int64_t lo, int64_t hi, char *err,
                       size_t errlen)
{
    if (v >= lo && v <= hi)
        return 0;
    set_err(err, errlen,
            "spool: %s must be between %" PRId64 " and %" PRId64 " bytes (got %" PRId64 ")", name,
            lo, hi, v);
    return -EINVAL;
}

static int check_config(const sn_spool_config *c, char *err, size_t errlen)
{
    int rc;
    if ((rc = check_range("max_bytes", c->max_bytes, SN_SPOOL_MIN_BYTES, SN_SPOOL_MAX_BYTES, err,
                          errlen)) != 0 ||
        (rc = check_range("segment_bytes", c->segment_bytes, SN_SPOOL_MIN_SEGMENT_BYTES,
                          SN_SPOOL_MAX_SEGMENT_BYTES, err, errlen)) != 0 ||
        (rc = check_range("max_record_bytes", c->max_record_bytes, SN_SPOOL_MIN_RECORD,
                          SN_SPOOL_MAX_RECORD, err, errlen)) != 0 ||
        (rc = check_range("journal_max_bytes", c->journal_max_bytes, SN_SPOOL_MIN_JOURNAL_BYTES,
                          SN_SPOOL_MAX_BYTES, err, errlen)) != 0)
        return rc;
    if (c->max_record_bytes + (int64_t)SN_SPOOL_RECORD_HEADER > c->max_bytes) {
        set_err(err, errlen, "spool: max_record_bytes must leave room in max_bytes");
        return -EINVAL;
    }
    if (c->fsync != SN_SPOOL_FSYNC_INTERVAL && c->fsync != SN_SPOOL_FSYNC_ALWAYS) {
        set_err(err, errlen, "spool: fsync must be interval or always");
        return -EINVAL;
    }
    return 0;
}

/* ---- segments ---- */

static void remove_file(sn_spool *s, const char *name);

/* Opens segment i's file if it is closed. Returns 0 or a negative errno. */
static int seg_open(sn_spool *s, seg *g)
{
    if (g->fd >= 0)
        return 0;
    char name[NAME_MAX_LEN];
    seg_name(name, sizeof name, g->base);
    g->fd = openat(s->dirfd, name, O_RDWR | O_CLOEXEC);
    return g->fd >= 0 ? 0 : -errno;
}

/* Closes and deletes segs[0] (every record in it popped or skipped) and makes the next
 * segment the head. */
static void drop_head_segment(sn_spool *s)
{
    seg *g = &s->segs[0];
    char name[NAME_MAX_LEN];
    seg_name(name, sizeof name, g->base);
    if (g->fd >= 0)
        close(g->fd);
    remove_file(s, name);
    memmove(&s->segs[0], &s->segs[1], (s->nsegs - 1) * sizeof s->segs[0]);
    s->nsegs--;
    s->peeked = false;
}

/* Gives up on the rest of the head segment after a bad record at its head: its records are
 * counted as skipped and the segment is deleted. */
static void skip_head_segment(sn_spool *s, const char *why)
{
    seg *g = &s->segs[0];
    char name[NAME_MAX_LEN];
    seg_name(name, sizeof name, g->base);
    uint64_t skipped = g->end > g->first_off ? g->end - g->first_off : 0;
    sn_log_error("spool: bad record, skipping the rest of the segment", SN_LOG_STR("dir", s->dir),
                 SN_LOG_STR("file", name), SN_LOG_STR("reason", why),
                 SN_LOG_UINT("offset", g->first_off), SN_LOG_UINT("records", g->nrec),
                 SN_LOG_UINT("bytes", skipped));
    s->st.corrupt_segments++;
    s->st.skipped_bytes += skipped;
    s->count -= g->nrec;
    s->bytes -= g->nbytes;
    g->nrec = 0;
    g->nbytes = 0;
    drop_head_segment(s);
}

/* Appends an empty segment named after the next record id. Returns 0 or a negative errno. */
static int seg_create(sn_spool *s)
{
    if (s->nsegs == s->capsegs) {
        size_t cap = s->capsegs ? s->capsegs * 2 : 16;
        seg *ns = realloc(s->segs, cap * sizeof *ns);
        if (ns == NULL)
            return -ENOMEM;
        s->segs = ns;
        s->capsegs = cap;
    }
    char name[NAME_MAX_LEN];
    seg_name(name, sizeof name, s->next_id);
    int fd = openat(s->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    s->segs[s->nsegs++] = (seg){.base = s->next_id, .fd = fd, .last_id = 0};
    s->dir_dirty = true;
    return 0;
}

/* Removes the last segment, just created and still empty, after a failed append. */
static void seg_uncreate(sn_spool *s)
{
    seg *g = &s->segs[s->nsegs - 1];
    char name[NAME_MAX_LEN];
    seg_name(name, sizeof name, g->base);
    close(g->fd);
    unlinkat(s->dirfd, name, 0);
    s->nsegs--;
}

/* ---- ack file ---- */

/* Writes id and gen into the ack file's next slot, in place (one pwrite; the other slot keeps
 * the previous value, so a torn write leaves one good version); the file is opened -- created
 * the first time -- on the first write and stays open (closed by spool_free). In "always" mode
 * the slot is fdatasync'ed, and the directory fsync'ed when the file was created here.
 * *dir_synced is false only when the file was created and the directory not synced. Touches
 * only ackfd/ack_slot of s, which no other code uses: runs on the loop or on the background
 * thread, never both at once (the queue orders them). Returns 0 or a negative errno. */
static int write_ack_file(sn_spool *s, uint64_t id, uint64_t gen, bool *dir_synced)
{
    *dir_synced = true;
    uint8_t b[ACK_SIZE] = {0};
    put_u32(b, ACK_MAGIC);
    put_u32(b + 4, FORMAT_VERSION);
    put_u64(b + 8, id);
    put_u64(b + 16, gen);
    put_u32(b + 28, crc_update(0, b, 28));
    bool created = false;
    if (s->ackfd < 0) {
        int fd = openat(s->dirfd, ACK_NAME, O_RDWR | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) {
            fd = openat(s->dirfd, ACK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
            created = fd >= 0;
        }
        if (fd < 0)
            return -errno;
        s->ackfd = fd;
    }
    int rc = pwrite2(s->ackfd, b, sizeof b, NULL, 0, (uint64_t)s->ack_slot * ACK_SIZE);
    if (rc == 0 && s->cfg.fsync == SN_SPOOL_FSYNC_ALWAYS)
        rc = sync_fd(s, s->ackfd, false);
    if (rc != 0)
        return rc; /* the slot may be torn; the other one still holds the last good value, and
                    * the next write goes to this slot again */
    s->ack_slot = (s->ack_slot + 1) % (int)ACK_SLOTS;
    if (s->cfg.fsync != SN_SPOOL_FSYNC_ALWAYS)
        atomic_store(&s->ack_dirty, true);
    if (created)
        *dir_synced = s->cfg.fsync == SN_SPOOL_FSYNC_ALWAYS && sync_fd(s, s->dirfd, true) == 0;
    return 0;
}

/* fdatasyncs the ack file if a slot was written since its last sync ("interval" mode), on the
 * thread that writes it (the background thread's sync, or sn_spool_sync with that thread
 * idle). A failure is logged and the file synced again next time; it does not hold back
 * anything else (a lost ack only sends records again). */
static void sync_ack(sn_spool *s)
{
    if (s->ackfd < 0 || !atomic_exchange(&s->ack_dirty, false))
        return;
    int rc = sync_fd(s, s->ackfd, false);
    if (rc != 0) {
        atomic_store(&s->ack_dirty, true);
        sn_log_warn("spool: cannot sync the ack file; the last popped records may be sent again "
                    "after a power loss",
                    SN_LOG_STR("dir", s->dir), SN_LOG_ERRNO(rc));
    }
}

/* ---- background I/O (cfg.background_io) ----
 *
 * What nobody has to wait for runs on the spool's own thread ("sn-spool-io"), in the order it
 * was queued: rewriting the ack file after a pop, deleting popped segments and covered journal
 * files, and the interval's fdatasyncs (sn_spool_sync_start). Each may block for milliseconds
 * on a busy disk (a rename or an fsync waits for the file system's journal commit); on the
 * loop that delayed every answer behind it. The loop hands over what an operation needs --
 * values, file names, dup'ed descriptors -- so the thread reads no loop state; it reports back
 * through atomics (bg_dir_dirty, bg_resync, the counters) and bg_syncs. FIFO order keeps the
 * rules of the synchronous code: the ack file is rewritten before the segments it passed are
 * deleted, and a covered journal file is deleted only by the sync that made the segment
 * holding its sealed record durable (the sync op carries the generations it may delete). The
 * queue holds at most BG_QUEUE_MAX operations; the loop waits for room past that. */

static void journal_name(char *buf, size_t len, uint64_t gen);

/* Deletes a file of the spool directory; any thread. */
static void unlink_file(sn_spool *s, const char *name, const char *what)
{
    if (unlinkat(s->dirfd, name, 0) != 0 && errno != ENOENT)
        sn_log_warn(what, SN_LOG_STR("dir", s->dir), SN_LOG_STR("file", name), SN_LOG_ERRNO(errno));
}

/* Drops the file of covered journal generation gen, whose deletion is due: emptied and renamed
 * to a spare for journal_create to reuse while fewer than SPARE_MAX wait, else deleted. A spare
 * is never read as a journal (at open spares are deleted), and emptying a covered file is as
 * safe as deleting it, so this keeps the deletion's rules. Any thread; the truncate and rename
 * run without spare_mu (a slot is reserved first). */
static void journal_drop(sn_spool *s, uint64_t gen)
{
    char name[NAME_MAX_LEN], spare[NAME_MAX_LEN];
    journal_name(name, sizeof name, gen);
    pthread_mutex_lock(&s->spare_mu);
    bool keep = !s->spares_off && s->nspares + s->spare_reserved < SPARE_MAX;
    if (keep)
        s->spare_reserved++;
    pthread_mutex_unlock(&s->spare_mu);
    if (keep) {
        /* Emptied first: what a reuse appends is then all the file holds. */
        int fd = openat(s->dirfd, name, O_WRONLY | O_TRUNC | O_CLOEXEC);
        spare_name(spare, sizeof spare, gen);
        keep = fd >= 0 && renameat(s->dirfd, name, s->dirfd, spare) == 0;
        if (fd >= 0)
            close(fd);
        pthread_mutex_lock(&s->spare_mu);
        s->spare_reserved--;
        if (keep)
            s->spares[s->nspares++] = gen;
        pthread_mutex_unlock(&s->spare_mu);
    }
    if (!keep)
        unlink_file(s, name, "spool: cannot delete a covered journal file");
    atomic_store(&s->bg_dir_dirty, true);
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Writes a file's bytes back over themselves, making every page dirty again. After a failed
 * fdatasync a second one on the same file could answer 0 without writing anything (Linux
 * reports a writeback error once and may have marked the pages clean), so a file whose sync
 * failed is rewritten from the page cache's bytes -- what peek reads and sends, and what a
 * journal replay would read -- before its next sync counts. Only the writer of the file may
 * call it: the loop for open files, the background thread for handed-off segments (which the
 * loop no longer writes). Returns 0 or a negative errno. */
static int rewrite_file(int fd)
{
    uint64_t size = file_size(fd);
    uint8_t *b = malloc(SCRATCH_BYTES);
    if (b == NULL)
        return -ENOMEM;
    int rc = 0;
    for (uint64_t off = 0; rc == 0 && off < size; off += SCRATCH_BYTES) {
        size_t n = size - off < SCRATCH_BYTES ? (size_t)(size - off) : SCRATCH_BYTES;
        ssize_t got = pread_full(fd, b, n, off);
        if (got < 0)
            rc = (int)got;
        else if (got > 0)
            rc = pwrite2(fd, b, (size_t)got, NULL, 0, off);
        if (got >= 0 && (size_t)got < n)
            break; /* shorter than it was: the rest is gone */
    }
    free(b);
    return rc;
}

/* Makes a closed segment durable again after a failed fdatasync: rewrite_file, then
 * fdatasync. Returns 0 or a negative errno. */
static int resync_segment(sn_spool *s, int fd)
{
    int rc = rewrite_file(fd);
    return rc != 0 ? rc : sync_fd(s, fd, false);
}

/* fdatasyncs an open file of the loop's; *rewrite (the file's flag) says a sync of it failed
 * before, so it is rewritten first, and is set again when this one fails. Loop only. Returns 0
 * or a negative errno. */
static int sync_file(sn_spool *s, int fd, bool *rewrite)
{
    int rc = *rewrite ? rewrite_file(fd) : 0;
    if (rc == 0)
        rc = sync_fd(s, fd, false);
    *rewrite = rc != 0;
    return rc;
}

/* Drops retry entry i (closing its descriptor). */
static void retry_drop(sn_spool *s, size_t i)
{
    close(s->retry[i].fd);
    s->retry[i] = s->retry[--s->nretry];
    atomic_store(&s->unsynced, s->nretry);
}

/* Whether the file open as fd has no name left: a segment deleted after its last record was
 * popped, which nothing needs to be durable any more. Any thread (fstat only). */
static bool file_deleted(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_nlink == 0;
}

/* The retry schedule: shared/backoff.h's defaults (100 ms, doubling up to 30 s, full jitter). */
static const sn_backoff_config retry_backoff = {.initial_ms = SN_BACKOFF_INITIAL_MS_DEFAULT,
                                                .max_ms = SN_BACKOFF_MAX_MS_DEFAULT,
                                                .multiplier = SN_BACKOFF_MULTIPLIER_DEFAULT};

/* Records one more failure of r and sets when it is tried next. Returns the delay in ms. */
static uint32_t retry_schedule(sync_retry *r, int64_t now)
{
    uint32_t ms = sn_backoff_next(&r->backoff, &retry_backoff, sn_backoff_random());
    r->due_ns = now + (int64_t)ms * 1000000;
    return ms;
}

/* Keeps the descriptor of handed-off segment base, whose sync failed, for retries. Without room
 * the segment's durability is given up (logged; the spool reports failing until a restart,
 * whose recovery syncs every segment). Background thread (or the owner after close). */
static void retry_add(sn_spool *s, int fd, uint64_t base)
{
    char name[NAME_MAX_LEN];
    seg_name(name, sizeof name, base);
    if (s->nretry == RETRY_MAX) {
        close(fd);
        atomic_store(&s->sync_lost, true);
        sn_log_error("spool: too many segments wait for a retried sync; this one is not retried",
                     SN_LOG_STR("dir", s->dir), SN_LOG_STR("file", name));
        return;
    }
    sync_retry *r = &s->retry[s->nretry++];
    *r = (sync_retry){.fd = fd, .base = base};
    (void)retry_schedule(r, mono_ns());
    atomic_store(&s->unsynced, s->nretry);
    sn_log_warn("spool: a full segment's sync failed; retrying", SN_LOG_STR("dir", s->dir),
                SN_LOG_STR("file", name));
}

/* Deletes the covered journal files of generations gens[0..n). Background thread (or the owner
 * after close). */
static void unlink_journals(sn_spool *s, const uint64_t *gens, size_t n)
{
    for (size_t i = 0; i < n; i++)
        journal_drop(s, gens[i]);
}

/* Keeps covered journal generations gens[0..n) until no segment waits for a retried sync; past
 * DEFERRED_MAX the rest stay on disk until the next start (discarded there as covered). */
static void defer_journals(sn_spool *s, const uint64_t *gens, size_t n)
{
    size_t room = DEFERRED_MAX - s->ndeferred;
    size_t take = n < room ? n : room;
    memcpy(s->deferred + s->ndeferred, gens, take * sizeof *gens);
    s->ndeferred += take;
    if (take < n)
        sn_log_warn("spool: too many covered journal files wait for a retried sync; the rest "
                    "are deleted at the next start",
                    SN_LOG_STR("dir", s->dir), SN_LOG_UINT("files", n - take));
}

/* Retries the segments whose sync is due (all with force); a segment whose file was deleted
 * meanwhile (popped) is dropped without a retry. Once none is left, the deferred journal files
 * are deleted. Returns whether every attempt made worked (true when none was due). */
static bool retry_run(sn_spool *s, bool force)
{
    bool ok = true;
    int64_t now = mono_ns();
    for (size_t i = 0; i < s->nretry;) {
        sync_retry *r = &s->retry[i];
        if (!force && now < r->due_ns) {
            i++;
            continue;
        }
        char name[NAME_MAX_LEN];
        seg_name(name, sizeof name, r->base);
        if (file_deleted(r->fd)) {
            sn_log_info("spool: segment popped while its sync was retried; retry dropped",
                        SN_LOG_STR("dir", s->dir), SN_LOG_STR("file", name));
            retry_drop(s, i);
            continue;
        }
        atomic_fetch_add(&s->sync_retries, 1);
        int rc = resync_segment(s, r->fd);
        if (rc == 0) {
            sn_log_info("spool: segment synced after a failed sync", SN_LOG_STR("dir", s->dir),
                        SN_LOG_STR("file", name), SN_LOG_UINT("retries", r->backoff.attempts));
            retry_drop(s, i);
            continue;
        }
        ok = false;
        uint32_t ms = retry_schedule(r, now);
        sn_log_error("spool: retried segment sync failed", SN_LOG_STR("dir", s->dir),
                     SN_LOG_STR("file", name), SN_LOG_UINT("retries", r->backoff.attempts - 1),
                     SN_LOG_UINT("next_retry_ms", ms), SN_LOG_ERRNO(rc));
        i++;
    }
    if (s->nretry == 0 && s->ndeferred > 0) {
        unlink_journals(s, s->deferred, s->ndeferred);
        s->ndeferred = 0;
    }
    return ok;
}

/* The earliest retry due (INT64_MAX: none). */
static int64_t retry_next_due(const sn_spool *s)
{
    int64_t due = INT64_MAX;
    for (size_t i = 0; i < s->nretry; i++)
        if (s->retry[i].due_ns < due)
            due = s->retry[i].due_ns;
    return due;
}

/* Counts one sync attempt's outcome for sync_failing: a failure lengthens the streak; success
 * ends it once no segment waits for a retry. */
static void note_sync(sn_spool *s, bool ok)
{
    if (!ok)
        atomic_fetch_add(&s->fail_streak, 1);
    else if (s->nretry == 0)
        atomic_store(&s->fail_streak, 0);
}

/* Runs a BG_SYNC op (see bg_run). A handed-off segment whose fdatasync fails goes to the retry
 * list (unless its file is gone: popped meanwhile); any other failure (a dup'ed open file, the
 * directory) sets bg_resync so that the loop's next sync carries every open file, and taints the
 * thread: no covered journal file is deleted until such a sync works. The op's journal
 * generations are deleted when all is durable, deferred while only retried segments are not,
 * and left on disk (discarded at the next start) when tainted. */
static void bg_run_sync(sn_spool *s, bg_op *op)
{
    int first = 0; /* first failure not handled by a retry */
    bool ok = true;
    sync_ack(s);
    for (size_t i = 0; i < op->nfds; i++) {
        int rc = sync_fd(s, op->fds[i], false);
        if (rc != 0 && op->bases[i] != NO_SEGMENT && file_deleted(op->fds[i]))
            rc = 0; /* popped before its sync ran: nothing in it needs to be durable */
        if (rc != 0)
            ok = false;
        if (rc != 0 && op->bases[i] != NO_SEGMENT)
            retry_add(s, op->fds[i], op->bases[i]); /* closed by the loop: retried here */
        else
            close(op->fds[i]);
        if (rc != 0 && op->bases[i] == NO_SEGMENT && first == 0)
            first = rc;
    }
    if (op->dir || atomic_exchange(&s->bg_dir_dirty, false)) {
        int rc = sync_fd(s, s->dirfd, true);
        if (rc != 0) {
            atomic_store(&s->bg_dir_dirty, true);
            if (first == 0)
                first = rc;
        }
    }
    if (first != 0) {
        atomic_store(&s->bg_tainted, true);
        atomic_store(&s->bg_resync, true);
        sn_log_error("spool fsync failed", SN_LOG_STR("dir", s->dir), SN_LOG_ERRNO(first));
    } else if (op->resynced) {
        atomic_store(&s->bg_tainted, false);
    }
    bool retried = retry_run(s, op->retry_all);
    note_sync(s, ok && first == 0 && retried);
    if (atomic_load(&s->bg_tainted))
        return; /* the op's covered journal files stay until the next start */
    if (s->nretry > 0)
        defer_journals(s, op->gens, op->ngens);
    else
        unlink_journals(s, op->gens, op->ngens);
}

/* Runs one operation on the calling thread (the background thread, or the loop when the
 * thread is not running); frees nothing. BG_UNLINK touches no thread state (the loop may run
 * it while the thread retries). */
static void bg_run(sn_spool *s, bg_op *op)
{
    switch (op->kind) {
    case BG_ACK: {
        bool dir_synced;
        int rc = write_ack_file(s, op->id, op->gen, &dir_synced);
        if (rc != 0) {
            atomic_fetch_add(&s->ack_errors, 1);
            sn_log_warn("spool: cannot write the ack file; the record may be sent again after a "
                        "restart",
                        SN_LOG_STR("dir", s->dir), SN_LOG_UINT("id", op->id), SN_LOG_ERRNO(rc));
        } else if (!dir_synced) {
            atomic_store(&s->bg_dir_dirty, true);
        }
        break;
    }
    case BG_UNLINK:
        /* A segment whose sync is retried is dropped by retry_run when it finds the file gone. */
        unlink_file(s, op->name, "spool: cannot delete segment");
        atomic_store(&s->bg_dir_dirty, true);
        break;
    case BG_DROP:
        journal_drop(s, op->gen);
        break;
    case BG_SYNC:
        bg_run_sync(s, op);
        break;
    }
}

/* The background thread: runs the queued operations in order until told to stop with the
 * queue empty. */
static void *bg_main(void *arg)
{
    sn_spool *s = arg;
    pthread_setname_np(pthread_self(), "sn-spool-io");
    /* Mostly waiting for the disk; what little CPU it uses gives way to the answering threads
     * (a failure to lower it changes nothing). */
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), 5);
    pthread_mutex_lock(&s->bg_mu);
    for (;;) {
        if (s->bg_head == NULL && !s->bg_stop) {
            /* Idle: wait for work, or until a failed segment's retry is due. */
            int64_t due = retry_next_due(s);
            if (due == INT64_MAX) {
                pthread_cond_wait(&s->bg_cv, &s->bg_mu);
            } else if (mono_ns() < due) {
                struct timespec ts = {.tv_sec = (time_t)(due / 1000000000),
                                      .tv_nsec = (long)(due % 1000000000)};
                pthread_cond_timedwait(&s->bg_cv, &s->bg_mu, &ts);
            } else {
                s->bg_running = true;
                pthread_mutex_unlock(&s->bg_mu);
                note_sync(s, retry_run(s, false));
                pthread_mutex_lock(&s->bg_mu);
                s->bg_running = false;
                pthread_cond_broadcast(&s->bg_idle_cv);
            }
            continue;
        }
        bg_op *op = s->bg_head;
        if (op == NULL)
            break;
        s->bg_head = op->next;
        if (s->bg_head == NULL)
            s->bg_tail = NULL;
        s->bg_queued--;
        s->bg_running = true;
        pthread_mutex_unlock(&s->bg_mu);
        bg_run(s, op);
        pthread_mutex_lock(&s->bg_mu);
        if (op->kind == BG_SYNC)
            s->bg_syncs--;
        s->bg_running = false;
        free(op);
        pthread_cond_broadcast(&s->bg_idle_cv);
    }
    pthread_mutex_unlock(&s->bg_mu);
    return NULL;
}

/* Queues op (malloc'ed) for the background thread, which frees it, waiting while the queue is
 * full. Only with the thread running (callers without it run their operation themselves). */
static void bg_submit(sn_spool *s, bg_op *op)
{
    op->next = NULL;
    pthread_mutex_lock(&s->bg_mu);
    while (s->bg_queued >= BG_QUEUE_MAX)
        pthread_cond_wait(&s->bg_idle_cv, &s->bg_mu);
    if (op->kind == BG_SYNC)
        s->bg_syncs++;
    if (s->bg_tail != NULL)
        s->bg_tail->next = op;
    else
        s->bg_head = op;
    s->bg_tail = op;
    s->bg_queued++;
    pthread_cond_signal(&s->bg_cv);
    pthread_mutex_unlock(&s->bg_mu);
}

/* Waits until every queued operation has run. */
static void bg_wait_idle(sn_spool *s)
{
    if (!s->bg_started)
        return;
    pthread_mutex_lock(&s->bg_mu);
    while (s->bg_head != NULL || s->bg_running)
        pthread_cond_wait(&s->bg_idle_cv, &s->bg_mu);
    pthread_mutex_unlock(&s->bg_mu);
}

/* Whether a background sync is queued or running. */
static bool bg_syncing(sn_spool *s)
{
    if (!s->bg_started)
        return false;
    pthread_mutex_lock(&s->bg_mu);
    bool busy = s->bg_syncs > 0;
    pthread_mutex_unlock(&s->bg_mu);
    return busy;
}

/* Queues a copy of the BG_ACK, BG_UNLINK or BG_DROP operation *local (the caller keeps local),
 * or runs it here: without the thread, or without memory for the copy (then after what is
 * queued, to keep the order). */
static void bg_queue(sn_spool *s, bg_op *local)
{
    bg_op *op = s->bg_started ? malloc(sizeof *op) : NULL;
    if (op == NULL) {
        bg_wait_idle(s); /* without the thread a no-op */
        bg_run(s, local);
        if (atomic_exchange(&s->bg_dir_dirty, false))
            s->dir_dirty = true;
        return;
    }
    *op = *local;
    bg_submit(s, op);
}

/* Records a pop in the ack file: queued (a queued ack not yet written is just updated), or
 * written here without the thread. A failure is logged and counted. */
static void ack_pop(sn_spool *s)
{
    if (s->bg_started) {
        pthread_mutex_lock(&s->bg_mu);
        bg_op *t = s->bg_tail;
        if (t != NULL && t->kind == BG_ACK) {
            t->id = s->acked_id;
            t->gen = s->acked_gen;
            pthread_mutex_unlock(&s->bg_mu);
            return;
        }
        pthread_mutex_unlock(&s->bg_mu);
    }
    bg_queue(s, &(bg_op){.kind = BG_ACK, .id = s->acked_id, .gen = s->acked_gen});
}

/* Deletes a file of the spool directory: queued behind what is already queued, or here without
 * the thread. */
static void remove_file(sn_spool *s, const char *name)
{
    bg_op local = {.kind = BG_UNLINK};
    snprintf(local.name, sizeof local.name, "%s", name);
    bg_queue(s, &local);
}

/* Reads the ack file into acked_id/acked_gen: of its slots (one in a file written before the
 * slots, two since; a slot cut short does not count) the good one with the highest id counts,
 * and the next write goes to the other. A missing file means nothing was popped; one with no good
 * slot is logged and treated the same (records are then sent again, never lost). */
static void read_ack(sn_spool *s)
{
    uint8_t b[ACK_SIZE * ACK_SLOTS];
    int fd = openat(s->dirfd, ACK_NAME, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            sn_log_warn("spool: cannot read the ack file; unacknowledged records are sent again",
                        SN_LOG_STR("dir", s->dir), SN_LOG_ERRNO(errno));
        return;
    }
    ssize_t n = pread_full(fd, b, sizeof b, 0);
    close(fd);
    int best = -1;
    for (unsigned i = 0; i < ACK_SLOTS && n >= 0 && (size_t)n >= (i + 1) * ACK_SIZE; i++) {
        const uint8_t *p = b + i * ACK_SIZE;
        if (get_u32(p) != ACK_MAGIC || get_u32(p + 4) != FORMAT_VERSION ||
            get_u32(p + 28) != crc_update(0, p, 28) || get_u64(p + 8) > SPOOL_COUNTER_MAX ||
            get_u64(p + 16) > SPOOL_COUNTER_MAX)
            continue;
        if (best < 0 || get_u64(p + 8) > get_u64(b + (size_t)best * ACK_SIZE + 8))
            best = (int)i;
    }
    if (best < 0) {
        sn_log_warn("spool: bad ack file ignored; records are sent again from the oldest",
                    SN_LOG_STR("dir", s->dir), SN_LOG_INT("size", n));
        return;
    }
    s->acked_id = get_u64(b + (size_t)best * ACK_SIZE + 8);
    s->acked_gen = get_u64(b + (size_t)best * ACK_SIZE + 16);
    s->ack_slot = (best + 1) % (int)ACK_SLOTS;
}

/* ---- split marker ---- */

/* Reads the split file into split_id: the record an earlier run was sending in parts. A missing
 * file, a bad one (torn, foreign) or a record already popped means none; a bad file is logged. */
static void read_split(sn_spool *s)
{
    uint8_t b[SPLIT_SIZE];
    int fd = openat(s->dirfd, SPLIT_NAME, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            sn_log_warn("spool: cannot read the split file", SN_LOG_STR("dir", s->dir),
                        SN_LOG_ERRNO(errno));
        return;
    }
    ssize_t n = pread_full(fd, b, sizeof b, 0);
    close(fd);
    if (n != (ssize_t)sizeof b || get_u32(b) != SPLIT_MAGIC || get_u32(b + 4) != FORMAT_VERSION ||
        get_u32(b + 20) != crc_update(0, b, 20) || get_u64(b + 8) > SPOOL_COUNTER_MAX) {
        sn_log_warn("spool: bad split file ignored", SN_LOG_STR("dir", s->dir),
                    SN_LOG_INT("size", n));
        return;
    }
    uint64_t id = get_u64(b + 8);
    s->split_id = id > s->acked_id ? id : 0;
}

int sn_spool_mark_split(sn_spool *s, uint64_t id)
{
    if (id == 0 || id > SPOOL_COUNTER_MAX)
        return -EINVAL;
    if (s->split_id == id)
        return 0;
    uint8_t b[SPLIT_SIZE] = {0};
    put_u32(b, SPLIT_MAGIC);
    put_u32(b + 4, FORMAT_VERSION);
    put_u64(b + 8, id);
    put_u32(b + 20, crc_update(0, b, 20));
    bool created = false;
    int fd = openat(s->dirfd, SPLIT_NAME, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        fd = openat(s->dirfd, SPLIT_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
        created = fd >= 0;
    }
    if (fd < 0)
        return -errno;
    int rc = pwrite2(fd, b, sizeof b, NULL, 0, 0);
    if (rc == 0 && s->cfg.fsync == SN_SPOOL_FSYNC_ALWAYS) {
        rc = sync_fd(s, fd, false);
        if (rc == 0 && created)
            rc = sync_fd(s, s->dirfd, true);
    }
    close(fd);
    if (rc != 0)
        return rc;
    if (created && s->cfg.fsync != SN_SPOOL_FSYNC_ALWAYS)
        s->dir_dirty = true;
    s->split_id = id;
    return 0;
}

uint64_t sn_spool_split_mark(const sn_spool *s)
{
    return s->split_id > s->acked_id ? s->split_id : 0;
}

/* ---- journal ---- */

/* Takes a spare file for reuse: opened, its name in spare[0..len). Returns the descriptor, or -1
 * when none is left (a spare that cannot be opened is deleted). The caller owns the descriptor
 * and the spare file. */
static int spare_take(sn_spool *s, char *spare, size_t len)
{
    for (;;) {
        uint64_t old = 0;
        pthread_mutex_lock(&s->spare_mu);
        bool have = s->nspares > 0;
        if (have)
            old = s->spares[--s->nspares];
        pthread_mutex_unlock(&s->spare_mu);
        if (!have)
            return -1;
        spare_name(spare, len, old);
        int fd = openat(s->dirfd, spare, O_RDWR | O_CLOEXEC);
        if (fd >= 0)
            return fd;
        unlink_file(s, spare, "spool: cannot delete a spare journal file");
        s->dir_dirty = true;
    }
}

/* renameat2(RENAME_NOREPLACE) is not to be had (EINVAL, ENOSYS, EPERM, EOPNOTSUPP): logs it once,
 * stops keeping spares and deletes the ones waiting -- covered files are deleted from then on, as
 * before recycling. */
static void spares_disable(sn_spool *s)
{
    uint64_t gens[SPARE_MAX];
    pthread_mutex_lock(&s->spare_mu);
    bool was_off = s->spares_off;
    s->spares_off = true;
    size_t n = s->nspares;
    memcpy(gens, s->spares, n * sizeof gens[0]);
    s->nspares = 0;
    pthread_mutex_unlock(&s->spare_mu);
    if (!was_off)
        sn_log_warn("spool: the filesystem cannot rename without replacing; covered journal "
                    "files are deleted, not reused",
                    SN_LOG_STR("dir", s->dir));
    char spare[NAME_MAX_LEN];
    for (size_t i = 0; i < n; i++) {
        spare_name(spare, sizeof spare, gens[i]);
        unlink_file(s, spare, "spool: cannot delete a spare journal file");
    }
    s->dir_dirty = true;
}

/* Makes fd the file of generation gen: the header h written (in fsync "always" made durable, then
 * the directory). fd is a new file named `name`, or with spare != NULL a spare file renamed to
 * `name` after the header (never over an existing file) -- what follows the header is left:
 * records of its earlier generation, which do not read as gen's. In fsync "always" the header is
 * durable before the new name: a crash never shows the new name over the old header. Returns 0,
 * or a negative errno with fd closed and its file deleted. */
static int journal_setup(sn_spool *s, int fd, const char *name, const char *spare, const uint8_t *h,
                         size_t hlen)
{
    bool always = s->cfg.fsync == SN_SPOOL_FSYNC_ALWAYS;
    bool named = spare == NULL;
    int rc = pwrite2(fd, h, hlen, NULL, 0, 0);
    if (rc == 0 && always)
        rc = sync_fd(s, fd, false);
    if (rc == 0 && !named) {
        if (renameat2(s->dirfd, spare, s->dirfd, name, RENAME_NOREPLACE) == 0)
            named = true;
        else
            rc = -errno;
        /* EINVAL: the filesystem lacks RENAME_NOREPLACE; ENOSYS, EPERM, EOPNOTSUPP: the kernel
         * or a seccomp profile refuses renameat2 -- every reuse would fail the same way. */
        if (rc == -EINVAL || rc == -ENOSYS || rc == -EPERM || rc == -EOPNOTSUPP)
            spares_disable(s);
        else if (rc != 0)
            sn_log_warn("spool: cannot rename a spare journal file; creating a new one",
                        SN_LOG_STR("dir", s->dir), SN_LOG_STR("file", spare), SN_LOG_ERRNO(rc));
    }
    if (rc == 0 && always)
        rc = sync_fd(s, s->dirfd, true); /* else the new name may not be durable: a failure */
    if (rc != 0) {
        close(fd);
        unlinkat(s->dirfd, named ? name : spare, 0);
        s->dir_dirty = true;
        return rc;
    }
    if (!always)
        s->dir_dirty = true;
    return 0;
}

/* Opens the file of generation gen for appends, with its header: a spare reused (a failed reuse
 * falls back to a new file), or a new file. Returns 0 or a negative errno (no file left behind). */
static int journal_create(sn_spool *s, uint64_t gen, int *fd_out)
{
    char name[NAME_MAX_LEN], spare[NAME_MAX_LEN];
    journal_name(name, sizeof name, gen);
    uint8_t h[SN_SPOOL_JOURNAL_FILE_HEADER] = {0};
    put_u32(h, JFILE_MAGIC);
    put_u32(h + 4, JOURNAL_VERSION_TAGGED);
    put_u64(h + 8, gen);
    put_u32(h + 20, crc_update(0, h, 20));
    int fd = spare_take(s, spare, sizeof spare);
    if (fd >= 0 && journal_setup(s, fd, name, spare, h, sizeof h) == 0) {
        s->st.journal_recycled++;
        *fd_out = fd;
        return 0;
    }
    fd = openat(s->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    int rc = journal_setup(s, fd, name, NULL, h, sizeof h);
    if (rc == 0)
        *fd_out = fd;
    return rc;
}

/* Drops the journal file of a covered generation (journal_drop; queued with background_io). */
static void journal_unlink(sn_spool *s, uint64_t gen)
{
    bg_queue(s, &(bg_op){.kind = BG_DROP, .gen = gen});
}

/* fdatasyncs the segments written since the last sync. Returns 0 or the first error. */
static int sync_segments(sn_spool *s)
{
    int first = 0;
    for (size_t i = 0; i < s->nsegs; i++) {
        seg *g = &s->segs[i];
        if (!g->dirty || g->fd < 0)
            continue;
        int rc = sync_file(s, g->fd, &g->rewrite);
        if (rc == 0)
            g->dirty = false;
        else if (first == 0)
            first = rc;
    }
    return first;
}

/* Whether every sealed record appended so far is durable: no segment written since the last
 * sync, no full segment's descriptor waiting for one, no background sync still to finish. */
static bool segments_durable(sn_spool *s)
{
    for (size_t i = 0; i < s->nsegs; i++)
        if (s->segs[i].dirty)
            return false;
    return s->nhandoff == 0 && !bg_syncing(s) && !atomic_load(&s->bg_resync) &&
           atomic_load(&s->unsynced) == 0;
}

static int bg_sync_start(sn_spool *s, bool retry_all);

/* Deletes the journal files waiting for the segments to be durable. */
static void delete_pending(sn_spool *s)
{
    for (size_t i = 0; i < s->npending; i++)
        journal_unlink(s, s->pending[i]);
    s->npending = 0;
}

/* Marks journal generation gen covered and obsolete: deleted now if the sealed records covering
 * it are durable, else at the next sync (or now, after syncing the segments, when the pending
 * list is full). */
static void journal_retire(sn_spool *s, uint64_t gen)
{
    if (segments_durable(s)) {
        journal_unlink(s, gen);
        return;
    }
    if (s->npending == PENDING_MAX && s->bg_started && bg_sync_start(s, false) == 0 &&
        s->npending < PENDING_MAX) {
        s->pending[s->npending++] = gen; /* the list went with that sync */
        return;
    }
    if (s->npending == PENDING_MAX) {
        /* segments_durable also covers the full segments handed to the background thread and
         * a background sync still running or failed, which sync_segments does not sync. */
        if (sync_segments(s) == 0 && segments_durable(s))
            delete_pending(s);
        else
            /* Keep the file: it is discarded at open as covered, so keeping it is safe. */
            return;
    }
    if (segments_durable(s))
        journal_unlink(s, gen);
    else
        s->pending[s->npending++] = gen;
}

/* Retires the detached generations <= upto (a sealed record covers them now): detached[] is
 * compacted first, so that a sync journal_retire may start sees only the generations kept. */
static void retire_detached(sn_spool *s, uint64_t upto)
{
    uint64_t gens[SN_SPOOL_DETACHED_MAX];
    size_t keep = 0, nretired = 0;
    for (size_t i = 0; i < s->ndetached; i++) {
        jdetached *d = &s->detached[i];
        if (d->gen > upto) {
            s->detached[keep++] = *d;
            continue;
        }
        close(d->fd);
        s->jbytes -= d->size;
        gens[nretired++] = d->gen;
    }
    s->ndetached = keep;
    for (size_t i = 0; i < nretired; i++)
        journal_retire(s, gens[i]);
}

/* Starts generation jgen + 1 with an empty file and retires the covered files. On failure the
 * generation is unchanged, jstale holds the error and the next journal append retries. */
static int journal_rotate(sn_spool *s)
{
    int fd = -1;
    int rc = journal_create(s, s->jgen + 1, &fd);
    if (rc != 0) {
        s->jstale = rc;
        sn_log_error("spool: cannot start a new journal generation", SN_LOG_STR("dir", s->dir),
                     SN_LOG_UINT("generation", s->jgen + 1), SN_LOG_ERRNO(rc));
        return rc;
    }
    for (size_t i = 0; i < s->nrecovered; i++)
        if (s->recovered[i].gen != s->jgen)
            journal_retire(s, s->recovered[i].gen);
    free(s->recovered);
    s->recovered = NULL;
    s->nrecovered = 0;
    /* The closed descriptor is gone before a sync journal_retire may start: nothing of it may
     * be duplicated (its number may be reused already); its file is covered, no sync needed. */
    close(s->jfd);
    s->jfd = -1;
    s->jdirty = false;
    s->jrewrite = false;
    journal_retire(s, s->jgen);
    retire_detached(s, s->covered_gen);
    s->jfd = fd;
    s->jversion = JOURNAL_VERSION_TAGGED;
    s->jgen++;
    s->jsize = SN_SPOOL_JOURNAL_FILE_HEADER;
    s->jbytes = SN_SPOOL_JOURNAL_FILE_HEADER;
    s->jrecords = 0;
    s->jdirty = s->cfg.fsync != SN_SPOOL_FSYNC_ALWAYS;
    s->jrewrite = false;
    s->jstale = 0;
    return 0;
}

/* ---- recovery ---- */

typedef enum scan_result { SCAN_OK = 0, SCAN_SHORT, SCAN_BAD } scan_result;

/* Reads and checks the sealed record at off (header, length, id order, CRC over the payload).
 * Returns SCAN_OK with the header fields, SCAN_SHORT when the file ends inside the record,
 * SCAN_BAD otherwise; a read error is returned as a negative errno. why says what was wrong. */
static int scan_seg_record(int fd, uint64_t off, uint64_t size, uint64_t prev_id, uint8_t *scratch,
                           uint32_t *len, uint64_t *id, uint64_t *gen, const char **why)
{
    uint8_t h[SN_SPOOL_RECORD_HEADER];
    if (size - off < SN_SPOOL_RECORD_HEADER) {
        *why = "short header";
        return SCAN_SHORT;
    }
    ssize_t n = pread_full(fd, h, sizeof h, off);
    if (n < 0)
        return (int)n;
    if ((size_t)n < sizeof h) {
        *why = "short header";
        return SCAN_SHORT;
    }
    bool castagnoli;
    if (!seg_magic_ok(get_u32(h), &castagnoli)) {
        *why = "bad magic";
        return SCAN_BAD;
    }
    *len = get_u32(h + 4);
    *id = get_u64(h + 8);
    *gen = get_u64(h + 16);
    if (*len > SN_SPOOL_MAX_RECORD) {
        *why = "bad length";
        return SCAN_BAD;
    }
    if (*id > SPOOL_COUNTER_MAX || *gen > SPOOL_COUNTER_MAX) {
        *why = "record id or generation out of range";
        return SCAN_BAD;
    }
    if (size - off - SN_SPOOL_RECORD_HEADER < *len) {
        *why = "short record";
        return SCAN_SHORT;
    }
    uint32_t crc = crc_any_update(castagnoli, 0, h, 28);
    int rc = crc_file_range(fd, off + SN_SPOOL_RECORD_HEADER, *len, &crc, scratch, castagnoli);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        *why = "short record";
        return SCAN_SHORT;
    }
    if (crc != get_u32(h + 28)) {
        *why = "bad checksum";
        return SCAN_BAD;
    }
    if (*id <= prev_id) {
        *why = "record id out of order";
        return SCAN_BAD;
    }
    return SCAN_OK;
}

/* Scans segment g (already in segs[], fd open): counts its unacknowledged records, finds its
 * head, and deals with a bad record -- a torn tail of the last segment is truncated, anything
 * else skips the rest of the segment. Returns 0 or a negative errno (read error). */
static int recover_segment(sn_spool *s, seg *g, bool is_last, uint64_t *prev_id, uint8_t *scratch)
{
    char name[NAME_MAX_LEN];
    seg_name(name, sizeof name, g->base);
    uint64_t size = file_size(g->fd);
    uint64_t off = 0;
    bool seen_unacked = false;
    g->size = size;
    while (off < size) {
        uint32_t len = 0;
        uint64_t id = 0, gen = 0;
        const char *why = "";
        int r = scan_seg_record(g->fd, off, size, *prev_id, scratch, &len, &id, &gen, &why);
        if (r < 0) {
            sn_log_error("spool: cannot read segment", SN_LOG_STR("dir", s->dir),
                         SN_LOG_STR("file", name), SN_LOG_ERRNO(r));
            return r;
        }
        if (r == SCAN_OK) {
            uint64_t rec = SN_SPOOL_RECORD_HEADER + (uint64_t)len;
            *prev_id = id;
            g->last_id = id;
            if (gen > s->covered_gen)
                s->covered_gen = gen;
            if (id > s->acked_id) {
                if (!seen_unacked)
                    g->first_off = off;
                seen_unacked = true;
                g->nrec++;
                g->nbytes += rec;
            }
            off += rec;
            continue;
        }
        /* A bad record: a tail (nothing readable could follow it) is cut off; otherwise the
         * rest of the segment is skipped. */
        bool tail = is_last && (r == SCAN_SHORT || off + SN_SPOOL_RECORD_HEADER + len == size ||
                                rest_is_zero(g->fd, off, size, scratch));
        if (tail) {
            if (ftruncate(g->fd, (off_t)off) != 0) {
                int e = -errno;
                sn_log_error("spool: cannot truncate a torn segment tail",
                             SN_LOG_STR("dir", s->dir), SN_LOG_STR("file", name), SN_LOG_ERRNO(e));
                return e;
            }
            sn_log_warn("spool: truncated a torn segment tail", SN_LOG_STR("dir", s->dir),
                        SN_LOG_STR("file", name), SN_LOG_STR("reason", why),
                        SN_LOG_UINT("offset", off), SN_LOG_UINT("bytes", size - off),
                        SN_LOG_UINT("records_kept", g->nrec));
            s->st.torn_tails++;
            s->st.truncated_bytes += size - off;
            g->size = off;
            g->dirty = true;
        } else {
            sn_log_error("spool: bad record, skipping the rest of the segment",
                         SN_LOG_STR("dir", s->dir), SN_LOG_STR("file", name),
                         SN_LOG_STR("reason", why), SN_LOG_UINT("offset", off),
                         SN_LOG_UINT("bytes", size - off), SN_LOG_UINT("records_kept", g->nrec));
            s->st.corrupt_segments++;
            s->st.skipped_bytes += size - off;
            g->broken = true;
        }
        break;
    }
    g->end = off;
    if (!seen_unacked)
        g->first_off = off;
    return 0;
}

/* Whether the version 2 journal record whose header r is at off in a file of generation gen,
 * tagged with another generation, is a whole record of an earlier generation (a reused spare's
 * old content): its tag below gen's low 32 bits (the earlier generation is the same high half,
 * or the one before) and its checksum good for that generation. Returns 1, 0 (not: damage), or
 * a negative errno from reading. */
static int stale_record(int fd, uint64_t gen, const uint8_t *r, uint64_t off, uint64_t size,
                        uint8_t *scratch)
{
    uint32_t tag = get_u32(r + 8), len = get_u32(r + 4);
    uint64_t hi = gen & ~(uint64_t)UINT32_MAX;
    uint64_t old = hi | tag;
    if (tag >= (uint32_t)gen) {
        if (hi == 0)
            return 0;
        old -= (uint64_t)1 << 32;
    }
    if (len > SN_SPOOL_MAX_RECORD || size - off - SN_SPOOL_JOURNAL_HEADER < len)
        return 0;
    uint32_t crc = jrec_crc(JOURNAL_VERSION_TAGGED, old, r, NULL, 0);
    int rc = crc_file_range(fd, off + SN_SPOOL_JOURNAL_HEADER, len, &crc, scratch,
                            JOURNAL_VERSION_TAGGED);
    if (rc < 0)
        return rc;
    return rc == 0 && crc == get_u32(r + 12);
}

/* Reads the journal file of an uncovered generation: checks its header, counts its records and
 * truncates it at the first bad one. Returns 0 and the file's good length, or a negative errno.
 * A file too short for its header (a crash while it was created) gets its header rewritten. */
static int recover_journal_file(sn_spool *s, int fd, uint64_t gen, uint8_t *scratch, uint64_t *end,
                                uint64_t *records, uint32_t *version)
{
    char name[NAME_MAX_LEN];
    journal_name(name, sizeof name, gen);
    uint64_t size = file_size(fd);
    uint8_t h[SN_SPOOL_JOURNAL_FILE_HEADER];
    uint64_t off = SN_SPOOL_JOURNAL_FILE_HEADER;
    const char *why = NULL;
    *records = 0;
    ssize_t n = pread_full(fd, h, sizeof h, 0);
    if (n < 0)
        return (int)n;
    if ((size_t)n < sizeof h) {
        why = "short file header";
        off = 0;
    } else if (get_u32(h) != JFILE_MAGIC ||
               (get_u32(h + 4) != FORMAT_VERSION && get_u32(h + 4) != JOURNAL_VERSION_TAGGED) ||
               get_u64(h + 8) != gen || get_u32(h + 20) != crc_update(0, h, 20)) {
        why = "bad file header";
        off = 0;
    } else {
        *version = get_u32(h + 4);
    }
    while (why == NULL && off < size) {
        uint8_t r[SN_SPOOL_JOURNAL_HEADER];
        n = pread_full(fd, r, sizeof r, off);
        if (n < 0)
            return (int)n;
        if ((size_t)n < sizeof r) {
            why = "short header";
            break;
        }
        uint32_t len = get_u32(r + 4);
        if (*version == JOURNAL_VERSION_TAGGED && get_u32(r) == JREC_MAGIC &&
            get_u32(r + 8) != (uint32_t)gen) {
            /* A record of the file's earlier life (a reused spare): the end, not damage -- if it
             * is one: an earlier generation's tag and a checksum good for that generation.
             * Cut off quietly, so that a later append shorter than what it covers leaves no
             * stale bytes behind it (which the next open would report as a torn tail). Else
             * (a damaged tag of a current record) it is a torn tail like any other. */
            int old = stale_record(fd, gen, r, off, size, scratch);
            if (old < 0)
                return old;
            if (old == 0) {
                why = "bad generation tag";
                break;
            }
            if (ftruncate(fd, (off_t)off) != 0)
                return -errno;
            break;
        }
        if (get_u32(r) != JREC_MAGIC || len > SN_SPOOL_MAX_RECORD) {
            why = "bad header";
            break;
        }
        if (size - off - SN_SPOOL_JOURNAL_HEADER < len) {
            why = "short record";
            break;
        }
        uint32_t crc = jrec_crc(*version, gen, r, NULL, 0);
        int rc = crc_file_range(fd, off + SN_SPOOL_JOURNAL_HEADER, len, &crc, scratch,
                                *version == JOURNAL_VERSION_TAGGED);
        if (rc < 0)
            return rc;
        if (rc == 1 || crc != get_u32(r + 12)) {
            why = rc == 1 ? "short record" : "bad checksum";
            break;
        }
        off += SN_SPOOL_JOURNAL_HEADER + (uint64_t)len;
        (*records)++;
    }
    if (why != NULL) {
        if (ftruncate(fd, (off_t)off) != 0)
            return -errno;
        sn_log_warn("spool: truncated a torn journal tail", SN_LOG_STR("dir", s->dir),
                    SN_LOG_STR("file", name), SN_LOG_STR("reason", why), SN_LOG_UINT("offset", off),
                    SN_LOG_UINT("bytes", size - off), SN_LOG_UINT("records_kept", *records));
        s->st.torn_tails++;
        s->st.truncated_bytes += size - off;
        if (off == 0) {
            *version = JOURNAL_VERSION_TAGGED;
            put_u32(h, JFILE_MAGIC);
            put_u32(h + 4, JOURNAL_VERSION_TAGGED);
            put_u64(h + 8, gen);
            put_u32(h + 16, 0);
            put_u32(h + 20, crc_update(0, h, 20));
            int rc = pwrite2(fd, h, sizeof h, NULL, 0, 0);
            if (rc != 0)
                return rc;
            off = SN_SPOOL_JOURNAL_FILE_HEADER;
        }
    }
    *end = off;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lists the directory: segment bases and journal generations, sorted; removes a leftover
 * ack.tmp. The arrays are malloc'ed (caller frees). Returns 0 or a negative errno. */
static int list_dir(sn_spool *s, uint64_t **segs, size_t *nsegs, uint64_t **gens, size_t *ngens)
{
    int rc = 0;
    size_t cs = 0, cg = 0;
    *segs = NULL;
    *gens = NULL;
    *nsegs = *ngens = 0;
    int fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        rc = -errno;
        close(fd);
        return rc;
    }
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        uint64_t v;
        uint64_t **arr = NULL;
        size_t *n = NULL, *cap = NULL;
        if (nl == strlen(SEG_PREFIX) + NAME_DIGITS + strlen(SEG_SUFFIX) &&
            memcmp(e->d_name, SEG_PREFIX, strlen(SEG_PREFIX)) == 0 &&
            memcmp(e->d_name + nl - strlen(SEG_SUFFIX), SEG_SUFFIX, strlen(SEG_SUFFIX)) == 0 &&
            parse_digits(e->d_name + strlen(SEG_PREFIX), &v) == 0) {
            arr = segs, n = nsegs, cap = &cs;
        } else if (nl == strlen(JOURNAL_PREFIX) + NAME_DIGITS &&
                   memcmp(e->d_name, JOURNAL_PREFIX, strlen(JOURNAL_PREFIX)) == 0 &&
                   parse_digits(e->d_name + strlen(JOURNAL_PREFIX), &v) == 0) {
            arr = gens, n = ngens, cap = &cg;
        } else if (strcmp(e->d_name, ACK_TMP_NAME) == 0 ||
                   (nl == strlen(SPARE_PREFIX) + NAME_DIGITS &&
                    memcmp(e->d_name, SPARE_PREFIX, strlen(SPARE_PREFIX)) == 0)) {
            unlinkat(s->dirfd, e->d_name, 0); /* spares are made again as files are covered */
        }
        if (arr != NULL) {
            if (*n == *cap) {
                size_t nc = *cap ? *cap * 2 : 16;
                uint64_t *na = realloc(*arr, nc * sizeof *na);
                if (na == NULL) {
                    rc = -ENOMEM;
                    goto out_closedir;
                }
                *arr = na;
                *cap = nc;
            }
            (*arr)[(*n)++] = v;
        }
        errno = 0;
    }
    if (errno != 0)
        rc = -errno;
    if (*nsegs > 1)
        qsort(*segs, *nsegs, sizeof **segs, cmp_u64);
    if (*ngens > 1)
        qsort(*gens, *ngens, sizeof **gens, cmp_u64);
out_closedir:
    closedir(d);
    if (rc != 0) {
        free(*segs);
        free(*gens);
        *segs = *gens = NULL;
    }
    return rc;
}

/* Recovers the segments named in bases (sorted). Returns 0 or a negative errno with err set. */
static int recover_segments(sn_spool *s, const uint64_t *bases, size_t n, uint8_t *scratch,
                            char *err, size_t errlen)
{
    uint64_t prev_id = 0;
    s->segs = calloc(n ? n : 1, sizeof *s->segs);
    if (s->segs == NULL)
        return -ENOMEM;
    s->capsegs = n ? n : 1;
    for (size_t i = 0; i < n; i++) {
        seg *g = &s->segs[s->nsegs];
        *g = (seg){.base = bases[i], .fd = -1};
        int rc = seg_open(s, g);
        if (rc != 0) {
            set_err(err, errlen, "spool: cannot open segment %" PRIu64 " in %s: %s", bases[i],
                    s->dir, strerror(-rc));
            return rc;
        }
        s->nsegs++;
        rc = recover_segment(s, g, i + 1 == n, &prev_id, scratch);
        if (rc != 0) {
            set_err(err, errlen, "spool: cannot read segment %" PRIu64 " in %s: %s", bases[i],
                    s->dir, strerror(-rc));
            return rc;
        }
        if (g->last_id >= s->next_id)
            s->next_id = g->last_id + 1;
        if (g->nrec == 0) {
            /* Nothing left to send in it: every record popped, or none readable. */
            char name[NAME_MAX_LEN];
            seg_name(name, sizeof name, g->base);
            close(g->fd);
            if (unlinkat(s->dirfd, name, 0) != 0 && errno != ENOENT)
                sn_log_warn("spool: cannot delete segment", SN_LOG_STR("dir", s->dir),
                            SN_LOG_STR("file", name), SN_LOG_ERRNO(errno));
            s->dir_dirty = true;
            s->nsegs--;
            continue;
        }
        s->count += g->nrec;
        s->bytes += g->nbytes;
        /* The crashed owner may not have synced it: make it durable before the journal files
         * its records cover are deleted below. */
        if ((rc = sync_fd(s, g->fd, false)) == 0) {
            g->dirty = false;
        } else {
            sn_log_warn("spool: cannot sync a recovered segment; keeping covered journal files",
                        SN_LOG_STR("dir", s->dir), SN_LOG_UINT("segment", g->base),
                        SN_LOG_ERRNO(rc));
            s->keep_covered = true;
        }
        /* Keep only the head's and the last segment's files open. */
        if (s->nsegs > 2) {
            seg *mid = &s->segs[s->nsegs - 2];
            if (mid->fd >= 0 && !mid->dirty) {
                close(mid->fd);
                mid->fd = -1;
            }
        }
    }
    return 0;
}

/* Recovers the journal files (generations in gens, sorted): covered ones are deleted, uncovered
 * ones checked and kept for sn_spool_recover_journal; the newest uncovered one (or a new file)
 * becomes the current generation. Returns 0 or a negative errno with err set. */
static int recover_journals(sn_spool *s, const uint64_t *gens, size_t n, uint8_t *scratch,
                            char *err, size_t errlen)
{
    uint64_t maxgen = s->covered_gen;
    s->recovered = calloc(n ? n : 1, sizeof *s->recovered);
    if (s->recovered == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        uint64_t gen = gens[i];
        if (gen > maxgen)
            maxgen = gen;
        if (gen <= s->covered_gen) {
            if (!s->keep_covered)
                journal_unlink(s, gen);
            s->st.discarded_journal++;
            s->dir_dirty = true;
            continue;
        }
        char name[NAME_MAX_LEN];
        journal_name(name, sizeof name, gen);
        int fd = openat(s->dirfd, name, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            int e = -errno;
            set_err(err, errlen, "spool: cannot open journal %s in %s: %s", name, s->dir,
                    strerror(-e));
            return e;
        }
        uint64_t end = 0, records = 0;
        uint32_t version = FORMAT_VERSION;
        int rc = recover_journal_file(s, fd, gen, scratch, &end, &records, &version);
        if (rc != 0) {
            close(fd);
            set_err(err, errlen, "spool: cannot recover journal %s in %s: %s", name, s->dir,
                    strerror(-rc));
            return rc;
        }
        s->recovered[s->nrecovered++] = (jfile){.gen = gen, .version = version, .end = end};
        s->jbytes += end;
        s->jrecords += records;
        s->st.recovered_journal += records;
        if (i + 1 == n) {
            s->jfd = fd;
            s->jversion = version;
            s->jgen = gen;
            s->jsize = end;
        } else {
            close(fd);
        }
    }
    if (s->st.discarded_journal > 0)
        sn_log_info("spool: discarded journal files of generations already sealed",
                    SN_LOG_STR("dir", s->dir), SN_LOG_UINT("files", s->st.discarded_journal),
                    SN_LOG_UINT("covered_generation", s->covered_gen));
    if (s->jfd >= 0)
        return 0;
    /* Every generation found is covered: start a new one above all of them. */
    int rc = journal_create(s, maxgen + 1, &s->jfd);
    if (rc != 0) {
        set_err(err, errlen, "spool: cannot create a journal in %s: %s", s->dir, strerror(-rc));
        return rc;
    }
    s->jgen = maxgen + 1;
    s->jversion = JOURNAL_VERSION_TAGGED;
    s->jsize = SN_SPOOL_JOURNAL_FILE_HEADER;
    s->jbytes = SN_SPOOL_JOURNAL_FILE_HEADER;
    return 0;
}

/* Creates (mode 0750) and opens the directory. Returns 0 or a negative errno with err set. */
static int open_dir(sn_spool *s, const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        int e = -errno;
        set_err(err, errlen, "spool: cannot create directory %s: %s", dir, strerror(-e));
        return e;
    }
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        int e = -errno;
        if (e == -ENOTDIR)
            set_err(err, errlen, "spool: %s is not a directory", dir);
        else
            set_err(err, errlen, "spool: cannot open directory %s: %s", dir, strerror(-e));
        return e;
    }
    return 0;
}

/* Takes the exclusive lock on dir/LOCK and writes our pid into it. Returns 0 or a negative
 * errno (-EBUSY when someone else holds it) with err set. */
static int take_lock(sn_spool *s, char *err, size_t errlen)
{
    s->lockfd = openat(s->dirfd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (s->lockfd < 0) {
        int e = -errno;
        set_err(err, errlen, "spool: cannot create lock file in %s: %s", s->dir, strerror(-e));
        return e;
    }
    if (flock(s->lockfd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            char pid[24] = {0};
            ssize_t n = pread_full(s->lockfd, pid, sizeof pid - 1, 0);
            while (n > 0 && (pid[n - 1] == '\n' || pid[n - 1] == '\0'))
                pid[--n] = '\0';
            set_err(err, errlen,
                    "spool: directory %s is in use by another process (pid %s); each sidecar "
                    "needs its own spool directory",
                    s->dir, n > 0 ? pid : "unknown");
            return -EBUSY;
        }
        set_err(err, errlen, "spool: cannot lock %s: %s", s->dir, strerror(e));
        return -e;
    }
    char pid[24];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(s->lockfd, 0) == 0 && n > 0)
        (void)pwrite2(s->lockfd, pid, (size_t)n, NULL, 0, 0);
    return 0;
}

int sn_spool_open(const char *dir, const sn_spool_config *cfg, sn_spool **out, char *err,
                  size_t errlen)
{
    sn_spool_config defaults;
    int rc;
    uint64_t *bases = NULL, *gens = NULL;
    size_t nbases = 0, ngens = 0;
    uint8_t *scratch = NULL;

    set_err(err, errlen, "%s", "");
    *out = NULL;
    if (cfg == NULL) {
        sn_spool_config_defaults(&defaults);
        cfg = &defaults;
    }
    if (dir == NULL || dir[0] == '\0') {
        set_err(err, errlen, "spool: no directory given");
        return -EINVAL;
    }
    if ((rc = check_config(cfg, err, errlen)) != 0)
        return rc;
    pthread_once(&crc32c_once, crc32c_init); /* before any record's CRC-32C (crc32c_fast) */
    sn_spool *s = calloc(1, sizeof *s);
    if (s == NULL)
        goto out_nomem;
    s->cfg = *cfg;
    s->dirfd = s->lockfd = s->jfd = s->ackfd = -1;
    pthread_mutex_init(&s->bg_mu, NULL);
    pthread_mutex_init(&s->spare_mu, NULL);
    pthread_condattr_t ca; /* bg_cv times retries on the monotonic clock */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->bg_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->bg_idle_cv, NULL);
    s->next_id = 1;
    s->dir = strdup(dir);
    if (s->dir == NULL)
        goto out_nomem_spool;
    if ((rc = open_dir(s, dir, err, errlen)) != 0 || (rc = take_lock(s, err, errlen)) != 0)
        goto out_close_spool;

    read_ack(s);
    read_split(s);
    s->covered_gen = s->acked_gen;
    if (s->acked_id >= s->next_id)
        s->next_id = s->acked_id + 1;
    scratch = malloc(SCRATCH_BYTES);
    if (scratch == NULL)
        goto out_nomem_spool;
    if ((rc = list_dir(s, &bases, &nbases, &gens, &ngens)) != 0) {
        set_err(err, errlen, "spool: cannot list %s: %s", dir, strerror(-rc));
        goto out_free_scratch;
    }
    if ((rc = recover_segments(s, bases, nbases, scratch, err, errlen)) != 0 ||
        (rc = recover_journals(s, gens, ngens, scratch, err, errlen)) != 0)
        goto out_free_lists;
    s->st.recovered_records = s->count;
    free(scratch);
    free(bases);
    free(gens);
    if (s->bytes > (uint64_t)s->cfg.max_bytes)
        sn_log_warn("spool: recovered more than max_bytes; new batches are refused until the "
                    "aggregator has taken enough",
                    SN_LOG_STR("dir", s->dir), SN_LOG_UINT("bytes", s->bytes),
                    SN_LOG_INT("max_bytes", s->cfg.max_bytes));
    if (s->cfg.background_io && s->cfg.fsync == SN_SPOOL_FSYNC_INTERVAL) {
        /* The thread takes no signals: they belong to the owner's loop. Without it (it could
         * not be created) everything runs on the caller's thread, as without background_io. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        s->bg_started = pthread_create(&s->bg_thread, NULL, bg_main, s) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!s->bg_started)
            sn_log_warn("spool: no background thread; syncs and deletions run on the loop",
                        SN_LOG_STR("dir", s->dir));
    }
    sn_log_info("spool: opened", SN_LOG_STR("dir", s->dir), SN_LOG_UINT("records", s->count),
                SN_LOG_UINT("bytes", s->bytes), SN_LOG_UINT("segments", s->nsegs),
                SN_LOG_UINT("journal_generation", s->jgen),
                SN_LOG_UINT("journal_records", s->jrecords),
                SN_LOG_UINT("covered_generation", s->covered_gen));
    *out = s;
    return 0;

out_free_lists:
    free(bases);
    free(gens);
out_free_scratch:
    free(scratch);
out_close_spool:
    sn_spool_close(s);
    return rc;
out_nomem_spool:
    free(scratch);
    sn_spool_close(s);
out_nomem:
    set_err(err, errlen, "spool: out of memory");
    return -ENOMEM;
}

/* Closes every file of s and frees it, without syncing. */
static void spool_free(sn_spool *s)
{
    for (size_t i = 0; i < s->nsegs; i++)
        if (s->segs[i].fd >= 0)
            close(s->segs[i].fd);
    if (s->jfd >= 0)
        close(s->jfd);
    for (size_t i = 0; i < s->ndetached; i++)
        close(s->detached[i].fd);
    for (size_t i = 0; i < s->nhandoff; i++)
        close(s->handoff[i]);
    for (size_t i = 0; i < s->nretry; i++)
        close(s->retry[i].fd);
    if (s->ackfd >= 0)
        close(s->ackfd);
    if (s->lockfd >= 0)
        close(s->lockfd); /* releases the flock */
    if (s->dirfd >= 0)
        close(s->dirfd);
    free(s->segs);
    free(s->recovered);
    free(s->buf);
    free(s->dir);
    pthread_cond_destroy(&s->bg_idle_cv);
    pthread_cond_destroy(&s->bg_cv);
    pthread_mutex_destroy(&s->bg_mu);
    pthread_mutex_destroy(&s->spare_mu);
    free(s);
}

void sn_spool_close(sn_spool *s)
{
    if (s == NULL)
        return;
    if (s->bg_started) {
        /* The thread runs what is queued, then exits; the final sync runs here. */
        pthread_mutex_lock(&s->bg_mu);
        s->bg_stop = true;
        pthread_cond_signal(&s->bg_cv);
        pthread_mutex_unlock(&s->bg_mu);
        pthread_join(s->bg_thread, NULL);
        s->bg_started = false;
    }
    if (s->lockfd >= 0 && s->jfd >= 0) {
        int rc = sn_spool_sync(s);
        if (rc != 0)
            sn_log_warn("spool: sync at close failed", SN_LOG_STR("dir", s->dir), SN_LOG_ERRNO(rc));
    }
    spool_free(s);
}

/* ---- sealed records ---- */

int sn_spool_append(sn_spool *s, const uint8_t *data, size_t len, uint64_t journal_gen)
{
    if (data == NULL && len > 0)
        return -EINVAL;
    if (len > (uint64_t)s->cfg.max_record_bytes)
        return -EMSGSIZE;
    if (journal_gen > s->jgen)
        return -EINVAL;
    uint64_t rec = SN_SPOOL_RECORD_HEADER + (uint64_t)len;
    if (s->bytes + rec > (uint64_t)s->cfg.max_bytes) {
        s->st.refused_full++;
        return -ENOSPC;
    }
    int rc;
    bool created = false;
    seg *g = s->nsegs > 0 ? &s->segs[s->nsegs - 1] : NULL;
    if (g == NULL || g->broken || (g->size > 0 && g->size + rec > (uint64_t)s->cfg.segment_bytes)) {
        /* Close the full segment: make it durable now so sync only looks at the last one (with
         * background_io: hand a duplicate of its descriptor to the next sync instead), and
         * keep its file open only if it is the head. */
        if (g != NULL && g->dirty && !g->broken && s->bg_started && s->nhandoff < HANDOFF_MAX &&
            (!g->rewrite || rewrite_file(g->fd) == 0)) {
            int dfd = fcntl(g->fd, F_DUPFD_CLOEXEC, 0);
            if (dfd >= 0) {
                s->handoff_base[s->nhandoff] = g->base;
                s->handoff_rewrite[s->nhandoff] = false;
                s->handoff[s->nhandoff++] = dfd;
                g->dirty = false;
                g->rewrite = false; /* rewritten: the handed-off sync counts */
            }
        }
        if (g != NULL && g->dirty && !g->broken) {
            if ((rc = sync_file(s, g->fd, &g->rewrite)) != 0)
                return rc;
            g->dirty = false;
        }
        if (g != NULL && s->nsegs > 1 && g->fd >= 0 && !g->dirty) {
            close(g->fd);
            g->fd = -1;
        }
        if ((rc = seg_create(s)) != 0) {
            sn_log_error("spool: cannot create a segment", SN_LOG_STR("dir", s->dir),
                         SN_LOG_ERRNO(rc));
            return rc;
        }
        created = true;
        g = &s->segs[s->nsegs - 1];
    }

    uint8_t h[SN_SPOOL_RECORD_HEADER] = {0};
    put_u32(h, SEG_MAGIC_C);
    put_u32(h + 4, (uint32_t)len);
    put_u64(h + 8, s->next_id);
    put_u64(h + 16, journal_gen);
    uint32_t crc = crc32c_fast(0, h, 28);
    if (len > 0)
        crc = crc32c_fast(crc, data, len);
    put_u32(h + 28, crc);

    rc = pwrite2(g->fd, h, sizeof h, data, len, g->size);
    if (rc == 0 && s->cfg.fsync == SN_SPOOL_FSYNC_ALWAYS) {
        rc = sync_fd(s, g->fd, false);
        if (rc == 0 && created && sync_fd(s, s->dirfd, true) == 0)
            s->dir_dirty = false;
    }
    if (rc != 0) {
        /* Leave nothing of the record behind; if that fails too, stop appending here (the
         * partial record reads as a bad tail at recovery). */
        if (created) {
            seg_uncreate(s);
        } else if (ftruncate(g->fd, (off_t)g->size) != 0) {
            g->broken = true;
            g->dirty = true;
        }
        sn_log_error("spool: cannot append a record", SN_LOG_STR("dir", s->dir),
                     SN_LOG_UINT("bytes", rec), SN_LOG_ERRNO(rc));
        return rc;
    }
    if (g->nrec == 0)
        g->first_off = g->size;
    g->size += rec;
    g->end = g->size;
    g->nrec++;
    g->nbytes += rec;
    g->last_id = s->next_id;
    g->dirty = s->cfg.fsync != SN_SPOOL_FSYNC_ALWAYS;
    s->next_id++;
    s->count++;
    s->bytes += rec;
    if (journal_gen > s->covered_gen)
        s->covered_gen = journal_gen;
    retire_detached(s, journal_gen);
    return 0;
}

int sn_spool_peek(sn_spool *s, const uint8_t **data, size_t *len, uint64_t *id)
{
    for (;;) {
        if (s->count == 0)
            return -ENOENT;
        seg *g = &s->segs[0];
        if (!s->peeked) {
            int rc = seg_open(s, g);
            if (rc == -ENOENT) {
                /* Removed behind our back: its records are gone; do not stall on them. */
                skip_head_segment(s, "segment file missing");
                continue;
            }
            if (rc != 0)
                return rc;
            uint8_t h[SN_SPOOL_RECORD_HEADER];
            uint64_t off = g->first_off;
            ssize_t n = pread_full(g->fd, h, sizeof h, off);
            if (n < 0)
                return (int)n;
            uint32_t rlen = get_u32(h + 4);
            const char *why = NULL;
            bool castagnoli = false;
            if ((size_t)n < sizeof h || off + sizeof h > g->end)
                why = "short header";
            else if (!seg_magic_ok(get_u32(h), &castagnoli))
                why = "bad magic";
            else if (rlen > g->end - off - sizeof h)
                why = "bad length";
            if (why == NULL && (rc = buf_reserve(s, rlen)) != 0)
                return rc;
            if (why == NULL) {
                n = pread_full(g->fd, s->buf, rlen, off + sizeof h);
                if (n < 0)
                    return (int)n;
                if ((size_t)n < rlen)
                    why = "short record";
                else if (crc_any_update(castagnoli, crc_any_update(castagnoli, 0, h, 28), s->buf,
                                        rlen) != get_u32(h + 28))
                    why = "bad checksum";
                else if (get_u64(h + 8) <= s->acked_id)
                    why = "record id out of order";
            }
            if (why != NULL) {
                skip_head_segment(s, why);
                continue;
            }
            s->peeked = true;
            s->peek_id = get_u64(h + 8);
            s->peek_gen = get_u64(h + 16);
            s->peek_len = rlen;
        }
        *data = s->buf;
        *len = s->peek_len;
        if (id != NULL)
            *id = s->peek_id;
        return 0;
    }
}

int sn_spool_pop(sn_spool *s)
{
    if (s->count == 0)
        return -ENOENT;
    if (!s->peeked) {
        const uint8_t *d;
        size_t l;
        int rc = sn_spool_peek(s, &d, &l, NULL);
        if (rc != 0)
            return rc;
    }
    seg *g = &s->segs[0];
    uint64_t rec = SN_SPOOL_RECORD_HEADER + (uint64_t)s->peek_len;
    g->first_off += rec;
    g->nrec--;
    g->nbytes -= rec;
    s->count--;
    s->bytes -= rec;
    s->acked_id = s->peek_id;
    if (s->peek_gen > s->acked_gen)
        s->acked_gen = s->peek_gen;
    s->peeked = false;
    /* The ack file goes first: a segment is deleted only once the ack file is past it (with
     * background_io both are queued, in that order). */
    ack_pop(s);
    if (g->nrec == 0)
        drop_head_segment(s);
    return 0;
}

uint64_t sn_spool_bytes(const sn_spool *s)
{
    return s->bytes;
}

uint64_t sn_spool_count(const sn_spool *s)
{
    return s->count;
}

/* ---- journal ---- */

int sn_spool_journal_append(sn_spool *s, const uint8_t *data, size_t len)
{
    if (data == NULL && len > 0)
        return -EINVAL;
    if (len > (uint64_t)s->cfg.max_record_bytes)
        return -EMSGSIZE;
    uint64_t rec = SN_SPOOL_JOURNAL_HEADER + (uint64_t)len;
    if (s->jbytes + rec > (uint64_t)s->cfg.journal_max_bytes) {
        s->st.refused_full++;
        return -ENOSPC;
    }
    int rc;
    if (s->jstale != 0 && (rc = journal_rotate(s)) != 0)
        return rc;
    uint8_t h[SN_SPOOL_JOURNAL_HEADER] = {0};
    put_u32(h, JREC_MAGIC);
    put_u32(h + 4, (uint32_t)len);
    if (s->jversion == JOURNAL_VERSION_TAGGED)
        put_u32(h + 8, (uint32_t)s->jgen);
    put_u32(h + 12, jrec_crc(s->jversion, s->jgen, h, data, len));
    rc = pwrite2(s->jfd, h, sizeof h, data, len, s->jsize);
    if (rc == 0 && s->cfg.fsync == SN_SPOOL_FSYNC_ALWAYS)
        rc = sync_fd(s, s->jfd, false);
    if (rc != 0) {
        /* Cut off what was written. Should that fail too, the next append overwrites it (it
         * goes at jsize), and what might remain past the last record reads as a torn tail. */
        if (ftruncate(s->jfd, (off_t)s->jsize) != 0)
            sn_log_warn("spool: cannot cut off a failed journal write; the next append "
                        "overwrites it",
                        SN_LOG_STR("dir", s->dir), SN_LOG_ERRNO(errno));
        sn_log_error("spool: cannot append to the journal", SN_LOG_STR("dir", s->dir),
                     SN_LOG_UINT("bytes", rec), SN_LOG_ERRNO(rc));
        return rc;
    }
    s->jsize += rec;
    s->jbytes += rec;
    s->jrecords++;
    s->jdirty = s->cfg.fsync != SN_SPOOL_FSYNC_ALWAYS;
    return 0;
}

uint64_t sn_spool_journal_generation(const sn_spool *s)
{
    return s->jgen;
}

int sn_spool_journal_next(sn_spool *s)
{
    if (s->jstale != 0)
        return s->jstale;
    if (s->ndetached == SN_SPOOL_DETACHED_MAX)
        return -EBUSY;
    if (s->jbytes + SN_SPOOL_JOURNAL_FILE_HEADER > (uint64_t)s->cfg.journal_max_bytes) {
        s->st.refused_full++;
        return -ENOSPC;
    }
    int fd = -1;
    int rc = journal_create(s, s->jgen + 1, &fd);
    if (rc != 0) {
        sn_log_error("spool: cannot start a new journal generation", SN_LOG_STR("dir", s->dir),
                     SN_LOG_UINT("generation", s->jgen + 1), SN_LOG_ERRNO(rc));
        return rc;
    }
    s->detached[s->ndetached++] = (jdetached){.gen = s->jgen,
                                              .fd = s->jfd,
                                              .size = s->jsize,
                                              .records = s->jrecords,
                                              .dirty = s->jdirty,
                                              .rewrite = s->jrewrite};
    s->jfd = fd;
    s->jversion = JOURNAL_VERSION_TAGGED;
    s->jgen++;
    s->jsize = SN_SPOOL_JOURNAL_FILE_HEADER;
    s->jbytes += SN_SPOOL_JOURNAL_FILE_HEADER;
    s->jrecords = 0;
    s->jdirty = s->cfg.fsync != SN_SPOOL_FSYNC_ALWAYS;
    s->jrewrite = false;
    return 0;
}

int sn_spool_journal_reset(sn_spool *s)
{
    if (s->covered_gen < s->jgen && s->jrecords > 0)
        return -EINVAL;
    for (size_t i = 0; i < s->ndetached; i++)
        if (s->detached[i].gen > s->covered_gen && s->detached[i].records > 0)
            return -EINVAL;
    return journal_rotate(s);
}

int sn_spool_recover_journal(sn_spool *s, sn_spool_journal_fn fn, void *ud)
{
    s->peeked = false; /* buf is reused below */
    for (size_t i = 0; i < s->nrecovered; i++) {
        const jfile *f = &s->recovered[i];
        int fd = s->jfd;
        if (f->gen != s->jgen) {
            char name[NAME_MAX_LEN];
            journal_name(name, sizeof name, f->gen);
            fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                return -errno;
        }
        int rc = 0;
        uint64_t off = SN_SPOOL_JOURNAL_FILE_HEADER;
        while (rc == 0 && off + SN_SPOOL_JOURNAL_HEADER <= f->end) {
            uint8_t h[SN_SPOOL_JOURNAL_HEADER];
            ssize_t n = pread_full(fd, h, sizeof h, off);
            uint32_t len = get_u32(h + 4);
            if (n != (ssize_t)sizeof h || get_u32(h) != JREC_MAGIC ||
                len > f->end - off - sizeof h) {
                rc = n < 0 ? (int)n : -EIO;
                break;
            }
            if ((rc = buf_reserve(s, len)) != 0)
                break;
            n = pread_full(fd, s->buf, len, off + sizeof h);
            if (n != (ssize_t)len ||
                jrec_crc(f->version, f->gen, h, s->buf, len) != get_u32(h + 12)) {
                rc = n < 0 ? (int)n : -EIO;
                break;
            }
            rc = fn(ud, s->buf, len, f->gen);
            off += sizeof h + len;
        }
        if (fd != s->jfd)
            close(fd);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- durability ---- */

/* Marks every open segment and journal file as written since the last sync (dirty) or not;
 * with rewrite, also as to be rewritten before their next sync counts (other flags stay). */
static void set_files_dirty(sn_spool *s, bool dirty, bool rewrite)
{
    for (size_t i = 0; i < s->nsegs; i++) {
        if (s->segs[i].fd >= 0) {
            s->segs[i].dirty = dirty;
            s->segs[i].rewrite |= rewrite;
        }
    }
    if (s->jfd >= 0) {
        s->jdirty = dirty;
        s->jrewrite |= rewrite;
    }
    for (size_t i = 0; i < s->ndetached; i++) {
        s->detached[i].dirty = dirty;
        s->detached[i].rewrite |= rewrite;
    }
}

/* After a failed background sync (which file failed is not known here): every open file is
 * rewritten and synced again, and the directory synced again. */
static void mark_all_dirty(sn_spool *s)
{
    set_files_dirty(s, true, true);
    s->dir_dirty = true;
}

/* Rewrites (rewrite_file) the open files whose flag is set, here on the loop -- their writer --
 * before their descriptors go to a background sync, and clears the flags of those done.
 * Returns false when one could not be rewritten (its flag stays). */
static bool rewrite_flagged(sn_spool *s)
{
    bool ok = true;
    for (size_t i = 0; i < s->nsegs; i++) {
        seg *g = &s->segs[i];
        if (g->rewrite && g->fd >= 0 && g->dirty)
            g->rewrite = rewrite_file(g->fd) != 0;
        ok = ok && !(g->rewrite && g->fd >= 0 && g->dirty);
    }
    if (s->jrewrite && s->jdirty)
        s->jrewrite = rewrite_file(s->jfd) != 0;
    ok = ok && !(s->jrewrite && s->jdirty);
    for (size_t i = 0; i < s->ndetached; i++) {
        jdetached *d = &s->detached[i];
        if (d->rewrite && d->dirty)
            d->rewrite = rewrite_file(d->fd) != 0;
        ok = ok && !(d->rewrite && d->dirty);
    }
    /* Full segments still the loop's (sn_spool_sync's own sync of them failed): one that cannot
     * be rewritten is not handed over (bg_sync_start keeps it). */
    for (size_t i = 0; i < s->nhandoff; i++) {
        if (s->handoff_rewrite[i])
            s->handoff_rewrite[i] = rewrite_file(s->handoff[i]) != 0;
        ok = ok && !s->handoff_rewrite[i];
    }
    return ok;
}

/* Adds a duplicate of fd to op's descriptors (op has room). Returns false when dup fails. */
static bool add_dup(bg_op *op, int fd)
{
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0)
        return false;
    op->fds[op->nfds++] = d;
    return true;
}

/* Queues a sync of everything written so far (see sn_spool_sync_start) for the background
 * thread: duplicates of the dirty descriptors, the full segments' handed-over ones, the
 * directory, and the journal generations it may then delete. Returns 0, or -ENOMEM / -EMFILE
 * with nothing changed. */
static int bg_sync_start(sn_spool *s, bool retry_all)
{
    bool resynced = atomic_exchange(&s->bg_resync, false);
    if (resynced)
        mark_all_dirty(s);
    /* A file that could not be rewritten keeps its flag, and its sync does not count: the
     * covered journal generations stay pending, and a resync is tried again next time. */
    bool rewritten = rewrite_flagged(s);
    if (!rewritten && resynced) {
        atomic_store(&s->bg_resync, true);
        resynced = false;
    }
    size_t maxfds = s->nsegs + 1 + s->ndetached + s->nhandoff;
    bg_op *op =
        calloc(1, sizeof *op + (PENDING_MAX + maxfds) * sizeof(uint64_t) + maxfds * sizeof(int));
    if (op == NULL) {
        if (resynced)
            atomic_store(&s->bg_resync, true);
        return -ENOMEM;
    }
    op->kind = BG_SYNC;
    op->retry_all = retry_all;
    op->resynced = resynced;
    op->gens = (uint64_t *)(op + 1);
    op->bases = op->gens + PENDING_MAX;
    op->fds = (int *)(op->bases + maxfds);
    for (size_t i = 0; i < maxfds; i++)
        op->bases[i] = NO_SEGMENT;
    bool ok = true;
    for (size_t i = 0; ok && i < s->nsegs; i++)
        if (s->segs[i].dirty && s->segs[i].fd >= 0)
            ok = add_dup(op, s->segs[i].fd);
    if (ok && s->jdirty)
        ok = add_dup(op, s->jfd);
    for (size_t i = 0; ok && i < s->ndetached; i++)
        if (s->detached[i].dirty)
            ok = add_dup(op, s->detached[i].fd);
    if (!ok) {
        int rc = -errno;
        for (size_t i = 0; i < op->nfds; i++)
            close(op->fds[i]);
        free(op);
        if (resynced)
            atomic_store(&s->bg_resync, true);
        return rc;
    }
    /* Nothing can fail from here on: the flags are cleared for what the op now carries. */
    set_files_dirty(s, false, false);
    size_t kept = 0; /* a segment rewrite_flagged could not rewrite stays the loop's */
    for (size_t i = 0; i < s->nhandoff; i++) {
        if (s->handoff_rewrite[i]) {
            s->handoff_base[kept] = s->handoff_base[i];
            s->handoff_rewrite[kept] = true;
            s->handoff[kept++] = s->handoff[i];
            continue;
        }
        op->fds[op->nfds] = s->handoff[i];
        op->bases[op->nfds++] = s->handoff_base[i];
    }
    s->nhandoff = kept;
    op->dir = s->dir_dirty;
    s->dir_dirty = false;
    if (rewritten) {
        memcpy(op->gens, s->pending, s->npending * sizeof(uint64_t));
        op->ngens = s->npending;
        s->npending = 0;
    }
    bg_submit(s, op);
    return 0;
}

int sn_spool_sync_start(sn_spool *s)
{
    if (!s->bg_started)
        return sn_spool_sync(s);
    if (bg_sync_start(s, false) == 0)
        return 0;
    return sn_spool_sync(s); /* no memory or descriptors for the copy: here, as without it */
}

int sn_spool_sync(sn_spool *s)
{
    int first = 0;
    int rc;
    /* Handed-off segments, and those whose failed sync is retried, are the thread's: it syncs
     * them (every retry now), then the rest is synced here. Without the thread (after close),
     * the retries run here. */
    if (s->bg_started && (s->nhandoff > 0 || atomic_load(&s->unsynced) > 0))
        (void)bg_sync_start(s, true); /* failing that, the handed-off ones are synced below */
    bg_wait_idle(s);
    if (!s->bg_started && s->nretry > 0)
        note_sync(s, retry_run(s, true));
    /* After a failed background sync every open file is synced here; that working ends the
     * thread's hold on covered journal files. No BG_SYNC runs meanwhile (only the loop queues
     * them). */
    bool resynced = atomic_exchange(&s->bg_resync, false);
    if (resynced)
        mark_all_dirty(s);
    if (atomic_exchange(&s->bg_dir_dirty, false))
        s->dir_dirty = true;
    sync_ack(s);
    /* A handed-off segment whose sync fails here keeps its descriptor (and keeps the segments
     * from counting as durable, so the journal files covering it stay) for the next sync, which
     * rewrites it first: a second fdatasync could report success without writing anything. */
    size_t kept = 0;
    for (size_t i = 0; i < s->nhandoff; i++) {
        int fd = s->handoff[i];
        if ((rc = s->handoff_rewrite[i] ? resync_segment(s, fd) : sync_fd(s, fd, false)) != 0) {
            if (first == 0)
                first = rc;
            s->handoff_base[kept] = s->handoff_base[i];
            s->handoff_rewrite[kept] = true;
            s->handoff[kept++] = fd;
            continue;
        }
        close(fd);
    }
    s->nhandoff = kept;
    if ((rc = sync_segments(s)) != 0 && first == 0)
        first = rc;
    if (s->jdirty) {
        if ((rc = sync_file(s, s->jfd, &s->jrewrite)) == 0)
            s->jdirty = false;
        else if (first == 0)
            first = rc;
    }
    for (size_t i = 0; i < s->ndetached; i++) {
        if (!s->detached[i].dirty)
            continue;
        if ((rc = sync_file(s, s->detached[i].fd, &s->detached[i].rewrite)) == 0)
            s->detached[i].dirty = false;
        else if (first == 0)
            first = rc;
    }
    if (s->dir_dirty) {
        if ((rc = sync_fd(s, s->dirfd, true)) == 0)
            s->dir_dirty = false;
        else if (first == 0)
            first = rc;
    }
    if (resynced && first == 0)
        atomic_store(&s->bg_tainted, false);
    else if (resynced)
        atomic_store(&s->bg_resync, true); /* not done: the next sync resyncs every file again */
    if (first == 0 && segments_durable(s))
        delete_pending(s);
    bg_wait_idle(s); /* the deletions delete_pending queued */
    if (first == 0 && atomic_load(&s->unsynced) > 0)
        first = -EIO; /* a full segment is still not durable (its retries go on) */
    return first;
}

void sn_spool_get_stats(const sn_spool *s, sn_spool_stats *out)
{
    *out = s->st;
    out->fsyncs = atomic_load(&((sn_spool *)s)->fsyncs);
    out->ack_write_errors = atomic_load(&((sn_spool *)s)->ack_errors);
    out->sync_failures = atomic_load(&((sn_spool *)s)->sync_failures);
    out->sync_retries = atomic_load(&((sn_spool *)s)->sync_retries);
    out->unsynced_segments = atomic_load(&((sn_spool *)s)->unsynced);
    out->count = s->count;
    out->bytes = s->bytes;
    out->segments = s->nsegs;
    out->journal_bytes = s->jbytes;
    out->journal_records = s->jrecords;
    for (size_t i = 0; i < s->ndetached; i++)
        out->journal_records += s->detached[i].records;
    out->journal_generation = s->jgen;
}

bool sn_spool_sync_failing(const sn_spool *s)
{
    sn_spool *m = (sn_spool *)s; /* atomics only */
    return atomic_load(&m->fail_streak) >= FAILING_AFTER || atomic_load(&m->sync_lost);
}

void sn_spool_set_sync_hook(sn_spool *s, sn_spool_sync_hook hook, void *ud)
{
    s->sync_hook_ud = ud;
    atomic_store(&s->sync_hook, hook);
}
