/*
 * Unit tests for shared/otlp/pbwire.c: the wire reader's rules (nanopb 0.4's, see pbwire.h) and
 * the shared KeyValue/AnyValue reader's options. The trace decoder's equivalence with nanopb on
 * whole requests is tested in test_traces_equiv.c.
 */
#include "otlp/pbwire.h"

#include "genai.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define R(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

static sn_pbw_status v32(const uint8_t *b, size_t n, uint32_t *out, size_t *used)
{
    sn_pbw r = sn_pbw_init(b, n);
    sn_pbw_status st = sn_pbw_varint32(&r, out);
    *used = (size_t)(r.p - b);
    return st;
}

START_TEST(varint32_rules)
{
    uint32_t v;
    size_t used;
    ck_assert_int_eq(v32(R(0x05), &v, &used), SN_PBW_OK);
    ck_assert_uint_eq(v, 5);
    ck_assert_int_eq(v32(R(0xAC, 0x02), &v, &used), SN_PBW_OK);
    ck_assert_uint_eq(v, 300);
    /* padding bytes past bit 31 are tolerated, ten bytes at most */
    ck_assert_int_eq(v32(R(0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00), &v, &used), SN_PBW_OK);
    ck_assert_uint_eq(v, 1);
    ck_assert_uint_eq(used, 7);
    /* a negative int32 sign-extended to ten bytes */
    ck_assert_int_eq(v32(R(0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01), &v, &used),
                     SN_PBW_OK);
    ck_assert_uint_eq(v, UINT32_MAX);
    /* 2^32 + 1 does not fit */
    ck_assert_int_eq(v32(R(0x81, 0x80, 0x80, 0x80, 0x10), &v, &used), SN_PBW_VARINT_LONG);
    /* eleven bytes */
    ck_assert_int_eq(
        v32(R(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00), &v, &used),
        SN_PBW_VARINT_LONG);
    ck_assert_int_eq(v32(R(0x80, 0x80), &v, &used), SN_PBW_TRUNCATED);
    static const uint8_t none[1];
    ck_assert_int_eq(v32(none, 0, &v, &used), SN_PBW_TRUNCATED);
}
END_TEST

START_TEST(varint64_and_fixed)
{
    uint64_t v;
    sn_pbw r = sn_pbw_init(R(0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01));
    ck_assert_int_eq(sn_pbw_varint(&r, &v), SN_PBW_OK);
    ck_assert_uint_eq(v, UINT64_MAX);
    /* the tenth byte may only carry bit 63 */
    r = sn_pbw_init(R(0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02));
    ck_assert_int_eq(sn_pbw_varint(&r, &v), SN_PBW_VARINT_LONG);
    ck_assert_uint_eq(sn_pbw_left(&r), 0); /* reported after the bad byte, as nanopb does */
    uint32_t u;
    r = sn_pbw_init(R(0x80, 0x80, 0x80, 0x80, 0x10));
    ck_assert_int_eq(sn_pbw_uint32(&r, &u), SN_PBW_TOO_LARGE);
    r = sn_pbw_init(R(1, 2, 3, 4, 5, 6, 7, 8));
    ck_assert_int_eq(sn_pbw_fixed64(&r, &v), SN_PBW_OK);
    ck_assert_uint_eq(v, 0x0807060504030201ULL);
    r = sn_pbw_init(R(1, 2, 3));
    ck_assert_int_eq(sn_pbw_fixed32(&r, &u), SN_PBW_TRUNCATED);
    ck_assert_uint_eq(sn_pbw_left(&r), 3); /* the cursor stays */
}
END_TEST

