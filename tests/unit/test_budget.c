/*
 * Tests for budget.c without a Redis to reach: options checked, fail
 * closed while the store is down (the callback once, never from inside
 * budget_take), a bounded table of entries, allocation failures at every
 * step without leak or crash, and the errcodes services get.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "broker.h"
#include "budget.h"
#include "store.h"

static struct event_base *Base;
static struct store *St;

struct taken {
    int n[BUDGET__RESULTS];
    int calls;
    int inside; /* set while budget_take runs */
};

static void
on_taken(enum budget_result res, void *arg)
{
    struct taken *t = arg;

    assert_false(t->inside);
    assert_true((unsigned)res < BUDGET__RESULTS);
    t->n[res]++;
    t->calls++;
}

static void
opts_init(struct budget_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->key_prefix = "wb:";
    o->channel = "wb:inval";
    o->per_corp = 20;
    o->per_corp_hour = 1000;
    o->per_api = 100;
    o->per_api_hour = 10000;
}

static int
setup(void **state)
{
    (void)state;
    Base = event_base_new();
    if (Base == NULL)
        return -1;
    /* a store that never comes up: nothing listens there */
    return store_new(Base, "unix:///nonexistent/wecom-broker-test.sock", 1000,
                     &St) == BRK_OK
               ? 0
               : -1;
}

static int
teardown(void **state)
{
    (void)state;
    store_free(St);
    event_base_free(Base);
    return 0;
}

static void
run_loop(void)
{
    event_base_loop(Base, EVLOOP_NONBLOCK);
}

static void
test_options_checked(void **state)
{
    struct budget_opts o;
    struct budget *b = NULL;

    (void)state;
    opts_init(&o);
    assert_int_equal(budget_new(NULL, St, &o, &b), BRK_ERR_INVAL);
    assert_int_equal(budget_new(Base, NULL, &o, &b), BRK_ERR_INVAL);
    assert_int_equal(budget_new(Base, St, NULL, &b), BRK_ERR_INVAL);
    o.per_corp = 0;
    assert_int_equal(budget_new(Base, St, &o, &b), BRK_ERR_INVAL);
    opts_init(&o);
    o.per_api_hour = -1;
    assert_int_equal(budget_new(Base, St, &o, &b), BRK_ERR_INVAL);
    opts_init(&o);
    o.key_prefix = "";
    assert_int_equal(budget_new(Base, St, &o, &b), BRK_ERR_INVAL);
    opts_init(&o);
    o.channel = NULL;
    assert_int_equal(budget_new(Base, St, &o, &b), BRK_ERR_INVAL);
    assert_null(b);
    opts_init(&o);
    assert_int_equal(budget_new(Base, St, &o, &b), BRK_OK);
    assert_non_null(b);
    budget_free(b);
    budget_free(NULL);
}

static void
test_store_down_fails_closed(void **state)
{
    struct budget_opts o;
    struct budget *b = NULL;
    struct taken t;
    int i;

    (void)state;
    memset(&t, 0, sizeof(t));
    opts_init(&o);
    assert_int_equal(budget_new(Base, St, &o, &b), BRK_OK);
    for (i = 0; i < 5; i++) {
        t.inside = 1;
        assert_int_equal(budget_take(b, "wwcorp1", "user/get",
                                     i % 2 ? BUDGET_BACKGROUND : BUDGET_SERVICE,
                                     on_taken, &t),
                         BRK_OK);
        t.inside = 0;
    }
    assert_int_equal(t.calls, 0);
    run_loop();
    assert_int_equal(t.calls, 5);
    assert_int_equal(t.n[BUDGET_UNAVAILABLE], 5);
    /* reports of calls never allowed cannot fail */
    budget_report(b, "wwcorp1", "user/get", 0);
    budget_report(b, "wwcorp1", "user/get", 45033);
    budget_report(b, "wwcorp1", "user/get", 45009);
    budget_report(b, "wwcorp1", "user/get", -1);
    t.inside = 1;
    assert_int_equal(
        budget_take(b, "wwcorp1", "user/get", BUDGET_SERVICE, on_taken, &t),
        BRK_OK);
    t.inside = 0;
    run_loop();
    /* the 45009 paused it here, but a store down comes first */
    assert_int_equal(t.n[BUDGET_UNAVAILABLE], 6);
    budget_free(b);
}

