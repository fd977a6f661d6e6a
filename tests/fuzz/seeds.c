/*
 * seeds.c -- writes the binary seed corpora of the fuzz targets with the project's own
 * encoders, so the seeds follow the formats as they change: fuzz_seeds OUT_DIR writes
 *   OUT_DIR/batch_record/  journal records (sn_batch_encode_event_record) of 0, 1 and 3 events,
 *                          and 3 events as event groups (sn_batch_append_grouped_event)
 *   OUT_DIR/ingest/        IngestRequests (sn_batch_encode), zstd and uncompressed, with flat
 *                          events and with event groups
 *   OUT_DIR/sketch/        serialized sketches: empty, small, two-sided, collapsed
 *   OUT_DIR/spool/         spool directories in fuzz_spool.c's input format, made by a real spool
 * Exits 0, or 1 with a message on stderr.
 */
#include "batch.h"
#include "log.h"
#include "sketch.h"
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *out_dir;

/* Writes data[0..len) to out_dir/sub/name. Returns 0 or -1 (message printed). */
static int write_seed(const char *sub, const char *name, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, sub);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        goto out_error;
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        goto out_error;
    size_t put = len > 0 ? fwrite(data, 1, len, f) : 0;
    if (fclose(f) != 0 || put != len)
        goto out_error;
    return 0;

out_error:
    fprintf(stderr, "fuzz_seeds: %s: %s\n", path, strerror(errno));
    return -1;
}

/* Fills n events with realistic facts. */
static void make_events(sn_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sn_event_init(&ev[i]);
        ev[i].start_unix_nano = INT64_C(1700000000000000000) + (int64_t)i * 1000000;
        ev[i].end_unix_nano = ev[i].start_unix_nano + 1500000000;
        snprintf(ev[i].service, sizeof ev[i].service, "chatbot-api");
        snprintf(ev[i].model, sizeof ev[i].model, i % 2 ? "gpt-4o" : "claude-3-5-sonnet");
        snprintf(ev[i].provider, sizeof ev[i].provider, "openai");
        snprintf(ev[i].operation, sizeof ev[i].operation, "chat");
        snprintf(ev[i].region, sizeof ev[i].region, "us-east-1");
        snprintf(ev[i].finish_reason, sizeof ev[i].finish_reason, "stop");
        memset(ev[i].trace_id, 0x11 + (int)i, sizeof ev[i].trace_id);
        memset(ev[i].span_id, 0x22 + (int)i, sizeof ev[i].span_id);
        ev[i].latency_ms = 1500.0;
        ev[i].ttft_ms = 120.5;
        ev[i].input_tokens = 800;
        ev[i].output_tokens = 200;
        ev[i].total_tokens = 1000;
        ev[i].cache_read_tokens = 100;
        ev[i].cost_usd = 0.0123;
        ev[i].cost_source = 1;
        ev[i].is_error = i == 2;
        if (ev[i].is_error)
            snprintf(ev[i].error_type, sizeof ev[i].error_type, "timeout");
        ev[i].conventions = 1;
    }
}

/* Events 0..n) as a journal record of event groups (runs of one resource). Returns 0 or -1. */
static int grouped_record(const sn_event *ev, size_t n, uint8_t *buf, size_t cap, size_t *len)
{
    sn_batch_grouper g;
    sn_batch_grouper_init(&g);
    *len = 0;
    for (size_t i = 0; i < n; i++)
        if (sn_batch_append_grouped_event(&g, &ev[i], buf, cap, len) != 0)
            return -1;
    return sn_batch_grouper_close(&g, buf, len) != 0 ? -1 : 0;
}

/* Journal records of 0, 1 and 3 events, and 3 events as groups. */
static int batch_record_seeds(void)
{
    sn_event ev[3];
    uint8_t buf[8192];
    make_events(ev, 3);
    const size_t counts[] = {0, 1, 3};
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        char name[32];
        if (sn_batch_encode_event_record(ev, counts[i], buf, sizeof buf, &len) != 0)
            return -1;
        snprintf(name, sizeof name, "events-%zu.bin", counts[i]);
        if (write_seed("batch_record", name, buf, len) != 0)
            return -1;
    }
    size_t len = 0;
    if (grouped_record(ev, 3, buf, sizeof buf, &len) != 0 ||
        write_seed("batch_record", "groups-3.bin", buf, len) != 0)
        return -1;
    return 0;
}

