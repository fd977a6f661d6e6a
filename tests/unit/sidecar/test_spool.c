/* Unit tests for sidecar/spool.c: ordering, limits, restart and crash recovery, torn and corrupt
 * files, journal generations, the lock, sync modes and bad directories. */
#include "spool.h"

#include "config.h"
#include "log.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* ---- helpers ---- */

static char g_base[64];  /* mkdtemp directory of the whole run, removed by main */
static char g_root[128]; /* mkdtemp directory of the current test, inside g_base */
static char g_dir[160];  /* the spool directory inside it */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    snprintf(g_root, sizeof g_root, "%s/t-XXXXXX", g_base);
    ck_assert_ptr_nonnull(mkdtemp(g_root));
    snprintf(g_dir, sizeof g_dir, "%s/spool", g_root);
    sn_log_set_level(SN_LOG_OFF);
}

static void teardown(void)
{
    chmod(g_root, 0700);
    nftw(g_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Record i's payload: its index in the first 8 bytes, then a pattern; length varies with i. */
static size_t rec_len(uint64_t i)
{
    return 8 + (size_t)((i * 37) % 900);
}

static void rec_fill(uint8_t *buf, uint64_t i)
{
    size_t len = rec_len(i);
    memcpy(buf, &i, 8);
    for (size_t k = 8; k < len; k++)
        buf[k] = (uint8_t)(i * 131 + k);
}

static bool rec_check(const uint8_t *data, size_t len, uint64_t i)
{
    uint8_t want[1024];
    if (len != rec_len(i))
        return false;
    rec_fill(want, i);
    return memcmp(data, want, len) == 0;
}

static void append_rec(sn_spool *s, uint64_t i, uint64_t gen)
{
    uint8_t buf[1024];
    rec_fill(buf, i);
    ck_assert_int_eq(sn_spool_append(s, buf, rec_len(i), gen), 0);
}

/* Peeks and checks record i (and its id when id != 0), then pops it. */
static void expect_pop(sn_spool *s, uint64_t i, uint64_t id)
{
    const uint8_t *d = NULL;
    size_t len = 0;
    uint64_t got = 0;
    ck_assert_int_eq(sn_spool_peek(s, &d, &len, &got), 0);
    ck_assert_msg(rec_check(d, len, i), "record %llu has the wrong bytes", (unsigned long long)i);
    if (id != 0)
        ck_assert_uint_eq(got, id);
    ck_assert_int_eq(sn_spool_pop(s), 0);
}

static sn_spool *open_ok(const sn_spool_config *cfg)
{
    sn_spool *s = NULL;
    char err[256];
    int rc = sn_spool_open(g_dir, cfg, &s, err, sizeof err);
    ck_assert_msg(rc == 0, "open: %d %s", rc, err);
    ck_assert_ptr_nonnull(s);
    return s;
}

static sn_spool_config small_cfg(void)
{
    sn_spool_config c;
    sn_spool_config_defaults(&c);
    c.max_bytes = SN_SPOOL_MIN_BYTES;
    c.segment_bytes = 4096;
    c.max_record_bytes = 64 * 1024;
    c.journal_max_bytes = 64 * 1024;
    return c;
}

static char *path_in(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", g_dir, name);
    return buf;
}

static char *seg_path(char *buf, size_t len, uint64_t base)
{
    snprintf(buf, len, "%s/seg-%020llu.log", g_dir, (unsigned long long)base);
    return buf;
}

static char *journal_path(char *buf, size_t len, uint64_t gen)
{
    snprintf(buf, len, "%s/journal-%020llu", g_dir, (unsigned long long)gen);
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static off_t size_of(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return st.st_size;
}

/* Files in the spool directory whose names start with prefix. */
static int count_files(const char *prefix)
{
    DIR *d = opendir(g_dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

/* Flips one byte of a file at off. */
static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint8_t b;
    ck_assert_int_eq(pread(fd, &b, 1, off), 1);
    b ^= 0x5a;
    ck_assert_int_eq(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

typedef struct collected {
    uint64_t n;
    uint64_t idx[64];
    uint64_t gen[64];
    bool bad;
} collected;

/* Journal callback: records payloads made by rec_fill, remembering their indexes. */
static int collect(void *ud, const uint8_t *data, size_t len, uint64_t gen)
{
    collected *c = ud;
    uint64_t i;
    if (len < 8 || c->n >= 64) {
        c->bad = true;
        return 0;
    }
    memcpy(&i, data, 8);
    if (!rec_check(data, len, i))
        c->bad = true;
    c->idx[c->n] = i;
    c->gen[c->n] = gen;
    c->n++;
    return 0;
}

typedef struct sequence {
    uint64_t next;
    bool bad;
} sequence;

/* Journal callback: payloads must be records next, next+1, ... */
static int check_sequence(void *ud, const uint8_t *data, size_t len, uint64_t gen)
{
    sequence *q = ud;
    if (gen != 1 || !rec_check(data, len, q->next))
        q->bad = true;
    q->next++;
    return 0;
}

static void journal_rec(sn_spool *s, uint64_t i)
{
    uint8_t buf[1024];
    rec_fill(buf, i);
    ck_assert_int_eq(sn_spool_journal_append(s, buf, rec_len(i)), 0);
}

/* ---- configuration ---- */

typedef struct test_cfg {
    sn_spool_config spool;
} test_cfg;

START_TEST(descriptor_defaults_match)
{
    static const sn_config_desc descs[] = {SN_SPOOL_DESCRIPTORS("spool", test_cfg, spool)};
    test_cfg t;
    memset(&t, 0xff, sizeof t);
    sn_config *cfg = NULL;
    sn_config_error err;
    ck_assert_int_eq(sn_config_create(&cfg, descs, sizeof descs / sizeof descs[0], &t, &err), 0);
    sn_spool_config d;
    sn_spool_config_defaults(&d);
    ck_assert_int_eq(t.spool.max_bytes, d.max_bytes);
    ck_assert_int_eq(t.spool.segment_bytes, d.segment_bytes);
    ck_assert_int_eq(t.spool.max_record_bytes, d.max_record_bytes);
    ck_assert_int_eq(t.spool.journal_max_bytes, d.journal_max_bytes);
    ck_assert_int_eq(t.spool.fsync, d.fsync);
    ck_assert_int_eq(sn_config_set(cfg, "spool.fsync", "always", NULL, &err), 0);
    ck_assert_int_eq(t.spool.fsync, SN_SPOOL_FSYNC_ALWAYS);
    ck_assert_int_eq(sn_config_set(cfg, "spool.max_bytes", "1MiB", NULL, &err), -EINVAL);
    sn_config_destroy(cfg);
}
END_TEST

START_TEST(bad_settings_are_refused)
{
    sn_spool_config c = small_cfg();
    sn_spool *s = (sn_spool *)1;
    char err[256];
    c.max_bytes = SN_SPOOL_MIN_BYTES - 1;
    ck_assert_int_eq(sn_spool_open(g_dir, &c, &s, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(err, "max_bytes"));
    c = small_cfg();
    c.segment_bytes = 100;
    ck_assert_int_eq(sn_spool_open(g_dir, &c, &s, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "segment_bytes"));
    c = small_cfg();
    c.fsync = 7;
    ck_assert_int_eq(sn_spool_open(g_dir, &c, &s, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "fsync"));
    ck_assert(!exists(g_dir)); /* refused before touching the disk */
}
END_TEST

/* ---- ordering ---- */

START_TEST(order_across_many_segments)
{
    sn_spool_config c = small_cfg();
    sn_spool *s = open_ok(&c);
    const uint8_t *d;
    size_t len;
    ck_assert_int_eq(sn_spool_peek(s, &d, &len, NULL), -ENOENT);
    ck_assert_int_eq(sn_spool_pop(s), -ENOENT);
    uint64_t bytes = 0;
    for (uint64_t i = 1; i <= 400; i++) {
        append_rec(s, i, 0);
        bytes += SN_SPOOL_RECORD_HEADER + rec_len(i);
    }
    ck_assert_uint_eq(sn_spool_count(s), 400);
    ck_assert_uint_eq(sn_spool_bytes(s), bytes);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_ge(st.segments, 40);
    ck_assert_int_eq(count_files("seg-"), (int)st.segments);
    /* Interleave pops and appends: order stays append order. */
    uint64_t next_pop = 1;
    for (uint64_t i = 401; i <= 600; i++) {
        expect_pop(s, next_pop, next_pop);
        next_pop++;
        append_rec(s, i, 0);
    }
    while (next_pop <= 600) {
        /* A repeated peek returns the same record. */
        const uint8_t *d1, *d2;
        size_t l1, l2;
        uint64_t id1, id2;
        ck_assert_int_eq(sn_spool_peek(s, &d1, &l1, &id1), 0);
        ck_assert_int_eq(sn_spool_peek(s, &d2, &l2, &id2), 0);
        ck_assert_uint_eq(id1, id2);
        ck_assert_uint_eq(l1, l2);
        expect_pop(s, next_pop, next_pop);
        next_pop++;
    }
    ck_assert_uint_eq(sn_spool_count(s), 0);
    ck_assert_uint_eq(sn_spool_bytes(s), 0);
    ck_assert_int_eq(sn_spool_peek(s, &d, &len, NULL), -ENOENT);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.segments, 0);
    ck_assert_int_eq(count_files("seg-"), 0); /* acknowledged segments are deleted */
    sn_spool_close(s);
}
END_TEST

START_TEST(empty_and_bad_arguments)
{
    sn_spool_config c = small_cfg();
    sn_spool *s = open_ok(&c);
    ck_assert_int_eq(sn_spool_append(s, NULL, 5, 0), -EINVAL);
    ck_assert_int_eq(sn_spool_append(s, NULL, 0, 0), 0); /* an empty record is a record */
    const uint8_t *d;
    size_t len = 99;
    uint64_t id = 0;
    ck_assert_int_eq(sn_spool_peek(s, &d, &len, &id), 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_uint_eq(id, 1);
    ck_assert_int_eq(sn_spool_pop(s), 0);
    ck_assert_int_eq(sn_spool_journal_append(s, NULL, 3), -EINVAL);
    /* A sealed record cannot cover a generation that has not started. */
    uint8_t b = 1;
    ck_assert_int_eq(sn_spool_append(s, &b, 1, sn_spool_journal_generation(s) + 1), -EINVAL);
    sn_spool_close(s);
    sn_spool_close(NULL);
}
END_TEST

/* ---- limits ---- */

START_TEST(size_limit_refuses_exactly_when_over)
{
    sn_spool_config c = small_cfg();
    c.segment_bytes = 256 * 1024;
    sn_spool *s = open_ok(&c);
    static uint8_t big[65536];
    const size_t len = 65536 - SN_SPOOL_RECORD_HEADER; /* 64 KiB with its header */
    int n = 0;
    for (; n < 32; n++) {
        memset(big, n, len);
        ck_assert_int_eq(sn_spool_append(s, big, len, 0), 0);
    }
    ck_assert_uint_eq(sn_spool_bytes(s), (uint64_t)c.max_bytes); /* exactly full */
    ck_assert_int_eq(sn_spool_append(s, big, len, 0), -ENOSPC);
    ck_assert_int_eq(sn_spool_append(s, big, 0, 0), -ENOSPC); /* even a header is over */
    ck_assert_uint_eq(sn_spool_count(s), 32);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.refused_full, 2);
    /* A record over max_record_bytes is refused as too large, not as full. */
    static uint8_t huge[64 * 1024 + 1];
    ck_assert_int_eq(sn_spool_append(s, huge, sizeof huge, 0), -EMSGSIZE);
    ck_assert_int_eq(sn_spool_pop(s), 0);
    memset(big, 77, len);
    ck_assert_int_eq(sn_spool_append(s, big, len, 0), 0); /* room again */
    ck_assert_int_eq(sn_spool_append(s, big, 0, 0), -ENOSPC);
    /* Nothing was dropped: records 1..31 and the new one, in order. */
    for (int i = 1; i <= 32; i++) {
        const uint8_t *d;
        size_t l;
        ck_assert_int_eq(sn_spool_peek(s, &d, &l, NULL), 0);
        ck_assert_uint_eq(l, len);
        ck_assert_uint_eq(d[0], i < 32 ? i : 77);
        ck_assert_uint_eq(d[len - 1], i < 32 ? i : 77);
        ck_assert_int_eq(sn_spool_pop(s), 0);
    }
    sn_spool_close(s);
}
END_TEST

START_TEST(journal_limit)
{
    sn_spool_config c = small_cfg(); /* journal_max_bytes 64 KiB */
    sn_spool *s = open_ok(&c);
    static uint8_t rec[16362]; /* 4 records + headers + file header = 64 KiB exactly */
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(sn_spool_journal_append(s, rec, sizeof rec), 0);
    ck_assert_int_eq(sn_spool_journal_append(s, rec, 0), -ENOSPC);
    static uint8_t huge[64 * 1024 + 1];
    ck_assert_int_eq(sn_spool_journal_append(s, huge, sizeof huge), -EMSGSIZE);
    uint8_t b = 1;
    ck_assert_int_eq(sn_spool_append(s, &b, 1, sn_spool_journal_generation(s)), 0);
    ck_assert_int_eq(sn_spool_journal_reset(s), 0);
    ck_assert_int_eq(sn_spool_journal_append(s, rec, sizeof rec), 0);
    sn_spool_close(s);
}
END_TEST

/* ---- restart ---- */

START_TEST(restart_keeps_order_and_pops)
{
    sn_spool_config c = small_cfg();
    sn_spool *s = open_ok(&c);
    for (uint64_t i = 1; i <= 50; i++)
        append_rec(s, i, 0);
    for (uint64_t i = 1; i <= 20; i++)
        expect_pop(s, i, i);
    uint64_t bytes = sn_spool_bytes(s);
    sn_spool_close(s);

    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 30);
    ck_assert_uint_eq(sn_spool_bytes(s), bytes);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.recovered_records, 30);
    expect_pop(s, 21, 21);
    for (uint64_t i = 51; i <= 60; i++)
        append_rec(s, i, 0);
    sn_spool_close(s);

    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 39);
    for (uint64_t i = 22; i <= 60; i++)
        expect_pop(s, i, i); /* ids continue where they were */
    sn_spool_close(s);

    /* Everything popped: no segment left, and ids still go on from the ack file. */
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 0);
    ck_assert_int_eq(count_files("seg-"), 0);
    append_rec(s, 61, 0);
    expect_pop(s, 61, 61);
    sn_spool_close(s);
}
END_TEST

START_TEST(bad_ack_file_sends_again)
{
    sn_spool_config c = small_cfg();
    sn_spool *s = open_ok(&c);
    for (uint64_t i = 1; i <= 10; i++)
        append_rec(s, i, 0);
    for (uint64_t i = 1; i <= 3; i++)
        expect_pop(s, i, i);
    sn_spool_close(s);
    char path[256];
    flip_byte(path_in(path, sizeof path, "ack"), 9); /* both slots bad */
    flip_byte(path_in(path, sizeof path, "ack"), 41);
    s = open_ok(&c);
    /* Records not yet deleted come back (sent again, de-duplicated upstream); none is lost. */
    ck_assert_uint_ge(sn_spool_count(s), 7);
    const uint8_t *d;
    size_t len;
    uint64_t id;
    ck_assert_int_eq(sn_spool_peek(s, &d, &len, &id), 0);
    ck_assert_uint_le(id, 4);
    uint64_t first = id;
    for (uint64_t i = first; i <= 10; i++)
        expect_pop(s, i, i);
    sn_spool_close(s);
}
END_TEST

/* The split marker: kept across a restart while its record is not popped, gone once it is;
 * a torn or foreign file means none; 0 is refused. */
START_TEST(split_marker_survives_restart_until_popped)
{
    sn_spool_config c = small_cfg();
    sn_spool *s = open_ok(&c);
    for (uint64_t i = 1; i <= 3; i++)
        append_rec(s, i, 0);
    ck_assert_uint_eq(sn_spool_split_mark(s), 0);
    ck_assert_int_eq(sn_spool_mark_split(s, 0), -EINVAL);
    expect_pop(s, 1, 1);
    ck_assert_int_eq(sn_spool_mark_split(s, 2), 0);
    ck_assert_uint_eq(sn_spool_split_mark(s), 2);
    sn_spool_close(s);

    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_split_mark(s), 2); /* read back at open */
    expect_pop(s, 2, 2);
    ck_assert_uint_eq(sn_spool_split_mark(s), 0); /* popped: no longer marked */
    sn_spool_close(s);
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_split_mark(s), 0); /* nor after a restart */
    ck_assert_int_eq(sn_spool_mark_split(s, 3), 0);
    sn_spool_close(s);

    char path[256];
    flip_byte(path_in(path, sizeof path, "split"), 9); /* torn: its CRC no longer matches */
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_split_mark(s), 0);
    expect_pop(s, 3, 3);
    sn_spool_close(s);
}
END_TEST

