/*
 * The Redis connection layer against a real redis-server: commands and
 * error replies, deadlines when Redis stops answering, reconnection after a
 * restart, a subscriber that resubscribes after one, and an EVAL sent
 * by digest and again as itself with the same arguments.
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
#include "scripts.h"
#include "store.h"

static struct harness H;
static struct event_base *Base;
static char Url[400];

struct result {
    int calls;
    enum brk_err err;
    int type;
    long long integer;
    char str[64]; /* a string reply, as received */
    size_t len;
};

static void
on_reply(enum brk_err err, struct redisReply *r, void *arg)
{
    struct result *res = arg;

    res->calls++;
    res->err = err;
    res->type = r ? r->type : -1;
    res->integer = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    res->len = 0;
    if (r != NULL && r->type == REDIS_REPLY_STRING &&
        r->len <= sizeof(res->str)) {
        memcpy(res->str, r->str, r->len);
        res->len = r->len;
    }
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

/* A direct command on a connection of our own; asserts it is answered. */
static void
redis_do(const char *cmd)
{
    redisContext *c = h_redis(&H);
    redisReply *r;

    assert_non_null(c);
    r = redisCommand(c, cmd);
    assert_non_null(r);
    freeReplyObject(r);
    redisFree(c);
}

static struct result
eval_once(struct store *s, int argc, const char **argv, const size_t *lens)
{
    struct result r;

    memset(&r, 0, sizeof(r));
    assert_int_equal(store_cmd_argv(s, on_reply, &r, argc, argv, lens), BRK_OK);
    assert_true(until(answered, &r, 5000));
    return r;
}

/*
 * An EVAL goes by digest and, on NOSCRIPT, again as EVAL: the arguments
 * of the second send are the first's, byte for byte, whatever they hold
 * (RESP's own framing, a NUL, nothing), with lengths given or not; a
 * script given by a part of one of scripts.c's texts is that part.
 */
static void
test_eval_again_keeps_arguments(void **state)
{
    static const char echo[] = "return {ARGV[1], ARGV[2], ARGV[3]}";
    static const char odd[] = "a\0\r\n$7\r\nEVALSHA\r\n";
    struct store *s = NULL;
    const char *argv[6] = {"EVAL", echo, "0", odd, "", "*2\r\n"};
    size_t lens[6] = {4, sizeof(echo) - 1, 1, sizeof(odd) - 1, 0, 4};
    const char *rel[5] = {"EVAL", scripts_text(SCRIPT_TOKEN_LOCK_RELEASE), "1",
                          "lock", "f1"};
    size_t rel_lens[5] = {4, 0, 1, 4, 2};
    struct result r;
    int round;

    (void)state;
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    for (round = 0; round < 2; round++) {
        /* round 0: not loaded (EVALSHA, NOSCRIPT, EVAL); round 1: loaded */
        if (round == 0)
            redis_do("SCRIPT FLUSH");
        memset(&r, 0, sizeof(r));
        assert_int_equal(store_cmd_argv(s, on_reply, &r, 6, argv, lens),
                         BRK_OK);
        assert_true(until(answered, &r, 5000));
        assert_int_equal(r.calls, 1);
        assert_int_equal(r.err, BRK_OK);
        assert_int_equal(r.type, REDIS_REPLY_ARRAY);
    }
    /* the array's strings, checked through a script that compares them */
    {
        static const char cmp[] =
            "return (ARGV[1] == ARGV[4] and ARGV[2] == '' and "
            "ARGV[3] == '*2\\r\\n') and 1 or 0";
        const char *cargv[8] = {"EVAL", cmp, "0", odd, "", "*2\r\n", odd};
        size_t clens[8] = {4, sizeof(cmp) - 1, 1, sizeof(odd) - 1, 0,
                           4, sizeof(odd) - 1};

        redis_do("SCRIPT FLUSH");
        r = eval_once(s, 7, cargv, clens);
        assert_int_equal(r.err, BRK_OK);
        assert_int_equal(r.integer, 1);
        /* the same without lengths: up to the first NUL */
        redis_do("SCRIPT FLUSH");
        cargv[3] = "a";
        cargv[6] = "a";
        r = eval_once(s, 7, cargv, NULL);
        assert_int_equal(r.err, BRK_OK);
        assert_int_equal(r.integer, 1);
    }
    /* the whole script (loaded by now) releases the lock; a part of it
     * is not that script, whatever its address: it does not compile, and
     * the lock stays (sent by the whole one's digest it would go) */
    redis_do("SET lock f1");
    r = eval_once(s, 5, rel, NULL);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(r.integer, 1);
    redis_do("SET lock f1");
    rel_lens[1] = strlen(rel[1]) / 2;
    r = eval_once(s, 5, rel, rel_lens);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, BRK_ERR_STORE);
    assert_int_equal(h_redis_int(&H, "EXISTS %s", "lock"), 1);
    rel_lens[1] = strlen(rel[1]);
    r = eval_once(s, 5, rel, rel_lens);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(r.integer, 1);
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
        cmocka_unit_test(test_eval_again_keeps_arguments),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
