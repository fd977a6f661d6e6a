/*
 * libFuzzer target for the streaming CSV reader (aggregator/csv.c).
 *
 * The input is read as a stream (fmemopen) to its end. Every record must come back within the
 * reader's limits with NUL-terminated fields, a bad record with a one-line message, and line
 * numbers must never go backwards; the reader must reach EOF, never report an I/O error on a
 * memory stream. A record written back with sn_csv_write_field reads back as the same fields.
 */
#include "csv.h"
#include "fuzz_common.h"

#include <stdio.h>

/* Writes fields as one record and reads it back; aborts unless the same fields come back. */
static void check_round_trip(char **fields, size_t n)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        if ((i > 0 && putc(',', out) == EOF) || sn_csv_write_field(out, fields[i]) != 0)
            abort();
    }
    putc('\n', out);
    fclose(out);
    FILE *in = fmemopen(text, len, "r");
    sn_csv_reader *r = in != NULL ? sn_csv_reader_create(in) : NULL;
    if (r != NULL) {
        char **back;
        size_t nback;
        long line;
        char err[256];
        /* A record that was a single empty field is a blank line: skipped, EOF. */
        sn_csv_status st = sn_csv_read(r, &back, &nback, &line, err, sizeof err);
        if (n == 1 && fields[0][0] == '\0') {
            if (st != SN_CSV_EOF)
                abort();
        } else {
            if (st != SN_CSV_RECORD || nback != n)
                abort();
            for (size_t i = 0; i < n; i++)
                if (strcmp(back[i], fields[i]) != 0)
                    abort();
        }
        sn_csv_reader_destroy(r);
    }
    if (in != NULL)
        fclose(in);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0; /* fmemopen refuses an empty buffer */
    FILE *in = fmemopen((void *)data, size, "r");
    if (in == NULL)
        abort();
    sn_csv_reader *r = sn_csv_reader_create(in);
    if (r == NULL)
        abort();
    long last = 0;
    for (size_t guard = 0; guard <= size + 1; guard++) {
        char **fields;
        size_t n;
        long line = 0;
        char err[256];
        err[0] = '\0';
        sn_csv_status st = sn_csv_read(r, &fields, &n, &line, err, sizeof err);
        if (st == SN_CSV_EOF)
            goto out_free_reader;
        if (st == SN_CSV_IO_ERROR || line < last || line < 1)
            abort();
        last = line;
        if (st == SN_CSV_BAD_RECORD) {
            sn_fuzz_check_err(err, sizeof err);
            continue;
        }
        if (st != SN_CSV_RECORD || n == 0 || n > SN_CSV_MAX_FIELDS)
            abort();
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
            total += strlen(fields[i]);
        if (total > SN_CSV_MAX_RECORD)
            abort();
        /* fields[] belongs to r until its next read: copy them out first. */
        char *copy[SN_CSV_MAX_FIELDS];
        for (size_t i = 0; i < n; i++)
            copy[i] = strdup(fields[i]);
        check_round_trip(copy, n);
        for (size_t i = 0; i < n; i++)
            free(copy[i]);
    }
    abort(); /* more records than bytes: the reader does not advance */

out_free_reader:
    sn_csv_reader_destroy(r);
    fclose(in);
    return 0;
}
