/*
 * grpc_unary.c -- a generic unary gRPC server on the gRPC C core (see grpc_unary.h and
 * docs/otlp-receiver.md, which describes it through its first user, the OTLP transport).
 *
 * A call moves through these phases; each phase has at most one gRPC batch outstanding, and
 * the call struct itself is that batch's completion-queue tag:
 *
 *   FREE --post--> WAITING --new call--> READING --message--> QUEUED --handler--> ANSWERING
 *                     |                     |                        |              ^   |
 *                     |                     |                        +-> DEFERRED --+   |
 *                     |                     +--- unknown method / busy / bad ------>+   |
 *                     +--(ok == 0: shutdown)--> FREE                  FREE <------------+
 *
 * DEFERRED (allow_deferred): the handler took sn_grpc_reply.later and returned; no batch is
 * outstanding until sn_grpc_unary_finish, called from whatever thread finished the work.
 *
 * cfg.max_held_bytes: an admitted call enters READING with its RECV_MESSAGE batch only while
 * the messages held (received, not yet copied out by serve) and the reads under way stay under
 * the bound; otherwise it waits in the parked FIFO with no batch outstanding (gRPC keeps its
 * data within the stream window) until unhold or on_message makes room (resume_parked), or
 * shutdown starts every waiting read.
 *
 * Call structs come from a pool sized at create (2 x max_calls + SN_ACCEPT_SLOTS), so the
 * number of calls this module holds is bounded; when the pool is empty no new call is
 * requested and gRPC keeps further streams waiting (bounded per connection by max_streams).
 *
 * Locking: `mu` guards the pool, the phase counters, the handler FIFO and the shutdown flags.
 * gRPC calls (start_batch, request_call) are thread-safe and are made from both threads.
 */
#include "grpc_unary.h"
#include "log.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
/* grpc_security.h declares `f()` prototypes, which -Wstrict-prototypes rejects in C. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <grpc/grpc_security.h>
#pragma GCC diagnostic pop
#include <grpc/slice.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#define SN_ACCEPT_SLOTS              8u /* request_call posted at once */
#define SN_MAX_MESSAGE_CAP           (1024u * 1024u * 1024u)
#define SN_MAX_CALLS_CAP             65536u
#define SN_BUF_KEEP                  (1024u * 1024u) /* worker buffers above this are freed */
#define SN_BUF_MIN                   (64u * 1024u)
#define SN_PB_SMALL                  640 /* the hand-encoded google.rpc.Status trailer */
#define SN_REPLY_CAP                 (16u * 1024u * 1024u)
#define SN_UNARY_DEFAULT_MAX_MESSAGE (16u * 1024u * 1024u)
#define SN_UNARY_DEFAULT_MAX_CALLS   64u
#define SN_UNARY_DEFAULT_RETRY_MS    1000u
#define SN_UNARY_DEFAULT_STREAMS     100u
#define SN_WINDOW_MIN                65535u /* the HTTP/2 initial window */
#define SN_WINDOW_MAX                (64u * 1024u * 1024u)
#define SN_RETRY_INFO_URL            "type.googleapis.com/google.rpc.RetryInfo"
#define SN_STATUS_BIN_KEY            "grpc-status-details-bin"

typedef enum sn_call_phase {
    SN_CALL_FREE = 0,
    SN_CALL_WAITING,
    SN_CALL_READING,
    SN_CALL_QUEUED,
    SN_CALL_DEFERRED, /* the handler answers later (sn_grpc_unary_finish) */
    SN_CALL_ANSWERING
} sn_call_phase;

typedef struct sn_grpc_call {
    struct sn_grpc_unary *srv;
    struct sn_grpc_call *next; /* free list or handler FIFO */
    sn_call_phase phase;
    bool admitted; /* counts against max_calls */
    unsigned method;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array request_md;
    grpc_byte_buffer *request;
    size_t request_len;
    size_t held;     /* request_len while counted in held_bytes (cfg.max_held_bytes) */
    bool compressed; /* the message is gzip / deflate / zstd: its output is reserved in serve */
    size_t reserved; /* bytes of cfg.budget this call holds */
    grpc_byte_buffer *response;
    grpc_slice status_message;
    grpc_metadata trailer;
    bool has_trailer;
    int cancelled;
    /* Stage timing (cfg.stage_seconds), CLOCK_MONOTONIC ns; 0 = not reached. */
    int64_t t_new, t_message, t_handle, t_answer;
} sn_grpc_call;

/* A call's share of cfg.budget, charged while a handler-thread buffer grows for it. */
typedef struct sn_charge {
    const sn_grpc_budget *budget;
    size_t *held; /* the call's reservation, grown by each charge */
    int refused;  /* the budget's answer that stopped a growth (0: none) */
} sn_charge;

/* A growable byte buffer with a hard ceiling, owned by the handler thread. */
typedef struct sn_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    sn_charge *charge; /* NULL: growth is not charged to a budget */
} sn_buf;

typedef enum sn_body_rc {
    SN_BODY_OK = 0,
    SN_BODY_TOO_LARGE,
    SN_BODY_CORRUPT,
    SN_BODY_NOMEM,
    SN_BODY_OVER_BUDGET /* larger than the memory budget has left: retryable */
} sn_body_rc;

struct sn_grpc_unary {
    sn_grpc_unary_config cfg;
    char *listen;
    char *name;
    uint8_t *reply_buf; /* cfg.max_reply_bytes, used by the handler thread only */
    grpc_server *server;
    grpc_completion_queue *cq;
    int port;
    int shutdown_tag; /* its address is the shutdown completion tag */

    pthread_t cq_thread;
    pthread_t worker_thread;
    bool started;
    bool stopped; /* sn_grpc_unary_shutdown has finished */

    pthread_mutex_t mu;
    pthread_cond_t cv; /* FIFO non-empty, worker_stop, server_done */
    sn_grpc_call *pool;
    size_t pool_size;
    sn_grpc_call *free_list;
    unsigned waiting;  /* phase WAITING */
    unsigned live;     /* phases READING..ANSWERING */
    unsigned admitted; /* live calls that count against max_calls */
    sn_grpc_call *q_head;
    sn_grpc_call *q_tail;
    size_t queued_bytes;
    /* cfg.max_held_bytes: messages received and not yet copied out (held_bytes), calls whose
     * message gRPC is reading (reading), and admitted calls whose read waits (parked FIFO). */
    size_t held_bytes;
    unsigned reading;
    sn_grpc_call *parked_head;
    sn_grpc_call *parked_tail;
    _Atomic size_t msg_estimate; /* cfg.budget: what a new call reserves before its message */
    bool shutting_down;
    bool server_done;
    bool worker_stop;
    bool worker_idle; /* the handler thread sleeps on cv (on_message signals only then) */
    bool timed;       /* some cfg.stage_seconds entry is set */
    /* The completion-queue thread's buffers for requests it handles itself
     * (cfg.inline_max_bytes). */
    sn_buf inl_a, inl_b;
    ZSTD_DCtx *inl_dctx;
    atomic_bool cancel_all;

    _Atomic uint64_t st_requests[SN_GRPC_UNARY_MAX_METHODS];
    _Atomic uint64_t st_answers[SN_GRPC_CODE_COUNT];
    _Atomic uint64_t st_bytes_in;
    _Atomic uint64_t st_bytes_out;
    _Atomic uint64_t st_busy;
    _Atomic uint64_t st_budget;
    _Atomic uint64_t st_too_large;
    _Atomic uint64_t st_bad_encoding;
    _Atomic uint64_t st_unimplemented;
    _Atomic uint64_t st_expired;
    _Atomic uint64_t st_read_waits;
    unsigned parked; /* calls in the parked FIFO (under mu) */
};

