/*
 * csv.h -- a bounded, streaming RFC 4180 CSV reader and field writer.
 *
 * Used by the offline backtest to read series users export from their own systems. Records are
 * read one at a time into a buffer owned by the reader; quoted fields may hold commas, doubled
 * quotes and line breaks. Limits on record size and field count turn hostile input into a clear
 * per-record error instead of unbounded memory.
 */
#ifndef SN_CSV_H
#define SN_CSV_H

#include <stddef.h>
#include <stdio.h>

#define SN_CSV_MAX_RECORD 65536 /* bytes in one record, quotes removed */
#define SN_CSV_MAX_FIELDS 256

typedef struct sn_csv_reader sn_csv_reader;

typedef enum sn_csv_status {
    SN_CSV_RECORD = 0, /* a record was read */
    SN_CSV_EOF,        /* no more records */
    SN_CSV_BAD_RECORD, /* this record was malformed and skipped; reading may continue */
    SN_CSV_IO_ERROR    /* the stream failed; stop */
} sn_csv_status;

/* Creates a reader over `in`, which stays owned by the caller. Returns NULL on allocation
 * failure. */
sn_csv_reader *sn_csv_reader_create(FILE *in);

/* Frees the reader (not the stream). NULL is allowed. */
void sn_csv_reader_destroy(sn_csv_reader *r);

/* Reads the next record. On SN_CSV_RECORD, *fields points to *nfields NUL-terminated strings
 * owned by the reader and valid until the next call. On SN_CSV_BAD_RECORD, err holds the reason
 * and the rest of that record has been consumed. *line is the line number the record started
 * on (1-based) in every case but EOF. Blank lines are skipped. */
sn_csv_status sn_csv_read(sn_csv_reader *r, char ***fields, size_t *nfields, long *line, char *err,
                          size_t errlen);

/* Writes one field to `out`, quoting it when it holds a comma, quote, CR or LF. Returns 0, or -1
 * on a write error. */
int sn_csv_write_field(FILE *out, const char *field);

#endif