/* ---- crash ---- */

typedef struct progress {
    uint64_t appended; /* records 1..appended returned 0 from append */
    uint64_t popped;   /* records 1..popped returned 0 from pop */
    uint64_t journaled;
} progress;

/* Child: appends, pops and journals in a loop, reporting each completed call on fd. */
static void crash_child(int fd)
{
    sn_spool_config c = small_cfg();
    c.max_bytes = 64 << 20;
    c.journal_max_bytes = 64 << 20;
    sn_spool *s = NULL;
    char err[256];
    if (sn_spool_open(g_dir, &c, &s, err, sizeof err) != 0)
        _exit(3);
    progress p = {0, 0, 0};
    uint8_t buf[1024];
    for (;;) {
        rec_fill(buf, p.appended + 1);
        if (sn_spool_append(s, buf, rec_len(p.appended + 1), 0) != 0)
            _exit(4);
        p.appended++;
        if (p.appended % 3 == 0) {
            if (sn_spool_pop(s) != 0)
                _exit(5);
            p.popped++;
        }
        rec_fill(buf, p.journaled + 1);
        if (sn_spool_journal_append(s, buf, rec_len(p.journaled + 1)) != 0)
            _exit(6);
        p.journaled++;
        if (write(fd, &p, sizeof p) != (ssize_t)sizeof p)
            _exit(7);
    }
}

START_TEST(kill9_loses_nothing_reported)
{
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(pfd[0]);
        crash_child(pfd[1]);
    }
    close(pfd[1]);
    progress last = {0, 0, 0}, p;
    while (last.appended < 1500 && read(pfd[0], &p, sizeof p) == (ssize_t)sizeof p)
        last = p;
    kill(pid, SIGKILL);
    /* Drain what the child reported before it died. */
    while (read(pfd[0], &p, sizeof p) == (ssize_t)sizeof p)
        last = p;
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status));
    close(pfd[0]);
    ck_assert_uint_ge(last.appended, 1500);

    sn_spool_config c = small_cfg();
    c.max_bytes = 64 << 20;
    c.journal_max_bytes = 64 << 20;
    sn_spool *s = open_ok(&c);
    /* The first record is the one after the last reported pop, or one later (a pop done but
     * not reported); the last is the last reported append, or one later. */
    const uint8_t *d;
    size_t len;
    uint64_t id;
    ck_assert_int_eq(sn_spool_peek(s, &d, &len, &id), 0);
    ck_assert_uint_ge(id, last.popped + 1);
    ck_assert_uint_le(id, last.popped + 2);
    uint64_t first = id;
    uint64_t n = sn_spool_count(s);
    ck_assert_uint_ge(first + n - 1, last.appended);
    ck_assert_uint_le(first + n - 1, last.appended + 1);
    for (uint64_t i = first; i < first + n; i++)
        expect_pop(s, i, i);
    /* Every reported journal record comes back, intact and in order. */
    sequence seq = {1, false};
    ck_assert_int_eq(sn_spool_recover_journal(s, check_sequence, &seq), 0);
    ck_assert(!seq.bad);
    ck_assert_uint_ge(seq.next - 1, last.journaled);
    ck_assert_uint_le(seq.next - 1, last.journaled + 1);
    sn_spool_close(s);
}
END_TEST

START_TEST(kill9_journal_comes_back)
{
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(pfd[0]);
        sn_spool_config c = small_cfg();
        sn_spool *s = NULL;
        char err[256];
        if (sn_spool_open(g_dir, &c, &s, err, sizeof err) != 0)
            _exit(3);
        uint8_t buf[1024];
        for (uint64_t i = 1;; i++) {
            rec_fill(buf, i);
            if (sn_spool_journal_append(s, buf, rec_len(i)) != 0)
                _exit(4);
            if (write(pfd[1], &i, sizeof i) != (ssize_t)sizeof i)
                _exit(5);
            if (i == 40)
                pause(); /* wait for the kill */
        }
    }
    close(pfd[1]);
    uint64_t last = 0, v;
    while (last < 40 && read(pfd[0], &v, sizeof v) == (ssize_t)sizeof v)
        last = v;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(pfd[0]);
    ck_assert_uint_eq(last, 40);

    sn_spool *s = open_ok(NULL);
    ck_assert_uint_eq(sn_spool_journal_generation(s), 1);
    collected col = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &col), 0);
    ck_assert(!col.bad);
    ck_assert_uint_eq(col.n, 40);
    for (uint64_t i = 0; i < 40; i++) {
        ck_assert_uint_eq(col.idx[i], i + 1);
        ck_assert_uint_eq(col.gen[i], 1);
    }
    sn_spool_close(s);
}
END_TEST

/* sn_spool_journal_next (the sidecar seals off its loop): the rotated-out generation stays
 * recoverable until a sealed record covers it, and then only it is retired. */
START_TEST(journal_next_keeps_the_detached_generation_until_covered)
{
    char path[512];
    sn_spool *s = open_ok(NULL);
    journal_rec(s, 1);
    journal_rec(s, 2);
    ck_assert_int_eq(sn_spool_journal_next(s), 0);
    ck_assert_uint_eq(sn_spool_journal_generation(s), 2);
    journal_rec(s, 3);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.journal_records, 3);
    uint64_t before = st.journal_bytes;
    /* The sealed record of generation 1 lands after the rotation: it retires generation 1. */
    uint8_t b = 1;
    ck_assert_int_eq(sn_spool_append(s, &b, 1, 1), 0);
    ck_assert_int_eq(sn_spool_sync(s), 0);
    ck_assert(!exists(journal_path(path, sizeof path, 1)));
    ck_assert(exists(journal_path(path, sizeof path, 2)));
    sn_spool_get_stats(s, &st);
    ck_assert_uint_lt(st.journal_bytes, before);
    ck_assert_uint_eq(st.journal_records, 1);

    /* Generation 2 rotated out, its seal not done: no reset, and a crash keeps it. */
    ck_assert_int_eq(sn_spool_journal_next(s), 0);
    journal_rec(s, 4);
    ck_assert_int_eq(sn_spool_journal_reset(s), -EINVAL);
    sn_spool_close(s);

    s = open_ok(NULL);
    collected col = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &col), 0);
    ck_assert(!col.bad);
    ck_assert_uint_eq(col.n, 2);
    ck_assert_uint_eq(col.idx[0], 3);
    ck_assert_uint_eq(col.gen[0], 2);
    ck_assert_uint_eq(col.idx[1], 4);
    ck_assert_uint_eq(col.gen[1], 3);

    /* A bounded number of generations may wait. */
    int rc = 0, n = 0;
    while ((rc = sn_spool_journal_next(s)) == 0)
        n++;
    ck_assert_int_eq(rc, -EBUSY);
    ck_assert_int_eq(n, SN_SPOOL_DETACHED_MAX);
    sn_spool_close(s);
}
END_TEST

