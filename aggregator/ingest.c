/*
 * ingest.c -- sentinel.v1.Aggregator/Ingest on the generic unary gRPC server (see ingest.h and
 * docs/aggregator.md).
 *
 * Everything below the public API runs on the unary server's single handler thread, so the
 * decoding buffers, the zstd context and the event arrays belong to that thread. The one piece
 * of state shared with other threads is the de-duplication table (export/import from the state
 * store), guarded by `seq_mu`; the counters are atomics.
 */
#include "ingest.h"

#include "bytes.h"
#include "grpc_unary.h"
#include "log.h"
#include "sentinel/v1/sentinel.pb-c.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>
#include <zstd_errors.h>

#define SN_INGEST_ARRAY_KEEP                                                                       \
    (1024u * 1024u)                        /* event/alert arrays above this are freed after use    \
                                            */
#define SN_INGEST_PB_SLACK (1024u * 1024u) /* decoder budget beyond the per-item allowance */

static const char *const ingest_methods[1] = {SN_INGEST_METHOD};

#define PB_ARENA_BLOCK (64u * 1024u)        /* the arena's first block */
#define PB_ARENA_KEEP  (4u * 1024u * 1024u) /* a larger block is freed after the request */
#define PB_ALIGN       sizeof(max_align_t)

/* protobuf-c's allocator: a bump arena with a byte budget, reset after each request, so that
 * decoding a batch costs no malloc per field and a hostile batch fails instead of growing
 * without bound. Blocks grow (each at least twice the last); the reset keeps the newest (the
 * largest) unless it is over PB_ARENA_KEEP. Frees are no-ops: everything goes at the reset. */
typedef struct pb_block {
    struct pb_block *next; /* older blocks */
    size_t size, used;
    max_align_t data[];
} pb_block;

typedef struct pb_arena {
    size_t used;  /* bytes handed out since the last reset (what the budget counts) */
    size_t limit; /* the budget */
    bool exceeded;
    pb_block *head; /* the block being filled; NULL before the first allocation */
} pb_arena;

/* What decoding keeps from one request to the next (one owner thread): the limits, the zstd
 * context, the event/alert arrays, and the last decoded batch (sn_ingest_decoder_decode). */
struct sn_ingest_decoder {
    size_t max_message; /* request and decompressed payload */
    size_t max_events, max_alerts;
    pb_arena arena; /* protobuf-c's memory, budget decode_budget() */
    ZSTD_DCtx *dctx;
    uint8_t *plain; /* the decompressed payload */
    size_t plain_cap;
    sn_event *events;
    size_t events_cap;
    sn_local_alert *alerts;
    size_t alerts_cap;
    sn_aggregate *aggs;
    size_t aggs_cap;
    char sidecar_id[SN_SEQ_ID_MAX + 1];
    sn_ingest_batch batch;
};

struct sn_ingest {
    sn_ingest_config cfg;
    char *listen;
    sn_grpc_unary *server;

    /* handler thread only */
    sn_ingest_decoder dec;
    time_t last_warn;

    pthread_mutex_t seq_mu;
    sn_seqtab *seq;

    _Atomic uint64_t st_batches;
    _Atomic uint64_t st_events;
    _Atomic uint64_t st_alerts;
    _Atomic uint64_t st_duplicates;
    _Atomic uint64_t st_alerts_ahead;
    _Atomic uint64_t st_refused[SN_INGEST_REFUSED_COUNT];
    _Atomic uint64_t st_bytes_in;
    _Atomic uint64_t st_bytes_out;
};

/* ---- bounded protobuf-c allocator ------------------------------------------------------ */

/* Allocates from the arena; NULL (and `exceeded`) once the budget would be passed, NULL when
 * malloc fails. */
static void *pb_alloc(void *ud, size_t size)
{
    pb_arena *a = ud;
    size_t need = (size + PB_ALIGN - 1) & ~(PB_ALIGN - 1);
    if (need < size || need > a->limit - a->used) {
        a->exceeded = true;
        return NULL;
    }
    pb_block *b = a->head;
    if (b == NULL || b->size - b->used < need) {
        size_t bsize = b == NULL ? PB_ARENA_BLOCK : 2 * b->size;
        if (bsize < need)
            bsize = need;
        pb_block *nb = malloc(sizeof *nb + bsize);
        if (nb == NULL)
            return NULL;
        nb->next = b;
        nb->size = bsize;
        nb->used = 0;
        a->head = b = nb;
    }
    void *p = (char *)b->data + b->used;
    b->used += need;
    a->used += need;
    return p;
}

/* Arena memory is given back by pb_reset, not one block at a time. */
static void pb_free(void *ud, void *p)
{
    (void)ud;
    (void)p;
}

/* Forgets everything allocated: keeps the newest block (unless it is over PB_ARENA_KEEP, or
 * keep is false) and frees the older ones. */
static void pb_reset(pb_arena *a, bool keep)
{
    pb_block *b = a->head;
    if (b != NULL && (!keep || b->size > PB_ARENA_KEEP)) {
        a->head = NULL;
    } else if (b != NULL) {
        b->used = 0;
        b = b->next;
        a->head->next = NULL;
    }
    while (b != NULL) {
        pb_block *next = b->next;
        free(b);
        b = next;
    }
    a->used = 0;
    a->exceeded = false;
}

/* ---- answers ------------------------------------------------------------------------------ */

/* Monotonic-enough wall-clock time in ns (the de-duplication table keeps wall time so that an
 * exported table means something after a restart). */
static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Refuses the request with gRPC status `code` and a formatted message, counts it under
 * `reason`, and logs it (at most one warning per second; the rest at debug level). */
__attribute__((format(printf, 5, 6))) static void refuse(sn_ingest *in, sn_grpc_reply *reply,
                                                         sn_ingest_refusal reason,
                                                         sn_grpc_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reply->message, sizeof reply->message, fmt, ap);
    va_end(ap);
    reply->code = code;
    atomic_fetch_add(&in->st_refused[reason], 1);
    time_t now = time(NULL);
    if (now != in->last_warn) {
        in->last_warn = now;
        sn_log_warn("ingest request refused", SN_LOG_STR("reason", reply->message),
                    SN_LOG_INT("grpc_status", code));
    } else {
        sn_log_debug("ingest request refused", SN_LOG_STR("reason", reply->message),
                     SN_LOG_INT("grpc_status", code));
    }
}

/* Answers gRPC OK with IngestResponse{status, acknowledged_sequence, retry_after_ms, message}. */
static void respond(sn_grpc_reply *reply, Sentinel__V1__IngestStatus status, uint64_t ack,
                    uint32_t retry_ms, const char *msg)
{
    Sentinel__V1__IngestResponse resp = SENTINEL__V1__INGEST_RESPONSE__INIT;
    resp.status = status;
    resp.acknowledged_sequence = ack;
    resp.retry_after_ms = retry_ms;
    resp.message = (char *)msg;
    resp.features = SENTINEL__V1__FEATURE__FEATURE_GROUPS; /* Batch.groups is read */
    size_t n = sentinel__v1__ingest_response__get_packed_size(&resp);
    if (n > reply->response_cap) { /* cannot happen: the message is short */
        reply->code = SN_GRPC_INTERNAL;
        snprintf(reply->message, sizeof reply->message, "response too large");
        return;
    }
    reply->code = SN_GRPC_OK;
    reply->response_len = sentinel__v1__ingest_response__pack(&resp, reply->response);
}

/* ---- payload -------------------------------------------------------------------------------- */

/* Decompresses one zstd frame of exactly `declared` bytes into *buf (capacity *cap; grown to
 * declared + 1 when smaller; the caller keeps and frees it), with *dctx (created on first use,
 * kept by the caller). The declared size is within the limit (checked by the caller), and the
 * window within max_message; the frame's own content size, when present, must equal it, and
 * streamed output stops one byte past it, so no more than declared + 1 bytes are ever needed.
 * Returns 0, or -EINVAL (corrupt, sizes differ) with a reason in why, or -ENOMEM. */
