/* Unit tests for injector/jsonpatch.c: RFC 6901 pointers and RFC 6902 apply. */
#include "jsonpatch.h"

#include <check.h>
#include <errno.h>
#include <string.h>

/* Parses JSON text, failing the test when it does not parse. */
static json_t *J(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    ck_assert_msg(v != NULL, "bad test JSON: %s", e.text);
    return v;
}

/* Applies patch to doc and compares with want (NULL: the apply must fail and doc stay as is). */
static void check_apply(const char *doc, const char *patch, const char *want)
{
    json_t *d = J(doc), *p = J(patch), *before = json_deep_copy(d);
    char err[SN_JSONPATCH_ERROR_MAX] = "";
    int rc = sn_jsonpatch_apply(&d, p, err, sizeof err);
    if (want == NULL) {
        ck_assert_msg(rc == -EINVAL, "patch %s should fail, got %d", patch, rc);
        ck_assert(err[0] != '\0');
        ck_assert(json_equal(d, before));
    } else {
        ck_assert_msg(rc == 0, "patch %s failed: %s", patch, err);
        json_t *w = J(want);
        char *got = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        ck_assert_msg(json_equal(d, w), "patch %s gave %s", patch, got);
        free(got);
        json_decref(w);
    }
    json_decref(d);
    json_decref(p);
    json_decref(before);
}

START_TEST(escape_and_unescape)
{
    char buf[64];
    ck_assert_int_eq(sn_jsonpointer_escape("sentinel.llm-devops.io/status", buf, sizeof buf), 30);
    ck_assert_str_eq(buf, "sentinel.llm-devops.io~1status");
    ck_assert_int_eq(sn_jsonpointer_escape("a~b/c", buf, sizeof buf), 7);
    ck_assert_str_eq(buf, "a~0b~1c");
    /* "~01" decodes to "~1", not "/" (RFC 6901: ~1 first, then ~0) */
    ck_assert_int_eq(sn_jsonpointer_unescape("~01", 3, buf, sizeof buf), 2);
    ck_assert_str_eq(buf, "~1");
    ck_assert_int_eq(sn_jsonpointer_unescape("a~1b", 4, buf, sizeof buf), 3);
    ck_assert_str_eq(buf, "a/b");
    ck_assert_int_eq(sn_jsonpointer_unescape("a~2", 3, buf, sizeof buf), -EINVAL);
    ck_assert_int_eq(sn_jsonpointer_unescape("a~", 2, buf, sizeof buf), -EINVAL);
    ck_assert_int_eq(sn_jsonpointer_escape("abcdef", buf, 4), -ENOSPC);
    ck_assert_str_eq(buf, "");

    char p[48] = "/metadata";
    ck_assert_int_eq(sn_jsonpointer_append(p, sizeof p, "annotations"), 0);
    ck_assert_int_eq(sn_jsonpointer_append(p, sizeof p, "a/b~"), 0);
    ck_assert_str_eq(p, "/metadata/annotations/a~1b~0");
    ck_assert_int_eq(sn_jsonpointer_append(p, sizeof p, "0123456789012345678"), -ENOSPC);
    ck_assert_str_eq(p, "/metadata/annotations/a~1b~0");
    ck_assert_int_eq(sn_jsonpointer_append_index(p, sizeof p, 12), 0);
    ck_assert_str_eq(p, "/metadata/annotations/a~1b~0/12");
}
END_TEST

