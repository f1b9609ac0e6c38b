/*
 * Tests for the bounded buffer: the limit is exact, a refused append frees
 * the contents, take moves ownership, secret buffers behave the same, and
 * no size arithmetic wraps. A buffer started in its caller's storage
 * allocates nothing while its bytes fit there, moves to the heap when they
 * outgrow it, never frees that storage, and wipes it when secret.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "broker.h"
#include "dynbuf.h"

typedef void init_fn(struct dynbuf *d, size_t limit);

/*---- Helpers ----*/

static void
assert_freed(const struct dynbuf *d)
{
    assert_null(d->buf);
    assert_int_equal(d->len, 0);
    assert_int_equal(d->cap, 0);
}

static void
assert_holds(const struct dynbuf *d, const char *want)
{
    size_t n = strlen(want);

    assert_non_null(d->buf);
    assert_int_equal(d->len, n);
    assert_true(d->cap >= n + 1);
    assert_memory_equal(d->buf, want, n + 1);
}

/* Each behaviour test runs for a plain and a secret buffer. */
static void
check_add_within_limit(init_fn *init)
{
    struct dynbuf d;

    init(&d, 16);
    assert_int_equal(dynbuf_add(&d, "abc", 3), BRK_OK);
    assert_holds(&d, "abc");
    assert_int_equal(dynbuf_add_str(&d, "def"), BRK_OK);
    assert_holds(&d, "abcdef");
    assert_int_equal(dynbuf_add(&d, "xyz", 0), BRK_OK);
    assert_holds(&d, "abcdef");
    dynbuf_free(&d);
    assert_freed(&d);
}

static void
check_exactly_at_limit(init_fn *init)
{
    struct dynbuf d;

    init(&d, 10);
    assert_int_equal(dynbuf_add(&d, "01234", 5), BRK_OK);
    assert_int_equal(dynbuf_add(&d, "56789", 5), BRK_OK);
    assert_holds(&d, "0123456789");
    assert_int_equal(dynbuf_add(&d, "", 0), BRK_OK);
    assert_holds(&d, "0123456789");
    dynbuf_free(&d);

    init(&d, 10);
    assert_int_equal(dynbuf_add(&d, "0123456789", 10), BRK_OK);
    assert_holds(&d, "0123456789");
    /* never allocates past the limit and its NUL */
    assert_int_equal(d.cap, 11);
    dynbuf_free(&d);
}

static void
check_one_over_limit(init_fn *init)
{
    struct dynbuf d;

    init(&d, 10);
    assert_int_equal(dynbuf_add(&d, "0123456789A", 11), BRK_ERR_TOOBIG);
    assert_freed(&d);

    init(&d, 10);
    assert_int_equal(dynbuf_add(&d, "01234", 5), BRK_OK);
    assert_int_equal(dynbuf_add(&d, "567890", 6), BRK_ERR_TOOBIG);
    assert_freed(&d);
    /* the buffer is reusable afterwards */
    assert_int_equal(dynbuf_add(&d, "ok", 2), BRK_OK);
    assert_holds(&d, "ok");
    dynbuf_free(&d);

    init(&d, 10);
    assert_int_equal(dynbuf_add(&d, "0123456789", 10), BRK_OK);
    assert_int_equal(dynbuf_add_str(&d, "x"), BRK_ERR_TOOBIG);
    assert_freed(&d);
}

static void
check_printf_long(init_fn *init)
{
    char want[1001];
    struct dynbuf d;

    memset(want, 'x', 990);
    memcpy(want + 990, "-123456789", 11);
    init(&d, 4096);
    assert_int_equal(dynbuf_add_str(&d, "<"), BRK_OK);
    assert_int_equal(dynbuf_printf(&d, "%.*s-%d", 990, want, 123456789),
                     BRK_OK);
    assert_int_equal(d.len, 1 + 1000);
    assert_int_equal(d.buf[0], '<');
    assert_memory_equal(d.buf + 1, want, 1001);
    dynbuf_free(&d);

    /* exactly the size of the on-stack first attempt, and one past it */
    init(&d, 4096);
    assert_int_equal(dynbuf_printf(&d, "%.*s", 255, want), BRK_OK);
    assert_int_equal(d.len, 255);
    assert_int_equal(dynbuf_printf(&d, "%.*s", 256, want), BRK_OK);
    assert_int_equal(d.len, 511);
    assert_int_equal(strlen(d.buf), 511);
    assert_memory_equal(d.buf + 255, want, 256);
    dynbuf_free(&d);
}

