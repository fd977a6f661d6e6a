/*
 * null_server.c -- sentinel-bench-null: do-nothing OTLP receivers, the reference the sidecar's
 * throughput is measured against.
 *
 * Three modes, each answering every trace Export with an empty ExportTraceServiceResponse
 * without decoding the request:
 *
 *   grpc      the project's OTLP/gRPC transport (shared/otlp/grpc_server.c on grpc_unary.c)
 *             with a handler that does nothing: the cost of our gRPC transport alone;
 *   grpc-raw  a minimal server loop on the gRPC C core (one completion-queue thread, a fixed
 *             number of outstanding request slots, no limits, no hand-off): plain gRPC core;
 *   http      the project's OTLP/HTTP transport (shared/otlp/http_server.c on libmicrohttpd)
 *             with a handler that does nothing.
 *
 * Prints "port=N" on stdout once listening (so a script may listen on port 0), serves until
 * SIGTERM/SIGINT, then prints "requests=N" (requests answered) and exits 0. Exit status 1 when
 * it cannot listen, 2 on bad usage.
 */
#include "cli.h"
#include "log.h"
#include "otlp/grpc_server.h"
#include "otlp/http_server.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RAW_SLOTS 64u /* calls the raw server accepts at once (the sidecar's default max_calls) */

static const char *const mode_names[] = {"grpc", "grpc-raw", "http", NULL};
enum { MODE_GRPC = 0, MODE_GRPC_RAW, MODE_HTTP };

typedef struct null_settings {
    int mode;
    sn_config_address listen;
    int64_t max_message_bytes;
    int64_t max_calls;
    int64_t max_streams;
    int64_t window;
    sn_cli_log_settings log;
} null_settings;

static const sn_config_desc descriptors[] = {
    SN_CFG_ENUM("null.mode", null_settings, mode, "grpc", mode_names,
                "grpc (project transport), grpc-raw (plain gRPC core) or http (project transport)"),
    {SN__CFG("null.listen", SN_CONFIG_ADDRESS, null_settings, listen, "127.0.0.1:0",
             "listen address; port 0 picks a free one (printed as port=N)"),
     .flags = SN_CONFIG_ANY_PORT},
    SN_CFG_SIZE("null.max_message_bytes", null_settings, max_message_bytes, "16MiB", 65536,
                (int64_t)256 << 20, "largest request accepted (as the sidecar's default)"),
    SN_CFG_INT("null.max_calls", null_settings, max_calls, "64", 1, 10000,
               "requests in progress at once (as the sidecar's default)"),
    SN_CFG_INT(
        "null.max_streams", null_settings, max_streams, "100", 1, 1000,
        "grpc: HTTP/2 streams per connection (the sidecar's otlp.grpc.max_concurrent_streams)"),
    SN_CFG_SIZE("null.window", null_settings, window, "0", 0, (int64_t)64 << 20,
                "grpc: fixed flow-control window per stream (the sidecar's otlp.grpc.window); 0: "
                "gRPC's own (BDP probing)"),
    SN_CLI_LOG_DESCRIPTORS(null_settings, log),
};

static const sn_cli_flag flags[] = {
    {.name = "mode", .takes_value = true, .metavar = "grpc|grpc-raw|http", .path = "null.mode"},
    {.name = "listen", .takes_value = true, .metavar = "HOST:PORT", .path = "null.listen"},
};

static atomic_uint_fast64_t answered;

/* The do-nothing handler of the project's transports: accepts everything (an empty response). */
static void null_handler(sn_otlp_signal signal, sn_otlp_encoding encoding, const uint8_t *body,
                         size_t len, sn_otlp_result *res, void *ud)
{
    (void)signal;
    (void)encoding;
    (void)body;
    (void)len;
    (void)res;
    (void)ud;
    atomic_fetch_add_explicit(&answered, 1, memory_order_relaxed);
}

/* ---------------------------------------------------------------- the raw gRPC core server */

typedef enum raw_state { RAW_REQUESTED = 0, RAW_READING, RAW_FINISHING } raw_state;

typedef struct raw_slot {
    raw_state state;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array request_md;
    grpc_byte_buffer *request;
    grpc_byte_buffer *response;
    int cancelled;
} raw_slot;

typedef struct raw_server {
    grpc_server *server;
    grpc_completion_queue *cq;
    raw_slot slots[RAW_SLOTS];
    pthread_t thread;
    char shutdown_tag;
} raw_server;

