/*
 * detect_cli.c -- sentinel-detect, the offline backtest.
 *
 * Streams a CSV series (timestamp,value with a header; other columns passed through) through
 * the same detectors the sidecar and the aggregator run, over the same rolling baseline window,
 * and writes one scored row per input row:
 *
 *   timestamp,value,anomaly_score,is_anomaly,detector,severity[,passed-through columns]
 *
 * Each value is scored against the window of the values before it, then (unless it was an
 * anomaly and backtest.learn is "normal") joins the window. Bad rows are reported with their
 * line number and skipped; the run's summary goes to stderr as a log line.
 */
#include "cli.h"
#include "csv.h"
#include "detect/ensemble.h"
#include "detect/settings.h"
#include "log.h"
#include "window.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPORTED_BAD_ROWS 100 /* bad rows logged one by one; the rest are only counted */

enum method {
    METHOD_ENSEMBLE = 0,
    METHOD_ZSCORE,
    METHOD_IQR,
    METHOD_MAD,
    METHOD_CUSUM,
    METHOD_THRESHOLD
};
static const char *const method_names[] = {"ensemble", "z_score",   "iqr", "mad",
                                           "cusum",    "threshold", NULL};

enum learn { LEARN_NORMAL = 0, LEARN_ALL };
static const char *const learn_names[] = {"normal", "all", NULL};

typedef struct detect_settings {
    int method;
    int64_t window;
    int learn;
    char output[1024];
    char value_column[128];
    char timestamp_column[128];
    sn_ensemble_config ens;
    sn_cli_log_settings log;
} detect_settings;

static const sn_config_desc descriptors[] = {
    SN_CFG_ENUM("backtest.detector", detect_settings, method, "ensemble", method_names,
                "detector to run: ensemble (all enabled detectors), z_score, iqr, mad, cusum or "
                "threshold"),
    SN_CFG_INT("backtest.window", detect_settings, window, "1000", 2, 1000000,
               "rolling baseline window, in samples"),
    SN_CFG_ENUM("backtest.learn", detect_settings, learn, "normal", learn_names,
                "which values join the baseline: normal (anomalies are kept out) or all"),
    SN_CFG_STRING("backtest.output", detect_settings, output, "-",
                  "where to write the scored CSV; - is standard output"),
    SN_CFG_STRING("backtest.value_column", detect_settings, value_column, "value",
                  "name of the value column in the input header"),
    SN_CFG_STRING("backtest.timestamp_column", detect_settings, timestamp_column, "timestamp",
                  "name of the timestamp column in the input header"),
    SN_ENSEMBLE_DESCRIPTORS("detect", detect_settings, ens),
    SN_CLI_LOG_DESCRIPTORS(detect_settings, log),
};

static const sn_cli_flag flags[] = {
    {.name = "detector",
     .short_name = 'd',
     .takes_value = true,
     .metavar = "NAME",
     .path = "backtest.detector"},
    {.name = "window",
     .short_name = 'w',
     .takes_value = true,
     .metavar = "N",
     .path = "backtest.window"},
    {.name = "learn", .takes_value = true, .metavar = "normal|all", .path = "backtest.learn"},
    {.name = "output",
     .short_name = 'o',
     .takes_value = true,
     .metavar = "FILE",
     .path = "backtest.output"},
    {.name = "value-column",
     .takes_value = true,
     .metavar = "NAME",
     .path = "backtest.value_column"},
    {.name = "timestamp-column",
     .takes_value = true,
     .metavar = "NAME",
     .path = "backtest.timestamp_column"},
};

/* Cross-field checks run by sn_cli_load after every source is applied. */
static int validate_settings(void *config, sn_config_error *err)
{
    detect_settings *s = config;
    if (s->method == METHOD_THRESHOLD && isnan(s->ens.threshold.upper_warn) &&
        isnan(s->ens.threshold.upper_critical) && isnan(s->ens.threshold.lower_warn) &&
        isnan(s->ens.threshold.lower_critical)) {
        snprintf(err->msg, sizeof err->msg,
                 "config: detect.threshold.upper_warn: the threshold detector needs at least one "
                 "level (detect.threshold.upper_warn, upper_critical, lower_warn or "
                 "lower_critical)");
        return -EINVAL;
    }
    /* The chosen single detector is the one enabled, whatever the enable switches say. */
    if (s->method != METHOD_ENSEMBLE) {
        s->ens.zscore_enabled = s->method == METHOD_ZSCORE;
        s->ens.iqr_enabled = s->method == METHOD_IQR;
        s->ens.mad_enabled = s->method == METHOD_MAD;
        s->ens.cusum_enabled = s->method == METHOD_CUSUM;
        s->ens.threshold_enabled = s->method == METHOD_THRESHOLD;
        s->ens.min_agree = 1;
    }
    return sn_ensemble_settings_validate(&s->ens, "detect", err);
}