/* ---- torn and corrupt files ---- */

START_TEST(torn_tail_is_truncated)
{
    sn_spool_config c = small_cfg();
    c.segment_bytes = 1 << 20;
    sn_spool *s = open_ok(&c);
    off_t good = 0;
    for (uint64_t i = 1; i <= 10; i++) {
        append_rec(s, i, 0);
        if (i == 9)
            good = (off_t)sn_spool_bytes(s);
    }
    sn_spool_close(s);
    char path[256];
    seg_path(path, sizeof path, 1);
    off_t full = size_of(path);
    ck_assert_int_eq(truncate(path, full - 10), 0); /* cut inside record 10 */

    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 9);
    ck_assert_int_eq(size_of(path), good);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.torn_tails, 1);
    ck_assert_uint_eq(st.truncated_bytes, (uint64_t)(full - 10 - good));
    ck_assert_uint_eq(st.corrupt_segments, 0);
    append_rec(s, 100, 0); /* appends continue after the last good record */
    for (uint64_t i = 1; i <= 9; i++)
        expect_pop(s, i, i);
    expect_pop(s, 100, 10);
    sn_spool_close(s);
}
END_TEST

START_TEST(torn_header_and_zero_tail)
{
    sn_spool_config c = small_cfg();
    c.segment_bytes = 1 << 20;
    sn_spool *s = open_ok(&c);
    for (uint64_t i = 1; i <= 5; i++)
        append_rec(s, i, 0);
    sn_spool_close(s);
    char path[256];
    seg_path(path, sizeof path, 1);
    off_t good = size_of(path);
    /* A power loss can leave a tail of zeros: not a record, and nothing follows. */
    int fd = open(path, O_WRONLY | O_APPEND);
    ck_assert_int_ge(fd, 0);
    static const uint8_t zeros[5000];
    ck_assert_int_eq(write(fd, zeros, sizeof zeros), (ssize_t)sizeof zeros);
    close(fd);
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 5);
    ck_assert_int_eq(size_of(path), good);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.torn_tails, 1);
    ck_assert_uint_eq(st.corrupt_segments, 0);
    sn_spool_close(s);
    /* Half a header. */
    fd = open(path, O_WRONLY | O_APPEND);
    ck_assert_int_eq(write(fd, "SPR1abc", 7), 7);
    close(fd);
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 5);
    ck_assert_int_eq(size_of(path), good);
    for (uint64_t i = 1; i <= 5; i++)
        expect_pop(s, i, i);
    sn_spool_close(s);
}
END_TEST

START_TEST(bad_checksum_at_the_tail_is_truncated)
{
    sn_spool_config c = small_cfg();
    c.segment_bytes = 1 << 20;
    sn_spool *s = open_ok(&c);
    for (uint64_t i = 1; i <= 6; i++)
        append_rec(s, i, 0);
    sn_spool_close(s);
    char path[256];
    seg_path(path, sizeof path, 1);
    flip_byte(path, size_of(path) - 1); /* last byte of the last record */
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 5);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.torn_tails, 1);
    for (uint64_t i = 1; i <= 5; i++)
        expect_pop(s, i, i);
    sn_spool_close(s);
}
END_TEST

/* Writes v little-endian into p. */
static void le64(uint8_t *p, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

/* Found by fuzz_spool: a record (checksum intact) or an ack file naming journal generation
 * UINT64_MAX made the next generation wrap to 0 ("none"). Such counters are corrupt now. */
START_TEST(generation_at_the_counter_limit_is_corrupt)
{
    sn_spool_config c = small_cfg();
    c.segment_bytes = 1 << 20;
    sn_spool *s = open_ok(&c);
    for (uint64_t i = 1; i <= 3; i++)
        append_rec(s, i, 0);
    sn_spool_close(s);

    /* The last record claims generation UINT64_MAX, with a valid CRC. */
    char path[256];
    seg_path(path, sizeof path, 1);
    off_t off = (off_t)(2 * SN_SPOOL_RECORD_HEADER + rec_len(1) + rec_len(2));
    size_t len = SN_SPOOL_RECORD_HEADER + rec_len(3);
    uint8_t rec[SN_SPOOL_RECORD_HEADER + 1024];
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, rec, len, off), (ssize_t)len);
    le64(rec + 16, UINT64_MAX);
    uint32_t crc = sn_spool_crc32c(sn_spool_crc32c(0, rec, 28), rec + SN_SPOOL_RECORD_HEADER,
                                   rec_len(3)); /* an "SPR2" record */
    for (int k = 0; k < 4; k++)
        rec[28 + k] = (uint8_t)(crc >> (8 * k));
    ck_assert_int_eq(pwrite(fd, rec, len, off), (ssize_t)len);
    close(fd);
    /* An ack file (valid CRC) saying record 1 was popped, covering generation UINT64_MAX. */
    uint8_t ack[32] = {'S', 'N', 'A', '1', 1};
    le64(ack + 8, 1);
    le64(ack + 16, UINT64_MAX);
    crc = (uint32_t)crc32(0L, ack, 28);
    for (int k = 0; k < 4; k++)
        ack[28 + k] = (uint8_t)(crc >> (8 * k));
    path_in(path, sizeof path, "ack");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, ack, sizeof ack), (ssize_t)sizeof ack);
    close(fd);

    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_journal_generation(s), 1);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.torn_tails, 1); /* the bad record was the tail */
    /* The ack file was ignored: both good records are still there. */
    ck_assert_uint_eq(sn_spool_count(s), 2);
    expect_pop(s, 1, 1);
    expect_pop(s, 2, 2);
    sn_spool_close(s);
}
END_TEST

/* Writes an ack file as the spool did before its slots: one 32-byte slot, popped id `id`. */
static void write_old_ack_file(uint64_t id)
{
    uint8_t ack[32] = {'S', 'N', 'A', '1', 1};
    le64(ack + 8, id);
    le64(ack + 16, 0);
    uint32_t crc = (uint32_t)crc32(0L, ack, 28);
    for (int k = 0; k < 4; k++)
        ack[28 + k] = (uint8_t)(crc >> (8 * k));
    char path[256];
    int fd = open(path_in(path, sizeof path, "ack"), O_WRONLY | O_CREAT | O_TRUNC, 0640);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, ack, sizeof ack), (ssize_t)sizeof ack);
    close(fd);
}

/* The ack file is written in place, its two slots in turn (no ack.tmp, no rename): the newest
 * good slot counts, a torn newest slot falls back to the previous one (that record is sent
 * again), and a file of the old one-slot format is read and then continued in slots. */
START_TEST(ack_slots_in_place_and_old_format)
{
    sn_spool_config c = small_cfg();
    sn_spool *s = open_ok(&c);
    for (uint64_t i = 1; i <= 10; i++)
        append_rec(s, i, 0);
    expect_pop(s, 1, 1);
    char path[256];
    struct stat st0, st;
    ck_assert_int_eq(stat(path_in(path, sizeof path, "ack"), &st0), 0);
    expect_pop(s, 2, 2);
    expect_pop(s, 3, 3); /* slots: 0 = id 3, 1 = id 2 */
    sn_spool_close(s);
    ck_assert_int_eq(stat(path_in(path, sizeof path, "ack"), &st), 0);
    ck_assert_uint_eq(st.st_ino, st0.st_ino); /* the same file: rewritten in place */
    ck_assert_int_eq(st.st_size, 64);
    ck_assert(!exists(path_in(path, sizeof path, "ack.tmp")));

    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 7);
    sn_spool_close(s);

    flip_byte(path_in(path, sizeof path, "ack"), 9); /* the newest slot torn */
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 8); /* from slot 1: record 3 comes again */
    expect_pop(s, 3, 3);                     /* rewrites slot 0 */
    sn_spool_close(s);
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 7);
    sn_spool_close(s);

    write_old_ack_file(5);
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 5); /* records 6..10 */
    expect_pop(s, 6, 6);                     /* goes to slot 1; slot 0 keeps id 5 */
    sn_spool_close(s);
    ck_assert_int_eq(size_of(path_in(path, sizeof path, "ack")), 64);
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 4);
    for (uint64_t i = 7; i <= 10; i++)
        expect_pop(s, i, i);
    sn_spool_close(s);
}
END_TEST

/* Appends records 1..n with 4 KiB segments and returns the segment bases (up to max). */
static size_t fill_segments(const sn_spool_config *c, uint64_t n, uint64_t *bases, size_t max)
{
    sn_spool *s = open_ok(c);
    for (uint64_t i = 1; i <= n; i++)
        append_rec(s, i, 0);
    sn_spool_close(s);
    size_t k = 0;
    char path[256];
    for (uint64_t b = 1; b <= n && k < max; b++)
        if (exists(seg_path(path, sizeof path, b)))
            bases[k++] = b;
    return k;
}

START_TEST(corrupt_middle_skips_to_next_segment)
{
    sn_spool_config c = small_cfg();
    uint64_t bases[64];
    size_t nb = fill_segments(&c, 60, bases, 64);
    ck_assert_uint_ge(nb, 4);
    /* Corrupt the second record of the second segment (its payload, past the header). */
    uint64_t b = bases[1];
    char path[256];
    seg_path(path, sizeof path, b);
    off_t second = (off_t)(SN_SPOOL_RECORD_HEADER + rec_len(b) + SN_SPOOL_RECORD_HEADER + 9);
    flip_byte(path, second);
    uint64_t skipped = bases[2] - b - 1; /* records b+1 .. bases[2]-1 */

    sn_spool *s = open_ok(&c);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.corrupt_segments, 1);
    ck_assert_uint_eq(st.torn_tails, 0);
    ck_assert_uint_gt(st.skipped_bytes, 0);
    ck_assert_uint_eq(sn_spool_count(s), 60 - skipped);
    for (uint64_t i = 1; i <= b; i++)
        expect_pop(s, i, i);
    for (uint64_t i = bases[2]; i <= 60; i++)
        expect_pop(s, i, i);
    ck_assert_uint_eq(sn_spool_count(s), 0);
    sn_spool_close(s);
    ck_assert(!exists(path)); /* deleted once passed */
}
END_TEST

START_TEST(corrupt_middle_of_last_segment)
{
    sn_spool_config c = small_cfg();
    c.segment_bytes = 1 << 20;
    sn_spool *s = open_ok(&c);
    for (uint64_t i = 1; i <= 8; i++)
        append_rec(s, i, 0);
    sn_spool_close(s);
    char path[256];
    seg_path(path, sizeof path, 1);
    off_t size = size_of(path);
    /* Record 3's header magic: bytes follow it, so this is not a torn tail. */
    off_t off3 = (off_t)(2 * SN_SPOOL_RECORD_HEADER + rec_len(1) + rec_len(2));
    flip_byte(path, off3);
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 2);
    ck_assert_int_eq(size_of(path), size); /* nothing truncated */
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.corrupt_segments, 1);
    ck_assert_uint_eq(st.skipped_bytes, (uint64_t)(size - off3));
    /* New records go to a new segment, after the readable ones; ids go on from the last
     * readable record (those of the skipped ones are unknown). */
    append_rec(s, 9, 0);
    sn_spool_close(s);
    ck_assert(exists(seg_path(path, sizeof path, 3)));
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 3);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.corrupt_segments, 1); /* still skipped, still counted */
    expect_pop(s, 1, 1);
    expect_pop(s, 2, 2);
    expect_pop(s, 9, 3);
    sn_spool_close(s);
}
END_TEST

