/*
 * Tests for the upstream budget's arithmetic: window numbers and edges,
 * the background half, leases that spend exactly what was granted and
 * never a unit of another window, block sizing from how hot a key is,
 * several instances leasing from one shared window never passing its
 * limit, asking for the next block ahead once a quarter is left (no take
 * waits in steady state, and a refusal leaves held units spendable), and
 * the concurrency a 45033 leaves and its recovery.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "budget_window.h"

/*---- Windows ----*/

static void
test_window_numbers_and_edges(void **state)
{
    (void)state;
    assert_int_equal(budget_window_of(0, BUDGET_MINUTE_MS), 0);
    assert_int_equal(budget_window_of(59999, BUDGET_MINUTE_MS), 0);
    assert_int_equal(budget_window_of(60000, BUDGET_MINUTE_MS), 1);
    assert_int_equal(budget_window_of(1733500799999LL, BUDGET_MINUTE_MS),
                     28891679);
    assert_int_equal(budget_window_of(1733500800000LL, BUDGET_MINUTE_MS),
                     28891680);
    assert_int_equal(budget_window_of(3599999, BUDGET_HOUR_MS), 0);
    assert_int_equal(budget_window_of(3600000, BUDGET_HOUR_MS), 1);
    /* floor, not truncation, before the epoch */
    assert_int_equal(budget_window_of(-1, BUDGET_MINUTE_MS), -1);
    assert_int_equal(budget_window_of(-60000, BUDGET_MINUTE_MS), -1);
    assert_int_equal(budget_window_of(-60001, BUDGET_MINUTE_MS), -2);
    assert_int_equal(budget_window_end(0, BUDGET_MINUTE_MS), 60000);
    assert_int_equal(budget_window_end(28891679, BUDGET_MINUTE_MS),
                     1733500800000LL);
    assert_int_equal(budget_window_end(1, BUDGET_HOUR_MS), 7200000);
    /* a minute never straddles two hours */
    assert_int_equal(BUDGET_HOUR_MS % BUDGET_MINUTE_MS, 0);
}

static void
test_background_gets_half(void **state)
{
    (void)state;
    assert_int_equal(budget_class_limit(9000, BUDGET_SERVICE), 9000);
    assert_int_equal(budget_class_limit(9000, BUDGET_BACKGROUND), 4500);
    assert_int_equal(budget_class_limit(21, BUDGET_BACKGROUND), 10);
    assert_int_equal(budget_class_limit(20, BUDGET_BACKGROUND), 10);
    /* at most half: with one call a window, background gets none */
    assert_int_equal(budget_class_limit(1, BUDGET_BACKGROUND), 0);
    assert_int_equal(budget_class_limit(1, BUDGET_SERVICE), 1);
    assert_int_equal(budget_class_limit(-5, BUDGET_SERVICE), 0);
}

/*---- Leases ----*/

static void
test_lease_spends_exactly_what_was_granted(void **state)
{
    struct budget_lease l;
    int i;

    (void)state;
    budget_lease_init(&l);
    assert_false(budget_lease_has(&l, 7));
    assert_false(budget_lease_spend(&l, 7));
    budget_lease_granted(&l, 7, 5, 9000, 1000);
    assert_true(budget_lease_has(&l, 7));
    for (i = 0; i < 5; i++)
        assert_true(budget_lease_spend(&l, 7));
    assert_false(budget_lease_has(&l, 7));
    assert_false(budget_lease_spend(&l, 7));
    /* a zero or negative grant adds nothing */
    budget_lease_granted(&l, 7, 0, 9000, 1100);
    budget_lease_granted(&l, 7, -3, 9000, 1200);
    assert_false(budget_lease_spend(&l, 7));
    /* grants of one window add up */
    budget_lease_granted(&l, 7, 2, 9000, 20000);
    budget_lease_granted(&l, 7, 1, 9000, 40000);
    assert_int_equal(l.left, 3);
}