/* IngestRequests with events and an alert, zstd-compressed and not; the same with the events as
 * event groups (two runs: the third event has another pod). */
static int ingest_seeds(void)
{
    sn_event ev[3];
    make_events(ev, 3);
    snprintf(ev[2].pod, sizeof ev[2].pod, "chatbot-other");
    static uint8_t rec[8192];
    size_t rec_len = 0;
    if (grouped_record(ev, 3, rec, sizeof rec, &rec_len) != 0)
        return -1;
    sn_local_alert al;
    memset(&al, 0, sizeof al);
    snprintf(al.alert_id, sizeof al.alert_id, "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f");
    al.time_unix_nano = ev[0].end_unix_nano;
    snprintf(al.service, sizeof al.service, "chatbot-api");
    snprintf(al.model, sizeof al.model, "gpt-4o");
    al.metric = SN_METRIC_LATENCY_MS;
    al.anomaly_type = SN_ANOMALY_LATENCY_SPIKE;
    al.detector = SN_DETECT_ZSCORE;
    al.severity = SN_SEV_HIGH;
    al.value = 12000;
    al.baseline = 2000;
    al.threshold = 6000;
    al.deviation = 5.2;
    al.confidence = 0.95;
    for (int level = 0; level <= 3; level += 3) {
        sn_batch_config bc;
        sn_batch_config_init(&bc);
        bc.zstd_level = level;
        sn_batch_encoder *enc;
        char err[256];
        if (sn_batch_encoder_create(&bc, &enc, err, sizeof err) != 0) {
            fprintf(stderr, "fuzz_seeds: %s\n", err);
            return -1;
        }
        for (int grouped = 0; grouped <= 1; grouped++) {
            sn_batch b = {.sidecar_id = "pod-a/0123abcd",
                          .sequence = 7,
                          .events = grouped ? NULL : ev,
                          .n_events = grouped ? 0 : 3,
                          .records = grouped ? rec : NULL,
                          .records_len = grouped ? rec_len : 0,
                          .n_record_events = grouped ? 3 : 0,
                          .groups = grouped,
                          .alerts = &al,
                          .n_alerts = 1,
                          .created_unix_nano = ev[2].end_unix_nano,
                          .dropped_events = 2};
            const uint8_t *out;
            size_t len;
            char name[32];
            snprintf(name, sizeof name, "%s%s.bin", level ? "zstd" : "none",
                     grouped ? "-groups" : "");
            int rc = sn_batch_encode(enc, &b, &out, &len, NULL, err, sizeof err);
            if (rc == 0)
                rc = write_seed("ingest", name, out, len);
            else
                fprintf(stderr, "fuzz_seeds: %s\n", err);
            if (rc != 0) {
                sn_batch_encoder_destroy(enc);
                return -1;
            }
        }
        sn_batch_encoder_destroy(enc);
    }
    return 0;
}