START_TEST(corruption_found_by_peek)
{
    sn_spool_config c = small_cfg();
    uint64_t bases[64];
    size_t nb = fill_segments(&c, 30, bases, 64);
    ck_assert_uint_ge(nb, 2);
    sn_spool *s = open_ok(&c);
    char path[256];
    flip_byte(seg_path(path, sizeof path, 1), SN_SPOOL_RECORD_HEADER + 3); /* record 1 */
    const uint8_t *d;
    size_t len;
    uint64_t id;
    ck_assert_int_eq(sn_spool_peek(s, &d, &len, &id), 0);
    ck_assert_uint_eq(id, bases[1]);
    ck_assert(rec_check(d, len, bases[1]));
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.corrupt_segments, 1);
    ck_assert_uint_eq(sn_spool_count(s), 30 - (bases[1] - 1));
    /* A segment file removed behind the spool's back is skipped too, not waited on. */
    ck_assert_uint_ge(nb, 4);
    ck_assert_int_eq(unlink(seg_path(path, sizeof path, bases[2])), 0);
    for (uint64_t i = bases[1]; i < bases[2]; i++)
        expect_pop(s, i, i);
    ck_assert_int_eq(sn_spool_peek(s, &d, &len, &id), 0);
    ck_assert_uint_eq(id, bases[3]);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.corrupt_segments, 2);
    ck_assert_uint_eq(sn_spool_count(s), 30 - (bases[3] - 1));
    sn_spool_close(s);
}
END_TEST

START_TEST(torn_journal_tail)
{
    sn_spool *s = open_ok(NULL);
    for (uint64_t i = 1; i <= 5; i++)
        journal_rec(s, i);
    sn_spool_close(s);
    char path[256];
    journal_path(path, sizeof path, 1);
    ck_assert_int_eq(truncate(path, size_of(path) - 3), 0);
    s = open_ok(NULL);
    collected col = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &col), 0);
    ck_assert_uint_eq(col.n, 4);
    ck_assert(!col.bad);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.torn_tails, 1);
    ck_assert_uint_eq(st.journal_records, 4);
    /* Appends continue after the good records. */
    journal_rec(s, 6);
    sn_spool_close(s);
    s = open_ok(NULL);
    collected col2 = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &col2), 0);
    ck_assert_uint_eq(col2.n, 5);
    ck_assert_uint_eq(col2.idx[4], 6);
    sn_spool_close(s);
}
END_TEST

/* A current record whose generation tag was damaged is not taken for a reused file's old
 * content (cut quietly): it ends the journal as a torn tail, counted and logged. */
START_TEST(damaged_generation_tag_is_a_torn_tail)
{
    sn_spool *s = open_ok(NULL);
    for (uint64_t i = 1; i <= 3; i++)
        journal_rec(s, i);
    sn_spool_close(s);
    char path[256];
    journal_path(path, sizeof path, 1);
    /* the tag of record 2: after the file header and record 1 */
    off_t tag = (off_t)(SN_SPOOL_JOURNAL_FILE_HEADER + SN_SPOOL_JOURNAL_HEADER + rec_len(1) + 8);
    flip_byte(path, tag);
    s = open_ok(NULL);
    collected col = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &col), 0);
    ck_assert_uint_eq(col.n, 1);
    ck_assert_uint_eq(col.idx[0], 1);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.torn_tails, 1);
    sn_spool_close(s);
}
END_TEST

/* Writes v little-endian into p[0..4) (through le64, above). */
static void le32(uint8_t *p, uint32_t v)
{
    uint8_t b[8];
    le64(b, v);
    memcpy(p, b, 4);
}

/* Opens the spool and checks that its journal replays n good records, the last being record
 * last. Returns the open spool (caller closes). */
static sn_spool *open_expect_journal(const sn_spool_config *c, uint64_t n, uint64_t last)
{
    sn_spool *s = open_ok(c);
    collected col = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &col), 0);
    ck_assert_uint_eq(col.n, n);
    ck_assert_uint_eq(col.idx[n - 1], last);
    ck_assert(!col.bad);
    return s;
}

/* Covered journal files become spares that later generations reuse; a reused file holds only
 * its new generation's records, across a crash, and records left over from the file's earlier
 * generation (as after a power loss that kept the header write but not the emptying) never read
 * as the new generation's. */
START_TEST(journal_files_are_recycled)
{
    sn_spool_config c = small_cfg();
    c.max_bytes = 8 << 20;
    sn_spool *s = open_ok(&c);
    char path[256];
    /* Generation 1's records, kept to be planted into a later generation's file below. */
    for (uint64_t i = 1; i <= 3; i++)
        journal_rec(s, i);
    uint8_t old[8192];
    int fd = open(journal_path(path, sizeof path, 1), O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ssize_t oldn = pread(fd, old, sizeof old, SN_SPOOL_JOURNAL_FILE_HEADER);
    close(fd);
    ck_assert_int_gt(oldn, 0);
    for (uint64_t g = 1; g <= 10; g++) {
        if (g > 1)
            journal_rec(s, 10 * g);
        append_rec(s, 1000 + g, g);
        ck_assert_int_eq(sn_spool_journal_reset(s), 0);
        ck_assert_int_eq(sn_spool_sync(s), 0); /* the covered file is dropped: a spare */
    }
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    /* Generation 2 needed a new file (no spare yet); 3..11 reused the covered ones. */
    ck_assert_uint_eq(sn_spool_journal_generation(s), 11);
    ck_assert_uint_ge(st.journal_recycled, 8);
    ck_assert_int_eq(count_files("journal-"), 1);
    ck_assert_int_le(count_files("spare-"), 2);
    journal_rec(s, 111);
    /* Stopped with the reused file of generation 11 holding one record (a close leaves the
     * journal as a kill would); generation 1's records are planted after it, as a reused file
     * whose emptying was lost would hold them. Only record 111 may come back. */
    sn_spool_close(s);
    journal_path(path, sizeof path, 11);
    off_t good = size_of(path);
    fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, old, (size_t)oldn, good), oldn);
    close(fd);
    s = open_ok(&c);
    ck_assert_int_eq(count_files("spare-"), 0); /* spares are dropped at open */
    collected col = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &col), 0);
    ck_assert_uint_eq(col.n, 1);
    ck_assert_uint_eq(col.idx[0], 111);
    ck_assert_uint_eq(col.gen[0], 11);
    ck_assert(!col.bad);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.torn_tails, 0); /* the old records end the file quietly */
    /* Appends go after the good record, over the old ones, which that open cut off: a record
     * shorter than what it covers (rec_len(900) is 8) leaves no stale bytes behind it, and the
     * next open finds no torn tail. */
    journal_rec(s, 900);
    sn_spool_close(s);
    ck_assert_int_eq(size_of(path), good + SN_SPOOL_JOURNAL_HEADER + 8);
    s = open_expect_journal(&c, 2, 900);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.torn_tails, 0);
    sn_spool_close(s);
}
END_TEST

/* renameat2, interposed for the spool's calls: with g_noreplace_errno, RENAME_NOREPLACE fails
 * with it (EINVAL as on a filesystem without it, ENOSYS/EPERM as under a seccomp profile). Every
 * call is counted. */
static int g_noreplace_errno;
static int g_renameat2_calls;

int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
              unsigned int flags)
{
    g_renameat2_calls++;
    if (g_noreplace_errno != 0 && (flags & RENAME_NOREPLACE) != 0) {
        errno = g_noreplace_errno;
        return -1;
    }
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

/* Starts generations 2..n+1: a journal record, a sealed record covering it, a reset and a sync
 * (which drops the covered file) each. */
static void cycle_generations(sn_spool *s, uint64_t from, uint64_t n)
{
    for (uint64_t g = from; g < from + n; g++) {
        journal_rec(s, 10 * g);
        append_rec(s, 1000 + g, g);
        ck_assert_int_eq(sn_spool_journal_reset(s), 0);
        ck_assert_int_eq(sn_spool_sync(s), 0);
    }
}

/* Where renameat2(RENAME_NOREPLACE) fails for good (EINVAL, ENOSYS, EPERM, EOPNOTSUPP), the
 * first failed reuse stops spares: the waiting ones are deleted, covered files deleted from
 * then on, no rename tried again. */
START_TEST(spares_stop_without_rename_noreplace)
{
    static const int errs[] = {EINVAL, ENOSYS, EPERM, EOPNOTSUPP};
    for (size_t e = 0; e < sizeof errs / sizeof errs[0]; e++) {
        teardown();
        setup();
        g_noreplace_errno = errs[e];
        g_renameat2_calls = 0;
        sn_spool_config c = small_cfg();
        c.max_bytes = 8 << 20;
        sn_spool *s = open_ok(&c);
        cycle_generations(s, 1, 10);
        sn_spool_stats st;
        sn_spool_get_stats(s, &st);
        ck_assert_uint_eq(sn_spool_journal_generation(s), 11);
        ck_assert_uint_eq(st.journal_recycled, 0);
        ck_assert_msg(g_renameat2_calls == 1, "errno %d: %d renames", errs[e], g_renameat2_calls);
        ck_assert_int_eq(count_files("spare-"), 0);
        ck_assert_int_eq(count_files("journal-"), 1);
        journal_rec(s, 111);
        sn_spool_close(s);
        sn_spool_close(open_expect_journal(&c, 1, 111));
        g_noreplace_errno = 0;
    }
}
END_TEST

/* A spare that cannot be opened (here a dangling symlink in its place) is deleted, and the
 * generation gets a new file. */
START_TEST(unopenable_spare_is_deleted)
{
    sn_spool_config c = small_cfg();
    c.max_bytes = 8 << 20;
    sn_spool *s = open_ok(&c);
    cycle_generations(s, 1, 1);
    ck_assert_int_eq(count_files("spare-"), 1);
    DIR *d = opendir(g_dir);
    ck_assert_ptr_nonnull(d);
    char path[256] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "spare-", 6) == 0)
            snprintf(path, sizeof path, "%s/%.64s", g_dir, e->d_name);
    closedir(d);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(symlink("no-such-file", path), 0);
    cycle_generations(s, 2, 1);
    struct stat st;
    ck_assert_int_ne(lstat(path, &st), 0); /* the symlink is gone */
    sn_spool_stats ss;
    sn_spool_get_stats(s, &ss);
    ck_assert_uint_eq(ss.journal_recycled, 0);
    ck_assert_uint_eq(sn_spool_journal_generation(s), 3);
    journal_rec(s, 31);
    sn_spool_close(s);
    sn_spool_close(open_expect_journal(&c, 1, 31));
}
END_TEST

/* CRC-32C: the known check value, and the SSE4.2 path (where the CPU has it), the portable
 * table path and a bit-at-a-time reference agree on every length and alignment, continued or
 * in one go. */
static uint32_t crc32c_ref(uint32_t crc, const uint8_t *p, size_t n)
{
    uint32_t c = ~crc;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return ~c;
}