START_TEST(tags_lengths_and_skips)
{
    uint32_t field, wt;
    sn_pbw r = sn_pbw_init(R(0x02));
    ck_assert_int_eq(sn_pbw_tag(&r, &field, &wt), SN_PBW_FIELD_ZERO);
    r = sn_pbw_init(R(0x7A));
    ck_assert_int_eq(sn_pbw_tag(&r, &field, &wt), SN_PBW_OK);
    ck_assert_uint_eq(field, 15);
    ck_assert_uint_eq(wt, SN_PBW_LEN);
    sn_pbw sub;
    r = sn_pbw_init(R(0x03, 'a', 'b', 'c', 0x09));
    ck_assert_int_eq(sn_pbw_len(&r, &sub), SN_PBW_OK);
    ck_assert_uint_eq(sn_pbw_left(&sub), 3);
    ck_assert_uint_eq(sn_pbw_left(&r), 1);
    r = sn_pbw_init(R(0x05, 'a'));
    ck_assert_int_eq(sn_pbw_len(&r, &sub), SN_PBW_PAST_END);
    /* skipping: a long length is a truncation; varints of any length; groups are invalid */
    r = sn_pbw_init(R(0x05, 'a'));
    ck_assert_int_eq(sn_pbw_skip(&r, SN_PBW_LEN), SN_PBW_TRUNCATED);
    r = sn_pbw_init(R(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00));
    ck_assert_int_eq(sn_pbw_skip(&r, SN_PBW_VARINT), SN_PBW_OK);
    ck_assert(!sn_pbw_more(&r));
    r = sn_pbw_init(R(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00));
    ck_assert_int_eq(sn_pbw_skip_scalar(&r, SN_PBW_VARINT), SN_PBW_VARINT_LONG);
    for (uint32_t w = 3; w <= 7; w++) {
        if (w == SN_PBW_I32)
            continue;
        r = sn_pbw_init(R(0, 0, 0, 0, 0, 0, 0, 0));
        ck_assert_int_eq(sn_pbw_skip(&r, w), SN_PBW_BAD_WIRE);
    }
    r = sn_pbw_init(R(1, 2, 3, 4));
    ck_assert_int_eq(sn_pbw_skip(&r, SN_PBW_I32), SN_PBW_OK);
    ck_assert_str_eq(sn_pbw_strerror(SN_PBW_PAST_END), "length runs past the end of its message");
}
END_TEST

/* --- the attribute reader --- */

typedef struct seen {
    int n;
    char key[64];
    sn_attr_value v[8];
    char str[8][SN_PBW_VALUE_MAX + 1];
} seen;

static void note(void *ud, const char *key, size_t keylen, const struct sn_attr_value *v)
{
    seen *s = ud;
    ck_assert_int_lt(s->n, 8);
    memcpy(s->key, key, keylen < 63 ? keylen : 63);
    s->key[keylen < 63 ? keylen : 63] = '\0';
    s->v[s->n] = *v;
    if (v->type == SN_ATTR_STRING || v->type == SN_ATTR_BYTES)
        memcpy(s->str[s->n], v->str, v->len);
    s->n++;
}

static bool no_secret(void *ud, const char *key, size_t keylen)
{
    (void)ud;
    return !(keylen == 6 && memcmp(key, "secret", 6) == 0);
}

static uint64_t counts[3];

static void reader(sn_pbw_kv *k, seen *s, bool arrays, bool utf8_cut)
{
    memset(k, 0, sizeof(*k));
    memset(s, 0, sizeof(*s));
    memset(counts, 0, sizeof counts);
    k->want = no_secret;
    k->deliver = note;
    k->ud = s;
    k->arrays = arrays;
    k->utf8_cut = utf8_cut;
    k->keys_skipped = &counts[0];
    k->values_truncated = &counts[1];
    k->values_ignored = &counts[2];
}