static void
test_lease_never_outlives_its_window(void **state)
{
    struct budget_lease l;

    (void)state;
    budget_lease_init(&l);
    budget_lease_granted(&l, 100, 10, 9000, 0);
    assert_true(budget_lease_spend(&l, 100));
    /* the next minute: the nine left are gone, not carried over */
    assert_false(budget_lease_has(&l, 101));
    assert_false(budget_lease_spend(&l, 101));
    assert_int_equal(l.left, 0);
    assert_false(budget_lease_spend(&l, 100));
    /* a grant for the new window starts from zero */
    budget_lease_granted(&l, 101, 3, 9000, 20000);
    assert_int_equal(l.left, 3);
    /* a grant for a newer window replaces what is held */
    budget_lease_granted(&l, 102, 2, 9000, 40000);
    assert_int_equal(l.left, 2);
    assert_false(budget_lease_spend(&l, 101));
    /* so does one for an older window (the clock stepped back): asking
     * again and again for the window at hand would spend the budget */
    budget_lease_granted(&l, 101, 4, 9000, 60000);
    assert_int_equal(l.window, 101);
    assert_int_equal(l.left, 4);
    assert_false(budget_lease_has(&l, 102));
    assert_true(budget_lease_spend(&l, 101));
    budget_lease_drop(&l);
    assert_false(budget_lease_has(&l, 102));
}

static void
test_refusal_holds_until_its_end(void **state)
{
    struct budget_lease l;

    (void)state;
    budget_lease_init(&l);
    assert_false(budget_lease_refused(&l, 0));
    budget_lease_refuse(&l, budget_window_end(5, BUDGET_MINUTE_MS));
    assert_true(budget_lease_refused(&l, 5 * BUDGET_MINUTE_MS));
    assert_true(budget_lease_refused(&l, 6 * BUDGET_MINUTE_MS - 1));
    assert_false(budget_lease_refused(&l, 6 * BUDGET_MINUTE_MS));
    /* an hour refusal is not shortened by a later minute one */
    budget_lease_refuse(&l, budget_window_end(0, BUDGET_HOUR_MS));
    budget_lease_refuse(&l, budget_window_end(5, BUDGET_MINUTE_MS));
    assert_true(budget_lease_refused(&l, BUDGET_HOUR_MS - 1));
    assert_false(budget_lease_refused(&l, BUDGET_HOUR_MS));
}

static void
test_block_grows_when_hot_and_shrinks_when_quiet(void **state)
{
    struct budget_lease l;
    long long t = 0;
    int i;

    (void)state;
    assert_int_equal(budget_block_max(9000), 90);
    assert_int_equal(budget_block_max(20), 1);
    assert_int_equal(budget_block_max(199), 1);
    assert_int_equal(budget_block_max(200), 2);
    budget_lease_init(&l);
    /* a quiet key asks for one call at a time */
    assert_int_equal(budget_lease_want(&l, 9000, 0), 1);
    budget_lease_granted(&l, 1, 1, 9000, t);
    assert_int_equal(l.block, 1);
    /* spent within a second each time: doubles, up to 1/100 of 9000 */
    for (i = 0; i < 10; i++) {
        t += 200;
        budget_lease_granted(&l, 1, l.block, 9000, t);
    }
    assert_int_equal(l.block, 90);
    assert_int_equal(budget_lease_want(&l, 9000, 0), 90);
    /* a block lasting between 1 and 10 s keeps its size */
    t += 5000;
    budget_lease_granted(&l, 1, 1, 9000, t);
    assert_int_equal(l.block, 90);
    /* blocks lasting longer than 10 s halve, down to one */
    for (i = 0; i < 10; i++) {
        t += 11000;
        budget_lease_granted(&l, 1, 1, 9000, t);
    }
    assert_int_equal(l.block, 1);
    /* with a limit of 20 a block is always one call: exact sharing */
    budget_lease_init(&l);
    for (i = 0; i < 5; i++)
        budget_lease_granted(&l, 1, 1, 20, i);
    assert_int_equal(l.block, 1);
    assert_int_equal(budget_lease_want(&l, 20, 7), 1);
}

static void
test_want_covers_waiting_calls_within_the_max(void **state)
{
    struct budget_lease l;

    (void)state;
    budget_lease_init(&l);
    assert_int_equal(budget_lease_want(&l, 9000, 0), 1);
    assert_int_equal(budget_lease_want(&l, 9000, 1), 1);
    assert_int_equal(budget_lease_want(&l, 9000, 7), 7);
    assert_int_equal(budget_lease_want(&l, 9000, 1000), 90);
    l.block = 40;
    assert_int_equal(budget_lease_want(&l, 9000, 3), 40);
    /* a block sized for a larger limit is cut to this one's max */
    assert_int_equal(budget_lease_want(&l, 1000, 3), 10);
    assert_int_equal(budget_lease_want(&l, 1, 3), 1);
}