static void
check_printf_short(init_fn *init)
{
    struct dynbuf d;

    init(&d, 64);
    assert_int_equal(dynbuf_printf(&d, "%s=%d", "n", 42), BRK_OK);
    assert_int_equal(dynbuf_printf(&d, "%s", ""), BRK_OK);
    assert_int_equal(dynbuf_printf(&d, ";%lu", 7ul), BRK_OK);
    assert_holds(&d, "n=42;7");
    dynbuf_free(&d);
}

static void
check_printf_over_limit(init_fn *init)
{
    char big[600];
    struct dynbuf d;

    memset(big, 'y', sizeof(big));
    init(&d, 8);
    assert_int_equal(dynbuf_printf(&d, "%s", "12345678"), BRK_OK);
    assert_int_equal(dynbuf_printf(&d, "%d", 9), BRK_ERR_TOOBIG);
    assert_freed(&d);

    init(&d, 500);
    assert_int_equal(dynbuf_printf(&d, "%.*s", 501, big), BRK_ERR_TOOBIG);
    assert_freed(&d);
}

static void
check_take_moves(init_fn *init)
{
    struct dynbuf d;
    char *out = NULL;
    size_t len = 0;

    init(&d, 64);
    assert_int_equal(dynbuf_add_str(&d, "hello"), BRK_OK);
    assert_int_equal(dynbuf_take(&d, &out, &len), BRK_OK);
    assert_non_null(out);
    assert_string_equal(out, "hello");
    assert_int_equal(len, 5);
    assert_freed(&d);
    /* the buffer starts afresh and does not share the taken bytes */
    assert_int_equal(dynbuf_add_str(&d, "again"), BRK_OK);
    assert_ptr_not_equal(d.buf, out);
    assert_string_equal(out, "hello");
    dynbuf_free(&d);
    brk_free(out);
}

static void
check_take_empty(init_fn *init)
{
    struct dynbuf d;
    char *out = NULL;
    size_t len = 777;

    init(&d, 64);
    assert_int_equal(dynbuf_take(&d, &out, &len), BRK_OK);
    assert_non_null(out);
    assert_string_equal(out, "");
    assert_int_equal(len, 0);
    assert_freed(&d);
    brk_free(out);

    /* a zero limit still yields an empty string */
    init(&d, 0);
    assert_int_equal(dynbuf_take(&d, &out, NULL), BRK_OK);
    assert_string_equal(out, "");
    brk_free(out);
}

static void
check_take_after_reset(init_fn *init)
{
    struct dynbuf d;
    char *out = NULL;
    size_t len = 777;

    init(&d, 64);
    assert_int_equal(dynbuf_add_str(&d, "abc"), BRK_OK);
    dynbuf_reset(&d);
    assert_non_null(d.buf);
    assert_holds(&d, "");
    assert_int_equal(dynbuf_take(&d, &out, &len), BRK_OK);
    assert_string_equal(out, "");
    assert_int_equal(len, 0);
    brk_free(out);
}

static void
check_reset_keeps_allocation(init_fn *init)
{
    struct dynbuf d;
    char *before;
    size_t cap;

    init(&d, 64);
    assert_int_equal(dynbuf_add_str(&d, "abcdef"), BRK_OK);
    before = d.buf;
    cap = d.cap;
    dynbuf_reset(&d);
    assert_ptr_equal(d.buf, before);
    assert_int_equal(d.cap, cap);
    assert_holds(&d, "");
    assert_int_equal(dynbuf_add_str(&d, "xy"), BRK_OK);
    assert_holds(&d, "xy");
    dynbuf_free(&d);
    dynbuf_reset(&d);
    assert_freed(&d);
}

static void
check_many_small_adds(init_fn *init)
{
    struct dynbuf d;
    size_t i;
    char c;

    init(&d, 10000);
    for (i = 0; i < 10000; i++) {
        c = (char)('a' + i % 26);
        assert_int_equal(dynbuf_add(&d, &c, 1), BRK_OK);
    }
    assert_int_equal(d.len, 10000);
    assert_int_equal(d.cap, 10001);
    assert_int_equal(d.buf[10000], '\0');
    for (i = 0; i < 10000; i++)
        assert_int_equal(d.buf[i], 'a' + i % 26);
    c = 'z';
    assert_int_equal(dynbuf_add(&d, &c, 1), BRK_ERR_TOOBIG);
    assert_freed(&d);
}

