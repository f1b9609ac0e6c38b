/*
 * Tests for the Redis key schema: the exact name of every key, the hash
 * tag each one carries, and refusal (never silent truncation) when the
 * output buffer is too small.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "keys.h"

#define HMAC "0123456789abcdef0123456789abcdef"

/* One key function with uniform arguments, for the table-driven tests. */
struct key_case {
    const char *name;
    enum brk_err (*make)(char *out, size_t len, const char *prefix,
                         const char *a, const char *b, const char *c);
    const char *prefix, *a, *b, *c;
    const char *want;
};

static enum brk_err
mk_dk(char *out, size_t len, const char *p, const char *a, const char *b,
      const char *c)
{
    (void)b;
    (void)c;
    return keys_suite_dk(out, len, p, a);
}

static enum brk_err
mk_ticket(char *out, size_t len, const char *p, const char *a, const char *b,
          const char *c)
{
    (void)b;
    (void)c;
    return keys_suite_ticket(out, len, p, a);
}

static enum brk_err
mk_events(char *out, size_t len, const char *p, const char *a, const char *b,
          const char *c)
{
    (void)b;
    (void)c;
    return keys_suite_events(out, len, p, a);
}

static enum brk_err
mk_seen(char *out, size_t len, const char *p, const char *a, const char *b,
        const char *c)
{
    (void)c;
    return keys_suite_seen(out, len, p, a, b);
}

static enum brk_err
mk_tenant(char *out, size_t len, const char *p, const char *a, const char *b,
          const char *c)
{
    (void)c;
    return keys_tenant(out, len, p, a, b);
}

static const struct key_case cases[] = {
    {"dk", mk_dk, "wb:", "ww1", NULL, NULL, "wb:{ww1}:dk"},
    {"ticket", mk_ticket, "wb:", "ww1", NULL, NULL, "wb:{ww1}:ticket"},
    {"events", mk_events, "wb:", "ww1", NULL, NULL, "wb:{ww1}:events"},
    {"seen", mk_seen, "wb:", "ww1", HMAC, NULL, "wb:{ww1}:seen:" HMAC},
    {"tenant", mk_tenant, "wb:", "corpA", "ww1", NULL, "wb:{corpA}:ww1:tenant"},
};

/*---- Exact names ----*/

static void
test_suite_dk(void **state)
{
    char out[KEYS_MAX];

    (void)state;
    assert_int_equal(keys_suite_dk(out, sizeof(out), "wb:", "ww1"), BRK_OK);
    assert_string_equal(out, "wb:{ww1}:dk");
}

static void
test_suite_ticket(void **state)
{
    char out[KEYS_MAX];

    (void)state;
    assert_int_equal(keys_suite_ticket(out, sizeof(out), "wb:", "ww1"), BRK_OK);
    assert_string_equal(out, "wb:{ww1}:ticket");
}

static void
test_suite_events(void **state)
{
    char out[KEYS_MAX];

    (void)state;
    assert_int_equal(keys_suite_events(out, sizeof(out), "wb:", "ww1"), BRK_OK);
    assert_string_equal(out, "wb:{ww1}:events");
}

static void
test_suite_seen(void **state)
{
    char out[KEYS_MAX];

    (void)state;
    assert_int_equal(keys_suite_seen(out, sizeof(out), "wb:", "ww1", HMAC),
                     BRK_OK);
    assert_string_equal(out, "wb:{ww1}:seen:" HMAC);
}

static void
test_tenant(void **state)
{
    char out[KEYS_MAX];

    (void)state;
    assert_int_equal(keys_tenant(out, sizeof(out), "wb:", "corpA", "ww1"),
                     BRK_OK);
    assert_string_equal(out, "wb:{corpA}:ww1:tenant");
}

static void
test_other_prefix(void **state)
{
    char out[KEYS_MAX];

    (void)state;
    assert_int_equal(keys_suite_events(out, sizeof(out), "prod:wb:", "s-2"),
                     BRK_OK);
    assert_string_equal(out, "prod:wb:{s-2}:events");
    assert_int_equal(keys_tenant(out, sizeof(out), "", "c", "s"), BRK_OK);
    assert_string_equal(out, "{c}:s:tenant");
}

/*---- Hash tags ----*/