static void
test_free_answers_what_is_pending(void **state)
{
    struct budget_opts o;
    struct budget *b = NULL;
    struct taken t;

    (void)state;
    memset(&t, 0, sizeof(t));
    opts_init(&o);
    assert_int_equal(budget_new(Base, St, &o, &b), BRK_OK);
    assert_int_equal(
        budget_take(b, "wwcorp1", "user/get", BUDGET_SERVICE, on_taken, &t),
        BRK_OK);
    budget_free(b);
    assert_int_equal(t.calls, 1);
    assert_int_equal(t.n[BUDGET_UNAVAILABLE], 1);
    run_loop();
    assert_int_equal(t.calls, 1);
}

static void
test_entries_stay_bounded(void **state)
{
    struct budget_opts o;
    struct budget *b = NULL;
    struct taken t;
    char corp[32], api[32];
    int i;

    (void)state;
    memset(&t, 0, sizeof(t));
    opts_init(&o);
    o.max_entries = 16;
    assert_int_equal(budget_new(Base, St, &o, &b), BRK_OK);
    for (i = 0; i < 2000; i++) {
        snprintf(corp, sizeof(corp), "wwcorp%d", i);
        snprintf(api, sizeof(api), "api%d/get", i % 7);
        assert_int_equal(
            budget_take(b, corp, api, BUDGET_SERVICE, on_taken, &t), BRK_OK);
        if (i % 10 == 9)
            run_loop();
        /* in use: at most the takes not yet answered over the bound */
        assert_true(budget_entries(b) <= 16 + 2 * 10);
    }
    run_loop();
    assert_int_equal(t.calls, 2000);
    assert_true(budget_entries(b) <= 16 + 2 * 10);
    /* answered takes hold nothing: new ones push the old ones out */
    for (i = 0; i < 40; i++) {
        snprintf(corp, sizeof(corp), "wwother%d", i);
        assert_int_equal(
            budget_take(b, corp, "user/get", BUDGET_SERVICE, on_taken, &t),
            BRK_OK);
        run_loop();
    }
    assert_true(budget_entries(b) <= 16);
    budget_free(b);
}

static void
test_allocation_failures(void **state)
{
    struct budget_opts o;
    struct budget *b;
    struct taken t;
    unsigned long n;
    enum brk_err err;

    (void)state;
    opts_init(&o);
    for (n = 1;; n++) {
        b = NULL;
        brk_alloc_fail_at(n);
        err = budget_new(Base, St, &o, &b);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(b);
    }
    for (n = 1;; n++) {
        memset(&t, 0, sizeof(t));
        brk_alloc_fail_at(n);
        err =
            budget_take(b, "wwcorp9", "tag/list", BUDGET_SERVICE, on_taken, &t);
        brk_alloc_fail_at(0);
        run_loop();
        if (err == BRK_OK) {
            assert_int_equal(t.calls, 1);
            break;
        }
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_int_equal(t.calls, 0);
    }
    assert_true(n > 1);
    budget_free(b);
}

static void
test_errcodes(void **state)
{
    (void)state;
    assert_int_equal(budget_errcode(BUDGET_OK), 0);
    assert_int_equal(budget_errcode(BUDGET_SPENT), 45009);
    assert_int_equal(budget_errcode(BUDGET_PAUSED), 45009);
    assert_int_equal(budget_errcode(BUDGET_BUSY), 45033);
    assert_int_equal(budget_errcode(BUDGET_UNAVAILABLE), -1);
    assert_string_equal(budget_result_name(BUDGET_SPENT), "spent");
    assert_string_equal(budget_result_name(BUDGET_PAUSED), "paused");
    assert_string_equal(budget_result_name((enum budget_result)99), "unknown");
    assert_int_equal(budget_entries(NULL), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_checked),
        cmocka_unit_test(test_store_down_fails_closed),
        cmocka_unit_test(test_free_answers_what_is_pending),
        cmocka_unit_test(test_entries_stay_bounded),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_errcodes),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