static int unzstd_payload(ZSTD_DCtx **dctx, size_t max_message, const uint8_t *src, size_t srclen,
                          size_t declared, uint8_t **buf, size_t *cap, const char **why)
{
    unsigned long long content = ZSTD_getFrameContentSize(src, srclen);
    if (content == ZSTD_CONTENTSIZE_ERROR) {
        *why = "payload is not a zstd frame";
        return -EINVAL;
    }
    if (content != ZSTD_CONTENTSIZE_UNKNOWN && content != declared) {
        *why = "zstd frame content size differs from uncompressed_size";
        return -EINVAL;
    }
    size_t frame = ZSTD_findFrameCompressedSize(src, srclen);
    if (ZSTD_isError(frame)) {
        *why = "corrupt or truncated zstd frame";
        return -EINVAL;
    }
    if (frame != srclen) {
        *why = "data after the zstd frame";
        return -EINVAL;
    }
    if (*dctx == NULL) {
        *dctx = ZSTD_createDCtx();
        if (*dctx == NULL)
            return -ENOMEM;
    }
    ZSTD_DCtx_reset(*dctx, ZSTD_reset_session_and_parameters);
    /* The decoder's window is bounded by the message limit (not by `declared`: a sidecar that
     * streams without a pledged size gets the level's default window even for small data). */
    int wlog = 10;
    while (wlog < 27 && ((size_t)1 << wlog) < max_message)
        wlog++;
    ZSTD_DCtx_setParameter(*dctx, ZSTD_d_windowLogMax, wlog);

    if (*cap < declared + 1) {
        free(*buf);
        *cap = 0;
        *buf = malloc(declared + 1);
        if (*buf == NULL)
            return -ENOMEM;
        *cap = declared + 1;
    }
    ZSTD_inBuffer zin = {src, srclen, 0};
    ZSTD_outBuffer zout = {*buf, declared + 1, 0};
    size_t zrc;
    do {
        size_t before_in = zin.pos, before_out = zout.pos;
        zrc = ZSTD_decompressStream(*dctx, &zout, &zin);
        if (ZSTD_isError(zrc)) {
            *why = ZSTD_getErrorCode(zrc) == ZSTD_error_frameParameter_windowTooLarge
                       ? "zstd window larger than the message limit"
                       : "corrupt zstd frame";
            return -EINVAL;
        }
        if (zout.pos > declared) {
            *why = "zstd frame larger than uncompressed_size";
            return -EINVAL;
        }
        if (zrc != 0 && zin.pos == before_in && zout.pos == before_out) {
            *why = "truncated zstd frame";
            return -EINVAL;
        }
    } while (zrc != 0);
    if (zout.pos != declared) {
        *why = "zstd frame smaller than uncompressed_size";
        return -EINVAL;
    }
    return 0;
}

/* ---- Batch -> sn_event / sn_local_alert --------------------------------------------------- */

/* Makes room for n items of `size` bytes in *arr (capacity *cap). Returns 0 or -ENOMEM. */
static int reserve(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n <= *cap)
        return 0;
    void *p = realloc(*arr, n * size);
    if (p == NULL)
        return -ENOMEM;
    *arr = p;
    *cap = n;
    return 0;
}

/* Frees an array that grew past SN_INGEST_ARRAY_KEEP, so one huge batch does not pin memory. */
static void trim(void **arr, size_t *cap, size_t size)
{
    if (*cap * size > SN_INGEST_ARRAY_KEEP) {
        free(*arr);
        *arr = NULL;
        *cap = 0;
    }
}

/* Copies a protobuf-c string into a fixed field, truncated at a UTF-8 boundary. */
static void copy_str(char *dst, size_t size, const char *src)
{
    sn_copy_truncated(dst, size, src, strlen(src));
}

/* Copies a 0- or n-byte protobuf-c id. Returns false for any other length. */
static bool copy_pb_id(uint8_t *dst, size_t n, const ProtobufCBinaryData *src)
{
    if (src->len == 0)
        return true;
    if (src->len != n)
        return false;
    memcpy(dst, src->data, n);
    return true;
}

/* ---- reading the Batch by hand ---------------------------------------------------------------
 *
 * The Batch and its LlmEvents are read straight from the payload into sn_event (protobuf-c's
 * unpack would allocate every message and string first, and was the larger part of decoding).
 * The rules are protobuf-c's, so that a payload is refused exactly when protobuf-c would refuse
 * it: a varint of at most 10 bytes; a tag or length prefix of at most 5 bytes; a tag whose
 * first byte is below 8 refused (a longer encoding of field 0 is an unknown field there); a
 * known field only with its own wire type (except a bool, read from any); groups and wire types 6
 * and 7 refused; a length within what is left; unknown fields skipped; the last value of a field
 * wins; a string ends at its first NUL byte (protobuf-c's strings are C strings).
 * tests/unit/aggregator/ test_ingest_decode.c checks this against protobuf-c on mutated payloads.
 */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* Strings are read a machine word at a time on little-endian hosts. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SN_INGEST_LITTLE_ENDIAN 1
#else
#define SN_INGEST_LITTLE_ENDIAN 0
#endif

typedef struct pbr {
    const uint8_t *p, *end;
} pbr;

/* A varint of more than one byte (or none left), at most max_bytes bytes. Returns false when
 * malformed. */
