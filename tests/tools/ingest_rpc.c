/* ingest_rpc.c -- see ingest_rpc.h. */
#include "ingest_rpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <grpc/grpc_security.h>
#pragma GCC diagnostic pop
#include <grpc/slice.h>
#include <grpc/support/time.h>

int grpc_test_call(const char *target, const char *method, const void *req, size_t len,
                   int timeout_ms, grpc_test_reply *out)
{
    memset(out, 0, sizeof *out);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    if (ch == NULL)
        return -1;
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    grpc_slice m = grpc_slice_from_copied_string(method);
    grpc_call *call =
        grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, deadline, NULL);
    grpc_slice_unref(m);
    int rc = -1;
    if (call == NULL)
        goto out_destroy_channel;

    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_slice sl = grpc_slice_from_copied_buffer(req, len);
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    grpc_byte_buffer *recv = NULL;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    if (grpc_call_start_batch(call, ops, 6, &rc, NULL) == GRPC_CALL_OK) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_OP_COMPLETE)
            rc = 0;
    }
    if (rc == 0) {
        out->grpc_status = (int)status;
        size_t dl = GRPC_SLICE_LENGTH(details);
        if (dl >= sizeof out->details)
            dl = sizeof out->details - 1;
        memcpy(out->details, GRPC_SLICE_START_PTR(details), dl);
        if (recv != NULL) {
            grpc_byte_buffer_reader rd;
            if (grpc_byte_buffer_reader_init(&rd, recv)) {
                grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
                out->got_message = true;
                out->message_len = GRPC_SLICE_LENGTH(all);
                out->message = malloc(out->message_len + 1);
                if (out->message != NULL)
                    memcpy(out->message, GRPC_SLICE_START_PTR(all), out->message_len);
                grpc_slice_unref(all);
                grpc_byte_buffer_reader_destroy(&rd);
            }
        }
        for (size_t i = 0; i < trailing_md.count; i++) {
            if (grpc_slice_str_cmp(trailing_md.metadata[i].key, "grpc-status-details-bin") != 0)
                continue;
            size_t n = GRPC_SLICE_LENGTH(trailing_md.metadata[i].value);
            if (n > sizeof out->status_bin)
                n = sizeof out->status_bin;
            memcpy(out->status_bin, GRPC_SLICE_START_PTR(trailing_md.metadata[i].value), n);
            out->status_bin_len = n;
            out->has_status_bin = true;
        }
    }
    if (recv != NULL)
        grpc_byte_buffer_destroy(recv);
    grpc_slice_unref(details);
    grpc_byte_buffer_destroy(send);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    grpc_call_unref(call);
out_destroy_channel:
    grpc_channel_destroy(ch);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return rc;
}

void grpc_test_reply_free(grpc_test_reply *r)
{
    free(r->message);
    r->message = NULL;
}

int ingest_rpc_call(const char *target, const void *req, size_t len, int timeout_ms,
                    ingest_rpc_result *out)
{
    memset(out, 0, sizeof *out);
    grpc_test_reply r;
    if (grpc_test_call(target, "/sentinel.v1.Aggregator/Ingest", req, len, timeout_ms, &r) != 0)
        return -1;
    out->grpc_status = r.grpc_status;
    memcpy(out->details, r.details, sizeof out->details);
    if (r.got_message && r.message != NULL) {
        Sentinel__V1__IngestResponse *resp =
            sentinel__v1__ingest_response__unpack(NULL, r.message_len, r.message);
        if (resp != NULL) {
            out->has_response = true;
            out->status = resp->status;
            out->ack = resp->acknowledged_sequence;
            out->retry_after_ms = resp->retry_after_ms;
            out->features = resp->features;
            snprintf(out->message, sizeof out->message, "%s", resp->message);
            sentinel__v1__ingest_response__free_unpacked(resp, NULL);
        }
    }
    grpc_test_reply_free(&r);
    return 0;
}

uint8_t *ingest_rpc_envelope(int compression, uint64_t uncompressed_size, const void *payload,
                             size_t plen, size_t *len)
{
    Sentinel__V1__IngestRequest req = SENTINEL__V1__INGEST_REQUEST__INIT;
    req.compression = (Sentinel__V1__Compression)compression;
    req.uncompressed_size = uncompressed_size;
    req.payload.data = (uint8_t *)payload;
    req.payload.len = plen;
    *len = sentinel__v1__ingest_request__get_packed_size(&req);
    uint8_t *out = malloc(*len ? *len : 1);
    if (out != NULL)
        sentinel__v1__ingest_request__pack(&req, out);
    return out;
}

uint8_t *ingest_rpc_request(const Sentinel__V1__Batch *b, bool zstd, size_t *len)
{
    size_t n = sentinel__v1__batch__get_packed_size(b);
    uint8_t *plain = malloc(n ? n : 1);
    if (plain == NULL)
        return NULL;
    sentinel__v1__batch__pack(b, plain);
    if (!zstd) {
        uint8_t *out = ingest_rpc_envelope(0, n, plain, n, len);
        free(plain);
        return out;
    }
    size_t cap = ZSTD_compressBound(n);
    uint8_t *z = malloc(cap);
    size_t zl = z != NULL ? ZSTD_compress(z, cap, plain, n, 3) : 0;
    uint8_t *out = NULL;
    if (z != NULL && !ZSTD_isError(zl))
        out = ingest_rpc_envelope(1, n, z, zl, len);
    free(z);
    free(plain);
    return out;
}