static void
check_size_max(init_fn *init)
{
    struct dynbuf d;
    static const char src[8] = "1234567";

    /* n alone is over any limit */
    init(&d, 100);
    assert_int_equal(dynbuf_add(&d, src, SIZE_MAX), BRK_ERR_TOOBIG);
    assert_freed(&d);

    /* len + n wraps around to a small number */
    init(&d, 100);
    assert_int_equal(dynbuf_add(&d, src, 5), BRK_OK);
    assert_int_equal(dynbuf_add(&d, src, SIZE_MAX - 2), BRK_ERR_TOOBIG);
    assert_freed(&d);

    init(&d, SIZE_MAX / 2);
    assert_int_equal(dynbuf_add(&d, src, SIZE_MAX), BRK_ERR_TOOBIG);
    assert_freed(&d);
}

static void
check_size_max_unbounded(init_fn *init)
{
    struct dynbuf d;
    static const char src[8] = "1234567";
    enum brk_err err;

    /* even a limit of SIZE_MAX leaves no room for SIZE_MAX bytes + NUL */
    init(&d, SIZE_MAX);
    assert_int_equal(dynbuf_add(&d, src, SIZE_MAX), BRK_ERR_TOOBIG);
    assert_freed(&d);

    /* a huge append is refused or fails to allocate, never wraps */
    init(&d, SIZE_MAX);
    assert_int_equal(dynbuf_add(&d, src, 1), BRK_OK);
    err = dynbuf_add(&d, src, SIZE_MAX / 2 + 2);
    assert_true(err == BRK_ERR_TOOBIG || err == BRK_ERR_NOMEM);
    assert_freed(&d);

    init(&d, SIZE_MAX);
    assert_int_equal(dynbuf_add_str(&d, "still usable"), BRK_OK);
    assert_holds(&d, "still usable");
    dynbuf_free(&d);
}

/* Run a fixed sequence; returns the first error, contents checked. */
static enum brk_err
alloc_sequence(init_fn *init, char **out)
{
    static char block[5000];
    struct dynbuf d;
    enum brk_err err;

    memset(block, 'b', sizeof(block));
    init(&d, 1 << 20);
    err = dynbuf_add(&d, block, 100);
    if (!err)
        err = dynbuf_printf(&d, "%.*s|%d", 300, block, 7);
    if (!err)
        err = dynbuf_add(&d, block, sizeof(block));
    if (!err)
        err = dynbuf_take(&d, out, NULL);
    if (err)
        assert_freed(&d);
    return err;
}

static void
check_alloc_failures(init_fn *init)
{
    char *out;
    enum brk_err err;
    unsigned long n;
    int failed;

    for (n = 1;; n++) {
        out = NULL;
        brk_alloc_fail_at(n);
        err = alloc_sequence(init, &out);
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        if (!failed) {
            assert_int_equal(err, BRK_OK);
            break;
        }
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(out);
        assert_true(n < 1000);
    }
    assert_true(n > 1);
    assert_non_null(out);
    assert_int_equal(strlen(out), 100 + 300 + 2 + 5000);
    brk_free(out);
}

static void
check_take_alloc_failure(init_fn *init)
{
    struct dynbuf d;
    char *out = NULL;
    size_t len = 777;

    init(&d, 64);
    brk_alloc_fail_at(1);
    assert_int_equal(dynbuf_take(&d, &out, &len), BRK_ERR_NOMEM);
    brk_alloc_fail_at(0);
    assert_null(out);
    assert_int_equal(len, 777);
    assert_freed(&d);
}

/* Room is made for what the caller writes itself, within the limit; past
 * it, the buffer is freed as by a failed add. */
static void
check_reserve(init_fn *init)
{
    struct dynbuf d;

    init(&d, 10);
    assert_int_equal(dynbuf_add(&d, "abc", 3), BRK_OK);
    assert_int_equal(dynbuf_reserve(&d, 7), BRK_OK);
    assert_holds(&d, "abc");
    assert_true(d.cap >= 11);
    memcpy(d.buf + d.len, "defghij", 7);
    d.len += 7;
    d.buf[d.len] = '\0';
    assert_holds(&d, "abcdefghij");
    assert_int_equal(dynbuf_reserve(&d, 0), BRK_OK);
    assert_int_equal(dynbuf_reserve(&d, 1), BRK_ERR_TOOBIG);
    assert_freed(&d);

    init(&d, 10);
    assert_int_equal(dynbuf_reserve(&d, SIZE_MAX), BRK_ERR_TOOBIG);
    assert_freed(&d);
    init(&d, 10);
    brk_alloc_fail_at(1);
    assert_int_equal(dynbuf_reserve(&d, 4), BRK_ERR_NOMEM);
    brk_alloc_fail_at(0);
    assert_freed(&d);
}