START_TEST(crc32c_matches_the_reference)
{
    ck_assert_uint_eq(sn_spool_crc32c(0, "123456789", 9), 0xe3069283u);
    ck_assert_uint_eq(sn_spool_crc32c_portable(0, "123456789", 9), 0xe3069283u);
    ck_assert_uint_eq(sn_spool_crc32c(0, NULL, 0), 0);
    uint8_t buf[512];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof buf; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    for (size_t off = 0; off < 8; off++) {
        for (size_t n = 0; n + off <= sizeof buf; n += (n < 40 ? 1 : 37)) {
            uint32_t want = crc32c_ref(0, buf + off, n);
            ck_assert_uint_eq(sn_spool_crc32c(0, buf + off, n), want);
            ck_assert_uint_eq(sn_spool_crc32c_portable(0, buf + off, n), want);
            size_t half = n / 3;
            ck_assert_uint_eq(
                sn_spool_crc32c(sn_spool_crc32c(0, buf + off, half), buf + off + half, n - half),
                want);
            ck_assert_uint_eq(sn_spool_crc32c_portable(sn_spool_crc32c_portable(0, buf + off, half),
                                                       buf + off + half, n - half),
                              want);
        }
    }
}
END_TEST

/* A journal file in the format before recycling (version 1: untagged records, CRC without the
 * generation) is replayed, and appends to it keep its format. */
START_TEST(old_format_journal_is_replayed)
{
    ck_assert_int_eq(mkdir(g_dir, 0750), 0);
    char path[256];
    uint8_t file[4096] = {0};
    le32(file, 0x314a4e53u); /* SNJ1 */
    le32(file + 4, 1);
    le64(file + 8, 7);
    le32(file + 20, (uint32_t)crc32(0L, file, 20));
    size_t off = SN_SPOOL_JOURNAL_FILE_HEADER;
    for (uint64_t i = 1; i <= 2; i++) {
        uint8_t *r = file + off;
        size_t n = rec_len(i);
        le32(r, 0x31524e4au); /* JNR1 */
        le32(r + 4, (uint32_t)n);
        rec_fill(r + SN_SPOOL_JOURNAL_HEADER, i);
        le32(r + 12, (uint32_t)crc32(crc32(0L, r, 12), r + SN_SPOOL_JOURNAL_HEADER, (uInt)n));
        off += SN_SPOOL_JOURNAL_HEADER + n;
    }
    int fd = open(journal_path(path, sizeof path, 7), O_WRONLY | O_CREAT | O_EXCL, 0640);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, file, off), (ssize_t)off);
    close(fd);

    sn_spool_config c = small_cfg();
    sn_spool *s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_journal_generation(s), 7);
    collected col = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &col), 0);
    ck_assert_uint_eq(col.n, 2);
    ck_assert_uint_eq(col.idx[1], 2);
    ck_assert(!col.bad);
    journal_rec(s, 3);
    sn_spool_close(s);
    /* Still version 1, and an untagged record (reserved 0) after the old ones. */
    uint8_t h[SN_SPOOL_JOURNAL_HEADER];
    fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, h, 8, 0), 8);
    ck_assert_uint_eq(h[4], 1);
    ck_assert_int_eq(pread(fd, h, sizeof h, (off_t)off), (ssize_t)sizeof h);
    ck_assert_uint_eq(h[8] | h[9] | h[10] | h[11], 0);
    close(fd);
    s = open_expect_journal(&c, 3, 3);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.torn_tails, 0);
    /* Sealed and reset: the next generation is a new-format file. */
    append_rec(s, 900, 7);
    ck_assert_int_eq(sn_spool_journal_reset(s), 0);
    sn_spool_close(s);
    fd = open(journal_path(path, sizeof path, 8), O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, h, 8, 0), 8);
    ck_assert_uint_eq(h[4], 2);
    close(fd);
}
END_TEST

/* Sealed records in the format before CRC-32C ("SPR1", zlib's CRC-32) are still read, at open
 * and at peek; appends write "SPR2" records with CRC-32C, also after old ones in one segment.
 * An "SPR1" record with a CRC-32C checksum (or the reverse) is bad. */
START_TEST(old_format_segment_is_read)
{
    ck_assert_int_eq(mkdir(g_dir, 0750), 0);
    uint8_t file[4096] = {0};
    size_t off = 0, offs[4];
    for (uint64_t i = 1; i <= 3; i++) {
        uint8_t *r = file + off;
        size_t n = rec_len(i);
        offs[i] = off;
        le32(r, 0x31525053u); /* SPR1 */
        le32(r + 4, (uint32_t)n);
        le64(r + 8, i);
        le64(r + 16, 0);
        rec_fill(r + SN_SPOOL_RECORD_HEADER, i);
        uint32_t crc = i == 3
                           ? sn_spool_crc32c(sn_spool_crc32c(0, r, 28), r + SN_SPOOL_RECORD_HEADER,
                                             n) /* wrong kind */
                           : (uint32_t)crc32(crc32(0L, r, 28), r + SN_SPOOL_RECORD_HEADER, (uInt)n);
        le32(r + 28, crc);
        off += SN_SPOOL_RECORD_HEADER + n;
    }
    char path[256];
    int fd = open(seg_path(path, sizeof path, 1), O_WRONLY | O_CREAT | O_EXCL, 0640);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, file, off), (ssize_t)off);
    close(fd);

    sn_spool_config c = small_cfg();
    c.segment_bytes = 1 << 20;
    sn_spool *s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 2); /* record 3 is a torn tail: cut off */
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.torn_tails, 1);
    append_rec(s, 4, 0); /* id 3, after the old records in the same segment */
    ck_assert_uint_eq(sn_spool_count(s), 3);
    sn_spool_close(s);

    /* On disk: the new record is "SPR2" with CRC-32C over bytes 0-27 and the payload. */
    uint8_t h[SN_SPOOL_RECORD_HEADER + 1024];
    size_t n4 = SN_SPOOL_RECORD_HEADER + rec_len(4);
    fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, h, n4, (off_t)offs[3]), (ssize_t)n4);
    close(fd);
    ck_assert_mem_eq(h, "SPR2", 4);
    uint32_t want =
        sn_spool_crc32c(sn_spool_crc32c(0, h, 28), h + SN_SPOOL_RECORD_HEADER, rec_len(4));
    ck_assert_uint_eq((uint32_t)h[28] | (uint32_t)h[29] << 8 | (uint32_t)h[30] << 16 |
                          (uint32_t)h[31] << 24,
                      want);

    /* Both kinds read back at open and at peek, in order. */
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 3);
    expect_pop(s, 1, 1);
    expect_pop(s, 2, 2);
    expect_pop(s, 4, 3);
    sn_spool_close(s);

    /* A damaged old record is found by peek (zlib's CRC-32 checked there too). */
    unlink(path); /* every record was popped: normally gone already */
    ck_assert_int_eq(unlink(path_in(path, sizeof path, "ack")), 0);
    fd = open(seg_path(path, sizeof path, 1), O_WRONLY | O_CREAT | O_EXCL, 0640);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, file, offs[3]), (ssize_t)offs[3]);
    close(fd);
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 2);
    flip_byte(path, (off_t)(offs[1] + SN_SPOOL_RECORD_HEADER + 3));
    const uint8_t *d;
    size_t len;
    uint64_t id;
    ck_assert_int_eq(sn_spool_peek(s, &d, &len, &id), -ENOENT);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.corrupt_segments, 1);
    sn_spool_close(s);
}
END_TEST

/* ---- journal generations ---- */

static int stop_at_two(void *ud, const uint8_t *data, size_t len, uint64_t gen)
{
    (void)data;
    (void)len;
    (void)gen;
    int *n = ud;
    return ++*n == 2 ? 42 : 0;
}

START_TEST(journal_uncovered_comes_back)
{
    sn_spool_config c = small_cfg();
    sn_spool *s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_journal_generation(s), 1);
    for (uint64_t i = 1; i <= 3; i++)
        journal_rec(s, i);
    /* Not covered: a reset would orphan the records. */
    ck_assert_int_eq(sn_spool_journal_reset(s), -EINVAL);
    sn_spool_close(s);

    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_journal_generation(s), 1);
    collected col = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &col), 0);
    ck_assert_uint_eq(col.n, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(col.idx[i], (uint64_t)i + 1);
        ck_assert_uint_eq(col.gen[i], 1);
    }
    int calls = 0;
    ck_assert_int_eq(sn_spool_recover_journal(s, stop_at_two, &calls), 42);
    ck_assert_int_eq(calls, 2);
    /* New records join the same generation; a replay still gives only the recovered ones. */
    journal_rec(s, 4);
    collected again = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &again), 0);
    ck_assert_uint_eq(again.n, 3);
    /* The pipeline seals them, then resets. */
    append_rec(s, 500, 1);
    ck_assert_int_eq(sn_spool_journal_reset(s), 0);
    ck_assert_uint_eq(sn_spool_journal_generation(s), 2);
    collected none = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &none), 0);
    ck_assert_uint_eq(none.n, 0);
    journal_rec(s, 5);
    sn_spool_close(s);

    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_journal_generation(s), 2);
    collected after = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &after), 0);
    ck_assert_uint_eq(after.n, 1);
    ck_assert_uint_eq(after.idx[0], 5);
    ck_assert_uint_eq(after.gen[0], 2);
    sn_spool_close(s);
}
END_TEST

/* Runs body in a child that then exits without closing the spool (a crash after the calls). */
#define CRASH_AFTER(body)                                                                          \
    do {                                                                                           \
        pid_t pid_ = fork();                                                                       \
        ck_assert_int_ge(pid_, 0);                                                                 \
        if (pid_ == 0) {                                                                           \
            sn_spool_config c_ = small_cfg();                                                      \
            sn_spool *s = NULL;                                                                    \
            char err_[256];                                                                        \
            if (sn_spool_open(g_dir, &c_, &s, err_, sizeof err_) != 0)                             \
                _exit(3);                                                                          \
            body;                                                                                  \
            _exit(0);                                                                              \
        }                                                                                          \
        int st_;                                                                                   \
        ck_assert_int_eq(waitpid(pid_, &st_, 0), pid_);                                            \
        ck_assert(WIFEXITED(st_) && WEXITSTATUS(st_) == 0);                                        \
    } while (0)

static void child_journal(sn_spool *s, uint64_t i)
{
    uint8_t buf[1024];
    rec_fill(buf, i);
    if (sn_spool_journal_append(s, buf, rec_len(i)) != 0)
        _exit(10);
}

static void child_append(sn_spool *s, uint64_t i, uint64_t gen)
{
    uint8_t buf[1024];
    rec_fill(buf, i);
    if (sn_spool_append(s, buf, rec_len(i), gen) != 0)
        _exit(11);
}

START_TEST(journal_covered_by_sealed_record_is_discarded)
{
    /* Crash between sealing and resetting: the journal is covered by the sealed record. */
    CRASH_AFTER({
        child_journal(s, 1);
        child_journal(s, 2);
        child_append(s, 100, 1);
    });
    sn_spool_config c = small_cfg();
    sn_spool *s = open_ok(&c);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.discarded_journal, 1);
    ck_assert_uint_eq(sn_spool_journal_generation(s), 2);
    collected col = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &col), 0);
    ck_assert_uint_eq(col.n, 0);
    expect_pop(s, 100, 1);
    sn_spool_close(s);
    char path[256];
    ck_assert(!exists(journal_path(path, sizeof path, 1)));
}
END_TEST

START_TEST(journal_covered_by_popped_record_is_discarded)
{
    /* The sealed record was acknowledged and its segment deleted before the crash: the ack file
     * still says generation 1 is covered. */
    CRASH_AFTER({
        child_journal(s, 1);
        child_append(s, 100, 1);
        if (sn_spool_pop(s) != 0)
            _exit(12);
    });
    sn_spool_config c = small_cfg();
    sn_spool *s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 0);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.discarded_journal, 1);
    collected col = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &col), 0);
    ck_assert_uint_eq(col.n, 0);
    ck_assert_uint_eq(sn_spool_journal_generation(s), 2);
    sn_spool_close(s);
}
END_TEST

