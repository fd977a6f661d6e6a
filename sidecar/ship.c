/*
 * ship.c -- the Ingest client on the gRPC C core (see ship.h and docs/sidecar.md).
 *
 * One call at a time, so the "completion list" handed from the completion-queue thread to the
 * loop is one slot. The life of a call:
 *
 *   loop:  IDLE --send--> IN_FLIGHT (call started; ship->call set)
 *   cq:    IN_FLIGHT --batch completes--> result parsed, slot filled, ship->call = NULL,
 *          uv_async_send
 *   loop:  on_async: slot emptied, IDLE, callback
 *
 * Locking: `mu` guards the slot and ship->call (the gRPC call handle, which destroy may cancel
 * from the loop thread while the CQ thread finishes it). Everything else is touched by one
 * thread only: cfg, channel and `busy`/`cb`/`ud` by the loop; the call's buffers by whoever
 * owns the call in the phase above.
 */
#include "ship.h"

#include "sentinel/v1/sentinel.pb.h"

#include <errno.h>
#include <pb_decode.h>
#include <pthread.h>
#include <signal.h>
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
#include <grpc/support/time.h>

#if defined(PB_FIELD_32BIT) || defined(PB_NO_ERRMSG) || defined(PB_BUFFER_ONLY)
#error "libprotobuf-nanopb.a is built without PB_FIELD_32BIT, PB_NO_ERRMSG and PB_BUFFER_ONLY"
#endif

#define SN_SHIP_DEADLINE_LIMIT_MS 3600000u
#define SN_SHIP_MESSAGE_LIMIT     ((size_t)256 << 20)

/* The buffers of the one call in flight. */
typedef struct sn_ship_call {
    grpc_call *call;
    grpc_metadata_array initial_md;
    grpc_metadata_array trailing_md;
    grpc_byte_buffer *request;
    grpc_byte_buffer *response;
    grpc_status_code status;
    grpc_slice details;
} sn_ship_call;

struct sn_ship {
    sn_ship_config cfg;
    char *target;
    grpc_channel *channel;
    grpc_completion_queue *cq;
    pthread_t cq_thread;
    uv_async_t *async; /* heap: freed by its close callback, after the ship is gone */

    /* loop thread only */
    bool busy;
    bool closing;
    sn_ship_done_fn cb;
    void *ud;
    sn_ship_call c;

    pthread_mutex_t mu;
    grpc_call *live;     /* the call while the CQ thread may still complete it; under mu */
    bool done;           /* the slot holds a result; under mu */
    sn_ship_result slot; /* under mu */
};

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

/* Copies at most SN_SHIP_MESSAGE_MAX-1 bytes of [p, p+n) into out, NUL-terminated. */
static void set_message(sn_ship_result *r, const char *p, size_t n)
{
    if (n > sizeof r->message - 1)
        n = sizeof r->message - 1;
    memcpy(r->message, p, n);
    r->message[n] = '\0';
}

/* ---- response parsing (CQ thread) ---------------------------------------------------------- */

/* IngestResponse.message: kept up to the result's buffer, the rest read and dropped. */
static bool decode_message_cb(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    (void)f;
    sn_ship_result *r = *arg;
    size_t n = s->bytes_left;
    size_t keep = n < sizeof r->message - 1 ? n : sizeof r->message - 1;
    if (!pb_read(s, (pb_byte_t *)r->message, keep))
        return false;
    r->message[keep] = '\0';
    return pb_read(s, NULL, n - keep);
}

/* Flattens the response message into buf (cap bytes). Returns its length, or -1 if larger. */
static long flatten(grpc_byte_buffer *bb, uint8_t *buf, size_t cap)
{
    size_t total = grpc_byte_buffer_length(bb);
    if (total > cap)
        return -1;
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb))
        return -1;
    size_t off = 0;
    grpc_slice sl;
    while (grpc_byte_buffer_reader_next(&rd, &sl)) {
        size_t n = GRPC_SLICE_LENGTH(sl);
        if (n > cap - off) {
            grpc_slice_unref(sl);
            grpc_byte_buffer_reader_destroy(&rd);
            return -1;
        }
        memcpy(buf + off, GRPC_SLICE_START_PTR(sl), n);
        off += n;
        grpc_slice_unref(sl);
    }
    grpc_byte_buffer_reader_destroy(&rd);
    return (long)off;
}

/* ---- google.rpc.RetryInfo from the trailers ------------------------------------------------ */

