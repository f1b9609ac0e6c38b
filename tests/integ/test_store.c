/*
 * The Redis connection layer against a real redis-server: commands and
 * error replies, deadlines when Redis stops answering, reconnection after a
 * restart, and a subscriber that resubscribes after one.
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
#include "log.h"
#include "store.h"

static struct harness H;
static struct event_base *Base;
static char Url[400];

struct result {
    int calls;
    enum brk_err err;
    int type;
    long long integer;
};

static void
on_reply(enum brk_err err, struct redisReply *r, void *arg)
{
    struct result *res = arg;

    res->calls++;
    res->err = err;
    res->type = r ? r->type : -1;
    res->integer = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
}

static int
until(int (*cond)(void *), void *arg, long ms)
{
    long end = h_now_ms() + ms;

    while (!cond(arg) && h_now_ms() < end) {
        event_base_loop(Base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
    return cond(arg);
}

static int
is_up(void *arg)
{
    return store_is_up(arg);
}

static int
is_down(void *arg)
{
    return !store_is_up(arg);
}

static int
answered(void *arg)
{
    return ((struct result *)arg)->calls > 0;
}

static int
setup(void **state)
{
    (void)state;
    log_init(LOG_LVL_ERROR, 0);
    /* writing into a connection Redis closed must not kill the test */
    signal(SIGPIPE, SIG_IGN);
    if (h_setup(&H) != 0)
        return -1;
    snprintf(Url, sizeof(Url), "unix://%s", H.redis_sock);
    Base = event_base_new();
    return Base ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    event_base_free(Base);
    h_teardown(&H);
    return 0;
}

static void
test_command_and_error_reply(void **state)
{
    struct store *s = NULL;
    struct result r1 = {0}, r2 = {0};
    const char *incr[] = {"INCR", "store-test-counter"};
    const char *bad[] = {"NOSUCHCOMMAND"};

    (void)state;
    assert_int_equal(store_new(Base, Url, 1000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(store_cmd_argv(s, on_reply, &r1, 2, incr, NULL), BRK_OK);
    assert_int_equal(store_cmd_argv(s, on_reply, &r2, 1, bad, NULL), BRK_OK);
    /* never answered before the call returns */
    assert_int_equal(r1.calls, 0);
    assert_true(until(answered, &r2, 5000));
    assert_int_equal(r1.calls, 1);
    assert_int_equal(r1.err, BRK_OK);
    assert_int_equal(r1.integer, 1);
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r2.err, BRK_ERR_STORE);
    assert_int_equal(r2.type, REDIS_REPLY_ERROR);
    store_free(s);
}

static void
test_bad_url_refused(void **state)
{
    struct store *s = NULL;

    (void)state;
    assert_int_equal(store_new(Base, "http://x", 1000, &s), BRK_ERR_CONFIG);
    assert_null(s);
}

static void
pause_redis(const char *ms)
{
    redisContext *c = h_redis(&H);
    redisReply *r = redisCommand(c, "CLIENT PAUSE %s ALL", ms);

    freeReplyObject(r);
    redisFree(c);
}

static void
test_deadline_when_redis_hangs(void **state)
{
    struct store *s = NULL;
    struct result r = {0};
    const char *ping[] = {"PING"};
    long t0;

    (void)state;
    assert_int_equal(store_new(Base, Url, 300, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    pause_redis("1500");
    t0 = h_now_ms();
    assert_int_equal(store_cmd_argv(s, on_reply, &r, 1, ping, NULL), BRK_OK);
    assert_true(until(answered, &r, 5000));
    fprintf(stderr, "# timed out after %ld ms\n", h_now_ms() - t0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, BRK_ERR_TIMEOUT);
    /* and it comes back once Redis answers again */
    assert_true(until(is_up, s, 10000));
    store_free(s);
}

static void
test_reconnects_after_restart_and_fails_pending(void **state)
{
    struct store *s = NULL;
    struct result r = {0};
    const char *ping[] = {"PING"};

    (void)state;
    assert_int_equal(store_new(Base, Url, 1000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    h_redis_stop(&H);
    /* a command sent into a dead connection is answered, not lost */
    if (store_cmd_argv(s, on_reply, &r, 1, ping, NULL) == BRK_OK) {
        assert_true(until(answered, &r, 5000));
        assert_int_not_equal(r.err, BRK_OK);
    }
    assert_int_equal(h_redis_start(&H), 0);
    assert_true(until(is_up, s, 15000));
    memset(&r, 0, sizeof(r));
    assert_int_equal(store_cmd_argv(s, on_reply, &r, 1, ping, NULL), BRK_OK);
    assert_true(until(answered, &r, 5000));
    assert_int_equal(r.err, BRK_OK);
    store_free(s);
}

static char Got[64];
static int NGot;

static void
on_message(const char *msg, size_t len, void *arg)
{
    (void)arg;
    snprintf(Got, sizeof(Got), "%.*s", (int)len, msg);
    NGot++;
}

static int
got_message(void *arg)
{
    (void)arg;
    return NGot > 0;
}

static void
publish(const char *msg)
{
    redisContext *c = h_redis(&H);
    redisReply *r = redisCommand(c, "PUBLISH store-test %s", msg);

    freeReplyObject(r);
    redisFree(c);
}

static void
test_subscriber_resubscribes(void **state)
{
    struct store *s = NULL;
    const char *ping[] = {"PING"};
    struct result r = {0};

    (void)state;
    assert_int_equal(
        store_new_subscriber(Base, Url, "store-test", on_message, NULL, &s),
        BRK_OK);
    assert_true(until(is_up, s, 5000));
    /* no commands on a subscribed connection */
    assert_int_equal(store_cmd_argv(s, on_reply, &r, 1, ping, NULL),
                     BRK_ERR_INVAL);
    NGot = 0;
    publish("first");
    assert_true(until(got_message, NULL, 5000));
    assert_string_equal(Got, "first");
    h_redis_stop(&H);
    assert_true(until(is_down, s, 5000));
    assert_int_equal(h_redis_start(&H), 0);
    assert_true(until(is_up, s, 15000));
    NGot = 0;
    publish("second");
    assert_true(until(got_message, NULL, 5000));
    assert_string_equal(Got, "second");
    store_free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_command_and_error_reply),
        cmocka_unit_test(test_bad_url_refused),
        cmocka_unit_test(test_deadline_when_redis_hangs),
        cmocka_unit_test(test_reconnects_after_restart_and_fails_pending),
        cmocka_unit_test(test_subscriber_resubscribes),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