const char *const sn_grpc_stage_names[SN_GRPC_STAGE_COUNT] = {
    "grpc_read", "grpc_queue", "grpc_handle", "grpc_send", "grpc_total"};

/* CLOCK_MONOTONIC in ns, for stage timing; 0 when the server times nothing. */
static int64_t stage_now(const sn_grpc_unary *s)
{
    if (!s->timed)
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Observes `to - from` ns in the stage's histogram, when both ends were reached. */
static void stage_observe(const sn_grpc_unary *s, sn_grpc_stage st, int64_t from, int64_t to)
{
    if (from != 0 && to >= from)
        sn_histogram_observe(s->cfg.stage_seconds[st], (double)(to - from) * 1e-9);
}

/* CQ thread: a call's answer completed; observes every stage it went through. */
static void stage_observe_call(const sn_grpc_unary *s, const sn_grpc_call *c)
{
    if (!s->timed || c->t_handle == 0)
        return;
    int64_t now = stage_now(s);
    stage_observe(s, SN_GRPC_STAGE_READ, c->t_new, c->t_message);
    stage_observe(s, SN_GRPC_STAGE_QUEUE, c->t_message, c->t_handle);
    stage_observe(s, SN_GRPC_STAGE_HANDLE, c->t_handle, c->t_answer);
    stage_observe(s, SN_GRPC_STAGE_SEND, c->t_answer, now);
    stage_observe(s, SN_GRPC_STAGE_TOTAL, c->t_message, now);
}

/* ---- a tiny bounded protobuf writer ---------------------------------------------------- */

typedef struct sn_pbw {
    uint8_t *p;
    size_t cap;
    size_t len;
    bool overflow;
} sn_pbw;

/* Appends a base-128 varint; sets overflow instead of writing past cap. */
static void pbw_varint(sn_pbw *w, uint64_t v)
{
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v != 0)
            b |= 0x80;
        if (w->len >= w->cap) {
            w->overflow = true;
            return;
        }
        w->p[w->len++] = b;
    } while (v != 0);
}

/* Appends a varint field (wire type 0). */
static void pbw_uint(sn_pbw *w, uint32_t field, uint64_t v)
{
    pbw_varint(w, (uint64_t)field << 3);
    pbw_varint(w, v);
}

/* Appends a length-delimited field (wire type 2): strings, bytes, nested messages. */
static void pbw_bytes(sn_pbw *w, uint32_t field, const void *data, size_t n)
{
    pbw_varint(w, ((uint64_t)field << 3) | 2u);
    pbw_varint(w, n);
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return;
    }
    if (n > 0)
        memcpy(w->p + w->len, data, n);
    w->len += n;
}

/* Encodes google.rpc.Status{code, message, details: [Any{RetryInfo{retry_delay}}]} into
 * `out` (retry_ms < 0: no details). Returns the length, or 0 if it does not fit. */
static size_t encode_status_details(uint8_t *out, size_t cap, grpc_status_code code,
                                    const char *msg, int64_t retry_ms)
{
    uint8_t dur[32], info[40], any[96];
    sn_pbw wd = {dur, sizeof dur, 0, false};
    sn_pbw wi = {info, sizeof info, 0, false};
    sn_pbw wa = {any, sizeof any, 0, false};
    sn_pbw ws = {out, cap, 0, false};

    pbw_uint(&ws, 1, (uint64_t)(uint32_t)code);
    if (msg[0] != '\0')
        pbw_bytes(&ws, 2, msg, strlen(msg));
    if (retry_ms >= 0) {
        /* google.protobuf.Duration{seconds = 1, nanos = 2}; zero fields are omitted. */
        if (retry_ms / 1000 > 0)
            pbw_uint(&wd, 1, (uint64_t)(retry_ms / 1000));
        if (retry_ms % 1000 > 0)
            pbw_uint(&wd, 2, (uint64_t)(retry_ms % 1000) * 1000000u);
        pbw_bytes(&wi, 1, dur, wd.len);                                  /* RetryInfo.retry_delay */
        pbw_bytes(&wa, 1, SN_RETRY_INFO_URL, strlen(SN_RETRY_INFO_URL)); /* Any.type_url */
        pbw_bytes(&wa, 2, info, wi.len);                                 /* Any.value */
        pbw_bytes(&ws, 3, any, wa.len);                                  /* Status.details */
    }
    if (wd.overflow || wi.overflow || wa.overflow || ws.overflow)
        return 0;
    return ws.len;
}

/* ---- request bodies: copy out of gRPC and decompress with a ceiling --------------------- */

/* Makes room for at least `need` bytes, growing geometrically but never past `ceiling`, and
 * charges the growth to b->charge when set. Returns 0, or -1 if `need` is above the ceiling,
 * memory is short or the budget refused (b->charge->refused; the buffer is kept). */
static int buf_reserve(sn_buf *b, size_t need, size_t ceiling)
{
    if (need <= b->cap)
        return 0;
    if (need > ceiling)
        return -1;
    size_t cap = b->cap < SN_BUF_MIN ? SN_BUF_MIN : b->cap;
    while (cap < need)
        cap = cap > ceiling / 2 ? ceiling : cap * 2;
    if (cap > ceiling)
        cap = ceiling;
    if (b->charge != NULL) {
        sn_charge *ch = b->charge;
        int rc = ch->budget->reserve(ch->budget->ud, cap - b->cap, *ch->held);
        if (rc != 0) {
            ch->refused = rc;
            return -1;
        }
        *ch->held += cap - b->cap;
    }
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

/* Frees the buffer's memory if it grew past `keep`, so one huge request does not pin memory
 * for the life of the server. */
static void buf_trim(sn_buf *b, size_t keep)
{
    b->len = 0;
    if (b->cap > keep) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
}

/* Copies an uncompressed message into `out`. */
static sn_body_rc copy_message(grpc_byte_buffer *bb, size_t limit, sn_buf *out)
{
    size_t total = grpc_byte_buffer_length(bb);
    out->len = 0;
    if (total > limit)
        return SN_BODY_TOO_LARGE;
    if (buf_reserve(out, total == 0 ? 1 : total, limit + 1) != 0)
        return SN_BODY_NOMEM;
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb))
        return SN_BODY_CORRUPT;
    grpc_slice sl;
    while (grpc_byte_buffer_reader_next(&rd, &sl)) {
        size_t n = GRPC_SLICE_LENGTH(sl);
        if (n > total - out->len) { /* cannot happen: the length was summed above */
            grpc_slice_unref(sl);
            grpc_byte_buffer_reader_destroy(&rd);
            return SN_BODY_CORRUPT;
        }
        memcpy(out->data + out->len, GRPC_SLICE_START_PTR(sl), n);
        out->len += n;
        grpc_slice_unref(sl);
    }
    grpc_byte_buffer_reader_destroy(&rd);
    return SN_BODY_OK;
}

/* Inflates a gzip (window_bits 31) or zlib-wrapped deflate (15) message into `out`, stopping
 * as soon as the output would pass `limit`: at most limit + 1 bytes are ever allocated.
 * Concatenated gzip members are accepted; trailing garbage is corrupt. */
