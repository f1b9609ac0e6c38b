/*
 * Tests for capability names and their stored form: every name parses to
 * its bit and back, and any list that is not exactly names separated by
 * commas, each once, is refused without touching the output.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "broker.h"
#include "capability.h"

static void
test_names(void **state)
{
    char buf[CAPABILITY_LIST_MAX];
    unsigned bit;

    (void)state;
    for (bit = 1; bit <= CAP_ALL; bit <<= 1) {
        assert_non_null(capability_name(bit));
        assert_int_equal(capability_bit(capability_name(bit)), bit);
    }
    assert_null(capability_name(0));
    assert_null(capability_name(CAP_EXTERNAL_WRITE | CAP_MESSAGES));
    assert_null(capability_name(CAP_ALL + 1));
    assert_int_equal(capability_bit("external.welcome"), CAP_EXTERNAL_WELCOME);
    assert_int_equal(capability_bit("messages"), CAP_MESSAGES);
    assert_int_equal(capability_bit("Messages"), 0);
    assert_int_equal(capability_bit(""), 0);
    assert_int_equal(capability_bit(NULL), 0);
    /* the stored form of everything fits the declared bound */
    capability_format(CAP_ALL, buf, sizeof(buf));
    assert_string_equal(buf, "external.write,external.welcome,"
                             "external.message,messages");
}

static void
test_parse_round_trip(void **state)
{
    char buf[CAPABILITY_LIST_MAX];
    unsigned set, got;

    (void)state;
    for (set = 0; set <= CAP_ALL; set++) {
        got = 0xdead;
        capability_format(set, buf, sizeof(buf));
        assert_int_equal(capability_parse(buf, &got), BRK_OK);
        assert_int_equal(got, set);
    }
    assert_int_equal(capability_parse("messages,external.write", &got), BRK_OK);
    assert_int_equal(got, CAP_MESSAGES | CAP_EXTERNAL_WRITE);
    /* unknown bits are never written */
    capability_format(0x100u | CAP_MESSAGES, buf, sizeof(buf));
    assert_string_equal(buf, "messages");
    /* a short buffer ends at a whole name */
    capability_format(CAP_ALL, buf, 20);
    assert_string_equal(buf, "external.write");
}

static void
test_parse_refusals(void **state)
{
    static const char *const bad[] = {
        ",",
        "messages,",
        ",messages",
        "messages,,external.write",
        "messages,messages",
        "message",
        "messagesx",
        " messages",
        "messages ",
        "MESSAGES",
        "external.*",
        "messages\n",
        "external.write,external.welcome,external.message,messages,x",
    };
    char long_list[CAPABILITY_LIST_MAX + 16];
    unsigned got;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        got = 0xdead;
        assert_int_equal(capability_parse(bad[i], &got), BRK_ERR_INVAL);
        assert_int_equal(got, 0xdead);
    }
    memset(long_list, 'm', sizeof(long_list) - 1);
    long_list[sizeof(long_list) - 1] = '\0';
    assert_int_equal(capability_parse(long_list, &got), BRK_ERR_INVAL);
    assert_int_equal(capability_parse(NULL, &got), BRK_ERR_INVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_parse_round_trip),
        cmocka_unit_test(test_parse_refusals),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