/* Asks gRPC for the next incoming call into `slot`. */
static void raw_request(raw_server *rs, raw_slot *slot)
{
    slot->state = RAW_REQUESTED;
    slot->call = NULL;
    grpc_call_details_init(&slot->details);
    grpc_metadata_array_init(&slot->request_md);
    if (grpc_server_request_call(rs->server, &slot->call, &slot->details, &slot->request_md, rs->cq,
                                 rs->cq, slot) != GRPC_CALL_OK)
        sn_log_error("grpc_server_request_call failed");
}

/* Frees what one call held. */
static void raw_release(raw_slot *slot)
{
    if (slot->call != NULL)
        grpc_call_unref(slot->call);
    slot->call = NULL;
    if (slot->request != NULL)
        grpc_byte_buffer_destroy(slot->request);
    slot->request = NULL;
    if (slot->response != NULL)
        grpc_byte_buffer_destroy(slot->response);
    slot->response = NULL;
    grpc_call_details_destroy(&slot->details);
    grpc_metadata_array_destroy(&slot->request_md);
}

/* One step of a call: accepted -> read the message -> answer OK with an empty message. A failed
 * step ends the call and asks for the next one. Returns false when the server is shutting down
 * and the slot is not to be reused. */
static bool raw_step(raw_server *rs, raw_slot *slot, bool ok, bool stopping)
{
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    switch (slot->state) {
    case RAW_REQUESTED:
        if (!ok) {
            grpc_call_details_destroy(&slot->details);
            grpc_metadata_array_destroy(&slot->request_md);
            return false; /* only on shutdown */
        }
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_RECV_MESSAGE;
        ops[1].data.recv_message.recv_message = &slot->request;
        slot->state = RAW_READING;
        if (grpc_call_start_batch(slot->call, ops, 2, slot, NULL) == GRPC_CALL_OK)
            return true;
        break;
    case RAW_READING: {
        if (ok && slot->request != NULL)
            atomic_fetch_add_explicit(&answered, 1, memory_order_relaxed);
        grpc_slice empty = grpc_empty_slice();
        slot->response = grpc_raw_byte_buffer_create(&empty, 1);
        ops[0].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[0].data.recv_close_on_server.cancelled = &slot->cancelled;
        ops[1].op = GRPC_OP_SEND_MESSAGE;
        ops[1].data.send_message.send_message = slot->response;
        ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
        slot->state = RAW_FINISHING;
        if (grpc_call_start_batch(slot->call, ops, 3, slot, NULL) == GRPC_CALL_OK)
            return true;
        break;
    }
    case RAW_FINISHING:
        break;
    }
    raw_release(slot);
    if (stopping)
        return false;
    raw_request(rs, slot);
    return true;
}

/* The completion-queue thread: drives every slot until the queue is shut down. */
static void *raw_main(void *arg)
{
    raw_server *rs = arg;
    bool stopping = false;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(rs->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        if (ev.tag == &rs->shutdown_tag) {
            stopping = true;
            grpc_completion_queue_shutdown(rs->cq);
            continue;
        }
        raw_step(rs, ev.tag, ev.success != 0, stopping);
    }
    return NULL;
}

/* Creates, binds and starts the raw server; sets *port. Returns 0 or -EADDRNOTAVAIL/-ENOMEM
 * with a message in err. On failure nothing is left to free. */