START_TEST(pointer_get_rfc6901_examples)
{
    json_t *doc = J("{\"foo\":[\"bar\",\"baz\"],\"\":0,\"a/b\":1,\"c%d\":2,\"e^f\":3,\"g|h\":4,"
                    "\"i\\\\j\":5,\"k\\\"l\":6,\" \":7,\"m~n\":8}");
    ck_assert_ptr_eq(sn_jsonpointer_get(doc, ""), doc);
    ck_assert_str_eq(json_string_value(sn_jsonpointer_get(doc, "/foo/0")), "bar");
    ck_assert_int_eq(json_integer_value(sn_jsonpointer_get(doc, "/")), 0);
    ck_assert_int_eq(json_integer_value(sn_jsonpointer_get(doc, "/a~1b")), 1);
    ck_assert_int_eq(json_integer_value(sn_jsonpointer_get(doc, "/c%d")), 2);
    ck_assert_int_eq(json_integer_value(sn_jsonpointer_get(doc, "/ ")), 7);
    ck_assert_int_eq(json_integer_value(sn_jsonpointer_get(doc, "/m~0n")), 8);
    ck_assert_ptr_null(sn_jsonpointer_get(doc, "/foo/2"));
    ck_assert_ptr_null(sn_jsonpointer_get(doc, "/foo/01")); /* leading zero */
    ck_assert_ptr_null(sn_jsonpointer_get(doc, "/foo/-"));
    ck_assert_ptr_null(sn_jsonpointer_get(doc, "foo"));   /* no leading slash */
    ck_assert_ptr_null(sn_jsonpointer_get(doc, "/m~2n")); /* bad escape */
    json_decref(doc);
}
END_TEST

START_TEST(apply_rfc6902_appendix_a)
{
    check_apply("{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\"}]",
                "{\"baz\":\"qux\",\"foo\":\"bar\"}");
    check_apply("{\"foo\":[\"bar\",\"baz\"]}",
                "[{\"op\":\"add\",\"path\":\"/foo/1\",\"value\":\"qux\"}]",
                "{\"foo\":[\"bar\",\"qux\",\"baz\"]}");
    check_apply("{\"baz\":\"qux\",\"foo\":\"bar\"}", "[{\"op\":\"remove\",\"path\":\"/baz\"}]",
                "{\"foo\":\"bar\"}");
    check_apply("{\"foo\":[\"bar\",\"qux\",\"baz\"]}", "[{\"op\":\"remove\",\"path\":\"/foo/1\"}]",
                "{\"foo\":[\"bar\",\"baz\"]}");
    check_apply("{\"baz\":\"qux\",\"foo\":\"bar\"}",
                "[{\"op\":\"replace\",\"path\":\"/baz\",\"value\":\"boo\"}]",
                "{\"baz\":\"boo\",\"foo\":\"bar\"}");
    check_apply("{\"foo\":{\"bar\":\"baz\",\"waldo\":\"fred\"},\"qux\":{\"corge\":\"grault\"}}",
                "[{\"op\":\"move\",\"from\":\"/foo/waldo\",\"path\":\"/qux/thud\"}]",
                "{\"foo\":{\"bar\":\"baz\"},\"qux\":{\"corge\":\"grault\",\"thud\":\"fred\"}}");
    check_apply("{\"foo\":[\"all\",\"grass\",\"cows\",\"eat\"]}",
                "[{\"op\":\"move\",\"from\":\"/foo/1\",\"path\":\"/foo/3\"}]",
                "{\"foo\":[\"all\",\"cows\",\"eat\",\"grass\"]}");
    check_apply("{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}",
                "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"qux\"},"
                "{\"op\":\"test\",\"path\":\"/foo/1\",\"value\":2.0}]",
                "{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}");
    check_apply("{\"baz\":\"qux\"}", "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"bar\"}]",
                NULL);
    check_apply("{\"foo\":\"bar\"}",
                "[{\"op\":\"add\",\"path\":\"/child\",\"value\":{\"grandchild\":{}}}]",
                "{\"foo\":\"bar\",\"child\":{\"grandchild\":{}}}");
    /* A.12: adding to a nonexistent target fails */
    check_apply("{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz/bat\",\"value\":\"qux\"}]",
                NULL);
    check_apply("{\"/\":9,\"~1\":10}", "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":10}]",
                "{\"/\":9,\"~1\":10}");
    check_apply("{\"foo\":[\"bar\"]}", "[{\"op\":\"add\",\"path\":\"/foo/-\",\"value\":[\"abc\"]}]",
                "{\"foo\":[\"bar\",[\"abc\"]]}");
    check_apply("{\"foo\":1}", "[{\"op\":\"copy\",\"from\":\"/foo\",\"path\":\"/bar\"}]",
                "{\"foo\":1,\"bar\":1}");
    check_apply("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"\",\"value\":[1]}]", "[1]");
}
END_TEST