/*
 * Three instances lease from one shared minute the way the Redis script
 * grants (min(want, limit - used)) and each spends only its lease: no
 * more than the limit is ever spent, and with demand over it, exactly the
 * limit is.
 */
struct shared {
    long used;
    long limit;
};

static long
grant(struct shared *s, long want)
{
    long room = s->limit - s->used, g = want < room ? want : room;

    if (g <= 0)
        return 0;
    s->used += g;
    return g;
}

static long
run_instances(long limit, enum budget_class cls, long calls, long step_ms)
{
    struct shared sh = {0, budget_class_limit(limit, cls)};
    struct budget_lease l[3];
    long spent = 0, i, got;
    long long t = 0;
    int k;

    for (k = 0; k < 3; k++)
        budget_lease_init(&l[k]);
    for (i = 0; i < calls; i++, t += step_ms) {
        k = (int)((i * 7) % 3);
        if (!budget_lease_has(&l[k], 0)) {
            got = grant(&sh, budget_lease_want(&l[k], sh.limit, 0));
            budget_lease_granted(&l[k], 0, got, sh.limit, t);
        }
        if (budget_lease_spend(&l[k], 0))
            spent++;
    }
    assert_true(spent <= sh.limit);
    assert_int_equal(sh.used, sh.limit < calls ? sh.limit : sh.used);
    return spent;
}

static void
test_instances_never_pass_the_shared_limit(void **state)
{
    (void)state;
    /* limit 20: one call per lease, exactly 20 pass */
    assert_int_equal(run_instances(20, BUDGET_SERVICE, 1000, 1), 20);
    /* background: exactly half */
    assert_int_equal(run_instances(20, BUDGET_BACKGROUND, 1000, 1), 10);
    /* under the limit every call passes */
    assert_int_equal(run_instances(20, BUDGET_SERVICE, 15, 1), 15);
    /* large limits with growing blocks: never over, and what the
     * instances hold unspent at the end is at most three blocks */
    assert_true(run_instances(9000, BUDGET_SERVICE, 20000, 1) <= 9000);
    assert_true(run_instances(9000, BUDGET_SERVICE, 20000, 1) >=
                9000 - 3 * budget_block_max(9000));
    assert_true(run_instances(9000, BUDGET_BACKGROUND, 20000, 1) <= 4500);
}

/*---- Refilling ahead ----*/

static void
test_low_at_a_quarter_of_the_block(void **state)
{
    struct budget_lease l;
    int i;

    (void)state;
    budget_lease_init(&l);
    /* nothing held: the take waits and asks, nothing to do ahead */
    assert_false(budget_lease_low(&l, 7));
    budget_lease_granted(&l, 7, 20, 9000, 0);
    l.block = 20;
    for (i = 0; i < 14; i++) {
        assert_true(budget_lease_spend(&l, 7));
        assert_false(budget_lease_low(&l, 7));
    }
    /* 5 of a block of 20 left: ask for the next one */
    assert_true(budget_lease_spend(&l, 7));
    assert_int_equal(l.left, 5);
    assert_true(budget_lease_low(&l, 7));
    for (i = 0; i < 4; i++) {
        assert_true(budget_lease_spend(&l, 7));
        assert_true(budget_lease_low(&l, 7));
    }
    /* none left: not low but empty (the waiting path asks) */
    assert_true(budget_lease_spend(&l, 7));
    assert_false(budget_lease_low(&l, 7));
    /* units of another window are no units */
    budget_lease_granted(&l, 7, 1, 9000, 0);
    assert_true(budget_lease_low(&l, 7));
    assert_false(budget_lease_low(&l, 8));
    /* a block under four never has a quarter left: asked for when spent,
     * so a limit of a few hundred or less is shared one call at a time */
    budget_lease_init(&l);
    budget_lease_granted(&l, 1, 1, 20, 0);
    assert_int_equal(l.block, 1);
    assert_false(budget_lease_low(&l, 1));
    l.block = 3;
    assert_false(budget_lease_low(&l, 1));
    l.block = 4;
    assert_true(budget_lease_low(&l, 1));
    /* a grant on top of what is left is not low any more */
    budget_lease_granted(&l, 1, 4, 9000, 5000);
    assert_int_equal(l.left, 5);
    assert_false(budget_lease_low(&l, 1));
}

