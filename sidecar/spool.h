/*
 * spool.h -- the sidecar's durable on-disk state: the ordered spool of sealed batches waiting
 * for the aggregator, and the write-ahead journal of the batch still open.
 *
 * One directory holds (docs/spool.md has the byte layout and the recovery rules):
 *   LOCK                      flock(2)ed while a spool is open: one sidecar per directory
 *   seg-<first record id>.log segments of sealed records, appended in order, deleted once every
 *                             record in them was popped
 *   ack                       the id of the last popped record (rewritten by write + rename)
 *   journal-<generation>      the write-ahead journal of the open batch, one file per generation
 *
 * Sealed records are opaque bytes (an IngestRequest) with an id that grows by one per append
 * and the journal generation they cover. Records come back from sn_spool_peek oldest first;
 * sn_spool_pop drops the oldest once the aggregator acknowledged it.
 *
 * Journal generations: journal records (the events of one accepted request) are written to the
 * current generation. When the pipeline seals the open batch it appends the sealed record with
 * journal_gen = sn_spool_journal_generation() and then calls sn_spool_journal_reset(), which
 * starts the next generation with an empty journal. A sealed record with journal_gen G covers
 * every generation <= G. At open, journal records of generations no sealed (or popped) record
 * covers are handed back by sn_spool_recover_journal(), so they are sealed again; covered ones
 * are discarded.
 *
 * Durability: every append and journal append is a write(2) into the page cache before the
 * call returns, so it survives kill -9 of the process; so is a pop's ack file, except with
 * background_io, where it is rewritten moments later (a record popped just before kill -9 may be
 * sent again: the aggregator de-duplicates). sn_spool_sync() makes what was written
 * durable against power loss (the pipeline calls it on a timer); fsync "always" does that in
 * every call instead.
 *
 * Limits: sealed records take at most max_bytes (headers included); journal files at most
 * journal_max_bytes; one record at most max_record_bytes. Going over is refused (-ENOSPC,
 * -EMSGSIZE), never dropped. Memory: a segment index (one entry per segment file) and one read
 * buffer no larger than the largest record read.
 *
 * Not thread-safe: a spool has one owner, the loop thread. With background_io the spool runs
 * one thread of its own for disk work nobody waits for (see sn_spool_config.background_io); it
 * touches only what the owner hands it.
 */
#ifndef SN_SIDECAR_SPOOL_H
#define SN_SIDECAR_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_SPOOL_DEFAULT_MAX_BYTES     ((int64_t)256 << 20)
#define SN_SPOOL_DEFAULT_SEGMENT_BYTES ((int64_t)4 << 20)
#define SN_SPOOL_DEFAULT_MAX_RECORD    ((int64_t)16 << 20)
#define SN_SPOOL_DEFAULT_JOURNAL_MAX   ((int64_t)64 << 20)

/* Bounds checked by sn_spool_open (and by the descriptors below). */
#define SN_SPOOL_MIN_BYTES         ((int64_t)2 << 20) /* max_bytes */
#define SN_SPOOL_MAX_BYTES         ((int64_t)1 << 40) /* max_bytes, journal_max_bytes */
#define SN_SPOOL_MIN_SEGMENT_BYTES ((int64_t)4 << 10) /* segment_bytes */
#define SN_SPOOL_MAX_SEGMENT_BYTES ((int64_t)1 << 30) /* segment_bytes */
#define SN_SPOOL_MIN_RECORD        ((int64_t)1 << 10) /* max_record_bytes */
#define SN_SPOOL_MAX_RECORD                                                                        \
    ((int64_t)256 << 20)                                 /* max_record_bytes; also the largest     \
                                                            record recovery accepts */
#define SN_SPOOL_MIN_JOURNAL_BYTES   ((int64_t)64 << 10) /* journal_max_bytes */
#define SN_SPOOL_RECORD_HEADER       32u /* bytes before each sealed record's payload */
#define SN_SPOOL_DETACHED_MAX        4u  /* generations sn_spool_journal_next leaves waiting */
#define SN_SPOOL_JOURNAL_HEADER      16u /* bytes before each journal record's payload */
#define SN_SPOOL_JOURNAL_FILE_HEADER 24u /* bytes at the start of each journal file */

typedef struct sn_spool sn_spool;