START_TEST(apply_failures_leave_the_document)
{
    /* the second op fails: the first must not stay applied */
    check_apply("{\"a\":1}",
                "[{\"op\":\"add\",\"path\":\"/b\",\"value\":2},"
                "{\"op\":\"remove\",\"path\":\"/nope\"}]",
                NULL);
    check_apply("{\"a\":[1]}", "[{\"op\":\"add\",\"path\":\"/a/2\",\"value\":2}]", NULL);
    check_apply("{\"a\":[1]}", "[{\"op\":\"add\",\"path\":\"/a/01\",\"value\":2}]", NULL);
    check_apply("{\"a\":[1]}", "[{\"op\":\"remove\",\"path\":\"/a/1\"}]", NULL);
    check_apply("{\"a\":1}", "[{\"op\":\"replace\",\"path\":\"/b\",\"value\":2}]", NULL);
    check_apply("{\"a\":1}", "[{\"op\":\"frobnicate\",\"path\":\"/a\"}]", NULL);
    check_apply("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/b\"}]", NULL);
    check_apply("{\"a\":1}", "[{\"path\":\"/b\",\"value\":1}]", NULL);
    check_apply("{\"a\":{\"b\":1}}", "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a/b/c\"}]",
                NULL);
    check_apply("{\"a\":1}", "[{\"op\":\"move\",\"from\":\"/x\",\"path\":\"/y\"}]", NULL);
    check_apply("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"a\",\"value\":1}]", NULL);
    check_apply("{\"a\":1}", "{\"op\":\"add\"}", NULL);
}
END_TEST

START_TEST(builder_and_prefix)
{
    json_t *p = json_array();
    ck_assert_int_eq(sn_jsonpatch_add_op(p, "add", "/metadata/annotations", json_object()), 0);
    ck_assert_int_eq(sn_jsonpatch_add_op(p, "add", "/metadata/annotations/a~1b", json_string("x")),
                     0);
    ck_assert_int_eq(sn_jsonpatch_add_op(p, "test", "/spec", json_object()), 0);
    ck_assert_int_eq(sn_jsonpatch_prefix(p, "/spec/template"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(p, 1), "path")),
                     "/spec/template/metadata/annotations/a~1b");
    json_t *doc = J("{\"spec\":{\"template\":{\"metadata\":{},\"spec\":{}}}}");
    char err[SN_JSONPATCH_ERROR_MAX];
    ck_assert_int_eq(sn_jsonpatch_apply(&doc, p, err, sizeof err), 0);
    ck_assert_str_eq(
        json_string_value(sn_jsonpointer_get(doc, "/spec/template/metadata/annotations/a~1b")),
        "x");
    json_decref(doc);
    /* the patch has a ceiling */
    while (json_array_size(p) < SN_JSONPATCH_MAX_OPS)
        ck_assert_int_eq(sn_jsonpatch_add_op(p, "test", "", json_null()), 0);
    ck_assert_int_eq(sn_jsonpatch_add_op(p, "add", "/x", json_string("y")), -E2BIG);
    json_decref(p);
}
END_TEST

static Suite *jsonpatch_suite(void)
{
    Suite *s = suite_create("injector_jsonpatch");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, escape_and_unescape);
    tcase_add_test(tc, pointer_get_rfc6901_examples);
    tcase_add_test(tc, apply_rfc6902_appendix_a);
    tcase_add_test(tc, apply_failures_leave_the_document);
    tcase_add_test(tc, builder_and_prefix);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(jsonpatch_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