/*---- Test entry points ----*/

#define BOTH(check)                                                            \
    static void test_##check(void **state)                                     \
    {                                                                          \
        (void)state;                                                           \
        check_##check(dynbuf_init);                                            \
    }                                                                          \
    static void test_secret_##check(void **state)                              \
    {                                                                          \
        (void)state;                                                           \
        check_##check(dynbuf_init_secret);                                     \
    }

BOTH(add_within_limit)
BOTH(exactly_at_limit)
BOTH(one_over_limit)
BOTH(printf_short)
BOTH(printf_long)
BOTH(printf_over_limit)
BOTH(take_moves)
BOTH(take_empty)
BOTH(take_after_reset)
BOTH(reset_keeps_allocation)
BOTH(many_small_adds)
BOTH(size_max)
BOTH(size_max_unbounded)
BOTH(alloc_failures)
BOTH(take_alloc_failure)
BOTH(reserve)

static void
test_init_flags(void **state)
{
    struct dynbuf d;

    (void)state;
    memset(&d, 0x5a, sizeof(d));
    dynbuf_init(&d, 42);
    assert_freed(&d);
    assert_int_equal(d.limit, 42);
    assert_int_equal(d.secret, 0);
    memset(&d, 0x5a, sizeof(d));
    dynbuf_init_secret(&d, 43);
    assert_freed(&d);
    assert_int_equal(d.limit, 43);
    assert_int_not_equal(d.secret, 0);
}

static void
test_reset_keeps_plain_bytes(void **state)
{
    struct dynbuf d;

    (void)state;
    dynbuf_init(&d, 64);
    assert_int_equal(dynbuf_add_str(&d, "abcdef"), BRK_OK);
    dynbuf_reset(&d);
    /* a plain buffer only terminates: the old bytes stay */
    assert_memory_equal(d.buf, "\0bcdef", 7);
    dynbuf_free(&d);
}

static void
test_secret_reset_wipes(void **state)
{
    static const char zero[6];
    struct dynbuf d;

    (void)state;
    dynbuf_init_secret(&d, 64);
    assert_int_equal(dynbuf_add_str(&d, "s3cret"), BRK_OK);
    dynbuf_reset(&d);
    assert_non_null(d.buf);
    assert_memory_equal(d.buf, zero, sizeof(zero));
    dynbuf_free(&d);
}

static void
test_free_twice(void **state)
{
    struct dynbuf d;

    (void)state;
    dynbuf_init(&d, 8);
    dynbuf_free(&d);
    dynbuf_free(&d);
    assert_freed(&d);
}

/*---- Buffers that start in the caller's storage ----*/

typedef void inline_fn(struct dynbuf *d, char *first, size_t first_cap,
                       size_t limit);

/* empty and back in its first storage */
static void
assert_at_first(const struct dynbuf *d, const char *first, size_t first_cap)
{
    assert_ptr_equal(d->buf, first);
    assert_int_equal(d->cap, first_cap);
    assert_int_equal(d->len, 0);
    assert_int_equal(d->buf[0], '\0');
}

static void
check_inline_fits(inline_fn *init)
{
    char first[16];
    struct dynbuf d;

    init(&d, first, sizeof(first), 100);
    assert_at_first(&d, first, sizeof(first));
    /* fifteen bytes and the NUL fit: no allocation at all */
    brk_alloc_fail_at(1);
    assert_int_equal(dynbuf_add_str(&d, "0123456789"), BRK_OK);
    assert_int_equal(dynbuf_printf(&d, "%s%d", "ab", 123), BRK_OK);
    assert_false(brk_alloc_failed());
    brk_alloc_fail_at(0);
    assert_ptr_equal(d.buf, first);
    assert_holds(&d, "0123456789ab123");
    dynbuf_reset(&d);
    assert_at_first(&d, first, sizeof(first));
    dynbuf_free(&d);
    assert_at_first(&d, first, sizeof(first));
}