START_TEST(journal_reset_then_crash)
{
    /* Sealed, reset, more events, crash before any sync: the old generation's file may still
     * be there (its deletion waits for a sync) and is discarded; the new one comes back. */
    CRASH_AFTER({
        child_journal(s, 1);
        child_append(s, 100, 1);
        if (sn_spool_journal_reset(s) != 0)
            _exit(13);
        child_journal(s, 2);
        child_journal(s, 3);
    });
    char path[256];
    ck_assert(exists(journal_path(path, sizeof path, 1))); /* waiting for a sync */
    sn_spool_config c = small_cfg();
    sn_spool *s = open_ok(&c);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.discarded_journal, 1);
    ck_assert_uint_eq(sn_spool_journal_generation(s), 2);
    collected col = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &col), 0);
    ck_assert_uint_eq(col.n, 2);
    ck_assert_uint_eq(col.idx[0], 2);
    ck_assert_uint_eq(col.idx[1], 3);
    ck_assert_uint_eq(col.gen[0], 2);
    expect_pop(s, 100, 1);
    sn_spool_close(s);
}
END_TEST

START_TEST(lost_sealed_record_uncovers_journals)
{
    /* As after a power loss that kept the journal reset but not the sealed record: both
     * generations come back, and one sealed record covering the newest covers both. */
    CRASH_AFTER({
        child_journal(s, 1);
        child_append(s, 100, 1);
        if (sn_spool_journal_reset(s) != 0)
            _exit(13);
        child_journal(s, 2);
    });
    char path[256];
    ck_assert_int_eq(unlink(seg_path(path, sizeof path, 1)), 0);
    sn_spool_config c = small_cfg();
    sn_spool *s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 0);
    ck_assert_uint_eq(sn_spool_journal_generation(s), 2);
    collected col = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &col), 0);
    ck_assert_uint_eq(col.n, 2);
    ck_assert_uint_eq(col.idx[0], 1);
    ck_assert_uint_eq(col.gen[0], 1);
    ck_assert_uint_eq(col.idx[1], 2);
    ck_assert_uint_eq(col.gen[1], 2);
    append_rec(s, 200, 2);
    ck_assert_int_eq(sn_spool_journal_reset(s), 0);
    ck_assert_int_eq(sn_spool_sync(s), 0);
    ck_assert(!exists(journal_path(path, sizeof path, 1)));
    ck_assert(!exists(journal_path(path, sizeof path, 2)));
    sn_spool_close(s);
    s = open_ok(&c);
    collected none = {0};
    ck_assert_int_eq(sn_spool_recover_journal(s, collect, &none), 0);
    ck_assert_uint_eq(none.n, 0);
    ck_assert_uint_eq(sn_spool_journal_generation(s), 3);
    sn_spool_close(s);
}
END_TEST

/* ---- lock ---- */

START_TEST(second_open_is_refused)
{
    sn_spool *a = open_ok(NULL);
    sn_spool *b = (sn_spool *)1;
    char err[256];
    ck_assert_int_eq(sn_spool_open(g_dir, NULL, &b, err, sizeof err), -EBUSY);
    ck_assert_ptr_null(b);
    ck_assert_ptr_nonnull(strstr(err, "in use by another process"));
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    ck_assert_ptr_nonnull(strstr(err, pid));
    ck_assert_ptr_nonnull(strstr(err, g_dir));
    /* Another process is refused too. */
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        sn_spool *x = NULL;
        _exit(sn_spool_open(g_dir, NULL, &x, err, sizeof err) == -EBUSY ? 0 : 1);
    }
    int st;
    ck_assert_int_eq(waitpid(child, &st, 0), child);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    sn_spool_close(a);
    b = open_ok(NULL); /* released by close */
    sn_spool_close(b);
}
END_TEST

/* ---- sync modes ---- */

START_TEST(background_io_keeps_the_rules)
{
    /* With background_io the ack rewrites, the deletions and the interval's syncs run on the
     * spool's thread. After sn_spool_sync (which waits for that thread) the directory is what
     * the synchronous code leaves, and a reopen finds every record not popped, once. */
    sn_spool_config c = small_cfg(); /* 4 KiB segments: the appends roll over many times */
    c.background_io = true;
    sn_spool *s = open_ok(&c);
    uint64_t popped = 0;
    for (uint64_t i = 1; i <= 40; i++) {
        journal_rec(s, i);
        append_rec(s, i, sn_spool_journal_generation(s));
        ck_assert_int_eq(sn_spool_journal_reset(s), 0);
        if (i % 2 == 0) {
            expect_pop(s, popped + 1, popped + 1);
            popped++;
        }
        if (i % 5 == 0)
            ck_assert_int_eq(sn_spool_sync_start(s), 0);
    }
    ck_assert_int_eq(sn_spool_sync(s), 0);
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_gt(st.segments, 2);
    ck_assert_int_eq(count_files("seg-"), (int)st.segments); /* popped segments are gone */
    ck_assert_int_eq(count_files("journal-"), 1);            /* covered generations too */
    char path[256];
    ck_assert(exists(path_in(path, sizeof path, "ack")));
    ck_assert_uint_gt(st.fsyncs, 0);
    ck_assert_uint_eq(st.ack_write_errors, 0);
    /* A sync queued just before close still runs: close waits for the thread. */
    append_rec(s, 41, 0);
    ck_assert_int_eq(sn_spool_sync_start(s), 0);
    sn_spool_close(s);

    c.background_io = false;
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 41 - popped);
    for (uint64_t i = popped + 1; i <= 41; i++)
        expect_pop(s, i, i);
    sn_spool_close(s);
}
END_TEST

/* The injected fsync/fdatasync: -EIO while `fail` is set (with `only_watched`, only for the
 * file with inode `watch`); otherwise the real call, counting the good fdatasyncs of the file
 * with inode `watch`. */
typedef struct sync_fault {
    atomic_bool fail, only_watched;
    atomic_int failed, good_watched;
    _Atomic ino_t watch;
} sync_fault;

static int faulty_sync(int fd, bool full, void *ud)
{
    sync_fault *f = ud;
    struct stat st;
    bool watched = !full && fstat(fd, &st) == 0 && st.st_ino == atomic_load(&f->watch);
    if (atomic_load(&f->fail) && (watched || !atomic_load(&f->only_watched))) {
        atomic_fetch_add(&f->failed, 1);
        return -EIO;
    }
    int rc = full ? fsync(fd) : fdatasync(fd);
    if (rc == 0 && watched)
        atomic_fetch_add(&f->good_watched, 1);
    return rc == 0 ? 0 : -errno;
}

/* Sets f to its start (nothing fails) and installs it on s. */
static void fault_install(sn_spool *s, sync_fault *f)
{
    atomic_store(&f->fail, false);
    atomic_store(&f->only_watched, false);
    atomic_store(&f->failed, 0);
    atomic_store(&f->good_watched, 0);
    atomic_store(&f->watch, 0);
    sn_spool_set_sync_hook(s, faulty_sync, f);
}

/* Appends records from *n + 1 on until a new segment was started (the full one is handed to the
 * next background sync). Returns the full segment's inode. */
static ino_t fill_segment(sn_spool *s, uint64_t *n)
{
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    if (st.segments == 0) { /* the first append creates the first segment */
        ++*n;
        append_rec(s, *n, 0);
        sn_spool_get_stats(s, &st);
    }
    uint64_t segs = st.segments;
    do {
        ++*n;
        append_rec(s, *n, 0);
        sn_spool_get_stats(s, &st);
    } while (st.segments == segs);
    /* the segment before the last one */
    DIR *d = opendir(g_dir);
    ck_assert_ptr_nonnull(d);
    char names[2][64] = {"", ""}; /* segment names are 28 characters */
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strnlen(e->d_name, sizeof names[0] - 1);
        if (strncmp(e->d_name, "seg-", 4) != 0)
            continue;
        if (strcmp(e->d_name, names[1]) > 0) {
            memcpy(names[0], names[1], sizeof names[0]);
            memcpy(names[1], e->d_name, l);
            names[1][l] = '\0';
        } else if (strcmp(e->d_name, names[0]) > 0) {
            memcpy(names[0], e->d_name, l);
            names[0][l] = '\0';
        }
    }
    closedir(d);
    char path[256];
    struct stat sb;
    ck_assert_int_eq(stat(path_in(path, sizeof path, names[0]), &sb), 0);
    return sb.st_ino;
}

/* Polls the stats (up to 10 s: the thread's retry is due 100 ms after a failure) until the
 * number of segments waiting for a retried sync is want. */
static void wait_unsynced(sn_spool *s, uint64_t want)
{
    sn_spool_stats st;
    for (int i = 0; i < 1000; i++) {
        sn_spool_get_stats(s, &st);
        if (st.unsynced_segments == want)
            return;
        usleep(10000);
    }
    ck_abort_msg("unsynced_segments stayed %llu, want %llu",
                 (unsigned long long)st.unsynced_segments, (unsigned long long)want);
}

START_TEST(failed_background_sync_of_a_full_segment_is_retried)
{
    /* A full segment's descriptor goes to the background sync and the loop closes its own: when
     * that fdatasync fails, the thread keeps the descriptor and retries (rewrite + fdatasync)
     * with backoff until it works; the failures are counted, the disk is reported failing after
     * several in a row, and nothing is lost. */
    sn_spool_config c = small_cfg();
    c.background_io = true;
    sn_spool *s = open_ok(&c);
    static sync_fault f;
    fault_install(s, &f);
    atomic_store(&f.fail, true);
    uint64_t n = 0;
    atomic_store(&f.watch, fill_segment(s, &n));
    ck_assert_int_eq(sn_spool_sync_start(s), 0);
    wait_unsynced(s, 1); /* the background sync failed: kept for a retry */
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_ge(st.sync_failures, 1);
    ck_assert(!sn_spool_sync_failing(s)); /* one failure is not a failing disk */

    /* The disk works again: the thread's own retry makes the segment durable. */
    atomic_store(&f.fail, false);
    wait_unsynced(s, 0);
    ck_assert_int_ge(atomic_load(&f.good_watched), 1);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_ge(st.sync_retries, 1);
    ck_assert(!sn_spool_sync_failing(s));
    ck_assert_int_eq(sn_spool_sync(s), 0);
    expect_pop(s, 1, 1); /* acknowledged: popped */

    /* A disk failing for good: every sync fails, sn_spool_sync says so and retries at once,
     * and after 5 failed attempts in a row the spool reports failing (for /readyz). */
    atomic_store(&f.fail, true);
    atomic_store(&f.watch, fill_segment(s, &n));
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(sn_spool_sync(s), -EIO);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.unsynced_segments, 1);
    ck_assert(sn_spool_sync_failing(s));
    /* ... and recovering: the next sync retries the segment, and all is well again */
    atomic_store(&f.fail, false);
    int good = atomic_load(&f.good_watched);
    ck_assert_int_eq(sn_spool_sync(s), 0);
    ck_assert_int_gt(atomic_load(&f.good_watched), good);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.unsynced_segments, 0);
    ck_assert(!sn_spool_sync_failing(s));

    /* A segment popped while its sync is retried needs no retry any more: with every sync still
     * failing, the retry finds the file deleted and drops it (a retry cannot have worked). */
    atomic_store(&f.fail, true);
    (void)fill_segment(s, &n);
    ck_assert_int_eq(sn_spool_sync(s), -EIO);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.unsynced_segments, 1);
    for (uint64_t i = 2; i <= n; i++)
        expect_pop(s, i, i);
    wait_unsynced(s, 0); /* the thread's next retry, due within a second */
    ck_assert_int_gt(atomic_load(&f.failed), 0);
    atomic_store(&f.fail, false);
    sn_spool_set_sync_hook(s, NULL, NULL);
    ck_assert_int_eq(sn_spool_sync(s), 0);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.unsynced_segments, 0);

    /* Nothing acknowledged or not is lost: a record appended now is found after a reopen. */
    append_rec(s, n + 1, 0);
    sn_spool_close(s);
    c.background_io = false;
    s = open_ok(&c);
    ck_assert_uint_eq(sn_spool_count(s), 1);
    expect_pop(s, n + 1, n + 1);
    sn_spool_close(s);
}
END_TEST