/* Serializes a sketch holding samples[0..n) to sketch/name. */
static int sketch_seed(const char *name, uint32_t buckets, const double *samples, size_t n)
{
    static uint8_t buf[SN_SKETCH_MAX_SERIALIZED];
    sn_sketch *s;
    if (sn_sketch_create(&s, SN_SKETCH_DEFAULT_ALPHA, buckets) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        sn_sketch_add(s, samples[i]);
    size_t len;
    int rc = sn_sketch_serialize(s, buf, sizeof buf, &len);
    sn_sketch_destroy(s);
    return rc == 0 ? write_seed("sketch", name, buf, len) : -1;
}

static int sketch_seeds(void)
{
    double samples[64];
    for (int i = 0; i < 64; i++)
        samples[i] = 100.0 * (i + 1) * (i % 3 ? 1 : -1);
    const double few[] = {0.0, 1.5, 1200.0, 1350.0, 2000.0};
    if (sketch_seed("empty.bin", 8, NULL, 0) != 0 || sketch_seed("few.bin", 64, few, 5) != 0 ||
        sketch_seed("signed.bin", 128, samples, 64) != 0 ||
        sketch_seed("collapsed.bin", 8, samples, 64) != 0)
        return -1;
    return 0;
}

/* Appends the files of spool directory dir to buf in fuzz_spool.c's format. */
static int pack_dir(const char *dir, uint8_t *buf, size_t cap, size_t *len)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int kind;
        unsigned long num = 0;
        if (strncmp(e->d_name, "seg-", 4) == 0) {
            kind = 0;
            num = strtoul(e->d_name + 4, NULL, 10);
        } else if (strncmp(e->d_name, "journal-", 8) == 0) {
            kind = 1;
            num = strtoul(e->d_name + 8, NULL, 10);
        } else if (strcmp(e->d_name, "ack") == 0) {
            kind = 2;
        } else {
            continue;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL || *len + 4 > cap)
            goto out_close_dir;
        size_t n = fread(buf + *len + 4, 1, cap - *len - 4, f);
        fclose(f);
        if (n > 0xffff)
            goto out_close_dir;
        buf[*len] = (uint8_t)kind;
        buf[*len + 1] = (uint8_t)num;
        buf[*len + 2] = (uint8_t)n;
        buf[*len + 3] = (uint8_t)(n >> 8);
        *len += 4 + n;
    }
    closedir(d);
    return 0;

out_close_dir:
    closedir(d);
    return -1;
}

/* Removes the files of dir and dir itself. */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(dir);
}

/* Spools in three states: sealed records and an open journal; some popped (ack file); a
 * journal whose batch was sealed (a covered generation). */
static int spool_seeds(void)
{
    static uint8_t buf[65536];
    static const char *const names[] = {"records-journal.bin", "popped.bin", "covered.bin"};
    sn_log_set_level(SN_LOG_OFF);
    for (int variant = 0; variant < 3; variant++) {
        char dir[] = "/tmp/sn-fuzz-seeds-XXXXXX";
        if (mkdtemp(dir) == NULL)
            return -1;
        sn_spool_config cfg;
        sn_spool_config_defaults(&cfg);
        cfg.segment_bytes = SN_SPOOL_MIN_SEGMENT_BYTES;
        sn_spool *s;
        char err[256];
        int rc = sn_spool_open(dir, &cfg, &s, err, sizeof err);
        if (rc != 0) {
            fprintf(stderr, "fuzz_seeds: %s\n", err);
            remove_tree(dir);
            return -1;
        }
        static const uint8_t rec[] = "an IngestRequest";
        for (int i = 0; i < 3 && rc == 0; i++) {
            rc = sn_spool_journal_append(s, rec, sizeof rec);
            if (rc == 0)
                rc = sn_spool_append(s, rec, sizeof rec, sn_spool_journal_generation(s));
            if (rc == 0 && (variant != 2 || i < 2))
                rc = sn_spool_journal_reset(s);
        }
        if (rc == 0)
            rc = sn_spool_journal_append(s, rec, sizeof rec);
        if (rc == 0 && variant == 1)
            rc = sn_spool_pop(s);
        sn_spool_close(s);
        size_t len = 1;
        buf[0] = 0; /* flags: CRCs as written */
        if (rc == 0)
            rc = pack_dir(dir, buf, sizeof buf, &len);
        remove_tree(dir);
        if (rc != 0 || write_seed("spool", names[variant], buf, len) != 0)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seeds OUT_DIR\n");
        return 1;
    }
    out_dir = argv[1];
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "fuzz_seeds: %s: %s\n", out_dir, strerror(errno));
        return 1;
    }
    if (batch_record_seeds() != 0 || ingest_seeds() != 0 || sketch_seeds() != 0 ||
        spool_seeds() != 0) {
        fprintf(stderr, "fuzz_seeds: could not write the seeds\n");
        return 1;
    }
    return 0;
}