static bool pbr_varint_long(pbr *r, uint64_t *out, int max_bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < max_bytes && r->p < r->end; i++) {
        uint8_t b = *r->p++;
        if (i < 10)
            v |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* A varint of at most max_bytes bytes. Returns false when malformed. One byte (most lengths,
 * enums and small counts) is read inline. */
static inline bool pbr_varint(pbr *r, uint64_t *out, int max_bytes)
{
    if (r->p < r->end && *r->p < 0x80) {
        *out = *r->p++;
        return true;
    }
    if (max_bytes >= 2 && r->end - r->p >= 2 && r->p[1] < 0x80) { /* token counts, most often */
        *out = (uint64_t)(r->p[0] & 0x7f) | (uint64_t)r->p[1] << 7;
        r->p += 2;
        return true;
    }
    return pbr_varint_long(r, out, max_bytes);
}

static inline bool pbr_fixed64(pbr *r, uint64_t *out)
{
    if (r->end - r->p < 8)
        return false;
    *out = sn_le_get_u64(r->p);
    r->p += 8;
    return true;
}

/* A length-delimited field's bytes. */
static inline bool pbr_len(pbr *r, const uint8_t **data, size_t *len)
{
    uint64_t n;
    if (!pbr_varint(r, &n, 5) || n > (uint64_t)(r->end - r->p))
        return false;
    *data = r->p;
    *len = (size_t)n;
    r->p += n;
    return true;
}

/* The next tag: field number and wire type. Tags of one and two bytes (fields up to 2047) are
 * read inline. */
static inline bool pbr_tag(pbr *r, uint32_t *field, int *wt)
{
    uint64_t t;
    if (r->p < r->end && *r->p < 0x80) {
        /* protobuf-c refuses a tag whose first byte holds no field bits and no continuation */
        if (*r->p < 8)
            return false;
        t = *r->p++;
    } else if (r->end - r->p >= 2 && r->p[1] < 0x80) {
        t = (uint64_t)(r->p[0] & 0x7f) | (uint64_t)r->p[1] << 7;
        r->p += 2;
    } else if (!pbr_varint_long(r, &t, 5)) {
        return false;
    }
    *field = (uint32_t)(t >> 3);
    *wt = (int)(t & 7);
    return true;
}

/* Skips a field of wire type wt (not a known one). */
static bool pbr_skip(pbr *r, int wt)
{
    uint64_t v;
    const uint8_t *d;
    size_t n;
    switch (wt) {
    case WT_VARINT:
        return pbr_varint(r, &v, 10);
    case WT_I64:
        return pbr_fixed64(r, &v);
    case WT_LEN:
        return pbr_len(r, &d, &n);
    case WT_I32:
        if (r->end - r->p < 4)
            return false;
        r->p += 4;
        return true;
    default:
        return false; /* groups, 6, 7 */
    }
}

/* Copies a string field into a fixed one: up to its first NUL, truncated at a UTF-8 boundary. */
static void copy_field(char *dst, size_t size, const uint8_t *src, size_t len)
{
    const char *s = (const char *)src;
    const char *nul = memchr(s, '\0', len);
    sn_copy_truncated(dst, size, s, nul != NULL ? (size_t)(nul - s) : len);
}

/* A 0- or n-byte id. Returns false for any other length. */
static bool copy_id(uint8_t *dst, size_t n, const uint8_t *src, size_t len)
{
    if (len == 0)
        return true;
    if (len != n)
        return false;
    memcpy(dst, src, n);
    return true;
}

static double as_double(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* The high bit of each zero byte of w; the lowest one set marks the first zero byte. */
static inline uint64_t zero_bytes(uint64_t w)
{
    return (w - UINT64_C(0x0101010101010101)) & ~w & UINT64_C(0x8080808080808080);
}

/* The low k bytes of a word, k = 0..8. */
static const uint64_t low_bytes[9] = {
    0,
    UINT64_C(0xff),
    UINT64_C(0xffff),
    UINT64_C(0xffffff),
    UINT64_C(0xffffffff),
    UINT64_C(0xffffffffff),
    UINT64_C(0xffffffffffff),
    UINT64_C(0xffffffffffffff),
    UINT64_MAX,
};

/* copy_field for a string that fits, a word at a time, into a field that is all zero (as
 * sn_event_init leaves it): the same bytes as copy_field, with no call and no second pass for
 * the NUL. size must be a multiple of 8, at least 16, and src[0..len+16) readable (the loads may
 * pass the string, never the buffer). Returns false, having written nothing, when len >= size
 * (the string may need truncating) or when a string of up to 16 bytes holds a NUL: copy_field's
 * job then. */
static inline bool copy_field_words(char *dst, size_t size, const uint8_t *src, size_t len)
{
    if (len <= 16) { /* most names: two words, no loop */
        uint64_t w0, w1;
        memcpy(&w0, src, 8);
        memcpy(&w1, src + 8, 8);
        uint64_t k0 = low_bytes[len < 8 ? len : 8], k1 = low_bytes[len > 8 ? len - 8 : 0];
        if (((zero_bytes(w0) & k0) | (zero_bytes(w1) & k1)) != 0)
            return false;
        w0 &= k0;
        w1 &= k1;
        memcpy(dst, &w0, 8);
        memcpy(dst + 8, &w1, 8);
        return true;
    }
    if (len >= size)
        return false;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        uint64_t z = zero_bytes(w);
        if (len - i < 8) { /* the last, partial word: only its first len - i bytes count */
            w &= low_bytes[len - i];
            z &= low_bytes[len - i];
        }
        if (z != 0) /* a NUL: the string ends there (protobuf-c's strings are C strings) */
            w &= low_bytes[(unsigned)__builtin_ctzll(z) / 8];
        memcpy(dst + i, &w, 8); /* i + 8 <= size: i < len < size, both multiples of 8 */
        if (z != 0)
            break;
    }
    return true;
}

/* Where each of the LlmEvent's string fields 1..10 goes in sn_event, and its size. */
typedef struct event_str {
    uint16_t off, size;
} event_str;

static const event_str event_strs[11] = {
    [1] = {offsetof(sn_event, service), SN_NAME_MAX},
    [2] = {offsetof(sn_event, model), SN_NAME_MAX},
    [3] = {offsetof(sn_event, provider), SN_SHORT_MAX},
    [4] = {offsetof(sn_event, operation), SN_SHORT_MAX},
    [5] = {offsetof(sn_event, region), SN_SHORT_MAX},
    [6] = {offsetof(sn_event, service_version), SN_SHORT_MAX},
    [7] = {offsetof(sn_event, pod), SN_SHORT_MAX},
    [8] = {offsetof(sn_event, user), SN_SHORT_MAX},
    [9] = {offsetof(sn_event, error_type), SN_SHORT_MAX},
    [10] = {offsetof(sn_event, finish_reason), SN_SHORT_MAX},
};

_Static_assert(SN_NAME_MAX % 8 == 0 && SN_SHORT_MAX % 8 == 0 && SN_SHORT_MAX > 16 &&
                   SN_NAME_MAX > 16,
               "copy_field_words writes whole words inside the field");

/* Where the LlmEvent's count fields 17..22 go in sn_event. */
static const uint16_t event_counts[6] = {
    offsetof(sn_event, input_tokens),       offsetof(sn_event, output_tokens),
    offsetof(sn_event, total_tokens),       offsetof(sn_event, cache_read_tokens),
    offsetof(sn_event, cache_write_tokens), offsetof(sn_event, reasoning_tokens),
};

/* The resource string fields of an LlmEvent (service 1, region 5, service_version 6, pod 7),
 * as bits of read_event's `seen`: an event inside a group must not set them. */
#define RESOURCE_FIELDS ((1u << 1) | (1u << 5) | (1u << 6) | (1u << 7))

/* Where each of an EventGroup's strings 1..4 goes in sn_event. */
static const event_str group_strs[5] = {
    [1] = {offsetof(sn_event, service), SN_NAME_MAX},
    [2] = {offsetof(sn_event, region), SN_SHORT_MAX},
    [3] = {offsetof(sn_event, service_version), SN_SHORT_MAX},
    [4] = {offsetof(sn_event, pod), SN_SHORT_MAX},
};

/* The EventGroup being read: its strings, and from its second event on an event holding only
 * them, which each event starts as (a copy instead of sn_event_init and four strings). */
typedef struct group_src {
    const uint8_t *d[5]; /* strings 1..4: the last value of each (NULL: unset) */
    size_t n[5];
    const uint8_t *buf_end; /* of the buffer the strings lie in */
    unsigned events;        /* events read so far */
    bool have_tmpl;
    sn_event tmpl;
} group_src;

/* Copies a string field into a zeroed field of ev (copy_field's bytes, a word at a time when the
 * buffer goes on far enough). */
static inline void put_field(char *dst, size_t size, const uint8_t *d, size_t n,
                             const uint8_t *buf_end)
{
    if (!SN_INGEST_LITTLE_ENDIAN || (size_t)(buf_end - d) < n + 16 ||
        !copy_field_words(dst, size, d, n))
        copy_field(dst, size, d, n);
}

/* Writes the group's strings into ev, whose four fields are zero. */
static void group_strings(sn_event *ev, const group_src *g)
{
    for (int f = 1; f <= 4; f++)
        if (g->n[f] > 0)
            put_field((char *)ev + group_strs[f].off, group_strs[f].size, g->d[f], g->n[f],
                      g->buf_end);
}

/* Reads one LlmEvent from data[0..len) into ev; buf_end is the end of the buffer data lies in
 * (strings are read a word at a time when the buffer goes on far enough). group: NULL for a
 * Batch.events entry; for an EventGroup's event, the group, whose strings ev starts with.
 * Returns 1 when the bytes are malformed, else 0 with *why NULL or a static reason for refusing
 * the batch (the event breaks a rule). Every byte of ev is what sn_event_init and copy_field
 * make of the last value of each field (and of the group's strings). */
static int read_event(const uint8_t *data, size_t len, const uint8_t *buf_end, sn_event *ev,
                      const group_src *group, const char **why)
{
    if (group == NULL) {
        sn_event_init(ev);
    } else if (group->have_tmpl) {
        memcpy(ev, &group->tmpl, sizeof *ev);
    } else {
        sn_event_init(ev);
        group_strings(ev, group);
    }
    *why = NULL;
    pbr r = {data, data + len};
    const uint8_t *trace = NULL, *span = NULL;
    size_t trace_len = 0, span_len = 0;
    bool has_cost = false;
    double cost = 0;
    unsigned negative = 0; /* bit i: count field 17 + i was last set to a negative value */
    uint32_t seen = 0;     /* bit f: string field f was met before */
    /* bit f: string field f may hold bytes (met before, or the group's): clear it before a copy */
    uint32_t dirty = group != NULL ? RESOURCE_FIELDS : 0;
    int32_t cost_source = 0;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        uint64_t v;
        const uint8_t *d;
        size_t n;
        if (!pbr_tag(&r, &f, &wt))
            return 1;
        switch (f) {
        case 1:
        case 2:
        case 3:
        case 4:
        case 5:
        case 6:
        case 7:
        case 8:
        case 9:
        case 10: {
            if (wt != WT_LEN || !pbr_len(&r, &d, &n))
                return 1;
            char *dst = (char *)ev + event_strs[f].off;
            size_t size = event_strs[f].size;
            if (dirty & (1u << f))
                memset(dst, 0, size); /* a repeated field: the last value, alone */
            dirty |= 1u << f;
            seen |= 1u << f;
            put_field(dst, size, d, n, buf_end);
            break;
        }
        case 11:
        case 12:
            if (wt != WT_LEN || !pbr_len(&r, &d, &n))
                return 1;
            if (f == 11)
                trace = d, trace_len = n;
            else
                span = d, span_len = n;
            break;
        case 13:
        case 14:
        case 15:
        case 16:
        case 23:
            if (wt != WT_I64 || !pbr_fixed64(&r, &v))
                return 1;
            if (f == 13)
                ev->start_unix_nano = (int64_t)v;
            else if (f == 14)
                ev->end_unix_nano = (int64_t)v;
            else if (f == 15)
                ev->latency_ms = as_double(v);
            else if (f == 16)
                ev->ttft_ms = as_double(v);
            else
                has_cost = true, cost = as_double(v);
            break;
        case 17:
        case 18:
        case 19:
        case 20:
        case 21:
        case 22:
        case 24:
        case 26:
            if (wt != WT_VARINT || !pbr_varint(&r, &v, 10))
                return 1;
            if (f <= 22) {
                int64_t *dst = (int64_t *)(void *)((char *)ev + event_counts[f - 17]);
                *dst = (int64_t)v;
                negative = (negative & ~(1u << (f - 17))) | ((int64_t)v < 0 ? 1u << (f - 17) : 0);
            } else if (f == 24) {
                cost_source = (int32_t)(uint32_t)v;
            } else {
                ev->conventions = (uint32_t)v;
            }
            break;
        case 25: {
            /* protobuf-c reads a bool from any wire type: true when any byte of the field's
             * value (a length prefix included) has a low bit set */
            const uint8_t *from = r.p;
            if (!pbr_skip(&r, wt))
                return 1;
            bool set = false;
            for (const uint8_t *q = from; q < r.p && !set; q++)
                set = (*q & 0x7f) != 0;
            ev->is_error = set;
            break;
        }
        default:
            if (!pbr_skip(&r, wt))
                return 1;
        }
    }

    /* The rules, in the order the batch's refusal names the first broken one. */
    if (group != NULL && (seen & RESOURCE_FIELDS) != 0) {
        *why = "an event in a group must not set service, region, service_version or pod";
        return 0;
    }
    if (!copy_id(ev->trace_id, sizeof ev->trace_id, trace, trace_len)) {
        *why = "trace_id must be empty or 16 bytes";
        return 0;
    }
    if (!copy_id(ev->span_id, sizeof ev->span_id, span, span_len)) {
        *why = "span_id must be empty or 8 bytes";
        return 0;
    }
    if ((!isnan(ev->latency_ms) && ev->latency_ms < 0) ||
        (!isnan(ev->ttft_ms) && ev->ttft_ms < 0)) {
        *why = "latency_ms and ttft_ms must not be negative";
        return 0;
    }
    if (negative != 0) {
        *why = "token counts must not be negative";
        return 0;
    }
    switch (cost_source) {
    case SENTINEL__V1__COST_SOURCE__COST_SOURCE_UNKNOWN:
        if (has_cost)
            *why = "cost_usd set with cost_source UNKNOWN";
        break;
    case SENTINEL__V1__COST_SOURCE__COST_SOURCE_SPAN:
    case SENTINEL__V1__COST_SOURCE__COST_SOURCE_PRICE_TABLE:
        if (!has_cost || !isfinite(cost) || cost < 0) {
            *why = "cost_source set without a finite cost_usd >= 0";
            break;
        }
        ev->cost_usd = cost;
        ev->cost_source = (uint8_t)cost_source;
        break;
    default:
        *why = "unknown cost_source";
    }
    return 0;
}

