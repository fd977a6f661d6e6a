/* Unit tests for aggregator/csv.c. */
#include "csv.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static FILE *mem(const char *text)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    ck_assert_ptr_nonnull(f);
    return f;
}

START_TEST(plain_and_quoted_records)
{
    FILE *f = mem("timestamp,value,note\r\n"
                  "1,2.5,\"a, b\"\n"
                  "\n"
                  "2,3,\"say \"\"hi\"\"\"\n"
                  "3,4,\"two\nlines\"\n"
                  "4,5,last");
    sn_csv_reader *r = sn_csv_reader_create(f);
    char **fl;
    size_t n;
    long line;
    char err[128];
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_RECORD);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(fl[2], "note");
    ck_assert_int_eq(line, 1);
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_RECORD);
    ck_assert_str_eq(fl[2], "a, b");
    ck_assert_int_eq(line, 2);
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_RECORD);
    ck_assert_str_eq(fl[2], "say \"hi\"");
    ck_assert_int_eq(line, 4);
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_RECORD);
    ck_assert_str_eq(fl[2], "two\nlines");
    ck_assert_int_eq(line, 5);
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_RECORD);
    ck_assert_str_eq(fl[0], "4");
    ck_assert_str_eq(fl[2], "last");
    ck_assert_int_eq(line, 7);
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_EOF);
    sn_csv_reader_destroy(r);
    fclose(f);
}
END_TEST

START_TEST(bad_records_are_skipped_with_their_line)
{
    FILE *f = mem("a,b\n"
                  "x\"y,1\n"
                  "\"q\"z,2\n"
                  "ok,3\n"
                  "\"never closed,4\n");
    sn_csv_reader *r = sn_csv_reader_create(f);
    char **fl;
    size_t n;
    long line;
    char err[128];
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_RECORD);
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_BAD_RECORD);
    ck_assert_int_eq(line, 2);
    ck_assert_ptr_nonnull(strstr(err, "quote"));
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_BAD_RECORD);
    ck_assert_int_eq(line, 3);
    ck_assert_ptr_nonnull(strstr(err, "closing quote"));
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_RECORD);
    ck_assert_str_eq(fl[0], "ok");
    ck_assert_int_eq(line, 4);
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_BAD_RECORD);
    ck_assert_ptr_nonnull(strstr(err, "unterminated"));
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_EOF);
    sn_csv_reader_destroy(r);
    fclose(f);
}
END_TEST

START_TEST(limits_are_enforced)
{
    size_t big = SN_CSV_MAX_RECORD + 10;
    char *text = malloc(big + 16);
    memset(text, 'x', big);
    memcpy(text + big, "\nok,1\n", 7);
    FILE *f = mem(text);
    sn_csv_reader *r = sn_csv_reader_create(f);
    char **fl;
    size_t n;
    long line;
    char err[128];
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_BAD_RECORD);
    ck_assert_ptr_nonnull(strstr(err, "too long"));
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_RECORD);
    ck_assert_str_eq(fl[0], "ok");
    ck_assert_int_eq(line, 2);
    sn_csv_reader_destroy(r);
    fclose(f);
    free(text);

    /* SN_CSV_MAX_FIELDS + 1 empty fields. */
    char commas[SN_CSV_MAX_FIELDS + 8];
    memset(commas, ',', SN_CSV_MAX_FIELDS);
    memcpy(commas + SN_CSV_MAX_FIELDS, "\na\n", 4);
    f = mem(commas);
    r = sn_csv_reader_create(f);
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_BAD_RECORD);
    ck_assert_ptr_nonnull(strstr(err, "too many"));
    ck_assert_int_eq(sn_csv_read(r, &fl, &n, &line, err, sizeof err), SN_CSV_RECORD);
    ck_assert_str_eq(fl[0], "a");
    sn_csv_reader_destroy(r);
    fclose(f);
}
END_TEST

START_TEST(writer_quotes_when_needed)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    ck_assert_int_eq(sn_csv_write_field(f, "plain"), 0);
    fputc('|', f);
    ck_assert_int_eq(sn_csv_write_field(f, "a,b"), 0);
    fputc('|', f);
    ck_assert_int_eq(sn_csv_write_field(f, "say \"hi\""), 0);
    fclose(f);
    ck_assert_str_eq(out, "plain|\"a,b\"|\"say \"\"hi\"\"\"");
    free(out);
}
END_TEST

static Suite *csv_suite(void)
{
    Suite *s = suite_create("csv");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, plain_and_quoted_records);
    tcase_add_test(tc, bad_records_are_skipped_with_their_line);
    tcase_add_test(tc, limits_are_enforced);
    tcase_add_test(tc, writer_quotes_when_needed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(csv_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
