/*
 * baseline.h -- the baseline table: statistics per (service, model, metric).
 *
 * Each entry holds, for one key:
 *   - a rolling window of recent samples, either
 *       EXACT:   an sn_window of `window` samples (exact order statistics, 16 bytes per sample), or
 *       COMPACT: two sn_sketch-es used in rotation -- samples go into the current one, and every
 *                window/2 samples the older one is emptied and becomes current -- so the summary
 *                covers between window/2 and window of the latest samples, approximately (see
 *                sketch.h), in well under 2 KiB per key;
 *   - Welford moments and an EWMA over every sample ever seen (not only the window);
 *   - the count of samples ever seen and the last time one was observed.
 *
 * The table has a MEMORY BUDGET in bytes covering its index and all entries. Creating a key that
 * would go over it first evicts the least-recently-updated keys (an update is creation or
 * observe), which are counted. sn_baseline_expire() removes keys idle for longer than a given
 * time, also counted. Time is always passed in by the caller (nanoseconds, any epoch): the table
 * never reads a clock, does no I/O and allocates only when a key is created.
 *
 * Keys: service must be non-empty; model may be empty (meaning "unknown model"); both must be
 * shorter than SN_NAME_MAX bytes (event.h). Otherwise the call fails with -EINVAL (NULL, empty
 * service, bad metric) or -ENAMETOOLONG.
 *
 * Entry pointers stay valid until the entry is removed: by sn_baseline_get() creating another key
 * (eviction), sn_baseline_expire(), sn_baseline_remove() or sn_baseline_destroy(). Hold them only
 * for the duration of one piece of work. Not thread-safe: the table has one owner (the loop).
 */
#ifndef SN_BASELINE_H
#define SN_BASELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "sketch.h"
#include "stats.h"

typedef struct sn_baseline sn_baseline;
typedef struct sn_baseline_entry sn_baseline_entry;

typedef enum sn_baseline_mode {
    SN_BASELINE_EXACT = 0, /* sn_window per key */
    SN_BASELINE_COMPACT    /* two rotating sn_sketch-es per key */
} sn_baseline_mode;

#define SN_BASELINE_DEFAULT_WINDOW         1000u /* contracts.md: rolling baseline window */
#define SN_BASELINE_DEFAULT_SKETCH_ALPHA   0.02
#define SN_BASELINE_DEFAULT_SKETCH_BUCKETS 160u
#define SN_BASELINE_DEFAULT_EWMA_ALPHA     0.05
#define SN_BASELINE_DEFAULT_BUDGET         ((size_t)256 << 20)
#define SN_BASELINE_USER_MAX               4096u /* largest user_bytes */

typedef struct sn_baseline_config {
    sn_baseline_mode mode;
    uint32_t window;         /* samples in the rolling window; >= 1 (exact) or >= 2 (compact) */
    double sketch_alpha;     /* compact: relative accuracy of the sketches */
    uint32_t sketch_buckets; /* compact: bucket cap of each of the two sketches */
    double ewma_alpha;       /* weight of the newest sample in the EWMA, (0, 1] */
    size_t memory_budget;    /* bytes for the index and all entries */
    uint64_t hash_seed;      /* mixed into the key hash; pass a random value so that
                                crafted names cannot force hash collisions */
    size_t user_bytes;       /* a caller's area of this many bytes in every entry (per-key
                                detector state), zeroed when the entry is created and freed
                                with it; counted in the budget; 0..SN_BASELINE_USER_MAX */
    /* Optional: called with each entry the table drops by itself -- evicted for the budget or
     * expired -- just before it is freed (not for sn_baseline_remove or destroy), so the owner
     * can forget copies of it (e.g. delete its snapshot). It must not call into the table. */
    void (*on_drop)(const sn_baseline_entry *e, void *ud);
    void *on_drop_ud;
} sn_baseline_config;

/* Counters for /metrics and the API. */
typedef struct sn_baseline_stats {
    uint64_t keys;      /* entries now */
    size_t bytes_used;  /* accounted bytes now: index + entries (see docs/statistics.md) */
    size_t budget;      /* the memory budget */
    size_t index_bytes; /* the fixed part: hash index and scratch space */
    uint64_t evicted;   /* keys evicted to stay within the budget, ever */
    uint64_t expired;   /* keys removed by sn_baseline_expire, ever */
} sn_baseline_stats;

/* Fills cfg with the defaults: exact mode, window 1000, sketch alpha 0.02 with 160 buckets,
 * EWMA alpha 0.05, budget 256 MiB, seed 0, no user area. */
void sn_baseline_config_init(sn_baseline_config *cfg);

/* Creates an empty table and stores it in *out; the caller frees it with sn_baseline_destroy.
 * cfg is copied. Returns 0; -EINVAL for a bad field (window 0 or above SN_WINDOW_MAX_CAPACITY,
 * a bad alpha or bucket count, user_bytes above SN_BASELINE_USER_MAX, or a budget too small for
 * the index plus one entry); -ENOMEM when allocation fails. *out is untouched on failure. */