/* Converts one LocalAlert. Returns NULL, or a static reason for refusing the batch. */
static const char *convert_alert(const Sentinel__V1__LocalAlert *a, sn_local_alert *al)
{
    memset(al, 0, sizeof *al);
    size_t idlen = strlen(a->alert_id);
    if (idlen > SN_ALERT_ID_LEN)
        return "alert_id longer than a UUID";
    memcpy(al->alert_id, a->alert_id, idlen);
    al->time_unix_nano = a->time_unix_nano;
    copy_str(al->service, sizeof al->service, a->service);
    copy_str(al->model, sizeof al->model, a->model);
    copy_str(al->region, sizeof al->region, a->region);
    if (sn_metric_from_name(a->metric, &al->metric) != 0)
        return "unknown metric";
    if (sn_anomaly_type_from_name(a->anomaly_type, &al->anomaly_type) != 0)
        return "unknown anomaly_type";
    if (sn_detector_from_name(a->detector, &al->detector) != 0)
        return "unknown detector";
    switch (a->severity) {
    case SENTINEL__V1__SEVERITY__SEVERITY_LOW:
        al->severity = SN_SEV_LOW;
        break;
    case SENTINEL__V1__SEVERITY__SEVERITY_MEDIUM:
        al->severity = SN_SEV_MEDIUM;
        break;
    case SENTINEL__V1__SEVERITY__SEVERITY_HIGH:
        al->severity = SN_SEV_HIGH;
        break;
    case SENTINEL__V1__SEVERITY__SEVERITY_CRITICAL:
        al->severity = SN_SEV_CRITICAL;
        break;
    default:
        return "severity must be LOW, MEDIUM, HIGH or CRITICAL";
    }
    al->value = a->value;
    al->baseline = a->baseline;
    al->threshold = a->threshold;
    al->deviation = a->deviation;
    al->confidence = a->confidence;
    if (!copy_pb_id(al->trace_id, sizeof al->trace_id, &a->trace_id))
        return "trace_id must be empty or 16 bytes";
    al->suppressed = a->suppressed;
    return NULL;
}

/* A finite value >= 0, or the reason it is refused. */
static const char *check_real(double x, const char *what)
{
    return isfinite(x) && x >= 0.0 ? NULL : what;
}

/* Converts one LlmAggregate. Returns NULL, or a static reason for refusing the batch. */
static const char *convert_aggregate(const Sentinel__V1__LlmAggregate *a, sn_aggregate *g)
{
    memset(g, 0, sizeof *g);
    copy_str(g->service, sizeof g->service, a->service);
    copy_str(g->model, sizeof g->model, a->model);
    copy_str(g->provider, sizeof g->provider, a->provider);
    copy_str(g->operation, sizeof g->operation, a->operation);
    copy_str(g->region, sizeof g->region, a->region);
    copy_str(g->error_type, sizeof g->error_type, a->error_type);
    if (sn_metric_from_name(a->metric, &g->metric) != 0 ||
        (g->metric != SN_METRIC_LATENCY_MS && g->metric != SN_METRIC_TTFT_MS &&
         g->metric != SN_METRIC_INPUT_TOKENS && g->metric != SN_METRIC_OUTPUT_TOKENS))
        return "aggregate metric must be latency_ms, ttft_ms, input_tokens or output_tokens";
    if (a->count == 0 || a->error_count > a->count)
        return "aggregate count must be >= 1 and >= error_count";
    g->start_unix_nano = a->start_unix_nano;
    g->end_unix_nano = a->end_unix_nano;
    g->count = a->count;
    g->error_count = a->error_count;
    g->sum = g->min = g->max = g->cost_usd = NAN;
    const char *why = NULL;
    if (a->_sum_case == SENTINEL__V1__LLM_AGGREGATE___SUM_SUM &&
        (why = check_real(a->sum, "sum")) == NULL)
        g->sum = a->sum;
    if (why == NULL && a->_min_case == SENTINEL__V1__LLM_AGGREGATE___MIN_MIN &&
        (why = check_real(a->min, "min")) == NULL)
        g->min = a->min;
    if (why == NULL && a->_max_case == SENTINEL__V1__LLM_AGGREGATE___MAX_MAX &&
        (why = check_real(a->max, "max")) == NULL)
        g->max = a->max;
    if (why == NULL && a->_cost_usd_case == SENTINEL__V1__LLM_AGGREGATE___COST_USD_COST_USD &&
        (why = check_real(a->cost_usd, "cost_usd")) == NULL)
        g->cost_usd = a->cost_usd;
    return why != NULL ? "aggregate sum, min, max and cost_usd must be finite and >= 0" : NULL;
}

/* ---- decoding: envelope -> payload -> Batch -> events and alerts --------------------------- */

/* What read_batch found besides the events and alerts it wrote into the arrays. */
typedef struct batch_hdr {
    char sidecar_id[SN_SEQ_ID_MAX + 2]; /* up to SN_SEQ_ID_MAX + 1 bytes of it, NUL-terminated */
    size_t id_len;                      /* its length up to its first NUL (may be larger) */
    uint64_t sequence;
    int64_t created_unix_nano;
    uint64_t dropped_events;
    size_t n_events, n_alerts; /* on the wire (more than the arrays hold when over a limit) */
    size_t n_aggregates;       /* the same for aggregates */
    const char *event_why;     /* the first event that breaks a rule: why (NULL: none) */
    size_t event_bad;          /* and its index */
    const char *alert_why;     /* the same for alerts */
    size_t alert_bad;
    const char *agg_why; /* and for aggregates */
    size_t agg_bad;
} batch_hdr;

/* One request being decoded, by the service's handler or by sn_ingest_decode_request: the
 * limits, a zstd context and event/alert arrays reused from call to call (owned by whoever set
 * the pointers), the protobuf-c objects of this request (freed by decode_end), and on failure
 * the refusal. */
typedef struct decode_ctx {
    size_t max_message; /* request and decompressed payload */
    size_t max_events, max_alerts;
    ZSTD_DCtx **dctx;
    sn_event **events;
    size_t *events_cap;
    sn_local_alert **alerts;
    size_t *alerts_cap;
    sn_aggregate **aggs;
    size_t *aggs_cap;
    pb_arena *arena;
    ProtobufCAllocator alloc;
    Sentinel__V1__IngestRequest *req;
    uint8_t **plain;
    size_t *plain_cap;
    batch_hdr b;                  /* the Batch read by read_batch */
    uint64_t bytes_in, bytes_out; /* payload before and after decompression, once known */
    sn_ingest_refusal reason;     /* the refusal, when a step returned -1 */
    sn_grpc_code code;
    bool retry;
    char msg[SN_GRPC_UNARY_MESSAGE_MAX];
} decode_ctx;

/* The decoder's byte budget: the payload, the strings (at most the payload again) and one
 * struct per item. */