/* Counts of one run, for the summary line. */
typedef struct run_stats {
    uint64_t rows;      /* data rows read (good or bad) */
    uint64_t scored;    /* rows with a verdict */
    uint64_t cold;      /* rows before the baseline was ready */
    uint64_t anomalies; /* rows flagged */
    uint64_t skipped;   /* bad rows */
    uint64_t by_severity[SN_SEV_CRITICAL + 1];
} run_stats;

/* Logs a bad row (the first MAX_REPORTED_BAD_ROWS of them) and counts it. */
static void bad_row(run_stats *st, const char *input, long line, const char *why)
{
    st->skipped++;
    if (st->skipped <= MAX_REPORTED_BAD_ROWS)
        sn_log_warn("bad row skipped", SN_LOG_STR("input", input), SN_LOG_INT("line", line),
                    SN_LOG_STR("error", why));
    else if (st->skipped == MAX_REPORTED_BAD_ROWS + 1)
        sn_log_warn("more bad rows: only counting them from here", SN_LOG_STR("input", input));
}

/* Parses a whole field as a finite number. Returns 0, or -1 with the reason in *why. */
static int parse_value(const char *text, double *out, const char **why)
{
    while (*text == ' ' || *text == '\t')
        text++;
    if (*text == '\0') {
        *why = "empty value";
        return -1;
    }
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    while (*end == ' ' || *end == '\t')
        end++;
    if (*end != '\0') {
        *why = "value is not a number";
        return -1;
    }
    if (!isfinite(v) || errno == ERANGE) {
        *why = "value is not a finite number";
        return -1;
    }
    *out = v;
    return 0;
}

/* Finds a column by name in the header. Returns its index or -1. */
static long find_column(char **fields, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i], name) == 0)
            return (long)i;
    return -1;
}

/* Writes the output header: the fixed columns, then every input column but the two used. */
static int write_header(FILE *out, char **fields, size_t n, long ts_col, long val_col)
{
    if (fputs("timestamp,value,anomaly_score,is_anomaly,detector,severity", out) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if ((long)i == ts_col || (long)i == val_col)
            continue;
        if (putc(',', out) == EOF || sn_csv_write_field(out, fields[i]) != 0)
            return -1;
    }
    return putc('\n', out) == EOF ? -1 : 0;
}

/* Writes one scored row. */
static int write_row(FILE *out, char **fields, size_t n, long ts_col, long val_col, double value,
                     const sn_ensemble_result *res)
{
    const sn_verdict *v = &res->best;
    double score = v->ready ? v->score : 0.0;
    if (sn_csv_write_field(out, fields[ts_col]) != 0)
        return -1;
    /* The shortest of %.15g / %.17g that reads back as the same double. */
    char num[32];
    snprintf(num, sizeof num, "%.15g", value);
    if (strtod(num, NULL) != value)
        snprintf(num, sizeof num, "%.17g", value);
    if (fprintf(out, ",%s,%.6f,%d,%s,%s", num, score, v->anomaly ? 1 : 0,
                v->ready ? sn_detector_name(v->method) : "",
                v->anomaly ? sn_severity_name(v->severity) : "none") < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if ((long)i == ts_col || (long)i == val_col)
            continue;
        if (putc(',', out) == EOF || sn_csv_write_field(out, fields[i]) != 0)
            return -1;
    }
    return putc('\n', out) == EOF ? -1 : 0;
}

/* Runs the backtest from `in` to `out`. Returns 0, or 1 after logging a fatal input or output
 * error. Owns nothing it is given. */