static sn_body_rc inflate_message(grpc_byte_buffer *bb, int window_bits, size_t limit, sn_buf *out)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    out->len = 0;
    if (inflateInit2(&zs, window_bits) != Z_OK)
        return SN_BODY_NOMEM;
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb)) {
        inflateEnd(&zs);
        return SN_BODY_CORRUPT;
    }
    sn_body_rc rc = SN_BODY_OK;
    int zrc = Z_OK;
    bool any_input = false;
    grpc_slice sl;
    while (rc == SN_BODY_OK && grpc_byte_buffer_reader_next(&rd, &sl)) {
        zs.next_in = GRPC_SLICE_START_PTR(sl);
        zs.avail_in = (uInt)GRPC_SLICE_LENGTH(sl);
        if (zs.avail_in > 0)
            any_input = true;
        while (rc == SN_BODY_OK && zs.avail_in > 0) {
            if (zrc == Z_STREAM_END) { /* another gzip member follows */
                if (inflateReset(&zs) != Z_OK) {
                    rc = SN_BODY_CORRUPT;
                    break;
                }
            }
            if (out->len == out->cap && buf_reserve(out, out->cap + 1, limit + 1) != 0) {
                rc = out->cap >= limit + 1 ? SN_BODY_TOO_LARGE : SN_BODY_NOMEM;
                break;
            }
            zs.next_out = out->data + out->len;
            zs.avail_out = (uInt)(out->cap - out->len);
            zrc = inflate(&zs, Z_NO_FLUSH);
            out->len = (size_t)(zs.next_out - out->data);
            if (out->len > limit)
                rc = SN_BODY_TOO_LARGE;
            else if (zrc == Z_MEM_ERROR)
                rc = SN_BODY_NOMEM;
            else if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR)
                rc = SN_BODY_CORRUPT;
        }
        grpc_slice_unref(sl);
    }
    grpc_byte_buffer_reader_destroy(&rd);
    /* Output still pending inside zlib after the last input byte. */
    while (rc == SN_BODY_OK && any_input && zrc != Z_STREAM_END) {
        if (out->len == out->cap && buf_reserve(out, out->cap + 1, limit + 1) != 0) {
            rc = out->cap >= limit + 1 ? SN_BODY_TOO_LARGE : SN_BODY_NOMEM;
            break;
        }
        zs.next_out = out->data + out->len;
        zs.avail_out = (uInt)(out->cap - out->len);
        zrc = inflate(&zs, Z_NO_FLUSH);
        out->len = (size_t)(zs.next_out - out->data);
        if (out->len > limit)
            rc = SN_BODY_TOO_LARGE;
        else if (zrc != Z_OK && zrc != Z_STREAM_END)
            rc = SN_BODY_CORRUPT; /* Z_BUF_ERROR here: truncated input */
    }
    inflateEnd(&zs);
    if (rc == SN_BODY_OK && any_input && zrc != Z_STREAM_END)
        rc = SN_BODY_CORRUPT;
    return rc;
}

/* True if `p` starts with a zstd frame (magic 0xFD2FB528, little endian). */
static bool looks_like_zstd(const uint8_t *p, size_t n)
{
    return n >= 4 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f && p[3] == 0xfd;
}

/* Decompresses zstd frames from `in` into `out`, never past `limit` (a frame that declares a
 * larger content size is refused before anything is allocated; the window is capped near the
 * limit). `*dctx` is created on first use and kept by the caller. */
static sn_body_rc unzstd_message(const sn_buf *in, size_t limit, ZSTD_DCtx **dctx, sn_buf *out)
{
    out->len = 0;
    unsigned long long declared = ZSTD_getFrameContentSize(in->data, in->len);
    if (declared == ZSTD_CONTENTSIZE_ERROR)
        return SN_BODY_CORRUPT;
    if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared > limit)
        return SN_BODY_TOO_LARGE;
    if (*dctx == NULL) {
        *dctx = ZSTD_createDCtx();
        if (*dctx == NULL)
            return SN_BODY_NOMEM;
    }
    ZSTD_DCtx_reset(*dctx, ZSTD_reset_session_and_parameters);
    int wlog = 10;
    while (wlog < 27 && ((size_t)1 << wlog) < limit)
        wlog++;
    ZSTD_DCtx_setParameter(*dctx, ZSTD_d_windowLogMax, wlog);

    ZSTD_inBuffer zin = {in->data, in->len, 0};
    size_t zrc = 1;
    while (zin.pos < zin.size || zrc != 0) {
        if (out->len == out->cap && buf_reserve(out, out->cap + 1, limit + 1) != 0)
            return out->cap >= limit + 1 ? SN_BODY_TOO_LARGE : SN_BODY_NOMEM;
        ZSTD_outBuffer zout = {out->data, out->cap, out->len};
        size_t before_in = zin.pos, before_out = zout.pos;
        zrc = ZSTD_decompressStream(*dctx, &zout, &zin);
        out->len = zout.pos;
        if (ZSTD_isError(zrc))
            return ZSTD_getErrorCode(zrc) == ZSTD_error_frameParameter_windowTooLarge
                       ? SN_BODY_TOO_LARGE
                       : SN_BODY_CORRUPT;
        if (out->len > limit)
            return SN_BODY_TOO_LARGE;
        if (zin.pos == zin.size && zrc != 0 && zout.pos < zout.size && before_in == zin.pos &&
            before_out == zout.pos)
            return SN_BODY_CORRUPT; /* truncated frame */
    }
    return SN_BODY_OK;
}

/* Produces the contiguous, decompressed request body of `bb` in *body and *len, using the two
 * handler-thread buffers. gzip and deflate come from grpc-encoding (core decompression is
 * off, so the byte buffer keeps its algorithm); zstd, unknown to this gRPC core, arrives as a
 * plain message and is recognised by its frame magic (see docs/otlp-receiver.md). */
static sn_body_rc request_body(sn_grpc_unary *s, sn_grpc_call *c, sn_buf *a, sn_buf *b,
                               ZSTD_DCtx **dctx, const uint8_t **body, size_t *len)
{
    static const uint8_t empty[1] = {0};
    grpc_byte_buffer *bb = c->request;
    size_t limit = s->cfg.max_message_bytes;
    /* Decompressed output is charged to the call as the buffer grows, and bounded at once by
     * what the budget has left. */
    sn_charge ch = {&s->cfg.budget, &c->reserved, 0};
    sn_charge *charge = s->cfg.budget.reserve != NULL ? &ch : NULL;
    size_t dlimit = limit;
    if (charge != NULL) {
        size_t left = s->cfg.budget.available(s->cfg.budget.ud);
        size_t room = a->cap + b->cap + left; /* the kept buffers are the handler's own */
        if (room >= left && room < dlimit)
            dlimit = room;
    }
    sn_body_rc rc;
    sn_buf *res = a;

    switch (bb->data.raw.compression) {
    case GRPC_COMPRESS_GZIP:
    case GRPC_COMPRESS_DEFLATE:
        c->compressed = true;
        a->charge = charge;
        rc = inflate_message(bb, bb->data.raw.compression == GRPC_COMPRESS_GZIP ? 15 + 16 : 15,
                             dlimit, a);
        a->charge = NULL;
        break;
    default:
        rc = copy_message(bb, limit, a); /* charged with the message (reserve_message) */
        if (rc == SN_BODY_OK && s->cfg.accept_zstd && looks_like_zstd(a->data, a->len)) {
            b->charge = charge;
            rc = unzstd_message(a, dlimit, dctx, b);
            b->charge = NULL;
            if (rc == SN_BODY_OK)
                res = b;
            else if (rc == SN_BODY_CORRUPT)
                rc = SN_BODY_OK; /* not zstd after all: hand over the bytes as they came */
            else
                c->compressed = true;
            if (rc == SN_BODY_OK && res == b)
                c->compressed = true;
        }
        break;
    }
    if (ch.refused != 0 || (rc == SN_BODY_TOO_LARGE && dlimit < limit))
        return ch.refused == -E2BIG ? SN_BODY_TOO_LARGE : SN_BODY_OVER_BUDGET;
    if (rc != SN_BODY_OK)
        return rc;
    if (charge != NULL && c->compressed) {
        /* Half the output again for the decoded data. */
        int brc = s->cfg.budget.reserve(s->cfg.budget.ud, res->len / 2, c->reserved);
        if (brc != 0)
            return brc == -E2BIG ? SN_BODY_TOO_LARGE : SN_BODY_OVER_BUDGET;
        c->reserved += res->len / 2;
    }
    *body = res->len > 0 ? res->data : empty;
    *len = res->len;
    return SN_BODY_OK;
}

