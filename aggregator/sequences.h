/*
 * sequences.h -- the ingest de-duplication table: for each sidecar_id, the highest batch
 * sequence applied, so that a replayed batch is acknowledged without being applied again.
 *
 * Bounded: at most max_entries ids, all allocated at create (no allocation per batch). An id
 * not seen for idle_ns is forgotten; when the table is full the least recently seen id is
 * evicted (counted), which only matters if that sidecar later replays an old batch. Time is
 * passed in (nanoseconds on any clock the caller keeps using, e.g. CLOCK_REALTIME so that an
 * exported table still means something after a restart). Not thread-safe: one owner.
 */
#ifndef SN_SEQUENCES_H
#define SN_SEQUENCES_H

#include <stddef.h>
#include <stdint.h>

#define SN_SEQ_ID_MAX 128 /* longest sidecar_id in bytes, without the NUL */

typedef struct sn_seqtab sn_seqtab;

typedef struct sn_seqtab_stats {
    size_t entries;   /* ids held now */
    uint64_t expired; /* ids forgotten after idle_ns */
    uint64_t evicted; /* ids pushed out by a full table */
} sn_seqtab_stats;

/* Creates a table for max_entries ids (>= 1) forgotten after idle_ns (> 0). Returns 0 and sets
 * *out, -EINVAL for bad sizes, or -ENOMEM. Free with sn_seqtab_destroy. */
int sn_seqtab_create(size_t max_entries, int64_t idle_ns, sn_seqtab **out);

/* Frees the table. NULL is a no-op. */
void sn_seqtab_destroy(sn_seqtab *t);

/* The highest sequence applied for id (idlen bytes, 1..SN_SEQ_ID_MAX), or 0 when the id is
 * unknown (or was forgotten). Forgets idle ids first; does not refresh the id's idle time. */
uint64_t sn_seqtab_get(sn_seqtab *t, const char *id, size_t idlen, int64_t now_ns);

/* Records that sequence seq was applied for id at now_ns (the id's idle time restarts). The
 * stored sequence never goes down. Returns 0, or -EINVAL for an empty or over-long id. May
 * evict the least recently seen id when full. */
int sn_seqtab_put(sn_seqtab *t, const char *id, size_t idlen, uint64_t seq, int64_t now_ns);

/* Forgets every id idle since before now_ns - idle_ns. Returns how many. */
size_t sn_seqtab_expire(sn_seqtab *t, int64_t now_ns);

/* Calls cb for every id, most recently seen first, with its NUL-terminated id, sequence and
 * last-seen time, for a state store to persist. Stops at and returns the first non-zero cb
 * return; 0 when all were visited. The table must not be changed from cb. */
typedef int (*sn_seqtab_visit)(const char *id, uint64_t seq, int64_t last_seen_ns, void *ud);
int sn_seqtab_export(const sn_seqtab *t, sn_seqtab_visit cb, void *ud);

/* Restores one exported entry (as sn_seqtab_put at last_seen_ns, keeping the higher sequence
 * when the id is already known and the later time). Import oldest first to keep the recency
 * order when the table is smaller than the export. Returns 0 or -EINVAL. */
int sn_seqtab_import(sn_seqtab *t, const char *id, uint64_t seq, int64_t last_seen_ns);

/* Current size and counters. */
void sn_seqtab_stats_get(const sn_seqtab *t, sn_seqtab_stats *out);

#endif