typedef enum sn_spool_fsync {
    SN_SPOOL_FSYNC_INTERVAL = 0, /* the owner calls sn_spool_sync() on a timer */
    SN_SPOOL_FSYNC_ALWAYS        /* every append, journal append, pop and reset is fsynced */
} sn_spool_fsync;

/* Sizes are int64_t and the mode an int so that config.h descriptors can bind them directly. */
typedef struct sn_spool_config {
    int64_t max_bytes;         /* sealed records, headers included; over it append: -ENOSPC */
    int64_t segment_bytes;     /* a segment is closed when the next record would pass this */
    int64_t max_record_bytes;  /* largest sealed or journal record; larger: -EMSGSIZE */
    int64_t journal_max_bytes; /* journal files of uncovered generations; over it: -ENOSPC */
    int fsync;                 /* sn_spool_fsync */
    /* Not a setting (the sidecar sets it): with fsync "interval", the spool starts a thread
     * of its own for the disk work nobody waits for -- ack file rewrites after sn_spool_pop,
     * deleting popped segments and covered journal files, and sn_spool_sync_start's syncs --
     * so that they never block the caller's loop. false (the default): all on the caller. */
    bool background_io;
} sn_spool_config;

/* Counters and gauges for metrics and tests, read with sn_spool_get_stats. */
typedef struct sn_spool_stats {
    uint64_t count;              /* sealed records not yet popped */
    uint64_t bytes;              /* their size, headers included (what max_bytes bounds) */
    uint64_t segments;           /* segment files */
    uint64_t journal_bytes;      /* journal files of generations not yet covered */
    uint64_t journal_records;    /* records in them */
    uint64_t journal_generation; /* current generation */
    uint64_t recovered_records;  /* sealed records found unacknowledged at open */
    uint64_t recovered_journal;  /* journal records of uncovered generations found at open */
    uint64_t discarded_journal;  /* journal files of covered generations dropped at open */
    uint64_t torn_tails;         /* files whose torn or corrupt tail was truncated */
    uint64_t truncated_bytes;    /* bytes removed by those truncations */
    uint64_t corrupt_segments;   /* segments whose rest was skipped after a bad record */
    uint64_t skipped_bytes;      /* bytes of segments skipped that way */
    uint64_t refused_full;       /* appends and journal appends refused with -ENOSPC */
    uint64_t ack_write_errors;   /* pops whose ack file could not be written */
    uint64_t fsyncs;             /* fsync/fdatasync calls made */
    uint64_t sync_failures;      /* of those, the ones that failed */
    uint64_t sync_retries;       /* retried syncs of full segments whose background sync failed */
    uint64_t unsynced_segments;  /* full segments not durable yet: their sync is being retried */
    uint64_t journal_recycled;   /* journal generations started in a reused (spare) file */
} sn_spool_stats;

/* Called by sn_spool_recover_journal for each recovered journal record, oldest first. data is
 * valid during the call only. Return 0 to go on; anything else stops the walk and is returned. */
typedef int (*sn_spool_journal_fn)(void *ud, const uint8_t *data, size_t len, uint64_t generation);

/* "interval", "always", NULL: names of sn_spool_fsync, for an enum setting. */
extern const char *const sn_spool_fsync_names[];

/* Fills cfg with the defaults above and fsync interval. Never fails. */
void sn_spool_config_defaults(sn_spool_config *cfg);

/* Opens the spool in dir, creating the directory (mode 0750, parent must exist) if needed,
 * taking its lock and recovering what is there (segments, ack cursor, journal files; see
 * docs/spool.md). cfg NULL means the defaults. Returns 0 and sets *out, or a negative errno with
 * one line in err: -EINVAL (bad setting), -ENOTDIR (dir is not a directory), -EACCES and other
 * open/create errors, -EBUSY (another process -- or another handle -- holds the spool),
 * -ENOMEM, -EIO. The caller frees the spool with sn_spool_close. */
int sn_spool_open(const char *dir, const sn_spool_config *cfg, sn_spool **out, char *err,
                  size_t errlen);

/* Syncs (as sn_spool_sync; a failure is logged), closes the files, releases the lock and frees
 * the spool. NULL is allowed. */
void sn_spool_close(sn_spool *s);

/* Appends one sealed record (copied; data stays the caller's) covering journal generations up
 * to journal_gen (0: none). Returns 0; -EMSGSIZE when len > max_record_bytes; -ENOSPC when the
 * spool would go over max_bytes (nothing written; accepted again once pops made room); -EINVAL
 * when journal_gen is above the current generation or data is NULL with len > 0; -EIO and other
 * write errors (nothing left in the spool). */