/* ---- call lifecycle -------------------------------------------------------------------- */

/* Requests new calls from gRPC until SN_ACCEPT_SLOTS are waiting or the pool is empty.
 * Caller holds s->mu. A request gRPC refuses returns its struct to the pool. */
static void post_requests_locked(sn_grpc_unary *s)
{
    while (!s->shutting_down && s->waiting < SN_ACCEPT_SLOTS && s->free_list != NULL) {
        sn_grpc_call *c = s->free_list;
        s->free_list = c->next;
        c->next = NULL;
        c->phase = SN_CALL_WAITING;
        grpc_call_details_init(&c->details);
        grpc_metadata_array_init(&c->request_md);
        s->waiting++;
        grpc_call_error e = grpc_server_request_call(s->server, &c->call, &c->details,
                                                     &c->request_md, s->cq, s->cq, c);
        if (e != GRPC_CALL_OK) {
            s->waiting--;
            grpc_metadata_array_destroy(&c->request_md);
            grpc_call_details_destroy(&c->details);
            c->phase = SN_CALL_FREE;
            c->next = s->free_list;
            s->free_list = c;
            break;
        }
    }
}

/* Starts reading a call's message (RECV_MESSAGE); the call was counted in s->reading. A batch
 * gRPC refuses releases the call. Any thread; not under s->mu. */
static void release_call(sn_grpc_unary *s, sn_grpc_call *c);
static void start_read(sn_grpc_unary *s, sn_grpc_call *c)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->request;
    c->phase = SN_CALL_READING;
    if (grpc_call_start_batch(c->call, &op, 1, c, NULL) != GRPC_CALL_OK) {
        pthread_mutex_lock(&s->mu);
        s->reading--;
        pthread_mutex_unlock(&s->mu);
        release_call(s, c);
    }
}

/* May one more call start reading (cfg.max_held_bytes)? Yes when nothing is held or read
 * (so one call always proceeds), or while the held bytes and the reads under way (each
 * counted at the message estimate) stay under the bound, or when shutting down. Caller holds
 * s->mu. */
static bool read_allowed_locked(const sn_grpc_unary *s)
{
    if (s->cfg.max_held_bytes == 0 || s->shutting_down)
        return true;
    size_t pending = s->held_bytes + (size_t)s->reading * atomic_load(&s->msg_estimate);
    return (s->held_bytes == 0 && s->reading == 0) || pending < s->cfg.max_held_bytes;
}

/* Starts the reads of parked calls while read_allowed_locked. Any thread; takes s->mu. */
static void resume_parked(sn_grpc_unary *s)
{
    for (;;) {
        pthread_mutex_lock(&s->mu);
        sn_grpc_call *c = s->parked_head;
        if (c == NULL || !read_allowed_locked(s)) {
            pthread_mutex_unlock(&s->mu);
            return;
        }
        s->parked_head = c->next;
        if (s->parked_head == NULL)
            s->parked_tail = NULL;
        s->parked--;
        c->next = NULL;
        s->reading++;
        pthread_mutex_unlock(&s->mu);
        start_read(s, c);
    }
}

/* The call's message no longer counts as held (its bytes were copied out or dropped); parked
 * reads may start. Any thread; takes s->mu. No-op for a call not counted. */
static void unhold(sn_grpc_unary *s, sn_grpc_call *c)
{
    if (c->held == 0)
        return;
    pthread_mutex_lock(&s->mu);
    s->held_bytes -= c->held;
    c->held = 0;
    bool parked = s->parked_head != NULL;
    pthread_mutex_unlock(&s->mu);
    if (parked)
        resume_parked(s);
}

/* Frees everything a call holds (gRPC call, metadata, buffers, slices), returns the struct
 * to the pool and tops up the waiting requests. Any thread; takes s->mu. */
static void release_call(sn_grpc_unary *s, sn_grpc_call *c)
{
    sn_call_phase phase = c->phase;
    unhold(s, c);
    if (c->request != NULL)
        grpc_byte_buffer_destroy(c->request);
    if (c->response != NULL)
        grpc_byte_buffer_destroy(c->response);
    grpc_slice_unref(c->status_message);
    if (c->has_trailer)
        grpc_slice_unref(c->trailer.value);
    grpc_metadata_array_destroy(&c->request_md);
    grpc_call_details_destroy(&c->details);
    if (c->call != NULL)
        grpc_call_unref(c->call);
    bool admitted = c->admitted;
    if (c->reserved > 0)
        s->cfg.budget.release(s->cfg.budget.ud, c->reserved);
    memset(c, 0, sizeof *c);
    c->srv = s;
    c->status_message = grpc_empty_slice();

    pthread_mutex_lock(&s->mu);
    if (phase == SN_CALL_WAITING)
        s->waiting--;
    else
        s->live--;
    if (admitted)
        s->admitted--;
    c->next = s->free_list;
    s->free_list = c;
    post_requests_locked(s);
    pthread_mutex_unlock(&s->mu);
}

/* Sends the call's answer: `status` and `msg` (grpc-message), a google.rpc.Status trailer
 * with RetryInfo when retry_ms >= 0, and for OK the response message `resp` (len bytes).
 * The completion arrives on the CQ thread, which releases the call; if gRPC refuses the batch
 * the call is released here. Any thread. */