/* Reads a length-delimited field's bytes as a substream. */
static bool sub_of(pb_istream_t *s, pb_istream_t *sub)
{
    uint32_t n;
    if (!pb_decode_varint32(s, &n) || n > s->bytes_left)
        return false;
    *sub = pb_istream_from_buffer((const pb_byte_t *)s->state, n);
    return pb_read(s, NULL, n);
}

/* RetryInfo { Duration retry_delay = 1 } with Duration { int64 seconds = 1; int32 nanos = 2 }.
 * Returns the delay in ms (saturated), or -1. */
static int64_t retry_info_ms(pb_istream_t *s)
{
    int64_t ms = -1;
    while (s->bytes_left > 0) {
        pb_wire_type_t wt;
        uint32_t tag;
        bool eof;
        if (!pb_decode_tag(s, &wt, &tag, &eof))
            return -1;
        if (tag != 1 || wt != PB_WT_STRING) {
            if (!pb_skip_field(s, wt))
                return -1;
            continue;
        }
        pb_istream_t d;
        if (!sub_of(s, &d))
            return -1;
        int64_t sec = 0, nanos = 0;
        while (d.bytes_left > 0) {
            if (!pb_decode_tag(&d, &wt, &tag, &eof))
                return -1;
            uint64_t v;
            if ((tag == 1 || tag == 2) && wt == PB_WT_VARINT) {
                if (!pb_decode_varint(&d, &v))
                    return -1;
                if (tag == 1)
                    sec = (int64_t)v;
                else
                    nanos = (int32_t)(uint32_t)v;
            } else if (!pb_skip_field(&d, wt)) {
                return -1;
            }
        }
        if (sec < 0 || nanos < 0)
            return -1;
        ms = sec > INT64_MAX / 2000 ? INT64_MAX / 2 : sec * 1000 + nanos / 1000000;
    }
    return ms;
}

/* google.rpc.Status { ..., repeated Any details = 3 } with Any { string type_url = 1; bytes
 * value = 2 }: the first RetryInfo's delay in ms, or -1. */
static int64_t status_retry_ms(const uint8_t *p, size_t n)
{
    static const char url[] = "type.googleapis.com/google.rpc.RetryInfo";
    pb_istream_t s = pb_istream_from_buffer(p, n);
    while (s.bytes_left > 0) {
        pb_wire_type_t wt;
        uint32_t tag;
        bool eof;
        if (!pb_decode_tag(&s, &wt, &tag, &eof))
            return -1;
        if (tag != 3 || wt != PB_WT_STRING) {
            if (!pb_skip_field(&s, wt))
                return -1;
            continue;
        }
        pb_istream_t any, value = {0};
        if (!sub_of(&s, &any))
            return -1;
        bool is_retry = false, has_value = false;
        while (any.bytes_left > 0) {
            if (!pb_decode_tag(&any, &wt, &tag, &eof))
                return -1;
            pb_istream_t f;
            if (wt != PB_WT_STRING) {
                if (!pb_skip_field(&any, wt))
                    return -1;
                continue;
            }
            if (!sub_of(&any, &f))
                return -1;
            if (tag == 1)
                is_retry =
                    f.bytes_left == sizeof url - 1 && memcmp(f.state, url, sizeof url - 1) == 0;
            else if (tag == 2) {
                value = f;
                has_value = true;
            }
        }
        if (is_retry && has_value)
            return retry_info_ms(&value);
    }
    return -1;
}

/* The RetryInfo delay of a failed call's trailers, or -1. */
static int64_t trailer_retry_ms(const grpc_metadata_array *md)
{
    for (size_t i = 0; i < md->count; i++)
        if (grpc_slice_str_cmp(md->metadata[i].key, "grpc-status-details-bin") == 0)
            return status_retry_ms(GRPC_SLICE_START_PTR(md->metadata[i].value),
                                   GRPC_SLICE_LENGTH(md->metadata[i].value));
    return -1;
}

/* Decodes the IngestResponse in bb into *m (its message into r->message). Returns false with
 * r->message set when it is too large or malformed. The flat copy is sized to the response and
 * freed here: a fixed 64 KiB _Thread_local buffer was part of the static TLS that every thread
 * of the process (16 of them) zeroes at its start, about 1 MiB resident for nothing. */
