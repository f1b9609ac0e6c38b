/*
 * Tests for brk_dec and brk_decu, the request path's decimal formatting:
 * every edge of both types and a sweep of values, each against snprintf.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"

/* got: what brk_dec or brk_decu returned for buf, which was all 'x' */
static void
check_out(const char *buf, const char *got, const char *want)
{
    assert_ptr_equal(got, buf);
    assert_string_equal(buf, want);
    /* nothing written past the NUL */
    assert_int_equal(buf[strlen(want) + 1], 'x');
}

static void
check_signed(long long v)
{
    char want[64], buf[BRK_DEC_MAX + 8];

    snprintf(want, sizeof(want), "%lld", v);
    memset(buf, 'x', sizeof(buf));
    check_out(buf, brk_dec(buf, v), want);
}

static void
check_unsigned(unsigned long long v)
{
    char want[64], buf[BRK_DEC_MAX + 8];

    snprintf(want, sizeof(want), "%llu", v);
    memset(buf, 'x', sizeof(buf));
    check_out(buf, brk_decu(buf, v), want);
}

static void
test_edges(void **state)
{
    static const long long s[] = {
        0,        1,         -1,        9,         10,
        -10,      99,        100,       INT_MAX,   INT_MIN,
        LONG_MAX, LONG_MIN,  LLONG_MAX, LLONG_MIN, LLONG_MIN + 1,
        -40001,   1796645523};
    static const unsigned long long u[] = {0,
                                           1,
                                           9,
                                           10,
                                           ULONG_MAX,
                                           ULLONG_MAX,
                                           ULLONG_MAX - 1,
                                           (unsigned long long)LLONG_MAX + 1};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        check_signed(s[i]);
    for (i = 0; i < sizeof(u) / sizeof(u[0]); i++)
        check_unsigned(u[i]);
}

static void
test_longest_fits(void **state)
{
    char buf[BRK_DEC_MAX];

    (void)state;
    assert_int_equal(strlen(brk_decu(buf, ULLONG_MAX)) + 1, BRK_DEC_MAX);
    assert_int_equal(strlen(brk_dec(buf, LLONG_MIN)) + 1, BRK_DEC_MAX);
}

static void
test_sweep(void **state)
{
    unsigned long long v = 1;
    long long i;

    (void)state;
    for (i = -20000; i <= 20000; i++)
        check_signed(i);
    /* every power of ten and its neighbours, and a spread of bit patterns */
    while (v <= ULLONG_MAX / 10) {
        check_unsigned(v - 1);
        check_unsigned(v);
        check_unsigned(v + 1);
        check_signed((long long)v);
        check_signed(-(long long)v);
        v *= 10;
    }
    for (v = 0x9e3779b97f4a7c15ULL, i = 0; i < 100000; i++) {
        v ^= v << 13;
        v ^= v >> 7;
        v ^= v << 17;
        check_unsigned(v);
        check_signed((long long)v);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_longest_fits),
        cmocka_unit_test(test_sweep),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