/* Opens a spool with background_io and f installed, fills a segment (records 1..*n-1; the
 * full one is handed to the next background sync) and makes every sync of that segment fail. */
static sn_spool *open_failing_full_segment(sync_fault *f, uint64_t *n)
{
    sn_spool_config c = small_cfg();
    c.background_io = true;
    sn_spool *s = open_ok(&c);
    fault_install(s, f);
    *n = 0;
    atomic_store(&f->watch, fill_segment(s, n));
    atomic_store(&f->only_watched, true);
    atomic_store(&f->fail, true);
    return s;
}

START_TEST(segment_popped_before_its_failed_sync_is_not_retried)
{
    /* A full segment popped before the background sync carrying its descriptor ran: the
     * deletion is queued first, so the sync meets a deleted file. Its failure needs no retry
     * (nothing in it must be durable); a retry would fail for ever and hold sn_spool_sync at
     * -EIO. */
    static sync_fault f;
    uint64_t n;
    sn_spool *s = open_failing_full_segment(&f, &n);
    for (uint64_t i = 1; i < n; i++)
        expect_pop(s, i, i);
    ck_assert_int_eq(sn_spool_sync_start(s), 0); /* carries the handed-off descriptor */
    ck_assert_int_eq(sn_spool_sync(s), 0);
    ck_assert_int_gt(atomic_load(&f.failed), 0); /* its sync was tried, and failed */
    sn_spool_stats st;
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.unsynced_segments, 0);
    char path[256];
    ck_assert(!exists(seg_path(path, sizeof path, 1)));
    atomic_store(&f.watch, 0);
    sn_spool_set_sync_hook(s, NULL, NULL);
    expect_pop(s, n, n);
    sn_spool_close(s);
}
END_TEST

/* The mtime of the file with inode ino in the spool directory (0 when none). */
static struct timespec mtime_of_inode(ino_t ino)
{
    struct timespec t = {0, 0};
    DIR *d = opendir(g_dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
        if (stat(path, &sb) == 0 && sb.st_ino == ino)
            t = sb.st_mtim;
    }
    closedir(d);
    return t;
}

START_TEST(handed_off_segment_is_rewritten_after_a_failed_sync)
{
    /* No background sync can be started (no descriptor left for its copies), so sn_spool_sync
     * syncs the handed-off segment itself, and that fails. The next sync must write the
     * segment's bytes again before it counts: a second fdatasync after a failed one can report
     * success without writing anything. */
    static sync_fault f;
    uint64_t n;
    sn_spool *s = open_failing_full_segment(&f, &n);
    ino_t ino = (ino_t)atomic_load(&f.watch);
    struct rlimit old;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    int top = open("/dev/null", O_RDONLY); /* the lowest free descriptor: the limit */
    ck_assert_int_ge(top, 0);
    close(top);
    struct rlimit low = {(rlim_t)top, old.rlim_max};
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    ck_assert_int_ne(sn_spool_sync(s), 0); /* its own sync of the segment failed */
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    ck_assert_int_gt(atomic_load(&f.failed), 0);

    struct timespec before = mtime_of_inode(ino);
    struct timespec pause = {0, 20 * 1000000L}; /* a later mtime shows the rewrite */
    nanosleep(&pause, NULL);
    atomic_store(&f.fail, false);
    ck_assert_int_eq(sn_spool_sync(s), 0);
    ck_assert_int_ge(atomic_load(&f.good_watched), 1);
    struct timespec after = mtime_of_inode(ino);
    ck_assert_msg(after.tv_sec > before.tv_sec ||
                      (after.tv_sec == before.tv_sec && after.tv_nsec > before.tv_nsec),
                  "the segment was synced again without being rewritten");
    sn_spool_set_sync_hook(s, NULL, NULL);
    for (uint64_t i = 1; i <= n; i++)
        expect_pop(s, i, i);
    sn_spool_close(s);
}
END_TEST

START_TEST(covered_journals_wait_for_a_retried_sync)
{
    /* A covered journal file whose sync op ran while a full segment's sync was being retried is
     * kept by the thread and deleted once the retry worked (not forgotten until a restart). */
    static sync_fault f;
    uint64_t n;
    sn_spool *s = open_failing_full_segment(&f, &n);
    ck_assert_int_eq(sn_spool_sync_start(s), 0);
    wait_unsynced(s, 1);

    uint64_t gen = sn_spool_journal_generation(s);
    journal_rec(s, n + 1);
    append_rec(s, n + 1, gen); /* covers gen */
    ck_assert_int_eq(sn_spool_journal_reset(s), 0);
    char path[256];
    journal_path(path, sizeof path, gen);
    ck_assert(exists(path));
    ck_assert_int_eq(sn_spool_sync(s), -EIO); /* the segment's retry fails */
    ck_assert(exists(path));                  /* so the covered file stays */

    atomic_store(&f.fail, false);
    ck_assert_int_eq(sn_spool_sync(s), 0); /* the retry works: the file goes */
    ck_assert_int_ge(atomic_load(&f.good_watched), 1);
    ck_assert(!exists(path));
    ck_assert_int_eq(count_files("journal-"), 1);
    sn_spool_set_sync_hook(s, NULL, NULL);
    for (uint64_t i = 1; i <= n + 1; i++)
        expect_pop(s, i, i);
    sn_spool_close(s);
}
END_TEST

/* A sync hook that counts the syncs of the file with inode g_watch_ino. */
static ino_t g_watch_ino;
static atomic_int g_watch_syncs;

static int count_watched_syncs(int fd, bool full, void *ud)
{
    (void)ud;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_ino == g_watch_ino)
        atomic_fetch_add(&g_watch_syncs, 1);
    return full ? fsync(fd) : fdatasync(fd);
}

/* A rotation that finds the pending list full hands it to a background sync, which must carry
 * only live descriptors: the journal file just closed is left out (its number, free again, was
 * taken by the duplicate of the segment's descriptor, so the segment was synced twice). */
START_TEST(rotation_with_a_full_pending_list_syncs_live_descriptors)
{
    sn_spool_config c = small_cfg();
    c.max_bytes = 8 << 20;
    c.segment_bytes = 1 << 20; /* no segment fills (a full one would start a sync) */
    c.background_io = true;
    sn_spool *s = open_ok(&c);
    journal_rec(s, 1);
    append_rec(s, 1, 1);
    char path[256];
    struct stat st;
    ck_assert_int_eq(stat(path_in(path, sizeof path, "seg-00000000000000000001.log"), &st), 0);
    g_watch_ino = st.st_ino;
    atomic_store(&g_watch_syncs, 0);
    sn_spool_set_sync_hook(s, count_watched_syncs, NULL);
    /* 32 covered generations wait for the segment's sync; the 33rd finds the list full. */
    ck_assert_int_eq(sn_spool_journal_reset(s), 0);
    for (uint64_t g = 2; g <= 33; g++) {
        journal_rec(s, g);
        append_rec(s, g, g);
        ck_assert_int_eq(sn_spool_journal_reset(s), 0);
    }
    ck_assert_int_eq(sn_spool_sync(s), 0);
    int syncs = atomic_load(&g_watch_syncs);
    ck_assert_int_eq(syncs, 1);
    ck_assert_int_eq(count_files("journal-"), 1);
    sn_spool_set_sync_hook(s, NULL, NULL);
    for (uint64_t i = 1; i <= 33; i++)
        expect_pop(s, i, 0);
    sn_spool_close(s);
}
END_TEST

/* A sync hook that holds the first sync made while `state` is 1 (state 2 while held) until the
 * test sets 3, then fails it; every other call is the real one. */
static int held_sync(int fd, bool full, void *ud)
{
    atomic_int *state = ud;
    int armed = 1;
    if (atomic_compare_exchange_strong(state, &armed, 2)) {
        while (atomic_load(state) != 3)
            usleep(1000);
        return -EIO;
    }
    return (full ? fsync(fd) : fdatasync(fd)) == 0 ? 0 : -errno;
}

/* small_cfg with background_io and segments large enough to hold a whole test's records. */
static sn_spool_config one_segment_cfg(void)
{
    sn_spool_config c = small_cfg();
    c.segment_bytes = 1 << 20;
    c.background_io = true;
    return c;
}

START_TEST(journal_kept_when_an_earlier_sync_fails_later)
{
    /* A covered journal generation retired while the background sync carrying its sealed record
     * runs goes with the next sync. Should the first one then fail, the second one working does
     * not make the record durable (it was not dirty any more): the file is kept (discarded at
     * the next start), and the record is not lost. */
    sn_spool_config c = one_segment_cfg();
    sn_spool *s = open_ok(&c);
    static atomic_int state;
    atomic_store(&state, 0);
    sn_spool_set_sync_hook(s, held_sync, &state);
    ck_assert_int_eq(sn_spool_sync(s), 0);
    uint64_t gen = sn_spool_journal_generation(s);
    journal_rec(s, 1);
    append_rec(s, 1, gen); /* covers gen */
    atomic_store(&state, 1);
    ck_assert_int_eq(sn_spool_sync_start(s), 0); /* the segment's sync: held, then fails */
    while (atomic_load(&state) != 2)
        usleep(1000);
    ck_assert_int_eq(sn_spool_journal_reset(s), 0); /* gen waits for the next sync */
    ck_assert_int_eq(sn_spool_sync_start(s), 0);    /* carries gen, not the segment */
    atomic_store(&state, 3);
    ck_assert_int_eq(sn_spool_sync(s), 0); /* every open file synced again here */
    char path[256];
    ck_assert(exists(journal_path(path, sizeof path, gen)));
    sn_spool_set_sync_hook(s, NULL, NULL);
    /* Once all is durable again, covered files go as before. */
    journal_rec(s, 2);
    append_rec(s, 2, sn_spool_journal_generation(s));
    ck_assert_int_eq(sn_spool_journal_reset(s), 0);
    ck_assert_int_eq(sn_spool_sync_start(s), 0);
    ck_assert_int_eq(sn_spool_sync(s), 0);
    ck_assert(!exists(journal_path(path, sizeof path, gen + 1)));
    sn_spool_close(s);
    c.background_io = false;
    s = open_ok(&c);
    ck_assert(!exists(journal_path(path, sizeof path, gen))); /* discarded as covered */
    expect_pop(s, 1, 1);
    expect_pop(s, 2, 2);
    sn_spool_close(s);
}
END_TEST

/* Bytes this process has passed to write(2) and friends so far (/proc/self/io wchar; 0 when
 * unreadable). No ck_assert inside: in fork mode every check writes its location to a file. */
static uint64_t bytes_written(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    if (f == NULL)
        return 0;
    char line[128];
    uint64_t n = 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "wchar: ", 7) == 0)
            n = strtoull(line + 7, NULL, 10);
    fclose(f);
    return n;
}

