/* Unit tests for shared/codepages.c. */
#include "codepages.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* 4 MiB of read-only data in the program file, mostly zeros, with marks. */
#define BIG (4u << 20)
static const uint8_t big[BIG] = {[0] = 1, [BIG / 4] = 2, [BIG / 2] = 3, [BIG - 1] = 4};

/* Pointers: relocated at start in a position-independent program (RELRO), so they differ from
 * the file's bytes and must survive. */
static int twice(int x)
{
    return 2 * x;
}
static int thrice(int x)
{
    return 3 * x;
}
static const char *const words[] = {"alpha", "beta", "gamma"};
static int (*const funcs[])(int) = {twice, thrice};

static int written; /* writable data: must keep its value */

/* Resident KiB of the mapping holding `addr`, from /proc/self/smaps; -1 if not found. */
static long rss_of(const void *addr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    long rss = -1;
    int in = 0;
    uintptr_t a = (uintptr_t)addr;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, ':') != NULL &&
            line[strcspn(line, " ")] == ' ' && strchr(line, '-') < strchr(line, ' ')) {
            in = a >= lo && a < hi;
            continue;
        }
        if (in && strncmp(line, "Rss:", 4) == 0) {
            sscanf(line + 4, "%ld", &rss);
            break;
        }
    }
    fclose(f);
    return rss;
}

/* Sum of big's bytes, read through a volatile pointer so every page is touched. */
static unsigned touch_big(void)
{
    const volatile uint8_t *p = big;
    unsigned sum = 0;
    for (size_t i = 0; i < BIG; i += 512)
        sum += p[i];
    sum += p[BIG - 1];
    return sum;
}

START_TEST(read_only_pages_leave_the_resident_set_and_come_back_the_same)
{
    written = 42;
    unsigned before_sum = touch_big();
    ck_assert_uint_eq(before_sum, 1 + 2 + 3 + 4);
    long before = rss_of(big);
    ck_assert_int_ge(before, (long)(BIG / 1024) - 64);

    size_t advised = 0;
    ck_assert_int_eq(sn_codepages_release(&advised), 0);
    ck_assert_uint_ge(advised, BIG - 8192);
    long after = rss_of(big);
    ck_assert_msg(after >= 0 && after < before / 4, "resident %ld KiB before, %ld after", before,
                  after);

    /* The same bytes, code and pointers afterwards; writable data untouched. */
    ck_assert_uint_eq(touch_big(), before_sum);
    ck_assert_str_eq(words[0], "alpha");
    ck_assert_str_eq(words[2], "gamma");
    ck_assert_int_eq(funcs[0](21), 42);
    ck_assert_int_eq(funcs[1](5), 15);
    ck_assert_int_eq(written, 42);
}
END_TEST

START_TEST(null_advised_and_repeated_calls_are_fine)
{
    ck_assert_int_eq(sn_codepages_release(NULL), 0);
    size_t advised = 0;
    ck_assert_int_eq(sn_codepages_release(&advised), 0);
    ck_assert_uint_gt(advised, 0);
    ck_assert_int_eq(funcs[0](4), 8);
}
END_TEST

static Suite *codepages_suite(void)
{
    Suite *s = suite_create("codepages");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, read_only_pages_leave_the_resident_set_and_come_back_the_same);
    tcase_add_test(tc, null_advised_and_repeated_calls_are_fine);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(codepages_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
