/*
 * Tests for the errcode table: every named errcode has the code and HTTP
 * status of SPEC §5's error table, bodies are WeCom's JSON with the errmsg
 * escaped, and a body that does not fit or cannot be built leaves the
 * buffer untouched.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include <jansson.h>

#include "broker.h"
#include "errcodes.h"

static void
test_spec_table(void **state)
{
    static const struct {
        enum errcode e;
        long code;
        int http;
    } want[] = {
        {ERRCODE_OK, 0, 200},
        {ERRCODE_UNAVAILABLE, -1, 503},
        {ERRCODE_BAD_GATEWAY, -1, 502},
        {ERRCODE_GATEWAY_TIMEOUT, -1, 504},
        {ERRCODE_INVALID_SECRET, 40001, 200},
        {ERRCODE_INVALID_CORPID, 40013, 200},
        {ERRCODE_INVALID_TOKEN, 40014, 200},
        {ERRCODE_INVALID_CODE, 40029, 200},
        {ERRCODE_INVALID_PARAMETER, 40035, 200},
        {ERRCODE_INVALID_VALUE, 40058, 200},
        {ERRCODE_TOKEN_MISSING, 41001, 200},
        {ERRCODE_WELCOME_INVALID, 41050, 200},
        {ERRCODE_WELCOME_USED, 41051, 200},
        {ERRCODE_TOKEN_EXPIRED, 42001, 200},
        {ERRCODE_FREQ_LIMIT, 45009, 200},
        {ERRCODE_CONCURRENT_LIMIT, 45033, 200},
        {ERRCODE_API_FORBIDDEN, 48002, 200},
        {ERRCODE_NOT_AUTHORIZED, 48004, 200},
        {ERRCODE_OUT_OF_RANGE, 60011, 200},
        {ERRCODE_TICKET_EXPIRED, 84014, 200},
        {ERRCODE_INVALID_TICKET, 84015, 200},
        {ERRCODE_IDEMPOTENCY_CONFLICT, -1, 409},
    };
    size_t i;

    (void)state;
    assert_int_equal(nitems(want), ERRCODE__COUNT);
    for (i = 0; i < nitems(want); i++) {
        assert_int_equal(errcodes_code(want[i].e), want[i].code);
        assert_int_equal(errcodes_http(want[i].e), want[i].http);
        assert_non_null(errcodes_msg(want[i].e));
        assert_true(errcodes_msg(want[i].e)[0] != '\0');
    }
    assert_string_equal(errcodes_msg(ERRCODE_OK), "ok");
    assert_string_equal(errcodes_msg(ERRCODE_INVALID_TOKEN),
                        "invalid access_token");
}

/* A value outside the enum never reads as success. */
static void
test_out_of_range_fails_closed(void **state)
{
    (void)state;
    assert_int_equal(errcodes_code(ERRCODE__COUNT), -1);
    assert_int_equal(errcodes_http(ERRCODE__COUNT), 503);
    assert_int_equal(errcodes_code((enum errcode) - 5), -1);
}

static void
test_body_escapes(void **state)
{
    char buf[128];
    json_t *v;
    json_error_t jerr;

    (void)state;
    assert_int_equal(
        errcodes_body(48002, "api \"forbidden\"\n\\", buf, sizeof(buf)),
        BRK_OK);
    v = json_loads(buf, 0, &jerr);
    assert_non_null(v);
    assert_int_equal(json_integer_value(json_object_get(v, "errcode")), 48002);
    assert_string_equal(json_string_value(json_object_get(v, "errmsg")),
                        "api \"forbidden\"\n\\");
    assert_int_equal(json_object_size(v), 2);
    json_decref(v);
    assert_int_equal(errcodes_body(-1, "system busy", buf, sizeof(buf)),
                     BRK_OK);
    assert_string_equal(buf, "{\"errcode\":-1,\"errmsg\":\"system busy\"}");
}

/* Too small, not UTF-8, or no memory: an error and buf as it was. */
static void
test_body_refusals_leave_buf(void **state)
{
    char buf[64];
    unsigned long n;
    enum brk_err err;
    int failed;

    (void)state;
    memset(buf, 'x', sizeof(buf));
    /* {"errcode":0,"errmsg":"ok"} is 27 bytes: 27 do not hold its NUL */
    assert_int_equal(errcodes_body(0, "ok", buf, 27), BRK_ERR_TOOBIG);
    assert_int_equal(buf[0], 'x');
    assert_int_equal(errcodes_body(0, "ok", buf, 28), BRK_OK);
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(errcodes_body(0, "\xff\xfe", buf, sizeof(buf)),
                     BRK_ERR_INVAL);
    assert_int_equal(buf[0], 'x');
    assert_int_equal(errcodes_body(0, NULL, buf, sizeof(buf)), BRK_ERR_INVAL);
    assert_int_equal(buf[0], 'x');
    for (n = 1;; n++) {
        memset(buf, 'x', sizeof(buf));
        brk_alloc_fail_at(n);
        err = errcodes_body(40014, "invalid access_token", buf, sizeof(buf));
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        if (!failed) {
            assert_int_equal(err, BRK_OK);
            break;
        }
        /* jansson does not always say why it failed */
        assert_true(err == BRK_ERR_NOMEM || err == BRK_ERR_INVAL);
        assert_int_equal(buf[0], 'x');
    }
    assert_true(n > 1);
}

/* The suite-token refusals, and nothing next to them. */
static void
test_suite_token_refused(void **state)
{
    (void)state;
    assert_true(errcodes_suite_token_refused(40082));
    assert_true(errcodes_suite_token_refused(42009));
    assert_false(errcodes_suite_token_refused(42001));
    assert_false(errcodes_suite_token_refused(40014));
    assert_false(errcodes_suite_token_refused(0));
    assert_false(errcodes_suite_token_refused(-1));
    assert_int_equal(WECOM_ERR_FREQ_LIMIT, 45009);
    assert_int_equal(WECOM_ERR_NO_PRIVILEGE, 60011);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_table),
        cmocka_unit_test(test_out_of_range_fails_closed),
        cmocka_unit_test(test_body_escapes),
        cmocka_unit_test(test_body_refusals_leave_buf),
        cmocka_unit_test(test_suite_token_refused),
    };

    /* jansson's allocations fail with ours */
    json_set_alloc_funcs(brk_malloc, brk_free);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