static bool decode_response(grpc_byte_buffer *bb, sentinel_v1_IngestResponse *m, sn_ship_result *r)
{
    bool ok = false;
    size_t len = grpc_byte_buffer_length(bb);
    uint8_t *buf = NULL;
    if (len > SN_SHIP_RESPONSE_MAX) {
        set_message(r, "IngestResponse too large", strlen("IngestResponse too large"));
        goto out;
    }
    buf = malloc(len > 0 ? len : 1);
    if (buf == NULL) {
        set_message(r, "out of memory", strlen("out of memory"));
        goto out;
    }
    long n = flatten(bb, buf, len);
    if (n < 0) {
        set_message(r, "bad IngestResponse", strlen("bad IngestResponse"));
        goto out;
    }
    m->message.funcs.decode = decode_message_cb;
    m->message.arg = r;
    pb_istream_t is = pb_istream_from_buffer(buf, (size_t)n);
    if (!pb_decode(&is, sentinel_v1_IngestResponse_fields, m)) {
        snprintf(r->message, sizeof r->message, "bad IngestResponse: %s", PB_GET_ERROR(&is));
        goto out;
    }
    ok = true;
out:
    free(buf);
    return ok;
}

/* Turns the finished call into a result. */
static void parse_result(const sn_ship_call *c, bool batch_ok, sn_ship_result *r)
{
    memset(r, 0, sizeof *r);
    r->outcome = SN_SHIP_FAILED;
    if (!batch_ok) {
        r->grpc_status = GRPC_STATUS_UNKNOWN;
        set_message(r, "call failed", strlen("call failed"));
        return;
    }
    if (c->status != GRPC_STATUS_OK) {
        r->grpc_status = (int)c->status;
        set_message(r, (const char *)GRPC_SLICE_START_PTR(c->details),
                    GRPC_SLICE_LENGTH(c->details));
        int64_t ms = trailer_retry_ms(&c->trailing_md);
        if (ms >= 0)
            r->retry_after_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
        return;
    }
    r->grpc_status = GRPC_STATUS_OK;
    if (c->response == NULL) {
        set_message(r, "no IngestResponse", strlen("no IngestResponse"));
        return;
    }
    sentinel_v1_IngestResponse m = sentinel_v1_IngestResponse_init_zero;
    if (!decode_response(c->response, &m, r))
        return;
    r->acknowledged_sequence = m.acknowledged_sequence;
    r->features = m.features;
    switch (m.status) {
    case sentinel_v1_IngestStatus_INGEST_STATUS_OK:
        r->outcome = SN_SHIP_ACKED;
        return;
    case sentinel_v1_IngestStatus_INGEST_STATUS_DUPLICATE:
        r->outcome = SN_SHIP_DUPLICATE;
        return;
    case sentinel_v1_IngestStatus_INGEST_STATUS_RETRY_AFTER:
        r->outcome = SN_SHIP_RETRY_AFTER;
        r->retry_after_ms = m.retry_after_ms;
        return;
    case sentinel_v1_IngestStatus_INGEST_STATUS_UNSPECIFIED:
        break;
    }
    r->acknowledged_sequence = 0;
    r->features = 0;
    snprintf(r->message, sizeof r->message, "IngestResponse with status %d", (int)m.status);
}

/* Frees what the call holds (the ship's call buffers are reused by the next send). */
static void release_call(sn_ship_call *c)
{
    if (c->request != NULL)
        grpc_byte_buffer_destroy(c->request);
    if (c->response != NULL)
        grpc_byte_buffer_destroy(c->response);
    grpc_metadata_array_destroy(&c->initial_md);
    grpc_metadata_array_destroy(&c->trailing_md);
    grpc_slice_unref(c->details);
    if (c->call != NULL)
        grpc_call_unref(c->call);
    memset(c, 0, sizeof *c);
    c->details = grpc_empty_slice();
}

/* The completion-queue thread: completes calls into the slot until the queue shuts down. */
static void *cq_main(void *arg)
{
    sn_ship *ship = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the loop */
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(ship->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        sn_ship_call *c = ev.tag;
        sn_ship_result r;
        parse_result(c, ev.success != 0, &r);
        pthread_mutex_lock(&ship->mu);
        ship->live = NULL; /* destroy may no longer cancel it */
        pthread_mutex_unlock(&ship->mu);
        release_call(c);
        pthread_mutex_lock(&ship->mu);
        ship->slot = r;
        ship->done = true;
        pthread_mutex_unlock(&ship->mu);
        uv_async_send(ship->async);
    }
    return NULL;
}

/* ---- loop side ----------------------------------------------------------------------------- */

/* Takes the result out of the slot, if there is one. */
static bool take_result(sn_ship *ship, sn_ship_result *r)
{
    pthread_mutex_lock(&ship->mu);
    bool done = ship->done;
    if (done) {
        *r = ship->slot;
        ship->done = false;
    }
    pthread_mutex_unlock(&ship->mu);
    return done;
}