static size_t decode_budget(size_t max_message, size_t max_events, size_t max_alerts)
{
    return 2 * max_message + max_events * (sizeof(Sentinel__V1__LlmEvent) + 2 * PB_ALIGN) +
           max_events * (sizeof(Sentinel__V1__LlmAggregate) + 2 * PB_ALIGN) +
           max_alerts * (sizeof(Sentinel__V1__LocalAlert) + 2 * PB_ALIGN) + SN_INGEST_PB_SLACK;
}

/* Sets the decoder's limits (0 max_message: the default). Returns 0 or -EINVAL. */
static int decoder_init(sn_ingest_decoder *d, const sn_ingest_config *cfg)
{
    memset(d, 0, sizeof *d);
    if (cfg->max_batch_events == 0 || cfg->max_batch_alerts == 0 ||
        cfg->max_batch_events > (1u << 24) || cfg->max_batch_alerts > (1u << 24))
        return -EINVAL;
    d->max_message =
        cfg->max_message_bytes != 0 ? cfg->max_message_bytes : SN_INGEST_DEFAULT_MAX_MESSAGE;
    d->max_events = cfg->max_batch_events;
    d->max_alerts = cfg->max_batch_alerts;
    d->arena.limit = decode_budget(d->max_message, d->max_events, d->max_alerts);
    return 0;
}

/* Frees what the decoder holds (not d itself). */
static void decoder_fini(sn_ingest_decoder *d)
{
    ZSTD_freeDCtx(d->dctx);
    pb_reset(&d->arena, false);
    free(d->plain);
    free(d->events);
    free(d->alerts);
    free(d->aggs);
    memset(d, 0, sizeof *d);
}

/* A decode context over the decoder's reused state. */
static decode_ctx decoder_ctx(sn_ingest_decoder *d)
{
    return (decode_ctx){.max_message = d->max_message,
                        .max_events = d->max_events,
                        .max_alerts = d->max_alerts,
                        .dctx = &d->dctx,
                        .events = &d->events,
                        .events_cap = &d->events_cap,
                        .alerts = &d->alerts,
                        .alerts_cap = &d->alerts_cap,
                        .aggs = &d->aggs,
                        .aggs_cap = &d->aggs_cap,
                        .arena = &d->arena,
                        .plain = &d->plain,
                        .plain_cap = &d->plain_cap};
}

/* Records a refusal in c (reason, gRPC code, formatted message). Returns -1. */
__attribute__((format(printf, 4, 5))) static int fail(decode_ctx *c, sn_ingest_refusal reason,
                                                      sn_grpc_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
    c->reason = reason;
    c->code = code;
    return -1;
}

/* Room for item i in *arr (capacity *cap), growing by doubling up to max items. Returns 0 or
 * -ENOMEM. */
static int grow(void **arr, size_t *cap, size_t i, size_t max, size_t size)
{
    if (i < *cap)
        return 0;
    size_t n = *cap < 64 ? 64 : 2 * *cap;
    return reserve(arr, cap, n < max ? n : max, size);
}

/* Counts one more item of a kind (*n) and, while the count is within max, points *slot at its
 * place in *arr (grown as needed); past max *slot is NULL (the item is read, not kept). Returns
 * 0 or -ENOMEM. */
static int next_slot(void **arr, size_t *cap, size_t *n, size_t max, size_t size, void **slot)
{
    size_t i = (*n)++;
    *slot = NULL;
    if (i >= max)
        return 0;
    if (grow(arr, cap, i, max, size))
        return -ENOMEM;
    *slot = (uint8_t *)*arr + i * size;
    return 0;
}

/* Remembers the first item (index i) that broke a rule, and why; why NULL: it broke none. */
static void note_why(const char *why, size_t i, const char **first_why, size_t *first_bad)
{
    if (why != NULL && *first_why == NULL) {
        *first_why = why;
        *first_bad = i;
    }
}

/* Reads one LlmEvent (data[0..len) in a buffer ending at buf_end) into the next slot of the
 * events array, or a scratch past max_events; group as read_event's. Returns 0, -EBADMSG or
 * -ENOMEM. */
static int take_event(decode_ctx *c, const uint8_t *data, size_t len, const uint8_t *buf_end,
                      group_src *group)
{
    batch_hdr *b = &c->b;
    if (group != NULL && group->events++ == 1) { /* the second event: worth a template */
        sn_event_init(&group->tmpl);
        group_strings(&group->tmpl, group);
        group->have_tmpl = true;
    }
    size_t i = b->n_events++;
    sn_event scratch, *ev = &scratch;
    if (i < c->max_events) {
        if (grow((void **)c->events, c->events_cap, i, c->max_events, sizeof **c->events))
            return -ENOMEM;
        ev = &(*c->events)[i];
    }
    const char *why;
    if (read_event(data, len, buf_end, ev, group, &why) != 0)
        return -EBADMSG;
    note_why(why, i, &b->event_why, &b->event_bad);
    return 0;
}

/* What group_fields reads of an EventGroup. */
enum group_pass {
    GROUP_HEAD,    /* its strings, up to its first event */
    GROUP_REST,    /* its events and strings; a string after an event stops it (1) */
    GROUP_STRINGS, /* all its strings (events skipped) */
    GROUP_EVENTS,  /* all its events (strings skipped) */
};

/* Reads an EventGroup's fields from r on: its strings into *group (the last value of each), its
 * events with take_event, as `pass` says; field 5 and the strings must be length-delimited,
 * unknown fields are skipped. Returns 0, 1 when GROUP_REST met a string after an event (the
 * events read have the wrong strings: the caller reads the group again), -EBADMSG or -ENOMEM. */
static int group_fields(decode_ctx *c, pbr *r, const uint8_t *buf_end, group_src *group,
                        enum group_pass pass)
{
    bool had_event = false;
    while (r->p < r->end) {
        const uint8_t *at = r->p;
        uint32_t f;
        int wt;
        const uint8_t *d;
        size_t n;
        if (!pbr_tag(r, &f, &wt))
            return -EBADMSG;
        if (f < 1 || f > 5) {
            if (!pbr_skip(r, wt))
                return -EBADMSG;
            continue;
        }
        if (f == 5 && pass == GROUP_HEAD) {
            r->p = at; /* the first event: read from here */
            return 0;
        }
        if (wt != WT_LEN || !pbr_len(r, &d, &n))
            return -EBADMSG;
        if (f == 5) {
            if (pass == GROUP_STRINGS)
                continue;
            int rc = take_event(c, d, n, buf_end, group);
            if (rc != 0)
                return rc;
            had_event = true;
        } else if (pass == GROUP_EVENTS) {
            continue;
        } else if (had_event) {
            return 1;
        } else {
            group->d[f] = d; /* the last value wins */
            group->n[f] = n;
        }
    }
    return 0;
}

/* Reads one EventGroup (data[0..len) in a buffer ending at buf_end): its resource strings, then
 * each of its events, numbered with the batch's events. The sidecar writes the strings first,
 * which one pass reads; strings after events (any order is valid) make it read the group again:
 * all its strings first, then its events. Returns 0, -EBADMSG or -ENOMEM. */
static int read_group(decode_ctx *c, const uint8_t *data, size_t len, const uint8_t *buf_end)
{
    batch_hdr *b = &c->b;
    size_t first = b->n_events, bad = b->event_bad;
    const char *why = b->event_why;
    group_src group;
    group.buf_end = buf_end;
    memset(group.n, 0, sizeof group.n);
    group.events = 0;
    group.have_tmpl = false;
    pbr r = {data, data + len};
    int rc = group_fields(c, &r, buf_end, &group, GROUP_HEAD);
    if (rc == 0)
        rc = group_fields(c, &r, buf_end, &group, GROUP_REST);
    if (rc != 1)
        return rc;
    /* A string after an event: every string first, then the events again. */
    b->n_events = first;
    b->event_why = why;
    b->event_bad = bad;
    memset(group.n, 0, sizeof group.n);
    group.events = 0;
    group.have_tmpl = false;
    r = (pbr){data, data + len};
    rc = group_fields(c, &r, buf_end, &group, GROUP_STRINGS);
    if (rc != 0)
        return rc;
    r = (pbr){data, data + len};
    return group_fields(c, &r, buf_end, &group, GROUP_EVENTS);
}

/* Reads the Batch in data[0..len) into c->b and the arrays: events read by hand (read_event),
 * alerts with protobuf-c from the arena. Items past the count limits are read (the bytes must
 * be well formed) but not kept; check_batch refuses the batch for them. Returns 0, -EBADMSG
 * (malformed, or the arena budget -- c->arena->exceeded) or -ENOMEM. */