static void answer(sn_grpc_unary *s, sn_grpc_call *c, grpc_status_code status, const char *msg,
                   int64_t retry_ms, const uint8_t *resp, size_t resp_len)
{
    grpc_op ops[4];
    size_t n = 0;
    memset(ops, 0, sizeof ops);

    grpc_slice_unref(c->status_message);
    c->status_message = grpc_slice_from_copied_string(msg);
    if (retry_ms >= 0) {
        uint8_t bin[SN_PB_SMALL];
        size_t blen = encode_status_details(bin, sizeof bin, status, msg, retry_ms);
        if (blen > 0) {
            c->trailer.key = grpc_slice_from_static_string(SN_STATUS_BIN_KEY);
            c->trailer.value = grpc_slice_from_copied_buffer((const char *)bin, blen);
            c->has_trailer = true;
        }
    }
    /* Initial metadata goes out for errors too: with this gRPC core a batch with only a
     * status (a trailers-only answer) left the client waiting until its deadline. */
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    n++;
    if (status == GRPC_STATUS_OK) {
        grpc_slice sl = grpc_slice_from_copied_buffer((const char *)resp, resp_len);
        c->response = grpc_raw_byte_buffer_create(resp_len > 0 ? &sl : NULL, resp_len > 0);
        grpc_slice_unref(sl);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->response;
        n++;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = status;
    ops[n].data.send_status_from_server.status_details = msg[0] != '\0' ? &c->status_message : NULL;
    ops[n].data.send_status_from_server.trailing_metadata_count = c->has_trailer ? 1 : 0;
    ops[n].data.send_status_from_server.trailing_metadata = c->has_trailer ? &c->trailer : NULL;
    n++;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &c->cancelled;
    n++;

    c->phase = SN_CALL_ANSWERING;
    c->t_answer = stage_now(s);
    if (grpc_call_start_batch(c->call, ops, n, c, NULL) != GRPC_CALL_OK)
        release_call(s, c);
}

/* Sends the handler's reply: the response message with OK, else the code and message (with
 * RetryInfo when the handler asked for it). An unknown code or a response claimed larger than
 * its buffer is a handler bug, answered INTERNAL. */
static void answer_reply(sn_grpc_unary *s, sn_grpc_call *c, sn_grpc_reply *r)
{
    r->message[sizeof r->message - 1] = '\0';
    if ((unsigned)r->code >= SN_GRPC_CODE_COUNT) {
        r->code = SN_GRPC_INTERNAL;
        snprintf(r->message, sizeof r->message, "handler answered an unknown status");
    }
    if (r->code == SN_GRPC_OK && r->response_len > r->response_cap) {
        r->code = SN_GRPC_INTERNAL;
        snprintf(r->message, sizeof r->message, "handler reply larger than max_reply_bytes");
    }
    atomic_fetch_add(&s->st_answers[r->code], 1);
    if (r->code == SN_GRPC_OK) {
        answer(s, c, GRPC_STATUS_OK, "", -1, r->response, r->response_len);
        return;
    }
    int64_t retry = -1;
    if (r->retry)
        retry = r->retry_after_ms > 0 ? (int64_t)r->retry_after_ms : (int64_t)s->cfg.busy_retry_ms;
    answer(s, c, (grpc_status_code)r->code, r->message, retry, NULL, 0);
}

/* Refuses a call for max_calls / max_queued_bytes: UNAVAILABLE with RetryInfo. */
static void answer_busy(sn_grpc_unary *s, sn_grpc_call *c)
{
    atomic_fetch_add(&s->st_busy, 1);
    answer(s, c, GRPC_STATUS_UNAVAILABLE, "receiver busy: too many requests in progress",
           (int64_t)s->cfg.busy_retry_ms, NULL, 0);
}

/* Refuses a call larger than the whole of cfg.budget: RESOURCE_EXHAUSTED, no RetryInfo (a
 * retry would be refused the same way). */
static void answer_too_big(sn_grpc_unary *s, sn_grpc_call *c)
{
    atomic_fetch_add(&s->st_too_large, 1);
    answer(s, c, GRPC_STATUS_RESOURCE_EXHAUSTED,
           "request larger than the receiver's memory limit allows", -1, NULL, 0);
}

/* Refuses a call whose bytes do not fit in cfg.budget: UNAVAILABLE with RetryInfo. Nothing of
 * the request is kept, so the client's retry is no duplicate. */
static void answer_budget(sn_grpc_unary *s, sn_grpc_call *c)
{
    atomic_fetch_add(&s->st_budget, 1);
    answer(s, c, GRPC_STATUS_UNAVAILABLE, "receiver over its memory limit; retry later",
           (int64_t)s->cfg.busy_retry_ms, NULL, 0);
}

/* Handler thread: turns one queued call into an answer. The request byte buffer is freed as
 * soon as its bytes are copied out. */
static void serve(sn_grpc_unary *s, sn_grpc_call *c, sn_buf *a, sn_buf *b, ZSTD_DCtx **dctx)
{
    char msg[96];
    c->t_handle = stage_now(s);
    if (atomic_load(&s->cancel_all)) {
        answer(s, c, GRPC_STATUS_UNAVAILABLE, "receiver shutting down",
               (int64_t)s->cfg.busy_retry_ms, NULL, 0);
        return;
    }
    gpr_timespec deadline = gpr_convert_clock_type(c->details.deadline, GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(deadline, gpr_now(GPR_CLOCK_MONOTONIC)) < 0) {
        /* The client has given up; handling the data now would double it on a retry. */
        atomic_fetch_add(&s->st_expired, 1);
        answer(s, c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded before handling", -1, NULL,
               0);
        return;
    }
    const uint8_t *body = NULL;
    size_t len = 0;
    sn_body_rc rc = request_body(s, c, a, b, dctx, &body, &len);
    grpc_byte_buffer_destroy(c->request);
    c->request = NULL;
    unhold(s, c);
    switch (rc) {
    case SN_BODY_OK:
        break;
    case SN_BODY_TOO_LARGE:
        atomic_fetch_add(&s->st_too_large, 1);
        snprintf(msg, sizeof msg, "request larger than %zu bytes after decompression",
                 s->cfg.max_message_bytes);
        answer(s, c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg, -1, NULL, 0);
        return;
    case SN_BODY_CORRUPT:
        atomic_fetch_add(&s->st_bad_encoding, 1);
        answer(s, c, GRPC_STATUS_INVALID_ARGUMENT, "request message cannot be decompressed", -1,
               NULL, 0);
        return;
    case SN_BODY_OVER_BUDGET:
        answer_budget(s, c);
        return;
    case SN_BODY_NOMEM:
    default:
        answer(s, c, GRPC_STATUS_UNAVAILABLE, "receiver out of memory",
               (int64_t)s->cfg.busy_retry_ms, NULL, 0);
        return;
    }
    sn_grpc_reply reply;
    memset(&reply, 0, sizeof reply);
    reply.response = s->reply_buf;
    reply.response_cap = s->cfg.max_reply_bytes;
    if (s->cfg.allow_deferred) {
        reply.later = (sn_grpc_pending *)c;
        c->phase = SN_CALL_DEFERRED; /* before the handler: it may finish on another thread */
    }
    atomic_fetch_add(&s->st_requests[c->method], 1);
    atomic_fetch_add(&s->st_bytes_in, c->request_len);
    atomic_fetch_add(&s->st_bytes_out, len);
    s->cfg.handler(c->method, body, len, &reply, s->cfg.handler_ud);
    if (reply.deferred && reply.later != NULL)
        return; /* c may already be answered and released: not touched again here */
    answer_reply(s, c, &reply);
}

void sn_grpc_unary_finish(sn_grpc_pending *later, sn_grpc_reply *reply)
{
    sn_grpc_call *c = (sn_grpc_call *)later;
    assert(c->phase == SN_CALL_DEFERRED);
    reply->later = NULL;
    reply->deferred = false;
    answer_reply(c->srv, c, reply);
}

/* The handler thread: drains the FIFO until told to stop with the FIFO empty. */
static void *worker_main(void *arg)
{
    sn_grpc_unary *s = arg;
    sn_buf a = {NULL, 0, 0, NULL}, b = {NULL, 0, 0, NULL};
    ZSTD_DCtx *dctx = NULL;

    pthread_setname_np(pthread_self(), "sn-grpc-handler");
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->q_head == NULL && !s->worker_stop) {
            s->worker_idle = true;
            pthread_cond_wait(&s->cv, &s->mu);
        }
        s->worker_idle = false;
        sn_grpc_call *c = s->q_head;
        if (c == NULL) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        s->q_head = c->next;
        if (s->q_head == NULL)
            s->q_tail = NULL;
        c->next = NULL;
        s->queued_bytes -= c->request_len;
        pthread_mutex_unlock(&s->mu);

        serve(s, c, &a, &b, &dctx);
        /* With a memory budget the buffers belong to the call that grew them: what it reserved
         * for them is released with it, so they go too (down to SN_BUF_MIN). */
        size_t keep = s->cfg.budget.reserve != NULL ? SN_BUF_MIN : SN_BUF_KEEP;
        buf_trim(&a, keep);
        buf_trim(&b, keep);
    }
    free(a.data);
    free(b.data);
    ZSTD_freeDCtx(dctx);
    return NULL;
}

/* CQ thread: reserves gRPC's buffers for a new call's message before it is read (twice the
 * estimate: the message and its read chunks' slack) and sets c->reserved. The estimate comes
 * from earlier messages and may exceed what one request may take now (the budget's largest
 * request can fall below it), so a "too large" answer here says nothing about this call: the
 * estimate is halved (down to SN_BUF_MIN) until it fits, and only the message's real size
 * (reserve_message) can refuse the call for good. Returns 0, or -EAGAIN when even the least
 * estimate does not fit now (refused for now: UNAVAILABLE + RetryInfo). */