/* Delivers a taken result: the shipper is idle again before the callback runs, so the
 * callback may send again. Nothing of `ship` is touched after the callback. */
static void deliver(sn_ship *ship, const sn_ship_result *r)
{
    sn_ship_done_fn cb = ship->cb;
    void *ud = ship->ud;
    ship->busy = false;
    ship->cb = NULL;
    ship->ud = NULL;
    uv_unref((uv_handle_t *)ship->async);
    cb(ship, r, ud);
}

static void on_async(uv_async_t *h)
{
    sn_ship *ship = h->data;
    sn_ship_result r;
    if (ship == NULL || !ship->busy || !take_result(ship, &r))
        return; /* a wake-up for a result destroy already delivered */
    deliver(ship, &r);
}

static void on_async_closed(uv_handle_t *h)
{
    free(h);
}

void sn_ship_config_init(sn_ship_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->aggregator = "localhost:9090";
    cfg->deadline_ms = SN_SHIP_DEADLINE_MS_DEFAULT;
    cfg->max_message_bytes = SN_SHIP_MAX_MESSAGE_DEFAULT;
    cfg->reconnect_initial_ms = SN_SHIP_RECONNECT_INITIAL_MS;
    cfg->reconnect_max_ms = SN_SHIP_RECONNECT_MAX_MS;
}

static int check_config(const sn_ship_config *cfg, char *err, size_t errlen)
{
    if (cfg->aggregator == NULL || cfg->aggregator[0] == '\0' ||
        strchr(cfg->aggregator, ':') == NULL || strnlen(cfg->aggregator, 1024) >= 1024) {
        set_err(err, errlen, "ship: aggregator must be host:port");
        return -EINVAL;
    }
    if (cfg->deadline_ms < 1 || cfg->deadline_ms > SN_SHIP_DEADLINE_LIMIT_MS) {
        set_err(err, errlen, "ship: deadline_ms must be 1 to 3600000");
        return -EINVAL;
    }
    if (cfg->max_message_bytes < 1024 || cfg->max_message_bytes > SN_SHIP_MESSAGE_LIMIT) {
        set_err(err, errlen, "ship: max_message_bytes must be 1 KiB to 256 MiB");
        return -EINVAL;
    }
    if (cfg->reconnect_initial_ms < 100 || cfg->reconnect_max_ms < cfg->reconnect_initial_ms ||
        cfg->reconnect_max_ms > SN_SHIP_DEADLINE_LIMIT_MS) {
        set_err(err, errlen,
                "ship: reconnect_initial_ms must be >= 100 and <= reconnect_max_ms (<= 1 h)");
        return -EINVAL;
    }
    return 0;
}

int sn_ship_create(const sn_ship_config *cfg, uv_loop_t *loop, sn_ship **out, char *err,
                   size_t errlen)
{
    int rc = check_config(cfg, err, errlen);
    if (rc != 0)
        return rc;
    rc = -ENOMEM;
    sn_ship *ship = calloc(1, sizeof *ship);
    if (ship == NULL)
        goto out_nomem;
    ship->cfg = *cfg;
    ship->target = strdup(cfg->aggregator);
    if (ship->target == NULL)
        goto out_free_ship;
    ship->cfg.aggregator = ship->target;
    ship->c.details = grpc_empty_slice();
    ship->async = calloc(1, sizeof *ship->async);
    if (ship->async == NULL)
        goto out_free_target;
    int uvrc = uv_async_init(loop, ship->async, on_async);
    if (uvrc != 0) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "ship: uv_async_init: %s", uv_strerror(uvrc));
        free(ship->async);
        rc = uvrc;
        goto out_free_target;
    }
    ship->async->data = ship;
    uv_unref((uv_handle_t *)ship->async); /* referenced only while a call is in flight */
    pthread_mutex_init(&ship->mu, NULL);

    grpc_init();
    grpc_arg args[8];
    memset(args, 0, sizeof args);
    const struct {
        const char *key;
        int value;
    } ints[8] = {
        {GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, (int)cfg->max_message_bytes},
        {GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int)SN_SHIP_RESPONSE_MAX},
        {GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, (int)cfg->reconnect_initial_ms},
        {GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, (int)cfg->reconnect_initial_ms},
        {GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, (int)cfg->reconnect_max_ms},
        {GRPC_ARG_ENABLE_RETRIES, 0}, /* the pipeline retries, with its own backoff */
        {GRPC_ARG_ENABLE_PER_MESSAGE_COMPRESSION, 0}, /* the payload is zstd already */
        {GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, cfg->own_connection ? 1 : 0},
    };
    size_t nargs = sizeof ints / sizeof ints[0]; /* a shared subchannel pool (0) is the default */
    for (size_t i = 0; i < nargs; i++) {
        args[i].type = GRPC_ARG_INTEGER;
        args[i].key = (char *)ints[i].key;
        args[i].value.integer = ints[i].value;
    }
    grpc_channel_args chargs = {nargs, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    ship->channel = grpc_channel_create(ship->target, creds, &chargs);
    grpc_channel_credentials_release(creds);
    if (ship->channel == NULL) {
        set_err(err, errlen, "ship: cannot create the gRPC channel");
        goto out_grpc_shutdown;
    }
    ship->cq = grpc_completion_queue_create_for_next(NULL);
    if (ship->cq == NULL)
        goto out_destroy_channel;
    int prc = pthread_create(&ship->cq_thread, NULL, cq_main, ship);
    if (prc != 0) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "ship: cannot start the completion-queue thread: %s",
                     strerror(prc));
        rc = -prc;
        goto out_destroy_cq;
    }
    *out = ship;
    return 0;

