/*
 * Reading a tenant for the in-process copies (tenant_load.h) against a
 * real redis-server: a whole read decodes the directory, a copy whose
 * generation is still the stored one is kept, a moved generation reads
 * again, a missing tenant is no tenant, a stored directory the range
 * refuses is an error, and a directory of 20,000 members reads whole.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "harness.h"
#include "keys.h"
#include "log.h"
#include "record.h"
#include "store.h"
#include "tenant_load.h"
#include "visible_range.h"

#define PREFIX "tl:"
#define SUITE  "wwsuite1"
#define CORP   "wwcorp1"

static struct harness H;
static struct event_base *Base;
static struct store *St;

struct got {
    int calls;
    enum brk_err err;
    struct record_tenant *t; /* one reference */
    int renewed;
};

static void
on_load(enum brk_err err, struct record_tenant *t, int renewed, void *arg)
{
    struct got *g = arg;

    g->calls++;
    g->err = err;
    g->t = t;
    g->renewed = renewed;
}

static void
load(struct record_tenant *copy, struct got *g)
{
    long end = h_now_ms() + 10000;

    memset(g, 0, sizeof(*g));
    assert_int_equal(
        tenant_load_start(St, PREFIX, SUITE, CORP, copy, on_load, g), BRK_OK);
    /* never before the call returns */
    assert_int_equal(g->calls, 0);
    while (g->calls == 0 && h_now_ms() < end)
        event_base_loop(Base, EVLOOP_ONCE);
    assert_int_equal(g->calls, 1);
}

static void
redis_do(const char *fmt, ...)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    va_list ap;

    assert_non_null(c);
    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(c);
}

static void
key(char *out, const char *sub)
{
    if (sub == NULL)
        assert_int_equal(keys_tenant(out, KEYS_MAX, PREFIX, CORP, SUITE),
                         BRK_OK);
    else
        assert_int_equal(
            keys_tenant_sub(out, KEYS_MAX, PREFIX, CORP, SUITE, sub), BRK_OK);
}

/* A tenant with department 2 in range under 1; members u1 (2), u2 (3). */
static void
store_tenant(void)
{
    char k[KEYS_MAX];

    redis_do("FLUSHALL");
    key(k, NULL);
    redis_do("HSET %s status active gen 7 permissions %s privilege %s", k,
             "[{\"name\":\"contact:base:base\",\"expires_at\":0}]",
             "{\"allow_party\":[2]}");
    key(k, "dir:parents");
    redis_do("HSET %s 1 0 2 1 3 1", k);
    key(k, "dir:users");
    redis_do("HSET %s u1 2 u2 3", k);
}

static int
setup(void **state)
{
    (void)state;
    log_init(LOG_LVL_ERROR, 0);
    signal(SIGPIPE, SIG_IGN);
    if (h_setup(&H) != 0)
        return -1;
    {
        char url[400];
        long end = h_now_ms() + 5000;

        snprintf(url, sizeof(url), "unix://%s", H.redis_sock);
        Base = event_base_new();
        if (Base == NULL || store_new(Base, url, 1000, &St) != BRK_OK)
            return -1;
        while (!store_is_up(St) && h_now_ms() < end)
            event_base_loop(Base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        return store_is_up(St) ? 0 : -1;
    }
}

static int
teardown(void **state)
{
    (void)state;
    store_free(St);
    event_base_free(Base);
    h_teardown(&H);
    return 0;
}

static void
test_read_keep_and_read_again(void **state)
{
    struct got a, b, c;
    char k[KEYS_MAX];

    (void)state;
    store_tenant();
    load(NULL, &a);
    assert_int_equal(a.err, BRK_OK);
    assert_non_null(a.t);
    assert_int_equal(a.renewed, 0);
    assert_true(a.t->active);
    assert_true(a.t->gen == 7);
    assert_true(vrange_has_member(a.t->range, "u1", 2));
    assert_false(vrange_has_member(a.t->range, "u2", 2));
    /* unchanged: the copy itself */
    load(a.t, &b);
    assert_int_equal(b.err, BRK_OK);
    assert_int_equal(b.renewed, 1);
    assert_ptr_equal(b.t, a.t);
    record_tenant_unref(b.t);
    /* a change stored with its generation: read again */
    key(k, "dir:users");
    redis_do("HSET %s u3 2", k);
    key(k, NULL);
    redis_do("HINCRBY %s gen 1", k);
    load(a.t, &c);
    assert_int_equal(c.err, BRK_OK);
    assert_int_equal(c.renewed, 0);
    assert_ptr_not_equal(c.t, a.t);
    assert_true(c.t->gen == 8);
    assert_true(vrange_has_member(c.t->range, "u3", 2));
    /* the copy passed in is the caller's, unchanged */
    assert_false(vrange_has_member(a.t->range, "u3", 2));
    record_tenant_unref(a.t);
    record_tenant_unref(c.t);
}

static void
test_missing_and_refused(void **state)
{
    struct got g;
    char k[KEYS_MAX];

    (void)state;
    redis_do("FLUSHALL");
    load(NULL, &g);
    assert_int_equal(g.err, BRK_OK);
    assert_null(g.t);
    /* a member's departments that are no list: refused, nothing decoded */
    store_tenant();
    key(k, "dir:users");
    redis_do("HSET %s u4 2,x", k);
    load(NULL, &g);
    assert_int_equal(g.err, BRK_ERR_INVAL);
    assert_null(g.t);
    /* a userid holding a NUL */
    store_tenant();
    {
        redisContext *c = h_redis(&H);
        redisReply *r;

        assert_non_null(c);
        key(k, "dir:users");
        r = redisCommand(c, "HSET %s %b 2", k, "a\0b", (size_t)3);
        assert_non_null(r);
        freeReplyObject(r);
        redisFree(c);
    }
    load(NULL, &g);
    assert_int_equal(g.err, BRK_ERR_INVAL);
    assert_null(g.t);
}

static void
test_large_directory(void **state)
{
    redisContext *c;
    redisReply *r;
    struct got g;
    char k[KEYS_MAX], uid[32];
    long t0;
    int i;

    (void)state;
    store_tenant();
    c = h_redis(&H);
    assert_non_null(c);
    key(k, "dir:users");
    for (i = 0; i < 20000; i++) {
        snprintf(uid, sizeof(uid), "member%05d", i);
        redisAppendCommand(c, "HSET %s %s %s", k, uid, i % 2 ? "2" : "3,2");
    }
    for (i = 0; i < 20000; i++) {
        assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
        freeReplyObject(r);
    }
    redisFree(c);
    t0 = h_now_ms();
    load(NULL, &g);
    print_message("# a 20,000-member tenant read and decoded in %ld ms\n",
                  h_now_ms() - t0);
    assert_int_equal(g.err, BRK_OK);
    assert_non_null(g.t);
    assert_int_equal(vrange_members(g.t->range), 20001);
    assert_true(vrange_has_member(g.t->range, "member19999", 11));
    record_tenant_unref(g.t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_keep_and_read_again),
        cmocka_unit_test(test_missing_and_refused),
        cmocka_unit_test(test_large_directory),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