static int run(const detect_settings *s, const char *input, FILE *in, FILE *out, run_stats *st)
{
    int rc = 1;
    char err[160];
    char **fields;
    size_t nfields, ncols;
    long line, ts_col, val_col;
    sn_window *w = NULL;
    sn_csv_reader *r = sn_csv_reader_create(in);
    if (r == NULL) {
        sn_log_error("out of memory");
        return 1;
    }
    /* The header: the first good record. */
    for (;;) {
        sn_csv_status cs = sn_csv_read(r, &fields, &nfields, &line, err, sizeof err);
        if (cs == SN_CSV_RECORD)
            break;
        if (cs == SN_CSV_BAD_RECORD) {
            sn_log_error("bad header", SN_LOG_STR("input", input), SN_LOG_INT("line", line),
                         SN_LOG_STR("error", err));
        } else if (cs == SN_CSV_EOF) {
            sn_log_error("no header: the input is empty", SN_LOG_STR("input", input));
        } else {
            sn_log_error("cannot read input", SN_LOG_STR("input", input), SN_LOG_STR("error", err));
        }
        goto out_free_reader;
    }
    ts_col = find_column(fields, nfields, s->timestamp_column);
    val_col = find_column(fields, nfields, s->value_column);
    if (ts_col < 0 || val_col < 0) {
        sn_log_error("the header lacks a column", SN_LOG_STR("input", input),
                     SN_LOG_STR("column", ts_col < 0 ? s->timestamp_column : s->value_column));
        goto out_free_reader;
    }
    ncols = nfields;
    if (write_header(out, fields, nfields, ts_col, val_col) != 0)
        goto out_write_error;

    if (sn_window_create(&w, (uint32_t)s->window) != 0) {
        sn_log_error("cannot create the baseline window", SN_LOG_INT("window", s->window));
        goto out_free_reader;
    }
    sn_ensemble ens;
    sn_ensemble_init(&ens);
    for (;;) {
        sn_csv_status cs = sn_csv_read(r, &fields, &nfields, &line, err, sizeof err);
        if (cs == SN_CSV_EOF)
            break;
        if (cs == SN_CSV_IO_ERROR) {
            sn_log_error("cannot read input", SN_LOG_STR("input", input), SN_LOG_STR("error", err));
            goto out_free_window;
        }
        st->rows++;
        if (cs == SN_CSV_BAD_RECORD) {
            bad_row(st, input, line, err);
            continue;
        }
        if (nfields != ncols) {
            snprintf(err, sizeof err, "%zu fields where the header has %zu", nfields, ncols);
            bad_row(st, input, line, err);
            continue;
        }
        double x;
        const char *why;
        if (parse_value(fields[val_col], &x, &why) != 0) {
            bad_row(st, input, line, why);
            continue;
        }
        sn_summary base;
        sn_ensemble_result res;
        sn_window_summary(w, &base);
        sn_ensemble_evaluate(&ens, &s->ens, &base, x, &res);
        if (res.best.ready)
            st->scored++;
        else
            st->cold++;
        if (res.best.anomaly) {
            st->anomalies++;
            st->by_severity[res.best.severity]++;
        }
        if (write_row(out, fields, nfields, ts_col, val_col, x, &res) != 0)
            goto out_write_error;
        if (!res.best.anomaly || s->learn == LEARN_ALL)
            sn_window_add(w, x); /* x is finite: cannot fail */
    }
    if (fflush(out) != 0)
        goto out_write_error;
    rc = 0;
    goto out_free_window;

out_write_error:
    sn_log_error("cannot write output", SN_LOG_STR("output", s->output), SN_LOG_ERRNO(errno));
out_free_window:
    sn_window_destroy(w);
out_free_reader:
    sn_csv_reader_destroy(r);
    return rc;
}

int main(int argc, char **argv)
{
    static const sn_program_info info = {
        .name = "sentinel-detect",
        .version = SENTINEL_VERSION,
        .component = "detect",
        .summary = "offline backtest: scores a CSV series (timestamp,value) with LLM-Sentinel's "
                   "detectors",
        .positional = "[FILE]",
        .flags = flags,
        .nflags = sizeof flags / sizeof flags[0],
        .validate = validate_settings,
    };
    detect_settings s;
    memset(&s, 0, sizeof s);
    sn_ensemble_config_defaults(&s.ens); /* fields the settings do not expose */
    sn_cli_result res;
    int outcome = sn_cli_load(argc, argv, &info, descriptors,
                              sizeof descriptors / sizeof descriptors[0], &s, &res);
    if (outcome != SN_CLI_RUN)
        return sn_cli_exit_status(outcome);

    int rc = 2;
    FILE *in = stdin, *out = stdout;
    const char *input = "-";
    if (res.nargs > 1) {
        sn_log_error("usage: at most one input file (or - for standard input)");
        goto out_cleanup;
    }
    if (res.nargs == 1 && strcmp(res.args[0], "-") != 0) {
        input = res.args[0];
        in = fopen(input, "r");
        if (in == NULL) {
            sn_log_error("cannot open input", SN_LOG_STR("input", input), SN_LOG_ERRNO(errno));
            rc = 1;
            goto out_cleanup;
        }
    }
    if (strcmp(s.output, "-") != 0) {
        out = fopen(s.output, "w");
        if (out == NULL) {
            sn_log_error("cannot open output", SN_LOG_STR("output", s.output), SN_LOG_ERRNO(errno));
            rc = 1;
            goto out_close_input;
        }
    }

    run_stats st;
    memset(&st, 0, sizeof st);
    rc = run(&s, input, in, out, &st);
    if (rc == 0)
        sn_log_info("backtest finished", SN_LOG_STR("input", input),
                    SN_LOG_STR("detector", method_names[s.method]), SN_LOG_UINT("rows", st.rows),
                    SN_LOG_UINT("scored", st.scored), SN_LOG_UINT("cold_start", st.cold),
                    SN_LOG_UINT("skipped", st.skipped), SN_LOG_UINT("anomalies", st.anomalies),
                    SN_LOG_UINT("critical", st.by_severity[SN_SEV_CRITICAL]),
                    SN_LOG_UINT("high", st.by_severity[SN_SEV_HIGH]),
                    SN_LOG_UINT("medium", st.by_severity[SN_SEV_MEDIUM]),
                    SN_LOG_UINT("low", st.by_severity[SN_SEV_LOW]));
    if (out != stdout && fclose(out) != 0 && rc == 0) {
        sn_log_error("cannot write output", SN_LOG_STR("output", s.output), SN_LOG_ERRNO(errno));
        rc = 1;
    }
out_close_input:
    if (in != stdin)
        fclose(in);
out_cleanup:
    sn_cli_result_cleanup(&res);
    return rc;
}