static int reserve_estimate(sn_grpc_unary *s, sn_grpc_call *c)
{
    size_t est = atomic_load(&s->msg_estimate);
    for (;;) {
        int rc = s->cfg.budget.reserve(s->cfg.budget.ud, 2 * est, 0);
        if (rc == 0) {
            c->reserved = 2 * est;
            return 0;
        }
        if (rc != -E2BIG || est <= SN_BUF_MIN)
            return -EAGAIN;
        est = est / 2 > SN_BUF_MIN ? est / 2 : SN_BUF_MIN;
        atomic_store(&s->msg_estimate, est); /* the next calls start below the ceiling */
    }
}

/* CQ thread: a new call arrived. Unknown methods are answered UNIMPLEMENTED; calls over
 * max_calls are refused; the rest start reading their message. */
static void on_new_call(sn_grpc_unary *s, sn_grpc_call *c)
{
    c->t_new = stage_now(s);
    int method = -1;
    for (unsigned i = 0; i < s->cfg.nmethods; i++) {
        if (grpc_slice_str_cmp(c->details.method, s->cfg.methods[i]) == 0) {
            method = (int)i;
            break;
        }
    }
    /* One admission decision, in this order: a known method, a max_calls slot, then memory --
     * the budget's reservation (which also refuses while over its resident-set threshold). A
     * call refused for max_calls takes no budget; one refused for memory gives its slot back at
     * once. */
    pthread_mutex_lock(&s->mu);
    s->waiting--;
    s->live++;
    bool admit = method >= 0 && s->admitted < s->cfg.max_calls;
    if (admit) {
        s->admitted++;
        c->admitted = true;
    }
    post_requests_locked(s);
    pthread_mutex_unlock(&s->mu);

    if (method < 0) {
        atomic_fetch_add(&s->st_unimplemented, 1);
        answer(s, c, GRPC_STATUS_UNIMPLEMENTED, "unknown method", -1, NULL, 0);
        return;
    }
    if (!admit) {
        answer_busy(s, c);
        return;
    }
    if (s->cfg.budget.reserve != NULL && reserve_estimate(s, c) != 0) {
        /* Before the message is read: the refusal costs no request buffer. */
        pthread_mutex_lock(&s->mu);
        s->admitted--;
        c->admitted = false;
        pthread_mutex_unlock(&s->mu);
        answer_budget(s, c);
        return;
    }
    c->method = (unsigned)method;
    /* cfg.max_held_bytes: over the bound the read waits (gRPC does not assemble the message;
     * its bytes stay within the stream window) until held messages are copied out. */
    pthread_mutex_lock(&s->mu);
    if (s->parked_head != NULL || !read_allowed_locked(s)) {
        c->phase = SN_CALL_READING; /* no batch outstanding until resume_parked */
        if (s->parked_tail != NULL)
            s->parked_tail->next = c;
        else
            s->parked_head = c;
        s->parked_tail = c;
        s->parked++;
        pthread_mutex_unlock(&s->mu);
        atomic_fetch_add(&s->st_read_waits, 1);
        resume_parked(s); /* a call released meanwhile may have made room */
        return;
    }
    s->reading++;
    pthread_mutex_unlock(&s->mu);
    start_read(s, c);
}

/* CQ thread: the message arrived; its call's reservation becomes three times its length (gRPC's
 * buffers with their slack and our copy; once gRPC's are freed, the decoded data) instead of
 * the estimate, and the
 * estimate for the next calls follows the sizes of the messages that fit (the largest recent
 * one, decaying by an eighth per message, at least SN_BUF_MIN; one that never fits does not
 * count, so the estimate stays within the budget). Returns the budget's answer (0, -EAGAIN,
 * -E2BIG). */
static int reserve_message(sn_grpc_unary *s, sn_grpc_call *c)
{
    size_t len = c->request_len;
    size_t want = len > SIZE_MAX / 3 ? SIZE_MAX : 3 * len;
    if (want <= c->reserved) {
        s->cfg.budget.release(s->cfg.budget.ud, c->reserved - want);
    } else {
        int rc = s->cfg.budget.reserve(s->cfg.budget.ud, want - c->reserved, c->reserved);
        if (rc == -E2BIG)
            return rc;
        if (rc != 0)
            goto out_estimate;
    }
    c->reserved = want;
out_estimate:;
    size_t est = atomic_load(&s->msg_estimate);
    est -= est / 8;
    if (est < len)
        est = len;
    if (est < SN_BUF_MIN)
        est = SN_BUF_MIN;
    atomic_store(&s->msg_estimate, est);
    return c->reserved == want ? 0 : -EAGAIN;
}

/* CQ thread: may this call's request be handled on the completion-queue thread
 * (cfg.inline_max_bytes)? Small, of an inline method, and plainly uncompressed: neither
 * grpc-encoding nor a zstd frame, whose output could be far larger than the message. */
static bool inline_wanted(const sn_grpc_unary *s, const sn_grpc_call *c)
{
    if (s->cfg.inline_max_bytes == 0 || c->request_len > s->cfg.inline_max_bytes ||
        (s->cfg.inline_methods >> c->method & 1u) == 0)
        return false;
    const grpc_byte_buffer *bb = c->request;
    if (bb->type != GRPC_BB_RAW || bb->data.raw.compression != GRPC_COMPRESS_NONE)
        return false;
    if (!s->cfg.accept_zstd || c->request_len == 0)
        return true;
    const grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;
    if (sb->count == 0 || GRPC_SLICE_LENGTH(sb->slices[0]) < 4)
        return false; /* cannot tell cheaply: the handler thread looks */
    return !looks_like_zstd(GRPC_SLICE_START_PTR(sb->slices[0]), 4);
}

/* CQ thread: the request message (or its absence) arrived; handle it here (inline_wanted) or
 * queue it for the handler thread. */
static void on_message(sn_grpc_unary *s, sn_grpc_call *c, bool ok)
{
    pthread_mutex_lock(&s->mu);
    s->reading--;
    if (ok && c->request != NULL) {
        c->held = grpc_byte_buffer_length(c->request);
        s->held_bytes += c->held;
    }
    pthread_mutex_unlock(&s->mu);
    if (!ok || c->request == NULL) {
        resume_parked(s);
        /* Cancelled, refused by gRPC (e.g. over the wire size limit: gRPC has already sent
         * RESOURCE_EXHAUSTED) or half-closed without a message. */
        answer(s, c, GRPC_STATUS_INVALID_ARGUMENT, "expected one request message", -1, NULL, 0);
        return;
    }
    c->t_message = stage_now(s);
    c->request_len = grpc_byte_buffer_length(c->request);
    int brc = s->cfg.budget.reserve != NULL ? reserve_message(s, c) : 0;
    if (brc != 0) {
        grpc_byte_buffer_destroy(c->request);
        c->request = NULL;
        unhold(s, c);
        if (brc == -E2BIG)
            answer_too_big(s, c);
        else
            answer_budget(s, c);
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (s->q_head != NULL && s->queued_bytes + c->request_len > s->cfg.max_queued_bytes) {
        pthread_mutex_unlock(&s->mu);
        grpc_byte_buffer_destroy(c->request);
        c->request = NULL;
        unhold(s, c);
        answer_busy(s, c);
        return;
    }
    if (s->q_head == NULL && s->worker_idle && inline_wanted(s, c)) {
        /* Nothing is queued and the handler thread sleeps: only this thread queues, so it stays
         * asleep while this request is handled here, and handlers still run one at a time. */
        pthread_mutex_unlock(&s->mu);
        serve(s, c, &s->inl_a, &s->inl_b, &s->inl_dctx);
        size_t keep = s->cfg.budget.reserve != NULL ? SN_BUF_MIN : SN_BUF_KEEP;
        buf_trim(&s->inl_a, keep);
        buf_trim(&s->inl_b, keep);
        return;
    }
    c->phase = SN_CALL_QUEUED;
    s->queued_bytes += c->request_len;
    if (s->q_tail != NULL)
        s->q_tail->next = c;
    else
        s->q_head = c;
    s->q_tail = c;
    bool idle = s->worker_idle;
    pthread_mutex_unlock(&s->mu);
    /* After the unlock, so the woken handler thread does not run into s->mu still held here;
     * and only when it sleeps (a busy handler thread drains the FIFO before it sleeps again). */
    if (idle)
        pthread_cond_broadcast(&s->cv);
    resume_parked(s); /* the message may be smaller than the estimate it was read at */
}

/* Handles one completion-queue event. Returns false on the queue's final event. */
static bool dispatch(sn_grpc_unary *s, grpc_event ev)
{
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
        return false;
    if (ev.type != GRPC_OP_COMPLETE)
        return true;
    if (ev.tag == &s->shutdown_tag) {
        pthread_mutex_lock(&s->mu);
        s->server_done = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return true;
    }
    sn_grpc_call *c = ev.tag;
    switch (c->phase) {
    case SN_CALL_WAITING:
        if (ev.success)
            on_new_call(s, c);
        else
            release_call(s, c);
        break;
    case SN_CALL_READING:
        on_message(s, c, ev.success != 0);
        break;
    case SN_CALL_ANSWERING:
        stage_observe_call(s, c);
        release_call(s, c);
        break;
    default:
        assert(!"completion for a call in no batch");
        break;
    }
    return true;
}

/* The completion-queue thread. */
static void *cq_main(void *arg)
{
    sn_grpc_unary *s = arg;
    pthread_setname_np(pthread_self(), "sn-grpc-cq");
    while (
        dispatch(s, grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)))
        ;
    return NULL;
}

