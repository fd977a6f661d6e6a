/*
 * libFuzzer target for the spool's recovery (sidecar/spool.c): what sn_spool_open finds on
 * disk after a crash, a full disk or a hostile neighbour.
 *
 * The input describes the files of a spool directory, each as
 *   kind (1 byte: 0 segment, 1 journal, 2 ack, 3 a stray "seg-" name), number (1 byte: the
 *   segment's first id or the journal's generation), length (2 bytes, little-endian), bytes
 * after one flags byte (bit 0: fix every checksum the format has (a sealed record's by its magic:
 * zlib's CRC-32 for "SPR1", CRC-32C for "SPR2"), so the fuzzer gets past the
 * checksums into the field checks; bit 1, with bit 0: leave the generation tags of version 2
 * journal records as they are, else write the file's generation there too, so that the records
 * pass the tag check -- with the bit, a tag of another generation ends the file). The files are
 * written into a fresh temp directory and the spool opened with its smallest limits.
 *
 * Open must succeed or fail with a negative errno and a one-line message, without a sanitizer
 * finding or a leak. An opened spool must hand back its journal and its records within the
 * limits, accept an append, journal append, pop and sync, and -- the point of recovery --
 * whatever it left behind must open again.
 */
#include "fuzz_common.h"
#include "log.h"
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define FUZZ_MAX_FILES 8

int LLVMFuzzerInitialize(int *argc, char ***argv);

static char dir[64];
static sn_spool_config cfg;

/* Removes every file in dir (not dir itself). */
static void empty_dir(void)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        abort();
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
}

/* Removes the temp directory at exit. */
static void remove_dir(void)
{
    empty_dir();
    rmdir(dir);
}

/* Creates the temp directory and picks the smallest limits, so inputs can reach them. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* tmpfs where there is one: the spool fsyncs, which a disk makes slow. */
    struct stat st;
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/sn-fuzz-spool-XXXXXX", base);
    if (mkdtemp(dir) == NULL)
        abort();
    atexit(remove_dir);
    sn_log_set_level(SN_LOG_OFF);
    sn_spool_config_defaults(&cfg);
    cfg.max_bytes = SN_SPOOL_MIN_BYTES;
    cfg.segment_bytes = SN_SPOOL_MIN_SEGMENT_BYTES;
    cfg.max_record_bytes = SN_SPOOL_MIN_RECORD;
    cfg.journal_max_bytes = SN_SPOOL_MIN_JOURNAL_BYTES;
    return 0;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* CRC-32 of a[0..alen) followed by b[0..blen). */
static uint32_t crc2(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    uLong c = crc32(0L, a, (uInt)alen);
    return (uint32_t)crc32(c, b, (uInt)blen);
}

/* Rewrites the CRC of every record in a run of records (header hlen bytes, length at 4, CRC at
 * crc_at over the header before it and the payload: zlib's CRC-32, or with a seed CRC-32C over
 * seed[0..seedlen) first, as in version 2 journals; in segments (seg), CRC-32C without a seed
 * for the records whose magic is "SPR2"), stopping at the first that does not fit. With a seed
 * and tag, the generation tag at byte 8 is set to the seed's low 32 bits first. */
static void fix_records(uint8_t *p, size_t len, size_t hlen, size_t crc_at, const uint8_t *seed,
                        size_t seedlen, bool tag, bool seg)
{
    size_t off = 0;
    while (len - off >= hlen) {
        uint32_t n = get_u32(p + off + 4);
        if (n > len - off - hlen)
            return;
        uint32_t c;
        if (seed != NULL) { /* a version 2 journal: CRC-32C from the generation on */
            if (tag)
                put_u32(p + off + 8, get_u32(seed));
            c = sn_spool_crc32c(0, seed, seedlen);
            c = sn_spool_crc32c(c, p + off, crc_at);
            c = sn_spool_crc32c(c, p + off + hlen, n);
        } else if (seg && get_u32(p + off) == 0x32525053u) { /* SPR2: CRC-32C */
            c = sn_spool_crc32c(sn_spool_crc32c(0, p + off, crc_at), p + off + hlen, n);
        } else {
            c = crc2(p + off, crc_at, p + off + hlen, n);
        }
        put_u32(p + off + crc_at, c);
        off += hlen + n;
    }
}

/* Fixes the checksums of one file of the given kind (see the layout in docs/spool.md), and with
 * tags the generation tags of version 2 journal records. */