/* The first '{' ... '}' pair of a key, which is what Cluster hashes. */
static void
assert_hash_tag(const char *key, const char *tag)
{
    const char *l = strchr(key, '{'), *r;

    assert_non_null(l);
    r = strchr(l, '}');
    assert_non_null(r);
    assert_int_equal((size_t)(r - l - 1), strlen(tag));
    assert_memory_equal(l + 1, tag, strlen(tag));
}

static void
test_suite_keys_tagged_by_suite(void **state)
{
    char out[KEYS_MAX];
    size_t i;

    (void)state;
    for (i = 0; i < 4; i++) {
        assert_int_equal(
            cases[i].make(out, sizeof(out), "wb:", "suiteX", HMAC, NULL),
            BRK_OK);
        assert_hash_tag(out, "suiteX");
        assert_memory_equal(out, "wb:", 3);
    }
}

static void
test_tenant_keys_tagged_by_corpid(void **state)
{
    static const char *const corps[] = {"corpA", "wwa1b2c3d4e5f6", "x"};
    char out[KEYS_MAX], tag[64];
    size_t i;

    (void)state;
    for (i = 0; i < nitems(corps); i++) {
        assert_int_equal(keys_tenant(out, sizeof(out), "wb:", corps[i], "ww1"),
                         BRK_OK);
        snprintf(tag, sizeof(tag), "{%s}", corps[i]);
        assert_non_null(strstr(out, tag));
        assert_hash_tag(out, corps[i]);
        /* the suite id is not inside the tag */
        assert_null(strstr(out, "{ww1}"));
    }
}

/*---- Sizes ----*/

static void
test_exact_fit(void **state)
{
    char out[KEYS_MAX];
    size_t i, need;

    (void)state;
    for (i = 0; i < nitems(cases); i++) {
        need = strlen(cases[i].want) + 1;
        memset(out, 'Z', sizeof(out));
        assert_int_equal(cases[i].make(out, need, cases[i].prefix, cases[i].a,
                                       cases[i].b, cases[i].c),
                         BRK_OK);
        assert_string_equal(out, cases[i].want);
        assert_int_equal(out[need], 'Z');
    }
}

static void
test_one_short_toobig(void **state)
{
    char out[KEYS_MAX];
    size_t i, need;
    enum brk_err err;

    (void)state;
    for (i = 0; i < nitems(cases); i++) {
        need = strlen(cases[i].want) + 1;
        memset(out, 'Z', sizeof(out));
        err = cases[i].make(out, need - 1, cases[i].prefix, cases[i].a,
                            cases[i].b, cases[i].c);
        if (err != BRK_ERR_TOOBIG)
            print_error("%s: truncation not reported\n", cases[i].name);
        assert_int_equal(err, BRK_ERR_TOOBIG);
        /* nothing written past the given size */
        assert_int_equal(out[need - 1], 'Z');
    }
}

static void
test_zero_length_toobig(void **state)
{
    char out[4] = "ZZZ";

    (void)state;
    assert_int_equal(keys_suite_dk(out, 0, "wb:", "ww1"), BRK_ERR_TOOBIG);
    assert_int_equal(out[0], 'Z');
    assert_int_equal(keys_tenant(out, 1, "wb:", "c", "s"), BRK_ERR_TOOBIG);
}