/* Runs sn_spool_sync and returns its result; *written gets the bytes written meanwhile. */
static int sync_counting(sn_spool *s, uint64_t *written)
{
    uint64_t w0 = bytes_written();
    int rc = sn_spool_sync(s);
    *written = bytes_written() - w0;
    return rc;
}

START_TEST(failed_sync_rewrites_the_file_before_the_next)
{
    /* After a failed fdatasync a second one could answer 0 without writing: an open file whose
     * sync failed (the journal here; open segments alike) is rewritten from its bytes before
     * the next sync counts -- after a failure on the loop, and after a background one (which
     * file failed is not known there: every open file is rewritten). */
    sn_spool_config c = one_segment_cfg();
    sn_spool *s = open_ok(&c);
    static sync_fault f;
    fault_install(s, &f);
    uint64_t gen = sn_spool_journal_generation(s);
    for (uint64_t i = 1; i <= 8; i++) {
        journal_rec(s, i);
        append_rec(s, i, 0);
    }
    ck_assert_uint_gt(bytes_written(), 0); /* /proc/self/io is there */
    char path[256];
    struct stat sb;
    ck_assert_int_eq(stat(journal_path(path, sizeof path, gen), &sb), 0);
    uint64_t jsize = (uint64_t)sb.st_size;
    atomic_store(&f.watch, sb.st_ino);
    atomic_store(&f.only_watched, true);
    atomic_store(&f.fail, true);

    ck_assert_int_eq(sn_spool_sync_start(s), 0); /* the background sync of the journal fails */
    uint64_t w0 = bytes_written();
    ck_assert_int_eq(sn_spool_sync(s), -EIO); /* every open file rewritten, the journal fails */
    ck_assert_uint_ge(bytes_written() - w0, jsize + 8 * SN_SPOOL_RECORD_HEADER);
    int failed = atomic_load(&f.failed);
    ck_assert_int_ge(failed, 2);

    atomic_store(&f.fail, false);
    w0 = bytes_written();
    ck_assert_int_eq(sn_spool_sync_start(s), 0); /* rewritten here, synced by the thread */
    ck_assert_uint_ge(bytes_written() - w0, jsize);
    ck_assert_int_eq(sn_spool_sync(s), 0);
    ck_assert_int_ge(atomic_load(&f.good_watched), 1);
    ck_assert_int_eq(atomic_load(&f.failed), failed);

    /* All good again: a sync writes nothing. */
    journal_rec(s, 9);
    uint64_t written = 1;
    ck_assert_int_eq(sync_counting(s, &written), 0);
    ck_assert_uint_eq(written, 0);
    sn_spool_close(s);

    /* Without the thread: a failed sync of the journal, then the next one rewrites it. */
    c.background_io = false;
    s = open_ok(&c);
    fault_install(s, &f);
    journal_rec(s, 10);
    ck_assert_int_eq(stat(journal_path(path, sizeof path, sn_spool_journal_generation(s)), &sb), 0);
    atomic_store(&f.watch, sb.st_ino);
    atomic_store(&f.only_watched, true);
    atomic_store(&f.fail, true);
    ck_assert_int_eq(sn_spool_sync(s), -EIO);
    atomic_store(&f.fail, false);
    w0 = bytes_written();
    ck_assert_int_eq(sn_spool_sync(s), 0);
    ck_assert_uint_ge(bytes_written() - w0, (uint64_t)sb.st_size);
    ck_assert_int_ge(atomic_load(&f.good_watched), 1);
    journal_rec(s, 11);
    ck_assert_int_eq(sync_counting(s, &written), 0);
    ck_assert_uint_eq(written, 0); /* the flag was cleared: a plain sync */
    sn_spool_close(s);
}
END_TEST

START_TEST(interval_mode_syncs_on_request)
{
    sn_spool_config c = small_cfg();
    c.segment_bytes = 1 << 20;
    sn_spool *s = open_ok(&c);
    sn_spool_stats st;
    ck_assert_int_eq(sn_spool_sync(s), 0);
    sn_spool_get_stats(s, &st);
    uint64_t base = st.fsyncs;
    for (uint64_t i = 1; i <= 5; i++) {
        append_rec(s, i, 0);
        journal_rec(s, i);
    }
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.fsyncs, base); /* write(2) only */
    ck_assert_int_eq(sn_spool_sync(s), 0);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.fsyncs, base + 3); /* the segment, the journal, the new entry */
    ck_assert_int_eq(sn_spool_sync(s), 0);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.fsyncs, base + 3); /* nothing dirty */
    /* The covered journal file goes only once the sealed record is durable. */
    append_rec(s, 6, 1);
    ck_assert_int_eq(sn_spool_journal_reset(s), 0);
    char path[256];
    ck_assert(exists(journal_path(path, sizeof path, 1)));
    ck_assert_int_eq(sn_spool_sync(s), 0);
    ck_assert(!exists(journal_path(path, sizeof path, 1)));
    ck_assert(exists(journal_path(path, sizeof path, 2)));
    sn_spool_close(s);
}
END_TEST

START_TEST(always_mode_syncs_every_write)
{
    sn_spool_config c = small_cfg();
    c.segment_bytes = 1 << 20;
    c.fsync = SN_SPOOL_FSYNC_ALWAYS;
    sn_spool *s = open_ok(&c);
    sn_spool_stats st;
    append_rec(s, 1, 0); /* creates the segment */
    sn_spool_get_stats(s, &st);
    uint64_t base = st.fsyncs;
    append_rec(s, 2, 0);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.fsyncs, base + 1);
    journal_rec(s, 1);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.fsyncs, base + 2);
    ck_assert_int_eq(sn_spool_sync(s), 0);
    sn_spool_get_stats(s, &st);
    ck_assert_uint_eq(st.fsyncs, base + 2); /* nothing left to sync */
    /* The covered journal goes at once: its sealed record is already durable. */
    append_rec(s, 3, 1);
    ck_assert_int_eq(sn_spool_journal_reset(s), 0);
    char path[256];
    ck_assert(!exists(journal_path(path, sizeof path, 1)));
    sn_spool_close(s);
}
END_TEST

/* ---- bad directories ---- */

START_TEST(directory_is_a_file)
{
    int fd = open(g_dir, O_CREAT | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    sn_spool *s = (sn_spool *)1;
    char err[256];
    ck_assert_int_eq(sn_spool_open(g_dir, NULL, &s, err, sizeof err), -ENOTDIR);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(err, "is not a directory"));
    ck_assert_ptr_nonnull(strstr(err, g_dir));
    /* A missing parent is not created. */
    char deep[256];
    snprintf(deep, sizeof deep, "%s/missing/spool", g_root);
    ck_assert_int_eq(sn_spool_open(deep, NULL, &s, err, sizeof err), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "cannot create directory"));
    ck_assert_int_eq(sn_spool_open("", NULL, &s, err, sizeof err), -EINVAL);
}
END_TEST

START_TEST(directory_without_permission)
{
    /* Root ignores permissions, so the attempt runs as an unprivileged user when we are root. */
    sn_spool *s = open_ok(NULL);
    sn_spool_close(s);
    ck_assert_int_eq(chmod(g_dir, 0500), 0);
    ck_assert_int_eq(chmod(g_root, 0755), 0);
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        close(pfd[0]);
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(2);
        char err[256] = "";
        sn_spool *x = NULL;
        int rc = sn_spool_open(g_dir, NULL, &x, err, sizeof err);
        if (write(pfd[1], err, strlen(err) + 1) < 0)
            _exit(3);
        _exit(rc == -EACCES ? 0 : 1);
    }
    close(pfd[1]);
    char msg[256] = "";
    ssize_t n = read(pfd[0], msg, sizeof msg - 1);
    close(pfd[0]);
    msg[n > 0 ? n : 0] = '\0';
    int st;
    ck_assert_int_eq(waitpid(child, &st, 0), child);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %d, %s", WEXITSTATUS(st), msg);
    ck_assert_ptr_nonnull(strstr(msg, "Permission denied"));
}
END_TEST

static Suite *spool_suite(void)
{
    Suite *s = suite_create("spool");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, descriptor_defaults_match);
    tcase_add_test(tc, bad_settings_are_refused);
    tcase_add_test(tc, order_across_many_segments);
    tcase_add_test(tc, empty_and_bad_arguments);
    tcase_add_test(tc, size_limit_refuses_exactly_when_over);
    tcase_add_test(tc, journal_limit);
    tcase_add_test(tc, restart_keeps_order_and_pops);
    tcase_add_test(tc, bad_ack_file_sends_again);
    tcase_add_test(tc, split_marker_survives_restart_until_popped);
    tcase_add_test(tc, ack_slots_in_place_and_old_format);
    tcase_add_test(tc, kill9_loses_nothing_reported);
    tcase_add_test(tc, kill9_journal_comes_back);
    tcase_add_test(tc, journal_next_keeps_the_detached_generation_until_covered);
    tcase_add_test(tc, torn_tail_is_truncated);
    tcase_add_test(tc, torn_header_and_zero_tail);
    tcase_add_test(tc, bad_checksum_at_the_tail_is_truncated);
    tcase_add_test(tc, generation_at_the_counter_limit_is_corrupt);
    tcase_add_test(tc, corrupt_middle_skips_to_next_segment);
    tcase_add_test(tc, corrupt_middle_of_last_segment);
    tcase_add_test(tc, corruption_found_by_peek);
    tcase_add_test(tc, torn_journal_tail);
    tcase_add_test(tc, damaged_generation_tag_is_a_torn_tail);
    tcase_add_test(tc, journal_uncovered_comes_back);
    tcase_add_test(tc, journal_files_are_recycled);
    tcase_add_test(tc, spares_stop_without_rename_noreplace);
    tcase_add_test(tc, unopenable_spare_is_deleted);
    tcase_add_test(tc, old_format_journal_is_replayed);
    tcase_add_test(tc, old_format_segment_is_read);
    tcase_add_test(tc, crc32c_matches_the_reference);
    tcase_add_test(tc, journal_covered_by_sealed_record_is_discarded);
    tcase_add_test(tc, journal_covered_by_popped_record_is_discarded);
    tcase_add_test(tc, journal_reset_then_crash);
    tcase_add_test(tc, lost_sealed_record_uncovers_journals);
    tcase_add_test(tc, second_open_is_refused);
    tcase_add_test(tc, interval_mode_syncs_on_request);
    tcase_add_test(tc, background_io_keeps_the_rules);
    tcase_add_test(tc, failed_background_sync_of_a_full_segment_is_retried);
    tcase_add_test(tc, segment_popped_before_its_failed_sync_is_not_retried);
    tcase_add_test(tc, covered_journals_wait_for_a_retried_sync);
    tcase_add_test(tc, handed_off_segment_is_rewritten_after_a_failed_sync);
    tcase_add_test(tc, rotation_with_a_full_pending_list_syncs_live_descriptors);
    tcase_add_test(tc, journal_kept_when_an_earlier_sync_fails_later);
    tcase_add_test(tc, failed_sync_rewrites_the_file_before_the_next);
    tcase_add_test(tc, always_mode_syncs_every_write);
    tcase_add_test(tc, directory_is_a_file);
    tcase_add_test(tc, directory_without_permission);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Tests that fail skip their teardown; everything they left goes with g_base. */
    snprintf(g_base, sizeof g_base, "/tmp/sn-spool-XXXXXX");
    if (mkdtemp(g_base) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    chmod(g_base, 0755); /* the permission test's unprivileged child must pass through */
    SRunner *sr = srunner_create(spool_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    nftw(g_base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failed == 0 ? 0 : 1;
}