static int read_batch(decode_ctx *c, const uint8_t *data, size_t len)
{
    batch_hdr *b = &c->b;
    memset(b, 0, sizeof *b);
    if (len == 0)
        return 0; /* an empty Batch (data may be NULL then: no pointer arithmetic on it) */
    pbr r = {data, data + len};
    int rc;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        uint64_t v;
        const uint8_t *d;
        size_t n;
        if (!pbr_tag(&r, &f, &wt))
            return -EBADMSG;
        switch (f) {
        case 1: /* sidecar_id */
            if (wt != WT_LEN || !pbr_len(&r, &d, &n))
                return -EBADMSG;
            const uint8_t *nul = memchr(d, '\0', n);
            b->id_len = nul != NULL ? (size_t)(nul - d) : n;
            n = b->id_len < SN_SEQ_ID_MAX + 1 ? b->id_len : SN_SEQ_ID_MAX + 1;
            memcpy(b->sidecar_id, d, n);
            b->sidecar_id[n] = '\0';
            break;
        case 2:
        case 6:
            if (wt != WT_VARINT || !pbr_varint(&r, &v, 10))
                return -EBADMSG;
            if (f == 2)
                b->sequence = v;
            else
                b->dropped_events = v;
            break;
        case 5:
            if (wt != WT_I64 || !pbr_fixed64(&r, &v))
                return -EBADMSG;
            b->created_unix_nano = (int64_t)v;
            break;
        case 3:
            if (wt != WT_LEN || !pbr_len(&r, &d, &n))
                return -EBADMSG;
            if ((rc = take_event(c, d, n, r.end, NULL)) != 0)
                return rc;
            break;
        case 8:
            if (wt != WT_LEN || !pbr_len(&r, &d, &n))
                return -EBADMSG;
            if ((rc = read_group(c, d, n, r.end)) != 0)
                return rc;
            break;
        case 4: {
            if (wt != WT_LEN || !pbr_len(&r, &d, &n))
                return -EBADMSG;
            Sentinel__V1__LocalAlert *a = sentinel__v1__local_alert__unpack(&c->alloc, n, d);
            sn_local_alert *slot;
            if (a == NULL)
                return -EBADMSG;
            if (next_slot((void **)c->alerts, c->alerts_cap, &b->n_alerts, c->max_alerts,
                          sizeof **c->alerts, (void **)&slot) != 0)
                return -ENOMEM;
            if (slot != NULL)
                note_why(convert_alert(a, slot), b->n_alerts - 1, &b->alert_why, &b->alert_bad);
            break;
        }
        case 7: {
            if (wt != WT_LEN || !pbr_len(&r, &d, &n))
                return -EBADMSG;
            Sentinel__V1__LlmAggregate *a = sentinel__v1__llm_aggregate__unpack(&c->alloc, n, d);
            sn_aggregate *slot;
            if (a == NULL)
                return -EBADMSG;
            if (next_slot((void **)c->aggs, c->aggs_cap, &b->n_aggregates, c->max_events,
                          sizeof **c->aggs, (void **)&slot) != 0)
                return -ENOMEM;
            if (slot != NULL)
                note_why(convert_aggregate(a, slot), b->n_aggregates - 1, &b->agg_why, &b->agg_bad);
            break;
        }
        default:
            if (!pbr_skip(&r, wt))
                return -EBADMSG;
        }
    }
    return 0;
}

/* Decodes the envelope, decompresses its payload and reads the Batch into c->b. Returns 0,
 * or -1 with the refusal in c. What was decoded is freed by decode_end, in either case. */
static int decode_payload(decode_ctx *c, const uint8_t *body, size_t len)
{
    c->alloc = (ProtobufCAllocator){pb_alloc, pb_free, c->arena};
    c->req = sentinel__v1__ingest_request__unpack(&c->alloc, len, body);
    if (c->req == NULL)
        return fail(c, SN_INGEST_REFUSED_MALFORMED, SN_GRPC_INVALID_ARGUMENT,
                    "request is not a sentinel.v1.IngestRequest");
    const Sentinel__V1__IngestRequest *req = c->req;
    const uint8_t *payload = req->payload.data;
    size_t plen = req->payload.len;
    c->bytes_in = plen;
    switch (req->compression) {
    case SENTINEL__V1__COMPRESSION__COMPRESSION_NONE:
    case SENTINEL__V1__COMPRESSION__COMPRESSION_NONE_GROUPS: /* groups are read either way */
        if (req->uncompressed_size != 0 && req->uncompressed_size != plen)
            return fail(c, SN_INGEST_REFUSED_DECOMPRESS, SN_GRPC_INVALID_ARGUMENT,
                        "uncompressed_size %llu differs from the payload's %zu bytes",
                        (unsigned long long)req->uncompressed_size, plen);
        break;
    case SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD:
    case SENTINEL__V1__COMPRESSION__COMPRESSION_ZSTD_GROUPS: {
        if (req->uncompressed_size == 0)
            return fail(c, SN_INGEST_REFUSED_DECOMPRESS, SN_GRPC_INVALID_ARGUMENT,
                        "uncompressed_size is required with zstd");
        if (req->uncompressed_size > c->max_message)
            return fail(c, SN_INGEST_REFUSED_TOO_LARGE, SN_GRPC_RESOURCE_EXHAUSTED,
                        "uncompressed_size %llu over the limit of %zu bytes",
                        (unsigned long long)req->uncompressed_size, c->max_message);
        const char *why = NULL;
        int rc = unzstd_payload(c->dctx, c->max_message, payload, plen,
                                (size_t)req->uncompressed_size, c->plain, c->plain_cap, &why);
        if (rc == -ENOMEM) {
            c->retry = true;
            return fail(c, SN_INGEST_REFUSED_INTERNAL, SN_GRPC_UNAVAILABLE,
                        "aggregator out of memory");
        }
        if (rc != 0)
            return fail(c, SN_INGEST_REFUSED_DECOMPRESS, SN_GRPC_INVALID_ARGUMENT, "%s", why);
        payload = *c->plain;
        plen = (size_t)req->uncompressed_size;
        break;
    }
    default:
        return fail(c, SN_INGEST_REFUSED_MALFORMED, SN_GRPC_INVALID_ARGUMENT,
                    "unknown compression %d", (int)req->compression);
    }
    c->bytes_out = plen;

    int rc = read_batch(c, payload, plen);
    if (rc == -ENOMEM) {
        c->retry = true;
        return fail(c, SN_INGEST_REFUSED_INTERNAL, SN_GRPC_UNAVAILABLE, "aggregator out of memory");
    }
    if (rc != 0) {
        if (c->arena->exceeded)
            return fail(c, SN_INGEST_REFUSED_TOO_LARGE, SN_GRPC_RESOURCE_EXHAUSTED,
                        "batch needs more than %zu bytes to decode", c->arena->limit);
        return fail(c, SN_INGEST_REFUSED_MALFORMED, SN_GRPC_INVALID_ARGUMENT,
                    "payload is not a sentinel.v1.Batch");
    }
    return 0;
}

/* Checks the decoded Batch's identity and size. Returns 0, or -1 with the refusal in c. */
static int check_batch(decode_ctx *c)
{
    const batch_hdr *b = &c->b;
    if (b->id_len == 0 || b->id_len > SN_SEQ_ID_MAX)
        return fail(c, SN_INGEST_REFUSED_INVALID, SN_GRPC_INVALID_ARGUMENT,
                    "batch: sidecar_id must be 1 to %u bytes", SN_SEQ_ID_MAX);
    if (b->sequence == 0 && (b->n_events > 0 || b->n_aggregates > 0 || b->n_alerts == 0))
        return fail(c, SN_INGEST_REFUSED_INVALID, SN_GRPC_INVALID_ARGUMENT,
                    "batch: sequence must be >= 1 (0 only for alerts ahead of their batch: "
                    "at least one alert, no events, no aggregates)");
    if (b->n_events > c->max_events || b->n_alerts > c->max_alerts ||
        b->n_aggregates > c->max_events)
        return fail(c, SN_INGEST_REFUSED_TOO_LARGE, SN_GRPC_RESOURCE_EXHAUSTED,
                    "batch: more than %zu events or aggregates, or %zu alerts", c->max_events,
                    c->max_alerts);
    return 0;
}

/* Refuses the batch for its first event, then its first alert, then its first aggregate, that broke
 * a rule (read_batch converted them). Returns 0, or -1 with the refusal in c. */
static int convert_batch(decode_ctx *c)
{
    const batch_hdr *b = &c->b;
    if (b->event_why != NULL)
        return fail(c, SN_INGEST_REFUSED_INVALID, SN_GRPC_INVALID_ARGUMENT, "batch: event %zu: %s",
                    b->event_bad, b->event_why);
    if (b->alert_why != NULL)
        return fail(c, SN_INGEST_REFUSED_INVALID, SN_GRPC_INVALID_ARGUMENT, "batch: alert %zu: %s",
                    b->alert_bad, b->alert_why);
    if (b->agg_why != NULL)
        return fail(c, SN_INGEST_REFUSED_INVALID, SN_GRPC_INVALID_ARGUMENT,
                    "batch: aggregate %zu: %s", b->agg_bad, b->agg_why);
    return 0;
}