START_TEST(kv_arrays_value_first_and_want)
{
    sn_pbw_kv k;
    seen s;
    /* KeyValue{value: AnyValue{array: [int 7, string "x", array []]}, key: "k"}: value first */
    static const uint8_t kv[] = {0x12, 0x0F, 0x2A, 0x0D, 0x0A, 0x02, 0x18, 0x07, 0x0A, 0x03,
                                 0x0A, 0x01, 'x',  0x0A, 0x02, 0x2A, 0x00, 0x0A, 0x01, 'k'};
    reader(&k, &s, true, true);
    sn_pbw r = sn_pbw_init(kv, sizeof kv);
    ck_assert_msg(sn_pbw_kv_read(&k, r), "%s: %s", k.where ? k.where : "", k.what ? k.what : "");
    ck_assert_int_eq(s.n, 2);
    ck_assert_str_eq(s.key, "k");
    ck_assert_int_eq(s.v[0].type, SN_ATTR_INT);
    ck_assert_int_eq(s.v[0].i, 7);
    ck_assert_int_eq(s.v[1].type, SN_ATTR_STRING);
    ck_assert_uint_eq(counts[2], 1); /* the nested array */

    /* without arrays: the whole array is skipped and counted */
    reader(&k, &s, false, true);
    ck_assert(sn_pbw_kv_read(&k, r));
    ck_assert_int_eq(s.n, 0);
    ck_assert_uint_eq(counts[2], 1);

    /* a key the caller does not want: its value is never read */
    static const uint8_t secret[] = {0x0A, 0x06, 's',  'e',  'c',  'r', 'e',
                                     't',  0x12, 0x03, 0x0A, 0x01, 'p'};
    reader(&k, &s, true, true);
    ck_assert(sn_pbw_kv_read(&k, sn_pbw_init(secret, sizeof secret)));
    ck_assert_int_eq(s.n, 0);
}
END_TEST

/* The usual layout (key, then value, one-byte lengths, nothing else) is recognised, read in
 * place, and gives what the general reader gives; any other layout is left to it. */
START_TEST(kv_simple_layout)
{
    static const uint8_t simple[] = {0x0A, 0x01, 'k', 0x12, 0x03, 0x0A, 0x01, 'v'};
    const char *key = NULL;
    size_t keylen = 0;
    sn_pbw val;
    ck_assert(sn_pbw_kv_simple(sn_pbw_init(simple, sizeof simple), &key, &keylen, &val));
    ck_assert_ptr_eq(key, (const char *)simple + 2);
    ck_assert_uint_eq(keylen, 1);
    ck_assert_ptr_eq(val.p, simple + 5);
    ck_assert_ptr_eq(val.end, simple + sizeof simple);
    sn_pbw_kv k;
    seen s;
    reader(&k, &s, true, true);
    ck_assert(sn_pbw_kv_read(&k, sn_pbw_init(simple, sizeof simple)));
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.key, "k");
    ck_assert_int_eq(s.v[0].type, SN_ATTR_STRING);
    ck_assert_ptr_eq(s.v[0].str, (const char *)simple + 7); /* not copied */
    ck_assert_uint_eq(s.v[0].len, 1);

    static const uint8_t value_first[] = {0x12, 0x03, 0x0A, 0x01, 'v', 0x0A, 0x01, 'k'};
    static const uint8_t extra_field[] = {0x0A, 0x01, 'k', 0x12, 0x03, 0x0A, 0x01, 'v', 0x18, 0x01};
    static const uint8_t long_length[] = {0x0A, 0x81, 0x00, 'k', 0x12, 0x03, 0x0A, 0x01, 'v'};
    static const uint8_t value_short[] = {0x0A, 0x01, 'k', 0x12, 0x04, 0x0A, 0x01, 'v'};
    static const uint8_t key_past_end[] = {0x0A, 0x07, 'k', 0x12};
    const struct {
        const uint8_t *b;
        size_t n;
    } others[] = {{value_first, sizeof value_first},   {extra_field, sizeof extra_field},
                  {long_length, sizeof long_length},   {value_short, sizeof value_short},
                  {key_past_end, sizeof key_past_end}, {simple, 3}};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        ck_assert_msg(!sn_pbw_kv_simple(sn_pbw_init(others[i].b, others[i].n), &key, &keylen, &val),
                      "layout %zu", i);
    /* The general reader still reads the unusual layouts that are well-formed. */
    reader(&k, &s, true, true);
    ck_assert(sn_pbw_kv_read(&k, sn_pbw_init(long_length, sizeof long_length)));
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.key, "k");
    reader(&k, &s, true, true);
    ck_assert(!sn_pbw_kv_read(&k, sn_pbw_init(value_short, sizeof value_short)));
}
END_TEST