/* ---- public API -------------------------------------------------------------------------- */

int sn_grpc_unary_read_chunks(bool on)
{
    if (on)
        return 0;
    static const char ours[] = "-tcp_read_chunks";
    const char *env = getenv("GRPC_EXPERIMENTS");
    if (env == NULL || env[0] == '\0')
        return setenv("GRPC_EXPERIMENTS", ours, 1);
    size_t len = sizeof ours + 1 + strlen(env);
    char *v = malloc(len);
    if (v == NULL)
        return -1;
    snprintf(v, len, "%s,%s", ours, env);
    int rc = setenv("GRPC_EXPERIMENTS", v, 1); /* setenv copies */
    free(v);
    return rc;
}

/* gpr_log_func: gRPC's line, as one of ours. */
static void route_log(gpr_log_func_args *args)
{
    sn_log_level lvl = args->severity == GPR_LOG_SEVERITY_ERROR ? SN_LOG_WARN : SN_LOG_DEBUG;
    sn_log(lvl, "grpc", SN_LOG_STR("message", args->message), SN_LOG_STR("file", args->file),
           SN_LOG_INT("line", args->line));
}

void sn_grpc_unary_route_logs(void)
{
    gpr_set_log_function(route_log);
}

void sn_grpc_unary_config_init(sn_grpc_unary_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_message_bytes = SN_UNARY_DEFAULT_MAX_MESSAGE;
    cfg->max_calls = SN_UNARY_DEFAULT_MAX_CALLS;
    cfg->max_queued_bytes = 4 * (size_t)SN_UNARY_DEFAULT_MAX_MESSAGE;
    cfg->max_streams = SN_UNARY_DEFAULT_STREAMS;
    cfg->max_reply_bytes = SN_GRPC_UNARY_DEFAULT_REPLY;
    cfg->busy_retry_ms = SN_UNARY_DEFAULT_RETRY_MS;
    cfg->accept_zstd = true;
}

/* Validates a configuration and fills the defaults for zero fields; messages start with the
 * server's name. */
static int check_config(sn_grpc_unary_config *cfg, char *err, size_t errlen)
{
    const char *name = cfg->name;
    if (cfg->handler == NULL) {
        snprintf(err, errlen, "%s: no handler", name);
        return -EINVAL;
    }
    if (cfg->methods == NULL || cfg->nmethods == 0 || cfg->nmethods > SN_GRPC_UNARY_MAX_METHODS) {
        snprintf(err, errlen, "%s: between 1 and %u methods are needed", name,
                 SN_GRPC_UNARY_MAX_METHODS);
        return -EINVAL;
    }
    for (unsigned i = 0; i < cfg->nmethods; i++) {
        if (cfg->methods[i] == NULL || cfg->methods[i][0] != '/') {
            snprintf(err, errlen, "%s: method %u is not a path like /pkg.Service/Method", name, i);
            return -EINVAL;
        }
    }
    if (cfg->listen == NULL || cfg->listen[0] == '\0' || strrchr(cfg->listen, ':') == NULL) {
        snprintf(err, errlen, "%s: listen address must be host:port", name);
        return -EINVAL;
    }
    if (cfg->max_message_bytes == 0)
        cfg->max_message_bytes = SN_UNARY_DEFAULT_MAX_MESSAGE;
    if (cfg->max_message_bytes > SN_MAX_MESSAGE_CAP) {
        snprintf(err, errlen, "%s: max message size above %u bytes", name, SN_MAX_MESSAGE_CAP);
        return -EINVAL;
    }
    if (cfg->max_calls == 0)
        cfg->max_calls = SN_UNARY_DEFAULT_MAX_CALLS;
    if (cfg->max_calls > SN_MAX_CALLS_CAP) {
        snprintf(err, errlen, "%s: max calls above %u", name, SN_MAX_CALLS_CAP);
        return -EINVAL;
    }
    if (cfg->max_queued_bytes == 0)
        cfg->max_queued_bytes = 4 * cfg->max_message_bytes;
    if (cfg->max_streams == 0)
        cfg->max_streams = SN_UNARY_DEFAULT_STREAMS;
    if (cfg->max_streams > (unsigned)INT32_MAX)
        cfg->max_streams = (unsigned)INT32_MAX;
    if (cfg->window_bytes > 0 && cfg->window_bytes < SN_WINDOW_MIN)
        cfg->window_bytes = SN_WINDOW_MIN;
    if (cfg->window_bytes > SN_WINDOW_MAX) {
        snprintf(err, errlen, "%s: flow-control window above %u bytes", name, SN_WINDOW_MAX);
        return -EINVAL;
    }
    if (cfg->max_reply_bytes == 0)
        cfg->max_reply_bytes = SN_GRPC_UNARY_DEFAULT_REPLY;
    if (cfg->max_reply_bytes > SN_REPLY_CAP) {
        snprintf(err, errlen, "%s: max reply size above %u bytes", name, SN_REPLY_CAP);
        return -EINVAL;
    }
    if (cfg->busy_retry_ms == 0)
        cfg->busy_retry_ms = SN_UNARY_DEFAULT_RETRY_MS;
    if (cfg->budget.reserve != NULL &&
        (cfg->budget.release == NULL || cfg->budget.available == NULL)) {
        snprintf(err, errlen, "%s: a memory budget needs reserve, release and available", name);
        return -EINVAL;
    }
    return 0;
}