static void fix_crcs(int kind, uint8_t *p, size_t len, bool tags)
{
    switch (kind) {
    case 0:
        fix_records(p, len, SN_SPOOL_RECORD_HEADER, 28, NULL, 0, false, true);
        break;
    case 1:
        if (len < SN_SPOOL_JOURNAL_FILE_HEADER)
            return;
        put_u32(p + 20, crc2(p, 20, NULL, 0));
        /* Version 2 files: CRC-32C, seeded with the generation (bytes 8-15). */
        fix_records(p + SN_SPOOL_JOURNAL_FILE_HEADER, len - SN_SPOOL_JOURNAL_FILE_HEADER,
                    SN_SPOOL_JOURNAL_HEADER, 12, get_u32(p + 4) == 2 ? p + 8 : NULL, 8, tags,
                    false);
        break;
    case 2: /* two 32-byte slots */
        for (size_t at = 0; at + 32 <= len && at < 64; at += 32)
            put_u32(p + at + 28, crc2(p + at, 28, NULL, 0));
        break;
    default:
        break;
    }
}

/* Writes the files the input describes into dir. */
static void write_files(const uint8_t *data, size_t size)
{
    static uint8_t buf[65536];
    bool fix = size > 0 && (data[0] & 1);
    bool tags = size > 0 && !(data[0] & 2);
    size_t off = size > 0 ? 1 : 0;
    for (int f = 0; f < FUZZ_MAX_FILES && size - off >= 4; f++) {
        int kind = data[off] & 3;
        unsigned num = data[off + 1];
        size_t len = (size_t)data[off + 2] | (size_t)data[off + 3] << 8;
        off += 4;
        if (len > size - off)
            len = size - off;
        memcpy(buf, data + off, len);
        off += len;
        if (fix)
            fix_crcs(kind, buf, len, tags);
        char name[64];
        switch (kind) {
        case 0:
            snprintf(name, sizeof name, "seg-%020u.log", num);
            break;
        case 1:
            snprintf(name, sizeof name, "journal-%020u", num);
            break;
        case 2:
            snprintf(name, sizeof name, "ack");
            break;
        default:
            snprintf(name, sizeof name, "seg-%u.log", num);
            break;
        }
        char path[160];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd < 0)
            abort();
        if (len > 0 && write(fd, buf, len) != (ssize_t)len)
            abort();
        close(fd);
    }
}

/* Checks one recovered journal record. */
static int on_journal(void *ud, const uint8_t *data, size_t len, uint64_t generation)
{
    (void)data;
    uint64_t *current = ud;
    if (len > (size_t)cfg.max_record_bytes || generation > *current)
        abort();
    return 0;
}

/* Opens the spool in dir: 0 and *out, or a checked failure (returns the errno). */
static int open_spool(sn_spool **out)
{
    char err[512];
    err[0] = '\0';
    int rc = sn_spool_open(dir, &cfg, out, err, sizeof err);
    if (rc < 0)
        sn_fuzz_check_err(err, sizeof err);
    else if (rc != 0)
        abort();
    return rc;
}

/* Works the recovered spool a little: journal, peek/pop, appends, a sync. */
static void exercise(sn_spool *s)
{
    uint64_t gen = sn_spool_journal_generation(s);
    if (gen < 1)
        abort();
    int rc = sn_spool_recover_journal(s, on_journal, &gen);
    if (rc != 0 && rc != -EIO && rc != -ENOMEM)
        abort();
    uint64_t count = sn_spool_count(s);
    for (uint64_t i = 0; i <= count; i++) {
        const uint8_t *data;
        size_t len;
        uint64_t id;
        rc = sn_spool_peek(s, &data, &len, &id);
        if (rc == -ENOENT)
            break;
        if (rc != 0)
            return;
        if (len > (size_t)cfg.max_record_bytes)
            abort();
        if (sn_spool_pop(s) != 0)
            abort();
    }
    static const uint8_t rec[] = "fuzz record";
    rc = sn_spool_journal_append(s, rec, sizeof rec);
    if (rc != 0 && rc != -ENOSPC)
        abort();
    rc = sn_spool_append(s, rec, sizeof rec, sn_spool_journal_generation(s));
    if (rc != 0 && rc != -ENOSPC)
        abort();
    if (rc == 0 && sn_spool_journal_reset(s) != 0)
        abort();
    (void)sn_spool_sync(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    write_files(data, size);
    sn_spool *s;
    if (open_spool(&s) == 0) {
        exercise(s);
        sn_spool_close(s);
        /* What a recovered spool leaves behind must open again. */
        if (open_spool(&s) != 0)
            abort();
        sn_spool_close(s);
    }
    empty_dir();
    return 0;
}
