/*
 * csv.c -- bounded streaming RFC 4180 reader.
 *
 * State machine over characters: FIELD_START, IN_FIELD, IN_QUOTED, QUOTE_IN_QUOTED. The record
 * buffer holds the unquoted bytes of every field back to back, each NUL-terminated; field
 * pointers are set once the record is complete (the buffer never moves during a record because
 * it is allocated at its maximum size up front).
 */
#include "csv.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct sn_csv_reader {
    FILE *in;
    long line; /* current line number, 1-based */
    char *buf; /* SN_CSV_MAX_RECORD + SN_CSV_MAX_FIELDS bytes (field bytes plus NULs) */
    size_t len;
    size_t starts[SN_CSV_MAX_FIELDS];
    char *fields[SN_CSV_MAX_FIELDS];
    size_t nfields;
};

enum { FIELD_START, IN_FIELD, IN_QUOTED, QUOTE_IN_QUOTED };

#define BUF_SIZE (SN_CSV_MAX_RECORD + SN_CSV_MAX_FIELDS)

sn_csv_reader *sn_csv_reader_create(FILE *in)
{
    sn_csv_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->buf = malloc(BUF_SIZE);
    if (r->buf == NULL)
        goto out_free_reader;
    r->in = in;
    r->line = 1;
    return r;

out_free_reader:
    free(r);
    return NULL;
}

void sn_csv_reader_destroy(sn_csv_reader *r)
{
    if (r == NULL)
        return;
    free(r->buf);
    free(r);
}

/* Consumes input up to and including the end of the current physical line. */
static void skip_line(sn_csv_reader *r)
{
    int c;
    while ((c = getc(r->in)) != EOF) {
        if (c == '\n') {
            r->line++;
            return;
        }
    }
}

/* Appends one byte to the current field; false when the record is over its limit. */
static bool put(sn_csv_reader *r, char c)
{
    if (r->len >= SN_CSV_MAX_RECORD + r->nfields)
        return false;
    r->buf[r->len++] = c;
    return true;
}

/* Closes the current field; false when the record has too many fields. */
static bool end_field(sn_csv_reader *r)
{
    if (r->nfields >= SN_CSV_MAX_FIELDS)
        return false;
    r->buf[r->len++] = '\0';
    r->nfields++;
    if (r->nfields < SN_CSV_MAX_FIELDS)
        r->starts[r->nfields] = r->len;
    return true;
}

static sn_csv_status bad(sn_csv_reader *r, bool at_newline, char *err, size_t errlen,
                         const char *why)
{
    snprintf(err, errlen, "%s", why);
    if (!at_newline)
        skip_line(r);
    return SN_CSV_BAD_RECORD;
}

sn_csv_status sn_csv_read(sn_csv_reader *r, char ***fields, size_t *nfields, long *line, char *err,
                          size_t errlen)
{
    for (;;) {
        int state = FIELD_START;
        bool any = false;
        r->len = 0;
        r->nfields = 0;
        r->starts[0] = 0;
        *line = r->line;
        for (;;) {
            int c = getc(r->in);
            if (c == EOF) {
                if (ferror(r->in)) {
                    snprintf(err, errlen, "read error");
                    return SN_CSV_IO_ERROR;
                }
                if (state == IN_QUOTED)
                    return bad(r, true, err, errlen, "unterminated quoted field");
                if (!any)
                    return SN_CSV_EOF;
                if (!end_field(r))
                    return bad(r, true, err, errlen, "too many fields");
                goto record_done;
            }
            any = true;
            if (c == '\0')
                return bad(r, false, err, errlen, "NUL byte in record");
            switch (state) {
            case FIELD_START:
                if (c == '"') {
                    state = IN_QUOTED;
                    break;
                }
                state = IN_FIELD;
                /* fall through */
            case IN_FIELD:
                if (c == ',') {
                    if (!end_field(r))
                        return bad(r, false, err, errlen, "too many fields");
                    state = FIELD_START;
                } else if (c == '\n') {
                    r->line++;
                    if (r->len > 0 && r->buf[r->len - 1] == '\r')
                        r->len--;
                    if (!end_field(r))
                        return bad(r, true, err, errlen, "too many fields");
                    goto record_done;
                } else if (c == '"') {
                    return bad(r, false, err, errlen, "quote inside an unquoted field");
                } else if (!put(r, (char)c)) {
                    return bad(r, false, err, errlen, "record too long");
                }
                break;
            case IN_QUOTED:
                if (c == '"') {
                    state = QUOTE_IN_QUOTED;
                } else {
                    if (c == '\n')
                        r->line++;
                    if (!put(r, (char)c))
                        return bad(r, c == '\n', err, errlen, "record too long");
                }
                break;
            case QUOTE_IN_QUOTED:
                if (c == '"') {
                    if (!put(r, '"'))
                        return bad(r, false, err, errlen, "record too long");
                    state = IN_QUOTED;
                } else if (c == ',') {
                    if (!end_field(r))
                        return bad(r, false, err, errlen, "too many fields");
                    state = FIELD_START;
                } else if (c == '\n' || c == '\r') {
                    if (c == '\r') {
                        int n = getc(r->in);
                        if (n != '\n' && n != EOF)
                            ungetc(n, r->in);
                    }
                    r->line++;
                    if (!end_field(r))
                        return bad(r, true, err, errlen, "too many fields");
                    goto record_done;
                } else {
                    return bad(r, false, err, errlen, "text after a closing quote");
                }
                break;
            }
        }
    record_done:
        /* A record that is one empty field is a blank line: skip it. */
        if (r->nfields == 1 && r->buf[0] == '\0')
            continue;
        for (size_t i = 0; i < r->nfields; i++)
            r->fields[i] = r->buf + r->starts[i];
        *fields = r->fields;
        *nfields = r->nfields;
        return SN_CSV_RECORD;
    }
}

int sn_csv_write_field(FILE *out, const char *field)
{
    if (strpbrk(field, ",\"\r\n") == NULL)
        return fputs(field, out) < 0 ? -1 : 0;
    if (putc('"', out) == EOF)
        return -1;
    for (const char *p = field; *p; p++) {
        if (*p == '"' && putc('"', out) == EOF)
            return -1;
        if (putc(*p, out) == EOF)
            return -1;
    }
    return putc('"', out) == EOF ? -1 : 0;
}