static void
check_inline_outgrows(inline_fn *init)
{
    char first[8], big[100];
    struct dynbuf d;

    memset(big, 'q', sizeof(big));
    init(&d, first, sizeof(first), 1000);
    assert_int_equal(dynbuf_add_str(&d, "abcdefg"), BRK_OK);
    assert_ptr_equal(d.buf, first);
    /* the eighth byte needs the heap; what was written comes along */
    assert_int_equal(dynbuf_add(&d, "h", 1), BRK_OK);
    assert_ptr_not_equal(d.buf, first);
    assert_holds(&d, "abcdefgh");
    assert_int_equal(dynbuf_add(&d, big, sizeof(big)), BRK_OK);
    assert_int_equal(d.len, 108);
    assert_memory_equal(d.buf + 8, big, sizeof(big));
    /* the heap block goes, the first storage is used again (under the
     * sanitizers, freeing the array would be an error) */
    dynbuf_free(&d);
    assert_at_first(&d, first, sizeof(first));
    assert_int_equal(dynbuf_add_str(&d, "again"), BRK_OK);
    assert_ptr_equal(d.buf, first);
    assert_holds(&d, "again");
    dynbuf_free(&d);
}

static void
check_inline_limit(inline_fn *init)
{
    char first[64];
    struct dynbuf d;

    /* the limit holds even where the first storage has room */
    init(&d, first, sizeof(first), 5);
    assert_int_equal(dynbuf_add_str(&d, "12345"), BRK_OK);
    assert_int_equal(dynbuf_add_str(&d, "6"), BRK_ERR_TOOBIG);
    assert_at_first(&d, first, sizeof(first));
    assert_int_equal(dynbuf_printf(&d, "%s", "123456"), BRK_ERR_TOOBIG);
    assert_at_first(&d, first, sizeof(first));
    dynbuf_free(&d);
    /* and past it, on the heap */
    init(&d, first, 4, 10);
    assert_int_equal(dynbuf_add_str(&d, "0123456789"), BRK_OK);
    assert_int_equal(d.cap, 11);
    assert_int_equal(dynbuf_add_str(&d, "x"), BRK_ERR_TOOBIG);
    assert_at_first(&d, first, 4);
}

static void
check_inline_take(inline_fn *init)
{
    char first[16], *out = NULL;
    struct dynbuf d;
    size_t len = 0;

    /* from the first storage: a copy the caller owns */
    init(&d, first, sizeof(first), 100);
    assert_int_equal(dynbuf_add_str(&d, "short"), BRK_OK);
    assert_int_equal(dynbuf_take(&d, &out, &len), BRK_OK);
    assert_ptr_not_equal(out, first);
    assert_string_equal(out, "short");
    assert_int_equal(len, 5);
    assert_at_first(&d, first, sizeof(first));
    brk_free(out);
    /* from the heap: the block itself */
    assert_int_equal(dynbuf_add_str(&d, "longer than sixteen"), BRK_OK);
    assert_int_equal(dynbuf_take(&d, &out, &len), BRK_OK);
    assert_string_equal(out, "longer than sixteen");
    assert_int_equal(len, 19);
    assert_at_first(&d, first, sizeof(first));
    brk_free(out);
    /* a copy that cannot be had: the contents go, nothing is written */
    out = NULL;
    len = 777;
    assert_int_equal(dynbuf_add_str(&d, "short"), BRK_OK);
    brk_alloc_fail_at(1);
    assert_int_equal(dynbuf_take(&d, &out, &len), BRK_ERR_NOMEM);
    brk_alloc_fail_at(0);
    assert_null(out);
    assert_int_equal(len, 777);
    assert_at_first(&d, first, sizeof(first));
}

static void
check_inline_alloc_failure(inline_fn *init)
{
    char first[8];
    struct dynbuf d;

    init(&d, first, sizeof(first), 100);
    assert_int_equal(dynbuf_add_str(&d, "abc"), BRK_OK);
    brk_alloc_fail_at(1);
    assert_int_equal(dynbuf_add_str(&d, "defghijk"), BRK_ERR_NOMEM);
    assert_true(brk_alloc_failed());
    brk_alloc_fail_at(0);
    assert_at_first(&d, first, sizeof(first));
    assert_int_equal(dynbuf_add_str(&d, "defghijk"), BRK_OK);
    assert_holds(&d, "defghijk");
    dynbuf_free(&d);
}

