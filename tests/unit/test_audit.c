/*
 * Unit tests for the audit file's line format (audit_json_line): valid
 * JSON for hostile values, the entry's own time, refusals.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include <jansson.h>

#include "audit.h"

static void
test_line_is_json_with_hostile_values(void **state)
{
    const char *kv[] = {"type",     "request",
                        "endpoint", "/cgi-bin/\"x\\y\n\t\x01\x7f",
                        "corpid",   "企业"};
    char buf[512];
    size_t n;
    json_t *v;
    json_error_t e;

    (void)state;
    n = audit_json_line(1700000000123LL, kv, 6, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(buf[n - 1], '\n');
    assert_int_equal(strlen(buf), n);
    /* one line: no raw newline inside */
    assert_null(memchr(buf, '\n', n - 1));
    v = json_loads(buf, JSON_REJECT_DUPLICATES, &e);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "endpoint")),
                        "/cgi-bin/\"x\\y\n\t\x01\x7f");
    assert_string_equal(json_string_value(json_object_get(v, "corpid")),
                        "企业");
    assert_true(json_real_value(json_object_get(v, "at")) > 1700000000.0);
    json_decref(v);
}

static void
test_own_time_used(void **state)
{
    const char *kv[] = {"type", "lifecycle", "at", "1712345678"};
    char buf[256];
    json_t *v;
    json_error_t e;

    (void)state;
    assert_true(audit_json_line(1, kv, 4, buf, sizeof(buf)) > 0);
    v = json_loads(buf, JSON_REJECT_DUPLICATES, &e);
    assert_non_null(v);
    assert_int_equal(json_integer_value(json_object_get(v, "at")), 1712345678);
    json_decref(v);
    /* a non-numeric "at" gives way to the line's own time: one "at" */
    kv[3] = "soon";
    assert_true(audit_json_line(2000, kv, 4, buf, sizeof(buf)) > 0);
    v = json_loads(buf, JSON_REJECT_DUPLICATES, &e);
    assert_non_null(v);
    assert_true(json_is_number(json_object_get(v, "at")));
    json_decref(v);
}

static void
test_refusals(void **state)
{
    const char *rep[] = {"type", "a", "type", "b"};
    const char *odd[] = {"type", "a", "x"};
    const char *big[] = {"type", "0123456789012345678901234567890123456789"};
    char buf[128];

    (void)state;
    assert_int_equal(audit_json_line(1, rep, 4, buf, sizeof(buf)), 0);
    assert_int_equal(audit_json_line(1, odd, 3, buf, sizeof(buf)), 0);
    assert_int_equal(audit_json_line(1, big, 2, buf, 40), 0);
    assert_true(audit_json_line(1, big, 2, buf, sizeof(buf)) > 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_is_json_with_hostile_values),
        cmocka_unit_test(test_own_time_used),
        cmocka_unit_test(test_refusals),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