/* Forgets what decode_payload decoded (the arena is reset; the reused context, payload buffer
 * and arrays stay, trimmed when one huge request grew them). */
static void decode_end(decode_ctx *c)
{
    pb_reset(c->arena, true);
    trim((void **)c->plain, c->plain_cap, 1);
    c->req = NULL;
}

/* ---- the handler ----------------------------------------------------------------------------- */

/* Answers the refusal recorded in c (counted and logged by refuse). */
static void refuse_decode(sn_ingest *in, sn_grpc_reply *reply, const decode_ctx *c)
{
    refuse(in, reply, c->reason, c->code, "%s", c->msg);
    if (c->retry)
        reply->retry = true;
}

/* Local alerts sent ahead of their batch (sequence 0, alerts only; check_batch made sure): applied
 * without touching the sequence table -- the same alerts come again in their sequenced batch and
 * apply skips the alert_ids it has applied. OK (DUPLICATE when apply says every alert was applied
 * before) with the sidecar's acknowledged sequence as it stands. */
static void handle_alerts_ahead(sn_ingest *in, decode_ctx *c, sn_grpc_reply *reply)
{
    const batch_hdr *b = &c->b;
    if (convert_batch(c) != 0) {
        refuse_decode(in, reply, c);
        return;
    }
    /* An alert without an id could not be told from its copy in the batch: applied twice. */
    for (size_t i = 0; i < b->n_alerts; i++) {
        if (in->dec.alerts[i].alert_id[0] == '\0') {
            (void)fail(c, SN_INGEST_REFUSED_INVALID, SN_GRPC_INVALID_ARGUMENT,
                       "batch: an alert ahead of its batch (sequence 0) needs an alert_id");
            refuse_decode(in, reply, c);
            return;
        }
    }
    pthread_mutex_lock(&in->seq_mu);
    uint64_t last = sn_seqtab_get(in->seq, b->sidecar_id, b->id_len, now_ns());
    pthread_mutex_unlock(&in->seq_mu);
    sn_ingest_batch batch = {.sidecar_id = b->sidecar_id,
                             .sequence = 0,
                             .created_unix_nano = b->created_unix_nano,
                             .alerts = in->dec.alerts,
                             .nalerts = b->n_alerts};
    int rc = in->cfg.apply(&batch, in->cfg.apply_ud);
    if (rc == -EAGAIN) {
        atomic_fetch_add(&in->st_refused[SN_INGEST_REFUSED_RETRY], 1);
        respond(reply, SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_RETRY_AFTER, last,
                in->cfg.retry_after_ms, "aggregator busy");
        return;
    }
    if (rc != 0 && rc != -EALREADY) {
        refuse(in, reply, SN_INGEST_REFUSED_INTERNAL, SN_GRPC_INTERNAL,
               "alerts could not be applied: %s", strerror(-rc));
        return;
    }
    atomic_fetch_add(&in->st_alerts_ahead, 1);
    if (rc == -EALREADY) {
        respond(reply, SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_DUPLICATE, last, 0,
                "alerts already applied");
        return;
    }
    atomic_fetch_add(&in->st_alerts, b->n_alerts);
    respond(reply, SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_OK, last, 0, "");
}

/* Validates, de-duplicates, converts and applies the decoded Batch in c; fills reply. */
static void handle_batch(sn_ingest *in, decode_ctx *c, sn_grpc_reply *reply)
{
    const batch_hdr *b = &c->b;
    if (check_batch(c) != 0) {
        refuse_decode(in, reply, c);
        return;
    }
    size_t idlen = b->id_len;
    if (b->sequence == 0) {
        handle_alerts_ahead(in, c, reply);
        return;
    }

    /* A replay is answered before its events are judged (they were read with the Batch). */
    int64_t now = now_ns();
    pthread_mutex_lock(&in->seq_mu);
    uint64_t last = sn_seqtab_get(in->seq, b->sidecar_id, idlen, now);
    pthread_mutex_unlock(&in->seq_mu);
    if (b->sequence <= last) {
        atomic_fetch_add(&in->st_duplicates, 1);
        sn_log_debug("ingest duplicate batch", SN_LOG_STR("sidecar_id", b->sidecar_id),
                     SN_LOG_UINT("sequence", b->sequence), SN_LOG_UINT("applied", last));
        respond(reply, SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_DUPLICATE, last, 0,
                "already applied");
        return;
    }

    if (convert_batch(c) != 0) {
        refuse_decode(in, reply, c);
        return;
    }

    sn_ingest_batch batch = {
        .sidecar_id = b->sidecar_id,
        .sequence = b->sequence,
        .created_unix_nano = b->created_unix_nano,
        .dropped_events = b->dropped_events,
        .events = in->dec.events,
        .nevents = b->n_events,
        .alerts = in->dec.alerts,
        .nalerts = b->n_alerts,
        .aggregates = in->dec.aggs,
        .naggregates = b->n_aggregates,
    };
    int rc = in->cfg.apply(&batch, in->cfg.apply_ud);
    if (rc == -EALREADY) {
        /* Another replica applied it (shared state): remembered here too, then DUPLICATE. */
        pthread_mutex_lock(&in->seq_mu);
        sn_seqtab_put(in->seq, b->sidecar_id, idlen, b->sequence, now);
        pthread_mutex_unlock(&in->seq_mu);
        atomic_fetch_add(&in->st_duplicates, 1);
        respond(reply, SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_DUPLICATE, b->sequence, 0,
                "already applied by another replica");
        return;
    }
    if (rc == -EAGAIN) {
        atomic_fetch_add(&in->st_refused[SN_INGEST_REFUSED_RETRY], 1);
        respond(reply, SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_RETRY_AFTER, last,
                in->cfg.retry_after_ms, "aggregator busy");
        return;
    }
    if (rc != 0) {
        refuse(in, reply, SN_INGEST_REFUSED_INTERNAL, SN_GRPC_INTERNAL,
               "batch could not be applied: %s", strerror(rc < 0 ? -rc : rc));
        return;
    }
    pthread_mutex_lock(&in->seq_mu);
    sn_seqtab_put(in->seq, b->sidecar_id, idlen, b->sequence, now);
    pthread_mutex_unlock(&in->seq_mu);
    atomic_fetch_add(&in->st_batches, 1);
    atomic_fetch_add(&in->st_events, b->n_events);
    atomic_fetch_add(&in->st_alerts, b->n_alerts);
    respond(reply, SENTINEL__V1__INGEST_STATUS__INGEST_STATUS_OK, b->sequence, 0, "");
}

/* The unary server's handler: envelope -> payload -> Batch -> handle_batch. */
static void ingest_handler(unsigned method, const uint8_t *body, size_t len, sn_grpc_reply *reply,
                           void *ud)
{
    (void)method;
    sn_ingest *in = ud;
    decode_ctx c = decoder_ctx(&in->dec);
    int rc = decode_payload(&c, body, len);
    atomic_fetch_add(&in->st_bytes_in, c.bytes_in);
    atomic_fetch_add(&in->st_bytes_out, c.bytes_out);
    if (rc == 0)
        handle_batch(in, &c, reply);
    else
        refuse_decode(in, reply, &c);
    decode_end(&c);
    trim((void **)&in->dec.events, &in->dec.events_cap, sizeof *in->dec.events);
    trim((void **)&in->dec.alerts, &in->dec.alerts_cap, sizeof *in->dec.alerts);
    trim((void **)&in->dec.aggs, &in->dec.aggs_cap, sizeof *in->dec.aggs);
}

/* ---- public API ------------------------------------------------------------------------------ */

void sn_ingest_config_init(sn_ingest_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->listen = "0.0.0.0:9090";
    cfg->max_message_bytes = SN_INGEST_DEFAULT_MAX_MESSAGE;
    cfg->max_calls = SN_INGEST_DEFAULT_MAX_CALLS;
    cfg->max_batch_events = SN_INGEST_DEFAULT_MAX_EVENTS;
    cfg->max_batch_alerts = SN_INGEST_DEFAULT_MAX_ALERTS;
    cfg->max_sidecars = SN_INGEST_DEFAULT_MAX_SIDECARS;
    cfg->sidecar_idle_ns = SN_INGEST_DEFAULT_IDLE_NS;
    cfg->retry_after_ms = SN_INGEST_DEFAULT_RETRY_MS;
}