#define INLINE_TEST(check)                                                     \
    static void test_##check(void **state)                                     \
    {                                                                          \
        (void)state;                                                           \
        check_##check(dynbuf_init_inline);                                     \
    }                                                                          \
    static void test_secret_##check(void **state)                              \
    {                                                                          \
        (void)state;                                                           \
        check_##check(dynbuf_init_inline_secret);                              \
    }

INLINE_TEST(inline_fits)
INLINE_TEST(inline_outgrows)
INLINE_TEST(inline_limit)
INLINE_TEST(inline_take)
INLINE_TEST(inline_alloc_failure)

/* A secret's bytes leave nothing behind in the first storage: not when
 * they move to the heap, are freed, reset or taken. */
static void
test_inline_secret_wipes(void **state)
{
    static const char zero[16];
    char first[16], *out = NULL;
    struct dynbuf d;

    (void)state;
    dynbuf_init_inline_secret(&d, first, sizeof(first), 100);
    assert_int_equal(dynbuf_add_str(&d, "s3cret-s3cret"), BRK_OK);
    assert_int_equal(dynbuf_add_str(&d, " and more"), BRK_OK);
    assert_ptr_not_equal(d.buf, first);
    assert_memory_equal(first, zero, sizeof(first));
    dynbuf_free(&d);

    assert_int_equal(dynbuf_add_str(&d, "s3cret-s3cret"), BRK_OK);
    dynbuf_free(&d);
    assert_memory_equal(first, zero, sizeof(first));

    assert_int_equal(dynbuf_add_str(&d, "s3cret-s3cret"), BRK_OK);
    dynbuf_reset(&d);
    assert_memory_equal(first, zero, sizeof(first));

    assert_int_equal(dynbuf_add_str(&d, "s3cret-s3cret"), BRK_OK);
    assert_int_equal(dynbuf_take(&d, &out, NULL), BRK_OK);
    assert_string_equal(out, "s3cret-s3cret");
    assert_memory_equal(first, zero, sizeof(first));
    brk_free_secret_str(out);
}

/* A plain buffer keeps its first storage's bytes (nothing to wipe), and
 * dynbuf_init leaves a buffer without one. */
static void
test_inline_flags(void **state)
{
    char first[4];
    struct dynbuf d;

    (void)state;
    memset(&d, 0x5a, sizeof(d));
    dynbuf_init(&d, 9);
    assert_null(d.first);
    assert_int_equal(d.first_cap, 0);
    memset(&d, 0x5a, sizeof(d));
    dynbuf_init_inline(&d, first, sizeof(first), 9);
    assert_ptr_equal(d.first, first);
    assert_int_equal(d.first_cap, 4);
    assert_int_equal(d.limit, 9);
    assert_int_equal(d.secret, 0);
    dynbuf_init_inline_secret(&d, first, sizeof(first), 9);
    assert_int_not_equal(d.secret, 0);
}

#define BOTH_TESTS(check)                                                      \
    cmocka_unit_test(test_##check), cmocka_unit_test(test_secret_##check)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_flags),
        cmocka_unit_test(test_free_twice),
        cmocka_unit_test(test_reset_keeps_plain_bytes),
        cmocka_unit_test(test_secret_reset_wipes),
        BOTH_TESTS(add_within_limit),
        BOTH_TESTS(exactly_at_limit),
        BOTH_TESTS(one_over_limit),
        BOTH_TESTS(printf_short),
        BOTH_TESTS(printf_long),
        BOTH_TESTS(printf_over_limit),
        BOTH_TESTS(take_moves),
        BOTH_TESTS(take_empty),
        BOTH_TESTS(take_after_reset),
        BOTH_TESTS(reset_keeps_allocation),
        BOTH_TESTS(many_small_adds),
        BOTH_TESTS(size_max),
        BOTH_TESTS(size_max_unbounded),
        BOTH_TESTS(alloc_failures),
        BOTH_TESTS(take_alloc_failure),
        BOTH_TESTS(reserve),
        BOTH_TESTS(inline_fits),
        BOTH_TESTS(inline_outgrows),
        BOTH_TESTS(inline_limit),
        BOTH_TESTS(inline_take),
        BOTH_TESTS(inline_alloc_failure),
        cmocka_unit_test(test_inline_secret_wipes),
        cmocka_unit_test(test_inline_flags),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
