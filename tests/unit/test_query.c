/*
 * Tests for the query-string parser: splitting, percent-decoding that keeps
 * '+', repeated names, the parameter cap, malformed escapes and every
 * allocation failure.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "broker.h"
#include "query.h"

/* A pointer that query_parse must not overwrite on failure. */
static struct query sentinel_query;
#define SENTINEL (&sentinel_query)

/*---- Helpers ----*/

static struct query *
parse_ok(const char *raw, size_t max)
{
    struct query *q = NULL;

    assert_int_equal(query_parse(raw, max, &q), BRK_OK);
    assert_non_null(q);
    return q;
}

static void
expect_fail(const char *raw, size_t max, enum brk_err want)
{
    struct query *q = SENTINEL;
    enum brk_err err = query_parse(raw, max, &q);

    if (err != want)
        print_error("\"%s\": got %s, want %s\n", raw, brk_strerror(err),
                    brk_strerror(want));
    assert_int_equal(err, want);
    assert_ptr_equal(q, SENTINEL);
}

static void
assert_param(const struct query *q, size_t i, const char *name,
             const char *value)
{
    assert_true(i < q->n);
    assert_string_equal(q->params[i].name, name);
    assert_string_equal(q->params[i].value, value);
    assert_int_equal(q->params[i].value_len, strlen(value));
}

/*---- Tests ----*/

static void
test_null_gives_no_params(void **state)
{
    struct query *q = parse_ok(NULL, 8);

    (void)state;
    assert_int_equal(q->n, 0);
    assert_null(query_get(q, "a"));
    assert_int_equal(query_count(q, "a"), 0);
    query_free(q);
}

static void
test_empty_gives_no_params(void **state)
{
    struct query *q = parse_ok("", 8);

    (void)state;
    assert_int_equal(q->n, 0);
    assert_null(query_get(q, ""));
    query_free(q);
}

static void
test_two_params(void **state)
{
    struct query *q = parse_ok("a=1&b=2", 8);

    (void)state;
    assert_int_equal(q->n, 2);
    assert_param(q, 0, "a", "1");
    assert_param(q, 1, "b", "2");
    assert_string_equal(query_get(q, "a"), "1");
    assert_string_equal(query_get(q, "b"), "2");
    assert_null(query_get(q, "c"));
    assert_null(query_get(q, "A"));
    query_free(q);
}

static void
test_value_with_equals(void **state)
{
    struct query *q = parse_ok("a=b=c", 8);

    (void)state;
    assert_int_equal(q->n, 1);
    assert_param(q, 0, "a", "b=c");
    query_free(q);
}

static void
test_name_without_equals(void **state)
{
    struct query *q = parse_ok("flag&x=1&last", 8);

    (void)state;
    assert_int_equal(q->n, 3);
    assert_param(q, 0, "flag", "");
    assert_param(q, 1, "x", "1");
    assert_param(q, 2, "last", "");
    assert_non_null(query_get(q, "flag"));
    query_free(q);
}

static void
test_empty_name_and_value(void **state)
{
    struct query *q = parse_ok("=v&k=", 8);

    (void)state;
    assert_int_equal(q->n, 2);
    assert_param(q, 0, "", "v");
    assert_param(q, 1, "k", "");
    query_free(q);
}

static void
test_empty_segments_skipped(void **state)
{
    struct query *q = parse_ok("&&a=1&", 8);

    (void)state;
    assert_int_equal(q->n, 1);
    assert_param(q, 0, "a", "1");
    query_free(q);
    q = parse_ok("&", 8);
    assert_int_equal(q->n, 0);
    query_free(q);
    q = parse_ok("a=1&&&b=2", 8);
    assert_int_equal(q->n, 2);
    assert_param(q, 1, "b", "2");
    query_free(q);
}

static void
test_empty_segments_not_counted(void **state)
{
    struct query *q = parse_ok("&&&a=1&&&", 1);

    (void)state;
    assert_int_equal(q->n, 1);
    query_free(q);
}

static void
test_repeated_names(void **state)
{
    struct query *q = parse_ok("s=first&t=x&s=second&s=third", 8);

    (void)state;
    assert_int_equal(query_count(q, "s"), 3);
    assert_int_equal(query_count(q, "t"), 1);
    assert_int_equal(query_count(q, "u"), 0);
    assert_string_equal(query_get(q, "s"), "first");
    query_free(q);
}

static void
test_plus_kept(void **state)
{
    struct query *q = parse_ok("echostr=ab+cd%2Bef/gh==&a+b=1", 8);

    (void)state;
    assert_string_equal(query_get(q, "echostr"), "ab+cd+ef/gh==");
    assert_string_equal(query_get(q, "a+b"), "1");
    assert_null(query_get(q, "a b"));
    query_free(q);
}

static void
test_names_and_values_decoded(void **state)
{
    struct query *q = parse_ok("m%73g=%E4%BD%A0%20x&k%3D=%26", 8);

    (void)state;
    assert_string_equal(query_get(q, "msg"), "\xE4\xBD\xA0 x");
    assert_int_equal(q->params[0].value_len, 5);
    /* an escaped '=' or '&' is data, not a separator */
    assert_string_equal(query_get(q, "k="), "&");
    query_free(q);
}

static void
test_bad_escape_in_value(void **state)
{
    (void)state;
    expect_fail("a=%G0", 8, BRK_ERR_INVAL);
}

static void
test_bad_escape_in_name(void **state)
{
    (void)state;
    expect_fail("%zz=1", 8, BRK_ERR_INVAL);
}