START_TEST(kv_bounds_and_errors)
{
    sn_pbw_kv k;
    seen s;
    /* KeyValue{key "k", value: AnyValue{string of 1100 bytes}}, the string with a 2-byte UTF-8
     * sequence split by the cut at 1024 */
    uint8_t big[1200];
    static const uint8_t head[] = {0x0A, 0x01, 'k', 0x12, 0xCF, 0x08, 0x0A, 0xCC, 0x08};
    size_t n = sizeof head;
    memcpy(big, head, n);
    for (int i = 0; i < 1100; i++)
        big[n++] = i == 1023 ? 0xC3 : i == 1024 ? 0xA9 : 'a';
    reader(&k, &s, true, true);
    ck_assert_msg(sn_pbw_kv_read(&k, sn_pbw_init(big, n)), "%s: %s", k.where, k.what);
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(s.v[0].len, 1023); /* the split sequence dropped */
    ck_assert_uint_eq(counts[1], 1);
    reader(&k, &s, true, false);
    ck_assert(sn_pbw_kv_read(&k, sn_pbw_init(big, n)));
    ck_assert_uint_eq(s.v[0].len, 1024); /* cut bytewise */

    /* a key of 256 bytes is skipped with its value */
    uint8_t longkey[300];
    n = 0;
    longkey[n++] = 0x0A;
    longkey[n++] = 0x80;
    longkey[n++] = 0x02;
    memset(longkey + n, 'k', 256);
    n += 256;
    longkey[n++] = 0x12;
    longkey[n++] = 0x02;
    longkey[n++] = 0x18;
    longkey[n++] = 0x01;
    reader(&k, &s, true, true);
    ck_assert(sn_pbw_kv_read(&k, sn_pbw_init(longkey, n)));
    ck_assert_int_eq(s.n, 0);
    ck_assert_uint_eq(counts[0], 1);

    /* errors: the key as a varint; an int member as bytes; a double cut short */
    reader(&k, &s, true, true);
    ck_assert(!sn_pbw_kv_read(&k, sn_pbw_init(R(0x08, 0x01))));
    ck_assert_str_eq(k.where, "attribute key");
    ck_assert_str_eq(k.what, "wrong wire type (expected a length-delimited field)");
    ck_assert(!sn_pbw_kv_read(&k, sn_pbw_init(R(0x0A, 0x01, 'k', 0x12, 0x02, 0x1A, 0x00))));
    ck_assert_str_eq(k.where, "attribute value");
    ck_assert_str_eq(k.what, "wrong wire type for an AnyValue member");
    ck_assert(!sn_pbw_kv_read(&k, sn_pbw_init(R(0x0A, 0x01, 'k', 0x12, 0x03, 0x21, 0x00, 0x00))));
    ck_assert_str_eq(k.what, "truncated message");
}
END_TEST

static Suite *pbwire_suite(void)
{
    Suite *s = suite_create("pbwire");
    TCase *tc = tcase_create("wire");
    tcase_add_test(tc, varint32_rules);
    tcase_add_test(tc, varint64_and_fixed);
    tcase_add_test(tc, tags_lengths_and_skips);
    tcase_add_test(tc, kv_arrays_value_first_and_want);
    tcase_add_test(tc, kv_bounds_and_errors);
    tcase_add_test(tc, kv_simple_layout);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pbwire_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