static void
test_spent_refusal_leaves_held_units_spendable(void **state)
{
    struct budget_lease l;
    long long end = budget_window_end(5, BUDGET_MINUTE_MS);
    long long now = 5 * BUDGET_MINUTE_MS + 30000;
    int i;

    (void)state;
    budget_lease_init(&l);
    assert_false(budget_lease_spent(&l, 5, now));
    /* the answer to the request asked ahead: spent; 3 units held */
    budget_lease_granted(&l, 5, 3, 9000, 0);
    budget_lease_refuse(&l, end);
    assert_true(budget_lease_refused(&l, now));
    for (i = 0; i < 3; i++) {
        assert_false(budget_lease_spent(&l, 5, now));
        assert_true(budget_lease_spend(&l, 5));
    }
    /* the held units are gone: now a take is refused */
    assert_true(budget_lease_spent(&l, 5, now));
    assert_true(budget_lease_spent(&l, 5, end - 1));
    /* the next window is another budget */
    assert_false(budget_lease_spent(&l, 6, end));
    /* an hour spent: units of the minute at hand were within the hour's
     * limit too, so they are spent first */
    budget_lease_init(&l);
    budget_lease_granted(&l, 5, 2, 9000, 0);
    budget_lease_refuse(&l, budget_window_end(0, BUDGET_HOUR_MS));
    assert_false(budget_lease_spent(&l, 5, now));
    /* units of an older window do not hold a refusal off */
    assert_true(budget_lease_spent(&l, 6, end));
    budget_lease_drop(&l);
    assert_true(budget_lease_spent(&l, 5, now));
}

/*
 * Three instances share one minute the way budget.c takes: a take spends
 * a held unit when there is one, asks for the next block ahead when what
 * is left is low, and otherwise waits for a request. Requests are
 * answered by the shared window delay_ms after they are sent; a "spent"
 * answer refuses only once the held units are gone. One take a ms, over
 * the instances in turn. *waited: takes that found no unit after the
 * first second (in steady state: none); *spent_held: "spent" answers
 * that came while units were held.
 */
struct sim {
    struct budget_lease l;
    int pending;
    long want;
    long long answer_at;
};

static long
run_ahead(long limit, long calls, long long delay_ms, long *waited,
          long *spent_held)
{
    struct shared sh = {0, limit};
    struct sim in[3];
    long served = 0, i, got;
    long long t;
    int k, j;

    *waited = 0;
    *spent_held = 0;
    for (k = 0; k < 3; k++) {
        memset(&in[k], 0, sizeof(in[k]));
        budget_lease_init(&in[k].l);
    }
    for (i = 0, t = 0; i < calls; i++, t++) {
        for (j = 0; j < 3; j++) {
            if (!in[j].pending || in[j].answer_at > t)
                continue;
            in[j].pending = 0;
            got = grant(&sh, in[j].want);
            if (got > 0) {
                budget_lease_granted(&in[j].l, 0, got, limit, t);
                continue;
            }
            if (budget_lease_has(&in[j].l, 0))
                (*spent_held)++;
            budget_lease_refuse(&in[j].l,
                                budget_window_end(0, BUDGET_MINUTE_MS));
        }
        k = (int)(i % 3);
        if (budget_lease_spent(&in[k].l, 0, t))
            continue;
        if (budget_lease_spend(&in[k].l, 0)) {
            served++;
            if (!in[k].pending && !budget_lease_refused(&in[k].l, t) &&
                budget_lease_low(&in[k].l, 0)) {
                in[k].pending = 1;
                in[k].want = budget_lease_want(&in[k].l, limit, 0);
                in[k].answer_at = t + delay_ms;
            }
            continue;
        }
        /* dropped here; budget.c queues it until the answer */
        if (t >= 1000)
            (*waited)++;
        if (!in[k].pending) {
            in[k].pending = 1;
            in[k].want = budget_lease_want(&in[k].l, limit, 1);
            in[k].answer_at = t + delay_ms;
        }
    }
    /* every unit granted was spent: none was left unspent at a refusal */
    assert_int_equal(served, sh.used);
    assert_true(sh.used <= limit);
    return served;
}