int sn_baseline_create(sn_baseline **out, const sn_baseline_config *cfg);

/* Frees the table and every entry. NULL is a no-op. */
void sn_baseline_destroy(sn_baseline *b);

/* Finds the entry for (service, model, metric), creating an empty one (last seen = now) when
 * there is none, and stores it in *out. Creating may evict least-recently-updated entries to stay
 * within the budget, which invalidates pointers to them. Returns 0; -EINVAL or -ENAMETOOLONG for
 * a bad key (see above); -ENOMEM when allocation fails. The table owns the entry. */
int sn_baseline_get(sn_baseline *b, const char *service, const char *model, sn_metric metric,
                    int64_t now, sn_baseline_entry **out);

/* The entry for the key, or NULL when there is none or the key is invalid. Does not count as an
 * update (the LRU order is unchanged). */
sn_baseline_entry *sn_baseline_find(const sn_baseline *b, const char *service, const char *model,
                                    sn_metric metric);

/* Adds sample x at time `now` to the entry's window, Welford, EWMA and count, sets last seen
 * (never moving it backwards) and marks the entry most recently updated. Returns 0, or -EINVAL
 * (nothing changed) when !sn_stats_sample_ok(x) (NaN, +-Inf, |x| > SN_STATS_MAX_ABS). Never
 * allocates. */
int sn_baseline_observe(sn_baseline *b, sn_baseline_entry *e, double x, int64_t now);

/* Marks the entry updated at `now` without a sample: last seen moves forward (never back) and
 * the entry becomes the most recently updated -- what sn_baseline_observe does for the LRU order
 * and expiry -- while its window, Welford moments, EWMA and seen count stay as they are. For an
 * owner that keeps a key's statistics in the entry's user area and never reads the table's.
 * Never fails, never allocates. */
void sn_baseline_touch(sn_baseline *b, sn_baseline_entry *e, int64_t now);

/* Fills *out from the entry's rolling window: exact in EXACT mode; in COMPACT mode n, mean,
 * stddev, min and max are exact over the sketches' samples and the quantiles and MAD are sketch
 * estimates. Uses scratch space inside the table (so it takes the table), never allocates, and
 * does not change the entry. An entry with no samples gives n = 0 and NAN fields. */
void sn_baseline_summary(sn_baseline *b, const sn_baseline_entry *e, sn_summary *out);

/* sn_baseline_summary; with with_mad false, COMPACT mode leaves mad NAN and skips its bucket
 * walk (EXACT mode computes it anyway: it is O(log n) there). Every other field is the same. */
void sn_baseline_summary_mad(sn_baseline *b, const sn_baseline_entry *e, sn_summary *out,
                             bool with_mad);

/* Removes one entry (not counted as evicted or expired). e is invalid afterwards. */
void sn_baseline_remove(sn_baseline *b, sn_baseline_entry *e);

/* Removes every entry whose last seen time is more than idle_ns before now, and returns how
 * many (also added to the expired counter). A negative idle_ns removes nothing. O(keys). */
uint64_t sn_baseline_expire(sn_baseline *b, int64_t now, int64_t idle_ns);

/* Calls fn(entry, arg) for every entry, least recently updated first, and stops at the first
 * non-zero return, which it returns (0 when all were visited). fn must not add or remove entries;
 * it may call sn_baseline_summary. */
typedef int (*sn_baseline_visit_fn)(const sn_baseline_entry *e, void *arg);
int sn_baseline_foreach(const sn_baseline *b, sn_baseline_visit_fn fn, void *arg);

/* Fills *out with the table's counters. */
void sn_baseline_get_stats(const sn_baseline *b, sn_baseline_stats *out);

/* Accessors of an entry. The strings are owned by the entry and live as long as it does. */
const char *sn_baseline_entry_service(const sn_baseline_entry *e);
const char *sn_baseline_entry_model(const sn_baseline_entry *e);
sn_metric sn_baseline_entry_metric(const sn_baseline_entry *e);
uint64_t sn_baseline_entry_seen(const sn_baseline_entry *e);             /* samples ever observed */
int64_t sn_baseline_entry_last_seen(const sn_baseline_entry *e);         /* ns, as passed in */
const sn_welford *sn_baseline_entry_welford(const sn_baseline_entry *e); /* all samples */
const sn_ewma *sn_baseline_entry_ewma(const sn_baseline_entry *e);
size_t sn_baseline_entry_bytes(const sn_baseline_entry *e); /* accounted bytes of this entry */

/* The entry's user area (cfg.user_bytes bytes, 8-byte aligned, zeroed at creation), or NULL
 * when user_bytes is 0. The caller keeps per-key state there (detector sums, counters); it lives
 * and dies with the entry -- eviction and expiry drop it without telling the caller. */