static void
test_truncated_escape(void **state)
{
    (void)state;
    expect_fail("a=1&b=%4", 8, BRK_ERR_INVAL);
    expect_fail("a=%", 8, BRK_ERR_INVAL);
    /* the escape must not borrow digits from the next segment */
    expect_fail("a=%4&1", 8, BRK_ERR_INVAL);
    expect_fail("a%=1", 8, BRK_ERR_INVAL);
}

static void
test_decoded_nul_rejected(void **state)
{
    (void)state;
    expect_fail("a=x%00y", 8, BRK_ERR_INVAL);
    expect_fail("%00=1", 8, BRK_ERR_INVAL);
}

static void
test_bad_escape_after_good_params(void **state)
{
    (void)state;
    /* earlier params were allocated; ASan checks they are released */
    expect_fail("a=1&b=2&c=3&d=%GG", 8, BRK_ERR_INVAL);
}

static void
test_max_params_exact(void **state)
{
    struct query *q = parse_ok("a=1&b=2&c=3", 3);

    (void)state;
    assert_int_equal(q->n, 3);
    query_free(q);
}

static void
test_max_params_exceeded(void **state)
{
    (void)state;
    expect_fail("a=1&b=2&c=3&d=4", 3, BRK_ERR_TOOBIG);
    expect_fail("a", 0, BRK_ERR_TOOBIG);
}

/* Parameters without '=', empty ones and escapes only: the text that
 * needs the most room against the raw length (two NULs a parameter) still
 * fits the one block (the sanitizers check the bound). */
static void
test_text_fits_one_block(void **state)
{
    struct query *q = parse_ok("a&bb&ccc&&d=&=e&%41&%41%42=%43", 10);

    (void)state;
    assert_int_equal(q->n, 7);
    assert_string_equal(q->params[0].name, "a");
    assert_string_equal(q->params[0].value, "");
    assert_string_equal(q->params[2].name, "ccc");
    assert_string_equal(q->params[3].name, "d");
    assert_string_equal(q->params[3].value, "");
    assert_string_equal(q->params[4].name, "");
    assert_string_equal(q->params[4].value, "e");
    assert_string_equal(q->params[5].name, "A");
    assert_string_equal(q->params[6].name, "AB");
    assert_string_equal(q->params[6].value, "C");
    assert_int_equal(q->params[6].value_len, 1);
    query_free(q);
}

static void
test_max_zero_empty_ok(void **state)
{
    struct query *q = parse_ok("&&", 0);

    (void)state;
    assert_int_equal(q->n, 0);
    query_free(q);
}

static void
test_many_params_grow(void **state)
{
    char raw[64 * 8];
    size_t i, o = 0;
    struct query *q;

    (void)state;
    /* more than one growth of the parameter array */
    for (i = 0; i < 40; i++) {
        raw[o++] = (char)('A' + i % 26);
        raw[o++] = (char)('a' + i / 26);
        raw[o++] = '=';
        raw[o++] = (char)('0' + i % 10);
        raw[o++] = '&';
    }
    raw[o - 1] = '\0';
    q = parse_ok(raw, 40);
    assert_int_equal(q->n, 40);
    assert_param(q, 39, "Nb", "9");
    query_free(q);
    expect_fail(raw, 39, BRK_ERR_TOOBIG);
}

static void
test_free_null(void **state)
{
    (void)state;
    query_free(NULL);
}

static void
test_alloc_failures(void **state)
{
    static const char raw[] =
        "a=1&b=%2B&c&d=x=y&e=1&f=2&g=3&h=4&i=5&j=6&k=%E4%BD%A0";
    struct query *q;
    enum brk_err err;
    unsigned long n;
    int failed;

    (void)state;
    for (n = 1;; n++) {
        q = SENTINEL;
        brk_alloc_fail_at(n);
        err = query_parse(raw, 32, &q);
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        if (!failed) {
            assert_int_equal(err, BRK_OK);
            break;
        }
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_ptr_equal(q, SENTINEL);
        assert_true(n < 1000);
    }
    /* one allocation: the query, its parameters and their text are one
     * block, whatever the number of parameters */
    assert_int_equal(n, 2);
    assert_int_equal(q->n, 11);
    assert_string_equal(query_get(q, "k"), "\xE4\xBD\xA0");
    query_free(q);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_gives_no_params),
        cmocka_unit_test(test_empty_gives_no_params),
        cmocka_unit_test(test_two_params),
        cmocka_unit_test(test_value_with_equals),
        cmocka_unit_test(test_name_without_equals),
        cmocka_unit_test(test_empty_name_and_value),
        cmocka_unit_test(test_empty_segments_skipped),
        cmocka_unit_test(test_empty_segments_not_counted),
        cmocka_unit_test(test_repeated_names),
        cmocka_unit_test(test_plus_kept),
        cmocka_unit_test(test_names_and_values_decoded),
        cmocka_unit_test(test_bad_escape_in_value),
        cmocka_unit_test(test_bad_escape_in_name),
        cmocka_unit_test(test_truncated_escape),
        cmocka_unit_test(test_decoded_nul_rejected),
        cmocka_unit_test(test_bad_escape_after_good_params),
        cmocka_unit_test(test_max_params_exact),
        cmocka_unit_test(test_max_params_exceeded),
        cmocka_unit_test(test_text_fits_one_block),
        cmocka_unit_test(test_max_zero_empty_ok),
        cmocka_unit_test(test_many_params_grow),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_alloc_failures),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