static void
test_long_ids_toobig(void **state)
{
    char id[KEYS_MAX], out[KEYS_MAX];

    (void)state;
    memset(id, 'a', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    assert_int_equal(keys_suite_events(out, sizeof(out), "wb:", id),
                     BRK_ERR_TOOBIG);
    assert_int_equal(keys_tenant(out, sizeof(out), "wb:", id, "s"),
                     BRK_ERR_TOOBIG);
    assert_int_equal(keys_suite_seen(out, sizeof(out), "wb:", "s", id),
                     BRK_ERR_TOOBIG);
    /* the longest id that fits KEYS_MAX */
    id[KEYS_MAX - 1 - strlen("wb:{}:events")] = '\0';
    assert_int_equal(keys_suite_events(out, sizeof(out), "wb:", id), BRK_OK);
    assert_int_equal(strlen(out), KEYS_MAX - 1);
}

/* CRC16-CCITT (XMODEM), written apart from keys.c's, as Cluster hashes. */
static unsigned
slot(const char *key)
{
    const char *o = strchr(key, '{'), *c;
    size_t n = strlen(key), i;
    unsigned crc = 0;
    int b;

    if (o != NULL && (c = strchr(o + 1, '}')) != NULL && c > o + 1) {
        key = o + 1;
        n = (size_t)(c - o - 1);
    }
    for (i = 0; i < n; i++) {
        crc ^= (unsigned)(unsigned char)key[i] << 8;
        for (b = 0; b < 8; b++)
            crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff
                               : (crc << 1) & 0xffff;
    }
    return crc & 16383;
}

/* The slot's first "s<hex>" tag, searched the plain way: markers stored
 * by any version must keep their names. */
static void
first_tag(const char *id, char *out, size_t len)
{
    char t[16];
    unsigned n;

    for (n = 0; n < (1u << 20); n++) {
        snprintf(t, sizeof(t), "s%x", n);
        if (slot(t) == slot(id)) {
            snprintf(out, len, "%s", t);
            return;
        }
    }
    fail();
}

static void
test_slot_tag_is_the_first_in_the_slot(void **state)
{
    static const char *const ids[] = {
        "wwcorp42",       "ww0",   "s0",    "x", "wwmockcorp0004",
        "wx9f8e7d6c5b4a", "corpA", "a-b_c", "0"};
    char want[16], tag[16];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        first_tag(ids[i], want, sizeof(want));
        assert_int_equal(keys_slot_tag(tag, sizeof(tag), ids[i]), BRK_OK);
        assert_string_equal(tag, want);
    }
    assert_int_equal(keys_slot_tag(tag, 2, "wwcorp42"), BRK_ERR_TOOBIG);
}

/* The cancel marker sits in the tenant's slot without naming the corp. */
static void
test_gone_in_the_tenant_slot(void **state)
{
    static const char *const corps[] = {"wwcorp42", "ww0", "wx9f8e7d6c5b4a",
                                        "corpA", "a-b_c"};
    char gone[KEYS_MAX], tenant[KEYS_MAX], tag[16];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(corps) / sizeof(corps[0]); i++) {
        assert_int_equal(keys_gone(gone, sizeof(gone), "wb:", corps[i], HMAC),
                         BRK_OK);
        assert_int_equal(
            keys_tenant(tenant, sizeof(tenant), "wb:", corps[i], "ww1"),
            BRK_OK);
        assert_int_equal(slot(gone), slot(tenant));
        assert_null(strstr(gone, corps[i]));
        assert_non_null(strstr(gone, ":gone:" HMAC));
        assert_int_equal(keys_slot_tag(tag, sizeof(tag), corps[i]), BRK_OK);
        assert_true(strlen(tag) <= 6);
        assert_int_equal(tag[0], 's');
    }
    /* fixed names: every instance and brokerctl find the same marker */
    assert_int_equal(keys_gone(gone, sizeof(gone), "wb:", "wwcorp42", "ab"),
                     BRK_OK);
    assert_int_equal(keys_slot_tag(tag, sizeof(tag), "wwcorp42"), BRK_OK);
    {
        char want[64];

        snprintf(want, sizeof(want), "wb:{%s}:gone:ab", tag);
        assert_string_equal(gone, want);
    }
    assert_int_equal(keys_gone(gone, 10, "wb:", "wwcorp42", HMAC),
                     BRK_ERR_TOOBIG);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suite_dk),
        cmocka_unit_test(test_gone_in_the_tenant_slot),
        cmocka_unit_test(test_slot_tag_is_the_first_in_the_slot),
        cmocka_unit_test(test_suite_ticket),
        cmocka_unit_test(test_suite_events),
        cmocka_unit_test(test_suite_seen),
        cmocka_unit_test(test_tenant),
        cmocka_unit_test(test_other_prefix),
        cmocka_unit_test(test_suite_keys_tagged_by_suite),
        cmocka_unit_test(test_tenant_keys_tagged_by_corpid),
        cmocka_unit_test(test_exact_fit),
        cmocka_unit_test(test_one_short_toobig),
        cmocka_unit_test(test_zero_length_toobig),
        cmocka_unit_test(test_long_ids_toobig),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