static int raw_start(raw_server *rs, const null_settings *s, const char *addr, int *port, char *err,
                     size_t errlen)
{
    grpc_init();
    grpc_arg args[2];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = (int)s->max_message_bytes;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_MAX_CONCURRENT_STREAMS;
    args[1].value.integer = 100;
    grpc_channel_args chargs = {2, args};
    rs->server = grpc_server_create(&chargs, NULL);
    rs->cq = grpc_completion_queue_create_for_next(NULL);
    if (rs->server == NULL || rs->cq == NULL) {
        snprintf(err, errlen, "cannot create the gRPC server");
        goto out_destroy;
    }
    grpc_server_register_completion_queue(rs->server, rs->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    *port = grpc_server_add_http2_port(rs->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (*port <= 0) {
        snprintf(err, errlen, "cannot listen on %s", addr);
        goto out_destroy;
    }
    grpc_server_start(rs->server);
    for (unsigned i = 0; i < RAW_SLOTS; i++)
        raw_request(rs, &rs->slots[i]);
    if (pthread_create(&rs->thread, NULL, raw_main, rs) != 0) {
        snprintf(err, errlen, "cannot start the completion-queue thread");
        grpc_server_shutdown_and_notify(rs->server, rs->cq, &rs->shutdown_tag);
        grpc_server_cancel_all_calls(rs->server);
        raw_main(rs); /* drains the queue on this thread */
        goto out_destroy;
    }
    return 0;

out_destroy:
    if (rs->server != NULL)
        grpc_server_destroy(rs->server);
    if (rs->cq != NULL)
        grpc_completion_queue_destroy(rs->cq);
    rs->server = NULL;
    rs->cq = NULL;
    grpc_shutdown();
    return -EADDRNOTAVAIL;
}

/* Stops the raw server: cancels calls, drains the queue, joins the thread, frees everything. */
static void raw_stop(raw_server *rs)
{
    grpc_server_shutdown_and_notify(rs->server, rs->cq, &rs->shutdown_tag);
    grpc_server_cancel_all_calls(rs->server);
    pthread_join(rs->thread, NULL);
    grpc_server_destroy(rs->server);
    grpc_completion_queue_destroy(rs->cq);
    grpc_shutdown();
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    null_settings s;
    memset(&s, 0, sizeof s);
    const sn_program_info info = {
        .name = "sentinel-bench-null",
        .version = SENTINEL_VERSION,
        .component = "bench-null",
        .summary = "a do-nothing OTLP receiver (empty answers, nothing decoded) for benchmarks",
        .flags = flags,
        .nflags = sizeof flags / sizeof flags[0],
    };
    sn_cli_result res;
    int out = sn_cli_load(argc, argv, &info, descriptors,
                          sizeof descriptors / sizeof descriptors[0], &s, &res);
    if (out != SN_CLI_RUN)
        return sn_cli_exit_status(out);

    /* Every thread started below inherits the blocked signals; main waits for them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    int status = 1;
    char addr[300], err[512] = "";
    sn_config_format_address(&s.listen, addr, sizeof addr);
    int port = 0;
    sn_grpc_server *grpc = NULL;
    sn_http_server *http = NULL;
    raw_server *raw = NULL;
    int rc = 0;
    if (s.mode == MODE_GRPC) {
        sn_grpc_server_config gc;
        sn_grpc_server_config_init(&gc);
        gc.listen = addr;
        gc.max_message_bytes = (size_t)s.max_message_bytes;
        gc.max_calls = (unsigned)s.max_calls;
        gc.max_streams = (unsigned)s.max_streams;
        gc.window_bytes = (size_t)s.window;
        gc.handler = null_handler;
        if ((rc = sn_grpc_server_create(&gc, &grpc, err, sizeof err)) == 0 &&
            (rc = sn_grpc_server_start(grpc)) == 0)
            port = sn_grpc_server_port(grpc);
    } else if (s.mode == MODE_GRPC_RAW) {
        raw = calloc(1, sizeof *raw);
        rc = raw == NULL ? -ENOMEM : raw_start(raw, &s, addr, &port, err, sizeof err);
    } else {
        sn_http_server_config hc = {
            .listen = addr,
            .max_body_bytes = (size_t)s.max_message_bytes,
            .max_connections = (unsigned)s.max_calls,
            .handler = null_handler,
        };
        if ((rc = sn_http_server_create(&hc, &http, err, sizeof err)) == 0 &&
            (rc = sn_http_server_start(http, err, sizeof err)) == 0)
            port = sn_http_server_port(http);
    }
    if (rc != 0) {
        sn_log_error("cannot serve", SN_LOG_STR("listen", addr), SN_LOG_STR("error", err),
                     SN_LOG_ERRNO(rc));
        goto out_stop;
    }
    sn_log_info("listening", SN_LOG_STR("mode", mode_names[s.mode]), SN_LOG_INT("port", port));
    printf("port=%d\n", port);
    fflush(stdout);

    int sig = 0;
    sigwait(&set, &sig);
    status = 0;

out_stop:
    if (grpc != NULL)
        sn_grpc_server_destroy(grpc);
    if (http != NULL)
        sn_http_server_destroy(http);
    if (raw != NULL && rc == 0)
        raw_stop(raw);
    free(raw);
    if (status == 0) {
        printf("requests=%" PRIu64 "\n", (uint64_t)atomic_load(&answered));
        fflush(stdout);
    }
    sn_cli_result_cleanup(&res);
    return status;
}