out_destroy_cq:
    grpc_completion_queue_shutdown(ship->cq);
    while (grpc_completion_queue_next(ship->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(ship->cq);
out_destroy_channel:
    grpc_channel_destroy(ship->channel);
out_grpc_shutdown:
    grpc_shutdown();
    pthread_mutex_destroy(&ship->mu);
    ship->async->data = NULL;
    uv_close((uv_handle_t *)ship->async, on_async_closed);
out_free_target:
    free(ship->target);
out_free_ship:
    free(ship);
out_nomem:
    if (rc == -ENOMEM)
        set_err(err, errlen, "ship: out of memory");
    return rc;
}

int sn_ship_send(sn_ship *ship, const uint8_t *req, size_t len, sn_ship_done_fn cb, void *ud)
{
    if (ship->closing)
        return -ECANCELED;
    if (ship->busy)
        return -EBUSY;
    if (cb == NULL || (req == NULL && len > 0))
        return -EINVAL;
    if (len > ship->cfg.max_message_bytes)
        return -EMSGSIZE;

    sn_ship_call *c = &ship->c;
    grpc_slice body = grpc_slice_from_copied_buffer((const char *)req, len);
    c->request = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                     gpr_time_from_millis((int64_t)ship->cfg.deadline_ms, GPR_TIMESPAN));
    grpc_slice method = grpc_slice_from_static_string(SN_SHIP_METHOD);
    c->call = grpc_channel_create_call(ship->channel, NULL, GRPC_PROPAGATE_DEFAULTS, ship->cq,
                                       method, NULL, deadline, NULL);
    if (c->call == NULL) {
        release_call(c);
        return -ENOMEM;
    }

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA; /* flags 0: no wait_for_ready, fail fast */
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->response;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;

    ship->busy = true;
    ship->cb = cb;
    ship->ud = ud;
    pthread_mutex_lock(&ship->mu);
    ship->live = c->call;
    pthread_mutex_unlock(&ship->mu);
    uv_ref((uv_handle_t *)ship->async);
    grpc_call_error e = grpc_call_start_batch(c->call, ops, 6, c, NULL);
    if (e != GRPC_CALL_OK) {
        pthread_mutex_lock(&ship->mu);
        ship->live = NULL;
        pthread_mutex_unlock(&ship->mu);
        uv_unref((uv_handle_t *)ship->async);
        ship->busy = false;
        ship->cb = NULL;
        ship->ud = NULL;
        release_call(c);
        return -EIO;
    }
    return 0;
}

bool sn_ship_busy(const sn_ship *ship)
{
    return ship->busy;
}

void sn_ship_destroy(sn_ship *ship)
{
    if (ship == NULL)
        return;
    ship->closing = true;
    pthread_mutex_lock(&ship->mu);
    if (ship->live != NULL)
        grpc_call_cancel(ship->live, NULL);
    pthread_mutex_unlock(&ship->mu);
    /* The cancelled call still completes (CANCELLED) before the queue reports shutdown. */
    grpc_completion_queue_shutdown(ship->cq);
    pthread_join(ship->cq_thread, NULL);
    sn_ship_result r;
    if (ship->busy && take_result(ship, &r))
        deliver(ship, &r);
    grpc_completion_queue_destroy(ship->cq);
    grpc_channel_destroy(ship->channel);
    grpc_shutdown();
    pthread_mutex_destroy(&ship->mu);
    ship->async->data = NULL;
    uv_close((uv_handle_t *)ship->async, on_async_closed);
    free(ship->target);
    free(ship);
}