static void
test_refilled_ahead_no_take_waits_and_the_limit_is_exact(void **state)
{
    long waited, spent_held;
    int k;

    (void)state;
    /* 9,000 a minute, demand over it, answers after 5 ms: exactly the
     * limit passes, no take waits once blocks have grown, and the last
     * answer asked ahead was a refusal while units were held */
    assert_int_equal(run_ahead(9000, 20000, 5, &waited, &spent_held), 9000);
    assert_int_equal(waited, 0);
    assert_true(spent_held >= 1);
    assert_int_equal(run_ahead(1000, 5000, 5, &waited, &spent_held), 1000);
    assert_true(spent_held >= 1);
    /* blocks of one (small limits): no refill ahead, exact as before */
    assert_int_equal(run_ahead(20, 1000, 5, &waited, &spent_held), 20);
    assert_int_equal(spent_held, 0);
    /* under the limit every take is served, and blocks still grow to
     * the max: a block asked for ahead lasts as long as the one before */
    {
        struct shared sh = {0, 36000};
        struct budget_lease l;
        long long t = 0, asked = -1;

        budget_lease_init(&l);
        for (k = 0; k < 2000; k++, t++) {
            if (asked >= 0 && t >= asked + 2) {
                budget_lease_granted(&l, 0, grant(&sh, l.block), 36000, t);
                asked = -1;
            }
            if (!budget_lease_spend(&l, 0) && asked < 0)
                asked = t;
            else if (asked < 0 && budget_lease_low(&l, 0))
                asked = t;
        }
        assert_int_equal(l.block, budget_block_max(36000));
    }
}

/*---- Concurrency after 45033 ----*/

static void
test_45033_halves_concurrency_then_recovers(void **state)
{
    struct budget_conc c;
    long long t = 1000000;

    (void)state;
    budget_conc_init(&c);
    assert_int_equal(budget_conc_allowed(&c, t), 0);
    /* eight under way when WeCom said 45033: four from now */
    budget_conc_lower(&c, 8, t);
    assert_int_equal(budget_conc_allowed(&c, t), 4);
    assert_int_equal(budget_conc_allowed(&c, t + BUDGET_CONC_RECOVER_MS - 1),
                     4);
    /* one more every 5 s */
    assert_int_equal(budget_conc_allowed(&c, t + BUDGET_CONC_RECOVER_MS), 5);
    assert_int_equal(budget_conc_allowed(&c, t + 3 * BUDGET_CONC_RECOVER_MS),
                     7);
    /* back where the trouble started: unlimited again */
    assert_int_equal(budget_conc_allowed(&c, t + 4 * BUDGET_CONC_RECOVER_MS),
                     0);
    assert_int_equal(c.limit, 0);
    /* another 45033 during recovery halves what was allowed then */
    budget_conc_lower(&c, 8, t);
    budget_conc_lower(&c, 3, t + 2 * BUDGET_CONC_RECOVER_MS);
    assert_int_equal(budget_conc_allowed(&c, t + 2 * BUDGET_CONC_RECOVER_MS),
                     3);
    /* repeated 45033s floor at one */
    budget_conc_lower(&c, 1, t);
    budget_conc_lower(&c, 1, t);
    budget_conc_lower(&c, 1, t);
    assert_int_equal(budget_conc_allowed(&c, t), 1);
    assert_int_equal(budget_conc_allowed(&c, t + BUDGET_CONC_RECOVER_MS - 1),
                     1);
    assert_int_equal(budget_conc_allowed(&c, t + BUDGET_CONC_RECOVER_MS), 0);
}

static void
test_45033_with_one_call_under_way(void **state)
{
    struct budget_conc c;

    (void)state;
    budget_conc_init(&c);
    budget_conc_lower(&c, 1, 0);
    assert_int_equal(budget_conc_allowed(&c, 0), 1);
    /* a clock going backwards does not grow it */
    assert_int_equal(budget_conc_allowed(&c, -10000), 1);
    budget_conc_init(&c);
    budget_conc_lower(&c, 0, 0);
    assert_int_equal(budget_conc_allowed(&c, 0), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_numbers_and_edges),
        cmocka_unit_test(test_background_gets_half),
        cmocka_unit_test(test_lease_spends_exactly_what_was_granted),
        cmocka_unit_test(test_lease_never_outlives_its_window),
        cmocka_unit_test(test_refusal_holds_until_its_end),
        cmocka_unit_test(test_block_grows_when_hot_and_shrinks_when_quiet),
        cmocka_unit_test(test_want_covers_waiting_calls_within_the_max),
        cmocka_unit_test(test_instances_never_pass_the_shared_limit),
        cmocka_unit_test(test_low_at_a_quarter_of_the_block),
        cmocka_unit_test(test_spent_refusal_leaves_held_units_spendable),
        cmocka_unit_test(
            test_refilled_ahead_no_take_waits_and_the_limit_is_exact),
        cmocka_unit_test(test_45033_halves_concurrency_then_recovers),
        cmocka_unit_test(test_45033_with_one_call_under_way),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