int sn_spool_append(sn_spool *s, const uint8_t *data, size_t len, uint64_t journal_gen);

/* The oldest record not yet popped: *data and *len point into a buffer the spool owns, valid until
 * the next pop, append, recover_journal or close; *id (may be NULL) is its record id. Returns 0;
 * -ENOENT when the spool is empty; -EIO when reading failed (try again later); -ENOMEM. A record
 * that fails its CRC here skips the rest of its segment (counted, logged) and the next record is
 * returned. */
int sn_spool_peek(sn_spool *s, const uint8_t **data, size_t *len, uint64_t *id);

/* Drops the oldest record (the one sn_spool_peek returns) after the aggregator acknowledged it,
 * records it in the ack file and deletes segments that no longer hold a record. Returns 0, or
 * -ENOENT when the spool is empty. A failure to write the ack file is logged and counted, not
 * returned: the record may then be sent again after a restart (the aggregator de-duplicates). */
int sn_spool_pop(sn_spool *s);

/* Notes that the record id (the head, from sn_spool_peek) is being sent in parts -- converted
 * to several requests, some of which the receiver may already have applied -- in the `split`
 * file, so that a restart sends the same parts again instead of the record whole (see
 * docs/spool.md). Written at once (fdatasync'ed in "always" mode; else it is as durable as the
 * journal). Returns 0, -EINVAL for id 0, or the file's write error (nothing noted). Loop only. */
int sn_spool_mark_split(sn_spool *s, uint64_t id);

/* The record id noted by sn_spool_mark_split (in this run or, read at open, an earlier one)
 * while that record is not popped yet; 0 otherwise. */
uint64_t sn_spool_split_mark(const sn_spool *s);

/* Size of the records not yet popped, headers included, and their number. */
uint64_t sn_spool_bytes(const sn_spool *s);
uint64_t sn_spool_count(const sn_spool *s);

/* Appends one record (copied) to the journal of the current generation with write(2) (and
 * fsync in "always" mode). Returns 0; -EMSGSIZE over max_record_bytes; -ENOSPC when the journal
 * would go over journal_max_bytes; -EINVAL for NULL data with len > 0; a write error (nothing
 * left in the journal), or the error of a journal reset that failed earlier and still fails. */
int sn_spool_journal_append(sn_spool *s, const uint8_t *data, size_t len);

/* The current journal generation (>= 1). */
uint64_t sn_spool_journal_generation(const sn_spool *s);

/* Starts generation + 1 with an empty journal while the current generation is still
 * uncovered -- its sealed record is being made elsewhere (the sidecar compresses batches off
 * its loop): journal appends go to the new generation at once, and the old file stays (synced
 * by sn_spool_sync, counted in journal_bytes, recovered after a crash) until sn_spool_append
 * covers it, which retires it. At most SN_SPOOL_DETACHED_MAX generations wait so. Returns 0;
 * -EBUSY when that many wait; -ENOSPC when the journal limit has no room for a new file; the
 * error of an earlier failed reset (redo it with sn_spool_journal_reset); a file error. On
 * error nothing changed. */
int sn_spool_journal_next(sn_spool *s);

/* Starts generation + 1 with an empty journal, after a sealed record covering the current
 * generation was appended. The journal files of covered generations are deleted once the
 * segments holding their sealed record are durable (at once in "always" mode, else at the next
 * sn_spool_sync). Returns 0; -EINVAL when the current generation holds records and no sealed
 * record covers it; a file error (the generation is unchanged, and journal appends retry the
 * reset and fail until it succeeds, so nothing is written to a covered generation). */
int sn_spool_journal_reset(sn_spool *s);

/* Hands the journal records found at open in generations no sealed record covers to fn, oldest
 * first. They stay in the journal (do not append them again) until a reset after a sealed
 * record covering them. Calling it again replays the same records; after that reset it calls fn
 * for nothing. Returns 0, fn's non-zero value, -EIO (a read failed), -ENOMEM. */
int sn_spool_recover_journal(sn_spool *s, sn_spool_journal_fn fn, void *ud);