int sn_ingest_create(const sn_ingest_config *cfg, sn_ingest **out, char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->apply == NULL) {
        snprintf(err, errlen, "ingest: no apply callback");
        return -EINVAL;
    }
    if (cfg->max_batch_events == 0 || cfg->max_batch_alerts == 0 || cfg->max_sidecars == 0 ||
        cfg->sidecar_idle_ns <= 0 || cfg->max_batch_events > (1u << 24) ||
        cfg->max_batch_alerts > (1u << 24)) {
        snprintf(err, errlen, "ingest: batch limits, max sidecars and idle time must be > 0");
        return -EINVAL;
    }
    sn_ingest *in = calloc(1, sizeof *in);
    if (in == NULL) {
        snprintf(err, errlen, "ingest: out of memory");
        return -ENOMEM;
    }
    in->cfg = *cfg;
    if (in->cfg.retry_after_ms == 0)
        in->cfg.retry_after_ms = SN_INGEST_DEFAULT_RETRY_MS;
    if (in->cfg.max_message_bytes == 0)
        in->cfg.max_message_bytes = SN_INGEST_DEFAULT_MAX_MESSAGE;
    decoder_init(&in->dec, &in->cfg); /* the limits were checked above */
    int rc = sn_seqtab_create(cfg->max_sidecars, cfg->sidecar_idle_ns, &in->seq);
    if (rc != 0) {
        snprintf(err, errlen, "ingest: cannot create the sequence table: %s", strerror(-rc));
        goto out_free_ingest;
    }
    pthread_mutex_init(&in->seq_mu, NULL);

    sn_grpc_unary_config u;
    sn_grpc_unary_config_init(&u);
    u.name = "ingest grpc";
    u.listen = cfg->listen;
    u.methods = ingest_methods;
    u.nmethods = 1;
    u.max_message_bytes = in->cfg.max_message_bytes;
    u.max_calls = cfg->max_calls;
    u.window_bytes = cfg->window_bytes;
    u.busy_retry_ms = in->cfg.retry_after_ms;
    u.accept_zstd = false; /* zstd travels inside the IngestRequest envelope */
    u.handler = ingest_handler;
    u.handler_ud = in;
    rc = sn_grpc_unary_create(&u, &in->server, err, errlen);
    if (rc != 0)
        goto out_destroy_seq;
    *out = in;
    return 0;

out_destroy_seq:
    pthread_mutex_destroy(&in->seq_mu);
    sn_seqtab_destroy(in->seq);
out_free_ingest:
    free(in);
    return rc;
}

int sn_ingest_port(const sn_ingest *in)
{
    return sn_grpc_unary_port(in->server);
}

int sn_ingest_start(sn_ingest *in)
{
    return sn_grpc_unary_start(in->server);
}

void sn_ingest_shutdown(sn_ingest *in, uint32_t grace_ms)
{
    sn_grpc_unary_shutdown(in->server, grace_ms);
}

void sn_ingest_stats_get(sn_ingest *in, sn_ingest_stats *out)
{
    memset(out, 0, sizeof *out);
    out->batches = atomic_load(&in->st_batches);
    out->events = atomic_load(&in->st_events);
    out->alerts = atomic_load(&in->st_alerts);
    out->duplicates = atomic_load(&in->st_duplicates);
    out->alerts_ahead = atomic_load(&in->st_alerts_ahead);
    for (int i = 0; i < SN_INGEST_REFUSED_COUNT; i++)
        out->refused[i] = atomic_load(&in->st_refused[i]);
    out->bytes_in = atomic_load(&in->st_bytes_in);
    out->bytes_out = atomic_load(&in->st_bytes_out);
    sn_seqtab_stats ss;
    pthread_mutex_lock(&in->seq_mu);
    sn_seqtab_stats_get(in->seq, &ss);
    pthread_mutex_unlock(&in->seq_mu);
    out->sidecars = ss.entries;
    out->sidecars_expired = ss.expired;
    out->sidecars_evicted = ss.evicted;
    sn_grpc_unary_stats us;
    sn_grpc_unary_stats_get(in->server, &us);
    out->transport_refused = us.refused_busy + us.refused_too_large + us.refused_bad_encoding;
}

int sn_ingest_sequences_export(sn_ingest *in, sn_seqtab_visit cb, void *ud)
{
    pthread_mutex_lock(&in->seq_mu);
    int rc = sn_seqtab_export(in->seq, cb, ud);
    pthread_mutex_unlock(&in->seq_mu);
    return rc;
}

int sn_ingest_sequences_import(sn_ingest *in, const char *sidecar_id, uint64_t seq,
                               int64_t last_seen_ns)
{
    pthread_mutex_lock(&in->seq_mu);
    int rc = sn_seqtab_import(in->seq, sidecar_id, seq, last_seen_ns);
    pthread_mutex_unlock(&in->seq_mu);
    return rc;
}

void sn_ingest_destroy(sn_ingest *in)
{
    if (in == NULL)
        return;
    sn_grpc_unary_destroy(in->server);
    decoder_fini(&in->dec);
    pthread_mutex_destroy(&in->seq_mu);
    sn_seqtab_destroy(in->seq);
    free(in);
}

/* Decodes, checks and converts one request with d's reused state; on success d->batch is the
 * result. Returns 0 or -1 with the refusal in *c (which the caller has set up from d). */
static int decoder_run(sn_ingest_decoder *d, decode_ctx *c, const uint8_t *body, size_t len)
{
    int rc = decode_payload(c, body, len);
    if (rc == 0)
        rc = check_batch(c);
    if (rc == 0)
        rc = convert_batch(c);
    if (rc == 0) {
        const batch_hdr *b = &c->b;
        memcpy(d->sidecar_id, b->sidecar_id, b->id_len + 1);
        d->batch = (sn_ingest_batch){.sidecar_id = d->sidecar_id,
                                     .sequence = b->sequence,
                                     .created_unix_nano = b->created_unix_nano,
                                     .dropped_events = b->dropped_events,
                                     .events = d->events,
                                     .nevents = b->n_events,
                                     .alerts = d->alerts,
                                     .nalerts = b->n_alerts,
                                     .aggregates = d->aggs,
                                     .naggregates = b->n_aggregates};
    }
    decode_end(c);
    return rc;
}

/* Reports the refusal of c to the caller of the public functions. Returns -ENOMEM or -EINVAL. */
static int decoder_refusal(const decode_ctx *c, sn_ingest_refusal *why, char *err, size_t errlen)
{
    if (why != NULL)
        *why = c->reason;
    if (errlen > 0)
        snprintf(err, errlen, "%s", c->msg);
    return c->reason == SN_INGEST_REFUSED_INTERNAL ? -ENOMEM : -EINVAL;
}

int sn_ingest_decode_request(const uint8_t *body, size_t len, const sn_ingest_config *cfg,
                             sn_ingest_decoded *out, sn_ingest_refusal *why, char *err,
                             size_t errlen)
{
    memset(out, 0, sizeof *out);
    sn_ingest_decoder d;
    if (decoder_init(&d, cfg) != 0) {
        if (why != NULL)
            *why = SN_INGEST_REFUSED_TOO_LARGE;
        if (errlen > 0)
            snprintf(err, errlen, "batch limits must be 1 to %u items", 1u << 24);
        return -EINVAL;
    }
    decode_ctx c = decoder_ctx(&d);
    int rc = decoder_run(&d, &c, body, len);
    if (rc == 0) {
        memcpy(out->sidecar_id, d.sidecar_id, sizeof out->sidecar_id);
        out->batch = d.batch;
        out->batch.sidecar_id = out->sidecar_id;
        out->events = d.events; /* the arrays move to out */
        out->alerts = d.alerts;
        out->aggregates = d.aggs;
        d.events = NULL;
        d.alerts = NULL;
        d.aggs = NULL;
    } else {
        rc = decoder_refusal(&c, why, err, errlen);
    }
    decoder_fini(&d);
    return rc;
}

int sn_ingest_decoder_create(const sn_ingest_config *cfg, sn_ingest_decoder **out, char *err,
                             size_t errlen)
{
    sn_ingest_decoder *d = malloc(sizeof *d);
    if (d == NULL) {
        snprintf(err, errlen, "ingest decoder: out of memory");
        return -ENOMEM;
    }
    if (decoder_init(d, cfg) != 0) {
        snprintf(err, errlen, "ingest decoder: batch limits must be 1 to %u items", 1u << 24);
        free(d);
        return -EINVAL;
    }
    *out = d;
    return 0;
}

int sn_ingest_decoder_decode(sn_ingest_decoder *d, const uint8_t *body, size_t len,
                             const sn_ingest_batch **out, sn_ingest_refusal *why, char *err,
                             size_t errlen)
{
    decode_ctx c = decoder_ctx(d);
    if (decoder_run(d, &c, body, len) != 0)
        return decoder_refusal(&c, why, err, errlen);
    *out = &d->batch;
    return 0;
}

void sn_ingest_decoder_destroy(sn_ingest_decoder *d)
{
    if (d == NULL)
        return;
    decoder_fini(d);
    free(d);
}

void sn_ingest_decoded_free(sn_ingest_decoded *d)
{
    if (d == NULL)
        return;
    free(d->events);
    free(d->alerts);
    free(d->aggregates);
    memset(d, 0, sizeof *d);
}