void *sn_baseline_entry_user(sn_baseline_entry *e);

/* A hint, no effect on any state: asks the CPU to start loading the memory that
 * sn_baseline_observe, a summary and the caller's user area will touch first -- the entry's
 * header, names and user area, and (COMPACT) the current sketch's header. For a caller about to
 * use several entries whose memory is likely cold (a table far larger than the caches): their
 * misses then overlap instead of coming one after the other. */
void sn_baseline_entry_prefetch(const sn_baseline *b, const sn_baseline_entry *e);

/* Merges the entry's rolling window (COMPACT: both sketches) into the caller's sketch acc, for
 * building a merged view of one key across several tables (replicas). The entry is unchanged.
 * Returns 0; -EPROTO in EXACT mode (windows of samples are not merged); -EINVAL when acc's
 * alpha differs from the table's; -EOVERFLOW when acc would exceed SN_SKETCH_MAX_COUNT (acc is
 * then unchanged or holds the older half only). */
int sn_baseline_entry_merge_window(const sn_baseline *b, const sn_baseline_entry *e,
                                   sn_sketch *acc);

/* ---- persistence (snapshots that survive a restart) ------------------------------------------
 *
 * One entry serialises to a self-contained, little-endian, versioned, CRC-32 protected blob:
 *
 *   magic "SNB1" u32 | version u16 | mode u8 | metric u8 | service length u16 | model length u16
 *   | flags u8 (bit 0: current sketch) | 3 zero bytes | seen u64 | last_seen i64
 *   | Welford: n u64, mean, m2, min, max (f64) | EWMA: alpha, mean, var (f64), n u64
 *   | user length u32 | service bytes | model bytes | user bytes
 *   | EXACT: sample count u32, samples f64 oldest first
 *     COMPACT: length u32 + sn_sketch blob, twice (sketch 0, sketch 1)
 *   | CRC-32 of everything before it, u32.
 *
 * The size is bounded by sn_baseline_serialized_max() of the table (EXACT: 8 bytes per window
 * sample; COMPACT: two sketch blobs). The user area is copied as bytes: its owner (the engine)
 * validates its own contents after a restore. */

#define SN_BASELINE_BLOB_VERSION 1u

/* The largest blob any entry of this table serialises to (for sizing one reusable buffer). */
size_t sn_baseline_serialized_max(const sn_baseline *b);

/* The exact size sn_baseline_entry_serialize writes for e. */
size_t sn_baseline_entry_serialized_size(const sn_baseline *b, const sn_baseline_entry *e);

/* Writes e into buf[0..cap) and stores the length in *len. Returns 0, or -ENOSPC when cap is
 * below sn_baseline_entry_serialized_size (buf may then be partly written). Never allocates and
 * does not change the entry or its LRU position. */
int sn_baseline_entry_serialize(const sn_baseline *b, const sn_baseline_entry *e, void *buf,
                                size_t cap, size_t *len);

/* Recreates an entry from a blob of sn_baseline_entry_serialize (the whole of blob[0..len)) and
 * stores it in *out (may be NULL). The entry gets the blob's samples, moments, counts, last seen
 * time and user area, and becomes the most recently updated entry (restore in last-seen order
 * to keep the eviction order); `now` is only the creation time of the key while it is filled.
 * EXACT: when the blob holds more samples than this table's window, the newest are kept.
 * Every field is validated before anything changes; never reads outside blob[0..len).
 * Returns 0; -EBADMSG for a truncated, extended or corrupt blob (magic, checksum, lengths,
 * names, non-finite or out-of-range statistics, counts that do not add up); -EPROTO for a valid
 * blob this table cannot hold (another version, mode, sketch alpha, user area size, or a sketch
 * larger than the window); -EEXIST when the key already has an entry (left as it is); -EINVAL
 * or -ENAMETOOLONG for a bad key; -ENOMEM when allocation fails. The table is unchanged on
 * failure, except that creating the entry may have evicted others (as sn_baseline_get does). */
int sn_baseline_restore(sn_baseline *b, const void *blob, size_t len, int64_t now,
                        sn_baseline_entry **out);

/* sn_baseline_restore_ex flag: a blob whose user area has another size than this table's (its
 * owner changed the area's format) still restores the statistics -- samples or sketches,
 * moments, counts, times -- and leaves the entry's user area zeroed, as a new entry's, for the
 * owner to start afresh. */
#define SN_BASELINE_RESTORE_STATS_ONLY 0x1u

/* sn_baseline_restore with flags (SN_BASELINE_RESTORE_STATS_ONLY or 0). Returns what
 * sn_baseline_restore returns, and 1 (success) when the user area was not restored because of
 * SN_BASELINE_RESTORE_STATS_ONLY. */
int sn_baseline_restore_ex(sn_baseline *b, const void *blob, size_t len, int64_t now,
                           unsigned flags, sn_baseline_entry **out);

#endif