int sn_grpc_unary_create(const sn_grpc_unary_config *cfg_in, sn_grpc_unary **out, char *err,
                         size_t errlen)
{
    *out = NULL;
    sn_grpc_unary_config cfg = *cfg_in;
    if (cfg.name == NULL || cfg.name[0] == '\0')
        cfg.name = "grpc";
    int rc = check_config(&cfg, err, errlen);
    if (rc != 0)
        return rc;

    rc = -ENOMEM;
    snprintf(err, errlen, "%s: out of memory", cfg.name);
    sn_grpc_unary *s = calloc(1, sizeof *s);
    if (s == NULL)
        return rc;
    s->cfg = cfg;
    s->listen = strdup(cfg.listen);
    if (s->listen == NULL)
        goto out_free_server;
    s->cfg.listen = s->listen;
    s->name = strdup(cfg.name);
    if (s->name == NULL)
        goto out_free_listen;
    s->cfg.name = s->name;
    s->reply_buf = malloc(cfg.max_reply_bytes);
    if (s->reply_buf == NULL)
        goto out_free_name;
    s->pool_size = 2 * (size_t)cfg.max_calls + SN_ACCEPT_SLOTS;
    s->pool = calloc(s->pool_size, sizeof *s->pool);
    if (s->pool == NULL)
        goto out_free_reply;
    for (size_t i = s->pool_size; i-- > 0;) {
        s->pool[i].srv = s;
        s->pool[i].status_message = grpc_empty_slice();
        s->pool[i].next = s->free_list;
        s->free_list = &s->pool[i];
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    atomic_init(&s->cancel_all, false);
    atomic_init(&s->msg_estimate, (size_t)SN_BUF_MIN);
    for (unsigned i = 0; i < SN_GRPC_STAGE_COUNT; i++)
        if (cfg.stage_seconds[i] != NULL)
            s->timed = true;

    grpc_init();
    grpc_arg args[8];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    size_t receive_max = cfg.max_message_bytes;
    if (cfg.budget.reserve != NULL && cfg.budget.total > 0 && cfg.budget.total / 3 < receive_max)
        receive_max = cfg.budget.total / 3 < SN_BUF_MIN ? SN_BUF_MIN : cfg.budget.total / 3;
    args[0].value.integer = (int)receive_max;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION;
    args[1].value.integer = 0; /* core's decompression has no output limit: we do it */
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_MAX_CONCURRENT_STREAMS;
    args[2].value.integer = (int)cfg.max_streams;
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[3].value.integer = 0; /* a second receiver on the same port must fail, not share */
    size_t nargs = 4;
    if (cfg.window_bytes > 0) {
        /* A fixed, small flow-control window: without it BDP probing lets each stream read ahead
         * megabytes, and TCP reads grow to 4 MiB chunks (docs/otlp-receiver.md, "Memory"). */
        int win = (int)cfg.window_bytes;
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = GRPC_ARG_HTTP2_BDP_PROBE;
        args[nargs++].value.integer = 0;
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES;
        args[nargs++].value.integer = win;
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE;
        args[nargs++].value.integer = win;
    }
    grpc_channel_args chargs = {nargs, args};

    s->server = grpc_server_create(&chargs, NULL);
    if (s->server == NULL)
        goto out_grpc_shutdown;
    s->cq = grpc_completion_queue_create_for_next(NULL);
    if (s->cq == NULL)
        goto out_destroy_server;
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    s->port = grpc_server_add_http2_port(s->server, s->listen, creds);
    grpc_server_credentials_release(creds);
    if (s->port <= 0) {
        snprintf(err, errlen, "%s: cannot listen on %s (address in use or not local)", s->name,
                 s->listen);
        rc = -EADDRNOTAVAIL;
        goto out_destroy_cq;
    }
    err[0] = '\0';
    *out = s;
    return 0;

out_destroy_cq:
    /* A server never started and without a listener needs no shutdown before destroy. */
    grpc_server_destroy(s->server);
    s->server = NULL;
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(s->cq);
out_destroy_server:
    if (s->server != NULL)
        grpc_server_destroy(s->server);
out_grpc_shutdown:
    grpc_shutdown();
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->pool);
out_free_reply:
    free(s->reply_buf);
out_free_name:
    free(s->name);
out_free_listen:
    free(s->listen);
out_free_server:
    free(s);
    return rc;
}

int sn_grpc_unary_port(const sn_grpc_unary *s)
{
    return s->port;
}

int sn_grpc_unary_start(sn_grpc_unary *s)
{
    if (s->started || s->shutting_down)
        return -EALREADY;
    grpc_server_start(s->server);
    pthread_mutex_lock(&s->mu);
    post_requests_locked(s);
    pthread_mutex_unlock(&s->mu);

    /* The threads take no signals: the program's loop thread handles them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->worker_thread, NULL, worker_main, s);
    if (rc != 0)
        goto out_restore_mask;
    rc = pthread_create(&s->cq_thread, NULL, cq_main, s);
    if (rc != 0)
        goto out_stop_worker;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    s->started = true;
    return 0;

out_stop_worker:
    pthread_mutex_lock(&s->mu);
    s->worker_stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->worker_thread, NULL);
out_restore_mask:
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    sn_grpc_unary_shutdown(s, 0); /* without threads: drains the queue inline */
    return -rc;
}

/* Waits (without the CQ thread) until the shutdown tag, then until the queue is drained. */
static void drain_inline(sn_grpc_unary *s, bool want_tag)
{
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return;
        if (!dispatch(s, ev))
            return;
        if (want_tag && s->server_done)
            return;
    }
}

void sn_grpc_unary_shutdown(sn_grpc_unary *s, uint32_t grace_ms)
{
    pthread_mutex_lock(&s->mu);
    if (s->shutting_down) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->shutting_down = true;
    pthread_mutex_unlock(&s->mu);
    resume_parked(s); /* parked calls read now (or fail once cancelled) and are answered */

    bool threads = s->started;
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    if (!threads) {
        drain_inline(s, true);
    } else {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += grace_ms / 1000;
        until.tv_nsec += (long)(grace_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&s->mu);
        while (!s->server_done) {
            if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT)
                break;
        }
        if (!s->server_done) {
            atomic_store(&s->cancel_all, true);
            pthread_mutex_unlock(&s->mu);
            grpc_server_cancel_all_calls(s->server);
            pthread_mutex_lock(&s->mu);
            while (!s->server_done)
                pthread_cond_wait(&s->cv, &s->mu);
        }
        s->worker_stop = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->worker_thread, NULL);
    }
    grpc_server_destroy(s->server);
    s->server = NULL;
    grpc_completion_queue_shutdown(s->cq);
    if (threads)
        pthread_join(s->cq_thread, NULL);
    else
        drain_inline(s, false);
    assert(s->live == 0 && s->waiting == 0);
    s->stopped = true;
}

void sn_grpc_unary_stats_get(const sn_grpc_unary *s, sn_grpc_unary_stats *out)
{
    sn_grpc_unary *m = (sn_grpc_unary *)s; /* atomic_load wants a non-const object */
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < SN_GRPC_UNARY_MAX_METHODS; i++)
        out->requests[i] = atomic_load(&m->st_requests[i]);
    for (unsigned i = 0; i < SN_GRPC_CODE_COUNT; i++)
        out->answers[i] = atomic_load(&m->st_answers[i]);
    out->refused_busy = atomic_load(&m->st_busy);
    out->refused_budget = atomic_load(&m->st_budget);
    out->refused_too_large = atomic_load(&m->st_too_large);
    out->refused_bad_encoding = atomic_load(&m->st_bad_encoding);
    out->unimplemented = atomic_load(&m->st_unimplemented);
    out->expired = atomic_load(&m->st_expired);
    out->bytes_in = atomic_load(&m->st_bytes_in);
    out->bytes_out = atomic_load(&m->st_bytes_out);
    out->read_waits = atomic_load(&m->st_read_waits);
    pthread_mutex_lock(&m->mu);
    out->held_bytes = m->held_bytes;
    out->reads_parked = m->parked;
    out->handler_idle = m->worker_idle ? 1 : 0;
    pthread_mutex_unlock(&m->mu);
}

void sn_grpc_unary_destroy(sn_grpc_unary *s)
{
    if (s == NULL)
        return;
    sn_grpc_unary_shutdown(s, 0);
    grpc_completion_queue_destroy(s->cq);
    grpc_shutdown();
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->pool);
    free(s->reply_buf);
    free(s->inl_a.data);
    free(s->inl_b.data);
    ZSTD_freeDCtx(s->inl_dctx);
    free(s->name);
    free(s->listen);
    free(s);
}