/* fdatasyncs the segment and journal files written since the last sync and the directory when
 * files were created, renamed or removed, then deletes the journal files waiting for it. With
 * background_io it first waits for the background thread's queue, and returns with it empty.
 * Returns 0 or the first error (-EIO...; -EIO too while a full segment's retried sync has
 * not worked yet); what failed stays dirty for the next call. */
int sn_spool_sync(sn_spool *s);

/* The periodic sync without waiting for it: with background_io, queues for the spool's thread
 * a sync of everything written so far (duplicates of the dirty descriptors; the journal files
 * the synced segments cover are deleted after it), and returns. What was written before the
 * call is durable once the thread has run it; a failure there is logged, every open file is
 * rewritten (here, on the caller's thread) and synced again by the next sync, and the covered
 * journal files it would have deleted stay until the next start (they are discarded then). A
 * full segment whose background sync failed (its descriptor was handed over; the loop closed
 * its own) is rewritten and synced again by the thread 100 ms later, then with shared/backoff.h's
 * backoff up to every 30 s, until that works or its file is found deleted (popped); covered
 * journal files wait for that (sn_spool_sync retries it at once, and fails while it is not
 * durable). Without background_io (or when the copies cannot be made) it is sn_spool_sync.
 * Returns 0 or sn_spool_sync's error. */
int sn_spool_sync_start(sn_spool *s);

/* Fills out with the current counters. */
void sn_spool_get_stats(const sn_spool *s, sn_spool_stats *out);

/* CRC-32C (Castagnoli; initial and final value inverted, as in iSCSI and ext4) of buf[0..n),
 * continued from crc (0 to start): the checksum of version 2 journal records (docs/spool.md).
 * sn_spool_crc32c uses SSE4.2's crc32 instruction when the CPU has it (checked once at run
 * time), else the portable table version, which gives the same values. Any thread. */
uint32_t sn_spool_crc32c(uint32_t crc, const void *buf, size_t n);
uint32_t sn_spool_crc32c_portable(uint32_t crc, const void *buf, size_t n);

/* Whether the disk looks failing for good: the last 5 sync attempts in a row failed (background
 * syncs and retries of full segments, see docs/spool.md "Failed syncs"), or a full segment's
 * sync had to be given up. Cleared by a good sync once no segment waits for a retry. Any
 * thread (for /readyz). */
bool sn_spool_sync_failing(const sn_spool *s);

/* Tests only: hook is called instead of fdatasync(fd) (full false) and fsync(fd) (full true),
 * on whichever thread syncs, and returns 0 or a negative errno. NULL restores the real calls.
 * Set it while no other call on s runs. */
typedef int (*sn_spool_sync_hook)(int fd, bool full, void *ud);
void sn_spool_set_sync_hook(sn_spool *s, sn_spool_sync_hook hook, void *ud);

/* Descriptor initialisers (config.h) binding the spool settings under prefix P to an
 * sn_spool_config member F of the program's config struct T; expanding them needs config.h.
 * The defaults repeat sn_spool_config_defaults(); a unit test keeps them equal. */
#define SN_SPOOL_DESCRIPTORS(P, T, F)                                                              \
    SN_CFG_SIZE(P ".max_bytes", T, F.max_bytes, "256MiB", SN_SPOOL_MIN_BYTES, SN_SPOOL_MAX_BYTES,  \
                "disk space for sealed batches waiting for the aggregator; when full, new "        \
                "data is refused with a retryable status"),                                        \
        SN_CFG_SIZE(P ".segment_bytes", T, F.segment_bytes, "4MiB", SN_SPOOL_MIN_SEGMENT_BYTES,    \
                    SN_SPOOL_MAX_SEGMENT_BYTES, "size of one spool segment file"),                 \
        SN_CFG_SIZE(P ".max_record_bytes", T, F.max_record_bytes, "16MiB", SN_SPOOL_MIN_RECORD,    \
                    SN_SPOOL_MAX_RECORD, "largest sealed batch or journal record"),                \
        SN_CFG_SIZE(P ".journal_max_bytes", T, F.journal_max_bytes, "64MiB",                       \
                    SN_SPOOL_MIN_JOURNAL_BYTES, SN_SPOOL_MAX_BYTES,                                \
                    "disk space for the journal of the open batch"),                               \
        SN_CFG_ENUM(P ".fsync", T, F.fsync, "interval", sn_spool_fsync_names,                      \
                    "interval: fsync on the sync timer; always: fsync every write")

#endif
