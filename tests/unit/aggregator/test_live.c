/* Unit tests of aggregator/live.c: the handshake hash, configuration checks, publishing with no
 * clients and after shutdown, and one client over a raw loopback socket on the real API server
 * (the 101 answer, the hello, a published alert and a filtered-out one, the close on shutdown).
 * The protocol from a real client is covered by tests/integration/dashboard/live.mjs. */
#include "api.h"
#include "live.h"

#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

START_TEST(test_accept_key)
{
    char out[29];
    /* RFC 6455 section 1.3's example. */
    ck_assert_int_eq(sn_live_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ck_assert_int_eq(sn_live_accept_key("", out), -EINVAL);
    ck_assert_int_eq(sn_live_accept_key(NULL, out), -EINVAL);
    char longkey[66];
    memset(longkey, 'a', 65);
    longkey[65] = '\0';
    ck_assert_int_eq(sn_live_accept_key(longkey, out), -EINVAL);
}
END_TEST

START_TEST(test_create_checks)
{
    char token[600], err[128] = "";
    memset(token, 't', sizeof token - 1);
    token[sizeof token - 1] = '\0';
    sn_live_config c = {.api_token = token};
    sn_live *live = (sn_live *)1;
    ck_assert_int_eq(sn_live_create(&c, &live, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(live);
    ck_assert_msg(strstr(err, "api_token") != NULL, "%s", err);
    sn_live_destroy(NULL);
    sn_live_shutdown(NULL);
    sn_live_publish(NULL, SN_ALERT_CHANGE_FIRED, NULL);
}
END_TEST

static void make_alert(sn_alert *al, const char *svc, sn_severity sev)
{
    memset(al, 0, sizeof *al);
    snprintf(al->alert_id, sizeof al->alert_id, "00000000-0000-4000-8000-000000000001");
    al->timestamp_ns = al->last_seen_ns = INT64_C(1700000000000000000);
    al->severity = sev;
    al->anomaly_type = SN_ANOMALY_LATENCY_SPIKE;
    snprintf(al->service, sizeof al->service, "%s", svc);
    snprintf(al->model, sizeof al->model, "gpt-4o");
    al->method = SN_DETECT_ZSCORE;
    al->confidence = 0.9;
    al->metric = SN_METRIC_LATENCY_MS;
    al->value = 12000;
    al->baseline = 1000;
    al->threshold = 4000;
    al->deviation_sigma = 9;
    al->status = SN_ALERT_FIRING;
    al->occurrences = 1;
}

START_TEST(test_publish_without_clients)
{
    char err[128];
    sn_live *live = NULL;
    ck_assert_int_eq(sn_live_create(NULL, &live, err, sizeof err), 0);
    sn_alert al;
    make_alert(&al, "svc", SN_SEV_HIGH);
    sn_live_publish(live, SN_ALERT_CHANGE_FIRED, &al);
    sn_live_publish(live, (sn_alert_change)99, &al); /* out of range: ignored */
    sn_live_stats st;
    sn_live_stats_get(live, &st);
    ck_assert_uint_eq(st.published, 1);
    ck_assert_uint_eq(st.queued, 0);
    ck_assert_uint_eq(st.clients, 0);
    sn_live_shutdown(live);
    sn_live_shutdown(live); /* idempotent */
    sn_live_publish(live, SN_ALERT_CHANGE_FIRED, &al);
    sn_live_destroy(live);
}
END_TEST

/* Reads until `want` bytes or the timeout; returns the count read. */
static size_t read_some(int fd, char *buf, size_t want, int timeout_ms)
{
    size_t n = 0;
    while (n < want) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0)
            break;
        ssize_t r = recv(fd, buf + n, want - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    return n;
}

/* Reads one unmasked server frame; returns its opcode and puts the payload (NUL-terminated) in
 * out, or -1. */
static int read_frame(int fd, char *out, size_t cap)
{
    unsigned char h[4];
    if (read_some(fd, (char *)h, 2, 3000) != 2)
        return -1;
    size_t len = h[1] & 0x7f;
    ck_assert_msg((h[1] & 0x80) == 0, "server frames are not masked");
    if (len == 126) {
        if (read_some(fd, (char *)h + 2, 2, 3000) != 2)
            return -1;
        len = ((size_t)h[2] << 8) | h[3];
    }
    ck_assert_uint_lt(len, cap);
    if (read_some(fd, out, len, 3000) != len)
        return -1;
    out[len] = '\0';
    return h[0] & 0x0f;
}

START_TEST(test_client_over_socket)
{
    char err[256];
    sn_live *live = NULL;
    sn_api *api = NULL;
    sn_live_config lc = {.heartbeat_ms = 60000};
    ck_assert_int_eq(sn_live_create(&lc, &live, err, sizeof err), 0);
    sn_api_config ac = {.listen = "127.0.0.1:0", .live = live};
    ck_assert_int_eq(sn_api_create(&ac, NULL, &api, err, sizeof err), 0);
    ck_assert_int_eq(sn_api_start(api, err, sizeof err), 0);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(sn_api_port(api))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char req[] =
        "GET /ws/realtime?service=svc-a HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
        "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    ck_assert_int_eq(send(fd, req, sizeof req - 1, 0), (ssize_t)(sizeof req - 1));
    /* The answer's headers, byte by byte up to the blank line. */
    char head[1024];
    size_t n = 0;
    while (n + 1 < sizeof head && read_some(fd, head + n, 1, 3000) == 1) {
        n++;
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[n] = '\0';
    ck_assert_msg(strncmp(head, "HTTP/1.1 101", 12) == 0, "%s", head);
    ck_assert_msg(strstr(head, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != NULL, "%s", head);

    char msg[4096];
    ck_assert_int_eq(read_frame(fd, msg, sizeof msg), 1);
    ck_assert_msg(strstr(msg, "\"type\":\"hello\"") != NULL, "%s", msg);

    /* Wait until the hub has linked the client, then publish one filtered out and one in. */
    sn_live_stats st;
    for (int i = 0; i < 300; i++) {
        sn_live_stats_get(live, &st);
        if (st.clients == 1)
            break;
        usleep(10000);
    }
    ck_assert_uint_eq(st.clients, 1);
    sn_alert al;
    make_alert(&al, "svc-b", SN_SEV_CRITICAL);
    sn_live_publish(live, SN_ALERT_CHANGE_FIRED, &al);
    make_alert(&al, "svc-a", SN_SEV_HIGH);
    sn_live_publish(live, SN_ALERT_CHANGE_RESOLVED, &al);
    ck_assert_int_eq(read_frame(fd, msg, sizeof msg), 1);
    ck_assert_msg(strstr(msg, "\"type\":\"alert\"") && strstr(msg, "\"change\":\"resolved\"") &&
                      strstr(msg, "\"service_name\":\"svc-a\""),
                  "%s", msg);
    sn_live_stats_get(live, &st);
    ck_assert_uint_eq(st.published, 2);
    ck_assert_uint_eq(st.queued, 1);

    /* Shutdown: a close frame 1001, then the socket closes. */
    sn_api_stop(api);
    ck_assert_int_eq(read_frame(fd, msg, sizeof msg), 8);
    ck_assert_int_eq(((unsigned char)msg[0] << 8) | (unsigned char)msg[1], 1001);
    sn_live_stats_get(live, &st);
    ck_assert_uint_eq(st.closed[SN_LIVE_CLOSED_SHUTDOWN], 1);
    ck_assert_uint_eq(st.clients, 0);
    close(fd);
    sn_api_destroy(api);
    sn_live_destroy(live);
}
END_TEST

static Suite *live_suite(void)
{
    Suite *s = suite_create("live");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_accept_key);
    tcase_add_test(tc, test_create_checks);
    tcase_add_test(tc, test_publish_without_clients);
    tcase_add_test(tc, test_client_over_socket);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(live_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
